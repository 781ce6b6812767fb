//! What one seed sends and changes: the webhooks of each sender (their
//! bodies, when each is first sent, how its sender retries), the changes
//! made in Revel itself (the orders and products its API then serves), the
//! scheduled fan-outs, the outages and the fault rates. Everything is drawn
//! from the seed; the plan also says, for each webhook, which entity it
//! changes at which version, which is what the checks compare with.

use std::time::Duration;

use domain::ids::{EntityKey, InstanceName};
use domain::sources::EntityKind;
use ports::queue::JobKind;
use serde_json::{json, Value};
use time::macros::{datetime, format_description};
use time::OffsetDateTime;
use vendors::revel::RevelEventType;
use vendors::vinesos::VinesOsEvent;

use crate::faults::{Profile, Service};
use crate::revel::revel_date;

/// Virtual time zero.
pub const START: OffsetDateTime = datetime!(2026-11-24 10:00 UTC);
/// How long webhooks are sent for.
pub const TRAFFIC: Duration = Duration::from_secs(20 * 60);

pub const REVEL_SECRET: &str = "sim-revel-webhook-secret";
pub const WINESITTING_TOKEN: &str = "sim-winesitting-url-token";
pub const VINESOS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Microseconds since the epoch of a virtual time.
pub fn micros_at(at: Duration) -> i64 {
    let start = START.unix_timestamp() * 1_000_000;
    start + at.as_micros() as i64
}

/// The route a webhook is posted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Revel(RevelEventType),
    WineSitting,
    VinesOs(VinesOsEvent),
}

impl Route {
    pub fn source(self) -> &'static str {
        match self {
            Self::Revel(_) => vendors::revel::NAME.as_str(),
            Self::WineSitting => vendors::winesitting::NAME.as_str(),
            Self::VinesOs(_) => vendors::vinesos::NAME.as_str(),
        }
    }
}

/// How a sender retries a request that got no 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// Backing off for about 36 minutes, then giving up.
    Revel,
    /// A few retries (Standard Webhooks senders' first steps).
    VinesOs,
    /// WineSitting sends once and ignores the answer.
    Never,
}

impl Retries {
    /// The waits before each retry.
    pub fn delays(self) -> &'static [Duration] {
        const REVEL: [Duration; 6] = [
            Duration::from_secs(30),
            Duration::from_secs(60),
            Duration::from_secs(120),
            Duration::from_secs(240),
            Duration::from_secs(480),
            Duration::from_secs(1290),
        ];
        const VINESOS: [Duration; 3] = [
            Duration::from_secs(5),
            Duration::from_secs(300),
            Duration::from_secs(1800),
        ];
        match self {
            Self::Revel => &REVEL,
            Self::VinesOs => &VINESOS,
            Self::Never => &[],
        }
    }
}

/// An entity as the contract names it: the partner's envelope carries its
/// kind and id, and the entities table keys it so.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SimEntity {
    pub source: &'static str,
    pub instance: String,
    pub kind: EntityKind,
    pub id: String,
}

impl SimEntity {
    pub fn key(&self) -> EntityKey {
        let instance = InstanceName::parse(&self.instance).expect("simulated instances are valid");
        EntityKey::new(self.source, &instance, self.kind, &self.id)
            .expect("simulated ids are valid")
    }
}

/// The version a change is ranked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The payload's own date (µs).
    At(i64),
    /// Its receipt: the body carries none.
    Receipt,
}

/// What applying a partner change must leave in Revel.
#[derive(Debug, Clone, PartialEq)]
pub struct RevelWrite {
    pub resource: &'static str,
    /// The field and value the object is found by.
    pub lookup: (&'static str, String),
    /// Fields with the values this change gives them.
    pub fields: Vec<(&'static str, Value)>,
}

/// The change a webhook carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub entity: SimEntity,
    pub version: Version,
    pub revel_write: Option<RevelWrite>,
}

/// What a webhook is, for the checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Meaning {
    Change(Change),
    /// Signed, but its body lacks what its type needs: quarantined.
    Malformed,
    /// Signed with the wrong secret: refused.
    Forged,
}

