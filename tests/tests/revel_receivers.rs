//! The Revel receivers end to end: the real handlers (`shared::http::handle`,
//! what each function's `main` runs) and the real AWS SDK against a local
//! DynamoDB / SQS / Secrets Manager endpoint (moto), with tables, queues and
//! secret provisioned from template.yaml. An answer leaves only the event
//! record; `Stack::settle` hands the events table's stream to the real
//! processor, and the jobs worker delivers to a partner stand-in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use domain::idempotency::sha256_hex;
use integration_tests::*;
use local_stack::events::samples;
use serde_json::{json, Value};
use vendors::functions::Kind;
use vendors::revel::signature::sign;
use vendors::revel::RevelEventType;

fn customer(updated: &str, name: &str) -> Vec<u8> {
    json!({"uuid": "58126996-3fc8-4c87-b326-b4762783c863", "updated_date": updated, "first_name": name,
           "cc_last_4_digits": "4242", "cc_first_name": "Card", "email": "a@example.com"})
    .to_string()
    .into_bytes()
}

/// Stock and menu bodies carry no id and no date: without `X-Revel-Event-Id`
/// every request is an event of its own.
fn has_identity(kind: RevelEventType) -> bool {
    !matches!(
        kind,
        RevelEventType::StockChanged | RevelEventType::MenuUpdated
    )
}

/// The entity a stored record names.
async fn entity_of(
    stack: &Stack,
    event_key: &str,
) -> std::collections::HashMap<String, AttributeValue> {
    let record = stack.event(event_key).await.expect("stored");
    stack
        .entity(&text(&record, "entity_key"))
        .await
        .expect("the processor kept its entity")
}

#[tokio::test]
async fn every_revel_sample_is_stored_with_one_request_and_its_repeat_costs_one_request_and_changes_nothing(
) {
    let stack = Stack::new().await;
    let counted = stack.counted_receivers().await;
    let mut stored = BTreeSet::new();
    for sample in samples() {
        let Kind::Revel(kind) = sample.kind else {
            continue;
        };
        let receiver = counted.receiver_for(sample.kind.function().logical_id);
        let (status, first, calls) = counted.deliver(&receiver, sample_request(&sample)).await;
        if sample.payload == "ping.json" {
            assert_eq!(
                (status, first),
                (200, json!({"status": "ok", "ping": "pong"}))
            );
            assert!(calls.is_empty(), "a ping makes no request: {calls:?}");
            continue;
        }
        expect_outcome(status, &first, 200, "accepted");
        assert_one_put(&calls, &sample.output);
        let record = stack.event(&event_id(&first)).await.expect("stored");
        assert_eq!(text(&record, "status"), "received");
        assert_eq!(text(&record, "event_type"), kind.name());
        stored.insert(event_id(&first));

        let (status, again, calls) = counted.deliver(&receiver, sample_request(&sample)).await;
        assert_one_put(&calls, &format!("{} repeated", sample.output));
        if has_identity(kind) {
            expect_outcome(status, &again, 200, "duplicate");
            assert_eq!(event_id(&again), event_id(&first));
        } else {
            // Nothing tells this repeat from a new change: it is a record of
            // its own, and the processor collapses it below.
            expect_outcome(status, &again, 200, "accepted");
            assert_ne!(event_id(&again), event_id(&first));
            stored.insert(event_id(&again));
        }
    }
    assert_eq!(
        stack.event_keys().await,
        stored,
        "one record per event, none for the ping"
    );

    stack.settle().await;
    let mut named = stack.entity_keys_named_by_events().await;
    // The order's rewards card, which the order reports on.
    named.insert(SEED_ORDER_CARD.to_owned());
    assert_eq!(
        stack.entity_keys().await,
        named,
        "one entity per entity the events name, and the order's card"
    );
    for (entity, revision) in stack.entity_revisions().await {
        assert_eq!(revision, "1", "{entity}: a repeat is not a new state");
    }

    // Every entity that syncs reaches the partner once, at its one revision
    // (and the order's stock changes, kept as the entity recording them).
    let partner = PartnerStandIn::start(204).await;
    stack.drain(&stack.delivering_worker(&partner), 20).await;
    let mut heard: Vec<(String, u64)> = partner
        .deliveries()
        .await
        .into_iter()
        .map(|d| (d.kind, d.revision))
        .collect();
    heard.sort();
    let mut syncing: Vec<(String, u64)> = stack
        .entities()
        .await
        .iter()
        .map(|e| text(e, "kind"))
        .filter(|kind| kind != "menu")
        .map(|kind| (kind, 1))
        .collect();
    syncing.sort();
    assert_eq!(heard, syncing);
    assert_eq!(stack.jobs_waiting().await, 0);
}

