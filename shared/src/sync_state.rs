//! What the scheduled pulls remember between runs, in the sync-state table
//! (hash key `state_key`): each pull's checkpoint and unfinished run, each
//! instance's API calls spent today, and the on-demand inventory pulls it
//! made this hour.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::DependencyError;
use crate::ids::InstanceName;
use crate::revel_api::{BudgetError, BudgetUse, CallBudget};

const SERVICE: &str = "dynamodb";

/// Where one pull stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Everything updated before this instant (RFC 3339; a naive one,
    /// written before zones were kept, is UTC) has been pulled; `None`
    /// before the first complete run.
    pub checkpoint: Option<String>,
    /// A run that stopped before its last page (budget spent, deadline, an
    /// error); the next run resumes it instead of starting over.
    pub run: Option<RunProgress>,
    /// When the last complete run began (µs): whatever changed before then
    /// has been pulled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_run_began_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunProgress {
    /// When the run started (less the overlap): the checkpoint once it completes.
    pub started_at: String,
    /// The checkpoint the run pulls from (an instant, like it); each page's
    /// `updated_date__gte` is its wall-clock time in the instance's zone.
    pub since: Option<String>,
    /// The offset of the next page to fetch.
    pub offset: u64,
    /// Objects fetched so far by this run (for the log).
    pub fetched: u64,
    /// When the run began (µs), without the checkpoint's overlap.
    #[serde(default)]
    pub began_at: i64,
}

#[async_trait]
pub trait SyncState: Send + Sync {
    async fn load(&self, instance: &InstanceName, pull: &str) -> Result<Cursor, DependencyError>;
    async fn save(
        &self,
        instance: &InstanceName,
        pull: &str,
        cursor: &Cursor,
    ) -> Result<(), DependencyError>;

    /// The last slot of a schedule's `cadence` (`end_of_day`,
    /// `inventory_2h`) whose jobs were queued for `instance`: kept as the
    /// checkpoint of the cursor `schedule.{cadence}`, so `revel-ops
    /// checkpoints` shows it beside the pulls'.
    async fn last_slot(
        &self,
        instance: &InstanceName,
        cadence: &str,
    ) -> Result<Option<String>, DependencyError> {
        Ok(self.load(instance, &slot_cursor(cadence)).await?.checkpoint)
    }

    /// Records that the jobs of `slot` were queued for `instance`.
    async fn mark_slot(
        &self,
        instance: &InstanceName,
        cadence: &str,
        slot: &str,
    ) -> Result<(), DependencyError> {
        let cursor = Cursor {
            checkpoint: Some(slot.to_owned()),
            ..Cursor::default()
        };
        self.save(instance, &slot_cursor(cadence), &cursor).await
    }
}

/// The cursor a schedule's last queued slot is kept under.
pub fn slot_cursor(cadence: &str) -> String {
    format!("schedule.{cadence}")
}

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

    /// The daily number of calls each instance may make.
    pub fn limit(&self) -> u64 {
        self.daily_budget
    }

    /// Calls spent today by `instance` (for operators and tests).
    pub async fn spent_today(&self, instance: &InstanceName) -> Result<u64, DependencyError> {
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
}

fn cursor_key(instance: &InstanceName, pull: &str) -> String {
    format!("cursor:{instance}:{pull}")
}

/// One counter per instance per UTC day.
fn budget_key(instance: &InstanceName, now: OffsetDateTime) -> String {
    format!("budget:{instance}:{}", now.date())
}

/// One counter per instance per UTC hour.
pub(crate) fn on_demand_key(instance: &InstanceName, now: OffsetDateTime) -> String {
    format!("on-demand:{instance}:{}T{:02}", now.date(), now.hour())
}

/// How many on-demand inventory pulls an instance may make per hour unless
/// the deployment says otherwise (`InventoryRequestsPerHour`).
pub const DEFAULT_ON_DEMAND_PULLS_PER_HOUR: u64 = 12;

/// The partner's on-demand inventory pulls, limited per instance and hour
/// (UTC clock hours). Counted atomically, so jobs running at once share one
/// allowance; a pull that was refused is not counted.
#[async_trait]
pub trait OnDemandAllowance: Send + Sync {
    /// Takes one of `instance`'s on-demand pulls of the hour of `now`;
    /// false when they are all taken.
    async fn take_on_demand_pull(
        &self,
        instance: &InstanceName,
        now: OffsetDateTime,
    ) -> Result<bool, DependencyError>;
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
    async fn spend_one(&self, instance: &InstanceName) -> Result<BudgetUse, BudgetError> {
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
            .expression_attribute_values(":limit", AttributeValue::N(self.daily_budget.to_string()))
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
                Ok(BudgetUse {
                    used,
                    limit: self.daily_budget,
                })
            }
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Err(BudgetError::Exhausted {
                    limit: self.daily_budget,
                })
            }
            Err(e) => Err(BudgetError::Unavailable(DependencyError::new(
                SERVICE,
                "UpdateItem",
                e,
            ))),
        }
    }
}

/// Changes the bundle itself made in Revel. Revel sends a webhook for them
/// like for any change; recognising it stops it from being sent back to the
/// partner it came from (no ping-pong between the two systems).
#[async_trait]
pub trait EchoLog: Send + Sync {
    /// Records that the bundle wrote `entity` at `version` (Revel's own
    /// `updated_date` of the written object, in µs).
    async fn record_echo(
        &self,
        entity: &crate::ids::EntityKey,
        version: i64,
    ) -> Result<(), DependencyError>;
    /// True when `entity` at `version` is such a write coming back.
    async fn is_echo(
        &self,
        entity: &crate::ids::EntityKey,
        version: i64,
    ) -> Result<bool, DependencyError>;
    /// Records, before a create, that the bundle is creating a Revel object
    /// for `attempt` (one revision of one partner change): if the answer is
    /// lost, the retry that finds the object knows it as the bundle's own.
    async fn record_create(&self, attempt: &str) -> Result<(), DependencyError>;
    /// True when a create was sent for `attempt`.
    async fn created_for(&self, attempt: &str) -> Result<bool, DependencyError>;
}

fn echo_key(entity: &crate::ids::EntityKey, version: i64) -> String {
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
    async fn record_echo(
        &self,
        entity: &crate::ids::EntityKey,
        version: i64,
    ) -> Result<(), DependencyError> {
        self.put_mark(echo_key(entity, version)).await
    }

    async fn is_echo(
        &self,
        entity: &crate::ids::EntityKey,
        version: i64,
    ) -> Result<bool, DependencyError> {
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
