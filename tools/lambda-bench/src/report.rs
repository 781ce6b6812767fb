//! The figures `lambda-bench` measures, their statistics, and the report.

use std::collections::BTreeMap;
use std::time::Duration;

use lambda_sandbox::proxy::{sequential_round_trips, Call};
use serde::Serialize;

use crate::{cost, CpuClock, Role};

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub median: usize,
    pub min: usize,
    pub max: usize,
}

/// What the invocations of one kind (new events, duplicates) asked of AWS.
#[derive(Debug, Clone, Serialize)]
pub struct AwsFigures {
    /// AWS requests made between the event handed out and the answer.
    pub requests: Spread,
    /// The longest chain of those requests, one after the other.
    pub round_trips: Spread,
    /// AWS requests still running when the answer was posted or started
    /// after it, before the runtime was back at `next`.
    pub after_answer: Spread,
    /// The requests of the first such invocation: `→` sequential, `‖` concurrent.
    pub operations: String,
    /// Answers by status code.
    pub statuses: BTreeMap<String, usize>,
    /// Requests per invocation by operation (`AmazonSQS.SendMessage`),
    /// before the answer and after, on average.
    pub per_operation: BTreeMap<String, f64>,
}

/// One invocation, measured.
pub struct Measured {
    pub answer: Duration,
    pub duration: Duration,
    /// AWS requests that ended before the answer was posted.
    pub before: Vec<Call>,
    /// AWS requests that didn't.
    pub after: Vec<Call>,
    /// The answer's `statusCode`, or what it was instead.
    pub status: String,
    /// The response, parsed (none for an error or a response that isn't JSON).
    pub response: Option<serde_json::Value>,
}

/// What every function (and the floor) is measured by.
#[derive(Debug, Clone, Serialize)]
pub struct Common {
    pub function: String,
    pub role: Role,
    pub memory_size_mb: String,
    /// Spawn to the runtime's first `next`.
    pub init_ms: f64,
    /// AWS requests made during init (reading secrets, say); none where
    /// the endpoint doesn't count them.
    pub init_requests: Option<usize>,
    /// The first event handed out to its answer posted.
    pub first_invoke_ms: f64,
    pub init_plus_first_ms: f64,
    /// Cold starts init and first invoke are the medians of (the first
    /// with the run's first event, each other with a new event of its own).
    pub cold_starts: usize,
    /// (init + first invoke) / the floor's.
    pub ratio_to_floor: Option<f64>,
    pub peak_rss_kb: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Duplicates {
    pub count: usize,
    pub answer: Latency,
    pub aws: AwsFigures,
}

/// A receiver, or the floor (no AWS figures).
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverFigures {
    #[serde(flatten)]
    pub common: Common,
    pub warm_invocations: usize,
    pub warm_answer: Latency,
    /// Event handed out to the runtime back at `next` (Lambda's billed duration).
    pub warm_duration: Latency,
    pub cpu_ms_per_warm_invocation: f64,
    pub cpu_clock: CpuClock,
    /// The first event's body, in bytes (what API Gateway meters).
    pub body_bytes: usize,
    /// DynamoDB units per new event and per duplicate, where the stand-in
    /// counted them (first invoke included).
    pub units_per_new_event: Option<UnitFigures>,
    pub units_per_duplicate: Option<UnitFigures>,
    /// Duplicates' invocation duration (Lambda's billed duration).
    pub duplicate_duration: Option<Latency>,
    /// Threads that ended while the warm invocations ran (what they used
    /// is missing from the CPU figure; 0 in every run so far).
    pub cpu_threads_ended: usize,
    /// Answers by status code, counted or not.
    pub new_statuses: BTreeMap<String, usize>,
    pub duplicate_statuses: BTreeMap<String, usize>,
    pub new_events: Option<AwsFigures>,
    pub duplicates: Option<Duplicates>,
}

/// The events processor, fed the events table's stream in batches.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessorFigures {
    #[serde(flatten)]
    pub common: Common,
    /// Batches measured (those after the first; the first alone when there
    /// is only one) and the records they held.
    pub measured_batches: usize,
    pub measured_records: usize,
    pub batch_answer: Latency,
    /// Measured batches' answer time over their records.
    pub ms_per_record: f64,
    /// Measured batches' AWS requests over their records.
    pub requests_per_record: f64,
    /// The longest chain of sequential requests per batch.
    pub round_trips_per_batch: Spread,
    /// Requests by operation over the measured batches.
    pub operations: BTreeMap<String, OperationFigures>,
    pub cpu_ms_per_record: f64,
    /// Records the processor reported as failed, in every batch.
    pub failed_records: usize,
}

/// DynamoDB read and write request units per event, as on-demand bills them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UnitFigures {
    pub read: f64,
    pub write: f64,
}

impl UnitFigures {
    /// Units consumed between two readings, per event.
    pub fn per_event(
        from: lambda_sandbox::stand_in::Units,
        to: lambda_sandbox::stand_in::Units,
        events: usize,
    ) -> Self {
        let per = |a: f64, b: f64| ((b - a) / events.max(1) as f64 * 1000.0).round() / 1000.0;
        Self {
            read: per(from.read, to.read),
            write: per(from.write, to.write),
        }
    }
}

/// One AWS operation's requests: how many, and how long the endpoint took.
#[derive(Debug, Clone, Serialize)]
pub struct OperationFigures {
    pub count: usize,
    pub latency: Latency,
}

