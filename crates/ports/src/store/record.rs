//! The event record: one item of the events table, written once by a
//! receiver with a conditional put, read back by the stream processor (from
//! the stream's new image), the operator tool and replays. One serde type,
//! converted to and from DynamoDB items by `serde_dynamo`, so the writer and
//! every reader agree on the format by construction.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ArchivedBody;
use domain::ids::{EntityKey, EventKey, InstanceName};

/// Where a record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Stored and understood: the processor applies it. Records of the
    /// earlier status design (`processing`, `done`) read as this.
    #[serde(alias = "processing", alias = "done")]
    Received,
    /// Signed but not understood: kept for replay; the processor skips it.
    Quarantined,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Quarantined => "quarantined",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "received" | "processing" | "done" => Some(Self::Received),
            "quarantined" => Some(Self::Quarantined),
            _ => None,
        }
    }
}

/// How the archived body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    Identity,
    Gzip,
}

/// How an event reached the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Webhook,
    /// Fetched from the sender's API (an order reconciliation found missing,
    /// a WineSitting order the repair poll found), because its webhook never
    /// arrived.
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

/// One archived event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub event_key: EventKey,
    pub source: String,
    pub instance: InstanceName,
    pub event_type: String,
    pub status: EventStatus,
    /// When the receiver took it (µs since the epoch): the version of
    /// entities whose bodies carry no date.
    #[serde(rename = "received_at")]
    pub received_at_micros: i64,
    /// The raw body, gzip-compressed when large (see `body_encoding`).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub body_encoding: BodyEncoding,
    /// The raw body's length.
    pub body_bytes: u64,
    /// SHA-256 (hex) of the raw body.
    pub body_sha256: String,
    /// The sender's headers worth keeping (never a secret).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_reason: Option<String>,
    /// The entity it changes, for listings (the processor derives it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_key: Option<EntityKey>,
    /// Set on a different body that arrived under an existing key: the key
    /// it conflicted with. Kept under a key of its own, and applied like any
    /// other event (the version rule decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_of: Option<EventKey>,
    #[serde(default)]
    pub request_id: String,
    pub origin: Origin,
    /// Unix seconds when DynamoDB TTL removes the record.
    pub expires_at: i64,
    /// When an operator last replayed it (µs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_at: Option<i64>,
    /// The IANA zone the sender wrote the body's naive timestamps in (a
    /// Revel instance's, from its settings when the event arrived); absent
    /// for senders whose timestamps carry an offset, and on records stored
    /// before zones were kept (read as UTC, as they were then). Kept on the
    /// record, not looked up by the processor: the processor has no access
    /// to the secret document, and a replay reads the body as it was meant
    /// when it arrived, whatever the instance's zone is by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

impl EventRecord {
    /// The archived body as a value: encoding and length included.
    pub fn archived_body(&self) -> ArchivedBody {
        ArchivedBody {
            bytes: self.body.clone(),
            gzip: self.body_encoding == BodyEncoding::Gzip,
            original_len: usize::try_from(self.body_bytes).unwrap_or(usize::MAX),
        }
    }

    /// The body as the sender sent it.
    pub fn raw_body(&self) -> std::io::Result<Vec<u8>> {
        self.archived_body().raw()
    }

    /// The zone its naive timestamps are read in: the one it names, UTC
    /// when it names none (or one this build's tz database doesn't know,
    /// which the receiver never writes).
    pub fn zone(&self) -> domain::local_time::Zone {
        self.time_zone
            .as_deref()
            .and_then(|name| domain::local_time::Zone::parse(name).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    pub(crate) fn sample() -> EventRecord {
        let body = ArchivedBody::from_raw(br#"{"id": 1, "instock": false, "type": "product"}"#);
        EventRecord {
            event_key: EventKey::parse("revel:demo:inout.stock:at:1:abc").unwrap(),
            source: "revel".into(),
            instance: InstanceName::parse("demo").unwrap(),
            event_type: "inout.stock".into(),
            status: EventStatus::Received,
            received_at_micros: 1_700_000_000_123_456,
            body: body.bytes,
            body_encoding: BodyEncoding::Identity,
            body_bytes: body.original_len as u64,
            body_sha256: "abc".into(),
            headers: BTreeMap::from([("x-revel-establishment-id".into(), "7".into())]),
            quarantine_reason: None,
            entity_key: None,
            conflict_of: None,
            request_id: "req-1".into(),
            origin: Origin::Webhook,
            expires_at: 1_702_592_000,
            replayed_at: None,
            time_zone: None,
        }
    }

    #[test]
    fn a_record_round_trips_through_a_dynamodb_item_with_its_body_as_binary() {
        let record = sample();
        let item: std::collections::HashMap<String, AttributeValue> =
            serde_dynamo::to_item(&record).unwrap();
        assert!(matches!(item.get("body"), Some(AttributeValue::B(_))));
        assert_eq!(item["status"], AttributeValue::S("received".into()));
        assert_eq!(
            item["received_at"],
            AttributeValue::N("1700000000123456".into())
        );
        assert!(!item.contains_key("quarantine_reason"), "absent, not NULL");
        let back: EventRecord = serde_dynamo::from_item(item).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn a_record_reads_from_a_stream_images_json_as_lambda_delivers_it() {
        let image = serde_json::json!({
            "event_key": {"S": "revel:demo:inout.stock:at:1:abc"},
            "source": {"S": "revel"},
            "instance": {"S": "demo"},
            "event_type": {"S": "inout.stock"},
            "status": {"S": "done"},
            "received_at": {"N": "1700000000123456"},
            "body": {"B": "eyJpZCI6IDF9"},
            "body_encoding": {"S": "identity"},
            "body_bytes": {"N": "9"},
            "body_sha256": {"S": "abc"},
            "headers": {"M": {"x-revel-instance": {"S": "demo"}}},
            "origin": {"S": "webhook"},
            "expires_at": {"N": "1702592000"},
            "lease_until": {"N": "0"}
        });
        let item: serde_dynamo::Item = serde_json::from_value(image).unwrap();
        let record: EventRecord = serde_dynamo::from_item(item).unwrap();
        assert_eq!(record.raw_body().unwrap(), br#"{"id": 1}"#);
        assert_eq!(
            record.status,
            EventStatus::Received,
            "legacy `done` reads as received"
        );
        assert_eq!(record.headers["x-revel-instance"], "demo");
        assert_eq!(record.request_id, "");
    }

    #[test]
    fn a_records_zone_round_trips_and_a_record_without_one_reads_in_utc() {
        let mut record = sample();
        assert!(record.zone() == domain::local_time::Zone::utc());
        let item: std::collections::HashMap<String, AttributeValue> =
            serde_dynamo::to_item(&record).unwrap();
        assert!(!item.contains_key("time_zone"), "absent, not NULL");
        record.time_zone = Some("America/Los_Angeles".into());
        let item: std::collections::HashMap<String, AttributeValue> =
            serde_dynamo::to_item(&record).unwrap();
        assert_eq!(
            item["time_zone"],
            AttributeValue::S("America/Los_Angeles".into())
        );
        let back: EventRecord = serde_dynamo::from_item(item).unwrap();
        assert_eq!(back.zone().name(), "America/Los_Angeles");
    }

    #[test]
    fn a_record_with_an_invalid_key_is_refused() {
        let mut item: std::collections::HashMap<String, AttributeValue> =
            serde_dynamo::to_item(sample()).unwrap();
        item.insert("event_key".into(), AttributeValue::S("has space".into()));
        assert!(serde_dynamo::from_item::<_, EventRecord>(item).is_err());
    }
}
