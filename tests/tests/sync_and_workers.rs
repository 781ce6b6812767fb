//! The follow-up work end to end: the stream processor (`Stack::settle`),
//! the jobs worker and the scheduled pulls, through the real SDK against the
//! local AWS endpoint, with wiremock standing in for Revel's REST API and for
//! the partner system.

use std::time::Duration;

use integration_tests::*;
use ports::queue::{JobKind, JobMessage};
use ports::sync_state::{CallBudget, SyncState};
use serde_json::{json, Value};
use tokio::time::Instant;
use vendors::revel::RevelEventType;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn job(kind: JobKind) -> JobMessage {
    JobMessage {
        job: kind,
        source: "revel".into(),
        instance: DEMO_INSTANCE.into(),
        event_type: kind.name().into(),
        event_key: format!("schedule:{}:demo:test", kind.name()),
        entity_key: None,
        version: None,
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn products(range: std::ops::Range<u64>) -> Vec<Value> {
    range
        .map(|id| json!({"id": id, "name": format!("Wine {id}"), "updated_date": "2026-11-20T10:00:00"}))
        .collect()
}

/// Serves `objects` of `resource` in pages of `size`, Revel-style.
async fn mount_pages(server: &MockServer, resource: &str, objects: &[Value], size: usize) {
    mount_slow_pages(server, resource, objects, size, Duration::ZERO).await;
}

/// [`mount_pages`], each page answered after `delay`.
async fn mount_slow_pages(
    server: &MockServer,
    resource: &str,
    objects: &[Value],
    size: usize,
    delay: Duration,
) {
    let chunks: Vec<&[Value]> = if objects.is_empty() {
        vec![&[]]
    } else {
        objects.chunks(size).collect()
    };
    for (index, chunk) in chunks.iter().enumerate() {
        let offset = index * size;
        let next = (offset + size < objects.len()).then(|| {
            format!(
                "/resources/{resource}/?limit={size}&offset={}&format=json",
                offset + size
            )
        });
        Mock::given(method("GET"))
            .and(path(format!("/demo/resources/{resource}/")))
            .and(query_param("offset", offset.to_string()))
            .and(header("API-AUTHENTICATION", format!("{API_KEY}:{API_SECRET}").as_str()))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({
                        "meta": {"limit": size, "offset": offset, "next": next, "total_count": objects.len()},
                        "objects": chunk,
                    }))
                    .set_delay(delay),
            )
            .mount(server)
            .await;
    }
}

/// A stack with API credentials and a Revel stand-in whose one product page
/// answers after `delay` (no modifiers).
async fn with_a_slow_product_page(delay: Duration) -> (Stack, MockServer) {
    let stack = Stack::new().await.with_api_credentials().await;
    let revel = MockServer::start().await;
    mount_slow_pages(&revel, "Product", &products(1..2), 2, delay).await;
    mount_pages(&revel, "Modifier", &[], 2).await;
    (stack, revel)
}

/// Eight products on four pages, and a product sync whose budget (2 calls)
/// stops it after the first two.
async fn a_product_sync_stopped_by_the_budget() -> (Stack, MockServer) {
    let stack = Stack::new().await.with_api_credentials().await;
    let revel = MockServer::start().await;
    mount_pages(&revel, "Product", &products(1..9), 2).await;
    mount_pages(&revel, "Modifier", &[], 2).await;
    stack
        .worker(fast_api(&revel.uri()), 2, None)
        .run(&job(JobKind::ProductSync), soon())
        .await
        .unwrap();
    (stack, revel)
}

/// The pages of `resource` asked for, in order: each one's offset and the
/// `updated_date__gte` it filtered by.
async fn pages_requested(server: &MockServer, resource: &str) -> Vec<(u64, Option<String>)> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == format!("/demo/resources/{resource}/"))
        .filter_map(|r| {
            let param = |name: &str| {
                r.url
                    .query_pairs()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            };
            Some((param("offset")?.parse().ok()?, param("updated_date__gte")))
        })
        .collect()
}

async fn offsets_requested(server: &MockServer, resource: &str) -> Vec<u64> {
    let pages = pages_requested(server, resource).await;
    pages.into_iter().map(|(offset, _)| offset).collect()
}

async fn entities_of_kind(stack: &Stack, kind: &str) -> usize {
    stack
        .entities()
        .await
        .iter()
        .filter(|e| text(e, "kind") == kind)
        .count()
}

fn demo() -> domain::ids::InstanceName {
    domain::ids::InstanceName::parse(DEMO_INSTANCE).unwrap()
}

