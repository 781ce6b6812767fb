//! What the scheduled pulls remember between runs, in the sync-state table
//! (hash key `state_key`): each pull's checkpoint and unfinished run, each
//! instance's API calls spent today, and the on-demand inventory pulls it
//! made this hour.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use domain::error::DependencyError;
use domain::ids::InstanceName;

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
    /// Objects fetched so far by this run (for the log and progress).
    pub fetched: u64,
    /// How many objects the run has to fetch, as Revel counted them on its
    /// last page (`meta.total_count`); `None` before the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
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

/// One counter per instance per UTC hour.
pub fn on_demand_key(instance: &InstanceName, now: OffsetDateTime) -> String {
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

/// Changes the bundle itself made in Revel. Revel sends a webhook for them
/// like for any change; recognising it stops it from being sent back to the
/// partner it came from (no ping-pong between the two systems).
#[async_trait]
pub trait EchoLog: Send + Sync {
    /// Records that the bundle wrote `entity` at `version` (Revel's own
    /// `updated_date` of the written object, in µs).
    async fn record_echo(
        &self,
        entity: &domain::ids::EntityKey,
        version: i64,
    ) -> Result<(), DependencyError>;
    /// True when `entity` at `version` is such a write coming back.
    async fn is_echo(
        &self,
        entity: &domain::ids::EntityKey,
        version: i64,
    ) -> Result<bool, DependencyError>;
    /// Records, before a create, that the bundle is creating a Revel object
    /// for `attempt` (one revision of one partner change): if the answer is
    /// lost, the retry that finds the object knows it as the bundle's own.
    async fn record_create(&self, attempt: &str) -> Result<(), DependencyError>;
    /// True when a create was sent for `attempt`.
    async fn created_for(&self, attempt: &str) -> Result<bool, DependencyError>;
}

/// Counts calls against the instance's daily budget before each call.
#[async_trait]
pub trait CallBudget: Send + Sync {
    /// Takes one call from today's budget of `instance` if fewer than
    /// `limit` were taken today; Err(Exhausted) otherwise. The limit is the
    /// caller's, so one counter serves the instance's own budget and a
    /// smaller share of it (a backfill leaves the schedule its calls).
    async fn spend_one_within(
        &self,
        instance: &InstanceName,
        limit: u64,
    ) -> Result<BudgetUse, BudgetError>;
    /// Takes one call from today's budget of `instance`, within its limit
    /// ([`CallBudget::limit_of`]); Err(Exhausted) when none is left.
    async fn spend_one(&self, instance: &InstanceName) -> Result<BudgetUse, BudgetError> {
        let limit = self.limit_of(instance).await?;
        self.spend_one_within(instance, limit).await
    }
    /// The daily number of calls an instance may make unless its settings
    /// say otherwise.
    fn limit(&self) -> u64;
    /// The daily number of calls `instance` may make.
    async fn limit_of(&self, _instance: &InstanceName) -> Result<u64, DependencyError> {
        Ok(self.limit())
    }
    /// Calls spent today by `instance` (for the budget metric and operators).
    async fn spent_today(&self, instance: &InstanceName) -> Result<u64, DependencyError>;
}

/// The budget of each instance as its settings name it (`daily_api_budget`
/// in its entry of the Revel secret document), the deployment's
/// (`REVEL_API_DAILY_BUDGET`) where they name none: an operator sets a
/// merchant's allowance with `revel-ops instance update` and no redeploy.
pub struct InstanceBudgets {
    store: std::sync::Arc<dyn CallBudget>,
    settings: std::sync::Arc<dyn crate::secrets::InstanceDocument>,
}

impl InstanceBudgets {
    pub fn new(
        store: std::sync::Arc<dyn CallBudget>,
        settings: std::sync::Arc<dyn crate::secrets::InstanceDocument>,
    ) -> Self {
        Self { store, settings }
    }
}

#[async_trait]
impl CallBudget for InstanceBudgets {
    async fn spend_one_within(
        &self,
        instance: &InstanceName,
        limit: u64,
    ) -> Result<BudgetUse, BudgetError> {
        self.store.spend_one_within(instance, limit).await
    }

    fn limit(&self) -> u64 {
        self.store.limit()
    }

    async fn limit_of(&self, instance: &InstanceName) -> Result<u64, DependencyError> {
        Ok(self
            .settings
            .document()
            .await?
            .settings(instance)
            .api_budget(self.store.limit()))
    }

    async fn spent_today(&self, instance: &InstanceName) -> Result<u64, DependencyError> {
        self.store.spent_today(instance).await
    }
}

/// A share of each instance's budget: at most its limit less
/// `reserve_percent` of it a day. Spent from the same counter, so the calls
/// kept back stay for the schedule's work.
pub struct ReservedBudget {
    budget: std::sync::Arc<dyn CallBudget>,
    reserve_percent: u64,
}

impl ReservedBudget {
    pub fn new(budget: std::sync::Arc<dyn CallBudget>, reserve_percent: u64) -> Self {
        Self {
            budget,
            reserve_percent,
        }
    }

    fn share(&self, limit: u64) -> u64 {
        share_after_reserve(limit, self.reserve_percent)
    }
}

/// What is left of `limit` once `reserve_percent` of it (rounded up) is
/// kept back.
pub fn share_after_reserve(limit: u64, reserve_percent: u64) -> u64 {
    limit
        - limit
            .saturating_mul(reserve_percent.min(100))
            .div_ceil(100)
            .min(limit)
}

#[async_trait]
impl CallBudget for ReservedBudget {
    async fn spend_one_within(
        &self,
        instance: &InstanceName,
        limit: u64,
    ) -> Result<BudgetUse, BudgetError> {
        self.budget.spend_one_within(instance, limit).await
    }

    fn limit(&self) -> u64 {
        self.share(self.budget.limit())
    }

    async fn limit_of(&self, instance: &InstanceName) -> Result<u64, DependencyError> {
        Ok(self.share(self.budget.limit_of(instance).await?))
    }

    async fn spent_today(&self, instance: &InstanceName) -> Result<u64, DependencyError> {
        self.budget.spent_today(instance).await
    }
}

/// The budget after one call was taken from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetUse {
    pub used: u64,
    pub limit: u64,
}

