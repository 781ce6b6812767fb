//! Security and operations, checked on template.yaml itself: encryption at
//! rest with the template's own key, point-in-time recovery, retention,
//! flood limits, the events processor's stream settings, the alarms the
//! runbook in docs/operations.md describes, and a dashboard that shows the metrics the
//! code emits (names taken from `telemetry::Metric`, so renaming one
//! without the template fails).

use std::collections::{BTreeMap, BTreeSet};

use local_stack::template::{default_path, scalar, Scalar};
use serde_norway::Value;
use telemetry::{Metric, RejectReason, METRICS_NAMESPACE};

fn template() -> Value {
    let text = std::fs::read_to_string(default_path()).expect("template.yaml");
    serde_norway::from_str(&text).expect("template.yaml is YAML")
}

fn resources<'a>(doc: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    doc["Resources"]
        .as_mapping()
        .expect("resources")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(id, r)| (id.as_str().expect("id"), r))
        .collect()
}

fn resource_type<'a>(doc: &'a Value, id: &str) -> Option<&'a str> {
    doc["Resources"].get(id)?["Type"].as_str()
}

/// The logical id a `!Ref` or `!GetAtt` names.
fn target(value: &Value) -> Option<String> {
    match scalar(value) {
        Scalar::Ref(id) | Scalar::GetAtt(id, _) => Some(id),
        _ => None,
    }
}

/// The default of the parameter `value` refers to; None if it isn't a
/// reference to a numeric parameter.
fn parameter_default(doc: &Value, value: &Value) -> Option<u64> {
    let Scalar::Ref(name) = scalar(value) else {
        return None;
    };
    let parameter = doc["Parameters"].get(&name)?;
    (parameter["Type"].as_str() == Some("Number")).then_some(())?;
    parameter["Default"].as_u64()
}

/// The properties of a function's events of type `kind`.
fn events_of<'a>(function: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    function["Properties"]["Events"]
        .as_mapping()
        .into_iter()
        .flat_map(|m| m.values())
        .filter(move |e| e["Type"].as_str() == Some(kind))
        .map(|e| &e["Properties"])
}

fn is_true(value: &Value) -> bool {
    value.as_bool() == Some(true)
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items
            .iter()
            .filter_map(|v| v.as_str())
            .map(String::from)
            .collect(),
        Value::String(one) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// The text of a `!Sub` (short or long form).
fn sub_text(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Sub" => tagged.value.as_str(),
        Value::Mapping(map) => map.get("Fn::Sub")?.as_str(),
        _ => None,
    }
}

#[test]
fn every_table_is_encrypted_with_the_templates_rotating_retained_key_and_has_point_in_time_recovery(
) {
    let doc = template();
    let tables = resources(&doc, "AWS::DynamoDB::Table");
    assert!(
        tables.len() >= 3,
        "events, entities and sync state at least"
    );
    for (id, table) in tables {
        let properties = &table["Properties"];
        let sse = &properties["SSESpecification"];
        assert!(is_true(&sse["SSEEnabled"]), "{id}: SSE not enabled");
        assert_eq!(sse["SSEType"].as_str(), Some("KMS"), "{id}: not a KMS key");
        let key = target(&sse["KMSMasterKeyId"])
            .unwrap_or_else(|| panic!("{id}: KMSMasterKeyId must name the template's key"));
        assert_eq!(
            resource_type(&doc, &key),
            Some("AWS::KMS::Key"),
            "{id}: {key}"
        );
        let key = &doc["Resources"][key.as_str()];
        assert!(
            is_true(&key["Properties"]["EnableKeyRotation"]),
            "{id}: key rotation off"
        );
        // A deleted key would make the retained table unreadable.
        assert_eq!(
            key["DeletionPolicy"].as_str(),
            Some("Retain"),
            "{id}: key not retained"
        );
        assert!(
            is_true(&properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]),
            "{id}: point-in-time recovery off"
        );
    }
}

#[test]
fn the_table_key_lets_the_account_administer_it() {
    let doc = template();
    for (id, key) in resources(&doc, "AWS::KMS::Key") {
        let statements = key["Properties"]["KeyPolicy"]["Statement"]
            .as_sequence()
            .expect("key policy statements");
        let administers = statements.iter().any(|statement| {
            let root = sub_text(&statement["Principal"]["AWS"])
                .is_some_and(|p| p.ends_with(":iam::${AWS::AccountId}:root"));
            statement["Effect"].as_str() == Some("Allow")
                && root
                && strings(&statement["Action"]).contains(&"kms:*".to_owned())
        });
        assert!(administers, "{id}: the account can't administer the key");
    }
}

/// Statements of the managed policies a function references.
fn statements<'a>(doc: &'a Value, function: &Value) -> Vec<&'a Value> {
    function["Properties"]["Policies"]
        .as_sequence()
        .expect("policies")
        .iter()
        .filter_map(target)
        .flat_map(|policy| {
            doc["Resources"][policy.as_str()]["Properties"]["PolicyDocument"]["Statement"]
                .as_sequence()
                .expect("statements")
                .iter()
        })
        .collect()
}

