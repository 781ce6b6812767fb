//! The partner system's (VinesOS) webhooks end to end: verified, stored once,
//! processed by the real stream processor (`Stack::settle`), applied to a
//! local stand-in of Revel's API exactly once by the jobs worker, and the
//! echo of that change (Revel's own webhook for it) not sent back to the
//! partner. Products and events wait for the end-of-day batch
//! (`partner_catalog`); customers first created in Revel are found by email
//! or phone and linked; orders carry their items and payments.

use domain::ids::InstanceName;
use domain::sources::EventKind;
use integration_tests::*;
use local_stack::events::{request_for, resign, routed_event};
use local_stack::fake_revel::{self, Fixtures};
use ports::queue::{JobKind, QueuedJob};
use serde_json::{json, Value};
use vendors::functions::Kind;
use vendors::revel::RevelEventType;
use vendors::vinesos::VinesOsEvent;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REVEL_UUID: &str = "58126996-3fc8-4c87-b326-b4762783c863";

/// The sample payload of `event`.
fn sample(event: VinesOsEvent) -> Value {
    let name = format!(
        "vinesos-{}.json",
        &Kind::VinesOs(event).function().crate_name["vinesos-".len()..]
    );
    serde_json::from_slice(&payload(&name)).unwrap()
}

/// `body` as `event`'s route receives it, signed now.
fn signed_vinesos(event: VinesOsEvent, body: &Value) -> shared::http::ApiGatewayEvent {
    signed_bytes(event, &serde_json::to_vec(body).unwrap())
}

/// `body` as `event`'s route receives it, signed now; held to the partner's
/// contract (docs/asyncapi.yaml) first, as the partner sends it.
fn signed_bytes(event: VinesOsEvent, body: &[u8]) -> shared::http::ApiGatewayEvent {
    let (route, path, headers) = request_for(Kind::VinesOs(event), body);
    let signed = resign(routed_event("POST", &route, &path, "", &headers, body));
    integration_tests::contract::assert_request(&signed);
    integration_tests::api_gateway_event(&signed.to_string()).unwrap()
}

/// The sample of `event` exactly as its file holds it, signed now, as its
/// route receives it.
fn vinesos_request(event: VinesOsEvent) -> shared::http::ApiGatewayEvent {
    let body = payload(&format!(
        "vinesos-{}.json",
        &Kind::VinesOs(event).function().crate_name["vinesos-".len()..]
    ));
    signed_bytes(event, &body)
}

/// Delivers `body` to `event`'s receiver and expects it stored.
async fn post(stack: &Stack, event: VinesOsEvent, body: &Value) {
    let receiver = stack.receiver_for(Kind::VinesOs(event).function().logical_id);
    let (status, answer) = deliver(&receiver, signed_vinesos(event, body)).await;
    expect_outcome(status, &answer, 200, "accepted");
}

/// Posts the partner's sample of `event`.
async fn post_sample(stack: &Stack, event: VinesOsEvent) {
    post(stack, event, &sample(event)).await;
}

/// A newer change of the sample of `event`: its data changed by `change`.
fn newer(event: VinesOsEvent, change: impl FnOnce(&mut Value)) -> Value {
    let mut body = sample(event);
    body["id"] = json!(format!("{}-newer", body["id"].as_str().unwrap()));
    body["occurred_at"] = json!("2026-11-24T18:00:00Z");
    change(&mut body["data"]);
    body
}

/// The demo instance, whose Revel is the local stand-in (its fixtures and
/// what was written since): its credentials in place, and a worker calling it.
async fn with_revel_stand_in(
    daily_budget: u64,
) -> (Stack, Fixtures, pipeline::worker::Worker, String) {
    let stack = Stack::new().await;
    stack
        .put_secrets(&local_stack::demo_revel_secret_document())
        .await;
    let revel = Fixtures::new(fake_revel::default_dir());
    let url = fake_revel::start(revel.clone()).await.unwrap();
    let worker = stack.worker(fast_api(&url), daily_budget, None);
    (stack, revel, worker, url)
}

