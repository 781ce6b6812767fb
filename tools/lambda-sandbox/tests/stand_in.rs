//! The stand-in through the real AWS SDK clients: what the receivers and
//! `local-stack`'s provisioning send, answered as AWS answers it.

use std::path::Path;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
};
use lambda_sandbox::stand_in::{Options, StandIn};

async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    local_stack::provision::local_sdk_config(endpoint).await
}

async fn events_table(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    client
        .create_table()
        .table_name("events")
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("event_key")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("event_key")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    client
}

/// The receivers' `put_new`: a put unless the key exists, the stored item
/// back on refusal.
fn put_new(
    client: &aws_sdk_dynamodb::Client,
    key: &str,
    status: &str,
) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
    client
        .put_item()
        .table_name("events")
        .item("event_key", AttributeValue::S(key.into()))
        .item("status", AttributeValue::S(status.into()))
        .condition_expression("attribute_not_exists(event_key)")
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
}

#[tokio::test]
async fn a_conditional_put_of_an_existing_key_is_refused_with_the_stored_item() {
    let stand_in = StandIn::start(Options::http()).await.unwrap();
    let client = events_table(&sdk(stand_in.endpoint_url()).await).await;
    put_new(&client, "k", "received").send().await.unwrap();
    let refused = put_new(&client, "k", "other").send().await.unwrap_err();
    let service = refused.into_service_error();
    let aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) =
        service
    else {
        panic!("not a conditional check failure: {service:?}");
    };
    let item = c.item().expect("the stored item comes back");
    assert_eq!(item["status"], AttributeValue::S("received".into()));
    let stored = stand_in.items("events").unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["status"], serde_json::json!({"S": "received"}));
    let calls = stand_in.log().take();
    let names: Vec<(&str, u16)> = calls.iter().map(|c| (c.name(), c.status)).collect();
    assert_eq!(
        names,
        [("CreateTable", 200), ("PutItem", 200), ("PutItem", 400)]
    );
    assert_eq!(
        lambda_sandbox::proxy::sequential_round_trips(&calls[1..]),
        2
    );
}

