//! A recording proxy on loopback between a function and the AWS endpoint:
//! forwards every request as it is and records when it arrived, when its
//! answer was ready, which operation it was, its body and the answer's
//! status (SDK retries included: each attempt is a request on the wire).
//! It can also answer chosen
//! requests itself (a [`Refusal`]: a throttle of one item's write, say), so
//! a fault hits exactly the request a test means, whatever came before.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::Error;

/// One AWS request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub start: Instant,
    pub end: Instant,
    /// `DynamoDB_20120810.PutItem`, `AmazonSQS.SendMessage`,
    /// `secretsmanager.GetSecretValue`, or `METHOD /path` for the rest.
    pub operation: String,
    /// The answer's status; 502 when the endpoint could not be reached.
    pub status: u16,
    /// Answered by a [`Refusal`], not by the endpoint.
    pub refused: bool,
    /// The request body (JSON for every AWS service the bundle uses).
    pub body: Bytes,
}

impl Call {
    /// The operation without its service prefix: `PutItem`.
    pub fn name(&self) -> &str {
        self.operation
            .rsplit_once('.')
            .map_or(self.operation.as_str(), |(_, name)| name)
    }

    /// The request body as JSON (`Null` when it isn't).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// An HTTP answer the proxy gives instead of the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    /// DynamoDB's throttling error, as the service sends it (awsJson 1.0).
    pub fn dynamodb_throttling() -> Self {
        Self {
            status: 400,
            content_type: "application/x-amz-json-1.0".into(),
            body: serde_json::json!({
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API."
            })
            .to_string(),
        }
    }

    /// SQS failing inside (awsJson 1.0, as the SDK speaks to SQS): a 500
    /// the SDK retries, then gives up on.
    pub fn sqs_internal_error() -> Self {
        Self {
            status: 500,
            content_type: "application/x-amz-json-1.0".into(),
            body: serde_json::json!({
                "__type": "com.amazonaws.sqs#InternalError",
                "message": "We encountered an internal error. Please try again."
            })
            .to_string(),
        }
    }
}

/// Which requests to answer with [`Reply`]: those of `operation` (the
/// `X-Amz-Target`, e.g. `DynamoDB_20120810.UpdateItem`) whose body holds
/// `body_contains` (an item's key, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub operation: String,
    pub body_contains: String,
    pub reply: Reply,
}

impl Refusal {
    fn matches(&self, operation: &str, body: &[u8]) -> bool {
        operation == self.operation && contains(body, self.body_contains.as_bytes())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    client: reqwest::Client,
    log: CallLog,
    refusals: Arc<Mutex<Vec<Refusal>>>,
}

/// The proxy, serving until dropped.
pub struct Proxy {
    /// What the function's `AWS_ENDPOINT_URL` holds.
    pub endpoint: String,
    log: CallLog,
    refusals: Arc<Mutex<Vec<Refusal>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The requests an endpoint answered: what the proxy and the stand-in both
/// record, read the same way. A call is recorded before its answer goes
/// back, so every request whose answer a caller has read is among them.
#[derive(Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<Call>>>);

impl CallLog {
    pub(crate) fn record(&self, call: Call) {
        locked(&self.0).push(call);
    }

    /// Every call recorded since the last [`CallLog::take`] or
    /// [`CallLog::clear`], in order of start.
    pub fn calls(&self) -> Vec<Call> {
        let mut calls = locked(&self.0).clone();
        calls.sort_by_key(|c| c.start);
        calls
    }

    /// The calls that started in `[from, to]`, in order of start.
    pub fn calls_started_between(&self, from: Instant, to: Instant) -> Vec<Call> {
        let mut calls = self.calls();
        calls.retain(|c| c.start >= from && c.start <= to);
        calls
    }

    /// Every call recorded so far, in order of start, forgetting them.
    pub fn take(&self) -> Vec<Call> {
        let mut calls = std::mem::take(&mut *locked(&self.0));
        calls.sort_by_key(|c| c.start);
        calls
    }

    /// Forgets the calls recorded so far.
    pub fn clear(&self) {
        locked(&self.0).clear();
    }
}

impl Proxy {
    /// The requests it forwarded (or refused): `proxy.log().calls()`.
    pub fn log(&self) -> &CallLog {
        &self.log
    }

