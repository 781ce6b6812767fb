//! The jobs queue on SQS FIFO: each job's group and deduplication id are
//! decided by [`ports::queue::QueuedJob`]; this only sends it. And the consuming
//! side ([`ports::queue::InFlightJobs`]): a received job put off
//! (ChangeMessageVisibility) or parked in the dead-letter queue.

use std::time::Duration;

use async_trait::async_trait;
use domain::error::DependencyError;
use domain::idempotency::sha256_hex;
use ports::queue::{
    InFlightJobs, JobQueue, ParkError, QueuedJob, ReceivedJob, MAX_VISIBILITY_TIMEOUT,
};

pub struct SqsJobQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsJobQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl JobQueue for SqsJobQueue {
    async fn enqueue(&self, job: &QueuedJob) -> Result<(), DependencyError> {
        let body = serde_json::to_string(&job.message)
            .map_err(|e| DependencyError::new("sqs", "SendMessage", e))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_group_id(&job.group_id)
            .message_deduplication_id(&job.deduplication_id)
            .send()
            .await
            .map_err(|e| DependencyError::new("sqs", "SendMessage", e))?;
        Ok(())
    }
}

/// The jobs queue's received messages, and the dead-letter queue they are
/// parked in (where the deployment names one).
pub struct SqsInFlightJobs {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dead_letter_queue_url: Option<String>,
}

impl SqsInFlightJobs {
    pub fn new(
        client: aws_sdk_sqs::Client,
        queue_url: impl Into<String>,
        dead_letter_queue_url: Option<String>,
    ) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dead_letter_queue_url,
        }
    }
}

#[async_trait]
impl InFlightJobs for SqsInFlightJobs {
    async fn retry_after(&self, job: &ReceivedJob, wait: Duration) -> Result<(), DependencyError> {
        let Some(handle) = &job.receipt_handle else {
            return Ok(());
        };
        let seconds = wait.min(MAX_VISIBILITY_TIMEOUT).as_secs();
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(handle)
            .visibility_timeout(i32::try_from(seconds).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| DependencyError::new("sqs", "ChangeMessageVisibility", e))?;
        Ok(())
    }

    async fn park(&self, job: &ReceivedJob) -> Result<(), ParkError> {
        let dead_letters = self
            .dead_letter_queue_url
            .as_deref()
            .ok_or(ParkError::NoDeadLetterQueue)?;
        let group = if job.group_id.is_empty() {
            "unknown"
        } else {
            &job.group_id
        };
        self.client
            .send_message()
            .queue_url(dead_letters)
            .message_body(&job.body)
            .message_group_id(group)
            .message_deduplication_id(sha256_hex(job.message_id.as_bytes()))
            .send()
            .await
            .map_err(|e| DependencyError::new("sqs", "SendMessage", e))?;
        let Some(handle) = &job.receipt_handle else {
            return Ok(());
        };
        let deleted = self
            .client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(handle)
            .send()
            .await;
        if let Err(error) = deleted {
            // Parked all the same: the batch's answer acknowledges it, and
            // a second parking within five minutes is deduplicated.
            let error = DependencyError::new("sqs", "DeleteMessage", error);
            error.log("a parked job could not be deleted from the queue");
        }
        Ok(())
    }
}
