//! The routing table proper: admission, challenges, failures, lookups by
//! distance, bucket refresh.

use std::iter::Chain;
use std::time::Duration;

use crate::node_id::NodeId;
use crate::time::Timestamp;

use super::bucket::Bucket;
use super::closest::{self, Closest, Freshness, Mask};
use super::{
    BUCKETS, ChallengeOutcome, ContactOutcome, FailureOutcome, MAX_K, Peer, Removed, RoutingConfig,
};

/// The Kademlia routing table of one node (see the [module docs](super)).
#[derive(Debug)]
pub struct RoutingTable {
    local: NodeId,
    config: RoutingConfig,
    /// Buckets 255, 254, … down to the nearest one ever used: bucket `b`
    /// is `buckets[255 - b]`, and buckets past the end are empty and
    /// untouched. Only the ~log2(N) farthest buckets of a table in an
    /// N-node mesh are ever used, so a table holds those rather than all
    /// 256 (measured in mars-sim: 59 KiB of mostly empty buckets per node
    /// at any mesh size before, about half the simulator's memory).
    buckets: Vec<Bucket>,
    /// Which buckets have entries, kept in step with every change so
    /// [`Closest`] can skip empty buckets with a few word operations.
    nonempty: Mask,
    len: usize,
}

impl RoutingTable {
    /// An empty table around `local` with bucket capacity `k` (clamped to
    /// `1..=MAX_K`) and the default failure and challenge settings.
    pub fn new(local: NodeId, k: usize) -> Self {
        Self::with_config(
            local,
            RoutingConfig {
                k,
                ..RoutingConfig::default()
            },
        )
    }

    /// An empty table with explicit settings (`config.k` clamped to
    /// `1..=MAX_K`).
    pub fn with_config(local: NodeId, mut config: RoutingConfig) -> Self {
        config.k = config.k.clamp(1, MAX_K);
        RoutingTable {
            local,
            config,
            buckets: Vec::new(),
            nonempty: [0; 4],
            len: 0,
        }
    }

    /// This node's id, the centre of the table.
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// Bucket capacity.
    pub fn k(&self) -> usize {
        self.config.k
    }

    /// The settings in force.
    pub fn config(&self) -> &RoutingConfig {
        &self.config
    }

    /// Number of entries (pending candidates not included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry with `id`.
    pub fn get(&self, id: &NodeId) -> Option<&Peer> {
        let bucket = self.bucket_of(id)?;
        bucket.peers.get(bucket.position(id)?)
    }

    /// Whether `id` is an entry (pending candidates are not).
    pub fn contains(&self, id: &NodeId) -> bool {
        self.get(id).is_some()
    }

    /// Consecutive failures of the entry with `id` since it last answered;
    /// above zero means stale.
    pub fn failures(&self, id: &NodeId) -> Option<u32> {
        let bucket = self.bucket_of(id)?;
        let i = bucket.position(id)?;
        bucket.meta.get(i).map(|m| m.failures)
    }