#[tokio::test]
async fn a_put_of_a_new_key_succeeds_and_is_read_back() {
    let stand_in = StandIn::start(Options::http()).await.unwrap();
    let client = events_table(&sdk(stand_in.endpoint_url()).await).await;
    put_new(&client, "a", "received").send().await.unwrap();
    put_new(&client, "b", "received").send().await.unwrap();
    let got = client
        .get_item()
        .table_name("events")
        .key("event_key", AttributeValue::S("b".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.item().unwrap()["event_key"],
        AttributeValue::S("b".into())
    );
    assert_eq!(stand_in.items("events").unwrap().len(), 2);
    // Two small writes and one strongly consistent read.
    let units = stand_in.units();
    assert_eq!((units.write, units.read), (2.0, 1.0));
}

#[tokio::test]
async fn get_secret_value_returns_the_value_put_and_an_unknown_id_is_not_found() {
    let stand_in = StandIn::start(Options::http()).await.unwrap();
    let client = aws_sdk_secretsmanager::Client::new(&sdk(stand_in.endpoint_url()).await);
    let arn = client
        .create_secret()
        .name("revel")
        .secret_string("{}")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    client
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(r#"{"demo":{"webhook":["s"]}}"#)
        .send()
        .await
        .unwrap();
    let got = client
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(got.secret_string(), Some(r#"{"demo":{"webhook":["s"]}}"#));
    assert_eq!(got.name(), Some("revel"));
    assert_eq!(got.version_stages(), ["AWSCURRENT"]);
    assert!(got.version_id().is_some());
    let missing = client
        .get_secret_value()
        .secret_id("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(missing.is_resource_not_found_exception(), "{missing:?}");
}

#[tokio::test]
async fn a_fifo_send_with_a_deduplication_id_seen_within_five_minutes_answers_the_first_message_id()
{
    let stand_in = StandIn::start(Options::http()).await.unwrap();
    let client = aws_sdk_sqs::Client::new(&sdk(stand_in.endpoint_url()).await);
    let url = client
        .create_queue()
        .queue_name("jobs.fifo")
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let send = |dedup: &'static str| {
        client
            .send_message()
            .queue_url(&url)
            .message_body("hello")
            .message_group_id("g")
            .message_deduplication_id(dedup)
            .send()
    };
    let first = send("d1").await.unwrap();
    let again = send("d1").await.unwrap();
    let other = send("d2").await.unwrap();
    assert_eq!(first.message_id(), again.message_id());
    assert_ne!(first.message_id(), other.message_id());
    assert_eq!(
        first.md5_of_message_body(),
        Some("5d41402abc4b2a76b9719d911017c592")
    );
    assert_eq!(stand_in.messages("jobs.fifo").unwrap().len(), 2);
    let missing_group = client
        .send_message()
        .queue_url(&url)
        .message_body("x")
        .message_deduplication_id("d3")
        .send()
        .await
        .unwrap_err();
    assert!(format!("{:?}", missing_group).contains("MessageGroupId"));
}

#[tokio::test]
async fn an_unsupported_operation_is_a_400_naming_it() {
    let stand_in = StandIn::start(Options::http()).await.unwrap();
    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(stand_in.endpoint_url())
        .header("x-amz-target", "DynamoDB_20120810.Scan")
        .header("content-type", "application/x-amz-json-1.0")
        .body(r#"{"TableName":"events"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["__type"], "lambda-sandbox#UnsupportedByStandIn");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("DynamoDB_20120810.Scan"),
        "{body}"
    );
    // Through the SDK too: an error, with the stand-in's code.
    let client = events_table(&sdk(stand_in.endpoint_url()).await).await;
    let scan = client.scan().table_name("events").send().await.unwrap_err();
    assert_eq!(scan.code(), Some("UnsupportedByStandIn"));
    let unsupported_expression = client
        .put_item()
        .table_name("events")
        .item("event_key", AttributeValue::S("k".into()))
        .condition_expression("size(event_key) > :n")
        .expression_attribute_values(":n", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap_err();
    assert!(unsupported_expression
        .message()
        .is_some_and(|m| m.contains("the function size")));
}

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
}

#[tokio::test]
async fn local_stack_provisions_the_template_on_the_stand_in_as_on_moto() {
    use local_stack::provision;
    let stand_in = StandIn::start(Options::http()).await.unwrap();
    let sdk = sdk(stand_in.endpoint_url()).await;
    let template =
        local_stack::template::Template::load(&workspace().join("template.yaml")).unwrap();
    let provisioned = provision::provision(&sdk, &template, "bench")
        .await
        .unwrap();
    let document = local_stack::demo_revel_secret_document();
    provision::put_revel_secrets(&sdk, &provisioned, &document)
        .await
        .unwrap();
    provision::put_demo_secrets(&sdk, &provisioned)
        .await
        .unwrap();
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .get_secret_value()
        .secret_id(&provisioned.env["REVEL_WEBHOOK_SECRETS_ID"])
        .send()
        .await
        .unwrap();
    assert_eq!(secret.secret_string(), Some(document.as_str()));
    assert!(
        stand_in.items("bench-EventsTable").is_some(),
        "tables: {:?}",
        provisioned.resources.keys().collect::<Vec<_>>()
    );
    assert!(stand_in.messages("bench-JobsQueue.fifo").is_some());
    let unsupported: Vec<_> = stand_in
        .log()
        .calls()
        .into_iter()
        .filter(|c| c.status != 200)
        .map(|c| c.operation)
        .collect();
    assert!(unsupported.is_empty(), "{unsupported:?}");
}

/// Run by the HTTPS test in a process of its own (the SDK reads the trust
/// store once per process): a DynamoDB call through the SDK configuration
/// the functions build from their environment, `aws_adapters::sdk::load`.
#[tokio::test]
#[ignore = "run by an_https_stand_in_is_trusted_through_ssl_cert_file_alone"]
async fn child_calls_dynamodb_as_a_function_does() {
    let sdk = aws_adapters::sdk::load().await;
    let answer = aws_sdk_dynamodb::Client::new(&sdk)
        .describe_table()
        .table_name("events")
        .send()
        .await;
    match answer {
        Ok(table) => println!(
            "CHILD-OK {}",
            table.table().and_then(|t| t.table_name()).unwrap_or("?")
        ),
        Err(e) => panic!(
            "CHILD-FAILED {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(e)
        ),
    }
}

async fn child(endpoint: &str, ca: Option<&Path>) -> (bool, String) {
    // Async: the stand-in serves on this test's runtime meanwhile.
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child_calls_dynamodb_as_a_function_does",
            "--ignored",
            "--nocapture",
        ])
        .env_clear()
        .envs([
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "local"),
            ("AWS_SECRET_ACCESS_KEY", "local"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]);
    if let Some(ca) = ca {
        command.env("SSL_CERT_FILE", ca);
    }
    let output = command.output().await.unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (
        output.status.success() && text.contains("CHILD-OK events"),
        text,
    )
}

#[tokio::test]
async fn an_https_stand_in_is_trusted_through_ssl_cert_file_alone() {
    let stand_in = StandIn::start(Options::https()).await.unwrap();
    assert!(stand_in.endpoint_url().starts_with("https://127.0.0.1:"));
    events_table(&sdk_trusting(&stand_in).await).await;
    let ca = stand_in.ca_bundle_path().unwrap().to_owned();
    assert!(std::fs::read_to_string(&ca)
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));

    let (trusted, output) = child(stand_in.endpoint_url(), Some(&ca)).await;
    assert!(trusted, "with SSL_CERT_FILE: {output}");
    let (trusted, output) = child(stand_in.endpoint_url(), None).await;
    assert!(
        !trusted,
        "without it the certificate must be refused: {output}"
    );
    assert!(
        output.contains("CHILD-FAILED") && output.to_lowercase().contains("certificate"),
        "refused for its certificate: {output}"
    );
    drop(stand_in);
    assert!(!ca.exists(), "the CA file goes with the stand-in");
}

/// An SDK configuration for the test's own client that trusts the
/// stand-in's CA explicitly (this process's environment is left alone).
async fn sdk_trusting(stand_in: &StandIn) -> aws_config::SdkConfig {
    let pem = std::fs::read(stand_in.ca_bundle_path().unwrap()).unwrap();
    let tls = aws_smithy_http_client::tls::TlsContext::builder()
        .with_trust_store(
            aws_smithy_http_client::tls::TrustStore::empty().with_pem_certificate(pem.as_slice()),
        )
        .build()
        .unwrap();
    let client = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(tls)
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(stand_in.endpoint_url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local", "local", None, None, "test",
        ))
        .http_client(client)
        .load()
        .await
}

