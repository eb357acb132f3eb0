//! The runtime-independent half of a driver: commands from handles in,
//! host events out (to waiting handles and to the log). Nothing here knows
//! about sockets, timers or tokio's executor (tokio's oneshot channels work
//! on any executor).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use mars_proto::node::{
    CommandError, Event, Node as ProtoNode, QueryId, QueryResult, TransportError,
};
use mars_proto::quic::{Host, HostEvent, RawRequestId, RawResponse};
use mars_proto::wire::NodeAddr;
use mars_proto::{Identity, Timestamp};

use crate::Snapshot;
use crate::metrics::{CommandKind, CommandLatency, Started};

/// A node command, run inside the driver with the node and the time.
pub(crate) type QueryFn =
    Box<dyn FnOnce(&mut ProtoNode, Timestamp) -> Result<QueryId, CommandError> + Send>;

type Reply<T> = oneshot::Sender<T>;

/// What a handle asks of the driver.
pub(crate) enum Command {
    Query(
        CommandKind,
        QueryFn,
        Reply<Result<QueryResult, CommandError>>,
    ),
    Raw {
        to: std::net::SocketAddr,
        expect: Option<Identity>,
        frame: Vec<u8>,
        reply: Reply<Result<RawResponse, TransportError>>,
    },
    TableLen(Reply<usize>),
    Peers(Reply<Vec<(Identity, NodeAddr)>>),
    Snapshot(Reply<Snapshot>),
    /// Stop; with a grace period, first stop accepting and let requests
    /// in flight be answered (at most that long).
    Shutdown(Duration, Reply<()>),
}

/// Where a shutdown is.
enum Stopping {
    /// Refusing new connections, waiting for answers in flight until the
    /// deadline.
    Draining(Instant),
    /// Connections closed; waiting for the peers to be told until the
    /// deadline.
    Closing(Instant),
}

/// A handle waiting for an answer, and since when.
struct Waiting<T> {
    reply: Reply<T>,
    started: Started,
}

impl<T> Waiting<T> {
    /// Sends the answer (the handle may have given up) and times it.
    fn answer(self, latency: &CommandLatency, now: Instant, value: T) {
        latency.finish(self.started, now);
        let _ = self.reply.send(value);
    }
}

/// How long a shutdown waits for connections to close.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

pub(crate) struct Driver {
    pub(crate) host: Host,
    queries: BTreeMap<QueryId, Waiting<Result<QueryResult, CommandError>>>,
    raws: BTreeMap<RawRequestId, Waiting<Result<RawResponse, TransportError>>>,
    stopping: Option<Stopping>,
    /// Handles waiting for the shutdown to finish.
    stop_replies: Vec<Reply<()>>,
    started: Instant,
    latency: Arc<CommandLatency>,
}

impl Driver {
    /// A driver for `host`, started at `now`.
    pub(crate) fn new(host: Host, now: Instant) -> Self {
        Driver {
            host,
            queries: BTreeMap::new(),
            raws: BTreeMap::new(),
            stopping: None,
            stop_replies: Vec::new(),
            started: now,
            latency: Arc::new(CommandLatency::new()),
        }
    }

    /// The command latencies this driver records (for `Metrics`).
    pub(crate) fn latency(&self) -> Arc<CommandLatency> {
        Arc::clone(&self.latency)
    }

