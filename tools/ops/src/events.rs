//! `events list` and `events show`.
//!
//! The events table's only key is `event_key`, so a listing is a Scan with a
//! FilterExpression: it reads the whole table (the filter only trims what
//! comes back). For an operator tool run by hand that is acceptable — the
//! table holds `EVENT_RETENTION_DAYS` of webhooks, the projection leaves the
//! bodies out, and nothing on the request path waits for it. See the README
//! ("Operator tool") for the index that would make it a Query.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use clap::{Args, ValueEnum};
use domain::ids::{EntityKey, EventKey, InstanceName};
use ports::store::{EntityStore, EventRecord, EventStatus, EventStore, Origin};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::context::Context;
use crate::error::OpsError;
use crate::output::{self, rfc3339_micros};

/// Which events: every filter given must match.
#[derive(Debug, Clone, Default, Args)]
pub struct Filters {
    /// Instance (Revel subdomain, or the account of the other platforms).
    #[arg(long)]
    pub instance: Option<String>,
    /// Source: revel, winesitting, booking, vinesos.
    #[arg(long)]
    pub source: Option<String>,
    /// Event type, as stored: order.finalized, customer.created, …
    #[arg(long = "type", value_name = "EVENT_TYPE")]
    pub event_type: Option<String>,
    /// Received at or after this time (RFC 3339, e.g. 2024-05-01T00:00:00Z).
    #[arg(long, value_parser = output::parse_rfc3339_micros, value_name = "RFC3339")]
    pub since: Option<i64>,
    /// Received before this time (RFC 3339).
    #[arg(long, value_parser = output::parse_rfc3339_micros, value_name = "RFC3339")]
    pub until: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Status {
    /// Stored and understood: the processor applies it. `processing` and
    /// `done`, the statuses of the earlier design, mean the same.
    #[value(alias = "processing", alias = "done")]
    Received,
    /// Signed but not understood: kept for replay.
    Quarantined,
}

impl From<Status> for EventStatus {
    fn from(value: Status) -> Self {
        match value {
            Status::Received => Self::Received,
            Status::Quarantined => Self::Quarantined,
        }
    }
}

/// How records of the earlier status design spell `received`: a listing of
/// received events finds them too.
const LEGACY_RECEIVED: [&str; 2] = ["processing", "done"];

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filters: Filters,
    /// Only events in this state.
    #[arg(long, value_enum)]
    pub status: Option<Status>,
    /// Stop after this many matches (an arbitrary subset: a Scan has no order).
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The event key, as `events list` prints it.
    pub key: String,
    /// Also print payment and contact fields of the body (hidden by default).
    #[arg(long)]
    pub show_body: bool,
}

/// The attributes a listing reads: everything but the body and headers.
const LISTED: [&str; 14] = [
    "event_key",
    "source",
    "instance",
    "event_type",
    "status",
    "received_at",
    "quarantine_reason",
    "entity_key",
    "conflict_of",
    "origin",
    "request_id",
    "body_bytes",
    "expires_at",
    "replayed_at",
];

/// A record without its body and headers: what a listing reads, through
/// `serde_dynamo` like the record itself (the field names are
/// [`EventRecord`]'s).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Summary {
    pub event_key: EventKey,
    pub source: String,
    pub instance: InstanceName,
    pub event_type: String,
    pub status: EventStatus,
    #[serde(rename = "received_at")]
    pub received_at_micros: i64,
    #[serde(default)]
    pub quarantine_reason: Option<String>,
    #[serde(default)]
    pub entity_key: Option<EntityKey>,
    #[serde(default)]
    pub conflict_of: Option<EventKey>,
    pub origin: Origin,
    #[serde(default)]
    pub request_id: String,
    pub body_bytes: u64,
    pub expires_at: i64,
    #[serde(default)]
    pub replayed_at: Option<i64>,
}

impl From<&EventRecord> for Summary {
    fn from(record: &EventRecord) -> Self {
        Self {
            event_key: record.event_key.clone(),
            source: record.source.clone(),
            instance: record.instance.clone(),
            event_type: record.event_type.clone(),
            status: record.status,
            received_at_micros: record.received_at_micros,
            quarantine_reason: record.quarantine_reason.clone(),
            entity_key: record.entity_key.clone(),
            conflict_of: record.conflict_of.clone(),
            origin: record.origin,
            request_id: record.request_id.clone(),
            body_bytes: record.body_bytes,
            expires_at: record.expires_at,
            replayed_at: record.replayed_at,
        }
    }
}

/// A Scan's FilterExpression and its placeholders.
#[derive(Debug, Default, PartialEq)]
pub struct Filter {
    pub expression: Option<String>,
    pub values: HashMap<String, AttributeValue>,
    pub names: HashMap<String, String>,
}