#[tokio::test]
async fn a_pull_follows_pagination_across_pages_and_keeps_every_object_once() {
    let stack = Stack::new().await.with_api_credentials().await;
    let revel = MockServer::start().await;
    mount_pages(&revel, "Product", &products(1..6), 2).await;
    mount_pages(&revel, "Modifier", &[], 2).await;
    let worker = stack.worker(fast_api(&revel.uri()), 100, None);
    worker
        .run(&job(JobKind::ProductSync), soon())
        .await
        .unwrap();
    assert_eq!(offsets_requested(&revel, "Product").await, [0, 2, 4]);
    assert_eq!(entities_of_kind(&stack, "product").await, 5);
    assert_eq!(
        stack.jobs_waiting().await,
        5,
        "each new product is queued for the partner"
    );
    let cursor = stack
        .sync_state()
        .load(&demo(), "catalog.Product")
        .await
        .unwrap();
    assert!(
        cursor.checkpoint.is_some() && cursor.run.is_none(),
        "{cursor:?}"
    );
    assert_eq!(
        stack.sync_state().spent_today(&demo()).await.unwrap(),
        4,
        "3 product pages and 1 modifier page"
    );

    // The same pull again writes nothing: unchanged objects are not rewritten.
    worker
        .run(&job(JobKind::CatalogPull), soon())
        .await
        .unwrap();
    let revisions = stack.entity_revisions().await;
    assert!(revisions.values().all(|r| r == "1"), "{revisions:?}");
}

#[tokio::test]
async fn a_429_is_waited_out_and_the_pull_completes() {
    let stack = Stack::new().await.with_api_credentials().await;
    let revel = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/demo/resources/Product/"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&revel)
        .await;
    mount_pages(&revel, "Product", &products(1..3), 2).await;
    mount_pages(&revel, "Modifier", &[], 2).await;
    stack
        .worker(fast_api(&revel.uri()), 100, None)
        .run(&job(JobKind::ProductSync), soon())
        .await
        .unwrap();
    assert_eq!(entities_of_kind(&stack, "product").await, 2);
    assert_eq!(
        stack.sync_state().spent_today(&demo()).await.unwrap(),
        3,
        "the 429 counted against the budget"
    );
}

#[tokio::test]
async fn a_spent_budget_stops_the_run_and_the_next_run_resumes_without_skipping_or_refetching() {
    let (stack, revel) = a_product_sync_stopped_by_the_budget().await;
    assert_eq!(offsets_requested(&revel, "Product").await, [0, 2]);
    assert_eq!(entities_of_kind(&stack, "product").await, 4);
    let stopped = stack
        .sync_state()
        .load(&demo(), "catalog.Product")
        .await
        .unwrap();
    assert_eq!(
        stopped.checkpoint, None,
        "no checkpoint before the last page"
    );
    assert_eq!(stopped.run.as_ref().map(|r| r.offset), Some(4));

    stack
        .worker(fast_api(&revel.uri()), 100, None)
        .run(&job(JobKind::ProductSync), soon())
        .await
        .unwrap();
    assert_eq!(
        offsets_requested(&revel, "Product").await,
        [0, 2, 4, 6],
        "each page fetched exactly once"
    );
    assert_eq!(entities_of_kind(&stack, "product").await, 8);
    let done = stack
        .sync_state()
        .load(&demo(), "catalog.Product")
        .await
        .unwrap();
    assert!(done.checkpoint.is_some() && done.run.is_none());
}

#[tokio::test]
async fn a_run_stopped_by_the_budget_and_resumed_a_day_later_is_followed_by_a_fresh_run_from_when_it_began(
) {
    let (stack, revel) = a_product_sync_stopped_by_the_budget().await;
    // The stopped run began at yesterday's end of day.
    let state = stack.sync_state();
    let mut cursor = state.load(&demo(), "catalog.Product").await.unwrap();
    let run = cursor.run.as_mut().expect("stopped midway");
    run.started_at = "2026-11-28T23:53:00Z".to_owned();
    run.began_at = 1_795_910_100_000_000; // 2026-11-28T23:55:00Z
    state
        .save(&demo(), "catalog.Product", &cursor)
        .await
        .unwrap();

    stack
        .worker(fast_api(&revel.uri()), 100, None)
        .run(&job(JobKind::ProductSync), soon())
        .await
        .unwrap();

    let pages = pages_requested(&revel, "Product").await;
    let fresh = Some("2026-11-28T23:53:00".to_owned());
    assert_eq!(
        pages,
        [
            (0, None),
            (2, None),
            (4, None),
            (6, None),
            (0, fresh.clone()),
            (2, fresh.clone()),
            (4, fresh.clone()),
            (6, fresh),
        ],
        "the old run's last pages, then everything changed since it began"
    );
    let done = state.load(&demo(), "catalog.Product").await.unwrap();
    assert!(done.run.is_none());
    assert_ne!(
        done.checkpoint.as_deref(),
        Some("2026-11-28T23:53:00Z"),
        "the checkpoint is the fresh run's"
    );
}

