//! Properties of the pipeline, through its public API only (`Ingestor::new`,
//! `Ingestor::ingest`, the in-memory fakes of the `fakes` feature):
//!
//! 1. Any interleaving and repetition of a set of deliveries for one entity,
//!    some of them hitting an outage first and redelivered as the sender
//!    would, ends in the same stored state (entity state and version,
//!    archived events, queued jobs) as delivering each once, in order; and
//!    the entity is written only when a newer version arrives.
//! 2. Event keys built from fields (business keys) don't change when the
//!    JSON is reformatted (whitespace, key order, `\u` escapes); keys built
//!    from the body hash (stock and menu bodies, unparseable bodies) change
//!    with any byte.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::{json, Value};
use shared::config::Settings;
use shared::downstream::SigningSecret;
use shared::error::IngestError;
use shared::fakes::{FixedSecrets, MemoryEntities, MemoryEvents, MemoryQueue, MemoryStores};
use shared::idempotency::{event_key, sha256_hex, KeyParts};
use shared::ids::{EventKey, InstanceName};
use shared::ingest::{Delivery, Ingestor, Outcome, Stores};
use shared::secrets::SecretCache;
use shared::signature::sign;
use shared::sources::booking::{Booking, BookingFamily};
use shared::sources::revel::{Revel, RevelEventType};
use shared::sources::vinesos::{VinesOs, VinesOsEvent};
use shared::sources::winesitting::{WineSitting, WineSittingEvent};
use shared::sources::EventKind;

const REVEL_SECRET: &str = "demo-webhook-secret";
const VINESOS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "demo-url-token";

/// A source and event type whose deliveries describe one entity at a version.
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

    fn ingestor(self, stores: Stores) -> Ingestor {
        let cache =
            |doc: Value| SecretCache::new(FixedSecrets(doc.to_string()), Duration::from_secs(3600));
        let source: Arc<dyn shared::sources::Source> = match self {
            Self::RevelOrder | Self::RevelCustomer | Self::RevelRewardCard => {
                Arc::new(Revel::new(cache(json!({"demo": REVEL_SECRET}))))
            }
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
        };
        let settings = Settings {
            duplicate_wait: Duration::from_millis(200),
            ..Settings::default()
        };
        Ingestor::new(source, self.kind(), stores, settings)
    }

    /// The body of the entity at version `n`, its other fields varying with
    /// `n`, plus `extra` fields; `card` is a payment card field (removed
    /// before state is kept).
    fn body(self, n: u32, extra: &BTreeMap<String, Value>) -> Value {
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
                "notification": {"event": "Bookings", "trigger": "Amendment", "occurred_at": at},
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

    /// A delivery of `raw` as the sender makes it (signed, or with its URL
    /// token). `n` names the event for senders that give an id per message.
    fn delivery(self, raw: &[u8], n: u32) -> Delivery {
        let mut headers = HeaderMap::new();
        let mut path_params = Vec::new();
        match self {
            Self::RevelOrder | Self::RevelCustomer | Self::RevelRewardCard => {
                let signature = sign(REVEL_SECRET.as_bytes(), raw);
                headers.insert("x-revel-signature", signature.parse().unwrap());
                headers.insert("x-revel-instance", HeaderValue::from_static("demo"));
            }
            Self::WineSittingOrder | Self::BookingBooking => {
                path_params.push(("account".to_owned(), "demo".to_owned()));
                path_params.push(("token".to_owned(), TOKEN.to_owned()));
            }
            Self::VinesOsMember => {
                // A redelivery keeps its message id and is signed anew.
                let id = format!("msg_{n}");
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let signature = SigningSecret::parse(VINESOS_SECRET)
                    .unwrap()
                    .sign(&id, now, raw);
                headers.insert("webhook-id", id.parse().unwrap());
                headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
                headers.insert("webhook-signature", signature.parse().unwrap());
                path_params.push(("instance".to_owned(), "demo".to_owned()));
            }
        }
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        Delivery {
            headers,
            body: raw.to_vec(),
            request_id: format!("req-{n}"),
            path_params,
        }
    }
}

struct Harness {
    ingestor: Ingestor,
    events: Arc<MemoryEvents>,
    entities: Arc<MemoryEntities>,
    queue: Arc<MemoryQueue>,
}

