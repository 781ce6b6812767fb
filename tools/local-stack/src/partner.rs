//! A local stand-in for the partner system: receives the bundle's downstream
//! deliveries, verifies them with a Standard Webhooks verifier (not the
//! bundle's own signing code), prints what arrived and keeps a list of it,
//! served at `GET /partner/received` so `post-events` can tell which events
//! reached the partner.
//!
//! [`PartnerServer`] serves it on a loopback port of its own, which can be
//! stopped (the port then refuses connections, as a partner that is down
//! does) and started again on the same port, while the stack runs: `make
//! partner-stop` / `make partner-start` (`local-stack partner stop|start`,
//! which call [`control_router`]'s routes on the stack's port).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// Where the partner takes deliveries, on its own port.
pub const WEBHOOKS_PATH: &str = "/partner/webhooks";

/// The partner's routes: `POST /partner/webhooks` ([`receive`]) and `GET
/// /partner/received` ([`list`]).
pub fn router(partner: Partner) -> axum::Router {
    axum::Router::new()
        .route(WEBHOOKS_PATH, axum::routing::post(receive))
        .route("/partner/received", axum::routing::get(list))
        .with_state(partner)
}

/// How long [`PartnerServer::stop`] waits for deliveries under way to be
/// answered before it drops their connections.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The partner stand-in on a loopback port of its own, stopped and started
/// while the stack runs. Stopped, its port is closed: a delivery or a probe
/// meets a refused connection, as with a partner that is down (not an
/// answer like 503). What it received is kept across a stop.
#[derive(Clone)]
pub struct PartnerServer {
    partner: Partner,
    address: SocketAddr,
    running: Arc<tokio::sync::Mutex<Option<Running>>>,
}

/// The serving task and what stops it.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// What the partner stand-in is doing, as the control routes answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerState {
    /// Whether its port takes connections.
    pub running: bool,
    /// Whether this request changed that (false: it was so already).
    pub changed: bool,
    /// Where it takes deliveries (the functions' `DOWNSTREAM_URL`).
    pub url: String,
}

impl PartnerServer {
    /// Serves `partner` on `listener`, whose port every later
    /// [`start`](Self::start) opens again.
    pub fn new(partner: Partner, listener: tokio::net::TcpListener) -> Result<Self, crate::Error> {
        let server = Self {
            address: listener.local_addr()?,
            partner,
            running: Arc::default(),
        };
        let running = server.serve(listener);
        *server
            .running
            .try_lock()
            .expect("nothing else holds a new server") = Some(running);
        Ok(server)
    }

    /// Serves `partner` on `address` (port 0: a free one).
    pub async fn start_on(partner: Partner, address: SocketAddr) -> Result<Self, crate::Error> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| format!("the partner stand-in's port {address}: {e}"))?;
        Self::new(partner, listener)
    }

    fn serve(&self, listener: tokio::net::TcpListener) -> Running {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = router(self.partner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Running { stop, task }
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where it takes deliveries: the functions' `DOWNSTREAM_URL`.
    pub fn url(&self) -> String {
        format!("http://{}{WEBHOOKS_PATH}", self.address)
    }

    /// What it received, kept across stops.
    pub fn partner(&self) -> &Partner {
        &self.partner
    }

    /// Whether its port takes connections now.
    pub async fn is_running(&self) -> bool {
        self.running.lock().await.is_some()
    }

    /// Closes its port: new connections are refused from when this
    /// returns; connections kept alive are closed once their request under
    /// way (if any) is answered, or after 5 seconds. False when it was
    /// stopped already.
    pub async fn stop(&self) -> bool {
        // Held throughout, so a start waits until the port is closed.
        let mut running = self.running.lock().await;
        let Some(Running { stop, mut task }) = running.take() else {
            return false;
        };
        let _ = stop.send(());
        // The listener is dropped as soon as the signal is seen; the task
        // ends once every connection has closed.
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
        true
    }

    /// Opens its port again (the same one). False when it was running.
    pub async fn start(&self) -> Result<bool, crate::Error> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Ok(false);
        }
        let listener = tokio::net::TcpListener::bind(self.address)
            .await
            .map_err(|e| {
                format!(
                    "reopening the partner stand-in's port {}: {e}",
                    self.address
                )
            })?;
        *running = Some(self.serve(listener));
        Ok(true)
    }

    async fn state(&self, changed: bool) -> PartnerState {
        PartnerState {
            running: self.is_running().await,
            changed,
            url: self.url(),
        }
    }
}

/// The control routes, served on the stack's own port: `POST
/// /local/partner/stop`, `POST /local/partner/start` and `GET
/// /local/partner`, each answering a [`PartnerState`].
pub fn control_router(server: PartnerServer) -> axum::Router {
    axum::Router::new()
        .route("/local/partner", axum::routing::get(control_state))
        .route("/local/partner/stop", axum::routing::post(control_stop))
        .route("/local/partner/start", axum::routing::post(control_start))
        .with_state(server)
}

async fn control_state(State(server): State<PartnerServer>) -> Json<PartnerState> {
    Json(server.state(false).await)
}

async fn control_stop(State(server): State<PartnerServer>) -> Json<PartnerState> {
    let changed = server.stop().await;
    if changed {
        println!(
            "partner: stopped; {} now refuses connections (`make partner-start` starts it again)",
            server.address()
        );
    }
    Json(server.state(changed).await)
}

async fn control_start(
    State(server): State<PartnerServer>,
) -> Result<Json<PartnerState>, (StatusCode, String)> {
    let changed = server
        .start()
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    if changed {
        println!("partner: started again on {}", server.url());
    }
    Ok(Json(server.state(changed).await))
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
