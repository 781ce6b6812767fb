//! The Revel receivers end to end: the real handlers and the real AWS SDK
//! against a local DynamoDB / SQS / Secrets Manager endpoint (moto), with
//! tables, queues and secret provisioned from template.yaml.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use integration_tests::*;
use serde_json::{json, Value};
use shared::function::Clients;
use shared::signature::sign;
use shared::sources::revel::RevelEventType;

fn customer(updated: &str, name: &str) -> Vec<u8> {
    json!({"uuid": "58126996-3fc8-4c87-b326-b4762783c863", "updated_date": updated, "first_name": name,
           "cc_last_4_digits": "4242", "cc_first_name": "Card", "email": "a@example.com"})
    .to_string()
    .into_bytes()
}

fn event_id(answer: &Value) -> String {
    answer["event_id"].as_str().expect("an event id").to_owned()
}

#[tokio::test]
async fn every_sample_event_is_accepted_stored_and_a_repeat_is_a_duplicate() {
    let stack = Stack::new().await;
    let dir = workspace_root().join("events");
    let mut seen = 0;
    for sample in local_stack::events::samples() {
        let local_stack::events::Target::Revel(kind) = sample.target else {
            continue;
        };
        let text = std::fs::read_to_string(dir.join(&sample.output)).expect("event file");
        let receiver = stack.receiver(kind);
        let (status, answer) =
            deliver(&receiver, lambda_http::request::from_str(&text).unwrap()).await;
        assert_eq!(status, 200, "{}: {answer}", sample.output);
        if sample.payload == "ping.json" {
            assert_eq!(answer, json!({"status": "ok", "ping": "pong"}));
            continue;
        }
        assert_eq!(answer["status"], "accepted", "{}: {answer}", sample.output);
        let record = stack.event(&event_id(&answer)).await.expect("stored");
        assert_eq!(text_of(&record, "status"), "done");
        assert_eq!(text_of(&record, "event_type"), kind.name());
        let (status, again) =
            deliver(&receiver, lambda_http::request::from_str(&text).unwrap()).await;
        expect_outcome(status, &again, 200, "duplicate");
        assert_eq!(event_id(&again), event_id(&answer));
        seen += 1;
    }
    assert_eq!(seen, 6);
    assert_eq!(
        stack.events().await.len(),
        6,
        "one record per event, none for the ping"
    );
    // customer.created and customer.updated describe the same customer.
    assert_eq!(stack.entities().await.len(), 5);
    assert_eq!(stack.jobs_waiting().await, 6);
}

