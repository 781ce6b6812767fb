//! `winesitting_repair`: polls WineSitting for the account's orders still
//! in progress and ingests those whose webhook was lost (WineSitting never
//! retries; [`crate::winesitting_repair`]).

use crate::winesitting_repair::RepairError;
use crate::worker::{Disposition, JobError, Worker};
use domain::ids::InstanceName;
use telemetry::{self, Dimension, Metric};

impl RepairError {
    /// A repair run that failed is retried: the next poll finds what this
    /// one missed, and the schedule polls again anyway.
    pub fn disposition(&self) -> Disposition {
        Disposition::Retry
    }
}

/// Polls `account`'s orders still in progress.
pub async fn run(worker: &Worker, account: &InstanceName) -> Result<(), JobError> {
    let Some(repair) = &worker.winesitting else {
        tracing::warn!(%account, "WineSitting repair is not configured here; job dropped");
        return Ok(());
    };
    let document = repair.secrets.document().await?;
    let Some(credentials) = document.api_credentials(account) else {
        tracing::warn!(%account, "no WineSitting API key for this account; repair skipped");
        return Ok(());
    };
    let report = crate::winesitting_repair::repair(
        repair.api.as_ref(),
        account,
        credentials.key(),
        &repair.receiver,
        worker.entities.as_ref(),
    )
    .await?;
    telemetry::record(
        Metric::RepairedOrders,
        report.repaired as f64,
        &[
            (Dimension::Source, vendors::winesitting::NAME),
            (Dimension::Instance, account.as_str()),
        ],
    );
    Ok(())
}
