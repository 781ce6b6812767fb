//! The jobs queue, SQS FIFO as AWS runs it (template.yaml's `JobsQueue`):
//! five minutes of deduplication per message group (on virtual time); one
//! group's messages handed out in order, and none while one of them is in
//! flight; a 360 s visibility timeout; receive counts, and a message received
//! five times moved to the dead-letter queue on its next receive; batches
//! of ten. And the event source mapping that feeds the jobs worker:
//! partial batch failures, nothing deleted when the invocation crashes or
//! runs past Lambda's 60 s timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use domain::error::DependencyError;
use pipeline::worker::Worker;
use ports::fakes::FIFO_DEDUPLICATION_WINDOW;
use ports::queue::{JobQueue, QueuedJob};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::faults::{invoke, Ended, Faults, Service};

/// `VisibilityTimeout` of the jobs queue.
pub const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(360);
/// `maxReceiveCount` of its redrive policy in template.yaml.
pub const MAX_RECEIVES: u32 = 10;
/// The event source mapping's `BatchSize`.
pub const BATCH_SIZE: usize = 10;
/// The jobs worker's `Timeout`.
pub const WORKER_TIMEOUT: Duration = Duration::from_secs(60);
/// What the worker keeps of its time to save progress and answer
/// (`shared::function`'s deadline margin).
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(5);
/// How long a receive waits for a message (long polling).
const LONG_POLL: Duration = Duration::from_secs(20);

/// One message on the queue.
#[derive(Debug, Clone)]
pub struct Message {
    pub message_id: String,
    pub group: String,
    pub deduplication_id: String,
    pub body: String,
    pub sent_at: Instant,
    pub receives: u32,
    /// Receipt handle and end of visibility while in flight.
    in_flight: Option<(String, Instant)>,
}

/// A message the redrive policy moved to the dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub message_id: String,
    pub group: String,
    pub body: String,
    pub receives: u32,
    pub sent_at: Instant,
    pub parked_at: Instant,
}

/// A message as a receive hands it out.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub group: String,
    pub body: String,
    pub receives: u32,
}

#[derive(Default)]
struct QueueState {
    next_message: u64,
    next_receipt: u64,
    /// In send order.
    messages: BTreeMap<u64, Message>,
    /// (group, deduplication id) -> when first sent.
    sent: BTreeMap<(String, String), Instant>,
    dead: Vec<DeadLetter>,
    received_total: u64,
}

/// The FIFO queue and its dead-letter queue.
pub struct SimQueue {
    state: Mutex<QueueState>,
    /// Wakes the pollers' long polls on a send.
    pub sent: Notify,
    faults: Arc<Faults>,
}

impl SimQueue {
    pub fn new(faults: Arc<Faults>) -> Self {
        Self {
            state: Mutex::default(),
            sent: Notify::new(),
            faults,
        }
    }

