//! VinesOS, the partner system, sends its own changes into the bundle: new
//! customers, updated members, added orders, inventory changes and rewards
//! added or used, each as soon as it happens, and its added or changed
//! products and events, which the sync schedule applies to Revel at end of
//! day (the pipeline's `partner_catalog`); and, when a search is done on its side,
//! a request for Revel's current stock of some products, pulled on demand
//! (the pipeline's `inventory_request`); one route per event, the Revel instance
//! the change applies to named in the route.
//!
//! Each POST is a JSON envelope
//!
//! ```json
//! {"id": "evt_...", "type": "customer.created",
//!  "occurred_at": "2026-11-24T10:00:00Z", "data": {"id": "...", "...": "..."}}
//! ```
//!
//! signed the Standard Webhooks way: `webhook-id`, `webhook-timestamp` (unix
//! seconds) and `webhook-signature` (space-separated `v1,<base64 HMAC-SHA256
//! of "{id}.{timestamp}.{body}">`), the key being the base64 part of the
//! instance's `whsec_...` secret. A timestamp more than [`TOLERANCE`] from now
//! is refused, so an old request cannot be replayed; a retry of the same
//! message keeps its `webhook-id` and is stored once.

pub mod downstream;
pub mod inventory_search;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderMap;
use serde_json::Value;

use crate::functions::{Function, Kind};
use crate::vinesos::downstream::SigningSecret;
use domain::clock::Clock;
use domain::error::{AuthFailure, DependencyError, ReceiveError};
use domain::ids::InstanceName;
use domain::request::WebhookRequest;
use domain::sources::{
    header, id_field, json_object, parse_timestamp_micros, strip_payment_card_fields, EntityChange,
    EventKind, FollowUp, Identity, Interpretation, Malformed, Reason, Source, SourceName, Version,
};
use ports::secrets::SecretCache;

/// The source name, in keys.
pub const NAME: SourceName = SourceName::new("vinesos");

/// How the bundle links a Revel object to the partner's (`vinesos:{id}` in
/// `third_party_id` or `external_sync`).
pub const LINK_PREFIX: &str = "vinesos:";

/// How far `webhook-timestamp` may be from now, either way.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The path parameter naming the Revel instance.
pub const INSTANCE_PARAM: &str = "instance";
pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// The events VinesOS sends, one function and one route each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VinesOsEvent {
    CustomerCreated,
    MemberUpdated,
    OrderAdded,
    InventoryChanged,
    RewardChanged,
    /// A product added or changed on VinesOS: applied at end of day.
    ProductChanged,
    /// An event (a tasting, a dinner) added or changed on VinesOS: applied at end of day.
    EventChanged,
    /// A search done on VinesOS: Revel's current stock of one product or a
    /// list, pulled on demand (not a change of anything: nothing is applied).
    InventoryRequested,
}

impl VinesOsEvent {
    pub const ALL: [Self; 8] = [
        Self::CustomerCreated,
        Self::MemberUpdated,
        Self::OrderAdded,
        Self::InventoryChanged,
        Self::RewardChanged,
        Self::ProductChanged,
        Self::EventChanged,
        Self::InventoryRequested,
    ];

    /// VinesOS's name for the event: the envelope's `type`.
    pub fn name(self) -> &'static str {
        match self {
            Self::CustomerCreated => "customer.created",
            Self::MemberUpdated => "member.updated",
            Self::OrderAdded => "order.added",
            Self::InventoryChanged => "inventory.changed",
            Self::RewardChanged => "reward.changed",
            Self::ProductChanged => "product.changed",
            Self::EventChanged => "event.changed",
            Self::InventoryRequested => "inventory.requested",
        }
    }

    /// The event named `name` (exactly as VinesOS spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.name() == name)
    }

    /// The kind of entity whose state the event carries.
    pub fn entity(self) -> Entity {
        match self {
            // A member is a customer: one entity, one message group, one
            // version line, so a created and an updated never race.
            Self::CustomerCreated | Self::MemberUpdated => Entity::Customer,
            Self::OrderAdded => Entity::Order,
            Self::InventoryChanged => Entity::Inventory,
            Self::RewardChanged => Entity::Reward,
            Self::ProductChanged => Entity::Product,
            Self::EventChanged => Entity::Event,
            Self::InventoryRequested => Entity::InventoryRequest,
        }
    }
}

