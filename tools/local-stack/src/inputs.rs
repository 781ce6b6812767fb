//! The sample inputs of the functions that are not behind API Gateway, so
//! `sam local invoke` (or `cargo lambda invoke`) has an input for every
//! function:
//!
//! - `events-processor.json`: the DynamoDB stream event the processor gets
//!   for a new record: the order sample, stored by the real Revel receiver
//!   (its `EventRecord` turned into the stream's image by `serde_dynamo`, as
//!   DynamoDB writes it, so the format can't drift from the receivers');
//! - `jobs-worker.json`: the SQS event the jobs worker gets for the
//!   `sync_entity` job the processor queues for that record;
//! - `revel-scheduler.json`: what EventBridge Scheduler sends the scheduler
//!   for its tick (template.yaml's own `Input`, its time placeholder filled
//!   in).
//!
//! They are dated [`SAMPLE_SIGNED_AT`], like the signed samples, so the
//! generator writes the same bytes every time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use domain::clock::Clock;
use domain::error::DependencyError;
use domain::idempotency::sha256_hex;
use domain::ids::{EntityKey, EventKey};
use domain::request::WebhookRequest;
use domain::sources::FollowUp;
use pipeline::config::Settings;
use pipeline::receive::Receiver;
use ports::queue::{JobKind, QueuedJob};
use ports::secrets::{SecretCache, SecretDocument, SecretSource};
use ports::store::{EventRecord, EventStatus, EventStore, Put, Rank};
use serde_json::{json, Value};
use time::OffsetDateTime;
use vendors::revel::{Revel, RevelEventType};

use crate::events::{revel_headers, SAMPLE_SIGNED_AT};
use crate::{Error, DEMO_INSTANCE, DEMO_SECRET};

/// The files written, by function crate.
pub const PROCESSOR_INPUT: &str = "events-processor.json";
pub const WORKER_INPUT: &str = "jobs-worker.json";
pub const SCHEDULER_INPUT: &str = "revel-scheduler.json";

/// The account, region and names in the samples' ARNs.
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// The scheduler's one schedule for the Revel instances, in template.yaml.
pub const SCHEDULER_TICK: &str = "SchedulerTick";

/// The template's placeholder for the tick's time in a schedule's `Input`.
const SCHEDULED_TIME: &str = "<aws.scheduler.scheduled-time>";

/// A clock stopped at one instant: the samples are dated, not timed.
struct Stopped(OffsetDateTime);

impl Clock for Stopped {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// The demo instance's webhook secret, as Secrets Manager would hold it.
struct DemoSecret;

#[async_trait]
impl SecretSource for DemoSecret {
    async fn fetch(&self) -> Result<SecretDocument, DependencyError> {
        Ok(SecretDocument(
            json!({ DEMO_INSTANCE: [DEMO_SECRET] }).to_string(),
        ))
    }
}

/// An events table that keeps the one record a receiver puts: the record
/// exactly as the receiver would have written it.
#[derive(Default)]
struct Kept(Mutex<Option<EventRecord>>);

#[async_trait]
impl EventStore for Kept {
    async fn put_new(&self, record: &EventRecord) -> Result<Put, DependencyError> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(record.clone());
        Ok(Put::New)
    }

    async fn get(&self, _: &EventKey) -> Result<Option<EventRecord>, DependencyError> {
        Ok(self.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    async fn mark_for_replay(
        &self,
        _: &EventKey,
        _: EventStatus,
        _: i64,
    ) -> Result<bool, DependencyError> {
        Ok(false)
    }
}

fn sample_time() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(SAMPLE_SIGNED_AT).expect("a valid instant")
}

/// The order sample (`dir/payloads/order-finalized.json`) as the Revel
/// order receiver stores it, received at [`SAMPLE_SIGNED_AT`].
pub async fn sample_record(dir: &Path) -> Result<EventRecord, Error> {
    let path = dir.join("payloads").join("order-finalized.json");
    let raw = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    // As the signed samples: the bytes sent are the file without its final newline.
    let body = raw.strip_suffix(b"\n").unwrap_or(&raw).to_vec();
    let kind = RevelEventType::OrderFinalized;
    let mut headers = http::HeaderMap::new();
    for (name, value) in revel_headers(kind, DEMO_INSTANCE, DEMO_SECRET, &body) {
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes())?,
            http::HeaderValue::from_str(&value)?,
        );
    }
    let kept = Arc::new(Kept::default());
    let receiver = Receiver::new(
        Arc::new(Revel::new(SecretCache::new(
            DemoSecret,
            Duration::from_secs(300),
        ))),
        Arc::new(kind),
        kept.clone(),
        Settings::default(),
        Arc::new(Stopped(sample_time())),
    );
    let request = WebhookRequest {
        headers,
        body,
        request_id: "sample-request".into(),
        path_params: Vec::new(),
    };
    receiver
        .receive(&request)
        .await
        .map_err(|e| format!("the order sample was not accepted: {e}"))?;
    let record = kept.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    record.ok_or_else(|| "the receiver stored nothing".into())
}

