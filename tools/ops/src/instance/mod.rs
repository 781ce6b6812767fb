//! `instance`: connecting a Revel instance (a merchant) and changing or
//! removing it, one command per file behind [`InstanceCommand`].
//!
//! An instance lives in its entry of the Revel secret document
//! (`REVEL_WEBHOOK_SECRETS_ID`: webhook secret, API key and secret,
//! settings), which every function re-reads within its cache TTL: no
//! redeploy. A change rewrites that one entry and leaves every other entry
//! as it was, byte for byte in meaning ([`document`]); its backfill plan,
//! when asked for, goes to the sync-state table. Everything is checked
//! before anything is written.

mod add;
mod document;
pub mod list;
mod remove;

use clap::{Args, Subcommand};

use crate::context::Context;
use crate::error::OpsError;

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Connects a new instance: writes its secrets and settings, checks its
    /// API credentials with one call, prints the URL and secret of each
    /// Revel webhook action (and, with --backfill, plans the import of what
    /// it already holds).
    Add(add::AddArgs),
    /// Changes an instance's secrets or settings (only those given).
    Update(add::UpdateArgs),
    /// Disconnects an instance: removes its entry (its checkpoints stay).
    Remove(remove::RemoveArgs),
    /// Each instance's settings, its local time and its next end of day; no secret.
    List(crate::state::StateArgs),
}

pub async fn run(context: &Context, command: &InstanceCommand) -> Result<(), OpsError> {
    match command {
        InstanceCommand::Add(args) => add::add(context, args).await,
        InstanceCommand::Update(args) => add::update(context, args).await,
        InstanceCommand::Remove(args) => remove::remove(context, args).await,
        InstanceCommand::List(args) => list::show(context, args).await,
    }
}

/// An instance name Revel would accept: its subdomain.
fn instance_name(raw: &str) -> Result<domain::ids::InstanceName, OpsError> {
    domain::ids::InstanceName::parse(raw).map_err(|e| OpsError::Invalid {
        what: "instance name",
        why: e.to_string(),
    })
}

/// What every command that writes takes.
#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    /// Show what would be written, write nothing and call nothing.
    #[arg(long)]
    pub dry_run: bool,
}
