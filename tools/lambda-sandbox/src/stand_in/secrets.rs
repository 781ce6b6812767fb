//! Secrets Manager (JSON 1.1): CreateSecret, PutSecretValue,
//! GetSecretValue, with versions staged AWSCURRENT/AWSPREVIOUS as the
//! service stages them, and a secret found by name or ARN.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::{Fault, ACCOUNT, REGION};

struct Version {
    id: String,
    /// `SecretString` or `SecretBinary`, as given.
    value: (&'static str, String),
    created: f64,
}

struct Secret {
    name: String,
    arn: String,
    /// Oldest first; the last is AWSCURRENT, the one before AWSPREVIOUS.
    versions: Vec<Version>,
}

#[derive(Default)]
pub(super) struct Secrets {
    secrets: Vec<Secret>,
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn not_found(message: impl Into<String>) -> Fault {
    Fault::new("ResourceNotFoundException", message)
}

fn invalid(message: impl Into<String>) -> Fault {
    Fault::new("InvalidParameterException", message)
}

fn text<'a>(request: &'a Value, field: &str) -> Option<&'a str> {
    request.get(field).and_then(Value::as_str)
}

/// The value a request gives, if any: exactly one of the two kinds.
fn value_of(request: &Value) -> Result<Option<(&'static str, String)>, Fault> {
    match (
        text(request, "SecretString"),
        text(request, "SecretBinary"),
    ) {
        (Some(_), Some(_)) => Err(invalid(
            "You can't specify both a binary secret value and a string secret value in the same secret.",
        )),
        (Some(s), None) => Ok(Some(("SecretString", s.to_owned()))),
        (None, Some(b)) => Ok(Some(("SecretBinary", b.to_owned()))),
        (None, None) => Ok(None),
    }
}

impl Secret {
    fn stages(&self, index: usize) -> Vec<&'static str> {
        let last = self.versions.len() - 1;
        match index {
            i if i == last => vec!["AWSCURRENT"],
            i if i + 1 == last => vec!["AWSPREVIOUS"],
            _ => vec![],
        }
    }

    /// Adds a version (idempotent on its token, as the service is).
    fn add(&mut self, token: Option<&str>, value: (&'static str, String)) -> Result<usize, Fault> {
        if let Some(token) = token {
            if let Some(at) = self.versions.iter().position(|v| v.id == token) {
                return if self.versions[at].value == value {
                    Ok(at)
                } else {
                    Err(Fault::new(
                        "ResourceExistsException",
                        "You can't modify an existing version, you can only create a new version.",
                    ))
                };
            }
        }
        self.versions.push(Version {
            id: token.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned),
            value,
            created: now_seconds(),
        });
        Ok(self.versions.len() - 1)
    }
}

impl Secrets {
    /// The secret `id` names: its name, its ARN, or its ARN without the
    /// six random characters the service appends.
    fn find(&mut self, id: &str) -> Result<&mut Secret, Fault> {
        self.secrets
            .iter_mut()
            .find(|s| {
                s.name == id || s.arn == id || s.arn.rsplit_once('-').map(|(p, _)| p) == Some(id)
            })
            .ok_or_else(|| not_found("Secrets Manager can't find the specified secret."))
    }

    /// The answer to `operation` (the target without `secretsmanager.`).
    pub(super) fn handle(&mut self, operation: &str, request: &Value) -> Result<Value, Fault> {
        match operation {
            "CreateSecret" => self.create(request),
            "PutSecretValue" => self.put(request),
            "GetSecretValue" => self.get(request),
            other => Err(Fault::unsupported(format!("secretsmanager.{other}"))),
        }
    }

    fn create(&mut self, request: &Value) -> Result<Value, Fault> {
        let name = text(request, "Name")
            .ok_or_else(|| invalid("You must provide a value for the Name parameter."))?;
        if self.secrets.iter().any(|s| s.name == name) {
            return Err(Fault::new(
                "ResourceExistsException",
                format!("The operation failed because the secret {name} already exists."),
            ));
        }
        let suffix: String = (0..6).map(|_| fastrand::alphanumeric()).collect();
        let mut secret = Secret {
            name: name.to_owned(),
            arn: format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-{suffix}"),
            versions: Vec::new(),
        };
        let mut answer = Map::new();
        answer.insert("ARN".into(), json!(secret.arn));
        answer.insert("Name".into(), json!(name));
        if let Some(value) = value_of(request)? {
            let at = secret.add(text(request, "ClientRequestToken"), value)?;
            answer.insert("VersionId".into(), json!(secret.versions[at].id));
        }
        self.secrets.push(secret);
        Ok(Value::Object(answer))
    }

