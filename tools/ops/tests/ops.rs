//! The `revel-ops` binary against the local AWS endpoint of the integration
//! harness (moto, started on a free loopback port; each test with its own
//! tables and queues from template.yaml).

mod common;

use common::*;
use std::sync::Arc;

use aws_adapters::dynamodb::{DynamoEntityStore, DynamoEventStore};
use aws_adapters::sqs::SqsJobQueue;
use aws_adapters::sync_state::DynamoSyncState;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use domain::idempotency::sha256_hex;
use domain::ids::{EventKey, InstanceName};
use integration_tests::{deliver, expect_outcome, payload, signed_request, text, Stack};
use pipeline::process::Processor;
use ports::store::{ArchivedBody, BodyEncoding, EventRecord, EventStatus, EventStore, Origin};
use ports::sync_state::CallBudget;
use ports::sync_state::{Cursor, RunProgress, SyncState};
use serde_json::Value;
use vendors::revel::RevelEventType;

fn keys_of(lines: &[Value]) -> Vec<String> {
    let mut keys: Vec<String> = lines
        .iter()
        .map(|l| l["event_key"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    keys
}

/// The line about `key` of a `--json` batch run, and its outcome.
fn outcome_of(lines: &[Value], key: &str) -> Option<String> {
    lines
        .iter()
        .find(|l| l["event_key"] == key)
        .map(|l| l["outcome"].as_str().unwrap().to_owned())
}

const CUSTOMER_KEY_PREFIX: &str = "revel:demo:customer.created:";

/// A customer.created record as an earlier version of the code could have
/// stored it (quarantined for a reason this code no longer has, say), put
/// with the receivers' own adapter.
async fn archive_directly(
    stack: &Stack,
    instance: &str,
    body: &[u8],
    status: EventStatus,
    received_at_micros: i64,
) -> EventKey {
    let key = EventKey::parse(&format!(
        "revel:{instance}:customer.created:sha256:{}",
        sha256_hex(body)
    ))
    .unwrap();
    let archived = ArchivedBody::from_raw(body);
    let record = EventRecord {
        event_key: key.clone(),
        source: "revel".into(),
        instance: InstanceName::parse(instance).unwrap(),
        event_type: "customer.created".into(),
        status,
        received_at_micros,
        body_encoding: if archived.gzip {
            BodyEncoding::Gzip
        } else {
            BodyEncoding::Identity
        },
        body_bytes: body.len() as u64,
        body: archived.bytes,
        body_sha256: sha256_hex(body),
        headers: [
            ("x-revel-instance", instance),
            ("x-revel-event-type", "customer.created"),
            ("x-revel-signature", "0123456789abcdef-a-signature"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        quarantine_reason: (status == EventStatus::Quarantined).then(|| "missing_field".into()),
        entity_key: None,
        conflict_of: None,
        request_id: "older-version".into(),
        origin: Origin::Webhook,
        expires_at: 4_000_000_000,
        replayed_at: None,
        time_zone: None,
    };
    events_store(stack)
        .put_new(&record)
        .await
        .expect("archived");
    key
}

fn events_store(stack: &Stack) -> DynamoEventStore {
    DynamoEventStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.config.events_table,
    )
}

fn now_micros() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

async fn status_of(stack: &Stack, key: &EventKey) -> String {
    text(&stack.event(key.as_str()).await.expect("record"), "status")
}

/// The customer sample, delivered and accepted; its event key.
async fn delivered_customer(stack: &Stack) -> String {
    let receiver = stack.receiver(RevelEventType::CustomerCreated);
    let request = signed_request(RevelEventType::CustomerCreated, &payload("customer.json"));
    let (status, answer) = deliver(&receiver, request).await;
    expect_outcome(status, &answer, 200, "accepted");
    answer["event_id"].as_str().unwrap().to_owned()
}

/// A body the order receiver can't read, quarantined through the real path.
async fn delivered_garbage(stack: &Stack) -> String {
    let receiver = stack.receiver(RevelEventType::OrderFinalized);
    let request = signed_request(RevelEventType::OrderFinalized, b"{not json");
    let (status, answer) = deliver(&receiver, request).await;
    expect_outcome(status, &answer, 202, "quarantined");
    answer["event_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn events_are_listed_by_instance_type_status_and_time() {
    let stack = Stack::new().await;
    let customer = delivered_customer(&stack).await;
    let garbage = delivered_garbage(&stack).await;
    // 2020-01-01T00:00:00Z, another instance, stored by the earlier status
    // design (`done`).
    let old = archive_directly(
        &stack,
        "other",
        b"{\"uuid\": \"x\"}",
        EventStatus::Received,
        1_577_836_800_000_000,
    )
    .await;
    let mut legacy = stack.event(old.as_str()).await.unwrap();
    legacy.insert("status".into(), AttributeValue::S("done".into()));
    aws_sdk_dynamodb::Client::new(&stack.sdk)
        .put_item()
        .table_name(&stack.config.events_table)
        .set_item(Some(legacy))
        .send()
        .await
        .unwrap();
    let list = |args: &[&str]| {
        let mut all = vec!["events", "list", "--json"];
        all.extend_from_slice(args);
        keys_of(&json_lines(&ops(&stack, &all)))
    };
    let mut everything = vec![customer.clone(), garbage.clone(), old.to_string()];
    everything.sort();
    assert_eq!(list(&[]), everything);
    assert_eq!(list(&["--status", "quarantined"]), vec![garbage.clone()]);
    let mut received = vec![customer.clone(), old.to_string()];
    received.sort();
    assert_eq!(list(&["--status", "received"]), received);
    assert_eq!(
        list(&["--status", "done"]),
        received,
        "the earlier design's name still lists received events"
    );
    assert_eq!(list(&["--instance", "other"]), vec![old.to_string()]);
    assert_eq!(
        list(&["--type", "customer.created", "--instance", "demo"]),
        vec![customer.clone()]
    );
    let mut recent = vec![customer.clone(), garbage.clone()];
    recent.sort();
    assert_eq!(list(&["--since", "2021-01-01T00:00:00Z"]), recent);
    assert_eq!(
        list(&["--until", "2021-01-01T00:00:00+00:00"]),
        vec![old.to_string()]
    );
    assert_eq!(
        list(&["--status", "received", "--source", "booking"]),
        Vec::<String>::new()
    );

    let table = succeeded(&ops(&stack, &["events", "list", "--status", "quarantined"]));
    assert!(
        table.contains(&garbage) && table.contains("[invalid_json]"),
        "{table}"
    );
    assert!(table.contains("1 event(s)"), "{table}");
}

#[tokio::test]
async fn show_hides_contact_and_payment_fields_and_signatures_unless_asked() {
    let stack = Stack::new().await;
    let key = delivered_customer(&stack).await;
    stack.settle().await;
    let record = stack.event(&key).await.unwrap();
    let signature = match &record["headers"] {
        AttributeValue::M(h) => h["x-revel-signature"].as_s().unwrap().clone(),
        other => panic!("{other:?}"),
    };

    let shown = succeeded(&ops(&stack, &["events", "show", &key]));
    assert!(
        shown.contains("58126996-3fc8-4c87-b326-b4762783c863"),
        "{shown}"
    );
    assert!(shown.contains("status              received"), "{shown}");
    for hidden in [
        "customer@example.com",
        "1231231234",
        "11 Wall St",
        &signature,
    ] {
        assert!(!shown.contains(hidden), "{hidden} printed:\n{shown}");
    }

    let full = json_lines(&ops(
        &stack,
        &["events", "show", &key, "--show-body", "--json"],
    ));
    let full = &full[0];
    assert_eq!(full["body"]["email"], "customer@example.com");
    assert_eq!(full["body_encoding"], "gzip");
    assert_eq!(full["headers"]["x-revel-signature"], "<redacted>");
    assert_eq!(full["entity"]["revision"], 1, "{full}");
    assert!(!full.to_string().contains(&signature));
}

#[tokio::test]
async fn a_quarantined_event_is_applied_exactly_once_when_replayed() {
    let stack = Stack::new().await;
    let body = payload("customer.json");
    let key = archive_directly(
        &stack,
        "demo",
        &body,
        EventStatus::Quarantined,
        now_micros(),
    )
    .await;
    stack.settle().await;
    assert!(
        stack.entities().await.is_empty(),
        "a quarantined record is skipped"
    );

    let first = succeeded(&ops(&stack, &["replay", key.as_str()]));
    assert!(first.contains("queued"), "{first}");
    assert_eq!(status_of(&stack, &key).await, "received");
    stack.settle().await;
    let entities = stack.entities().await;
    assert_eq!(entities.len(), 1);
    assert_eq!(text(&entities[0], "revision"), "1");
    assert_eq!(text(&entities[0], "last_event_key"), key.as_str());

    let second = json_lines(&ops(&stack, &["replay", key.as_str(), "--json"]));
    assert_eq!(outcome_of(&second, key.as_str()).as_deref(), Some("queued"));
    stack.settle().await;
    assert_eq!(text(&stack.entities().await[0], "revision"), "1");
    let jobs = stack.take_jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["event_key"], key.as_str());
}

#[tokio::test]
async fn replaying_the_quarantined_events_takes_back_what_is_understood_and_leaves_the_rest() {
    let stack = Stack::new().await;
    let understood = archive_directly(
        &stack,
        "demo",
        &payload("customer.json"),
        EventStatus::Quarantined,
        now_micros(),
    )
    .await;
    let garbage = delivered_garbage(&stack).await;

    let lines = json_lines(&ops(
        &stack,
        &["replay", "--quarantined", "--instance", "demo", "--json"],
    ));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        outcome_of(&lines, understood.as_str()).as_deref(),
        Some("queued")
    );
    assert_eq!(
        outcome_of(&lines, &garbage).as_deref(),
        Some("still_quarantined")
    );
    assert_eq!(status_of(&stack, &understood).await, "received");
    assert_eq!(
        status_of(&stack, &EventKey::parse(&garbage).unwrap()).await,
        "quarantined"
    );
    stack.settle().await;
    assert_eq!(stack.entities().await.len(), 1);
    assert_eq!(stack.jobs_waiting().await, 1);
}

#[tokio::test]
async fn replaying_an_applied_event_hands_it_back_and_changes_nothing() {
    let stack = Stack::new().await;
    let key = delivered_customer(&stack).await;
    stack.settle().await;
    let jobs = stack.take_jobs().await;
    assert_eq!(jobs.len(), 1);
    let before = stack.entities().await;

    let lines = json_lines(&ops(&stack, &["replay", &key, "--json"]));
    assert_eq!(
        outcome_of(&lines, &key).as_deref(),
        Some("queued"),
        "{lines:?}"
    );
    assert!(stack.event(&key).await.unwrap().contains_key("replayed_at"));
    stack.settle().await;
    assert_eq!(stack.entities().await, before);
    // The processor queues the follow-up again (it can't tell a replay from
    // a retry after a lost send); it is the same job, under the same
    // deduplication id.
    let again = stack.take_jobs().await;
    assert!(
        again.len() <= 1 && again.iter().all(|job| *job == jobs[0]),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_record_stored_by_the_earlier_status_design_is_replayed_like_a_received_one() {
    let stack = Stack::new().await;
    let key = archive_directly(
        &stack,
        "demo",
        &payload("customer.json"),
        EventStatus::Received,
        now_micros(),
    )
    .await;
    // As the earlier design left it: `done`, and never processed.
    let mut item = stack.event(key.as_str()).await.unwrap();
    item.insert("status".into(), AttributeValue::S("done".into()));
    aws_sdk_dynamodb::Client::new(&stack.sdk)
        .put_item()
        .table_name(&stack.config.events_table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    // The stream's earlier records (the earlier design's writes) passed
    // over unapplied, so only the replay can bring the record to the processor.
    let mut poller = stack.stream_poller().with_max_retry_attempts(1);
    stack
        .process_stream(&mut poller, &processor_without_entities(&stack), 10)
        .await;
    assert!(stack.entities().await.is_empty());

    let lines = json_lines(&ops(&stack, &["replay", key.as_str(), "--json"]));
    assert_eq!(
        outcome_of(&lines, key.as_str()).as_deref(),
        Some("queued"),
        "{lines:?}"
    );
    assert_eq!(status_of(&stack, &key).await, "received");
    stack
        .process_stream(&mut poller, &stack.processor(), 10)
        .await;
    assert_eq!(stack.entities().await.len(), 1);
}

#[tokio::test]
async fn a_dry_run_replay_shows_the_plan_and_writes_nothing() {
    let stack = Stack::new().await;
    let key = archive_directly(
        &stack,
        "demo",
        &payload("customer.json"),
        EventStatus::Quarantined,
        now_micros(),
    )
    .await;
    let before = stack.event(key.as_str()).await;

    let out = succeeded(&ops(&stack, &["replay", "--dry-run", key.as_str()]));
    assert!(
        out.contains("would_apply") && out.contains("dry run"),
        "{out}"
    );
    assert!(
        out.contains("entity revel:demo:customer:58126996-3fc8-4c87-b326-b4762783c863"),
        "{out}"
    );
    assert_eq!(stack.event(key.as_str()).await, before);
    stack.settle().await;
    assert!(stack.entities().await.is_empty());
    assert_eq!(stack.jobs_waiting().await, 0);
}

fn dlq_url(stack: &Stack) -> String {
    stack.provisioned.resources["JobsDeadLetterQueue"]
        .reference
        .clone()
}

async fn dead_letter(stack: &Stack, body: &str, group: &str) {
    aws_sdk_sqs::Client::new(&stack.sdk)
        .send_message()
        .queue_url(dlq_url(stack))
        .message_body(body)
        .message_group_id(group)
        .message_deduplication_id(sha256_hex(body.as_bytes()))
        .send()
        .await
        .expect("send to the DLQ");
}

/// Every message on the jobs queue: body and group.
async fn jobs_with_groups(stack: &Stack) -> Vec<(String, String)> {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let mut found = Vec::new();
    loop {
        let messages = sqs
            .receive_message()
            .queue_url(&stack.config.jobs_queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            return found;
        }
        for m in messages {
            let group = m.attributes.unwrap()[&MessageSystemAttributeName::MessageGroupId].clone();
            found.push((m.body.unwrap(), group));
        }
    }
}

const JOB: &str = r#"{"job":"sync_entity","source":"revel","instance":"demo","event_type":"customer.created","event_key":"revel:demo:customer.created:x","entity_key":"revel:demo:customer:c-1"}"#;

#[tokio::test]
async fn redrive_moves_a_dead_letter_back_to_the_jobs_queue_exactly_once() {
    let stack = Stack::new().await;
    dead_letter(&stack, JOB, "revel:demo:customer:c-1").await;

    let out = succeeded(&ops(&stack, &["dlq", "redrive"]));
    assert!(out.contains("1 message(s) moved"), "{out}");
    assert!(stack.dead_letters().await.is_empty());
    let again = succeeded(&ops(&stack, &["dlq", "redrive", "--max", "5"]));
    assert!(again.contains("0 message(s) moved"), "{again}");
    assert_eq!(
        jobs_with_groups(&stack).await,
        vec![(JOB.to_owned(), "revel:demo:customer:c-1".to_owned())]
    );
}

#[tokio::test]
async fn redrive_stops_at_max_and_a_dry_run_moves_nothing() {
    let stack = Stack::new().await;
    dead_letter(&stack, JOB, "g-1").await;
    dead_letter(&stack, &JOB.replace("c-1", "c-2"), "g-2").await;

    let dry = succeeded(&ops(&stack, &["dlq", "redrive", "--dry-run"]));
    assert!(dry.contains("2 message(s) would move"), "{dry}");
    assert_eq!(stack.jobs_waiting().await, 0);

    let one = succeeded(&ops(&stack, &["dlq", "redrive", "--max", "1"]));
    assert!(one.contains("1 message(s) moved"), "{one}");
    assert_eq!(jobs_with_groups(&stack).await.len(), 1);
    assert_eq!(stack.dead_letters().await.len(), 1);
}

#[tokio::test]
async fn checkpoints_and_budgets_show_what_the_sync_state_holds() {
    let stack = Stack::new().await;
    let state = DynamoSyncState::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        stack.sync_config(1000).sync_state_table,
        1000,
    );
    let demo = InstanceName::parse("demo").unwrap();
    let cursor = Cursor {
        checkpoint: Some("2024-05-01T00:00:00".into()),
        run: Some(RunProgress {
            started_at: "2024-05-02T00:00:00".into(),
            since: Some("2024-05-01T00:00:00".into()),
            offset: 40,
            fetched: 40,
            total: None,
            began_at: 1_714_608_000_000_000,
        }),
        // 2024-05-01T00:00:00Z
        completed_run_began_at: Some(1_714_521_600_000_000),
    };
    state.save(&demo, "catalog.Product", &cursor).await.unwrap();
    for _ in 0..3 {
        state.spend_one(&demo).await.unwrap();
    }

    let cursors = json_lines(&ops(&stack, &["checkpoints", "--json"]));
    assert_eq!(cursors.len(), 1, "{cursors:?}");
    assert_eq!(cursors[0]["pull"], "catalog.Product");
    assert_eq!(cursors[0]["checkpoint"], "2024-05-01T00:00:00");
    assert_eq!(cursors[0]["run"]["offset"], 40);
    assert_eq!(cursors[0]["completed_run_began_at"], "2024-05-01T00:00:00Z");

    let budgets = json_lines(&ops(
        &stack,
        &["budgets", "--json", "--daily-budget", "1000"],
    ));
    assert_eq!(budgets.len(), 1, "{budgets:?}");
    assert_eq!(
        (
            &budgets[0]["instance"],
            &budgets[0]["used"],
            &budgets[0]["remaining"]
        ),
        (&Value::from("demo"), &Value::from(3), &Value::from(997))
    );
    let table = succeeded(&ops(&stack, &["budgets", "--instance", "demo"]));
    assert!(table.contains("demo") && table.contains("997"), "{table}");
}

#[tokio::test]
async fn failures_are_short_messages_with_their_own_exit_codes() {
    let stack = Stack::new().await;
    let missing = ops(
        &stack,
        &["events", "show", &format!("{CUSTOMER_KEY_PREFIX}nothing")],
    );
    assert_eq!(missing.status.code(), Some(4));
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(message.starts_with("revel-ops: no event"), "{message}");

    let unnamed = ops_with(&stack, &["events", "list"], &["EVENTS_TABLE"], &[]);
    assert_eq!(unnamed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unnamed.stderr).contains("EVENTS_TABLE is not set"));

    let partly = ops(
        &stack,
        &["replay", &format!("{CUSTOMER_KEY_PREFIX}nothing")],
    );
    assert_eq!(
        partly.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&partly.stderr)
    );

    let no_queue = ops_with(
        &stack,
        &["processor", "redrive"],
        &["EVENTS_PROCESSOR_FAILURE_QUEUE_URL"],
        &[],
    );
    assert_eq!(no_queue.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_queue.stderr)
        .contains("EVENTS_PROCESSOR_FAILURE_QUEUE_URL is not set"));
}

fn failure_queue(stack: &Stack) -> String {
    stack.provisioned.resources["EventsProcessorFailureQueue"]
        .reference
        .clone()
}

/// The failure reports waiting (received and made visible again at once).
async fn failure_reports(stack: &Stack) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let messages = sqs
        .receive_message()
        .queue_url(failure_queue(stack))
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .expect("receive failure reports")
        .messages
        .unwrap_or_default();
    messages.into_iter().filter_map(|m| m.body).collect()
}

