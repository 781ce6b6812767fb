//! The partner system's (VinesOS) webhooks end to end: verified, stored once,
//! applied to a local stand-in of Revel's API exactly once, and the echo of
//! that change (Revel's own webhook for it) not sent back to the partner.

use std::time::Duration;

use integration_tests::*;
use local_stack::events::{request_for, resign, routed_event, Target};
use serde_json::{json, Value};
use shared::downstream::{Downstream, SigningSecret};
use shared::sources::revel::RevelEventType;
use shared::sources::vinesos::VinesOsEvent;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PARTNER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
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
    let partner = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&partner)
        .await;
    let downstream = Downstream::new(
        partner.uri(),
        SigningSecret::parse(PARTNER_SECRET).unwrap(),
        Duration::from_secs(3),
    );
    let worker = stack.worker(fast_api(&revel.uri()), 100, Some(downstream));

    let receiver = stack.receiver_for(VinesOsEvent::CustomerCreated.logical_id());
    let (status, first) = deliver(&receiver, vinesos_request(VinesOsEvent::CustomerCreated)).await;
    expect_outcome(status, &first, 200, "accepted");
    let (status, again) = deliver(&receiver, vinesos_request(VinesOsEvent::CustomerCreated)).await;
    expect_outcome(status, &again, 200, "duplicate");
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
    stack.drain(&worker, 5).await;
    assert_eq!(
        partner.received_requests().await.unwrap().len(),
        0,
        "no ping-pong"
    );

    // ...but a later change made in Revel itself is.
    let genuine = revel_customer("2026-11-24T11:00:00");
    deliver(
        &revel_receiver,
        signed_request(RevelEventType::CustomerUpdated, &genuine),
    )
    .await;
    stack.drain(&worker, 5).await;
    assert_eq!(partner.received_requests().await.unwrap().len(), 1);
}

fn event_id(answer: &Value) -> String {
    answer["event_id"].as_str().unwrap().to_owned()
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
async fn every_partner_sample_is_accepted_and_queued_to_be_applied() {
    let stack = Stack::new().await;
    for event in VinesOsEvent::ALL {
        let (status, answer) = deliver(
            &stack.receiver_for(event.logical_id()),
            vinesos_request(event),
        )
        .await;
        expect_outcome(status, &answer, 200, "accepted");
    }
    assert_eq!(stack.events().await.len(), 5);
    let jobs = stack.receive_jobs().await;
    assert_eq!(jobs.len(), 5);
    assert!(
        jobs.iter().all(|j| j["job"] == "apply_to_revel"),
        "{jobs:?}"
    );
}