    fn put(&mut self, request: &Value) -> Result<Value, Fault> {
        let id = text(request, "SecretId")
            .ok_or_else(|| invalid("You must provide a value for the SecretId parameter."))?;
        let value = value_of(request)?
            .ok_or_else(|| invalid("You must provide either SecretString or SecretBinary."))?;
        let token = text(request, "ClientRequestToken");
        let secret = self.find(id)?;
        let at = secret.add(token, value)?;
        Ok(json!({
            "ARN": secret.arn,
            "Name": secret.name,
            "VersionId": secret.versions[at].id,
            "VersionStages": secret.stages(at),
        }))
    }

    fn get(&mut self, request: &Value) -> Result<Value, Fault> {
        let id = text(request, "SecretId")
            .ok_or_else(|| invalid("You must provide a value for the SecretId parameter."))?;
        let secret = self.find(id)?;
        let at = match (text(request, "VersionId"), text(request, "VersionStage")) {
            (Some(version), _) => secret
                .versions
                .iter()
                .position(|v| v.id == version)
                .ok_or_else(|| not_found(format!("Secrets Manager can't find the specified secret value for VersionId: {version}")))?,
            (None, stage) => {
                let stage = stage.unwrap_or("AWSCURRENT");
                (0..secret.versions.len())
                    .find(|&i| secret.stages(i).contains(&stage))
                    .ok_or_else(|| not_found(format!("Secrets Manager can't find the specified secret value for staging label: {stage}")))?
            }
        };
        let version = &secret.versions[at];
        let mut answer = Map::new();
        answer.insert("ARN".into(), json!(secret.arn));
        answer.insert("Name".into(), json!(secret.name));
        answer.insert("VersionId".into(), json!(version.id));
        answer.insert(version.value.0.into(), json!(version.value.1));
        answer.insert("VersionStages".into(), json!(secret.stages(at)));
        answer.insert("CreatedDate".into(), json!(version.created));
        Ok(Value::Object(answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_value_becomes_current_and_the_one_before_previous() {
        let mut s = Secrets::default();
        let created = s
            .handle("CreateSecret", &json!({"Name": "n", "SecretString": "one"}))
            .unwrap();
        assert!(created["ARN"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:secretsmanager:us-east-1:123456789012:secret:n-"));
        s.handle(
            "PutSecretValue",
            &json!({"SecretId": created["ARN"], "SecretString": "two"}),
        )
        .unwrap();
        let current = s
            .handle("GetSecretValue", &json!({"SecretId": "n"}))
            .unwrap();
        assert_eq!(current["SecretString"], "two");
        assert_eq!(current["VersionStages"], json!(["AWSCURRENT"]));
        let previous = s
            .handle(
                "GetSecretValue",
                &json!({"SecretId": "n", "VersionStage": "AWSPREVIOUS"}),
            )
            .unwrap();
        assert_eq!(previous["SecretString"], "one");
    }

    #[test]
    fn a_secret_without_a_value_or_an_unknown_one_is_not_found() {
        let mut s = Secrets::default();
        s.handle("CreateSecret", &json!({"Name": "empty"})).unwrap();
        let fault = s
            .handle("GetSecretValue", &json!({"SecretId": "empty"}))
            .unwrap_err();
        assert!(fault.message.contains("staging label: AWSCURRENT"));
        let fault = s
            .handle("GetSecretValue", &json!({"SecretId": "nope"}))
            .unwrap_err();
        assert_eq!(fault.kind, "ResourceNotFoundException");
        let fault = s
            .handle("CreateSecret", &json!({"Name": "empty"}))
            .unwrap_err();
        assert_eq!(fault.kind, "ResourceExistsException");
    }
}