domain::entities! {
    /// What the partner's entities are, as the bundle keeps them (prefixed,
    /// so they never share a key with Revel's entity of the same name).
    pub enum Entity {
        Customer => "vos_customer",
        Order => "vos_order",
        Inventory => "vos_inventory",
        Reward => "vos_reward",
        Product => "vos_product",
        Event => "vos_event",
        /// Each `inventory.requested` is kept as its own entity (its id is
        /// the envelope's), so its job can read the products it names.
        InventoryRequest => "vos_inventory_request",
    }
}

/// This platform's rows of the table of functions ([`crate::functions`]).
pub const FUNCTIONS: &[Function] = &[
    Function {
        logical_id: "VinesOsCustomerCreatedFunction",
        crate_name: "vinesos-customer-created",
        routes: &["/vinesos/{instance}/customers/created"],
        kind: Kind::VinesOs(VinesOsEvent::CustomerCreated),
    },
    Function {
        logical_id: "VinesOsMemberUpdatedFunction",
        crate_name: "vinesos-member-updated",
        routes: &["/vinesos/{instance}/members/updated"],
        kind: Kind::VinesOs(VinesOsEvent::MemberUpdated),
    },
    Function {
        logical_id: "VinesOsOrderAddedFunction",
        crate_name: "vinesos-order-added",
        routes: &["/vinesos/{instance}/orders/added"],
        kind: Kind::VinesOs(VinesOsEvent::OrderAdded),
    },
    Function {
        logical_id: "VinesOsInventoryChangedFunction",
        crate_name: "vinesos-inventory-changed",
        routes: &["/vinesos/{instance}/inventory/changed"],
        kind: Kind::VinesOs(VinesOsEvent::InventoryChanged),
    },
    Function {
        logical_id: "VinesOsRewardChangedFunction",
        crate_name: "vinesos-reward-changed",
        routes: &["/vinesos/{instance}/rewards/changed"],
        kind: Kind::VinesOs(VinesOsEvent::RewardChanged),
    },
    Function {
        logical_id: "VinesOsProductChangedFunction",
        crate_name: "vinesos-product-changed",
        routes: &["/vinesos/{instance}/products/changed"],
        kind: Kind::VinesOs(VinesOsEvent::ProductChanged),
    },
    Function {
        logical_id: "VinesOsEventChangedFunction",
        crate_name: "vinesos-event-changed",
        routes: &["/vinesos/{instance}/events/changed"],
        kind: Kind::VinesOs(VinesOsEvent::EventChanged),
    },
    Function {
        logical_id: "VinesOsInventoryRequestedFunction",
        crate_name: "vinesos-inventory-requested",
        routes: &["/vinesos/{instance}/inventory/requested"],
        kind: Kind::VinesOs(VinesOsEvent::InventoryRequested),
    },
];

impl EventKind for VinesOsEvent {
    /// `vinesos.{name}`: the event type in keys and logs.
    fn event_type(&self) -> &'static str {
        match self {
            Self::CustomerCreated => "vinesos.customer.created",
            Self::MemberUpdated => "vinesos.member.updated",
            Self::OrderAdded => "vinesos.order.added",
            Self::InventoryChanged => "vinesos.inventory.changed",
            Self::RewardChanged => "vinesos.reward.changed",
            Self::ProductChanged => "vinesos.product.changed",
            Self::EventChanged => "vinesos.event.changed",
            Self::InventoryRequested => "vinesos.inventory.requested",
        }
    }

    fn interpret(
        &self,
        body: Value,
        _headers: &http::HeaderMap,
    ) -> Result<Interpretation, Malformed> {
        let body = json_object(&body)?;
        let event_id = body
            .get("id")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .ok_or(Malformed(Reason::MissingEventId))?;
        body.get("type")
            .and_then(Value::as_str)
            .filter(|kind| *kind == self.name())
            .ok_or(Malformed(Reason::WrongEventType))?;
        let micros = body
            .get("occurred_at")
            .and_then(Value::as_str)
            .and_then(|raw| parse_timestamp_micros(raw.trim()))
            .ok_or(Malformed(Reason::MissingOrInvalidOccurredAt))?;
        if *self == Self::InventoryRequested {
            // A request names products, not an entity of the partner's.
            return inventory_search::interpret(event_id, micros, body.get("data"));
        }
        let data = body
            .get("data")
            .filter(|data| data.is_object())
            .ok_or(Malformed(Reason::MissingDataId))?;
        let id = id_field(data, "id").ok_or(Malformed(Reason::MissingDataId))?;
        let mut state = data.clone();
        strip_payment_card_fields(&mut state);
        Ok(Interpretation {
            identity: Identity::Business(event_id.to_owned()),
            entity: Some(EntityChange {
                kind: self.entity().kind(),
                id,
                version: Version::UpdatedAt(micros),
                ends_entity: false,
                state,
            }),
            follow_up: FollowUp::ApplyToRevel,
        })
    }

    fn key_fields(&self) -> Option<&'static [domain::projection::Path]> {
        match self {
            // A request's products are read whole: they are its meaning.
            Self::InventoryRequested => None,
            _ => Some(&[&["id"], &["type"], &["occurred_at"], &["data", "id"]]),
        }
    }
}

