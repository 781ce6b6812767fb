//! The processor against in-memory stores that decide writes as DynamoDB
//! does and deduplicate like SQS FIFO: what a record leads to, and that a
//! record handed over again (AWS retries) changes nothing, or completes
//! what an earlier attempt left undone.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use vendors::revel;

use http::HeaderMap;
use serde_json::json;

use super::*;
use crate::fakes::MemoryAws;
use crate::receive::{Outcome, Receiver};
use domain::ids::EventKey;
use domain::request::WebhookRequest;
use ports::fakes::FixedSecrets;
use ports::secrets::SecretCache;
use ports::store::{EntityStore, EventStore};
use vendors::booking::{Booking, BookingFamily};
use vendors::fakes::{demo_revel, signed_revel_request};
use vendors::revel::RevelEventType;

fn revel(memory: &MemoryAws, kind: RevelEventType) -> Receiver {
    memory.receiver(Arc::new(demo_revel()), Arc::new(kind))
}

fn signed(body: &str) -> WebhookRequest {
    signed_revel_request(body)
}

fn customer(updated: &str, name: &str) -> String {
    format!(
        r#"{{"uuid": "c-1", "updated_date": "{updated}", "first_name": "{name}", "cc_last_4_digits": "4242"}}"#
    )
}

/// Receives `body` and returns the record it was stored as.
async fn stored(memory: &MemoryAws, receiver: &Receiver, body: &str) -> EventRecord {
    let outcome = receiver.receive(&signed(body)).await.unwrap();
    let (Outcome::Accepted { event_key } | Outcome::Conflict { event_key, .. }) = outcome else {
        panic!("{outcome:?}")
    };
    memory.events.get(&event_key).await.unwrap().unwrap()
}

fn entity_key(kind: revel::Entity, id: &str) -> EntityKey {
    EntityKey::new("revel", &InstanceName::parse("demo").unwrap(), kind, id).unwrap()
}

fn state(memory: &MemoryAws, key: &EntityKey) -> serde_json::Value {
    serde_json::from_str(&memory.entities.get(key).unwrap().state.state_json).unwrap()
}

#[tokio::test]
async fn a_new_record_keeps_its_entity_without_card_data_then_queues_its_follow_up_once() {
    let memory = MemoryAws::default();
    let receiver = revel(&memory, RevelEventType::CustomerCreated);
    let record = stored(&memory, &receiver, &customer("2021-12-28T21:05:13", "Ann")).await;
    let processor = memory.processor();

    let first = processor.process(&record).await.unwrap();
    let replay = processor.process(&record).await.unwrap();

    assert_eq!(
        first,
        Processed::Applied {
            upserted: Some(Upserted::Applied { revision: 1 }),
            job: Some(JobKind::SyncEntity)
        }
    );
    assert_eq!(
        replay,
        Processed::Applied {
            upserted: Some(Upserted::Repeated),
            job: Some(JobKind::SyncEntity)
        },
        "a replay queues again: the first attempt may have stopped before the queue"
    );
    assert_eq!(
        memory.queue.len(),
        1,
        "SQS FIFO drops the repeat in its window"
    );
    let key = entity_key(revel::Entity::Customer, "c-1");
    assert_eq!(state(&memory, &key)["first_name"], "Ann");
    assert!(state(&memory, &key).get("cc_last_4_digits").is_none());
    let job = memory.queue.jobs.lock().unwrap()[0].clone();
    assert_eq!(job.message.entity_key.as_deref(), Some(key.as_str()));
    assert_eq!(job.group_id, key.as_str());
}

/// Today's lost follow-up, the other way round: the entity write lands,
/// the queue fails, and the retried record must still queue the job (an
/// "already applied" entity is not a reason to skip it).
#[tokio::test]
async fn a_queue_failure_after_the_entity_write_is_completed_by_the_retry() {
    let memory = MemoryAws::default();
    let receiver = revel(&memory, RevelEventType::CustomerCreated);
    let record = stored(&memory, &receiver, &customer("2021-12-28T21:05:13", "Ann")).await;
    let processor = memory.processor();

    memory.queue.down.store(true, Ordering::SeqCst);
    let failed = processor.process(&record).await;
    memory.queue.down.store(false, Ordering::SeqCst);
    let retried = processor.process(&record).await.unwrap();

    assert!(matches!(failed, Err(ProcessError::Store(_))), "{failed:?}");
    assert_eq!(
        memory
            .entities
            .get(&entity_key(revel::Entity::Customer, "c-1"))
            .unwrap()
            .revision,
        1
    );
    assert!(matches!(
        retried,
        Processed::Applied {
            job: Some(JobKind::SyncEntity),
            ..
        }
    ));
    assert_eq!(memory.queue.len(), 1);
}

