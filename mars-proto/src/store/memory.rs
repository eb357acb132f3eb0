//! The in-memory storage engine.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{DescriptorStore, KeyScan, StoreError, stored_size};
use crate::descriptor::ValidDescriptor;
use crate::hash::Hash;
use crate::identity::Identity;
use crate::time::Timestamp;
use crate::wire::Filters;

/// An index entry: a descriptor's timestamp and id. Sets of entries are
/// walked backwards, so the newest come first and a `min_timestamp` filter
/// is where the walk stops.
type IndexEntry = (Timestamp, Hash);

/// Entries at one routing key, newest last.
type Recency = BTreeSet<IndexEntry>;

/// One publisher's (or one schema's) entries at one routing key.
///
/// Most publishers hold a single descriptor at a key, so a single entry is
/// kept inline: no set of its own (a B-tree leaf allocated per publisher
/// and key) until a second one arrives.
#[derive(Debug, Clone)]
enum Split {
    One(IndexEntry),
    Many(Recency),
}

impl Split {
    fn insert(&mut self, entry: IndexEntry) {
        match self {
            Split::One(e) if *e == entry => {}
            Split::One(e) => *self = Split::Many(BTreeSet::from([*e, entry])),
            Split::Many(set) => {
                set.insert(entry);
            }
        }
    }

    /// Removes `entry`; true when nothing is left.
    fn remove(&mut self, entry: &IndexEntry) -> bool {
        let last = match self {
            Split::One(e) => return e == entry,
            Split::Many(set) => {
                set.remove(entry);
                match set.len() {
                    0 => return true,
                    1 => set.pop_first(),
                    _ => None,
                }
            }
        };
        if let Some(last) = last {
            *self = Split::One(last);
        }
        false
    }

    /// Swaps `old` for `new`: in place for a lone entry.
    fn replace(&mut self, old: &IndexEntry, new: IndexEntry) {
        match self {
            Split::One(e) if e == old => *e = new,
            Split::One(_) => self.insert(new),
            Split::Many(set) => {
                set.remove(old);
                set.insert(new);
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Split::One(_) => 1,
            Split::Many(set) => set.len(),
        }
    }

    fn contains(&self, entry: &IndexEntry) -> bool {
        match self {
            Split::One(e) => e == entry,
            Split::Many(set) => set.contains(entry),
        }
    }

    /// The entries, newest first.
    fn newest_first(&self) -> NewestFirst<'_> {
        match self {
            Split::One(e) => NewestFirst::One(Some(e)),
            Split::Many(set) => NewestFirst::Many(set.iter().rev()),
        }
    }
}

/// The entries a scan walks, newest first, whichever index they come from.
enum NewestFirst<'a> {
    One(Option<&'a IndexEntry>),
    Many(std::iter::Rev<std::collections::btree_set::Iter<'a, IndexEntry>>),
}

impl<'a> Iterator for NewestFirst<'a> {
    type Item = &'a IndexEntry;
    fn next(&mut self) -> Option<&'a IndexEntry> {
        match self {
            NewestFirst::One(e) => e.take(),
            NewestFirst::Many(it) => it.next(),
        }
    }
}

/// One routing key's indexes: everything, and the same entries split by
/// publisher and by schema so that a filtered query walks only its share.
#[derive(Debug, Clone, Default)]
struct KeyIndex {
    all: Recency,
    by_publisher: BTreeMap<Identity, Split>,
    by_schema: BTreeMap<Hash, Split>,
}

/// Adds `entry` under `k`.
fn insert_split<K: Ord>(map: &mut BTreeMap<K, Split>, k: K, entry: IndexEntry) {
    match map.entry(k) {
        Entry::Vacant(v) => {
            v.insert(Split::One(entry));
        }
        Entry::Occupied(mut o) => o.get_mut().insert(entry),
    }
}

/// Swaps `old` for `new` under `k`.
fn replace_split<K: Ord>(map: &mut BTreeMap<K, Split>, k: K, old: &IndexEntry, new: IndexEntry) {
    match map.entry(k) {
        Entry::Occupied(mut o) => o.get_mut().replace(old, new),
        Entry::Vacant(v) => {
            v.insert(Split::One(new));
        }
    }
}

/// Removes `entry` from under `k`, dropping the split when empty.
fn remove_split<K: Ord + Copy>(map: &mut BTreeMap<K, Split>, k: &K, entry: &IndexEntry) {
    if let Entry::Occupied(mut e) = map.entry(*k) {
        if e.get_mut().remove(entry) {
            e.remove();
        }
    }
}

/// A replacement key (publisher, schema, topic), borrowed: the form
/// [`MemoryStore::by_replacement_key`] looks up by, so the slot index can
/// be keyed by the stored descriptor itself, without a copy of its topic.
trait SlotKey {
    fn parts(&self) -> (&Identity, &Hash, &str);
}

