//! Test harness: a local AWS endpoint (moto) started once per test binary on
//! a free loopback port and stopped when the binary exits; each test gets its
//! own tables, queues and secret, provisioned from template.yaml; a fault
//! proxy to cut a service off mid-test.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use local_stack::provision::{local_sdk_config, provision, put_revel_secrets, Provisioned};
use local_stack::template::Template;
use pipeline::config::Config;
use pipeline::receive::Receiver;
use serde_json::Value;
use shared::function::{revel_receiver, revel_source, Clients};
use shared::http::ApiGatewayEvent;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use vendors::revel::RevelEventType;

pub use lambda_sandbox::proxy::{sequential_round_trips, Call, Proxy, Reply};
pub use local_stack::{DEMO_INSTANCE, DEMO_SECRET};

pub mod contract;
pub mod lambda;
pub mod recording;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// moto, serving on loopback until this test binary exits (it reads our end
/// of a pipe and stops at end of file).
pub struct LocalAws {
    pub endpoint: String,
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

pub fn local_aws() -> &'static LocalAws {
    static SERVER: OnceLock<LocalAws> = OnceLock::new();
    SERVER.get_or_init(|| {
        let python = std::env::var("LOCAL_AWS_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace_root().join(".venv/bin/python"));
        let script = workspace_root().join("tools/local_aws.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run `make venv` first",
                    python.display()
                )
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the endpoint");
        let endpoint = line
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("local AWS endpoint did not start: {line:?}"))
            .trim()
            .to_owned();
        LocalAws {
            endpoint,
            _stdin: Mutex::new(child.stdin.take().expect("piped stdin")),
            _child: Mutex::new(child),
        }
    })
}

/// One test's resources on the local endpoint.
pub struct Stack {
    pub sdk: SdkConfig,
    pub provisioned: Provisioned,
    pub config: Config,
    pub template: Template,
    /// The stream read so far by [`Stack::settle`].
    settled: tokio::sync::Mutex<Option<local_stack::stream::StreamPoller>>,
}

static NEXT_STACK: AtomicUsize = AtomicUsize::new(0);

impl Stack {
    /// Fresh tables, queues and secret (holding the `demo` secret).
    pub async fn new() -> Self {
        let sdk = local_sdk_config(&local_aws().endpoint).await;
        let template =
            Template::load(&local_stack::template::default_path()).expect("template.yaml");
        let prefix = format!(
            "t{}-{}",
            std::process::id(),
            NEXT_STACK.fetch_add(1, Ordering::SeqCst)
        );
        let provisioned = provision(&sdk, &template, &prefix)
            .await
            .expect("provisioning");
        let config = Config::from_lookup(provisioned.lookup())
            .expect("template environment is a valid config");
        let stack = Self {
            sdk,
            provisioned,
            config,
            template,
            settled: tokio::sync::Mutex::new(None),
        };
        stack
            .put_secrets(&serde_json::json!({DEMO_INSTANCE: DEMO_SECRET}).to_string())
            .await;
        local_stack::provision::put_demo_secrets(&stack.sdk, &stack.provisioned)
            .await
            .expect("demo secrets of the other sources");
        stack
    }

    pub async fn put_secrets(&self, document: &str) {
        put_revel_secrets(&self.sdk, &self.provisioned, document)
            .await
            .expect("put secret");
    }

    pub fn clients(&self) -> Clients {
        Clients::from_sdk(&self.sdk)
    }

    /// The receiver of `kind`, built as a function's `main` builds it.
    pub fn receiver(&self, kind: RevelEventType) -> Receiver {
        self.receiver_with(kind, self.clients(), &self.config)
    }

    /// The receiver of the template function `logical_id`, of any source.
    pub fn receiver_for(&self, logical_id: &str) -> Receiver {
        let clients = self.clients();
        shared::function::AllSources::new(&self.config, &clients)
            .expect("all sources configured")
            .receiver_for(logical_id, &self.config, &clients)
            .unwrap_or_else(|| panic!("no receiver for {logical_id}"))
    }

    pub fn receiver_with(
        &self,
        kind: RevelEventType,
        clients: Clients,
        config: &Config,
    ) -> Receiver {
        revel_receiver(
            kind,
            revel_source(config, &clients.secrets),
            config,
            &clients.events,
        )
    }

    fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    pub async fn scan(&self, table: &str) -> Vec<HashMap<String, AttributeValue>> {
        self.dynamodb()
            .scan()
            .table_name(table)
            .consistent_read(true)
            .send()
            .await
            .expect("scan")
            .items
            .unwrap_or_default()
    }

    pub async fn events(&self) -> Vec<HashMap<String, AttributeValue>> {
        self.scan(&self.config.events_table).await
    }

