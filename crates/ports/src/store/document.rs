//! A small JSON document kept as one entity of the entities table and
//! changed by compare-and-swap: read it, edit it, write it as the next
//! version; every writer of one version writes the same rank, so only the
//! first gets in (the others are told `Repeated`) and they edit again on
//! what won. What the end-of-day batch and the on-demand inventory pulls
//! keep pending is such a document.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{EntityStore, EntityUpsert, Rank, Upserted};
use domain::error::DependencyError;
use domain::idempotency::sha256_hex;
use domain::ids::{EntityKey, EventKey, InstanceName};
use domain::sources::EntityKind;

/// How often a change is tried again on what another writer wrote.
const CAS_ATTEMPTS: usize = 8;

/// One document: the entity it is kept as.
pub struct EntityDocument<'a> {
    entities: &'a dyn EntityStore,
    key: EntityKey,
    source: &'static str,
    instance: InstanceName,
    kind: EntityKind,
    id: String,
    /// Named on each write as the entity's last event.
    writer: EventKey,
}

impl<'a> EntityDocument<'a> {
    /// The document `source:instance:kind:id`, written in the name of `writer`.
    pub fn new(
        entities: &'a dyn EntityStore,
        source: &'static str,
        instance: &InstanceName,
        kind: EntityKind,
        id: String,
        writer: &str,
    ) -> Result<Self, DependencyError> {
        let invalid = |e| DependencyError::new("dynamodb", "UpdateItem", e);
        Ok(Self {
            entities,
            key: EntityKey::new(source, instance, kind, &id).map_err(invalid)?,
            source,
            instance: instance.clone(),
            kind,
            id,
            writer: EventKey::parse(writer).map_err(invalid)?,
        })
    }

    /// The document, or its default when it was never written.
    pub async fn read<T: DeserializeOwned + Default>(&self) -> Result<T, DependencyError> {
        Ok(self
            .read_ranked()
            .await?
            .map(|(doc, _)| doc)
            .unwrap_or_default())
    }

    async fn read_ranked<T: DeserializeOwned>(&self) -> Result<Option<(T, Rank)>, DependencyError> {
        let Some(entity) = self.entities.get(&self.key).await? else {
            return Ok(None);
        };
        let doc = serde_json::from_str(&entity.state_json)
            .map_err(|e| DependencyError::new("dynamodb", "GetItem", e))?;
        Ok(Some((doc, entity.rank)))
    }

    /// Applies `edit` (true when it changed something) by compare-and-swap;
    /// the document as it then stands.
    pub async fn change<T: Serialize + DeserializeOwned + Default>(
        &self,
        mut edit: impl FnMut(&mut T) -> bool,
    ) -> Result<T, DependencyError> {
        for _ in 0..CAS_ATTEMPTS {
            let (mut doc, version) = match self.read_ranked::<T>().await? {
                Some((doc, rank)) => (doc, rank.version),
                None => (T::default(), 0),
            };
            if !edit(&mut doc) {
                return Ok(doc);
            }
            let state_json = serde_json::to_string(&doc)
                .map_err(|e| DependencyError::new("dynamodb", "UpdateItem", e))?;
            let change = EntityUpsert {
                key: self.key.clone(),
                source: self.source,
                instance: self.instance.clone(),
                kind: self.kind,
                entity_id: self.id.clone(),
                rank: Rank::new(version + 1, false, "document"),
                state_sha256: sha256_hex(state_json.as_bytes()),
                state_json,
                event_key: self.writer.clone(),
            };
            match self.entities.upsert(&change).await? {
                Upserted::Applied { .. } | Upserted::Unchanged { .. } => return Ok(doc),
                // Another writer got there first: edit again on what it wrote.
                Upserted::Repeated | Upserted::Stale => continue,
            }
        }
        Err(DependencyError::new(
            "dynamodb",
            "UpdateItem",
            "the document kept changing under the write",
        ))
    }
}
