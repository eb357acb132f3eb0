//! A minimal HTTP/1.1 server for a node's `/metrics` (Prometheus) and
//! `/health` (load balancers, uptime checks), on its own TCP address.
//!
//! One request per connection (`Connection: close`), no keep-alive, no
//! body, no framework: a scraper needs nothing more, and every byte read
//! from the socket is bounded. Hostile clients get at most
//! [`MAX_HEAD`] bytes read, [`READ_TIMEOUT`] to send them, and one of
//! [`MAX_CONNECTIONS`] slots; connections beyond the cap are closed
//! unanswered.
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | 200, OpenMetrics text ([`metrics::CONTENT_TYPE`]) |
//! | `GET /health` | 200 `{"status":"ok","did":…,"uptime_seconds":…,"peers":…,"descriptors":…,"connections":…}`; 503 `"degraded"` when the node does not answer within [`SNAPSHOT_TIMEOUT`] |
//! | other path | 404 |
//! | other method | 405 (`HEAD` is served like `GET`, without the body) |
//! | head over [`MAX_HEAD`] | 431 |
//! | head not sent within [`READ_TIMEOUT`] | 408 |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use crate::metrics::{self, Metrics};
use crate::{Error, NodeHandle, Snapshot};

/// Most bytes of a request head (request line and headers) read.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its whole request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the whole response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed unanswered.
pub const MAX_CONNECTIONS: usize = 64;
/// Time the node has to answer a snapshot before `/health` says
/// "degraded" and `/metrics` fails with 503.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);

/// After answering, unread request bytes are drained (at most this many,
/// for at most [`LINGER_TIMEOUT`]) before closing: closing a socket with
/// unread data resets it, and the client could lose the response.
const LINGER_BYTES: usize = 64 * 1024;
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `shutdown` lets requests in progress finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Pause after a failed accept (out of file descriptors), so the loop
/// does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A running metrics server. Stops at [`shutdown`](HttpServer::shutdown)
/// or when dropped (connections in progress are then cut).
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// The bound TCP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in progress finish (for at most a
    /// second) and closes the listener.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves `/metrics` and `/health` of `node` on `addr` (`127.0.0.1:0`
/// picks a free port) until the returned server is shut down or dropped.
pub async fn serve(
    addr: SocketAddr,
    node: NodeHandle,
    metrics: Arc<Metrics>,
) -> Result<HttpServer, Error> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    info!(%local_addr, "serving /metrics and /health over HTTP");
    let (stop, stopped) = oneshot::channel();
    let site = Arc::new(Site { node, metrics });
    let task = tokio::spawn(accept_loop(listener, site, stopped));
    Ok(HttpServer {
        local_addr,
        stop: Some(stop),
        task: Some(task),
    })
}

/// What the server serves.
struct Site {
    node: NodeHandle,
    metrics: Arc<Metrics>,
}

async fn accept_loop(listener: TcpListener, site: Arc<Site>, mut stopped: oneshot::Receiver<()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Owned here, so an aborted server cuts its connections too.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            // Stop on `shutdown`, or when the server was dropped.
            _ = &mut stopped => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        debug!(%peer, "HTTP connection closed: {MAX_CONNECTIONS} already open");
                        continue;
                    };
                    let site = Arc::clone(&site);
                    conns.spawn(async move {
                        serve_connection(stream, peer, &site).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    info!("HTTP server stopped");
}

/// Why no request head could be read.
enum HeadError {
    /// Over [`MAX_HEAD`] bytes without the blank line that ends it.
    TooLarge,
    /// The client closed (or failed) before the end of the head.
    Closed,
}

/// Reads up to the blank line ending the head; returns the head's bytes.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let room = MAX_HEAD.saturating_sub(head.len()).min(chunk.len());
        if room == 0 {
            return Err(HeadError::TooLarge);
        }
        let n = match stream.read(&mut chunk[..room]).await {
            Ok(0) | Err(_) => return Err(HeadError::Closed),
            Ok(n) => n,
        };
        // The end may straddle two reads: look back over the seam.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&head[from..]) {
            head.truncate(from + end);
            return Ok(head);
        }
    }
}

/// Where the head ends in `bytes` (just after its blank line); a bare LF
/// is accepted as a line end, as RFC 9112 §2.2 allows.
fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).enumerate().find_map(|(i, w)| match w {
        b"\n\n" => Some(i + 2),
        b"\n\r" if bytes.get(i + 2) == Some(&b'\n') => Some(i + 3),
        _ => None,
    })
}

