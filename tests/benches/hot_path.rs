//! What a receiver does before its one network call, for every sample in
//! `events/`: from the API Gateway event (the JSON text Lambda hands over)
//! decoded by `lambda_http`, through `Receiver::prepare` (verify the sender,
//! parse and interpret the body, derive the event key, build the record,
//! gzip included), to the DynamoDB item of the record
//! (`aws_adapters::dynamodb::event_item`). Secrets come from a cache warmed
//! from a fixed document, as after a cold start; no network is touched.
//! `order_steps` breaks the order sample down by step.
//!
//! `make bench-hot-path` runs it and prints time per event and bytes per
//! second of body.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use vendors::functions::Kind;

use async_trait::async_trait;
use aws_adapters::dynamodb::event_item;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use domain::error::DependencyError;
use domain::request::WebhookRequest;
use local_stack::events::samples;
use local_stack::{
    DEMO_BOOKING_HEADER, DEMO_BOOKING_SECRET, DEMO_INSTANCE, DEMO_LA_INSTANCE, DEMO_SECRET,
    DEMO_VINESOS_SECRET, DEMO_WINESITTING_TOKEN,
};
use pipeline::config::Config;
use pipeline::receive::{Prepared, Receiver};
use ports::secrets::{SecretCache, SecretDocument, SecretSource};
use serde_json::json;
use shared::function::{AllSources, Clients};
use vendors::booking::Booking;
use vendors::revel::Revel;
use vendors::vinesos::VinesOs;
use vendors::winesitting::WineSitting;

/// A secret already in hand: the bench measures the cached path.
struct Fixed(String);

#[async_trait]
impl SecretSource for Fixed {
    async fn fetch(&self) -> Result<SecretDocument, DependencyError> {
        Ok(SecretDocument(self.0.clone()))
    }
}

fn cache(document: serde_json::Value) -> SecretCache {
    SecretCache::new(Fixed(document.to_string()), Duration::from_secs(3600))
}

/// Every receiver, with the demo secrets and clients that are never called.
fn receivers(runtime: &tokio::runtime::Runtime) -> (AllSources, Config, Clients) {
    let sources = AllSources {
        revel: Arc::new(Revel::new(cache(
            json!({ DEMO_INSTANCE: {"webhook": [DEMO_SECRET]} }),
        ))),
        winesitting: Arc::new(WineSitting::new(cache(
            json!({ DEMO_INSTANCE: {"token": DEMO_WINESITTING_TOKEN} }),
        ))),
        booking: Arc::new(Booking::new(
            cache(json!({ DEMO_INSTANCE: {"webhook": DEMO_BOOKING_SECRET} })),
            DEMO_BOOKING_HEADER,
        )),
        vinesos: Arc::new(VinesOs::new(cache(
            json!({ DEMO_INSTANCE: DEMO_VINESOS_SECRET, DEMO_LA_INSTANCE: DEMO_VINESOS_SECRET }),
        ))),
    };
    let config = Config::from_lookup(|name| {
        let value = match name {
            "EVENTS_TABLE" | "ENTITIES_TABLE" | "REVEL_WEBHOOK_SECRETS_ID" => "unused",
            "JOBS_QUEUE_URL" => "http://127.0.0.1:9/unused",
            _ => return None,
        };
        Some(value.to_owned())
    })
    .expect("static config is valid");
    let sdk = runtime.block_on(async {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .load()
            .await
    });
    (sources, config, Clients::from_sdk(&sdk))
}

fn hot_path(c: &mut Criterion) {
    // As every function sets it at cold start.
    shared::function::tune_allocator();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (sources, config, clients) = receivers(&runtime);
    let dir = local_stack::events::default_dir();
    let mut group = c.benchmark_group("receiver_before_first_network_call");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for sample in samples() {
        let raw = std::fs::read_to_string(dir.join(&sample.output)).expect("run `make events`");
        // VinesOS samples carry a signing time the receiver checks: sign them now.
        let event = local_stack::events::resign(serde_json::from_str(&raw).expect("event json"));
        let raw = event.to_string();
        let body_len = event["body"].as_str().map_or(0, str::len);
        let receiver: Receiver = sources
            .receiver_for(sample.kind.function().logical_id, &config, &clients)
            .expect("every sample has a receiver");
        // Loads the secrets once, as the function does at init.
        let warm = runtime.block_on(to_item(&receiver, &raw));
        assert!(
            warm > 0 || sample.payload == "ping.json",
            "{} did not verify",
            sample.output
        );
        group.throughput(Throughput::Bytes(body_len as u64));
        group.bench_function(sample.output.trim_end_matches(".json"), |b| {
            b.iter(|| runtime.block_on(to_item(&receiver, black_box(&raw))))
        });
    }
    group.finish();
}

/// From the API Gateway event to the record's item: the item's attribute
/// count (0 for a ping).
async fn to_item(receiver: &Receiver, raw: &str) -> usize {
    prepare(receiver, &decode(raw)).await
}

/// Verifies, reads and keys one request and builds its item; returns the
/// item's attribute count (0 for a ping).
async fn prepare(receiver: &Receiver, request: &WebhookRequest) -> usize {
    match receiver.prepare(request).await {
        Ok(Prepared::Event(event)) => event_item(event.record()).len(),
        Ok(Prepared::Pong) => 0,
        Err(error) => panic!("sample refused: {error}"),
    }
}

