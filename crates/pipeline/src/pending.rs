//! The partner's pending products and events: the index the
//! `apply_to_revel` job notes them in ([`crate::apply`]) and the end-of-day
//! `partner_catalog` job applies them from. It lives in the entities table,
//! as a few entities of kind `vos_pending` per instance and kind
//! (`vinesos:{instance}:vos_pending:vos_product.07`), each holding
//! `{partner id: newest revision to apply}`. Every change of one is a
//! compare-and-swap on its rank: a write names the next version of the
//! index, and a concurrent write of the same version is refused
//! (`Repeated`) and done again on what won. An entry is removed only up to
//! the revision that was applied, so a change that arrives while the batch
//! runs stays for the next one.

use domain::error::DependencyError;
use domain::idempotency::sha256_hex;
use domain::ids::InstanceName;
use domain::sources::EntityKind;
use ports::queue::JobKind;
use ports::store::document::EntityDocument;
use ports::store::EntityStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vendors::vinesos;

/// The partner's entity kinds the schedule applies at end of day.
pub const BATCHED: [vinesos::Entity; 2] = [vinesos::Entity::Product, vinesos::Entity::Event];

/// The entity kind of the pending index: the pipeline's own, kept under
/// the partner's source beside the entities it lists.
pub const INDEX_KIND: EntityKind = EntityKind::new("vos_pending");

/// Pending entries of one instance and kind are spread over this many index
/// entities, so each stays far below DynamoDB's item size (about 5,000
/// entries each) and concurrent jobs rarely touch the same one.
pub const SHARDS: u32 = 16;

/// The partner's kind a stored entity spells `kind`, if the schedule
/// applies it at end of day.
pub fn batched(kind: &str) -> Option<vinesos::Entity> {
    vinesos::Entity::parse(kind).filter(|entity| BATCHED.contains(entity))
}

/// The state of one index entity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct IndexState {
    /// Partner id -> the newest revision of its entity waiting to be applied.
    pending: BTreeMap<String, u64>,
}

/// The shard of a partner id: stable, spread by hash.
fn shard_of(id: &str) -> u32 {
    let hex = sha256_hex(id.as_bytes());
    u32::from_str_radix(&hex[..8], 16).unwrap_or(0) % SHARDS
}

/// The pending index of the end-of-day batch, kept in the entities table.
pub struct PendingIndex<'a> {
    entities: &'a dyn EntityStore,
}

impl<'a> PendingIndex<'a> {
    pub fn new(entities: &'a dyn EntityStore) -> Self {
        Self { entities }
    }

    /// The index entity of one instance, kind and shard.
    fn document(
        &self,
        instance: &InstanceName,
        kind: vinesos::Entity,
        shard: u32,
    ) -> Result<EntityDocument<'a>, DependencyError> {
        EntityDocument::new(
            self.entities,
            vinesos::NAME.as_str(),
            instance,
            INDEX_KIND,
            format!("{}.{shard:02}", kind.kind()),
            &format!(
                "{}:{instance}:{}:index",
                vinesos::NAME,
                JobKind::PartnerCatalog.name()
            ),
        )
    }

    /// Notes that revision `revision` of the partner's `kind` `id` waits
    /// for the end-of-day batch (a lower one already noted is raised).
    pub async fn add(
        &self,
        instance: &InstanceName,
        kind: vinesos::Entity,
        id: &str,
        revision: u64,
    ) -> Result<(), DependencyError> {
        self.document(instance, kind, shard_of(id))?
            .change(|state: &mut IndexState| {
                let entry = state.pending.entry(id.to_owned()).or_default();
                if *entry >= revision {
                    return false;
                }
                *entry = revision;
                true
            })
            .await
            .map(drop)
    }

    /// The entries of one shard.
    pub async fn shard(
        &self,
        instance: &InstanceName,
        kind: vinesos::Entity,
        shard: u32,
    ) -> Result<BTreeMap<String, u64>, DependencyError> {
        Ok(self
            .document(instance, kind, shard)?
            .read::<IndexState>()
            .await?
            .pending)
    }

    /// Every entry of `kind` for `instance` (for operators and tests).
    pub async fn all(
        &self,
        instance: &InstanceName,
        kind: vinesos::Entity,
    ) -> Result<BTreeMap<String, u64>, DependencyError> {
        let mut all = BTreeMap::new();
        for shard in 0..SHARDS {
            all.extend(self.shard(instance, kind, shard).await?);
        }
        Ok(all)
    }

    /// Removes the entries of `applied` (partner id -> revision applied)
    /// whose pending revision is no newer than what was applied.
    pub async fn remove(
        &self,
        instance: &InstanceName,
        kind: vinesos::Entity,
        shard: u32,
        applied: &BTreeMap<String, u64>,
    ) -> Result<(), DependencyError> {
        self.document(instance, kind, shard)?
            .change(|state: &mut IndexState| {
                let before = state.pending.len();
                state
                    .pending
                    .retain(|id, pending| applied.get(id).is_none_or(|done| *pending > *done));
                state.pending.len() != before
            })
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::tests::demo;
    use ports::fakes::MemoryEntities;
    use vendors::vinesos::Entity::{Event, Product};

    #[tokio::test]
    async fn an_entry_is_raised_never_lowered_and_removed_only_up_to_the_revision_applied() {
        let entities = MemoryEntities::default();
        let index = PendingIndex::new(&entities);
        index.add(&demo(), Product, "P-1", 2).await.unwrap();
        index.add(&demo(), Product, "P-1", 1).await.unwrap();
        assert_eq!(
            index.all(&demo(), Product).await.unwrap(),
            BTreeMap::from([("P-1".to_owned(), 2)])
        );
        let shard = shard_of("P-1");
        // Revision 1 applied while 2 arrived: 2 stays.
        let applied = BTreeMap::from([("P-1".to_owned(), 1)]);
        index
            .remove(&demo(), Product, shard, &applied)
            .await
            .unwrap();
        assert_eq!(index.all(&demo(), Product).await.unwrap().len(), 1);
        let applied = BTreeMap::from([("P-1".to_owned(), 2)]);
        index
            .remove(&demo(), Product, shard, &applied)
            .await
            .unwrap();
        assert!(index.all(&demo(), Product).await.unwrap().is_empty());
        assert!(
            index.all(&demo(), Event).await.unwrap().is_empty(),
            "kinds have their own index"
        );
    }

    #[tokio::test]
    async fn a_concurrent_write_of_the_index_is_not_lost_the_loser_writes_again_on_what_won() {
        let entities = ports::fakes::RacedEntities::new(r#"{"pending":{"P-other":1}}"#);
        let index = PendingIndex::new(&entities);
        index.add(&demo(), Product, "P-mine", 3).await.unwrap();
        assert_eq!(
            index.all(&demo(), Product).await.unwrap(),
            BTreeMap::from([("P-mine".to_owned(), 3), ("P-other".to_owned(), 1)])
        );
    }

    #[test]
    fn only_products_and_events_wait_for_the_end_of_day_and_ids_spread_over_every_shard() {
        assert_eq!(batched("vos_product"), Some(Product));
        assert_eq!(batched("vos_event"), Some(Event));
        for kind in [
            "vos_customer",
            "vos_order",
            "vos_inventory",
            "vos_reward",
            "product",
        ] {
            assert_eq!(batched(kind), None, "{kind} applies at once");
        }
        let used: std::collections::BTreeSet<u32> =
            (0..400).map(|n| shard_of(&format!("P-{n}"))).collect();
        assert_eq!(used.len() as u32, SHARDS);
    }
}