    /// Every entry, by bucket index then least-recently-seen first: a
    /// deterministic order for snapshots and tests.
    pub fn iter(&self) -> impl Iterator<Item = &Peer> + '_ {
        self.buckets.iter().rev().flat_map(|b| b.peers.iter())
    }

    /// The entries of bucket `index`, least-recently-seen first (empty for
    /// an index past 255).
    pub fn bucket(&self, index: usize) -> &[Peer] {
        self.get_bucket(index).map_or(&[], |b| &b.peers)
    }

    /// The pending candidate of bucket `index`.
    pub fn pending(&self, index: usize) -> Option<&Peer> {
        self.get_bucket(index)?.pending.as_deref()
    }

    /// The entry of bucket `index` under challenge, if one is in flight.
    pub fn challenged(&self, index: usize) -> Option<&NodeId> {
        self.get_bucket(index)?.challenged()
    }

    /// A peer answered one of our requests at `peer.addr` (the node checks
    /// that; nothing else may put a peer here). Its `last_seen` becomes
    /// `now`. See [`ContactOutcome`] for what can happen.
    pub fn on_contact(&mut self, mut peer: Peer, now: Timestamp) -> ContactOutcome {
        let Some(b) = self.local.bucket_index(&peer.id) else {
            return ContactOutcome::IsLocal;
        };
        let k = self.config.k;
        let challenge_timeout = self.config.challenge_timeout;
        let Some(bucket) = bucket_mut(&mut self.buckets, b) else {
            return ContactOutcome::IsLocal;
        };
        bucket.last_activity = now;
        peer.last_seen = now;

        if let Some(i) = bucket.position(&peer.id) {
            if let Some(entry) = bucket.peers.get_mut(i) {
                entry.addr = peer.addr;
                entry.last_seen = now;
            }
            if let Some(f) = bucket.failures_mut(i) {
                *f = 0;
            }
            bucket.move_to_tail(i);
            return ContactOutcome::Updated;
        }

        if bucket.peers.len() < k {
            bucket.push(peer, k);
            self.len += 1;
            closest::set_bit(&mut self.nonempty, b, true);
            return ContactOutcome::Added;
        }

        // Full: the newcomer waits as the single pending candidate.
        let new_id = peer.id;
        let displaced = bucket
            .pending
            .replace(Box::new(peer))
            .filter(|old| old.id != new_id)
            .map(|old| *old);
        let in_flight = matches!(bucket.challenge.as_deref(),
            Some((_, at)) if now.duration_since(*at) < challenge_timeout);
        match bucket.peers.first() {
            Some(oldest) if !in_flight => {
                bucket.challenge = Some(Box::new((oldest.id, now)));
                ContactOutcome::Challenge {
                    oldest: oldest.clone(),
                    displaced,
                }
            }
            _ => ContactOutcome::Pending { displaced },
        }
    }

    /// The node's answer to a [`ContactOutcome::Challenge`]: whether
    /// `challenged` answered the PING (`false` for a timeout or error).
    pub fn on_challenge_result(
        &mut self,
        challenged: &NodeId,
        alive: bool,
        now: Timestamp,
    ) -> ChallengeOutcome {
        let Some(b) = self.local.bucket_index(challenged) else {
            return ChallengeOutcome::NotChallenged;
        };
        let Some(bucket) = existing_mut(&mut self.buckets, b) else {
            return ChallengeOutcome::NotChallenged;
        };
        if bucket.challenged() != Some(challenged) {
            return ChallengeOutcome::NotChallenged;
        }
        bucket.challenge = None;
        let Some(i) = bucket.position(challenged) else {
            return ChallengeOutcome::NotChallenged;
        };
        if alive {
            if let Some(entry) = bucket.peers.get_mut(i) {
                entry.last_seen = now;
            }
            if let Some(f) = bucket.failures_mut(i) {
                *f = 0;
            }
            bucket.move_to_tail(i);
            bucket.last_activity = now;
            return ChallengeOutcome::Kept {
                dropped: bucket.pending.take().map(|p| *p),
            };
        }
        match self.remove_entry(b, i) {
            Some(r) => ChallengeOutcome::Replaced {
                evicted: r.peer,
                added: r.promoted,
            },
            None => ChallengeOutcome::NotChallenged,
        }
    }

    /// A request to `id` failed (timeout, refused stream, wrong identity at
    /// the address …). Applies the failure policy of the
    /// [module docs](super#failure-policy).
    pub fn on_failure(&mut self, id: &NodeId) -> FailureOutcome {
        let Some(b) = self.local.bucket_index(id) else {
            return FailureOutcome::Unknown;
        };
        let max_failures = self.config.max_failures;
        let Some(bucket) = existing_mut(&mut self.buckets, b) else {
            return FailureOutcome::Unknown;
        };
        let Some(i) = bucket.position(id) else {
            if bucket.pending_is(id) {
                if let Some(dropped) = bucket.pending.take() {
                    return FailureOutcome::PendingDropped { dropped: *dropped };
                }
            }
            return FailureOutcome::Unknown;
        };
        let Some(f) = bucket.failures_mut(i) else {
            return FailureOutcome::Unknown;
        };
        *f = f.saturating_add(1);
        let failures = *f;
        let has_candidate = bucket.pending.is_some();
        if !has_candidate && failures < max_failures {
            return FailureOutcome::Stale { failures };
        }
        match self.remove_entry(b, i) {
            Some(Removed {
                peer,
                promoted: Some(added),
            }) => FailureOutcome::Replaced {
                removed: peer,
                added,
            },
            Some(Removed {
                peer,
                promoted: None,
            }) => FailureOutcome::Removed { removed: peer },
            None => FailureOutcome::Unknown,
        }
    }

    /// Removes `id`, whether an entry or a pending candidate. A removed
    /// entry's slot goes to the bucket's pending candidate, if any.
    pub fn remove(&mut self, id: &NodeId) -> Option<Removed> {
        let b = self.local.bucket_index(id)?;
        let bucket = existing_mut(&mut self.buckets, b)?;
        match bucket.position(id) {
            Some(i) => self.remove_entry(b, i),
            None if bucket.pending_is(id) => bucket.pending.take().map(|peer| Removed {
                peer: *peer,
                promoted: None,
            }),
            None => None,
        }
    }

    /// Removes entry `i` of bucket `b` and promotes the pending candidate
    /// into the free slot. The only way entries leave the table, so the
    /// count and the mask stay in step.
    fn remove_entry(&mut self, b: usize, i: usize) -> Option<Removed> {
        let k = self.config.k;
        let bucket = existing_mut(&mut self.buckets, b)?;
        let peer = bucket.remove_at(i)?;
        let promoted = bucket.pending.take().map(|p| *p);
        if let Some(p) = &promoted {
            // The contest the challenge was deciding is over.
            bucket.challenge = None;
            bucket.insert_by_last_seen(p.clone(), k);
        } else {
            self.len = self.len.saturating_sub(1);
        }
        closest::set_bit(&mut self.nonempty, b, !bucket.peers.is_empty());
        Some(Removed { peer, promoted })
    }

    /// The table's entries nearest `target` first, lazily and without
    /// allocating: the building block of the other `closest` methods.
    pub fn closest_iter(&self, target: &NodeId) -> Closest<'_> {
        Closest::new(
            &self.buckets,
            &self.nonempty,
            &self.local,
            target,
            Freshness::All,
        )
    }

    /// The `n` entries nearest `target` by XOR distance, nearest first,
    /// stale or not.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<Peer> {
        let mut out = Vec::with_capacity(n.min(self.len));
        self.closest_into(target, n, &mut out);
        out
    }

    /// [`closest`](Self::closest) into a reused buffer: `out` is
    /// overwritten, and copying a peer never allocates, so a warm buffer
    /// makes this allocation-free.
    pub fn closest_into(&self, target: &NodeId, n: usize, out: &mut Vec<Peer>) {
        let written = refill(out, self.closest_iter(target).take(n));
        out.truncate(written);
    }

    /// Fresh entries nearest `target` first, then stale ones nearest first:
    /// what to hand to others and to start lookups from, so a peer that
    /// just failed is only offered when nothing better is known.
    pub fn closest_fresh_iter(&self, target: &NodeId) -> Chain<Closest<'_>, Closest<'_>> {
        let of = |freshness| {
            Closest::new(
                &self.buckets,
                &self.nonempty,
                &self.local,
                target,
                freshness,
            )
        };
        of(Freshness::Fresh).chain(of(Freshness::Stale))
    }

    /// The first `n` of [`closest_fresh_iter`](Self::closest_fresh_iter).
    pub fn closest_fresh(&self, target: &NodeId, n: usize) -> Vec<Peer> {
        let mut out = Vec::with_capacity(n.min(self.len));
        self.closest_fresh_into(target, n, &mut out);
        out
    }

    /// [`closest_fresh`](Self::closest_fresh) into a reused buffer, like
    /// [`closest_into`](Self::closest_into).
    pub fn closest_fresh_into(&self, target: &NodeId, n: usize, out: &mut Vec<Peer>) {
        let written = refill(out, self.closest_fresh_iter(target).take(n));
        out.truncate(written);
    }

    /// Records a lookup towards `target` as activity in its bucket, which
    /// postpones that bucket's refresh. A lookup of our own id touches no
    /// bucket.
    pub fn touch_bucket_for(&mut self, target: &NodeId, now: Timestamp) {
        if let Some(bucket) = self
            .local
            .bucket_index(target)
            .and_then(|b| bucket_mut(&mut self.buckets, b))
        {
            bucket.last_activity = now;
        }
    }

    /// Buckets with no activity for `refresh_interval`, in index order.
    ///
    /// Candidates are the buckets from the nearest populated one up to 255,
    /// empty or not: an empty far bucket covers a large part of the key
    /// space we have simply not met yet (bucket 255 is half of it), so a
    /// lookup there can find peers; buckets nearer than every peer we know
    /// are expected to be empty and are covered by the self-lookup. An
    /// empty table has nothing to refresh (that is bootstrap's job).
    pub fn stale_buckets(&self, now: Timestamp, refresh_interval: Duration) -> Vec<usize> {
        let Some(first) = closest::lowest(&self.nonempty) else {
            return Vec::new();
        };
        (first..BUCKETS)
            .filter(|&b| {
                self.get_bucket(b)
                    .is_some_and(|bk| now.duration_since(bk.last_activity) >= refresh_interval)
            })
            .collect()
    }

    /// When the next bucket becomes stale (see
    /// [`stale_buckets`](Self::stale_buckets)), for the node's timer; `None`
    /// for an empty table.
    pub fn next_refresh_at(&self, refresh_interval: Duration) -> Option<Timestamp> {
        let first = closest::lowest(&self.nonempty)?;
        self.buckets
            .get(..BUCKETS - first)?
            .iter()
            .map(|bk| bk.last_activity.saturating_add(refresh_interval))
            .min()
    }

    /// An id whose bucket relative to `local` is exactly `bucket` (indices
    /// above 255 are taken as 255), built from `random`: a refresh target.
    pub fn random_id_in_bucket(&self, bucket: usize, random: [u8; 32]) -> NodeId {
        let b = bucket.min(BUCKETS - 1);
        let byte = 31 - b / 8;
        let bit = b % 8;
        let mut d = random;
        for (j, x) in d.iter_mut().enumerate() {
            if j < byte {
                *x = 0;
            } else if j == byte {
                let below = (1u8 << bit) - 1;
                *x = (*x & below) | (1u8 << bit);
            }
        }
        self.local.distance(&NodeId::from_bytes(d))
    }

    /// Checks the structural invariants: at most k entries per bucket, each
    /// in its right bucket, never the local id, no duplicates; a pending candidate only in a full bucket with a
    /// challenge in flight, a challenge only on an entry of its bucket; the
    /// entry count and non-empty mask in step. For tests and fuzzing.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut total = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            let b = BUCKETS - 1 - i;
            let n = bucket.peers.len();
            total += n;
            if n > self.config.k {
                return Err(format!("bucket {b} holds {n} > k = {}", self.config.k));
            }
            if bucket.meta.len() != n {
                return Err(format!(
                    "bucket {b}: {} metadata records for {n} entries",
                    bucket.meta.len()
                ));
            }
            for (p, m) in bucket.peers.iter().zip(&bucket.meta) {
                if m.key != closest::prefix_at(&closest::words(&p.id), b) {
                    return Err(format!("bucket {b}: stale distance key for {}", p.id));
                }
            }
            if closest::get_bit(&self.nonempty, b) == (n == 0) {
                return Err(format!("bucket {b}: non-empty mask out of step"));
            }
            for (i, p) in bucket.peers.iter().enumerate() {
                self.check_placement(b, p)?;
                if bucket
                    .peers
                    .get(..i)
                    .is_some_and(|s| s.iter().any(|q| q.id == p.id))
                {
                    return Err(format!("bucket {b}: {} listed twice", p.id));
                }
            }
            if let Some(p) = &bucket.pending {
                self.check_placement(b, p)?;
                if bucket.position(&p.id).is_some() {
                    return Err(format!("bucket {b}: pending {} is also an entry", p.id));
                }
                if n < self.config.k {
                    return Err(format!("bucket {b}: pending candidate with room to spare"));
                }
                if bucket.challenge.is_none() {
                    return Err(format!("bucket {b}: pending candidate with no challenge"));
                }
            }
            if let Some(id) = bucket.challenged() {
                if bucket.position(id).is_none() {
                    return Err(format!("bucket {b}: challenge on {id}, not an entry"));
                }
            }
        }
        if total != self.len {
            return Err(format!("len says {} but buckets hold {total}", self.len));
        }
        Ok(())
    }

    fn check_placement(&self, b: usize, p: &Peer) -> Result<(), String> {
        match self.local.bucket_index(&p.id) {
            None => Err(format!("bucket {b} holds the local id")),
            Some(right) if right != b => Err(format!("{} in bucket {b}, belongs in {right}", p.id)),
            Some(_) => Ok(()),
        }
    }

    fn bucket_of(&self, id: &NodeId) -> Option<&Bucket> {
        self.get_bucket(self.local.bucket_index(id)?)
    }

    /// Bucket `b`, if it was ever used (an unused one is empty).
    fn get_bucket(&self, b: usize) -> Option<&Bucket> {
        self.buckets.get((BUCKETS - 1).checked_sub(b)?)
    }
}

