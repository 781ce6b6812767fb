//! DynamoDB adapters for [`EventStore`] and [`EntityStore`].
//!
//! Events table: hash key `event_key`; TTL attribute `expires_at`.
//! Entities table: hash key `entity_key`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use super::{
    ArchivedBody, EntityStore, EntityUpsert, EventStatus, EventStore, Inserted, NewEvent,
    StoredEntity, StoredEvent, Upserted,
};
use crate::error::DependencyError;
use crate::ids::{EntityKey, EventKey};

const SERVICE: &str = "dynamodb";

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The archived record of an event, as one DynamoDB item. Public so the
/// benchmarks can measure building it.
pub fn event_item(event: &NewEvent) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::with_capacity(18);
    item.insert("event_key".into(), s(event.key.as_str()));
    item.insert("source".into(), s(event.source));
    item.insert("instance".into(), s(event.instance.as_str()));
    item.insert("event_type".into(), s(event.event_type));
    item.insert("status".into(), s(event.status.as_str()));
    item.insert("received_at".into(), n(event.received_at_micros));
    item.insert(
        "body".into(),
        AttributeValue::B(Blob::new(event.body.bytes.clone())),
    );
    item.insert(
        "body_encoding".into(),
        s(if event.body.gzip { "gzip" } else { "identity" }),
    );
    item.insert("body_bytes".into(), n(event.body.original_len));
    item.insert("body_sha256".into(), s(&event.body_sha256));
    if !event.headers.is_empty() {
        let headers = event
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), s(v)))
            .collect();
        item.insert("headers".into(), AttributeValue::M(headers));
    }
    if let Some(reason) = event.quarantine_reason {
        item.insert("quarantine_reason".into(), s(reason));
    }
    if let Some(entity) = &event.entity_key {
        item.insert("entity_key".into(), s(entity.as_str()));
    }
    item.insert("request_id".into(), s(&event.request_id));
    item.insert("origin".into(), s(event.origin.as_str()));
    item.insert("lease_until".into(), n(event.lease_until));
    item.insert("expires_at".into(), n(event.expires_at));
    item
}

fn stored_event(item: &HashMap<String, AttributeValue>) -> Option<StoredEvent> {
    let number = |name: &str| -> Option<i64> { item.get(name)?.as_n().ok()?.parse().ok() };
    Some(StoredEvent {
        status: EventStatus::parse(item.get("status")?.as_s().ok()?)?,
        received_at_micros: number("received_at")?,
        lease_until: number("lease_until").unwrap_or(0),
        quarantine_reason: item
            .get("quarantine_reason")
            .and_then(|v| v.as_s().ok())
            .cloned(),
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

fn unreadable(operation: &'static str) -> DependencyError {
    DependencyError::new(SERVICE, operation, "stored event record is unreadable")
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
    async fn insert_new(&self, event: &NewEvent) -> Result<Inserted, DependencyError> {
        let result = self
            .0
            .client
            .put_item()
            .table_name(&self.0.table)
            .set_item(Some(event_item(event)))
            .condition_expression("attribute_not_exists(event_key)")
            // The existing record comes back with the refusal: a duplicate
            // costs one request, no extra read.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Inserted::New),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let existing = match e.err() {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                        c.item().and_then(stored_event)
                    }
                    _ => None,
                };
                match existing {
                    Some(found) => Ok(Inserted::Exists(found)),
                    // Older endpoints don't return the item: read it.
                    None => self
                        .get(&event.key)
                        .await?
                        .map(Inserted::Exists)
                        .ok_or_else(|| unreadable("PutItem")),
                }
            }
            Err(e) => Err(DependencyError::new(SERVICE, "PutItem", e)),
        }
    }

    async fn get(&self, key: &EventKey) -> Result<Option<StoredEvent>, DependencyError> {
        let output = self
            .0
            .client
            .get_item()
            .table_name(&self.0.table)
            .key("event_key", s(key.as_str()))
            .consistent_read(true)
            .projection_expression("#status, received_at, lease_until, quarantine_reason")
            .expression_attribute_names("#status", "status")
            .send()
            .await
            .map_err(|e| DependencyError::new(SERVICE, "GetItem", e))?;
        match output.item {
            None => Ok(None),
            Some(item) => stored_event(&item)
                .map(Some)
                .ok_or_else(|| unreadable("GetItem")),
        }
    }

    async fn claim(
        &self,
        key: &EventKey,
        now: i64,
        lease_until: i64,
    ) -> Result<bool, DependencyError> {
        self.update_event(
            key,
            "SET lease_until = :lease",
            "#status = :processing AND lease_until < :now",
            &[
                (":lease", n(lease_until)),
                (":now", n(now)),
                (":processing", s(EventStatus::Processing.as_str())),
            ],
        )
        .await
    }

    async fn mark_done(&self, key: &EventKey) -> Result<(), DependencyError> {
        // A false condition means TTL removed the record meanwhile: nothing to mark.
        self.update_event(
            key,
            "SET #status = :done REMOVE lease_until",
            "attribute_exists(event_key)",
            &[(":done", s(EventStatus::Done.as_str()))],
        )
        .await
        .map(drop)
    }

    async fn release(&self, key: &EventKey) -> Result<(), DependencyError> {
        // A false condition means it is no longer processing: nothing to release.
        self.update_event(
            key,
            "SET lease_until = :zero",
            "#status = :processing",
            &[
                (":zero", n(0)),
                (":processing", s(EventStatus::Processing.as_str())),
            ],
        )
        .await
        .map(drop)
    }
}