    pub async fn entities(&self) -> Vec<HashMap<String, AttributeValue>> {
        self.scan(&self.config.entities_table).await
    }

    /// The keys of the event records.
    pub async fn event_keys(&self) -> BTreeSet<String> {
        texts(&self.events().await, "event_key")
    }

    /// The entity keys the event records name: the entities the processor
    /// should keep, one each.
    pub async fn entity_keys_named_by_events(&self) -> BTreeSet<String> {
        texts(&self.events().await, "entity_key")
    }

    /// The keys of the entities kept.
    pub async fn entity_keys(&self) -> BTreeSet<String> {
        texts(&self.entities().await, "entity_key")
    }

    /// The ids of the entities kept, sorted (two kinds may share an id).
    pub async fn entity_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = texts(&self.entities().await, "entity_id");
        ids.sort();
        ids
    }

    /// Each entity's revision, by entity key.
    pub async fn entity_revisions(&self) -> BTreeMap<String, String> {
        self.entities()
            .await
            .iter()
            .map(|e| (text(e, "entity_key"), text(e, "revision")))
            .collect()
    }

    pub async fn event(&self, key: &str) -> Option<HashMap<String, AttributeValue>> {
        self.get(&self.config.events_table, "event_key", key).await
    }

    /// Replays a stored event as `revel-ops replay` does, through the real
    /// events table.
    pub async fn replay(&self, record: &ports::store::EventRecord) -> pipeline::replay::Replayed {
        let events = aws_adapters::dynamodb::DynamoEventStore::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            &self.config.events_table,
        );
        pipeline::replay::replay(
            &events,
            domain::clock::system().as_ref(),
            pipeline::replay::plan(record),
        )
        .await
        .expect("replay")
    }

    pub async fn entity(&self, key: &str) -> Option<HashMap<String, AttributeValue>> {
        self.get(&self.config.entities_table, "entity_key", key)
            .await
    }

    async fn get(
        &self,
        table: &str,
        key_name: &str,
        key: &str,
    ) -> Option<HashMap<String, AttributeValue>> {
        self.dynamodb()
            .get_item()
            .table_name(table)
            .key(key_name, AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .expect("get item")
            .item
    }

    /// Messages waiting on the jobs queue.
    pub async fn jobs_waiting(&self) -> usize {
        aws_sdk_sqs::Client::new(&self.sdk)
            .get_queue_attributes()
            .queue_url(&self.config.jobs_queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok())
            .expect("message count")
    }

    /// One receive of up to ten waiting jobs, in flight for ten minutes
    /// (longer than any test).
    async fn receive_job_messages(
        &self,
        sqs: &aws_sdk_sqs::Client,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        sqs.receive_message()
            .queue_url(&self.config.jobs_queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default()
    }
}

/// A job message's body, parsed.
fn job_body(message: &aws_sdk_sqs::types::Message) -> Value {
    serde_json::from_str(message.body().unwrap_or("null")).expect("job body is JSON")
}

/// An entity item's state, plain or gzip-compressed, parsed.
pub fn entity_state(item: &HashMap<String, AttributeValue>) -> Value {
    let json = aws_adapters::dynamodb::entity_state(item).expect("entity item has a state");
    serde_json::from_str(&json).expect("entity state is JSON")
}

pub fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(s)) | Some(AttributeValue::N(s)) => s.clone(),
        other => panic!("attribute {name} is {other:?}"),
    }
}

/// The attribute `name` of every item, as [`text`] reads it.
fn texts<C: FromIterator<String>>(items: &[HashMap<String, AttributeValue>], name: &str) -> C {
    items.iter().map(|item| text(item, name)).collect()
}

/// A request as API Gateway delivers it, signed like Revel signs it.
pub fn signed_request(kind: RevelEventType, body: &[u8]) -> ApiGatewayEvent {
    let headers = local_stack::events::revel_headers(kind, DEMO_INSTANCE, DEMO_SECRET, body);
    request_with(kind, &headers, body)
}

pub fn request_with(
    kind: RevelEventType,
    headers: &[(String, String)],
    body: &[u8],
) -> ApiGatewayEvent {
    let event = local_stack::events::http_api_event(
        "POST",
        vendors::functions::Kind::Revel(kind).function().route(),
        "",
        headers,
        body,
    );
    serde_json::from_value(event).expect("a valid API Gateway event")
}