/// The processor as its `main` builds it, but writing entities to a table
/// that doesn't exist: every record fails, for real.
fn processor_without_entities(stack: &Stack) -> Processor {
    Processor::new(
        Arc::new(DynamoEntityStore::new(
            aws_sdk_dynamodb::Client::new(&stack.sdk),
            "no-such-entities-table",
        )),
        Arc::new(SqsJobQueue::new(
            aws_sdk_sqs::Client::new(&stack.sdk),
            &stack.config.jobs_queue_url,
        )),
    )
}

#[tokio::test]
async fn a_record_the_processor_gave_up_on_is_redriven_applied_once_and_its_report_deleted() {
    let stack = Stack::new().await;
    let key = delivered_customer(&stack).await;
    // The stream read as the event source mapping reads it, with a
    // processor that fails until the record is given up on and reported.
    let mut poller = stack.stream_poller().with_max_retry_attempts(3);
    let polls = stack
        .process_stream(&mut poller, &processor_without_entities(&stack), 10)
        .await;
    assert_eq!(
        polls.iter().map(|p| p.given_up).sum::<usize>(),
        1,
        "{polls:?}"
    );
    assert!(stack.entities().await.is_empty());
    let reports = failure_reports(&stack).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    let queue = failure_queue(&stack);

    // A dry run names the record and what replaying it would do, and
    // leaves the record and the report as they are.
    let record_before = stack.event(&key).await;
    let dry = json_lines(&ops(
        &stack,
        &[
            "processor",
            "redrive",
            "--queue-url",
            &queue,
            "--dry-run",
            "--json",
        ],
    ));
    assert_eq!(
        outcome_of(&dry, &key).as_deref(),
        Some("would_reprocess"),
        "{dry:?}"
    );
    assert!(
        dry.iter()
            .any(|l| l["outcome"] == "would_delete" && l["records"] == 1),
        "{dry:?}"
    );
    assert_eq!(stack.event(&key).await, record_before);
    assert_eq!(failure_reports(&stack).await, reports);

    // The real run, reading the queue named by the functions' variable.
    let out = succeeded(&ops_with(
        &stack,
        &["processor", "redrive"],
        &[],
        &[("EVENTS_PROCESSOR_FAILURE_QUEUE_URL", &queue)],
    ));
    assert!(out.contains(&format!("{key}  queued")), "{out}");
    assert!(
        out.contains("1 failure report(s): 1 redriven and deleted (1 record(s)"),
        "{out}"
    );
    assert!(failure_reports(&stack).await.is_empty());
    assert!(stack.event(&key).await.unwrap().contains_key("replayed_at"));

    // The same reader, past the record it gave up on, now with the
    // processor as `main` builds it: only the replay brings the record back.
    stack
        .process_stream(&mut poller, &stack.processor(), 10)
        .await;
    let entities = stack.entities().await;
    assert_eq!(entities.len(), 1);
    assert_eq!(text(&entities[0], "revision"), "1");
    assert_eq!(text(&entities[0], "last_event_key"), key);
    let jobs = stack.take_jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["event_key"], key.as_str());

    // Nothing left to redrive; nothing applied again.
    let again = succeeded(&ops(
        &stack,
        &["processor", "redrive", "--queue-url", &queue],
    ));
    assert!(again.contains("0 failure report(s)"), "{again}");
    assert_eq!(
        stack
            .process_stream(&mut poller, &stack.processor(), 10)
            .await
            .len(),
        0
    );
    assert_eq!(text(&stack.entities().await[0], "revision"), "1");
}