    pub(crate) fn command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Query(kind, f, reply) => {
                let waiting = Waiting {
                    reply,
                    started: self.latency.start(kind, now),
                };
                match self.host.command(now, f) {
                    Ok(id) => {
                        self.queries.insert(id, waiting);
                    }
                    Err(e) => waiting.answer(&self.latency, now, Err(e)),
                }
            }
            Command::Raw {
                to,
                expect,
                frame,
                reply,
            } => {
                let started = self.latency.start(CommandKind::Request, now);
                let id = self.host.send_raw(now, to, expect, frame);
                self.raws.insert(id, Waiting { reply, started });
            }
            Command::TableLen(reply) => {
                let _ = reply.send(self.host.node().routing_table().len());
            }
            Command::Snapshot(reply) => {
                let uptime = now.saturating_duration_since(self.started);
                let _ = reply.send(Snapshot::of(&self.host, uptime));
            }
            Command::Peers(reply) => {
                let peers = self
                    .host
                    .node()
                    .routing_table()
                    .iter()
                    .map(|p| (p.identity, p.addr.clone()))
                    .collect();
                let _ = reply.send(peers);
            }
            Command::Shutdown(grace, reply) => {
                self.stop_replies.push(reply);
                self.stop(now, grace);
            }
        }
    }

    /// Starts stopping: with a `grace`, stop accepting and wait (at most
    /// `grace`) for inbound requests in flight to be answered; then close
    /// every connection. The loop ends once they are gone or
    /// [`SHUTDOWN_GRACE`] later.
    pub(crate) fn stop(&mut self, now: Instant, grace: Duration) {
        if self.stopping.is_some() {
            return;
        }
        if grace.is_zero() {
            self.close(now);
        } else {
            self.host.stop_accepting();
            info!(
                in_flight = self.host.responses_in_flight(),
                "draining: no new connections"
            );
            self.stopping = Some(Stopping::Draining(now + grace));
        }
    }

    fn close(&mut self, now: Instant) {
        self.host.close(now);
        self.stopping = Some(Stopping::Closing(now + SHUTDOWN_GRACE));
    }

    /// Whether the loop should end now (moves a drain on to closing when
    /// its answers are out or its time is up).
    pub(crate) fn finished(&mut self, now: Instant) -> bool {
        if let Some(Stopping::Draining(deadline)) = self.stopping {
            let left = self.host.responses_in_flight();
            if left == 0 || now >= deadline {
                if left > 0 {
                    warn!(left, "shutdown grace over with answers still in flight");
                }
                self.close(now);
            }
        }
        match self.stopping {
            Some(Stopping::Closing(deadline)) => self.host.connections() == 0 || now >= deadline,
            _ => false,
        }
    }

    /// Takes the handles waiting for the shutdown, to be told once the
    /// store is flushed *and closed* (so the same data dir can be opened
    /// again at once).
    pub(crate) fn take_stop_replies(&mut self) -> Vec<Reply<()>> {
        std::mem::take(&mut self.stop_replies)
    }

    /// The next wake-up: the host's, or the end of the shutdown's current
    /// phase.
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        let t = self.host.poll_timeout();
        // While draining, the acknowledgements of the last answers arrive
        // as datagrams, which wake the loop and re-check `finished`.
        let d = match self.stopping {
            Some(Stopping::Draining(d) | Stopping::Closing(d)) => Some(d),
            None => None,
        };
        match (d, t) {
            (Some(d), Some(t)) => Some(t.min(d)),
            (d, t) => d.or(t),
        }
    }

    /// Hands results to waiting handles (answered at `now`) and logs the
    /// rest.
    pub(crate) fn drain_events(&mut self, now: Instant) {
        while let Some(e) = self.host.poll_event() {
            match e {
                HostEvent::Node(Event::QueryDone { id, result, .. }) => {
                    if let Some(w) = self.queries.remove(&id) {
                        w.answer(&self.latency, now, Ok(result));
                    }
                }
                HostEvent::Response { id, result } => {
                    if let Some(w) = self.raws.remove(&id) {
                        w.answer(&self.latency, now, result);
                    }
                }
                HostEvent::Refused {
                    addr,
                    peer,
                    refusal,
                } => {
                    let code = refusal.code();
                    // A peer held at its rate limit is refused many times a
                    // second: counted in the metrics, logged at debug only.
                    if code == mars_proto::node::RefusalCode::RateLimited {
                        debug!(%addr, peer = %peer.did(), "refused request: {refusal}");
                    } else {
                        info!(%addr, peer = %peer.did(), code = code.code(), "refused request: {refusal}");
                    }
                }
                HostEvent::Connected {
                    addr,
                    peer,
                    inbound,
                } => debug!(%addr, peer = %peer.did(), inbound, "connected"),
                HostEvent::StorageFailed { error } => {
                    error!("storage cannot make its writes durable: {error}")
                }
                HostEvent::ConnectionClosed { addr, reason, .. } => {
                    debug!(%addr, "connection closed: {reason}")
                }
                HostEvent::Node(Event::PeerMisbehaved { peer, reason }) => {
                    warn!(peer = %peer.did(), "peer misbehaved: {reason}")
                }
                HostEvent::Node(Event::DescriptorStored { id, publisher }) => {
                    info!(%id, publisher = %publisher.did(), "stored descriptor")
                }
                HostEvent::Node(Event::PeerAdded(p)) => {
                    debug!(peer = %p.identity.did(), addr = %p.addr, "peer added")
                }
                HostEvent::Node(Event::PeerEvicted(p)) => {
                    debug!(peer = %p.identity.did(), "peer evicted")
                }
                HostEvent::Node(other) => debug!("{other:?}"),
            }
        }
    }
}
