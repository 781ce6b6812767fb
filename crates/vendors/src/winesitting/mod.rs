//! WineSitting: one webhook URL per account, `/winesitting/{account}/{token}`,
//! authenticated by the secret token in its path (WineSitting does not sign).
//!
//! Each POST is an event object `{"type": "ORDER"|"PUTAWAY", "operation":
//! "CREATE"|"UPDATE", "object": {...}, "date": ...}` whose `object` is the
//! complete, current WineSitting object. WineSitting ignores the answer,
//! sends each event once, never retries and may send duplicates: a duplicate
//! (same type, object id, operation and date) is stored once, and a failed
//! request is gone, so the pipeline's repair poll
//! (`pipeline::worker::jobs::winesitting_repair::poll`) polls the API for the orders still in
//! progress and ingests those whose kept state is missing or differs.

pub mod api;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::functions::{Function, Kind};
use domain::error::{AuthFailure, DependencyError, ReceiveError};
use domain::ids::InstanceName;
use domain::request::WebhookRequest;
use domain::sources::{
    id_field, json_object, parse_timestamp_micros, strip_payment_card_fields, EntityChange,
    EventKind, FollowUp, Identity, Interpretation, Malformed, Reason, Source, SourceName, Version,
};
use ports::secrets::{InstanceDocument, InstanceSecrets, SecretCache};

/// This platform's row of the table of functions ([`crate::functions`]):
/// one function takes every WineSitting event.
pub const FUNCTIONS: &[Function] = &[Function {
    logical_id: "WineSittingWebhookFunction",
    crate_name: "winesitting-webhook",
    routes: &["/winesitting/{account}/{token}"],
    kind: Kind::WineSitting,
}];

/// The source name, in keys.
pub const NAME: SourceName = SourceName::new("winesitting");

/// Every WineSitting event: one function takes both types and both
/// operations; the body says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WineSittingEvent;

/// The two object types WineSitting sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjectType {
    Order,
    Putaway,
}

impl ObjectType {
    fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_uppercase().as_str() {
            "ORDER" => Some(Self::Order),
            "PUTAWAY" => Some(Self::Putaway),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Order => "ORDER",
            Self::Putaway => "PUTAWAY",
        }
    }

    fn entity(self) -> Entity {
        match self {
            Self::Order => Entity::Order,
            Self::Putaway => Entity::Putaway,
        }
    }
}

domain::entities! {
    /// What WineSitting's entities are: one per object type it sends.
    pub enum Entity {
        Order => "order",
        Putaway => "putaway",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Create,
    Update,
}

impl Operation {
    fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_uppercase().as_str() {
            "CREATE" => Some(Self::Create),
            "UPDATE" => Some(Self::Update),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
        }
    }
}

/// `date` as microseconds since the epoch: a timestamp string, or an integer
/// of epoch milliseconds.
fn event_micros(date: Option<&Value>) -> Option<i64> {
    match date? {
        Value::String(raw) => parse_timestamp_micros(raw.trim()),
        Value::Number(n) => n.as_i64()?.checked_mul(1000),
        _ => None,
    }
}

impl EventKind for WineSittingEvent {
    fn event_type(&self) -> &'static str {
        "winesitting.event"
    }

    fn interpret(
        &self,
        body: Value,
        _headers: &http::HeaderMap,
    ) -> Result<Interpretation, Malformed> {
        let body = json_object(&body)?;
        let object_type = body
            .get("type")
            .and_then(Value::as_str)
            .and_then(ObjectType::parse)
            .ok_or(Malformed(Reason::UnknownType))?;
        let operation = body
            .get("operation")
            .and_then(Value::as_str)
            .and_then(Operation::parse)
            .ok_or(Malformed(Reason::UnknownOperation))?;
        if (object_type, operation) == (ObjectType::Putaway, Operation::Update) {
            return Err(Malformed(Reason::PutawayUpdate));
        }
        let object = body
            .get("object")
            .filter(|o| o.is_object())
            .ok_or(Malformed(Reason::MissingObjectId))?;
        let id = id_field(object, "id").ok_or(Malformed(Reason::MissingObjectId))?;
        let micros =
            event_micros(body.get("date")).ok_or(Malformed(Reason::MissingOrInvalidDate))?;
        let mut state = object.clone();
        strip_payment_card_fields(&mut state);
        Ok(Interpretation {
            identity: Identity::Business(format!(
                "{}:{id}:{}@{micros}",
                object_type.name(),
                operation.name()
            )),
            entity: Some(EntityChange {
                kind: object_type.entity().kind(),
                id,
                version: Version::UpdatedAt(micros),
                ends_entity: false,
                state,
            }),
            // Delivered to the partner like Revel's changes, unless the
            // merchant's switch (`DELIVER_WINESITTING_EVENTS`) is off.
            follow_up: FollowUp::SyncEntity,
        })
    }
}

/// WineSitting as a [`Source`]: a secret token per account in the URL path.
pub struct WineSitting {
    secrets: SecretCache,
}

impl WineSitting {
    pub fn new(secrets: SecretCache) -> Self {
        Self { secrets }
    }

