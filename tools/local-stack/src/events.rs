//! The sample events in events/: API Gateway HTTP API (payload 2.0) requests
//! whose bodies are the repaired samples of Revel's documentation
//! (events/payloads/), signed for instance `demo` with `demo-webhook-secret`.
//! They are generated here, never signed by hand.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{json, Value};
use vendors::booking::BookingFamily;
use vendors::functions::Kind;
use vendors::revel::signature::sign;
use vendors::revel::{self, RevelEventType};
use vendors::vinesos::VinesOsEvent;

use crate::{
    Error, DEMO_BOOKING_HEADER, DEMO_BOOKING_SECRET, DEMO_INSTANCE, DEMO_LA_INSTANCE, DEMO_SECRET,
    DEMO_VINESOS_SECRET, DEMO_WINESITTING_TOKEN,
};

/// An API Gateway HTTP API (payload format 2.0) request event, as API Gateway
/// hands it to a function. The local gateway and the samples both use it.
pub fn http_api_event(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Value {
    routed_event(method, &Route::exact(path), path, query, headers, body)
}

/// A route of the HTTP API: its template path (`/winesitting/{account}/{token}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub template: String,
}

impl Route {
    pub fn exact(path: &str) -> Self {
        Self {
            template: path.to_owned(),
        }
    }

    /// The path parameters of `path` when it matches this route.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let pattern: Vec<&str> = self.template.trim_matches('/').split('/').collect();
        let actual: Vec<&str> = path.trim_matches('/').split('/').collect();
        if pattern.len() != actual.len() {
            return None;
        }
        let mut params = Vec::new();
        for (p, a) in pattern.iter().zip(&actual) {
            match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if !a.is_empty() => params.push((name.to_owned(), (*a).to_owned())),
                Some(_) => return None,
                None if p == a => {}
                None => return None,
            }
        }
        Some(params)
    }
}

/// The event API Gateway sends for `path` matched by `route`, with the
/// route's path parameters.
pub fn routed_event(
    method: &str,
    route: &Route,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Value {
    let params: serde_json::Map<String, Value> = route
        .matches(path)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let (body, is_base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let mut header_map = serde_json::Map::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        // API Gateway joins repeated headers with commas.
        let joined = match header_map.get(&name).and_then(Value::as_str) {
            Some(previous) => format!("{previous},{value}"),
            None => value.clone(),
        };
        header_map.insert(name, Value::String(joined));
    }
    let route_key = format!("{method} {}", route.template);
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": header_map,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("user-agent")).map(|(_, v)| v.as_str()).unwrap_or("")
            },
            "requestId": "local-request",
            "routeKey": route_key,
            "stage": "$default",
            "time": "24/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1795521600000u64
        },
        "pathParameters": params,
        "body": body,
        "isBase64Encoded": is_base64
    })
}

/// One sample: which payload, posted to which function's route.
#[derive(Debug, Clone)]
pub struct Sample {
    pub kind: Kind,
    pub payload: &'static str,
    pub output: String,
}

pub fn samples() -> Vec<Sample> {
    let mut samples: Vec<Sample> = RevelEventType::ALL
        .iter()
        .map(|kind| Sample {
            kind: Kind::Revel(*kind),
            payload: payload_name(*kind),
            output: format!("{}.json", Kind::Revel(*kind).function().crate_name),
        })
        .collect();
    samples.push(Sample {
        kind: Kind::Revel(RevelEventType::OrderFinalized),
        payload: "ping.json",
        output: "revel-ping.json".into(),
    });
    samples.push(Sample {
        kind: Kind::WineSitting,
        payload: "winesitting-order.json",
        output: format!("{}.json", Kind::WineSitting.function().crate_name),
    });
    for family in BookingFamily::ALL {
        samples.push(Sample {
            kind: Kind::Booking(family),
            payload: BOOKING_PAYLOADS[BookingFamily::ALL
                .iter()
                .position(|f| *f == family)
                .unwrap_or(0)],
            output: format!("{}.json", Kind::Booking(family).function().crate_name),
        });
    }
    for event in VinesOsEvent::ALL {
        samples.push(Sample {
            kind: Kind::VinesOs(event),
            payload: VINESOS_PAYLOADS[VinesOsEvent::ALL
                .iter()
                .position(|e| *e == event)
                .unwrap_or(0)],
            output: format!("{}.json", Kind::VinesOs(event).function().crate_name),
        });
    }
    samples
}

