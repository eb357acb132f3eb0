//! Nearest-first iteration over the table without a full sort.
//!
//! Why whole buckets can be visited in order: let `d = local ^ target`. An
//! entry `x` of bucket `i` has `x ^ local` with highest set bit `i`, so its
//! distance to the target is `d ^ (x ^ local)`: equal to `d` above bit `i`,
//! `!d[i]` at bit `i`, anything below. Two buckets `i > j` therefore compare
//! as wholes: every entry of bucket `i` is nearer than every entry of bucket
//! `j` when `d[i] = 1` (its distance has 0 where bucket `j`'s has 1), and
//! farther when `d[i] = 0`. The distance order of buckets is thus: the
//! buckets whose bit of `d` is set, from high to low (the first is the
//! target's own bucket), then the buckets whose bit is clear, from low to
//! high. Only the entries of one bucket at a time need sorting.

use std::cmp::Ordering;
use std::iter::FusedIterator;

use crate::node_id::NodeId;

use super::bucket::Bucket;
use super::{BUCKETS, MAX_K, Peer};

/// One bit per bucket: bit `i % 64` of word `i / 64` is bucket `i`.
pub(super) type Mask = [u64; 4];

/// Which entries an iteration yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Freshness {
    /// Every entry.
    All,
    /// Entries with no failure since their last contact.
    Fresh,
    /// Entries with at least one failure.
    Stale,
}

impl Freshness {
    fn admits(self, failures: u32) -> bool {
        match self {
            Freshness::All => true,
            Freshness::Fresh => failures == 0,
            Freshness::Stale => failures > 0,
        }
    }
}

/// The table's entries nearest `target` first, lazily: take as many as you
/// need. Holds a k-sized index buffer on the stack and never allocates.
#[derive(Debug, Clone)]
pub struct Closest<'a> {
    buckets: &'a [Bucket],
    target: [u64; 4],
    /// Buckets still to visit from high to low.
    nearer: Mask,
    /// Buckets still to visit from low to high, after `nearer`.
    farther: Mask,
    freshness: Freshness,
    current: Option<&'a Bucket>,
    /// Indices into `current.peers`, sorted nearest first.
    order: [u8; MAX_K],
    len: usize,
    pos: usize,
}

impl<'a> Closest<'a> {
    pub(super) fn new(
        buckets: &'a [Bucket],
        nonempty: &Mask,
        local: &NodeId,
        target: &NodeId,
        freshness: Freshness,
    ) -> Self {
        let d = mask_of(&local.distance(target));
        let mut nearer = [0; 4];
        let mut farther = [0; 4];
        for w in 0..4 {
            nearer[w] = nonempty[w] & d[w];
            farther[w] = nonempty[w] & !d[w];
        }
        Closest {
            buckets,
            target: words(target),
            nearer,
            farther,
            freshness,
            current: None,
            order: [0; MAX_K],
            len: 0,
            pos: 0,
        }
    }

    /// Loads the next non-empty bucket in distance order; false when done.
    fn load_next(&mut self) -> bool {
        let Some(b) = pop_highest(&mut self.nearer).or_else(|| pop_lowest(&mut self.farther))
        else {
            return false;
        };
        // Buckets are stored farthest first (see `RoutingTable`).
        let Some(bucket) = self.buckets.get(BUCKETS - 1 - b) else {
            return false;
        };
        self.current = Some(bucket);
        self.pos = 0;
        self.len = 0;
        for (i, m) in bucket.meta.iter().enumerate() {
            if !self.freshness.admits(m.failures) {
                continue;
            }
            // A bucket holds at most MAX_K = 256 entries, so `i` fits a u8.
            if let (Some(slot), Ok(i)) = (self.order.get_mut(self.len), u8::try_from(i)) {
                *slot = i;
                self.len += 1;
            }
        }
        self.sort_loaded(bucket, b);
        true
    }

