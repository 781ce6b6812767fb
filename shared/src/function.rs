//! The entry point of every function crate: tracing, config and clients
//! once per cold start, then the Lambda runtime loop.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;

use aws_adapters::dynamodb::{DynamoEntityStore, DynamoEventStore};
use aws_adapters::secrets_manager::SecretsManagerSource;
use aws_adapters::sqs::SqsJobQueue;
use domain::sources::Source;
use pipeline::config::Config;
use pipeline::process::Processor;
use pipeline::receive::Receiver;
use ports::secrets::SecretCache;
use vendors::booking::Booking;
/// A row of the table of functions, as a receiver crate names its own.
pub use vendors::functions::Function;
use vendors::functions::Kind;
use vendors::revel::{Revel, RevelEventType};
use vendors::vinesos::VinesOs;
use vendors::winesitting::{WineSitting, WineSittingEvent};

pub type Error = lambda_http::Error;

/// The AWS clients the functions use. Events and entities may use different
/// DynamoDB clients (the fault tests cut one and not the other).
#[derive(Clone)]
pub struct Clients {
    pub events: aws_sdk_dynamodb::Client,
    pub entities: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Clients {
    pub fn from_sdk(sdk: &SdkConfig) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        Self {
            events: dynamodb.clone(),
            entities: dynamodb,
            sqs: aws_sdk_sqs::Client::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }
}

/// Secrets Manager: what a source reads its secrets through.
pub type SecretsClient = aws_sdk_secretsmanager::Client;

/// Revel's source, with its secrets read through `secrets`.
pub fn revel_source(config: &Config, secrets: &SecretsClient) -> Arc<Revel> {
    Arc::new(Revel::new(
        secret_cache(&config.revel_secrets_id, config, secrets)
            .with_default_zone(config.default_time_zone.clone()),
    ))
}

/// A secret cache over the Secrets Manager secret `secret_id`.
pub fn secret_cache(secret_id: &str, config: &Config, secrets: &SecretsClient) -> SecretCache {
    let source = SecretsManagerSource::new(secrets.clone(), secret_id);
    SecretCache::new(source, config.settings.secrets_ttl)
        .with_stale_grace(config.settings.secrets_stale_grace)
}

/// A receiver of `kind` from `source`, storing through `events`: the one
/// AWS client it writes with.
pub fn receiver(
    source: Arc<dyn Source>,
    kind: Arc<dyn domain::sources::EventKind>,
    config: &Config,
    events: &aws_sdk_dynamodb::Client,
) -> Receiver {
    Receiver::new(
        source,
        kind,
        Arc::new(DynamoEventStore::new(events.clone(), &config.events_table)),
        config.settings.clone(),
        domain::clock::system(),
    )
}

/// The receiver of one Revel webhook type.
pub fn revel_receiver(
    kind: RevelEventType,
    source: Arc<Revel>,
    config: &Config,
    events: &aws_sdk_dynamodb::Client,
) -> Receiver {
    receiver(source, Arc::new(kind), config, events)
}

/// The stream processor, writing through `clients`.
pub fn processor(config: &Config, clients: &Clients) -> Processor {
    Processor::new(
        Arc::new(DynamoEntityStore::new(
            clients.entities.clone(),
            &config.entities_table,
        )),
        Arc::new(SqsJobQueue::new(
            clients.sqs.clone(),
            &config.jobs_queue_url,
        )),
    )
    .with_deliveries(config.deliveries.clone())
}

/// Serves the receiver `function` (a row of [`vendors::functions`]) in the
/// Lambda runtime. A receiver crate's `main` is this one call, on its row
/// found at compile time ([`receiver_row`]).
pub async fn serve_receiver(function: &'static Function) -> Result<(), Error> {
    serve_webhook(|config, secrets| {
        Ok((
            source_of(function.kind, config, secrets)?,
            function.kind.event_kind(),
        ))
    })
    .await
}

/// The row of the receiver crate `crate_name`, found when the crate is
/// compiled (see `functions/receiver.rs`).
pub const fn receiver_row(crate_name: &str) -> Option<&'static Function> {
    vendors::functions::by_crate(crate_name)
}

