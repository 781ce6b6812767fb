//! Reads the events table's stream on the local endpoint the way Lambda's
//! DynamoDB event source mapping does, and hands each batch to the
//! processor as the Lambda event it would get.
//!
//! Kept from the mapping: each shard read in order from its oldest record
//! (`TRIM_HORIZON`); batches of up to [`BATCH_SIZE`]; a batch answered
//! with a failed sequence number is checkpointed before that record and
//! read again from it on the next poll; a record that fails
//! [`MAX_RETRY_ATTEMPTS`] times in a row (or as many as
//! [`StreamPoller::with_max_retry_attempts`] says) is reported on the failure queue
//! (as the mapping's on-failure destination reports it: shard and sequence
//! numbers, no record) and passed over. Not kept: the mapping's
//! parallelism (one poller, shards one after another) and its splitting of
//! a batch whose invocation failed as a whole (the processor reports
//! failures per record, so there is nothing to bisect).

use std::collections::BTreeMap;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use pipeline::process::Processor;

use crate::Error;

/// Records per batch, as template.yaml's `BatchSize`.
pub const BATCH_SIZE: i32 = 100;

/// Failures of one record before it is passed over, as template.yaml's
/// `MaximumRetryAttempts` bounds them.
pub const MAX_RETRY_ATTEMPTS: u32 = 50;

/// Where one shard's reading stands.
#[derive(Debug, Default, Clone)]
struct ShardPosition {
    /// The last sequence number checkpointed: reading resumes after it.
    after: Option<String>,
    /// Failures of the record at the head of the shard, and its number.
    failing: Option<(String, u32)>,
}

/// What one poll did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    /// Records handed to the processor.
    pub records: usize,
    /// Batches answered with a failed record.
    pub failed_batches: usize,
    /// Records passed over after their retries, reported on the failure queue.
    pub given_up: usize,
}

/// The event source mapping of one stream, on the local endpoint.
pub struct StreamPoller {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    table_name: String,
    /// Where a record given up on is reported; `None`: only logged.
    failure_queue: Option<(aws_sdk_sqs::Client, String)>,
    max_retry_attempts: u32,
    shards: BTreeMap<String, ShardPosition>,
}

impl StreamPoller {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        stream_arn: impl Into<String>,
        table_name: impl Into<String>,
    ) -> Self {
        Self {
            client: aws_sdk_dynamodbstreams::Client::new(sdk),
            stream_arn: stream_arn.into(),
            table_name: table_name.into(),
            failure_queue: None,
            max_retry_attempts: MAX_RETRY_ATTEMPTS,
            shards: BTreeMap::new(),
        }
    }

    /// Gives a record up after `attempts` failures instead of
    /// [`MAX_RETRY_ATTEMPTS`] (at least one), so a test reaches the
    /// failure queue in a few polls.
    pub fn with_max_retry_attempts(mut self, attempts: u32) -> Self {
        self.max_retry_attempts = attempts.max(1);
        self
    }

    /// Reports records given up on to `queue_url`, as the on-failure
    /// destination would.
    pub fn with_failure_queue(mut self, sqs: aws_sdk_sqs::Client, queue_url: String) -> Self {
        self.failure_queue = Some((sqs, queue_url));
        self
    }

    /// Reads every shard once, handing what it holds to `processor`.
    pub async fn poll_once(&mut self, processor: &Processor) -> Result<Polled, Error> {
        let mut polled = Polled::default();
        for shard in self.shard_ids().await? {
            let position = self.shards.entry(shard.clone()).or_default().clone();
            let records = self.read(&shard, &position).await?;
            if records.is_empty() {
                continue;
            }
            polled.records += records.len();
            let event = lambda_event(&self.stream_arn, &self.table_name, &records)?;
            let response = pipeline::process::stream::handle_batch(processor, event).await;
            let failed = response
                .batch_item_failures
                .first()
                .map(|f| f.item_identifier.clone().unwrap_or_default());
            let position = self.shards.entry(shard.clone()).or_default();
            match failed {
                None => {
                    position.after = records.last().and_then(sequence_number);
                    position.failing = None;
                }
                Some(sequence) => {
                    polled.failed_batches += 1;
                    // Checkpointed up to the record before the failed one.
                    let before = records
                        .iter()
                        .take_while(|r| sequence_number(r).as_deref() != Some(sequence.as_str()))
                        .last()
                        .and_then(sequence_number);
                    if before.is_some() {
                        position.after = before;
                    }
                    let attempts = match &position.failing {
                        Some((at, n)) if *at == sequence => n + 1,
                        _ => 1,
                    };
                    if attempts >= self.max_retry_attempts {
                        polled.given_up += 1;
                        position.after = Some(sequence.clone());
                        position.failing = None;
                        let report = failure_report(&self.stream_arn, &shard, &sequence, attempts);
                        self.report(report).await?;
                    } else {
                        position.failing = Some((sequence, attempts));
                    }
                }
            }
        }
        Ok(polled)
    }

    async fn shard_ids(&self) -> Result<Vec<String>, Error> {
        let description = self
            .client
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await?
            .stream_description
            .ok_or("stream without description")?;
        Ok(description
            .shards
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| s.shard_id)
            .collect())
    }

    async fn read(&self, shard: &str, position: &ShardPosition) -> Result<Vec<Record>, Error> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(shard);
        let request = match &position.after {
            Some(after) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(after),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let Some(iterator) = request.send().await?.shard_iterator else {
            return Ok(Vec::new());
        };
        Ok(self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(BATCH_SIZE)
            .send()
            .await?
            .records
            .unwrap_or_default())
    }

    async fn report(&self, report: serde_json::Value) -> Result<(), Error> {
        tracing::error!(report = %report, "stream record given up on after its retries");
        if let Some((sqs, url)) = &self.failure_queue {
            sqs.send_message()
                .queue_url(url)
                .message_body(report.to_string())
                .send()
                .await?;
        }
        Ok(())
    }
}

