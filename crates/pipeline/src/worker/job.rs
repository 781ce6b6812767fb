//! The jobs: one enum, read from a message body ([`ports::queue::JobMessage`],
//! whose `job` is a [`JobKind`]), each variant run by its own file under
//! [`crate::worker::jobs`]. A message that reads as no job is a
//! [`ParseError`], and is parked.

use tokio::time::Instant;

use super::jobs;
use super::jobs::apply_to_revel::ApplyToRevel;
use super::jobs::deliver::Deliver;
use super::jobs::inventory_request::InventoryRequest;
use super::jobs::inventory_sold::InventorySold;
use super::jobs::pull::Pull;
use super::{JobError, Worker};
use crate::sync::{CATALOG, EVENTS, INVENTORY};
use domain::ids::{EntityKey, InstanceName};
use ports::queue::{JobKind, JobMessage};

/// Why a message is no job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty body")]
    EmptyBody,
    #[error("not a job message")]
    NotAJobMessage,
    #[error("bad instance")]
    BadInstance,
    #[error("job without entity")]
    NoEntity,
    #[error("bad entity key")]
    BadEntityKey,
    #[error("inventory sold by an order not Revel's")]
    NotRevelsOrder,
}

/// A job, as its message asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// `sync_entity`.
    DeliverToPartner(Deliver),
    /// `inventory_sold`.
    InventorySold(InventorySold),
    /// `catalog_pull`, `product_sync`, `event_sync`, `inventory_sync`.
    Pull(Pull),
    /// `reconcile`.
    Reconcile { instance: InstanceName },
    /// `apply_to_revel`.
    ApplyToRevel(ApplyToRevel),
    /// `winesitting_repair`.
    WineSittingRepair { account: InstanceName },
    /// `partner_catalog`.
    PartnerCatalog { instance: InstanceName },
    /// `inventory_request`.
    InventoryRequest(InventoryRequest),
    /// `backfill`.
    Backfill { instance: InstanceName },
}

impl Job {
    /// The job a message body asks for.
    pub fn parse(body: &str) -> Result<Self, ParseError> {
        if body.is_empty() {
            return Err(ParseError::EmptyBody);
        }
        let message: JobMessage =
            serde_json::from_str(body).map_err(|_| ParseError::NotAJobMessage)?;
        Self::from_message(&message)
    }

    /// The job `message` asks for.
    pub fn from_message(message: &JobMessage) -> Result<Self, ParseError> {
        let instance =
            InstanceName::parse(&message.instance).map_err(|_| ParseError::BadInstance)?;
        let entity = || -> Result<EntityKey, ParseError> {
            let raw = message.entity_key.as_deref().ok_or(ParseError::NoEntity)?;
            EntityKey::parse(raw).map_err(|_| ParseError::BadEntityKey)
        };
        let pull = |resources| {
            Self::Pull(Pull {
                instance: instance.clone(),
                kind: message.job,
                resources,
                // Only a push's pull is dated; a continuation carries it on.
                pushed_at: message
                    .version
                    .filter(|_| message.job == JobKind::CatalogPull),
            })
        };
        Ok(match message.job {
            JobKind::SyncEntity => Self::DeliverToPartner(Deliver {
                entity: entity()?,
                instance,
            }),
            JobKind::InventorySold => {
                let order = entity()?;
                if super::envelope::source_of(&order) != vendors::revel::NAME {
                    return Err(ParseError::NotRevelsOrder);
                }
                Self::InventorySold(InventorySold {
                    instance,
                    order,
                    event_key: message.event_key.clone(),
                })
            }
            JobKind::CatalogPull | JobKind::ProductSync => pull(&CATALOG),
            JobKind::EventSync => pull(&EVENTS),
            JobKind::InventorySync => pull(&INVENTORY),
            JobKind::Reconcile => Self::Reconcile { instance },
            JobKind::ApplyToRevel => Self::ApplyToRevel(ApplyToRevel {
                entity: entity()?,
                instance,
            }),
            JobKind::WineSittingRepair => Self::WineSittingRepair { account: instance },
            JobKind::PartnerCatalog => Self::PartnerCatalog { instance },
            JobKind::Backfill => Self::Backfill { instance },
            JobKind::InventoryRequest => Self::InventoryRequest(InventoryRequest {
                request: match message.entity_key {
                    Some(_) => Some(entity()?),
                    None => None,
                },
                not_before: message.version.filter(|_| message.entity_key.is_none()),
                instance,
            }),
        })
    }