/// The request of an API Gateway event, decoded as the receivers' runtime
/// decodes it (`shared::http::ApiGatewayEvent`) and read by the handler.
fn decode(raw: &str) -> WebhookRequest {
    shared::http::webhook_request(
        serde_json::from_str(raw).expect("an API Gateway v2 event"),
        Some("bench"),
    )
}

/// The order's and the customer's steps one by one, to see where their
/// time goes.
fn steps(c: &mut Criterion) {
    use domain::sources::EventKind;
    use vendors::revel::RevelEventType;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (sources, config, clients) = receivers(&runtime);
    let mut group = c.benchmark_group("steps");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for kind in [
        RevelEventType::OrderFinalized,
        RevelEventType::CustomerCreated,
    ] {
        let name = Kind::Revel(kind).function().crate_name;
        let raw = std::fs::read_to_string(
            local_stack::events::default_dir().join(format!("{name}.json")),
        )
        .expect("run `make events`");
        let receiver = sources
            .receiver_for(Kind::Revel(kind).function().logical_id, &config, &clients)
            .expect("receiver");
        let request = decode(&raw);
        let body: serde_json::Value = serde_json::from_slice(&request.body).expect("json");
        runtime.block_on(prepare(&receiver, &request));
        let Ok(Prepared::Event(prepared)) = runtime.block_on(receiver.prepare(&request)) else {
            panic!("the {name} sample prepares")
        };
        group.throughput(Throughput::Bytes(request.body.len() as u64));
        group.bench_function(format!("{name}/decode_api_gateway_event"), |b| {
            b.iter(|| decode(black_box(&raw)))
        });
        group.bench_function(format!("{name}/verify_signature"), |b| {
            b.iter(|| {
                runtime
                    .block_on(receiver.source().authenticate(black_box(&request)))
                    .unwrap()
            })
        });
        // What the receiver does: only the key fields become values.
        let paths = kind.key_fields().expect("key fields");
        group.bench_function(format!("{name}/project_key_fields_and_interpret"), |b| {
            b.iter(|| {
                let part = domain::projection::project(black_box(&request.body), paths).unwrap();
                kind.interpret(part, &request.headers).unwrap()
            })
        });
        // What it did before, and the processor still does: the whole body.
        group.bench_function(format!("{name}/parse_whole_body"), |b| {
            b.iter(|| {
                serde_json::from_slice::<serde_json::Value>(black_box(&request.body)).unwrap()
            })
        });
        // The parsed body is moved in; its copy is made outside the timing.
        group.bench_function(format!("{name}/interpret_whole_body"), |b| {
            b.iter_batched(
                || body.clone(),
                |body| kind.interpret(body, &request.headers).unwrap(),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("{name}/sha256"), |b| {
            b.iter(|| domain::idempotency::sha256_hex(black_box(&request.body)))
        });
        group.bench_function(format!("{name}/archive_body"), |b| {
            b.iter(|| ports::store::ArchivedBody::from_raw(black_box(&request.body)))
        });
        group.bench_function(format!("{name}/build_item"), |b| {
            b.iter(|| event_item(black_box(prepared.record())))
        });
    }
    group.finish();
}

/// The archive's codec choices on the order and the customer, each body's
/// compressed size written beside criterion's figures (a write unit is 1 KB of item, and the
/// record's other attributes are about 0.5 KB).
fn codecs(c: &mut Criterion) {
    use std::io::Write;
    let dir = local_stack::events::default_dir();
    let mut group = c.benchmark_group("archive_codecs");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut sizes = Vec::new();
    for name in ["revel-order-finalized", "revel-customer-created"] {
        let raw =
            std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("run `make events`");
        let event: serde_json::Value = serde_json::from_str(&raw).expect("event json");
        let body = event["body"]
            .as_str()
            .expect("a text body")
            .as_bytes()
            .to_vec();
        let fresh_gzip = |body: &[u8]| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(body).unwrap();
            encoder.finish().unwrap()
        };
        let snappy = |body: &[u8]| snap::raw::Encoder::new().compress_vec(body).unwrap();
        let lz4 = |body: &[u8]| lz4_flex::block::compress_prepend_size(body);
        sizes.push(serde_json::json!({
            "name": name,
            "raw": body.len(),
            "gzip": fresh_gzip(&body).len(),
            "snappy": snappy(&body).len(),
            "lz4": lz4(&body).len(),
        }));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("{name}/gzip_level_1"), |b| {
            b.iter(|| fresh_gzip(black_box(&body)))
        });
        group.bench_function(format!("{name}/snappy"), |b| {
            b.iter(|| snappy(black_box(&body)))
        });
        group.bench_function(format!("{name}/lz4"), |b| b.iter(|| lz4(black_box(&body))));
    }
    group.finish();
    // Beside criterion's figures, for tools/bench/hot_path_table.py.
    let out = dir.join("../target/criterion/archive_codecs");
    std::fs::create_dir_all(&out).expect("criterion's directory");
    std::fs::write(out.join("sizes.json"), serde_json::to_vec(&sizes).unwrap()).expect("sizes");
}

criterion_group!(benches, hot_path, steps, codecs);
criterion_main!(benches);