const VINESOS_PAYLOADS: [&str; 8] = [
    "vinesos-customer-created.json",
    "vinesos-member-updated.json",
    "vinesos-order-added.json",
    "vinesos-inventory-changed.json",
    "vinesos-reward-changed.json",
    "vinesos-product-changed.json",
    "vinesos-event-changed.json",
    "vinesos-inventory-requested.json",
];

/// The signing time [`render`] gives the VinesOS samples (2026-11-24T12:00Z),
/// so it writes the same bytes every time. Standard Webhooks receivers
/// refuse a timestamp more than 5 minutes off, so [`write_all`] (`make
/// events`) and every sender re-sign them now with [`resign`].
pub const SAMPLE_SIGNED_AT: i64 = 1_795_521_600;

/// Standard Webhooks headers for `body`, signed at `timestamp`.
pub fn vinesos_headers(secret: &str, body: &[u8], timestamp: i64) -> Vec<(String, String)> {
    let envelope: Value = serde_json::from_slice(body).unwrap_or_default();
    let id = envelope["id"].as_str().unwrap_or("msg_sample").to_owned();
    let secret =
        vendors::vinesos::downstream::SigningSecret::parse(secret).expect("a valid whsec_ secret");
    vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        (
            "user-agent".to_owned(),
            "VinesOS-Webhooks/sample".to_owned(),
        ),
        ("webhook-id".to_owned(), id.clone()),
        ("webhook-timestamp".to_owned(), timestamp.to_string()),
        (
            "webhook-signature".to_owned(),
            secret.sign(&id, timestamp, body),
        ),
    ]
}

/// Whether an event file's signature is time-limited (VinesOS's Standard
/// Webhooks signatures expire after 5 minutes).
pub fn is_time_limited(event: &Value) -> bool {
    event["headers"].get("webhook-signature").is_some()
}

/// An event file's request, re-signed now when its signature is
/// time-limited (VinesOS); others are returned as they are.
pub fn resign(event: Value) -> Value {
    resign_at(event, time::OffsetDateTime::now_utc().unix_timestamp())
}

/// An event file's request with a time-limited signature made at
/// `timestamp`; others are returned as they are. At [`SAMPLE_SIGNED_AT`] it
/// gives what [`render`] writes, so a file re-signed by `make events`
/// compares with the generator's output.
pub fn resign_at(mut event: Value, timestamp: i64) -> Value {
    if !is_time_limited(&event) {
        return event;
    }
    let body = event["body"]
        .as_str()
        .unwrap_or_default()
        .as_bytes()
        .to_vec();
    for (name, value) in vinesos_headers(DEMO_VINESOS_SECRET, &body, timestamp) {
        event["headers"][name] = Value::String(value);
    }
    event
}

const BOOKING_PAYLOADS: [&str; 10] = [
    "booking-bookings.json",
    "booking-customers.json",
    "booking-check-in.json",
    "booking-accounts.json",
    "booking-contacts.json",
    "booking-employees.json",
    "booking-package.json",
    "booking-activity.json",
    "booking-product.json",
    "booking-inventory.json",
];

fn payload_name(kind: RevelEventType) -> &'static str {
    match kind {
        RevelEventType::OrderFinalized => "order-finalized.json",
        RevelEventType::CustomerCreated | RevelEventType::CustomerUpdated => "customer.json",
        RevelEventType::RewardCardCreated => "rewardcard-created.json",
        RevelEventType::StockChanged => "stock-changed.json",
        RevelEventType::MenuUpdated => "menu-updated.json",
    }
}

/// The booking platform's headers for `body`: hex HMAC-SHA256 under `secret`.
pub fn booking_headers(header: &str, secret: &str, body: &[u8]) -> Vec<(String, String)> {
    use hmac::{KeyInit, Mac};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        (
            "user-agent".to_owned(),
            "BookingPlatform-Webhooks/sample".to_owned(),
        ),
        (header.to_owned(), hex::encode(mac.finalize().into_bytes())),
    ]
}

