//! What TLS costs a function's first DynamoDB request: a fresh SDK
//! configuration built as the functions build theirs (`aws_adapters::sdk::load`,
//! from the environment), its first PutItem (connect, and over HTTPS the
//! handshake) and its second (the warm connection), against the stand-in
//! over HTTP and over HTTPS.
//!
//! Also what a fresh process pays once before its first HTTPS request:
//! loading the system's root certificates (rustls-native-certs, as the
//! SDK's rustls client does) into a root store.
//!
//! `cargo run --release -p lambda-sandbox --example tls_cost [rounds]`

use std::time::{Duration, Instant};

use clap::Parser;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
};
use lambda_sandbox::stand_in::{Options, StandIn};

fn set_env(endpoint: &str) {
    // Only this thread runs (a current-thread runtime): nothing reads the
    // environment while it changes.
    unsafe {
        std::env::set_var("AWS_ENDPOINT_URL", endpoint);
    }
}

async fn create_table(endpoint: &str) {
    set_env(endpoint);
    aws_sdk_dynamodb::Client::new(&aws_adapters::sdk::load().await)
        .create_table()
        .table_name("events")
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("event_key")
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema"),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("event_key")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition"),
        )
        .send()
        .await
        .expect("create table");
}

async fn put(client: &aws_sdk_dynamodb::Client, key: String) -> Duration {
    let start = Instant::now();
    client
        .put_item()
        .table_name("events")
        .item("event_key", AttributeValue::S(key))
        .item("status", AttributeValue::S("received".into()))
        .condition_expression("attribute_not_exists(event_key)")
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await
        .expect("put");
    start.elapsed()
}

/// One fresh client's first and second request.
async fn round(endpoint: &str, n: usize) -> (Duration, Duration, Duration) {
    set_env(endpoint);
    let start = Instant::now();
    let client = aws_sdk_dynamodb::Client::new(&aws_adapters::sdk::load().await);
    let build = start.elapsed();
    let first = put(&client, format!("first-{n}")).await;
    let second = put(&client, format!("second-{n}")).await;
    (build, first, second)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn summary(label: &str, mut values: Vec<Duration>) {
    values.sort();
    let pick = |q: f64| micros(values[((values.len() - 1) as f64 * q).round() as usize]);
    println!(
        "{label:<34} median {:>8.0} µs   p10 {:>8.0}   p90 {:>8.0}   (n={})",
        pick(0.5),
        pick(0.1),
        pick(0.9),
        values.len()
    );
}

/// What TLS costs a function's first DynamoDB request (a fresh SDK
/// configuration, its first and second PutItem, over HTTP and HTTPS against
/// the stand-in), and what loading the system's roots costs a fresh process.
#[derive(Debug, Parser)]
#[command(name = "tls_cost", long_about = None)]
struct Args {
    /// Fresh configurations per endpoint; the figures are their median,
    /// p10 and p90.
    #[arg(default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..))]
    rounds: u16,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds = usize::from(Args::parse().rounds);
    // Before SSL_CERT_FILE is set: the system's bundle, as in Lambda.
    let load = Instant::now();
    let native = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (valid, invalid) = roots.add_parsable_certificates(native.certs);
    println!(
        "system roots: {valid} loaded ({invalid} unparsable) in {:.0} µs, once per process",
        micros(load.elapsed())
    );
    let started = Instant::now();
    let http = StandIn::start(Options::http())
        .await
        .expect("http stand-in");
    let https_start = Instant::now();
    let https = StandIn::start(Options::https())
        .await
        .expect("https stand-in");
    let https_made = https_start.elapsed();
    let ca = https.ca_bundle_path().expect("a CA over HTTPS").to_owned();
    // As a function would be given it: the environment alone.
    unsafe {
        std::env::set_var("SSL_CERT_FILE", &ca);
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_ACCESS_KEY_ID", "local");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "local");
    }
    create_table(http.endpoint_url()).await;
    create_table(https.endpoint_url()).await;
    println!(
        "stand-ins up in {:.0} ms (the HTTPS one's RSA-2048 chain: {:.0} ms)",
        started.elapsed().as_secs_f64() * 1e3,
        https_made.as_secs_f64() * 1e3
    );
    let mut results = [
        (Vec::new(), Vec::new(), Vec::new()),
        (Vec::new(), Vec::new(), Vec::new()),
    ];
    for n in 0..rounds {
        for (i, stand_in) in [&http, &https].into_iter().enumerate() {
            let (build, first, second) = round(stand_in.endpoint_url(), n).await;
            results[i].0.push(build);
            results[i].1.push(first);
            results[i].2.push(second);
        }
    }
    for (name, (build, first, second)) in ["HTTP", "HTTPS"].iter().zip(results) {
        summary(&format!("{name} build the SDK config"), build);
        summary(&format!("{name} first PutItem (new connection)"), first);
        summary(&format!("{name} second PutItem (warm)"), second);
    }
    let calls = https.log().calls().len() + http.log().calls().len();
    println!("{calls} requests answered by the stand-ins");
}
