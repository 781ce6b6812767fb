//! `local-stack`: the bundle on one machine.
//!
//! - `up`: starts a local AWS endpoint (moto), creates template.yaml's
//!   tables, queues and secrets on it, puts the `demo` secret in place,
//!   serves every function at its route on http://127.0.0.1:3000, and runs
//!   the events processor (reading the events table's stream) and the jobs
//!   worker (reading the jobs queue) as their event sources would;
//! - `gen-events`: writes the signed sample events in events/ and the
//!   inputs of the processor, the jobs worker and the scheduler;
//! - `post-events`: posts every request in events/ to the running stack,
//!   prints the answer and what was stored, then what reached the partner;
//! - `trigger`: queues a scheduled task, as the scheduler would;
//! - `partner`: stops or starts the running stack's partner stand-in;
//! - `load`: sends signed deliveries under load and checks each was stored once.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use local_stack::provision::{local_sdk_config, provision, put_revel_secrets};
use local_stack::stream::{StreamPoller, MAX_RETRY_ATTEMPTS};
use local_stack::template::Template;
use local_stack::{events, gateway, inputs, post, Error, RunningStack, DEMO_INSTANCE, DEMO_SECRET};
use local_stack::{fake_revel, partner, worker_loop};
use pipeline::config::{Config, SyncConfig};
use serde_json::json;
use shared::function::{revel_source, AllSources, Clients};
use tokio::io::{AsyncBufReadExt, BufReader};
use vendors::revel::api::RevelApiConfig;

/// The variable naming the queue the processor's event source mapping
/// reports records it gave up on to (the operator tool reads it too).
const FAILURE_QUEUE_VAR: &str = "EVENTS_PROCESSOR_FAILURE_QUEUE_URL";

/// The bundle on one machine: a local AWS endpoint with template.yaml's
/// resources, every function at its route, the sample events.
#[derive(Debug, Parser)]
#[command(name = "local-stack", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Starts a local AWS endpoint (moto) with template.yaml's tables,
    /// queues and secrets, serves every function at its route, and runs the
    /// events processor and the jobs worker as their event sources would.
    Up(UpArgs),
    /// Writes the signed sample events in events/ and the inputs of the
    /// processor, the jobs worker and the scheduler.
    GenEvents(GenEventsArgs),
    /// Posts every request in events/ to the running stack, prints the
    /// answer and what was stored, then what reached the partner.
    PostEvents(PostEventsArgs),
    /// Queues a scheduled task as the scheduler would: its tick at a chosen
    /// time, or one task now.
    Trigger(TriggerArgs),
    /// Sends signed deliveries under load to the running stack (loopback
    /// only) and checks each distinct event was stored once.
    Load(local_stack::load::Options),
    /// Stops or starts the running stack's partner stand-in: stopped, its
    /// port refuses connections, as a partner that is down.
    Partner(PartnerArgs),
}

