//! A stand-in for the few AWS operations the functions (and the Python
//! reference) call, answering from memory in microseconds, so a benchmark
//! measures the function and not a local emulator's milliseconds of
//! Python per request. What it implements it implements as the service
//! does (condition expressions, the refusal with the old item, FIFO
//! deduplication, digests, error bodies); anything else is a 400
//! `lambda-sandbox#UnsupportedByStandIn` naming what is missing, never a
//! silent success.
//!
//! - DynamoDB: CreateTable, DescribeTable, UpdateTimeToLive, PutItem,
//!   GetItem, UpdateItem, DeleteItem.
//! - Secrets Manager: CreateSecret, PutSecretValue, GetSecretValue.
//! - SQS: CreateQueue, GetQueueUrl, GetQueueAttributes, SendMessage.
//!
//! That is everything `local-stack`'s `provision`, `put_revel_secrets` and
//! `put_demo_secrets` call, so a stack is provisioned on it as on moto.
//! Requests are not authenticated (nor are they by moto).
//!
//! Over HTTPS ([`Options::https`]) it serves a certificate for 127.0.0.1
//! and localhost made at start, chained to a CA of its own whose PEM is
//! at [`StandIn::ca_bundle_path`]: a function trusts it through the
//! environment alone, `SSL_CERT_FILE` for the Rust SDK (its rustls client
//! loads roots with rustls-native-certs, which reads that variable) and
//! `AWS_CA_BUNDLE` for boto3.

mod dynamodb;
mod expression;
mod secrets;
mod sqs;
mod tls;
mod value;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

pub use dynamodb::Units;
pub use sqs::Message;

use crate::proxy::{Call, CallLog};

/// The account and region every ARN and queue URL names (moto's defaults too).
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// What can go wrong starting the stand-in.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the stand-in's socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("making the stand-in's certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("the stand-in's TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// How to serve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// HTTPS with a certificate made at start, instead of plain HTTP.
    pub tls: bool,
}

impl Options {
    pub fn http() -> Self {
        Self { tls: false }
    }

    pub fn https() -> Self {
        Self { tls: true }
    }
}

/// A refusal as the service words it: the body's `__type` and message,
/// and what else the body carries (the old `Item`, say).
#[derive(Debug, Clone)]
struct Fault {
    status: u16,
    kind: String,
    message: String,
    extra: Map<String, Value>,
    /// SQS's `x-amzn-query-error` header.
    query_error: Option<String>,
    /// The stand-in lacks it (not the service refusing it).
    unsupported: bool,
}

impl Fault {
    fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            kind: kind.into(),
            message: message.into(),
            extra: Map::new(),
            query_error: None,
            unsupported: false,
        }
    }

    /// DynamoDB's validation error.
    fn validation(message: impl Into<String>) -> Self {
        Self::new("com.amazon.coral.validate#ValidationException", message)
    }

    /// What the stand-in does not implement, named.
    fn unsupported(what: impl std::fmt::Display) -> Self {
        Self::new(
            "lambda-sandbox#UnsupportedByStandIn",
            format!("the stand-in does not implement {what}"),
        )
        .marked_unsupported()
    }

    fn marked_unsupported(mut self) -> Self {
        self.unsupported = true;
        self
    }
}

struct World {
    dynamodb: dynamodb::Dynamo,
    secrets: secrets::Secrets,
    sqs: sqs::Sqs,
}

#[derive(Clone)]
struct Shared {
    world: Arc<Mutex<World>>,
    log: CallLog,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The stand-in, serving on a loopback port until dropped.
pub struct StandIn {
    endpoint: String,
    shared: Shared,
    ca_bundle: Option<PathBuf>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        // The accept loop owns every connection's task: aborting it ends them.
        self.task.abort();
        if let Some(path) = &self.ca_bundle {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl StandIn {
    /// Serves on a free 127.0.0.1 port.
    pub async fn start(options: Options) -> Result<Self, Error> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let scheme = if options.tls { "https" } else { "http" };
        let endpoint = format!("{scheme}://{address}");
        let shared = Shared {
            world: Arc::new(Mutex::new(World {
                dynamodb: dynamodb::Dynamo::default(),
                secrets: secrets::Secrets::default(),
                sqs: sqs::Sqs::new(&endpoint),
            })),
            log: CallLog::default(),
        };
        let (acceptor, ca_bundle) = if options.tls {
            let made = tls::Made::new()?;
            let path = std::env::temp_dir().join(format!(
                "lambda-sandbox-stand-in-{}-{}.pem",
                std::process::id(),
                address.port()
            ));
            std::fs::write(&path, &made.ca_pem)?;
            (Some(made.acceptor), Some(path))
        } else {
            (None, None)
        };
        let task = tokio::spawn(serve(listener, acceptor, shared.clone()));
        Ok(Self {
            endpoint,
            shared,
            ca_bundle,
            task,
        })
    }

    /// What `AWS_ENDPOINT_URL` is set to: `http://127.0.0.1:port` (or https).
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint
    }

