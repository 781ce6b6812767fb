//! One `SdkConfig`, loaded once per cold start, shared by every client.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Timeouts sized to Revel's 10 s deadline: a delivery makes at most three
/// sequential AWS calls, so each gets a few seconds including the SDK's
/// retries, and a dead endpoint is detected in about a second.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(1000))
        .operation_attempt_timeout(Duration::from_millis(1500))
        .operation_timeout(Duration::from_millis(2800))
        .build()
}

/// Loads region, credentials and endpoint the standard way (so
/// `AWS_ENDPOINT_URL` points everything at a local endpoint).
pub async fn load() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts())
        .load()
        .await
}
