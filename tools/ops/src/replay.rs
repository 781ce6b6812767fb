//! `replay`: archived events handed to the processor again
//! ([`pipeline::replay`]): nothing verified, one conditional update of the
//! record (status `received`, `replayed_at`), and the events table's stream
//! brings it to the processor, which applies it idempotently. `--dry-run`
//! prints each plan and writes nothing.

use std::collections::BTreeMap;

use aws_adapters::dynamodb::DynamoEventStore;
use clap::Args;
use domain::clock::SystemClock;
use domain::ids::EventKey;
use pipeline::replay::{plan, replay, ReplayAction, ReplayPlan, Replayed};
use ports::store::EventStatus;
use serde_json::json;

use crate::context::Context;
use crate::error::OpsError;
use crate::events::{self, Filters};
use crate::output;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Event keys to replay (a received one is handed to the processor
    /// again, which changes nothing if it was applied).
    #[arg(
        required_unless_present = "quarantined",
        conflicts_with = "quarantined"
    )]
    pub keys: Vec<String>,
    /// Replay every quarantined event matching the filters.
    #[arg(long)]
    pub quarantined: bool,
    #[command(flatten)]
    pub filters: Filters,
    /// Print what would happen; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// One line of a batch command: its key, what happened, and the detail.
pub fn report(
    context: &Context,
    bar: &indicatif::ProgressBar,
    key: &str,
    outcome: &str,
    detail: &str,
) -> Result<(), OpsError> {
    let text = if context.json {
        json!({"event_key": key, "outcome": outcome, "detail": detail}).to_string()
    } else {
        format!("{key}  {outcome}  {detail}")
    };
    output::line(bar, &text)
}

/// A plan in words: the outcome a dry run reports, and the detail.
pub fn describe(plan: &ReplayPlan) -> (&'static str, String) {
    let entity = |key: &Option<domain::ids::EntityKey>| {
        key.as_ref()
            .map_or("no entity".to_owned(), |k| format!("entity {k}"))
    };
    match &plan.action {
        ReplayAction::Apply { entity_key } => (
            "would_apply",
            format!(
                "quarantined -> received: the processor applies it ({})",
                entity(entity_key)
            ),
        ),
        ReplayAction::Reprocess { entity_key } => (
            "would_reprocess",
            format!(
                "received: handed to the processor again ({}; already applied changes nothing)",
                entity(entity_key)
            ),
        ),
        ReplayAction::StillQuarantined { reason } => (
            "still_quarantined",
            format!("this code doesn't understand it either ({reason}); left as is"),
        ),
    }
}

/// Plans the replay of `key` and, unless `dry_run`, carries it out: the
/// outcome and its detail.
pub async fn replay_one(
    context: &Context,
    store: &DynamoEventStore,
    key: &EventKey,
    dry_run: bool,
) -> Result<(&'static str, String), OpsError> {
    let record = events::load(context, key).await?;
    let plan = plan(&record);
    let (would, detail) = describe(&plan);
    if dry_run {
        return Ok((would, detail));
    }
    Ok(match replay(store, &SystemClock, plan).await? {
        Replayed::Queued => ("queued", detail),
        Replayed::StillQuarantined { .. } => ("still_quarantined", detail),
    })
}

pub async fn run(context: &Context, args: &ReplayArgs) -> Result<(), OpsError> {
    let store = context.event_store()?;
    let keys: Vec<EventKey> = if args.quarantined {
        events::scan(context, &args.filters, Some(EventStatus::Quarantined), None)
            .await?
            .into_iter()
            .map(|event| event.event_key)
            .collect()
    } else {
        args.keys
            .iter()
            .map(|k| events::parse_key(k))
            .collect::<Result<_, _>>()?
    };
    let bar = output::bar(keys.len() as u64, "replaying");
    let (mut failed, mut counts) = (0usize, BTreeMap::<&'static str, usize>::new());
    for key in &keys {
        let (outcome, detail) = match replay_one(context, &store, key, args.dry_run).await {
            Ok(done) => done,
            Err(error) => {
                failed += 1;
                ("error", error.to_string())
            }
        };
        *counts.entry(outcome).or_default() += 1;
        report(context, &bar, key.as_str(), outcome, &detail)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    if !context.json {
        let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let mode = if args.dry_run {
            " (dry run: nothing written)"
        } else {
            " (queued: the events table's stream hands them to the processor)"
        };
        output::print(&format!(
            "{} event(s): {}{mode}\n",
            keys.len(),
            summary.join(", ")
        ))?;
    }
    if failed > 0 {
        return Err(OpsError::Partial {
            failed,
            total: keys.len(),
            what: "replays",
        });
    }
    Ok(())
}