/// Bucket `b` (at most 255) of `buckets` (stored farthest first), made if
/// it was never used.
fn bucket_mut(buckets: &mut Vec<Bucket>, b: usize) -> Option<&mut Bucket> {
    let i = (BUCKETS - 1).checked_sub(b)?;
    // Exactly the buckets in use: a table gains one only a few times in
    // its life, and doubling would leave up to half the slots unused.
    buckets.reserve_exact((i + 1).saturating_sub(buckets.len()));
    while buckets.len() <= i {
        buckets.push(Bucket::new(BUCKETS - 1 - buckets.len()));
    }
    buckets.get_mut(i)
}

/// Bucket `b` of `buckets` if it was ever used: what only reads or
/// removes needs no new bucket.
fn existing_mut(buckets: &mut [Bucket], b: usize) -> Option<&mut Bucket> {
    buckets.get_mut((BUCKETS - 1).checked_sub(b)?)
}

/// Writes `peers` over `out` from the start, reusing the peers already
/// there; returns how many were written.
fn refill<'a>(out: &mut Vec<Peer>, peers: impl Iterator<Item = &'a Peer>) -> usize {
    let mut written = 0;
    for p in peers {
        match out.get_mut(written) {
            Some(slot) => slot.clone_from(p),
            None => out.push(p.clone()),
        }
        written += 1;
    }
    written
}
