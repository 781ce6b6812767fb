//! The partner's contract, `docs/asyncapi.yaml`: well-formed AsyncAPI 3
//! (operations, channels and messages reference each other, every message
//! has a schema for its headers and its payload), a channel for every route
//! of the table of functions and a message for every kind the bundle
//! delivers, and every sample in events/ one of its route's messages. The
//! deliveries the integration tests capture and the partner's requests they
//! send are checked where they are captured and sent
//! (`integration_tests::contract`).

use std::collections::BTreeSet;

use integration_tests::contract::{self, contract, DELIVERY_CHANNEL};
use serde_json::{json, Value};
use vendors::functions;

fn document() -> &'static Value {
    contract().document()
}

/// The object a local `$ref` (`#/a/b`) points at.
fn resolve(reference: &Value) -> Option<&'static Value> {
    let pointer = reference["$ref"].as_str()?.strip_prefix('#')?;
    document().pointer(pointer)
}

fn object(value: &Value) -> &serde_json::Map<String, Value> {
    value.as_object().expect("an object")
}

/// Every `$ref` anywhere under `value`.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                found.push(reference.clone());
            }
            map.values().for_each(|v| references(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, found)),
        _ => {}
    }
}

#[test]
fn the_document_is_asyncapi_3_and_every_reference_in_it_resolves_inside_it() {
    assert_eq!(document()["asyncapi"], "3.0.0");
    assert!(document()["info"]["title"].is_string() && document()["info"]["version"].is_string());
    let mut found = Vec::new();
    references(document(), &mut found);
    assert!(found.len() > 100, "{} references", found.len());
    for reference in found {
        assert!(
            reference.starts_with("#/")
                && document()
                    .pointer(reference.trim_start_matches('#'))
                    .is_some(),
            "{reference} does not resolve in the document"
        );
    }
}

#[test]
fn every_operation_names_a_channel_and_only_messages_of_that_channel_and_every_channel_has_an_operation(
) {
    let channels = object(&document()["channels"]);
    let mut operated = BTreeSet::new();
    for (name, operation) in object(&document()["operations"]) {
        assert!(
            ["send", "receive"].contains(&operation["action"].as_str().unwrap_or_default()),
            "{name}: action"
        );
        let channel_ref = operation["channel"]["$ref"].as_str().unwrap_or_default();
        let channel = channel_ref
            .strip_prefix("#/channels/")
            .unwrap_or_else(|| panic!("{name}: its channel is not a #/channels/ reference"));
        assert!(
            channels.contains_key(channel),
            "{name}: no channel {channel}"
        );
        operated.insert(channel.to_owned());
        let messages = operation["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no messages"));
        assert!(!messages.is_empty(), "{name}: no messages");
        for message in messages {
            let reference = message["$ref"].as_str().unwrap_or_default();
            assert!(
                reference.starts_with(&format!("#/channels/{channel}/messages/"))
                    && resolve(message).is_some(),
                "{name}: {reference} is not a message of its channel {channel}"
            );
        }
    }
    let all: BTreeSet<String> = channels.keys().cloned().collect();
    assert_eq!(operated, all, "channels without an operation");
}