impl Filters {
    /// The FilterExpression for these filters and `status`.
    pub fn to_filter(&self, status: Option<EventStatus>) -> Result<Filter, OpsError> {
        let mut filter = Filter::default();
        let mut parts = Vec::new();
        let mut equal = |attribute: &str, value: String| {
            let name = format!("#f_{attribute}");
            let placeholder = format!(":f_{attribute}");
            parts.push(format!("{name} = {placeholder}"));
            filter.names.insert(name, attribute.to_owned());
            filter.values.insert(placeholder, AttributeValue::S(value));
        };
        if let Some(instance) = &self.instance {
            let instance = InstanceName::parse(instance).map_err(|e| OpsError::Invalid {
                what: "--instance",
                why: e.to_string(),
            })?;
            equal("instance", instance.to_string());
        }
        if let Some(source) = &self.source {
            equal("source", source.trim().to_ascii_lowercase());
        }
        if let Some(event_type) = &self.event_type {
            equal("event_type", event_type.trim().to_owned());
        }
        match status {
            Some(EventStatus::Received) => {
                let mut spellings = vec![":f_status".to_owned()];
                filter.values.insert(
                    ":f_status".into(),
                    AttributeValue::S(EventStatus::Received.as_str().into()),
                );
                for (n, legacy) in LEGACY_RECEIVED.iter().enumerate() {
                    let placeholder = format!(":f_status_{n}");
                    filter
                        .values
                        .insert(placeholder.clone(), AttributeValue::S((*legacy).into()));
                    spellings.push(placeholder);
                }
                filter.names.insert("#f_status".into(), "status".into());
                parts.push(format!("#f_status IN ({})", spellings.join(", ")));
            }
            Some(status) => equal("status", status.as_str().to_owned()),
            None => {}
        }
        if self.since.is_some() || self.until.is_some() {
            filter
                .names
                .insert("#f_received_at".into(), "received_at".into());
        }
        if let Some(since) = self.since {
            parts.push("#f_received_at >= :f_since".into());
            filter
                .values
                .insert(":f_since".into(), AttributeValue::N(since.to_string()));
        }
        if let Some(until) = self.until {
            parts.push("#f_received_at < :f_until".into());
            filter
                .values
                .insert(":f_until".into(), AttributeValue::N(until.to_string()));
        }
        if let (Some(since), Some(until)) = (self.since, self.until) {
            if since >= until {
                return Err(OpsError::Invalid {
                    what: "time range",
                    why: "--since must be before --until".into(),
                });
            }
        }
        if !parts.is_empty() {
            filter.expression = Some(parts.join(" AND "));
        }
        Ok(filter)
    }
}

/// The archived events matching `filters` and `status`, without bodies,
/// oldest first: a paginated Scan.
pub async fn scan(
    context: &Context,
    filters: &Filters,
    status: Option<EventStatus>,
    limit: Option<usize>,
) -> Result<Vec<Summary>, OpsError> {
    let table = context.events_table()?;
    let filter = filters.to_filter(status)?;
    let mut names = filter.names.clone();
    let projection: Vec<String> = LISTED
        .iter()
        .map(|attribute| {
            let name = format!("#p_{attribute}");
            names.insert(name.clone(), (*attribute).to_owned());
            name
        })
        .collect();
    let progress = output::spinner("scanning events");
    let (mut scanned, mut found) = (0usize, Vec::<Summary>::new());
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = context
            .dynamodb
            .scan()
            .table_name(table)
            .consistent_read(true)
            .projection_expression(projection.join(", "))
            .set_filter_expression(filter.expression.clone())
            .set_expression_attribute_names(Some(names.clone()))
            .set_expression_attribute_values(
                (!filter.values.is_empty()).then(|| filter.values.clone()),
            )
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| OpsError::aws("dynamodb", "Scan", e))?;
        scanned += page.scanned_count() as usize;
        for item in page.items() {
            found.push(serde_dynamo::from_item(item.clone()).map_err(|e| {
                OpsError::Unreadable {
                    what: format!(
                        "record {}",
                        item.get("event_key")
                            .and_then(|k| k.as_s().ok())
                            .map_or("?", String::as_str)
                    ),
                    why: e.to_string(),
                }
            })?);
        }
        progress.set_message(format!("{scanned} scanned, {} matched", found.len()));
        progress.tick();
        if limit.is_some_and(|limit| found.len() >= limit) {
            break;
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    progress.finish_and_clear();
    if let Some(limit) = limit {
        found.truncate(limit);
    }
    found.sort_by(|a, b| {
        (a.received_at_micros, a.event_key.as_str())
            .cmp(&(b.received_at_micros, b.event_key.as_str()))
    });
    Ok(found)
}

