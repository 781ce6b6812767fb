//! What the bodies of Revel's webhooks mean: each type's identity, the
//! entity it carries at which version, and its follow-up; and what an
//! order's state says besides (its rewards card, the stock it sold, its
//! establishment). Revel writes dates without an offset, in the instance's
//! time, so versions are wall-clock times the processor reads in the zone
//! the record names.

use http::HeaderMap;
use serde_json::Value;

use super::{RevelEventType, ESTABLISHMENT_HEADER};
use domain::sources::{
    header, id_field, json_object, revel_version, strip_payment_card_fields, EntityChange,
    EventKind, FollowUp, Identity, Interpretation, Malformed, Reason, Version,
};

impl EventKind for RevelEventType {
    fn event_type(&self) -> &'static str {
        self.name()
    }

    fn interpret(&self, body: Value, headers: &HeaderMap) -> Result<Interpretation, Malformed> {
        // Checked here for every type; `order` takes the object apart itself.
        json_object(&body)?;
        let establishment = header(headers, ESTABLISHMENT_HEADER);
        match self {
            Self::OrderFinalized => order(body),
            Self::CustomerCreated | Self::CustomerUpdated => {
                dated_entity(body, Entity::Customer, "uuid", Reason::MissingCustomerUuid)
            }
            Self::RewardCardCreated => dated_entity(
                body,
                Entity::RewardsCard,
                "id",
                Reason::MissingRewardsCardId,
            ),
            Self::StockChanged => stock(body, establishment),
            Self::MenuUpdated => menu(body, establishment),
        }
    }

    fn key_fields(&self) -> Option<&'static [domain::projection::Path]> {
        match self {
            Self::OrderFinalized => Some(&[&["orderInfo", "uuid"], &["orderInfo", "updated_date"]]),
            Self::CustomerCreated | Self::CustomerUpdated => Some(&[&["uuid"], &["updated_date"]]),
            Self::RewardCardCreated => Some(&[&["id"], &["updated_date"]]),
            // A few dozen bytes: parsed whole.
            Self::StockChanged | Self::MenuUpdated => None,
        }
    }
}

/// The object's `updated_date`: Revel writes it without an offset, in the
/// instance's time, so it is a wall-clock time the processor reads in the
/// zone the record names. Returned with the µs its business key is made of
/// (the date as written), which no zone change moves.
fn updated_version(object: &Value) -> Result<(Version, i64), Malformed> {
    object
        .get("updated_date")
        .and_then(Value::as_str)
        .and_then(revel_version)
        .and_then(|version| Some((version, version.key_micros()?)))
        .ok_or(Malformed(Reason::MissingOrInvalidUpdatedDate))
}

/// OrderAllInOne: `orderInfo` (with `uuid` and `updated_date`), `items`,
/// `payments`, `history`. `orderInfo.gift_reward_data` is JSON inside a
/// string; it is kept parsed.
fn order(body: Value) -> Result<Interpretation, Malformed> {
    let Value::Object(mut body) = body else {
        return Err(Malformed(Reason::NotAJsonObject));
    };
    let mut order_info = body
        .remove("orderInfo")
        .filter(|v| v.is_object())
        .ok_or(Malformed(Reason::MissingOrderInfo))?;
    let uuid = id_field(&order_info, "uuid").ok_or(Malformed(Reason::MissingOrderUuid))?;
    let (version, key_micros) = updated_version(&order_info)?;
    if let Some(raw) = order_info.get("gift_reward_data").and_then(Value::as_str) {
        match serde_json::from_str::<Value>(raw) {
            Ok(parsed) => order_info["gift_reward_data"] = parsed,
            // Kept as sent: the order is still good, the loyalty part is not.
            Err(_) => {
                tracing::warn!(order = %uuid, "gift_reward_data is not valid JSON; kept as a string")
            }
        }
    }
    let mut list = |field: &str| body.remove(field).unwrap_or(Value::Array(Vec::new()));
    let mut state = serde_json::json!({
        "order": order_info,
        "items": list("items"),
        "payments": list("payments"),
        "history": list("history"),
    });
    strip_payment_card_fields(&mut state);
    Ok(Interpretation {
        identity: Identity::Business(format!("{uuid}@{key_micros}")),
        entity: Some(EntityChange {
            kind: Entity::Order.kind(),
            id: uuid,
            version,
            ends_entity: false,
            state,
        }),
        follow_up: FollowUp::SyncEntity,
    })
}

