//! What must hold once a seed's world is quiescent, checked against what the
//! plan sent and what the stand-ins hold (never against the bundle's own
//! reading of its records):
//!
//! 1. every event a receiver answered 2xx for is archived, under the key it
//!    answered, with the body it was sent; an event the sender names (a
//!    business key, an event id) is archived once however often it came;
//!    nothing is archived that no sender sent, and a forged request never is;
//! 2. every entity holds the newest change (by rank: version, then
//!    tie-breaker) among the archived events that change it;
//! 3. the partner holds the current revision of every entity it should get
//!    (SyncEntity follow-ups: Revel's and WineSitting's), with its state,
//!    and one stock change per product each order sold, with its quantity;
//! 4. every partner change is in Revel once: one object per partner id,
//!    with the newest change's values;
//! 5. every order Revel finalized is kept at its version or newer
//!    (reconciliation finds those whose webhook never came), and every
//!    product and modifier at its current version (the end-of-day pull);
//! 6. nothing is stuck: the stream is read to its end and the jobs queue
//!    is empty; what was given up on is parked in the jobs DLQ or on the
//!    processor's on-failure destination, which alarms watch. A failed
//!    check 2-5 is excused only by such a parked item about the same
//!    entity; parked items not explained by an injected outage are listed.

use std::collections::{BTreeMap, BTreeSet};

use domain::idempotency::sha256_hex;
use domain::sources::parse_timestamp_micros;
use ports::queue::JobKind;
use ports::store::{EventRecord, EventStatus, Rank};
use serde_json::Value;
use tokio::time::Instant;
use vendors::revel;

use crate::traffic::{Meaning, Route, SimEntity, Version, Webhook};
use crate::world::World;

/// A job or a stream batch given up on: what the alarms show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub what: String,
    /// An injected outage overlapped its life: its retries could not help.
    pub explained: bool,
}

/// Counts of one run, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub webhooks: usize,
    pub requests: usize,
    pub archived: usize,
    pub entities: usize,
    pub partner_entities: usize,
    pub jobs_received: u64,
}

/// What the checks found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    pub violations: Vec<String>,
    pub parked: Vec<Parked>,
    pub stats: Stats,
}

impl Findings {
    pub fn unexplained_parked(&self) -> usize {
        self.parked.iter().filter(|p| !p.explained).count()
    }
}

/// The sender's own id of a webhook, as archived with its record.
fn sender_event_id(webhook: &Webhook) -> Option<(&'static str, String)> {
    match webhook.route {
        Route::VinesOs(_) => Some(("webhook-id", format!("msg_{}", webhook.id))),
        _ => webhook
            .headers
            .iter()
            .find(|(name, _)| *name == vendors::revel::EVENT_ID_HEADER)
            .map(|(name, value)| (*name, value.clone())),
    }
}

/// Headers that make two requests with the same body different events.
const IDENTITY_HEADERS: [&str; 2] = [
    vendors::revel::ESTABLISHMENT_HEADER,
    vendors::revel::EVENT_ID_HEADER,
];

/// Whether `record` is a request of `webhook`: same sender, instance,
/// bytes and the headers that make it what it is.
fn is_request_of(webhook: &Webhook, sha: &str, record: &EventRecord) -> bool {
    record.source == webhook.route.source()
        && record.instance.as_str() == webhook.instance
        && record.body_sha256 == sha
        && IDENTITY_HEADERS.iter().all(|name| {
            let sent = webhook
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v);
            record.headers.get(*name) == sent
        })
        && sender_event_id(webhook)
            .is_none_or(|(name, id)| record.headers.get(name).is_none_or(|h| *h == id))
}

struct Context<'a> {
    world: &'a World,
    records: Vec<EventRecord>,
    /// Body hash of each webhook.
    shas: Vec<String>,
    /// Event key -> the webhook its record is a request of.
    sent_by: BTreeMap<String, usize>,
    parked_keys: BTreeSet<String>,
    dead_groups: BTreeSet<String>,
    violations: Vec<String>,
}

