//! The tour / booking platform: ten event families, one function and one
//! route per family, accounts named in the route.
//!
//! The platform's documentation says each webhook carries an "Event
//! Notification Payload" (the type of notification, its trigger, when it
//! occurred) and an "Event Data Payload" (the data), but gives no exact JSON
//! shape and no signature scheme. Our reading of it, which is what this
//! module accepts:
//!
//! ```json
//! {"notification": {"event": "Bookings", "trigger": "Amendment",
//!                   "occurred_at": "2026-11-24T10:00:00Z"},
//!  "data": {"id": "B-1", "...": "..."}}
//! ```
//!
//! - `type` is accepted for `event`, and `when` for `occurred_at`;
//! - the family (its name, slug or entity kind) and the trigger compare
//!   case-insensitively, ignoring spaces, hyphens and underscores
//!   (`Check-In` = `checkin` = `check in`);
//! - `occurred_at` is RFC 3339 or naive (taken as UTC) and is the entity's
//!   version: the newest notification wins;
//! - the data's id is `id` or `uuid` (string or number);
//! - Removal and Cancellation are tombstones: the state is kept with
//!   `"deleted": true`, so a late, older amendment cannot bring it back.
//!
//! Authentication, per account (the `{account}` path parameter): when the
//! account has webhook secrets, the configured signature header must carry
//! the HMAC-SHA256 of the raw body under one of them (hex in either case, or
//! base64, optionally prefixed `sha256=`); otherwise, when it has URL tokens,
//! the `{token}` path parameter must be one of them.

use async_trait::async_trait;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use serde_json::Value;
use sha2::Sha256;

use crate::functions::{Function, Kind};
use domain::error::{AuthFailure, ReceiveError};
use domain::ids::InstanceName;
use domain::request::WebhookRequest;
use domain::sources::{
    header, id_field, json_object, parse_timestamp_micros, strip_payment_card_fields, EntityChange,
    EventKind, FollowUp, Identity, Interpretation, Malformed, Reason, Source, SourceName, Version,
};
use ports::secrets::{SecretCache, WebhookSecret};

/// The source name, in keys.
pub const NAME: SourceName = SourceName::new("booking");

/// The sender's event id, when it sends one.
pub const EVENT_ID_HEADER: &str = "x-event-id";
/// The path parameter naming the account.
pub const ACCOUNT_PARAM: &str = "account";
/// The path parameter carrying a URL token (accounts without a secret).
pub const TOKEN_PARAM: &str = "token";

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 in bytes.
const SIGNATURE_LEN: usize = 32;

/// Standard base64, padded or not.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The ten event families of the booking platform, one function and one
/// route each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BookingFamily {
    Bookings,
    Customers,
    CheckIn,
    Accounts,
    Contacts,
    Employees,
    Package,
    Activity,
    Product,
    Inventory,
}

impl BookingFamily {
    pub const ALL: [Self; 10] = [
        Self::Bookings,
        Self::Customers,
        Self::CheckIn,
        Self::Accounts,
        Self::Contacts,
        Self::Employees,
        Self::Package,
        Self::Activity,
        Self::Product,
        Self::Inventory,
    ];

