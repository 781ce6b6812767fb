//! Revel's REST API: `{base}/resources/{Resource}/`, paginated, rate limited,
//! every call counted against the instance's daily budget first.
//!
//! Revel limits calls per instance and per day, so the budget is spent
//! *before* each HTTP attempt, retries included: a run that would go over
//! stops with [`RevelApiError::BudgetExhausted`] instead of being cut off by
//! Revel halfway through. Transient failures (429, 5xx, 408, timeouts,
//! connection errors) are retried with exponential backoff and full jitter,
//! or after `Retry-After` when Revel sends one.
//!
//! The credentials travel only in the `API-AUTHENTICATION` header, marked
//! sensitive; they are never part of a `Debug`, an error or a log line, and
//! neither is a response body.
//!
//! Writes ([`RevelResources::create`], [`RevelResources::update`]) are budgeted the same
//! way. `update` is a PATCH of absolute values, so sending it twice does no
//! harm and it is retried like a GET. `create` is not: it is retried only
//! when Revel certainly did not act (429, 503, a connection that could not
//! be made); any other failure after the request may have reached Revel is
//! [`RevelApiError::Ambiguous`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use time::format_description::well_known::Rfc2822;
use time::OffsetDateTime;

use domain::error::DependencyError;
use domain::ids::InstanceName;
pub use ports::secrets::ApiCredentials;
use ports::sync_state::{BudgetError, CallBudget};

/// The header Revel reads `{api_key}:{api_secret}` from.
const AUTH_HEADER: &str = "API-AUTHENTICATION";

/// Resource names go into the URL path; anything longer than this is not a
/// Revel resource.
const MAX_RESOURCE_LEN: usize = 64;

/// Object ids go into the URL path too; Revel's are numbers or UUIDs.
const MAX_ID_LEN: usize = 64;

/// How to reach Revel and how hard to try.
#[derive(Debug, Clone)]
pub struct RevelApiConfig {
    /// `https://{instance}.revelup.com`; tests use `http://127.0.0.1:PORT/{instance}`. `{instance}` is replaced.
    pub base_url: String,
    /// Per attempt, connection included. Default 10 s.
    pub timeout: Duration,
    /// Attempts per page, the first one included. Default 4.
    pub max_attempts: u32,
    /// First backoff ceiling, doubled per retry, with full jitter. Default 500 ms.
    pub base_backoff: Duration,
    /// Ceiling of every wait, `Retry-After` included. Default 20 s.
    pub max_backoff: Duration,
    /// The `limit` query parameter. Default 100.
    pub page_size: u32,
}

impl Default for RevelApiConfig {
    fn default() -> Self {
        Self {
            base_url: "https://{instance}.revelup.com".to_owned(),
            timeout: Duration::from_secs(10),
            max_attempts: 4,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            page_size: 100,
        }
    }
}

/// One request for one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// `Product`, `Order`, ...: ASCII letters and digits only.
    pub resource: String,
    /// Field filters sent after `format`, `limit` and `offset`, in this order,
    /// e.g. `("updated_date__gte", "2024-01-01T00:00:00")`.
    pub filters: Vec<(String, String)>,
    pub offset: u64,
}

/// One page of objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub objects: Vec<serde_json::Value>,
    /// offset of the next page, from meta.next (its `offset` query parameter), None on the last page
    pub next_offset: Option<u64>,
    pub total_count: Option<u64>,
}

