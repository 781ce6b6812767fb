//! Least privilege, checked against what the code really calls. Every
//! function's own code is driven through its real paths against the local
//! AWS endpoint (moto), with wiremock standing in for Revel's API, the
//! partner and WineSitting, through SDK clients that record each request
//! (`integration_tests::recording`). Each function's policy in template.yaml
//! must then allow everything the function called, on the resource it named,
//! and nothing it never called, but for the few actions AWS takes with the
//! function's role on its behalf ([`on_its_behalf`]).

use std::collections::{BTreeMap, BTreeSet};

use aws_adapters::dynamodb::event_record;
use integration_tests::recording::Recorder;
use integration_tests::*;
use local_stack::events::{request_for, resign, routed_event, samples, Sample};
use local_stack::template::{scalar, Scalar, Template};
use ports::queue::JobKind;
use serde_json::{json, Value};
use serde_norway::Value as Yaml;
use vendors::functions::Kind;
use vendors::revel::RevelEventType;
use wiremock::matchers::{body_string_contains, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PROCESSOR: &str = "EventsProcessorFunction";
const WORKER: &str = "JobsWorkerFunction";
const SCHEDULER: &str = "RevelSchedulerFunction";

/// (IAM action, logical id of the resource).
type Grants = BTreeSet<(String, String)>;

/// What the managed policies of `function` allow. Every statement must
/// allow (no deny to reason about), name its actions (no wildcards) and
/// name template resources.
fn grants(template: &Template, function: &str) -> Grants {
    let properties = &template.resource(function).expect("function").properties;
    let mut found = Grants::new();
    for policy in properties
        .get("Policies")
        .and_then(Yaml::as_sequence)
        .expect("policies")
    {
        let Scalar::Ref(name) = scalar(policy) else {
            panic!("{function}: only references to managed policies, got {policy:?}");
        };
        let document = &template.resource(&name).expect("policy").properties["PolicyDocument"];
        for statement in document["Statement"].as_sequence().expect("statements") {
            assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{name}");
            let resources: Vec<String> = match &statement["Resource"] {
                Yaml::Sequence(items) => items.iter().map(target).collect(),
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

fn target(value: &Yaml) -> String {
    match scalar(value) {
        Scalar::Ref(id) | Scalar::GetAtt(id, _) => id,
        other => panic!("resources must name template resources, got {other:?}"),
    }
}

/// What DynamoDB asks KMS for, with the caller's credentials, when the
/// caller reads or writes a table (or its stream) under a customer managed
/// key. template_security.rs checks these are granted only via DynamoDB.
const TABLE_KEY_ACTIONS: [&str; 4] = [
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey",
];

/// The properties of `function`'s DynamoDB stream event sources.
fn stream_sources<'a>(template: &'a Template, function: &str) -> Vec<&'a Yaml> {
    let properties = &template.resource(function).expect("function").properties;
    properties
        .get("Events")
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flat_map(|events| events.values())
        .filter(|e| e["Type"].as_str() == Some("DynamoDB"))
        .map(|e| &e["Properties"])
        .collect()
}

/// What `function`'s role must allow although its code never calls it,
/// given what the code was seen to call (`used`):
/// - the table key of each table it uses and of the table whose stream
///   invokes it: DynamoDB uses the key on the caller's behalf, and the event
///   source mapping reads the stream with the function's role;
/// - `sqs:SendMessage` on a stream source's on-failure destination: the
///   mapping reports the records it gave up on with the function's role.
///
/// The stream reads themselves (GetRecords, ...) come with the AWS managed
/// policy SAM attaches for a DynamoDB event, not with the policies here.
fn on_its_behalf(template: &Template, function: &str, used: &Grants) -> Grants {
    let is_table =
        |id: &str| template.resource(id).map(|r| r.kind.as_str()) == Some("AWS::DynamoDB::Table");
    let mut tables: BTreeSet<String> = used
        .iter()
        .filter(|(action, resource)| action.starts_with("dynamodb:") && is_table(resource))
        .map(|(_, resource)| resource.clone())
        .collect();
    let mut needed = Grants::new();
    for source in stream_sources(template, function) {
        if let Scalar::GetAtt(table, _) = scalar(&source["Stream"]) {
            tables.insert(table);
        }
        if let Scalar::GetAtt(queue, _) =
            scalar(&source["DestinationConfig"]["OnFailure"]["Destination"])
        {
            needed.insert(("sqs:SendMessage".to_owned(), queue));
        }
    }
    for table in tables {
        let table = template.resource(&table).expect("table");
        if let Scalar::GetAtt(key, _) | Scalar::Ref(key) =
            scalar(&table.properties["SSESpecification"]["KMSMasterKeyId"])
        {
            for action in TABLE_KEY_ACTIONS {
                needed.insert((action.to_owned(), key.clone()));
            }
        }
    }
    needed
}

/// How a policy differs from what its function needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct Discrepancy {
    /// Needed and not granted: the call fails in AWS.
    missing: Grants,
    /// Granted and never needed: more than least privilege.
    unused: Grants,
}

fn compare(granted: &Grants, needed: &Grants) -> Discrepancy {
    Discrepancy {
        missing: needed.difference(granted).cloned().collect(),
        unused: granted.difference(needed).cloned().collect(),
    }
}

fn grant(action: &str, resource: &str) -> (String, String) {
    (action.to_owned(), resource.to_owned())
}

#[test]
fn a_call_the_policy_lacks_and_a_grant_nothing_uses_are_both_reported() {
    let granted: Grants = [
        grant("dynamodb:PutItem", "EventsTable"),
        grant("dynamodb:GetItem", "EventsTable"),
    ]
    .into();
    let needed: Grants = [
        grant("dynamodb:PutItem", "EventsTable"),
        grant("sqs:SendMessage", "JobsQueue"),
    ]
    .into();
    assert_eq!(
        compare(&granted, &needed),
        Discrepancy {
            missing: [grant("sqs:SendMessage", "JobsQueue")].into(),
            unused: [grant("dynamodb:GetItem", "EventsTable")].into(),
        }
    );
    assert_eq!(compare(&needed, &needed), Discrepancy::default());
}

/// Everything outside AWS the functions talk to.
struct StandIns {
    revel: MockServer,
    partner: MockServer,
    winesitting: MockServer,
}

/// What Revel's API answers for any resource: one object with what each
/// caller reads (an order's uuid and date for reconciliation, the id and
/// date of a written object for the echo log). It matches no partner
/// lookup, so partner changes are created.
fn revel_object() -> Value {
    json!({"id": 7, "uuid": "9f6d2a7e-4c1b-4d8e-9a51-000000000007", "updated_date": "2026-11-24T10:00:00",
           "closed": true, "final_total": 10.0, "name": "Pulled"})
}

/// The entity id whose first delivery to the partner fails (a job retried
/// with backoff).
const PARTNER_DOWN_ONCE: &str = "c-partner-down-once";

impl StandIns {
    async fn start() -> Self {
        let revel = MockServer::start().await;
        let resource = || path_regex(r"^/demo/resources/\w+/(\d+/)?$");
        Mock::given(method("GET"))
            .and(resource())
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "meta": {"limit": 100, "offset": 0, "next": null, "total_count": 1},
                "objects": [revel_object()],
            })))
            .mount(&revel)
            .await;
        for verb in ["POST", "PATCH"] {
            Mock::given(method(verb))
                .and(resource())
                .respond_with(ResponseTemplate::new(201).set_body_json(revel_object()))
                .mount(&revel)
                .await;
        }
        let partner = MockServer::start().await;
        Mock::given(method("POST"))
            .and(body_string_contains(PARTNER_DOWN_ONCE))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&partner)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&partner)
            .await;
        let winesitting = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/orders"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
                {"id": "WS-LOST", "status": "IN_PREPARATION", "updated_at": "2026-11-24T10:02:00Z"}
            ])))
            .mount(&winesitting)
            .await;
        Self {
            revel,
            partner,
            winesitting,
        }
    }
}