    /// The PEM file of the CA that signed the HTTPS certificate (`None`
    /// over HTTP); removed when the stand-in is dropped. Give it to a
    /// function as `SSL_CERT_FILE` (Rust SDK) or `AWS_CA_BUNDLE` (boto3).
    pub fn ca_bundle_path(&self) -> Option<&Path> {
        self.ca_bundle.as_deref()
    }

    /// The requests it answered: `stand_in.log().calls()`, read as the
    /// proxy's are.
    pub fn log(&self) -> &CallLog {
        &self.shared.log
    }

    /// DynamoDB read and write request units consumed since start, as
    /// on-demand bills them (a refused conditional write included).
    pub fn units(&self) -> Units {
        locked(&self.shared.world).dynamodb.units
    }

    /// The items of a table (`None`: no such table), in no order.
    pub fn items(&self, table: &str) -> Option<Vec<Map<String, Value>>> {
        locked(&self.shared.world).dynamodb.items(table)
    }

    /// The messages sent to a queue, by its name (`None`: no such queue).
    pub fn messages(&self, queue: &str) -> Option<Vec<Message>> {
        locked(&self.shared.world).sqs.messages(queue)
    }
}

async fn serve(listener: TcpListener, acceptor: Option<tokio_rustls::TlsAcceptor>, shared: Shared) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Reap finished connections so the set stays small.
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&shared, request).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match acceptor {
                Some(acceptor) => {
                    // A client that doesn't trust the certificate ends here.
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(tls), service).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        });
    }
}

/// The JSON protocol of a target's service: its content type, and the
/// casing of the message in its error bodies.
fn protocol(service: &str) -> (&'static str, &'static str) {
    match service {
        "secretsmanager" => ("application/x-amz-json-1.1", "Message"),
        _ => ("application/x-amz-json-1.0", "message"),
    }
}

async fn answer(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let start = Instant::now();
    let (parts, body) = request.into_parts();
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{} {}", parts.method, parts.uri.path()));
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (service, name) = operation.split_once('.').unwrap_or(("", &operation));
    let result = match serde_json::from_slice::<Value>(&body) {
        Err(_) => Err(Fault::new(
            "SerializationException",
            "Start of structure or map found where not expected.",
        )),
        Ok(request) => {
            let mut world = locked(&shared.world);
            match service {
                "DynamoDB_20120810" => world.dynamodb.handle(name, &request),
                "secretsmanager" => world.secrets.handle(name, &request),
                "AmazonSQS" => world.sqs.handle(name, &request),
                _ => Err(Fault::unsupported(format!("the operation {operation}"))),
            }
        }
    };
    let (content_type, message_field) = protocol(service);
    let (status, reply, query_error) = match result {
        Ok(answer) => (200, answer, None),
        Err(fault) => {
            let mut reply = fault.extra;
            reply.insert("__type".into(), json!(fault.kind));
            reply.insert(message_field.into(), json!(fault.message));
            (fault.status, Value::Object(reply), fault.query_error)
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(reply.to_string())));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        hyper::header::HeaderValue::from_static(content_type),
    );
    if let Ok(id) = hyper::header::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("x-amzn-requestid", id);
    }
    if let Some(code) = query_error.and_then(|c| hyper::header::HeaderValue::from_str(&c).ok()) {
        headers.insert("x-amzn-query-error", code);
    }
    // Recorded before the answer is written: a caller never holds an
    // answer whose call is not in the log yet.
    shared.log.record(Call {
        start,
        end: Instant::now(),
        operation,
        status,
        refused: false,
        body,
    });
    response
}
