//! DynamoDB: the events table with its stream, the entities table and the
//! sync-state table. Conditional writes are decided by `ports::fakes`
//! (which decides upserts with `ports::store::decide_upsert`, as the
//! DynamoDB adapter does); this layer adds what DynamoDB adds: latency,
//! throttling, writes that land while their answer is lost, and the
//! events table's stream, where every write's new image is appended to a
//! shard chosen by its key's hash, in order per shard.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use domain::error::DependencyError;
use domain::ids::{EntityKey, EventKey, InstanceName};
use ports::fakes::{MemoryEntities, MemoryEvents, MemorySyncState};
use ports::store::{
    EntityStore, EntityUpsert, EventRecord, EventStatus, EventStore, Put, StoredEntity, Upserted,
};
use ports::sync_state::{Cursor, SyncState};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::faults::{Faults, Service};

const DYNAMODB: &str = "dynamodb";

/// One record of a shard: a write's new image, as the stream holds it.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    /// Increasing across the table, as DynamoDB's are (digits, fixed width).
    pub sequence_number: String,
    pub event_key: String,
    pub written_at: Instant,
    pub new_image: serde_dynamo::Item,
}

/// The events table's stream: shards of new images.
pub struct Stream {
    shards: Mutex<Vec<Vec<StreamEntry>>>,
    /// Images taken from the table so far.
    captured: Mutex<usize>,
    next_sequence: Mutex<u64>,
    /// Wakes the shard pollers when a record is appended.
    pub appended: Notify,
}

/// FNV-1a: a stable hash (std's is seeded per process).
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Stream {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: Mutex::new(vec![Vec::new(); shards.max(1)]),
            captured: Mutex::new(0),
            next_sequence: Mutex::new(0),
            appended: Notify::new(),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.lock().unwrap().len()
    }

    /// Appends the table's new images not yet in the stream.
    fn capture(&self, table: &MemoryEvents) {
        let images = table.stream.lock().unwrap();
        let mut captured = self.captured.lock().unwrap();
        let mut shards = self.shards.lock().unwrap();
        let mut next = self.next_sequence.lock().unwrap();
        for record in &images[*captured..] {
            *next += 1;
            let shard = (stable_hash(record.event_key.as_str()) % shards.len() as u64) as usize;
            shards[shard].push(StreamEntry {
                sequence_number: format!("{:021}", *next),
                event_key: record.event_key.to_string(),
                written_at: Instant::now(),
                new_image: serde_dynamo::to_item(record)
                    .expect("an event record always makes an item"),
            });
        }
        *captured = images.len();
        drop((images, captured, shards, next));
        self.appended.notify_waiters();
    }

    /// How many records `shard` holds.
    pub fn len(&self, shard: usize) -> usize {
        self.shards.lock().unwrap()[shard].len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.lock().unwrap().iter().all(Vec::is_empty)
    }

    /// Records `range` of `shard`.
    pub fn read(&self, shard: usize, range: std::ops::Range<usize>) -> Vec<StreamEntry> {
        self.shards.lock().unwrap()[shard][range].to_vec()
    }
}

/// The events table.
pub struct SimEvents {
    table: MemoryEvents,
    pub stream: Arc<Stream>,
    faults: Arc<Faults>,
}

impl SimEvents {
    pub fn new(stream: Arc<Stream>, faults: Arc<Faults>) -> Self {
        Self {
            table: MemoryEvents::default(),
            stream,
            faults,
        }
    }

    /// Every archived record, in key order (for the checks).
    pub fn records(&self) -> Vec<EventRecord> {
        self.table.all()
    }
}

#[async_trait]
impl EventStore for SimEvents {
    async fn put_new(&self, record: &EventRecord) -> Result<Put, DependencyError> {
        let put = self
            .faults
            .call(Service::EventsTable, "PutItem", async {
                let put = self.table.put_new(record).await;
                self.stream.capture(&self.table);
                put
            })
            .await
            .map_err(|f| f.dependency(DYNAMODB, "PutItem"))??;
        self.faults.note(format!(
            "events PutItem {}: {}",
            record.event_key,
            match &put {
                Put::New => "stored",
                Put::Exists(_) => "refused, the key exists",
            }
        ));
        Ok(put)
    }

    async fn get(&self, key: &EventKey) -> Result<Option<EventRecord>, DependencyError> {
        self.faults
            .call(Service::EventsTable, "GetItem", self.table.get(key))
            .await
            .map_err(|f| f.dependency(DYNAMODB, "GetItem"))?
    }

    async fn mark_for_replay(
        &self,
        key: &EventKey,
        from: EventStatus,
        at_micros: i64,
    ) -> Result<bool, DependencyError> {
        self.faults
            .call(Service::EventsTable, "UpdateItem", async {
                let marked = self.table.mark_for_replay(key, from, at_micros).await;
                self.stream.capture(&self.table);
                marked
            })
            .await
            .map_err(|f| f.dependency(DYNAMODB, "UpdateItem"))?
    }
}

/// The entities table.
pub struct SimEntities {
    pub table: MemoryEntities,
    faults: Arc<Faults>,
}

impl SimEntities {
    pub fn new(faults: Arc<Faults>) -> Self {
        Self {
            table: MemoryEntities::default(),
            faults,
        }
    }
}

