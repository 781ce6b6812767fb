//! WineSitting's repair poll: WineSitting sends each event once and never
//! retries, so a failed request is gone. This polls its API for the orders
//! still in progress and ingests, through the WineSitting receiver, those
//! whose kept state is missing or differs.

use domain::error::{DependencyError, ReceiveError};
use domain::ids::{EntityKey, InstanceName};
use domain::sources::{id_field, parse_timestamp_micros, strip_payment_card_fields};
use ports::store::EntityStore;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use vendors::winesitting::api::{WineSittingApiError, WineSittingOrders};
use vendors::winesitting::{self, NAME};

use crate::receive::{Outcome, Receiver};

/// What one repair run of one account did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// In-progress orders compared with the kept state.
    pub checked: u64,
    /// Orders ingested because their state was missing or differed.
    pub repaired: u64,
}

/// Why a repair run stopped. Holds no key and no order content.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("WineSitting orders could not be fetched: {0}")]
    Api(#[from] WineSittingApiError),
    #[error("the kept state could not be read: {0}")]
    Store(#[from] DependencyError),
    #[error("a repaired order could not be stored: {0}")]
    Receive(#[from] ReceiveError),
}

/// Fetches `account`'s orders still in progress and ingests, through
/// `receiver` (the WineSitting webhook's own pipeline, without
/// authentication), each one whose kept state is missing or differs from the
/// fetched order, as an `ORDER`/`UPDATE` event dated now. A second run with
/// nothing changed in between ingests nothing.
pub async fn repair(
    api: &dyn WineSittingOrders,
    account: &InstanceName,
    api_key: &str,
    receiver: &Receiver,
    entities: &dyn EntityStore,
) -> Result<RepairReport, RepairError> {
    let orders = api.orders_in_progress(api_key).await?;
    let mut report = RepairReport::default();
    let mut skipped: u64 = 0;
    for order in orders {
        let Some(id) = id_field(&order, "id") else {
            skipped += 1;
            continue;
        };
        let Ok(key) = EntityKey::new(NAME, account, winesitting::Entity::Order, &id) else {
            // Its webhook would be quarantined as well; nothing to repair.
            skipped += 1;
            continue;
        };
        report.checked += 1;
        let mut fetched = order;
        strip_payment_card_fields(&mut fetched);
        let up_to_date = match entities.get(&key).await? {
            None => false,
            Some(stored) => {
                serde_json::from_str::<Value>(&stored.state_json).is_ok_and(|kept| kept == fetched)
            }
        };
        if up_to_date {
            continue;
        }
        let body = json!({
            "type": "ORDER",
            "operation": "UPDATE",
            "object": fetched,
            // The order's own update time where it has one, so a later real
            // webhook (dated by WineSitting) is not taken for an older one.
            "date": fetched
                .get("updated_at")
                .or_else(|| fetched.get("updated_date"))
                .filter(|d| d.as_str().and_then(parse_timestamp_micros).is_some())
                .cloned()
                .unwrap_or_else(|| Value::String(now_rfc3339())),
        });
        let body = serde_json::to_vec(&body).expect("a JSON value serialises");
        let outcome = receiver
            .receive_fetched(account, body, format!("repair:{account}:{id}"))
            .await?;
        match outcome {
            Outcome::Accepted { .. } => {
                report.repaired += 1;
                tracing::info!(account = %account, order = %id, "WineSitting order repaired");
            }
            other => {
                tracing::warn!(account = %account, order = %id, outcome = other.as_str(),
                    "WineSitting order repair was not accepted");
            }
        }
    }
    tracing::info!(
        account = %account,
        checked = report.checked,
        repaired = report.repaired,
        skipped,
        "WineSitting repair poll done"
    );
    Ok(report)
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("the current UTC time formats as RFC 3339")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;
    use wiremock::matchers::{header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::fakes::MemoryAws;
    use crate::receive::Receiver;
    use ports::fakes::{MemoryEntities, MemoryEvents, MemoryQueue};
    use vendors::fakes::{
        winesitting_account as acct, winesitting_event as event, winesitting_request as request,
        winesitting_secrets as cache, WINESITTING_DATE as DATE,
    };
    use vendors::winesitting;
    use vendors::winesitting::api::WineSittingApi;
    use vendors::winesitting::{WineSitting, WineSittingEvent};

    struct Harness {
        receiver: Receiver,
        memory: MemoryAws,
        events: Arc<MemoryEvents>,
        entities: Arc<MemoryEntities>,
        queue: Arc<MemoryQueue>,
    }

    fn harness() -> Harness {
        let memory = MemoryAws::default();
        Harness {
            receiver: memory.receiver(
                Arc::new(WineSitting::new(cache())),
                Arc::new(WineSittingEvent),
            ),
            events: memory.events.clone(),
            entities: memory.entities.clone(),
            queue: memory.queue.clone(),
            memory,
        }
    }

    fn kept_order(h: &Harness, id: &str) -> Option<Value> {
        let key = EntityKey::new("winesitting", &acct(), winesitting::Entity::Order, id).unwrap();
        h.entities
            .get(&key)
            .map(|e| serde_json::from_str(&e.state.state_json).unwrap())
    }

    #[tokio::test]
    async fn a_duplicate_request_is_stored_once_and_queues_one_delivery_to_the_partner() {
        let h = harness();
        let body = event(
            "ORDER",
            "CREATE",
            json!({"id": 1, "status": "new"}),
            json!(DATE),
        );
        let webhook = request(&[("account", "acct"), ("token", "tok-new")], &body);

        let first = h.receiver.receive(&webhook).await.unwrap();
        let again = h.receiver.receive(&webhook).await.unwrap();
        h.memory.process_stream().await;

        let Outcome::Accepted { event_key } = first else {
            panic!("{first:?}")
        };
        assert_eq!(again, Outcome::Duplicate { event_key });
        assert_eq!(h.events.len(), 1);
        assert_eq!(kept_order(&h, "1").unwrap()["status"], "new");
        let jobs = h.queue.jobs.lock().unwrap().clone();
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0].message.job, ports::queue::JobKind::SyncEntity);
        assert_eq!(
            jobs[0].message.entity_key.as_deref(),
            Some("winesitting:acct:order:1")
        );
    }

    async fn mount_orders(server: &MockServer, orders: &Value) {
        server.reset().await;
        Mock::given(method("GET"))
            .and(path("/orders"))
            .and(query_param("status", "in_progress"))
            .and(header("authorization", "Bearer k-acct"))
            .respond_with(ResponseTemplate::new(200).set_body_json(orders))
            .mount(server)
            .await;
    }

    #[tokio::test]
    async fn the_repair_poll_ingests_exactly_the_missing_or_changed_orders_and_a_second_run_nothing(
    ) {
        let h = harness();
        // Kept from webhooks: "same" (its card number was never kept),
        // "changed" (now older than WineSitting's), "done" (no longer in
        // progress: not looked at).
        for object in [
            json!({"id": "same", "status": "in_progress", "lines": [{"sku": "A", "qty": 2}]}),
            json!({"id": "changed", "status": "in_progress", "lines": []}),
            json!({"id": "done", "status": "in_progress"}),
        ] {
            let body = event("ORDER", "CREATE", object, json!(DATE));
            let outcome = h
                .receiver
                .receive(&request(
                    &[("account", "acct"), ("token", "tok-new")],
                    &body,
                ))
                .await
                .unwrap();
            assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
        }
        h.memory.process_stream().await;
        let delivered_from_webhooks = h.queue.len();
        assert_eq!(
            delivered_from_webhooks, 3,
            "each kept order goes to the partner"
        );
        let in_progress = json!({"data": [
            {"id": "same", "status": "in_progress", "lines": [{"sku": "A", "qty": 2}], "card_number": "4242"},
            {"id": "changed", "status": "in_progress", "lines": [{"sku": "B", "qty": 1}]},
            {"id": "missing", "status": "in_progress"},
            {"status": "no id"},
        ]});
        let server = MockServer::start().await;
        mount_orders(&server, &in_progress).await;
        let api = WineSittingApi::new(server.uri(), Duration::from_secs(2));
        let events_before = h.events.len();

        let first = repair(&api, &acct(), "k-acct", &h.receiver, h.entities.as_ref())
            .await
            .unwrap();
        h.memory.process_stream().await;

        assert_eq!(
            first,
            RepairReport {
                checked: 3,
                repaired: 2
            }
        );
        assert_eq!(h.events.len(), events_before + 2);
        assert_eq!(
            kept_order(&h, "changed").unwrap()["lines"],
            json!([{"sku": "B", "qty": 1}])
        );
        assert_eq!(
            kept_order(&h, "missing").unwrap(),
            json!({"id": "missing", "status": "in_progress"})
        );
        assert!(kept_order(&h, "same").unwrap().get("card_number").is_none());
        let same =
            EntityKey::new("winesitting", &acct(), winesitting::Entity::Order, "same").unwrap();
        assert_eq!(
            h.entities.get(&same).unwrap().revision,
            1,
            "an equal order was rewritten"
        );
        assert_eq!(
            h.queue.len(),
            delivered_from_webhooks + 2,
            "each repaired order goes to the partner"
        );

        let second = repair(&api, &acct(), "k-acct", &h.receiver, h.entities.as_ref())
            .await
            .unwrap();
        h.memory.process_stream().await;

        assert_eq!(
            second,
            RepairReport {
                checked: 3,
                repaired: 0
            }
        );
        assert_eq!(h.events.len(), events_before + 2);
        assert_eq!(
            h.queue.len(),
            delivered_from_webhooks + 2,
            "nothing more to send"
        );
    }

    #[tokio::test]
    async fn a_repair_run_whose_api_refuses_the_key_stops_with_an_api_error_and_ingests_nothing() {
        let h = harness();
        let server = MockServer::start().await;
        Mock::given(path("/orders"))
            .respond_with(ResponseTemplate::new(401))
            .mount(&server)
            .await;
        let api = WineSittingApi::new(server.uri(), Duration::from_secs(2));

        let error = repair(&api, &acct(), "wrong", &h.receiver, h.entities.as_ref())
            .await
            .unwrap_err();

        assert!(
            matches!(
                error,
                RepairError::Api(WineSittingApiError::Unauthorized { status: 401 })
            ),
            "{error:?}"
        );
        assert!(h.events.is_empty());
    }

    #[tokio::test]
    async fn a_repair_run_with_the_entities_table_down_is_a_store_error() {
        let h = harness();
        let server = MockServer::start().await;
        mount_orders(&server, &json!([{"id": "o-1"}])).await;
        let api = WineSittingApi::new(server.uri(), Duration::from_secs(2));
        h.entities
            .down
            .store(true, std::sync::atomic::Ordering::SeqCst);

        let error = repair(&api, &acct(), "k-acct", &h.receiver, h.entities.as_ref())
            .await
            .unwrap_err();

        assert!(matches!(error, RepairError::Store(_)), "{error:?}");
        assert!(h.events.is_empty());
    }
}
