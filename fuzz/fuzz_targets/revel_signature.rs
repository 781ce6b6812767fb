//! Revel's `X-Revel-Signature` (hex HMAC-SHA1 of the raw body): parsing any
//! header, verifying any body under any secrets, and `Revel::authenticate`
//! over arbitrary headers. Oracles: only 40 hex digits parse; a claim is
//! valid exactly when one secret signs the body to it; what `sign` produces
//! always verifies, in either case, and stops verifying when a byte changes.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use ports::fakes::FixedSecrets;
use domain::request::WebhookRequest;
use ports::secrets::{SecretCache, WebhookSecret};
use vendors::revel::signature::{sign, ClaimedSignature};
use vendors::revel::{Revel, INSTANCE_HEADER, SIGNATURE_HEADER};
use domain::sources::Source;

#[derive(Arbitrary, Debug)]
struct Input {
    header: String,
    secrets: Vec<String>,
    instance: String,
    flip_at: usize,
    flip: u8,
    use_real_signature: bool,
    body: Vec<u8>,
}

const DEMO_SECRETS: [&str; 2] = ["demo-webhook-secret", "old-secret"];

fn revel() -> &'static Revel {
    static REVEL: OnceLock<Revel> = OnceLock::new();
    REVEL.get_or_init(|| {
        let doc = serde_json::json!({"demo": DEMO_SECRETS}).to_string();
        Revel::new(SecretCache::new(
            FixedSecrets(doc),
            Duration::from_secs(3600),
        ))
    })
}

/// What `domain::sources::header` does: text, trimmed, not empty.
fn seen(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn well_formed(header: &str) -> bool {
    let h = header.trim();
    h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

fn signed_by_one(claim: &str, body: &[u8], secrets: &[&str]) -> bool {
    secrets
        .iter()
        .any(|s| sign(s.as_bytes(), body).eq_ignore_ascii_case(claim.trim()))
}

fuzz_target!(|input: Input| {
    let secrets: Vec<WebhookSecret> = input
        .secrets
        .iter()
        .take(3)
        .map(|s| WebhookSecret::new(s))
        .collect();
    let secret_texts: Vec<&str> = input.secrets.iter().take(3).map(String::as_str).collect();
    let body = &input.body;

    let parsed = ClaimedSignature::parse(&input.header);
    assert_eq!(
        parsed.is_some(),
        well_formed(&input.header),
        "{:?}",
        input.header
    );
    if let Some(claim) = &parsed {
        assert_eq!(
            claim.is_valid_for(body, &secrets),
            signed_by_one(&input.header, body, &secret_texts)
        );
    }
    for secret in &secrets {
        let good = sign(secret.expose().as_bytes(), body);
        let claim = ClaimedSignature::parse(&good).expect("sign makes a parseable signature");
        assert!(claim.is_valid_for(body, std::slice::from_ref(secret)));
        assert_eq!(
            ClaimedSignature::parse(&good.to_uppercase()),
            Some(claim.clone())
        );
        if !body.is_empty() && input.flip != 0 {
            let mut tampered = body.clone();
            tampered[input.flip_at % body.len()] ^= input.flip;
            assert!(!claim.is_valid_for(&tampered, std::slice::from_ref(secret)));
        }
    }

    // Through the public API, with whatever headers the sender sent.
    let mut headers = HeaderMap::new();
    let signature = if input.use_real_signature {
        sign(DEMO_SECRETS[input.flip_at % 2].as_bytes(), body)
    } else {
        input.header.clone()
    };
    if let Ok(v) = HeaderValue::from_str(&signature) {
        headers.insert(SIGNATURE_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&input.instance) {
        headers.insert(INSTANCE_HEADER, v);
    }
    let expected = match (
        seen(&headers, INSTANCE_HEADER),
        seen(&headers, SIGNATURE_HEADER),
    ) {
        (Some(instance), Some(claim)) => {
            instance.to_ascii_lowercase() == "demo"
                && well_formed(&claim)
                && signed_by_one(&claim, body, &DEMO_SECRETS)
        }
        _ => false,
    };
    let request = WebhookRequest {
        headers,
        body: body.clone(),
        request_id: "fuzz".into(),
        path_params: Vec::new(),
    };
    let result = shared_fuzz::runtime().block_on(revel().authenticate(&request));
    assert_eq!(result.is_ok(), expected, "{result:?}");
    if let Ok(instance) = result {
        assert_eq!(instance.as_str(), "demo");
    }
});
