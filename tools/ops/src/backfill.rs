//! A new instance's backfill from the operator's side: `instance add
//! --backfill` plans it ([`pipeline::backfill::plan`]) and queues its
//! first run at once; the scheduler's end of day queues the next ones until
//! it is done. `backfill status` shows where each resource stands, as a
//! bar, and how many days are left at the instance's budget.
//!
//! The bars are drawn as text, not with indicatif: the status is a snapshot
//! read from the sync-state table, and scripts and logs read it too.

use clap::Args;
use domain::ids::InstanceName;
use pipeline::backfill::{Progress, RESERVE_PERCENT};
use ports::queue::{JobKind, JobQueue, QueuedJob};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::context::Context;
use crate::error::OpsError;
use crate::output;
use crate::state::{wanted, StateArgs};

/// Objects a page of Revel's API holds (the functions' page size).
const PAGE_SIZE: u64 = 100;

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Import what the instance already holds: customers, rewards cards,
    /// products and modifiers, current stock (within a share of its daily
    /// API budget, over as many days as it takes).
    #[arg(long)]
    pub backfill: bool,
    /// With --backfill: also the orders updated since this date
    /// (YYYY-MM-DD, from 00:00 UTC).
    #[arg(long, value_name = "DATE", requires = "backfill")]
    pub orders_since: Option<String>,
}

/// A backfill asked for.
#[derive(Debug, Clone)]
pub struct Plan {
    pub orders_since: Option<OffsetDateTime>,
}

impl PlanArgs {
    pub fn plan(&self) -> Result<Option<Plan>, OpsError> {
        if !self.backfill {
            return Ok(None);
        }
        let orders_since = match &self.orders_since {
            None => None,
            Some(raw) => {
                let date = Date::parse(raw.trim(), format_description!("[year]-[month]-[day]"))
                    .map_err(|_| OpsError::Invalid {
                        what: "--orders-since",
                        why: "must be a date, YYYY-MM-DD".into(),
                    })?;
                let since = date.midnight().assume_utc();
                if since > OffsetDateTime::now_utc() {
                    return Err(OpsError::Invalid {
                        what: "--orders-since",
                        why: "is in the future".into(),
                    });
                }
                Some(since)
            }
        };
        Ok(Some(Plan { orders_since }))
    }
}

fn describe(plan: &Plan) -> String {
    let mut what = "customers, rewards cards, products, modifiers and current stock".to_owned();
    if let Some(since) = plan.orders_since {
        what.push_str(&format!(", and orders updated since {}", since.date()));
    }
    what
}

pub fn show_plan(
    context: &Context,
    instance: &InstanceName,
    plan: &Plan,
    dry_run: bool,
) -> Result<(), OpsError> {
    if context.json {
        return output::print(&format!(
            "{}\n",
            json!({"instance": instance.as_str(), "backfill": "planned", "written": !dry_run,
                   "orders_since": plan.orders_since.map(|s| s.date().to_string())})
        ));
    }
    output::print(&format!(
        "\nBackfill {}: {} — within {}% of its daily API budget; `revel-ops backfill status` shows progress\n",
        if dry_run { "would be planned" } else { "planned and its first run queued" },
        describe(plan),
        100 - RESERVE_PERCENT
    ))
}

/// Whether a backfill can be planned for `instance`: the sync-state table and
/// the jobs queue are named, and no backfill was ever planned for it (one
/// connected before, removed and added again, is not backfilled twice).
pub async fn check_plannable(context: &Context, instance: &InstanceName) -> Result<(), OpsError> {
    context.jobs_queue_url()?;
    if pipeline::backfill::progress(&context.sync_state()?, instance)
        .await?
        .is_some()
    {
        return Err(OpsError::Conflict(
            "a backfill was planned for this instance before (it was connected earlier) and is never run twice; add it without --backfill",
        ));
    }
    Ok(())
}

/// Plans `instance`'s backfill and queues its first run now.
pub async fn start(
    context: &Context,
    instance: &InstanceName,
    plan: &Plan,
) -> Result<(), OpsError> {
    let state = context.sync_state()?;
    let now = OffsetDateTime::now_utc();
    pipeline::backfill::plan(&state, instance, plan.orders_since, now)
        .await
        .map_err(|error| match error {
            pipeline::backfill::PlanError::AlreadyPlanned(_) => OpsError::Conflict(
                "a backfill was planned for this instance before; it is never run twice",
            ),
            pipeline::backfill::PlanError::Store(error) => OpsError::Aws(error),
        })?;
    let queue = aws_adapters::sqs::SqsJobQueue::new(context.sqs.clone(), context.jobs_queue_url()?);
    let window = format!("ops:{}", now.format(&Rfc3339).unwrap_or_default());
    queue
        .enqueue(&QueuedJob::scheduled(
            JobKind::Backfill,
            vendors::revel::NAME.as_str(),
            instance,
            &window,
        ))
        .await?;
    show_plan(context, instance, plan, false)
}

