//! The clients and resource names a command works with.

use std::time::Duration;

use aws_adapters::dynamodb::{DynamoEntityStore, DynamoEventStore};
use aws_adapters::sync_state::DynamoSyncState;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;

use crate::error::OpsError;
use crate::Resources;

pub struct Context {
    pub resources: Resources,
    pub json: bool,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// The events table's stream (what the processor reads).
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// The Revel secret document (each instance's settings).
    pub secrets: aws_sdk_secretsmanager::Client,
}

pub fn required<'a>(
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
            streams: aws_sdk_dynamodbstreams::Client::new(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
        }
    }

    pub fn events_table(&self) -> Result<&str, OpsError> {
        required(&self.resources.events_table, "EVENTS_TABLE", "events-table")
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
        Ok(DynamoSyncState::new(
            self.dynamodb.clone(),
            self.sync_state_table()?,
            self.resources.daily_budget,
        ))
    }

    pub fn revel_secrets_id(&self) -> Result<&str, OpsError> {
        required(
            &self.resources.revel_secrets_id,
            "REVEL_WEBHOOK_SECRETS_ID",
            "revel-secrets-id",
        )
    }

    /// The Revel secret document, read as the functions read it (no
    /// secret of it is ever printed).
    pub async fn revel_instances(&self) -> Result<ports::secrets::InstanceSecrets, OpsError> {
        use ports::secrets::SecretSource;
        let raw = aws_adapters::secrets_manager::SecretsManagerSource::new(
            self.secrets.clone(),
            self.revel_secrets_id()?,
        )
        .fetch()
        .await?;
        ports::secrets::InstanceSecrets::parse_with(&raw, &self.default_zone()?).map_err(|e| {
            OpsError::Unreadable {
                what: "the Revel secret".into(),
                why: e.to_string(),
            }
        })
    }

    /// Each instance's API budget as its settings in `document` name it
    /// (the deployment's where they name none), over the sync-state table.
    pub fn instance_budgets(
        &self,
        document: &ports::secrets::InstanceSecrets,
    ) -> Result<ports::sync_state::InstanceBudgets, OpsError> {
        Ok(ports::sync_state::InstanceBudgets::new(
            std::sync::Arc::new(self.sync_state()?),
            std::sync::Arc::new(Read(std::sync::Arc::new(document.clone()))),
        ))
    }

    /// The zone of instances whose settings name none.
    pub fn default_zone(&self) -> Result<domain::local_time::Zone, OpsError> {
        domain::local_time::Zone::parse(&self.resources.default_time_zone).map_err(|e| {
            OpsError::Invalid {
                what: "--default-time-zone",
                why: e.to_string(),
            }
        })
    }

    pub fn sync_state_table(&self) -> Result<&str, OpsError> {
        required(
            &self.resources.sync_state_table,
            "SYNC_STATE_TABLE",
            "sync-state-table",
        )
    }

    /// The events archive, through the adapter the receivers write with.
    pub fn event_store(&self) -> Result<DynamoEventStore, OpsError> {
        Ok(DynamoEventStore::new(
            self.dynamodb.clone(),
            self.events_table()?,
        ))
    }

    /// The entities table, when it is named (`events show` then says where
    /// the event's entity stands).
    pub fn entity_store(&self) -> Option<DynamoEntityStore> {
        let table = required(
            &self.resources.entities_table,
            "ENTITIES_TABLE",
            "entities-table",
        )
        .ok()?;
        Some(DynamoEntityStore::new(self.dynamodb.clone(), table))
    }
}

/// A document already read, as the budgets' settings.
struct Read(std::sync::Arc<ports::secrets::InstanceSecrets>);

#[async_trait::async_trait]
impl ports::secrets::InstanceDocument for Read {
    async fn document(
        &self,
    ) -> Result<std::sync::Arc<ports::secrets::InstanceSecrets>, domain::error::DependencyError>
    {
        Ok(std::sync::Arc::clone(&self.0))
    }
}