/// A sample's request as API Gateway delivers it, signed now.
fn request(kind: Kind, body: &[u8]) -> shared::http::ApiGatewayEvent {
    let (route, path, headers) = request_for(kind, body);
    let event = resign(routed_event("POST", &route, &path, "", &headers, body));
    integration_tests::api_gateway_event(&event.to_string()).expect("a valid API Gateway event")
}

/// The same JSON body with one more field: the same event key, other bytes.
fn changed(body: &[u8]) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(body).expect("samples are JSON");
    value["policy_test"] = json!("changed");
    serde_json::to_vec(&value).expect("JSON serialises")
}

/// Drives every receiver through each answer it gives: the first delivery
/// of its sample, a repeat of it, a changed body under the same key and a
/// signed body it can't understand. Returns the answers seen per function.
async fn drive_receivers(
    stack: &Stack,
    recorder: &Recorder,
) -> BTreeMap<String, Vec<(&'static str, String)>> {
    let functions: BTreeSet<&str> = stack
        .template
        .routes
        .iter()
        .map(|r| r.function.as_str())
        .collect();
    let mut answers: BTreeMap<String, Vec<(&'static str, String)>> = BTreeMap::new();
    for function in functions {
        let clients = recorder.clients(&stack.sdk, function);
        let receiver = shared::function::AllSources::new(&stack.config, &clients)
            .expect("every source configured")
            .receiver_for(function, &stack.config, &clients)
            .unwrap_or_else(|| panic!("{function} has a route but no receiver"));
        let of_function: Vec<Sample> = samples()
            .into_iter()
            .filter(|s| s.kind.function().logical_id == function)
            .collect();
        assert!(!of_function.is_empty(), "{function}: no sample");
        for sample in of_function {
            let body = payload(sample.payload);
            let quarantined = b"{}".to_vec();
            let sent = [
                ("first", body.clone()),
                ("repeat", body.clone()),
                ("changed", changed(&body)),
                ("not understood", quarantined),
            ];
            for (what, body) in sent {
                let (status, answer) = deliver(&receiver, request(sample.kind, &body)).await;
                let outcome = answer["status"].as_str().unwrap_or_default();
                answers
                    .entry(function.to_owned())
                    .or_default()
                    .push((what, format!("{status} {outcome}")));
            }
        }
    }
    answers
}

/// The managed policy a function's role gets (one per function here).
fn policy_of(template: &Template, function: &str) -> String {
    let properties = &template.resource(function).expect("function").properties;
    let policies = properties["Policies"].as_sequence().expect("policies");
    let [policy] = policies.as_slice() else {
        panic!("{function}: one policy expected, got {policies:?}");
    };
    target(policy)
}

/// The answers every receiver policy's functions gave between them: each
/// path a receiver can take was taken under every receiver policy.
fn check_receiver_paths(
    template: &Template,
    answers: &BTreeMap<String, Vec<(&'static str, String)>>,
) {
    let mut by_policy: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (function, seen) in answers {
        assert_eq!(
            seen.first().map(|(_, a)| a.as_str()),
            Some("200 accepted"),
            "{function}: its sample was not accepted: {seen:?}"
        );
        by_policy
            .entry(policy_of(template, function))
            .or_default()
            .extend(seen.iter().map(|(_, answer)| answer.as_str()));
    }
    for (policy, seen) in by_policy {
        for path in [
            "200 accepted",
            "200 duplicate",
            "200 conflict",
            "202 quarantined",
        ] {
            assert!(
                seen.contains(path),
                "{policy}: no receiver answered {path}: {seen:?}"
            );
        }
    }
}

/// The stream read as the event source mapping reads it, handed to the
/// processor its `main` builds from `clients`.
struct Stream {
    poller: local_stack::stream::StreamPoller,
    processor: pipeline::process::Processor,
}

impl Stream {
    fn new(stack: &Stack, recorder: &Recorder) -> Self {
        Self {
            poller: stack.stream_poller(),
            processor: shared::function::processor(
                &stack.config,
                &recorder.clients(&stack.sdk, PROCESSOR),
            ),
        }
    }

    /// Processes what the stream holds; the number of records read.
    async fn process(&mut self, stack: &Stack) -> usize {
        let polled = stack
            .process_stream(&mut self.poller, &self.processor, 20)
            .await;
        assert!(
            polled.iter().all(|p| p.failed_batches == 0),
            "the processor failed a batch: {polled:?}"
        );
        polled.iter().map(|p| p.records).sum()
    }
}

/// A Revel customer webhook body.
fn customer(uuid: &str, updated: &str) -> Vec<u8> {
    json!({"uuid": uuid, "updated_date": updated, "first_name": "Ann"})
        .to_string()
        .into_bytes()
}

/// Deliveries whose records take the processor's and the worker's other
/// paths: a change older than the entity's (stale), and a customer whose
/// first delivery to the partner fails (a job retried with backoff).
async fn drive_more_records(stack: &Stack, recorder: &Recorder) {
    let updated = RevelEventType::CustomerUpdated;
    let clients = recorder.clients(&stack.sdk, Kind::Revel(updated).function().logical_id);
    let receiver = stack.receiver_with(updated, clients, &stack.config);
    for body in [
        customer("c-stale", "2026-11-24T11:00:00"),
        customer("c-stale", "2026-11-24T10:00:00"),
        customer(PARTNER_DOWN_ONCE, "2026-11-24T10:00:00"),
    ] {
        let (status, answer) = deliver(&receiver, signed_request(updated, &body)).await;
        expect_outcome(status, &answer, 200, "accepted");
    }
}

/// Hands a processed order back to the processor, as `revel-ops replay`
/// does: the processor finds its entity holding it already (a repeat).
async fn replay_an_order(stack: &Stack) {
    let order = stack
        .events()
        .await
        .into_iter()
        .map(|item| event_record(item).expect("an event record"))
        .find(|r| {
            r.event_type == RevelEventType::OrderFinalized.name()
                && r.status == ports::store::EventStatus::Received
        })
        .expect("a stored order");
    assert_eq!(
        stack.replay(&order).await,
        pipeline::replay::Replayed::Queued
    );
}

/// The scheduler's handler, as its `main` wires it: its tick at the demo
/// instance's end of day (UTC), then each task by hand.
async fn drive_scheduler(stack: &Stack, recorder: &Recorder) {
    let clients = recorder.clients(&stack.sdk, SCHEDULER);
    let revel = shared::function::revel_source(&stack.config, &clients.secrets);
    let winesitting = shared::function::winesitting_source(&stack.config, &clients.secrets).ok();
    let jobs = shared::function::jobs_queue(&stack.config, &clients);
    let state = aws_adapters::sync_state::DynamoSyncState::new(
        clients.entities.clone(),
        stack.sync_config(1000).sync_state_table,
        1000,
    );
    let tick = serde_json::json!({"task": "tick", "scheduled_time": "2026-11-30T23:55:00Z"});
    let answer = shared::function::run_schedule(
        &tick,
        &revel,
        winesitting.as_deref(),
        jobs.as_ref(),
        &state,
    )
    .await
    .expect("tick");
    assert_eq!(answer["slots"], 1, "the demo instance's end of day");
    for task in [
        JobKind::ProductSync,
        JobKind::EventSync,
        JobKind::InventorySync,
        JobKind::Reconcile,
        JobKind::WineSittingRepair,
        JobKind::PartnerCatalog,
    ] {
        let input = serde_json::json!({"task": task.name()});
        let answer = shared::function::run_schedule(
            &input,
            &revel,
            winesitting.as_deref(),
            jobs.as_ref(),
            &state,
        )
        .await
        .expect("a task by hand");
        assert_eq!(
            answer["instances"], 1,
            "{task:?}: one job for the demo instance"
        );
    }
}

/// The jobs worker its `main` builds, with the stand-ins for Revel, the
/// partner and WineSitting: init reads the partner's signing secret.
async fn worker(
    stack: &Stack,
    recorder: &Recorder,
    stand_ins: &StandIns,
) -> pipeline::worker::Worker {
    let clients = recorder.clients(&stack.sdk, WORKER);
    let mut sync = stack.sync_config(1000);
    sync.downstream_url = Some(stand_ins.partner.uri());
    sync.winesitting_api_base_url = stand_ins.winesitting.uri();
    let downstream = shared::function::downstream(&sync, &clients)
        .await
        .expect("the partner's signing secret");
    let revel = shared::function::revel_source(&stack.config, &clients.secrets);
    shared::function::jobs_worker(
        &stack.config,
        &sync,
        &clients,
        revel,
        fast_api(&stand_ins.revel.uri()),
        downstream,
    )
}

/// Runs every job waiting (the queue's event source), polling until none is left.
async fn run_jobs(stack: &Stack, worker: &pipeline::worker::Worker) -> usize {
    stack
        .drain(worker, 50)
        .await
        .iter()
        .map(|p| p.received)
        .sum()
}

async fn requests(server: &MockServer, verb: &str) -> usize {
    server
        .received_requests()
        .await
        .expect("recording requests")
        .iter()
        .filter(|r| r.method.as_str() == verb)
        .count()
}

/// Drives every function through its paths; the recorder holds what each
/// called.
async fn drive_every_function(stack: &Stack, recorder: &Recorder) {
    let stand_ins = StandIns::start().await;
    let answers = drive_receivers(stack, recorder).await;
    check_receiver_paths(&stack.template, &answers);
    drive_more_records(stack, recorder).await;

    // Records of every kind: follow-ups to the partner, to Revel and a
    // catalog pull, or none; quarantined ones skipped; conflicts; a stale
    // change; the stock sample's repeat (a new event, the same state:
    // unchanged); then a replayed order (repeated, its job queued again).
    let mut stream = Stream::new(stack, recorder);
    assert!(stream.process(stack).await > 0);
    replay_an_order(stack).await;
    assert_eq!(stream.process(stack).await, 1, "the replayed order");

    drive_scheduler(stack, recorder).await;
    // A message that isn't a job, parked in the DLQ at once.
    stack.send_job("not a job", "poison", "poison-1").await;
    let worker = worker(stack, recorder, &stand_ins).await;
    assert!(run_jobs(stack, &worker).await > 0);
    // Reconciled and repaired orders came in through the stream, like webhooks.
    assert!(
        stream.process(stack).await >= 2,
        "a reconciled and a repaired order"
    );
    run_jobs(stack, &worker).await;

    assert!(
        requests(&stand_ins.partner, "POST").await > 0,
        "nothing delivered"
    );
    assert!(
        requests(&stand_ins.revel, "POST").await > 0,
        "nothing applied to Revel"
    );
    assert_eq!(stack.dead_letters().await, ["not a job"]);
    assert_eq!(stack.jobs_waiting().await, 0, "a job was left");
}

#[tokio::test]
async fn every_function_is_granted_exactly_what_its_code_calls_on_the_resources_it_calls_them_on() {
    let stack = Stack::new().await.with_api_credentials().await;
    let recorder = Recorder::default();
    drive_every_function(&stack, &recorder).await;

    let mut wrong = Vec::new();
    for function in stack.template.resources_of("AWS::Serverless::Function") {
        let id = function.logical_id.as_str();
        let used = recorder.used_by(id, &stack.provisioned);
        if used.is_empty() {
            wrong.push(format!("{id}: its code was never driven"));
            continue;
        }
        let behalf = on_its_behalf(&stack.template, id, &used);
        println!("{id}\n  calls: {used:?}\n  on its behalf: {behalf:?}");
        let needed: Grants = used.union(&behalf).cloned().collect();
        let Discrepancy { missing, unused } = compare(&grants(&stack.template, id), &needed);
        if !missing.is_empty() {
            wrong.push(format!(
                "{id} calls what its policy doesn't grant: {missing:?}"
            ));
        }
        if !unused.is_empty() {
            wrong.push(format!(
                "{id}'s policy grants what it never calls: {unused:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}
