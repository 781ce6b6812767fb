//! The partner's contract, `docs/asyncapi.yaml`, as the tests hold the code
//! to it: loaded and compiled once per test binary, then every request a
//! test sends as a platform (the samples in events/, the partner's VinesOS
//! webhooks) and every delivery a partner stand-in captures is checked
//! against the message its channel names, headers and body, so the document
//! cannot drift from what the bundle reads and sends.
//!
//! A channel's messages are alternatives (Revel's routes take their event or
//! the test ping; the partner's endpoint takes one message per delivered
//! type): a request or a delivery must be one of them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use base64::Engine;
use jsonschema::{Draft, Validator};
use serde_json::Value;

/// The channel every delivery to the partner goes to.
pub const DELIVERY_CHANNEL: &str = "partnerDeliveries";

/// `docs/asyncapi.yaml`, loaded, with a validator for the headers and the
/// payload of each of its messages.
pub struct Contract {
    document: Value,
    messages: BTreeMap<String, Checks>,
}

/// What one message is held to.
struct Checks {
    headers: Validator,
    payload: Validator,
}

/// The contract, loaded once; a document that does not load or whose
/// schemas do not compile fails the test that first asks for it.
pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| Contract::load().unwrap_or_else(|why| panic!("{why}")))
}

/// The document's path.
pub fn path() -> std::path::PathBuf {
    crate::workspace_root().join("docs/asyncapi.yaml")
}

impl Contract {
    /// Reads `docs/asyncapi.yaml` and compiles every message's schemas.
    pub fn load() -> Result<Self, String> {
        let path = path();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let document: Value = serde_norway::from_str(&text)
            .map_err(|e| format!("{} is not YAML: {e}", path.display()))?;
        let names: Vec<String> = document["components"]["messages"]
            .as_object()
            .ok_or("the document has no components.messages")?
            .keys()
            .cloned()
            .collect();
        let mut messages = BTreeMap::new();
        for name in names {
            let checks = Checks {
                headers: compile(&document, &format!("#/components/messages/{name}/headers"))?,
                payload: compile(&document, &format!("#/components/messages/{name}/payload"))?,
            };
            messages.insert(name, checks);
        }
        Ok(Self { document, messages })
    }

    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The id of the channel at `address` (a route template:
    /// `/vinesos/{instance}/customers/created`).
    pub fn channel_at(&self, address: &str) -> Option<&str> {
        self.document["channels"]
            .as_object()?
            .iter()
            .find(|(_, channel)| channel["address"].as_str() == Some(address))
            .map(|(id, _)| id.as_str())
    }

    /// The component messages `channel` carries (the names its `$ref`s end with).
    pub fn messages_of(&self, channel: &str) -> Vec<String> {
        self.document["channels"][channel]["messages"]
            .as_object()
            .map(|messages| {
                messages
                    .values()
                    .filter_map(|m| m["$ref"].as_str())
                    .filter_map(|r| r.strip_prefix("#/components/messages/"))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Which of `channel`'s messages `headers` and `body` are: the first
    /// whose schemas both take them; otherwise why none does.
    pub fn check(&self, channel: &str, headers: &Value, body: &Value) -> Result<String, String> {
        let names = self.messages_of(channel);
        if names.is_empty() {
            return Err(format!(
                "the contract has no channel {channel} with messages"
            ));
        }
        let mut refusals = Vec::new();
        // Where a message is named by the body's `type` (VinesOS's events,
        // the deliveries), only its reasons are told.
        let typed: Vec<String> = names
            .iter()
            .filter(|name| {
                body.get("type").and_then(Value::as_str).is_some_and(|t| {
                    self.document["components"]["messages"][name.as_str()]["name"] == t
                })
            })
            .cloned()
            .collect();
        let told = |name: &str| typed.is_empty() || typed.iter().any(|t| t == name);
        for name in names {
            let checks = self.messages.get(&name).ok_or_else(|| {
                format!(
                    "channel {channel} names message {name}, which is not in components.messages"
                )
            })?;
            let errors: Vec<String> = checks
                .headers
                .iter_errors(headers)
                .map(|e| format!("headers{}: {e}", e.instance_path()))
                .chain(
                    checks
                        .payload
                        .iter_errors(body)
                        .map(|e| format!("payload{}: {e}", e.instance_path())),
                )
                .collect();
            if errors.is_empty() {
                return Ok(name);
            }
            if told(&name) {
                refusals.push(format!("  not {name}: {}", errors.join("; ")));
            }
        }
        Err(format!(
            "not a message of channel {channel} in docs/asyncapi.yaml:\n{}",
            refusals.join("\n")
        ))
    }

    /// Checks an API Gateway request event (payload 2.0) against the channel
    /// of its route; returns the message it is.
    pub fn check_request(&self, event: &Value) -> Result<String, String> {
        let route_key = event["routeKey"]
            .as_str()
            .ok_or("the event has no routeKey")?;
        let route = route_key
            .split_once(' ')
            .map_or(route_key, |(_, route)| route);
        let channel = self
            .channel_at(route)
            .ok_or_else(|| format!("no channel of docs/asyncapi.yaml has the address {route}"))?;
        let raw = event["body"].as_str().unwrap_or_default();
        let bytes = if event["isBase64Encoded"].as_bool() == Some(true) {
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .map_err(|e| format!("the body is not base64: {e}"))?
        } else {
            raw.as_bytes().to_vec()
        };
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the body sent to {route} is not JSON: {e}"))?;
        let headers = lower_case(
            event["headers"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, value)| (name.as_str(), value.as_str().unwrap_or_default())),
        );
        self.check(channel, &headers, &body)
            .map_err(|why| format!("POST {route}: {why}"))
    }

    /// Checks one delivery to the partner, as its endpoint received it.
    pub fn check_delivery(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<String, String> {
        let body: Value =
            serde_json::from_slice(body).map_err(|e| format!("a delivery is not JSON: {e}"))?;
        let headers = lower_case(
            headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.to_str().unwrap_or_default())),
        );
        self.check(DELIVERY_CHANNEL, &headers, &body)
    }
}

/// Headers as a JSON object, names in lower case, repeated ones joined.
fn lower_case<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let mut object = serde_json::Map::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let joined = match object.get(&name).and_then(Value::as_str) {
            Some(previous) => format!("{previous}, {value}"),
            None => value.to_owned(),
        };
        object.insert(name, Value::String(joined));
    }
    Value::Object(object)
}

