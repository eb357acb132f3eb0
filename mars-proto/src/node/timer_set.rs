//! Deadlines ordered by time, with the soonest kept at hand.
//!
//! A driver calls [`Node::poll_timeout`](super::Node::poll_timeout) after
//! every input, and it reads the soonest entry of each deadline set. In a
//! B-tree that is a walk from the root to a leaf elsewhere in memory: in
//! the simulator, where thousands of other nodes run between two inputs of
//! one node, a cache miss or two per set, every time. The soonest entry is
//! therefore kept beside the tree and only looked up again when it leaves.

use std::collections::BTreeSet;

use crate::time::Timestamp;

/// A set of `(deadline, key)` that answers [`first`](Self::first) without
/// touching the tree.
#[derive(Debug, Clone)]
pub(super) struct TimerSet<K> {
    entries: BTreeSet<(Timestamp, K)>,
    /// Always `entries.first()`.
    first: Option<(Timestamp, K)>,
}

impl<K: Ord + Copy> TimerSet<K> {
    pub(super) fn new() -> Self {
        TimerSet {
            entries: BTreeSet::new(),
            first: None,
        }
    }

    /// The soonest entry.
    pub(super) fn first(&self) -> Option<&(Timestamp, K)> {
        self.first.as_ref()
    }

    pub(super) fn insert(&mut self, entry: (Timestamp, K)) {
        if self.entries.insert(entry) && self.first.is_none_or(|f| entry < f) {
            self.first = Some(entry);
        }
    }

    /// Removes `entry`; whether it was there.
    pub(super) fn remove(&mut self, entry: &(Timestamp, K)) -> bool {
        let removed = self.entries.remove(entry);
        if removed && self.first.as_ref() == Some(entry) {
            self.first = self.entries.first().copied();
        }
        removed
    }

    /// Removes and returns the soonest entry.
    pub(super) fn pop_first(&mut self) -> Option<(Timestamp, K)> {
        let popped = self.entries.pop_first();
        self.first = self.entries.first().copied();
        popped
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8),
        Remove(u8, u8),
        PopFirst,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..16, 0u8..4).prop_map(|(t, k)| Op::Insert(t, k)),
            (0u8..16, 0u8..4).prop_map(|(t, k)| Op::Remove(t, k)),
            Just(Op::PopFirst),
        ]
    }

    proptest! {
        /// Any sequence of operations gives the answers a plain B-tree
        /// gives, and the kept soonest entry is always the tree's.
        #[test]
        fn behaves_as_a_btreeset(ops in prop::collection::vec(op(), 0..200)) {
            let mut timers = TimerSet::new();
            let mut model = BTreeSet::new();
            let at = |t: u8| Timestamp::from_secs(u64::from(t));
            for op in ops {
                match op {
                    Op::Insert(t, k) => {
                        timers.insert((at(t), k));
                        model.insert((at(t), k));
                    }
                    Op::Remove(t, k) => {
                        prop_assert_eq!(timers.remove(&(at(t), k)), model.remove(&(at(t), k)));
                    }
                    Op::PopFirst => prop_assert_eq!(timers.pop_first(), model.pop_first()),
                }
                prop_assert_eq!(timers.first(), model.first());
                prop_assert_eq!(timers.first(), timers.entries.first());
            }
        }
    }
}
