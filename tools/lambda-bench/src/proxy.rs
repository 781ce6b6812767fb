//! A counting proxy on loopback between the functions and the local AWS
//! endpoint: forwards every request as it is and records when it arrived,
//! when its answer was ready, and which operation it was.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::Error;

/// One AWS request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub start: Instant,
    pub end: Instant,
    /// `DynamoDB_20120810.PutItem`, `AmazonSQS.SendMessage`, ...
    pub operation: String,
    pub status: u16,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    client: reqwest::Client,
    log: Arc<Mutex<Vec<Call>>>,
}

pub struct Proxy {
    pub endpoint: String,
    log: Arc<Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: &str) -> Result<Self, Error> {
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder().no_proxy().build()?,
            log: Arc::clone(&log),
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
            task,
        })
    }

    /// The calls that started in `[from, to]`, in order of start.
    pub fn calls_started_between(&self, from: Instant, to: Instant) -> Vec<Call> {
        let mut calls: Vec<Call> = self
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|c| c.start >= from && c.start <= to)
            .cloned()
            .collect();
        calls.sort_by_key(|c| c.start);
        calls
    }

    pub fn clear(&self) {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
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

async fn forward(State(shared): State<Shared>, request: Request) -> Response {
    let start = Instant::now();
    let (parts, body) = request.into_parts();
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{} {}", parts.method, parts.uri.path()));
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
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
    let (status, response) = match upstream.send().await {
        Ok(answer) => {
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
                Err(e) => (
                    StatusCode::BAD_GATEWAY,
                    (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
                ),
            }
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        ),
    };
    shared
        .log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Call {
            start,
            end: Instant::now(),
            operation,
            status: status.as_u16(),
        });
    response
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
    use std::time::Duration;

    fn call(base: Instant, start_ms: u64, end_ms: u64) -> Call {
        Call {
            start: base + Duration::from_millis(start_ms),
            end: base + Duration::from_millis(end_ms),
            operation: String::new(),
            status: 200,
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
}
