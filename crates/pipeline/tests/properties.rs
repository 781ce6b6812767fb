//! Properties of the pipeline, through its public API only (the receivers,
//! the stream processor, the in-memory stores of the `fakes` feature), on
//! tokio's paused clock so receipt times are exact:
//!
//! 1. Any interleaving and repetition of one entity's requests, some of
//!    them hitting an outage first (the events table: the sender retries; the
//!    entities table or the queue while the record is processed: the stream
//!    retries it), ends in the state that delivering each change once, in
//!    order, ends in: the same entity rank and state, the same archived
//!    events, the newest change's follow-up queued; and the entity is
//!    written once per change newer than every change before it. Two
//!    changes with the same version (a booking's amendment and cancellation)
//!    end the same whatever their order.
//! 2. Stock and menu bodies carry no identity: each request that is stored
//!    is an event of its own, ranked by its receipt, kept per establishment;
//!    a repeat of the same state is collapsed (no new revision, while out,
//!    in, out is three), a repeat of the same `X-Revel-Event-Id` is a
//!    duplicate, every stored stock change queues its delivery and every menu
//!    push its catalog pull.
//! 3. Event keys built from fields (business keys) don't change when the
//!    JSON is reformatted (whitespace, key order, `\u` escapes); keys built
//!    from the body hash (stock and menu bodies, unparseable bodies) change
//!    with any byte.
//! 4. A rewards card reported on by its own webhook and by orders'
//!    `gift_reward_data`, in any order, repeated, with outages, ends at the
//!    state of its newest date (the card's own, not the order's), and that
//!    state's delivery is queued once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use domain::clock::TokioClock;
use domain::error::ReceiveError;
use domain::idempotency::{event_key, sha256_hex, KeyParts};
use domain::ids::{EventKey, InstanceName};
use domain::request::WebhookRequest;
use domain::sources::{EventKind, Source};
use http::{HeaderMap, HeaderName, HeaderValue};
use pipeline::config::Settings;
use pipeline::fakes::MemoryAws;
use pipeline::process::Processor;
use pipeline::receive::{Outcome, Receiver};
use ports::fakes::FixedSecrets;
use ports::queue::JobKind;
use ports::secrets::SecretCache;
use ports::store::{EventStatus, Rank};
use proptest::prelude::*;
use serde_json::{json, Value};
use vendors::booking::{Booking, BookingFamily};
use vendors::revel::signature::sign;
use vendors::revel::{Revel, RevelEventType, ESTABLISHMENT_HEADER, EVENT_ID_HEADER};
use vendors::vinesos::downstream::SigningSecret;
use vendors::vinesos::{VinesOs, VinesOsEvent};
use vendors::winesitting::{WineSitting, WineSittingEvent};

const REVEL_SECRET: &str = "demo-webhook-secret";
const VINESOS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "demo-url-token";
/// Virtual time zero (receipt times count from here).
const START: time::OffsetDateTime = time::macros::datetime!(2026-11-24 10:00 UTC);

/// A source and event type whose requests describe one entity at a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    RevelOrder,
    RevelCustomer,
    RevelRewardCard,
    WineSittingOrder,
    BookingBooking,
    VinesOsMember,
}

const FAMILIES: [Family; 6] = [
    Family::RevelOrder,
    Family::RevelCustomer,
    Family::RevelRewardCard,
    Family::WineSittingOrder,
    Family::BookingBooking,
    Family::VinesOsMember,
];

/// The entity's version `n`: a timestamp `n` seconds after a fixed instant.
fn timestamp(n: u32) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(1_640_725_513 + i64::from(n)).unwrap();
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn cache(doc: Value) -> SecretCache {
    SecretCache::new(FixedSecrets(doc.to_string()), Duration::from_secs(3600))
}

fn revel_source() -> Arc<dyn Source> {
    Arc::new(Revel::new(cache(json!({"demo": REVEL_SECRET}))))
}

/// A receiver of `kind` from `source` on `stores`, reading tokio's clock.
fn receiver(source: Arc<dyn Source>, kind: Arc<dyn EventKind>, stores: &MemoryAws) -> Receiver {
    Receiver::new(
        source,
        kind,
        stores.events.clone(),
        Settings::default(),
        Arc::new(TokioClock::starting_at(START)),
    )
}

