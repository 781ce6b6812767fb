//! What the fuzz targets share: every event kind of every source, the checks
//! an interpretation must pass, a whitespace-only reformatter, and one
//! single-threaded runtime for the async parts of the public API.

use std::sync::OnceLock;

use serde_json::Value;
use domain::idempotency::{event_key, sha256_hex, KeyParts};
use domain::ids::{EntityKey, EventKey, InstanceName};
use vendors::booking::BookingFamily;
use vendors::revel::RevelEventType;
use vendors::vinesos::VinesOsEvent;
use vendors::winesitting::WineSittingEvent;
use domain::sources::{EventKind, Identity, Interpretation};

/// One runtime per fuzzing process; the futures under test do no real I/O.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    })
}

/// Every event kind of every source, with the source name used in keys.
pub fn all_kinds() -> Vec<(&'static str, Box<dyn EventKind>)> {
    let mut kinds: Vec<(&'static str, Box<dyn EventKind>)> = Vec::new();
    for kind in RevelEventType::ALL {
        kinds.push(("revel", Box::new(kind)));
    }
    kinds.push(("winesitting", Box::new(WineSittingEvent)));
    for kind in BookingFamily::ALL {
        kinds.push(("booking", Box::new(kind)));
    }
    for kind in VinesOsEvent::ALL {
        kinds.push(("vinesos", Box::new(kind)));
    }
    kinds
}

/// The first payment-card key found at any depth, if any.
pub fn card_field(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => map.iter().find_map(|(key, inner)| {
            if domain::sources::is_payment_card_key(key) {
                Some(key.clone())
            } else {
                card_field(inner)
            }
        }),
        Value::Array(items) => items.iter().find_map(card_field),
        _ => None,
    }
}

/// Runs every kind over one parsed body and checks what any accepted
/// interpretation must satisfy. `raw` is the body as sent (for content keys).
pub fn check_all_kinds(raw: &[u8], body: &Value) {
    let instance = InstanceName::parse("fuzz").unwrap();
    let body_sha256 = sha256_hex(raw);
    for (source, kind) in all_kinds() {
        let first = kind.interpret(body.clone(), &http::HeaderMap::new());
        // Deterministic: the same body means the same thing twice.
        assert_eq!(
            first,
            kind.interpret(body.clone(), &http::HeaderMap::new()),
            "{source} {}",
            kind.event_type()
        );
        let Ok(meaning) = first else { continue };
        check_interpretation(source, kind.as_ref(), &instance, &meaning, &body_sha256);
    }
}

fn check_interpretation(
    source: &'static str,
    kind: &dyn EventKind,
    instance: &InstanceName,
    meaning: &Interpretation,
    body_sha256: &str,
) {
    if let Identity::Business(key) = &meaning.identity {
        assert!(!key.is_empty(), "empty business key");
    }
    // The key is derivable whatever the identity (the pipeline `expect`s it).
    let key: EventKey = event_key(KeyParts {
        source,
        instance,
        event_type: kind.event_type(),
        sender_event_id: None,
        identity: Some(&meaning.identity),
        body_sha256,
        received_at_micros: 1_700_000_000_000_000,
    });
    assert!(key.as_str().len() <= EventKey::MAX_LEN);
    if let Some(entity) = &meaning.entity {
        assert!(!entity.id.is_empty(), "empty entity id");
        // An id that can't make a key is quarantined, not a panic.
        let _ = EntityKey::new(source, instance, entity.kind, &entity.id);
        assert!(
            serde_json::to_string(&entity.state).is_ok(),
            "state does not serialise"
        );
        if let Some(field) = card_field(&entity.state) {
            panic!(
                "{source} {}: payment card field {field:?} kept in the entity state",
                kind.event_type()
            );
        }
    }
}

/// The body with every whitespace byte outside strings removed: the same
/// JSON, other bytes. `None` when the bytes are not UTF-8 or a string never
/// closes.
pub fn without_whitespace(raw: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut out = Vec::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in text.as_bytes() {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        } else {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
    (!in_string).then_some(out)
}

/// Business keys don't depend on the body's formatting: removing the
/// whitespace between tokens gives every kind the same meaning.
pub fn check_whitespace_insensitive(raw: &[u8], body: &Value) {
    let Some(compact) = without_whitespace(raw) else {
        return;
    };
    let Ok(reparsed) = serde_json::from_slice::<Value>(&compact) else {
        panic!("removing whitespace outside strings broke valid JSON");
    };
    for (source, kind) in all_kinds() {
        let (a, b) = (
            kind.interpret(body.clone(), &http::HeaderMap::new()),
            kind.interpret(reparsed.clone(), &http::HeaderMap::new()),
        );
        assert_eq!(
            a,
            b,
            "{source} {}: meaning depends on whitespace",
            kind.event_type()
        );
    }
}
