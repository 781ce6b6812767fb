//! "Inventory received or changed — every 2 hours, or when a new search is
//! done, for retailers with the upgrade": the search half. The partner
//! (VinesOS) asks for Revel's current stock of one product or a list
//! (`inventory.requested`, signed like its other webhooks), and the stock
//! that changed reaches it through the normal sync.
//!
//! The receiver stores the request like any event (one put). The processor
//! keeps it as an entity of its own (kind
//! `vendors::vinesos::Entity::InventoryRequest`, its id the envelope's) and
//! queues an `inventory_request` job, in one message group
//! per instance so an instance's requests run one at a time. The worker
//! ([`crate::worker::jobs::inventory_request`]):
//!
//! 1. for an instance without the retailer option (`inventory_every_2h` in
//!    its settings) does nothing but log and count it
//!    ([`telemetry::Metric::InventoryRequests`], reason `not_upgraded`);
//! 2. notes the request's products in the instance's pending set
//!    ([`PendingProducts`]), each with the time it was noted, once (the
//!    request entity is then marked done);
//! 3. takes one of the instance's on-demand pulls of the hour
//!    ([`OnDemandAllowance`]: at most `InventoryRequestsPerHour`, counted
//!    atomically in the sync-state table). Given one, it pulls Revel's
//!    `CurrentStock` of every pending product (`product__in`,
//!    [`PRODUCTS_PER_CALL`] at a time), kept newest-wins exactly as the
//!    scheduled inventory pull keeps it (entity kind `inventory`, the same
//!    keys; [`Syncer::pull_matching`]), the changed ones queued for delivery
//!    to the partner; then it takes off the set what it pulled, unless it
//!    was asked for again after the pull began. Refused, the products stay
//!    pending and one deferred pull is queued for the start of the next
//!    hour: requests over the limit are pulled together then, not lost;
//! 4. spends the daily API budget like any pull: a spent budget stops it
//!    cleanly, what was pulled comes off the set, and a deferred pull is
//!    queued for just after the budget resets; its deadline queues one at
//!    once.
//!
//! A deferred pull is an `inventory_request` job without an entity, dated
//! (`version`) by when it may run, in a message group of its own so it holds
//! back no request; received before then, it waits ([`JobError::NotYet`]).

use std::collections::BTreeMap;
use vendors::vinesos::inventory_search::product_id;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::sync::{Pull, PullOutcome, StopReason, SyncError, Syncer, INVENTORY};
use crate::worker::jobs::inventory_request::InventoryRequest;
use crate::worker::{after_budget_resets, JobError};
use domain::clock::Clock;
use domain::error::DependencyError;
use domain::idempotency::sha256_hex;
use domain::ids::{EntityKey, InstanceName};
use domain::sources::EntityKind;
use ports::queue::{JobKind, JobMessage, JobQueue, QueuedJob};
use ports::secrets::InstanceSecrets;
use ports::store::document::EntityDocument;
use ports::store::EntityStore;
use ports::sync_state::OnDemandAllowance;
use vendors::revel::api::ApiCredentials;
use vendors::vinesos;

/// The entity kind of an instance's pending set: the pipeline's own, kept
/// under the partner's source beside the requests it gathers.
pub const PENDING_KIND: EntityKind = EntityKind::new("vos_inventory_pending");

/// The one pending set of an instance.
const PENDING_ID: &str = "products";

/// Products named in one `product__in` filter: short URLs, few calls.
pub const PRODUCTS_PER_CALL: usize = 50;

/// At most this many products wait at once (far below an item's size); a
/// request that would go past it waits for the next hour's pull.
pub const MAX_PENDING: usize = 5_000;

/// The on-demand pull: the scheduled inventory pull's resource and entity
/// kind (`CurrentStock` kept as `inventory`), under a name of its own.
pub const ON_DEMAND: Pull = Pull {
    name: "inventory_request",
    ..INVENTORY
};

/// The `Reason` of [`telemetry::Metric::InventoryRequests`]: what became of a request
/// (or of a deferred pull).
pub mod reason {
    /// A pull of the pending products ran.
    pub const PULLED: &str = "pulled";
    /// Over the hour's allowance: pulled with the others at the next hour.
    pub const COALESCED: &str = "coalesced";
    /// The instance doesn't have the retailer option: kept, nothing pulled.
    pub const NOT_UPGRADED: &str = "not_upgraded";
    /// The instance has no Revel API credentials: kept, nothing pulled.
    pub const NO_CREDENTIALS: &str = "no_credentials";
}

