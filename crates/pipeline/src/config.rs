//! Settings, read once from the environment at cold start. The names match
//! the `Environment` of template.yaml.

use std::time::Duration;

use domain::error::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `EVENTS_TABLE`: the archive, keyed by event key.
    pub events_table: String,
    /// `ENTITIES_TABLE`: current state, newest wins.
    pub entities_table: String,
    /// `JOBS_QUEUE_URL`: the FIFO follow-up queue.
    pub jobs_queue_url: String,
    /// `REVEL_WEBHOOK_SECRETS_ID`: name or ARN of the secret mapping each
    /// instance to its webhook secret(s).
    pub revel_secrets_id: String,
    /// `WINESITTING_SECRETS_ID`: account -> URL token (and API key).
    pub winesitting_secrets_id: Option<String>,
    /// `BOOKING_SECRETS_ID`: account -> HMAC secret or URL token.
    pub booking_secrets_id: Option<String>,
    /// `BOOKING_SIGNATURE_HEADER` (`x-signature`): where the booking
    /// platform's HMAC-SHA256 goes, for accounts that have a secret.
    pub booking_signature_header: String,
    /// `VINESOS_SECRETS_ID`: instance -> the partner's Standard Webhooks secret.
    pub vinesos_secrets_id: Option<String>,
    /// `JOBS_DEAD_LETTER_QUEUE_URL`: where the worker parks jobs that can never succeed.
    pub jobs_dlq_url: Option<String>,
    /// `DELIVER_WINESITTING_EVENTS`, `DELIVER_BOOKING_EVENTS` (both `true`):
    /// whose events the processor queues for delivery to the partner.
    pub deliveries: PartnerDeliveries,
    /// `DEFAULT_TIME_ZONE` (`UTC`): the IANA zone of the Revel instances
    /// whose entry in the secret document names no `time_zone`.
    pub default_time_zone: domain::local_time::Zone,
    pub settings: Settings,
}

/// The per-source switches of deliveries to the partner. Revel's own
/// changes always go (they are what the partner is for); WineSitting's and
/// the booking platform's go unless a merchant turns them off. The
/// default delivers every source's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartnerDeliveries {
    off: Vec<&'static str>,
}

impl PartnerDeliveries {
    /// The switches: the source's name and the variable that turns it off.
    pub const SWITCHES: [(&'static str, &'static str); 2] = [
        (
            vendors::winesitting::NAME.as_str(),
            "DELIVER_WINESITTING_EVENTS",
        ),
        (vendors::booking::NAME.as_str(), "DELIVER_BOOKING_EVENTS"),
    ];

    /// Every source delivered except `off`.
    pub fn all_but(off: &[&'static str]) -> Self {
        Self { off: off.to_vec() }
    }

    /// Whether changes from `source` are delivered to the partner.
    pub fn delivers(&self, source: &str) -> bool {
        !self.off.contains(&source)
    }

    fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut off = Vec::new();
        for (source, name) in Self::SWITCHES {
            let raw = lookup(name).map(|v| v.trim().to_ascii_lowercase());
            match raw.as_deref() {
                None | Some("" | "true") => {}
                Some("false") => off.push(source),
                Some(_) => {
                    return Err(ConfigError::Invalid {
                        name,
                        why: "expected true or false".into(),
                    })
                }
            }
        }
        Ok(Self { off })
    }
}

