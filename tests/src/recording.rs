//! SDK clients that record the AWS operations a function's code calls.
//!
//! Each client gets an interceptor tagged with the template function (its
//! logical id) whose code the client is handed to. Just before a request is
//! sent, the interceptor notes the IAM action (service and operation, from
//! the SDK's own operation metadata) and the table, queue or secret the
//! request names (read from the serialised request, as the service reads
//! it). template_policies.rs compares what each function called with what
//! its policy grants.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use local_stack::provision::Provisioned;
use shared::function::Clients;

/// Where a request's resource could not be read: no grant names this, so a
/// comparison with a policy shows it.
pub const UNREADABLE: &str = "<unreadable>";

/// The members of the JSON requests (DynamoDB, SQS and Secrets Manager all
/// speak AWS JSON) that name the resource a request acts on.
const RESOURCE_MEMBERS: [&str; 3] = ["TableName", "QueueUrl", "SecretId"];

/// One request a function's code sent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Recorded {
    /// The template function (logical id) whose code sent it.
    pub function: String,
    /// The IAM action: `dynamodb:PutItem`.
    pub action: String,
    /// The table name, queue URL or secret id, as sent.
    pub resource: String,
}

/// Every call made through the clients it handed out.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    calls: Arc<Mutex<BTreeSet<Recorded>>>,
}

impl Recorder {
    /// The clients a function's `main` builds, recording as `function`.
    pub fn clients(&self, sdk: &SdkConfig, function: &str) -> Clients {
        let tagged = || Tagged {
            function: function.to_owned(),
            calls: Arc::clone(&self.calls),
        };
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .interceptor(tagged())
                .build(),
        );
        Clients {
            events: dynamodb.clone(),
            entities: dynamodb,
            sqs: aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(sdk)
                    .interceptor(tagged())
                    .build(),
            ),
            secrets: aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(sdk)
                    .interceptor(tagged())
                    .build(),
            ),
        }
    }

    /// Every call so far.
    pub fn calls(&self) -> BTreeSet<Recorded> {
        self.calls.lock().expect("calls lock").clone()
    }

    /// What `function` called, as (action, logical id of the resource);
    /// a resource that is none of `provisioned`'s keeps its name as sent.
    pub fn used_by(&self, function: &str, provisioned: &Provisioned) -> BTreeSet<(String, String)> {
        self.calls()
            .into_iter()
            .filter(|c| c.function == function)
            .map(|c| {
                let resource = logical_id(provisioned, &c.resource).unwrap_or(c.resource);
                (c.action, resource)
            })
            .collect()
    }
}

/// The template resource whose name, URL or ARN `physical` is.
pub fn logical_id(provisioned: &Provisioned, physical: &str) -> Option<String> {
    provisioned
        .resources
        .iter()
        .find(|(_, p)| p.reference == physical || p.arn == physical)
        .map(|(id, _)| id.clone())
}

/// IAM's prefix for a service, by the name the SDK's metadata gives it.
fn iam_prefix(service: &str) -> Option<&'static str> {
    match service {
        "DynamoDB" => Some("dynamodb"),
        "SQS" => Some("sqs"),
        "Secrets Manager" => Some("secretsmanager"),
        _ => None,
    }
}

/// The interceptor on one function's client.
#[derive(Debug)]
struct Tagged {
    function: String,
    calls: Arc<Mutex<BTreeSet<Recorded>>>,
}

impl Intercept for Tagged {
    fn name(&self) -> &'static str {
        "RecordingInterceptor"
    }

    // Before each attempt is sent: what IAM authorises is each request.
    // Nothing here fails the request (the code under test may swallow an
    // error, and the call would go unseen); what can't be read is recorded
    // as such and shows in the comparison.
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let action = match cfg.load::<Metadata>() {
            Some(metadata) => format!(
                "{}:{}",
                iam_prefix(metadata.service()).unwrap_or(metadata.service()),
                metadata.name()
            ),
            None => UNREADABLE.to_owned(),
        };
        let resource = context
            .request()
            .body()
            .bytes()
            .and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok())
            .and_then(|input| {
                RESOURCE_MEMBERS
                    .iter()
                    .find_map(|member| input.get(member)?.as_str().map(str::to_owned))
            })
            .unwrap_or_else(|| UNREADABLE.to_owned());
        self.calls.lock().expect("calls lock").insert(Recorded {
            function: self.function.clone(),
            action,
            resource,
        });
        Ok(())
    }
}
