//! The partner system's (VinesOS) webhooks end to end: verified, stored once,
//! processed by the real stream processor (`Stack::settle`), applied to a
//! local stand-in of Revel's API exactly once by the jobs worker, and the
//! echo of that change (Revel's own webhook for it) not sent back to the
//! partner.

use integration_tests::*;
use local_stack::events::{request_for, resign, routed_event, Target};
use serde_json::{json, Value};
use shared::sources::revel::RevelEventType;
use shared::sources::vinesos::VinesOsEvent;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REVEL_UUID: &str = "58126996-3fc8-4c87-b326-b4762783c863";

/// The sample of `event`, signed now, as its route receives it.
fn vinesos_request(event: VinesOsEvent) -> lambda_http::Request {
    let body = payload(&format!(
        "vinesos-{}.json",
        &event.crate_name()["vinesos-".len()..]
    ));
    let (route, path, headers) = request_for(Target::VinesOs(event), &body);
    let signed = resign(routed_event("POST", &route, &path, "", &headers, &body));
    lambda_http::request::from_str(&signed.to_string()).unwrap()
}

fn revel_customer(updated: &str) -> Vec<u8> {
    json!({"id": 2192, "uuid": REVEL_UUID, "third_party_id": "vinesos:VOS-C-501", "first_name": "Ann", "updated_date": updated})
        .to_string()
        .into_bytes()
}

async fn lookup_finds(server: &MockServer, objects: Value, times: Option<u64>) {
    let mock = Mock::given(method("GET"))
        .and(path("/demo/resources/Customer/"))
        .and(query_param("third_party_id", "vinesos:VOS-C-501"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"meta": {"next": null}, "objects": objects})),
        );
    match times {
        Some(n) => mock.up_to_n_times(n).with_priority(1).mount(server).await,
        None => mock.mount(server).await,
    }
}

async fn requests(server: &MockServer, verb: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == verb)
        .count()
}

#[tokio::test]
async fn a_partner_customer_is_applied_to_revel_once_and_its_echo_is_not_sent_back() {
    let stack = Stack::new().await.with_api_credentials().await;
    let revel = MockServer::start().await;
    lookup_finds(&revel, json!([]), None).await;
    let created: Value =
        serde_json::from_slice(&revel_customer("2026-11-24T10:31:00.123456")).unwrap();
    Mock::given(method("POST"))
        .and(path("/demo/resources/Customer/"))
        .respond_with(ResponseTemplate::new(201).set_body_json(created))
        .mount(&revel)
        .await;
    let partner = PartnerStandIn::start(204).await;
    let worker = stack.worker(fast_api(&revel.uri()), 100, Some(partner.downstream()));

    let receiver = stack.receiver_for(VinesOsEvent::CustomerCreated.logical_id());
    let (status, first) = deliver(&receiver, vinesos_request(VinesOsEvent::CustomerCreated)).await;
    expect_outcome(status, &first, 200, "accepted");
    let (status, again) = deliver(&receiver, vinesos_request(VinesOsEvent::CustomerCreated)).await;
    expect_outcome(status, &again, 200, "duplicate");
    stack.settle().await;
    stack.drain(&worker, 5).await;
    assert_eq!(requests(&revel, "POST").await, 1, "created once in Revel");

    // Re-running the job (a redelivered message) applies nothing again.
    stack
        .send_job(
            &json!({"job": "apply_to_revel", "source": "vinesos", "instance": "demo", "event_type": "vinesos.customer.created",
                    "event_key": event_id(&first), "entity_key": "vinesos:demo:vos_customer:VOS-C-501"})
            .to_string(),
            "vinesos:demo:vos_customer:VOS-C-501",
            "rerun",
        )
        .await;
    stack.drain(&worker, 5).await;
    assert_eq!(
        requests(&revel, "POST").await + requests(&revel, "PATCH").await,
        1
    );

    // Revel's webhook for the change the bundle made is not sent back...
    let revel_receiver = stack.receiver(RevelEventType::CustomerUpdated);
    let echo = revel_customer("2026-11-24T10:31:00.123456");
    let (status, _) = deliver(
        &revel_receiver,
        signed_request(RevelEventType::CustomerUpdated, &echo),
    )
    .await;
    assert_eq!(status, 200);
    stack.settle().await;
    stack.drain(&worker, 5).await;
    assert!(partner.attempts().await.is_empty(), "no ping-pong");

    // ...but a later change made in Revel itself is.
    let genuine = revel_customer("2026-11-24T11:00:00");
    deliver(
        &revel_receiver,
        signed_request(RevelEventType::CustomerUpdated, &genuine),
    )
    .await;
    stack.settle().await;
    stack.drain(&worker, 5).await;
    let heard = partner.deliveries().await;
    assert_eq!(heard.len(), 1);
    assert_eq!(
        heard[0].version,
        shared::sources::parse_timestamp_micros("2026-11-24T11:00:00").unwrap()
    );
}

