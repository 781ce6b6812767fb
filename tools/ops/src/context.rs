//! The clients and resource names a command works with.

use std::sync::Arc;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use shared::config::{Config, Settings};
use shared::ingest::replay::DynamoArchive;
use shared::ingest::Stores;
use shared::queue::SqsJobQueue;
use shared::store::dynamodb::{DynamoEntityStore, DynamoEventStore};
use shared::sync_state::DynamoSyncState;

use crate::error::OpsError;
use crate::Resources;

pub struct Context {
    pub resources: Resources,
    pub json: bool,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
}

fn required<'a>(
    value: &'a Option<String>,
    env: &'static str,
    flag: &'static str,
) -> Result<&'a str, OpsError> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(OpsError::Missing { env, flag })
}

impl Context {
    /// Region, credentials and endpoint the standard way (`AWS_REGION`,
    /// `AWS_PROFILE`, `AWS_ENDPOINT_URL`, …); more patient timeouts than the
    /// functions', which answer within Revel's 10 s.
    pub async fn new(resources: Resources, json: bool) -> Self {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            )
            .load()
            .await;
        Self {
            resources,
            json,
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
        }
    }

    pub fn events_table(&self) -> Result<&str, OpsError> {
        required(&self.resources.events_table, "EVENTS_TABLE", "events-table")
    }

    pub fn entities_table(&self) -> Result<&str, OpsError> {
        required(
            &self.resources.entities_table,
            "ENTITIES_TABLE",
            "entities-table",
        )
    }

    pub fn jobs_queue_url(&self) -> Result<&str, OpsError> {
        required(
            &self.resources.jobs_queue_url,
            "JOBS_QUEUE_URL",
            "jobs-queue-url",
        )
    }

    pub fn dlq_url(&self) -> Result<&str, OpsError> {
        required(
            &self.resources.dlq_url,
            "JOBS_DEAD_LETTER_QUEUE_URL",
            "dlq-url",
        )
    }

    pub fn sync_state(&self) -> Result<DynamoSyncState, OpsError> {
        let table = required(
            &self.resources.sync_state_table,
            "SYNC_STATE_TABLE",
            "sync-state-table",
        )?;
        Ok(DynamoSyncState::new(
            self.dynamodb.clone(),
            table,
            self.resources.daily_budget,
        ))
    }

    pub fn sync_state_table(&self) -> Result<&str, OpsError> {
        required(
            &self.resources.sync_state_table,
            "SYNC_STATE_TABLE",
            "sync-state-table",
        )
    }

    /// The stores the ingest pipeline writes to, as the functions build them.
    pub fn stores(&self) -> Result<Stores, OpsError> {
        Ok(Stores {
            events: Arc::new(DynamoEventStore::new(
                self.dynamodb.clone(),
                self.events_table()?,
            )),
            entities: Arc::new(DynamoEntityStore::new(
                self.dynamodb.clone(),
                self.entities_table()?,
            )),
            jobs: Arc::new(SqsJobQueue::new(self.sqs.clone(), self.jobs_queue_url()?)),
        })
    }

    pub fn archive(&self) -> Result<DynamoArchive, OpsError> {
        Ok(DynamoArchive::new(
            self.dynamodb.clone(),
            self.events_table()?,
        ))
    }

    /// The pipeline's tunables (`PROCESSING_LEASE_SECONDS`, …), read from the
    /// environment as the functions read them.
    pub fn settings(&self) -> Result<Settings, OpsError> {
        const NAMED_BY_FLAGS: [&str; 4] = [
            "EVENTS_TABLE",
            "ENTITIES_TABLE",
            "JOBS_QUEUE_URL",
            "REVEL_WEBHOOK_SECRETS_ID",
        ];
        Config::from_lookup(|name| {
            if NAMED_BY_FLAGS.contains(&name) {
                // Resource names come from the flags; only the tunables are read here.
                Some("-".to_owned())
            } else {
                std::env::var(name).ok()
            }
        })
        .map(|config| config.settings)
        .map_err(|e| OpsError::Invalid {
            what: "settings",
            why: e.to_string(),
        })
    }
}