/// The tunable part of [`Config`], with defaults that fit Revel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `EVENT_RETENTION_DAYS` (30): archived events expire through DynamoDB TTL.
    pub retention: Duration,
    /// `MAX_BODY_BYTES` (1 MiB): larger bodies get 413.
    pub max_body_bytes: usize,
    /// `SECRETS_CACHE_TTL_SECONDS` (300): secrets are re-read after this.
    pub secrets_ttl: Duration,
    /// `SECRETS_STALE_GRACE_SECONDS` (3600): while Secrets Manager can't be
    /// read, the last secrets read are used this long past their TTL (and
    /// the refresh is retried), so an outage doesn't refuse every webhook.
    pub secrets_stale_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 86_400),
            max_body_bytes: 1024 * 1024,
            secrets_ttl: Duration::from_secs(300),
            secrets_stale_grace: Duration::from_secs(3600),
        }
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`, so tests and the local stack can
    /// pass a map instead of mutating the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        let number = |name: &'static str, default: u64, min: u64| -> Result<u64, ConfigError> {
            match lookup(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(raw) => match raw.trim().parse::<u64>() {
                    Ok(n) if n >= min => Ok(n),
                    _ => Err(ConfigError::Invalid {
                        name,
                        why: format!("expected a whole number of at least {min}"),
                    }),
                },
            }
        };
        let defaults = Settings::default();
        let settings = Settings {
            retention: Duration::from_secs(86_400 * number("EVENT_RETENTION_DAYS", 30, 1)?),
            max_body_bytes: number("MAX_BODY_BYTES", defaults.max_body_bytes as u64, 1)? as usize,
            secrets_ttl: Duration::from_secs(number("SECRETS_CACHE_TTL_SECONDS", 300, 1)?),
            secrets_stale_grace: Duration::from_secs(number(
                "SECRETS_STALE_GRACE_SECONDS",
                defaults.secrets_stale_grace.as_secs(),
                0,
            )?),
        };
        Ok(Self {
            events_table: required("EVENTS_TABLE")?,
            entities_table: required("ENTITIES_TABLE")?,
            jobs_queue_url: required("JOBS_QUEUE_URL")?,
            revel_secrets_id: required("REVEL_WEBHOOK_SECRETS_ID")?,
            winesitting_secrets_id: lookup("WINESITTING_SECRETS_ID")
                .filter(|v| !v.trim().is_empty()),
            booking_secrets_id: lookup("BOOKING_SECRETS_ID").filter(|v| !v.trim().is_empty()),
            booking_signature_header: lookup("BOOKING_SIGNATURE_HEADER")
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "x-signature".to_owned()),
            vinesos_secrets_id: lookup("VINESOS_SECRETS_ID").filter(|v| !v.trim().is_empty()),
            jobs_dlq_url: lookup("JOBS_DEAD_LETTER_QUEUE_URL").filter(|v| !v.trim().is_empty()),
            deliveries: PartnerDeliveries::from_lookup(&lookup)?,
            default_time_zone: match lookup("DEFAULT_TIME_ZONE").filter(|v| !v.trim().is_empty()) {
                None => domain::local_time::Zone::utc(),
                Some(name) => {
                    domain::local_time::Zone::parse(&name).map_err(|e| ConfigError::Invalid {
                        name: "DEFAULT_TIME_ZONE",
                        why: e.to_string(),
                    })?
                }
            },
            settings,
        })
    }
}

/// What the jobs worker and the scheduler read on top of [`Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// `SYNC_STATE_TABLE`: checkpoints, unfinished runs, API budget.
    pub sync_state_table: String,
    /// `REVEL_API_BASE_URL` (`https://{instance}.revelup.com`).
    pub revel_api_base_url: String,
    /// `REVEL_API_DAILY_BUDGET` (1000): API calls per instance per day.
    pub daily_budget: u64,
    /// `INVENTORY_REQUESTS_PER_HOUR` (12): on-demand inventory pulls (the
    /// partner's searches) per instance per hour; more wait for the next.
    pub inventory_requests_per_hour: u64,
    /// `DOWNSTREAM_URL`: the partner's webhook URL; `None` turns delivery off.
    pub downstream_url: Option<String>,
    /// `DOWNSTREAM_SECRET_ID`: the Standard Webhooks signing secret.
    pub downstream_secret_id: Option<String>,
    /// `RECONCILE_LOOKBACK_HOURS` (26): how far back a first reconciliation looks.
    pub reconcile_lookback: Duration,
    /// `WINESITTING_API_BASE_URL`: WineSitting's REST API, for the repair poll.
    pub winesitting_api_base_url: String,
}