/// Queues the end-of-day `partner_catalog` job of the demo instance for
/// the tick `window`, as the scheduler does.
async fn end_of_day(stack: &Stack, window: &str) {
    let demo = InstanceName::parse(DEMO_INSTANCE).unwrap();
    shared::function::jobs_queue(&stack.config, &stack.clients())
        .enqueue(&QueuedJob::scheduled(
            JobKind::PartnerCatalog,
            vendors::revel::NAME.as_str(),
            &demo,
            window,
        ))
        .await
        .unwrap();
}

/// What was posted goes through the processor and the worker (applied at
/// once, or noted pending), then the end-of-day batch of `window` runs.
async fn through_end_of_day(stack: &Stack, worker: &pipeline::worker::Worker, window: &str) {
    stack.settle().await;
    stack.drain(worker, 5).await;
    end_of_day(stack, window).await;
    stack.drain(worker, 5).await;
}

/// The objects of `resource` in the stand-in whose `field` is `value`.
fn in_revel(revel: &Fixtures, resource: &str, field: &str, value: &str) -> Vec<Value> {
    revel
        .objects(resource)
        .into_iter()
        .filter(|o| o[field] == value)
        .collect()
}

/// Revel's products linked to the partner's sample product, the rosé.
fn partner_rose(revel: &Fixtures) -> Vec<Value> {
    in_revel(
        revel,
        "Product",
        "third_party_id",
        "vinesos:VOS-P-ROSE-2023",
    )
}

/// Whether the partner entity `key` has its current revision applied.
async fn applied(stack: &Stack, key: &str) -> bool {
    let entity = stack.entity(key).await.expect("the entity is kept");
    entity.contains_key("delivered_revision")
        && text(&entity, "delivered_revision") == text(&entity, "revision")
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

/// Every other lookup of a customer (by email, by phone) finds nothing.
async fn other_lookups_find_nothing(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/demo/resources/Customer/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"meta": {"next": null}, "objects": []})),
        )
        .with_priority(10)
        .mount(server)
        .await;
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
    other_lookups_find_nothing(&revel).await;
    let created: Value =
        serde_json::from_slice(&revel_customer("2026-11-24T10:31:00.123456")).unwrap();
    Mock::given(method("POST"))
        .and(path("/demo/resources/Customer/"))
        .respond_with(ResponseTemplate::new(201).set_body_json(created))
        .mount(&revel)
        .await;
    let partner = PartnerStandIn::start(204).await;
    let worker = stack.worker(fast_api(&revel.uri()), 100, Some(partner.downstream()));

    let receiver = stack.receiver_for(
        Kind::VinesOs(VinesOsEvent::CustomerCreated)
            .function()
            .logical_id,
    );
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
        domain::sources::parse_timestamp_micros("2026-11-24T11:00:00").unwrap()
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
    other_lookups_find_nothing(&revel).await;
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
    let receiver = stack.receiver_for(
        Kind::VinesOs(VinesOsEvent::CustomerCreated)
            .function()
            .logical_id,
    );
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
    let receiver = stack.receiver_for(Kind::VinesOs(event).function().logical_id);
    let body = payload("vinesos-member-updated.json");
    let (route, path, headers) = request_for(Kind::VinesOs(event), &body);
    // Signed long ago (the sample's own signing time): a replay.
    let stale = routed_event("POST", &route, &path, "", &headers, &body);
    let (status, _) = deliver(
        &receiver,
        integration_tests::api_gateway_event(&stale.to_string()).unwrap(),
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
        integration_tests::api_gateway_event(&forged.to_string()).unwrap(),
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
        let receiver = counted.receiver_for(Kind::VinesOs(event).function().logical_id);
        let (status, first, calls) = counted.deliver(&receiver, vinesos_request(event)).await;
        expect_outcome(status, &first, 200, "accepted");
        assert_one_put(&calls, Kind::VinesOs(event).function().logical_id);
        let (status, again, calls) = counted.deliver(&receiver, vinesos_request(event)).await;
        expect_outcome(status, &again, 200, "duplicate");
        assert_one_put(
            &calls,
            &format!("{} repeated", Kind::VinesOs(event).function().logical_id),
        );
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
    // queues its own job, and each entity has one. A search applies
    // nothing: it asks for an on-demand inventory pull.
    let requested = VinesOsEvent::InventoryRequested.event_type();
    let jobs = stack.take_jobs().await;
    let mut queued: Vec<String> = jobs
        .iter()
        .map(|j| {
            let event_key = j["event_key"].as_str().expect("an event");
            let expected = if event_key.split(':').nth(2) == Some(requested) {
                "inventory_request"
            } else {
                "apply_to_revel"
            };
            assert_eq!(j["job"], expected, "{j}");
            event_key.to_owned()
        })
        .collect();
    queued.sort();
    assert_eq!(
        queued,
        Vec::from_iter(stack.event_keys().await),
        "one job per partner event"
    );
    let named: std::collections::BTreeSet<&str> = jobs
        .iter()
        .filter_map(|j| j["entity_key"].as_str())
        .collect();
    assert_eq!(named.len(), stack.entities().await.len());
}