    pub fn secrets(&self) -> &SecretCache {
        &self.secrets
    }
}

/// Its secret document, as the jobs worker reads it.
#[async_trait]
impl InstanceDocument for WineSitting {
    async fn document(&self) -> Result<Arc<InstanceSecrets>, DependencyError> {
        self.secrets.document().await
    }
}

#[async_trait]
impl Source for WineSitting {
    fn name(&self) -> SourceName {
        NAME
    }

    async fn authenticate(&self, request: &WebhookRequest) -> Result<InstanceName, ReceiveError> {
        let account = request
            .path_param("account")
            .filter(|a| !a.trim().is_empty())
            .ok_or(AuthFailure::MissingInstance)?;
        let account = InstanceName::parse(account).map_err(|_| AuthFailure::InvalidInstance)?;
        let tokens = self
            .secrets
            .tokens_for(&account)
            .await?
            .ok_or(AuthFailure::UnknownInstance)?;
        let presented = request
            .path_param("token")
            .ok_or(AuthFailure::SignatureMismatch)?;
        // Every token is compared, so the timing doesn't tell which matched.
        let matched = tokens
            .iter()
            .fold(false, |found, token| token.matches(presented) | found);
        if matched {
            Ok(account)
        } else {
            Err(AuthFailure::SignatureMismatch.into())
        }
    }