#[tokio::test]
async fn the_sample_events_are_exactly_what_the_generator_writes() {
    let dir = workspace_root().join("events");
    for sample in samples() {
        let on_disk: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(&sample.output)).unwrap())
                .unwrap();
        // `make events` signs the time-limited (VinesOS) samples with the
        // current time; compared at the fixed signing time the generator uses.
        let on_disk =
            local_stack::events::resign_at(on_disk, local_stack::events::SAMPLE_SIGNED_AT);
        let generated = local_stack::events::render(&dir, &sample).unwrap();
        assert_eq!(
            on_disk, generated,
            "{} is stale: run `make events`",
            sample.output
        );
    }
}

#[tokio::test]
async fn an_order_keeps_items_payments_and_parsed_rewards_without_card_fields() {
    let stack = Stack::new().await;
    let body = payload("order-finalized.json");
    let (status, answer) = deliver(
        &stack.receiver(RevelEventType::OrderFinalized),
        signed_request(RevelEventType::OrderFinalized, &body),
    )
    .await;
    expect_outcome(status, &answer, 200, "accepted");
    let record = stack.event(&event_id(&answer)).await.unwrap();
    // The archive holds exactly the bytes received, compressed.
    assert_eq!(text(&record, "body_encoding"), "gzip");
    let Some(AttributeValue::B(blob)) = record.get("body") else {
        panic!("no body")
    };
    let archived = ports::store::ArchivedBody {
        bytes: blob.as_ref().to_vec(),
        gzip: true,
        original_len: body.len(),
    };
    assert_eq!(archived.raw().unwrap(), body);
    let expires: i64 = text(&record, "expires_at").parse().unwrap();
    let received: i64 = text(&record, "received_at").parse::<i64>().unwrap() / 1_000_000;
    assert_eq!(
        expires - received,
        30 * 86_400,
        "default retention is 30 days"
    );
    assert!(
        stack.entities().await.is_empty(),
        "the answer waits for the record only"
    );

    stack.settle().await;
    let entity = entity_of(&stack, &event_id(&answer)).await;
    let state = entity_state(&entity);
    assert_eq!(state["order"]["gift_reward_data"]["total_points"], 126);
    assert_eq!(state["items"][0]["product_name_override"], "Cheese");
    assert_eq!(state["payments"][0]["amount"], "4.860000");
    let kept = state.to_string();
    for card_field in [
        "last_4_cc_digits",
        "first_4_cc_digits",
        "cc_first_name",
        "cc_last_name",
        "card_type",
    ] {
        assert!(!kept.contains(card_field), "{card_field} was kept");
    }
    let jobs = stack.take_jobs().await;
    let named: Vec<(&str, &str)> = jobs
        .iter()
        .map(|j| {
            (
                j["job"].as_str().unwrap(),
                j["entity_key"].as_str().unwrap(),
            )
        })
        .collect();
    let order = text(&entity, "entity_key");
    assert_eq!(
        named,
        [
            ("sync_entity", order.as_str()),
            ("sync_entity", SEED_ORDER_CARD),
            ("inventory_sold", order.as_str()),
        ],
        "the order, the rewards card it used, the stock it sold"
    );
    assert!(jobs.iter().all(|j| j["event_key"] == event_id(&answer)));
    assert_eq!(
        jobs[0]["version"].to_string(),
        text(&entity, "version"),
        "the job names the version it follows"
    );
}

