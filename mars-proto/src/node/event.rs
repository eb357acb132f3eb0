//! What the node tells its driver: events, query results, and ids.

use crate::descriptor::ValidDescriptor;
use crate::hash::Hash;
use crate::identity::Identity;
use crate::lookup::LookupStats;
use crate::routing::Peer;
use crate::wire::{DecodeError, NodeAddr, NodeInfo};

/// Names a command's query; its result comes back as [`Event::QueryDone`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryId(pub u64);

/// Names one outbound request; the driver hands it back with the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Replicas of one routing key after a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReplicas {
    /// The routing key.
    pub key: Hash,
    /// Nodes that acknowledged the STORE (this node included, if it is among the K closest).
    pub acked: usize,
    /// Nodes that refused it, with their reasons.
    pub refused: Vec<(Identity, String)>,
    /// STOREs that failed or timed out.
    pub failed: usize,
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryResult {
    /// Bootstrap finished; the routing table now holds this many peers.
    Bootstrap {
        /// Peers in the table.
        table_size: usize,
    },
    /// The closest nodes to a target that answered, nearest first.
    FindNode {
        /// Up to K nodes.
        peers: Vec<NodeInfo>,
    },
    /// Valid descriptors found at a key (filters applied, newest sequence
    /// per publisher+schema+topic), at most `max_results`.
    Discover {
        /// The descriptors, by id.
        descriptors: Vec<ValidDescriptor>,
        /// Descriptors received that failed validation (not included).
        rejected: usize,
    },
    /// A publish (or revocation) reached these replicas per routing key.
    Publish {
        /// The descriptor's id.
        id: Hash,
        /// Per routing key.
        keys: Vec<KeyReplicas>,
    },
    /// A peer answered a PING.
    Ping {
        /// Its identity (from its certificate).
        identity: Identity,
        /// Our address as it saw it.
        observed_addr: NodeAddr,
    },
    /// The query could not be carried out.
    Failed(QueryError),
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// No peer to ask: empty routing table and no reachable seed.
    #[error("no route: no peer answered")]
    NoPeers,
    /// The single peer asked (PING) did not answer.
    #[error("peer at {addr} did not answer: {reason}")]
    Unreachable {
        /// Where.
        addr: NodeAddr,
        /// Why, as the transport reported it.
        reason: String,
    },
}

/// Something the driver (or its user) may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A command finished.
    QueryDone {
        /// The command's id.
        id: QueryId,
        /// Its answer.
        result: QueryResult,
        /// Lookup counters (summed over a publish's keys).
        stats: LookupStats,
    },
    /// A peer entered the routing table (it answered us at its address).
    PeerAdded(Peer),
    /// A peer left the routing table (failed a liveness check).
    PeerEvicted(Peer),
    /// A descriptor was accepted into the store.
    DescriptorStored {
        /// Its id.
        id: Hash,
        /// Its publisher.
        publisher: Identity,
    },
    /// Descriptors expired and were removed.
    DescriptorsExpired {
        /// How many.
        count: usize,
    },
    /// One of our own descriptors was republished.
    Republished {
        /// The new descriptor's id.
        id: Hash,
        /// Per routing key.
        keys: Vec<KeyReplicas>,
    },
    /// A peer sent something it should not have.
    PeerMisbehaved {
        /// Who (as authenticated by TLS).
        peer: Identity,
        /// What.
        reason: Misbehaviour,
    },
}

/// What a peer did wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misbehaviour {
    /// Its response did not decode.
    #[error("malformed response: {0}")]
    MalformedResponse(DecodeError),
    /// Its response was of the wrong type or carried the wrong msg_id.
    #[error("response does not answer the request (expected {expected:?})")]
    UnmatchedResponse {
        /// The response type expected.
        expected: crate::wire::MessageType,
    },
    /// It returned a descriptor that failed validation.
    #[error("returned an invalid descriptor: {0}")]
    InvalidDescriptor(crate::descriptor::ValidationError),
    /// Its request's `sender` was not its TLS identity.
    #[error("request claims sender {claimed}, but the connection is authenticated as someone else")]
    SpoofedSender {
        /// The identity the request claimed.
        claimed: Identity,
    },
}
