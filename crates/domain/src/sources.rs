//! What describes a platform that sends webhooks: how it authenticates
//! ([`Source`]), and, per event type ([`EventKind`]), what identifies an
//! event, which entity it describes at which version, and what follow-up
//! work it needs. Each platform implements these once, in the `vendors`
//! crate; a function is such a description plus a row in its table of
//! functions.

use async_trait::async_trait;
use http::HeaderMap;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::error::ReceiveError;
use crate::ids::InstanceName;
use crate::local_time::Zone;
use crate::request::WebhookRequest;

/// A `&'static str` name that is a part of keys, typed so a source's name
/// and an entity's kind are never mixed up with each other or with any
/// other string; compared with the stored strings it is read back as.
macro_rules! key_name {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(&'static str);

        impl $name {
            /// `name` must be lower case letters and `_` only: it is a part
            /// of keys, which `:` separates.
            pub const fn new(name: &'static str) -> Self {
                Self(name)
            }

            pub const fn as_str(self) -> &'static str {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }
    };
}

key_name!(
    /// A source's short lower-case name, as event and entity keys spell it
    /// (`revel`): each source's module in the vendors crate has its `NAME`.
    SourceName
);

key_name!(
    /// What an entity is (`order`, `vos_product`), as entity keys spell it:
    /// each source lists its kinds once, as an enum declared with
    /// [`entities!`](crate::entities).
    EntityKind
);

/// Declares a source's entity kinds as an enum: each variant with the
/// spelling its keys use, `ALL`, `kind()`, `parse()` of a stored spelling,
/// and the conversion into [`EntityKind`] that keys and
/// [`EntityChange`] take.
#[macro_export]
macro_rules! entities {
    (
        $(#[$doc:meta])*
        $vis:vis enum $name:ident {
            $($(#[$variant_doc:meta])* $variant:ident => $spelling:literal,)+
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$variant_doc])* $variant,)+
        }

        impl $name {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The spelling in keys.
            pub const fn kind(self) -> $crate::sources::EntityKind {
                match self {
                    $(Self::$variant => $crate::sources::EntityKind::new($spelling),)+
                }
            }

            /// The kind a stored key or record spells `kind`, if it is one
            /// of this source's.
            pub fn parse(kind: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|entity| entity.kind() == kind)
            }
        }

        impl From<$name> for $crate::sources::EntityKind {
            fn from(entity: $name) -> Self {
                entity.kind()
            }
        }
    };
}

/// How a platform proves who sent a request, and which of its headers matter.
#[async_trait]
pub trait Source: Send + Sync {
    /// Its name in keys: `revel`.
    fn name(&self) -> SourceName;
    /// The instance (tenant) the request is from, once it is proven genuine.
    async fn authenticate(&self, request: &WebhookRequest) -> Result<InstanceName, ReceiveError>;
    /// The sender's own id for this event, when it sends one.
    fn sender_event_id<'h>(&self, _headers: &'h HeaderMap) -> Option<&'h str> {
        None
    }
    /// Headers kept with the archived event (never a secret).
    fn archived_headers(&self) -> &'static [&'static str];
    /// A connectivity test the sender makes when a webhook is set up.
    fn is_ping(&self, _body: &Value) -> bool {
        false
    }
    /// Loads what authentication needs at cold start; returns how many
    /// instances it knows.
    async fn warm(&self) -> Result<usize, crate::error::DependencyError> {
        Ok(0)
    }
    /// The time zone the sender writes `instance`'s naive timestamps in
    /// (Revel: the instance's own), kept on each event record so the
    /// processor reads its body as it was meant; `None` for a sender whose
    /// timestamps carry their offset.
    async fn time_zone(
        &self,
        _instance: &InstanceName,
    ) -> Result<Option<Zone>, crate::error::DependencyError> {
        Ok(None)
    }
}

