//! `instance add` and `instance update`: one entry of the Revel secret
//! document, checked the way the functions will read it, then written.
//!
//! The settings are validated by the functions' own parser
//! ([`ports::secrets::InstanceSecrets`]) on the entry about to be written,
//! so whatever this command accepts is what the functions will use; the
//! secrets by their shape (never quoted back). The API credentials are
//! tried with one cheap call before anything is written.

use clap::Args;
use domain::ids::InstanceName;
use domain::local_time::Zone;
use ports::secrets::{InstanceSecrets, SecretDocument, DAILY_API_BUDGETS};
use serde_json::{json, Map, Value};
use vendors::functions::Kind;
use vendors::revel::api::{
    ApiCredentials, PageRequest, RevelApi, RevelApiConfig, RevelApiError, RevelResources,
};
use vendors::revel::RevelEventType;

use super::document::RevelDocument;
use super::{instance_name, WriteArgs};
use crate::context::Context;
use crate::error::OpsError;
use crate::output;

/// What an entry holds, as flags. Secrets may come from the environment
/// instead, so they stay out of the shell's history.
#[derive(Debug, Clone, Args)]
pub struct EntryArgs {
    /// The instance's REST API key (Revel: Settings › API).
    #[arg(long, env = "REVEL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The instance's REST API secret.
    #[arg(long, env = "REVEL_API_SECRET", hide_env_values = true)]
    pub api_secret: Option<String>,
    /// The secret Revel signs the instance's webhooks with; `add` makes a
    /// new random one when none is given.
    #[arg(long, env = "REVEL_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// The merchant's time zone (IANA, `America/Los_Angeles`); default: the
    /// deployment's `DEFAULT_TIME_ZONE`.
    #[arg(long, value_name = "ZONE")]
    pub time_zone: Option<String>,
    /// Revel API calls the instance may make a day; default: the
    /// deployment's `REVEL_API_DAILY_BUDGET`.
    #[arg(long, value_name = "CALLS")]
    pub daily_api_budget: Option<u64>,
    /// When its day ends, on its clock (`HH:MM`, default 23:55).
    #[arg(long, value_name = "HH:MM")]
    pub end_of_day: Option<String>,
    /// The retailer upgrade option: inventory every 2 hours and on demand.
    #[arg(long, value_name = "true|false")]
    pub inventory_every_2h: Option<bool>,
}

/// Where the webhooks go and where Revel's API is.
#[derive(Debug, Clone, Args)]
pub struct UrlArgs {
    /// The bundle's webhook API (the stack output `WebhookApiUrl`; `make
    /// local` prints its own).
    #[arg(long, env = "WEBHOOK_API_URL", value_name = "URL")]
    pub webhook_api_url: Option<String>,
    /// Revel's REST API, `{instance}` replaced by the instance's name.
    #[arg(
        long,
        env = "REVEL_API_BASE_URL",
        default_value = "https://{instance}.revelup.com",
        value_name = "URL"
    )]
    pub revel_api_base_url: String,
    /// Write without calling Revel to check the API credentials.
    #[arg(long)]
    pub skip_api_check: bool,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The instance's name, as in its Revel address: `mybar` for
    /// mybar.revelup.com.
    pub name: String,
    #[command(flatten)]
    pub entry: EntryArgs,
    #[command(flatten)]
    pub urls: UrlArgs,
    #[command(flatten)]
    pub backfill: crate::backfill::PlanArgs,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The instance to change.
    pub name: String,
    #[command(flatten)]
    pub entry: EntryArgs,
    /// Ends a rotation: only the newest webhook secret is accepted from now
    /// on (a new `--webhook-secret` keeps the old one accepted meanwhile).
    #[arg(long, conflicts_with = "webhook_secret")]
    pub drop_old_webhook_secret: bool,
    #[command(flatten)]
    pub urls: UrlArgs,
    #[command(flatten)]
    pub write: WriteArgs,
}

fn invalid(what: &'static str, why: impl Into<String>) -> OpsError {
    OpsError::Invalid {
        what,
        why: why.into(),
    }
}

/// An API key or secret: what Revel issues is letters and digits; a colon
/// or a space would break the `API-AUTHENTICATION: key:secret` header.
fn api_credential(what: &'static str, raw: &str) -> Result<String, OpsError> {
    let ok = (8..=128).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(invalid(
            what,
            "must be 8 to 128 letters, digits, '-' or '_' (the value is not shown)",
        ))
    }
}