/// The source that authenticates requests of `kind`, its secrets read
/// through `secrets`.
#[inline]
pub fn source_of(
    kind: Kind,
    config: &Config,
    secrets: &SecretsClient,
) -> Result<Arc<dyn Source>, Error> {
    Ok(match kind {
        Kind::Revel(_) => revel_source(config, secrets),
        Kind::WineSitting => winesitting_source(config, secrets)?,
        Kind::Booking(_) => booking_source(config, secrets)?,
        Kind::VinesOs(_) => vinesos_source(config, secrets)?,
    })
}

/// What a receiver is: its source (how it authenticates) and its event kind
/// (what bodies mean).
pub type Description = (Arc<dyn Source>, Arc<dyn domain::sources::EventKind>);

/// Serves a webhook receiver in the Lambda runtime: config, clients and
/// secrets once per cold start, then one request per invocation, answered
/// once its event is stored. A receiver has two AWS clients, DynamoDB (its
/// one write) and Secrets Manager, and nothing else.
pub async fn serve_webhook(
    describe: impl FnOnce(&Config, &SecretsClient) -> Result<Description, Error>,
) -> Result<(), Error> {
    cold_start();
    let config = Config::from_env()?;
    let sdk = aws_adapters::sdk::load().await;
    let secrets = SecretsClient::new(&sdk);
    let events = aws_sdk_dynamodb::Client::new(&sdk);
    let (source, kind) = describe(&config, &secrets)?;
    warm(source.as_ref()).await;
    tracing::info!(event_type = kind.event_type(), "receiver ready");
    let receiver = Arc::new(receiver(source, kind, &config, &events));
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<crate::http::ApiGatewayEvent>| {
            let receiver = Arc::clone(&receiver);
            async move {
                let response =
                    crate::http::handle(&receiver, event.payload, Some(&event.context.request_id))
                        .await;
                Ok::<_, Infallible>(crate::http::api_gateway_response(response))
            }
        },
    ))
    .await
}

/// Serves the stream processor: the events table's stream in (one shard's
/// batch per invocation), partial batch failures out.
pub async fn serve_processor() -> Result<(), Error> {
    cold_start();
    let config = Config::from_env()?;
    let clients = Clients::from_sdk(&aws_adapters::sdk::load().await);
    let processor = Arc::new(processor(&config, &clients));
    tracing::info!("processor ready");
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<aws_lambda_events::event::dynamodb::Event>| {
            let processor = Arc::clone(&processor);
            async move {
                Ok::<_, Infallible>(
                    pipeline::process::stream::handle_batch(&processor, event.payload).await,
                )
            }
        },
    ))
    .await
}

/// What every function does first: the allocator's thresholds, then logs.
fn cold_start() {
    tune_allocator();
    telemetry::init();
}

/// Keeps glibc's allocator from handing memory back to the kernel between
/// invocations. By default an allocation from 128 KB on is its own `mmap`
/// and the heap's free top is trimmed, so each invocation page-faults its
/// large buffers in again (gzip's ~300 KB of tables, a large body's
/// copies): the order's hot path measured 139 µs so, 55 µs with these
/// settings (docs/performance.md). Allocations up to 2 MiB come from the
/// heap, and up to 8 MiB of free heap is kept for the next invocation:
/// peak memory is unchanged, memory between invocations stays at that peak.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets two of the allocator's parameters, under the
    // allocator's own lock; no memory is touched.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 2 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

/// Reads the secrets at init; a failure is logged, and each delivery retries
/// (answering 503 while they can't be read).
pub async fn warm(source: &dyn Source) {
    match tokio::time::timeout(Duration::from_secs(3), source.warm()).await {
        Ok(Ok(instances)) => tracing::info!(instances, "webhook secrets loaded"),
        Ok(Err(error)) => error.log("webhook secrets not loaded at init"),
        Err(_) => tracing::error!("webhook secrets not loaded at init: timed out"),
    }
}

