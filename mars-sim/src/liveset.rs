//! A set of node indices with O(1) insert, remove and uniform random pick,
//! in a deterministic order (the order of operations, never a hash order).

use crate::rng::SimRng;

const ABSENT: u32 = u32::MAX;

/// Node indices, for picking a random live node quickly.
#[derive(Debug, Clone, Default)]
pub struct LiveSet {
    members: Vec<u32>,
    pos: Vec<u32>,
}

impl LiveSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `i` (no-op when present).
    pub fn insert(&mut self, i: u32) {
        let iu = i as usize;
        if self.pos.len() <= iu {
            self.pos.resize(iu + 1, ABSENT);
        }
        if self.pos[iu] != ABSENT {
            return;
        }
        self.pos[iu] = self.members.len() as u32;
        self.members.push(i);
    }

    /// Removes `i` (no-op when absent).
    pub fn remove(&mut self, i: u32) {
        let Some(&p) = self.pos.get(i as usize) else {
            return;
        };
        if p == ABSENT {
            return;
        }
        let last = self.members.len() - 1;
        self.members.swap(p as usize, last);
        let moved = self.members[p as usize];
        self.pos[moved as usize] = p;
        self.members.pop();
        self.pos[i as usize] = ABSENT;
    }

    /// Whether `i` is in the set.
    pub fn contains(&self, i: u32) -> bool {
        self.pos.get(i as usize).is_some_and(|&p| p != ABSENT)
    }

    /// Members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// A uniformly random member.
    pub fn pick(&self, rng: &mut SimRng) -> Option<u32> {
        if self.members.is_empty() {
            return None;
        }
        Some(self.members[rng.index(self.members.len())])
    }

    /// The members, in a deterministic order.
    pub fn members(&self) -> &[u32] {
        &self.members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_pick() {
        let mut s = LiveSet::new();
        for i in 0..10 {
            s.insert(i);
        }
        s.insert(3);
        assert_eq!(s.len(), 10);
        s.remove(3);
        s.remove(3);
        s.remove(99);
        assert_eq!(s.len(), 9);
        assert!(!s.contains(3));
        let mut rng = SimRng::new(1);
        for _ in 0..100 {
            let p = s.pick(&mut rng).unwrap();
            assert!(p != 3 && p < 10);
        }
        let mut all: Vec<u32> = s.members().to_vec();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 4, 5, 6, 7, 8, 9]);
    }
}