/// A response: status, content type and body.
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        let mut body = body.into();
        body.push('\n');
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }

    fn json(status: u16, value: serde_json::Value) -> Self {
        Response {
            status,
            content_type: "application/json",
            body: value.to_string(),
        }
    }

    fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "",
        }
    }

    /// The bytes on the wire; `HEAD` gets the headers only.
    fn encode(&self, with_body: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            self.reason(),
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        if with_body {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

async fn serve_connection(mut stream: TcpStream, peer: SocketAddr, site: &Site) {
    let (response, with_body) =
        match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
            Err(_) => (
                Response::text(
                    408,
                    format!("request head not received within {READ_TIMEOUT:?}"),
                ),
                true,
            ),
            Ok(Err(HeadError::TooLarge)) => (
                Response::text(431, format!("request head over {MAX_HEAD} bytes")),
                true,
            ),
            Ok(Err(HeadError::Closed)) => {
                debug!(%peer, "HTTP client left before the end of its request");
                return;
            }
            Ok(Ok(head)) => {
                let (method, path, response) = answer(&head, site).await;
                debug!(%peer, method, path, status = response.status, "HTTP request");
                (response, method != "HEAD")
            }
        };
    let bytes = response.encode(with_body);
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        debug!(%peer, "HTTP response not delivered");
        return;
    }
    // Lingering close: drain what the client still sends (bounded).
    let _ = tokio::time::timeout(LINGER_TIMEOUT, async {
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// Routes a request head; returns its method and path (for the log) and
/// the response.
async fn answer<'h>(head: &'h [u8], site: &Site) -> (&'h str, &'h str, Response) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line).unwrap_or_default().trim_end();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return ("-", "-", Response::text(400, "malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return (
            method,
            target,
            Response::text(505, "only HTTP/1.x is served"),
        );
    }
    if method != "GET" && method != "HEAD" {
        return (
            method,
            target,
            Response::text(405, format!("method {method} not allowed; use GET")),
        );
    }
    let path = target.split('?').next().unwrap_or_default();
    let response = match path {
        "/metrics" => match snapshot(&site.node).await {
            Ok(s) => Response {
                status: 200,
                content_type: metrics::CONTENT_TYPE,
                body: site.metrics.render(&s),
            },
            Err(why) => Response::text(503, why),
        },
        "/health" => health(&site.node).await,
        _ => Response::text(404, "not found; this server has /metrics and /health"),
    };
    (method, path, response)
}

/// A snapshot within [`SNAPSHOT_TIMEOUT`], or why not (for the client).
async fn snapshot(node: &NodeHandle) -> Result<Snapshot, String> {
    match tokio::time::timeout(SNAPSHOT_TIMEOUT, node.snapshot()).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "the node did not answer within {SNAPSHOT_TIMEOUT:?}"
        )),
    }
}

async fn health(node: &NodeHandle) -> Response {
    match snapshot(node).await {
        Ok(s) => Response::json(
            200,
            serde_json::json!({
                "status": "ok",
                "did": s.identity.did(),
                "uptime_seconds": s.uptime.as_secs(),
                "peers": s.routing_table,
                "descriptors": s.descriptors,
                "connections": s.connections,
                // The node answers either way; "failing" asks an operator
                // to look at the disk (see the store metrics).
                "storage": if s.storage_failing() { "failing" } else { "ok" },
            }),
        ),
        Err(why) => {
            warn!("health check: {why}");
            Response::json(
                503,
                serde_json::json!({
                    "status": "degraded",
                    "did": node.identity().did(),
                    "reason": why,
                    "uptime_seconds": null,
                    "peers": null,
                    "descriptors": null,
                    "connections": null,
                    "storage": null,
                }),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_at_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nrest"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b"\r\n\r"), None);
    }

    #[test]
    fn responses_close_and_say_their_length() {
        let r = Response::text(405, "no");
        let wire = String::from_utf8(r.encode(true)).unwrap();
        assert!(
            wire.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{wire}"
        );
        assert!(wire.contains("\r\nContent-Length: 3\r\n"), "{wire}");
        assert!(wire.contains("\r\nConnection: close\r\n"), "{wire}");
        assert!(wire.contains("\r\nAllow: GET, HEAD\r\n"), "{wire}");
        assert!(wire.ends_with("\r\n\r\nno\n"), "{wire}");
        let head_only = String::from_utf8(r.encode(false)).unwrap();
        assert!(head_only.ends_with("\r\n\r\n"), "{head_only}");
    }
}
