//! The partner's searches end to end (`inventory.requested`): verified and
//! stored with one put, kept and queued by the real stream processor
//! (`Stack::settle`); then the jobs worker, as its `main` builds it, pulls
//! Revel's current stock of exactly the products named from the local Revel
//! stand-in (`local_stack::fake_revel`, filtering `CurrentStock` by
//! product), keeps it newest-wins like the scheduled inventory pull, and the
//! partner receives what changed. Only for an instance with the retailer
//! option; at most `InventoryRequestsPerHour` pulls an hour, the rest pulled
//! together at the next hour; every call spends the daily API budget.

use std::sync::Arc;
use std::time::Duration;
use vendors::functions::Kind;

use aws_adapters::dynamodb::DynamoEntityStore;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use domain::clock::TokioClock;
use domain::ids::InstanceName;
use integration_tests::*;
use local_stack::events::{routed_event, vinesos_headers, Route};
use local_stack::fake_revel::{self, Fixtures};
use local_stack::{DEMO_LA_INSTANCE, DEMO_VINESOS_SECRET};
use pipeline::worker::jobs::inventory_request::on_demand::{
    deferred_pull, next_hour, PendingProducts,
};
use pipeline::worker::Worker;
use ports::queue::JobMessage;
use ports::sync_state::CallBudget;
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;
use vendors::vinesos::VinesOsEvent;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Has the retailer option in the local secret document (`make local`'s).
const UPGRADED: &str = DEMO_LA_INSTANCE;
/// Has none.
const NOT_UPGRADED: &str = DEMO_INSTANCE;

/// Ten past the hour: the next hour's allowance opens 50 minutes later.
const AT: OffsetDateTime = datetime!(2026-11-24 10:10 UTC);

fn upgraded() -> InstanceName {
    InstanceName::parse(UPGRADED).unwrap()
}

/// A search for `products` on `instance`'s behalf, signed now as VinesOS
/// signs, as API Gateway hands it to the function; held to the partner's
/// contract (docs/asyncapi.yaml).
fn search(instance: &str, id: &str, products: &[u64]) -> shared::http::ApiGatewayEvent {
    let body = json!({"id": id, "type": "inventory.requested",
        "occurred_at": "2026-11-24T10:45:00Z", "data": {"revel_product_ids": products}})
    .to_string();
    let event = VinesOsEvent::InventoryRequested;
    let route = Route {
        template: Kind::VinesOs(event).function().route().to_owned(),
    };
    let path = Kind::VinesOs(event)
        .function()
        .route()
        .replace("{instance}", instance);
    let signed_at = OffsetDateTime::now_utc().unix_timestamp();
    let headers = vinesos_headers(DEMO_VINESOS_SECRET, body.as_bytes(), signed_at);
    let request = routed_event("POST", &route, &path, "", &headers, body.as_bytes());
    integration_tests::contract::assert_request(&request);
    integration_tests::api_gateway_event(&request.to_string()).unwrap()
}

/// A stack holding `make local`'s Revel secret document, its jobs worker
/// calling Revel at `revel_url` with these limits on a clock at `at`, and
/// its receivers behind a recording proxy.
async fn stack_and_worker(
    revel_url: &str,
    per_hour: u64,
    daily_budget: u64,
    partner: Option<&PartnerStandIn>,
) -> (Stack, Worker, CountedReceivers) {
    let stack = Stack::new().await;
    stack
        .put_secrets(&local_stack::local_revel_secret_document())
        .await;
    let mut sync = stack.sync_config(daily_budget);
    sync.inventory_requests_per_hour = per_hour;
    let clients = stack.clients();
    let revel = shared::function::revel_source(&stack.config, &clients.secrets);
    let mut worker = shared::function::jobs_worker(
        &stack.config,
        &sync,
        &clients,
        revel,
        fast_api(revel_url),
        partner.map(PartnerStandIn::downstream),
    );
    worker.clock = Arc::new(TokioClock::starting_at(AT));
    let counted = stack.counted_receivers().await;
    (stack, worker, counted)
}

/// The local Revel stand-in with its fixtures: `CurrentStock` 901
/// (product 5) and 902 (product 6).
async fn revel_stand_in() -> String {
    fake_revel::start(Fixtures::new(fake_revel::default_dir()))
        .await
        .unwrap()
}

/// Stores `request`, expecting it accepted with one put, and lets the
/// stream processor take it.
async fn post(stack: &Stack, counted: &CountedReceivers, request: shared::http::ApiGatewayEvent) {
    let receiver = counted.receiver_for(
        Kind::VinesOs(VinesOsEvent::InventoryRequested)
            .function()
            .logical_id,
    );
    let (status, answer, calls) = counted.deliver(&receiver, request).await;
    expect_outcome(status, &answer, 200, "accepted");
    assert_one_put(&calls, "an inventory request");
    stack.settle().await;
}

async fn pending(stack: &Stack, instance: &InstanceName) -> Vec<String> {
    let entities = DynamoEntityStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.config.entities_table,
    );
    PendingProducts::new(&entities)
        .all(instance)
        .await
        .unwrap()
        .into_keys()
        .collect()
}

