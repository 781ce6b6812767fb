//! `replay`: archived events through the normal ingest path
//! ([`shared::ingest::replay`]): nothing verified, the archived body read by
//! the current code, the entity upsert and job with the pipeline's
//! guarantees. A done event is a duplicate; `--dry-run` writes nothing.

use std::collections::HashMap;

use clap::Args;
use serde_json::json;
use shared::ids::EventKey;
use shared::ingest::replay::{
    replay_receiver, Archive, ReplayAction, ReplayError, ReplayPlan, Replayed,
};
use shared::ingest::Ingestor;
use shared::store::EventStatus;

use crate::context::Context;
use crate::error::OpsError;
use crate::events::{self, Filters};
use crate::output;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Event keys to replay (any status; a done one is a duplicate).
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

/// One event's line: its key, what happened, and the detail.
fn report(
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

fn describe(action: &ReplayAction) -> (&'static str, String) {
    match action {
        ReplayAction::Duplicate => ("duplicate", "already done; nothing to write".into()),
        ReplayAction::StillQuarantined { reason } => (
            "still_quarantined",
            format!("this code doesn't understand it either ({reason}); left as is"),
        ),
        ReplayAction::InProgress { lease_until } => (
            "in_progress",
            format!("a delivery owns it until {lease_until} (Unix s); try later"),
        ),
        ReplayAction::Apply {
            from,
            entity_key,
            job,
        } => {
            let entity = entity_key
                .as_ref()
                .map_or("none".to_owned(), ToString::to_string);
            let job = job.map_or("none", |j| j.name());
            (
                "process",
                format!("from {}: entity {entity}, job {job}", from.as_str()),
            )
        }
    }
}

/// Receivers by source and event type, built once each.
struct Receivers<'a> {
    context: &'a Context,
    built: HashMap<(String, String), Ingestor>,
}

impl Receivers<'_> {
    fn get(&mut self, source: &str, event_type: &str) -> Result<&Ingestor, OpsError> {
        let id = (source.to_owned(), event_type.to_owned());
        if !self.built.contains_key(&id) {
            let receiver = replay_receiver(
                source,
                event_type,
                self.context.stores()?,
                self.context.settings()?,
            )
            .ok_or_else(|| ReplayError::NoReceiver {
                sender: source.to_owned(),
                event_type: event_type.to_owned(),
            })?;
            self.built.insert(id.clone(), receiver);
        }
        Ok(&self.built[&id])
    }
}

pub async fn run(context: &Context, args: &ReplayArgs) -> Result<(), OpsError> {
    let archive = context.archive()?;
    // Resolve every name the replay needs before touching anything.
    context.stores()?;
    let keys: Vec<EventKey> = if args.quarantined {
        events::scan(context, &args.filters, Some(EventStatus::Quarantined), None)
            .await?
            .into_iter()
            .map(|event| event.key)
            .collect()
    } else {
        args.keys
            .iter()
            .map(|k| events::parse_key(k))
            .collect::<Result<_, _>>()?
    };
    let mut receivers = Receivers {
        context,
        built: HashMap::new(),
    };
    let bar = output::bar(keys.len() as u64, "replaying");
    let (mut failed, mut counts) = (0usize, HashMap::<&'static str, usize>::new());
    for key in &keys {
        let result = replay_one(&archive, &mut receivers, key, args.dry_run).await;
        let (outcome, detail) = match result {
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
        let mut summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        summary.sort();
        let mode = if args.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
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

async fn replay_one(
    archive: &impl Archive,
    receivers: &mut Receivers<'_>,
    key: &EventKey,
    dry_run: bool,
) -> Result<(&'static str, String), OpsError> {
    let event = archive
        .load(key)
        .await?
        .ok_or_else(|| OpsError::NotFound(key.to_string()))?;
    let receiver = receivers.get(&event.source, &event.event_type)?;
    let plan: ReplayPlan = receiver.plan_replay(&event)?;
    let (outcome, detail) = describe(&plan.action);
    if dry_run {
        let outcome = match outcome {
            "process" => "would_process",
            other => other,
        };
        return Ok((outcome, detail));
    }
    match receiver.replay(archive, plan).await? {
        Replayed::Processed => Ok(("processed", detail)),
        Replayed::Duplicate => Ok(("duplicate", detail)),
        Replayed::StillQuarantined { .. } => Ok(("still_quarantined", detail)),
    }
}
