//! A local stand-in for Revel's REST API, serving fixture data from
//! events/revel-api/{Resource}.json the way Revel pages it, for `make local`.
//! It checks the `API-AUTHENTICATION` header and applies the filters the
//! bundle sends (`updated_date__gte`, `order`, `limit`, `offset`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The credentials the fixture instance accepts.
pub const DEMO_API_KEY: &str = "demo-key";
pub const DEMO_API_SECRET: &str = "demo-api-secret";

#[derive(Clone)]
pub struct Fixtures {
    dir: Arc<PathBuf>,
}

impl Fixtures {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir: Arc::new(dir) }
    }

    fn objects(&self, resource: &str) -> Option<Vec<Value>> {
        if !resource.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let text = std::fs::read_to_string(self.dir.join(format!("{resource}.json"))).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Only the demo instance, with the demo credentials, gets in.
fn authorized(instance: &str, headers: &HeaderMap) -> bool {
    let expected = format!("{DEMO_API_KEY}:{DEMO_API_SECRET}");
    let presented = headers
        .get("api-authentication")
        .and_then(|v| v.to_str().ok());
    instance == crate::DEMO_INSTANCE && presented == Some(expected.as_str())
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "unauthorized"})),
    )
        .into_response()
}

/// events/revel-api at the workspace root.
pub fn default_dir() -> PathBuf {
    crate::events::default_dir().join("revel-api")
}

/// `GET /{instance}/resources/{Resource}/`.
pub async fn resources(
    State(fixtures): State<Fixtures>,
    Path((instance, resource)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&instance, &headers) {
        return unauthorized();
    }
    if !resource.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response();
    }
    // A resource without fixtures is an empty list, as in a new instance.
    let mut objects = fixtures.objects(&resource).unwrap_or_default();
    if let Some(since) = query.get("updated_date__gte") {
        objects.retain(|o| {
            o.get("updated_date")
                .and_then(Value::as_str)
                .is_some_and(|d| d >= since.as_str())
        });
    }
    if let Some(order) = query.get("order") {
        let uri = format!("/resources/Order/{order}/");
        objects.retain(|o| o.get("order").and_then(Value::as_str) == Some(uri.as_str()));
    }
    // Any other field filter is an equality (`third_party_id=...`).
    for (field, wanted) in &query {
        let special = [
            "format",
            "limit",
            "offset",
            "order_by",
            "updated_date__gte",
            "order",
            "closed",
        ];
        if special.contains(&field.as_str()) {
            continue;
        }
        objects.retain(|o| match o.get(field) {
            Some(Value::String(s)) => s == wanted,
            Some(other) => other.to_string().eq_ignore_ascii_case(wanted),
            None => false,
        });
    }
    let limit: usize = query
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(1);
    let offset: usize = query
        .get("offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let total = objects.len();
    let page: Vec<Value> = objects.into_iter().skip(offset).take(limit).collect();
    let next = (offset + limit < total).then(|| {
        format!(
            "/resources/{resource}/?limit={limit}&offset={}&format=json",
            offset + limit
        )
    });
    Json(json!({
        "meta": {"limit": limit, "offset": offset, "next": next, "previous": null, "total_count": total},
        "objects": page,
    }))
    .into_response()
}

/// `POST /{instance}/resources/{Resource}/` and `PATCH .../{id}/`: answers
/// with the written object, a new uuid and `updated_date` (nothing is kept;
/// enough to watch the partner's changes reach "Revel").
pub async fn write(
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    Json(mut body): Json<Value>,
) -> Response {
    let instance = params
        .get("instance")
        .map(String::as_str)
        .unwrap_or_default();
    if !authorized(instance, &headers) {
        return unauthorized();
    }
    let now = time::OffsetDateTime::now_utc();
    let id = params
        .get("id")
        .cloned()
        .unwrap_or_else(|| fastrand::u32(1000..999_999).to_string());
    if let Value::Object(fields) = &mut body {
        fields.insert(
            "id".into(),
            json!(id
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or(Value::String(id.clone()))),
        );
        fields.insert(
            "uuid".into(),
            json!(format!(
                "00000000-0000-4000-8000-{:012}",
                fastrand::u64(..999_999_999_999)
            )),
        );
        fields.insert(
            "updated_date".into(),
            json!(format!(
                "{}T{:02}:{:02}:{:02}",
                now.date(),
                now.hour(),
                now.minute(),
                now.second()
            )),
        );
    }
    let status = if params.contains_key("id") {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    println!(
        "revel stand-in: {} {} {}",
        if status == StatusCode::OK {
            "PATCH"
        } else {
            "POST"
        },
        params.get("resource").map(String::as_str).unwrap_or("?"),
        id
    );
    (status, Json(body)).into_response()
}