    /// The platform's name for the family.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bookings => "Bookings",
            Self::Customers => "Customers",
            Self::CheckIn => "Check-In",
            Self::Accounts => "Accounts",
            Self::Contacts => "Contacts",
            Self::Employees => "Employees",
            Self::Package => "Package",
            Self::Activity => "Activity",
            Self::Product => "Product",
            Self::Inventory => "Inventory",
        }
    }

    /// Lower-case, hyphenated: used in routes, crates and event types.
    pub fn slug(self) -> &'static str {
        match self {
            Self::Bookings => "bookings",
            Self::Customers => "customers",
            Self::CheckIn => "check-in",
            Self::Accounts => "accounts",
            Self::Contacts => "contacts",
            Self::Employees => "employees",
            Self::Package => "package",
            Self::Activity => "activity",
            Self::Product => "product",
            Self::Inventory => "inventory",
        }
    }

    /// `booking.{slug}`: the event type in keys and logs.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Bookings => "booking.bookings",
            Self::Customers => "booking.customers",
            Self::CheckIn => "booking.check-in",
            Self::Accounts => "booking.accounts",
            Self::Contacts => "booking.contacts",
            Self::Employees => "booking.employees",
            Self::Package => "booking.package",
            Self::Activity => "booking.activity",
            Self::Product => "booking.product",
            Self::Inventory => "booking.inventory",
        }
    }

    /// The kind of entity whose state the family's events carry.
    pub fn entity(self) -> Entity {
        match self {
            Self::Bookings => Entity::Booking,
            Self::Customers => Entity::Customer,
            Self::CheckIn => Entity::CheckIn,
            Self::Accounts => Entity::Account,
            Self::Contacts => Entity::Contact,
            Self::Employees => Entity::Employee,
            Self::Package => Entity::Package,
            Self::Activity => Entity::Activity,
            Self::Product => Entity::Product,
            Self::Inventory => Entity::Inventory,
        }
    }

    /// The triggers the platform documents for the family, as it spells them.
    pub fn triggers(self) -> &'static [&'static str] {
        match self {
            Self::Bookings => &["Creation", "Amendment", "Cancellation"],
            Self::Customers | Self::Accounts | Self::Contacts | Self::Employees => {
                &["Creation", "Amendment", "Removal"]
            }
            Self::CheckIn => &["On Check-in"],
            Self::Package | Self::Activity | Self::Product => &["Create", "Amendment", "Removal"],
            Self::Inventory => &["On Change"],
        }
    }

    /// True when `event` names this family (its name, slug or entity kind).
    fn is_named_by(self, event: &str) -> bool {
        let event = normalized(event);
        [self.name(), self.slug(), self.entity().kind().as_str()]
            .iter()
            .any(|name| normalized(name) == event)
    }

    /// The family's own spelling of `trigger`, when it is one of its triggers.
    fn canonical_trigger(self, trigger: &str) -> Option<&'static str> {
        let trigger = normalized(trigger);
        self.triggers()
            .iter()
            .copied()
            .find(|t| normalized(t) == trigger)
    }
}

/// Lower case without spaces, hyphens and underscores: `On Check-in` ->
/// `oncheckin`.
fn normalized(raw: &str) -> String {
    raw.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_') && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// `On Check-in` -> `on-check-in`: the trigger as it appears in keys.
fn trigger_slug(trigger: &str) -> String {
    trigger.to_ascii_lowercase().replace(' ', "-")
}

/// A trigger that ends the entity: kept as a tombstone.
fn is_tombstone(trigger: &str) -> bool {
    matches!(trigger, "Removal" | "Cancellation")
}

/// The first of `names` that `object` has as a string.
fn text_field<'v>(object: &'v Value, names: &[&str]) -> Option<&'v str> {
    names
        .iter()
        .find_map(|name| object.get(*name))
        .and_then(Value::as_str)
}

domain::entities! {
    /// What the booking platform's entities are: one per family.
    pub enum Entity {
        Booking => "booking",
        Customer => "customer",
        CheckIn => "check_in",
        Account => "account",
        Contact => "contact",
        Employee => "employee",
        Package => "package",
        Activity => "activity",
        Product => "product",
        Inventory => "inventory",
    }
}

