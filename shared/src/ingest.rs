//! The pipeline every webhook function runs: verify, store once, keep
//! current state, fan out.
//!
//! Never lose, never double-apply: the first write is the archive record,
//! with status `processing` and a lease. The entity upsert and the job follow
//! (concurrently), then the record is marked `done`, and only then is 200
//! sent. If anything fails in between, the answer is 503 and the lease is
//! released; the sender's redelivery finds the record unfinished, takes it
//! over and redoes the remaining steps, which are idempotent: the upsert is
//! newest-wins (an equal version is a no-op) and the job carries a FIFO
//! deduplication id. A concurrent duplicate waits for the owner to finish
//! and then answers `duplicate`; one that can't wait answers 503.
//!
//! Marking the record `done` is bookkeeping, not a guarantee: everything the
//! event promises is in place once the upsert and the job succeeded. So the
//! answer needs two sequential round trips (the put, then upsert and job
//! together) and the mark is a [`Completion`] the caller may run after
//! answering (the Lambda functions do, from an internal extension). If it
//! never runs, the record stays `processing`; a redelivery after the lease
//! redoes the idempotent steps and marks it then.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use serde_json::Value;
use time::OffsetDateTime;
use tracing::Instrument;

use crate::config::Settings;
use crate::error::{DependencyError, IngestError};
use crate::idempotency::{self, sha256_hex, KeyParts};
use crate::ids::{EntityKey, EventKey, InstanceName};
use crate::queue::{Job, JobQueue};
use crate::sources::{EventKind, FollowUp, Interpretation, Malformed, Source, Version};
use crate::store::{
    ArchivedBody, EntityStore, EntityUpsert, EventStatus, EventStore, Inserted, NewEvent, Origin,
    StoredEvent, Upserted, MAX_ARCHIVED_BODY_BYTES,
};
use crate::telemetry::{self, Metric};

/// Largest entity state kept (DynamoDB items are at most 400 KB).
pub const MAX_STATE_BYTES: usize = 350_000;

/// One HTTP delivery, as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: HeaderMap,
    /// The raw body bytes (already base64-decoded when API Gateway encoded it).
    pub body: Vec<u8>,
    pub request_id: String,
    /// The route's path parameters (`/winesitting/{account}/{token}`).
    pub path_params: Vec<(String, String)>,
}

impl Delivery {
    pub fn path_param(&self, name: &str) -> Option<&str> {
        self.path_params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What happened to a delivery that was not refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// New event: stored, state kept, follow-up queued.
    Accepted { event_key: EventKey },
    /// Seen before, and all its effects are in place.
    Duplicate { event_key: EventKey },
    /// Signed, but not understood: archived for replay, nothing applied.
    Quarantined { event_key: EventKey, reason: String },
    /// The sender's connectivity test.
    Pong,
}

/// A delivery checked and read, with its archive record built: everything a
/// receiver does before its first network call.
pub enum Prepared {
    /// The sender's connectivity test: answered without any write.
    Pong,
    Event(Box<PreparedEvent>),
}

/// An event ready to be stored.
pub struct PreparedEvent {
    event: NewEvent,
    work: Option<Work>,
    quarantine: Option<&'static str>,
    span: tracing::Span,
}

impl PreparedEvent {
    /// The archive record the conditional put writes.
    pub fn record(&self) -> &NewEvent {
        &self.event
    }
}

/// The bookkeeping left once an event is answered: marking its record done.
#[must_use = "a completion left unrun leaves the record `processing` until a redelivery"]
#[derive(Debug)]
pub struct Completion {
    key: EventKey,
    span: tracing::Span,
}

/// The stores the pipeline writes to.
#[derive(Clone)]
pub struct Stores {
    pub events: Arc<dyn EventStore>,
    pub entities: Arc<dyn EntityStore>,
    pub jobs: Arc<dyn JobQueue>,
}

/// A webhook receiver: one source, one event kind, the stores, the settings.
pub struct Ingestor {
    source: Arc<dyn Source>,
    kind: Arc<dyn EventKind>,
    stores: Stores,
    settings: Settings,
}

/// The work that follows a stored event.
struct Work {
    key: EventKey,
    entity: Option<PlannedEntity>,
    follow_up: FollowUp,
    instance: InstanceName,
}

/// How and when a delivery arrived, and what it is stored under.
struct Arrival<'a> {
    instance: &'a InstanceName,
    key: &'a EventKey,
    received_at_micros: i64,
    body_sha256: String,
    origin: Origin,
}

