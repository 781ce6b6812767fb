//! Applying the partner system's (VinesOS) changes to Revel through its REST
//! API: the other direction of the sync schedule ("Customer added on VOS",
//! "Members updated on VOS", "Orders added on VOS", "Inventory from VOS to
//! Revel", "Rewards added or used on VinesOS").
//!
//! Never twice: each change first looks its Revel object up by a key the
//! partner's id determines (`third_party_id`, the card number, ...), then
//! updates it with absolute values, or creates it only when the lookup found
//! nothing; a create whose outcome is unknown is retried through the queue,
//! and the retry's lookup finds what the first attempt made. The partner's
//! entity records the newest revision applied, so a re-run does nothing.
//!
//! No ping-pong: every object the bundle writes is recorded in the echo log
//! with Revel's `updated_date`; when Revel's webhook for that change comes
//! back, the worker recognises it and does not send it to the partner.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::DependencyError;
use crate::ids::{EntityKey, InstanceName};
use crate::revel_api::{ApiCredentials, PageRequest, RevelApiError, RevelResources};
use crate::sources::{id_field, parse_timestamp_micros};
use crate::store::EntityStore;
use crate::sync_state::EchoLog;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("Revel API: {0}")]
    Api(#[from] RevelApiError),
    #[error(transparent)]
    Store(#[from] DependencyError),
    #[error("the partner's {0} lacks what applying it needs")]
    Incomplete(&'static str),
}

/// What applying a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Created {
        resource: &'static str,
    },
    Updated {
        resource: &'static str,
    },
    /// This version (or a newer one) was applied before.
    AlreadyApplied,
    /// Nothing in Revel to apply it to (an unknown rewards card or product).
    NoTarget {
        resource: &'static str,
    },
}

/// How one kind of partner entity maps onto a Revel resource.
struct Mapping {
    resource: &'static str,
    /// The Revel-side entity kind its webhooks use (for the echo log).
    revel_kind: &'static str,
    /// The filter that finds the Revel object this change is about.
    lookup: (&'static str, String),
    /// The fields to write (absolute values, so writing twice is harmless).
    fields: Value,
    /// Whether a missing object is created (or the change has no target).
    creates: bool,
}

fn text<'a>(data: &'a Value, field: &str) -> Option<&'a str> {
    data.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn mapping(kind: &str, id: &str, data: &Value) -> Result<Mapping, ApplyError> {
    match kind {
        "vos_customer" | "vos_member" => {
            let mut fields = serde_json::Map::new();
            for (ours, theirs) in [
                ("first_name", "first_name"),
                ("last_name", "last_name"),
                ("email", "email"),
                ("phone", "phone_number"),
            ] {
                if let Some(value) = text(data, ours) {
                    fields.insert(theirs.into(), json!(value));
                }
            }
            fields.insert("third_party_id".into(), json!(format!("vinesos:{id}")));
            Ok(Mapping {
                resource: "Customer",
                revel_kind: "customer",
                lookup: ("third_party_id", format!("vinesos:{id}")),
                fields: Value::Object(fields),
                creates: true,
            })
        }
        "vos_reward" => {
            // Not `card_number`: that is a payment card's name, never kept.
            let card = text(data, "reward_card_number")
                .ok_or(ApplyError::Incomplete("reward reward_card_number"))?;
            let points = data
                .get("points")
                .and_then(Value::as_f64)
                .ok_or(ApplyError::Incomplete("reward points"))?;
            Ok(Mapping {
                resource: "RewardsCard",
                revel_kind: "rewards_card",
                lookup: ("number", card.to_owned()),
                fields: json!({"current_points": points}),
                creates: false,
            })
        }
        "vos_inventory" => {
            let product = id_field(data, "revel_product_id")
                .ok_or(ApplyError::Incomplete("inventory revel_product_id"))?;
            let quantity = data
                .get("quantity")
                .and_then(Value::as_f64)
                .ok_or(ApplyError::Incomplete("inventory quantity"))?;
            Ok(Mapping {
                resource: "CurrentStock",
                revel_kind: "inventory",
                lookup: ("product", format!("/resources/Product/{product}/")),
                fields: json!({"quantity": quantity}),
                creates: false,
            })
        }
        "vos_order" => {
            let total = data
                .get("total")
                .and_then(Value::as_f64)
                .ok_or(ApplyError::Incomplete("order total"))?;
            Ok(Mapping {
                resource: "Order",
                revel_kind: "order",
                lookup: ("external_sync", format!("vinesos:{id}")),
                fields: json!({
                    "external_sync": format!("vinesos:{id}"),
                    "notes": format!("VinesOS order {id}"),
                    "final_total": total,
                    "establishment": format!("/enterprise/Establishment/{}/", id_field(data, "establishment_id").unwrap_or_else(|| "1".into())),
                }),
                creates: true,
            })
        }
        _ => Err(ApplyError::Incomplete("entity kind")),
    }
}

fn matches_lookup(object: &Value, field: &str, wanted: &str) -> bool {
    match object.get(field) {
        Some(Value::String(s)) => s == wanted,
        Some(Value::Number(n)) => n.to_string() == wanted,
        _ => false,
    }
}

pub struct Applier {
    pub api: Arc<dyn RevelResources>,
    pub entities: Arc<dyn EntityStore>,
    pub echoes: Arc<dyn EchoLog>,
}

