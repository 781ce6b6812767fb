//! The partner's inventory search (`inventory.requested`): what it asks
//! for, read as an entity of its own. The pipeline's `inventory_request`
//! job does the pulling.

use std::collections::BTreeSet;

use domain::sources::{
    EntityChange, FollowUp, Identity, Interpretation, Malformed, Reason, Version,
};
use serde_json::{json, Value};

/// At most this many products in one request; more is quarantined.
pub const MAX_PRODUCTS_PER_REQUEST: usize = 100;

/// Reads a request's `data`: `revel_product_ids` (a list) and/or
/// `revel_product_id` (one), each a Revel product id (a whole number, as a
/// JSON number or digits); kept sorted, without repeats.
pub fn interpret(
    event_id: &str,
    occurred_at_micros: i64,
    data: Option<&Value>,
) -> Result<Interpretation, Malformed> {
    let data = data
        .filter(|d| d.is_object())
        .ok_or(Malformed(Reason::MissingData))?;
    let products = requested_products(data)?;
    Ok(Interpretation {
        identity: Identity::Business(event_id.to_owned()),
        entity: Some(EntityChange {
            kind: super::Entity::InventoryRequest.kind(),
            id: event_id.to_owned(),
            version: Version::UpdatedAt(occurred_at_micros),
            ends_entity: false,
            state: json!({ "revel_product_ids": products }),
        }),
        follow_up: FollowUp::InventoryRequest,
    })
}

fn requested_products(data: &Value) -> Result<Vec<u64>, Malformed> {
    let mut named: Vec<&Value> = Vec::new();
    match data.get("revel_product_ids") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => named.extend(list),
        Some(_) => return Err(Malformed(Reason::RevelProductIdsNotAList)),
    }
    named.extend(data.get("revel_product_id").filter(|v| !v.is_null()));
    if named.is_empty() {
        return Err(Malformed(Reason::MissingRevelProductIds));
    }
    if named.len() > MAX_PRODUCTS_PER_REQUEST {
        return Err(Malformed(Reason::TooManyRevelProductIds));
    }
    let products: BTreeSet<u64> = named
        .into_iter()
        .map(|id| product_id(id).ok_or(Malformed(Reason::InvalidRevelProductId)))
        .collect::<Result<_, _>>()?;
    Ok(products.into_iter().collect())
}

/// A Revel product id: a positive whole number (so it is safe in a filter).
pub fn product_id(value: &Value) -> Option<u64> {
    let id = match value {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()?
        }
        _ => return None,
    };
    (id > 0).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_one_product_or_a_list_kept_sorted_and_once_each() {
        let data = json!({"revel_product_ids": [6, "5", 6, " 12 "], "revel_product_id": 7});
        let meaning = interpret("evt_9", 1_000, Some(&data)).unwrap();
        assert_eq!(meaning.identity, Identity::Business("evt_9".into()));
        assert_eq!(meaning.follow_up, FollowUp::InventoryRequest);
        let entity = meaning.entity.unwrap();
        assert_eq!(
            (entity.kind.as_str(), entity.id.as_str()),
            ("vos_inventory_request", "evt_9")
        );
        assert_eq!(entity.version, Version::UpdatedAt(1_000));
        assert_eq!(entity.state, json!({"revel_product_ids": [5, 6, 7, 12]}));
        let one = interpret("evt_1", 1, Some(&json!({"revel_product_id": "42"}))).unwrap();
        assert_eq!(
            one.entity.unwrap().state,
            json!({"revel_product_ids": [42]})
        );
    }

    #[test]
    fn a_request_without_products_or_with_an_id_that_is_not_a_revel_product_id_is_malformed() {
        let too_many: Vec<u64> = (1..=MAX_PRODUCTS_PER_REQUEST as u64 + 1).collect();
        let cases = [
            (None, "missing_data"),
            (Some(json!([5])), "missing_data"),
            (Some(json!({})), "missing_revel_product_ids"),
            (
                Some(json!({"revel_product_ids": []})),
                "missing_revel_product_ids",
            ),
            (
                Some(json!({"revel_product_ids": null})),
                "missing_revel_product_ids",
            ),
            (
                Some(json!({"revel_product_ids": "5,6"})),
                "revel_product_ids_not_a_list",
            ),
            (
                Some(json!({"revel_product_ids": [5, "6,7"]})),
                "invalid_revel_product_id",
            ),
            (
                Some(json!({"revel_product_ids": [0]})),
                "invalid_revel_product_id",
            ),
            (
                Some(json!({"revel_product_ids": [-5]})),
                "invalid_revel_product_id",
            ),
            (
                Some(json!({"revel_product_ids": [5.5]})),
                "invalid_revel_product_id",
            ),
            (
                Some(json!({"revel_product_ids": ["/resources/Product/5/"]})),
                "invalid_revel_product_id",
            ),
            (
                Some(json!({"revel_product_id": {"id": 5}})),
                "invalid_revel_product_id",
            ),
            (
                Some(json!({"revel_product_ids": too_many})),
                "too_many_revel_product_ids",
            ),
        ];
        for (data, reason) in cases {
            assert_eq!(
                interpret("evt_1", 1, data.as_ref()).unwrap_err().reason(),
                reason,
                "{data:?}"
            );
        }
    }
}
