//! API Gateway (HTTP API, payload 2.0) event decoding: any bytes, as the
//! Lambda runtime would hand them over, deserialised the way
//! `lambda_http::request::from_str` does, turned into a `WebhookRequest` by
//! `shared::http::delivery`, then answered by `shared::http::handle` with
//! in-memory stores. Seeded with the sample events in events/.
//!
//! Oracles: the delivery carries exactly the body bytes the sender signed
//! (base64-decoded when API Gateway says so), the path parameters and the
//! request id; every answer is one of the documented statuses with a JSON
//! body.
//!
//! lambda_http itself panics on events API Gateway never sends (a Host
//! header or path that make no URL, a body marked base64 that isn't); the
//! Lambda runtime turns such a panic into a failed invocation. Those inputs
//! are skipped here so the fuzzer keeps testing this bundle's code.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_http::request::LambdaRequest;
use lambda_http::Request;
use libfuzzer_sys::fuzz_target;
use shared::fakes::{FixedSecrets, MemoryStores};
use shared::receive::Receiver;
use shared::secrets::SecretCache;
use shared::sources::revel::{Revel, RevelEventType};
use shared::sources::winesitting::{WineSitting, WineSittingEvent};

/// True when lambda_http 1.3's conversion would panic on this event.
fn lambda_http_would_panic(event: &ApiGatewayV2httpRequest) -> bool {
    if event.is_base64_encoded {
        if let Some(body) = &event.body {
            if STANDARD.decode(body).is_err() {
                return true; // Body::from_maybe_encoded: .expect(..)
            }
        }
    }
    let raw_path = event.raw_path.clone().unwrap_or_default();
    let path = match event.request_context.stage.as_deref() {
        None | Some("$default") => raw_path,
        Some(stage) if raw_path.starts_with(&format!("/{stage}/")) => raw_path,
        Some(stage) => format!("/{stage}{raw_path}"),
    };
    let host = event
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(event.request_context.domain_name.as_deref());
    // build_request_uri: Url::parse(..).unwrap()
    let url = match host {
        None => match url::Url::parse(&format!("http://localhost{path}")) {
            Ok(url) => url.path().to_owned(),
            Err(_) => return true,
        },
        Some(host) => {
            let scheme = event
                .headers
                .get("x-forwarded-proto")
                .and_then(|s| s.to_str().ok())
                .unwrap_or("https");
            match url::Url::parse(&format!("{scheme}://{host}{path}")) {
                Ok(url) => url.to_string(),
                Err(_) => return true,
            }
        }
    };
    let mut uri = url;
    if let Some(query) = event.raw_query_string.as_deref().filter(|q| !q.is_empty()) {
        uri.push('?');
        uri.push_str(query);
    }
    // http::Request::builder().uri(..) ... .expect("failed to build request")
    http::Uri::try_from(uri).is_err()
}

fn receivers() -> (Receiver, Receiver) {
    let cache =
        |doc: &str| SecretCache::new(FixedSecrets(doc.to_owned()), Duration::from_secs(3600));
    let revel = MemoryStores::default().receiver(
        Arc::new(Revel::new(cache(r#"{"demo": "demo-webhook-secret"}"#))),
        Arc::new(RevelEventType::CustomerUpdated),
    );
    let winesitting = MemoryStores::default().receiver(
        Arc::new(WineSitting::new(cache(
            r#"{"demo": {"token": "demo-winesitting-token-3f9c2a7d81e6b54f"}}"#,
        ))),
        Arc::new(WineSittingEvent),
    );
    (revel, winesitting)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(event) = serde_json::from_str::<ApiGatewayV2httpRequest>(text) else {
        return;
    };
    if lambda_http_would_panic(&event) {
        return;
    }
    let expected_body: Vec<u8> = match (&event.body, event.is_base64_encoded) {
        (None, _) => Vec::new(),
        (Some(body), true) => STANDARD.decode(body).unwrap(),
        (Some(body), false) => body.clone().into_bytes(),
    };
    let mut expected_params: Vec<(String, String)> =
        event.path_parameters.clone().into_iter().collect();
    expected_params.sort();
    let expected_request_id = event.request_context.request_id.clone().unwrap_or_default();

    // What from_str does once the JSON is an API Gateway v2 event.
    let request: Request = LambdaRequest::ApiGatewayV2(event).into();
    let again = request_clone(&request);
    let webhook = shared::http::webhook_request(request);
    assert_eq!(
        webhook.body, expected_body,
        "body bytes changed on the way in"
    );
    let mut params = webhook.path_params.clone();
    params.sort();
    assert_eq!(params, expected_params);
    assert_eq!(webhook.request_id, expected_request_id);

    let (revel, winesitting) = receivers();
    for (receiver, request) in [(&revel, again.0), (&winesitting, again.1)] {
        let response = shared_fuzz::runtime().block_on(shared::http::handle(receiver, request));
        let status = response.status().as_u16();
        assert!(
            matches!(status, 200 | 202 | 401 | 413 | 503),
            "status {status}"
        );
        let lambda_http::Body::Text(body) = response.body() else {
            panic!("answer is not text");
        };
        let answer: serde_json::Value = serde_json::from_str(body).expect("answer is JSON");
        assert!(answer.is_object());
    }
});

/// Two copies of a request (one per receiver): `Request` is not `Clone`.
fn request_clone(request: &Request) -> (Request, Request) {
    let copy = || {
        let mut builder = http::Request::builder()
            .method(request.method().clone())
            .uri(request.uri().clone());
        for (name, value) in request.headers() {
            builder = builder.header(name, value);
        }
        let body = match request.body() {
            lambda_http::Body::Empty => lambda_http::Body::Empty,
            lambda_http::Body::Text(t) => lambda_http::Body::Text(t.clone()),
            lambda_http::Body::Binary(b) => lambda_http::Body::Binary(b.clone()),
            _ => lambda_http::Body::Empty,
        };
        let mut copy = builder.body(body).unwrap();
        *copy.extensions_mut() = request.extensions().clone();
        copy
    };
    (copy(), copy())
}
