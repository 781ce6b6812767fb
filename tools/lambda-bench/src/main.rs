//! `lambda-bench`: each function as Lambda runs it, beside a hello-world
//! floor and the Python receiver a user would write instead.
//!
//! Provisions template.yaml's tables, queues and secrets (as `local-stack
//! up` does) and the reference's own table on each AWS endpoint, and runs
//! the release binary of each chosen function, as a process, against a
//! local Lambda Runtime API (`lambda_sandbox`, the one the integration
//! tests use), once per endpoint with the same events:
//!
//! - moto behind a recording proxy: the counts (AWS requests and
//!   sequential round trips on the ack path), and the stream the events
//!   processor is fed from;
//! - `lambda_sandbox::stand_in` over HTTP, answering from memory in
//!   microseconds: the timing figures, the function's own time rather than
//!   moto's milliseconds of Python per request, and the DynamoDB units each
//!   event is billed;
//! - the stand-in over HTTPS (a certificate made at start, trusted through
//!   SSL_CERT_FILE and AWS_CA_BUNDLE): what TLS adds to init + first invoke.
//!
//! It reports:
//!
//! - per receiver: init (spawn to the runtime's first `next`) and the AWS
//!   requests made in it; first invoke; warm answer latency (event handed
//!   out to response posted) and invocation duration (to the runtime back
//!   at `next`), p50 and p99 over N new events; CPU time per warm
//!   invocation (ns on CPU summed over the process's threads from
//!   `/proc/<pid>/task/*/schedstat`; utime + stime in clock ticks only where
//!   schedstat is missing, and the report says so); peak RSS (VmHWM); and
//!   the ack path: AWS requests and sequential round trips before the
//!   answer, per new event and per duplicate, as the proxy saw them;
//! - the Python reference (bench/python-reference: boto3 and Powertools'
//!   idempotency on a DynamoDB table of its own, provisioned from its
//!   template; the order sent to the jobs queue), run by awslambdaric
//!   (`python -m awslambdaric handler.lambda_handler`, as Lambda's Python
//!   images run a handler) through the same Runtime API, fed the same new
//!   events and duplicates as revel-order-finalized and measured the same
//!   way (its RSS is the Python process's);
//! - the budgets, on the raw figures, met or missed with the margin: each
//!   receiver's init + first invoke ≤ 3× the floor's and ≤ 1/30 of the
//!   reference's, its CPU per warm new event ≤ 1/4 of the reference's;
//! - the events processor, fed everything the receivers left on the events
//!   table's stream in batches as the event source mapping reads them:
//!   init and first batch, batch answer p50/p99, time, AWS requests and
//!   CPU per record, peak RSS, and failed records;
//! - `lambda-floor` (a hello-world `lambda_runtime` function, same profile),
//!   each function's init + first invoke given as a multiple of its;
//! - init and first invoke as medians of `--cold-starts` cold starts, each
//!   with a new event; the same per endpoint side by side. Each subject's
//!   first cold start is its warm run's; the further ones are interleaved
//!   across subjects round-robin, each round starting one subject further on,
//!   so that the shared machine's drift over the minutes a run takes lands
//!   on the floor and every receiver alike and cancels in the ratio, instead
//!   of moving it as it did when each subject's cold starts ran as a block;
//! - cost per million events (`cost`): each receiver's new event, the
//!   order's duplicate, the reference's, and the processor per record.
//!
//! Every figure is raw: nothing is subtracted. These are this machine's
//! release builds, while Lambda runs arm64 (Graviton) builds on a fraction
//! of a vCPU: what transfers is the ratio to the floor and to the
//! reference, and the counts (requests, round trips), not the absolute
//! milliseconds. Figures on moto carry its per-request time (milliseconds,
//! in Python); the stand-in's is microseconds, in the bench's process.
//!
//! Bounded: loopback only, fixed counts, a global timeout; moto, the
//! stand-ins and every function process are stopped when the bench ends,
//! also on error or timeout.
//!
//! Usage: lambda-bench [--functions a,b,...|all] [--invocations 200]
//!        [--duplicates 50] [--cold-starts 11] [--no-processor]
//!        [--no-reference] [--no-stand-in] [--no-tls] [--json PATH]
//!        [--timeout-secs 900] [--python .venv/bin/python]
//!        [--bin-dir target/release]

mod cost;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Parser;
use lambda_sandbox::proxy::{sequential_round_trips, Call, Proxy};
use lambda_sandbox::stand_in::{self, StandIn, Units};
use lambda_sandbox::{Answer, Function, Launch};
use local_stack::events::{self, Sample};
use local_stack::provision::{
    local_sdk_config, provision, put_demo_secrets, put_revel_secrets, Provisioned,
};
use local_stack::template::Template;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use report::{
    aws_figures, latency, ms, spread, Common, Duplicates, Measured, ProcessorFigures,
    ReceiverFigures, RunFigures,
};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

const DEFAULT_FUNCTIONS: &[&str] = &[
    "revel-order-finalized",
    "revel-stock-changed",
    "winesitting-webhook",
    "booking-bookings",
    "vinesos-customer-created",
];
const FLOOR: &str = "lambda-floor";
/// The Python reference (bench/python-reference), fed the events of
/// [`REFERENCE_OF`].
const REFERENCE: &str = "python-reference (order)";
const REFERENCE_OF: &str = "revel-order-finalized";
const REFERENCE_LOGICAL_ID: &str = "PythonReferenceFunction";
const REFERENCE_HANDLER: &str = "handler.lambda_handler";
const PROCESSOR: &str = "events-processor";
const PROCESSOR_LOGICAL_ID: &str = "EventsProcessorFunction";
/// The longest any one step (init, an invocation) may take: the
/// processor's Timeout in template.yaml.
const STEP_LIMIT: Duration = Duration::from_secs(60);

/// Each receiver as Lambda runs it (release builds, a local Runtime API),
/// beside a hello-world floor and the Python reference: init, latency, CPU,
/// RSS, the ack path's AWS requests and round trips, the events processor
/// per record, and the cost per million events.
#[derive(Debug, Parser)]
#[command(name = "lambda-bench", long_about = None)]
struct Cli {
    /// The receivers to run, by crate name, comma-separated; `all` for every
    /// receiver with a sample event [default: revel-order-finalized,
    /// revel-stock-changed, winesitting-webhook, booking-bookings,
    /// vinesos-customer-created]
    #[arg(long, value_name = "a,b,...|all")]
    functions: Option<String>,
    /// Warm invocations per receiver, each with a new event (p50 and p99
    /// over them).
    #[arg(short = 'n', long, value_name = "N", default_value_t = 200, value_parser = at_least_one)]
    invocations: usize,
    /// Repeats of those events per receiver, for the duplicate's ack path.
    #[arg(long, value_name = "N", default_value_t = 50)]
    duplicates: usize,
    /// Cold starts per function, interleaved across the functions
    /// round-robin; init and first invoke are their medians.
    #[arg(long, value_name = "N", default_value_t = 11, value_parser = at_least_one)]
    cold_starts: usize,
    /// Leave out the events processor.
    #[arg(long)]
    no_processor: bool,
    /// Leave out the Python reference.
    #[arg(long)]
    no_reference: bool,
    /// Leave out the in-process stand-in, over HTTP and HTTPS: figures on
    /// moto only.
    #[arg(long)]
    no_stand_in: bool,
    /// Leave out the stand-in over HTTPS (what TLS adds).
    #[arg(long)]
    no_tls: bool,
    /// Also write every figure to this file as JSON.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// The whole run's limit; everything started is stopped when it passes.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    timeout_secs: u64,
    /// The Python with moto and awslambdaric.
    #[arg(long, value_name = "PATH", env = "LOCAL_AWS_PYTHON",
          default_value_os_t = workspace_root().join(".venv/bin/python"))]
    python: PathBuf,
    /// Where the release binaries are.
    #[arg(long, value_name = "DIR", default_value_os_t = workspace_root().join("target/release"))]
    bin_dir: PathBuf,
}