#[test]
fn functions_that_use_a_table_may_use_its_key_and_only_through_dynamodb() {
    let doc = template();
    let mut table_users = 0;
    for (id, function) in resources(&doc, "AWS::Serverless::Function") {
        let statements = statements(&doc, function);
        let actions = |s: &Value| strings(&s["Action"]);
        let uses_tables = statements
            .iter()
            .any(|s| actions(s).iter().any(|a| a.starts_with("dynamodb:")));
        let kms: Vec<&&Value> = statements
            .iter()
            .filter(|s| actions(s).iter().any(|a| a.starts_with("kms:")))
            .collect();
        for statement in &kms {
            let via = sub_text(&statement["Condition"]["StringEquals"]["kms:ViaService"]);
            assert_eq!(
                via,
                Some("dynamodb.${AWS::Region}.amazonaws.com"),
                "{id}: a KMS grant not limited to DynamoDB"
            );
        }
        let may_decrypt = kms.iter().any(|s| {
            actions(s).contains(&"kms:Decrypt".to_owned())
                && target(&s["Resource"])
                    .is_some_and(|k| resource_type(&doc, &k) == Some("AWS::KMS::Key"))
        });
        assert_eq!(
            may_decrypt, uses_tables,
            "{id}: table use and key use disagree"
        );
        table_users += usize::from(uses_tables);
    }
    assert!(table_users > 0);
}

#[test]
fn every_queue_is_encrypted() {
    let doc = template();
    let queues = resources(&doc, "AWS::SQS::Queue");
    assert!(!queues.is_empty());
    for (id, queue) in queues {
        let properties = &queue["Properties"];
        assert!(
            is_true(&properties["SqsManagedSseEnabled"])
                || properties.get("KmsMasterKeyId").is_some(),
            "{id}: not encrypted"
        );
    }
}

/// `(name, argument)` of an intrinsic, short (`!If x`) or long (`{Fn::If: x}`)
/// form; `Ref` and `Condition` have no `Fn::`.
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => Some((
            tagged.tag.to_string().trim_start_matches('!').to_owned(),
            &tagged.value,
        )),
        Value::Mapping(map) if map.len() == 1 => {
            let (key, argument) = map.iter().next()?;
            let key = key.as_str()?;
            match key {
                "Ref" | "Condition" => Some((key.to_owned(), argument)),
                _ => key
                    .strip_prefix("Fn::")
                    .map(|name| (name.to_owned(), argument)),
            }
        }
        _ => None,
    }
}

/// A scalar as CloudFormation passes it: text.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The template as CloudFormation would see it with these parameter values:
/// `Ref`, `If`, `Not`, `And`, `Or`, `Equals` and `Condition` evaluated.
struct Stack<'a> {
    doc: &'a Value,
    parameters: BTreeMap<String, String>,
}

impl<'a> Stack<'a> {
    /// The defaults, then `overrides` (as `sam deploy --parameter-overrides`).
    fn new(doc: &'a Value, overrides: &[(&str, &str)]) -> Self {
        let declared = doc["Parameters"].as_mapping().expect("parameters");
        let mut parameters: BTreeMap<String, String> = declared
            .iter()
            .filter_map(|(name, p)| Some((name.as_str()?.to_owned(), text(p.get("Default")?)?)))
            .collect();
        for (name, value) in overrides {
            assert!(
                doc["Parameters"].get(*name).is_some(),
                "unknown parameter {name}"
            );
            parameters.insert((*name).to_owned(), (*value).to_owned());
        }
        Self { doc, parameters }
    }

    /// The value, or `None` for `AWS::NoValue` (the property is left out).
    fn resolve(&self, value: &Value) -> Option<String> {
        match intrinsic(value) {
            Some((name, argument)) if name == "Ref" => {
                let parameter = argument.as_str().expect("Ref names a string");
                if parameter == "AWS::NoValue" {
                    return None;
                }
                let value = self.parameters.get(parameter);
                Some(
                    value
                        .unwrap_or_else(|| panic!("Ref {parameter}: not a parameter with a value"))
                        .clone(),
                )
            }
            Some((name, argument)) if name == "If" => {
                let [condition, then, otherwise] = argument
                    .as_sequence()
                    .map(Vec::as_slice)
                    .expect("If takes a list")
                else {
                    panic!("If takes 3: {argument:?}")
                };
                let condition = condition.as_str().expect("If names a condition");
                self.resolve(if self.condition(condition) {
                    then
                } else {
                    otherwise
                })
            }
            Some((name, _)) => panic!("intrinsic {name} not evaluated by this test"),
            None => Some(text(value).expect("a scalar")),
        }
    }

    fn condition(&self, name: &str) -> bool {
        let condition = self.doc["Conditions"].get(name);
        self.truth(condition.unwrap_or_else(|| panic!("no condition {name}")))
    }