/// boto3 as the Python reference uses it: Powertools' idempotency put
/// (its condition, names and values, as DynamoDBPersistenceLayer 3.x sends
/// them) twice, the second refused with the stored item; a FIFO send whose
/// MD5 botocore checks; a secret read.
const BOTO3_SCRIPT: &str = r###"
import time, boto3
from botocore.exceptions import ClientError
ddb = boto3.client("dynamodb")
ddb.create_table(TableName="idem", BillingMode="PAY_PER_REQUEST",
    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
now = time.time()
def put():
    ddb.put_item(TableName="idem",
        Item={"id": {"S": "k"}, "expiration": {"N": str(int(now) + 3600)}, "status": {"S": "INPROGRESS"},
              "in_progress_expiration": {"N": str(int(now * 1000) + 60000)}},
        ConditionExpression="attribute_not_exists(#id) OR #expiry < :now OR (#status = :inprogress AND attribute_exists(#in_progress_expiry) AND #in_progress_expiry < :now_in_millis)",
        ExpressionAttributeNames={"#id": "id", "#expiry": "expiration", "#in_progress_expiry": "in_progress_expiration", "#status": "status"},
        ExpressionAttributeValues={":now": {"N": str(int(now))}, ":now_in_millis": {"N": str(int(now * 1000))}, ":inprogress": {"S": "INPROGRESS"}},
        ReturnValuesOnConditionCheckFailure="ALL_OLD")
put()
try:
    put()
    raise SystemExit("the second put was not refused")
except ClientError as e:
    assert e.response["Error"]["Code"] == "ConditionalCheckFailedException", e.response
    assert e.response["Item"]["status"] == {"S": "INPROGRESS"}, e.response
ddb.update_item(TableName="idem", Key={"id": {"S": "k"}},
    UpdateExpression="SET #response_data = :response_data, #expiry = :expiry, #status = :status",
    ExpressionAttributeNames={"#expiry": "expiration", "#response_data": "data", "#status": "status"},
    ExpressionAttributeValues={":expiry": {"N": "1"}, ":response_data": {"S": "{}"}, ":status": {"S": "COMPLETED"}})
assert ddb.get_item(TableName="idem", Key={"id": {"S": "k"}}, ConsistentRead=True)["Item"]["status"] == {"S": "COMPLETED"}
sqs = boto3.client("sqs")
url = sqs.create_queue(QueueName="follow.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
a = sqs.send_message(QueueUrl=url, MessageBody="hello", MessageGroupId="g", MessageDeduplicationId="d",
    MessageAttributes={"kind": {"DataType": "String", "StringValue": "order"}})
b = sqs.send_message(QueueUrl=url, MessageBody="hello", MessageGroupId="g", MessageDeduplicationId="d",
    MessageAttributes={"kind": {"DataType": "String", "StringValue": "order"}})
assert a["MessageId"] == b["MessageId"], (a, b)
sm = boto3.client("secretsmanager")
sm.create_secret(Name="revel", SecretString="{}")
assert sm.get_secret_value(SecretId="revel")["SecretString"] == "{}"
print("PY-OK")
"###;

async fn boto3(endpoint: &str, ca: Option<&Path>) -> (bool, String) {
    let python = std::env::var("LOCAL_AWS_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| workspace().join(".venv/bin/python"));
    let mut command = tokio::process::Command::new(&python);
    command.args(["-c", BOTO3_SCRIPT]).env_clear().envs([
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_MAX_ATTEMPTS", "1"),
    ]);
    if let Some(ca) = ca {
        command.env("AWS_CA_BUNDLE", ca);
    }
    let output = command.output().await.unwrap_or_else(|e| {
        panic!(
            "cannot start {} ({e}); run `make venv` first",
            python.display()
        )
    });
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success() && text.contains("PY-OK"), text)
}

#[tokio::test]
async fn boto3_trusts_the_https_stand_in_through_aws_ca_bundle_and_gets_powertools_refusal() {
    let stand_in = StandIn::start(Options::https()).await.unwrap();
    let ca = stand_in.ca_bundle_path().unwrap().to_owned();
    let (ok, output) = boto3(stand_in.endpoint_url(), Some(&ca)).await;
    assert!(ok, "{output}");
    let refused: Vec<u16> = stand_in
        .log()
        .calls()
        .iter()
        .filter(|c| c.name() == "PutItem")
        .map(|c| c.status)
        .collect();
    assert_eq!(refused, [200, 400]);
    let (ok, output) = boto3(stand_in.endpoint_url(), None).await;
    assert!(
        !ok,
        "without AWS_CA_BUNDLE the certificate must be refused: {output}"
    );
    assert!(output.contains("CERTIFICATE_VERIFY_FAILED"), "{output}");
}
