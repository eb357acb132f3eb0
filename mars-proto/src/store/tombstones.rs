//! Revocations held in the store, indexed by what they revoke, so a revoked
//! descriptor that arrives again (late gossip, a replay) is refused instead
//! of coming back.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use crate::hash::Hash;
use crate::identity::Identity;

/// One entry per stored `core/revocation` descriptor. Bounded by the store
/// itself: an entry lives exactly as long as its revocation is held.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tombstones {
    /// Revocation id → (target id, revoking publisher).
    by_revocation: BTreeMap<Hash, (Hash, Identity)>,
    /// (target id, revoking publisher) → the revocations naming it.
    by_target: BTreeMap<(Hash, Identity), BTreeSet<Hash>>,
}

impl Tombstones {
    /// Records that revocation `revocation` by `publisher` names `target`.
    pub(crate) fn add(&mut self, revocation: Hash, target: Hash, publisher: Identity) {
        self.forget(&revocation);
        self.by_revocation.insert(revocation, (target, publisher));
        self.by_target
            .entry((target, publisher))
            .or_default()
            .insert(revocation);
    }

    /// Forgets the revocation with this id (a no-op for any other id).
    pub(crate) fn forget(&mut self, revocation: &Hash) {
        let Some((target, publisher)) = self.by_revocation.remove(revocation) else {
            return;
        };
        if let Entry::Occupied(mut e) = self.by_target.entry((target, publisher)) {
            e.get_mut().remove(revocation);
            if e.get().is_empty() {
                e.remove();
            }
        }
    }

    /// A held revocation by `publisher` naming `target`, if any.
    pub(crate) fn revoked(&self, target: &Hash, publisher: &Identity) -> Option<Hash> {
        self.by_target
            .get(&(*target, *publisher))
            .and_then(|revs| revs.first().copied())
    }

    /// Every (revocation id, target, publisher) held, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Hash, &(Hash, Identity))> {
        self.by_revocation.iter()
    }

    /// Checks that the two maps agree.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let n: usize = self.by_target.values().map(BTreeSet::len).sum();
        if n != self.by_revocation.len() || self.by_target.values().any(BTreeSet::is_empty) {
            return Err("tombstone maps disagree".into());
        }
        for (rev, key) in &self.by_revocation {
            if !self.by_target.get(key).is_some_and(|s| s.contains(rev)) {
                return Err(format!("tombstone {rev} missing from the target index"));
            }
        }
        Ok(())
    }
}
