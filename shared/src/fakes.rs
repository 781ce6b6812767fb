//! In-memory stand-ins for the store, queue and secret traits, for unit
//! tests. Each can be switched "down" to act like an unreachable service.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::DependencyError;
use crate::ids::{EntityKey, EventKey};
use crate::queue::{Job, JobQueue};
use crate::secrets::{SecretDocument, SecretSource};
use crate::store::{
    EntityStore, EntityUpsert, EventStatus, EventStore, Inserted, NewEvent, StoredEntity,
    StoredEvent, Upserted,
};

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

#[derive(Default)]
pub struct MemoryEvents {
    pub records: Mutex<HashMap<EventKey, (NewEvent, StoredEvent)>>,
    pub down: AtomicBool,
    pub puts: std::sync::atomic::AtomicUsize,
}

impl MemoryEvents {
    pub fn status(&self, key: &EventKey) -> Option<EventStatus> {
        self.records.lock().unwrap().get(key).map(|(_, s)| s.status)
    }

    pub fn len(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl EventStore for MemoryEvents {
    async fn insert_new(&self, event: &NewEvent) -> Result<Inserted, DependencyError> {
        down(&self.down, "events")?;
        self.puts.fetch_add(1, Ordering::SeqCst);
        let mut records = self.records.lock().unwrap();
        if let Some((_, existing)) = records.get(&event.key) {
            return Ok(Inserted::Exists(existing.clone()));
        }
        let stored = StoredEvent {
            status: event.status,
            received_at_micros: event.received_at_micros,
            lease_until: event.lease_until,
            quarantine_reason: event.quarantine_reason.map(str::to_owned),
        };
        records.insert(event.key.clone(), (event.clone(), stored));
        Ok(Inserted::New)
    }

    async fn get(&self, key: &EventKey) -> Result<Option<StoredEvent>, DependencyError> {
        down(&self.down, "events")?;
        Ok(self
            .records
            .lock()
            .unwrap()
            .get(key)
            .map(|(_, s)| s.clone()))
    }

    async fn claim(
        &self,
        key: &EventKey,
        now: i64,
        lease_until: i64,
    ) -> Result<bool, DependencyError> {
        down(&self.down, "events")?;
        let mut records = self.records.lock().unwrap();
        match records.get_mut(key) {
            Some((_, s)) if s.status == EventStatus::Processing && s.lease_until < now => {
                s.lease_until = lease_until;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn mark_done(&self, key: &EventKey) -> Result<(), DependencyError> {
        down(&self.down, "events")?;
        if let Some((_, s)) = self.records.lock().unwrap().get_mut(key) {
            s.status = EventStatus::Done;
            s.lease_until = 0;
        }
        Ok(())
    }

    async fn release(&self, key: &EventKey) -> Result<(), DependencyError> {
        down(&self.down, "events")?;
        if let Some((_, s)) = self.records.lock().unwrap().get_mut(key) {
            if s.status == EventStatus::Processing {
                s.lease_until = 0;
            }
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct MemoryEntities {
    pub entities: Mutex<HashMap<EntityKey, (EntityUpsert, u64)>>,
    pub delivered: Mutex<HashMap<EntityKey, i64>>,
    pub down: AtomicBool,
}

impl MemoryEntities {
    pub fn get(&self, key: &EntityKey) -> Option<(EntityUpsert, u64)> {
        self.entities.lock().unwrap().get(key).cloned()
    }
}

#[async_trait]
impl EntityStore for MemoryEntities {
    async fn upsert(&self, change: &EntityUpsert) -> Result<Upserted, DependencyError> {
        down(&self.down, "entities")?;
        let mut entities = self.entities.lock().unwrap();
        match entities.get_mut(&change.key) {
            Some((current, _)) if current.version >= change.version => Ok(Upserted::Stale),
            Some((current, revision)) => {
                *current = change.clone();
                *revision += 1;
                Ok(Upserted::Applied {
                    revision: *revision,
                })
            }
            None => {
                entities.insert(change.key.clone(), (change.clone(), 1));
                Ok(Upserted::Applied { revision: 1 })
            }
        }
    }

    async fn get(&self, key: &EntityKey) -> Result<Option<StoredEntity>, DependencyError> {
        down(&self.down, "entities")?;
        let delivered = self.delivered.lock().unwrap().get(key).copied();
        Ok(self
            .entities
            .lock()
            .unwrap()
            .get(key)
            .map(|(e, _)| StoredEntity {
                kind: e.kind.to_owned(),
                entity_id: e.entity_id.clone(),
                version: e.version,
                state_json: e.state_json.clone(),
                last_event_key: Some(e.event_key.to_string()),
                delivered_version: delivered,
            }))
    }

    async fn mark_delivered(&self, key: &EntityKey, version: i64) -> Result<bool, DependencyError> {
        down(&self.down, "entities")?;
        let mut delivered = self.delivered.lock().unwrap();
        match delivered.get(key) {
            Some(current) if *current >= version => Ok(false),
            _ => {
                delivered.insert(key.clone(), version);
                Ok(true)
            }
        }
    }
}

/// A FIFO queue with SQS's deduplication by id (without its 5-minute expiry).
#[derive(Default)]
pub struct MemoryQueue {
    pub jobs: Mutex<Vec<Job>>,
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
    async fn enqueue(&self, job: &Job) -> Result<(), DependencyError> {
        down(&self.down, "queue")?;
        let mut jobs = self.jobs.lock().unwrap();
        if !jobs
            .iter()
            .any(|j| j.deduplication_id == job.deduplication_id)
        {
            jobs.push(job.clone());
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
        instance: &crate::ids::InstanceName,
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
        instance: &crate::ids::InstanceName,
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

/// A budget that never runs out, counting what was spent.
#[derive(Default)]
pub struct UnlimitedBudget {
    pub spent: std::sync::atomic::AtomicU64,
}

#[async_trait]
impl crate::revel_api::CallBudget for UnlimitedBudget {
    async fn spend_one(
        &self,
        _instance: &crate::ids::InstanceName,
    ) -> Result<crate::revel_api::BudgetUse, crate::revel_api::BudgetError> {
        let used = self.spent.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(crate::revel_api::BudgetUse {
            used,
            limit: u64::MAX,
        })
    }
}

/// Echo markers in memory.
#[derive(Default)]
pub struct MemoryEchoes {
    pub marks: Mutex<std::collections::HashSet<(String, i64)>>,
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
}

/// The three in-memory stores together, and the [`Stores`](crate::ingest::Stores)
/// an `Ingestor` writes through.
#[derive(Default, Clone)]
pub struct MemoryStores {
    pub events: std::sync::Arc<MemoryEvents>,
    pub entities: std::sync::Arc<MemoryEntities>,
    pub queue: std::sync::Arc<MemoryQueue>,
}

impl MemoryStores {
    pub fn stores(&self) -> crate::ingest::Stores {
        crate::ingest::Stores {
            events: self.events.clone(),
            entities: self.entities.clone(),
            jobs: self.queue.clone(),
        }
    }
}
