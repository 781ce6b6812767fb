//! `dlq redrive`: messages from the jobs dead-letter queue back to the jobs
//! FIFO queue.
//!
//! Each message is sent with its body, its message attributes and its
//! `MessageGroupId` (so jobs of one entity stay in order), and deleted from
//! the DLQ only after the send succeeded. Its deduplication id is fresh, not
//! the original: SQS would silently drop a copy whose original id was used
//! within the last 5 minutes (a job the worker parked at once), and the
//! delete would then lose it. The fresh id is derived from the DLQ message's
//! own id, so if the tool dies between the send and the delete, running it
//! again within 5 minutes sends nothing twice.

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use clap::Args;
use domain::idempotency::sha256_hex;
use serde_json::{json, Value};

use crate::context::Context;
use crate::error::OpsError;
use crate::output;

#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// At most this many messages (default: as many as the DLQ held when
    /// the command started, so a job that fails again at once is not
    /// redriven twice in one run).
    #[arg(long)]
    pub max: Option<usize>,
    /// Print the messages that would move; send and delete nothing (they
    /// are received to be read, and made visible again at once).
    #[arg(long)]
    pub dry_run: bool,
}

/// How long a received message stays hidden while it is being moved.
pub const VISIBILITY_SECS: i32 = 120;

/// The fresh deduplication id of a redriven message.
pub fn redrive_deduplication_id(dlq_message_id: &str) -> String {
    sha256_hex(format!("redrive:{dlq_message_id}").as_bytes())
}

/// Messages visible in a queue now.
pub async fn waiting(context: &Context, queue_url: &str) -> Result<usize, OpsError> {
    let attributes = context
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| OpsError::aws("sqs", "GetQueueAttributes", e))?;
    Ok(attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// Makes received messages visible again at once (a failure is only
/// reported: they come back by themselves after the visibility timeout).
pub async fn release(context: &Context, queue_url: &str, handles: &[String]) {
    for handle in handles.iter().filter(|h| !h.is_empty()) {
        let released = context
            .sqs
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await;
        if let Err(error) = released {
            eprintln!(
                "revel-ops: {}",
                OpsError::aws("sqs", "ChangeMessageVisibility", error)
            );
        }
    }
}

/// What a job message is about, for the report (the body is a job, no
/// personal data; anything else is shown by size only).
fn about(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(job) if job.get("job").is_some() => format!(
            "{} {}",
            job["job"].as_str().unwrap_or("?"),
            job["event_key"].as_str().unwrap_or("")
        ),
        _ => format!("<{} bytes, not a job>", body.len()),
    }
}

pub async fn redrive(context: &Context, args: &RedriveArgs) -> Result<(), OpsError> {
    let dlq = context.dlq_url()?;
    let jobs = context.jobs_queue_url()?;
    let max = match args.max {
        Some(max) => max,
        None => waiting(context, dlq).await?,
    };
    let bar = output::bar(max as u64, "redriving");
    let (mut moved, mut held) = (0usize, Vec::new());
    let result: Result<(), OpsError> = async {
        while moved < max {
            let received = context
                .sqs
                .receive_message()
                .queue_url(dlq)
                .max_number_of_messages((max - moved).min(10) as i32)
                .visibility_timeout(VISIBILITY_SECS)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| OpsError::aws("sqs", "ReceiveMessage", e))?;
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for message in messages {
                let handle = message.receipt_handle.clone().unwrap_or_default();
                if moved >= max {
                    held.push(handle);
                    continue;
                }
                let id = message.message_id.clone().unwrap_or_default();
                let body = message.body.clone().unwrap_or_default();
                let group = message
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .cloned();
                let Some(group) = group else {
                    held.push(handle);
                    return Err(OpsError::Invalid {
                        what: "dead letter",
                        why: format!("message {id} has no MessageGroupId (is the DLQ FIFO?)"),
                    });
                };
                let dedup = redrive_deduplication_id(&id);
                let line = if context.json {
                    json!({"message_id": id, "group": group, "job": about(&body),
                           "outcome": if args.dry_run { "would_move" } else { "moved" }})
                    .to_string()
                } else {
                    format!(
                        "{id}  {}  group {group}  {}",
                        if args.dry_run { "would move" } else { "moved" },
                        about(&body)
                    )
                };
                if args.dry_run {
                    held.push(handle);
                } else {
                    context
                        .sqs
                        .send_message()
                        .queue_url(jobs)
                        .message_body(&body)
                        .message_group_id(&group)
                        .message_deduplication_id(&dedup)
                        .set_message_attributes(message.message_attributes.clone())
                        .send()
                        .await
                        .map_err(|e| {
                            held.push(handle.clone());
                            OpsError::aws("sqs", "SendMessage", e)
                        })?;
                    // Only now: the job is safely on the jobs queue.
                    context
                        .sqs
                        .delete_message()
                        .queue_url(dlq)
                        .receipt_handle(&handle)
                        .send()
                        .await
                        .map_err(|e| OpsError::aws("sqs", "DeleteMessage", e))?;
                }
                output::line(&bar, &line)?;
                moved += 1;
                bar.inc(1);
            }
        }
        Ok(())
    }
    .await;
    // Whatever was received and not moved is made visible again at once.
    release(context, dlq, &held).await;
    bar.finish_and_clear();
    result?;
    if !context.json {
        if args.dry_run {
            output::print(&format!(
                "{moved} message(s) would move (dry run: nothing sent or deleted)\n"
            ))?;
        } else {
            output::print(&format!("{moved} message(s) moved to the jobs queue\n"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redriven_message_gets_a_fresh_id_that_is_stable_for_that_message() {
        let id = redrive_deduplication_id("m-1");
        assert_eq!(id, redrive_deduplication_id("m-1"));
        assert_ne!(id, redrive_deduplication_id("m-2"));
        assert!(id.len() <= 128);
    }
}
