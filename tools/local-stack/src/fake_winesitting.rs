//! A local stand-in for WineSitting's API, for `make local`: the orders in
//! progress, from events/winesitting-api/orders.json, to the demo API key.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The API key of the demo account (see `demo_secret_documents`).
pub const DEMO_API_KEY: &str = "demo-winesitting-key";

/// `GET /winesitting-api/orders?status=in_progress`.
pub async fn orders(headers: HeaderMap) -> Response {
    let expected = format!("Bearer {DEMO_API_KEY}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let path = crate::events::default_dir().join("winesitting-api/orders.json");
    match std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    {
        Some(orders) => Json(orders).into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
