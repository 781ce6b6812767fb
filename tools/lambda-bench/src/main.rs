//! `lambda-bench`: each function as Lambda runs it, beside a hello-world floor.
//!
//! Starts the local AWS endpoint (moto) and provisions template.yaml's
//! tables, queues and secrets on it (as `local-stack up` does), puts a
//! counting proxy in front of it, and runs the release binary of each chosen
//! function, as a process, against a stand-in of the Lambda Runtime and
//! Extensions APIs on loopback ([`sandbox`]). It reports, per function:
//!
//! - init: spawn to the runtime's first `next`;
//! - first invoke: the first event handed out to its response posted;
//! - warm answer latency (event handed out to response posted) and warm
//!   invocation duration (to the runtime and every extension back at `next`,
//!   when Lambda would freeze the sandbox), p50 and p99 over N new events;
//! - CPU time per warm invocation (utime + stime from /proc/<pid>/stat),
//!   peak RSS (VmHWM);
//! - AWS requests and sequential round trips before the answer, per new
//!   event and per duplicate, as the proxy saw them.
//!
//! `lambda-floor` (a hello-world `lambda_runtime` function, same profile) is
//! measured in the same run, and each function's init + first invoke is
//! given as a multiple of the floor's.
//!
//! These are x86_64 builds on the machine running the bench, while Lambda
//! runs arm64 (Graviton) builds on a fraction of a vCPU: what transfers is
//! the ratio to the floor and the counts (requests, round trips), not the
//! absolute milliseconds. The local endpoint is moto, whose per-request time
//! (milliseconds, in Python) dominates every latency that includes AWS calls.
//!
//! Bounded: loopback only, fixed counts, a global timeout; moto and every
//! child process are stopped when the bench ends, also on error or timeout.
//!
//! Usage: lambda-bench [--functions a,b,...|all] [--invocations 200]
//!        [--duplicates 50] [--json PATH] [--timeout-secs 900]
//!        [--python .venv/bin/python] [--bin-dir target/release]

mod proxy;
mod sandbox;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use local_stack::events::{self, Sample};
use local_stack::provision::{local_sdk_config, provision, put_demo_secrets, put_revel_secrets};
use local_stack::template::Template;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use proxy::{sequential_round_trips, Call, Proxy};
use sandbox::{Answer, Sandbox};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

const DEFAULT_FUNCTIONS: &[&str] = &[
    "revel-order-finalized",
    "revel-stock-changed",
    "winesitting-webhook",
    "booking-bookings",
    "vinesos-customer-created",
];
const FLOOR: &str = "lambda-floor";
/// The longest any one step (init, an invocation) may take.
const STEP_LIMIT: Duration = Duration::from_secs(15);

const USAGE: &str = "usage: lambda-bench [--functions a,b,...|all] [--invocations 200] [--duplicates 50] [--json PATH] [--timeout-secs 900] [--python .venv/bin/python] [--bin-dir target/release]";

struct Options {
    functions: Vec<String>,
    invocations: usize,
    duplicates: usize,
    json: Option<PathBuf>,
    timeout: Duration,
    python: PathBuf,
    bin_dir: PathBuf,
}

fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn options() -> Result<Options, Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut options = Options {
        functions: DEFAULT_FUNCTIONS.iter().map(|s| s.to_string()).collect(),
        invocations: 200,
        duplicates: 50,
        json: None,
        timeout: Duration::from_secs(900),
        python: std::env::var("LOCAL_AWS_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace_root().join(".venv/bin/python")),
        bin_dir: workspace_root().join("target/release"),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or(format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--functions" => {
                let list = value()?;
                options.functions = if list == "all" {
                    receivers().into_iter().map(|(name, _)| name).collect()
                } else {
                    list.split(',').map(|s| s.trim().to_owned()).collect()
                };
            }
            "--invocations" | "-n" => options.invocations = value()?.parse()?,
            "--duplicates" => options.duplicates = value()?.parse()?,
            "--json" => options.json = Some(PathBuf::from(value()?)),
            "--timeout-secs" => options.timeout = Duration::from_secs(value()?.parse()?),
            "--python" => options.python = PathBuf::from(value()?),
            "--bin-dir" => options.bin_dir = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    if options.invocations == 0 {
        return Err("--invocations must be at least 1".into());
    }
    Ok(options)
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
    let result = match options() {
        Ok(options) => {
            let limit = options.timeout;
            tokio::select! {
                result = tokio::time::timeout(limit, run(options)) => match result {
                    Ok(result) => result,
                    Err(_) => Err(format!("gave up after the global timeout of {limit:?}").into()),
                },
                _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
            }
        }
        Err(e) => Err(e),
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

/// Children die with the bench, even if it is killed.
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

async fn start_moto(python: &Path) -> Result<Moto, Error> {
    let script = workspace_root().join("tools/local_aws.py");
    let mut command = Command::new(python);
    command
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    die_with_parent(&mut command);
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
            let (route, path, headers) = events::request_for(sample.target, &bytes);
            let mut event = events::routed_event("POST", &route, &path, "", &headers, &bytes);
            event["requestContext"]["requestId"] = Value::String(format!("bench-{n}"));
            Ok(event)
        })
        .collect()
}

/// MemorySize of the template function, else the Globals' one.
fn memory_size(template: &serde_norway::Value, logical_id: Option<&str>) -> String {
    let size = |v: Option<&serde_norway::Value>| {
        v.and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
    };
    logical_id
        .and_then(|id| size(template["Resources"][id]["Properties"].get("MemorySize")))
        .or_else(|| size(template["Globals"]["Function"].get("MemorySize")))
        .unwrap_or(128)
        .to_string()
}

#[derive(Debug, Clone, Serialize)]
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Spread {
    median: usize,
    min: usize,
    max: usize,
}

#[derive(Debug, Clone, Serialize)]
struct AwsFigures {
    /// AWS requests made between the event handed out and the answer.
    requests: Spread,
    /// The longest chain of those requests, one after the other.
    round_trips: Spread,
    /// AWS requests still running or started after the answer, before the
    /// invocation ended.
    after_answer: Spread,
    /// The requests of the first such invocation: `→` sequential, `‖` concurrent.
    operations: String,
    /// Answers by status code.
    statuses: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Serialize)]
struct Duplicates {
    count: usize,
    answer: Latency,
    duration: Latency,
    aws: AwsFigures,
}

#[derive(Debug, Clone, Serialize)]
struct Figures {
    function: String,
    memory_size_mb: String,
    extensions: Vec<String>,
    init_ms: f64,
    first_invoke_ms: f64,
    first_invoke_duration_ms: f64,
    init_plus_first_ms: f64,
    /// init + first invoke, less the time an AWS request was in flight:
    /// what the function itself spent, whatever the endpoint's latency.
    own_init_plus_first_ms: f64,
    /// (init + first invoke) / the floor's.
    ratio_to_floor: Option<f64>,
    /// The same, net of the time spent waiting on AWS.
    own_ratio_to_floor: Option<f64>,
    warm_invocations: usize,
    warm_answer: Latency,
    warm_duration: Latency,
    cpu_ms_per_warm_invocation: f64,
    peak_rss_kb: u64,
    new_events: Option<AwsFigures>,
    duplicates: Option<Duplicates>,
}

#[derive(Debug, Clone, Serialize)]
struct Report {
    machine: String,
    invocations: usize,
    duplicates: usize,
    floor: Figures,
    functions: Vec<Figures>,
}

/// One invocation, measured.
struct Measured {
    /// Of the answer's time, how long an AWS request was in flight.
    aws_wait: Duration,
    answer: Duration,
    duration: Duration,
    before: Vec<Call>,
    after: Vec<Call>,
    status: String,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}

fn latency(values: impl Iterator<Item = Duration>) -> Latency {
    let values: Vec<Duration> = values.collect();
    Latency {
        p50_ms: ms(percentile(&values, 0.50)),
        p99_ms: ms(percentile(&values, 0.99)),
    }
}

fn spread(values: impl Iterator<Item = usize>) -> Spread {
    let mut values: Vec<usize> = values.collect();
    values.sort();
    Spread {
        median: values.get(values.len() / 2).copied().unwrap_or(0),
        min: values.first().copied().unwrap_or(0),
        max: values.last().copied().unwrap_or(0),
    }
}

fn operation_name(operation: &str) -> String {
    let (service, name) = operation.split_once('.').unwrap_or(("", operation));
    let service = if service.starts_with("DynamoDB") {
        "DynamoDB"
    } else if service == "AmazonSQS" {
        "SQS"
    } else if service == "secretsmanager" {
        "SecretsManager"
    } else {
        service
    };
    format!("{service} {name}").trim().to_owned()
}

/// `DynamoDB PutItem → DynamoDB UpdateItem ‖ SQS SendMessage`.
fn operations(calls: &[Call]) -> String {
    let mut text = String::new();
    let mut latest_end: Option<Instant> = None;
    for call in calls {
        if let Some(end) = latest_end {
            text.push_str(if call.start >= end { " → " } else { " ‖ " });
        }
        text.push_str(&operation_name(&call.operation));
        if !(200..300).contains(&call.status) {
            text.push_str(&format!(" ({})", call.status));
        }
        latest_end = Some(latest_end.map_or(call.end, |e| e.max(call.end)));
    }
    if text.is_empty() {
        "none".to_owned()
    } else {
        text
    }
}

