//! A stand-in of one Lambda execution environment's control plane, on a free
//! loopback port: the Runtime API (`/2018-06-01/runtime/...`) and the
//! Extensions API (`/2020-01-01/extension/...`), as documented by AWS.
//!
//! Lambda's rule, kept here: an invocation ends (the sandbox would be frozen)
//! only when the runtime and every extension registered for `INVOKE` are
//! back at their `next`; the answer is out as soon as the runtime posts its
//! response. Work done between the two is billed but not waited for by the
//! caller.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::Error;

/// How the runtime answered one invocation.
#[derive(Debug, Clone)]
pub enum Answer {
    Response(String),
    Error(String),
}

/// What the harness learns about one invocation.
#[derive(Debug, Clone)]
pub struct Invoked {
    /// When the runtime's `next` returned the event.
    pub handed_out: Instant,
    /// When the runtime posted its response (or error).
    pub answered: Instant,
    /// When the runtime and every `INVOKE` extension were back at `next`.
    pub ended: Instant,
    pub answer: Answer,
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

struct Extension {
    id: String,
    name: String,
    invoke: bool,
    /// Set while the extension waits in `next`.
    at_next: Option<Instant>,
    /// The event it has yet to take.
    pending: Option<Value>,
}

#[derive(Default)]
struct Inner {
    first_next: Option<Instant>,
    /// Set while the runtime waits in `next`.
    runtime_at_next: Option<Instant>,
    for_runtime: Option<Pending>,
    current: Option<Current>,
    extensions: Vec<Extension>,
    shutdown: bool,
    init_error: Option<String>,
    invocations: u64,
}

impl Inner {
    fn failure(&self) -> Option<Error> {
        self.init_error
            .as_ref()
            .map(|e| format!("the runtime reported an init error: {e}").into())
    }

    /// The runtime and every `INVOKE` extension are waiting, with nothing left to take.
    fn idle_since(&self) -> Option<Instant> {
        if self.for_runtime.is_some() {
            return None;
        }
        let mut latest = self.runtime_at_next?;
        for extension in self.extensions.iter().filter(|e| e.invoke) {
            if extension.pending.is_some() {
                return None;
            }
            latest = latest.max(extension.at_next?);
        }
        Some(latest)
    }
}

pub struct Sandbox {
    function_name: String,
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
}

const ARN_PREFIX: &str = "arn:aws:lambda:us-east-1:123456789012:function:";

impl Sandbox {
    pub fn new(function_name: &str) -> Arc<Self> {
        Arc::new(Self {
            function_name: function_name.to_owned(),
            inner: Mutex::new(Inner::default()),
            changed: watch::channel(0).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
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

    async fn wait_checked<T>(
        &self,
        what: &str,
        limit: Duration,
        mut f: impl FnMut(&mut Inner) -> Option<T>,
    ) -> Result<T, Error> {
        let waited = self.wait_for(|s| match s.failure() {
            Some(e) => Some(Err(e)),
            None => f(s).map(Ok),
        });
        match tokio::time::timeout(limit, waited).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "{}: timed out after {limit:?} waiting for {what}",
                self.function_name
            )
            .into()),
        }
    }

    /// When the runtime first called `next` (the end of its init).
    pub async fn wait_init(&self, limit: Duration) -> Result<Instant, Error> {
        self.wait_checked("the first `next`", limit, |s| s.first_next)
            .await
    }

    /// The names of the extensions that registered, and whether for `INVOKE`.
    pub fn extensions(&self) -> Vec<(String, bool)> {
        self.lock()
            .extensions
            .iter()
            .map(|e| (e.name.clone(), e.invoke))
            .collect()
    }

    /// Hands `event` to the runtime (and `INVOKE` to the extensions) once the
    /// sandbox is idle, and waits for the answer and for the end.
    pub async fn invoke(&self, event: &Value, limit: Duration) -> Result<Invoked, Error> {
        self.wait_checked("the sandbox to be idle", limit, |s| s.idle_since())
            .await?;
        let deadline_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            + 10_000;
        let request_id = self.update(|s| {
            s.invocations += 1;
            let request_id = format!("bench-{:08x}-{:012}", std::process::id(), s.invocations);
            s.current = Some(Current {
                request_id: request_id.clone(),
                handed_out: None,
                answered: None,
            });
            s.for_runtime = Some(Pending {
                request_id: request_id.clone(),
                body: event.to_string(),
                deadline_ms,
            });
            for extension in s.extensions.iter_mut().filter(|e| e.invoke) {
                extension.pending = Some(json!({
                    "eventType": "INVOKE",
                    "deadlineMs": deadline_ms,
                    "requestId": request_id,
                    "invokedFunctionArn": format!("{ARN_PREFIX}{}", self.function_name),
                    "tracing": {"type": "X-Amzn-Trace-Id", "value": trace_id(&request_id)},
                }));
            }
            request_id
        });
        let (handed_out, answered, answer) = self
            .wait_checked("the answer", limit, |s| {
                let current = s.current.as_ref()?;
                let (answered, answer) = current.answered.clone()?;
                Some((current.handed_out?, answered, answer))
            })
            .await
            .map_err(|e| format!("{e} (request {request_id})"))?;
        let ended = self
            .wait_checked(
                "the runtime and extensions to be back at `next`",
                limit,
                |s| s.idle_since(),
            )
            .await?;
        Ok(Invoked {
            handed_out,
            answered,
            ended: ended.max(answered),
            answer,
        })
    }