fn at_least_one(raw: &str) -> Result<usize, String> {
    match raw.parse() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{raw:?} is not a whole number")),
    }
}

struct Options {
    functions: Vec<String>,
    invocations: usize,
    duplicates: usize,
    processor: bool,
    reference: bool,
    stand_in: bool,
    tls: bool,
    cold_starts: usize,
    json: Option<PathBuf>,
    timeout: Duration,
    python: PathBuf,
    bin_dir: PathBuf,
}

fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

impl Cli {
    fn options(self) -> Options {
        let functions = match self.functions.as_deref() {
            None => DEFAULT_FUNCTIONS.iter().map(|s| s.to_string()).collect(),
            Some("all") => receivers().into_iter().map(|(name, _)| name).collect(),
            Some(list) => list.split(',').map(|s| s.trim().to_owned()).collect(),
        };
        Options {
            functions,
            invocations: self.invocations,
            duplicates: self.duplicates,
            processor: !self.no_processor,
            reference: !self.no_reference,
            stand_in: !self.no_stand_in,
            tls: !self.no_tls,
            cold_starts: self.cold_starts,
            json: self.json,
            timeout: Duration::from_secs(self.timeout_secs),
            python: self.python,
            bin_dir: self.bin_dir,
        }
    }
}

/// Every receiver with a sample event: (crate name, sample).
fn receivers() -> Vec<(String, Sample)> {
    let functions = workspace_root().join("functions");
    events::samples()
        .into_iter()
        .filter_map(|sample| {
            let name = sample.output.strip_suffix(".json")?.to_owned();
            functions.join(&name).is_dir().then_some((name, sample))
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let options = Cli::parse().options();
    let limit = options.timeout;
    let result: Result<(), Error> = tokio::select! {
        result = tokio::time::timeout(limit, run(options)) => match result {
            Ok(result) => result,
            Err(_) => Err(format!("gave up after the global timeout of {limit:?}").into()),
        },
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
    };
    // Everything `run` started (moto, the functions) is stopped by now: it
    // was dropped with the future.
    if let Err(error) = result {
        eprintln!("lambda-bench: {error}");
        std::process::exit(1);
    }
}

/// moto on a free loopback port; it stops at end of input, and is killed
/// when dropped.
struct Moto {
    endpoint: String,
    _stdin: ChildStdin,
    _child: Child,
}

async fn start_moto(python: &Path) -> Result<Moto, Error> {
    let script = workspace_root().join("tools/local_aws.py");
    let mut command = Command::new(python);
    command
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    lambda_sandbox::function::die_with_parent(&mut command);
    let mut child = command.spawn().map_err(|e| {
        format!(
            "starting {} {}: {e} (run `make venv` first)",
            python.display(),
            script.display()
        )
    })?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let endpoint = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match lines.next_line().await? {
                Some(line) if line.starts_with("READY ") => {
                    return Ok::<_, Error>(line["READY ".len()..].trim().to_owned())
                }
                Some(_) => continue,
                None => return Err("the local AWS endpoint exited before it was ready".into()),
            }
        }
    })
    .await
    .map_err(|_| "the local AWS endpoint did not start within 60 s")??;
    Ok(Moto {
        endpoint,
        _stdin: stdin,
        _child: child,
    })
}

/// The sample's body with its ids and dates moved by `n`, so each `n` is a
/// new event (a new idempotency key, whatever the source derives it from).
fn vary(value: &mut Value, n: u64) {
    const IDS: [&str; 2] = ["id", "uuid"];
    const DATES: [&str; 5] = ["updated_date", "updated_at", "occurred_at", "date", "when"];
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                match field {
                    Value::String(s) if IDS.contains(&key.as_str()) => *s = format!("{s}-b{n}"),
                    Value::Number(i) if IDS.contains(&key.as_str()) => {
                        if let Some(i) = i.as_u64() {
                            *field = Value::from(i + n);
                        }
                    }
                    Value::String(s) if DATES.contains(&key.as_str()) => *s = shift_date(s, n),
                    other => vary(other, n),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| vary(item, n)),
        _ => {}
    }
}

/// `2016-04-13T10:29:19...` moved by `seconds`, the rest kept as it was.
fn shift_date(text: &str, seconds: u64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let Some(head) = text.get(..19) else {
        return text.to_owned();
    };
    match time::PrimitiveDateTime::parse(head, &format) {
        Ok(at) => {
            let moved = at + time::Duration::seconds(seconds as i64);
            format!(
                "{}{}",
                moved.format(&format).unwrap_or_default(),
                &text[19..]
            )
        }
        Err(_) => text.to_owned(),
    }
}

/// `count` new events for `sample`, each signed for the demo account.
fn new_events(sample: &Sample, count: usize) -> Result<Vec<Value>, Error> {
    let base = events::render(&events::default_dir(), sample)?;
    let body: Value = serde_json::from_str(base["body"].as_str().ok_or("sample without body")?)?;
    (1..=count as u64)
        .map(|n| {
            let mut varied = body.clone();
            vary(&mut varied, n);
            let bytes = serde_json::to_vec_pretty(&varied)?;
            let (route, path, headers) = events::request_for(sample.kind, &bytes);
            let mut event = events::routed_event("POST", &route, &path, "", &headers, &bytes);
            event["requestContext"]["requestId"] = Value::String(format!("bench-{n}"));
            Ok(event)
        })
        .collect()
}

/// The order receiver's body limit (`MAX_BODY_BYTES`, 1 MiB): what its
/// peak memory is measured at.
const BODY_LIMIT: usize = 1024 * 1024;

/// A new order whose body is just under `limit` bytes: the sample with its
/// ids moved and its items repeated.
fn order_at_limit(sample: &Sample, limit: usize) -> Result<Value, Error> {
    let base = events::render(&events::default_dir(), sample)?;
    let mut body: Value =
        serde_json::from_str(base["body"].as_str().ok_or("sample without body")?)?;
    vary(&mut body, 1_000_000);
    let items = body["items"]
        .as_array()
        .cloned()
        .filter(|items| !items.is_empty())
        .ok_or("the order sample has no items")?;
    // Each repeated item adds its compact text and a comma: counted, not
    // serialised again with the whole body.
    let mut size = serde_json::to_vec(&body)?.len();
    let list = body["items"].as_array_mut().ok_or("items")?;
    for item in items.iter().cycle() {
        let grown = serde_json::to_vec(item)?.len() + 1;
        if size + grown > limit {
            break;
        }
        list.push(item.clone());
        size += grown;
    }
    let bytes = serde_json::to_vec(&body)?;
    let (route, path, headers) = events::request_for(sample.kind, &bytes);
    let mut event = events::routed_event("POST", &route, &path, "", &headers, &bytes);
    event["requestContext"]["requestId"] = Value::String("bench-body-limit".into());
    Ok(event)
}

