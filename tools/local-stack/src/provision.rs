//! Creates template.yaml's tables, queues and secrets on a local AWS
//! endpoint, and resolves the environment the functions get from it.

use std::collections::{BTreeMap, HashMap};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_norway::Value;

use crate::template::{scalar, Resource, Scalar, Template};
use crate::Error;

/// A created resource: what `!Ref`, `!GetAtt .Arn` and (for a table with a
/// stream) `!GetAtt .StreamArn` resolve to.
#[derive(Debug, Clone)]
pub struct Physical {
    pub reference: String,
    pub arn: String,
    pub stream_arn: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Provisioned {
    pub resources: BTreeMap<String, Physical>,
    /// The functions' environment, resolved.
    pub env: BTreeMap<String, String>,
}

impl Provisioned {
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| self.env.get(name).cloned()
    }
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn literal(value: &Value) -> Option<String> {
    match scalar(value) {
        Scalar::Literal(s) => Some(s),
        _ => None,
    }
}

async fn create_table(sdk: &SdkConfig, resource: &Resource, name: &str) -> Result<Physical, Error> {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let props = &resource.properties;
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for key in props
        .get("KeySchema")
        .and_then(Value::as_sequence)
        .ok_or("table without KeySchema")?
    {
        request = request.key_schema(
            KeySchemaElement::builder()
                .attribute_name(text(key, "AttributeName").ok_or("key without AttributeName")?)
                .key_type(KeyType::from(
                    text(key, "KeyType").ok_or("key without KeyType")?,
                ))
                .build()?,
        );
    }
    for attribute in props
        .get("AttributeDefinitions")
        .and_then(Value::as_sequence)
        .ok_or("table without AttributeDefinitions")?
    {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(text(attribute, "AttributeName").ok_or("attribute without name")?)
                .attribute_type(ScalarAttributeType::from(
                    text(attribute, "AttributeType").ok_or("attribute without type")?,
                ))
                .build()?,
        );
    }
    if let Some(view) = props
        .get("StreamSpecification")
        .and_then(|s| text(s, "StreamViewType"))
    {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view))
                .build()?,
        );
    }
    let output = request.send().await?;
    let description = output.table_description;
    let stream_arn = description
        .as_ref()
        .and_then(|d| d.latest_stream_arn.clone());
    let arn = description
        .and_then(|d| d.table_arn)
        .unwrap_or_else(|| format!("arn:aws:dynamodb:us-east-1:123456789012:table/{name}"));
    if let Some(ttl) = props.get("TimeToLiveSpecification") {
        let enabled = ttl
            .get("Enabled")
            .and_then(literal)
            .is_some_and(|v| v == "true");
        if let (true, Some(attribute)) = (enabled, text(ttl, "AttributeName")) {
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(attribute)
                        .enabled(true)
                        .build()?,
                )
                .send()
                .await?;
        }
    }
    Ok(Physical {
        reference: name.to_owned(),
        arn,
        stream_arn,
    })
}

const QUEUE_ATTRIBUTES: &[&str] = &[
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "MaximumMessageSize",
];

async fn create_queue(
    sdk: &SdkConfig,
    resource: &Resource,
    name: &str,
    created: &BTreeMap<String, Physical>,
) -> Result<Physical, Error> {
    let client = aws_sdk_sqs::Client::new(sdk);
    let props = &resource.properties;
    let mut attributes = HashMap::new();
    for attribute in QUEUE_ATTRIBUTES {
        if let Some(value) = props.get(*attribute).and_then(literal) {
            attributes.insert(QueueAttributeName::from(*attribute), value);
        }
    }
    if let Some(redrive) = props.get("RedrivePolicy") {
        let target = match redrive.get("deadLetterTargetArn").map(scalar) {
            Some(Scalar::GetAtt(id, _)) => created
                .get(&id)
                .map(|p| p.arn.clone())
                .ok_or_else(|| format!("{id} must be created before {}", resource.logical_id))?,
            Some(Scalar::Literal(arn)) => arn,
            _ => return Err("unsupported deadLetterTargetArn".into()),
        };
        let max = redrive
            .get("maxReceiveCount")
            .and_then(literal)
            .unwrap_or_else(|| "5".into());
        attributes.insert(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": target, "maxReceiveCount": max}).to_string(),
        );
    }
    let fifo = attributes
        .get(&QueueAttributeName::FifoQueue)
        .is_some_and(|v| v == "true");
    let queue_name = if fifo {
        format!("{name}.fifo")
    } else {
        name.to_owned()
    };
    let url = client
        .create_queue()
        .queue_name(&queue_name)
        .set_attributes(Some(attributes))
        .send()
        .await?
        .queue_url
        .ok_or("queue created without URL")?;
    let arn = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or("queue without ARN")?;
    Ok(Physical {
        reference: url,
        arn,
        stream_arn: None,
    })
}

