//! Applying the partner system's (VinesOS) changes to Revel through its REST
//! API: the other direction of the sync schedule ("Customer added on VOS",
//! "Members updated on VOS", "Orders added on VOS", "Inventory from VOS to
//! Revel", "Rewards added or used on VinesOS" as they come; "Products added
//! on VinesOS" and "Events added on VinesOS" at end of day, through
//! [`crate::pending`]).
//!
//! Never twice: each change first looks its Revel object up by a link the
//! bundle controls (`third_party_id` / `external_sync` = `vinesos:{id}`) or a
//! key the partner's data names (the card number, the product), then updates
//! it with absolute values, or creates it only when nothing was found; a
//! create whose outcome is unknown is retried through the queue, and the
//! retry's lookup finds what the first attempt made. The partner's entity
//! records the newest revision applied, so a re-run does nothing.
//!
//! Customers meet the first time: a partner customer whose link finds
//! nothing is looked for by email, then by phone (digits only), and a Revel
//! customer found that way is adopted (the link is written onto it) instead
//! of a second one being created. A Revel customer already linked to another
//! partner customer is never adopted.
//!
//! Orders carry their lines as `OrderItem`s (each product found by its
//! link), their payments as `Payment`s, and what Revel's resources can't
//! hold (a named tax breakdown, lines whose product isn't in Revel, payment
//! methods other than cash and card, a discount) in the order's `notes`.
//!
//! No ping-pong: every object the bundle writes is recorded in the echo log
//! with Revel's `updated_date`; when Revel's webhook for that change comes
//! back, the worker recognises it and does not send it to the partner.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use domain::error::DependencyError;
use domain::idempotency::sha256_hex;
use domain::ids::{EntityKey, InstanceName};
use domain::sources::{as_number, id_field, parse_local_micros};
use ports::store::EntityStore;
use ports::sync_state::EchoLog;
use vendors::revel::api::{ApiCredentials, PageRequest, RevelApiError, RevelResources};
use vendors::{revel, vinesos};

/// What links a Revel object to the partner's: `vinesos:{id}`.
pub fn link(partner_id: &str) -> String {
    format!("{}{partner_id}", vendors::vinesos::LINK_PREFIX)
}

/// Digits shorter than this are not a phone number anyone can be found by.
const MIN_PHONE_DIGITS: usize = 7;