fn harness(family: Family) -> Harness {
    let memory = MemoryStores::default();
    let (events, entities, queue) = (
        memory.events.clone(),
        memory.entities.clone(),
        memory.queue.clone(),
    );
    let stores = memory.stores();
    Harness {
        ingestor: family.ingestor(stores),
        events,
        entities,
        queue,
    }
}

/// What the stores hold, without what depends on timing (receipt times,
/// leases, write counts).
#[derive(Debug, PartialEq)]
struct Stored {
    /// entity key -> (version, state, the event that set it)
    entities: BTreeMap<String, (i64, String, String)>,
    /// event key -> (status, body hash)
    events: BTreeMap<String, (String, String)>,
    /// (deduplication id, group, message), sorted
    jobs: Vec<(String, String, String)>,
}

fn stored(h: &Harness) -> Stored {
    let entities = h
        .entities
        .entities
        .lock()
        .unwrap()
        .iter()
        .map(|(key, (e, _revision))| {
            let value = (e.version, e.state_json.clone(), e.event_key.to_string());
            (key.to_string(), value)
        })
        .collect();
    let events = h
        .events
        .records
        .lock()
        .unwrap()
        .iter()
        .map(|(key, (new, now))| {
            let value = (format!("{:?}", now.status), new.body_sha256.clone());
            (key.to_string(), value)
        })
        .collect();
    let mut jobs: Vec<_> = h
        .queue
        .jobs
        .lock()
        .unwrap()
        .iter()
        .map(|j| {
            let message = serde_json::to_string(&j.message).unwrap();
            (j.deduplication_id.clone(), j.group_id.clone(), message)
        })
        .collect();
    jobs.sort();
    Stored {
        entities,
        events,
        jobs,
    }
}

