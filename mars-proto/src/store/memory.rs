//! The in-memory storage engine.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{DescriptorStore, KeyScan, StoreError, stored_size};
use crate::descriptor::ValidDescriptor;
use crate::hash::Hash;
use crate::identity::Identity;
use crate::time::Timestamp;
use crate::wire::Filters;

/// Entries at one routing key, ordered by (descriptor timestamp, id) and
/// walked backwards, so the newest come first and a `min_timestamp`
/// filter is where the walk stops.
type Recency = BTreeSet<(Timestamp, Hash)>;

/// One routing key's indexes: everything, and the same entries split by
/// publisher and by schema so that a filtered query walks only its share.
#[derive(Debug, Clone, Default)]
struct KeyIndex {
    all: Recency,
    by_publisher: BTreeMap<Identity, Recency>,
    by_schema: BTreeMap<Hash, Recency>,
}

/// A [`DescriptorStore`] in memory: ordered maps only, so every walk is
/// deterministic.
///
/// Indexes: id → descriptor; routing key → ids newest first (also per
/// publisher and per schema); (publisher, schema) → topic → id for
/// replacement; (expiry, id) for sweeps and eviction.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    by_id: BTreeMap<Hash, Arc<ValidDescriptor>>,
    by_key: BTreeMap<Hash, KeyIndex>,
    by_slot: BTreeMap<(Identity, Hash), BTreeMap<String, Hash>>,
    by_expiry: BTreeSet<(Timestamp, Hash)>,
    bytes: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks that every index agrees with the id map and that the byte
    /// total is right, naming the first disagreement. O(n log n): for tests
    /// and debugging, not for the hot path.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut bytes = 0u64;
        let mut key_entries = 0usize;
        for (id, d) in &self.by_id {
            if *id != d.id {
                return Err(format!("id map key {id} holds descriptor {}", d.id));
            }
            bytes += stored_size(d);
            let entry = (d.timestamp, d.id);
            for (i, key) in d.routing_keys.iter().enumerate() {
                if d.routing_keys[..i].contains(key) {
                    continue;
                }
                key_entries += 1;
                let idx = self
                    .by_key
                    .get(key)
                    .ok_or_else(|| format!("{id}: routing key {key} has no index"))?;
                if !idx.all.contains(&entry) {
                    return Err(format!("{id}: missing from routing key {key}"));
                }
                if !idx
                    .by_publisher
                    .get(&d.publisher)
                    .is_some_and(|s| s.contains(&entry))
                {
                    return Err(format!("{id}: missing from publisher index of {key}"));
                }
                if !idx
                    .by_schema
                    .get(&d.schema_hash)
                    .is_some_and(|s| s.contains(&entry))
                {
                    return Err(format!("{id}: missing from schema index of {key}"));
                }
            }
            let slot = self
                .by_slot
                .get(&(d.publisher, d.schema_hash))
                .and_then(|topics| topics.get(&d.topic));
            if slot != Some(id) {
                return Err(format!("{id}: replacement key maps to {slot:?}"));
            }
            if !self.by_expiry.contains(&(d.expires_at(), d.id)) {
                return Err(format!("{id}: missing from the expiry index"));
            }
        }
        if bytes != self.bytes {
            return Err(format!(
                "byte total {} but entries sum to {bytes}",
                self.bytes
            ));
        }
        if self.by_expiry.len() != self.by_id.len() {
            return Err(format!(
                "{} expiry entries for {} descriptors",
                self.by_expiry.len(),
                self.by_id.len()
            ));
        }
        let slots: usize = self.by_slot.values().map(BTreeMap::len).sum();
        if slots != self.by_id.len() || self.by_slot.values().any(BTreeMap::is_empty) {
            return Err(format!(
                "{slots} replacement keys for {} descriptors",
                self.by_id.len()
            ));
        }
        let mut indexed = 0usize;
        for (key, idx) in &self.by_key {
            if idx.all.is_empty() {
                return Err(format!("routing key {key} has an empty index"));
            }
            indexed += idx.all.len();
            for split in [
                idx.by_publisher.values().collect::<Vec<_>>(),
                idx.by_schema.values().collect::<Vec<_>>(),
            ] {
                let n: usize = split.iter().map(|s| s.len()).sum();
                if n != idx.all.len() || split.iter().any(|s| s.is_empty()) {
                    return Err(format!(
                        "routing key {key}: split index holds {n} of {} entries",
                        idx.all.len()
                    ));
                }
            }
        }
        if indexed != key_entries {
            return Err(format!(
                "{indexed} routing-key entries for {key_entries} (descriptor, key) pairs"
            ));
        }
        Ok(())
    }
}

