//! DynamoDB (JSON 1.0): CreateTable, DescribeTable, UpdateTimeToLive,
//! PutItem, GetItem, UpdateItem, DeleteItem, on tables whose key schema
//! decides an item's identity, with condition expressions honoured and
//! capacity units counted as on-demand bills them.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::expression::{self, Bindings};
use super::value::{self, Item};
use super::{Fault, ACCOUNT, REGION};

/// DynamoDB's largest item.
const MAX_ITEM_BYTES: usize = 400 * 1024;

/// Read and write request units consumed, as on-demand bills them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    pub read: f64,
    pub write: f64,
}

struct Table {
    description: Map<String, Value>,
    /// Key attribute names: the hash key, then the range key if any.
    key: Vec<String>,
    /// Each key attribute's type (`S`, `N` or `B`).
    key_types: BTreeMap<String, String>,
    items: HashMap<String, Item>,
}

#[derive(Default)]
pub(super) struct Dynamo {
    tables: BTreeMap<String, Table>,
    pub(super) units: Units,
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn text<'a>(request: &'a Value, field: &str) -> Option<&'a str> {
    request.get(field).and_then(Value::as_str)
}

fn required<'a>(request: &'a Value, field: &str) -> Result<&'a str, Fault> {
    text(request, field).ok_or_else(|| {
        Fault::validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(field)
        ))
    })
}

fn lower_first(field: &str) -> String {
    let mut chars = field.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_ascii_lowercase().to_string() + chars.as_str()
    })
}

fn not_found() -> Fault {
    Fault::new(
        "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
        "Requested resource not found",
    )
}

/// Refuses the legacy parameters the stand-in does not implement.
fn no_legacy(request: &Value, operation: &str) -> Result<(), Fault> {
    for legacy in [
        "Expected",
        "ConditionalOperator",
        "AttributeUpdates",
        "AttributesToGet",
    ] {
        if request.get(legacy).is_some() {
            return Err(Fault::unsupported(format!("{operation} with {legacy}")));
        }
    }
    Ok(())
}

/// Units for `bytes` read or written: writes per 1 KB, reads per 4 KB
/// (half for an eventually consistent read), at least one of each.
fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

fn read_units(bytes: usize, consistent: bool) -> f64 {
    let units = bytes.div_ceil(4096).max(1) as f64;
    if consistent {
        units
    } else {
        units / 2.0
    }
}