/// The rewards card the seed's order (`gift_reward_data`) reports on.
const SEED_ORDER_CARD: &str = "revel:demo:rewards_card:15";

#[tokio::test]
async fn the_seed_orders_rewards_card_and_stock_sold_reach_the_partner_once_and_a_replayed_order_sends_nothing(
) {
    let stack = Stack::new().await;
    let partner = PartnerStandIn::start(204).await;
    let worker = stack.delivering_worker(&partner);
    let receiver = stack.receiver(RevelEventType::OrderFinalized);
    let order = payload("order-finalized.json");
    let (status, answer) = deliver(
        &receiver,
        signed_request(RevelEventType::OrderFinalized, &order),
    )
    .await;
    expect_outcome(status, &answer, 200, "accepted");
    stack.settle().await;
    stack.drain(&worker, 10).await;

    let requests = partner.server.received_requests().await.unwrap();
    let bodies: Vec<Value> = requests.iter().map(verified).collect();
    let types: Vec<&str> = bodies.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "revel.order.changed",
            "revel.rewards_card.changed",
            "revel.inventory.sold"
        ]
    );
    let card = &bodies[1]["data"];
    assert_eq!(
        (card["id"].as_str(), card["revision"].as_u64()),
        (Some("15"), Some(1))
    );
    assert_eq!(card["state"]["current_points"], 106);
    assert_eq!(card["state"]["number"], "J87YUIL9812X");
    assert_eq!(
        card["version"].as_i64(),
        domain::sources::parse_timestamp_micros("2016-04-13T17:29:15+00:00"),
        "dated by the card's own updated_date"
    );
    let sold = &bodies[2]["data"];
    assert_eq!(
        sold["id"].as_str(),
        Some("c3d0ad74-1737-42c3-a352-4a45449a67af:product:5")
    );
    assert_eq!(
        sold["state"],
        json!({"order_uuid": "c3d0ad74-1737-42c3-a352-4a45449a67af", "order_id": 417,
               "establishment_id": "1", "product_id": "5", "quantity_sold": 1})
    );
    let sold_id = requests[2].headers.get("webhook-id").unwrap().clone();

    // The order again: as a duplicate delivery, and replayed by an operator.
    let (_, again) = deliver(
        &receiver,
        signed_request(RevelEventType::OrderFinalized, &order),
    )
    .await;
    expect_outcome(200, &again, 200, "duplicate");
    let stored =
        aws_adapters::dynamodb::event_record(stack.event(&event_id(&answer)).await.unwrap())
            .unwrap();
    stack.replay(&stored).await;
    stack.settle().await;
    stack.drain(&worker, 10).await;

    let after = partner.server.received_requests().await.unwrap();
    assert_eq!(after.len(), 3, "nothing was sent twice");
    assert_eq!(after[2].headers.get("webhook-id"), Some(&sold_id));
    assert_eq!(stack.jobs_waiting().await, 0);
}

#[tokio::test]
async fn a_header_naming_another_event_type_than_the_route_is_stored_and_applied_as_the_routes_type(
) {
    let stack = Stack::new().await;
    let kind = RevelEventType::CustomerUpdated;
    let body = customer("2021-12-28T21:05:13", "Ann");
    let mut headers = local_stack::events::revel_headers(kind, DEMO_INSTANCE, DEMO_SECRET, &body);
    for (name, value) in &mut headers {
        if name.eq_ignore_ascii_case(vendors::revel::EVENT_TYPE_HEADER) {
            *value = "CustomerUpdate".to_owned();
        }
    }
    assert!(headers.iter().any(|(_, v)| v == "CustomerUpdate"));

    let (status, answer) =
        deliver(&stack.receiver(kind), request_with(kind, &headers, &body)).await;

    expect_outcome(status, &answer, 200, "accepted");
    let record = stack.event(&event_id(&answer)).await.unwrap();
    assert_eq!(text(&record, "event_type"), "customer.updated");
    assert_eq!(text(&record, "status"), "received");
    stack.settle().await;
    let entity = entity_of(&stack, &event_id(&answer)).await;
    assert_eq!(entity_state(&entity)["first_name"], "Ann");
    assert_eq!(stack.jobs_waiting().await, 1, "its delivery is queued");
}

