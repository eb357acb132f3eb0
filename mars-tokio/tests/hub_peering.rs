//! Two hubs in one process: the second joins through the first, each finds
//! the other at `infrastructure/hub`, and a descriptor stored at one hub is
//! found through the other.

use std::path::PathBuf;
use std::time::Duration;

use mars_proto::schema::{Capability, Endpoint, TypePath};
use mars_tokio::hub::{Hub, HubConfig};
use mars_tokio::{Node, NodeConfig, unix_now};

fn config(name: &str) -> HubConfig {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("mars-peering-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = HubConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir,
        metrics: None,
        ..HubConfig::default()
    };
    c.storage.map_size_mib = 64;
    c.storage.max_bytes = 32 << 20;
    c.peering.discover_interval_secs = 1;
    c.peering.ping_interval_secs = 1;
    c.shutdown_grace_secs = 3;
    c
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_find_each_other_and_serve_each_others_descriptors() {
    let ca = config("a");
    let a = Hub::start(ca.clone()).await.unwrap();
    let mut cb = config("b");
    cb.seeds = vec![a.local_addr().to_string()];
    let b = Hub::start(cb.clone()).await.unwrap();

    eventually("hub b knows hub a", async || b.known_hubs() == 1).await;
    eventually("hub a knows hub b", async || a.known_hubs() == 1).await;

    // A client stores at hub a only (one STORE, as reference clients do)…
    let client = Node::spawn(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    client.bootstrap(vec![a.local_addr()]).await.unwrap();
    let cap = Capability::new(
        TypePath::new("test/peering").unwrap(),
        Endpoint::text("https://agent.example/v1"),
    );
    let now = unix_now();
    let d = cap
        .sign(&mars_tokio::generate_keypair(), now, now.as_micros())
        .unwrap();
    let id = d.id;
    client.publish(d).await.unwrap();
    client.shutdown().await;

    // …and another finds it through hub b.
    let other = Node::spawn(NodeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    other.bootstrap(vec![b.local_addr()]).await.unwrap();
    let key = TypePath::new("test/peering").unwrap().routing_key();
    eventually("the descriptor is found through hub b", async || {
        other
            .discover(key, None, 20)
            .await
            .is_ok_and(|found| found.iter().any(|x| x.id == id))
    })
    .await;
    other.shutdown().await;

    let a_addr = a.local_addr();
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();

    // Both restart; b has no seed any more and rejoins through the peers
    // it saved when it stopped.
    let a = Hub::start(HubConfig {
        listen: a_addr,
        ..ca.clone()
    })
    .await
    .unwrap();
    assert_eq!(
        a.loaded(),
        3,
        "a's announcement, b's and the client's descriptor"
    );
    cb.seeds.clear();
    let b = Hub::start(cb.clone()).await.unwrap();
    eventually("restarted hub b rejoins without seeds", async || {
        b.node().routing_table_len().await.is_ok_and(|n| n >= 1)
    })
    .await;
    eventually("restarted hub b finds hub a again", async || {
        b.known_hubs() == 1
    })
    .await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&ca.data_dir);
    let _ = std::fs::remove_dir_all(&cb.data_dir);
}
