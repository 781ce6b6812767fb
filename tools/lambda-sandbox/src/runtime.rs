//! The Runtime API of one Lambda execution environment
//! (`/2018-06-01/runtime/...`, as documented by AWS), on a loopback port.
//!
//! Lambda's rules, kept here: one invocation at a time; an event is handed
//! out only to a runtime waiting in `next`; the answer is out as soon as the
//! runtime posts its response (or error); the invocation ends when the
//! runtime is back at `next` (Lambda would freeze the sandbox there, and
//! bills up to it). No Extensions API: no function of the bundle registers
//! an extension, so Lambda would not wait for one.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::sync::watch;

use crate::Error;

/// Lambda's limit on a synchronous invocation's payload and its response.
pub const PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

/// How the runtime answered one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Posted to `/invocation/{id}/response`.
    Response(String),
    /// Posted to `/invocation/{id}/error` (the handler returned an error).
    Error(String),
}

/// What the caller learns about one invocation.
#[derive(Debug, Clone)]
pub struct Invoked {
    pub request_id: String,
    /// When the runtime's `next` returned the event.
    pub handed_out: Instant,
    /// When the runtime posted its response (or error).
    pub answered: Instant,
    /// When the runtime was back at `next`: the end of the invocation.
    pub ended: Instant,
    pub answer: Answer,
}

impl Invoked {
    /// Event handed out to answer posted.
    pub fn answer_time(&self) -> Duration {
        self.answered - self.handed_out
    }

    /// Event handed out to the runtime back at `next`.
    pub fn duration(&self) -> Duration {
        self.ended - self.handed_out
    }

    /// The response, parsed; an error answer or a response that isn't JSON
    /// is an [`Error`].
    pub fn json(&self, function: &str) -> Result<Value, Error> {
        match &self.answer {
            Answer::Response(body) => serde_json::from_str(body).map_err(|e| Error::Unreadable {
                function: function.to_owned(),
                why: e.to_string(),
            }),
            Answer::Error(body) => Err(Error::Failed {
                function: function.to_owned(),
                error: body.clone(),
            }),
        }
    }
}

struct Pending {
    request_id: String,
    body: String,
    deadline_ms: u128,
}

struct Current {
    request_id: String,
    handed_out: Option<Instant>,
    answered: Option<(Instant, Answer)>,
}

#[derive(Default)]
struct Inner {
    first_next: Option<Instant>,
    /// Set while the runtime waits in `next`.
    runtime_at_next: Option<Instant>,
    for_runtime: Option<Pending>,
    current: Option<Current>,
    init_error: Option<String>,
    invocations: u64,
}

impl Inner {
    /// The runtime waits in `next` with nothing left to take.
    fn idle_since(&self) -> Option<Instant> {
        if self.for_runtime.is_some() {
            return None;
        }
        self.runtime_at_next
    }
}

/// The control plane of one execution environment.
pub struct Sandbox {
    function_name: String,
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
}

const ARN_PREFIX: &str = "arn:aws:lambda:us-east-1:123456789012:function:";

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

impl Sandbox {
    pub fn new(function_name: &str) -> Arc<Self> {
        Arc::new(Self {
            function_name: function_name.to_owned(),
            inner: Mutex::new(Inner::default()),
            changed: watch::channel(0).0,
        })
    }

    pub fn function_name(&self) -> &str {
        &self.function_name
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let out = f(&mut self.lock());
        self.changed.send_modify(|v| *v += 1);
        out
    }

    /// Waits until `f` returns `Some`, re-checking after every change.
    async fn wait_for<T>(&self, mut f: impl FnMut(&mut Inner) -> Option<T>) -> T {
        let mut rx = self.changed.subscribe();
        loop {
            rx.borrow_and_update();
            let found = f(&mut self.lock());
            if let Some(found) = found {
                self.changed.send_modify(|v| *v += 1);
                return found;
            }
            // The sender lives as long as `self`.
            let _ = rx.changed().await;
        }
    }

    /// Like [`Self::wait_for`], for at most `limit`, and failing at once if
    /// the runtime reported an init error.
    async fn wait_checked<T>(
        &self,
        what: &'static str,
        limit: Duration,
        mut f: impl FnMut(&mut Inner) -> Option<T>,
    ) -> Result<T, Error> {
        let waited = self.wait_for(|s| match &s.init_error {
            Some(message) => Some(Err(Error::InitFailed {
                function: self.function_name.clone(),
                message: message.clone(),
            })),
            None => f(s).map(Ok),
        });
        tokio::time::timeout(limit, waited)
            .await
            .unwrap_or_else(|_| {
                Err(Error::TimedOut {
                    function: self.function_name.clone(),
                    what,
                    limit,
                })
            })
    }