#[tokio::test]
async fn one_changed_byte_is_rejected_and_nothing_is_stored() {
    let stack = Stack::new().await;
    let kind = RevelEventType::CustomerCreated;
    let body = payload("customer.json");
    let mut headers = local_stack::events::revel_headers(kind, DEMO_INSTANCE, DEMO_SECRET, &body);
    let mut tampered = body.clone();
    tampered[20] ^= 0x01;
    let (status, answer) = deliver(
        &stack.receiver(kind),
        request_with(kind, &headers, &tampered),
    )
    .await;
    assert_eq!((status, answer), (401, json!({"error": "unauthorized"})));
    headers.retain(|(k, _)| k != "x-revel-signature");
    let (status, _) = deliver(&stack.receiver(kind), request_with(kind, &headers, &body)).await;
    assert_eq!(status, 401, "a missing signature is refused");
    stack.settle().await;
    assert_eq!(
        stack.written().await,
        Written {
            events: 0,
            entities: 0,
            jobs: 0
        }
    );
}

#[tokio::test]
async fn an_unknown_or_missing_instance_gets_the_same_401_and_nothing_is_stored() {
    let stack = Stack::new().await;
    let kind = RevelEventType::CustomerCreated;
    let body = payload("customer.json");
    let stranger = local_stack::events::revel_headers(kind, "stranger", DEMO_SECRET, &body);
    let (unknown, unknown_body) =
        deliver(&stack.receiver(kind), request_with(kind, &stranger, &body)).await;
    let mut anonymous = local_stack::events::revel_headers(kind, DEMO_INSTANCE, DEMO_SECRET, &body);
    anonymous.retain(|(k, _)| k != "x-revel-instance");
    let (missing, missing_body) =
        deliver(&stack.receiver(kind), request_with(kind, &anonymous, &body)).await;
    let wrong_secret =
        local_stack::events::revel_headers(kind, DEMO_INSTANCE, "not-the-secret", &body);
    let (wrong, wrong_body) = deliver(
        &stack.receiver(kind),
        request_with(kind, &wrong_secret, &body),
    )
    .await;
    assert_eq!((unknown, missing, wrong), (401, 401, 401));
    assert_eq!(
        unknown_body, wrong_body,
        "an unknown instance must look like a bad signature"
    );
    assert_eq!(missing_body, wrong_body);
    assert!(stack.events().await.is_empty());
}

#[tokio::test]
async fn a_base64_encoded_body_is_verified_on_its_decoded_bytes() {
    let stack = Stack::new().await;
    let kind = RevelEventType::RewardCardCreated;
    let body = payload("rewardcard-created.json");
    let headers = local_stack::events::revel_headers(kind, DEMO_INSTANCE, DEMO_SECRET, &body);
    let mut event = local_stack::events::http_api_event(
        "POST",
        Kind::Revel(kind).function().route(),
        "",
        &headers,
        &body,
    );
    event["body"] = Value::String(base64::engine::general_purpose::STANDARD.encode(&body));
    event["isBase64Encoded"] = Value::Bool(true);
    let request = integration_tests::api_gateway_event(&event.to_string()).unwrap();
    let (status, answer) = deliver(&stack.receiver(kind), request).await;
    expect_outcome(status, &answer, 200, "accepted");
    let Some(AttributeValue::B(blob)) = stack
        .event(&event_id(&answer))
        .await
        .unwrap()
        .get("body")
        .cloned()
    else {
        panic!("no body")
    };
    assert_eq!(blob.into_inner(), body, "the decoded bytes are archived");
}

#[tokio::test]
async fn header_names_and_hex_digits_in_any_case_are_accepted() {
    let stack = Stack::new().await;
    let kind = RevelEventType::StockChanged;
    let body = payload("stock-changed.json");
    let headers = vec![
        ("X-REVEL-INSTANCE".to_owned(), "Demo".to_owned()),
        (
            "X-Revel-Signature".to_owned(),
            sign(DEMO_SECRET.as_bytes(), &body).to_uppercase(),
        ),
    ];
    let (status, answer) =
        deliver(&stack.receiver(kind), request_with(kind, &headers, &body)).await;
    expect_outcome(status, &answer, 200, "accepted");
}