    /// Sorts the loaded indices of bucket `b` nearest first.
    ///
    /// Entries of bucket `b` agree on every distance bit above `b`, so the
    /// 56 distance bits from bit `b` down order them, save for ids that
    /// also share those bits (a 2^-56 chance per pair of hashed ids;
    /// possible for crafted ones). The fast path sorts those prefixes
    /// packed with the entry index into one `u64` as plain integers, the
    /// cheapest sort there is; a tie falls back to comparing whole
    /// distances, so the order is exact either way.
    fn sort_loaded(&mut self, bucket: &Bucket, b: usize) {
        const FAST: usize = 32;
        let len = self.len;
        let target = &self.target;
        let meta = &bucket.meta;
        let first = (BUCKETS - 1 - b) / 64;
        let Some(order) = self.order.get_mut(..len) else {
            return;
        };
        if len <= FAST {
            let t = prefix_at(target, b);
            let mut packed = [0u64; FAST];
            for (slot, &i) in packed.iter_mut().zip(order.iter()) {
                let key = meta.get(usize::from(i)).map_or(0, |m| m.key);
                *slot = ((key ^ t) & !0xff) | u64::from(i);
            }
            if let Some(packed) = packed.get_mut(..len) {
                packed.sort_unstable();
                if packed.windows(2).all(|p| p[0] >> 8 != p[1] >> 8) {
                    for (o, p) in order.iter_mut().zip(packed.iter()) {
                        *o = (*p & 0xff) as u8;
                    }
                    return;
                }
            }
        }
        // Rare: ties in the prefix, or a bucket over 32 entries.
        let peers = &bucket.peers;
        order.sort_unstable_by(|&x, &y| {
            match (peers.get(usize::from(x)), peers.get(usize::from(y))) {
                (Some(x), Some(y)) => cmp_distance(&words(&x.id), &words(&y.id), target, first),
                _ => Ordering::Equal,
            }
        });
    }
}

impl<'a> Iterator for Closest<'a> {
    type Item = &'a Peer;

    fn next(&mut self) -> Option<&'a Peer> {
        loop {
            if self.pos < self.len {
                let i = self.order.get(self.pos).copied()?;
                self.pos += 1;
                return self.current?.peers.get(usize::from(i));
            }
            if !self.load_next() {
                return None;
            }
        }
    }
}

impl FusedIterator for Closest<'_> {}

/// The id as four big-endian words, most significant first.
pub(super) fn words(id: &NodeId) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (w, chunk) in out.iter_mut().zip(id.as_bytes().chunks_exact(8)) {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(chunk);
        *w = u64::from_be_bytes(buf);
    }
    out
}

/// The 64 bits of `w` (an id as big-endian words) from bit `b` (255 is the
/// top bit) down, shifted to the top of the result. Linear in XOR, so the
/// bits of a distance are `prefix_at(id, b) ^ prefix_at(target, b)`.
pub(super) fn prefix_at(w: &[u64; 4], b: usize) -> u64 {
    let first = (BUCKETS - 1 - b.min(BUCKETS - 1)) / 64;
    let shift = 63 - (b % 64) as u32;
    let hi = w.get(first).copied().unwrap_or(0);
    let lo = w.get(first + 1).copied().unwrap_or(0);
    if shift == 0 {
        hi
    } else {
        (hi << shift) | (lo >> (64 - shift))
    }
}

/// The bits of a 256-bit number as a bucket mask (bit `i` = bucket `i`).
pub(super) fn mask_of(id: &NodeId) -> Mask {
    let w = words(id);
    [w[3], w[2], w[1], w[0]]
}

/// Orders `a` and `b` (ids as words) by XOR distance to `target`: the
/// first word where they differ decides. Words before `first` are known to
/// be equal.
fn cmp_distance(a: &[u64; 4], b: &[u64; 4], target: &[u64; 4], first: usize) -> Ordering {
    for i in first..4 {
        if let (Some(a), Some(b), Some(t)) = (a.get(i), b.get(i), target.get(i)) {
            if a != b {
                return (a ^ t).cmp(&(b ^ t));
            }
        }
    }
    Ordering::Equal
}

/// Sets or clears bucket `b`'s bit.
pub(super) fn set_bit(mask: &mut Mask, b: usize, on: bool) {
    if let Some(w) = mask.get_mut(b / 64) {
        let bit = 1u64 << (b % 64);
        if on {
            *w |= bit;
        } else {
            *w &= !bit;
        }
    }
}

/// Whether bucket `b`'s bit is set.
pub(super) fn get_bit(mask: &Mask, b: usize) -> bool {
    mask.get(b / 64)
        .is_some_and(|w| w & (1u64 << (b % 64)) != 0)
}

/// The lowest set bucket, if any.
pub(super) fn lowest(mask: &Mask) -> Option<usize> {
    mask.iter()
        .enumerate()
        .find(|(_, w)| **w != 0)
        .map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
}

fn pop_lowest(mask: &mut Mask) -> Option<usize> {
    let b = lowest(mask)?;
    set_bit(mask, b, false);
    Some(b)
}

fn pop_highest(mask: &mut Mask) -> Option<usize> {
    let b = mask
        .iter()
        .enumerate()
        .rev()
        .find(|(_, w)| **w != 0)
        .map(|(i, w)| i * 64 + 63 - w.leading_zeros() as usize)?;
    set_bit(mask, b, false);
    Some(b)
}
