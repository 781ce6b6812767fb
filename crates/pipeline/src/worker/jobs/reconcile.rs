//! `reconcile`: ingests, through the order.finalized receiver, Revel's
//! orders finalized since the last run whose webhook never arrived
//! ([`crate::sync::Syncer::reconcile`]). A spent budget stops it cleanly
//! (the next run resumes); its deadline queues a continuation.

use tokio::time::Instant;

use crate::worker::{pages_until, JobError, Worker};
use domain::ids::InstanceName;
use ports::queue::JobKind;
use telemetry::{self, Dimension, Metric};

/// Reconciles `instance` until `deadline`.
pub async fn run(
    worker: &Worker,
    instance: &InstanceName,
    deadline: Instant,
) -> Result<(), JobError> {
    let skipped = "reconciliation skipped";
    let Some(credentials) = worker.credentials_for(instance, skipped).await? else {
        return Ok(());
    };
    let report = worker
        .syncer
        .reconcile(
            instance,
            &credentials,
            &worker.orders,
            pages_until(deadline),
        )
        .await;
    worker.report_budget(instance).await;
    let report = report?;
    telemetry::record(
        Metric::ReconciledOrders,
        report.reconciled as f64,
        &[
            (Dimension::Source, vendors::revel::NAME.as_str()),
            (Dimension::Instance, instance.as_str()),
        ],
    );
    tracing::info!(%instance, checked = report.checked, reconciled = report.reconciled, stopped = ?report.stopped, "reconciliation run");
    worker
        .continue_if_out_of_time(report.stopped, JobKind::Reconcile, instance)
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::worker::jobs::pull::tests::{queued, Catalog};
    use crate::worker::testing::*;
    use ports::queue::JobKind;

    #[tokio::test(start_paused = true)]
    async fn a_reconciliation_revel_cannot_serve_now_comes_back_after_the_backoff() {
        let catalog = Arc::new(Catalog::default());
        catalog
            .down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let (worker, fifo, id) = queued(&catalog, JobKind::Reconcile, "reconcile:revel:demo");

        fails_and_comes_back_in(&worker, &fifo, &id, FIRST_BACKOFF).await;

        catalog
            .down
            .store(false, std::sync::atomic::Ordering::SeqCst);
        all_done_after(&worker, &fifo, FIRST_BACKOFF).await;
        assert!(fifo.is_empty() && fifo.parked().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconciliation_a_spent_budget_stops_is_done_and_queues_nothing() {
        let catalog = Arc::new(Catalog::default());
        *catalog.budget.lock().unwrap() = Some(0);
        let queue = Arc::new(MemoryQueue::default());
        let (worker, fifo, _) = queued(&catalog, JobKind::Reconcile, "reconcile:revel:demo");
        let worker = crate::worker::Worker {
            jobs: queue.clone(),
            ..worker
        };

        assert!(
            invoke(&worker, &fifo).await.is_empty(),
            "acknowledged: the next end of day resumes it"
        );
        assert!(fifo.is_empty() && fifo.parked().is_empty());
        assert!(queue.is_empty(), "no continuation: that is for a deadline");
    }
}
