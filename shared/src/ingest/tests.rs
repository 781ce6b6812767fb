//! The pipeline against in-memory stores: the rules that don't depend on
//! DynamoDB or SQS semantics. The same rules run against the real SDK and a
//! local endpoint in tests/.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use super::*;
use crate::fakes::{FixedSecrets, MemoryEntities, MemoryEvents, MemoryQueue, MemoryStores};
use crate::secrets::SecretCache;
use crate::signature::sign;
use crate::sources::revel::{Revel, RevelEventType};

struct Harness {
    ingestor: Ingestor,
    events: Arc<MemoryEvents>,
    entities: Arc<MemoryEntities>,
    queue: Arc<MemoryQueue>,
}

fn harness(kind: RevelEventType, settings: Settings) -> Harness {
    let memory = MemoryStores::default();
    let (events, entities, queue) = (
        memory.events.clone(),
        memory.entities.clone(),
        memory.queue.clone(),
    );
    let secrets = SecretCache::new(
        FixedSecrets(r#"{"demo": "demo-webhook-secret"}"#.into()),
        Duration::from_secs(60),
    );
    let stores = memory.stores();
    Harness {
        ingestor: Ingestor::new(
            Arc::new(Revel::new(secrets)),
            Arc::new(kind),
            stores,
            settings,
        ),
        events,
        entities,
        queue,
    }
}

fn signed(body: &str) -> Delivery {
    let mut headers = HeaderMap::new();
    let signature = sign(b"demo-webhook-secret", body.as_bytes());
    headers.insert(
        "x-revel-signature",
        HeaderValue::from_str(&signature).unwrap(),
    );
    headers.insert("x-revel-instance", HeaderValue::from_static("demo"));
    Delivery {
        headers,
        body: body.as_bytes().to_vec(),
        request_id: "test".into(),
        path_params: Vec::new(),
    }
}

fn customer(updated: &str, name: &str) -> String {
    format!(
        r#"{{"uuid": "c-1", "updated_date": "{updated}", "first_name": "{name}", "cc_last_4_digits": "4242"}}"#
    )
}

fn entity(h: &Harness, kind: &str, id: &str) -> Option<(crate::store::EntityUpsert, u64)> {
    let demo = InstanceName::parse("demo").unwrap();
    h.entities
        .get(&EntityKey::new("revel", &demo, kind, id).unwrap())
}

#[tokio::test]
async fn a_new_event_is_stored_upserted_and_queued_then_a_repeat_is_a_duplicate() {
    let h = harness(RevelEventType::CustomerCreated, Settings::default());
    let delivery = signed(&customer("2021-12-28T21:05:13.977077", "Ann"));
    let first = h.ingestor.ingest(&delivery).await.unwrap();
    let Outcome::Accepted { event_key } = first else {
        panic!("{first:?}")
    };
    assert_eq!(h.events.status(&event_key), Some(EventStatus::Done));
    let again = h.ingestor.ingest(&delivery).await.unwrap();
    assert_eq!(again, Outcome::Duplicate { event_key });
    let (state, revision) = entity(&h, "customer", "c-1").unwrap();
    assert_eq!(revision, 1);
    assert!(!state.state_json.contains("4242"), "card digits were kept");
    assert_eq!(h.queue.len(), 1);
}

#[tokio::test]
async fn a_tampered_body_is_rejected_and_nothing_is_stored() {
    let h = harness(RevelEventType::CustomerCreated, Settings::default());
    let mut delivery = signed(&customer("2021-12-28T21:05:13", "Ann"));
    delivery.body[10] ^= 1;
    let err = h.ingestor.ingest(&delivery).await.unwrap_err();
    assert!(matches!(
        err,
        IngestError::Unauthorized(crate::error::AuthFailure::SignatureMismatch)
    ));
    assert!(h.events.is_empty() && h.queue.is_empty());
}

#[tokio::test]
async fn a_ping_is_answered_without_any_write() {
    let h = harness(RevelEventType::OrderFinalized, Settings::default());
    assert_eq!(
        h.ingestor
            .ingest(&signed(r#"{"ping": "pong"}"#))
            .await
            .unwrap(),
        Outcome::Pong
    );
    assert_eq!(h.events.puts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_before_anything_else() {
    let settings = Settings {
        max_body_bytes: 64,
        ..Settings::default()
    };
    let h = harness(RevelEventType::CustomerCreated, settings);
    let err = h
        .ingestor
        .ingest(&signed(&customer("2021-12-28T21:05:13", &"x".repeat(100))))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        IngestError::PayloadTooLarge { limit: 64, .. }
    ));
    assert!(h.events.is_empty());
}

#[tokio::test]
async fn an_unparseable_body_is_quarantined_and_nothing_is_applied() {
    let h = harness(RevelEventType::CustomerCreated, Settings::default());
    let outcome = h.ingestor.ingest(&signed("{not json")).await.unwrap();
    let Outcome::Quarantined { event_key, reason } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(reason, "invalid_json");
    assert_eq!(h.events.status(&event_key), Some(EventStatus::Quarantined));
    assert!(h.queue.is_empty());
    assert!(h.entities.entities.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_body_sent_to_the_wrong_type_is_quarantined() {
    let h = harness(RevelEventType::CustomerCreated, Settings::default());
    let mut delivery = signed(&customer("2021-12-28T21:05:13", "Ann"));
    delivery.headers.insert(
        "x-revel-event-type",
        HeaderValue::from_static("order.finalized"),
    );
    let outcome = h.ingestor.ingest(&delivery).await.unwrap();
    assert!(
        matches!(outcome, Outcome::Quarantined { ref reason, .. } if reason == "event_type_mismatch")
    );
}

#[tokio::test]
async fn an_older_update_arriving_late_leaves_the_newer_state() {
    let h = harness(RevelEventType::CustomerUpdated, Settings::default());
    h.ingestor
        .ingest(&signed(&customer("2021-12-28T21:05:14", "New")))
        .await
        .unwrap();
    let late = h
        .ingestor
        .ingest(&signed(&customer("2021-12-28T21:05:13", "Old")))
        .await
        .unwrap();
    assert!(
        matches!(late, Outcome::Accepted { .. }),
        "a late event is still archived: {late:?}"
    );
    let (state, revision) = entity(&h, "customer", "c-1").unwrap();
    assert!(state.state_json.contains("New"));
    assert_eq!(revision, 1);
}

#[tokio::test]
async fn a_queue_outage_answers_503_and_the_redelivery_completes_the_work_once() {
    let h = harness(RevelEventType::CustomerCreated, Settings::default());
    let delivery = signed(&customer("2021-12-28T21:05:13", "Ann"));
    h.queue.down.store(true, Ordering::SeqCst);
    let err = h.ingestor.ingest(&delivery).await.unwrap_err();
    assert!(matches!(err, IngestError::Unavailable(_)));
    assert_eq!(
        entity(&h, "customer", "c-1").unwrap().1,
        1,
        "the entity was written before the queue failed"
    );
    h.queue.down.store(false, Ordering::SeqCst);
    let outcome = h.ingestor.ingest(&delivery).await.unwrap();
    assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
    assert_eq!(h.queue.len(), 1);
    assert_eq!(
        entity(&h, "customer", "c-1").unwrap().1,
        1,
        "the entity was not written twice"
    );
}

#[tokio::test]
async fn an_events_table_outage_answers_503_and_stores_nothing() {
    let h = harness(RevelEventType::CustomerCreated, Settings::default());
    h.events.down.store(true, Ordering::SeqCst);
    let err = h
        .ingestor
        .ingest(&signed(&customer("2021-12-28T21:05:13", "Ann")))
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::Unavailable(_)));
    assert!(h.events.is_empty() && h.queue.is_empty());
}

#[tokio::test]
async fn twenty_concurrent_copies_make_one_record_one_entity_write_and_one_job() {
    let h = Arc::new(harness(RevelEventType::OrderFinalized, Settings::default()));
    let body =
        r#"{"orderInfo": {"uuid": "o-1", "updated_date": "2016-04-13T10:29:19"}, "items": []}"#;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let h = Arc::clone(&h);
            tokio::spawn(async move { h.ingestor.ingest(&signed(body)).await })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Outcome::Accepted { .. }) => accepted += 1,
            Ok(Outcome::Duplicate { .. }) | Err(IngestError::InProgress) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted, 1);
    assert_eq!(h.events.len(), 1);
    assert_eq!(h.queue.len(), 1);
    assert_eq!(entity(&h, "order", "o-1").unwrap().1, 1);
}

#[tokio::test]
async fn menu_pushes_in_a_burst_make_one_catalog_pull() {
    let h = harness(RevelEventType::MenuUpdated, Settings::default());
    for id in ["m1", "m2", "m3"] {
        let mut delivery = signed(r#"{"event":"menu.updated"}"#);
        delivery
            .headers
            .insert("x-revel-event-id", HeaderValue::from_static(id));
        assert!(matches!(
            h.ingestor.ingest(&delivery).await.unwrap(),
            Outcome::Accepted { .. }
        ));
    }
    assert_eq!(h.events.len(), 3, "each push is archived");
    assert_eq!(h.queue.len(), 1, "one pull for the burst");
}

#[tokio::test]
async fn a_garbled_copy_of_a_finished_event_is_a_duplicate_not_a_retry_loop() {
    let h = harness(RevelEventType::CustomerCreated, Settings::default());
    let with_id = |body: &str| {
        let mut delivery = signed(body);
        delivery
            .headers
            .insert("x-revel-event-id", HeaderValue::from_static("ev-7"));
        delivery
    };
    let first = h
        .ingestor
        .ingest(&with_id(&customer("2021-12-28T21:05:13", "Ann")))
        .await
        .unwrap();
    assert!(matches!(first, Outcome::Accepted { .. }));
    let garbled = h.ingestor.ingest(&with_id("{not json")).await.unwrap();
    assert!(matches!(garbled, Outcome::Duplicate { .. }), "{garbled:?}");
}

#[tokio::test]
async fn a_state_too_large_to_keep_is_quarantined_not_retried_forever() {
    let h = harness(
        RevelEventType::CustomerCreated,
        Settings {
            max_body_bytes: 2 * 1024 * 1024,
            ..Settings::default()
        },
    );
    let body = customer("2021-12-28T21:05:13", &"x".repeat(MAX_STATE_BYTES));
    let outcome = h.ingestor.ingest(&signed(&body)).await.unwrap();
    assert!(
        matches!(outcome, Outcome::Quarantined { ref reason, .. } if reason == "state_too_large"),
        "{outcome:?}"
    );
    assert!(h.entities.entities.lock().unwrap().is_empty());
}

#[tokio::test]
async fn menu_pushes_without_ids_more_than_a_coalescing_window_apart_are_new_events() {
    let h = harness(RevelEventType::MenuUpdated, Settings::default());
    let first = h
        .ingestor
        .ingest(&signed(r#"{"event":"menu.updated"}"#))
        .await
        .unwrap();
    let again = h
        .ingestor
        .ingest(&signed(r#"{"event":"menu.updated"}"#))
        .await
        .unwrap();
    assert!(matches!(first, Outcome::Accepted { .. }));
    // Within the window it is the same push (a retry)...
    assert!(matches!(
        again,
        Outcome::Duplicate { .. } | Outcome::Accepted { .. }
    ));
    // ...and the window is the coalescing window, not an hour.
    let menu = RevelEventType::MenuUpdated
        .interpret(serde_json::json!({"event": "menu.updated"}))
        .unwrap();
    assert_eq!(
        menu.identity,
        crate::sources::Identity::ContentWithin(Duration::from_secs(
            crate::queue::CATALOG_PULL_COALESCE_SECS as u64
        ))
    );
}

#[tokio::test]
async fn an_answered_event_stays_processing_until_its_completion_runs_after_the_answer() {
    let h = harness(RevelEventType::CustomerCreated, Settings::default());
    let delivery = signed(&customer("2021-12-28T21:05:13.977077", "Ann"));

    let (result, completion) = h.ingestor.ingest_deferred(&delivery).await;

    let Ok(Outcome::Accepted { event_key }) = result else {
        panic!("{result:?}")
    };
    // Everything the event promises is in place before the answer...
    assert!(entity(&h, "customer", "c-1").is_some());
    assert_eq!(h.queue.len(), 1);
    // ...and only the bookkeeping is left.
    assert_eq!(h.events.status(&event_key), Some(EventStatus::Processing));
    h.ingestor
        .complete(completion.expect("a new event leaves its done mark"))
        .await;
    assert_eq!(h.events.status(&event_key), Some(EventStatus::Done));
    let (_, again) = h.ingestor.ingest_deferred(&delivery).await;
    assert!(again.is_none(), "a duplicate leaves nothing to complete");
}

/// A log writer into memory, to read what a delivery logged.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn every_log_line_of_a_delivery_carries_its_request_event_instance_and_type() {
    let captured = Captured::default();
    let writer = captured.clone();
    // Debug included: that is where metric lines go outside Lambda.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let h = harness(RevelEventType::CustomerCreated, Settings::default());
    let delivery = signed(&customer("2021-12-28T21:05:13.977077", "Annunziata"));
    let mut forged = delivery.clone();
    forged.body = customer("2021-12-28T21:05:13.977077", "Evangelina").into_bytes();

    let mut answers = String::new();
    for (request_id, delivery) in [("req-ok", &delivery), ("req-forged", &forged)] {
        let mut delivery = delivery.clone();
        delivery.request_id = request_id.into();
        let span = delivery_span(&h.ingestor, request_id);
        let answer = async { crate::http::answer(&h.ingestor.ingest(&delivery).await) }
            .instrument(span)
            .await;
        answers.push_str(&format!("{:?} {:?}\n", answer.headers(), answer.body()));
    }

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON log line"))
        .collect();
    let accepted: Vec<_> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == "req-ok")
        .collect();
    let rejected: Vec<_> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == "req-forged")
        .collect();
    assert!(!accepted.is_empty() && !rejected.is_empty(), "{text}");
    assert_eq!(
        accepted.len() + rejected.len(),
        lines.len(),
        "a line outside any delivery: {text}"
    );
    for line in accepted.iter().chain(&rejected) {
        assert_eq!(line["span"]["event_type"], "customer.created", "{line}");
        assert_eq!(line["span"]["source"], "revel", "{line}");
    }
    for line in &accepted {
        assert!(
            line["span"]["event_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("revel:demo:")),
            "{line}"
        );
        assert_eq!(line["span"]["instance"], "demo", "{line}");
    }
    let signature = delivery.headers["x-revel-signature"].to_str().unwrap();
    for secret in ["demo-webhook-secret", signature] {
        assert!(!text.contains(secret), "a secret reached the log: {text}");
        assert!(
            !answers.contains(secret),
            "a secret reached an answer: {answers}"
        );
    }
    assert!(
        text.contains("Accepted") && text.contains("Rejected"),
        "the metric lines were not captured: {text}"
    );
    assert!(
        !text.contains("Annunziata") && !text.contains("Evangelina"),
        "a body reached the log"
    );
}
