//! The receivers' pipeline: verify, derive the event key, one conditional
//! put of the event record, answer. Nothing else happens on the answer's
//! path: the events table's stream hands every new record to the processor
//! ([`crate::process`]), which keeps the entity and queues its follow-up.
//!
//! So an answer costs one AWS request and one round trip, and a 2xx means
//! exactly one thing: the event is stored. A refused put is a repeat: the
//! refusal carries the stored record's body hash, so a repeat of the same
//! body is `duplicate` at once, and a different body under the same key (a
//! sender that reused an event id, or changed an order without moving its
//! `updated_date`) is a conflict, kept under a key of its own and counted.

use std::sync::Arc;

use http::HeaderMap;
use serde_json::Value;

use crate::config::Settings;
use domain::clock::Clock;
use domain::error::ReceiveError;
use domain::idempotency::{self, sha256_hex, KeyParts};
use domain::ids::{EntityKey, EventKey, InstanceName};
use domain::request::WebhookRequest;
use domain::sources::{EventKind, Interpretation, Malformed, Reason, Source};
use ports::store::{
    ArchivedBody, BodyEncoding, EventRecord, EventStatus, EventStore, Origin, Put,
    MAX_ARCHIVED_BODY_BYTES,
};
use telemetry::{self, Metric};

/// Largest entity state kept (DynamoDB items are at most 400 KB).
pub const MAX_STATE_BYTES: usize = 350_000;

/// Bodies from this size are read for their key fields only
/// ([`domain::projection`]); smaller ones are parsed whole.
const PROJECT_FROM_BYTES: usize = 1024;

/// What happened to a request that was not refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// New event: stored; the processor does the rest.
    Accepted { event_key: EventKey },
    /// The same body was stored under this key before.
    Duplicate { event_key: EventKey },
    /// A different body under an existing key: stored under `event_key`,
    /// a key of its own, and counted.
    Conflict {
        event_key: EventKey,
        conflict_of: EventKey,
    },
    /// Signed, but not understood: archived for replay, nothing applied.
    Quarantined { event_key: EventKey, reason: String },
    /// The sender's connectivity test.
    Pong,
}

impl Outcome {
    /// The `status` of the answer.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Accepted { .. } => "accepted",
            Self::Duplicate { .. } => "duplicate",
            Self::Conflict { .. } => "conflict",
            Self::Quarantined { .. } => "quarantined",
            Self::Pong => "pong",
        }
    }
}

/// A request checked and read, with its record built: everything a receiver
/// does before its one network call (once the sender's secrets are cached).
pub enum Prepared {
    /// The sender's connectivity test: answered without any write.
    Pong,
    Event(Box<PreparedEvent>),
}

/// An event record ready to be put.
pub struct PreparedEvent {
    record: EventRecord,
}

impl PreparedEvent {
    /// The record the conditional put writes.
    pub fn record(&self) -> &EventRecord {
        &self.record
    }
}

/// A webhook receiver: one source, one event kind, the events table.
pub struct Receiver {
    source: Arc<dyn Source>,
    kind: Arc<dyn EventKind>,
    events: Arc<dyn EventStore>,
    settings: Settings,
    clock: Arc<dyn Clock>,
}

/// How and when a request arrived, and what it is stored under.
struct Arrival<'a> {
    instance: &'a InstanceName,
    key: EventKey,
    received_at_micros: i64,
    body_sha256: String,
    origin: Origin,
    /// The zone the sender wrote its naive timestamps in, if it does.
    zone: Option<domain::local_time::Zone>,
}

