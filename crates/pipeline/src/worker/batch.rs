//! The partial-batch runner, in the shape of the Lambda Rust runtime's
//! `advanced-sqs-partial-batch-failures` example: an SQS event in, each
//! message handed to a [`Handler`], an `SqsBatchResponse` out whose
//! `BatchItemFailures` name the messages that did not finish; Lambda's event
//! source deletes the rest. It knows nothing of the jobs:
//!
//! - **Order.** Messages run in the batch's order. Once one fails, its
//!   group's later messages are not run and are reported failed too, so a
//!   newer job for an entity never overtakes an older one waiting for its
//!   retry; a handler may take such held-back messages over instead
//!   ([`Handler::takes_over`]).
//! - **Time.** Each message runs until its own deadline
//!   ([`message_deadline`]): the invocation's time left, less a reserve for
//!   each message after it. One that can't finish by then is stopped and
//!   reported failed, and those with too little time left are not started
//!   (they come back at once), so the batch's report always goes out and
//!   what finished is not done again.
//! - **Failures.** Each failure says its [`Disposition`]; the runner counts
//!   it and carries it out through [`InFlightJobs`]: a message put off by
//!   its wait, or parked in the dead-letter queue (and then not reported).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use tokio::time::Instant;

use super::disposition::{backoff, Disposition};
use domain::clock::Clock;
use domain::error::DependencyError;
use ports::queue::{InFlightJobs, ParkError, ReceivedJob, MAX_VISIBILITY_TIMEOUT};
use telemetry::{self, Dimension, Metric};

/// Time kept back for each message still to come in a batch, so one slow
/// job can't leave its batch-mates no time at all.
pub const RESERVE_PER_MESSAGE: Duration = Duration::from_secs(1);

/// A message is started only with at least this much of its time left;
/// later ones come back at once for another invocation.
pub const MIN_TIME_TO_START: Duration = Duration::from_secs(2);

/// A message's deadline: the time left in the invocation, less a reserve
/// for each of the `after` messages after it; `None` when less than
/// [`MIN_TIME_TO_START`] remains.
pub fn message_deadline(now: Instant, batch_deadline: Instant, after: usize) -> Option<Instant> {
    let reserve = RESERVE_PER_MESSAGE * u32::try_from(after).unwrap_or(u32::MAX);
    let until = batch_deadline.checked_sub(reserve)?;
    (until.saturating_duration_since(now) >= MIN_TIME_TO_START).then_some(until)
}

/// What the runner runs.
#[async_trait]
pub trait Handler: Send + Sync {
    type Error: Failure;

    /// Runs one message; it is stopped at `deadline` if still running.
    async fn handle(&self, message: &ReceivedJob, deadline: Instant) -> Result<(), Self::Error>;

    /// Whether `message`, held back behind a failed message of its group,
    /// is taken over by [`Handler::take_over`] rather than reported failed.
    fn takes_over(&self, _message: &ReceivedJob) -> bool {
        false
    }

    /// Takes over the messages of `group` held back behind a failed one
    /// (those [`Handler::takes_over`] accepted), once the batch has run: on
    /// success they are acknowledged, otherwise reported failed.
    async fn take_over(&self, _group: &str, _held: &[ReceivedJob]) -> Result<(), DependencyError> {
        Ok(())
    }
}

/// A handler's failure, as the runner needs it.
pub trait Failure: std::fmt::Display + Send {
    /// What becomes of the message, as of `now`.
    fn disposition(&self, now: time::OffsetDateTime) -> Disposition;
    /// Counts it in its metric (or not, where it is no failure).
    fn count(&self);
}

/// The runner, with what it carries dispositions out through.
pub struct Runner<'a> {
    pub in_flight: &'a dyn InFlightJobs,
    /// The time failures' waits are reckoned from.
    pub clock: &'a dyn Clock,
}

/// Where a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Done, or parked: acknowledged.
    Acknowledged,
    /// Reported failed: it comes back.
    Failed,
}

