//! One QUIC connection and its request streams: one request frame and one
//! response frame per bidirectional stream (WIRE.md, "Transport").

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use quinn_proto::{
    Connection, ConnectionHandle, Dir, Endpoint, ReadError, StreamEvent, StreamId, VarInt,
    WriteError,
};

use super::frame_buf::FrameBuf;
use super::tls::identity_from_certificate;
use super::{HostEvent, Origin};
use crate::identity::Identity;
use crate::node::TransportError;

/// A request waiting for its connection (handshake, or a free stream).
#[derive(Debug)]
pub(super) struct OutReq {
    pub(super) origin: Origin,
    pub(super) expect: Option<Identity>,
    pub(super) frame: Vec<u8>,
}

/// A request we sent, waiting for its response.
#[derive(Debug)]
struct OutStream {
    origin: Origin,
    send: Vec<u8>,
    sent: usize,
    response: FrameBuf,
}

/// A request a peer sent us.
#[derive(Debug, Default)]
struct InStream {
    request: FrameBuf,
    /// The response frame and how much of it is written.
    response: Option<(Vec<u8>, usize)>,
}

/// What a connection's progress asks of the host.
#[derive(Debug)]
pub(super) enum Action {
    /// An inbound request is complete: answer it.
    Request { stream: StreamId, frame: Vec<u8> },
    /// An outbound request finished.
    Done {
        origin: Origin,
        result: Result<(Identity, Vec<u8>), TransportError>,
    },
    /// Something worth telling the driver.
    Event(HostEvent),
}

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) quic: Connection,
    pub(super) remote: SocketAddr,
    pub(super) peer: Option<Identity>,
    pub(super) established: bool,
    /// Closed or lost: no new requests.
    pub(super) closing: bool,
    pub(super) waiting: VecDeque<OutReq>,
    out: BTreeMap<StreamId, OutStream>,
    inbound: BTreeMap<StreamId, InStream>,
    /// Bytes held in partly received frames.
    buffered: usize,
    /// Readable streams left unread while `buffered` is at its bound.
    starved: BTreeSet<StreamId>,
    /// The one stream allowed past the bound (its frame is capped at
    /// 1 MiB), so a frame larger than the bound still completes.
    leader: Option<StreamId>,
    pub(super) last_active: Instant,
    /// This connection's entry in the host's timer queue.
    pub(super) timer: Option<Instant>,
}

impl Conn {
    pub(super) fn new(quic: Connection, now: Instant) -> Self {
        Conn {
            remote: quic.remote_address(),
            quic,
            peer: None,
            established: false,
            closing: false,
            waiting: VecDeque::new(),
            out: BTreeMap::new(),
            inbound: BTreeMap::new(),
            buffered: 0,
            starved: BTreeSet::new(),
            leader: None,
            last_active: now,
            timer: None,
        }
    }

    /// Requests in flight: (sent by us, received from the peer).
    #[cfg(test)]
    pub(super) fn streams_in_flight(&self) -> (usize, usize) {
        (self.out.len(), self.inbound.len())
    }