/// `[#########...........]  45%`, `width` characters between the brackets.
pub fn bar(fraction: f64, width: usize) -> String {
    let fraction = fraction.clamp(0.0, 1.0);
    let filled = (fraction * width as f64).round() as usize;
    format!(
        "[{}{}] {:>3.0}%",
        "#".repeat(filled),
        ".".repeat(width - filled),
        fraction * 100.0
    )
}

/// Days still needed at `calls_a_day` (none when nothing is left).
pub fn days_left(progress: &Progress, calls_a_day: u64) -> Option<u64> {
    if progress.is_done() {
        return None;
    }
    Some(progress.calls_left(PAGE_SIZE).div_ceil(calls_a_day.max(1)))
}

/// The calls a backfill may make a day: the instance's budget less the
/// schedule's reserve, as the jobs worker's `ReservedBudget` counts it.
pub fn share(budget: u64) -> u64 {
    ports::sync_state::share_after_reserve(budget, RESERVE_PERCENT)
}

/// Every instance that has a Revel entry, or those asked for.
async fn instances(
    context: &Context,
    args: &StateArgs,
) -> Result<Vec<(InstanceName, u64)>, OpsError> {
    let document = context.revel_instances().await?;
    let wanted = wanted(args)?;
    Ok(document
        .all_settings()
        .into_iter()
        .filter(|(instance, _)| wanted.as_ref().is_none_or(|w| w.contains(instance)))
        .map(|(instance, settings)| {
            let budget = settings.api_budget(context.resources.daily_budget);
            (instance, budget)
        })
        .collect())
}

pub async fn status(context: &Context, args: &StateArgs) -> Result<(), OpsError> {
    let state = context.sync_state()?;
    let mut out = String::new();
    let mut shown = 0;
    for (instance, budget) in instances(context, args).await? {
        let Some(progress) = pipeline::backfill::progress(&state, &instance).await? else {
            continue;
        };
        shown += 1;
        let calls_a_day = share(budget);
        let days = days_left(&progress, calls_a_day);
        if context.json {
            out.push_str(&json!({
                "instance": instance.as_str(),
                "planned_at": progress.planned_at,
                "done": progress.is_done(),
                "calls_left": (!progress.is_done()).then(|| progress.calls_left(PAGE_SIZE)),
                "calls_left_is_a_floor": !progress.sizes_known(),
                "calls_a_day": calls_a_day,
                "days_left": days,
                "resources": progress.resources.iter().map(|r| json!({
                    "resource": r.resource, "done": r.done, "fetched": r.fetched, "total": r.total,
                })).collect::<Vec<_>>(),
            }).to_string());
            out.push('\n');
            continue;
        }
        out.push_str(&format!(
            "{instance}: backfill planned {}; {}\n",
            progress.planned_at,
            match days {
                None => "done".to_owned(),
                Some(days) => format!(
                    "{}{} calls left at {calls_a_day} a day: {}{days} day(s) left",
                    if progress.sizes_known() {
                        ""
                    } else {
                        "at least "
                    },
                    progress.calls_left(PAGE_SIZE),
                    if progress.sizes_known() {
                        ""
                    } else {
                        "at least "
                    },
                ),
            }
        ));
        for resource in &progress.resources {
            let (fraction, counts) = match (resource.done, resource.total) {
                (true, _) => (1.0, "done".to_owned()),
                (false, Some(total)) if total > 0 => (
                    resource.fetched as f64 / total as f64,
                    format!("{} of {total}", resource.fetched),
                ),
                (false, Some(_)) => (0.0, "0 of 0".to_owned()),
                (false, None) => (0.0, "not started".to_owned()),
            };
            out.push_str(&format!(
                "  {:<13} {} {counts}\n",
                resource.resource,
                bar(fraction, 24)
            ));
        }
    }
    if shown == 0 && !context.json {
        out.push_str("no backfill planned\n");
    }
    output::print(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::backfill::ResourceProgress;

    #[test]
    fn a_bar_fills_in_proportion_and_says_the_percentage() {
        assert_eq!(bar(0.5, 10), "[#####.....]  50%");
        assert_eq!(bar(0.0, 4), "[....]   0%");
        assert_eq!(bar(1.5, 4), "[####] 100%");
    }

    #[test]
    fn the_days_left_are_the_calls_left_over_the_share_of_the_budget() {
        let progress = Progress {
            planned_at: "2026-11-30T00:00:00Z".into(),
            resources: vec![ResourceProgress {
                resource: "Customer",
                done: false,
                fetched: 0,
                total: Some(150_000),
            }],
        };
        // 1,500 pages; a budget of 1,000 leaves the backfill 700 a day.
        assert_eq!(share(1000), 700);
        assert_eq!(days_left(&progress, share(1000)), Some(3));
        assert_eq!(share(1), 0);
    }

    #[test]
    fn a_backfill_date_is_checked_before_anything_is_written() {
        let args = |since: &str| PlanArgs {
            backfill: true,
            orders_since: Some(since.into()),
        };
        assert!(args("2026-13-01").plan().is_err());
        assert!(args("9999-01-01").plan().is_err());
        let plan = args("2026-01-15").plan().unwrap().unwrap();
        assert_eq!(plan.orders_since.unwrap().date().to_string(), "2026-01-15");
    }
}
