//! The worker on fakes, for the tests of the runner and of each job.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use tokio::time::Instant;

pub use ports::fakes::{
    FixedSecrets, MemoryAllowance, MemoryEchoes, MemoryEntities, MemoryFifo, MemoryQueue,
    MemorySyncState, UnlimitedBudget,
};

use super::Worker;
use crate::apply::Applier;
use crate::fakes::MemoryAws;
use crate::sync::Syncer;
use domain::clock::Clock;
use domain::idempotency::sha256_hex;
use domain::ids::{EntityKey, InstanceName};
use domain::sources::EntityKind;
use ports::queue::{InFlightJobs, JobKind, JobMessage, QueueDefaults, ReceivedJob};
use ports::secrets::SecretCache;
use ports::store::{EntityStore, EntityUpsert, Rank};
use ports::sync_state::CallBudget;
use vendors::revel;
use vendors::revel::api::{RevelApi, RevelApiConfig, RevelResources};
use vendors::revel::{Revel, RevelEventType};
use vendors::vinesos::downstream::{DeliveryError, Downstream, Partner, SigningSecret};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A Revel secret document giving instance `demo` API credentials.
pub const WITH_API_CREDENTIALS: &str =
    r#"{"demo": {"webhook": "w", "api_key": "k", "api_secret": "s"}}"#;

/// What a test worker is made of; `worker` and `Parts::build` put it together.
pub struct Parts {
    pub entities: Arc<MemoryEntities>,
    pub partner: Option<Arc<dyn Partner>>,
    pub api: Arc<dyn RevelResources>,
    /// The Revel secret document (instances and their API credentials).
    pub secrets: &'static str,
    pub queue: Arc<MemoryQueue>,
    pub state: Arc<MemorySyncState>,
    /// Where failed messages are put off or parked: by default nowhere (the
    /// queue's own visibility timeout and redrive apply).
    pub in_flight: Arc<dyn InFlightJobs>,
    pub clock: Arc<dyn Clock>,
    pub budget: Arc<dyn CallBudget>,
    pub echoes: Arc<MemoryEchoes>,
}

impl Parts {
    pub fn new(entities: Arc<MemoryEntities>) -> Self {
        Self {
            entities,
            partner: None,
            api: Arc::new(RevelApi::new(
                RevelApiConfig::default(),
                Arc::new(UnlimitedBudget::default()),
            )),
            secrets: "{}",
            queue: Arc::default(),
            state: Arc::default(),
            in_flight: Arc::new(QueueDefaults),
            clock: domain::clock::system(),
            budget: Arc::new(UnlimitedBudget::default()),
            echoes: Arc::default(),
        }
    }

    /// Instance `demo` with API credentials, calling Revel through `api`,
    /// its failures put off and parked in `fifo`.
    pub fn calling(
        api: Arc<dyn RevelResources>,
        fifo: &Arc<MemoryFifo>,
        entities: Arc<MemoryEntities>,
    ) -> Self {
        Self {
            api,
            secrets: WITH_API_CREDENTIALS,
            in_flight: fifo.clone(),
            ..Self::new(entities)
        }
    }

    pub fn build(self) -> Worker {
        let revel = Arc::new(Revel::new(SecretCache::new(
            FixedSecrets(self.secrets.into()),
            Duration::from_secs(60),
        )));
        let memory = MemoryAws::default();
        Worker {
            in_flight: self.in_flight,
            clock: self.clock.clone(),
            entities: self.entities.clone(),
            jobs: self.queue,
            revel: revel.clone(),
            partner: self.partner,
            backfill_api: self.api.clone(),
            syncer: Syncer::new(
                self.api.clone(),
                self.state,
                self.entities.clone(),
                Duration::from_secs(3600),
                self.clock,
            ),
            orders: memory.receiver(revel, Arc::new(RevelEventType::OrderFinalized)),
            applier: Applier {
                api: self.api,
                entities: self.entities,
                echoes: self.echoes.clone(),
                zones: None,
            },
            echoes: self.echoes,
            budget: self.budget,
            on_demand: Arc::new(MemoryAllowance::new(12)),
            winesitting: None,
        }
    }
}

/// A partner client of the endpoint at `uri`.
pub fn downstream(uri: &str) -> Downstream {
    Downstream::new(
        uri,
        SigningSecret::parse(SECRET).unwrap(),
        Duration::from_secs(2),
    )
}

pub fn worker(entities: Arc<MemoryEntities>, downstream: Option<Downstream>) -> Worker {
    Parts {
        partner: downstream.map(|d| Arc::new(d) as Arc<dyn Partner>),
        ..Parts::new(entities)
    }
    .build()
}

pub async fn entity(entities: &MemoryEntities, id: &str, version: i64) -> EntityKey {
    kept(
        entities,
        ("revel", revel::Entity::Customer, id),
        version,
        serde_json::json!({}),
    )
    .await
}