/// One event type of a source: what its body means.
pub trait EventKind: Send + Sync {
    /// The sender's name for it: `order.finalized`.
    fn event_type(&self) -> &'static str;
    /// Reads a parsed body and the headers it came with (some entities are
    /// per establishment, which Revel names in a header). `Err` means the
    /// body lacks what the type requires and is quarantined. Takes the body
    /// by value so the state it keeps is moved out of it, not copied (an
    /// order is most of its body). The receiver reads it for the event's
    /// identity; the processor reads the stored body again for the rest.
    fn interpret(&self, body: Value, headers: &HeaderMap) -> Result<Interpretation, Malformed>;
    /// Every field `interpret` reads for the identity, the entity's kind and
    /// id, and its refusals, as paths from the top of the body. A receiver
    /// then parses only these ([`crate::projection`]) and interprets that;
    /// the processor interprets the whole body. `None` (the default): the
    /// receiver parses the whole body, as for small bodies it costs little.
    fn key_fields(&self) -> Option<&'static [crate::projection::Path]> {
        None
    }
}

/// What an event body means for storage and follow-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Interpretation {
    pub identity: Identity,
    pub entity: Option<EntityChange>,
    pub follow_up: FollowUp,
}

/// How an event is told apart from others when the sender gives no event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A business key: the entity's id plus its version.
    Business(String),
    /// The body says nothing that tells one event from a later, identical
    /// one (a stock toggle, a menu push): each request is an event of its
    /// own, versioned by its receipt. A repeat that leaves the entity as it
    /// was is collapsed by the processor, so out → in → out is three
    /// changes while a retry of the same bytes changes nothing.
    PerRequest,
}

/// The current state an event carries, to be kept newest-wins.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityChange {
    /// Its source's enum of kinds converts into it (`revel::Entity::Order`).
    pub kind: EntityKind,
    pub id: String,
    pub version: Version,
    /// A removal or cancellation: of two changes with the same version, it
    /// wins (so the outcome doesn't depend on their order of arrival).
    pub ends_entity: bool,
    /// The state to keep (payment card fields already removed).
    pub state: Value,
}

/// Which of two changes to the same entity is newer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The payload's own `updated_date`, as microseconds since the epoch.
    UpdatedAt(i64),
    /// The payload's own `updated_date` written without an offset (Revel's):
    /// a wall-clock time in the instance's zone, as wall µs (see
    /// [`crate::local_time`]); [`Version::micros`] places it in the zone the
    /// event record names.
    WallClock(i64),
    /// No date in the payload: the time the event was first received.
    ReceiptOrder,
}

impl Version {
    /// The version as microseconds since the epoch: a wall-clock time read
    /// in `zone`, a dateless change at its receipt.
    pub fn micros(self, zone: &Zone, received_at_micros: i64) -> i64 {
        match self {
            Self::UpdatedAt(micros) => micros,
            Self::WallClock(wall) => zone.instant_of_wall(wall).unwrap_or(wall),
            Self::ReceiptOrder => received_at_micros,
        }
    }

    /// What an event's business key is made of: the date as written (wall
    /// µs for a naive one), so a key never moves with the instance's zone
    /// and a retry after a zone change is still a duplicate.
    pub fn key_micros(self) -> Option<i64> {
        match self {
            Self::UpdatedAt(micros) | Self::WallClock(micros) => Some(micros),
            Self::ReceiptOrder => None,
        }
    }
}

/// Follow-up work an event needs, put on the jobs queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    None,
    /// Send the new state of the entity on to the partner system.
    SyncEntity,
    /// Pull the instance's catalog through the REST API; coalesced per instance.
    CatalogPull,
    /// Apply the partner's change to Revel through its REST API.
    ApplyToRevel,
    /// Pull Revel's current stock of the products the partner's request
    /// names (on demand, for instances with the retailer option).
    InventoryRequest,
}

