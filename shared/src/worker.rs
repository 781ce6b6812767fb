//! The jobs worker: consumes the follow-up queue (SQS FIFO) with partial
//! batch responses, so one failing message is retried alone and, after the
//! queue's redrive count, lands in the DLQ, while its batch-mates finish.
//!
//! Every job is idempotent: a delivery records the newest version delivered
//! and never sends that version or an older one again; pulls and
//! reconciliation resume from their cursor and write newest-wins.

use std::collections::HashSet;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::json;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::downstream::{DeliveryError, Partner};
use crate::error::DependencyError;
use crate::idempotency::sha256_hex;
use crate::ids::{EntityKey, InstanceName};
use crate::queue::{Job, JobKind, JobMessage, JobQueue};
use crate::receive::Receiver;
use crate::sources::revel::Revel;
use crate::store::EntityStore;
use crate::sync::{PullOutcome, StopReason, SyncError, Syncer, CATALOG, EVENTS, INVENTORY};
use crate::sync_state::DynamoSyncState;
use crate::telemetry::{self, log_dependency, Dimension, Metric};

/// Why a job did not finish. The message is retried through the queue.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("message is not a job: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Store(#[from] DependencyError),
    #[error("delivery: {0}")]
    Delivery(#[from] DeliveryError),
    #[error("sync: {0}")]
    Sync(#[from] SyncError),
    #[error("applying to Revel: {0}")]
    Apply(#[from] crate::apply::ApplyError),
    #[error("WineSitting repair: {0}")]
    Repair(#[from] crate::sources::winesitting::RepairError),
}

/// Failed jobs come back after 30 s, 1 min, 2 min, ... (at most 15 min)
/// instead of the queue's fixed visibility timeout, so a partner that is
/// down for a while isn't hammered, and a short blip costs little delay.
pub struct RetryBackoff {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl RetryBackoff {
    pub fn delay(receive_count: u32) -> std::time::Duration {
        let exponent = receive_count.saturating_sub(1).min(5);
        std::time::Duration::from_secs((30u64 << exponent).min(900))
    }

    /// Until just after the next UTC midnight, when the daily API budget
    /// resets (SQS allows at most 12 hours).
    pub fn until_budget_resets(now: time::OffsetDateTime) -> std::time::Duration {
        let seconds_into_day =
            i64::from(now.hour()) * 3600 + i64::from(now.minute()) * 60 + i64::from(now.second());
        let left = (86_400 - seconds_into_day + 60).clamp(60, 12 * 3600);
        std::time::Duration::from_secs(left as u64)
    }

    async fn apply(&self, message: &SqsMessage, wait: Option<std::time::Duration>) {
        let Some(handle) = &message.receipt_handle else {
            return;
        };
        let count = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let result = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(handle)
            .visibility_timeout(wait.unwrap_or_else(|| Self::delay(count)).as_secs() as i32)
            .send()
            .await;
        if let Err(error) = result {
            // The queue's own visibility timeout applies instead.
            let error = DependencyError::new("sqs", "ChangeMessageVisibility", error);
            log_dependency(&error, "could not set the retry backoff");
        }
    }
}

/// The dead-letter queue, for jobs that can never succeed.
pub struct DeadLetters {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl JobError {
    /// A short name for the kind of failure, the `Reason` of its metric.
    pub fn kind(&self) -> &'static str {
        match self {
            _ if self.is_budget_spent() => "budget_spent",
            Self::Malformed(_) => "malformed",
            Self::Store(_) => "store",
            Self::Delivery(_) => "delivery",
            Self::Sync(_) => "sync",
            Self::Apply(_) => "apply",
            Self::Repair(_) => "repair",
        }
    }

    /// The instance's daily Revel API budget is spent.
    pub fn is_budget_spent(&self) -> bool {
        use crate::revel_api::RevelApiError;
        matches!(
            self,
            Self::Apply(crate::apply::ApplyError::Api(
                RevelApiError::BudgetExhausted { .. }
            )) | Self::Sync(SyncError::Api(RevelApiError::BudgetExhausted { .. }))
        )
    }

    /// A job that fails like this fails the same way every time: a message
    /// that isn't a job, a change the partner or Revel refuses as invalid,
    /// a partner change lacking what applying it needs.
    pub fn is_permanent(&self) -> bool {
        use crate::apply::ApplyError;
        use crate::revel_api::RevelApiError;
        matches!(
            self,
            Self::Malformed(_)
                | Self::Delivery(DeliveryError::Rejected { .. })
                | Self::Apply(ApplyError::Incomplete(_))
                | Self::Apply(ApplyError::Api(
                    RevelApiError::Rejected { .. } | RevelApiError::InvalidRequest(_)
                ))
        )
    }
}

/// What the worker needs; `downstream: None` means delivery is off.
pub struct Worker {
    pub entities: Arc<dyn EntityStore>,
    pub downstream: Option<Arc<dyn Partner>>,
    pub syncer: Syncer,
    pub revel: Arc<Revel>,
    /// The order.finalized receiver, for reconciled orders.
    pub orders: Receiver,
    /// Dates the messages to the partner.
    pub clock: Arc<dyn Clock>,
    pub jobs: Arc<dyn JobQueue>,
    /// To report the budget spent after a pull.
    pub budget: Option<Arc<DynamoSyncState>>,
    /// `None` leaves failed jobs to the queue's visibility timeout.
    pub retry: Option<RetryBackoff>,
    /// WineSitting's repair poll, where WineSitting is configured.
    pub winesitting: Option<WineSittingRepair>,
    /// Applies the partner's changes to Revel.
    pub applier: Option<crate::apply::Applier>,
    /// Writes the bundle made in Revel, so their webhooks aren't sent back.
    pub echoes: Option<Arc<dyn crate::sync_state::EchoLog>>,
    /// Where a job that can never succeed goes at once.
    pub dead_letters: Option<DeadLetters>,
}

/// What the WineSitting repair poll needs.
pub struct WineSittingRepair {
    pub api: crate::winesitting_api::WineSittingApi,
    pub source: Arc<crate::sources::winesitting::WineSitting>,
    /// The WineSitting receiver: repaired orders go through its pipeline.
    pub receiver: Receiver,
}

fn group_of(message: &SqsMessage) -> String {
    message
        .attributes
        .get("MessageGroupId")
        .cloned()
        .unwrap_or_default()
}

/// A pull of the catalog: after a menu push, or the end of day's.
fn is_catalog_pull(message: &SqsMessage) -> bool {
    message
        .body
        .as_deref()
        .and_then(|body| serde_json::from_str::<JobMessage>(body).ok())
        .is_some_and(|job| matches!(job.job, JobKind::CatalogPull | JobKind::ProductSync))
}

impl Worker {
    /// Handles a batch in order. A message whose group already failed in
    /// this batch is not run and is reported failed too, so a newer job for
    /// an entity never overtakes an older one that is waiting for a retry.
    pub async fn handle_batch(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let mut failed_groups = HashSet::new();
        let mut response = SqsBatchResponse::default();
        for message in event.records {
            let id = message.message_id.clone().unwrap_or_default();
            let group = group_of(&message);
            let result = if failed_groups.contains(&group) {
                if is_catalog_pull(&message) {
                    // Held back, it would spend its receives and reach the
                    // DLQ without ever running. Only pulls of the catalog
                    // share its group, and the failed one ahead of it runs
                    // again later from the same cursor, after this one was
                    // asked for: it covers this one.
                    tracing::info!(message_id = %id, "catalog pull covered by the failed pull ahead of it in its group");
                    Ok(())
                } else {
                    tracing::info!(message_id = %id, "held back behind a failed job of the same group");
                    Err(None)
                }
            } else {
                self.handle_message(&message, deadline).await.map_err(Some)
            };
            if let Err(Some(error)) = &result {
                telemetry::count(Metric::JobFailures, &[(Dimension::Reason, error.kind())]);
                if error.is_permanent() && self.park(&message, &group).await {
                    // Retrying can't help, and it would hold its group back
                    // until the held-back jobs, too, ran out of receives.
                    tracing::warn!(message_id = %id, error = %error, "job can never succeed; moved to the dead-letter queue");
                    continue;
                }
            }
            if let Err(error) = result {
                let budget_spent = error.as_ref().is_some_and(JobError::is_budget_spent);
                if let Some(error) = error {
                    tracing::warn!(message_id = %id, error = %error, "job failed; it will be retried");
                }
                failed_groups.insert(group);
                if let Some(retry) = &self.retry {
                    // A spent API budget comes back tomorrow, not in 30 s: the
                    // job waits for it rather than using up its receives.
                    let wait =
                        budget_spent.then(|| RetryBackoff::until_budget_resets(self.clock.now()));
                    retry.apply(&message, wait).await;
                }
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// Moves a message to the dead-letter queue at once; false when that
    /// isn't possible (it is then retried as usual and gets there by redrive).
    async fn park(&self, message: &SqsMessage, group: &str) -> bool {
        let Some(dead_letters) = &self.dead_letters else {
            return false;
        };
        let id = message.message_id.clone().unwrap_or_default();
        let sent = dead_letters
            .sqs
            .send_message()
            .queue_url(&dead_letters.queue_url)
            .message_body(message.body.clone().unwrap_or_default())
            .message_group_id(if group.is_empty() { "unknown" } else { group })
            .message_deduplication_id(sha256_hex(id.as_bytes()))
            .send()
            .await;
        match sent {
            Ok(_) => true,
            Err(error) => {
                let error = DependencyError::new("sqs", "SendMessage", error);
                log_dependency(&error, "could not park a job in the dead-letter queue");
                false
            }
        }
    }

    async fn handle_message(
        &self,
        message: &SqsMessage,
        deadline: Instant,
    ) -> Result<(), JobError> {
        let body = message
            .body
            .as_deref()
            .ok_or(JobError::Malformed("empty body"))?;
        let job: JobMessage =
            serde_json::from_str(body).map_err(|_| JobError::Malformed("not a job message"))?;
        self.run(&job, deadline).await
    }

    pub async fn run(&self, job: &JobMessage, deadline: Instant) -> Result<(), JobError> {
        let instance =
            InstanceName::parse(&job.instance).map_err(|_| JobError::Malformed("bad instance"))?;
        match job.job {
            JobKind::SyncEntity => self.deliver(job).await,
            JobKind::CatalogPull => {
                if let Some(pushed_at) = job.version {
                    if self
                        .syncer
                        .pulled_since(&instance, &CATALOG, pushed_at)
                        .await?
                    {
                        tracing::info!(%instance, "a catalog pull that began after this menu push has completed; nothing to pull");
                        return Ok(());
                    }
                }
                self.pull(job.job, &instance, &CATALOG, deadline).await
            }
            JobKind::ProductSync => self.pull(job.job, &instance, &CATALOG, deadline).await,
            JobKind::EventSync => self.pull(job.job, &instance, &EVENTS, deadline).await,
            JobKind::InventorySync => self.pull(job.job, &instance, &INVENTORY, deadline).await,
            JobKind::Reconcile => self.reconcile(&instance, deadline).await,
            JobKind::ApplyToRevel => self.apply_to_revel(job, &instance).await,
            JobKind::WinesittingRepair => self.winesitting_repair(&instance).await,
            JobKind::PartnerCatalog => crate::partner_catalog::run(self, &instance, deadline).await,
        }
    }

    /// Sends the entity's current state downstream, unless this version (or
    /// a newer one) already went.
    async fn deliver(&self, job: &JobMessage) -> Result<(), JobError> {
        let Some(downstream) = &self.downstream else {
            tracing::debug!("downstream delivery is off; job dropped");
            return Ok(());
        };
        let raw_key = job
            .entity_key
            .as_deref()
            .ok_or(JobError::Malformed("sync job without entity"))?;
        let key = EntityKey::parse(raw_key).map_err(|_| JobError::Malformed("bad entity key"))?;
        let Some(entity) = self.entities.get(&key).await? else {
            tracing::warn!(entity = %key, "entity to deliver is gone; nothing to send");
            return Ok(());
        };
        if entity.is_delivered() {
            tracing::info!(entity = %key, revision = entity.revision, "already delivered");
            return Ok(());
        }
        if let Some(echoes) = &self.echoes {
            if echoes.is_echo(&key, entity.rank.version).await? {
                tracing::info!(entity = %key, version = entity.rank.version, "the bundle's own write coming back from Revel; not sent to the partner");
                self.entities.mark_delivered(&key, entity.revision).await?;
                return Ok(());
            }
        }
        let state: serde_json::Value = serde_json::from_str(&entity.state_json)
            .map_err(|_| JobError::Malformed("stored state is not JSON"))?;
        let message_id = message_id(&key, entity.revision);
        let body = json!({
            "type": format!("revel.{}.changed", entity.kind),
            "timestamp": self.clock.now().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "data": {
                "source": "revel",
                "instance": job.instance,
                "kind": entity.kind,
                "id": entity.entity_id,
                "version": entity.rank.version,
                "revision": entity.revision,
                "event_key": entity.last_event_key,
                "state": state,
            }
        });
        downstream
            .deliver(&message_id, body.to_string().as_bytes())
            .await?;
        self.entities.mark_delivered(&key, entity.revision).await?;
        tracing::info!(entity = %key, revision = entity.revision, "delivered downstream");
        Ok(())
    }

    async fn pull(
        &self,
        kind: JobKind,
        instance: &InstanceName,
        pull: &crate::sync::Pull,
        deadline: Instant,
    ) -> Result<(), JobError> {
        let Some(credentials) = self.credentials(instance).await? else {
            tracing::warn!(%instance, pull = pull.name, "no API credentials for this instance; pull skipped");
            return Ok(());
        };
        let outcome = self
            .syncer
            .pull(instance, &credentials, pull, deadline)
            .await;
        self.report_budget(instance).await;
        match outcome? {
            PullOutcome::Complete { fetched, written } => {
                tracing::info!(%instance, pull = pull.name, fetched, written, "pull complete");
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
                self.continue_later(kind, instance).await?;
            }
        }
        Ok(())
    }

    async fn reconcile(&self, instance: &InstanceName, deadline: Instant) -> Result<(), JobError> {
        let Some(credentials) = self.credentials(instance).await? else {
            tracing::warn!(%instance, "no API credentials for this instance; reconciliation skipped");
            return Ok(());
        };
        let report = self
            .syncer
            .reconcile(instance, &credentials, &self.orders, deadline)
            .await;
        self.report_budget(instance).await;
        let report = report?;
        telemetry::record(
            Metric::ReconciledOrders,
            report.reconciled as f64,
            &[
                (Dimension::Source, "revel"),
                (Dimension::Instance, instance.as_str()),
            ],
        );
        tracing::info!(%instance, checked = report.checked, reconciled = report.reconciled, stopped = ?report.stopped, "reconciliation run");
        if report.stopped == Some(StopReason::Deadline) {
            self.continue_later(JobKind::Reconcile, instance).await?;
        }
        Ok(())
    }

    pub(crate) async fn credentials(
        &self,
        instance: &InstanceName,
    ) -> Result<Option<crate::revel_api::ApiCredentials>, JobError> {
        let document = self.revel.secrets().document().await?;
        Ok(document.api_credentials(instance).cloned())
    }

    /// Applies a partner change to Revel (within the API budget).
    async fn apply_to_revel(
        &self,
        job: &JobMessage,
        instance: &InstanceName,
    ) -> Result<(), JobError> {
        let Some(applier) = &self.applier else {
            return Err(JobError::Malformed(
                "applying to Revel is not configured here",
            ));
        };
        let raw_key = job
            .entity_key
            .as_deref()
            .ok_or(JobError::Malformed("apply job without entity"))?;
        let key = EntityKey::parse(raw_key).map_err(|_| JobError::Malformed("bad entity key"))?;
        let Some(credentials) = self.credentials(instance).await? else {
            // Retried until the credentials are in place, then the DLQ: a
            // partner change is never silently dropped.
            return Err(JobError::Malformed(
                "no Revel API credentials for this instance",
            ));
        };
        let applied = applier.apply(instance, &credentials, &key).await;
        // Writes spend the same daily budget as pulls.
        self.report_budget(instance).await;
        applied?;
        Ok(())
    }

    /// Polls WineSitting for the account's orders still in progress and
    /// ingests those whose webhook was lost (WineSitting never retries).
    async fn winesitting_repair(&self, account: &InstanceName) -> Result<(), JobError> {
        let Some(repair) = &self.winesitting else {
            tracing::warn!(%account, "WineSitting repair is not configured here; job dropped");
            return Ok(());
        };
        let document = repair.source.secrets().document().await?;
        let Some(credentials) = document.api_credentials(account) else {
            tracing::warn!(%account, "no WineSitting API key for this account; repair skipped");
            return Ok(());
        };
        let report = crate::sources::winesitting::repair(
            &repair.api,
            account,
            credentials.key(),
            &repair.receiver,
            self.entities.as_ref(),
        )
        .await?;
        telemetry::record(
            Metric::RepairedOrders,
            report.repaired as f64,
            &[
                (Dimension::Source, "winesitting"),
                (Dimension::Instance, account.as_str()),
            ],
        );
        Ok(())
    }

    /// Queues the rest of a run its deadline stopped; it resumes from the cursor.
    pub(crate) async fn continue_later(
        &self,
        kind: JobKind,
        instance: &InstanceName,
    ) -> Result<(), JobError> {
        let window = format!("cont-{}", self.clock.now().unix_timestamp());
        self.jobs
            .enqueue(&Job::scheduled(kind, instance, &window))
            .await?;
        Ok(())
    }

    pub(crate) async fn report_budget(&self, instance: &InstanceName) {
        let Some(budget) = &self.budget else { return };
        match budget.spent_today(instance).await {
            Ok(spent) => {
                let limit = budget.limit();
                tracing::info!(%instance, spent, limit, "API calls spent today");
                let dimensions = [(Dimension::Instance, instance.as_str())];
                telemetry::record(Metric::ApiCallsSpent, spent as f64, &dimensions);
                telemetry::record(
                    Metric::ApiBudgetUsedPercent,
                    used_percent(spent, limit),
                    &dimensions,
                );
            }
            Err(error) => log_dependency(&error, "could not read the API budget"),
        }
    }
}

/// Today's spent calls as a percentage of the daily budget.
fn used_percent(spent: u64, limit: u64) -> f64 {
    if limit == 0 {
        return 100.0;
    }
    spent as f64 * 100.0 / limit as f64
}

/// A stable message id per entity revision: the partner can drop a repeat.
pub fn message_id(key: &EntityKey, revision: u64) -> String {
    format!(
        "msg_{}",
        &sha256_hex(format!("{key}#{revision}").as_bytes())[..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::downstream::Downstream;
    use crate::fakes::{
        FixedSecrets, MemoryEntities, MemoryStores, MemorySyncState, UnlimitedBudget,
    };
    use crate::revel_api::{RevelApi, RevelApiConfig};
    use crate::secrets::SecretCache;
    use crate::sources::revel::RevelEventType;
    use crate::store::{EntityUpsert, Rank};
    use std::time::Duration;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn worker(entities: Arc<MemoryEntities>, downstream: Option<Downstream>) -> Worker {
        let revel = Arc::new(Revel::new(SecretCache::new(
            FixedSecrets("{}".into()),
            Duration::from_secs(60),
        )));
        let memory = MemoryStores::default();
        let api = Arc::new(RevelApi::new(
            RevelApiConfig::default(),
            Arc::new(UnlimitedBudget::default()),
        ));
        Worker {
            entities: entities.clone(),
            downstream: downstream.map(|d| Arc::new(d) as Arc<dyn Partner>),
            syncer: Syncer::new(
                api,
                Arc::new(MemorySyncState::default()),
                entities,
                Duration::from_secs(3600),
                crate::clock::system(),
            ),
            orders: memory.receiver(revel.clone(), Arc::new(RevelEventType::OrderFinalized)),
            revel,
            clock: crate::clock::system(),
            jobs: memory.queue.clone(),
            budget: None,
            retry: None,
            winesitting: None,
            applier: None,
            echoes: None,
            dead_letters: None,
        }
    }

    async fn entity(entities: &MemoryEntities, id: &str, version: i64) -> EntityKey {
        let instance = InstanceName::parse("demo").unwrap();
        let key = EntityKey::new("revel", &instance, "customer", id).unwrap();
        entities
            .upsert(&EntityUpsert {
                key: key.clone(),
                source: "revel",
                instance,
                kind: "customer",
                entity_id: id.into(),
                rank: Rank::new(version, false, "aa"),
                state_json: "{}".into(),
                state_sha256: "aa".into(),
                event_key: crate::ids::EventKey::parse("revel:demo:customer.updated:x").unwrap(),
            })
            .await
            .unwrap();
        key
    }

    fn message(id: &str, group: &str, body: &str) -> SqsMessage {
        let mut message = SqsMessage::default();
        message.message_id = Some(id.into());
        message.body = Some(body.into());
        message
            .attributes
            .insert("MessageGroupId".into(), group.into());
        message
    }

    /// A job message body of instance `demo`.
    fn job_body(job: JobKind, entity_key: Option<&EntityKey>, version: Option<i64>) -> String {
        serde_json::to_string(&JobMessage {
            job,
            source: "revel".into(),
            instance: "demo".into(),
            event_type: "customer.updated".into(),
            event_key: "revel:demo:customer.updated:x".into(),
            entity_key: entity_key.map(EntityKey::to_string),
            version,
        })
        .unwrap()
    }

    /// Runs `batch`; the ids it reports failed, in order.
    async fn failed_ids(worker: &Worker, batch: SqsEvent) -> Vec<String> {
        worker
            .handle_batch(batch, Instant::now() + Duration::from_secs(30))
            .await
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect()
    }

    fn sync_job(key: &EntityKey) -> String {
        job_body(JobKind::SyncEntity, Some(key), None)
    }

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
        let downstream = Downstream::new(
            partner.uri(),
            crate::downstream::SigningSecret::parse(SECRET).unwrap(),
            Duration::from_secs(2),
        );
        let worker = worker(entities.clone(), Some(downstream));
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

    #[tokio::test]
    async fn catalog_pulls_behind_a_failed_pull_are_covered_by_it_not_held_until_they_reach_the_dlq(
    ) {
        let entities = Arc::new(MemoryEntities::default());
        let key = entity(&entities, "a", 1).await;
        let pull = |version: i64| job_body(JobKind::CatalogPull, None, Some(version));
        let mut batch = SqsEvent::default();
        batch.records = vec![
            // Fails: the job names an instance no key can be made of.
            message(
                "1",
                "catalog:revel:demo",
                &pull(1).replace("\"demo\"", "\"-bad-\""),
            ),
            message("2", "catalog:revel:demo", &pull(2)),
            message("3", "revel:demo:customer:a", &sync_job(&key)),
            message("4", "revel:demo:customer:a", &sync_job(&key)),
        ];
        let worker = worker(entities, None);
        // The sync job of group 3/4 is held back behind a failure of its own group.
        batch.records[2].body = Some("not a job".into());

        let failed = failed_ids(&worker, batch).await;

        assert_eq!(
            failed,
            ["1", "3", "4"],
            "2 is covered by 1's retry; 4, a delivery, waits behind 3"
        );
    }

    #[test]
    fn a_spent_budget_waits_until_just_after_midnight_but_never_past_sqs_s_twelve_hours() {
        let wait = |at| RetryBackoff::until_budget_resets(at).as_secs();
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
        let spent = JobError::Apply(crate::apply::ApplyError::Api(
            crate::revel_api::RevelApiError::BudgetExhausted { limit: 1 },
        ));
        assert!(spent.is_budget_spent() && !spent.is_permanent());
        assert!(!JobError::Malformed("x").is_budget_spent());
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
        let spent = JobError::Sync(SyncError::Api(
            crate::revel_api::RevelApiError::BudgetExhausted { limit: 1 },
        ));
        assert_eq!(spent.kind(), "budget_spent");
    }

    #[test]
    fn retries_back_off_exponentially_up_to_fifteen_minutes() {
        let secs: Vec<u64> = (1..=8).map(|n| RetryBackoff::delay(n).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 900, 900, 900]);
    }

    #[tokio::test]
    async fn a_version_already_delivered_is_not_sent_again() {
        let partner = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&partner)
            .await;
        let entities = Arc::new(MemoryEntities::default());
        let key = entity(&entities, "a", 5).await;
        let downstream = Downstream::new(
            partner.uri(),
            crate::downstream::SigningSecret::parse(SECRET).unwrap(),
            Duration::from_secs(2),
        );
        let worker = worker(entities.clone(), Some(downstream));
        let job: JobMessage = serde_json::from_str(&sync_job(&key)).unwrap();
        for _ in 0..3 {
            worker
                .run(&job, Instant::now() + Duration::from_secs(30))
                .await
                .unwrap();
        }
        assert_eq!(partner.received_requests().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn with_delivery_off_sync_jobs_are_acknowledged_without_sending() {
        let entities = Arc::new(MemoryEntities::default());
        let key = entity(&entities, "a", 1).await;
        let job: JobMessage = serde_json::from_str(&sync_job(&key)).unwrap();
        worker(entities.clone(), None)
            .run(&job, Instant::now() + Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(
            EntityStore::get(entities.as_ref(), &key)
                .await
                .unwrap()
                .unwrap()
                .delivered_revision,
            None
        );
    }
}
