//! The stream processor: everything after an event is stored.
//!
//! The events table is an outbox. Its stream hands each new record to
//! [`Processor::process`], which reads the stored body again, keeps the
//! entity newest-wins and, only once that write succeeded, queues the
//! follow-up job. AWS retries a record until it goes through (or parks it on
//! the processor's failure queue), so every step is idempotent:
//!
//! - the upsert compares ranks (version, then tie-breaker): a replay of the
//!   same change is `Repeated`, an older one `Stale`, and a newer one with
//!   the same state only moves the rank (`Unchanged`, a collapsed repeat);
//! - the follow-up's FIFO deduplication id is the entity and the change's
//!   rank, so a replayed record's job is absorbed while a new version's
//!   never is; and the job is queued again on a replay (`Repeated`), since
//!   the earlier attempt may have stopped between the upsert and the queue;
//! - a stale change queues nothing: the newer change it lost to queues its
//!   own follow-up, and the worker always sends the current state.
//!
//! Batch mechanics (stream records in, partial batch failures out) are in
//! [`stream`].

pub mod stream;

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::config::PartnerDeliveries;
use crate::receive::MAX_STATE_BYTES;
use domain::error::DependencyError;
use domain::idempotency::sha256_hex;
use domain::ids::{EntityKey, InstanceName};
use domain::sources::{
    EntityChange, FollowUp, Interpretation, Malformed, Reason, SourceName, Version,
};
use ports::queue::{JobKind, JobQueue, QueuedJob};
use ports::store::{EntityStore, EntityUpsert, EventRecord, EventStatus, Rank, Upserted};
use telemetry::{self, Dimension, Metric};

/// What processing one record came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// Its entity took the change (or held it or something newer already)
    /// and its follow-up, if one was owed, is queued.
    Applied {
        upserted: Option<Upserted>,
        job: Option<JobKind>,
    },
    /// Nothing to apply, and retrying would change nothing: quarantined, a
    /// kind or body this code doesn't understand. Counted, never retried.
    Skipped { reason: &'static str },
}

/// A record that could not be processed now; the stream retries it.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Store(#[from] DependencyError),
}

impl ProcessError {
    /// A short name for the metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Store(e) if e.operation == "SendMessage" => "queue",
            Self::Store(_) => "store",
        }
    }
}

/// A record read as the current code reads it.
pub struct Reading {
    pub source: SourceName,
    pub meaning: Interpretation,
}

/// Reads a stored record: the body its sender sent, with the headers it was
/// stored with, through the description of its source and event type.
/// `Err` names why it can't be applied; none of those reasons changes on a
/// retry.
pub fn read(record: &EventRecord) -> Result<Reading, Malformed> {
    if record.status == EventStatus::Quarantined {
        return Err(Malformed(Reason::Quarantined));
    }
    let (source, kind) = vendors::event_kind(&record.source, &record.event_type)
        .ok_or(Malformed(Reason::UnknownEventKind))?;
    let raw = record
        .raw_body()
        .map_err(|_| Malformed(Reason::UnreadableBody))?;
    let body: Value = serde_json::from_slice(&raw).map_err(|_| Malformed(Reason::InvalidJson))?;
    // The record's type is its route's: a header naming another type was
    // logged and counted by the receiver, and does not stop it here either
    // (so a record quarantined for it by earlier code is applied on replay).
    let headers = header_map(record);
    let meaning = kind.interpret(body, &headers)?;
    Ok(Reading { source, meaning })
}

/// The stored headers as a header map (those that no longer parse are left out).
pub fn header_map(record: &EventRecord) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(record.headers.len());
    for (name, value) in &record.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    headers
}

/// The planned entity write of a record.
struct Planned {
    upsert: EntityUpsert,
    /// The state written, as a value (what the change implies beyond its
    /// own entity is read from it).
    state: Value,
}

/// The stream processor: the entities table and the jobs queue.
pub struct Processor {
    entities: Arc<dyn EntityStore>,
    jobs: Arc<dyn JobQueue>,
    /// Whose changes are delivered to the partner.
    deliveries: PartnerDeliveries,
}