/// An outage during one delivery's first attempt.
#[derive(Debug, Clone, Copy)]
enum Fault {
    None,
    Queue,
    Entities,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Delivers `delivery`, redelivering after a 503 as the sender does (the
/// outage having cleared). Every answer must be a 2xx in the end.
async fn deliver(h: &Harness, delivery: &Delivery, fault: Fault) -> Outcome {
    match fault {
        Fault::None => {}
        Fault::Queue => h.queue.down.store(true, Ordering::SeqCst),
        Fault::Entities => h.entities.down.store(true, Ordering::SeqCst),
    }
    let first = h.ingestor.ingest(delivery).await;
    h.queue.down.store(false, Ordering::SeqCst);
    h.entities.down.store(false, Ordering::SeqCst);
    match first {
        Ok(outcome) => outcome,
        Err(IngestError::Unavailable(_)) if !matches!(fault, Fault::None) => {
            h.ingestor.ingest(delivery).await.expect("the redelivery")
        }
        Err(error) => panic!("unexpected refusal: {error:?}"),
    }
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        6 => Just(Fault::None),
        1 => Just(Fault::Queue),
        1 => Just(Fault::Entities),
    ]
}

/// One entity's versions, and a schedule delivering each at least once:
/// every version once in a shuffled order, with repeats spliced in, and an
/// outage (or none) for each step's first attempt.
#[derive(Debug, Clone)]
struct Scenario {
    family: Family,
    versions: Vec<u32>,
    steps: Vec<(usize, Fault)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let family = prop::sample::select(FAMILIES.to_vec());
    let versions = prop::collection::btree_set(0u32..100_000, 1..6);
    (family, versions).prop_flat_map(|(family, versions)| {
        let versions: Vec<u32> = versions.into_iter().collect();
        let count = versions.len();
        let shuffled = Just((0..count).collect::<Vec<_>>()).prop_shuffle();
        let repeats = prop::collection::vec((0..count, any::<prop::sample::Index>()), 0..8);
        let faults = prop::collection::vec(fault(), count + 8);
        (shuffled, repeats, faults).prop_map(move |(mut order, repeats, faults)| {
            for (version, at) in repeats {
                order.insert(at.index(order.len() + 1), version);
            }
            Scenario {
                family,
                versions: versions.clone(),
                steps: order.into_iter().zip(faults).collect(),
            }
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Property 1: order, repeats and outages don't change the outcome.
    #[test]
    fn any_interleaving_and_repetition_of_one_entitys_deliveries_ends_in_the_in_order_state(
        scenario in scenario(),
    ) {
        let Scenario { family, versions, steps } = &scenario;
        let family = *family;
        let bodies: Vec<Vec<u8>> = versions
            .iter()
            .map(|&n| serde_json::to_vec(&family.body(n, &BTreeMap::new())).unwrap())
            .collect();
        let rt = runtime();
        let in_order = harness(family);
        let shuffled = harness(family);
        rt.block_on(async {
            for (i, &n) in versions.iter().enumerate() {
                let outcome = deliver(&in_order, &family.delivery(&bodies[i], n), Fault::None).await;
                assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
            }
            for &(i, fault) in steps {
                let delivery = family.delivery(&bodies[i], versions[i]);
                let outcome = deliver(&shuffled, &delivery, fault).await;
                assert!(
                    matches!(outcome, Outcome::Accepted { .. } | Outcome::Duplicate { .. }),
                    "{outcome:?}"
                );
            }
        });
        let expected = stored(&in_order);
        prop_assert_eq!(expected.entities.len(), 1);
        prop_assert_eq!(expected.events.len(), versions.len());
        prop_assert_eq!(stored(&shuffled), expected);

        // Newest-wins never rewrites what it already holds: the entity was
        // written once per version newer than all delivered before it, also
        // when a redelivery redid the steps of an event an outage interrupted.
        let mut newest = None;
        let mut newer = 0;
        for &(i, _) in steps {
            if newest.is_none_or(|n| i > n) {
                newest = Some(i);
                newer += 1;
            }
        }
        let writes: Vec<u64> = shuffled.entities.entities.lock().unwrap().values().map(|(_, r)| *r).collect();
        prop_assert_eq!(writes, vec![newer]);
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

/// The key the pipeline derives for `raw` (parse, interpret, key), at a fixed
/// receipt time and with no sender event id.
fn derived_key(source: &str, kind: &dyn EventKind, raw: &[u8]) -> EventKey {
    let instance = InstanceName::parse("demo").unwrap();
    let meaning = serde_json::from_slice::<Value>(raw)
        .ok()
        .and_then(|body| kind.interpret(body.clone()).ok());
    event_key(KeyParts {
        source,
        instance: &instance,
        event_type: kind.event_type(),
        sender_event_id: None,
        identity: meaning.as_ref().map(|m| &m.identity),
        body_sha256: &sha256_hex(raw),
        received_at_unix: 1_700_000_000,
    })
}

fn source_name(family: Family) -> &'static str {
    match family {
        Family::RevelOrder | Family::RevelCustomer | Family::RevelRewardCard => "revel",
        Family::WineSittingOrder => "winesitting",
        Family::BookingBooking => "booking",
        Family::VinesOsMember => "vinesos",
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Property 2a: a business key is the same however the JSON is written.
    #[test]
    fn a_business_key_is_the_same_whatever_the_whitespace_key_order_or_escapes(
        family in prop::sample::select(FAMILIES.to_vec()),
        n in 0u32..100_000,
        extra in extra_fields(),
        seeds in (1u64.., 1u64..),
    ) {
        let body = family.body(n, &extra);
        let one = reformat(&body, &mut Choices(seeds.0));
        let other = reformat(&body, &mut Choices(seeds.1));
        prop_assert_eq!(serde_json::from_str::<Value>(&one).unwrap(), body.clone());
        prop_assert_eq!(serde_json::from_str::<Value>(&other).unwrap(), body.clone());
        let kind = family.kind();
        let source = source_name(family);
        let key = derived_key(source, kind.as_ref(), one.as_bytes());
        prop_assert!(key.as_str().contains(":biz:"), "{}", key);
        prop_assert_eq!(&key, &derived_key(source, kind.as_ref(), other.as_bytes()));

        // End to end, for senders that send no event id of their own: the
        // reformatted copy is a duplicate of the first.
        if family != Family::VinesOsMember {
            let h = harness(family);
            let rt = runtime();
            let first = rt.block_on(h.ingestor.ingest(&family.delivery(one.as_bytes(), n))).unwrap();
            let second = rt.block_on(h.ingestor.ingest(&family.delivery(other.as_bytes(), n))).unwrap();
            prop_assert_eq!(&first, &Outcome::Accepted { event_key: key.clone() });
            prop_assert_eq!(&second, &Outcome::Duplicate { event_key: key });
        }
    }

    /// Property 2b: a key made of the body hash changes with any byte,
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
        prop_assert!(key.as_str().contains(":sha256:"), "{}", key);
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
    assert_ne!(a, b);
    assert_eq!(a, derived_key("revel", &kind, b"{not json"));
}