    fn truth(&self, value: &Value) -> bool {
        let (name, argument) = intrinsic(value).expect("a condition function");
        let arguments = || argument.as_sequence().expect("a list").iter();
        match name.as_str() {
            "Not" => !self.truth(&argument[0]),
            "And" => arguments().all(|c| self.truth(c)),
            "Or" => arguments().any(|c| self.truth(c)),
            // CloudFormation compares the two as strings.
            "Equals" => {
                let values: Vec<_> = arguments().map(|a| self.resolve(a)).collect();
                assert_eq!(values.len(), 2, "Equals takes 2");
                values[0] == values[1]
            }
            "Condition" => self.condition(argument.as_str().expect("a condition's name")),
            other => panic!("condition function {other} not evaluated by this test"),
        }
    }

    /// Each function's reservation (`None`: unreserved), as SAM merges
    /// Globals: a function's own value replaces the global one.
    fn reservations(&self) -> BTreeMap<String, Option<u64>> {
        let global = self.doc["Globals"]["Function"].get("ReservedConcurrentExecutions");
        resources(self.doc, "AWS::Serverless::Function")
            .into_iter()
            .map(|(id, function)| {
                let setting = function["Properties"]
                    .get("ReservedConcurrentExecutions")
                    .or(global);
                let reserved = setting
                    .and_then(|s| self.resolve(s))
                    .map(|n| n.parse().unwrap_or_else(|_| panic!("{id}: reserves {n:?}")));
                (id.to_owned(), reserved)
            })
            .collect()
    }
}

/// What an account may reserve in all: Lambda keeps min(100, limit)
/// unreserved ("... decreases account's UnreservedConcurrentExecution below
/// its minimum value of [10]" on a new account whose limit is 10).
fn reservable(limit: u64) -> u64 {
    limit - limit.min(100)
}

/// The four groups' parameters, each with the functions it reserves for.
const RESERVATION_PARAMETERS: [&str; 4] = [
    "ReceiverReservedConcurrency",
    "WorkerReservedConcurrency",
    "ProcessorReservedConcurrency",
    "SchedulerReservedConcurrency",
];

#[test]
fn the_defaults_reserve_nothing_so_they_deploy_on_a_new_account_whose_limit_is_10() {
    let doc = template();
    let reservations = Stack::new(&doc, &[]).reservations();
    assert!(reservations.len() > 25, "{reservations:?}");
    let total: u64 = reservations.values().flatten().sum();
    for limit in [10, 1000] {
        assert!(
            total <= reservable(limit),
            "the defaults reserve {total}; an account whose limit is {limit} allows {}",
            reservable(limit)
        );
    }
    for (id, reserved) in &reservations {
        // A reservation of 0 throttles a function completely.
        assert_ne!(*reserved, Some(0), "{id}: a reservation of 0 turns it off");
    }
}

#[test]
fn every_functions_reservation_is_a_groups_parameter_behind_its_zero_means_unreserved_condition() {
    let doc = template();
    let global = doc["Globals"]["Function"].get("ReservedConcurrentExecutions");
    let mut used = BTreeSet::new();
    for (id, function) in resources(&doc, "AWS::Serverless::Function") {
        let setting = function["Properties"]
            .get("ReservedConcurrentExecutions")
            .or(global)
            .unwrap_or_else(|| panic!("{id}: no reservation setting"));
        // !If [Condition, !Ref Parameter, !Ref AWS::NoValue]
        let (name, argument) = intrinsic(setting).unwrap_or_else(|| {
            panic!("{id}: a literal reservation ({setting:?}), not a parameter")
        });
        assert_eq!(name, "If", "{id}: the reservation must be conditional");
        let [condition, then, otherwise] = argument.as_sequence().expect("a list").as_slice()
        else {
            panic!("{id}: If takes 3")
        };
        assert_eq!(
            scalar(otherwise),
            Scalar::Ref("AWS::NoValue".into()),
            "{id}: without the condition, no reservation at all"
        );
        let Scalar::Ref(parameter) = scalar(then) else {
            panic!("{id}: the reservation must be a parameter, is {then:?}")
        };
        let declared = &doc["Parameters"][parameter.as_str()];
        assert_eq!(declared["Type"].as_str(), Some("Number"), "{parameter}");
        assert_eq!(
            declared["Default"].as_u64(),
            Some(0),
            "{parameter}: unreserved by default"
        );
        assert_eq!(declared["MinValue"].as_u64(), Some(0), "{parameter}");
        // The condition is exactly "the parameter isn't 0".
        let condition = condition.as_str().expect("a condition's name");
        let (not, inner) = intrinsic(&doc["Conditions"][condition])
            .unwrap_or_else(|| panic!("{id}: no condition {condition}"));
        assert_eq!(not, "Not", "{condition}");
        let (equals, pair) = intrinsic(&inner[0]).expect("Not [Equals ...]");
        assert_eq!(equals, "Equals", "{condition}");
        assert_eq!(
            scalar(&pair[0]),
            Scalar::Ref(parameter.clone()),
            "{condition}"
        );
        assert_eq!(text(&pair[1]).as_deref(), Some("0"), "{condition}");
        used.insert(parameter);
    }
    assert_eq!(
        used,
        RESERVATION_PARAMETERS.map(String::from).into(),
        "each group's parameter is used, and only those"
    );
}

