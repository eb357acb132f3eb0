//! `/metrics` and `/health` over real loopback sockets: a hub and a client
//! node, the client's traffic counted on both.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use mars_proto::quic::RateLimit;
use mars_proto::schema::{self, Capability, Endpoint, TypePath};
use mars_proto::{Config, Keypair};
use mars_tokio::http::{self, HttpServer};
use mars_tokio::metrics::{CONTENT_TYPE, Metrics};
use mars_tokio::{Node, NodeConfig, NodeHandle, unix_now};

/// A bound on every test: a hang is a failure, never a wait.
const HANG_GUARD: Duration = Duration::from_secs(60);

async fn node(i: u8) -> NodeHandle {
    let mut config = NodeConfig::new("127.0.0.1:0".parse().unwrap());
    config.keypair = Keypair::from_secret_bytes(&[i; 32]);
    config.host.node = Config::testing();
    config.seed = Some(u64::from(i));
    Node::spawn(config).await.unwrap()
}

async fn serve(node: &NodeHandle) -> HttpServer {
    let metrics = Arc::new(Metrics::new(node));
    http::serve("127.0.0.1:0".parse().unwrap(), node.clone(), metrics)
        .await
        .unwrap()
}

/// Sends `request` as is; returns everything the server sent until it
/// closed.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

/// Status code, headers (lower-cased names) and body of a response.
fn parse(response: &str) -> (u16, Vec<(String, String)>, &str) {
    let (head, body) = response.split_once("\r\n\r\n").expect(response);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap();
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    let code = status[9..12].parse().unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    (code, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    let response = exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    )
    .await;
    let (code, headers, body) = parse(&response);
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert_eq!(
        header(&headers, "content-length"),
        Some(body.len().to_string().as_str())
    );
    (code, headers, body.to_owned())
}

/// The value of the sample `series` (name and labels, exactly as exposed).
fn sample(exposition: &str, series: &str) -> u64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in\n{exposition}"))
        .parse()
        .unwrap()
}

