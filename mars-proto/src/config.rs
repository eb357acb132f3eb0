//! Node configuration, with the protocol's defaults.

use std::time::Duration;

use crate::address_policy::AddressPolicy;
use crate::descriptor::SignatureCache;
use crate::node_id_cache::NodeIdCache;
use crate::store::StoreConfig;

/// How a [`Node`](crate::node::Node) behaves. `Config::default()` is a plain
/// public DHT node; [`Config::hub`] serves clients; [`Config::testing`]
/// accepts loopback and private addresses (tests and the simulator).
#[derive(Debug, Clone)]
pub struct Config {
    /// Bucket size and replication factor, K (WIRE.md: 20).
    pub k: usize,
    /// Requests in flight per lookup, α (WIRE.md: 3).
    pub alpha: usize,
    /// How long a request may take before its peer counts as failed. Short,
    /// so one dead peer costs a fraction of a lookup, not QUIC's 30 s idle.
    pub request_timeout: Duration,
    /// After this long without an answer, a lookup request stops holding one
    /// of the α slots (it is still awaited until `request_timeout`), so dead
    /// peers overlap instead of costing a timeout each.
    pub lookup_slow_after: Duration,
    /// A query still running after this long completes with what it has
    /// (partial results, `LookupStats::timed_out` set). Lookups normally end
    /// long before, since every request times out after `request_timeout`.
    pub query_timeout: Duration,
    /// A bucket with no activity for this long is refreshed (WIRE.md: 1 h).
    pub refresh_interval: Duration,
    /// Most buckets refreshed (one lookup each, farthest first) right after
    /// a bootstrap, so a new node learns the whole key space at once rather
    /// than over the next hour. Default 16; a simulator joining thousands of
    /// nodes at once may lower it to trade table completeness for speed.
    pub bootstrap_refreshes: usize,
    /// Accept any valid STORE whatever its distance and replicate it to the
    /// K closest nodes of each routing key. Reference clients publish with a
    /// single STORE to the node they know, so a node serving clients needs it.
    pub publish_proxy: bool,
    /// Which peer addresses may enter the table, be dialled or handed out.
    pub address_policy: AddressPolicy,
    /// Most FIND_VALUE results served per request (the reference clamps to 20).
    pub max_results_served: u16,
    /// Most queries (lookups, publishes, pings) in progress at once.
    pub max_queries: usize,
    /// Most requests waiting in `poll_request` plus in flight.
    pub max_requests: usize,
    /// Most events waiting in `poll_event`; beyond it the oldest
    /// informational events are dropped and counted (query results never are).
    pub max_events: usize,
    /// Most requesters waiting to be checked with a PING before entering the table.
    pub verify_queue: usize,
    /// Most such checks started per second.
    pub verify_per_sec: u32,
    /// Most proxied descriptors waiting to be replicated.
    pub replication_queue: usize,
    /// Descriptor store limits and rules.
    pub store: StoreConfig,
    /// A memo of verified descriptor signatures shared by the nodes of one
    /// process (see [`SignatureCache`]): each distinct descriptor is then
    /// verified once, not once per replica or lookup answer. Validation
    /// results are unchanged. Default: none.
    pub signature_cache: Option<SignatureCache>,
    /// A memo of node ids (BLAKE3 of identities) shared by the nodes of one
    /// process (see [`NodeIdCache`]): every lookup candidate needs its id,
    /// and the same identities come back in answer after answer. Ids are
    /// unchanged. Default: none.
    pub node_id_cache: Option<NodeIdCache>,
    /// Most publisher keys the node keeps decompressed (its
    /// [`KeyCache`](crate::KeyCache)), so that a publisher seen before
    /// costs one signature check without the key decompression (about
    /// 15 % of it). About 350 bytes per key, allocated as keys arrive.
    /// Default [`Config::DEFAULT_KEY_CACHE_CAPACITY`]; 0 turns it off.
    pub key_cache_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            k: 20,
            alpha: 3,
            request_timeout: Duration::from_secs(5),
            lookup_slow_after: Duration::from_secs(1),
            query_timeout: Duration::from_secs(60),
            refresh_interval: Duration::from_secs(3600),
            bootstrap_refreshes: 16,
            publish_proxy: false,
            address_policy: AddressPolicy::public(),
            max_results_served: 20,
            max_queries: 256,
            max_requests: 4096,
            max_events: 4096,
            verify_queue: 256,
            verify_per_sec: 20,
            replication_queue: 1024,
            store: StoreConfig::default(),
            signature_cache: None,
            node_id_cache: None,
            key_cache_capacity: Self::DEFAULT_KEY_CACHE_CAPACITY,
        }
    }
}

impl Config {
    /// Default [`key_cache_capacity`](Self::key_cache_capacity): 4,096 keys,
    /// about 1.4 MiB when full.
    pub const DEFAULT_KEY_CACHE_CAPACITY: usize = 4096;

    /// A node that serves clients: the publish proxy is on.
    pub fn hub() -> Self {
        Config {
            publish_proxy: true,
            ..Config::default()
        }
    }

    /// Loopback and private addresses allowed: for tests and simulations.
    pub fn testing() -> Self {
        Config {
            address_policy: AddressPolicy::permissive(),
            ..Config::default()
        }
    }
}
