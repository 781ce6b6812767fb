//! `inventory_sold`: tells the partner what a Revel order sold, so its
//! stock moves when Revel's does: one `revel.inventory.sold` message per
//! product, with the establishment, each with an id stable per order and
//! product.
//!
//! What is sent is recorded first as the order's `inventory_sold` entity
//! (from the order as it is when this first runs), then sent, then marked
//! delivered: a retry sends the recorded lines again under the same ids (a
//! partner drops repeats), and once marked, a replayed order or a later
//! version of it sends nothing again (its later changes reach the partner
//! in the order itself).

use serde_json::json;

use crate::worker::envelope::{message_id_of_part, Envelope, INVENTORY_SOLD};
use crate::worker::{JobError, Worker};
use domain::idempotency::sha256_hex;
use domain::ids::{EntityKey, EventKey, InstanceName};
use ports::store::{EntityUpsert, StoredEntity};
use vendors::revel::{self, NAME as REVEL};

/// The Revel order whose stock changes go to the partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventorySold {
    pub instance: InstanceName,
    pub order: EntityKey,
    /// The event that caused the job: the record's key where the order
    /// names none.
    pub event_key: String,
}

impl InventorySold {
    pub async fn run(self, worker: &Worker) -> Result<(), JobError> {
        let (instance, order_key) = (&self.instance, &self.order);
        let Some(order) = worker.entities.get(order_key).await? else {
            tracing::warn!(entity = %order_key, "order is gone; no stock change to send");
            return Ok(());
        };
        let sold_key = EntityKey::new(REVEL, instance, INVENTORY_SOLD, &order.entity_id)
            .map_err(|_| JobError::Malformed("order id makes no entity key"))?;
        let recorded = worker.entities.get(&sold_key).await?;
        if recorded
            .as_ref()
            .is_some_and(|r| r.delivered_revision.is_some())
        {
            tracing::info!(entity = %sold_key, "this order's stock changes went to the partner already");
            return Ok(());
        }
        // The partner's own order, written to Revel by the bundle: its stock
        // moved on the partner's side when it was placed there. Known by the
        // link the bundle wrote on it, or as the bundle's own write (should
        // Revel not show the link). Recorded as sent, so its later versions
        // send none either.
        if recorded.is_none()
            && (placed_by_partner(&order)
                || worker.is_own_write(order_key, order.rank.version).await?)
        {
            if let Some(sold) = self.record(worker, &order, &sold_key).await? {
                worker
                    .entities
                    .mark_delivered(&sold_key, sold.revision)
                    .await?;
            }
            tracing::info!(entity = %order_key, "the partner's own order coming back from Revel; its stock changes are not sent");
            return Ok(());
        }
        let partner = worker.partner()?;
        let sold = match recorded {
            Some(recorded) => recorded,
            None => match self.record(worker, &order, &sold_key).await? {
                Some(sold) => sold,
                None => return Ok(()),
            },
        };
        let state: serde_json::Value = serde_json::from_str(&sold.state_json)
            .map_err(|_| JobError::Malformed("stored state is not JSON"))?;
        let products = state["products"].as_array().cloned().unwrap_or_default();
        for product in &products {
            let product_id = product["product_id"].as_str().unwrap_or_default();
            let id = format!("{}:product:{product_id}", order.entity_id);
            let body = Envelope {
                event_type: "revel.inventory.sold".to_owned(),
                source: REVEL.as_str(),
                instance: instance.as_str(),
                kind: INVENTORY_SOLD.as_str(),
                id: &id,
                version: sold.rank.version,
                revision: sold.revision,
                event_key: sold.last_event_key.as_deref(),
                state: json!({
                    "order_uuid": state["order_uuid"],
                    "order_id": state["order_id"],
                    "establishment_id": state["establishment_id"],
                    "product_id": product_id,
                    "quantity_sold": product["quantity_sold"],
                }),
            }
            .body(worker.clock.now());
            partner
                .deliver(&message_id_of_part(&sold_key, product_id), &body)
                .await?;
        }
        worker
            .entities
            .mark_delivered(&sold_key, sold.revision)
            .await?;
        tracing::info!(entity = %sold_key, products = products.len(), "stock changes of an order delivered downstream");
        Ok(())
    }