#[tokio::test]
async fn a_failed_page_leaves_the_checkpoint_where_it_was() {
    let stack = Stack::new().await.with_api_credentials().await;
    let revel = MockServer::start().await;
    let objects = products(1..5);
    // The first page says there is more; the second fails every time.
    Mock::given(method("GET"))
        .and(path("/demo/resources/Product/"))
        .and(query_param("offset", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "meta": {"limit": 2, "offset": 0, "next": "/resources/Product/?limit=2&offset=2", "total_count": 4},
            "objects": &objects[..2],
        })))
        .mount(&revel)
        .await;
    Mock::given(method("GET"))
        .and(path("/demo/resources/Product/"))
        .and(query_param("offset", "2"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&revel)
        .await;
    let worker = stack.worker(fast_api(&revel.uri()), 100, None);
    assert!(worker
        .run(&job(JobKind::ProductSync), soon())
        .await
        .is_err());
    let cursor = stack
        .sync_state()
        .load(&demo(), "catalog.Product")
        .await
        .unwrap();
    assert_eq!(cursor.checkpoint, None);
    assert_eq!(
        cursor.run.as_ref().map(|r| r.offset),
        Some(2),
        "the next run starts at the failed page"
    );

    revel.reset().await;
    Mock::given(method("GET"))
        .and(path("/demo/resources/Product/"))
        .and(query_param("offset", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "meta": {"limit": 2, "offset": 2, "next": null, "total_count": 4}, "objects": &objects[2..],
        })))
        .mount(&revel)
        .await;
    mount_pages(&revel, "Modifier", &[], 2).await;
    worker
        .run(&job(JobKind::ProductSync), soon())
        .await
        .unwrap();
    assert_eq!(offsets_requested(&revel, "Product").await, [2]);
    assert_eq!(entities_of_kind(&stack, "product").await, 4);
    assert!(stack
        .sync_state()
        .load(&demo(), "catalog.Product")
        .await
        .unwrap()
        .checkpoint
        .is_some());
}

fn customer(uuid: &str, updated: &str) -> Vec<u8> {
    json!({"uuid": uuid, "updated_date": updated, "first_name": "Ann"})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn a_poison_message_ends_in_the_dlq_while_its_batch_mates_succeed() {
    for parked_at_once in [true, false] {
        let stack = Stack::new().await;
        let partner = PartnerStandIn::start(204).await;
        // Parked at once, the poison can be first in the group of c-1's job
        // without holding it back; left to the redrive policy, a job held
        // behind it would run out of receives too, so it gets a group alone.
        let group = if parked_at_once {
            "revel:demo:customer:c-1"
        } else {
            "poison"
        };
        stack.send_job("this is not a job", group, "poison-1").await;
        let receiver = stack.receiver(RevelEventType::CustomerCreated);
        for uuid in ["c-1", "c-2"] {
            let body = customer(uuid, "2026-11-20T10:00:00");
            let (status, _) = deliver(
                &receiver,
                signed_request(RevelEventType::CustomerCreated, &body),
            )
            .await;
            assert_eq!(status, 200);
        }
        stack.settle().await;
        let mut worker = stack.delivering_worker(&partner);
        if !parked_at_once {
            // Without the worker's own parking, the queue's redrive policy
            // (10 receives) still gets it there.
            worker.in_flight = stack.in_flight_without_parking();
        }
        stack.drain(&worker, 30).await;
        assert_eq!(
            stack.dead_letters().await,
            ["this is not a job"],
            "parked at once: {parked_at_once}"
        );
        let delivered = partner.deliveries().await.len();
        assert_eq!(
            delivered, 2,
            "each good job ran once (parked at once: {parked_at_once})"
        );
        assert_eq!(stack.jobs_waiting().await, 0);
    }
}

#[tokio::test]
async fn a_delivery_verifies_with_a_standard_webhooks_verifier() {
    let stack = Stack::new().await;
    let partner = PartnerStandIn::start(200).await;
    let (status, _) = deliver(
        &stack.receiver(RevelEventType::OrderFinalized),
        signed_request(
            RevelEventType::OrderFinalized,
            &payload("order-finalized.json"),
        ),
    )
    .await;
    assert_eq!(status, 200);
    stack.settle().await;
    stack.drain(&stack.delivering_worker(&partner), 5).await;
    let requests = partner.server.received_requests().await.unwrap();
    assert_eq!(
        requests.len(),
        3,
        "the order, its rewards card and the stock it sold"
    );
    let bodies: Vec<Value> = requests.iter().map(verified).collect();
    for request in &requests {
        assert!(!String::from_utf8_lossy(&request.body).contains("cc_last_name"));
    }
    let body = &bodies[0];
    assert_eq!(body["type"], "revel.order.changed");
    assert_eq!(
        body["data"]["state"]["order"]["uuid"],
        "c3d0ad74-1737-42c3-a352-4a45449a67af"
    );
}

#[tokio::test]
async fn a_newer_delivery_never_overtakes_an_older_pending_one_for_the_same_entity() {
    let stack = Stack::new().await;
    let partner = PartnerStandIn::failing_first(1, 204).await;
    let worker = stack.delivering_worker(&partner);
    let receiver = stack.receiver(RevelEventType::CustomerUpdated);
    let send = |updated: &'static str| {
        signed_request(RevelEventType::CustomerUpdated, &customer("c-1", updated))
    };

    deliver(&receiver, send("2026-11-20T10:00:00")).await;
    stack.settle().await;
    let first = stack.drain(&worker, 1).await;
    assert_eq!(
        first[0].failed, 1,
        "the partner was down for the first attempt"
    );
    deliver(&receiver, send("2026-11-20T11:00:00")).await;
    deliver(&receiver, send("2026-11-20T09:00:00")).await; // older, arrives last
    stack.settle().await;
    stack.drain(&worker, 10).await;

    let attempts = partner.attempts().await;
    let delivered: Vec<(i64, u64)> = partner
        .deliveries()
        .await
        .iter()
        .map(|d| (d.version, d.revision))
        .collect();
    let newest = domain::sources::parse_timestamp_micros("2026-11-20T11:00:00").unwrap();
    assert_eq!(
        delivered,
        [(newest, 2)],
        "only the newest state went out, once: {attempts:?}"
    );
    assert_eq!(stack.jobs_waiting().await, 0);
}

