//! A hub (LMDB store) holding 100,000 descriptors, under load over
//! loopback QUIC: the preload rate (STORE into a growing store), sustained
//! FIND_VALUE and STORE requests/s with the store full, and the time a
//! restart takes to reopen the store and answer.
//!
//! ```sh
//! cargo run --release -p mars-tokio --example hub_bench [-- --descriptors 100000 --secs 10]
//! ```
//!
//! The hub runs on its own single-threaded tokio runtime (thread `hub`),
//! the load generator on another (thread `load`): mars-tokio client nodes
//! sending pre-encoded request frames with `NodeHandle::request`, as in
//! `quic_bench.rs`. Every STORE carries a descriptor of a publisher the
//! hub has never seen (one key per descriptor), so each costs a signature
//! check and an LMDB commit. The data dir is a fresh directory under the
//! system's temp dir, removed at the end.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use tokio::runtime::Runtime;
use tokio::time::Instant;

use mars_proto::schema::{self, Capability, Endpoint, TypePath};
use mars_proto::wire::{FindValue, FindValueResult, Frame, Message, MsgId, NodeAddr, Ping, Store};
use mars_proto::{Config, Descriptor, Keypair};
use mars_tokio::hub::{Hub, HubConfig};
use mars_tokio::{Node, NodeConfig, NodeHandle, unix_now};

#[derive(Parser, Debug)]
#[command(about = "Benchmark a hub holding many descriptors (LMDB store, loopback QUIC)")]
struct Args {
    /// Descriptors preloaded before the measurements.
    #[arg(long, default_value_t = 100_000)]
    descriptors: usize,
    /// Seconds per measured case.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Fresh descriptors pre-signed for the two timed STORE cases
    /// (default: 5,000 per second of STORE measurement). If they run
    /// out, descriptors are sent again and the run says so.
    #[arg(long)]
    store_pool: Option<usize>,
    /// Client connections used for the preload.
    #[arg(long, default_value_t = 8)]
    preload_conns: usize,
    /// Requests in flight per connection during the preload.
    #[arg(long, default_value_t = 8)]
    preload_depth: usize,
    /// Leave out the FIND_VALUE cases.
    #[arg(long)]
    skip_find_value: bool,
    /// Leave out the timed STORE cases.
    #[arg(long)]
    skip_store: bool,
    /// Skip the cold restart (the one after dropping the store file from
    /// the page cache with `dd iflag=nocache`).
    #[arg(long)]
    no_cold_restart: bool,
}

// ------------------------------------------------------------ descriptors

/// Capability types and how many of every 1,000 descriptors use each: a
/// few popular types, a long tail. Every type also lands at the keys of
/// its prefixes (`compute`, `compute/inference`, …), so `compute` is the
/// most popular key.
const TYPES: [(&str, u64); 17] = [
    ("compute/inference/text-generation", 280),
    ("compute/inference/embedding", 120),
    ("compute/inference/image-generation", 80),
    ("compute/inference/speech-to-text", 40),
    ("compute/training/fine-tuning", 30),
    ("compute/gpu/a100", 40),
    ("compute/gpu/h100", 30),
    ("storage/object", 90),
    ("storage/block", 30),
    ("storage/vector-db", 40),
    ("data/web-search", 50),
    ("data/weather", 20),
    ("data/finance/market-prices", 20),
    ("tool/code-execution", 40),
    ("tool/browser", 30),
    ("agent/assistant", 40),
    ("network/relay", 20),
];

/// The key FIND_VALUE asks at for a popular answer.
const POPULAR: &str = "compute";
/// A type only one descriptor in 20,000 has: a rare key.
const RARE: &str = "data/geospatial/satellite-imagery";

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The type of descriptor `i` (deterministic).
fn type_of(i: u64) -> &'static str {
    if i % 20_000 == 7 {
        return RARE;
    }
    let mut r = splitmix(i) % 1_000;
    for (path, weight) in TYPES {
        if r < weight {
            return path;
        }
        r -= weight;
    }
    TYPES[0].0
}

