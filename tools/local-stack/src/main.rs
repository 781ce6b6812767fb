//! `local-stack`: the bundle on one machine.
//!
//! - `up`: starts a local AWS endpoint (moto), creates template.yaml's
//!   tables, queues and secrets on it, puts the `demo` secret in place and
//!   serves every function at its route on http://127.0.0.1:3000;
//! - `gen-events`: writes the signed sample events in events/;
//! - `post-events`: posts every event in events/ to the running stack and
//!   prints the answer and what was stored;
//! - `load`: sends signed deliveries under load and checks each was stored once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use local_stack::provision::{local_sdk_config, provision, put_revel_secrets, Provisioned};
use local_stack::template::Template;
use local_stack::{events, gateway, Error, DEMO_INSTANCE, DEMO_SECRET};
use local_stack::{fake_revel, partner, worker_loop};
use serde_json::{json, Value};
use shared::config::{Config, SyncConfig};
use shared::function::{revel_source, AllSources, Clients};
use shared::revel_api::RevelApiConfig;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const USAGE: &str =
    "usage: local-stack up [--port 3000] [--aws-port 5000] [--python .venv/bin/python] [--no-worker]
       local-stack gen-events [--dir events]
       local-stack post-events [--dir events] [--url http://127.0.0.1:3000]
       local-stack trigger product_sync|event_sync|inventory_sync|reconcile|winesitting_repair
       local-stack load [--count 10000] [--repeat-percent 30] [--concurrency 32] [--url URL] [--max-seconds 300]";

/// Where `up` records the endpoint and environment for `post-events`.
const STATE_FILE: &str = ".local/stack.json";

fn flag(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("up") => up(&args).await,
        Some("gen-events") => gen_events(&args),
        Some("post-events") => post_events(&args).await,
        Some("trigger") => trigger(&args).await,
        Some("load") => local_stack::load::run(&args[1..]).await,
        _ => Err(USAGE.into()),
    };
    if let Err(error) = result {
        eprintln!("local-stack: {error}");
        std::process::exit(1);
    }
}