/// A webhook secret an operator chose: long enough to resist guessing, and
/// something Revel's settings page takes (no spaces).
fn webhook_secret(raw: &str) -> Result<String, OpsError> {
    let ok = (16..=256).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(invalid(
            "--webhook-secret",
            "must be 16 to 256 printable characters without spaces (the value is not shown)",
        ))
    }
}

/// The webhook secrets `entry` holds, newest first, as the functions
/// read them.
fn webhook_secrets(instance: &InstanceName, entry: &Map<String, Value>) -> Vec<String> {
    let document = SecretDocument(json!({ instance.as_str(): entry }).to_string());
    InstanceSecrets::parse(&document)
        .ok()
        .and_then(|parsed| {
            let secrets = parsed.get(instance)?;
            Some(secrets.iter().map(|s| s.expose().to_owned()).collect())
        })
        .unwrap_or_default()
}

/// 32 random bytes, hex: what `add` gives an instance whose secret was not chosen.
fn new_webhook_secret() -> Result<String, OpsError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| invalid("random source", e.to_string()))?;
    Ok(hex::encode(bytes))
}

fn url(what: &'static str, raw: &str) -> Result<String, OpsError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
            Ok(trimmed.to_owned())
        }
        _ => Err(invalid(what, "must be an http(s) URL")),
    }
}

/// `entry` with the flags applied: secrets checked, settings put as given
/// (the parser judges them next).
fn apply(mut entry: Map<String, Value>, args: &EntryArgs) -> Result<Map<String, Value>, OpsError> {
    if let Some(key) = &args.api_key {
        entry.insert("api_key".into(), json!(api_credential("--api-key", key)?));
    }
    if let Some(secret) = &args.api_secret {
        entry.insert(
            "api_secret".into(),
            json!(api_credential("--api-secret", secret)?),
        );
    }
    if let Some(secret) = &args.webhook_secret {
        entry.insert("webhook".into(), json!([webhook_secret(secret)?]));
    }
    if let Some(zone) = &args.time_zone {
        entry.insert("time_zone".into(), json!(zone.trim()));
    }
    if let Some(calls) = args.daily_api_budget {
        if !DAILY_API_BUDGETS.contains(&calls) {
            return Err(invalid(
                "--daily-api-budget",
                format!(
                    "must be {} to {} calls",
                    DAILY_API_BUDGETS.start(),
                    DAILY_API_BUDGETS.end()
                ),
            ));
        }
        entry.insert("daily_api_budget".into(), json!(calls));
    }
    if let Some(at) = &args.end_of_day {
        entry.insert("end_of_day".into(), json!(at.trim()));
    }
    if let Some(on) = args.inventory_every_2h {
        entry.insert("inventory_every_2h".into(), json!(on));
    }
    Ok(entry)
}

/// `entry` as the functions will read it: refused when a setting would be
/// ignored, the webhook secret is missing, or only one of the API key and
/// secret is there. Its credentials, when it has them (an instance whose
/// entry predates them receives webhooks only).
fn checked(
    instance: &InstanceName,
    entry: &Map<String, Value>,
    default_zone: &Zone,
) -> Result<(Option<ApiCredentials>, ports::secrets::InstanceSettings), OpsError> {
    let document = SecretDocument(json!({ instance.as_str(): entry }).to_string());
    let parsed = InstanceSecrets::parse_with(&document, default_zone)
        .map_err(|e| invalid("entry", e.to_string()))?;
    if parsed.get(instance).is_none() {
        return Err(invalid("entry", "it has no webhook secret"));
    }
    let settings = parsed.settings(instance);
    if let Some(problem) = settings.unusable.first() {
        return Err(invalid("setting", problem.clone()));
    }
    let credentials = match (
        entry.contains_key("api_key"),
        entry.contains_key("api_secret"),
    ) {
        (false, false) => None,
        (true, true) => parsed.api_credentials(instance).cloned(),
        _ => None.ok_or_else(|| invalid("entry", "--api-key and --api-secret are both needed"))?,
    };
    Ok((credentials, settings))
}

/// One cheap call with the credentials: the first object of the
/// instance's establishments (counted against its budget like any call).
async fn check_api(
    context: &Context,
    instance: &InstanceName,
    credentials: &ApiCredentials,
    base_url: &str,
) -> Result<(), OpsError> {
    let config = RevelApiConfig {
        base_url: base_url.to_owned(),
        page_size: 1,
        // One call: a check is not worth a second of the instance's budget.
        max_attempts: 1,
        ..RevelApiConfig::default()
    };
    let api = RevelApi::new(config, std::sync::Arc::new(context.sync_state()?));
    let request = PageRequest {
        resource: "Establishment".into(),
        filters: Vec::new(),
        offset: 0,
    };
    match api.page(instance, credentials, &request).await {
        Ok(_) => Ok(()),
        Err(RevelApiError::Unauthorized { status }) => Err(invalid(
            "API credentials",
            format!("Revel refused them (HTTP {status}); nothing was written"),
        )),
        Err(RevelApiError::NotFound) => Err(invalid(
            "instance name",
            "Revel knows no such instance (HTTP 404); nothing was written",
        )),
        Err(error) => Err(OpsError::Unreadable {
            what: "Revel's API".into(),
            why: format!(
                "{error}; nothing was written (--skip-api-check writes without the check)"
            ),
        }),
    }
}

