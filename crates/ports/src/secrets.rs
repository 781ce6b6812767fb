//! Webhook secrets per Revel instance.
//!
//! One Secrets Manager secret holds a JSON object mapping each instance to
//! its webhook secret, or to a list of secrets while a rotation is under way:
//! `{"mybar": "s3cret", "otherbar": ["new", "old"]}`; or, for an instance
//! whose REST API the bundle also calls, to an object:
//! `{"mybar": {"webhook": "s3cret", "api_key": "...", "api_secret": "..."}}`.
//! That object also holds the instance's settings, which can so change
//! without a redeploy ([`InstanceSettings`]): `"time_zone":
//! "America/Los_Angeles"` (IANA; the deployment's `DEFAULT_TIME_ZONE` when
//! absent), `"end_of_day": "23:55"` (local time) and `"inventory_every_2h":
//! true` (the retailer option). It is read at cold
//! start, re-read after a TTL, and re-read early (at most once per
//! [`UNKNOWN_INSTANCE_REFRESH`]) when a request names an instance it does
//! not hold, so a newly added instance works without a redeploy.
//!
//! Through a Secrets Manager outage the last document read stays in use for
//! a bounded grace past its TTL (1 h by default), with a refresh tried at
//! most every [`STALE_RETRY`] meanwhile and [`Metric::SecretsStale`] counted
//! each time the stale document answers: webhooks keep being verified
//! against the secrets they were verified against minutes ago, rather than
//! all refused.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use tokio::sync::{Mutex, RwLock};

use domain::error::DependencyError;
use domain::ids::InstanceName;
use domain::local_time::{UnknownZone, Zone};
use telemetry::{self, Metric};

/// Unknown instances trigger a re-read at most this often, so probing with
/// made-up instance names cannot hammer Secrets Manager.
pub const UNKNOWN_INSTANCE_REFRESH: Duration = Duration::from_secs(10);

/// While a stale document is in use, a refresh is tried at most this often:
/// each failed try costs a request the time of a timeout.
pub const STALE_RETRY: Duration = Duration::from_secs(10);

/// How long past its TTL a document is used when it can't be re-read,
/// unless [`SecretCache::with_stale_grace`] says otherwise.
pub const DEFAULT_STALE_GRACE: Duration = Duration::from_secs(3600);

/// A secret value. Its `Debug` is redacted so it can't reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Arc<str>);

impl WebhookSecret {
    pub fn new(value: &str) -> Self {
        Self(Arc::from(value))
    }

    /// Compares a presented value (a URL token) with this secret in
    /// constant time: both are hashed first, so neither the content nor the
    /// length of the secret shows in the timing.
    pub fn matches(&self, presented: &str) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let expected = Sha256::digest(self.0.as_bytes());
        let given = Sha256::digest(presented.as_bytes());
        expected.as_slice().ct_eq(given.as_slice()).into()
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Where the secret document comes from.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The raw secret document (JSON).
    async fn fetch(&self) -> Result<SecretDocument, DependencyError>;
}

/// The raw secret string, redacted in `Debug`.
pub struct SecretDocument(pub String);

impl fmt::Debug for SecretDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretDocument(<redacted>)")
    }
}

/// What one instance's entry holds.
#[derive(Debug, Clone)]
struct InstanceEntry {
    webhook: Vec<WebhookSecret>,
    /// URL tokens, for senders that can't sign (one, or two during rotation).
    tokens: Vec<WebhookSecret>,
    api: Option<ApiCredentials>,
    settings: InstanceSettings,
}

/// When an instance's day ends unless its entry says otherwise.
pub const DEFAULT_END_OF_DAY: time::Time = time::macros::time!(23:55);

/// The daily API budgets an entry may name: at least one call, and no more
/// than a counter can mean.
pub const DAILY_API_BUDGETS: std::ops::RangeInclusive<u64> = 1..=10_000_000;