/// This platform's rows of the table of functions ([`crate::functions`]).
pub const FUNCTIONS: &[Function] = &[
    Function {
        logical_id: "BookingBookingsFunction",
        crate_name: "booking-bookings",
        routes: &[
            "/booking/{account}/bookings",
            "/booking/{account}/bookings/{token}",
        ],
        kind: Kind::Booking(BookingFamily::Bookings),
    },
    Function {
        logical_id: "BookingCustomersFunction",
        crate_name: "booking-customers",
        routes: &[
            "/booking/{account}/customers",
            "/booking/{account}/customers/{token}",
        ],
        kind: Kind::Booking(BookingFamily::Customers),
    },
    Function {
        logical_id: "BookingCheckInFunction",
        crate_name: "booking-check-in",
        routes: &[
            "/booking/{account}/check-in",
            "/booking/{account}/check-in/{token}",
        ],
        kind: Kind::Booking(BookingFamily::CheckIn),
    },
    Function {
        logical_id: "BookingAccountsFunction",
        crate_name: "booking-accounts",
        routes: &[
            "/booking/{account}/accounts",
            "/booking/{account}/accounts/{token}",
        ],
        kind: Kind::Booking(BookingFamily::Accounts),
    },
    Function {
        logical_id: "BookingContactsFunction",
        crate_name: "booking-contacts",
        routes: &[
            "/booking/{account}/contacts",
            "/booking/{account}/contacts/{token}",
        ],
        kind: Kind::Booking(BookingFamily::Contacts),
    },
    Function {
        logical_id: "BookingEmployeesFunction",
        crate_name: "booking-employees",
        routes: &[
            "/booking/{account}/employees",
            "/booking/{account}/employees/{token}",
        ],
        kind: Kind::Booking(BookingFamily::Employees),
    },
    Function {
        logical_id: "BookingPackageFunction",
        crate_name: "booking-package",
        routes: &[
            "/booking/{account}/package",
            "/booking/{account}/package/{token}",
        ],
        kind: Kind::Booking(BookingFamily::Package),
    },
    Function {
        logical_id: "BookingActivityFunction",
        crate_name: "booking-activity",
        routes: &[
            "/booking/{account}/activity",
            "/booking/{account}/activity/{token}",
        ],
        kind: Kind::Booking(BookingFamily::Activity),
    },
    Function {
        logical_id: "BookingProductFunction",
        crate_name: "booking-product",
        routes: &[
            "/booking/{account}/product",
            "/booking/{account}/product/{token}",
        ],
        kind: Kind::Booking(BookingFamily::Product),
    },
    Function {
        logical_id: "BookingInventoryFunction",
        crate_name: "booking-inventory",
        routes: &[
            "/booking/{account}/inventory",
            "/booking/{account}/inventory/{token}",
        ],
        kind: Kind::Booking(BookingFamily::Inventory),
    },
];

impl EventKind for BookingFamily {
    fn event_type(&self) -> &'static str {
        BookingFamily::event_type(*self)
    }

    fn interpret(
        &self,
        body: Value,
        _headers: &http::HeaderMap,
    ) -> Result<Interpretation, Malformed> {
        let body = json_object(&body)?;
        let notification = body
            .get("notification")
            .filter(|v| v.is_object())
            .ok_or(Malformed(Reason::MissingNotification))?;
        let data = body
            .get("data")
            .filter(|v| v.is_object())
            .ok_or(Malformed(Reason::MissingData))?;
        text_field(notification, &["event", "type"])
            .filter(|event| self.is_named_by(event))
            .ok_or(Malformed(Reason::WrongFamily))?;
        let trigger = text_field(notification, &["trigger"])
            .and_then(|t| self.canonical_trigger(t))
            .ok_or(Malformed(Reason::UnknownTrigger))?;
        let occurred_at = text_field(notification, &["occurred_at", "when"])
            .ok_or(Malformed(Reason::MissingOrInvalidOccurredAt))?;
        let micros = parse_timestamp_micros(occurred_at.trim())
            .ok_or(Malformed(Reason::MissingOrInvalidOccurredAt))?;
        let id = id_field(data, "id")
            .or_else(|| id_field(data, "uuid"))
            .ok_or(Malformed(Reason::MissingDataId))?;
        let mut data = data.clone();
        strip_payment_card_fields(&mut data);
        let state = serde_json::json!({
            "deleted": is_tombstone(trigger),
            "trigger": trigger,
            "occurred_at": occurred_at,
            "data": data,
        });
        Ok(Interpretation {
            identity: Identity::Business(format!("{}:{id}@{micros}", trigger_slug(trigger))),
            entity: Some(EntityChange {
                kind: self.entity().kind(),
                id,
                version: Version::UpdatedAt(micros),
                ends_entity: is_tombstone(trigger),
                state,
            }),
            // Delivered to the partner like Revel's changes (a tombstone
            // too, so the partner hears of a removal), unless the
            // merchant's switch (`DELIVER_BOOKING_EVENTS`) is off.
            follow_up: FollowUp::SyncEntity,
        })
    }
}