/// Tries the credentials when `try_them` (and the operator did not say
/// `--skip-api-check`), then writes `entry`: nothing is written when Revel
/// refuses them. True when they were tried.
async fn write(
    context: &Context,
    document: &mut RevelDocument,
    instance: &InstanceName,
    entry: &Map<String, Value>,
    credentials: Option<&ApiCredentials>,
    urls: &UrlArgs,
    try_them: bool,
) -> Result<bool, OpsError> {
    let tried = match credentials {
        Some(credentials) if try_them && !urls.skip_api_check => {
            check_api(context, instance, credentials, &urls.revel_api_base_url).await?;
            true
        }
        _ => false,
    };
    document.set(instance.as_str(), entry.clone());
    document.write(context).await?;
    Ok(tried)
}

/// Each Revel webhook action and the URL to paste for it.
fn webhook_urls(base: &str) -> Vec<(&'static str, String)> {
    RevelEventType::ALL
        .into_iter()
        .map(|action| {
            (
                action.name(),
                format!("{base}{}", Kind::Revel(action).function().route()),
            )
        })
        .collect()
}

pub async fn add(context: &Context, args: &AddArgs) -> Result<(), OpsError> {
    let instance = instance_name(&args.name)?;
    let base = match &args.urls.webhook_api_url {
        Some(raw) => url("--webhook-api-url", raw)?,
        None => {
            return Err(OpsError::Missing {
                env: "WEBHOOK_API_URL",
                flag: "webhook-api-url",
            })
        }
    };
    if args.entry.api_key.is_none() || args.entry.api_secret.is_none() {
        return Err(invalid(
            "entry",
            "--api-key and --api-secret are both needed",
        ));
    }
    let plan = args.backfill.plan()?;
    let mut document = RevelDocument::read(context).await?;
    if document.contains(instance.as_str()) {
        return Err(OpsError::Conflict(
            "the instance is already connected; `instance update` changes it",
        ));
    }
    let mut entry = apply(Map::new(), &args.entry)?;
    let chosen_secret = entry.contains_key("webhook");
    if !chosen_secret {
        entry.insert("webhook".into(), json!([new_webhook_secret()?]));
    }
    let (credentials, settings) = checked(&instance, &entry, &context.default_zone()?)?;
    let credentials = credentials
        .ok_or_else(|| invalid("entry", "--api-key and --api-secret are both needed"))?;
    let made = entry["webhook"][0].as_str().unwrap_or_default().to_owned();
    let change = Change {
        verb: "add",
        instance: &instance,
        entry: &entry,
        settings: &settings,
        urls: Some(webhook_urls(&base)),
        secret: match (chosen_secret, args.write.dry_run) {
            (true, _) => Secret::Given,
            (false, true) => Secret::WouldBeMade,
            (false, false) => Secret::Made(&made),
        },
        instances_after: document.len() + 1,
    };
    if plan.is_some() {
        // Before anything is written: a plan that would be refused after
        // the entry was written would leave half a change.
        crate::backfill::check_plannable(context, &instance).await?;
    }
    if args.write.dry_run {
        change.print(context, Written::DryRun)?;
        if let Some(plan) = &plan {
            crate::backfill::show_plan(context, &instance, plan, true)?;
        }
        return Ok(());
    }
    let checked_api = write(
        context,
        &mut document,
        &instance,
        &entry,
        Some(&credentials),
        &args.urls,
        true,
    )
    .await?;
    change.print(context, Written::Yes { checked_api })?;
    if let Some(plan) = &plan {
        crate::backfill::start(context, &instance, plan).await?;
    }
    Ok(())
}