/// The route, concrete path and headers a sample is sent with: the route
/// is the first of its function's in the table of functions.
pub fn request_for(kind: Kind, body: &[u8]) -> (Route, String, Vec<(String, String)>) {
    let template = kind.function().route();
    let (path, headers) = match kind {
        Kind::Revel(kind) => (
            template.to_owned(),
            revel_headers(kind, DEMO_INSTANCE, DEMO_SECRET, body),
        ),
        Kind::WineSitting => (
            template
                .replace("{account}", DEMO_INSTANCE)
                .replace("{token}", DEMO_WINESITTING_TOKEN),
            vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("user-agent".to_owned(), "WineSitting".to_owned()),
            ],
        ),
        Kind::Booking(_) => (
            template.replace("{account}", DEMO_INSTANCE),
            booking_headers(DEMO_BOOKING_HEADER, DEMO_BOOKING_SECRET, body),
        ),
        Kind::VinesOs(event) => (
            template.replace("{instance}", vinesos_instance(event)),
            vinesos_headers(DEMO_VINESOS_SECRET, body, SAMPLE_SIGNED_AT),
        ),
    };
    (
        Route {
            template: template.to_owned(),
        },
        path,
        headers,
    )
}

/// The instance a VinesOS sample is for: the inventory request goes to the
/// one with the retailer option (only there does it pull anything).
pub fn vinesos_instance(event: VinesOsEvent) -> &'static str {
    match event {
        VinesOsEvent::InventoryRequested => DEMO_LA_INSTANCE,
        _ => DEMO_INSTANCE,
    }
}

/// Revel's headers for `body`, signed with `secret` for `instance`.
pub fn revel_headers(
    kind: RevelEventType,
    instance: &str,
    secret: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    let mut headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("user-agent".to_owned(), "Revel-Webhooks/sample".to_owned()),
        (revel::INSTANCE_HEADER.to_owned(), instance.to_owned()),
        (revel::EVENT_TYPE_HEADER.to_owned(), kind.name().to_owned()),
        (
            revel::SIGNATURE_HEADER.to_owned(),
            sign(secret.as_bytes(), body),
        ),
    ];
    if kind == RevelEventType::StockChanged {
        headers.push((revel::ESTABLISHMENT_HEADER.to_owned(), "1".to_owned()));
    }
    headers
}

/// The event file for `sample`, from the payloads in `dir/payloads`.
pub fn render(dir: &Path, sample: &Sample) -> Result<Value, Error> {
    let path = dir.join("payloads").join(sample.payload);
    let raw = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    // The signature covers exactly the bytes sent: the file without its final newline.
    let body = raw.strip_suffix(b"\n").unwrap_or(&raw);
    serde_json::from_slice::<Value>(body)
        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    let (route, path, headers) = request_for(sample.kind, body);
    Ok(routed_event("POST", &route, &path, "", &headers, body))
}

/// Writes every sample event into `dir`, the time-limited ones signed now
/// (they verify for 5 minutes); returns the files written.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut written = Vec::new();
    for sample in samples() {
        let event = resign(render(dir, &sample)?);
        let path = dir.join(&sample.output);
        std::fs::write(&path, serde_json::to_string_pretty(&event)? + "\n")?;
        written.push(path);
    }
    Ok(written)
}

/// events/ at the workspace root.
pub fn default_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    dir.canonicalize().unwrap_or(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_re_signed_now_is_the_generators_output_once_signed_at_the_sample_time() {
        let dir = default_dir();
        let mut time_limited = 0;
        for sample in samples() {
            let rendered = render(&dir, &sample).unwrap();
            let fresh = resign(rendered.clone());
            if is_time_limited(&rendered) {
                time_limited += 1;
                assert_ne!(fresh["headers"], rendered["headers"], "{}", sample.output);
            }
            assert_eq!(
                resign_at(fresh, SAMPLE_SIGNED_AT),
                rendered,
                "{}",
                sample.output
            );
        }
        assert_eq!(time_limited, VinesOsEvent::ALL.len());
    }
}