/// A request with `headers` (signatures and URL tokens added by the caller).
fn request(raw: &[u8], headers: &[(&str, String)], path_params: &[(&str, &str)]) -> WebhookRequest {
    let mut map = HeaderMap::new();
    map.insert("content-type", HeaderValue::from_static("application/json"));
    for (name, value) in headers {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    WebhookRequest {
        headers: map,
        body: raw.to_vec(),
        request_id: "req".into(),
        path_params: path_params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// A Revel request, signed, with extra headers.
fn revel_request(raw: &[u8], extra: &[(&str, String)]) -> WebhookRequest {
    let mut headers = vec![
        ("x-revel-signature", sign(REVEL_SECRET.as_bytes(), raw)),
        ("x-revel-instance", "demo".to_owned()),
    ];
    headers.extend(extra.iter().cloned());
    request(raw, &headers, &[])
}

impl Family {
    fn kind(self) -> Arc<dyn EventKind> {
        match self {
            Self::RevelOrder => Arc::new(RevelEventType::OrderFinalized),
            Self::RevelCustomer => Arc::new(RevelEventType::CustomerUpdated),
            Self::RevelRewardCard => Arc::new(RevelEventType::RewardCardCreated),
            Self::WineSittingOrder => Arc::new(WineSittingEvent),
            Self::BookingBooking => Arc::new(BookingFamily::Bookings),
            Self::VinesOsMember => Arc::new(VinesOsEvent::MemberUpdated),
        }
    }

    fn source(self) -> Arc<dyn Source> {
        match self {
            Self::RevelOrder | Self::RevelCustomer | Self::RevelRewardCard => revel_source(),
            Self::WineSittingOrder => {
                Arc::new(WineSitting::new(cache(json!({"demo": {"token": TOKEN}}))))
            }
            Self::BookingBooking => Arc::new(Booking::new(
                cache(json!({"demo": {"token": TOKEN}})),
                "x-signature",
            )),
            Self::VinesOsMember => Arc::new(VinesOs::new(cache(
                json!({"demo": {"webhook": VINESOS_SECRET}}),
            ))),
        }
    }

    fn source_name(self) -> &'static str {
        match self {
            Self::RevelOrder | Self::RevelCustomer | Self::RevelRewardCard => "revel",
            Self::WineSittingOrder => "winesitting",
            Self::BookingBooking => "booking",
            Self::VinesOsMember => "vinesos",
        }
    }

    /// The body of the entity at version `n`, its other fields varying with
    /// `n`, plus `extra` fields; `card` fields are payment card data (removed
    /// before state is kept). A booking's change at `n` is an amendment, or
    /// a cancellation when `ends`.
    fn body(self, n: u32, ends: bool, extra: &BTreeMap<String, Value>) -> Value {
        let at = timestamp(n);
        let mut body = match self {
            Self::RevelOrder => json!({
                "orderInfo": {"uuid": "o-1", "updated_date": at, "final_total": n * 3},
                "items": [{"id": n, "quantity": 1}],
                "payments": [{"amount": "4.86", "cc_last_name": "X"}]}),
            Self::RevelCustomer => json!({
                "uuid": "c-1", "updated_date": at, "first_name": format!("name {n}"),
                "cc_last_4_digits": "4242"}),
            Self::RevelRewardCard => json!({"id": 7, "updated_date": at, "points": n}),
            Self::WineSittingOrder => json!({
                "type": "ORDER", "operation": "UPDATE", "date": at,
                "object": {"id": 42, "status": format!("step {n}")}}),
            Self::BookingBooking => json!({
                "notification": {"event": "Bookings",
                                 "trigger": if ends { "Cancellation" } else { "Amendment" },
                                 "occurred_at": at},
                "data": {"id": "B-1", "pax": n}}),
            Self::VinesOsMember => json!({
                "id": format!("evt_{n}"), "type": "member.updated", "occurred_at": at,
                "data": {"id": "m-1", "points": n}}),
        };
        let object = body.as_object_mut().unwrap();
        for (k, v) in extra {
            object.insert(format!("x_{k}"), v.clone());
        }
        body
    }

    /// A request of `raw` as the sender makes it (signed, or with its URL
    /// token); `id` names the message for senders that give one.
    fn request(self, raw: &[u8], id: &str) -> WebhookRequest {
        let path = [("account", "demo"), ("token", TOKEN)];
        match self {
            Self::RevelOrder | Self::RevelCustomer | Self::RevelRewardCard => {
                revel_request(raw, &[])
            }
            Self::WineSittingOrder | Self::BookingBooking => request(raw, &[], &path),
            Self::VinesOsMember => {
                // A redelivery keeps its message id and is signed anew, with
                // the time the receiver checks (the system's).
                let id = format!("msg_{id}");
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let signature = SigningSecret::parse(VINESOS_SECRET)
                    .unwrap()
                    .sign(&id, now, raw);
                request(
                    raw,
                    &[
                        ("webhook-id", id),
                        ("webhook-timestamp", now.to_string()),
                        ("webhook-signature", signature),
                    ],
                    &[("instance", "demo")],
                )
            }
        }
    }
}

/// Where an outage hits a request's first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The events table: the receiver answers 503, the sender retries.
    Events,
    /// The entities table while the record is processed: the stream retries.
    Entities,
    /// The queue while the record is processed: the stream retries.
    Queue,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        5 => Just(Fault::None),
        1 => Just(Fault::Events),
        1 => Just(Fault::Entities),
        1 => Just(Fault::Queue),
    ]
}

