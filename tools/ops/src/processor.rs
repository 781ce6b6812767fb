//! `processor redrive`: records the events processor gave up on, handed
//! back to it.
//!
//! When a record of the events table's stream keeps failing (the entities
//! table or the jobs queue unreachable for longer than the retries last),
//! the event source mapping passes over it and reports it on
//! `EventsProcessorFailureQueue`: the report names the stream, the shard and
//! the first and last sequence numbers of the batch, not the records. This
//! reads each report, fetches those records from the stream
//! (`GetShardIterator AT_SEQUENCE_NUMBER`, `GetRecords`, within the
//! stream's 24 hours) to learn their event keys, replays each
//! ([`pipeline::replay`]: one conditional update, and the stream brings it to
//! the processor again, which applies it idempotently), and deletes the
//! report only once every record in it was handed back. A report whose
//! records can't all be handed back stays on the queue, and the command
//! exits 3.

use std::cmp::Ordering;

use aws_adapters::dynamodb::DynamoEventStore;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use aws_sdk_sqs::types::Message;
use clap::Args;
use domain::ids::EventKey;
use serde::Deserialize;
use serde_json::json;

use crate::context::{required, Context};
use crate::dlq::{release, waiting, VISIBILITY_SECS};
use crate::error::OpsError;
use crate::output;
use crate::replay::{replay_one, report};

#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// The processor's failure queue (template.yaml's
    /// EventsProcessorFailureQueue).
    #[arg(
        long,
        env = "EVENTS_PROCESSOR_FAILURE_QUEUE_URL",
        hide_env_values = true
    )]
    pub queue_url: Option<String>,
    /// At most this many failure reports (default: as many as the queue
    /// held when the command started).
    #[arg(long)]
    pub max: Option<usize>,
    /// Print the records each report names and what replaying them would
    /// do; write and delete nothing (the reports are received to be read,
    /// and made visible again at once).
    #[arg(long)]
    pub dry_run: bool,
}

/// What Lambda's on-failure destination says of a DynamoDB stream batch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FailureReport {
    #[serde(rename = "DDBStreamBatchInfo")]
    pub batch: BatchInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchInfo {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    #[serde(default)]
    pub batch_size: Option<u32>,
    #[serde(default)]
    pub stream_arn: Option<String>,
}

/// Sequence numbers are decimal strings of up to 40 digits, growing within
/// a shard: compared as numbers.
pub fn compare_sequence(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// The table a stream ARN belongs to
/// (`arn:aws:dynamodb:…:table/{name}/stream/{label}`).
pub fn table_of(stream_arn: &str) -> Option<&str> {
    let mut parts = stream_arn.split('/');
    parts.next()?.ends_with(":table").then_some(())?;
    let table = parts.next()?;
    (parts.next()? == "stream").then_some(table)
}

/// GetRecords pages read for one report before giving up on reaching its
/// last sequence number (a page may come back empty while later ones hold
/// records).
const MAX_PAGES: usize = 50;

/// The stream of the events table, as DescribeTable names it.
async fn latest_stream(context: &Context, table: &str) -> Result<String, OpsError> {
    context
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| OpsError::aws("dynamodb", "DescribeTable", e))?
        .table
        .and_then(|t| t.latest_stream_arn)
        .ok_or_else(|| OpsError::Invalid {
            what: "events table",
            why: format!("{table} has no stream"),
        })
}

/// The stream a report names, checked to be the events table's.
fn stream_of<'a>(batch: &'a BatchInfo, table: &str, latest: &'a str) -> Result<&'a str, OpsError> {
    match batch.stream_arn.as_deref() {
        None => Ok(latest),
        Some(arn) if table_of(arn) == Some(table) => Ok(arn),
        Some(arn) => Err(OpsError::Invalid {
            what: "failure report",
            why: format!("it names {arn}, not a stream of the events table {table}"),
        }),
    }
}