/// Why a call could not be taken from the budget.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("daily API budget of {limit} calls is spent")]
    Exhausted { limit: u64 },
    #[error(transparent)]
    Unavailable(#[from] DependencyError),
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::secrets::{InstanceDocument, InstanceSecrets, SecretDocument};

    /// The budget store's rule: one counter per instance, refused at the
    /// caller's limit.
    #[derive(Default)]
    struct Counter(Mutex<HashMap<String, u64>>);

    #[async_trait]
    impl CallBudget for Counter {
        async fn spend_one_within(
            &self,
            instance: &InstanceName,
            limit: u64,
        ) -> Result<BudgetUse, BudgetError> {
            let mut used = self.0.lock().unwrap();
            let used = used.entry(instance.to_string()).or_default();
            if *used >= limit {
                return Err(BudgetError::Exhausted { limit });
            }
            *used += 1;
            Ok(BudgetUse { used: *used, limit })
        }

        fn limit(&self) -> u64 {
            10
        }

        async fn spent_today(&self, instance: &InstanceName) -> Result<u64, DependencyError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .get(instance.as_str())
                .copied()
                .unwrap_or(0))
        }
    }

    struct Document(Arc<InstanceSecrets>);

    #[async_trait]
    impl InstanceDocument for Document {
        async fn document(&self) -> Result<Arc<InstanceSecrets>, DependencyError> {
            Ok(Arc::clone(&self.0))
        }
    }

    fn budgets() -> Arc<InstanceBudgets> {
        let document = InstanceSecrets::parse(&SecretDocument(
            r#"{"small": {"webhook": "w", "daily_api_budget": 3}, "plain": {"webhook": "w"}}"#
                .into(),
        ))
        .unwrap();
        Arc::new(InstanceBudgets::new(
            Arc::new(Counter::default()),
            Arc::new(Document(Arc::new(document))),
        ))
    }

    async fn calls_until_refused(budget: &dyn CallBudget, instance: &str) -> u64 {
        let instance = InstanceName::parse(instance).unwrap();
        let mut calls = 0;
        while budget.spend_one(&instance).await.is_ok() {
            calls += 1;
            assert!(calls <= 100, "never refused");
        }
        calls
    }

    #[tokio::test]
    async fn an_instance_spends_the_budget_its_settings_name_and_the_deployments_where_they_name_none(
    ) {
        let budgets = budgets();
        assert_eq!(calls_until_refused(budgets.as_ref(), "small").await, 3);
        assert_eq!(calls_until_refused(budgets.as_ref(), "plain").await, 10);
        let small = InstanceName::parse("small").unwrap();
        assert_eq!(budgets.limit_of(&small).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_reserved_share_stops_short_of_the_limit_and_leaves_the_reserve_to_the_instances_budget(
    ) {
        let budgets = budgets();
        let share = ReservedBudget::new(budgets.clone(), 40);
        assert_eq!(calls_until_refused(&share, "plain").await, 6);
        assert_eq!(calls_until_refused(budgets.as_ref(), "plain").await, 4);
        // The reserve is rounded up: of 3 calls, 2 (not 1) are kept back.
        assert_eq!(calls_until_refused(&share, "small").await, 1);
        assert_eq!(calls_until_refused(budgets.as_ref(), "small").await, 2);
    }
}
