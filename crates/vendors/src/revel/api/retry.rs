//! The attempt loop: which failures are tried again, and after how long.
//! Transient failures (429, 5xx, 408, timeouts, connection errors) are
//! retried with exponential backoff and full jitter, or after `Retry-After`
//! when Revel sends one, each wait capped; every attempt first spends one
//! call from the budget.

use std::future::Future;
use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

use domain::ids::InstanceName;
use ports::sync_state::CallBudget;

use super::{RevelApiConfig, RevelApiError};

/// What one attempt came to.
pub(super) enum Attempt<T> {
    /// Success or a failure that retrying cannot fix (or must not try to).
    Done(Result<T, RevelApiError>),
    /// A transient failure; `status` is `None` when there was no answer.
    Retry {
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
}

/// Runs attempts until one is done, spending one call from `budget` before
/// each (so a run that would go over stops before Revel cuts it off), and
/// waiting between them as `config` says.
pub(super) async fn with_retries<T, F, Fut>(
    budget: &dyn CallBudget,
    config: &RevelApiConfig,
    instance: &InstanceName,
    resource: &str,
    method: &str,
    mut send: F,
) -> Result<T, RevelApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let max_attempts = config.max_attempts.max(1);

    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        budget.spend_one(instance).await?;
        let (status, retry_after) = match send().await {
            Attempt::Done(result) => return result,
            Attempt::Retry {
                status,
                retry_after,
            } => (status, retry_after),
        };
        if attempt >= max_attempts {
            return Err(RevelApiError::Unavailable {
                attempts: attempt,
                last_status: status,
            });
        }
        let delay = match retry_after {
            Some(wait) => wait.min(config.max_backoff),
            None => full_jitter(config.base_backoff, config.max_backoff, attempt),
        };
        tracing::warn!(
            instance = %instance,
            resource = %resource,
            method,
            status = ?status,
            attempt,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "Revel API call failed; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// 408, 429 and 5xx may succeed when asked again.
pub(super) fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// The `Retry-After` of an answer, when there is a readable one.
pub(super) fn retry_after_of(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| retry_after_delay(value, OffsetDateTime::now_utc()))
}

/// `Retry-After` as a wait from `now`: delta seconds or an HTTP date (a date
/// in the past means "now"). `None` when unreadable, so backoff applies.
fn retry_after_delay(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // HTTP dates (IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT") are RFC 2822
    // dates with the obsolete "GMT" zone, which `time` accepts.
    let at = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    let wait = at - now;
    Some(if wait.is_negative() {
        Duration::ZERO
    } else {
        wait.unsigned_abs()
    })
}

/// Full jitter: a uniform wait in `[0, min(max, base * 2^(retry - 1))]`,
/// `retry` counting from 1, so that many runs that failed together do not
/// come back together.
fn full_jitter(base: Duration, max: Duration, retry: u32) -> Duration {
    let factor = 2u32
        .checked_pow(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    let ceiling = base.saturating_mul(factor).min(max);
    let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=ceiling_nanos))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::revel::api::testing::*;
    use crate::revel::api::{RevelApi, RevelApiError, RevelResources};

    #[tokio::test]
    async fn a_429_is_retried_after_its_retry_after_and_then_succeeds() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ok(&[7]))
            .expect(1)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);

        let page = api(&server, budget.clone())
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap();

        assert_eq!(page.objects, vec![json!({"id": 7})]);
        assert_eq!(budget.used(), 2);
    }

    #[tokio::test]
    async fn a_retry_after_longer_than_max_backoff_is_capped() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "3600"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ok(&[1]))
            .mount(&server)
            .await;

        let started = std::time::Instant::now();
        let page = api(&server, FixedBudget::new(10))
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap();

        assert_eq!(page.objects.len(), 1);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_503_four_times_is_unavailable_after_four_attempts() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ResponseTemplate::new(503))
            .expect(4)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);

        let error = api(&server, budget.clone())
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap_err();

        assert!(
            matches!(
                error,
                RevelApiError::Unavailable {
                    attempts: 4,
                    last_status: Some(503)
                }
            ),
            "{error:?}"
        );
        assert!(error.is_retryable_later());
        assert_eq!(budget.used(), 4);
    }

    #[tokio::test]
    async fn a_timeout_is_retried_and_then_unavailable_without_a_status() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ok(&[1]).set_delay(Duration::from_millis(500)))
            .mount(&server)
            .await;
        let config = RevelApiConfig {
            timeout: Duration::from_millis(50),
            max_attempts: 2,
            ..config(&server)
        };
        let budget = FixedBudget::new(10);

        let error = RevelApi::new(config, budget.clone())
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap_err();

        assert!(
            matches!(
                error,
                RevelApiError::Unavailable {
                    attempts: 2,
                    last_status: None
                }
            ),
            "{error:?}"
        );
        assert_eq!(budget.used(), 2);
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = OffsetDateTime::parse("Sun, 06 Nov 1994 08:49:37 GMT", &Rfc2822).unwrap();
        assert_eq!(retry_after_delay("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after_delay("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after_delay("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after_delay("soon", now), None);
    }

    #[test]
    fn full_jitter_stays_within_the_doubled_ceiling_and_the_maximum() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(300);
        for _ in 0..200 {
            assert!(full_jitter(base, max, 1) <= base);
            assert!(full_jitter(base, max, 2) <= 2 * base);
            assert!(full_jitter(base, max, 40) <= max);
        }
    }
}
