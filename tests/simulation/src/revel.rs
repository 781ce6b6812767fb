//! Revel's REST API: resources per instance, looked up by field filters
//! and `updated_date__gte`, paged by offset; creates and updates that give
//! the object an id (and a uuid where Revel has one) and a new
//! `updated_date`. As the seed decides it answers 429/503, hangs, or
//! creates an object while the answer is lost (the client reports that
//! create as ambiguous).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use domain::clock::Clock;
use domain::ids::InstanceName;
use domain::sources::parse_timestamp_micros;
use serde_json::{Map, Value};
use time::macros::format_description;
use time::OffsetDateTime;
use vendors::revel::api::{ApiCredentials, Page, PageRequest, RevelApiError, RevelResources};

use crate::faults::{Faults, Injected, Service};

/// Objects per page.
const PAGE_SIZE: usize = 20;

/// A timestamp as Revel writes `updated_date` (UTC, microseconds).
pub fn revel_date(micros: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .expect("simulated times are in range");
    at.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
    ))
    .expect("a fixed format formats")
}

#[derive(Default)]
struct Store {
    /// (instance, resource) -> objects.
    objects: BTreeMap<(String, String), Vec<Value>>,
    next_id: u64,
}

pub struct SimRevel {
    store: Mutex<Store>,
    faults: Arc<Faults>,
    clock: Arc<dyn Clock>,
}

fn matches(object: &Value, field: &str, wanted: &str) -> bool {
    if field == "updated_date__gte" {
        let at = object
            .get("updated_date")
            .and_then(Value::as_str)
            .and_then(parse_timestamp_micros);
        return match (at, parse_timestamp_micros(wanted)) {
            (Some(at), Some(since)) => at >= since,
            _ => false,
        };
    }
    match object.get(field) {
        Some(Value::String(s)) => s == wanted,
        Some(Value::Number(n)) => n.to_string() == wanted,
        Some(Value::Bool(b)) => wanted.eq_ignore_ascii_case(&b.to_string()),
        _ => false,
    }
}

fn id_of(object: &Value) -> u64 {
    object.get("id").and_then(Value::as_u64).unwrap_or(0)
}

impl SimRevel {
    pub fn new(faults: Arc<Faults>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store: Mutex::new(Store {
                objects: BTreeMap::new(),
                // Ids the simulation gives its own objects stay below this.
                next_id: 10_000,
            }),
            faults,
            clock,
        }
    }

    /// A change made in Revel itself (an order finalized at the POS, a
    /// product edited): the object with the same `id` is replaced.
    pub fn put(&self, instance: &str, resource: &str, object: Value) {
        let mut store = self.store.lock().unwrap();
        let objects = store
            .objects
            .entry((instance.to_owned(), resource.to_owned()))
            .or_default();
        objects.retain(|o| id_of(o) != id_of(&object));
        objects.push(object);
    }

    /// Every object of a resource, by id.
    pub fn objects(&self, instance: &str, resource: &str) -> Vec<Value> {
        let store = self.store.lock().unwrap();
        let mut objects = store
            .objects
            .get(&(instance.to_owned(), resource.to_owned()))
            .cloned()
            .unwrap_or_default();
        objects.sort_by_key(id_of);
        objects
    }

    fn page_now(&self, instance: &InstanceName, request: &PageRequest) -> Page {
        let matching: Vec<Value> = self
            .objects(instance.as_str(), &request.resource)
            .into_iter()
            .filter(|o| {
                request
                    .filters
                    .iter()
                    .filter(|(field, _)| field != "order_by")
                    .all(|(field, wanted)| matches(o, field, wanted))
            })
            .collect();
        let from = (request.offset as usize).min(matching.len());
        let to = (from + PAGE_SIZE).min(matching.len());
        Page {
            objects: matching[from..to].to_vec(),
            next_offset: (to < matching.len()).then_some(to as u64),
            total_count: Some(matching.len() as u64),
        }
    }

    fn create_now(&self, instance: &InstanceName, resource: &str, body: &Value) -> Value {
        let mut object: Map<String, Value> = body.as_object().cloned().unwrap_or_default();
        let id = {
            let mut store = self.store.lock().unwrap();
            store.next_id += 1;
            store.next_id
        };
        object.insert("id".into(), Value::from(id));
        if matches!(resource, "Customer" | "Order") {
            object.insert("uuid".into(), Value::from(format!("rv-{id}")));
        }
        let now = revel_date(self.clock.now_micros());
        object.insert("created_date".into(), Value::from(now.clone()));
        object.insert("updated_date".into(), Value::from(now));
        let object = Value::Object(object);
        self.put(instance.as_str(), resource, object.clone());
        object
    }

    fn update_now(
        &self,
        instance: &InstanceName,
        resource: &str,
        id: &str,
        body: &Value,
    ) -> Option<Value> {
        let mut object = self
            .objects(instance.as_str(), resource)
            .into_iter()
            .find(|o| id_of(o).to_string() == id)?;
        let fields = object.as_object_mut().expect("objects are JSON objects");
        for (field, value) in body.as_object().into_iter().flatten() {
            fields.insert(field.clone(), value.clone());
        }
        fields.insert(
            "updated_date".into(),
            Value::from(revel_date(self.clock.now_micros())),
        );
        self.put(instance.as_str(), resource, object.clone());
        Some(object)
    }
}