/// Roughly what DynamoDB counts as an item's size: names and values.
fn item_size(item: &serde_dynamo::Item) -> usize {
    fn value_size(value: &serde_dynamo::AttributeValue) -> usize {
        use serde_dynamo::AttributeValue as A;
        match value {
            A::S(s) | A::N(s) => s.len(),
            A::B(b) => b.len(),
            A::Bool(_) | A::Null(_) => 1,
            A::M(m) => {
                3 + m
                    .iter()
                    .map(|(k, v)| k.len() + value_size(v))
                    .sum::<usize>()
            }
            A::L(l) => 3 + l.iter().map(value_size).sum::<usize>(),
            A::Ss(v) | A::Ns(v) => v.iter().map(String::len).sum(),
            A::Bs(v) => v.iter().map(Vec::len).sum(),
        }
    }
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

/// The stream's ARN in the samples: the events table's, as the template names it.
fn stream_arn() -> String {
    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/EventsTable/stream/2026-11-01T00:00:00.000")
}

/// The Lambda event of the events table's stream for one new `record`.
pub fn stream_event(record: &EventRecord) -> Result<Value, Error> {
    let image: serde_dynamo::Item = serde_dynamo::to_item(record)?;
    let keys: serde_dynamo::Item = serde_dynamo::to_item(json!({"event_key": record.event_key}))?;
    let sequence = "4400000000000000000000001";
    Ok(json!({
        "Records": [{
            "eventID": &sha256_hex(format!("{}#{sequence}", record.event_key).as_bytes())[..32],
            "eventName": "INSERT",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": REGION,
            "dynamodb": {
                "ApproximateCreationDateTime": record.received_at_micros.div_euclid(1_000_000),
                "Keys": keys,
                "NewImage": image,
                "SequenceNumber": sequence,
                "SizeBytes": item_size(&image),
                "StreamViewType": "NEW_IMAGE"
            },
            "eventSourceARN": stream_arn()
        }]
    }))
}

/// The `sync_entity` job the processor queues for `record` (an entity
/// change whose follow-up is a sync).
pub fn sync_job(record: &EventRecord) -> Result<QueuedJob, Error> {
    let reading = pipeline::process::read(record)
        .map_err(|e| format!("the sample record doesn't read: {}", e.0))?;
    if reading.meaning.follow_up != FollowUp::SyncEntity {
        return Err("the sample record's follow-up is not a sync".into());
    }
    let change = reading
        .meaning
        .entity
        .ok_or("the sample record changes no entity")?;
    let entity = EntityKey::new(reading.source, &record.instance, change.kind, &change.id)?;
    let version = pipeline::process::version_micros(record, change.version);
    Ok(QueuedJob::for_entity(
        JobKind::SyncEntity,
        reading.source.as_str(),
        &record.instance,
        &record.event_type,
        &record.event_key,
        &entity,
        &Rank::new(version, change.ends_entity, &record.body_sha256),
    ))
}

/// The Lambda event of the jobs FIFO queue holding `job`, received once.
pub fn sqs_event(job: &QueuedJob, sent_at: OffsetDateTime) -> Result<Value, Error> {
    let body = serde_json::to_string(&job.message)?;
    let id = sha256_hex(job.deduplication_id.as_bytes());
    let sent_ms = (sent_at.unix_timestamp_nanos() / 1_000_000).to_string();
    Ok(json!({
        "Records": [{
            "messageId": format!("{}-{}-{}-{}-{}", &id[..8], &id[8..12], &id[12..16], &id[16..20], &id[20..32]),
            "receiptHandle": format!("AQEB{}", &id[32..]),
            "body": body,
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": sent_ms,
                "SenderId": "AROAEXAMPLEPROCESSOR:events-processor",
                "ApproximateFirstReceiveTimestamp": sent_ms,
                "SequenceNumber": "18890000000000000001",
                "MessageGroupId": job.group_id,
                "MessageDeduplicationId": job.deduplication_id
            },
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:JobsQueue.fifo"),
            "awsRegion": REGION
        }]
    }))
}

