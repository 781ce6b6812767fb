//! `status [NAME]`: each instance's health, one line per thing that can go
//! wrong, each healthy or unhealthy with the reason, and the bundle's own
//! lines (the jobs queue, its DLQ, the partner's endpoint). Exit code 6
//! when any line is unhealthy, so a script or a cron job can alert on it.
//!
//! What is unhealthy, and why:
//! - an event quarantined in the last 24 h: a body the parser did not
//!   understand waits for a fix and a replay;
//! - today's API budget spent: pulls wait until the next UTC day;
//! - a pull whose checkpoint lags more than 48 h (6 h for the 2-hourly
//!   inventory of the retailer option): end-of-day runs are not completing;
//! - an unusable setting in the instance's entry (its default is in use);
//! - jobs parked in the DLQ: deliveries or writes gave up and wait for a
//!   redrive;
//! - the partner's endpoint not answering now (a connection refused, a
//!   timeout or a 5xx), which is what deliveries will meet.
//!
//! A webhook type that has sent nothing yet is not unhealthy: a new
//! instance, or a merchant who has no rewards cards, sends none.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use domain::ids::InstanceName;
use ports::secrets::InstanceSettings;
use ports::store::{EventStatus, Origin};
use ports::sync_state::{CallBudget, SyncState};
use serde_json::json;
use time::OffsetDateTime;
use vendors::revel::RevelEventType;

use crate::context::Context;
use crate::error::OpsError;
use crate::events::{scan, Filters, Summary};
use crate::output::{self, rfc3339_micros};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this instance (default: every instance of the Revel secret document).
    pub name: Option<String>,
    /// The partner's endpoint, probed with one request (the functions'
    /// `DOWNSTREAM_URL`).
    #[arg(
        long,
        env = "DOWNSTREAM_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub downstream_url: Option<String>,
}

const DAY_MICROS: i64 = 86_400_000_000;
const PULL_LAG: Duration = Duration::from_secs(48 * 3600);
const INVENTORY_2H_LAG: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Healthy,
    Unhealthy,
    /// Could not be judged (nothing configured to check).
    Unknown,
}

