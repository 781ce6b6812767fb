//! The platforms that send webhooks, one module tree each: how each
//! authenticates, what each event type means, and the clients of their
//! REST APIs. Everything here implements the core's traits
//! ([`domain::sources::Source`], [`domain::sources::EventKind`]) or a port;
//! nothing here knows the pipeline.
//!
//! | module | what it is |
//! | --- | --- |
//! | [`revel`] | Revel POS: `X-Revel-Signature` ([`revel::signature`]), its six webhook types and what their bodies mean (`payloads`), its REST API ([`revel::api`]: client, retry, budget, pagination) |
//! | [`winesitting`] | WineSitting: a token in the URL, one function for every event, its orders API ([`winesitting::api`]) |
//! | [`booking`] | the tour/booking platform: HMAC-SHA256 or a URL token, ten event families |
//! | [`vinesos`] | VinesOS, the partner: Standard Webhooks in, its searches ([`vinesos::inventory_search`]), deliveries out ([`vinesos::downstream`]) |
//! | [`functions`] | the table of functions: every receiver's logical id, crate, routes and event kind |
//! | [`event_kind`], [`declared_event_type`] | a stored event's kind found again, through the table |
//! | [`http_client`] | the HTTPS client the REST clients share (rustls on ring) |
//!
//! Each source declares its entity kinds once, as its own `Entity` enum
//! (`revel::Entity`, …) written with [`domain::entities!`].

pub mod booking;
pub mod functions;
pub mod revel;
pub mod vinesos;
pub mod winesitting;

#[cfg(any(test, feature = "fakes"))]
pub mod fakes;

use std::sync::Arc;

use domain::sources::{header, EventKind, SourceName};
use http::HeaderMap;

/// The event type a request of `source` says it carries (Revel's
/// `X-Revel-Event-Type`), read again from stored headers.
pub fn declared_event_type<'h>(source: &str, headers: &'h HeaderMap) -> Option<&'h str> {
    if source == revel::NAME {
        header(headers, revel::EVENT_TYPE_HEADER)
    } else {
        None
    }
}

/// The event kind `event_type` of the source named `source` (a stored
/// event's), with the source's name as the static string keys are made of.
pub fn event_kind(source: &str, event_type: &str) -> Option<(SourceName, Arc<dyn EventKind>)> {
    let kind = functions::kind_of(source, event_type)?;
    Some((kind.source(), kind.event_kind()))
}

/// A builder of the functions' HTTPS clients to other services, on the
/// same rustls and ring as their AWS clients.
pub fn http_client() -> reqwest::ClientBuilder {
    // The process's default provider, which reqwest reads when it builds
    // a client; set once (a second install is refused, harmlessly).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

#[cfg(test)]
pub(crate) mod projection_check {
    use domain::sources::{EntityKind, EventKind, Identity, Malformed, Version};
    use serde_json::Value;

    /// What a receiver keeps of an interpretation: the identity, and the
    /// entity's kind, id and version.
    pub type KeyReading = (Identity, Option<(EntityKind, String, Version)>);

    /// A body's [`KeyReading`], or its refusal.
    pub fn key_of(kind: &dyn EventKind, body: Value) -> Result<KeyReading, Malformed> {
        kind.interpret(body, &http::HeaderMap::new())
            .map(|meaning| {
                (
                    meaning.identity,
                    meaning.entity.map(|e| (e.kind, e.id, e.version)),
                )
            })
    }

    /// The receiver's reading (the projection onto `key_fields`) and the
    /// processor's (the whole body) agree on `body`.
    pub fn assert_projection_agrees(kind: &dyn EventKind, body: &str) {
        let name = kind.event_type();
        let paths = kind.key_fields().expect("a kind with key fields");
        let whole = serde_json::from_str::<Value>(body).map(|v| key_of(kind, v));
        let part = domain::projection::project(body.as_bytes(), paths).map(|v| key_of(kind, v));
        match (whole, part) {
            (Ok(whole), Ok(part)) => assert_eq!(part, whole, "{name} on {body}"),
            (Err(_), Err(_)) => {}
            (whole, part) => panic!("{name} on {body}: whole {whole:?}, projected {part:?}"),
        }
    }

    /// [`assert_projection_agrees`] on `sample` and on every copy of it
    /// with one of the fields at `pointers` (JSON pointers) removed, or set
    /// to null, a number, a blank, an object or an impossible date.
    pub fn assert_projection_agrees_with_each_field_broken(
        kind: &dyn EventKind,
        sample: &str,
        pointers: &[&str],
    ) {
        assert_projection_agrees(kind, sample);
        let sample: Value = serde_json::from_str(sample).expect("a JSON sample");
        let broken = [
            serde_json::json!(null),
            serde_json::json!(42),
            serde_json::json!("  "),
            serde_json::json!({"id": 1}),
            serde_json::json!("2026-13-40"),
            serde_json::json!("2026-13-40T00:00:00Z"),
        ];
        for pointer in pointers {
            let (parent, field) = pointer.rsplit_once('/').expect("a JSON pointer");
            for value in broken.iter().map(Some).chain([None]) {
                let mut changed = sample.clone();
                let object = changed
                    .pointer_mut(parent)
                    .and_then(Value::as_object_mut)
                    .unwrap_or_else(|| panic!("{parent} is an object of the sample"));
                match value {
                    Some(value) => object.insert(field.to_owned(), value.clone()),
                    None => object.remove(field),
                };
                assert_projection_agrees(kind, &changed.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spellings of a source's kinds.
    fn spellings<E: Copy + Into<domain::sources::EntityKind>>(all: &[E]) -> Vec<&'static str> {
        all.iter().map(|&entity| entity.into().as_str()).collect()
    }

    #[test]
    fn each_sources_entity_kinds_keep_the_spellings_stored_keys_use() {
        // Written out: a changed spelling would orphan every entity stored
        // under the old one.
        let sources: [(SourceName, Vec<&str>, &[&str]); 4] = [
            (
                revel::NAME,
                spellings(revel::Entity::ALL),
                &[
                    "order",
                    "customer",
                    "rewards_card",
                    "item_stock",
                    "menu",
                    "product",
                    "modifier",
                    "event",
                    "inventory",
                ],
            ),
            (
                vinesos::NAME,
                spellings(vinesos::Entity::ALL),
                &[
                    "vos_customer",
                    "vos_order",
                    "vos_inventory",
                    "vos_reward",
                    "vos_product",
                    "vos_event",
                    "vos_inventory_request",
                ],
            ),
            (
                winesitting::NAME,
                spellings(winesitting::Entity::ALL),
                &["order", "putaway"],
            ),
            (
                booking::NAME,
                spellings(booking::Entity::ALL),
                &[
                    "booking",
                    "customer",
                    "check_in",
                    "account",
                    "contact",
                    "employee",
                    "package",
                    "activity",
                    "product",
                    "inventory",
                ],
            ),
        ];
        for (source, kinds, stored) in sources {
            assert_eq!(kinds, stored, "{source}");
            let distinct: std::collections::BTreeSet<&str> = kinds.iter().copied().collect();
            assert_eq!(
                distinct.len(),
                kinds.len(),
                "{source}: a kind is spelled twice"
            );
            for kind in kinds {
                assert!(
                    !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "{source}: {kind:?} is not a key part"
                );
            }
        }
    }
}
