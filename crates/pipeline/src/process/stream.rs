//! The events table's stream in, partial batch failures out.
//!
//! Lambda's event source mapping hands the processor a batch of one shard's
//! records, in order. Records are processed in that order; at the first that
//! fails, the batch stops and its sequence number is reported
//! (`ReportBatchItemFailures`): Lambda checkpoints everything before it and
//! retries from it, so a record is never applied after a later record of the
//! same item. Removals (DynamoDB TTL expiring a record) carry nothing to
//! apply.

use aws_lambda_events::event::dynamodb::{Event, EventRecord as StreamRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use tracing::Instrument;

use super::{Processed, Processor};
use ports::store::EventRecord;
use telemetry::{self, Dimension, Metric};

/// Processes a batch; reports the first record that failed, if any.
pub async fn handle_batch(processor: &Processor, event: Event) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    for stream_record in event.records {
        if let Err(sequence_number) = handle_record(processor, stream_record).await {
            let mut failure = DynamoDbBatchItemFailure::default();
            // Without a sequence number Lambda retries the whole batch,
            // which is also safe.
            failure.item_identifier = sequence_number;
            response.batch_item_failures.push(failure);
            break;
        }
    }
    response
}

/// One stream record: `Err` with its sequence number when it must be retried.
async fn handle_record(
    processor: &Processor,
    stream_record: StreamRecord,
) -> Result<(), Option<String>> {
    if stream_record.event_name == "REMOVE" {
        return Ok(());
    }
    let sequence_number = stream_record.change.sequence_number.clone();
    let record: EventRecord = match serde_dynamo::from_item(stream_record.change.new_image) {
        Ok(record) => record,
        Err(error) => {
            // Retrying can't make it readable; it stays in the table for an
            // operator (and `revel-ops events show`).
            tracing::error!(sequence_number = ?sequence_number, error = %error, "stream record is not an event record; skipped");
            telemetry::count(
                Metric::RecordsSkipped,
                &[(Dimension::Reason, "unreadable_record")],
            );
            return Ok(());
        }
    };
    let span = tracing::info_span!(
        "record",
        event_key = %record.event_key,
        source = %record.source,
        event_type = %record.event_type,
        instance = %record.instance,
    );
    match processor.process(&record).instrument(span.clone()).await {
        Ok(Processed::Applied { .. } | Processed::Skipped { .. }) => Ok(()),
        Err(error) => {
            let _entered = span.enter();
            tracing::error!(error = %domain::error::summary(&error), "record not processed; the stream retries it");
            telemetry::count(
                Metric::ProcessingFailures,
                &[(Dimension::Reason, error.kind())],
            );
            Err(sequence_number)
        }
    }
}