/// Why an event cannot be read: the reason it is quarantined when received
/// (stored, answered 202) or skipped by the processor. Its spelling
/// ([`Reason::as_str`]) is stored in the record and is a metric dimension,
/// so it is part of the format. Never body content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The entity id makes no valid entity key.
    InvalidEntityId,
    /// `invalid_establishment`.
    InvalidEstablishment,
    /// The body is not JSON (or not within the parser's limits).
    InvalidJson,
    /// `invalid_revel_product_id`.
    InvalidRevelProductId,
    /// `missing_customer_uuid`.
    MissingCustomerUuid,
    /// `missing_data`.
    MissingData,
    /// `missing_data_id`.
    MissingDataId,
    /// `missing_event_id`.
    MissingEventId,
    /// `missing_instock`.
    MissingInstock,
    /// `missing_item_id`.
    MissingItemId,
    /// `missing_item_type`.
    MissingItemType,
    /// `missing_notification`.
    MissingNotification,
    /// `missing_object_id`.
    MissingObjectId,
    /// `missing_or_invalid_date`.
    MissingOrInvalidDate,
    /// `missing_or_invalid_occurred_at`.
    MissingOrInvalidOccurredAt,
    /// `missing_or_invalid_updated_date`.
    MissingOrInvalidUpdatedDate,
    /// `missing_order_info`.
    MissingOrderInfo,
    /// `missing_order_uuid`.
    MissingOrderUuid,
    /// `missing_revel_product_ids`.
    MissingRevelProductIds,
    /// `missing_rewards_card_id`.
    MissingRewardsCardId,
    /// The body is JSON but not an object.
    NotAJsonObject,
    /// `putaway_update`.
    PutawayUpdate,
    /// The record was quarantined when received: the processor skips it.
    Quarantined,
    /// `revel_product_ids_not_a_list`.
    RevelProductIdsNotAList,
    /// The entity's state is over what an item of the entities table holds.
    StateTooLarge,
    /// `too_many_revel_product_ids`.
    TooManyRevelProductIds,
    /// `unexpected_event_name`.
    UnexpectedEventName,
    /// No event kind of the stored source has the stored event type.
    UnknownEventKind,
    /// `unknown_operation`.
    UnknownOperation,
    /// `unknown_trigger`.
    UnknownTrigger,
    /// `unknown_type`.
    UnknownType,
    /// The stored body cannot be decoded (its encoding is broken).
    UnreadableBody,
    /// The entity's state cannot be written as JSON.
    UnserialisableState,
    /// The request says it carries another event type than its route's.
    WrongEventType,
    /// `wrong_family`.
    WrongFamily,
}

impl Reason {
    /// Every reason, for tests that each spelling is distinct.
    pub const ALL: [Self; 35] = [
        Self::MissingCustomerUuid,
        Self::MissingRewardsCardId,
        Self::InvalidEntityId,
        Self::InvalidEstablishment,
        Self::InvalidJson,
        Self::InvalidRevelProductId,
        Self::MissingData,
        Self::MissingDataId,
        Self::MissingEventId,
        Self::MissingInstock,
        Self::MissingItemId,
        Self::MissingItemType,
        Self::MissingNotification,
        Self::MissingObjectId,
        Self::MissingOrInvalidDate,
        Self::MissingOrInvalidOccurredAt,
        Self::MissingOrInvalidUpdatedDate,
        Self::MissingOrderInfo,
        Self::MissingOrderUuid,
        Self::MissingRevelProductIds,
        Self::NotAJsonObject,
        Self::PutawayUpdate,
        Self::Quarantined,
        Self::RevelProductIdsNotAList,
        Self::StateTooLarge,
        Self::TooManyRevelProductIds,
        Self::UnexpectedEventName,
        Self::UnknownEventKind,
        Self::UnknownOperation,
        Self::UnknownTrigger,
        Self::UnknownType,
        Self::UnreadableBody,
        Self::UnserialisableState,
        Self::WrongEventType,
        Self::WrongFamily,
    ];