domain::entities! {
    /// What Revel's entities are: those its webhooks carry and those the
    /// pulls and the partner's changes keep.
    pub enum Entity {
        Order => "order",
        Customer => "customer",
        /// From its webhook or from an order's `gift_reward_data`.
        RewardsCard => "rewards_card",
        /// A product's availability per establishment (`stock.changed`).
        ItemStock => "item_stock",
        /// That the menu changed, per establishment (`menu.updated`).
        Menu => "menu",
        Product => "product",
        Modifier => "modifier",
        Event => "event",
        /// A product's current stock (`CurrentStock`).
        Inventory => "inventory",
    }
}

/// The rewards card an order reports on: `orderInfo.gift_reward_data` (kept
/// parsed in the order's state) is the card as the order left it (points
/// used and earned, `current_points`, `advancedRewardsInfo`), dated by its
/// own `updated_date`, which carries an offset. Kept as the card's state
/// newest-wins beside what `rewardcard.created` says, under the same key
/// (the card's `id`, or the id at the end of its `resource_uri`), so the
/// partner hears of the card's new state. `None` when the order carries no
/// readable card; an unusable one is logged.
pub fn rewards_card_of_order(order_state: &Value) -> Option<EntityChange> {
    let card = order_state.get("order")?.get("gift_reward_data")?;
    if !card.is_object() {
        return None;
    }
    let id = id_field(card, "id").or_else(|| {
        ["resource_uri", "uri"]
            .iter()
            .find_map(|field| card.get(*field).and_then(resource_id))
    });
    let version = card
        .get("updated_date")
        .and_then(Value::as_str)
        .and_then(revel_version);
    let (Some(id), Some(version)) = (id, version) else {
        tracing::warn!(
            "an order's rewards card has no id or updated_date; the card is not updated from it"
        );
        return None;
    };
    let mut state = card.clone();
    strip_payment_card_fields(&mut state);
    Some(EntityChange {
        kind: Entity::RewardsCard.kind(),
        id,
        version,
        ends_entity: false,
        state,
    })
}

/// The id at the end of a Revel resource URI (`/resources/Product/5/` is
/// `5`), or an id given as a number or a plain string.
pub fn resource_id(value: &Value) -> Option<String> {
    let raw = match value {
        Value::Number(n) => return Some(n.to_string()),
        Value::String(s) => s.trim().trim_end_matches('/'),
        _ => return None,
    };
    let id = raw.rsplit('/').next()?;
    (!id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .then(|| id.to_owned())
}

/// What one order sold of one product.
#[derive(Debug, Clone, PartialEq)]
pub struct SoldProduct {
    /// Revel's product id (`5` of `/resources/Product/5/`).
    pub product_id: String,
    /// Units sold, summed over the order's items of the product (negative
    /// for a return).
    pub quantity: f64,
}

/// The products an order sold, one entry per product (its items summed),
/// by product id. Items deleted or voided sold nothing; modifiers are not
/// products; an item without a readable product or quantity is left out
/// and logged.
pub fn sold_products(order_state: &Value) -> Vec<SoldProduct> {
    let mut sold: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    let items = order_state.get("items").and_then(Value::as_array);
    for item in items.into_iter().flatten() {
        let voided = ["voided_date", "voided_by"]
            .iter()
            .any(|field| item.get(*field).is_some_and(|v| !v.is_null()));
        if voided || item.get("deleted").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let product = item.get("product").and_then(resource_id);
        let quantity = item.get("quantity").and_then(domain::sources::as_number);
        match (product, quantity) {
            (Some(product), Some(quantity)) if quantity.is_finite() => {
                *sold.entry(product).or_default() += quantity;
            }
            (None, _) if item.get("product").is_none_or(Value::is_null) => {}
            _ => tracing::warn!("an order item without a readable product or quantity; its stock change is not sent"),
        }
    }
    sold.into_iter()
        .filter(|(_, quantity)| *quantity != 0.0)
        .map(|(product_id, quantity)| SoldProduct {
            product_id,
            quantity,
        })
        .collect()
}

/// The establishment an order was made at (`1` of
/// `/enterprise/Establishment/1/`).
pub fn order_establishment(order_state: &Value) -> Option<String> {
    order_state
        .get("order")?
        .get("establishment")
        .and_then(resource_id)
}

/// Customer and RewardsCard: a flat record with an id and `updated_date`.
fn dated_entity(
    body: Value,
    kind: Entity,
    id_name: &str,
    missing: Reason,
) -> Result<Interpretation, Malformed> {
    let id = id_field(&body, id_name).ok_or(Malformed(missing))?;
    let (version, key_micros) = updated_version(&body)?;
    let mut state = body;
    strip_payment_card_fields(&mut state);
    Ok(Interpretation {
        identity: Identity::Business(format!("{id}@{key_micros}")),
        entity: Some(EntityChange {
            kind: kind.kind(),
            id,
            version,
            ends_entity: false,
            state,
        }),
        follow_up: FollowUp::SyncEntity,
    })
}

/// The establishment an entity is kept per, when Revel names one: a
/// product's stock (and the menu) differ between the establishments of one
/// instance.
fn per_establishment(establishment: Option<&str>, id: String) -> Result<String, Malformed> {
    match establishment {
        None => Ok(id),
        Some(e) if e.len() <= 64 && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            Ok(format!("establishment-{e}:{id}"))
        }
        Some(_) => Err(Malformed(Reason::InvalidEstablishment)),
    }
}

