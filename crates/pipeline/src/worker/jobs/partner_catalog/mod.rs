//! `partner_catalog`: the end-of-day batch of one instance, which applies
//! every pending product and event of the partner to Revel
//! ([`crate::worker::jobs::partner_catalog::batch::Batch`]). A spent budget stops it cleanly
//! (what was applied is off the index, the next run resumes); its deadline
//! queues a continuation.

pub mod batch;

use tokio::time::Instant;

use crate::sync::StopReason;
use crate::worker::jobs::partner_catalog::batch::Batch;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use crate::apply::tests::{credentials, demo, partner_change, MemoryRevel};
    use crate::apply::Applied;
    use crate::pending::PendingIndex;
    use crate::worker::testing::*;
    use crate::worker::Worker;
    use ports::queue::JobKind;
    use vendors::vinesos::Entity::Product;

    /// A worker applying to `revel`, its failures put off and parked in a
    /// queue, with one partner product pending for the batch.
    async fn with_a_product_pending(revel: &Arc<MemoryRevel>) -> (Worker, Arc<MemoryFifo>) {
        let entities = Arc::new(MemoryEntities::default());
        let data = json!({"id": "P-1", "name": "Rose"});
        let key = partner_change(&entities, Product, "P-1", 1, data).await;
        let fifo = fifo();
        let worker = Parts::calling(revel.clone(), &fifo, entities).build();
        let (instance, credentials) = (demo(), credentials());
        let kept = worker.applier.apply(&instance, Some(&credentials), &key);
        assert_eq!(kept.await.unwrap(), Applied::Deferred);
        (worker, fifo)
    }

    fn batch_job() -> String {
        job_body(JobKind::PartnerCatalog, None, None)
    }

    async fn pending(worker: &Worker) -> usize {
        let index = PendingIndex::new(worker.entities.as_ref());
        index.all(&demo(), Product).await.unwrap().len()
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_a_spent_budget_stops_is_done_and_the_next_run_applies_what_is_left() {
        let revel = Arc::new(MemoryRevel::default());
        *revel.budget.lock().unwrap() = Some(0);
        let (worker, fifo) = with_a_product_pending(&revel).await;
        fifo.send("partner_catalog:revel:demo", &batch_job());

        assert!(invoke(&worker, &fifo).await.is_empty(), "acknowledged");
        assert_eq!(pending(&worker).await, 1, "still pending");

        *revel.budget.lock().unwrap() = None;
        fifo.send("partner_catalog:revel:demo", &batch_job());
        assert!(invoke(&worker, &fifo).await.is_empty());
        assert_eq!(pending(&worker).await, 0);
        assert_eq!(revel.objects("Product").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_whose_create_lost_its_answer_comes_back_after_the_backoff_and_creates_nothing_twice(
    ) {
        let revel = Arc::new(MemoryRevel::default());
        revel
            .lost_answers
            .store(1, std::sync::atomic::Ordering::SeqCst);
        let (worker, fifo) = with_a_product_pending(&revel).await;
        let id = fifo.send("partner_catalog:revel:demo", &batch_job());

        fails_and_comes_back_in(&worker, &fifo, &id, FIRST_BACKOFF).await;
        all_done_after(&worker, &fifo, FIRST_BACKOFF).await;

        assert_eq!(revel.objects("Product").len(), 1);
        assert_eq!(pending(&worker).await, 0);
    }
}