/// An instance's own settings, from its entry in the secret document (none
/// of them secret): they change without a redeploy, within the secrets'
/// cache TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSettings {
    /// `time_zone`: the zone of the merchant's clock, in which Revel writes
    /// the instance's timestamps and its schedule runs.
    pub time_zone: Zone,
    /// Whether `time_zone` is the entry's own (false: the deployment's default).
    pub time_zone_named: bool,
    /// `end_of_day` (`"23:55"`): when, on the merchant's clock, the
    /// end-of-day work is queued.
    pub end_of_day: time::Time,
    /// `inventory_every_2h` (false): the retailer option, inventory pulled
    /// at every even hour of the merchant's clock.
    pub inventory_every_2h: bool,
    /// `daily_api_budget`: the Revel API calls the instance may make a day
    /// (UTC days); `None`: the deployment's `REVEL_API_DAILY_BUDGET`.
    pub daily_api_budget: Option<u64>,
    /// Why a setting the entry names could not be used (its default is used
    /// instead): a typo in a setting must not switch the instance off.
    pub unusable: Vec<String>,
}

impl InstanceSettings {
    /// The Revel API calls the instance may make a day: its own
    /// `daily_api_budget`, else the deployment's.
    pub fn api_budget(&self, deployment: u64) -> u64 {
        self.daily_api_budget.unwrap_or(deployment)
    }

    /// The settings of an entry that names none: `zone`, 23:55, no 2-hourly pulls.
    pub fn defaults(zone: Zone) -> Self {
        Self {
            time_zone: zone,
            time_zone_named: false,
            end_of_day: DEFAULT_END_OF_DAY,
            inventory_every_2h: false,
            daily_api_budget: None,
            unusable: Vec::new(),
        }
    }
}

/// Instance -> the secrets that may sign its requests, its API credentials
/// and its settings.
#[derive(Debug, Clone)]
pub struct InstanceSecrets {
    entries: HashMap<InstanceName, InstanceEntry>,
    /// The settings of an instance whose entry names none.
    defaults: InstanceSettings,
}

impl Default for InstanceSecrets {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            defaults: InstanceSettings::defaults(Zone::utc()),
        }
    }
}

fn webhook_secrets(value: &serde_json::Value) -> Result<Vec<WebhookSecret>, SecretFormatError> {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => Ok(vec![WebhookSecret::new(s)]),
        serde_json::Value::Array(items) if (1..=2).contains(&items.len()) => items
            .iter()
            .map(|item| match item {
                serde_json::Value::String(s) if !s.is_empty() => Ok(WebhookSecret::new(s)),
                _ => Err(SecretFormatError::BadValue),
            })
            .collect(),
        _ => Err(SecretFormatError::BadValue),
    }
}

/// `"HH:MM"`, 24-hour.
fn clock_time(raw: &str) -> Option<time::Time> {
    fn two_digits(s: &str) -> Option<u8> {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    }
    let (hour, minute) = raw.trim().split_once(':')?;
    time::Time::from_hms(two_digits(hour)?, two_digits(minute)?, 0).ok()
}

/// The settings an entry names, on top of `defaults`. A setting that can't
/// be used keeps its default and is listed in `unusable`: the instance's
/// webhooks and schedule go on (a refused webhook is lost once its sender
/// gives up), and the mistake is logged, counted and shown by `revel-ops`.
fn settings(
    fields: &serde_json::Map<String, serde_json::Value>,
    defaults: &InstanceSettings,
) -> InstanceSettings {
    let mut settings = defaults.clone();
    let mut unusable = Vec::new();
    match fields.get("time_zone") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(name)) => match Zone::parse(name) {
            Ok(zone) => {
                settings.time_zone = zone;
                settings.time_zone_named = true;
            }
            Err(error) => unusable.push(SecretFormatError::TimeZone(error)),
        },
        Some(_) => unusable.push(SecretFormatError::TimeZone(UnknownZone(
            "not a string".into(),
        ))),
    }
    match fields.get("end_of_day") {
        None | Some(serde_json::Value::Null) => {}
        Some(value) => match value.as_str().and_then(clock_time) {
            Some(at) => settings.end_of_day = at,
            None => unusable.push(SecretFormatError::EndOfDay),
        },
    }
    match fields.get("inventory_every_2h") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Bool(on)) => settings.inventory_every_2h = *on,
        Some(_) => unusable.push(SecretFormatError::Setting("inventory_every_2h")),
    }
    match fields.get("daily_api_budget") {
        None | Some(serde_json::Value::Null) => {}
        Some(value) => match value.as_u64().filter(|n| DAILY_API_BUDGETS.contains(n)) {
            Some(calls) => settings.daily_api_budget = Some(calls),
            None => unusable.push(SecretFormatError::DailyApiBudget),
        },
    }
    settings.unusable = unusable.iter().map(ToString::to_string).collect();
    settings
}

