//! Replaying archived events through the normal path, for operators: an
//! event quarantined by an older version of the code, or one a delivery left
//! unfinished after its sender gave up.
//!
//! Nothing is verified again (the event was authenticated when it was
//! archived, and its signature may no longer check out against a rotated
//! secret); the archived body is interpreted by the current code, and the
//! work that follows is the pipeline's own (entity upsert newest-wins, job
//! with its FIFO deduplication id, then the record marked `done`), under the
//! key the event is archived under. So:
//!
//! - a `done` event is a duplicate: nothing is written;
//! - a `quarantined` event the code now understands is taken back with one
//!   conditional write (`quarantined` → `processing`, with a lease, as a
//!   redelivery takes over an unfinished event), then finished; if finishing
//!   fails the lease is released and the next replay (or redelivery) finishes
//!   it, so it is processed once;
//! - a `quarantined` event the code still doesn't understand stays as it is;
//! - a `processing` event is finished only once its lease ran out.
//!
//! [`Ingestor::plan_replay`] decides what would happen without writing
//! anything (the operator tool's dry run); [`Ingestor::replay`] does it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::{now_micros, now_secs, Ingestor, Stores, Work};
use crate::config::Settings;
use crate::error::{DependencyError, IngestError};
use crate::ids::{EntityKey, EventKey, InstanceName};
use crate::queue::JobKind;
use crate::secrets::{SecretCache, SecretDocument, SecretSource};
use crate::sources::booking::{Booking, BookingFamily};
use crate::sources::revel::{Revel, RevelEventType};
use crate::sources::vinesos::{VinesOs, VinesOsEvent};
use crate::sources::winesitting::{WineSitting, WineSittingEvent};
use crate::sources::{EventKind, Malformed, Source};
use crate::store::{ArchivedBody, EventStatus};

/// An archived event as the events table holds it (the item
/// [`crate::store::dynamodb::event_item`] writes, plus what processing and
/// replays add to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedEvent {
    pub key: EventKey,
    pub source: String,
    pub instance: InstanceName,
    pub event_type: String,
    pub status: EventStatus,
    pub received_at_micros: i64,
    /// `None` when the item was read without its body (a listing).
    pub body: Option<ArchivedBody>,
    pub body_bytes: Option<u64>,
    pub body_sha256: Option<String>,
    pub headers: Vec<(String, String)>,
    pub quarantine_reason: Option<String>,
    pub entity_key: Option<String>,
    pub request_id: Option<String>,
    /// `webhook` or `reconciliation`.
    pub origin: Option<String>,
    /// Unix seconds; 0 when no delivery owns it.
    pub lease_until: i64,
    /// Unix seconds when DynamoDB TTL removes it.
    pub expires_at: Option<i64>,
    /// When an operator last replayed it (µs).
    pub replayed_at_micros: Option<i64>,
}

/// An events-table item that is not an archived event as this code writes them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored event record is unreadable: {0}")]
pub struct UnreadableEvent(pub &'static str);

impl ArchivedEvent {
    /// Reads an item of the events table. The body is optional, so a
    /// listing can leave it out of its projection.
    pub fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Self, UnreadableEvent> {
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let number = |name: &str| -> Option<i64> { item.get(name)?.as_n().ok()?.parse().ok() };
        let key = text("event_key").ok_or(UnreadableEvent("no event_key"))?;
        let body = match item.get("body").and_then(|v| v.as_b().ok()) {
            None => None,
            Some(blob) => {
                let bytes = blob.as_ref().to_vec();
                let gzip = match text("body_encoding").as_deref() {
                    Some("gzip") => true,
                    None | Some("identity") => false,
                    Some(_) => return Err(UnreadableEvent("unknown body_encoding")),
                };
                let original_len = number("body_bytes")
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(bytes.len());
                Some(ArchivedBody {
                    bytes,
                    gzip,
                    original_len,
                })
            }
        };
        let mut headers: Vec<(String, String)> = item
            .get("headers")
            .and_then(|v| v.as_m().ok())
            .map(|map| {
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone())))
                    .collect()
            })
            .unwrap_or_default();
        headers.sort();
        Ok(Self {
            key: EventKey::parse(&key).map_err(|_| UnreadableEvent("invalid event_key"))?,
            source: text("source").ok_or(UnreadableEvent("no source"))?,
            instance: InstanceName::parse(&text("instance").ok_or(UnreadableEvent("no instance"))?)
                .map_err(|_| UnreadableEvent("invalid instance"))?,
            event_type: text("event_type").ok_or(UnreadableEvent("no event_type"))?,
            status: text("status")
                .as_deref()
                .and_then(EventStatus::parse)
                .ok_or(UnreadableEvent("no valid status"))?,
            received_at_micros: number("received_at").ok_or(UnreadableEvent("no received_at"))?,
            body,
            body_bytes: number("body_bytes").and_then(|n| u64::try_from(n).ok()),
            body_sha256: text("body_sha256"),
            headers,
            quarantine_reason: text("quarantine_reason"),
            entity_key: text("entity_key"),
            request_id: text("request_id"),
            origin: text("origin"),
            lease_until: number("lease_until").unwrap_or(0),
            expires_at: number("expires_at"),
            replayed_at_micros: number("replayed_at"),
        })
    }

    /// The body as received (decompressed); `None` when not read.
    pub fn raw_body(&self) -> Option<std::io::Result<Vec<u8>>> {
        self.body.as_ref().map(ArchivedBody::raw)
    }
}

