//! Requests signed as each platform signs them, and a Revel source that
//! knows one instance, for tests of code that receives them.

use domain::request::WebhookRequest;
use http::{HeaderMap, HeaderValue};
use ports::fakes::FixedSecrets;

use crate::vinesos::{ID_HEADER, INSTANCE_PARAM, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// The webhook secret of instance `demo` in [`demo_revel`].
pub const DEMO_REVEL_SECRET: &str = "demo-webhook-secret";

/// Revel, knowing instance `demo` and its secret.
pub fn demo_revel() -> crate::revel::Revel {
    crate::revel::Revel::new(ports::secrets::SecretCache::new(
        FixedSecrets(format!(r#"{{"demo": "{DEMO_REVEL_SECRET}"}}"#)),
        std::time::Duration::from_secs(60),
    ))
}

/// A request of instance `demo` with `body`, signed as Revel signs.
pub fn signed_revel_request(body: &str) -> WebhookRequest {
    let mut headers = HeaderMap::new();
    let signature = crate::revel::signature::sign(DEMO_REVEL_SECRET.as_bytes(), body.as_bytes());
    headers.insert(
        crate::revel::SIGNATURE_HEADER,
        HeaderValue::from_str(&signature).expect("hex is a valid header"),
    );
    headers.insert(
        crate::revel::INSTANCE_HEADER,
        HeaderValue::from_static("demo"),
    );
    WebhookRequest {
        headers,
        body: body.as_bytes().to_vec(),
        request_id: "test".into(),
        path_params: Vec::new(),
    }
}

/// A Standard Webhooks signature of `body`, by the reference implementation.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .sign(id, timestamp, body)
        .unwrap()
}

/// A request to `instance` with the given Standard Webhooks headers.
pub fn vinesos_request(
    instance: Option<&str>,
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> WebhookRequest {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (ID_HEADER, id),
        (TIMESTAMP_HEADER, timestamp),
        (SIGNATURE_HEADER, signature),
    ] {
        if let Some(value) = value {
            headers.insert(name, HeaderValue::from_str(value).unwrap());
        }
    }
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    WebhookRequest {
        headers,
        body: body.to_vec(),
        request_id: "req-1".into(),
        path_params: instance
            .map(|i| vec![(INSTANCE_PARAM.to_owned(), i.to_owned())])
            .unwrap_or_default(),
    }
}

/// A request to `instance` signed by the reference implementation under
/// `secret`, at `timestamp`.
pub fn signed_vinesos_request(
    instance: &str,
    secret: &str,
    timestamp: i64,
    body: &[u8],
) -> WebhookRequest {
    let signature = sign(secret, "msg_1", timestamp, body);
    vinesos_request(
        Some(instance),
        Some("msg_1"),
        Some(&timestamp.to_string()),
        Some(&signature),
        body,
    )
}

/// WineSitting's tokens for accounts `acct` (a rotation: two tokens, and an
/// API key), `other`, and `signed` (a signing secret, no token).
pub const WINESITTING_SECRETS: &str = r#"{"acct": {"token": ["tok-new", "tok-old"], "api_key": "k-acct"},
    "other": {"token": "tok-other"}, "signed": {"webhook": "s"}}"#;

/// The WineSitting account the secrets know best.
pub fn winesitting_account() -> domain::ids::InstanceName {
    domain::ids::InstanceName::parse("acct").unwrap()
}

/// When the sample WineSitting events happened.
pub const WINESITTING_DATE: &str = "2024-03-01T10:00:00Z";

/// A cache of [`WINESITTING_SECRETS`].
pub fn winesitting_secrets() -> ports::secrets::SecretCache {
    ports::secrets::SecretCache::new(
        FixedSecrets(WINESITTING_SECRETS.into()),
        std::time::Duration::from_secs(60),
    )
}

/// A WineSitting request with these path parameters and `body`.
pub fn winesitting_request(params: &[(&str, &str)], body: &serde_json::Value) -> WebhookRequest {
    WebhookRequest {
        headers: HeaderMap::new(),
        body: serde_json::to_vec(body).unwrap(),
        request_id: "test".into(),
        path_params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// A WineSitting event object.
pub fn winesitting_event(
    kind: &str,
    operation: &str,
    object: serde_json::Value,
    date: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({"type": kind, "operation": operation, "object": object, "date": date})
}