/// The event keys of the records from the report's first to its last
/// sequence number, in stream order, each once.
async fn keys_in(
    context: &Context,
    stream_arn: &str,
    batch: &BatchInfo,
) -> Result<Vec<EventKey>, OpsError> {
    let mut iterator = context
        .streams
        .get_shard_iterator()
        .stream_arn(stream_arn)
        .shard_id(&batch.shard_id)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .sequence_number(&batch.start_sequence_number)
        .send()
        .await
        .map_err(|e| OpsError::aws("dynamodbstreams", "GetShardIterator", e))?
        .shard_iterator;
    let limit = batch.batch_size.unwrap_or(100).clamp(1, 1000) as i32;
    let mut keys: Vec<EventKey> = Vec::new();
    let mut reached_end = false;
    for _ in 0..MAX_PAGES {
        let Some(current) = iterator.take() else {
            break;
        };
        let page = context
            .streams
            .get_records()
            .shard_iterator(current)
            .limit(limit)
            .send()
            .await
            .map_err(|e| OpsError::aws("dynamodbstreams", "GetRecords", e))?;
        for record in page.records.unwrap_or_default() {
            let Some(change) = record.dynamodb else {
                continue;
            };
            let sequence = change.sequence_number.unwrap_or_default();
            if compare_sequence(&sequence, &batch.end_sequence_number) == Ordering::Greater {
                reached_end = true;
                break;
            }
            let key = change
                .keys
                .as_ref()
                .and_then(|k| k.get("event_key"))
                .and_then(|v| v.as_s().ok())
                .ok_or_else(|| OpsError::Unreadable {
                    what: format!("stream record {sequence}"),
                    why: "no event_key".into(),
                })?;
            let key = EventKey::parse(key).map_err(|e| OpsError::Unreadable {
                what: format!("stream record {sequence}"),
                why: e.to_string(),
            })?;
            if !keys.contains(&key) {
                keys.push(key);
            }
            if compare_sequence(&sequence, &batch.end_sequence_number) != Ordering::Less {
                reached_end = true;
                break;
            }
        }
        if reached_end {
            break;
        }
        iterator = page.next_shard_iterator;
    }
    if keys.is_empty() {
        return Err(OpsError::Invalid {
            what: "failure report",
            why: format!(
                "the stream holds no record from {} to {} of {} (past its 24 hours?); find the events with `events list` and `replay KEY`",
                batch.start_sequence_number, batch.end_sequence_number, batch.shard_id
            ),
        });
    }
    Ok(keys)
}

/// What became of one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Every record handed back (or, in a dry run, would be): deleted.
    Redriven,
    /// Something failed: the report stays for the next run.
    Kept,
}

/// Hands back every record `message` reports; deletes it once all were.
async fn redrive_one(
    context: &Context,
    queue_url: &str,
    store: &DynamoEventStore,
    latest: &str,
    message: &Message,
    dry_run: bool,
    bar: &indicatif::ProgressBar,
) -> Result<(Fate, usize), OpsError> {
    let id = message.message_id().unwrap_or_default();
    let table = context.events_table()?;
    let found = async {
        let report: FailureReport = serde_json::from_str(message.body().unwrap_or_default())
            .map_err(|e| OpsError::Unreadable {
                what: format!("failure report {id}"),
                why: e.to_string(),
            })?;
        let stream = stream_of(&report.batch, table, latest)?;
        let keys = keys_in(context, stream, &report.batch).await?;
        Ok::<_, OpsError>((report, keys))
    }
    .await;
    let (batch, keys) = match found {
        Ok((report, keys)) => (report.batch, keys),
        Err(error) => {
            message_line(context, bar, id, "kept", &error.to_string(), 0)?;
            return Ok((Fate::Kept, 0));
        }
    };
    let mut failed = 0;
    for key in &keys {
        let (outcome, detail) = match replay_one(context, store, key, dry_run).await {
            Ok(done) => done,
            Err(OpsError::NotFound(_)) => (
                "gone",
                "no longer in the events table (expired): nothing to hand back".to_owned(),
            ),
            Err(error) => {
                failed += 1;
                ("error", error.to_string())
            }
        };
        report(context, bar, key.as_str(), outcome, &detail)?;
    }
    let range = format!(
        "{} {}..{}",
        batch.shard_id, batch.start_sequence_number, batch.end_sequence_number
    );
    if failed > 0 {
        let why = format!(
            "{range}: {failed} of {} record(s) not handed back; kept for the next run",
            keys.len()
        );
        message_line(context, bar, id, "kept", &why, keys.len())?;
        return Ok((Fate::Kept, keys.len()));
    }
    if dry_run {
        let what = format!("{range}: {} record(s) would be handed back", keys.len());
        message_line(context, bar, id, "would_delete", &what, keys.len())?;
        return Ok((Fate::Redriven, keys.len()));
    }
    // Only now: every record it names is on its way to the processor.
    context
        .sqs
        .delete_message()
        .queue_url(queue_url)
        .receipt_handle(message.receipt_handle().unwrap_or_default())
        .send()
        .await
        .map_err(|e| OpsError::aws("sqs", "DeleteMessage", e))?;
    let what = format!("{range}: {} record(s) handed back", keys.len());
    message_line(context, bar, id, "deleted", &what, keys.len())?;
    Ok((Fate::Redriven, keys.len()))
}

