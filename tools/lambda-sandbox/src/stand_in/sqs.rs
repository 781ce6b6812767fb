//! SQS (JSON 1.0, as current SDKs and botocore speak it): CreateQueue,
//! GetQueueUrl, GetQueueAttributes, SendMessage, with FIFO queues'
//! message groups and five-minute deduplication, and the MD5 digests the
//! SDKs check.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

use super::{Fault, ACCOUNT, REGION};

/// How long a FIFO queue remembers a deduplication id.
const DEDUPLICATION_WINDOW: Duration = Duration::from_secs(5 * 60);

/// The largest message when the queue sets no `MaximumMessageSize`
/// (1 MiB since SQS raised the limit in August 2025).
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// A message sent and kept (nothing receives it here).
#[derive(Debug, Clone)]
pub struct Message {
    pub message_id: String,
    pub body: String,
    pub group_id: Option<String>,
    pub deduplication_id: Option<String>,
}

struct Sent {
    message_id: String,
    sequence_number: String,
    at: Instant,
}

struct Queue {
    name: String,
    url: String,
    attributes: BTreeMap<String, String>,
    created: u64,
    messages: Vec<Message>,
    deduplication: HashMap<(Option<String>, String), Sent>,
    sequence: u128,
}

pub(super) struct Sqs {
    endpoint: String,
    queues: Vec<Queue>,
}

fn text<'a>(request: &'a Value, field: &str) -> Option<&'a str> {
    request.get(field).and_then(Value::as_str)
}

fn fault(kind: &str, query_code: &str, message: impl Into<String>) -> Fault {
    let mut fault = Fault::new(format!("com.amazonaws.sqs#{kind}"), message);
    // SQS's JSON protocol also names the error as its query protocol did.
    fault.query_error = Some(format!("{query_code};Sender"));
    fault
}

fn missing(parameter: &str) -> Fault {
    fault(
        "MissingParameter",
        "MissingParameter",
        format!("The request must contain the parameter {parameter}."),
    )
}

fn invalid(message: impl Into<String>) -> Fault {
    fault("InvalidParameterValue", "InvalidParameterValue", message)
}

fn not_for_this_type(parameter: &str, value: &str) -> Fault {
    invalid(format!("Value {value} for parameter {parameter} is invalid. Reason: The request include parameter that is not valid for this queue type."))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

/// `MD5OfMessageAttributes` as SQS computes it: for each attribute by name,
/// length-prefixed name, data type, a transport byte (1 string, 2 binary)
/// and length-prefixed value.
fn attributes_md5(attributes: &Map<String, Value>) -> Result<String, Fault> {
    let mut names: Vec<&String> = attributes.keys().collect();
    names.sort();
    let mut buffer = Vec::new();
    let field = |bytes: &[u8], buffer: &mut Vec<u8>| {
        buffer.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        buffer.extend_from_slice(bytes);
    };
    for name in names {
        let attribute = &attributes[name];
        let data_type = text(attribute, "DataType").ok_or_else(|| {
            invalid(format!(
                "The message attribute '{name}' must contain a non-empty attribute type."
            ))
        })?;
        field(name.as_bytes(), &mut buffer);
        field(data_type.as_bytes(), &mut buffer);
        if let Some(s) = text(attribute, "StringValue") {
            buffer.push(1);
            field(s.as_bytes(), &mut buffer);
        } else if let Some(b) = text(attribute, "BinaryValue") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|_| {
                    invalid(format!(
                        "The message attribute '{name}' has an invalid binary value."
                    ))
                })?;
            buffer.push(2);
            field(&bytes, &mut buffer);
        } else {
            return Err(invalid(format!(
                "The message attribute '{name}' must contain a non-empty message attribute value."
            )));
        }
    }
    Ok(md5_hex(&buffer))
}