#[test]
fn each_groups_parameter_reserves_exactly_its_functions_and_the_documented_example_fits() {
    let doc = template();
    // README: 20 per receiver, 5, 4 and 2.
    let example = [
        ("ReceiverReservedConcurrency", "20"),
        ("WorkerReservedConcurrency", "5"),
        ("ProcessorReservedConcurrency", "4"),
        ("SchedulerReservedConcurrency", "2"),
    ];
    let reservations = Stack::new(&doc, &example).reservations();
    let expected = |id: &str| match id {
        "JobsWorkerFunction" => 5,
        "EventsProcessorFunction" => 4,
        "RevelSchedulerFunction" => 2,
        _ => 20,
    };
    for (id, reserved) in &reservations {
        assert_eq!(*reserved, Some(expected(id)), "{id}");
    }
    let total: u64 = reservations.values().flatten().sum();
    assert!(
        total <= reservable(1000),
        "the example reserves {total} of 1000"
    );
    // One group at a time: the others stay unreserved.
    for (parameter, value) in example {
        let reservations = Stack::new(&doc, &[(parameter, value)]).reservations();
        let reserved: Vec<_> = reservations.iter().filter(|(_, r)| r.is_some()).collect();
        assert!(!reserved.is_empty(), "{parameter} reserves nothing");
        for (id, r) in reserved {
            assert_eq!(*r, Some(expected(id)), "{parameter}={value}: {id}");
        }
    }
}

#[test]
fn sqs_pollers_are_always_capped_within_2_to_1000_and_never_above_the_reservation() {
    let doc = template();
    let mut sqs_sources = 0;
    for overrides in [&[][..], &[("WorkerReservedConcurrency", "7")][..]] {
        let stack = Stack::new(&doc, overrides);
        let reservations = stack.reservations();
        for (id, function) in resources(&doc, "AWS::Serverless::Function") {
            for event in events_of(function, "SQS") {
                sqs_sources += 1;
                let setting = event["ScalingConfig"]
                    .get("MaximumConcurrency")
                    .unwrap_or_else(|| {
                        panic!("{id}: SQS event source without a maximum concurrency")
                    });
                let maximum: u64 = stack
                    .resolve(setting)
                    .unwrap_or_else(|| panic!("{id}: the maximum concurrency can be left out"))
                    .parse()
                    .expect("a number");
                // cfn-lint doesn't range-check it inside a SAM SQS event.
                assert!(
                    (2..=1000).contains(&maximum),
                    "{id}: MaximumConcurrency {maximum} outside 2-1000 ({overrides:?})"
                );
                // Polling with more than reserved is throttled, and each
                // throttled receive counts towards the DLQ.
                if let Some(reserved) = reservations[id] {
                    assert_eq!(
                        maximum, reserved,
                        "{id}: {maximum} pollers, {reserved} reserved"
                    );
                }
            }
        }
    }
    assert_eq!(sqs_sources, 2, "the jobs worker's queue, once per case");
}

/// Whether CloudFormation takes these values: each parameter within its
/// `MinValue`/`MaxValue`, and every rule's assertions true.
fn accepted(stack: &Stack) -> bool {
    let within = stack.parameters.iter().all(|(name, value)| {
        let declared = &stack.doc["Parameters"][name.as_str()];
        let number = |bound: &str| declared.get(bound).and_then(Value::as_i64);
        let Ok(value) = value.parse::<i64>() else {
            return true;
        };
        number("MinValue").is_none_or(|min| value >= min)
            && number("MaxValue").is_none_or(|max| value <= max)
    });
    let rules = stack.doc.get("Rules").and_then(Value::as_mapping);
    within
        && rules.into_iter().flatten().all(|(_, rule)| {
            rule["Assertions"]
                .as_sequence()
                .expect("a rule's assertions")
                .iter()
                .all(|assertion| stack.truth(&assertion["Assert"]))
        })
}

#[test]
fn every_worker_reservation_the_template_takes_polls_with_2_to_1000_and_the_others_are_refused() {
    let doc = template();
    let mut taken = Vec::new();
    for reserved in 0..=1001u32 {
        let value = reserved.to_string();
        let stack = Stack::new(&doc, &[("WorkerReservedConcurrency", value.as_str())]);
        if !accepted(&stack) {
            continue;
        }
        taken.push(reserved);
        let (_, worker) = resources(&doc, "AWS::Serverless::Function")
            .into_iter()
            .find(|(id, _)| *id == "JobsWorkerFunction")
            .expect("the jobs worker");
        for event in events_of(worker, "SQS") {
            let maximum: u64 = stack
                .resolve(&event["ScalingConfig"]["MaximumConcurrency"])
                .expect("always set")
                .parse()
                .expect("a number");
            assert!(
                (2..=1000).contains(&maximum),
                "{reserved}: {maximum} pollers"
            );
        }
    }
    assert_eq!(taken.first(), Some(&0));
    assert!(
        !taken.contains(&1),
        "1 is refused before anything is created"
    );
    assert_eq!(taken.last(), Some(&1000));
    assert_eq!(taken.len(), 1000, "0 and 2 to 1000");
}

