//! The two tables: the events archive (each event stored once; its stream
//! drives everything after) and the entities table (current state, newest
//! wins). Traits here, the record format in [`record`]; the DynamoDB adapters
//! are `aws_adapters::dynamodb`.

pub mod document;
pub mod record;

use std::io::Write;

use async_trait::async_trait;
use flate2::write::GzEncoder;
use flate2::Compression;

use domain::error::DependencyError;
use domain::ids::{EntityKey, EventKey, InstanceName};
use domain::sources::EntityKind;

pub use record::{BodyEncoding, EventRecord, EventStatus, Origin};

/// Bodies at least this large are archived gzip-compressed.
pub const COMPRESS_FROM_BYTES: usize = 2048;

/// Entity states at least this large are kept gzip-compressed. Lower than
/// for bodies: an entity item carries about 400 bytes of rank, hashes and
/// keys beside its state, every write of it is charged per started KB, and
/// compressing costs the processor, not an answer (a customer's 1.9 KB state
/// makes a 3-unit item plain, a 2-unit one compressed).
pub const COMPRESS_STATE_FROM_BYTES: usize = 512;

/// Largest archived body (after compression) that fits a DynamoDB item
/// (400 KB) with room for the other attributes.
pub const MAX_ARCHIVED_BODY_BYTES: usize = 380_000;

/// Bytes as stored: exactly the bytes given, gzip-compressed when large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedBody {
    pub bytes: Vec<u8>,
    pub gzip: bool,
    pub original_len: usize,
}

impl ArchivedBody {
    pub fn from_raw(raw: &[u8]) -> Self {
        Self::compressed_from(raw, COMPRESS_FROM_BYTES)
    }

    /// The bytes, gzip-compressed when at least `threshold` long.
    pub fn compressed_from(raw: &[u8], threshold: usize) -> Self {
        if raw.len() < threshold {
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

    /// The bytes as given.
    pub fn raw(&self) -> std::io::Result<Vec<u8>> {
        if !self.gzip {
            return Ok(self.bytes.clone());
        }
        let mut out = Vec::with_capacity(self.original_len);
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&self.bytes[..]), &mut out)?;
        Ok(out)
    }
}

/// What the conditional put of an event record came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// Stored: the stream hands it to the processor.
    New,
    /// The key was taken; what the stored record says, read from the
    /// refusal itself (no second request).
    Exists(ExistingEvent),
}

/// The part of a stored record a refused put needs: was it the same body,
/// and did it come the same way?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingEvent {
    pub status: EventStatus,
    pub body_sha256: String,
    pub quarantine_reason: Option<String>,
    pub origin: Origin,
}

/// The events archive: the outbox. Stored records are never changed by the
/// pipeline; an operator's replay is the one update (and the stream hands
/// the record to the processor again).
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores `record` unless its key exists: one conditional write.
    async fn put_new(&self, record: &EventRecord) -> Result<Put, DependencyError>;
    /// Reads a record (strongly consistent).
    async fn get(&self, key: &EventKey) -> Result<Option<EventRecord>, DependencyError>;
    /// Sets a record that has status `from` to `received`, with
    /// `replayed_at`: the stream then hands it to the processor again.
    /// `false` when its status was not `from`.
    async fn mark_for_replay(
        &self,
        key: &EventKey,
        from: EventStatus,
        at_micros: i64,
    ) -> Result<bool, DependencyError>;
}

/// Where a change stands among the changes of its entity: the newer
/// version wins; of two equal versions, the greater tie-breaker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rank {
    /// The payload's own date, or the receipt time where it has none (µs).
    pub version: i64,
    /// Decides between two different changes with the same version, the
    /// same whatever order they arrive in: `1:` for a removal or a
    /// cancellation (it wins), `0:` otherwise, then the body's SHA-256.
    /// Compared as bytes, as DynamoDB compares strings.
    pub tiebreak: String,
}

impl Rank {
    pub fn new(version: i64, ends_entity: bool, body_sha256: &str) -> Self {
        Self {
            version,
            tiebreak: format!("{}:{body_sha256}", u8::from(ends_entity)),
        }
    }
}

/// A newest-wins write of one entity's state.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityUpsert {
    pub key: EntityKey,
    pub source: &'static str,
    pub instance: InstanceName,
    pub kind: EntityKind,
    pub entity_id: String,
    pub rank: Rank,
    pub state_json: String,
    /// SHA-256 of `state_json`: a newer change with the same state moves
    /// the entity's rank but is not a new state.
    pub state_sha256: String,
    pub event_key: EventKey,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// A new state: written, its revision counted.
    Applied { revision: u64 },
    /// This very change (same rank) was applied before: a replay.
    Repeated,
    /// Newer than the stored state but the same state: only the rank
    /// moved. `delivered` tells whether that state's revision has been
    /// delivered (so a follow-up would have nothing to send).
    Unchanged { delivered: bool },
    /// The stored state is newer; nothing was written.
    Stale,
}

impl Upserted {
    /// Whether the change's follow-up (a delivery) may still be owed: a
    /// stale change's newer state has its own follow-up, and an unchanged
    /// one's state was already delivered.
    pub fn owes_follow_up(self) -> bool {
        match self {
            Self::Applied { .. } | Self::Repeated => true,
            Self::Unchanged { delivered } => !delivered,
            Self::Stale => false,
        }
    }
}

