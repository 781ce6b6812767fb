//! `catalog_pull`, `product_sync`, `event_sync`, `inventory_sync`: Revel's
//! pulls ([`crate::sync`]), within the message's deadline and the API
//! budget. A pull its deadline stops continues in a new job; one a spent
//! budget stops is done, and the next scheduled run resumes it.
//!
//! A catalog pull asked for by a menu push is dated by the push: skipped
//! when a pull that began after the push has completed; otherwise it pulls,
//! and since that run may resume one begun before the push (past the pages
//! the push changed), once it completes a fresh run follows unless a run
//! begun after the push is complete by then. So a push during or after a
//! pull leads to exactly one more pull.
//!
//! Catalog pulls held back behind a failed pull of their group are taken
//! over (`pull_after_failed`) rather than held back.

use tokio::time::Instant;

use crate::sync::{self, PullOutcome, StopReason, SyncError, CATALOG};
use crate::worker::disposition::until_budget_resets;
use crate::worker::{pages_until, Disposition, JobError, Worker};
use domain::error::DependencyError;
use domain::idempotency::sha256_hex;
use domain::ids::InstanceName;
use ports::queue::{JobKind, JobMessage, QueuedJob, ReceivedJob};
use vendors::revel::api::RevelApiError;

/// One pull of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    pub instance: InstanceName,
    /// The job's kind, which its continuation keeps.
    pub kind: JobKind,
    pub resources: &'static sync::Pull,
    /// When the menu push that asked for it was received (µs); `None` for a
    /// scheduled pull, a continuation or an older job, which just pulls.
    pub pushed_at: Option<i64>,
}

impl SyncError {
    /// What becomes of a pull or reconciliation that failed: a spent budget
    /// waits for the reset (pulls themselves stop cleanly on it), anything
    /// else is retried.
    pub fn disposition(&self, now: time::OffsetDateTime) -> Disposition {
        match self {
            Self::Api(RevelApiError::BudgetExhausted { .. }) => {
                Disposition::RetryAfter(until_budget_resets(now))
            }
            _ => Disposition::Retry,
        }
    }
}

impl Pull {
    pub async fn run(self, worker: &Worker, deadline: Instant) -> Result<(), JobError> {
        let Some(pushed_at) = self.pushed_at else {
            return self.pull(worker, deadline).await.map(drop);
        };
        for attempt in 0..2 {
            if worker
                .syncer
                .pulled_since(&self.instance, &CATALOG, pushed_at)
                .await?
            {
                if attempt == 0 {
                    tracing::info!(instance = %self.instance, "a catalog pull that began after this menu push has completed; nothing to pull");
                }
                return Ok(());
            }
            if !self.pull(worker, deadline).await? {
                // Stopped: its continuation carries the push's date.
                return Ok(());
            }
        }
        Ok(())
    }

    /// Runs the pull until it completes, stops, or is
    /// [`crate::worker::PAGE_ALLOWANCE`] from `deadline`; true when it
    /// completed.
    async fn pull(&self, worker: &Worker, deadline: Instant) -> Result<bool, JobError> {
        let (instance, pull) = (&self.instance, self.resources);
        let skipped = format!("pull {} skipped", pull.name);
        let Some(credentials) = worker.credentials_for(instance, &skipped).await? else {
            return Ok(false);
        };
        let outcome = worker
            .syncer
            .pull(instance, &credentials, pull, pages_until(deadline))
            .await;
        worker.report_budget(instance).await;
        match outcome? {
            PullOutcome::Complete { fetched, written } => {
                tracing::info!(%instance, pull = pull.name, fetched, written, "pull complete");
                return Ok(true);
            }
            PullOutcome::Stopped {
                reason: StopReason::BudgetSpent,
                fetched,
                written,
            } => {
                tracing::warn!(%instance, pull = pull.name, fetched, written, "pull stopped: API budget spent; the next run resumes");
            }
            PullOutcome::Stopped {
                reason: StopReason::Deadline,
                fetched,
                written,
            } => {
                tracing::info!(%instance, pull = pull.name, fetched, written, "pull stopped at its deadline; continuing in a new job");
                // A push's pull goes on as that push's, so it is still
                // checked against the push's date when it completes.
                worker
                    .continue_later(self.kind, instance, self.pushed_at)
                    .await?;
            }
        }
        Ok(false)
    }
}

