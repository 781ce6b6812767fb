//! The whole pipeline for any signed body: each Revel event type's
//! `Ingestor` (real code, in-memory stores) gets the body twice, correctly
//! signed. Seeded with the sample bodies in events/payloads/.
//!
//! Oracles: nothing fails (the stores are up, the body is within the limit);
//! a ping is answered without a write; a body the type understands is
//! accepted with its entity and job in place, any other is quarantined with
//! nothing applied; the second copy is a duplicate of the first (or, for a
//! body keyed by content, a new event only if a window boundary fell between
//! the two); nothing is ever archived twice under one key.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use shared::config::Settings;
use shared::fakes::{FixedSecrets, MemoryEntities, MemoryEvents, MemoryQueue};
use shared::ingest::{Delivery, Ingestor, Outcome, Stores};
use shared::secrets::SecretCache;
use shared::signature::sign;
use shared::sources::revel::{Revel, RevelEventType};
use shared::sources::{EventKind, Identity, Source};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-revel-signature",
        HeaderValue::from_str(&sign(b"demo-webhook-secret", data)).unwrap(),
    );
    headers.insert("x-revel-instance", HeaderValue::from_static("demo"));
    let delivery = Delivery {
        headers,
        body: data.to_vec(),
        request_id: "fuzz".into(),
        path_params: Vec::new(),
    };
    let parsed = serde_json::from_slice::<serde_json::Value>(data).ok();

    for kind in RevelEventType::ALL {
        let (events, entities, queue) = (
            Arc::new(MemoryEvents::default()),
            Arc::new(MemoryEntities::default()),
            Arc::new(MemoryQueue::default()),
        );
        let source = Arc::new(Revel::new(SecretCache::new(
            FixedSecrets(r#"{"demo": "demo-webhook-secret"}"#.into()),
            Duration::from_secs(3600),
        )));
        let ingestor = Ingestor::new(
            source.clone(),
            Arc::new(kind),
            Stores {
                events: events.clone(),
                entities: entities.clone(),
                jobs: queue.clone(),
            },
            Settings::default(),
        );
        let meaning = parsed
            .as_ref()
            .map(|body| (source.is_ping(body), kind.interpret(body.clone())));
        let rt = shared_fuzz::runtime();
        let first = rt
            .block_on(ingestor.ingest(&delivery))
            .expect("stores are up");
        let entity_count = || entities.entities.lock().unwrap().len();
        match (&first, &meaning) {
            (Outcome::Pong, Some((true, _))) => {
                assert!(events.is_empty() && queue.is_empty() && entity_count() == 0);
                continue;
            }
            (Outcome::Accepted { .. }, Some((false, Ok(_)))) => {
                assert_eq!(events.len(), 1);
                assert_eq!(entity_count(), 1, "{kind:?}: accepted without its entity");
                assert_eq!(queue.len(), 1, "{kind:?}: accepted without its job");
            }
            (Outcome::Quarantined { reason, .. }, _) => {
                // Not understood: archived for replay, nothing applied.
                assert!(
                    !matches!(meaning, Some((true, _))),
                    "a ping was quarantined"
                );
                let understood = matches!(meaning, Some((false, Ok(_))));
                assert!(
                    !understood
                        || matches!(reason.as_str(), "state_too_large" | "invalid_entity_id"),
                    "{kind:?}: an understood body was quarantined as {reason}"
                );
                assert_eq!(events.len(), 1);
                assert!(queue.is_empty() && entity_count() == 0);
            }
            (outcome, meaning) => panic!("{kind:?}: {outcome:?} for {meaning:?}"),
        }

        let second = rt
            .block_on(ingestor.ingest(&delivery))
            .expect("stores are up");
        let content_keyed = matches!(
            meaning,
            Some((false, Ok(ref m))) if matches!(m.identity, Identity::ContentWithin(_))
        );
        match (&first, &second) {
            (Outcome::Accepted { event_key: a }, Outcome::Duplicate { event_key: b }) => {
                assert_eq!(a, b)
            }
            (Outcome::Accepted { event_key: a }, Outcome::Accepted { event_key: b })
                if content_keyed && a != b => {}
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
        // One archive record per key, and at most one job per record.
        let records = events.len();
        assert!(
            records == 1 || (content_keyed && records == 2),
            "{records} records"
        );
        assert!(queue.len() <= records);
    }
});