/// Removes `entry` from the set under `k`, dropping the set when empty.
fn remove_split<K: Ord + Copy>(map: &mut BTreeMap<K, Recency>, k: &K, entry: &(Timestamp, Hash)) {
    if let Entry::Occupied(mut e) = map.entry(*k) {
        e.get_mut().remove(entry);
        if e.get().is_empty() {
            e.remove();
        }
    }
}

impl MemoryStore {
    /// Removes one descriptor from every index.
    fn remove_one(&mut self, id: &Hash) -> Option<Arc<ValidDescriptor>> {
        let d = self.by_id.remove(id)?;
        let entry = (d.timestamp, d.id);
        for key in &d.routing_keys {
            if let Entry::Occupied(mut e) = self.by_key.entry(*key) {
                let idx = e.get_mut();
                idx.all.remove(&entry);
                remove_split(&mut idx.by_publisher, &d.publisher, &entry);
                remove_split(&mut idx.by_schema, &d.schema_hash, &entry);
                if idx.all.is_empty() {
                    e.remove();
                }
            }
        }
        if let Entry::Occupied(mut e) = self.by_slot.entry((d.publisher, d.schema_hash)) {
            if e.get().get(&d.topic) == Some(id) {
                e.get_mut().remove(&d.topic);
            }
            if e.get().is_empty() {
                e.remove();
            }
        }
        self.by_expiry.remove(&(d.expires_at(), d.id));
        self.bytes = self.bytes.saturating_sub(stored_size(&d));
        Some(d)
    }
}

/// Never fails: memory is bounded by [`Storage`](super::Storage)'s limits,
/// not by the engine.
impl DescriptorStore for MemoryStore {
    fn put(
        &mut self,
        d: Arc<ValidDescriptor>,
        remove: &[Hash],
    ) -> Result<Option<Arc<ValidDescriptor>>, StoreError> {
        for id in remove {
            self.remove_one(id);
        }
        let old_id = self
            .by_slot
            .get(&(d.publisher, d.schema_hash))
            .and_then(|topics| topics.get(&d.topic))
            .copied();
        let old = old_id.and_then(|id| self.remove_one(&id));
        let entry = (d.timestamp, d.id);
        for key in &d.routing_keys {
            let idx = self.by_key.entry(*key).or_default();
            idx.all.insert(entry);
            idx.by_publisher
                .entry(d.publisher)
                .or_default()
                .insert(entry);
            idx.by_schema
                .entry(d.schema_hash)
                .or_default()
                .insert(entry);
        }
        self.by_slot
            .entry((d.publisher, d.schema_hash))
            .or_default()
            .insert(d.topic.clone(), d.id);
        self.by_expiry.insert((d.expires_at(), d.id));
        self.bytes += stored_size(&d);
        self.by_id.insert(d.id, d);
        Ok(old)
    }

    fn remove(&mut self, ids: &[Hash]) -> Result<Vec<Arc<ValidDescriptor>>, StoreError> {
        Ok(ids.iter().filter_map(|id| self.remove_one(id)).collect())
    }

    fn get(&self, id: &Hash) -> Option<Arc<ValidDescriptor>> {
        self.by_id.get(id).cloned()
    }

    fn by_replacement_key(
        &self,
        publisher: &Identity,
        schema_hash: &Hash,
        topic: &str,
    ) -> Option<Arc<ValidDescriptor>> {
        let id = self.by_slot.get(&(*publisher, *schema_hash))?.get(topic)?;
        self.by_id.get(id).cloned()
    }

    fn scan_key(&self, key: &Hash, filters: &Filters, now: Timestamp, limit: usize) -> KeyScan {
        let mut scan = KeyScan::default();
        let Some(idx) = self.by_key.get(key) else {
            return scan;
        };
        // The narrowest index the filters allow; the rest is checked per entry.
        let entries = match (&filters.publisher, &filters.schema_hash) {
            (Some(p), _) => idx.by_publisher.get(p),
            (None, Some(s)) => idx.by_schema.get(s),
            (None, None) => Some(&idx.all),
        };
        let Some(entries) = entries else {
            return scan;
        };
        for (timestamp, id) in entries.iter().rev() {
            if scan.descriptors.len() >= limit {
                break;
            }
            if filters.min_timestamp.is_some_and(|min| *timestamp < min) {
                break;
            }
            scan.examined += 1;
            let Some(d) = self.by_id.get(id) else {
                continue;
            };
            if d.is_expired(now) {
                continue;
            }
            if filters.schema_hash.is_some_and(|s| s != d.schema_hash) {
                continue;
            }
            scan.descriptors.push(Arc::clone(d));
        }
        scan
    }

    fn count_at(&self, key: &Hash) -> usize {
        self.by_key.get(key).map_or(0, |idx| idx.all.len())
    }

    fn soonest_expiring(&self) -> Option<Arc<ValidDescriptor>> {
        let (_, id) = self.by_expiry.first()?;
        self.by_id.get(id).cloned()
    }

