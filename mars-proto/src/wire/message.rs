//! The eight messages and the structures inside them (WIRE.md, "Frame").

use crate::descriptor::Descriptor;
use crate::hash::Hash;
use crate::identity::Identity;
use crate::time::Timestamp;

pub use super::node_addr::NodeAddr;

/// A node as listed in FIND_NODE_RESULT and FIND_VALUE_RESULT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its identity.
    pub identity: Identity,
    /// Its address.
    pub addr: NodeAddr,
    /// When the lister last heard from it.
    pub last_seen: Timestamp,
}

/// PING (0x01): are you there?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// Must equal the TLS-authenticated identity of the connection.
    pub sender: Identity,
    /// Where the sender says it can be reached.
    pub sender_addr: NodeAddr,
}

/// PONG (0x81): yes, and this is the address you came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong {
    /// The responder.
    pub sender: Identity,
    /// The responder's address.
    pub sender_addr: NodeAddr,
    /// The requester's address as the responder saw it.
    pub observed_addr: NodeAddr,
}

/// STORE (0x02): keep this descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// Must equal the TLS-authenticated identity of the connection.
    pub sender: Identity,
    /// Where the sender says it can be reached.
    pub sender_addr: NodeAddr,
    /// The descriptor, not yet validated. Boxed so that every [`Message`]
    /// stays small: the decoder returns messages by value, and moving a
    /// 256-byte descriptor inline cost STORE_ACK and PING decodes ~20 %.
    pub descriptor: Box<Descriptor>,
}

/// STORE_ACK (0x82).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreAck {
    /// Whether the descriptor was stored.
    pub stored: bool,
    /// Why not, when refused.
    pub reason: Option<String>,
}

/// FIND_NODE (0x03): who is closest to `target`?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindNode {
    /// Must equal the TLS-authenticated identity of the connection.
    pub sender: Identity,
    /// Where the sender says it can be reached.
    pub sender_addr: NodeAddr,
    /// The key-space position asked about.
    pub target: Hash,
}

/// FIND_NODE_RESULT (0x83): up to K nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindNodeResult {
    /// The closest nodes the responder knows.
    pub nodes: Vec<NodeInfo>,
}

/// Optional filters of a FIND_VALUE; absent ones are left out on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Only descriptors of this schema.
    pub schema_hash: Option<Hash>,
    /// Only descriptors with `timestamp >= min_timestamp`.
    pub min_timestamp: Option<Timestamp>,
    /// Only descriptors by this publisher.
    pub publisher: Option<Identity>,
}

/// FIND_VALUE (0x04): descriptors at `key`, or else closer nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindValue {
    /// Must equal the TLS-authenticated identity of the connection.
    pub sender: Identity,
    /// Where the sender says it can be reached.
    pub sender_addr: NodeAddr,
    /// The routing key.
    pub key: Hash,
    /// Most descriptors wanted (reference servers clamp to 20).
    pub max_results: u16,
    /// Optional filters (boxed for the same reason as [`Store::descriptor`]).
    pub filters: Option<Box<Filters>>,
}

/// FIND_VALUE_RESULT (0x84): exactly one of descriptors or nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindValueResult {
    /// Descriptors the responder holds at the key (not yet validated).
    Descriptors(Vec<Descriptor>),
    /// The responder has none; these nodes are closer.
    Nodes(Vec<NodeInfo>),
}

/// Any of the eight messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// 0x01
    Ping(Ping),
    /// 0x81
    Pong(Pong),
    /// 0x02
    Store(Store),
    /// 0x82
    StoreAck(StoreAck),
    /// 0x03
    FindNode(FindNode),
    /// 0x83
    FindNodeResult(FindNodeResult),
    /// 0x04
    FindValue(FindValue),
    /// 0x84
    FindValueResult(FindValueResult),
}
