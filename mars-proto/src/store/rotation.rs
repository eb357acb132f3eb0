//! Key-rotation bookkeeping (WIRE.md, "DHT constants"): per old identity,
//! rotation_seq must strictly increase; two rotations with the same
//! rotation_seq to different new keys are a fork, and the identity that
//! signed both is compromised.

use std::collections::{BTreeMap, BTreeSet};

use crate::identity::Identity;
use crate::time::Timestamp;

/// What a verified key-rotation payload claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RotationClaim {
    /// The identity being rotated away from.
    pub(crate) old: Identity,
    /// The identity it moves to.
    pub(crate) new: Identity,
    /// Its position in the old identity's rotation history.
    pub(crate) seq: u64,
}

/// How a claim relates to what is recorded for its old identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RotationCheck {
    /// Nothing recorded, or a higher rotation_seq: a new rotation.
    Fresh,
    /// The recorded rotation again (a republish with a new descriptor sequence).
    Repeat,
    /// A lower rotation_seq than recorded.
    Regressed {
        /// The recorded rotation_seq.
        have: u64,
    },
    /// The recorded rotation_seq with a different new key.
    Fork {
        /// The new key recorded first.
        first: Identity,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    seq: u64,
    new: Identity,
    updated: Timestamp,
}

/// Latest rotation per old identity, and the identities found compromised;
/// both bounded, both evicted oldest first (by a deterministic order).
#[derive(Debug, Clone)]
pub(crate) struct Rotations {
    max_records: usize,
    max_compromised: usize,
    records: BTreeMap<Identity, Record>,
    records_by_update: BTreeSet<(Timestamp, Identity)>,
    compromised: BTreeMap<Identity, Timestamp>,
    compromised_by_time: BTreeSet<(Timestamp, Identity)>,
}

impl Rotations {
    pub(crate) fn new(max_records: usize, max_compromised: usize) -> Self {
        Rotations {
            max_records: max_records.max(1),
            max_compromised: max_compromised.max(1),
            records: BTreeMap::new(),
            records_by_update: BTreeSet::new(),
            compromised: BTreeMap::new(),
            compromised_by_time: BTreeSet::new(),
        }
    }

    pub(crate) fn check(&self, claim: &RotationClaim) -> RotationCheck {
        match self.records.get(&claim.old) {
            None => RotationCheck::Fresh,
            Some(r) if claim.seq > r.seq => RotationCheck::Fresh,
            Some(r) if claim.seq < r.seq => RotationCheck::Regressed { have: r.seq },
            Some(r) if claim.new == r.new => RotationCheck::Repeat,
            Some(r) => RotationCheck::Fork { first: r.new },
        }
    }

    /// Records an accepted claim (the caller checked it is not a regression
    /// or a fork).
    pub(crate) fn record(&mut self, claim: &RotationClaim, now: Timestamp) {
        let record = Record {
            seq: claim.seq,
            new: claim.new,
            updated: now,
        };
        if let Some(old) = self.records.insert(claim.old, record) {
            self.records_by_update.remove(&(old.updated, claim.old));
        } else if self.records.len() > self.max_records {
            if let Some((_, oldest)) = self.records_by_update.pop_first() {
                self.records.remove(&oldest);
            }
        }
        self.records_by_update.insert((now, claim.old));
    }

    /// The recorded (rotation_seq, new key) of `old`.
    pub(crate) fn latest(&self, old: &Identity) -> Option<(u64, Identity)> {
        self.records.get(old).map(|r| (r.seq, r.new))
    }

    pub(crate) fn mark_compromised(&mut self, id: Identity, now: Timestamp) {
        if self.compromised.contains_key(&id) {
            return;
        }
        self.compromised.insert(id, now);
        self.compromised_by_time.insert((now, id));
        if self.compromised.len() > self.max_compromised {
            if let Some((_, oldest)) = self.compromised_by_time.pop_first() {
                self.compromised.remove(&oldest);
            }
        }
    }

    pub(crate) fn is_compromised(&self, id: &Identity) -> bool {
        self.compromised.contains_key(id)
    }

    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        if self.records.len() > self.max_records || self.compromised.len() > self.max_compromised {
            return Err(format!(
                "{} rotation records (bound {}), {} compromised (bound {})",
                self.records.len(),
                self.max_records,
                self.compromised.len(),
                self.max_compromised
            ));
        }
        let records_agree = self.records.len() == self.records_by_update.len()
            && self
                .records_by_update
                .iter()
                .all(|(t, id)| self.records.get(id).map(|r| r.updated) == Some(*t));
        let compromised_agree = self.compromised.len() == self.compromised_by_time.len()
            && self
                .compromised_by_time
                .iter()
                .all(|(t, id)| self.compromised.get(id) == Some(t));
        if !records_agree || !compromised_agree {
            return Err("rotation indexes disagree".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    fn id(n: u8) -> Identity {
        Keypair::from_secret_bytes(&[n; 32]).identity()
    }

    fn claim(old: u8, new: u8, seq: u64) -> RotationClaim {
        RotationClaim {
            old: id(old),
            new: id(new),
            seq,
        }
    }

    #[test]
    fn sequence_rules() {
        let mut r = Rotations::new(10, 10);
        let t = Timestamp::from_secs(1);
        assert_eq!(r.check(&claim(1, 2, 1)), RotationCheck::Fresh);
        r.record(&claim(1, 2, 1), t);
        assert_eq!(r.check(&claim(1, 2, 1)), RotationCheck::Repeat);
        assert_eq!(
            r.check(&claim(1, 3, 1)),
            RotationCheck::Fork { first: id(2) }
        );
        assert_eq!(
            r.check(&claim(1, 3, 0)),
            RotationCheck::Regressed { have: 1 }
        );
        assert_eq!(r.check(&claim(1, 3, 2)), RotationCheck::Fresh);
        assert_eq!(r.latest(&id(1)), Some((1, id(2))));
        r.check_invariants().unwrap();
    }

    #[test]
    fn bounded_tables_evict_oldest() {
        let mut r = Rotations::new(2, 2);
        for n in 0..4u8 {
            r.record(&claim(n, 100, 1), Timestamp::from_secs(u64::from(n)));
            r.mark_compromised(id(n), Timestamp::from_secs(u64::from(n)));
            r.check_invariants().unwrap();
        }
        assert_eq!(r.latest(&id(0)), None);
        assert!(r.latest(&id(3)).is_some());
        assert!(!r.is_compromised(&id(1)));
        assert!(r.is_compromised(&id(2)) && r.is_compromised(&id(3)));
    }
}