impl Context<'_> {
    fn change_of(&self, event_key: &str) -> Option<&crate::traffic::Change> {
        match &self.world.plan.webhooks[*self.sent_by.get(event_key)?].meaning {
            Meaning::Change(change) => Some(change),
            _ => None,
        }
    }

    /// Some record about `entity` was given up on by the stream.
    fn stream_parked(&self, entity: &SimEntity) -> bool {
        self.parked_keys
            .iter()
            .any(|key| self.change_of(key).is_some_and(|c| c.entity == *entity))
    }

    /// A job about `entity` is in the DLQ (its own, or for a pulled
    /// object the pull that wrote it), or a record about it was parked.
    fn parked_about(&self, entity: &SimEntity) -> bool {
        let pulled_by = (entity.source == "revel"
            && matches!(
                revel::Entity::parse(&entity.kind),
                Some(revel::Entity::Product | revel::Entity::Modifier)
            ))
        .then(|| format!("catalog:revel:{}", entity.instance));
        self.dead_groups.contains(entity.key().as_str())
            || pulled_by.is_some_and(|group| self.dead_groups.contains(&group))
            || self.stream_parked(entity)
    }

    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }
}

pub fn check(world: &World, settled: bool) -> Findings {
    let records = world.events.records();
    let shas: Vec<String> = world
        .plan
        .webhooks
        .iter()
        .map(|w| sha256_hex(&w.body))
        .collect();
    let mut sent_by = BTreeMap::new();
    for record in &records {
        if let Some(w) = world
            .plan
            .webhooks
            .iter()
            .find(|w| is_request_of(w, &shas[w.id], record))
        {
            sent_by.insert(record.event_key.to_string(), w.id);
        }
    }
    let mut cx = Context {
        world,
        records,
        shas,
        sent_by,
        parked_keys: world
            .mapping
            .parked()
            .into_iter()
            .flat_map(|b| b.event_keys)
            .collect(),
        dead_groups: world
            .queue
            .dead_letters()
            .into_iter()
            .map(|d| d.group)
            .collect(),
        violations: Vec::new(),
    };
    if !settled {
        let what = format!(
            "stuck: not quiescent within the settle limit: {}",
            world.under_way()
        );
        cx.violation(what);
    }
    archive(&mut cx);
    let expected = entities(&mut cx);
    partner(&mut cx);
    stock_sold(&mut cx, &expected);
    revel_writes(&mut cx, &expected);
    pulled(&mut cx);
    let parked = parked(world);
    let answers = world.answers.lock().unwrap();
    Findings {
        stats: Stats {
            webhooks: world.plan.webhooks.len(),
            requests: answers.values().map(|a| a.statuses.len()).sum(),
            archived: cx.records.len(),
            entities: world.entities.table.len(),
            partner_entities: world.partner.held().len(),
            jobs_received: world.queue.received_total(),
        },
        violations: cx.violations,
        parked,
    }
}

/// Check 1.
fn archive(cx: &mut Context<'_>) {
    let by_key: BTreeMap<String, &EventRecord> = cx
        .records
        .iter()
        .map(|r| (r.event_key.to_string(), r))
        .collect();
    let answers = cx.world.answers.lock().unwrap().clone();
    let mut violations = Vec::new();
    for webhook in &cx.world.plan.webhooks {
        let sha = &cx.shas[webhook.id];
        let stored_under = answers
            .get(&webhook.id)
            .map(|a| a.stored_under.clone())
            .unwrap_or_default();
        for key in &stored_under {
            match by_key.get(key) {
                None => violations.push(format!(
                    "w{} ({}) was answered 2xx as stored under {key}, which the archive does not hold",
                    webhook.id, webhook.label
                )),
                Some(record) if record.body_sha256 != *sha => violations.push(format!(
                    "w{} ({}) was answered 2xx under {key}, which holds another body",
                    webhook.id, webhook.label
                )),
                Some(_) => {}
            }
        }
        let copies: Vec<&str> = cx
            .records
            .iter()
            .filter(|r| is_request_of(webhook, sha, r))
            .map(|r| r.event_key.as_str())
            .collect();
        if webhook.meaning == Meaning::Forged {
            if !stored_under.is_empty() || !copies.is_empty() {
                violations.push(format!("w{} (forged) was stored: {copies:?}", webhook.id));
            }
            continue;
        }
        if !webhook.per_delivery && (copies.len() > 1 || stored_under.len() > 1) {
            violations.push(format!(
                "w{} ({}) is one event but was archived as {copies:?} (answered {stored_under:?})",
                webhook.id, webhook.label
            ));
        }
    }
    for record in &cx.records {
        if !cx.sent_by.contains_key(record.event_key.as_str()) {
            violations.push(format!(
                "the archive holds {} which no sender sent",
                record.event_key
            ));
        }
    }
    cx.violations.extend(violations);
}