/// Why a page could not be fetched. Holds no credential and no body content.
#[derive(Debug, thiserror::Error)]
pub enum RevelApiError {
    /// Stop the run cleanly; nothing was called.
    #[error("daily Revel API budget of {limit} calls is spent")]
    BudgetExhausted { limit: u64 },
    /// The budget store failed; nothing was called.
    #[error("the Revel API call budget could not be checked")]
    Budget(#[source] DependencyError),
    /// 401/403: the credentials are wrong; not retried.
    #[error("Revel refused the API credentials (HTTP {status})")]
    Unauthorized { status: u16 },
    /// 404.
    #[error("Revel resource not found (HTTP 404)")]
    NotFound,
    /// Any other answer that is neither success nor transient (4xx except
    /// 408/429, and unexpected 1xx/3xx, since redirects are not followed);
    /// not retried.
    #[error("Revel rejected the request (HTTP {status})")]
    Rejected { status: u16 },
    /// 429/5xx/408/timeouts/connection errors after `max_attempts`;
    /// `last_status` is `None` when the last attempt got no answer.
    #[error("Revel API unavailable after {attempts} attempts (last status {last_status:?})")]
    Unavailable {
        attempts: u32,
        last_status: Option<u16>,
    },
    /// A write (only [`RevelResources::create`]) failed after it may have reached
    /// Revel: a timeout, a connection lost after sending, a 408 or a 5xx
    /// other than 503 (`status` is `None` when there was no answer), or a
    /// 2xx whose body was cut off. The object may or may not have been
    /// created: look it up before trying again, or it may be created twice.
    /// Not retried.
    #[error("Revel may or may not have acted on the write (status {status:?}); look it up before trying again")]
    Ambiguous { status: Option<u16> },
    /// A 2xx whose body is not the documented shape (after a write, Revel
    /// did act on it).
    #[error("Revel answered with an unexpected body: {0}")]
    InvalidResponse(&'static str),
    /// The request was refused before any call (bad resource name or id,
    /// bad base URL, credentials that cannot be a header, a body that cannot
    /// be serialized).
    #[error("invalid Revel API request: {0}")]
    InvalidRequest(&'static str),
}

impl RevelApiError {
    /// Whether the same request may succeed on a later run (tomorrow's
    /// budget, a store or Revel that is back), as opposed to needing a fix.
    /// True for [`Self::Ambiguous`] too, but that retry must first look up
    /// whether the object was created.
    pub fn is_retryable_later(&self) -> bool {
        matches!(
            self,
            Self::BudgetExhausted { .. }
                | Self::Budget(_)
                | Self::Unavailable { .. }
                | Self::Ambiguous { .. }
        )
    }
}

impl From<BudgetError> for RevelApiError {
    fn from(value: BudgetError) -> Self {
        match value {
            BudgetError::Exhausted { limit } => Self::BudgetExhausted { limit },
            BudgetError::Unavailable(source) => Self::Budget(source),
        }
    }
}

/// The documented body: `{"meta": {...}, "objects": [...]}`.
#[derive(Deserialize)]
struct Envelope {
    meta: Meta,
    objects: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    total_count: Option<u64>,
}

/// The `API-AUTHENTICATION` value of `credentials`.
fn auth_header(credentials: &ApiCredentials) -> Result<HeaderValue, RevelApiError> {
    credentials
        .key_and_secret_header()
        .map_err(|_| RevelApiError::InvalidRequest("credentials are not a valid header value"))
}

/// What one attempt came to.
enum Attempt<T> {
    /// Success or a failure that retrying cannot fix (or must not try to).
    Done(Result<T, RevelApiError>),
    /// A transient failure; `status` is `None` when there was no answer.
    Retry {
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
}

/// The two writes, which differ in whether sending twice is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// POST: not idempotent.
    Create,
    /// PATCH with absolute values: idempotent.
    Update,
}

impl Write {
    fn method(self) -> Method {
        match self {
            Self::Create => Method::POST,
            Self::Update => Method::PATCH,
        }
    }

    fn is_idempotent(self) -> bool {
        matches!(self, Self::Update)
    }

    /// Whether a failed attempt that got `status` may be sent again: only
    /// when Revel certainly did not act, unless the write is idempotent.
    fn retries(self, status: StatusCode) -> bool {
        if self.is_idempotent() {
            is_transient(status)
        } else {
            status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// Revel's resources as the worker uses them: pages of a resource, and the
/// two writes. [`RevelApi`] is the HTTP client; the simulation has a stand-in.
#[async_trait]
pub trait RevelResources: Send + Sync {
    async fn page(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        request: &PageRequest,
    ) -> Result<Page, RevelApiError>;
    async fn create(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        resource: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, RevelApiError>;
    async fn update(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        resource: &str,
        id: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, RevelApiError>;
}

/// A client of Revel's REST API, shared by every instance.
pub struct RevelApi {
    client: reqwest::Client,
    config: RevelApiConfig,
    budget: Arc<dyn CallBudget>,
}

impl fmt::Debug for RevelApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevelApi")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RevelResources for RevelApi {
    /// GET one page; every HTTP attempt (retries included) first spends one call from the budget.
    async fn page(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        request: &PageRequest,
    ) -> Result<Page, RevelApiError> {
        // Everything that can be refused is refused before the budget is touched.
        check_resource(&request.resource)?;
        let url = self.url(instance, &request.resource)?;
        let auth = auth_header(credentials)?;
        self.with_retries(instance, &request.resource, "GET", || {
            self.attempt(&url, &auth, request)
        })
        .await
    }

    /// Creates an object: POST `{base}/resources/{resource}/?format=json`
    /// with `body` as JSON; returns the created object, which Revel answers
    /// with (201). When Revel answers 201 or 204 with an empty body, nothing
    /// more is fetched and the result is `Value::Null`.
    ///
    /// Not idempotent, so retried (each attempt spending one call) only on
    /// 429, 503 and connections that could not be made. A timeout, a 408, a
    /// 5xx other than 503 or a connection lost after sending is
    /// [`RevelApiError::Ambiguous`]: look the object up before creating it
    /// again. 400/422 are [`RevelApiError::Rejected`].
    async fn create(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        resource: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, RevelApiError> {
        check_resource(resource)?;
        let url = self.url(instance, resource)?;
        self.write(instance, credentials, Write::Create, resource, url, body)
            .await
    }

    /// Updates fields of one object: PATCH
    /// `{base}/resources/{resource}/{id}/?format=json` with `body` as JSON;
    /// returns the updated object (200). When Revel answers 202 or 204
    /// without a body, the result is `Value::Null`.
    ///
    /// A PATCH of absolute values is idempotent, so it is retried exactly
    /// like [`RevelResources::page`]. `id` is ASCII letters, digits and `-`, 1 to
    /// 64 characters.
    async fn update(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        resource: &str,
        id: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, RevelApiError> {
        check_resource(resource)?;
        check_id(id)?;
        let url = self.url(instance, resource)?;
        // Both parts were checked, so joining cannot escape the resource.
        let url = url
            .join(&format!("{id}/"))
            .map_err(|_| RevelApiError::InvalidRequest("object id does not make a valid URL"))?;
        self.write(instance, credentials, Write::Update, resource, url, body)
            .await
    }
}

impl RevelApi {
    pub fn new(config: RevelApiConfig, budget: Arc<dyn CallBudget>) -> Self {
        let client = crate::http_client()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // A redirect would carry the credentials header to wherever it
            // points; Revel has no reason to redirect an API call.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            // Only fails when the TLS backend cannot start, which no retry
            // or caller could fix: same as `reqwest::Client::new`.
            .expect("the HTTP client for Revel could not be built");
        Self {
            client,
            config,
            budget,
        }
    }

    async fn write(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        write: Write,
        resource: &str,
        url: Url,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, RevelApiError> {
        let auth = auth_header(credentials)?;
        // Serialized once, before the budget is touched.
        let body = serde_json::to_vec(body)
            .map_err(|_| RevelApiError::InvalidRequest("the body cannot be serialized"))?;
        let method = write.method();
        self.with_retries(instance, resource, method.as_str(), || {
            self.write_attempt(write, &url, &auth, &body)
        })
        .await
    }

    /// Runs attempts until one is done, spending one call from the budget
    /// before each, and waiting between them.
    async fn with_retries<T, F, Fut>(
        &self,
        instance: &InstanceName,
        resource: &str,
        method: &str,
        mut send: F,
    ) -> Result<T, RevelApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let max_attempts = self.config.max_attempts.max(1);

        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.budget.spend_one(instance).await?;
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
                Some(wait) => wait.min(self.config.max_backoff),
                None => full_jitter(self.config.base_backoff, self.config.max_backoff, attempt),
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

    /// `{base_url with instance}/resources/{resource}/`.
    fn url(&self, instance: &InstanceName, resource: &str) -> Result<Url, RevelApiError> {
        let base = self
            .config
            .base_url
            .replace("{instance}", instance.as_str());
        let url = format!("{}/resources/{resource}/", base.trim_end_matches('/'));
        Url::parse(&url).map_err(|_| RevelApiError::InvalidRequest("base URL is not a valid URL"))
    }

    async fn attempt(&self, url: &Url, auth: &HeaderValue, request: &PageRequest) -> Attempt<Page> {
        let fixed = [
            ("format", "json".to_owned()),
            ("limit", self.config.page_size.to_string()),
            ("offset", request.offset.to_string()),
        ];
        let sent = self
            .client
            .get(url.clone())
            .header(AUTH_HEADER, auth.clone())
            .query(&fixed)
            .query(&request.filters)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) if error.is_builder() => {
                return Attempt::Done(Err(RevelApiError::InvalidRequest(
                    "the request could not be built",
                )))
            }
            Err(error) => {
                // The error's URL holds the filters only, but its kind is
                // all that is needed to tell what happened.
                tracing::debug!(
                    timeout = error.is_timeout(),
                    connect = error.is_connect(),
                    "Revel API call got no answer"
                );
                return Attempt::Retry {
                    status: None,
                    retry_after: None,
                };
            }
        };

        let status = response.status();
        if status.is_success() {
            return match response.bytes().await {
                Ok(body) => Attempt::Done(parse_page(&body, request.offset)),
                // The answer was cut off (timeout or connection reset).
                Err(_) => Attempt::Retry {
                    status: Some(status.as_u16()),
                    retry_after: None,
                },
            };
        }
        if is_transient(status) {
            return Attempt::Retry {
                status: Some(status.as_u16()),
                retry_after: retry_after_of(&response),
            };
        }
        Attempt::Done(Err(refusal(status)))
    }

    async fn write_attempt(
        &self,
        write: Write,
        url: &Url,
        auth: &HeaderValue,
        body: &[u8],
    ) -> Attempt<serde_json::Value> {
        let sent = self
            .client
            .request(write.method(), url.clone())
            .header(AUTH_HEADER, auth.clone())
            .header(CONTENT_TYPE, "application/json")
            .query(&[("format", "json")])
            .body(body.to_vec())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) if error.is_builder() => {
                return Attempt::Done(Err(RevelApiError::InvalidRequest(
                    "the request could not be built",
                )))
            }
            Err(error) => {
                tracing::debug!(
                    timeout = error.is_timeout(),
                    connect = error.is_connect(),
                    "Revel API write got no answer"
                );
                // A connection that could not be made carried nothing.
                return if write.is_idempotent() || error.is_connect() {
                    Attempt::Retry {
                        status: None,
                        retry_after: None,
                    }
                } else {
                    Attempt::Done(Err(RevelApiError::Ambiguous { status: None }))
                };
            }
        };

        let status = response.status();
        if status.is_success() {
            return match response.bytes().await {
                Ok(body) => Attempt::Done(parse_object(&body)),
                // Revel acted, but the answer was cut off.
                Err(_) if write.is_idempotent() => Attempt::Retry {
                    status: Some(status.as_u16()),
                    retry_after: None,
                },
                Err(_) => Attempt::Done(Err(RevelApiError::Ambiguous {
                    status: Some(status.as_u16()),
                })),
            };
        }
        if write.retries(status) {
            return Attempt::Retry {
                status: Some(status.as_u16()),
                retry_after: retry_after_of(&response),
            };
        }
        if is_transient(status) {
            // Only reached by `create`: a 408 or 5xx other than 503.
            return Attempt::Done(Err(RevelApiError::Ambiguous {
                status: Some(status.as_u16()),
            }));
        }
        Attempt::Done(Err(refusal(status)))
    }
}

/// The error of an answer that is neither success nor transient.
fn refusal(status: StatusCode) -> RevelApiError {
    let code = status.as_u16();
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            RevelApiError::Unauthorized { status: code }
        }
        StatusCode::NOT_FOUND => RevelApiError::NotFound,
        _ => RevelApiError::Rejected { status: code },
    }
}

/// The `Retry-After` of an answer, when there is a readable one.
fn retry_after_of(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| retry_after_delay(value, OffsetDateTime::now_utc()))
}

/// A resource name goes into the URL path, so it is letters and digits only.
fn check_resource(resource: &str) -> Result<(), RevelApiError> {
    if resource.is_empty() || resource.len() > MAX_RESOURCE_LEN {
        return Err(RevelApiError::InvalidRequest(
            "resource name must be 1 to 64 characters",
        ));
    }
    if !resource.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(RevelApiError::InvalidRequest(
            "resource name must be ASCII letters and digits",
        ));
    }
    Ok(())
}

/// An object id goes into the URL path, so it is letters, digits and `-` only.
fn check_id(id: &str) -> Result<(), RevelApiError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(RevelApiError::InvalidRequest(
            "object id must be 1 to 64 characters",
        ));
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(RevelApiError::InvalidRequest(
            "object id must be ASCII letters, digits and '-'",
        ));
    }
    Ok(())
}

