//! The hub: a long-running public node that stores descriptors for the
//! mesh, durably (LMDB), within limits, observable over HTTP.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mars_tokio::hub::HubError> {
//! use mars_tokio::hub::{Hub, HubConfig};
//!
//! let hub = Hub::start(HubConfig::default()).await?; // 127.0.0.1:4433, ./mars-data
//! println!("{} at {}", hub.identity().did(), hub.local_addr());
//! hub.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! What a hub adds to a plain node: the publish proxy is on (reference
//! clients publish with one STORE to the node they know), STOREs are
//! acknowledged only once committed to disk, the routing table's peers are
//! saved so a restart rejoins without seeds, per-IP and per-identity
//! limits guard it, and it announces itself at `infrastructure/hub` and
//! keeps connections to the other hubs (see [`peering`]).

pub mod config;
pub mod peering;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use mars_proto::quic::RateLimit;
use mars_proto::store::{LmdbOptions, LmdbStore, PeerBook, StoreError};
use mars_proto::wire::NodeAddr;
use mars_proto::{Config, Identity};

pub use config::{ConfigError, HubConfig};

use crate::http::{self, HttpServer};
use crate::key_file::{self, KeyFileError};
use crate::metrics::Metrics;
use crate::{Error, Node, NodeConfig, NodeHandle};

/// How often the routing table's peers are saved to the data dir.
const SAVE_PEERS_EVERY: Duration = Duration::from_secs(60);

/// Why a hub could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The key file could not be read or created.
    #[error("{0}")]
    Key(#[from] KeyFileError),
    /// The store could not be opened or flushed.
    #[error("store {path}: {source}")]
    Store {
        /// The LMDB directory.
        path: PathBuf,
        /// What went wrong.
        source: StoreError,
    },
    /// The node could not start (socket, TLS).
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: Error,
    },
    /// The metrics server could not start.
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: Error,
    },
    /// A seed does not resolve.
    #[error("cannot resolve seed {seed}: {why}")]
    Seed {
        /// The seed as configured.
        seed: String,
        /// Why.
        why: String,
    },
}

/// A running hub.
#[derive(Debug)]
pub struct Hub {
    node: NodeHandle,
    http: Option<HttpServer>,
    peers: PeerBook,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    hubs: watch::Receiver<usize>,
    loaded: usize,
    data_dir: PathBuf,
    grace: Duration,
}

impl Hub {
    /// Opens the store, loads or creates the key, binds, joins the mesh
    /// through the seeds and the saved peers, and starts peering.
    pub async fn start(config: HubConfig) -> Result<Hub, HubError> {
        config.validate()?;
        create_private_dir(&config.data_dir)?;
        let key_path = config.key_path();
        let (keypair, created) = key_file::load_or_create(&key_path)?;
        if created {
            info!(path = %key_path.display(), "created a new hub key");
        }
        let store_path = config.store_path();
        let store = LmdbStore::open(
            &store_path,
            LmdbOptions {
                map_size: config.storage.map_size_mib.saturating_mul(1 << 20),
                cache_entries: config.storage.cache_entries,
                ..LmdbOptions::default()
            },
        )
        .map_err(|source| HubError::Store {
            path: store_path.clone(),
            source,
        })?;
        let on_disk = mars_proto::store::DescriptorStore::len(&store);
        let peers = store.peer_book();
        let saved = peers.load_peers();

        let node_config = node_config(&config, keypair.clone());
        let listen = config.listen;
        let node = Node::spawn_with_store(node_config, Box::new(store))
            .await
            .map_err(|source| HubError::Listen {
                addr: listen,
                source,
            })?;
        let local_addr = node.local_addr();
        // What the node holds after resuming: a tighter storage config than
        // the last run's evicts at start, so the disk count can be higher.
        let loaded = node.snapshot().await.map_or(on_disk, |s| s.descriptors);
        if loaded < on_disk {
            warn!(
                on_disk,
                loaded, "the storage limits evicted descriptors at start-up"
            );
        }
        let advertised = config
            .advertise
            .clone()
            .unwrap_or_else(|| local_addr.to_string());

        let http = match config.metrics {
            Some(addr) => {
                let metrics = Arc::new(Metrics::new(&node));
                Some(
                    http::serve(addr, node.clone(), metrics)
                        .await
                        .map_err(|source| HubError::Metrics { addr, source })?,
                )
            }
            None => None,
        };

        // The start-up line operators and scripts look for.
        let metrics_line = http
            .as_ref()
            .map(|h| format!(", metrics on http://{}/metrics", h.local_addr()))
            .unwrap_or_default();
        println!(
            "mars hub {} listening on {} (advertised as {}), data dir {}, {} descriptors loaded{}",
            keypair.identity().did(),
            local_addr,
            advertised,
            config.data_dir.display(),
            loaded,
            metrics_line
        );
        info!(did = %keypair.identity().did(), %local_addr, data_dir = %config.data_dir.display(),
            loaded, saved_peers = saved.len(), "hub started");

        // Join through the seeds and whatever answered us last time.
        let mut seeds = Vec::new();
        for s in &config.seeds {
            seeds.push(resolve(s).await?);
        }
        for (_, addr) in &saved {
            if let Ok(a) = addr.address().parse::<SocketAddr>() {
                if !seeds.contains(&a) && a != local_addr {
                    seeds.push(a);
                }
            }
        }
        if !seeds.is_empty() {
            match node.bootstrap(seeds.clone()).await {
                Ok(n) => info!(peers = n, "joined the mesh"),
                Err(e) => warn!(
                    seeds = seeds.len(),
                    "could not join the mesh yet ({e}); serving anyway"
                ),
            }
        }

        let (stop, stop_rx) = watch::channel(false);
        let (hub_count, hubs) = watch::channel(0);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(save_peers_periodically(
            node.clone(),
            peers.clone(),
            stop_rx.clone(),
        )));
        if config.peering.enabled {
            tasks.push(tokio::spawn(peering::run(
                node.clone(),
                keypair,
                advertised,
                config.peering.clone(),
                hub_count,
                stop_rx,
            )));
        }
        Ok(Hub {
            node,
            http,
            peers,
            stop,
            tasks,
            hubs,
            loaded,
            data_dir: config.data_dir.clone(),
            grace: Duration::from_secs(config.shutdown_grace_secs),
        })
    }

    /// The node, for commands.
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.node.local_addr()
    }

    /// The hub's identity.
    pub fn identity(&self) -> Identity {
        self.node.identity()
    }

    /// Where `/metrics` and `/health` are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(HttpServer::local_addr)
    }

    /// Descriptors found in the store at start-up.
    pub fn loaded(&self) -> usize {
        self.loaded
    }

    /// Other hubs currently known through peering.
    pub fn known_hubs(&self) -> usize {
        *self.hubs.borrow()
    }

    /// Stops accepting, lets requests in flight finish (within the
    /// configured grace), saves the peers, flushes the store and stops.
    pub async fn shutdown(self) -> Result<(), HubError> {
        info!("shutting down");
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        save_peers(&self.node, &self.peers).await;
        if let Some(h) = self.http {
            h.shutdown().await;
        }
        self.node.shutdown_gracefully(self.grace).await;
        info!(data_dir = %self.data_dir.display(), "hub stopped");
        Ok(())
    }
}