/// Check 2: the rank each entity must hold, from the archived records.
fn entities(cx: &mut Context<'_>) -> BTreeMap<SimEntity, (Rank, usize)> {
    let mut expected: BTreeMap<SimEntity, (Rank, usize)> = BTreeMap::new();
    for record in &cx.records {
        if record.status != EventStatus::Received {
            continue;
        }
        let Some(webhook) = cx.sent_by.get(record.event_key.as_str()) else {
            continue;
        };
        let Meaning::Change(change) = &cx.world.plan.webhooks[*webhook].meaning else {
            continue;
        };
        let version = match change.version {
            Version::At(micros) => micros,
            Version::Receipt => record.received_at_micros,
        };
        let rank = Rank::new(version, false, &record.body_sha256);
        match expected.get(&change.entity) {
            Some((held, _)) if *held >= rank => {}
            _ => {
                expected.insert(change.entity.clone(), (rank, *webhook));
            }
        }
    }
    let mut violations = Vec::new();
    for (entity, (rank, webhook)) in &expected {
        let stored = cx.world.entities.table.get(&entity.key());
        let holds = stored.as_ref().map(|e| e.rank.clone());
        if holds.as_ref() != Some(rank) && !cx.stream_parked(entity) {
            violations.push(format!(
                "entity {} holds {} but the newest archived change is w{webhook} at {}",
                entity.key(),
                holds.map_or_else(|| "nothing".to_owned(), |r| show(&r)),
                show(rank)
            ));
        }
    }
    for (key, _) in cx.world.entities.table.entities.lock().unwrap().iter() {
        let pulled = ["product", "modifier"]
            .iter()
            .any(|k| key.as_str().contains(&format!(":{k}:")));
        // What an order sold is recorded beside it when the partner is told.
        let sale_of_a_kept_order =
            order_of_sale(key).is_some_and(|order| expected.contains_key(&order));
        if !pulled && !sale_of_a_kept_order && !expected.keys().any(|e| e.key() == *key) {
            violations.push(format!(
                "entity {key} exists but no archived event changes it"
            ));
        }
    }
    cx.violations.extend(violations);
    expected
}

fn show(rank: &Rank) -> String {
    format!(
        "version {} tie-breaker {}",
        rank.version,
        &rank.tiebreak[..rank.tiebreak.len().min(10)]
    )
}

/// The entities the partner hears of, through SyncEntity jobs: Revel's,
/// and WineSitting's.
fn delivered_to_partner(source: &str, kind: &str) -> bool {
    match source {
        "revel" => matches!(
            revel::Entity::parse(kind),
            Some(
                revel::Entity::Order
                    | revel::Entity::Customer
                    | revel::Entity::ItemStock
                    | revel::Entity::Product
                    | revel::Entity::Modifier
            )
        ),
        "winesitting" => matches!(
            vendors::winesitting::Entity::parse(kind),
            Some(vendors::winesitting::Entity::Order | vendors::winesitting::Entity::Putaway)
        ),
        _ => false,
    }
}

/// The order whose sale the entity `key` records (`revel:{instance}:inventory_sold:{uuid}`).
fn order_of_sale(key: &domain::ids::EntityKey) -> Option<SimEntity> {
    let mut parts = key.as_str().splitn(4, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("revel"), Some(instance), Some(kind), Some(uuid))
            if kind == pipeline::worker::INVENTORY_SOLD =>
        {
            Some(SimEntity {
                source: "revel",
                instance: instance.to_owned(),
                kind: revel::Entity::Order.kind(),
                id: uuid.to_owned(),
            })
        }
        _ => None,
    }
}

