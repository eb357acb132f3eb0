//! Interop on loopback with the reference implementation 0.1.1: its client
//! (`mars-client`) against mars nodes, mars against it, and a reference node
//! composed from `mesh-transport` + `mesh-dht` in one mesh with mars nodes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mars_client::MeshClient;
use mesh_core::Frame;
use mesh_core::frame::{
    MSG_FIND_NODE, MSG_FIND_NODE_RESULT, MSG_FIND_VALUE, MSG_FIND_VALUE_RESULT, MSG_PING, MSG_PONG,
    MSG_STORE, MSG_STORE_ACK,
};
use mesh_core::message::{FindNode, FindValue, Ping, Store, from_cbor, to_cbor};
use mesh_dht::{DhtConfig, DhtNode, verify_sender_binding};
use mesh_transport::MeshEndpoint;
use tokio::sync::Mutex;

use mars_proto::schema::{self, Capability, Endpoint, TypePath};
use mars_proto::{Config, Keypair};
use mars_tokio::{Node, NodeConfig, NodeHandle, unix_now};

const LIMIT: Duration = Duration::from_secs(90);

async fn mars_node(i: u8, config: Config) -> NodeHandle {
    let mut c = NodeConfig::new("127.0.0.1:0".parse().unwrap());
    c.keypair = Keypair::from_secret_bytes(&[i; 32]);
    c.host.node = config;
    c.seed = Some(u64::from(i));
    Node::spawn(c).await.unwrap()
}

fn ref_addr(a: SocketAddr) -> mesh_core::message::NodeAddr {
    mesh_core::message::NodeAddr::quic(&a.to_string())
}

