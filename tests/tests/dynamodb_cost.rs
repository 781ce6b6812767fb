//! What each sample event costs in DynamoDB writes, counted on the wire: an
//! SDK interceptor records every write request the real receiver sends to
//! the local endpoint, and write units are computed from the items by
//! DynamoDB's own rules (1 WCU per started KB of the item; an update is
//! charged for the whole item, the larger of before and after; a refused
//! conditional put is charged like the put).
//!
//! Budgets (issue 5): a duplicate costs one write request and nothing beyond
//! what DynamoDB charges for the refused conditional put; a new order costs
//! no more write units than its compressed archive record plus its entity
//! kept as plain JSON. Every new event also pays the `done` mark after the
//! answer (an update, charged for the whole record): the test holds every
//! sample to archive + plain entity + that mark, and the order to the budget
//! itself (large entity states are stored compressed, which pays for it).
//!
//! `make bench-dynamodb` prints the table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use integration_tests::*;
use local_stack::events::{default_dir, resign, samples};
use serde_json::Value;
use shared::function::{AllSources, Clients};

/// One DynamoDB write as sent: its operation, table and key or item.
#[derive(Debug, Clone)]
struct Write {
    operation: String,
    table: String,
    /// The item of a PutItem, or the key of an UpdateItem, in wire JSON.
    item: Value,
}

#[derive(Debug, Default, Clone)]
struct WriteLog(Arc<Mutex<Vec<Write>>>);

impl WriteLog {
    fn take(&self) -> Vec<Write> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

impl Intercept for WriteLog {
    fn name(&self) -> &'static str {
        "WriteLog"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request();
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.split('.').nth(1))
            .unwrap_or_default()
            .to_owned();
        if !matches!(
            operation.as_str(),
            "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems"
        ) {
            return Ok(());
        }
        let body: Value = request
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        let item = body
            .get("Item")
            .or(body.get("Key"))
            .cloned()
            .unwrap_or_default();
        self.0.lock().unwrap().push(Write {
            operation,
            table: body["TableName"].as_str().unwrap_or_default().to_owned(),
            item,
        });
        Ok(())
    }
}

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

/// The stored item as wire JSON, to size it like DynamoDB does.
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

/// The cost of one delivery: write requests and write units.
#[derive(Debug, Default, Clone, Copy)]
struct Cost {
    requests: usize,
    units: usize,
}

struct Measured {
    sample: String,
    body_bytes: usize,
    new: Cost,
    duplicate: Cost,
    /// The refused conditional put's own charge.
    refused_put: usize,
    /// Compressed archive record plus the entity kept as plain JSON.
    budget: usize,
}