#[derive(Debug, Args)]
struct PartnerArgs {
    #[arg(value_enum)]
    action: PartnerAction,
    /// The stack [default: the running stack's, from .local/stack.json].
    #[arg(long, value_name = "URL")]
    url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PartnerAction {
    /// Close its port: deliveries and `revel-ops status` meet a refused connection.
    Stop,
    /// Open its port again.
    Start,
    /// Say whether it runs, and where.
    Status,
}

#[derive(Debug, Args)]
struct UpArgs {
    /// The port the functions are served on.
    #[arg(long, value_name = "PORT", default_value_t = 3000)]
    port: u16,
    /// The local AWS endpoint's port.
    #[arg(long, value_name = "PORT", default_value_t = 5000)]
    aws_port: u16,
    /// The partner stand-in's own port (`DOWNSTREAM_URL`); 0: a free one.
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    partner_port: u16,
    /// The Python with moto (`make venv` makes it).
    #[arg(long, value_name = "PATH", default_value = ".venv/bin/python")]
    python: PathBuf,
    /// Only the receivers (the load benchmark): no events processor, no
    /// jobs worker; records stay on the stream.
    #[arg(long)]
    no_worker: bool,
}

#[derive(Debug, Args)]
struct GenEventsArgs {
    /// Where the samples are written.
    #[arg(long, value_name = "DIR", default_value_os_t = events::default_dir())]
    dir: PathBuf,
}

#[derive(Debug, Args)]
struct PostEventsArgs {
    /// Where the samples are read.
    #[arg(long, value_name = "DIR", default_value_os_t = events::default_dir())]
    dir: PathBuf,
    /// The stack to post to [default: the running stack's, from .local/stack.json].
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// How long to wait for the partner to receive what the worker delivers.
    #[arg(long, value_name = "N", default_value_t = post::DEFAULT_WAIT.as_secs())]
    wait_seconds: u64,
}

#[derive(Debug, Args)]
struct TriggerArgs {
    /// `tick` (what is due at each instance's local time), or one scheduled
    /// task now, by its job name (an unknown name lists them).
    #[arg(value_name = "TASK", value_parser = scheduled_task)]
    task: pipeline::schedule::Task,
    /// Only this instance (a task run now; the tick covers every instance).
    #[arg(long, value_name = "NAME", value_parser = instance_name)]
    instance: Option<domain::ids::InstanceName>,
    /// The time it runs at, in RFC 3339 [default: now].
    #[arg(long, value_name = "2026-11-30T07:55:00Z", value_parser = rfc3339)]
    at: Option<time::OffsetDateTime>,
}

fn scheduled_task(name: &str) -> Result<pipeline::schedule::Task, String> {
    pipeline::schedule::task_of(&json!({ "task": name })).map_err(|e| {
        let names: Vec<&str> = ports::queue::JobKind::SCHEDULED
            .iter()
            .map(|kind| kind.name())
            .collect();
        format!("{e}; a task is tick or one of {}", names.join(", "))
    })
}

fn instance_name(raw: &str) -> Result<domain::ids::InstanceName, String> {
    domain::ids::InstanceName::parse(raw).map_err(|e| e.to_string())
}

fn rfc3339(raw: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| "an RFC 3339 time, such as 2026-11-30T07:55:00Z".to_owned())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up(args).await,
        Command::GenEvents(args) => gen_events(args).await,
        Command::PostEvents(args) => post_events(args).await,
        Command::Trigger(args) => trigger(args).await,
        Command::Load(options) => local_stack::load::run(options).await,
        Command::Partner(args) => partner_control(args).await,
    };
    if let Err(error) = result {
        eprintln!("local-stack: {error}");
        std::process::exit(1);
    }
}

async fn gen_events(args: GenEventsArgs) -> Result<(), Error> {
    let dir = args.dir;
    for path in events::write_all(&dir)? {
        println!("wrote {}", path.display());
    }
    for path in inputs::write_all(&dir).await? {
        println!("wrote {}", path.display());
    }
    println!("(the VinesOS samples are signed now: their signatures verify for 5 minutes; post-events re-signs before posting)");
    Ok(())
}