/// Peak RSS of a fresh order receiver that answers one order at the body
/// limit: (body bytes, answer, peak RSS kB).
async fn measure_body_limit(
    setup: &Setup,
    endpoint: &Endpoint<'_>,
    subject: &Subject,
    sample: &Sample,
) -> Result<(usize, String, u64), Error> {
    let event = order_at_limit(sample, BODY_LIMIT)?;
    let body_bytes = event["body"].as_str().map_or(0, str::len);
    let mut function = setup.start(subject, endpoint).await?.function;
    let answer = setup.invoke(endpoint, &mut function, &event).await?;
    let peak = peak_rss_kb(function.pid())?;
    function.stop().await;
    Ok((body_bytes, answer.status, peak))
}

/// MemorySize of the template function, else the Globals' one.
fn memory_size(template: &serde_norway::Value, logical_id: Option<&str>) -> u64 {
    let size = |v: Option<&serde_norway::Value>| {
        v.and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
    };
    logical_id
        .and_then(|id| size(template["Resources"][id]["Properties"].get("MemorySize")))
        .or_else(|| size(template["Globals"]["Function"].get("MemorySize")))
        .unwrap_or(128)
}

/// How CPU time was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuClock {
    /// Nanoseconds on CPU per thread, from `/proc/<pid>/task/*/schedstat`.
    Schedstat,
    /// utime + stime from `/proc/<pid>/stat`, in clock ticks.
    Ticks,
}

/// A process's CPU time so far, per thread (by thread id), in ns.
#[derive(Debug, Clone, PartialEq)]
struct CpuReading {
    clock: CpuClock,
    threads: BTreeMap<u32, u64>,
}

/// CPU time used between two readings, in ms, and how many threads ended
/// in between (what they used since `before` is not in it: schedstat is
/// per living thread).
fn cpu_between(before: &CpuReading, after: &CpuReading) -> (f64, usize) {
    let mut ns = 0u64;
    for (tid, now) in &after.threads {
        ns += now.saturating_sub(before.threads.get(tid).copied().unwrap_or(0));
    }
    let ended = before
        .threads
        .keys()
        .filter(|tid| !after.threads.contains_key(tid))
        .count();
    (ns as f64 / 1e6, ended)
}

/// The first field of a schedstat line: nanoseconds on CPU.
fn schedstat_ns(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// `pid`'s CPU time: per thread from schedstat (exact to the ns), else the
/// process's utime + stime in clock ticks.
fn cpu_reading(pid: u32) -> Result<CpuReading, Error> {
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        let mut threads = BTreeMap::new();
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // A thread that ended since the listing has nothing to read.
            if let Some(ns) = std::fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|text| schedstat_ns(&text))
            {
                threads.insert(tid, ns);
            }
        }
        if !threads.is_empty() {
            return Ok(CpuReading {
                clock: CpuClock::Schedstat,
                threads,
            });
        }
    }
    let ms = ticks_ms(pid)?;
    Ok(CpuReading {
        clock: CpuClock::Ticks,
        threads: BTreeMap::from([(pid, (ms * 1e6) as u64)]),
    })
}

/// utime + stime of `pid`, in milliseconds (whole clock ticks).
fn ticks_ms(pid: u32) -> Result<f64, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or("unreadable /proc/<pid>/stat")?
        .1
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, utime 14, stime 15.
    let ticks: u64 = fields
        .get(11)
        .zip(fields.get(12))
        .and_then(|(u, s)| Some(u.parse::<u64>().ok()? + s.parse::<u64>().ok()?))
        .ok_or("no utime/stime in /proc/<pid>/stat")?;
    Ok(ticks as f64 * 1000.0 / clock_ticks_per_second() as f64)
}

fn clock_ticks_per_second() -> libc::c_long {
    // SAFETY: sysconf only reads a constant.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1)
}

/// VmHWM of `pid`, in kB.
fn peak_rss_kb(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM in /proc/<pid>/status".into())
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The hello-world `lambda_runtime` function.
    Floor,
    Receiver,
    /// The Python reference: what a user would write instead.
    Reference,
}

/// A function to measure: its name in the report, what it is, and (for a
/// binary) its logical id in the template, for its memory size.
#[derive(Debug, Clone)]
struct Subject {
    name: String,
    role: Role,
    logical_id: Option<&'static str>,
}

impl Subject {
    fn floor() -> Self {
        Self {
            name: FLOOR.to_owned(),
            role: Role::Floor,
            logical_id: None,
        }
    }

    fn receiver(name: &str, sample: &Sample) -> Self {
        Self {
            name: name.to_owned(),
            role: Role::Receiver,
            logical_id: Some(sample.kind.function().logical_id),
        }
    }

    fn reference() -> Self {
        Self {
            name: REFERENCE.to_owned(),
            role: Role::Reference,
            logical_id: Some(REFERENCE_LOGICAL_ID),
        }
    }

    /// Its log file's name.
    fn log_name(&self) -> String {
        match self.role {
            Role::Reference => "python-reference.log".to_owned(),
            _ => format!("{}.log", self.name),
        }
    }
}

/// Where a run's AWS requests go: moto behind the recording proxy (the
/// counts, and the stream the processor reads), or the stand-in (the
/// function's own time), over HTTP or HTTPS.
struct Endpoint<'a> {
    /// `moto`, `stand-in HTTP`, `stand-in HTTPS`.
    label: &'static str,
    url: String,
    /// The bundle's environment as provisioned there, and the reference's
    /// (its idempotency table).
    env: BTreeMap<String, String>,
    reference_env: BTreeMap<String, String>,
    /// Variables that make a function trust the endpoint's certificate.
    trust: Vec<(String, String)>,
    /// The recording proxy, when this run's requests are counted.
    proxy: Option<&'a Proxy>,
    /// The stand-in, whose DynamoDB units tell what each event wrote.
    stand_in: Option<&'a StandIn>,
}

impl Endpoint<'_> {
    fn calls_started_between(&self, from: Instant, to: Instant) -> Vec<Call> {
        self.proxy
            .map_or_else(Vec::new, |p| p.log().calls_started_between(from, to))
    }
}

/// What every measurement shares: the template, where binaries, the
/// reference and logs are.
struct Setup {
    template: serde_norway::Value,
    reference: Reference,
    log_dir: PathBuf,
    bin_dir: PathBuf,
}

/// The Python reference: its interpreter, code and template.
struct Reference {
    python: PathBuf,
    /// `3.11`.
    python_version: String,
    task_root: PathBuf,
    template: serde_norway::Value,
}

/// A function started, with what its init cost.
struct Started {
    function: Function,
    memory: u64,
    init: Duration,
    init_requests: Option<usize>,
}

