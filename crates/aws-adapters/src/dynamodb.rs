//! DynamoDB adapters for [`EventStore`] and [`EntityStore`].
//!
//! Events table: hash key `event_key`; TTL attribute `expires_at`; a stream
//! of new images feeds the processor.
//! Entities table: hash key `entity_key`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use domain::error::DependencyError;
use domain::ids::{EntityKey, EventKey};
use ports::store::{
    decide_upsert, ArchivedBody, EntityStore, EntityUpsert, EventRecord, EventStatus, EventStore,
    ExistingEvent, Origin, Put, Rank, StoredEntity, UpsertDecision, Upserted,
};

const SERVICE: &str = "dynamodb";

/// How often an upsert re-reads and tries again when the entity changed
/// between its two steps (another change of the same entity landed first).
const UPSERT_ATTEMPTS: usize = 4;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The item a record is stored as. Public so the benchmarks can measure
/// building it.
pub fn event_item(record: &EventRecord) -> HashMap<String, AttributeValue> {
    serde_dynamo::to_item(record).expect("an event record always serialises to an item")
}

/// Reads a record from an item of the events table.
pub fn event_record(
    item: HashMap<String, AttributeValue>,
) -> Result<EventRecord, serde_dynamo::Error> {
    serde_dynamo::from_item(item)
}

fn existing_event(item: &HashMap<String, AttributeValue>) -> Option<ExistingEvent> {
    Some(ExistingEvent {
        status: EventStatus::parse(item.get("status")?.as_s().ok()?)?,
        body_sha256: item.get("body_sha256")?.as_s().ok()?.clone(),
        quarantine_reason: item
            .get("quarantine_reason")
            .and_then(|v| v.as_s().ok())
            .cloned(),
        origin: match item
            .get("origin")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
        {
            Some("reconciliation") => Origin::Reconciliation,
            _ => Origin::Webhook,
        },
    })
}

/// An entity's state as JSON text, whether it is stored plain (`state`) or
/// gzip-compressed (`state_gz`). Public so tools and tests read it the same way.
pub fn entity_state(item: &HashMap<String, AttributeValue>) -> Option<String> {
    if let Some(plain) = item.get("state").and_then(|v| v.as_s().ok()) {
        return Some(plain.clone());
    }
    let compressed = item.get("state_gz")?.as_b().ok()?;
    let body = ArchivedBody {
        bytes: compressed.as_ref().to_vec(),
        gzip: true,
        original_len: compressed.as_ref().len() * 4,
    };
    String::from_utf8(body.raw().ok()?).ok()
}

fn unreadable(operation: &'static str, what: &'static str) -> DependencyError {
    DependencyError::new(SERVICE, operation, what)
}

/// A conditional UpdateItem's result: `Ok(false)` when its condition did
/// not hold.
fn conditional_update<T>(
    result: Result<
        T,
        SdkError<
            aws_sdk_dynamodb::operation::update_item::UpdateItemError,
            aws_sdk_dynamodb::config::http::HttpResponse,
        >,
    >,
) -> Result<bool, DependencyError> {
    match result {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
            Ok(false)
        }
        Err(e) => Err(DependencyError::new(SERVICE, "UpdateItem", e)),
    }
}

/// A client and the name of the table it writes.
struct Table {
    client: Client,
    table: String,
}

impl Table {
    fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    async fn get_item(
        &self,
        key_name: &str,
        key: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, DependencyError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .key(key_name, s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DependencyError::new(SERVICE, "GetItem", e))?
            .item)
    }
}

/// The events archive in DynamoDB.
pub struct DynamoEventStore(Table);

impl DynamoEventStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self(Table::new(client, table))
    }
}

/// The entities table in DynamoDB.
pub struct DynamoEntityStore(Table);

impl DynamoEntityStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self(Table::new(client, table))
    }
}

