//! "Products added on VinesOS" and "Events added on VinesOS": end of day,
//! through the API. The partner's product and event changes come in by
//! webhook like its other changes and are kept newest-wins as entities by
//! the processor; their `apply_to_revel` job only notes them in the
//! instance's pending index ([`PendingIndex`]). Once a day the scheduler
//! queues one `partner_catalog` job per instance, which applies every
//! pending product and event to Revel's `Product` and `Event` resources
//! ([`crate::apply::Applier::apply_now`]: looked up by their link before
//! being created, never created twice, not written again at a revision
//! applied before), within the instance's API budget.
//!
//! The pending index lives in the entities table, as a few entities of kind
//! `vos_pending` per instance and kind (`vinesos:{instance}:vos_pending:
//! vos_product.07`), each holding `{partner id: newest revision to apply}`.
//! Every change of one is a compare-and-swap on its rank: a write names the
//! next version of the index, and a concurrent write of the same version is
//! refused (`Repeated`) and done again on what won. An entry is removed only
//! up to the revision that was applied, so a change that arrives while the
//! batch runs stays for the next one.
//!
//! A spent budget stops the batch cleanly: what was applied is off the
//! index, the rest waits for the next run. The job's deadline queues a
//! continuation. A change Revel refuses, or that lacks what applying it
//! needs, stays pending (counted and logged each run) until a newer change
//! of it can be applied.

use std::collections::BTreeMap;

use tokio::time::Instant;

use crate::apply::{Applier, ApplyError};
use crate::pending::{PendingIndex, BATCHED, SHARDS};
use crate::sync::StopReason;
use domain::ids::{EntityKey, InstanceName};
use telemetry::{self, Dimension, Metric};
use vendors::revel::api::{ApiCredentials, RevelApiError};
use vendors::vinesos;

/// What one run of the batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Written to Revel (created, updated or adopted).
    pub written: u64,
    /// Found in Revel as they are, or applied before: nothing written.
    pub unchanged: u64,
    /// Refused by Revel or lacking what applying needs: still pending.
    pub refused: u64,
    /// Why the run stopped before the end, if it did.
    pub stopped: Option<StopReason>,
}

/// The end-of-day batch of one instance.
pub struct Batch<'a> {
    pub applier: &'a Applier,
}

