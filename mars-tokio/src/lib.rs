//! # mars-tokio — a MARS node on tokio
//!
//! [`mars_proto::quic::Host`] is the whole node — DHT, QUIC, TLS — as a
//! Sans-IO state machine. This crate drives it on tokio with one UDP socket,
//! one timer and a command channel, and gives it an async handle:
//!
//! ```no_run
//! # async fn demo() -> Result<(), mars_tokio::Error> {
//! use mars_tokio::{Node, NodeConfig};
//! use mars_proto::{Keypair, schema};
//!
//! let node = Node::spawn(NodeConfig::new("127.0.0.1:0".parse().unwrap())).await?;
//! node.bootstrap(vec!["127.0.0.1:4433".parse().unwrap()]).await?;
//! let found = node.discover(schema::routing_key("compute"), None, 20).await?;
//! println!("{} providers", found.len());
//! node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The runtime-specific code is `runtime.rs` (socket, timer, channel loop,
//! clock); `driver.rs` (commands and events) works on any executor, so a
//! smol driver is a copy of `runtime.rs` with the socket and timer swapped.
//!
//! Observability: [`NodeHandle::snapshot`] copies out the node's counters;
//! [`metrics::Metrics`] renders them (and the command latencies) for
//! Prometheus, and [`http::serve`] serves `/metrics` and `/health`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod driver;
pub mod http;
pub mod hub;
pub mod key_file;
pub mod metrics;
mod runtime;
mod snapshot;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use mars_proto::node::{CommandError, KeyReplicas, QueryError, QueryResult, TransportError};
use mars_proto::quic::{HostConfig, RawResponse, TlsSetupError};
use mars_proto::wire::{Filters, NodeAddr, NodeInfo};
use mars_proto::{Config, Descriptor, Hash, Identity, Keypair, NodeId, ValidDescriptor};

use driver::{Command, QueryFn};
use metrics::{CommandKind, CommandLatency};
pub use runtime::unix_now;
pub use snapshot::Snapshot;

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The UDP address to bind (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// The address to advertise to peers; `None` advertises the bound
    /// address. Short-lived clients advertise an undialable one (port 0),
    /// so no peer keeps or hands out a dead entry (WIRE.md).
    pub advertise: Option<NodeAddr>,
    /// The node's key; its identity is the public key.
    pub keypair: Keypair,
    /// Node and transport settings.
    pub host: HostConfig,
    /// Seed of the node's randomness; `None` derives one from the clock.
    pub seed: Option<u64>,
}

impl NodeConfig {
    /// A node on `listen` with a fresh key and the default (public mesh)
    /// settings; loopback and private addresses are allowed when `listen`
    /// is one of them.
    pub fn new(listen: SocketAddr) -> Self {
        let node = if is_private_ip(listen.ip()) {
            Config::testing()
        } else {
            Config::default()
        };
        NodeConfig {
            listen,
            advertise: None,
            keypair: generate_keypair(),
            host: HostConfig::with_node(node),
            seed: None,
        }
    }
}

/// Whether `ip` is loopback, private or link-local: a node listening on
/// one lives in a lab or a LAN and must accept peers there too.
pub fn is_private_ip(ip: std::net::IpAddr) -> bool {
    ip.is_loopback()
        || match ip {
            std::net::IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
            std::net::IpAddr::V6(v6) => v6.is_unique_local() || v6.is_unicast_link_local(),
        }
}