#[async_trait]
impl EventStore for DynamoEventStore {
    async fn put_new(&self, record: &EventRecord) -> Result<Put, DependencyError> {
        let result = self
            .0
            .client
            .put_item()
            .table_name(&self.0.table)
            .set_item(Some(event_item(record)))
            .condition_expression("attribute_not_exists(event_key)")
            // The stored record comes back with the refusal: a duplicate
            // costs this one request, no read.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Put::New),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let returned = match e.err() {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                        c.item().cloned()
                    }
                    _ => None,
                };
                let stored = match returned {
                    Some(item) => Some(item),
                    // Only endpoints that don't return the item with the
                    // refusal (older local emulators) get here: read it.
                    None => {
                        self.0
                            .get_item("event_key", record.event_key.as_str())
                            .await?
                    }
                };
                stored
                    .as_ref()
                    .and_then(existing_event)
                    .map(Put::Exists)
                    .ok_or_else(|| unreadable("PutItem", "stored event record is unreadable"))
            }
            Err(e) => Err(DependencyError::new(SERVICE, "PutItem", e)),
        }
    }

    async fn get(&self, key: &EventKey) -> Result<Option<EventRecord>, DependencyError> {
        match self.0.get_item("event_key", key.as_str()).await? {
            None => Ok(None),
            Some(item) => event_record(item)
                .map(Some)
                .map_err(|e| DependencyError::new(SERVICE, "GetItem", e)),
        }
    }

    async fn mark_for_replay(
        &self,
        key: &EventKey,
        from: EventStatus,
        at_micros: i64,
    ) -> Result<bool, DependencyError> {
        let mut request = self
            .0
            .client
            .update_item()
            .table_name(&self.0.table)
            .key("event_key", s(key.as_str()))
            .update_expression("SET #status = :received, replayed_at = :at")
            .condition_expression("#status = :from")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":received", s(EventStatus::Received.as_str()))
            .expression_attribute_values(":from", s(from.as_str()))
            .expression_attribute_values(":at", n(at_micros));
        if from == EventStatus::Received {
            // Records of the earlier status design read as received
            // (`EventStatus::parse`); stored, they still say so in their words.
            request = request
                .condition_expression("#status IN (:from, :processing, :done)")
                .expression_attribute_values(":processing", s("processing"))
                .expression_attribute_values(":done", s("done"));
        }
        let result = request.send().await;
        conditional_update(result)
    }
}

/// What of a stored entity an upsert compares with.
struct StoredRank {
    rank: Rank,
    state_sha256: String,
    revision: u64,
    delivered_revision: Option<u64>,
}

fn number<T: std::str::FromStr>(item: &HashMap<String, AttributeValue>, name: &str) -> Option<T> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn stored_rank(item: &HashMap<String, AttributeValue>) -> Option<StoredRank> {
    Some(StoredRank {
        rank: Rank {
            version: number(item, "version")?,
            // Entities written before tie-breakers existed rank lowest
            // among equal versions.
            tiebreak: text(item, "tiebreak").unwrap_or_default(),
        },
        state_sha256: text(item, "state_sha256").unwrap_or_default(),
        revision: number(item, "revision").unwrap_or(0),
        delivered_revision: number(item, "delivered_revision"),
    })
}

/// The condition under which `:version`/`:tiebreak` outrank what is stored.
const OUTRANKS: &str = "(#version < :version OR (#version = :version AND (attribute_not_exists(tiebreak) OR tiebreak < :tiebreak)))";

impl DynamoEntityStore {
    /// Writes a new state and counts a revision, if the change outranks
    /// the stored one and its state differs; otherwise the stored item, as
    /// the refusal returns it (`Err(None)` when it doesn't).
    async fn write_state(
        &self,
        change: &EntityUpsert,
    ) -> Result<Result<u64, Option<HashMap<String, AttributeValue>>>, DependencyError> {
        // A write is charged by the item's whole size, per KB, and so is every
        // later update of the item: large states are kept gzip-compressed.
        let state = ArchivedBody::compressed_from(
            change.state_json.as_bytes(),
            ports::store::COMPRESS_STATE_FROM_BYTES,
        );
        let (state_attribute, state_value, other_attribute) = if state.gzip {
            (
                "state_gz",
                AttributeValue::B(Blob::new(state.bytes)),
                "state",
            )
        } else {
            ("state", s(&change.state_json), "state_gz")
        };
        let result = self
            .0
            .client
            .update_item()
            .table_name(&self.0.table)
            .key("entity_key", s(change.key.as_str()))
            .update_expression(
                "SET #source = :source, #instance = :instance, #kind = :kind, entity_id = :id, \
                 #version = :version, tiebreak = :tiebreak, #state = :state, \
                 state_sha256 = :sha, last_event_key = :event, \
                 #revision = if_not_exists(#revision, :zero) + :one REMOVE #other_state",
            )
            .condition_expression(format!(
                "attribute_not_exists(entity_key) OR ({OUTRANKS} AND (attribute_not_exists(state_sha256) OR state_sha256 <> :sha))"
            ))
            .expression_attribute_names("#source", "source")
            .expression_attribute_names("#instance", "instance")
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#state", state_attribute)
            .expression_attribute_names("#other_state", other_attribute)
            .expression_attribute_names("#revision", "revision")
            .expression_attribute_values(":source", s(change.source))
            .expression_attribute_values(":instance", s(change.instance.as_str()))
            .expression_attribute_values(":kind", s(change.kind.as_str()))
            .expression_attribute_values(":id", s(&change.entity_id))
            .expression_attribute_values(":version", n(change.rank.version))
            .expression_attribute_values(":tiebreak", s(&change.rank.tiebreak))
            .expression_attribute_values(":state", state_value)
            .expression_attribute_values(":sha", s(&change.state_sha256))
            .expression_attribute_values(":event", s(change.event_key.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Ok(output
                .attributes
                .as_ref()
                .and_then(|a| number(a, "revision"))
                .unwrap_or(0))),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let stored = match e.err() {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                        c.item().cloned()
                    }
                    _ => None,
                };
                Ok(Err(stored))
            }
            Err(e) => Err(DependencyError::new(SERVICE, "UpdateItem", e)),
        }
    }

    /// Moves the rank of an entity whose state is the change's: `false`
    /// when the entity changed meanwhile.
    async fn move_rank(&self, change: &EntityUpsert) -> Result<bool, DependencyError> {
        let result = self
            .0
            .client
            .update_item()
            .table_name(&self.0.table)
            .key("entity_key", s(change.key.as_str()))
            .update_expression(
                "SET #version = :version, tiebreak = :tiebreak, last_event_key = :event",
            )
            .condition_expression(format!("{OUTRANKS} AND state_sha256 = :sha"))
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":version", n(change.rank.version))
            .expression_attribute_values(":tiebreak", s(&change.rank.tiebreak))
            .expression_attribute_values(":sha", s(&change.state_sha256))
            .expression_attribute_values(":event", s(change.event_key.as_str()))
            .send()
            .await;
        conditional_update(result)
    }
}

