//! A local stand-in for Revel's REST API, serving fixture data from
//! events/revel-api/{Resource}.json the way Revel pages it, for `make local`
//! and the tests.
//!
//! Every instance holds the same fixtures, and sees the same writes over
//! them: any name Revel would give an instance, presented with the demo
//! credentials ([`DEMO_API_KEY`], [`DEMO_API_SECRET`]) in the
//! `API-AUTHENTICATION` header, gets in, so an instance connected with
//! `revel-ops instance add` is checked and backfilled from the fixtures.
//! Other credentials get 401, a name no instance could have 404. A resource
//! without a fixture file (`Establishment`, which `instance add` checks the
//! credentials with) answers an empty page, as in a new instance.
//!
//! It applies the filters the bundle sends (`updated_date__gte`, `order`,
//! `limit`, `offset`, any field by equality, `field__iexact`,
//! `field__endswith`, `field__in` with ids separated by commas; a related
//! object's field, a resource URI like `/resources/Product/5/`, matches its
//! id as Revel's filters do). Creates and updates are kept in memory over
//! the fixtures, so what the bundle writes (customers, orders with their
//! items and payments, products, events) is found by the lookups that
//! follow, as in Revel.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The credentials every instance of the stand-in accepts.
pub const DEMO_API_KEY: &str = "demo-key";
pub const DEMO_API_SECRET: &str = "demo-api-secret";

/// Ids the stand-in gives what it creates start here, clear of the fixtures'.
const FIRST_CREATED_ID: u64 = 10_001;

/// The fixtures, and what was written over them since the stand-in started.
#[derive(Clone)]
pub struct Fixtures {
    dir: Arc<PathBuf>,
    /// Resource -> objects created or updated (by id, over the fixtures).
    written: Arc<Mutex<BTreeMap<String, BTreeMap<u64, Value>>>>,
    /// Every write, in order: `created Product 10001`, `updated Customer 2192`.
    log: Arc<Mutex<Vec<String>>>,
    next_id: Arc<AtomicU64>,
}

impl Fixtures {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir: Arc::new(dir),
            written: Arc::default(),
            log: Arc::default(),
            next_id: Arc::new(AtomicU64::new(FIRST_CREATED_ID)),
        }
    }

    fn fixtures(&self, resource: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join(format!("{resource}.json")))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// Every object of `resource` as Revel would hold it now: the fixtures,
    /// with what was written over them. A resource without fixtures starts
    /// empty, as in a new instance.
    pub fn objects(&self, resource: &str) -> Vec<Value> {
        if !is_resource_name(resource) {
            return Vec::new();
        }
        let written = self.written.lock().expect("the stand-in's lock");
        let over = written.get(resource);
        let mut objects: Vec<Value> = self
            .fixtures(resource)
            .into_iter()
            .filter(|o| over.is_none_or(|w| !w.contains_key(&id_of(o))))
            .collect();
        objects.extend(over.into_iter().flat_map(|w| w.values().cloned()));
        objects
    }

    /// Every write the stand-in took, in order (`created Product 10001`).
    pub fn writes(&self) -> Vec<String> {
        self.log.lock().expect("the stand-in's lock").clone()
    }

    /// Keeps `object` as `resource`'s newest state. Not logged: a write
    /// through the API is logged where it is taken, and a change made in
    /// Revel itself (a customer created at the POS) is not a write.
    pub fn put(&self, resource: &str, object: Value) {
        self.written
            .lock()
            .expect("the stand-in's lock")
            .entry(resource.to_owned())
            .or_default()
            .insert(id_of(&object), object);
    }
}

