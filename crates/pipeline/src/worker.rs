//! The jobs worker: consumes the follow-up queue (SQS FIFO) with partial
//! batch responses, so one failing message is retried alone and, after the
//! queue's redrive count, lands in the DLQ, while its batch-mates finish.
//!
//! Every job is idempotent: a delivery records the newest version delivered
//! and never sends that version or an older one again; pulls and
//! reconciliation resume from their cursor and write newest-wins.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::json;
use tokio::time::Instant;

use crate::receive::Receiver;
use crate::sync::{PullOutcome, StopReason, SyncError, Syncer, CATALOG, EVENTS, INVENTORY};
use domain::clock::Clock;
use domain::error::DependencyError;
use domain::idempotency::sha256_hex;
use domain::ids::{EntityKey, EventKey, InstanceName};
use ports::queue::{Job, JobKind, JobMessage, JobQueue};
use ports::store::{EntityStore, EntityUpsert, StoredEntity};
use ports::sync_state::CallBudget;
use telemetry::{self, log_dependency, Dimension, Metric};
use vendors::revel::{self, Revel};
use vendors::vinesos::downstream::{DeliveryError, Partner};

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
    Repair(#[from] crate::winesitting_repair::RepairError),
    /// The message's deadline passed before it finished: stopped there, so
    /// its batch's report still goes out; it is retried.
    #[error("not finished by its deadline")]
    Deadline,
    /// Not a failure: the job is due later (an on-demand inventory pull
    /// waiting for the next hour); it comes back then, uncounted.
    #[error("due at {0}")]
    NotYet(time::OffsetDateTime),
}

/// Time kept back for each message still to come in a batch, so one slow
/// job can't leave its batch-mates no time at all.
pub const RESERVE_PER_MESSAGE: Duration = Duration::from_secs(1);

/// A message is started only with at least this much of its time left;
/// later ones come back at once for another invocation.
pub const MIN_TIME_TO_START: Duration = Duration::from_secs(2);

/// Pulls and reconciliation stop between pages, and the partner catalog
/// batch between items, this long before their message's deadline: about
/// what one call takes at worst before its retries (Revel's 10 s timeout),
/// so the page or item under way can finish.
pub const PAGE_ALLOWANCE: Duration = Duration::from_secs(10);

/// A message's deadline: the time left in the invocation, less a reserve
/// for each of the `after` messages after it; `None` when less than
/// [`MIN_TIME_TO_START`] remains.
pub fn message_deadline(now: Instant, batch_deadline: Instant, after: usize) -> Option<Instant> {
    let reserve = RESERVE_PER_MESSAGE * u32::try_from(after).unwrap_or(u32::MAX);
    let until = batch_deadline.checked_sub(reserve)?;
    (until.saturating_duration_since(now) >= MIN_TIME_TO_START).then_some(until)
}

/// Failed jobs come back after 30 s, 1 min, 2 min, ... (at most 15 min)
/// instead of the queue's fixed visibility timeout, so a partner that is
/// down for a while isn't hammered, and a short blip costs little delay.
pub struct RetryBackoff {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl RetryBackoff {
    /// SQS's longest visibility timeout.
    pub const LONGEST: Duration = Duration::from_secs(12 * 3600);

    pub fn delay(receive_count: u32) -> std::time::Duration {
        let exponent = receive_count.saturating_sub(1).min(5);
        std::time::Duration::from_secs((30u64 << exponent).min(900))
    }

    /// Until [`after_budget_resets`] (SQS allows at most 12 hours), in
    /// whole seconds.
    pub fn until_budget_resets(now: time::OffsetDateTime) -> std::time::Duration {
        let now = now.replace_nanosecond(0).unwrap_or(now);
        Self::until_due(now, after_budget_resets(now))
    }

    /// Until `due` (none when it has passed), at most 12 hours: a job due
    /// later that comes back early waits again.
    pub fn until_due(now: time::OffsetDateTime, due: time::OffsetDateTime) -> Duration {
        Duration::try_from(due - now)
            .unwrap_or(Duration::ZERO)
            .min(Self::LONGEST)
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
            Self::Deadline => "deadline",
            Self::NotYet(_) => "not_yet",
        }
    }

    /// No partner URL is configured: the delivery waits for one.
    pub fn is_delivery_unconfigured(&self) -> bool {
        matches!(self, Self::Delivery(DeliveryError::NotConfigured))
    }

    /// The instance's daily Revel API budget is spent.
    pub fn is_budget_spent(&self) -> bool {
        use vendors::revel::api::RevelApiError;
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
        match self {
            Self::Malformed(_) | Self::Delivery(DeliveryError::Rejected { .. }) => true,
            Self::Apply(error) => error.is_permanent(),
            _ => false,
        }
    }
}

/// What the worker needs. `downstream: None` means no partner URL is
/// configured: deliveries are parked in the dead-letter queue (or, without
/// one, kept on the queue as long as SQS allows), never dropped.
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
    pub budget: Option<Arc<dyn CallBudget>>,
    /// The hourly allowance of the partner's on-demand inventory pulls.
    pub on_demand: Option<Arc<dyn ports::sync_state::OnDemandAllowance>>,
    /// `None` leaves failed jobs to the queue's visibility timeout.
    pub retry: Option<RetryBackoff>,
    /// WineSitting's repair poll, where WineSitting is configured.
    pub winesitting: Option<WineSittingRepair>,
    /// Applies the partner's changes to Revel.
    pub applier: Option<crate::apply::Applier>,
    /// Writes the bundle made in Revel, so their webhooks aren't sent back.
    pub echoes: Option<Arc<dyn ports::sync_state::EchoLog>>,
    /// Where a job that can never succeed goes at once.
    pub dead_letters: Option<DeadLetters>,
}

