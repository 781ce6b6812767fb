//! What the client's tests share: budgets held in memory, the stand-in
//! server's configuration, requests and answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use wiremock::{MockServer, Request, ResponseTemplate};

use domain::error::DependencyError;
use domain::ids::InstanceName;
use ports::sync_state::{BudgetError, BudgetUse, CallBudget};

use super::{ApiCredentials, PageRequest, RevelApi, RevelApiConfig};

pub(super) const KEY: &str = "KEY-4f9c2e";
pub(super) const SECRET: &str = "SECRET-8d1a7b";

/// A daily budget held in memory.
pub(super) struct FixedBudget {
    limit: u64,
    used: AtomicU64,
}

impl FixedBudget {
    pub(super) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
        })
    }

    pub(super) fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl CallBudget for FixedBudget {
    async fn spend_one_within(
        &self,
        _instance: &InstanceName,
        limit: u64,
    ) -> Result<BudgetUse, BudgetError> {
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
pub(super) struct BrokenBudget;

#[async_trait]
impl CallBudget for BrokenBudget {
    async fn spend_one_within(
        &self,
        _instance: &InstanceName,
        _limit: u64,
    ) -> Result<BudgetUse, BudgetError> {
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
pub(super) struct ExactQuery(pub(super) &'static str);

impl wiremock::Match for ExactQuery {
    fn matches(&self, request: &Request) -> bool {
        request.url.query() == Some(self.0)
    }
}

pub(super) fn config(server: &MockServer) -> RevelApiConfig {
    RevelApiConfig {
        base_url: format!("{}/{{instance}}", server.uri()),
        timeout: Duration::from_secs(2),
        max_attempts: 4,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        page_size: 100,
    }
}

pub(super) fn api(server: &MockServer, budget: Arc<dyn CallBudget>) -> RevelApi {
    RevelApi::new(config(server), budget)
}

pub(super) fn instance() -> InstanceName {
    InstanceName::parse("demo").unwrap()
}

pub(super) fn credentials() -> ApiCredentials {
    ApiCredentials::new(KEY, SECRET)
}

pub(super) fn products(offset: u64) -> PageRequest {
    PageRequest {
        resource: "Product".to_owned(),
        filters: vec![],
        offset,
    }
}

pub(super) fn body(ids: &[u64], next: Option<&str>, total: u64) -> serde_json::Value {
    json!({
        "meta": {"limit": 100, "offset": 0, "next": next, "previous": null, "total_count": total},
        "objects": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
    })
}

pub(super) fn ok(ids: &[u64]) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body(ids, None, ids.len() as u64))
}

pub(super) async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

pub(super) fn assert_no_secret(text: &str) {
    assert!(!text.contains(KEY), "key leaked: {text}");
    assert!(!text.contains(SECRET), "secret leaked: {text}");
}

pub(super) fn customer() -> serde_json::Value {
    json!({"first_name": "Ada", "email": "ada@example.com"})
}