/// The records as the Lambda event the event source mapping sends.
pub fn lambda_event(
    stream_arn: &str,
    table_name: &str,
    records: &[Record],
) -> Result<Event, Error> {
    let mut event = Event::default();
    for record in records {
        let change = record
            .dynamodb
            .as_ref()
            .ok_or("stream record without change")?;
        let mut lambda = EventRecord::default();
        lambda.event_id = record.event_id.clone().unwrap_or_default();
        lambda.event_name = record
            .event_name
            .as_ref()
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        lambda.aws_region = record.aws_region.clone().unwrap_or_default();
        lambda.event_source = Some("aws:dynamodb".into());
        lambda.event_source_arn = Some(stream_arn.to_owned());
        lambda.table_name = Some(table_name.to_owned());
        lambda.change.sequence_number = change.sequence_number.clone();
        lambda.change.size_bytes = change.size_bytes.unwrap_or(0);
        if let Some(image) = change.new_image.clone() {
            lambda.change.new_image = serde_dynamo::Item::from(image);
        }
        if let Some(keys) = change.keys.clone() {
            lambda.change.keys = serde_dynamo::Item::from(keys);
        }
        event.records.push(lambda);
    }
    Ok(event)
}

/// Every record the stream holds, shard by shard from its oldest, in pages
/// of at most [`BATCH_SIZE`]: what the event source mapping would hand over
/// from the start.
pub async fn read_pages(
    sdk: &aws_config::SdkConfig,
    stream_arn: &str,
) -> Result<Vec<Vec<Record>>, Error> {
    let streams = aws_sdk_dynamodbstreams::Client::new(sdk);
    let shards = streams
        .describe_stream()
        .stream_arn(stream_arn)
        .send()
        .await?
        .stream_description
        .and_then(|d| d.shards)
        .unwrap_or_default();
    let mut pages = Vec::new();
    for shard in shards.into_iter().filter_map(|s| s.shard_id) {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await?
            .shard_iterator;
        while let Some(at) = iterator {
            let page = streams
                .get_records()
                .shard_iterator(at)
                .limit(BATCH_SIZE)
                .send()
                .await?;
            let records = page.records.unwrap_or_default();
            if records.is_empty() {
                break;
            }
            pages.push(records);
            iterator = page.next_shard_iterator;
        }
    }
    Ok(pages)
}

fn sequence_number(record: &Record) -> Option<String> {
    record.dynamodb.as_ref()?.sequence_number.clone()
}

/// What Lambda's on-failure destination says of a DynamoDB stream batch it
/// gave up on (the record itself stays in the table).
pub fn failure_report(
    stream_arn: &str,
    shard: &str,
    sequence: &str,
    attempts: u32,
) -> serde_json::Value {
    serde_json::json!({
        "requestContext": {
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": attempts,
        },
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": sequence,
            "endSequenceNumber": sequence,
            "batchSize": 1,
            "streamArn": stream_arn,
        }
    })
}
