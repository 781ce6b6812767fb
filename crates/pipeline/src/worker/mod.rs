//! The jobs worker: consumes the follow-up queue (SQS FIFO) with partial
//! batch responses, so one failing message is retried alone and, after the
//! queue's redrive count, lands in the DLQ, while its batch-mates finish.
//!
//! Every job is idempotent: a delivery records the newest version delivered
//! and never sends that version or an older one again; pulls and
//! reconciliation resume from their cursor and write newest-wins.
//!
//! It dispatches commands the way mini-redis does: a message body is parsed
//! into one [`Job`], each job runs from a file of its own, and a job that
//! fails says itself what becomes of its message ([`Disposition`]), which
//! the generic runner ([`batch`]) carries out through a port: no job knows
//! SQS. Every dependency is a port ([`Worker`]), so each job's retry, budget
//! and parking paths are tested on fakes.
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`batch`] | the partial-batch runner: an SQS event in, `BatchItemFailures` out; a deadline per message; a failed message holds its group's later ones back |
//! | [`disposition`] | what becomes of a message whose job failed (retried, retried later, parked, held) and how long each wait is |
//! | [`job`] | the jobs, parsed from a message into one enum, and the dispatch to their files |
//! | [`envelope`] | what every message to the partner looks like, and its stable ids |
//! | [`jobs::deliver`] | `sync_entity`: an entity's current state to the partner |
//! | [`jobs::inventory_sold`] | `inventory_sold`: what a Revel order sold, one message per product |
//! | [`jobs::pull`] | `catalog_pull`, `product_sync`, `event_sync`, `inventory_sync`: Revel's pulls; catalog pulls held behind a failed one |
//! | [`jobs::reconcile`] | `reconcile`: Revel's orders whose webhook never came |
//! | [`jobs::apply_to_revel`] | `apply_to_revel`: a partner change written to Revel |
//! | [`jobs::partner_catalog`] | `partner_catalog`: the partner's products and events, the end-of-day batch |
//! | [`jobs::inventory_request`] | `inventory_request`: the partner's search, pulled on demand |
//! | [`jobs::winesitting_repair`] | `winesitting_repair`: WineSitting's orders polled again |

pub mod batch;
pub mod disposition;
pub mod envelope;
pub mod job;
pub mod jobs;

#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tokio::time::Instant;

use crate::apply::{Applier, ApplyError};
use crate::receive::Receiver;
use crate::sync::{SyncError, Syncer};
use crate::worker::jobs::winesitting_repair::poll::RepairError;
use domain::clock::Clock;
use domain::error::DependencyError;
use domain::ids::{EntityKey, InstanceName};
use ports::queue::{InFlightJobs, JobKind, JobMessage, JobQueue, QueuedJob, ReceivedJob};
use ports::secrets::InstanceDocument;
use ports::store::EntityStore;
use ports::sync_state::{CallBudget, EchoLog, OnDemandAllowance};
use telemetry::{self, Dimension, Metric};
use vendors::revel::api::{ApiCredentials, RevelApiError};
use vendors::vinesos::downstream::{DeliveryError, Partner};
use vendors::winesitting::api::WineSittingOrders;

pub use batch::{message_deadline, MIN_TIME_TO_START, RESERVE_PER_MESSAGE};
pub use disposition::{after_budget_resets, Disposition};
pub use envelope::{message_id, message_id_of_part, INVENTORY_SOLD};
pub use job::{Job, ParseError};

/// Pulls and reconciliation stop between pages, and the partner catalog
/// batch between items, this long before their message's deadline: about
/// what one call takes at worst before its retries (Revel's 10 s timeout),
/// so the page or item under way can finish.
pub const PAGE_ALLOWANCE: Duration = Duration::from_secs(10);

/// When pages stop: [`PAGE_ALLOWANCE`] before the message's deadline.
pub(crate) fn pages_until(deadline: Instant) -> Instant {
    deadline.checked_sub(PAGE_ALLOWANCE).unwrap_or(deadline)
}

