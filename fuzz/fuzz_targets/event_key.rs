//! `domain::idempotency::event_key` with arbitrary parts: any instance, any
//! sender id, any business key, any body, any receipt time. Oracles: no
//! panic, a valid key under the length limit with the right prefix;
//! different sender ids or business keys never share a key; a business key
//! ignores the body and the receipt time; a per-delivery key changes with
//! any byte of the body and with the receipt instant.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use domain::idempotency::{event_key, sha256_hex, KeyParts};
use domain::ids::{EventKey, InstanceName};
use domain::sources::Identity;

#[derive(Arbitrary, Debug, Clone)]
enum Ident {
    Unparsed,
    Business(String),
    PerRequest,
}

#[derive(Arbitrary, Debug, Clone)]
struct Variant {
    sender_event_id: Option<String>,
    ident: Ident,
    body: Vec<u8>,
    received_at_micros: i64,
}

#[derive(Arbitrary, Debug)]
struct Input {
    kind: u8,
    instance: String,
    a: Variant,
    b: Variant,
}

fn identity(ident: &Ident) -> Option<Identity> {
    match ident {
        Ident::Unparsed => None,
        Ident::Business(key) => Some(Identity::Business(key.clone())),
        Ident::PerRequest => Some(Identity::PerRequest),
    }
}

fn key(source: &str, instance: &InstanceName, event_type: &str, v: &Variant) -> EventKey {
    let identity = identity(&v.ident);
    let sha = sha256_hex(&v.body);
    event_key(KeyParts {
        source,
        instance,
        event_type,
        sender_event_id: v.sender_event_id.as_deref(),
        identity: identity.as_ref(),
        body_sha256: &sha,
        received_at_micros: v.received_at_micros,
    })
}

fuzz_target!(|input: Input| {
    let Ok(instance) = InstanceName::parse(&input.instance) else {
        return;
    };
    let kinds = shared_fuzz::all_kinds();
    let (source, kind) = &kinds[input.kind as usize % kinds.len()];
    let event_type = kind.event_type();

    let (a, b) = (&input.a, &input.b);
    let key_a = key(source, &instance, event_type, a);
    let key_b = key(source, &instance, event_type, b);
    for k in [&key_a, &key_b] {
        assert!(k.as_str().len() <= EventKey::MAX_LEN);
        assert!(k
            .as_str()
            .starts_with(&format!("{source}:{instance}:{event_type}:")));
        assert_eq!(EventKey::parse(k.as_str()).as_ref(), Ok(k));
    }
    assert_eq!(
        key_a,
        key(source, &instance, event_type, a),
        "not deterministic"
    );

    match (&a.sender_event_id, &b.sender_event_id) {
        (Some(x), Some(y)) => assert_eq!(x == y, key_a == key_b, "sender ids {x:?} {y:?}"),
        (Some(_), None) | (None, Some(_)) => assert_ne!(key_a, key_b),
        (None, None) => match (&a.ident, &b.ident) {
            (Ident::Business(x), Ident::Business(y)) => {
                assert_eq!(x == y, key_a == key_b, "business keys {x:?} {y:?}")
            }
            (Ident::Unparsed, Ident::Unparsed) => {
                assert_eq!(a.body == b.body, key_a == key_b)
            }
            (Ident::PerRequest, Ident::PerRequest) => assert_eq!(
                a.body == b.body && a.received_at_micros == b.received_at_micros,
                key_a == key_b,
                "per-delivery keys are the receipt instant and the body"
            ),
            _ => {}
        },
    }
    // A business key (or a sender id) ignores the body and the receipt time.
    if a.sender_event_id.is_some() || matches!(a.ident, Ident::Business(_)) {
        let moved = Variant {
            body: b.body.clone(),
            received_at_micros: b.received_at_micros,
            ..a.clone()
        };
        assert_eq!(key_a, key(source, &instance, event_type, &moved));
    }
});
