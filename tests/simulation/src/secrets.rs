//! Secrets Manager: one secret document per source, unreadable during the
//! seed's outages (the receivers' caches then use the stale grace).

use std::sync::Arc;

use async_trait::async_trait;
use domain::error::DependencyError;
use ports::secrets::{SecretDocument, SecretSource};

use crate::faults::{Faults, Service};

pub struct SimSecrets {
    pub name: &'static str,
    pub document: String,
    pub faults: Arc<Faults>,
}

#[async_trait]
impl SecretSource for SimSecrets {
    async fn fetch(&self) -> Result<SecretDocument, DependencyError> {
        let document = self
            .faults
            .call(Service::SecretsManager, "GetSecretValue", async {
                SecretDocument(self.document.clone())
            })
            .await
            .map_err(|f| f.dependency("secretsmanager", "GetSecretValue"))?;
        self.faults
            .note(format!("secrets-manager read the {} secrets", self.name));
        Ok(document)
    }
}