/// One listed event as JSON.
pub fn summary_json(event: &Summary) -> Value {
    json!({
        "event_key": event.event_key.as_str(),
        "source": event.source,
        "instance": event.instance.as_str(),
        "event_type": event.event_type,
        "status": event.status.as_str(),
        "received_at": rfc3339_micros(event.received_at_micros),
        "received_at_micros": event.received_at_micros,
        "quarantine_reason": event.quarantine_reason,
        "entity_key": event.entity_key,
        "conflict_of": event.conflict_of,
        "origin": event.origin.as_str(),
        "replayed_at": event.replayed_at.map(rfc3339_micros),
    })
}

pub async fn list(context: &Context, args: &ListArgs) -> Result<(), OpsError> {
    let events = scan(
        context,
        &args.filters,
        args.status.map(Into::into),
        args.limit,
    )
    .await?;
    let mut out = String::new();
    if context.json {
        for event in &events {
            out.push_str(&summary_json(event).to_string());
            out.push('\n');
        }
    } else {
        out.push_str(&format!(
            "{:<27} {:<11} {:<16} {:<26} {}\n",
            "RECEIVED", "STATUS", "INSTANCE", "TYPE", "KEY [REASON]"
        ));
        for event in &events {
            let reason = match (&event.status, &event.quarantine_reason, &event.conflict_of) {
                (EventStatus::Quarantined, Some(reason), _) => format!(" [{reason}]"),
                (_, _, Some(original)) => format!(" [conflicts with {original}]"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "{:<27} {:<11} {:<16} {:<26} {}{reason}\n",
                rfc3339_micros(event.received_at_micros),
                event.status.as_str(),
                event.instance.as_str(),
                event.event_type,
                event.event_key,
            ));
        }
        out.push_str(&format!("{} event(s)\n", events.len()));
    }
    output::print(&out)?;
    Ok(())
}

pub fn parse_key(raw: &str) -> Result<EventKey, OpsError> {
    EventKey::parse(raw.trim()).map_err(|e| OpsError::Invalid {
        what: "event key",
        why: e.to_string(),
    })
}

/// The body for printing: JSON with payment and contact fields redacted
/// unless `show_body`; text only when `show_body`.
fn printable_body(raw: &[u8], show_body: bool) -> Value {
    match serde_json::from_slice::<Value>(raw) {
        Ok(mut body) => {
            if !show_body {
                output::redact_personal(&mut body);
            }
            body
        }
        Err(_) if show_body => Value::String(String::from_utf8_lossy(raw).into_owned()),
        Err(_) => Value::String(format!(
            "<{} bytes, not JSON; --show-body prints them>",
            raw.len()
        )),
    }
}

/// The stored record of `key`.
pub async fn load(context: &Context, key: &EventKey) -> Result<EventRecord, OpsError> {
    context
        .event_store()?
        .get(key)
        .await?
        .ok_or_else(|| OpsError::NotFound(key.to_string()))
}

/// Where the record's entity stands, when the entities table is named.
async fn entity_json(context: &Context, key: Option<&EntityKey>) -> Result<Value, OpsError> {
    let (Some(store), Some(key)) = (context.entity_store(), key) else {
        return Ok(Value::Null);
    };
    Ok(match store.get(key).await? {
        None => json!("not stored (yet): the processor hasn't applied it"),
        Some(entity) => json!({
            "revision": entity.revision,
            "delivered_revision": entity.delivered_revision,
            "version": entity.rank.version,
            "last_event_key": entity.last_event_key,
        }),
    })
}

