//! `instance remove`: the instance's entry leaves the Revel secret
//! document, so its webhooks are refused (401) and the schedule stops
//! queueing its work within the functions' cache TTL. Its checkpoints and
//! counters stay in the sync-state table (they expire or are reused if the
//! instance comes back); archived events stay until their TTL.

use clap::Args;

use super::document::RevelDocument;
use super::WriteArgs;
use crate::context::Context;
use crate::error::OpsError;
use crate::output;

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The instance to disconnect.
    pub name: String,
    #[command(flatten)]
    pub write: WriteArgs,
}

pub async fn remove(context: &Context, args: &RemoveArgs) -> Result<(), OpsError> {
    let instance = super::instance_name(&args.name)?;
    let mut document = RevelDocument::read(context).await?;
    if !document.remove(instance.as_str()) {
        return Err(OpsError::NoInstance(instance.to_string()));
    }
    let text = if args.write.dry_run {
        format!("dry run: would remove {instance} from the Revel secret document ({} instance(s) would remain); nothing was written\n", document.len())
    } else {
        document.write(context).await?;
        format!("removed {instance}: its webhooks are refused and its schedule stops within the functions' cache TTL; {} instance(s) remain (its checkpoints stay in the sync-state table)\n", document.len())
    };
    if context.json {
        output::print(&format!(
            "{}\n",
            serde_json::json!({"instance": instance.as_str(), "action": "remove", "written": !args.write.dry_run, "instances_after": document.len()})
        ))
    } else {
        output::print(&text)
    }
}