#[tokio::test]
async fn a_burst_of_menu_pushes_costs_one_catalog_pull_and_a_push_after_that_pull_gets_its_own() {
    let stack = Stack::new().await.with_api_credentials().await;
    let revel = MockServer::start().await;
    mount_pages(&revel, "Product", &products(1..3), 2).await;
    mount_pages(&revel, "Modifier", &[], 2).await;
    let worker = stack.worker(fast_api(&revel.uri()), 100, None);
    let receiver = stack.receiver(RevelEventType::MenuUpdated);
    let push = || signed_request(RevelEventType::MenuUpdated, &payload("menu-updated.json"));

    for _ in 0..3 {
        let (status, answer) = deliver(&receiver, push()).await;
        expect_outcome(status, &answer, 200, "accepted");
    }
    stack.settle().await;
    assert_eq!(stack.jobs_waiting().await, 3, "each push asks for a pull");
    stack.drain(&worker, 10).await;
    assert_eq!(
        offsets_requested(&revel, "Product").await,
        [0],
        "the first pull began after every push: it covers them all"
    );
    assert_eq!(stack.events().await.len(), 3, "each push is archived");

    let (status, answer) = deliver(&receiver, push()).await;
    expect_outcome(status, &answer, 200, "accepted");
    stack.settle().await;
    stack.drain(&worker, 10).await;
    assert_eq!(
        offsets_requested(&revel, "Product").await,
        [0, 0],
        "a push after the last pull began is pulled again"
    );
    assert_eq!(stack.jobs_waiting().await, 0);
}

#[tokio::test]
async fn menu_pushes_during_a_running_pull_lead_to_exactly_one_more_pull() {
    // Slow enough that the pushes below come while the pull waits for it.
    let (stack, revel) = with_a_slow_product_page(Duration::from_secs(2)).await;
    let worker = stack.worker(fast_api(&revel.uri()), 100, None);
    let receiver = stack.receiver(RevelEventType::MenuUpdated);
    let push = || async {
        let request = signed_request(RevelEventType::MenuUpdated, &payload("menu-updated.json"));
        let (status, answer) = deliver(&receiver, request).await;
        expect_outcome(status, &answer, 200, "accepted");
    };
    push().await;
    stack.settle().await;

    let pushes_during_the_pull = async {
        while offsets_requested(&revel, "Product").await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for _ in 0..3 {
            push().await;
        }
        stack.settle().await;
        Instant::now()
    };
    let first_pull = async {
        let polled = stack.drain(&worker, 1).await;
        (polled, Instant::now())
    };
    let (pushed_at, (polled, pulled_at)) = tokio::join!(pushes_during_the_pull, first_pull);

    assert_eq!(polled[0].received, 1, "the first push's pull alone");
    assert!(
        pushed_at < pulled_at,
        "the pushes were stored and processed while the pull ran"
    );
    assert_eq!(offsets_requested(&revel, "Product").await, [0]);
    stack.drain(&worker, 10).await;
    assert_eq!(
        offsets_requested(&revel, "Product").await,
        [0, 0],
        "one more pull for the three pushes during the first"
    );
    let demo = demo();
    let cursor = stack
        .sync_state()
        .load(&demo, "catalog.Product")
        .await
        .unwrap();
    assert!(
        cursor.run.is_none() && cursor.checkpoint.is_some(),
        "{cursor:?}"
    );
}

