//! `mars`: run a MARS node, publish and discover capabilities, ping nodes.
//!
//! Errors are one line on stderr and a non-zero exit code; logs go to
//! stderr through `tracing` (set `RUST_LOG`, e.g. `RUST_LOG=debug`).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use mars_proto::schema::{self, Capability, Endpoint, TypePath};
use mars_proto::wire::NodeAddr;
use mars_proto::{Keypair, ValidDescriptor};
use mars_tokio::hub::{Hub, HubConfig};
use mars_tokio::{Error, Node, NodeConfig, NodeHandle, generate_keypair, key_file, unix_now};

#[derive(Parser)]
#[command(
    name = "mars",
    version,
    about = "MARS (Mesh Agent Routing Standard) node and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a key file and print its DID.
    Keygen {
        /// Where to write the key (hex secret); refuses to overwrite.
        #[arg(long, default_value = "mars.key")]
        out: PathBuf,
    },
    /// Print the DID of a key file.
    Id {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Run a DHT node until Ctrl-C.
    Node {
        /// UDP address to listen on, e.g. 127.0.0.1:4433.
        #[arg(long)]
        listen: SocketAddr,
        /// A node to join through (repeatable).
        #[arg(long = "seed")]
        seeds: Vec<String>,
        /// Key file (default: a fresh key each run).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Publish a capability; prints the replicas per routing key.
    Publish {
        /// A node to join through (repeatable).
        #[arg(long = "seed", required = true)]
        seeds: Vec<String>,
        /// Capability type path, e.g. compute/inference/text-generation.
        #[arg(long = "type")]
        type_path: String,
        /// Where clients reach the capability (a URL such as `https://agent.example/v1`).
        #[arg(long)]
        endpoint: String,
        /// A parameter, key=value (repeatable).
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Topic (default: the type path).
        #[arg(long)]
        topic: Option<String>,
        /// Time to live in seconds (60..=86400).
        #[arg(long, default_value_t = 3600)]
        ttl: u32,
        /// Key file of the publisher (default: a fresh key).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Find providers of a capability type.
    Discover {
        /// A node to join through (repeatable).
        #[arg(long = "seed", required = true)]
        seeds: Vec<String>,
        /// Capability type path (any prefix level), e.g. compute.
        #[arg(long = "type")]
        type_path: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Most results.
        #[arg(long, default_value_t = 20)]
        limit: u16,
    },
    /// Ping a node and print its identity.
    Ping {
        /// The node's address, e.g. 127.0.0.1:4433.
        addr: String,
    },
    /// Run a hub until SIGINT/SIGTERM: a public node that stores
    /// descriptors durably (LMDB in the data dir), serves clients (publish
    /// proxy), enforces rate limits, serves Prometheus metrics and peers
    /// with other hubs. Without flags: 127.0.0.1:4433, ./mars-data,
    /// metrics on 127.0.0.1:9433. See examples/hub.toml for every setting.
    Hub(Box<HubArgs>),
}

/// `mars hub` flags; each overrides the same setting of `--config`.
#[derive(clap::Args)]
struct HubArgs {
    /// A hub.toml (see examples/hub.toml); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// UDP address to listen on [default: 127.0.0.1:4433].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address peers should dial (host:port), if not the bound one.
    #[arg(long)]
    advertise: Option<String>,
    /// Data directory: store, key, saved peers [default: ./mars-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Key file, created with mode 0600 if missing [default: DATA_DIR/hub.key].
    #[arg(long)]
    key: Option<PathBuf>,
    /// A node to join through (repeatable; adds to the config's seeds).
    #[arg(long = "seed")]
    seeds: Vec<String>,
    /// Address for /metrics and /health [default: 127.0.0.1:9433].
    #[arg(long, conflicts_with = "no_metrics")]
    metrics: Option<SocketAddr>,
    /// Serve no metrics.
    #[arg(long)]
    no_metrics: bool,
    /// Which peer addresses to accept: public, any, auto [default: auto].
    #[arg(long, value_enum)]
    address_policy: Option<mars_tokio::hub::config::AddressPolicyChoice>,
    /// LMDB map size in MiB: the most the store may grow to [default: 1024].
    #[arg(long)]
    map_size_mib: Option<u64>,
    /// Most descriptors held [default: 100000].
    #[arg(long)]
    max_descriptors: Option<usize>,
    /// Most bytes held, as the store counts them [default: 268435456].
    #[arg(long)]
    max_bytes: Option<u64>,
    /// STOREs accepted per publisher per minute [default: 10].
    #[arg(long)]
    stores_per_minute: Option<u32>,
    /// Requests per second from one IP address [default: 200].
    #[arg(long)]
    requests_per_ip: Option<u32>,
    /// Requests per second from one identity [default: 100].
    #[arg(long)]
    requests_per_identity: Option<u32>,
    /// QUIC connections at once from one IP address [default: 32].
    #[arg(long)]
    max_connections_per_ip: Option<usize>,
    /// Do not announce this hub or connect to other hubs.
    #[arg(long)]
    no_peering: bool,
    /// Seconds between searches for other hubs [default: 300].
    #[arg(long)]
    peering_interval: Option<u64>,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Cmd::Node { .. } | Cmd::Hub(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Keygen { out } => keygen(&out),
        Cmd::Id { key } => {
            println!("{}", read_key(&key)?.identity().did());
            Ok(())
        }
        Cmd::Node { listen, seeds, key } => node(listen, seeds, key).await,
        Cmd::Publish {
            seeds,
            type_path,
            endpoint,
            params,
            topic,
            ttl,
            key,
        } => publish(seeds, &type_path, endpoint, params, topic, ttl, key).await,
        Cmd::Discover {
            seeds,
            type_path,
            json,
            limit,
        } => discover(seeds, &type_path, json, limit).await,
        Cmd::Ping { addr } => ping(&addr).await,
        Cmd::Hub(args) => hub(*args).await,
    }
}

// -------------------------------------------------------------------- hub

fn hub_config(args: HubArgs) -> Result<HubConfig, String> {
    let mut c = match &args.config {
        Some(path) => HubConfig::from_file(path).map_err(|e| e.to_string())?,
        None => HubConfig::default(),
    };
    if let Some(v) = args.listen {
        c.listen = v;
    }
    if let Some(v) = args.advertise {
        c.advertise = Some(v);
    }
    if let Some(v) = args.data_dir {
        c.data_dir = v;
    }
    if let Some(v) = args.key {
        c.key_file = Some(v);
    }
    c.seeds.extend(args.seeds);
    if let Some(v) = args.metrics {
        c.metrics = Some(v);
    }
    if args.no_metrics {
        c.metrics = None;
    }
    if let Some(v) = args.address_policy {
        c.address_policy = v;
    }
    if let Some(v) = args.map_size_mib {
        c.storage.map_size_mib = v;
    }
    if let Some(v) = args.max_descriptors {
        c.storage.max_descriptors = v;
    }
    if let Some(v) = args.max_bytes {
        c.storage.max_bytes = v;
    }
    if let Some(v) = args.stores_per_minute {
        c.storage.stores_per_minute = v;
    }
    if let Some(v) = args.requests_per_ip {
        c.limits.requests_per_ip_per_sec = v;
    }
    if let Some(v) = args.requests_per_identity {
        c.limits.requests_per_identity_per_sec = v;
    }
    if let Some(v) = args.max_connections_per_ip {
        c.limits.max_connections_per_ip = v;
    }
    if args.no_peering {
        c.peering.enabled = false;
    }
    if let Some(v) = args.peering_interval {
        c.peering.discover_interval_secs = v;
    }
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

async fn hub(args: HubArgs) -> Result<(), String> {
    let config = hub_config(args)?;
    let hub = Hub::start(config).await.map_err(|e| e.to_string())?;
    wait_for_signal().await?;
    hub.shutdown().await.map_err(|e| e.to_string())
}

/// SIGINT (Ctrl-C) or SIGTERM (systemd, docker stop).
async fn wait_for_signal() -> Result<(), String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot wait for SIGTERM: {e}"))?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(|e| format!("cannot wait for SIGINT: {e}")),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("cannot wait for Ctrl-C: {e}"))
}

// ------------------------------------------------------------------- keys

fn keygen(out: &Path) -> Result<(), String> {
    let key = key_file::create(out).map_err(|e| e.to_string())?;
    println!("{}", key.identity().did());
    Ok(())
}

fn read_key(path: &Path) -> Result<Keypair, String> {
    key_file::read(path).map_err(|e| e.to_string())
}

// ------------------------------------------------------------------ nodes

async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {addr}: no address"))
}

async fn resolve_all(addrs: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for a in addrs {
        out.push(resolve(a).await?);
    }
    Ok(out)
}

/// A short-lived client node: an ephemeral port, and an advertised address
/// nobody can dial (port 0), so peers neither keep nor hand out a dead
/// entry for it (WIRE.md, "How the live network behaves").
async fn client(toward: SocketAddr, key: Option<Keypair>) -> Result<NodeHandle, String> {
    let (listen, advertise): (SocketAddr, &str) = if toward.is_ipv4() {
        (([0, 0, 0, 0], 0).into(), "0.0.0.0:0")
    } else {
        ((std::net::Ipv6Addr::UNSPECIFIED, 0).into(), "[::]:0")
    };
    let mut config = NodeConfig::new(listen);
    // Dial what the seed's neighbourhood is made of (loopback, private).
    config.host = NodeConfig::new(toward).host;
    config.advertise = Some(NodeAddr::quic(advertise));
    // It keeps no descriptors: its replicas would vanish when it exits, so
    // it must not count itself as one (its own offer is refused instead).
    config.host.node.store.max_descriptors = 0;
    if let Some(k) = key {
        config.keypair = k;
    }
    Node::spawn(config).await.map_err(|e| e.to_string())
}

/// One line for a failed operation against `seeds`.
fn explain(e: Error, seeds: &[SocketAddr]) -> String {
    let list = seeds
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match e {
        Error::Query(mars_proto::node::QueryError::NoPeers) => {
            format!("no route: no node answered at {list}")
        }
        e => e.to_string(),
    }
}

async fn join(
    seeds: &[String],
    key: Option<Keypair>,
) -> Result<(NodeHandle, Vec<SocketAddr>), String> {
    let seeds = resolve_all(seeds).await?;
    let first = *seeds.first().ok_or("no seed given")?;
    let node = client(first, key).await?;
    if let Err(e) = node.bootstrap(seeds.clone()).await {
        node.shutdown().await;
        return Err(explain(e, &seeds));
    }
    Ok((node, seeds))
}

async fn node(listen: SocketAddr, seeds: Vec<String>, key: Option<PathBuf>) -> Result<(), String> {
    let mut config = NodeConfig::new(listen);
    if let Some(k) = key {
        config.keypair = read_key(&k)?;
    }
    let handle = Node::spawn(config)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!(
        "mars node {} listening on {}",
        handle.identity().did(),
        handle.local_addr()
    );
    if !seeds.is_empty() {
        let seeds = resolve_all(&seeds).await?;
        match handle.bootstrap(seeds.clone()).await {
            Ok(n) => tracing::info!("joined the mesh: {n} peers in the routing table"),
            Err(e) => tracing::warn!("bootstrap failed: {}", explain(e, &seeds)),
        }
    }
    wait_for_signal().await?;
    handle.shutdown().await;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn publish(
    seeds: Vec<String>,
    type_path: &str,
    endpoint: String,
    params: Vec<(String, String)>,
    topic: Option<String>,
    ttl: u32,
    key: Option<PathBuf>,
) -> Result<(), String> {
    let key = match key {
        Some(k) => read_key(&k)?,
        None => generate_keypair(),
    };
    let path = TypePath::new(type_path).map_err(|e| format!("--type {type_path:?}: {e}"))?;
    let mut cap = Capability::new(path.clone(), Endpoint::text(endpoint));
    if !params.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = params
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        cap = cap.with_params(serde_json::Value::Object(map));
    }
    let now = unix_now();
    let mut builder = cap
        .descriptor_builder(now)
        .ttl(ttl)
        // A later publish must replace this one: time is a rising sequence.
        .sequence(now.as_micros());
    if let Some(t) = topic {
        builder = builder.topic(t);
    }
    let descriptor = builder
        .sign(&key)
        .map_err(|e| format!("invalid descriptor: {e}"))?;
    let id = descriptor.id;
    let (node, seeds) = join(&seeds, Some(key.clone())).await?;
    let result = node.publish(descriptor).await;
    node.shutdown().await;
    let keys = result.map_err(|e| explain(e, &seeds))?;
    println!("published {id} as {}", key.identity().did());
    let me = key.identity();
    let mut stored = 0;
    for (k, name) in keys.iter().zip(path.prefixes()) {
        let acked = k.acked;
        stored += acked;
        let mut line = format!("  {name:<40} {acked} replica(s) acknowledged");
        for (who, why) in k.refused.iter().filter(|(who, _)| *who != me) {
            let _ = write!(line, "; refused by {}: {why}", who.did());
        }
        if k.failed > 0 {
            let _ = write!(line, "; {} failed", k.failed);
        }
        println!("{line}");
    }
    if stored == 0 {
        return Err("no node stored the descriptor".to_owned());
    }
    Ok(())
}

async fn discover(
    seeds: Vec<String>,
    type_path: &str,
    json: bool,
    limit: u16,
) -> Result<(), String> {
    let path = TypePath::new(type_path).map_err(|e| format!("--type {type_path:?}: {e}"))?;
    let (node, seeds) = join(&seeds, None).await?;
    let result = node.discover(path.routing_key(), None, limit).await;
    node.shutdown().await;
    let found = result.map_err(|e| explain(e, &seeds))?;
    let now = unix_now();
    if json {
        let items: Vec<serde_json::Value> = found.iter().map(describe_json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&items).unwrap_or_default()
        );
        return Ok(());
    }
    if found.is_empty() {
        println!("no providers of {path}");
        return Ok(());
    }
    println!(
        "{:<58} {:<36} {:<40} {:<24} EXPIRES",
        "PROVIDER", "TYPE", "ENDPOINT", "TOPIC"
    );
    for d in &found {
        let (ty, ep) = capability_fields(d);
        let left = d.expires_at().duration_since(now).as_secs();
        println!(
            "{:<58} {:<36} {:<40} {:<24} in {}m{:02}s",
            d.publisher.did(),
            ty,
            ep,
            d.topic,
            left / 60,
            left % 60
        );
    }
    Ok(())
}