/// Check 3, stock: the partner holds, for every order the plan sent, one
/// stock change per product its items sold, with the quantity the items
/// add up to (the same in every version of an order the plan sends).
fn stock_sold(cx: &mut Context<'_>, expected: &BTreeMap<SimEntity, (Rank, usize)>) {
    let held = cx.world.partner.held();
    let mut violations = Vec::new();
    for (order, (_, webhook)) in expected {
        if order.source != "revel" || order.kind != revel::Entity::Order.kind() {
            continue;
        }
        let body: Value = serde_json::from_slice(&cx.world.plan.webhooks[*webhook].body)
            .expect("planned orders are JSON");
        let mut sold: BTreeMap<String, f64> = BTreeMap::new();
        for item in body["items"].as_array().into_iter().flatten() {
            *sold.entry(item["product"].to_string()).or_default() +=
                item["quantity"].as_f64().unwrap_or_default();
        }
        for (product, quantity) in sold {
            let key = (
                order.instance.clone(),
                pipeline::worker::INVENTORY_SOLD.to_string(),
                format!("{}:product:{product}", order.id),
            );
            let problem = match held.get(&key) {
                None => Some("the partner never heard of it".to_owned()),
                Some(h) if h.state["quantity_sold"].as_f64() != Some(quantity) => Some(format!(
                    "the partner was told {} sold, not {quantity}",
                    h.state["quantity_sold"]
                )),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                if !cx.parked_about(order) {
                    violations.push(format!(
                        "partner: stock of product {product} sold by {}: {problem} (nothing about it is parked)",
                        order.key()
                    ));
                }
            }
        }
    }
    cx.violations.extend(violations);
}

/// Check 3.
fn partner(cx: &mut Context<'_>) {
    let held = cx.world.partner.held();
    let entities = cx.world.entities.table.entities.lock().unwrap().clone();
    let mut violations = Vec::new();
    for (key, entity) in entities {
        let state = &entity.state;
        if !delivered_to_partner(state.source, &state.kind) {
            continue;
        }
        let sim = SimEntity {
            source: state.source,
            instance: state.instance.to_string(),
            kind: state.kind,
            id: state.entity_id.clone(),
        };
        let partner_key = (sim.instance.clone(), sim.kind.to_string(), sim.id.clone());
        let current: Value = serde_json::from_str(&state.state_json).expect("states are JSON");
        let problem = match held.get(&partner_key) {
            None => Some("the partner never heard of it".to_owned()),
            Some(h) if h.revision != entity.revision => Some(format!(
                "the partner holds revision {} of {}",
                h.revision, entity.revision
            )),
            Some(h) if h.state != current => {
                Some("the partner holds another state for its revision".to_owned())
            }
            Some(_) if entity.delivered_revision != Some(entity.revision) => Some(format!(
                "delivered, but marked delivered at {:?} of {}",
                entity.delivered_revision, entity.revision
            )),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            if !cx.parked_about(&sim) {
                violations.push(format!(
                    "partner: {key}: {problem} (nothing about it is parked)"
                ));
            }
        }
    }
    cx.violations.extend(violations);
}

/// Check 4.
fn revel_writes(cx: &mut Context<'_>, expected: &BTreeMap<SimEntity, (Rank, usize)>) {
    let mut violations = Vec::new();
    for (entity, (_, winner)) in expected {
        let Meaning::Change(change) = &cx.world.plan.webhooks[*winner].meaning else {
            continue;
        };
        let Some(write) = &change.revel_write else {
            continue;
        };
        let objects: Vec<Value> = cx
            .world
            .revel
            .objects(&entity.instance, write.resource)
            .into_iter()
            .filter(|o| o.get(write.lookup.0).and_then(Value::as_str) == Some(&write.lookup.1))
            .collect();
        if objects.len() > 1 {
            violations.push(format!(
                "revel: {} {}={} exists {} times",
                write.resource,
                write.lookup.0,
                write.lookup.1,
                objects.len()
            ));
            continue;
        }
        let problem = match objects.first() {
            None => Some("is not in Revel".to_owned()),
            Some(object) => write
                .fields
                .iter()
                .find(|(field, value)| object.get(*field) != Some(value))
                .map(|(field, value)| {
                    format!(
                        "has {field} = {} in Revel, not the newest change's {value} (w{winner})",
                        object.get(*field).unwrap_or(&Value::Null)
                    )
                }),
        };
        if let Some(problem) = problem {
            if !cx.parked_about(entity) {
                violations.push(format!(
                    "revel: partner change {} {problem} (nothing about it is parked)",
                    entity.key()
                ));
            }
        }
    }
    cx.violations.extend(violations);
}