#[tokio::test]
async fn a_pull_whose_page_outlives_its_message_stops_at_the_deadline_and_the_batch_reports_in_time(
) {
    let (stack, revel) = with_a_slow_product_page(Duration::from_secs(60)).await;
    // One patient attempt: the page call alone outlives the batch.
    let api = vendors::revel::api::RevelApiConfig {
        timeout: Duration::from_secs(30),
        max_attempts: 1,
        ..fast_api(&revel.uri())
    };
    let worker = stack.worker(api, 100, None);
    stack
        .send_job(
            &serde_json::to_string(&job(JobKind::ProductSync)).unwrap(),
            "catalog:revel:demo",
            "end-of-day",
        )
        .await;
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let deadline = Duration::from_secs(11);
    let started = Instant::now();

    let polled = local_stack::worker_loop::poll_once(
        &sqs,
        &stack.config.jobs_queue_url,
        &worker,
        deadline,
        Duration::ZERO,
    )
    .await
    .unwrap();

    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < deadline + Duration::from_secs(2),
        "stopped at the message's deadline, answered in time: {took:?}"
    );
    assert_eq!(
        (polled.received, polled.failed),
        (1, 1),
        "reported failed: retried"
    );
    assert_eq!(offsets_requested(&revel, "Product").await, [0]);
    assert_eq!(stack.jobs_waiting().await, 1, "the job comes back");
    let cursor = stack
        .sync_state()
        .load(&demo(), "catalog.Product")
        .await
        .unwrap();
    assert!(
        cursor.checkpoint.is_none(),
        "nothing counted as pulled: {cursor:?}"
    );
}

/// What `revel-ops dlq redrive` does: every parked job back to the jobs
/// queue in its message group; the bodies moved.
async fn redrive(stack: &Stack) -> Vec<String> {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let dlq = &stack.provisioned.resources["JobsDeadLetterQueue"].reference;
    let mut moved = Vec::new();
    loop {
        let messages = sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            return moved;
        }
        for message in messages {
            let group = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned()
                .unwrap();
            let body = message.body().unwrap().to_owned();
            stack
                .send_job(
                    &body,
                    &group,
                    &format!("redriven-{}", message.message_id().unwrap()),
                )
                .await;
            sqs.delete_message()
                .queue_url(dlq)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            moved.push(body);
        }
    }
}

#[tokio::test]
async fn without_a_partner_url_deliveries_wait_in_the_dlq_and_go_out_once_redriven_to_a_worker_with_one(
) {
    let stack = Stack::new().await;
    let receiver = stack.receiver(RevelEventType::CustomerCreated);
    let (status, _) = deliver(
        &receiver,
        signed_request(
            RevelEventType::CustomerCreated,
            &customer("c-1", "2026-11-20T10:00:00"),
        ),
    )
    .await;
    assert_eq!(status, 200);
    stack.settle().await;
    let no_url = stack.worker(fast_api("http://127.0.0.1:9"), 100, None);

    let polled = stack.drain(&no_url, 5).await;

    assert_eq!(polled[0].failed, 0, "parked, so it holds nothing back");
    assert_eq!(stack.jobs_waiting().await, 0);
    let entity = stack.entity("revel:demo:customer:c-1").await.unwrap();
    assert!(
        !entity.contains_key("delivered_revision"),
        "nothing was sent"
    );
    let moved = redrive(&stack).await;
    assert_eq!(moved.len(), 1, "the delivery waited in the DLQ");
    let job: JobMessage = serde_json::from_str(&moved[0]).unwrap();
    assert_eq!(job.job, JobKind::SyncEntity);
    assert_eq!(job.entity_key.as_deref(), Some("revel:demo:customer:c-1"));

    let partner = PartnerStandIn::start(204).await;
    stack.drain(&stack.delivering_worker(&partner), 5).await;
    let delivered: Vec<(String, u64)> = partner
        .deliveries()
        .await
        .into_iter()
        .map(|d| (d.id, d.revision))
        .collect();
    assert_eq!(delivered, [("c-1".to_owned(), 1)]);
    assert!(stack.dead_letters().await.is_empty());
}