/// A fresh key from the operating system's randomness.
pub fn generate_keypair() -> Keypair {
    use rand::RngCore;
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    Keypair::from_secret_bytes(&secret)
}

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be bound or used.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// TLS could not be set up with the key.
    #[error("{0}")]
    Tls(#[from] TlsSetupError),
    /// The node refused the command.
    #[error("{0}")]
    Command(#[from] CommandError),
    /// The command ran and failed.
    #[error("{0}")]
    Query(#[from] QueryError),
    /// A request got no response.
    #[error("{0}")]
    Transport(#[from] TransportError),
    /// The node has shut down.
    #[error("the node has shut down")]
    Stopped,
}

/// Starts nodes.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Binds the socket and starts the node's task on the current tokio
    /// runtime.
    pub async fn spawn(config: NodeConfig) -> Result<NodeHandle, Error> {
        runtime::spawn(config, None).await
    }

    /// [`spawn`](Node::spawn) with a storage engine of your choice (the
    /// hub's LMDB store); one that already holds descriptors is resumed.
    pub async fn spawn_with_store(
        config: NodeConfig,
        store: mars_proto::store::BoxedStore,
    ) -> Result<NodeHandle, Error> {
        runtime::spawn(config, Some(store)).await
    }
}

/// Talks to a running node. Cheap to clone; the node stops at
/// [`shutdown`](NodeHandle::shutdown) or when every handle is dropped.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Command>,
    local_addr: SocketAddr,
    identity: Identity,
    latency: Arc<CommandLatency>,
}

impl NodeHandle {
    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The node's identity.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// The driver's command latencies (shared with `Metrics`).
    pub(crate) fn latency(&self) -> Arc<CommandLatency> {
        Arc::clone(&self.latency)
    }

    /// The node's counters and sizes, taken in one driver step.
    pub async fn snapshot(&self) -> Result<Snapshot, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Snapshot(reply))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    async fn query(&self, kind: CommandKind, f: QueryFn) -> Result<QueryResult, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Query(kind, f, reply))
            .await
            .map_err(|_| Error::Stopped)?;
        match rx.await.map_err(|_| Error::Stopped)?? {
            QueryResult::Failed(e) => Err(Error::Query(e)),
            r => Ok(r),
        }
    }

    /// Joins the mesh through `seeds`; returns the routing table's size.
    pub async fn bootstrap(&self, seeds: Vec<SocketAddr>) -> Result<usize, Error> {
        let seeds: Vec<NodeAddr> = seeds
            .into_iter()
            .map(|s| NodeAddr::quic(s.to_string()))
            .collect();
        match self
            .query(
                CommandKind::Bootstrap,
                Box::new(move |n, ts| n.bootstrap(ts, seeds)),
            )
            .await?
        {
            QueryResult::Bootstrap { table_size } => Ok(table_size),
            _ => Err(Error::Stopped),
        }
    }

    /// Publishes a descriptor at the K closest nodes of each of its routing
    /// keys; returns the replicas per key.
    pub async fn publish(&self, descriptor: Descriptor) -> Result<Vec<KeyReplicas>, Error> {
        match self
            .query(
                CommandKind::Publish,
                Box::new(move |n, ts| n.publish(ts, descriptor)),
            )
            .await?
        {
            QueryResult::Publish { keys, .. } => Ok(keys),
            _ => Err(Error::Stopped),
        }
    }

    /// Finds valid descriptors at a routing key, newest first.
    pub async fn discover(
        &self,
        key: Hash,
        filters: Option<Filters>,
        max_results: u16,
    ) -> Result<Vec<ValidDescriptor>, Error> {
        match self
            .query(
                CommandKind::Discover,
                Box::new(move |n, ts| n.discover(ts, key, filters, max_results)),
            )
            .await?
        {
            QueryResult::Discover { descriptors, .. } => Ok(descriptors),
            _ => Err(Error::Stopped),
        }
    }

    /// Pings a node; returns its identity (from its certificate).
    pub async fn ping(&self, addr: SocketAddr) -> Result<Identity, Error> {
        let addr = NodeAddr::quic(addr.to_string());
        match self
            .query(CommandKind::Ping, Box::new(move |n, ts| n.ping(ts, addr)))
            .await?
        {
            QueryResult::Ping { identity, .. } => Ok(identity),
            _ => Err(Error::Stopped),
        }
    }

    /// The closest nodes to `target` that answered, nearest first.
    pub async fn find_node(&self, target: NodeId) -> Result<Vec<NodeInfo>, Error> {
        match self
            .query(
                CommandKind::FindNode,
                Box::new(move |n, ts| n.find_node(ts, target)),
            )
            .await?
        {
            QueryResult::FindNode { peers } => Ok(peers),
            _ => Err(Error::Stopped),
        }
    }

    /// Withdraws one of this node's publications everywhere (publishes a
    /// signed `core/revocation`).
    pub async fn revoke(&self, id: Hash) -> Result<Vec<KeyReplicas>, Error> {
        match self
            .query(
                CommandKind::Revoke,
                Box::new(move |n, ts| n.revoke(ts, &id)),
            )
            .await?
        {
            QueryResult::Publish { keys, .. } => Ok(keys),
            _ => Err(Error::Stopped),
        }
    }

    /// Peers in the routing table.
    pub async fn routing_table_len(&self) -> Result<usize, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::TableLen(reply))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Sends one request frame to `to` outside the node's logic and returns
    /// the response frame undecoded (tools, load generators).
    pub async fn request(
        &self,
        to: SocketAddr,
        expect: Option<Identity>,
        frame: Vec<u8>,
    ) -> Result<RawResponse, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Raw {
                to,
                expect,
                frame,
                reply,
            })
            .await
            .map_err(|_| Error::Stopped)?;
        Ok(rx.await.map_err(|_| Error::Stopped)??)
    }

    /// Closes the node's connections and stops it (waits at most a short
    /// grace period for the peers to be told).
    pub async fn shutdown(&self) {
        self.shutdown_gracefully(std::time::Duration::ZERO).await;
    }

    /// Stops accepting connections, waits up to `grace` for the answers
    /// to requests in flight to be delivered, then closes the connections,
    /// flushes the store and stops. Returns when the node has stopped.
    pub async fn shutdown_gracefully(&self, grace: std::time::Duration) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(grace, reply)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The routing table's peers (identity and address), e.g. to save
    /// them so a restart can rejoin without seeds.
    pub async fn routing_peers(&self) -> Result<Vec<(Identity, NodeAddr)>, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Peers(reply))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }
}