impl Health {
    fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Unknown => "unknown",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
struct Line {
    /// The instance, or `bundle`.
    scope: String,
    check: String,
    health: Health,
    detail: String,
}

fn line(scope: &str, check: impl Into<String>, health: Health, detail: impl Into<String>) -> Line {
    Line {
        scope: scope.to_owned(),
        check: check.into(),
        health,
        detail: detail.into(),
    }
}

/// `3 min ago`, `2 h ago`, `5 d ago`.
fn age(micros: i64, now: i64) -> String {
    let seconds = (now - micros).max(0) / 1_000_000;
    match seconds {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 2 * 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}

/// The lines about `instance`'s webhooks: per Revel action the last one
/// seen, and the quarantined and conflicting events of the last 24 h.
fn webhook_lines(
    instance: &InstanceName,
    settings: &InstanceSettings,
    events: &[&Summary],
    at: OffsetDateTime,
) -> Vec<Line> {
    let scope = instance.as_str();
    let now = (at.unix_timestamp_nanos() / 1000) as i64;
    // "Today" on the merchant's clock: since its local midnight.
    let local = pipeline::schedule::local_time(settings, at);
    let midnight = pipeline::schedule::instant_at(settings, local.date().midnight());
    let today_from = (midnight.unix_timestamp_nanos() / 1000) as i64;
    let mut lines = Vec::new();
    for action in RevelEventType::ALL {
        // Only what Revel sent: an order a reconciliation or a backfill
        // fetched is no sign of its webhook.
        let of_type: Vec<_> = events
            .iter()
            .filter(|e| e.event_type == action.name() && e.origin == Origin::Webhook)
            .collect();
        let today = of_type
            .iter()
            .filter(|e| e.received_at_micros >= today_from)
            .count();
        let detail = match of_type.iter().map(|e| e.received_at_micros).max() {
            Some(last) => format!(
                "last {} ({}), {today} today",
                rfc3339_micros(last),
                age(last, now)
            ),
            None => "none received yet".to_owned(),
        };
        lines.push(line(
            scope,
            format!("webhook {}", action.name()),
            Health::Healthy,
            detail,
        ));
    }
    let recent: Vec<_> = events
        .iter()
        .filter(|e| e.received_at_micros > now - DAY_MICROS)
        .collect();
    let quarantined = recent
        .iter()
        .filter(|e| e.status == EventStatus::Quarantined)
        .count();
    let conflicts = recent.iter().filter(|e| e.conflict_of.is_some()).count();
    let today = events
        .iter()
        .filter(|e| e.received_at_micros >= today_from)
        .count();
    lines.push(if quarantined > 0 {
        line(
            scope,
            "events",
            Health::Unhealthy,
            format!("{quarantined} quarantined in 24 h (`revel-ops events list --status quarantined --instance {scope}`), {conflicts} conflict(s); {today} today, {} in 24 h", recent.len()),
        )
    } else {
        line(
            scope,
            "events",
            Health::Healthy,
            format!("{today} today, {} in 24 h, none quarantined, {conflicts} conflict(s) in 24 h", recent.len()),
        )
    });
    lines
}

/// The pulls' checkpoints of `instance` and their lag.
async fn pull_lines(
    context: &Context,
    instance: &InstanceName,
    settings: &InstanceSettings,
    now: OffsetDateTime,
) -> Result<Vec<Line>, OpsError> {
    let state = context.sync_state()?;
    let scope = instance.as_str();
    let mut lines = Vec::new();
    let cursors = crate::state::cursor_names(context, instance).await?;
    let pulls: Vec<_> = cursors
        .into_iter()
        .filter(|name| {
            !name.starts_with("schedule.") && !name.starts_with(pipeline::backfill::PLAN_CURSOR)
        })
        .collect();
    if pulls.is_empty() {
        lines.push(line(
            scope,
            "pulls",
            Health::Healthy,
            "none has run yet (the first end of day runs them)",
        ));
    }
    for name in pulls {
        let cursor = state.load(instance, &name).await?;
        let Some(checkpoint) = cursor.checkpoint.as_deref() else {
            lines.push(line(
                scope,
                format!("pull {name}"),
                Health::Healthy,
                "first run under way",
            ));
            continue;
        };
        let Some(at) = domain::sources::parse_timestamp_micros(checkpoint) else {
            lines.push(line(
                scope,
                format!("pull {name}"),
                Health::Unhealthy,
                "its checkpoint does not read as a time",
            ));
            continue;
        };
        let now_micros = (now.unix_timestamp_nanos() / 1000) as i64;
        let limit = if name.starts_with("inventory.") && settings.inventory_every_2h {
            INVENTORY_2H_LAG
        } else {
            PULL_LAG
        };
        let lag = Duration::from_micros((now_micros - at).max(0) as u64);
        let under_way = if cursor.run.is_some() {
            ", a run under way"
        } else {
            ""
        };
        let detail = format!(
            "checkpoint {checkpoint} ({}){under_way}",
            age(at, now_micros)
        );
        lines.push(if lag > limit {
            line(
                scope,
                format!("pull {name}"),
                Health::Unhealthy,
                format!("{detail}: lags more than {} h", limit.as_secs() / 3600),
            )
        } else {
            line(scope, format!("pull {name}"), Health::Healthy, detail)
        });
    }
    Ok(lines)
}

/// The partner's endpoint answers now: any HTTP answer but a 5xx (it
/// refuses an unsigned probe, as it should).
async fn probe(url: &str) -> Line {
    let client = match vendors::http_client()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(_) => return line("bundle", "partner", Health::Unknown, "no HTTP client"),
    };
    let started = std::time::Instant::now();
    match client.get(url).send().await {
        Ok(answer) if answer.status().is_server_error() => line(
            "bundle",
            "partner",
            Health::Unhealthy,
            format!(
                "its endpoint answered HTTP {}: deliveries are failing",
                answer.status().as_u16()
            ),
        ),
        Ok(answer) => line(
            "bundle",
            "partner",
            Health::Healthy,
            format!(
                "its endpoint answered (HTTP {} to an unsigned probe) in {} ms",
                answer.status().as_u16(),
                started.elapsed().as_millis()
            ),
        ),
        Err(error) => line(
            "bundle",
            "partner",
            Health::Unhealthy,
            format!(
                "its endpoint did not answer ({}): deliveries wait and retry",
                if error.is_timeout() {
                    "timed out after 5 s"
                } else if error.is_connect() {
                    "connection refused or unreachable"
                } else {
                    "request failed"
                }
            ),
        ),
    }
}

async fn queue_lines(context: &Context) -> Result<Vec<Line>, OpsError> {
    let mut lines = Vec::new();
    if let Ok(url) = context.jobs_queue_url() {
        let waiting = crate::dlq::waiting(context, url).await?;
        lines.push(line(
            "bundle",
            "jobs queue",
            Health::Healthy,
            format!("{waiting} waiting"),
        ));
    }
    if let Ok(url) = context.dlq_url() {
        let parked = crate::dlq::waiting(context, url).await?;
        lines.push(if parked > 0 {
            line(
                "bundle",
                "jobs DLQ",
                Health::Unhealthy,
                format!("{parked} parked (`revel-ops dlq redrive --dry-run`)"),
            )
        } else {
            line("bundle", "jobs DLQ", Health::Healthy, "empty")
        });
    }
    Ok(lines)
}

pub async fn run(context: &Context, args: &StatusArgs) -> Result<(), OpsError> {
    let only = args
        .name
        .as_deref()
        .map(InstanceName::parse)
        .transpose()
        .map_err(|e| OpsError::Invalid {
            what: "instance name",
            why: e.to_string(),
        })?;
    let document = context.revel_instances().await?;
    let instances: Vec<_> = document
        .all_settings()
        .into_iter()
        .filter(|(instance, _)| only.as_ref().is_none_or(|o| o == instance))
        .collect();
    if let (Some(only), true) = (&only, instances.is_empty()) {
        return Err(OpsError::NoInstance(only.to_string()));
    }
    let now = OffsetDateTime::now_utc();
    let filters = Filters {
        source: Some(vendors::revel::NAME.as_str().to_owned()),
        instance: only.as_ref().map(|o| o.to_string()),
        ..Filters::default()
    };
    let events = scan(context, &filters, None, None).await?;
    let mut by_instance: BTreeMap<&str, Vec<&Summary>> = BTreeMap::new();
    for event in &events {
        by_instance
            .entry(event.instance.as_str())
            .or_default()
            .push(event);
    }
    let state = context.sync_state()?;
    let budgets = context.instance_budgets(&document)?;
    let mut lines = Vec::new();
    for (instance, settings) in &instances {
        let scope = instance.as_str();
        for problem in &settings.unusable {
            lines.push(line(
                scope,
                "settings",
                Health::Unhealthy,
                format!("{problem}: its default is in use (`revel-ops instance update {scope}`)"),
            ));
        }
        let events = by_instance.get(scope).map(Vec::as_slice).unwrap_or(&[]);
        lines.extend(webhook_lines(instance, settings, events, now));
        if document.api_credentials(instance).is_some() {
            let (spent, limit) = (
                budgets.spent_today(instance).await?,
                budgets.limit_of(instance).await?,
            );
            lines.push(if spent >= limit {
                line(
                    scope,
                    "api budget",
                    Health::Unhealthy,
                    format!("spent {spent} of {limit} calls today: pulls wait until 00:00 UTC"),
                )
            } else {
                line(
                    scope,
                    "api budget",
                    Health::Healthy,
                    format!("{spent} of {limit} calls spent today"),
                )
            });
            lines.extend(pull_lines(context, instance, settings, now).await?);
            if let Some(progress) = pipeline::backfill::progress(&state, instance).await? {
                let done = progress.resources.iter().filter(|r| r.done).count();
                lines.push(line(
                    scope,
                    "backfill",
                    Health::Healthy,
                    if progress.is_done() {
                        "done".to_owned()
                    } else {
                        format!(
                            "{done} of {} resources imported (`revel-ops backfill status`)",
                            progress.resources.len()
                        )
                    },
                ));
            }
        } else {
            lines.push(line(
                scope,
                "api",
                Health::Healthy,
                "no API credentials: webhooks only, nothing scheduled",
            ));
        }
    }
    lines.extend(queue_lines(context).await?);
    lines.push(
        match args
            .downstream_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        {
            Some(url) => probe(url.trim()).await,
            None => line(
                "bundle",
                "partner",
                Health::Unknown,
                "DOWNSTREAM_URL is not set (or pass --downstream-url)",
            ),
        },
    );
    let unhealthy = lines
        .iter()
        .filter(|l| l.health == Health::Unhealthy)
        .count();
    let mut out = String::new();
    for l in &lines {
        if context.json {
            out.push_str(&json!({"scope": l.scope, "check": l.check, "health": l.health.as_str(), "detail": l.detail}).to_string());
            out.push('\n');
        } else {
            out.push_str(&format!(
                "{:<9} {:<16} {:<26} {}\n",
                l.health.as_str(),
                l.scope,
                l.check,
                l.detail
            ));
        }
    }
    if !context.json {
        out.push_str(&if unhealthy == 0 {
            format!("all healthy ({} instance(s))\n", instances.len())
        } else {
            format!("{unhealthy} unhealthy line(s)\n")
        });
    }
    output::print(&out)?;
    if unhealthy > 0 {
        return Err(OpsError::Unhealthy(format!("{unhealthy} line(s)")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(event_type: &str, at: OffsetDateTime, status: &str, origin: &str) -> Summary {
        serde_json::from_value(json!({
            "event_key": format!("revel:labar:{event_type}:x{}", at.unix_timestamp()),
            "source": "revel", "instance": "labar", "event_type": event_type,
            "status": status, "received_at": (at.unix_timestamp_nanos() / 1000) as i64,
            "origin": origin, "body_bytes": 2, "expires_at": 0,
        }))
        .unwrap()
    }

    #[test]
    fn today_is_the_merchants_day_and_a_quarantined_event_of_the_last_24_hours_is_unhealthy() {
        use time::macros::datetime;
        let labar = InstanceName::parse("labar").unwrap();
        let la = InstanceSettings::defaults(
            domain::local_time::Zone::parse("America/Los_Angeles").unwrap(),
        );
        // 10:00Z is 02:00 in Los Angeles: its day began at 08:00Z.
        let now = datetime!(2026-11-30 10:00 UTC);
        let events = [
            received(
                "order.finalized",
                datetime!(2026-11-30 07:00 UTC),
                "received",
                "webhook",
            ),
            received(
                "order.finalized",
                datetime!(2026-11-30 09:00 UTC),
                "received",
                "webhook",
            ),
            received(
                "order.finalized",
                datetime!(2026-11-30 09:30 UTC),
                "received",
                "reconciliation",
            ),
        ];
        let lines = webhook_lines(&labar, &la, &events.iter().collect::<Vec<_>>(), now);
        let orders = lines
            .iter()
            .find(|l| l.check == "webhook order.finalized")
            .unwrap();
        assert!(
            orders.detail.ends_with("(60 min ago), 1 today"),
            "{orders:?}"
        );
        let all = lines.iter().find(|l| l.check == "events").unwrap();
        assert_eq!(all.health, Health::Healthy);
        assert!(all.detail.starts_with("2 today, 3 in 24 h"), "{all:?}");

        let bad = [received(
            "customer.created",
            datetime!(2026-11-29 11:00 UTC),
            "quarantined",
            "webhook",
        )];
        let lines = webhook_lines(&labar, &la, &bad.iter().collect::<Vec<_>>(), now);
        assert_eq!(
            lines.iter().find(|l| l.check == "events").unwrap().health,
            Health::Unhealthy
        );
        let old = [received(
            "customer.created",
            datetime!(2026-11-29 09:00 UTC),
            "quarantined",
            "webhook",
        )];
        let lines = webhook_lines(&labar, &la, &old.iter().collect::<Vec<_>>(), now);
        assert_eq!(
            lines.iter().find(|l| l.check == "events").unwrap().health,
            Health::Healthy
        );
    }

    #[test]
    fn an_age_is_said_in_the_unit_an_operator_reads() {
        let now = 10 * DAY_MICROS;
        assert_eq!(age(now - 30_000_000, now), "30 s ago");
        assert_eq!(age(now - 600_000_000, now), "10 min ago");
        assert_eq!(age(now - 5 * 3_600_000_000, now), "5 h ago");
        assert_eq!(age(now - 3 * DAY_MICROS, now), "3 d ago");
    }
}