/// The entity change of a [`Work`], its key validated, its state serialised.
struct PlannedEntity {
    key: EntityKey,
    kind: &'static str,
    id: String,
    version: Version,
    state_json: String,
}

fn now_micros() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

fn now_secs() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl Ingestor {
    pub fn new(
        source: Arc<dyn Source>,
        kind: Arc<dyn EventKind>,
        stores: Stores,
        settings: Settings,
    ) -> Self {
        Self {
            source,
            kind,
            stores,
            settings,
        }
    }

    pub fn source(&self) -> &dyn Source {
        self.source.as_ref()
    }

    pub fn event_type(&self) -> &'static str {
        self.kind.event_type()
    }

    /// Ingests a delivery and completes it before returning.
    pub async fn ingest(&self, delivery: &Delivery) -> Result<Outcome, IngestError> {
        let (result, completion) = self.ingest_deferred(delivery).await;
        self.complete_all(completion).await;
        result
    }

    /// Ingests a delivery up to the point where it can be answered; the
    /// returned [`Completion`], if any, should be run after answering.
    pub async fn ingest_deferred(
        &self,
        delivery: &Delivery,
    ) -> (Result<Outcome, IngestError>, Option<Completion>) {
        match self.prepare(delivery).await {
            Ok(Prepared::Pong) => (Ok(Outcome::Pong), None),
            Ok(Prepared::Event(prepared)) => self.store_and_apply(prepared).await,
            Err(error) => (Err(error), None),
        }
    }

    /// Checks the size and the sender, reads the body, derives the event key
    /// and builds the archive record: no network call once the sender's
    /// secrets are cached.
    pub async fn prepare(&self, delivery: &Delivery) -> Result<Prepared, IngestError> {
        let limit = self.settings.max_body_bytes;
        if delivery.body.len() > limit {
            return Err(IngestError::PayloadTooLarge {
                size: delivery.body.len(),
                limit,
            });
        }
        let instance = self.source.authenticate(delivery).await?;
        self.prepare_from(&instance, delivery, Origin::Webhook)
    }

    /// An event the bundle fetched from the sender's API itself (an order
    /// reconciliation found missing): no signature to check; otherwise the
    /// same path, key and effects as its webhook.
    pub async fn ingest_fetched(
        &self,
        instance: &InstanceName,
        body: Vec<u8>,
        request_id: String,
    ) -> Result<Outcome, IngestError> {
        let delivery = Delivery {
            headers: HeaderMap::new(),
            body,
            request_id,
            path_params: Vec::new(),
        };
        let (result, completion) =
            match self.prepare_from(instance, &delivery, Origin::Reconciliation) {
                Ok(Prepared::Pong) => (Ok(Outcome::Pong), None),
                Ok(Prepared::Event(prepared)) => self.store_and_apply(prepared).await,
                Err(error) => (Err(error), None),
            };
        self.complete_all(completion).await;
        result
    }

    /// Marks a completed event's record done. A failure is only logged: the
    /// event's effects are in place, and a redelivery would mark it.
    pub async fn complete(&self, completion: Completion) {
        let Completion { key, span } = completion;
        if let Err(error) = self
            .stores
            .events
            .mark_done(&key)
            .instrument(span.clone())
            .await
        {
            let _entered = span.enter();
            log_dependency(&error, "event answered, but its record is not marked done");
        }
    }

    async fn complete_all(&self, completion: Option<Completion>) {
        if let Some(completion) = completion {
            self.complete(completion).await;
        }
    }

    fn prepare_from(
        &self,
        instance: &InstanceName,
        delivery: &Delivery,
        origin: Origin,
    ) -> Result<Prepared, IngestError> {
        let instance = instance.clone();
        let received_at_micros = now_micros();

        let meaning = match serde_json::from_slice::<Value>(&delivery.body) {
            Ok(body) if self.source.is_ping(&body) => return Ok(Prepared::Pong),
            Ok(body) => self
                .check_declared_type(&delivery.headers)
                .and_then(|()| self.kind.interpret(body)),
            Err(_) => Err(Malformed("invalid_json")),
        };
        // Hashed once: the archive keeps it, and content keys are made of it.
        let body_sha256 = sha256_hex(&delivery.body);
        let key = idempotency::event_key(KeyParts {
            source: self.source.name(),
            instance: &instance,
            event_type: self.kind.event_type(),
            delivery_id: self.source.delivery_id(&delivery.headers),
            identity: meaning.as_ref().ok().map(|m| &m.identity),
            body_sha256: &body_sha256,
            received_at_unix: received_at_micros.div_euclid(1_000_000),
        });
        let (work, quarantine) = match meaning.and_then(|m| self.plan(&instance, &key, m)) {
            Ok(work) => (Some(work), None),
            Err(Malformed(reason)) => (None, Some(reason)),
        };

        let event = self.new_event(
            delivery,
            Arrival {
                instance: &instance,
                key: &key,
                received_at_micros,
                body_sha256,
                origin,
            },
            work.as_ref(),
            quarantine,
        )?;
        // Every later line of this delivery carries its event and instance.
        let span = tracing::Span::current();
        span.record("event_key", tracing::field::display(&key));
        span.record("instance", tracing::field::display(&instance));
        Ok(Prepared::Event(Box::new(PreparedEvent {
            event,
            work,
            quarantine,
            span,
        })))
    }

    /// The writes: archive once, then apply (or report a repeat).
    async fn store_and_apply(
        &self,
        prepared: Box<PreparedEvent>,
    ) -> (Result<Outcome, IngestError>, Option<Completion>) {
        let PreparedEvent {
            event,
            work,
            quarantine,
            span,
        } = *prepared;
        let result = self.archive_and_apply(event, work, quarantine).await;
        match result {
            Ok((outcome, Some(key))) => (Ok(outcome), Some(Completion { key, span })),
            Ok((outcome, None)) => (Ok(outcome), None),
            Err(error) => (Err(error), None),
        }
    }

    /// The outcome, and the key of a record left to mark done.
    async fn archive_and_apply(
        &self,
        event: NewEvent,
        work: Option<Work>,
        quarantine: Option<&'static str>,
    ) -> Result<(Outcome, Option<EventKey>), IngestError> {
        let key = event.key.clone();
        match (self.stores.events.insert_new(&event).await?, work) {
            (Inserted::New, None) => {
                let reason = quarantine.unwrap_or("unknown");
                tracing::warn!(reason, "event quarantined");
                let outcome = Outcome::Quarantined {
                    event_key: key,
                    reason: reason.to_owned(),
                };
                Ok((outcome, None))
            }
            (Inserted::New, Some(work)) => {
                self.apply(&work, event.received_at_micros).await?;
                tracing::info!("event accepted");
                Ok((
                    Outcome::Accepted {
                        event_key: key.clone(),
                    },
                    Some(key),
                ))
            }
            (Inserted::Exists(existing), work) => self.resume(key, existing, work.as_ref()).await,
        }
    }

    fn check_declared_type(&self, headers: &HeaderMap) -> Result<(), Malformed> {
        match self.source.declared_event_type(headers) {
            Some(declared) if !declared.eq_ignore_ascii_case(self.kind.event_type()) => {
                Err(Malformed("event_type_mismatch"))
            }
            _ => Ok(()),
        }
    }

    fn plan(
        &self,
        instance: &InstanceName,
        key: &EventKey,
        meaning: Interpretation,
    ) -> Result<Work, Malformed> {
        let entity = match meaning.entity {
            None => None,
            Some(change) => {
                let key = EntityKey::new(self.source.name(), instance, change.kind, &change.id)
                    .map_err(|_| Malformed("invalid_entity_id"))?;
                let state_json = serde_json::to_string(&change.state)
                    .map_err(|_| Malformed("unserialisable_state"))?;
                // The state is kept as one attribute of one item: a state that
                // can't fit is quarantined (archived, replayable), not retried forever.
                if state_json.len() > MAX_STATE_BYTES {
                    return Err(Malformed("state_too_large"));
                }
                Some(PlannedEntity {
                    key,
                    kind: change.kind,
                    id: change.id,
                    version: change.version,
                    state_json,
                })
            }
        };
        Ok(Work {
            key: key.clone(),
            entity,
            follow_up: meaning.follow_up,
            instance: instance.clone(),
        })
    }

    fn new_event(
        &self,
        delivery: &Delivery,
        arrival: Arrival<'_>,
        work: Option<&Work>,
        quarantine: Option<&'static str>,
    ) -> Result<NewEvent, IngestError> {
        let Arrival {
            instance,
            key,
            received_at_micros,
            body_sha256,
            origin,
        } = arrival;
        let body = ArchivedBody::from_raw(&delivery.body);
        if body.bytes.len() > MAX_ARCHIVED_BODY_BYTES {
            // It could not be archived in one item, so it must not be acknowledged.
            return Err(IngestError::PayloadTooLarge {
                size: delivery.body.len(),
                limit: self.settings.max_body_bytes,
            });
        }
        let headers = self
            .source
            .archived_headers()
            .iter()
            .filter_map(|name| {
                let value = delivery.headers.get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), value.chars().take(256).collect()))
            })
            .collect();
        let received_secs = received_at_micros.div_euclid(1_000_000);
        Ok(NewEvent {
            key: key.clone(),
            source: self.source.name(),
            instance: instance.clone(),
            event_type: self.kind.event_type(),
            status: if work.is_some() {
                EventStatus::Processing
            } else {
                EventStatus::Quarantined
            },
            received_at_micros,
            body_sha256,
            body,
            headers,
            quarantine_reason: quarantine,
            entity_key: work.and_then(|w| w.entity.as_ref().map(|e| e.key.clone())),
            request_id: delivery.request_id.clone(),
            origin,
            lease_until: received_secs + self.settings.processing_lease.as_secs() as i64,
            expires_at: received_secs + self.settings.retention.as_secs() as i64,
        })
    }

    /// A redelivery: report what is done, finish what isn't, or wait for the
    /// delivery that is finishing it.
    async fn resume(
        &self,
        key: EventKey,
        mut existing: StoredEvent,
        work: Option<&Work>,
    ) -> Result<(Outcome, Option<EventKey>), IngestError> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            match existing.status {
                EventStatus::Done => {
                    tracing::info!("duplicate delivery");
                    return Ok((Outcome::Duplicate { event_key: key }, None));
                }
                EventStatus::Quarantined => {
                    let reason = existing
                        .quarantine_reason
                        .unwrap_or_else(|| "unknown".into());
                    let outcome = Outcome::Quarantined {
                        event_key: key,
                        reason,
                    };
                    return Ok((outcome, None));
                }
                EventStatus::Processing => {}
            }
            // Unfinished. Only a delivery that understood the body can finish
            // it (a body that doesn't parse under the same sender event id
            // can't); otherwise wait for the one that is finishing it.
            if let (Some(work), true) = (work, existing.lease_until < now_secs()) {
                let lease = now_secs() + self.settings.processing_lease.as_secs() as i64;
                if self.stores.events.claim(&key, now_secs(), lease).await? {
                    tracing::info!("finishing an event a previous delivery left unfinished");
                    self.apply(work, existing.received_at_micros).await?;
                    return Ok((
                        Outcome::Accepted {
                            event_key: key.clone(),
                        },
                        Some(key),
                    ));
                }
            }
            if started.elapsed() + pause > self.settings.duplicate_wait {
                tracing::info!("duplicate delivery while the first is still processing");
                return Err(IngestError::InProgress);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(400));
            existing = self
                .stores
                .events
                .get(&key)
                .await?
                .ok_or(IngestError::InProgress)?;
        }
    }

    /// Entity upsert and job, concurrently: what the event promises.
    async fn apply(&self, work: &Work, received_at_micros: i64) -> Result<(), IngestError> {
        let dimensions = telemetry::event_dimensions(
            self.source.name(),
            self.kind.event_type(),
            work.instance.as_str(),
        );
        let upsert = async {
            let Some(entity) = &work.entity else {
                return Ok(None);
            };
            let change = EntityUpsert {
                key: entity.key.clone(),
                source: self.source.name(),
                instance: work.instance.clone(),
                kind: entity.kind,
                entity_id: entity.id.clone(),
                version: match entity.version {
                    Version::UpdatedAt(v) => v,
                    // The first receipt, so a redelivery keeps its place.
                    Version::ReceiptOrder => received_at_micros,
                },
                state_json: entity.state_json.clone(),
                event_key: work.key.clone(),
            };
            self.stores.entities.upsert(&change).await.map(Some)
        };
        let enqueue = async {
            match self.job(work, received_at_micros) {
                Some(job) => {
                    self.stores.jobs.enqueue(&job).await?;
                    telemetry::count(Metric::JobsEnqueued, &dimensions);
                    Ok(())
                }
                None => Ok(()),
            }
        };
        let (upserted, enqueued) = tokio::join!(upsert, enqueue);
        let upserted = match (upserted, enqueued) {
            (Ok(upserted), Ok(())) => upserted,
            (Err(error), _) | (Ok(_), Err(error)) => {
                self.release(&work.key).await;
                return Err(error.into());
            }
        };
        if let Some(Upserted::Stale) = upserted {
            tracing::info!("entity already holds this or a newer version; left as is");
            telemetry::count(Metric::Stale, &dimensions);
        }
        Ok(())
    }

    fn job(&self, work: &Work, received_at_micros: i64) -> Option<Job> {
        let (source, event_type) = (self.source.name(), self.kind.event_type());
        match work.follow_up {
            FollowUp::None => None,
            FollowUp::ApplyToRevel => {
                let entity = work.entity.as_ref()?;
                Some(Job::for_entity(
                    crate::queue::JobKind::ApplyToRevel,
                    source,
                    &work.instance,
                    event_type,
                    &work.key,
                    &entity.key,
                ))
            }
            FollowUp::SyncEntity => {
                let entity = work.entity.as_ref()?;
                Some(Job::sync_entity(
                    source,
                    &work.instance,
                    event_type,
                    &work.key,
                    &entity.key,
                ))
            }
            FollowUp::CatalogPull => Some(Job::catalog_pull(
                source,
                &work.instance,
                event_type,
                &work.key,
                received_at_micros.div_euclid(1_000_000),
            )),
        }
    }

    async fn release(&self, key: &EventKey) {
        if let Err(error) = self.stores.events.release(key).await {
            // The lease runs out by itself; a redelivery takes over then.
            log_dependency(&error, "could not release the processing lease");
        }
    }
}

/// The span every log line of one delivery is in: its request id, source and
/// event type from the start, its event key and instance once they are known.
pub fn delivery_span(ingestor: &Ingestor, request_id: &str) -> tracing::Span {
    tracing::info_span!(
        "delivery",
        request_id,
        source = ingestor.source().name(),
        event_type = ingestor.event_type(),
        event_key = tracing::field::Empty,
        instance = tracing::field::Empty,
    )
}

/// Logs a dependency failure with its service and operation, never payloads.
pub fn log_dependency(error: &DependencyError, message: &str) {
    tracing::error!(
        service = error.service,
        operation = error.operation,
        error = %aws_error_summary(error),
        "{message}"
    );
}

/// The error chain in one line. SDK errors name the failure (timeout,
/// dispatch failure, service error code), never request or response bodies.
pub fn aws_error_summary(error: &DependencyError) -> String {
    let mut summary = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        summary.push_str(": ");
        summary.push_str(&cause.to_string());
        source = cause.source();
    }
    summary
}

pub mod replay;
#[cfg(test)]
mod tests;