/// Descriptors `from..from + n`, each signed by its own key, with
/// timestamps spread over the last 10 minutes; signed on two threads.
fn sign_descriptors(from: u64, n: usize) -> Vec<Descriptor> {
    let now = unix_now();
    let sign = |range: std::ops::Range<u64>| -> Vec<Descriptor> {
        range
            .map(|i| {
                let mut secret = [0u8; 32];
                secret[..8].copy_from_slice(&i.to_le_bytes());
                secret[8] = 0x5a;
                let key = Keypair::from_secret_bytes(&secret);
                let at = now.saturating_sub(Duration::from_secs(splitmix(!i) % 600));
                Capability::new(
                    TypePath::new(type_of(i)).unwrap(),
                    Endpoint::text(format!("https://provider-{i}.example/v1")),
                )
                .sign(&key, at, 1)
                .unwrap()
            })
            .collect()
    };
    let (start, end) = (from, from + n as u64);
    let mid = start + n as u64 / 2;
    std::thread::scope(|s| {
        let a = s.spawn(|| sign(start..mid));
        let mut b = sign(mid..end);
        let mut out = a.join().unwrap();
        out.append(&mut b);
        out
    })
}

/// How many of descriptors `0..n` sit at `key` (a type path or prefix).
fn count_at(key: &str, n: usize) -> usize {
    (0..n as u64)
        .filter(|i| {
            let t = type_of(*i);
            t == key || t.starts_with(&format!("{key}/"))
        })
        .count()
}

// -------------------------------------------------------------------- hub

fn hub_config(data_dir: &Path, capacity: usize) -> HubConfig {
    let mut c = HubConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        metrics: None,
        shutdown_grace_secs: 1,
        ..HubConfig::default()
    };
    c.peering.enabled = false;
    // One IP and a few identities send everything: the abuse limits are
    // not what is measured. A rate of 0 turns a limit off.
    c.limits.requests_per_ip_per_sec = 0;
    c.limits.requests_per_identity_per_sec = 0;
    c.limits.max_connections_per_ip = 4096;
    // Room for the preload and every timed STORE, so nothing is evicted.
    c.storage.max_descriptors = capacity;
    c.storage.max_per_key = capacity;
    c.storage.stores_per_minute = u32::MAX;
    c.storage.map_size_mib = 16 * 1024;
    c.storage.max_bytes = 8 << 30;
    c
}

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

// ----------------------------------------------------------------- frames

fn ping_frame(client: &NodeHandle) -> Vec<u8> {
    Frame::new(
        MsgId([1; 16]),
        Message::Ping(Ping {
            sender: client.identity(),
            sender_addr: NodeAddr::quic("0.0.0.0:0"),
        }),
    )
    .encode()
}

fn store_frame(client: &NodeHandle, d: &Descriptor) -> Vec<u8> {
    Frame::new(
        MsgId([7; 16]),
        Message::Store(Store {
            sender: client.identity(),
            sender_addr: NodeAddr::quic("0.0.0.0:0"),
            descriptor: d.clone().into(),
        }),
    )
    .encode()
}

fn find_value_frame(client: &NodeHandle, key: &str) -> Vec<u8> {
    Frame::new(
        MsgId([8; 16]),
        Message::FindValue(FindValue {
            sender: client.identity(),
            sender_addr: NodeAddr::quic("0.0.0.0:0"),
            key: schema::routing_key(key),
            max_results: 20,
            filters: None,
        }),
    )
    .encode()
}

/// Descriptors in a FIND_VALUE answer (`None` if it is not one).
fn descriptors_in(frame: &[u8]) -> Option<usize> {
    match Frame::decode(frame).ok()?.message {
        Message::FindValueResult(FindValueResult::Descriptors(d)) => Some(d.len()),
        Message::FindValueResult(FindValueResult::Nodes(_)) => Some(0),
        _ => None,
    }
}

/// Whether a response is a STORE_ACK with `stored: true`.
fn stored(frame: &[u8]) -> bool {
    matches!(
        Frame::decode(frame).map(|f| f.message),
        Ok(Message::StoreAck(a)) if a.stored
    )
}

// ----------------------------------------------------------- load generator

async fn client(seed: u64) -> NodeHandle {
    let mut c = NodeConfig::new("127.0.0.1:0".parse().unwrap());
    c.host.node = Config::testing();
    c.advertise = Some(NodeAddr::quic("0.0.0.0:0"));
    c.seed = Some(seed);
    Node::spawn(c).await.unwrap()
}

