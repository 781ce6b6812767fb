//! In-memory stand-ins for the store, queue and secret traits, for unit
//! tests. Each can be switched "down" to act like an unreachable service.
//! They keep what their AWS service guarantees and no more: conditional
//! writes decided as DynamoDB decides them, and SQS FIFO's five-minute
//! deduplication window rather than deduplication forever. The simulation
//! (tests/sim) adds the rest: delivery, visibility, throttling, lost answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::queue::{
    InFlightJobs, JobQueue, ParkError, QueuedJob, ReceivedJob, MAX_VISIBILITY_TIMEOUT,
};
use crate::secrets::{SecretDocument, SecretSource};
use crate::store::{
    decide_upsert, EntityStore, EntityUpsert, EventRecord, EventStatus, EventStore, ExistingEvent,
    Put, Rank, StoredEntity, UpsertDecision, Upserted,
};
use domain::error::DependencyError;
use domain::ids::{EntityKey, EventKey};

fn down(switch: &AtomicBool, service: &'static str) -> Result<(), DependencyError> {
    if switch.load(Ordering::SeqCst) {
        Err(DependencyError::new(service, "fake", "switched down"))
    } else {
        Ok(())
    }
}

/// A fixed secret document.
pub struct FixedSecrets(pub String);

#[async_trait]
impl SecretSource for FixedSecrets {
    async fn fetch(&self) -> Result<SecretDocument, DependencyError> {
        Ok(SecretDocument(self.0.clone()))
    }
}

/// The events table in memory: a conditional put that refuses a taken key
/// and hands back what is stored, like DynamoDB's.
#[derive(Default)]
pub struct MemoryEvents {
    pub records: Mutex<BTreeMap<EventKey, EventRecord>>,
    /// Every write's new image, in order: the table's stream.
    pub stream: Mutex<Vec<EventRecord>>,
    pub down: AtomicBool,
    pub puts: std::sync::atomic::AtomicUsize,
}

impl MemoryEvents {
    pub fn status(&self, key: &EventKey) -> Option<EventStatus> {
        self.records.lock().unwrap().get(key).map(|r| r.status)
    }

    pub fn len(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored record, in key order.
    pub fn all(&self) -> Vec<EventRecord> {
        self.records.lock().unwrap().values().cloned().collect()
    }
}

#[async_trait]
impl EventStore for MemoryEvents {
    async fn put_new(&self, record: &EventRecord) -> Result<Put, DependencyError> {
        down(&self.down, "events")?;
        self.puts.fetch_add(1, Ordering::SeqCst);
        let mut records = self.records.lock().unwrap();
        if let Some(existing) = records.get(&record.event_key) {
            return Ok(Put::Exists(ExistingEvent {
                status: existing.status,
                body_sha256: existing.body_sha256.clone(),
                quarantine_reason: existing.quarantine_reason.clone(),
                origin: existing.origin,
            }));
        }
        records.insert(record.event_key.clone(), record.clone());
        self.stream.lock().unwrap().push(record.clone());
        Ok(Put::New)
    }

    async fn get(&self, key: &EventKey) -> Result<Option<EventRecord>, DependencyError> {
        down(&self.down, "events")?;
        Ok(self.records.lock().unwrap().get(key).cloned())
    }

