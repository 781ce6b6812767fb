//! Least privilege, checked on template.yaml itself: every function may call
//! exactly the AWS actions its code makes, on exactly the resources it uses.

use std::collections::BTreeSet;

use local_stack::template::{scalar, Scalar, Template};
use serde_norway::Value;

type Grants = BTreeSet<(String, String)>;

fn grants(template: &Template, function: &str) -> Grants {
    let properties = &template.resource(function).expect("function").properties;
    let mut found = Grants::new();
    for policy in properties
        .get("Policies")
        .and_then(Value::as_sequence)
        .expect("policies")
    {
        let Scalar::Ref(name) = scalar(policy) else {
            panic!("{function}: only references to managed policies, got {policy:?}");
        };
        let document = &template.resource(&name).expect("policy").properties["PolicyDocument"];
        for statement in document["Statement"].as_sequence().expect("statements") {
            assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{name}");
            let resources: Vec<String> = match &statement["Resource"] {
                Value::Sequence(items) => items.iter().map(target).collect(),
                one => vec![target(one)],
            };
            for action in statement["Action"].as_sequence().expect("actions") {
                let action = action.as_str().expect("action").to_owned();
                assert!(!action.contains('*'), "{name}: wildcard action {action}");
                for resource in &resources {
                    found.insert((action.clone(), resource.clone()));
                }
            }
        }
    }
    found
}

fn target(value: &Value) -> String {
    match scalar(value) {
        Scalar::Ref(id) | Scalar::GetAtt(id, _) => id,
        other => panic!("resources must name template resources, got {other:?}"),
    }
}

fn set(pairs: &[(&str, &str)]) -> Grants {
    pairs
        .iter()
        .map(|(a, r)| ((*a).to_owned(), (*r).to_owned()))
        .collect()
}

const ARCHIVE: [(&str, &str); 4] = [
    ("dynamodb:PutItem", "EventsTable"),
    ("dynamodb:GetItem", "EventsTable"),
    ("dynamodb:UpdateItem", "EventsTable"),
    ("dynamodb:UpdateItem", "EntitiesTable"),
];

/// What DynamoDB calls on the caller's behalf for a table under the
/// template's key (template_security.rs checks it is only through DynamoDB).
const TABLE_KEY: [(&str, &str); 4] = [
    ("kms:Decrypt", "DataKey"),
    ("kms:DescribeKey", "DataKey"),
    ("kms:Encrypt", "DataKey"),
    ("kms:GenerateDataKey", "DataKey"),
];

#[test]
fn every_function_is_granted_exactly_what_its_code_calls() {
    let template = Template::load(&local_stack::template::default_path()).unwrap();
    let receiver = |secret: &'static str, queues: bool| {
        let mut expected = set(&ARCHIVE);
        expected.extend(set(&TABLE_KEY));
        expected.insert(("secretsmanager:GetSecretValue".into(), secret.into()));
        if queues {
            expected.insert(("sqs:SendMessage".into(), "JobsQueue".into()));
        }
        expected
    };
    let mut checked = 0;
    for function in template.resources_of("AWS::Serverless::Function") {
        let id = function.logical_id.as_str();
        let expected = match id {
            _ if id.starts_with("Revel") && id != "RevelSchedulerFunction" => {
                receiver("RevelWebhookSecrets", true)
            }
            _ if id.starts_with("Booking") => receiver("BookingSecrets", false),
            "WineSittingWebhookFunction" => receiver("WineSittingSecrets", false),
            _ if id.starts_with("VinesOs") => receiver("VinesOsSecrets", true),
            "RevelSchedulerFunction" => set(&[
                ("sqs:SendMessage", "JobsQueue"),
                ("secretsmanager:GetSecretValue", "RevelWebhookSecrets"),
                ("secretsmanager:GetSecretValue", "WineSittingSecrets"),
            ]),
            "JobsWorkerFunction" => {
                let mut worker = set(&ARCHIVE);
                worker.extend(set(&TABLE_KEY));
                worker.extend(set(&[
                    ("dynamodb:GetItem", "EntitiesTable"),
                    ("dynamodb:GetItem", "SyncStateTable"),
                    ("dynamodb:PutItem", "SyncStateTable"),
                    ("dynamodb:UpdateItem", "SyncStateTable"),
                    ("sqs:SendMessage", "JobsQueue"),
                    ("sqs:ChangeMessageVisibility", "JobsQueue"),
                    ("sqs:SendMessage", "JobsDeadLetterQueue"),
                    ("secretsmanager:GetSecretValue", "RevelWebhookSecrets"),
                    ("secretsmanager:GetSecretValue", "DownstreamSigningSecret"),
                    ("secretsmanager:GetSecretValue", "WineSittingSecrets"),
                ]));
                worker
            }
            other => panic!("no expectation for {other}: add one"),
        };
        assert_eq!(grants(&template, id), expected, "{id}");
        checked += 1;
    }
    assert_eq!(checked, 24);
}