    /// A proxy to `upstream` (`http://127.0.0.1:port`) on a free loopback port.
    pub async fn start(upstream: &str) -> Result<Self, Error> {
        let log = CallLog::default();
        let refusals = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder().no_proxy().build()?,
            log: log.clone(),
            refusals: Arc::clone(&refusals),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let router = Router::new().fallback(forward).with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            endpoint,
            log,
            refusals,
            task,
        })
    }

    /// Answers the requests `refusal` describes with its reply, until
    /// [`Proxy::allow_all`].
    pub fn refuse(&self, refusal: Refusal) {
        locked(&self.refusals).push(refusal);
    }

    /// Forwards every request again.
    pub fn allow_all(&self) {
        locked(&self.refusals).clear();
    }
}

const HOP_BY_HOP: [&str; 5] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
];

fn hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

fn operation_of(parts: &axum::http::request::Parts) -> String {
    parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{} {}", parts.method, parts.uri.path()))
}

fn canned(reply: &Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, reply.body.clone()).into_response();
    if let Ok(value) = HeaderValue::from_str(&reply.content_type) {
        response.headers_mut().insert("content-type", value);
    }
    response.headers_mut().insert(
        "x-amzn-requestid",
        HeaderValue::from_static("lambda-sandbox"),
    );
    response
}

async fn forward(State(shared): State<Shared>, request: Request) -> Response {
    let start = Instant::now();
    let (parts, body) = request.into_parts();
    let operation = operation_of(&parts);
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let refusal = locked(&shared.refusals)
        .iter()
        .find(|r| r.matches(&operation, &body))
        .map(|r| r.reply.clone());
    let (status, response, refused) = match refusal {
        Some(reply) => (reply.status, canned(&reply), true),
        None => {
            let (status, response) = relay(&shared, parts, body.clone()).await;
            (status.as_u16(), response, false)
        }
    };
    // Recorded before the answer goes back: a caller never holds an answer
    // whose call is not in the log yet.
    shared.log.record(Call {
        start,
        end: Instant::now(),
        operation,
        status,
        refused,
        body,
    });
    response
}

