//! The production path: the real function binaries, each a process started
//! as Lambda starts it, invoked through a local Lambda Runtime API with the
//! events Lambda would hand them (API Gateway HTTP API requests for the
//! receivers, the events table's stream as moto really holds it for the
//! processor), their AWS requests going to moto through a recording proxy.
//!
//! Needs the debug builds of the functions it runs (see
//! `integration_tests::lambda::binary`); every process is killed when its
//! test ends, passes, fails or runs out of time.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use domain::idempotency::sha256_hex;
use integration_tests::lambda::*;
use integration_tests::*;
use pipeline::receive::conflict_key;
use serde_json::{json, Value};
use vendors::revel::RevelEventType;

const ORDERS: &str = "revel-order-finalized";
const PROCESSOR: &str = "events-processor";
const ORDER: RevelEventType = RevelEventType::OrderFinalized;

/// Runs a test's body for at most two minutes; running out of time drops
/// it, and with it every function process it started.
async fn bounded(body: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(120), body)
        .await
        .expect("the test ran out of time");
}

/// The sample order under `uuid`, without its rewards card data and its
/// items: its record then makes exactly one entity and one job, so the
/// processor's calls name each step.
fn order(uuid: &str) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&payload("order-finalized.json")).unwrap();
    body["orderInfo"]["uuid"] = Value::String(uuid.to_owned());
    if let Some(info) = body["orderInfo"].as_object_mut() {
        info.remove("gift_reward_data");
    }
    body["items"] = json!([]);
    serde_json::to_vec(&body).unwrap()
}

#[tokio::test]
async fn a_new_order_is_stored_by_one_put_and_its_repeat_is_a_duplicate_by_one_put() {
    bounded(async {
        let stack = Stack::new().await;
        let mut receiver = Lambda::start(&stack, ORDERS).await;
        let request = revel_event(ORDER, &payload("order-finalized.json"));

        let new = receiver.request(&request).await;
        expect_outcome(new.status, &new.body, 200, "accepted");
        assert_one_put(&new.calls, "the ack path of a new event");
        assert_eq!(Vec::from_iter(stack.event_keys().await), [new.event_id()]);
        let stored = stack.event(&new.event_id()).await.expect("stored");
        assert_eq!(text(&stored, "status"), "received");

        let repeat = receiver.request(&request).await;
        expect_outcome(repeat.status, &repeat.body, 200, "duplicate");
        assert_eq!(repeat.event_id(), new.event_id());
        assert_eq!(
            repeat.operations(),
            ["PutItem"],
            "the ack path of a duplicate"
        );
        assert_eq!(stack.events().await.len(), 1, "still one record");
        // Nothing but the record on the answer's path: the stream does the rest.
        assert!(stack.entities().await.is_empty());
        assert_eq!(stack.jobs_waiting().await, 0);
    })
    .await;
}