async fn ref_client() -> MeshClient {
    MeshClient::new(
        mesh_core::identity::Keypair::generate(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

fn mars_capability(type_path: &str, key: &Keypair, endpoint: &str) -> mars_proto::Descriptor {
    Capability::new(TypePath::new(type_path).unwrap(), Endpoint::text(endpoint))
        .sign(key, unix_now(), 1)
        .unwrap()
}

// ------------------------------------------- a reference node, composed here

/// The reference implementation's transport for its DHT: dial, one request
/// per stream (as `mars-client` does, without its connection cache).
struct RefTransport(Arc<MeshEndpoint>);

impl mesh_dht::Transport for RefTransport {
    async fn send_request(
        &self,
        addr: &mesh_core::message::NodeAddr,
        frame: Frame,
    ) -> Result<Frame, mesh_dht::TransportError> {
        use mesh_dht::TransportError as E;
        let to: SocketAddr = addr
            .address
            .parse()
            .map_err(|e| E::Unreachable(format!("{}: {e}", addr.address)))?;
        let conn = tokio::time::timeout(Duration::from_secs(5), self.0.connect(to))
            .await
            .map_err(|_| E::Timeout)?
            .map_err(|e| E::ConnectionFailed(e.to_string()))?;
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            mesh_transport::send_request(&conn, &frame),
        )
        .await
        .map_err(|_| E::Timeout)?
        .map_err(|e| E::FrameError(e.to_string()));
        conn.close("done");
        r
    }
}

struct RefNode {
    addr: SocketAddr,
    dht: Arc<Mutex<DhtNode>>,
    transport: RefTransport,
}

/// Serves one request the way the reference node does: sender binding
/// checked, then the `DhtNode` handler.
async fn serve(
    dht: &Mutex<DhtNode>,
    frame: &Frame,
    peer: &Option<mesh_core::identity::Identity>,
) -> Option<Frame> {
    let mut n = dht.lock().await;
    let (t, body) = match frame.msg_type {
        MSG_PING => {
            let m: Ping = from_cbor(&frame.body).ok()?;
            verify_sender_binding(&m.sender, peer).ok()?;
            (MSG_PONG, to_cbor(&n.handle_ping(&m)).ok()?)
        }
        MSG_STORE => {
            let m: Store = from_cbor(&frame.body).ok()?;
            verify_sender_binding(&m.sender, peer).ok()?;
            (MSG_STORE_ACK, to_cbor(&n.handle_store(&m)).ok()?)
        }
        MSG_FIND_NODE => {
            let m: FindNode = from_cbor(&frame.body).ok()?;
            verify_sender_binding(&m.sender, peer).ok()?;
            (MSG_FIND_NODE_RESULT, to_cbor(&n.handle_find_node(&m)).ok()?)
        }
        MSG_FIND_VALUE => {
            let m: FindValue = from_cbor(&frame.body).ok()?;
            verify_sender_binding(&m.sender, peer).ok()?;
            (
                MSG_FIND_VALUE_RESULT,
                to_cbor(&n.handle_find_value(&m)).ok()?,
            )
        }
        _ => return None,
    };
    Some(Frame::response(frame, t, body))
}

async fn ref_node() -> RefNode {
    let kp = mesh_core::identity::Keypair::generate();
    let endpoint = Arc::new(MeshEndpoint::new("127.0.0.1:0".parse().unwrap(), &kp).unwrap());
    let addr = endpoint.local_addr().unwrap();
    let dht = Arc::new(Mutex::new(DhtNode::new(
        kp,
        ref_addr(addr),
        DhtConfig::default(),
    )));
    let (e, d) = (Arc::clone(&endpoint), Arc::clone(&dht));
    tokio::spawn(async move {
        let _ = e
            .listen(move |frame, sender, peer| {
                let d = Arc::clone(&d);
                async move {
                    if let Some(resp) = serve(&d, &frame, &peer).await {
                        let _ = sender.send(&resp).await;
                    }
                }
            })
            .await;
    });
    RefNode {
        addr,
        dht,
        transport: RefTransport(endpoint),
    }
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn reference_client_publishes_through_a_mars_node_and_mars_discovers_it() {
    tokio::time::timeout(LIMIT, async {
        let seed = mars_node(1, Config::testing()).await;
        let mut client = ref_client().await;
        let n = client
            .bootstrap(&[ref_addr(seed.local_addr())])
            .await
            .unwrap();
        assert!(n >= 1, "the mars seed lists itself for a reference client");
        let ack = client
            .publish_capability(
                "compute/inference/text-generation",
                "https://ref.example/v1",
                Some("model=m1"),
                &ref_addr(seed.local_addr()),
            )
            .await
            .unwrap();
        assert!(ack.stored, "{:?}", ack.reason);

        let searcher = mars_node(2, Config::testing()).await;
        searcher.bootstrap(vec![seed.local_addr()]).await.unwrap();
        let found = searcher
            .discover(schema::routing_key("compute/inference"), None, 20)
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        let cap = Capability::from_descriptor(found[0].descriptor()).unwrap();
        assert_eq!(cap.endpoint().address(), "https://ref.example/v1");
        assert_eq!(found[0].publisher.did(), client.identity().did());

        // The reference client's own ping works against mars too.
        let pong = client.ping(&ref_addr(seed.local_addr())).await.unwrap();
        assert_eq!(pong.sender.did(), seed.identity().did());
        seed.shutdown().await;
        searcher.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn reference_client_discovers_what_mars_published() {
    tokio::time::timeout(LIMIT, async {
        let seed = mars_node(1, Config::testing()).await;
        let publisher = mars_node(2, Config::testing()).await;
        publisher.bootstrap(vec![seed.local_addr()]).await.unwrap();
        let key = Keypair::from_secret_bytes(&[2; 32]);
        let d = mars_capability("compute/embedding", &key, "https://mars.example/embed");
        let id = d.id;
        let keys = publisher.publish(d).await.unwrap();
        assert!(keys.iter().all(|k| k.acked >= 2), "{keys:?}");

        let mut client = ref_client().await;
        client
            .bootstrap(&[ref_addr(seed.local_addr())])
            .await
            .unwrap();
        let found = client
            .discover(&mesh_core::routing::routing_key("compute"))
            .await
            .unwrap();
        // The reference lookup collects from every responder of a round,
        // duplicates included.
        assert!(!found.is_empty());
        assert!(
            found.iter().all(|d| d.id.to_hex() == id.to_hex()),
            "{found:?}"
        );
        assert_eq!(found[0].topic, "compute/embedding");
        seed.shutdown().await;
        publisher.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn mixed_mesh_reference_node_and_mars_nodes_store_and_look_up_both_ways() {
    tokio::time::timeout(LIMIT, async {
        let m1 = mars_node(1, Config::testing()).await;
        let r = ref_node().await;

        // The reference node joins through the mars node.
        let n = r
            .dht
            .lock()
            .await
            .bootstrap(&[ref_addr(m1.local_addr())], &r.transport)
            .await
            .unwrap();
        assert!(n >= 1);
        // The mars node checks the reference node's claimed address with a
        // PING before trusting it; give that a moment.
        let mut tries = 0;
        while m1.routing_table_len().await.unwrap() == 0 {
            tries += 1;
            assert!(
                tries < 100,
                "the reference node never entered the mars table"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // A second mars node joins and learns the reference node.
        let m2 = mars_node(2, Config::testing()).await;
        assert!(m2.bootstrap(vec![m1.local_addr()]).await.unwrap() >= 2);

        // mars STORE → the reference node accepts it.
        let key = Keypair::from_secret_bytes(&[2; 32]);
        let d = mars_capability("storage/object", &key, "https://mars.example/s3");
        let mars_id = d.id;
        let keys = m2.publish(d).await.unwrap();
        assert!(keys.iter().all(|k| k.acked >= 3), "{keys:?}");
        let at_ref = r
            .dht
            .lock()
            .await
            .store
            .get_descriptors(&mesh_core::routing::routing_key("storage"), None);
        assert_eq!(at_ref.len(), 1, "the reference node stored the mars STORE");
        assert_eq!(at_ref[0].id.to_hex(), mars_id.to_hex());

        // Reference lookup (its own iterative FIND_VALUE) finds it on mars.
        let found = r
            .dht
            .lock()
            .await
            .lookup_value(
                &mesh_core::routing::routing_key("storage/object"),
                &r.transport,
            )
            .await
            .unwrap();
        assert!(found.iter().any(|d| d.id.to_hex() == mars_id.to_hex()));

        // A reference client STOREs at the reference node only; the mars
        // lookup finds it there.
        let mut client = ref_client().await;
        let ack = client
            .publish_capability(
                "compute/vision",
                "https://ref.example/vision",
                None,
                &ref_addr(r.addr),
            )
            .await
            .unwrap();
        assert!(ack.stored);
        let found = m2
            .discover(schema::routing_key("compute/vision"), None, 20)
            .await
            .unwrap();
        assert_eq!(
            found.len(),
            1,
            "mars finds what only the reference node holds"
        );
        assert_eq!(found[0].publisher.did(), client.identity().did());

        // And a reference STORE at a mars node is acknowledged.
        let ack = client
            .publish_capability(
                "compute/audio",
                "https://ref.example/audio",
                None,
                &ref_addr(m2.local_addr()),
            )
            .await
            .unwrap();
        assert!(ack.stored, "{:?}", ack.reason);
        m1.shutdown().await;
        m2.shutdown().await;
    })
    .await
    .unwrap();
}