impl SyncConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let optional = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match optional(name) {
                None => Ok(default),
                Some(raw) => {
                    raw.parse::<u64>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or(ConfigError::Invalid {
                            name,
                            why: "expected a whole number of at least 1".into(),
                        })
                }
            }
        };
        let base = optional("REVEL_API_BASE_URL")
            .unwrap_or_else(|| "https://{instance}.revelup.com".into());
        if !base.contains("{instance}") {
            return Err(ConfigError::Invalid {
                name: "REVEL_API_BASE_URL",
                why: "must contain {instance}".into(),
            });
        }
        let downstream_url = optional("DOWNSTREAM_URL");
        let downstream_secret_id = optional("DOWNSTREAM_SECRET_ID");
        if downstream_url.is_some() && downstream_secret_id.is_none() {
            return Err(ConfigError::Missing("DOWNSTREAM_SECRET_ID"));
        }
        Ok(Self {
            sync_state_table: optional("SYNC_STATE_TABLE")
                .ok_or(ConfigError::Missing("SYNC_STATE_TABLE"))?,
            revel_api_base_url: base,
            daily_budget: number("REVEL_API_DAILY_BUDGET", 1000)?,
            inventory_requests_per_hour: number(
                "INVENTORY_REQUESTS_PER_HOUR",
                ports::sync_state::DEFAULT_ON_DEMAND_PULLS_PER_HOUR,
            )?,
            downstream_url,
            downstream_secret_id,
            reconcile_lookback: Duration::from_secs(3600 * number("RECONCILE_LOOKBACK_HOURS", 26)?),
            winesitting_api_base_url: optional("WINESITTING_API_BASE_URL")
                .unwrap_or_else(|| "https://api.winesitting.com/v1".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const REQUIRED: [(&str, &str); 4] = [
        ("EVENTS_TABLE", "events"),
        ("ENTITIES_TABLE", "entities"),
        ("JOBS_QUEUE_URL", "http://q"),
        ("REVEL_WEBHOOK_SECRETS_ID", "secrets"),
    ];

    #[test]
    fn defaults_apply_when_only_the_required_names_are_set() {
        let config = Config::from_lookup(env(&REQUIRED)).unwrap();
        assert_eq!(config.settings, Settings::default());
        assert_eq!(config.events_table, "events");
    }

    #[test]
    fn a_missing_table_name_is_reported_by_name() {
        let err = Config::from_lookup(env(&REQUIRED[1..])).unwrap_err();
        assert_eq!(err, ConfigError::Missing("EVENTS_TABLE"));
    }

    #[test]
    fn a_bad_number_is_reported_by_name() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("MAX_BODY_BYTES", "lots"));
        let err = Config::from_lookup(env(&pairs)).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "MAX_BODY_BYTES",
                ..
            }
        ));
    }

    #[test]
    fn retention_is_read_in_days() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("EVENT_RETENTION_DAYS", "7"));
        let config = Config::from_lookup(env(&pairs)).unwrap();
        assert_eq!(config.settings.retention, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn every_source_is_delivered_to_the_partner_unless_its_switch_says_false() {
        let config = Config::from_lookup(env(&REQUIRED)).unwrap();
        assert!(["revel", "winesitting", "booking"]
            .iter()
            .all(|s| config.deliveries.delivers(s)));
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("DELIVER_WINESITTING_EVENTS", " False "));
        pairs.push(("DELIVER_BOOKING_EVENTS", "true"));
        let config = Config::from_lookup(env(&pairs)).unwrap();
        assert!(!config.deliveries.delivers("winesitting"));
        assert!(config.deliveries.delivers("booking") && config.deliveries.delivers("revel"));
        let mut wrong = REQUIRED.to_vec();
        wrong.push(("DELIVER_BOOKING_EVENTS", "off"));
        assert!(matches!(
            Config::from_lookup(env(&wrong)).unwrap_err(),
            ConfigError::Invalid {
                name: "DELIVER_BOOKING_EVENTS",
                ..
            }
        ));
    }

    #[test]
    fn sync_settings_default_and_delivery_is_off_without_a_url() {
        let sync = SyncConfig::from_lookup(env(&[("SYNC_STATE_TABLE", "state")])).unwrap();
        assert_eq!(sync.daily_budget, 1000);
        assert_eq!(sync.downstream_url, None);
        assert_eq!(sync.revel_api_base_url, "https://{instance}.revelup.com");
    }

    #[test]
    fn the_default_time_zone_is_utc_unless_named_and_an_unknown_one_is_refused_by_name() {
        let config = Config::from_lookup(env(&REQUIRED)).unwrap();
        assert_eq!(config.default_time_zone.name(), "UTC");
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("DEFAULT_TIME_ZONE", "America/Los_Angeles"));
        let config = Config::from_lookup(env(&pairs)).unwrap();
        assert_eq!(config.default_time_zone.name(), "America/Los_Angeles");
        let mut wrong = REQUIRED.to_vec();
        wrong.push(("DEFAULT_TIME_ZONE", "Pacific Time"));
        assert!(matches!(
            Config::from_lookup(env(&wrong)).unwrap_err(),
            ConfigError::Invalid {
                name: "DEFAULT_TIME_ZONE",
                ..
            }
        ));
    }

    #[test]
    fn a_downstream_url_without_a_signing_secret_is_refused() {
        let err = SyncConfig::from_lookup(env(&[
            ("SYNC_STATE_TABLE", "s"),
            ("DOWNSTREAM_URL", "https://p"),
        ]))
        .unwrap_err();
        assert_eq!(err, ConfigError::Missing("DOWNSTREAM_SECRET_ID"));
    }
}
