//! A node's state at one instant, copied out of the driver for metrics and
//! health checks (`NodeHandle::snapshot`).

use std::time::Duration;

use mars_proto::Identity;
use mars_proto::node::NodeStats;
use mars_proto::quic::{Host, HostStats};
use mars_proto::store::DescriptorStore;

/// Counters and sizes of a running node, taken in one driver step so they
/// agree with each other. Counters are cumulative since the node started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The node's identity.
    pub identity: Identity,
    /// Time since the node started.
    pub uptime: Duration,
    /// Transport counters (datagrams, connections, requests, refusals).
    pub host: HostStats,
    /// DHT counters (requests by type, refusals by code, requests sent).
    pub node: NodeStats,
    /// Peers in the routing table.
    pub routing_table: usize,
    /// Descriptors held in the store.
    pub descriptors: usize,
    /// Bytes held in the store, as its capacity rule charges them.
    pub stored_bytes: u64,
    /// Open QUIC connections (including ones handshaking or closing).
    pub connections: usize,
    /// Commands (lookups, publishes, pings) in progress.
    pub queries_in_progress: usize,
    /// Reads the storage engine could not serve (a corrupt record on
    /// disk); the descriptor was treated as absent.
    pub store_read_errors: u64,
    /// Writes (stores, sweeps) the storage engine refused or failed.
    pub store_failed_writes: u64,
}

impl Snapshot {
    /// Whether the store has failed since start (corrupt reads, failed
    /// writes or flushes): the node serves, but an operator must look.
    pub fn storage_failing(&self) -> bool {
        self.store_read_errors > 0
            || self.store_failed_writes > 0
            || self.host.storage_flush_failures > 0
    }

    /// Copies what is to be seen of `host`.
    pub(crate) fn of(host: &Host, uptime: Duration) -> Self {
        let node = host.node();
        Snapshot {
            identity: host.identity(),
            uptime,
            host: host.stats().clone(),
            node: node.stats().clone(),
            routing_table: node.routing_table().len(),
            descriptors: node.storage().len(),
            stored_bytes: node.storage().total_bytes(),
            connections: host.connections(),
            queries_in_progress: node.queries_in_progress(),
            store_read_errors: node.storage().store().read_errors(),
            store_failed_writes: node.storage().failed_writes(),
        }
    }
}
