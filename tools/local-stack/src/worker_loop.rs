//! Runs the jobs worker against the local queue the way Lambda's SQS event
//! source does: receive a batch, hand it over, delete what succeeded, and
//! let what failed come back later (here after `retry_after`, in Lambda
//! after the queue's visibility timeout) until the redrive policy moves it
//! to the dead-letter queue.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use pipeline::worker::Worker;

use crate::Error;

/// What one poll did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    pub received: usize,
    pub failed: usize,
}

/// Receives one batch (up to 10), runs it, acknowledges the successes.
pub async fn poll_once(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    worker: &Worker,
    deadline: Duration,
    retry_after: Duration,
) -> Result<Polled, Error> {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await?
        .messages
        .unwrap_or_default();
    if received.is_empty() {
        return Ok(Polled::default());
    }
    let mut handles = HashMap::new();
    let mut event = SqsEvent::default();
    for message in &received {
        let id = message.message_id().unwrap_or_default().to_owned();
        handles.insert(
            id.clone(),
            message.receipt_handle().unwrap_or_default().to_owned(),
        );
        let mut record = SqsMessage::default();
        record.message_id = Some(id);
        record.receipt_handle = message.receipt_handle().map(str::to_owned);
        record.body = message.body().map(str::to_owned);
        record.attributes = message
            .attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        event.records.push(record);
    }
    let response = worker
        .handle_batch(event, tokio::time::Instant::now() + deadline)
        .await;
    let failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    for (id, handle) in &handles {
        if failed.contains(id) {
            sqs.change_message_visibility()
                .queue_url(queue_url)
                .receipt_handle(handle)
                .visibility_timeout(retry_after.as_secs() as i32)
                .send()
                .await?;
        } else {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(handle)
                .send()
                .await?;
        }
    }
    Ok(Polled {
        received: received.len(),
        failed: failed.len(),
    })
}

/// Messages waiting in a queue (visible ones).
pub async fn waiting(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<usize, Error> {
    let count = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Ok(count)
}
