//! `apply_to_revel`: applies a partner change to Revel
//! ([`crate::apply::Applier`]), within the instance's API budget; products
//! and events are kept for the end-of-day batch instead
//! ([`super::partner_catalog`]).

use crate::apply::ApplyError;
use crate::worker::disposition::until_budget_resets;
use crate::worker::{Disposition, JobError, Worker};
use domain::ids::{EntityKey, InstanceName};
use vendors::revel::api::RevelApiError;

/// The partner's entity whose current state is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyToRevel {
    pub instance: InstanceName,
    pub entity: EntityKey,
}

impl ApplyError {
    /// What becomes of a change not applied: a spent budget waits for the
    /// reset; a change that fails the same way every time (refused as
    /// invalid, lacking what it needs, no credentials, gone) is parked, to
    /// be redriven once fixed; anything else (Revel or a store unavailable,
    /// a create whose outcome is unknown, something it refers to not
    /// applied yet) is retried, and looks its object up again first.
    pub fn disposition(&self, now: time::OffsetDateTime) -> Disposition {
        match self {
            Self::Api(RevelApiError::BudgetExhausted { .. }) => {
                Disposition::RetryAfter(until_budget_resets(now))
            }
            _ if self.is_permanent() => Disposition::Park,
            _ => Disposition::Retry,
        }
    }
}

impl ApplyToRevel {
    pub async fn run(self, worker: &Worker) -> Result<(), JobError> {
        // Without credentials a product or event is still kept for the
        // batch; any other change is parked in the DLQ at once (retrying
        // would only spend its receives), to be redriven once they are set.
        let credentials = worker.credentials(&self.instance).await?;
        let applied = worker
            .applier
            .apply(&self.instance, credentials.as_ref(), &self.entity)
            .await;
        // Writes spend the same daily budget as pulls.
        worker.report_budget(&self.instance).await;
        applied?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;
    use time::macros::datetime;

    use crate::apply::tests::{partner_change, MemoryRevel};
    use crate::worker::testing::*;
    use crate::worker::Worker;
    use domain::clock::TokioClock;
    use ports::queue::JobKind;
    use vendors::vinesos;

    /// A worker applying to `revel` on tokio's clock from `start`, its
    /// failures put off and parked in `fifo`; the job of one partner
    /// customer's change, queued.
    async fn queued_change(
        revel: &Arc<MemoryRevel>,
        secrets: &'static str,
        start: time::OffsetDateTime,
    ) -> (Worker, Arc<MemoryFifo>, String) {
        let entities = Arc::new(MemoryEntities::default());
        let data = json!({"first_name": "Ada", "email": "ada@example.com"});
        let key = partner_change(&entities, vinesos::Entity::Customer, "C-1", 1, data).await;
        let fifo = fifo();
        let worker = Parts {
            secrets,
            clock: Arc::new(TokioClock::starting_at(start)),
            ..Parts::calling(revel.clone(), &fifo, entities)
        }
        .build();
        let id = fifo.send(
            key.as_str(),
            &job_body(JobKind::ApplyToRevel, Some(&key), Some(1)),
        );
        (worker, fifo, id)
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_a_spent_budget_stops_comes_back_a_minute_past_midnight_and_applies_then() {
        let revel = Arc::new(MemoryRevel::default());
        *revel.budget.lock().unwrap() = Some(0);
        let at = datetime!(2026-11-24 23:00 UTC);
        let (worker, fifo, id) = queued_change(&revel, WITH_API_CREDENTIALS, at).await;

        let reset = Duration::from_secs(3600 + 60);
        fails_and_comes_back_in(&worker, &fifo, &id, reset).await;

        *revel.budget.lock().unwrap() = None;
        all_done_after(&worker, &fifo, reset).await;
        assert_eq!(revel.objects("Customer").len(), 1);
        assert!(fifo.is_empty() && fifo.parked().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_for_an_instance_without_revel_credentials_is_parked_for_a_redrive() {
        let revel = Arc::new(MemoryRevel::default());
        let at = datetime!(2026-11-24 10:00 UTC);
        let (worker, fifo, id) = queued_change(&revel, "{}", at).await;

        assert!(invoke(&worker, &fifo).await.is_empty());

        assert_eq!(fifo.parked()[0].message_id, id);
        assert!(revel.calls().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_whose_answer_was_lost_comes_back_after_the_backoff_and_creates_nothing_twice()
    {
        let revel = Arc::new(MemoryRevel::default());
        revel
            .lost_answers
            .store(1, std::sync::atomic::Ordering::SeqCst);
        let at = datetime!(2026-11-24 10:00 UTC);
        let (worker, fifo, id) = queued_change(&revel, WITH_API_CREDENTIALS, at).await;

        fails_and_comes_back_in(&worker, &fifo, &id, FIRST_BACKOFF).await;
        all_done_after(&worker, &fifo, FIRST_BACKOFF).await;

        assert_eq!(
            revel.objects("Customer").len(),
            1,
            "found, not created again"
        );
        assert!(fifo.parked().is_empty());
    }
}
