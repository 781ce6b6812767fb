//! WineSitting's REST API, as far as the repair poll needs it: the orders
//! still in progress.
//!
//! **Assumption.** The seed documents say nothing of the API beyond "API
//! Keys" in WineSitting's dashboard. This client assumes:
//!
//! - `GET {base_url}/orders?status=in_progress` lists the account's orders
//!   still in progress, unpaginated;
//! - the key travels as `Authorization: Bearer {api_key}`;
//! - the answer is a JSON array of orders, or `{"data": [...]}`, each order
//!   the same object a webhook's `object` carries.
//!
//! The base URL is configuration (`WINESITTING_API_BASE_URL`), so a different
//! host or prefix needs no code change; a different path or shape does.
//!
//! Transient failures (429, 408, 5xx, timeouts, connection errors) are tried
//! once more after [`RETRY_PAUSE`]. The key is sent in a header marked
//! sensitive and is never kept by the client, nor put in an error, a `Debug`
//! or a log line; neither is a response body.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{StatusCode, Url};
use serde_json::Value;

/// The wait before the one retry of a transient failure.
pub const RETRY_PAUSE: Duration = Duration::from_millis(300);

/// Attempts per call, the first one included.
const MAX_ATTEMPTS: u32 = 2;

/// Why the orders could not be fetched. Holds no key and no body content.
#[derive(Debug, thiserror::Error)]
pub enum WineSittingApiError {
    /// 401/403: the API key is wrong or revoked; not retried.
    #[error("WineSitting refused the API key (HTTP {status})")]
    Unauthorized { status: u16 },
    /// 5xx, 429, 408, timeouts and connection errors, after the retry;
    /// `status` is `None` when the last attempt got no answer.
    #[error("WineSitting API unavailable (last status {status:?})")]
    Unavailable { status: Option<u16> },
    /// Any other answer that is not a success (other 4xx, and 3xx since
    /// redirects are not followed); not retried.
    #[error("WineSitting rejected the request (HTTP {status})")]
    Rejected { status: u16 },
    /// A success whose body is not the assumed shape.
    #[error("WineSitting answered with an unexpected body: {0}")]
    InvalidResponse(&'static str),
    /// Refused before any call: a base URL that is not a URL, or a key that
    /// cannot be a header value.
    #[error("invalid WineSitting API request: {0}")]
    InvalidRequest(&'static str),
}

impl WineSittingApiError {
    /// Whether the same call may succeed on a later run, as opposed to
    /// needing a fix (key, configuration, API shape).
    pub fn is_retryable_later(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// What one attempt came to.
enum Attempt {
    Done(Result<Vec<Value>, WineSittingApiError>),
    /// Transient; `status` is `None` when there was no answer.
    Retry {
        status: Option<u16>,
    },
}

/// WineSitting's orders still in progress, as the repair poll reads them:
/// [`WineSittingApi`], or a stand-in.
#[async_trait::async_trait]
pub trait WineSittingOrders: Send + Sync {
    /// The account's (by its `api_key`) orders still in progress.
    async fn orders_in_progress(&self, api_key: &str) -> Result<Vec<Value>, WineSittingApiError>;
}

#[async_trait::async_trait]
impl WineSittingOrders for WineSittingApi {
    async fn orders_in_progress(&self, api_key: &str) -> Result<Vec<Value>, WineSittingApiError> {
        WineSittingApi::orders_in_progress(self, api_key).await
    }
}

/// A client of WineSitting's REST API, shared by every account.
pub struct WineSittingApi {
    client: reqwest::Client,
    base_url: String,
}

impl fmt::Debug for WineSittingApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WineSittingApi")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl WineSittingApi {
    /// `timeout` applies per attempt, connection included.
    pub fn new(base_url: impl Into<String>, timeout: Duration) -> Self {
        let client = crate::http_client()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect would carry the key to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            // Only fails when the TLS backend cannot start, which no retry
            // or caller could fix: same as `reqwest::Client::new`.
            .expect("the HTTP client for WineSitting could not be built");
        Self {
            client,
            base_url: base_url.into(),
        }
    }

    /// The account's orders still in progress (see the module doc for the
    /// assumed endpoint).
    pub async fn orders_in_progress(
        &self,
        api_key: &str,
    ) -> Result<Vec<Value>, WineSittingApiError> {
        let url = self.url()?;
        let auth = bearer(api_key)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let status = match self.attempt(&url, &auth).await {
                Attempt::Done(result) => return result,
                Attempt::Retry { status } => status,
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(WineSittingApiError::Unavailable { status });
            }
            tracing::warn!(
                status = ?status,
                attempt,
                "WineSitting API call failed; retrying"
            );
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    fn url(&self) -> Result<Url, WineSittingApiError> {
        let url = format!("{}/orders", self.base_url.trim().trim_end_matches('/'));
        Url::parse(&url)
            .map_err(|_| WineSittingApiError::InvalidRequest("base URL is not a valid URL"))
    }

    async fn attempt(&self, url: &Url, auth: &HeaderValue) -> Attempt {
        let sent = self
            .client
            .get(url.clone())
            .header(AUTHORIZATION, auth.clone())
            .query(&[("status", "in_progress")])
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) if error.is_builder() => {
                return Attempt::Done(Err(WineSittingApiError::InvalidRequest(
                    "the request could not be built",
                )))
            }
            Err(error) => {
                tracing::debug!(
                    timeout = error.is_timeout(),
                    connect = error.is_connect(),
                    "WineSitting API call got no answer"
                );
                return Attempt::Retry { status: None };
            }
        };
        let status = response.status();
        let code = status.as_u16();
        if status.is_success() {
            return match response.bytes().await {
                Ok(body) => Attempt::Done(parse_orders(&body)),
                // The answer was cut off (timeout or connection reset).
                Err(_) => Attempt::Retry { status: Some(code) },
            };
        }
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            return Attempt::Retry { status: Some(code) };
        }
        Attempt::Done(Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                WineSittingApiError::Unauthorized { status: code }
            }
            _ => WineSittingApiError::Rejected { status: code },
        }))
    }
}

