//! Loopback QUIC benchmark: a mars node and a reference node (built from
//! `mesh-transport` and `mesh-dht` 0.1.1, composed as the reference hub
//! composes them) measured in the same run by the same load generator
//! (mars-tokio clients sending raw request frames).
//!
//! ```sh
//! cargo run --release -p mars-tokio --example quic_bench [-- SECONDS_PER_CASE]
//! ```
//!
//! Each server runs on its own single-threaded tokio runtime (one core); the
//! load generator runs on another (the machine's other core). Cases:
//! full handshakes/s (a fresh client node, hence a fresh key, certificate
//! and connection, per PING), then FIND_VALUE and STORE requests/s through
//! one connection (64 requests in flight) and through 8 connections (8 in
//! flight each).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mesh_core::Frame as RefFrame;
use mesh_core::frame::{
    MSG_FIND_NODE, MSG_FIND_NODE_RESULT, MSG_FIND_VALUE, MSG_FIND_VALUE_RESULT, MSG_PING, MSG_PONG,
    MSG_STORE, MSG_STORE_ACK,
};
use mesh_core::message::{FindNode, FindValue as RefFindValue, Ping as RefPing, Store as RefStore};
use mesh_core::message::{from_cbor, to_cbor};
use mesh_dht::{DhtConfig, DhtNode, verify_sender_binding};
use mesh_transport::MeshEndpoint;
use tokio::runtime::Runtime;
use tokio::sync::Mutex;

use mars_proto::schema::{self, Capability, Endpoint, TypePath};
use mars_proto::wire::{FindValue, Frame, Message, MsgId, NodeAddr, Ping, Store};
use mars_proto::{Config, Keypair};
use mars_tokio::{Node, NodeConfig, NodeHandle, unix_now};

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

async fn mars_client(seed: u64) -> NodeHandle {
    let mut c = NodeConfig::new("127.0.0.1:0".parse().unwrap());
    c.host.node = Config::testing();
    c.advertise = Some(NodeAddr::quic("0.0.0.0:0"));
    c.seed = Some(seed);
    Node::spawn(c).await.unwrap()
}

// ------------------------------------------------------- reference server

async fn serve_ref(
    dht: &Mutex<DhtNode>,
    frame: &RefFrame,
    peer: &Option<mesh_core::identity::Identity>,
) -> Option<RefFrame> {
    let mut n = dht.lock().await;
    let (t, body) = match frame.msg_type {
        MSG_PING => {
            let m: RefPing = from_cbor(&frame.body).ok()?;
            verify_sender_binding(&m.sender, peer).ok()?;
            (MSG_PONG, to_cbor(&n.handle_ping(&m)).ok()?)
        }
        MSG_STORE => {
            let m: RefStore = from_cbor(&frame.body).ok()?;
            verify_sender_binding(&m.sender, peer).ok()?;
            (MSG_STORE_ACK, to_cbor(&n.handle_store(&m)).ok()?)
        }
        MSG_FIND_NODE => {
            let m: FindNode = from_cbor(&frame.body).ok()?;
            verify_sender_binding(&m.sender, peer).ok()?;
            (MSG_FIND_NODE_RESULT, to_cbor(&n.handle_find_node(&m)).ok()?)
        }
        MSG_FIND_VALUE => {
            let m: RefFindValue = from_cbor(&frame.body).ok()?;
            verify_sender_binding(&m.sender, peer).ok()?;
            (
                MSG_FIND_VALUE_RESULT,
                to_cbor(&n.handle_find_value(&m)).ok()?,
            )
        }
        _ => return None,
    };
    Some(RefFrame::response(frame, t, body))
}

