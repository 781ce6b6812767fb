//! `local-stack load`: a bounded load generator for the running local stack
//! (`make local`; `make bench-load` starts one of its own).
//!
//! It sends `--count` signed deliveries (10,000), `--repeat-percent` of them
//! (30) byte-for-byte repeats of earlier ones, from `--concurrency` (32)
//! senders, to the stack's routes on loopback (nothing else is accepted). A
//! 5xx answer, or none within `--timeout-seconds`, is retried the way Revel
//! does: after a pause that doubles from 1 s (at least `Retry-After`, at
//! most 30 s), at most `--max-attempts` (8) sends, about 100 s in all. Then
//! it reads the events table on the local AWS endpoint and checks that every
//! distinct event is stored exactly once (status `received`), every repeat
//! was answered with its original's event id, and no 2xx was answered for an
//! event that is not stored.
//!
//! Every shape sent carries an identity (a business key), so a byte-for-byte
//! repeat is the same event and "stored exactly once" is exact. Bodies with
//! none (Revel's stock toggles and menu pushes without `X-Revel-Event-Id`)
//! are an event per request by design (a repeat of the same bytes is a new
//! record, which the processor collapses), so they are not in the mix; a
//! test holds every shape to a business key. The whole run, check included,
//! ends within `--max-seconds` (900: moto, the local endpoint, serves about 20-30 deliveries a second).
//!
//! Every id in the run carries a marker unique to the run (`lt<time><random>-`),
//! and every event key embeds the id, so the run's records are found by the
//! marker even in a table that holds earlier runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use ports::store::EventStatus;
use serde_json::Value;
use time::OffsetDateTime;
use vendors::booking::BookingFamily;
use vendors::revel::RevelEventType;
use vendors::vinesos::VinesOsEvent;

use crate::events::{self};
use crate::{Error, DEMO_VINESOS_SECRET};
use vendors::functions::Kind;

/// Time kept back from sending for reading the table back.
const CHECK_RESERVE: Duration = Duration::from_secs(30);
/// Longest pause between attempts, whatever `Retry-After` says.
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// Half of the repeats are of one of this many most recent events, likely
/// still in flight (a retry racing its original); the rest of any earlier one.
const RECENT: usize = 64;

/// `local-stack load`'s flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Options {
    /// Deliveries to send, repeats included.
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = whole::<usize>(1, None))]
    pub count: usize,
    /// The share of them that are byte-for-byte repeats of earlier ones,
    /// in percent (0 to 99).
    #[arg(long, value_name = "PERCENT", default_value_t = 30,
          value_parser = whole::<usize>(0, Some(99)))]
    pub repeat_percent: usize,
    /// Senders at once.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = whole::<usize>(1, None))]
    pub concurrency: usize,
    /// The stack to send to, on loopback [default: the running stack's,
    /// from --state].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The whole run's limit, the check included (at least 10).
    #[arg(long, value_name = "N", default_value_t = 900,
          value_parser = whole::<u64>(10, None))]
    pub max_seconds: u64,
    /// How long an answer may take before the delivery is sent again.
    #[arg(long = "timeout-seconds", value_name = "N", default_value = "30",
          value_parser = |raw: &str| whole::<u64>(1, None)(raw).map(Duration::from_secs))]
    pub timeout: Duration,
    /// Sends per delivery at most, the first included.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = whole::<u32>(1, None))]
    pub max_attempts: u32,
    /// What `local-stack up` recorded of the running stack.
    #[arg(long = "state", value_name = "PATH", default_value = crate::STATE_FILE)]
    pub state_file: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            count: 10_000,
            repeat_percent: 30,
            concurrency: 32,
            url: None,
            max_seconds: 900,
            timeout: Duration::from_secs(30),
            max_attempts: 8,
            state_file: PathBuf::from(crate::STATE_FILE),
        }
    }
}

/// A clap value parser: a whole number from `min` (to `max`).
fn whole<T>(min: T, max: Option<T>) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync,
{
    move |raw| {
        let n: T = raw
            .parse()
            .map_err(|_| format!("{raw:?} is not a whole number"))?;
        match max {
            Some(max) if n < min || n > max => Err(format!("must be {min} to {max}")),
            None if n < min => Err(format!("must be at least {min}")),
            _ => Ok(n),
        }
    }
}