pub async fn update(context: &Context, args: &UpdateArgs) -> Result<(), OpsError> {
    let instance = instance_name(&args.name)?;
    let base = args
        .urls
        .webhook_api_url
        .as_deref()
        .map(|raw| url("--webhook-api-url", raw))
        .transpose()?;
    let mut document = RevelDocument::read(context).await?;
    let Some(before) = document.entry_object(instance.as_str()) else {
        return Err(OpsError::NoInstance(instance.to_string()));
    };
    let mut entry = apply(before.clone(), &args.entry)?;
    let old_secrets = webhook_secrets(&instance, &before);
    let rotated = match (&args.entry.webhook_secret, old_secrets.first()) {
        // The old secret stays accepted until Revel signs with the new one.
        (Some(new), Some(old)) if new != old => {
            entry.insert("webhook".into(), json!([new, old]));
            true
        }
        _ => false,
    };
    if args.drop_old_webhook_secret {
        let Some(newest) = old_secrets.first() else {
            return Err(invalid(
                "--drop-old-webhook-secret",
                "the entry has no webhook secret",
            ));
        };
        entry.insert("webhook".into(), json!([newest]));
    }
    if entry == before {
        return Err(invalid(
            "update",
            "no change given (see --help for what can change)",
        ));
    }
    let (credentials, settings) = checked(&instance, &entry, &context.default_zone()?)?;
    let change = Change {
        verb: "update",
        instance: &instance,
        entry: &entry,
        settings: &settings,
        urls: base.as_deref().map(webhook_urls),
        secret: match (&args.entry.webhook_secret, rotated) {
            (None, _) => Secret::Unchanged,
            (Some(_), true) => Secret::Rotated,
            (Some(_), false) => Secret::Given,
        },
        instances_after: document.len(),
    };
    if args.write.dry_run {
        return change.print(context, Written::DryRun);
    }
    let credentials_changed = ["api_key", "api_secret"]
        .iter()
        .any(|field| entry.get(*field) != before.get(*field));
    let checked_api = write(
        context,
        &mut document,
        &instance,
        &entry,
        credentials.as_ref(),
        &args.urls,
        credentials_changed,
    )
    .await?;
    change.print(context, Written::Yes { checked_api })
}

/// The webhook secret, as the operator is told of it: shown only when it
/// was made here and written, the one time it can be read.
enum Secret<'a> {
    Made(&'a str),
    /// Made here, but nothing is written (a dry run).
    WouldBeMade,
    /// The operator gave it (`--webhook-secret`): not echoed.
    Given,
    /// Rotated to the one given; the old one is still accepted.
    Rotated,
    Unchanged,
}

enum Written {
    DryRun,
    Yes { checked_api: bool },
}

/// What a command did (or would do), for the operator.
struct Change<'a> {
    verb: &'static str,
    instance: &'a InstanceName,
    entry: &'a Map<String, Value>,
    settings: &'a ports::secrets::InstanceSettings,
    urls: Option<Vec<(&'static str, String)>>,
    /// What to say of the webhook secret to enter in Revel.
    secret: Secret<'a>,
    instances_after: usize,
}

/// The entry with every secret replaced by its length.
fn masked(entry: &Map<String, Value>) -> Value {
    let mut shown = entry.clone();
    for field in ["api_key", "api_secret", "webhook", "token"] {
        if let Some(value) = shown.get_mut(field) {
            let length = |v: &Value| v.as_str().map_or(0, str::len);
            *value = match &*value {
                Value::Array(items) => json!(items
                    .iter()
                    .map(|v| format!("<{} characters>", length(v)))
                    .collect::<Vec<_>>()),
                other => json!(format!("<{} characters>", length(other))),
            };
        }
    }
    Value::Object(shown)
}

