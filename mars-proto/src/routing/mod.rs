//! The Kademlia routing table: 256 k-buckets by XOR-distance prefix
//! (WIRE.md, "DHT constants").
//!
//! The table is a plain data structure driven by the node: it never sends
//! anything. When it wants a liveness check it *says so* in an outcome
//! ([`ContactOutcome::Challenge`]) and the node reports the answer back
//! ([`RoutingTable::on_challenge_result`]). Every newcomer that does not get
//! in is named in an outcome, so the node can log or count it.
//!
//! ## Admission
//! [`RoutingTable::on_contact`] is called only for a peer that *answered one
//! of our requests* at the address it carries (WIRE.md, "How the live network
//! behaves": a requester never enters the table on the strength of a request
//! alone). Known peers move to the tail of their bucket (least-recently-seen
//! first); a newcomer takes a free slot; in a full bucket it becomes the
//! bucket's single *pending candidate* and the oldest entry is challenged.
//! The oldest stays if it answers (the candidate is dropped), and is replaced
//! by the candidate if it does not.
//!
//! ## Failure policy
//! [`RoutingTable::on_failure`] counts consecutive failed requests per entry;
//! any successful contact resets the count.
//! - An entry with at least one failure is *stale*: it stays in the table,
//!   but [`RoutingTable::closest_fresh`] (what a node hands out in
//!   FIND_NODE answers and starts its own lookups from) lists fresh peers
//!   before stale ones, because a dead entry costs a reference peer a 30 s
//!   timeout.
//! - If the bucket has a pending candidate, one failure is enough: the entry
//!   is removed and the candidate takes its place.
//! - Otherwise the entry is removed after [`RoutingConfig::max_failures`]
//!   consecutive failures (default 5, the Kademlia paper's number), since a
//!   peer that failed that often with no success in between is gone, and
//!   forgetting it costs nothing: it re-enters the moment it answers again.
//!
//! ## Cost
//! Lookups by id are O(k) (one bucket scanned). [`RoutingTable::closest`]
//! visits buckets in XOR-distance order and sorts within one bucket at a
//! time, so answering FIND_NODE costs O(n + k log k) plus a 256-bit mask
//! scan, with no allocation beyond the output (none at all through
//! [`RoutingTable::closest_iter`] or a reused buffer in
//! [`RoutingTable::closest_into`]).

mod bucket;
mod closest;
mod table;

#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::identity::Identity;
use crate::node_id::NodeId;
use crate::time::Timestamp;
use crate::wire::NodeAddr;

pub use closest::Closest;
pub use table::RoutingTable;

/// Bucket capacity K (WIRE.md, "DHT constants"): also the number of nodes a
/// FIND_NODE answer lists and the replication factor of STORE.
pub const K: usize = 20;

/// Number of buckets: one per possible common-prefix length of two distinct
/// 256-bit ids.
pub const BUCKETS: usize = 256;

/// Largest bucket capacity a table accepts. It bounds the per-bucket sort
/// buffer [`Closest`] keeps on the stack, so the hot path never allocates;
/// the protocol uses 20.
pub const MAX_K: usize = 256;

/// A bucket with no activity for this long is refreshed with a lookup of a
/// random id inside it (WIRE.md, "DHT constants": 1 h).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);

/// A peer as the routing table knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its identity, as authenticated by TLS when it answered us.
    pub identity: Identity,
    /// Its DHT id, BLAKE3 of the identity; cached because every distance
    /// computation needs it. The table keys on this field alone, so build
    /// peers with [`Peer::new`] to keep the two in step.
    pub id: NodeId,
    /// The address at which it answered us.
    pub addr: NodeAddr,
    /// When it last answered us.
    pub last_seen: Timestamp,
}

impl Peer {
    /// A peer with its id computed from `identity`, so the two cannot
    /// disagree.
    pub fn new(identity: Identity, addr: NodeAddr, last_seen: Timestamp) -> Self {
        Peer {
            identity,
            id: identity.node_id(),
            addr,
            last_seen,
        }
    }
}

/// Tuning of a [`RoutingTable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Bucket capacity; clamped to `1..=MAX_K`.
    pub k: usize,
    /// Consecutive failures after which an entry is removed even though no
    /// candidate waits to replace it. `u32::MAX` keeps stale entries until a
    /// replacement turns up.
    pub max_failures: u32,
    /// How long a challenge may stay unanswered before a new contact may
    /// issue another one. A safety net in case the node never reports a
    /// result; it must exceed the node's PING timeout.
    pub challenge_timeout: Duration,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            k: K,
            max_failures: 5,
            challenge_timeout: Duration::from_secs(30),
        }
    }
}

/// What [`RoutingTable::on_contact`] did with a peer that answered us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactOutcome {
    /// A new entry, at the tail of its bucket.
    Added,
    /// A known entry: moved to the tail, address and last-seen refreshed,
    /// failure count reset.
    Updated,
    /// The bucket is full and a challenge is already in flight: the peer is
    /// now the bucket's pending candidate.
    Pending {
        /// The older pending candidate it replaced, if another peer held
        /// that place.
        displaced: Option<Peer>,
    },
    /// The bucket is full: the peer is now the bucket's pending candidate,
    /// and the node should PING `oldest` and report the answer through
    /// [`RoutingTable::on_challenge_result`].
    Challenge {
        /// The least-recently-seen entry of the bucket.
        oldest: Peer,
        /// The older pending candidate it replaced (only after an expired
        /// challenge).
        displaced: Option<Peer>,
    },
    /// The peer is this node; the table never holds it.
    IsLocal,
}

/// What [`RoutingTable::on_challenge_result`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeOutcome {
    /// The challenged entry answered: it moved to the tail of its bucket.
    Kept {
        /// The pending candidate, which lost its chance.
        dropped: Option<Peer>,
    },
    /// The challenged entry did not answer: it is gone.
    Replaced {
        /// The entry removed.
        evicted: Peer,
        /// The pending candidate, now at the tail of the bucket.
        added: Option<Peer>,
    },
    /// No challenge for that id is in flight (already resolved, the entry
    /// was removed meanwhile, or never challenged): nothing changed.
    NotChallenged,
}

/// What [`RoutingTable::on_failure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureOutcome {
    /// The id is neither an entry nor a pending candidate: nothing changed.
    Unknown,
    /// The entry stays, marked stale, with this many consecutive failures.
    Stale {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// The entry was removed and the bucket's pending candidate took its
    /// place.
    Replaced {
        /// The failed entry.
        removed: Peer,
        /// The former pending candidate, now at the tail of the bucket.
        added: Peer,
    },
    /// The entry reached [`RoutingConfig::max_failures`] and was removed.
    Removed {
        /// The failed entry.
        removed: Peer,
    },
    /// The id was a bucket's pending candidate: it is no longer one.
    PendingDropped {
        /// The former candidate.
        dropped: Peer,
    },
}

/// What [`RoutingTable::remove`] took out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The peer removed (an entry, or a pending candidate).
    pub peer: Peer,
    /// The bucket's pending candidate, promoted into the freed slot.
    pub promoted: Option<Peer>,
}
