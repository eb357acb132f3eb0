//! Request rate limits: one token bucket per key (a source IP, an identity)
//! in a table of bounded size.
//!
//! Each bucket is kept in its GCRA form (the "generic cell rate algorithm"
//! of ATM networks, the usual way to store a token bucket in one number):
//! the *theoretical arrival time* `tat`, the instant at which the bucket
//! will be full again. With an emission interval `T = 1 s / per_second` and
//! a tolerance `τ = burst × T`, a request at `now` is allowed when
//! `max(tat, now) + T − now ≤ τ`, and then `tat` becomes `max(tat, now) + T`.
//! The tokens left are `(τ − (tat − now)) / T`: a bucket whose `tat` has
//! passed is full, exactly like a bucket never seen, so it is dropped from
//! the table at no loss. The table holds only keys *in debt*.
//!
//! When the table is at its bound and a new key arrives, the bucket evicted
//! is the **fullest** one — the smallest `tat`, first in the table's index —
//! rather than the least recently used:
//! - Evicting a bucket resets it to full. Doing that to the fullest bucket
//!   forgives the least debt, so it is the eviction that changes behaviour
//!   least (and when that bucket is already full it changes nothing).
//! - A flood of fresh source addresses makes buckets that each spent one
//!   token — nearly full. Those are what the flood then evicts, while the
//!   nearly empty bucket of a peer that is really over its rate stays
//!   tracked. Under LRU, the flood would push out the heavy user's bucket
//!   the moment it paused, and hand it a fresh burst.
//!
//! Every bucket has the same rate, so "fullest now" is "smallest `tat`" at
//! any instant: the index is an ordered set, eviction is O(log n), and no
//! clock is read (time is the caller's `now`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A request rate: `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second refilled (at least 1 is used).
    pub per_second: u32,
    /// Requests allowed at once by a key seen for the first time or after a
    /// quiet spell: the bucket's size (at least 1 is used).
    pub burst: u32,
}

impl RateLimit {
    /// The time one request costs (`T`).
    fn interval(&self) -> Duration {
        Duration::from_secs(1) / self.per_second.max(1)
    }

    /// How far ahead of `now` a bucket's `tat` may run (`τ`).
    fn tolerance(&self) -> Duration {
        self.interval()
            .checked_mul(self.burst.max(1))
            .unwrap_or(Duration::MAX)
    }
}

/// One token bucket per key, for at most `max_keys` keys at once.
#[derive(Debug)]
pub(super) struct RateLimiter<K> {
    limit: RateLimit,
    max_keys: usize,
    /// Each key's theoretical arrival time.
    tat: BTreeMap<K, Instant>,
    /// The same entries ordered fullest first.
    by_tat: BTreeSet<(Instant, K)>,
    /// Buckets still in debt evicted to make room for a new key.
    evicted: u64,
}

impl<K: Ord + Copy> RateLimiter<K> {
    /// A table of at most `max_keys` buckets (at least 1).
    pub(super) fn new(limit: RateLimit, max_keys: usize) -> Self {
        RateLimiter {
            limit,
            max_keys: max_keys.max(1),
            tat: BTreeMap::new(),
            by_tat: BTreeSet::new(),
            evicted: 0,
        }
    }

    /// Whether `key` may make one request at `now`; does not spend it.
    pub(super) fn allows(&mut self, key: K, now: Instant) -> bool {
        self.forget_full(now);
        let tat = self.tat.get(&key).copied().unwrap_or(now).max(now);
        let next = tat.checked_add(self.limit.interval()).unwrap_or(tat);
        next.saturating_duration_since(now) <= self.limit.tolerance()
    }

    /// Spends one request of `key`'s bucket at `now` (call after
    /// [`allows`](Self::allows) said yes).
    pub(super) fn spend(&mut self, key: K, now: Instant) {
        self.forget_full(now);
        let old = self.tat.get(&key).copied();
        let tat = old.unwrap_or(now).max(now);
        let next = tat.checked_add(self.limit.interval()).unwrap_or(tat);
        match old {
            Some(old) => {
                self.by_tat.remove(&(old, key));
            }
            None => {
                if self.tat.len() >= self.max_keys {
                    if let Some((_, fullest)) = self.by_tat.pop_first() {
                        self.tat.remove(&fullest);
                        self.evicted += 1;
                    }
                }
            }
        }
        self.tat.insert(key, next);
        self.by_tat.insert((next, key));
    }

    /// Drops the buckets that have refilled: they are the same as absent.
    fn forget_full(&mut self, now: Instant) {
        while let Some(&(tat, key)) = self.by_tat.first() {
            if tat > now {
                break;
            }
            self.by_tat.pop_first();
            self.tat.remove(&key);
        }
    }

    /// Keys tracked (buckets not full).
    pub(super) fn len(&self) -> usize {
        self.tat.len()
    }

    /// Buckets still in debt that were evicted to make room.
    pub(super) fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> Instant {
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    fn take(l: &mut RateLimiter<u32>, key: u32, now: Instant) -> bool {
        let ok = l.allows(key, now);
        if ok {
            l.spend(key, now);
        }
        ok
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = start();
        let mut l = RateLimiter::new(
            RateLimit {
                per_second: 10,
                burst: 5,
            },
            16,
        );
        for _ in 0..5 {
            assert!(take(&mut l, 1, t0));
        }
        assert!(!take(&mut l, 1, t0));
        // Another key has its own bucket.
        assert!(take(&mut l, 2, t0));
        // One token back every 100 ms.
        assert!(!take(&mut l, 1, t0 + Duration::from_millis(99)));
        assert!(take(&mut l, 1, t0 + Duration::from_millis(100)));
        assert!(!take(&mut l, 1, t0 + Duration::from_millis(100)));
        // After a quiet spell, full again — and no longer tracked.
        let later = t0 + Duration::from_secs(1);
        assert!(l.allows(1, later));
        assert_eq!(l.len(), 0);
        for _ in 0..5 {
            assert!(take(&mut l, 1, later));
        }
        assert!(!take(&mut l, 1, later));
    }

    #[test]
    fn refusals_cost_nothing() {
        let t0 = start();
        let limit = RateLimit {
            per_second: 1,
            burst: 1,
        };
        let mut l = RateLimiter::new(limit, 4);
        assert!(take(&mut l, 1, t0));
        for ms in 0..1000 {
            assert!(!take(&mut l, 1, t0 + Duration::from_millis(ms)));
        }
        assert!(take(&mut l, 1, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn a_flood_of_keys_stays_bounded_and_evicts_the_fullest() {
        let t0 = start();
        let mut l = RateLimiter::new(
            RateLimit {
                per_second: 1,
                burst: 10,
            },
            100,
        );
        // A heavy user empties its bucket.
        for _ in 0..10 {
            assert!(take(&mut l, 0, t0));
        }
        // 100,000 fresh keys, one request each.
        for k in 1..=100_000 {
            assert!(take(&mut l, k, t0 + Duration::from_micros(u64::from(k))));
            assert!(l.len() <= 100);
        }
        assert!(l.evicted() >= 100_000 - 100);
        // The heavy user is still tracked, still empty.
        assert!(!take(&mut l, 0, t0 + Duration::from_millis(200)));
    }
}
