//! `inventory_request`: the partner's search, Revel's stock of the products
//! it named pulled on demand within the hour's allowance
//! ([`crate::worker::jobs::inventory_request::on_demand::OnDemand`]); or a deferred pull of what is
//! pending, which waits until its time ([`JobError::NotYet`]).

pub mod on_demand;

use tokio::time::Instant;

use crate::worker::jobs::inventory_request::on_demand::{
    has_retailer_option, reason, Handled, OnDemand,
};
use crate::worker::{pages_until, JobError, Worker};
use domain::ids::{EntityKey, InstanceName};
use telemetry::{self, Dimension, Metric};

/// A request, or a deferred pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryRequest {
    pub instance: InstanceName,
    /// The request as kept (its products are noted); `None` for a
    /// deferred pull of whatever is pending.
    pub request: Option<EntityKey>,
    /// A deferred pull's time (µs): received before then, it waits.
    pub not_before: Option<i64>,
}

impl InventoryRequest {
    pub async fn run(self, worker: &Worker, deadline: Instant) -> Result<(), JobError> {
        let instance = &self.instance;
        let count = |reason: &str| {
            telemetry::count(
                Metric::InventoryRequests,
                &[
                    (Dimension::Instance, instance.as_str()),
                    (Dimension::Reason, reason),
                ],
            )
        };
        let document = worker.revel.document().await?;
        if !has_retailer_option(&document, instance) {
            tracing::info!(%instance, "inventory request from an instance without the retailer option (inventory_every_2h): kept, nothing pulled");
            count(reason::NOT_UPGRADED);
            return Ok(());
        }
        let Some(credentials) = document.api_credentials(instance).cloned() else {
            tracing::warn!(%instance, "inventory request from an instance without Revel API credentials: kept, nothing pulled");
            count(reason::NO_CREDENTIALS);
            return Ok(());
        };
        let on_demand = OnDemand {
            entities: worker.entities.as_ref(),
            allowance: worker.on_demand.as_ref(),
            syncer: &worker.syncer,
            jobs: worker.jobs.as_ref(),
            clock: worker.clock.as_ref(),
        };
        let handled = on_demand
            .handle(&self, &credentials, pages_until(deadline))
            .await;
        if matches!(&handled, Ok(Handled::Pulled(_)) | Err(JobError::Sync(_))) {
            worker.report_budget(instance).await;
        }
        match handled? {
            Handled::NothingPending => {
                tracing::info!(%instance, "no inventory request pending; nothing to pull");
            }
            Handled::Coalesced { pending, until } => {
                tracing::info!(%instance, pending, until = %until,
                    "on-demand inventory pulls of this hour all taken; the products wait for the next hour's pull");
                count(reason::COALESCED);
            }
            Handled::Pulled(report) => {
                tracing::info!(%instance, pulled = report.pulled, left = report.left,
                    fetched = report.fetched, written = report.written, stopped = ?report.stopped,
                    "on-demand inventory pull");
                count(reason::PULLED);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use time::macros::datetime;
    use time::OffsetDateTime;

    use crate::worker::jobs::inventory_request::on_demand::{deferred_pull, PendingProducts};
    use crate::worker::jobs::pull::tests::Catalog;
    use crate::worker::testing::*;
    use crate::worker::{after_budget_resets, Worker};
    use domain::clock::TokioClock;
    use domain::ids::InstanceName;

    /// 10:20 UTC: the next hour's allowance opens 40 minutes later.
    const START: OffsetDateTime = datetime!(2026-11-24 10:20 UTC);

    /// Instance `demo` with API credentials and the retailer option.
    const RETAILER: &str = r#"{"demo": {"webhook": "w", "api_key": "k", "api_secret": "s", "inventory_every_2h": true}}"#;

    fn demo() -> InstanceName {
        InstanceName::parse("demo").unwrap()
    }

    /// A worker pulling from `catalog` on tokio's clock from [`START`], its
    /// failures put off and parked in a queue, its deferred pulls queued in
    /// another; product 5 pending; a deferred pull due at `due`, received.
    async fn deferred(
        catalog: &Arc<Catalog>,
        due: OffsetDateTime,
    ) -> (Worker, Arc<MemoryFifo>, Arc<MemoryQueue>, String) {
        let fifo = fifo();
        let queue = Arc::new(MemoryQueue::default());
        let worker = Parts {
            secrets: RETAILER,
            queue: queue.clone(),
            clock: Arc::new(TokioClock::starting_at(START)),
            ..Parts::calling(catalog.clone(), &fifo, Arc::default())
        }
        .build();
        PendingProducts::new(worker.entities.as_ref())
            .note(&demo(), &["5".to_owned()], 1)
            .await
            .unwrap();
        let job = deferred_pull(&demo(), due);
        let id = fifo.send(&job.group_id, &serde_json::to_string(&job.message).unwrap());
        (worker, fifo, queue, id)
    }

    async fn pending(worker: &Worker) -> usize {
        let set = PendingProducts::new(worker.entities.as_ref());
        set.all(&demo()).await.unwrap().len()
    }

    #[tokio::test(start_paused = true)]
    async fn a_deferred_pull_received_early_waits_until_it_is_due_and_pulls_then() {
        let catalog = Arc::new(Catalog::default());
        let (worker, fifo, _, id) = deferred(&catalog, datetime!(2026-11-24 11:00 UTC)).await;

        let due_in = Duration::from_secs(40 * 60);
        fails_and_comes_back_in(&worker, &fifo, &id, due_in).await;
        assert_eq!(pending(&worker).await, 1, "nothing pulled yet");

        all_done_after(&worker, &fifo, due_in).await;
        assert_eq!(pending(&worker).await, 0);
        assert!(fifo.is_empty() && fifo.parked().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pull_revel_cannot_serve_now_comes_back_after_the_backoff_with_its_products_pending()
    {
        let catalog = Arc::new(Catalog::default());
        catalog
            .down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let (worker, fifo, _, id) = deferred(&catalog, START).await;

        fails_and_comes_back_in(&worker, &fifo, &id, FIRST_BACKOFF).await;
        assert_eq!(pending(&worker).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pull_a_spent_budget_stops_is_done_and_defers_its_products_until_after_the_reset() {
        let catalog = Arc::new(Catalog::default());
        *catalog.budget.lock().unwrap() = Some(0);
        let (worker, fifo, queue, _) = deferred(&catalog, START).await;

        assert!(invoke(&worker, &fifo).await.is_empty(), "acknowledged");

        let queued = queue.jobs.lock().unwrap().clone();
        assert_eq!(queued, [deferred_pull(&demo(), after_budget_resets(START))]);
        assert_eq!(pending(&worker).await, 1);
        assert!(fifo.parked().is_empty());
    }
}
