//! Fault injection through the real handlers and the real AWS SDK (with the
//! functions' timeouts and retries) against the local endpoint, each AWS
//! service behind its own fault proxy: DynamoDB throttling, timeouts
//! (requests that never reach the service, and writes whose answer is
//! lost), refused connections, SQS and Secrets Manager down at cold start
//! and mid-run, the process killed between steps, the done mark failing
//! after the answer.
//!
//! Every test plays Revel: it delivers a set of events while the fault
//! holds, clears the fault, and redelivers every event that did not get a
//! 2xx after a pause, as Revel does (for about 36 minutes). Right after each
//! 2xx it checks that the event is stored with its effects in place; at the
//! end, that every event is stored exactly once, every entity holds its
//! newest version, written once per version, and every follow-up job is on
//! the queue exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::*;
use serde_json::{json, Value};
use shared::config::Config;
use shared::ingest::Ingestor;
use shared::sources::revel::RevelEventType;

const KIND: RevelEventType = RevelEventType::CustomerUpdated;

/// Longest a single delivery may take: the functions' SDK timeouts allow
/// at most about 3 s per sequential step, and a delivery has three
/// (archive put, entity and job together, lease release); Revel gives 10 s.
const DELIVERY_BOUND: Duration = Duration::from_secs(9);

/// One customer update Revel sends.
#[derive(Debug, Clone)]
struct Event {
    uuid: String,
    updated: String,
    body: Vec<u8>,
}

/// Five updates of four customers; the first customer twice (an older
/// version, then a newer one).
fn customer_updates() -> Vec<Event> {
    let versions = [
        (0, "2026-11-24T10:00:00.000001"),
        (0, "2026-11-24T10:00:05.000001"),
        (1, "2026-11-24T10:00:01.000001"),
        (2, "2026-11-24T10:00:02.000001"),
        (3, "2026-11-24T10:00:03.000001"),
    ];
    versions
        .iter()
        .map(|(customer, updated)| {
            let uuid = format!("00000000-0000-4000-8000-00000000000{customer}");
            let body = json!({"uuid": uuid, "updated_date": updated,
                              "first_name": format!("Customer {customer}"), "email": "c@example.com",
                              "cc_last_4_digits": "4242"})
            .to_string()
            .into_bytes();
            Event {
                uuid,
                updated: (*updated).to_owned(),
                body,
            }
        })
        .collect()
}

/// One delivery and its answer.
#[derive(Debug, Clone)]
struct Attempt {
    event: usize,
    status: u16,
    answer: Value,
    took: Duration,
}

impl Attempt {
    fn label(&self) -> String {
        let what = self.answer["status"]
            .as_str()
            .or(self.answer["error"].as_str())
            .unwrap_or("?");
        format!("{} {what}", self.status)
    }
}

/// Plays Revel: delivers, and redelivers what did not get a 2xx.
struct Revel {
    stack: Arc<Stack>,
    receiver: Arc<Ingestor>,
    events: Arc<Vec<Event>>,
    /// Event keys that got a 2xx (each checked stored at that moment).
    acknowledged: Arc<Mutex<BTreeMap<usize, String>>>,
    attempts: Vec<Attempt>,
    /// Deliveries of a round at once (one receiver serving them
    /// concurrently), or one after the other, as one Lambda execution
    /// environment serves them.
    concurrent: bool,
}

impl Revel {
    fn new(stack: &Arc<Stack>, receiver: Ingestor) -> Self {
        Self {
            stack: Arc::clone(stack),
            receiver: Arc::new(receiver),
            events: Arc::new(customer_updates()),
            acknowledged: Arc::default(),
            attempts: Vec::new(),
            concurrent: true,
        }
    }

    fn one_at_a_time(mut self) -> Self {
        self.concurrent = false;
        self
    }

    fn pending(&self) -> Vec<usize> {
        let done = self.acknowledged.lock().unwrap();
        (0..self.events.len())
            .filter(|i| !done.contains_key(i))
            .collect()
    }

