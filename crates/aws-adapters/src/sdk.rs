//! One `SdkConfig`, built once per cold start, shared by every client.
//!
//! Built from Lambda's environment alone rather than by
//! `aws_config::defaults().load()`: inside Lambda the region, the
//! credentials and (locally) the endpoint are always environment variables,
//! and the default loader links every other way of finding them (profiles,
//! IMDS, ECS, web identity through STS) into each binary, and the SDK's
//! default HTTPS client brings aws-lc. Rustls on ring does the same TLS in
//! less code, and the functions' other HTTPS clients (Revel's API, the
//! partner, WineSitting) use it too (`vendors::http_client`), so a binary carries
//! one TLS stack. Both are package size, and package size is cold-start
//! time; docs/performance.md has the numbers.

use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

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

/// Region (`AWS_REGION`, else `AWS_DEFAULT_REGION`), credentials
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, as
/// Lambda sets them) and `AWS_ENDPOINT_URL` (a local endpoint) from the
/// environment; the SDK's standard retries; rustls on ring for HTTPS. Kept
/// `async` so callers don't change if a source ever needs a call.
pub async fn load() -> SdkConfig {
    from_env(|name| std::env::var(name).ok())
}

fn from_env(var: impl Fn(&str) -> Option<String>) -> SdkConfig {
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .filter(|r| !r.is_empty())
        .map(Region::new);
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                .build_https(),
        )
        .retry_config(RetryConfig::standard())
        .timeout_config(timeouts())
        .time_source(aws_smithy_async::time::SystemTimeSource::new());
    if let Some(sleep) = aws_smithy_async::rt::sleep::default_async_sleep() {
        builder = builder.sleep_impl(sleep);
    }
    if let Some(url) = var("AWS_ENDPOINT_URL").filter(|u| !u.is_empty()) {
        builder = builder.endpoint_url(url);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> SdkConfig {
        from_env(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn the_region_and_endpoint_come_from_lambdas_variables() {
        let sdk = config(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ]);
        assert_eq!(sdk.region().map(Region::as_ref), Some("eu-west-1"));
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:4566"));
        assert!(sdk.http_client().is_some());
        assert!(sdk.credentials_provider().is_some());
    }

    #[test]
    fn without_aws_region_the_default_region_is_used_and_no_endpoint_means_aws() {
        let sdk = config(&[("AWS_DEFAULT_REGION", "us-east-2")]);
        assert_eq!(sdk.region().map(Region::as_ref), Some("us-east-2"));
        assert_eq!(sdk.endpoint_url(), None);
    }
}