fn gen_events(args: &[String]) -> Result<(), Error> {
    let dir = PathBuf::from(flag(
        args,
        "--dir",
        &events::default_dir().to_string_lossy(),
    ));
    for path in events::write_all(&dir)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

async fn up(args: &[String]) -> Result<(), Error> {
    shared::telemetry::init();
    let port = flag(args, "--port", "3000");
    let aws_port = flag(args, "--aws-port", "5000");
    let python = flag(args, "--python", ".venv/bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local_aws.py");

    // The endpoint stops when this process ends: it reads our end of a pipe.
    let mut moto = tokio::process::Command::new(&python)
        .arg(&script)
        .args(["--port", &aws_port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "starting {python} {}: {e} (run `make venv` first)",
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
        &local_stack::demo_revel_secret_document(),
    )
    .await?;
    local_stack::provision::put_demo_secrets(&sdk, &provisioned).await?;
    let base = format!("http://127.0.0.1:{port}");
    // Revel's API and the partner system are stand-ins served beside the functions.
    for (name, value) in [
        (
            "REVEL_API_BASE_URL",
            format!("{base}/revel-api/{{instance}}"),
        ),
        ("DOWNSTREAM_URL", format!("{base}/partner/webhooks")),
        ("INVENTORY_SYNC_INSTANCES", "*".to_owned()),
        (
            "WINESITTING_API_BASE_URL",
            format!("{base}/winesitting-api"),
        ),
        // The fixtures are dated 2016, like Revel's webhook samples.
        ("RECONCILE_LOOKBACK_HOURS", (24 * 365 * 20).to_string()),
    ] {
        provisioned.env.insert(name.to_owned(), value);
    }
    let config = Config::from_lookup(provisioned.lookup())?;
    let sync = SyncConfig::from_lookup(provisioned.lookup())?;
    let clients = Clients::from_sdk(&sdk);
    let sources = AllSources::new(&config, &clients)?;
    let source = sources.revel.clone();
    let routes = gateway::routes(&template, |function| {
        sources.receiver_for(function, &config, &clients)
    })?;

    std::fs::create_dir_all(".local")?;
    std::fs::write(
        STATE_FILE,
        json!({"endpoint": endpoint, "env": provisioned.env, "url": base}).to_string(),
    )?;
    // For `cargo lambda watch --env-file .local/functions.env`: the real
    // function binaries, pointed at the same local endpoint.
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
    let extra = axum::Router::new()
        .route(
            "/winesitting-api/orders",
            axum::routing::get(local_stack::fake_winesitting::orders),
        )
        .route(
            "/revel-api/{instance}/resources/{resource}/",
            axum::routing::get(fake_revel::resources).post(fake_revel::write),
        )
        .route(
            "/revel-api/{instance}/resources/{resource}/{id}/",
            axum::routing::patch(fake_revel::write),
        )
        .with_state(fake_revel::Fixtures::new(fake_revel::default_dir()))
        .merge(
            axum::Router::new()
                .route("/partner/webhooks", axum::routing::post(partner::receive))
                .with_state(partner::Partner::new(&signing_secret)?),
        );
    // The worker, polling the local queue as Lambda's SQS event source would.
    let api = RevelApiConfig {
        base_url: sync.revel_api_base_url.clone(),
        ..Default::default()
    };
    let downstream = shared::function::downstream(&sync, &clients).await?;
    let worker =
        shared::function::jobs_worker(&config, &sync, &clients, source.clone(), api, downstream);
    let (sqs, queue_url) = (clients.sqs.clone(), config.jobs_queue_url.clone());
    // `--no-worker` (the load benchmark): jobs stay queued, so the one local
    // endpoint serves only the receivers being measured.
    let run_worker = !args.iter().any(|a| a == "--no-worker");
    let polling = async move {
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
    };
    if run_worker {
        tokio::spawn(polling);
    }
    println!("\nLocal AWS endpoint (DynamoDB, SQS, Secrets Manager): {endpoint}");
    println!("  export AWS_ENDPOINT_URL={endpoint} AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local");
    for (name, value) in &provisioned.env {
        println!("  {name}={value}");
    }
    println!("\nRoutes (instance `{DEMO_INSTANCE}`, secret `{DEMO_SECRET}`):");
    let mut listed: Vec<_> = template.routes.iter().collect();
    listed.sort_by(|a, b| a.path.cmp(&b.path));
    for route in listed {
        println!(
            "  {} {base}{}  -> {}",
            route.method, route.path, route.function
        );
    }
    let body = r#"{"ping": "pong"}"#;
    let signature = shared::signature::sign(DEMO_SECRET.as_bytes(), body.as_bytes());
    println!("\nTry it:\n  curl -s -X POST {base}/revel/orders/finalized -H 'X-Revel-Instance: {DEMO_INSTANCE}' -H 'X-Revel-Signature: {signature}' -d '{body}'");
    println!("  make post-events    # posts every file in events/ and prints what was stored");
    println!("\nWorker: polling the jobs queue; deliveries go to {base}/partner/webhooks (verified, printed here).");
    println!("Revel API stand-in: {base}/revel-api/{DEMO_INSTANCE}/resources/{{Resource}}/ (fixtures in events/revel-api/)");
    println!("Scheduled functions, by hand:");
    for task in [
        "product_sync",
        "event_sync",
        "inventory_sync",
        "reconcile",
        "winesitting_repair",
    ] {
        println!("  make trigger TASK={task}");
    }
    println!();
    gateway::serve(listener, routes, extra).await?;
    drop(moto.stdin.take());
    Ok(())
}

fn attribute_text(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => Value::String(n.clone()),
        AttributeValue::B(b) => Value::String(format!("<{} bytes>", b.as_ref().len())),
        AttributeValue::M(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), attribute_text(v)))
                .collect(),
        ),
        other => Value::String(format!("{other:?}")),
    }
}