async fn relay(
    shared: &Shared,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> (StatusCode, Response) {
    let url = format!(
        "{}{}",
        shared.upstream,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut upstream = shared.client.request(parts.method, url).body(body);
    for (name, value) in parts.headers.iter().filter(|(n, _)| !hop_by_hop(n)) {
        upstream = upstream.header(name, value);
    }
    let bad_gateway = |e: reqwest::Error| {
        (
            StatusCode::BAD_GATEWAY,
            (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        )
    };
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => return bad_gateway(e),
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    match answer.bytes().await {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            for (name, value) in headers.iter().filter(|(n, _)| !hop_by_hop(n)) {
                response.headers_mut().append(name, value.clone());
            }
            (status, response)
        }
        Err(e) => bad_gateway(e),
    }
}

/// The longest chain of calls where each starts after the previous ended:
/// the round trips the caller waited for one after the other.
pub fn sequential_round_trips(calls: &[Call]) -> usize {
    let mut sorted: Vec<&Call> = calls.iter().collect();
    sorted.sort_by_key(|c| c.start);
    let mut chain = vec![0usize; sorted.len()];
    for i in 0..sorted.len() {
        chain[i] = 1
            + (0..i)
                .filter(|&j| sorted[j].end <= sorted[i].start)
                .map(|j| chain[j])
                .max()
                .unwrap_or(0);
    }
    chain.into_iter().max().unwrap_or(0)
}

/// How long, within `from..to`, at least one of `calls` was in flight: the
/// time the caller spent waiting on AWS (here, on the local endpoint).
pub fn waiting(calls: &[Call], from: Instant, to: Instant) -> Duration {
    let mut spans: Vec<(Instant, Instant)> = calls
        .iter()
        .map(|c| (c.start.max(from), c.end.min(to)))
        .filter(|(start, end)| start < end)
        .collect();
    spans.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (start, end) in spans {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((s, e)) = current {
        total += e - s;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(base: Instant, start_ms: u64, end_ms: u64) -> Call {
        Call {
            start: base + Duration::from_millis(start_ms),
            end: base + Duration::from_millis(end_ms),
            operation: "DynamoDB_20120810.PutItem".into(),
            status: 200,
            refused: false,
            body: Bytes::new(),
        }
    }

    #[test]
    fn waiting_counts_overlapping_calls_once_and_only_inside_the_window() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let calls = [
            call(t, 0, 5),
            call(t, 3, 8),
            call(t, 10, 12),
            call(t, 20, 30),
        ];
        assert_eq!(waiting(&calls, t, t + ms(25)), ms(8 + 2 + 5));
        assert_eq!(waiting(&[], t, t + ms(25)), Duration::ZERO);
    }

    #[test]
    fn concurrent_calls_are_one_round_trip_and_chained_ones_add_up() {
        let t = Instant::now();
        assert_eq!(sequential_round_trips(&[]), 0);
        assert_eq!(sequential_round_trips(&[call(t, 0, 5), call(t, 1, 6)]), 1);
        assert_eq!(
            sequential_round_trips(&[call(t, 0, 5), call(t, 1, 6), call(t, 6, 9)]),
            2
        );
        assert_eq!(
            sequential_round_trips(&[call(t, 10, 12), call(t, 0, 5), call(t, 5, 9)]),
            3
        );
    }

    #[test]
    fn a_call_is_named_without_its_service() {
        assert_eq!(call(Instant::now(), 0, 1).name(), "PutItem");
    }

    /// An endpoint that answers every request with its path, and counts them.
    async fn upstream() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&seen);
        let router = Router::new().fallback(move |request: Request| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                request.uri().path().to_owned()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (url, seen)
    }

    async fn post(proxy: &Proxy, target: &str, body: &str) -> (u16, String) {
        let answer = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(format!("{}/x", proxy.endpoint))
            .header("x-amz-target", target)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    }

    #[tokio::test]
    async fn a_refusal_answers_only_the_requests_it_names_and_they_never_reach_the_endpoint() {
        let (url, seen) = upstream().await;
        let proxy = Proxy::start(&url).await.unwrap();
        let reply = Reply {
            status: 400,
            content_type: "application/x-amz-json-1.0".into(),
            body: r#"{"__type":"Throttled"}"#.into(),
        };
        proxy.refuse(Refusal {
            operation: "DynamoDB_20120810.UpdateItem".into(),
            body_contains: "entity-b".into(),
            reply: reply.clone(),
        });
        let write = "DynamoDB_20120810.UpdateItem";
        assert_eq!(post(&proxy, write, "entity-a").await, (200, "/x".into()));
        assert_eq!(post(&proxy, write, "of entity-b").await, (400, reply.body));
        assert_eq!(
            post(&proxy, "DynamoDB_20120810.PutItem", "entity-b").await,
            (200, "/x".into())
        );
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 2);
        let calls = proxy.log().calls();
        assert_eq!(
            calls
                .iter()
                .map(|c| (c.name(), c.status, c.refused))
                .collect::<Vec<_>>(),
            [
                ("UpdateItem", 200, false),
                ("UpdateItem", 400, true),
                ("PutItem", 200, false)
            ]
        );
        proxy.allow_all();
        assert_eq!(post(&proxy, write, "entity-b").await, (200, "/x".into()));
        proxy.log().clear();
        assert!(proxy.log().calls().is_empty());
    }

    #[tokio::test]
    async fn take_hands_over_each_call_once_with_its_body() {
        let (url, _) = upstream().await;
        let proxy = Proxy::start(&url).await.unwrap();
        let put = "DynamoDB_20120810.PutItem";
        post(&proxy, put, r#"{"Item":{"k":{"S":"a"}}}"#).await;
        post(&proxy, put, "not JSON").await;
        let taken = proxy.log().take();
        assert_eq!(
            taken.iter().map(|c| c.json()).collect::<Vec<_>>(),
            [
                serde_json::json!({"Item": {"k": {"S": "a"}}}),
                serde_json::Value::Null
            ]
        );
        assert_eq!(taken[1].body.as_ref(), b"not JSON");
        assert!(proxy.log().take().is_empty(), "taken once");
        post(&proxy, put, "{}").await;
        assert_eq!(proxy.log().take().len(), 1);
    }
}