impl Setup {
    fn launch(&self, subject: &Subject, endpoint: &Endpoint<'_>) -> (Launch, u64) {
        let (launch, memory) = match subject.role {
            Role::Floor | Role::Receiver => (
                Launch::new(
                    self.bin_dir.join(&subject.name),
                    &subject.name,
                    &endpoint.url,
                )
                .env(endpoint.env.clone()),
                memory_size(&self.template, subject.logical_id),
            ),
            Role::Reference => {
                let reference = &self.reference;
                let launch = Launch::new(&reference.python, "python-reference", &endpoint.url)
                    .args(["-m", "awslambdaric", REFERENCE_HANDLER])
                    .task_root(&reference.task_root)
                    .env(endpoint.env.clone())
                    .env(endpoint.reference_env.clone())
                    .env([
                        (
                            "AWS_EXECUTION_ENV",
                            format!("AWS_Lambda_python{}", reference.python_version),
                        ),
                        ("_HANDLER", REFERENCE_HANDLER.to_owned()),
                        // Lambda's task root is read-only: the handler is
                        // compiled at every cold start, nothing is cached.
                        ("PYTHONDONTWRITEBYTECODE", "1".to_owned()),
                    ]);
                (launch, memory_size(&reference.template, subject.logical_id))
            }
        };
        (launch.env(endpoint.trust.clone()), memory)
    }

    async fn start(&self, subject: &Subject, endpoint: &Endpoint<'_>) -> Result<Started, Error> {
        let (launch, memory) = self.launch(subject, endpoint);
        if let Some(proxy) = endpoint.proxy {
            proxy.log().clear();
        }
        let function = launch
            .memory_mb(memory)
            .log(self.log_dir.join(subject.log_name()))
            .init_limit(STEP_LIMIT)
            .start()
            .await?;
        let init_requests = endpoint.proxy.map(|_| {
            endpoint
                .calls_started_between(function.spawned, function.initialized)
                .len()
        });
        Ok(Started {
            memory,
            init: function.init_duration(),
            init_requests,
            function,
        })
    }

    /// One invocation, its AWS requests (when counted) split at the answer.
    async fn invoke(
        &self,
        endpoint: &Endpoint<'_>,
        function: &mut Function,
        event: &Value,
    ) -> Result<Measured, Error> {
        let invoked = function.invoke(event, STEP_LIMIT).await?;
        // A request the answer waited for ended before it; one still running
        // when the answer was posted (even if started before) is not on the
        // answer's path.
        let (before, after): (Vec<Call>, Vec<Call>) = endpoint
            .calls_started_between(invoked.handed_out, invoked.ended)
            .into_iter()
            .partition(|c| c.end <= invoked.answered);
        let (status, response) = match &invoked.answer {
            Answer::Response(body) => {
                let response = serde_json::from_str::<Value>(body).ok();
                let status = response
                    .as_ref()
                    .map_or_else(|| "not JSON".to_owned(), answer_status);
                (status, response)
            }
            Answer::Error(body) => (format!("error {body}"), None),
        };
        Ok(Measured {
            answer: invoked.answer_time(),
            duration: invoked.duration(),
            before,
            after,
            status,
            response,
        })
    }
}

/// An HTTP answer's status code and, when its body has one, its `status`:
/// `200 duplicate`.
fn answer_status(response: &Value) -> String {
    let Some(code) = response["statusCode"].as_u64() else {
        return "no statusCode".to_owned();
    };
    let outcome = response["body"]
        .as_str()
        .and_then(|body| serde_json::from_str::<Value>(body).ok())
        .and_then(|body| body["status"].as_str().map(str::to_owned));
    match outcome {
        Some(outcome) => format!("{code} {outcome}"),
        None => code.to_string(),
    }
}

/// One cold start's figures: spawn to the runtime's first `next`, and the
/// first invoke's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ColdSample {
    init: Duration,
    first: Duration,
}

/// A subject's warm run: its figures (init and first invoke from this one
/// cold start so far) and that cold start, the first of its samples.
struct Warm {
    figures: ReceiverFigures,
    cold: ColdSample,
}

/// A receiver, the floor or the reference, started once and kept warm:
/// `events[0]` is its first invoke, the rest warm new events, then
/// `duplicates` repeats of them. Its further cold starts are taken later,
/// interleaved with the other subjects' (see [`measure_run`]).
async fn measure_warm(
    setup: &Setup,
    endpoint: &Endpoint<'_>,
    subject: &Subject,
    events: &[Value],
    duplicates: usize,
) -> Result<Warm, Error> {
    let Started {
        mut function,
        memory,
        init,
        init_requests,
    } = setup.start(subject, endpoint).await?;
    let pid = function.pid();
    let (first_event, warm_events) = events.split_first().ok_or("no events")?;
    let units = || endpoint.stand_in.map(StandIn::units);
    let units_at_start = units();
    let first = setup
        .invoke(endpoint, &mut function, &signed_now(first_event))
        .await?;
    let cpu_before = cpu_reading(pid)?;
    let mut new_runs = vec![first];
    for event in warm_events {
        new_runs.push(
            setup
                .invoke(endpoint, &mut function, &signed_now(event))
                .await?,
        );
    }
    let cpu_after = cpu_reading(pid)?;
    let units_after_new = units();
    let mut dups = Vec::with_capacity(duplicates);
    for i in 0..duplicates {
        let event = signed_now(&events[i % events.len()]);
        dups.push(setup.invoke(endpoint, &mut function, &event).await?);
    }
    let units_after_duplicates = units();
    let peak_rss_kb = peak_rss_kb(pid)?;
    function.stop().await;
    let cold = ColdSample {
        init,
        first: new_runs[0].answer,
    };

    let per_event = |from: Option<Units>, to: Option<Units>, count: usize| {
        let (from, to) = from.zip(to)?;
        (count > 0).then(|| report::UnitFigures::per_event(from, to, count))
    };
    let body_bytes = first_event["body"].as_str().map_or(0, str::len);
    let counted = endpoint.proxy.is_some() && subject.role != Role::Floor;
    let warm = &new_runs[1..];
    let (cpu_ms, threads_ended) = cpu_between(&cpu_before, &cpu_after);
    // The cold figures are the medians over every cold start, filled in once
    // all are taken (`measure_run`).
    let common = Common {
        function: subject.name.clone(),
        role: subject.role,
        memory_size_mb: memory.to_string(),
        init_ms: 0.0,
        init_requests,
        first_invoke_ms: 0.0,
        init_plus_first_ms: 0.0,
        cold_starts: 0,
        ratio_to_floor: None,
        peak_rss_kb,
    };
    let figures = ReceiverFigures {
        common,
        warm_invocations: warm.len(),
        warm_answer: latency(warm.iter().map(|r| r.answer)),
        warm_duration: latency(warm.iter().map(|r| r.duration)),
        cpu_ms_per_warm_invocation: (cpu_ms / warm.len().max(1) as f64 * 1000.0).round() / 1000.0,
        cpu_clock: cpu_after.clock,
        cpu_threads_ended: threads_ended,
        body_bytes,
        units_per_new_event: per_event(units_at_start, units_after_new, new_runs.len()),
        units_per_duplicate: per_event(units_after_new, units_after_duplicates, dups.len()),
        duplicate_duration: (!dups.is_empty()).then(|| latency(dups.iter().map(|r| r.duration))),
        new_statuses: report::statuses_of(&new_runs),
        duplicate_statuses: report::statuses_of(&dups),
        new_events: counted.then(|| aws_figures(&new_runs)),
        duplicates: (counted && !dups.is_empty()).then(|| Duplicates {
            count: dups.len(),
            answer: latency(dups.iter().map(|r| r.answer)),
            aws: aws_figures(&dups),
        }),
    };
    Ok(Warm { figures, cold })
}