#[test]
fn every_parameter_says_what_it_is_for() {
    let doc = template();
    for (name, parameter) in doc["Parameters"].as_mapping().expect("parameters") {
        let description = parameter["Description"].as_str().unwrap_or_default();
        assert!(!description.trim().is_empty(), "{name:?}: no Description");
    }
}

/// The Interface metadata's groups: (label, parameters), in order.
fn parameter_groups(doc: &Value) -> Vec<(String, Vec<String>)> {
    doc["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
        .as_sequence()
        .expect("Metadata: AWS::CloudFormation::Interface: ParameterGroups")
        .iter()
        .map(|group| {
            let label = group["Label"]["default"].as_str().unwrap_or_default();
            (label.to_owned(), strings(&group["Parameters"]))
        })
        .collect()
}

#[test]
fn every_parameter_is_in_one_labelled_group_and_the_first_group_holds_the_url_time_zone_and_schedules(
) {
    let doc = template();
    let declared: Vec<String> = doc["Parameters"]
        .as_mapping()
        .expect("parameters")
        .keys()
        .map(|k| k.as_str().expect("a name").to_owned())
        .collect();
    let groups = parameter_groups(&doc);
    let grouped: Vec<String> = groups.iter().flat_map(|(_, p)| p.clone()).collect();
    for (label, parameters) in &groups {
        assert!(
            !label.trim().is_empty(),
            "a group without a label: {parameters:?}"
        );
        assert!(!parameters.is_empty(), "{label}: empty");
    }
    for parameter in &declared {
        let times = grouped.iter().filter(|g| *g == parameter).count();
        assert_eq!(times, 1, "{parameter} is in {times} groups");
        let label = &doc["Metadata"]["AWS::CloudFormation::Interface"]["ParameterLabels"]
            [parameter.as_str()]["default"];
        assert!(
            label.as_str().is_some_and(|l| !l.trim().is_empty()),
            "{parameter}: no label"
        );
    }
    for parameter in &grouped {
        assert!(
            declared.contains(parameter),
            "{parameter}: grouped, not declared"
        );
    }
    // `sam deploy --guided` asks in template order: group by group.
    assert_eq!(
        declared, grouped,
        "Parameters must be declared in their groups' order"
    );
    let schedules: Vec<&String> = declared
        .iter()
        .filter(|p| {
            let default = doc["Parameters"][p.as_str()]["Default"]
                .as_str()
                .unwrap_or_default();
            default.starts_with("cron(") || default.starts_with("rate(")
        })
        .collect();
    assert!(!schedules.is_empty(), "no schedule parameter found");
    let first = &groups[0].1;
    for needed in ["DownstreamUrl", "DefaultTimeZone"]
        .iter()
        .copied()
        .chain(schedules.iter().map(|s| s.as_str()))
    {
        assert!(
            first.iter().any(|p| p == needed),
            "the first group ({:?}) lacks {needed}",
            groups[0].0
        );
    }
}

#[test]
fn the_api_throttles_every_route_with_parameters() {
    let doc = template();
    let apis = resources(&doc, "AWS::Serverless::HttpApi");
    assert_eq!(apis.len(), 1, "one API");
    let (api_id, api) = apis[0];
    let settings = &api["Properties"]["DefaultRouteSettings"];
    for limit in ["ThrottlingBurstLimit", "ThrottlingRateLimit"] {
        assert!(
            parameter_default(&doc, &settings[limit]).is_some_and(|v| v > 0),
            "{limit} must be a numeric parameter"
        );
    }
    let mut routes = 0;
    for (id, function) in resources(&doc, "AWS::Serverless::Function") {
        for event in events_of(function, "HttpApi") {
            // Without ApiId, SAM puts the route on an implicit, unthrottled API.
            assert_eq!(
                target(&event["ApiId"]).as_deref(),
                Some(api_id),
                "{id}: a route outside the throttled API"
            );
            routes += 1;
        }
    }
    assert!(routes >= 22, "{routes} routes");
}

#[test]
fn the_archive_retention_is_a_parameter_the_functions_get_and_ttl_enforces() {
    let doc = template();
    let variable = &doc["Globals"]["Function"]["Environment"]["Variables"]["EVENT_RETENTION_DAYS"];
    assert_eq!(scalar(variable), Scalar::Ref("EventRetentionDays".into()));
    assert!(parameter_default(&doc, variable).is_some_and(|days| days >= 1));
    let ttl = &doc["Resources"]["EventsTable"]["Properties"]["TimeToLiveSpecification"];
    assert!(is_true(&ttl["Enabled"]));
    assert_eq!(ttl["AttributeName"].as_str(), Some("expires_at"));
}

/// A dimension value that stands for every value (a Metrics Insights
/// `SCHEMA` names dimensions, not their values).
const ANY_VALUE: &str = "*";

/// (namespace, metric, dimensions as name=value) of an alarm: on one metric,
/// or on a Metrics Insights query `SELECT SUM(m) FROM SCHEMA("ns", d, ...)`,
/// whose dimensions take [`ANY_VALUE`].
fn alarm_metric(alarm: &Value) -> (String, String, BTreeSet<(String, String)>) {
    let properties = &alarm["Properties"];
    if let Some(queries) = properties["Metrics"].as_sequence() {
        let [query] = queries.as_slice() else {
            panic!("an alarm on one query, got {queries:?}");
        };
        return insights_metric(query["Expression"].as_str().expect("a query expression"));
    }
    let dimensions = properties["Dimensions"]
        .as_sequence()
        .map(|d| {
            d.iter()
                .map(|d| {
                    let value = match scalar(&d["Value"]) {
                        Scalar::Literal(v) => v,
                        Scalar::Ref(id) | Scalar::GetAtt(id, _) => format!("{{{id}}}"),
                        Scalar::Unsupported(what) => what,
                    };
                    (d["Name"].as_str().expect("name").to_owned(), value)
                })
                .collect()
        })
        .unwrap_or_default();
    (
        properties["Namespace"]
            .as_str()
            .expect("namespace")
            .to_owned(),
        properties["MetricName"]
            .as_str()
            .expect("metric")
            .to_owned(),
        dimensions,
    )
}

/// What `SELECT SUM(metric) FROM SCHEMA("namespace", dimension, ...)` reads.
fn insights_metric(query: &str) -> (String, String, BTreeSet<(String, String)>) {
    let read = || {
        let rest = query.strip_prefix("SELECT SUM(")?;
        let (metric, rest) = rest.split_once(')')?;
        let schema = rest
            .trim()
            .strip_prefix("FROM SCHEMA(")?
            .strip_suffix(')')?;
        let mut parts = schema.split(',').map(str::trim);
        let namespace = parts.next()?.strip_prefix('"')?.strip_suffix('"')?;
        Some((
            namespace.to_owned(),
            metric.to_owned(),
            parts
                .map(|d| (d.to_owned(), ANY_VALUE.to_owned()))
                .collect(),
        ))
    };
    read().unwrap_or_else(|| panic!("not a query this test reads: {query}"))
}

fn dimensions(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn every_alarm_the_runbook_names_exists_on_the_right_metric_and_notifies_the_topic() {
    let doc = template();
    let expected = [
        (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            dimensions(&[("QueueName", "{JobsDeadLetterQueue}")]),
        ),
        (
            METRICS_NAMESPACE,
            Metric::Rejected.name(),
            dimensions(&[("Reason", RejectReason::Unauthorized.as_str())]),
        ),
        (
            "AWS/ApiGateway",
            "5xx",
            dimensions(&[("ApiId", "{WebhookApi}")]),
        ),
        (
            METRICS_NAMESPACE,
            Metric::Quarantined.name(),
            dimensions(&[]),
        ),
        (
            METRICS_NAMESPACE,
            Metric::ApiBudgetUsedPercent.name(),
            dimensions(&[]),
        ),
        (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            dimensions(&[("QueueName", "{EventsProcessorFailureQueue}")]),
        ),
        (
            "AWS/Lambda",
            "IteratorAge",
            dimensions(&[("FunctionName", "{EventsProcessorFunction}")]),
        ),
        (
            METRICS_NAMESPACE,
            Metric::ProcessingFailures.name(),
            dimensions(&[("Reason", ANY_VALUE)]),
        ),
        (METRICS_NAMESPACE, Metric::Conflicts.name(), dimensions(&[])),
        (
            METRICS_NAMESPACE,
            Metric::SecretsStale.name(),
            dimensions(&[]),
        ),
        (
            METRICS_NAMESPACE,
            Metric::DeliveriesWaiting.name(),
            dimensions(&[]),
        ),
    ];
    let alarms = resources(&doc, "AWS::CloudWatch::Alarm");
    let found: Vec<_> = alarms.iter().map(|(_, a)| alarm_metric(a)).collect();
    for (namespace, metric, dims) in expected {
        let wanted = (namespace.to_owned(), metric.to_owned(), dims);
        assert!(found.contains(&wanted), "no alarm on {wanted:?}");
    }
    let topics = resources(&doc, "AWS::SNS::Topic");
    assert_eq!(topics.len(), 1, "one topic for the alarms");
    let topic = topics[0].0;
    for (id, alarm) in &alarms {
        for actions in ["AlarmActions", "OKActions"] {
            let targets: Vec<String> = alarm["Properties"][actions]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(target)
                .collect();
            assert_eq!(targets, [topic], "{id}: {actions}");
        }
    }
}

#[test]
fn the_alarm_email_subscription_exists_only_when_the_parameter_is_set() {
    let doc = template();
    let subscriptions = resources(&doc, "AWS::SNS::Subscription");
    assert_eq!(subscriptions.len(), 1);
    let (id, subscription) = subscriptions[0];
    let condition = subscription["Condition"].as_str().expect("a condition");
    let endpoint = &subscription["Properties"]["Endpoint"];
    let Scalar::Ref(parameter) = scalar(endpoint) else {
        panic!("{id}: the endpoint must be a parameter");
    };
    assert_eq!(
        doc["Parameters"][parameter.as_str()]["Default"].as_str(),
        Some("")
    );
    // HasAlarmEmail: !Not [!Equals [!Ref AlarmEmail, '']]
    let Value::Tagged(not) = &doc["Conditions"][condition] else {
        panic!("{condition} must be !Not");
    };
    assert_eq!(not.tag, "Not");
    let Value::Tagged(equals) = &not.value[0] else {
        panic!("{condition} must be !Not [!Equals ...]");
    };
    assert_eq!(equals.tag, "Equals");
    assert_eq!(scalar(&equals.value[0]), Scalar::Ref(parameter));
    assert_eq!(equals.value[1].as_str(), Some(""));
}

#[test]
fn alarms_on_the_bundles_metrics_read_series_the_code_publishes() {
    let doc = template();
    for (id, alarm) in resources(&doc, "AWS::CloudWatch::Alarm") {
        let (namespace, name, dims) = alarm_metric(alarm);
        if namespace != METRICS_NAMESPACE {
            continue;
        }
        let metric = Metric::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("{id}: the code emits no {name}"));
        let names: BTreeSet<&str> = dims.iter().map(|(k, _)| k.as_str()).collect();
        let published: BTreeSet<&str> = metric.rollup().iter().map(|d| d.name()).collect();
        assert_eq!(names, published, "{id}: no such series of {name}");
    }
}

/// The dashboard's JSON with its `${...}` substitutions replaced by 0 (they
/// stand in strings and numbers alike).
fn dashboard(doc: &Value) -> (serde_json::Value, String) {
    let dashboards = resources(doc, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1);
    let text = sub_text(&dashboards[0].1["Properties"]["DashboardBody"])
        .expect("DashboardBody is a !Sub")
        .to_owned();
    let mut plain = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${") {
        plain.push_str(&rest[..start]);
        plain.push('0');
        let end = rest[start..].find('}').expect("closed ${") + start;
        rest = &rest[end + 1..];
    }
    plain.push_str(rest);
    (
        serde_json::from_str(&plain).expect("dashboard body is JSON"),
        text,
    )
}

#[test]
fn the_dashboard_shows_every_metric_the_code_emits_and_every_alarm() {
    let doc = template();
    let (body, text) = dashboard(&doc);
    let mut shown = BTreeSet::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        for line in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let line = line.as_array().expect("a metric line");
            match (
                line.first().and_then(|v| v.as_str()),
                line.get(1).and_then(|v| v.as_str()),
            ) {
                (Some(namespace), Some(name)) if namespace == METRICS_NAMESPACE => {
                    let metric = Metric::ALL
                        .into_iter()
                        .find(|m| m.name() == name)
                        .unwrap_or_else(|| panic!("the code emits no {name}"));
                    // Dimension name/value pairs follow the name, then options.
                    let names: BTreeSet<&str> = line[2..]
                        .iter()
                        .filter_map(|v| v.as_str())
                        .step_by(2)
                        .collect();
                    let published: BTreeSet<&str> =
                        metric.rollup().iter().map(|d| d.name()).collect();
                    assert_eq!(names, published, "no such series of {name}");
                    shown.insert(name.to_owned());
                }
                _ => {
                    let expression = line
                        .first()
                        .and_then(|o| o["expression"].as_str())
                        .unwrap_or_default();
                    if expression.contains(&format!("{{{METRICS_NAMESPACE},")) {
                        for metric in Metric::ALL {
                            if expression.contains(&format!("MetricName=\"{}\"", metric.name())) {
                                shown.insert(metric.name().to_owned());
                            }
                        }
                    }
                }
            }
        }
    }
    let emitted: BTreeSet<String> = Metric::ALL.iter().map(|m| m.name().to_owned()).collect();
    assert_eq!(shown, emitted);
    for (id, _) in resources(&doc, "AWS::CloudWatch::Alarm") {
        assert!(
            text.contains(&format!("${{{id}.Arn}}")),
            "{id} not on the dashboard"
        );
    }
}