/// Keeps `state` as entity (source, kind, id) of instance `demo` at `version`.
pub async fn kept(
    entities: &MemoryEntities,
    (source, kind, id): (&'static str, impl Into<EntityKind>, &str),
    version: i64,
    state: serde_json::Value,
) -> EntityKey {
    let instance = InstanceName::parse("demo").unwrap();
    let kind = kind.into();
    let key = EntityKey::new(source, &instance, kind, id).unwrap();
    let state_json = state.to_string();
    let sha = sha256_hex(state_json.as_bytes());
    entities
        .upsert(&EntityUpsert {
            key: key.clone(),
            source,
            instance,
            kind,
            entity_id: id.into(),
            rank: Rank::new(version, false, &sha),
            state_json,
            state_sha256: sha,
            event_key: domain::ids::EventKey::parse("revel:demo:customer.updated:x").unwrap(),
        })
        .await
        .unwrap();
    key
}

pub fn message(id: &str, group: &str, body: &str) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some(id.into());
    message.body = Some(body.into());
    message
        .attributes
        .insert("MessageGroupId".into(), group.into());
    message
}

/// A job message body of instance `demo`.
pub fn job_body(job: JobKind, entity_key: Option<&EntityKey>, version: Option<i64>) -> String {
    serde_json::to_string(&JobMessage {
        job,
        source: "revel".into(),
        instance: "demo".into(),
        event_type: "customer.updated".into(),
        event_key: "revel:demo:customer.updated:x".into(),
        entity_key: entity_key.map(EntityKey::to_string),
        version,
    })
    .unwrap()
}

/// Runs `batch`; the ids it reports failed, in order.
pub async fn failed_ids(worker: &Worker, batch: SqsEvent) -> Vec<String> {
    worker
        .handle_batch(batch, Instant::now() + Duration::from_secs(30))
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

pub fn sync_job(key: &EntityKey) -> String {
    job_body(JobKind::SyncEntity, Some(key), None)
}

pub fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

/// The Lambda event of messages received from a queue.
pub fn event_of(received: &[ReceivedJob]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for job in received {
        let mut message = message(&job.message_id, &job.group_id, &job.body);
        message.receipt_handle = job.receipt_handle.clone();
        message.attributes.insert(
            "ApproximateReceiveCount".into(),
            job.receive_count.to_string(),
        );
        event.records.push(message);
    }
    event
}

/// One invocation as Lambda's event source makes it: receives a batch from
/// `fifo`, hands it to `worker` with 30 s to go, deletes what the answer
/// does not report failed. The ids reported failed.
pub async fn invoke(worker: &Worker, fifo: &MemoryFifo) -> Vec<String> {
    let received = fifo.receive(10);
    let failed = failed_ids(worker, event_of(&received)).await;
    for job in &received {
        if !failed.contains(&job.message_id) {
            fifo.delete(job.receipt_handle.as_deref().unwrap());
        }
    }
    failed
}

/// The first retry's wait (a message's first receive failed).
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);

/// One invocation over `fifo` in which message `id` fails and is put off
/// by `wait`.
pub async fn fails_and_comes_back_in(worker: &Worker, fifo: &MemoryFifo, id: &str, wait: Duration) {
    assert_eq!(invoke(worker, fifo).await, [id], "{id} failed");
    assert_eq!(fifo.hidden_for(id), Some(wait), "{id} comes back then");
}

/// `wait` later, one invocation over `fifo` in which every message is done.
pub async fn all_done_after(worker: &Worker, fifo: &MemoryFifo, wait: Duration) {
    tokio::time::advance(wait).await;
    assert!(invoke(worker, fifo).await.is_empty(), "all done");
}

/// The jobs queue as SQS runs it (a 360 s visibility timeout, a
/// dead-letter queue), for a worker to put off and park in.
pub fn fifo() -> Arc<MemoryFifo> {
    Arc::new(MemoryFifo::new(Duration::from_secs(360)))
}

/// The partner in memory: each message it took (id and body), in order.
/// Deliveries about the entity `hang_on` never end; the delivery
/// numbered `fail_at` (from 0) is answered 503; those about the entity
/// `refuse` are refused (422).
#[derive(Default)]
pub struct MemoryPartner {
    pub sent: Mutex<Vec<(String, serde_json::Value)>>,
    pub attempts: std::sync::atomic::AtomicUsize,
    pub hang_on: Option<&'static str>,
    pub fail_at: Option<usize>,
    pub refuse: Option<&'static str>,
}

#[async_trait::async_trait]
impl Partner for MemoryPartner {
    async fn deliver(&self, message_id: &str, body: &[u8]) -> Result<(), DeliveryError> {
        let body: serde_json::Value = serde_json::from_slice(body).unwrap();
        if self.hang_on.is_some_and(|id| body["data"]["id"] == id) {
            std::future::pending::<()>().await;
        }
        let attempt = self
            .attempts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.refuse.is_some_and(|id| body["data"]["id"] == id) {
            return Err(DeliveryError::Rejected { status: 422 });
        }
        if self.fail_at == Some(attempt) {
            return Err(DeliveryError::Unavailable { status: Some(503) });
        }
        self.sent
            .lock()
            .unwrap()
            .push((message_id.to_owned(), body));
        Ok(())
    }
}

impl MemoryPartner {
    pub fn sent(&self) -> Vec<(String, serde_json::Value)> {
        self.sent.lock().unwrap().clone()
    }
}

pub fn delivering(entities: Arc<MemoryEntities>, partner: Arc<MemoryPartner>) -> Worker {
    Parts {
        partner: Some(partner),
        ..Parts::new(entities)
    }
    .build()
}
