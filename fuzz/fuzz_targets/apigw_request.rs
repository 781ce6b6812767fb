//! API Gateway (HTTP API, payload 2.0) event decoding: any bytes, as the
//! Lambda runtime would hand them over, deserialised as the receivers'
//! runtime does (`shared::http::ApiGatewayEvent`), turned into a
//! `WebhookRequest` by `shared::http::webhook_request`, then answered by
//! `shared::http::handle` with in-memory stores. Seeded with the sample
//! events in events/.
//!
//! Oracles: the request carries exactly the body bytes the sender signed
//! (base64-decoded when API Gateway says so, and kept as sent when that
//! text does not decode), the path parameters and the request id; every
//! answer is one of the documented statuses with a JSON body.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use pipeline::fakes::MemoryAws;
use ports::fakes::FixedSecrets;
use shared::http::ApiGatewayEvent;
use pipeline::receive::Receiver;
use ports::secrets::SecretCache;
use vendors::revel::{Revel, RevelEventType};
use vendors::winesitting::{WineSitting, WineSittingEvent};

fn receivers() -> (Receiver, Receiver) {
    let cache =
        |doc: &str| SecretCache::new(FixedSecrets(doc.to_owned()), Duration::from_secs(3600));
    let revel = MemoryAws::default().receiver(
        Arc::new(Revel::new(cache(r#"{"demo": "demo-webhook-secret"}"#))),
        Arc::new(RevelEventType::CustomerUpdated),
    );
    let winesitting = MemoryAws::default().receiver(
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
    let Ok(event) = serde_json::from_str::<ApiGatewayEvent>(text) else {
        return;
    };
    let expected_body: Vec<u8> = match (&event.body, event.is_base64_encoded) {
        (None, _) => Vec::new(),
        (Some(body), true) => STANDARD
            .decode(body)
            .unwrap_or_else(|_| body.clone().into_bytes()),
        (Some(body), false) => body.clone().into_bytes(),
    };
    let mut expected_params: Vec<(String, String)> =
        event.path_parameters.clone().into_iter().collect();
    expected_params.sort();
    let expected_request_id = event.request_context.request_id.clone().unwrap_or_default();

    let webhook = shared::http::webhook_request(event.clone(), None);
    assert_eq!(
        webhook.body, expected_body,
        "body bytes changed on the way in"
    );
    let mut params = webhook.path_params.clone();
    params.sort();
    assert_eq!(params, expected_params);
    assert_eq!(webhook.request_id, expected_request_id);

    let (revel, winesitting) = receivers();
    for receiver in [&revel, &winesitting] {
        let response =
            shared_fuzz::runtime().block_on(shared::http::handle(receiver, event.clone(), None));
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
