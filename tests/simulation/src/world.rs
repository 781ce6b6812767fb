//! One seed's world: the real receivers, processor, jobs worker and
//! scheduler fan-out, wired to the fakes, driven by the plan's senders on a
//! single-threaded runtime whose clock only moves when every task waits.
//! Traffic stops, virtual time runs on until nothing is left to do, then
//! the checks run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::clock::{Clock, TokioClock};
use domain::error::ReceiveError;
use domain::request::WebhookRequest;
use domain::sources::{EventKind, Source};
use http::{HeaderMap, HeaderName, HeaderValue};
use pipeline::apply::Applier;
use pipeline::config::Settings;
use pipeline::process::Processor;
use pipeline::receive::{Outcome, Receiver};
use pipeline::sync::Syncer;
use pipeline::worker::Worker;
use ports::fakes::{MemoryAllowance, MemoryEchoes, UnlimitedBudget};
use ports::queue::{JobKind, JobQueue, QueueDefaults};
use ports::secrets::{InstanceDocument, SecretCache};
use ports::store::EntityStore;
use tokio::time::Instant;
use vendors::revel::api::RevelResources;
use vendors::revel::{Revel, RevelEventType};
use vendors::vinesos::downstream::{Partner, SigningSecret};
use vendors::vinesos::VinesOs;
use vendors::winesitting::{WineSitting, WineSittingEvent};

use crate::check::{self, Findings};
use crate::dynamo::{SimEntities, SimEvents, SimSyncState, Stream};
use crate::faults::{invoke, Ended, Faults, Outage};
use crate::partner::SimPartner;
use crate::revel::SimRevel;
use crate::secrets::SimSecrets;
use crate::sqs::{poll_jobs, SimQueue};
use crate::stream::Mapping;
use crate::trace::{Step, Trace};
use crate::traffic::{self, Meaning, Plan, Route, Webhook};

/// A receiver function's `Timeout` (template.yaml's Globals).
const RECEIVER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a sender waits for an answer.
const SENDER_TIMEOUT: Duration = Duration::from_secs(10);
/// The scheduler's `Timeout`.
const SCHEDULER_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent worker invocations (its reserved concurrency, here).
const WORKER_POLLERS: usize = 2;
/// How long after traffic the world may take to settle before it counts
/// as stuck: longer than any retry chain the template allows.
const SETTLE_LIMIT: Duration = Duration::from_secs(12 * 3600);

/// How a seed is run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Also put the bundle's own log lines (info and up) in the trace.
    pub logs: bool,
}

/// What one seed came to.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub seed: u64,
    pub steps: Vec<Step>,
    pub findings: Findings,
    /// Virtual time the run took until quiescent.
    pub virtual_time: Duration,
}

impl SeedReport {
    pub fn passed(&self) -> bool {
        self.findings.violations.is_empty()
    }
}

/// What a receiver answered to each request of a webhook.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// Every status a sender got (`None`: no answer in time).
    pub statuses: Vec<Option<u16>>,
    /// The event keys of the receiver's 2xx answers (sent or lost).
    pub stored_under: BTreeSet<String>,
}

/// One warm sandbox of a source's receivers.
struct Sandbox {
    receivers: BTreeMap<&'static str, Arc<Receiver>>,
}

pub struct World {
    pub plan: Plan,
    pub trace: Trace,
    pub faults: Arc<Faults>,
    clock: Arc<dyn Clock>,
    pub events: Arc<SimEvents>,
    pub entities: Arc<SimEntities>,
    pub queue: Arc<SimQueue>,
    pub partner: Arc<SimPartner>,
    pub revel: Arc<SimRevel>,
    pub mapping: Arc<Mapping>,
    worker: Arc<Worker>,
    /// The worker's Revel source: its secrets list the instances.
    worker_revel: Arc<Revel>,
    sandboxes: Mutex<BTreeMap<&'static str, Arc<Sandbox>>>,
    pub answers: Mutex<BTreeMap<usize, Answers>>,
    /// Sender chains, receiver invocations and scheduled changes under way.
    busy: AtomicUsize,
    /// Sender chains under way.
    senders: AtomicUsize,
    /// Ticks that fanned out, and those whose every attempt failed.
    pub fan_outs: Mutex<Vec<(JobKind, bool)>>,
}

