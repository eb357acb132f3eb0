//! Per-publisher token buckets (spec §9.3: about 10 STOREs per identity
//! per minute).

use std::collections::{BTreeMap, BTreeSet};

use crate::identity::Identity;
use crate::time::Timestamp;

/// Microseconds in a minute: one token is this many units, and a bucket
/// gains `per_minute` units per microsecond, so refill is exact integer
/// arithmetic with no rounding drift.
const MINUTE_MICROS: u64 = 60_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    /// Fill, in 1/MINUTE_MICROS of a token.
    units: u64,
    /// When `units` was last brought up to date.
    last: Timestamp,
}

/// A token bucket per publisher: `per_minute` tokens, refilled
/// continuously at `per_minute` per minute; each accepted STORE takes one.
///
/// Memory is bounded: at most `max_tracked` buckets are remembered. A
/// publisher whose bucket has refilled is forgotten (a fresh bucket is the
/// same thing), and when the table is full the least recently active
/// publisher is forgotten first — deterministic, and the worst an attacker
/// cycling identities can do is hand someone a full bucket early.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_minute: u32,
    max_tracked: usize,
    buckets: BTreeMap<Identity, Bucket>,
    by_activity: BTreeSet<(Timestamp, Identity)>,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` STOREs per publisher per minute
    /// (0 allows none), remembering at most `max_tracked` publishers (at
    /// least one).
    pub fn new(per_minute: u32, max_tracked: usize) -> Self {
        RateLimiter {
            per_minute,
            max_tracked: max_tracked.max(1),
            buckets: BTreeMap::new(),
            by_activity: BTreeSet::new(),
        }
    }

    /// The configured rate, for messages.
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Takes a token for `publisher` at `now` if one is available.
    /// A refusal takes nothing.
    pub fn try_take(&mut self, publisher: &Identity, now: Timestamp) -> bool {
        self.forget_refilled(now);
        let (units, last) = match self.buckets.get(publisher) {
            Some(b) => (self.refilled(b, now), b.last.max(now)),
            None => (self.capacity(), now),
        };
        let allowed = units >= MINUTE_MICROS;
        let units = if allowed {
            units - MINUTE_MICROS
        } else {
            units
        };
        if units >= self.capacity() {
            self.forget(publisher);
        } else {
            self.set(*publisher, Bucket { units, last });
        }
        allowed
    }

    /// Whether [`try_take`](Self::try_take) would succeed for `publisher`
    /// at `now`, without taking anything: for a caller that must check the
    /// limit before a write that can still fail.
    pub fn allows(&self, publisher: &Identity, now: Timestamp) -> bool {
        self.tokens(publisher, now) >= 1
    }

    /// Whole tokens `publisher` has at `now`.
    pub fn tokens(&self, publisher: &Identity, now: Timestamp) -> u64 {
        let units = match self.buckets.get(publisher) {
            Some(b) => self.refilled(b, now),
            None => self.capacity(),
        };
        units / MINUTE_MICROS
    }

    /// How many publishers are remembered (never more than `max_tracked`).
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Checks that the two indexes agree and the bound holds.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        if self.buckets.len() > self.max_tracked {
            return Err(format!(
                "{} buckets tracked, over the bound of {}",
                self.buckets.len(),
                self.max_tracked
            ));
        }
        if self.buckets.len() != self.by_activity.len()
            || self
                .by_activity
                .iter()
                .any(|(last, id)| self.buckets.get(id).map(|b| b.last) != Some(*last))
        {
            return Err("rate-limit activity index disagrees with the buckets".into());
        }
        Ok(())
    }

    fn capacity(&self) -> u64 {
        u64::from(self.per_minute) * MINUTE_MICROS
    }

    fn refilled(&self, b: &Bucket, now: Timestamp) -> u64 {
        let elapsed = now.as_micros().saturating_sub(b.last.as_micros());
        let gained = elapsed.saturating_mul(u64::from(self.per_minute));
        b.units.saturating_add(gained).min(self.capacity())
    }

    fn set(&mut self, publisher: Identity, bucket: Bucket) {
        match self.buckets.insert(publisher, bucket) {
            // Active at the same instant again: the activity index is
            // already right.
            Some(old) if old.last == bucket.last => return,
            Some(old) => {
                self.by_activity.remove(&(old.last, publisher));
            }
            None => {
                if self.buckets.len() > self.max_tracked {
                    if let Some((_, oldest)) = self.by_activity.pop_first() {
                        self.buckets.remove(&oldest);
                    }
                }
            }
        }
        self.by_activity.insert((bucket.last, publisher));
    }

    fn forget(&mut self, publisher: &Identity) {
        if let Some(b) = self.buckets.remove(publisher) {
            self.by_activity.remove(&(b.last, *publisher));
        }
    }

    /// Drops the least recently active buckets while they are full again:
    /// amortised O(1) per call, and keeps idle publishers from pinning memory.
    fn forget_refilled(&mut self, now: Timestamp) {
        while let Some(&(last, id)) = self.by_activity.first() {
            let full = self
                .buckets
                .get(&id)
                .is_none_or(|b| self.refilled(b, now) >= self.capacity());
            if !full {
                break;
            }
            self.by_activity.remove(&(last, id));
            self.buckets.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    fn who(n: u8) -> Identity {
        Keypair::from_secret_bytes(&[n; 32]).identity()
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn ten_per_minute_then_one_every_six_seconds() {
        let mut r = RateLimiter::new(10, 100);
        let p = who(1);
        for _ in 0..10 {
            assert!(r.try_take(&p, at(0)));
        }
        assert!(!r.try_take(&p, at(0)));
        assert!(!r.try_take(&p, at(5)));
        assert!(r.try_take(&p, at(6)));
        assert!(!r.try_take(&p, at(6)));
        assert_eq!(r.tokens(&p, at(66)), 10);
        // A full bucket is forgotten: nothing to remember.
        assert!(r.try_take(&who(2), at(100)));
        assert_eq!(r.tracked(), 1);
        r.check_invariants().unwrap();
    }

    #[test]
    fn zero_rate_refuses_and_tracks_nothing() {
        let mut r = RateLimiter::new(0, 10);
        assert!(!r.try_take(&who(1), at(0)));
        assert_eq!(r.tracked(), 0);
    }

    #[test]
    fn table_is_bounded_and_evicts_least_recently_active() {
        let mut r = RateLimiter::new(1, 3);
        for n in 0..5u8 {
            assert!(r.try_take(&who(n), at(u64::from(n))));
            r.check_invariants().unwrap();
        }
        assert_eq!(r.tracked(), 3);
        // 0 and 1 were forgotten, so they have a token again; 4 has not.
        assert!(r.try_take(&who(0), at(5)));
        assert!(!r.try_take(&who(4), at(5)));
        r.check_invariants().unwrap();
    }

    #[test]
    fn time_going_backwards_gains_nothing() {
        let mut r = RateLimiter::new(2, 10);
        let p = who(9);
        assert!(r.try_take(&p, at(100)));
        assert!(r.try_take(&p, at(50)));
        assert!(!r.try_take(&p, at(60)));
        r.check_invariants().unwrap();
    }
}