/// Characters SQS allows in a message: #x9 #xA #xD, #x20 to #xD7FF,
/// #xE000 to #xFFFD, #x10000 to #x10FFFF.
fn allowed(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

impl Queue {
    fn fifo(&self) -> bool {
        self.attributes
            .get("FifoQueue")
            .is_some_and(|v| v == "true")
    }

    fn arn(&self) -> String {
        format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", self.name)
    }

    fn attribute(&self, name: &str) -> Option<String> {
        match name {
            "QueueArn" => Some(self.arn()),
            "ApproximateNumberOfMessages" => Some(self.messages.len().to_string()),
            "ApproximateNumberOfMessagesNotVisible" | "ApproximateNumberOfMessagesDelayed" => {
                Some("0".into())
            }
            "CreatedTimestamp" | "LastModifiedTimestamp" => Some(self.created.to_string()),
            other => self.attributes.get(other).cloned(),
        }
    }
}

impl Sqs {
    pub(super) fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            queues: Vec::new(),
        }
    }

    /// The answer to `operation` (the target without `AmazonSQS.`).
    pub(super) fn handle(&mut self, operation: &str, request: &Value) -> Result<Value, Fault> {
        match operation {
            "CreateQueue" => self.create(request),
            "GetQueueUrl" => {
                let name = text(request, "QueueName").ok_or_else(|| missing("QueueName"))?;
                let queue = self
                    .queues
                    .iter()
                    .find(|q| q.name == name)
                    .ok_or_else(does_not_exist)?;
                Ok(json!({"QueueUrl": queue.url}))
            }
            "GetQueueAttributes" => self.attributes(request),
            "SendMessage" => self.send(request),
            other => Err(fault(
                "UnsupportedOperation",
                "AWS.SimpleQueueService.UnsupportedOperation",
                format!("the stand-in does not implement AmazonSQS.{other}"),
            )
            .marked_unsupported()),
        }
    }

    fn create(&mut self, request: &Value) -> Result<Value, Fault> {
        let name = text(request, "QueueName").ok_or_else(|| missing("QueueName"))?;
        let attributes: BTreeMap<String, String> = request
            .get("Attributes")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        let fifo = attributes.get("FifoQueue").is_some_and(|v| v == "true");
        let stem = name.strip_suffix(".fifo").unwrap_or(name);
        let valid_name = !stem.is_empty()
            && name.len() <= 80
            && stem
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(invalid("Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"));
        }
        if fifo != name.ends_with(".fifo") {
            return Err(invalid(
                "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.",
            ));
        }
        if let Some(existing) = self.queues.iter().find(|q| q.name == name) {
            // Creating a queue again with the same attributes is its URL.
            return if attributes
                .iter()
                .all(|(k, v)| existing.attributes.get(k) == Some(v))
            {
                Ok(json!({"QueueUrl": existing.url}))
            } else {
                Err(fault(
                    "QueueNameExists",
                    "QueueAlreadyExists",
                    "A queue already exists with the same name and a different value for attribute(s)",
                ))
            };
        }
        let url = format!("{}/{ACCOUNT}/{name}", self.endpoint);
        self.queues.push(Queue {
            name: name.to_owned(),
            url: url.clone(),
            attributes,
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            messages: Vec::new(),
            deduplication: HashMap::new(),
            sequence: 0,
        });
        Ok(json!({"QueueUrl": url}))
    }

    fn queue(&mut self, request: &Value) -> Result<&mut Queue, Fault> {
        let url = text(request, "QueueUrl").ok_or_else(|| missing("QueueUrl"))?;
        let mut path = url.trim_end_matches('/').rsplit('/');
        let (name, account) = (path.next(), path.next());
        if account != Some(ACCOUNT) {
            return Err(does_not_exist());
        }
        self.queues
            .iter_mut()
            .find(|q| Some(q.name.as_str()) == name)
            .ok_or_else(does_not_exist)
    }

    fn attributes(&mut self, request: &Value) -> Result<Value, Fault> {
        let asked: Vec<String> = request
            .get("AttributeNames")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let queue = self.queue(request)?;
        let names: Vec<String> = if asked.iter().any(|a| a == "All") {
            let mut all: Vec<String> = queue.attributes.keys().cloned().collect();
            all.extend(
                [
                    "QueueArn",
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                    "CreatedTimestamp",
                    "LastModifiedTimestamp",
                ]
                .map(String::from),
            );
            all
        } else {
            asked
        };
        let attributes: Map<String, Value> = names
            .iter()
            .filter_map(|n| Some((n.clone(), json!(queue.attribute(n)?))))
            .collect();
        if attributes.is_empty() {
            return Ok(json!({}));
        }
        Ok(json!({"Attributes": attributes}))
    }

    fn send(&mut self, request: &Value) -> Result<Value, Fault> {
        let body = text(request, "MessageBody")
            .filter(|b| !b.is_empty())
            .ok_or_else(|| missing("MessageBody"))?;
        if let Some(c) = body.chars().find(|c| !allowed(*c)) {
            return Err(fault(
                "InvalidMessageContents",
                "InvalidMessageContents",
                format!(
                    "Invalid characters found. Deleted message body contains character U+{:04X}",
                    c as u32
                ),
            ));
        }
        if request.get("MessageSystemAttributes").is_some() {
            return Err(Fault::unsupported(
                "AmazonSQS.SendMessage with MessageSystemAttributes",
            ));
        }
        let attributes = request.get("MessageAttributes").and_then(Value::as_object);
        let attributes_md5 = attributes.map(attributes_md5).transpose()?;
        let group = text(request, "MessageGroupId").map(str::to_owned);
        let deduplication = text(request, "MessageDeduplicationId").map(str::to_owned);
        let delay = request.get("DelaySeconds").and_then(Value::as_i64);
        let queue = self.queue(request)?;
        let limit = queue
            .attributes
            .get("MaximumMessageSize")
            .and_then(|m| m.parse().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        let attributes_size: usize = attributes
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                k.len()
                    + text(v, "DataType").map_or(0, str::len)
                    + text(v, "StringValue")
                        .or(text(v, "BinaryValue"))
                        .map_or(0, str::len)
            })
            .sum();
        if body.len() + attributes_size > limit {
            return Err(invalid(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."
            )));
        }
        let mut answer = Map::new();
        answer.insert("MD5OfMessageBody".into(), json!(md5_hex(body.as_bytes())));
        if let Some(md5) = attributes_md5 {
            answer.insert("MD5OfMessageAttributes".into(), json!(md5));
        }
        if !queue.fifo() {
            if let Some(id) = &deduplication {
                return Err(not_for_this_type("MessageDeduplicationId", id));
            }
            let message_id = uuid::Uuid::new_v4().to_string();
            queue.messages.push(Message {
                message_id: message_id.clone(),
                body: body.to_owned(),
                group_id: group,
                deduplication_id: None,
            });
            answer.insert("MessageId".into(), json!(message_id));
            return Ok(Value::Object(answer));
        }
        let group = group.ok_or_else(|| missing("MessageGroupId"))?;
        if let Some(delay) = delay {
            return Err(not_for_this_type("DelaySeconds", &delay.to_string()));
        }
        let content_based = queue
            .attributes
            .get("ContentBasedDeduplication")
            .is_some_and(|v| v == "true");
        let deduplication = match (deduplication, content_based) {
            (Some(id), _) => id,
            (None, true) => hex(&sha2::Sha256::digest(body.as_bytes())),
            (None, false) => return Err(invalid(
                "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
            )),
        };
        let per_group = queue
            .attributes
            .get("DeduplicationScope")
            .is_some_and(|v| v == "messageGroup");
        let scope = (per_group.then(|| group.clone()), deduplication.clone());
        let now = Instant::now();
        queue
            .deduplication
            .retain(|_, sent| now.duration_since(sent.at) < DEDUPLICATION_WINDOW);
        if let Some(sent) = queue.deduplication.get(&scope) {
            // Accepted, not delivered again: the first send's id.
            answer.insert("MessageId".into(), json!(sent.message_id));
            answer.insert("SequenceNumber".into(), json!(sent.sequence_number));
            return Ok(Value::Object(answer));
        }
        queue.sequence += 1;
        let sent = Sent {
            message_id: uuid::Uuid::new_v4().to_string(),
            sequence_number: format!("{:020}", 18_000_000_000_000_000_000u128 + queue.sequence),
            at: now,
        };
        answer.insert("MessageId".into(), json!(sent.message_id));
        answer.insert("SequenceNumber".into(), json!(sent.sequence_number));
        queue.messages.push(Message {
            message_id: sent.message_id.clone(),
            body: body.to_owned(),
            group_id: Some(group),
            deduplication_id: Some(deduplication),
        });
        queue.deduplication.insert(scope, sent);
        Ok(Value::Object(answer))
    }

    /// The messages sent to the queue named `name`, oldest first.
    pub(super) fn messages(&self, name: &str) -> Option<Vec<Message>> {
        Some(
            self.queues
                .iter()
                .find(|q| q.name == name)?
                .messages
                .clone(),
        )
    }
}