impl SlotKey for (&Identity, &Hash, &str) {
    fn parts(&self) -> (&Identity, &Hash, &str) {
        (self.0, self.1, self.2)
    }
}

/// A stored descriptor, ordered by its replacement key.
#[derive(Debug, Clone)]
struct Slot(Arc<ValidDescriptor>);

impl SlotKey for Slot {
    fn parts(&self) -> (&Identity, &Hash, &str) {
        (&self.0.publisher, &self.0.schema_hash, &self.0.topic)
    }
}

impl<'a> Borrow<dyn SlotKey + 'a> for Slot {
    fn borrow(&self) -> &(dyn SlotKey + 'a) {
        self
    }
}

impl PartialEq for dyn SlotKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}
impl Eq for dyn SlotKey + '_ {}
impl PartialOrd for dyn SlotKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for dyn SlotKey + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

// `Slot` orders exactly as its borrowed form, as `Borrow` requires.
impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}
impl Eq for Slot {}
impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Slot {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

/// A [`DescriptorStore`] in memory: ordered maps only, so every walk is
/// deterministic.
///
/// Indexes: id → descriptor; routing key → entries newest first (also per
/// publisher and per schema, a lone entry held inline); replacement key →
/// descriptor (keyed by the descriptor itself, so its topic is not copied);
/// (expiry, id) for sweeps and eviction. A new descriptor with three
/// routing keys costs about a dozen B-tree inserts and no allocation
/// besides the trees' own nodes.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    by_id: BTreeMap<Hash, Arc<ValidDescriptor>>,
    by_key: BTreeMap<Hash, KeyIndex>,
    by_slot: BTreeSet<Slot>,
    by_expiry: BTreeSet<(Timestamp, Hash)>,
    bytes: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The slot entry for a replacement key.
    fn slot(&self, publisher: &Identity, schema_hash: &Hash, topic: &str) -> Option<&Slot> {
        let probe = (publisher, schema_hash, topic);
        self.by_slot.get(&probe as &dyn SlotKey)
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
            let slot = self.slot(&d.publisher, &d.schema_hash, &d.topic);
            if !slot.is_some_and(|s| Arc::ptr_eq(&s.0, d)) {
                let held = slot.map(|s| s.0.id);
                return Err(format!("{id}: replacement key maps to {held:?}"));
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
        if self.by_slot.len() != self.by_id.len() {
            return Err(format!(
                "{} replacement keys for {} descriptors",
                self.by_slot.len(),
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
                idx.by_publisher.values().collect::<Vec<&Split>>(),
                idx.by_schema.values().collect::<Vec<&Split>>(),
            ] {
                let n: usize = split.iter().map(|s| s.len()).sum();
                let malformed = split
                    .iter()
                    .any(|s| matches!(s, Split::Many(set) if set.len() < 2));
                if n != idx.all.len() || malformed {
                    return Err(format!(
                        "routing key {key}: split index holds {n} of {} entries{}",
                        idx.all.len(),
                        if malformed {
                            " (a set of fewer than two)"
                        } else {
                            ""
                        }
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

impl MemoryStore {
    /// Adds `d`'s `entry` at routing key `key` (once, however often the
    /// key is repeated).
    fn index_at(&mut self, key: &Hash, d: &ValidDescriptor, entry: IndexEntry) {
        let idx = self.by_key.entry(*key).or_default();
        if !idx.all.insert(entry) {
            // A repeated routing key, already indexed.
            return;
        }
        insert_split(&mut idx.by_publisher, d.publisher, entry);
        insert_split(&mut idx.by_schema, d.schema_hash, entry);
    }

    /// Removes `d`'s `entry` from routing key `key`, and the key's index
    /// when it was the last.
    fn unindex_at(&mut self, key: &Hash, d: &ValidDescriptor, entry: &IndexEntry) {
        if let Entry::Occupied(mut e) = self.by_key.entry(*key) {
            let idx = e.get_mut();
            if !idx.all.remove(entry) {
                // A repeated routing key, already done.
                return;
            }
            remove_split(&mut idx.by_publisher, &d.publisher, entry);
            remove_split(&mut idx.by_schema, &d.schema_hash, entry);
            if idx.all.is_empty() {
                e.remove();
            }
        }
    }

    /// Swaps `old` for `new` at routing key `key`, where both belong to
    /// `d`'s replacement key (same publisher, same schema).
    fn reindex_at(&mut self, key: &Hash, d: &ValidDescriptor, old: &IndexEntry, new: IndexEntry) {
        let Some(idx) = self.by_key.get_mut(key) else {
            self.index_at(key, d, new);
            return;
        };
        if !idx.all.remove(old) {
            // A repeated routing key, already swapped (or never indexed).
            self.index_at(key, d, new);
            return;
        }
        idx.all.insert(new);
        replace_split(&mut idx.by_publisher, d.publisher, old, new);
        replace_split(&mut idx.by_schema, d.schema_hash, old, new);
    }

    /// Removes one descriptor from every index.
    fn remove_one(&mut self, id: &Hash) -> Option<Arc<ValidDescriptor>> {
        let d = self.by_id.remove(id)?;
        let entry = (d.timestamp, d.id);
        for key in &d.routing_keys {
            self.unindex_at(key, &d, &entry);
        }
        let probe = (&d.publisher, &d.schema_hash, d.topic.as_str());
        if let Some(held) = self.by_slot.take(&probe as &dyn SlotKey) {
            if held.0.id != *id {
                // Not this descriptor's (cannot happen while the indexes
                // agree): put it back.
                self.by_slot.insert(held);
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
        // The slot changes hands in one step: whatever held `d`'s
        // replacement key comes back.
        let old = self.by_slot.replace(Slot(Arc::clone(&d))).map(|s| s.0);
        let entry = (d.timestamp, d.id);
        match &old {
            None => {
                for key in &d.routing_keys {
                    self.index_at(key, &d, entry);
                }
            }
            Some(old) => {
                // A republication, typically at the same keys: entries are
                // swapped in place rather than unindexed and indexed again.
                self.by_id.remove(&old.id);
                self.by_expiry.remove(&(old.expires_at(), old.id));
                self.bytes = self.bytes.saturating_sub(stored_size(old));
                let old_entry = (old.timestamp, old.id);
                for key in &old.routing_keys {
                    if !d.routing_keys.contains(key) {
                        self.unindex_at(key, old, &old_entry);
                    }
                }
                for key in &d.routing_keys {
                    if old.routing_keys.contains(key) {
                        self.reindex_at(key, &d, &old_entry, entry);
                    } else {
                        self.index_at(key, &d, entry);
                    }
                }
            }
        }
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
        self.slot(publisher, schema_hash, topic)
            .map(|s| Arc::clone(&s.0))
    }

    fn scan_key(&self, key: &Hash, filters: &Filters, now: Timestamp, limit: usize) -> KeyScan {
        let mut scan = KeyScan::default();
        let Some(idx) = self.by_key.get(key) else {
            return scan;
        };
        // The narrowest index the filters allow; the rest is checked per entry.
        let entries = match (&filters.publisher, &filters.schema_hash) {
            (Some(p), _) => idx.by_publisher.get(p).map(Split::newest_first),
            (None, Some(s)) => idx.by_schema.get(s).map(Split::newest_first),
            (None, None) => Some(NewestFirst::Many(idx.all.iter().rev())),
        };
        let Some(entries) = entries else {
            return scan;
        };
        for (timestamp, id) in entries {
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
    fn republications_swap_entries_whatever_their_keys() {
        let mut s = MemoryStore::new();
        let (a, b, c) = (
            schema::routing_key("a"),
            schema::routing_key("b"),
            schema::routing_key("c"),
        );
        let one = desc(3, "one", 1, 30, &["a", "a", "b"]);
        let two = desc(3, "two", 1, 20, &["a"]);
        s.put(one.clone(), &[]).unwrap();
        s.put(two.clone(), &[]).unwrap();
        s.check_invariants().unwrap();
        // Two entries of one publisher at `a`: a split set of its own.
        let by_p = Filters {
            publisher: Some(one.publisher),
            ..Filters::default()
        };
        assert_eq!(s.scan_key(&a, &by_p, now(), 10).descriptors.len(), 2);
        // Republished at other keys (one kept, one dropped, one new,
        // repeated): swapped where shared, moved elsewhere.
        let one2 = desc(3, "one", 2, 10, &["b", "c", "c"]);
        assert_eq!(s.put(one2.clone(), &[]).unwrap(), Some(one));
        s.check_invariants().unwrap();
        assert_eq!((s.count_at(&a), s.count_at(&b), s.count_at(&c)), (1, 1, 1));
        // Republished at the same key: swapped in place.
        let two2 = desc(3, "two", 2, 5, &["a"]);
        assert_eq!(s.put(two2.clone(), &[]).unwrap(), Some(two));
        s.check_invariants().unwrap();
        let scan = s.scan_key(&a, &by_p, now(), 10);
        assert_eq!(scan.descriptors, vec![two2.clone()]);
        // The same descriptor again replaces itself and changes nothing.
        assert_eq!(s.put(two2.clone(), &[]).unwrap(), Some(two2.clone()));
        s.check_invariants().unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.total_bytes(), stored_size(&one2) + stored_size(&two2));
        s.remove(&[one2.id, two2.id]).unwrap();
        s.check_invariants().unwrap();
        assert!(s.by_key.is_empty() && s.by_slot.is_empty() && s.by_expiry.is_empty());
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