/// The products a kept request names.
fn products_of(state_json: &str) -> Result<Vec<String>, JobError> {
    let state: Value = serde_json::from_str(state_json)
        .map_err(|_| JobError::Malformed("stored state is not JSON"))?;
    Ok(state["revel_product_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(product_id)
        .map(|id| id.to_string())
        .collect())
}

/// A pull of whatever is pending for `instance`, not before `not_before`:
/// once per instance and time (the deduplication id), in a message group of
/// its own.
pub fn deferred_pull(instance: &InstanceName, not_before: OffsetDateTime) -> QueuedJob {
    let at = micros(not_before);
    QueuedJob {
        message: JobMessage {
            job: JobKind::InventoryRequest,
            source: vinesos::NAME.to_string(),
            instance: instance.to_string(),
            event_type: "inventory_request.deferred".to_owned(),
            event_key: format!("schedule:inventory_request:{instance}:{at}"),
            entity_key: None,
            version: Some(at),
        },
        group_id: format!("inventory_request.deferred:revel:{instance}"),
        deduplication_id: sha256_hex(
            format!("inventory_request.deferred:{instance}:{at}").as_bytes(),
        ),
    }
}

fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

fn instant(micros: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).ok()
}

/// The start of the UTC hour after `now`: when the allowance is new again.
pub fn next_hour(now: OffsetDateTime) -> OffsetDateTime {
    let hour_start = now
        .replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(now);
    hour_start + time::Duration::HOUR
}

/// The state of the pending set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PendingState {
    /// Revel product id -> when it was last asked for (µs).
    pending: BTreeMap<String, i64>,
}

/// The products of an instance waiting for an on-demand pull, kept as one
/// entity (`vinesos:{instance}:vos_inventory_pending:products`). Each
/// change is a compare-and-swap on its rank: a write names the next version,
/// a concurrent write of the same version is refused (`Repeated`) and done
/// again on what won.
pub struct PendingProducts<'a> {
    entities: &'a dyn EntityStore,
}

impl<'a> PendingProducts<'a> {
    pub fn new(entities: &'a dyn EntityStore) -> Self {
        Self { entities }
    }

    /// The pending set of `instance`.
    fn document(&self, instance: &InstanceName) -> Result<EntityDocument<'a>, DependencyError> {
        EntityDocument::new(
            self.entities,
            vinesos::NAME.as_str(),
            instance,
            PENDING_KIND,
            PENDING_ID.to_owned(),
            &format!("{}:{instance}:inventory_request:pending", vinesos::NAME),
        )
    }

    /// Every pending product, with when it was last asked for (µs).
    pub async fn all(
        &self,
        instance: &InstanceName,
    ) -> Result<BTreeMap<String, i64>, DependencyError> {
        Ok(self
            .document(instance)?
            .read::<PendingState>()
            .await?
            .pending)
    }

    /// Notes `products` as asked for at `at`; false (and nothing noted) when
    /// the set would hold more than [`MAX_PENDING`].
    pub async fn note(
        &self,
        instance: &InstanceName,
        products: &[String],
        at: i64,
    ) -> Result<bool, DependencyError> {
        let mut fits = true;
        self.document(instance)?
            .change(|state: &mut PendingState| {
                let new = products
                    .iter()
                    .filter(|p| !state.pending.contains_key(*p))
                    .count();
                fits = state.pending.len() + new <= MAX_PENDING;
                if !fits {
                    return false;
                }
                for product in products {
                    let noted = state.pending.entry(product.clone()).or_insert(at);
                    *noted = (*noted).max(at);
                }
                true
            })
            .await?;
        Ok(fits)
    }

    /// Takes `pulled` off the set, each unless it was asked for after
    /// `began` (the pull may have read it before that request).
    /// Returns how many stay pending.
    pub async fn remove(
        &self,
        instance: &InstanceName,
        pulled: &[String],
        began: i64,
    ) -> Result<usize, DependencyError> {
        let left = self
            .document(instance)?
            .change(|state: &mut PendingState| {
                let before = state.pending.len();
                for product in pulled {
                    if state.pending.get(product).is_some_and(|at| *at <= began) {
                        state.pending.remove(product);
                    }
                }
                state.pending.len() != before
            })
            .await?;
        Ok(left.pending.len())
    }
}

