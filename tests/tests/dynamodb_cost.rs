//! What each sample event costs, counted on the wire: the real receiver and
//! the real stream processor talk to the local endpoint through a recording
//! proxy (`lambda_sandbox::Proxy`) that records every request (SDK retries
//! included) with its start, end and body, so a request's count, its operation, the longest chain of
//! requests made one after another (sequential round trips) and the items
//! sent are all seen as AWS would see them.
//!
//! Write units are computed from the bytes on the wire by DynamoDB's sizing
//! rules (attribute names plus values, 1 WCU per started KB; a refused
//! conditional put is charged like the put, for the larger of the stored
//! and the sent item; an update for the item it leaves). moto can't be
//! asked: it answers `ReturnConsumedCapacity` with a flat 1.0 per PutItem
//! whatever the item's size, nothing for UpdateItem, and nothing at all
//! with a refused conditional put.
//!
//! Asserted is only what the design guarantees: an answer costs exactly one
//! request, the conditional put, in one round trip, new or repeated; a
//! duplicate changes nothing in the table and gives the processor nothing;
//! the processor writes a new event's entity once, sends at most one job,
//! and makes no other request. `make bench-dynamodb` prints the table.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use integration_tests::*;
use local_stack::events::samples;
use serde_json::Value;
use vendors::functions::Kind;
use vendors::revel::RevelEventType;

/// DynamoDB's size of one attribute value in wire JSON.
fn value_size(value: &Value) -> usize {
    let (kind, inner) = value
        .as_object()
        .and_then(|o| o.iter().next())
        .expect("an attribute value");
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => {
            let digits = inner
                .as_str()
                .unwrap_or_default()
                .trim_start_matches('-')
                .trim_start_matches('0')
                .replace('.', "");
            digits.len().div_ceil(2) + 1
        }
        "B" => base64::engine::general_purpose::STANDARD
            .decode(inner.as_str().unwrap_or_default())
            .map_or(0, |b| b.len()),
        "BOOL" | "NULL" => 1,
        "M" => {
            3 + inner.as_object().map_or(0, |m| {
                m.iter().map(|(k, v)| k.len() + value_size(v) + 1).sum()
            })
        }
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |l| l.iter().map(|v| value_size(v) + 1).sum())
        }
        "SS" | "NS" | "BS" => inner.as_array().map_or(0, |l| {
            l.iter().map(|v| v.as_str().map_or(0, str::len)).sum()
        }),
        other => panic!("unknown attribute type {other}"),
    }
}

fn item_size(item: &Value) -> usize {
    item.as_object()
        .map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v)).sum())
}

fn wcu(bytes: usize) -> usize {
    bytes.div_ceil(1024).max(1)
}

/// A stored item as wire JSON, to size it like DynamoDB does.
fn wire(item: &HashMap<String, AttributeValue>) -> Value {
    fn one(value: &AttributeValue) -> Value {
        match value {
            AttributeValue::S(s) => serde_json::json!({ "S": s }),
            AttributeValue::N(n) => serde_json::json!({ "N": n }),
            AttributeValue::B(b) => serde_json::json!({
                "B": base64::engine::general_purpose::STANDARD.encode(b.as_ref())
            }),
            AttributeValue::Bool(b) => serde_json::json!({ "BOOL": b }),
            AttributeValue::Null(_) => serde_json::json!({ "NULL": true }),
            AttributeValue::M(m) => {
                serde_json::json!({ "M": m.iter().map(|(k, v)| (k.clone(), one(v))).collect::<serde_json::Map<_, _>>() })
            }
            AttributeValue::L(l) => {
                serde_json::json!({ "L": l.iter().map(one).collect::<Vec<_>>() })
            }
            other => panic!("unexpected attribute {other:?}"),
        }
    }
    Value::Object(item.iter().map(|(k, v)| (k.clone(), one(v))).collect())
}

/// What one answer cost.
#[derive(Debug)]
struct Answer {
    status: String,
    requests: usize,
    round_trips: usize,
    /// The put's charge: its item, or (refused) the larger of it and the stored one.
    put_wcu: usize,
    /// Items the events table gained or that changed.
    items_written: usize,
}

/// What the processor did with what one answer stored.
#[derive(Debug, Default)]
struct Processing {
    entity_writes: usize,
    entity_wcu: usize,
    sends: usize,
    /// Jobs the queue gained: a send SQS FIFO deduplicated gains none.
    queued: usize,
}

struct Measured {
    sample: String,
    body_bytes: usize,
    new: Answer,
    new_processing: Processing,
    repeat: Answer,
    repeat_processing: Processing,
}

fn put_item(calls: &[Call]) -> Value {
    calls
        .iter()
        .find(|c| c.name() == "PutItem")
        .map(|c| c.json()["Item"].clone())
        .expect("the record's put")
}

/// Delivers `event` and measures the answer against the table before and after.
async fn answer(
    stack: &Stack,
    counted: &CountedReceivers,
    receiver: &pipeline::receive::Receiver,
    event: &str,
) -> (Value, Answer) {
    let before = stack.events().await;
    let request = integration_tests::api_gateway_event(event).expect("an API Gateway event");
    let (status, answer, calls) = counted.deliver(receiver, request).await;
    let after = stack.events().await;
    let sent = put_item(&calls);
    let key = sent["event_key"]["S"].as_str().unwrap_or_default();
    let stored = before
        .iter()
        .find(|item| text(item, "event_key") == key)
        .map_or(0, |item| item_size(&wire(item)));
    let items_written = after.iter().filter(|item| !before.contains(item)).count();
    let cost = Answer {
        status: format!("{status} {}", answer["status"].as_str().unwrap_or("?")),
        requests: calls.len(),
        round_trips: sequential_round_trips(&calls),
        put_wcu: wcu(item_size(&sent).max(stored)),
        items_written,
    };
    (answer, cost)
}

