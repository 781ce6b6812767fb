//! `checkpoints` and `budgets`: what the sync-state table remembers, read
//! through the adapter the jobs worker uses ([`aws_adapters::sync_state::DynamoSyncState`]).
//!
//! Which instances and pulls exist is found by scanning the table's keys
//! (`cursor:{instance}:{pull}`, `budget:{instance}:{day}`); the values are
//! read with the adapter's own `load` and `spent_today`.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;
use clap::Args;
use domain::ids::InstanceName;
use ports::sync_state::{CallBudget, SyncState};
use serde_json::json;
use time::{Duration, OffsetDateTime, Time};

use crate::context::Context;
use crate::error::OpsError;
use crate::output;

#[derive(Debug, Args)]
pub struct StateArgs {
    /// Only these instances (repeatable); default: every instance the
    /// sync-state table has a cursor or a budget counter for.
    #[arg(long)]
    pub instance: Vec<String>,
}

/// An instance and pull named by a `cursor:` key.
fn parse_cursor_key(key: &str) -> Option<(InstanceName, String)> {
    let rest = key.strip_prefix("cursor:")?;
    let (instance, pull) = rest.split_once(':')?;
    Some((InstanceName::parse(instance).ok()?, pull.to_owned()))
}

/// The instance named by a `budget:` key.
fn parse_budget_key(key: &str) -> Option<InstanceName> {
    let rest = key.strip_prefix("budget:")?;
    InstanceName::parse(rest.split_once(':')?.0).ok()
}

/// The names of `instance`'s cursors (pulls, schedule slots, backfill).
pub async fn cursor_names(
    context: &Context,
    instance: &InstanceName,
) -> Result<Vec<String>, OpsError> {
    let mut names: Vec<String> = keys(context, &format!("cursor:{instance}:"))
        .await?
        .iter()
        .filter_map(|key| parse_cursor_key(key))
        .filter(|(of, _)| of == instance)
        .map(|(_, pull)| pull)
        .collect();
    names.sort();
    Ok(names)
}

/// Every key of the sync-state table starting with `prefix`.
async fn keys(context: &Context, prefix: &str) -> Result<Vec<String>, OpsError> {
    let table = context.sync_state_table()?;
    let mut keys = Vec::new();
    let mut start = None;
    loop {
        let page = context
            .dynamodb
            .scan()
            .table_name(table)
            .projection_expression("state_key")
            .filter_expression("begins_with(state_key, :prefix)")
            .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| OpsError::aws("dynamodb", "Scan", e))?;
        keys.extend(
            page.items()
                .iter()
                .filter_map(|item| item.get("state_key")?.as_s().ok().cloned()),
        );
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(keys),
        }
    }
}

