//! Structured logs. JSON lines in Lambda (CloudWatch indexes them), plain
//! text when a person runs the local stack in a terminal.

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

/// One metric in CloudWatch's embedded metric format: a JSON line on stdout
/// that CloudWatch Logs turns into a metric, with no API call and no
/// dependency. Dimensions are short names (instance, pull), never payloads.
pub fn metric(name: &str, value: f64, unit: &str, dimensions: &[(&str, &str)]) {
    println!(
        "{}",
        metric_line(
            name,
            value,
            unit,
            dimensions,
            time::OffsetDateTime::now_utc()
        )
    );
}

fn metric_line(
    name: &str,
    value: f64,
    unit: &str,
    dimensions: &[(&str, &str)],
    now: time::OffsetDateTime,
) -> String {
    let mut line = serde_json::Map::new();
    let names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    line.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": (now.unix_timestamp_nanos() / 1_000_000) as i64,
            "CloudWatchMetrics": [{
                "Namespace": METRICS_NAMESPACE,
                "Dimensions": [names],
                "Metrics": [{"Name": name, "Unit": unit}],
            }],
        }),
    );
    for (key, val) in dimensions {
        line.insert((*key).into(), serde_json::Value::String((*val).into()));
    }
    line.insert(name.into(), serde_json::json!(value));
    serde_json::Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_line_is_valid_embedded_metric_format() {
        let at = time::macros::datetime!(2026-11-24 12:00 UTC);
        let line: serde_json::Value = serde_json::from_str(&metric_line(
            "ApiCallsSpent",
            3.0,
            "Count",
            &[("Instance", "demo")],
            at,
        ))
        .unwrap();
        assert_eq!(line["_aws"]["Timestamp"], 1_795_521_600_000i64);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["Instance"]])
        );
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "ApiCallsSpent"
        );
        assert_eq!(line["Instance"], "demo");
        assert_eq!(line["ApiCallsSpent"], 3.0);
    }
}