impl Runner<'_> {
    /// Runs `event`'s messages with `handler` until `deadline`; the
    /// response names those that did not finish.
    pub async fn run<H: Handler>(
        &self,
        handler: &H,
        event: SqsEvent,
        deadline: Instant,
    ) -> SqsBatchResponse {
        let messages: Vec<ReceivedJob> = event.records.into_iter().map(received).collect();
        let count = messages.len();
        let mut failed_groups = HashSet::new();
        let mut taken_over: BTreeMap<String, Vec<ReceivedJob>> = BTreeMap::new();
        let mut failed = Vec::new();
        for (index, message) in messages.into_iter().enumerate() {
            let group = message.group_id.clone();
            let end = if !failed_groups.contains(&group) {
                self.run_one(handler, &message, deadline, count - index - 1)
                    .await
            } else if handler.takes_over(&message) {
                taken_over.entry(group).or_default().push(message);
                continue;
            } else {
                tracing::info!(message_id = %message.message_id, "held back behind a failed job of the same group");
                self.dispose(&message, Disposition::Retry).await
            };
            if end == End::Failed {
                failed_groups.insert(group);
                failed.push(message.message_id);
            }
        }
        for (group, held) in taken_over {
            if let Err(error) = handler.take_over(&group, &held).await {
                error.log("could not take over the jobs held back behind a failed one");
                for message in held {
                    self.dispose(&message, Disposition::Retry).await;
                    failed.push(message.message_id);
                }
            }
        }
        let mut response = SqsBatchResponse::default();
        for id in failed {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
        response
    }

    /// Runs one message within its deadline and disposes of its failure.
    async fn run_one<H: Handler>(
        &self,
        handler: &H,
        message: &ReceivedJob,
        deadline: Instant,
        after: usize,
    ) -> End {
        let id = &message.message_id;
        let Some(until) = message_deadline(Instant::now(), deadline, after) else {
            tracing::info!(message_id = %id, "not started: the invocation's time is up; it comes back at once");
            return self
                .dispose(message, Disposition::Later(Duration::ZERO))
                .await;
        };
        let disposition = match tokio::time::timeout_at(until, handler.handle(message, until)).await
        {
            Ok(Ok(())) => return End::Acknowledged,
            Ok(Err(error)) => {
                error.count();
                let disposition = error.disposition(self.clock.now());
                match disposition {
                    Disposition::Later(wait) => {
                        tracing::info!(message_id = %id, error = %error, wait_secs = wait.as_secs(), "job due later; it comes back then");
                    }
                    Disposition::Park => {
                        tracing::warn!(message_id = %id, error = %error, "job can never succeed; it is parked");
                    }
                    Disposition::Hold => {
                        tracing::warn!(message_id = %id, error = %error, "job waits for the deployment to be fixed: in the dead-letter queue until it is redriven, or without one on the queue");
                    }
                    Disposition::Retry | Disposition::RetryAfter(_) => {
                        tracing::warn!(message_id = %id, error = %error, "job failed; it will be retried");
                    }
                }
                disposition
            }
            Err(_) => {
                telemetry::count(Metric::JobFailures, &[(Dimension::Reason, "deadline")]);
                tracing::warn!(message_id = %id, error = "not finished by its deadline", "job failed; it will be retried");
                Disposition::Retry
            }
        };
        self.dispose(message, disposition).await
    }

    /// Carries `disposition` out for `message`.
    async fn dispose(&self, message: &ReceivedJob, disposition: Disposition) -> End {
        let wait = match disposition {
            Disposition::Retry => backoff(message.receive_count),
            Disposition::RetryAfter(wait) | Disposition::Later(wait) => wait,
            Disposition::Park | Disposition::Hold => match self.in_flight.park(message).await {
                Ok(()) => {
                    tracing::warn!(message_id = %message.message_id, "moved to the dead-letter queue");
                    return End::Acknowledged;
                }
                // Nowhere to park it: a job held for the deployment waits on
                // the queue as long as SQS allows.
                Err(ParkError::NoDeadLetterQueue) if disposition == Disposition::Hold => {
                    MAX_VISIBILITY_TIMEOUT
                }
                Err(ParkError::NoDeadLetterQueue) => backoff(message.receive_count),
                Err(ParkError::Unavailable(error)) => {
                    error.log("could not park a job in the dead-letter queue");
                    backoff(message.receive_count)
                }
            },
        };
        let wait = wait.min(MAX_VISIBILITY_TIMEOUT);
        if let Err(error) = self.in_flight.retry_after(message, wait).await {
            // The queue's own visibility timeout applies instead.
            error.log("could not set when a job comes back");
        }
        End::Failed
    }
}

