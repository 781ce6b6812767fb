//! Follow-up jobs on the SQS FIFO queue.
//!
//! FIFO because it gives two things for free: per-entity order (the message
//! group is the entity, so a sync of an older state is never handled after a
//! newer one) and five minutes of deduplication by id: a job re-sent when the
//! processor retries a record is dropped. Nothing depends on the window
//! being longer: a repeat past it runs, and finds its work done.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::store::Rank;
use domain::error::DependencyError;
use domain::idempotency::sha256_hex;
use domain::ids::{EntityKey, EventKey, InstanceName};

/// SQS limits group and deduplication ids to 128 characters.
const MAX_SQS_ID: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Deliver the entity's new state downstream.
    SyncEntity,
    /// Pull the instance's catalog from the REST API (after a menu push).
    CatalogPull,
    /// End of day: products and modifiers.
    ProductSync,
    /// End of day: events.
    EventSync,
    /// Inventory: at each instance's end of day, and every 2 hours for
    /// instances with the retailer option.
    InventorySync,
    /// End of day: ingest orders whose webhook never arrived.
    Reconcile,
    /// Apply a change the partner system (VinesOS) sent to Revel.
    ApplyToRevel,
    /// Poll WineSitting for orders still in progress; repair missed webhooks.
    #[serde(rename = "winesitting_repair")]
    WineSittingRepair,
    /// Tell the partner what a Revel order sold: one stock change per
    /// product (in the order's message group, after the order itself).
    InventorySold,
    /// End of day: the partner's (VinesOS) new products and events, applied to Revel.
    PartnerCatalog,
    /// The partner searched: pull Revel's current stock of the products it
    /// named, or (without an entity) of every product still pending.
    InventoryRequest,
    /// End of day (and when planned): import what a newly connected
    /// instance already held, within a share of its budget, until done.
    Backfill,
}

impl JobKind {
    /// The name used in schedules and make targets: `product_sync`.
    pub fn name(self) -> &'static str {
        match self {
            Self::SyncEntity => "sync_entity",
            Self::CatalogPull => "catalog_pull",
            Self::ProductSync => "product_sync",
            Self::EventSync => "event_sync",
            Self::InventorySync => "inventory_sync",
            Self::Reconcile => "reconcile",
            Self::ApplyToRevel => "apply_to_revel",
            Self::WineSittingRepair => "winesitting_repair",
            Self::InventorySold => "inventory_sold",
            Self::PartnerCatalog => "partner_catalog",
            Self::InventoryRequest => "inventory_request",
            Self::Backfill => "backfill",
        }
    }

    /// Every job kind.
    pub const ALL: [Self; 12] = [
        Self::SyncEntity,
        Self::CatalogPull,
        Self::ProductSync,
        Self::EventSync,
        Self::InventorySync,
        Self::Reconcile,
        Self::ApplyToRevel,
        Self::WineSittingRepair,
        Self::InventorySold,
        Self::PartnerCatalog,
        Self::InventoryRequest,
        Self::Backfill,
    ];

    /// The kinds the scheduler queues on its clock (and an operator can
    /// trigger by hand): the one list of scheduled tasks.
    pub const SCHEDULED: [Self; 7] = [
        Self::ProductSync,
        Self::EventSync,
        Self::InventorySync,
        Self::Reconcile,
        Self::WineSittingRepair,
        Self::PartnerCatalog,
        Self::Backfill,
    ];

    /// The scheduled task named `name`.
    pub fn scheduled(name: &str) -> Option<Self> {
        Self::SCHEDULED.into_iter().find(|k| k.name() == name)
    }
}

/// The message body consumers read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    pub job: JobKind,
    pub source: String,
    pub instance: String,
    pub event_type: String,
    /// The archived event that caused the job.
    pub event_key: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entity_key: Option<String>,
    /// The version of the change that caused it (µs): a sync's entity
    /// version, a catalog pull's push receipt.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version: Option<i64>,
}

/// A job as queued: its message, its FIFO message group and its
/// deduplication id (the worker reads one back as a `worker::Job`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub message: JobMessage,
    pub group_id: String,
    pub deduplication_id: String,
}

/// The message group of a pull: the end-of-day product sync and the catalog
/// pull after a menu push share one, since they move the same cursor.
fn pull_group(kind: JobKind, source: &str, instance: &InstanceName) -> String {
    let name = match kind {
        JobKind::ProductSync | JobKind::CatalogPull => "catalog",
        other => other.name(),
    };
    sqs_id(&format!("{name}:{source}:{instance}"))
}