/// Charges `writes`: puts by their item, updates by the stored item now
/// (for these writes, the larger of before and after).
async fn charge(stack: &Stack, writes: &[Write]) -> Cost {
    let mut units = 0;
    for write in writes {
        units += match write.operation.as_str() {
            "PutItem" => wcu(item_size(&write.item)),
            "UpdateItem" => {
                let (key_name, key) = write
                    .item
                    .as_object()
                    .and_then(|k| k.iter().next())
                    .map(|(name, value)| {
                        (
                            name.clone(),
                            value["S"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .expect("an update key");
                let stored = aws_sdk_dynamodb::Client::new(&stack.sdk)
                    .get_item()
                    .table_name(&write.table)
                    .key(key_name, AttributeValue::S(key))
                    .consistent_read(true)
                    .send()
                    .await
                    .expect("read back")
                    .item
                    .expect("updated item exists");
                wcu(item_size(&wire(&stored)))
            }
            other => panic!("the receivers should not call {other}"),
        };
    }
    Cost {
        requests: writes.len(),
        units,
    }
}

/// The entity of a new event as it would be with its state as plain JSON.
fn plain_entity_units(entities: &[HashMap<String, AttributeValue>]) -> usize {
    entities
        .iter()
        .map(|entity| {
            let mut plain = wire(entity);
            let state = shared::store::dynamodb::entity_state(entity).expect("state");
            let object = plain.as_object_mut().expect("item");
            object.remove("state_gz");
            object.insert("state".into(), serde_json::json!({ "S": state }));
            wcu(item_size(&plain))
        })
        .sum()
}

async fn measure_all() -> Vec<Measured> {
    let stack = Stack::new().await;
    let log = WriteLog::default();
    let counted = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&stack.sdk)
            .interceptor(log.clone())
            .build(),
    );
    let base = stack.clients();
    let clients = Clients {
        events: counted.clone(),
        entities: counted,
        ..base
    };
    let sources = AllSources::new(&stack.config, &clients).expect("sources");
    let mut measured = Vec::new();
    for sample in samples() {
        if sample.output.contains("ping") {
            continue;
        }
        let raw = std::fs::read_to_string(default_dir().join(&sample.output)).expect("event file");
        let event = resign(serde_json::from_str(&raw).expect("event json")).to_string();
        let receiver = sources
            .receiver_for(sample.target.logical_id(), &stack.config, &clients)
            .expect("receiver");
        let entities_before = stack.entities().await.len();

        let request = || lambda_http::request::from_str(&event).expect("API Gateway event");
        let (status, answer) = deliver(&receiver, request()).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("accepted")),
            "{}",
            sample.output
        );
        let new_writes = log.take();
        let (status, answer) = deliver(&receiver, request()).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("duplicate")),
            "{}",
            sample.output
        );
        let duplicate_writes = log.take();

        let archive_put = new_writes
            .iter()
            .find(|w| w.operation == "PutItem")
            .expect("the archive put");
        let archive_units = wcu(item_size(&archive_put.item));
        let entities = stack.entities().await;
        let new_entities: Vec<_> = entities
            .into_iter()
            .filter(|e| {
                new_writes.iter().any(|w| {
                    w.operation == "UpdateItem"
                        && w.item["entity_key"]["S"] == text(e, "entity_key").as_str()
                })
            })
            .collect();
        assert!(stack.entities().await.len() >= entities_before);
        measured.push(Measured {
            sample: sample.output.trim_end_matches(".json").to_owned(),
            body_bytes: serde_json::from_str::<Value>(&event).unwrap()["body"]
                .as_str()
                .map_or(0, str::len),
            new: charge(&stack, &new_writes).await,
            duplicate: charge(&stack, &duplicate_writes).await,
            refused_put: archive_units,
            budget: archive_units + plain_entity_units(&new_entities),
        });
    }
    measured
}

#[tokio::test]
async fn every_sample_stays_within_its_dynamodb_write_budget_new_and_repeated() {
    let measured = measure_all().await;
    println!("| sample | body | new: requests | new: WCU | budget WCU | duplicate: requests | duplicate: WCU | refused put WCU |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for m in &measured {
        println!(
            "| {} | {} B | {} | {} | {} | {} | {} | {} |",
            m.sample,
            m.body_bytes,
            m.new.requests,
            m.new.units,
            m.budget,
            m.duplicate.requests,
            m.duplicate.units,
            m.refused_put
        );
    }
    assert_eq!(
        measured.len(),
        samples().len() - 1,
        "every sample but the ping"
    );
    let order = measured
        .iter()
        .find(|m| m.sample == "revel-order-finalized")
        .expect("the order sample");
    assert!(
        order.new.units <= order.budget,
        "a new order costs {} WCU, budget {}",
        order.new.units,
        order.budget
    );
    for m in &measured {
        assert_eq!(
            m.duplicate.requests, 1,
            "{}: a duplicate is one write",
            m.sample
        );
        assert_eq!(
            m.duplicate.units, m.refused_put,
            "{}: a duplicate costs only the refused put",
            m.sample
        );
        assert!(
            m.new.units <= m.budget + m.refused_put,
            "{}: a new event costs {} WCU, budget {} plus the done mark {}",
            m.sample,
            m.new.units,
            m.budget,
            m.refused_put
        );
    }
}