/// What the HTTP client reports for a call the fault decided.
fn client_error(fault: Injected, write: bool) -> RevelApiError {
    match fault {
        Injected::Refused => RevelApiError::Unavailable {
            attempts: 3,
            last_status: Some(429),
        },
        Injected::Outage => RevelApiError::Unavailable {
            attempts: 3,
            last_status: Some(503),
        },
        Injected::TimedOut => RevelApiError::Unavailable {
            attempts: 3,
            last_status: None,
        },
        // A create that may have reached Revel is reported ambiguous; an
        // update is retried by the client (it is idempotent) and then
        // reported unavailable.
        Injected::LostAnswer if write => RevelApiError::Ambiguous { status: None },
        Injected::LostAnswer => RevelApiError::Unavailable {
            attempts: 3,
            last_status: None,
        },
    }
}

#[async_trait]
impl RevelResources for SimRevel {
    async fn page(
        &self,
        instance: &InstanceName,
        _credentials: &ApiCredentials,
        request: &PageRequest,
    ) -> Result<Page, RevelApiError> {
        let page = self
            .faults
            .call(Service::RevelApi, "GET", async {
                self.page_now(instance, request)
            })
            .await
            .map_err(|f| client_error(f, false))?;
        let filters: Vec<String> = request
            .filters
            .iter()
            .filter(|(f, _)| f != "order_by")
            .map(|(f, v)| format!("{f}={v}"))
            .collect();
        self.faults.note(format!(
            "revel GET {} [{}] offset {}: {} object(s)",
            request.resource,
            filters.join(" "),
            request.offset,
            page.objects.len()
        ));
        Ok(page)
    }

    async fn create(
        &self,
        instance: &InstanceName,
        _credentials: &ApiCredentials,
        resource: &str,
        body: &Value,
    ) -> Result<Value, RevelApiError> {
        let created = self
            .faults
            .call(Service::RevelApi, "POST", async {
                self.create_now(instance, resource, body)
            })
            .await
            .map_err(|f| client_error(f, true))?;
        self.faults.note(format!(
            "revel POST {resource}: created id {}",
            id_of(&created)
        ));
        Ok(created)
    }

    async fn update(
        &self,
        instance: &InstanceName,
        _credentials: &ApiCredentials,
        resource: &str,
        id: &str,
        body: &Value,
    ) -> Result<Value, RevelApiError> {
        let updated = self
            .faults
            .call(Service::RevelApi, "PATCH", async {
                self.update_now(instance, resource, id, body)
            })
            .await
            .map_err(|f| client_error(f, false))?;
        self.faults.note(format!(
            "revel PATCH {resource} {id}: {}",
            if updated.is_some() {
                "updated"
            } else {
                "not found"
            }
        ));
        updated.ok_or(RevelApiError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::tests::faults;
    use crate::faults::{Profile, Rates};
    use domain::clock::TokioClock;
    use serde_json::json;

    fn revel(profile: Profile) -> SimRevel {
        SimRevel::new(
            faults(profile),
            Arc::new(TokioClock::starting_at(crate::traffic::START)),
        )
    }

    fn lookup(field: &str, value: &str) -> PageRequest {
        PageRequest {
            resource: "Customer".into(),
            filters: vec![
                ("order_by".into(), "id".into()),
                (field.into(), value.into()),
            ],
            offset: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_created_object_gets_an_id_a_uuid_and_an_updated_date_and_is_found_by_its_fields() {
        let revel = revel(Profile::calm());
        let alpha = InstanceName::parse("alpha").unwrap();
        let credentials = ApiCredentials::new("k", "s");
        let created = revel
            .create(
                &alpha,
                &credentials,
                "Customer",
                &json!({"third_party_id": "vinesos:V-1"}),
            )
            .await
            .unwrap();
        assert!(created["id"].as_u64().is_some() && created["uuid"].is_string());
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let id = created["id"].to_string();
        let updated = revel
            .update(
                &alpha,
                &credentials,
                "Customer",
                &id,
                &json!({"first_name": "Ann"}),
            )
            .await
            .unwrap();
        assert!(updated["updated_date"].as_str() > created["updated_date"].as_str());
        let found = revel
            .page(
                &alpha,
                &credentials,
                &lookup("third_party_id", "vinesos:V-1"),
            )
            .await
            .unwrap();
        assert_eq!(found.objects, [updated]);
        let other = revel
            .page(
                &alpha,
                &credentials,
                &lookup("third_party_id", "vinesos:V-2"),
            )
            .await
            .unwrap();
        assert!(other.objects.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_whose_answer_is_lost_is_ambiguous_and_has_happened() {
        let lossy = Rates {
            lost_answer: 1.0,
            ..Rates::default()
        };
        let revel = revel(Profile::only(Service::RevelApi, lossy));
        let alpha = InstanceName::parse("alpha").unwrap();
        let result = revel
            .create(
                &alpha,
                &ApiCredentials::new("k", "s"),
                "Customer",
                &json!({"third_party_id": "vinesos:V-1"}),
            )
            .await;
        assert!(matches!(
            result,
            Err(RevelApiError::Ambiguous { status: None })
        ));
        assert_eq!(revel.objects("alpha", "Customer").len(), 1);
    }
}