async fn spent_today(stack: &Stack, instance: &InstanceName) -> u64 {
    stack.sync_state().spent_today(instance).await.unwrap()
}

/// Every job waiting, taken off the queue.
async fn taken(stack: &Stack) -> Vec<JobMessage> {
    stack
        .take_jobs()
        .await
        .into_iter()
        .map(|job| serde_json::from_value::<JobMessage>(job).unwrap())
        .collect()
}

/// The deferred pulls queued (jobs without an entity), taken off the queue.
async fn deferred_pulls(stack: &Stack) -> Vec<JobMessage> {
    taken(stack)
        .await
        .into_iter()
        .filter(|job| job.entity_key.is_none())
        .collect()
}

fn micros(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1000) as i64
}

fn soon() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(30)
}

#[tokio::test]
async fn a_partner_search_pulls_revels_stock_of_exactly_the_products_named_and_the_partner_receives_what_changed(
) {
    let partner = PartnerStandIn::start(204).await;
    let (stack, worker, counted) =
        stack_and_worker(&revel_stand_in().await, 12, 100, Some(&partner)).await;

    post(&stack, &counted, search(UPGRADED, "evt_s1", &[6])).await;
    let polled = stack.drain(&worker, 10).await;

    assert!(polled.iter().all(|p| p.failed == 0), "{polled:?}");
    let stock = stack
        .entity("revel:demo-la:inventory:902")
        .await
        .expect("product 6's stock kept, as the scheduled pull keeps it");
    assert_eq!(entity_state(&stock)["quantity"], 6);
    assert!(
        stack.entity("revel:demo-la:inventory:901").await.is_none(),
        "product 5 was not asked for"
    );
    assert_eq!(spent_today(&stack, &upgraded()).await, 1, "one call");
    let delivered: Vec<(String, String, u64)> = partner
        .deliveries()
        .await
        .into_iter()
        .map(|d| (d.kind, d.id, d.revision))
        .collect();
    assert_eq!(delivered, [("inventory".to_owned(), "902".to_owned(), 1)]);
    assert!(pending(&stack, &upgraded()).await.is_empty());

    // Searched again with nothing changed in Revel: pulled again, nothing
    // new for the partner.
    post(&stack, &counted, search(UPGRADED, "evt_s2", &[6])).await;
    stack.drain(&worker, 10).await;
    assert_eq!(spent_today(&stack, &upgraded()).await, 2);
    assert_eq!(partner.deliveries().await.len(), 1);
    assert_eq!(stack.jobs_waiting().await, 0);
    assert!(stack.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_search_from_an_instance_without_the_retailer_option_is_stored_and_its_job_pulls_nothing()
{
    let revel = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&revel)
        .await;
    let (stack, worker, counted) = stack_and_worker(&revel.uri(), 12, 100, None).await;

    post(&stack, &counted, search(NOT_UPGRADED, "evt_n1", &[5])).await;
    let polled = stack.drain(&worker, 5).await;

    assert_eq!(
        polled
            .iter()
            .map(|p| (p.received, p.failed))
            .collect::<Vec<_>>(),
        [(1, 0)],
        "one job, run once, not failed"
    );
    assert_eq!(stack.events().await.len(), 1, "the request is stored");
    let request = stack
        .entity("vinesos:demo:vos_inventory_request:evt_n1")
        .await
        .expect("the request is kept");
    assert_eq!(entity_state(&request), json!({"revel_product_ids": [5]}));
    assert!(
        pending(&stack, &InstanceName::parse(NOT_UPGRADED).unwrap())
            .await
            .is_empty(),
        "nothing waits for a pull"
    );
    assert_eq!(stack.jobs_waiting().await, 0);
    assert!(stack.dead_letters().await.is_empty());
    revel.verify().await;
}

#[tokio::test]
async fn searches_over_the_hourly_limit_are_pulled_together_by_one_deferred_pull_at_the_next_hour()
{
    let (stack, mut worker, counted) =
        stack_and_worker(&revel_stand_in().await, 1, 100, None).await;

    post(&stack, &counted, search(UPGRADED, "evt_h1", &[5])).await;
    stack.drain(&worker, 10).await;
    assert_eq!(spent_today(&stack, &upgraded()).await, 1);
    let mut deferred = Vec::new();
    for (id, product) in [("evt_h2", 6), ("evt_h3", 5)] {
        post(&stack, &counted, search(UPGRADED, id, &[product])).await;
        let (requests, pulls): (Vec<JobMessage>, Vec<JobMessage>) = taken(&stack)
            .await
            .into_iter()
            .partition(|job| job.entity_key.is_some());
        deferred.extend(pulls);
        assert_eq!(requests.len(), 1);
        worker.run(&requests[0], soon()).await.unwrap();
    }
    deferred.extend(taken(&stack).await);
    assert_eq!(
        spent_today(&stack, &upgraded()).await,
        1,
        "nothing pulled over the limit"
    );
    assert_eq!(pending(&stack, &upgraded()).await, ["5", "6"]);
    let hour = next_hour(AT);
    // One deferred pull for the hour: each coalesced request queues the
    // same message, which SQS FIFO drops within 5 minutes (the local
    // endpoint only drops a copy while the first is still on the queue).
    assert!(!deferred.is_empty());
    assert!(deferred
        .iter()
        .all(|d| *d == deferred_pull(&upgraded(), hour).message));
    assert_eq!(deferred[0].version, Some(micros(hour)));

    // The next hour: the first pull takes both, with one call; a copy
    // finds nothing left.
    worker.clock = Arc::new(TokioClock::starting_at(hour + Duration::from_secs(5)));
    for copy in &deferred {
        worker.run(copy, soon()).await.unwrap();
    }
    assert_eq!(spent_today(&stack, &upgraded()).await, 2);
    assert!(pending(&stack, &upgraded()).await.is_empty());
    for record in ["901", "902"] {
        assert!(stack
            .entity(&format!("revel:demo-la:inventory:{record}"))
            .await
            .is_some());
    }
}

#[tokio::test]
async fn every_call_of_a_search_spends_the_daily_budget_and_a_spent_budget_defers_the_rest_to_after_the_reset(
) {
    let partner = PartnerStandIn::start(204).await;
    let (stack, worker, counted) =
        stack_and_worker(&revel_stand_in().await, 12, 1, Some(&partner)).await;

    post(&stack, &counted, search(UPGRADED, "evt_b1", &[5])).await;
    stack.drain(&worker, 10).await;
    assert_eq!(spent_today(&stack, &upgraded()).await, 1);
    post(&stack, &counted, search(UPGRADED, "evt_b2", &[6])).await;
    let requests = taken(&stack).await;
    assert_eq!(requests.len(), 1);
    worker
        .run(&requests[0], soon())
        .await
        .expect("stopped cleanly, not failed");

    assert_eq!(
        spent_today(&stack, &upgraded()).await,
        1,
        "refused, not spent"
    );
    assert!(stack.entity("revel:demo-la:inventory:902").await.is_none());
    assert_eq!(pending(&stack, &upgraded()).await, ["6"]);
    let after_reset = datetime!(2026-11-25 00:01 UTC);
    assert_eq!(
        deferred_pulls(&stack).await,
        [deferred_pull(&upgraded(), after_reset).message]
    );
    assert!(stack.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_deferred_pull_received_before_it_is_due_waits_on_the_queue_until_then_without_reaching_the_dead_letter_queue(
) {
    let revel = MockServer::start().await;
    let (stack, worker, _) = stack_and_worker(&revel.uri(), 12, 100, None).await;
    // Due 4 seconds after the worker's clock reads AT.
    let early = deferred_pull(&upgraded(), AT + Duration::from_secs(4));
    shared::function::jobs_queue(&stack.config, &stack.clients())
        .enqueue(&early)
        .await
        .unwrap();

    // Received for one second only.
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let received = sqs
        .receive_message()
        .queue_url(&stack.config.jobs_queue_url)
        .visibility_timeout(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(received.len(), 1);
    let body: Value = serde_json::from_str(received[0].body().unwrap()).unwrap();
    assert_eq!(body["job"], "inventory_request");
    let mut record = SqsMessage::default();
    record.message_id = received[0].message_id().map(str::to_owned);
    record.receipt_handle = received[0].receipt_handle().map(str::to_owned);
    record.body = received[0].body().map(str::to_owned);
    let mut batch = SqsEvent::default();
    batch.records.push(record);
    let response = worker.handle_batch(batch, soon()).await;

    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "not done: it comes back"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        stack.jobs_waiting().await,
        0,
        "kept out of sight past its receive's second, until it is due"
    );
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(
        stack.jobs_waiting().await,
        1,
        "back once due, not after a failure's backoff (30 s)"
    );
    assert!(stack.dead_letters().await.is_empty());
    assert!(revel.received_requests().await.unwrap().is_empty());
}