    /// The effect of a SendMessage: a new message, or nothing when its
    /// deduplication id was sent in its group within the window (SQS still
    /// answers success). True when a message was added.
    pub fn send(&self, job: &QueuedJob) -> bool {
        let body = serde_json::to_string(&job.message).expect("a job message serialises");
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        let key = (job.group_id.clone(), job.deduplication_id.clone());
        if state
            .sent
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < FIFO_DEDUPLICATION_WINDOW)
        {
            return false;
        }
        state.sent.insert(key, now);
        state.next_message += 1;
        let seq = state.next_message;
        state.messages.insert(
            seq,
            Message {
                message_id: format!("m{seq}"),
                group: job.group_id.clone(),
                deduplication_id: job.deduplication_id.clone(),
                body,
                sent_at: now,
                receives: 0,
                in_flight: None,
            },
        );
        drop(state);
        self.sent.notify_waiters();
        true
    }

    /// ReceiveMessage: up to `max` messages, each group's in order, none of
    /// a group that has a message in flight; each becomes invisible for the
    /// visibility timeout. A message already received `MAX_RECEIVES` times
    /// goes to the dead-letter queue instead.
    pub fn receive(&self, max: usize) -> Vec<Received> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        for message in state.messages.values_mut() {
            if message
                .in_flight
                .as_ref()
                .is_some_and(|(_, until)| *until <= now)
            {
                message.in_flight = None;
            }
        }
        let busy: BTreeSet<String> = state
            .messages
            .values()
            .filter(|m| m.in_flight.is_some())
            .map(|m| m.group.clone())
            .collect();
        let candidates: Vec<u64> = state
            .messages
            .iter()
            .filter(|(_, m)| !busy.contains(&m.group))
            .map(|(seq, _)| *seq)
            .collect();
        let mut out = Vec::new();
        for seq in candidates {
            if out.len() >= max {
                break;
            }
            let message = state.messages.get(&seq).expect("listed above");
            if message.receives >= MAX_RECEIVES {
                let message = state.messages.remove(&seq).expect("listed above");
                self.faults.note(format!(
                    "jobs-queue: {} (group {}) moved to the DLQ after {} receives",
                    message.message_id, message.group, message.receives
                ));
                state.dead.push(DeadLetter {
                    message_id: message.message_id,
                    group: message.group,
                    body: message.body,
                    receives: message.receives,
                    sent_at: message.sent_at,
                    parked_at: now,
                });
                continue;
            }
            state.next_receipt += 1;
            state.received_total += 1;
            let receipt = format!("r{}", state.next_receipt);
            let message = state.messages.get_mut(&seq).expect("listed above");
            message.receives += 1;
            message.in_flight = Some((receipt.clone(), now + VISIBILITY_TIMEOUT));
            out.push(Received {
                message_id: message.message_id.clone(),
                receipt_handle: receipt,
                group: message.group.clone(),
                body: message.body.clone(),
                receives: message.receives,
            });
        }
        out
    }

    /// DeleteMessage: only the receipt handle of the current receive
    /// deletes (a FIFO queue refuses a stale one). True when deleted.
    pub fn delete(&self, receipt_handle: &str) -> bool {
        let mut state = self.state.lock().unwrap();
        let found = state
            .messages
            .iter()
            .find(|(_, m)| {
                m.in_flight
                    .as_ref()
                    .is_some_and(|(receipt, _)| receipt == receipt_handle)
            })
            .map(|(seq, _)| *seq);
        found.and_then(|seq| state.messages.remove(&seq)).is_some()
    }

    /// When the next in-flight message becomes visible again.
    pub fn next_visible(&self) -> Option<Instant> {
        self.state
            .lock()
            .unwrap()
            .messages
            .values()
            .filter_map(|m| m.in_flight.as_ref().map(|(_, until)| *until))
            .min()
    }

    /// No message waiting or in flight (the dead-letter queue aside).
    pub fn is_drained(&self) -> bool {
        self.state.lock().unwrap().messages.is_empty()
    }

    pub fn waiting(&self) -> Vec<Message> {
        self.state
            .lock()
            .unwrap()
            .messages
            .values()
            .cloned()
            .collect()
    }

    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.state.lock().unwrap().dead.clone()
    }

    /// Messages handed out so far.
    pub fn received_total(&self) -> u64 {
        self.state.lock().unwrap().received_total
    }
}

#[async_trait]
impl JobQueue for SimQueue {
    async fn enqueue(&self, job: &QueuedJob) -> Result<(), DependencyError> {
        let added = self
            .faults
            .call(Service::JobsQueue, "SendMessage", async { self.send(job) })
            .await
            .map_err(|f| f.dependency("sqs", "SendMessage"))?;
        self.faults.note(format!(
            "jobs-queue SendMessage {} (group {}, version {:?}): {}",
            job.message.job.name(),
            job.group_id,
            job.message.version,
            if added {
                "queued"
            } else {
                "dropped: same deduplication id within 5 minutes"
            }
        ));
        Ok(())
    }
}

/// The Lambda event for a received batch.
pub fn sqs_event(batch: &[Received]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for received in batch {
        let mut message = SqsMessage::default();
        message.message_id = Some(received.message_id.clone());
        message.receipt_handle = Some(received.receipt_handle.clone());
        message.body = Some(received.body.clone());
        message
            .attributes
            .insert("MessageGroupId".into(), received.group.clone());
        message.attributes.insert(
            "ApproximateReceiveCount".into(),
            received.receives.to_string(),
        );
        event.records.push(message);
    }
    event
}