fn capability_fields(d: &ValidDescriptor) -> (String, String) {
    if d.schema_hash != schema::CORE_CAPABILITY.hash() {
        return ("-".to_owned(), "-".to_owned());
    }
    match Capability::from_descriptor(d.descriptor()) {
        Ok(c) => (c.type_path().to_string(), c.endpoint().address().to_owned()),
        Err(_) => ("(undecodable)".to_owned(), "-".to_owned()),
    }
}

fn describe_json(d: &ValidDescriptor) -> serde_json::Value {
    let (ty, ep) = capability_fields(d);
    serde_json::json!({
        "id": d.id.to_string(),
        "provider": d.publisher.did(),
        "type": ty,
        "endpoint": ep,
        "topic": d.topic,
        "timestamp_us": d.timestamp.as_micros(),
        "expires_at_us": d.expires_at().as_micros(),
        "sequence": d.sequence,
    })
}

async fn ping(addr: &str) -> Result<(), String> {
    let to = resolve(addr).await?;
    let node = client(to, None).await?;
    let started = tokio::time::Instant::now();
    let result = node.ping(to).await;
    let rtt: Duration = started.elapsed();
    node.shutdown().await;
    match result {
        Ok(identity) => {
            println!(
                "pong from {} at {to} in {:.1} ms",
                identity.did(),
                rtt.as_secs_f64() * 1000.0
            );
            Ok(())
        }
        Err(Error::Query(mars_proto::node::QueryError::Unreachable { reason, .. })) => {
            Err(format!("{to} is unreachable: {reason}"))
        }
        Err(e) => Err(e.to_string()),
    }
}