    /// Sends `SHUTDOWN` to the extensions (the runtime just stays in `next`).
    pub fn shutdown(&self) {
        self.update(|s| s.shutdown = true);
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
            .route("/2020-01-01/extension/register", post(extension_register))
            .route("/2020-01-01/extension/event/next", get(extension_next))
            .route("/2020-01-01/extension/init/error", post(extension_error))
            .route("/2020-01-01/extension/exit/error", post(extension_error))
            .with_state(Arc::clone(self))
    }
}

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

async fn extension_register(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let name = headers
        .get("lambda-extension-name")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unnamed")
        .to_owned();
    let events: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let invoke = events["events"]
        .as_array()
        .is_some_and(|list| list.iter().any(|e| e == "INVOKE"));
    let id = sandbox.update(|s| {
        let id = format!(
            "00000000-0000-4000-8000-{:012x}",
            s.extensions.len() as u64 + 1
        );
        s.extensions.push(Extension {
            id: id.clone(),
            name,
            invoke,
            at_next: None,
            pending: None,
        });
        id
    });
    (
        StatusCode::OK,
        [
            ("lambda-extension-identifier", id),
            ("content-type", "application/json".to_owned()),
        ],
        json!({
            "functionName": sandbox.function_name,
            "functionVersion": "$LATEST",
            "handler": "bootstrap",
        })
        .to_string(),
    )
        .into_response()
}

async fn extension_next(State(sandbox): State<Arc<Sandbox>>, headers: HeaderMap) -> Response {
    let Some(id) = headers
        .get("lambda-extension-identifier")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return (StatusCode::FORBIDDEN, "missing Lambda-Extension-Identifier").into_response();
    };
    let now = Instant::now();
    let known = sandbox.update(|s| match s.extensions.iter_mut().find(|e| e.id == id) {
        Some(extension) => {
            extension.at_next = Some(now);
            true
        }
        None => false,
    });
    if !known {
        return (StatusCode::FORBIDDEN, "unknown extension").into_response();
    }
    let event = sandbox
        .wait_for(|s| {
            let shutdown = s.shutdown;
            let extension = s.extensions.iter_mut().find(|e| e.id == id)?;
            if let Some(event) = extension.pending.take() {
                extension.at_next = None;
                return Some(event);
            }
            shutdown.then(|| {
                extension.at_next = None;
                json!({
                    "eventType": "SHUTDOWN",
                    "shutdownReason": "spindown",
                    "deadlineMs": SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis() + 2_000,
                })
            })
        })
        .await;
    let request_id = event["requestId"].as_str().unwrap_or_default().to_owned();
    (
        StatusCode::OK,
        [
            ("lambda-extension-event-identifier", request_id),
            ("content-type", "application/json".to_owned()),
        ],
        event.to_string(),
    )
        .into_response()
}

async fn extension_error(headers: HeaderMap) -> Response {
    let kind = headers
        .get("lambda-extension-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    eprintln!("lambda-bench: an extension reported an error: {kind}");
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

/// Serves `sandbox` on a free loopback port; returns `host:port` and the task.
pub async fn serve(sandbox: &Arc<Sandbox>) -> Result<(String, tokio::task::JoinHandle<()>), Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let router = sandbox.router();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((address, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime and an internal extension, played with plain HTTP: the
    /// invocation ends when the extension is back, after the answer.
    #[tokio::test]
    async fn an_invocation_ends_when_the_runtime_and_every_extension_are_back() {
        let sandbox = Sandbox::new("probe");
        let (address, server) = serve(&sandbox).await.unwrap();
        let base = format!("http://{address}");
        let http = reqwest::Client::new();
        let registered = http
            .post(format!("{base}/2020-01-01/extension/register"))
            .header("Lambda-Extension-Name", "bookkeeping")
            .body(r#"{"events":["INVOKE"]}"#)
            .send()
            .await
            .unwrap();
        let ext_id = registered.headers()["lambda-extension-identifier"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            registered.json::<Value>().await.unwrap()["functionName"],
            "probe"
        );
        let (ext_http, ext_base) = (http.clone(), base.clone());
        let extension = tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let event: Value = ext_http
                    .get(format!("{ext_base}/2020-01-01/extension/event/next"))
                    .header("Lambda-Extension-Identifier", &ext_id)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let kind = event["eventType"].as_str().unwrap().to_owned();
                seen.push(kind.clone());
                if kind == "SHUTDOWN" {
                    return seen;
                }
                // The bookkeeping after the answer.
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        });
        let (rt_http, rt_base) = (http.clone(), base.clone());
        let runtime = tokio::spawn(async move {
            loop {
                let event = rt_http
                    .get(format!("{rt_base}/2018-06-01/runtime/invocation/next"))
                    .send()
                    .await
                    .unwrap();
                let id = event.headers()["lambda-runtime-aws-request-id"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                assert!(event.headers().contains_key("lambda-runtime-deadline-ms"));
                let body = event.text().await.unwrap();
                rt_http
                    .post(format!(
                        "{rt_base}/2018-06-01/runtime/invocation/{id}/response"
                    ))
                    .body(body)
                    .send()
                    .await
                    .unwrap();
            }
        });
        sandbox.wait_init(Duration::from_secs(5)).await.unwrap();
        for n in 0..3 {
            let invoked = sandbox
                .invoke(&json!({"n": n}), Duration::from_secs(5))
                .await
                .unwrap();
            let Answer::Response(body) = &invoked.answer else {
                panic!("no response");
            };
            assert_eq!(serde_json::from_str::<Value>(body).unwrap()["n"], n);
            assert!(invoked.answered - invoked.handed_out < Duration::from_millis(40));
            assert!(invoked.ended - invoked.handed_out >= Duration::from_millis(40));
        }
        sandbox.shutdown();
        let seen = extension.await.unwrap();
        assert_eq!(seen, ["INVOKE", "INVOKE", "INVOKE", "SHUTDOWN"]);
        runtime.abort();
        server.abort();
    }
}
