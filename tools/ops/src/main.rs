//! `revel-ops`: what an operator needs, from connecting a merchant to 3
//! a.m. — connect, change and remove Revel instances (and backfill what
//! they held before), see each instance's health, list and show archived
//! events, replay quarantined or chosen events (handed to the events
//! processor again), redrive what the processor gave up on and the jobs
//! dead-letter queue, show the sync checkpoints, today's Revel API budgets
//! and each instance's schedule settings.
//!
//! It reads the same environment as the functions (`EVENTS_TABLE`,
//! `JOBS_QUEUE_URL`, …, each also a flag) and the standard AWS environment,
//! so `AWS_ENDPOINT_URL` points it at the local stack.

mod backfill;
mod context;
mod dlq;
mod error;
mod events;
mod instance;
mod output;
mod processor;
mod replay;
mod state;
mod status;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::context::Context;
use crate::error::OpsError;

#[derive(Debug, Parser)]
#[command(name = "revel-ops", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    resources: Resources,
    /// Print JSON, one object per line, instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Where the bundle's resources are: the functions' environment, or flags.
#[derive(Debug, Clone, Args)]
pub struct Resources {
    /// The events archive table.
    #[arg(long, env = "EVENTS_TABLE", global = true, hide_env_values = true)]
    pub events_table: Option<String>,
    /// The entities table (current state; `events show` reads the event's entity).
    #[arg(long, env = "ENTITIES_TABLE", global = true, hide_env_values = true)]
    pub entities_table: Option<String>,
    /// The jobs FIFO queue.
    #[arg(long, env = "JOBS_QUEUE_URL", global = true, hide_env_values = true)]
    pub jobs_queue_url: Option<String>,
    /// The jobs dead-letter queue.
    #[arg(
        long,
        env = "JOBS_DEAD_LETTER_QUEUE_URL",
        global = true,
        hide_env_values = true
    )]
    pub dlq_url: Option<String>,
    /// The sync-state table (checkpoints, API budgets).
    #[arg(long, env = "SYNC_STATE_TABLE", global = true, hide_env_values = true)]
    pub sync_state_table: Option<String>,
    /// Revel API calls per instance per day.
    #[arg(
        long,
        env = "REVEL_API_DAILY_BUDGET",
        global = true,
        default_value_t = 1000
    )]
    pub daily_budget: u64,
    /// The Revel secret document (instances, their settings).
    #[arg(
        long,
        env = "REVEL_WEBHOOK_SECRETS_ID",
        global = true,
        hide_env_values = true
    )]
    pub revel_secrets_id: Option<String>,
    /// The zone of instances whose settings name none.
    #[arg(long, env = "DEFAULT_TIME_ZONE", global = true, default_value = "UTC")]
    pub default_time_zone: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect, change, remove or list Revel instances.
    #[command(subcommand)]
    Instance(instance::InstanceCommand),
    /// Where each instance's backfill stands.
    #[command(subcommand)]
    Backfill(BackfillCommand),
    /// Each instance's health, line by line with the reason; exit code 6
    /// when anything is unhealthy.
    Status(status::StatusArgs),
    /// List or show archived events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Hand quarantined or chosen events to the events processor again.
    Replay(replay::ReplayArgs),
    /// What the events processor gave up on (its failure queue).
    #[command(subcommand)]
    Processor(ProcessorCommand),
    /// The jobs dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// The sync cursors (checkpoints and unfinished runs) per instance and pull.
    Checkpoints(state::StateArgs),
    /// Today's Revel API calls per instance, against the daily budget.
    Budgets(state::StateArgs),
    /// `instance list` (the earlier name).
    #[command(hide = true)]
    Instances(state::StateArgs),
    /// `events list` (the runbook's short name).
    #[command(hide = true)]
    List(events::ListArgs),
    /// `events show` (the runbook's short name).
    #[command(hide = true)]
    Show(events::ShowArgs),
    /// `dlq redrive` (the runbook's short name).
    #[command(hide = true)]
    RedriveDlq(dlq::RedriveArgs),
}

#[derive(Debug, Subcommand)]
enum BackfillCommand {
    /// Progress per instance and resource, and the days left at its budget.
    Status(state::StateArgs),
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Archived events matching the filters, oldest first.
    List(events::ListArgs),
    /// One archived event: its record and its body.
    Show(events::ShowArgs),
}

#[derive(Debug, Subcommand)]
enum ProcessorCommand {
    /// Replays the records each failure report names, then deletes the report.
    Redrive(processor::RedriveArgs),
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Moves messages from the dead-letter queue back to the jobs queue.
    Redrive(dlq::RedriveArgs),
}

async fn run(cli: Cli) -> Result<(), OpsError> {
    let context = Context::new(cli.resources, cli.json).await;
    match cli.command {
        Command::Events(EventsCommand::List(args)) | Command::List(args) => {
            events::list(&context, &args).await
        }
        Command::Events(EventsCommand::Show(args)) | Command::Show(args) => {
            events::show(&context, &args).await
        }
        Command::Replay(args) => replay::run(&context, &args).await,
        Command::Processor(ProcessorCommand::Redrive(args)) => {
            processor::redrive(&context, &args).await
        }
        Command::Dlq(DlqCommand::Redrive(args)) | Command::RedriveDlq(args) => {
            dlq::redrive(&context, &args).await
        }
        Command::Checkpoints(args) => state::checkpoints(&context, &args).await,
        Command::Budgets(args) => state::budgets(&context, &args).await,
        Command::Instances(args) => instance::list::show(&context, &args).await,
        Command::Instance(command) => instance::run(&context, &command).await,
        Command::Backfill(BackfillCommand::Status(args)) => backfill::status(&context, &args).await,
        Command::Status(args) => status::run(&context, &args).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("revel-ops: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("revel-ops: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn the_runbooks_short_names_are_the_same_commands() {
        for (short, long) in [
            (
                vec!["list", "--status", "quarantined"],
                vec!["events", "list", "--status", "quarantined"],
            ),
            (vec!["show", "k"], vec!["events", "show", "k"]),
            (
                vec!["redrive-dlq", "--dry-run"],
                vec!["dlq", "redrive", "--dry-run"],
            ),
        ] {
            let parse = |args: Vec<&str>| {
                let cli = Cli::try_parse_from(std::iter::once("revel-ops").chain(args)).unwrap();
                match cli.command {
                    Command::Events(EventsCommand::List(a)) | Command::List(a) => {
                        format!("list {a:?}")
                    }
                    Command::Events(EventsCommand::Show(a)) | Command::Show(a) => {
                        format!("show {a:?}")
                    }
                    Command::Dlq(DlqCommand::Redrive(a)) | Command::RedriveDlq(a) => {
                        format!("redrive {a:?}")
                    }
                    other => format!("{other:?}"),
                }
            };
            assert_eq!(parse(short), parse(long));
        }
    }
}