impl Table {
    fn new(request: &Value, name: &str) -> Result<Self, Fault> {
        let schema = request
            .get("KeySchema")
            .and_then(Value::as_array)
            .ok_or_else(|| Fault::validation("1 validation error detected: Value null at 'keySchema' failed to satisfy constraint: Member must not be null"))?;
        let definitions: BTreeMap<String, String> = request
            .get("AttributeDefinitions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| {
                Some((
                    text(d, "AttributeName")?.to_owned(),
                    text(d, "AttributeType")?.to_owned(),
                ))
            })
            .collect();
        let mut key = Vec::new();
        for (i, element) in schema.iter().enumerate() {
            let (name, kind) = (text(element, "AttributeName"), text(element, "KeyType"));
            match (i, name, kind) {
                (0, Some(name), Some("HASH")) | (1, Some(name), Some("RANGE")) => {
                    key.push(name.to_owned())
                }
                _ => return Err(Fault::validation("Invalid KeySchema: The first KeySchemaElement is not a HASH key type, or the second is not a RANGE key type")),
            }
        }
        if key.is_empty() || key.len() > 2 {
            return Err(Fault::validation(
                "1 validation error detected: Value at 'keySchema' failed to satisfy constraint: Member must have length less than or equal to 2",
            ));
        }
        for index in ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"] {
            if request.get(index).is_some() {
                return Err(Fault::unsupported(format!("CreateTable with {index}")));
            }
        }
        if definitions.len() != key.len() || key.iter().any(|k| !definitions.contains_key(k)) {
            return Err(Fault::validation(
                "One or more parameter values were invalid: Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions",
            ));
        }
        if let Some((name, kind)) = definitions
            .iter()
            .find(|(_, t)| !matches!(t.as_str(), "S" | "N" | "B"))
        {
            return Err(Fault::validation(format!(
                "1 validation error detected: Value '{kind}' at 'attributeDefinitions' for {name} failed to satisfy constraint: Member must satisfy enum value set: [B, N, S]"
            )));
        }
        let arn = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}");
        let mut description = Map::new();
        description.insert("TableName".into(), json!(name));
        description.insert("TableArn".into(), json!(arn));
        description.insert("TableId".into(), json!(uuid::Uuid::new_v4().to_string()));
        description.insert("TableStatus".into(), json!("ACTIVE"));
        description.insert("KeySchema".into(), json!(schema));
        description.insert(
            "AttributeDefinitions".into(),
            request["AttributeDefinitions"].clone(),
        );
        description.insert("CreationDateTime".into(), json!(now_seconds()));
        description.insert("ItemCount".into(), json!(0));
        description.insert("TableSizeBytes".into(), json!(0));
        let billing = text(request, "BillingMode").unwrap_or("PROVISIONED");
        description.insert(
            "BillingModeSummary".into(),
            json!({"BillingMode": billing, "LastUpdateToPayPerRequestDateTime": now_seconds()}),
        );
        let units = if billing == "PAY_PER_REQUEST" {
            json!({"NumberOfDecreasesToday": 0, "ReadCapacityUnits": 0, "WriteCapacityUnits": 0})
        } else {
            let p = &request["ProvisionedThroughput"];
            json!({"NumberOfDecreasesToday": 0, "ReadCapacityUnits": p["ReadCapacityUnits"], "WriteCapacityUnits": p["WriteCapacityUnits"]})
        };
        description.insert("ProvisionedThroughput".into(), units);
        if let Some(stream) = request.get("StreamSpecification") {
            if stream.get("StreamEnabled").and_then(Value::as_bool) == Some(true) {
                // A stream's ARN for the environment; the stream itself
                // (DynamoDB Streams' API) is not served.
                let label = time_label();
                description.insert("StreamSpecification".into(), stream.clone());
                description.insert("LatestStreamLabel".into(), json!(label));
                description.insert(
                    "LatestStreamArn".into(),
                    json!(format!("{arn}/stream/{label}")),
                );
            }
        }
        Ok(Self {
            description,
            key_types: key
                .iter()
                .map(|k| (k.clone(), definitions[k].clone()))
                .collect(),
            key,
            items: HashMap::new(),
        })
    }

    fn describe(&self) -> Value {
        let mut description = self.description.clone();
        description.insert("ItemCount".into(), json!(self.items.len()));
        description.insert(
            "TableSizeBytes".into(),
            json!(self.items.values().map(value::item_size).sum::<usize>()),
        );
        Value::Object(description)
    }

    /// An item's identity: its key attributes' values, checked against
    /// the schema. `whole_item`: `item` is an item (may hold more than the
    /// key), not a `Key`.
    fn identity(&self, item: &Item, whole_item: bool) -> Result<String, Fault> {
        if !whole_item && item.len() != self.key.len() {
            return Err(Fault::validation(
                "The provided key element does not match the schema",
            ));
        }
        let mut parts = Vec::with_capacity(self.key.len());
        for name in &self.key {
            let Some(value) = item.get(name) else {
                return Err(Fault::validation(if whole_item {
                    format!("One or more parameter values were invalid: Missing the key {name} in the item")
                } else {
                    "The provided key element does not match the schema".to_owned()
                }));
            };
            let (kind, inner) = value::kind(value);
            let expected = &self.key_types[name];
            if kind != expected {
                return Err(Fault::validation(format!(
                    "One or more parameter values were invalid: Type mismatch for key {name} expected: {expected} actual: {kind}"
                )));
            }
            if inner.as_str().is_some_and(str::is_empty) {
                return Err(Fault::validation(format!(
                    "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty {} value. Key: {name}",
                    if kind == "B" { "binary" } else { "string" }
                )));
            }
            parts.push(value.clone());
        }
        Ok(Value::Array(parts).to_string())
    }

    #[cfg(test)]
    fn key_of(&self, item: &Item) -> Item {
        self.key
            .iter()
            .filter_map(|k| Some((k.clone(), item.get(k)?.clone())))
            .collect()
    }
}

/// A stream label: DynamoDB's are the creation time; here its milliseconds.
fn time_label() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{millis}")
}

/// The condition of a request, parsed (or `None` without one).
fn condition_of(
    request: &Value,
    bindings: &mut Bindings,
) -> Result<Option<expression::Condition>, Fault> {
    text(request, "ConditionExpression")
        .map(|text| expression::condition(text, bindings))
        .transpose()
}