/// Requests by operation.
pub fn by_operation<'a>(
    calls: impl Iterator<Item = &'a Call>,
) -> BTreeMap<String, OperationFigures> {
    let mut times: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for call in calls {
        times
            .entry(call.operation.clone())
            .or_default()
            .push(call.end - call.start);
    }
    times
        .into_iter()
        .map(|(operation, times)| {
            let figures = OperationFigures {
                count: times.len(),
                latency: latency(times.into_iter()),
            };
            (operation, figures)
        })
        .collect()
}

/// One run of the floor, the receivers and the reference on one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    /// `moto`, `stand-in HTTP`, `stand-in HTTPS`.
    pub endpoint: String,
    pub figures: Vec<ReceiverFigures>,
}

/// What the report says about the run as a whole.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub machine: String,
    pub invocations: usize,
    pub duplicates: usize,
    /// The clock tick, should a CPU figure have been read in ticks.
    pub clock_tick_ms: i64,
    /// The Python reference's interpreter (`3.11`).
    pub python_version: String,
}

/// The endpoint whose run gives the timing figures when there is one (the
/// function's own time); moto's otherwise.
pub const TIMING_ENDPOINT: &str = "stand-in HTTP";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub context: Context,
    /// Which run the timing figures (floor, receivers, reference) are from;
    /// the AWS requests and round trips are always moto's, behind the proxy.
    pub timing_endpoint: String,
    pub floor: ReceiverFigures,
    pub receivers: Vec<ReceiverFigures>,
    pub reference: Option<ReceiverFigures>,
    pub budgets: Vec<Budgets>,
    pub processor: Option<ProcessorFigures>,
    /// Every run as measured, the counting run (moto) first.
    pub runs: Vec<RunFigures>,
}

fn set_ratio_to_floor(common: &mut Common, floor_ms: f64) {
    common.ratio_to_floor = Some((common.init_plus_first_ms / floor_ms * 100.0).round() / 100.0);
}

/// The report from the runs (the counting run first): timing figures from
/// the stand-in over HTTP when it ran, each with the counted run's AWS
/// requests; ratios to the floor; budgets.
pub fn assemble(
    context: Context,
    mut runs: Vec<RunFigures>,
    processor: Option<ProcessorFigures>,
) -> Result<Report, crate::Error> {
    for run in &mut runs {
        let floor = run
            .figures
            .iter()
            .find(|f| f.common.role == Role::Floor)
            .map(|f| f.common.init_plus_first_ms)
            .ok_or("a run without the floor")?;
        for figures in &mut run.figures {
            if figures.common.role != Role::Floor {
                set_ratio_to_floor(&mut figures.common, floor);
            }
        }
    }
    let counted = runs.first().ok_or("no runs")?;
    let timing = runs
        .iter()
        .find(|r| r.endpoint == TIMING_ENDPOINT)
        .unwrap_or(counted);
    let mut figures = timing.figures.clone();
    for f in &mut figures {
        if let Some(c) = counted
            .figures
            .iter()
            .find(|c| c.common.function == f.common.function)
        {
            f.common.init_requests = c.common.init_requests;
            f.new_events = c.new_events.clone();
            f.duplicates = c.duplicates.clone();
        }
    }
    let processor = processor.map(|mut p| {
        if let Some(floor) = counted
            .figures
            .iter()
            .find(|f| f.common.role == Role::Floor)
        {
            set_ratio_to_floor(&mut p.common, floor.common.init_plus_first_ms);
        }
        p
    });
    let of = |role: Role| figures.iter().filter(move |f| f.common.role == role);
    let floor = of(Role::Floor).next().cloned().ok_or("no floor")?;
    let receivers: Vec<ReceiverFigures> = of(Role::Receiver).cloned().collect();
    let reference = of(Role::Reference).next().cloned();
    let budgets = receivers
        .iter()
        .map(|r| budgets(r, &floor, reference.as_ref()))
        .collect();
    Ok(Report {
        context,
        timing_endpoint: timing.endpoint.clone(),
        floor,
        receivers,
        reference,
        budgets,
        processor,
        runs,
    })
}

/// A figure against its budget, both raw (ms).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub figure_ms: f64,
    pub limit_ms: f64,
    pub met: bool,
}

impl Verdict {
    /// `figure` within `limit` (equal is met).
    pub fn at_most(figure_ms: f64, limit_ms: f64) -> Self {
        Self {
            figure_ms,
            limit_ms,
            met: figure_ms <= limit_ms,
        }
    }

    /// `met: 1/41.2 (12.00 ≤ 16.50 ms, 4.50 ms under)`, with `decimals`.
    fn show(&self, ratio: &str, decimals: usize) -> String {
        let margin = (self.limit_ms - self.figure_ms).abs();
        let (verdict, sign, side) = if self.met {
            ("met", "≤", "under")
        } else {
            ("missed", ">", "over")
        };
        format!(
            "{verdict}: {ratio} ({:.decimals$} {sign} {:.decimals$} ms, {margin:.decimals$} ms {side})",
            self.figure_ms, self.limit_ms
        )
    }
}

/// The budgets: init + first invoke ≤ 3× the floor's and ≤ 1/30 of
/// the reference's; warm CPU per new event ≤ 1/4 of the reference's.
pub const FLOOR_MULTIPLE: f64 = 3.0;
pub const REFERENCE_INIT_FRACTION: f64 = 1.0 / 30.0;
pub const REFERENCE_CPU_FRACTION: f64 = 1.0 / 4.0;