/// The event signed now, as a sender would: VinesOS signatures are
/// time-limited.
fn signed_now(event: &Value) -> Value {
    events::resign(event.clone())
}

/// One further cold start of `subject` with a new event of its own: start,
/// first invoke, stop. A single sample, as noisy as one sample is.
async fn cold_start(
    setup: &Setup,
    endpoint: &Endpoint<'_>,
    subject: &Subject,
    event: &Value,
) -> Result<ColdSample, Error> {
    let started = setup.start(subject, endpoint).await?;
    let mut function = started.function;
    let first = setup
        .invoke(endpoint, &mut function, &signed_now(event))
        .await?;
    function.stop().await;
    Ok(ColdSample {
        init: started.init,
        first: first.answer,
    })
}

/// The order of the further cold starts, as (subject, round): round by
/// round, every subject once per round. Run one subject's block after
/// another, minutes apart, the machine's drift lands on some subjects and
/// not others and moves the ratio to the floor; interleaved, it lands on
/// all of them alike. Each round starts one subject further on, so no
/// subject always follows the same one (the floor does not always come
/// right after the Python reference's 80 MB process is torn down).
fn cold_start_order(subjects: usize, rounds: usize) -> Vec<(usize, usize)> {
    (0..rounds)
        .flat_map(|round| (0..subjects).map(move |step| ((round + step) % subjects, round)))
        .collect()
}

/// Each subject's cold samples: its warm run's first, then those `taken`
/// in `order`, handed to the subject each was taken of.
fn samples_by_subject(
    warm: Vec<ColdSample>,
    order: &[(usize, usize)],
    taken: Vec<ColdSample>,
) -> Vec<Vec<ColdSample>> {
    let mut samples: Vec<Vec<ColdSample>> = warm.into_iter().map(|first| vec![first]).collect();
    for (&(subject, _), sample) in order.iter().zip(taken) {
        samples[subject].push(sample);
    }
    samples
}

/// Init, first invoke and init + first as medians of `samples` (the last
/// the median of the sums, not the sum of the medians); raw, nothing
/// subtracted.
fn set_cold_figures(common: &mut Common, samples: &[ColdSample]) {
    let median = |values: Vec<Duration>| report::percentile(&values, 0.5);
    common.init_ms = ms(median(samples.iter().map(|s| s.init).collect()));
    common.first_invoke_ms = ms(median(samples.iter().map(|s| s.first).collect()));
    common.init_plus_first_ms = ms(median(samples.iter().map(|s| s.init + s.first).collect()));
    common.cold_starts = samples.len();
}

/// Everything the events table's stream holds, in the batches the event
/// source mapping would hand the processor (one GetRecords page each).
async fn stream_batches(
    sdk: &aws_config::SdkConfig,
    stream_arn: &str,
    table: &str,
) -> Result<Vec<(usize, Value)>, Error> {
    let mut batches = Vec::new();
    for records in local_stack::stream::read_pages(sdk, stream_arn).await? {
        let event = local_stack::stream::lambda_event(stream_arn, table, &records)?;
        batches.push((records.len(), serde_json::to_value(event)?));
    }
    Ok(batches)
}

/// The processor on `batches`: the first is its first invoke, the rest warm.
async fn measure_processor(
    setup: &Setup,
    endpoint: &Endpoint<'_>,
    batches: &[(usize, Value)],
) -> Result<ProcessorFigures, Error> {
    let Started {
        mut function,
        memory,
        init,
        init_requests,
    } = setup
        .start(
            &Subject {
                name: PROCESSOR.to_owned(),
                role: Role::Receiver,
                logical_id: Some(PROCESSOR_LOGICAL_ID),
            },
            endpoint,
        )
        .await?;
    let pid = function.pid();
    let ((_, first_event), warm_batches) = batches
        .split_first()
        .ok_or("the events table's stream holds nothing")?;
    let cpu_at_start = cpu_reading(pid)?;
    let first = invoke_batch(setup, endpoint, &mut function, first_event).await?;
    let mut failed_records = first.1;
    let first = first.0;
    let cpu_before = cpu_reading(pid)?;
    let mut warm = Vec::with_capacity(warm_batches.len());
    for (records, event) in warm_batches {
        let (measured, failed) = invoke_batch(setup, endpoint, &mut function, event).await?;
        failed_records += failed;
        warm.push((*records, measured));
    }
    let cpu_after = cpu_reading(pid)?;
    let peak_rss_kb = peak_rss_kb(pid)?;
    function.stop().await;

    // With a single batch, it is the only one there is to measure.
    let measured: Vec<(usize, &Measured)> = if warm.is_empty() {
        vec![(batches[0].0, &first)]
    } else {
        warm.iter().map(|(n, m)| (*n, m)).collect()
    };
    let records: usize = measured.iter().map(|(n, _)| n).sum();
    let per_record = |total: f64| (total / records.max(1) as f64 * 1000.0).round() / 1000.0;
    let answer_total: Duration = measured.iter().map(|(_, m)| m.answer).sum();
    let operations = report::by_operation(
        measured
            .iter()
            .flat_map(|(_, m)| m.before.iter().chain(&m.after)),
    );
    let requests: usize = operations.values().map(|o| o.count).sum();
    Ok(ProcessorFigures {
        common: Common {
            function: PROCESSOR.to_owned(),
            role: Role::Receiver,
            memory_size_mb: memory.to_string(),
            init_ms: ms(init),
            init_requests,
            first_invoke_ms: ms(first.answer),
            init_plus_first_ms: ms(init + first.answer),
            cold_starts: 1,
            ratio_to_floor: None,
            peak_rss_kb,
        },
        measured_batches: measured.len(),
        measured_records: records,
        batch_answer: latency(measured.iter().map(|(_, m)| m.answer)),
        ms_per_record: per_record(answer_total.as_secs_f64() * 1000.0),
        requests_per_record: (requests as f64 / records.max(1) as f64 * 100.0).round() / 100.0,
        round_trips_per_batch: spread(measured.iter().map(|(_, m)| {
            let all: Vec<Call> = m.before.iter().chain(&m.after).cloned().collect();
            sequential_round_trips(&all)
        })),
        operations,
        cpu_ms_per_record: per_record(
            cpu_between(
                if warm.is_empty() {
                    &cpu_at_start
                } else {
                    &cpu_before
                },
                &cpu_after,
            )
            .0,
        ),
        failed_records,
    })
}

/// One batch to the processor: measured, and how many records it reported failed.
async fn invoke_batch(
    setup: &Setup,
    endpoint: &Endpoint<'_>,
    function: &mut Function,
    event: &Value,
) -> Result<(Measured, usize), Error> {
    let measured = setup.invoke(endpoint, function, event).await?;
    let failures = measured
        .response
        .as_ref()
        .and_then(|r| r["batchItemFailures"].as_array())
        .map(Vec::len)
        .ok_or_else(|| format!("{PROCESSOR} answered {}", measured.status))?;
    Ok((measured, failures))
}