/// `n` client nodes, each connected to `hub` (the handshake is not part
/// of any figure).
async fn connected_clients(hub: SocketAddr, n: usize, seed: u64) -> Vec<NodeHandle> {
    let mut out = Vec::new();
    for i in 0..n {
        let c = client(seed + i as u64).await;
        c.request(hub, None, ping_frame(&c)).await.unwrap();
        out.push(c);
    }
    out
}

/// Fresh descriptors, each sent once; past the end they are sent again
/// (counted in `repeats`).
struct Pool {
    descriptors: Vec<Descriptor>,
    next: AtomicUsize,
}

#[derive(Clone)]
enum Work {
    FindValue(&'static str),
    Store(Arc<Pool>),
}

/// What one case measured.
#[derive(Debug, Clone, Copy, Default)]
struct Outcome {
    requests: u64,
    secs: f64,
    /// Transport failures (timeouts, resets).
    failed: u64,
    /// STOREs answered `stored: false`, or answers of the wrong kind.
    refused: u64,
    /// STOREs of a descriptor already sent (the pool ran out).
    repeats: u64,
    /// Share of the wall time the hub thread ran.
    hub_cpu: f64,
    /// Share of the wall time the hub thread was runnable but waited for
    /// a CPU (other processes on the machine).
    hub_wait: f64,
    load_cpu: f64,
    /// Bytes the process wrote to storage (dirtied in the page cache:
    /// `write_bytes` of `/proc/self/io`; only the hub writes files).
    disk_bytes: u64,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.secs.max(1e-9)
    }

    /// Hub CPU time per request, µs.
    fn hub_us(&self) -> f64 {
        1e6 * self.hub_cpu * self.secs / (self.requests.max(1) as f64)
    }

    /// KiB written to storage per request.
    fn disk_kib(&self) -> f64 {
        self.disk_bytes as f64 / 1024.0 / self.requests.max(1) as f64
    }

    /// Share of the wall time the hub thread was blocked (neither running
    /// nor waiting for a CPU).
    fn hub_blocked(&self) -> f64 {
        (1.0 - self.hub_cpu - self.hub_wait).max(0.0)
    }

    /// "ran 80 %, waited for a CPU 5 %, blocked 15 %"
    fn hub_time(&self) -> String {
        format!(
            "{:.0} % / {:.0} % / {:.0} %",
            100.0 * self.hub_cpu,
            100.0 * self.hub_wait,
            100.0 * self.hub_blocked()
        )
    }
}

struct Counters {
    done: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    repeats: AtomicU64,
    stop: AtomicBool,
    /// (requests done, when) every `milestone` requests.
    milestones: Mutex<Vec<(u64, Instant)>>,
    milestone: u64,
}