fn aws_figures(runs: &[Measured]) -> AwsFigures {
    let mut statuses = BTreeMap::new();
    for run in runs {
        *statuses.entry(run.status.clone()).or_insert(0) += 1;
    }
    AwsFigures {
        requests: spread(runs.iter().map(|r| r.before.len())),
        round_trips: spread(runs.iter().map(|r| sequential_round_trips(&r.before))),
        after_answer: spread(runs.iter().map(|r| r.after.len())),
        operations: runs
            .first()
            .map(|r| {
                let mut text = operations(&r.before);
                if !r.after.is_empty() {
                    text.push_str(&format!("; after the answer: {}", operations(&r.after)));
                }
                text
            })
            .unwrap_or_default(),
        statuses,
    }
}

/// utime + stime of `pid`, in milliseconds.
fn cpu_ms(pid: u32) -> Result<f64, Error> {
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

/// A function process in its sandbox.
struct Running<'a> {
    name: String,
    child: Child,
    sandbox: Arc<Sandbox>,
    proxy: &'a Proxy,
    log: PathBuf,
    _server: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Running<'_> {
    async fn invoke(&mut self, event: &Value) -> Result<Measured, Error> {
        // VinesOS signatures are time-limited: signed now, as a sender would.
        let event = events::resign(event.clone());
        let invoked = tokio::select! {
            invoked = self.sandbox.invoke(&event, STEP_LIMIT) => invoked?,
            status = self.child.wait() => {
                return Err(format!("{} exited ({status:?}); see {}", self.name, self.log.display()).into())
            }
        };
        // A request the answer waited for ended before it; one still running
        // when the answer was posted (even if started before) is not on the
        // answer's path.
        let (before, after): (Vec<Call>, Vec<Call>) = self
            .proxy
            .calls_started_between(invoked.handed_out, invoked.ended)
            .into_iter()
            .partition(|c| c.end <= invoked.answered);
        let status = match &invoked.answer {
            Answer::Response(body) => serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v["statusCode"].as_u64())
                .map_or_else(|| "no statusCode".to_owned(), |s| s.to_string()),
            Answer::Error(body) => format!("error {body}"),
        };
        let aws_wait = proxy::waiting(&before, invoked.handed_out, invoked.answered);
        Ok(Measured {
            aws_wait,
            answer: invoked.answered - invoked.handed_out,
            duration: invoked.ended - invoked.handed_out,
            before,
            after,
            status,
        })
    }
}

struct Setup {
    proxy: Proxy,
    env: BTreeMap<String, String>,
    template: serde_norway::Value,
    log_dir: PathBuf,
    bin_dir: PathBuf,
}