/// One poller of the jobs worker's event source mapping: receives a batch,
/// invokes the worker, deletes what it reports handled. Runs until dropped.
pub async fn poll_jobs(n: usize, queue: Arc<SimQueue>, worker: Arc<Worker>, faults: Arc<Faults>) {
    let name = format!("worker#{n}");
    loop {
        let batch = queue.receive(BATCH_SIZE);
        if batch.is_empty() {
            let wake = queue
                .next_visible()
                .map_or(LONG_POLL, |at| at.saturating_duration_since(Instant::now()))
                .clamp(Duration::from_millis(1), LONG_POLL);
            let _ = tokio::time::timeout(wake, queue.sent.notified()).await;
            continue;
        }
        let ids: Vec<String> = batch
            .iter()
            .map(|m| format!("{}×{}", m.message_id, m.receives))
            .collect();
        faults
            .trace()
            .note(name.clone(), format!("invoked with {}", ids.join(" ")));
        let deadline = Instant::now() + WORKER_TIMEOUT - DEADLINE_MARGIN;
        let ended = invoke(
            name.clone(),
            WORKER_TIMEOUT,
            worker.handle_batch(sqs_event(&batch), deadline),
        )
        .await;
        let failed: BTreeSet<String> = match ended {
            Ended::Completed(response) => response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            Ended::Crashed | Ended::TimedOut => {
                faults.trace().note(
                    name.clone(),
                    format!(
                        "invocation {}: the whole batch comes back after its visibility timeout",
                        if matches!(ended, Ended::Crashed) {
                            "crashed"
                        } else {
                            "timed out"
                        }
                    ),
                );
                continue;
            }
        };
        let mut handled = Vec::new();
        for message in &batch {
            if failed.contains(&message.message_id) {
                continue;
            }
            if faults.chance(faults.profile().lost_delete) {
                faults.trace().note(
                    "sqs-mapping",
                    format!(
                        "FAULT DeleteMessage {} lost: it comes back",
                        message.message_id
                    ),
                );
                continue;
            }
            queue.delete(&message.receipt_handle);
            handled.push(message.message_id.clone());
        }
        faults.trace().note(
            name.clone(),
            format!(
                "returned: deleted [{}], failed [{}]",
                handled.join(" "),
                failed.into_iter().collect::<Vec<_>>().join(" ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::tests::faults;
    use crate::faults::Profile;
    use domain::ids::{EntityKey, EventKey, InstanceName};
    use ports::queue::JobKind;
    use ports::store::Rank;

    fn queue() -> SimQueue {
        SimQueue::new(faults(Profile::calm()))
    }

    /// A sync job of entity `id` at `version`.
    fn job(id: &str, version: i64) -> QueuedJob {
        let instance = InstanceName::parse("alpha").unwrap();
        QueuedJob::for_entity(
            JobKind::SyncEntity,
            "revel",
            &instance,
            "customer.updated",
            &EventKey::parse("revel:alpha:customer.updated:x").unwrap(),
            &EntityKey::new("revel", &instance, vendors::revel::Entity::Customer, id).unwrap(),
            &Rank::new(version, false, "aa"),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_deduplication_id_is_dropped_for_five_minutes_and_then_is_a_new_message() {
        let queue = queue();
        assert!(queue.send(&job("a", 1)));
        tokio::time::sleep(Duration::from_secs(299)).await;
        assert!(!queue.send(&job("a", 1)), "inside the window");
        assert!(queue.send(&job("a", 2)), "another change is another id");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(queue.send(&job("a", 1)), "the window has passed");
        assert_eq!(queue.waiting().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_in_flight_holds_its_group_while_other_groups_go_on() {
        let queue = queue();
        queue.send(&job("a", 1));
        queue.send(&job("a", 2));
        let first = queue.receive(1);
        assert_eq!(first.len(), 1);
        queue.send(&job("b", 1));
        let second = queue.receive(10);
        assert_eq!(
            second.iter().map(|m| m.group.as_str()).collect::<Vec<_>>(),
            ["revel:alpha:customer:b"],
            "a's second message waits for its first"
        );
        assert!(queue.delete(&first[0].receipt_handle));
        let third = queue.receive(10);
        assert_eq!(third.len(), 1);
        assert_eq!(third[0].group, "revel:alpha:customer:a");
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_not_deleted_comes_back_after_the_visibility_timeout_and_a_stale_receipt_deletes_nothing(
    ) {
        let queue = queue();
        queue.send(&job("a", 1));
        let first = queue.receive(10);
        tokio::time::sleep(VISIBILITY_TIMEOUT - Duration::from_secs(1)).await;
        assert!(queue.receive(10).is_empty(), "still invisible");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let again = queue.receive(10);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].message_id, first[0].message_id);
        assert_eq!(again[0].receives, 2);
        assert!(!queue.delete(&first[0].receipt_handle), "a stale handle");
        assert!(queue.delete(&again[0].receipt_handle));
        assert!(queue.is_drained());
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_received_five_times_moves_to_the_dlq_and_frees_its_group() {
        let queue = queue();
        queue.send(&job("a", 1));
        queue.send(&job("a", 2));
        for receive in 1..=MAX_RECEIVES {
            let batch = queue.receive(1);
            assert_eq!(batch[0].receives, receive);
            tokio::time::sleep(VISIBILITY_TIMEOUT).await;
        }
        let next = queue.receive(1);
        let dead = queue.dead_letters();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].receives, MAX_RECEIVES);
        assert_eq!(next.len(), 1, "the group's next message is handed out");
        assert_ne!(next[0].message_id, dead[0].message_id);
    }

    #[tokio::test(start_paused = true)]
    async fn a_receive_hands_out_at_most_ten_messages() {
        let queue = queue();
        for n in 0..15 {
            queue.send(&job(&format!("e{n}"), 1));
        }
        assert_eq!(queue.receive(BATCH_SIZE).len(), 10);
        assert_eq!(queue.receive(BATCH_SIZE).len(), 5);
    }
}
