//! The runtime-independent half of a driver: commands from handles in,
//! host events out (to waiting handles and to the log). Nothing here knows
//! about sockets, timers or tokio's executor (tokio's oneshot channels work
//! on any executor).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use mars_proto::node::{
    CommandError, Event, Node as ProtoNode, QueryId, QueryResult, TransportError,
};
use mars_proto::quic::{Host, HostEvent, RawRequestId, RawResponse};
use mars_proto::{Identity, Timestamp};

/// A node command, run inside the driver with the node and the time.
pub(crate) type QueryFn =
    Box<dyn FnOnce(&mut ProtoNode, Timestamp) -> Result<QueryId, CommandError> + Send>;

type Reply<T> = oneshot::Sender<T>;

/// What a handle asks of the driver.
pub(crate) enum Command {
    Query(QueryFn, Reply<Result<QueryResult, CommandError>>),
    Raw {
        to: std::net::SocketAddr,
        expect: Option<Identity>,
        frame: Vec<u8>,
        reply: Reply<Result<RawResponse, TransportError>>,
    },
    TableLen(Reply<usize>),
    Shutdown(Reply<()>),
}

/// How long a shutdown waits for connections to close.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

pub(crate) struct Driver {
    pub(crate) host: Host,
    queries: BTreeMap<QueryId, Reply<Result<QueryResult, CommandError>>>,
    raws: BTreeMap<RawRequestId, Reply<Result<RawResponse, TransportError>>>,
    stopping: Option<(Instant, Vec<Reply<()>>)>,
}

impl Driver {
    pub(crate) fn new(host: Host) -> Self {
        Driver {
            host,
            queries: BTreeMap::new(),
            raws: BTreeMap::new(),
            stopping: None,
        }
    }

    pub(crate) fn command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Query(f, reply) => match self.host.command(now, f) {
                Ok(id) => {
                    self.queries.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Raw {
                to,
                expect,
                frame,
                reply,
            } => {
                let id = self.host.send_raw(now, to, expect, frame);
                self.raws.insert(id, reply);
            }
            Command::TableLen(reply) => {
                let _ = reply.send(self.host.node().routing_table().len());
            }
            Command::Shutdown(reply) => self.stop(now, Some(reply)),
        }
    }

    /// Closes every connection; the loop ends once they are gone or the
    /// grace period is over.
    pub(crate) fn stop(&mut self, now: Instant, reply: Option<Reply<()>>) {
        if self.stopping.is_none() {
            self.host.close(now);
            self.stopping = Some((now + SHUTDOWN_GRACE, Vec::new()));
        }
        if let (Some((_, replies)), Some(r)) = (self.stopping.as_mut(), reply) {
            replies.push(r);
        }
    }

    /// Whether the loop should end now.
    pub(crate) fn finished(&mut self, now: Instant) -> bool {
        let done = match &self.stopping {
            Some((deadline, _)) => self.host.connections() == 0 || now >= *deadline,
            None => false,
        };
        if done {
            if let Some((_, replies)) = self.stopping.take() {
                for r in replies {
                    let _ = r.send(());
                }
            }
        }
        done
    }

    /// The next wake-up: the host's, or the end of the shutdown grace.
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        let t = self.host.poll_timeout();
        match (&self.stopping, t) {
            (Some((d, _)), Some(t)) => Some(t.min(*d)),
            (Some((d, _)), None) => Some(*d),
            (None, t) => t,
        }
    }

    /// Hands results to waiting handles and logs the rest.
    pub(crate) fn drain_events(&mut self) {
        while let Some(e) = self.host.poll_event() {
            match e {
                HostEvent::Node(Event::QueryDone { id, result, .. }) => {
                    if let Some(reply) = self.queries.remove(&id) {
                        let _ = reply.send(Ok(result));
                    }
                }
                HostEvent::Response { id, result } => {
                    if let Some(reply) = self.raws.remove(&id) {
                        let _ = reply.send(result);
                    }
                }
                HostEvent::Refused {
                    addr,
                    peer,
                    refusal,
                } => {
                    let code = refusal.code().code();
                    info!(%addr, peer = %peer.did(), code, "refused request: {refusal}");
                }
                HostEvent::Connected {
                    addr,
                    peer,
                    inbound,
                } => debug!(%addr, peer = %peer.did(), inbound, "connected"),
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