/// The node settings a hub runs with.
fn node_config(config: &HubConfig, keypair: mars_proto::Keypair) -> NodeConfig {
    let mut node = if config.allows_private_addresses() {
        Config {
            publish_proxy: true,
            ..Config::testing()
        }
    } else {
        Config::hub()
    };
    let s = &config.storage;
    node.store.max_descriptors = s.max_descriptors;
    node.store.max_bytes = s.max_bytes;
    node.store.max_per_key = s.max_per_key;
    node.store.stores_per_minute = s.stores_per_minute;
    let mut nc = NodeConfig::new(config.listen);
    nc.keypair = keypair;
    nc.advertise = config.advertise.clone().map(NodeAddr::quic);
    nc.host.node = node;
    let l = &config.limits;
    nc.host.max_connections = l.max_connections;
    nc.host.max_streams = l.max_streams_per_connection;
    nc.host.max_connections_per_ip = l.max_connections_per_ip;
    // A rate of 0 turns that limit off.
    let rate = |per_second: u32, burst: u32| {
        (per_second > 0).then_some(RateLimit {
            per_second,
            burst: burst.max(1),
        })
    };
    nc.host.requests_per_ip = rate(l.requests_per_ip_per_sec, l.request_burst_per_ip);
    nc.host.requests_per_identity = rate(
        l.requests_per_identity_per_sec,
        l.request_burst_per_identity,
    );
    nc
}

/// Creates `dir` (mode 0700: it holds the key) if it does not exist.
fn create_private_dir(dir: &std::path::Path) -> Result<(), HubError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|source| HubError::DataDir {
        path: dir.to_owned(),
        source,
    })
}

async fn resolve(seed: &str) -> Result<SocketAddr, HubError> {
    let err = |why: String| HubError::Seed {
        seed: seed.to_owned(),
        why,
    };
    tokio::net::lookup_host(seed)
        .await
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address".to_owned()))
}

async fn save_peers(node: &NodeHandle, book: &PeerBook) {
    match node.routing_peers().await {
        Ok(peers) => {
            if let Err(e) = book.save_peers(&peers) {
                warn!("cannot save the routing table's peers: {e}");
            }
        }
        Err(e) => warn!("cannot read the routing table: {e}"),
    }
}

async fn save_peers_periodically(
    node: NodeHandle,
    book: PeerBook,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(SAVE_PEERS_EVERY);
    every.tick().await;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = every.tick() => save_peers(&node, &book).await,
        }
    }
}
