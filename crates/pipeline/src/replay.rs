//! Replaying archived events, for operators: an event quarantined by an
//! older version of the code, or a record the stream processor gave up on
//! (parked on its failure queue after its retries).
//!
//! Nothing is verified again (the event was authenticated when it was
//! stored, and its signature may no longer check out against a rotated
//! secret). A replay is one conditional update of the record, to status
//! `received` with `replayed_at`: the table's stream hands it to the
//! processor again, which applies it like any new record. Applying is
//! idempotent, so replaying a record that was applied before changes
//! nothing, and two replays apply it once.
//!
//! [`plan`] decides what would happen without writing anything (the
//! operator tool's dry run); [`replay`] does it.

use crate::process;
use domain::clock::Clock;
use domain::error::DependencyError;
use domain::ids::{EntityKey, EventKey};
use domain::sources::Malformed;
use ports::store::{EventRecord, EventStatus, EventStore};

/// What replaying a record does, decided before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayAction {
    /// Quarantined, and this code understands it now: taken back and applied.
    Apply { entity_key: Option<EntityKey> },
    /// Received already: handed to the processor again (for a record whose
    /// processing was given up on; one applied before changes nothing).
    Reprocess { entity_key: Option<EntityKey> },
    /// This code doesn't understand the body either: nothing is written.
    StillQuarantined { reason: String },
}

/// A replay decided by [`plan`]; [`replay`] carries it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPlan {
    pub event_key: EventKey,
    pub from: EventStatus,
    pub action: ReplayAction,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// Handed to the processor.
    Queued,
    /// Still not understood; left quarantined.
    StillQuarantined { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("it changed while being replayed; run the replay again")]
    Changed,
    #[error(transparent)]
    Store(#[from] DependencyError),
}

/// What replaying `record` would do, with nothing written.
pub fn plan(record: &EventRecord) -> ReplayPlan {
    let mut candidate = record.clone();
    candidate.status = EventStatus::Received;
    let action = match process::read(&candidate) {
        Err(Malformed(reason)) => ReplayAction::StillQuarantined {
            reason: reason.as_str().to_owned(),
        },
        Ok(reading) => {
            let entity_key = reading.meaning.entity.and_then(|change| {
                EntityKey::new(reading.source, &record.instance, change.kind, &change.id).ok()
            });
            match record.status {
                EventStatus::Quarantined => ReplayAction::Apply { entity_key },
                EventStatus::Received => ReplayAction::Reprocess { entity_key },
            }
        }
    };
    ReplayPlan {
        event_key: record.event_key.clone(),
        from: record.status,
        action,
    }
}

/// Carries out `plan`: the one conditional update that hands the record to
/// the processor again.
pub async fn replay(
    events: &dyn EventStore,
    clock: &dyn Clock,
    plan: ReplayPlan,
) -> Result<Replayed, ReplayError> {
    if let ReplayAction::StillQuarantined { reason } = plan.action {
        return Ok(Replayed::StillQuarantined { reason });
    }
    if !events
        .mark_for_replay(&plan.event_key, plan.from, clock.now_micros())
        .await?
    {
        return Err(ReplayError::Changed);
    }
    tracing::info!(event_key = %plan.event_key, from = plan.from.as_str(), "archived event handed to the processor again");
    Ok(Replayed::Queued)
}