fn check_size(item: &Item) -> Result<(), Fault> {
    if value::item_size(item) > MAX_ITEM_BYTES {
        return Err(Fault::validation(
            "Item size has exceeded the maximum allowed size",
        ));
    }
    Ok(())
}

fn item_field(request: &Value, field: &str) -> Result<Item, Fault> {
    let map = request.get(field).and_then(Value::as_object).ok_or_else(|| {
        Fault::validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(field)
        ))
    })?;
    value::checked_item(map)
}

/// `ReturnValues`, of those `allowed`.
fn return_values<'a>(request: &'a Value, allowed: &[&str]) -> Result<&'a str, Fault> {
    let asked = text(request, "ReturnValues").unwrap_or("NONE");
    if allowed.contains(&asked) {
        Ok(asked)
    } else {
        Err(Fault::validation(format!(
            "ReturnValues can only be {} for this operation",
            allowed.join(" or ")
        )))
    }
}

/// Refuses `ExpressionAttributeNames`/`Values` without an expression, as
/// DynamoDB does.
fn bindings_need_expressions(request: &Value, expressions: &[&str]) -> Result<(), Fault> {
    if expressions.iter().any(|e| request.get(*e).is_some()) {
        return Ok(());
    }
    for field in ["ExpressionAttributeNames", "ExpressionAttributeValues"] {
        if request.get(field).is_some() {
            return Err(Fault::validation(format!(
                "{field} can only be specified when using expressions"
            )));
        }
    }
    Ok(())
}

impl Dynamo {
    fn table(&mut self, request: &Value) -> Result<&mut Table, Fault> {
        let name = required(request, "TableName")?;
        self.tables.get_mut(name).ok_or_else(not_found)
    }

    /// The answer to `operation` (the target without `DynamoDB_20120810.`).
    pub(super) fn handle(&mut self, operation: &str, request: &Value) -> Result<Value, Fault> {
        match operation {
            "CreateTable" => self.create_table(request),
            "DescribeTable" => Ok(json!({"Table": self.table(request)?.describe()})),
            "UpdateTimeToLive" => self.update_time_to_live(request),
            "PutItem" => self.put_item(request),
            "GetItem" => self.get_item(request),
            "UpdateItem" => self.update_item(request),
            "DeleteItem" => self.delete_item(request),
            other => Err(Fault::unsupported(format!("DynamoDB_20120810.{other}"))),
        }
    }

    fn create_table(&mut self, request: &Value) -> Result<Value, Fault> {
        let name = required(request, "TableName")?.to_owned();
        if self.tables.contains_key(&name) {
            return Err(Fault::new(
                "com.amazonaws.dynamodb.v20120810#ResourceInUseException",
                format!("Table already exists: {name}"),
            ));
        }
        let table = Table::new(request, &name)?;
        let mut description = table.describe();
        // As the service answers: the table is CREATING (here it is usable at once).
        description["TableStatus"] = json!("CREATING");
        self.tables.insert(name, table);
        Ok(json!({"TableDescription": description}))
    }

    fn update_time_to_live(&mut self, request: &Value) -> Result<Value, Fault> {
        let spec = request
            .get("TimeToLiveSpecification")
            .cloned()
            .ok_or_else(|| Fault::validation("1 validation error detected: Value null at 'timeToLiveSpecification' failed to satisfy constraint: Member must not be null"))?;
        let table = self.table(request)?;
        // Remembered for DescribeTimeToLive's sake; items are not expired
        // (DynamoDB itself deletes expired items only within days).
        table
            .description
            .insert("TimeToLiveSpecification".into(), spec.clone());
        Ok(json!({"TimeToLiveSpecification": spec}))
    }

    fn consumed(request: &Value, table: &str, units: f64) -> Option<Value> {
        match text(request, "ReturnConsumedCapacity") {
            Some("TOTAL") => Some(json!({"TableName": table, "CapacityUnits": units})),
            Some("INDEXES") => Some(
                json!({"TableName": table, "CapacityUnits": units, "Table": {"CapacityUnits": units}}),
            ),
            _ => None,
        }
    }

    fn answer(request: &Value, table: &str, units: f64, mut body: Map<String, Value>) -> Value {
        if let Some(consumed) = Self::consumed(request, table, units) {
            body.insert("ConsumedCapacity".into(), consumed);
        }
        Value::Object(body)
    }