    /// The spelling stored in the record and used as a metric dimension.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidEntityId => "invalid_entity_id",
            Self::InvalidEstablishment => "invalid_establishment",
            Self::InvalidJson => "invalid_json",
            Self::InvalidRevelProductId => "invalid_revel_product_id",
            Self::MissingCustomerUuid => "missing_customer_uuid",
            Self::MissingData => "missing_data",
            Self::MissingDataId => "missing_data_id",
            Self::MissingEventId => "missing_event_id",
            Self::MissingInstock => "missing_instock",
            Self::MissingItemId => "missing_item_id",
            Self::MissingItemType => "missing_item_type",
            Self::MissingNotification => "missing_notification",
            Self::MissingObjectId => "missing_object_id",
            Self::MissingOrInvalidDate => "missing_or_invalid_date",
            Self::MissingOrInvalidOccurredAt => "missing_or_invalid_occurred_at",
            Self::MissingOrInvalidUpdatedDate => "missing_or_invalid_updated_date",
            Self::MissingOrderInfo => "missing_order_info",
            Self::MissingOrderUuid => "missing_order_uuid",
            Self::MissingRevelProductIds => "missing_revel_product_ids",
            Self::MissingRewardsCardId => "missing_rewards_card_id",
            Self::NotAJsonObject => "not_a_json_object",
            Self::PutawayUpdate => "putaway_update",
            Self::Quarantined => "quarantined",
            Self::RevelProductIdsNotAList => "revel_product_ids_not_a_list",
            Self::StateTooLarge => "state_too_large",
            Self::TooManyRevelProductIds => "too_many_revel_product_ids",
            Self::UnexpectedEventName => "unexpected_event_name",
            Self::UnknownEventKind => "unknown_event_kind",
            Self::UnknownOperation => "unknown_operation",
            Self::UnknownTrigger => "unknown_trigger",
            Self::UnknownType => "unknown_type",
            Self::UnreadableBody => "unreadable_body",
            Self::UnserialisableState => "unserialisable_state",
            Self::WrongEventType => "wrong_event_type",
            Self::WrongFamily => "wrong_family",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a body was quarantined, or a stored event skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub Reason);

impl Malformed {
    /// The reason's stored spelling.
    pub fn reason(self) -> &'static str {
        self.0.as_str()
    }
}

/// Parses the timestamps Revel sends (`2016-04-13T10:29:19`,
/// `2021-12-28T21:05:13.977077`, `2016-04-13T17:29:15+00:00`) to microseconds
/// since the epoch; a timestamp without an offset is read as UTC, which
/// makes it wall µs (see [`crate::local_time`]): use [`revel_version`] or
/// [`parse_local_micros`] where the instance's zone is known.
pub fn parse_timestamp_micros(raw: &str) -> Option<i64> {
    match revel_version(raw)? {
        Version::UpdatedAt(micros) | Version::WallClock(micros) => Some(micros),
        Version::ReceiptOrder => None,
    }
}

/// A Revel timestamp as a version: an instant when it carries an offset, a
/// wall-clock time in the instance's zone when it doesn't.
pub fn revel_version(raw: &str) -> Option<Version> {
    if let Ok(instant) = OffsetDateTime::parse(raw, &Rfc3339) {
        return i64::try_from(instant.unix_timestamp_nanos() / 1000)
            .ok()
            .map(Version::UpdatedAt);
    }
    let naive = format_description!(
        version = 2,
        "[year]-[month]-[day][first [T] [ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    let wall = PrimitiveDateTime::parse(raw, naive).ok()?.assume_utc();
    i64::try_from(wall.unix_timestamp_nanos() / 1000)
        .ok()
        .map(Version::WallClock)
}

/// A Revel timestamp as an instant (µs), a naive one read in `zone`.
pub fn parse_local_micros(raw: &str, zone: &Zone) -> Option<i64> {
    Some(revel_version(raw)?.micros(zone, 0))
}

/// Whether a key holds payment card data: `cc_*`, the card digits, the card
/// type and raw processor data.
pub fn is_payment_card_key(key: &str) -> bool {
    const CARD_KEYS: &[&str] = &[
        "last_4_cc_digits",
        "first_4_cc_digits",
        "card_type",
        "transaction_data",
        "processor_response",
        "signature_img_url",
        "card_number",
        "cvv",
    ];
    key.starts_with("cc_") || CARD_KEYS.contains(&key)
}

/// Removes payment card data before state is kept: keys starting `cc_`, the
/// card digits, the card type and raw processor data, at any depth. Gift card
/// and rewards card numbers are not payment cards and stay.
pub fn strip_payment_card_fields(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, _| !is_payment_card_key(key));
            map.values_mut().for_each(strip_payment_card_fields);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_payment_card_fields),
        _ => {}
    }
}