/// Runs the function's handler on `request`: status and JSON body.
pub async fn deliver(receiver: &Receiver, request: ApiGatewayEvent) -> (u16, Value) {
    let response = shared::http::handle(receiver, request, None).await;
    let status = response.status().as_u16();
    let body = match response.into_body() {
        lambda_http::Body::Text(text) => serde_json::from_str(&text).expect("answers are JSON"),
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

/// The payload of a sample in events/payloads, as its event file sends it.
pub fn payload(name: &str) -> Vec<u8> {
    let raw = std::fs::read(workspace_root().join("events/payloads").join(name)).expect("payload");
    raw.strip_suffix(b"\n").map(<[u8]>::to_vec).unwrap_or(raw)
}

/// How the fault proxy treats connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Forward to the endpoint.
    None = 0,
    /// Accept, then close every connection at once (the peer hangs up).
    Refuse = 1,
    /// Accept and never answer (like a hung service).
    Blackhole = 2,
    /// Stop listening: the kernel refuses every new connection
    /// (`ECONNREFUSED`), like a service whose port is closed.
    Closed = 3,
    /// Answer each request at the HTTP level with the proxy's canned reply
    /// (see [`FaultProxy::reply`], [`FaultProxy::throttle_dynamodb`]).
    Reply = 4,
    /// Forward each request, so it takes effect, and drop its response:
    /// the client times out on a write that was made (see
    /// [`FaultProxy::swallow_responses`]).
    SwallowResponse = 5,
}

impl Fault {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Refuse,
            2 => Self::Blackhole,
            3 => Self::Closed,
            4 => Self::Reply,
            5 => Self::SwallowResponse,
            _ => Self::None,
        }
    }
}

/// A reply as the fault proxy writes it on the wire: the last answer of
/// its connection.
fn raw_answer(reply: &Reply) -> Vec<u8> {
    format!(
        "HTTP/1.1 {} Fault\r\ncontent-type: {}\r\nx-amzn-requestid: fault-proxy\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        reply.status,
        reply.content_type,
        reply.body.len(),
        reply.body
    )
    .into_bytes()
}

/// What the proxy's tasks share.
struct ProxyState {
    fault: AtomicU8,
    /// Requests let through before a counted HTTP-level fault starts.
    pass: AtomicUsize,
    /// Requests left for a counted HTTP-level fault; `usize::MAX` = until cleared.
    budget: AtomicUsize,
    reply: Mutex<Reply>,
    /// Requests answered with the canned reply, or whose response was dropped.
    hit: AtomicUsize,
    /// Connections accepted (in any mode).
    connections: AtomicUsize,
}

impl ProxyState {
    fn fault(&self) -> Fault {
        Fault::from_u8(self.fault.load(Ordering::SeqCst))
    }

    /// Takes one request from those let through before the fault starts.
    fn take_pass(&self) -> bool {
        self.pass
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }

    /// Takes one request from the HTTP-level fault's budget; when the budget
    /// runs out, the fault clears itself.
    fn take_one(&self) -> bool {
        let taken =
            self.budget
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                    0 => None,
                    usize::MAX => Some(usize::MAX),
                    n => Some(n - 1),
                });
        match taken {
            Ok(1) => {
                self.fault.store(Fault::None as u8, Ordering::SeqCst);
                true
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }
}

/// A TCP proxy in front of the local endpoint that can cut a client off,
/// refuse its connections, hang, throttle it at the HTTP level, or let its
/// writes through and lose the answers.
pub struct FaultProxy {
    pub url: String,
    state: Arc<ProxyState>,
    /// Bumped by every fault: the open connections end.
    cut: watch::Sender<u64>,
    /// Bumped by every change: the accept loop looks at the fault again.
    wake: watch::Sender<u64>,
}

/// The end of an HTTP head (just past its blank line) in `buffer`.
fn head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// Reads off `stream` into `buffer` until it holds a whole HTTP head:
/// where the head ends. `None` when the connection closes first.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = head_end(buffer) {
            return Some(end);
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Reads one HTTP/1.1 request (head and `content-length` body) off `client`.
/// `None` when the connection closes first.
async fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buffer = Vec::with_capacity(4096);
    let head_end = read_head(client, &mut buffer).await?;
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let have = buffer.len();
    if have < head_end + length {
        buffer.resize(head_end + length, 0);
        client.read_exact(&mut buffer[have..]).await.ok()?;
    }
    Some(buffer)
}

