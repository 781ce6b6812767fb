//! The event source mapping between the events table's stream and the
//! processor (template.yaml's `EventsProcessorFunction` events): one batch
//! per shard at a time, in order; `ReportBatchItemFailures` (everything
//! before the reported sequence number is checkpointed, the batch is retried
//! from it); a crashed or timed-out invocation retries the whole batch, split
//! in two (`BisectBatchOnFunctionError`); `MaximumRetryAttempts` and
//! `MaximumRecordAgeInSeconds`, after which the batch goes to the on-failure
//! destination (an alarm watches it) and the shard moves on. Delivered at
//! least once: a successful batch is, now and then, handed over again.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use pipeline::process::Processor;
use tokio::time::Instant;

use crate::dynamo::{Stream, StreamEntry};
use crate::faults::{invoke, Ended, Faults};

/// `BatchSize` of the mapping.
pub const BATCH_SIZE: usize = 100;
/// `MaximumRetryAttempts`.
pub const MAX_RETRY_ATTEMPTS: u32 = 50;
/// `MaximumRecordAgeInSeconds`.
pub const MAX_RECORD_AGE: Duration = Duration::from_secs(21_600);
/// The processor's `Timeout`.
pub const PROCESSOR_TIMEOUT: Duration = Duration::from_secs(60);
/// `MaximumBatchingWindowInSeconds`.
const BATCHING_WINDOW: Duration = Duration::from_secs(1);

/// A batch given up on: what the on-failure destination is told.
#[derive(Debug, Clone)]
pub struct ParkedBatch {
    pub shard: usize,
    pub first_sequence: String,
    pub last_sequence: String,
    pub event_keys: Vec<String>,
    pub written_at: Instant,
    pub parked_at: Instant,
    pub reason: String,
}

/// Where one shard stands.
#[derive(Debug, Default)]
struct ShardProgress {
    /// Records before this index are done.
    checkpoint: usize,
    /// Batches to hand over before reading on: the current one first (a
    /// bisected batch is two).
    pending: VecDeque<Range<usize>>,
    /// Failed attempts of the current batch.
    attempts: u32,
}

/// The mapping: the stream, the processor, and the on-failure destination.
pub struct Mapping {
    stream: Arc<Stream>,
    processor: Arc<Processor>,
    faults: Arc<Faults>,
    progress: Mutex<Vec<ShardProgress>>,
    parked: Mutex<Vec<ParkedBatch>>,
}

/// What happened to one batch.
enum Outcome {
    Done,
    /// Records from this index (in the batch) on must be retried.
    FailedFrom(usize),
    /// The invocation failed as a whole.
    FunctionError(&'static str),
}

impl Mapping {
    pub fn new(stream: Arc<Stream>, processor: Arc<Processor>, faults: Arc<Faults>) -> Self {
        let shards = stream.shard_count();
        Self {
            stream,
            processor,
            faults,
            progress: Mutex::new((0..shards).map(|_| ShardProgress::default()).collect()),
            parked: Mutex::default(),
        }
    }

    /// Every shard read to its end.
    pub fn is_caught_up(&self) -> bool {
        let progress = self.progress.lock().unwrap();
        progress
            .iter()
            .enumerate()
            .all(|(shard, p)| p.pending.is_empty() && p.checkpoint >= self.stream.len(shard))
    }

    /// What the on-failure destination received.
    pub fn parked(&self) -> Vec<ParkedBatch> {
        self.parked.lock().unwrap().clone()
    }

