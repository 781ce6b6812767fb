//! The real function binaries, run as Lambda runs them: a process each, with
//! the environment template.yaml gives the functions on the local endpoint
//! (plus Lambda's own variables), served its events by a local Runtime API
//! ([`lambda_sandbox`]), its AWS requests going through a recording proxy
//! in front of moto. What a test learns is what Lambda's caller would: the
//! answer, and what the invocation asked of AWS.
//!
//! The binaries are the workspace's debug builds, `target/debug/<name>`
//! (under `CARGO_TARGET_DIR` when set); `make integration` builds them
//! before the tests run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lambda_sandbox::{Call, Function, Launch, Proxy, Refusal, Reply};
use serde_json::Value;
use vendors::revel::RevelEventType;

use crate::{local_aws, workspace_root, Stack, DEMO_INSTANCE, DEMO_SECRET};

/// The longest a function's init, or one invocation, may take (debug
/// builds on a shared machine; a step that takes longer fails the test).
pub const STEP_LIMIT: Duration = Duration::from_secs(30);

/// Where cargo puts the workspace's builds.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The debug build of the function crate `name`; panics, saying how to
/// build it, when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let path = target_dir().join("debug").join(name);
    assert!(
        path.is_file(),
        "{} is missing: the production-path tests run the real function binaries; build them with \
         `cargo build --locked -p {name}` (`make integration` does)",
        path.display()
    );
    path
}

/// One function process as Lambda runs it, and the proxy its AWS requests
/// go through. The process is killed when this is dropped, on every path.
pub struct Lambda {
    pub function: Function,
    pub proxy: Proxy,
}

/// What one HTTP invocation came to.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    /// The answer's body, parsed.
    pub body: Value,
    /// The AWS requests the invocation made, in order.
    pub calls: Vec<Call>,
}

impl HttpAnswer {
    /// The operations of the AWS requests made, in order: `["PutItem"]`.
    pub fn operations(&self) -> Vec<&str> {
        self.calls.iter().map(Call::name).collect()
    }

    /// The answer's `event_id`.
    #[track_caller]
    pub fn event_id(&self) -> String {
        crate::event_id(&self.body)
    }
}

static LOGS: AtomicUsize = AtomicUsize::new(0);

/// Where the functions' output goes: `target/lambda-path/`, holding the
/// last test run's logs only.
fn log_path(name: &str) -> PathBuf {
    static FRESH: std::sync::Once = std::sync::Once::new();
    let dir = target_dir().join("lambda-path");
    FRESH.call_once(|| {
        let _ = std::fs::remove_dir_all(&dir);
    });
    dir.join(format!(
        "{name}-{}-{}.log",
        std::process::id(),
        LOGS.fetch_add(1, Ordering::SeqCst)
    ))
}

impl Lambda {
    /// The function crate `name`, started with `stack`'s environment.
    pub async fn start(stack: &Stack, name: &str) -> Self {
        Self::start_with(stack, name, &[]).await
    }

    /// The same, with `overrides` on top of the template's environment.
    pub async fn start_with(stack: &Stack, name: &str, overrides: &[(&str, &str)]) -> Self {
        let proxy = Proxy::start(&local_aws().endpoint)
            .await
            .expect("the recording proxy starts");
        let function = Launch::new(binary(name), name, &proxy.endpoint)
            .env(stack.provisioned.env.clone())
            .env(overrides.iter().copied())
            .log(log_path(name))
            .init_limit(STEP_LIMIT)
            .start()
            .await
            .unwrap_or_else(|e| panic!("{name} did not start: {e}"));
        Self { function, proxy }
    }