/// Hands the stream to the processor on the counted clients and measures
/// what it asked of AWS.
async fn process(
    stack: &Stack,
    counted: &CountedReceivers,
    processor: &pipeline::process::Processor,
) -> Processing {
    counted.proxy.log().clear();
    let jobs_before = stack.jobs_waiting().await;
    stack.settle_with(processor, 5).await;
    let calls = counted.proxy.log().take();
    let mut processing = Processing::default();
    for call in &calls {
        match call.name() {
            "UpdateItem" => {
                let body = call.json();
                assert_eq!(
                    body["TableName"].as_str(),
                    Some(stack.config.entities_table.as_str())
                );
                let key = body["Key"]["entity_key"]["S"]
                    .as_str()
                    .expect("an entity key");
                let entity = stack.entity(key).await.expect("the entity it wrote");
                processing.entity_writes += 1;
                processing.entity_wcu += wcu(item_size(&wire(&entity)));
            }
            "SendMessage" => processing.sends += 1,
            other => panic!("the processor should not call {other}: {calls:?}"),
        }
    }
    processing.queued = stack.jobs_waiting().await - jobs_before;
    processing
}

/// Bodies with nothing that tells a repeat from a new change.
fn repeat_is_its_own_event(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Revel(RevelEventType::StockChanged | RevelEventType::MenuUpdated)
    )
}

async fn measure_all() -> Vec<Measured> {
    let stack = Stack::new().await;
    let counted = stack.counted_receivers().await;
    let processor = shared::function::processor(&stack.config, &counted.clients);
    let mut measured = Vec::new();
    for sample in samples() {
        if sample.payload == "ping.json" {
            continue;
        }
        let event = sample_event(&sample);
        let receiver = counted.receiver_for(sample.kind.function().logical_id);

        let (first, new) = answer(&stack, &counted, &receiver, &event).await;
        assert_eq!(new.status, "200 accepted", "{}", sample.output);
        let new_processing = process(&stack, &counted, &processor).await;

        let (again, repeat) = answer(&stack, &counted, &receiver, &event).await;
        let repeat_processing = process(&stack, &counted, &processor).await;
        if repeat_is_its_own_event(sample.kind) {
            assert_eq!(repeat.status, "200 accepted", "{}", sample.output);
            assert_ne!(event_id(&again), event_id(&first));
            let entity = stack
                .entity(&text(
                    &stack.event(&event_id(&again)).await.expect("stored"),
                    "entity_key",
                ))
                .await
                .expect("its entity");
            assert_eq!(
                text(&entity, "revision"),
                "1",
                "{}: collapsed",
                sample.output
            );
        } else {
            assert_eq!(repeat.status, "200 duplicate", "{}", sample.output);
            assert_eq!(
                repeat.items_written, 0,
                "{}: a duplicate writes nothing",
                sample.output
            );
            assert_eq!(
                (repeat_processing.entity_writes, repeat_processing.sends),
                (0, 0),
                "{}: the stream holds nothing new",
                sample.output
            );
        }
        measured.push(Measured {
            sample: sample.output.trim_end_matches(".json").to_owned(),
            body_bytes: serde_json::from_str::<Value>(&event).unwrap()["body"]
                .as_str()
                .map_or(0, str::len),
            new,
            new_processing,
            repeat,
            repeat_processing,
        });
    }
    measured
}

#[tokio::test]
async fn every_sample_is_answered_with_one_put_in_one_round_trip_and_each_entity_it_names_is_written_once(
) {
    let measured = measure_all().await;
    println!("| sample | body | new: requests | new: round trips | new: put WCU | processor: entity writes | processor: entity WCU | processor: SQS sends (jobs queued) | repeat: answer | repeat: requests | repeat: round trips | repeat: put WCU | repeat: items written | processor after the repeat: entity writes / SQS sends |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for m in &measured {
        println!(
            "| {} | {} B | {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} / {} |",
            m.sample,
            m.body_bytes,
            m.new.requests,
            m.new.round_trips,
            m.new.put_wcu,
            m.new_processing.entity_writes,
            m.new_processing.entity_wcu,
            m.new_processing.sends,
            m.new_processing.queued,
            m.repeat.status,
            m.repeat.requests,
            m.repeat.round_trips,
            m.repeat.put_wcu,
            m.repeat.items_written,
            m.repeat_processing.entity_writes,
            m.repeat_processing.sends,
        );
    }
    assert_eq!(
        measured.len(),
        samples().len() - 1,
        "every sample but the ping"
    );
    for m in &measured {
        for (what, cost) in [("new", &m.new), ("repeat", &m.repeat)] {
            assert_eq!(
                (cost.requests, cost.round_trips),
                (1, 1),
                "{} {what}: one request, one round trip",
                m.sample
            );
        }
        assert_eq!(m.new.items_written, 1, "{}: one record", m.sample);
        // The order also keeps the rewards card it used (gift_reward_data)
        // and queues that card's delivery and its stock changes' job.
        let (entities, follow_ups) = if m.sample == "revel-order-finalized" {
            (2, 3)
        } else {
            (1, 1)
        };
        assert_eq!(
            m.new_processing.entity_writes, entities,
            "{}: the processor writes each entity once",
            m.sample
        );
        assert!(
            m.new_processing.queued <= m.new_processing.sends
                && m.new_processing.sends <= follow_ups,
            "{}: at most {follow_ups} follow-up(s)",
            m.sample
        );
    }
}
