//! The partner system's webhook endpoint: keeps the newest revision of
//! each entity it hears of (the envelope carries `revision`), and, as
//! the seed decides, answers 5xx, hangs until the client's timeout, or
//! accepts a delivery while its answer is lost.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;
use vendors::vinesos::downstream::{DeliveryError, Partner};

use crate::faults::{Faults, Injected, Service};

/// (instance, kind, id) of an entity as the envelope names it.
pub type PartnerKey = (String, String, String);

/// What the partner holds of one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub revision: u64,
    pub version: i64,
    pub state: Value,
    pub message_id: String,
}

pub struct SimPartner {
    held: Mutex<BTreeMap<PartnerKey, Held>>,
    faults: Arc<Faults>,
}

impl SimPartner {
    pub fn new(faults: Arc<Faults>) -> Self {
        Self {
            held: Mutex::default(),
            faults,
        }
    }

    pub fn held(&self) -> BTreeMap<PartnerKey, Held> {
        self.held.lock().unwrap().clone()
    }

    /// Forgets what it holds of one entity (for the tests that show the
    /// checks fail when a delivery is missing).
    pub fn forget(&self, key: &PartnerKey) -> Option<Held> {
        self.held.lock().unwrap().remove(key)
    }

    /// Keeps a delivery if it is newer than what is held; what it did.
    fn keep(&self, key: PartnerKey, held: Held) -> &'static str {
        let mut all = self.held.lock().unwrap();
        match all.get(&key) {
            Some(current) if current.revision >= held.revision => {
                "kept the newer revision it holds"
            }
            _ => {
                all.insert(key, held);
                "accepted"
            }
        }
    }
}

#[async_trait]
impl Partner for SimPartner {
    async fn deliver(&self, message_id: &str, body: &[u8]) -> Result<(), DeliveryError> {
        let envelope: Value =
            serde_json::from_slice(body).expect("the worker delivers a JSON envelope");
        let data = &envelope["data"];
        let text = |field: &str| data[field].as_str().unwrap_or_default().to_owned();
        let key = (text("instance"), text("kind"), text("id"));
        let held = Held {
            revision: data["revision"].as_u64().unwrap_or_default(),
            version: data["version"].as_i64().unwrap_or_default(),
            state: data["state"].clone(),
            message_id: message_id.to_owned(),
        };
        let revision = held.revision;
        let label = format!("{}:{}:{} revision {revision}", key.0, key.1, key.2);
        let done = self
            .faults
            .call(Service::Partner, "POST", async { self.keep(key, held) })
            .await
            .map_err(|fault| match fault {
                Injected::Refused | Injected::Outage => {
                    DeliveryError::Unavailable { status: Some(503) }
                }
                Injected::LostAnswer | Injected::TimedOut => {
                    DeliveryError::Unavailable { status: None }
                }
            })?;
        self.faults.note(format!("partner got {label}: {done}"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::tests::faults;
    use crate::faults::{Profile, Rates};

    fn envelope(revision: u64, state: &str) -> Vec<u8> {
        serde_json::json!({"type": "revel.customer.changed", "data": {
            "instance": "alpha", "kind": "customer", "id": "c", "version": 1,
            "revision": revision, "state": {"name": state}}})
        .to_string()
        .into_bytes()
    }

    #[tokio::test(start_paused = true)]
    async fn the_partner_keeps_the_newest_revision_whatever_order_they_come_in() {
        let partner = SimPartner::new(faults(Profile::calm()));
        partner.deliver("m2", &envelope(2, "new")).await.unwrap();
        partner.deliver("m1", &envelope(1, "old")).await.unwrap();
        let held = partner.held();
        let kept = &held[&("alpha".into(), "customer".into(), "c".into())];
        assert_eq!(
            (kept.revision, kept.state["name"].as_str()),
            (2, Some("new"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_whose_answer_is_lost_is_kept_but_reported_unavailable() {
        let lossy = Rates {
            lost_answer: 1.0,
            ..Rates::default()
        };
        let partner = SimPartner::new(faults(Profile::only(Service::Partner, lossy)));
        assert_eq!(
            partner.deliver("m1", &envelope(1, "x")).await,
            Err(DeliveryError::Unavailable { status: None })
        );
        assert_eq!(partner.held().len(), 1);
        let refusing = Rates {
            refused: 1.0,
            ..Rates::default()
        };
        let partner = SimPartner::new(faults(Profile::only(Service::Partner, refusing)));
        assert_eq!(
            partner.deliver("m1", &envelope(1, "x")).await,
            Err(DeliveryError::Unavailable { status: Some(503) })
        );
        assert!(partner.held().is_empty());
    }
}
