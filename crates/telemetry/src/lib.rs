//! Structured logs (JSON lines in Lambda, which CloudWatch indexes; plain
//! text when a person runs the local stack in a terminal) and the bundle's
//! metrics, in CloudWatch's embedded metric format. A leaf: it knows no
//! crate of the bundle, so every layer can log and count.

#[cfg(any(test, feature = "fakes"))]
pub mod fakes;

use time::OffsetDateTime;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops. The level
/// comes from `RUST_LOG` (template parameter `LogLevel`), default `info`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if in_lambda {
        // CloudWatch adds its own timestamp; ANSI colours would be noise.
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .without_time()
            .with_ansi(false)
            .try_init()
    } else {
        builder.try_init()
    };
    // Already installed (a test, or the local stack serving many functions).
    let _ = result;
}

/// CloudWatch namespace of the bundle's metrics.
pub const METRICS_NAMESPACE: &str = "RevelWebhookBundle";

/// Every metric the bundle emits. template.yaml's alarms and dashboard name
/// these, and a test holds the template to this list, so renaming one here
/// without the template fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// A request whose event was stored and applied (200 `accepted`).
    Accepted,
    /// A request whose event was already stored with all its effects (200 `duplicate`).
    Duplicate,
    /// A request refused (401, 413) or deferred (503), by [`RejectReason`].
    Rejected,
    /// A signed request that could not be understood, archived for replay (202).
    Quarantined,
    /// An event older than the entity's state: archived, the state left as is.
    Stale,
    /// A follow-up job queued by the processor.
    JobsEnqueued,
    /// A job that failed (to be retried, or parked in the DLQ), by error kind.
    JobFailures,
    /// A different body under an existing event key, kept under its own key.
    Conflicts,
    /// A request verified with secrets past their TTL, because Secrets
    /// Manager could not be read.
    SecretsStale,
    /// A newer change that left its entity as it was (a repeat collapsed).
    Unchanged,
    /// A stream record the processor skips, by reason (quarantined,
    /// unreadable, unknown kind).
    RecordsSkipped,
    /// A stream record the processor could not apply (retried by the event
    /// source mapping, then sent to the on-failure queue), by reason.
    ProcessingFailures,
    /// Revel API calls an instance has spent today.
    ApiCallsSpent,
    /// The same as a percentage of the daily budget, so one alarm threshold
    /// fits whatever `RevelApiDailyBudget` is.
    ApiBudgetUsedPercent,
    /// Orders whose webhook never came, ingested by reconciliation.
    ReconciledOrders,
    /// WineSitting orders whose webhook was lost, ingested by the repair poll.
    RepairedOrders,
    /// A Revel request whose `X-Revel-Event-Type` names another type than
    /// its route: stored as the route's type, and counted.
    EventTypeMismatches,
    /// A delivery to the partner that found no partner URL configured: it
    /// waits in the jobs DLQ (or on the queue) until the URL is set.
    DeliveriesWaiting,
    /// The partner's inventory requests (and deferred pulls), by what
    /// became of them (`Reason`: pulled, coalesced into the next hour's
    /// pull, not_upgraded, no_credentials).
    InventoryRequests,
    /// A setting in an instance's secret entry that can't be used (an
    /// unknown time zone, a malformed `end_of_day`): its default is used.
    UnusableSettings,
}

impl Metric {
    pub const ALL: [Metric; 20] = [
        Metric::Accepted,
        Metric::Duplicate,
        Metric::Rejected,
        Metric::Quarantined,
        Metric::Stale,
        Metric::JobsEnqueued,
        Metric::JobFailures,
        Metric::Conflicts,
        Metric::SecretsStale,
        Metric::Unchanged,
        Metric::RecordsSkipped,
        Metric::ProcessingFailures,
        Metric::ApiCallsSpent,
        Metric::ApiBudgetUsedPercent,
        Metric::ReconciledOrders,
        Metric::RepairedOrders,
        Metric::EventTypeMismatches,
        Metric::DeliveriesWaiting,
        Metric::InventoryRequests,
        Metric::UnusableSettings,
    ];