/// `Bearer {api_key}`, marked sensitive so `http`'s own `Debug` and HTTP/2
/// header compression treat it as a secret too.
fn bearer(api_key: &str) -> Result<HeaderValue, WineSittingApiError> {
    let key = api_key.trim();
    if key.is_empty() {
        return Err(WineSittingApiError::InvalidRequest("the API key is empty"));
    }
    let mut value = HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| {
        WineSittingApiError::InvalidRequest("the API key is not a valid header value")
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A JSON array of orders, or `{"data": [...]}`.
fn parse_orders(body: &[u8]) -> Result<Vec<Value>, WineSittingApiError> {
    const SHAPE: &str = "body is not a JSON array or an object with a `data` array";
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(orders)) => Ok(orders),
        Ok(Value::Object(mut envelope)) => match envelope.remove("data") {
            Some(Value::Array(orders)) => Ok(orders),
            _ => Err(WineSittingApiError::InvalidResponse(SHAPE)),
        },
        _ => Err(WineSittingApiError::InvalidResponse(SHAPE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wiremock::matchers::{header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const KEY: &str = "ws-key-5f0c1d2e";

    fn api(server: &MockServer) -> WineSittingApi {
        WineSittingApi::new(format!("{}/v1/", server.uri()), Duration::from_secs(2))
    }

    async fn requests(server: &MockServer) -> usize {
        server.received_requests().await.unwrap_or_default().len()
    }

    #[tokio::test]
    async fn the_bearer_header_and_the_status_query_are_sent() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v1/orders"))
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .and(query_param("status", "in_progress"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 1}])))
            .expect(1)
            .mount(&server)
            .await;

        let orders = api(&server).orders_in_progress(KEY).await.unwrap();

        assert_eq!(orders, vec![json!({"id": 1})]);
    }

    #[tokio::test]
    async fn an_array_and_a_data_envelope_both_parse() {
        for body in [
            json!([{"id": 1}, {"id": "b"}]),
            json!({"data": [{"id": 1}, {"id": "b"}], "total": 2}),
        ] {
            let server = MockServer::start().await;
            Mock::given(path("/v1/orders"))
                .respond_with(ResponseTemplate::new(200).set_body_json(&body))
                .mount(&server)
                .await;

            let orders = api(&server).orders_in_progress(KEY).await.unwrap();

            assert_eq!(orders, vec![json!({"id": 1}), json!({"id": "b"})], "{body}");
        }
    }

    #[tokio::test]
    async fn a_401_is_unauthorized_and_not_retried() {
        let server = MockServer::start().await;
        Mock::given(path("/v1/orders"))
            .respond_with(ResponseTemplate::new(401))
            .expect(1)
            .mount(&server)
            .await;

        let error = api(&server).orders_in_progress(KEY).await.unwrap_err();

        assert!(
            matches!(error, WineSittingApiError::Unauthorized { status: 401 }),
            "{error:?}"
        );
        assert!(!error.is_retryable_later());
    }

    #[tokio::test]
    async fn a_503_is_retried_once_and_then_unavailable() {
        let server = MockServer::start().await;
        Mock::given(path("/v1/orders"))
            .respond_with(ResponseTemplate::new(503))
            .expect(2)
            .mount(&server)
            .await;

        let error = api(&server).orders_in_progress(KEY).await.unwrap_err();

        assert!(
            matches!(
                error,
                WineSittingApiError::Unavailable { status: Some(503) }
            ),
            "{error:?}"
        );
        assert!(error.is_retryable_later());
        assert_eq!(requests(&server).await, 2);
    }

    #[tokio::test]
    async fn a_503_then_a_success_returns_the_orders() {
        let server = MockServer::start().await;
        Mock::given(path("/v1/orders"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(path("/v1/orders"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": 7}])))
            .mount(&server)
            .await;

        let orders = api(&server).orders_in_progress(KEY).await.unwrap();

        assert_eq!(orders, vec![json!({"id": 7})]);
    }

    #[tokio::test]
    async fn a_timeout_is_unavailable_without_a_status() {
        let server = MockServer::start().await;
        Mock::given(path("/v1/orders"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!([]))
                    .set_delay(Duration::from_millis(500)),
            )
            .mount(&server)
            .await;
        let api = WineSittingApi::new(format!("{}/v1", server.uri()), Duration::from_millis(50));

        let error = api.orders_in_progress(KEY).await.unwrap_err();

        assert!(
            matches!(error, WineSittingApiError::Unavailable { status: None }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_404_is_rejected_and_not_retried() {
        let server = MockServer::start().await;
        Mock::given(path("/v1/orders"))
            .respond_with(ResponseTemplate::new(404))
            .expect(1)
            .mount(&server)
            .await;

        let error = api(&server).orders_in_progress(KEY).await.unwrap_err();

        assert!(
            matches!(error, WineSittingApiError::Rejected { status: 404 }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_non_json_body_is_an_invalid_response() {
        for body in ["<html>maintenance</html>", r#"{"orders": []}"#, "42"] {
            let server = MockServer::start().await;
            Mock::given(path("/v1/orders"))
                .respond_with(ResponseTemplate::new(200).set_body_string(body))
                .expect(1)
                .mount(&server)
                .await;

            let error = api(&server).orders_in_progress(KEY).await.unwrap_err();

            assert!(
                matches!(error, WineSittingApiError::InvalidResponse(_)),
                "{body}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_empty_or_unprintable_key_is_refused_without_any_call() {
        let server = MockServer::start().await;
        let api = api(&server);

        for bad in ["", "  ", "line\nbreak"] {
            let error = api.orders_in_progress(bad).await.unwrap_err();
            assert!(
                matches!(error, WineSittingApiError::InvalidRequest(_)),
                "{bad:?}: {error:?}"
            );
        }
        assert_eq!(requests(&server).await, 0);
    }

    #[tokio::test]
    async fn the_key_never_appears_in_the_debug_of_the_client_or_of_an_error() {
        let server = MockServer::start().await;
        Mock::given(path("/v1/orders"))
            .respond_with(ResponseTemplate::new(403).set_body_string(format!("bad key {KEY}")))
            .mount(&server)
            .await;
        let api = api(&server);

        let error = api.orders_in_progress(KEY).await.unwrap_err();

        assert!(matches!(
            error,
            WineSittingApiError::Unauthorized { status: 403 }
        ));
        let others = [
            WineSittingApiError::Unavailable { status: None },
            WineSittingApiError::Rejected { status: 400 },
            WineSittingApiError::InvalidResponse("x"),
            bearer("bad\nkey").unwrap_err(),
        ];
        let mut printed = format!("{api:?} {error:?} {error}");
        for other in others {
            printed.push_str(&format!(" {other:?} {other}"));
        }
        printed.push_str(&format!(" {:?}", bearer(KEY).unwrap()));
        assert!(!printed.contains(KEY), "{printed}");
    }
}
