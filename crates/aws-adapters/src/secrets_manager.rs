//! The secret document read from AWS Secrets Manager.

use async_trait::async_trait;
use domain::error::DependencyError;
use ports::secrets::{SecretDocument, SecretSource};

/// Reads the secret document from AWS Secrets Manager.
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerSource {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn fetch(&self) -> Result<SecretDocument, DependencyError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| DependencyError::new("secretsmanager", "GetSecretValue", e))?;
        output.secret_string.map(SecretDocument).ok_or_else(|| {
            DependencyError::new(
                "secretsmanager",
                "GetSecretValue",
                "secret has no string value",
            )
        })
    }
}
