//! A local stand-in for the partner system: receives the bundle's downstream
//! deliveries, verifies them with a Standard Webhooks verifier (not the
//! bundle's own signing code) and prints what arrived.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

#[derive(Clone)]
pub struct Partner {
    verifier: Arc<standardwebhooks::Webhook>,
}

impl Partner {
    /// `secret` as the bundle holds it; the partner adds the `whsec_` prefix.
    pub fn new(secret: &str) -> Result<Self, crate::Error> {
        let verifier = standardwebhooks::Webhook::new(&format!("whsec_{secret}"))?;
        Ok(Self {
            verifier: Arc::new(verifier),
        })
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
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    println!(
        "partner: verified {} {} {} version {}",
        event["type"].as_str().unwrap_or("?"),
        event["data"]["instance"].as_str().unwrap_or("?"),
        event["data"]["id"].as_str().unwrap_or("?"),
        event["data"]["version"]
    );
    StatusCode::NO_CONTENT
}