/// Reads the Standard Webhooks signing secret and builds the downstream
/// client, or `None` when no URL is configured (deliveries then wait, parked).
pub async fn downstream(
    sync: &pipeline::config::SyncConfig,
    clients: &Clients,
) -> Result<Option<vendors::vinesos::downstream::Downstream>, Error> {
    let (Some(url), Some(secret_id)) = (&sync.downstream_url, &sync.downstream_secret_id) else {
        tracing::warn!("no partner URL: DOWNSTREAM_URL is not set; every delivery to the partner waits in the jobs dead-letter queue until it is set and `revel-ops dlq redrive` runs");
        return Ok(None);
    };
    let value = clients
        .secrets
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| domain::error::DependencyError::new("secretsmanager", "GetSecretValue", e))?
        .secret_string
        .ok_or("the downstream signing secret has no string value")?;
    let secret = vendors::vinesos::downstream::SigningSecret::parse(&value)?;
    tracing::info!(endpoint = %url, "downstream delivery is on");
    Ok(Some(vendors::vinesos::downstream::Downstream::new(
        url.clone(),
        secret,
        Duration::from_secs(10),
    )))
}

/// The jobs worker, wired from config: `api` says where Revel's API is and
/// how patiently to call it.
pub fn jobs_worker(
    config: &Config,
    sync: &pipeline::config::SyncConfig,
    clients: &Clients,
    revel: Arc<Revel>,
    api: vendors::revel::api::RevelApiConfig,
    downstream: Option<vendors::vinesos::downstream::Downstream>,
) -> pipeline::worker::Worker {
    let state = Arc::new(
        aws_adapters::sync_state::DynamoSyncState::new(
            clients.entities.clone(),
            &sync.sync_state_table,
            sync.daily_budget,
        )
        .with_on_demand_pulls_per_hour(sync.inventory_requests_per_hour),
    );
    // Each instance's calls within its own budget (its settings), the
    // deployment's where they name none.
    let budget: Arc<dyn ports::sync_state::CallBudget> =
        Arc::new(ports::sync_state::InstanceBudgets::new(
            state.clone(),
            Arc::clone(&revel) as Arc<dyn ports::secrets::InstanceDocument>,
        ));
    let revel_api = vendors::revel::api::RevelApi::new(api, Arc::clone(&budget));
    let backfill_api: Arc<dyn vendors::revel::api::RevelResources> = Arc::new(
        revel_api.spending_from(Arc::new(ports::sync_state::ReservedBudget::new(
            Arc::clone(&budget),
            pipeline::backfill::RESERVE_PERCENT,
        ))),
    );
    let api: Arc<dyn vendors::revel::api::RevelResources> = Arc::new(revel_api);
    let entities: Arc<dyn ports::store::EntityStore> = Arc::new(DynamoEntityStore::new(
        clients.entities.clone(),
        &config.entities_table,
    ));
    let jobs: Arc<dyn ports::queue::JobQueue> = Arc::new(SqsJobQueue::new(
        clients.sqs.clone(),
        &config.jobs_queue_url,
    ));
    let clock = domain::clock::system();
    let zones: Option<Arc<dyn ports::secrets::InstanceDocument>> = Some(Arc::clone(&revel) as _);
    pipeline::worker::Worker {
        in_flight: Arc::new(aws_adapters::sqs::SqsInFlightJobs::new(
            clients.sqs.clone(),
            &config.jobs_queue_url,
            config.jobs_dlq_url.clone(),
        )),
        clock: Arc::clone(&clock),
        entities: Arc::clone(&entities),
        jobs: Arc::clone(&jobs),
        revel: Arc::clone(&revel) as Arc<dyn ports::secrets::InstanceDocument>,
        partner: downstream.map(|d| Arc::new(d) as Arc<dyn vendors::vinesos::downstream::Partner>),
        backfill_api,
        syncer: pipeline::sync::Syncer::new(
            Arc::clone(&api),
            state.clone(),
            Arc::clone(&entities),
            sync.reconcile_lookback,
            clock,
        )
        .delivering_to(jobs)
        .in_zones_of(Arc::clone(&revel) as _),
        orders: revel_receiver(
            RevelEventType::OrderFinalized,
            Arc::clone(&revel),
            config,
            &clients.events,
        ),
        applier: pipeline::apply::Applier {
            api,
            entities,
            echoes: state.clone(),
            zones,
        },
        echoes: state.clone(),
        budget,
        on_demand: state,
        winesitting: winesitting_source(config, &clients.secrets)
            .ok()
            .map(|source| pipeline::worker::WineSittingRepair {
                api: Arc::new(vendors::winesitting::api::WineSittingApi::new(
                    sync.winesitting_api_base_url.clone(),
                    Duration::from_secs(10),
                )),
                receiver: receiver(
                    source.clone(),
                    Arc::new(WineSittingEvent),
                    config,
                    &clients.events,
                ),
                secrets: source,
            }),
    }
}

