//! `winesitting_repair`: polls WineSitting for the account's orders still
//! in progress and ingests those whose webhook was lost (WineSitting never
//! retries; [`crate::worker::jobs::winesitting_repair::poll`]).

pub mod poll;

use crate::worker::jobs::winesitting_repair::poll::RepairError;
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
    let report = crate::worker::jobs::winesitting_repair::poll::repair(
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
            (Dimension::Source, vendors::winesitting::NAME.as_str()),
            (Dimension::Instance, account.as_str()),
        ],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::Value;

    use crate::fakes::MemoryAws;
    use crate::worker::testing::*;
    use crate::worker::WineSittingRepair;
    use ports::queue::JobKind;
    use ports::secrets::SecretCache;
    use vendors::winesitting::api::{WineSittingApiError, WineSittingOrders};
    use vendors::winesitting::{WineSitting, WineSittingEvent};

    /// WineSitting's API, with no order in progress, or down.
    #[derive(Default)]
    struct Orders {
        down: AtomicBool,
    }

    #[async_trait::async_trait]
    impl WineSittingOrders for Orders {
        async fn orders_in_progress(&self, _key: &str) -> Result<Vec<Value>, WineSittingApiError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(WineSittingApiError::Unavailable { status: Some(503) });
            }
            Ok(Vec::new())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_repair_poll_wine_sitting_cannot_serve_now_comes_back_after_the_backoff() {
        let fifo = fifo();
        let orders = Arc::new(Orders::default());
        orders.down.store(true, Ordering::SeqCst);
        let mut worker = Parts {
            in_flight: fifo.clone(),
            ..Parts::new(Arc::default())
        }
        .build();
        let document = r#"{"demo": {"token": "t", "api_key": "k-demo"}}"#;
        let source = Arc::new(WineSitting::new(SecretCache::new(
            FixedSecrets(document.into()),
            Duration::from_secs(60),
        )));
        worker.winesitting = Some(WineSittingRepair {
            api: orders.clone(),
            secrets: source.clone(),
            receiver: MemoryAws::default().receiver(source, Arc::new(WineSittingEvent)),
        });
        let id = fifo.send(
            "winesitting_repair:demo",
            &job_body(JobKind::WineSittingRepair, None, None),
        );

        fails_and_comes_back_in(&worker, &fifo, &id, FIRST_BACKOFF).await;

        orders.down.store(false, Ordering::SeqCst);
        all_done_after(&worker, &fifo, FIRST_BACKOFF).await;
        assert!(fifo.is_empty() && fifo.parked().is_empty());
    }
}
