//! Fault injection through the whole bundle: the real receiver, the real
//! stream processor and the real jobs worker, each on the real AWS SDK (with
//! the functions' timeouts and retries) against the local endpoint, every
//! AWS service behind its own fault proxy, and a partner stand-in counting
//! what it is sent.
//!
//! Every test plays Revel: it delivers five customer updates (four
//! customers, the first one twice) while a fault holds in one place, clears
//! it, and redelivers every event that did not get a 2xx. The events
//! table's stream is handed to the processor as the event source mapping
//! hands it (a failed record is retried from its sequence number), and the
//! worker polls the jobs queue as Lambda's SQS event source does. Right
//! after each 2xx the record must be stored; at the end, every test checks
//! the same things (see [`Bundle::check`]): each event stored once, each
//! entity at its newest version, each follow-up queued exactly once and
//! never ahead of its entity's state, each customer's newest state
//! delivered to the partner once, and nothing left on any queue.
//!
//! `cargo test -p integration-tests --test faults -- --nocapture` prints one
//! row of the fault table in docs/architecture.md per test (lines starting with `|`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_adapters::dynamodb::DynamoEntityStore;
use aws_adapters::sqs::SqsJobQueue;
use domain::error::DependencyError;
use domain::ids::EntityKey;
use integration_tests::*;
use pipeline::config::Config;
use pipeline::process::Processor;
use pipeline::receive::Receiver;
use pipeline::worker::Worker;
use ports::queue::{JobQueue, QueuedJob};
use ports::store::{EntityStore, EntityUpsert, Rank, StoredEntity, Upserted};
use serde_json::{json, Value};
use vendors::revel::RevelEventType;

const KIND: RevelEventType = RevelEventType::CustomerUpdated;

/// Longest an answer may take: one put (or one secrets read) within the
/// SDK's 2.8 s operation timeout, and some scheduling; Revel gives 10 s.
const ANSWER_BOUND: Duration = Duration::from_millis(3500);

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

/// What the processor asked of the entities table and the jobs queue, in
/// the order it asked.
#[derive(Debug, Clone)]
enum Step {
    Upsert {
        entity: String,
        rank: Rank,
        /// `None`: the write failed (it may still have landed).
        outcome: Option<Upserted>,
    },
    Enqueue {
        entity: Option<String>,
        version: Option<i64>,
        sent: bool,
    },
}

type Steps = Arc<Mutex<Vec<Step>>>;

/// The processor's entity store, its calls written down.
struct ObservedEntities {
    inner: DynamoEntityStore,
    steps: Steps,
}

#[async_trait]
impl EntityStore for ObservedEntities {
    async fn upsert(&self, change: &EntityUpsert) -> Result<Upserted, DependencyError> {
        let result = self.inner.upsert(change).await;
        self.steps.lock().unwrap().push(Step::Upsert {
            entity: change.key.to_string(),
            rank: change.rank.clone(),
            outcome: result.as_ref().ok().copied(),
        });
        result
    }

    async fn get(&self, key: &EntityKey) -> Result<Option<StoredEntity>, DependencyError> {
        self.inner.get(key).await
    }

    async fn mark_delivered(
        &self,
        key: &EntityKey,
        revision: u64,
    ) -> Result<bool, DependencyError> {
        self.inner.mark_delivered(key, revision).await
    }
}

/// The processor's jobs queue, its sends written down.
struct ObservedJobs {
    inner: SqsJobQueue,
    steps: Steps,
}

