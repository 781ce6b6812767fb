//! The Revel secret document as `instance` edits it: a JSON object of one
//! entry per instance. Only the entry being changed is touched; the others
//! are written back as they were read (whatever settings they hold, even
//! ones this tool does not know).
//!
//! Secrets Manager has no conditional put, so a change is guarded by the
//! version it was made on: the version is read again just before the write
//! and a document changed meanwhile (another operator) is not overwritten.
//! What remains is a window of one round trip, stated in docs/operations.md.

use serde_json::{Map, Value};

use crate::context::Context;
use crate::error::OpsError;

pub struct RevelDocument {
    entries: Map<String, Value>,
    /// The version read; `None` for a secret without a value yet.
    version: Option<String>,
}

const SERVICE: &str = "secretsmanager";

impl RevelDocument {
    pub async fn read(context: &Context) -> Result<Self, OpsError> {
        let (text, version) = current(context).await?;
        let entries = match text.as_deref().map(str::trim) {
            None | Some("") => Map::new(),
            Some(text) => match serde_json::from_str(text) {
                Ok(Value::Object(entries)) => entries,
                // Never quote the document: it is made of secrets.
                _ => {
                    return Err(OpsError::Unreadable {
                        what: "the Revel secret document".into(),
                        why: "not a JSON object; fix it by hand before adding instances".into(),
                    })
                }
            },
        };
        Ok(Self { entries, version })
    }

    /// Whether the document holds an entry for `instance` (of any shape).
    pub fn contains(&self, instance: &str) -> bool {
        self.entries.contains_key(instance)
    }

    /// The entry of `instance` as an object: an entry in the short form
    /// (only its webhook secret or secrets) becomes `{"webhook": …}`.
    pub fn entry_object(&self, instance: &str) -> Option<Map<String, Value>> {
        match self.entries.get(instance)? {
            Value::Object(entry) => Some(entry.clone()),
            short => Some(Map::from_iter([("webhook".to_owned(), short.clone())])),
        }
    }

    pub fn set(&mut self, instance: &str, entry: Map<String, Value>) {
        self.entries
            .insert(instance.to_owned(), Value::Object(entry));
    }

    pub fn remove(&mut self, instance: &str) -> bool {
        self.entries.remove(instance).is_some()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Writes the document, unless it changed since it was read.
    pub async fn write(&self, context: &Context) -> Result<(), OpsError> {
        let (_, now) = current(context).await?;
        if now != self.version {
            return Err(OpsError::Conflict(
                "the Revel secret document changed while this command ran; nothing was written, run it again",
            ));
        }
        context
            .secrets
            .put_secret_value()
            .secret_id(context.revel_secrets_id()?)
            .secret_string(Value::Object(self.entries.clone()).to_string())
            .send()
            .await
            .map_err(|e| OpsError::aws(SERVICE, "PutSecretValue", e))?;
        Ok(())
    }
}

/// The document's text and version now.
async fn current(context: &Context) -> Result<(Option<String>, Option<String>), OpsError> {
    let output = context
        .secrets
        .get_secret_value()
        .secret_id(context.revel_secrets_id()?)
        .send()
        .await
        .map_err(|e| OpsError::aws(SERVICE, "GetSecretValue", e))?;
    Ok((
        output.secret_string().map(str::to_owned),
        output.version_id().map(str::to_owned),
    ))
}
