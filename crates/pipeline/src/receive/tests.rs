//! The receivers against in-memory stores that decide puts as DynamoDB
//! does. The same rules run against the real SDK and a local endpoint in
//! tests/, and through the real binaries in tests/tests/lambda_path.rs.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::HeaderValue;

use super::*;
use crate::fakes::MemoryAws;
use telemetry::fakes::capture_logs;
use vendors::fakes::{demo_revel, signed_revel_request};
use vendors::revel::RevelEventType;

struct Harness {
    receiver: Receiver,
    memory: MemoryAws,
}

fn harness(kind: RevelEventType, settings: Settings) -> Harness {
    let memory = MemoryAws::default();
    let receiver = Receiver::new(
        Arc::new(demo_revel()),
        Arc::new(kind),
        memory.events.clone(),
        settings,
        domain::clock::system(),
    );
    Harness { receiver, memory }
}

fn signed(body: &str) -> WebhookRequest {
    signed_revel_request(body)
}

fn with_event_id(mut request: WebhookRequest, id: &'static str) -> WebhookRequest {
    request
        .headers
        .insert("x-revel-event-id", HeaderValue::from_static(id));
    request
}

fn customer(updated: &str, name: &str) -> String {
    format!(
        r#"{{"uuid": "c-1", "updated_date": "{updated}", "first_name": "{name}", "cc_last_4_digits": "4242"}}"#
    )
}

#[tokio::test]
async fn a_new_event_is_one_put_and_a_repeat_of_the_same_body_is_a_duplicate_in_one_request() {
    let h = harness(RevelEventType::CustomerCreated, Settings::default());
    let request = signed(&customer("2021-12-28T21:05:13.977077", "Ann"));

    let first = h.receiver.receive(&request).await.unwrap();
    let Outcome::Accepted { event_key } = first else {
        panic!("{first:?}")
    };
    assert_eq!(h.memory.events.puts.load(Ordering::SeqCst), 1);
    let again = h.receiver.receive(&request).await.unwrap();

    assert_eq!(
        again,
        Outcome::Duplicate {
            event_key: event_key.clone()
        }
    );
    assert_eq!(
        h.memory.events.puts.load(Ordering::SeqCst),
        2,
        "one request each"
    );
    assert_eq!(h.memory.events.len(), 1);
    let record = h.memory.events.all().remove(0);
    assert_eq!(record.status, EventStatus::Received);
    assert_eq!(
        record.raw_body().unwrap(),
        request.body,
        "the body as signed"
    );
    assert_eq!(
        record.entity_key.unwrap().as_str(),
        "revel:demo:customer:c-1"
    );
    assert!(
        h.memory.entities.is_empty() && h.memory.queue.is_empty(),
        "nothing else on the answer's path"
    );
}

#[tokio::test]
async fn a_different_body_under_an_existing_key_is_kept_under_its_own_key_and_answered_as_a_conflict(
) {
    let h = harness(RevelEventType::CustomerCreated, Settings::default());
    // Same uuid and updated_date (the business key), other content.
    let original = signed(&customer("2021-12-28T21:05:13", "Ann"));
    let other = signed(&customer("2021-12-28T21:05:13", "Anne"));

    let first = h.receiver.receive(&original).await.unwrap();
    let conflict = h.receiver.receive(&other).await.unwrap();
    let again = h.receiver.receive(&other).await.unwrap();

    let Outcome::Accepted {
        event_key: original_key,
    } = first
    else {
        panic!("{first:?}")
    };
    let Outcome::Conflict {
        event_key,
        conflict_of,
    } = conflict
    else {
        panic!("{conflict:?}")
    };
    assert_eq!(conflict_of, original_key);
    assert_ne!(event_key, original_key);
    assert_eq!(
        again,
        Outcome::Duplicate {
            event_key: event_key.clone()
        },
        "its own repeat"
    );
    assert_eq!(h.memory.events.len(), 2, "both bodies kept, each once");
    let kept = h.memory.events.records.lock().unwrap()[&event_key].clone();
    assert_eq!(kept.conflict_of, Some(original_key));
    assert_eq!(kept.raw_body().unwrap(), other.body);
}