impl Receiver {
    pub fn new(
        source: Arc<dyn Source>,
        kind: Arc<dyn EventKind>,
        events: Arc<dyn EventStore>,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            source,
            kind,
            events,
            settings,
            clock,
        }
    }

    pub fn source(&self) -> &dyn Source {
        self.source.as_ref()
    }

    pub fn event_type(&self) -> &'static str {
        self.kind.event_type()
    }

    /// Checks the size and the sender, reads the body, stores the event once.
    pub async fn receive(&self, request: &WebhookRequest) -> Result<Outcome, ReceiveError> {
        match self.prepare(request).await? {
            Prepared::Pong => Ok(Outcome::Pong),
            Prepared::Event(prepared) => self.store(*prepared).await,
        }
    }

    /// An event the bundle fetched from the sender's API itself (an order
    /// reconciliation found missing, a WineSitting order the repair poll
    /// found): no signature to check; otherwise the same key and record as
    /// its webhook, and the same processing after.
    pub async fn receive_fetched(
        &self,
        instance: &InstanceName,
        body: Vec<u8>,
        request_id: String,
    ) -> Result<Outcome, ReceiveError> {
        let request = WebhookRequest {
            headers: HeaderMap::new(),
            body,
            request_id,
            path_params: Vec::new(),
        };
        let zone = self.source.time_zone(instance).await?;
        match self.prepare_from(instance, &request, Origin::Reconciliation, zone)? {
            Prepared::Pong => Ok(Outcome::Pong),
            Prepared::Event(prepared) => self.store(*prepared).await,
        }
    }

    /// Checks the size and the sender, reads the body, derives the event key
    /// and builds the record: no network call once the sender's secrets are
    /// cached.
    pub async fn prepare(&self, request: &WebhookRequest) -> Result<Prepared, ReceiveError> {
        let limit = self.settings.max_body_bytes;
        if request.body.len() > limit {
            return Err(ReceiveError::PayloadTooLarge {
                size: request.body.len(),
                limit,
            });
        }
        let instance = self.source.authenticate(request).await?;
        // Read from the document authentication just used: no call.
        let zone = self.source.time_zone(&instance).await?;
        self.prepare_from(&instance, request, Origin::Webhook, zone)
    }

    /// The one write, and what it came to.
    pub async fn store(&self, prepared: PreparedEvent) -> Result<Outcome, ReceiveError> {
        let mut record = prepared.record;
        let key = record.event_key.clone();
        let existing = match self.events.put_new(&record).await? {
            Put::New => return Ok(stored(record)),
            Put::Exists(existing) => existing,
        };
        // The same body; or the same event the other way: what reconciliation
        // or a repair poll fetched from the sender's API is rebuilt from its
        // resources, so its bytes never match the webhook's under the same
        // business key, and one is not a conflict with the other.
        if existing.body_sha256 == record.body_sha256 || existing.origin != record.origin {
            return Ok(match existing.status {
                EventStatus::Received => {
                    tracing::info!("duplicate request");
                    Outcome::Duplicate { event_key: key }
                }
                EventStatus::Quarantined => Outcome::Quarantined {
                    event_key: key,
                    reason: existing
                        .quarantine_reason
                        .unwrap_or_else(|| "unknown".into()),
                },
            });
        }
        // Another body under this key: kept under a key that names the body,
        // so its own repeats are duplicates.
        let conflict_key = conflict_key(&key, &record.body_sha256);
        record.event_key = conflict_key.clone();
        record.conflict_of = Some(key.clone());
        match self.events.put_new(&record).await? {
            Put::New => {
                tracing::warn!(conflict_of = %key, "a different body under an existing event key; kept under its own key");
                Ok(Outcome::Conflict {
                    event_key: conflict_key,
                    conflict_of: key,
                })
            }
            Put::Exists(_) => Ok(Outcome::Duplicate {
                event_key: conflict_key,
            }),
        }
    }

    fn prepare_from(
        &self,
        instance: &InstanceName,
        request: &WebhookRequest,
        origin: Origin,
        zone: Option<domain::local_time::Zone>,
    ) -> Result<Prepared, ReceiveError> {
        let received_at_micros = self.clock.now_micros();
        let meaning = match self.parse(&request.body) {
            Ok(body) if self.source.is_ping(&body) => return Ok(Prepared::Pong),
            Ok(body) => {
                self.note_declared_type(instance, &request.headers);
                self.kind
                    .interpret(body, &request.headers)
                    .and_then(|meaning| self.with_entity_key(instance, meaning))
            }
            Err(_) => Err(Malformed(Reason::InvalidJson)),
        };
        // Hashed once: the record keeps it, and some keys are made of it.
        let body_sha256 = sha256_hex(&request.body);
        let key = idempotency::event_key(KeyParts {
            source: self.source.name().as_str(),
            instance,
            event_type: self.kind.event_type(),
            sender_event_id: self.source.sender_event_id(&request.headers),
            identity: meaning.as_ref().ok().map(|(m, _)| &m.identity),
            body_sha256: &body_sha256,
            received_at_micros,
        });
        let (entity_key, quarantine) = match meaning {
            Ok((_, entity_key)) => (entity_key, None),
            Err(Malformed(reason)) => (None, Some(reason)),
        };
        let record = self.record(
            request,
            Arrival {
                instance,
                key,
                received_at_micros,
                body_sha256,
                origin,
                zone,
            },
            entity_key,
            quarantine,
        )?;
        // Every later line of this request carries its event and instance.
        let span = tracing::Span::current();
        span.record("event_key", tracing::field::display(&record.event_key));
        span.record("instance", tracing::field::display(instance));
        Ok(Prepared::Event(Box::new(PreparedEvent { record })))
    }

    /// The body as far as the receiver needs it: projected onto the kind's
    /// key fields, or whole when it is small (a ping is 15 bytes).
    fn parse(&self, body: &[u8]) -> serde_json::Result<Value> {
        match self.kind.key_fields() {
            Some(paths) if body.len() >= PROJECT_FROM_BYTES => {
                domain::projection::project(body, paths)
            }
            _ => serde_json::from_slice(body),
        }
    }

    /// The route decides the event type. A sender that names another one
    /// in its header (Revel's `X-Revel-Event-Type`) may simply name its
    /// types differently, so the request is stored as the route's type and
    /// the disagreement is logged and counted, never refused: refusing it
    /// would quarantine every event of such a sender, and a 202 is never
    /// retried.
    fn note_declared_type(&self, instance: &InstanceName, headers: &HeaderMap) {
        let route = self.kind.event_type();
        let Some(declared) = vendors::declared_event_type(self.source.name().as_str(), headers)
        else {
            return;
        };
        if declared.eq_ignore_ascii_case(route) {
            return;
        }
        tracing::warn!(
            declared = %telemetry::short_text(declared),
            route,
            "the event type header disagrees with the route; stored as the route's type"
        );
        telemetry::count(
            Metric::EventTypeMismatches,
            &telemetry::event_dimensions(self.source.name().as_str(), route, instance.as_str()),
        );
    }

    /// The meaning with the key of the entity it changes, checked now so a
    /// body whose entity can have no key is quarantined (and answered so)
    /// at once. Whether the state fits one item is the
    /// processor's to find (it skips a state too large, counted): measuring
    /// it here would mean building the whole body, which at the 1 MiB body
    /// limit took the receiver's peak memory from 10.8 to 21.7 MiB.
    fn with_entity_key(
        &self,
        instance: &InstanceName,
        meaning: Interpretation,
    ) -> Result<(Interpretation, Option<EntityKey>), Malformed> {
        let Some(change) = &meaning.entity else {
            return Ok((meaning, None));
        };
        let key = EntityKey::new(self.source.name(), instance, change.kind, &change.id)
            .map_err(|_| Malformed(Reason::InvalidEntityId))?;
        Ok((meaning, Some(key)))
    }

    fn record(
        &self,
        request: &WebhookRequest,
        arrival: Arrival<'_>,
        entity_key: Option<EntityKey>,
        quarantine: Option<Reason>,
    ) -> Result<EventRecord, ReceiveError> {
        let body = ArchivedBody::from_raw(&request.body);
        if body.bytes.len() > MAX_ARCHIVED_BODY_BYTES {
            // It could not be archived in one item, so it must not be acknowledged.
            return Err(ReceiveError::PayloadTooLarge {
                size: request.body.len(),
                limit: self.settings.max_body_bytes,
            });
        }
        let headers = self
            .source
            .archived_headers()
            .iter()
            .filter_map(|name| {
                let value = request.headers.get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), value.chars().take(256).collect()))
            })
            .collect();
        let received_secs = arrival.received_at_micros.div_euclid(1_000_000);
        Ok(EventRecord {
            event_key: arrival.key,
            source: self.source.name().to_string(),
            instance: arrival.instance.clone(),
            event_type: self.kind.event_type().to_owned(),
            status: if quarantine.is_some() {
                EventStatus::Quarantined
            } else {
                EventStatus::Received
            },
            received_at_micros: arrival.received_at_micros,
            body_encoding: if body.gzip {
                BodyEncoding::Gzip
            } else {
                BodyEncoding::Identity
            },
            body_bytes: body.original_len as u64,
            body: body.bytes,
            body_sha256: arrival.body_sha256,
            headers,
            quarantine_reason: quarantine.map(|reason| reason.as_str().to_owned()),
            entity_key,
            conflict_of: None,
            request_id: request.request_id.clone(),
            origin: arrival.origin,
            expires_at: received_secs + self.settings.retention.as_secs() as i64,
            replayed_at: None,
            time_zone: arrival.zone.map(|zone| zone.name().to_owned()),
        })
    }
}