fn entry(
    value: &serde_json::Value,
    defaults: &InstanceSettings,
) -> Result<InstanceEntry, SecretFormatError> {
    let serde_json::Value::Object(fields) = value else {
        return Ok(InstanceEntry {
            webhook: webhook_secrets(value)?,
            tokens: Vec::new(),
            api: None,
            settings: defaults.clone(),
        });
    };
    let webhook = match fields.get("webhook") {
        Some(v) => webhook_secrets(v)?,
        None => Vec::new(),
    };
    let tokens = match fields.get("token") {
        Some(v) => webhook_secrets(v)?,
        None => Vec::new(),
    };
    let text = |name: &str| {
        fields
            .get(name)
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
    };
    // A secret without a key is a mistake; a key without a secret is how
    // single-key APIs (WineSitting) are configured.
    let api = match (text("api_key"), text("api_secret")) {
        (Some(key), secret) => Some(ApiCredentials::new(key, secret.unwrap_or_default())),
        (None, None) => None,
        (None, Some(_)) => return Err(SecretFormatError::BadValue),
    };
    Ok(InstanceEntry {
        webhook,
        tokens,
        api,
        settings: settings(fields, defaults),
    })
}

/// Why a secret document could not be used. Never holds the document.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretFormatError {
    #[error("secret document is not a JSON object")]
    NotAnObject,
    #[error("secret for an instance must be a non-empty string or a list of one or two")]
    BadValue,
    #[error("time_zone: {0}")]
    TimeZone(UnknownZone),
    #[error("end_of_day must be a 24-hour local time, \"HH:MM\"")]
    EndOfDay,
    #[error("{0} must be true or false")]
    Setting(&'static str),
    #[error("daily_api_budget must be a whole number of calls from 1 to 10000000")]
    DailyApiBudget,
}

impl InstanceSecrets {
    /// The document, with UTC for the instances that name no time zone.
    pub fn parse(document: &SecretDocument) -> Result<Self, SecretFormatError> {
        Self::parse_with(document, &Zone::utc())
    }

    /// The document, with `default_zone` for the instances that name none.
    pub fn parse_with(
        document: &SecretDocument,
        default_zone: &Zone,
    ) -> Result<Self, SecretFormatError> {
        let defaults = InstanceSettings::defaults(default_zone.clone());
        let value: serde_json::Value =
            serde_json::from_str(&document.0).map_err(|_| SecretFormatError::NotAnObject)?;
        let object = value.as_object().ok_or(SecretFormatError::NotAnObject)?;
        let mut map = HashMap::with_capacity(object.len());
        for (name, secrets) in object {
            let Ok(instance) = InstanceName::parse(name) else {
                // A bad entry must not take down every other instance.
                tracing::warn!(entry = %name, "secret document has an invalid instance name; entry skipped");
                continue;
            };
            match entry(secrets, &defaults) {
                Ok(values) => {
                    for error in &values.settings.unusable {
                        tracing::warn!(entry = %instance, %error, "secret document has an unusable setting; its default is used");
                        telemetry::count(Metric::UnusableSettings, &[]);
                    }
                    map.insert(instance, values);
                }
                // One bad value must not take down every other instance.
                Err(error) => {
                    tracing::warn!(entry = %instance, %error, "secret document has an unusable value; entry skipped");
                }
            }
        }
        Ok(Self {
            entries: map,
            defaults,
        })
    }

    /// The webhook secrets of `instance`; `None` when it has none.
    pub fn get(&self, instance: &InstanceName) -> Option<&[WebhookSecret]> {
        self.entries
            .get(instance)
            .map(|e| e.webhook.as_slice())
            .filter(|w| !w.is_empty())
    }

    /// The URL tokens of `instance`; empty when it has none.
    pub fn tokens(&self, instance: &InstanceName) -> &[WebhookSecret] {
        self.entries
            .get(instance)
            .map(|e| e.tokens.as_slice())
            .unwrap_or(&[])
    }

    /// The REST API credentials of `instance`, when it has some.
    pub fn api_credentials(&self, instance: &InstanceName) -> Option<&ApiCredentials> {
        self.entries.get(instance)?.api.as_ref()
    }

