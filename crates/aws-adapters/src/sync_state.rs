//! The sync-state table in DynamoDB (hash key `state_key`): cursors, the
//! daily API budget and the hourly on-demand allowance, counted atomically
//! with conditional updates, and the echo and create marks.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use time::OffsetDateTime;

use domain::error::DependencyError;
use domain::ids::{EntityKey, InstanceName};
use ports::sync_state::{
    on_demand_key, BudgetError, BudgetUse, CallBudget, Cursor, EchoLog, OnDemandAllowance,
    SyncState, DEFAULT_ON_DEMAND_PULLS_PER_HOUR,
};

const SERVICE: &str = "dynamodb";

/// The sync-state table; also the daily API budget and the hourly
/// allowance of on-demand pulls, counted atomically.
pub struct DynamoSyncState {
    client: aws_sdk_dynamodb::Client,
    table: String,
    daily_budget: u64,
    on_demand_per_hour: u64,
}

impl DynamoSyncState {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        daily_budget: u64,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            daily_budget,
            on_demand_per_hour: DEFAULT_ON_DEMAND_PULLS_PER_HOUR,
        }
    }

    /// Allows each instance `per_hour` on-demand inventory pulls an hour.
    pub fn with_on_demand_pulls_per_hour(mut self, per_hour: u64) -> Self {
        self.on_demand_per_hour = per_hour;
        self
    }
}

fn cursor_key(instance: &InstanceName, pull: &str) -> String {
    format!("cursor:{instance}:{pull}")
}

/// One counter per instance per UTC day.
fn budget_key(instance: &InstanceName, now: OffsetDateTime) -> String {
    format!("budget:{instance}:{}", now.date())
}

#[async_trait]
impl OnDemandAllowance for DynamoSyncState {
    async fn take_on_demand_pull(
        &self,
        instance: &InstanceName,
        now: OffsetDateTime,
    ) -> Result<bool, DependencyError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("state_key", AttributeValue::S(on_demand_key(instance, now)))
            .update_expression("ADD used :one SET expires_at = :expires")
            .condition_expression("attribute_not_exists(used) OR used < :limit")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(
                ":limit",
                AttributeValue::N(self.on_demand_per_hour.to_string()),
            )
            .expression_attribute_values(
                ":expires",
                AttributeValue::N((now.unix_timestamp() + 2 * 86_400).to_string()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(DependencyError::new(SERVICE, "UpdateItem", e)),
        }
    }
}

#[async_trait]
impl SyncState for DynamoSyncState {
    async fn load(&self, instance: &InstanceName, pull: &str) -> Result<Cursor, DependencyError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("state_key", AttributeValue::S(cursor_key(instance, pull)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DependencyError::new(SERVICE, "GetItem", e))?;
        match output
            .item
            .as_ref()
            .and_then(|i| i.get("cursor"))
            .and_then(|v| v.as_s().ok())
        {
            None => Ok(Cursor::default()),
            Some(json) => {
                serde_json::from_str(json).map_err(|e| DependencyError::new(SERVICE, "GetItem", e))
            }
        }
    }

    async fn save(
        &self,
        instance: &InstanceName,
        pull: &str,
        cursor: &Cursor,
    ) -> Result<(), DependencyError> {
        let json = serde_json::to_string(cursor)
            .map_err(|e| DependencyError::new(SERVICE, "PutItem", e))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("state_key", AttributeValue::S(cursor_key(instance, pull)))
            .item("cursor", AttributeValue::S(json))
            .send()
            .await
            .map_err(|e| DependencyError::new(SERVICE, "PutItem", e))?;
        Ok(())
    }
}

#[async_trait]
impl CallBudget for DynamoSyncState {
    /// The daily number of calls each instance may make.
    fn limit(&self) -> u64 {
        self.daily_budget
    }

    /// Calls spent today by `instance` (for operators and tests).
    async fn spent_today(&self, instance: &InstanceName) -> Result<u64, DependencyError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(
                "state_key",
                AttributeValue::S(budget_key(instance, OffsetDateTime::now_utc())),
            )
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DependencyError::new(SERVICE, "GetItem", e))?;
        Ok(output
            .item
            .and_then(|i| i.get("used")?.as_n().ok()?.parse().ok())
            .unwrap_or(0))
    }

    async fn spend_one_within(
        &self,
        instance: &InstanceName,
        limit: u64,
    ) -> Result<BudgetUse, BudgetError> {
        let now = OffsetDateTime::now_utc();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("state_key", AttributeValue::S(budget_key(instance, now)))
            // Counted before the call, atomically: concurrent runs share one budget.
            .update_expression("ADD used :one SET expires_at = :expires")
            .condition_expression("attribute_not_exists(used) OR used < :limit")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":limit", AttributeValue::N(limit.to_string()))
            .expression_attribute_values(
                ":expires",
                AttributeValue::N((now.unix_timestamp() + 3 * 86_400).to_string()),
            )
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match result {
            Ok(output) => {
                let used = output
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get("used")?.as_n().ok()?.parse().ok())
                    .unwrap_or(0);
                Ok(BudgetUse { used, limit })
            }
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Err(BudgetError::Exhausted { limit })
            }
            Err(e) => Err(BudgetError::Unavailable(DependencyError::new(
                SERVICE,
                "UpdateItem",
                e,
            ))),
        }
    }
}

fn echo_key(entity: &EntityKey, version: i64) -> String {
    format!("echo:{entity}@{version}")
}

fn create_key(attempt: &str) -> String {
    format!("create:{attempt}")
}

/// How long echo and create marks are kept: past Revel's webhook retries
/// (about 36 minutes) and the jobs' backoff (about 75 minutes) with room.
const ECHO_MARK_SECONDS: i64 = 2 * 86_400;

#[async_trait]
impl EchoLog for DynamoSyncState {
    async fn record_echo(&self, entity: &EntityKey, version: i64) -> Result<(), DependencyError> {
        self.put_mark(echo_key(entity, version)).await
    }

    async fn is_echo(&self, entity: &EntityKey, version: i64) -> Result<bool, DependencyError> {
        self.has_mark(echo_key(entity, version)).await
    }

    async fn record_create(&self, attempt: &str) -> Result<(), DependencyError> {
        self.put_mark(create_key(attempt)).await
    }

    async fn created_for(&self, attempt: &str) -> Result<bool, DependencyError> {
        self.has_mark(create_key(attempt)).await
    }
}

impl DynamoSyncState {
    /// An item that says only that `key` happened; it expires by itself.
    async fn put_mark(&self, key: String) -> Result<(), DependencyError> {
        let expires = OffsetDateTime::now_utc().unix_timestamp() + ECHO_MARK_SECONDS;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("state_key", AttributeValue::S(key))
            .item("expires_at", AttributeValue::N(expires.to_string()))
            .send()
            .await
            .map_err(|e| DependencyError::new(SERVICE, "PutItem", e))?;
        Ok(())
    }

    async fn has_mark(&self, key: String) -> Result<bool, DependencyError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("state_key", AttributeValue::S(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DependencyError::new(SERVICE, "GetItem", e))?;
        Ok(output.item.is_some())
    }
}
