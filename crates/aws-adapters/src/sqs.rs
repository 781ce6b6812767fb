//! The jobs queue on SQS FIFO: each job's group and deduplication id are
//! decided by [`ports::queue::Job`]; this only sends it.

use async_trait::async_trait;
use domain::error::DependencyError;
use ports::queue::{Job, JobQueue};

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
    async fn enqueue(&self, job: &Job) -> Result<(), DependencyError> {
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