/// An HTTP/1.1 message head with its `connection` header replaced by
/// `connection: close`, so the message is the last of its connection.
fn with_connection_close(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut lines: Vec<&str> = text
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("connection: close");
    let mut out = lines.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// Forwards one request to `upstream` as the last of its connection and
/// copies the answer back, marked the same way, until the service closes:
/// the client's next request comes on a new connection. `None` when the
/// service could not be reached or answered nothing.
async fn forward_once(client: &mut TcpStream, upstream: &str, request: &[u8]) -> Option<()> {
    use tokio::io::AsyncWriteExt;
    let end = head_end(request)?;
    let mut server = TcpStream::connect(upstream).await.ok()?;
    let mut rewritten = with_connection_close(&request[..end]);
    rewritten.extend_from_slice(&request[end..]);
    server.write_all(&rewritten).await.ok()?;
    let mut answer = Vec::with_capacity(4096);
    let end = read_head(&mut server, &mut answer).await?;
    client
        .write_all(&with_connection_close(&answer[..end]))
        .await
        .ok()?;
    client.write_all(&answer[end..]).await.ok()?;
    tokio::io::copy(&mut server, client).await.ok()?;
    let _ = client.shutdown().await;
    Some(())
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("address");
        let url = format!("http://{address}");
        let state = Arc::new(ProxyState {
            fault: AtomicU8::new(Fault::None as u8),
            pass: AtomicUsize::new(0),
            budget: AtomicUsize::new(0),
            reply: Mutex::new(Reply::dynamodb_throttling()),
            hit: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        let (cut, _) = watch::channel(0u64);
        let (wake, mut changes) = watch::channel(0u64);
        let (state_in_task, cut_in_task) = (Arc::clone(&state), cut.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            let mut listener = Some(listener);
            loop {
                let Some(open) = &listener else {
                    // Closed: wait for the fault to change, then listen again
                    // on the same port (the clients keep their endpoint).
                    if changes.changed().await.is_err() {
                        return;
                    }
                    if state_in_task.fault() != Fault::Closed {
                        listener = Some(rebind(address).await);
                    }
                    continue;
                };
                let mut client = tokio::select! {
                    accepted = open.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => continue,
                    },
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if state_in_task.fault() == Fault::Closed {
                            listener = None;
                        }
                        continue;
                    }
                };
                state_in_task.connections.fetch_add(1, Ordering::SeqCst);
                let fault = state_in_task.fault();
                match fault {
                    Fault::Refuse => drop(client),
                    Fault::Blackhole => held.push(client),
                    Fault::Closed => drop(client),
                    Fault::None | Fault::Reply | Fault::SwallowResponse => {
                        let upstream = upstream.clone();
                        let mut cut = cut_in_task.subscribe();
                        let state = Arc::clone(&state_in_task);
                        tokio::spawn(async move {
                            // Biased: a connection that has a request waiting
                            // when the fault is set must be cut, not served
                            // (an unbiased select picks either at random).
                            tokio::select! {
                                biased;
                                _ = cut.changed() => {}
                                _ = serve(&mut client, &upstream, fault, &state) => {}
                            }
                        });
                    }
                }
            }
        });
        Self {
            url,
            state,
            cut,
            wake,
        }
    }

    /// Sets the fault; any fault also cuts the connections already open.
    pub fn set(&self, fault: Fault) {
        self.state.pass.store(0, Ordering::SeqCst);
        if matches!(fault, Fault::Reply | Fault::SwallowResponse) {
            self.state.budget.store(usize::MAX, Ordering::SeqCst);
        }
        self.state.fault.store(fault as u8, Ordering::SeqCst);
        if fault != Fault::None {
            self.cut.send_modify(|n| *n += 1);
        }
        // The accept loop stops or resumes listening.
        self.wake.send_modify(|n| *n += 1);
    }

    /// Answers the next `times` requests (every request until cleared when
    /// `None`) with `reply` instead of forwarding them.
    pub fn reply(&self, reply: Reply, times: Option<usize>) {
        self.reply_after(0, reply, times);
    }

    /// Lets the next `pass` requests through, then answers the `times`
    /// after them (every one until cleared when `None`) with `reply`: a
    /// fault that hits a chosen request of a known sequence.
    pub fn reply_after(&self, pass: usize, reply: Reply, times: Option<usize>) {
        *self.state.reply.lock().expect("reply lock") = reply;
        self.counted(Fault::Reply, pass, times);
    }

    /// DynamoDB's `ProvisionedThroughputExceededException` for the next
    /// `times` requests, or until cleared.
    pub fn throttle_dynamodb(&self, times: Option<usize>) {
        self.reply(Reply::dynamodb_throttling(), times);
    }

    /// Throttles the `times` requests after the next `pass`.
    pub fn throttle_dynamodb_after(&self, pass: usize, times: Option<usize>) {
        self.reply_after(pass, Reply::dynamodb_throttling(), times);
    }

    /// Forwards the next `times` requests (every request until cleared when
    /// `None`) and drops their responses, holding the connection open.
    pub fn swallow_responses(&self, times: Option<usize>) {
        self.counted(Fault::SwallowResponse, 0, times);
    }

    fn counted(&self, fault: Fault, pass: usize, times: Option<usize>) {
        let budget = times.unwrap_or(usize::MAX);
        self.state.pass.store(pass, Ordering::SeqCst);
        self.state.budget.store(budget, Ordering::SeqCst);
        let fault = if budget == 0 { Fault::None } else { fault };
        self.state.fault.store(fault as u8, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
        self.wake.send_modify(|n| *n += 1);
    }

    /// The fault in force (a counted fault clears itself when spent).
    pub fn fault(&self) -> Fault {
        self.state.fault()
    }

    /// Requests answered with the canned reply or whose response was dropped.
    pub fn hits(&self) -> usize {
        self.state.hit.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub async fn sdk(&self) -> SdkConfig {
        local_sdk_config(&self.url).await
    }
}

async fn rebind(address: std::net::SocketAddr) -> TcpListener {
    for _ in 0..50 {
        if let Ok(listener) = TcpListener::bind(address).await {
            return listener;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the fault proxy could not listen on {address} again");
}

/// One client connection: forwarded as bytes, or (in an HTTP-level mode)
/// its first request read and answered or swallowed.
async fn serve(client: &mut TcpStream, upstream: &str, fault: Fault, state: &ProxyState) {
    use tokio::io::AsyncWriteExt;
    let mut early = Vec::new();
    if fault != Fault::None {
        let Some(request) = read_request(client).await else {
            return;
        };
        if state.fault() == fault && state.take_pass() {
            // Let through alone: the connection ends with its answer, so the
            // client's next request is looked at too.
            forward_once(client, upstream, &request).await;
            return;
        }
        // The budget may have run out since the connection was accepted.
        if state.fault() == fault && state.take_one() {
            state.hit.fetch_add(1, Ordering::SeqCst);
            if fault == Fault::Reply {
                let reply = raw_answer(&state.reply.lock().expect("reply lock"));
                let _ = client.write_all(&reply).await;
                let _ = client.shutdown().await;
                return;
            }
            // SwallowResponse: the service gets the request; its answer is
            // read and thrown away, and the client waits forever.
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            if server.write_all(&request).await.is_ok() {
                let _ = tokio::io::copy(&mut server, &mut tokio::io::sink()).await;
            }
            std::future::pending::<()>().await;
        }
        early = request;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    if !early.is_empty() && server.write_all(&early).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(client, &mut server).await;
}

/// Asserts an answer's status code and `status` field, naming the answer on failure.
#[track_caller]
pub fn expect_outcome(status: u16, answer: &Value, expected_status: u16, expected_outcome: &str) {
    assert_eq!(
        (status, answer["status"].as_str()),
        (expected_status, Some(expected_outcome)),
        "answer: {answer}"
    );
}

/// The REST API credentials the tests put beside the demo webhook secret.
pub const API_KEY: &str = "test-key";
pub const API_SECRET: &str = "test-api-secret";

/// A Revel API client config for a local stand-in: pages of two, fast retries.
pub fn fast_api(stand_in: &str) -> vendors::revel::api::RevelApiConfig {
    vendors::revel::api::RevelApiConfig {
        base_url: format!("{stand_in}/{{instance}}"),
        timeout: std::time::Duration::from_secs(3),
        max_attempts: 2,
        base_backoff: std::time::Duration::from_millis(1),
        max_backoff: std::time::Duration::from_millis(5),
        page_size: 2,
    }
}

impl Stack {
    /// The demo instance with a webhook secret and API credentials.
    pub async fn with_api_credentials(self) -> Self {
        self.put_secrets(
            &serde_json::json!({DEMO_INSTANCE: {"webhook": [DEMO_SECRET], "api_key": API_KEY, "api_secret": API_SECRET}})
                .to_string(),
        )
        .await;
        self
    }

    pub fn sync_config(&self, daily_budget: u64) -> pipeline::config::SyncConfig {
        let mut sync = pipeline::config::SyncConfig::from_lookup(self.provisioned.lookup())
            .expect("sync config");
        sync.daily_budget = daily_budget;
        sync
    }

    /// The jobs worker as its `main` builds it, pointed at `api`.
    pub fn worker(
        &self,
        api: vendors::revel::api::RevelApiConfig,
        daily_budget: u64,
        downstream: Option<vendors::vinesos::downstream::Downstream>,
    ) -> pipeline::worker::Worker {
        self.worker_with(self.clients(), api, daily_budget, downstream)
    }

    /// The jobs worker as its `main` builds it, calling AWS through `clients`.
    pub fn worker_with(
        &self,
        clients: Clients,
        api: vendors::revel::api::RevelApiConfig,
        daily_budget: u64,
        downstream: Option<vendors::vinesos::downstream::Downstream>,
    ) -> pipeline::worker::Worker {
        let revel = revel_source(&self.config, &clients.secrets);
        shared::function::jobs_worker(
            &self.config,
            &self.sync_config(daily_budget),
            &clients,
            revel,
            api,
            downstream,
        )
    }

    /// What the worker puts failed jobs off through, with no dead-letter
    /// queue to park in: only the queue's redrive policy parks.
    pub fn in_flight_without_parking(&self) -> Arc<dyn ports::queue::InFlightJobs> {
        Arc::new(aws_adapters::sqs::SqsInFlightJobs::new(
            aws_sdk_sqs::Client::new(&self.sdk),
            &self.config.jobs_queue_url,
            None,
        ))
    }

    /// A worker that delivers to `partner` and never needs Revel's API.
    pub fn delivering_worker(&self, partner: &PartnerStandIn) -> pipeline::worker::Worker {
        self.worker(
            fast_api("http://127.0.0.1:9"),
            100,
            Some(partner.downstream()),
        )
    }

    /// Sets the jobs queue's visibility timeout (template.yaml: 360 s), so
    /// a test can outwait a job that was received and never deleted.
    pub async fn set_job_visibility_timeout(&self, seconds: u32) {
        aws_sdk_sqs::Client::new(&self.sdk)
            .set_queue_attributes()
            .queue_url(&self.config.jobs_queue_url)
            .attributes(QueueAttributeName::VisibilityTimeout, seconds.to_string())
            .send()
            .await
            .expect("set the visibility timeout");
    }

    /// Reports on the processor's failure queue: records the stream gave up on.
    pub async fn processor_failures(&self) -> usize {
        let url = &self.provisioned.resources["EventsProcessorFailureQueue"].reference;
        local_stack::worker_loop::waiting(&aws_sdk_sqs::Client::new(&self.sdk), url)
            .await
            .expect("failure queue attributes")
    }

    pub fn sync_state(&self) -> aws_adapters::sync_state::DynamoSyncState {
        let table = self.sync_config(1).sync_state_table;
        aws_adapters::sync_state::DynamoSyncState::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            table,
            1,
        )
    }

    /// Polls the jobs queue like Lambda's event source until a poll finds
    /// nothing (failed messages come back at once), at most `polls` times.
    pub async fn drain(
        &self,
        worker: &pipeline::worker::Worker,
        polls: usize,
    ) -> Vec<local_stack::worker_loop::Polled> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let mut seen = Vec::new();
        for _ in 0..polls {
            let polled = local_stack::worker_loop::poll_once(
                &sqs,
                &self.config.jobs_queue_url,
                worker,
                std::time::Duration::from_secs(30),
                std::time::Duration::ZERO,
            )
            .await
            .expect("poll");
            if polled.received == 0 {
                break;
            }
            seen.push(polled);
        }
        seen
    }

    /// Messages in the jobs dead-letter queue.
    pub async fn dead_letters(&self) -> Vec<String> {
        let url = &self.provisioned.resources["JobsDeadLetterQueue"].reference;
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let messages = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive DLQ")
            .messages
            .unwrap_or_default();
        messages.into_iter().filter_map(|m| m.body).collect()
    }

    /// Sends a raw message to the jobs queue.
    pub async fn send_job(&self, body: &str, group: &str, dedup: &str) {
        aws_sdk_sqs::Client::new(&self.sdk)
            .send_message()
            .queue_url(&self.config.jobs_queue_url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .send()
            .await
            .expect("send job");
    }
}

/// Clients whose DynamoDB tables (events, entities), SQS and Secrets Manager
/// traffic each go through their own [`FaultProxy`], with the SDK settings
/// the functions use (`aws_adapters::sdk::timeouts`, standard retries).
pub struct FaultyAws {
    pub events: FaultProxy,
    pub entities: FaultProxy,
    pub sqs: FaultProxy,
    pub secrets: FaultProxy,
}

impl FaultyAws {
    pub async fn new() -> Self {
        let endpoint = &local_aws().endpoint;
        Self {
            events: FaultProxy::start(endpoint).await,
            entities: FaultProxy::start(endpoint).await,
            sqs: FaultProxy::start(endpoint).await,
            secrets: FaultProxy::start(endpoint).await,
        }
    }

    pub async fn clients(&self) -> Clients {
        Clients {
            events: aws_sdk_dynamodb::Client::new(&self.events.sdk().await),
            entities: aws_sdk_dynamodb::Client::new(&self.entities.sdk().await),
            sqs: aws_sdk_sqs::Client::new(&self.sqs.sdk().await),
            secrets: aws_sdk_secretsmanager::Client::new(&self.secrets.sdk().await),
        }
    }

    /// Both DynamoDB tables (one service).
    pub fn dynamodb(&self, fault: Fault) {
        self.events.set(fault);
        self.entities.set(fault);
    }

    /// Every proxy back to forwarding.
    pub fn clear(&self) {
        for proxy in [&self.events, &self.entities, &self.sqs, &self.secrets] {
            proxy.set(Fault::None);
        }
    }
}

/// What a test's tables and queue hold, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub events: usize,
    pub entities: usize,
    pub jobs: usize,
}

impl Stack {
    /// Counts the event records, entities and waiting jobs.
    pub async fn written(&self) -> Written {
        Written {
            events: self.events().await.len(),
            entities: self.entities().await.len(),
            jobs: self.jobs_waiting().await,
        }
    }
}

impl Stack {
    /// The stream processor as its `main` builds it.
    pub fn processor(&self) -> pipeline::process::Processor {
        shared::function::processor(&self.config, &self.clients())
    }

    /// The events table's stream, read as the event source mapping reads it.
    pub fn stream_poller(&self) -> local_stack::stream::StreamPoller {
        let events = &self.provisioned.resources["EventsTable"];
        let stream = events
            .stream_arn
            .clone()
            .expect("template.yaml gives the events table a stream");
        local_stack::stream::StreamPoller::new(&self.sdk, stream, &events.reference)
            .with_failure_queue(
                aws_sdk_sqs::Client::new(&self.sdk),
                self.provisioned.resources["EventsProcessorFailureQueue"]
                    .reference
                    .clone(),
            )
    }

    /// Hands everything the stream holds to `processor`, poll after poll,
    /// until a poll finds nothing new (at most `polls`).
    pub async fn process_stream(
        &self,
        poller: &mut local_stack::stream::StreamPoller,
        processor: &pipeline::process::Processor,
        polls: usize,
    ) -> Vec<local_stack::stream::Polled> {
        let mut seen = Vec::new();
        for _ in 0..polls {
            let polled = poller.poll_once(processor).await.expect("stream poll");
            if polled.records == 0 {
                break;
            }
            seen.push(polled);
        }
        seen
    }

    /// Processes what the stream holds that was not processed yet, with the
    /// processor its `main` builds: what the answers left for after them.
    pub async fn settle(&self) {
        self.settle_with(&self.processor(), 20).await;
    }

    /// [`Stack::settle`] with `processor` (built on other clients), at most
    /// `polls` polls: what each poll did.
    pub async fn settle_with(
        &self,
        processor: &pipeline::process::Processor,
        polls: usize,
    ) -> Vec<local_stack::stream::Polled> {
        let mut poller = self.settled.lock().await;
        let poller = poller.get_or_insert_with(|| self.stream_poller());
        self.process_stream(poller, processor, polls).await
    }
}

impl Stack {
    /// Receives and deletes every waiting job, returning their bodies (a
    /// FIFO group's next message is only handed out once the one before it
    /// is deleted, so this drains groups holding several jobs).
    pub async fn take_jobs(&self) -> Vec<Value> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let mut bodies = Vec::new();
        let mut empty_polls = 0;
        while empty_polls < 2 {
            let messages = self.receive_job_messages(&sqs).await;
            if messages.is_empty() {
                empty_polls += 1;
                continue;
            }
            empty_polls = 0;
            for message in messages {
                bodies.push(job_body(&message));
                sqs.delete_message()
                    .queue_url(&self.config.jobs_queue_url)
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
        }
        bodies
    }
}

/// The Standard Webhooks secret the tests' partner stand-ins verify with.
pub const PARTNER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Checks a delivery against the partner's contract ([`contract`]),
/// verifies it with an independent Standard Webhooks verifier (not the
/// bundle's signer) and reads its body.
pub fn verified(request: &wiremock::Request) -> Value {
    contract::assert_delivery(request);
    let mut headers = http::HeaderMap::new();
    for (name, value) in request.headers.iter() {
        headers.insert(name.clone(), value.clone());
    }
    standardwebhooks::Webhook::new(PARTNER_SECRET)
        .unwrap()
        .verify(&request.body, &headers)
        .expect("a Standard Webhooks signature");
    serde_json::from_slice(&request.body).unwrap()
}

/// One delivery the partner stand-in received, as the partner reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// `webhook-id`: one per entity revision.
    pub message_id: String,
    pub kind: String,
    pub id: String,
    pub version: i64,
    pub revision: u64,
    pub state: Value,
}

/// The partner system, on a wiremock server: answers the first `failing`
/// deliveries 503 (the partner down), every later one `status`, and lists
/// what it got.
pub struct PartnerStandIn {
    pub server: wiremock::MockServer,
    failing: usize,
}

impl PartnerStandIn {
    pub async fn start(status: u16) -> Self {
        Self::failing_first(0, status).await
    }

    pub async fn failing_first(failing: usize, status: u16) -> Self {
        use wiremock::{matchers::method, Mock, ResponseTemplate};
        let server = wiremock::MockServer::start().await;
        if failing > 0 {
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(503))
                .up_to_n_times(failing as u64)
                .with_priority(1)
                .mount(&server)
                .await;
        }
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status))
            .mount(&server)
            .await;
        Self { server, failing }
    }

    /// The downstream client the worker delivers with.
    pub fn downstream(&self) -> vendors::vinesos::downstream::Downstream {
        vendors::vinesos::downstream::Downstream::new(
            self.server.uri(),
            vendors::vinesos::downstream::SigningSecret::parse(PARTNER_SECRET)
                .expect("a valid secret"),
            std::time::Duration::from_secs(3),
        )
    }

    /// Every delivery attempt, in order of arrival (the first `failing`
    /// were answered 503), each checked against the partner's contract
    /// ([`contract`]) and read as the local partner stand-in reads them.
    pub async fn attempts(&self) -> Vec<Delivered> {
        let requests = self.server.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .map(|request| {
                contract::assert_delivery(request);
                let message_id = request
                    .headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let read = local_stack::partner::Received::from_delivery(message_id, &request.body)
                    .expect("the bundle's envelope");
                let envelope: Value =
                    serde_json::from_slice(&request.body).expect("deliveries are JSON");
                Delivered {
                    message_id: read.message_id,
                    kind: read.kind,
                    id: read.id,
                    version: read.version,
                    revision: read.revision,
                    state: envelope["data"]["state"].clone(),
                }
            })
            .collect()
    }

    /// The deliveries the partner took (answered 2xx), in order of arrival.
    pub async fn deliveries(&self) -> Vec<Delivered> {
        self.attempts()
            .await
            .into_iter()
            .skip(self.failing)
            .collect()
    }
}