impl JobMessage {
    fn new(
        kind: JobKind,
        source: &str,
        instance: &InstanceName,
        event_type: &str,
        event_key: &str,
    ) -> Self {
        Self {
            job: kind,
            source: source.to_owned(),
            instance: instance.to_string(),
            event_type: event_type.to_owned(),
            event_key: event_key.to_owned(),
            entity_key: None,
            version: None,
        }
    }
}

fn sqs_id(raw: &str) -> String {
    if raw.len() <= MAX_SQS_ID {
        raw.to_owned()
    } else {
        sha256_hex(raw.as_bytes())
    }
}

impl QueuedJob {
    /// A job about one change of one entity (a sync to the partner, or an
    /// apply to Revel): the message group is the entity, so its jobs run in
    /// order; the deduplication id is the entity and the change's rank, so
    /// the same change queued twice is one job and a new one never is.
    pub fn for_entity(
        kind: JobKind,
        source: &str,
        instance: &InstanceName,
        event_type: &str,
        event: &EventKey,
        entity: &EntityKey,
        rank: &Rank,
    ) -> Self {
        Self {
            message: JobMessage {
                entity_key: Some(entity.to_string()),
                version: Some(rank.version),
                ..JobMessage::new(kind, source, instance, event_type, event.as_str())
            },
            group_id: sqs_id(entity.as_str()),
            deduplication_id: sha256_hex(
                format!(
                    "{}:{entity}@{}:{}",
                    kind.name(),
                    rank.version,
                    rank.tiebreak
                )
                .as_bytes(),
            ),
        }
    }

    /// A catalog pull asked for by a menu push received at `pushed_at_micros`.
    /// One per push; the worker skips it when a pull that started after the
    /// push has completed, so a burst of pushes costs one pull.
    pub fn catalog_pull(
        source: &str,
        instance: &InstanceName,
        event_type: &str,
        event: &EventKey,
        pushed_at_micros: i64,
    ) -> Self {
        Self {
            message: JobMessage {
                version: Some(pushed_at_micros),
                ..JobMessage::new(
                    JobKind::CatalogPull,
                    source,
                    instance,
                    event_type,
                    event.as_str(),
                )
            },
            group_id: pull_group(JobKind::CatalogPull, source, instance),
            deduplication_id: sha256_hex(
                format!("catalog-pull:{source}:{instance}:{pushed_at_micros}").as_bytes(),
            ),
        }
    }
}

impl QueuedJob {
    /// One scheduled task for one instance. `window` names the scheduled
    /// run (its hour), so a schedule that fires twice queues it once; one
    /// message group per instance and task, so instances don't wait on each
    /// other and runs of one task for one instance never overlap. `source`
    /// is the instance's (Revel's, whose instances the schedule runs for).
    pub fn scheduled(kind: JobKind, source: &str, instance: &InstanceName, window: &str) -> Self {
        Self {
            message: JobMessage::new(
                kind,
                source,
                instance,
                kind.name(),
                &format!("schedule:{}:{instance}:{window}", kind.name()),
            ),
            group_id: pull_group(kind, source, instance),
            deduplication_id: sha256_hex(format!("{}:{instance}:{window}", kind.name()).as_bytes()),
        }
    }
}

impl QueuedJob {
    /// An inventory request's job as the processor queues it
    /// ([`QueuedJob::for_entity`]), in the message group of the requests of
    /// its Revel instance (`source` names Revel, whose instance the
    /// request's route names): one at a time per instance.
    pub fn in_instance_group(mut self, source: &str) -> Self {
        self.group_id = format!("inventory_request:{source}:{}", self.message.instance);
        self
    }
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    async fn enqueue(&self, job: &QueuedJob) -> Result<(), DependencyError>;
}

/// SQS's longest visibility timeout: a received message can be put off at
/// most this long at a time (ChangeMessageVisibility refuses more).
pub const MAX_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

/// A job message as the worker received it: each receive has a receipt
/// handle of its own, and only the latest one acts on the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedJob {
    pub message_id: String,
    /// `None` when the event carried none: nothing can be changed of it.
    pub receipt_handle: Option<String>,
    /// Its message group (FIFO): the entity, or the pull.
    pub group_id: String,
    pub body: String,
    /// How many times it has been received, this time included
    /// (`ApproximateReceiveCount`).
    pub receive_count: u32,
}