/// The booking platform as a [`Source`]: HMAC-SHA256 or URL tokens, per
/// account.
pub struct Booking {
    secrets: SecretCache,
    signature_header: String,
}

impl Booking {
    /// `signature_header` is the header carrying the HMAC (any case).
    pub fn new(secrets: SecretCache, signature_header: impl Into<String>) -> Self {
        Self {
            secrets,
            signature_header: signature_header.into().trim().to_ascii_lowercase(),
        }
    }

    pub fn secrets(&self) -> &SecretCache {
        &self.secrets
    }
}

/// A signature header decoded to the 32 bytes of an HMAC-SHA256: hex (either
/// case) or base64, optionally prefixed `sha256=`.
fn decode_signature(raw: &str) -> Option<[u8; SIGNATURE_LEN]> {
    let raw = raw.trim();
    let raw = match raw.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256=") => raw[7..].trim(),
        _ => raw,
    };
    let mut bytes = [0u8; SIGNATURE_LEN];
    if raw.len() == 2 * SIGNATURE_LEN && hex::decode_to_slice(raw, &mut bytes).is_ok() {
        return Some(bytes);
    }
    let decoded = BASE64.decode(raw).ok()?;
    if decoded.len() != SIGNATURE_LEN {
        return None;
    }
    bytes.copy_from_slice(&decoded);
    Some(bytes)
}

/// True when one of `secrets` signs `body` to `claimed` (constant time).
fn signed_by_any(claimed: &[u8], body: &[u8], secrets: &[WebhookSecret]) -> bool {
    secrets.iter().any(|secret| {
        let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(body);
        mac.verify_slice(claimed).is_ok()
    })
}

#[async_trait]
impl Source for Booking {
    fn name(&self) -> SourceName {
        NAME
    }

    async fn authenticate(&self, request: &WebhookRequest) -> Result<InstanceName, ReceiveError> {
        let account = request
            .path_param(ACCOUNT_PARAM)
            .ok_or(AuthFailure::MissingInstance)?;
        let account = InstanceName::parse(account).map_err(|_| AuthFailure::InvalidInstance)?;
        if let Some(secrets) = self.secrets.secrets_for(&account).await? {
            let claimed = header(&request.headers, &self.signature_header)
                .ok_or(AuthFailure::MissingSignature)?;
            let claimed = decode_signature(claimed).ok_or(AuthFailure::MalformedSignature)?;
            return if signed_by_any(&claimed, &request.body, &secrets) {
                Ok(account)
            } else {
                Err(AuthFailure::SignatureMismatch.into())
            };
        }
        if let Some(tokens) = self.secrets.tokens_for(&account).await? {
            let presented = request
                .path_param(TOKEN_PARAM)
                .ok_or(AuthFailure::SignatureMismatch)?;
            return if tokens.iter().any(|t| t.matches(presented)) {
                Ok(account)
            } else {
                Err(AuthFailure::SignatureMismatch.into())
            };
        }
        Err(AuthFailure::UnknownInstance.into())
    }