/// The receivers of every source on clients whose AWS requests go through a
/// recording proxy, their secrets read before counting starts (as a
/// function's `main` reads them at cold start).
pub struct CountedReceivers {
    pub proxy: Proxy,
    pub clients: Clients,
    sources: shared::function::AllSources,
    config: Config,
}

impl CountedReceivers {
    /// The receiver of the template function `logical_id`.
    pub fn receiver_for(&self, logical_id: &str) -> Receiver {
        self.sources
            .receiver_for(logical_id, &self.config, &self.clients)
            .unwrap_or_else(|| panic!("no receiver for {logical_id}"))
    }

    /// Runs the handler on `request`: the answer, and every AWS request it made.
    pub async fn deliver(
        &self,
        receiver: &Receiver,
        request: ApiGatewayEvent,
    ) -> (u16, Value, Vec<Call>) {
        self.proxy.log().clear();
        let (status, answer) = deliver(receiver, request).await;
        (status, answer, self.proxy.log().take())
    }
}

impl Stack {
    pub async fn counted_receivers(&self) -> CountedReceivers {
        let proxy = Proxy::start(&local_aws().endpoint)
            .await
            .expect("the recording proxy starts");
        let clients = Clients::from_sdk(&local_sdk_config(&proxy.endpoint).await);
        let sources = shared::function::AllSources::new(&self.config, &clients)
            .expect("all sources configured");
        shared::function::warm(sources.revel.as_ref()).await;
        shared::function::warm(sources.winesitting.as_ref()).await;
        shared::function::warm(sources.booking.as_ref()).await;
        shared::function::warm(sources.vinesos.as_ref()).await;
        proxy.log().clear();
        CountedReceivers {
            proxy,
            clients,
            sources,
            config: self.config.clone(),
        }
    }
}

