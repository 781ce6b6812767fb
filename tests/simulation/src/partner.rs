//! The partner system's webhook endpoint: keeps the newest revision of
//! each entity it hears of (the envelope carries `revision`), and, as
//! the seed decides, answers 5xx, hangs until the client's timeout, or
//! accepts a delivery while its answer is lost.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;
use shared::downstream::{DeliveryError, Partner};

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