#[tokio::test]
async fn a_tampered_body_is_rejected_and_nothing_is_stored() {
    let h = harness(RevelEventType::CustomerCreated, Settings::default());
    let mut request = signed(&customer("2021-12-28T21:05:13", "Ann"));
    request.body[10] ^= 1;
    let err = h.receiver.receive(&request).await.unwrap_err();
    assert!(matches!(
        err,
        ReceiveError::Unauthorized(domain::error::AuthFailure::SignatureMismatch)
    ));
    assert_eq!(h.memory.events.puts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_ping_is_answered_without_any_write() {
    let h = harness(RevelEventType::OrderFinalized, Settings::default());
    assert_eq!(
        h.receiver
            .receive(&signed(r#"{"ping": "pong"}"#))
            .await
            .unwrap(),
        Outcome::Pong
    );
    assert_eq!(h.memory.events.puts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_before_anything_else() {
    let settings = Settings {
        max_body_bytes: 64,
        ..Settings::default()
    };
    let h = harness(RevelEventType::CustomerCreated, settings);
    let err = h
        .receiver
        .receive(&signed(&customer("2021-12-28T21:05:13", &"x".repeat(100))))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ReceiveError::PayloadTooLarge { limit: 64, .. }
    ));
    assert!(h.memory.events.is_empty());
}

#[tokio::test]
async fn an_unparseable_body_is_quarantined_and_its_repeat_answered_the_same() {
    let h = harness(RevelEventType::CustomerCreated, Settings::default());
    let outcome = h.receiver.receive(&signed("{not json")).await.unwrap();
    let again = h.receiver.receive(&signed("{not json")).await.unwrap();
    let Outcome::Quarantined { event_key, reason } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(reason, "invalid_json");
    assert_eq!(
        again,
        Outcome::Quarantined {
            event_key: event_key.clone(),
            reason: "invalid_json".into()
        }
    );
    assert_eq!(
        h.memory.events.status(&event_key),
        Some(EventStatus::Quarantined)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_header_naming_another_type_than_the_route_is_stored_as_the_routes_type_and_counted() {
    let logs = capture_logs();
    let h = harness(RevelEventType::CustomerCreated, Settings::default());
    let mismatching = |updated: &str| {
        let mut request = signed(&customer(updated, "Ann"));
        request.headers.insert(
            "x-revel-event-type",
            HeaderValue::from_static("Customer.Created.V2 {\"x\":1}"),
        );
        request
    };
    let request = mismatching("2021-12-28T21:05:13");

    let outcome = h.receiver.receive(&request).await.unwrap();

    let Outcome::Accepted { event_key } = outcome else {
        panic!("the route decides the type: {outcome:?}")
    };
    assert!(event_key
        .as_str()
        .starts_with("revel:demo:customer.created:"));
    let record = h.memory.events.get(&event_key).await.unwrap().unwrap();
    assert_eq!(record.event_type, "customer.created");
    assert_eq!(record.status, EventStatus::Received);
    let text = logs.captured.text();
    let mismatch = text
        .lines()
        .find(|l| l.contains("EventTypeMismatches"))
        .unwrap_or_else(|| panic!("the disagreement is counted: {text}"));
    assert!(mismatch.contains("customer.created"), "{mismatch}");
    let warning = text
        .lines()
        .find(|l| l.contains("disagrees with the route"))
        .unwrap_or_else(|| panic!("the disagreement is logged: {text}"));
    assert!(
        warning.contains("Customer.Created.V2___x__1_"),
        "the declared type is logged as plain letters: {warning}"
    );
    // A header that agrees (in any case) is not counted.
    logs.captured.0.lock().unwrap().clear();
    let mut agreeing = signed(&customer("2021-12-28T21:05:14", "Ann"));
    agreeing.headers.insert(
        "x-revel-event-type",
        HeaderValue::from_static("CUSTOMER.CREATED"),
    );
    h.receiver.receive(&agreeing).await.unwrap();
    let text = logs.captured.text();
    assert!(!text.contains("EventTypeMismatches"), "{text}");
}

#[tokio::test]
async fn an_events_table_outage_is_unavailable_and_stores_nothing() {
    let h = harness(RevelEventType::CustomerCreated, Settings::default());
    h.memory.events.down.store(true, Ordering::SeqCst);
    let err = h
        .receiver
        .receive(&signed(&customer("2021-12-28T21:05:13", "Ann")))
        .await
        .unwrap_err();
    assert!(matches!(err, ReceiveError::Unavailable(_)));
    h.memory.events.down.store(false, Ordering::SeqCst);
    assert!(h.memory.events.is_empty());
}

#[tokio::test]
async fn twenty_concurrent_copies_make_one_record_and_nineteen_duplicates() {
    let h = Arc::new(harness(RevelEventType::OrderFinalized, Settings::default()));
    let body =
        r#"{"orderInfo": {"uuid": "o-1", "updated_date": "2016-04-13T10:29:19"}, "items": []}"#;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let h = Arc::clone(&h);
            tokio::spawn(async move { h.receiver.receive(&signed(body)).await })
        })
        .collect();
    let (mut accepted, mut duplicates) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(Outcome::Accepted { .. }) => accepted += 1,
            Ok(Outcome::Duplicate { .. }) => duplicates += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((accepted, duplicates), (1, 19));
    assert_eq!(h.memory.events.len(), 1);
}

#[tokio::test]
async fn with_an_event_id_the_id_decides_what_is_a_repeat() {
    let h = harness(RevelEventType::StockChanged, Settings::default());
    let out = r#"{"id": 1, "instock": false, "type": "product"}"#;
    let first = h
        .receiver
        .receive(&with_event_id(signed(out), "ev-1"))
        .await
        .unwrap();
    let retry = h
        .receiver
        .receive(&with_event_id(signed(out), "ev-1"))
        .await
        .unwrap();
    let later = h
        .receiver
        .receive(&with_event_id(signed(out), "ev-2"))
        .await
        .unwrap();
    assert!(matches!(first, Outcome::Accepted { .. }));
    assert!(matches!(retry, Outcome::Duplicate { .. }));
    assert!(matches!(later, Outcome::Accepted { .. }));
    assert_eq!(h.memory.events.len(), 2);
}

#[tokio::test]
async fn without_an_event_id_every_stock_request_is_an_event_of_its_own() {
    let h = harness(RevelEventType::StockChanged, Settings::default());
    let out = r#"{"id": 1, "instock": false, "type": "product"}"#;
    let a = h.receiver.receive(&signed(out)).await.unwrap();
    let b = h.receiver.receive(&signed(out)).await.unwrap();
    let (Outcome::Accepted { event_key: a }, Outcome::Accepted { event_key: b }) = (a, b) else {
        panic!("both are stored")
    };
    assert_ne!(a, b, "keyed by receipt: the processor collapses the repeat");
    assert!(a.as_str().starts_with("revel:demo:inout.stock:at:"), "{a}");
}

#[tokio::test]
async fn a_state_too_large_to_keep_is_stored_then_skipped_by_the_processor_not_retried_forever() {
    let h = harness(
        RevelEventType::CustomerCreated,
        Settings {
            max_body_bytes: 2 * 1024 * 1024,
            ..Settings::default()
        },
    );
    let body = customer("2021-12-28T21:05:13", &"x".repeat(MAX_STATE_BYTES));
    let outcome = h.receiver.receive(&signed(&body)).await.unwrap();
    assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
    let processed = h.memory.process_stream().await;
    assert_eq!(
        processed,
        vec![crate::process::Processed::Skipped {
            reason: "state_too_large"
        }]
    );
    assert_eq!(h.memory.process_stream().await, vec![], "handed over once");
}

#[tokio::test]
async fn a_fetched_event_is_stored_under_its_webhooks_key_so_the_two_are_one() {
    let h = harness(RevelEventType::CustomerUpdated, Settings::default());
    let body = customer("2021-12-28T21:05:13", "Ann");
    let demo = InstanceName::parse("demo").unwrap();
    let fetched = h
        .receiver
        .receive_fetched(&demo, body.clone().into_bytes(), "reconcile:1".into())
        .await
        .unwrap();
    let webhook = h.receiver.receive(&signed(&body)).await.unwrap();
    let Outcome::Accepted { event_key } = fetched else {
        panic!("{fetched:?}")
    };
    assert_eq!(
        webhook,
        Outcome::Duplicate {
            event_key: event_key.clone()
        }
    );
    assert_eq!(
        h.memory.events.records.lock().unwrap()[&event_key].origin,
        Origin::Reconciliation
    );
}

#[tokio::test]
async fn a_webhook_arriving_after_its_event_was_fetched_is_a_duplicate_whatever_its_bytes() {
    let h = harness(RevelEventType::CustomerUpdated, Settings::default());
    let demo = InstanceName::parse("demo").unwrap();
    // Reconciliation rebuilds the body from the API: same business key,
    // other bytes than the webhook Revel sends late.
    let fetched_body = customer("2021-12-28T21:05:13", "Ann").replace('}', r#", "fetched": true}"#);
    let fetched = h
        .receiver
        .receive_fetched(&demo, fetched_body.into_bytes(), "reconcile:1".into())
        .await
        .unwrap();
    let late_webhook = h
        .receiver
        .receive(&signed(&customer("2021-12-28T21:05:13", "Ann")))
        .await
        .unwrap();
    let Outcome::Accepted { event_key } = fetched else {
        panic!("{fetched:?}")
    };
    assert_eq!(late_webhook, Outcome::Duplicate { event_key });
    assert_eq!(h.memory.events.len(), 1, "no conflict record");
}

#[test]
fn a_conflict_key_names_the_body_and_stays_a_valid_key_however_long_the_original() {
    let short = EventKey::parse("revel:demo:x:id:1").unwrap();
    let sha = "ab".repeat(32);
    assert_eq!(
        conflict_key(&short, &sha).as_str(),
        format!("revel:demo:x:id:1~conflict:{}", &sha[..32])
    );
    let long = EventKey::parse(&"k".repeat(EventKey::MAX_LEN)).unwrap();
    assert_ne!(
        conflict_key(&long, &sha),
        conflict_key(&long, &"cd".repeat(32))
    );
}

/// VinesOS requests through the receiver and the processor.
mod vinesos_requests {
    use std::sync::Arc;
    use std::time::Duration;

    use ports::fakes::FixedSecrets;
    use ports::secrets::SecretCache;
    use serde_json::{json, Value};
    use vendors::fakes::signed_vinesos_request as signed;
    use vendors::vinesos::{VinesOs, VinesOsEvent};

    use crate::fakes::MemoryAws;
    use crate::receive::Outcome;

    const NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const AT: &str = "2026-11-24T10:00:00Z";

    fn source() -> VinesOs {
        VinesOs::new(SecretCache::new(
            FixedSecrets(format!(r#"{{"mybar": {{"webhook": "{NEW}"}}}}"#)),
            Duration::from_secs(60),
        ))
    }

    fn envelope(event: VinesOsEvent) -> Value {
        json!({"id": "evt_1", "type": event.name(), "occurred_at": AT,
               "data": {"id": "d-1", "points": 5}})
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    #[tokio::test]
    async fn a_retry_of_the_same_message_is_a_duplicate_and_queues_one_job() {
        let memory = MemoryAws::default();
        let receiver = memory.receiver(Arc::new(source()), Arc::new(VinesOsEvent::RewardChanged));
        let body = serde_json::to_vec(&envelope(VinesOsEvent::RewardChanged)).unwrap();
        let request = signed("mybar", NEW, now(), &body);

        let first = receiver.receive(&request).await.unwrap();
        let again = receiver.receive(&request).await.unwrap();
        memory.process_stream().await;

        let Outcome::Accepted { event_key } = first else {
            panic!("{first:?}")
        };
        assert_eq!(again, Outcome::Duplicate { event_key });
        assert_eq!(memory.events.len(), 1);
        assert_eq!(memory.queue.len(), 1);
        assert_eq!(
            memory.queue.jobs.lock().unwrap()[0].message.job,
            ports::queue::JobKind::ApplyToRevel
        );
    }

    #[tokio::test]
    async fn an_inventory_request_is_stored_with_one_put_and_queues_one_job_in_the_instances_group_of_requests(
    ) {
        let memory = MemoryAws::default();
        let receiver = memory.receiver(
            Arc::new(source()),
            Arc::new(VinesOsEvent::InventoryRequested),
        );
        let body = serde_json::to_vec(&json!({"id": "evt_8", "type": "inventory.requested",
            "occurred_at": AT, "data": {"revel_product_ids": [5, 6]}}))
        .unwrap();

        let outcome = receiver
            .receive(&signed("mybar", NEW, now(), &body))
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
        assert_eq!(
            memory.events.puts.load(std::sync::atomic::Ordering::SeqCst),
            1
        );
        memory.process_stream().await;

        let jobs = memory.queue.jobs.lock().unwrap().clone();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].message.job, ports::queue::JobKind::InventoryRequest);
        assert_eq!(jobs[0].group_id, "inventory_request:revel:mybar");
        let key = "vinesos:mybar:vos_inventory_request:evt_8";
        assert_eq!(jobs[0].message.entity_key.as_deref(), Some(key));
        let kept = memory
            .entities
            .get(&domain::ids::EntityKey::parse(key).unwrap())
            .unwrap();
        assert_eq!(kept.state.state_json, r#"{"revel_product_ids":[5,6]}"#);
    }
}