fn is_resource_name(resource: &str) -> bool {
    !resource.is_empty() && resource.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn id_of(object: &Value) -> u64 {
    match object.get("id") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// Any instance gets in with the demo credentials; nothing else does.
fn authorized(headers: &HeaderMap) -> bool {
    let expected = format!("{DEMO_API_KEY}:{DEMO_API_SECRET}");
    let presented = headers
        .get("api-authentication")
        .and_then(|v| v.to_str().ok());
    presented == Some(expected.as_str())
}

/// Who may read or write `instance`: 404 for a name Revel would not give an
/// instance (no such subdomain), 401 for other credentials than the demo's.
fn refused(instance: &str, headers: &HeaderMap) -> Option<Response> {
    if domain::ids::InstanceName::parse(instance).is_err() {
        return Some(answer(StatusCode::NOT_FOUND, "not found"));
    }
    (!authorized(headers)).then(|| answer(StatusCode::UNAUTHORIZED, "unauthorized"))
}

fn answer(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({"error": error}))).into_response()
}

/// events/revel-api at the workspace root.
pub fn default_dir() -> PathBuf {
    crate::events::default_dir().join("revel-api")
}

/// The stand-in's routes, under `/revel-api/{instance}/resources/`.
pub fn router(fixtures: Fixtures) -> axum::Router {
    axum::Router::new()
        .route(
            "/revel-api/{instance}/resources/{resource}/",
            axum::routing::get(resources).post(write),
        )
        .route(
            "/revel-api/{instance}/resources/{resource}/{id}/",
            axum::routing::patch(write),
        )
        .with_state(fixtures)
}

/// Serves the stand-in on a free loopback port until the process ends;
/// returns the base URL the bundle's `REVEL_API_BASE_URL` takes (before
/// `/{instance}`).
pub async fn start(fixtures: Fixtures) -> Result<String, crate::Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(fixtures)).await;
    });
    Ok(format!("http://{address}/revel-api"))
}

/// Whether `object` passes the filter `field = wanted`.
fn passes(object: &Value, field: &str, wanted: &str) -> bool {
    if let Some(field) = field.strip_suffix("__in") {
        return wanted
            .split(',')
            .any(|one| passes(object, field, one.trim()));
    }
    if field == "updated_date__gte" {
        return object
            .get("updated_date")
            .and_then(Value::as_str)
            .is_some_and(|d| d >= wanted);
    }
    if let Some(field) = field.strip_suffix("__endswith") {
        return object
            .get(field)
            .and_then(Value::as_str)
            .is_some_and(|s| s.ends_with(wanted));
    }
    let (field, case_blind) = match field.strip_suffix("__iexact") {
        Some(field) => (field, true),
        None => (field, false),
    };
    match object.get(field) {
        Some(Value::String(s)) if case_blind => s.eq_ignore_ascii_case(wanted),
        // A related object's URI (`/resources/Order/5/`) passes for its id.
        Some(v @ Value::String(s)) => {
            s == wanted || vendors::revel::resource_id(v).as_deref() == Some(wanted)
        }
        Some(Value::Null) | None => false,
        Some(other) => other.to_string().eq_ignore_ascii_case(wanted),
    }
}