/// One receiver's budgets, on the raw figures.
#[derive(Debug, Clone, Serialize)]
pub struct Budgets {
    pub function: String,
    /// init + first invoke against 3× the floor's.
    pub init_to_floor: Verdict,
    /// init + first invoke against 1/30 of the reference's.
    pub init_to_reference: Option<Verdict>,
    /// CPU per warm new event against 1/4 of the reference's.
    pub cpu_to_reference: Option<Verdict>,
}

pub fn budgets(
    receiver: &ReceiverFigures,
    floor: &ReceiverFigures,
    reference: Option<&ReceiverFigures>,
) -> Budgets {
    let init = receiver.common.init_plus_first_ms;
    Budgets {
        function: receiver.common.function.clone(),
        init_to_floor: Verdict::at_most(init, floor.common.init_plus_first_ms * FLOOR_MULTIPLE),
        init_to_reference: reference
            .map(|r| Verdict::at_most(init, r.common.init_plus_first_ms * REFERENCE_INIT_FRACTION)),
        cpu_to_reference: reference.map(|r| {
            Verdict::at_most(
                receiver.cpu_ms_per_warm_invocation,
                r.cpu_ms_per_warm_invocation * REFERENCE_CPU_FRACTION,
            )
        }),
    }
}

/// The share of invocations that are cold starts in the cost table: an
/// assumption (AWS reports under 1% in production), stated beside it.
pub const COLD_SHARE: f64 = 0.01;

/// Requests per invocation of the operations named `prefix…`.
fn requests(per_operation: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    per_operation
        .iter()
        .filter(|(op, _)| op.starts_with(prefix))
        .map(|(_, n)| n)
        .sum()
}

/// One receiver's (or the reference's) part in an event, as priced.
fn scenario(
    name: String,
    figures: &ReceiverFigures,
    duration: &Latency,
    aws: &AwsFigures,
    units: Option<UnitFigures>,
) -> cost::Scenario {
    let c = &figures.common;
    let units = units.unwrap_or(UnitFigures {
        read: 0.0,
        write: 0.0,
    });
    cost::Scenario {
        name,
        api_requests_per_event: 1.0,
        api_request_bytes: figures.body_bytes as u64,
        invocations: vec![cost::Invocation {
            memory_mb: c.memory_size_mb.parse().unwrap_or(128),
            duration_ms: duration.p50_ms,
            init_ms: c.init_ms,
            cold_share: COLD_SHARE,
            per_event: 1.0,
        }],
        write_units_per_event: units.write,
        read_units_per_event: units.read,
        sqs_fifo_requests_per_event: requests(&aws.per_operation, "AmazonSQS.Send"),
        // The SQS payload taken as the event's body (one 64 KB chunk here).
        sqs_payload_bytes: figures.body_bytes as u64,
        // Init's requests are its secret reads, once per cold start.
        secrets_calls_per_event: requests(&aws.per_operation, "secretsmanager.")
            + c.init_requests.unwrap_or(0) as f64 * COLD_SHARE,
    }
}

/// The cost table's rows: each receiver's new event, the order's
/// duplicate, the reference's new event and duplicate, and the events
/// processor per record.
pub fn cost_scenarios(report: &Report) -> Vec<cost::Scenario> {
    let mut rows = Vec::new();
    for f in &report.receivers {
        if let Some(new) = &f.new_events {
            rows.push(scenario(
                format!("{}: new", f.common.function),
                f,
                &f.warm_duration,
                new,
                f.units_per_new_event,
            ));
        }
    }
    let duplicate = |f: &ReceiverFigures| {
        let d = f.duplicates.as_ref()?;
        Some(scenario(
            format!("{}: duplicate", f.common.function),
            f,
            f.duplicate_duration.as_ref()?,
            &d.aws,
            f.units_per_duplicate,
        ))
    };
    rows.extend(
        report
            .receivers
            .iter()
            .filter(|f| f.common.function == crate::REFERENCE_OF)
            .filter_map(duplicate),
    );
    if let Some(r) = &report.reference {
        if let Some(new) = &r.new_events {
            rows.push(scenario(
                format!("{}: new", r.common.function),
                r,
                &r.warm_duration,
                new,
                r.units_per_new_event,
            ));
        }
        rows.extend(duplicate(r));
    }
    if let Some(p) = &report.processor {
        let records_per_batch = p.measured_records as f64 / p.measured_batches.max(1) as f64;
        let per_record = |prefix: &str| {
            p.operations
                .iter()
                .filter(|(op, _)| op.starts_with(prefix))
                .map(|(_, o)| o.count as f64)
                .sum::<f64>()
                / p.measured_records.max(1) as f64
        };
        rows.push(cost::Scenario {
            name: format!("{}: per record", p.common.function),
            api_requests_per_event: 0.0,
            api_request_bytes: 0,
            invocations: vec![cost::Invocation {
                memory_mb: p.common.memory_size_mb.parse().unwrap_or(128),
                duration_ms: p.batch_answer.p50_ms,
                init_ms: p.common.init_ms,
                cold_share: COLD_SHARE,
                per_event: 1.0 / records_per_batch.max(1.0),
            }],
            write_units_per_event: 0.0,
            read_units_per_event: 0.0,
            sqs_fifo_requests_per_event: per_record("AmazonSQS.Send"),
            sqs_payload_bytes: 1024,
            secrets_calls_per_event: per_record("secretsmanager."),
        });
    }
    rows
}