pub fn wanted(args: &StateArgs) -> Result<Option<BTreeSet<InstanceName>>, OpsError> {
    if args.instance.is_empty() {
        return Ok(None);
    }
    args.instance
        .iter()
        .map(|i| {
            InstanceName::parse(i).map_err(|e| OpsError::Invalid {
                what: "--instance",
                why: e.to_string(),
            })
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

pub async fn checkpoints(context: &Context, args: &StateArgs) -> Result<(), OpsError> {
    let state = context.sync_state()?;
    let wanted = wanted(args)?;
    let mut cursors: Vec<(InstanceName, String)> = keys(context, "cursor:")
        .await?
        .iter()
        .filter_map(|k| parse_cursor_key(k))
        .filter(|(instance, _)| wanted.as_ref().is_none_or(|w| w.contains(instance)))
        .collect();
    cursors.sort();
    let bar = output::bar(cursors.len() as u64, "reading cursors");
    let mut out = String::new();
    if !context.json {
        out.push_str(&format!(
            "{:<16} {:<24} {:<21} {}\n",
            "INSTANCE", "PULL", "CHECKPOINT", "UNFINISHED RUN"
        ));
    }
    for (instance, pull) in &cursors {
        let cursor = state.load(instance, pull).await?;
        bar.inc(1);
        if context.json {
            out.push_str(
                &json!({"instance": instance.as_str(), "pull": pull,
                        "checkpoint": cursor.checkpoint, "run": cursor.run,
                        // What a menu push's catalog pull is measured against.
                        "completed_run_began_at": cursor.completed_run_began_at.map(output::rfc3339_micros)})
                .to_string(),
            );
            out.push('\n');
            continue;
        }
        let run = cursor.run.as_ref().map_or("-".to_owned(), |run| {
            format!(
                "started {}, since {}, next offset {}, {} fetched",
                run.started_at,
                run.since.as_deref().unwrap_or("the beginning"),
                run.offset,
                run.fetched
            )
        });
        out.push_str(&format!(
            "{:<16} {:<24} {:<21} {run}\n",
            instance.as_str(),
            pull,
            cursor.checkpoint.as_deref().unwrap_or("never completed"),
        ));
    }
    bar.finish_and_clear();
    if !context.json && cursors.is_empty() {
        out.push_str("no cursors: no pull has run yet\n");
    }
    output::print(&out)?;
    Ok(())
}

pub async fn budgets(context: &Context, args: &StateArgs) -> Result<(), OpsError> {
    let state = context.sync_state()?;
    let instances: BTreeSet<InstanceName> = match wanted(args)? {
        Some(wanted) => wanted,
        None => {
            let mut found: BTreeSet<InstanceName> = keys(context, "budget:")
                .await?
                .iter()
                .filter_map(|k| parse_budget_key(k))
                .collect();
            found.extend(
                keys(context, "cursor:")
                    .await?
                    .iter()
                    .filter_map(|k| parse_cursor_key(k).map(|(i, _)| i)),
            );
            found
        }
    };
    let now = OffsetDateTime::now_utc();
    let resets =
        (now.replace_time(Time::MIDNIGHT) + Duration::days(1)).unix_timestamp_nanos() / 1000;
    let resets = output::rfc3339_micros(resets as i64);
    let mut out = String::new();
    if !context.json {
        out.push_str(&format!(
            "{:<16} {:>6} {:>6} {:>9}  RESETS\n",
            "INSTANCE", "USED", "LIMIT", "REMAINING"
        ));
    }
    // Each instance's own budget where the Revel secret document is named
    // (its settings may set one), else the deployment's.
    let budgets: Box<dyn CallBudget> = match context.revel_secrets_id() {
        Ok(_) => Box::new(context.instance_budgets(&context.revel_instances().await?)?),
        Err(_) => Box::new(context.sync_state()?),
    };
    for instance in &instances {
        let used = state.spent_today(instance).await?;
        let limit = budgets.limit_of(instance).await?;
        let remaining = limit.saturating_sub(used);
        if context.json {
            out.push_str(
                &json!({"instance": instance.as_str(), "day": now.date().to_string(),
                        "used": used, "limit": limit, "remaining": remaining, "resets_at": resets})
                .to_string(),
            );
            out.push('\n');
        } else {
            out.push_str(&format!(
                "{:<16} {used:>6} {limit:>6} {remaining:>9}  {resets}\n",
                instance.as_str()
            ));
        }
    }
    if !context.json && instances.is_empty() {
        out.push_str("no instance has spent API calls or run a pull yet\n");
    }
    output::print(&out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_keys_name_their_instance_and_pull() {
        let (instance, pull) = parse_cursor_key("cursor:demo:catalog.Product").unwrap();
        assert_eq!(
            (instance.as_str(), pull.as_str()),
            ("demo", "catalog.Product")
        );
        assert_eq!(
            parse_budget_key("budget:demo:2024-05-01").unwrap().as_str(),
            "demo"
        );
        assert!(parse_cursor_key("echo:revel:demo:order:1@5").is_none());
        assert!(parse_budget_key("cursor:demo:x").is_none());
    }
}