/// What the WineSitting repair poll needs.
pub struct WineSittingRepair {
    pub api: vendors::winesitting::api::WineSittingApi,
    pub source: Arc<vendors::winesitting::WineSitting>,
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

/// Why a message of a batch is reported failed.
enum Failure {
    /// It ran and failed.
    Failed(JobError),
    /// Not run: a job of its message group failed earlier in the batch.
    HeldBack,
    /// Not run: too little of the invocation's time was left.
    NotStarted,
}

impl Worker {
    /// Handles a batch in order. A message whose group already failed in
    /// this batch is not run and is reported failed too, so a newer job for
    /// an entity never overtakes an older one that is waiting for a retry.
    ///
    /// Each message runs until its own deadline ([`message_deadline`]): the
    /// invocation's time left, less a little for each message after it.
    /// One that can't finish by then is stopped and reported failed, and
    /// those with too little time left are not started (they come back at
    /// once), so the batch's report always goes out and what finished is
    /// not done again.
    pub async fn handle_batch(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let mut failed_groups = HashSet::new();
        let mut response = SqsBatchResponse::default();
        // Catalog pulls held back behind a failed pull, by group.
        let mut held_pulls: BTreeMap<String, Vec<SqsMessage>> = BTreeMap::new();
        let count = event.records.len();
        for (index, message) in event.records.into_iter().enumerate() {
            let id = message.message_id.clone().unwrap_or_default();
            let group = group_of(&message);
            if failed_groups.contains(&group) && is_catalog_pull(&message) {
                held_pulls.entry(group).or_default().push(message);
                continue;
            }
            let failure = if failed_groups.contains(&group) {
                tracing::info!(message_id = %id, "held back behind a failed job of the same group");
                Failure::HeldBack
            } else {
                match message_deadline(Instant::now(), deadline, count - index - 1) {
                    None => {
                        tracing::info!(message_id = %id, "not started: the invocation's time is up; it comes back at once");
                        Failure::NotStarted
                    }
                    Some(until) => {
                        let run = self.handle_message(&message, until);
                        match tokio::time::timeout_at(until, run).await {
                            Ok(Ok(())) => continue,
                            Ok(Err(error)) => Failure::Failed(error),
                            Err(_) => Failure::Failed(JobError::Deadline),
                        }
                    }
                }
            };
            if let Failure::Failed(error) = &failure {
                if self.parked(&message, &group, error).await {
                    continue;
                }
            }
            failed_groups.insert(group);
            self.report_failed(&message, &failure, &mut response).await;
        }
        for (group, held) in held_pulls {
            if let Err(error) = self.pull_after_failed(&group, &held).await {
                log_dependency(&error, "could not queue a pull behind a failed pull");
                for message in &held {
                    self.report_failed(message, &Failure::HeldBack, &mut response)
                        .await;
                }
            }
        }
        response
    }

    /// Counts a failed job and parks it in the dead-letter queue when
    /// retrying can't help: true when it was parked (and is done here).
    async fn parked(&self, message: &SqsMessage, group: &str, error: &JobError) -> bool {
        let id = message.message_id.as_deref().unwrap_or_default();
        if error.is_delivery_unconfigured() {
            // Not a failure of the job: the merchant has not said where the
            // partner is. It waits where `revel-ops dlq redrive` finds it
            // once the URL is set, and the alarm on this metric says so.
            telemetry::count(Metric::DeliveriesWaiting, &[]);
            let parked = self.park(message, group).await;
            tracing::warn!(message_id = %id, parked, "no partner URL (DownstreamUrl) is configured: the delivery waits in the dead-letter queue until it is set and the queue is redriven");
            return parked;
        }
        if let JobError::NotYet(due) = error {
            tracing::info!(message_id = %id, due = %due, "job due later; it comes back then");
            return false;
        }
        telemetry::count(Metric::JobFailures, &[(Dimension::Reason, error.kind())]);
        if error.is_permanent() && self.park(message, group).await {
            // Retrying can't help, and it would hold its group back until
            // the held-back jobs, too, ran out of receives.
            tracing::warn!(message_id = %id, error = %error, "job can never succeed; moved to the dead-letter queue");
            return true;
        }
        false
    }