/// Why a job did not finish. Each says what becomes of its message
/// ([`JobError::disposition`]).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The message is no job: parked.
    #[error("message is not a job: {0}")]
    NotAJob(#[from] ParseError),
    /// What the job found can never do (a stored state that is not JSON):
    /// parked.
    #[error("can never succeed: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Store(#[from] DependencyError),
    #[error("delivery: {0}")]
    Delivery(#[from] DeliveryError),
    #[error("sync: {0}")]
    Sync(#[from] SyncError),
    #[error("applying to Revel: {0}")]
    Apply(#[from] ApplyError),
    #[error("WineSitting repair: {0}")]
    Repair(#[from] RepairError),
    /// Not a failure: the job is due later (an on-demand inventory pull
    /// waiting for the next hour); it comes back then, uncounted.
    #[error("due at {0}")]
    NotYet(time::OffsetDateTime),
}

impl JobError {
    /// What becomes of the message, decided by the job that failed (see
    /// each job's file) as of `now`.
    pub fn disposition(&self, now: time::OffsetDateTime) -> Disposition {
        match self {
            Self::NotAJob(_) | Self::Malformed(_) => Disposition::Park,
            Self::Store(_) => Disposition::Retry,
            Self::Delivery(error) => jobs::deliver::disposition(error),
            Self::Sync(error) => error.disposition(now),
            Self::Apply(error) => error.disposition(now),
            Self::Repair(error) => error.disposition(),
            Self::NotYet(due) => Disposition::Later(disposition::until_due(now, *due)),
        }
    }

    /// A short name for the kind of failure, the `Reason` of its metric.
    pub fn kind(&self) -> &'static str {
        match self {
            _ if self.is_budget_spent() => "budget_spent",
            Self::NotAJob(_) | Self::Malformed(_) => "malformed",
            Self::Store(_) => "store",
            Self::Delivery(_) => "delivery",
            Self::Sync(_) => "sync",
            Self::Apply(_) => "apply",
            Self::Repair(_) => "repair",
            Self::NotYet(_) => "not_yet",
        }
    }

    /// No partner URL is configured: the delivery waits for one.
    pub fn is_delivery_unconfigured(&self) -> bool {
        matches!(self, Self::Delivery(DeliveryError::NotConfigured))
    }

    /// The instance's daily Revel API budget is spent.
    pub fn is_budget_spent(&self) -> bool {
        matches!(
            self,
            Self::Apply(ApplyError::Api(RevelApiError::BudgetExhausted { .. }))
                | Self::Sync(SyncError::Api(RevelApiError::BudgetExhausted { .. }))
        )
    }
}

impl batch::Failure for JobError {
    fn disposition(&self, now: time::OffsetDateTime) -> Disposition {
        JobError::disposition(self, now)
    }

    fn count(&self) {
        match self {
            // Not a failure of the job: the merchant has not said where the
            // partner is, and the alarm on this metric says so.
            _ if self.is_delivery_unconfigured() => {
                telemetry::count(Metric::DeliveriesWaiting, &[]);
            }
            Self::NotYet(_) => {}
            _ => telemetry::count(Metric::JobFailures, &[(Dimension::Reason, self.kind())]),
        }
    }
}

/// What the worker needs, each behind its port. `partner: None` means no
/// partner URL is configured: deliveries are parked in the dead-letter queue
/// (or, without one, kept on the queue as long as SQS allows), never dropped.
pub struct Worker {
    /// What becomes of a message not finished: put off, or parked.
    pub in_flight: Arc<dyn InFlightJobs>,
    /// Dates the messages to the partner, and the waits.
    pub clock: Arc<dyn Clock>,
    pub entities: Arc<dyn EntityStore>,
    /// Where continuations and follow-up pulls are queued.
    pub jobs: Arc<dyn JobQueue>,
    /// Revel's secret document: each instance's API credentials and settings.
    pub revel: Arc<dyn InstanceDocument>,
    pub partner: Option<Arc<dyn Partner>>,
    pub syncer: Syncer,
    /// Revel's API as a backfill calls it: within a share of each
    /// instance's budget ([`crate::backfill::RESERVE_PERCENT`] kept back).
    pub backfill_api: Arc<dyn vendors::revel::api::RevelResources>,
    /// The order.finalized receiver, for reconciled orders.
    pub orders: Receiver,
    /// Applies the partner's changes to Revel.
    pub applier: Applier,
    /// Writes the bundle made in Revel, so their webhooks aren't sent back.
    pub echoes: Arc<dyn EchoLog>,
    /// To report the budget spent after a pull or a write.
    pub budget: Arc<dyn CallBudget>,
    /// The hourly allowance of the partner's on-demand inventory pulls.
    pub on_demand: Arc<dyn OnDemandAllowance>,
    /// WineSitting's repair poll, where WineSitting is configured.
    pub winesitting: Option<WineSittingRepair>,
}

/// What the WineSitting repair poll needs.
pub struct WineSittingRepair {
    pub api: Arc<dyn WineSittingOrders>,
    /// WineSitting's secret document: each account's API key.
    pub secrets: Arc<dyn InstanceDocument>,
    /// The WineSitting receiver: repaired orders go through its pipeline.
    pub receiver: Receiver,
}

impl Worker {
    /// Handles a batch as [`batch::Runner`] says: in order, a failed
    /// message holding its group's later ones back, each message within a
    /// deadline of its own, each failure disposed of as its job says.
    pub async fn handle_batch(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let runner = batch::Runner {
            in_flight: self.in_flight.as_ref(),
            clock: self.clock.as_ref(),
        };
        runner.run(self, event, deadline).await
    }

    /// Runs one job message until `deadline`.
    pub async fn run(&self, message: &JobMessage, deadline: Instant) -> Result<(), JobError> {
        Job::from_message(message)?.run(self, deadline).await
    }

    /// The partner, or why there is none: with no URL configured a delivery
    /// waits (parked), it is never acknowledged unsent.
    pub(crate) fn partner(&self) -> Result<&dyn Partner, JobError> {
        self.partner
            .as_deref()
            .ok_or(JobError::Delivery(DeliveryError::NotConfigured))
    }

    /// Whether `key` at `version` is the bundle's own write to Revel coming
    /// back (only those are echoes): what the partner wrote, it knows.
    pub(crate) async fn is_own_write(
        &self,
        key: &EntityKey,
        version: i64,
    ) -> Result<bool, JobError> {
        if envelope::source_of(key) != vendors::revel::NAME {
            return Ok(false);
        }
        Ok(self.echoes.is_echo(key, version).await?)
    }

    /// `instance`'s Revel API credentials, if its entry has them.
    pub(crate) async fn credentials(
        &self,
        instance: &InstanceName,
    ) -> Result<Option<ApiCredentials>, JobError> {
        let document = self.revel.document().await?;
        Ok(document.api_credentials(instance).cloned())
    }

    /// `instance`'s Revel API credentials; without them, `None`, and the
    /// log says what is `skipped`.
    pub(crate) async fn credentials_for(
        &self,
        instance: &InstanceName,
        skipped: &str,
    ) -> Result<Option<ApiCredentials>, JobError> {
        let credentials = self.credentials(instance).await?;
        if credentials.is_none() {
            tracing::warn!(%instance, "no Revel API credentials for this instance; {skipped}");
        }
        Ok(credentials)
    }

    /// Queues the rest of a run its deadline stopped; it resumes from the
    /// cursor. `version`: the job's own, where it carries one on.
    pub(crate) async fn continue_later(
        &self,
        kind: JobKind,
        instance: &InstanceName,
        version: Option<i64>,
    ) -> Result<(), JobError> {
        let window = format!("cont-{}", self.clock.now().unix_timestamp());
        let mut continuation =
            QueuedJob::scheduled(kind, vendors::revel::NAME.as_str(), instance, &window);
        continuation.message.version = version;
        self.jobs.enqueue(&continuation).await?;
        Ok(())
    }

    /// Queues the rest of a run of `kind` when its deadline `stopped` it (a
    /// spent budget waits for the next scheduled run instead).
    pub(crate) async fn continue_if_out_of_time(
        &self,
        stopped: Option<crate::sync::StopReason>,
        kind: JobKind,
        instance: &InstanceName,
    ) -> Result<(), JobError> {
        if stopped == Some(crate::sync::StopReason::Deadline) {
            self.continue_later(kind, instance, None).await?;
        }
        Ok(())
    }

    /// Logs and records `instance`'s API calls spent today.
    pub(crate) async fn report_budget(&self, instance: &InstanceName) {
        let spent_and_limit = async {
            Ok::<_, domain::error::DependencyError>((
                self.budget.spent_today(instance).await?,
                self.budget.limit_of(instance).await?,
            ))
        };
        match spent_and_limit.await {
            Ok((spent, limit)) => {
                tracing::info!(%instance, spent, limit, "API calls spent today");
                let dimensions = [(Dimension::Instance, instance.as_str())];
                telemetry::record(Metric::ApiCallsSpent, spent as f64, &dimensions);
                telemetry::record(
                    Metric::ApiBudgetUsedPercent,
                    used_percent(spent, limit),
                    &dimensions,
                );
            }
            Err(error) => error.log("could not read the API budget"),
        }
    }
}

#[async_trait]
impl batch::Handler for Worker {
    type Error = JobError;

    async fn handle(&self, message: &ReceivedJob, deadline: Instant) -> Result<(), JobError> {
        Job::parse(&message.body)?.run(self, deadline).await
    }

    fn takes_over(&self, message: &ReceivedJob) -> bool {
        jobs::pull::is_catalog_pull(message)
    }

    async fn take_over(&self, group: &str, held: &[ReceivedJob]) -> Result<(), DependencyError> {
        jobs::pull::pull_after_failed(self, group, held).await
    }
}

/// Today's spent calls as a percentage of the daily budget.
fn used_percent(spent: u64, limit: u64) -> f64 {
    if limit == 0 {
        return 100.0;
    }
    spent as f64 * 100.0 / limit as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::disposition::{until_budget_resets, until_due};
    use crate::worker::testing::*;
    use aws_lambda_events::event::sqs::SqsEvent;
    use std::sync::Arc;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    #[tokio::test]
    async fn after_a_failure_later_jobs_of_the_same_group_are_held_back_and_other_groups_go_on() {
        let partner = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .mount(&partner)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&partner)
            .await;
        let entities = Arc::new(MemoryEntities::default());
        let (a, b) = (
            entity(&entities, "a", 1).await,
            entity(&entities, "b", 1).await,
        );
        let worker = worker(entities.clone(), Some(downstream(&partner.uri())));
        let mut batch = SqsEvent::default();
        batch.records = vec![
            message("1", "group-a", &sync_job(&a)),
            message("2", "group-a", &sync_job(&a)),
            message("3", "group-b", &sync_job(&b)),
            message("4", "group-c", "not a job"),
        ];
        let failed = failed_ids(&worker, batch).await;
        assert_eq!(
            failed,
            ["1", "2", "4"],
            "1 failed, 2 waits behind it, 3 succeeded, 4 is poison"
        );
        assert_eq!(
            partner.received_requests().await.unwrap().len(),
            2,
            "message 2 was not sent"
        );
        assert!(
            EntityStore::get(entities.as_ref(), &b)
                .await
                .unwrap()
                .unwrap()
                .delivered_revision
                == Some(1)
        );
    }

    #[test]
    fn a_spent_budget_waits_until_just_after_midnight_but_never_past_sqs_s_twelve_hours() {
        let wait = |at| until_budget_resets(at).as_secs();
        assert_eq!(
            wait(time::macros::datetime!(2026-11-29 23:00:00 UTC)),
            3600 + 60
        );
        assert_eq!(wait(time::macros::datetime!(2026-11-29 23:59:30 UTC)), 90);
        assert_eq!(
            wait(time::macros::datetime!(2026-11-29 13:00:00 UTC)),
            11 * 3600 + 60
        );
        assert_eq!(
            wait(time::macros::datetime!(2026-11-29 06:00:00 UTC)),
            12 * 3600,
            "18 h away: SQS's longest visibility timeout"
        );
        let spent = JobError::Apply(ApplyError::Api(RevelApiError::BudgetExhausted { limit: 1 }));
        let at = time::macros::datetime!(2026-11-29 23:00:00 UTC);
        assert!(spent.is_budget_spent());
        assert_eq!(
            spent.disposition(at),
            Disposition::RetryAfter(until_budget_resets(at)),
            "retried after the reset, not parked"
        );
        assert!(!JobError::Malformed("x").is_budget_spent());
    }

    #[test]
    fn a_job_due_later_waits_until_it_is_due_but_never_past_sqs_s_twelve_hours() {
        let now = time::macros::datetime!(2026-11-29 10:20:00 UTC);
        let wait = |due| until_due(now, due).as_secs();
        assert_eq!(wait(time::macros::datetime!(2026-11-29 11:00:00 UTC)), 2400);
        assert_eq!(wait(time::macros::datetime!(2026-11-29 10:00:00 UTC)), 0);
        assert_eq!(
            wait(time::macros::datetime!(2026-11-30 10:20:00 UTC)),
            12 * 3600
        );
        let due = JobError::NotYet(time::macros::datetime!(2026-11-29 11:00:00 UTC));
        assert!(!due.is_budget_spent());
        assert_eq!(
            due.disposition(now),
            Disposition::Later(Duration::from_secs(2400)),
            "back when due, neither parked nor counted a failure"
        );
        assert_eq!(due.kind(), "not_yet");
    }

    #[test]
    fn budget_use_is_reported_as_a_percentage_of_the_daily_limit() {
        assert_eq!(used_percent(800, 1000), 80.0);
        assert_eq!(used_percent(0, 1000), 0.0);
        assert_eq!(used_percent(5, 0), 100.0);
    }

    #[test]
    fn job_failures_are_named_by_kind_and_a_spent_budget_by_itself() {
        assert_eq!(JobError::Malformed("x").kind(), "malformed");
        let spent = JobError::Sync(SyncError::Api(RevelApiError::BudgetExhausted { limit: 1 }));
        assert_eq!(spent.kind(), "budget_spent");
        assert_eq!(JobError::NotAJob(ParseError::EmptyBody).kind(), "malformed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_that_cant_finish_stops_at_its_deadline_and_its_batch_mates_results_are_kept()
    {
        let entities = Arc::new(MemoryEntities::default());
        let (a, b, c) = (
            entity(&entities, "a", 1).await,
            entity(&entities, "b", 1).await,
            entity(&entities, "c", 1).await,
        );
        let partner = Arc::new(MemoryPartner {
            hang_on: Some("a"),
            ..MemoryPartner::default()
        });
        let worker = delivering(entities.clone(), partner.clone());
        let mut batch = SqsEvent::default();
        batch.records = vec![
            message("1", "revel:demo:customer:a", &sync_job(&a)),
            message("2", "revel:demo:customer:b", &sync_job(&b)),
            message("3", "revel:demo:customer:c", &sync_job(&c)),
        ];
        let start = Instant::now();

        let response = worker
            .handle_batch(batch, start + Duration::from_secs(6))
            .await;

        let failed: Vec<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        assert_eq!(
            failed,
            ["1", "2"],
            "1 ran out of its time (6 s less 2 for the two after it); 2 had 1 s left and was not started; 3 had its 2 s"
        );
        assert_eq!(Instant::now() - start, Duration::from_secs(4));
        let sent = partner.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1["data"]["id"], "c");
        let delivered = |key: &EntityKey| entities.get(key).unwrap().delivered_revision;
        assert_eq!(delivered(&c), Some(1));
        assert_eq!(delivered(&a), None);
    }
}