impl DynamoEventStore {
    /// One conditional UpdateItem on an event record; `Ok(false)` when the
    /// condition did not hold.
    async fn update_event(
        &self,
        key: &EventKey,
        update: &str,
        condition: &str,
        values: &[(&str, AttributeValue)],
    ) -> Result<bool, DependencyError> {
        let mut request = self
            .0
            .client
            .update_item()
            .table_name(&self.0.table)
            .key("event_key", s(key.as_str()))
            .update_expression(update)
            .condition_expression(condition);
        if update.contains("#status") || condition.contains("#status") {
            request = request.expression_attribute_names("#status", "status");
        }
        for (name, value) in values {
            request = request.expression_attribute_values(*name, value.clone());
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(DependencyError::new(SERVICE, "UpdateItem", e)),
        }
    }
}

#[async_trait]
impl EntityStore for DynamoEntityStore {
    async fn upsert(&self, change: &EntityUpsert) -> Result<Upserted, DependencyError> {
        // A write is charged by the item's whole size, per KB, and so is every
        // later update of the item: large states are kept gzip-compressed.
        let state = ArchivedBody::from_raw(change.state_json.as_bytes());
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
                 #version = :version, #state = :state, last_event_key = :event, \
                 #revision = if_not_exists(#revision, :zero) + :one REMOVE #other_state",
            )
            // Newest wins: an equal or older version changes nothing, so a
            // redelivery or a late event is a no-op.
            .condition_expression("attribute_not_exists(entity_key) OR #version < :version")
            .expression_attribute_names("#source", "source")
            .expression_attribute_names("#instance", "instance")
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#state", state_attribute)
            .expression_attribute_names("#other_state", other_attribute)
            .expression_attribute_names("#revision", "revision")
            .expression_attribute_values(":source", s(change.source))
            .expression_attribute_values(":instance", s(change.instance.as_str()))
            .expression_attribute_values(":kind", s(change.kind))
            .expression_attribute_values(":id", s(&change.entity_id))
            .expression_attribute_values(":version", n(change.version))
            .expression_attribute_values(":state", state_value)
            .expression_attribute_values(":event", s(change.event_key.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match result {
            Ok(output) => {
                let revision = output
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get("revision"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Ok(Upserted::Applied { revision })
            }
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(Upserted::Stale)
            }
            Err(e) => Err(DependencyError::new(SERVICE, "UpdateItem", e)),
        }
    }

    async fn get(&self, key: &EntityKey) -> Result<Option<StoredEntity>, DependencyError> {
        let output = self
            .0
            .client
            .get_item()
            .table_name(&self.0.table)
            .key("entity_key", s(key.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DependencyError::new(SERVICE, "GetItem", e))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let number = |name: &str| -> Option<i64> { item.get(name)?.as_n().ok()?.parse().ok() };
        let unreadable = || DependencyError::new(SERVICE, "GetItem", "stored entity is unreadable");
        Ok(Some(StoredEntity {
            kind: text("kind").ok_or_else(unreadable)?,
            entity_id: text("entity_id").ok_or_else(unreadable)?,
            version: number("version").ok_or_else(unreadable)?,
            state_json: entity_state(&item).ok_or_else(unreadable)?,
            last_event_key: text("last_event_key"),
            delivered_version: number("delivered_version"),
        }))
    }

    async fn mark_delivered(&self, key: &EntityKey, version: i64) -> Result<bool, DependencyError> {
        let result = self
            .0
            .client
            .update_item()
            .table_name(&self.0.table)
            .key("entity_key", s(key.as_str()))
            .update_expression("SET delivered_version = :v")
            // Monotonic: a slow worker can't move it back to an older version.
            .condition_expression(
                "attribute_exists(entity_key) AND (attribute_not_exists(delivered_version) OR delivered_version < :v)",
            )
            .expression_attribute_values(":v", n(version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(DependencyError::new(SERVICE, "UpdateItem", e)),
        }
    }
}