/// A header's value, trimmed; `None` when absent, empty or not text.
pub fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `body`, if it is a JSON object: what every event type's body must be
/// before any field of it is read. A source whose bodies are small reads
/// them in place through it and copies only the state it keeps.
pub fn json_object(body: &Value) -> Result<&Value, Malformed> {
    if body.is_object() {
        Ok(body)
    } else {
        Err(Malformed(Reason::NotAJsonObject))
    }
}

/// An id that may arrive as a JSON string or number.
pub fn id_field(object: &Value, field: &str) -> Option<String> {
    match object.get(field)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A number that may arrive as a JSON number or a numeric string
/// (Revel writes quantities and prices as `"24.000000"`).
pub fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Holds a kind's `key_fields` to the whole body: what the receiver reads
/// of the projection must be what the processor reads of the body.
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_reason_has_its_own_snake_case_spelling() {
        let spellings: std::collections::BTreeSet<&str> =
            Reason::ALL.iter().map(|reason| reason.as_str()).collect();
        assert_eq!(spellings.len(), Reason::ALL.len());
        for spelling in spellings {
            assert!(
                !spelling.is_empty()
                    && spelling
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{spelling}"
            );
        }
        assert_eq!(Malformed(Reason::StateTooLarge).reason(), "state_too_large");
    }

    crate::entities! {
        enum Thing {
            Order => "order",
            RewardsCard => "rewards_card",
        }
    }

    #[test]
    fn an_entity_kind_parses_back_from_its_spelling_and_nothing_else_does() {
        for thing in Thing::ALL {
            assert_eq!(Thing::parse(thing.kind().as_str()), Some(*thing));
        }
        assert_eq!(Thing::RewardsCard.kind(), "rewards_card");
        assert_eq!(EntityKind::from(Thing::Order), EntityKind::new("order"));
        for stranger in ["", "Order", "rewards-card", "order "] {
            assert_eq!(Thing::parse(stranger), None, "{stranger:?}");
        }
    }

    #[test]
    fn revels_three_timestamp_shapes_parse_and_order_correctly() {
        let plain = parse_timestamp_micros("2016-04-13T10:29:19").unwrap();
        let fraction = parse_timestamp_micros("2016-04-13T10:29:19.500000").unwrap();
        let offset = parse_timestamp_micros("2016-04-13T10:29:19+02:00").unwrap();
        assert_eq!(fraction - plain, 500_000);
        assert_eq!(plain - offset, 2 * 3600 * 1_000_000);
        assert_eq!(plain, 1_460_543_359_000_000);
        assert!(parse_timestamp_micros("yesterday").is_none());
    }

    #[test]
    fn a_naive_revel_timestamp_is_a_wall_clock_time_read_in_the_instances_zone_and_one_with_an_offset_is_an_instant(
    ) {
        let la = Zone::parse("America/Los_Angeles").unwrap();
        assert_eq!(
            revel_version("2016-04-13T10:29:19"),
            Some(Version::WallClock(1_460_543_359_000_000))
        );
        assert_eq!(
            parse_local_micros("2016-04-13T10:29:19", &la),
            parse_timestamp_micros("2016-04-13T17:29:19Z")
        );
        assert_eq!(
            parse_local_micros("2016-04-13T17:29:15+00:00", &la),
            parse_timestamp_micros("2016-04-13T17:29:15Z"),
            "an offset is kept whatever the zone"
        );
        assert_eq!(
            Version::WallClock(5).key_micros(),
            Some(5),
            "keys are made of the date as written"
        );
        assert_eq!(Version::ReceiptOrder.micros(&la, 42), 42);
    }

    #[test]
    fn card_fields_go_and_gift_and_reward_numbers_stay() {
        let mut v = json!({"payments": [{"amount": "4.86", "cc_first_name": "A", "last_4_cc_digits": "1234", "card_type": "visa"}],
                           "gift_card_number": "G1", "reward_card_numbers": ["R1"], "cc_exp": "12/30"});
        strip_payment_card_fields(&mut v);
        assert_eq!(
            v,
            json!({"payments": [{"amount": "4.86"}], "gift_card_number": "G1", "reward_card_numbers": ["R1"]})
        );
    }
}