#[tokio::test]
async fn an_entity_store_failure_queues_nothing_so_no_job_can_run_ahead_of_its_state() {
    let memory = MemoryAws::default();
    let receiver = revel(&memory, RevelEventType::CustomerCreated);
    let record = stored(&memory, &receiver, &customer("2021-12-28T21:05:13", "Ann")).await;
    memory.entities.down.store(true, Ordering::SeqCst);

    let failed = memory.processor().process(&record).await;

    assert!(failed.is_err());
    assert!(memory.queue.is_empty());
}

#[tokio::test]
async fn an_older_change_arriving_late_leaves_the_newer_state_and_queues_nothing() {
    let memory = MemoryAws::default();
    let receiver = revel(&memory, RevelEventType::CustomerUpdated);
    let newer = stored(&memory, &receiver, &customer("2021-12-28T21:05:14", "New")).await;
    let older = stored(&memory, &receiver, &customer("2021-12-28T21:05:13", "Old")).await;
    let processor = memory.processor();

    processor.process(&newer).await.unwrap();
    let late = processor.process(&older).await.unwrap();

    assert_eq!(
        late,
        Processed::Applied {
            upserted: Some(Upserted::Stale),
            job: None
        }
    );
    assert_eq!(
        state(&memory, &entity_key(revel::Entity::Customer, "c-1"))["first_name"],
        "New"
    );
    assert_eq!(memory.queue.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn out_in_out_ends_out_as_three_changes_while_a_repeat_in_between_changes_nothing() {
    let memory = MemoryAws::default();
    let receiver = revel(&memory, RevelEventType::StockChanged);
    let out = r#"{"id": 7, "instock": false, "type": "product"}"#;
    let back_in = r#"{"id": 7, "instock": true, "type": "product"}"#;
    let key = entity_key(revel::Entity::ItemStock, "product:7");
    let processor = memory.processor();
    let mut upserts = Vec::new();
    for body in [out, out, back_in, out] {
        // Receipt times a second apart: the version of bodies with no date.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let record = stored(&memory, &receiver, body).await;
        let Processed::Applied { upserted, .. } = processor.process(&record).await.unwrap() else {
            panic!("applied")
        };
        upserts.push(upserted.unwrap());
    }

    assert_eq!(
        upserts,
        [
            Upserted::Applied { revision: 1 },
            Upserted::Unchanged { delivered: false },
            Upserted::Applied { revision: 2 },
            Upserted::Applied { revision: 3 },
        ]
    );
    assert_eq!(state(&memory, &key)["instock"], false);
    assert_eq!(memory.events.len(), 4, "each request is archived");
}

#[tokio::test(start_paused = true)]
async fn a_repeat_of_a_state_already_delivered_queues_no_job() {
    let memory = MemoryAws::default();
    let receiver = revel(&memory, RevelEventType::StockChanged);
    let out = r#"{"id": 7, "instock": false, "type": "product"}"#;
    let processor = memory.processor();
    let first = stored(&memory, &receiver, out).await;
    processor.process(&first).await.unwrap();
    let key = entity_key(revel::Entity::ItemStock, "product:7");
    memory.entities.mark_delivered(&key, 1).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let repeat = stored(&memory, &receiver, out).await;

    let processed = processor.process(&repeat).await.unwrap();

    assert_eq!(
        processed,
        Processed::Applied {
            upserted: Some(Upserted::Unchanged { delivered: true }),
            job: None
        }
    );
    assert_eq!(memory.queue.len(), 1);
    assert_eq!(
        memory.entities.get(&key).unwrap().rank.version,
        repeat.received_at_micros
    );
}

#[tokio::test]
async fn an_amendment_and_a_cancellation_of_the_same_second_end_cancelled_in_either_order() {
    let booking = |trigger: &str| {
        json!({"notification": {"event": "Bookings", "trigger": trigger, "occurred_at": "2026-11-24T10:00:00Z"},
               "data": {"id": "B-1", "pax": 2}})
        .to_string()
    };
    let mut ends = Vec::new();
    for order in [["Amendment", "Cancellation"], ["Cancellation", "Amendment"]] {
        let memory = MemoryAws::default();
        let secrets = SecretCache::new(
            FixedSecrets(r#"{"tours": {"token": "tok"}}"#.into()),
            Duration::from_secs(60),
        );
        let receiver = memory.receiver(
            Arc::new(Booking::new(secrets, "x-signature")),
            Arc::new(BookingFamily::Bookings),
        );
        for trigger in order {
            let request = WebhookRequest {
                headers: HeaderMap::new(),
                body: booking(trigger).into_bytes(),
                request_id: "r".into(),
                path_params: vec![
                    ("account".into(), "tours".into()),
                    ("token".into(), "tok".into()),
                ],
            };
            assert!(matches!(
                receiver.receive(&request).await.unwrap(),
                Outcome::Accepted { .. }
            ));
        }
        memory.process_stream().await;
        let key = EntityKey::new(
            "booking",
            &InstanceName::parse("tours").unwrap(),
            vendors::booking::Entity::Booking,
            "B-1",
        )
        .unwrap();
        let kept: serde_json::Value =
            serde_json::from_str(&memory.entities.get(&key).unwrap().state.state_json).unwrap();
        ends.push((kept["trigger"].clone(), kept["deleted"].clone()));
    }
    assert_eq!(ends[0], ends[1]);
    assert_eq!(ends[0], (json!("Cancellation"), json!(true)));
}

#[tokio::test]
async fn quarantined_records_and_kinds_this_code_does_not_know_are_skipped_not_retried() {
    let memory = MemoryAws::default();
    let receiver = revel(&memory, RevelEventType::CustomerCreated);
    let outcome = receiver.receive(&signed("{not json")).await.unwrap();
    let Outcome::Quarantined { event_key, .. } = outcome else {
        panic!("{outcome:?}")
    };
    let quarantined = memory.events.get(&event_key).await.unwrap().unwrap();
    let mut unknown = stored(&memory, &receiver, &customer("2021-12-28T21:05:13", "Ann")).await;
    unknown.event_type = "customer.merged".into();
    let processor = memory.processor();

    assert_eq!(
        processor.process(&quarantined).await.unwrap(),
        Processed::Skipped {
            reason: "quarantined"
        }
    );
    assert_eq!(
        processor.process(&unknown).await.unwrap(),
        Processed::Skipped {
            reason: "unknown_event_kind"
        }
    );
    assert!(memory.entities.is_empty() && memory.queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn every_menu_push_asks_for_a_catalog_pull_dated_by_its_receipt() {
    let memory = MemoryAws::default();
    let receiver = revel(&memory, RevelEventType::MenuUpdated);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        receiver
            .receive(&signed(r#"{"event":"menu.updated"}"#))
            .await
            .unwrap();
    }

    memory.process_stream().await;

    let jobs = memory.queue.jobs.lock().unwrap().clone();
    let pushes: Vec<i64> = memory
        .events
        .all()
        .iter()
        .map(|r| r.received_at_micros)
        .collect();
    let mut asked: Vec<i64> = jobs.iter().map(|j| j.message.version.unwrap()).collect();
    asked.sort();
    let mut pushes_sorted = pushes.clone();
    pushes_sorted.sort();
    assert_eq!(
        asked, pushes_sorted,
        "the worker coalesces them, not the processor"
    );
    assert!(jobs.iter().all(|j| j.message.job == JobKind::CatalogPull));
}

/// Marks a stored record quarantined for `reason`, as an older version of
/// the code did, replays it twice and processes what the stream then holds.
async fn replay_as_once_quarantined(memory: &MemoryAws, key: &EventKey, reason: &str) {
    {
        let mut records = memory.events.records.lock().unwrap();
        let record = records.get_mut(key).unwrap();
        record.status = EventStatus::Quarantined;
        record.quarantine_reason = Some(reason.into());
    }
    memory.events.stream.lock().unwrap().clear();
    let record = memory.events.get(key).await.unwrap().unwrap();
    let plan = crate::replay::plan(&record);
    assert!(
        matches!(plan.action, crate::replay::ReplayAction::Apply { .. }),
        "{plan:?}"
    );

    let clock = domain::clock::SystemClock;
    crate::replay::replay(memory.events.as_ref(), &clock, plan.clone())
        .await
        .unwrap();
    let again = crate::replay::replay(memory.events.as_ref(), &clock, plan).await;
    memory.process_stream().await;

    assert!(
        matches!(again, Err(crate::replay::ReplayError::Changed)),
        "taken back once"
    );
}

#[tokio::test]
async fn a_replayed_quarantine_that_the_code_now_understands_is_applied_once() {
    let memory = MemoryAws::default();
    let receiver = revel(&memory, RevelEventType::CustomerCreated);
    let stored_record = stored(&memory, &receiver, &customer("2021-12-28T21:05:13", "Ann")).await;

    replay_as_once_quarantined(&memory, &stored_record.event_key, "missing_customer_uuid").await;

    assert_eq!(
        memory
            .entities
            .get(&entity_key(revel::Entity::Customer, "c-1"))
            .unwrap()
            .revision,
        1
    );
    assert_eq!(memory.queue.len(), 1);
}

/// Records the receiver once quarantined because `X-Revel-Event-Type`
/// named another type than the route: the route decides now, so a replay
/// applies them.
#[tokio::test]
async fn a_record_once_quarantined_for_a_header_naming_another_type_is_applied_on_replay() {
    let memory = MemoryAws::default();
    let receiver = revel(&memory, RevelEventType::CustomerCreated);
    let mut request = signed(&customer("2021-12-28T21:05:13", "Ann"));
    request.headers.insert(
        vendors::revel::EVENT_TYPE_HEADER,
        http::HeaderValue::from_static("customer.new"),
    );
    let Outcome::Accepted { event_key } = receiver.receive(&request).await.unwrap() else {
        panic!("the route decides the type")
    };
    let record = memory.events.get(&event_key).await.unwrap().unwrap();
    assert_eq!(
        record
            .headers
            .get(vendors::revel::EVENT_TYPE_HEADER)
            .map(String::as_str),
        Some("customer.new"),
        "the header is archived as sent"
    );

    replay_as_once_quarantined(&memory, &event_key, "event_type_mismatch").await;

    let key = entity_key(revel::Entity::Customer, "c-1");
    assert_eq!(memory.entities.get(&key).unwrap().revision, 1);
    assert_eq!(state(&memory, &key)["first_name"], "Ann");
    assert_eq!(memory.queue.len(), 1);
}

/// The jobs queued so far: (kind, entity key).
fn queued(memory: &MemoryAws) -> Vec<(JobKind, String)> {
    memory
        .queue
        .jobs
        .lock()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j.message.job,
                j.message.entity_key.clone().unwrap_or_default(),
            )
        })
        .collect()
}

const SEED_ORDER: &str = include_str!("../../../../events/payloads/order-finalized.json");

#[tokio::test]
async fn an_orders_reward_data_updates_its_rewards_card_newest_wins_by_the_cards_own_date_and_it_is_delivered(
) {
    let memory = MemoryAws::default();
    let orders = revel(&memory, RevelEventType::OrderFinalized);
    let cards = revel(&memory, RevelEventType::RewardCardCreated);
    let order = stored(&memory, &orders, SEED_ORDER).await;
    let card = |points: u32, updated: &str| {
        json!({"id": 15, "number": "J87YUIL9812X", "current_points": points, "updated_date": updated})
            .to_string()
    };
    // The card's own webhook: one older, one newer than the order's reward data
    // (2016-04-13T17:29:15+00:00).
    let older = stored(&memory, &cards, &card(120, "2016-04-13T17:00:00+00:00")).await;
    let newer = stored(&memory, &cards, &card(90, "2016-04-13T18:00:00+00:00")).await;
    let processor = memory.processor();
    let key = entity_key(revel::Entity::RewardsCard, "15");

    processor.process(&older).await.unwrap();
    processor.process(&order).await.unwrap();

    assert_eq!(
        state(&memory, &key)["current_points"],
        106,
        "the order's card is newer"
    );
    assert_eq!(memory.entities.get(&key).unwrap().revision, 2);
    let order_key = entity_key(revel::Entity::Order, "c3d0ad74-1737-42c3-a352-4a45449a67af");
    assert_eq!(
        queued(&memory),
        [
            (JobKind::SyncEntity, key.to_string()),
            (JobKind::SyncEntity, order_key.to_string()),
            (JobKind::SyncEntity, key.to_string()),
            (JobKind::InventorySold, order_key.to_string()),
        ],
        "the card's new state is delivered like any card's; the order's stock job follows the order"
    );
    let order_jobs: Vec<QueuedJob> = memory.queue.jobs.lock().unwrap()[1..].to_vec();
    assert_eq!(
        order_jobs[0].group_id, order_jobs[2].group_id,
        "in the order's group"
    );

    // A replay of the order changes nothing and queues nothing new.
    processor.process(&order).await.unwrap();
    assert_eq!(memory.entities.get(&key).unwrap().revision, 2);
    assert_eq!(memory.queue.len(), 4);

    // The card's newer webhook wins over the order's data.
    processor.process(&newer).await.unwrap();
    assert_eq!(state(&memory, &key)["current_points"], 90);
    assert_eq!(memory.entities.get(&key).unwrap().revision, 3);
}

#[tokio::test]
async fn an_order_arriving_after_a_newer_card_webhook_leaves_the_card_as_the_webhook_said() {
    let memory = MemoryAws::default();
    let orders = revel(&memory, RevelEventType::OrderFinalized);
    let cards = revel(&memory, RevelEventType::RewardCardCreated);
    stored(
        &memory,
        &cards,
        &json!({"id": 15, "current_points": 90, "updated_date": "2016-04-13T18:00:00+00:00"})
            .to_string(),
    )
    .await;
    stored(&memory, &orders, SEED_ORDER).await;
    memory.process_stream().await;

    let key = entity_key(revel::Entity::RewardsCard, "15");
    assert_eq!(state(&memory, &key)["current_points"], 90);
    assert_eq!(memory.entities.get(&key).unwrap().revision, 1);
    let card_jobs = queued(&memory)
        .into_iter()
        .filter(|(_, entity)| *entity == key.to_string())
        .count();
    assert_eq!(
        card_jobs, 1,
        "the order's older card data queues no delivery"
    );
}

#[tokio::test]
async fn an_order_that_sold_no_product_queues_no_stock_job() {
    let memory = MemoryAws::default();
    let orders = revel(&memory, RevelEventType::OrderFinalized);
    let body = json!({"orderInfo": {"uuid": "o-1", "updated_date": "2016-04-13T10:29:19"},
                      "items": [{"product": null, "quantity": 1}]})
    .to_string();
    stored(&memory, &orders, &body).await;
    memory.process_stream().await;
    assert_eq!(
        queued(&memory),
        [(
            JobKind::SyncEntity,
            entity_key(revel::Entity::Order, "o-1").to_string()
        )]
    );
}

#[tokio::test]
async fn a_source_whose_deliveries_are_switched_off_is_kept_and_not_queued_for_the_partner() {
    let memory = MemoryAws::default();
    let secrets = SecretCache::new(
        FixedSecrets(r#"{"tours": {"token": "tok"}}"#.into()),
        Duration::from_secs(60),
    );
    let receiver = memory.receiver(
        Arc::new(Booking::new(secrets, "x-signature")),
        Arc::new(BookingFamily::Bookings),
    );
    let request = WebhookRequest {
        headers: HeaderMap::new(),
        body: json!({"notification": {"event": "Bookings", "trigger": "Amendment", "occurred_at": "2026-11-24T10:00:00Z"},
                     "data": {"id": "B-1", "pax": 2}})
        .to_string()
        .into_bytes(),
        request_id: "r".into(),
        path_params: vec![
            ("account".into(), "tours".into()),
            ("token".into(), "tok".into()),
        ],
    };
    let Outcome::Accepted { event_key } = receiver.receive(&request).await.unwrap() else {
        panic!("stored")
    };
    let record = memory.events.get(&event_key).await.unwrap().unwrap();

    let off = memory
        .processor()
        .with_deliveries(crate::config::PartnerDeliveries::all_but(&["booking"]));
    let processed = off.process(&record).await.unwrap();

    assert!(
        matches!(
            processed,
            Processed::Applied {
                upserted: Some(Upserted::Applied { .. }),
                job: None
            }
        ),
        "{processed:?}"
    );
    assert!(memory.queue.is_empty());
    let on = memory.processor();
    let processed = on.process(&record).await.unwrap();
    assert_eq!(
        processed,
        Processed::Applied {
            upserted: Some(Upserted::Repeated),
            job: Some(JobKind::SyncEntity)
        },
        "switched on, the same record is queued for the partner"
    );
}

mod stream {
    use super::*;
    use aws_lambda_events::event::dynamodb::{Event, EventRecord as StreamRecord};

    fn stream_record(name: &str, sequence: &str, image: serde_dynamo::Item) -> StreamRecord {
        let mut record = StreamRecord::default();
        record.event_name = name.into();
        record.change.sequence_number = Some(sequence.into());
        record.change.new_image = image;
        record
    }

    fn image(record: &EventRecord) -> serde_dynamo::Item {
        serde_dynamo::to_item(record).unwrap()
    }

    #[tokio::test]
    async fn a_batch_stops_at_the_first_failure_and_reports_its_sequence_number() {
        let memory = MemoryAws::default();
        let receiver = revel(&memory, RevelEventType::CustomerUpdated);
        let a = stored(&memory, &receiver, &customer("2021-12-28T21:05:13", "A")).await;
        let b = stored(&memory, &receiver, &customer("2021-12-28T21:05:14", "B")).await;
        let mut broken = b.clone();
        broken.body = b"{not json".to_vec();
        broken.body_bytes = 9;
        let mut event = Event::default();
        event.records = vec![
            stream_record(
                "REMOVE",
                "100",
                serde_dynamo::Item::from(std::collections::HashMap::<
                    String,
                    serde_dynamo::AttributeValue,
                >::new()),
            ),
            stream_record("INSERT", "101", image(&a)),
            stream_record(
                "INSERT",
                "102",
                serde_dynamo::Item::from(std::collections::HashMap::from([(
                    "event_key".to_string(),
                    serde_dynamo::AttributeValue::S("not a record".into()),
                )])),
            ),
            stream_record("INSERT", "103", image(&broken)),
            stream_record("INSERT", "104", image(&b)),
        ];
        let processor = memory.processor();
        // The entities table fails from the second upsert on.
        let failing = Arc::new(FailAfter {
            store: memory.entities.clone(),
            left: std::sync::atomic::AtomicUsize::new(1),
        });
        let processor_failing = Processor::new(failing, memory.queue.clone());

        let response = super::super::stream::handle_batch(&processor_failing, event.clone()).await;

        let reported: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(
            reported,
            [Some("104".to_owned())],
            "removals, unreadable images and skips pass; 104 fails"
        );
        assert!(memory
            .entities
            .get(&entity_key(revel::Entity::Customer, "c-1"))
            .unwrap()
            .state
            .state_json
            .contains("\"A\""));
        let retried = super::super::stream::handle_batch(&processor, event).await;
        assert!(retried.batch_item_failures.is_empty());
        assert_eq!(
            state(&memory, &entity_key(revel::Entity::Customer, "c-1"))["first_name"],
            "B"
        );
    }

    /// An entities table that answers `left` upserts, then fails.
    struct FailAfter {
        store: Arc<ports::fakes::MemoryEntities>,
        left: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl EntityStore for FailAfter {
        async fn upsert(&self, change: &EntityUpsert) -> Result<Upserted, DependencyError> {
            if self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err()
            {
                return Err(DependencyError::new("dynamodb", "UpdateItem", "throttled"));
            }
            self.store.upsert(change).await
        }
        async fn get(
            &self,
            key: &EntityKey,
        ) -> Result<Option<ports::store::StoredEntity>, DependencyError> {
            EntityStore::get(self.store.as_ref(), key).await
        }
        async fn mark_delivered(
            &self,
            key: &EntityKey,
            revision: u64,
        ) -> Result<bool, DependencyError> {
            self.store.mark_delivered(key, revision).await
        }
    }
}