/// 408, 429 and 5xx may succeed when asked again.
fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
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

fn parse_page(body: &[u8], offset: u64) -> Result<Page, RevelApiError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|_| {
        RevelApiError::InvalidResponse("body is not a JSON object with `meta` and `objects`")
    })?;
    let next_offset = match envelope.meta.next.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(next) => {
            let next = next_offset_of(next)
                .ok_or(RevelApiError::InvalidResponse("meta.next has no offset"))?;
            // A `next` that does not move forward would page forever.
            if next <= offset {
                return Err(RevelApiError::InvalidResponse(
                    "meta.next does not move past this page",
                ));
            }
            Some(next)
        }
    };
    // When `next` is absent, `total_count` is not used to guess another
    // page: `next` is what Revel says, `total_count` may be stale.
    Ok(Page {
        objects: envelope.objects,
        next_offset,
        total_count: envelope.meta.total_count,
    })
}

/// The body of a 2xx answer to a write: JSON, or `Null` when empty.
fn parse_object(body: &[u8]) -> Result<serde_json::Value, RevelApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(body)
        .map_err(|_| RevelApiError::InvalidResponse("body of a write is not JSON"))
}

/// The `offset` query parameter of a (relative or absolute) `meta.next` URL.
fn next_offset_of(next: &str) -> Option<u64> {
    let (_, query) = next.split_once('?')?;
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "offset")
        .and_then(|(_, value)| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use serde_json::json;
    use wiremock::matchers::{body_json, header, method, path, query_param};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    use super::*;
    use ports::sync_state::BudgetUse;

    const KEY: &str = "KEY-4f9c2e";
    const SECRET: &str = "SECRET-8d1a7b";

    /// A daily budget held in memory.
    struct FixedBudget {
        limit: u64,
        used: AtomicU64,
    }

    impl FixedBudget {
        fn new(limit: u64) -> Arc<Self> {
            Arc::new(Self {
                limit,
                used: AtomicU64::new(0),
            })
        }

        fn used(&self) -> u64 {
            self.used.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl CallBudget for FixedBudget {
        async fn spend_one(&self, _instance: &InstanceName) -> Result<BudgetUse, BudgetError> {
            let limit = self.limit;
            self.used
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                    (used < limit).then_some(used + 1)
                })
                .map(|before| BudgetUse {
                    used: before + 1,
                    limit,
                })
                .map_err(|_| BudgetError::Exhausted { limit })
        }

        fn limit(&self) -> u64 {
            self.limit
        }

        async fn spent_today(&self, _instance: &InstanceName) -> Result<u64, DependencyError> {
            Ok(self.used())
        }
    }

    /// A budget store that cannot be reached.
    struct BrokenBudget;

    #[async_trait]
    impl CallBudget for BrokenBudget {
        async fn spend_one(&self, _instance: &InstanceName) -> Result<BudgetUse, BudgetError> {
            Err(DependencyError::new("dynamodb", "UpdateItem", "unreachable").into())
        }

        fn limit(&self) -> u64 {
            0
        }

        async fn spent_today(&self, _instance: &InstanceName) -> Result<u64, DependencyError> {
            Err(DependencyError::new("dynamodb", "GetItem", "unreachable"))
        }
    }

    /// Matches the whole query string, so parameter order is checked too.
    struct ExactQuery(&'static str);

    impl wiremock::Match for ExactQuery {
        fn matches(&self, request: &Request) -> bool {
            request.url.query() == Some(self.0)
        }
    }

    fn config(server: &MockServer) -> RevelApiConfig {
        RevelApiConfig {
            base_url: format!("{}/{{instance}}", server.uri()),
            timeout: Duration::from_secs(2),
            max_attempts: 4,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            page_size: 100,
        }
    }

    fn api(server: &MockServer, budget: Arc<dyn CallBudget>) -> RevelApi {
        RevelApi::new(config(server), budget)
    }

    fn instance() -> InstanceName {
        InstanceName::parse("demo").unwrap()
    }

    fn credentials() -> ApiCredentials {
        ApiCredentials::new(KEY, SECRET)
    }

    fn products(offset: u64) -> PageRequest {
        PageRequest {
            resource: "Product".to_owned(),
            filters: vec![],
            offset,
        }
    }

    fn body(ids: &[u64], next: Option<&str>, total: u64) -> serde_json::Value {
        json!({
            "meta": {"limit": 100, "offset": 0, "next": next, "previous": null, "total_count": total},
            "objects": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
        })
    }

    fn ok(ids: &[u64]) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(body(ids, None, ids.len() as u64))
    }

    async fn requests(server: &MockServer) -> usize {
        server.received_requests().await.unwrap_or_default().len()
    }

    fn assert_no_secret(text: &str) {
        assert!(!text.contains(KEY), "key leaked: {text}");
        assert!(!text.contains(SECRET), "secret leaked: {text}");
    }

    #[tokio::test]
    async fn the_auth_header_and_query_parameters_are_sent_in_order() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/demo/resources/Order/"))
            .and(header(AUTH_HEADER, format!("{KEY}:{SECRET}").as_str()))
            .and(query_param("format", "json"))
            .and(query_param("limit", "100"))
            .and(query_param("offset", "40"))
            .and(query_param("updated_date__gte", "2024-01-01T00:00:00"))
            .and(query_param("order_by", "id"))
            .and(ExactQuery(
                "format=json&limit=100&offset=40&updated_date__gte=2024-01-01T00%3A00%3A00&order_by=id",
            ))
            .respond_with(ok(&[1, 2]))
            .expect(1)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);
        let request = PageRequest {
            resource: "Order".to_owned(),
            filters: vec![
                (
                    "updated_date__gte".to_owned(),
                    "2024-01-01T00:00:00".to_owned(),
                ),
                ("order_by".to_owned(), "id".to_owned()),
            ],
            offset: 40,
        };

        let page = api(&server, budget.clone())
            .page(&instance(), &credentials(), &request)
            .await
            .unwrap();

        assert_eq!(page.objects, vec![json!({"id": 1}), json!({"id": 2})]);
        assert_eq!(page.next_offset, None);
        assert_eq!(page.total_count, Some(2));
        assert_eq!(budget.used(), 1);
    }

    #[tokio::test]
    async fn pagination_follows_meta_next_across_three_pages_and_collects_every_object_once() {
        let server = MockServer::start().await;
        let pages = [
            (
                "0",
                body(
                    &[1, 2],
                    Some("/resources/Product/?limit=2&offset=2&format=json"),
                    5,
                ),
            ),
            (
                "2",
                body(
                    &[3, 4],
                    Some("/resources/Product/?format=json&limit=2&offset=4"),
                    5,
                ),
            ),
            ("4", body(&[5], None, 5)),
        ];
        for (offset, page) in pages {
            Mock::given(path("/demo/resources/Product/"))
                .and(query_param("offset", offset))
                .respond_with(ResponseTemplate::new(200).set_body_json(page))
                .expect(1)
                .mount(&server)
                .await;
        }
        let budget = FixedBudget::new(10);
        let api = api(&server, budget.clone());

        let mut objects = Vec::new();
        let mut offset = Some(0);
        while let Some(current) = offset {
            let page = api
                .page(&instance(), &credentials(), &products(current))
                .await
                .unwrap();
            objects.extend(page.objects);
            offset = page.next_offset;
        }

        let ids: Vec<u64> = objects.iter().map(|o| o["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        assert_eq!(budget.used(), 3);
    }

    #[tokio::test]
    async fn a_missing_next_ends_pagination_even_when_total_count_says_more() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "meta": {"limit": 2, "offset": 0, "total_count": 9},
                "objects": [{"id": 1}, {"id": 2}],
            })))
            .mount(&server)
            .await;

        let page = api(&server, FixedBudget::new(10))
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap();

        assert_eq!(page.next_offset, None);
        assert_eq!(page.total_count, Some(9));
    }

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

    #[tokio::test]
    async fn a_401_is_unauthorized_and_not_retried() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ResponseTemplate::new(401))
            .expect(1)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);

        let error = api(&server, budget.clone())
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap_err();

        assert!(
            matches!(error, RevelApiError::Unauthorized { status: 401 }),
            "{error:?}"
        );
        assert!(!error.is_retryable_later());
        assert_eq!(budget.used(), 1);
    }

    #[tokio::test]
    async fn a_404_is_not_found_and_other_4xx_are_rejected_without_retry() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Nothing/"))
            .respond_with(ResponseTemplate::new(404))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ResponseTemplate::new(400))
            .expect(1)
            .mount(&server)
            .await;
        let api = api(&server, FixedBudget::new(10));
        let nothing = PageRequest {
            resource: "Nothing".to_owned(),
            ..products(0)
        };

        let not_found = api.page(&instance(), &credentials(), &nothing).await;
        let rejected = api.page(&instance(), &credentials(), &products(0)).await;

        assert!(
            matches!(not_found, Err(RevelApiError::NotFound)),
            "{not_found:?}"
        );
        assert!(
            matches!(rejected, Err(RevelApiError::Rejected { status: 400 })),
            "{rejected:?}"
        );
    }

    #[tokio::test]
    async fn a_budget_of_two_stops_a_failing_run_with_budget_exhausted_after_two_calls() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ResponseTemplate::new(500))
            .mount(&server)
            .await;
        let budget = FixedBudget::new(2);

        let error = api(&server, budget.clone())
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap_err();

        assert!(
            matches!(error, RevelApiError::BudgetExhausted { limit: 2 }),
            "{error:?}"
        );
        assert!(error.is_retryable_later());
        assert_eq!(budget.used(), 2);
        assert_eq!(requests(&server).await, 2);
    }

    #[tokio::test]
    async fn a_broken_budget_store_is_a_budget_error_and_nothing_is_called() {
        let server = MockServer::start().await;

        let error = api(&server, Arc::new(BrokenBudget))
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap_err();

        assert!(matches!(error, RevelApiError::Budget(_)), "{error:?}");
        assert!(error.is_retryable_later());
        assert_eq!(requests(&server).await, 0);
    }

    #[tokio::test]
    async fn a_200_whose_body_lacks_objects_is_an_invalid_response() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"meta": {"next": null}})))
            .expect(1)
            .mount(&server)
            .await;

        let error = api(&server, FixedBudget::new(10))
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap_err();

        assert!(
            matches!(error, RevelApiError::InvalidResponse(_)),
            "{error:?}"
        );
        assert!(!error.is_retryable_later());
    }

    #[test]
    fn a_next_that_does_not_move_forward_or_has_no_offset_is_an_invalid_response() {
        let backwards = body(&[1], Some("/resources/Product/?offset=0"), 5);
        let no_offset = body(&[1], Some("/resources/Product/?limit=20"), 5);
        for bad in [backwards, no_offset] {
            let raw = serde_json::to_vec(&bad).unwrap();
            assert!(matches!(
                parse_page(&raw, 0),
                Err(RevelApiError::InvalidResponse(_))
            ));
        }
    }

    #[tokio::test]
    async fn a_resource_that_is_not_alphanumeric_is_refused_without_any_call() {
        let server = MockServer::start().await;
        let budget = FixedBudget::new(10);
        let api = api(&server, budget.clone());

        for bad in ["", "Product/../Order", "Product?x=1", "Prod uct", "Próduct"] {
            let request = PageRequest {
                resource: bad.to_owned(),
                ..products(0)
            };
            let result = api.page(&instance(), &credentials(), &request).await;
            assert!(
                matches!(result, Err(RevelApiError::InvalidRequest(_))),
                "{bad:?}: {result:?}"
            );
        }
        assert_eq!(budget.used(), 0);
        assert_eq!(requests(&server).await, 0);
    }

    #[tokio::test]
    async fn credentials_never_appear_in_the_debug_of_credentials_the_api_or_any_error() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ResponseTemplate::new(403).set_body_string(format!("bad {KEY}:{SECRET}")))
            .mount(&server)
            .await;
        let api = api(&server, FixedBudget::new(10));

        let error = api
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap_err();

        assert_no_secret(&format!("{:?}", credentials()));
        assert_no_secret(&format!("{api:?}"));
        assert_no_secret(&format!("{error:?} {error}"));
        let others = [
            RevelApiError::BudgetExhausted { limit: 1 },
            RevelApiError::Unavailable {
                attempts: 4,
                last_status: None,
            },
            RevelApiError::InvalidRequest("x"),
        ];
        for other in others {
            assert_no_secret(&format!("{other:?} {other}"));
        }
    }

    fn customer() -> serde_json::Value {
        json!({"first_name": "Ada", "email": "ada@example.com"})
    }

    #[tokio::test]
    async fn create_sends_a_post_with_the_json_body_content_type_auth_header_and_format_json_and_returns_the_object(
    ) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/demo/resources/Customer/"))
            .and(header(AUTH_HEADER, format!("{KEY}:{SECRET}").as_str()))
            .and(header("content-type", "application/json"))
            .and(ExactQuery("format=json"))
            .and(body_json(customer()))
            .respond_with(
                ResponseTemplate::new(201).set_body_json(json!({"id": 42, "first_name": "Ada"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);

        let created = api(&server, budget.clone())
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap();

        assert_eq!(created, json!({"id": 42, "first_name": "Ada"}));
        assert_eq!(budget.used(), 1);
    }

    #[tokio::test]
    async fn update_sends_a_patch_to_the_object_url_and_returns_the_updated_object() {
        let server = MockServer::start().await;
        Mock::given(method("PATCH"))
            .and(path("/demo/resources/Customer/42/"))
            .and(header(AUTH_HEADER, format!("{KEY}:{SECRET}").as_str()))
            .and(header("content-type", "application/json"))
            .and(ExactQuery("format=json"))
            .and(body_json(json!({"email": "ada@example.org"})))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id": 42, "email": "ada@example.org"})),
            )
            .expect(1)
            .mount(&server)
            .await;

        let updated = api(&server, FixedBudget::new(10))
            .update(
                &instance(),
                &credentials(),
                "Customer",
                "42",
                &json!({"email": "ada@example.org"}),
            )
            .await
            .unwrap();

        assert_eq!(updated, json!({"id": 42, "email": "ada@example.org"}));
    }

    #[tokio::test]
    async fn writes_answered_without_a_body_return_null() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201))
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path("/demo/resources/Customer/7/"))
            .respond_with(ResponseTemplate::new(202))
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path("/demo/resources/Customer/8/"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&server)
            .await;
        let api = api(&server, FixedBudget::new(10));

        let created = api
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap();
        let accepted = api
            .update(&instance(), &credentials(), "Customer", "7", &customer())
            .await
            .unwrap();
        let no_content = api
            .update(&instance(), &credentials(), "Customer", "8", &customer())
            .await
            .unwrap();

        assert_eq!(created, serde_json::Value::Null);
        assert_eq!(accepted, serde_json::Value::Null);
        assert_eq!(no_content, serde_json::Value::Null);
    }

    #[tokio::test]
    async fn a_write_answered_with_a_body_that_is_not_json_is_an_invalid_response() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_body_string("<html>created</html>"))
            .expect(1)
            .mount(&server)
            .await;

        let error = api(&server, FixedBudget::new(10))
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap_err();

        assert!(
            matches!(error, RevelApiError::InvalidResponse(_)),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn update_retries_a_503_and_then_succeeds_with_two_calls_spent() {
        let server = MockServer::start().await;
        Mock::given(method("PATCH"))
            .and(path("/demo/resources/Customer/42/"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path("/demo/resources/Customer/42/"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 42})))
            .expect(1)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);

        let updated = api(&server, budget.clone())
            .update(&instance(), &credentials(), "Customer", "42", &customer())
            .await
            .unwrap();

        assert_eq!(updated, json!({"id": 42}));
        assert_eq!(budget.used(), 2);
    }

    #[tokio::test]
    async fn update_retries_a_timeout_like_a_get() {
        let server = MockServer::start().await;
        Mock::given(method("PATCH"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(500)))
            .mount(&server)
            .await;
        let config = RevelApiConfig {
            timeout: Duration::from_millis(50),
            max_attempts: 2,
            ..config(&server)
        };
        let budget = FixedBudget::new(10);

        let error = RevelApi::new(config, budget.clone())
            .update(&instance(), &credentials(), "Customer", "42", &customer())
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

    #[tokio::test]
    async fn create_retries_a_429_and_then_succeeds() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(body_json(customer()))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 9})))
            .expect(1)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);

        let created = api(&server, budget.clone())
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap();

        assert_eq!(created, json!({"id": 9}));
        assert_eq!(budget.used(), 2);
    }

    #[tokio::test]
    async fn create_does_not_retry_a_500_and_is_ambiguous_after_one_call() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500))
            .expect(1)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);

        let error = api(&server, budget.clone())
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap_err();

        assert!(
            matches!(error, RevelApiError::Ambiguous { status: Some(500) }),
            "{error:?}"
        );
        assert!(error.is_retryable_later());
        assert_eq!(budget.used(), 1);
    }

    #[tokio::test]
    async fn create_does_not_retry_a_502_504_or_408_and_each_is_ambiguous() {
        for status in [502, 504, 408] {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(status))
                .expect(1)
                .mount(&server)
                .await;

            let error = api(&server, FixedBudget::new(10))
                .create(&instance(), &credentials(), "Customer", &customer())
                .await
                .unwrap_err();

            assert!(
                matches!(error, RevelApiError::Ambiguous { status: Some(s) } if s == status),
                "{status}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn create_does_not_retry_a_timeout_and_is_ambiguous_without_a_status() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_millis(500)))
            .mount(&server)
            .await;
        let config = RevelApiConfig {
            timeout: Duration::from_millis(50),
            ..config(&server)
        };
        let budget = FixedBudget::new(10);

        let error = RevelApi::new(config, budget.clone())
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap_err();

        assert!(
            matches!(error, RevelApiError::Ambiguous { status: None }),
            "{error:?}"
        );
        assert_eq!(budget.used(), 1);
        assert_eq!(requests(&server).await, 1);
    }

    #[tokio::test]
    async fn create_retries_a_connection_that_could_not_be_made() {
        // A port that was just free: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = RevelApiConfig {
            base_url: format!("http://127.0.0.1:{port}/{{instance}}"),
            timeout: Duration::from_secs(2),
            max_attempts: 3,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            page_size: 100,
        };
        let budget = FixedBudget::new(10);

        let error = RevelApi::new(config, budget.clone())
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap_err();

        assert!(
            matches!(
                error,
                RevelApiError::Unavailable {
                    attempts: 3,
                    last_status: None
                }
            ),
            "{error:?}"
        );
        assert_eq!(budget.used(), 3);
    }

    #[tokio::test]
    async fn create_on_a_422_is_rejected_without_retry() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(422).set_body_string("{\"error\": \"email\"}"))
            .expect(1)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);

        let error = api(&server, budget.clone())
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap_err();

        assert!(
            matches!(error, RevelApiError::Rejected { status: 422 }),
            "{error:?}"
        );
        assert!(!error.is_retryable_later());
        assert_eq!(budget.used(), 1);
    }

    #[tokio::test]
    async fn an_id_or_resource_that_is_not_allowed_is_refused_without_any_call() {
        let server = MockServer::start().await;
        let budget = FixedBudget::new(10);
        let api = api(&server, budget.clone());
        let too_long = "1".repeat(65);

        for bad in [
            "",
            "42/../43",
            "42?x=1",
            "4 2",
            "42_",
            "٤٢",
            too_long.as_str(),
        ] {
            let result = api
                .update(&instance(), &credentials(), "Customer", bad, &customer())
                .await;
            assert!(
                matches!(result, Err(RevelApiError::InvalidRequest(_))),
                "{bad:?}: {result:?}"
            );
        }
        let bad_resource = api
            .create(
                &instance(),
                &credentials(),
                "Customer/../Order",
                &customer(),
            )
            .await;
        assert!(
            matches!(bad_resource, Err(RevelApiError::InvalidRequest(_))),
            "{bad_resource:?}"
        );
        assert_eq!(budget.used(), 0);
        assert_eq!(requests(&server).await, 0);
    }

    #[test]
    fn ids_of_letters_digits_and_dashes_up_to_64_characters_are_accepted() {
        let longest = "a".repeat(64);
        for good in [
            "42",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            longest.as_str(),
        ] {
            assert!(check_id(good).is_ok(), "{good:?}");
        }
    }

    #[tokio::test]
    async fn a_spent_budget_stops_a_write_before_any_call() {
        let server = MockServer::start().await;
        let api = api(&server, FixedBudget::new(0));

        let created = api
            .create(&instance(), &credentials(), "Customer", &customer())
            .await;
        let updated = api
            .update(&instance(), &credentials(), "Customer", "42", &customer())
            .await;

        for result in [created, updated] {
            assert!(
                matches!(result, Err(RevelApiError::BudgetExhausted { limit: 0 })),
                "{result:?}"
            );
        }
        assert_eq!(requests(&server).await, 0);
    }

    #[tokio::test]
    async fn credentials_never_appear_in_the_debug_of_write_errors() {
        let server = MockServer::start().await;
        let echo = format!("bad {KEY}:{SECRET}");
        for status in [403, 422, 500] {
            Mock::given(method("POST"))
                .and(path(format!("/demo/resources/C{status}/")))
                .respond_with(ResponseTemplate::new(status).set_body_string(echo.clone()))
                .mount(&server)
                .await;
        }
        Mock::given(method("PATCH"))
            .respond_with(ResponseTemplate::new(201).set_body_string(echo.clone()))
            .mount(&server)
            .await;
        let api = api(&server, FixedBudget::new(10));

        let mut errors = Vec::new();
        for status in [403, 422, 500] {
            let resource = format!("C{status}");
            errors.push(
                api.create(&instance(), &credentials(), &resource, &customer())
                    .await
                    .unwrap_err(),
            );
        }
        errors.push(
            api.update(&instance(), &credentials(), "Customer", "42", &customer())
                .await
                .unwrap_err(),
        );
        errors.push(RevelApiError::Ambiguous { status: None });

        for error in errors {
            assert_no_secret(&format!("{error:?} {error}"));
        }
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

    #[test]
    fn the_next_offset_is_read_from_relative_and_absolute_urls() {
        assert_eq!(
            next_offset_of("/resources/Product/?limit=20&offset=20&format=json"),
            Some(20)
        );
        assert_eq!(
            next_offset_of("https://demo.revelup.com/resources/Order/?offset=300"),
            Some(300)
        );
        assert_eq!(next_offset_of("/resources/Product/"), None);
    }
}