/// A receiver and the processor on one set of in-memory stores, the
/// stream handed over in order as the event source mapping does.
struct Pipeline {
    stores: MemoryAws,
    receiver: Receiver,
    processor: Processor,
    handed: usize,
}

impl Pipeline {
    fn new(source: Arc<dyn Source>, kind: Arc<dyn EventKind>) -> Self {
        let stores = MemoryAws::default();
        Self {
            receiver: receiver(source, kind, &stores),
            processor: stores.processor(),
            stores,
            handed: 0,
        }
    }

    /// Delivers `request` as its sender would (again after a 503, a
    /// millisecond later), then hands the new records to the processor (a
    /// record again after a failure, as the stream does). An outage hits
    /// the first attempt only.
    async fn deliver(&mut self, request: &WebhookRequest, fault: Fault) -> Outcome {
        let outcome = Self::receive(&self.stores, &self.receiver, request, fault).await;
        self.process(fault).await;
        outcome
    }

    /// [`Pipeline::deliver`] through `receiver`, another one on its stores.
    async fn deliver_through(
        &mut self,
        receiver: &Receiver,
        request: &WebhookRequest,
        fault: Fault,
    ) -> Outcome {
        let outcome = Self::receive(&self.stores, receiver, request, fault).await;
        self.process(fault).await;
        outcome
    }

    /// `request` received by `receiver` as its sender delivers it.
    async fn receive(
        stores: &MemoryAws,
        receiver: &Receiver,
        request: &WebhookRequest,
        fault: Fault,
    ) -> Outcome {
        tokio::time::advance(Duration::from_millis(1)).await;
        stores
            .events
            .down
            .store(fault == Fault::Events, Ordering::SeqCst);
        let first = receiver.receive(request).await;
        stores.events.down.store(false, Ordering::SeqCst);
        match first {
            Ok(outcome) => outcome,
            Err(ReceiveError::Unavailable(_)) if fault == Fault::Events => {
                tokio::time::advance(Duration::from_millis(1)).await;
                receiver.receive(request).await.expect("the redelivery")
            }
            Err(error) => panic!("unexpected refusal: {error:?}"),
        }
    }

    async fn process(&mut self, fault: Fault) {
        loop {
            let next = self
                .stores
                .events
                .stream
                .lock()
                .unwrap()
                .get(self.handed)
                .cloned();
            let Some(record) = next else { return };
            self.stores
                .entities
                .down
                .store(fault == Fault::Entities, Ordering::SeqCst);
            self.stores
                .queue
                .down
                .store(fault == Fault::Queue, Ordering::SeqCst);
            let first = self.processor.process(&record).await;
            self.stores.entities.down.store(false, Ordering::SeqCst);
            self.stores.queue.down.store(false, Ordering::SeqCst);
            if first.is_err() {
                assert!(fault != Fault::None, "failed without an outage: {first:?}");
                self.processor.process(&record).await.expect("the retry");
            }
            self.handed += 1;
        }
    }

