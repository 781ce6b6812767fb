//! What every message to the partner looks like, whichever source it is
//! about, and the stable ids that let the partner drop a repeat.

use serde_json::json;

use domain::idempotency::sha256_hex;
use domain::ids::EntityKey;
use domain::sources::EntityKind;

/// The kind of the entity recording an order's stock changes sent: the
/// pipeline's own, kept under Revel's source beside the order.
pub const INVENTORY_SOLD: EntityKind = EntityKind::new("inventory_sold");

/// A stable message id per entity revision: the partner can drop a repeat.
pub fn message_id(key: &EntityKey, revision: u64) -> String {
    stable_message_id(&format!("{key}#{revision}"))
}

/// A stable message id per part of one entity's message set (a product of
/// an order's stock changes): the same whatever revision or retry sends it.
pub fn message_id_of_part(key: &EntityKey, part: &str) -> String {
    stable_message_id(&format!("{key}/{part}"))
}

fn stable_message_id(name: &str) -> String {
    format!("msg_{}", &sha256_hex(name.as_bytes())[..32])
}

/// What every message to the partner looks like: `{"type", "timestamp",
/// "data": {"source", "instance", "kind", "id", "version", "revision",
/// "event_key", "state"}}`, whichever source it is about.
pub(crate) struct Envelope<'a> {
    pub event_type: String,
    pub source: &'a str,
    pub instance: &'a str,
    pub kind: &'a str,
    pub id: &'a str,
    pub version: i64,
    pub revision: u64,
    pub event_key: Option<&'a str>,
    pub state: serde_json::Value,
}

impl Envelope<'_> {
    pub fn body(self, now: time::OffsetDateTime) -> Vec<u8> {
        json!({
            "type": self.event_type,
            "timestamp": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "data": {
                "source": self.source,
                "instance": self.instance,
                "kind": self.kind,
                "id": self.id,
                "version": self.version,
                "revision": self.revision,
                "event_key": self.event_key,
                "state": self.state,
            }
        })
        .to_string()
        .into_bytes()
    }
}

/// The source an entity key names: `{source}:{instance}:{kind}:{id}`.
pub(crate) fn source_of(key: &EntityKey) -> &str {
    key.as_str().split(':').next().unwrap_or_default()
}