    /// Reports a message failed, and says when it should come back.
    async fn report_failed(
        &self,
        message: &SqsMessage,
        failure: &Failure,
        response: &mut SqsBatchResponse,
    ) {
        match failure {
            // Not a failure; said where it was found due later.
            Failure::Failed(JobError::NotYet(_)) => {}
            Failure::Failed(error) => {
                tracing::warn!(message_id = ?message.message_id, error = %error, "job failed; it will be retried");
            }
            _ => {}
        }
        if let Some(retry) = &self.retry {
            let wait = match failure {
                // It did not run: the next invocation may take it at once.
                Failure::NotStarted => Some(Duration::ZERO),
                // A spent API budget comes back tomorrow, not in 30 s: the
                // job waits for it rather than using up its receives.
                Failure::Failed(error) if error.is_budget_spent() => {
                    Some(RetryBackoff::until_budget_resets(self.clock.now()))
                }
                // Due later: back then (SQS allows at most 12 hours; one
                // received early again waits again).
                Failure::Failed(JobError::NotYet(due)) => {
                    Some(RetryBackoff::until_due(self.clock.now(), *due))
                }
                // Nowhere to park it: it waits on the queue as long as SQS
                // allows, for the partner URL to be set. (Parking that
                // failed is tried again after the usual backoff.)
                Failure::Failed(error)
                    if error.is_delivery_unconfigured() && self.dead_letters.is_none() =>
                {
                    Some(RetryBackoff::LONGEST)
                }
                _ => None,
            };
            retry.apply(message, wait).await;
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = message.message_id.clone().unwrap_or_default();
        response.batch_item_failures.push(failure);
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
    async fn pull_after_failed(
        &self,
        group: &str,
        held: &[SqsMessage],
    ) -> Result<(), DependencyError> {
        let now = self.clock.now_micros();
        let jobs = held.iter().filter_map(|message| {
            let job: JobMessage = serde_json::from_str(message.body.as_deref()?).ok()?;
            let asked_at = job.version.filter(|_| job.job == JobKind::CatalogPull);
            Some((asked_at.unwrap_or(now), message, job))
        });
        let Some((asked_at, message, newest)) = jobs.max_by_key(|(at, _, _)| *at) else {
            return Ok(());
        };
        let job = Job {
            message: JobMessage {
                job: JobKind::CatalogPull,
                version: Some(asked_at),
                ..newest
            },
            group_id: group.to_owned(),
            // The same batch handled again (a crash before its report) queues
            // the same pull, which SQS drops.
            deduplication_id: sha256_hex(
                format!(
                    "after-failed-pull:{}",
                    message.message_id.as_deref().unwrap_or_default()
                )
                .as_bytes(),
            ),
        };
        self.jobs.enqueue(&job).await?;
        tracing::info!(
            group,
            held = held.len(),
            "catalog pulls held back behind a failed pull; one pull queued behind it"
        );
        Ok(())
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
            JobKind::InventorySold => self.deliver_inventory_sold(job, &instance).await,
            JobKind::CatalogPull => self.catalog_pull(job, &instance, deadline).await,
            JobKind::ProductSync | JobKind::EventSync | JobKind::InventorySync => {
                let pull = match job.job {
                    JobKind::ProductSync => &CATALOG,
                    JobKind::EventSync => &EVENTS,
                    _ => &INVENTORY,
                };
                self.pull(job, &instance, pull, deadline).await.map(drop)
            }
            JobKind::Reconcile => self.reconcile(&instance, deadline).await,
            JobKind::ApplyToRevel => self.apply_to_revel(job, &instance).await,
            JobKind::WinesittingRepair => self.winesitting_repair(&instance).await,
            JobKind::PartnerCatalog => crate::partner_catalog::run(self, &instance, deadline).await,
            JobKind::InventoryRequest => {
                crate::inventory_request::run(self, job, &instance, deadline).await
            }
        }
    }

    /// The partner, or why there is none: with no URL configured a delivery
    /// waits (parked), it is never acknowledged unsent.
    fn partner(&self) -> Result<&dyn Partner, JobError> {
        self.downstream
            .as_deref()
            .ok_or(JobError::Delivery(DeliveryError::NotConfigured))
    }

    /// Sends the entity's current state downstream, unless this version (or
    /// a newer one) already went.
    async fn deliver(&self, job: &JobMessage) -> Result<(), JobError> {
        let key = entity_key_of(job)?;
        let Some(entity) = self.entities.get(&key).await? else {
            tracing::warn!(entity = %key, "entity to deliver is gone; nothing to send");
            return Ok(());
        };
        if entity.is_delivered() {
            tracing::info!(entity = %key, revision = entity.revision, "already delivered");
            return Ok(());
        }
        let source = source_of(&key);
        if self.is_own_write(&key, entity.rank.version).await? {
            tracing::info!(entity = %key, version = entity.rank.version, "the bundle's own write coming back from Revel; not sent to the partner");
            self.entities.mark_delivered(&key, entity.revision).await?;
            return Ok(());
        }
        let partner = self.partner()?;
        let state: serde_json::Value = serde_json::from_str(&entity.state_json)
            .map_err(|_| JobError::Malformed("stored state is not JSON"))?;
        let body = Envelope {
            event_type: format!("{source}.{}.changed", entity.kind),
            source,
            instance: &job.instance,
            kind: &entity.kind,
            id: &entity.entity_id,
            version: entity.rank.version,
            revision: entity.revision,
            event_key: entity.last_event_key.as_deref(),
            state,
        }
        .body(self.clock.now());
        partner
            .deliver(&message_id(&key, entity.revision), &body)
            .await?;
        self.entities.mark_delivered(&key, entity.revision).await?;
        tracing::info!(entity = %key, revision = entity.revision, "delivered downstream");
        Ok(())
    }

    /// Whether `key` at `version` is the bundle's own write to Revel coming
    /// back (only those are echoes): what the partner wrote, it knows.
    async fn is_own_write(&self, key: &EntityKey, version: i64) -> Result<bool, JobError> {
        match &self.echoes {
            Some(echoes) if source_of(key) == REVEL => Ok(echoes.is_echo(key, version).await?),
            _ => Ok(false),
        }
    }

    /// Tells the partner what a Revel order sold, so its stock moves when
    /// Revel's does: one `revel.inventory.sold` message per product, with
    /// the establishment, each with an id stable per order and product.
    ///
    /// What is sent is recorded first as the order's `inventory_sold`
    /// entity (from the order as it is when this first runs), then sent,
    /// then marked delivered: a retry sends the recorded lines again under
    /// the same ids (a partner drops repeats), and once marked, a replayed
    /// order or a later version of it sends nothing again (its later
    /// changes reach the partner in the order itself).
    async fn deliver_inventory_sold(
        &self,
        job: &JobMessage,
        instance: &InstanceName,
    ) -> Result<(), JobError> {
        let order_key = entity_key_of(job)?;
        if source_of(&order_key) != REVEL {
            return Err(JobError::Malformed(
                "inventory sold by an order not Revel's",
            ));
        }
        let Some(order) = self.entities.get(&order_key).await? else {
            tracing::warn!(entity = %order_key, "order is gone; no stock change to send");
            return Ok(());
        };
        let sold_key = EntityKey::new(REVEL, instance, INVENTORY_SOLD, &order.entity_id)
            .map_err(|_| JobError::Malformed("order id makes no entity key"))?;
        let recorded = self.entities.get(&sold_key).await?;
        if recorded
            .as_ref()
            .is_some_and(|r| r.delivered_revision.is_some())
        {
            tracing::info!(entity = %sold_key, "this order's stock changes went to the partner already");
            return Ok(());
        }
        // The partner's own order, written to Revel by the bundle: its stock
        // moved on the partner's side when it was placed there. Known by the
        // link the bundle wrote on it, or as the bundle's own write (should
        // Revel not show the link). Recorded as sent, so its later versions
        // send none either.
        if recorded.is_none()
            && (placed_by_partner(&order)
                || self.is_own_write(&order_key, order.rank.version).await?)
        {
            if let Some(sold) = self.record_sold(instance, job, &order, &sold_key).await? {
                self.entities
                    .mark_delivered(&sold_key, sold.revision)
                    .await?;
            }
            tracing::info!(entity = %order_key, "the partner's own order coming back from Revel; its stock changes are not sent");
            return Ok(());
        }
        let partner = self.partner()?;
        let sold = match recorded {
            Some(recorded) => recorded,
            None => match self.record_sold(instance, job, &order, &sold_key).await? {
                Some(sold) => sold,
                None => return Ok(()),
            },
        };
        let state: serde_json::Value = serde_json::from_str(&sold.state_json)
            .map_err(|_| JobError::Malformed("stored state is not JSON"))?;
        let products = state["products"].as_array().cloned().unwrap_or_default();
        for product in &products {
            let product_id = product["product_id"].as_str().unwrap_or_default();
            let id = format!("{}:product:{product_id}", order.entity_id);
            let body = Envelope {
                event_type: "revel.inventory.sold".to_owned(),
                source: REVEL,
                instance: &job.instance,
                kind: INVENTORY_SOLD,
                id: &id,
                version: sold.rank.version,
                revision: sold.revision,
                event_key: sold.last_event_key.as_deref(),
                state: json!({
                    "order_uuid": state["order_uuid"],
                    "order_id": state["order_id"],
                    "establishment_id": state["establishment_id"],
                    "product_id": product_id,
                    "quantity_sold": product["quantity_sold"],
                }),
            }
            .body(self.clock.now());
            partner
                .deliver(&message_id_of_part(&sold_key, product_id), &body)
                .await?;
        }
        self.entities
            .mark_delivered(&sold_key, sold.revision)
            .await?;
        tracing::info!(entity = %sold_key, products = products.len(), "stock changes of an order delivered downstream");
        Ok(())
    }

    /// Records what `order` sold as its `inventory_sold` entity; what is
    /// recorded then (this, or what an earlier attempt recorded), or `None`
    /// when the order sold no product.
    async fn record_sold(
        &self,
        instance: &InstanceName,
        job: &JobMessage,
        order: &StoredEntity,
        sold_key: &EntityKey,
    ) -> Result<Option<StoredEntity>, JobError> {
        let order_state: serde_json::Value = serde_json::from_str(&order.state_json)
            .map_err(|_| JobError::Malformed("stored state is not JSON"))?;
        let products = revel::sold_products(&order_state);
        if products.is_empty() {
            tracing::info!(entity = %sold_key, "the order sold no product; no stock change to send");
            return Ok(None);
        }
        let state = json!({
            "order_uuid": order.entity_id,
            "order_id": order_state["order"]["id"],
            "establishment_id": revel::order_establishment(&order_state),
            "products": products
                .iter()
                .map(|p| json!({"product_id": p.product_id, "quantity_sold": quantity(p.quantity)}))
                .collect::<Vec<_>>(),
        });
        let state_json = state.to_string();
        let event_key = order
            .last_event_key
            .as_deref()
            .and_then(|k| EventKey::parse(k).ok())
            .or_else(|| EventKey::parse(&job.event_key).ok())
            .ok_or(JobError::Malformed("no event key"))?;
        self.entities
            .upsert(&EntityUpsert {
                key: sold_key.clone(),
                source: REVEL,
                instance: instance.clone(),
                kind: INVENTORY_SOLD,
                entity_id: order.entity_id.clone(),
                rank: order.rank.clone(),
                state_sha256: sha256_hex(state_json.as_bytes()),
                state_json,
                event_key,
            })
            .await?;
        Ok(self.entities.get(sold_key).await?)
    }

    /// A pull asked for by a menu push received at the job's `version`
    /// (undated: a continuation or an older job, which just pulls). Skipped
    /// when a pull that began after the push has completed. Otherwise it
    /// pulls; that run may resume one begun before the push, which may be
    /// past the pages the push changed, so once it completes a fresh run
    /// follows unless a run begun after the push is complete by then. So a
    /// push during or after a pull leads to exactly one more pull.
    async fn catalog_pull(
        &self,
        job: &JobMessage,
        instance: &InstanceName,
        deadline: Instant,
    ) -> Result<(), JobError> {
        let Some(pushed_at) = job.version else {
            return self.pull(job, instance, &CATALOG, deadline).await.map(drop);
        };
        for attempt in 0..2 {
            if self
                .syncer
                .pulled_since(instance, &CATALOG, pushed_at)
                .await?
            {
                if attempt == 0 {
                    tracing::info!(%instance, "a catalog pull that began after this menu push has completed; nothing to pull");
                }
                return Ok(());
            }
            if !self.pull(job, instance, &CATALOG, deadline).await? {
                // Stopped: its continuation carries the push's date.
                return Ok(());
            }
        }
        Ok(())
    }

    /// Runs `pull` until it completes, stops, or is [`PAGE_ALLOWANCE`] from
    /// `deadline`; true when it completed.
    async fn pull(
        &self,
        job: &JobMessage,
        instance: &InstanceName,
        pull: &crate::sync::Pull,
        deadline: Instant,
    ) -> Result<bool, JobError> {
        let Some(credentials) = self.credentials(instance).await? else {
            tracing::warn!(%instance, pull = pull.name, "no API credentials for this instance; pull skipped");
            return Ok(false);
        };
        let outcome = self
            .syncer
            .pull(instance, &credentials, pull, pages_until(deadline))
            .await;
        self.report_budget(instance).await;
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
                let pushed_at = job.version.filter(|_| job.job == JobKind::CatalogPull);
                self.continue_later(job.job, instance, pushed_at).await?;
            }
        }
        Ok(false)
    }