/// DynamoDB keeps a stream's records for 24 hours.
const STREAM_RETENTION_SECONDS: i64 = 24 * 3600;

#[test]
fn the_stream_processor_retries_in_order_then_gives_up_in_bounds_onto_a_queue_an_alarm_watches() {
    let doc = template();
    let alarms: Vec<_> = resources(&doc, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(_, alarm)| (alarm_metric(alarm), alarm))
        .collect();
    let alarm_on = |namespace: &str, metric: &str, dimension: &str, id: &str| {
        let wanted = (
            namespace.to_owned(),
            metric.to_owned(),
            dimensions(&[(dimension, &format!("{{{id}}}"))]),
        );
        alarms
            .iter()
            .find(|(found, _)| *found == wanted)
            .map(|(_, alarm)| *alarm)
    };
    let mut sources = 0;
    for (id, function) in resources(&doc, "AWS::Serverless::Function") {
        for event in events_of(function, "DynamoDB") {
            sources += 1;
            // A failing record is retried from its own sequence number, so
            // no record is applied after a later one of the same item.
            assert!(
                strings(&event["FunctionResponseTypes"])
                    .contains(&"ReportBatchItemFailures".to_owned()),
                "{id}: no partial batch responses"
            );
            assert!(
                is_true(&event["BisectBatchOnFunctionError"]),
                "{id}: a crashing batch isn't split"
            );
            // Records stored before the mapping was enabled are processed too.
            assert_eq!(
                event["StartingPosition"].as_str(),
                Some("TRIM_HORIZON"),
                "{id}"
            );
            // -1 (the default) retries until the record expires from the stream.
            let retries = event["MaximumRetryAttempts"].as_i64();
            assert!(
                retries.is_some_and(|n| (0..=10_000).contains(&n)),
                "{id}: retries unbounded ({retries:?})"
            );
            // Given up on (and reported) before the stream drops it unreported.
            let age = event["MaximumRecordAgeInSeconds"].as_i64();
            assert!(
                age.is_some_and(|s| (60..STREAM_RETENTION_SECONDS).contains(&s)),
                "{id}: record age unbounded or past the stream's retention ({age:?})"
            );
            let age = age.expect("checked");

            let Scalar::GetAtt(table, attribute) = scalar(&event["Stream"]) else {
                panic!("{id}: the stream must be a table's StreamArn");
            };
            assert_eq!(
                (resource_type(&doc, &table), attribute.as_str()),
                (Some("AWS::DynamoDB::Table"), "StreamArn"),
                "{id}"
            );
            // The processor reads the new image; keys alone can't be
            // applied, and old images would double every record for nothing.
            assert_eq!(
                doc["Resources"][table.as_str()]["Properties"]["StreamSpecification"]
                    ["StreamViewType"]
                    .as_str(),
                Some("NEW_IMAGE"),
                "{id}: {table}'s stream"
            );

            let destination = target(&event["DestinationConfig"]["OnFailure"]["Destination"])
                .unwrap_or_else(|| panic!("{id}: no on-failure destination"));
            assert_eq!(
                resource_type(&doc, &destination),
                Some("AWS::SQS::Queue"),
                "{id}: {destination}"
            );
            assert!(
                alarm_on(
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    "QueueName",
                    &destination
                )
                .is_some(),
                "{id}: nothing watches {destination}"
            );
            // The operator tool finds the records given up on there.
            assert_eq!(
                scalar(
                    &doc["Globals"]["Function"]["Environment"]["Variables"]
                        ["EVENTS_PROCESSOR_FAILURE_QUEUE_URL"]
                ),
                Scalar::Ref(destination.clone()),
                "{id}"
            );

            // The lag alarm fires while the records are still being retried.
            let lag = alarm_on("AWS/Lambda", "IteratorAge", "FunctionName", id)
                .unwrap_or_else(|| panic!("{id}: no alarm on its stream's lag"));
            let threshold_ms = parameter_default(&doc, &lag["Properties"]["Threshold"])
                .unwrap_or_else(|| panic!("{id}: the lag threshold must be a numeric parameter"));
            assert!(
                threshold_ms < (age as u64) * 1000,
                "{id}: the lag alarm ({threshold_ms} ms) fires after records are given up on ({age} s)"
            );
        }
    }
    assert_eq!(sources, 1, "the events processor reads the one stream");
}

