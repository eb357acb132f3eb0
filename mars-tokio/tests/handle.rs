//! The async handle on real loopback sockets: a small mars mesh.

use std::time::Duration;

use mars_proto::schema::{self, Capability, Endpoint, TypePath};
use mars_proto::{Config, Keypair};
use mars_tokio::{Error, Node, NodeConfig, NodeHandle, unix_now};

async fn node(i: u8) -> NodeHandle {
    let mut config = NodeConfig::new("127.0.0.1:0".parse().unwrap());
    config.keypair = Keypair::from_secret_bytes(&[i; 32]);
    config.host.node = Config::testing();
    config.seed = Some(u64::from(i));
    Node::spawn(config).await.unwrap()
}

fn capability(type_path: &str, key: &Keypair) -> mars_proto::Descriptor {
    Capability::new(
        TypePath::new(type_path).unwrap(),
        Endpoint::text("https://agent.example/v1"),
    )
    .sign(key, unix_now(), 1)
    .unwrap()
}

#[tokio::test]
async fn handle_bootstrap_publish_discover_ping_revoke_shutdown() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let seed = node(1).await;
        let a = node(2).await;
        let b = node(3).await;
        assert_eq!(seed.routing_table_len().await.unwrap(), 0);
        assert!(a.bootstrap(vec![seed.local_addr()]).await.unwrap() >= 1);
        assert!(b.bootstrap(vec![seed.local_addr()]).await.unwrap() >= 1);
        assert!(seed.routing_table_len().await.unwrap() >= 1);

        // Ping returns the certificate's identity.
        assert_eq!(a.ping(b.local_addr()).await.unwrap(), b.identity());

        // A publishes under its own key; B discovers it at every level.
        let key = Keypair::from_secret_bytes(&[2; 32]);
        let d = capability("compute/inference/text-generation", &key);
        let id = d.id;
        let keys = a.publish(d).await.unwrap();
        assert_eq!(keys.len(), 3);
        assert!(keys.iter().all(|k| k.acked >= 2), "{keys:?}");
        let found = b
            .discover(schema::routing_key("compute/inference"), None, 20)
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, id);

        // Revocation removes it everywhere.
        let keys = a.revoke(id).await.unwrap();
        assert!(keys.iter().all(|k| k.acked >= 1), "{keys:?}");
        let found = b
            .discover(schema::routing_key("compute/inference"), None, 20)
            .await
            .unwrap();
        assert!(found.iter().all(|d| d.id != id), "{found:?}");

        // A dead address fails in bounded time with a clear error.
        let dead = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        match a.ping(dead).await {
            Err(Error::Query(mars_proto::node::QueryError::Unreachable { .. })) => {}
            other => panic!("{other:?}"),
        }

        for n in [&seed, &a, &b] {
            n.shutdown().await;
        }
        assert!(matches!(a.routing_table_len().await, Err(Error::Stopped)));
    })
    .await
    .unwrap();
}