    /// The settings of `instance`: its entry's, or the defaults (the
    /// deployment's zone, end of day at 23:55, no 2-hourly inventory) for
    /// what it doesn't name, and for an instance the document doesn't hold.
    pub fn settings(&self, instance: &InstanceName) -> InstanceSettings {
        self.entries
            .get(instance)
            .map_or_else(|| self.defaults.clone(), |e| e.settings.clone())
    }

    /// The zone of `instance`: its own, or the deployment's default.
    pub fn zone(&self, instance: &InstanceName) -> Zone {
        self.entries
            .get(instance)
            .map_or(&self.defaults, |e| &e.settings)
            .time_zone
            .clone()
    }

    /// Every instance with its settings, sorted (for operators: no secret).
    pub fn all_settings(&self) -> Vec<(InstanceName, InstanceSettings)> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .map(|(name, e)| (name.clone(), e.settings.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The instances whose REST API the bundle may call, sorted.
    pub fn api_instances(&self) -> Vec<InstanceName> {
        let mut names: Vec<InstanceName> = self
            .entries
            .iter()
            .filter(|(_, e)| e.api.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

struct Loaded {
    secrets: Arc<InstanceSecrets>,
    at: Instant,
}

/// Where a source's secret document is read (cached): each instance's
/// secrets, API credentials and settings. The jobs worker reads Revel's and
/// WineSitting's through it.
#[async_trait]
pub trait InstanceDocument: Send + Sync {
    /// The whole document, fresh within its cache's TTL.
    async fn document(&self) -> Result<Arc<InstanceSecrets>, DependencyError>;
}

/// The zone `instance`'s naive timestamps are read in: its own or the
/// deployment's default, from the `document` of its source (cached); UTC
/// where there is no such document.
pub async fn zone_of(
    document: Option<&dyn InstanceDocument>,
    instance: &InstanceName,
) -> Result<Zone, DependencyError> {
    match document {
        Some(document) => Ok(document.document().await?.zone(instance)),
        None => Ok(Zone::utc()),
    }
}

#[async_trait]
impl InstanceDocument for SecretCache {
    async fn document(&self) -> Result<Arc<InstanceSecrets>, DependencyError> {
        SecretCache::document(self).await
    }
}

/// Caches [`InstanceSecrets`] with a TTL; one re-read at a time.
pub struct SecretCache {
    source: Box<dyn SecretSource>,
    /// The zone of instances whose entry names none.
    default_zone: Zone,
    ttl: Duration,
    stale_grace: Duration,
    loaded: RwLock<Option<Loaded>>,
    /// Held by the one task re-reading; holds when the last re-read failed.
    reload: Mutex<Option<Instant>>,
}

impl SecretCache {
    pub fn new(source: impl SecretSource + 'static, ttl: Duration) -> Self {
        Self {
            source: Box::new(source),
            default_zone: Zone::utc(),
            ttl,
            stale_grace: DEFAULT_STALE_GRACE,
            loaded: RwLock::new(None),
            reload: Mutex::new(None),
        }
    }

    /// How long past its TTL the last document read is used while it can't
    /// be read again (zero: not at all).
    pub fn with_stale_grace(mut self, grace: Duration) -> Self {
        self.stale_grace = grace;
        self
    }

    /// Instances whose entry names no `time_zone` are in `zone` (the
    /// deployment's `DEFAULT_TIME_ZONE`; UTC unless said).
    pub fn with_default_zone(mut self, zone: Zone) -> Self {
        self.default_zone = zone;
        self
    }

    /// The settings of `instance`, or `None` when the (fresh) document does
    /// not name it.
    pub async fn settings_for(
        &self,
        instance: &InstanceName,
    ) -> Result<Option<InstanceSettings>, DependencyError> {
        self.lookup(|doc| {
            doc.entries
                .contains_key(instance)
                .then(|| doc.settings(instance))
        })
        .await
    }

    /// The zone of `instance`, or `None` when the (fresh) document does not
    /// name it.
    pub async fn zone_for(&self, instance: &InstanceName) -> Result<Option<Zone>, DependencyError> {
        self.lookup(|doc| {
            doc.entries
                .contains_key(instance)
                .then(|| doc.zone(instance))
        })
        .await
    }

    /// The secrets of `instance`, or `None` when the (fresh) document does not
    /// name it.
    pub async fn secrets_for(
        &self,
        instance: &InstanceName,
    ) -> Result<Option<Vec<WebhookSecret>>, DependencyError> {
        self.lookup(|doc| doc.get(instance).map(<[WebhookSecret]>::to_vec))
            .await
    }

    /// The URL tokens of `instance`, or `None` when it has none.
    pub async fn tokens_for(
        &self,
        instance: &InstanceName,
    ) -> Result<Option<Vec<WebhookSecret>>, DependencyError> {
        self.lookup(|doc| Some(doc.tokens(instance).to_vec()).filter(|t| !t.is_empty()))
            .await
    }

    /// Picks from the document; on a miss, re-reads it (at most every
    /// [`UNKNOWN_INSTANCE_REFRESH`]) and picks again.
    async fn lookup<T>(
        &self,
        pick: impl Fn(&InstanceSecrets) -> Option<T>,
    ) -> Result<Option<T>, DependencyError> {
        let current = self.current(self.ttl).await?;
        if let Some(found) = pick(&current) {
            return Ok(Some(found));
        }
        let refreshed = self.current(UNKNOWN_INSTANCE_REFRESH.min(self.ttl)).await?;
        Ok(pick(&refreshed))
    }

    /// The whole document, fresh within the TTL (for the scheduled pulls).
    pub async fn document(&self) -> Result<Arc<InstanceSecrets>, DependencyError> {
        self.current(self.ttl).await
    }

    /// Loads the document at cold start, so the first request doesn't pay
    /// for it and a broken secret shows in the init log.
    pub async fn warm(&self) -> Result<usize, DependencyError> {
        Ok(self.current(self.ttl).await?.len())
    }

    async fn current(&self, max_age: Duration) -> Result<Arc<InstanceSecrets>, DependencyError> {
        if let Some(fresh) = self.fresh(max_age).await {
            return Ok(fresh);
        }
        let mut last_failure = self.reload.lock().await;
        // Another task may have reloaded while this one waited.
        if let Some(fresh) = self.fresh(max_age).await {
            return Ok(fresh);
        }
        let stale = self.fresh(self.ttl + self.stale_grace).await;
        if let (Some(stale), Some(failed)) = (&stale, *last_failure) {
            if failed.elapsed() < STALE_RETRY {
                return Ok(self.use_stale(stale));
            }
        }
        match self.read().await {
            Ok(secrets) => {
                *last_failure = None;
                *self.loaded.write().await = Some(Loaded {
                    secrets: Arc::clone(&secrets),
                    at: Instant::now(),
                });
                Ok(secrets)
            }
            Err(error) => {
                *last_failure = Some(Instant::now());
                match stale {
                    Some(stale) => {
                        error.log("secrets could not be re-read; using the last ones read");
                        Ok(self.use_stale(&stale))
                    }
                    None => Err(error),
                }
            }
        }
    }

    async fn read(&self) -> Result<Arc<InstanceSecrets>, DependencyError> {
        let document = self.source.fetch().await?;
        Ok(Arc::new(
            InstanceSecrets::parse_with(&document, &self.default_zone)
                .map_err(|e| DependencyError::new("secretsmanager", "parse", e))?,
        ))
    }

    fn use_stale(&self, stale: &Arc<InstanceSecrets>) -> Arc<InstanceSecrets> {
        telemetry::count(Metric::SecretsStale, &[]);
        Arc::clone(stale)
    }

    async fn fresh(&self, max_age: Duration) -> Option<Arc<InstanceSecrets>> {
        let loaded = self.loaded.read().await;
        loaded
            .as_ref()
            .filter(|l| l.at.elapsed() < max_age)
            .map(|l| Arc::clone(&l.secrets))
    }
}

/// API key and secret of one instance. Debug is redacted.
#[derive(Clone)]
pub struct ApiCredentials {
    key: String,
    secret: String,
}

impl ApiCredentials {
    pub fn new(key: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            secret: secret.into(),
        }
    }

    /// The key alone, for single-key APIs (WineSitting's bearer token).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// `{key}:{secret}` as a header value (Revel's `API-AUTHENTICATION`),
    /// marked sensitive so that `http`'s own `Debug` and HTTP/2 header
    /// compression treat it as a secret too.
    pub fn key_and_secret_header(
        &self,
    ) -> Result<http::HeaderValue, http::header::InvalidHeaderValue> {
        let mut value = http::HeaderValue::try_from(format!("{}:{}", self.key, self.secret))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for ApiCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key alone is half of the header; it is redacted as well.
        f.write_str("ApiCredentials(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        document: std::sync::Mutex<String>,
        reads: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl SecretSource for Counting {
        async fn fetch(&self) -> Result<SecretDocument, DependencyError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(SecretDocument(self.document.lock().unwrap().clone()))
        }
    }

    fn demo() -> InstanceName {
        InstanceName::parse("demo").unwrap()
    }

    #[test]
    fn a_string_or_a_list_of_two_is_accepted_and_a_bad_entry_is_skipped_alone() {
        let doc = SecretDocument(r#"{"demo":"a","other":["b","c"]}"#.into());
        let parsed = InstanceSecrets::parse(&doc).unwrap();
        assert_eq!(parsed.get(&demo()).unwrap().len(), 1);
        assert_eq!(parsed.len(), 2);
        let three = SecretDocument(r#"{"demo":["a","b","c"], "other": "o", "empty": ""}"#.into());
        let skipped = InstanceSecrets::parse(&three).unwrap();
        assert!(
            skipped.get(&demo()).is_none(),
            "three secrets is not a rotation"
        );
        assert_eq!(skipped.len(), 1, "the other instance still works");
        let not_json = SecretDocument("demo=a".into());
        assert_eq!(
            InstanceSecrets::parse(&not_json).unwrap_err(),
            SecretFormatError::NotAnObject
        );
    }

    #[test]
    fn an_instance_entry_may_carry_api_credentials() {
        let doc = SecretDocument(
            r#"{"demo": {"webhook": ["a", "b"], "api_key": "k", "api_secret": "s"}, "hooks-only": "c", "api-only": {"api_key": "k2", "api_secret": "s2"}}"#.into(),
        );
        let parsed = InstanceSecrets::parse(&doc).unwrap();
        assert_eq!(parsed.get(&demo()).unwrap().len(), 2);
        assert!(parsed.api_credentials(&demo()).is_some());
        let api_only = InstanceName::parse("api-only").unwrap();
        assert!(
            parsed.get(&api_only).is_none(),
            "no webhook secret: requests are refused"
        );
        assert_eq!(parsed.api_instances(), vec![api_only, demo()]);
        let half = SecretDocument(r#"{"demo": {"api_secret": "s"}}"#.into());
        assert!(
            InstanceSecrets::parse(&half).unwrap().is_empty(),
            "a secret without a key is skipped"
        );
    }

    #[test]
    fn an_instances_settings_are_read_from_its_entry_and_default_where_it_names_none() {
        let doc = SecretDocument(
            r#"{"labar": {"webhook": "w", "api_key": "k", "api_secret": "s",
                          "time_zone": "America/Los_Angeles", "end_of_day": "22:30", "inventory_every_2h": true,
                          "daily_api_budget": 250},
                "demo": {"webhook": "w", "api_key": "k", "api_secret": "s"},
                "hooks-only": "w"}"#
                .into(),
        );
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let parsed = InstanceSecrets::parse_with(&doc, &berlin).unwrap();
        let la = parsed.settings(&InstanceName::parse("labar").unwrap());
        assert_eq!(la.time_zone.name(), "America/Los_Angeles");
        assert!(la.time_zone_named && la.inventory_every_2h);
        assert_eq!(la.end_of_day, time::macros::time!(22:30));
        assert_eq!(la.daily_api_budget, Some(250));
        for name in ["demo", "hooks-only", "not-in-the-document"] {
            assert_eq!(
                parsed.settings(&InstanceName::parse(name).unwrap()),
                InstanceSettings::defaults(berlin.clone()),
                "{name}"
            );
        }
        assert_eq!(
            parsed.all_settings().len(),
            3,
            "every entry, not the unknown instance"
        );
    }

    #[test]
    fn a_setting_that_cant_be_used_keeps_its_default_and_is_listed_while_the_entry_still_verifies_webhooks(
    ) {
        for (bad, why) in [
            (r#""time_zone": "America/Springfield""#, "time_zone"),
            (r#""time_zone": 7"#, "time_zone"),
            (r#""end_of_day": "25:00""#, "end_of_day"),
            (r#""end_of_day": "9:5""#, "end_of_day"),
            (r#""end_of_day": "23:55:00""#, "end_of_day"),
            (r#""inventory_every_2h": "yes""#, "inventory_every_2h"),
            (r#""daily_api_budget": 0"#, "daily_api_budget"),
            (r#""daily_api_budget": -5"#, "daily_api_budget"),
            (r#""daily_api_budget": 2.5"#, "daily_api_budget"),
            (r#""daily_api_budget": "500""#, "daily_api_budget"),
        ] {
            let doc = SecretDocument(format!(
                r#"{{"typo": {{"webhook": "w", "end_of_day": "22:00", "inventory_every_2h": true, {bad}}},
                    "demo": {{"webhook": "w", "time_zone": "Asia/Tokyo"}}}}"#
            ));
            let parsed =
                InstanceSecrets::parse_with(&doc, &Zone::parse("Europe/Paris").unwrap()).unwrap();
            let typo = InstanceName::parse("typo").unwrap();
            assert!(parsed.get(&typo).is_some(), "{why}: webhooks still verify");
            let settings = parsed.settings(&typo);
            assert_eq!(settings.unusable.len(), 1, "{why}: {:?}", settings.unusable);
            assert!(
                settings.unusable[0].contains(why),
                "{:?}",
                settings.unusable
            );
            let defaults = InstanceSettings::defaults(Zone::parse("Europe/Paris").unwrap());
            // The bad setting has its default; the others are the entry's.
            let expected = match why {
                "time_zone" => (defaults.time_zone.name(), time::macros::time!(22:00), true),
                "end_of_day" => ("Europe/Paris", DEFAULT_END_OF_DAY, true),
                "inventory_every_2h" => ("Europe/Paris", time::macros::time!(22:00), false),
                _ => ("Europe/Paris", time::macros::time!(22:00), true),
            };
            assert_eq!(
                (
                    settings.time_zone.name(),
                    settings.end_of_day,
                    settings.inventory_every_2h
                ),
                expected,
                "{why}"
            );
            assert_eq!(
                parsed.settings(&demo()).time_zone.name(),
                "Asia/Tokyo",
                "{why}: the other entry still works"
            );
            assert_eq!(settings.daily_api_budget, None, "{why}");
            assert!(parsed.settings(&demo()).unusable.is_empty());
        }
    }

    #[tokio::test]
    async fn the_cache_applies_the_deployments_default_zone_and_knows_no_settings_for_an_unknown_instance(
    ) {
        let cache = SecretCache::new(
            crate::fakes::FixedSecrets(r#"{"demo": "w"}"#.into()),
            Duration::from_secs(300),
        )
        .with_default_zone(Zone::parse("America/Chicago").unwrap());
        let settings = cache.settings_for(&demo()).await.unwrap().unwrap();
        assert_eq!(settings.time_zone.name(), "America/Chicago");
        assert!(!settings.time_zone_named);
        let stranger = InstanceName::parse("stranger").unwrap();
        assert_eq!(cache.settings_for(&stranger).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_instance_zone_is_its_own_or_the_default_and_utc_without_a_document() {
        let cache = SecretCache::new(
            crate::fakes::FixedSecrets(
                r#"{"demo": "w", "west": {"webhook": "w", "time_zone": "America/Los_Angeles"}}"#
                    .into(),
            ),
            Duration::from_secs(300),
        )
        .with_default_zone(Zone::parse("America/Chicago").unwrap());
        let west = InstanceName::parse("west").unwrap();
        let zone = |instance: InstanceName| {
            let cache = &cache;
            async move {
                zone_of(Some(cache), &instance)
                    .await
                    .unwrap()
                    .name()
                    .to_owned()
            }
        };
        assert_eq!(zone(west.clone()).await, "America/Los_Angeles");
        assert_eq!(zone(demo()).await, "America/Chicago");
        assert_eq!(zone_of(None, &west).await.unwrap(), Zone::utc());
    }

    #[test]
    fn tokens_match_exactly_and_only_exactly() {
        let token = WebhookSecret::new("a-long-random-token");
        assert!(token.matches("a-long-random-token"));
        for wrong in [
            "",
            "a-long-random-toke",
            "a-long-random-tokenX",
            "A-long-random-token",
        ] {
            assert!(!token.matches(wrong), "{wrong:?}");
        }
        let doc = SecretDocument(
            r#"{"acct": {"token": ["t1", "t0"]}, "signed": {"webhook": "s"}}"#.into(),
        );
        let parsed = InstanceSecrets::parse(&doc).unwrap();
        let acct = InstanceName::parse("acct").unwrap();
        assert_eq!(parsed.tokens(&acct).len(), 2);
        assert!(parsed.get(&acct).is_none());
        assert!(parsed
            .tokens(&InstanceName::parse("signed").unwrap())
            .is_empty());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let doc = SecretDocument(r#"{"demo":"hunter2"}"#.into());
        let parsed = InstanceSecrets::parse(&doc).unwrap();
        let printed = format!("{parsed:?} {doc:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[tokio::test]
    async fn the_document_is_read_once_while_fresh_and_again_for_an_unknown_instance() {
        let reads = Arc::new(AtomicUsize::new(0));
        let source = Counting {
            document: std::sync::Mutex::new(r#"{"demo":"a"}"#.into()),
            reads: Arc::clone(&reads),
        };
        let cache = SecretCache::new(source, Duration::from_secs(300));
        for _ in 0..5 {
            assert!(cache.secrets_for(&demo()).await.unwrap().is_some());
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // An unknown instance right after a read: the document is fresh
        // enough (younger than UNKNOWN_INSTANCE_REFRESH), so no re-read.
        let stranger = InstanceName::parse("stranger").unwrap();
        assert!(cache.secrets_for(&stranger).await.unwrap().is_none());
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_short_ttl_picks_up_a_new_instance() {
        let reads = Arc::new(AtomicUsize::new(0));
        let source = Arc::new(Counting {
            document: std::sync::Mutex::new(r#"{"demo":"a"}"#.into()),
            reads: Arc::clone(&reads),
        });
        struct Shared(Arc<Counting>);
        #[async_trait]
        impl SecretSource for Shared {
            async fn fetch(&self) -> Result<SecretDocument, DependencyError> {
                self.0.fetch().await
            }
        }
        let cache = SecretCache::new(Shared(Arc::clone(&source)), Duration::from_millis(20));
        let newcomer = InstanceName::parse("newcomer").unwrap();
        assert!(cache.secrets_for(&newcomer).await.unwrap().is_none());
        *source.document.lock().unwrap() = r#"{"demo":"a","newcomer":"n"}"#.into();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(cache.secrets_for(&newcomer).await.unwrap().is_some());
        assert!(reads.load(Ordering::SeqCst) >= 2);
    }

    /// A source that can be switched off, counting its reads.
    struct Flaky {
        up: Arc<std::sync::atomic::AtomicBool>,
        reads: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl SecretSource for Flaky {
        async fn fetch(&self) -> Result<SecretDocument, DependencyError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.up.load(Ordering::SeqCst) {
                Ok(SecretDocument(r#"{"demo":"a"}"#.into()))
            } else {
                Err(DependencyError::new(
                    "secretsmanager",
                    "GetSecretValue",
                    "timed out",
                ))
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn through_an_outage_the_last_secrets_serve_for_the_grace_and_a_refresh_is_tried_every_ten_seconds(
    ) {
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let reads = Arc::new(AtomicUsize::new(0));
        let cache = SecretCache::new(
            Flaky {
                up: Arc::clone(&up),
                reads: Arc::clone(&reads),
            },
            Duration::from_secs(300),
        )
        .with_stale_grace(Duration::from_secs(3600));
        assert!(cache.secrets_for(&demo()).await.unwrap().is_some());
        up.store(false, Ordering::SeqCst);

        tokio::time::sleep(Duration::from_secs(301)).await;
        assert!(
            cache.secrets_for(&demo()).await.unwrap().is_some(),
            "stale, not refused"
        );
        assert_eq!(reads.load(Ordering::SeqCst), 2, "one refresh tried");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(cache.secrets_for(&demo()).await.unwrap().is_some());
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "none within ten seconds of the last"
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(cache.secrets_for(&demo()).await.unwrap().is_some());
        assert_eq!(reads.load(Ordering::SeqCst), 3);

        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(
            cache.secrets_for(&demo()).await.is_err(),
            "past the grace: refused"
        );

        up.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(
            cache.secrets_for(&demo()).await.unwrap().is_some(),
            "back when the source is"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_grace_an_outage_past_the_ttl_is_refused() {
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let cache = SecretCache::new(
            Flaky {
                up: Arc::clone(&up),
                reads: Arc::new(AtomicUsize::new(0)),
            },
            Duration::from_secs(300),
        )
        .with_stale_grace(Duration::ZERO);
        cache.warm().await.unwrap();
        up.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(301)).await;
        assert!(cache.secrets_for(&demo()).await.is_err());
    }
}