#[async_trait]
impl EntityStore for DynamoEntityStore {
    async fn upsert(&self, change: &EntityUpsert) -> Result<Upserted, DependencyError> {
        for _ in 0..UPSERT_ATTEMPTS {
            let item = match self.write_state(change).await? {
                Ok(revision) => return Ok(Upserted::Applied { revision }),
                Err(Some(item)) => item,
                // Only endpoints that don't return the item with the refusal
                // (older local emulators) get here: read it.
                Err(None) => match self.0.get_item("entity_key", change.key.as_str()).await? {
                    Some(item) => item,
                    // Removed meanwhile (TTL): write it anew.
                    None => continue,
                },
            };
            let stored = stored_rank(&item)
                .ok_or_else(|| unreadable("UpdateItem", "stored entity is unreadable"))?;
            let decision = decide_upsert(
                Some((
                    &stored.rank,
                    &stored.state_sha256,
                    stored.revision,
                    stored.delivered_revision,
                )),
                change,
            );
            match decision {
                UpsertDecision::Done(outcome) => return Ok(outcome),
                UpsertDecision::MoveRank(outcome) => {
                    if self.move_rank(change).await? {
                        return Ok(outcome);
                    }
                }
                // The entity changed between the write and the read: again.
                UpsertDecision::Write => {}
            }
        }
        Err(unreadable(
            "UpdateItem",
            "the entity kept changing under the upsert",
        ))
    }

    async fn get(&self, key: &EntityKey) -> Result<Option<StoredEntity>, DependencyError> {
        let Some(item) = self.0.get_item("entity_key", key.as_str()).await? else {
            return Ok(None);
        };
        let unreadable = || unreadable("GetItem", "stored entity is unreadable");
        let rank = stored_rank(&item).ok_or_else(unreadable)?;
        Ok(Some(StoredEntity {
            kind: text(&item, "kind").ok_or_else(unreadable)?,
            entity_id: text(&item, "entity_id").ok_or_else(unreadable)?,
            rank: rank.rank,
            revision: rank.revision,
            state_json: entity_state(&item).ok_or_else(unreadable)?,
            last_event_key: text(&item, "last_event_key"),
            delivered_revision: rank.delivered_revision,
        }))
    }

    async fn mark_delivered(
        &self,
        key: &EntityKey,
        revision: u64,
    ) -> Result<bool, DependencyError> {
        let result = self
            .0
            .client
            .update_item()
            .table_name(&self.0.table)
            .key("entity_key", s(key.as_str()))
            .update_expression("SET delivered_revision = :r")
            // Monotonic: a slow worker can't move it back to an older revision.
            .condition_expression(
                "attribute_exists(entity_key) AND (attribute_not_exists(delivered_revision) OR delivered_revision < :r)",
            )
            .expression_attribute_values(":r", n(revision))
            .send()
            .await;
        conditional_update(result)
    }
}