impl Batch<'_> {
    /// Applies every pending product and event of `instance`, until done,
    /// the budget is spent or `deadline`.
    pub async fn run(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        deadline: Instant,
    ) -> Result<BatchReport, ApplyError> {
        let index = PendingIndex::new(self.applier.entities.as_ref());
        let mut report = BatchReport::default();
        for kind in BATCHED {
            for shard in 0..SHARDS {
                let pending = index.shard(instance, kind, shard).await?;
                if pending.is_empty() {
                    continue;
                }
                let mut applied = BTreeMap::new();
                let result = self
                    .apply_shard(
                        instance,
                        credentials,
                        kind,
                        &pending,
                        &mut applied,
                        &mut report,
                        deadline,
                    )
                    .await;
                // What was applied comes off the index whatever stopped the run.
                if !applied.is_empty() {
                    index.remove(instance, kind, shard, &applied).await?;
                }
                if let Some(stop) = result? {
                    report.stopped = Some(stop);
                    return Ok(report);
                }
            }
        }
        Ok(report)
    }

    /// Applies one shard's entries, recording in `applied` the revision
    /// applied of each; `Some` when the run must stop.
    #[allow(clippy::too_many_arguments)]
    async fn apply_shard(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        kind: vinesos::Entity,
        pending: &BTreeMap<String, u64>,
        applied: &mut BTreeMap<String, u64>,
        report: &mut BatchReport,
        deadline: Instant,
    ) -> Result<Option<StopReason>, ApplyError> {
        for id in pending.keys() {
            // An item is lookups and a write, each with its retries: one
            // begun with less time left could be cut off by the message's
            // timeout, and the run would fail instead of continuing later.
            if Instant::now() + crate::worker::PAGE_ALLOWANCE >= deadline {
                return Ok(Some(StopReason::Deadline));
            }
            let Ok(key) = EntityKey::new(vinesos::NAME, instance, kind, id) else {
                tracing::warn!(%instance, kind = %kind.kind(), "pending entry with an unusable id; dropped from the index");
                applied.insert(id.clone(), u64::MAX);
                continue;
            };
            match self.applier.apply_now(instance, credentials, &key).await {
                Ok(outcome) => {
                    use crate::apply::Applied;
                    match outcome.applied {
                        Applied::Unchanged { .. } | Applied::AlreadyApplied => {
                            report.unchanged += 1
                        }
                        _ => report.written += 1,
                    }
                    applied.insert(id.clone(), outcome.revision);
                }
                Err(ApplyError::Gone) => {
                    tracing::warn!(%instance, entity = %key, "pending entity is gone; dropped from the index");
                    applied.insert(id.clone(), u64::MAX);
                }
                Err(ApplyError::Api(RevelApiError::BudgetExhausted { limit })) => {
                    tracing::warn!(%instance, entity = %key, limit, "API budget spent; the next run resumes here");
                    return Ok(Some(StopReason::BudgetSpent));
                }
                Err(error) if error.is_permanent() => {
                    // Kept: a newer change of it may apply; each run says so.
                    report.refused += 1;
                    telemetry::count(Metric::JobFailures, &[(Dimension::Reason, "apply")]);
                    tracing::warn!(%instance, entity = %key, error = %error, "partner change can't be applied; it stays pending");
                }
                // Revel or a store unavailable, a create whose outcome is
                // unknown: the job is retried, and looks it up again first.
                Err(error) => return Err(error),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::apply::tests::{applier, credentials, demo, partner_change, MemoryRevel};
    use ports::fakes::MemoryEntities;
    use vendors::vinesos::Entity::Product;

    /// The partner's product `id` named `name`, kept and handed to the
    /// applier as its `apply_to_revel` job does: noted for the batch.
    async fn product_change(applier: &Applier, entities: &MemoryEntities, id: &str, name: &str) {
        // Each change newer than the last.
        let key = EntityKey::new("vinesos", &demo(), Product, id).unwrap();
        let version = entities.get(&key).map_or(1, |e| e.rank.version + 1);
        let data = json!({"id": id, "name": name});
        partner_change(entities, Product, id, version, data).await;
        let deferred = applier
            .apply(&demo(), Some(&credentials()), &key)
            .await
            .unwrap();
        assert_eq!(deferred, crate::apply::Applied::Deferred);
    }

    fn revel_with_budget(calls: u64) -> Arc<MemoryRevel> {
        let revel = MemoryRevel::default();
        *revel.budget.lock().unwrap() = Some(calls);
        Arc::new(revel)
    }

    #[tokio::test]
    async fn a_spent_budget_stops_the_batch_and_the_next_run_applies_the_rest_once() {
        let entities = Arc::new(MemoryEntities::default());
        // A lookup and a create per new product: one product and a half.
        let revel = revel_with_budget(3);
        let applier = applier(revel.clone(), entities.clone());
        for (id, name) in [("P-1", "Rose"), ("P-2", "Port"), ("P-3", "Cava")] {
            product_change(&applier, &entities, id, name).await;
        }
        let far = Instant::now() + Duration::from_secs(60);
        let batch = Batch { applier: &applier };

        let first = batch.run(&demo(), &credentials(), far).await.unwrap();
        assert_eq!(
            (first.written, first.stopped),
            (1, Some(StopReason::BudgetSpent))
        );
        let index = PendingIndex::new(entities.as_ref());
        assert_eq!(index.all(&demo(), Product).await.unwrap().len(), 2);

        *revel.budget.lock().unwrap() = None;
        let second = batch.run(&demo(), &credentials(), far).await.unwrap();
        assert_eq!((second.written, second.stopped), (2, None));
        assert!(index.all(&demo(), Product).await.unwrap().is_empty());

        let third = batch.run(&demo(), &credentials(), far).await.unwrap();
        assert_eq!(third, BatchReport::default(), "nothing left to do");
        let products = revel.objects("Product");
        let mut links: Vec<&str> = products
            .iter()
            .map(|p| p["third_party_id"].as_str().unwrap())
            .collect();
        links.sort();
        assert_eq!(
            links,
            ["vinesos:P-1", "vinesos:P-2", "vinesos:P-3"],
            "each created once"
        );
    }

    #[tokio::test]
    async fn a_change_after_a_run_is_applied_by_the_next_run_as_an_update_not_a_second_product() {
        let entities = Arc::new(MemoryEntities::default());
        let revel = revel_with_budget(100);
        let applier = applier(revel.clone(), entities.clone());
        product_change(&applier, &entities, "P-1", "Rose").await;
        let far = Instant::now() + Duration::from_secs(60);
        Batch { applier: &applier }
            .run(&demo(), &credentials(), far)
            .await
            .unwrap();
        // Revision 1 is applied; the partner renames it before the next run.
        product_change(&applier, &entities, "P-1", "Rose 2024").await;
        let index = PendingIndex::new(entities.as_ref());
        assert_eq!(
            index.all(&demo(), Product).await.unwrap(),
            BTreeMap::from([("P-1".to_owned(), 2)])
        );
        let report = Batch { applier: &applier }
            .run(&demo(), &credentials(), far)
            .await
            .unwrap();
        assert_eq!(report.written, 1);
        assert_eq!(
            revel.objects("Product").len(),
            1,
            "updated, not created again"
        );
        assert_eq!(revel.objects("Product")[0]["name"], "Rose 2024");
        assert!(revel.writes().last().unwrap().starts_with("PATCH Product"));
    }

    #[tokio::test]
    async fn a_product_lacking_its_name_stays_pending_and_does_not_stop_the_others() {
        let entities = Arc::new(MemoryEntities::default());
        let revel = revel_with_budget(100);
        let applier = applier(revel.clone(), entities.clone());
        product_change(&applier, &entities, "P-1", "").await;
        product_change(&applier, &entities, "P-2", "Port").await;
        let report = Batch { applier: &applier }
            .run(
                &demo(),
                &credentials(),
                Instant::now() + Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!((report.written, report.refused), (1, 1));
        assert_eq!(
            PendingIndex::new(entities.as_ref())
                .all(&demo(), Product)
                .await
                .unwrap()
                .into_keys()
                .collect::<Vec<_>>(),
            ["P-1"]
        );
    }

    #[tokio::test]
    async fn a_run_with_less_than_an_items_allowance_left_stops_before_any_call_and_keeps_everything_pending(
    ) {
        let entities = Arc::new(MemoryEntities::default());
        let revel = revel_with_budget(100);
        let applier = applier(revel.clone(), entities.clone());
        product_change(&applier, &entities, "P-1", "Rose").await;
        let almost = crate::worker::PAGE_ALLOWANCE - Duration::from_millis(100);
        let report = Batch { applier: &applier }
            .run(&demo(), &credentials(), Instant::now() + almost)
            .await
            .unwrap();
        assert_eq!(report.stopped, Some(StopReason::Deadline));
        assert!(revel.calls.lock().unwrap().is_empty());
        assert_eq!(
            PendingIndex::new(entities.as_ref())
                .all(&demo(), Product)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