#[tokio::test]
async fn reconciliation_ingests_exactly_the_orders_whose_webhook_never_arrived() {
    let stack = Stack::new().await.with_api_credentials().await;
    let revel = MockServer::start().await;
    let order = |id: u64, uuid: &str| json!({"id": id, "uuid": uuid, "closed": true, "updated_date": "2026-11-23T18:00:00", "final_total": 10.0});
    let orders = [
        order(1, "o-arrived"),
        order(2, "o-missed-1"),
        order(3, "o-missed-2"),
    ];
    mount_pages(&revel, "Order", &orders, 2).await;
    for resource in ["OrderItem", "Payment"] {
        Mock::given(method("GET"))
            .and(path(format!("/demo/resources/{resource}/")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"meta": {"next": null}, "objects": [{"id": 9, "amount": "10.00", "cc_last_name": "X"}]})))
            .mount(&revel)
            .await;
    }
    let receiver = stack.receiver(RevelEventType::OrderFinalized);
    let webhook = |order: &Value| {
        json!({"orderInfo": order, "items": [], "payments": []})
            .to_string()
            .into_bytes()
    };
    let (status, _) = deliver(
        &receiver,
        signed_request(RevelEventType::OrderFinalized, &webhook(&orders[0])),
    )
    .await;
    assert_eq!(status, 200);

    stack.settle().await;
    let worker = stack.worker(fast_api(&revel.uri()), 100, None);
    worker.run(&job(JobKind::Reconcile), soon()).await.unwrap();
    let events = stack.events().await;
    let mut reconciled: Vec<String> = events
        .iter()
        .filter(|e| text(e, "origin") == "reconciliation")
        .map(|e| text(e, "event_key"))
        .collect();
    reconciled.sort();
    let version = domain::sources::parse_timestamp_micros("2026-11-23T18:00:00").unwrap();
    assert_eq!(
        reconciled,
        [
            format!("revel:demo:order.finalized:biz:o-missed-1@{version}"),
            format!("revel:demo:order.finalized:biz:o-missed-2@{version}"),
        ],
        "the webhook's own key, so a late webhook is a duplicate"
    );
    assert_eq!(events.len(), 3);
    assert_eq!(
        entities_of_kind(&stack, "order").await,
        1,
        "stored, not yet processed"
    );
    stack.settle().await;
    assert_eq!(entities_of_kind(&stack, "order").await, 3);
    let states: Vec<Value> = stack.entities().await.iter().map(entity_state).collect();
    assert!(
        states
            .iter()
            .all(|s| !s.to_string().contains("cc_last_name")),
        "card fields are never kept: {states:?}"
    );

    worker.run(&job(JobKind::Reconcile), soon()).await.unwrap();
    assert_eq!(
        stack.events().await.len(),
        3,
        "a second run finds nothing missing"
    );
    // A late webhook finds the reconciled record under its own key. Its body
    // is Revel's webhook, not the one rebuilt from the API, but it is the
    // same event come the other way: a duplicate, not a conflict.
    let (status, answer) = deliver(
        &receiver,
        signed_request(RevelEventType::OrderFinalized, &webhook(&orders[1])),
    )
    .await;
    expect_outcome(status, &answer, 200, "duplicate");
    assert_eq!(answer["event_id"], reconciled[0].as_str());
    assert_eq!(stack.events().await.len(), 3, "no conflict record");
    stack.settle().await;
    assert_eq!(entities_of_kind(&stack, "order").await, 3);
}

#[tokio::test]
async fn reconciliation_stops_between_missing_orders_at_its_deadline_and_its_continuation_ingests_the_rest(
) {
    let stack = Stack::new().await.with_api_credentials().await;
    let revel = MockServer::start().await;
    let orders: Vec<Value> = (1..=4)
        .map(|id| json!({"id": id, "uuid": format!("o-{id}"), "closed": true, "updated_date": "2026-11-23T18:00:00", "final_total": 10.0}))
        .collect();
    // One page of four missing orders; each costs two slow calls.
    mount_pages(&revel, "Order", &orders, 10).await;
    for resource in ["OrderItem", "Payment"] {
        Mock::given(method("GET"))
            .and(path(format!("/demo/resources/{resource}/")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"meta": {"next": null}, "objects": []}))
                    .set_delay(Duration::from_millis(700)),
            )
            .mount(&revel)
            .await;
    }
    let worker = stack.worker(fast_api(&revel.uri()), 100, None);
    // The page allowance and 2.5 s: time for the page and two orders of four.
    let deadline = Instant::now() + pipeline::worker::PAGE_ALLOWANCE + Duration::from_millis(2500);

    worker
        .run(&job(JobKind::Reconcile), deadline)
        .await
        .unwrap();

    async fn reconciled(stack: &Stack) -> usize {
        stack
            .events()
            .await
            .iter()
            .filter(|e| text(e, "origin") == "reconciliation")
            .count()
    }
    let first = reconciled(&stack).await;
    assert!((1..4).contains(&first), "stopped midway: {first}");
    assert_eq!(
        queued_jobs(&stack).await,
        pairs("demo", &["reconcile"]),
        "a continuation"
    );

    worker.run(&job(JobKind::Reconcile), soon()).await.unwrap();
    assert_eq!(reconciled(&stack).await, 4, "each once");
}

