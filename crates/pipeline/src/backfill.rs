//! Backfill: what a merchant's Revel already held when the instance was
//! connected — customers, rewards cards, products and modifiers, current
//! stock, and orders since a chosen date — imported through the same paths
//! as the schedule's own work, so it is stored once, kept newest-wins and
//! delivered to the partner in order like everything else:
//!
//! - each resource but orders is a one-resource pull ([`Syncer::pull`])
//!   under its own cursor `backfill.{Resource}`: newest-wins entities, a
//!   delivery job per changed one;
//! - orders are reconciled ([`Syncer::reconcile_from`]) under the cursor
//!   `backfill.Order`: each order not already held goes through the
//!   order.finalized receiver, under the key its webhook would have had.
//!
//! Every page moves its cursor, so an interrupted backfill resumes at the
//! next page; a resource whose run completed is never fetched again. The
//! calls come from a share of the instance's budget ([`RESERVE_PERCENT`]
//! is kept for the schedule), so a large merchant's backfill spreads over
//! as many days as its budget says, one end of day after another.
//!
//! The plan is the cursor `backfill`: its checkpoint is when the backfill
//! was asked for, and it is marked complete (`completed_run_began_at`) once
//! every resource is, so the daily check is one read; `backfill.Order`
//! exists only when orders were asked for.

use time::OffsetDateTime;
use tokio::time::Instant;

use crate::receive::Receiver;
use crate::sync::{Pull, PullOutcome, Reconciliation, StopReason, SyncError, Syncer};
use domain::error::DependencyError;
use domain::ids::InstanceName;
use ports::sync_state::{Cursor, SyncState};
use vendors::revel;
use vendors::revel::api::ApiCredentials;

/// The share of an instance's daily budget a backfill leaves for the
/// schedule's pulls, reconciliation and the partner's writes.
pub const RESERVE_PERCENT: u64 = 30;

/// The cursor that says a backfill was planned, and when.
pub const PLAN_CURSOR: &str = "backfill";

/// The resources pulled whole, in the order they are imported: who the
/// customers are before what they bought.
pub const PULLED: Pull = Pull {
    name: "backfill",
    catch_up: false,
    resources: &[
        ("Customer", revel::Entity::Customer),
        ("RewardsCard", revel::Entity::RewardsCard),
        ("Product", revel::Entity::Product),
        ("Modifier", revel::Entity::Modifier),
        ("CurrentStock", revel::Entity::Inventory),
    ],
};

/// The schedule's pulls that read some of the same resources.
const SCHEDULED: [Pull; 2] = [crate::sync::CATALOG, crate::sync::INVENTORY];

/// Orders, last (reconciled: each costs its items and payments too).
pub const ORDERS: &str = "Order";

/// Calls an order not already held costs beyond its page: its items and
/// its payments (one page each, as a rule).
pub const CALLS_PER_ORDER: u64 = 2;

/// The cursor of one backfilled resource.
pub fn cursor_name(resource: &str) -> String {
    format!("{}.{resource}", PULLED.name)
}

/// Why a backfill cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("a backfill was already planned for this instance on {0}; it is never run twice")]
    AlreadyPlanned(String),
    #[error(transparent)]
    Store(#[from] DependencyError),
}

/// Plans `instance`'s backfill: everything of the pulled resources, and
/// the orders updated since `orders_since` when given; the schedule's own
/// pulls of those resources, if they never ran, start from `now`. Refused
/// when one was planned before (its cursors would say it is done or under
/// way).
pub async fn plan(
    state: &dyn SyncState,
    instance: &InstanceName,
    orders_since: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(), PlanError> {
    if let Some(at) = state.load(instance, PLAN_CURSOR).await?.checkpoint {
        return Err(PlanError::AlreadyPlanned(at));
    }
    if let Some(since) = orders_since {
        let cursor = Cursor {
            checkpoint: Some(crate::sync::checkpoint_text(since)),
            ..Cursor::default()
        };
        state.save(instance, &cursor_name(ORDERS), &cursor).await?;
    }
    // The schedule's own pulls of the same resources start from now: the
    // backfill reads what came before, so nothing is read twice.
    for (resource, _) in PULLED.resources {
        let Some(scheduled) = SCHEDULED
            .iter()
            .find(|pull| pull.resources.iter().any(|(r, _)| r == resource))
        else {
            continue;
        };
        let name = format!("{}.{resource}", scheduled.name);
        if state.load(instance, &name).await? == Cursor::default() {
            let from_now = Cursor {
                checkpoint: Some(crate::sync::checkpoint_text(now)),
                ..Cursor::default()
            };
            state.save(instance, &name, &from_now).await?;
        }
    }
    // Last: a plan is only seen once its orders' cursor is in place.
    let marker = Cursor {
        checkpoint: Some(crate::sync::checkpoint_text(now)),
        ..Cursor::default()
    };
    state.save(instance, PLAN_CURSOR, &marker).await?;
    Ok(())
}

/// Where one resource of a backfill stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceProgress {
    pub resource: &'static str,
    pub done: bool,
    /// Objects fetched by the run under way (all of them once done: not kept).
    pub fetched: u64,
    /// What Revel counted, once a page was read.
    pub total: Option<u64>,
}

/// A planned backfill's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// When it was planned (RFC 3339).
    pub planned_at: String,
    pub resources: Vec<ResourceProgress>,
}

impl Progress {
    pub fn is_done(&self) -> bool {
        self.resources.iter().all(|r| r.done)
    }

