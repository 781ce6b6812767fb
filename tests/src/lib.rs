//! Test harness: a local AWS endpoint (moto) started once per test binary on
//! a free loopback port and stopped when the binary exits; each test gets its
//! own tables, queues and secret, provisioned from template.yaml; a fault
//! proxy to cut a service off mid-test.

use std::collections::HashMap;
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
use serde_json::Value;
use shared::config::Config;
use shared::function::{revel_receiver, revel_source, Clients};
use shared::ingest::Ingestor;
use shared::sources::revel::RevelEventType;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub use local_stack::{DEMO_INSTANCE, DEMO_SECRET};

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
    pub fn receiver(&self, kind: RevelEventType) -> Ingestor {
        self.receiver_with(kind, self.clients(), &self.config)
    }

    /// The receiver of the template function `logical_id`, of any source.
    pub fn receiver_for(&self, logical_id: &str) -> Ingestor {
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
    ) -> Ingestor {
        revel_receiver(kind, revel_source(config, &clients), config, &clients)
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

    pub async fn event(&self, key: &str) -> Option<HashMap<String, AttributeValue>> {
        self.get(&self.config.events_table, "event_key", key).await
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

    /// Receives every waiting job's body (making them in flight).
    pub async fn receive_jobs(&self) -> Vec<Value> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let mut bodies = Vec::new();
        loop {
            let messages = sqs
                .receive_message()
                .queue_url(&self.config.jobs_queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(600)
                .send()
                .await
                .expect("receive")
                .messages
                .unwrap_or_default();
            if messages.is_empty() {
                return bodies;
            }
            for message in messages {
                bodies.push(
                    serde_json::from_str(message.body().unwrap_or("null"))
                        .expect("job body is JSON"),
                );
            }
        }
    }
}

/// An entity item's state, plain or gzip-compressed, parsed.
pub fn entity_state(item: &HashMap<String, AttributeValue>) -> Value {
    let json = shared::store::dynamodb::entity_state(item).expect("entity item has a state");
    serde_json::from_str(&json).expect("entity state is JSON")
}

pub fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(s)) | Some(AttributeValue::N(s)) => s.clone(),
        other => panic!("attribute {name} is {other:?}"),
    }
}

/// A request as API Gateway delivers it, signed like Revel signs it.
pub fn signed_request(kind: RevelEventType, body: &[u8]) -> lambda_http::Request {
    let headers = local_stack::events::revel_headers(kind, DEMO_INSTANCE, DEMO_SECRET, body);
    request_with(kind, &headers, body)
}

pub fn request_with(
    kind: RevelEventType,
    headers: &[(String, String)],
    body: &[u8],
) -> lambda_http::Request {
    let event = local_stack::events::http_api_event("POST", kind.route(), "", headers, body);
    lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event")
}

/// Runs the function's handler on `request`: status and JSON body.
pub async fn deliver(receiver: &Ingestor, request: lambda_http::Request) -> (u16, Value) {
    let response = shared::http::handle(receiver, request).await;
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
    /// Close every connection at once (like a refused connection).
    Refuse = 1,
    /// Accept and never answer (like a hung service).
    Blackhole = 2,
}

/// A TCP proxy in front of the local endpoint that can cut a client off.
pub struct FaultProxy {
    pub url: String,
    fault: Arc<AtomicU8>,
    cut: watch::Sender<u64>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let fault = Arc::new(AtomicU8::new(Fault::None as u8));
        let (cut, _) = watch::channel(0u64);
        let (fault_in_task, cut_in_task) = (Arc::clone(&fault), cut.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut client, _)) = listener.accept().await {
                match fault_in_task.load(Ordering::SeqCst) {
                    1 => drop(client),
                    2 => held.push(client),
                    _ => {
                        let upstream = upstream.clone();
                        let mut cut = cut_in_task.subscribe();
                        tokio::spawn(async move {
                            let Ok(mut server) = TcpStream::connect(&upstream).await else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = cut.changed() => {}
                            }
                        });
                    }
                }
            }
        });
        Self { url, fault, cut }
    }

    /// Sets the fault; any fault also cuts the connections already open.
    pub fn set(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
        if fault != Fault::None {
            self.cut.send_modify(|n| *n += 1);
        }
    }

    pub async fn sdk(&self) -> SdkConfig {
        local_sdk_config(&self.url).await
    }
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
pub fn fast_api(stand_in: &str) -> shared::revel_api::RevelApiConfig {
    shared::revel_api::RevelApiConfig {
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

    pub fn sync_config(&self, daily_budget: u64) -> shared::config::SyncConfig {
        let mut sync = shared::config::SyncConfig::from_lookup(self.provisioned.lookup())
            .expect("sync config");
        sync.daily_budget = daily_budget;
        sync
    }

    /// The jobs worker as its `main` builds it, pointed at `api`.
    pub fn worker(
        &self,
        api: shared::revel_api::RevelApiConfig,
        daily_budget: u64,
        downstream: Option<shared::downstream::Downstream>,
    ) -> shared::worker::Worker {
        let clients = self.clients();
        let revel = revel_source(&self.config, &clients);
        shared::function::jobs_worker(
            &self.config,
            &self.sync_config(daily_budget),
            &clients,
            revel,
            api,
            downstream,
        )
    }

    pub fn sync_state(&self) -> shared::sync_state::DynamoSyncState {
        let table = self.sync_config(1).sync_state_table;
        shared::sync_state::DynamoSyncState::new(aws_sdk_dynamodb::Client::new(&self.sdk), table, 1)
    }

    /// Polls the jobs queue like Lambda's event source until a poll finds
    /// nothing (failed messages come back at once), at most `polls` times.
    pub async fn drain(
        &self,
        worker: &shared::worker::Worker,
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
