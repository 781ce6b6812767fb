//! A local stand-in for the partner system: receives the bundle's downstream
//! deliveries, verifies them with a Standard Webhooks verifier (not the
//! bundle's own signing code), prints what arrived and keeps a list of it,
//! served at `GET /partner/received` so `post-events` can tell which events
//! reached the partner.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};

/// One verified delivery, as the partner read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// The `webhook-id` header: one per entity revision.
    pub message_id: String,
    /// `revel.{kind}.changed`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub instance: String,
    pub kind: String,
    pub id: String,
    pub version: i64,
    pub revision: u64,
    /// The event (or pull) that made this revision.
    pub event_key: Option<String>,
    /// What a stock change or a rewards card says, in a few words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Received {
    /// What the partner reads of a delivery's body; `None` when it is not
    /// the bundle's envelope.
    pub fn from_delivery(message_id: &str, body: &[u8]) -> Option<Self> {
        let envelope: serde_json::Value = serde_json::from_slice(body).ok()?;
        let data = &envelope["data"];
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        Some(Self {
            message_id: message_id.to_owned(),
            event_type: text(&envelope["type"])?,
            instance: text(&data["instance"])?,
            kind: text(&data["kind"])?,
            id: text(&data["id"])?,
            version: data["version"].as_i64()?,
            revision: data["revision"].as_u64()?,
            event_key: text(&data["event_key"]),
            detail: detail(&data["kind"], &data["state"]),
        })
    }
}

/// A stock change's product, quantity and establishment; a rewards card's
/// points.
fn detail(kind: &serde_json::Value, state: &serde_json::Value) -> Option<String> {
    let plain = |field: &str| match &state[field] {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let kind = kind.as_str()?;
    if kind == pipeline::worker::INVENTORY_SOLD {
        Some(format!(
            "{} sold of product {} at establishment {}",
            plain("quantity_sold"),
            plain("product_id"),
            plain("establishment_id")
        ))
    } else if kind == vendors::revel::Entity::RewardsCard.kind() {
        Some(format!(
            "card {} at {} points",
            plain("number"),
            plain("current_points")
        ))
    } else {
        None
    }
}

#[derive(Clone)]
pub struct Partner {
    verifier: Arc<standardwebhooks::Webhook>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Partner {
    /// `secret` as the bundle holds it; the partner adds the `whsec_` prefix.
    pub fn new(secret: &str) -> Result<Self, crate::Error> {
        let verifier = standardwebhooks::Webhook::new(&format!("whsec_{secret}"))?;
        Ok(Self {
            verifier: Arc::new(verifier),
            received: Arc::default(),
        })
    }

    /// Every verified delivery so far, in order of arrival.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// `POST /partner/webhooks`.
pub async fn receive(
    State(partner): State<Partner>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if partner.verifier.verify(&body, &headers).is_err() {
        println!("partner: refused a delivery with a bad signature");
        return StatusCode::UNAUTHORIZED;
    }
    let message_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(received) = Received::from_delivery(message_id, &body) else {
        println!("partner: refused a verified delivery that is not the bundle's envelope");
        return StatusCode::UNPROCESSABLE_ENTITY;
    };
    println!(
        "partner: verified {} {} {} revision {} (version {}){}",
        received.event_type,
        received.instance,
        received.id,
        received.revision,
        received.version,
        received
            .detail
            .as_ref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default()
    );
    partner
        .received
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(received);
    StatusCode::NO_CONTENT
}

/// `GET /partner/received`: what [`receive`] verified so far.
pub async fn list(State(partner): State<Partner>) -> Json<Vec<Received>> {
    Json(partner.received())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_read_from_the_workers_envelope_and_anything_else_is_not() {
        let body = serde_json::json!({
            "type": "revel.order.changed",
            "timestamp": "2026-11-24T12:00:00Z",
            "data": {"source": "revel", "instance": "demo", "kind": "order", "id": "o-1",
                     "version": 7, "revision": 2, "event_key": "revel:demo:order.finalized:biz:o-1@7",
                     "state": {}}
        });
        let received = Received::from_delivery("msg_1", body.to_string().as_bytes()).unwrap();
        assert_eq!(
            (
                received.kind.as_str(),
                received.id.as_str(),
                received.revision
            ),
            ("order", "o-1", 2)
        );
        assert_eq!(
            received.event_key.as_deref(),
            Some("revel:demo:order.finalized:biz:o-1@7")
        );
        assert!(Received::from_delivery("msg_2", b"{\"type\": \"x\"}").is_none());
        assert_eq!(received.detail, None);
    }

    #[test]
    fn a_stock_change_and_a_rewards_card_are_shown_with_what_they_say() {
        let envelope = |kind: &str, state: serde_json::Value| {
            serde_json::json!({
                "type": "revel.x", "timestamp": "2026-11-24T12:00:00Z",
                "data": {"source": "revel", "instance": "demo", "kind": kind, "id": "i",
                         "version": 1, "revision": 1, "state": state}
            })
            .to_string()
        };
        let sold = envelope(
            "inventory_sold",
            serde_json::json!({"product_id": "5", "quantity_sold": 2, "establishment_id": "1"}),
        );
        assert_eq!(
            Received::from_delivery("m", sold.as_bytes())
                .unwrap()
                .detail
                .as_deref(),
            Some("2 sold of product 5 at establishment 1")
        );
        let card = envelope(
            "rewards_card",
            serde_json::json!({"number": "J87", "current_points": 106}),
        );
        assert_eq!(
            Received::from_delivery("m", card.as_bytes())
                .unwrap()
                .detail
                .as_deref(),
            Some("card J87 at 106 points")
        );
    }
}
