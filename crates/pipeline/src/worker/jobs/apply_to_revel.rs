//! `apply_to_revel`: applies a partner change to Revel
//! ([`crate::apply::Applier`]), within the instance's API budget; products
//! and events are kept for the end-of-day batch instead
//! ([`super::partner_catalog`]).

use crate::apply::ApplyError;
use crate::worker::disposition::until_budget_resets;
use crate::worker::{Disposition, JobError, Worker};
use domain::ids::{EntityKey, InstanceName};
use vendors::revel::api::RevelApiError;

/// The partner's entity whose current state is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyToRevel {
    pub instance: InstanceName,
    pub entity: EntityKey,
}

impl ApplyError {
    /// What becomes of a change not applied: a spent budget waits for the
    /// reset; a change that fails the same way every time (refused as
    /// invalid, lacking what it needs, no credentials, gone) is parked, to
    /// be redriven once fixed; anything else (Revel or a store unavailable,
    /// a create whose outcome is unknown, something it refers to not
    /// applied yet) is retried, and looks its object up again first.
    pub fn disposition(&self, now: time::OffsetDateTime) -> Disposition {
        match self {
            Self::Api(RevelApiError::BudgetExhausted { .. }) => {
                Disposition::RetryAfter(until_budget_resets(now))
            }
            _ if self.is_permanent() => Disposition::Park,
            _ => Disposition::Retry,
        }
    }
}

impl ApplyToRevel {
    pub async fn run(self, worker: &Worker) -> Result<(), JobError> {
        // Without credentials a product or event is still kept for the
        // batch; any other change is parked in the DLQ at once (retrying
        // would only spend its receives), to be redriven once they are set.
        let credentials = worker.credentials(&self.instance).await?;
        let applied = worker
            .applier
            .apply(&self.instance, credentials.as_ref(), &self.entity)
            .await;
        // Writes spend the same daily budget as pulls.
        worker.report_budget(&self.instance).await;
        applied?;
        Ok(())
    }
}