/// Item availability: `id`, `instock` and `type` are required; kept per
/// product per establishment; no date, so the newest receipt wins.
fn stock(body: Value, establishment: Option<&str>) -> Result<Interpretation, Malformed> {
    let id = id_field(&body, "id").ok_or(Malformed(Reason::MissingItemId))?;
    body.get("instock")
        .and_then(Value::as_bool)
        .ok_or(Malformed(Reason::MissingInstock))?;
    let item_type = body
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .ok_or(Malformed(Reason::MissingItemType))?
        .trim()
        .to_ascii_lowercase();
    let mut state = body;
    strip_payment_card_fields(&mut state);
    Ok(Interpretation {
        identity: Identity::PerRequest,
        entity: Some(EntityChange {
            kind: Entity::ItemStock.kind(),
            id: per_establishment(establishment, format!("{item_type}:{id}"))?,
            version: Version::ReceiptOrder,
            ends_entity: false,
            state,
        }),
        follow_up: FollowUp::SyncEntity,
    })
}

/// `{"event": "menu.updated"}`: records that the menu changed (per
/// establishment) and asks for a catalog pull; the worker coalesces pulls.
fn menu(body: Value, establishment: Option<&str>) -> Result<Interpretation, Malformed> {
    match body.get("event") {
        None => {}
        Some(Value::String(s)) if s == "menu.updated" => {}
        Some(_) => return Err(Malformed(Reason::UnexpectedEventName)),
    }
    // Any other field is kept as sent, except payment card data.
    let mut state = body;
    strip_payment_card_fields(&mut state);
    Ok(Interpretation {
        identity: Identity::PerRequest,
        entity: Some(EntityChange {
            kind: Entity::Menu.kind(),
            id: per_establishment(establishment, "current".to_owned())?,
            version: Version::ReceiptOrder,
            ends_entity: false,
            state,
        }),
        follow_up: FollowUp::CatalogPull,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_order_is_keyed_by_uuid_and_updated_date_and_keeps_parsed_rewards() {
        let body = json!({"orderInfo": {"uuid": "u-1", "updated_date": "2016-04-13T10:29:19",
            "gift_reward_data": "{\"id\":15,\"total_points\":126}"},
            "items": [{"id": 1}], "payments": [{"amount": "4.86", "cc_last_name": "X"}]});
        let i = RevelEventType::OrderFinalized
            .interpret(body.clone(), &http::HeaderMap::new())
            .unwrap();
        assert_eq!(
            i.identity,
            Identity::Business("u-1@1460543359000000".into())
        );
        let entity = i.entity.unwrap();
        assert_eq!(entity.version, Version::WallClock(1_460_543_359_000_000));
        assert_eq!(
            entity.state["order"]["gift_reward_data"]["total_points"],
            126
        );
        assert_eq!(entity.state["payments"], json!([{"amount": "4.86"}]));
        assert_eq!(entity.state["items"], json!([{"id": 1}]));
        assert_eq!(i.follow_up, FollowUp::SyncEntity);
    }

    #[test]
    fn bodies_missing_what_their_type_requires_are_malformed() {
        let cases = [
            (
                RevelEventType::OrderFinalized,
                json!({"items": []}),
                "missing_order_info",
            ),
            (
                RevelEventType::OrderFinalized,
                json!({"orderInfo": {"uuid": "u"}}),
                "missing_or_invalid_updated_date",
            ),
            (
                RevelEventType::CustomerUpdated,
                json!({"updated_date": "2021-12-28T21:05:13"}),
                "missing_customer_uuid",
            ),
            (
                RevelEventType::RewardCardCreated,
                json!({"id": 3, "updated_date": "soon"}),
                "missing_or_invalid_updated_date",
            ),
            (
                RevelEventType::StockChanged,
                json!({"id": 1, "type": "product"}),
                "missing_instock",
            ),
            (
                RevelEventType::MenuUpdated,
                json!({"event": "menu.deleted"}),
                "unexpected_event_name",
            ),
            (
                RevelEventType::CustomerCreated,
                json!([1, 2]),
                "not_a_json_object",
            ),
        ];
        for (kind, body, reason) in cases {
            assert_eq!(
                kind.interpret(body.clone(), &http::HeaderMap::new())
                    .unwrap_err()
                    .reason(),
                reason,
                "{kind:?} {body}"
            );
        }
    }

    #[test]
    fn stock_and_menu_have_no_business_key_and_follow_receipt_order() {
        let stock = RevelEventType::StockChanged
            .interpret(
                json!({"barcode": "1", "id": 622335, "instock": false, "type": "product"}),
                &http::HeaderMap::new(),
            )
            .unwrap();
        assert_eq!(stock.identity, Identity::PerRequest);
        assert_eq!(stock.entity.as_ref().unwrap().id, "product:622335");
        let menu = RevelEventType::MenuUpdated
            .interpret(json!({"event": "menu.updated"}), &http::HeaderMap::new())
            .unwrap();
        assert_eq!(menu.follow_up, FollowUp::CatalogPull);
        assert_eq!(menu.entity.unwrap().version, Version::ReceiptOrder);
    }

    /// Found by the `payloads` fuzz target: a customer body (with its
    /// `cc_exp`) posted to the menu route was kept whole as the menu state.
    #[test]
    fn stock_and_menu_states_keep_no_payment_card_fields() {
        let stock = RevelEventType::StockChanged
            .interpret(
                json!({"id": 1, "instock": true, "type": "product",
                               "cc_exp": "12/30", "extra": {"last_4_cc_digits": "4242"}}),
                &http::HeaderMap::new(),
            )
            .unwrap();
        assert_eq!(
            stock.entity.unwrap().state,
            json!({"id": 1, "instock": true, "type": "product", "extra": {}})
        );
        let customer: Value =
            serde_json::from_str(include_str!("../../../../events/payloads/customer.json"))
                .unwrap();
        let menu = RevelEventType::MenuUpdated
            .interpret(customer.clone(), &http::HeaderMap::new())
            .unwrap();
        let state = menu.entity.unwrap().state;
        assert!(state.get("cc_exp").is_none() && state.get("cc_last_4_digits").is_none());
        assert_eq!(state["email"], "customer@example.com");
    }

    #[test]
    fn stock_and_menu_are_kept_per_establishment_when_revel_names_one() {
        let mut headers = HeaderMap::new();
        headers.insert(ESTABLISHMENT_HEADER, http::HeaderValue::from_static("7"));
        let body = json!({"id": 622335, "instock": false, "type": "Product"});
        let stock = RevelEventType::StockChanged
            .interpret(body.clone(), &headers)
            .unwrap();
        assert_eq!(stock.entity.unwrap().id, "establishment-7:product:622335");
        let menu = RevelEventType::MenuUpdated
            .interpret(json!({"event": "menu.updated"}), &headers)
            .unwrap();
        assert_eq!(menu.entity.unwrap().id, "establishment-7:current");
        headers.insert(
            ESTABLISHMENT_HEADER,
            http::HeaderValue::from_static("7/../8"),
        );
        assert_eq!(
            RevelEventType::StockChanged
                .interpret(body, &headers)
                .unwrap_err(),
            Malformed(Reason::InvalidEstablishment)
        );
    }

    /// The seed's own order, as the processor keeps it.
    fn seed_order_state() -> Value {
        let body: Value = serde_json::from_str(include_str!(
            "../../../../events/payloads/order-finalized.json"
        ))
        .unwrap();
        RevelEventType::OrderFinalized
            .interpret(body, &HeaderMap::new())
            .unwrap()
            .entity
            .unwrap()
            .state
    }

    #[test]
    fn the_seed_orders_reward_data_is_its_cards_state_keyed_like_the_cards_webhook_and_dated_by_its_own_offset(
    ) {
        let card = rewards_card_of_order(&seed_order_state()).unwrap();

        assert_eq!(
            (card.kind, card.id.as_str()),
            (Entity::RewardsCard.kind(), "15")
        );
        assert_eq!(
            card.version,
            Version::UpdatedAt(
                domain::sources::parse_timestamp_micros("2016-04-13T17:29:15+00:00").unwrap()
            )
        );
        assert_eq!(card.state["current_points"], 106);
        assert_eq!(card.state["number"], "J87YUIL9812X");
        assert_eq!(
            card.state["advancedRewardsInfo"][0]["rewardCardNumber"],
            "J87YUIL9812X"
        );
        let webhook = RevelEventType::RewardCardCreated
            .interpret(
                json!({"id": 15, "number": "J87YUIL9812X", "updated_date": "2016-04-12T22:06:48"}),
                &HeaderMap::new(),
            )
            .unwrap()
            .entity
            .unwrap();
        assert_eq!(
            (webhook.kind, webhook.id),
            (card.kind, card.id),
            "the webhook's card and the order's are one entity"
        );
    }

    #[test]
    fn a_card_without_an_id_is_found_by_its_resource_uri_and_one_without_a_date_is_not_carried() {
        let order = |card: Value| json!({"order": {"gift_reward_data": card}});
        let by_uri = rewards_card_of_order(&order(json!({
            "resource_uri": "/resources/RewardsCard/31/", "updated_date": "2016-04-13T17:29:15+00:00",
            "cc_last_4_digits": "4242"})))
        .unwrap();
        assert_eq!(by_uri.id, "31");
        assert!(by_uri.state.get("cc_last_4_digits").is_none());
        for unusable in [
            json!({"id": 15}),
            json!({"updated_date": "2016-04-13T17:29:15+00:00"}),
            json!("{not json"),
            Value::Null,
        ] {
            assert_eq!(
                rewards_card_of_order(&order(unusable.clone())),
                None,
                "{unusable}"
            );
        }
        assert_eq!(rewards_card_of_order(&json!({"order": {}})), None);
    }

    #[test]
    fn what_an_order_sold_is_summed_per_product_without_voided_deleted_or_productless_items() {
        let state = json!({"items": [
            {"product": "/resources/Product/5/", "quantity": 1},
            {"product": "/resources/Product/5/", "quantity": "2"},
            {"product": 9, "quantity": 1.5},
            {"product": "/resources/Product/7/", "quantity": 1, "voided_date": "2016-04-13T10:29:00"},
            {"product": "/resources/Product/8/", "quantity": 1, "deleted": true},
            {"product": "/resources/Product/11/", "quantity": 1},
            {"product": "/resources/Product/11/", "quantity": -1},
            {"product": null, "quantity": 3},
            {"product": "/resources/Product/12/"},
        ]});
        let sold: Vec<(String, f64)> = sold_products(&state)
            .into_iter()
            .map(|p| (p.product_id, p.quantity))
            .collect();
        assert_eq!(sold, [("5".to_owned(), 3.0), ("9".to_owned(), 1.5)]);
        let seed = seed_order_state();
        assert_eq!(
            sold_products(&seed),
            [SoldProduct {
                product_id: "5".into(),
                quantity: 1.0
            }]
        );
        assert_eq!(order_establishment(&seed).as_deref(), Some("1"));
        assert!(sold_products(&json!({"items": []})).is_empty());
    }

    #[test]
    fn resource_ids_are_read_from_uris_numbers_and_plain_strings_and_nothing_else() {
        assert_eq!(
            resource_id(&json!("/resources/Product/5/")).as_deref(),
            Some("5")
        );
        assert_eq!(resource_id(&json!(5)).as_deref(), Some("5"));
        assert_eq!(resource_id(&json!(" abc-1 ")).as_deref(), Some("abc-1"));
        for bad in [
            json!(""),
            json!("/"),
            json!("/a/b c/"),
            json!(true),
            json!(null),
        ] {
            assert_eq!(resource_id(&bad), None, "{bad}");
        }
    }

    use crate::projection_check::{
        assert_projection_agrees, assert_projection_agrees_with_each_field_broken, key_of,
    };

    #[test]
    fn the_receivers_projection_finds_the_same_key_and_refusals_as_the_whole_body() {
        let order = include_str!("../../../../events/payloads/order-finalized.json");
        let customer = include_str!("../../../../events/payloads/customer.json");
        let card = include_str!("../../../../events/payloads/rewardcard-created.json");
        let cases: &[(RevelEventType, &str)] = &[
            (RevelEventType::OrderFinalized, order),
            (RevelEventType::CustomerCreated, customer),
            (RevelEventType::CustomerUpdated, customer),
            (RevelEventType::RewardCardCreated, card),
        ];
        for (kind, sample) in cases {
            assert!(key_of(kind, serde_json::from_str(sample).unwrap()).is_ok());
            let target = if *kind == RevelEventType::OrderFinalized {
                "/orderInfo"
            } else {
                ""
            };
            let pointers = ["uuid", "id", "updated_date"].map(|field| format!("{target}/{field}"));
            let pointers: Vec<&str> = pointers.iter().map(String::as_str).collect();
            assert_projection_agrees_with_each_field_broken(kind, sample, &pointers);
            let mut sample: Value = serde_json::from_str(sample).unwrap();
            if let Some(object) = sample.as_object_mut() {
                object.insert("orderInfo".into(), json!("not an object"));
            }
            assert_projection_agrees(kind, &sample.to_string());
        }
        for body in [
            "[]",
            "null",
            "{}",
            r#"{"orderInfo": []}"#,
            "{\"uuid\": \"a\", \"uuid\": \"b\", \"updated_date\": \"2026-11-30T10:00:00\"}",
        ] {
            for (kind, _) in cases {
                assert_projection_agrees(kind, body);
            }
        }
    }

    use proptest::prelude::Strategy as _;

    proptest::proptest! {
        /// Random bodies with the key fields at random places and of random
        /// types, beside random other fields.
        #[test]
        fn the_projection_agrees_with_the_whole_body_on_any_body(
            uuid in proptest::option::of(proptest::prop_oneof![
                "[a-z0-9 -]{0,12}".prop_map(Value::from),
                proptest::num::i64::ANY.prop_map(Value::from),
                proptest::bool::ANY.prop_map(Value::from),
            ]),
            date in proptest::option::of(proptest::prop_oneof![
                "2026-1[0-2]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]".prop_map(Value::from),
                "[0-9T:. -]{0,20}".prop_map(Value::from),
            ]),
            noise in proptest::collection::btree_map("[a-z]{1,8}", "[a-z0-9]{0,8}", 0..6),
            nested in proptest::bool::ANY,
        ) {
            let mut object = serde_json::Map::new();
            for (k, v) in noise {
                object.insert(k, Value::from(v));
            }
            if let Some(uuid) = uuid {
                object.insert("uuid".into(), uuid.clone());
                object.insert("id".into(), uuid);
            }
            if let Some(date) = date {
                object.insert("updated_date".into(), date);
            }
            let body = if nested {
                json!({"orderInfo": object, "items": [1, 2, 3]})
            } else {
                Value::Object(object)
            }
            .to_string();
            for kind in [
                RevelEventType::OrderFinalized,
                RevelEventType::CustomerCreated,
                RevelEventType::RewardCardCreated,
            ] {
                assert_projection_agrees(&kind, &body);
            }
        }
    }
}