    /// The refusal DynamoDB gives when a condition does not hold, with the
    /// item as it stands when `ReturnValuesOnConditionCheckFailure` is `ALL_OLD`.
    fn condition_failed(request: &Value, old: Option<&Item>) -> Result<Fault, Fault> {
        let mut fault = Fault::new(
            "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
            "The conditional request failed",
        );
        match text(request, "ReturnValuesOnConditionCheckFailure").unwrap_or("NONE") {
            "NONE" => {}
            "ALL_OLD" => {
                if let Some(old) = old {
                    fault.extra.insert("Item".into(), Value::Object(old.clone()));
                }
            }
            other => {
                return Err(Fault::validation(format!(
                    "1 validation error detected: Value '{other}' at 'returnValuesOnConditionCheckFailure' failed to satisfy constraint: Member must satisfy enum value set: [ALL_OLD, NONE]"
                )))
            }
        }
        Ok(fault)
    }

    /// Checks a write's condition against the item as it stands.
    fn check_condition(
        request: &Value,
        condition: Option<&expression::Condition>,
        old: Option<&Item>,
    ) -> Result<(), Fault> {
        match condition {
            Some(c) if !c.holds(old) => Err(Self::condition_failed(request, old)?),
            _ => Ok(()),
        }
    }

    fn put_item(&mut self, request: &Value) -> Result<Value, Fault> {
        no_legacy(request, "PutItem")?;
        bindings_need_expressions(request, &["ConditionExpression"])?;
        let item = item_field(request, "Item")?;
        let returning = return_values(request, &["NONE", "ALL_OLD"])?;
        let mut bindings = Bindings::new(request)?;
        let condition = condition_of(request, &mut bindings)?;
        bindings.all_used()?;
        let table = self.table(request)?;
        let identity = table.identity(&item, true)?;
        check_size(&item)?;
        let name = required(request, "TableName")?.to_owned();
        let table = self.tables.get_mut(&name).ok_or_else(not_found)?;
        let old = table.items.get(&identity);
        // A write is billed on the larger of the item before and after,
        // whether or not its condition held.
        let units = write_units(value::item_size(&item).max(old.map_or(0, value::item_size)));
        self.units.write += units;
        Self::check_condition(request, condition.as_ref(), old)?;
        let old = table.items.insert(identity, item);
        let mut body = Map::new();
        if let (Some(old), "ALL_OLD") = (old, returning) {
            body.insert("Attributes".into(), Value::Object(old));
        }
        Ok(Self::answer(request, &name, units, body))
    }

    fn get_item(&mut self, request: &Value) -> Result<Value, Fault> {
        no_legacy(request, "GetItem")?;
        bindings_need_expressions(request, &["ProjectionExpression"])?;
        let key = item_field(request, "Key")?;
        let mut bindings = Bindings::new(request)?;
        let projection = text(request, "ProjectionExpression")
            .map(|p| expression::projection(p, &mut bindings))
            .transpose()?;
        bindings.all_used()?;
        let consistent = request
            .get("ConsistentRead")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let table = self.table(request)?;
        let identity = table.identity(&key, false)?;
        let item = table.items.get(&identity).cloned();
        let name = required(request, "TableName")?.to_owned();
        let units = read_units(item.as_ref().map_or(0, value::item_size), consistent);
        self.units.read += units;
        let mut body = Map::new();
        if let Some(mut item) = item {
            if let Some(names) = projection {
                item.retain(|k, _| names.contains(k));
            }
            body.insert("Item".into(), Value::Object(item));
        }
        Ok(Self::answer(request, &name, units, body))
    }

