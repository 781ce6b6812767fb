//! The pulls through Revel's REST API that the sync schedule puts at end of
//! day or every 2 hours, and the end-of-day reconciliation of orders whose
//! webhook never arrived.
//!
//! A pull fetches what changed since its checkpoint, page by page, and keeps
//! it newest-wins in the entities table (an unchanged object is not
//! written). After every page it records where it is, so a run stopped by
//! the API budget, its deadline or an error is resumed by the next run at
//! the next page: no object is skipped or fetched twice. The checkpoint
//! moves only when a run reaches the last page.
//!
//! Revel writes `updated_date` without an offset, on the merchant's clock.
//! So checkpoints are kept as instants (RFC 3339, UTC) and written into
//! `updated_date__gte` as the instance's wall-clock time
//! ([`domain::local_time::Zone::filter_from`]), and a pulled object's
//! version is its `updated_date` read in the instance's zone: a pull in a
//! zone behind UTC doesn't skip the hours between the two. A checkpoint
//! written before zones were kept (naive, in UTC) reads as the instant it
//! meant.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::receive::{Outcome, Receiver};
use domain::clock::Clock;
use domain::error::{DependencyError, ReceiveError};
use domain::idempotency::sha256_hex;
use domain::ids::{EntityKey, EventKey, InstanceName};
use domain::local_time::Zone;
use domain::sources::{
    id_field, parse_local_micros, parse_timestamp_micros, strip_payment_card_fields,
};
use ports::store::{EntityStore, EntityUpsert, Rank};
use ports::sync_state::{Cursor, RunProgress, SyncState};
use vendors::revel;
use vendors::revel::api::{ApiCredentials, PageRequest, RevelApiError, RevelResources};

/// Revel's filter format for `updated_date__gte`.
const REVEL_TIME: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");

/// A new checkpoint starts this much before its run, so an object updated
/// while the run was under way (or under a slightly wrong clock) is not missed.
const CHECKPOINT_OVERLAP: Duration = Duration::from_secs(120);

/// A run resumed this long after it began (one stopped by a spent budget,
/// resumed at the next scheduled run) is followed by a fresh run in the
/// same job: objects changed meanwhile among the pages it had read before
/// it stopped would otherwise wait for the run after. A continuation a
/// few minutes after its deadline is not.
const STALE_RUN: Duration = Duration::from_secs(3600);

/// Which reconciliation runs: the end of day's, or a backfill's orders.
#[derive(Debug, Clone, Copy)]
pub struct Reconciliation<'a> {
    /// Its cursor.
    pub cursor: &'a str,
    /// How far back its first run looks.
    pub first_since: OffsetDateTime,
    /// Whether an old run, resumed and completed, is followed by a fresh
    /// one (as for [`Pull::catch_up`]).
    pub catch_up: bool,
}

/// Where the end-of-day reconciliation stands.
pub const RECONCILE_CURSOR: &str = "reconcile.Order";

/// One pull: which resources, kept as which entity kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pull {
    pub name: &'static str,
    pub resources: &'static [(&'static str, revel::Entity)],
    /// Whether an old run, resumed and completed, is followed by a fresh
    /// one at once (after an hour, `STALE_RUN`): a scheduled pull catches up with what
    /// changed meanwhile; a backfill does not (it is done once complete,
    /// and the schedule's pulls take over).
    pub catch_up: bool,
}

/// The event key a run's objects are kept under.
fn pull_event_key(instance: &InstanceName, pull: &Pull, run: &RunProgress) -> EventKey {
    EventKey::parse(&format!(
        "revel:{instance}:pull.{}:{}",
        pull.name, run.started_at
    ))
    .expect("instance and timestamps are printable")
}

/// Products and modifiers: the catalog. Pulled at end of day ("Products
/// added on Revel") and after a menu push (coalesced).
pub const CATALOG: Pull = Pull {
    name: "catalog",
    resources: &[
        ("Product", revel::Entity::Product),
        ("Modifier", revel::Entity::Modifier),
    ],
    catch_up: true,
};