    /// The calls still needed at least, at `page_size` objects a page: a
    /// page per unfinished resource whose size is not known yet
    /// ([`Progress::sizes_known`]), the pages left of the others, and an
    /// order's items and payments.
    pub fn calls_left(&self, page_size: u64) -> u64 {
        self.resources
            .iter()
            .filter(|r| !r.done)
            .map(|resource| {
                let left = resource
                    .total
                    .map_or(0, |total| total.saturating_sub(resource.fetched));
                let per_object = if resource.resource == ORDERS {
                    CALLS_PER_ORDER
                } else {
                    0
                };
                left.div_ceil(page_size.max(1)).max(1) + left * per_object
            })
            .sum()
    }

    /// Whether every unfinished resource's size is known (a page of it was
    /// read), so [`Progress::calls_left`] is an estimate and not a floor.
    pub fn sizes_known(&self) -> bool {
        self.resources.iter().all(|r| r.done || r.total.is_some())
    }
}

/// Whether `instance` has a backfill planned and not finished: the plan
/// alone says so (one read), as the end of day asks every day.
pub async fn pending(
    state: &dyn SyncState,
    instance: &InstanceName,
) -> Result<bool, DependencyError> {
    let plan = state.load(instance, PLAN_CURSOR).await?;
    Ok(plan.checkpoint.is_some() && plan.completed_run_began_at.is_none())
}

/// `instance`'s backfill, `None` when none was planned.
pub async fn progress(
    state: &dyn SyncState,
    instance: &InstanceName,
) -> Result<Option<Progress>, DependencyError> {
    let Some(planned_at) = state.load(instance, PLAN_CURSOR).await?.checkpoint else {
        return Ok(None);
    };
    let mut resources = Vec::new();
    for resource in PULLED
        .resources
        .iter()
        .map(|(resource, _)| *resource)
        .chain([ORDERS])
    {
        let cursor = state.load(instance, &cursor_name(resource)).await?;
        if resource == ORDERS && cursor == Cursor::default() {
            continue; // orders were not asked for
        }
        let run = cursor.run.as_ref();
        resources.push(ResourceProgress {
            resource,
            done: cursor.completed_run_began_at.is_some(),
            fetched: run.map_or(0, |r| r.fetched),
            total: run.and_then(|r| r.total),
        });
    }
    Ok(Some(Progress {
        planned_at,
        resources,
    }))
}

/// How far one invocation got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackfillOutcome {
    /// None was planned, or it had finished before.
    Nothing,
    /// Every resource is imported.
    Complete,
    /// Stopped; the next run resumes where this one stopped.
    Stopped(StopReason),
}

impl Syncer {
    /// Runs `instance`'s backfill until it is done, its budget share is
    /// spent or `deadline`: each resource not done yet, in order.
    pub async fn backfill(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        orders: &Receiver,
        deadline: Instant,
    ) -> Result<BackfillOutcome, SyncError> {
        let state = self.state().as_ref();
        if !pending(state, instance).await? {
            return Ok(BackfillOutcome::Nothing);
        }
        let Some(progress) = progress(state, instance).await? else {
            return Ok(BackfillOutcome::Nothing);
        };
        for resource in progress.resources.iter().filter(|r| !r.done) {
            if resource.resource == ORDERS {
                let cursor = cursor_name(ORDERS);
                let which = Reconciliation {
                    cursor: &cursor,
                    // The plan wrote the date; this is only its fallback.
                    first_since: OffsetDateTime::UNIX_EPOCH,
                    catch_up: false,
                };
                let report = self
                    .reconcile_from(instance, credentials, orders, deadline, which)
                    .await?;
                if let Some(reason) = report.stopped {
                    return Ok(BackfillOutcome::Stopped(reason));
                }
                continue;
            }
            let Some(entry) = PULLED
                .resources
                .iter()
                .find(|(r, _)| *r == resource.resource)
            else {
                continue;
            };
            let one = Pull {
                resources: std::slice::from_ref(entry),
                ..PULLED
            };
            if let PullOutcome::Stopped { reason, .. } =
                self.pull(instance, credentials, &one, deadline).await?
            {
                return Ok(BackfillOutcome::Stopped(reason));
            }
        }
        // Every resource is done: the plan says so, so later end-of-day
        // runs need only read it ([`pending`]).
        let mut plan = state.load(instance, PLAN_CURSOR).await?;
        plan.completed_run_began_at = Some(self.now_micros());
        state.save(instance, PLAN_CURSOR, &plan).await?;
        Ok(BackfillOutcome::Complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(
        resource: &'static str,
        done: bool,
        fetched: u64,
        total: Option<u64>,
    ) -> ResourceProgress {
        ResourceProgress {
            resource,
            done,
            fetched,
            total,
        }
    }

    #[test]
    fn the_calls_left_count_the_pages_left_and_each_orders_items_and_payments() {
        let progress = Progress {
            planned_at: "2026-11-30T00:00:00Z".into(),
            resources: vec![
                resource("Customer", true, 0, None),
                resource("Product", false, 100, Some(350)),
                resource(ORDERS, false, 0, Some(40)),
            ],
        };
        // 250 products: 3 pages; 40 orders: 1 page and 80 calls.
        assert_eq!(progress.calls_left(100), 3 + 1 + 80);
        assert!(progress.sizes_known());
        assert!(!progress.is_done());
    }
}