async fn reference_server(preload: &[mars_proto::Descriptor]) -> SocketAddr {
    let kp = mesh_core::identity::Keypair::generate();
    let endpoint = Arc::new(MeshEndpoint::new("127.0.0.1:0".parse().unwrap(), &kp).unwrap());
    let addr = endpoint.local_addr().unwrap();
    let mut node = DhtNode::new(
        kp,
        mesh_core::message::NodeAddr::quic(&addr.to_string()),
        DhtConfig::default(),
    );
    for d in preload {
        // Through the wire encoding both sides speak.
        let f = Frame::new(
            MsgId([0; 16]),
            Message::Store(Store {
                sender: d.publisher,
                sender_addr: NodeAddr::quic("127.0.0.1:1"),
                descriptor: d.clone().into(),
            }),
        )
        .encode();
        let rf = RefFrame::from_bytes(&f).unwrap();
        let m: RefStore = from_cbor(&rf.body).unwrap();
        assert!(node.handle_store(&m).stored);
    }
    let dht = Arc::new(Mutex::new(node));
    tokio::spawn(async move {
        let _ = endpoint
            .listen(move |frame, sender, peer| {
                let d = Arc::clone(&dht);
                async move {
                    if let Some(resp) = serve_ref(&d, &frame, &peer).await {
                        let _ = sender.send(&resp).await;
                    }
                }
            })
            .await;
    });
    addr
}

async fn mars_server(preload: &[mars_proto::Descriptor]) -> (NodeHandle, SocketAddr) {
    let mut c = NodeConfig::new("127.0.0.1:0".parse().unwrap());
    c.host.node = Config::testing();
    c.host.node.store.stores_per_minute = u32::MAX;
    // A load generator is one IP and a few identities: lift the abuse
    // limits, they are not what is measured here.
    c.host.requests_per_ip = None;
    c.host.requests_per_identity = None;
    c.host.max_connections_per_ip = usize::MAX;
    c.host.handshakes_before_retry = usize::MAX;
    c.seed = Some(1);
    let h = Node::spawn(c).await.unwrap();
    let addr = h.local_addr();
    // Preload through a client's STOREs (one per publisher: rate limits).
    let client = mars_client(2).await;
    for d in preload {
        let f = store_frame(&client, d);
        let r = client.request(addr, None, f).await.unwrap();
        let back = Frame::decode(&r.frame).unwrap();
        assert!(matches!(back.message, Message::StoreAck(a) if a.stored));
    }
    client.shutdown().await;
    (h, addr)
}

// ------------------------------------------------------------- workloads

fn descriptors(n: usize, from: u64) -> Vec<mars_proto::Descriptor> {
    let now = unix_now();
    let sign = |range: std::ops::Range<u64>| -> Vec<mars_proto::Descriptor> {
        range
            .map(|i| {
                let mut secret = [0u8; 32];
                secret[..8].copy_from_slice(&(from + i).to_le_bytes());
                secret[8] = 0x5a;
                let key = Keypair::from_secret_bytes(&secret);
                Capability::new(
                    TypePath::new("compute/inference/text-generation").unwrap(),
                    Endpoint::text(format!("https://agent-{i}.example/v1")),
                )
                .sign(&key, now, 1)
                .unwrap()
            })
            .collect()
    };
    let n = n as u64;
    // Two threads: signing 300,000 descriptors takes seconds.
    std::thread::scope(|s| {
        let a = s.spawn(|| sign(0..n / 2));
        let mut b = sign(n / 2..n);
        let mut out = a.join().unwrap();
        out.append(&mut b);
        out
    })
}