/// `GET /{instance}/resources/{Resource}/`.
pub async fn resources(
    State(fixtures): State<Fixtures>,
    Path((instance, resource)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refused(&instance, &headers) {
        return refusal;
    }
    if !is_resource_name(&resource) {
        return answer(StatusCode::NOT_FOUND, "not found");
    }
    let mut objects = fixtures.objects(&resource);
    // Paging and sorting parameters, and filters the fixtures don't model.
    let ignored = ["format", "limit", "offset", "order_by", "closed"];
    for (field, wanted) in &query {
        if !ignored.contains(&field.as_str()) {
            objects.retain(|o| passes(o, field, wanted));
        }
    }
    objects.sort_by_key(id_of);
    // A pull of named objects (the partner's inventory requests) is worth
    // seeing in `make local`'s output; the scheduled pulls' pages are not.
    for (field, wanted) in query.iter().filter(|(f, _)| f.ends_with("__in")) {
        println!(
            "revel stand-in: read {resource} with {field}={wanted}: {} object(s)",
            objects.len()
        );
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

/// Revel's way of writing a time: no offset, to the second.
fn revel_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{}T{:02}:{:02}:{:02}",
        now.date(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// `POST /{instance}/resources/{Resource}/` creates an object (with an id,
/// a uuid unless the body gives one, and `updated_date`); `PATCH
/// .../{id}/` changes the fields the body names. Both answer with the
/// object as it now is, and keep it.
pub async fn write(
    State(fixtures): State<Fixtures>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let instance = params
        .get("instance")
        .map(String::as_str)
        .unwrap_or_default();
    if let Some(refusal) = refused(instance, &headers) {
        return refusal;
    }
    let resource = params
        .get("resource")
        .map(String::as_str)
        .unwrap_or_default();
    let Value::Object(fields) = body else {
        return answer(StatusCode::BAD_REQUEST, "the body must be an object");
    };
    if !is_resource_name(resource) {
        return answer(StatusCode::NOT_FOUND, "not found");
    }
    let (status, mut object) = match params.get("id") {
        Some(id) => {
            let Some(current) = fixtures
                .objects(resource)
                .into_iter()
                .find(|o| id_of(o).to_string() == *id)
            else {
                return answer(StatusCode::NOT_FOUND, "not found");
            };
            let mut object = current;
            for (field, value) in fields {
                object[field] = value;
            }
            (StatusCode::OK, object)
        }
        None => {
            // As Revel's developer FAQ says: a create naming its id or
            // resource_uri is refused.
            if fields.contains_key("id") || fields.contains_key("resource_uri") {
                return answer(StatusCode::BAD_REQUEST, "id and resource_uri are Revel's");
            }
            let id = fixtures.next_id.fetch_add(1, Ordering::SeqCst);
            let mut object = Value::Object(fields);
            object["id"] = json!(id);
            object["resource_uri"] = json!(format!("/resources/{resource}/{id}/"));
            if object.get("uuid").is_none_or(Value::is_null) {
                object["uuid"] = json!(format!("00000000-0000-4000-8000-{id:012}"));
            }
            (StatusCode::CREATED, object)
        }
    };
    object["updated_date"] = json!(revel_now());
    fixtures.put(resource, object.clone());
    let what = if status == StatusCode::CREATED {
        "created"
    } else {
        "updated"
    };
    fixtures
        .log
        .lock()
        .expect("the stand-in's lock")
        .push(format!("{what} {resource} {}", id_of(&object)));
    let link = ["third_party_id", "external_sync"]
        .iter()
        .find_map(|f| object.get(*f).and_then(Value::as_str))
        .map(|l| format!(" ({l})"))
        .unwrap_or_default();
    println!("revel stand-in: {what} {resource} {}{link}", id_of(&object));
    (status, Json(object)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_is_filtered_by_product_ids_as_revel_filters_a_related_object_by_its_id() {
        let stock = json!({"id": 901, "product": "/resources/Product/5/", "quantity": 42});
        assert!(passes(&stock, "product__in", "4,5"));
        assert!(passes(&stock, "product__in", "5"));
        assert!(!passes(&stock, "product__in", "6,15,55"));
        assert!(!passes(&stock, "product__in", ""));
        assert!(passes(&stock, "product", "5"));
        assert!(passes(&stock, "product", "/resources/Product/5/"));
        assert!(!passes(&stock, "product", "/resources/Product/55/"));
        assert!(passes(&stock, "id__in", "900,901"));
    }

    #[test]
    fn the_stand_ins_stock_fixtures_of_the_inventory_request_sample_are_found_by_product() {
        let fixtures = Fixtures::new(default_dir());
        let of = |ids: &str| -> Vec<u64> {
            fixtures
                .objects("CurrentStock")
                .iter()
                .filter(|o| passes(o, "product__in", ids))
                .map(id_of)
                .collect()
        };
        assert_eq!(of("5,6"), [901, 902]);
        assert_eq!(of("6"), [902]);
        assert!(of("7").is_empty());
    }
}