#[tokio::test]
async fn during_a_secret_rotation_both_secrets_are_accepted() {
    let stack = Stack::new().await;
    stack
        .put_secrets(r#"{"demo": ["new-secret", "old-secret"]}"#)
        .await;
    let kind = RevelEventType::CustomerUpdated;
    let receiver = stack.receiver(kind);
    for (secret, updated) in [
        ("old-secret", "2021-12-28T21:05:13"),
        ("new-secret", "2021-12-28T21:05:14"),
    ] {
        let body = customer(updated, "Ann");
        let headers = local_stack::events::revel_headers(kind, DEMO_INSTANCE, secret, &body);
        let (status, answer) = deliver(&receiver, request_with(kind, &headers, &body)).await;
        expect_outcome(status, &answer, 200, "accepted");
    }
    let body = customer("2021-12-28T21:05:15", "Ann");
    let headers = local_stack::events::revel_headers(kind, DEMO_INSTANCE, DEMO_SECRET, &body);
    assert_eq!(
        deliver(&receiver, request_with(kind, &headers, &body))
            .await
            .0,
        401,
        "the retired secret is refused"
    );
}

#[tokio::test]
async fn a_signed_body_that_is_not_understood_is_quarantined_kept_and_skipped_by_the_processor() {
    let stack = Stack::new().await;
    let kind = RevelEventType::CustomerCreated;
    let receiver = stack.receiver(kind);
    for (body, reason) in [
        (&b"{\"uuid\": "[..], "invalid_json"),
        (
            &br#"{"first_name": "no uuid"}"#[..],
            "missing_customer_uuid",
        ),
    ] {
        let (status, answer) = deliver(&receiver, signed_request(kind, body)).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["status"], "quarantined");
        assert_eq!(answer["reason"], reason);
        let record = stack.event(&event_id(&answer)).await.expect("archived");
        assert_eq!(text(&record, "status"), "quarantined");
        let Some(AttributeValue::B(blob)) = record.get("body") else {
            panic!("no body")
        };
        assert_eq!(blob.as_ref(), body, "kept exactly as received");
        let (status, again) = deliver(&receiver, signed_request(kind, body)).await;
        assert_eq!(
            (status, event_id(&again)),
            (202, event_id(&answer)),
            "kept once"
        );
    }
    let polls = stack.settle_with(&stack.processor(), 5).await;
    assert_eq!(polls.iter().map(|p| p.records).sum::<usize>(), 2);
    assert!(
        polls.iter().all(|p| p.failed_batches == 0),
        "skipped, not retried: {polls:?}"
    );
    assert!(stack.entities().await.is_empty());
    assert_eq!(stack.jobs_waiting().await, 0);
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_and_nothing_is_stored() {
    let stack = Stack::new().await;
    let mut config = stack.config.clone();
    config.settings.max_body_bytes = 1024;
    let kind = RevelEventType::OrderFinalized;
    let receiver = stack.receiver_with(kind, stack.clients(), &config);
    let (status, answer) = deliver(
        &receiver,
        signed_request(kind, &payload("order-finalized.json")),
    )
    .await;
    assert_eq!(
        (status, answer),
        (413, json!({"error": "payload_too_large"}))
    );
    assert!(stack.events().await.is_empty());
}

#[tokio::test]
async fn an_older_customer_update_leaves_the_newer_state_whichever_arrives_first() {
    let newer = customer("2021-12-28T21:05:14.000001", "Newer");
    let older = customer("2021-12-28T21:05:14", "Older");
    for arrival in [[&newer, &older], [&older, &newer]] {
        let stack = Stack::new().await;
        let kind = RevelEventType::CustomerUpdated;
        let receiver = stack.receiver(kind);
        let mut keys = Vec::new();
        for body in arrival {
            let (status, answer) = deliver(&receiver, signed_request(kind, body)).await;
            expect_outcome(status, &answer, 200, "accepted");
            keys.push(event_id(&answer));
            // Each processed before the next arrives, as in production.
            stack.settle().await;
        }
        let newer_key = if arrival[0] == &newer {
            &keys[0]
        } else {
            &keys[1]
        };
        let entity = entity_of(&stack, newer_key).await;
        let state = entity_state(&entity);
        assert_eq!(state["first_name"], "Newer");
        assert!(state.get("cc_last_4_digits").is_none() && state.get("cc_first_name").is_none());
        assert_eq!(text(&entity, "last_event_key"), *newer_key);
        // Arriving first, the older one is a state of its own; arriving
        // last, it writes nothing.
        let expected_revision = if arrival[0] == &newer { "1" } else { "2" };
        assert_eq!(text(&entity, "revision"), expected_revision);
    }
}

#[tokio::test]
async fn a_different_order_body_under_an_existing_key_is_kept_as_a_conflict_and_the_entity_ends_the_same_in_either_order(
) {
    let original = payload("order-finalized.json");
    let mut changed: Value = serde_json::from_slice(&original).unwrap();
    changed["orderInfo"]["notes"] = json!("changed without moving updated_date");
    let changed = serde_json::to_vec(&changed).unwrap();
    let kind = RevelEventType::OrderFinalized;

    let mut final_states = Vec::new();
    for arrival in [[&original, &changed], [&changed, &original]] {
        let stack = Stack::new().await;
        let receiver = stack.receiver(kind);
        let (status, first) = deliver(&receiver, signed_request(kind, arrival[0])).await;
        expect_outcome(status, &first, 200, "accepted");
        let (status, conflict) = deliver(&receiver, signed_request(kind, arrival[1])).await;
        expect_outcome(status, &conflict, 200, "conflict");
        assert_eq!(conflict["conflict_of"], event_id(&first).as_str());
        let own_key = event_id(&conflict);
        assert!(
            own_key.starts_with(&format!("{}~conflict:", event_id(&first))),
            "{own_key}"
        );
        let record = stack.event(&own_key).await.expect("the conflict is kept");
        assert_eq!(text(&record, "conflict_of"), event_id(&first));
        assert_eq!(text(&record, "body_sha256"), sha256_hex(arrival[1]));
        // Each body's repeat is a duplicate of its own record.
        for (body, key) in [(arrival[0], event_id(&first)), (arrival[1], own_key)] {
            let (status, again) = deliver(&receiver, signed_request(kind, body)).await;
            expect_outcome(status, &again, 200, "duplicate");
            assert_eq!(event_id(&again), key);
        }
        assert_eq!(stack.events().await.len(), 2);

        stack.settle().await;
        let entities = stack.entities().await;
        assert_eq!(entities.len(), 2, "the order and the rewards card it used");
        let order = entities
            .iter()
            .find(|e| text(e, "kind") == "order")
            .unwrap();
        final_states.push(entity_state(order));
    }
    assert_eq!(
        final_states[0], final_states[1],
        "equal versions are decided, not raced"
    );
    // The tie-breaker: the greater body hash.
    let winner = if sha256_hex(&changed) > sha256_hex(&original) {
        "changed without moving updated_date"
    } else {
        ""
    };
    assert_eq!(
        final_states[0]["order"]["notes"]
            .as_str()
            .unwrap_or_default(),
        winner
    );
}

#[tokio::test]
async fn the_same_event_twenty_times_at_once_makes_one_record_one_entity_write_and_one_job() {
    let stack = Stack::new().await;
    let kind = RevelEventType::OrderFinalized;
    let receiver = Arc::new(stack.receiver(kind));
    let body = Arc::new(payload("order-finalized.json"));
    let deliveries: Vec<_> = (0..20)
        .map(|_| {
            let (receiver, body) = (Arc::clone(&receiver), Arc::clone(&body));
            tokio::spawn(async move { deliver(&receiver, signed_request(kind, &body)).await })
        })
        .collect();
    let mut answers = BTreeMap::new();
    for delivery in deliveries {
        let (status, answer) = delivery.await.unwrap();
        let label = format!("{status} {}", answer["status"].as_str().unwrap_or("?"));
        *answers.entry(label).or_insert(0) += 1;
    }
    assert_eq!(
        answers,
        BTreeMap::from([
            ("200 accepted".to_owned(), 1),
            ("200 duplicate".to_owned(), 19)
        ]),
        "a repeat is answered at once, never asked to come back"
    );
    assert_eq!(stack.events().await.len(), 1);
    stack.settle().await;
    let entities = stack.entities().await;
    assert_eq!(entities.len(), 2, "the order and the rewards card it used");
    assert!(entities.iter().all(|e| text(e, "revision") == "1"));
    assert_eq!(
        stack.jobs_waiting().await,
        3,
        "the order's, its card's and its stock's, once each"
    );
}

#[tokio::test]
async fn the_revel_event_id_header_is_the_idempotency_key_when_present() {
    let stack = Stack::new().await;
    let kind = RevelEventType::StockChanged;
    let receiver = stack.receiver(kind);
    let body = payload("stock-changed.json");
    let mut answers = Vec::new();
    for id in ["ev-1", "ev-2", "ev-1"] {
        let mut headers =
            local_stack::events::revel_headers(kind, DEMO_INSTANCE, DEMO_SECRET, &body);
        headers.push(("x-revel-event-id".into(), id.into()));
        let (status, answer) = deliver(&receiver, request_with(kind, &headers, &body)).await;
        answers.push((status, answer["status"].as_str().unwrap_or("?").to_owned()));
    }
    assert_eq!(
        answers,
        [
            (200, "accepted".to_owned()),
            (200, "accepted".to_owned()),
            (200, "duplicate".to_owned())
        ]
    );
    assert_eq!(
        Vec::from_iter(stack.event_keys().await),
        [
            "revel:demo:inout.stock:id:ev-1",
            "revel:demo:inout.stock:id:ev-2"
        ]
    );
}

/// A stock change as Revel sends it, from establishment `establishment`.
fn stock_request(instock: bool, establishment: &str) -> shared::http::ApiGatewayEvent {
    let kind = RevelEventType::StockChanged;
    let mut body: Value = serde_json::from_slice(&payload("stock-changed.json")).unwrap();
    body["instock"] = json!(instock);
    let body = serde_json::to_vec(&body).unwrap();
    let mut headers = local_stack::events::revel_headers(kind, DEMO_INSTANCE, DEMO_SECRET, &body);
    headers.retain(|(k, _)| k != "x-revel-establishment-id");
    headers.push(("x-revel-establishment-id".into(), establishment.into()));
    request_with(kind, &headers, &body)
}

#[tokio::test]
async fn stock_that_goes_out_in_and_out_again_ends_out_and_the_partner_hears_each_change_while_a_repeat_sends_nothing(
) {
    let stack = Stack::new().await;
    let partner = PartnerStandIn::start(204).await;
    let worker = stack.delivering_worker(&partner);
    let receiver = stack.receiver(RevelEventType::StockChanged);
    // Each change is processed and delivered before the next arrives.
    for (instock, step) in [
        (false, "out"),
        (false, "the same bytes again"),
        (true, "in"),
        (false, "out again"),
    ] {
        let (status, answer) = deliver(&receiver, stock_request(instock, "1")).await;
        expect_outcome(status, &answer, 200, "accepted");
        stack.settle().await;
        if step == "the same bytes again" {
            assert_eq!(stack.jobs_waiting().await, 0, "a repeat queues nothing");
        }
        stack.drain(&worker, 5).await;
    }
    let heard: Vec<(bool, u64)> = partner
        .deliveries()
        .await
        .iter()
        .map(|d| (d.state["instock"].as_bool().unwrap(), d.revision))
        .collect();
    assert_eq!(heard, [(false, 1), (true, 2), (false, 3)]);
    let entities = stack.entities().await;
    assert_eq!(entities.len(), 1);
    assert_eq!(entity_state(&entities[0])["instock"], false);
    assert_eq!(text(&entities[0], "revision"), "3");
    assert_eq!(stack.events().await.len(), 4, "every request is archived");
}

#[tokio::test]
async fn the_same_stock_change_from_two_establishments_is_kept_for_each() {
    let stack = Stack::new().await;
    let receiver = stack.receiver(RevelEventType::StockChanged);
    for establishment in ["1", "2"] {
        let (status, answer) = deliver(&receiver, stock_request(false, establishment)).await;
        expect_outcome(status, &answer, 200, "accepted");
    }
    stack.settle().await;
    let ids = stack.entity_ids().await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids[0].starts_with("establishment-1:") && ids[1].starts_with("establishment-2:"));
    assert_eq!(
        ids[0]["establishment-1:".len()..],
        ids[1]["establishment-2:".len()..]
    );
    assert_eq!(
        stack.jobs_waiting().await,
        2,
        "each establishment's stock is delivered"
    );
}