/// The running stack's endpoint and environment, as `up` recorded them.
fn running_stack() -> Result<(String, Provisioned), Error> {
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(STATE_FILE)
            .map_err(|_| "no .local/stack.json: is `make local` running?")?,
    )?;
    let endpoint = state["endpoint"]
        .as_str()
        .ok_or("bad state file")?
        .to_owned();
    let env: BTreeMap<String, String> = serde_json::from_value(state["env"].clone())?;
    Ok((
        endpoint,
        Provisioned {
            resources: BTreeMap::new(),
            env,
        },
    ))
}

/// Runs a scheduled function by hand: the same fan-out EventBridge triggers.
async fn trigger(args: &[String]) -> Result<(), Error> {
    let name = args.get(1).ok_or(USAGE)?;
    let task = shared::queue::JobKind::scheduled(name)
        .ok_or_else(|| format!("unknown task {name:?}\n{USAGE}"))?;
    let (endpoint, provisioned) = running_stack()?;
    let config = Config::from_lookup(provisioned.lookup())?;
    let sync = SyncConfig::from_lookup(provisioned.lookup())?;
    let clients = Clients::from_sdk(&local_sdk_config(&endpoint).await);
    let revel = revel_source(&config, &clients);
    let jobs = shared::function::jobs_queue(&config, &clients);
    let now = time::OffsetDateTime::now_utc();
    let winesitting = shared::function::winesitting_source(&config, &clients)?;
    let queued = shared::schedule::fan_out(
        task,
        shared::function::accounts_of(task, &revel, Some(&winesitting))?,
        jobs.as_ref(),
        &sync.inventory_instances,
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

async fn post_events(args: &[String]) -> Result<(), Error> {
    let dir = PathBuf::from(flag(
        args,
        "--dir",
        &events::default_dir().to_string_lossy(),
    ));
    let base = flag(args, "--url", "http://127.0.0.1:3000");
    let (endpoint, provisioned) = running_stack()?;
    let config = Config::from_lookup(provisioned.lookup())?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&local_sdk_config(&endpoint).await);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let http = reqwest::Client::new();
    for file in files {
        let event = events::resign(serde_json::from_str(&std::fs::read_to_string(&file)?)?);
        let body = event["body"].as_str().unwrap_or("");
        let body = if event["isBase64Encoded"].as_bool() == Some(true) {
            base64::engine::general_purpose::STANDARD.decode(body)?
        } else {
            body.as_bytes().to_vec()
        };
        let url = format!(
            "{}{}",
            base.trim_end_matches('/'),
            event["rawPath"].as_str().unwrap_or("/")
        );
        let mut request = http.post(url).body(body);
        for (name, value) in event["headers"].as_object().into_iter().flatten() {
            request = request.header(name.as_str(), value.as_str().unwrap_or_default());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let answer = response.text().await?;
        println!(
            "{} -> {status} {answer}",
            file.file_name().unwrap_or_default().to_string_lossy()
        );
        let answer: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        if let Some(event_key) = answer["event_id"].as_str() {
            let stored = get_item(&dynamodb, &config.events_table, "event_key", event_key).await?;
            let shown = pick(
                &stored,
                &[
                    "status",
                    "event_type",
                    "instance",
                    "body_bytes",
                    "body_encoding",
                    "entity_key",
                ],
            );
            println!("    stored event: {shown}");
            if let Some(AttributeValue::S(entity_key)) = stored.get("entity_key") {
                let entity =
                    get_item(&dynamodb, &config.entities_table, "entity_key", entity_key).await?;
                println!(
                    "    entity {entity_key}: {}",
                    pick(&entity, &["kind", "entity_id", "version", "revision"])
                );
            }
        }
    }
    Ok(())
}

async fn get_item(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    key_name: &str,
    key: &str,
) -> Result<std::collections::HashMap<String, AttributeValue>, Error> {
    Ok(dynamodb
        .get_item()
        .table_name(table)
        .key(key_name, AttributeValue::S(key.to_owned()))
        .send()
        .await?
        .item
        .unwrap_or_default())
}

/// The named attributes of `item`, as JSON for printing.
fn pick(item: &std::collections::HashMap<String, AttributeValue>, names: &[&str]) -> Value {
    Value::Object(
        names
            .iter()
            .filter_map(|k| Some((k.to_string(), attribute_text(item.get(*k)?))))
            .collect(),
    )
}
