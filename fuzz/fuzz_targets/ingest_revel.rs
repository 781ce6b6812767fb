//! The whole pipeline for any signed body: each Revel event type's
//! `Receiver` (real code, in-memory stores) gets the body twice, correctly
//! signed, and the processor applies what was stored. Seeded with the
//! sample bodies in events/payloads/.
//!
//! Oracles: nothing fails (the stores are up, the body is within the limit);
//! a ping is answered without a write; a body the type understands is
//! accepted and, once processed, has its entity (and, where it has one, its
//! follow-up) in place; any other is quarantined and the processor applies
//! nothing; the second copy is a duplicate of the first, except for a body
//! with no identity, which is an event of its own that the processor
//! collapses (the entity's state and revision don't move); nothing is ever
//! archived twice under one key.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use pipeline::fakes::MemoryAws;
use ports::fakes::FixedSecrets;
use pipeline::receive::Outcome;
use domain::request::WebhookRequest;
use ports::secrets::SecretCache;
use vendors::revel::signature::sign;
use vendors::revel::{Revel, RevelEventType};
use domain::sources::{EventKind, Identity, Source};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-revel-signature",
        HeaderValue::from_str(&sign(b"demo-webhook-secret", data)).unwrap(),
    );
    headers.insert("x-revel-instance", HeaderValue::from_static("demo"));
    let request = WebhookRequest {
        headers: headers.clone(),
        body: data.to_vec(),
        request_id: "fuzz".into(),
        path_params: Vec::new(),
    };
    let parsed = serde_json::from_slice::<serde_json::Value>(data).ok();

    for kind in RevelEventType::ALL {
        let memory = MemoryAws::default();
        let source = Arc::new(Revel::new(SecretCache::new(
            FixedSecrets(r#"{"demo": "demo-webhook-secret"}"#.into()),
            Duration::from_secs(3600),
        )));
        let receiver = memory.receiver(source.clone(), Arc::new(kind));
        let meaning = parsed
            .as_ref()
            .map(|body| (source.is_ping(body), kind.interpret(body.clone(), &headers)));
        let rt = shared_fuzz::runtime();
        let first = rt
            .block_on(receiver.receive(&request))
            .expect("stores are up");
        rt.block_on(memory.process_stream());
        match (&first, &meaning) {
            (Outcome::Pong, Some((true, _))) => {
                assert!(memory.events.is_empty() && memory.queue.is_empty());
                assert!(memory.entities.is_empty());
                continue;
            }
            (Outcome::Accepted { .. }, Some((false, Ok(_)))) => {
                assert_eq!(memory.events.len(), 1);
                assert_eq!(memory.entities.len(), 1, "{kind:?}: accepted without its entity");
                assert_eq!(memory.queue.len(), 1, "{kind:?}: accepted without its job");
            }
            (Outcome::Quarantined { reason, .. }, _) => {
                assert!(!matches!(meaning, Some((true, _))), "a ping was quarantined");
                let understood = matches!(meaning, Some((false, Ok(_))));
                assert!(
                    !understood
                        || matches!(
                            reason.as_str(),
                            "state_too_large" | "invalid_entity_id" | "invalid_establishment"
                        ),
                    "{kind:?}: an understood body was quarantined as {reason}"
                );
                assert_eq!(memory.events.len(), 1);
                assert!(memory.queue.is_empty() && memory.entities.is_empty());
            }
            (outcome, meaning) => panic!("{kind:?}: {outcome:?} for {meaning:?}"),
        }
        let revisions = || {
            memory
                .entities
                .entities
                .lock()
                .unwrap()
                .values()
                .map(|e| (e.revision, e.state.state_sha256.clone()))
                .collect::<Vec<_>>()
        };
        let before = revisions();

        let second = rt
            .block_on(receiver.receive(&request))
            .expect("stores are up");
        rt.block_on(memory.process_stream());
        let per_delivery = matches!(
            meaning,
            Some((false, Ok(ref m))) if m.identity == Identity::PerRequest
        );
        match (&first, &second) {
            (Outcome::Accepted { event_key: a }, Outcome::Duplicate { event_key: b }) => {
                assert_eq!(a, b)
            }
            (Outcome::Accepted { event_key: a }, Outcome::Accepted { event_key: b })
                if per_delivery && a != b => {}
            (
                Outcome::Quarantined {
                    event_key: a,
                    reason: r,
                },
                Outcome::Quarantined {
                    event_key: b,
                    reason: s,
                },
            ) => {
                assert_eq!((a, r), (b, s))
            }
            (first, second) => panic!("{kind:?}: {first:?} then {second:?}"),
        }
        assert_eq!(revisions(), before, "{kind:?}: a repeat changed an entity");
        let records = memory.events.len();
        assert!(
            records == 1 || (per_delivery && records == 2),
            "{records} records"
        );
    }
});