#[tokio::test]
async fn a_create_whose_outcome_is_unknown_is_looked_up_before_it_is_tried_again() {
    let stack = Stack::new().await.with_api_credentials().await;
    let revel = MockServer::start().await;
    // The first lookup finds nothing; after the failed create, Revel has it.
    lookup_finds(&revel, json!([]), Some(1)).await;
    let existing: Value = serde_json::from_slice(&revel_customer("2026-11-24T10:31:00")).unwrap();
    lookup_finds(&revel, json!([existing.clone()]), None).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&revel)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/demo/resources/Customer/2192/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(existing))
        .mount(&revel)
        .await;
    let worker = stack.worker(fast_api(&revel.uri()), 100, None);
    let receiver = stack.receiver_for(VinesOsEvent::CustomerCreated.logical_id());
    let (status, _) = deliver(&receiver, vinesos_request(VinesOsEvent::CustomerCreated)).await;
    assert_eq!(status, 200);
    stack.settle().await;
    stack.drain(&worker, 5).await;
    assert_eq!(
        requests(&revel, "POST").await,
        1,
        "a create that may have happened is never repeated blindly"
    );
    assert_eq!(
        requests(&revel, "PATCH").await,
        1,
        "the retry found it and updated it"
    );
    assert_eq!(stack.jobs_waiting().await, 0);
}

#[tokio::test]
async fn a_forged_or_replayed_partner_webhook_is_refused_and_nothing_is_stored() {
    let stack = Stack::new().await;
    let event = VinesOsEvent::MemberUpdated;
    let receiver = stack.receiver_for(event.logical_id());
    let body = payload("vinesos-member-updated.json");
    let (route, path, headers) = request_for(Target::VinesOs(event), &body);
    // Signed long ago (the sample's own signing time): a replay.
    let stale = routed_event("POST", &route, &path, "", &headers, &body);
    let (status, _) = deliver(
        &receiver,
        lambda_http::request::from_str(&stale.to_string()).unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    // Signed now, then changed.
    let mut forged = resign(stale);
    forged["body"] = Value::String(
        String::from_utf8(body)
            .unwrap()
            .replace("Reserve", "Grand Cru"),
    );
    let (status, _) = deliver(
        &receiver,
        lambda_http::request::from_str(&forged.to_string()).unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(stack.events().await.is_empty());
}

#[tokio::test]
async fn every_partner_sample_is_stored_with_one_request_and_queued_once_to_be_applied() {
    let stack = Stack::new().await;
    let counted = stack.counted_receivers().await;
    for event in VinesOsEvent::ALL {
        let receiver = counted.receiver_for(event.logical_id());
        let (status, first, calls) = counted.deliver(&receiver, vinesos_request(event)).await;
        expect_outcome(status, &first, 200, "accepted");
        assert_one_put(&calls, event.logical_id());
        let (status, again, calls) = counted.deliver(&receiver, vinesos_request(event)).await;
        expect_outcome(status, &again, 200, "duplicate");
        assert_one_put(&calls, &format!("{} repeated", event.logical_id()));
        assert_eq!(event_id(&again), event_id(&first));
    }
    assert_eq!(stack.events().await.len(), VinesOsEvent::ALL.len());
    assert_eq!(
        stack.jobs_waiting().await,
        0,
        "nothing before the processor"
    );
    stack.settle().await;
    // Each change is newer than the one before it for its entity: each
    // queues its own job, and each entity has one.
    let jobs = stack.take_jobs().await;
    let mut applied: Vec<String> = jobs
        .iter()
        .map(|j| {
            assert_eq!(j["job"], "apply_to_revel", "{j}");
            j["event_key"].as_str().expect("an event").to_owned()
        })
        .collect();
    applied.sort();
    assert_eq!(
        applied,
        Vec::from_iter(stack.event_keys().await),
        "one job per partner change"
    );
    let named: std::collections::BTreeSet<&str> = jobs
        .iter()
        .filter_map(|j| j["entity_key"].as_str())
        .collect();
    assert_eq!(named.len(), stack.entities().await.len());
}