async fn up(args: UpArgs) -> Result<(), Error> {
    telemetry::init();
    // `--no-worker` (the load benchmark): only the receivers run, so the one
    // local endpoint serves only the requests being measured; records stay
    // on the stream and nothing is applied or delivered.
    let UpArgs {
        port,
        aws_port,
        partner_port,
        python,
        no_worker: receivers_only,
    } = args;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local_aws.py");

    // The endpoint stops when this process ends: it reads our end of a pipe.
    let mut moto = tokio::process::Command::new(&python)
        .arg(&script)
        .arg("--port")
        .arg(aws_port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "starting {} {}: {e} (run `make venv` first)",
                python.display(),
                script.display()
            )
        })?;
    let mut lines = BufReader::new(moto.stdout.take().ok_or("no stdout")?).lines();
    let endpoint = loop {
        match lines.next_line().await? {
            Some(line) if line.starts_with("READY ") => break line["READY ".len()..].to_owned(),
            Some(_) => continue,
            None => return Err("the local AWS endpoint exited before it was ready".into()),
        }
    };

    let template = Template::load(&local_stack::template::default_path())?;
    let sdk = local_sdk_config(&endpoint).await;
    let mut provisioned = provision(&sdk, &template, "local").await?;
    put_revel_secrets(
        &sdk,
        &provisioned,
        &local_stack::local_revel_secret_document(),
    )
    .await?;
    local_stack::provision::put_demo_secrets(&sdk, &provisioned).await?;
    let base = format!("http://127.0.0.1:{port}");
    // The partner's own port, so it can be stopped while the functions are
    // served; bound now, as DOWNSTREAM_URL names it.
    let partner_listener = tokio::net::TcpListener::bind(("127.0.0.1", partner_port))
        .await
        .map_err(|e| format!("the partner stand-in's port {partner_port}: {e}"))?;
    let downstream_url = format!(
        "http://{}{}",
        partner_listener.local_addr()?,
        partner::WEBHOOKS_PATH
    );
    let events_table = provisioned
        .resources
        .get("EventsTable")
        .cloned()
        .ok_or("template.yaml has no EventsTable")?;
    let stream_arn = events_table
        .stream_arn
        .clone()
        .ok_or("the events table has no stream (template.yaml's StreamSpecification)")?;
    let failure_queue = match provisioned.env.get(FAILURE_QUEUE_VAR) {
        Some(url) => url.clone(),
        None => provisioned
            .resources
            .get("EventsProcessorFailureQueue")
            .map(|queue| queue.reference.clone())
            .ok_or("template.yaml has no EventsProcessorFailureQueue")?,
    };
    // Revel's API and the partner system are stand-ins served beside the
    // functions; the failure queue and the webhook API's base URL (the
    // stack output WebhookApiUrl) are named for the operator tool.
    for (name, value) in [
        (
            "REVEL_API_BASE_URL",
            format!("{base}/revel-api/{{instance}}"),
        ),
        ("DOWNSTREAM_URL", downstream_url.clone()),
        ("WEBHOOK_API_URL", base.clone()),
        (
            "WINESITTING_API_BASE_URL",
            format!("{base}/winesitting-api"),
        ),
        // The fixtures are dated 2016, like Revel's webhook samples.
        ("RECONCILE_LOOKBACK_HOURS", (24 * 365 * 20).to_string()),
        (FAILURE_QUEUE_VAR, failure_queue.clone()),
    ] {
        provisioned.env.insert(name.to_owned(), value);
    }
    let config = Config::from_lookup(provisioned.lookup())?;
    let sync = SyncConfig::from_lookup(provisioned.lookup())?;
    let clients = Clients::from_sdk(&sdk);
    let sources = AllSources::new(&config, &clients)?;
    let source = sources.revel.clone();
    let routes =
        gateway::routes(|function| sources.receiver_for(function.logical_id, &config, &clients))?;

    std::fs::create_dir_all(".local")?;
    std::fs::write(
        local_stack::STATE_FILE,
        json!({"endpoint": endpoint, "env": provisioned.env, "url": base}).to_string(),
    )?;
    // For `cargo lambda watch --env-file .local/functions.env` and the
    // operator tool: the real binaries, pointed at the same local endpoint.
    let mut env_file = format!(
        "AWS_ENDPOINT_URL={endpoint}\nAWS_REGION=us-east-1\nAWS_ACCESS_KEY_ID=local\nAWS_SECRET_ACCESS_KEY=local\n"
    );
    for (name, value) in &provisioned.env {
        env_file.push_str(&format!("{name}={value}\n"));
    }
    std::fs::write(".local/functions.env", env_file)?;

    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    let signing_secret = clients
        .secrets
        .get_secret_value()
        .secret_id(
            sync.downstream_secret_id
                .clone()
                .ok_or("no DOWNSTREAM_SECRET_ID")?,
        )
        .send()
        .await?
        .secret_string
        .ok_or("empty signing secret")?;
    let partner_server =
        partner::PartnerServer::new(partner::Partner::new(&signing_secret)?, partner_listener)?;
    let extra = axum::Router::new()
        .route(
            "/winesitting-api/orders",
            axum::routing::get(local_stack::fake_winesitting::orders),
        )
        .merge(fake_revel::router(fake_revel::Fixtures::new(
            fake_revel::default_dir(),
        )))
        // What the partner received stays listed here while it is stopped.
        .merge(
            axum::Router::new()
                .route("/partner/received", axum::routing::get(partner::list))
                .with_state(partner_server.partner().clone()),
        )
        .merge(partner::control_router(partner_server.clone()));
    if !receivers_only {
        // The processor, reading the events table's stream as Lambda's
        // event source mapping would.
        let poller = StreamPoller::new(&sdk, stream_arn.clone(), events_table.reference.clone())
            .with_failure_queue(clients.sqs.clone(), failure_queue.clone());
        tokio::spawn(run_processor(
            poller,
            shared::function::processor(&config, &clients),
        ));
        // The worker, polling the local queue as Lambda's SQS event source would.
        let api = RevelApiConfig {
            base_url: sync.revel_api_base_url.clone(),
            ..Default::default()
        };
        let downstream = shared::function::downstream(&sync, &clients).await?;
        let worker = shared::function::jobs_worker(
            &config,
            &sync,
            &clients,
            source.clone(),
            api,
            downstream,
        );
        tokio::spawn(run_worker(
            clients.sqs.clone(),
            config.jobs_queue_url.clone(),
            worker,
        ));
    }

    println!("\nRunning:");
    println!(
        "  local AWS endpoint (moto: DynamoDB and its streams, SQS, Secrets Manager): {endpoint}"
    );
    println!(
        "  receivers: {} routes on {base} (below); each stores its event with one conditional put and answers",
        routes.len()
    );
    if receivers_only {
        println!("  events processor and jobs worker: NOT running (--no-worker): records stay on the stream, nothing is applied or delivered");
    } else {
        println!("  events processor: reads the events table's stream ({stream_arn}) as the event source mapping does;");
        println!("    a record failing {MAX_RETRY_ATTEMPTS} times is reported on {failure_queue} (`revel-ops processor redrive`)");
        println!(
            "  jobs worker: polls {}; deliveries go to the partner stand-in",
            config.jobs_queue_url
        );
    }
    println!("  partner stand-in: {downstream_url} on a port of its own (verifies and prints each delivery; GET {base}/partner/received lists them)");
    println!("    make partner-stop / make partner-start   close its port (deliveries and `revel-ops status` meet a refused connection) and open it again");
    println!("    (or POST {base}/local/partner/stop, {base}/local/partner/start; GET {base}/local/partner says which)");
    println!("  Revel API stand-in: {base}/revel-api/{{instance}}/resources/{{Resource}}/ (any instance, key `{}` secret `{}`; fixtures in events/revel-api/)", fake_revel::DEMO_API_KEY, fake_revel::DEMO_API_SECRET);
    println!("  WineSitting API stand-in: {base}/winesitting-api/orders (fixtures in events/winesitting-api/)");
    println!(
        "\nEnvironment (also in .local/functions.env; `make ops ARGS=...` runs revel-ops with it):"
    );
    println!("  export AWS_ENDPOINT_URL={endpoint} AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local");
    for (name, value) in &provisioned.env {
        println!("  {name}={value}");
    }
    println!("\nRoutes (instance `{DEMO_INSTANCE}`, secret `{DEMO_SECRET}`):");
    let mut listed: Vec<(&str, &str)> = vendors::functions::all()
        .flat_map(|f| f.routes.iter().map(move |route| (*route, f.logical_id)))
        .collect();
    listed.sort();
    for (route, function) in listed {
        println!("  POST {base}{route}  -> {function}");
    }
    let body = r#"{"ping": "pong"}"#;
    let signature = vendors::revel::signature::sign(DEMO_SECRET.as_bytes(), body.as_bytes());
    println!("\nTry it:\n  curl -s -X POST {base}/revel/orders/finalized -H 'X-Revel-Instance: {DEMO_INSTANCE}' -H 'X-Revel-Signature: {signature}' -d '{body}'");
    println!("  make post-events    # posts every request in events/, prints what was stored and what reached the partner");
    println!(
        "Instances: `{DEMO_INSTANCE}` (UTC), `{}` ({}, end of day 23:55 local, inventory every 2 hours)",
        local_stack::DEMO_LA_INSTANCE,
        local_stack::DEMO_LA_TIME_ZONE
    );
    println!(
        "The scheduler's tick (what is due at each instance's local time), at a chosen UTC time:"
    );
    println!("  make trigger TASK=tick AT=2026-11-30T07:55:00Z   # 23:55 in Los Angeles: its end of day and its 22:00 inventory slot");
    println!("Scheduled tasks by hand, for every instance or one:");
    for task in ports::queue::JobKind::SCHEDULED {
        println!(
            "  make trigger TASK={} [INSTANCE={DEMO_INSTANCE}]",
            task.name()
        );
    }
    println!(
        "The operator tool, revel-ops, on this stack (its environment from .local/functions.env):"
    );
    println!("  make ops ARGS=\"instance add bar-la --time-zone America/Los_Angeles --api-key {} --api-secret {} --backfill --orders-since 2016-01-01\"", fake_revel::DEMO_API_KEY, fake_revel::DEMO_API_SECRET);
    println!("  make ops ARGS=\"backfill status\"    make ops ARGS=\"status\"    (make partner-stop, then status again: unhealthy)");
    println!();
    gateway::serve(listener, routes, extra).await?;
    drop(moto.stdin.take());
    Ok(())
}