/// The events archive as a replay reads and takes it back.
#[async_trait]
pub trait Archive: Send + Sync {
    /// The whole record, body included (strongly consistent).
    async fn load(&self, key: &EventKey) -> Result<Option<ArchivedEvent>, DependencyError>;
    /// Takes a quarantined event back for processing: status `processing`
    /// with a lease until `lease_until` (Unix s), its entity key, and when it
    /// was replayed. `false` when it is no longer quarantined.
    async fn reopen(
        &self,
        key: &EventKey,
        lease_until: i64,
        entity: Option<&EntityKey>,
        replayed_at_micros: i64,
    ) -> Result<bool, DependencyError>;
}

/// The events table in DynamoDB, as [`Archive`].
pub struct DynamoArchive {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoArchive {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl Archive for DynamoArchive {
    async fn load(&self, key: &EventKey) -> Result<Option<ArchivedEvent>, DependencyError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("event_key", AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DependencyError::new("dynamodb", "GetItem", e))?;
        output
            .item
            .map(|item| ArchivedEvent::from_item(&item))
            .transpose()
            .map_err(|e| DependencyError::new("dynamodb", "GetItem", e))
    }

    async fn reopen(
        &self,
        key: &EventKey,
        lease_until: i64,
        entity: Option<&EntityKey>,
        replayed_at_micros: i64,
    ) -> Result<bool, DependencyError> {
        let mut update =
            String::from("SET #status = :processing, lease_until = :lease, replayed_at = :now");
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("event_key", AttributeValue::S(key.to_string()))
            .condition_expression("#status = :quarantined")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(
                ":processing",
                AttributeValue::S(EventStatus::Processing.as_str().into()),
            )
            .expression_attribute_values(
                ":quarantined",
                AttributeValue::S(EventStatus::Quarantined.as_str().into()),
            )
            .expression_attribute_values(":lease", AttributeValue::N(lease_until.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(replayed_at_micros.to_string()));
        if let Some(entity) = entity {
            update.push_str(", entity_key = :entity");
            request = request
                .expression_attribute_values(":entity", AttributeValue::S(entity.to_string()));
        }
        match request.update_expression(update).send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(DependencyError::new("dynamodb", "UpdateItem", e)),
        }
    }
}

/// What replaying an event does, decided before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayAction {
    /// Already done: a replay writes nothing.
    Duplicate,
    /// This code doesn't understand the body either: nothing is written.
    StillQuarantined { reason: String },
    /// A delivery owns it until `lease_until` (Unix s): try again later.
    InProgress { lease_until: i64 },
    /// Understood: the entity upsert and the job run, then the record is
    /// marked done.
    Apply {
        from: EventStatus,
        entity_key: Option<EntityKey>,
        job: Option<JobKind>,
    },
}