    /// Invokes the function with `event`; its JSON answer and the AWS
    /// requests the invocation made.
    pub async fn invoke(&mut self, event: &Value) -> (Value, Vec<Call>) {
        let invoked = self
            .function
            .invoke(event, STEP_LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let calls = self
            .proxy
            .log()
            .calls_started_between(invoked.handed_out, invoked.ended);
        let answer = invoked
            .json(self.function.name())
            .unwrap_or_else(|e| panic!("{e}; see {:?}", self.function.log()));
        (answer, calls)
    }

    /// Invokes a receiver with an API Gateway (HTTP API) request event.
    pub async fn request(&mut self, event: &Value) -> HttpAnswer {
        let (answer, calls) = self.invoke(event).await;
        let status = answer["statusCode"]
            .as_u64()
            .unwrap_or_else(|| panic!("no statusCode in {answer}")) as u16;
        let body = answer["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or_else(|| panic!("the answer's body is not JSON: {answer}"));
        HttpAnswer {
            status,
            body,
            calls,
        }
    }

    /// Answers DynamoDB `operation` requests that name `item_key` with
    /// DynamoDB's throttling error, until [`Lambda::allow_all`].
    pub fn throttle(&self, operation: &str, item_key: &str) {
        self.proxy.refuse(Refusal {
            operation: format!("DynamoDB_20120810.{operation}"),
            // As the key's value appears in the request's JSON.
            body_contains: format!("\"{item_key}\""),
            reply: Reply::dynamodb_throttling(),
        });
    }

    pub fn allow_all(&self) {
        self.proxy.allow_all();
    }
}

/// A Revel request to `kind`'s route, signed for the demo instance.
pub fn revel_event(kind: RevelEventType, body: &[u8]) -> Value {
    let headers = local_stack::events::revel_headers(kind, DEMO_INSTANCE, DEMO_SECRET, body);
    local_stack::events::http_api_event(
        "POST",
        vendors::functions::Kind::Revel(kind).function().route(),
        "",
        &headers,
        body,
    )
}

/// The records the events table's stream holds, oldest first, as the
/// event source mapping puts them in the processor's Lambda event: read
/// from the stream with DescribeStream, GetShardIterator (TRIM_HORIZON) and
/// GetRecords, then built by [`local_stack::stream::lambda_event`].
pub async fn stream_records(stack: &Stack) -> Vec<Value> {
    let table = &stack.provisioned.resources["EventsTable"];
    let stream_arn = table
        .stream_arn
        .clone()
        .expect("template.yaml gives the events table a stream");
    let records: Vec<_> = local_stack::stream::read_pages(&stack.sdk, &stream_arn)
        .await
        .expect("the stream reads")
        .into_iter()
        .flatten()
        .collect();
    let event = local_stack::stream::lambda_event(&stream_arn, &table.reference, &records)
        .expect("stream records make a Lambda event");
    match serde_json::to_value(event).expect("the event serialises") {
        Value::Object(mut event) => match event.remove("Records") {
            Some(Value::Array(records)) => records,
            other => panic!("no Records in the event: {other:?}"),
        },
        other => panic!("the event is not an object: {other}"),
    }
}

/// The processor's Lambda event holding `records`.
pub fn stream_event(records: &[Value]) -> Value {
    serde_json::json!({ "Records": records })
}

/// A stream record's sequence number.
pub fn sequence_number(record: &Value) -> String {
    record["dynamodb"]["SequenceNumber"]
        .as_str()
        .unwrap_or_else(|| panic!("no sequence number in {record}"))
        .to_owned()
}

/// A string attribute of a stream record's new image.
pub fn new_image_text(record: &Value, attribute: &str) -> String {
    record["dynamodb"]["NewImage"][attribute]["S"]
        .as_str()
        .unwrap_or_else(|| panic!("no {attribute} in the new image of {record}"))
        .to_owned()
}

/// The sequence numbers a processor's answer reports as failed.
pub fn failed_sequence_numbers(answer: &Value) -> Vec<String> {
    answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("no batchItemFailures in {answer}"))
        .iter()
        .map(|f| {
            f["itemIdentifier"]
                .as_str()
                .unwrap_or_else(|| panic!("a failure without itemIdentifier: {answer}"))
                .to_owned()
        })
        .collect()
}