    /// No request in flight either way.
    pub(super) fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.out.is_empty() && self.inbound.is_empty()
    }

    /// Drains the connection's endpoint and application events. Returns
    /// whether anything happened, and whether the connection is drained.
    pub(super) fn drive(
        &mut self,
        endpoint: &mut Endpoint,
        ch: ConnectionHandle,
        now: Instant,
        limit: usize,
        actions: &mut Vec<Action>,
    ) -> (bool, bool) {
        let mut progress = false;
        let mut drained = false;
        loop {
            let mut any = false;
            while let Some(ev) = self.quic.poll_endpoint_events() {
                any = true;
                if ev.is_drained() {
                    drained = true;
                }
                if let Some(cev) = endpoint.handle_event(ch, ev) {
                    self.quic.handle_event(cev);
                }
            }
            while let Some(ev) = self.quic.poll() {
                any = true;
                self.on_event(ev, now, limit, actions);
            }
            if !any {
                break;
            }
            progress = true;
        }
        (progress, drained)
    }

    fn on_event(
        &mut self,
        ev: quinn_proto::Event,
        now: Instant,
        limit: usize,
        actions: &mut Vec<Action>,
    ) {
        use quinn_proto::Event;
        match ev {
            Event::HandshakeDataReady | Event::DatagramReceived | Event::DatagramsUnblocked => {}
            Event::Connected => self.on_connected(now, actions),
            Event::ConnectionLost { reason } => self.on_lost(reason.to_string(), actions),
            Event::Stream(StreamEvent::Opened { dir: Dir::Bi }) => {
                while let Some(id) = self.quic.streams().accept(Dir::Bi) {
                    self.inbound.insert(id, InStream::default());
                    self.last_active = now;
                    self.read(id, limit, actions);
                }
            }
            Event::Stream(StreamEvent::Opened { dir: Dir::Uni }) => {
                // We allow no unidirectional streams; a peer that opens one
                // anyway has broken flow control and quinn closes it.
                while let Some(id) = self.quic.streams().accept(Dir::Uni) {
                    let _ = self.quic.recv_stream(id).stop(VarInt::from_u32(0));
                }
            }
            Event::Stream(StreamEvent::Readable { id }) => self.read(id, limit, actions),
            Event::Stream(StreamEvent::Writable { id }) => self.flush(id, now, actions),
            Event::Stream(StreamEvent::Finished { .. }) => {}
            Event::Stream(StreamEvent::Stopped { id, .. }) => {
                if let Some(s) = self.out.get_mut(&id) {
                    // The peer wants no more request bytes. The reference
                    // stops every request stream as soon as it has read the
                    // frame, before it answers: keep waiting for the answer
                    // (or its reset); the node's timeout bounds the wait.
                    s.sent = s.send.len();
                } else if let Some(s) = self.inbound.remove(&id) {
                    self.buffered = self.buffered.saturating_sub(s.request.len());
                    self.starved.remove(&id);
                    if self.leader == Some(id) {
                        self.leader = None;
                    }
                    self.unstarve(limit, actions);
                }
            }
            Event::Stream(StreamEvent::Available { dir: Dir::Bi }) => {
                self.open_streams(now, actions)
            }
            Event::Stream(StreamEvent::Available { dir: Dir::Uni }) => {}
        }
    }

    fn on_connected(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let peer = self
            .quic
            .crypto_session()
            .peer_identity()
            .and_then(|any| {
                any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .and_then(|certs| {
                certs
                    .first()
                    .and_then(|c| identity_from_certificate(c.as_ref()).ok())
            });
        let Some(peer) = peer else {
            // The verifiers admit only Ed25519 certificates; this cannot
            // happen, but a connection without an identity must not live.
            self.quic.close(
                now,
                VarInt::from_u32(0),
                bytes::Bytes::from_static(b"no peer identity"),
            );
            return;
        };
        self.peer = Some(peer);
        self.established = true;
        self.last_active = now;
        actions.push(Action::Event(HostEvent::Connected {
            addr: self.remote,
            peer,
            inbound: self.quic.side().is_server(),
        }));
        self.open_streams(now, actions);
    }

    pub(super) fn on_lost(&mut self, reason: String, actions: &mut Vec<Action>) {
        let was_established = self.established;
        let fail = |origin: Origin| Action::Done {
            origin,
            result: Err(if was_established {
                TransportError::ConnectionLost(reason.clone())
            } else {
                TransportError::Unreachable(reason.clone())
            }),
        };
        for r in std::mem::take(&mut self.waiting) {
            actions.push(fail(r.origin));
        }
        for (_, s) in std::mem::take(&mut self.out) {
            actions.push(fail(s.origin));
        }
        self.inbound.clear();
        self.starved.clear();
        self.leader = None;
        self.buffered = 0;
        if !self.closing {
            actions.push(Action::Event(HostEvent::ConnectionClosed {
                addr: self.remote,
                peer: self.peer,
                reason,
            }));
        }
        self.closing = true;
        self.established = false;
    }

    /// Starts waiting requests on new streams, as far as the peer's stream
    /// limit allows.
    pub(super) fn open_streams(&mut self, now: Instant, actions: &mut Vec<Action>) {
        while self.established && !self.closing {
            let Some(front) = self.waiting.front() else {
                break;
            };
            if let (Some(expected), Some(found)) = (front.expect, self.peer) {
                if expected != found {
                    if let Some(r) = self.waiting.pop_front() {
                        actions.push(Action::Done {
                            origin: r.origin,
                            result: Err(TransportError::IdentityMismatch { expected, found }),
                        });
                    }
                    continue;
                }
            }
            let Some(id) = self.quic.streams().open(Dir::Bi) else {
                break;
            };
            let Some(r) = self.waiting.pop_front() else {
                break;
            };
            self.out.insert(
                id,
                OutStream {
                    origin: r.origin,
                    send: r.frame,
                    sent: 0,
                    response: FrameBuf::default(),
                },
            );
            self.last_active = now;
            self.flush(id, now, actions);
        }
    }

    /// Writes what is left of a stream's frame; finishes the stream once
    /// all of it is written.
    fn flush(&mut self, id: StreamId, now: Instant, actions: &mut Vec<Action>) {
        let (buf, sent, outbound) = if let Some(s) = self.out.get_mut(&id) {
            (&s.send, &mut s.sent, true)
        } else if let Some((buf, sent)) =
            self.inbound.get_mut(&id).and_then(|s| s.response.as_mut())
        {
            (&*buf, sent, false)
        } else {
            return;
        };
        if *sent == buf.len() && !buf.is_empty() {
            return; // already finished
        }
        let mut stream = self.quic.send_stream(id);
        let mut failed = None;
        while *sent < buf.len() {
            match stream.write(buf.get(*sent..).unwrap_or_default()) {
                Ok(n) => *sent += n,
                Err(WriteError::Blocked) => return,
                Err(WriteError::Stopped(code)) => {
                    if outbound {
                        // See `StreamEvent::Stopped`: the answer may still come.
                        *sent = buf.len();
                        return;
                    }
                    failed = Some(TransportError::Reset(code.into_inner()));
                    break;
                }
                Err(WriteError::ClosedStream) => {
                    failed = Some(TransportError::ConnectionLost("stream closed".to_owned()));
                    break;
                }
            }
        }
        if failed.is_none() {
            let _ = stream.finish();
        }
        if outbound {
            if let Some(e) = failed {
                self.release(id, true);
                if let Some(s) = self.out.remove(&id) {
                    actions.push(Action::Done {
                        origin: s.origin,
                        result: Err(e),
                    });
                }
            }
        } else {
            // The response is written (or unwanted): the exchange is over.
            self.inbound.remove(&id);
            self.last_active = now;
        }
    }

    /// Reads what a stream has, within the connection's buffer bound; a
    /// complete frame becomes an action.
    fn read(&mut self, id: StreamId, limit: usize, actions: &mut Vec<Action>) {
        let outbound = self.out.contains_key(&id);
        let buf = if let Some(s) = self.out.get_mut(&id) {
            &mut s.response
        } else if let Some(s) = self.inbound.get_mut(&id) {
            &mut s.request
        } else {
            return;
        };
        if buf.complete {
            return;
        }
        let mut recv = self.quic.recv_stream(id);
        let Ok(mut chunks) = recv.read(true) else {
            return;
        };
        let mut finished = false;
        let mut reset = None;
        loop {
            let room = if self.leader == Some(id) {
                usize::MAX
            } else {
                limit.saturating_sub(self.buffered)
            };
            let want = buf.want().min(room);
            if want == 0 {
                if !buf.complete {
                    if self.leader.is_none() {
                        self.leader = Some(id);
                        continue;
                    }
                    self.starved.insert(id);
                }
                break;
            }
            match chunks.next(want) {
                Ok(Some(chunk)) => {
                    let before = buf.len();
                    buf.push(&chunk.bytes);
                    self.buffered += buf.len() - before;
                }
                Ok(None) => {
                    finished = true;
                    break;
                }
                Err(ReadError::Blocked) => break,
                Err(ReadError::Reset(code)) => {
                    reset = Some(code.into_inner());
                    break;
                }
            }
        }
        let _ = chunks.finalize();
        if let Some(code) = reset {
            self.release(id, outbound);
            if let Some(s) = self.out.remove(&id) {
                actions.push(Action::Done {
                    origin: s.origin,
                    result: Err(TransportError::Reset(code)),
                });
            } else {
                self.inbound.remove(&id);
            }
            self.unstarve(limit, actions);
            return;
        }
        if finished {
            buf.complete = true;
        } else if buf.complete {
            // Refused header or excess bytes: read no more.
            let _ = self.quic.recv_stream(id).stop(VarInt::from_u32(0));
        } else {
            return;
        }
        let frame = buf.take();
        self.buffered = self.buffered.saturating_sub(frame.len());
        self.starved.remove(&id);
        if self.leader == Some(id) {
            self.leader = None;
        }
        if outbound {
            if let Some(s) = self.out.remove(&id) {
                let result = match self.peer {
                    Some(peer) => Ok((peer, frame)),
                    None => Err(TransportError::ConnectionLost(
                        "no peer identity".to_owned(),
                    )),
                };
                actions.push(Action::Done {
                    origin: s.origin,
                    result,
                });
            }
        } else {
            actions.push(Action::Request { stream: id, frame });
        }
        self.unstarve(limit, actions);
    }

    fn release(&mut self, id: StreamId, outbound: bool) {
        if self.leader == Some(id) {
            self.leader = None;
        }
        let held = if outbound {
            self.out.get(&id).map(|s| s.response.len())
        } else {
            self.inbound.get(&id).map(|s| s.request.len())
        };
        self.buffered = self.buffered.saturating_sub(held.unwrap_or(0));
        self.starved.remove(&id);
    }

    /// Buffer space freed: read the streams that were left waiting.
    fn unstarve(&mut self, limit: usize, actions: &mut Vec<Action>) {
        while self.buffered < limit || self.leader.is_none() {
            let Some(id) = self.starved.pop_first() else {
                break;
            };
            self.read(id, limit, actions);
        }
    }

    /// Writes the response to an inbound request and finishes the stream.
    pub(super) fn respond(&mut self, id: StreamId, frame: Vec<u8>, now: Instant) {
        if let Some(s) = self.inbound.get_mut(&id) {
            s.response = Some((frame, 0));
            let mut sink = Vec::new();
            self.flush(id, now, &mut sink);
        }
    }

    /// Refuses an inbound request: resets its stream with `code`.
    pub(super) fn refuse(&mut self, id: StreamId, code: u64, now: Instant) {
        let code = VarInt::from_u64(code).unwrap_or(VarInt::from_u32(0));
        let _ = self.quic.send_stream(id).reset(code);
        let _ = self.quic.recv_stream(id).stop(code);
        self.inbound.remove(&id);
        self.last_active = now;
    }
}