#[tokio::test]
async fn each_menu_push_is_archived_and_asks_for_a_catalog_pull() {
    let stack = Stack::new().await;
    let kind = RevelEventType::MenuUpdated;
    let receiver = stack.receiver(kind);
    let body = payload("menu-updated.json");
    for _ in 0..3 {
        let (status, answer) = deliver(&receiver, signed_request(kind, &body)).await;
        expect_outcome(status, &answer, 200, "accepted");
    }
    assert_eq!(stack.events().await.len(), 3);
    stack.settle().await;
    let jobs = stack.take_jobs().await;
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    let mut versions = BTreeSet::new();
    for job in &jobs {
        assert_eq!(job["job"], "catalog_pull");
        assert_eq!(job["instance"], "demo");
        versions.insert(job["version"].as_i64().expect("the push's receipt"));
    }
    assert_eq!(versions.len(), 3, "each pull dated by its own push");
}

#[tokio::test]
async fn the_ping_is_answered_and_nothing_is_written() {
    let stack = Stack::new().await;
    for kind in RevelEventType::ALL {
        let (status, answer) = deliver(
            &stack.receiver(kind),
            signed_request(kind, &payload("ping.json")),
        )
        .await;
        assert_eq!(
            (status, answer),
            (200, json!({"status": "ok", "ping": "pong"})),
            "{kind:?}"
        );
    }
    let unsigned = vec![("x-revel-instance".to_owned(), "demo".to_owned())];
    let kind = RevelEventType::OrderFinalized;
    assert_eq!(
        deliver(
            &stack.receiver(kind),
            request_with(kind, &unsigned, &payload("ping.json"))
        )
        .await
        .0,
        401
    );
    assert!(stack.events().await.is_empty());
    assert_eq!(stack.jobs_waiting().await, 0);
}