/// The Python reference's interpreter and code.
async fn reference(python: &Path) -> Result<Reference, Error> {
    let task_root = workspace_root().join("bench/python-reference");
    let output = Command::new(python)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .await
        .map_err(|e| format!("running {}: {e} (run `make venv` first)", python.display()))?;
    let python_version = String::from_utf8(output.stdout)?.trim().to_owned();
    if !output.status.success() || python_version.is_empty() {
        return Err(format!("{} did not tell its version", python.display()).into());
    }
    Ok(Reference {
        python: python.to_owned(),
        python_version,
        template: serde_norway::from_str(&std::fs::read_to_string(
            task_root.join("template.yaml"),
        )?)?,
        task_root,
    })
}

/// The bundle's and the reference's resources on an endpoint, with the
/// demo secrets in place, as `local-stack up` provisions them.
struct Stack {
    sdk: aws_config::SdkConfig,
    provisioned: Provisioned,
    reference_env: BTreeMap<String, String>,
}

async fn stack_on(url: &str, template: &Template, reference: &Template) -> Result<Stack, Error> {
    let sdk = local_sdk_config(url).await;
    let provisioned = provision(&sdk, template, "bench").await?;
    put_revel_secrets(
        &sdk,
        &provisioned,
        &local_stack::demo_revel_secret_document(),
    )
    .await?;
    put_demo_secrets(&sdk, &provisioned).await?;
    let reference_env = provision(&sdk, reference, "bench-reference").await?.env;
    Ok(Stack {
        sdk,
        provisioned,
        reference_env,
    })
}

/// Where Debian and Amazon Linux keep the system's trusted roots.
const SYSTEM_CA_BUNDLES: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// The system's roots with the stand-in's CA appended, written to `dir`:
/// a function trusting it parses as many roots as it does in Lambda (the
/// stand-in's CA alone would make its init cheaper than over HTTP, where
/// the Rust SDK still loads the system's roots). The system's bundle, if
/// one was found, is returned too.
fn trust_bundle(ca: &Path, dir: &Path) -> Result<(PathBuf, Option<&'static str>), Error> {
    let system = SYSTEM_CA_BUNDLES
        .into_iter()
        .find(|path| Path::new(path).is_file());
    let mut pem = match system {
        Some(path) => std::fs::read(path)?,
        None => Vec::new(),
    };
    pem.push(b'\n');
    pem.extend(std::fs::read(ca)?);
    let path = dir.join("stand-in-trust.pem");
    std::fs::write(&path, pem)?;
    Ok((path, system))
}

/// The stand-in, provisioned, as an endpoint (trusted through the
/// environment over HTTPS).
async fn stand_in_endpoint<'a>(
    setup: &Setup,
    stand_in: &'a StandIn,
    label: &'static str,
    template: &Template,
    reference: &Template,
) -> Result<Endpoint<'a>, Error> {
    let stack = stack_on(stand_in.endpoint_url(), template, reference).await?;
    let trust = match stand_in.ca_bundle_path() {
        Some(ca) => {
            let (bundle, system) = trust_bundle(ca, &setup.log_dir)?;
            eprintln!(
                "lambda-bench: {label}: functions trust {} ({} and the stand-in's CA)",
                bundle.display(),
                system.unwrap_or("no system bundle found")
            );
            let bundle = bundle.display().to_string();
            // The Rust SDK's rustls client reads roots from SSL_CERT_FILE;
            // boto3 from AWS_CA_BUNDLE.
            vec![
                ("SSL_CERT_FILE".to_owned(), bundle.clone()),
                ("AWS_CA_BUNDLE".to_owned(), bundle),
            ]
        }
        None => Vec::new(),
    };
    Ok(Endpoint {
        label,
        url: stand_in.endpoint_url().to_owned(),
        env: stack.provisioned.env,
        reference_env: stack.reference_env,
        trust,
        proxy: None,
        stand_in: Some(stand_in),
    })
}

/// What one run measures, and the events it feeds them.
struct Plan {
    /// The floor, each receiver and the reference, with their new events
    /// and the new events of their further cold starts.
    subjects: Vec<(Subject, Vec<Value>, Vec<Value>)>,
    duplicates: usize,
}

/// Every subject of `plan` on `endpoint`: each one's warm run, one after
/// another, then the further cold starts interleaved across subjects,
/// round-robin (see [`cold_start_order`]), then each one's medians.
async fn measure_run(
    setup: &Setup,
    endpoint: &Endpoint<'_>,
    plan: &Plan,
) -> Result<RunFigures, Error> {
    let mut figures = Vec::with_capacity(plan.subjects.len());
    let mut first_colds = Vec::with_capacity(plan.subjects.len());
    for (subject, events, _) in &plan.subjects {
        eprintln!("lambda-bench: {} on {}", subject.name, endpoint.label);
        let duplicates = if subject.role == Role::Floor {
            0
        } else {
            plan.duplicates
        };
        let warm = measure_warm(setup, endpoint, subject, events, duplicates).await?;
        figures.push(warm.figures);
        first_colds.push(warm.cold);
    }
    // Every subject has one new event per further cold start.
    let rounds = plan.subjects.first().map_or(0, |(_, _, cold)| cold.len());
    eprintln!(
        "lambda-bench: {rounds} further cold starts of each on {}, round-robin",
        endpoint.label
    );
    let order = cold_start_order(plan.subjects.len(), rounds);
    let mut taken = Vec::with_capacity(order.len());
    for &(index, round) in &order {
        let (subject, _, cold_events) = &plan.subjects[index];
        let event = cold_events
            .get(round)
            .ok_or_else(|| format!("{} has no event for cold start {round}", subject.name))?;
        taken.push(cold_start(setup, endpoint, subject, event).await?);
    }
    let samples = samples_by_subject(first_colds, &order, taken);
    for (figures, samples) in figures.iter_mut().zip(&samples) {
        set_cold_figures(&mut figures.common, samples);
    }
    Ok(RunFigures {
        endpoint: endpoint.label.to_owned(),
        figures,
    })
}