fn does_not_exist() -> Fault {
    fault(
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "The specified queue does not exist.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqs_with(name: &str, attributes: Value) -> (Sqs, String) {
        let mut sqs = Sqs::new("http://127.0.0.1:1");
        let url = sqs
            .handle(
                "CreateQueue",
                &json!({"QueueName": name, "Attributes": attributes}),
            )
            .unwrap()["QueueUrl"]
            .as_str()
            .unwrap()
            .to_owned();
        (sqs, url)
    }

    #[test]
    fn the_body_digest_is_the_md5_sqs_answers() {
        let (mut sqs, url) = sqs_with("q", json!({}));
        let sent = sqs
            .handle(
                "SendMessage",
                &json!({"QueueUrl": url, "MessageBody": "hello"}),
            )
            .unwrap();
        // md5("hello"), known.
        assert_eq!(sent["MD5OfMessageBody"], "5d41402abc4b2a76b9719d911017c592");
    }

    #[test]
    fn the_attributes_digest_follows_sqss_algorithm() {
        // Computed by hand: name "a" (len 1), type "String" (len 6),
        // transport 1, value "b" (len 1).
        let mut expected = Vec::new();
        expected.extend_from_slice(&[0, 0, 0, 1, b'a', 0, 0, 0, 6]);
        expected.extend_from_slice(b"String");
        expected.extend_from_slice(&[1, 0, 0, 0, 1, b'b']);
        let attributes = json!({"a": {"DataType": "String", "StringValue": "b"}});
        assert_eq!(
            attributes_md5(attributes.as_object().unwrap()).unwrap(),
            md5_hex(&expected)
        );
    }

    #[test]
    fn a_fifo_queue_needs_a_group_and_a_deduplication_id_unless_content_based() {
        let (mut sqs, url) = sqs_with("q.fifo", json!({"FifoQueue": "true"}));
        let fault = sqs
            .handle("SendMessage", &json!({"QueueUrl": url, "MessageBody": "x"}))
            .unwrap_err();
        assert!(fault.message.contains("MessageGroupId"));
        let fault = sqs
            .handle(
                "SendMessage",
                &json!({"QueueUrl": url, "MessageBody": "x", "MessageGroupId": "g"}),
            )
            .unwrap_err();
        assert!(fault.message.contains("ContentBasedDeduplication"));
        let (mut sqs, url) = sqs_with(
            "c.fifo",
            json!({"FifoQueue": "true", "ContentBasedDeduplication": "true"}),
        );
        let send = json!({"QueueUrl": url, "MessageBody": "x", "MessageGroupId": "g"});
        let first = sqs.handle("SendMessage", &send).unwrap();
        let again = sqs.handle("SendMessage", &send).unwrap();
        assert_eq!(first["MessageId"], again["MessageId"]);
        assert_eq!(sqs.messages("c.fifo").unwrap().len(), 1);
    }

    #[test]
    fn deduplication_per_message_group_keeps_equal_ids_of_two_groups_apart() {
        let (mut sqs, url) = sqs_with(
            "g.fifo",
            json!({"FifoQueue": "true", "DeduplicationScope": "messageGroup"}),
        );
        let send = |sqs: &mut Sqs, group: &str| {
            sqs.handle(
                "SendMessage",
                &json!({"QueueUrl": url, "MessageBody": "x", "MessageGroupId": group, "MessageDeduplicationId": "d"}),
            )
            .unwrap()["MessageId"]
                .clone()
        };
        let a = send(&mut sqs, "a");
        assert_ne!(a, send(&mut sqs, "b"));
        assert_eq!(a, send(&mut sqs, "a"));
        assert_eq!(sqs.messages("g.fifo").unwrap().len(), 2);
    }

    #[test]
    fn a_standard_queue_refuses_a_deduplication_id_and_an_unknown_queue_does_not_exist() {
        let (mut sqs, url) = sqs_with("s", json!({}));
        let fault = sqs
            .handle(
                "SendMessage",
                &json!({"QueueUrl": url, "MessageBody": "x", "MessageDeduplicationId": "d"}),
            )
            .unwrap_err();
        assert!(fault.kind.ends_with("#InvalidParameterValue"));
        let fault = sqs
            .handle("GetQueueUrl", &json!({"QueueName": "nope"}))
            .unwrap_err();
        assert_eq!(fault.kind, "com.amazonaws.sqs#QueueDoesNotExist");
        assert_eq!(
            fault.query_error.as_deref(),
            Some("AWS.SimpleQueueService.NonExistentQueue;Sender")
        );
    }

    #[test]
    fn a_queue_created_again_alike_is_the_same_queue_and_unlike_is_refused() {
        let (mut sqs, url) = sqs_with("q", json!({"VisibilityTimeout": "30"}));
        let again = sqs
            .handle(
                "CreateQueue",
                &json!({"QueueName": "q", "Attributes": {"VisibilityTimeout": "30"}}),
            )
            .unwrap();
        assert_eq!(again["QueueUrl"], url.as_str());
        assert!(sqs
            .handle(
                "CreateQueue",
                &json!({"QueueName": "q", "Attributes": {"VisibilityTimeout": "60"}})
            )
            .is_err());
        let arn = sqs
            .handle(
                "GetQueueAttributes",
                &json!({"QueueUrl": url, "AttributeNames": ["QueueArn"]}),
            )
            .unwrap();
        assert_eq!(
            arn["Attributes"]["QueueArn"],
            "arn:aws:sqs:us-east-1:123456789012:q"
        );
    }
}