    /// The CloudWatch metric name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Accepted => "Accepted",
            Self::Duplicate => "Duplicate",
            Self::Rejected => "Rejected",
            Self::Quarantined => "Quarantined",
            Self::Stale => "Stale",
            Self::JobsEnqueued => "JobsEnqueued",
            Self::JobFailures => "JobFailures",
            Self::Conflicts => "Conflicts",
            Self::SecretsStale => "SecretsStale",
            Self::Unchanged => "Unchanged",
            Self::RecordsSkipped => "RecordsSkipped",
            Self::ProcessingFailures => "ProcessingFailures",
            Self::ApiCallsSpent => "ApiCallsSpent",
            Self::ApiBudgetUsedPercent => "ApiBudgetUsedPercent",
            Self::ReconciledOrders => "ReconciledOrders",
            Self::RepairedOrders => "RepairedOrders",
            Self::EventTypeMismatches => "EventTypeMismatches",
            Self::DeliveriesWaiting => "DeliveriesWaiting",
            Self::InventoryRequests => "InventoryRequests",
            Self::UnusableSettings => "UnusableSettings",
        }
    }

    pub const fn unit(self) -> Unit {
        match self {
            Self::ApiBudgetUsedPercent => Unit::Percent,
            _ => Unit::Count,
        }
    }

    /// The dimensions of the aggregate series that alarms and the dashboard
    /// read. Alarms can't name an instance they don't know of, so every
    /// metric is also published without its per-event dimensions; rejections
    /// keep their reason (the alarm is on `unauthorized` alone).
    pub const fn rollup(self) -> &'static [Dimension] {
        match self {
            Self::Rejected
            | Self::RecordsSkipped
            | Self::ProcessingFailures
            | Self::InventoryRequests => &[Dimension::Reason],
            _ => &[],
        }
    }
}

/// A dimension's name. Values are short names (a source, an event type, a
/// validated instance name, a reason code), never payload or secret content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Source,
    EventType,
    Instance,
    Reason,
}

impl Dimension {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Source => "Source",
            Self::EventType => "EventType",
            Self::Instance => "Instance",
            Self::Reason => "Reason",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Percent,
}

impl Unit {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Percent => "Percent",
        }
    }
}

/// Why a receiver did not accept a request: the `Reason` of [`Metric::Rejected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// 401: bad or missing signature or token, unknown instance.
    Unauthorized,
    /// 413.
    PayloadTooLarge,
    /// 503: a dependency failed; the sender retries.
    Unavailable,
}

impl RejectReason {
    pub const ALL: [RejectReason; 3] =
        [Self::Unauthorized, Self::PayloadTooLarge, Self::Unavailable];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unavailable => "unavailable",
        }
    }
}

/// Adds one to `metric`.
pub fn count(metric: Metric, dimensions: &[(Dimension, &str)]) {
    record(metric, 1.0, dimensions);
}

/// One value of `metric` in CloudWatch's embedded metric format: a JSON line
/// on stdout that CloudWatch Logs turns into a metric, with no API call and
/// no dependency. Outside Lambda (tests, the local stack, the operator tool)
/// nothing reads stdout for metrics, so the line goes to the debug log.
pub fn record(metric: Metric, value: f64, dimensions: &[(Dimension, &str)]) {
    let line = emf_line(metric, value, dimensions, OffsetDateTime::now_utc());
    if in_lambda() {
        println!("{line}");
    } else {
        tracing::debug!(metric = %line, "metric");
    }
}

fn in_lambda() -> bool {
    static IN_LAMBDA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN_LAMBDA.get_or_init(|| std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some())
}

/// The dimensions of one event's metrics (stale, jobs enqueued).
pub fn event_dimensions<'a>(
    source: &'a str,
    event_type: &'a str,
    instance: &'a str,
) -> [(Dimension, &'a str); 3] {
    [
        (Dimension::Source, source),
        (Dimension::EventType, event_type),
        (Dimension::Instance, instance),
    ]
}

/// Source, event type and instance from `{source}:{instance}:{event_type}:{identity}`.
pub fn key_dimensions(key: &str) -> Vec<(Dimension, &str)> {
    let mut parts = key.splitn(4, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(source), Some(instance), Some(event_type), Some(_)) => {
            event_dimensions(source, event_type, instance).to_vec()
        }
        // Not a key this bundle built: counted in the total only.
        _ => Vec::new(),
    }
}

/// Longest dimension value kept; the names used are far shorter.
const MAX_DIMENSION_VALUE: usize = 64;

/// A value a sender chose (a header naming an event type), fit for a log
/// line: the same letters a dimension keeps, so it can't carry free text.
pub fn short_text(raw: &str) -> String {
    dimension_value(raw)
}