/// The API Gateway event of a sample in events/, signed now where its
/// sender's signature carries a time (VinesOS).
pub fn sample_event(sample: &local_stack::events::Sample) -> String {
    let raw = std::fs::read_to_string(workspace_root().join("events").join(&sample.output))
        .expect("run `make events`");
    local_stack::events::resign(serde_json::from_str(&raw).expect("event JSON")).to_string()
}

/// A sample's request, as `lambda_http` hands it to the function.
pub fn sample_request(sample: &local_stack::events::Sample) -> shared::http::ApiGatewayEvent {
    api_gateway_event(&sample_event(sample)).expect("a valid API Gateway event")
}

/// Asserts that an answer cost exactly one AWS request, the conditional
/// put of the event record, waited for once.
#[track_caller]
pub fn assert_one_put(calls: &[Call], what: &str) {
    let operations: Vec<&str> = calls.iter().map(Call::name).collect();
    assert_eq!(
        operations,
        ["PutItem"],
        "{what}: the AWS requests of the answer"
    );
    assert_eq!(sequential_round_trips(calls), 1, "{what}");
}

/// The `event_id` of an answer.
#[track_caller]
pub fn event_id(answer: &Value) -> String {
    answer["event_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no event id in {answer}"))
        .to_owned()
}

/// An API Gateway (HTTP API, payload 2.0) event from its JSON text, decoded
/// as the receivers' runtime decodes it.
pub fn api_gateway_event(json: &str) -> Result<ApiGatewayEvent, serde_json::Error> {
    serde_json::from_str(json)
}