/// A rank as the trace shows it: version and the tie-breaker's start.
fn short_rank(rank: &ports::store::Rank) -> String {
    format!(
        "{}/{}",
        rank.version,
        &rank.tiebreak[..rank.tiebreak.len().min(8)]
    )
}

#[async_trait]
impl EntityStore for SimEntities {
    async fn upsert(&self, change: &EntityUpsert) -> Result<Upserted, DependencyError> {
        let upserted = self
            .faults
            .call(
                Service::EntitiesTable,
                "UpdateItem",
                self.table.upsert(change),
            )
            .await
            .map_err(|f| f.dependency(DYNAMODB, "UpdateItem"))??;
        self.faults.note(format!(
            "entities upsert {} rank {}: {upserted:?}",
            change.key,
            short_rank(&change.rank)
        ));
        Ok(upserted)
    }

    async fn get(&self, key: &EntityKey) -> Result<Option<StoredEntity>, DependencyError> {
        self.faults
            .call(
                Service::EntitiesTable,
                "GetItem",
                EntityStore::get(&self.table, key),
            )
            .await
            .map_err(|f| f.dependency(DYNAMODB, "GetItem"))?
    }

    async fn mark_delivered(
        &self,
        key: &EntityKey,
        revision: u64,
    ) -> Result<bool, DependencyError> {
        let marked = self
            .faults
            .call(
                Service::EntitiesTable,
                "UpdateItem",
                self.table.mark_delivered(key, revision),
            )
            .await
            .map_err(|f| f.dependency(DYNAMODB, "UpdateItem"))??;
        self.faults.note(format!(
            "entities mark delivered {key} revision {revision}: {}",
            if marked {
                "marked"
            } else {
                "a newer one was already"
            }
        ));
        Ok(marked)
    }
}

/// The sync-state table (pull cursors).
pub struct SimSyncState {
    table: MemorySyncState,
    faults: Arc<Faults>,
}

impl SimSyncState {
    pub fn new(faults: Arc<Faults>) -> Self {
        Self {
            table: MemorySyncState::default(),
            faults,
        }
    }
}

#[async_trait]
impl SyncState for SimSyncState {
    async fn load(&self, instance: &InstanceName, pull: &str) -> Result<Cursor, DependencyError> {
        self.faults
            .call(
                Service::SyncStateTable,
                "GetItem",
                self.table.load(instance, pull),
            )
            .await
            .map_err(|f| f.dependency(DYNAMODB, "GetItem"))?
    }

    async fn save(
        &self,
        instance: &InstanceName,
        pull: &str,
        cursor: &Cursor,
    ) -> Result<(), DependencyError> {
        self.faults
            .call(
                Service::SyncStateTable,
                "PutItem",
                self.table.save(instance, pull, cursor),
            )
            .await
            .map_err(|f| f.dependency(DYNAMODB, "PutItem"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::tests::faults;
    use crate::faults::{Profile, Rates};
    use ports::store::{BodyEncoding, Origin};

    fn record(key: &str) -> EventRecord {
        EventRecord {
            event_key: EventKey::parse(key).unwrap(),
            source: "revel".into(),
            instance: InstanceName::parse("alpha").unwrap(),
            event_type: "customer.updated".into(),
            status: EventStatus::Received,
            received_at_micros: 1,
            body: b"{}".to_vec(),
            body_encoding: BodyEncoding::Identity,
            body_bytes: 2,
            body_sha256: "aa".into(),
            headers: Default::default(),
            quarantine_reason: None,
            entity_key: None,
            conflict_of: None,
            request_id: String::new(),
            origin: Origin::Webhook,
            expires_at: 0,
            replayed_at: None,
            time_zone: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_new_record_goes_to_the_shard_of_its_keys_hash_in_write_order_and_a_refused_put_to_none(
    ) {
        let stream = Arc::new(Stream::new(3));
        let events = SimEvents::new(Arc::clone(&stream), faults(Profile::calm()));
        let keys: Vec<String> = (0..12).map(|n| format!("revel:alpha:x:{n}")).collect();
        for key in &keys {
            events.put_new(&record(key)).await.unwrap();
        }
        assert!(matches!(
            events.put_new(&record(&keys[0])).await.unwrap(),
            Put::Exists(_)
        ));
        let mut seen = 0;
        for shard in 0..3 {
            let entries = stream.read(shard, 0..stream.len(shard));
            for entry in &entries {
                assert_eq!(stable_hash(&entry.event_key) % 3, shard as u64);
            }
            let in_order: Vec<&str> = keys
                .iter()
                .filter(|k| stable_hash(k) % 3 == shard as u64)
                .map(String::as_str)
                .collect();
            let written: Vec<&str> = entries.iter().map(|e| e.event_key.as_str()).collect();
            assert_eq!(written, in_order);
            assert!(entries
                .windows(2)
                .all(|w| w[0].sequence_number < w[1].sequence_number));
            seen += entries.len();
        }
        assert_eq!(seen, keys.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_put_whose_answer_is_lost_is_stored_and_streamed_and_its_retry_finds_it() {
        let lossy = Rates {
            lost_answer: 1.0,
            ..Rates::default()
        };
        let stream = Arc::new(Stream::new(1));
        let events = SimEvents::new(
            Arc::clone(&stream),
            faults(Profile::only(Service::EventsTable, lossy)),
        );
        assert!(events.put_new(&record("revel:alpha:x:1")).await.is_err());
        assert_eq!(events.records().len(), 1);
        assert_eq!(stream.len(0), 1);
    }
}
