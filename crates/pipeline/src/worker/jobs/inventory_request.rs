//! `inventory_request`: the partner's search, Revel's stock of the products
//! it named pulled on demand within the hour's allowance
//! ([`crate::inventory_request::OnDemand`]); or a deferred pull of what is
//! pending, which waits until its time ([`JobError::NotYet`]).

use tokio::time::Instant;

use crate::inventory_request::{has_retailer_option, reason, Handled, OnDemand};
use crate::worker::{pages_until, JobError, Worker};
use domain::ids::{EntityKey, InstanceName};
use telemetry::{self, Dimension, Metric};

/// A request, or a deferred pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryRequest {
    pub instance: InstanceName,
    /// The request as kept (its products are noted); `None` for a
    /// deferred pull of whatever is pending.
    pub request: Option<EntityKey>,
    /// A deferred pull's time (µs): received before then, it waits.
    pub not_before: Option<i64>,
}

impl InventoryRequest {
    pub async fn run(self, worker: &Worker, deadline: Instant) -> Result<(), JobError> {
        let instance = &self.instance;
        let count = |reason: &str| {
            telemetry::count(
                Metric::InventoryRequests,
                &[
                    (Dimension::Instance, instance.as_str()),
                    (Dimension::Reason, reason),
                ],
            )
        };
        let document = worker.revel.document().await?;
        if !has_retailer_option(&document, instance) {
            tracing::info!(%instance, "inventory request from an instance without the retailer option (inventory_every_2h): kept, nothing pulled");
            count(reason::NOT_UPGRADED);
            return Ok(());
        }
        let Some(credentials) = document.api_credentials(instance).cloned() else {
            tracing::warn!(%instance, "inventory request from an instance without Revel API credentials: kept, nothing pulled");
            count(reason::NO_CREDENTIALS);
            return Ok(());
        };
        let on_demand = OnDemand {
            entities: worker.entities.as_ref(),
            allowance: worker.on_demand.as_ref(),
            syncer: &worker.syncer,
            jobs: worker.jobs.as_ref(),
            clock: worker.clock.as_ref(),
        };
        let handled = on_demand
            .handle(&self, &credentials, pages_until(deadline))
            .await;
        if matches!(&handled, Ok(Handled::Pulled(_)) | Err(JobError::Sync(_))) {
            worker.report_budget(instance).await;
        }
        match handled? {
            Handled::NothingPending => {
                tracing::info!(%instance, "no inventory request pending; nothing to pull");
            }
            Handled::Coalesced { pending, until } => {
                tracing::info!(%instance, pending, until = %until,
                    "on-demand inventory pulls of this hour all taken; the products wait for the next hour's pull");
                count(reason::COALESCED);
            }
            Handled::Pulled(report) => {
                tracing::info!(%instance, pulled = report.pulled, left = report.left,
                    fetched = report.fetched, written = report.written, stopped = ?report.stopped,
                    "on-demand inventory pull");
                count(reason::PULLED);
            }
        }
        Ok(())
    }
}