impl Applier {
    /// Applies the current state of the partner entity `key` to Revel.
    pub async fn apply(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        key: &EntityKey,
    ) -> Result<Applied, ApplyError> {
        let Some(entity) = self.entities.get(key).await? else {
            return Err(ApplyError::Incomplete("entity (gone)"));
        };
        if entity.is_delivered() {
            return Ok(Applied::AlreadyApplied);
        }
        let data: Value = serde_json::from_str(&entity.state_json)
            .map_err(|_| ApplyError::Incomplete("stored state"))?;
        let map = mapping(&entity.kind, &entity.entity_id, &data)?;
        let outcome = self.write(instance, credentials, &map).await?;
        // Applied: a re-run of this job, or of an older one, does nothing.
        self.entities.mark_delivered(key, entity.revision).await?;
        tracing::info!(%instance, entity = %key, resource = map.resource, outcome = ?outcome, "partner change applied to Revel");
        Ok(outcome)
    }

    async fn write(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        map: &Mapping,
    ) -> Result<Applied, ApplyError> {
        let lookup = PageRequest {
            resource: map.resource.to_owned(),
            filters: vec![(map.lookup.0.to_owned(), map.lookup.1.clone())],
            offset: 0,
        };
        // Only an object that really has the looked-up value counts: an API
        // that ignores an unknown filter must not pick some other record.
        let found = self
            .api
            .page(instance, credentials, &lookup)
            .await?
            .objects
            .into_iter()
            .find(|o| matches_lookup(o, map.lookup.0, &map.lookup.1));
        let (written, outcome) = match found.as_ref().and_then(|o| id_field(o, "id")) {
            Some(revel_id) => (
                self.api
                    .update(instance, credentials, map.resource, &revel_id, &map.fields)
                    .await?,
                Applied::Updated {
                    resource: map.resource,
                },
            ),
            None if map.creates => (
                self.api
                    .create(instance, credentials, map.resource, &map.fields)
                    .await?,
                Applied::Created {
                    resource: map.resource,
                },
            ),
            None => {
                return Ok(Applied::NoTarget {
                    resource: map.resource,
                })
            }
        };
        self.remember_echo(instance, map, &written).await?;
        Ok(outcome)
    }

    /// Records the written object's version, so its webhook isn't sent back.
    async fn remember_echo(
        &self,
        instance: &InstanceName,
        map: &Mapping,
        written: &Value,
    ) -> Result<(), ApplyError> {
        let id = match map.revel_kind {
            "customer" | "order" => id_field(written, "uuid"),
            _ => id_field(written, "id"),
        };
        let version = written
            .get("updated_date")
            .and_then(Value::as_str)
            .and_then(parse_timestamp_micros);
        match (id, version) {
            (Some(id), Some(version)) => {
                if let Ok(key) = EntityKey::new("revel", instance, map.revel_kind, &id) {
                    self.echoes.record_echo(&key, version).await?;
                }
            }
            _ => {
                tracing::warn!(%instance, resource = map.resource, "Revel's answer has no id or updated_date; its webhook may be sent back")
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_partner_kind_maps_to_a_revel_lookup_and_absolute_fields() {
        let customer = mapping(
            "vos_member",
            "C-1",
            &json!({"first_name": "Ann", "phone": "123"}),
        )
        .unwrap();
        assert_eq!(
            (customer.resource, customer.lookup.1.as_str()),
            ("Customer", "vinesos:C-1")
        );
        assert_eq!(customer.fields["phone_number"], "123");
        assert!(customer.creates);
        let reward = mapping(
            "vos_reward",
            "R-1",
            &json!({"reward_card_number": "123321", "points": 150}),
        )
        .unwrap();
        assert_eq!(
            (
                reward.resource,
                reward.lookup.0,
                reward.fields["current_points"].as_f64()
            ),
            ("RewardsCard", "number", Some(150.0))
        );
        assert!(!reward.creates, "a rewards card is never invented");
        let stock = mapping(
            "vos_inventory",
            "S-1",
            &json!({"revel_product_id": 6, "quantity": 40}),
        )
        .unwrap();
        assert_eq!(stock.lookup.1, "/resources/Product/6/");
        let order = mapping("vos_order", "O-1", &json!({"total": 58.5})).unwrap();
        assert_eq!(order.lookup, ("external_sync", "vinesos:O-1".to_owned()));
    }

    #[test]
    fn only_an_object_with_the_looked_up_value_counts_as_found() {
        assert!(matches_lookup(
            &json!({"number": "123321"}),
            "number",
            "123321"
        ));
        assert!(matches_lookup(&json!({"id": 6}), "id", "6"));
        assert!(!matches_lookup(
            &json!({"number": "999"}),
            "number",
            "123321"
        ));
        assert!(
            !matches_lookup(&json!({"id": 417}), "external_sync", "vinesos:O-1"),
            "an ignored filter returns unrelated records"
        );
    }

    #[test]
    fn a_change_missing_what_its_mapping_needs_is_refused() {
        assert!(matches!(
            mapping("vos_reward", "R", &json!({"points": 1})),
            Err(ApplyError::Incomplete(_))
        ));
        assert!(matches!(
            mapping("vos_inventory", "S", &json!({"quantity": 1})),
            Err(ApplyError::Incomplete(_))
        ));
        assert!(matches!(
            mapping("vos_order", "O", &json!({})),
            Err(ApplyError::Incomplete(_))
        ));
        assert!(matches!(
            mapping("revel_thing", "X", &json!({})),
            Err(ApplyError::Incomplete(_))
        ));
    }
}