    /// When the runtime first called `next` (the end of its init).
    pub async fn wait_init(&self, limit: Duration) -> Result<Instant, Error> {
        self.wait_checked("the runtime's first `next`", limit, |s| s.first_next)
            .await
    }

    /// Hands `event` to the runtime once it waits in `next`, and waits for
    /// its answer and for it to be back at `next`; the invocation's deadline
    /// is `limit` from now.
    pub async fn invoke(&self, event: &Value, limit: Duration) -> Result<Invoked, Error> {
        let body = event.to_string();
        if body.len() > PAYLOAD_LIMIT {
            return Err(Error::PayloadTooLarge {
                function: self.function_name.clone(),
                size: body.len(),
            });
        }
        let started = Instant::now();
        self.wait_checked("the runtime to wait in `next`", limit, |s| s.idle_since())
            .await?;
        let deadline_ms = epoch_ms() + limit.saturating_sub(started.elapsed()).as_millis();
        let request_id = self.update(|s| {
            s.invocations += 1;
            let request_id = format!(
                "{:08x}-0000-4000-8000-{:012x}",
                std::process::id(),
                s.invocations
            );
            s.current = Some(Current {
                request_id: request_id.clone(),
                handed_out: None,
                answered: None,
            });
            s.for_runtime = Some(Pending {
                request_id: request_id.clone(),
                body,
                deadline_ms,
            });
            request_id
        });
        let left = |started: Instant| limit.saturating_sub(started.elapsed());
        let (handed_out, answered, answer) = self
            .wait_checked("the answer", left(started), |s| {
                let current = s.current.as_ref()?;
                let (answered, answer) = current.answered.clone()?;
                Some((current.handed_out?, answered, answer))
            })
            .await?;
        let ended = self
            .wait_checked("the runtime to be back at `next`", left(started), |s| {
                s.idle_since()
            })
            .await?;
        Ok(Invoked {
            request_id,
            handed_out,
            answered,
            ended: ended.max(answered),
            answer,
        })
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(runtime_next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(runtime_response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(runtime_error),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .layer(DefaultBodyLimit::max(PAYLOAD_LIMIT))
            .with_state(Arc::clone(self))
    }
}

/// The X-Ray header Lambda hands the runtime, made of the request id.
fn trace_id(request_id: &str) -> String {
    let tail: String = request_id.chars().filter(char::is_ascii_hexdigit).collect();
    format!(
        "Root=1-00000000-{:0>24};Parent=0000000000000001;Sampled=0",
        &tail[tail.len().saturating_sub(24)..]
    )
}

async fn runtime_next(State(sandbox): State<Arc<Sandbox>>) -> Response {
    let now = Instant::now();
    sandbox.update(|s| {
        s.first_next.get_or_insert(now);
        s.runtime_at_next = Some(now);
    });
    let pending = sandbox
        .wait_for(|s| {
            let pending = s.for_runtime.take()?;
            s.runtime_at_next = None;
            if let Some(current) = s.current.as_mut() {
                current.handed_out = Some(Instant::now());
            }
            Some(pending)
        })
        .await;
    (
        StatusCode::OK,
        [
            ("content-type", "application/json".to_owned()),
            ("lambda-runtime-aws-request-id", pending.request_id.clone()),
            (
                "lambda-runtime-deadline-ms",
                pending.deadline_ms.to_string(),
            ),
            (
                "lambda-runtime-invoked-function-arn",
                format!("{ARN_PREFIX}{}", sandbox.function_name),
            ),
            ("lambda-runtime-trace-id", trace_id(&pending.request_id)),
        ],
        pending.body,
    )
        .into_response()
}

fn answered(sandbox: &Sandbox, id: &str, answer: Answer) -> Response {
    let now = Instant::now();
    let known = sandbox.update(|s| match s.current.as_mut() {
        Some(current) if current.request_id == id && current.answered.is_none() => {
            current.answered = Some((now, answer));
            true
        }
        _ => false,
    });
    if known {
        (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
    } else {
        (
            StatusCode::BAD_REQUEST,
            r#"{"errorMessage":"unknown or already answered request id","errorType":"InvalidRequestID"}"#,
        )
            .into_response()
    }
}

async fn runtime_response(
    State(sandbox): State<Arc<Sandbox>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    answered(
        &sandbox,
        &id,
        Answer::Response(String::from_utf8_lossy(&body).into_owned()),
    )
}

async fn runtime_error(
    State(sandbox): State<Arc<Sandbox>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    answered(
        &sandbox,
        &id,
        Answer::Error(String::from_utf8_lossy(&body).into_owned()),
    )
}

async fn init_error(State(sandbox): State<Arc<Sandbox>>, body: Bytes) -> Response {
    let message = String::from_utf8_lossy(&body).into_owned();
    sandbox.update(|s| s.init_error = Some(message));
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

/// A server task, aborted when dropped.
pub struct Served {
    /// `host:port`, what `AWS_LAMBDA_RUNTIME_API` holds.
    pub address: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `sandbox`'s Runtime API on a free loopback port.
pub async fn serve(sandbox: &Arc<Sandbox>) -> Result<Served, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let router = sandbox.router();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(Served { address, task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A runtime played with plain HTTP: `next`, then the response or the
    /// error for the request id it was given.
    fn runtime(address: &str, fail_when: fn(&Value) -> bool) -> tokio::task::JoinHandle<()> {
        let base = format!("http://{address}/2018-06-01/runtime");
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let event = http
                    .get(format!("{base}/invocation/next"))
                    .send()
                    .await
                    .unwrap();
                let id = event.headers()["lambda-runtime-aws-request-id"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                assert!(event.headers().contains_key("lambda-runtime-deadline-ms"));
                let body: Value = event.json().await.unwrap();
                let (path, answer) = if fail_when(&body) {
                    ("error", json!({"errorType": "Boom", "errorMessage": "no"}))
                } else {
                    ("response", json!({"echo": body}))
                };
                // Work between the answer and the next `next` is billed.
                let posted = http
                    .post(format!("{base}/invocation/{id}/{path}"))
                    .body(answer.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(posted.status(), 202);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    }

    #[tokio::test]
    async fn each_invocation_gets_its_answer_and_ends_when_the_runtime_is_back_at_next() {
        let sandbox = Sandbox::new("probe");
        let served = serve(&sandbox).await.unwrap();
        let runtime = runtime(&served.address, |_| false);
        sandbox.wait_init(Duration::from_secs(5)).await.unwrap();
        let mut ids = Vec::new();
        for n in 0..3 {
            let invoked = sandbox
                .invoke(&json!({"n": n}), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(invoked.json("probe").unwrap(), json!({"echo": {"n": n}}));
            assert!(invoked.answer_time() < Duration::from_millis(30));
            assert!(invoked.duration() >= Duration::from_millis(30));
            ids.push(invoked.request_id);
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), 3, "each invocation has its own request id");
        runtime.abort();
    }

    #[tokio::test]
    async fn an_error_answer_is_a_failure_of_the_function() {
        let sandbox = Sandbox::new("probe");
        let served = serve(&sandbox).await.unwrap();
        let runtime = runtime(&served.address, |body| body["fail"] == true);
        sandbox.wait_init(Duration::from_secs(5)).await.unwrap();
        let invoked = sandbox
            .invoke(&json!({"fail": true}), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(matches!(&invoked.answer, Answer::Error(body) if body.contains("Boom")));
        assert!(matches!(
            invoked.json("probe"),
            Err(Error::Failed { error, .. }) if error.contains("Boom")
        ));
        // The sandbox serves the next invocation after an error.
        let invoked = sandbox
            .invoke(&json!({"fail": false}), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(invoked.json("probe").unwrap()["echo"]["fail"], false);
        runtime.abort();
    }

    #[tokio::test]
    async fn an_answer_for_another_request_id_is_refused() {
        let sandbox = Sandbox::new("probe");
        let served = serve(&sandbox).await.unwrap();
        let posted = reqwest::Client::new()
            .post(format!(
                "http://{}/2018-06-01/runtime/invocation/not-handed-out/response",
                served.address
            ))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 400);
    }

    #[tokio::test]
    async fn without_a_runtime_an_invocation_times_out_and_says_what_it_waited_for() {
        let sandbox = Sandbox::new("probe");
        let _served = serve(&sandbox).await.unwrap();
        let error = sandbox
            .invoke(&json!({}), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::TimedOut { what, .. } if what.contains("`next`")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_init_error_fails_the_wait_for_init_at_once() {
        let sandbox = Sandbox::new("probe");
        let served = serve(&sandbox).await.unwrap();
        reqwest::Client::new()
            .post(format!(
                "http://{}/2018-06-01/runtime/init/error",
                served.address
            ))
            .body(r#"{"errorType":"Config","errorMessage":"EVENTS_TABLE is missing"}"#)
            .send()
            .await
            .unwrap();
        let error = sandbox.wait_init(Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(&error, Error::InitFailed { message, .. } if message.contains("EVENTS_TABLE")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_payload_over_lambdas_limit_is_refused_before_it_is_handed_out() {
        let sandbox = Sandbox::new("probe");
        let big = Value::String("x".repeat(PAYLOAD_LIMIT));
        let error = sandbox
            .invoke(&big, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::PayloadTooLarge { .. }), "{error}");
    }
}
