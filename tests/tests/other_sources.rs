//! WineSitting and the booking platform end to end: their real handlers and
//! the real SDK against the local AWS endpoint, provisioned from template.yaml;
//! entities kept by the real stream processor (`Stack::settle`).

use integration_tests::*;
use local_stack::events::{request_for, routed_event, samples, Route};
use ports::queue::{JobKind, JobMessage};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use vendors::booking::BookingFamily;
use vendors::functions::Kind;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn request(
    route: &Route,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> shared::http::ApiGatewayEvent {
    integration_tests::api_gateway_event(
        &routed_event("POST", route, path, "", headers, body).to_string(),
    )
    .unwrap()
}

fn booking_body(event: &str, trigger: &str, at: &str, id: &str) -> Vec<u8> {
    json!({"notification": {"event": event, "trigger": trigger, "occurred_at": at}, "data": {"id": id, "name": trigger}})
        .to_string()
        .into_bytes()
}

fn signed_booking(family: BookingFamily, body: &[u8]) -> shared::http::ApiGatewayEvent {
    let (route, path, headers) = request_for(Kind::Booking(family), body);
    request(&route, &path, &headers, body)
}

#[tokio::test]
async fn every_sample_of_the_other_platforms_is_stored_with_one_request_and_its_repeat_is_a_duplicate_of_one_request(
) {
    let stack = Stack::new().await;
    let counted = stack.counted_receivers().await;
    let mut stored = BTreeSet::new();
    for sample in samples()
        .into_iter()
        .filter(|s| matches!(s.kind, Kind::WineSitting | Kind::Booking(_)))
    {
        let receiver = counted.receiver_for(sample.kind.function().logical_id);
        let (status, first, calls) = counted.deliver(&receiver, sample_request(&sample)).await;
        expect_outcome(status, &first, 200, "accepted");
        assert_one_put(&calls, &sample.output);
        let (status, again, calls) = counted.deliver(&receiver, sample_request(&sample)).await;
        expect_outcome(status, &again, 200, "duplicate");
        assert_one_put(&calls, &format!("{} repeated", sample.output));
        assert_eq!(event_id(&again), event_id(&first));
        stored.insert(event_id(&first));
    }
    assert_eq!(stored.len(), 11, "WineSitting and ten booking families");
    assert_eq!(stack.event_keys().await, stored, "one record per event");
    stack.settle().await;
    let kept = stack.entity_keys().await;
    assert_eq!(
        kept,
        stack.entity_keys_named_by_events().await,
        "one entity per entity the events name"
    );
    assert_eq!(kept.len(), 11);
    assert_eq!(
        stack.jobs_waiting().await,
        11,
        "each change is queued for the partner"
    );
}

#[tokio::test]
async fn winesitting_and_booking_changes_reach_the_partner_signed_in_order_per_entity_unless_switched_off(
) {
    let stack = Stack::new().await;
    let partner = PartnerStandIn::start(204).await;
    let worker = stack.delivering_worker(&partner);
    let bookings = stack.receiver_for(Kind::Booking(BookingFamily::Bookings).function().logical_id);
    let send_booking = |trigger: &'static str, at: &'static str| {
        let body = booking_body("Bookings", trigger, at, "B-1");
        deliver(&bookings, signed_booking(BookingFamily::Bookings, &body))
    };
    let (route, path, headers) = request_for(Kind::WineSitting, &payload("winesitting-order.json"));
    let winesitting = stack.receiver_for(Kind::WineSitting.function().logical_id);
    let (status, _) = deliver(
        &winesitting,
        request(&route, &path, &headers, &payload("winesitting-order.json")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        send_booking("Creation", "2026-11-24T10:00:00Z").await.0,
        200
    );
    stack.settle().await;
    stack.drain(&worker, 10).await;
    assert_eq!(
        send_booking("Cancellation", "2026-11-24T11:00:00Z").await.0,
        200
    );
    stack.settle().await;
    stack.drain(&worker, 10).await;

    let requests = partner.server.received_requests().await.unwrap();
    let bodies: Vec<Value> = requests.iter().map(verified).collect();
    let read: Vec<(&str, &str, &str, u64, &Value)> = bodies
        .iter()
        .map(|b| {
            let data = &b["data"];
            (
                b["type"].as_str().unwrap(),
                data["source"].as_str().unwrap(),
                data["id"].as_str().unwrap(),
                data["revision"].as_u64().unwrap(),
                &data["state"]["deleted"],
            )
        })
        .collect();
    let mut winesitting_first = read.clone();
    winesitting_first.sort_by_key(|(kind, ..)| !kind.starts_with("winesitting"));
    assert_eq!(
        winesitting_first,
        [
            (
                "winesitting.order.changed",
                "winesitting",
                "WS-10482",
                1,
                &Value::Null
            ),
            (
                "booking.booking.changed",
                "booking",
                "B-1",
                1,
                &json!(false)
            ),
            ("booking.booking.changed", "booking", "B-1", 2, &json!(true)),
        ],
        "each source's envelope; the booking's changes in order, the cancellation last"
    );
    assert_eq!(
        bodies[0]["data"]["instance"], DEMO_INSTANCE,
        "the account the change came from"
    );

    // The merchant turns the booking platform's deliveries off: its changes
    // are kept, and nothing more reaches the partner.
    let off = pipeline::config::Config::from_lookup(|name| {
        if name == "DELIVER_BOOKING_EVENTS" {
            Some("false".to_owned())
        } else {
            stack.provisioned.lookup()(name)
        }
    })
    .unwrap();
    assert_eq!(
        send_booking("Amendment", "2026-11-24T12:00:00Z").await.0,
        200
    );
    stack
        .settle_with(&shared::function::processor(&off, &stack.clients()), 20)
        .await;
    assert_eq!(
        stack.jobs_waiting().await,
        0,
        "nothing queued for the partner"
    );
    let key = domain::ids::EntityKey::parse("booking:demo:booking:B-1").unwrap();
    let revisions = stack.entity_revisions().await;
    assert_eq!(revisions[key.as_str()], "3", "the amendment is kept");
    stack.drain(&worker, 10).await;
    assert_eq!(partner.server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_wrong_winesitting_token_or_account_is_refused_and_nothing_is_written() {
    let stack = Stack::new().await;
    let receiver = stack.receiver_for(Kind::WineSitting.function().logical_id);
    let body = payload("winesitting-order.json");
    let route = Route {
        template: Kind::WineSitting.function().route().to_owned(),
    };
    for path in [
        format!("/winesitting/{DEMO_INSTANCE}/not-the-token"),
        format!(
            "/winesitting/stranger/{}",
            local_stack::DEMO_WINESITTING_TOKEN
        ),
        format!(
            "/winesitting/{DEMO_INSTANCE}/{}x",
            local_stack::DEMO_WINESITTING_TOKEN
        ),
    ] {
        let (status, answer) = deliver(&receiver, request(&route, &path, &[], &body)).await;
        assert_eq!(
            (status, answer),
            (401, json!({"error": "unauthorized"})),
            "{path}"
        );
    }
    assert!(stack.events().await.is_empty());
    assert!(stack.entities().await.is_empty());
}

#[tokio::test]
async fn a_booking_signature_over_another_body_or_no_signature_is_refused() {
    let stack = Stack::new().await;
    let family = BookingFamily::Bookings;
    let receiver = stack.receiver_for(Kind::Booking(family).function().logical_id);
    let body = payload("booking-bookings.json");
    let (route, path, mut headers) = request_for(Kind::Booking(family), &body);
    let mut tampered = body.clone();
    tampered[30] ^= 1;
    assert_eq!(
        deliver(&receiver, request(&route, &path, &headers, &tampered))
            .await
            .0,
        401
    );
    headers.retain(|(k, _)| k != local_stack::DEMO_BOOKING_HEADER);
    assert_eq!(
        deliver(&receiver, request(&route, &path, &headers, &body))
            .await
            .0,
        401
    );
    assert!(stack.events().await.is_empty());
}

#[tokio::test]
async fn an_account_without_a_secret_uses_its_url_token() {
    let stack = Stack::new().await;
    let family = BookingFamily::Customers;
    let receiver = stack.receiver_for(Kind::Booking(family).function().logical_id);
    let body = booking_body("Customers", "Creation", "2026-11-24T10:00:00Z", "CU-1");
    let route = Route {
        template: Kind::Booking(family).function().routes[1].to_owned(),
    };
    let (status, answer) = deliver(
        &receiver,
        request(
            &route,
            "/booking/tokened/customers/tokened-booking-token",
            &[],
            &body,
        ),
    )
    .await;
    expect_outcome(status, &answer, 200, "accepted");
    let (status, _) = deliver(
        &receiver,
        request(
            &route,
            "/booking/tokened/customers/guessed-token",
            &[],
            &body,
        ),
    )
    .await;
    assert_eq!(status, 401);
}

/// Delivers each body in turn, each processed before the next arrives, and
/// returns the state of the one entity they change.
async fn kept_after(family: BookingFamily, bodies: &[&Vec<u8>]) -> Value {
    let stack = Stack::new().await;
    let receiver = stack.receiver_for(Kind::Booking(family).function().logical_id);
    for body in bodies {
        let (status, answer) = deliver(&receiver, signed_booking(family, body)).await;
        expect_outcome(status, &answer, 200, "accepted");
        stack.settle().await;
    }
    assert_eq!(
        stack.events().await.len(),
        bodies.len(),
        "every event is archived"
    );
    let entities = stack.entities().await;
    assert_eq!(entities.len(), 1);
    entity_state(&entities[0])
}

#[tokio::test]
async fn a_removal_is_a_tombstone_that_a_late_older_amendment_does_not_resurrect() {
    let family = BookingFamily::Customers;
    let removed = booking_body("Customers", "Removal", "2026-11-24T12:00:00Z", "CU-9");
    let late = booking_body("Customers", "Amendment", "2026-11-24T11:00:00Z", "CU-9");
    let state = kept_after(family, &[&removed, &late]).await;
    assert_eq!(state["deleted"], true, "the tombstone stands: {state}");
}

#[tokio::test]
async fn an_amendment_and_a_cancellation_in_the_same_second_end_cancelled_in_either_order() {
    let family = BookingFamily::Bookings;
    let at = "2026-11-24T12:00:00Z";
    let amended = booking_body("Bookings", "Amendment", at, "BK-7");
    let cancelled = booking_body("Bookings", "Cancellation", at, "BK-7");
    let cancelled_last = kept_after(family, &[&amended, &cancelled]).await;
    let cancelled_first = kept_after(family, &[&cancelled, &amended]).await;
    assert_eq!(cancelled_last, cancelled_first, "decided, not raced");
    assert_eq!(cancelled_last["deleted"], true, "{cancelled_last}");
}

#[tokio::test]
async fn a_different_booking_body_under_an_existing_key_is_kept_as_a_conflict() {
    let stack = Stack::new().await;
    let family = BookingFamily::Bookings;
    let receiver = stack.receiver_for(Kind::Booking(family).function().logical_id);
    let body = payload("booking-bookings.json");
    let mut other: Value = serde_json::from_slice(&body).unwrap();
    other["data"]["guests"] = json!(5);
    let other = serde_json::to_vec(&other).unwrap();
    let (status, first) = deliver(&receiver, signed_booking(family, &body)).await;
    expect_outcome(status, &first, 200, "accepted");
    let (status, conflict) = deliver(&receiver, signed_booking(family, &other)).await;
    expect_outcome(status, &conflict, 200, "conflict");
    assert_eq!(conflict["conflict_of"], event_id(&first).as_str());
    let record = stack.event(&event_id(&conflict)).await.expect("kept");
    assert_eq!(text(&record, "conflict_of"), event_id(&first));
    let (status, again) = deliver(&receiver, signed_booking(family, &other)).await;
    expect_outcome(status, &again, 200, "duplicate");
    assert_eq!(event_id(&again), event_id(&conflict));
    assert_eq!(stack.events().await.len(), 2);
}

#[tokio::test]
async fn the_winesitting_repair_poll_finds_the_order_whose_webhook_was_lost() {
    let stack = Stack::new().await;
    let api = MockServer::start().await;
    let delivered = payload("winesitting-order.json");
    let delivered_order: Value =
        serde_json::from_slice::<Value>(&delivered).unwrap()["object"].clone();
    let lost =
        json!({"id": "WS-2", "status": "IN_PREPARATION", "updated_at": "2026-11-24T10:02:00Z"});
    Mock::given(method("GET"))
        .and(path("/orders"))
        .and(query_param("status", "in_progress"))
        .and(header("authorization", "Bearer demo-winesitting-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([delivered_order, lost])))
        .mount(&api)
        .await;
    let receiver = stack.receiver_for(Kind::WineSitting.function().logical_id);
    let (route, path, headers) = request_for(Kind::WineSitting, &delivered);
    let (status, answer) = deliver(&receiver, request(&route, &path, &headers, &delivered)).await;
    expect_outcome(status, &answer, 200, "accepted");
    // Processed within seconds of its answer; the poll runs every 30 minutes.
    stack.settle().await;

    let mut sync = stack.sync_config(100);
    sync.winesitting_api_base_url = api.uri();
    let clients = stack.clients();
    let revel = shared::function::revel_source(&stack.config, &clients.secrets);
    let worker = shared::function::jobs_worker(
        &stack.config,
        &sync,
        &clients,
        revel,
        fast_api("http://127.0.0.1:9"),
        None,
    );
    let job = JobMessage {
        job: JobKind::WineSittingRepair,
        source: "winesitting".into(),
        instance: DEMO_INSTANCE.into(),
        event_type: "winesitting_repair".into(),
        event_key: "schedule:winesitting_repair:demo:test".into(),
        entity_key: None,
        version: None,
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    worker.run(&job, deadline).await.unwrap();
    let repaired: Vec<String> = stack
        .events()
        .await
        .iter()
        .filter(|e| text(e, "origin") == "reconciliation")
        .map(|e| text(e, "entity_key"))
        .collect();
    assert_eq!(
        repaired,
        ["winesitting:demo:order:WS-2"],
        "stored through the receiver"
    );
    stack.settle().await;
    assert_eq!(stack.entity_ids().await, ["WS-10482", "WS-2"]);
    assert_eq!(
        stack.events().await.len(),
        2,
        "only the lost order was ingested"
    );
    worker.run(&job, deadline).await.unwrap();
    assert_eq!(
        stack.events().await.len(),
        2,
        "a second poll repairs nothing"
    );
}