/// Why a message could not be parked.
#[derive(Debug, thiserror::Error)]
pub enum ParkError {
    /// The deployment names no dead-letter queue for the worker.
    #[error("no dead-letter queue is configured")]
    NoDeadLetterQueue,
    #[error(transparent)]
    Unavailable(#[from] DependencyError),
}

/// The consuming side of the jobs queue: what becomes of a received message
/// the worker did not finish. A finished one is deleted by Lambda's event
/// source (it deletes what the batch response does not report failed); a
/// failed one comes back after the queue's visibility timeout unless put
/// off or parked here, and reaches the dead-letter queue by the redrive
/// policy after its receives run out.
#[async_trait]
pub trait InFlightJobs: Send + Sync {
    /// Makes `job` visible again `wait` from now (ChangeMessageVisibility):
    /// at most [`MAX_VISIBILITY_TIMEOUT`], zero for at once.
    async fn retry_after(&self, job: &ReceivedJob, wait: Duration) -> Result<(), DependencyError>;

    /// Moves `job` to the dead-letter queue: sent there in its group
    /// (deduplicated by its message id), then deleted from the queue, so it
    /// is parked even if the batch's answer is lost.
    async fn park(&self, job: &ReceivedJob) -> Result<(), ParkError>;
}

/// No say over received messages: each comes back after the queue's own
/// visibility timeout, and reaches the dead-letter queue only by its redrive
/// policy (the simulation's queue, which runs both itself).
pub struct QueueDefaults;

#[async_trait]
impl InFlightJobs for QueueDefaults {
    async fn retry_after(
        &self,
        _job: &ReceivedJob,
        _wait: Duration,
    ) -> Result<(), DependencyError> {
        Ok(())
    }

    async fn park(&self, _job: &ReceivedJob) -> Result<(), ParkError> {
        Err(ParkError::NoDeadLetterQueue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_job_kind_is_sent_as_its_name_and_read_back() {
        let names: std::collections::BTreeSet<&str> =
            JobKind::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(names.len(), JobKind::ALL.len());
        for kind in JobKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(serde_json::from_str::<JobKind>(&json).unwrap(), kind);
        }
        for kind in JobKind::SCHEDULED {
            assert_eq!(JobKind::scheduled(kind.name()), Some(kind));
        }
        assert_eq!(JobKind::scheduled(JobKind::SyncEntity.name()), None);
    }

    fn rank(version: i64, sha: &str) -> Rank {
        Rank::new(version, false, sha)
    }

    #[test]
    fn the_same_change_queued_twice_is_one_job_and_any_other_change_is_another() {
        let demo = InstanceName::parse("demo").unwrap();
        let event = EventKey::parse("revel:demo:customer.updated:biz:c@1").unwrap();
        let entity = EntityKey::parse("revel:demo:customer:c").unwrap();
        let job = |rank: &Rank| {
            QueuedJob::for_entity(
                JobKind::SyncEntity,
                "revel",
                &demo,
                "customer.updated",
                &event,
                &entity,
                rank,
            )
        };
        let first = job(&rank(1, "aa"));
        assert_eq!(first.deduplication_id, job(&rank(1, "aa")).deduplication_id);
        assert_ne!(first.deduplication_id, job(&rank(2, "aa")).deduplication_id);
        assert_ne!(first.deduplication_id, job(&rank(1, "bb")).deduplication_id);
        assert_eq!(first.group_id, "revel:demo:customer:c");
        assert_eq!(first.message.version, Some(1));
    }

    #[test]
    fn each_menu_push_asks_for_its_own_pull_in_the_instances_catalog_group() {
        let demo = InstanceName::parse("demo").unwrap();
        let e = EventKey::parse("revel:demo:menu.updated:at:1:ab").unwrap();
        let a = QueuedJob::catalog_pull("revel", &demo, "menu.updated", &e, 600);
        let b = QueuedJob::catalog_pull("revel", &demo, "menu.updated", &e, 601);
        assert_ne!(a.deduplication_id, b.deduplication_id);
        assert_eq!(a.group_id, "catalog:revel:demo");
        assert_eq!(a.message.version, Some(600));
    }

    #[test]
    fn ids_fit_sqs_limits() {
        let demo = InstanceName::parse("demo").unwrap();
        let event = EventKey::parse(&format!("revel:demo:x:{}", "e".repeat(300))).unwrap();
        let entity = EntityKey::parse(&format!("revel:demo:order:{}", "o".repeat(300))).unwrap();
        let job = QueuedJob::for_entity(
            JobKind::SyncEntity,
            "revel",
            &demo,
            "order.finalized",
            &event,
            &entity,
            &Rank::new(1, false, &"f".repeat(64)),
        );
        assert!(job.group_id.len() <= 128 && job.deduplication_id.len() <= 128);
    }
}