/// What EventBridge Scheduler sends for the template schedule `schedule`
/// of `RevelSchedulerFunction`, ticking at `at`.
pub fn scheduler_event(
    template: &crate::template::Template,
    schedule: &str,
    at: OffsetDateTime,
) -> Result<Value, Error> {
    let input = template
        .resource("RevelSchedulerFunction")
        .and_then(|f| f.properties.get("Events"))
        .and_then(|events| events.get(schedule))
        .and_then(|event| event.get("Properties"))
        .and_then(|properties| properties.get("Input"))
        .and_then(serde_norway::Value::as_str)
        .ok_or_else(|| format!("template.yaml has no Input for the schedule {schedule}"))?;
    let tick = at.format(&time::format_description::well_known::Rfc3339)?;
    Ok(serde_json::from_str(&input.replace(SCHEDULED_TIME, &tick))?)
}

/// Every input, as (file name, event), from the payloads in `dir/payloads`.
pub async fn render_all(dir: &Path) -> Result<Vec<(&'static str, Value)>, Error> {
    let record = sample_record(dir).await?;
    let job = sync_job(&record)?;
    let template = crate::template::Template::load(&crate::template::default_path())?;
    Ok(vec![
        (PROCESSOR_INPUT, stream_event(&record)?),
        (
            WORKER_INPUT,
            sqs_event(&job, sample_time() + Duration::from_millis(40))?,
        ),
        (
            SCHEDULER_INPUT,
            scheduler_event(&template, SCHEDULER_TICK, sample_time())?,
        ),
    ])
}

/// Writes every input into `dir`; returns the files written.
pub async fn write_all(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut written = Vec::new();
    for (name, event) in render_all(dir).await? {
        let path = dir.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(&event)? + "\n")?;
        written.push(path);
    }
    Ok(written)
}

/// Whether an event file is an API Gateway request (the other files in
/// events/ are these inputs).
pub fn is_http_request(event: &Value) -> bool {
    event["version"] == "2.0" && event["requestContext"]["http"].is_object()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::dynamodb::Event;
    use aws_lambda_events::event::sqs::SqsEvent;

    fn dir() -> PathBuf {
        crate::events::default_dir()
    }

    #[tokio::test]
    async fn the_input_files_are_exactly_what_the_generator_writes() {
        for (name, generated) in render_all(&dir()).await.unwrap() {
            let on_disk: Value =
                serde_json::from_str(&std::fs::read_to_string(dir().join(name)).unwrap()).unwrap();
            assert_eq!(on_disk, generated, "{name} is stale: run `make events`");
        }
    }

    #[tokio::test]
    async fn the_stream_event_reads_back_as_the_record_the_receiver_stored() {
        let record = sample_record(&dir()).await.unwrap();
        assert_eq!(record.status, EventStatus::Received);
        assert!(
            record
                .event_key
                .as_str()
                .starts_with("revel:demo:order.finalized:biz:"),
            "{}",
            record.event_key
        );
        let event: Event = serde_json::from_value(stream_event(&record).unwrap()).unwrap();
        let image = event.records[0].change.new_image.clone();
        let back: EventRecord = serde_dynamo::from_item(image).unwrap();
        assert_eq!(back, record);
        assert_eq!(event.records[0].event_name, "INSERT");
    }

    #[tokio::test]
    async fn the_sqs_event_carries_the_job_the_processor_queues_for_that_record() {
        let record = sample_record(&dir()).await.unwrap();
        let job = sync_job(&record).unwrap();
        let event: SqsEvent =
            serde_json::from_value(sqs_event(&job, sample_time()).unwrap()).unwrap();
        let message: ports::queue::JobMessage =
            serde_json::from_str(event.records[0].body.as_deref().unwrap()).unwrap();
        assert_eq!(message.job, JobKind::SyncEntity);
        assert_eq!(message.event_key, record.event_key.as_str());
        assert_eq!(
            message.entity_key.as_deref(),
            record.entity_key.as_ref().map(EntityKey::as_str)
        );
        assert_eq!(event.records[0].attributes["MessageGroupId"], job.group_id);
    }

    #[test]
    fn the_scheduler_event_names_a_task_and_its_tick() {
        let template = crate::template::Template::load(&crate::template::default_path()).unwrap();
        let event = scheduler_event(&template, SCHEDULER_TICK, sample_time()).unwrap();
        assert_eq!(
            pipeline::schedule::task_of(&event).unwrap(),
            pipeline::schedule::Task::Tick
        );
        assert_eq!(pipeline::schedule::scheduled_at(&event), sample_time());
        assert!(scheduler_event(&template, "NoSuchSchedule", sample_time()).is_err());
    }

    #[test]
    fn only_api_gateway_requests_are_posted() {
        let request = crate::events::http_api_event("POST", "/x", "", &[], b"{}");
        assert!(is_http_request(&request));
        assert!(!is_http_request(&json!({"Records": []})));
        assert!(!is_http_request(&json!({"task": "product_sync"})));
    }
}
