//! The two tables: the events archive (each event stored once, with the
//! status of its processing) and the entities table (current state, newest
//! wins). Traits here, DynamoDB adapters in [`dynamodb`].

pub mod dynamodb;

use std::io::Write;

use async_trait::async_trait;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::error::DependencyError;
use crate::ids::{EntityKey, EventKey, InstanceName};

/// Bodies at least this large are archived gzip-compressed.
pub const COMPRESS_FROM_BYTES: usize = 2048;

/// Largest archived body (after compression) that fits a DynamoDB item
/// (400 KB) with room for the other attributes.
pub const MAX_ARCHIVED_BODY_BYTES: usize = 380_000;

/// Where an event is in its processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// Stored; its entity upsert and job may not be done yet.
    Processing,
    /// Stored, entity upserted, job enqueued.
    Done,
    /// Signed but not understood: kept for replay, nothing applied.
    Quarantined,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Done => "done",
            Self::Quarantined => "quarantined",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "processing" => Some(Self::Processing),
            "done" => Some(Self::Done),
            "quarantined" => Some(Self::Quarantined),
            _ => None,
        }
    }
}

/// The raw body as archived: exactly the bytes received, gzip-compressed
/// when large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedBody {
    pub bytes: Vec<u8>,
    pub gzip: bool,
    pub original_len: usize,
}

impl ArchivedBody {
    pub fn from_raw(raw: &[u8]) -> Self {
        if raw.len() < COMPRESS_FROM_BYTES {
            return Self {
                bytes: raw.to_vec(),
                gzip: false,
                original_len: raw.len(),
            };
        }
        let mut encoder = GzEncoder::new(Vec::with_capacity(raw.len() / 4), Compression::fast());
        encoder.write_all(raw).expect("writing to a Vec can't fail");
        let bytes = encoder.finish().expect("writing to a Vec can't fail");
        Self {
            bytes,
            gzip: true,
            original_len: raw.len(),
        }
    }

    /// The bytes as received.
    pub fn raw(&self) -> std::io::Result<Vec<u8>> {
        if !self.gzip {
            return Ok(self.bytes.clone());
        }
        let mut out = Vec::with_capacity(self.original_len);
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&self.bytes[..]), &mut out)?;
        Ok(out)
    }
}

/// How an event reached the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Webhook,
    /// Fetched from the sender's API by the end-of-day reconciliation,
    /// because its webhook never arrived.
    Reconciliation,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Reconciliation => "reconciliation",
        }
    }
}

/// An event to archive with a conditional put.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub key: EventKey,
    pub source: &'static str,
    pub instance: InstanceName,
    pub event_type: &'static str,
    pub status: EventStatus,
    pub received_at_micros: i64,
    pub body: ArchivedBody,
    pub body_sha256: String,
    pub headers: Vec<(String, String)>,
    pub quarantine_reason: Option<&'static str>,
    pub entity_key: Option<EntityKey>,
    pub request_id: String,
    pub origin: Origin,
    /// Unix seconds until which this delivery owns the processing.
    pub lease_until: i64,
    /// Unix seconds when DynamoDB TTL removes the record.
    pub expires_at: i64,
}

/// What the store knows of an event already archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub status: EventStatus,
    pub received_at_micros: i64,
    pub lease_until: i64,
    pub quarantine_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// The key was already there: this is a redelivery.
    Exists(StoredEvent),
}

/// The events archive.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores `event` unless its key exists; one write either way.
    async fn insert_new(&self, event: &NewEvent) -> Result<Inserted, DependencyError>;
    /// Reads an event's status (strongly consistent).
    async fn get(&self, key: &EventKey) -> Result<Option<StoredEvent>, DependencyError>;
    /// Takes over an unfinished event whose lease ran out before `now`.
    async fn claim(
        &self,
        key: &EventKey,
        now: i64,
        lease_until: i64,
    ) -> Result<bool, DependencyError>;
    /// Records that the entity upsert and the job are done.
    async fn mark_done(&self, key: &EventKey) -> Result<(), DependencyError>;
    /// Gives up the lease after a failure, so a redelivery can take over at once.
    async fn release(&self, key: &EventKey) -> Result<(), DependencyError>;
}

/// A newest-wins write of one entity's state.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityUpsert {
    pub key: EntityKey,
    pub source: &'static str,
    pub instance: InstanceName,
    pub kind: &'static str,
    pub entity_id: String,
    pub version: i64,
    pub state_json: String,
    pub event_key: EventKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// Written; `revision` counts the writes this entity has had.
    Applied { revision: u64 },
    /// The stored state is as new or newer; nothing was written.
    Stale,
}

/// An entity's current state, as the delivery worker reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntity {
    pub kind: String,
    pub entity_id: String,
    pub version: i64,
    pub state_json: String,
    pub last_event_key: Option<String>,
    /// The newest version delivered downstream, if any.
    pub delivered_version: Option<i64>,
}

/// Current state of entities.
#[async_trait]
pub trait EntityStore: Send + Sync {
    async fn upsert(&self, change: &EntityUpsert) -> Result<Upserted, DependencyError>;
    /// Reads an entity (strongly consistent).
    async fn get(&self, key: &EntityKey) -> Result<Option<StoredEntity>, DependencyError>;
    /// Records that `version` was delivered downstream, unless a newer one
    /// already was; `false` when it was.
    async fn mark_delivered(&self, key: &EntityKey, version: i64) -> Result<bool, DependencyError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_are_kept_as_is_and_large_ones_compressed_losslessly() {
        let small = ArchivedBody::from_raw(b"{\"ping\":\"pong\"}");
        assert!(!small.gzip);
        let large_raw = serde_json::to_vec(&vec!["same words again"; 500]).unwrap();
        let large = ArchivedBody::from_raw(&large_raw);
        assert!(large.gzip);
        assert!(large.bytes.len() < large_raw.len() / 4);
        assert_eq!(large.raw().unwrap(), large_raw);
    }
}