/// VinesOS as a [`Source`]: Standard Webhooks signatures under the instance's
/// `whsec_` secrets (one, or two during a rotation).
pub struct VinesOs {
    secrets: SecretCache,
    /// What `webhook-timestamp` is checked against.
    clock: Arc<dyn Clock>,
}

impl VinesOs {
    pub fn new(secrets: SecretCache) -> Self {
        Self {
            secrets,
            clock: domain::clock::system(),
        }
    }

    /// Checks timestamps against `clock` (the simulation's virtual one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn secrets(&self) -> &SecretCache {
        &self.secrets
    }
}

#[async_trait]
impl Source for VinesOs {
    fn name(&self) -> SourceName {
        NAME
    }

    async fn authenticate(&self, request: &WebhookRequest) -> Result<InstanceName, ReceiveError> {
        let instance = request
            .path_param(INSTANCE_PARAM)
            .filter(|i| !i.trim().is_empty())
            .ok_or(AuthFailure::MissingInstance)?;
        let instance = InstanceName::parse(instance).map_err(|_| AuthFailure::InvalidInstance)?;
        let headers = &request.headers;
        let (Some(message_id), Some(timestamp), Some(signature)) = (
            header(headers, ID_HEADER),
            header(headers, TIMESTAMP_HEADER),
            header(headers, SIGNATURE_HEADER),
        ) else {
            return Err(AuthFailure::MissingSignature.into());
        };
        let timestamp: i64 = timestamp
            .parse()
            .map_err(|_| AuthFailure::MalformedSignature)?;
        let now = self.clock.now().unix_timestamp();
        if now.abs_diff(timestamp) > TOLERANCE.as_secs() {
            return Err(AuthFailure::SignatureMismatch.into());
        }
        let secrets = self
            .secrets
            .secrets_for(&instance)
            .await?
            .ok_or(AuthFailure::UnknownInstance)?;
        // Every secret is tried, so the timing doesn't tell which matched.
        let matched = secrets
            .iter()
            .filter_map(|secret| match SigningSecret::parse(secret.expose()) {
                Ok(parsed) => Some(parsed),
                Err(_) => {
                    tracing::warn!(instance = %instance,
                        "a VinesOS webhook secret is not whsec_ followed by base64; skipped");
                    None
                }
            })
            .fold(false, |found, secret| {
                secret.verify(message_id, timestamp, &request.body, signature) | found
            });
        if matched {
            Ok(instance)
        } else {
            Err(AuthFailure::SignatureMismatch.into())
        }
    }