/// What one on-demand pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    /// Products whose stock was pulled (and taken off the set).
    pub pulled: usize,
    /// Products still pending after it.
    pub left: usize,
    /// `CurrentStock` objects fetched, and written (changed).
    pub fetched: u64,
    pub written: u64,
    /// Why it stopped before the end, if it did (a deferred pull is queued).
    pub stopped: Option<StopReason>,
}

/// What a job came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Nothing was pending (a deferred pull after its products were pulled).
    NothingPending,
    /// Over the hour's allowance: the products wait for the pull queued for `until`.
    Coalesced {
        pending: usize,
        until: OffsetDateTime,
    },
    /// A pull ran.
    Pulled(PullReport),
}

/// What an on-demand pull needs.
pub struct OnDemand<'a> {
    pub entities: &'a dyn EntityStore,
    pub allowance: &'a dyn OnDemandAllowance,
    pub syncer: &'a Syncer,
    pub jobs: &'a dyn JobQueue,
    pub clock: &'a dyn Clock,
}

impl OnDemand<'_> {
    /// A request (its entity named): its products noted, then a pull of
    /// every pending product if the hour allows one. A deferred pull (no
    /// entity): not before its time, then the same pull.
    pub async fn handle(
        &self,
        job: &InventoryRequest,
        credentials: &ApiCredentials,
        deadline: Instant,
    ) -> Result<Handled, JobError> {
        let instance = &job.instance;
        match &job.request {
            Some(key) => self.note(instance, key).await?,
            None => {
                let due = job.not_before.and_then(instant);
                if let Some(due) = due.filter(|due| self.clock.now() < *due) {
                    return Err(JobError::NotYet(due));
                }
            }
        }
        self.pull_pending(instance, credentials, deadline).await
    }

    /// Notes the request's products, once.
    async fn note(&self, instance: &InstanceName, key: &EntityKey) -> Result<(), JobError> {
        let Some(request) = self.entities.get(key).await? else {
            tracing::warn!(entity = %key, "inventory request is gone; nothing to note");
            return Ok(());
        };
        if request.is_delivered() {
            // An earlier attempt noted it.
            return Ok(());
        }
        let products = products_of(&request.state_json)?;
        let now = self.clock.now();
        let pending = PendingProducts::new(self.entities);
        if !pending.note(instance, &products, micros(now)).await? {
            tracing::warn!(%instance, products = products.len(), max = MAX_PENDING,
                "too many inventory requests pending; this one waits for the next hour's pull");
            return Err(JobError::NotYet(next_hour(now)));
        }
        self.entities.mark_delivered(key, request.revision).await?;
        Ok(())
    }

    /// Pulls every pending product if the hour's allowance has a pull left;
    /// otherwise queues the pull for the next hour.
    async fn pull_pending(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        deadline: Instant,
    ) -> Result<Handled, JobError> {
        let set = PendingProducts::new(self.entities);
        let mut pending: Vec<String> = set.all(instance).await?.into_keys().collect();
        // In id order, as a person reading the calls expects.
        pending.sort_by_key(|p| p.parse::<u64>().unwrap_or(u64::MAX));
        if pending.is_empty() {
            return Ok(Handled::NothingPending);
        }
        let now = self.clock.now();
        if !self.allowance.take_on_demand_pull(instance, now).await? {
            let until = next_hour(now);
            self.jobs.enqueue(&deferred_pull(instance, until)).await?;
            return Ok(Handled::Coalesced {
                pending: pending.len(),
                until,
            });
        }
        let began = self.clock.now_micros();
        let mut report = PullReport::default();
        let mut pulled: Vec<String> = Vec::new();
        let result: Result<(), SyncError> = async {
            for chunk in pending.chunks(PRODUCTS_PER_CALL) {
                let filter = chunk.join(",");
                let outcome = self
                    .syncer
                    .pull_matching(
                        instance,
                        credentials,
                        &ON_DEMAND,
                        ("product__in", &filter),
                        deadline,
                    )
                    .await?;
                match outcome {
                    PullOutcome::Complete { fetched, written } => {
                        report.fetched += fetched;
                        report.written += written;
                        pulled.extend_from_slice(chunk);
                    }
                    PullOutcome::Stopped {
                        reason,
                        fetched,
                        written,
                    } => {
                        report.fetched += fetched;
                        report.written += written;
                        report.stopped = Some(reason);
                        return Ok(());
                    }
                }
            }
            Ok(())
        }
        .await;
        // What was pulled comes off the set, whatever stopped the rest.
        let left = if pulled.is_empty() {
            pending.len()
        } else {
            set.remove(instance, &pulled, began).await?
        };
        result?;
        report.pulled = pulled.len();
        report.left = left;
        let resume_at = match report.stopped {
            None => None,
            Some(StopReason::BudgetSpent) => Some(after_budget_resets(self.clock.now())),
            Some(StopReason::Deadline) => Some(self.clock.now()),
        };
        if let Some(at) = resume_at {
            self.jobs.enqueue(&deferred_pull(instance, at)).await?;
        }
        Ok(Handled::Pulled(report))
    }
}