    fn sender_event_id<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        header(headers, EVENT_ID_HEADER)
    }

    fn archived_headers(&self) -> &'static [&'static str] {
        &["content-type", "user-agent", EVENT_ID_HEADER]
    }

    async fn warm(&self) -> Result<usize, domain::error::DependencyError> {
        self.secrets.warm().await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    use http::HeaderValue;
    use serde_json::json;

    use super::*;
    use ports::fakes::FixedSecrets;

    const SIGNATURE_HEADER: &str = "x-signature";
    const DOC: &str = r#"{"acme": {"webhook": ["new-secret", "old-secret"]},
                          "tokened": {"token": "a-long-random-token"},
                          "api-only": {"api_key": "k"}}"#;

    fn body(event: &str, trigger: &str, occurred_at: &str) -> Value {
        json!({"notification": {"event": event, "trigger": trigger, "occurred_at": occurred_at},
               "data": {"id": "B-1", "guests": 2}})
    }

    fn source() -> Booking {
        let cache = SecretCache::new(FixedSecrets(DOC.into()), Duration::from_secs(60));
        Booking::new(cache, "X-Signature")
    }

    fn request(
        account: &str,
        token: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> WebhookRequest {
        let mut headers = HeaderMap::new();
        if let Some(signature) = signature {
            headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(signature).unwrap());
        }
        let mut path_params = vec![("account".into(), account.into())];
        if let Some(token) = token {
            path_params.push(("token".into(), token.into()));
        }
        WebhookRequest {
            headers,
            body: body.to_vec(),
            request_id: "req-1".into(),
            path_params,
        }
    }

    fn mac(secret: &str, body: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    fn refusal(result: Result<InstanceName, ReceiveError>) -> AuthFailure {
        match result {
            Err(ReceiveError::Unauthorized(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn every_family_accepts_each_of_its_triggers_and_refuses_another_familys_event() {
        for family in BookingFamily::ALL {
            for trigger in family.triggers() {
                let i = family
                    .interpret(
                        body(family.name(), trigger, "2026-11-24T10:00:00Z"),
                        &http::HeaderMap::new(),
                    )
                    .unwrap_or_else(|e| panic!("{family:?} {trigger}: {e:?}"));
                let entity = i.entity.unwrap();
                assert_eq!(entity.kind, family.entity().kind());
                assert_eq!(entity.id, "B-1");
                assert_eq!(entity.state["trigger"], *trigger);
                assert_eq!(entity.state["data"]["guests"], 2);
                assert_eq!(i.follow_up, FollowUp::SyncEntity);
            }
            let trigger = family.triggers()[0];
            for other in BookingFamily::ALL.into_iter().filter(|o| *o != family) {
                assert_eq!(
                    family
                        .interpret(
                            body(other.name(), trigger, "2026-11-24T10:00:00Z"),
                            &http::HeaderMap::new()
                        )
                        .unwrap_err(),
                    Malformed(Reason::WrongFamily),
                    "{family:?} given {other:?}"
                );
            }
            assert_eq!(
                family
                    .interpret(
                        body(family.name(), "Exploded", "2026-11-24T10:00:00Z"),
                        &http::HeaderMap::new()
                    )
                    .unwrap_err(),
                Malformed(Reason::UnknownTrigger)
            );
        }
    }

    #[test]
    fn family_and_trigger_names_ignore_case_spaces_and_hyphens_and_aliases_are_read() {
        for event in ["Check-In", "checkin", "check in", "CHECK_IN"] {
            let b = json!({"notification": {"type": event, "trigger": "on check-in", "when": "2026-11-24 10:00:00"},
                           "data": {"uuid": 7}});
            let i = BookingFamily::CheckIn
                .interpret(b.clone(), &http::HeaderMap::new())
                .unwrap();
            let entity = i.entity.unwrap();
            assert_eq!(entity.id, "7");
            assert_eq!(entity.state["trigger"], "On Check-in");
            assert_eq!(entity.state["occurred_at"], "2026-11-24 10:00:00");
        }
    }

    #[test]
    fn a_removal_is_a_tombstone_with_deleted_true_and_its_time_as_version() {
        let at = "2026-11-24T10:00:00Z";
        let micros = parse_timestamp_micros(at).unwrap();
        for (family, trigger) in [
            (BookingFamily::Customers, "Removal"),
            (BookingFamily::Product, "removal"),
            (BookingFamily::Bookings, "Cancellation"),
        ] {
            let entity = family
                .interpret(body(family.name(), trigger, at), &http::HeaderMap::new())
                .unwrap()
                .entity
                .unwrap();
            assert_eq!(entity.version, Version::UpdatedAt(micros));
            assert_eq!(entity.state["deleted"], true, "{family:?}");
            assert_eq!(entity.state["occurred_at"], at);
        }
        let amendment = BookingFamily::Customers
            .interpret(body("Customers", "Amendment", at), &http::HeaderMap::new())
            .unwrap()
            .entity
            .unwrap();
        assert_eq!(amendment.state["deleted"], false);
    }

    #[test]
    fn the_business_key_differs_per_trigger_and_time() {
        let key = |trigger, at| {
            BookingFamily::Bookings
                .interpret(body("Bookings", trigger, at), &http::HeaderMap::new())
                .unwrap()
                .identity
        };
        let created = key("Creation", "2026-11-24T10:00:00Z");
        assert_eq!(
            created,
            Identity::Business(format!(
                "creation:B-1@{}",
                parse_timestamp_micros("2026-11-24T10:00:00Z").unwrap()
            ))
        );
        let amended = key("Amendment", "2026-11-24T10:00:00Z");
        let later = key("Amendment", "2026-11-24T10:00:01Z");
        assert_ne!(created, amended);
        assert_ne!(amended, later);
        assert_eq!(later, key("amendment", "2026-11-24T10:00:01Z"));
    }

    #[test]
    fn a_missing_or_unparseable_occurred_at_is_malformed() {
        let missing = json!({"notification": {"event": "Bookings", "trigger": "Creation"}, "data": {"id": 1}});
        let numeric = json!({"notification": {"event": "Bookings", "trigger": "Creation", "occurred_at": 1764000000}, "data": {"id": 1}});
        for b in [missing, numeric, body("Bookings", "Creation", "yesterday")] {
            assert_eq!(
                BookingFamily::Bookings
                    .interpret(b.clone(), &http::HeaderMap::new())
                    .unwrap_err(),
                Malformed(Reason::MissingOrInvalidOccurredAt),
                "{b}"
            );
        }
    }

    #[test]
    fn bodies_without_notification_data_or_data_id_are_malformed() {
        let cases = [
            (json!([1]), "not_a_json_object"),
            (json!({"data": {"id": 1}}), "missing_notification"),
            (
                json!({"notification": {"event": "Bookings"}}),
                "missing_data",
            ),
            (
                json!({"notification": {"event": "Bookings", "trigger": "Creation", "occurred_at": "2026-11-24T10:00:00Z"}, "data": {"name": "x"}}),
                "missing_data_id",
            ),
            (
                json!({"notification": {"trigger": "Creation", "occurred_at": "2026-11-24T10:00:00Z"}, "data": {"id": 1}}),
                "wrong_family",
            ),
        ];
        for (b, reason) in cases {
            assert_eq!(
                BookingFamily::Bookings
                    .interpret(b.clone(), &http::HeaderMap::new())
                    .unwrap_err()
                    .reason(),
                reason,
                "{b}"
            );
        }
    }

    #[test]
    fn payment_card_fields_are_not_kept() {
        let b = json!({"notification": {"event": "Bookings", "trigger": "Creation", "occurred_at": "2026-11-24T10:00:00Z"},
                       "data": {"id": "B-1", "payment": {"amount": 10, "card_number": "4111", "cc_exp": "12/30"}}});
        let entity = BookingFamily::Bookings
            .interpret(b.clone(), &http::HeaderMap::new())
            .unwrap()
            .entity
            .unwrap();
        assert_eq!(entity.state["data"]["payment"], json!({"amount": 10}));
    }

    #[tokio::test]
    async fn hmac_mode_accepts_hex_in_both_cases_base64_and_the_sha256_prefix() {
        let source = source();
        let payload = br#"{"notification": {}}"#;
        for secret in ["new-secret", "old-secret"] {
            let raw = mac(secret, payload);
            for signature in [
                hex::encode(&raw),
                hex::encode_upper(&raw),
                STANDARD.encode(&raw),
                STANDARD_NO_PAD.encode(&raw),
                format!("sha256={}", hex::encode(&raw)),
                format!("SHA256={}", STANDARD.encode(&raw)),
            ] {
                let account = source
                    .authenticate(&request("acme", None, Some(&signature), payload))
                    .await
                    .unwrap_or_else(|e| panic!("{signature}: {e:?}"));
                assert_eq!(account.as_str(), "acme");
            }
        }
    }

    #[tokio::test]
    async fn hmac_mode_refuses_a_changed_body_a_missing_header_and_a_token_instead() {
        let source = source();
        let payload = br#"{"a": 1}"#;
        let signature = hex::encode(mac("new-secret", payload));
        let changed = source
            .authenticate(&request("acme", None, Some(&signature), br#"{"a": 2}"#))
            .await;
        assert_eq!(refusal(changed), AuthFailure::SignatureMismatch);
        let missing = source
            .authenticate(&request("acme", None, None, payload))
            .await;
        assert_eq!(refusal(missing), AuthFailure::MissingSignature);
        let token = source
            .authenticate(&request("acme", Some("new-secret"), None, payload))
            .await;
        assert_eq!(refusal(token), AuthFailure::MissingSignature);
        let garbled = source
            .authenticate(&request("acme", None, Some("not a signature"), payload))
            .await;
        assert_eq!(refusal(garbled), AuthFailure::MalformedSignature);
        let foreign = hex::encode(mac("someone-else", payload));
        let wrong_key = source
            .authenticate(&request("acme", None, Some(&foreign), payload))
            .await;
        assert_eq!(refusal(wrong_key), AuthFailure::SignatureMismatch);
    }

    #[tokio::test]
    async fn token_mode_accepts_the_right_token_and_refuses_a_wrong_or_missing_one() {
        let source = source();
        let ok = source
            .authenticate(&request(
                "tokened",
                Some("a-long-random-token"),
                None,
                b"{}",
            ))
            .await
            .unwrap();
        assert_eq!(ok.as_str(), "tokened");
        let wrong = source
            .authenticate(&request("tokened", Some("a-long-random-toke"), None, b"{}"))
            .await;
        assert_eq!(refusal(wrong), AuthFailure::SignatureMismatch);
        let missing = source
            .authenticate(&request("tokened", None, None, b"{}"))
            .await;
        assert_eq!(refusal(missing), AuthFailure::SignatureMismatch);
    }

    #[tokio::test]
    async fn an_account_with_neither_secret_nor_token_is_unknown() {
        let source = source();
        for account in ["api-only", "nobody"] {
            let result = source
                .authenticate(&request(account, Some("t"), Some("abcd"), b"{}"))
                .await;
            assert_eq!(refusal(result), AuthFailure::UnknownInstance, "{account}");
        }
    }

    #[tokio::test]
    async fn a_missing_or_invalid_account_is_refused_before_any_lookup() {
        let source = source();
        let mut no_account = request("acme", None, None, b"{}");
        no_account.path_params.clear();
        assert_eq!(
            refusal(source.authenticate(&no_account).await),
            AuthFailure::MissingInstance
        );
        assert_eq!(
            refusal(
                source
                    .authenticate(&request("not/valid", None, None, b"{}"))
                    .await
            ),
            AuthFailure::InvalidInstance
        );
    }

    #[test]
    fn the_event_id_header_is_the_sender_event_id() {
        let source = source();
        let mut headers = HeaderMap::new();
        assert_eq!(source.sender_event_id(&headers), None);
        headers.insert(EVENT_ID_HEADER, HeaderValue::from_static("ev-9"));
        assert_eq!(source.sender_event_id(&headers), Some("ev-9"));
        assert_eq!(crate::declared_event_type(&source.name(), &headers), None);
        assert!(source.archived_headers().contains(&EVENT_ID_HEADER));
    }

    #[test]
    fn names_slugs_crates_logical_ids_and_routes_are_distinct_across_families() {
        let mut seen = HashSet::new();
        for family in BookingFamily::ALL {
            let f = Kind::Booking(family).function();
            for value in [
                family.name(),
                family.slug(),
                family.event_type(),
                f.crate_name,
                f.logical_id,
                f.routes[0],
                f.routes[1],
            ] {
                assert!(seen.insert(value), "{value} repeats");
            }
            assert_eq!(family.event_type(), format!("booking.{}", family.slug()));
            assert_eq!(f.crate_name, format!("booking-{}", family.slug()));
            assert_eq!(
                f.routes[0],
                format!("/booking/{{account}}/{}", family.slug())
            );
            assert_eq!(f.routes[1], format!("{}/{{token}}", f.routes[0]));
            assert_eq!(f.routes.len(), 2);
            assert!(f.logical_id.starts_with("Booking"));
            assert!(f.logical_id.ends_with("Function"));
        }
        assert_eq!(
            Kind::Booking(BookingFamily::CheckIn).function().logical_id,
            "BookingCheckInFunction"
        );
        let kinds: HashSet<_> = BookingFamily::ALL.map(BookingFamily::entity).into();
        assert_eq!(kinds.len(), BookingFamily::ALL.len());
    }
}