impl Meaning {
    /// A change of one entity at `version`, with nothing to write to Revel.
    fn change(
        source: &'static str,
        instance: &str,
        kind: impl Into<EntityKind>,
        id: impl Into<String>,
        version: Version,
    ) -> Self {
        Self::Change(Change {
            entity: SimEntity {
                source,
                instance: instance.to_owned(),
                kind: kind.into(),
                id: id.into(),
            },
            version,
            revel_write: None,
        })
    }
}

/// One webhook: a body and its headers, sent once or more.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: usize,
    pub label: String,
    pub route: Route,
    pub instance: String,
    pub body: Vec<u8>,
    /// Headers besides the signature's.
    pub headers: Vec<(&'static str, String)>,
    /// When each independent send (with its own retries) starts.
    pub sends: Vec<Duration>,
    pub retries: Retries,
    pub meaning: Meaning,
    /// Nothing tells its repeats apart from new events: each request that
    /// is stored is an event of its own.
    pub per_delivery: bool,
}

/// A change made in Revel itself, which its API then serves.
#[derive(Debug, Clone)]
pub struct ApiWrite {
    pub at: Duration,
    pub instance: String,
    pub resource: &'static str,
    pub object: Value,
}

/// A scheduled task's tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanOut {
    pub task: JobKind,
    /// `None`: once every sender has finished (end of day).
    pub at: Option<Duration>,
}

/// A long outage: (service, from, length).
pub type PlannedOutage = (Service, Duration, Duration);

pub struct Plan {
    pub instances: Vec<String>,
    pub webhooks: Vec<Webhook>,
    pub api_writes: Vec<ApiWrite>,
    pub fan_outs: Vec<FanOut>,
    pub outages: Vec<PlannedOutage>,
    pub profile: Profile,
    pub shards: usize,
}

fn rfc3339_millis(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .expect("simulated times are in range")
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .expect("a fixed format formats")
}

/// Builds one seed's plan.
struct Planner<'a> {
    rng: &'a mut fastrand::Rng,
    webhooks: Vec<Webhook>,
    api_writes: Vec<ApiWrite>,
}