/// Whether `instance` has the retailer option (its setting
/// `inventory_every_2h`): only then does a request pull anything.
pub fn has_retailer_option(document: &InstanceSecrets, instance: &InstanceName) -> bool {
    document.settings(instance).inventory_every_2h
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use time::macros::datetime;

    use serde_json::json;
    use vendors::vinesos::inventory_search::interpret;

    use super::*;
    use crate::apply::tests::MemoryRevel;
    use crate::sync::CATALOG;
    use domain::clock::TokioClock;
    use domain::ids::EventKey;
    use ports::fakes::{MemoryAllowance, MemoryEntities, MemoryQueue, MemorySyncState};
    use ports::store::{EntityUpsert, Rank};

    /// 10:20 UTC: the next hour's allowance opens 40 minutes later.
    const START: OffsetDateTime = datetime!(2026-11-24 10:20 UTC);

    fn demo() -> InstanceName {
        InstanceName::parse("demo").unwrap()
    }

    fn credentials() -> ApiCredentials {
        ApiCredentials::new("key", "secret")
    }

    /// Revel holding the stock of `products` (`CurrentStock` 900 + id).
    fn stock_of(products: impl IntoIterator<Item = u64>) -> Arc<MemoryRevel> {
        let stock = products
            .into_iter()
            .map(|p| {
                json!({"id": 900 + p, "product": format!("/resources/Product/{p}/"),
                       "quantity": 10 * p, "updated_date": "2026-11-24T09:00:00"})
            })
            .collect();
        Arc::new(MemoryRevel::holding("CurrentStock", stock))
    }

    /// The worker's side of on-demand pulls, on memory fakes and tokio's
    /// (paused) clock.
    struct Harness {
        revel: Arc<MemoryRevel>,
        entities: Arc<MemoryEntities>,
        queue: Arc<MemoryQueue>,
        allowance: MemoryAllowance,
        syncer: Syncer,
        clock: TokioClock,
    }

    impl Harness {
        fn new(revel: Arc<MemoryRevel>, per_hour: u64) -> Self {
            let entities = Arc::new(MemoryEntities::default());
            let queue = Arc::new(MemoryQueue::default());
            let clock = TokioClock::starting_at(START);
            let syncer = Syncer::new(
                revel.clone(),
                Arc::new(MemorySyncState::default()),
                entities.clone(),
                Duration::from_secs(3600),
                Arc::new(clock),
            )
            .delivering_to(queue.clone());
            Self {
                revel,
                entities,
                queue,
                allowance: MemoryAllowance::new(per_hour),
                syncer,
                clock,
            }
        }

        fn on_demand(&self) -> OnDemand<'_> {
            OnDemand {
                entities: self.entities.as_ref(),
                allowance: &self.allowance,
                syncer: &self.syncer,
                jobs: self.queue.as_ref(),
                clock: &self.clock,
            }
        }

        /// Keeps a request for `products` as the processor does, and
        /// returns its job.
        async fn request(&self, id: &str, products: &[u64]) -> JobMessage {
            let meaning = interpret(
                id,
                self.clock.now_micros(),
                Some(&json!({"revel_product_ids": products})),
            )
            .unwrap();
            let change = meaning.entity.unwrap();
            let key = EntityKey::new(vinesos::NAME, &demo(), change.kind, &change.id).unwrap();
            let state_json = change.state.to_string();
            let rank = Rank::new(
                self.clock.now_micros(),
                false,
                &sha256_hex(state_json.as_bytes()),
            );
            let event_key =
                EventKey::parse(&format!("vinesos:demo:vinesos.inventory.requested:{id}")).unwrap();
            self.entities
                .upsert(&EntityUpsert {
                    key: key.clone(),
                    source: vinesos::NAME.as_str(),
                    instance: demo(),
                    kind: change.kind,
                    entity_id: change.id.clone(),
                    rank: rank.clone(),
                    state_sha256: sha256_hex(state_json.as_bytes()),
                    state_json,
                    event_key: event_key.clone(),
                })
                .await
                .unwrap();
            QueuedJob::for_entity(
                JobKind::InventoryRequest,
                vinesos::NAME.as_str(),
                &demo(),
                "vinesos.inventory.requested",
                &event_key,
                &key,
                &rank,
            )
            .in_instance_group(&vendors::revel::NAME)
            .message
        }

        async fn handle(&self, job: &JobMessage) -> Result<Handled, JobError> {
            let far = Instant::now() + Duration::from_secs(3600);
            self.on_demand()
                .handle(&request_of(job), &credentials(), far)
                .await
        }

        async fn pending(&self) -> Vec<String> {
            PendingProducts::new(self.entities.as_ref())
                .all(&demo())
                .await
                .unwrap()
                .into_keys()
                .collect()
        }

        /// The jobs queued, oldest first, taken off the queue.
        fn take_jobs(&self) -> Vec<QueuedJob> {
            std::mem::take(&mut *self.queue.jobs.lock().unwrap())
        }

        fn inventory(&self, record: u64) -> Option<ports::fakes::MemoryEntity> {
            self.entities
                .get(&EntityKey::parse(&format!("revel:demo:inventory:{record}")).unwrap())
        }
    }

    /// The request or deferred pull a job message asks for.
    fn request_of(job: &JobMessage) -> InventoryRequest {
        match crate::worker::Job::from_message(job).unwrap() {
            crate::worker::Job::InventoryRequest(request) => request,
            other => panic!("expected an inventory request, got {other:?}"),
        }
    }

    fn pulled(handled: Handled) -> PullReport {
        match handled {
            Handled::Pulled(report) => report,
            other => panic!("expected a pull, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_pulls_exactly_its_products_kept_as_the_scheduled_pull_keeps_them_and_queues_the_changed_ones_for_the_partner(
    ) {
        let harness = Harness::new(stock_of([5, 6, 7]), 12);
        let job = harness.request("evt_1", &[5, 6]).await;
        assert_eq!(job.job, JobKind::InventoryRequest);

        let report = pulled(harness.handle(&job).await.unwrap());

        assert_eq!(
            report,
            PullReport {
                pulled: 2,
                left: 0,
                fetched: 2,
                written: 2,
                stopped: None
            }
        );
        assert_eq!(harness.revel.calls(), ["GET CurrentStock product__in=5,6"]);
        assert!(harness.inventory(905).is_some() && harness.inventory(906).is_some());
        assert!(harness.inventory(907).is_none(), "not asked for");
        let deliveries: Vec<String> = harness
            .take_jobs()
            .iter()
            .map(|j| {
                assert_eq!(j.message.job, JobKind::SyncEntity);
                j.message.entity_key.clone().unwrap()
            })
            .collect();
        assert_eq!(
            deliveries,
            ["revel:demo:inventory:905", "revel:demo:inventory:906"]
        );
        assert!(harness.pending().await.is_empty());

        // The scheduled inventory pull finds these exactly as it would have
        // kept them: same keys, same versions, nothing written again.
        let far = Instant::now() + Duration::from_secs(60);
        let scheduled = harness
            .syncer
            .pull(&demo(), &credentials(), &INVENTORY, far)
            .await
            .unwrap();
        assert_eq!(
            scheduled,
            PullOutcome::Complete {
                fetched: 3,
                written: 1
            }
        );
        assert_eq!(
            harness
                .entities
                .get(&EntityKey::parse("revel:demo:inventory:905").unwrap())
                .unwrap()
                .revision,
            1
        );
        assert_ne!(ON_DEMAND.name, INVENTORY.name);
        assert_eq!(ON_DEMAND.resources, INVENTORY.resources);
        assert_ne!(ON_DEMAND.resources, CATALOG.resources);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retried_request_notes_its_products_once_and_pulls_nothing_more() {
        let harness = Harness::new(stock_of([5]), 12);
        let job = harness.request("evt_1", &[5]).await;
        pulled(harness.handle(&job).await.unwrap());
        assert_eq!(harness.handle(&job).await.unwrap(), Handled::NothingPending);
        assert_eq!(harness.revel.calls().len(), 1);
        assert_eq!(
            harness
                .allowance
                .taken
                .lock()
                .unwrap()
                .values()
                .sum::<u64>(),
            1,
            "one pull taken"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_over_the_hours_allowance_are_pulled_together_by_one_deferred_pull_at_the_next_hour(
    ) {
        let harness = Harness::new(stock_of([5, 6, 7]), 1);
        let first = harness.request("evt_1", &[5]).await;
        pulled(harness.handle(&first).await.unwrap());
        harness.take_jobs();

        let next_hour = datetime!(2026-11-24 11:00 UTC);
        for (id, product) in [("evt_2", 6), ("evt_3", 7)] {
            let job = harness.request(id, &[product]).await;
            assert_eq!(
                harness.handle(&job).await.unwrap(),
                Handled::Coalesced {
                    pending: product as usize - 5,
                    until: next_hour
                }
            );
        }
        assert_eq!(
            harness.revel.calls().len(),
            1,
            "nothing pulled over the allowance"
        );
        assert_eq!(harness.pending().await, ["6", "7"]);
        let deferred = harness.take_jobs();
        assert_eq!(deferred.len(), 1, "one deferred pull for the hour");
        assert_eq!(deferred[0], deferred_pull(&demo(), next_hour));
        assert_eq!(
            deferred[0].group_id,
            "inventory_request.deferred:revel:demo"
        );
        assert_ne!(
            deferred[0].group_id,
            QueuedJob::scheduled(
                JobKind::InventoryRequest,
                vendors::revel::NAME.as_str(),
                &demo(),
                "w"
            )
            .in_instance_group(&vendors::revel::NAME)
            .group_id
        );

        // Received early, it waits until the hour.
        let job = &deferred[0].message;
        match harness.handle(job).await {
            Err(JobError::NotYet(due)) => assert_eq!(due, next_hour),
            other => panic!("expected to wait, got {other:?}"),
        }
        tokio::time::advance(Duration::from_secs(40 * 60)).await;
        let report = pulled(harness.handle(job).await.unwrap());
        assert_eq!((report.pulled, report.left), (2, 0));
        assert_eq!(
            harness.revel.calls()[1..],
            ["GET CurrentStock product__in=6,7"],
            "pulled together, with one call"
        );
        assert!(harness.pending().await.is_empty());
        assert_eq!(
            harness.handle(job).await.unwrap(),
            Handled::NothingPending,
            "a repeat has nothing to do"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_stops_the_pull_keeps_the_rest_pending_and_the_pull_after_the_reset_takes_them_in_one_call(
    ) {
        let products: Vec<u64> = (1..=60).collect();
        let revel = stock_of(products.clone());
        *revel.budget.lock().unwrap() = Some(1);
        let harness = Harness::new(revel.clone(), 12);
        let job = harness.request("evt_1", &products).await;

        let report = pulled(harness.handle(&job).await.unwrap());

        assert_eq!(
            (report.pulled, report.left, report.stopped),
            (PRODUCTS_PER_CALL, 10, Some(StopReason::BudgetSpent))
        );
        let resume = datetime!(2026-11-25 00:01 UTC);
        let deferred: Vec<QueuedJob> = harness
            .take_jobs()
            .into_iter()
            .filter(|j| j.message.entity_key.is_none())
            .collect();
        assert_eq!(deferred, [deferred_pull(&demo(), resume)]);
        let left: Vec<String> = (51..=60).map(|p| p.to_string()).collect();
        let mut pending = harness.pending().await;
        pending.sort_by_key(|p| p.parse::<u64>().unwrap());
        assert_eq!(pending, left);

        *revel.budget.lock().unwrap() = None;
        tokio::time::advance(Duration::try_from(resume - START).unwrap()).await;
        let report = pulled(harness.handle(&deferred[0].message).await.unwrap());
        assert_eq!((report.pulled, report.left, report.stopped), (10, 0, None));
        assert_eq!(revel.calls().len(), 2);
        assert!(revel.calls()[1].starts_with("GET CurrentStock product__in=51,52,"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pull_past_its_deadline_calls_nothing_and_continues_in_a_deferred_pull_due_at_once() {
        let harness = Harness::new(stock_of([5]), 12);
        let job = harness.request("evt_1", &[5]).await;
        let report = pulled(
            harness
                .on_demand()
                .handle(&request_of(&job), &credentials(), Instant::now())
                .await
                .unwrap(),
        );
        assert_eq!(
            (report.pulled, report.stopped),
            (0, Some(StopReason::Deadline))
        );
        assert!(harness.revel.calls().is_empty());
        assert_eq!(harness.take_jobs(), [deferred_pull(&demo(), START)]);
        assert_eq!(harness.pending().await, ["5"]);
    }

    #[tokio::test]
    async fn a_product_asked_for_again_after_a_pull_began_stays_pending() {
        let entities = MemoryEntities::default();
        let set = PendingProducts::new(&entities);
        let products = ["5".to_owned(), "6".to_owned()];
        set.note(&demo(), &products, 10).await.unwrap();
        set.note(&demo(), &products[1..], 30).await.unwrap();
        // A pull that began at 20 read 6 before it was asked for again.
        set.remove(&demo(), &products, 20).await.unwrap();
        assert_eq!(
            set.all(&demo()).await.unwrap(),
            BTreeMap::from([("6".to_owned(), 30)])
        );
        set.note(&demo(), &products[1..], 25).await.unwrap();
        assert_eq!(set.all(&demo()).await.unwrap()["6"], 30, "never moved back");
    }

    #[tokio::test]
    async fn a_request_that_would_overfill_the_pending_set_notes_nothing() {
        let entities = MemoryEntities::default();
        let set = PendingProducts::new(&entities);
        let many: Vec<String> = (1..=MAX_PENDING).map(|p| p.to_string()).collect();
        assert!(set.note(&demo(), &many, 1).await.unwrap());
        assert!(
            set.note(&demo(), &many[..10], 2).await.unwrap(),
            "already pending: fits"
        );
        assert!(!set.note(&demo(), &["999999".to_owned()], 3).await.unwrap());
        assert_eq!(set.all(&demo()).await.unwrap().len(), MAX_PENDING);
    }

    #[tokio::test]
    async fn a_note_written_at_the_same_time_as_another_is_not_lost() {
        let entities = ports::fakes::RacedEntities::new(r#"{"pending":{"77":1}}"#);
        let set = PendingProducts::new(&entities);
        set.note(&demo(), &["5".to_owned()], 2).await.unwrap();
        assert_eq!(
            set.all(&demo()).await.unwrap(),
            BTreeMap::from([("5".to_owned(), 2), ("77".to_owned(), 1)])
        );
    }

    #[test]
    fn the_allowance_opens_at_the_next_utc_hour_and_the_budget_a_minute_past_midnight() {
        assert_eq!(next_hour(START), datetime!(2026-11-24 11:00 UTC));
        assert_eq!(
            next_hour(datetime!(2026-11-24 23:00 UTC)),
            datetime!(2026-11-25 00:00 UTC)
        );
        assert_eq!(after_budget_resets(START), datetime!(2026-11-25 00:01 UTC));
    }

    #[tokio::test]
    async fn the_memory_allowance_gives_each_instance_its_pulls_per_hour() {
        let allowance = MemoryAllowance::new(2);
        let other = InstanceName::parse("other").unwrap();
        let mut taken = Vec::new();
        for (instance, at) in [
            (demo(), START),
            (demo(), START),
            (demo(), START),
            (other, START),
            (demo(), next_hour(START)),
        ] {
            taken.push(allowance.take_on_demand_pull(&instance, at).await.unwrap());
        }
        assert_eq!(
            taken,
            [true, true, false, true, true],
            "per instance and hour"
        );
    }
}