/// Letters, digits, `.`, `_` and `-`, at most [`MAX_DIMENSION_VALUE`]: a
/// dimension can't carry free text, however it was called.
fn dimension_value(raw: &str) -> String {
    raw.chars()
        .take(MAX_DIMENSION_VALUE)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn emf_line(
    metric: Metric,
    value: f64,
    dimensions: &[(Dimension, &str)],
    now: OffsetDateTime,
) -> String {
    let all: Vec<&str> = dimensions.iter().map(|(d, _)| d.name()).collect();
    let rollup: Vec<&str> = metric
        .rollup()
        .iter()
        .filter(|d| dimensions.iter().any(|(given, _)| given == *d))
        .map(|d| d.name())
        .collect();
    let mut sets = vec![rollup];
    if all.len() > sets[0].len() {
        sets.push(all);
    }
    let mut line = serde_json::Map::new();
    line.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": (now.unix_timestamp_nanos() / 1_000_000) as i64,
            "CloudWatchMetrics": [{
                "Namespace": METRICS_NAMESPACE,
                "Dimensions": sets,
                "Metrics": [{"Name": metric.name(), "Unit": metric.unit().as_str()}],
            }],
        }),
    );
    for (dimension, raw) in dimensions {
        line.insert(
            dimension.name().into(),
            serde_json::Value::String(dimension_value(raw)),
        );
    }
    line.insert(metric.name().into(), serde_json::json!(value));
    serde_json::Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(line: &str) -> Value {
        serde_json::from_str(line).expect("one JSON object per line")
    }

    fn at() -> OffsetDateTime {
        time::macros::datetime!(2026-11-24 12:00 UTC)
    }

    #[test]
    fn a_line_declares_its_metric_unit_namespace_and_timestamp_and_holds_the_value() {
        let line = parse(&emf_line(
            Metric::ApiBudgetUsedPercent,
            81.5,
            &[(Dimension::Instance, "demo")],
            at(),
        ));
        let aws = &line["_aws"];
        assert_eq!(aws["Timestamp"], 1_795_521_600_000i64);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], METRICS_NAMESPACE);
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "ApiBudgetUsedPercent", "Unit": "Percent"}])
        );
        assert_eq!(line["Instance"], "demo");
        assert_eq!(line["ApiBudgetUsedPercent"], 81.5);
    }

    #[test]
    fn a_metric_is_published_both_as_a_total_and_per_dimension() {
        let line = parse(&emf_line(
            Metric::Accepted,
            1.0,
            &event_dimensions("revel", "order.finalized", "demo"),
            at(),
        ));
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[], ["Source", "EventType", "Instance"]])
        );
        assert_eq!(line["Source"], "revel");
        assert_eq!(line["EventType"], "order.finalized");
        assert_eq!(line["Accepted"], 1.0);
    }

    #[test]
    fn rejections_are_totalled_by_reason_so_the_alarm_can_name_one() {
        let line = parse(&emf_line(
            Metric::Rejected,
            1.0,
            &[(Dimension::Reason, RejectReason::Unauthorized.as_str())],
            at(),
        ));
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Reason"]])
        );
        assert_eq!(line["Reason"], "unauthorized");
    }

    #[test]
    fn a_dimension_value_cannot_carry_free_text() {
        let long = "x".repeat(500);
        let line = parse(&emf_line(
            Metric::Quarantined,
            1.0,
            &[
                (Dimension::Reason, "card 4111 1111\n{\"a\":1}"),
                (Dimension::Instance, &long),
            ],
            at(),
        ));
        assert_eq!(line["Reason"], "card_4111_1111___a__1_");
        assert_eq!(
            line["Instance"].as_str().unwrap().len(),
            MAX_DIMENSION_VALUE
        );
    }

    #[test]
    fn metric_names_are_distinct() {
        let names: std::collections::HashSet<_> = Metric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names.len(), Metric::ALL.len());
    }

    #[test]
    fn a_bundle_keys_dimensions_are_its_source_event_type_and_instance_and_a_foreign_key_has_none()
    {
        assert_eq!(key_dimensions("odd"), Vec::new());
        assert_eq!(
            key_dimensions("revel:demo:order.finalized:o-1@1"),
            vec![
                (Dimension::Source, "revel"),
                (Dimension::EventType, "order.finalized"),
                (Dimension::Instance, "demo"),
            ]
        );
    }
}