/// The jobs queue of `config`, through `clients`.
pub fn jobs_queue(config: &Config, clients: &Clients) -> Arc<dyn ports::queue::JobQueue> {
    Arc::new(SqsJobQueue::new(
        clients.sqs.clone(),
        &config.jobs_queue_url,
    ))
}

/// What the worker and the scheduler set up at cold start.
struct SyncInit {
    config: Config,
    sync: pipeline::config::SyncConfig,
    clients: Clients,
    revel: Arc<Revel>,
}

impl SyncInit {
    async fn load() -> Result<Self, Error> {
        cold_start();
        let config = Config::from_env()?;
        let sync = pipeline::config::SyncConfig::from_env()?;
        let clients = Clients::from_sdk(&aws_adapters::sdk::load().await);
        let revel = revel_source(&config, &clients.secrets);
        Ok(Self {
            config,
            sync,
            clients,
            revel,
        })
    }
}

/// Time left in this invocation, less a margin to save progress and answer.
fn deadline_of(context: &lambda_runtime::Context) -> tokio::time::Instant {
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let left_ms = (context.deadline as i128 - now_ms - 5_000).max(0) as u64;
    tokio::time::Instant::now() + Duration::from_millis(left_ms)
}

/// Serves the jobs worker (SQS event source, partial batch responses).
pub async fn serve_worker() -> Result<(), Error> {
    let SyncInit {
        config,
        sync,
        clients,
        revel,
    } = SyncInit::load().await?;
    let api = vendors::revel::api::RevelApiConfig {
        base_url: sync.revel_api_base_url.clone(),
        ..Default::default()
    };
    let downstream = downstream(&sync, &clients).await?;
    let worker = Arc::new(jobs_worker(
        &config, &sync, &clients, revel, api, downstream,
    ));
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| {
            let worker = Arc::clone(&worker);
            async move {
                let deadline = deadline_of(&event.context);
                Ok::<_, Infallible>(worker.handle_batch(event.payload, deadline).await)
            }
        },
    ))
    .await
}

/// Serves the scheduler: `{"task": "tick", "scheduled_time": ...}` from
/// EventBridge Scheduler every 5 minutes queues, per Revel instance, what is
/// due at its local time; `{"task": "<job>", "instance"?: ...}` (WineSitting's
/// repair poll, or a task run by hand) queues that task now.
pub async fn serve_scheduler() -> Result<(), Error> {
    let SyncInit {
        config,
        sync,
        clients,
        revel,
    } = SyncInit::load().await?;
    let jobs = jobs_queue(&config, &clients);
    let state: Arc<dyn ports::sync_state::SyncState> =
        Arc::new(aws_adapters::sync_state::DynamoSyncState::new(
            clients.entities.clone(),
            &sync.sync_state_table,
            sync.daily_budget,
        ));
    let winesitting = winesitting_source(&config, &clients.secrets).ok();
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let (revel, winesitting, jobs, state) = (
                Arc::clone(&revel),
                winesitting.clone(),
                Arc::clone(&jobs),
                Arc::clone(&state),
            );
            async move {
                run_schedule(
                    &event.payload,
                    &revel,
                    winesitting.as_deref(),
                    jobs.as_ref(),
                    state.as_ref(),
                )
                .await
            }
        },
    ))
    .await
}

