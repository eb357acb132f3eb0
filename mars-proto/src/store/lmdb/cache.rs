//! A bounded memo of decoded descriptors, so that hot FIND_VALUE answers
//! are served from shared `Arc`s instead of being decoded (and their id
//! rehashed) on every query.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::descriptor::ValidDescriptor;
use crate::hash::Hash;

/// Least recently used first out, by a use counter: ordered maps only, so
/// which entry leaves is a function of the calls made, never of hashing.
///
/// Coherence is the owner's job: it inserts only what is committed and
/// removes what a committed write took out.
#[derive(Debug, Default)]
pub(super) struct DecodedCache {
    capacity: usize,
    tick: u64,
    by_id: BTreeMap<Hash, (u64, Arc<ValidDescriptor>)>,
    by_use: BTreeMap<u64, Hash>,
    hits: u64,
    misses: u64,
}

impl DecodedCache {
    /// A memo of at most `capacity` descriptors (0 disables it).
    pub(super) fn new(capacity: usize) -> Self {
        DecodedCache {
            capacity,
            ..Self::default()
        }
    }

    /// The descriptor with this id, if remembered (it becomes the most
    /// recently used).
    pub(super) fn get(&mut self, id: &Hash) -> Option<Arc<ValidDescriptor>> {
        let tick = self.next_tick();
        let Some((used, d)) = self.by_id.get_mut(id) else {
            self.misses += 1;
            return None;
        };
        self.hits += 1;
        self.by_use.remove(used);
        *used = tick;
        self.by_use.insert(tick, *id);
        Some(Arc::clone(d))
    }

    /// Remembers `d`, forgetting the least recently used past capacity.
    pub(super) fn insert(&mut self, d: Arc<ValidDescriptor>) {
        if self.capacity == 0 {
            return;
        }
        let tick = self.next_tick();
        let id = d.id;
        if let Some((old, _)) = self.by_id.insert(id, (tick, d)) {
            self.by_use.remove(&old);
        }
        self.by_use.insert(tick, id);
        while self.by_id.len() > self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.by_id.remove(&oldest);
        }
    }

    /// Forgets the descriptor with this id.
    pub(super) fn remove(&mut self, id: &Hash) {
        if let Some((used, _)) = self.by_id.remove(id) {
            self.by_use.remove(&used);
        }
    }

    /// Forgets everything.
    pub(super) fn clear(&mut self) {
        self.by_id.clear();
        self.by_use.clear();
    }

    /// (hits, misses) since the store was opened.
    pub(super) fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Every descriptor held, in id order (for consistency checks).
    pub(super) fn entries(&self) -> impl Iterator<Item = &Arc<ValidDescriptor>> {
        self.by_id.values().map(|(_, d)| d)
    }

    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}