/// Events ("Events added on Revel": end of day).
pub const EVENTS: Pull = Pull {
    name: "events",
    resources: &[("Event", revel::Entity::Event)],
    catch_up: true,
};

/// Inventory levels ("Inventory received or changed": every 2 hours, for
/// the instances that have the retailer option).
pub const INVENTORY: Pull = Pull {
    name: "inventory",
    resources: &[("CurrentStock", revel::Entity::Inventory)],
    catch_up: true,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    BudgetSpent,
    Deadline,
}

/// How far a pull got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullOutcome {
    /// Every resource reached its last page; checkpoints advanced.
    Complete { fetched: u64, written: u64 },
    /// Stopped cleanly; the next run resumes where this one stopped.
    Stopped {
        reason: StopReason,
        fetched: u64,
        written: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("Revel API: {0}")]
    Api(#[from] RevelApiError),
    #[error(transparent)]
    Store(#[from] DependencyError),
    #[error("storing a reconciled order: {0}")]
    Receive(#[from] ReceiveError),
}

impl SyncError {
    /// Worth retrying through the queue (as opposed to a refusal that will
    /// repeat, like wrong credentials).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api(e) => e.is_retryable_later(),
            Self::Store(_) => true,
            Self::Receive(ReceiveError::Unavailable(_)) => true,
            Self::Receive(_) => false,
        }
    }
}

/// What reconciliation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    pub checked: u64,
    /// Orders that had not arrived by webhook, ingested now.
    pub reconciled: u64,
    pub stopped: Option<StopReason>,
}

/// An instant as a checkpoint keeps it: RFC 3339 in UTC, to the second
/// (Revel's filter is to the second; rounding down only adds overlap).
pub(crate) fn checkpoint_text(at: OffsetDateTime) -> String {
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .expect("a date within Revel's range formats as RFC 3339")
}

/// Revel's `updated_date__gte` for the instant `since` (a checkpoint):
/// the instance's wall-clock time, moved back past any fall-back between
/// `since` and `now_micros` (see [`Zone::filter_from`]). A checkpoint that
/// doesn't read is sent as kept.
pub fn revel_filter(zone: &Zone, since: &str, now_micros: i64) -> String {
    let Some(instant) = parse_timestamp_micros(since) else {
        return since.to_owned();
    };
    let wall = zone.filter_from(instant, now_micros);
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(wall) * 1000)
        .ok()
        .and_then(|wall| wall.format(REVEL_TIME).ok())
        .unwrap_or_else(|| since.to_owned())
}

/// Runs pulls and reconciliation for one instance at a time.
#[derive(Clone)]
pub struct Syncer {
    api: Arc<dyn RevelResources>,
    clock: Arc<dyn Clock>,
    state: Arc<dyn SyncState>,
    entities: Arc<dyn EntityStore>,
    /// How far back the first reconciliation of an instance looks.
    reconcile_lookback: Duration,
    /// Where a changed object's delivery to the partner is queued.
    jobs: Option<Arc<dyn ports::queue::JobQueue>>,
    /// Where each instance's time zone is read (its settings); UTC without.
    zones: Option<Arc<dyn ports::secrets::InstanceDocument>>,
}

