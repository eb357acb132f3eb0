//! One k-bucket: entries least-recently-seen first, plus the replacement
//! state of a full bucket.

use crate::node_id::NodeId;
use crate::time::Timestamp;

use super::Peer;
use super::closest::{prefix_at, words};

/// What the table keeps beside each entry: 16 bytes, so that scanning a
/// bucket to answer FIND_NODE (the hot path, and mostly cache misses in a
/// big simulation) reads few cache lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta {
    /// The 64 bits of the entry's id from its bucket's bit down
    /// ([`prefix_at`]): XORed with the same bits of a target, they order
    /// the bucket's entries by distance to it but for rare ties.
    pub(super) key: u64,
    /// Consecutive failed requests since the entry last answered.
    pub(super) failures: u32,
}

impl Meta {
    pub(super) fn new(id: &NodeId, bucket: usize) -> Self {
        Meta {
            key: prefix_at(&words(id), bucket),
            failures: 0,
        }
    }
}

/// A k-bucket. `peers` and `meta` are parallel vectors so the table can
/// hand out `&[Peer]` directly.
#[derive(Debug)]
pub(super) struct Bucket {
    /// Which bucket this is (0–255).
    index: u8,
    /// Entries, least-recently-seen first.
    pub(super) peers: Vec<Peer>,
    /// Per-entry bookkeeping, at the same index as its peer.
    pub(super) meta: Vec<Meta>,
    /// The newest peer that answered while the bucket was full. Only while
    /// the bucket is full and a challenge is in flight. Boxed, like
    /// `challenge`: both are rare, and a table holds a bucket per
    /// populated distance (measured in mars-sim: 232 bytes a bucket inline,
    /// 80 boxed).
    pub(super) pending: Option<Box<Peer>>,
    /// The entry being PINGed to decide its place against `pending`, and
    /// when the challenge was issued.
    pub(super) challenge: Option<Box<(NodeId, Timestamp)>>,
    /// Last contact or lookup in this bucket, for refresh.
    pub(super) last_activity: Timestamp,
}

impl Bucket {
    /// An empty bucket number `index` (0–255).
    pub(super) fn new(index: usize) -> Self {
        Bucket {
            index: u8::try_from(index).unwrap_or(u8::MAX),
            peers: Vec::new(),
            meta: Vec::new(),
            pending: None,
            challenge: None,
            last_activity: Timestamp::default(),
        }
    }

    /// Which bucket this is.
    pub(super) fn index(&self) -> usize {
        usize::from(self.index)
    }

    /// Index of the entry with `id`: a scan of at most k distance keys
    /// (16 bytes apart, where the entries are 120), checking the whole id
    /// only where the key matches, so a miss — every request from a peer
    /// not in the table asks — reads a few cache lines instead of the
    /// whole bucket.
    pub(super) fn position(&self, id: &NodeId) -> Option<usize> {
        let key = prefix_at(&words(id), self.index());
        self.meta
            .iter()
            .enumerate()
            .filter(|(_, m)| m.key == key)
            .map(|(i, _)| i)
            .find(|&i| self.peers.get(i).is_some_and(|p| p.id == *id))
    }

    /// The failure counter of entry `i`.
    pub(super) fn failures_mut(&mut self, i: usize) -> Option<&mut u32> {
        self.meta.get_mut(i).map(|m| &mut m.failures)
    }

    /// Moves entry `i` to the tail (most recently seen).
    pub(super) fn move_to_tail(&mut self, i: usize) {
        if let Some(peers) = self.peers.get_mut(i..) {
            peers.rotate_left(1);
        }
        if let Some(meta) = self.meta.get_mut(i..) {
            meta.rotate_left(1);
        }
    }

    /// Appends a fresh entry at the tail; `k` is the bucket's capacity.
    pub(super) fn push(&mut self, peer: Peer, k: usize) {
        self.reserve_one(k);
        self.meta.push(Meta::new(&peer.id, self.index()));
        self.peers.push(peer);
    }

    /// Room for one more entry, growing the vectors 4, 8, 16, … but never
    /// past `k`: a full bucket of k = 20 holds 20 slots, not the 32 that
    /// doubling gives (in mars-sim, a third of the memory of a node).
    fn reserve_one(&mut self, k: usize) {
        let len = self.peers.len();
        if len < self.peers.capacity() && len < self.meta.capacity() {
            return;
        }
        let target = (len * 2).max(4).min(k.max(len + 1));
        self.peers.reserve_exact(target - len);
        self.meta.reserve_exact(target - len);
    }

    /// Inserts a fresh entry where its `last_seen` puts it, keeping the
    /// bucket least-recently-seen first: a promoted candidate may have
    /// answered before the entries refreshed since.
    pub(super) fn insert_by_last_seen(&mut self, peer: Peer, k: usize) {
        self.reserve_one(k);
        let at = self
            .peers
            .iter()
            .position(|p| p.last_seen > peer.last_seen)
            .unwrap_or(self.peers.len());
        self.meta
            .insert(at.min(self.meta.len()), Meta::new(&peer.id, self.index()));
        self.peers.insert(at, peer);
    }

    /// Removes entry `i` (if any), clearing a challenge aimed at it.
    pub(super) fn remove_at(&mut self, i: usize) -> Option<Peer> {
        if i >= self.peers.len() {
            return None;
        }
        let peer = self.peers.remove(i);
        if i < self.meta.len() {
            self.meta.remove(i);
        }
        if matches!(self.challenge.as_deref(), Some((id, _)) if *id == peer.id) {
            self.challenge = None;
        }
        Some(peer)
    }

    /// Whether the pending candidate has `id`.
    pub(super) fn pending_is(&self, id: &NodeId) -> bool {
        self.pending.as_ref().is_some_and(|p| p.id == *id)
    }

    /// The id under challenge, if any.
    pub(super) fn challenged(&self) -> Option<&NodeId> {
        self.challenge.as_deref().map(|(id, _)| id)
    }
}
