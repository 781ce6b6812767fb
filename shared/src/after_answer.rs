//! Work after the answer, inside Lambda's billing but outside the sender's
//! wait.
//!
//! Lambda freezes the sandbox once the runtime asks for the next event, so a
//! task left running after the answer may never finish. An internal
//! extension is the documented way around it: Lambda ends an invocation only
//! when the runtime *and* every extension have asked for their next event.
//! Each invocation hands the extension exactly one [`Handoff`] (possibly
//! empty, also when the handler panics); the extension runs it before it
//! lets the invocation end.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_extension::{service_fn, Extension, LambdaEvent, NextEvent};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Mutex;

/// Work to run after an answer.
pub type Work = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Name the extension registers under.
const EXTENSION_NAME: &str = "after-answer";

/// Time kept back from the invocation's deadline, so a stuck piece of work
/// can't turn a delivered answer into a timed-out invocation.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

struct Handoff {
    request_id: String,
    work: Option<Work>,
}

/// The handlers' side: one [`Pending`] per invocation.
#[derive(Clone)]
pub struct AfterAnswer {
    handoffs: UnboundedSender<Handoff>,
}

impl AfterAnswer {
    /// Starts an invocation's handoff. It is sent when dropped, so the
    /// extension never waits for an invocation whose handler failed.
    pub fn begin(&self, request_id: impl Into<String>) -> Pending {
        Pending {
            handoffs: self.handoffs.clone(),
            request_id: request_id.into(),
            work: None,
        }
    }
}

/// One invocation's handoff, sent when dropped.
pub struct Pending {
    handoffs: UnboundedSender<Handoff>,
    request_id: String,
    work: Option<Work>,
}

impl Pending {
    /// Sets the work to run after the answer.
    pub fn run_after(mut self, work: Option<Work>) {
        self.work = work;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let handoff = Handoff {
            request_id: std::mem::take(&mut self.request_id),
            work: self.work.take(),
        };
        // The extension has stopped only when the runtime is shutting down.
        let _ = self.handoffs.send(handoff);
    }
}

/// Registers the internal extension. Returns the handlers' side and the
/// extension's loop, to be run beside the runtime; fails where no Extensions
/// API answers (the caller then runs the work before answering).
pub async fn register() -> Result<
    (
        AfterAnswer,
        impl Future<Output = Result<(), lambda_extension::Error>>,
    ),
    lambda_extension::Error,
> {
    let (handoffs, received) = unbounded_channel();
    let received = Arc::new(Mutex::new(received));
    let processor = service_fn(move |event: LambdaEvent| {
        let received = Arc::clone(&received);
        async move {
            if let NextEvent::Invoke(invoke) = event.next {
                let mut received = received.lock().await;
                run_handoffs(&mut received, &invoke.request_id, invoke.deadline_ms).await;
            }
            Ok::<(), lambda_extension::Error>(())
        }
    });
    let registration = Extension::new()
        .with_extension_name(EXTENSION_NAME)
        .with_events(&["INVOKE"])
        .with_events_processor(processor)
        .register();
    let registered = tokio::time::timeout(Duration::from_secs(2), registration)
        .await
        .map_err(|_| "extension registration timed out")??;
    Ok((AfterAnswer { handoffs }, registered.run()))
}

/// Runs handoffs until the one of `request_id` (earlier ones left by an
/// invocation that outlived its deadline are run too), or the deadline.
async fn run_handoffs(
    received: &mut UnboundedReceiver<Handoff>,
    request_id: &str,
    deadline_ms: u64,
) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let left =
        Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(DEADLINE_MARGIN);
    let until_ours = async {
        while let Some(handoff) = received.recv().await {
            if let Some(work) = handoff.work {
                work.await;
            }
            if handoff.request_id == request_id || handoff.request_id.is_empty() {
                break;
            }
        }
    };
    if tokio::time::timeout(left, until_ours).await.is_err() {
        tracing::warn!("work after the answer did not finish before the deadline");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn far_deadline() -> u64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        (now + Duration::from_secs(30)).as_millis() as u64
    }

    fn counting(counter: &Arc<AtomicUsize>) -> Option<Work> {
        let counter = Arc::clone(counter);
        Some(Box::pin(async move {
            counter.fetch_add(1, Ordering::SeqCst);
        }))
    }

    #[tokio::test]
    async fn the_extension_runs_the_invocations_work_before_letting_it_end() {
        let (handoffs, mut received) = unbounded_channel();
        let after = AfterAnswer { handoffs };
        let ran = Arc::new(AtomicUsize::new(0));
        after.begin("req-1").run_after(counting(&ran));

        run_handoffs(&mut received, "req-1", far_deadline()).await;

        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_handler_that_panicked_still_releases_the_extension() {
        let (handoffs, mut received) = unbounded_channel();
        let after = AfterAnswer { handoffs };
        let pending = after.begin("req-1");
        let handler = tokio::spawn(async move {
            let _pending = pending;
            panic!("handler failed");
        });
        assert!(handler.await.is_err());

        let waited = tokio::time::timeout(
            Duration::from_secs(5),
            run_handoffs(&mut received, "req-1", far_deadline()),
        )
        .await;

        assert!(waited.is_ok(), "the extension waited for a dead handler");
    }

    #[tokio::test]
    async fn work_left_by_an_earlier_invocation_runs_and_does_not_end_the_next_one() {
        let (handoffs, mut received) = unbounded_channel();
        let after = AfterAnswer { handoffs };
        let ran = Arc::new(AtomicUsize::new(0));
        after.begin("req-1").run_after(counting(&ran));
        let second = after.begin("req-2");

        let waiting = run_handoffs(&mut received, "req-2", far_deadline());
        tokio::pin!(waiting);
        // req-1's work runs, but the extension keeps waiting for req-2's handoff.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut waiting)
                .await
                .is_err()
        );
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        second.run_after(counting(&ran));
        waiting.await;
        assert_eq!(ran.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_extension_gives_up_at_the_deadline() {
        let (_handoffs, mut received) = unbounded_channel::<Handoff>();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let deadline = (now + DEADLINE_MARGIN + Duration::from_millis(50)).as_millis() as u64;

        let waited = tokio::time::timeout(
            Duration::from_secs(5),
            run_handoffs(&mut received, "req-1", deadline),
        )
        .await;

        assert!(waited.is_ok());
    }
}
