//! An optional memo of node ids, shared by the nodes of one process.
//!
//! A node id is BLAKE3 of an identity's key, and a node needs the id of
//! every identity it meets: each of the K nodes listed in every FIND_NODE
//! answer becomes a lookup candidate ordered by its id's distance to the
//! target. Those are the same few thousand identities over and over, so a
//! process that runs many nodes (the simulator; measured at 10,000 nodes:
//! ~9 % of its CPU was BLAKE3 of identities) or one busy node saves that
//! work by remembering them.
//!
//! The memo is direct-mapped: each identity has one slot (chosen by its
//! first key bytes), an entry is used only when the slot holds exactly that
//! identity, and a newcomer overwrites the slot. So an answer is always
//! BLAKE3 of the identity asked about, whatever the memo holds; crafted
//! keys that share a slot only make each other miss. Nodes use it when
//! [`Config::node_id_cache`](crate::Config::node_id_cache) is set; by
//! default there is none.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::identity::Identity;
use crate::node_id::NodeId;

/// Independently locked parts, so nodes on several threads rarely wait for
/// each other.
const SHARDS: usize = 16;

/// One remembered identity and its id: 64 bytes, aligned to a cache line
/// so that a lookup costs one miss, not two (unaligned, most slots
/// straddled two lines: measured in mars-sim at 100,000 nodes, where the
/// memo is 32 MiB and nearly every lookup misses the caches).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    key: [u8; 32],
    id: NodeId,
}

struct Shard {
    slots: Vec<Slot>,
    hits: u64,
    misses: u64,
}

/// A bounded, thread-safe memo of identity → node id. Cloning shares the
/// same memo.
#[derive(Clone)]
pub struct NodeIdCache {
    shards: Arc<[Mutex<Shard>]>,
    /// Slots per shard, minus one (a power of two).
    mask: usize,
}

impl fmt::Debug for NodeIdCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (hits, misses) = self.stats();
        f.debug_struct("NodeIdCache")
            .field("capacity", &self.capacity())
            .field("hits", &hits)
            .field("misses", &misses)
            .finish()
    }
}

impl NodeIdCache {
    /// A memo of about `capacity` identities (rounded up to a power of two,
    /// at least 16), 64 bytes each. Twice the number of distinct nodes
    /// expected keeps most of them.
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1).next_power_of_two();
        // Every slot starts as the all-zero key with its true id, so an
        // empty slot needs no flag and can never give a wrong answer.
        let zero = Identity::from_ed25519_bytes([0; 32]);
        let empty = Slot {
            key: [0; 32],
            id: zero.node_id(),
        };
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    slots: vec![empty; per_shard],
                    hits: 0,
                    misses: 0,
                })
            })
            .collect();
        NodeIdCache {
            shards,
            mask: per_shard - 1,
        }
    }

    /// The node id of `identity`: [`Identity::node_id`], remembered.
    pub fn node_id(&self, identity: &Identity) -> NodeId {
        let key = identity.public_key();
        let mut first = [0u8; 8];
        first.copy_from_slice(&key[..8]);
        let h = u64::from_le_bytes(first) as usize;
        let Some(shard) = self.shards.get(h % SHARDS) else {
            return identity.node_id();
        };
        let mut shard = lock(shard);
        let i = (h / SHARDS) & self.mask;
        match shard.slots.get(i) {
            Some(s) if s.key == *key => {
                let id = s.id;
                shard.hits += 1;
                id
            }
            _ => {
                let id = identity.node_id();
                shard.misses += 1;
                if let Some(s) = shard.slots.get_mut(i) {
                    *s = Slot { key: *key, id };
                }
                id
            }
        }
    }

    /// Identities the memo can hold.
    pub fn capacity(&self) -> usize {
        (self.mask + 1) * SHARDS
    }

    /// Lookups answered from the memo, and lookups that hashed.
    pub fn stats(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(h, m), s| {
            let s = lock(s);
            (h + s.hits, m + s.misses)
        })
    }
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // Every slot is consistent at all times (written whole), so a panic
    // elsewhere cannot leave a wrong entry behind.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn answers_are_always_the_hash_of_the_identity_asked() {
        // A tiny memo: identities collide and evict each other constantly.
        let cache = NodeIdCache::new(1);
        assert_eq!(cache.capacity(), 16);
        let ids: Vec<Identity> = (0..200u8)
            .map(|n| Keypair::from_secret_bytes(&[n; 32]).identity())
            .chain([Identity::from_ed25519_bytes([0; 32])])
            .collect();
        for _ in 0..3 {
            for i in &ids {
                assert_eq!(cache.node_id(i), i.node_id());
            }
        }
        // The same first bytes, different keys: they share a slot.
        let mut a = [7u8; 32];
        let b = a;
        a[31] = 8;
        let (a, b) = (
            Identity::from_ed25519_bytes(a),
            Identity::from_ed25519_bytes(b),
        );
        for _ in 0..2 {
            assert_eq!(cache.node_id(&a), a.node_id());
            assert_eq!(cache.node_id(&b), b.node_id());
        }
    }

    #[test]
    fn repeated_identities_hit() {
        let cache = NodeIdCache::new(1 << 12);
        let ids: Vec<Identity> = (0..100u8)
            .map(|n| Keypair::from_secret_bytes(&[n; 32]).identity())
            .collect();
        for _ in 0..5 {
            for i in &ids {
                cache.node_id(i);
            }
        }
        let (hits, misses) = cache.stats();
        assert_eq!(hits + misses, 500);
        assert!(hits >= 390, "{hits} hits, {misses} misses");
        let shared = cache.clone();
        shared.node_id(&ids[0]);
        assert_eq!(cache.stats().0, hits + 1);
    }
}