fn message_line(
    context: &Context,
    bar: &indicatif::ProgressBar,
    id: &str,
    outcome: &str,
    detail: &str,
    records: usize,
) -> Result<(), OpsError> {
    let text = if context.json {
        json!({"message_id": id, "outcome": outcome, "records": records, "detail": detail})
            .to_string()
    } else {
        format!("report {id}  {outcome}  {detail}")
    };
    output::line(bar, &text)
}

pub async fn redrive(context: &Context, args: &RedriveArgs) -> Result<(), OpsError> {
    let queue_url = required(
        &args.queue_url,
        "EVENTS_PROCESSOR_FAILURE_QUEUE_URL",
        "queue-url",
    )?;
    let table = context.events_table()?;
    let store = context.event_store()?;
    let latest = latest_stream(context, table).await?;
    let max = match args.max {
        Some(max) => max,
        None => waiting(context, queue_url).await?,
    };
    let bar = output::bar(max as u64, "redriving");
    let (mut seen, mut kept, mut records) = (0usize, 0usize, 0usize);
    let mut held = Vec::new();
    let result: Result<(), OpsError> = async {
        while seen < max {
            let messages = context
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages((max - seen).min(10) as i32)
                .visibility_timeout(VISIBILITY_SECS)
                .wait_time_seconds(1)
                .send()
                .await
                .map_err(|e| OpsError::aws("sqs", "ReceiveMessage", e))?
                .messages
                .unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for message in messages {
                let handle = message.receipt_handle().unwrap_or_default().to_owned();
                if seen >= max {
                    held.push(handle);
                    continue;
                }
                seen += 1;
                let (fate, count) = redrive_one(
                    context,
                    queue_url,
                    &store,
                    &latest,
                    &message,
                    args.dry_run,
                    &bar,
                )
                .await?;
                records += count;
                // A dry run and a kept report come back at once, for the
                // next run (or the operator's next look).
                if args.dry_run || fate == Fate::Kept {
                    held.push(handle);
                }
                if fate == Fate::Kept {
                    kept += 1;
                }
                bar.inc(1);
            }
        }
        Ok(())
    }
    .await;
    release(context, queue_url, &held).await;
    bar.finish_and_clear();
    result?;
    if !context.json {
        output::print(&if args.dry_run {
            format!("{seen} failure report(s) read, {records} record(s) named, {kept} that can't be redriven now (dry run: nothing written or deleted)\n")
        } else {
            format!("{seen} failure report(s): {} redriven and deleted ({records} record(s) handed to the processor), {kept} kept\n", seen - kept)
        })?;
    }
    if kept > 0 {
        return Err(OpsError::Partial {
            failed: kept,
            total: seen,
            what: "failure reports",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_as_numbers_not_as_text() {
        assert_eq!(compare_sequence("900", "1000"), Ordering::Less);
        assert_eq!(compare_sequence("1000", "0001000"), Ordering::Equal);
        assert_eq!(compare_sequence("1001", "1000"), Ordering::Greater);
    }

    #[test]
    fn a_stream_arn_names_its_table_and_other_arns_name_none() {
        assert_eq!(
            table_of("arn:aws:dynamodb:us-east-1:1:table/local-EventsTable/stream/2026-11-30T00:14:26.824"),
            Some("local-EventsTable")
        );
        assert_eq!(table_of("arn:aws:sqs:us-east-1:1:queue"), None);
        assert_eq!(table_of("arn:aws:dynamodb:us-east-1:1:table/t"), None);
    }

    #[test]
    fn a_report_reads_as_lambda_writes_it_for_a_dynamodb_stream() {
        // The on-failure destination's record of a stream batch, as AWS
        // documents it.
        let body = r#"{
            "requestContext": {"requestId": "r", "functionArn": "f", "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 51},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": "2026-11-30T00:38:06.021Z",
            "DDBStreamBatchInfo": {
                "shardId": "shardId-00000001573689847184-864758bb",
                "startSequenceNumber": "800000000003126276362",
                "endSequenceNumber": "800000000003126276363",
                "approximateArrivalOfFirstRecord": "2026-11-30T00:38:04Z",
                "approximateArrivalOfLastRecord": "2026-11-30T00:38:05Z",
                "batchSize": 2,
                "streamArn": "arn:aws:dynamodb:us-east-2:123456789012:table/events/stream/2026-11-14T00:04:06.388"
            }
        }"#;
        let report: FailureReport = serde_json::from_str(body).unwrap();
        assert_eq!(report.batch.batch_size, Some(2));
        assert_eq!(
            stream_of(&report.batch, "events", "latest").unwrap(),
            report.batch.stream_arn.as_deref().unwrap()
        );
        assert!(stream_of(&report.batch, "other-table", "latest").is_err());
    }
}