/// One scheduler invocation: a tick, or one task now. Answers what it queued.
pub async fn run_schedule(
    input: &serde_json::Value,
    revel: &Revel,
    winesitting: Option<&WineSitting>,
    jobs: &dyn ports::queue::JobQueue,
    state: &dyn ports::sync_state::SyncState,
) -> Result<serde_json::Value, Error> {
    let now = pipeline::schedule::scheduled_at(input);
    match pipeline::schedule::task_of(input)? {
        pipeline::schedule::Task::Tick => {
            let queued = pipeline::schedule::tick(revel.secrets(), jobs, state, now).await?;
            Ok(serde_json::json!({"task": pipeline::schedule::TICK, "slots": queued.len()}))
        }
        pipeline::schedule::Task::Run(task) => {
            let only = pipeline::schedule::instance_of(input)?;
            let queued = pipeline::schedule::fan_out(
                task,
                accounts_of(task, revel, winesitting)?,
                jobs,
                only.as_ref(),
                now,
            )
            .await?;
            Ok(serde_json::json!({"task": task.name(), "instances": queued.len()}))
        }
    }
}

/// Whose accounts a scheduled task runs for: WineSitting's for its repair
/// poll, Revel's for everything else.
pub fn accounts_of<'a>(
    task: ports::queue::JobKind,
    revel: &'a Revel,
    winesitting: Option<&'a WineSitting>,
) -> Result<&'a SecretCache, Error> {
    match task {
        ports::queue::JobKind::WineSittingRepair => Ok(winesitting
            .ok_or("WINESITTING_SECRETS_ID is not set")?
            .secrets()),
        _ => Ok(revel.secrets()),
    }
}

/// The booking platform's source, with its secrets read through `clients`.
pub fn booking_source(config: &Config, secrets: &SecretsClient) -> Result<Arc<Booking>, Error> {
    let id = config
        .booking_secrets_id
        .as_deref()
        .ok_or("BOOKING_SECRETS_ID is not set")?;
    Ok(Arc::new(Booking::new(
        secret_cache(id, config, secrets),
        config.booking_signature_header.clone(),
    )))
}

/// WineSitting's source, with its tokens read through `clients`.
pub fn winesitting_source(
    config: &Config,
    secrets: &SecretsClient,
) -> Result<Arc<WineSitting>, Error> {
    let id = config
        .winesitting_secrets_id
        .as_deref()
        .ok_or("WINESITTING_SECRETS_ID is not set")?;
    Ok(Arc::new(WineSitting::new(secret_cache(
        id, config, secrets,
    ))))
}

/// VinesOS's source: its Standard Webhooks secrets per Revel instance.
pub fn vinesos_source(config: &Config, secrets: &SecretsClient) -> Result<Arc<VinesOs>, Error> {
    let id = config
        .vinesos_secrets_id
        .as_deref()
        .ok_or("VINESOS_SECRETS_ID is not set")?;
    Ok(Arc::new(VinesOs::new(secret_cache(id, config, secrets))))
}

/// Every source, built once, for a process that serves many functions (the
/// local stack, the tests).
#[derive(Clone)]
pub struct AllSources {
    pub revel: Arc<Revel>,
    pub winesitting: Arc<WineSitting>,
    pub booking: Arc<Booking>,
    pub vinesos: Arc<VinesOs>,
}

impl AllSources {
    pub fn new(config: &Config, clients: &Clients) -> Result<Self, Error> {
        Ok(Self {
            revel: revel_source(config, &clients.secrets),
            winesitting: winesitting_source(config, &clients.secrets)?,
            booking: booking_source(config, &clients.secrets)?,
            vinesos: vinesos_source(config, &clients.secrets)?,
        })
    }

    /// The source of requests of `kind`.
    pub fn source_of(&self, kind: Kind) -> Arc<dyn Source> {
        match kind {
            Kind::Revel(_) => self.revel.clone(),
            Kind::WineSitting => self.winesitting.clone(),
            Kind::Booking(_) => self.booking.clone(),
            Kind::VinesOs(_) => self.vinesos.clone(),
        }
    }

    /// The receiver of the template function `logical_id`, if it is one.
    pub fn receiver_for(
        &self,
        logical_id: &str,
        config: &Config,
        clients: &Clients,
    ) -> Option<Receiver> {
        let function = vendors::functions::by_logical_id(logical_id)?;
        Some(receiver(
            self.source_of(function.kind),
            function.kind.event_kind(),
            config,
            &clients.events,
        ))
    }
}