fn text_of(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> String {
    text(item, name)
}

#[tokio::test]
async fn the_sample_events_are_exactly_what_the_generator_writes() {
    let dir = workspace_root().join("events");
    for sample in local_stack::events::samples() {
        let on_disk: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(&sample.output)).unwrap())
                .unwrap();
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
    assert_eq!(status, 200, "{answer}");
    let record = stack.event(&event_id(&answer)).await.unwrap();
    // The archive holds exactly the bytes received, compressed.
    assert_eq!(text(&record, "body_encoding"), "gzip");
    let Some(AttributeValue::B(blob)) = record.get("body") else {
        panic!("no body")
    };
    let archived = shared::store::ArchivedBody {
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

    let entity = stack
        .entity(&text(&record, "entity_key"))
        .await
        .expect("order entity");
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
    let jobs = stack.receive_jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["job"], "sync_entity");
    assert_eq!(jobs[0]["event_key"], event_id(&answer));
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
    assert!(stack.events().await.is_empty());
    assert!(stack.entities().await.is_empty());
    assert_eq!(stack.jobs_waiting().await, 0);
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
    let mut event = local_stack::events::http_api_event("POST", kind.route(), "", &headers, &body);
    event["body"] = Value::String(base64::engine::general_purpose::STANDARD.encode(&body));
    event["isBase64Encoded"] = Value::Bool(true);
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let (status, answer) = deliver(&stack.receiver(kind), request).await;
    expect_outcome(status, &answer, 200, "accepted");
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
async fn a_signed_body_that_is_not_understood_is_quarantined_not_lost() {
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
    }
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
async fn an_older_customer_update_arriving_late_leaves_the_newer_state() {
    let stack = Stack::new().await;
    let kind = RevelEventType::CustomerUpdated;
    let receiver = stack.receiver(kind);
    let (_, newer) = deliver(
        &receiver,
        signed_request(kind, &customer("2021-12-28T21:05:14.000001", "Newer")),
    )
    .await;
    let (status, older) = deliver(
        &receiver,
        signed_request(kind, &customer("2021-12-28T21:05:14", "Older")),
    )
    .await;
    expect_outcome(status, &older, 200, "accepted");
    let record = stack.event(&event_id(&newer)).await.unwrap();
    let entity = stack.entity(&text(&record, "entity_key")).await.unwrap();
    let state = entity_state(&entity);
    assert_eq!(state["first_name"], "Newer");
    assert!(state.get("cc_last_4_digits").is_none() && state.get("cc_first_name").is_none());
    assert_eq!(
        text(&entity, "revision"),
        "1",
        "the older event wrote nothing"
    );
    assert_eq!(text(&entity, "last_event_key"), event_id(&newer));
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
    let mut accepted = 0;
    for delivery in deliveries {
        let (status, answer) = delivery.await.unwrap();
        match (status, answer["status"].as_str(), answer["error"].as_str()) {
            (200, Some("accepted"), _) => accepted += 1,
            (200, Some("duplicate"), _) | (503, _, Some("in_progress")) => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(accepted, 1);
    let events = stack.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(text(&events[0], "status"), "done");
    let entities = stack.entities().await;
    assert_eq!(entities.len(), 1);
    assert_eq!(text(&entities[0], "revision"), "1");
    assert_eq!(stack.jobs_waiting().await, 1);
}

#[tokio::test]
async fn the_revel_event_id_header_is_the_idempotency_key_when_present() {
    let stack = Stack::new().await;
    let kind = RevelEventType::StockChanged;
    let receiver = stack.receiver(kind);
    let body = payload("stock-changed.json");
    for id in ["ev-1", "ev-2", "ev-1"] {
        let mut headers =
            local_stack::events::revel_headers(kind, DEMO_INSTANCE, DEMO_SECRET, &body);
        headers.push(("x-revel-event-id".into(), id.into()));
        deliver(&receiver, request_with(kind, &headers, &body)).await;
    }
    let mut keys: Vec<String> = stack
        .events()
        .await
        .iter()
        .map(|e| text(e, "event_key"))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "revel:demo:inout.stock:id:ev-1",
            "revel:demo:inout.stock:id:ev-2"
        ]
    );
}

#[tokio::test]
async fn a_burst_of_menu_pushes_is_archived_and_makes_one_catalog_pull() {
    let stack = Stack::new().await;
    let kind = RevelEventType::MenuUpdated;
    let receiver = stack.receiver(kind);
    let body = payload("menu-updated.json");
    for id in ["m-1", "m-2", "m-3"] {
        let mut headers =
            local_stack::events::revel_headers(kind, DEMO_INSTANCE, DEMO_SECRET, &body);
        headers.push(("x-revel-event-id".into(), id.into()));
        let (status, answer) = deliver(&receiver, request_with(kind, &headers, &body)).await;
        expect_outcome(status, &answer, 200, "accepted");
    }
    assert_eq!(stack.events().await.len(), 3);
    let jobs = stack.receive_jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["job"], "catalog_pull");
    assert_eq!(jobs[0]["instance"], "demo");
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

/// Clients whose DynamoDB (events, entities), SQS or Secrets Manager traffic
/// goes through its own fault proxy.
struct Faulty {
    events: FaultProxy,
    entities: FaultProxy,
    sqs: FaultProxy,
    secrets: FaultProxy,
}

impl Faulty {
    async fn new() -> Self {
        let endpoint = &local_aws().endpoint;
        Self {
            events: FaultProxy::start(endpoint).await,
            entities: FaultProxy::start(endpoint).await,
            sqs: FaultProxy::start(endpoint).await,
            secrets: FaultProxy::start(endpoint).await,
        }
    }

    async fn clients(&self) -> Clients {
        Clients {
            events: aws_sdk_dynamodb::Client::new(&self.events.sdk().await),
            entities: aws_sdk_dynamodb::Client::new(&self.entities.sdk().await),
            sqs: aws_sdk_sqs::Client::new(&self.sqs.sdk().await),
            secrets: aws_sdk_secretsmanager::Client::new(&self.secrets.sdk().await),
        }
    }
}

#[tokio::test]
async fn dynamodb_unreachable_answers_503_and_the_redelivery_completes_the_work() {
    let stack = Stack::new().await;
    let faulty = Faulty::new().await;
    let kind = RevelEventType::CustomerCreated;
    let receiver = stack.receiver_with(kind, faulty.clients().await, &stack.config);
    let body = payload("customer.json");

    faulty.events.set(Fault::Refuse);
    faulty.entities.set(Fault::Refuse);
    let (status, answer) = deliver(&receiver, signed_request(kind, &body)).await;
    assert_eq!((status, answer), (503, json!({"error": "unavailable"})));
    assert!(
        stack.events().await.is_empty(),
        "nothing stored, so nothing acknowledged"
    );

    faulty.events.set(Fault::None);
    faulty.entities.set(Fault::None);
    let (status, answer) = deliver(&receiver, signed_request(kind, &body)).await;
    expect_outcome(status, &answer, 200, "accepted");
    assert_eq!(
        text(&stack.event(&event_id(&answer)).await.unwrap(), "status"),
        "done"
    );
    assert_eq!(stack.entities().await.len(), 1);
    assert_eq!(stack.jobs_waiting().await, 1);
}

#[tokio::test]
async fn the_entities_table_failing_after_the_archive_write_is_finished_by_the_redelivery() {
    let stack = Stack::new().await;
    let faulty = Faulty::new().await;
    let kind = RevelEventType::RewardCardCreated;
    let receiver = stack.receiver_with(kind, faulty.clients().await, &stack.config);
    let body = payload("rewardcard-created.json");

    faulty.entities.set(Fault::Refuse);
    let (status, _) = deliver(&receiver, signed_request(kind, &body)).await;
    assert_eq!(status, 503);
    let events = stack.events().await;
    assert_eq!(
        text(&events[0], "status"),
        "processing",
        "stored, not finished"
    );
    assert_eq!(
        text(&events[0], "lease_until"),
        "0",
        "the lease was released for the redelivery"
    );

    faulty.entities.set(Fault::None);
    let (status, answer) = deliver(&receiver, signed_request(kind, &body)).await;
    expect_outcome(status, &answer, 200, "accepted");
    let (status, answer) = deliver(&receiver, signed_request(kind, &body)).await;
    expect_outcome(status, &answer, 200, "duplicate");
    assert_eq!(text(&stack.entities().await[0], "revision"), "1");
    assert_eq!(
        stack.jobs_waiting().await,
        1,
        "the job sent by the failed delivery was not sent twice"
    );
}

#[tokio::test]
async fn sqs_unreachable_loses_no_job_the_redelivery_sends_it_once() {
    let stack = Stack::new().await;
    let faulty = Faulty::new().await;
    let kind = RevelEventType::OrderFinalized;
    let receiver = stack.receiver_with(kind, faulty.clients().await, &stack.config);
    let body = payload("order-finalized.json");

    faulty.sqs.set(Fault::Refuse);
    let (status, _) = deliver(&receiver, signed_request(kind, &body)).await;
    assert_eq!(status, 503, "no 2xx while the follow-up job is not queued");
    assert_eq!(stack.jobs_waiting().await, 0);

    faulty.sqs.set(Fault::None);
    let (status, answer) = deliver(&receiver, signed_request(kind, &body)).await;
    expect_outcome(status, &answer, 200, "accepted");
    assert_eq!(stack.jobs_waiting().await, 1);
    assert_eq!(
        text(&stack.entities().await[0], "revision"),
        "1",
        "the entity was written once"
    );
}

#[tokio::test]
async fn secrets_manager_unreachable_answers_503_not_401() {
    let stack = Stack::new().await;
    let faulty = Faulty::new().await;
    faulty.secrets.set(Fault::Refuse);
    let kind = RevelEventType::CustomerCreated;
    let receiver = stack.receiver_with(kind, faulty.clients().await, &stack.config);
    let (status, answer) =
        deliver(&receiver, signed_request(kind, &payload("customer.json"))).await;
    assert_eq!((status, answer), (503, json!({"error": "unavailable"})));
    faulty.secrets.set(Fault::None);
    let (status, _) = deliver(&receiver, signed_request(kind, &payload("customer.json"))).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_delivery_that_dies_after_the_archive_write_is_finished_once_its_lease_runs_out() {
    let stack = Stack::new().await;
    let faulty = Faulty::new().await;
    let mut config = stack.config.clone();
    config.settings.processing_lease = Duration::from_secs(1);
    config.settings.duplicate_wait = Duration::from_millis(300);
    let kind = RevelEventType::CustomerUpdated;
    let receiver = stack.receiver_with(kind, faulty.clients().await, &config);
    let body = payload("customer.json");

    // The entities table hangs; the invocation is killed mid-flight, holding its lease.
    faulty.entities.set(Fault::Blackhole);
    let killed = tokio::time::timeout(
        Duration::from_millis(700),
        deliver(&receiver, signed_request(kind, &body)),
    )
    .await;
    assert!(
        killed.is_err(),
        "the delivery should still have been waiting"
    );
    assert_eq!(text(&stack.events().await[0], "status"), "processing");
    faulty.entities.set(Fault::None);

    // While the lease holds, a redelivery can't finish it and asks for a retry.
    let (status, answer) = deliver(&receiver, signed_request(kind, &body)).await;
    assert_eq!((status, answer), (503, json!({"error": "in_progress"})));

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, answer) = deliver(&receiver, signed_request(kind, &body)).await;
    expect_outcome(status, &answer, 200, "accepted");
    assert_eq!(text(&stack.events().await[0], "status"), "done");
    assert_eq!(text(&stack.entities().await[0], "revision"), "1");
    assert_eq!(stack.jobs_waiting().await, 1);
}

#[tokio::test]
async fn template_routes_match_the_receivers_and_its_tables_have_ttl() {
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
                k.logical_id().to_owned(),
                "POST".to_owned(),
                k.route().to_owned(),
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
}