impl Options {
    /// The flags after `load`, as `local-stack load` reads them.
    pub fn parse(args: &[String]) -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        #[command(name = "local-stack load")]
        struct Load {
            #[command(flatten)]
            options: Options,
        }
        let args = std::iter::once("load").chain(args.iter().map(String::as_str));
        <Load as clap::Parser>::try_parse_from(args).map(|load| load.options)
    }

    fn repeats(&self) -> usize {
        self.count * self.repeat_percent / 100
    }
}

/// `raw` as a URL, refused unless it names a loopback address.
pub fn loopback_url(raw: &str) -> Result<reqwest::Url, Error> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !matches!(url.scheme(), "http" | "https") || !loopback {
        return Err(
            format!("{raw} is not a loopback http URL: load is only sent to this machine").into(),
        );
    }
    Ok(url)
}

/// The sample shapes sent, out of every 20 distinct events: 10 Revel orders,
/// 3 + 3 Revel customers, one each of the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Shape {
    Order,
    CustomerCreated,
    CustomerUpdated,
    RewardCard,
    VinesOsCustomer,
    BookingCustomer,
    WineSittingOrder,
}

impl Shape {
    fn of(n: usize) -> Self {
        match n % 20 {
            0..=9 => Self::Order,
            10..=12 => Self::CustomerCreated,
            13..=15 => Self::CustomerUpdated,
            16 => Self::RewardCard,
            17 => Self::VinesOsCustomer,
            18 => Self::BookingCustomer,
            _ => Self::WineSittingOrder,
        }
    }

    const ALL: [Self; 7] = [
        Self::Order,
        Self::CustomerCreated,
        Self::CustomerUpdated,
        Self::RewardCard,
        Self::VinesOsCustomer,
        Self::BookingCustomer,
        Self::WineSittingOrder,
    ];

    fn target(self) -> Kind {
        match self {
            Self::Order => Kind::Revel(RevelEventType::OrderFinalized),
            Self::CustomerCreated => Kind::Revel(RevelEventType::CustomerCreated),
            Self::CustomerUpdated => Kind::Revel(RevelEventType::CustomerUpdated),
            Self::RewardCard => Kind::Revel(RevelEventType::RewardCardCreated),
            Self::VinesOsCustomer => Kind::VinesOs(VinesOsEvent::CustomerCreated),
            Self::BookingCustomer => Kind::Booking(BookingFamily::Customers),
            Self::WineSittingOrder => Kind::WineSitting,
        }
    }

    /// Its payload in events/payloads.
    fn payload(self) -> &'static str {
        match self {
            Self::Order => "order-finalized.json",
            Self::CustomerCreated | Self::CustomerUpdated => "customer.json",
            Self::RewardCard => "rewardcard-created.json",
            Self::VinesOsCustomer => "vinesos-customer-created.json",
            Self::BookingCustomer => "booking-customers.json",
            Self::WineSittingOrder => "winesitting-order.json",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Order => "revel order.finalized",
            Self::CustomerCreated => "revel customer.created",
            Self::CustomerUpdated => "revel customer.updated",
            Self::RewardCard => "revel rewardcard.created",
            Self::VinesOsCustomer => "vinesos customer.created",
            Self::BookingCustomer => "booking customers",
            Self::WineSittingOrder => "winesitting order",
        }
    }

    /// The sample `template` made a new event: id `id`, dated `at`.
    fn body(self, template: &Value, id: &str, n: usize, at: OffsetDateTime) -> Value {
        let mut body = template.clone();
        let (naive, rfc3339) = (revel_date(at), format!("{}Z", revel_date(at)));
        match self {
            Self::Order => {
                body["orderInfo"]["uuid"] = id.into();
                body["orderInfo"]["updated_date"] = naive.into();
            }
            Self::CustomerCreated | Self::CustomerUpdated => {
                body["uuid"] = id.into();
                body["id"] = (10_000_000 + n).into();
                body["updated_date"] = naive.into();
            }
            Self::RewardCard => {
                body["id"] = id.into();
                body["number"] = id.into();
                body["updated_date"] = naive.into();
            }
            Self::VinesOsCustomer => {
                body["id"] = format!("evt_{id}").into();
                body["occurred_at"] = rfc3339.into();
                body["data"]["id"] = format!("VOS-C-{id}").into();
            }
            Self::BookingCustomer => {
                body["notification"]["occurred_at"] = rfc3339.into();
                body["data"]["id"] = format!("CU-{id}").into();
            }
            Self::WineSittingOrder => {
                body["object"]["id"] = format!("WS-{id}").into();
                body["object"]["updated_at"] = rfc3339.clone().into();
                body["date"] = rfc3339.into();
            }
        }
        body
    }
}