    /// Records what `order` sold as its `inventory_sold` entity; what is
    /// recorded then (this, or what an earlier attempt recorded), or `None`
    /// when the order sold no product.
    async fn record(
        &self,
        worker: &Worker,
        order: &StoredEntity,
        sold_key: &EntityKey,
    ) -> Result<Option<StoredEntity>, JobError> {
        let order_state: serde_json::Value = serde_json::from_str(&order.state_json)
            .map_err(|_| JobError::Malformed("stored state is not JSON"))?;
        let products = revel::sold_products(&order_state);
        if products.is_empty() {
            tracing::info!(entity = %sold_key, "the order sold no product; no stock change to send");
            return Ok(None);
        }
        let state = json!({
            "order_uuid": order.entity_id,
            "order_id": order_state["order"]["id"],
            "establishment_id": revel::order_establishment(&order_state),
            "products": products
                .iter()
                .map(|p| json!({"product_id": p.product_id, "quantity_sold": quantity(p.quantity)}))
                .collect::<Vec<_>>(),
        });
        let state_json = state.to_string();
        let event_key = order
            .last_event_key
            .as_deref()
            .and_then(|k| EventKey::parse(k).ok())
            .or_else(|| EventKey::parse(&self.event_key).ok())
            .ok_or(JobError::Malformed("no event key"))?;
        worker
            .entities
            .upsert(&EntityUpsert {
                key: sold_key.clone(),
                source: REVEL.as_str(),
                instance: self.instance.clone(),
                kind: INVENTORY_SOLD,
                entity_id: order.entity_id.clone(),
                rank: order.rank.clone(),
                state_sha256: sha256_hex(state_json.as_bytes()),
                state_json,
                event_key,
            })
            .await?;
        Ok(worker.entities.get(sold_key).await?)
    }
}

/// Whether a Revel order is one the bundle wrote for the partner: it
/// carries the partner's link (`external_sync = vinesos:{id}`).
fn placed_by_partner(order: &StoredEntity) -> bool {
    serde_json::from_str::<serde_json::Value>(&order.state_json).is_ok_and(|state| {
        state["order"]["external_sync"]
            .as_str()
            .is_some_and(|link| link.starts_with(vendors::vinesos::LINK_PREFIX))
    })
}