async fn scrape(addr: SocketAddr) -> String {
    let (code, headers, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(header(&headers, "content-type"), Some(CONTENT_TYPE));
    assert!(body.ends_with("# EOF\n"), "{body}");
    body
}

#[tokio::test]
async fn metrics_count_the_traffic() {
    tokio::time::timeout(HANG_GUARD, async {
        let hub = node(1).await;
        let client = node(2).await;
        let hub_http = serve(&hub).await;
        let client_http = serve(&client).await;

        // Before any traffic: the series are there, at zero.
        let m = scrape(hub_http.local_addr()).await;
        assert_eq!(sample(&m, "mars_requests_handled_total{type=\"ping\"}"), 0);
        assert_eq!(sample(&m, "mars_stored_descriptors"), 0);
        assert_eq!(
            sample(&m, "mars_command_duration_seconds_count{command=\"ping\"}"),
            0
        );
        assert!(
            m.contains(&format!(
                "mars_node_info{{did=\"{}\"}} 1",
                hub.identity().did()
            )),
            "{m}"
        );

        client.bootstrap(vec![hub.local_addr()]).await.unwrap();
        // So the hub knows the client now, not after its verification
        // (the client knows the hub already: it sends the hub no PING).
        hub.bootstrap(vec![client.local_addr()]).await.unwrap();
        assert_eq!(client.ping(hub.local_addr()).await.unwrap(), hub.identity());
        let key = Keypair::from_secret_bytes(&[2; 32]);
        let d = Capability::new(
            TypePath::new("compute/inference/text-generation").unwrap(),
            Endpoint::text("https://agent.example/v1"),
        )
        .sign(&key, unix_now(), 1)
        .unwrap();
        let keys = client.publish(d).await.unwrap();
        assert_eq!(keys.len(), 3);
        let found = client
            .discover(schema::routing_key("compute/inference"), None, 20)
            .await
            .unwrap();
        assert_eq!(found.len(), 1);

        // The hub answered one PING, three STOREs (one per routing key of
        // the type path) and one FIND_VALUE; its FIND_NODEs (bootstrap and
        // the publish lookups) depend on the lookup's rounds.
        let m = scrape(hub_http.local_addr()).await;
        let snap = hub.snapshot().await.unwrap();
        let handled = |t: &str| sample(&m, &format!("mars_requests_handled_total{{type=\"{t}\"}}"));
        assert_eq!(handled("ping"), 1);
        assert_eq!(handled("store"), 3);
        assert_eq!(handled("find_value"), 1);
        assert!(handled("find_node") >= 1);
        assert_eq!(handled("find_node"), snap.node.requests[2]);
        let total: u64 = snap.node.requests.iter().sum();
        assert_eq!(
            sample(&m, "mars_requests_total{outcome=\"answered\"}"),
            total
        );
        assert_eq!(sample(&m, "mars_requests_total{outcome=\"refused\"}"), 0);
        assert_eq!(
            sample(&m, "mars_requests_refused_total{reason=\"malformed\"}"),
            0
        );
        assert_eq!(sample(&m, "mars_stores_refused_total"), 0);
        // One descriptor, held once whatever its number of routing keys.
        assert_eq!(sample(&m, "mars_stored_descriptors"), 1);
        assert_eq!(sample(&m, "mars_stored_bytes"), snap.stored_bytes);
        assert!(snap.stored_bytes > 0);
        assert_eq!(sample(&m, "mars_routing_table_peers"), 1);
        assert_eq!(
            sample(&m, "mars_connections_accepted_total"),
            snap.host.accepted
        );
        assert!(snap.host.accepted >= 1);
        assert!(sample(&m, "mars_datagrams_received_total") > 0);
        assert!(sample(&m, "mars_datagrams_sent_total") > 0);
        // The hub ran one command itself.
        assert_eq!(
            sample(
                &m,
                "mars_command_duration_seconds_count{command=\"bootstrap\"}"
            ),
            1
        );
        assert_eq!(
            sample(&m, "mars_command_duration_seconds_count{command=\"ping\"}"),
            0
        );

        let c = scrape(client_http.local_addr()).await;
        for command in ["bootstrap", "ping", "publish", "discover"] {
            assert_eq!(
                sample(
                    &c,
                    &format!("mars_command_duration_seconds_count{{command=\"{command}\"}}")
                ),
                1,
                "{command}"
            );
        }
        assert_eq!(
            sample(
                &c,
                "mars_command_duration_seconds_count{command=\"revoke\"}"
            ),
            0
        );

        hub_http.shutdown().await;
        client_http.shutdown().await;
        hub.shutdown().await;
        client.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn health_says_ok_then_degraded_when_the_node_stops() {
    tokio::time::timeout(HANG_GUARD, async {
        let hub = node(3).await;
        let client = node(4).await;
        client.bootstrap(vec![hub.local_addr()]).await.unwrap();
        // So the hub knows the client now, not after its verification.
        hub.bootstrap(vec![client.local_addr()]).await.unwrap();
        let server = serve(&hub).await;

        let (code, headers, body) = get(server.local_addr(), "/health").await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["status"], "ok", "{health}");
        assert_eq!(health["did"], hub.identity().did(), "{health}");
        assert_eq!(health["peers"], 1, "{health}");
        assert_eq!(health["descriptors"], 0, "{health}");
        assert!(health["connections"].as_u64().unwrap() >= 1, "{health}");
        assert_eq!(health["storage"], "ok", "{health}");
        assert!(health["uptime_seconds"].is_u64(), "{health}");

        // HEAD: the same headers, no body.
        let response = exchange(server.local_addr(), b"HEAD /health HTTP/1.1\r\n\r\n").await;
        let (code, headers, body) = parse(&response);
        assert_eq!(code, 200);
        assert!(body.is_empty(), "{response}");
        assert!(
            header(&headers, "content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap()
                > 0
        );

        // The server outlives the node: health degrades, metrics fail.
        hub.shutdown().await;
        let (code, _, body) = get(server.local_addr(), "/health").await;
        assert_eq!(code, 503, "{body}");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["status"], "degraded", "{health}");
        assert_eq!(health["did"], hub.identity().did(), "{health}");
        assert!(health["peers"].is_null(), "{health}");
        let (code, _, _) = get(server.local_addr(), "/metrics").await;
        assert_eq!(code, 503);

        server.shutdown().await;
        client.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn bad_requests_are_refused_and_closed() {
    tokio::time::timeout(HANG_GUARD, async {
        let hub = node(5).await;
        let server = serve(&hub).await;
        let addr = server.local_addr();

        assert_eq!(get(addr, "/").await.0, 404);
        assert_eq!(get(addr, "/metrics/../secret").await.0, 404);
        // A query string does not change the path.
        assert_eq!(get(addr, "/health?verbose=1").await.0, 200);

        let response = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        let (code, headers, _) = parse(&response);
        assert_eq!(code, 405);
        assert_eq!(header(&headers, "allow"), Some("GET, HEAD"));

        assert_eq!(parse(&exchange(addr, b"GARBAGE\r\n\r\n").await).0, 400);
        assert_eq!(
            parse(&exchange(addr, b"GET /health HTTP/2.0\r\n\r\n").await).0,
            505
        );

        // A head that never ends: refused after the cap, and closed.
        let mut huge = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
        huge.resize(4 * http::MAX_HEAD, b'a');
        let response = exchange(addr, &huge).await;
        assert_eq!(parse(&response).0, 431, "{response}");

        // A client that leaves mid-head gets nothing, and the server goes on.
        {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /met").await.unwrap();
        }
        assert_eq!(get(addr, "/health").await.0, 200);

        // The server still serves after all that, and stops on drop.
        drop(server);
        tokio::task::yield_now().await;
        hub.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_silent_client_is_answered_408_and_closed() {
    tokio::time::timeout(HANG_GUARD, async {
        let hub = node(6).await;
        let server = serve(&hub).await;
        let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let response = String::from_utf8(out).unwrap();
        assert_eq!(parse(&response).0, 408, "{response}");
        server.shutdown().await;
        hub.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn rate_limit_refusals_are_counted_by_reason_and_by_limit() {
    tokio::time::timeout(HANG_GUARD, async {
        let mut config = NodeConfig::new("127.0.0.1:0".parse().unwrap());
        config.keypair = Keypair::from_secret_bytes(&[7; 32]);
        config.host.node = Config::testing();
        config.seed = Some(7);
        // One request per identity, then one a second: a burst of pings
        // is refused after the first.
        config.host.requests_per_identity = Some(RateLimit {
            per_second: 1,
            burst: 1,
        });
        config.host.requests_per_ip = None;
        let hub = Node::spawn(config).await.unwrap();
        let client = node(8).await;
        let server = serve(&hub).await;

        let mut refused = 0;
        for _ in 0..10 {
            if client.ping(hub.local_addr()).await.is_err() {
                refused += 1;
            }
        }
        assert!(refused >= 1);

        let m = scrape(server.local_addr()).await;
        assert_eq!(
            sample(&m, "mars_requests_rate_limited_total{limit=\"identity\"}"),
            refused
        );
        assert_eq!(
            sample(&m, "mars_requests_rate_limited_total{limit=\"ip\"}"),
            0
        );
        // Refused by the transport, before the node: still under their code.
        assert_eq!(
            sample(&m, "mars_requests_refused_total{reason=\"rate_limited\"}"),
            refused
        );
        assert_eq!(
            sample(&m, "mars_requests_total{outcome=\"refused\"}"),
            refused
        );
        assert_eq!(
            sample(&m, "mars_requests_handled_total{type=\"ping\"}"),
            10 - refused
        );

        server.shutdown().await;
        hub.shutdown().await;
        client.shutdown().await;
    })
    .await
    .unwrap();
}