/// Hands the stream to the processor, poll after poll, for as long as the
/// stack runs.
async fn run_processor(mut poller: StreamPoller, processor: pipeline::process::Processor) {
    loop {
        match poller.poll_once(&processor).await {
            Ok(polled) if polled.records == 0 => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Ok(polled) => {
                println!(
                    "processor: {} stream record(s) handed to the processor",
                    polled.records
                );
                if polled.failed_batches > 0 {
                    println!("processor: a record failed; it is retried from its sequence number");
                }
                if polled.given_up > 0 {
                    println!(
                        "processor: {} record(s) given up on after {MAX_RETRY_ATTEMPTS} attempts, reported on the failure queue",
                        polled.given_up
                    );
                }
                if polled.failed_batches > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Err(error) => {
                eprintln!("processor: reading the stream failed: {error}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Runs the jobs worker on the local queue for as long as the stack runs.
async fn run_worker(sqs: aws_sdk_sqs::Client, queue_url: String, worker: pipeline::worker::Worker) {
    loop {
        match worker_loop::poll_once(
            &sqs,
            &queue_url,
            &worker,
            Duration::from_secs(55),
            Duration::from_secs(5),
        )
        .await
        {
            Ok(polled) if polled.received > 0 => {
                println!(
                    "worker: ran {} job(s), {} failed (retried in 5 s)",
                    polled.received, polled.failed
                )
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(error) => {
                eprintln!("worker: polling failed: {error}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Runs the scheduler by hand: its tick at a chosen time (what is due at
/// each instance's local time), or one task now for every instance or one.
async fn trigger(args: TriggerArgs) -> Result<(), Error> {
    let TriggerArgs {
        task,
        instance: only,
        at,
    } = args;
    let now = at.unwrap_or_else(time::OffsetDateTime::now_utc);
    let stack = RunningStack::read(Path::new(local_stack::STATE_FILE))?;
    let provisioned = stack.provisioned();
    let config = Config::from_lookup(provisioned.lookup())?;
    let sync = SyncConfig::from_lookup(provisioned.lookup())?;
    let clients = Clients::from_sdk(&local_sdk_config(&stack.endpoint).await);
    let revel = revel_source(&config, &clients.secrets);
    let jobs = shared::function::jobs_queue(&config, &clients);
    let task = match task {
        pipeline::schedule::Task::Tick => {
            let state = aws_adapters::sync_state::DynamoSyncState::new(
                clients.entities.clone(),
                &sync.sync_state_table,
                sync.daily_budget,
            );
            return tick(&revel, jobs.as_ref(), &state, now).await;
        }
        pipeline::schedule::Task::Run(task) => task,
    };
    let winesitting = shared::function::winesitting_source(&config, &clients.secrets)?;
    let queued = pipeline::schedule::fan_out(
        task,
        shared::function::accounts_of(task, &revel, Some(&winesitting))?,
        jobs.as_ref(),
        only.as_ref(),
        now,
    )
    .await?;
    let names: Vec<&str> = queued.iter().map(|i| i.as_str()).collect();
    println!(
        "{}: queued one job per instance: {names:?}; the worker in `make local` runs them",
        task.name()
    );
    Ok(())
}

/// The scheduler's tick at `now`, with a line per instance: its local
/// time, and what was due there (queued now, or already by an earlier tick).
async fn tick(
    revel: &vendors::revel::Revel,
    jobs: &dyn ports::queue::JobQueue,
    state: &dyn ports::sync_state::SyncState,
    now: time::OffsetDateTime,
) -> Result<(), Error> {
    let queued = pipeline::schedule::tick(revel.secrets(), jobs, state, now).await?;
    let document = revel.secrets().document().await?;
    println!(
        "tick at {}:",
        now.format(&time::format_description::well_known::Rfc3339)?
    );
    for instance in document.api_instances() {
        let settings = document.settings(&instance);
        let local = pipeline::schedule::local_time(&settings, now);
        let due = pipeline::schedule::due(&settings, now);
        let what: Vec<String> = due
            .iter()
            .map(|slot| {
                let jobs: Vec<&str> = slot.cadence.jobs().iter().map(|j| j.name()).collect();
                let when = if queued
                    .iter()
                    .any(|q| q.instance == instance && q.slot == *slot)
                {
                    "queued now"
                } else {
                    "already queued by an earlier tick"
                };
                format!("{} ({}): {when}", slot.id, jobs.join(", "))
            })
            .collect();
        println!(
            "  {:<10} {:<20} local {} {:02}:{:02}  end of day {:02}:{:02}, inventory every 2 h: {:<3} -> {}",
            instance.as_str(),
            settings.time_zone.name(),
            local.date(),
            local.hour(),
            local.minute(),
            settings.end_of_day.hour(),
            settings.end_of_day.minute(),
            if settings.inventory_every_2h { "yes" } else { "no" },
            if what.is_empty() { "nothing due".to_owned() } else { what.join("; ") },
        );
    }
    if !queued.is_empty() {
        println!("the worker in `make local` runs the queued jobs");
    }
    Ok(())
}

/// `partner stop|start|status`: the running stack's control routes.
async fn partner_control(args: PartnerArgs) -> Result<(), Error> {
    let base = match args.url {
        Some(url) => url,
        None => RunningStack::read(Path::new(local_stack::STATE_FILE))?.url,
    };
    let base = base.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let request = match args.action {
        PartnerAction::Stop => client.post(format!("{base}/local/partner/stop")),
        PartnerAction::Start => client.post(format!("{base}/local/partner/start")),
        PartnerAction::Status => client.get(format!("{base}/local/partner")),
    };
    let answer = request
        .send()
        .await
        .map_err(|e| format!("{base}: {e} (is `make local` running?)"))?;
    let status = answer.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(format!("{base} has no partner control: restart `make local`").into());
    }
    if !status.is_success() {
        return Err(format!(
            "{base}: HTTP {status}: {}",
            answer.text().await.unwrap_or_default()
        )
        .into());
    }
    let state: partner::PartnerState = answer.json().await?;
    let how = match (args.action, state.changed) {
        (PartnerAction::Status, _) => "",
        (_, true) => " now",
        (_, false) => " already",
    };
    if state.running {
        println!(
            "partner stand-in: running{how}, taking deliveries at {}",
            state.url
        );
    } else {
        println!(
            "partner stand-in: stopped{how}; {} refuses connections (`make partner-start`)",
            state.url
        );
    }
    Ok(())
}

async fn post_events(args: PostEventsArgs) -> Result<(), Error> {
    let wait = Duration::from_secs(args.wait_seconds);
    post::run(&args.dir, args.url.as_deref(), wait).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("local-stack").chain(line.split_whitespace()))
            .map(|cli| cli.command)
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn up_takes_the_makefiles_flags_and_defaults_to_3000_and_5000_with_the_worker() {
        let Command::Up(args) = parse("up").unwrap() else {
            panic!()
        };
        assert_eq!((args.port, args.aws_port), (3000, 5000));
        assert_eq!(args.partner_port, 0, "a free port unless one is chosen");
        assert_eq!(args.python, PathBuf::from(".venv/bin/python"));
        assert!(!args.no_worker);
        let Command::Up(args) = parse(
            "up --port 4100 --aws-port 4101 --partner-port 4102 --python /v/bin/python --no-worker",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!((args.port, args.aws_port), (4100, 4101));
        assert_eq!(args.partner_port, 4102);
        assert_eq!(args.python, PathBuf::from("/v/bin/python"));
        assert!(args.no_worker);
    }

    #[test]
    fn trigger_reads_its_task_instance_and_time() {
        let Command::Trigger(args) =
            parse("trigger product_sync --instance Demo --at 2026-11-30T07:55:00Z").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            args.task,
            pipeline::schedule::Task::Run(ports::queue::JobKind::ProductSync)
        );
        assert_eq!(args.instance.unwrap().as_str(), "demo");
        assert_eq!(args.at.unwrap().unix_timestamp(), 1_796_025_300);
        let Command::Trigger(args) = parse("trigger tick").unwrap() else {
            panic!()
        };
        assert_eq!(args.task, pipeline::schedule::Task::Tick);
        assert_eq!((args.instance, args.at), (None, None));
    }

    #[test]
    fn the_sample_commands_take_a_directory_and_default_to_events() {
        let Command::GenEvents(args) = parse("gen-events").unwrap() else {
            panic!()
        };
        assert_eq!(args.dir, events::default_dir());
        let Command::GenEvents(args) = parse("gen-events --dir /tmp/e").unwrap() else {
            panic!()
        };
        assert_eq!(args.dir, PathBuf::from("/tmp/e"));
        let Command::PostEvents(args) =
            parse("post-events --url http://127.0.0.1:3001 --wait-seconds 5").unwrap()
        else {
            panic!()
        };
        assert_eq!(args.dir, events::default_dir());
        assert_eq!(args.url.as_deref(), Some("http://127.0.0.1:3001"));
        assert_eq!(args.wait_seconds, 5);
        let Command::PostEvents(args) = parse("post-events").unwrap() else {
            panic!()
        };
        assert_eq!(Duration::from_secs(args.wait_seconds), post::DEFAULT_WAIT);
    }

    #[test]
    fn load_takes_the_url_and_its_flags() {
        let Command::Load(options) = parse("load --url http://127.0.0.1:4100 --count 500").unwrap()
        else {
            panic!()
        };
        assert_eq!(options.url.as_deref(), Some("http://127.0.0.1:4100"));
        assert_eq!(options.count, 500);
        assert_eq!(options.concurrency, 32);
    }

    #[test]
    fn partner_takes_stop_start_or_status_and_a_url() {
        for (line, action) in [
            ("partner stop", PartnerAction::Stop),
            ("partner start", PartnerAction::Start),
            ("partner status", PartnerAction::Status),
        ] {
            let Command::Partner(args) = parse(line).unwrap() else {
                panic!()
            };
            assert_eq!((args.action, args.url), (action, None));
        }
        let Command::Partner(args) = parse("partner stop --url http://127.0.0.1:4100").unwrap()
        else {
            panic!()
        };
        assert_eq!(args.url.as_deref(), Some("http://127.0.0.1:4100"));
    }

    #[test]
    fn bad_input_is_a_usage_error_with_exit_code_2() {
        for line in [
            "",
            "down",
            "up --port x",
            "up --port 70000",
            "up --port",
            "trigger",
            "trigger nap",
            "trigger tick --at tomorrow",
            "trigger reconcile --instance Bad!",
            "post-events --wait-seconds soon",
            "load --count 0",
            "gen-events --speed 9",
            "partner",
            "partner pause",
            "up --partner-port x",
        ] {
            let error = parse(line)
                .err()
                .unwrap_or_else(|| panic!("{line:?} parsed"));
            assert_eq!(error.exit_code(), 2, "{line:?}");
        }
    }
}