/// A pull of the catalog: after a menu push, or the end of day's.
pub(crate) fn is_catalog_pull(message: &ReceivedJob) -> bool {
    serde_json::from_str::<JobMessage>(&message.body)
        .is_ok_and(|job| matches!(job.job, JobKind::CatalogPull | JobKind::ProductSync))
}

/// Catalog pulls held back behind a failed pull of their group. Held
/// back, they would spend their receives and reach the DLQ without ever
/// running; taken as covered by the failed pull's retry, a push that
/// came while its run was under way would be lost until end of day (the
/// run resumes past the pages it read before the push). So they are
/// acknowledged and one pull is queued behind the failed one, dated by
/// the newest push among them (a scheduled pull, undated, counts as
/// now): it runs after the failed one and is skipped if a pull begun
/// after that date has completed by then.
pub(crate) async fn pull_after_failed(
    worker: &Worker,
    group: &str,
    held: &[ReceivedJob],
) -> Result<(), DependencyError> {
    let now = worker.clock.now_micros();
    let jobs = held.iter().filter_map(|message| {
        let job: JobMessage = serde_json::from_str(&message.body).ok()?;
        let asked_at = job.version.filter(|_| job.job == JobKind::CatalogPull);
        Some((asked_at.unwrap_or(now), message, job))
    });
    let Some((asked_at, message, newest)) = jobs.max_by_key(|(at, _, _)| *at) else {
        return Ok(());
    };
    let job = QueuedJob {
        message: JobMessage {
            job: JobKind::CatalogPull,
            version: Some(asked_at),
            ..newest
        },
        group_id: group.to_owned(),
        // The same batch handled again (a crash before its report) queues
        // the same pull, which SQS drops.
        deduplication_id: sha256_hex(
            format!("after-failed-pull:{}", message.message_id).as_bytes(),
        ),
    };
    worker.jobs.enqueue(&job).await?;
    tracing::info!(
        group,
        held = held.len(),
        "catalog pulls held back behind a failed pull; one pull queued behind it"
    );
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use aws_lambda_events::event::sqs::SqsEvent;
    use tokio::time::Instant;

    use crate::sync::CATALOG;
    use crate::worker::testing::*;
    use crate::worker::{Worker, PAGE_ALLOWANCE};
    use domain::clock::Clock;
    use domain::ids::InstanceName;
    use ports::queue::{JobKind, JobMessage};
    use vendors::revel::api::{ApiCredentials, Page, PageRequest, RevelApiError, RevelResources};

    #[tokio::test]
    async fn catalog_pulls_held_back_behind_a_failed_pull_become_one_pull_queued_behind_it_dated_by_the_newest(
    ) {
        let entities = Arc::new(MemoryEntities::default());
        let key = entity(&entities, "a", 1).await;
        let pull = |version: i64| job_body(JobKind::CatalogPull, None, Some(version));
        // Fails: the job names an instance no key can be made of.
        let failing = pull(1).replace("\"demo\"", "\"-bad-\"");
        let mut batch = SqsEvent::default();
        batch.records = vec![
            message("1", "catalog:revel:demo", &failing),
            message("2", "catalog:revel:demo", &pull(7)),
            message("3", "revel:demo:customer:a", "not a job"),
            message("4", "revel:demo:customer:a", &sync_job(&key)),
            message("5", "catalog:revel:demo", &pull(5)),
        ];
        let queue = Arc::new(MemoryQueue::default());
        let worker = Parts {
            queue: queue.clone(),
            ..Parts::new(entities)
        }
        .build();

        let failed = failed_ids(&worker, batch).await;

        assert_eq!(
            failed,
            ["1", "3", "4"],
            "2 and 5 are acknowledged; 4, a delivery, waits behind 3"
        );
        let queued = queue.jobs.lock().unwrap().clone();
        assert_eq!(queued.len(), 1, "one pull for both: {queued:?}");
        assert_eq!(
            queued[0].group_id, "catalog:revel:demo",
            "behind the failed one"
        );
        assert_eq!(queued[0].message.job, JobKind::CatalogPull);
        assert_eq!(
            queued[0].message.version,
            Some(7),
            "a pull begun after the newest push covers both"
        );

        // A scheduled pull held back counts as asked for now.
        let before = domain::clock::SystemClock.now_micros();
        let mut batch = SqsEvent::default();
        batch.records = vec![
            message("6", "catalog:revel:demo", &failing),
            message(
                "7",
                "catalog:revel:demo",
                &job_body(JobKind::ProductSync, None, None),
            ),
        ];
        assert_eq!(failed_ids(&worker, batch).await, ["6"]);
        let queued = queue.jobs.lock().unwrap().clone();
        assert_eq!(queued.len(), 2);
        assert!(queued[1].message.version.is_some_and(|v| v >= before));
    }

    /// Revel's catalog in memory: `Product` in two pages of one object,
    /// every other resource empty. The offsets of the `Product` pages asked
    /// for are kept; `fail_next_at` fails the next request for that offset;
    /// `down` fails every request; `budget` is the calls left (`None`:
    /// unlimited), each page taking one.
    #[derive(Default)]
    pub(crate) struct Catalog {
        pub requested: Mutex<Vec<u64>>,
        pub fail_next_at: Mutex<Option<u64>>,
        pub down: std::sync::atomic::AtomicBool,
        pub budget: Mutex<Option<u64>>,
    }

    #[async_trait::async_trait]
    impl RevelResources for Catalog {
        async fn page(
            &self,
            _instance: &InstanceName,
            _credentials: &ApiCredentials,
            request: &PageRequest,
        ) -> Result<Page, RevelApiError> {
            let unavailable = RevelApiError::Unavailable {
                attempts: 1,
                last_status: Some(503),
            };
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(unavailable);
            }
            if let Some(left) = self.budget.lock().unwrap().as_mut() {
                if *left == 0 {
                    return Err(RevelApiError::BudgetExhausted { limit: 1 });
                }
                *left -= 1;
            }
            if request.resource != "Product" {
                return Ok(Page {
                    objects: Vec::new(),
                    next_offset: None,
                    total_count: Some(0),
                });
            }
            self.requested.lock().unwrap().push(request.offset);
            let mut fail = self.fail_next_at.lock().unwrap();
            if *fail == Some(request.offset) {
                *fail = None;
                return Err(unavailable);
            }
            Ok(Page {
                objects: vec![
                    serde_json::json!({"id": request.offset + 1, "updated_date": "2026-11-20T10:00:00"}),
                ],
                next_offset: (request.offset == 0).then_some(1),
                total_count: Some(2),
            })
        }

        async fn create(
            &self,
            _instance: &InstanceName,
            _credentials: &ApiCredentials,
            _resource: &str,
            _body: &serde_json::Value,
        ) -> Result<serde_json::Value, RevelApiError> {
            Err(RevelApiError::InvalidRequest("the catalog is read only"))
        }

        async fn update(
            &self,
            _instance: &InstanceName,
            _credentials: &ApiCredentials,
            _resource: &str,
            _id: &str,
            _body: &serde_json::Value,
        ) -> Result<serde_json::Value, RevelApiError> {
            Err(RevelApiError::InvalidRequest("the catalog is read only"))
        }
    }

    /// A worker over `catalog`, and the queue its continuations go to.
    pub(crate) fn pulling_worker(catalog: Arc<Catalog>) -> (Worker, Arc<MemoryQueue>) {
        let queue = Arc::new(MemoryQueue::default());
        let worker = Parts {
            api: catalog,
            secrets: WITH_API_CREDENTIALS,
            queue: queue.clone(),
            ..Parts::new(Arc::default())
        }
        .build();
        (worker, queue)
    }

    #[tokio::test]
    async fn a_push_during_a_pull_that_failed_midway_gets_a_fresh_pull_once_the_resumed_one_completes(
    ) {
        let catalog = Arc::new(Catalog::default());
        let (worker, _) = pulling_worker(catalog.clone());
        *catalog.fail_next_at.lock().unwrap() = Some(1);
        let end_of_day: JobMessage =
            serde_json::from_str(&job_body(JobKind::ProductSync, None, None)).unwrap();
        assert!(
            worker.run(&end_of_day, soon()).await.is_err(),
            "page 2 failed"
        );
        // The push comes after the failed run began: page 1 was read before
        // what it changed, and the run resumes at page 2.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let pushed_at = domain::clock::SystemClock.now_micros();
        let push: JobMessage =
            serde_json::from_str(&job_body(JobKind::CatalogPull, None, Some(pushed_at))).unwrap();

        worker.run(&push, soon()).await.unwrap();

        assert_eq!(
            *catalog.requested.lock().unwrap(),
            [0, 1, 1, 0, 1],
            "the resumed run finished, then one fresh run"
        );
        let demo = InstanceName::parse("demo").unwrap();
        assert!(worker
            .syncer
            .pulled_since(&demo, &CATALOG, pushed_at)
            .await
            .unwrap());
        worker.run(&push, soon()).await.unwrap();
        assert_eq!(catalog.requested.lock().unwrap().len(), 5, "covered now");
    }

    #[tokio::test]
    async fn a_pushs_pull_stopped_at_its_deadline_goes_on_as_that_pushs_pull() {
        let catalog = Arc::new(Catalog::default());
        let (worker, queue) = pulling_worker(catalog.clone());
        let push: JobMessage =
            serde_json::from_str(&job_body(JobKind::CatalogPull, None, Some(42))).unwrap();

        // Less than a page's allowance left: it stops before any page.
        worker
            .run(&push, Instant::now() + PAGE_ALLOWANCE / 2)
            .await
            .unwrap();

        assert!(catalog.requested.lock().unwrap().is_empty());
        let queued = queue.jobs.lock().unwrap().clone();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].message.job, JobKind::CatalogPull);
        assert_eq!(
            queued[0].message.version,
            Some(42),
            "still checked against the push"
        );
        assert_eq!(queued[0].group_id, "catalog:revel:demo");
    }

    /// A worker over `catalog` (its failures put off and parked in a
    /// queue), and the queue holding one `kind` job of `demo` in `group`,
    /// and its id.
    pub(crate) fn queued(
        catalog: &Arc<Catalog>,
        kind: JobKind,
        group: &str,
    ) -> (Worker, Arc<MemoryFifo>, String) {
        let fifo = fifo();
        let worker = Parts::calling(catalog.clone(), &fifo, Arc::default()).build();
        let id = fifo.send(group, &job_body(kind, None, None));
        (worker, fifo, id)
    }

    #[tokio::test(start_paused = true)]
    async fn a_pull_revel_cannot_serve_now_comes_back_after_the_backoff_and_resumes_where_it_stopped(
    ) {
        let catalog = Arc::new(Catalog::default());
        *catalog.fail_next_at.lock().unwrap() = Some(1);
        let (worker, fifo, id) = queued(&catalog, JobKind::ProductSync, "catalog:revel:demo");

        fails_and_comes_back_in(&worker, &fifo, &id, FIRST_BACKOFF).await;
        all_done_after(&worker, &fifo, FIRST_BACKOFF).await;

        assert_eq!(
            *catalog.requested.lock().unwrap(),
            [0, 1, 1],
            "page 2 again, not page 1"
        );
        assert!(fifo.is_empty() && fifo.parked().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pull_a_spent_budget_stops_is_done_and_the_next_run_resumes_where_it_stopped() {
        let catalog = Arc::new(Catalog::default());
        *catalog.budget.lock().unwrap() = Some(1);
        let (worker, fifo, _) = queued(&catalog, JobKind::ProductSync, "catalog:revel:demo");

        assert!(
            invoke(&worker, &fifo).await.is_empty(),
            "acknowledged: a retry before the reset would find the budget spent"
        );
        assert!(fifo.is_empty() && fifo.parked().is_empty());
        assert_eq!(*catalog.requested.lock().unwrap(), [0]);

        // The budget is new again; the next scheduled run resumes.
        *catalog.budget.lock().unwrap() = None;
        let body = job_body(JobKind::ProductSync, None, None);
        fifo.send("catalog:revel:demo", &body);
        assert!(invoke(&worker, &fifo).await.is_empty());
        assert_eq!(*catalog.requested.lock().unwrap(), [0, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pull_for_an_instance_that_can_be_no_key_is_no_job_and_is_parked_at_once() {
        let catalog = Arc::new(Catalog::default());
        let fifo = fifo();
        let worker = Parts::calling(catalog.clone(), &fifo, Arc::default()).build();
        let body = job_body(JobKind::ProductSync, None, None).replace("\"demo\"", "\"-bad-\"");
        let id = fifo.send("catalog:revel:demo", &body);

        assert!(invoke(&worker, &fifo).await.is_empty());

        assert_eq!(fifo.parked()[0].message_id, id);
        assert!(catalog.requested.lock().unwrap().is_empty());
    }
}