    /// Runs the job until `deadline`.
    pub async fn run(self, worker: &Worker, deadline: Instant) -> Result<(), JobError> {
        match self {
            Self::DeliverToPartner(job) => job.run(worker).await,
            Self::InventorySold(job) => job.run(worker).await,
            Self::Pull(job) => job.run(worker, deadline).await,
            Self::Reconcile { instance } => jobs::reconcile::run(worker, &instance, deadline).await,
            Self::ApplyToRevel(job) => job.run(worker).await,
            Self::WineSittingRepair { account } => {
                jobs::winesitting_repair::run(worker, &account).await
            }
            Self::PartnerCatalog { instance } => {
                jobs::partner_catalog::run(worker, &instance, deadline).await
            }
            Self::InventoryRequest(job) => job.run(worker, deadline).await,
            Self::Backfill { instance } => jobs::backfill::run(worker, &instance, deadline).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(job: JobKind, entity_key: Option<&str>, version: Option<i64>) -> JobMessage {
        JobMessage {
            job,
            source: "revel".into(),
            instance: "demo".into(),
            event_type: "x".into(),
            event_key: "revel:demo:x:1".into(),
            entity_key: entity_key.map(str::to_owned),
            version,
        }
    }

    #[test]
    fn a_body_that_is_no_job_is_a_parse_error_that_parks() {
        let parsed = |body: &str| Job::parse(body).unwrap_err();
        assert_eq!(parsed(""), ParseError::EmptyBody);
        assert_eq!(parsed("not a job"), ParseError::NotAJobMessage);
        let bad_instance = serde_json::to_string(&JobMessage {
            instance: "-bad-".into(),
            ..message(JobKind::Reconcile, None, None)
        })
        .unwrap();
        assert_eq!(parsed(&bad_instance), ParseError::BadInstance);
        let without_entity = message(JobKind::SyncEntity, None, None);
        assert_eq!(
            Job::from_message(&without_entity).unwrap_err(),
            ParseError::NoEntity
        );
        let bad_key = message(JobKind::ApplyToRevel, Some("no such key"), None);
        assert_eq!(
            Job::from_message(&bad_key).unwrap_err(),
            ParseError::BadEntityKey
        );
        let not_revels = message(
            JobKind::InventorySold,
            Some("winesitting:demo:order:1"),
            None,
        );
        assert_eq!(
            Job::from_message(&not_revels).unwrap_err(),
            ParseError::NotRevelsOrder
        );
        let now = time::OffsetDateTime::UNIX_EPOCH;
        assert_eq!(
            JobError::from(ParseError::EmptyBody).disposition(now),
            super::super::Disposition::Park
        );
    }

    #[test]
    fn each_kind_of_job_message_reads_as_its_job_and_only_a_pushs_pull_is_dated() {
        let demo = InstanceName::parse("demo").unwrap();
        let key = "revel:demo:customer:c";
        let entity = EntityKey::parse(key).unwrap();
        let read = |kind, entity_key, version| {
            Job::from_message(&message(kind, entity_key, version)).unwrap()
        };
        assert_eq!(
            read(JobKind::SyncEntity, Some(key), Some(3)),
            Job::DeliverToPartner(Deliver {
                instance: demo.clone(),
                entity: entity.clone()
            })
        );
        let pull = |kind, resources, pushed_at| {
            Job::Pull(Pull {
                instance: demo.clone(),
                kind,
                resources,
                pushed_at,
            })
        };
        assert_eq!(
            read(JobKind::CatalogPull, None, Some(42)),
            pull(JobKind::CatalogPull, &CATALOG, Some(42))
        );
        assert_eq!(
            read(JobKind::ProductSync, None, Some(42)),
            pull(JobKind::ProductSync, &CATALOG, None)
        );
        assert_eq!(
            read(JobKind::InventorySync, None, None),
            pull(JobKind::InventorySync, &INVENTORY, None)
        );
        assert_eq!(
            read(JobKind::InventoryRequest, None, Some(7)),
            Job::InventoryRequest(InventoryRequest {
                instance: demo.clone(),
                request: None,
                not_before: Some(7)
            }),
            "a deferred pull"
        );
        assert_eq!(
            read(JobKind::InventoryRequest, Some(key), Some(7)),
            Job::InventoryRequest(InventoryRequest {
                instance: demo.clone(),
                request: Some(entity.clone()),
                not_before: None
            }),
            "a request, due at once"
        );
        assert_eq!(
            read(JobKind::WineSittingRepair, None, None),
            Job::WineSittingRepair { account: demo }
        );
    }
}