    fn archived_headers(&self) -> &'static [&'static str] {
        &["content-type", "user-agent"]
    }

    async fn warm(&self) -> Result<usize, DependencyError> {
        self.secrets.warm().await
    }
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::*;
    use crate::fakes::{
        winesitting_account as acct, winesitting_event as event, winesitting_request as request,
        winesitting_secrets as cache, WINESITTING_DATE as DATE,
    };

    const DATE_MICROS: i64 = 1_709_287_200_000_000;

    #[test]
    fn each_valid_shape_interprets_with_its_identity_entity_and_version() {
        let cases = [
            (
                "ORDER",
                "CREATE",
                json!(17),
                "ORDER:17:CREATE",
                "order",
                "17",
            ),
            (
                "ORDER",
                "UPDATE",
                json!("o-9"),
                "ORDER:o-9:UPDATE",
                "order",
                "o-9",
            ),
            (
                "order",
                "update",
                json!("o-9"),
                "ORDER:o-9:UPDATE",
                "order",
                "o-9",
            ),
            (
                "PUTAWAY",
                "CREATE",
                json!(5),
                "PUTAWAY:5:CREATE",
                "putaway",
                "5",
            ),
            (
                "Putaway",
                "Create",
                json!(" 5 "),
                "PUTAWAY:5:CREATE",
                "putaway",
                "5",
            ),
        ];
        for (kind, operation, id, identity, entity_kind, entity_id) in cases {
            let object =
                json!({"id": id, "status": "in_progress", "card_number": "4242424242424242"});
            let body = event(kind, operation, object, json!(DATE));

            let meaning = WineSittingEvent
                .interpret(body.clone(), &http::HeaderMap::new())
                .unwrap();

            assert_eq!(
                meaning.identity,
                Identity::Business(format!("{identity}@{DATE_MICROS}")),
                "{body}"
            );
            assert_eq!(meaning.follow_up, FollowUp::SyncEntity);
            let entity = meaning.entity.unwrap();
            assert_eq!(entity.kind, entity_kind);
            assert_eq!(entity.id, entity_id);
            assert_eq!(entity.version, Version::UpdatedAt(DATE_MICROS));
            assert_eq!(entity.state["status"], "in_progress");
            assert!(
                entity.state.get("card_number").is_none(),
                "card digits were kept"
            );
        }
    }

    #[test]
    fn a_date_may_be_a_timestamp_string_or_epoch_milliseconds() {
        let millis = event(
            "ORDER",
            "UPDATE",
            json!({"id": 1}),
            json!(1_709_287_200_000_i64),
        );
        let naive = event(
            "ORDER",
            "UPDATE",
            json!({"id": 1}),
            json!("2024-03-01T10:00:00.5"),
        );

        let from_millis = WineSittingEvent
            .interpret(millis.clone(), &http::HeaderMap::new())
            .unwrap();
        let from_naive = WineSittingEvent
            .interpret(naive.clone(), &http::HeaderMap::new())
            .unwrap();

        assert_eq!(
            from_millis.entity.unwrap().version,
            Version::UpdatedAt(DATE_MICROS)
        );
        assert_eq!(
            from_naive.entity.unwrap().version,
            Version::UpdatedAt(DATE_MICROS + 500_000)
        );
    }

    #[test]
    fn each_invalid_shape_is_the_right_malformed() {
        let order = json!({"id": 1});
        let cases = [
            (json!([1, 2]), "not_a_json_object"),
            (
                event("INVOICE", "CREATE", order.clone(), json!(DATE)),
                "unknown_type",
            ),
            (
                json!({"operation": "CREATE", "object": order, "date": DATE}),
                "unknown_type",
            ),
            (
                event("ORDER", "DELETE", order.clone(), json!(DATE)),
                "unknown_operation",
            ),
            (
                json!({"type": "ORDER", "object": order, "date": DATE}),
                "unknown_operation",
            ),
            (
                event("PUTAWAY", "UPDATE", order.clone(), json!(DATE)),
                "putaway_update",
            ),
            (
                event("ORDER", "CREATE", json!({"status": "x"}), json!(DATE)),
                "missing_object_id",
            ),
            (
                event("ORDER", "CREATE", json!({"id": ""}), json!(DATE)),
                "missing_object_id",
            ),
            (
                event("ORDER", "CREATE", json!({"id": null}), json!(DATE)),
                "missing_object_id",
            ),
            (
                event("ORDER", "CREATE", json!([{"id": 1}]), json!(DATE)),
                "missing_object_id",
            ),
            (
                json!({"type": "ORDER", "operation": "CREATE", "date": DATE}),
                "missing_object_id",
            ),
            (
                event("ORDER", "CREATE", order.clone(), json!("yesterday")),
                "missing_or_invalid_date",
            ),
            (
                event("ORDER", "CREATE", order.clone(), json!(1.5)),
                "missing_or_invalid_date",
            ),
            (
                event("ORDER", "CREATE", order.clone(), json!(true)),
                "missing_or_invalid_date",
            ),
            (
                json!({"type": "ORDER", "operation": "CREATE", "object": order}),
                "missing_or_invalid_date",
            ),
        ];
        for (body, reason) in cases {
            assert_eq!(
                WineSittingEvent
                    .interpret(body.clone(), &http::HeaderMap::new())
                    .unwrap_err()
                    .reason(),
                reason,
                "{body}"
            );
        }
    }

    #[test]
    fn a_duplicate_has_the_same_identity_and_a_different_date_or_operation_does_not() {
        let first = event(
            "ORDER",
            "UPDATE",
            json!({"id": 3, "note": "a"}),
            json!(DATE),
        );
        let duplicate = event(
            "order",
            "UPDATE",
            json!({"id": "3", "note": "a"}),
            json!(DATE),
        );
        let later = event(
            "ORDER",
            "UPDATE",
            json!({"id": 3}),
            json!("2024-03-01T10:00:01Z"),
        );
        let created = event("ORDER", "CREATE", json!({"id": 3}), json!(DATE));
        let identity = |body: &Value| {
            WineSittingEvent
                .interpret(body.clone(), &http::HeaderMap::new())
                .unwrap()
                .identity
        };

        assert_eq!(identity(&first), identity(&duplicate));
        assert_ne!(identity(&first), identity(&later));
        assert_ne!(identity(&first), identity(&created));
    }

    #[tokio::test]
    async fn the_right_token_is_accepted_including_the_previous_one_during_rotation() {
        let source = WineSitting::new(cache());
        let body = event("ORDER", "CREATE", json!({"id": 1}), json!(DATE));

        for token in ["tok-new", "tok-old"] {
            let account = source
                .authenticate(&request(&[("account", "ACCT"), ("token", token)], &body))
                .await
                .unwrap();
            assert_eq!(account, acct());
        }
    }

    #[tokio::test]
    async fn a_wrong_missing_or_other_accounts_token_is_refused() {
        let source = WineSitting::new(cache());
        let body = event("ORDER", "CREATE", json!({"id": 1}), json!(DATE));
        let cases: [(&[(&str, &str)], AuthFailure); 8] = [
            (
                &[("account", "acct"), ("token", "tok-newer")],
                AuthFailure::SignatureMismatch,
            ),
            (
                &[("account", "acct"), ("token", "")],
                AuthFailure::SignatureMismatch,
            ),
            (&[("account", "acct")], AuthFailure::SignatureMismatch),
            (
                &[("account", "acct"), ("token", "tok-other")],
                AuthFailure::SignatureMismatch,
            ),
            (
                &[("account", "nobody"), ("token", "tok-new")],
                AuthFailure::UnknownInstance,
            ),
            (
                &[("account", "signed"), ("token", "s")],
                AuthFailure::UnknownInstance,
            ),
            (
                &[("account", "a/b"), ("token", "tok-new")],
                AuthFailure::InvalidInstance,
            ),
            (&[("token", "tok-new")], AuthFailure::MissingInstance),
        ];
        for (params, expected) in cases {
            let error = source
                .authenticate(&request(params, &body))
                .await
                .unwrap_err();
            assert!(
                matches!(error, ReceiveError::Unauthorized(reason) if reason == expected),
                "{params:?}: {error:?}"
            );
        }
    }

    #[test]
    fn the_source_has_no_sender_event_id_no_declared_type_and_no_ping() {
        let source = WineSitting::new(cache());
        let mut headers = http::HeaderMap::new();
        headers.insert("x-request-id", http::HeaderValue::from_static("r-1"));

        assert_eq!(source.name(), "winesitting");
        assert_eq!(source.sender_event_id(&headers), None);
        assert_eq!(crate::declared_event_type(&source.name(), &headers), None);
        assert!(!source.is_ping(&json!({"ping": "pong"})));
        assert_eq!(source.archived_headers(), &["content-type", "user-agent"]);
        assert_eq!(WineSittingEvent.event_type(), "winesitting.event");
    }
}