#[tokio::test]
async fn a_different_body_under_an_existing_key_is_answered_conflict_and_kept_under_its_own_key() {
    bounded(async {
        let stack = Stack::new().await;
        let mut receiver = Lambda::start(&stack, ORDERS).await;
        let first = payload("order-finalized.json");
        // Same uuid and updated_date (the order's key), other content.
        let mut changed: Value = serde_json::from_slice(&first).unwrap();
        changed["orderInfo"]["notes"] = json!("changed without moving updated_date");
        let changed = serde_json::to_vec(&changed).unwrap();

        let original = receiver.request(&revel_event(ORDER, &first)).await;
        expect_outcome(original.status, &original.body, 200, "accepted");
        let conflict = receiver.request(&revel_event(ORDER, &changed)).await;
        let original_key = domain::ids::EventKey::parse(&original.event_id()).unwrap();
        let own_key = conflict_key(&original_key, &sha256_hex(&changed));
        assert_eq!(
            (conflict.status, &conflict.body),
            (
                200,
                &json!({"status": "conflict", "event_id": own_key.as_str(), "conflict_of": original_key.as_str()})
            )
        );
        // The refused put, then the put under its own key.
        assert_eq!(conflict.operations(), ["PutItem", "PutItem"]);

        let kept = stack.event(own_key.as_str()).await.expect("kept under its own key");
        assert_eq!(text(&kept, "conflict_of"), original_key.as_str());
        assert_eq!(text(&kept, "body_sha256"), sha256_hex(&changed));
        let untouched = stack.event(original_key.as_str()).await.unwrap();
        assert_eq!(text(&untouched, "body_sha256"), sha256_hex(&first));
        assert_eq!(stack.events().await.len(), 2);

        let again = receiver.request(&revel_event(ORDER, &changed)).await;
        expect_outcome(again.status, &again.body, 200, "duplicate");
        assert_eq!(again.event_id(), own_key.as_str(), "the conflict's repeat");
        assert_eq!(stack.events().await.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_signed_order_without_order_info_is_archived_quarantined_and_answered_202() {
    bounded(async {
        let stack = Stack::new().await;
        let mut receiver = Lambda::start(&stack, ORDERS).await;
        let answer = receiver
            .request(&revel_event(ORDER, br#"{"items": []}"#))
            .await;
        expect_outcome(answer.status, &answer.body, 202, "quarantined");
        assert_eq!(answer.body["reason"], "missing_order_info");
        assert_eq!(answer.operations(), ["PutItem"]);
        let record = stack.event(&answer.event_id()).await.expect("archived");
        assert_eq!(text(&record, "status"), "quarantined");
        assert_eq!(text(&record, "quarantine_reason"), "missing_order_info");
    })
    .await;
}

#[tokio::test]
async fn a_bad_signature_is_answered_401_without_any_aws_request_and_nothing_is_stored() {
    bounded(async {
        let stack = Stack::new().await;
        let mut receiver = Lambda::start(&stack, ORDERS).await;
        let body = payload("order-finalized.json");
        let mut request = revel_event(ORDER, &body);
        let mut tampered = body.clone();
        tampered[40] ^= 0x01;
        request["body"] = Value::String(String::from_utf8(tampered).unwrap());
        let answer = receiver.request(&request).await;
        assert_eq!(
            (answer.status, &answer.body),
            (401, &json!({"error": "unauthorized"}))
        );
        // The secrets were read at init.
        assert_eq!(answer.operations(), Vec::<&str>::new());
        assert!(stack.events().await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_body_one_byte_over_max_body_bytes_is_answered_413_and_one_at_the_limit_is_accepted() {
    bounded(async {
        let stack = Stack::new().await;
        let body = payload("order-finalized.json");
        let limit = body.len().to_string();
        let mut receiver = Lambda::start_with(&stack, ORDERS, &[("MAX_BODY_BYTES", &limit)]).await;
        let mut over = body.clone();
        over.push(b' ');
        let refused = receiver.request(&revel_event(ORDER, &over)).await;
        assert_eq!(
            (refused.status, &refused.body),
            (413, &json!({"error": "payload_too_large"}))
        );
        assert_eq!(refused.operations(), Vec::<&str>::new());
        assert!(stack.events().await.is_empty());

        let at_limit = receiver.request(&revel_event(ORDER, &body)).await;
        expect_outcome(at_limit.status, &at_limit.body, 200, "accepted");
        assert_eq!(stack.events().await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_vinesos_event_is_accepted_by_one_put_and_its_resent_delivery_is_a_duplicate() {
    bounded(async {
        let stack = Stack::new().await;
        let name = "vinesos-customer-created";
        let sample = local_stack::events::samples()
            .into_iter()
            .find(|s| s.output == format!("{name}.json"))
            .expect("a sample for the function");
        let event = local_stack::events::render(&local_stack::events::default_dir(), &sample)
            .expect("the sample renders");
        let mut receiver = Lambda::start(&stack, name).await;
        // Standard Webhooks signatures are time-limited: signed now, as sent.
        let new = receiver
            .request(&local_stack::events::resign(event.clone()))
            .await;
        expect_outcome(new.status, &new.body, 200, "accepted");
        assert_eq!(new.operations(), ["PutItem"]);
        let resent = receiver.request(&local_stack::events::resign(event)).await;
        expect_outcome(resent.status, &resent.body, 200, "duplicate");
        assert_eq!(resent.event_id(), new.event_id());
        assert_eq!(resent.operations(), ["PutItem"]);
        assert_eq!(stack.events().await.len(), 1);
    })
    .await;
}

/// Deliveries to the order receiver binary, each answered as expected
/// (status, outcome), and the stream records they left, in order.
async fn received(stack: &Stack, deliveries: &[(Vec<u8>, u16, &str)]) -> Vec<Value> {
    let mut receiver = Lambda::start(stack, ORDERS).await;
    for (body, status, outcome) in deliveries {
        let answer = receiver.request(&revel_event(ORDER, body)).await;
        expect_outcome(answer.status, &answer.body, *status, outcome);
    }
    let records = stream_records(stack).await;
    assert_eq!(
        records.len(),
        deliveries.len(),
        "one stream record per event"
    );
    assert!(records.iter().all(|r| r["eventName"] == "INSERT"));
    records
}

/// New orders, one per uuid, received as [`received`] does.
async fn received_orders(stack: &Stack, uuids: &[&str]) -> Vec<Value> {
    let deliveries: Vec<_> = uuids.iter().map(|u| (order(u), 200, "accepted")).collect();
    received(stack, &deliveries).await
}

/// (event key, entity key) of each record, from its new image.
fn keys(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| {
            (
                new_image_text(r, "event_key"),
                new_image_text(r, "entity_key"),
            )
        })
        .collect()
}

/// (event key, entity key) of each waiting job, taken off the queue.
async fn jobs(stack: &Stack) -> BTreeSet<(String, String)> {
    let mut seen = BTreeSet::new();
    for job in stack.take_jobs().await {
        assert_eq!(job["job"], "sync_entity", "{job}");
        let pair = (
            job["event_key"].as_str().unwrap().to_owned(),
            job["entity_key"].as_str().unwrap().to_owned(),
        );
        assert!(seen.insert(pair), "a job queued twice: {job}");
    }
    seen
}

/// The entity each record keyed holds that record's change (or is absent).
async fn entities_hold(stack: &Stack, keys: &[(String, String)]) -> Vec<bool> {
    let mut held = Vec::new();
    for (event_key, entity_key) in keys {
        held.push(match stack.entity(entity_key).await {
            Some(entity) => {
                assert_eq!(&text(&entity, "last_event_key"), event_key);
                true
            }
            None => false,
        });
    }
    held
}

#[tokio::test]
async fn the_processor_applies_the_batch_the_stream_holds_entity_first_then_its_job_skips_the_quarantined_and_absorbs_a_replay(
) {
    bounded(async {
        let stack = Stack::new().await;
        let records = received(
            &stack,
            &[
                (order("order-a"), 200, "accepted"),
                (br#"{"items": []}"#.to_vec(), 202, "quarantined"),
                (order("order-b"), 200, "accepted"),
            ],
        )
        .await;
        assert_eq!(new_image_text(&records[1], "status"), "quarantined");
        let keys = keys(&[records[0].clone(), records[2].clone()]);
        let mut processor = Lambda::start(&stack, PROCESSOR).await;

        let (answer, calls) = processor.invoke(&stream_event(&records)).await;
        assert_eq!(answer, json!({"batchItemFailures": []}));
        assert_eq!(
            calls.iter().map(Call::name).collect::<Vec<_>>(),
            ["UpdateItem", "SendMessage", "UpdateItem", "SendMessage"],
            "each order: its entity, and only then its job; nothing for the quarantined record"
        );
        assert_eq!(entities_hold(&stack, &keys).await, [true, true]);
        assert_eq!(stack.entities().await.len(), 2);
        let before = stack.entity_revisions().await;

        // The event source mapping hands a batch again after a failed attempt.
        let (again, _) = processor.invoke(&stream_event(&records)).await;
        assert_eq!(again, json!({"batchItemFailures": []}));
        assert_eq!(
            stack.entity_revisions().await,
            before,
            "a replay changes no entity"
        );
        assert_eq!(
            jobs(&stack).await,
            keys.iter().cloned().collect(),
            "one job per order, the replay's absorbed by the queue's deduplication"
        );
    })
    .await;
}

#[tokio::test]
async fn a_batch_stops_at_its_first_failing_record_and_reports_exactly_its_sequence_number() {
    bounded(async {
        let stack = Stack::new().await;
        let records = received_orders(&stack, &["order-a", "order-b", "order-c"]).await;
        let keys = keys(&records);
        let mut processor = Lambda::start(&stack, PROCESSOR).await;
        // The second record's entity write is throttled, every attempt.
        processor.throttle("UpdateItem", &keys[1].1);

        let (answer, calls) = processor.invoke(&stream_event(&records)).await;
        assert_eq!(
            failed_sequence_numbers(&answer),
            [sequence_number(&records[1])]
        );
        assert_eq!(entities_hold(&stack, &keys).await, [true, false, false]);
        let forwarded: Vec<&str> = calls
            .iter()
            .filter(|c| !c.refused)
            .map(|c| c.name())
            .collect();
        assert_eq!(
            forwarded,
            ["UpdateItem", "SendMessage"],
            "only the first record reached AWS"
        );
        assert!(calls.iter().any(|c| c.refused));
        assert!(calls
            .iter()
            .filter(|c| c.refused)
            .all(|c| c.name() == "UpdateItem"));
        assert_eq!(jobs(&stack).await, BTreeSet::from([keys[0].clone()]));

        // As the mapping does: the batch again from the failed record on.
        processor.allow_all();
        let (answer, _) = processor.invoke(&stream_event(&records[1..])).await;
        assert_eq!(answer, json!({"batchItemFailures": []}));
        assert_eq!(entities_hold(&stack, &keys).await, [true, true, true]);
        assert_eq!(jobs(&stack).await, keys[1..].iter().cloned().collect());
    })
    .await;
}