impl Change<'_> {
    fn print(&self, context: &Context, written: Written) -> Result<(), OpsError> {
        let budget = self.settings.api_budget(context.resources.daily_budget);
        if context.json {
            let line = json!({
                "instance": self.instance.as_str(),
                "action": self.verb,
                "written": matches!(written, Written::Yes { .. }),
                "api_check": match written {
                    Written::Yes { checked_api: true } => "accepted",
                    _ => "not made",
                },
                "entry": masked(self.entry),
                "time_zone": self.settings.time_zone.name(),
                "daily_api_budget": budget,
                "webhooks": self.urls.as_ref().map(|urls| urls.iter()
                    .map(|(action, url)| json!({"action": action, "url": url}))
                    .collect::<Vec<_>>()),
                "webhook_secret": match self.secret {
                    Secret::Made(secret) => Some(secret),
                    _ => None,
                },
            });
            return output::print(&format!("{line}\n"));
        }
        let mut out = String::new();
        match written {
            Written::DryRun => out.push_str(&format!(
                "dry run: `instance {}` would write this entry for {} to the Revel secret document (secrets shown by length); nothing was written or called:\n  {}\n",
                self.verb,
                self.instance,
                masked(self.entry)
            )),
            Written::Yes { checked_api } => {
                out.push_str(&format!(
                    "{} {}: the Revel secret document now holds {} instance(s); the functions read it within their cache TTL (no redeploy)\n",
                    if self.verb == "add" { "added" } else { "updated" },
                    self.instance,
                    self.instances_after
                ));
                out.push_str(if checked_api {
                    "  API credentials: accepted by Revel (1 call)\n"
                } else {
                    "  API credentials: not checked\n"
                });
            }
        }
        out.push_str(&format!(
            "  time zone {}, end of day {:02}:{:02}, inventory every 2 h: {}, API budget {budget} calls a day\n",
            self.settings.time_zone.name(),
            self.settings.end_of_day.hour(),
            self.settings.end_of_day.minute(),
            if self.settings.inventory_every_2h { "yes" } else { "no" },
        ));
        if let Some(urls) = &self.urls {
            out.push_str(&format!(
                "\nIn Revel (Settings › Webhooks) for {}, add one webhook per action:\n",
                self.instance
            ));
            for (action, url) in urls {
                out.push_str(&format!("  {action:<20} {url}\n"));
            }
        }
        out.push_str(&match self.secret {
            Secret::Made(secret) => {
                format!("  secret (the same for every action): {secret}\n")
            }
            Secret::WouldBeMade => {
                "  secret: a new random one, made and shown when written\n".to_owned()
            }
            Secret::Given => {
                "  secret: the one given with --webhook-secret (not shown)\n".to_owned()
            }
            Secret::Rotated => format!(
                "  secret: the one given with --webhook-secret (not shown); the old one is still accepted until `revel-ops instance update {} --drop-old-webhook-secret`, once Revel signs with the new one\n",
                self.instance
            ),
            Secret::Unchanged => "  secret: unchanged (not shown)\n".to_owned(),
        });
        output::print(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_revel_action_gets_the_route_of_its_function_under_the_api() {
        let urls = webhook_urls("https://abc.execute-api.us-east-1.amazonaws.com");
        assert_eq!(urls.len(), 6);
        assert_eq!(
            urls[0],
            (
                "order.finalized",
                "https://abc.execute-api.us-east-1.amazonaws.com/revel/orders/finalized".into()
            )
        );
        assert!(urls
            .iter()
            .any(|(a, u)| *a == "inout.stock" && u.ends_with("/revel/stock/changed")));
    }

    #[test]
    fn a_malformed_credential_is_refused_without_showing_it() {
        for bad in [
            "short",
            "has:colon-in-it",
            "with space inside",
            &"x".repeat(129),
        ] {
            let error = api_credential("--api-key", bad).unwrap_err().to_string();
            assert!(error.contains("--api-key"), "{error}");
            assert!(!error.contains(bad), "{error}");
        }
        assert!(api_credential("--api-key", "a1b2c3d4e5f6").is_ok());
    }

    #[test]
    fn the_functions_parser_judges_the_settings_before_anything_is_written() {
        let demo = InstanceName::parse("demo").unwrap();
        let entry = |extra: Value| {
            let mut entry = json!({"webhook": ["0123456789abcdef"], "api_key": "key12345", "api_secret": "secret12"});
            entry
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            entry.as_object().unwrap().clone()
        };
        let utc = Zone::utc();
        let (_, settings) = checked(
            &demo,
            &entry(json!({"time_zone": "America/Los_Angeles", "daily_api_budget": 300})),
            &utc,
        )
        .unwrap();
        assert_eq!(settings.time_zone.name(), "America/Los_Angeles");
        assert_eq!(settings.daily_api_budget, Some(300));
        for (bad, why) in [
            (
                json!({"time_zone": "America/Springfield"}),
                "America/Springfield",
            ),
            (json!({"end_of_day": "24:30"}), "end_of_day"),
        ] {
            let error = checked(&demo, &entry(bad), &utc).unwrap_err().to_string();
            assert!(error.contains(why), "{error}");
        }
        let mut no_secret = entry(json!({}));
        no_secret.remove("api_secret");
        assert!(checked(&demo, &no_secret, &utc).is_err());
    }

    #[test]
    fn the_dry_run_shows_secrets_only_by_length() {
        let entry =
            json!({"webhook": ["0123456789abcdef"], "api_key": "key12345", "time_zone": "UTC"});
        let shown = masked(entry.as_object().unwrap()).to_string();
        assert!(
            !shown.contains("0123456789abcdef") && !shown.contains("key12345"),
            "{shown}"
        );
        assert!(
            shown.contains("<16 characters>") && shown.contains("UTC"),
            "{shown}"
        );
    }
}