async fn run(options: Options) -> Result<(), Error> {
    let all = receivers();
    let mut chosen = Vec::new();
    for name in &options.functions {
        let (_, sample) = all
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| format!("no receiver named {name:?} (with a sample in events/)"))?;
        chosen.push((name.clone(), sample.clone()));
    }
    if chosen.is_empty() {
        return Err("no functions chosen".into());
    }
    let processor = options.processor;
    let missing: Vec<String> = std::iter::once(FLOOR.to_owned())
        .chain(chosen.iter().map(|(n, _)| n.clone()))
        .chain(processor.then(|| PROCESSOR.to_owned()))
        .filter(|n| !options.bin_dir.join(n).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing release binaries in {}: build them with `cargo build --release --locked -p {}`",
            options.bin_dir.display(),
            missing.join(" -p ")
        )
        .into());
    }
    let count = options.invocations + 1;
    // The events of a run, then those of the further cold starts.
    let events_for = |subject: Subject, sample: &Sample| -> Result<_, Error> {
        let mut events = new_events(sample, count + options.cold_starts - 1)?;
        let cold = events.split_off(count);
        Ok((subject, events, cold))
    };
    let mut subjects = vec![events_for(Subject::floor(), &chosen[0].1)?];
    for (name, sample) in &chosen {
        subjects.push(events_for(Subject::receiver(name, sample), sample)?);
    }
    if options.reference {
        let (_, sample) = all
            .iter()
            .find(|(n, _)| n == REFERENCE_OF)
            .ok_or("no sample for the reference's events")?;
        subjects.push(events_for(Subject::reference(), sample)?);
    }
    let plan = Plan {
        subjects,
        duplicates: options.duplicates,
    };

    // Started first: the bench's own SDK clients load their trusted roots
    // once per process, at the first client, from SSL_CERT_FILE. The bench
    // reaches only loopback endpoints, so trusting the stand-in's CA alone
    // is all it needs (moto is plain HTTP).
    let https = if options.stand_in && options.tls {
        let stand_in = StandIn::start(stand_in::Options::https()).await?;
        if let Some(ca) = stand_in.ca_bundle_path() {
            std::env::set_var("SSL_CERT_FILE", ca);
        }
        Some(stand_in)
    } else {
        None
    };
    let template = Template::load(&local_stack::template::default_path())?;
    let reference_template =
        Template::load(&workspace_root().join("bench/python-reference/template.yaml"))?;

    eprintln!("lambda-bench: starting the local AWS endpoint");
    let moto = start_moto(&options.python).await?;
    let moto_stack = stack_on(&moto.endpoint, &template, &reference_template).await?;
    let proxy = Proxy::start(&moto.endpoint).await?;
    let log_dir = workspace_root().join("target/lambda-bench");
    std::fs::create_dir_all(&log_dir)?;
    let setup = Setup {
        template: serde_norway::from_str(&std::fs::read_to_string(
            local_stack::template::default_path(),
        )?)?,
        reference: reference(&options.python).await?,
        log_dir,
        bin_dir: options.bin_dir.clone(),
    };
    let moto_endpoint = Endpoint {
        label: "moto",
        url: proxy.endpoint.clone(),
        env: moto_stack.provisioned.env.clone(),
        reference_env: moto_stack.reference_env.clone(),
        trust: Vec::new(),
        proxy: Some(&proxy),
        stand_in: None,
    };

    // The counts (and the stream the processor reads) on moto.
    let mut runs = vec![measure_run(&setup, &moto_endpoint, &plan).await?];
    let processor = if processor {
        let events_table = &moto_stack.provisioned.resources["EventsTable"];
        let stream_arn = events_table
            .stream_arn
            .as_deref()
            .ok_or("template.yaml gives the events table no stream")?;
        let batches = stream_batches(&moto_stack.sdk, stream_arn, &events_table.reference).await?;
        eprintln!(
            "lambda-bench: {PROCESSOR} on moto ({} records in {} batches)",
            batches.iter().map(|(n, _)| n).sum::<usize>(),
            batches.len()
        );
        Some(measure_processor(&setup, &moto_endpoint, &batches).await?)
    } else {
        None
    };
    // The function's own time on the stand-in, over HTTP, then HTTPS.
    let mut body_limit = None;
    if options.stand_in {
        let http = StandIn::start(stand_in::Options::http()).await?;
        let endpoint = stand_in_endpoint(
            &setup,
            &http,
            "stand-in HTTP",
            &template,
            &reference_template,
        )
        .await?;
        runs.push(measure_run(&setup, &endpoint, &plan).await?);
        if let Some((name, sample)) = chosen.iter().find(|(n, _)| n == REFERENCE_OF) {
            body_limit = Some(
                measure_body_limit(&setup, &endpoint, &Subject::receiver(name, sample), sample)
                    .await?,
            );
        }
    }
    if let Some(https) = &https {
        let endpoint = stand_in_endpoint(
            &setup,
            https,
            "stand-in HTTPS",
            &template,
            &reference_template,
        )
        .await?;
        runs.push(measure_run(&setup, &endpoint, &plan).await?);
    }
    drop(https);

    let report = report::assemble(
        report::Context {
            machine: machine(),
            invocations: options.invocations,
            duplicates: options.duplicates,
            clock_tick_ms: 1000 / clock_ticks_per_second(),
            python_version: setup.reference.python_version.clone(),
        },
        runs,
        processor,
    )?;
    print!("{}", report::markdown(&report));
    print!("{}", report::memory_budgets(&report, body_limit));
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
        eprintln!("lambda-bench: wrote {}", path.display());
    }
    drop(setup);
    drop(moto);
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{} {cpu}, {cores} cores (release builds of this machine's target, not Lambda's arm64)",
        std::env::consts::ARCH
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cli(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("lambda-bench").chain(line.split_whitespace()))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn without_flags_everything_is_measured_with_the_default_counts() {
        let options = cli("").unwrap().options();
        assert_eq!(options.functions, DEFAULT_FUNCTIONS);
        assert!(options.processor && options.reference && options.stand_in && options.tls);
        assert_eq!(
            (options.invocations, options.duplicates, options.cold_starts),
            (200, 50, 11)
        );
        assert_eq!(options.timeout, Duration::from_secs(900));
        assert_eq!(options.json, None);
        assert_eq!(options.bin_dir, workspace_root().join("target/release"));
    }

    #[test]
    fn the_makefiles_documented_flags_turn_their_parts_off() {
        let options = cli("--functions all --json out.json --no-processor --no-reference --no-stand-in --no-tls --cold-starts 3 -n 20 --duplicates 0 --timeout-secs 60 --python /p --bin-dir /b")
            .unwrap()
            .options();
        let all: Vec<String> = receivers().into_iter().map(|(name, _)| name).collect();
        assert!(all.len() > DEFAULT_FUNCTIONS.len());
        assert_eq!(options.functions, all);
        assert_eq!(options.json, Some(PathBuf::from("out.json")));
        assert!(!options.processor && !options.reference && !options.stand_in && !options.tls);
        assert_eq!(
            (options.invocations, options.duplicates, options.cold_starts),
            (20, 0, 3)
        );
        assert_eq!(options.timeout, Duration::from_secs(60));
        assert_eq!(
            (options.python, options.bin_dir),
            (PathBuf::from("/p"), PathBuf::from("/b"))
        );
        let options = Cli::try_parse_from([
            "lambda-bench",
            "--functions",
            "revel-order-finalized, booking-bookings",
        ])
        .unwrap()
        .options();
        assert_eq!(
            options.functions,
            ["revel-order-finalized", "booking-bookings"]
        );
    }

    #[test]
    fn bad_flags_are_a_usage_error_with_exit_code_2() {
        for line in [
            "--cold-starts 0",
            "--invocations 0",
            "-n x",
            "--json",
            "--speed 9",
            "--timeout-secs soon",
        ] {
            let error = cli(line).err().unwrap_or_else(|| panic!("{line:?} parsed"));
            assert_eq!(error.exit_code(), 2, "{line:?}");
        }
    }

    #[test]
    fn varied_events_move_ids_and_dates_and_keep_the_rest() {
        let mut body = json!({"orderInfo": {"uuid": "u-1", "updated_date": "2016-04-13T10:29:19.5", "total": 3},
            "items": [{"id": 7}], "occurred_at": "2026-11-24T23:59:59Z", "date": "soon"});
        vary(&mut body, 2);
        assert_eq!(
            body,
            json!({"orderInfo": {"uuid": "u-1-b2", "updated_date": "2016-04-13T10:29:21.5", "total": 3},
                "items": [{"id": 9}], "occurred_at": "2026-11-25T00:00:01Z", "date": "soon"})
        );
    }

    #[test]
    fn the_order_at_the_body_limit_fills_it_without_passing_it() {
        let (_, sample) = receivers()
            .into_iter()
            .find(|(n, _)| n == REFERENCE_OF)
            .unwrap();
        let event = order_at_limit(&sample, BODY_LIMIT).unwrap();
        let body = event["body"].as_str().unwrap();
        assert!(body.len() <= BODY_LIMIT, "{} bytes", body.len());
        assert!(body.len() > BODY_LIMIT - 4096, "{} bytes", body.len());
        let order: Value = serde_json::from_str(body).unwrap();
        assert!(order["items"].as_array().unwrap().len() > 100);
        assert!(event["headers"]["x-revel-signature"].is_string());
    }

    #[test]
    fn every_default_function_has_a_sample() {
        let all = receivers();
        for name in DEFAULT_FUNCTIONS {
            assert!(all.iter().any(|(n, _)| n == name), "{name}");
        }
    }

    #[test]
    fn new_events_are_distinct_and_signed() {
        let (_, sample) = receivers()
            .into_iter()
            .find(|(n, _)| n == "revel-order-finalized")
            .unwrap();
        let events = new_events(&sample, 3).unwrap();
        assert_eq!(events.len(), 3);
        assert_ne!(events[0]["body"], events[1]["body"]);
        assert_ne!(
            events[0]["headers"]["x-revel-signature"],
            events[1]["headers"]["x-revel-signature"]
        );
    }

    #[test]
    fn an_answer_is_shown_by_its_status_code_and_outcome() {
        let answer = json!({"statusCode": 200, "body": r#"{"status":"duplicate","event_id":"k"}"#});
        assert_eq!(answer_status(&answer), "200 duplicate");
        assert_eq!(answer_status(&json!({"statusCode": 200})), "200");
        assert_eq!(
            answer_status(&json!({"batchItemFailures": []})),
            "no statusCode"
        );
    }

    #[test]
    fn schedstat_gives_the_nanoseconds_on_cpu_and_nothing_else() {
        assert_eq!(schedstat_ns("62467421 29352273 232\n"), Some(62_467_421));
        assert_eq!(schedstat_ns(""), None);
        assert_eq!(schedstat_ns("x 1 2"), None);
    }

    #[test]
    fn cpu_between_readings_counts_new_threads_whole_and_ended_threads_as_missing() {
        let reading = |threads: &[(u32, u64)]| CpuReading {
            clock: CpuClock::Schedstat,
            threads: threads.iter().copied().collect(),
        };
        let before = reading(&[(1, 1_000_000), (2, 500_000), (3, 7)]);
        let after = reading(&[(1, 3_500_000), (2, 500_000), (4, 250_000)]);
        assert_eq!(cpu_between(&before, &after), (2.75, 1));
    }

    #[test]
    fn this_process_cpu_is_read_from_schedstat_and_grows_with_work() {
        let pid = std::process::id();
        let before = cpu_reading(pid).unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let after = cpu_reading(pid).unwrap();
        assert_eq!(after.clock, CpuClock::Schedstat);
        assert!(cpu_between(&before, &after).0 > 0.0, "{x}");
    }

    #[test]
    fn the_references_template_gives_it_an_idempotency_table_and_128_mb() {
        let path = workspace_root().join("bench/python-reference/template.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let template = Template::parse(&text).unwrap();
        let table = template.resource("IdempotencyTable").unwrap();
        assert_eq!(
            table.properties["KeySchema"][0]["AttributeName"].as_str(),
            Some("id")
        );
        let value: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(memory_size(&value, Some(REFERENCE_LOGICAL_ID)), 128);
    }

    #[test]
    fn the_trust_bundle_holds_the_systems_roots_and_ends_with_the_stand_ins_ca() {
        let dir = std::env::temp_dir().join(format!("lambda-bench-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nSTAND-IN\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let (bundle, system) = trust_bundle(&ca, &dir).unwrap();
        let text = std::fs::read_to_string(&bundle).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            text.ends_with("STAND-IN\n-----END CERTIFICATE-----\n"),
            "{text}"
        );
        if let Some(system) = system {
            let roots = std::fs::read_to_string(system).unwrap();
            assert!(text.starts_with(&roots));
            assert!(text.matches("BEGIN CERTIFICATE").count() > 1);
        }
    }

    #[test]
    fn further_cold_starts_go_round_robin_every_subject_once_per_round_each_round_starting_one_further_on(
    ) {
        assert_eq!(
            cold_start_order(3, 4),
            [
                (0, 0),
                (1, 0),
                (2, 0),
                (1, 1),
                (2, 1),
                (0, 1),
                (2, 2),
                (0, 2),
                (1, 2),
                (0, 3),
                (1, 3),
                (2, 3),
            ]
        );
        assert_eq!(cold_start_order(3, 0), []);
    }

    #[test]
    fn each_subjects_medians_are_taken_over_its_own_cold_starts_only() {
        let sample = |init, first| ColdSample {
            init: Duration::from_millis(init),
            first: Duration::from_millis(first),
        };
        let order = cold_start_order(2, 2);
        // Taken in `order`: floor, receiver, then receiver, floor.
        let taken = vec![
            sample(30, 1),
            sample(300, 10),
            sample(200, 90),
            sample(20, 9),
        ];
        let samples = samples_by_subject(vec![sample(10, 5), sample(100, 50)], &order, taken);
        assert_eq!(
            samples,
            [
                vec![sample(10, 5), sample(30, 1), sample(20, 9)],
                vec![sample(100, 50), sample(300, 10), sample(200, 90)],
            ]
        );
        let medians = |samples: &[ColdSample]| {
            let mut common = Common {
                function: "f".into(),
                role: Role::Receiver,
                memory_size_mb: "128".into(),
                init_ms: 0.0,
                init_requests: None,
                first_invoke_ms: 0.0,
                init_plus_first_ms: 0.0,
                cold_starts: 0,
                ratio_to_floor: None,
                peak_rss_kb: 0,
            };
            set_cold_figures(&mut common, samples);
            (
                common.init_ms,
                common.first_invoke_ms,
                common.init_plus_first_ms,
                common.cold_starts,
            )
        };
        // init + first is the median of the sums (15, 31, 29), not the
        // sum of the medians (20 + 5).
        assert_eq!(medians(&samples[0]), (20.0, 5.0, 29.0, 3));
        assert_eq!(medians(&samples[1]), (200.0, 50.0, 290.0, 3));
    }

    #[test]
    fn the_processor_is_measured_with_its_own_memory_size() {
        let template: serde_norway::Value = serde_norway::from_str(
            "Globals: {Function: {MemorySize: 128}}\nResources: {EventsProcessorFunction: {Properties: {MemorySize: 256}}}",
        )
        .unwrap();
        assert_eq!(memory_size(&template, Some(PROCESSOR_LOGICAL_ID)), 256);
        assert_eq!(memory_size(&template, Some("Other")), 128);
        assert_eq!(memory_size(&template, None), 128);
    }
}