#[tokio::test]
async fn partner_products_and_events_wait_for_the_end_of_day_batch_which_creates_each_once() {
    let (stack, revel, worker, _) = with_revel_stand_in(100).await;
    for event in [VinesOsEvent::ProductChanged, VinesOsEvent::EventChanged] {
        post_sample(&stack, event).await;
    }
    stack.settle().await;
    stack.drain(&worker, 5).await;
    assert!(
        revel.writes().is_empty(),
        "nothing reaches Revel before the end of day"
    );
    let product = "vinesos:demo:vos_product:VOS-P-ROSE-2023";
    let event = "vinesos:demo:vos_event:VOS-E-42";
    assert!(!applied(&stack, product).await && !applied(&stack, event).await);

    end_of_day(&stack, "2026-11-24T23:55").await;
    stack.drain(&worker, 5).await;
    let products = partner_rose(&revel);
    assert_eq!(products.len(), 1);
    assert_eq!(
        (
            &products[0]["name"],
            &products[0]["sku"],
            &products[0]["price"]
        ),
        (&json!("Rose 2023"), &json!("ROSE-2023"), &json!(19.5))
    );
    let events = in_revel(&revel, "Event", "third_party_id", "vinesos:VOS-E-42");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["start_date"], "2026-12-05T18:00:00");
    assert!(applied(&stack, product).await && applied(&stack, event).await);
    let first = revel.writes();
    assert_eq!(first.len(), 2, "{first:?}");

    // The next end of day has nothing to do; a tick delivered twice neither.
    end_of_day(&stack, "2026-11-25T23:55").await;
    end_of_day(&stack, "2026-11-25T23:55").await;
    stack.drain(&worker, 5).await;
    assert_eq!(revel.writes(), first, "applied before: not written again");

    // A newer change of the product is an update of the same product.
    let repriced = newer(VinesOsEvent::ProductChanged, |data| {
        data["price"] = json!(21.0)
    });
    post(&stack, VinesOsEvent::ProductChanged, &repriced).await;
    through_end_of_day(&stack, &worker, "2026-11-26T23:55").await;
    let products = partner_rose(&revel);
    assert_eq!((products.len(), &products[0]["price"]), (1, &json!(21.0)));
    let writes = revel.writes();
    assert_eq!(writes.len(), 3);
    assert!(writes[2].starts_with("updated Product"), "{writes:?}");
    assert_eq!(stack.jobs_waiting().await, 0);
    assert!(stack.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_spent_budget_stops_the_batch_and_the_next_run_resumes_where_it_stopped() {
    // A lookup and a create: the product, and not the event.
    let (stack, revel, worker, url) = with_revel_stand_in(2).await;
    for event in [VinesOsEvent::ProductChanged, VinesOsEvent::EventChanged] {
        post_sample(&stack, event).await;
    }
    through_end_of_day(&stack, &worker, "2026-11-24T23:55").await;
    assert_eq!(revel.writes().len(), 1, "{:?}", revel.writes());
    assert!(revel.writes()[0].starts_with("created Product"));
    assert!(in_revel(&revel, "Event", "third_party_id", "vinesos:VOS-E-42").is_empty());
    assert!(
        stack.dead_letters().await.is_empty() && stack.jobs_waiting().await == 0,
        "a spent budget is a clean stop, not a failure"
    );

    // The budget allows more (tomorrow's): the next run applies the event only.
    let tomorrow = stack.worker(fast_api(&url), 100, None);
    end_of_day(&stack, "2026-11-25T23:55").await;
    stack.drain(&tomorrow, 5).await;
    let writes = revel.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(writes[1].starts_with("created Event"));
    assert_eq!(partner_rose(&revel).len(), 1);
}

#[tokio::test]
async fn an_ambiguous_product_create_is_looked_up_again_on_retry_and_not_created_twice() {
    let stack = Stack::new().await.with_api_credentials().await;
    let revel = MockServer::start().await;
    let lookup = || {
        Mock::given(method("GET"))
            .and(path("/demo/resources/Product/"))
            .and(query_param("third_party_id", "vinesos:VOS-P-ROSE-2023"))
    };
    let page = |objects: Value| {
        ResponseTemplate::new(200)
            .set_body_json(json!({"meta": {"next": null}, "objects": objects}))
    };
    // The first lookup finds nothing; after the create timed out, Revel has it.
    lookup()
        .respond_with(page(json!([])))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&revel)
        .await;
    let mut made = sample(VinesOsEvent::ProductChanged)["data"].clone();
    made["third_party_id"] = json!("vinesos:VOS-P-ROSE-2023");
    made["establishment"] = json!("/enterprise/Establishment/1/");
    made["id"] = json!(77);
    // As Revel writes prices: text, to the millionth.
    made["cost"] = json!("8.000000");
    lookup()
        .respond_with(page(json!([made])))
        .mount(&revel)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&revel)
        .await;
    let worker = stack.worker(fast_api(&revel.uri()), 100, None);
    post_sample(&stack, VinesOsEvent::ProductChanged).await;
    through_end_of_day(&stack, &worker, "2026-11-24T23:55").await;
    assert_eq!(
        requests(&revel, "POST").await,
        1,
        "a create that may have happened is never repeated blindly"
    );
    assert_eq!(
        requests(&revel, "PATCH").await,
        0,
        "the retry found it holding every field (the cost as Revel writes it)"
    );
    assert!(applied(&stack, "vinesos:demo:vos_product:VOS-P-ROSE-2023").await);
    assert_eq!(stack.jobs_waiting().await, 0);
}