    fn expiring_by(&self, deadline: Timestamp, limit: usize) -> Vec<Arc<ValidDescriptor>> {
        self.by_expiry
            .iter()
            .take_while(|(expires_at, _)| *expires_at <= deadline)
            .take(limit)
            .filter_map(|(_, id)| self.by_id.get(id).cloned())
            .collect()
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn total_bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DescriptorBuilder, Keypair, schema};

    fn now() -> Timestamp {
        Timestamp::from_secs(1_700_000_000)
    }

    fn desc(
        secret: u8,
        topic: &str,
        seq: u64,
        ts_offset: u64,
        keys: &[&str],
    ) -> Arc<ValidDescriptor> {
        let key = Keypair::from_secret_bytes(&[secret; 32]);
        let ts = Timestamp::from_secs(1_700_000_000 - ts_offset);
        let d = DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), ts)
            .topic(topic)
            .sequence(seq)
            .payload(vec![secret; 10])
            .routing_keys(keys.iter().map(|k| schema::routing_key(k)).collect())
            .sign(&key)
            .unwrap();
        Arc::new(d.validate(now()).unwrap())
    }

    #[test]
    fn put_replaces_by_replacement_key_and_remove_cleans_every_index() {
        let mut s = MemoryStore::new();
        let a1 = desc(1, "t", 1, 10, &["a", "b"]);
        let a2 = desc(1, "t", 2, 5, &["b", "c"]);
        assert!(s.put(a1.clone(), &[]).unwrap().is_none());
        s.check_invariants().unwrap();
        assert_eq!(s.put(a2.clone(), &[]).unwrap(), Some(a1.clone()));
        s.check_invariants().unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.count_at(&schema::routing_key("a")), 0);
        assert_eq!(s.count_at(&schema::routing_key("c")), 1);
        assert_eq!(s.total_bytes(), stored_size(&a2));
        assert_eq!(s.remove(&[a2.id, a2.id]).unwrap(), vec![a2]);
        s.check_invariants().unwrap();
        assert!(s.is_empty());
        assert_eq!(s.total_bytes(), 0);
        assert!(s.by_key.is_empty() && s.by_slot.is_empty());
    }

    #[test]
    fn duplicate_routing_keys_are_indexed_once() {
        let mut s = MemoryStore::new();
        let d = desc(2, "t", 1, 0, &["a", "a"]);
        s.put(d.clone(), &[]).unwrap();
        s.check_invariants().unwrap();
        assert_eq!(s.count_at(&schema::routing_key("a")), 1);
        s.remove(&[d.id]).unwrap();
        s.check_invariants().unwrap();
        assert!(s.by_key.is_empty());
    }

    #[test]
    fn scan_is_newest_first_and_stops_at_min_timestamp() {
        let mut s = MemoryStore::new();
        for i in 0..5u8 {
            s.put(desc(10 + i, "t", 1, u64::from(i) * 10, &["k"]), &[])
                .unwrap();
        }
        let key = schema::routing_key("k");
        let all = s.scan_key(&key, &Filters::default(), now(), 10);
        let ts: Vec<_> = all.descriptors.iter().map(|d| d.timestamp).collect();
        let mut sorted = ts.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(ts, sorted);
        let recent = Filters {
            min_timestamp: Some(Timestamp::from_secs(1_700_000_000 - 15)),
            ..Filters::default()
        };
        let scan = s.scan_key(&key, &recent, now(), 10);
        assert_eq!(scan.descriptors.len(), 2);
        assert_eq!(scan.examined, 2, "the walk stops at the first older entry");
    }

    #[test]
    fn expiring_by_is_inclusive_and_ordered() {
        let mut s = MemoryStore::new();
        let a = desc(1, "t", 1, 0, &["k"]);
        let b = desc(2, "t", 1, 100, &["k"]);
        s.put(a.clone(), &[]).unwrap();
        s.put(b.clone(), &[]).unwrap();
        assert_eq!(s.soonest_expiring(), Some(b.clone()));
        assert_eq!(s.expiring_by(b.expires_at(), 10), vec![b.clone()]);
        assert_eq!(s.expiring_by(a.expires_at(), 10), vec![b, a]);
        assert!(s.expiring_by(Timestamp::ZERO, 10).is_empty());
    }

    #[test]
    fn put_removes_the_listed_ids_first() {
        let mut s = MemoryStore::new();
        let a = desc(1, "t", 1, 0, &["k"]);
        let b = desc(2, "t", 1, 0, &["k"]);
        let a2 = desc(1, "t", 2, 0, &["k"]);
        s.put(a.clone(), &[]).unwrap();
        s.put(b.clone(), &[]).unwrap();
        // `b` is listed, `a` is replaced: only the replaced one is returned.
        assert_eq!(s.put(a2.clone(), &[b.id]).unwrap(), Some(a));
        s.check_invariants().unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(&a2.id), Some(a2));
    }
}
