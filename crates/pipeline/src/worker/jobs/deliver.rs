//! `sync_entity`: sends an entity's current state to the partner, unless
//! this version (or a newer one) already went, or it is the bundle's own
//! write to Revel coming back.

use crate::worker::envelope::{message_id, source_of, Envelope};
use crate::worker::{Disposition, JobError, Worker};
use domain::ids::{EntityKey, InstanceName};
use vendors::vinesos::downstream::DeliveryError;

/// The entity to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    pub instance: InstanceName,
    pub entity: EntityKey,
}

/// What becomes of a delivery the partner did not take: refused as invalid,
/// parked (it would be refused again); unavailable, retried; no partner URL,
/// held until one is set.
pub(crate) fn disposition(error: &DeliveryError) -> Disposition {
    match error {
        DeliveryError::Unavailable { .. } => Disposition::Retry,
        DeliveryError::Rejected { .. } => Disposition::Park,
        DeliveryError::NotConfigured => Disposition::Hold,
    }
}

impl Deliver {
    pub async fn run(self, worker: &Worker) -> Result<(), JobError> {
        let key = self.entity;
        let Some(entity) = worker.entities.get(&key).await? else {
            tracing::warn!(entity = %key, "entity to deliver is gone; nothing to send");
            return Ok(());
        };
        if entity.is_delivered() {
            tracing::info!(entity = %key, revision = entity.revision, "already delivered");
            return Ok(());
        }
        let source = source_of(&key);
        if worker.is_own_write(&key, entity.rank.version).await? {
            tracing::info!(entity = %key, version = entity.rank.version, "the bundle's own write coming back from Revel; not sent to the partner");
            worker
                .entities
                .mark_delivered(&key, entity.revision)
                .await?;
            return Ok(());
        }
        let partner = worker.partner()?;
        let state: serde_json::Value = serde_json::from_str(&entity.state_json)
            .map_err(|_| JobError::Malformed("stored state is not JSON"))?;
        let body = Envelope {
            event_type: format!("{source}.{}.changed", entity.kind),
            source,
            instance: self.instance.as_str(),
            kind: &entity.kind,
            id: &entity.entity_id,
            version: entity.rank.version,
            revision: entity.revision,
            event_key: entity.last_event_key.as_deref(),
            state,
        }
        .body(worker.clock.now());
        partner
            .deliver(&message_id(&key, entity.revision), &body)
            .await?;
        worker
            .entities
            .mark_delivered(&key, entity.revision)
            .await?;
        tracing::info!(entity = %key, revision = entity.revision, "delivered downstream");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use aws_lambda_events::event::sqs::SqsEvent;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use crate::worker::message_id;
    use crate::worker::testing::*;
    use ports::queue::{JobMessage, MAX_VISIBILITY_TIMEOUT};
    use ports::store::EntityStore;
    use vendors::winesitting;

    #[tokio::test]
    async fn a_version_already_delivered_is_not_sent_again() {
        let partner = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&partner)
            .await;
        let entities = Arc::new(MemoryEntities::default());
        let key = entity(&entities, "a", 5).await;
        let worker = worker(entities.clone(), Some(downstream(&partner.uri())));
        let job: JobMessage = serde_json::from_str(&sync_job(&key)).unwrap();
        for _ in 0..3 {
            worker.run(&job, soon()).await.unwrap();
        }
        assert_eq!(partner.received_requests().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn without_a_partner_url_a_delivery_waits_and_is_never_acknowledged_unsent() {
        let entities = Arc::new(MemoryEntities::default());
        let waiting = entity(&entities, "a", 1).await;
        let sent = entity(&entities, "b", 1).await;
        entities.mark_delivered(&sent, 1).await.unwrap();
        let worker = worker(entities.clone(), None);
        let job: JobMessage = serde_json::from_str(&sync_job(&waiting)).unwrap();

        let error = worker.run(&job, soon()).await.unwrap_err();

        assert!(error.is_delivery_unconfigured(), "{error}");
        let mut batch = SqsEvent::default();
        batch.records = vec![
            message("1", "revel:demo:customer:a", &sync_job(&waiting)),
            message("2", "revel:demo:customer:b", &sync_job(&sent)),
        ];
        assert_eq!(
            failed_ids(&worker, batch).await,
            ["1"],
            "with no dead-letter queue to park it in, it stays on the queue; one with nothing to send is done"
        );
        assert_eq!(
            EntityStore::get(entities.as_ref(), &waiting)
                .await
                .unwrap()
                .unwrap()
                .delivered_revision,
            None
        );
    }

    #[tokio::test]
    async fn a_winesitting_change_reaches_the_partner_in_the_same_envelope_named_for_its_source() {
        let entities = Arc::new(MemoryEntities::default());
        let key = kept(
            &entities,
            ("winesitting", winesitting::Entity::Order, "42"),
            7,
            serde_json::json!({"id": 42, "status": "in_progress"}),
        )
        .await;
        let partner = Arc::new(MemoryPartner::default());
        let worker = delivering(entities.clone(), partner.clone());

        worker
            .run(&serde_json::from_str(&sync_job(&key)).unwrap(), soon())
            .await
            .unwrap();

        let sent = partner.sent();
        assert_eq!(sent.len(), 1);
        let (id, body) = &sent[0];
        assert_eq!(*id, message_id(&key, 1));
        assert_eq!(body["type"], "winesitting.order.changed");
        let data = &body["data"];
        assert_eq!(
            (
                &data["source"],
                &data["kind"],
                &data["id"],
                &data["version"],
                &data["revision"]
            ),
            (
                &serde_json::json!("winesitting"),
                &serde_json::json!("order"),
                &serde_json::json!("42"),
                &serde_json::json!(7),
                &serde_json::json!(1)
            )
        );
        assert_eq!(data["state"]["status"], "in_progress");
    }

    /// A worker delivering to `partner`, its failures put off and parked in `fifo`.
    fn on_queue(
        entities: &Arc<MemoryEntities>,
        partner: Option<Arc<MemoryPartner>>,
        fifo: &Arc<MemoryFifo>,
    ) -> crate::worker::Worker {
        Parts {
            partner: partner.map(|p| p as _),
            in_flight: fifo.clone(),
            ..Parts::new(entities.clone())
        }
        .build()
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_the_partner_cannot_take_now_comes_back_after_the_backoff_and_goes_then() {
        let entities = Arc::new(MemoryEntities::default());
        let key = entity(&entities, "a", 1).await;
        let partner = Arc::new(MemoryPartner {
            fail_at: Some(0),
            ..MemoryPartner::default()
        });
        let fifo = fifo();
        let worker = on_queue(&entities, Some(partner.clone()), &fifo);
        let id = fifo.send(key.as_str(), &sync_job(&key));

        fails_and_comes_back_in(&worker, &fifo, &id, FIRST_BACKOFF).await;
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(invoke(&worker, &fifo).await.is_empty());
        assert!(partner.sent().is_empty(), "not back before its backoff");
        tokio::time::advance(Duration::from_secs(1)).await;

        assert!(invoke(&worker, &fifo).await.is_empty());
        assert_eq!(partner.sent().len(), 1);
        assert!(fifo.is_empty() && fifo.parked().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_the_partner_refuses_is_parked_at_once_and_its_group_goes_on() {
        let entities = Arc::new(MemoryEntities::default());
        let refused = entity(&entities, "a", 1).await;
        let next = entity(&entities, "b", 1).await;
        let partner = Arc::new(MemoryPartner {
            refuse: Some("a"),
            ..MemoryPartner::default()
        });
        let fifo = fifo();
        let worker = on_queue(&entities, Some(partner.clone()), &fifo);
        let parked = fifo.send("one-group", &sync_job(&refused));
        fifo.send("one-group", &sync_job(&next));

        assert!(
            invoke(&worker, &fifo).await.is_empty(),
            "nothing comes back"
        );

        let in_dlq: Vec<String> = fifo.parked().into_iter().map(|m| m.message_id).collect();
        assert_eq!(in_dlq, [parked]);
        assert_eq!(partner.sent().len(), 1, "b went, not held back behind a");
        assert_eq!(partner.sent()[0].1["data"]["id"], "b");
        assert!(fifo.is_empty());
        assert_eq!(entities.get(&refused).unwrap().delivered_revision, None);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_partner_url_a_delivery_is_parked_for_a_redrive_or_with_no_dead_letter_queue_waits_twelve_hours(
    ) {
        let entities = Arc::new(MemoryEntities::default());
        let key = entity(&entities, "a", 1).await;
        let fifo = fifo();
        let worker = on_queue(&entities, None, &fifo);
        let id = fifo.send(key.as_str(), &sync_job(&key));
        assert!(invoke(&worker, &fifo).await.is_empty());
        assert_eq!(fifo.parked().len(), 1);
        assert_eq!(fifo.parked()[0].message_id, id);

        let fifo = Arc::new(MemoryFifo::new(Duration::from_secs(360)).without_dead_letter_queue());
        let worker = on_queue(&entities, None, &fifo);
        let id = fifo.send(key.as_str(), &sync_job(&key));
        fails_and_comes_back_in(&worker, &fifo, &id, MAX_VISIBILITY_TIMEOUT).await;
        assert_eq!(entities.get(&key).unwrap().delivered_revision, None);
    }
}