pub async fn show(context: &Context, args: &ShowArgs) -> Result<(), OpsError> {
    let key = parse_key(&args.key)?;
    let record = load(context, &key).await?;
    let headers: Map<String, Value> = record
        .headers
        .iter()
        .map(|(name, value)| {
            let value = if output::is_secret_header(name) {
                output::REDACTED
            } else {
                value
            };
            (name.clone(), Value::String(value.to_owned()))
        })
        .collect();
    let body = match record.raw_body() {
        Ok(raw) => printable_body(&raw, args.show_body),
        Err(_) => Value::String("<the archived gzip body does not decompress>".into()),
    };
    let mut shown = summary_json(&Summary::from(&record));
    let fields = shown.as_object_mut().expect("an object");
    fields.insert("request_id".into(), json!(record.request_id));
    fields.insert("expires_at".into(), json!(record.expires_at));
    fields.insert("body_bytes".into(), json!(record.body_bytes));
    fields.insert(
        "body_encoding".into(),
        json!(if record.archived_body().gzip {
            "gzip"
        } else {
            "identity"
        }),
    );
    fields.insert("body_sha256".into(), json!(record.body_sha256));
    fields.insert(
        "entity".into(),
        entity_json(context, record.entity_key.as_ref()).await?,
    );
    fields.insert("headers".into(), Value::Object(headers));
    fields.insert("body_redacted".into(), json!(!args.show_body));
    fields.insert("body".into(), body);
    if context.json {
        output::print(&format!("{shown}\n"))?;
        return Ok(());
    }
    let mut out = String::new();
    for (name, value) in fields.iter() {
        match (name.as_str(), value) {
            ("body" | "headers" | "body_redacted", _) | (_, Value::Null) => {}
            (_, Value::String(text)) => out.push_str(&format!("{name:<19} {text}\n")),
            (_, other) => out.push_str(&format!("{name:<19} {other}\n")),
        }
    }
    out.push_str("headers\n");
    for (name, value) in fields["headers"].as_object().into_iter().flatten() {
        out.push_str(&format!(
            "  {name}: {}\n",
            value.as_str().unwrap_or_default()
        ));
    }
    out.push_str(if args.show_body {
        "body\n"
    } else {
        "body (payment and contact fields redacted; --show-body prints them)\n"
    });
    match &fields["body"] {
        Value::String(text) => out.push_str(text),
        other => out.push_str(&serde_json::to_string_pretty(other).unwrap_or_default()),
    }
    out.push('\n');
    output::print(&out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_one_expression_with_placeholders() {
        let filters = Filters {
            instance: Some("Demo".into()),
            event_type: Some("order.finalized".into()),
            since: Some(10),
            ..Filters::default()
        };
        let filter = filters.to_filter(Some(EventStatus::Quarantined)).unwrap();
        assert_eq!(
            filter.expression.as_deref(),
            Some("#f_instance = :f_instance AND #f_event_type = :f_event_type AND #f_status = :f_status AND #f_received_at >= :f_since")
        );
        assert_eq!(
            filter.values[":f_instance"],
            AttributeValue::S("demo".into())
        );
        assert_eq!(filter.names["#f_status"], "status");
    }

    #[test]
    fn a_listing_of_received_events_finds_the_earlier_designs_spellings_too() {
        let filter = Filters::default()
            .to_filter(Some(EventStatus::Received))
            .unwrap();
        assert_eq!(
            filter.expression.as_deref(),
            Some("#f_status IN (:f_status, :f_status_0, :f_status_1)")
        );
        let mut spellings: Vec<&str> = filter
            .values
            .values()
            .map(|v| v.as_s().unwrap().as_str())
            .collect();
        spellings.sort();
        assert_eq!(spellings, ["done", "processing", "received"]);
        for spelling in spellings {
            assert_eq!(EventStatus::parse(spelling), Some(EventStatus::Received));
        }
    }

    #[test]
    fn a_summary_reads_a_listed_item_and_says_what_the_record_says() {
        let record = EventRecord {
            event_key: EventKey::parse("revel:demo:customer.created:biz:c-1@1").unwrap(),
            source: "revel".into(),
            instance: InstanceName::parse("demo").unwrap(),
            event_type: "customer.created".into(),
            status: EventStatus::Received,
            received_at_micros: 7,
            body: b"{}".to_vec(),
            body_encoding: ports::store::BodyEncoding::Identity,
            body_bytes: 2,
            body_sha256: "x".into(),
            headers: Default::default(),
            quarantine_reason: None,
            entity_key: None,
            conflict_of: Some(EventKey::parse("revel:demo:customer.created:biz:c-0@1").unwrap()),
            request_id: "r".into(),
            origin: Origin::Webhook,
            expires_at: 9,
            replayed_at: Some(8),
            time_zone: None,
        };
        let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(&record).unwrap();
        item.retain(|name, _| LISTED.contains(&name.as_str()));
        let summary: Summary = serde_dynamo::from_item(item).unwrap();
        assert_eq!(summary, Summary::from(&record));
    }

    #[test]
    fn no_filters_scan_everything_and_a_reversed_range_is_refused() {
        assert_eq!(Filters::default().to_filter(None).unwrap().expression, None);
        let reversed = Filters {
            since: Some(2),
            until: Some(1),
            ..Filters::default()
        };
        assert!(matches!(
            reversed.to_filter(None),
            Err(OpsError::Invalid { .. })
        ));
    }

    #[test]
    fn bodies_are_redacted_unless_asked_and_non_json_is_hidden() {
        let raw = br#"{"email": "a@b.c", "uuid": "c-1"}"#;
        assert_eq!(printable_body(raw, false)["email"], output::REDACTED);
        assert_eq!(printable_body(raw, true)["email"], "a@b.c");
        assert!(!printable_body(b"secret text", false)
            .as_str()
            .unwrap()
            .contains("secret"));
    }
}