    /// Records not yet processed, per shard (for a stuck report).
    pub fn behind(&self) -> BTreeMap<usize, usize> {
        let progress = self.progress.lock().unwrap();
        progress
            .iter()
            .enumerate()
            .map(|(shard, p)| (shard, self.stream.len(shard).saturating_sub(p.checkpoint)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The next batch of `shard`, if it has records to hand over.
    fn next_batch(&self, shard: usize) -> Option<Range<usize>> {
        let mut progress = self.progress.lock().unwrap();
        let p = &mut progress[shard];
        if let Some(range) = p.pending.front() {
            return Some(range.clone());
        }
        let len = self.stream.len(shard);
        if p.checkpoint >= len {
            return None;
        }
        let range = p.checkpoint..len.min(p.checkpoint + BATCH_SIZE);
        p.pending.push_back(range.clone());
        Some(range)
    }

    /// Reads one shard for as long as the simulation runs.
    pub async fn poll_shard(self: Arc<Self>, shard: usize) {
        let name = format!("processor@shard{shard}");
        loop {
            let Some(range) = self.next_batch(shard) else {
                let _ =
                    tokio::time::timeout(Duration::from_secs(60), self.stream.appended.notified())
                        .await;
                // Records written together arrive together.
                tokio::time::sleep(BATCHING_WINDOW).await;
                continue;
            };
            let entries = self.stream.read(shard, range.clone());
            self.faults.trace().note(
                name.clone(),
                format!(
                    "invoked with {} record(s) {}..{}",
                    entries.len(),
                    short_sequence(&entries[0].sequence_number),
                    short_sequence(&entries[entries.len() - 1].sequence_number)
                ),
            );
            let outcome = self.hand_over(&name, &entries).await;
            let retry_after = self.settle(&name, shard, range, &entries, outcome);
            if let Some(wait) = retry_after {
                tokio::time::sleep(wait).await;
            }
        }
    }

    async fn hand_over(&self, name: &str, entries: &[StreamEntry]) -> Outcome {
        let ended = invoke(
            name.to_owned(),
            PROCESSOR_TIMEOUT,
            pipeline::process::stream::handle_batch(&self.processor, lambda_event(entries)),
        )
        .await;
        match ended {
            Ended::Completed(response) => match response.batch_item_failures.first() {
                None => Outcome::Done,
                Some(failure) => {
                    let reported = failure.item_identifier.as_deref();
                    match entries
                        .iter()
                        .position(|e| Some(e.sequence_number.as_str()) == reported)
                    {
                        Some(at) => Outcome::FailedFrom(at),
                        // Not one of the batch's: Lambda retries all of it.
                        None => Outcome::FailedFrom(0),
                    }
                }
            },
            Ended::Crashed => Outcome::FunctionError("crashed"),
            Ended::TimedOut => Outcome::FunctionError("timed out"),
        }
    }

    /// Moves the shard on after a batch; how long to wait before the retry.
    fn settle(
        &self,
        name: &str,
        shard: usize,
        range: Range<usize>,
        entries: &[StreamEntry],
        outcome: Outcome,
    ) -> Option<Duration> {
        let trace = self.faults.trace();
        let mut progress = self.progress.lock().unwrap();
        let p = &mut progress[shard];
        match outcome {
            Outcome::Done => {
                if self.faults.chance(self.faults.profile().stream_redelivery) {
                    trace.note(
                        name,
                        "FAULT the checkpoint was not saved: the batch is handed over again",
                    );
                    return None;
                }
                p.pending.pop_front();
                p.checkpoint = p.checkpoint.max(range.end);
                p.attempts = 0;
                trace.note(name, "batch done; checkpoint saved");
                return None;
            }
            Outcome::FailedFrom(at) => {
                let from = range.start + at;
                if from > p.checkpoint {
                    // Everything before the reported record is checkpointed.
                    p.attempts = 0;
                    p.checkpoint = from;
                }
                p.attempts += 1;
                p.pending.pop_front();
                p.pending.push_front(from..range.end);
                trace.note(
                    name,
                    format!(
                        "reported {} failed: retried from it (attempt {})",
                        short_sequence(&entries[at].sequence_number),
                        p.attempts
                    ),
                );
            }
            Outcome::FunctionError(how) => {
                p.attempts += 1;
                p.pending.pop_front();
                if range.len() > 1 {
                    let middle = range.start + range.len() / 2;
                    p.pending.push_front(middle..range.end);
                    p.pending.push_front(range.start..middle);
                } else {
                    p.pending.push_front(range.clone());
                }
                trace.note(
                    name,
                    format!(
                        "invocation {how}: the batch is retried, bisected (attempt {})",
                        p.attempts
                    ),
                );
            }
        }
        let current = p
            .pending
            .front()
            .cloned()
            .expect("a failed batch is pending");
        let oldest = self.stream.read(shard, current.start..current.start + 1)[0].clone();
        let too_old = Instant::now() - oldest.written_at > MAX_RECORD_AGE;
        if p.attempts > MAX_RETRY_ATTEMPTS || too_old {
            let records = self.stream.read(shard, current.clone());
            let batch = ParkedBatch {
                shard,
                first_sequence: records[0].sequence_number.clone(),
                last_sequence: records[records.len() - 1].sequence_number.clone(),
                event_keys: records.iter().map(|r| r.event_key.clone()).collect(),
                written_at: oldest.written_at,
                parked_at: Instant::now(),
                reason: if too_old {
                    "MaximumRecordAgeInSeconds".into()
                } else {
                    "MaximumRetryAttempts".into()
                },
            };
            trace.note(
                name,
                format!(
                    "PARKED on the on-failure destination after {} attempts ({}): {}",
                    p.attempts,
                    batch.reason,
                    batch.event_keys.join(" ")
                ),
            );
            self.parked.lock().unwrap().push(batch);
            p.pending.pop_front();
            p.checkpoint = p.checkpoint.max(current.end);
            p.attempts = 0;
            return None;
        }
        Some(retry_delay(p.attempts))
    }
}

/// Lambda retries a failing shard batch with a growing delay.
fn retry_delay(attempts: u32) -> Duration {
    Duration::from_millis(500u64 << attempts.min(7).saturating_sub(1)).min(Duration::from_secs(60))
}

/// The last digits of a sequence number, for the trace.
fn short_sequence(sequence: &str) -> String {
    format!("#{}", sequence.trim_start_matches('0'))
}

/// The Lambda event the mapping sends for `entries`.
pub fn lambda_event(entries: &[StreamEntry]) -> Event {
    let mut event = Event::default();
    for entry in entries {
        let mut record = EventRecord::default();
        record.event_id = format!("sim-{}", entry.sequence_number);
        record.event_name = "INSERT".into();
        record.event_source = Some("aws:dynamodb".into());
        record.aws_region = "eu-west-1".into();
        record.table_name = Some("events".into());
        record.change.sequence_number = Some(entry.sequence_number.clone());
        record.change.new_image = entry.new_image.clone();
        record.change.keys = serde_dynamo::to_item(BTreeMap::from([(
            "event_key".to_owned(),
            entry.event_key.clone(),
        )]))
        .expect("a key makes an item");
        event.records.push(record);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamo::SimEvents;
    use crate::faults::tests::faults;
    use crate::faults::Profile;
    use async_trait::async_trait;
    use domain::clock::TokioClock;
    use domain::error::DependencyError;
    use domain::ids::{EntityKey, InstanceName};
    use pipeline::receive::Receiver;
    use ports::fakes::{FixedSecrets, MemoryEntities, MemoryQueue};
    use ports::secrets::SecretCache;
    use ports::store::{EntityStore, EntityUpsert, StoredEntity, Upserted};
    use vendors::revel::{Revel, RevelEventType};

    /// What a test entity store does to upserts of one entity.
    #[derive(Clone, Copy)]
    enum Misbehave {
        Fail,
        Crash,
    }

    /// Entities that fail (or crash the invocation) on the first `times`
    /// upserts of one entity, and count every upsert.
    struct Troubled {
        table: MemoryEntities,
        faults: Arc<Faults>,
        target: String,
        how: Misbehave,
        times: Mutex<u32>,
        upserts: Mutex<BTreeMap<String, u32>>,
    }

    #[async_trait]
    impl EntityStore for Troubled {
        async fn upsert(&self, change: &EntityUpsert) -> Result<Upserted, DependencyError> {
            *self
                .upserts
                .lock()
                .unwrap()
                .entry(change.entity_id.clone())
                .or_default() += 1;
            let misbehave = change.entity_id == self.target && {
                let mut times = self.times.lock().unwrap();
                let left = *times > 0;
                *times = times.saturating_sub(1);
                left
            };
            match (misbehave, self.how) {
                (true, Misbehave::Fail) => {
                    Err(DependencyError::new("dynamodb", "UpdateItem", "test"))
                }
                (true, Misbehave::Crash) => self.faults.crash("test upsert".into()).await,
                (false, _) => self.table.upsert(change).await,
            }
        }

        async fn get(&self, key: &EntityKey) -> Result<Option<StoredEntity>, DependencyError> {
            EntityStore::get(&self.table, key).await
        }

        async fn mark_delivered(
            &self,
            key: &EntityKey,
            revision: u64,
        ) -> Result<bool, DependencyError> {
            self.table.mark_delivered(key, revision).await
        }
    }

    /// Customers c0..c{n} stored in one shard, and a mapping over a
    /// processor whose entities misbehave for `target`.
    async fn shard_of_customers(
        n: usize,
        target: &str,
        how: Misbehave,
        times: u32,
    ) -> (Arc<Mapping>, Arc<Troubled>) {
        let faults = faults(Profile::calm());
        let stream = Arc::new(Stream::new(1));
        let events = Arc::new(SimEvents::new(Arc::clone(&stream), Arc::clone(&faults)));
        let revel = Arc::new(Revel::new(SecretCache::new(
            FixedSecrets("{}".into()),
            Duration::from_secs(60),
        )));
        let receiver = Receiver::new(
            revel,
            Arc::new(RevelEventType::CustomerUpdated),
            events,
            pipeline::config::Settings::default(),
            Arc::new(TokioClock::starting_at(crate::traffic::START)),
        );
        let instance = InstanceName::parse("alpha").unwrap();
        for c in 0..n {
            let body = format!(r#"{{"uuid":"c{c}","updated_date":"2026-11-24T10:00:00"}}"#);
            receiver
                .receive_fetched(&instance, body.into_bytes(), format!("r{c}"))
                .await
                .unwrap();
        }
        let entities = Arc::new(Troubled {
            table: MemoryEntities::default(),
            faults: Arc::clone(&faults),
            target: target.to_owned(),
            how,
            times: Mutex::new(times),
            upserts: Mutex::default(),
        });
        let processor = Arc::new(Processor::new(
            Arc::clone(&entities) as Arc<dyn EntityStore>,
            Arc::new(MemoryQueue::default()),
        ));
        (Arc::new(Mapping::new(stream, processor, faults)), entities)
    }

    /// Runs the shard's poller until it has read everything.
    async fn drain(mapping: &Arc<Mapping>) {
        let poller = tokio::spawn(Arc::clone(mapping).poll_shard(0));
        while !mapping.is_caught_up() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        poller.abort();
    }

    fn batch_sizes(mapping: &Mapping) -> Vec<usize> {
        mapping
            .faults
            .trace()
            .steps()
            .iter()
            .filter_map(|s| s.what.strip_prefix("invoked with "))
            .map(|w| w.split(' ').next().unwrap().parse().unwrap())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_reported_failure_checkpoints_what_came_before_and_retries_from_it() {
        let (mapping, entities) = shard_of_customers(4, "c2", Misbehave::Fail, 2).await;
        drain(&mapping).await;
        let upserts = entities.upserts.lock().unwrap().clone();
        assert_eq!(
            upserts,
            BTreeMap::from([
                ("c0".to_owned(), 1),
                ("c1".to_owned(), 1),
                ("c2".to_owned(), 3),
                ("c3".to_owned(), 1),
            ]),
            "records before the failed one are not handed over again"
        );
        assert_eq!(batch_sizes(&mapping), [4, 2, 2]);
        assert!(mapping.parked().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_crashed_invocation_retries_its_batch_in_halves() {
        let (mapping, entities) = shard_of_customers(4, "c3", Misbehave::Crash, 2).await;
        drain(&mapping).await;
        // [c0..c3] crashes at c3; [c0 c1] passes; [c2 c3] crashes at c3;
        // [c2] passes; [c3] passes.
        assert_eq!(batch_sizes(&mapping), [4, 2, 2, 1, 1]);
        assert_eq!(entities.upserts.lock().unwrap()["c3"], 3);
        assert_eq!(entities.upserts.lock().unwrap()["c0"], 2, "at least once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_failing_past_the_retry_attempts_goes_to_the_on_failure_destination_and_the_shard_moves_on(
    ) {
        let (mapping, entities) = shard_of_customers(3, "c1", Misbehave::Fail, u32::MAX).await;
        drain(&mapping).await;
        let parked = mapping.parked();
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].reason, "MaximumRetryAttempts");
        assert_eq!(
            parked[0].event_keys.len(),
            2,
            "the failed record and the rest of its batch"
        );
        assert_eq!(
            entities.upserts.lock().unwrap()["c1"],
            MAX_RETRY_ATTEMPTS + 1
        );
    }
}