/// A customer made at Revel's POS before the partner heard of them.
fn made_in_revel(email: &str, phone: &str) -> Value {
    json!({"id": 2192, "uuid": REVEL_UUID, "first_name": "Ann", "last_name": "Example",
           "email": email, "phone_number": phone, "third_party_id": null,
           "updated_date": "2026-11-20T09:00:00"})
}

#[tokio::test]
async fn a_partner_customer_first_created_in_revel_is_found_by_email_linked_and_never_duplicated() {
    let (stack, revel, worker, _) = with_revel_stand_in(100).await;
    revel.put(
        "Customer",
        made_in_revel("Customer@Example.com", "555 000 1111"),
    );
    let member = newer(VinesOsEvent::MemberUpdated, |_| {});
    for (event, body) in [
        (
            VinesOsEvent::CustomerCreated,
            sample(VinesOsEvent::CustomerCreated),
        ),
        (VinesOsEvent::MemberUpdated, member),
    ] {
        post(&stack, event, &body).await;
        stack.settle().await;
        stack.drain(&worker, 5).await;
    }
    let customers = revel.objects("Customer");
    assert_eq!(customers.len(), 1, "no second customer: {customers:?}");
    assert_eq!(customers[0]["third_party_id"], "vinesos:VOS-C-501");
    assert_eq!(
        customers[0]["last_name"], "Example-Smith",
        "the member update applied"
    );
    assert_eq!(
        revel.writes(),
        ["updated Customer 2192", "updated Customer 2192"]
    );
}

#[tokio::test]
async fn a_partner_customer_is_found_by_phone_however_it_is_written_when_the_email_differs() {
    let (stack, revel, worker, _) = with_revel_stand_in(100).await;
    revel.put(
        "Customer",
        made_in_revel("ann@elsewhere.example", "(123) 123-1234"),
    );
    post_sample(&stack, VinesOsEvent::CustomerCreated).await;
    stack.settle().await;
    stack.drain(&worker, 5).await;
    assert_eq!(revel.objects("Customer").len(), 1);
    assert_eq!(
        revel.objects("Customer")[0]["third_party_id"],
        "vinesos:VOS-C-501"
    );
    assert_eq!(revel.writes(), ["updated Customer 2192"]);
}