/// The outcome of a record just stored.
fn stored(record: EventRecord) -> Outcome {
    match record.quarantine_reason {
        Some(reason) => {
            tracing::warn!(reason, "event quarantined");
            Outcome::Quarantined {
                event_key: record.event_key,
                reason,
            }
        }
        None => {
            tracing::info!("event accepted");
            Outcome::Accepted {
                event_key: record.event_key,
            }
        }
    }
}

/// The key a conflicting body is kept under: the original key and the
/// body's hash, so each different body is kept once.
pub fn conflict_key(original: &EventKey, body_sha256: &str) -> EventKey {
    let hash = &body_sha256[..body_sha256.len().min(32)];
    let raw = format!("{original}~conflict:{hash}");
    EventKey::parse(&raw).unwrap_or_else(|_| {
        // An original key near the length limit: hash it too.
        EventKey::parse(&format!(
            "conflict-sha256:{}:{hash}",
            sha256_hex(original.as_str().as_bytes())
        ))
        .expect("hex hashes make a valid key")
    })
}

/// The span every log line of one request is in: its request id, source and
/// event type from the start, its event key and instance once they are known.
pub fn request_span(receiver: &Receiver, request_id: &str) -> tracing::Span {
    tracing::info_span!(
        "request",
        request_id,
        source = receiver.source().name().as_str(),
        event_type = receiver.event_type(),
        event_key = tracing::field::Empty,
        instance = tracing::field::Empty,
    )
}

#[cfg(test)]
mod tests;