/// A message of the event as the port knows it.
fn received(message: SqsMessage) -> ReceivedJob {
    let attribute = |name: &str| message.attributes.get(name).cloned();
    ReceivedJob {
        group_id: attribute("MessageGroupId").unwrap_or_default(),
        receive_count: attribute("ApproximateReceiveCount")
            .and_then(|count| count.parse().ok())
            .unwrap_or(1),
        message_id: message.message_id.unwrap_or_default(),
        receipt_handle: message.receipt_handle,
        body: message.body.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::worker::testing::event_of;
    use ports::fakes::MemoryFifo;

    #[test]
    fn each_message_keeps_a_second_of_the_invocation_for_every_message_after_it() {
        let now = Instant::now();
        let end = now + Duration::from_secs(55);
        assert_eq!(message_deadline(now, end, 0), Some(end));
        assert_eq!(
            message_deadline(now, end, 9),
            Some(end - Duration::from_secs(9))
        );
        assert_eq!(
            message_deadline(now, now + Duration::from_millis(2500), 1),
            None,
            "1.5 s would be left: too little to start"
        );
        assert_eq!(
            message_deadline(now, now + Duration::from_secs(3), 1),
            Some(now + Duration::from_secs(2))
        );
        assert_eq!(message_deadline(now, now, 0), None);
    }

    /// A failure that is whatever its message's body says.
    #[derive(Debug)]
    struct Scripted(Disposition);

    impl std::fmt::Display for Scripted {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "scripted {:?}", self.0)
        }
    }

    impl Failure for Scripted {
        fn disposition(&self, _now: time::OffsetDateTime) -> Disposition {
            self.0
        }

        fn count(&self) {}
    }

    /// Runs each message as its body says: `ok`, `retry`, `park`, `hold`,
    /// `later`, `budget` (back in an hour), `hang`; a body starting with
    /// `take` is taken over when held back (failing when `take_over_fails`).
    #[derive(Default)]
    struct Script {
        ran: Mutex<Vec<String>>,
        taken_over: Mutex<Vec<(String, Vec<String>)>>,
        take_over_fails: bool,
    }

    #[async_trait]
    impl Handler for Script {
        type Error = Scripted;

        async fn handle(&self, message: &ReceivedJob, _deadline: Instant) -> Result<(), Scripted> {
            self.ran.lock().unwrap().push(message.message_id.clone());
            let fail = |disposition| Err(Scripted(disposition));
            match message.body.trim_start_matches("take ") {
                "retry" => fail(Disposition::Retry),
                "park" => fail(Disposition::Park),
                "hold" => fail(Disposition::Hold),
                "later" => fail(Disposition::Later(Duration::from_secs(60))),
                "budget" => fail(Disposition::RetryAfter(Duration::from_secs(3600))),
                "hang" => std::future::pending().await,
                _ => Ok(()),
            }
        }

        fn takes_over(&self, message: &ReceivedJob) -> bool {
            message.body.starts_with("take")
        }

        async fn take_over(
            &self,
            group: &str,
            held: &[ReceivedJob],
        ) -> Result<(), DependencyError> {
            let ids = held.iter().map(|m| m.message_id.clone()).collect();
            self.taken_over
                .lock()
                .unwrap()
                .push((group.to_owned(), ids));
            if self.take_over_fails {
                return Err(DependencyError::new("queue", "SendMessage", "down"));
            }
            Ok(())
        }
    }

    /// One invocation with `seconds` to go, as Lambda's event source makes
    /// it over `fifo`: the ids reported failed; the others are deleted.
    async fn invoke(script: &Script, fifo: &MemoryFifo, seconds: u64) -> Vec<String> {
        let received = fifo.receive(10);
        let runner = Runner {
            in_flight: fifo,
            clock: &domain::clock::SystemClock,
        };
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let response = runner.run(script, event_of(&received), deadline).await;
        let failed: Vec<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        for message in received.iter().filter(|m| !failed.contains(&m.message_id)) {
            fifo.delete(message.receipt_handle.as_deref().unwrap());
        }
        failed
    }

    /// The jobs queue as SQS runs it: a 360 s visibility timeout, a
    /// dead-letter queue.
    fn queue() -> MemoryFifo {
        MemoryFifo::new(Duration::from_secs(360))
    }

    /// `fifo` holding `messages` (group, body), and their ids.
    fn holding(fifo: MemoryFifo, messages: &[(&str, &str)]) -> (MemoryFifo, Vec<String>) {
        let ids = messages
            .iter()
            .map(|(group, body)| fifo.send(group, body))
            .collect();
        (fifo, ids)
    }

    fn secs(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_reports_exactly_the_messages_that_did_not_finish_each_back_when_its_failure_says(
    ) {
        let bodies = ["ok", "retry", "later", "budget", "park", "hold"];
        let groups: Vec<String> = (0..bodies.len()).map(|n| format!("group-{n}")).collect();
        let messages: Vec<(&str, &str)> = groups.iter().map(String::as_str).zip(bodies).collect();
        let (fifo, ids) = holding(queue(), &messages);

        let failed = invoke(&Script::default(), &fifo, 30).await;

        assert_eq!(failed, ids[1..4], "parked and held ones are acknowledged");
        let back_in: Vec<Option<Duration>> = ids.iter().map(|id| fifo.hidden_for(id)).collect();
        assert_eq!(
            back_in,
            [None, secs(30), secs(60), secs(3600), None, None],
            "done and parked ones are off the queue"
        );
        let parked: Vec<String> = fifo.parked().into_iter().map(|m| m.body).collect();
        assert_eq!(parked, ["park", "hold"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_message_holds_its_groups_later_ones_back_and_each_retry_backs_off_further() {
        let script = Script::default();
        let (fifo, ids) = holding(queue(), &[("a", "retry"), ("a", "ok"), ("b", "ok")]);
        let (first, behind, other) = (ids[0].clone(), ids[1].clone(), ids[2].clone());

        assert_eq!(
            invoke(&script, &fifo, 30).await,
            [first.clone(), behind.clone()]
        );
        assert_eq!(*script.ran.lock().unwrap(), [first.clone(), other]);
        assert_eq!(fifo.hidden_for(&behind), secs(30));

        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(invoke(&script, &fifo, 30).await, [first.clone(), behind]);
        assert_eq!(
            fifo.hidden_for(&first),
            secs(60),
            "the second receive waits twice as long"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn held_back_messages_a_handler_takes_over_are_acknowledged_unless_taking_over_fails() {
        for fails in [false, true] {
            let script = Script {
                take_over_fails: fails,
                ..Script::default()
            };
            let pulls = [
                ("pulls", "take retry"),
                ("pulls", "take ok"),
                ("pulls", "ok"),
            ];
            let (fifo, ids) = holding(queue(), &pulls);
            let (failing, taken, held) = (ids[0].clone(), ids[1].clone(), ids[2].clone());

            let failed = invoke(&script, &fifo, 30).await;

            let expected = if fails {
                vec![failing.clone(), held.clone(), taken.clone()]
            } else {
                vec![failing.clone(), held.clone()]
            };
            assert_eq!(failed, expected, "taking over fails: {fails}");
            assert_eq!(
                *script.taken_over.lock().unwrap(),
                [("pulls".to_owned(), vec![taken.clone()])]
            );
            assert_eq!(*script.ran.lock().unwrap(), [failing]);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_dead_letter_queue_a_job_to_park_is_retried_and_one_held_waits_twelve_hours() {
        let no_dead_letters = queue().without_dead_letter_queue();
        let (fifo, ids) = holding(no_dead_letters, &[("a", "park"), ("b", "hold")]);
        let (park, hold) = (ids[0].clone(), ids[1].clone());

        assert_eq!(
            invoke(&Script::default(), &fifo, 30).await,
            [park.clone(), hold.clone()]
        );

        assert_eq!(fifo.hidden_for(&park), secs(30));
        assert_eq!(fifo.hidden_for(&hold), Some(MAX_VISIBILITY_TIMEOUT));
        assert!(fifo.parked().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_that_cant_finish_is_retried_and_one_not_started_comes_back_at_once() {
        let script = Script::default();
        let (fifo, ids) = holding(queue(), &[("a", "hang"), ("b", "ok")]);
        let (hanging, last) = (ids[0].clone(), ids[1].clone());

        // 3 s: the first has 2 s (one kept for the last), the last then 1 s.
        assert_eq!(
            invoke(&script, &fifo, 3).await,
            [hanging.clone(), last.clone()]
        );

        assert_eq!(*script.ran.lock().unwrap(), [hanging.as_str()]);
        assert_eq!(fifo.hidden_for(&hanging), secs(30));
        assert_eq!(fifo.hidden_for(&last), secs(0), "back at once");
    }
}
