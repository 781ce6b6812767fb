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
//!
//! | module | what it is |
//! | --- | --- |
//! | `client` | [`RevelApi`]: the URLs, the authentication header, reading and writing an object, what an answer means |
//! | `retry` | the attempt loop (one call spent before each attempt), which failures are tried again, and how long to wait: backoff with full jitter, `Retry-After` |
//! | `budget` | what a spent or unreadable daily budget means to the client (the budget port's refusals as [`RevelApiError`]), and the tests of the budget rule above |
//! | `pagination` | [`PageRequest`] and [`Page`]: Revel's `meta.next`, read so a run can only move forward |

use std::time::Duration;

use async_trait::async_trait;

use domain::error::DependencyError;
use domain::ids::InstanceName;
pub use ports::secrets::ApiCredentials;

mod budget;
mod client;
mod pagination;
mod retry;
#[cfg(test)]
mod testing;

pub use client::RevelApi;
pub use pagination::{Page, PageRequest};

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