/// Runs `work` through `clients`, `depth` requests in flight on each:
/// for `secs` seconds, or (`secs` = None, STORE only) until every
/// descriptor of the pool was sent once.
async fn drive(
    hub: SocketAddr,
    clients: &[NodeHandle],
    depth: usize,
    work: Work,
    secs: Option<f64>,
    milestone: u64,
) -> (Outcome, Vec<(u64, Instant)>) {
    let counters = Arc::new(Counters {
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        repeats: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        milestones: Mutex::new(Vec::new()),
        milestone: milestone.max(1),
    });
    let once = secs.is_none();
    let times_before = thread_times();
    let bytes_before = write_bytes();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        for _ in 0..depth {
            let (c, counters, work) = (c.clone(), Arc::clone(&counters), work.clone());
            tasks.push(tokio::spawn(async move {
                let fv = match work {
                    Work::FindValue(key) => find_value_frame(&c, key),
                    Work::Store(_) => Vec::new(),
                };
                while !counters.stop.load(Ordering::Relaxed) {
                    let frame = match &work {
                        Work::FindValue(_) => fv.clone(),
                        Work::Store(pool) => {
                            let i = pool.next.fetch_add(1, Ordering::Relaxed);
                            if i >= pool.descriptors.len() {
                                if once {
                                    break;
                                }
                                counters.repeats.fetch_add(1, Ordering::Relaxed);
                            }
                            store_frame(&c, &pool.descriptors[i % pool.descriptors.len()])
                        }
                    };
                    match c.request(hub, None, frame).await {
                        Ok(r) => {
                            let ok = match &work {
                                // The answer's type only: decoding 20
                                // descriptors would load the load thread.
                                Work::FindValue(_) => r.frame.get(3) == Some(&0x84),
                                Work::Store(_) => stored(&r.frame),
                            };
                            if !ok {
                                counters.refused.fetch_add(1, Ordering::Relaxed);
                            }
                            let n = counters.done.fetch_add(1, Ordering::Relaxed) + 1;
                            if n % counters.milestone == 0 {
                                let mut m = counters.milestones.lock().unwrap();
                                m.push((n, Instant::now()));
                            }
                        }
                        Err(_) => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    let (requests, elapsed) = match secs {
        Some(secs) => {
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            let n = counters.done.load(Ordering::Relaxed);
            let elapsed = start.elapsed().as_secs_f64();
            counters.stop.store(true, Ordering::Relaxed);
            for t in tasks {
                let _ = t.await;
            }
            (n, elapsed)
        }
        None => {
            for t in tasks {
                let _ = t.await;
            }
            (
                counters.done.load(Ordering::Relaxed),
                start.elapsed().as_secs_f64(),
            )
        }
    };
    let times_after = thread_times();
    let share = |name: &str, which: fn(&(f64, f64)) -> f64| {
        let at = |m: &BTreeMap<String, (f64, f64)>| m.get(name).map(which).unwrap_or(0.0);
        (at(&times_after) - at(&times_before)) / elapsed
    };
    let outcome = Outcome {
        requests,
        secs: elapsed,
        failed: counters.failed.load(Ordering::Relaxed),
        refused: counters.refused.load(Ordering::Relaxed),
        repeats: counters.repeats.load(Ordering::Relaxed),
        hub_cpu: share("hub", |t| t.0),
        hub_wait: share("hub", |t| t.1),
        load_cpu: share("load", |t| t.0),
        disk_bytes: write_bytes().saturating_sub(bytes_before),
    };
    let milestones = std::mem::take(&mut *counters.milestones.lock().unwrap());
    (outcome, milestones)
}

/// Bytes this process has caused to be written to storage (Linux; 0
/// elsewhere).
fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Seconds each named thread has run on a CPU and has waited for one
/// while runnable, summed over the threads of that name (Linux
/// `schedstat`; empty elsewhere). What is left of the wall time for a
/// single thread is time it was blocked (a sync, an empty socket).
fn thread_times() -> BTreeMap<String, (f64, f64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in dir.flatten() {
        let (Ok(name), Ok(sched)) = (
            std::fs::read_to_string(t.path().join("comm")),
            std::fs::read_to_string(t.path().join("schedstat")),
        ) else {
            continue;
        };
        let mut f = sched
            .split_whitespace()
            .map(|v| v.parse::<f64>().unwrap_or(0.0) / 1e9);
        let (run, wait) = (f.next().unwrap_or(0.0), f.next().unwrap_or(0.0));
        let e = out.entry(name.trim().to_owned()).or_insert((0.0, 0.0));
        e.0 += run;
        e.1 += wait;
    }
    out
}

// ---------------------------------------------------------------- restart

/// How long a restart took, each step counted from the call to
/// `Hub::start`.
struct Restart {
    start_returned: Duration,
    ping_answered: Duration,
    find_value_answered: Duration,
    loaded: usize,
    answer: usize,
}

/// Starts a hub on `config`'s data dir and waits until it answers a PING
/// and a FIND_VALUE at the popular key (the client node is made first:
/// its key and certificate are not the hub's time).
fn timed_start(hub_rt: &Runtime, load_rt: &Runtime, config: &HubConfig) -> (Hub, Restart) {
    let c = load_rt.block_on(client(9_999));
    let t0 = Instant::now();
    let hub = hub_rt.block_on(Hub::start(config.clone())).unwrap();
    let start_returned = t0.elapsed();
    let addr = hub.local_addr();
    let (ping_answered, find_value_answered, answer) = load_rt.block_on(async {
        c.request(addr, None, ping_frame(&c)).await.unwrap();
        let ping = t0.elapsed();
        let r = c
            .request(addr, None, find_value_frame(&c, POPULAR))
            .await
            .unwrap();
        let fv = t0.elapsed();
        c.shutdown().await;
        (ping, fv, descriptors_in(&r.frame).unwrap_or(0))
    });
    let loaded = hub.loaded();
    (
        hub,
        Restart {
            start_returned,
            ping_answered,
            find_value_answered,
            loaded,
            answer,
        },
    )
}

/// Waits until the store at `config` can be opened again, and says how
/// long that took. `Hub::shutdown` returns when the node's loop has
/// answered the shutdown, which it does just before it drops the store:
/// for a moment the LMDB environment is still open and a new `Hub::start`
/// in this process would fail with `EnvAlreadyOpened`.
fn wait_until_closed(config: &HubConfig) -> (Duration, usize) {
    use mars_proto::store::{LmdbOptions, LmdbStore};
    let t = Instant::now();
    let mut refused = 0;
    loop {
        let options = LmdbOptions {
            map_size: config.storage.map_size_mib << 20,
            cache_entries: 0,
            ..LmdbOptions::default()
        };
        match LmdbStore::open(config.store_path(), options) {
            Ok(_) => return (t.elapsed(), refused),
            Err(e) if t.elapsed() > Duration::from_secs(10) => {
                panic!("the store is still open 10 s after shutdown: {e}")
            }
            Err(_) => {
                refused += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Drops the store's data file from the page cache (GNU dd, `nocache`
/// with `count=0` advises the kernel to drop the whole file), so the
/// next start reads it from disk. Returns whether dd succeeded.
fn drop_from_page_cache(file: &Path) -> bool {
    let status = std::process::Command::new("dd")
        .arg(format!("if={}", file.display()))
        .args(["iflag=nocache", "count=0", "status=none"])
        .status();
    matches!(status, Ok(s) if s.success())
}

fn errors(o: &Outcome) -> String {
    let mut e = format!("{} failed, {} refused", o.failed, o.refused);
    if o.repeats > 0 {
        e.push_str(&format!(", {} repeats (pool too small)", o.repeats));
    }
    e
}

/// One case's figures on one line.
fn summary(o: &Outcome) -> String {
    format!(
        "{:.0}/s; hub thread ran / waited for a CPU / blocked {}, {:.1} µs CPU per request; {:.0} KiB written to disk per request; load thread CPU {:.0} %; {}",
        o.rate(),
        o.hub_time(),
        o.hub_us(),
        o.disk_kib(),
        100.0 * o.load_cpu,
        errors(o)
    )
}

/// Where a restart's time goes, step by step, on the store `config`
/// points at (no hub running): open, a walk that decodes every
/// descriptor (what `Storage::resume` starts with), the same walk with
/// the decoded-descriptor memo off, and `Storage::resume` itself.
fn restart_steps(config: &HubConfig) -> Vec<(&'static str, Duration)> {
    use mars_proto::Timestamp;
    use mars_proto::store::{DescriptorStore, LmdbOptions, LmdbStore, Storage, StoreConfig};
    let open = |cache_entries: usize| {
        LmdbStore::open(
            config.store_path(),
            LmdbOptions {
                map_size: config.storage.map_size_mib << 20,
                cache_entries,
                ..LmdbOptions::default()
            },
        )
        .unwrap()
    };
    let all = Timestamp::from_micros(u64::MAX);
    let mut out = Vec::new();
    let t = Instant::now();
    let store = open(config.storage.cache_entries);
    out.push(("`LmdbStore::open`", t.elapsed()));
    let t = Instant::now();
    let n = store.expiring_by(all, usize::MAX).len();
    out.push((
        "walk and decode every descriptor (`expiring_by`)",
        t.elapsed(),
    ));
    drop(store);
    let store = open(0);
    let t = Instant::now();
    assert_eq!(store.expiring_by(all, usize::MAX).len(), n);
    out.push(("the same walk, memo off", t.elapsed()));
    drop(store);
    let store = open(config.storage.cache_entries);
    let s = &config.storage;
    let rules = StoreConfig {
        max_descriptors: s.max_descriptors,
        max_bytes: s.max_bytes,
        max_per_key: s.max_per_key,
        stores_per_minute: s.stores_per_minute,
        ..StoreConfig::default()
    };
    let t = Instant::now();
    let storage = Storage::resume(store, rules);
    out.push(("`Storage::resume` (walk included)", t.elapsed()));
    drop(storage);
    out
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

// ------------------------------------------------------------------- main

fn main() {
    let args = Args::parse();
    let n = args.descriptors;
    let store_secs = 2.0 * args.secs;
    let pool_len = args
        .store_pool
        .unwrap_or(if args.skip_store {
            0
        } else {
            (store_secs * 5_000.0) as usize
        })
        .max(1);

    let data_dir: PathBuf =
        std::env::temp_dir().join(format!("mars-hub-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let config = hub_config(&data_dir, n + pool_len + 1_000);

    println!("signing {n} preload descriptors and {pool_len} for the STORE cases (2 threads)…");
    let t = Instant::now();
    let preload = Arc::new(Pool {
        descriptors: sign_descriptors(0, n),
        next: AtomicUsize::new(0),
    });
    let stores = Arc::new(Pool {
        descriptors: sign_descriptors(1_000_000_000, pool_len),
        next: AtomicUsize::new(0),
    });
    println!("  signed in {:.1} s", t.elapsed().as_secs_f64());
    let (popular_n, rare_n) = (count_at(POPULAR, n), count_at(RARE, n));
    println!(
        "  at `{POPULAR}`: {popular_n}, at `{RARE}`: {rare_n}; STORE frame {} bytes",
        preload
            .descriptors
            .first()
            .map(|d| Frame::new(
                MsgId([0; 16]),
                Message::Store(Store {
                    sender: d.publisher,
                    sender_addr: NodeAddr::quic("0.0.0.0:0"),
                    descriptor: d.clone().into(),
                })
            )
            .encode()
            .len())
            .unwrap_or(0)
    );

    let hub_rt = runtime("hub");
    let load_rt = runtime("load");
    let hub = hub_rt.block_on(Hub::start(config.clone())).unwrap();
    let addr = hub.local_addr();
    println!("hub at {addr}, data dir {}", data_dir.display());

    // ---- preload
    let (pre, milestones) = load_rt.block_on(async {
        let clients = connected_clients(addr, args.preload_conns, 1).await;
        let r = drive(
            addr,
            &clients,
            args.preload_depth,
            Work::Store(Arc::clone(&preload)),
            None,
            (n as u64 / 10).max(1),
        )
        .await;
        for c in clients {
            c.shutdown().await;
        }
        r
    });
    println!(
        "preload: {} STOREs in {:.1} s: {}",
        pre.requests,
        pre.secs,
        summary(&pre)
    );
    let mut last: Option<(u64, Instant)> = None;
    let mut tenths = Vec::new();
    for (done, at) in &milestones {
        if let Some((d0, t0)) = last {
            let r = (done - d0) as f64 / at.duration_since(t0).as_secs_f64().max(1e-9);
            tenths.push(format!("{:.0}", r));
        }
        last = Some((*done, *at));
    }
    println!(
        "  STOREs/s per tenth of the preload (after the first): {}",
        tenths.join(", ")
    );

    // ---- measurements at `n`
    let mut rows: Vec<(String, Outcome)> = Vec::new();
    let mut seed = 100;
    let shapes = [(1usize, 64usize), (8, 8)];
    let mut cases: Vec<(String, Work)> = Vec::new();
    let keys = if args.skip_find_value {
        &[][..]
    } else {
        &[POPULAR, RARE][..]
    };
    for &key in keys {
        let held = if key == POPULAR { popular_n } else { rare_n };
        for (conns, depth) in shapes {
            cases.push((
                format!("FIND_VALUE `{key}` ({held} held, ≤ 20 returned), {conns} conn × {depth}"),
                Work::FindValue(key),
            ));
        }
    }
    for (conns, depth) in shapes.iter().copied().filter(|_| !args.skip_store) {
        cases.push((
            format!("STORE, new publisher each, {conns} conn × {depth}"),
            Work::Store(Arc::clone(&stores)),
        ));
    }
    let before_store_len = n;
    for (i, (name, work)) in cases.into_iter().enumerate() {
        let (conns, depth) = shapes[i % 2];
        let r = load_rt.block_on(async {
            let clients = connected_clients(addr, conns, seed).await;
            if let Work::FindValue(key) = work {
                let c = &clients[0];
                let r = c.request(addr, None, find_value_frame(c, key)).await;
                let got = r.ok().and_then(|r| descriptors_in(&r.frame));
                println!("  `{key}` answers with {got:?} descriptors");
            }
            let (r, _) = drive(addr, &clients, depth, work, Some(args.secs), u64::MAX).await;
            for c in clients {
                c.shutdown().await;
            }
            r
        });
        seed += 100;
        println!("{name}: {}", summary(&r));
        rows.push((name, r));
    }
    let stored_during = stores.next.load(Ordering::Relaxed).min(pool_len);
    let table_len = hub_rt.block_on(hub.node().routing_table_len()).unwrap_or(0);

    // ---- restarts
    let t = Instant::now();
    hub_rt.block_on(hub.shutdown()).unwrap();
    let shutdown = t.elapsed();
    let mut closed_after = vec![wait_until_closed(&config)];
    let data_file = config.store_path().join("data.mdb");
    let file_size = std::fs::metadata(&data_file).map(|m| m.len()).unwrap_or(0);
    let (hub, warm) = timed_start(&hub_rt, &load_rt, &config);
    let mut restarts = vec![("warm (store file in the page cache)", warm)];
    if !args.no_cold_restart {
        hub_rt.block_on(hub.shutdown()).unwrap();
        closed_after.push(wait_until_closed(&config));
        if drop_from_page_cache(&data_file) {
            let (hub, cold) = timed_start(&hub_rt, &load_rt, &config);
            restarts.push(("cold (store file dropped from the page cache)", cold));
            hub_rt.block_on(hub.shutdown()).unwrap();
        } else {
            println!("dd iflag=nocache failed: no cold restart");
        }
    } else {
        hub_rt.block_on(hub.shutdown()).unwrap();
    }
    closed_after.push(wait_until_closed(&config));
    let steps = restart_steps(&config);
    let _ = std::fs::remove_dir_all(&data_dir);

    // ---- report
    println!();
    println!(
        "Hub with {n} descriptors ({} after the STORE cases; data.mdb {:.0} MiB; {table_len} peers in the routing table), {} s per case",
        before_store_len + stored_during,
        file_size as f64 / (1 << 20) as f64,
        args.secs
    );
    println!();
    println!(
        "| case | requests/s | hub thread: ran / waited for a CPU / blocked | hub CPU per request | written to disk per request | load thread CPU | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    let preload_name = format!(
        "preload: STORE into a growing store (0 → {n}), {} conn × {}",
        args.preload_conns, args.preload_depth
    );
    for (name, r) in std::iter::once((&preload_name, &pre)).chain(rows.iter().map(|(n, r)| (n, r)))
    {
        println!(
            "| {name} | {:.0} | {} | {:.1} µs | {:.1} KiB | {:.0} % | {} |",
            r.rate(),
            r.hub_time(),
            r.hub_us(),
            r.disk_kib(),
            100.0 * r.load_cpu,
            errors(r)
        );
    }
    println!();
    println!("shutdown (grace 1 s, flush): {}", ms(shutdown));
    println!(
        "the store could be opened again {} after each `Hub::shutdown` returned",
        closed_after
            .iter()
            .map(|(d, refused)| {
                format!(
                    "{:.1} ms ({refused} opens refused before)",
                    d.as_secs_f64() * 1e3
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    println!(
        "| restart | `Hub::start` returned | PING answered | FIND_VALUE answered | descriptors loaded | FIND_VALUE answer |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, r) in &restarts {
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            ms(r.start_returned),
            ms(r.ping_answered),
            ms(r.find_value_answered),
            r.loaded,
            r.answer
        );
    }
    println!();
    println!("restart steps, timed alone (store file in the page cache):");
    for (step, d) in &steps {
        println!("- {step}: {}", ms(*d));
    }
}