/// A Revel secret document: `demo` in the deployment's zone (UTC), `labar`
/// in Los Angeles with the retailer option, `hooks` with no API credentials.
fn two_zones() -> String {
    json!({
        "demo": {"webhook": [DEMO_SECRET], "api_key": API_KEY, "api_secret": API_SECRET},
        "labar": {"webhook": "w", "api_key": API_KEY, "api_secret": API_SECRET,
                  "time_zone": "America/Los_Angeles", "end_of_day": "23:55", "inventory_every_2h": true},
        "hooks": "w",
    })
    .to_string()
}

/// The jobs waiting on the queue, taken off it, as (instance, job) sorted.
async fn queued_jobs(stack: &Stack) -> Vec<(String, String)> {
    let mut jobs: Vec<(String, String)> = stack
        .take_jobs()
        .await
        .iter()
        .map(|j| {
            (
                j["instance"].as_str().unwrap().to_owned(),
                j["job"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    jobs.sort();
    jobs
}

fn pairs(instance: &str, jobs: &[&str]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = jobs
        .iter()
        .map(|j| (instance.to_owned(), (*j).to_owned()))
        .collect();
    pairs.sort();
    pairs
}

#[tokio::test]
async fn the_scheduler_tick_queues_each_instances_end_of_day_at_its_local_time_once_however_often_it_comes(
) {
    let stack = Stack::new().await;
    stack.put_secrets(&two_zones()).await;
    let clients = stack.clients();
    let revel = shared::function::revel_source(&stack.config, &clients.secrets);
    let jobs = shared::function::jobs_queue(&stack.config, &clients);
    let state = stack.sync_state();
    let run = |input: Value| {
        let (revel, jobs, state) = (&revel, &jobs, &state);
        async move {
            shared::function::run_schedule(&input, revel, None, jobs.as_ref(), state)
                .await
                .expect("the scheduler runs")
        }
    };
    let tick = |at: &str| json!({"task": "tick", "scheduled_time": at});

    // 07:55Z is 23:55 in Los Angeles: its end of day, and its 22:00 slot.
    run(tick("2026-11-30T07:55:00Z")).await;
    let mut expected = pairs(
        "labar",
        &[
            "product_sync",
            "event_sync",
            "inventory_sync",
            "reconcile",
            "partner_catalog",
            "backfill",
        ],
    );
    expected.push(("labar".into(), "inventory_sync".into()));
    expected.sort();
    assert_eq!(queued_jobs(&stack).await, expected);

    // Delivered again, and the window's later ticks: nothing more.
    for at in [
        "2026-11-30T07:55:00Z",
        "2026-11-30T08:00:00Z",
        "2026-11-30T08:45:00Z",
    ] {
        run(tick(at)).await;
    }
    assert_eq!(
        queued_jobs(&stack).await,
        pairs("labar", &["inventory_sync"]),
        "only the 00:00 slot of the retailer option, at local midnight"
    );
    let last = state
        .last_slot(
            &domain::ids::InstanceName::parse("labar").unwrap(),
            "end_of_day",
        )
        .await
        .unwrap();
    assert_eq!(
        last.as_deref(),
        Some("eod:2026-11-29@2026-11-30T07:55:00Z"),
        "the slot and the instant its window opened"
    );

    // 23:55Z: UTC's end of day is demo's; Los Angeles is at 15:55.
    run(tick("2026-11-30T23:55:00Z")).await;
    assert_eq!(
        queued_jobs(&stack).await,
        [
            pairs(
                "demo",
                &[
                    "product_sync",
                    "event_sync",
                    "inventory_sync",
                    "reconcile",
                    "partner_catalog",
                    "backfill"
                ]
            ),
            pairs("labar", &["inventory_sync"]),
        ]
        .concat()
    );

    // By hand: one task for one instance, or for every one with credentials.
    run(json!({"task": "reconcile", "instance": "labar"})).await;
    assert_eq!(queued_jobs(&stack).await, pairs("labar", &["reconcile"]));
    run(json!({"task": "event_sync"})).await;
    assert_eq!(
        queued_jobs(&stack).await,
        [
            pairs("demo", &["event_sync"]),
            pairs("labar", &["event_sync"])
        ]
        .concat()
    );
}

#[tokio::test]
async fn the_seed_orders_naive_updated_date_and_its_rewards_cards_offset_date_land_on_the_same_instant_in_los_angeles(
) {
    let stack = Stack::new().await;
    stack
        .put_secrets(
            &json!({DEMO_INSTANCE: {"webhook": [DEMO_SECRET], "time_zone": "America/Los_Angeles"}})
                .to_string(),
        )
        .await;
    // The seed's order: `updated_date` 2016-04-13T10:29:19 (no offset) and
    // its card's `gift_reward_data.updated_date` 2016-04-13T17:29:15+00:00.
    let (status, answer) = deliver(
        &stack.receiver(RevelEventType::OrderFinalized),
        signed_request(
            RevelEventType::OrderFinalized,
            &payload("order-finalized.json"),
        ),
    )
    .await;
    expect_outcome(status, &answer, 200, "accepted");
    let key = event_id(&answer);
    let wall = domain::sources::parse_timestamp_micros("2016-04-13T10:29:19").unwrap();
    assert!(
        key.ends_with(&format!("@{wall}")),
        "the key is made of the date as written, so no zone change moves it: {key}"
    );
    let record = stack.event(&key).await.unwrap();
    assert_eq!(text(&record, "time_zone"), "America/Los_Angeles");

    stack.settle().await;
    let entities = stack.entities().await;
    let version_of = |kind: &str| -> i64 {
        let entity = entities
            .iter()
            .find(|e| text(e, "kind") == kind)
            .unwrap_or_else(|| panic!("no {kind}"));
        text(entity, "version").parse().unwrap()
    };
    let order = version_of("order");
    let card = version_of("rewards_card");
    let at = |raw: &str| domain::sources::parse_timestamp_micros(raw).unwrap();
    assert_eq!(order, at("2016-04-13T17:29:19Z"), "10:29:19 PDT");
    assert_eq!(card, at("2016-04-13T17:29:15Z"));
    assert_eq!(
        order - card,
        4_000_000,
        "the card was updated 4 seconds before the order closed, not 7 hours after"
    );
}

#[tokio::test]
async fn a_pull_in_a_zone_behind_utc_fetches_an_object_updated_after_the_checkpoint_on_the_local_clock(
) {
    let stack = Stack::new().await;
    stack
        .put_secrets(
            &json!({DEMO_INSTANCE: {"webhook": [DEMO_SECRET], "api_key": API_KEY, "api_secret": API_SECRET,
                                    "time_zone": "America/Los_Angeles"}})
            .to_string(),
        )
        .await;
    // The last pull's checkpoint: 15:00 in Los Angeles (UTC-8 in November).
    let checkpoint = "2026-11-20T23:00:00Z";
    stack
        .sync_state()
        .save(
            &demo(),
            "inventory.CurrentStock",
            &ports::sync_state::Cursor {
                checkpoint: Some(checkpoint.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Revel compares `updated_date__gte` with its own naive, local dates:
    // the stock changed at 16:00 local, after the checkpoint, is only found
    // by a filter on the local clock (one in UTC, 23:00, misses it).
    let revel = MockServer::start().await;
    let stock = json!({"id": 77, "product": "/resources/Product/5/", "quantity": 12, "updated_date": "2026-11-20T16:00:00"});
    Mock::given(method("GET"))
        .and(path("/demo/resources/CurrentStock/"))
        .and(query_param("updated_date__gte", "2026-11-20T15:00:00"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"meta": {"next": null, "total_count": 1}, "objects": [stock]}),
            ),
        )
        .with_priority(1)
        .mount(&revel)
        .await;
    Mock::given(method("GET"))
        .and(path("/demo/resources/CurrentStock/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"meta": {"next": null, "total_count": 0}, "objects": []})),
        )
        .mount(&revel)
        .await;
    stack
        .worker(fast_api(&revel.uri()), 100, None)
        .run(&job(JobKind::InventorySync), soon())
        .await
        .unwrap();
    let entities = stack.entities().await;
    let inventory = entities
        .iter()
        .find(|e| text(e, "kind") == "inventory")
        .expect("the stock changed at 16:00 local was fetched");
    assert_eq!(
        text(inventory, "version"),
        domain::sources::parse_timestamp_micros("2026-11-21T00:00:00Z")
            .unwrap()
            .to_string(),
        "its version is 16:00 in Los Angeles"
    );
    let cursor = stack
        .sync_state()
        .load(&demo(), "inventory.CurrentStock")
        .await
        .unwrap();
    let advanced = cursor.checkpoint.expect("the pull completed");
    assert!(
        advanced.ends_with('Z') && advanced.as_str() > checkpoint,
        "checkpoints are kept as instants: {advanced}"
    );
}