    fn update_item(&mut self, request: &Value) -> Result<Value, Fault> {
        no_legacy(request, "UpdateItem")?;
        bindings_need_expressions(request, &["ConditionExpression", "UpdateExpression"])?;
        let key = item_field(request, "Key")?;
        let returning = return_values(
            request,
            &["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"],
        )?;
        let mut bindings = Bindings::new(request)?;
        let update = text(request, "UpdateExpression")
            .map(|u| expression::update(u, &mut bindings))
            .transpose()?;
        let condition = condition_of(request, &mut bindings)?;
        bindings.all_used()?;
        let name = required(request, "TableName")?.to_owned();
        let table = self.tables.get_mut(&name).ok_or_else(not_found)?;
        let identity = table.identity(&key, false)?;
        if let Some(path) = update
            .iter()
            .flat_map(|u| u.paths())
            .find(|p| table.key.contains(p))
        {
            return Err(Fault::validation(format!(
                "One or more parameter values were invalid: Cannot update attribute {path}. This attribute is part of the key"
            )));
        }
        let old = table.items.get(&identity).cloned();
        let before = old.clone().unwrap_or_else(|| key.clone());
        let after = match &update {
            Some(update) => update.apply(&before)?,
            None => before.clone(),
        };
        check_size(&after)?;
        let units =
            write_units(value::item_size(&after).max(old.as_ref().map_or(0, value::item_size)));
        self.units.write += units;
        Self::check_condition(request, condition.as_ref(), old.as_ref())?;
        table.items.insert(identity, after.clone());
        let updated = |item: &Item| -> Item {
            item.iter()
                .filter(|(k, _)| update.iter().flat_map(|u| u.paths()).any(|p| p == *k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let attributes = match returning {
            "ALL_OLD" => old,
            "UPDATED_OLD" => old.as_ref().map(updated),
            "ALL_NEW" => Some(after),
            "UPDATED_NEW" => Some(updated(&after)),
            _ => None,
        };
        let mut body = Map::new();
        if let Some(attributes) = attributes.filter(|a| !a.is_empty()) {
            body.insert("Attributes".into(), Value::Object(attributes));
        }
        Ok(Self::answer(request, &name, units, body))
    }

    fn delete_item(&mut self, request: &Value) -> Result<Value, Fault> {
        no_legacy(request, "DeleteItem")?;
        bindings_need_expressions(request, &["ConditionExpression"])?;
        let key = item_field(request, "Key")?;
        let returning = return_values(request, &["NONE", "ALL_OLD"])?;
        let mut bindings = Bindings::new(request)?;
        let condition = condition_of(request, &mut bindings)?;
        bindings.all_used()?;
        let name = required(request, "TableName")?.to_owned();
        let table = self.tables.get_mut(&name).ok_or_else(not_found)?;
        let identity = table.identity(&key, false)?;
        let old = table.items.get(&identity);
        let units = write_units(old.map_or(0, value::item_size));
        self.units.write += units;
        Self::check_condition(request, condition.as_ref(), old)?;
        let old = table.items.remove(&identity);
        let mut body = Map::new();
        if let (Some(old), "ALL_OLD") = (old, returning) {
            body.insert("Attributes".into(), Value::Object(old));
        }
        Ok(Self::answer(request, &name, units, body))
    }

    /// The items of `table`, for a caller's checks (`None`: no such table).
    pub(super) fn items(&self, table: &str) -> Option<Vec<Item>> {
        let table = self.tables.get(table)?;
        Some(table.items.values().cloned().collect())
    }

    #[cfg(test)]
    fn key_of(&self, table: &str, item: &Item) -> Item {
        self.tables[table].key_of(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dynamo_with_table() -> Dynamo {
        let mut d = Dynamo::default();
        d.handle(
            "CreateTable",
            &json!({
                "TableName": "t",
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
                "BillingMode": "PAY_PER_REQUEST",
            }),
        )
        .unwrap();
        d
    }

    #[test]
    fn an_items_identity_is_its_key_attributes_as_the_schema_names_them() {
        let mut d = dynamo_with_table();
        let put = |d: &mut Dynamo, sk: &str, v: &str| {
            d.handle(
                "PutItem",
                &json!({"TableName": "t", "Item": {"pk": {"S": "a"}, "sk": {"N": sk}, "v": {"S": v}}}),
            )
        };
        put(&mut d, "1", "first").unwrap();
        put(&mut d, "1.0", "second").unwrap();
        put(&mut d, "2", "other").unwrap();
        assert_eq!(d.items("t").unwrap().len(), 2, "1 and 1.0 are one key");
        let got = d
            .handle(
                "GetItem",
                &json!({"TableName": "t", "Key": {"pk": {"S": "a"}, "sk": {"N": "01"}}}),
            )
            .unwrap();
        assert_eq!(got["Item"]["v"], json!({"S": "second"}));
        let item = got["Item"].as_object().unwrap().clone();
        assert_eq!(
            Value::Object(d.key_of("t", &item)),
            json!({"pk": {"S": "a"}, "sk": {"N": "1"}})
        );
        let wrong = put(&mut d, "x", "bad").unwrap_err();
        assert!(wrong.message.contains("numeric"), "{}", wrong.message);
        let missing = d
            .handle(
                "PutItem",
                &json!({"TableName": "t", "Item": {"pk": {"S": "a"}}}),
            )
            .unwrap_err();
        assert!(missing.message.contains("Missing the key sk"));
        let mismatch = d
            .handle(
                "PutItem",
                &json!({"TableName": "t", "Item": {"pk": {"N": "1"}, "sk": {"N": "1"}}}),
            )
            .unwrap_err();
        assert!(mismatch.message.contains("Type mismatch for key pk"));
    }

    #[test]
    fn on_demand_units_are_billed_per_kilobyte_written_and_per_four_read() {
        let mut d = dynamo_with_table();
        let big = "x".repeat(1500);
        d.handle(
            "PutItem",
            &json!({"TableName": "t", "Item": {"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"S": big}}}),
        )
        .unwrap();
        assert_eq!(d.units.write, 2.0);
        let key = json!({"TableName": "t", "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}}});
        d.handle("GetItem", &key).unwrap();
        assert_eq!(d.units.read, 0.5, "eventually consistent");
        let mut consistent = key.clone();
        consistent["ConsistentRead"] = json!(true);
        consistent["ReturnConsumedCapacity"] = json!("TOTAL");
        let answer = d.handle("GetItem", &consistent).unwrap();
        assert_eq!(answer["ConsumedCapacity"]["CapacityUnits"], json!(1.0));
        assert_eq!(d.units.read, 1.5);
    }

    #[test]
    fn a_refused_write_leaves_the_item_and_is_still_billed() {
        let mut d = dynamo_with_table();
        let put = json!({
            "TableName": "t",
            "Item": {"pk": {"S": "a"}, "sk": {"N": "1"}},
            "ConditionExpression": "attribute_not_exists(pk)",
        });
        d.handle("PutItem", &put).unwrap();
        let refused = d.handle("PutItem", &put).unwrap_err();
        assert_eq!(
            refused.kind,
            "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"
        );
        assert!(refused.extra.is_empty(), "no item unless ALL_OLD is asked");
        assert_eq!(d.units.write, 2.0);
    }

    #[test]
    fn update_item_creates_the_item_sets_its_attributes_and_never_its_key() {
        let mut d = dynamo_with_table();
        let answer = d
            .handle(
                "UpdateItem",
                &json!({
                    "TableName": "t",
                    "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}},
                    "UpdateExpression": "SET #s = :s",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":s": {"S": "COMPLETED"}},
                    "ReturnValues": "ALL_NEW",
                }),
            )
            .unwrap();
        assert_eq!(
            answer["Attributes"],
            json!({"pk": {"S": "a"}, "sk": {"N": "1"}, "status": {"S": "COMPLETED"}})
        );
        let key = d
            .handle(
                "UpdateItem",
                &json!({
                    "TableName": "t",
                    "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}},
                    "UpdateExpression": "SET pk = :s",
                    "ExpressionAttributeValues": {":s": {"S": "b"}},
                }),
            )
            .unwrap_err();
        assert!(key.message.contains("part of the key"));
    }

    #[test]
    fn delete_item_honours_its_condition() {
        let mut d = dynamo_with_table();
        let key = json!({"pk": {"S": "a"}, "sk": {"N": "1"}});
        d.handle("PutItem", &json!({"TableName": "t", "Item": key}))
            .unwrap();
        let conditional = json!({
            "TableName": "t", "Key": key,
            "ConditionExpression": "attribute_exists(gone)",
        });
        assert!(d.handle("DeleteItem", &conditional).is_err());
        assert_eq!(d.items("t").unwrap().len(), 1);
        d.handle("DeleteItem", &json!({"TableName": "t", "Key": key}))
            .unwrap();
        assert!(d.items("t").unwrap().is_empty());
    }

    #[test]
    fn an_unknown_table_is_not_found_and_an_unknown_operation_is_unsupported() {
        let mut d = Dynamo::default();
        let fault = d
            .handle(
                "GetItem",
                &json!({"TableName": "nope", "Key": {"k": {"S": "a"}}}),
            )
            .unwrap_err();
        assert!(fault.kind.ends_with("#ResourceNotFoundException"));
        let fault = d.handle("Scan", &json!({"TableName": "nope"})).unwrap_err();
        assert!(fault.unsupported && fault.message.contains("DynamoDB_20120810.Scan"));
    }
}