impl Syncer {
    pub fn new(
        api: Arc<dyn RevelResources>,
        state: Arc<dyn SyncState>,
        entities: Arc<dyn EntityStore>,
        reconcile_lookback: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            api,
            clock,
            state,
            entities,
            reconcile_lookback,
            jobs: None,
            zones: None,
        }
    }

    /// The same syncer calling Revel through `api` (a backfill's, whose
    /// budget leaves the schedule its share).
    pub fn using(&self, api: Arc<dyn RevelResources>) -> Self {
        Self {
            api,
            ..self.clone()
        }
    }

    /// Reads each instance's time zone from its settings in `revel`'s
    /// secret document (Revel writes its timestamps on that clock).
    pub fn in_zones_of(mut self, revel: Arc<dyn ports::secrets::InstanceDocument>) -> Self {
        self.zones = Some(revel);
        self
    }

    /// Now on the syncer's clock, in µs.
    pub(crate) fn now_micros(&self) -> i64 {
        self.clock.now_micros()
    }

    /// Where the pulls' cursors are kept.
    pub(crate) fn state(&self) -> &Arc<dyn SyncState> {
        &self.state
    }

    /// The zone `instance`'s Revel writes its timestamps in.
    pub async fn zone(&self, instance: &InstanceName) -> Result<Zone, SyncError> {
        Ok(ports::secrets::zone_of(self.zones.as_deref(), instance).await?)
    }

    /// Queues every pulled object that changed for delivery to the partner
    /// ("Products / Events added on Revel" reach it at end of day).
    pub fn delivering_to(mut self, jobs: Arc<dyn ports::queue::JobQueue>) -> Self {
        self.jobs = Some(jobs);
        self
    }

    /// Runs `pull` for `instance` until done, the budget is spent or `deadline`.
    pub async fn pull(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        pull: &Pull,
        deadline: Instant,
    ) -> Result<PullOutcome, SyncError> {
        let (mut fetched, mut written) = (0, 0);
        let zone = self.zone(instance).await?;
        for (resource, kind) in pull.resources {
            let cursor_name = format!("{}.{resource}", pull.name);
            let mut cursor = self.state.load(instance, &cursor_name).await?;
            let mut run = self.resume_or_start(&mut cursor);
            let mut event_key = pull_event_key(instance, pull, &run);
            loop {
                if Instant::now() >= deadline {
                    self.stop(instance, &cursor_name, cursor, run).await?;
                    return Ok(PullOutcome::Stopped {
                        reason: StopReason::Deadline,
                        fetched,
                        written,
                    });
                }
                let since = run
                    .since
                    .as_deref()
                    .map(|since| revel_filter(&zone, since, run.began_at));
                let request = page_request(resource, since.as_deref(), &[], run.offset);
                let page = match self.api.page(instance, credentials, &request).await {
                    Ok(page) => page,
                    Err(RevelApiError::BudgetExhausted { limit }) => {
                        tracing::warn!(%instance, pull = pull.name, resource, offset = run.offset, limit, "API budget spent; the next run resumes here");
                        self.stop(instance, &cursor_name, cursor, run).await?;
                        return Ok(PullOutcome::Stopped {
                            reason: StopReason::BudgetSpent,
                            fetched,
                            written,
                        });
                    }
                    Err(error) => {
                        // Where it stood stays recorded; the checkpoint does not move.
                        self.stop(instance, &cursor_name, cursor, run).await?;
                        return Err(error.into());
                    }
                };
                run.total = page.total_count.or(run.total);
                for object in &page.objects {
                    fetched += 1;
                    run.fetched += 1;
                    if self
                        .keep(instance, *kind, object, &run, &event_key, &zone)
                        .await?
                    {
                        written += 1;
                    }
                }
                match page.next_offset {
                    Some(next) if next > run.offset => {
                        run.offset = next;
                        cursor.run = Some(run.clone());
                        self.state.save(instance, &cursor_name, &cursor).await?;
                    }
                    _ => {
                        tracing::info!(%instance, pull = pull.name, resource, fetched = run.fetched, "pull complete; checkpoint advanced");
                        cursor.checkpoint = Some(run.started_at.clone());
                        cursor.completed_run_began_at = Some(run.began_at);
                        cursor.run = None;
                        self.state.save(instance, &cursor_name, &cursor).await?;
                        if pull.catch_up && self.is_old(&run) {
                            tracing::info!(%instance, pull = pull.name, resource, "the run completed was an old one resumed; a fresh run follows");
                            run = self.resume_or_start(&mut cursor);
                            event_key = pull_event_key(instance, pull, &run);
                            continue;
                        }
                        break;
                    }
                }
            }
        }
        Ok(PullOutcome::Complete { fetched, written })
    }

    /// Whether `run` began more than [`STALE_RUN`] ago.
    fn is_old(&self, run: &RunProgress) -> bool {
        let age = self.clock.now_micros().saturating_sub(run.began_at);
        age > i64::try_from(STALE_RUN.as_micros()).unwrap_or(i64::MAX)
    }

    fn resume_or_start(&self, cursor: &mut Cursor) -> RunProgress {
        let now = self.clock.now();
        cursor.run.take().unwrap_or_else(|| RunProgress {
            started_at: checkpoint_text(now - CHECKPOINT_OVERLAP),
            since: cursor.checkpoint.clone(),
            offset: 0,
            fetched: 0,
            total: None,
            began_at: i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX),
        })
    }

    /// Whether a run of `pull` that began at or after `since_micros` has
    /// completed for every one of its resources: a change made before then
    /// has been pulled.
    pub async fn pulled_since(
        &self,
        instance: &InstanceName,
        pull: &Pull,
        since_micros: i64,
    ) -> Result<bool, SyncError> {
        for (resource, _) in pull.resources {
            let cursor = self
                .state
                .load(instance, &format!("{}.{resource}", pull.name))
                .await?;
            if cursor
                .completed_run_began_at
                .is_none_or(|began| began < since_micros)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn stop(
        &self,
        instance: &InstanceName,
        name: &str,
        mut cursor: Cursor,
        run: RunProgress,
    ) -> Result<(), SyncError> {
        cursor.run = Some(run);
        self.state.save(instance, name, &cursor).await?;
        Ok(())
    }

    /// Keeps one pulled object newest-wins; true when it was written.
    async fn keep(
        &self,
        instance: &InstanceName,
        kind: revel::Entity,
        object: &Value,
        run: &RunProgress,
        event_key: &EventKey,
        zone: &Zone,
    ) -> Result<bool, SyncError> {
        let Some(id) = id_field(object, "id").or_else(|| id_field(object, "uuid")) else {
            tracing::warn!(%instance, kind = %kind.kind(), "pulled object without an id; skipped");
            return Ok(false);
        };
        let Ok(key) = EntityKey::new(vendors::revel::NAME, instance, kind, &id) else {
            tracing::warn!(%instance, kind = %kind.kind(), "pulled object with an unusable id; skipped");
            return Ok(false);
        };
        // On the merchant's clock, like the same object's webhook.
        let version = object
            .get("updated_date")
            .and_then(Value::as_str)
            .and_then(|raw| parse_local_micros(raw, zone))
            .or_else(|| parse_timestamp_micros(&run.started_at))
            .unwrap_or(0);
        let mut state = object.clone();
        strip_payment_card_fields(&mut state);
        let state_json = state.to_string();
        let state_sha256 = sha256_hex(state_json.as_bytes());
        let change = EntityUpsert {
            key,
            source: vendors::revel::NAME.as_str(),
            instance: instance.clone(),
            kind: kind.kind(),
            entity_id: id,
            // Objects carry no removal flag; equal versions are decided by
            // the state's hash.
            rank: Rank::new(version, false, &state_sha256),
            state_json,
            state_sha256,
            event_key: event_key.clone(),
        };
        let upserted = self.entities.upsert(&change).await?;
        // As in the processor: a resumed run may have stopped between the
        // write and the job, so a repeat queues the job again (deduplicated).
        if !upserted.owes_follow_up() {
            return Ok(false);
        }
        if let Some(jobs) = &self.jobs {
            let job = ports::queue::QueuedJob::for_entity(
                ports::queue::JobKind::SyncEntity,
                vendors::revel::NAME.as_str(),
                instance,
                &format!("pull.{}", kind.kind()),
                event_key,
                &change.key,
                &change.rank,
            );
            jobs.enqueue(&job).await?;
        }
        Ok(matches!(upserted, ports::store::Upserted::Applied { .. }))
    }

    /// Lists the orders Revel finalized since the last reconciliation and
    /// ingests, through the webhook's own path and key, each one whose
    /// webhook never arrived. The cursor works like a pull's.
    pub async fn reconcile(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        orders: &Receiver,
        deadline: Instant,
    ) -> Result<ReconcileReport, SyncError> {
        let first_since = self.clock.now() - self.reconcile_lookback;
        let scheduled = Reconciliation {
            cursor: RECONCILE_CURSOR,
            first_since,
            catch_up: true,
        };
        self.reconcile_from(instance, credentials, orders, deadline, scheduled)
            .await
    }

    /// Reconciliation as `which` says (a backfill's orders: their own
    /// cursor and date, and no catching up).
    pub async fn reconcile_from(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        orders: &Receiver,
        deadline: Instant,
        which: Reconciliation<'_>,
    ) -> Result<ReconcileReport, SyncError> {
        let Reconciliation {
            cursor: cursor_name,
            first_since,
            catch_up,
        } = which;
        let zone = self.zone(instance).await?;
        let mut cursor = self.state.load(instance, cursor_name).await?;
        if cursor.checkpoint.is_none() && cursor.run.is_none() {
            cursor.checkpoint = Some(checkpoint_text(first_since));
        }
        let mut run = self.resume_or_start(&mut cursor);
        let mut report = ReconcileReport {
            checked: 0,
            reconciled: 0,
            stopped: None,
        };
        loop {
            if Instant::now() >= deadline {
                report.stopped = Some(StopReason::Deadline);
                self.stop(instance, cursor_name, cursor, run).await?;
                return Ok(report);
            }
            let since = run
                .since
                .as_deref()
                .map(|since| revel_filter(&zone, since, run.began_at));
            let request =
                page_request("Order", since.as_deref(), &[("closed", "True")], run.offset);
            let page = match self.api.page(instance, credentials, &request).await {
                Ok(page) => page,
                Err(RevelApiError::BudgetExhausted { .. }) => {
                    report.stopped = Some(StopReason::BudgetSpent);
                    self.stop(instance, cursor_name, cursor, run).await?;
                    return Ok(report);
                }
                Err(error) => {
                    self.stop(instance, cursor_name, cursor, run).await?;
                    return Err(error.into());
                }
            };
            run.total = page.total_count.or(run.total);
            for order in &page.objects {
                // A missing order costs calls of its own: stop between
                // orders too. The page is redone next time, and the orders
                // already ingested from it are found present then.
                if Instant::now() >= deadline {
                    report.stopped = Some(StopReason::Deadline);
                    self.stop(instance, cursor_name, cursor, run).await?;
                    return Ok(report);
                }
                report.checked += 1;
                match self
                    .reconcile_order(instance, credentials, orders, order, &zone)
                    .await
                {
                    Ok(true) => report.reconciled += 1,
                    Ok(false) => {}
                    Err(SyncError::Api(RevelApiError::BudgetExhausted { .. })) => {
                        // This page is redone next time; orders already
                        // ingested from it are found present then.
                        report.stopped = Some(StopReason::BudgetSpent);
                        self.stop(instance, cursor_name, cursor, run).await?;
                        return Ok(report);
                    }
                    Err(error) => {
                        self.stop(instance, cursor_name, cursor, run).await?;
                        return Err(error);
                    }
                }
            }
            match page.next_offset {
                Some(next) if next > run.offset => {
                    run.offset = next;
                    cursor.run = Some(run.clone());
                    self.state.save(instance, cursor_name, &cursor).await?;
                }
                _ => {
                    cursor.checkpoint = Some(run.started_at.clone());
                    cursor.completed_run_began_at = Some(run.began_at);
                    cursor.run = None;
                    self.state.save(instance, cursor_name, &cursor).await?;
                    if catch_up && self.is_old(&run) {
                        run = self.resume_or_start(&mut cursor);
                        continue;
                    }
                    return Ok(report);
                }
            }
        }
    }

    /// True when the order was missing and has now been ingested.
    async fn reconcile_order(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        orders: &Receiver,
        order: &Value,
        zone: &Zone,
    ) -> Result<bool, SyncError> {
        // Read as the processor reads its webhook: on the merchant's clock.
        let (Some(uuid), Some(version)) = (
            id_field(order, "uuid"),
            order
                .get("updated_date")
                .and_then(Value::as_str)
                .and_then(|raw| parse_local_micros(raw, zone)),
        ) else {
            tracing::warn!(%instance, "listed order without uuid or updated_date; skipped");
            return Ok(false);
        };
        let Ok(key) = EntityKey::new(revel::NAME, instance, revel::Entity::Order, &uuid) else {
            return Ok(false);
        };
        // Present at this version or newer: its webhook (or an earlier
        // reconciliation) delivered it, whatever key it was stored under.
        if let Some(existing) = self.entities.get(&key).await? {
            if existing.rank.version >= version {
                return Ok(false);
            }
        }
        let order_id = id_field(order, "id").unwrap_or_default();
        let items = self
            .related(instance, credentials, "OrderItem", &order_id)
            .await?;
        let payments = self
            .related(instance, credentials, "Payment", &order_id)
            .await?;
        // The webhook's OrderAllInOne shape, so it is read, keyed and kept
        // exactly like the webhook would have been.
        let body = serde_json::json!({"orderInfo": order, "items": items, "payments": payments, "history": []});
        let outcome = orders
            .receive_fetched(
                instance,
                body.to_string().into_bytes(),
                format!("reconcile:{instance}:{uuid}"),
            )
            .await?;
        Ok(matches!(outcome, Outcome::Accepted { .. }))
    }

    async fn related(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        resource: &str,
        order_id: &str,
    ) -> Result<Vec<Value>, SyncError> {
        let mut objects = Vec::new();
        let mut offset = 0;
        loop {
            let request = page_request(resource, None, &[("order", order_id)], offset);
            let page = self.api.page(instance, credentials, &request).await?;
            objects.extend(page.objects);
            match page.next_offset {
                Some(next) if next > offset => offset = next,
                _ => return Ok(objects),
            }
        }
    }
}

fn page_request(
    resource: &str,
    since: Option<&str>,
    extra: &[(&str, &str)],
    offset: u64,
) -> PageRequest {
    // Ordered by id, so offsets stay stable across the pages of one run.
    let mut filters = vec![("order_by".to_owned(), "id".to_owned())];
    if let Some(since) = since {
        filters.push(("updated_date__gte".to_owned(), since.to_owned()));
    }
    filters.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    PageRequest {
        resource: resource.to_owned(),
        filters,
        offset,
    }
}

/// On-demand pulls of named objects (the partner's inventory requests,
/// [`crate::worker::jobs::inventory_request::on_demand`]): no checkpoint and nothing to resume; what
/// they fetch is kept exactly as a scheduled pull keeps it.
impl Syncer {
    /// Pulls the objects of `pull`'s resources that pass `filter`, page by
    /// page, keeping each newest-wins as the pull's kind (the changed ones
    /// queued for delivery); stops cleanly, before a page, when the budget
    /// is spent or at `deadline`.
    pub async fn pull_matching(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        pull: &Pull,
        filter: (&str, &str),
        deadline: Instant,
    ) -> Result<PullOutcome, SyncError> {
        let zone = self.zone(instance).await?;
        let mut run = self.resume_or_start(&mut Cursor::default());
        let event_key = pull_event_key(instance, pull, &run);
        let (mut fetched, mut written) = (0, 0);
        let stopped = |reason, fetched, written| {
            Ok(PullOutcome::Stopped {
                reason,
                fetched,
                written,
            })
        };
        for (resource, kind) in pull.resources {
            run.offset = 0;
            loop {
                if Instant::now() >= deadline {
                    return stopped(StopReason::Deadline, fetched, written);
                }
                let request = page_request(resource, None, &[filter], run.offset);
                let page = match self.api.page(instance, credentials, &request).await {
                    Ok(page) => page,
                    Err(RevelApiError::BudgetExhausted { .. }) => {
                        return stopped(StopReason::BudgetSpent, fetched, written)
                    }
                    Err(error) => return Err(error.into()),
                };
                for object in &page.objects {
                    fetched += 1;
                    if self
                        .keep(instance, *kind, object, &run, &event_key, &zone)
                        .await?
                    {
                        written += 1;
                    }
                }
                match page.next_offset {
                    Some(next) if next > run.offset => run.offset = next,
                    _ => break,
                }
            }
        }
        Ok(PullOutcome::Complete { fetched, written })
    }
}