impl Planner<'_> {
    fn time_in(&mut self, window: Duration) -> Duration {
        Duration::from_millis(self.rng.u64(0..window.as_millis() as u64))
    }

    /// `n` increasing times within the traffic window.
    fn times(&mut self, n: usize) -> Vec<Duration> {
        let mut times: Vec<Duration> = (0..n).map(|_| self.time_in(TRAFFIC)).collect();
        times.sort();
        times
    }

    /// A skew of up to `bound` either way (µs, whole milliseconds).
    fn skew(&mut self, bound: Duration) -> i64 {
        let ms = bound.as_millis() as i64;
        self.rng.i64(-ms..=ms) * 1000
    }

    /// When a change's webhook is sent: soon after it, now and then much
    /// later (a late delivery that crosses newer ones), now and then twice;
    /// a Revel webhook is now and then never sent at all (reconciliation
    /// must find its order).
    fn sends(&mut self, changed_at: Duration, may_be_lost: bool) -> Vec<Duration> {
        if may_be_lost && self.rng.f64() < 0.08 {
            return Vec::new();
        }
        let first = if self.rng.f64() < 0.12 {
            changed_at + Duration::from_secs(self.rng.u64(300..2400))
        } else {
            changed_at + Duration::from_millis(self.rng.u64(50..3000))
        };
        let mut sends = vec![first];
        if self.rng.f64() < 0.1 {
            sends.push(first + Duration::from_millis(self.rng.u64(200..600_000)));
        }
        sends
    }

    #[allow(clippy::too_many_arguments)]
    fn webhook(
        &mut self,
        label: String,
        route: Route,
        instance: &str,
        body: Vec<u8>,
        headers: Vec<(&'static str, String)>,
        sends: Vec<Duration>,
        meaning: Meaning,
        per_delivery: bool,
    ) {
        let retries = match route {
            Route::Revel(_) => Retries::Revel,
            Route::WineSitting => Retries::Never,
            Route::VinesOs(_) => Retries::VinesOs,
        };
        let id = self.webhooks.len();
        self.webhooks.push(Webhook {
            id,
            label,
            route,
            instance: instance.to_owned(),
            body,
            headers,
            sends,
            retries,
            meaning,
            per_delivery,
        });
    }

    fn revel_orders(&mut self, instance: &str, base_id: u64) {
        for k in 0..self.rng.u64(1..=2) {
            let id = base_id + k;
            let uuid = format!("o-{instance}-{k}");
            let items = vec![
                json!({"id": id * 10 + 1, "order": id, "product": 1, "quantity": self.rng.u64(1..=4)}),
            ];
            let payments = vec![json!({"id": id * 10 + 2, "order": id, "amount": "12.50"})];
            for object in items.iter() {
                self.api_writes.push(ApiWrite {
                    at: Duration::ZERO,
                    instance: instance.to_owned(),
                    resource: "OrderItem",
                    object: object.clone(),
                });
            }
            for object in payments.iter() {
                self.api_writes.push(ApiWrite {
                    at: Duration::ZERO,
                    instance: instance.to_owned(),
                    resource: "Payment",
                    object: object.clone(),
                });
            }
            let versions = self.rng.usize(1..=3);
            for (i, at) in self.times(versions).into_iter().enumerate() {
                // Revel's clocks disagree a little: dates don't follow arrival.
                let updated = micros_at(at) + self.skew(Duration::from_secs(60));
                let order = json!({
                    "id": id, "uuid": uuid, "updated_date": revel_date(updated),
                    "closed": true, "final_total": 10 * (i as u64 + 1) + k,
                    "establishment": "/enterprise/Establishment/1/",
                });
                self.api_writes.push(ApiWrite {
                    at,
                    instance: instance.to_owned(),
                    resource: "Order",
                    object: order.clone(),
                });
                // The webhook's OrderAllInOne is what the API serves, so a
                // reconciled order is the same event as its webhook.
                let body = json!({"orderInfo": order, "items": items, "payments": payments, "history": []});
                let sends = self.sends(at, true);
                self.webhook(
                    format!("revel order {uuid} v{}", i + 1),
                    Route::Revel(RevelEventType::OrderFinalized),
                    instance,
                    body.to_string().into_bytes(),
                    Vec::new(),
                    sends,
                    Meaning::change(
                        "revel",
                        instance,
                        vendors::revel::Entity::Order,
                        uuid.clone(),
                        Version::At(updated),
                    ),
                    false,
                );
            }
        }
    }

    fn revel_customers(&mut self, instance: &str) {
        for k in 0..self.rng.u64(1..=2) {
            let uuid = format!("c-{instance}-{k}");
            let versions = self.rng.usize(1..=3);
            let times = self.times(versions);
            let mut dated = Vec::new();
            for (i, at) in times.into_iter().enumerate() {
                let updated = micros_at(at) + self.skew(Duration::from_secs(300));
                dated.push((at, updated));
                let kind = if i == 0 {
                    RevelEventType::CustomerCreated
                } else {
                    RevelEventType::CustomerUpdated
                };
                self.customer(instance, &uuid, kind, at, updated, &format!("name {i}"), i);
            }
            // The same updated_date with other content: a conflict.
            if self.rng.f64() < 0.15 {
                let (at, updated) = dated[self.rng.usize(0..dated.len())];
                let later = at + Duration::from_secs(self.rng.u64(1..120));
                self.customer(
                    instance,
                    &uuid,
                    RevelEventType::CustomerUpdated,
                    later,
                    updated,
                    "other name",
                    99,
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn customer(
        &mut self,
        instance: &str,
        uuid: &str,
        kind: RevelEventType,
        at: Duration,
        updated: i64,
        name: &str,
        n: usize,
    ) {
        let body = json!({"uuid": uuid, "id": 7, "updated_date": revel_date(updated),
                          "first_name": name, "email": format!("{uuid}@example.com")});
        let sends = self.sends(at, false);
        self.webhook(
            format!("revel {} {uuid} #{n}", kind.name()),
            Route::Revel(kind),
            instance,
            body.to_string().into_bytes(),
            Vec::new(),
            sends,
            Meaning::change(
                "revel",
                instance,
                vendors::revel::Entity::Customer,
                uuid.to_owned(),
                Version::At(updated),
            ),
            false,
        );
    }

    /// Stock toggles of a product at an establishment (or none named):
    /// out, in, out... with no date and, half the time, no event id.
    fn revel_stock(&mut self, instance: &str) {
        let establishments = [None, Some("1"), Some("2")];
        for product in 0..self.rng.u64(1..=2) {
            let pid = 600 + product;
            let at_establishments = self.rng.usize(1..=2);
            for establishment in establishments
                .iter()
                .skip(self.rng.usize(0..2))
                .take(at_establishments)
            {
                let toggles = self.rng.usize(1..=4);
                let mut instock = self.rng.bool();
                for (i, at) in self.times(toggles).into_iter().enumerate() {
                    let body = json!({"id": pid, "instock": instock, "type": "product", "barcode": format!("b{pid}")});
                    let mut headers = Vec::new();
                    let id = match establishment {
                        Some(e) => {
                            headers.push((vendors::revel::ESTABLISHMENT_HEADER, (*e).to_owned()));
                            format!("establishment-{e}:product:{pid}")
                        }
                        None => format!("product:{pid}"),
                    };
                    let with_id = self.rng.bool();
                    if with_id {
                        let n = self.webhooks.len();
                        headers.push((vendors::revel::EVENT_ID_HEADER, format!("evt-{n}")));
                    }
                    let sends = self.sends(at, false);
                    self.webhook(
                        format!("revel inout.stock {id} #{i} instock={instock}"),
                        Route::Revel(RevelEventType::StockChanged),
                        instance,
                        body.to_string().into_bytes(),
                        headers,
                        sends,
                        Meaning::change(
                            "revel",
                            instance,
                            vendors::revel::Entity::ItemStock,
                            id,
                            Version::Receipt,
                        ),
                        !with_id,
                    );
                    instock = !instock;
                }
            }
        }
    }

    /// The catalog Revel starts with, and menu pushes, each after a product
    /// was edited.
    fn revel_menu(&mut self, instance: &str) {
        for (resource, id, name) in [
            ("Product", 1, "wine"),
            ("Product", 2, "cheese"),
            ("Modifier", 3, "glass"),
        ] {
            self.api_writes.push(ApiWrite {
                at: Duration::ZERO,
                instance: instance.to_owned(),
                resource,
                object: json!({"id": id, "name": name, "price": 5, "updated_date": revel_date(micros_at(Duration::ZERO) - 86_400_000_000)}),
            });
        }
        let pushes = self.rng.usize(0..=2);
        for (i, at) in self.times(pushes).into_iter().enumerate() {
            let edited = at.saturating_sub(Duration::from_secs(1));
            let product = self.rng.u64(1..=2);
            self.api_writes.push(ApiWrite {
                at: edited,
                instance: instance.to_owned(),
                resource: "Product",
                object: json!({"id": product, "name": format!("product {product}"), "price": 6 + i, "updated_date": revel_date(micros_at(edited))}),
            });
            let mut headers = Vec::new();
            let id = if self.rng.bool() {
                headers.push((vendors::revel::ESTABLISHMENT_HEADER, "1".to_owned()));
                "establishment-1:current".to_owned()
            } else {
                "current".to_owned()
            };
            let sends = self.sends(at, false);
            self.webhook(
                format!("revel menu.updated {id} #{i}"),
                Route::Revel(RevelEventType::MenuUpdated),
                instance,
                br#"{"event":"menu.updated"}"#.to_vec(),
                headers,
                sends,
                Meaning::change(
                    "revel",
                    instance,
                    vendors::revel::Entity::Menu,
                    id,
                    Version::Receipt,
                ),
                true,
            );
        }
    }

    /// A signed order without a uuid, and a customer signed with another
    /// secret.
    fn revel_bad(&mut self, instance: &str) {
        if self.rng.f64() < 0.3 {
            let at = self.time_in(TRAFFIC);
            let sends = self.sends(at, false);
            self.webhook(
                "revel order.finalized without uuid".into(),
                Route::Revel(RevelEventType::OrderFinalized),
                instance,
                br#"{"orderInfo":{"id":1,"updated_date":"2026-11-24T10:00:00"}}"#.to_vec(),
                Vec::new(),
                sends,
                Meaning::Malformed,
                false,
            );
        }
        if self.rng.f64() < 0.3 {
            let at = self.time_in(TRAFFIC);
            let sends = self.sends(at, false);
            self.webhook(
                "revel customer.updated forged".into(),
                Route::Revel(RevelEventType::CustomerUpdated),
                instance,
                br#"{"uuid":"c-forged","updated_date":"2026-11-24T10:00:00","first_name":"x"}"#
                    .to_vec(),
                Vec::new(),
                sends,
                Meaning::Forged,
                false,
            );
        }
    }

    fn winesitting(&mut self, instance: &str) {
        for k in 0..self.rng.u64(0..=2) {
            let id = 500 + k;
            let versions = self.rng.usize(1..=2);
            for (i, at) in self.times(versions).into_iter().enumerate() {
                let millis = micros_at(at) / 1000 + self.skew(Duration::from_secs(30)) / 1000;
                let operation = if i == 0 { "CREATE" } else { "UPDATE" };
                let body = json!({"type": "ORDER", "operation": operation, "date": millis,
                                  "object": {"id": id, "status": format!("step {i}")}});
                let first = at + Duration::from_millis(self.rng.u64(50..2000));
                // WineSitting may send a duplicate, and never retries.
                let mut sends = vec![first];
                if self.rng.f64() < 0.2 {
                    sends.push(first + Duration::from_millis(self.rng.u64(10..5000)));
                }
                self.webhook(
                    format!("winesitting order {id} {operation} #{i}"),
                    Route::WineSitting,
                    instance,
                    body.to_string().into_bytes(),
                    Vec::new(),
                    sends,
                    Meaning::change(
                        "winesitting",
                        instance,
                        vendors::winesitting::Entity::Order,
                        id.to_string(),
                        Version::At(millis * 1000),
                    ),
                    false,
                );
            }
        }
    }

    fn vinesos(&mut self, instance: &str) {
        for k in 0..self.rng.u64(1..=2) {
            let id = format!("V-{k}");
            let versions = self.rng.usize(1..=3);
            for (i, at) in self.times(versions).into_iter().enumerate() {
                let event = if i == 0 {
                    VinesOsEvent::CustomerCreated
                } else {
                    VinesOsEvent::MemberUpdated
                };
                let occurred = micros_at(at) + self.skew(Duration::from_secs(120));
                let data = json!({"id": id, "first_name": format!("first {i}"), "last_name": "Doe",
                                  "email": format!("{id}-{i}@example.com"), "phone": format!("555-{i}")});
                let n = self.webhooks.len();
                let body = json!({"id": format!("evt_{n}"), "type": event.name(),
                                  "occurred_at": rfc3339_millis(occurred), "data": data});
                let sends = self.sends(at, false);
                self.webhook(
                    format!("vinesos {} {id} #{i}", event.name()),
                    Route::VinesOs(event),
                    instance,
                    body.to_string().into_bytes(),
                    Vec::new(),
                    sends,
                    Meaning::Change(Change {
                        entity: SimEntity {
                            source: "vinesos",
                            instance: instance.to_owned(),
                            kind: vendors::vinesos::Entity::Customer.kind(),
                            id: id.clone(),
                        },
                        version: Version::At(occurred),
                        revel_write: Some(RevelWrite {
                            resource: "Customer",
                            lookup: ("third_party_id", format!("vinesos:{id}")),
                            fields: vec![
                                ("first_name", data["first_name"].clone()),
                                ("email", data["email"].clone()),
                                ("phone_number", data["phone"].clone()),
                            ],
                        }),
                    }),
                    false,
                );
            }
        }
        for k in 0..self.rng.u64(0..=1) {
            let id = format!("VO-{k}");
            let versions = self.rng.usize(1..=2);
            for (i, at) in self.times(versions).into_iter().enumerate() {
                let occurred = micros_at(at) + self.skew(Duration::from_secs(120));
                let total = 20.0 + i as f64;
                let n = self.webhooks.len();
                let body = json!({"id": format!("evt_{n}"), "type": "order.added",
                                  "occurred_at": rfc3339_millis(occurred),
                                  "data": {"id": id, "total": total, "establishment_id": 1}});
                let sends = self.sends(at, false);
                self.webhook(
                    format!("vinesos order.added {id} #{i}"),
                    Route::VinesOs(VinesOsEvent::OrderAdded),
                    instance,
                    body.to_string().into_bytes(),
                    Vec::new(),
                    sends,
                    Meaning::Change(Change {
                        entity: SimEntity {
                            source: "vinesos",
                            instance: instance.to_owned(),
                            kind: vendors::vinesos::Entity::Order.kind(),
                            id: id.clone(),
                        },
                        version: Version::At(occurred),
                        revel_write: Some(RevelWrite {
                            resource: "Order",
                            lookup: ("external_sync", format!("vinesos:{id}")),
                            fields: vec![("final_total", json!(total))],
                        }),
                    }),
                    false,
                );
            }
        }
    }
}

/// The plan of `seed`.
pub fn plan(rng: &mut fastrand::Rng) -> Plan {
    let instances: Vec<String> = if rng.bool() {
        vec!["alpha".into()]
    } else {
        vec!["alpha".into(), "beta".into()]
    };
    let profile = if rng.f64() < 0.15 {
        Profile::calm()
    } else {
        Profile::draw(rng)
    };
    let mut outages = Vec::new();
    let mut outage = |rng: &mut fastrand::Rng, service, p: f64, minutes: std::ops::Range<u64>| {
        if rng.f64() < p {
            let from = Duration::from_secs(rng.u64(0..TRAFFIC.as_secs() + 600));
            outages.push((service, from, Duration::from_secs(60 * rng.u64(minutes))));
        }
    };
    outage(rng, Service::SecretsManager, 0.25, 5..90);
    outage(rng, Service::Partner, 0.1, 35..50);
    outage(rng, Service::RevelApi, 0.1, 35..50);
    outage(rng, Service::EntitiesTable, 0.05, 10..40);
    let shards = rng.usize(1..=3);
    let mut planner = Planner {
        rng,
        webhooks: Vec::new(),
        api_writes: Vec::new(),
    };
    for (n, instance) in instances.iter().enumerate() {
        planner.revel_orders(instance, 100 + 10 * n as u64);
        planner.revel_customers(instance);
        planner.revel_stock(instance);
        planner.revel_menu(instance);
        planner.revel_bad(instance);
    }
    planner.winesitting("alpha");
    planner.vinesos("alpha");
    let mut fan_outs = vec![
        FanOut {
            task: JobKind::Reconcile,
            at: None,
        },
        FanOut {
            task: JobKind::ProductSync,
            at: None,
        },
    ];
    if planner.rng.bool() {
        let at = planner.time_in(TRAFFIC);
        fan_outs.push(FanOut {
            task: JobKind::Reconcile,
            at: Some(at),
        });
    }
    let Planner {
        webhooks,
        api_writes,
        ..
    } = planner;
    Plan {
        instances,
        webhooks,
        api_writes,
        fan_outs,
        outages,
        profile,
        shards,
    }
}