/// The variable `name` of every function, as a parameter's name.
fn global_parameter(doc: &Value, name: &str) -> String {
    match scalar(&doc["Globals"]["Function"]["Environment"]["Variables"][name]) {
        Scalar::Ref(parameter) => parameter,
        other => panic!("{name} must be a parameter, is {other:?}"),
    }
}

#[test]
fn each_sources_deliveries_to_the_partner_are_a_true_or_false_parameter_the_code_reads() {
    let doc = template();
    for (source, variable) in pipeline::config::PartnerDeliveries::SWITCHES {
        let parameter = global_parameter(&doc, variable);
        let declared = &doc["Parameters"][parameter.as_str()];
        assert_eq!(
            declared["Default"].as_str(),
            Some("true"),
            "{source}: on by default"
        );
        assert_eq!(
            strings(&declared["AllowedValues"]),
            ["true", "false"],
            "{source}: {parameter}"
        );
    }
}

#[test]
fn the_partner_url_says_it_is_needed_and_where_deliveries_wait_without_it() {
    let doc = template();
    let parameter = global_parameter(&doc, "DOWNSTREAM_URL");
    let description = doc["Parameters"][parameter.as_str()]["Description"]
        .as_str()
        .expect("a description");
    for needed in [
        "REQUIRED",
        "dead-letter queue",
        "revel-ops dlq redrive",
        "DownstreamNotConfiguredAlarm",
    ] {
        assert!(
            description.contains(needed),
            "{parameter}: says nothing of {needed:?}: {description}"
        );
    }
    assert!(
        doc["Resources"]
            .get("DownstreamNotConfiguredAlarm")
            .is_some(),
        "the alarm it names exists"
    );
}