impl Processor {
    /// A processor that delivers every source's changes to the partner.
    pub fn new(entities: Arc<dyn EntityStore>, jobs: Arc<dyn JobQueue>) -> Self {
        Self {
            entities,
            jobs,
            deliveries: PartnerDeliveries::default(),
        }
    }

    /// Delivers to the partner only the sources `deliveries` lets through
    /// (the merchant's switches, `DELIVER_*_EVENTS`).
    pub fn with_deliveries(mut self, deliveries: PartnerDeliveries) -> Self {
        self.deliveries = deliveries;
        self
    }

    /// Applies one stored record: entity first, follow-up after.
    pub async fn process(&self, record: &EventRecord) -> Result<Processed, ProcessError> {
        let Reading { source, meaning } = match read(record) {
            Ok(reading) => reading,
            Err(Malformed(reason)) => return Ok(skipped(record, reason)),
        };
        let planned = match meaning
            .entity
            .map(|change| plan(source, &record.instance, record, change))
            .transpose()
        {
            Ok(planned) => planned,
            Err(Malformed(reason)) => return Ok(skipped(record, reason)),
        };
        let dimensions =
            telemetry::event_dimensions(&source, &record.event_type, record.instance.as_str());
        let upserted = match &planned {
            Some(planned) => Some(self.upsert(planned, &dimensions).await?),
            None => None,
        };
        let follow_up = match meaning.follow_up {
            FollowUp::SyncEntity if !self.deliveries.delivers(&source) => {
                tracing::info!(
                    source = %source,
                    "deliveries of this source to the partner are turned off; kept, not sent"
                );
                FollowUp::None
            }
            other => other,
        };
        let job = follow_up_job(source, record, follow_up, planned.as_ref(), upserted);
        if let Some(job) = &job {
            self.jobs.enqueue(job).await?;
            telemetry::count(Metric::JobsEnqueued, &dimensions);
        }
        if let Some(planned) = &planned {
            self.implied(source, record, planned, upserted, &dimensions)
                .await?;
        }
        Ok(Processed::Applied {
            upserted,
            job: job.map(|j| j.message.job),
        })
    }

    /// Keeps one planned change newest-wins, counting a stale or collapsed one.
    async fn upsert(
        &self,
        planned: &Planned,
        dimensions: &[(Dimension, &str)],
    ) -> Result<Upserted, ProcessError> {
        let upserted = self.entities.upsert(&planned.upsert).await?;
        match upserted {
            Upserted::Stale => {
                tracing::info!(entity = %planned.upsert.key, "the entity holds a newer change; left as is");
                telemetry::count(Metric::Stale, dimensions);
            }
            Upserted::Unchanged { .. } => {
                tracing::info!(entity = %planned.upsert.key, "a newer change with the same state: only its rank moved");
                telemetry::count(Metric::Unchanged, dimensions);
            }
            _ => {}
        }
        Ok(upserted)
    }

    /// What a change says beyond its own entity, applied after it (so a
    /// retried record redoes it; each step is idempotent). A Revel order
    /// reports on the rewards card it used (`gift_reward_data`): the card's
    /// state is kept newest-wins by the card's own date and delivered like
    /// any card; and it sold products: one job, in the order's message
    /// group after the order's own delivery, tells the partner each
    /// product's stock change.
    async fn implied(
        &self,
        source: SourceName,
        record: &EventRecord,
        order: &Planned,
        upserted: Option<Upserted>,
        dimensions: &[(Dimension, &str)],
    ) -> Result<(), ProcessError> {
        if source != vendors::revel::NAME
            || order.upsert.kind != vendors::revel::Entity::Order.kind()
        {
            return Ok(());
        }
        if let Some(card) = vendors::revel::rewards_card_of_order(&order.state) {
            match plan(source, &record.instance, record, card) {
                Ok(card) => {
                    let card_upserted = self.upsert(&card, dimensions).await?;
                    let job = follow_up_job(
                        source,
                        record,
                        FollowUp::SyncEntity,
                        Some(&card),
                        Some(card_upserted),
                    );
                    if let Some(job) = &job {
                        self.jobs.enqueue(job).await?;
                        telemetry::count(Metric::JobsEnqueued, dimensions);
                    }
                }
                Err(malformed) => {
                    tracing::warn!(
                        reason = malformed.reason(),
                        "an order's rewards card can't be kept; the order is"
                    );
                }
            }
        }
        let owed = upserted.is_some_and(Upserted::owes_follow_up);
        if owed && !vendors::revel::sold_products(&order.state).is_empty() {
            let job = QueuedJob::for_entity(
                JobKind::InventorySold,
                source.as_str(),
                &record.instance,
                &record.event_type,
                &record.event_key,
                &order.upsert.key,
                &order.upsert.rank,
            );
            self.jobs.enqueue(&job).await?;
            telemetry::count(Metric::JobsEnqueued, dimensions);
        }
        Ok(())
    }
}