#[async_trait]
impl JobQueue for ObservedJobs {
    async fn enqueue(&self, job: &QueuedJob) -> Result<(), DependencyError> {
        let result = self.inner.enqueue(job).await;
        self.steps.lock().unwrap().push(Step::Enqueue {
            entity: job.message.entity_key.clone(),
            version: job.message.version,
            sent: result.is_ok(),
        });
        result
    }
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

/// The answers of some attempts, summed up: `503 unavailable ×5 (≤ 2.8 s)`.
fn summary(attempts: &[Attempt]) -> String {
    if attempts.is_empty() {
        return "none".into();
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for attempt in attempts {
        *seen.entry(attempt.label()).or_insert(0) += 1;
    }
    let slowest = attempts.iter().map(|a| a.took).max().unwrap_or_default();
    let counts: Vec<String> = seen.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    format!("{} (≤ {:.2} s)", counts.join(", "), slowest.as_secs_f64())
}

/// Every function of the bundle on clients behind fault proxies, Revel
/// sending to it, and the partner it delivers to.
struct Bundle {
    stack: Arc<Stack>,
    faulty: FaultyAws,
    receiver: Arc<Receiver>,
    processor: Processor,
    steps: Steps,
    worker: Worker,
    /// The worker's SQS client, behind the fault proxy (Lambda's SQS event
    /// source is what receives and deletes; here the test does, through it).
    worker_sqs: aws_sdk_sqs::Client,
    partner: PartnerStandIn,
    events: Arc<Vec<Event>>,
    /// Event keys that got a 2xx (each checked stored at that moment).
    acknowledged: Arc<Mutex<BTreeMap<usize, String>>>,
    /// Deliveries of a round at once (Revel sends concurrently), or one
    /// after the other, as one Lambda execution environment serves them.
    concurrent: bool,
}

impl Bundle {
    async fn new() -> Self {
        Self::with_config(|_| {}).await
    }

    /// A bundle whose receiver runs with `adjust`ed settings.
    async fn with_config(adjust: impl FnOnce(&mut Config)) -> Self {
        let stack = Arc::new(Stack::new().await);
        let faulty = FaultyAws::new().await;
        let clients = faulty.clients().await;
        let mut config = stack.config.clone();
        adjust(&mut config);
        let receiver = Arc::new(stack.receiver_with(KIND, clients.clone(), &config));
        let steps = Steps::default();
        // The processor as `shared::function::processor` builds it, its two
        // stores observed.
        let processor = Processor::new(
            Arc::new(ObservedEntities {
                inner: DynamoEntityStore::new(clients.entities.clone(), &config.entities_table),
                steps: Arc::clone(&steps),
            }),
            Arc::new(ObservedJobs {
                inner: SqsJobQueue::new(clients.sqs.clone(), &config.jobs_queue_url),
                steps: Arc::clone(&steps),
            }),
        );
        let partner = PartnerStandIn::start(204).await;
        let worker = stack.worker_with(
            clients.clone(),
            fast_api("http://127.0.0.1:9"),
            100,
            Some(partner.downstream()),
        );
        Self {
            stack,
            faulty,
            receiver,
            processor,
            steps,
            worker,
            worker_sqs: clients.sqs,
            partner,
            events: Arc::new(customer_updates()),
            acknowledged: Arc::default(),
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

    /// Revel: delivers every event that has no 2xx yet; each 2xx is checked
    /// against the events table at once.
    async fn round(&self) -> Vec<Attempt> {
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
                    let key = event_id(&answer);
                    assert!(
                        stack.event(&key).await.is_some(),
                        "{status} for {key}, which is not stored"
                    );
                    acknowledged.lock().unwrap().insert(event, key);
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
        let mut attempts: Vec<Attempt> = finished
            .into_iter()
            .map(|a| a.expect("a delivery task panicked"))
            .collect();
        for attempt in &attempts {
            assert!(attempt.took < ANSWER_BOUND, "too slow: {attempt:?}");
        }
        attempts.sort_by_key(|a| a.event);
        attempts
    }

    /// Revel after the fault cleared: redelivers what has no 2xx, after a
    /// pause, until everything has one.
    async fn retries(&self) -> Vec<Attempt> {
        let mut all = Vec::new();
        for _ in 0..3 {
            if self.pending().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            all.extend(self.round().await);
        }
        assert!(
            self.pending().is_empty(),
            "still not acknowledged: {:?}",
            self.pending()
        );
        all
    }

    /// Hands what the stream holds to the processor, at most `polls` times.
    async fn process(&self, polls: usize) -> Vec<local_stack::stream::Polled> {
        self.stack.settle_with(&self.processor, polls).await
    }

    /// One poll of the jobs queue through the worker's (faulty) SQS client,
    /// as Lambda's SQS event source polls it.
    async fn poll_jobs(&self) -> Result<local_stack::worker_loop::Polled, local_stack::Error> {
        local_stack::worker_loop::poll_once(
            &self.worker_sqs,
            &self.stack.config.jobs_queue_url,
            &self.worker,
            Duration::from_secs(30),
            Duration::ZERO,
        )
        .await
    }

    /// Polls until the queue is empty (at most 20 polls).
    async fn drain(&self) -> Vec<local_stack::worker_loop::Polled> {
        let mut seen = Vec::new();
        for _ in 0..20 {
            let polled = self.poll_jobs().await.expect("poll");
            if polled.received == 0 {
                break;
            }
            seen.push(polled);
        }
        seen
    }

    fn steps(&self) -> Vec<Step> {
        self.steps.lock().unwrap().clone()
    }

    /// The follow-ups owed: each change whose entity write landed, now
    /// (`Applied`) or on an earlier attempt whose answer was lost or whose
    /// send failed (`Repeated`). A stale change owes nothing: the newer one
    /// it lost to has its own. (These events never make an `Unchanged`.)
    fn owed(&self) -> BTreeSet<(String, i64)> {
        self.steps()
            .into_iter()
            .filter_map(|step| match step {
                Step::Upsert {
                    entity,
                    rank,
                    outcome: Some(outcome),
                } => match outcome {
                    Upserted::Applied { .. } | Upserted::Repeated => Some((entity, rank.version)),
                    Upserted::Stale => None,
                    Upserted::Unchanged { .. } => {
                        panic!("no two of these events have the same state")
                    }
                },
                _ => None,
            })
            .collect()
    }

    /// After the fault cleared: Revel's retries, the processor until the
    /// stream is quiet, and the check that the queue holds each follow-up
    /// owed exactly once, none queued ahead of its entity's write.
    async fn process_everything(&self) -> Vec<Attempt> {
        self.faulty.clear();
        let retries = self.retries().await;
        let polls = self.process(20).await;
        assert!(
            polls.iter().all(|p| p.failed_batches == 0),
            "processing fails with every fault cleared: {polls:?}"
        );
        self.check_follow_ups().await;
        retries
    }

    /// Every job sent follows a successful entity write of its version; each
    /// follow-up owed was sent; the queue holds each exactly once.
    async fn check_follow_ups(&self) {
        let mut written = BTreeSet::new();
        let mut sent = BTreeSet::new();
        for step in self.steps() {
            match step {
                Step::Upsert {
                    entity,
                    rank,
                    outcome: Some(_),
                } => {
                    written.insert((entity, rank.version));
                }
                Step::Enqueue {
                    entity: Some(entity),
                    version: Some(version),
                    sent: true,
                } => {
                    assert!(
                        written.contains(&(entity.clone(), version)),
                        "a job for {entity}@{version} was queued ahead of its entity"
                    );
                    sent.insert((entity, version));
                }
                _ => {}
            }
        }
        let owed = self.owed();
        assert_eq!(sent, owed, "every follow-up owed was queued");
        assert_eq!(
            self.stack.jobs_waiting().await,
            owed.len(),
            "each follow-up is on the queue exactly once"
        );
    }

    /// The end of every test: the worker delivers, and the bundle holds
    /// each event once, each entity at its newest version, and each
    /// customer's newest state delivered once.
    async fn deliver_and_check(&self) -> String {
        self.faulty.clear();
        let polls = self.drain().await;
        assert!(
            polls.iter().all(|p| p.failed == 0),
            "the worker failed a job: {polls:?}"
        );
        self.check().await
    }

    /// Checks the end state; a summary for the table.
    async fn check(&self) -> String {
        let stack = &self.stack;
        let keys = self.acknowledged.lock().unwrap().clone();
        assert_eq!(keys.len(), self.events.len(), "every event acknowledged");
        let stored = stack.event_keys().await;
        let expected: BTreeSet<String> = keys.values().cloned().collect();
        assert_eq!(stored, expected, "one record per event, no other");

        let mut newest: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, event) in self.events.iter().enumerate() {
            let slot = newest.entry(&event.uuid).or_insert(i);
            if event.updated > self.events[*slot].updated {
                *slot = i;
            }
        }
        let entities = stack.entities().await;
        assert_eq!(entities.len(), newest.len(), "one entity per customer");
        let deliveries = self.partner.deliveries().await;
        for (uuid, &event) in &newest {
            let entity = entities
                .iter()
                .find(|e| text(e, "entity_id") == *uuid)
                .unwrap_or_else(|| panic!("no entity for {uuid}"));
            let state = entity_state(entity);
            assert_eq!(state["updated_date"], self.events[event].updated.as_str());
            assert!(state.get("cc_last_4_digits").is_none(), "card fields kept");
            assert_eq!(text(entity, "last_event_key"), keys[&event]);
            let heard: Vec<&Delivered> = deliveries.iter().filter(|d| d.id == *uuid).collect();
            let version =
                domain::sources::parse_timestamp_micros(&self.events[event].updated).unwrap();
            let revision: u64 = text(entity, "revision").parse().unwrap();
            assert_eq!(
                heard
                    .iter()
                    .map(|d| (d.version, d.revision))
                    .collect::<Vec<_>>(),
                [(version, revision)],
                "{uuid}: its newest state delivered once"
            );
        }
        let attempts = self.partner.attempts().await;
        assert_eq!(
            attempts.len(),
            newest.len(),
            "nothing sent twice: {attempts:?}"
        );
        assert_eq!(stack.jobs_waiting().await, 0);
        assert!(stack.dead_letters().await.is_empty());
        assert_eq!(stack.processor_failures().await, 0);
        format!(
            "{} records, {} entities at their newest version, {} jobs queued once, partner heard {} (each once)",
            stored.len(),
            entities.len(),
            self.owed().len(),
            attempts.len()
        )
    }

    /// What the tables and the queue hold now.
    async fn written(&self) -> Written {
        self.stack.written().await
    }
}

/// Prints one row of the fault table.
fn row(fault: &str, place: &str, answer: &str, outcome: &str) {
    println!("| {fault} | {place} | {answer} | {outcome} |");
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

const NOTHING: Written = Written {
    events: 0,
    entities: 0,
    jobs: 0,
};

/// A receive-side fault that refused every delivery of Revel's round
/// (`answered`, summed up): nothing may be stored; after it clears, every
/// retry is accepted. Prints the row.
async fn receive_fault(bundle: &Bundle, fault: &str, place: &str, answered: &str) {
    assert_eq!(bundle.written().await, NOTHING, "no 2xx, nothing stored");
    let retries = bundle.process_everything().await;
    all_answered(&retries, 200, "status", "accepted");
    let outcome = bundle.deliver_and_check().await;
    row(
        fault,
        place,
        &format!("{answered}; Revel's retries: {}", summary(&retries)),
        &format!("nothing stored while it held; {outcome}"),
    );
}

/// The events table out of reach by `fault` for Revel's whole round: every
/// delivery a 503 (within [`ANSWER_BOUND`]), then [`receive_fault`].
async fn events_table_unreachable(fault: Fault, described: &str) {
    let bundle = Bundle::new().await;
    bundle.faulty.events.set(fault);
    let during = bundle.round().await;
    all_answered(&during, 503, "error", "unavailable");
    receive_fault(
        &bundle,
        described,
        "events table, receive",
        &summary(&during),
    )
    .await;
}

#[tokio::test]
async fn the_events_table_throttling_throughout_is_a_503_and_the_retries_are_stored_once() {
    let bundle = Bundle::new().await;
    bundle.faulty.events.throttle_dynamodb(None);
    let during = bundle.round().await;
    all_answered(&during, 503, "error", "unavailable");
    assert!(
        bundle.faulty.events.hits() >= 2 * during.len(),
        "the SDK retried each throttled put: {} throttled requests",
        bundle.faulty.events.hits()
    );
    receive_fault(
        &bundle,
        "DynamoDB throttles every request",
        "events table, receive",
        &summary(&during),
    )
    .await;
}

#[tokio::test]
async fn brief_throttling_of_the_events_table_is_absorbed_by_the_sdk_retries() {
    let bundle = Bundle::new().await;
    bundle.faulty.events.throttle_dynamodb(Some(2));
    let during = bundle.round().await;
    all_answered(&during, 200, "status", "accepted");
    assert_eq!(bundle.faulty.events.hits(), 2);
    bundle.process_everything().await;
    let outcome = bundle.deliver_and_check().await;
    row(
        "DynamoDB throttles 2 requests",
        "events table, receive",
        &summary(&during),
        &outcome,
    );
}

#[tokio::test]
async fn the_events_table_hanging_is_a_503_within_the_sdk_deadline_and_the_retries_are_stored_once()
{
    events_table_unreachable(
        Fault::Blackhole,
        "DynamoDB accepts connections and never answers",
    )
    .await;
}

#[tokio::test]
async fn the_events_table_refusing_connections_is_a_quick_503_and_the_retries_are_stored_once() {
    events_table_unreachable(Fault::Closed, "DynamoDB refuses connections (port closed)").await;
}

#[tokio::test]
async fn the_events_table_closing_connections_is_a_503_and_the_retries_are_stored_once() {
    events_table_unreachable(Fault::Refuse, "DynamoDB closes every connection at once").await;
}

#[tokio::test]
async fn a_record_put_that_lands_while_its_answer_is_lost_is_stored_once_and_answered_duplicate() {
    let bundle = Bundle::new().await;
    // Each delivery's first put reaches DynamoDB and is applied, but its
    // answer never comes back: the SDK times the attempt out and tries
    // again, or the answer is a 503 and Revel tries again. Either retry
    // finds the record the first attempt wrote.
    bundle.faulty.events.swallow_responses(Some(5));
    let during = bundle.round().await;
    assert_eq!(bundle.faulty.events.hits(), 5);
    for attempt in &during {
        assert!(
            matches!(
                attempt.label().as_str(),
                "200 duplicate" | "503 unavailable"
            ),
            "{attempt:?}"
        );
    }
    assert_eq!(bundle.written().await.events, 5, "every put took effect");
    let retries = bundle.process_everything().await;
    all_answered(&retries, 200, "status", "duplicate");
    let outcome = bundle.deliver_and_check().await;
    row(
        "the record's put is applied, its answer lost",
        "events table, receive",
        &format!(
            "{}; Revel's retries: {}",
            summary(&during),
            summary(&retries)
        ),
        &format!("no second record, no conflict; {outcome}"),
    );
}

/// A processing-side fault: every event is stored (2xx) first; the stream
/// is polled `polls` times while the fault holds.
async fn stored_then_processed_under(bundle: &Bundle, polls: usize) -> Processing {
    let answers = bundle.round().await;
    all_answered(&answers, 200, "status", "accepted");
    let polls = bundle.process(polls).await;
    Processing {
        answers: summary(&answers),
        failed_polls: polls.iter().map(|p| p.failed_batches).sum(),
        written: bundle.written().await,
        polls,
    }
}

/// What processing under a fault came to.
struct Processing {
    /// Revel's answers, before the fault mattered.
    answers: String,
    polls: Vec<local_stack::stream::Polled>,
    failed_polls: usize,
    /// The tables and the queue after those polls.
    written: Written,
}

/// The end of a processing-side test: with the fault cleared, everything
/// processed and delivered, the end state checked ([`Bundle::check`]), and
/// the row printed, `held` saying what happened while the fault held.
async fn processing_fault(
    bundle: &Bundle,
    fault: &str,
    place: &str,
    processing: &Processing,
    held: &str,
) {
    bundle.process_everything().await;
    let outcome = bundle.deliver_and_check().await;
    row(
        fault,
        place,
        &processing.answers,
        &format!("{held}; {outcome}"),
    );
}

#[tokio::test]
async fn the_entities_table_throttling_stops_processing_at_the_first_record_and_queues_nothing_ahead_of_it(
) {
    let bundle = Bundle::new().await;
    bundle.faulty.entities.throttle_dynamodb(None);
    let processing = stored_then_processed_under(&bundle, 2).await;
    assert_eq!(processing.failed_polls, 2, "{:?}", processing.polls);
    assert_eq!(
        (processing.written.entities, processing.written.jobs),
        (0, 0),
        "no job without its entity"
    );
    processing_fault(
        &bundle,
        "DynamoDB throttles every request",
        "entities table, processing",
        &processing,
        &format!(
            "each poll stopped at the first record ({} failed polls), no entity and no job meanwhile",
            processing.failed_polls
        ),
    )
    .await;
}

#[tokio::test]
async fn the_entities_table_failing_mid_batch_is_retried_from_the_failed_record() {
    let bundle = Bundle::new().await;
    // Two entity writes go through; the third record's write is throttled
    // through all of the SDK's attempts.
    bundle.faulty.entities.throttle_dynamodb_after(2, Some(3));
    let processing = stored_then_processed_under(&bundle, 1).await;
    let first = processing.polls[0];
    assert_eq!((first.records, first.failed_batches), (5, 1));
    assert!(processing.written.entities <= 2, "{:?}", processing.written);
    let retried = bundle.process(1).await;
    assert_eq!(
        retried[0].records, 3,
        "the stream resumes at the failed record: the two before it are not handed over again"
    );
    processing_fault(
        &bundle,
        "DynamoDB throttles the third record's write (3 attempts)",
        "entities table, processing",
        &processing,
        "the batch of 5 stopped at record 3; the next poll handed over records 3-5 only",
    )
    .await;
}

#[tokio::test]
async fn an_entity_write_that_lands_while_its_answer_is_lost_still_queues_its_job_once() {
    let bundle = Bundle::new().await;
    bundle.faulty.entities.swallow_responses(Some(1));
    let processing = stored_then_processed_under(&bundle, 1).await;
    assert_eq!(bundle.faulty.entities.hits(), 1);
    let repeated = bundle.steps().into_iter().any(|s| {
        matches!(
            s,
            Step::Upsert {
                outcome: Some(Upserted::Repeated),
                ..
            }
        )
    });
    assert!(
        repeated,
        "the retried write found its own change: {:?}",
        bundle.steps()
    );
    processing_fault(
        &bundle,
        "an entity write is applied, its answer lost",
        "entities table, processing",
        &processing,
        &format!(
            "the retry (SDK or stream; {} failed polls) finds the same rank: `Repeated`, and still queues the job",
            processing.failed_polls
        ),
    )
    .await;
}

#[tokio::test]
async fn the_entities_table_refusing_connections_is_retried_once_it_is_back() {
    let bundle = Bundle::new().await;
    bundle.faulty.entities.set(Fault::Closed);
    let processing = stored_then_processed_under(&bundle, 2).await;
    assert_eq!(processing.failed_polls, 2);
    assert_eq!(
        (processing.written.entities, processing.written.jobs),
        (0, 0)
    );
    processing_fault(
        &bundle,
        "DynamoDB refuses connections (port closed)",
        "entities table, processing",
        &processing,
        "no entity and no job while it held",
    )
    .await;
}

#[tokio::test]
async fn sqs_refusing_the_follow_up_after_its_entity_write_is_retried_from_the_record_and_still_queues_the_job(
) {
    let bundle = Bundle::new().await;
    // The lost follow-up of the status design: the entity write lands, the
    // send fails. The record must be retried, and its retry must queue it.
    bundle.faulty.sqs.set(Fault::Closed);
    let processing = stored_then_processed_under(&bundle, 1).await;
    assert_eq!(processing.failed_polls, 1);
    assert_eq!(
        (processing.written.entities, processing.written.jobs),
        (1, 0),
        "the first record's entity landed, its job did not"
    );
    bundle.faulty.clear();
    bundle.process(1).await;
    let first = bundle.steps();
    let Step::Upsert { entity, .. } = &first[0] else {
        panic!("the entity is written first: {first:?}")
    };
    let of_first: Vec<String> = first
        .iter()
        .filter_map(|s| match s {
            Step::Upsert {
                entity: e, outcome, ..
            } if e == entity => Some(format!("upsert {outcome:?}")),
            Step::Enqueue {
                entity: Some(e),
                sent,
                ..
            } if e == entity => Some(format!("enqueue sent={sent}")),
            _ => None,
        })
        .take(4)
        .collect();
    assert_eq!(
        of_first[1..],
        [
            "enqueue sent=false".to_owned(),
            "upsert Some(Repeated)".to_owned(),
            "enqueue sent=true".to_owned()
        ],
        "{of_first:?}"
    );
    processing_fault(
        &bundle,
        "SQS refuses connections (port closed)",
        "SQS, processing",
        &processing,
        "the first record's entity was written and its send failed: the batch stopped there; its retry found the write `Repeated` and queued the job",
    )
    .await;
}

#[tokio::test]
async fn a_follow_up_sent_while_its_answer_is_lost_is_queued_once() {
    let bundle = Bundle::new().await;
    bundle.faulty.sqs.swallow_responses(Some(1));
    let processing = stored_then_processed_under(&bundle, 1).await;
    assert_eq!(bundle.faulty.sqs.hits(), 1);
    processing_fault(
        &bundle,
        "a job send is applied, its answer lost",
        "SQS, processing",
        &processing,
        &format!(
            "sent again with the same deduplication id ({} failed polls): SQS FIFO drops the copy",
            processing.failed_polls
        ),
    )
    .await;
}

#[tokio::test]
async fn sqs_hanging_during_processing_is_retried_without_a_second_job() {
    let bundle = Bundle::new().await;
    bundle.faulty.sqs.set(Fault::Blackhole);
    let processing = stored_then_processed_under(&bundle, 1).await;
    assert_eq!(processing.failed_polls, 1);
    assert_eq!(processing.written.jobs, 0);
    processing_fault(
        &bundle,
        "SQS accepts connections and never answers",
        "SQS, processing",
        &processing,
        "the send timed out (2.8 s), the record was retried",
    )
    .await;
}

#[tokio::test]
async fn sqs_down_while_the_worker_polls_delays_the_deliveries_and_loses_none() {
    let bundle = Bundle::new().await;
    let answers = bundle.round().await;
    all_answered(&answers, 200, "status", "accepted");
    bundle.process_everything().await;
    bundle.faulty.sqs.set(Fault::Closed);
    assert!(bundle.poll_jobs().await.is_err());
    assert!(bundle.partner.attempts().await.is_empty());
    let outcome = bundle.deliver_and_check().await;
    row(
        "SQS refuses connections (port closed)",
        "SQS, worker",
        &summary(&answers),
        &format!("no job received while it held; {outcome}"),
    );
}

#[tokio::test]
async fn a_job_whose_delete_fails_after_its_delivery_comes_back_and_sends_nothing_twice() {
    let bundle = Bundle::new().await;
    // Short, so the test can outwait a job received and never deleted.
    bundle.stack.set_job_visibility_timeout(2).await;
    let answers = bundle.round().await;
    all_answered(&answers, 200, "status", "accepted");
    bundle.process_everything().await;
    // The receive goes through; every delete after it fails.
    bundle
        .faulty
        .sqs
        .reply_after(1, Reply::sqs_internal_error(), None);
    assert!(bundle.poll_jobs().await.is_err(), "the deletes failed");
    let delivered = bundle.partner.deliveries().await.len();
    assert!(delivered >= 1);
    bundle.faulty.clear();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let outcome = bundle.deliver_and_check().await;
    row(
        "SQS fails every delete after a receive",
        "SQS, worker",
        &summary(&answers),
        &format!(
            "{delivered} delivered, their jobs not deleted: back after the visibility timeout, the worker found each revision delivered; {outcome}"
        ),
    );
}

/// Revel's round while Secrets Manager is down and a wrong signature sent
/// meanwhile: the answers, and the wrong signature's status.
async fn while_secrets_are_down(bundle: &Bundle) -> (Vec<Attempt>, u16) {
    let during = bundle.round().await;
    let forged = local_stack::events::revel_headers(
        KIND,
        DEMO_INSTANCE,
        "not-the-secret",
        &bundle.events[0].body,
    );
    let (status, _) = deliver(
        &bundle.receiver,
        request_with(KIND, &forged, &bundle.events[0].body),
    )
    .await;
    (during, status)
}

#[tokio::test]
async fn secrets_manager_down_within_the_stale_grace_still_verifies_and_answers_200() {
    let bundle = Bundle::with_config(|config| {
        config.settings.secrets_ttl = Duration::from_secs(1);
    })
    .await
    .one_at_a_time();
    shared::function::warm(bundle.receiver.source()).await;
    bundle.faulty.secrets.set(Fault::Closed);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (during, forged) = while_secrets_are_down(&bundle).await;
    all_answered(&during, 200, "status", "accepted");
    assert_eq!(forged, 401, "the stale secrets still verify");
    bundle.process_everything().await;
    let outcome = bundle.deliver_and_check().await;
    row(
        "Secrets Manager refuses connections, past the cache TTL, within SECRETS_STALE_GRACE_SECONDS",
        "Secrets Manager, receive",
        &format!("{}; a wrong signature: {forged}", summary(&during)),
        &format!("verified against the last secrets read; {outcome}"),
    );
}

#[tokio::test]
async fn secrets_manager_down_past_a_zero_stale_grace_is_a_503_never_a_401() {
    let bundle = Bundle::with_config(|config| {
        config.settings.secrets_ttl = Duration::from_secs(1);
        config.settings.secrets_stale_grace = Duration::ZERO;
    })
    .await
    .one_at_a_time();
    shared::function::warm(bundle.receiver.source()).await;
    bundle.faulty.secrets.set(Fault::Closed);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (during, forged) = while_secrets_are_down(&bundle).await;
    all_answered(&during, 503, "error", "unavailable");
    assert_eq!(
        forged, 503,
        "nothing can be verified, nothing is refused as forged"
    );
    receive_fault(
        &bundle,
        "Secrets Manager refuses connections, past the cache TTL, grace 0",
        "Secrets Manager, receive",
        &format!("{}; a wrong signature: {forged}", summary(&during)),
    )
    .await;
}

#[tokio::test]
async fn secrets_manager_down_at_cold_start_is_a_503_never_a_401() {
    let bundle = Bundle::new().await.one_at_a_time();
    bundle.faulty.secrets.set(Fault::Closed);
    let started = Instant::now();
    shared::function::warm(bundle.receiver.source()).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "init is bounded"
    );
    let (during, forged) = while_secrets_are_down(&bundle).await;
    all_answered(&during, 503, "error", "unavailable");
    assert_eq!(forged, 503);
    receive_fault(
        &bundle,
        "Secrets Manager refuses connections at cold start (no secrets ever read)",
        "Secrets Manager, receive",
        &format!("{}; a wrong signature: {forged}", summary(&during)),
    )
    .await;
}