fn document(entries: &[(&str, serde_json::Value)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    serde_json::Value::Object(map).to_string()
}

impl World {
    fn new(plan: Plan, trace: Trace, rng: fastrand::Rng) -> Arc<Self> {
        let outages = plan
            .outages
            .iter()
            .map(|(service, from, length)| Outage {
                service: *service,
                from: trace.at(*from),
                until: trace.at(*from + *length),
            })
            .collect();
        let faults = Arc::new(Faults::new(
            rng,
            plan.profile.clone(),
            outages,
            trace.clone(),
        ));
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(traffic::START));
        let stream = Arc::new(Stream::new(plan.shards));
        let events = Arc::new(SimEvents::new(Arc::clone(&stream), Arc::clone(&faults)));
        let entities = Arc::new(SimEntities::new(Arc::clone(&faults)));
        let queue = Arc::new(SimQueue::new(Arc::clone(&faults)));
        let partner = Arc::new(SimPartner::new(Arc::clone(&faults)));
        let revel = Arc::new(SimRevel::new(Arc::clone(&faults), Arc::clone(&clock)));
        let processor = Arc::new(Processor::new(
            Arc::clone(&entities) as Arc<dyn EntityStore>,
            Arc::clone(&queue) as Arc<dyn JobQueue>,
        ));
        let mapping = Arc::new(Mapping::new(
            Arc::clone(&stream),
            processor,
            Arc::clone(&faults),
        ));
        let worker_revel = Arc::new(revel_source(&plan, &faults));
        let api = Arc::clone(&revel) as Arc<dyn RevelResources>;
        let echoes = Arc::new(MemoryEchoes::default());
        let worker = Arc::new(Worker {
            // The fake queue applies the visibility timeout and the redrive
            // policy itself.
            in_flight: Arc::new(QueueDefaults),
            clock: Arc::clone(&clock),
            entities: Arc::clone(&entities) as Arc<dyn EntityStore>,
            jobs: Arc::clone(&queue) as Arc<dyn JobQueue>,
            revel: Arc::clone(&worker_revel) as Arc<dyn InstanceDocument>,
            partner: Some(Arc::clone(&partner) as Arc<dyn Partner>),
            // No instance is backfilled in the traffic (none is planned).
            backfill_api: Arc::clone(&api),
            syncer: Syncer::new(
                Arc::clone(&api),
                Arc::new(SimSyncState::new(Arc::clone(&faults))),
                Arc::clone(&entities) as Arc<dyn EntityStore>,
                Duration::from_secs(86_400),
                Arc::clone(&clock),
            )
            .delivering_to(Arc::clone(&queue) as Arc<dyn JobQueue>),
            orders: Receiver::new(
                Arc::clone(&worker_revel) as Arc<dyn Source>,
                Arc::new(RevelEventType::OrderFinalized),
                Arc::clone(&events) as _,
                Settings::default(),
                Arc::clone(&clock),
            ),
            applier: Applier {
                api,
                entities: Arc::clone(&entities) as Arc<dyn EntityStore>,
                echoes: echoes.clone(),
                // The simulated instances' clocks are UTC.
                zones: None,
            },
            echoes,
            // SimRevel keeps no budget: nothing is spent.
            budget: Arc::new(UnlimitedBudget::default()),
            // No partner search in the traffic; the template's default.
            on_demand: Arc::new(MemoryAllowance::new(
                ports::sync_state::DEFAULT_ON_DEMAND_PULLS_PER_HOUR,
            )),
            winesitting: None,
        });
        Arc::new(Self {
            plan,
            trace,
            faults,
            clock,
            events,
            entities,
            queue,
            partner,
            revel,
            mapping,
            worker,
            worker_revel,
            sandboxes: Mutex::default(),
            answers: Mutex::default(),
            busy: AtomicUsize::new(0),
            senders: AtomicUsize::new(0),
            fan_outs: Mutex::default(),
        })
    }

    fn settings() -> Settings {
        Settings::default()
    }

    /// The receiver for `route`, from the warm sandbox of its source, or a
    /// new one (a cold start reads the secrets anew).
    fn receiver(&self, route: Route) -> Arc<Receiver> {
        let source = route.source();
        let cold = self.faults.chance(self.faults.profile().cold_start);
        let mut sandboxes = self.sandboxes.lock().unwrap();
        if cold || !sandboxes.contains_key(source) {
            if sandboxes.contains_key(source) {
                self.faults
                    .note(format!("cold start of a new {source} sandbox"));
            }
            sandboxes.insert(source, Arc::new(self.sandbox(route)));
        }
        let sandbox = &sandboxes[source];
        Arc::clone(&sandbox.receivers[event_type(route)])
    }

    fn sandbox(&self, route: Route) -> Sandbox {
        let (source, kinds): (Arc<dyn Source>, Vec<Arc<dyn EventKind>>) = match route {
            Route::Revel(_) => (
                Arc::new(revel_source(&self.plan, &self.faults)),
                RevelEventType::ALL
                    .iter()
                    .map(|k| Arc::new(*k) as Arc<dyn EventKind>)
                    .collect(),
            ),
            Route::WineSitting => (
                Arc::new(WineSitting::new(self.cache(
                    "winesitting",
                    document(&[(
                        "alpha",
                        serde_json::json!({"token": traffic::WINESITTING_TOKEN}),
                    )]),
                ))),
                vec![Arc::new(WineSittingEvent) as Arc<dyn EventKind>],
            ),
            Route::VinesOs(_) => (
                Arc::new(
                    VinesOs::new(self.cache(
                        "vinesos",
                        document(&[(
                            "alpha",
                            serde_json::json!({"webhook": traffic::VINESOS_SECRET}),
                        )]),
                    ))
                    .with_clock(Arc::clone(&self.clock)),
                ),
                vendors::vinesos::VinesOsEvent::ALL
                    .iter()
                    .map(|k| Arc::new(*k) as Arc<dyn EventKind>)
                    .collect(),
            ),
        };
        let receivers = kinds
            .into_iter()
            .map(|kind| {
                let receiver = Receiver::new(
                    Arc::clone(&source),
                    Arc::clone(&kind),
                    Arc::clone(&self.events) as _,
                    Self::settings(),
                    Arc::clone(&self.clock),
                );
                (kind.event_type(), Arc::new(receiver))
            })
            .collect();
        Sandbox { receivers }
    }

    fn cache(&self, name: &'static str, document: String) -> SecretCache {
        cache(name, document, &self.faults)
    }

    /// The request a sender makes for `webhook` now: signed now (a
    /// VinesOS signature is dated, and checked against the world's clock).
    fn request(&self, webhook: &Webhook, attempt: usize) -> WebhookRequest {
        let mut headers = HeaderMap::new();
        let mut path_params = Vec::new();
        let mut header = |name: &str, value: &str| {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("simulated header names are valid"),
                HeaderValue::from_str(value).expect("simulated header values are valid"),
            );
        };
        header("content-type", "application/json");
        for (name, value) in &webhook.headers {
            header(name, value);
        }
        match webhook.route {
            Route::Revel(kind) => {
                let secret = if webhook.meaning == Meaning::Forged {
                    "not-the-secret"
                } else {
                    traffic::REVEL_SECRET
                };
                header(
                    vendors::revel::SIGNATURE_HEADER,
                    &vendors::revel::signature::sign(secret.as_bytes(), &webhook.body),
                );
                header(vendors::revel::INSTANCE_HEADER, &webhook.instance);
                header(vendors::revel::EVENT_TYPE_HEADER, kind.name());
            }
            Route::WineSitting => {
                path_params.push(("account".to_owned(), webhook.instance.clone()));
                path_params.push(("token".to_owned(), traffic::WINESITTING_TOKEN.to_owned()));
            }
            Route::VinesOs(_) => {
                // Signed at the world's time, which the receiver checks it against.
                let message_id = format!("msg_{}", webhook.id);
                let timestamp = self.clock.now().unix_timestamp();
                let signature = SigningSecret::parse(traffic::VINESOS_SECRET)
                    .expect("a valid secret")
                    .sign(&message_id, timestamp, &webhook.body);
                header("webhook-id", &message_id);
                header("webhook-timestamp", &timestamp.to_string());
                header("webhook-signature", &signature);
                path_params.push(("instance".to_owned(), webhook.instance.clone()));
            }
        }
        WebhookRequest {
            headers,
            body: webhook.body.clone(),
            request_id: format!("req-{}-{attempt}", webhook.id),
            path_params,
        }
    }

    fn record_answer(&self, webhook: usize, result: &Result<Outcome, ReceiveError>) {
        let key = match result {
            Ok(Outcome::Accepted { event_key })
            | Ok(Outcome::Duplicate { event_key })
            | Ok(Outcome::Conflict { event_key, .. })
            | Ok(Outcome::Quarantined { event_key, .. }) => Some(event_key.to_string()),
            _ => None,
        };
        if let Some(key) = key {
            self.answers
                .lock()
                .unwrap()
                .entry(webhook)
                .or_default()
                .stored_under
                .insert(key);
        }
    }

    /// One request of a webhook: the receiver runs as its own invocation
    /// (it goes on after the sender stops waiting); the status the sender
    /// got, if any.
    async fn attempt(self: &Arc<Self>, webhook: usize, attempt: usize) -> Option<u16> {
        let w = &self.plan.webhooks[webhook];
        let request = self.request(w, attempt);
        let (answer, answered) = tokio::sync::oneshot::channel();
        let world = Arc::clone(self);
        let route = w.route;
        self.busy.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let name = format!("receiver w{webhook}.{attempt}");
            let ended = invoke(name.clone(), RECEIVER_TIMEOUT, async {
                let receiver = world.receiver(route);
                let result = receiver.receive(&request).await;
                world.record_answer(webhook, &result);
                let response = shared::http::answer(&result);
                let status = response.status().as_u16();
                let outcome = match &result {
                    Ok(outcome) => outcome.as_str(),
                    Err(_) => "refused",
                };
                world.faults.note(format!("answered {status} {outcome}"));
                status
            })
            .await;
            let status = match ended {
                Ended::Completed(status) => status,
                // API Gateway's answer when the function fails.
                Ended::Crashed | Ended::TimedOut => {
                    world
                        .trace
                        .note(name, "invocation failed: API Gateway answers 502");
                    502
                }
            };
            let _ = answer.send(status);
            world.busy.fetch_sub(1, Ordering::SeqCst);
        });
        match tokio::time::timeout(SENDER_TIMEOUT, answered).await {
            Ok(Ok(status)) if self.faults.chance(self.faults.profile().lost_response) => {
                self.trace.note(
                    format!("sender w{webhook}"),
                    format!("FAULT the {status} answer was lost on its way back"),
                );
                None
            }
            Ok(Ok(status)) => Some(status),
            _ => None,
        }
    }

    /// A sender's chain for one send of a webhook: the request, then its
    /// retries while it gets no 2xx, as the sender's policy says.
    async fn send(self: Arc<Self>, webhook: usize, start: Duration) {
        tokio::time::sleep_until(self.trace.at(start)).await;
        let w = &self.plan.webhooks[webhook];
        let delays = w.retries.delays();
        let actor = format!("sender w{webhook}");
        for attempt in 0..=delays.len() {
            self.trace.note(
                actor.clone(),
                format!("sends {} (attempt {})", w.label, attempt + 1),
            );
            let status = self.attempt(webhook, attempt).await;
            self.answers
                .lock()
                .unwrap()
                .entry(webhook)
                .or_default()
                .statuses
                .push(status);
            let done = status.is_some_and(|s| (200..300).contains(&s));
            self.trace.note(
                actor.clone(),
                format!(
                    "got {}",
                    status.map_or_else(|| "no answer".to_owned(), |s| s.to_string())
                ),
            );
            if done {
                break;
            }
            match delays.get(attempt) {
                Some(delay) => tokio::time::sleep(*delay).await,
                None if delays.is_empty() => {}
                None => self.trace.note(actor.clone(), "gives up"),
            }
        }
        self.senders.fetch_sub(1, Ordering::SeqCst);
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }

    /// A change made in Revel itself at its time.
    async fn write_api(self: Arc<Self>, index: usize) {
        let write = &self.plan.api_writes[index];
        tokio::time::sleep_until(self.trace.at(write.at)).await;
        self.revel
            .put(&write.instance, write.resource, write.object.clone());
        if !write.at.is_zero() {
            self.trace.note(
                "revel",
                format!(
                    "{} {} changed in Revel (updated_date {})",
                    write.resource,
                    write.object["id"],
                    write.object["updated_date"].as_str().unwrap_or("?")
                ),
            );
        }
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }

    /// A scheduled tick: the scheduler fans the task out, EventBridge
    /// Scheduler retrying a failed invocation twice.
    async fn tick(self: Arc<Self>, index: usize) {
        let fan_out = self.plan.fan_outs[index];
        match fan_out.at {
            Some(at) => tokio::time::sleep_until(self.trace.at(at)).await,
            None => {
                // End of day: after every change in Revel and every sender.
                tokio::time::sleep_until(self.trace.at(traffic::TRAFFIC)).await;
                while self.senders.load(Ordering::SeqCst) > 0 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
        let scheduled = self.clock.now();
        let mut fanned = false;
        for attempt in 0..3 {
            let name = format!("scheduler {}", fan_out.task.name());
            let ended = invoke(
                name.clone(),
                SCHEDULER_TIMEOUT,
                pipeline::schedule::fan_out(
                    fan_out.task,
                    self.worker_revel.secrets(),
                    self.queue.as_ref(),
                    // Every instance, as a task run for all of them.
                    None,
                    scheduled,
                ),
            )
            .await;
            let outcome = match ended {
                Ended::Completed(Ok(queued)) => {
                    fanned = true;
                    format!("queued for {} instance(s)", queued.len())
                }
                Ended::Completed(Err(error)) => format!("failed: {error}"),
                Ended::Crashed => "crashed".to_owned(),
                Ended::TimedOut => "timed out".to_owned(),
            };
            self.trace
                .note(name, format!("attempt {}: {outcome}", attempt + 1));
            if fanned {
                break;
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        self.fan_outs.lock().unwrap().push((fan_out.task, fanned));
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }

    /// Nothing left to do: no sender, receiver or scheduled change under
    /// way, the stream read to its end, the jobs queue empty.
    fn is_quiescent(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
            && self.mapping.is_caught_up()
            && self.queue.is_drained()
    }

    /// What is still under way (for a stuck report).
    pub fn under_way(&self) -> String {
        format!(
            "{} sender chain(s) or change(s) under way, stream records behind per shard {:?}, {} job(s) on the queue",
            self.busy.load(Ordering::SeqCst),
            self.mapping.behind(),
            self.queue.waiting().len()
        )
    }
}

fn event_type(route: Route) -> &'static str {
    match route {
        Route::Revel(kind) => kind.name(),
        Route::WineSitting => WineSittingEvent.event_type(),
        Route::VinesOs(event) => event.event_type(),
    }
}

fn cache(name: &'static str, document: String, faults: &Arc<Faults>) -> SecretCache {
    let settings = Settings::default();
    SecretCache::new(
        SimSecrets {
            name,
            document,
            faults: Arc::clone(faults),
        },
        settings.secrets_ttl,
    )
    .with_stale_grace(settings.secrets_stale_grace)
}

/// Revel as a source, with every instance's webhook secret and API keys.
fn revel_source(plan: &Plan, faults: &Arc<Faults>) -> Revel {
    let entries: Vec<(&str, serde_json::Value)> = plan
        .instances
        .iter()
        .map(|instance| {
            (
                instance.as_str(),
                serde_json::json!({"webhook": traffic::REVEL_SECRET,
                                   "api_key": format!("key-{instance}"),
                                   "api_secret": format!("secret-{instance}")}),
            )
        })
        .collect();
    Revel::new(cache("revel", document(&entries), faults))
}

/// A seed's world once it has settled (or hit the settle limit), with its
/// runtime, whose paused clock still dates what the checks note.
pub struct Settled {
    pub world: Arc<World>,
    /// It became quiescent within the limit.
    pub quiescent: bool,
    pub virtual_time: Duration,
    runtime: tokio::runtime::Runtime,
}

impl Settled {
    /// Runs the checks (on the world's clock).
    pub fn check(&self) -> Findings {
        let _clock = self.runtime.enter();
        check::check(&self.world, self.quiescent)
    }

    /// The checks as if the world had not settled.
    pub fn check_unsettled(&self) -> Findings {
        let _clock = self.runtime.enter();
        check::check(&self.world, false)
    }
}

/// Runs `seed` on a runtime of its own until its world settles.
pub fn run_world(seed: u64, options: Options) -> Settled {
    // The bundle's own randomness (jitter) follows the seed too.
    fastrand::seed(seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    if options.logs {
        crate::logs::install();
    }
    let (world, quiescent, virtual_time) = runtime.block_on(simulate(seed, options.logs));
    crate::logs::set_trace(None);
    Settled {
        world,
        quiescent,
        virtual_time,
        runtime,
    }
}

/// Runs `seed` and checks what it came to.
pub fn run_seed(seed: u64, options: Options) -> SeedReport {
    let settled = run_world(seed, options);
    let findings = settled.check();
    SeedReport {
        seed,
        steps: settled.world.trace.steps(),
        findings,
        virtual_time: settled.virtual_time,
    }
}

async fn simulate(seed: u64, logs: bool) -> (Arc<World>, bool, Duration) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let plan = traffic::plan(&mut rng);
    let trace = Trace::starting_now();
    if logs {
        crate::logs::set_trace(Some(trace.clone()));
    }
    let world = World::new(plan, trace.clone(), rng.fork());
    describe(&world);
    let mut tasks = Vec::new();
    for shard in 0..world.plan.shards {
        tasks.push(tokio::spawn(Arc::clone(&world.mapping).poll_shard(shard)));
    }
    for n in 0..WORKER_POLLERS {
        tasks.push(tokio::spawn(poll_jobs(
            n,
            Arc::clone(&world.queue),
            Arc::clone(&world.worker),
            Arc::clone(&world.faults),
        )));
    }
    for index in 0..world.plan.api_writes.len() {
        world.busy.fetch_add(1, Ordering::SeqCst);
        tasks.push(tokio::spawn(Arc::clone(&world).write_api(index)));
    }
    for webhook in &world.plan.webhooks {
        for start in &webhook.sends {
            world.busy.fetch_add(1, Ordering::SeqCst);
            world.senders.fetch_add(1, Ordering::SeqCst);
            tasks.push(tokio::spawn(Arc::clone(&world).send(webhook.id, *start)));
        }
    }
    for index in 0..world.plan.fan_outs.len() {
        world.busy.fetch_add(1, Ordering::SeqCst);
        tasks.push(tokio::spawn(Arc::clone(&world).tick(index)));
    }
    let limit = Instant::now() + traffic::TRAFFIC + SETTLE_LIMIT;
    let quiescent = loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        if world.is_quiescent() {
            break true;
        }
        if Instant::now() >= limit {
            break false;
        }
    };
    for task in &tasks {
        task.abort();
    }
    world
        .trace
        .note("sim", format!("quiescent: {quiescent}; checking"));
    (world, quiescent, trace.elapsed())
}

/// The seed's setup, first in its trace.
fn describe(world: &World) {
    let plan = &world.plan;
    let trace = &world.trace;
    trace.note(
        "sim",
        format!(
            "instances {:?}, {} shard(s), {} webhook(s), {} fan-out(s)",
            plan.instances,
            plan.shards,
            plan.webhooks.len(),
            plan.fan_outs.len()
        ),
    );
    for line in plan.profile.describe() {
        trace.note("sim", format!("fault rates: {line}"));
    }
    for (service, from, length) in &plan.outages {
        trace.note(
            "sim",
            format!(
                "outage of {service} at {} for {} min",
                crate::trace::clock(*from),
                length.as_secs() / 60
            ),
        );
    }
    for w in &plan.webhooks {
        let sends: Vec<String> = w.sends.iter().map(|s| crate::trace::clock(*s)).collect();
        trace.note(
            "sim",
            format!(
                "w{} = {} on {} ({} bytes), sent at [{}]",
                w.id,
                w.label,
                w.instance,
                w.body.len(),
                sends.join(", ")
            ),
        );
    }
}