#[tokio::test]
async fn template_routes_match_the_receivers_and_the_events_table_streams_new_images() {
    let stack = Stack::new().await;
    // Every route of the template has a receiver.
    for route in &stack.template.routes {
        stack.receiver_for(&route.function);
    }
    let mut routes: Vec<(String, String, String)> = stack
        .template
        .routes
        .iter()
        .filter(|r| r.function.starts_with("Revel"))
        .map(|r| (r.function.clone(), r.method.clone(), r.path.clone()))
        .collect();
    routes.sort();
    let mut expected: Vec<(String, String, String)> = RevelEventType::ALL
        .iter()
        .map(|k| {
            (
                Kind::Revel(*k).function().logical_id.to_owned(),
                "POST".to_owned(),
                Kind::Revel(*k).function().route().to_owned(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(routes, expected);
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    for table in [&stack.config.events_table, &stack.config.entities_table] {
        let ttl = dynamodb
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .unwrap();
        let description = ttl.time_to_live_description.unwrap();
        assert_eq!(description.attribute_name(), Some("expires_at"), "{table}");
    }
    let events = dynamodb
        .describe_table()
        .table_name(&stack.config.events_table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let stream = events.stream_specification.expect("a stream");
    assert!(stream.stream_enabled);
    assert_eq!(
        stream.stream_view_type,
        Some(aws_sdk_dynamodb::types::StreamViewType::NewImage)
    );
}