    async fn mark_for_replay(
        &self,
        key: &EventKey,
        from: EventStatus,
        at_micros: i64,
    ) -> Result<bool, DependencyError> {
        down(&self.down, "events")?;
        match self.records.lock().unwrap().get_mut(key) {
            Some(record) if record.status == from => {
                record.status = EventStatus::Received;
                record.replayed_at = Some(at_micros);
                self.stream.lock().unwrap().push(record.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// One entity as [`MemoryEntities`] keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEntity {
    /// The change that wrote the current state.
    pub state: EntityUpsert,
    /// The rank, moved by newer changes with the same state.
    pub rank: Rank,
    pub revision: u64,
    pub delivered_revision: Option<u64>,
}

/// The entities table in memory, deciding upserts exactly as the DynamoDB
/// adapter does ([`decide_upsert`]).
#[derive(Default)]
pub struct MemoryEntities {
    pub entities: Mutex<BTreeMap<EntityKey, MemoryEntity>>,
    pub down: AtomicBool,
}

impl MemoryEntities {
    pub fn get(&self, key: &EntityKey) -> Option<MemoryEntity> {
        self.entities.lock().unwrap().get(key).cloned()
    }

    pub fn len(&self) -> usize {
        self.entities.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl EntityStore for MemoryEntities {
    async fn upsert(&self, change: &EntityUpsert) -> Result<Upserted, DependencyError> {
        down(&self.down, "entities")?;
        let mut entities = self.entities.lock().unwrap();
        let current = entities.get(&change.key);
        let decision = decide_upsert(
            current.map(|e| {
                (
                    &e.rank,
                    e.state.state_sha256.as_str(),
                    e.revision,
                    e.delivered_revision,
                )
            }),
            change,
        );
        match decision {
            UpsertDecision::Done(outcome) => Ok(outcome),
            UpsertDecision::MoveRank(outcome) => {
                let entity = entities.get_mut(&change.key).expect("decided on it");
                entity.rank = change.rank.clone();
                Ok(outcome)
            }
            UpsertDecision::Write => {
                let entity = entities
                    .entry(change.key.clone())
                    .or_insert_with(|| MemoryEntity {
                        state: change.clone(),
                        rank: change.rank.clone(),
                        revision: 0,
                        delivered_revision: None,
                    });
                entity.state = change.clone();
                entity.rank = change.rank.clone();
                entity.revision += 1;
                Ok(Upserted::Applied {
                    revision: entity.revision,
                })
            }
        }
    }

    async fn get(&self, key: &EntityKey) -> Result<Option<StoredEntity>, DependencyError> {
        down(&self.down, "entities")?;
        Ok(self
            .entities
            .lock()
            .unwrap()
            .get(key)
            .map(|e| StoredEntity {
                kind: e.state.kind.to_string(),
                entity_id: e.state.entity_id.clone(),
                rank: e.rank.clone(),
                revision: e.revision,
                state_json: e.state.state_json.clone(),
                last_event_key: Some(e.state.event_key.to_string()),
                delivered_revision: e.delivered_revision,
            }))
    }

    async fn mark_delivered(
        &self,
        key: &EntityKey,
        revision: u64,
    ) -> Result<bool, DependencyError> {
        down(&self.down, "entities")?;
        let mut entities = self.entities.lock().unwrap();
        match entities.get_mut(key) {
            Some(e) if e.delivered_revision.is_none_or(|d| d < revision) => {
                e.delivered_revision = Some(revision);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// SQS FIFO's deduplication window: a message with the id of one sent in
/// the last five minutes is accepted and dropped.
pub const FIFO_DEDUPLICATION_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// A FIFO queue's sending side with SQS's deduplication: the same id within
/// [`FIFO_DEDUPLICATION_WINDOW`] (on tokio's clock) is dropped, and after
/// it is a new message.
#[derive(Default)]
pub struct MemoryQueue {
    pub jobs: Mutex<Vec<QueuedJob>>,
    sent: Mutex<BTreeMap<String, tokio::time::Instant>>,
    pub down: AtomicBool,
}

impl MemoryQueue {
    pub fn len(&self) -> usize {
        self.jobs.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn enqueue(&self, job: &QueuedJob) -> Result<(), DependencyError> {
        down(&self.down, "queue")?;
        let now = tokio::time::Instant::now();
        let mut sent = self.sent.lock().unwrap();
        let recent = sent
            .get(&job.deduplication_id)
            .is_some_and(|at| now.duration_since(*at) < FIFO_DEDUPLICATION_WINDOW);
        if !recent {
            sent.insert(job.deduplication_id.clone(), now);
            self.jobs.lock().unwrap().push(job.clone());
        }
        Ok(())
    }
}

/// A FIFO jobs queue as its consumer sees it, with its dead-letter queue,
/// on tokio's clock: what SQS guarantees and no more. A received message is
/// hidden for the visibility timeout under a receipt handle of its own and
/// comes back when that passes unless deleted (at least once); while one of
/// a group is hidden, the group's later messages wait; only the latest
/// receipt acts on a message; a message is put off by at most 12 hours.
pub struct MemoryFifo {
    visibility_timeout: std::time::Duration,
    dead_letter_queue: bool,
    state: Mutex<FifoState>,
}

#[derive(Default)]
struct FifoState {
    sent: u64,
    receipts: u64,
    /// In send order, each with when it is visible again once received.
    messages: Vec<(ReceivedJob, Option<tokio::time::Instant>)>,
    parked: Vec<ReceivedJob>,
}

impl MemoryFifo {
    /// A queue whose received messages stay hidden for `visibility_timeout`,
    /// with a dead-letter queue to park in.
    pub fn new(visibility_timeout: std::time::Duration) -> Self {
        Self {
            visibility_timeout,
            dead_letter_queue: true,
            state: Mutex::default(),
        }
    }

    /// The same without a dead-letter queue: parking is refused.
    pub fn without_dead_letter_queue(mut self) -> Self {
        self.dead_letter_queue = false;
        self
    }

    /// Sends `body` in `group`; its message id.
    pub fn send(&self, group: &str, body: &str) -> String {
        let mut state = self.state.lock().unwrap();
        state.sent += 1;
        let message_id = format!("m{}", state.sent);
        let job = ReceivedJob {
            message_id: message_id.clone(),
            receipt_handle: None,
            group_id: group.to_owned(),
            body: body.to_owned(),
            receive_count: 0,
        };
        state.messages.push((job, None));
        message_id
    }

    /// ReceiveMessage: up to `max` visible messages in send order, none of a
    /// group that has one hidden; each is hidden for the visibility timeout.
    pub fn receive(&self, max: usize) -> Vec<ReceivedJob> {
        let now = tokio::time::Instant::now();
        let mut state = self.state.lock().unwrap();
        let held: std::collections::HashSet<String> = state
            .messages
            .iter()
            .filter(|(_, visible_at)| visible_at.is_some_and(|at| at > now))
            .map(|(job, _)| job.group_id.clone())
            .collect();
        let mut receipts = state.receipts;
        let received: Vec<ReceivedJob> = state
            .messages
            .iter_mut()
            .filter(|(job, _)| !held.contains(&job.group_id))
            .take(max)
            .map(|(job, visible_at)| {
                receipts += 1;
                job.receive_count += 1;
                job.receipt_handle = Some(format!("receipt-{receipts}"));
                *visible_at = Some(now + self.visibility_timeout);
                job.clone()
            })
            .collect();
        state.receipts = receipts;
        received
    }

    /// DeleteMessage: true when `receipt` was the message's latest.
    pub fn delete(&self, receipt: &str) -> bool {
        let mut state = self.state.lock().unwrap();
        let before = state.messages.len();
        state
            .messages
            .retain(|(job, _)| job.receipt_handle.as_deref() != Some(receipt));
        state.messages.len() != before
    }

    /// How long until `message_id` is visible again (zero: it is); `None`
    /// when it is no longer on the queue (deleted or parked).
    pub fn hidden_for(&self, message_id: &str) -> Option<std::time::Duration> {
        let now = tokio::time::Instant::now();
        let state = self.state.lock().unwrap();
        let (_, visible_at) = state
            .messages
            .iter()
            .find(|(job, _)| job.message_id == message_id)?;
        Some(visible_at.map_or(std::time::Duration::ZERO, |at| {
            at.saturating_duration_since(now)
        }))
    }

    /// The dead-letter queue's messages, in the order they were parked.
    pub fn parked(&self) -> Vec<ReceivedJob> {
        self.state.lock().unwrap().parked.clone()
    }

    /// Messages on the queue, hidden or not (the dead-letter queue aside).
    pub fn len(&self) -> usize {
        self.state.lock().unwrap().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl InFlightJobs for MemoryFifo {
    async fn retry_after(
        &self,
        job: &ReceivedJob,
        wait: std::time::Duration,
    ) -> Result<(), DependencyError> {
        let refused = |why| Err(DependencyError::new("sqs", "ChangeMessageVisibility", why));
        if wait > MAX_VISIBILITY_TIMEOUT {
            return refused("more than 12 hours");
        }
        let now = tokio::time::Instant::now();
        let mut state = self.state.lock().unwrap();
        let in_flight = state.messages.iter_mut().find(|(held, visible_at)| {
            job.receipt_handle.is_some()
                && held.receipt_handle == job.receipt_handle
                && visible_at.is_some_and(|at| at > now)
        });
        match in_flight {
            Some((_, visible_at)) => {
                *visible_at = Some(now + wait);
                Ok(())
            }
            None => refused("not in flight under this receipt handle"),
        }
    }

    async fn park(&self, job: &ReceivedJob) -> Result<(), ParkError> {
        if !self.dead_letter_queue {
            return Err(ParkError::NoDeadLetterQueue);
        }
        let mut state = self.state.lock().unwrap();
        state.parked.push(job.clone());
        if job.receipt_handle.is_some() {
            state
                .messages
                .retain(|(held, _)| held.receipt_handle != job.receipt_handle);
        }
        Ok(())
    }
}

/// Cursors in memory.
#[derive(Default)]
pub struct MemorySyncState {
    pub cursors: Mutex<HashMap<String, crate::sync_state::Cursor>>,
}

#[async_trait]
impl crate::sync_state::SyncState for MemorySyncState {
    async fn load(
        &self,
        instance: &domain::ids::InstanceName,
        pull: &str,
    ) -> Result<crate::sync_state::Cursor, DependencyError> {
        Ok(self
            .cursors
            .lock()
            .unwrap()
            .get(&format!("{instance}:{pull}"))
            .cloned()
            .unwrap_or_default())
    }

    async fn save(
        &self,
        instance: &domain::ids::InstanceName,
        pull: &str,
        cursor: &crate::sync_state::Cursor,
    ) -> Result<(), DependencyError> {
        self.cursors
            .lock()
            .unwrap()
            .insert(format!("{instance}:{pull}"), cursor.clone());
        Ok(())
    }
}

/// The hourly allowance of on-demand pulls in memory: `per_hour` per
/// instance and UTC hour, taken atomically (under one lock).
pub struct MemoryAllowance {
    pub per_hour: u64,
    /// `{instance}:{hour}` -> pulls taken.
    pub taken: Mutex<HashMap<String, u64>>,
}

impl MemoryAllowance {
    pub fn new(per_hour: u64) -> Self {
        Self {
            per_hour,
            taken: Mutex::default(),
        }
    }
}

#[async_trait]
impl crate::sync_state::OnDemandAllowance for MemoryAllowance {
    async fn take_on_demand_pull(
        &self,
        instance: &domain::ids::InstanceName,
        now: time::OffsetDateTime,
    ) -> Result<bool, DependencyError> {
        let hour = crate::sync_state::on_demand_key(instance, now);
        let mut taken = self.taken.lock().unwrap();
        let used = taken.entry(hour).or_default();
        if *used >= self.per_hour {
            return Ok(false);
        }
        *used += 1;
        Ok(true)
    }
}

/// A budget that never runs out, counting what was spent.
#[derive(Default)]
pub struct UnlimitedBudget {
    pub spent: std::sync::atomic::AtomicU64,
}

#[async_trait]
impl crate::sync_state::CallBudget for UnlimitedBudget {
    async fn spend_one_within(
        &self,
        _instance: &domain::ids::InstanceName,
        limit: u64,
    ) -> Result<crate::sync_state::BudgetUse, crate::sync_state::BudgetError> {
        let used = self.spent.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(crate::sync_state::BudgetUse { used, limit })
    }

    fn limit(&self) -> u64 {
        u64::MAX
    }

    async fn spent_today(
        &self,
        _instance: &domain::ids::InstanceName,
    ) -> Result<u64, DependencyError> {
        Ok(self.spent.load(Ordering::SeqCst))
    }
}

/// Echo and create marks in memory.
#[derive(Default)]
pub struct MemoryEchoes {
    pub marks: Mutex<std::collections::HashSet<(String, i64)>>,
    pub creates: Mutex<std::collections::HashSet<String>>,
}

#[async_trait]
impl crate::sync_state::EchoLog for MemoryEchoes {
    async fn record_echo(&self, entity: &EntityKey, version: i64) -> Result<(), DependencyError> {
        self.marks
            .lock()
            .unwrap()
            .insert((entity.to_string(), version));
        Ok(())
    }

    async fn is_echo(&self, entity: &EntityKey, version: i64) -> Result<bool, DependencyError> {
        Ok(self
            .marks
            .lock()
            .unwrap()
            .contains(&(entity.to_string(), version)))
    }

    async fn record_create(&self, attempt: &str) -> Result<(), DependencyError> {
        self.creates.lock().unwrap().insert(attempt.to_owned());
        Ok(())
    }

    async fn created_for(&self, attempt: &str) -> Result<bool, DependencyError> {
        Ok(self.creates.lock().unwrap().contains(attempt))
    }
}

/// An entities table where another writer gets in first, once: before the
/// first upsert it lands, the same change with `rival_state` is written
/// (the compare-and-swap of [`crate::store::document`] must edit again on
/// it, not lose it).
pub struct RacedEntities {
    pub inner: MemoryEntities,
    rival_state: String,
    raced: AtomicBool,
}

impl RacedEntities {
    pub fn new(rival_state: &str) -> Self {
        Self {
            inner: MemoryEntities::default(),
            rival_state: rival_state.to_owned(),
            raced: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl EntityStore for RacedEntities {
    async fn upsert(&self, change: &EntityUpsert) -> Result<Upserted, DependencyError> {
        if !self.raced.swap(true, Ordering::SeqCst) {
            let mut theirs = change.clone();
            theirs.state_json = self.rival_state.clone();
            theirs.state_sha256 = domain::idempotency::sha256_hex(theirs.state_json.as_bytes());
            self.inner.upsert(&theirs).await?;
        }
        self.inner.upsert(change).await
    }

    async fn get(&self, key: &EntityKey) -> Result<Option<StoredEntity>, DependencyError> {
        EntityStore::get(&self.inner, key).await
    }

    async fn mark_delivered(
        &self,
        key: &EntityKey,
        revision: u64,
    ) -> Result<bool, DependencyError> {
        self.inner.mark_delivered(key, revision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const VISIBILITY: Duration = Duration::from_secs(360);

    #[tokio::test(start_paused = true)]
    async fn a_received_message_not_deleted_comes_back_after_its_visibility_timeout_and_holds_its_group_meanwhile(
    ) {
        let fifo = MemoryFifo::new(VISIBILITY);
        let first = fifo.send("a", "1");
        fifo.send("a", "2");
        fifo.send("b", "3");
        let received = fifo.receive(1);
        assert_eq!(received[0].message_id, first);
        let others: Vec<String> = fifo.receive(10).into_iter().map(|m| m.body).collect();
        assert_eq!(others, ["3"], "a's second waits behind its first");
        tokio::time::advance(VISIBILITY).await;
        let again = fifo.receive(1);
        assert_eq!(
            (again[0].message_id.as_str(), again[0].receive_count),
            (first.as_str(), 2)
        );
        assert!(
            !fifo.delete(received[0].receipt_handle.as_deref().unwrap()),
            "a stale receipt"
        );
        assert!(fifo.delete(again[0].receipt_handle.as_deref().unwrap()));
        assert_eq!(fifo.receive(10)[0].body, "2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_is_put_off_by_at_most_twelve_hours_and_only_under_its_latest_receipt() {
        let fifo = MemoryFifo::new(VISIBILITY);
        let id = fifo.send("a", "1");
        let received = fifo.receive(1).remove(0);
        assert!(fifo
            .retry_after(&received, MAX_VISIBILITY_TIMEOUT + Duration::from_secs(1))
            .await
            .is_err());
        fifo.retry_after(&received, MAX_VISIBILITY_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(fifo.hidden_for(&id), Some(MAX_VISIBILITY_TIMEOUT));
        fifo.retry_after(&received, Duration::ZERO).await.unwrap();
        assert_eq!(fifo.hidden_for(&id), Some(Duration::ZERO));
        let again = fifo.receive(1).remove(0);
        assert!(
            fifo.retry_after(&received, Duration::ZERO).await.is_err(),
            "stale"
        );
        assert!(fifo
            .retry_after(&again, Duration::from_secs(30))
            .await
            .is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_message_leaves_the_queue_for_the_dead_letter_queue_and_without_one_stays() {
        let fifo = MemoryFifo::new(VISIBILITY);
        fifo.send("a", "poison");
        let received = fifo.receive(1).remove(0);
        fifo.park(&received).await.unwrap();
        assert!(fifo.is_empty());
        assert_eq!(fifo.parked(), [received]);

        let fifo = MemoryFifo::new(VISIBILITY).without_dead_letter_queue();
        fifo.send("a", "poison");
        let received = fifo.receive(1).remove(0);
        assert!(matches!(
            fifo.park(&received).await,
            Err(ParkError::NoDeadLetterQueue)
        ));
        assert_eq!(fifo.len(), 1);
    }
}