    async fn reconcile(&self, instance: &InstanceName, deadline: Instant) -> Result<(), JobError> {
        let Some(credentials) = self.credentials(instance).await? else {
            tracing::warn!(%instance, "no API credentials for this instance; reconciliation skipped");
            return Ok(());
        };
        let report = self
            .syncer
            .reconcile(instance, &credentials, &self.orders, pages_until(deadline))
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
            self.continue_later(JobKind::Reconcile, instance, None)
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn credentials(
        &self,
        instance: &InstanceName,
    ) -> Result<Option<vendors::revel::api::ApiCredentials>, JobError> {
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
        let key = entity_key_of(job)?;
        // Without credentials a product or event is still kept for the
        // batch; any other change is parked in the DLQ at once (retrying
        // would only spend its receives), to be redriven once they are set.
        let credentials = self.credentials(instance).await?;
        let applied = applier.apply(instance, credentials.as_ref(), &key).await;
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
        let report = crate::winesitting_repair::repair(
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

    /// Queues the rest of a run its deadline stopped; it resumes from the
    /// cursor. `version`: the job's own, where it carries one on.
    pub(crate) async fn continue_later(
        &self,
        kind: JobKind,
        instance: &InstanceName,
        version: Option<i64>,
    ) -> Result<(), JobError> {
        let window = format!("cont-{}", self.clock.now().unix_timestamp());
        let mut continuation = Job::scheduled(kind, instance, &window);
        continuation.message.version = version;
        self.jobs.enqueue(&continuation).await?;
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
    stable_message_id(&format!("{key}#{revision}"))
}

/// A stable message id per part of one entity's message set (a product of
/// an order's stock changes): the same whatever revision or retry sends it.
pub fn message_id_of_part(key: &EntityKey, part: &str) -> String {
    stable_message_id(&format!("{key}/{part}"))
}

fn stable_message_id(name: &str) -> String {
    format!("msg_{}", &sha256_hex(name.as_bytes())[..32])
}

/// The kind of the entity recording an order's stock changes sent.
pub const INVENTORY_SOLD: &str = "inventory_sold";

const REVEL: &str = vendors::revel::NAME;

/// What every message to the partner looks like: `{"type", "timestamp",
/// "data": {"source", "instance", "kind", "id", "version", "revision",
/// "event_key", "state"}}`, whichever source it is about.
struct Envelope<'a> {
    event_type: String,
    source: &'a str,
    instance: &'a str,
    kind: &'a str,
    id: &'a str,
    version: i64,
    revision: u64,
    event_key: Option<&'a str>,
    state: serde_json::Value,
}

impl Envelope<'_> {
    fn body(self, now: time::OffsetDateTime) -> Vec<u8> {
        json!({
            "type": self.event_type,
            "timestamp": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "data": {
                "source": self.source,
                "instance": self.instance,
                "kind": self.kind,
                "id": self.id,
                "version": self.version,
                "revision": self.revision,
                "event_key": self.event_key,
                "state": self.state,
            }
        })
        .to_string()
        .into_bytes()
    }
}

/// The entity a job is about.
fn entity_key_of(job: &JobMessage) -> Result<EntityKey, JobError> {
    let raw = job
        .entity_key
        .as_deref()
        .ok_or(JobError::Malformed("job without entity"))?;
    EntityKey::parse(raw).map_err(|_| JobError::Malformed("bad entity key"))
}

/// The source an entity key names: `{source}:{instance}:{kind}:{id}`.
fn source_of(key: &EntityKey) -> &str {
    key.as_str().split(':').next().unwrap_or_default()
}

/// Whether a Revel order is one the bundle wrote for the partner: it
/// carries the partner's link (`external_sync = vinesos:{id}`).
fn placed_by_partner(order: &StoredEntity) -> bool {
    serde_json::from_str::<serde_json::Value>(&order.state_json).is_ok_and(|state| {
        state["order"]["external_sync"]
            .as_str()
            .is_some_and(|link| link.starts_with(vendors::vinesos::LINK_PREFIX))
    })
}

/// A minute past the next UTC midnight: when the daily API budget is new
/// again, and jobs stopped by a spent budget come back.
pub fn after_budget_resets(now: time::OffsetDateTime) -> time::OffsetDateTime {
    now.date().midnight().assume_utc() + time::Duration::DAY + time::Duration::MINUTE
}

/// When pages stop: [`PAGE_ALLOWANCE`] before the message's deadline.
pub(crate) fn pages_until(deadline: Instant) -> Instant {
    deadline.checked_sub(PAGE_ALLOWANCE).unwrap_or(deadline)
}

/// A quantity as JSON: a whole number without a fraction.
fn quantity(value: f64) -> serde_json::Value {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::MemoryStores;
    use ports::fakes::{
        FixedSecrets, MemoryEntities, MemoryQueue, MemorySyncState, UnlimitedBudget,
    };
    use ports::secrets::SecretCache;
    use ports::store::{EntityUpsert, Rank};
    use std::sync::Mutex;
    use std::time::Duration;
    use vendors::revel::api::{
        ApiCredentials, Page, PageRequest, RevelApi, RevelApiConfig, RevelApiError, RevelResources,
    };
    use vendors::revel::RevelEventType;
    use vendors::vinesos::downstream::Downstream;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// What a test worker is made of; `worker` and `Parts::build` put it together.
    struct Parts {
        entities: Arc<MemoryEntities>,
        partner: Option<Arc<dyn Partner>>,
        api: Arc<dyn RevelResources>,
        /// The Revel secret document (instances and their API credentials).
        secrets: &'static str,
        queue: Arc<MemoryQueue>,
        state: Arc<MemorySyncState>,
    }

    impl Parts {
        fn new(entities: Arc<MemoryEntities>) -> Self {
            Self {
                entities,
                partner: None,
                api: Arc::new(RevelApi::new(
                    RevelApiConfig::default(),
                    Arc::new(UnlimitedBudget::default()),
                )),
                secrets: "{}",
                queue: Arc::default(),
                state: Arc::default(),
            }
        }

        fn build(self) -> Worker {
            let revel = Arc::new(Revel::new(SecretCache::new(
                FixedSecrets(self.secrets.into()),
                Duration::from_secs(60),
            )));
            let memory = MemoryStores::default();
            Worker {
                entities: self.entities.clone(),
                downstream: self.partner,
                syncer: Syncer::new(
                    self.api,
                    self.state,
                    self.entities,
                    Duration::from_secs(3600),
                    domain::clock::system(),
                ),
                orders: memory.receiver(revel.clone(), Arc::new(RevelEventType::OrderFinalized)),
                revel,
                clock: domain::clock::system(),
                jobs: self.queue,
                budget: None,
                on_demand: None,
                retry: None,
                winesitting: None,
                applier: None,
                echoes: None,
                dead_letters: None,
            }
        }
    }

    fn worker(entities: Arc<MemoryEntities>, downstream: Option<Downstream>) -> Worker {
        Parts {
            partner: downstream.map(|d| Arc::new(d) as Arc<dyn Partner>),
            ..Parts::new(entities)
        }
        .build()
    }

    async fn entity(entities: &MemoryEntities, id: &str, version: i64) -> EntityKey {
        kept(
            entities,
            ("revel", "customer", id),
            version,
            serde_json::json!({}),
        )
        .await
    }

    /// Keeps `state` as entity (source, kind, id) of instance `demo` at `version`.
    async fn kept(
        entities: &MemoryEntities,
        (source, kind, id): (&'static str, &'static str, &str),
        version: i64,
        state: serde_json::Value,
    ) -> EntityKey {
        let instance = InstanceName::parse("demo").unwrap();
        let key = EntityKey::new(source, &instance, kind, id).unwrap();
        let state_json = state.to_string();
        let sha = sha256_hex(state_json.as_bytes());
        entities
            .upsert(&EntityUpsert {
                key: key.clone(),
                source,
                instance,
                kind,
                entity_id: id.into(),
                rank: Rank::new(version, false, &sha),
                state_json,
                state_sha256: sha,
                event_key: domain::ids::EventKey::parse("revel:demo:customer.updated:x").unwrap(),
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
            vendors::vinesos::downstream::SigningSecret::parse(SECRET).unwrap(),
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
    /// `Modifier` empty. The offsets of the `Product` pages asked for are
    /// kept; `fail_next_at` fails the next request for that offset.
    #[derive(Default)]
    struct Catalog {
        requested: Mutex<Vec<u64>>,
        fail_next_at: Mutex<Option<u64>>,
    }

    #[async_trait::async_trait]
    impl RevelResources for Catalog {
        async fn page(
            &self,
            _instance: &InstanceName,
            _credentials: &ApiCredentials,
            request: &PageRequest,
        ) -> Result<Page, RevelApiError> {
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
                return Err(RevelApiError::Unavailable {
                    attempts: 1,
                    last_status: Some(503),
                });
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

    const WITH_API_CREDENTIALS: &str =
        r#"{"demo": {"webhook": "w", "api_key": "k", "api_secret": "s"}}"#;

    /// A worker over `catalog`, and the queue its continuations go to.
    fn pulling_worker(catalog: Arc<Catalog>) -> (Worker, Arc<MemoryQueue>) {
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
            vendors::revel::api::RevelApiError::BudgetExhausted { limit: 1 },
        ));
        assert!(spent.is_budget_spent() && !spent.is_permanent());
        assert!(!JobError::Malformed("x").is_budget_spent());
    }

    #[test]
    fn a_job_due_later_waits_until_it_is_due_but_never_past_sqs_s_twelve_hours() {
        let now = time::macros::datetime!(2026-11-29 10:20:00 UTC);
        let wait = |due| RetryBackoff::until_due(now, due).as_secs();
        assert_eq!(wait(time::macros::datetime!(2026-11-29 11:00:00 UTC)), 2400);
        assert_eq!(wait(time::macros::datetime!(2026-11-29 10:00:00 UTC)), 0);
        assert_eq!(
            wait(time::macros::datetime!(2026-11-30 10:20:00 UTC)),
            12 * 3600
        );
        let due = JobError::NotYet(now);
        assert!(!due.is_permanent() && !due.is_budget_spent());
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
        let spent = JobError::Sync(SyncError::Api(
            vendors::revel::api::RevelApiError::BudgetExhausted { limit: 1 },
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
            vendors::vinesos::downstream::SigningSecret::parse(SECRET).unwrap(),
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
    async fn without_a_partner_url_a_delivery_waits_and_is_never_acknowledged_unsent() {
        let entities = Arc::new(MemoryEntities::default());
        let waiting = entity(&entities, "a", 1).await;
        let sent = entity(&entities, "b", 1).await;
        entities.mark_delivered(&sent, 1).await.unwrap();
        let worker = worker(entities.clone(), None);
        let job: JobMessage = serde_json::from_str(&sync_job(&waiting)).unwrap();

        let error = worker.run(&job, soon()).await.unwrap_err();

        assert!(error.is_delivery_unconfigured(), "{error}");
        let mut batch = SqsEvent::default();
        batch.records = vec![
            message("1", "revel:demo:customer:a", &sync_job(&waiting)),
            message("2", "revel:demo:customer:b", &sync_job(&sent)),
        ];
        assert_eq!(
            failed_ids(&worker, batch).await,
            ["1"],
            "with no dead-letter queue to park it in, it stays on the queue; one with nothing to send is done"
        );
        assert_eq!(
            EntityStore::get(entities.as_ref(), &waiting)
                .await
                .unwrap()
                .unwrap()
                .delivered_revision,
            None
        );
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    /// The partner in memory: each message it took (id and body), in order.
    /// Deliveries about the entity `hang_on` never end; the delivery
    /// numbered `fail_at` (from 0) is answered 503.
    #[derive(Default)]
    struct MemoryPartner {
        sent: Mutex<Vec<(String, serde_json::Value)>>,
        attempts: std::sync::atomic::AtomicUsize,
        hang_on: Option<&'static str>,
        fail_at: Option<usize>,
    }

    #[async_trait::async_trait]
    impl Partner for MemoryPartner {
        async fn deliver(&self, message_id: &str, body: &[u8]) -> Result<(), DeliveryError> {
            let body: serde_json::Value = serde_json::from_slice(body).unwrap();
            if self.hang_on.is_some_and(|id| body["data"]["id"] == id) {
                std::future::pending::<()>().await;
            }
            let attempt = self
                .attempts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.fail_at == Some(attempt) {
                return Err(DeliveryError::Unavailable { status: Some(503) });
            }
            self.sent
                .lock()
                .unwrap()
                .push((message_id.to_owned(), body));
            Ok(())
        }
    }

    impl MemoryPartner {
        fn sent(&self) -> Vec<(String, serde_json::Value)> {
            self.sent.lock().unwrap().clone()
        }
    }

    fn delivering(entities: Arc<MemoryEntities>, partner: Arc<MemoryPartner>) -> Worker {
        Parts {
            partner: Some(partner),
            ..Parts::new(entities)
        }
        .build()
    }

    #[test]
    fn each_message_keeps_a_second_of_the_invocation_for_every_message_after_it() {
        let now = Instant::now();
        let end = now + Duration::from_secs(55);
        assert_eq!(message_deadline(now, end, 0), Some(end));
        assert_eq!(
            message_deadline(now, end, 9),
            Some(end - Duration::from_secs(9))
        );
        assert_eq!(
            message_deadline(now, now + Duration::from_millis(2500), 1),
            None,
            "1.5 s would be left: too little to start"
        );
        assert_eq!(
            message_deadline(now, now + Duration::from_secs(3), 1),
            Some(now + Duration::from_secs(2))
        );
        assert_eq!(message_deadline(now, now, 0), None);
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

    /// An order of instance `demo` as the processor keeps it, selling
    /// `items` at establishment 1.
    fn order_state(items: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "order": {"uuid": "o-1", "id": 417, "establishment": "/enterprise/Establishment/1/"},
            "items": items, "payments": [], "history": [],
        })
    }

    fn sold_job(order: &EntityKey) -> JobMessage {
        serde_json::from_str(&job_body(JobKind::InventorySold, Some(order), Some(1))).unwrap()
    }

    #[tokio::test]
    async fn an_orders_stock_changes_go_once_per_product_with_stable_ids_and_a_replay_sends_nothing(
    ) {
        let entities = Arc::new(MemoryEntities::default());
        let items = serde_json::json!([
            {"product": "/resources/Product/5/", "quantity": 2},
            {"product": "/resources/Product/9/", "quantity": "3"},
            {"product": "/resources/Product/5/", "quantity": 1},
            {"product": "/resources/Product/7/", "quantity": 1, "voided_by": "/enterprise/User/5/"},
            {"product": null, "quantity": 1},
        ]);
        let order = kept(&entities, ("revel", "order", "o-1"), 1, order_state(items)).await;
        let partner = Arc::new(MemoryPartner::default());
        let worker = delivering(entities.clone(), partner.clone());

        worker.run(&sold_job(&order), soon()).await.unwrap();
        worker.run(&sold_job(&order), soon()).await.unwrap();

        let sent = partner.sent();
        let read: Vec<(&str, &str, &serde_json::Value, &serde_json::Value)> = sent
            .iter()
            .map(|(_, body)| {
                let data = &body["data"];
                (
                    body["type"].as_str().unwrap(),
                    data["id"].as_str().unwrap(),
                    &data["state"]["quantity_sold"],
                    &data["state"]["establishment_id"],
                )
            })
            .collect();
        assert_eq!(
            read,
            [
                (
                    "revel.inventory.sold",
                    "o-1:product:5",
                    &serde_json::json!(3),
                    &serde_json::json!("1")
                ),
                (
                    "revel.inventory.sold",
                    "o-1:product:9",
                    &serde_json::json!(3),
                    &serde_json::json!("1")
                ),
            ],
            "voided items and items without a product sold nothing; the second run sent nothing"
        );
        let recorded = EntityKey::parse("revel:demo:inventory_sold:o-1").unwrap();
        assert_eq!(sent[0].0, message_id_of_part(&recorded, "5"));
        assert_eq!(sent[1].0, message_id_of_part(&recorded, "9"));
        assert_eq!(sent[0].1["data"]["kind"], INVENTORY_SOLD);
        assert_eq!(sent[0].1["data"]["state"]["order_id"], 417);

        // A later version of the order sells no more: its stock changes went.
        kept(
            &entities,
            ("revel", "order", "o-1"),
            2,
            order_state(serde_json::json!([{"product": "/resources/Product/5/", "quantity": 4}])),
        )
        .await;
        worker.run(&sold_job(&order), soon()).await.unwrap();
        assert_eq!(partner.sent().len(), 2);
    }

    #[tokio::test]
    async fn the_stock_a_partner_order_sold_is_not_sent_back_when_the_order_returns_from_revel() {
        use ports::sync_state::EchoLog;
        let entities = Arc::new(MemoryEntities::default());
        let items = serde_json::json!([{"product": 5, "quantity": 2}]);
        let order = kept(&entities, ("revel", "order", "o-1"), 1, order_state(items)).await;
        let partner = Arc::new(MemoryPartner::default());
        let echoes = Arc::new(ports::fakes::MemoryEchoes::default());
        let mut worker = delivering(entities.clone(), partner.clone());
        worker.echoes = Some(echoes.clone());
        // The bundle wrote this order to Revel (the partner's), at version 1.
        echoes.record_echo(&order, 1).await.unwrap();

        worker.run(&sold_job(&order), soon()).await.unwrap();

        assert!(partner.sent().is_empty(), "{:?}", partner.sent());
        // The order changed in Revel afterwards is Revel's change and goes to
        // the partner; the stock it sold still does not.
        kept(
            &entities,
            ("revel", "order", "o-1"),
            2,
            order_state(serde_json::json!([{"product": 5, "quantity": 3}])),
        )
        .await;
        worker.run(&sold_job(&order), soon()).await.unwrap();
        worker
            .run(&serde_json::from_str(&sync_job(&order)).unwrap(), soon())
            .await
            .unwrap();
        let types: Vec<serde_json::Value> = partner
            .sent()
            .into_iter()
            .map(|(_, b)| b["type"].clone())
            .collect();
        assert_eq!(types, [serde_json::json!("revel.order.changed")]);
    }

    #[tokio::test]
    async fn the_stock_of_an_order_carrying_the_partners_link_is_not_sent_even_when_revel_dated_it_anew(
    ) {
        let entities = Arc::new(MemoryEntities::default());
        let mut state = order_state(serde_json::json!([{"product": 5, "quantity": 2}]));
        state["order"]["external_sync"] = serde_json::json!("vinesos:O-9");
        // No echo recorded: Revel changed the order's date after the write.
        let order = kept(&entities, ("revel", "order", "o-1"), 7, state).await;
        let partner = Arc::new(MemoryPartner::default());
        let worker = delivering(entities.clone(), partner.clone());

        worker.run(&sold_job(&order), soon()).await.unwrap();

        assert!(partner.sent().is_empty(), "{:?}", partner.sent());
        // A Revel order linked by another integration is Revel's own sale.
        let mut theirs = order_state(serde_json::json!([{"product": 5, "quantity": 2}]));
        theirs["order"]["external_sync"] = serde_json::json!("shopify:77");
        let other = kept(&entities, ("revel", "order", "o-2"), 7, theirs).await;
        worker.run(&sold_job(&other), soon()).await.unwrap();
        assert_eq!(partner.sent().len(), 1);
    }

    #[tokio::test]
    async fn an_orders_stock_changes_interrupted_midway_are_sent_again_as_recorded_under_the_same_ids(
    ) {
        let entities = Arc::new(MemoryEntities::default());
        let items = serde_json::json!([
            {"product": 5, "quantity": 1},
            {"product": 9, "quantity": 2},
        ]);
        let order = kept(&entities, ("revel", "order", "o-1"), 1, order_state(items)).await;
        let partner = Arc::new(MemoryPartner {
            fail_at: Some(1),
            ..MemoryPartner::default()
        });
        let worker = delivering(entities.clone(), partner.clone());

        let error = worker.run(&sold_job(&order), soon()).await.unwrap_err();
        assert!(matches!(
            error,
            JobError::Delivery(DeliveryError::Unavailable { .. })
        ));
        // The order changes before the retry: what was recorded is what goes.
        kept(
            &entities,
            ("revel", "order", "o-1"),
            2,
            order_state(serde_json::json!([{"product": 5, "quantity": 10}])),
        )
        .await;
        worker.run(&sold_job(&order), soon()).await.unwrap();

        let sent: Vec<(String, serde_json::Value)> = partner
            .sent()
            .into_iter()
            .map(|(id, body)| (id, body["data"]["state"]["quantity_sold"].clone()))
            .collect();
        let recorded = EntityKey::parse("revel:demo:inventory_sold:o-1").unwrap();
        let (five, nine) = (
            message_id_of_part(&recorded, "5"),
            message_id_of_part(&recorded, "9"),
        );
        assert_eq!(
            sent,
            [
                (five.clone(), serde_json::json!(1)),
                (five, serde_json::json!(1)),
                (nine, serde_json::json!(2)),
            ]
        );
    }

    #[tokio::test]
    async fn a_winesitting_change_reaches_the_partner_in_the_same_envelope_named_for_its_source() {
        let entities = Arc::new(MemoryEntities::default());
        let key = kept(
            &entities,
            ("winesitting", "order", "42"),
            7,
            serde_json::json!({"id": 42, "status": "in_progress"}),
        )
        .await;
        let partner = Arc::new(MemoryPartner::default());
        let worker = delivering(entities.clone(), partner.clone());

        worker
            .run(&serde_json::from_str(&sync_job(&key)).unwrap(), soon())
            .await
            .unwrap();

        let sent = partner.sent();
        assert_eq!(sent.len(), 1);
        let (id, body) = &sent[0];
        assert_eq!(*id, message_id(&key, 1));
        assert_eq!(body["type"], "winesitting.order.changed");
        let data = &body["data"];
        assert_eq!(
            (
                &data["source"],
                &data["kind"],
                &data["id"],
                &data["version"],
                &data["revision"]
            ),
            (
                &serde_json::json!("winesitting"),
                &serde_json::json!("order"),
                &serde_json::json!("42"),
                &serde_json::json!(7),
                &serde_json::json!(1)
            )
        );
        assert_eq!(data["state"]["status"], "in_progress");
    }
}