/// Revel's `updated_date` form (no zone, UTC), with microseconds.
fn revel_date(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// One distinct event: its request, signed as its sender signs it.
struct Event {
    shape: Shape,
    path: String,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Event {
    /// The headers of a send now: VinesOS signs each attempt with its time
    /// (Standard Webhooks; the webhook id stays); the others are fixed.
    fn headers_now(&self) -> Vec<(String, String)> {
        match self.shape.target() {
            Kind::VinesOs(_) => events::vinesos_headers(
                DEMO_VINESOS_SECRET,
                &self.body,
                OffsetDateTime::now_utc().unix_timestamp(),
            ),
            _ => self.headers.clone(),
        }
    }
}

fn build_events(dir: &Path, run: &str, distinct: usize) -> Result<Vec<Event>, Error> {
    let mut templates = HashMap::new();
    for shape in Shape::ALL {
        let path = dir.join("payloads").join(shape.payload());
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        templates.insert(shape, serde_json::from_str::<Value>(&text)?);
    }
    let start = OffsetDateTime::now_utc().replace_nanosecond(0)?;
    (0..distinct)
        .map(|n| {
            let shape = Shape::of(n);
            let id = format!("{run}{n:06}");
            let at = start + Duration::from_millis(n as u64);
            let body = serde_json::to_vec(&shape.body(&templates[&shape], &id, n, at))?;
            let (_, path, headers) = events::request_for(shape.target(), &body);
            Ok(Event {
                shape,
                path,
                body,
                headers,
            })
        })
        .collect()
}

/// Which distinct event each delivery carries, in sending order, and whether
/// it repeats an earlier delivery: exactly `repeats` repeats, each of an event
/// scheduled before it.
fn schedule(count: usize, repeats: usize, rng: &mut fastrand::Rng) -> Vec<(usize, bool)> {
    let (mut new_left, mut repeats_left) = (count - repeats, repeats);
    let mut next = 0;
    let mut order = Vec::with_capacity(count);
    while new_left + repeats_left > 0 {
        let repeat = next > 0 && rng.usize(0..new_left + repeats_left) < repeats_left;
        if repeat {
            let of = if rng.bool() {
                next - 1 - rng.usize(0..next.min(RECENT))
            } else {
                rng.usize(0..next)
            };
            order.push((of, true));
            repeats_left -= 1;
        } else {
            order.push((next, false));
            next += 1;
            new_left -= 1;
        }
    }
    order
}

/// An answer, as far as the check needs it.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    /// The body's `status` (`accepted`, `duplicate`) or `error`.
    outcome: String,
    event_id: Option<String>,
}

impl Answer {
    fn parse(status: u16, body: &str) -> Self {
        let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let outcome = body["status"]
            .as_str()
            .or(body["error"].as_str())
            .or(body["message"].as_str())
            .unwrap_or("-")
            .to_owned();
        Self {
            status,
            outcome,
            event_id: body["event_id"].as_str().map(str::to_owned),
        }
    }

    fn label(&self) -> String {
        format!("{} {}", self.status, self.outcome)
    }

    fn is_2xx(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One HTTP request: its answer's label (or why there was none) and latency.
struct Attempt {
    label: String,
    answered: bool,
    latency: Duration,
}

/// One delivery, after its last attempt.
struct Delivered {
    index: usize,
    attempts: Vec<Attempt>,
    /// The last answer, if any attempt got one.
    answer: Option<Answer>,
    /// Retrying stopped at the run's deadline.
    cut: bool,
}

fn retryable(status: u16) -> bool {
    status == 429 || status >= 500
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(MAX_PAUSE)
}

async fn deliver(
    http: &reqwest::Client,
    url: &str,
    event: &Event,
    index: usize,
    options: &Options,
    deadline: Instant,
) -> Delivered {
    let mut delivered = Delivered {
        index,
        attempts: Vec::new(),
        answer: None,
        cut: false,
    };
    for attempt in 1..=options.max_attempts {
        let now = Instant::now();
        if now >= deadline {
            delivered.cut = true;
            break;
        }
        let mut request = http
            .post(url)
            .timeout(options.timeout.min(deadline - now))
            .body(event.body.clone());
        for (name, value) in event.headers_now() {
            request = request.header(name, value);
        }
        let started = Instant::now();
        let result = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            Ok::<_, reqwest::Error>((status, retry_after, response.text().await?))
        }
        .await;
        let latency = started.elapsed();
        let pause = match result {
            Ok((status, retry_after, text)) => {
                let answer = Answer::parse(status, &text);
                delivered.attempts.push(Attempt {
                    label: answer.label(),
                    answered: true,
                    latency,
                });
                delivered.answer = Some(answer);
                if !retryable(status) {
                    break;
                }
                retry_after
                    .unwrap_or_default()
                    .max(backoff(attempt))
                    .min(MAX_PAUSE)
            }
            Err(error) => {
                let why = if error.is_timeout() {
                    "no answer (timeout)"
                } else {
                    "no answer (connection error)"
                };
                delivered.attempts.push(Attempt {
                    label: why.to_owned(),
                    answered: false,
                    latency,
                });
                backoff(attempt)
            }
        };
        if attempt == options.max_attempts {
            break;
        }
        if Instant::now() + pause >= deadline {
            delivered.cut = true;
            break;
        }
        tokio::time::sleep(pause).await;
    }
    delivered
}

/// The run's records in the events table: event key to status.
async fn stored_records(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    marker: &str,
) -> Result<(usize, BTreeMap<String, String>), Error> {
    let (mut items, mut records) = (0, BTreeMap::new());
    let mut start = None;
    loop {
        let page = dynamodb
            .scan()
            .table_name(table)
            .filter_expression("contains(event_key, :run)")
            .projection_expression("event_key, #status")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":run", AttributeValue::S(marker.to_owned()))
            .set_exclusive_start_key(start)
            .send()
            .await?;
        for item in page.items() {
            let text = |name: &str| {
                item.get(name)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default()
            };
            items += 1;
            records.insert(text("event_key"), text("status"));
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    Ok((items, records))
}

/// Records `count` problems of one kind, with a few examples.
fn note(problems: &mut Vec<String>, count: usize, what: &str, examples: Vec<String>) {
    if count > 0 {
        let shown: Vec<String> = examples.into_iter().take(3).collect();
        problems.push(format!("{count} {what} (e.g. {})", shown.join("; ")));
    }
}

/// The distinct events sent, and what the check found wrong (nothing when
/// the run passed).
fn check(
    events: &[Event],
    order: &[(usize, bool)],
    delivered: &[Delivered],
    stored_items: usize,
    stored: &BTreeMap<String, String>,
) -> (usize, Vec<String>) {
    let mut problems = Vec::new();
    // The event ids each distinct event was answered 2xx with.
    let mut ids: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let mut sent: BTreeSet<usize> = BTreeSet::new();
    let mut quarantined = Vec::new();
    for d in delivered {
        let (event, _) = order[d.index];
        sent.insert(event);
        if let Some(answer) = d.answer.as_ref().filter(|a| a.is_2xx()) {
            if answer.status != 200 {
                quarantined.push(format!("{} -> {}", events[event].path, answer.label()));
            }
            if let Some(id) = &answer.event_id {
                ids.entry(event).or_default().insert(id.clone());
            }
        }
    }
    note(
        &mut problems,
        quarantined.len(),
        "2xx answers other than 200 (every body sent is valid)",
        quarantined,
    );
    let unacknowledged: Vec<String> = sent
        .iter()
        .filter(|e| !ids.contains_key(e))
        .map(|e| {
            let last = delivered
                .iter()
                .rev()
                .filter(|d| order[d.index].0 == *e)
                .find_map(|d| d.attempts.last().map(|a| a.label.clone()))
                .unwrap_or_default();
            let cut = delivered.iter().any(|d| order[d.index].0 == *e && d.cut);
            let cut = if cut { ", stopped by the deadline" } else { "" };
            format!(
                "{} event #{e}: last answer {last}{cut}",
                events[*e].shape.label()
            )
        })
        .collect();
    note(
        &mut problems,
        unacknowledged.len(),
        "distinct events never answered 2xx",
        unacknowledged,
    );
    let split: Vec<String> = ids
        .iter()
        .filter(|(_, set)| set.len() > 1)
        .map(|(e, set)| format!("event #{e}: {set:?}"))
        .collect();
    note(
        &mut problems,
        split.len(),
        "events answered with more than one event_id",
        split,
    );
    let mut owner: HashMap<&str, usize> = HashMap::new();
    let mut shared_ids = Vec::new();
    for (e, set) in &ids {
        for id in set {
            if let Some(other) = owner.insert(id.as_str(), *e) {
                shared_ids.push(format!("#{other} and #{e}: {id}"));
            }
        }
    }
    note(
        &mut problems,
        shared_ids.len(),
        "event_ids shared by two distinct events",
        shared_ids,
    );
    // Every 2xx stored, and stored as received (not quarantined).
    let answered: BTreeSet<&String> = ids.values().flatten().collect();
    let missing: Vec<String> = answered
        .iter()
        .filter(|id| !stored.contains_key(**id))
        .map(|id| id.to_string())
        .collect();
    note(
        &mut problems,
        missing.len(),
        "event_ids answered 2xx but not stored",
        missing,
    );
    let unfinished: Vec<String> = stored
        .iter()
        .filter(|(_, status)| EventStatus::parse(status) != Some(EventStatus::Received))
        .map(|(key, status)| format!("{key}: {status}"))
        .collect();
    note(
        &mut problems,
        unfinished.len(),
        "stored records not `received`",
        unfinished,
    );
    let unanswered: Vec<String> = stored
        .keys()
        .filter(|key| !answered.contains(key))
        .cloned()
        .collect();
    note(
        &mut problems,
        unanswered.len(),
        "stored records no answer named",
        unanswered,
    );
    if stored_items != sent.len() {
        problems.push(format!(
            "{stored_items} records stored for the run, {} distinct events sent",
            sent.len()
        ));
    }
    // Every repeat answered 200 duplicate/accepted with its original's id.
    let bad_repeats: Vec<String> = delivered
        .iter()
        .filter(|d| order[d.index].1)
        .filter_map(|d| {
            let event = order[d.index].0;
            let original = ids.get(&event).and_then(|set| set.first());
            let answer = d.answer.as_ref();
            let good = answer.is_some_and(|a| {
                a.status == 200
                    && matches!(a.outcome.as_str(), "duplicate" | "accepted")
                    && a.event_id.as_ref() == original
            });
            (!good).then(|| {
                format!(
                    "delivery {} of event #{event}: {}",
                    d.index,
                    answer.map_or_else(|| "no answer".to_owned(), Answer::label)
                )
            })
        })
        .collect();
    note(
        &mut problems,
        bad_repeats.len(),
        "repeats not answered 200 duplicate/accepted with the original's event_id",
        bad_repeats,
    );
    (sent.len(), problems)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn latency_line(mut latencies: Vec<Duration>) -> String {
    latencies.sort();
    format!(
        "p50 {}, p99 {}, max {} ({} requests)",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        latencies.len()
    )
}

/// `local-stack load [flags]`: sends, checks, reports. Fails when the check does.
pub async fn run(options: Options) -> Result<(), Error> {
    let begun = Instant::now();
    let deadline = begun + Duration::from_secs(options.max_seconds);
    let send_deadline = deadline - CHECK_RESERVE.min(Duration::from_secs(options.max_seconds / 4));
    let stack = crate::RunningStack::read(&options.state_file)?;
    let events_table = stack.var("EVENTS_TABLE")?.to_owned();
    let base = loopback_url(options.url.as_deref().unwrap_or(&stack.url))?;
    loopback_url(&stack.endpoint)?;

    let run = format!(
        "lt{:x}{:04x}-",
        OffsetDateTime::now_utc().unix_timestamp(),
        fastrand::u16(..)
    );
    let repeats = options.repeats();
    let events = Arc::new(build_events(
        &events::default_dir(),
        &run,
        options.count - repeats,
    )?);
    let order = Arc::new(schedule(options.count, repeats, &mut fastrand::Rng::new()));
    println!(
        "local-stack load: {} signed deliveries ({}% repeats) to {} at concurrency {}, run marker {run:?}",
        options.count,
        options.repeat_percent,
        base.as_str().trim_end_matches('/'),
        options.concurrency
    );
    println!(
        "NOTE: the stack's AWS endpoint is moto ({}), a Python server that handles one request at a time;\n      every delivery costs one conditional DynamoDB put on it, so throughput and latency here are\n      bounded by moto, not by the functions (and a stack running its processor and worker shares moto with them).",
        stack.endpoint
    );
    println!(
        "      timeout {} s per request, 5xx/no answer retried after max(Retry-After, 1 s doubling) up to 30 s, at most {} attempts; whole run at most {} s",
        options.timeout.as_secs(),
        options.max_attempts,
        options.max_seconds
    );

    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(options.concurrency)
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let options = Arc::new(options);
    let sending = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..options.concurrency {
        let (http, base, events, order) =
            (http.clone(), base.clone(), events.clone(), order.clone());
        let (next, done, options) = (next.clone(), done.clone(), options.clone());
        senders.spawn(async move {
            let mut out = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= order.len() || Instant::now() >= send_deadline {
                    break;
                }
                let event = &events[order[index].0];
                let url = base
                    .join(&event.path)
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                out.push(deliver(&http, &url, event, index, &options, send_deadline).await);
                done.fetch_add(1, Ordering::Relaxed);
            }
            out
        });
    }
    let progress = {
        let (done, total) = (done.clone(), options.count);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                eprintln!(
                    "  {:>4.0} s: {}/{total} deliveries done",
                    sending.elapsed().as_secs_f64(),
                    done.load(Ordering::Relaxed)
                );
            }
        })
    };
    let mut delivered = Vec::with_capacity(options.count);
    while let Some(out) = senders.join_next().await {
        delivered.extend(out?);
    }
    progress.abort();
    let elapsed = sending.elapsed();
    delivered.sort_by_key(|d| d.index);

    // Read the run's records back, within what is left of the run.
    let dynamodb =
        aws_sdk_dynamodb::Client::new(&crate::provision::local_sdk_config(&stack.endpoint).await);
    let left = deadline.saturating_duration_since(Instant::now());
    let (stored_items, stored) =
        tokio::time::timeout(left, stored_records(&dynamodb, &events_table, &run))
            .await
            .map_err(|_| "the run's time was up before the events table was read back")??;
    let (distinct_sent, mut problems) = check(&events, &order, &delivered, stored_items, &stored);
    let unsent = options.count - delivered.len();
    let cut = delivered.iter().filter(|d| d.cut).count();
    if unsent > 0 || cut > 0 {
        problems.insert(
            0,
            format!(
                "the run's time was up: {unsent} deliveries never sent, {cut} stopped retrying"
            ),
        );
    }

    // The report.
    let requests: usize = delivered.iter().map(|d| d.attempts.len()).sum();
    let repeats_sent = delivered.iter().filter(|d| order[d.index].1).count();
    let mut shapes: BTreeMap<Shape, usize> = BTreeMap::new();
    for event in events.iter().take(distinct_sent) {
        *shapes.entry(event.shape).or_default() += 1;
    }
    let mut by_answer: BTreeMap<String, usize> = BTreeMap::new();
    let mut latencies = (Vec::new(), Vec::new());
    let mut retried = BTreeMap::<String, usize>::new();
    for d in &delivered {
        for (i, attempt) in d.attempts.iter().enumerate() {
            *by_answer.entry(attempt.label.clone()).or_default() += 1;
            if i + 1 < d.attempts.len() {
                *retried.entry(attempt.label.clone()).or_default() += 1;
            }
            if attempt.answered {
                if order[d.index].1 {
                    latencies.1.push(attempt.latency);
                } else {
                    latencies.0.push(attempt.latency);
                }
            }
        }
    }
    let answered = latencies.0.len() + latencies.1.len();
    let all: Vec<Duration> = latencies.0.iter().chain(&latencies.1).copied().collect();
    println!();
    println!(
        "sent        {} deliveries in {} HTTP requests (retries included), {:.1} s",
        delivered.len(),
        requests,
        elapsed.as_secs_f64()
    );
    let mix: Vec<String> = shapes
        .iter()
        .map(|(shape, n)| format!("{n} {}", shape.label()))
        .collect();
    println!("distinct    {distinct_sent} events: {}", mix.join(", "));
    println!(
        "repeats     {repeats_sent} (byte-for-byte resends of an earlier delivery; about half of one of the {RECENT} most recent events)"
    );
    println!("answers     by request:");
    for (label, n) in &by_answer {
        println!("              {label:<32} {n:>6}");
    }
    let retried: Vec<String> = retried
        .iter()
        .map(|(l, n)| format!("{n} after {l}"))
        .collect();
    println!(
        "retried     {}",
        if retried.is_empty() {
            "none".to_owned()
        } else {
            retried.join(", ")
        }
    );
    println!(
        "throughput  {:.1} req/s answered ({} answered requests / {:.1} s), {:.1} deliveries/s",
        answered as f64 / elapsed.as_secs_f64(),
        answered,
        elapsed.as_secs_f64(),
        delivered.len() as f64 / elapsed.as_secs_f64()
    );
    println!("latency     all:     {}", latency_line(all));
    println!("            new:     {}", latency_line(latencies.0));
    println!("            repeats: {}", latency_line(latencies.1));
    println!("stored      {stored_items} records in {events_table} whose key carries {run:?}");
    if problems.is_empty() {
        println!(
            "check       PASS: each of the {distinct_sent} distinct events is stored exactly once (status received), every repeat was answered 200 duplicate/accepted with its original's event_id, and every 2xx answer names a stored event"
        );
        println!("total time  {:.1} s", begun.elapsed().as_secs_f64());
        Ok(())
    } else {
        println!("check       FAIL:");
        for problem in &problems {
            println!("              - {problem}");
        }
        println!("total time  {:.1} s", begun.elapsed().as_secs_f64());
        Err("the load check failed".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_accepted() {
        for ok in [
            "http://127.0.0.1:3000",
            "http://127.9.9.9/",
            "http://localhost:3000",
            "http://[::1]:3000",
        ] {
            assert!(loopback_url(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://10.0.0.1:3000",
            "http://example.com",
            "http://0.0.0.0:3000",
            "ftp://127.0.0.1/",
            "http://127.0.0.1.example.com/",
            "not a url",
        ] {
            assert!(loopback_url(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn the_schedule_has_exactly_the_repeats_asked_each_of_an_earlier_event() {
        let order = schedule(10_000, 3_000, &mut fastrand::Rng::with_seed(7));
        assert_eq!(order.len(), 10_000);
        assert_eq!(order.iter().filter(|(_, r)| *r).count(), 3_000);
        let mut next = 0;
        for (event, repeat) in order {
            if repeat {
                assert!(event < next);
            } else {
                assert_eq!(event, next);
                next += 1;
            }
        }
        assert_eq!(next, 7_000);
    }

    #[test]
    fn flags_parse_and_bad_ones_are_refused() {
        let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let options =
            Options::parse(&args("--count 100 --repeat-percent 50 --concurrency 4")).unwrap();
        assert_eq!(
            (options.count, options.repeats(), options.concurrency),
            (100, 50, 4)
        );
        assert_eq!(Options::parse(&[]).unwrap(), Options::default());
        for bad in [
            "--count 0",
            "--repeat-percent 100",
            "--count",
            "--speed 9",
            "--count x",
            "--concurrency 0",
            "--max-attempts 0",
            "--max-seconds 9",
            "--timeout-seconds 0",
        ] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_flag_reaches_its_option() {
        let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let options = Options::parse(&args(
            "--url http://127.0.0.1:4100 --max-seconds 60 --timeout-seconds 5 --max-attempts 2 --state /tmp/s.json --repeat-percent 0",
        ))
        .unwrap();
        assert_eq!(
            options,
            Options {
                url: Some("http://127.0.0.1:4100".into()),
                max_seconds: 60,
                timeout: Duration::from_secs(5),
                max_attempts: 2,
                state_file: PathBuf::from("/tmp/s.json"),
                repeat_percent: 0,
                ..Options::default()
            }
        );
    }

    #[test]
    fn every_generated_event_is_accepted_by_its_kind_and_carries_the_run_marker() {
        use domain::sources::EventKind;
        let events = build_events(&events::default_dir(), "ltx-", 40).unwrap();
        for event in &events {
            let body: Value = serde_json::from_slice(&event.body).unwrap();
            let mut headers = http::HeaderMap::new();
            for (name, value) in &event.headers {
                headers.insert(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(value).unwrap(),
                );
            }
            let interpretation = match event.shape.target() {
                Kind::Revel(kind) => kind.interpret(body, &headers),
                Kind::VinesOs(kind) => kind.interpret(body, &headers),
                Kind::Booking(family) => family.interpret(body, &headers),
                Kind::WineSitting => {
                    vendors::winesitting::WineSittingEvent.interpret(body, &headers)
                }
            }
            .unwrap();
            match interpretation.identity {
                domain::sources::Identity::Business(key) => assert!(key.contains("ltx-"), "{key}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