/// A validator for the schema at `pointer` in `document`: the document
/// itself, its root a `$ref` to the schema (draft-07, the dialect AsyncAPI
/// Schema extends, ignores a `$ref`'s siblings), so the schema's own `$ref`s
/// into `#/components/schemas` resolve within it.
fn compile(document: &Value, pointer: &str) -> Result<Validator, String> {
    if document.pointer(pointer.trim_start_matches('#')).is_none() {
        return Err(format!("docs/asyncapi.yaml has no schema at {pointer}"));
    }
    let mut root = document.clone();
    root["$ref"] = Value::String(pointer.to_owned());
    jsonschema::options()
        .with_draft(Draft::Draft7)
        .should_validate_formats(true)
        .build(&root)
        .map_err(|e| format!("the schema at {pointer} does not compile: {e}"))
}

/// Panics unless `event` (an API Gateway request a test sends as a
/// platform) is a message of its route's channel.
pub fn assert_request(event: &Value) {
    if let Err(why) = contract().check_request(event) {
        panic!("a request sent as a platform breaks the contract: {why}");
    }
}

/// Panics unless `request` (what a partner stand-in received) is a message
/// of the partner's channel.
pub fn assert_delivery(request: &wiremock::Request) {
    let mut headers = http::HeaderMap::new();
    for (name, value) in request.headers.iter() {
        headers.append(name.clone(), value.clone());
    }
    if let Err(why) = contract().check_delivery(&headers, &request.body) {
        panic!("a delivery to the partner breaks the contract: {why}");
    }
}