/// `a` as a multiple of `b`, or as a fraction `1/n` of it when smaller.
fn relative(a: f64, b: f64) -> String {
    if b <= 0.0 || a <= 0.0 {
        "–".to_owned()
    } else if a >= b {
        format!("{:.2}×", a / b)
    } else {
        format!("1/{:.1}", b / a)
    }
}

/// Answers by status code.
pub fn statuses_of(runs: &[Measured]) -> BTreeMap<String, usize> {
    let mut statuses = BTreeMap::new();
    for run in runs {
        *statuses.entry(run.status.clone()).or_insert(0) += 1;
    }
    statuses
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

pub fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}

pub fn latency(values: impl Iterator<Item = Duration>) -> Latency {
    let values: Vec<Duration> = values.collect();
    Latency {
        p50_ms: ms(percentile(&values, 0.50)),
        p99_ms: ms(percentile(&values, 0.99)),
    }
}

pub fn spread(values: impl Iterator<Item = usize>) -> Spread {
    let mut values: Vec<usize> = values.collect();
    values.sort();
    Spread {
        median: values.get(values.len() / 2).copied().unwrap_or(0),
        min: values.first().copied().unwrap_or(0),
        max: values.last().copied().unwrap_or(0),
    }
}

/// `DynamoDB_20120810.PutItem` as `DynamoDB PutItem`.
pub fn operation_name(operation: &str) -> String {
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

/// `DynamoDB PutItem → DynamoDB PutItem (400)`.
pub fn operations(calls: &[Call]) -> String {
    let mut text = String::new();
    let mut latest_end = None;
    for call in calls {
        if let Some(end) = latest_end {
            text.push_str(if call.start >= end { " → " } else { " ‖ " });
        }
        text.push_str(&operation_name(&call.operation));
        if !(200..300).contains(&call.status) {
            text.push_str(&format!(" ({})", call.status));
        }
        latest_end = Some(latest_end.map_or(call.end, |e: std::time::Instant| e.max(call.end)));
    }
    if text.is_empty() {
        "none".to_owned()
    } else {
        text
    }
}

pub fn aws_figures(runs: &[Measured]) -> AwsFigures {
    let statuses = statuses_of(runs);
    let per_operation = by_operation(runs.iter().flat_map(|r| r.before.iter().chain(&r.after)))
        .into_iter()
        .map(|(op, f)| (op, f.count as f64 / runs.len().max(1) as f64))
        .collect();
    AwsFigures {
        per_operation,
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

fn ratio(common: &Common) -> String {
    common
        .ratio_to_floor
        .map_or_else(|| "1.00".to_owned(), |r| format!("{r:.2}"))
}

fn label(figures: &ReceiverFigures, python_version: &str) -> String {
    let c = &figures.common;
    match c.role {
        Role::Floor => format!("{} (floor)", c.function),
        Role::Reference => match c.function.strip_suffix(')') {
            Some(open) => format!("{open}, Python {python_version})"),
            None => format!("{} (Python {python_version})", c.function),
        },
        Role::Receiver => c.function.clone(),
    }
}

fn endpoint_note(endpoint: &str) -> String {
    match endpoint {
        "moto" => "moto behind the recording proxy (milliseconds of Python per request)".to_owned(),
        "stand-in HTTP" => {
            "the in-process stand-in over HTTP (microseconds per request: the function's own time)"
                .to_owned()
        }
        other => other.to_owned(),
    }
}

/// init, first invoke and warm answers of each function on each endpoint,
/// and what TLS adds to init + first invoke.
fn endpoints_table(report: &Report) -> String {
    let mut out = String::from(
        "\nThe same functions and events on each endpoint (init / first invoke / init + first, ms, medians of the cold starts; warm answer p50, ms). Over HTTPS the functions trust the system's roots with the stand-in's CA appended (SSL_CERT_FILE, AWS_CA_BUNDLE), so they parse as many roots as over HTTP, where the Rust SDK loads the system's roots at init all the same:\n\n| function |",
    );
    for run in &report.runs {
        out.push_str(&format!(
            " {0}: init / first / init + first | {0}: warm answer p50 |",
            run.endpoint
        ));
    }
    let http = report.runs.iter().find(|r| r.endpoint == "stand-in HTTP");
    let https = report.runs.iter().find(|r| r.endpoint == "stand-in HTTPS");
    let tls = http.is_some() && https.is_some();
    if tls {
        out.push_str(" TLS adds to init + first (HTTPS − HTTP) |");
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|---:|".repeat(report.runs.len()));
    if tls {
        out.push_str("---:|");
    }
    out.push('\n');
    let find = |run: &RunFigures, name: &str| {
        run.figures
            .iter()
            .find(|f| f.common.function == name)
            .cloned()
    };
    for figures in report.runs[0].figures.iter() {
        let name = &figures.common.function;
        out.push_str(&format!("| {name} |"));
        for run in &report.runs {
            match find(run, name) {
                Some(f) => out.push_str(&format!(
                    " {:.2} / {:.2} / {:.2} | {:.2} |",
                    f.common.init_ms,
                    f.common.first_invoke_ms,
                    f.common.init_plus_first_ms,
                    f.warm_answer.p50_ms
                )),
                None => out.push_str(" – | – |"),
            }
        }
        if let (Some(http), Some(https)) = (http, https) {
            match (find(http, name), find(https, name)) {
                (Some(a), Some(b)) => out.push_str(&format!(
                    " {:+.2} |",
                    b.common.init_plus_first_ms - a.common.init_plus_first_ms
                )),
                _ => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }
    out
}

fn cpu_note(report: &Report) -> String {
    let rows = std::iter::once(&report.floor)
        .chain(&report.receivers)
        .chain(&report.reference);
    let ticks: Vec<&str> = rows
        .clone()
        .filter(|f| f.cpu_clock == CpuClock::Ticks)
        .map(|f| f.common.function.as_str())
        .collect();
    let ended: Vec<String> = rows
        .filter(|f| f.cpu_threads_ended > 0)
        .map(|f| format!("{} ({})", f.common.function, f.cpu_threads_ended))
        .collect();
    let mut note = if ticks.is_empty() {
        "CPU = time on CPU over the warm invocations, summed over the process's threads, from /proc/<pid>/task/*/schedstat (ns)".to_owned()
    } else {
        format!(
            "CPU = time on CPU over the warm invocations, summed over the process's threads, from /proc/<pid>/task/*/schedstat (ns), except {}: utime + stime from /proc/<pid>/stat in clock ticks of {} ms (no schedstat)",
            ticks.join(", "),
            report.context.clock_tick_ms
        )
    };
    if !ended.is_empty() {
        note.push_str(&format!(
            "; threads that ended meanwhile, whose CPU is missing: {}",
            ended.join(", ")
        ));
    }
    note
}

pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Machine: {}. {} warm new events and {} duplicates per receiver, after the first invoke.\n\n",
        report.context.machine, report.context.invocations, report.context.duplicates
    ));
    out.push_str("| function | MB | init ms | AWS requests in init | first invoke ms | init + first ms | × floor | warm answer p50 / p99 ms | warm invocation p50 / p99 ms | CPU ms / warm invocation | peak RSS MB |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for figures in std::iter::once(&report.floor)
        .chain(&report.receivers)
        .chain(&report.reference)
    {
        let c = &figures.common;
        out.push_str(&format!(
            "| {} | {} | {:.2} | {} | {:.2} | {:.2} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {:.3} | {:.1} |\n",
            label(figures, &report.context.python_version),
            c.memory_size_mb,
            c.init_ms,
            c.init_requests.map_or_else(|| "–".to_owned(), |n| n.to_string()),
            c.first_invoke_ms,
            c.init_plus_first_ms,
            ratio(c),
            figures.warm_answer.p50_ms,
            figures.warm_answer.p99_ms,
            figures.warm_duration.p50_ms,
            figures.warm_duration.p99_ms,
            figures.cpu_ms_per_warm_invocation,
            c.peak_rss_kb as f64 / 1024.0,
        ));
    }
    out.push_str(&format!(
        "\nAWS endpoint of these figures: {}. Answer = event handed out → response posted; invocation = → the runtime back at `next` (Lambda's billed duration). Init = spawn → the runtime's first `next`; first invoke = its answer; each the median of {} cold starts (init + first: the median of their sums), each with a new event, the further ones interleaved across the functions round-robin (each round starting one function further on) so drift cancels in the ratios. Raw figures: nothing subtracted (the endpoint's time is in them). AWS requests in init: counted on moto. {}. Peak RSS = VmHWM at the end. The Python reference is bench/python-reference/handler.py (boto3, Powertools' idempotency on DynamoDB, the order sent to the jobs queue) run by awslambdaric, as Lambda's Python images run it, on {}'s events.\n",
        endpoint_note(&report.timing_endpoint),
        report.floor.common.cold_starts,
        cpu_note(report),
        crate::REFERENCE_OF,
    ));
    if report.runs.len() > 1 {
        out.push_str(&endpoints_table(report));
    }
    if !report.budgets.is_empty() {
        let reference = report.reference.as_ref();
        out.push_str(&format!(
            "\nBudgets, on the raw figures above: init + first invoke ≤ {}× the floor's and ≤ 1/{:.0} of the Python reference's; CPU per warm new event ≤ 1/{:.0} of the reference's{}.\n\n",
            FLOOR_MULTIPLE,
            1.0 / REFERENCE_INIT_FRACTION,
            1.0 / REFERENCE_CPU_FRACTION,
            reference.map_or_else(
                || " (no reference measured: --no-reference)".to_owned(),
                |r| format!(
                    " ({:.2} ms and {:.3} ms CPU for the reference)",
                    r.common.init_plus_first_ms, r.cpu_ms_per_warm_invocation
                )
            ),
        ));
        out.push_str("| receiver | init + first ≤ 3× floor | init + first ≤ 1/30 of the reference | CPU / warm new event ≤ 1/4 of the reference |\n");
        out.push_str("|---|---|---|---|\n");
        let floor = report.floor.common.init_plus_first_ms;
        for b in &report.budgets {
            let to_reference = |v: &Option<Verdict>, of: f64, decimals: usize| {
                v.as_ref().map_or_else(
                    || "–".to_owned(),
                    |v| v.show(&relative(v.figure_ms, of), decimals),
                )
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                b.function,
                b.init_to_floor
                    .show(&relative(b.init_to_floor.figure_ms, floor), 2),
                to_reference(
                    &b.init_to_reference,
                    reference.map_or(0.0, |r| r.common.init_plus_first_ms),
                    2
                ),
                to_reference(
                    &b.cpu_to_reference,
                    reference.map_or(0.0, |r| r.cpu_ms_per_warm_invocation),
                    3
                ),
            ));
        }
    }
    out.push_str(
        "\nThe ack path, counted on moto behind the recording proxy: AWS requests per invocation between the event handed out and the answer (median, (min–max) when they differ); sequential round trips = the longest chain of them, each started after the previous ended; after the answer = requests running or started after the answer was posted. DynamoDB units per event as the stand-in billed them (first invoke included; a refused conditional write is billed).\n\n",
    );
    out.push_str("| receiver | new: AWS requests | new: sequential round trips | new: requests after the answer | new: answers | new: DynamoDB write / read units | duplicate: AWS requests | duplicate: sequential round trips | duplicate: answers | duplicate: DynamoDB write / read units | duplicate answer p50 / p99 ms |\n");
    out.push_str("|---|---:|---:|---:|---|---:|---:|---:|---|---:|---:|\n");
    let units = |u: &Option<UnitFigures>| {
        u.map_or_else(|| "–".to_owned(), |u| format!("{} / {}", u.write, u.read))
    };
    let counted = || report.receivers.iter().chain(&report.reference);
    for figures in counted() {
        let Some(new) = &figures.new_events else {
            continue;
        };
        let (dup_requests, dup_rounds, dup_statuses, dup_latency) = match &figures.duplicates {
            Some(d) => (
                show(&d.aws.requests),
                show(&d.aws.round_trips),
                statuses(&d.aws.statuses),
                format!("{:.2} / {:.2}", d.answer.p50_ms, d.answer.p99_ms),
            ),
            None => ("–".into(), "–".into(), "–".into(), "–".into()),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {dup_requests} | {dup_rounds} | {dup_statuses} | {} | {dup_latency} |\n",
            figures.common.function,
            show(&new.requests),
            show(&new.round_trips),
            show(&new.after_answer),
            statuses(&new.statuses),
            units(&figures.units_per_new_event),
            units(&figures.units_per_duplicate),
        ));
    }
    out.push_str("\nRequests of the first new event and of the first duplicate (→ one after the other, ‖ concurrent):\n\n");
    for figures in counted() {
        if let Some(new) = &figures.new_events {
            out.push_str(&format!(
                "- {}: new: {}",
                figures.common.function, new.operations
            ));
            if let Some(dup) = &figures.duplicates {
                out.push_str(&format!("; duplicate: {}", dup.aws.operations));
            }
            out.push('\n');
        }
    }
    let scenarios = cost_scenarios(report);
    if !scenarios.is_empty() {
        let costed: Vec<cost::Costed> = scenarios.iter().map(cost::per_million).collect();
        let units = report
            .receivers
            .iter()
            .chain(&report.reference)
            .any(|f| f.units_per_new_event.is_some());
        out.push_str(&format!(
            "\nCost per million events, us-east-1 list prices (first tier, no free tier), from the figures above: one API Gateway HTTP API request of the event's body; the function's invocation at its memory size and warm invocation p50 (duplicates: theirs), {:.0}% of them cold starts billed with their init (an assumption); {}; SQS FIFO sends and Secrets Manager calls as counted on moto (init's reads once per cold start). The receivers' rows are their ack path: what the events processor does later for a record is its own row (its DynamoDB writes not measured: it runs on moto).\n\n",
            COLD_SHARE * 100.0,
            if units {
                "DynamoDB units as the stand-in billed them (a refused conditional write included)"
            } else {
                "DynamoDB units not measured (no stand-in run): 0 in the table"
            },
        ));
        out.push_str(&cost::table(&costed));
    }
    if let Some(p) = &report.processor {
        let c = &p.common;
        out.push_str("\nThe events processor, fed what the receivers above left on the events table's stream, in the event source mapping's batches (the first batch is its first invoke; the rest are measured, or the first alone when there is only one):\n\n");
        out.push_str("| function | MB | init ms | first batch ms | init + first ms | × floor | batches / records measured | batch answer p50 / p99 ms | ms / record | AWS requests / record | sequential round trips / batch | CPU ms / record | peak RSS MB | failed records |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {} | {} / {} | {:.2} / {:.2} | {:.3} | {:.2} | {} | {:.3} | {:.1} | {} |\n",
            c.function,
            c.memory_size_mb,
            c.init_ms,
            c.first_invoke_ms,
            c.init_plus_first_ms,
            ratio(c),
            p.measured_batches,
            p.measured_records,
            p.batch_answer.p50_ms,
            p.batch_answer.p99_ms,
            p.ms_per_record,
            p.requests_per_record,
            show(&p.round_trips_per_batch),
            p.cpu_ms_per_record,
            c.peak_rss_kb as f64 / 1024.0,
            p.failed_records,
        ));
        let operations: Vec<String> = p
            .operations
            .iter()
            .map(|(op, f)| {
                format!(
                    "{} ×{} ({:.2} / {:.2} ms p50 / p99 each, as the proxy timed them)",
                    operation_name(op),
                    f.count,
                    f.latency.p50_ms,
                    f.latency.p99_ms
                )
            })
            .collect();
        out.push_str(&format!(
            "\nThe processor's requests over the measured batches: {}.\n",
            operations.join("; ")
        ));
    }
    out
}

/// Peak RSS budgets: every receiver at most 8 MB on the samples, the order
/// receiver at most 16 MB when it answers a body at the 1 MiB limit
/// (`body_limit`: body bytes, answer, peak kB). MB here are MiB, as in
/// Lambda's own `Max Memory Used` and the table above; peak RSS is VmHWM.
pub const RSS_BUDGET_SAMPLES_MB: f64 = 8.0;
pub const RSS_BUDGET_BODY_LIMIT_MB: f64 = 16.0;

pub fn memory_budgets(report: &Report, body_limit: Option<(usize, String, u64)>) -> String {
    let mb = |kb: u64| kb as f64 / 1024.0;
    // Margins in KiB: a peak a few KiB either side of a budget must not
    // round to "0.00".
    let verdict = |value: f64, budget: f64| {
        let margin_kib = ((budget - value) * 1024.0).round();
        if margin_kib >= 0.0 {
            format!("met by {margin_kib} KiB")
        } else {
            format!("missed by {} KiB", -margin_kib)
        }
    };
    let mut out = String::from(
        "\nPeak RSS (VmHWM, MB = MiB) against its budgets, on the timing run:\n\n| receiver | body | answer | peak RSS MB | budget MB | verdict |\n|---|---:|---|---:|---:|---|\n",
    );
    for figures in &report.receivers {
        let peak = mb(figures.common.peak_rss_kb);
        out.push_str(&format!(
            "| {} | {} B (sample) | {} | {:.2} | {:.0} | {} |\n",
            figures.common.function,
            figures.body_bytes,
            statuses(&figures.new_statuses),
            peak,
            RSS_BUDGET_SAMPLES_MB,
            verdict(peak, RSS_BUDGET_SAMPLES_MB)
        ));
    }
    if let Some((bytes, answer, kb)) = body_limit {
        let peak = mb(kb);
        out.push_str(&format!(
            "| revel-order-finalized, a fresh process | {bytes} B (at the 1 MiB limit) | {answer} | {peak:.2} | {:.0} | {} |\n",
            RSS_BUDGET_BODY_LIMIT_MB,
            verdict(peak, RSS_BUDGET_BODY_LIMIT_MB)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&values, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&values[..1], 0.99), Duration::from_millis(1));
    }

    #[test]
    fn a_budget_is_met_at_its_limit_and_missed_just_past_it_with_the_margin_on_the_raw_figure() {
        let met = Verdict::at_most(9.0, 9.0);
        assert!(met.met);
        assert_eq!(
            met.show("3.00×", 2),
            "met: 3.00× (9.00 ≤ 9.00 ms, 0.00 ms under)"
        );
        let missed = Verdict::at_most(12.6, 9.0);
        assert!(!missed.met);
        assert_eq!(
            missed.show("4.20×", 2),
            "missed: 4.20× (12.60 > 9.00 ms, 3.60 ms over)"
        );
    }

    fn figures(role: Role, init_plus_first_ms: f64, cpu_ms: f64) -> ReceiverFigures {
        ReceiverFigures {
            common: Common {
                function: format!("{role:?}"),
                role,
                memory_size_mb: "128".into(),
                init_ms: init_plus_first_ms,
                init_requests: None,
                first_invoke_ms: 0.0,
                init_plus_first_ms,
                cold_starts: 1,
                ratio_to_floor: None,
                peak_rss_kb: 0,
            },
            warm_invocations: 1,
            warm_answer: Latency {
                p50_ms: 0.0,
                p99_ms: 0.0,
            },
            warm_duration: Latency {
                p50_ms: 0.0,
                p99_ms: 0.0,
            },
            cpu_ms_per_warm_invocation: cpu_ms,
            cpu_clock: CpuClock::Schedstat,
            body_bytes: 0,
            units_per_new_event: None,
            units_per_duplicate: None,
            duplicate_duration: None,
            cpu_threads_ended: 0,
            new_statuses: BTreeMap::new(),
            duplicate_statuses: BTreeMap::new(),
            new_events: None,
            duplicates: None,
        }
    }

    #[test]
    fn budgets_are_three_times_the_floor_a_thirtieth_of_the_reference_and_a_quarter_of_its_cpu() {
        let floor = figures(Role::Floor, 5.0, 0.1);
        let reference = figures(Role::Reference, 600.0, 2.0);
        let receiver = figures(Role::Receiver, 16.0, 0.6);
        let b = budgets(&receiver, &floor, Some(&reference));
        assert_eq!(b.init_to_floor, Verdict::at_most(16.0, 15.0));
        assert!(!b.init_to_floor.met);
        assert_eq!(b.init_to_reference, Some(Verdict::at_most(16.0, 20.0)));
        assert!(b.init_to_reference.unwrap().met);
        let cpu = b.cpu_to_reference.unwrap();
        assert_eq!((cpu.limit_ms, cpu.met), (0.5, false));
        assert!(budgets(&receiver, &floor, None).cpu_to_reference.is_none());
    }

    fn counted(figures: &mut ReceiverFigures, operations: &[(&str, f64)]) {
        let aws = AwsFigures {
            requests: spread([3].into_iter()),
            round_trips: spread([3].into_iter()),
            after_answer: spread([0].into_iter()),
            operations: String::new(),
            statuses: BTreeMap::new(),
            per_operation: operations
                .iter()
                .map(|(o, n)| (o.to_string(), *n))
                .collect(),
        };
        figures.common.init_requests = Some(1);
        figures.new_events = Some(aws.clone());
        figures.duplicates = Some(Duplicates {
            count: 1,
            answer: Latency {
                p50_ms: 1.0,
                p99_ms: 1.0,
            },
            aws,
        });
    }

    fn context() -> Context {
        Context {
            machine: "m".into(),
            invocations: 1,
            duplicates: 1,
            clock_tick_ms: 10,
            python_version: "3.11".into(),
        }
    }

    #[test]
    fn timing_comes_from_the_stand_in_over_http_and_counts_from_moto() {
        let mut moto_reference = figures(Role::Reference, 900.0, 3.0);
        counted(&mut moto_reference, &[("AmazonSQS.SendMessage", 1.0)]);
        let moto = RunFigures {
            endpoint: "moto".into(),
            figures: vec![figures(Role::Floor, 5.0, 0.1), moto_reference],
        };
        let timing = |endpoint: &str, reference_ms: f64| RunFigures {
            endpoint: endpoint.into(),
            figures: vec![
                figures(Role::Floor, 4.0, 0.1),
                figures(Role::Reference, reference_ms, 2.0),
            ],
        };
        let report = assemble(
            context(),
            vec![
                moto,
                timing("stand-in HTTP", 600.0),
                timing("stand-in HTTPS", 700.0),
            ],
            None,
        )
        .unwrap();
        assert_eq!(report.timing_endpoint, "stand-in HTTP");
        let reference = report.reference.unwrap();
        assert_eq!(reference.common.init_plus_first_ms, 600.0);
        assert_eq!(reference.common.ratio_to_floor, Some(150.0));
        assert_eq!(reference.common.init_requests, Some(1));
        assert_eq!(
            reference.new_events.unwrap().per_operation["AmazonSQS.SendMessage"],
            1.0
        );
        assert_eq!(report.runs[0].figures[1].common.ratio_to_floor, Some(180.0));
    }

    #[test]
    fn without_the_stand_in_moto_gives_the_timing_too() {
        let report = assemble(
            context(),
            vec![RunFigures {
                endpoint: "moto".into(),
                figures: vec![
                    figures(Role::Floor, 5.0, 0.1),
                    figures(Role::Receiver, 10.0, 0.2),
                ],
            }],
            None,
        )
        .unwrap();
        assert_eq!(report.timing_endpoint, "moto");
        assert_eq!(report.budgets.len(), 1);
        assert!(report.budgets[0].init_to_floor.met);
        assert!(report.budgets[0].init_to_reference.is_none());
    }

    #[test]
    fn the_references_cost_counts_its_sqs_send_and_its_units_and_a_receivers_its_own() {
        let mut reference = figures(Role::Reference, 600.0, 2.0);
        counted(
            &mut reference,
            &[
                ("AmazonSQS.SendMessage", 1.0),
                ("DynamoDB_20120810.PutItem", 1.0),
            ],
        );
        reference.units_per_new_event = Some(UnitFigures {
            read: 0.0,
            write: 2.0,
        });
        reference.body_bytes = 9_300;
        let mut receiver = figures(Role::Receiver, 10.0, 0.2);
        receiver.common.function = crate::REFERENCE_OF.into();
        counted(&mut receiver, &[("DynamoDB_20120810.PutItem", 1.0)]);
        receiver.units_per_new_event = Some(UnitFigures {
            read: 0.0,
            write: 4.0,
        });
        receiver.duplicate_duration = Some(Latency {
            p50_ms: 0.4,
            p99_ms: 0.5,
        });
        let report = assemble(
            context(),
            vec![RunFigures {
                endpoint: "moto".into(),
                figures: vec![figures(Role::Floor, 5.0, 0.1), receiver, reference],
            }],
            None,
        )
        .unwrap();
        let rows = cost_scenarios(&report);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "revel-order-finalized: new",
                "revel-order-finalized: duplicate",
                "Reference: new"
            ],
            "the reference has no duplicate duration here, so no duplicate row"
        );
        assert_eq!(rows[0].write_units_per_event, 4.0);
        assert_eq!(rows[0].sqs_fifo_requests_per_event, 0.0);
        assert_eq!(rows[2].write_units_per_event, 2.0);
        assert_eq!(rows[2].sqs_fifo_requests_per_event, 1.0);
        assert_eq!(rows[2].api_request_bytes, 9_300);
        assert!((rows[2].secrets_calls_per_event - COLD_SHARE).abs() < 1e-12);
    }

    #[test]
    fn ratios_read_as_multiples_above_one_and_fractions_below() {
        assert_eq!(relative(12.6, 3.0), "4.20×");
        assert_eq!(relative(10.0, 412.0), "1/41.2");
        assert_eq!(relative(1.0, 0.0), "–");
    }

    #[test]
    fn operations_show_chained_and_concurrent_requests_and_failed_statuses() {
        let t = std::time::Instant::now();
        let call = |operation: &str, start: u64, end: u64, status: u16| Call {
            start: t + Duration::from_millis(start),
            end: t + Duration::from_millis(end),
            operation: operation.into(),
            status,
            refused: false,
            body: Default::default(),
        };
        let calls = [
            call("DynamoDB_20120810.PutItem", 0, 5, 400),
            call("DynamoDB_20120810.PutItem", 6, 9, 200),
            call("AmazonSQS.SendMessage", 7, 10, 200),
        ];
        assert_eq!(
            operations(&calls),
            "DynamoDB PutItem (400) → DynamoDB PutItem ‖ SQS SendMessage"
        );
        assert_eq!(operations(&[]), "none");
    }
}