/// Check 5.
fn pulled(cx: &mut Context<'_>) {
    let fan_outs = cx.world.fan_outs.lock().unwrap().clone();
    let ran = |task| {
        // The end-of-day tick fanned out (its last attempt), so its jobs ran
        // after every change.
        fan_outs
            .iter()
            .rfind(|(t, _)| *t == task)
            .is_some_and(|(_, ok)| *ok)
    };
    let mut violations = Vec::new();
    for instance in &cx.world.plan.instances {
        let kept = |kind: revel::Entity, id: String| {
            let entity = SimEntity {
                source: "revel",
                instance: instance.clone(),
                kind: kind.kind(),
                id,
            };
            let version = cx
                .world
                .entities
                .table
                .get(&entity.key())
                .map(|e| e.rank.version);
            (entity, version)
        };
        if ran(JobKind::Reconcile)
            && !cx
                .dead_groups
                .contains(&format!("reconcile:revel:{instance}"))
        {
            for order in cx.world.revel.objects(instance, "Order") {
                if order.get("closed") != Some(&Value::Bool(true)) {
                    continue;
                }
                let uuid = order["uuid"].as_str().unwrap_or_default().to_owned();
                let at = order["updated_date"]
                    .as_str()
                    .and_then(parse_timestamp_micros);
                let (entity, version) = kept(revel::Entity::Order, uuid);
                if version < at && !cx.stream_parked(&entity) {
                    violations.push(format!(
                        "reconcile: order {} finalized at {at:?} is kept at {version:?}",
                        entity.key()
                    ));
                }
            }
        }
        if ran(JobKind::ProductSync)
            && !cx
                .dead_groups
                .contains(&format!("catalog:revel:{instance}"))
        {
            for (resource, kind) in [
                ("Product", revel::Entity::Product),
                ("Modifier", revel::Entity::Modifier),
            ] {
                for object in cx.world.revel.objects(instance, resource) {
                    let at = object["updated_date"]
                        .as_str()
                        .and_then(parse_timestamp_micros);
                    let (entity, version) = kept(kind, object["id"].to_string());
                    if version != at {
                        violations.push(format!(
                            "pull: {} updated at {at:?} is kept at {version:?}",
                            entity.key()
                        ));
                    }
                }
            }
        }
    }
    cx.violations.extend(violations);
}

/// Check 6's list: the DLQ and the on-failure destination, each item
/// explained when an injected outage overlapped its life.
fn parked(world: &World) -> Vec<Parked> {
    let outages = world.faults.outages();
    let overlapped =
        |from: Instant, to: Instant| outages.iter().any(|o| o.from < to && from < o.until);
    let mut parked = Vec::new();
    for dead in world.queue.dead_letters() {
        parked.push(Parked {
            what: format!(
                "jobs DLQ: {} group {} after {} receives",
                dead.message_id, dead.group, dead.receives
            ),
            explained: overlapped(dead.sent_at, dead.parked_at),
        });
    }
    for batch in world.mapping.parked() {
        parked.push(Parked {
            what: format!(
                "processor on-failure destination: shard {} {}..{} ({}): {}",
                batch.shard,
                batch.first_sequence,
                batch.last_sequence,
                batch.reason,
                batch.event_keys.join(" ")
            ),
            explained: overlapped(batch.written_at, batch.parked_at),
        });
    }
    for item in &parked {
        world.trace.note(
            "alarm",
            format!(
                "{} PARKED: {}",
                if item.explained {
                    "explained"
                } else {
                    "UNEXPLAINED"
                },
                item.what
            ),
        );
    }
    parked
}