#[test]
fn every_channel_declares_the_parameters_of_its_address_and_carries_component_messages() {
    for (name, channel) in object(&document()["channels"]) {
        let address = &channel["address"];
        assert!(address.is_string() || address.is_null(), "{name}: address");
        let in_address: BTreeSet<String> = address
            .as_str()
            .unwrap_or_default()
            .split('/')
            .filter_map(|p| p.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        let declared: BTreeSet<String> = channel["parameters"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(declared, in_address, "{name}: parameters");
        for parameter in channel["parameters"].as_object().into_iter().flatten() {
            assert!(resolve(parameter.1).is_some(), "{name}: {}", parameter.0);
        }
        let messages = object(&channel["messages"]);
        assert!(!messages.is_empty(), "{name}: no messages");
        for (key, message) in messages {
            let reference = message["$ref"].as_str().unwrap_or_default();
            assert!(
                reference.starts_with("#/components/messages/") && resolve(message).is_some(),
                "{name}: message {key} is not a component message"
            );
        }
        for server in channel["servers"].as_array().into_iter().flatten() {
            assert!(
                server["$ref"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("#/servers/"))
                    && resolve(server).is_some(),
                "{name}: server"
            );
        }
    }
}

#[test]
fn every_message_has_a_schema_for_its_headers_and_its_payload_and_each_compiles() {
    let messages = object(&document()["components"]["messages"]);
    assert!(!messages.is_empty());
    for (name, message) in messages {
        for part in ["headers", "payload"] {
            assert!(
                message[part].is_object(),
                "message {name} has no {part} schema"
            );
        }
        assert!(message["name"].is_string(), "message {name} has no name");
    }
    // Compiled by loading: a schema that does not compile fails here.
    contract::Contract::load().unwrap();
}

#[test]
fn every_route_of_the_table_of_functions_has_its_channel_and_every_received_channel_is_a_route() {
    let routes: BTreeSet<&str> = functions::all()
        .flat_map(|function| function.routes.iter().copied())
        .collect();
    let received: BTreeSet<&str> = object(&document()["operations"])
        .values()
        .filter(|operation| operation["action"] == "receive")
        .filter_map(|operation| resolve(&operation["channel"]))
        .filter_map(|channel| channel["address"].as_str())
        .collect();
    assert_eq!(received, routes);
    for route in routes {
        assert!(contract().channel_at(route).is_some(), "{route}");
    }
}

#[test]
fn every_kind_the_bundle_delivers_has_its_message_on_the_partners_channel() {
    let types: BTreeSet<String> = contract()
        .messages_of(DELIVERY_CHANNEL)
        .iter()
        .map(|name| {
            let message = &document()["components"]["messages"][name];
            message["name"].as_str().unwrap().to_owned()
        })
        .collect();
    let changed = |source: &str, kinds: Vec<&str>| -> Vec<String> {
        kinds
            .into_iter()
            .map(|kind| format!("{source}.{kind}.changed"))
            .collect()
    };
    // The menu is never delivered: menu.updated asks for a catalog pull.
    let menu = vendors::revel::Entity::Menu.kind();
    let mut expected: BTreeSet<String> = changed(
        "revel",
        vendors::revel::Entity::ALL
            .iter()
            .map(|e| e.kind())
            .filter(|k| *k != menu)
            .map(|k| k.as_str())
            .collect(),
    )
    .into_iter()
    .collect();
    expected.extend(changed(
        "winesitting",
        vendors::winesitting::Entity::ALL
            .iter()
            .map(|e| e.kind().as_str())
            .collect(),
    ));
    expected.extend(changed(
        "booking",
        vendors::booking::Entity::ALL
            .iter()
            .map(|e| e.kind().as_str())
            .collect(),
    ));
    expected.insert(format!("revel.{}.sold", "inventory"));
    assert_eq!(types, expected);
}

#[test]
fn every_sample_request_in_events_is_a_message_of_its_routes_channel() {
    let dir = integration_tests::workspace_root().join("events");
    let mut checked = BTreeSet::new();
    let mut not_requests = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let event: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if event.get("routeKey").is_none() {
            not_requests.insert(name);
            continue;
        }
        if let Err(why) = contract().check_request(&event) {
            panic!("events/{name}: {why}");
        }
        checked.insert(name);
    }
    let samples: BTreeSet<String> = local_stack::events::samples()
        .into_iter()
        .map(|sample| sample.output)
        .collect();
    assert_eq!(checked, samples, "every sample request, and only those");
    assert_eq!(
        not_requests,
        [
            "events-processor.json",
            "jobs-worker.json",
            "revel-scheduler.json"
        ]
        .map(str::to_owned)
        .into(),
        "the inputs of the functions API Gateway doesn't call"
    );
}

/// The sample of `output` (`revel-order-finalized.json`) as events/ holds it.
fn sample(output: &str) -> Value {
    let path = integration_tests::workspace_root()
        .join("events")
        .join(output);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `event` with its body changed by `change`.
fn with_body(mut event: Value, change: impl FnOnce(&mut Value)) -> Value {
    let mut body: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
    change(&mut body);
    event["body"] = Value::String(body.to_string());
    event
}

#[test]
fn a_request_the_contract_does_not_describe_is_refused_with_what_is_wrong() {
    let order = sample("revel-order-finalized.json");
    assert_eq!(
        contract().check_request(&order).unwrap(),
        "revelOrderFinalized"
    );
    assert_eq!(
        contract()
            .check_request(&sample("revel-ping.json"))
            .unwrap(),
        "revelPing"
    );
    let without_uuid = with_body(order.clone(), |body| {
        body["orderInfo"].as_object_mut().unwrap().remove("uuid");
    });
    let why = contract().check_request(&without_uuid).unwrap_err();
    assert!(why.contains("uuid"), "{why}");

    let mut unsigned = sample("vinesos-customer-created.json");
    unsigned["headers"]
        .as_object_mut()
        .unwrap()
        .remove("webhook-signature");
    let why = contract().check_request(&unsigned).unwrap_err();
    assert!(why.contains("webhook-signature"), "{why}");

    let wrong_type = with_body(sample("vinesos-member-updated.json"), |body| {
        body["type"] = json!("customer.created");
    });
    assert!(contract().check_request(&wrong_type).is_err());

    let putaway_update = with_body(sample("winesitting-webhook.json"), |body| {
        body["type"] = json!("PUTAWAY");
    });
    assert!(contract().check_request(&putaway_update).is_err());

    let mut elsewhere = sample("revel-menu-updated.json");
    elsewhere["routeKey"] = json!("POST /revel/nowhere");
    let why = contract().check_request(&elsewhere).unwrap_err();
    assert!(why.contains("/revel/nowhere"), "{why}");
}

/// A delivery as the jobs worker sends one: a customer's new revision.
fn delivery() -> (http::HeaderMap, Value) {
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("content-type", "application/json"),
        ("webhook-id", "msg_0123456789abcdef0123456789abcdef"),
        ("webhook-timestamp", "1795521600"),
        (
            "webhook-signature",
            "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
        ),
    ] {
        headers.insert(name, value.parse().unwrap());
    }
    let body = json!({
        "type": "revel.customer.changed",
        "timestamp": "2026-11-24T12:00:00Z",
        "data": {"source": "revel", "instance": "demo", "kind": "customer", "id": "c-1",
                 "version": 1_795_521_600_000_000_i64, "revision": 1,
                 "event_key": "revel:demo:customer.created:biz:c-1@1",
                 "state": {"uuid": "c-1", "updated_date": "2026-11-24T11:59:00"}}
    });
    (headers, body)
}

#[test]
fn a_delivery_the_contract_does_not_describe_is_refused_with_what_is_wrong() {
    let check = |headers: &http::HeaderMap, body: &Value| {
        contract().check_delivery(headers, body.to_string().as_bytes())
    };
    let (headers, body) = delivery();
    assert_eq!(check(&headers, &body).unwrap(), "revelCustomerChanged");

    let mut extra = body.clone();
    extra["data"]["priority"] = json!(1);
    let why = check(&headers, &extra).unwrap_err();
    assert!(why.contains("priority"), "{why}");

    let mut unknown = body.clone();
    unknown["type"] = json!("revel.menu.changed");
    unknown["data"]["kind"] = json!("menu");
    assert!(check(&headers, &unknown).is_err());

    let mut stateless = body.clone();
    stateless["data"]["state"] = json!({"uuid": "c-1"});
    let why = check(&headers, &stateless).unwrap_err();
    assert!(why.contains("updated_date"), "{why}");

    let mut unsigned = headers.clone();
    unsigned.remove("webhook-signature");
    let why = check(&unsigned, &body).unwrap_err();
    assert!(why.contains("webhook-signature"), "{why}");
}