    fn sender_event_id<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        header(headers, ID_HEADER)
    }

    fn archived_headers(&self) -> &'static [&'static str] {
        &[ID_HEADER, TIMESTAMP_HEADER, "content-type", "user-agent"]
    }

    async fn warm(&self) -> Result<usize, DependencyError> {
        self.secrets.warm().await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use http::HeaderValue;
    use serde_json::json;

    use super::*;
    use crate::fakes::{sign, signed_vinesos_request as signed, vinesos_request as request};
    use ports::fakes::FixedSecrets;

    const NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OLD: &str = "whsec_dmluZXNvcy1vbGQtc2lnbmluZy1rZXk=";
    const FOREIGN: &str = "whsec_c29tZW9uZS1lbHNlcy1zaWduaW5nLWtleQ==";
    const DOC: &str = r#"{"mybar": {"webhook": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_dmluZXNvcy1vbGQtc2lnbmluZy1rZXk="]},
                          "halfbroken": ["not a whsec secret", "whsec_dmluZXNvcy1vbGQtc2lnbmluZy1rZXk="],
                          "tokened": {"token": "t"}}"#;
    const AT: &str = "2026-11-24T10:00:00Z";

    fn source() -> VinesOs {
        VinesOs::new(SecretCache::new(
            FixedSecrets(DOC.into()),
            Duration::from_secs(60),
        ))
    }

    fn envelope(event: VinesOsEvent) -> Value {
        json!({"id": "evt_1", "type": event.name(), "occurred_at": AT,
               "data": {"id": "d-1", "points": 5, "payment": {"amount": 3, "card_number": "4242"}}})
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn refusal(result: Result<InstanceName, ReceiveError>) -> AuthFailure {
        match result {
            Err(ReceiveError::Unauthorized(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn each_change_interprets_with_its_identity_entity_kind_version_and_apply_to_revel() {
        let micros = parse_timestamp_micros(AT).unwrap();
        let changes = VinesOsEvent::ALL
            .into_iter()
            .filter(|e| *e != VinesOsEvent::InventoryRequested);
        for event in changes {
            let meaning = event
                .interpret(envelope(event), &http::HeaderMap::new())
                .unwrap_or_else(|e| panic!("{event:?}: {e:?}"));
            assert_eq!(meaning.identity, Identity::Business("evt_1".into()));
            assert_eq!(meaning.follow_up, FollowUp::ApplyToRevel);
            let entity = meaning.entity.unwrap();
            assert_eq!(entity.kind, event.entity().kind());
            assert_eq!(entity.id, "d-1");
            assert_eq!(entity.version, Version::UpdatedAt(micros));
            assert_eq!(
                entity.state,
                json!({"id": "d-1", "points": 5, "payment": {"amount": 3}}),
                "payment card fields were kept"
            );
        }
    }

    #[test]
    fn an_inventory_request_is_kept_as_its_own_entity_and_asks_for_a_pull_not_an_apply() {
        let body = json!({"id": "evt_8", "type": "inventory.requested", "occurred_at": AT,
                          "data": {"revel_product_ids": [6, 5]}});
        let meaning = VinesOsEvent::InventoryRequested
            .interpret(body, &http::HeaderMap::new())
            .unwrap();
        assert_eq!(meaning.identity, Identity::Business("evt_8".into()));
        assert_eq!(meaning.follow_up, FollowUp::InventoryRequest);
        let entity = meaning.entity.unwrap();
        assert_eq!(
            (entity.kind.as_str(), entity.id.as_str()),
            ("vos_inventory_request", "evt_8")
        );
        assert_eq!(
            entity.version,
            Version::UpdatedAt(parse_timestamp_micros(AT).unwrap())
        );
        assert_eq!(entity.state, json!({"revel_product_ids": [5, 6]}));
        // A change's body (an entity id, no products) is no request.
        assert_eq!(
            VinesOsEvent::InventoryRequested
                .interpret(
                    json!({"id": "evt_8", "type": "inventory.requested", "occurred_at": AT, "data": {"id": "x"}}),
                    &http::HeaderMap::new()
                )
                .unwrap_err(),
            Malformed(Reason::MissingRevelProductIds)
        );
    }

    #[test]
    fn a_numeric_data_id_is_read_as_text() {
        let body =
            json!({"id": "evt_2", "type": "order.added", "occurred_at": AT, "data": {"id": 42}});
        let entity = VinesOsEvent::OrderAdded
            .interpret(body.clone(), &http::HeaderMap::new())
            .unwrap()
            .entity
            .unwrap();
        assert_eq!(entity.id, "42");
    }

    #[test]
    fn each_invalid_shape_is_the_right_malformed() {
        let event = VinesOsEvent::CustomerCreated;
        let data = json!({"id": "c-1"});
        let cases = [
            (json!([1]), "not_a_json_object"),
            (
                json!({"type": "customer.created", "occurred_at": AT, "data": data}),
                "missing_event_id",
            ),
            (
                json!({"id": "", "type": "customer.created", "occurred_at": AT, "data": data}),
                "missing_event_id",
            ),
            (
                json!({"id": 7, "type": "customer.created", "occurred_at": AT, "data": data}),
                "missing_event_id",
            ),
            (
                json!({"id": "evt_1", "occurred_at": AT, "data": data}),
                "wrong_event_type",
            ),
            (
                json!({"id": "evt_1", "type": "Customer.Created", "occurred_at": AT, "data": data}),
                "wrong_event_type",
            ),
            (
                json!({"id": "evt_1", "type": "customer.created", "data": data}),
                "missing_or_invalid_occurred_at",
            ),
            (
                json!({"id": "evt_1", "type": "customer.created", "occurred_at": "yesterday", "data": data}),
                "missing_or_invalid_occurred_at",
            ),
            (
                json!({"id": "evt_1", "type": "customer.created", "occurred_at": 1_764_000_000, "data": data}),
                "missing_or_invalid_occurred_at",
            ),
            (
                json!({"id": "evt_1", "type": "customer.created", "occurred_at": AT}),
                "missing_data_id",
            ),
            (
                json!({"id": "evt_1", "type": "customer.created", "occurred_at": AT, "data": [data]}),
                "missing_data_id",
            ),
            (
                json!({"id": "evt_1", "type": "customer.created", "occurred_at": AT, "data": {"name": "x"}}),
                "missing_data_id",
            ),
            (
                json!({"id": "evt_1", "type": "customer.created", "occurred_at": AT, "data": {"id": " "}}),
                "missing_data_id",
            ),
        ];
        for (body, reason) in cases {
            assert_eq!(
                event
                    .interpret(body.clone(), &http::HeaderMap::new())
                    .unwrap_err()
                    .reason(),
                reason,
                "{body}"
            );
        }
    }

    #[test]
    fn a_body_of_another_events_type_is_wrong_event_type() {
        for event in VinesOsEvent::ALL {
            for other in VinesOsEvent::ALL.into_iter().filter(|o| *o != event) {
                assert_eq!(
                    event
                        .interpret(envelope(other), &http::HeaderMap::new())
                        .unwrap_err(),
                    Malformed(Reason::WrongEventType),
                    "{event:?} given {other:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_request_signed_by_the_standard_webhooks_crate_is_accepted() {
        let body = serde_json::to_vec(&envelope(VinesOsEvent::OrderAdded)).unwrap();
        let instance = source()
            .authenticate(&signed("MyBar", NEW, now(), &body))
            .await
            .unwrap();
        assert_eq!(instance.as_str(), "mybar");
    }

    #[tokio::test]
    async fn during_a_rotation_either_of_two_secrets_is_accepted() {
        let source = source();
        let body = serde_json::to_vec(&envelope(VinesOsEvent::MemberUpdated)).unwrap();
        for secret in [NEW, OLD] {
            let instance = source
                .authenticate(&signed("mybar", secret, now(), &body))
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(instance.as_str(), "mybar");
        }
        // Both secrets in one header, as a sender mid-rotation may send.
        let ts = now();
        let both = format!(
            "{} {}",
            sign(FOREIGN, "msg_1", ts, &body),
            sign(OLD, "msg_1", ts, &body)
        );
        let request = request(
            Some("mybar"),
            Some("msg_1"),
            Some(&ts.to_string()),
            Some(&both),
            &body,
        );
        assert!(source.authenticate(&request).await.is_ok());
    }

    #[tokio::test]
    async fn a_secret_that_does_not_parse_is_skipped_and_the_other_still_verifies() {
        let source = source();
        let body = br#"{"id":"evt_1"}"#;
        assert!(source
            .authenticate(&signed("halfbroken", OLD, now(), body))
            .await
            .is_ok());
        assert_eq!(
            refusal(
                source
                    .authenticate(&signed("halfbroken", NEW, now(), body))
                    .await
            ),
            AuthFailure::SignatureMismatch
        );
    }

    #[tokio::test]
    async fn a_changed_body_a_stale_or_future_timestamp_and_a_wrong_secret_are_signature_mismatches(
    ) {
        let source = source();
        let body = br#"{"id":"evt_1","data":{"id":"c-1"}}"#;
        let mut changed = signed("mybar", NEW, now(), body);
        changed.body = br#"{"id":"evt_1","data":{"id":"c-2"}}"#.to_vec();
        let cases = [
            ("changed body", changed),
            ("10 minutes old", signed("mybar", NEW, now() - 600, body)),
            ("10 minutes ahead", signed("mybar", NEW, now() + 600, body)),
            ("wrong secret", signed("mybar", FOREIGN, now(), body)),
        ];
        for (what, request) in cases {
            assert_eq!(
                refusal(source.authenticate(&request).await),
                AuthFailure::SignatureMismatch,
                "{what}"
            );
        }
    }

    #[tokio::test]
    async fn an_instance_without_webhook_secrets_is_unknown() {
        let source = source();
        let body = b"{}";
        for instance in ["nobody", "tokened"] {
            assert_eq!(
                refusal(
                    source
                        .authenticate(&signed(instance, NEW, now(), body))
                        .await
                ),
                AuthFailure::UnknownInstance,
                "{instance}"
            );
        }
    }

    #[tokio::test]
    async fn missing_headers_a_non_integer_timestamp_and_a_missing_or_invalid_instance_are_refused()
    {
        let source = source();
        let body = b"{}";
        let ts = now().to_string();
        let signature = sign(NEW, "msg_1", now(), body);
        let (id, sig) = (Some("msg_1"), Some(signature.as_str()));
        let cases = [
            (
                request(Some("mybar"), None, Some(&ts), sig, body),
                AuthFailure::MissingSignature,
            ),
            (
                request(Some("mybar"), id, None, sig, body),
                AuthFailure::MissingSignature,
            ),
            (
                request(Some("mybar"), id, Some(&ts), None, body),
                AuthFailure::MissingSignature,
            ),
            (
                request(Some("mybar"), id, Some(" "), sig, body),
                AuthFailure::MissingSignature,
            ),
            (
                request(Some("mybar"), id, Some("soon"), sig, body),
                AuthFailure::MalformedSignature,
            ),
            (
                request(Some("mybar"), id, Some("1.7e9"), sig, body),
                AuthFailure::MalformedSignature,
            ),
            (
                request(Some("mybar"), id, Some(&ts), Some("garbage"), body),
                AuthFailure::SignatureMismatch,
            ),
            (
                request(None, id, Some(&ts), sig, body),
                AuthFailure::MissingInstance,
            ),
            (
                request(Some(""), id, Some(&ts), sig, body),
                AuthFailure::MissingInstance,
            ),
            (
                request(Some("not/valid"), id, Some(&ts), sig, body),
                AuthFailure::InvalidInstance,
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(
                refusal(source.authenticate(&request).await),
                expected,
                "{:?} {:?}",
                request.headers,
                request.path_params
            );
        }
    }

    #[test]
    fn the_webhook_id_header_is_the_sender_event_id_and_nothing_secret_is_archived() {
        let source = source();
        let mut headers = HeaderMap::new();
        assert_eq!(source.sender_event_id(&headers), None);
        headers.insert(ID_HEADER, HeaderValue::from_static("msg_9"));
        assert_eq!(source.sender_event_id(&headers), Some("msg_9"));
        assert_eq!(crate::declared_event_type(&source.name(), &headers), None);
        assert_eq!(source.name(), "vinesos");
        assert_eq!(
            source.archived_headers(),
            &[
                "webhook-id",
                "webhook-timestamp",
                "content-type",
                "user-agent"
            ]
        );
        assert!(!source.archived_headers().contains(&SIGNATURE_HEADER));
        assert!(!source.is_ping(&json!({"type": "ping"})));
    }

    #[test]
    fn names_routes_crates_and_logical_ids_are_distinct_and_names_round_trip() {
        let mut seen = HashSet::new();
        for event in VinesOsEvent::ALL {
            let f = Kind::VinesOs(event).function();
            for value in [
                event.name(),
                event.event_type(),
                f.route(),
                f.crate_name,
                f.logical_id,
            ] {
                assert!(seen.insert(value), "{value} repeats");
            }
            assert_eq!(VinesOsEvent::from_name(event.name()), Some(event));
            assert_eq!(event.event_type(), format!("vinesos.{}", event.name()));
            assert_eq!(
                f.crate_name,
                format!("vinesos-{}", event.name().replace('.', "-"))
            );
            assert!(f.route().starts_with("/vinesos/{instance}/"));
            assert!(f.logical_id.starts_with("VinesOs"));
            assert!(f.logical_id.ends_with("Function"));
        }
        assert_eq!(VinesOsEvent::from_name("customer.deleted"), None);
        assert_eq!(VinesOsEvent::from_name("vinesos.customer.created"), None);
    }

    #[test]
    fn the_receivers_projection_finds_the_same_key_and_refusals_as_the_whole_body() {
        use crate::projection_check::{assert_projection_agrees_with_each_field_broken, key_of};
        let order = include_str!("../../../../events/payloads/vinesos-order-added.json");
        let customer = include_str!("../../../../events/payloads/vinesos-customer-created.json");
        for (kind, sample) in [
            (VinesOsEvent::OrderAdded, order),
            (VinesOsEvent::CustomerCreated, customer),
        ] {
            assert!(key_of(&kind, serde_json::from_str(sample).unwrap()).is_ok());
            assert_projection_agrees_with_each_field_broken(
                &kind,
                sample,
                &["/id", "/type", "/occurred_at", "/data/id", "/data"],
            );
        }
    }
}
