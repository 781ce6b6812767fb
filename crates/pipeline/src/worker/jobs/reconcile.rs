//! `reconcile`: ingests, through the order.finalized receiver, Revel's
//! orders finalized since the last run whose webhook never arrived
//! ([`crate::sync::Syncer::reconcile`]). A spent budget stops it cleanly
//! (the next run resumes); its deadline queues a continuation.

use tokio::time::Instant;

use crate::sync::StopReason;
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
            (Dimension::Source, vendors::revel::NAME),
            (Dimension::Instance, instance.as_str()),
        ],
    );
    tracing::info!(%instance, checked = report.checked, reconciled = report.reconciled, stopped = ?report.stopped, "reconciliation run");
    if report.stopped == Some(StopReason::Deadline) {
        worker
            .continue_later(JobKind::Reconcile, instance, None)
            .await?;
    }
    Ok(())
}
