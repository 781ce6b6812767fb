//! `local-stack post-events`: posts every API Gateway request in events/ to
//! the running stack, prints each answer and the record stored, then waits
//! (bounded) for the events processor and the jobs worker and says, for each
//! event, what became of it: its entity, and whether (with which revision)
//! the partner stand-in received it, or why nothing goes to the partner.
//!
//! What each event owes is read from its stored record by the processor's
//! own reading (`pipeline::process::read`), not from a list kept here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_adapters::dynamodb::{event_record, DynamoEntityStore};
use aws_adapters::secrets_manager::SecretsManagerSource;
use aws_adapters::sync_state::DynamoSyncState;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use domain::ids::{EntityKey, InstanceName};
use domain::sources::FollowUp;
use pipeline::pending;
use pipeline::sync::CATALOG;
use pipeline::worker::jobs::inventory_request::on_demand::PendingProducts;
use ports::secrets::{InstanceSecrets, SecretSource};
use ports::store::{EntityStore, EventRecord, EventStatus, Rank, StoredEntity};
use ports::sync_state::SyncState;
use serde_json::{json, Value};

use crate::partner::Received;
use crate::{events, inputs, Error, RunningStack};

/// How long to wait for the processor and the worker by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// One request posted, and the record its answer named.
struct Posted {
    file: String,
    status: u16,
    outcome: String,
    record: Option<EventRecord>,
}

/// Where an event's after-answer work stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Progress {
    /// Nothing more will happen (and why, or what reached the partner).
    Done(Reached, String),
    /// Still on its way: what is missing.
    Waiting(String),
}

/// What an event finished as, for the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reached {
    Partner,
    Revel,
    /// A partner product or event, waiting for the end-of-day batch.
    EndOfDay,
    KeptOnly,
    NotApplied,
}

/// What the follow-up check reads: the stack's tables and the partner.
struct Observer {
    entities: DynamoEntityStore,
    dynamodb: aws_sdk_dynamodb::Client,
    entities_table: String,
    sync_state: DynamoSyncState,
    partner: Vec<Received>,
    /// The Revel instances' settings (who has the retailer option).
    revel: InstanceSecrets,
}

/// The event files of a directory.
struct EventFiles {
    /// The API Gateway requests, by file, sorted.
    requests: Vec<(PathBuf, Value)>,
    /// The names of the others (the processor's, worker's and scheduler's inputs).
    others: Vec<String>,
}

fn request_files(dir: &Path) -> Result<EventFiles, Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let (mut requests, mut others) = (Vec::new(), Vec::new());
    for file in files {
        let event: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        if inputs::is_http_request(&event) {
            requests.push((file, event));
        } else {
            others.push(name_of(&file));
        }
    }
    Ok(EventFiles { requests, others })
}