fn store_frame(client: &NodeHandle, d: &mars_proto::Descriptor) -> Vec<u8> {
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

fn find_value_frame(client: &NodeHandle) -> Vec<u8> {
    Frame::new(
        MsgId([8; 16]),
        Message::FindValue(FindValue {
            sender: client.identity(),
            sender_addr: NodeAddr::quic("0.0.0.0:0"),
            key: schema::routing_key("compute"),
            max_results: 20,
            filters: None,
        }),
    )
    .encode()
}

#[derive(Clone, Copy)]
enum Work {
    FindValue,
    Store,
}

/// Requests/s through `conns` client connections with `depth` requests in
/// flight on each, for `secs`.
async fn requests_per_sec(
    server: SocketAddr,
    work: Work,
    conns: usize,
    depth: usize,
    secs: f64,
    stores: Arc<Vec<mars_proto::Descriptor>>,
    next_store: Arc<AtomicUsize>,
) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let client = mars_client(100 + c as u64).await;
        // Connect first: the handshake is not part of this figure.
        let ping = Frame::new(
            MsgId([1; 16]),
            Message::Ping(Ping {
                sender: client.identity(),
                sender_addr: NodeAddr::quic("0.0.0.0:0"),
            }),
        )
        .encode();
        client.request(server, None, ping).await.unwrap();
        for _ in 0..depth {
            let (client, stop, done, errors) = (
                client.clone(),
                Arc::clone(&stop),
                Arc::clone(&done),
                Arc::clone(&errors),
            );
            let (stores, next_store) = (Arc::clone(&stores), Arc::clone(&next_store));
            let fv = find_value_frame(&client);
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let frame = match work {
                        Work::FindValue => fv.clone(),
                        Work::Store => {
                            let i = next_store.fetch_add(1, Ordering::Relaxed) % stores.len();
                            store_frame(&client, &stores[i])
                        }
                    };
                    match client.request(server, None, frame).await {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
        clients.push(client);
    }
    let start = tokio::time::Instant::now();
    let before = done.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let n = done.load(Ordering::Relaxed) - before;
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    for c in clients {
        c.shutdown().await;
    }
    (n as f64 / elapsed, errors.load(Ordering::Relaxed))
}

/// Full handshakes/s: `parallel` loops of (fresh client node, PING, close).
async fn handshakes_per_sec(server: SocketAddr, parallel: usize, secs: f64) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for p in 0..parallel {
        let (stop, done, errors) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let client = mars_client(1_000_000 * (p as u64 + 1) + i).await;
                let ping = Frame::new(
                    MsgId([1; 16]),
                    Message::Ping(Ping {
                        sender: client.identity(),
                        sender_addr: NodeAddr::quic("0.0.0.0:0"),
                    }),
                )
                .encode();
                match client.request(server, None, ping).await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
                // Closing takes QUIC's drain period: not part of the figure.
                tokio::spawn(async move { client.shutdown().await });
            }
        }));
    }
    let start = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let n = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    (n as f64 / elapsed, errors.load(Ordering::Relaxed))
}

/// CPU seconds used so far by each named thread (Linux; empty elsewhere).
fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 (1-based) of the whole line.
        *out.entry(name).or_insert(0.0) += (ticks(11) + ticks(12)) / 100.0;
    }
    out
}