/// A replay decided by [`Ingestor::plan_replay`]; [`Ingestor::replay`] carries it out.
pub struct ReplayPlan {
    pub event_key: EventKey,
    pub action: ReplayAction,
    work: Option<Work>,
    received_at_micros: i64,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// Entity upserted (or already as new), job enqueued, record done.
    Processed,
    /// It was done already; nothing written.
    Duplicate,
    /// Still not understood; left quarantined.
    StillQuarantined { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no receiver for {sender} {event_type}")]
    NoReceiver { sender: String, event_type: String },
    #[error("the archived body is missing or unreadable")]
    UnreadableBody,
    #[error("a delivery is processing it until {lease_until} (Unix s); try again later")]
    InProgress { lease_until: i64 },
    #[error("it changed while being replayed; run the replay again")]
    Changed,
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

impl From<DependencyError> for ReplayError {
    fn from(error: DependencyError) -> Self {
        Self::Ingest(error.into())
    }
}

impl Ingestor {
    /// What replaying `event` would do, with nothing written.
    pub fn plan_replay(&self, event: &ArchivedEvent) -> Result<ReplayPlan, ReplayError> {
        if event.source != self.source.name() || event.event_type != self.kind.event_type() {
            return Err(ReplayError::NoReceiver {
                sender: event.source.clone(),
                event_type: event.event_type.clone(),
            });
        }
        let plan = |action, work| ReplayPlan {
            event_key: event.key.clone(),
            action,
            work,
            received_at_micros: event.received_at_micros,
        };
        if event.status == EventStatus::Done {
            return Ok(plan(ReplayAction::Duplicate, None));
        }
        if event.status == EventStatus::Processing && event.lease_until >= now_secs() {
            let lease_until = event.lease_until;
            return Ok(plan(ReplayAction::InProgress { lease_until }, None));
        }
        let raw = event
            .raw_body()
            .ok_or(ReplayError::UnreadableBody)?
            .map_err(|_| ReplayError::UnreadableBody)?;
        match self.interpret_archived(event, &raw) {
            Err(Malformed(reason)) => Ok(plan(
                ReplayAction::StillQuarantined {
                    reason: reason.to_owned(),
                },
                None,
            )),
            Ok(work) => {
                let action = ReplayAction::Apply {
                    from: event.status,
                    entity_key: work.entity.as_ref().map(|e| e.key.clone()),
                    job: self
                        .job(&work, event.received_at_micros)
                        .map(|j| j.message.job),
                };
                Ok(plan(action, Some(work)))
            }
        }
    }

    /// The body read by the current code, as a delivery with the archived
    /// headers would be, under the key it is archived under.
    fn interpret_archived(&self, event: &ArchivedEvent, raw: &[u8]) -> Result<Work, Malformed> {
        let mut headers = HeaderMap::new();
        for (name, value) in &event.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        let body: Value = serde_json::from_slice(raw).map_err(|_| Malformed("invalid_json"))?;
        if self.source.is_ping(&body) {
            return Err(Malformed("ping"));
        }
        self.check_declared_type(&headers)?;
        let meaning = self.kind.interpret(body)?;
        self.plan(&event.instance, &event.key, meaning)
    }

    /// Carries out `plan`: the one conditional write that takes the event
    /// back, then the pipeline's own steps (upsert and job, then the record marked done).
    pub async fn replay(
        &self,
        archive: &dyn Archive,
        plan: ReplayPlan,
    ) -> Result<Replayed, ReplayError> {
        let key = &plan.event_key;
        let lease = || now_secs() + self.settings.processing_lease.as_secs() as i64;
        let from = match plan.action {
            ReplayAction::Duplicate => return Ok(Replayed::Duplicate),
            ReplayAction::StillQuarantined { reason } => {
                return Ok(Replayed::StillQuarantined { reason })
            }
            ReplayAction::InProgress { lease_until } => {
                return Err(ReplayError::InProgress { lease_until })
            }
            ReplayAction::Apply { from, .. } => from,
        };
        let work = plan.work.as_ref().ok_or(ReplayError::Changed)?;
        let taken = match from {
            EventStatus::Quarantined => {
                let entity = work.entity.as_ref().map(|e| &e.key);
                archive.reopen(key, lease(), entity, now_micros()).await?
            }
            EventStatus::Processing => self.stores.events.claim(key, now_secs(), lease()).await?,
            EventStatus::Done => false,
        };
        if !taken {
            return Err(ReplayError::Changed);
        }
        tracing::info!(event_key = %key, from = from.as_str(), "replaying an archived event");
        self.apply(work, plan.received_at_micros).await?;
        self.stores.events.mark_done(key).await?;
        Ok(Replayed::Processed)
    }
}

/// A secret source for receivers that never authenticate (replays).
struct NoSecrets;

#[async_trait]
impl SecretSource for NoSecrets {
    async fn fetch(&self) -> Result<SecretDocument, DependencyError> {
        Err(DependencyError::new(
            "secretsmanager",
            "GetSecretValue",
            "a replay reads no secret",
        ))
    }
}

/// The receiver that reads archived events of `source` and `event_type`,
/// writing through `stores`. It reads no secret: replays verify nothing.
pub fn replay_receiver(
    source: &str,
    event_type: &str,
    stores: Stores,
    settings: Settings,
) -> Option<Ingestor> {
    fn kind_of<K: EventKind + Clone + 'static>(
        kinds: &[K],
        event_type: &str,
    ) -> Option<Arc<dyn EventKind>> {
        kinds
            .iter()
            .find(|k| EventKind::event_type(*k) == event_type)
            .map(|k| Arc::new(k.clone()) as Arc<dyn EventKind>)
    }
    let secrets = || SecretCache::new(NoSecrets, Duration::from_secs(3600));
    let (source, kind): (Arc<dyn Source>, _) = match source {
        "revel" => (
            Arc::new(Revel::new(secrets())),
            kind_of(&RevelEventType::ALL, event_type),
        ),
        "vinesos" => (
            Arc::new(VinesOs::new(secrets())),
            kind_of(&VinesOsEvent::ALL, event_type),
        ),
        "booking" => (
            Arc::new(Booking::new(secrets(), "x-signature")),
            kind_of(&BookingFamily::ALL, event_type),
        ),
        "winesitting" => (
            Arc::new(WineSitting::new(secrets())),
            kind_of(&[WineSittingEvent], event_type),
        ),
        _ => return None,
    };
    Some(Ingestor::new(source, kind?, stores, settings))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::fakes::{MemoryEntities, MemoryEvents, MemoryQueue, MemoryStores};
    use crate::idempotency::sha256_hex;
    use crate::store::{EventStore, NewEvent, Origin, StoredEvent};

    /// The in-memory archive as [`Archive`].
    struct MemoryArchive(Arc<MemoryEvents>);

    #[async_trait]
    impl Archive for MemoryArchive {
        async fn load(&self, key: &EventKey) -> Result<Option<ArchivedEvent>, DependencyError> {
            let records = self.0.records.lock().unwrap();
            Ok(records.get(key).map(|(event, stored)| ArchivedEvent {
                key: event.key.clone(),
                source: event.source.to_owned(),
                instance: event.instance.clone(),
                event_type: event.event_type.to_owned(),
                status: stored.status,
                received_at_micros: stored.received_at_micros,
                body: Some(event.body.clone()),
                body_bytes: Some(event.body.original_len as u64),
                body_sha256: Some(event.body_sha256.clone()),
                headers: event.headers.clone(),
                quarantine_reason: stored.quarantine_reason.clone(),
                entity_key: None,
                request_id: Some(event.request_id.clone()),
                origin: Some(event.origin.as_str().to_owned()),
                lease_until: stored.lease_until,
                expires_at: Some(event.expires_at),
                replayed_at_micros: None,
            }))
        }

        async fn reopen(
            &self,
            key: &EventKey,
            lease_until: i64,
            _entity: Option<&EntityKey>,
            _replayed_at_micros: i64,
        ) -> Result<bool, DependencyError> {
            let mut records = self.0.records.lock().unwrap();
            match records.get_mut(key) {
                Some((_, stored)) if stored.status == EventStatus::Quarantined => {
                    stored.status = EventStatus::Processing;
                    stored.lease_until = lease_until;
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
    }

    struct Harness {
        events: Arc<MemoryEvents>,
        entities: Arc<MemoryEntities>,
        queue: Arc<MemoryQueue>,
        archive: MemoryArchive,
        receiver: Ingestor,
    }

    fn harness() -> Harness {
        let memory = MemoryStores::default();
        let (events, entities, queue) = (
            memory.events.clone(),
            memory.entities.clone(),
            memory.queue.clone(),
        );
        let stores = memory.stores();
        let receiver =
            replay_receiver("revel", "customer.created", stores, Settings::default()).unwrap();
        Harness {
            archive: MemoryArchive(events.clone()),
            events,
            entities,
            queue,
            receiver,
        }
    }

    const CUSTOMER: &str =
        r#"{"uuid": "c-1", "updated_date": "2024-01-02T03:04:05", "first_name": "Ann"}"#;

    /// Archives `body` as an earlier version of the code did, with `status`.
    async fn archived(h: &Harness, body: &str, status: EventStatus, lease_until: i64) -> EventKey {
        let key = EventKey::parse(&format!(
            "revel:demo:customer.created:{}",
            sha256_hex(body.as_bytes())
        ))
        .unwrap();
        let event = NewEvent {
            key: key.clone(),
            source: "revel",
            instance: InstanceName::parse("demo").unwrap(),
            event_type: "customer.created",
            status,
            received_at_micros: 1_700_000_000_000_000,
            body: ArchivedBody::from_raw(body.as_bytes()),
            body_sha256: sha256_hex(body.as_bytes()),
            headers: vec![("x-revel-event-type".into(), "customer.created".into())],
            quarantine_reason: (status == EventStatus::Quarantined).then_some("missing_field"),
            entity_key: None,
            request_id: "r".into(),
            origin: Origin::Webhook,
            lease_until,
            expires_at: 0,
        };
        h.events.insert_new(&event).await.unwrap();
        key
    }

    async fn replay(h: &Harness, key: &EventKey) -> Result<Replayed, ReplayError> {
        let event = h.archive.load(key).await.unwrap().unwrap();
        let plan = h.receiver.plan_replay(&event)?;
        h.receiver.replay(&h.archive, plan).await
    }

    fn stored(h: &Harness, key: &EventKey) -> StoredEvent {
        h.events.records.lock().unwrap()[key].1.clone()
    }

    #[tokio::test]
    async fn a_quarantined_event_the_code_now_understands_is_processed_once() {
        let h = harness();
        let key = archived(&h, CUSTOMER, EventStatus::Quarantined, 0).await;
        assert_eq!(replay(&h, &key).await.unwrap(), Replayed::Processed);
        assert_eq!(stored(&h, &key).status, EventStatus::Done);
        assert_eq!(h.entities.entities.lock().unwrap().len(), 1);
        assert_eq!(h.queue.len(), 1);
        assert_eq!(
            h.queue.jobs.lock().unwrap()[0].message.event_key,
            key.as_str()
        );

        assert_eq!(replay(&h, &key).await.unwrap(), Replayed::Duplicate);
        let (_, revision) = h
            .entities
            .entities
            .lock()
            .unwrap()
            .values()
            .next()
            .cloned()
            .unwrap();
        assert_eq!((revision, h.queue.len()), (1, 1));
    }

    #[tokio::test]
    async fn a_body_still_not_understood_stays_quarantined_with_nothing_written() {
        let h = harness();
        let key = archived(&h, r#"{"uuid": "c-1"}"#, EventStatus::Quarantined, 0).await;
        let outcome = replay(&h, &key).await.unwrap();
        assert!(
            matches!(outcome, Replayed::StillQuarantined { .. }),
            "{outcome:?}"
        );
        assert_eq!(stored(&h, &key).status, EventStatus::Quarantined);
        assert!(h.entities.entities.lock().unwrap().is_empty() && h.queue.is_empty());
    }

    #[tokio::test]
    async fn planning_a_replay_writes_nothing() {
        let h = harness();
        let key = archived(&h, CUSTOMER, EventStatus::Quarantined, 0).await;
        let event = h.archive.load(&key).await.unwrap().unwrap();
        let plan = h.receiver.plan_replay(&event).unwrap();
        assert!(matches!(
            plan.action,
            ReplayAction::Apply {
                from: EventStatus::Quarantined,
                job: Some(JobKind::SyncEntity),
                entity_key: Some(_)
            }
        ));
        assert_eq!(stored(&h, &key).status, EventStatus::Quarantined);
        assert!(h.entities.entities.lock().unwrap().is_empty() && h.queue.is_empty());
    }

    #[tokio::test]
    async fn an_unfinished_event_is_finished_only_after_its_lease() {
        let h = harness();
        let owned = archived(&h, CUSTOMER, EventStatus::Processing, now_secs() + 60).await;
        assert!(matches!(
            replay(&h, &owned).await,
            Err(ReplayError::InProgress { .. })
        ));
        assert!(h.queue.is_empty());
        h.events.release(&owned).await.unwrap();
        assert_eq!(replay(&h, &owned).await.unwrap(), Replayed::Processed);
        assert_eq!(stored(&h, &owned).status, EventStatus::Done);
    }

    #[test]
    fn every_source_and_event_type_has_a_replay_receiver() {
        let stores = || Stores {
            events: Arc::new(MemoryEvents::default()),
            entities: Arc::new(MemoryEntities::default()),
            jobs: Arc::new(MemoryQueue::default()),
        };
        for (source, event_type) in [
            ("revel", "order.finalized"),
            ("vinesos", VinesOsEvent::ALL[0].event_type()),
            ("booking", EventKind::event_type(&BookingFamily::ALL[0])),
            ("winesitting", "winesitting.event"),
        ] {
            let receiver = replay_receiver(source, event_type, stores(), Settings::default());
            assert!(receiver.is_some(), "{source} {event_type}");
        }
        assert!(replay_receiver("revel", "nope", stores(), Settings::default()).is_none());
    }
}