/// How many pages a lookup reads at most.
const MAX_LOOKUP_PAGES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("Revel API: {0}")]
    Api(#[from] RevelApiError),
    #[error(transparent)]
    Store(#[from] DependencyError),
    #[error("the partner's {0} lacks what applying it needs")]
    Incomplete(&'static str),
    /// The partner's entity is no longer kept (nothing to apply).
    #[error("the partner's entity is gone")]
    Gone,
    /// The instance has no Revel API credentials (yet).
    #[error("no Revel API credentials for this instance")]
    NoCredentials,
    /// Something the change refers to is on its way to Revel: retried.
    #[error("{0} is not applied to Revel yet")]
    Waiting(&'static str),
}

impl ApplyError {
    /// Fails the same way every time it is tried: a change lacking what it
    /// needs, or one Revel refuses as invalid.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::Incomplete(_)
                | Self::Gone
                | Self::NoCredentials
                | Self::Api(RevelApiError::Rejected { .. } | RevelApiError::InvalidRequest(_))
        )
    }
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
    /// Found by something other than its link (a customer first created in
    /// Revel, found by email or phone; a product the partner names by its
    /// Revel id) and linked to the partner's object.
    Adopted {
        resource: &'static str,
        by: &'static str,
    },
    /// Found, holding every field already: nothing written.
    Unchanged {
        resource: &'static str,
    },
    /// This version (or a newer one) was applied before.
    AlreadyApplied,
    /// Nothing in Revel to apply it to (an unknown rewards card or product).
    NoTarget {
        resource: &'static str,
    },
    /// Kept for the instance's end-of-day batch ([`crate::pending`]).
    Deferred,
}

/// Another way to find the object when its link finds nothing.
struct Fallback {
    /// What it looks by, for the log: `email`, `phone`, `revel id`.
    by: &'static str,
    /// The filter it asks Revel for.
    query: (&'static str, String),
    /// Whether an object the query returned really is the one: an API that
    /// ignores a filter must not pick some other record.
    accepts: Box<dyn Fn(&Value) -> bool + Send + Sync>,
}

/// How one kind of partner entity maps onto a Revel resource.
struct Mapping {
    resource: &'static str,
    /// The Revel-side entity kind its webhooks use (for the echo log).
    revel_kind: revel::Entity,
    /// The filter that finds the Revel object this change is about.
    lookup: (&'static str, String),
    /// Where the lookup finds nothing: other ways to find the object.
    fallbacks: Vec<Fallback>,
    /// The fields to write (absolute values, so writing twice is harmless).
    fields: Map<String, Value>,
    /// Whether a missing object is created (or the change has no target).
    /// Only a mapping whose `lookup` is the bundle's own link creates: the
    /// link, written on the object, is how its next change finds it.
    creates: bool,
}

fn text<'a>(data: &'a Value, field: &str) -> Option<&'a str> {
    data.get(field)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A number the partner may send as a JSON number or a numeric string.
fn number(data: &Value, field: &str) -> Option<f64> {
    data.get(field).and_then(as_number)
}

/// Copies the partner's `ours` text fields into `fields` under Revel's names.
fn copy_text(fields: &mut Map<String, Value>, data: &Value, pairs: &[(&str, &str)]) {
    for (ours, theirs) in pairs {
        if let Some(value) = text(data, ours) {
            fields.insert((*theirs).into(), json!(value));
        }
    }
}

fn copy_numbers(fields: &mut Map<String, Value>, data: &Value, pairs: &[(&str, &str)]) {
    for (ours, theirs) in pairs {
        if let Some(value) = number(data, ours) {
            fields.insert((*theirs).into(), json!(value));
        }
    }
}

/// `/enterprise/Establishment/{n}/` of the partner's `establishment_id`.
fn establishment(data: &Value) -> Option<Value> {
    id_field(data, "establishment_id").map(|id| json!(format!("/enterprise/Establishment/{id}/")))
}

/// A phone number as digits only: `(123) 123-1234` and `123.123.1234` are one number.
pub fn phone_digits(raw: &str) -> String {
    raw.chars().filter(char::is_ascii_digit).collect()
}

/// Finds the object by the Revel id the partner names (it knows Revel's
/// products and events from the Revel → partner sync).
fn by_revel_id(data: &Value, field: &str) -> Option<Fallback> {
    let id = id_field(data, field)?;
    let wanted = id.clone();
    Some(Fallback {
        by: "revel id",
        query: ("id", id),
        accepts: Box::new(move |o| id_field(o, "id").as_deref() == Some(wanted.as_str())),
    })
}

fn customer(id: &str, data: &Value) -> Mapping {
    let mut fields = Map::new();
    copy_text(
        &mut fields,
        data,
        &[
            ("first_name", "first_name"),
            ("last_name", "last_name"),
            ("email", "email"),
            ("phone", "phone_number"),
        ],
    );
    fields.insert("third_party_id".into(), json!(link(id)));
    let mut fallbacks = Vec::new();
    if let Some(email) = text(data, "email") {
        let wanted = email.to_owned();
        fallbacks.push(Fallback {
            by: "email",
            // Revel's filters take `__iexact`: an address is one whatever its case.
            query: ("email__iexact", email.to_owned()),
            accepts: Box::new(move |o| {
                text(o, "email").is_some_and(|found| found.eq_ignore_ascii_case(&wanted))
            }),
        });
    }
    if let Some(phone) = text(data, "phone") {
        let digits = phone_digits(phone);
        if digits.len() >= MIN_PHONE_DIGITS {
            // Revel keeps the number as typed (`(123) 123-1234`,
            // `123.123.1234`): asked for by its last four digits, which end
            // every way of writing it, then compared as digits.
            let last_four = digits[digits.len() - 4..].to_owned();
            fallbacks.push(Fallback {
                by: "phone",
                query: ("phone_number__endswith", last_four),
                accepts: Box::new(move |o| {
                    text(o, "phone_number").is_some_and(|found| phone_digits(found) == digits)
                }),
            });
        }
    }
    Mapping {
        resource: "Customer",
        revel_kind: revel::Entity::Customer,
        lookup: ("third_party_id", link(id)),
        fallbacks,
        fields,
        creates: true,
    }
}

fn product(id: &str, data: &Value) -> Result<Mapping, ApplyError> {
    let mut fields = Map::new();
    let name = text(data, "name").ok_or(ApplyError::Incomplete("product name"))?;
    fields.insert("name".into(), json!(name));
    copy_text(
        &mut fields,
        data,
        &[
            ("sku", "sku"),
            ("barcode", "barcode"),
            ("description", "description"),
        ],
    );
    copy_numbers(&mut fields, data, &[("price", "price"), ("cost", "cost")]);
    if let Some(active) = data.get("active").and_then(Value::as_bool) {
        fields.insert("active".into(), json!(active));
    }
    if let Some(at) = establishment(data) {
        fields.insert("establishment".into(), at);
    }
    if let Some(category) = id_field(data, "revel_category_id") {
        fields.insert(
            "category".into(),
            json!(format!("/products/ProductCategory/{category}/")),
        );
    }
    fields.insert("third_party_id".into(), json!(link(id)));
    Ok(Mapping {
        resource: "Product",
        revel_kind: revel::Entity::Product,
        lookup: ("third_party_id", link(id)),
        fallbacks: by_revel_id(data, "revel_product_id").into_iter().collect(),
        fields,
        creates: true,
    })
}

fn event(id: &str, data: &Value) -> Result<Mapping, ApplyError> {
    let mut fields = Map::new();
    let name = text(data, "name").ok_or(ApplyError::Incomplete("event name"))?;
    fields.insert("name".into(), json!(name));
    copy_text(
        &mut fields,
        data,
        &[
            ("start_date", "start_date"),
            ("end_date", "end_date"),
            ("description", "description"),
        ],
    );
    if let Some(at) = establishment(data) {
        fields.insert("establishment".into(), at);
    }
    fields.insert("third_party_id".into(), json!(link(id)));
    Ok(Mapping {
        resource: "Event",
        revel_kind: revel::Entity::Event,
        lookup: ("third_party_id", link(id)),
        fallbacks: by_revel_id(data, "revel_event_id").into_iter().collect(),
        fields,
        creates: true,
    })
}

fn mapping(kind: vinesos::Entity, id: &str, data: &Value) -> Result<Mapping, ApplyError> {
    match kind {
        vinesos::Entity::Customer => Ok(customer(id, data)),
        vinesos::Entity::Product => product(id, data),
        vinesos::Entity::Event => event(id, data),
        vinesos::Entity::Reward => {
            // Not `card_number`: that is a payment card's name, never kept.
            let card = text(data, "reward_card_number")
                .ok_or(ApplyError::Incomplete("reward reward_card_number"))?;
            let points = data
                .get("points")
                .and_then(Value::as_f64)
                .ok_or(ApplyError::Incomplete("reward points"))?;
            Ok(Mapping {
                resource: "RewardsCard",
                revel_kind: revel::Entity::RewardsCard,
                lookup: ("number", card.to_owned()),
                fallbacks: Vec::new(),
                fields: object(json!({"current_points": points})),
                creates: false,
            })
        }
        vinesos::Entity::Inventory => {
            let product = id_field(data, "revel_product_id")
                .ok_or(ApplyError::Incomplete("inventory revel_product_id"))?;
            let quantity = data
                .get("quantity")
                .and_then(Value::as_f64)
                .ok_or(ApplyError::Incomplete("inventory quantity"))?;
            Ok(Mapping {
                resource: "CurrentStock",
                revel_kind: revel::Entity::Inventory,
                lookup: ("product", format!("/resources/Product/{product}/")),
                fallbacks: Vec::new(),
                fields: object(json!({"quantity": quantity})),
                creates: false,
            })
        }
        // An order is written by `apply_order`; a request is pulled for,
        // never applied.
        vinesos::Entity::Order | vinesos::Entity::InventoryRequest => {
            Err(ApplyError::Incomplete("entity kind"))
        }
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn matches_lookup(object: &Value, field: &str, wanted: &str) -> bool {
    match object.get(field) {
        Some(Value::String(s)) => s == wanted,
        Some(Value::Number(n)) => n.to_string() == wanted,
        _ => false,
    }
}

/// Whether Revel's `found` already holds `wanted` (numbers compared as
/// numbers: Revel writes prices as `"24.000000"`).
fn same_value(found: Option<&Value>, wanted: &Value) -> bool {
    let Some(found) = found else {
        return false;
    };
    if found == wanted {
        return true;
    }
    match (as_number(found), as_number(wanted)) {
        (Some(a), Some(b)) if wanted.is_number() || found.is_number() => (a - b).abs() < 1e-9,
        _ => false,
    }
}

/// The fields of `wanted` that `found` doesn't hold yet.
fn differences(found: &Value, wanted: &Map<String, Value>) -> Map<String, Value> {
    wanted
        .iter()
        .filter(|(field, value)| !same_value(found.get(field.as_str()), value))
        .map(|(field, value)| (field.clone(), value.clone()))
        .collect()
}

/// The smallest id first: of several candidates, the oldest object.
fn by_id(object: &Value) -> u64 {
    id_field(object, "id")
        .and_then(|id| id.parse().ok())
        .unwrap_or(u64::MAX)
}

/// What a found object's link field says about adopting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// Empty: the link is written onto it.
    Free,
    /// Already this partner object's.
    Ours,
    /// Another partner object's: never adopted.
    Taken,
    /// Another integration's id: adopted, its link left as it is.
    Foreign,
}

fn link_state(object: &Value, field: &str, ours: &str) -> LinkState {
    match text(object, field) {
        None => LinkState::Free,
        Some(found) if found == ours => LinkState::Ours,
        Some(found) if found.starts_with(vendors::vinesos::LINK_PREFIX) => LinkState::Taken,
        Some(_) => LinkState::Foreign,
    }
}

/// The partner's kind a stored change spells. `vos_member` is how a
/// member's change was kept before members became customers (one entity
/// since 082e75a): such a change, still queued or parked, is a customer's.
fn partner_kind(stored: &str) -> Option<vinesos::Entity> {
    vinesos::Entity::parse(stored)
        .or_else(|| (stored == "vos_member").then_some(vinesos::Entity::Customer))
}

/// The uuid of a partner order's line or payment (`part`), the same on every
/// attempt: how a retry finds what an earlier one created. Its `order` is
/// spelled as it was when the first lines were created, not as the
/// partner's entity kind (`vos_order`): changing it would change the uuids
/// of what Revel already holds.
fn child_uuid(instance: &InstanceName, order: &str, part: &str, key: &str) -> Value {
    json!(derived_uuid(&format!(
        "{}:{instance}:order:{order}:{part}:{key}",
        vendors::vinesos::NAME
    )))
}

/// A name-based UUID (RFC 9562 version 8, from SHA-256) for an object the
/// bundle creates under a parent it found by link (an order's lines and
/// payments): the same line always gets the same uuid, so it is found again
/// instead of being created twice.
pub fn derived_uuid(name: &str) -> String {
    let hex = sha256_hex(name.as_bytes());
    let variant = (u8::from_str_radix(&hex[16..17], 16).unwrap_or(0) & 0x3) | 0x8;
    format!(
        "{}-{}-8{}-{:x}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        variant,
        &hex[17..20],
        &hex[20..32]
    )
}

/// The Revel object a mapping found, and how.
struct Found {
    object: Value,
    by: Option<&'static str>,
    link: LinkState,
}

/// What [`Applier::write`] did, and the Revel id of the object written (as
/// far as the answers tell).
struct Written {
    applied: Applied,
    revel_id: Option<String>,
}

pub struct Applier {
    pub api: Arc<dyn RevelResources>,
    pub entities: Arc<dyn EntityStore>,
    pub echoes: Arc<dyn EchoLog>,
    /// Where each instance's time zone is read (its settings in Revel's
    /// secret document): Revel's answers date objects on the merchant's
    /// clock. UTC without.
    pub zones: Option<Arc<dyn ports::secrets::InstanceDocument>>,
}

/// What applying one entity came to: what was done, and the entity's
/// revision that is now applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub applied: Applied,
    pub revision: u64,
}

impl Applier {
    /// Applies the current state of the partner entity `key` to Revel, or,
    /// for the kinds the schedule applies at end of day (products, events),
    /// keeps it for the instance's batch.
    /// `credentials` are needed only to apply now: without them, a change
    /// for the batch is kept all the same.
    pub async fn apply(
        &self,
        instance: &InstanceName,
        credentials: Option<&ApiCredentials>,
        key: &EntityKey,
    ) -> Result<Applied, ApplyError> {
        let Some(entity) = self.entities.get(key).await? else {
            return Err(ApplyError::Gone);
        };
        if entity.is_delivered() {
            return Ok(Applied::AlreadyApplied);
        }
        if let Some(kind) = crate::pending::batched(&entity.kind) {
            crate::pending::PendingIndex::new(self.entities.as_ref())
                .add(instance, kind, &entity.entity_id, entity.revision)
                .await?;
            tracing::info!(%instance, entity = %key, revision = entity.revision, "partner change kept for the end-of-day batch");
            return Ok(Applied::Deferred);
        }
        let credentials = credentials.ok_or(ApplyError::NoCredentials)?;
        Ok(self
            .apply_entity(instance, credentials, key, entity)
            .await?
            .applied)
    }

    /// Applies the current state of `key` to Revel now, unless its revision
    /// was applied before.
    pub async fn apply_now(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        key: &EntityKey,
    ) -> Result<Outcome, ApplyError> {
        let Some(entity) = self.entities.get(key).await? else {
            return Err(ApplyError::Gone);
        };
        self.apply_entity(instance, credentials, key, entity).await
    }

    /// Applies `entity` (the current state of `key`, just read) to Revel.
    async fn apply_entity(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        key: &EntityKey,
        entity: ports::store::StoredEntity,
    ) -> Result<Outcome, ApplyError> {
        if entity.is_delivered() {
            return Ok(Outcome {
                applied: Applied::AlreadyApplied,
                revision: entity.delivered_revision.unwrap_or(entity.revision),
            });
        }
        let data: Value = serde_json::from_str(&entity.state_json)
            .map_err(|_| ApplyError::Incomplete("stored state"))?;
        // This revision of this change: what a lost create's retry shares.
        let attempt = format!("{key}@{}", entity.revision);
        let kind = partner_kind(&entity.kind).ok_or(ApplyError::Incomplete("entity kind"))?;
        let applied = if kind == vinesos::Entity::Order {
            self.apply_order(instance, credentials, &entity.entity_id, &data, &attempt)
                .await?
        } else {
            let map = mapping(kind, &entity.entity_id, &data)?;
            self.write(instance, credentials, &map, &attempt)
                .await?
                .applied
        };
        // Applied: a re-run of this job, or of an older one, does nothing.
        self.entities.mark_delivered(key, entity.revision).await?;
        tracing::info!(%instance, entity = %key, revision = entity.revision, outcome = ?applied, "partner change applied to Revel");
        Ok(Outcome {
            applied,
            revision: entity.revision,
        })
    }

    async fn page(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        resource: &str,
        filters: Vec<(String, String)>,
        offset: u64,
    ) -> Result<vendors::revel::api::Page, ApplyError> {
        let request = PageRequest {
            resource: resource.to_owned(),
            filters,
            offset,
        };
        Ok(self.api.page(instance, credentials, &request).await?)
    }

    /// The objects of `resource` filtered by `field = value`, from at most
    /// `max_pages` pages (a lookup by link or email finds one, by the end of
    /// a phone number a few: [`MAX_LOOKUP_PAGES`]; an order's children, all).
    async fn query(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        (resource, field, value): (&str, &str, &str),
        max_pages: usize,
    ) -> Result<Vec<Value>, ApplyError> {
        let mut objects = Vec::new();
        let mut offset = 0;
        for _ in 0..max_pages {
            let filters = vec![(field.to_owned(), value.to_owned())];
            let page = self
                .page(instance, credentials, resource, filters, offset)
                .await?;
            objects.extend(page.objects);
            match page.next_offset {
                Some(next) if next > offset => offset = next,
                _ => break,
            }
        }
        Ok(objects)
    }

    /// The object of `resource` whose `field` is `wanted` (the lowest id of
    /// several). Only an object that really has the value counts: an API
    /// that ignores an unknown filter must not pick some other record.
    async fn by_link(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        (resource, field, wanted): (&str, &str, &str),
    ) -> Result<Option<Value>, ApplyError> {
        Ok(self
            .query(
                instance,
                credentials,
                (resource, field, wanted),
                MAX_LOOKUP_PAGES,
            )
            .await?
            .into_iter()
            .filter(|o| matches_lookup(o, field, wanted))
            .min_by_key(by_id))
    }

    /// Looks the mapping's object up: by its lookup, then by each fallback.
    async fn find(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        map: &Mapping,
    ) -> Result<Option<Found>, ApplyError> {
        let (field, wanted) = (map.lookup.0, map.lookup.1.as_str());
        let by_lookup = self
            .by_link(instance, credentials, (map.resource, field, wanted))
            .await?;
        if let Some(object) = by_lookup {
            return Ok(Some(Found {
                object,
                by: None,
                link: LinkState::Ours,
            }));
        }
        for fallback in &map.fallbacks {
            let (filter, value) = &fallback.query;
            let candidate = self
                .query(
                    instance,
                    credentials,
                    (map.resource, filter, value),
                    MAX_LOOKUP_PAGES,
                )
                .await?
                .into_iter()
                .filter(|o| (fallback.accepts)(o))
                .map(|o| {
                    let state = link_state(&o, field, wanted);
                    (o, state)
                })
                .filter(|(_, state)| *state != LinkState::Taken)
                .min_by_key(|(o, _)| by_id(o));
            if let Some((object, link)) = candidate {
                return Ok(Some(Found {
                    object,
                    by: Some(fallback.by),
                    link,
                }));
            }
        }
        Ok(None)
    }

    /// Writes `map`'s object: found and updated, or created. `attempt`
    /// names this revision of the partner's change (see `record_create`).
    async fn write(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        map: &Mapping,
        attempt: &str,
    ) -> Result<Written, ApplyError> {
        let resource = map.resource;
        let found = self.find(instance, credentials, map).await?;
        let Some(found) = found else {
            if !map.creates {
                return Ok(Written {
                    applied: Applied::NoTarget { resource },
                    revel_id: None,
                });
            }
            let body = Value::Object(map.fields.clone());
            self.echoes.record_create(attempt).await?;
            let created = self
                .api
                .create(instance, credentials, resource, &body)
                .await?;
            // What it creates, it finds again by its link (`lookup`).
            if created.is_object() && !matches_lookup(&created, map.lookup.0, &map.lookup.1) {
                // Then the next change of this object can't find it by link.
                tracing::error!(%instance, resource, field = map.lookup.0, "Revel's answer to a create does not hold the link the bundle wrote; a later change of this object may create it again");
            }
            self.remember_echo(instance, map, &created).await?;
            return Ok(Written {
                applied: Applied::Created { resource },
                revel_id: id_field(&created, "id"),
            });
        };
        let Some(revel_id) = id_field(&found.object, "id") else {
            return Err(ApplyError::Api(RevelApiError::InvalidResponse(
                "a found object has no id",
            )));
        };
        let mut fields = map.fields.clone();
        if found.link == LinkState::Foreign {
            // Another integration links this object by the same field:
            // its link stays, and this one is found by the fallback again.
            fields.remove(map.lookup.0);
            tracing::warn!(%instance, resource, field = map.lookup.0, "adopted an object another integration links by the same field; its link is kept");
        }
        let changes = differences(&found.object, &fields);
        let applied = match found.by {
            Some(by) => Applied::Adopted { resource, by },
            None if changes.is_empty() => Applied::Unchanged { resource },
            None => Applied::Updated { resource },
        };
        if changes.is_empty() {
            // Found by its link holding every field, after this very change
            // was sent as a create: the create landed and its answer was
            // lost, so this version is the bundle's write and its webhook an
            // echo. Otherwise the version may be someone else's edit (of
            // fields the partner doesn't send), which must reach the partner.
            if found.by.is_none() && self.echoes.created_for(attempt).await? {
                self.remember_echo(instance, map, &found.object).await?;
            }
            return Ok(Written {
                applied,
                revel_id: Some(revel_id),
            });
        }
        // Only what differs: the PATCH is absolute all the same.
        let updated = self
            .api
            .update(
                instance,
                credentials,
                resource,
                &revel_id,
                &Value::Object(changes),
            )
            .await?;
        self.remember_echo(instance, map, &updated).await?;
        Ok(Written {
            applied,
            revel_id: Some(revel_id),
        })
    }

    /// Records the written object's version, so its webhook isn't sent back.
    async fn remember_echo(
        &self,
        instance: &InstanceName,
        map: &Mapping,
        written: &Value,
    ) -> Result<(), ApplyError> {
        let id = match map.revel_kind {
            revel::Entity::Customer | revel::Entity::Order => id_field(written, "uuid"),
            _ => id_field(written, "id"),
        };
        // Read as the processor will read the webhook of this very change:
        // on the instance's clock.
        let zone = ports::secrets::zone_of(self.zones.as_deref(), instance).await?;
        let version = written
            .get("updated_date")
            .and_then(Value::as_str)
            .and_then(|raw| parse_local_micros(raw, &zone));
        match (id, version) {
            (Some(id), Some(version)) => {
                if let Ok(key) = EntityKey::new(vendors::revel::NAME, instance, map.revel_kind, &id)
                {
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

/// A partner order as Revel's order resources can hold it.
struct OrderPlan {
    order: Mapping,
    /// The lines whose product is in Revel, as `OrderItem` fields (less the order).
    items: Vec<Map<String, Value>>,
    /// The payments Revel can record, as `Payment` fields (less the order).
    payments: Vec<Map<String, Value>>,
}

/// Revel's `payment_type` of the partner's payment `method`: cash (1) and
/// card (2), as the fixtures' payments have them; any other method is not
/// written (kept in the order's notes).
fn payment_type(method: &str) -> Option<u64> {
    match method.to_ascii_lowercase().as_str() {
        "cash" => Some(1),
        "card" | "credit" | "credit_card" | "debit" | "debit_card" => Some(2),
        _ => None,
    }
}

/// A money amount as the note shows it.
fn money(value: f64) -> String {
    format!("{value:.2}")
}

/// What the note calls a line: its name, sku or product.
fn line_label(line: &Value, n: usize) -> String {
    ["name", "sku", "product_id"]
        .iter()
        .find_map(|f| text(line, f))
        .map_or_else(
            || format!("line {n}"),
            |label| format!("line {n} ({label})"),
        )
}

impl Applier {
    /// Applies a partner order: the order by its link, then each line whose
    /// product Revel has as an `OrderItem`, each cash or card payment as a
    /// `Payment` (each found again by a uuid derived from the order and the
    /// line or payment), and the rest in the order's notes.
    async fn apply_order(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        id: &str,
        data: &Value,
        attempt: &str,
    ) -> Result<Applied, ApplyError> {
        let plan = self.plan_order(instance, credentials, id, data).await?;
        let written = self
            .write(instance, credentials, &plan.order, attempt)
            .await?;
        if plan.items.is_empty() && plan.payments.is_empty() {
            return Ok(written.applied);
        }
        let order_id = match written.revel_id {
            Some(order_id) => order_id,
            // Created with an empty answer: found by its link.
            None => self
                .find(instance, credentials, &plan.order)
                .await?
                .and_then(|found| id_field(&found.object, "id"))
                .ok_or(ApplyError::Api(RevelApiError::InvalidResponse(
                    "the order just written can't be found by its link",
                )))?,
        };
        for (resource, children) in [("OrderItem", &plan.items), ("Payment", &plan.payments)] {
            self.write_children(instance, credentials, resource, &order_id, children)
                .await?;
        }
        Ok(written.applied)
    }

    /// Reads the partner's order: what goes to which resource, what to the notes.
    async fn plan_order(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        id: &str,
        data: &Value,
    ) -> Result<OrderPlan, ApplyError> {
        let total = number(data, "total").ok_or(ApplyError::Incomplete("order total"))?;
        let mut fields = Map::new();
        fields.insert("external_sync".into(), json!(link(id)));
        fields.insert("final_total".into(), json!(total));
        copy_numbers(
            &mut fields,
            data,
            &[("subtotal", "subtotal"), ("tax", "tax")],
        );
        fields.insert(
            "establishment".into(),
            establishment(data).unwrap_or_else(|| json!("/enterprise/Establishment/1/")),
        );
        if let Some(customer) = text(data, "customer_id") {
            match self
                .linked_uri(instance, credentials, "Customer", customer)
                .await?
            {
                Some(uri) => {
                    fields.insert("customer".into(), json!(uri));
                }
                // The partner told of this customer and it is not in Revel
                // yet (its job runs in a group of its own): the order waits
                // for it rather than being written without it for good.
                None if self.customer_pending(instance, customer).await? => {
                    return Err(ApplyError::Waiting("the order's customer"));
                }
                None => {}
            }
        }
        let mut unwritten = Vec::new();
        let mut items = Vec::new();
        let mut products: BTreeMap<String, Option<String>> = BTreeMap::new();
        let lines = data.get("lines").and_then(Value::as_array);
        for (n, line) in lines.into_iter().flatten().enumerate() {
            let n = n + 1;
            let quantity = number(line, "quantity").unwrap_or(1.0);
            let price = number(line, "price");
            let product = match (
                id_field(line, "revel_product_id"),
                id_field(line, "product_id"),
            ) {
                (Some(revel), _) => Some(format!("/resources/Product/{revel}/")),
                (None, Some(partner)) => match products.get(&partner) {
                    Some(known) => known.clone(),
                    None => {
                        let uri = self
                            .linked_uri(instance, credentials, "Product", &partner)
                            .await?;
                        products.insert(partner, uri.clone());
                        uri
                    }
                },
                (None, None) => None,
            };
            let (Some(product), Some(price)) = (product, price) else {
                unwritten.push(format!(
                    "{}: {} x {} (its product is not in Revel)",
                    line_label(line, n),
                    quantity,
                    price.map_or_else(|| "?".to_owned(), money)
                ));
                continue;
            };
            let line_key = id_field(line, "id").unwrap_or_else(|| n.to_string());
            let mut item = Map::new();
            item.insert("uuid".into(), child_uuid(instance, id, "line", &line_key));
            item.insert("product".into(), json!(product));
            item.insert("quantity".into(), json!(quantity));
            item.insert("price".into(), json!(price));
            copy_numbers(
                &mut item,
                line,
                &[("tax", "tax_amount"), ("tax_rate", "tax_rate")],
            );
            items.push(item);
        }
        // Revel applies named taxes from its own tax table (AppliedTaxOrder,
        // AppliedTaxOrderItem); the partner's can't be pointed at them.
        let taxes: Vec<String> = data
            .get("taxes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|tax| {
                format!(
                    "{} {}% {}",
                    text(tax, "name").unwrap_or("tax"),
                    number(tax, "rate").map_or_else(|| "?".to_owned(), |r| r.to_string()),
                    number(tax, "amount").map_or_else(|| "?".to_owned(), money)
                )
            })
            .collect();
        if !taxes.is_empty() {
            unwritten.push(format!("taxes: {}", taxes.join(", ")));
        }
        if let Some(discount) = number(data, "discount") {
            unwritten.push(format!("discount {}", money(discount)));
        }
        let mut payments = Vec::new();
        let paid = data.get("payments").and_then(Value::as_array);
        for (n, payment) in paid.into_iter().flatten().enumerate() {
            let n = n + 1;
            let method = text(payment, "method").unwrap_or("unknown");
            let amount = number(payment, "amount");
            let (Some(kind), Some(amount)) = (payment_type(method), amount) else {
                unwritten.push(format!(
                    "payment {n}: {method} {}",
                    amount.map_or_else(|| "?".to_owned(), money)
                ));
                continue;
            };
            let payment_key = id_field(payment, "id").unwrap_or_else(|| n.to_string());
            let mut fields = Map::new();
            fields.insert(
                "uuid".into(),
                child_uuid(instance, id, "payment", &payment_key),
            );
            fields.insert("amount".into(), json!(amount));
            fields.insert("payment_type".into(), json!(kind));
            copy_numbers(&mut fields, payment, &[("tip", "tip")]);
            payments.push(fields);
        }
        let mut notes = format!("VinesOS order {id}");
        if let Some(note) = text(data, "note") {
            notes.push_str(&format!("; {note}"));
        }
        if !unwritten.is_empty() {
            notes.push_str(&format!(
                "; not in Revel's order resources: {}",
                unwritten.join("; ")
            ));
        }
        fields.insert("notes".into(), json!(notes));
        Ok(OrderPlan {
            order: Mapping {
                resource: "Order",
                revel_kind: revel::Entity::Order,
                lookup: ("external_sync", link(id)),
                fallbacks: Vec::new(),
                fields,
                creates: true,
            },
            items,
            payments,
        })
    }

    /// `/resources/{resource}/{id}/` of the Revel object linked to the
    /// partner's `partner_id`, if there is one.
    /// Whether the partner's customer `id` is kept here and not yet applied.
    async fn customer_pending(
        &self,
        instance: &InstanceName,
        id: &str,
    ) -> Result<bool, ApplyError> {
        let Ok(key) = EntityKey::new(vinesos::NAME, instance, vinesos::Entity::Customer, id) else {
            return Ok(false);
        };
        Ok(self
            .entities
            .get(&key)
            .await?
            .is_some_and(|customer| !customer.is_delivered()))
    }

    async fn linked_uri(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        resource: &'static str,
        partner_id: &str,
    ) -> Result<Option<String>, ApplyError> {
        let wanted = link(partner_id);
        Ok(self
            .by_link(instance, credentials, (resource, "third_party_id", &wanted))
            .await?
            .and_then(|o| id_field(&o, "id"))
            .map(|found| format!("/resources/{resource}/{found}/")))
    }

    /// Writes an order's lines or payments: each found by its uuid among the
    /// order's, updated where it differs, created where missing.
    async fn write_children(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        resource: &'static str,
        order_id: &str,
        children: &[Map<String, Value>],
    ) -> Result<(), ApplyError> {
        if children.is_empty() {
            return Ok(());
        }
        let existing: BTreeMap<String, Value> = self
            .query(
                instance,
                credentials,
                (resource, "order", order_id),
                usize::MAX,
            )
            .await?
            .into_iter()
            .filter_map(|object| Some((id_field(&object, "uuid")?, object)))
            .collect();
        let order_uri = format!("/resources/Order/{order_id}/");
        for child in children {
            let mut fields = child.clone();
            fields.insert("order".into(), json!(order_uri));
            let uuid = fields
                .get("uuid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match existing.get(uuid) {
                Some(found) => {
                    let changes = differences(found, &fields);
                    if changes.is_empty() {
                        continue;
                    }
                    let Some(revel_id) = id_field(found, "id") else {
                        continue;
                    };
                    self.api
                        .update(
                            instance,
                            credentials,
                            resource,
                            &revel_id,
                            &Value::Object(changes),
                        )
                        .await?;
                }
                None => {
                    self.api
                        .create(instance, credentials, resource, &Value::Object(fields))
                        .await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use super::*;
    use domain::ids::EventKey;
    use ports::fakes::{MemoryEchoes, MemoryEntities};
    use ports::store::{EntityUpsert, Rank};
    use vendors::revel::api::Page;

    /// Revel's resources in memory: field filters (`__iexact`, `__endswith`,
    /// `__in` too, and an order's children by `order`), creates that give an
    /// id, a uuid and an `updated_date`, updates that merge; every call
    /// recorded (without its `order_by`), and an optional budget of calls.
    #[derive(Default)]
    pub(crate) struct MemoryRevel {
        pub objects: Mutex<BTreeMap<String, Vec<Value>>>,
        pub calls: Mutex<Vec<String>>,
        /// Calls left; `None` is unlimited.
        pub budget: Mutex<Option<u64>>,
        /// Creates that land but whose answer is lost (`Ambiguous`).
        pub lost_answers: AtomicU64,
        next_id: AtomicU64,
    }

    fn keeps(object: &Value, field: &str, wanted: &str) -> bool {
        if let Some(field) = field.strip_suffix("__iexact") {
            return text(object, field).is_some_and(|f| f.eq_ignore_ascii_case(wanted));
        }
        if let Some(field) = field.strip_suffix("__endswith") {
            return text(object, field).is_some_and(|f| f.ends_with(wanted));
        }
        if let Some(field) = field.strip_suffix("__in") {
            // A resource's id, as a URI (`/resources/Product/5/`) or plain.
            let id = object.get(field).and_then(vendors::revel::resource_id);
            return id.is_some_and(|id| wanted.split(',').any(|w| w == id));
        }
        if field == "order" {
            let uri = format!("/resources/Order/{wanted}/");
            return object.get("order").and_then(Value::as_str) == Some(uri.as_str());
        }
        // An ordering, not a filter.
        field == "order_by" || matches_lookup(object, field, wanted)
    }

    impl MemoryRevel {
        pub(crate) fn holding(resource: &str, objects: Vec<Value>) -> Self {
            let revel = Self::default();
            revel
                .objects
                .lock()
                .unwrap()
                .insert(resource.to_owned(), objects);
            revel
        }

        pub(crate) fn objects(&self, resource: &str) -> Vec<Value> {
            self.objects
                .lock()
                .unwrap()
                .get(resource)
                .cloned()
                .unwrap_or_default()
        }

        /// Every call made, as `GET Resource filters` / `POST Resource` /
        /// `PATCH Resource id`.
        pub(crate) fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }

        /// The writes made, as `POST Resource` / `PATCH Resource id`.
        pub(crate) fn writes(&self) -> Vec<String> {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| !c.starts_with("GET"))
                .cloned()
                .collect()
        }

        fn spend(&self, call: String) -> Result<(), RevelApiError> {
            let mut budget = self.budget.lock().unwrap();
            if let Some(left) = budget.as_mut() {
                if *left == 0 {
                    return Err(RevelApiError::BudgetExhausted { limit: 0 });
                }
                *left -= 1;
            }
            self.calls.lock().unwrap().push(call);
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl RevelResources for MemoryRevel {
        async fn page(
            &self,
            _: &InstanceName,
            _: &ApiCredentials,
            request: &PageRequest,
        ) -> Result<Page, RevelApiError> {
            let filters: Vec<String> = request
                .filters
                .iter()
                .filter(|(f, _)| f != "order_by")
                .map(|(f, v)| format!("{f}={v}"))
                .collect();
            self.spend(format!("GET {} {}", request.resource, filters.join("&")))?;
            let objects = self
                .objects(&request.resource)
                .into_iter()
                .filter(|o| request.filters.iter().all(|(f, v)| keeps(o, f, v)))
                .collect();
            Ok(Page {
                objects,
                next_offset: None,
                total_count: None,
            })
        }

        async fn create(
            &self,
            _: &InstanceName,
            _: &ApiCredentials,
            resource: &str,
            body: &Value,
        ) -> Result<Value, RevelApiError> {
            self.spend(format!("POST {resource}"))?;
            let id = 1000 + self.next_id.fetch_add(1, Ordering::SeqCst);
            let mut created = body.clone();
            created["id"] = json!(id);
            if created.get("uuid").is_none() {
                created["uuid"] = json!(format!("rv-{id}"));
            }
            created["updated_date"] = json!(format!("2026-11-24T10:31:{:02}", id % 60));
            self.objects
                .lock()
                .unwrap()
                .entry(resource.to_owned())
                .or_default()
                .push(created.clone());
            let lost = self
                .lost_answers
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if lost.is_ok() {
                return Err(RevelApiError::Ambiguous { status: None });
            }
            Ok(created)
        }

        async fn update(
            &self,
            _: &InstanceName,
            _: &ApiCredentials,
            resource: &str,
            id: &str,
            body: &Value,
        ) -> Result<Value, RevelApiError> {
            self.spend(format!("PATCH {resource} {id}"))?;
            let mut objects = self.objects.lock().unwrap();
            let object = objects
                .get_mut(resource)
                .and_then(|all| all.iter_mut().find(|o| matches_lookup(o, "id", id)))
                .ok_or(RevelApiError::NotFound)?;
            for (field, value) in body.as_object().into_iter().flatten() {
                object[field] = value.clone();
            }
            object["updated_date"] = json!("2026-11-24T10:32:00");
            Ok(object.clone())
        }
    }

    pub(crate) fn demo() -> InstanceName {
        InstanceName::parse("demo").unwrap()
    }

    pub(crate) fn credentials() -> ApiCredentials {
        ApiCredentials::new("k", "s")
    }

    /// Keeps `data` as the newest state of the partner's `kind` `id`.
    pub(crate) async fn partner_change(
        entities: &MemoryEntities,
        kind: vinesos::Entity,
        id: &str,
        version: i64,
        data: Value,
    ) -> EntityKey {
        let key = EntityKey::new("vinesos", &demo(), kind, id).unwrap();
        let state_json = data.to_string();
        let sha = sha256_hex(state_json.as_bytes());
        entities
            .upsert(&EntityUpsert {
                key: key.clone(),
                source: "vinesos",
                instance: demo(),
                kind: kind.kind(),
                entity_id: id.into(),
                rank: Rank::new(version, false, &sha),
                state_json,
                state_sha256: sha,
                event_key: EventKey::parse("vinesos:demo:vinesos.change:evt").unwrap(),
            })
            .await
            .unwrap();
        key
    }

    pub(crate) fn applier(revel: Arc<MemoryRevel>, entities: Arc<MemoryEntities>) -> Applier {
        Applier {
            api: revel,
            entities,
            echoes: Arc::new(MemoryEchoes::default()),
            zones: None,
        }
    }

    async fn apply_customer(revel: MemoryRevel, data: Value) -> (Applied, Arc<MemoryRevel>) {
        let revel = Arc::new(revel);
        let entities = Arc::new(MemoryEntities::default());
        let key = partner_change(&entities, vinesos::Entity::Customer, "C-1", 1, data).await;
        let applied = applier(revel.clone(), entities)
            .apply(&demo(), Some(&credentials()), &key)
            .await
            .unwrap();
        (applied, revel)
    }

    fn revel_customer(id: u64, email: &str, phone: &str, third_party_id: Value) -> Value {
        json!({"id": id, "uuid": format!("u-{id}"), "first_name": "Ann", "email": email,
               "phone_number": phone, "third_party_id": third_party_id})
    }

    #[tokio::test]
    async fn a_customer_first_created_in_revel_is_found_by_email_and_linked_not_created_again() {
        let revel = MemoryRevel::holding(
            "Customer",
            vec![revel_customer(
                2192,
                "Ann@Example.com",
                "555 000 1111",
                Value::Null,
            )],
        );
        let data = json!({"first_name": "Ann", "email": "ann@example.com", "phone": "1231231234"});
        let (applied, revel) = apply_customer(revel, data).await;
        assert_eq!(
            applied,
            Applied::Adopted {
                resource: "Customer",
                by: "email"
            }
        );
        assert_eq!(revel.writes(), ["PATCH Customer 2192"]);
        let customers = revel.objects("Customer");
        assert_eq!(customers.len(), 1, "no second customer");
        assert_eq!(customers[0]["third_party_id"], "vinesos:C-1");
        assert_eq!(customers[0]["phone_number"], "1231231234");
    }

    #[tokio::test]
    async fn a_customer_is_found_by_phone_written_another_way_when_email_finds_nothing() {
        let revel = MemoryRevel::holding(
            "Customer",
            vec![
                // Older, and ending the same: not the same number.
                revel_customer(3, "x@example.com", "999-555-1234", Value::Null),
                revel_customer(7, "other@example.com", "1231231234", json!("")),
            ],
        );
        let data =
            json!({"first_name": "Ann", "email": "ann@example.com", "phone": "(123) 123-1234"});
        let (applied, revel) = apply_customer(revel, data).await;
        assert_eq!(
            applied,
            Applied::Adopted {
                resource: "Customer",
                by: "phone"
            }
        );
        let asked: Vec<String> = revel.calls.lock().unwrap().clone();
        assert_eq!(
            asked,
            [
                "GET Customer third_party_id=vinesos:C-1",
                "GET Customer email__iexact=ann@example.com",
                "GET Customer phone_number__endswith=1234",
                "PATCH Customer 7",
            ]
        );
        let customers = revel.objects("Customer");
        assert_eq!(customers[0]["third_party_id"], Value::Null);
        assert_eq!(customers[1]["third_party_id"], "vinesos:C-1");
    }

    #[tokio::test]
    async fn a_revel_customer_linked_to_another_partner_customer_is_never_adopted() {
        let revel = MemoryRevel::holding(
            "Customer",
            vec![revel_customer(
                7,
                "ann@example.com",
                "1231231234",
                json!("vinesos:C-OTHER"),
            )],
        );
        let data = json!({"first_name": "Ann", "email": "ann@example.com", "phone": "1231231234"});
        let (applied, revel) = apply_customer(revel, data).await;
        assert_eq!(
            applied,
            Applied::Created {
                resource: "Customer"
            }
        );
        let customers = revel.objects("Customer");
        assert_eq!(customers[0]["third_party_id"], "vinesos:C-OTHER");
        assert_eq!(customers[1]["third_party_id"], "vinesos:C-1");
    }

    #[tokio::test]
    async fn a_customer_another_integration_links_is_adopted_and_keeps_that_link() {
        let revel = MemoryRevel::holding(
            "Customer",
            vec![revel_customer(
                7,
                "ann@example.com",
                "",
                json!("shopify:991"),
            )],
        );
        let (applied, revel) = apply_customer(
            revel,
            json!({"first_name": "Ann", "email": "ann@example.com"}),
        )
        .await;
        assert!(matches!(applied, Applied::Adopted { by: "email", .. }));
        assert_eq!(revel.objects("Customer").len(), 1);
        assert_eq!(
            revel.objects("Customer")[0]["third_party_id"],
            "shopify:991"
        );
    }

    #[tokio::test]
    async fn of_several_customers_with_the_email_the_oldest_is_adopted() {
        let revel = MemoryRevel::holding(
            "Customer",
            vec![
                revel_customer(90, "ann@example.com", "", Value::Null),
                revel_customer(12, "ann@example.com", "", Value::Null),
            ],
        );
        let (_, revel) = apply_customer(
            revel,
            json!({"first_name": "Ann", "email": "ann@example.com"}),
        )
        .await;
        assert_eq!(revel.writes(), ["PATCH Customer 12"]);
    }

    #[tokio::test]
    async fn a_phone_too_short_to_tell_anyone_apart_is_not_looked_up() {
        let revel = MemoryRevel::holding(
            "Customer",
            vec![revel_customer(7, "x@example.com", "555-0", Value::Null)],
        );
        let (applied, revel) =
            apply_customer(revel, json!({"first_name": "Ann", "phone": "555-0"})).await;
        assert_eq!(
            applied,
            Applied::Created {
                resource: "Customer"
            }
        );
        assert!(!revel
            .calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.contains("phone_number")));
    }

    /// Applies the partner customer C-1 (revision 1) to `revel`, recording
    /// echoes and creates in `echoes`.
    async fn apply_recorded(
        revel: &Arc<MemoryRevel>,
        echoes: &Arc<MemoryEchoes>,
        data: Value,
    ) -> Result<Applied, ApplyError> {
        let entities = Arc::new(MemoryEntities::default());
        let key = partner_change(&entities, vinesos::Entity::Customer, "C-1", 1, data).await;
        let applier = Applier {
            echoes: echoes.clone(),
            ..applier(revel.clone(), entities)
        };
        applier.apply(&demo(), Some(&credentials()), &key).await
    }

    #[tokio::test]
    async fn a_create_whose_answer_was_lost_is_found_on_retry_not_written_again_and_its_webhook_is_an_echo(
    ) {
        use ports::sync_state::EchoLog;
        let revel = Arc::new(MemoryRevel::default());
        revel.lost_answers.store(1, Ordering::SeqCst);
        let echoes = Arc::new(MemoryEchoes::default());
        let data = json!({"first_name": "Ann"});

        let first = apply_recorded(&revel, &echoes, data.clone()).await;
        assert!(matches!(
            first,
            Err(ApplyError::Api(RevelApiError::Ambiguous { .. }))
        ));
        let retry = apply_recorded(&revel, &echoes, data).await.unwrap();

        assert_eq!(
            retry,
            Applied::Unchanged {
                resource: "Customer"
            }
        );
        assert_eq!(revel.writes(), ["POST Customer"], "created once");
        let created = &revel.objects("Customer")[0];
        let revel_customer = EntityKey::new(
            "revel",
            &demo(),
            revel::Entity::Customer,
            created["uuid"].as_str().unwrap(),
        )
        .unwrap();
        let version =
            domain::sources::parse_timestamp_micros(created["updated_date"].as_str().unwrap())
                .unwrap();
        assert!(echoes.is_echo(&revel_customer, version).await.unwrap());
    }

    #[tokio::test]
    async fn a_linked_object_that_holds_every_field_already_is_not_written_and_its_own_edits_are_no_echo(
    ) {
        // Revel's version is a staff edit of fields the partner doesn't send.
        let revel = Arc::new(MemoryRevel::holding(
            "Customer",
            vec![
                json!({"id": 7, "uuid": "u-7", "first_name": "Ann", "address": "new",
                        "third_party_id": "vinesos:C-1", "updated_date": "2026-11-24T10:31:00"}),
            ],
        ));
        let echoes = Arc::new(MemoryEchoes::default());

        let applied = apply_recorded(&revel, &echoes, json!({"first_name": "Ann"}))
            .await
            .unwrap();

        assert_eq!(
            applied,
            Applied::Unchanged {
                resource: "Customer"
            }
        );
        assert!(revel.writes().is_empty());
        assert!(
            echoes.marks.lock().unwrap().is_empty(),
            "the staff edit still reaches the partner"
        );
    }

    #[test]
    fn a_members_change_kept_before_members_became_customers_is_a_customers() {
        assert_eq!(partner_kind("vos_member"), Some(vinesos::Entity::Customer));
        assert_eq!(
            partner_kind("vos_customer"),
            Some(vinesos::Entity::Customer)
        );
        assert_eq!(partner_kind("vos_product"), Some(vinesos::Entity::Product));
        assert_eq!(partner_kind("member"), None);
    }

    #[test]
    fn each_partner_kind_maps_to_a_revel_lookup_and_absolute_fields() {
        let customer = mapping(
            vinesos::Entity::Customer,
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
            vinesos::Entity::Reward,
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
            vinesos::Entity::Inventory,
            "S-1",
            &json!({"revel_product_id": 6, "quantity": 40}),
        )
        .unwrap();
        assert_eq!(stock.lookup.1, "/resources/Product/6/");
        let product = mapping(
            vinesos::Entity::Product,
            "P-1",
            &json!({"name": "Rosé", "sku": "R-23", "price": "19.50", "revel_product_id": 7}),
        )
        .unwrap();
        assert_eq!(
            (
                product.resource,
                product.lookup.0,
                product.lookup.1.as_str()
            ),
            ("Product", "third_party_id", "vinesos:P-1")
        );
        assert_eq!(product.fields["price"], 19.5);
        assert_eq!(product.fallbacks[0].query, ("id", "7".to_owned()));
        let event = mapping(
            vinesos::Entity::Event,
            "E-1",
            &json!({"name": "Harvest dinner", "start_date": "2026-12-05T18:00:00"}),
        )
        .unwrap();
        assert_eq!(
            (event.resource, event.fields["start_date"].as_str()),
            ("Event", Some("2026-12-05T18:00:00"))
        );
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

    #[tokio::test]
    async fn a_stored_change_of_a_kind_the_partner_does_not_send_is_refused_and_reaches_nothing() {
        let revel = Arc::new(MemoryRevel::default());
        let entities = Arc::new(MemoryEntities::default());
        let applier = applier(revel.clone(), entities.clone());
        let stray = domain::sources::EntityKind::new("vos_thing");
        let key = crate::worker::testing::kept(
            &entities,
            ("vinesos", stray, "M-1"),
            1,
            json!({"first_name": "Ann"}),
        )
        .await;
        let refused = applier
            .apply(&demo(), Some(&credentials()), &key)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, ApplyError::Incomplete("entity kind")) && refused.is_permanent(),
            "{refused:?}"
        );
        assert!(revel.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn a_change_missing_what_its_mapping_needs_is_refused() {
        for (kind, data) in [
            (vinesos::Entity::Reward, json!({"points": 1})),
            (vinesos::Entity::Inventory, json!({"quantity": 1})),
            (vinesos::Entity::Product, json!({"sku": "no name"})),
            (
                vinesos::Entity::Event,
                json!({"start_date": "2026-12-05T18:00:00"}),
            ),
            // Not mapped: an order has its own plan, a request is pulled for.
            (vinesos::Entity::Order, json!({})),
            (vinesos::Entity::InventoryRequest, json!({})),
        ] {
            let refused = mapping(kind, "X", &data).map(|_| ()).unwrap_err();
            assert!(
                matches!(refused, ApplyError::Incomplete(_)) && refused.is_permanent(),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn prices_revel_writes_as_text_equal_the_same_number_and_other_text_does_not() {
        assert!(same_value(Some(&json!("24.000000")), &json!(24.0)));
        assert!(same_value(Some(&json!(24)), &json!(24.0)));
        assert!(!same_value(Some(&json!("24.5")), &json!(24.0)));
        assert!(!same_value(Some(&json!("0123")), &json!("123")));
        assert!(!same_value(None, &json!("x")));
    }

    #[test]
    fn derived_uuids_are_stable_distinct_and_shaped_like_uuids() {
        let a = derived_uuid("vinesos:demo:order:O-1:line:1");
        assert_eq!(a, derived_uuid("vinesos:demo:order:O-1:line:1"));
        assert_ne!(a, derived_uuid("vinesos:demo:order:O-1:line:2"));
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&a[14..15], "8", "version 8");
        assert!("89ab".contains(&a[19..20]), "RFC variant");
    }

    /// The order sample's shape: a line by Revel id, a line by the partner's
    /// product link, one not in Revel; a card and a gift card payment.
    fn order() -> Value {
        json!({"id": "O-1", "customer_id": "C-1", "establishment_id": 1,
        "subtotal": 67.5, "tax": 5.4, "total": 72.9,
        "lines": [
            {"id": "L1", "revel_product_id": 6, "name": "Merlot 2019", "quantity": 2, "price": 24.0, "tax": 3.84, "tax_rate": 8.0},
            {"id": "L2", "product_id": "P-ROSE", "name": "Rosé 2023", "quantity": 1, "price": 19.5, "tax": 1.56, "tax_rate": 8.0},
            {"id": "L3", "product_id": "P-NEW", "name": "Magnum", "quantity": 1, "price": 0.0}
        ],
        "taxes": [{"name": "City tax", "rate": 8, "amount": 5.4}],
        "payments": [
            {"id": "PAY-1", "method": "card", "amount": 52.9, "tip": 2.0},
            {"id": "PAY-2", "method": "gift_card", "amount": 20.0}
        ]})
    }

    async fn apply_order(revel: &Arc<MemoryRevel>, entities: &Arc<MemoryEntities>, version: i64) {
        let key = partner_change(entities, vinesos::Entity::Order, "O-1", version, order()).await;
        applier(revel.clone(), entities.clone())
            .apply(&demo(), Some(&credentials()), &key)
            .await
            .unwrap();
    }

    fn revel_with_products() -> Arc<MemoryRevel> {
        let revel = MemoryRevel::holding(
            "Product",
            vec![json!({"id": 31, "name": "Rosé 2023", "third_party_id": "vinesos:P-ROSE"})],
        );
        revel.objects.lock().unwrap().insert(
            "Customer".into(),
            vec![json!({"id": 2192, "third_party_id": "vinesos:C-1"})],
        );
        Arc::new(revel)
    }

    #[tokio::test]
    async fn an_order_carries_its_lines_and_payments_and_notes_what_revels_resources_cannot_hold() {
        let revel = revel_with_products();
        let entities = Arc::new(MemoryEntities::default());
        apply_order(&revel, &entities, 1).await;

        let orders = revel.objects("Order");
        assert_eq!(orders.len(), 1);
        let order = &orders[0];
        assert_eq!(order["external_sync"], "vinesos:O-1");
        assert_eq!(order["final_total"], 72.9);
        assert_eq!(
            (order["subtotal"].as_f64(), order["tax"].as_f64()),
            (Some(67.5), Some(5.4))
        );
        assert_eq!(order["customer"], "/resources/Customer/2192/");
        assert_eq!(
            order["notes"],
            "VinesOS order O-1; not in Revel's order resources: line 3 (Magnum): 1 x 0.00 (its product is not in Revel); taxes: City tax 8% 5.40; payment 2: gift_card 20.00"
        );
        let uri = format!("/resources/Order/{}/", order["id"]);
        let items = revel.objects("OrderItem");
        let lines: Vec<(&str, f64, f64, f64)> = items
            .iter()
            .map(|i| {
                assert_eq!(i["order"], uri.as_str());
                (
                    i["product"].as_str().unwrap(),
                    i["quantity"].as_f64().unwrap(),
                    i["price"].as_f64().unwrap(),
                    i["tax_amount"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                ("/resources/Product/6/", 2.0, 24.0, 3.84),
                ("/resources/Product/31/", 1.0, 19.5, 1.56)
            ]
        );
        let payments = revel.objects("Payment");
        assert_eq!(payments.len(), 1, "the gift card is in the notes");
        assert_eq!(
            (
                payments[0]["payment_type"].as_u64(),
                payments[0]["amount"].as_f64(),
                payments[0]["tip"].as_f64()
            ),
            (Some(2), Some(52.9), Some(2.0))
        );
        assert_eq!(payments[0]["order"], uri.as_str());
    }

    #[tokio::test]
    async fn an_order_applied_again_finds_its_lines_and_payments_and_creates_none_twice() {
        let revel = revel_with_products();
        let entities = Arc::new(MemoryEntities::default());
        apply_order(&revel, &entities, 1).await;
        let posts = revel.writes().len();
        // A newer version of the same order (a redelivery past the
        // revision check).
        let mut changed = order();
        changed["note"] = json!("pick up Friday");
        let key = partner_change(&entities, vinesos::Entity::Order, "O-1", 2, changed).await;
        applier(revel.clone(), entities.clone())
            .apply(&demo(), Some(&credentials()), &key)
            .await
            .unwrap();
        let new_writes: Vec<String> = revel.writes()[posts..].to_vec();
        assert_eq!(new_writes.len(), 1, "{new_writes:?}");
        assert!(
            new_writes[0].starts_with("PATCH Order"),
            "only the note moved"
        );
        assert_eq!(revel.objects("OrderItem").len(), 2);
        assert_eq!(revel.objects("Payment").len(), 1);
    }

    #[tokio::test]
    async fn an_order_whose_creates_lose_their_answers_is_retried_into_one_order_with_each_line_and_payment_once(
    ) {
        let revel = revel_with_products();
        // The order's create and then its first line's land, unanswered.
        revel.lost_answers.store(2, Ordering::SeqCst);
        let entities = Arc::new(MemoryEntities::default());
        let key = partner_change(&entities, vinesos::Entity::Order, "O-1", 1, order()).await;
        let applier = applier(revel.clone(), entities.clone());
        let mut failures = 0;
        loop {
            match applier.apply(&demo(), Some(&credentials()), &key).await {
                Ok(_) => break,
                Err(ApplyError::Api(RevelApiError::Ambiguous { .. })) if failures < 5 => {
                    failures += 1
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(failures, 2);
        assert_eq!(revel.objects("Order").len(), 1);
        assert_eq!(revel.objects("OrderItem").len(), 2);
        assert_eq!(revel.objects("Payment").len(), 1);
    }

    #[tokio::test]
    async fn an_order_whose_customer_is_not_in_revel_yet_waits_for_it_and_then_names_it() {
        let revel = Arc::new(MemoryRevel::holding(
            "Product",
            vec![json!({"id": 31, "name": "Rosé 2023", "third_party_id": "vinesos:P-ROSE"})],
        ));
        let entities = Arc::new(MemoryEntities::default());
        let applier = applier(revel.clone(), entities.clone());
        let customer = partner_change(
            &entities,
            vinesos::Entity::Customer,
            "C-1",
            1,
            json!({"first_name": "Ann"}),
        )
        .await;
        let placed = partner_change(&entities, vinesos::Entity::Order, "O-1", 1, order()).await;

        let early = applier.apply(&demo(), Some(&credentials()), &placed).await;
        assert!(matches!(early, Err(ApplyError::Waiting(_))), "{early:?}");
        assert!(!early.unwrap_err().is_permanent());
        assert!(revel.writes().is_empty(), "{:?}", revel.writes());

        applier
            .apply(&demo(), Some(&credentials()), &customer)
            .await
            .unwrap();
        applier
            .apply(&demo(), Some(&credentials()), &placed)
            .await
            .unwrap();
        let created = &revel.objects("Customer")[0];
        assert_eq!(
            revel.objects("Order")[0]["customer"],
            format!("/resources/Customer/{}/", created["id"])
        );
        // A customer the partner never told of: the order goes without it.
        let mut guest = order();
        guest["id"] = json!("O-2");
        guest["customer_id"] = json!("C-GUEST");
        let key = partner_change(&entities, vinesos::Entity::Order, "O-2", 1, guest).await;
        applier
            .apply(&demo(), Some(&credentials()), &key)
            .await
            .unwrap();
        assert!(revel.objects("Order")[1].get("customer").is_none());
    }

    #[tokio::test]
    async fn an_order_without_a_total_is_refused_and_nothing_is_written() {
        let revel = Arc::new(MemoryRevel::default());
        let entities = Arc::new(MemoryEntities::default());
        let key = partner_change(
            &entities,
            vinesos::Entity::Order,
            "O-2",
            1,
            json!({"lines": []}),
        )
        .await;
        let refused = applier(revel.clone(), entities)
            .apply(&demo(), Some(&credentials()), &key)
            .await
            .unwrap_err();
        assert!(matches!(refused, ApplyError::Incomplete("order total")));
        assert!(revel.writes().is_empty());
    }

    #[tokio::test]
    async fn products_and_events_wait_for_the_end_of_day_batch_and_nothing_reaches_revel() {
        let revel = Arc::new(MemoryRevel::default());
        let entities = Arc::new(MemoryEntities::default());
        let applier = applier(revel.clone(), entities.clone());
        for kind in [vinesos::Entity::Product, vinesos::Entity::Event] {
            let key = partner_change(&entities, kind, "X-1", 1, json!({"name": "x"})).await;
            let applied = applier
                .apply(&demo(), Some(&credentials()), &key)
                .await
                .unwrap();
            assert_eq!(applied, Applied::Deferred);
            let kept = entities.get(&key).unwrap();
            assert_eq!(kept.delivered_revision, None, "not applied yet");
            let pending = crate::pending::PendingIndex::new(entities.as_ref())
                .all(&demo(), kind)
                .await
                .unwrap();
            assert_eq!(pending, BTreeMap::from([("X-1".to_owned(), 1)]));
        }
        assert!(revel.calls.lock().unwrap().is_empty());
    }
}