fn cpu_report(before: &std::collections::BTreeMap<String, f64>, secs: f64) -> String {
    let after = cpu_by_thread();
    ["mars-server", "ref-server", "load"]
        .iter()
        .map(|n| {
            let d = after.get(*n).unwrap_or(&0.0) - before.get(*n).unwrap_or(&0.0);
            format!("{n} {:.0}%", 100.0 * d / secs)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Full handshakes/s computed on one core, no sockets: a fresh client
/// `Host` (new key and certificate) per handshake against one server
/// `Host`, datagrams passed by hand, until the client's PING is answered.
/// Both ends' work is counted: the server's share is roughly half.
#[allow(clippy::disallowed_methods)]
fn in_memory_handshakes(n: u64) -> f64 {
    use mars_proto::quic::{Host, HostConfig, HostEvent, TimeAnchor};
    use std::time::Instant;
    let anchor = TimeAnchor {
        instant: Instant::now(),
        unix: unix_now(),
    };
    let (sa, ca): (SocketAddr, SocketAddr) = (
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    );
    let config = HostConfig::with_node(Config::testing());
    let mut server = Host::new(
        config.clone(),
        Keypair::from_secret_bytes(&[1; 32]),
        NodeAddr::quic(sa.to_string()),
        anchor,
        1,
    )
    .unwrap();
    let mut buf = Vec::new();
    let start = Instant::now();
    for i in 0..n {
        let now = Instant::now();
        let mut secret = [9u8; 32];
        secret[..8].copy_from_slice(&i.to_le_bytes());
        let mut client = Host::new(
            config.clone(),
            Keypair::from_secret_bytes(&secret),
            NodeAddr::quic("0.0.0.0:0"),
            anchor,
            i,
        )
        .unwrap();
        let ping = Frame::new(
            MsgId([1; 16]),
            Message::Ping(Ping {
                sender: client.identity(),
                sender_addr: NodeAddr::quic("0.0.0.0:0"),
            }),
        )
        .encode();
        let id = client.send_raw(now, sa, None, ping);
        'exchange: loop {
            while let Some(t) = client.poll_transmit(&mut buf) {
                server.handle_datagram(now, ca, &buf[..t.size]);
            }
            while let Some(t) = server.poll_transmit(&mut buf) {
                client.handle_datagram(now, sa, &buf[..t.size]);
            }
            while server.poll_event().is_some() {}
            while let Some(e) = client.poll_event() {
                if matches!(e, HostEvent::Response { id: r, .. } if r == id) {
                    break 'exchange;
                }
            }
        }
        // The server forgets the client (as if it had closed).
        server.close(now);
        while server.poll_transmit(&mut buf).is_some() {}
        server.handle_timeout(now + Duration::from_secs(120));
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    println!("preparing descriptors…");
    let preload = descriptors(100, 0);
    let stores = Arc::new(descriptors(
        if std::env::var_os("QUIC_BENCH_PROFILE").is_some() {
            1
        } else {
            150_000
        },
        1_000_000,
    ));

    let mars_rt = runtime("mars-server");
    let ref_rt = runtime("ref-server");
    let load_rt = runtime("load");
    let (_mars, mars_addr) = mars_rt.block_on(mars_server(&preload));
    let ref_addr = ref_rt.block_on(reference_server(&preload));

    if std::env::var_os("QUIC_BENCH_PROFILE").is_some() {
        // Only the mars FIND_VALUE case, for `perf record`.
        let next_store = Arc::new(AtomicUsize::new(0));
        let r = load_rt.block_on(requests_per_sec(
            mars_addr,
            Work::FindValue,
            1,
            64,
            secs,
            Arc::clone(&stores),
            next_store,
        ));
        println!("mars FIND_VALUE: {r:?}");
        return;
    }
    let mut rows = Vec::new();
    let next_store = Arc::new(AtomicUsize::new(0));
    for (name, addr) in [("mars", mars_addr), ("reference", ref_addr)] {
        let r = load_rt.block_on(async {
            // Best of three runs per case: other work on the machine only
            // ever makes a run slower.
            let mut best = [(0.0f64, 0u64); 5];
            for _ in 0..3 {
                let s = || Arc::clone(&stores);
                let n = || Arc::clone(&next_store);
                let t = cpu_by_thread();
                let fv1 = requests_per_sec(addr, Work::FindValue, 1, 64, secs, s(), n()).await;
                println!(
                    "  {name} FIND_VALUE 1×64: {:.0}/s, cpu {}",
                    fv1.0,
                    cpu_report(&t, secs)
                );
                let fv8 = requests_per_sec(addr, Work::FindValue, 8, 8, secs, s(), n()).await;
                let t = cpu_by_thread();
                let st1 = requests_per_sec(addr, Work::Store, 1, 64, secs, s(), n()).await;
                println!(
                    "  {name} STORE 1×64: {:.0}/s, cpu {}",
                    st1.0,
                    cpu_report(&t, secs)
                );
                let st8 = requests_per_sec(addr, Work::Store, 8, 8, secs, s(), n()).await;
                // Last: it leaves hundreds of connections draining.
                let t = cpu_by_thread();
                let hs = handshakes_per_sec(addr, 32, secs).await;
                println!(
                    "  {name} handshakes: {:.0}/s, cpu {}",
                    hs.0,
                    cpu_report(&t, secs)
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                for (b, r) in best.iter_mut().zip([hs, fv1, fv8, st1, st8]) {
                    if r.0 > b.0 {
                        *b = r;
                    }
                }
            }
            best
        });
        println!("{name}: {r:?}");
        rows.push((name, r));
    }
    let mem = in_memory_handshakes(500);
    println!();
    println!("in-memory full handshakes (both ends, one core): {mem:.0}/s");
    println!();
    println!("| case | mars | reference | mars / reference |");
    println!("|---|---:|---:|---:|");
    let cases = [
        "full handshakes/s (fresh client node + PING, 32 in parallel)",
        "FIND_VALUE/s, 1 connection × 64 in flight (20 descriptors per answer)",
        "FIND_VALUE/s, 8 connections × 8 in flight",
        "STORE/s, 1 connection × 64 in flight",
        "STORE/s, 8 connections × 8 in flight",
    ];
    for (i, case) in cases.iter().enumerate() {
        let (m, me) = rows[0].1[i];
        let (r, re) = rows[1].1[i];
        let errs = if me + re > 0 {
            format!(" (errors: mars {me}, reference {re})")
        } else {
            String::new()
        };
        println!(
            "| {case}{errs} | {m:.0} | {r:.0} | {:.2}× |",
            m / r.max(1e-9)
        );
    }
}