#[tokio::test]
async fn a_report_whose_records_cant_be_handed_back_is_kept() {
    let stack = Stack::new().await;
    let queue = failure_queue(&stack);
    // A report naming a stream of another table: none of its records is
    // this events table's to replay.
    let foreign = local_stack::stream::failure_report(
        "arn:aws:dynamodb:us-east-1:123456789012:table/someone-else/stream/2026-01-01T00:00:00.000",
        "shardId-1",
        "100",
        51,
    );
    aws_sdk_sqs::Client::new(&stack.sdk)
        .send_message()
        .queue_url(&queue)
        .message_body(foreign.to_string())
        .send()
        .await
        .unwrap();

    let out = ops(
        &stack,
        &["processor", "redrive", "--queue-url", &queue, "--max", "5"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stdout(&out).contains("kept"), "{}", stdout(&out));
    assert!(stdout(&out).contains("someone-else"), "{}", stdout(&out));
    assert_eq!(failure_reports(&stack).await, vec![foreign.to_string()]);
}

#[tokio::test]
async fn instances_shows_each_instances_zone_end_of_day_and_2_hourly_option_and_no_secret() {
    let stack = Stack::new().await;
    stack
        .put_secrets(
            &serde_json::json!({
                "demo": {"webhook": "hook-secret-1", "api_key": "key-1", "api_secret": "api-secret-1"},
                "labar": {"webhook": ["hook-secret-2", "hook-secret-3"], "api_key": "key-2", "api_secret": "api-secret-2",
                          "time_zone": "America/Los_Angeles", "end_of_day": "22:30", "inventory_every_2h": true},
                "hooks": "hook-secret-4",
                "typo": {"webhook": "hook-secret-5", "time_zone": "America/Los_Angles"},
            })
            .to_string(),
        )
        .await;
    let state = stack.sync_state();
    let labar = InstanceName::parse("labar").unwrap();
    state
        .mark_slot(&labar, "end_of_day", "eod:2026-11-29@2026-11-30T06:30:00Z")
        .await
        .unwrap();

    let output = ops_with(
        &stack,
        &["instances", "--json"],
        &[],
        &[("DEFAULT_TIME_ZONE", "Europe/Paris")],
    );
    let lines = json_lines(&output);
    let by_name = |name: &str| {
        lines
            .iter()
            .find(|l| l["instance"] == name)
            .unwrap_or_else(|| panic!("{name} in {lines:?}"))
            .clone()
    };
    assert_eq!(lines.len(), 4, "{lines:?}");
    let la = by_name("labar");
    assert_eq!(
        (
            &la["time_zone"],
            &la["time_zone_is_default"],
            &la["end_of_day"],
            &la["inventory_every_2h"],
            &la["api_credentials"],
        ),
        (
            &Value::from("America/Los_Angeles"),
            &Value::from(false),
            &Value::from("22:30"),
            &Value::from(true),
            &Value::from(true),
        )
    );
    assert_eq!(
        la["last_queued"],
        serde_json::json!(["eod:2026-11-29@2026-11-30T06:30:00Z"])
    );
    let demo = by_name("demo");
    assert_eq!(
        (
            &demo["time_zone"],
            &demo["time_zone_is_default"],
            &demo["end_of_day"]
        ),
        (
            &Value::from("Europe/Paris"),
            &Value::from(true),
            &Value::from("23:55")
        )
    );
    assert_eq!(
        by_name("hooks")["next_end_of_day"],
        Value::Null,
        "not scheduled: no API credentials"
    );

    // A misspelt zone keeps the instance, on the default zone, and says so.
    let typo = by_name("typo");
    assert_eq!(typo["time_zone"], "Europe/Paris");
    assert_eq!(
        typo["unusable_settings"],
        serde_json::json!([
            "time_zone: unknown time zone \"America/Los_Angles\" (an IANA name such as America/Los_Angeles)"
        ])
    );
    assert_eq!(by_name("labar")["unusable_settings"], serde_json::json!([]));

    let table = succeeded(&ops(&stack, &["instances"]));
    assert!(
        table.contains("America/Los_Angeles") && table.contains("22:30"),
        "{table}"
    );
    assert!(
        table.contains("  ! time_zone: unknown time zone \"America/Los_Angles\""),
        "{table}"
    );
    let everything = format!("{}{table}", stdout(&output));
    for secret in ["hook-secret", "key-1", "key-2", "api-secret"] {
        assert!(!everything.contains(secret), "{secret} shown: {everything}");
    }
}