fn name_of(file: &Path) -> String {
    file.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// The record's fields worth showing (never its body or headers).
fn shown(record: &EventRecord) -> Value {
    let mut fields = json!({
        "status": record.status.as_str(),
        "source": record.source,
        "event_type": record.event_type,
        "instance": record.instance.as_str(),
        "body_bytes": record.body_bytes,
        "body_encoding": if record.archived_body().gzip { "gzip" } else { "identity" },
    });
    let extra = [
        (
            "entity_key",
            record.entity_key.as_ref().map(|k| k.to_string()),
        ),
        (
            "conflict_of",
            record.conflict_of.as_ref().map(|k| k.to_string()),
        ),
        ("quarantine_reason", record.quarantine_reason.clone()),
    ];
    for (name, value) in extra {
        if let Some(value) = value {
            fields[name] = Value::String(value);
        }
    }
    fields
}

async fn post_one(
    http: &reqwest::Client,
    base: &str,
    event: Value,
) -> Result<(u16, String), Error> {
    let event = events::resign(event);
    let body = event["body"].as_str().unwrap_or("");
    let body = if event["isBase64Encoded"].as_bool() == Some(true) {
        base64::engine::general_purpose::STANDARD.decode(body)?
    } else {
        body.as_bytes().to_vec()
    };
    let url = format!(
        "{}{}",
        base.trim_end_matches('/'),
        event["rawPath"].as_str().unwrap_or("/")
    );
    let mut request = http.post(url).body(body);
    for (name, value) in event["headers"].as_object().into_iter().flatten() {
        request = request.header(name.as_str(), value.as_str().unwrap_or_default());
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

async fn stored_record(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
) -> Result<Option<EventRecord>, Error> {
    let item = dynamodb
        .get_item()
        .table_name(table)
        .key("event_key", AttributeValue::S(key.to_owned()))
        .consistent_read(true)
        .send()
        .await?
        .item;
    Ok(match item {
        Some(item) => Some(event_record(item)?),
        None => None,
    })
}

/// What the partner stand-in received so far.
async fn partner_received(http: &reqwest::Client, base: &str) -> Result<Vec<Received>, Error> {
    let url = format!("{}/partner/received", base.trim_end_matches('/'));
    let response = http.get(&url).send().await?;
    if !response.status().is_success() {
        return Err(format!(
            "{url} answered {}: restart `make local` (an older stack keeps no list)",
            response.status()
        )
        .into());
    }
    Ok(response.json().await?)
}

/// The newest revision the partner received of one entity.
fn newest<'a>(
    partner: &'a [Received],
    instance: &InstanceName,
    kind: &str,
    id: &str,
) -> Option<&'a Received> {
    partner
        .iter()
        .filter(|r| r.instance == instance.as_str() && r.kind == kind && r.id == id)
        .max_by_key(|r| r.revision)
}

impl Observer {
    fn new(
        dynamodb: &aws_sdk_dynamodb::Client,
        stack: &RunningStack,
        partner: Vec<Received>,
        revel: InstanceSecrets,
    ) -> Result<Self, Error> {
        let entities_table = stack.var("ENTITIES_TABLE")?;
        Ok(Self {
            entities: DynamoEntityStore::new(dynamodb.clone(), entities_table),
            dynamodb: dynamodb.clone(),
            entities_table: entities_table.to_owned(),
            // Only read here: the daily budget doesn't matter.
            sync_state: DynamoSyncState::new(dynamodb.clone(), stack.var("SYNC_STATE_TABLE")?, 1),
            partner,
            revel,
        })
    }

    /// Where the event of `posted` stands.
    async fn progress(&self, posted: &Posted) -> Result<Progress, Error> {
        let Some(record) = &posted.record else {
            let why = match posted.outcome.as_str() {
                "pong" => "the sender's connectivity test: answered, nothing stored".to_owned(),
                other => format!("answered {} {other}: nothing stored", posted.status),
            };
            return Ok(Progress::Done(Reached::NotApplied, why));
        };
        if record.status == EventStatus::Quarantined {
            return Ok(Progress::Done(
                Reached::NotApplied,
                format!(
                    "quarantined ({}): kept for `revel-ops replay`, nothing applied",
                    record.quarantine_reason.as_deref().unwrap_or("unknown")
                ),
            ));
        }
        let reading = match pipeline::process::read(record) {
            Ok(reading) => reading,
            Err(why) => {
                return Ok(Progress::Done(
                    Reached::NotApplied,
                    format!("the processor skips it ({})", why.0),
                ))
            }
        };
        let Some(change) = reading.meaning.entity else {
            return Ok(Progress::Done(
                Reached::NotApplied,
                "changes no entity".to_owned(),
            ));
        };
        let key = EntityKey::new(reading.source, &record.instance, change.kind, &change.id)?;
        let version = pipeline::process::version_micros(record, change.version);
        let rank = Rank::new(version, change.ends_entity, &record.body_sha256);
        let entity = match self.entities.get(&key).await? {
            // Its change (or a newer one) is in: the processor has handled it.
            Some(entity) if entity.rank >= rank => entity,
            _ => return Ok(Progress::Waiting(format!("{key}: the processor"))),
        };
        let about = format!("{key} revision {}", entity.revision);
        Ok(match reading.meaning.follow_up {
            FollowUp::None => Progress::Done(
                Reached::KeptOnly,
                format!(
                    "{about}: kept; {} events have no partner follow-up",
                    reading.source
                ),
            ),
            FollowUp::SyncEntity => {
                match newest(&self.partner, &record.instance, &change.kind, &change.id) {
                    Some(got) if got.revision >= entity.revision => {
                        match self.order_extras(&record.instance, &reading.source, &entity).await? {
                            Ok(extra) => Progress::Done(
                                Reached::Partner,
                                format!(
                                    "{about}: the partner received revision {} ({}, version {}){extra}",
                                    got.revision, got.event_type, got.version
                                ),
                            ),
                            Err(missing) => Progress::Waiting(format!(
                                "{about}: the worker, telling the partner {missing}"
                            )),
                        }
                    }
                    got => Progress::Waiting(format!(
                        "{about}: the worker (the partner has {})",
                        got.map_or("nothing of it".to_owned(), |g| format!(
                            "revision {}",
                            g.revision
                        ))
                    )),
                }
            }
            FollowUp::ApplyToRevel if entity.is_delivered() => Progress::Done(
                Reached::Revel,
                format!("{about}: applied to Revel (its API stand-in); it came from the partner, so nothing goes back to it"),
            ),
            FollowUp::ApplyToRevel => match pending::batched(change.kind.as_str()) {
                Some(kind) => self.end_of_day(&record.instance, kind, &change.id, &entity, &about).await?,
                None => Progress::Waiting(format!("{about}: the worker, applying it to Revel")),
            },
            FollowUp::CatalogPull => self.catalog(&record.instance, record, &about).await?,
            FollowUp::InventoryRequest => {
                self.inventory_request(&record.instance, &entity, &about)
                    .await?
            }
        })
    }

    /// What else the partner hears of a Revel order: the rewards card it
    /// used and the stock each product it sold moves. `Ok` with the words
    /// that say what it heard (empty for anything else), `Err` with what it
    /// is still to hear.
    async fn order_extras(
        &self,
        instance: &InstanceName,
        source: &str,
        order: &StoredEntity,
    ) -> Result<Result<String, String>, Error> {
        use vendors::revel;
        if source != revel::NAME || order.kind != revel::Entity::Order.kind() {
            return Ok(Ok(String::new()));
        }
        let state: Value = serde_json::from_str(&order.state_json)?;
        let mut heard = Vec::new();
        if let Some(card) = revel::rewards_card_of_order(&state) {
            let key = EntityKey::new(source, instance, card.kind, &card.id)?;
            let kept = self.entities.get(&key).await?;
            match (kept, newest(&self.partner, instance, &card.kind, &card.id)) {
                (Some(kept), Some(got)) if got.revision >= kept.revision => heard.push(format!(
                    "its rewards card {} (revision {}: {})",
                    card.id,
                    got.revision,
                    got.detail.as_deref().unwrap_or("-")
                )),
                _ => return Ok(Err(format!("of its rewards card {}", card.id))),
            }
        }
        if !revel::sold_products(&state).is_empty() {
            let key = EntityKey::new(
                source,
                instance,
                pipeline::worker::INVENTORY_SOLD,
                &order.entity_id,
            )?;
            if !self
                .entities
                .get(&key)
                .await?
                .is_some_and(|sold| sold.is_delivered())
            {
                return Ok(Err("the stock it sold".to_owned()));
            }
            let prefix = format!("{}:product:", order.entity_id);
            heard.extend(
                self.partner
                    .iter()
                    .filter(|r| {
                        r.kind == pipeline::worker::INVENTORY_SOLD && r.id.starts_with(&prefix)
                    })
                    .map(|r| format!("a stock change ({})", r.detail.as_deref().unwrap_or("-"))),
            );
        }
        Ok(Ok(heard
            .iter()
            .map(|h| format!("; {h}"))
            .collect::<String>()))
    }

    /// A partner product or event: done once the worker noted its revision
    /// for the end-of-day batch.
    async fn end_of_day(
        &self,
        instance: &InstanceName,
        kind: vendors::vinesos::Entity,
        id: &str,
        entity: &StoredEntity,
        about: &str,
    ) -> Result<Progress, Error> {
        let pending = pending::PendingIndex::new(&self.entities)
            .all(instance, kind)
            .await?;
        Ok(match pending.get(id) {
            Some(revision) if *revision >= entity.revision => Progress::Done(
                Reached::EndOfDay,
                format!("{about}: kept for the end-of-day batch; `make trigger TASK=partner_catalog` applies it to Revel"),
            ),
            _ => Progress::Waiting(format!(
                "{about}: the worker, keeping it for the end-of-day batch"
            )),
        })
    }

    /// A menu push: done once a catalog pull that began after it completed
    /// and the partner received every catalog object it holds.
    async fn catalog(
        &self,
        instance: &InstanceName,
        record: &EventRecord,
        about: &str,
    ) -> Result<Progress, Error> {
        for (resource, _) in CATALOG.resources {
            let cursor = self
                .sync_state
                .load(instance, &format!("{}.{resource}", CATALOG.name))
                .await?;
            if cursor
                .completed_run_began_at
                .is_none_or(|began| began < record.received_at_micros)
            {
                return Ok(Progress::Waiting(format!(
                    "{about}: the worker's catalog pull ({resource})"
                )));
            }
        }
        let objects = self.catalog_entities(instance).await?;
        let mut reached = Vec::new();
        for entity in &objects {
            match newest(&self.partner, instance, &entity.kind, &entity.entity_id) {
                Some(got) if got.revision >= entity.revision => {
                    reached.push(format!("{} {} r{}", got.kind, got.id, got.revision))
                }
                _ => {
                    return Ok(Progress::Waiting(format!(
                        "{about}: the worker, delivering {} {}",
                        entity.kind, entity.entity_id
                    )))
                }
            }
        }
        reached.sort();
        Ok(Progress::Done(
            Reached::Partner,
            format!(
                "{about}: a catalog pull after the push completed; the partner received its {} object(s): {}",
                reached.len(),
                reached.join(", ")
            ),
        ))
    }

    /// The partner's inventory request: done once the worker noted its
    /// products, none of them waits for a pull any more, and the partner
    /// holds the newest revision of each stock record Revel has of them; or
    /// at once for an instance without the retailer option.
    async fn inventory_request(
        &self,
        instance: &InstanceName,
        request: &StoredEntity,
        about: &str,
    ) -> Result<Progress, Error> {
        if !pipeline::worker::jobs::inventory_request::on_demand::has_retailer_option(
            &self.revel,
            instance,
        ) {
            return Ok(Progress::Done(
                Reached::KeptOnly,
                format!("{about}: kept; {instance} has no retailer option (inventory_every_2h), so nothing is pulled"),
            ));
        }
        if !request.is_delivered() {
            return Ok(Progress::Waiting(format!(
                "{about}: the worker, noting the products asked for"
            )));
        }
        let state: Value = serde_json::from_str(&request.state_json)?;
        let products: Vec<String> = state["revel_product_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|id| id.to_string())
            .collect();
        let pending = PendingProducts::new(&self.entities).all(instance).await?;
        let waiting: Vec<&str> = products
            .iter()
            .filter(|p| pending.contains_key(*p))
            .map(String::as_str)
            .collect();
        if !waiting.is_empty() {
            return Ok(Progress::Waiting(format!(
                "{about}: the worker's on-demand pull of product(s) {} (over the hour's allowance, it runs at the next hour)",
                waiting.join(", ")
            )));
        }
        let stock = self.revel_entities(instance, &["inventory"]).await?;
        let mut reached = Vec::new();
        for product in &products {
            let of_product: Vec<&StoredEntity> = stock
                .iter()
                .filter(|e| stock_product(e).as_deref() == Some(product.as_str()))
                .collect();
            if of_product.is_empty() {
                reached.push(format!("product {product}: Revel holds no stock of it"));
            }
            for entity in of_product {
                match newest(&self.partner, instance, &entity.kind, &entity.entity_id) {
                    Some(got) if got.revision >= entity.revision => reached.push(format!(
                        "{} {} r{} (product {product})",
                        got.kind, got.id, got.revision
                    )),
                    _ => {
                        return Ok(Progress::Waiting(format!(
                            "{about}: the worker, delivering {} {}",
                            entity.kind, entity.entity_id
                        )))
                    }
                }
            }
        }
        Ok(Progress::Done(
            Reached::Partner,
            format!(
                "{about}: Revel's stock of product(s) {} pulled on demand; the partner holds {}",
                products.join(", "),
                reached.join(", ")
            ),
        ))
    }

    /// The catalog objects (Revel's products, modifiers) of `instance` the
    /// entities table holds.
    async fn catalog_entities(&self, instance: &InstanceName) -> Result<Vec<StoredEntity>, Error> {
        let kinds: Vec<&str> = CATALOG
            .resources
            .iter()
            .map(|(_, kind)| kind.kind().as_str())
            .collect();
        self.revel_entities(instance, &kinds).await
    }

    /// The entities of `kinds` pulled from `instance`'s Revel.
    async fn revel_entities(
        &self,
        instance: &InstanceName,
        kinds: &[&str],
    ) -> Result<Vec<StoredEntity>, Error> {
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .dynamodb
                .scan()
                .table_name(&self.entities_table)
                .projection_expression("entity_key, #kind")
                .filter_expression("#instance = :instance AND #source = :source")
                .expression_attribute_names("#instance", "instance")
                .expression_attribute_names("#source", "source")
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_values(":instance", AttributeValue::S(instance.to_string()))
                // Pulls are Revel's; other sources have products too.
                .expression_attribute_values(
                    ":source",
                    AttributeValue::S(vendors::revel::NAME.to_string()),
                )
                .set_exclusive_start_key(start.take())
                .send()
                .await?;
            for item in page.items() {
                let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
                if text("kind").is_some_and(|k| kinds.contains(&k.as_str())) {
                    if let Some(key) = text("entity_key") {
                        keys.push(EntityKey::parse(key)?);
                    }
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        let mut entities = Vec::new();
        for key in keys {
            if let Some(entity) = self.entities.get(&key).await? {
                entities.push(entity);
            }
        }
        Ok(entities)
    }
}

/// The Revel product a pulled stock record is of (its `product` URI's id).
fn stock_product(entity: &StoredEntity) -> Option<String> {
    let state: Value = serde_json::from_str(&entity.state_json).ok()?;
    vendors::revel::resource_id(&state["product"])
}

/// The Revel secret document's instances and settings (never shown).
async fn revel_settings(
    sdk: &aws_config::SdkConfig,
    stack: &RunningStack,
) -> Result<InstanceSecrets, Error> {
    let document = SecretsManagerSource::new(
        aws_sdk_secretsmanager::Client::new(sdk),
        stack.var("REVEL_WEBHOOK_SECRETS_ID")?,
    )
    .fetch()
    .await?;
    Ok(InstanceSecrets::parse(&document)?)
}

/// `post-events [--dir events] [--url URL] [--wait-seconds 30]`.
pub async fn run(dir: &Path, url: Option<&str>, wait: Duration) -> Result<(), Error> {
    let stack = RunningStack::read(Path::new(crate::STATE_FILE))?;
    let base = url.unwrap_or(&stack.url).to_owned();
    let sdk = crate::provision::local_sdk_config(&stack.endpoint).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let events_table = stack.var("EVENTS_TABLE")?;
    let http = reqwest::Client::builder().no_proxy().build()?;

    let EventFiles { requests, others } = request_files(dir)?;
    let mut posted = Vec::new();
    for (file, event) in requests {
        let file = name_of(&file);
        let (status, answer) = post_one(&http, &base, event).await?;
        println!("{file} -> {status} {answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        let record = match answer["event_id"].as_str() {
            Some(key) => stored_record(&dynamodb, events_table, key).await?,
            None => None,
        };
        if let Some(record) = &record {
            println!("    stored: {} {}", record.event_key, shown(record));
        }
        posted.push(Posted {
            file,
            status,
            outcome: if answer["ping"] == "pong" {
                "pong".to_owned()
            } else {
                answer["status"]
                    .as_str()
                    .or(answer["error"].as_str())
                    .unwrap_or("-")
                    .to_owned()
            },
            record,
        });
    }
    if !others.is_empty() {
        println!(
            "(not posted, inputs for `sam local invoke`: {})",
            others.join(", ")
        );
    }

    println!(
        "\nWaiting up to {} s for the events processor and the jobs worker...",
        wait.as_secs()
    );
    let started = Instant::now();
    let revel = revel_settings(&sdk, &stack).await?;
    let report = loop {
        let observer = Observer::new(
            &dynamodb,
            &stack,
            partner_received(&http, &base).await?,
            revel.clone(),
        )?;
        let mut report = Vec::new();
        for event in &posted {
            report.push((event.file.as_str(), observer.progress(event).await?));
        }
        let waiting = report
            .iter()
            .any(|(_, p)| matches!(p, Progress::Waiting(_)));
        if !waiting || started.elapsed() >= wait {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "After {:.1} s, each event posted:",
        started.elapsed().as_secs_f64()
    );
    let width = report.iter().map(|(f, _)| f.len()).max().unwrap_or(0);
    let mut counts: BTreeMap<Option<Reached>, usize> = BTreeMap::new();
    for (file, progress) in &report {
        let (reached, line) = match progress {
            Progress::Done(reached, line) => (Some(*reached), line.clone()),
            Progress::Waiting(what) => (None, format!("NOT YET: waiting for {what}")),
        };
        *counts.entry(reached).or_default() += 1;
        println!("  {file:<width$}  {line}");
    }
    let count = |r| counts.get(&r).copied().unwrap_or(0);
    println!(
        "{} reached the partner, {} applied to Revel, {} kept for the end-of-day batch, {} kept with no follow-up, {} with nothing to apply, {} not finished",
        count(Some(Reached::Partner)),
        count(Some(Reached::Revel)),
        count(Some(Reached::EndOfDay)),
        count(Some(Reached::KeptOnly)),
        count(Some(Reached::NotApplied)),
        count(None)
    );
    if count(None) > 0 {
        return Err(format!(
            "{} event(s) not finished within {} s (is `make local` running its processor and worker?)",
            count(None),
            wait.as_secs()
        )
        .into());
    }
    Ok(())
}