    /// Delivers every event that has no 2xx yet, all at once (Revel sends
    /// concurrently); each 2xx is checked against the tables at once.
    async fn round(&mut self) -> Vec<Attempt> {
        let mut tasks = tokio::task::JoinSet::new();
        let mut finished = Vec::new();
        for event in self.pending() {
            if !self.concurrent {
                if let Some(done) = tasks.join_next().await {
                    finished.push(done);
                }
            }
            let (stack, receiver, events, acknowledged) = (
                Arc::clone(&self.stack),
                Arc::clone(&self.receiver),
                Arc::clone(&self.events),
                Arc::clone(&self.acknowledged),
            );
            tasks.spawn(async move {
                let started = Instant::now();
                let (status, answer) =
                    deliver(&receiver, signed_request(KIND, &events[event].body)).await;
                let took = started.elapsed();
                if (200..300).contains(&status) {
                    let key = answer["event_id"].as_str().expect("event id").to_owned();
                    let count = {
                        let mut acknowledged = acknowledged.lock().unwrap();
                        acknowledged.insert(event, key.clone());
                        acknowledged.len()
                    };
                    assert_stored_now(&stack, &events[event], &key, count).await;
                }
                Attempt {
                    event,
                    status,
                    answer,
                    took,
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            finished.push(done);
        }
        let mut attempts = Vec::new();
        for attempt in finished {
            let attempt = attempt.expect("a delivery task panicked");
            assert!(
                attempt.took < DELIVERY_BOUND,
                "a delivery took {:?}: {attempt:?}",
                attempt.took
            );
            attempts.push(attempt);
        }
        attempts.sort_by_key(|a| a.event);
        self.attempts.extend(attempts.iter().cloned());
        attempts
    }

    /// After the fault cleared: redeliver what has no 2xx, after `pause`,
    /// until everything has one (at most `rounds` rounds).
    async fn retry_until_acknowledged(&mut self, pause: Duration, rounds: usize) -> Vec<Attempt> {
        let mut all = Vec::new();
        for _ in 0..rounds {
            if self.pending().is_empty() {
                return all;
            }
            tokio::time::sleep(pause).await;
            all.extend(self.round().await);
        }
        assert!(
            self.pending().is_empty(),
            "still not acknowledged after {rounds} retries: {:?}",
            self.pending()
        );
        all
    }

    fn keys(&self) -> BTreeMap<usize, String> {
        self.acknowledged.lock().unwrap().clone()
    }
}

/// Right after a 2xx: the event's record exists, its entity holds this
/// version or a newer one, and the queue holds at least one job per event
/// acknowledged so far (jobs are only taken off the queue at the end).
async fn assert_stored_now(stack: &Stack, event: &Event, key: &str, acknowledged: usize) {
    let record = stack
        .event(key)
        .await
        .unwrap_or_else(|| panic!("2xx for {key}, which is not stored"));
    let status = text(&record, "status");
    assert!(
        status == "processing" || status == "done",
        "2xx for {key} whose record is {status}"
    );
    let entity = stack
        .entity(&text(&record, "entity_key"))
        .await
        .unwrap_or_else(|| panic!("2xx for {key}, whose entity is not stored"));
    let kept = entity_state(&entity)["updated_date"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        kept >= event.updated,
        "2xx for {key}, but the entity holds the older {kept}"
    );
    let waiting = stack.jobs_waiting().await;
    assert!(
        waiting >= acknowledged,
        "2xx for {key}: {acknowledged} events acknowledged, {waiting} jobs queued"
    );
}

/// What the tables and the queue hold at the end, checked: every event
/// stored once (records `done` unless `records` says otherwise), every
/// entity at its newest version and written at most once per event (once
/// when it had one event), every job exactly once.
async fn assert_each_event_once(revel: &Revel, records: &str) {
    let stack = &revel.stack;
    let keys = revel.keys();
    assert_eq!(keys.len(), revel.events.len(), "every event acknowledged");
    let stored: BTreeMap<String, String> = stack
        .events()
        .await
        .iter()
        .map(|e| (text(e, "event_key"), text(e, "status")))
        .collect();
    let expected: BTreeSet<String> = keys.values().cloned().collect();
    assert_eq!(
        stored.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "one record per event, no other"
    );
    for (key, status) in &stored {
        assert_eq!(status, records, "record {key}");
    }

    let mut by_customer: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, event) in revel.events.iter().enumerate() {
        by_customer.entry(&event.uuid).or_default().push(i);
    }
    let entities = stack.entities().await;
    assert_eq!(entities.len(), by_customer.len(), "one entity per customer");
    for (uuid, events) in by_customer {
        let entity = entities
            .iter()
            .find(|e| text(e, "entity_id") == uuid)
            .unwrap_or_else(|| panic!("no entity for {uuid}"));
        let newest = *events
            .iter()
            .max_by_key(|i| &revel.events[**i].updated)
            .unwrap();
        let state = entity_state(entity);
        assert_eq!(state["updated_date"], revel.events[newest].updated.as_str());
        assert!(
            state.get("cc_last_4_digits").is_none(),
            "card fields are never kept"
        );
        assert_eq!(text(entity, "last_event_key"), keys[&newest]);
        let revision: usize = text(entity, "revision").parse().unwrap();
        assert!(
            (1..=events.len()).contains(&revision),
            "{uuid}: {revision} writes for {} events",
            events.len()
        );
    }

    let jobs = stack.take_jobs().await;
    let mut per_event: BTreeMap<String, usize> = BTreeMap::new();
    for job in &jobs {
        *per_event
            .entry(job["event_key"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        per_event.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "one job per event: {jobs:?}"
    );
    assert!(
        per_event.values().all(|n| *n == 1),
        "a job was queued twice: {per_event:?}"
    );
}

/// The answers of a round, summed up: `{"503 unavailable": 5}`.
fn answers(attempts: &[Attempt]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for attempt in attempts {
        *seen.entry(attempt.label()).or_insert(0) += 1;
    }
    seen
}

fn slowest(attempts: &[Attempt]) -> Duration {
    attempts.iter().map(|a| a.took).max().unwrap_or_default()
}

/// Prints one line for the README's fault table.
fn report(test: &str, during: &[Attempt], written: Written, after: &[Attempt]) {
    println!(
        "FAULT {test}: during {:?} (slowest {:?}); written during: {written:?}; after clearing: {:?} (slowest {:?})",
        answers(during),
        slowest(during),
        answers(after),
        slowest(after),
    );
}

/// A config whose lease and duplicate wait are short, so a test can outwait them.
fn short_lease(stack: &Stack, lease: Duration) -> Config {
    let mut config = stack.config.clone();
    config.settings.processing_lease = lease;
    config.settings.duplicate_wait = Duration::from_millis(300);
    config
}

async fn setup(config: Option<Config>) -> (Arc<Stack>, FaultyAws, Config) {
    let stack = Arc::new(Stack::new().await);
    let faulty = FaultyAws::new().await;
    let config = config.unwrap_or_else(|| stack.config.clone());
    (stack, faulty, config)
}

/// Clears every fault, redelivers as Revel does what got no 2xx, and checks
/// every event was then accepted and stored, applied and queued once.
async fn recovers(
    revel: &mut Revel,
    faulty: &FaultyAws,
    name: &str,
    during: &[Attempt],
    written: Written,
) {
    faulty.clear();
    let after = revel
        .retry_until_acknowledged(Duration::from_millis(200), 3)
        .await;
    all_answered(&after, 200, "status", "accepted");
    report(name, during, written, &after);
    assert_each_event_once(revel, "done").await;
}

fn all_answered(attempts: &[Attempt], status: u16, field: &str, value: &str) {
    for attempt in attempts {
        assert_eq!(
            (attempt.status, attempt.answer[field].as_str()),
            (status, Some(value)),
            "{attempt:?}"
        );
    }
}

#[tokio::test]
async fn dynamodb_throttling_that_persists_is_a_503_and_the_retries_store_each_event_once() {
    let (stack, faulty, config) = setup(None).await;
    let receiver = stack.receiver_with(KIND, faulty.clients().await, &config);
    let mut revel = Revel::new(&stack, receiver);

    faulty.events.throttle_dynamodb(None);
    faulty.entities.throttle_dynamodb(None);
    let during = revel.round().await;
    all_answered(&during, 503, "error", "unavailable");
    assert!(
        faulty.events.hits() >= 2 * during.len(),
        "the SDK retried each throttled put: {} throttled requests",
        faulty.events.hits()
    );
    let written = stack.written().await;
    assert_eq!(
        written,
        Written {
            events: 0,
            entities: 0,
            jobs: 0
        }
    );

    recovers(
        &mut revel,
        &faulty,
        "dynamodb_throttling_that_persists",
        &during,
        written,
    )
    .await;
}

#[tokio::test]
async fn brief_dynamodb_throttling_is_absorbed_by_the_sdk_retries() {
    let (stack, faulty, config) = setup(None).await;
    let receiver = stack.receiver_with(KIND, faulty.clients().await, &config);
    let mut revel = Revel::new(&stack, receiver);

    // Two throttled requests: every delivery still gets its answer in time.
    faulty.events.throttle_dynamodb(Some(2));
    let during = revel.round().await;
    all_answered(&during, 200, "status", "accepted");
    assert_eq!(faulty.events.hits(), 2);
    assert_eq!(faulty.events.fault(), Fault::None, "the budget is spent");
    report(
        "brief_dynamodb_throttling",
        &during,
        stack.written().await,
        &[],
    );
    assert_each_event_once(&revel, "done").await;
}

#[tokio::test]
async fn throttling_on_the_entities_table_only_is_finished_by_the_retries_without_a_second_job() {
    let (stack, faulty, config) = setup(None).await;
    let receiver = stack.receiver_with(KIND, faulty.clients().await, &config);
    let mut revel = Revel::new(&stack, receiver);

    faulty.entities.throttle_dynamodb(None);
    let during = revel.round().await;
    all_answered(&during, 503, "error", "unavailable");
    let written = stack.written().await;
    // Archived and released for the retry; the job went out concurrently.
    for record in stack.events().await {
        assert_eq!(text(&record, "status"), "processing");
        assert_eq!(text(&record, "lease_until"), "0", "lease released");
    }
    assert_eq!(written.events, 5);
    assert_eq!(written.entities, 0);

    recovers(
        &mut revel,
        &faulty,
        "throttling_on_the_entities_table",
        &during,
        written,
    )
    .await;
}

#[tokio::test]
async fn dynamodb_timing_out_is_a_503_within_the_deadline_and_the_retries_store_each_event_once() {
    let (stack, faulty, config) = setup(None).await;
    let receiver = stack.receiver_with(KIND, faulty.clients().await, &config);
    let mut revel = Revel::new(&stack, receiver);

    faulty.dynamodb(Fault::Blackhole);
    let during = revel.round().await;
    all_answered(&during, 503, "error", "unavailable");
    assert!(slowest(&during) < Duration::from_millis(4000));
    let written = stack.written().await;
    assert_eq!(written.events + written.entities + written.jobs, 0);

    recovers(&mut revel, &faulty, "dynamodb_timing_out", &during, written).await;
}

#[tokio::test]
async fn an_archive_put_whose_answer_is_lost_is_finished_by_the_delivery_or_its_retry() {
    let lease = Duration::from_secs(3);
    let (stack, faulty, _) = setup(None).await;
    let config = short_lease(&stack, lease);
    let receiver = stack.receiver_with(KIND, faulty.clients().await, &config);
    let mut revel = Revel::new(&stack, receiver);

    // The first put of each delivery reaches DynamoDB and is applied, but its
    // answer never comes back: the SDK times the attempt out and retries,
    // and the retry finds the record it wrote itself.
    faulty.events.swallow_responses(Some(5));
    let during = revel.round().await;
    assert_eq!(faulty.events.hits(), 5);
    for attempt in &during {
        let ok = matches!(
            (
                attempt.status,
                attempt.answer["status"].as_str(),
                attempt.answer["error"].as_str()
            ),
            (200, Some("accepted"), _) | (503, _, Some("in_progress" | "unavailable"))
        );
        assert!(ok, "{attempt:?}");
    }
    let written = stack.written().await;
    assert_eq!(written.events, 5, "every put took effect");

    faulty.clear();
    let after = revel
        .retry_until_acknowledged(lease + Duration::from_millis(1100), 3)
        .await;
    report("archive_put_answer_lost", &during, written, &after);
    assert_each_event_once(&revel, "done").await;
}

#[tokio::test]
async fn dynamodb_refusing_connections_is_a_quick_503_and_the_retries_store_each_event_once() {
    let (stack, faulty, config) = setup(None).await;
    let receiver = stack.receiver_with(KIND, faulty.clients().await, &config);
    let mut revel = Revel::new(&stack, receiver);

    faulty.dynamodb(Fault::Closed);
    let during = revel.round().await;
    all_answered(&during, 503, "error", "unavailable");
    assert!(
        slowest(&during) < Duration::from_millis(3500),
        "{:?}",
        slowest(&during)
    );
    let written = stack.written().await;
    assert_eq!(written.events + written.entities + written.jobs, 0);

    recovers(
        &mut revel,
        &faulty,
        "dynamodb_refusing_connections",
        &during,
        written,
    )
    .await;
}

#[tokio::test]
async fn sqs_down_at_cold_start_loses_no_job_and_queues_none_twice() {
    let (stack, faulty, config) = setup(None).await;
    // The function starts (config, clients, secrets warmed) while SQS is down.
    faulty.sqs.set(Fault::Closed);
    let receiver = stack.receiver_with(KIND, faulty.clients().await, &config);
    shared::function::warm(receiver.source()).await;
    let mut revel = Revel::new(&stack, receiver);

    let during = revel.round().await;
    all_answered(&during, 503, "error", "unavailable");
    let written = stack.written().await;
    assert_eq!(
        (written.events, written.entities, written.jobs),
        (5, 4, 0),
        "archived and applied, not queued: not acknowledged"
    );

    recovers(
        &mut revel,
        &faulty,
        "sqs_down_at_cold_start",
        &during,
        written,
    )
    .await;
}

#[tokio::test]
async fn sqs_timing_out_mid_run_loses_no_job_and_queues_none_twice() {
    let (stack, faulty, config) = setup(None).await;
    let receiver = stack.receiver_with(KIND, faulty.clients().await, &config);
    let mut revel = Revel::new(&stack, receiver);
    // A warm function: one delivery has gone through every service.
    let (status, _) = deliver(&revel.receiver, signed_request(KIND, &revel.events[0].body)).await;
    assert_eq!(status, 200);

    faulty.sqs.set(Fault::Blackhole);
    let during = revel.round().await;
    for attempt in &during {
        let ok = matches!(
            (
                attempt.status,
                attempt.answer["status"].as_str(),
                attempt.answer["error"].as_str()
            ),
            (503, _, Some("unavailable")) | (200, Some("duplicate"), _)
        );
        assert!(ok, "{attempt:?}");
    }
    assert!(slowest(&during) < Duration::from_millis(4000));
    let written = stack.written().await;
    assert_eq!(
        written.jobs, 1,
        "only the job of the delivery before the fault"
    );

    recovers(
        &mut revel,
        &faulty,
        "sqs_timing_out_mid_run",
        &during,
        written,
    )
    .await;
}

#[tokio::test]
async fn secrets_manager_down_at_cold_start_is_a_503_never_a_401_and_nothing_is_written() {
    let (stack, faulty, config) = setup(None).await;
    faulty.secrets.set(Fault::Closed);
    let receiver = stack.receiver_with(KIND, faulty.clients().await, &config);
    let started = Instant::now();
    shared::function::warm(receiver.source()).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "init is bounded"
    );
    let mut revel = Revel::new(&stack, receiver).one_at_a_time();

    let during = revel.round().await;
    all_answered(&during, 503, "error", "unavailable");
    let written = stack.written().await;
    assert_eq!(written.events + written.entities + written.jobs, 0);

    recovers(
        &mut revel,
        &faulty,
        "secrets_manager_down_at_cold_start",
        &during,
        written,
    )
    .await;
}

#[tokio::test]
async fn secrets_manager_down_mid_run_matters_only_once_the_cached_secrets_expire() {
    let (stack, faulty, config) = setup(None).await;
    let mut config = config;
    config.settings.secrets_ttl = Duration::from_secs(2);
    let receiver = stack.receiver_with(KIND, faulty.clients().await, &config);
    shared::function::warm(receiver.source()).await;
    let mut revel = Revel::new(&stack, receiver).one_at_a_time();

    // Within the cache's lifetime the outage is invisible.
    faulty.secrets.set(Fault::Blackhole);
    let (status, answer) =
        deliver(&revel.receiver, signed_request(KIND, &revel.events[0].body)).await;
    expect_outcome(status, &answer, 200, "accepted");
    // Once the secrets are due for a re-read, deliveries wait for Secrets
    // Manager and answer 503.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let during = revel.round().await;
    all_answered(&during, 503, "error", "unavailable");
    let written = stack.written().await;
    assert_eq!(written.events, 1, "only the delivery made before expiry");

    faulty.clear();
    let after = revel
        .retry_until_acknowledged(Duration::from_millis(200), 3)
        .await;
    report("secrets_manager_down_mid_run", &during, written, &after);
    assert_each_event_once(&revel, "done").await;
}

#[tokio::test]
async fn a_delivery_killed_while_its_job_is_being_sent_is_finished_once_after_its_lease() {
    let lease = Duration::from_secs(2);
    let (stack, faulty, _) = setup(None).await;
    let config = short_lease(&stack, lease);
    let receiver = stack.receiver_with(KIND, faulty.clients().await, &config);
    let mut revel = Revel::new(&stack, receiver);

    // SQS hangs; every invocation is killed (its future dropped) after the
    // archive put and the entity write, while the job is in flight.
    faulty.sqs.set(Fault::Blackhole);
    let mut killed = tokio::task::JoinSet::new();
    for event in revel.events.iter().cloned() {
        let receiver = Arc::clone(&revel.receiver);
        killed.spawn(async move {
            tokio::time::timeout(
                Duration::from_millis(800),
                deliver(&receiver, signed_request(KIND, &event.body)),
            )
            .await
            .is_err()
        });
    }
    while let Some(was_killed) = killed.join_next().await {
        assert!(
            was_killed.unwrap(),
            "the delivery should still have been waiting"
        );
    }
    let written = stack.written().await;
    for record in stack.events().await {
        assert_eq!(text(&record, "status"), "processing");
        assert_ne!(text(&record, "lease_until"), "0", "the lease is held");
    }
    assert_eq!((written.events, written.entities, written.jobs), (5, 4, 0));
    faulty.clear();

    // Within the lease, Revel's retries are told to come back.
    let during = revel.round().await;
    all_answered(&during, 503, "error", "in_progress");
    let after = revel
        .retry_until_acknowledged(lease + Duration::from_millis(1100), 2)
        .await;
    all_answered(&after, 200, "status", "accepted");
    report("killed_while_the_job_is_sent", &during, written, &after);
    assert_each_event_once(&revel, "done").await;
}

#[tokio::test]
async fn a_delivery_killed_after_its_answer_before_the_done_mark_is_complete_and_never_applied_twice(
) {
    let lease = Duration::from_secs(2);
    let (stack, faulty, _) = setup(None).await;
    let config = short_lease(&stack, lease);
    let receiver = stack.receiver_with(KIND, faulty.clients().await, &config);
    let mut revel = Revel::new(&stack, receiver);

    // The Lambda way: answer first; the process dies before the extension
    // marks the record done (the completion is dropped).
    let mut during = Vec::new();
    for (i, event) in revel.events.iter().enumerate() {
        let started = Instant::now();
        let (status, answer, completion) =
            deliver_deferred(&revel.receiver, signed_request(KIND, &event.body)).await;
        let took = started.elapsed();
        expect_outcome(status, &answer, 200, "accepted");
        let key = answer["event_id"].as_str().unwrap().to_owned();
        revel.acknowledged.lock().unwrap().insert(i, key.clone());
        assert_stored_now(&stack, event, &key, i + 1).await;
        assert!(completion.is_some());
        drop(completion);
        during.push(Attempt {
            event: i,
            status,
            answer,
            took,
        });
    }
    let written = stack.written().await;
    for record in stack.events().await {
        assert_eq!(text(&record, "status"), "processing", "never marked");
    }

    // Revel sends nothing more (it got 200s). A stray duplicate after the
    // lease takes the record over, redoes nothing and marks it done.
    tokio::time::sleep(lease + Duration::from_millis(1100)).await;
    revel.acknowledged.lock().unwrap().clear();
    let after = revel.round().await;
    all_answered(&after, 200, "status", "accepted");
    report("killed_before_the_done_mark", &during, written, &after);
    assert_each_event_once(&revel, "done").await;
    let entities = stack.entities().await;
    let revisions: usize = entities
        .iter()
        .map(|e| text(e, "revision").parse::<usize>().unwrap())
        .sum();
    assert_eq!(revisions, 5, "each version written once");
}

#[tokio::test]
async fn the_done_mark_failing_after_the_answer_leaves_the_event_complete_and_a_redelivery_applies_nothing(
) {
    let lease = Duration::from_secs(6);
    let (stack, faulty, _) = setup(None).await;
    let config = short_lease(&stack, lease);
    let receiver = stack.receiver_with(KIND, faulty.clients().await, &config);
    let mut revel = Revel::new(&stack, receiver);

    let delivered = Instant::now();
    let mut during = Vec::new();
    let mut completions = Vec::new();
    for (i, event) in revel.events.iter().enumerate() {
        let started = Instant::now();
        let (status, answer, completion) =
            deliver_deferred(&revel.receiver, signed_request(KIND, &event.body)).await;
        expect_outcome(status, &answer, 200, "accepted");
        let key = answer["event_id"].as_str().unwrap().to_owned();
        revel.acknowledged.lock().unwrap().insert(i, key.clone());
        assert_stored_now(&stack, event, &key, i + 1).await;
        completions.push(completion.expect("a record to mark"));
        during.push(Attempt {
            event: i,
            status,
            answer,
            took: started.elapsed(),
        });
    }
    // The events table throttles while the marks run after the answers.
    faulty.events.throttle_dynamodb(None);
    let started = Instant::now();
    let mut marks = tokio::task::JoinSet::new();
    for completion in completions {
        let receiver = Arc::clone(&revel.receiver);
        marks.spawn(async move { receiver.complete(completion).await });
    }
    while let Some(mark) = marks.join_next().await {
        mark.expect("a mark panicked");
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "each mark gives up within the SDK's timeout"
    );
    assert!(faulty.events.hits() >= 5);
    let written = stack.written().await;
    for record in stack.events().await {
        assert_eq!(text(&record, "status"), "processing", "the mark failed");
    }
    faulty.clear();

    // A duplicate within the lease is asked to come back; after it, the
    // record is taken over, nothing is applied twice, and it is marked.
    let within = revel.round_of_duplicates().await;
    all_answered(&within, 503, "error", "in_progress");
    tokio::time::sleep((delivered + lease + Duration::from_millis(1100)) - Instant::now()).await;
    revel.acknowledged.lock().unwrap().clear();
    let after = revel.round().await;
    all_answered(&after, 200, "status", "accepted");
    report("done_mark_failing", &during, written, &after);
    assert_each_event_once(&revel, "done").await;
    let revisions: usize = stack
        .entities()
        .await
        .iter()
        .map(|e| text(e, "revision").parse::<usize>().unwrap())
        .sum();
    assert_eq!(revisions, 5, "each version written once");
}

impl Revel {
    /// Delivers every event once more, whatever it was answered before.
    async fn round_of_duplicates(&mut self) -> Vec<Attempt> {
        let saved = std::mem::take(&mut *self.acknowledged.lock().unwrap());
        let attempts = self.round().await;
        let mut acknowledged = self.acknowledged.lock().unwrap();
        for (event, key) in saved {
            acknowledged.insert(event, key);
        }
        attempts
    }
}
