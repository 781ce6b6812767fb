//! The entry point of every function crate: tracing, config and clients
//! once per cold start, then the Lambda runtime loop.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use lambda_http::{service_fn, Request};

use crate::config::Config;
use crate::ingest::{Ingestor, Stores};
use crate::queue::SqsJobQueue;
use crate::secrets::{SecretCache, SecretsManagerSource};
use crate::sources::revel::{Revel, RevelEventType};
use crate::sources::Source;
use crate::store::dynamodb::{DynamoEntityStore, DynamoEventStore};

pub type Error = lambda_http::Error;

/// The AWS clients a receiver uses. Events and entities may use different
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

/// Revel's source, with its secrets read through `clients`.
pub fn revel_source(config: &Config, clients: &Clients) -> Arc<Revel> {
    let secrets = SecretsManagerSource::new(clients.secrets.clone(), &config.revel_secrets_id);
    Arc::new(Revel::new(SecretCache::new(
        secrets,
        config.settings.secrets_ttl,
    )))
}

/// The stores of `config`, through `clients`.
pub fn stores(config: &Config, clients: &Clients) -> Stores {
    Stores {
        events: Arc::new(DynamoEventStore::new(
            clients.events.clone(),
            &config.events_table,
        )),
        entities: Arc::new(DynamoEntityStore::new(
            clients.entities.clone(),
            &config.entities_table,
        )),
        jobs: Arc::new(SqsJobQueue::new(
            clients.sqs.clone(),
            &config.jobs_queue_url,
        )),
    }
}

/// The receiver of one Revel webhook type.
pub fn revel_receiver(
    kind: RevelEventType,
    source: Arc<Revel>,
    config: &Config,
    clients: &Clients,
) -> Ingestor {
    Ingestor::new(
        source,
        Arc::new(kind),
        stores(config, clients),
        config.settings.clone(),
    )
}

/// Serves one Revel webhook type in the Lambda runtime.
pub async fn serve_revel(kind: RevelEventType) -> Result<(), Error> {
    crate::telemetry::init();
    let config = Config::from_env()?;
    let sdk = crate::aws::load().await;
    let clients = Clients::from_sdk(&sdk);
    let source = revel_source(&config, &clients);
    warm(source.as_ref()).await;
    let receiver = Arc::new(revel_receiver(kind, source, &config, &clients));
    tracing::info!(
        event_type = kind.name(),
        route = kind.route(),
        "receiver ready"
    );
    lambda_http::run(service_fn(move |request: Request| {
        let receiver = Arc::clone(&receiver);
        async move { Ok::<_, Infallible>(crate::http::handle(&receiver, request).await) }
    }))
    .await
}

/// Reads the secrets at init; a failure is logged, and each delivery retries
/// (answering 503 while they can't be read).
pub async fn warm(source: &dyn Source) {
    match tokio::time::timeout(Duration::from_secs(3), source.warm()).await {
        Ok(Ok(instances)) => tracing::info!(instances, "webhook secrets loaded"),
        Ok(Err(error)) => {
            crate::ingest::log_dependency(&error, "webhook secrets not loaded at init")
        }
        Err(_) => tracing::error!("webhook secrets not loaded at init: timed out"),
    }
}