async fn measure(
    setup: &Setup,
    name: &str,
    logical_id: Option<&str>,
    events: &[Value],
    duplicates: usize,
) -> Result<Figures, Error> {
    let binary = setup.bin_dir.join(name);
    let sandbox = Sandbox::new(name);
    let (address, server) = sandbox::serve(&sandbox).await?;
    let memory = memory_size(&setup.template, logical_id);
    let log = setup.log_dir.join(format!("{name}.log"));
    let log_file = std::fs::File::create(&log)?;
    let mut command = Command::new(&binary);
    command
        .env_clear()
        .envs(&setup.env)
        .env("AWS_LAMBDA_RUNTIME_API", &address)
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", &memory)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "lambda-bench")
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
        .env("_HANDLER", "bootstrap")
        .env("LAMBDA_TASK_ROOT", &setup.bin_dir)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_SESSION_TOKEN", "local")
        .env("AWS_ENDPOINT_URL", &setup.proxy.endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("TZ", ":UTC")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true);
    die_with_parent(&mut command);
    setup.proxy.clear();
    let spawned = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let pid = child.id().ok_or("the function exited at once")?;
    let mut running = Running {
        name: name.to_owned(),
        child,
        sandbox: Arc::clone(&sandbox),
        proxy: &setup.proxy,
        log: log.clone(),
        _server: AbortOnDrop(server),
    };
    let init_done = tokio::select! {
        at = sandbox.wait_init(STEP_LIMIT) => at?,
        status = running.child.wait() => {
            return Err(format!("{name} exited during init ({status:?}); see {}", log.display()).into())
        }
    };
    let init = init_done - spawned;
    let init_aws_wait = proxy::waiting(
        &setup.proxy.calls_started_between(spawned, init_done),
        spawned,
        init_done,
    );

    let (first_event, warm_events) = events.split_first().ok_or("no events")?;
    let first = running.invoke(first_event).await?;
    let cpu_before = cpu_ms(pid)?;
    let mut warm = Vec::with_capacity(warm_events.len());
    for event in warm_events {
        warm.push(running.invoke(event).await?);
    }
    let cpu_after = cpu_ms(pid)?;
    let mut dups = Vec::with_capacity(duplicates);
    for i in 0..duplicates {
        dups.push(running.invoke(&events[i % events.len()]).await?);
    }
    let peak_rss_kb = peak_rss_kb(pid)?;
    let extensions = sandbox
        .extensions()
        .into_iter()
        .map(|(name, invoke)| {
            if invoke {
                name
            } else {
                format!("{name} (no INVOKE)")
            }
        })
        .collect();
    sandbox.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = running.child.kill().await;

    let is_floor = logical_id.is_none();
    let mut new_runs = vec![first];
    let first_ref = &new_runs[0];
    let (first_invoke, first_duration) = (first_ref.answer, first_ref.duration);
    let own_init_plus_first =
        (init + first_invoke).saturating_sub(init_aws_wait + first_ref.aws_wait);
    new_runs.extend(warm);
    let warm_runs = &new_runs[1..];
    Ok(Figures {
        function: name.to_owned(),
        memory_size_mb: memory,
        extensions,
        init_ms: ms(init),
        first_invoke_ms: ms(first_invoke),
        first_invoke_duration_ms: ms(first_duration),
        init_plus_first_ms: ms(init + first_invoke),
        own_init_plus_first_ms: ms(own_init_plus_first),
        ratio_to_floor: None,
        own_ratio_to_floor: None,
        warm_invocations: warm_runs.len(),
        warm_answer: latency(warm_runs.iter().map(|r| r.answer)),
        warm_duration: latency(warm_runs.iter().map(|r| r.duration)),
        cpu_ms_per_warm_invocation: ((cpu_after - cpu_before) / warm_runs.len().max(1) as f64
            * 1000.0)
            .round()
            / 1000.0,
        peak_rss_kb,
        new_events: (!is_floor).then(|| aws_figures(&new_runs)),
        duplicates: (!is_floor && !dups.is_empty()).then(|| Duplicates {
            count: dups.len(),
            answer: latency(dups.iter().map(|r| r.answer)),
            duration: latency(dups.iter().map(|r| r.duration)),
            aws: aws_figures(&dups),
        }),
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
    let missing: Vec<String> = std::iter::once(FLOOR.to_owned())
        .chain(chosen.iter().map(|(n, _)| n.clone()))
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

    eprintln!("lambda-bench: starting the local AWS endpoint");
    let moto = start_moto(&options.python).await?;
    let sdk = local_sdk_config(&moto.endpoint).await;
    let template_path = local_stack::template::default_path();
    let template = Template::load(&template_path)?;
    let mut provisioned = provision(&sdk, &template, "bench").await?;
    put_revel_secrets(
        &sdk,
        &provisioned,
        &local_stack::demo_revel_secret_document(),
    )
    .await?;
    put_demo_secrets(&sdk, &provisioned).await?;
    provisioned
        .env
        .insert("PATH".to_owned(), "/usr/bin:/bin".to_owned());
    let proxy = Proxy::start(&moto.endpoint).await?;
    let log_dir = workspace_root().join("target/lambda-bench");
    std::fs::create_dir_all(&log_dir)?;
    let setup = Setup {
        proxy,
        env: provisioned.env.clone(),
        template: serde_norway::from_str(&std::fs::read_to_string(&template_path)?)?,
        log_dir,
        bin_dir: options.bin_dir.clone(),
    };

    let count = options.invocations + 1;
    let mut functions = Vec::new();
    let mut floor: Option<Figures> = None;
    for (name, sample) in &chosen {
        let events = new_events(sample, count)?;
        if floor.is_none() {
            eprintln!("lambda-bench: {FLOOR} (the floor)");
            floor = Some(measure(&setup, FLOOR, None, &events, 0).await?);
        }
        eprintln!("lambda-bench: {name}");
        functions.push(
            measure(
                &setup,
                name,
                Some(sample.target.logical_id()),
                &events,
                options.duplicates,
            )
            .await?,
        );
    }
    let floor = floor.ok_or("no functions chosen")?;
    for figures in &mut functions {
        figures.ratio_to_floor =
            Some((figures.init_plus_first_ms / floor.init_plus_first_ms * 100.0).round() / 100.0);
        figures.own_ratio_to_floor = Some(
            (figures.own_init_plus_first_ms / floor.own_init_plus_first_ms * 100.0).round() / 100.0,
        );
    }
    let report = Report {
        machine: machine(),
        invocations: options.invocations,
        duplicates: options.duplicates,
        floor,
        functions,
    };
    print!("{}", markdown(&report));
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")?;
        eprintln!("lambda-bench: wrote {}", path.display());
    }
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

fn show(spread: &Spread) -> String {
    if spread.min == spread.max {
        spread.median.to_string()
    } else {
        format!("{} ({}–{})", spread.median, spread.min, spread.max)
    }
}

fn statuses(map: &BTreeMap<String, usize>) -> String {
    map.iter()
        .map(|(status, n)| format!("{status} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let f = &report.floor;
    out.push_str(&format!(
        "Machine: {}. {} warm new events and {} duplicates per function, after the first invoke.\n\n",
        report.machine, report.invocations, report.duplicates
    ));
    out.push_str("| function | MB | init ms | first invoke ms | init + first ms | × floor | same, less AWS wait ms | × floor | warm answer p50 / p99 ms | warm invocation p50 / p99 ms | CPU ms / warm invocation | peak RSS MB |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for figures in std::iter::once(f).chain(&report.functions) {
        let label = if figures.new_events.is_none() {
            format!("{} (floor)", figures.function)
        } else {
            figures.function.clone()
        };
        out.push_str(&format!(
            "| {label} | {} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {:.3} | {:.1} |\n",
            figures.memory_size_mb,
            figures.init_ms,
            figures.first_invoke_ms,
            figures.init_plus_first_ms,
            figures
                .ratio_to_floor
                .map_or_else(|| "1.00".to_owned(), |r| format!("{r:.2}")),
            figures.own_init_plus_first_ms,
            figures
                .own_ratio_to_floor
                .map_or_else(|| "1.00".to_owned(), |r| format!("{r:.2}")),
            figures.warm_answer.p50_ms,
            figures.warm_answer.p99_ms,
            figures.warm_duration.p50_ms,
            figures.warm_duration.p99_ms,
            figures.cpu_ms_per_warm_invocation,
            figures.peak_rss_kb as f64 / 1024.0,
        ));
    }
    out.push_str(&format!(
        "\nAnswer = event handed out → response posted; invocation = → the runtime and every extension back at `next` (Lambda's billed duration). CPU = utime + stime of the process over the warm invocations, in clock ticks of {} ms. Peak RSS = VmHWM at the end.\n",
        1000 / clock_ticks_per_second()
    ));
    out.push_str(
        "\nAWS requests per invocation made between the event handed out and the answer (median, (min–max) when they differ); sequential round trips = the longest chain of them, each started after the previous ended; after the answer = requests still running when the answer was posted or started after it, before the invocation ended.\n\n",
    );
    out.push_str("| function | new: requests | new: sequential round trips | new: requests after the answer | new: answers | duplicate answer p50 / p99 ms | duplicate: requests | duplicate: sequential round trips | duplicate: answers | extensions |\n");
    out.push_str("|---|---:|---:|---:|---|---:|---:|---:|---|---|\n");
    for figures in &report.functions {
        let (Some(new), dup) = (&figures.new_events, &figures.duplicates) else {
            continue;
        };
        let (dup_latency, dup_requests, dup_rounds, dup_statuses) = match dup {
            Some(d) => (
                format!("{:.2} / {:.2}", d.answer.p50_ms, d.answer.p99_ms),
                show(&d.aws.requests),
                show(&d.aws.round_trips),
                statuses(&d.aws.statuses),
            ),
            None => ("–".into(), "–".into(), "–".into(), "–".into()),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {dup_latency} | {dup_requests} | {dup_rounds} | {dup_statuses} | {} |\n",
            figures.function,
            show(&new.requests),
            show(&new.round_trips),
            show(&new.after_answer),
            statuses(&new.statuses),
            if figures.extensions.is_empty() {
                "none".to_owned()
            } else {
                figures.extensions.join(", ")
            },
        ));
    }
    out.push_str("\nRequests of the first new event and of the first duplicate (→ one after the other, ‖ concurrent):\n\n");
    for figures in &report.functions {
        if let Some(new) = &figures.new_events {
            out.push_str(&format!("- {}: new: {}", figures.function, new.operations));
            if let Some(dup) = &figures.duplicates {
                out.push_str(&format!("; duplicate: {}", dup.aws.operations));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn percentiles_are_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&values, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&values[..1], 0.99), Duration::from_millis(1));
    }
}