/// A quantity as JSON: a whole number without a fraction.
fn quantity(value: f64) -> serde_json::Value {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::worker::testing::*;
    use crate::worker::{message_id_of_part, JobError};
    use domain::ids::EntityKey;
    use ports::queue::{JobKind, JobMessage};
    use vendors::vinesos::downstream::DeliveryError;
    use vendors::{revel, winesitting};

    /// An order of instance `demo` as the processor keeps it, selling
    /// `items` at establishment 1.
    fn order_state(items: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "order": {"uuid": "o-1", "id": 417, "establishment": "/enterprise/Establishment/1/"},
            "items": items, "payments": [], "history": [],
        })
    }

    /// Keeps Revel order `o-1` at `version`, with `items`.
    async fn kept_order(
        entities: &MemoryEntities,
        version: i64,
        items: serde_json::Value,
    ) -> EntityKey {
        let key = ("revel", revel::Entity::Order, "o-1");
        kept(entities, key, version, order_state(items)).await
    }

    fn sold_job(order: &EntityKey) -> JobMessage {
        serde_json::from_str(&job_body(JobKind::InventorySold, Some(order), Some(1))).unwrap()
    }

    #[tokio::test]
    async fn an_orders_stock_changes_go_once_per_product_with_stable_ids_and_a_replay_sends_nothing(
    ) {
        let entities = Arc::new(MemoryEntities::default());
        let items = serde_json::json!([
            {"product": "/resources/Product/5/", "quantity": 2},
            {"product": "/resources/Product/9/", "quantity": "3"},
            {"product": "/resources/Product/5/", "quantity": 1},
            {"product": "/resources/Product/7/", "quantity": 1, "voided_by": "/enterprise/User/5/"},
            {"product": null, "quantity": 1},
        ]);
        let order = kept_order(&entities, 1, items).await;
        let partner = Arc::new(MemoryPartner::default());
        let worker = delivering(entities.clone(), partner.clone());

        worker.run(&sold_job(&order), soon()).await.unwrap();
        worker.run(&sold_job(&order), soon()).await.unwrap();

        let sent = partner.sent();
        let read: Vec<(&str, &str, &serde_json::Value, &serde_json::Value)> = sent
            .iter()
            .map(|(_, body)| {
                let data = &body["data"];
                (
                    body["type"].as_str().unwrap(),
                    data["id"].as_str().unwrap(),
                    &data["state"]["quantity_sold"],
                    &data["state"]["establishment_id"],
                )
            })
            .collect();
        assert_eq!(
            read,
            [
                (
                    "revel.inventory.sold",
                    "o-1:product:5",
                    &serde_json::json!(3),
                    &serde_json::json!("1")
                ),
                (
                    "revel.inventory.sold",
                    "o-1:product:9",
                    &serde_json::json!(3),
                    &serde_json::json!("1")
                ),
            ],
            "voided items and items without a product sold nothing; the second run sent nothing"
        );
        let recorded = EntityKey::parse("revel:demo:inventory_sold:o-1").unwrap();
        assert_eq!(sent[0].0, message_id_of_part(&recorded, "5"));
        assert_eq!(sent[1].0, message_id_of_part(&recorded, "9"));
        assert_eq!(sent[0].1["data"]["kind"], "inventory_sold");
        assert_eq!(sent[0].1["data"]["state"]["order_id"], 417);

        // A later version of the order sells no more: its stock changes went.
        kept_order(
            &entities,
            2,
            serde_json::json!([{"product": "/resources/Product/5/", "quantity": 4}]),
        )
        .await;
        worker.run(&sold_job(&order), soon()).await.unwrap();
        assert_eq!(partner.sent().len(), 2);
    }

    #[tokio::test]
    async fn the_stock_a_partner_order_sold_is_not_sent_back_when_the_order_returns_from_revel() {
        use ports::sync_state::EchoLog;
        let entities = Arc::new(MemoryEntities::default());
        let items = serde_json::json!([{"product": 5, "quantity": 2}]);
        let order = kept_order(&entities, 1, items).await;
        let partner = Arc::new(MemoryPartner::default());
        let echoes = Arc::new(ports::fakes::MemoryEchoes::default());
        let mut worker = delivering(entities.clone(), partner.clone());
        worker.echoes = echoes.clone();
        // The bundle wrote this order to Revel (the partner's), at version 1.
        echoes.record_echo(&order, 1).await.unwrap();

        worker.run(&sold_job(&order), soon()).await.unwrap();

        assert!(partner.sent().is_empty(), "{:?}", partner.sent());
        // The order changed in Revel afterwards is Revel's change and goes to
        // the partner; the stock it sold still does not.
        kept_order(
            &entities,
            2,
            serde_json::json!([{"product": 5, "quantity": 3}]),
        )
        .await;
        worker.run(&sold_job(&order), soon()).await.unwrap();
        worker
            .run(&serde_json::from_str(&sync_job(&order)).unwrap(), soon())
            .await
            .unwrap();
        let types: Vec<serde_json::Value> = partner
            .sent()
            .into_iter()
            .map(|(_, b)| b["type"].clone())
            .collect();
        assert_eq!(types, [serde_json::json!("revel.order.changed")]);
    }

    #[tokio::test]
    async fn the_stock_of_an_order_carrying_the_partners_link_is_not_sent_even_when_revel_dated_it_anew(
    ) {
        let entities = Arc::new(MemoryEntities::default());
        let mut state = order_state(serde_json::json!([{"product": 5, "quantity": 2}]));
        state["order"]["external_sync"] = serde_json::json!("vinesos:O-9");
        // No echo recorded: Revel changed the order's date after the write.
        let order = kept(&entities, ("revel", revel::Entity::Order, "o-1"), 7, state).await;
        let partner = Arc::new(MemoryPartner::default());
        let worker = delivering(entities.clone(), partner.clone());

        worker.run(&sold_job(&order), soon()).await.unwrap();

        assert!(partner.sent().is_empty(), "{:?}", partner.sent());
        // A Revel order linked by another integration is Revel's own sale.
        let mut theirs = order_state(serde_json::json!([{"product": 5, "quantity": 2}]));
        theirs["order"]["external_sync"] = serde_json::json!("shopify:77");
        let other = kept(&entities, ("revel", revel::Entity::Order, "o-2"), 7, theirs).await;
        worker.run(&sold_job(&other), soon()).await.unwrap();
        assert_eq!(partner.sent().len(), 1);
    }

    #[tokio::test]
    async fn an_orders_stock_changes_interrupted_midway_are_sent_again_as_recorded_under_the_same_ids(
    ) {
        let entities = Arc::new(MemoryEntities::default());
        let items = serde_json::json!([
            {"product": 5, "quantity": 1},
            {"product": 9, "quantity": 2},
        ]);
        let order = kept_order(&entities, 1, items).await;
        let partner = Arc::new(MemoryPartner {
            fail_at: Some(1),
            ..MemoryPartner::default()
        });
        let worker = delivering(entities.clone(), partner.clone());

        let error = worker.run(&sold_job(&order), soon()).await.unwrap_err();
        assert!(matches!(
            error,
            JobError::Delivery(DeliveryError::Unavailable { .. })
        ));
        // The order changes before the retry: what was recorded is what goes.
        kept_order(
            &entities,
            2,
            serde_json::json!([{"product": 5, "quantity": 10}]),
        )
        .await;
        worker.run(&sold_job(&order), soon()).await.unwrap();

        let sent: Vec<(String, serde_json::Value)> = partner
            .sent()
            .into_iter()
            .map(|(id, body)| (id, body["data"]["state"]["quantity_sold"].clone()))
            .collect();
        let recorded = EntityKey::parse("revel:demo:inventory_sold:o-1").unwrap();
        let (five, nine) = (
            message_id_of_part(&recorded, "5"),
            message_id_of_part(&recorded, "9"),
        );
        assert_eq!(
            sent,
            [
                (five.clone(), serde_json::json!(1)),
                (five, serde_json::json!(1)),
                (nine, serde_json::json!(2)),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stock_changes_the_partner_cannot_take_now_come_back_after_the_backoff() {
        let entities = Arc::new(MemoryEntities::default());
        let items = serde_json::json!([{"product": 5, "quantity": 1}]);
        let order = kept_order(&entities, 1, items).await;
        let partner = Arc::new(MemoryPartner {
            fail_at: Some(0),
            ..MemoryPartner::default()
        });
        let fifo = fifo();
        let worker = Parts {
            partner: Some(partner.clone()),
            in_flight: fifo.clone(),
            ..Parts::new(entities.clone())
        }
        .build();
        let id = fifo.send(
            order.as_str(),
            &serde_json::to_string(&sold_job(&order)).unwrap(),
        );

        fails_and_comes_back_in(&worker, &fifo, &id, FIRST_BACKOFF).await;
        all_done_after(&worker, &fifo, FIRST_BACKOFF).await;
        assert_eq!(partner.sent().len(), 1);
        assert!(fifo.parked().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn stock_sold_by_an_order_not_revels_is_no_job_and_is_parked_at_once() {
        let entities = Arc::new(MemoryEntities::default());
        let theirs = kept(
            &entities,
            ("winesitting", winesitting::Entity::Order, "42"),
            1,
            serde_json::json!({}),
        )
        .await;
        let partner = Arc::new(MemoryPartner::default());
        let fifo = fifo();
        let worker = Parts {
            partner: Some(partner.clone()),
            in_flight: fifo.clone(),
            ..Parts::new(entities)
        }
        .build();
        let body = job_body(JobKind::InventorySold, Some(&theirs), Some(1));
        let id = fifo.send(theirs.as_str(), &body);

        assert!(invoke(&worker, &fifo).await.is_empty());

        assert_eq!(fifo.parked()[0].message_id, id);
        assert!(partner.sent().is_empty());
    }
}