/// An entity's current state, as the jobs worker reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntity {
    pub kind: String,
    pub entity_id: String,
    pub rank: Rank,
    /// Counts the entity's states: what deliveries are tracked by.
    pub revision: u64,
    pub state_json: String,
    pub last_event_key: Option<String>,
    /// The newest revision delivered (to the partner, or applied to Revel).
    pub delivered_revision: Option<u64>,
}

impl StoredEntity {
    /// Its current state has been delivered already.
    pub fn is_delivered(&self) -> bool {
        self.delivered_revision.is_some_and(|d| d >= self.revision)
    }
}

/// Current state of entities.
#[async_trait]
pub trait EntityStore: Send + Sync {
    async fn upsert(&self, change: &EntityUpsert) -> Result<Upserted, DependencyError>;
    /// Reads an entity (strongly consistent).
    async fn get(&self, key: &EntityKey) -> Result<Option<StoredEntity>, DependencyError>;
    /// Records that `revision` was delivered, unless a newer one already
    /// was; `false` when it was.
    async fn mark_delivered(&self, key: &EntityKey, revision: u64)
        -> Result<bool, DependencyError>;
}

/// What an upsert comes to against what is stored, decided once for every
/// adapter. `stored` is `(rank, state_sha256, revision, delivered_revision)`.
pub fn decide_upsert(
    stored: Option<(&Rank, &str, u64, Option<u64>)>,
    change: &EntityUpsert,
) -> UpsertDecision {
    let Some((rank, sha, revision, delivered)) = stored else {
        return UpsertDecision::Write;
    };
    match change.rank.cmp(rank) {
        std::cmp::Ordering::Less => UpsertDecision::Done(Upserted::Stale),
        std::cmp::Ordering::Equal => UpsertDecision::Done(Upserted::Repeated),
        std::cmp::Ordering::Greater if sha == change.state_sha256 => {
            UpsertDecision::MoveRank(Upserted::Unchanged {
                delivered: delivered.is_some_and(|d| d >= revision),
            })
        }
        std::cmp::Ordering::Greater => UpsertDecision::Write,
    }
}

/// See [`decide_upsert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertDecision {
    /// Write the state and count a revision.
    Write,
    /// Move the rank only, keeping state and revision.
    MoveRank(Upserted),
    /// Nothing to write.
    Done(Upserted),
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

    #[test]
    fn a_removal_outranks_any_other_change_of_the_same_version_and_a_newer_version_outranks_both() {
        let amendment = Rank::new(10, false, "ffff");
        let cancellation = Rank::new(10, true, "0000");
        assert!(cancellation > amendment);
        assert!(Rank::new(11, false, "0000") > cancellation);
        assert!(Rank::new(10, false, "aaaa") > Rank::new(10, false, "0aaa"));
    }

    fn change(version: i64, sha: &str) -> EntityUpsert {
        let instance = InstanceName::parse("demo").unwrap();
        let item_stock = EntityKind::new("item_stock");
        EntityUpsert {
            key: EntityKey::new("revel", &instance, item_stock, "p:1").unwrap(),
            source: "revel",
            instance,
            kind: item_stock,
            entity_id: "p:1".into(),
            rank: Rank::new(version, false, sha),
            state_json: "{}".into(),
            state_sha256: sha.into(),
            event_key: EventKey::parse("revel:demo:inout.stock:x").unwrap(),
        }
    }

    #[test]
    fn an_upsert_writes_a_new_state_moves_the_rank_of_the_same_state_and_ignores_older_ones() {
        let stored = Rank::new(5, false, "aa");
        let at = |revision, delivered| Some((&stored, "aa", revision, delivered));
        assert_eq!(decide_upsert(None, &change(1, "aa")), UpsertDecision::Write);
        assert_eq!(
            decide_upsert(at(1, None), &change(6, "bb")),
            UpsertDecision::Write
        );
        assert_eq!(
            decide_upsert(at(1, None), &change(4, "bb")),
            UpsertDecision::Done(Upserted::Stale)
        );
        assert_eq!(
            decide_upsert(at(1, None), &change(5, "aa")),
            UpsertDecision::Done(Upserted::Repeated)
        );
        assert_eq!(
            decide_upsert(at(2, Some(2)), &change(6, "aa")),
            UpsertDecision::MoveRank(Upserted::Unchanged { delivered: true })
        );
        assert_eq!(
            decide_upsert(at(2, Some(1)), &change(6, "aa")),
            UpsertDecision::MoveRank(Upserted::Unchanged { delivered: false })
        );
    }

    #[test]
    fn only_stale_changes_and_states_already_delivered_owe_no_follow_up() {
        assert!(Upserted::Applied { revision: 1 }.owes_follow_up());
        assert!(Upserted::Repeated.owes_follow_up());
        assert!(Upserted::Unchanged { delivered: false }.owes_follow_up());
        assert!(!Upserted::Unchanged { delivered: true }.owes_follow_up());
        assert!(!Upserted::Stale.owes_follow_up());
    }
}
