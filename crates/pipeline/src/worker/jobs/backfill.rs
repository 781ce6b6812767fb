//! `backfill`: imports what a newly connected instance already held
//! ([`crate::backfill`]) until done, within a share of its budget. A spent
//! share stops it cleanly (the next end of day resumes it); its deadline
//! queues a continuation; once done, or when none was planned, it costs one
//! read of the sync-state table and no call to Revel.

use tokio::time::Instant;

use crate::backfill::BackfillOutcome;
use crate::worker::{pages_until, JobError, Worker};
use domain::ids::InstanceName;
use ports::queue::JobKind;

/// Backfills `instance` until `deadline`.
pub async fn run(
    worker: &Worker,
    instance: &InstanceName,
    deadline: Instant,
) -> Result<(), JobError> {
    let Some(credentials) = worker.credentials_for(instance, "backfill skipped").await? else {
        return Ok(());
    };
    let outcome = worker
        .syncer
        .using(worker.backfill_api.clone())
        .backfill(
            instance,
            &credentials,
            &worker.orders,
            pages_until(deadline),
        )
        .await;
    if !matches!(outcome, Ok(BackfillOutcome::Nothing)) {
        worker.report_budget(instance).await;
    }
    let outcome = outcome?;
    tracing::info!(%instance, ?outcome, "backfill run");
    let stopped = match outcome {
        BackfillOutcome::Stopped(reason) => Some(reason),
        BackfillOutcome::Nothing | BackfillOutcome::Complete => None,
    };
    worker
        .continue_if_out_of_time(stopped, JobKind::Backfill, instance)
        .await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use time::OffsetDateTime;
    use tokio::time::{Duration, Instant};

    use crate::worker::testing::*;
    use domain::ids::InstanceName;
    use ports::fakes::MemoryQueue;
    use ports::queue::{JobKind, JobMessage};
    use vendors::revel::api::{ApiCredentials, Page, PageRequest, RevelApiError, RevelResources};

    /// A merchant's Revel with some objects of each resource, two a page,
    /// and a number of calls left today.
    #[derive(Default)]
    struct Shop {
        objects: BTreeMap<&'static str, u64>,
        calls_left: Mutex<u64>,
        /// Every page served: resource and offset.
        served: Mutex<Vec<(String, u64)>>,
        /// A page answered 503 once.
        fail_at: Mutex<Option<(String, u64)>>,
    }

    #[async_trait::async_trait]
    impl RevelResources for Shop {
        async fn page(
            &self,
            _instance: &InstanceName,
            _credentials: &ApiCredentials,
            request: &PageRequest,
        ) -> Result<Page, RevelApiError> {
            let mut left = self.calls_left.lock().unwrap();
            if *left == 0 {
                return Err(RevelApiError::BudgetExhausted { limit: 0 });
            }
            *left -= 1;
            let page = (request.resource.clone(), request.offset);
            if self.fail_at.lock().unwrap().as_ref() == Some(&page) {
                *self.fail_at.lock().unwrap() = None;
                self.served.lock().unwrap().push(page);
                return Err(RevelApiError::Unavailable {
                    attempts: 1,
                    last_status: Some(503),
                });
            }
            self.served
                .lock()
                .unwrap()
                .push((request.resource.clone(), request.offset));
            let total = self
                .objects
                .get(request.resource.as_str())
                .copied()
                .unwrap_or(0);
            let objects = (request.offset..total.min(request.offset + 2))
                .map(|i| serde_json::json!({"id": i + 1, "updated_date": "2026-11-20T10:00:00"}))
                .collect();
            Ok(Page {
                objects,
                next_offset: (request.offset + 2 < total).then_some(request.offset + 2),
                total_count: Some(total),
            })
        }

        async fn create(
            &self,
            _: &InstanceName,
            _: &ApiCredentials,
            _: &str,
            _: &serde_json::Value,
        ) -> Result<serde_json::Value, RevelApiError> {
            Err(RevelApiError::InvalidRequest("read only"))
        }

        async fn update(
            &self,
            _: &InstanceName,
            _: &ApiCredentials,
            _: &str,
            _: &str,
            _: &serde_json::Value,
        ) -> Result<serde_json::Value, RevelApiError> {
            Err(RevelApiError::InvalidRequest("read only"))
        }
    }

    fn shop() -> Arc<Shop> {
        Arc::new(Shop {
            objects: BTreeMap::from([
                ("Customer", 3),
                ("RewardsCard", 1),
                ("Product", 2),
                ("CurrentStock", 1),
            ]),
            ..Shop::default()
        })
    }

    fn demo() -> InstanceName {
        InstanceName::parse("demo").unwrap()
    }

    async fn run(worker: &crate::worker::Worker) {
        let message: JobMessage =
            serde_json::from_str(&job_body(JobKind::Backfill, None, None)).unwrap();
        worker
            .run(&message, Instant::now() + Duration::from_secs(60))
            .await
            .unwrap();
    }

    fn worker(
        shop: &Arc<Shop>,
    ) -> (
        crate::worker::Worker,
        Arc<MemoryQueue>,
        Arc<ports::fakes::MemoryEntities>,
    ) {
        let entities = Arc::new(ports::fakes::MemoryEntities::default());
        let worker = Parts::calling(shop.clone(), &fifo(), entities.clone()).build();
        let queue = Arc::new(MemoryQueue::default());
        let worker = crate::worker::Worker {
            syncer: worker.syncer.clone().delivering_to(queue.clone()),
            jobs: queue.clone(),
            ..worker
        };
        (worker, queue, entities)
    }

    #[tokio::test]
    async fn a_backfill_spread_over_two_days_budgets_reads_every_page_once_and_never_runs_again() {
        let shop = shop();
        let (worker, queue, entities) = worker(&shop);
        let state = worker.syncer.state().clone();
        crate::backfill::plan(state.as_ref(), &demo(), None, OffsetDateTime::now_utc())
            .await
            .unwrap();

        // Six pages in all (customers take two); today's share allows four.
        *shop.calls_left.lock().unwrap() = 4;
        run(&worker).await;
        let progress = crate::backfill::progress(state.as_ref(), &demo())
            .await
            .unwrap()
            .unwrap();
        assert!(!progress.is_done());
        // Modifiers and stock are next, their sizes not known: a page each at least.
        assert_eq!(progress.calls_left(2), 2, "{progress:?}");
        assert!(!progress.sizes_known());

        *shop.calls_left.lock().unwrap() = 100;
        run(&worker).await;
        let progress = crate::backfill::progress(state.as_ref(), &demo())
            .await
            .unwrap()
            .unwrap();
        assert!(progress.is_done(), "{progress:?}");
        let mut served = shop.served.lock().unwrap().clone();
        assert_eq!(served.len(), 6, "{served:?}");
        served.sort();
        served.dedup();
        assert_eq!(served.len(), 6, "no page was read twice");
        // Every object is kept and queued for the partner once.
        assert_eq!(entities.len(), 7);
        assert_eq!(queue.len(), 7);

        assert!(
            !crate::backfill::pending(state.as_ref(), &demo())
                .await
                .unwrap(),
            "the plan is marked complete: the daily check is one read"
        );
        run(&worker).await;
        assert_eq!(shop.served.lock().unwrap().len(), 6, "done is done");
        assert!(matches!(
            crate::backfill::plan(state.as_ref(), &demo(), None, OffsetDateTime::now_utc()).await,
            Err(crate::backfill::PlanError::AlreadyPlanned(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_resumed_hours_later_completes_without_reading_its_resource_again() {
        let shop = shop();
        let clock = Arc::new(domain::clock::TokioClock::starting_at(
            OffsetDateTime::now_utc(),
        ));
        let entities = Arc::new(ports::fakes::MemoryEntities::default());
        let worker = Parts {
            clock: clock.clone(),
            ..Parts::calling(shop.clone(), &fifo(), entities)
        }
        .build();
        let state = worker.syncer.state().clone();
        crate::backfill::plan(
            state.as_ref(),
            &demo(),
            None,
            domain::clock::Clock::now(clock.as_ref()),
        )
        .await
        .unwrap();
        *shop.calls_left.lock().unwrap() = 4;
        run(&worker).await;

        // The next day: the run stopped in the products is resumed.
        tokio::time::advance(Duration::from_secs(20 * 3600)).await;
        *shop.calls_left.lock().unwrap() = 100;
        run(&worker).await;

        let served = shop.served.lock().unwrap().clone();
        assert_eq!(
            served.len(),
            6,
            "no fresh run follows the old one: {served:?}"
        );
        let progress = crate::backfill::progress(state.as_ref(), &demo())
            .await
            .unwrap()
            .unwrap();
        assert!(progress.is_done());
    }

    #[tokio::test]
    async fn a_page_revel_fails_is_read_again_by_the_retry_and_the_rest_is_not() {
        let shop = shop();
        *shop.fail_at.lock().unwrap() = Some(("Customer".into(), 2));
        *shop.calls_left.lock().unwrap() = 100;
        let (worker, _, entities) = worker(&shop);
        let state = worker.syncer.state().clone();
        crate::backfill::plan(state.as_ref(), &demo(), None, OffsetDateTime::now_utc())
            .await
            .unwrap();

        let message: JobMessage =
            serde_json::from_str(&job_body(JobKind::Backfill, None, None)).unwrap();
        let failed = worker
            .run(&message, Instant::now() + Duration::from_secs(60))
            .await;
        assert!(failed.is_err(), "the job fails, and SQS gives it back");
        run(&worker).await;

        let mut served = shop.served.lock().unwrap().clone();
        // Customers at 0 and 2 (failed, then again), rewards cards,
        // products, modifiers, stock.
        assert_eq!(served.len(), 7, "{served:?}");
        served.sort();
        served.dedup();
        assert_eq!(served.len(), 6, "only the failed page twice");
        assert_eq!(entities.len(), 7);
    }

    #[tokio::test]
    async fn planning_starts_the_schedules_own_pulls_of_the_same_resources_from_now() {
        let shop = shop();
        let (worker, _, _) = worker(&shop);
        let state = worker.syncer.state().clone();
        let now = OffsetDateTime::now_utc();
        crate::backfill::plan(state.as_ref(), &demo(), None, now)
            .await
            .unwrap();
        for cursor in [
            "catalog.Product",
            "catalog.Modifier",
            "inventory.CurrentStock",
        ] {
            let checkpoint = state.load(&demo(), cursor).await.unwrap().checkpoint;
            assert_eq!(
                checkpoint,
                Some(crate::sync::checkpoint_text(now)),
                "{cursor}"
            );
        }
        assert_eq!(
            state
                .load(&demo(), "events.Event")
                .await
                .unwrap()
                .checkpoint,
            None
        );
    }

    #[tokio::test]
    async fn an_instance_without_a_planned_backfill_costs_no_call() {
        let shop = shop();
        *shop.calls_left.lock().unwrap() = 100;
        let (worker, queue, _) = worker(&shop);

        run(&worker).await;

        assert!(shop.served.lock().unwrap().is_empty());
        assert!(queue.is_empty());
    }
}
