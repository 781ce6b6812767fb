//! Standard Webhooks (`vendors::vinesos::downstream::SigningSecret`, used to sign
//! deliveries to the partner and to verify VinesOS's): parsing any secret,
//! verifying any `webhook-signature` header, and `VinesOs::authenticate` over
//! arbitrary headers. Oracles: our signature equals the `standardwebhooks`
//! crate's; a header verifies exactly when one `v1,` entry decodes to the
//! HMAC; the timestamp and id are part of what is signed; a delivery is let
//! in only when it is signed for the named instance within the tolerance.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Arbitrary;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use vendors::vinesos::downstream::SigningSecret;
use ports::fakes::FixedSecrets;
use domain::request::WebhookRequest;
use ports::secrets::SecretCache;
use vendors::vinesos::{VinesOs, TOLERANCE};
use domain::sources::Source;

#[derive(Arbitrary, Debug)]
struct Input {
    secret_text: String,
    key: Vec<u8>,
    message_id: String,
    timestamp: i64,
    header: String,
    instance: String,
    skew: i16,
    use_real_signature: bool,
    body: Vec<u8>,
}

const DEMO: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn vinesos() -> &'static VinesOs {
    static SOURCE: OnceLock<VinesOs> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let doc =
            serde_json::json!({"demo": {"webhook": [DEMO, "not a whsec secret"]}}).to_string();
        VinesOs::new(SecretCache::new(
            FixedSecrets(doc),
            Duration::from_secs(3600),
        ))
    })
}

fn seen(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// True when one whitespace-separated `v1,` entry decodes to `mac`.
fn lists(header: &str, mac: &[u8]) -> bool {
    header
        .split_whitespace()
        .filter_map(|e| e.strip_prefix("v1,"))
        .filter_map(|e| STANDARD.decode(e).ok())
        .any(|claimed| claimed == mac)
}

fuzz_target!(|input: Input| {
    let _ = SigningSecret::parse(&input.secret_text);

    let key = &input.key[..input.key.len().min(64)];
    let text = format!("whsec_{}", STANDARD.encode(key));
    match SigningSecret::parse(&text) {
        Err(_) => assert!(key.len() < 16, "a {}-byte key was refused", key.len()),
        Ok(secret) => {
            assert!(key.len() >= 16, "a {}-byte key was accepted", key.len());
            let (id, ts, body) = (&input.message_id, input.timestamp, &input.body[..]);
            let ours = secret.sign(id, ts, body);
            // The reference signs only UTF-8 payloads (it refuses others
            // with InvalidPayload); ours signs any bytes.
            if std::str::from_utf8(body).is_ok() {
                let theirs = standardwebhooks::Webhook::new(&text)
                    .and_then(|w| w.sign(id, ts, body))
                    .expect("the reference signs a UTF-8 payload with a valid secret");
                assert_eq!(ours, theirs);
            }
            let mac = STANDARD.decode(&ours[3..]).unwrap();
            assert!(secret.verify(id, ts, body, &ours));
            assert!(secret.verify(id, ts, body, &format!("{} {ours}", input.header)));
            assert_eq!(
                secret.verify(id, ts, body, &input.header),
                lists(&input.header, &mac)
            );
            assert!(!secret.verify(id, ts.wrapping_add(1), body, &ours));
            assert!(!secret.verify(&format!("{id}x"), ts, body, &ours));
        }
    }

    // VinesOS deliveries through the public API.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sent_at = now + i64::from(input.skew);
    let demo = SigningSecret::parse(DEMO).unwrap();
    let signature = if input.use_real_signature {
        demo.sign(input.message_id.trim(), sent_at, &input.body)
    } else {
        input.header.clone()
    };
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("webhook-id", input.message_id.as_str()),
        ("webhook-timestamp", sent_at.to_string().as_str()),
        ("webhook-signature", signature.as_str()),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    let near_the_edge = (i64::from(input.skew).abs() - TOLERANCE.as_secs() as i64).abs() <= 2;
    let expected = match (
        seen(&headers, "webhook-id"),
        seen(&headers, "webhook-signature"),
        domain::ids::InstanceName::parse(&input.instance),
    ) {
        (Some(id), Some(sig), Ok(instance)) => {
            instance.as_str() == "demo"
                && i64::from(input.skew).unsigned_abs() <= TOLERANCE.as_secs()
                && demo.verify(&id, sent_at, &input.body, &sig)
        }
        _ => false,
    };
    let request = WebhookRequest {
        headers,
        body: input.body.clone(),
        request_id: "fuzz".into(),
        path_params: vec![("instance".into(), input.instance.clone())],
    };
    let result = shared_fuzz::runtime().block_on(vinesos().authenticate(&request));
    if !near_the_edge {
        assert_eq!(result.is_ok(), expected, "{result:?}");
    }
});