    /// What the stores hold, without what depends on the order of arrival
    /// (revisions, receipt times, the jobs of changes that were newest for
    /// a while).
    fn state(&self) -> Stored {
        let entities = self
            .stores
            .entities
            .entities
            .lock()
            .unwrap()
            .iter()
            .map(|(key, e)| {
                (
                    key.to_string(),
                    (e.rank.clone(), e.state.state_json.clone()),
                )
            })
            .collect();
        let events = self
            .stores
            .events
            .all()
            .into_iter()
            .map(|r| (r.event_key.to_string(), (r.status, r.body_sha256)))
            .collect();
        Stored { entities, events }
    }

    fn jobs(&self) -> Vec<ports::queue::QueuedJob> {
        self.stores.queue.jobs.lock().unwrap().clone()
    }
}

#[derive(Debug, PartialEq)]
struct Stored {
    /// entity key -> (rank, state)
    entities: BTreeMap<String, (Rank, String)>,
    /// event key -> (status, body hash)
    events: BTreeMap<String, (EventStatus, String)>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// One entity's changes, and a schedule delivering each at least once:
/// every change once in a shuffled order, with repeats spliced in, and an
/// outage (or none) for each step's first attempt.
#[derive(Debug, Clone)]
struct Scenario {
    family: Family,
    /// (version, ends the entity), in the order the sender made them.
    changes: Vec<(u32, bool)>,
    steps: Vec<(usize, Fault)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let family = prop::sample::select(FAMILIES.to_vec());
    let versions = prop::collection::btree_set(0u32..100_000, 1..6);
    // A booking may get an amendment and a cancellation of one version.
    let tie = any::<Option<prop::sample::Index>>();
    (family, versions, tie).prop_flat_map(|(family, versions, tie)| {
        let mut changes: Vec<(u32, bool)> = versions.into_iter().map(|v| (v, false)).collect();
        if let (Family::BookingBooking, Some(at)) = (family, tie) {
            let version = changes[at.index(changes.len())].0;
            changes.push((version, true));
        }
        let count = changes.len();
        let shuffled = Just((0..count).collect::<Vec<_>>()).prop_shuffle();
        let repeats = prop::collection::vec((0..count, any::<prop::sample::Index>()), 0..8);
        let faults = prop::collection::vec(fault(), count + 8);
        (shuffled, repeats, faults).prop_map(move |(mut order, repeats, faults)| {
            for (change, at) in repeats {
                order.insert(at.index(order.len() + 1), change);
            }
            Scenario {
                family,
                changes: changes.clone(),
                steps: order.into_iter().zip(faults).collect(),
            }
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Property 1: order, repeats and outages don't change the outcome.
    #[test]
    fn any_interleaving_repetition_and_outage_of_one_entitys_requests_ends_in_the_in_order_state(
        scenario in scenario(),
    ) {
        let Scenario { family, changes, steps } = &scenario;
        let family = *family;
        let raws: Vec<Vec<u8>> = changes
            .iter()
            .map(|&(n, ends)| serde_json::to_vec(&family.body(n, ends, &BTreeMap::new())).unwrap())
            .collect();
        let id = |i: usize| format!("{}-{}", changes[i].0, changes[i].1);
        // A change ranks by its version, then a cancellation first, then
        // its body: the in-order run sends them in that order.
        let rank = |i: usize| (changes[i].0, changes[i].1, sha256_hex(&raws[i]));
        let mut in_order_changes: Vec<usize> = (0..changes.len()).collect();
        in_order_changes.sort_by_key(|&i| rank(i));
        let runtime = runtime();
        let _clock = runtime.enter();
        let mut in_order = Pipeline::new(family.source(), family.kind());
        let mut shuffled = Pipeline::new(family.source(), family.kind());
        runtime.block_on(async {
            for &i in &in_order_changes {
                let outcome = in_order.deliver(&family.request(&raws[i], &id(i)), Fault::None).await;
                assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
            }
            for &(i, fault) in steps {
                let outcome = shuffled.deliver(&family.request(&raws[i], &id(i)), fault).await;
                assert!(
                    matches!(outcome, Outcome::Accepted { .. } | Outcome::Duplicate { .. }),
                    "{outcome:?}"
                );
            }
        });
        let expected = in_order.state();
        prop_assert_eq!(expected.entities.len(), 1);
        prop_assert_eq!(expected.events.len(), changes.len());
        prop_assert_eq!(&shuffled.state(), &expected);

        // The newest change's follow-up is queued: every family has one (a
        // delivery to the partner, WineSitting's and the booking platform's
        // too, or, for the partner's own changes, a write to Revel).
        let newest = |p: &Pipeline| {
            p.stores.entities.entities.lock().unwrap().values().next().map(|e| e.rank.clone())
        };
        let queued_for = |p: &Pipeline, rank: &Rank| {
            p.jobs().iter().any(|j| j.message.version == Some(rank.version))
        };
        let rank_held = newest(&shuffled).unwrap();
        prop_assert!(queued_for(&shuffled, &rank_held));
        prop_assert!(queued_for(&in_order, &rank_held));

        // Newest-wins never rewrites what it already holds: the entity was
        // written once per change newer than every change stored before it,
        // also when a retry redid the steps of a record an outage stopped.
        let mut newest_seen = None;
        let mut newer = 0;
        let mut stored = BTreeSet::new();
        for &(i, _) in steps {
            if stored.insert(i) && newest_seen.as_ref().is_none_or(|n| rank(i) > *n) {
                newest_seen = Some(rank(i));
                newer += 1;
            }
        }
        let revisions: Vec<u64> = shuffled.stores.entities.entities.lock().unwrap().values().map(|e| e.revision).collect();
        prop_assert_eq!(revisions, vec![newer]);
    }
}

/// What a stock or menu scenario sends: per step, the establishment (or
/// none), the state (in stock, or for the menu nothing that changes), an
/// event id or none, and how often it is sent.
#[derive(Debug, Clone)]
struct Toggle {
    establishment: Option<&'static str>,
    instock: bool,
    with_event_id: bool,
    /// Sent again right after (a duplicate, or the sender's retry of a
    /// request whose answer it lost).
    sent_twice: bool,
    fault: Fault,
}

fn toggles() -> impl Strategy<Value = Vec<Toggle>> {
    let toggle = (
        prop::sample::select(vec![None, Some("1"), Some("2")]),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
        fault(),
    )
        .prop_map(
            |(establishment, instock, with_event_id, sent_twice, fault)| Toggle {
                establishment,
                instock,
                with_event_id,
                sent_twice,
                fault,
            },
        );
    prop::collection::vec(toggle, 1..10)
}

/// The entity id of a stock or menu change at `establishment`.
fn per_establishment(establishment: Option<&str>, id: &str) -> String {
    match establishment {
        Some(e) => format!("establishment-{e}:{id}"),
        None => id.to_owned(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Property 2: bodies without identity.
    #[test]
    fn stock_and_menu_changes_rank_by_receipt_per_establishment_and_collapse_repeats(
        toggles in toggles(),
        menu in any::<bool>(),
    ) {
        let kind = if menu { RevelEventType::MenuUpdated } else { RevelEventType::StockChanged };
        let runtime = runtime();
        let _clock = runtime.enter();
        let mut pipeline = Pipeline::new(revel_source(), Arc::new(kind));
        // Per establishment: the state of each stored change, in order, and
        // the last one's receipt and body.
        let mut stored: BTreeMap<Option<&str>, Vec<bool>> = BTreeMap::new();
        let mut last: BTreeMap<Option<&str>, (i64, String)> = BTreeMap::new();
        let mut keys = BTreeSet::new();
        runtime.block_on(async {
            for (n, toggle) in toggles.iter().enumerate() {
                let body = if menu {
                    json!({"event": "menu.updated"})
                } else {
                    json!({"id": 622_335, "instock": toggle.instock, "type": "product"})
                };
                let raw = serde_json::to_vec(&body).unwrap();
                let mut headers = Vec::new();
                if let Some(e) = toggle.establishment {
                    headers.push((ESTABLISHMENT_HEADER, e.to_owned()));
                }
                if toggle.with_event_id {
                    headers.push((EVENT_ID_HEADER, format!("evt-{n}")));
                }
                let request = revel_request(&raw, &headers);
                for send in 0..(1 + usize::from(toggle.sent_twice)) {
                    let fault = if send == 0 { toggle.fault } else { Fault::None };
                    let outcome = pipeline.deliver(&request, fault).await;
                    match outcome {
                        Outcome::Accepted { event_key } => {
                            stored.entry(toggle.establishment).or_default().push(toggle.instock);
                            let record = pipeline.stores.events.records.lock().unwrap()[&event_key].clone();
                            last.insert(toggle.establishment, (record.received_at_micros, record.body_sha256));
                            assert!(keys.insert(event_key));
                        }
                        Outcome::Duplicate { event_key } => {
                            assert!(toggle.with_event_id && send == 1, "only a repeated event id is a duplicate");
                            assert!(keys.contains(&event_key));
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
        });
        let entities = pipeline.stores.entities.entities.lock().unwrap().clone();
        prop_assert_eq!(entities.len(), stored.len(), "one entity per establishment");
        let id = if menu { "current" } else { "product:622335" };
        for (establishment, states) in &stored {
            let key = format!("revel:demo:{}:{}", if menu { "menu" } else { "item_stock" }, per_establishment(*establishment, id));
            let entity = entities.iter().find(|(k, _)| k.as_str() == key).map(|(_, e)| e);
            prop_assert!(entity.is_some(), "{} missing", key);
            let entity = entity.unwrap();
            // The last change received wins, whatever it says.
            let (received, sha) = &last[establishment];
            prop_assert_eq!(&entity.rank, &Rank::new(*received, false, sha));
            if !menu {
                let held: Value = serde_json::from_str(&entity.state.state_json).unwrap();
                prop_assert_eq!(held["instock"].as_bool(), states.last().copied());
            }
            // A revision per change of state: repeats collapse, out, in, out
            // is three.
            let changes = if menu {
                1
            } else {
                1 + states.windows(2).filter(|w| w[0] != w[1]).count() as u64
            };
            prop_assert_eq!(entity.revision, changes);
        }
        // Every stored change asks for its follow-up: a delivery of the stock
        // (nothing is delivered here, so a repeat still owes one), a catalog
        // pull for each menu push.
        let jobs = pipeline.jobs();
        let wanted = if menu { JobKind::CatalogPull } else { JobKind::SyncEntity };
        prop_assert!(jobs.iter().all(|j| j.message.job == wanted));
        let ids: BTreeSet<&str> = jobs.iter().map(|j| j.deduplication_id.as_str()).collect();
        prop_assert_eq!(ids.len(), keys.len());
    }
}

/// A small deterministic generator for reformatting choices.
struct Choices(u64);

impl Choices {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `value` as JSON text with members in a random order, random whitespace
/// between tokens and some characters written as `\u` escapes: the same JSON,
/// other bytes.
fn reformat(value: &Value, choices: &mut Choices) -> String {
    let mut out = String::new();
    write_value(value, choices, &mut out);
    out
}

fn space(choices: &mut Choices, out: &mut String) {
    out.push_str(["", "", " ", "\n", "\t", "\r\n  ", "   "][choices.below(7)]);
}

fn write_string(s: &str, choices: &mut Choices, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        if c.is_ascii_alphanumeric() && choices.below(6) == 0 {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            let quoted = serde_json::to_string(&c.to_string()).unwrap();
            out.push_str(&quoted[1..quoted.len() - 1]);
        }
    }
    out.push('"');
}

fn write_value(value: &Value, choices: &mut Choices, out: &mut String) {
    space(choices, out);
    match value {
        Value::Object(map) => {
            let mut members: Vec<_> = map.iter().collect();
            for i in (1..members.len()).rev() {
                members.swap(i, choices.below(i + 1));
            }
            out.push('{');
            for (i, (key, inner)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                space(choices, out);
                write_string(key, choices, out);
                space(choices, out);
                out.push(':');
                write_value(inner, choices, out);
            }
            space(choices, out);
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, inner) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(inner, choices, out);
            }
            space(choices, out);
            out.push(']');
        }
        Value::String(s) => write_string(s, choices, out),
        other => out.push_str(&other.to_string()),
    }
    space(choices, out);
}

/// Extra fields of any JSON shape, carried along by every body.
fn extra_fields() -> impl Strategy<Value = BTreeMap<String, Value>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-z \\-_é\"\\\\/]{0,12}".prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map("[a-z_]{1,8}", value, 0..5)
}

/// The key the receivers derive for `raw` (parse, interpret, key), received
/// at a fixed instant, with no sender event id.
fn derived_key(source: &str, kind: &dyn EventKind, raw: &[u8]) -> EventKey {
    let instance = InstanceName::parse("demo").unwrap();
    let meaning = serde_json::from_slice::<Value>(raw)
        .ok()
        .and_then(|body| kind.interpret(body, &HeaderMap::new()).ok());
    event_key(KeyParts {
        source,
        instance: &instance,
        event_type: kind.event_type(),
        sender_event_id: None,
        identity: meaning.as_ref().map(|m| &m.identity),
        body_sha256: &sha256_hex(raw),
        received_at_micros: 1_700_000_000_000_000,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Property 3a: a business key is the same however the JSON is written.
    #[test]
    fn a_business_key_is_the_same_whatever_the_whitespace_key_order_or_escapes(
        family in prop::sample::select(FAMILIES.to_vec()),
        n in 0u32..100_000,
        extra in extra_fields(),
        seeds in (1u64.., 1u64..),
    ) {
        let body = family.body(n, false, &extra);
        let one = reformat(&body, &mut Choices(seeds.0));
        let other = reformat(&body, &mut Choices(seeds.1));
        prop_assert_eq!(serde_json::from_str::<Value>(&one).unwrap(), body.clone());
        prop_assert_eq!(serde_json::from_str::<Value>(&other).unwrap(), body.clone());
        let kind = family.kind();
        let source = family.source_name();
        let key = derived_key(source, kind.as_ref(), one.as_bytes());
        prop_assert!(key.as_str().contains(":biz:"), "{}", key);
        prop_assert_eq!(&key, &derived_key(source, kind.as_ref(), other.as_bytes()));

        // End to end, for senders that send no event id of their own: the
        // same bytes again are a duplicate, and the reformatted copy is the
        // same event with another body, kept as a conflict of it.
        if family != Family::VinesOsMember {
            let runtime = runtime();
            let _clock = runtime.enter();
            let pipeline = Pipeline::new(family.source(), family.kind());
            let receive = |raw: &str| {
                runtime.block_on(pipeline.receiver.receive(&family.request(raw.as_bytes(), "1"))).unwrap()
            };
            prop_assert_eq!(receive(&one), Outcome::Accepted { event_key: key.clone() });
            prop_assert_eq!(receive(&one), Outcome::Duplicate { event_key: key.clone() });
            if one != other {
                let conflict = receive(&other);
                prop_assert!(
                    matches!(&conflict, Outcome::Conflict { conflict_of, .. } if *conflict_of == key),
                    "{:?}", conflict
                );
            }
        }
    }

    /// Property 3b: a key made of the body hash changes with any byte,
    /// whitespace included, and only then.
    #[test]
    fn a_content_key_changes_with_any_byte_of_the_body_whitespace_included(
        kind in prop::sample::select(vec![RevelEventType::StockChanged, RevelEventType::MenuUpdated]),
        instock in any::<bool>(),
        extra in extra_fields(),
        seed in 1u64..,
        change in prop_oneof![
            // another way of writing the same JSON
            any::<u64>().prop_map(|s| (None, s.max(1))),
            // one byte changed
            (any::<prop::sample::Index>(), 1u8..).prop_map(|(i, x)| (Some((i, x)), 0)),
        ],
    ) {
        let mut body = match kind {
            RevelEventType::StockChanged => json!({"id": 622_335, "instock": instock, "type": "product"}),
            _ => json!({"event": "menu.updated"}),
        };
        for (k, v) in &extra {
            body[format!("x_{k}")] = v.clone();
        }
        let one = reformat(&body, &mut Choices(seed)).into_bytes();
        let other = match change {
            (None, s) => reformat(&body, &mut Choices(s)).into_bytes(),
            (Some((i, x)), _) => {
                let mut bytes = one.clone();
                bytes[i.index(one.len())] ^= x;
                bytes
            }
        };
        let key = derived_key("revel", &kind, &one);
        prop_assert!(key.as_str().contains(":at:"), "{}", key);
        prop_assert_eq!(&key, &derived_key("revel", &kind, &one), "same bytes, same key");
        prop_assert_eq!(
            key == derived_key("revel", &kind, &other),
            one == other,
            "{:?} vs {:?}", String::from_utf8_lossy(&one), String::from_utf8_lossy(&other)
        );
    }
}

/// The property's own premise: the body hash is what content keys are made
/// of, so a body that doesn't parse at all is keyed by its bytes too.
#[test]
fn an_unparseable_body_is_keyed_by_its_bytes_alone() {
    let kind = RevelEventType::CustomerUpdated;
    let a = derived_key("revel", &kind, b"{not json");
    let b = derived_key("revel", &kind, b"{not  json");
    assert!(a.as_str().contains(":sha256:"), "{a}");
    assert_ne!(a, b);
    assert_eq!(a, derived_key("revel", &kind, b"{not json"));
}

/// A rewards card's changes: (the card's date, told by an order's
/// `gift_reward_data` rather than by the card's own webhook, its points).
type CardChanges = Vec<(u32, bool, u32)>;

/// A card's changes and a schedule delivering each at least once, with
/// outages.
fn card_scenario() -> impl Strategy<Value = (CardChanges, Vec<(usize, Fault)>)> {
    prop::collection::btree_map(0u32..100_000, (any::<bool>(), 0u32..500), 1..6)
        .prop_flat_map(|changes| {
            let changes: Vec<(u32, bool, u32)> = changes
                .into_iter()
                .map(|(at, (by_order, points))| (at, by_order, points))
                .collect();
            let count = changes.len();
            (
                Just(changes),
                Just((0..count).collect::<Vec<_>>()).prop_shuffle(),
                prop::collection::vec((0..count, any::<prop::sample::Index>()), 0..6),
                prop::collection::vec(fault(), count + 6),
            )
        })
        .prop_map(|(changes, mut order, repeats, faults)| {
            for (change, at) in repeats {
                order.insert(at.index(order.len() + 1), change);
            }
            (changes, order.into_iter().zip(faults).collect())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Property 4: a card two kinds of event report on.
    #[test]
    fn a_rewards_card_told_of_by_orders_and_by_its_own_webhook_ends_at_its_newest_date_in_any_order(
        (changes, steps) in card_scenario(),
    ) {
        let runtime = runtime();
        let _clock = runtime.enter();
        let mut pipeline = Pipeline::new(revel_source(), Arc::new(RevelEventType::RewardCardCreated));
        let orders = receiver(revel_source(), Arc::new(RevelEventType::OrderFinalized), &pipeline.stores);
        let card = |at: u32, points: u32| json!({"id": 15, "number": "J87", "current_points": points, "updated_date": timestamp(at)});
        let requests: Vec<(bool, WebhookRequest)> = changes
            .iter()
            .map(|&(at, by_order, points)| {
                let body = if by_order {
                    // The order's own date is not the card's.
                    json!({"orderInfo": {"uuid": format!("o-{at}"), "updated_date": timestamp(at / 2),
                                         "gift_reward_data": card(at, points).to_string()}})
                } else {
                    card(at, points)
                };
                (by_order, revel_request(&serde_json::to_vec(&body).unwrap(), &[]))
            })
            .collect();
        runtime.block_on(async {
            for &(i, fault) in &steps {
                let (by_order, request) = &requests[i];
                let outcome = if *by_order {
                    pipeline.deliver_through(&orders, request, fault).await
                } else {
                    pipeline.deliver(request, fault).await
                };
                assert!(matches!(outcome, Outcome::Accepted { .. } | Outcome::Duplicate { .. }), "{outcome:?}");
            }
        });
        let &(newest, _, points) = changes.iter().max_by_key(|(at, _, _)| *at).unwrap();
        let entities = pipeline.stores.entities.entities.lock().unwrap().clone();
        let held = entities
            .iter()
            .find(|(key, _)| key.as_str() == "revel:demo:rewards_card:15")
            .map(|(_, e)| e.clone());
        prop_assert!(held.is_some(), "the card is kept");
        let held = held.unwrap();
        let state: Value = serde_json::from_str(&held.state.state_json).unwrap();
        prop_assert_eq!(state["current_points"].as_u64(), Some(u64::from(points)));
        prop_assert_eq!(
            Some(held.rank.version),
            domain::sources::parse_timestamp_micros(&timestamp(newest))
        );
        // Every state that was newest when it arrived was delivered for:
        // the newest one's delivery is queued.
        let card_jobs = pipeline
            .jobs()
            .into_iter()
            .filter(|j| j.message.entity_key.as_deref() == Some("revel:demo:rewards_card:15"))
            .filter(|j| j.message.version == Some(held.rank.version))
            .count();
        prop_assert_eq!(card_jobs, 1);
    }
}
