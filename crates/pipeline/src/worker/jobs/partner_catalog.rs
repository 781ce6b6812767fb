//! `partner_catalog`: the end-of-day batch of one instance, which applies
//! every pending product and event of the partner to Revel
//! ([`crate::partner_catalog::Batch`]). A spent budget stops it cleanly
//! (what was applied is off the index, the next run resumes); its deadline
//! queues a continuation.

use tokio::time::Instant;

use crate::partner_catalog::Batch;
use crate::sync::StopReason;
use crate::worker::{JobError, Worker};
use domain::ids::InstanceName;
use ports::queue::JobKind;

/// Runs `instance`'s batch until `deadline`.
pub async fn run(
    worker: &Worker,
    instance: &InstanceName,
    deadline: Instant,
) -> Result<(), JobError> {
    let pending = "the partner's products and events stay pending";
    let Some(credentials) = worker.credentials_for(instance, pending).await? else {
        return Ok(());
    };
    let report = Batch {
        applier: &worker.applier,
    }
    .run(instance, &credentials, deadline)
    .await;
    worker.report_budget(instance).await;
    let report = report?;
    tracing::info!(%instance, written = report.written, unchanged = report.unchanged,
            refused = report.refused, stopped = ?report.stopped, "partner products and events applied to Revel");
    match report.stopped {
        Some(StopReason::Deadline) => {
            worker
                .continue_later(JobKind::PartnerCatalog, instance, None)
                .await?
        }
        Some(StopReason::BudgetSpent) => {
            tracing::warn!(%instance, "partner catalog batch stopped: API budget spent; the next run resumes")
        }
        None => {}
    }
    Ok(())
}