async fn create_secret(
    sdk: &SdkConfig,
    resource: &Resource,
    name: &str,
) -> Result<Physical, Error> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let generate = resource.properties.get("GenerateSecretString");
    let value = match (
        resource.properties.get("SecretString").and_then(literal),
        generate,
    ) {
        (Some(value), _) => value,
        // As Secrets Manager would: random letters and digits of the asked length.
        (None, Some(spec)) => {
            let length = spec
                .get("PasswordLength")
                .and_then(literal)
                .and_then(|n| n.parse().ok())
                .unwrap_or(32);
            (0..length).map(|_| fastrand::alphanumeric()).collect()
        }
        (None, None) => "{}".into(),
    };
    let arn = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await?
        .arn
        .ok_or("secret created without ARN")?;
    // Ref of a secret is its ARN.
    Ok(Physical {
        reference: arn.clone(),
        arn,
        stream_arn: None,
    })
}

fn redrive_target(resource: &Resource) -> Option<String> {
    match resource
        .properties
        .get("RedrivePolicy")?
        .get("deadLetterTargetArn")
        .map(scalar)?
    {
        Scalar::GetAtt(id, _) => Some(id),
        _ => None,
    }
}

/// Creates every table, queue and secret of `template`, named
/// `{prefix}-{LogicalId}`, and resolves the functions' environment.
pub async fn provision(
    sdk: &SdkConfig,
    template: &Template,
    prefix: &str,
) -> Result<Provisioned, Error> {
    let mut created = BTreeMap::new();
    for table in template.resources_of("AWS::DynamoDB::Table") {
        let name = format!("{prefix}-{}", table.logical_id);
        created.insert(
            table.logical_id.clone(),
            create_table(sdk, table, &name).await?,
        );
    }
    // Dead-letter queues first: the queues that redrive into them need their ARN.
    let (redriving, plain): (Vec<&Resource>, Vec<&Resource>) = template
        .resources_of("AWS::SQS::Queue")
        .partition(|q| redrive_target(q).is_some());
    for queue in plain.into_iter().chain(redriving) {
        let name = format!("{prefix}-{}", queue.logical_id);
        let physical = create_queue(sdk, queue, &name, &created).await?;
        created.insert(queue.logical_id.clone(), physical);
    }
    for secret in template.resources_of("AWS::SecretsManager::Secret") {
        let name = format!("{prefix}-{}", secret.logical_id);
        created.insert(
            secret.logical_id.clone(),
            create_secret(sdk, secret, &name).await?,
        );
    }
    let mut env = BTreeMap::new();
    for (name, value) in &template.function_environment {
        let resolved = match value {
            Scalar::Literal(v) => Some(v.clone()),
            Scalar::Ref(id) => created
                .get(id)
                .map(|p| p.reference.clone())
                .or_else(|| template.parameter_defaults.get(id).cloned()),
            Scalar::GetAtt(id, _) => created.get(id).map(|p| p.arn.clone()),
            Scalar::Unsupported(_) => None,
        };
        match resolved {
            Some(v) => {
                env.insert(name.clone(), v);
            }
            None => return Err(format!("cannot resolve {name} locally").into()),
        }
    }
    Ok(Provisioned {
        resources: created,
        env,
    })
}

/// Puts `document` as the value of the secret named by `REVEL_WEBHOOK_SECRETS_ID`.
pub async fn put_revel_secrets(
    sdk: &SdkConfig,
    provisioned: &Provisioned,
    document: &str,
) -> Result<(), Error> {
    put_secret(sdk, provisioned, "REVEL_WEBHOOK_SECRETS_ID", document).await
}

/// Puts `document` as the value of the secret named by the variable `variable`.
pub async fn put_secret(
    sdk: &SdkConfig,
    provisioned: &Provisioned,
    variable: &str,
    document: &str,
) -> Result<(), Error> {
    let id = provisioned
        .env
        .get(variable)
        .ok_or_else(|| format!("template sets no {variable}"))?;
    aws_sdk_secretsmanager::Client::new(sdk)
        .put_secret_value()
        .secret_id(id)
        .secret_string(document)
        .send()
        .await?;
    Ok(())
}

/// Puts the demo documents of every other source in place.
pub async fn put_demo_secrets(sdk: &SdkConfig, provisioned: &Provisioned) -> Result<(), Error> {
    for (variable, document) in crate::demo_secret_documents() {
        put_secret(sdk, provisioned, variable, &document).await?;
    }
    Ok(())
}

/// An `SdkConfig` for a local endpoint, with dummy credentials.
pub async fn local_sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "local-stack",
        ))
        .timeout_config(aws_adapters::sdk::timeouts())
        .load()
        .await
}