#[tokio::test]
async fn a_partner_order_reaches_revel_with_its_items_and_payments_and_notes_what_the_api_cannot_hold(
) {
    let (stack, revel, worker, _) = with_revel_stand_in(100).await;
    // The partner's rosé reaches Revel at end of day; the customer at once.
    post_sample(&stack, VinesOsEvent::ProductChanged).await;
    post_sample(&stack, VinesOsEvent::CustomerCreated).await;
    through_end_of_day(&stack, &worker, "2026-11-24T23:55").await;
    let rose = partner_rose(&revel)[0]["id"].clone();
    let customer =
        in_revel(&revel, "Customer", "third_party_id", "vinesos:VOS-C-501")[0]["id"].clone();

    post_sample(&stack, VinesOsEvent::OrderAdded).await;
    stack.settle().await;
    stack.drain(&worker, 5).await;
    let orders = in_revel(&revel, "Order", "external_sync", "vinesos:VOS-O-9001");
    assert_eq!(orders.len(), 1);
    let order = &orders[0];
    assert_eq!(
        (&order["final_total"], &order["subtotal"], &order["tax"]),
        (&json!(72.9), &json!(67.5), &json!(5.4))
    );
    assert_eq!(
        order["customer"],
        format!("/resources/Customer/{customer}/")
    );
    assert_eq!(
        order["notes"],
        "VinesOS order VOS-O-9001; not in Revel's order resources: taxes: City tax 8% 5.40; payment 2: gift_card 20.00"
    );
    let uri = json!(format!("/resources/Order/{}/", order["id"]));
    let items: Vec<(Value, Value, Value, Value)> = revel
        .objects("OrderItem")
        .into_iter()
        .filter(|i| i["order"] == uri)
        .map(|i| {
            (
                i["product"].clone(),
                i["quantity"].clone(),
                i["price"].clone(),
                i["tax_amount"].clone(),
            )
        })
        .collect();
    assert_eq!(
        items,
        [
            (
                json!("/resources/Product/6/"),
                json!(2.0),
                json!(24.0),
                json!(3.84)
            ),
            (
                json!(format!("/resources/Product/{rose}/")),
                json!(1.0),
                json!(19.5),
                json!(1.56)
            ),
        ]
    );
    let payments: Vec<Value> = revel
        .objects("Payment")
        .into_iter()
        .filter(|p| p["order"] == uri)
        .collect();
    assert_eq!(
        payments.len(),
        1,
        "the gift card is in the notes: {payments:?}"
    );
    assert_eq!(
        (&payments[0]["payment_type"], &payments[0]["amount"]),
        (&json!(2), &json!(52.9))
    );

    // The job again (a redelivered message): nothing is written twice.
    let before = revel.writes();
    stack
        .send_job(
            &json!({"job": "apply_to_revel", "source": "vinesos", "instance": "demo", "event_type": "vinesos.order.added",
                    "event_key": "rerun", "entity_key": "vinesos:demo:vos_order:VOS-O-9001"})
            .to_string(),
            "vinesos:demo:vos_order:VOS-O-9001",
            "rerun",
        )
        .await;
    stack.drain(&worker, 5).await;
    assert_eq!(revel.writes(), before);
}

#[tokio::test]
async fn without_revel_api_credentials_a_product_waits_for_the_batch_and_a_customer_is_parked_to_be_redriven(
) {
    // The merchant connected the partner before entering Revel's API key.
    let stack = Stack::new().await;
    let revel = Fixtures::new(fake_revel::default_dir());
    let url = fake_revel::start(revel.clone()).await.unwrap();
    let worker = stack.worker(fast_api(&url), 100, None);
    post_sample(&stack, VinesOsEvent::ProductChanged).await;
    post_sample(&stack, VinesOsEvent::CustomerCreated).await;
    stack.settle().await;
    stack.drain(&worker, 5).await;

    assert!(revel.writes().is_empty());
    let parked = stack.dead_letters().await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert!(
        parked[0].contains("vinesos:demo:vos_customer:VOS-C-501"),
        "{parked:?}"
    );

    // Once the key is in place (read by a worker whose secrets cache is
    // fresh), the end of day applies the kept product.
    stack
        .put_secrets(&local_stack::demo_revel_secret_document())
        .await;
    let worker = stack.worker(fast_api(&url), 100, None);
    end_of_day(&stack, "2026-11-24T23:55").await;
    stack.drain(&worker, 5).await;
    assert_eq!(partner_rose(&revel).len(), 1);
}