fn skipped(record: &EventRecord, reason: Reason) -> Processed {
    let quarantined = reason == Reason::Quarantined;
    let reason = reason.as_str();
    if quarantined {
        tracing::info!("quarantined record skipped");
    } else {
        tracing::warn!(reason, "record skipped: the current code can't apply it");
    }
    telemetry::count(
        Metric::RecordsSkipped,
        &[
            (Dimension::Reason, reason),
            (Dimension::Source, &record.source),
        ],
    );
    Processed::Skipped { reason }
}

/// The entity write of a change, its key validated, its state serialised,
/// its rank decided.
fn plan(
    source: SourceName,
    instance: &InstanceName,
    record: &EventRecord,
    change: EntityChange,
) -> Result<Planned, Malformed> {
    let key = EntityKey::new(source, instance, change.kind, &change.id)
        .map_err(|_| Malformed(Reason::InvalidEntityId))?;
    let state_json =
        serde_json::to_string(&change.state).map_err(|_| Malformed(Reason::UnserialisableState))?;
    // The state is one attribute of one item: a state that can't fit is
    // skipped (the record stays archived and replayable), not retried forever.
    if state_json.len() > MAX_STATE_BYTES {
        return Err(Malformed(Reason::StateTooLarge));
    }
    let version = version_micros(record, change.version);
    Ok(Planned {
        state: change.state,
        upsert: EntityUpsert {
            key,
            source: source.as_str(),
            instance: instance.clone(),
            kind: change.kind,
            entity_id: change.id,
            rank: Rank::new(version, change.ends_entity, &record.body_sha256),
            state_sha256: sha256_hex(state_json.as_bytes()),
            state_json,
            event_key: record.event_key.clone(),
        },
    })
}

/// A change's version as µs since the epoch: a naive date read in the zone
/// the record names (the instance's when it arrived), a dateless change at
/// its receipt (a later change of the same entity is received later).
pub fn version_micros(record: &EventRecord, version: Version) -> i64 {
    version.micros(&record.zone(), record.received_at_micros)
}

/// The job a processed change owes, if any.
fn follow_up_job(
    source: SourceName,
    record: &EventRecord,
    follow_up: FollowUp,
    planned: Option<&Planned>,
    upserted: Option<Upserted>,
) -> Option<QueuedJob> {
    let for_entity = |kind| {
        let planned = planned?;
        upserted?.owes_follow_up().then(|| {
            QueuedJob::for_entity(
                kind,
                source.as_str(),
                &record.instance,
                &record.event_type,
                &record.event_key,
                &planned.upsert.key,
                &planned.upsert.rank,
            )
        })
    };
    match follow_up {
        FollowUp::None => None,
        FollowUp::SyncEntity => for_entity(JobKind::SyncEntity),
        FollowUp::ApplyToRevel => for_entity(JobKind::ApplyToRevel),
        FollowUp::InventoryRequest => for_entity(JobKind::InventoryRequest)
            .map(|job| job.in_instance_group(&vendors::revel::NAME)),
        // A push asks for a pull whatever the menu entity says; the worker
        // skips a pull that one started after the push already covered.
        FollowUp::CatalogPull => Some(QueuedJob::catalog_pull(
            source.as_str(),
            &record.instance,
            &record.event_type,
            &record.event_key,
            record.received_at_micros,
        )),
    }
}

#[cfg(test)]
mod tests;
