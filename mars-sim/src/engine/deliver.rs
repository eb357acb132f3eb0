//! Messages: a node's outbound request becomes a delivery at its target
//! after the network's delay; the target's answer travels back the same way.

use mars_proto::node::{OutboundRequest, Outcome, Response, TransportError};
use mars_proto::{Identity, Timestamp};

use super::{Body, Delivery, Ev, Req, Resp, Sim, Status, index_of, rid};
use crate::network::Transit;
use crate::trace::RecordKind;

impl Sim {
    /// Node `i` wants `req` sent.
    pub(super) fn send_request(&mut self, i: u32, req: OutboundRequest) {
        let c = &mut self.counters;
        c.requests += 1;
        c.bytes += req.frame.len() as u64;
        if let Some(t) = req.frame.get(3).map(|b| (b & 0x7f) as usize) {
            if (1..=4).contains(&t) {
                c.requests_by_type[t - 1] += 1;
            }
        }
        let sn = &mut self.nodes[i as usize];
        sn.msgs += 1;
        let from_gen = sn.generation;
        let id = rid(req.id);
        if !self.hop_watches.is_empty() {
            self.watch_request(i, id, req.expect, &req.frame);
        }
        let target = index_of(&req.to).filter(|&j| (j as usize) < self.nodes.len());
        let Some(j) = target else {
            // Nothing listens there: the dial fails after a round trip.
            self.counters.unreachable += 1;
            let at = self.now.saturating_add(self.net.error_delay(i, i));
            self.queue.push(
                at,
                Ev::Response(Resp {
                    to: i,
                    to_gen: from_gen,
                    from: i,
                    id,
                    body: Body::Unreachable,
                    by_sim: false,
                }),
            );
            return;
        };
        self.dispatch(Req {
            from: i,
            from_gen,
            to: j,
            id,
            expect: req.expect,
            frame: req.frame,
            by_sim: false,
        });
    }

    /// Puts a request on the network.
    pub(super) fn dispatch(&mut self, r: Req) {
        match self.net.transit(r.from, r.to, r.frame.len(), self.now) {
            Transit::Lost => self.counters.lost += 1,
            Transit::Arrives(d) => {
                let at = self.now.saturating_add(d);
                self.queue.push(at, Ev::Request(r));
            }
        }
    }

    /// A request arrives at its target.
    pub(super) fn deliver_request(&mut self, r: Req) {
        let (from, j) = (r.from, r.to);
        if self.net.cut(from, j, self.now) {
            self.counters.cut += 1;
            return;
        }
        match self.nodes[j as usize].status {
            Status::Up => {}
            Status::Crashed => {
                self.counters.to_crashed += 1;
                return;
            }
            Status::Left => {
                self.counters.unreachable += 1;
                let at = self.now.saturating_add(self.net.error_delay(j, from));
                self.queue.push(
                    at,
                    Ev::Response(Resp {
                        to: from,
                        to_gen: r.from_gen,
                        from: j,
                        id: r.id,
                        body: Body::Unreachable,
                        by_sim: r.by_sim,
                    }),
                );
                return;
            }
        }
        let found = self.infos[j as usize].identity;
        if let Some(expected) = r.expect {
            if expected != found {
                self.counters.identity_mismatches += 1;
                self.respond(&r, Body::Mismatch { expected, found });
                return;
            }
        }
        self.trace.record(
            self.now.as_micros(),
            RecordKind::Request,
            from,
            j,
            r.id,
            &r.frame,
        );
        if let Some(obs) = self.observer.as_mut() {
            obs(Delivery {
                at: self.now,
                from,
                to: j,
                response: false,
            });
        }
        let body = if self.nodes[j as usize].adversary.is_some() {
            self.adversarial_request(j, from, &r.frame)
        } else {
            Some(self.honest_answer(j, from, &r.frame))
        };
        if let Some(body) = body {
            self.respond(&r, body);
        }
    }

    /// Node `j` answers `frame` from `from`.
    pub(super) fn honest_answer(&mut self, j: u32, from: u32, frame: &[u8]) -> Body {
        let local = self.local_now(j);
        let Some(node) = self.nodes[j as usize].node.as_mut() else {
            return Body::Unreachable;
        };
        let outcome = node.handle_request(local, &self.infos[from as usize], frame);
        self.after_call(j, false);
        match outcome {
            Outcome::Respond(f) => Body::Frame(f),
            Outcome::Refuse(r) => {
                self.counters.refused += 1;
                Body::Reset(r.code().code())
            }
        }
    }

    /// Sends `body` back for request `r`.
    fn respond(&mut self, r: &Req, body: Body) {
        let len = match &body {
            Body::Frame(f) => f.len(),
            _ => 0,
        };
        self.counters.responses += 1;
        self.counters.bytes += len as u64;
        self.nodes[r.to as usize].msgs += 1;
        match self.net.transit(r.to, r.from, len, self.now) {
            Transit::Lost => self.counters.lost += 1,
            Transit::Arrives(d) => {
                let at = self.now.saturating_add(d);
                self.queue.push(
                    at,
                    Ev::Response(Resp {
                        to: r.from,
                        to_gen: r.from_gen,
                        from: r.to,
                        id: r.id,
                        body,
                        by_sim: r.by_sim,
                    }),
                );
            }
        }
    }

    /// A response arrives back at the requester.
    pub(super) fn deliver_response(&mut self, r: Resp) {
        let (i, j) = (r.to, r.from);
        if i != j && self.net.cut(j, i, self.now) {
            self.counters.cut += 1;
            return;
        }
        let sn = &self.nodes[i as usize];
        if sn.status != Status::Up || sn.generation != r.to_gen {
            return;
        }
        let bytes: &[u8] = match &r.body {
            Body::Frame(f) => f,
            _ => &[],
        };
        self.trace.record(
            self.now.as_micros(),
            RecordKind::Response,
            j,
            i,
            r.id,
            bytes,
        );
        if let Some(obs) = self.observer.as_mut() {
            obs(Delivery {
                at: self.now,
                from: j,
                to: i,
                response: true,
            });
        }
        if r.by_sim {
            self.forged_store_answered(&r.body);
            return;
        }
        if !self.hop_in_flight.is_empty() {
            self.watch_response(i, r.id, &r.body, self.now);
        }
        let peer: Identity = self.infos[j as usize].identity;
        let local = self.local_now(i);
        let Some(node) = self.nodes[i as usize].node.as_mut() else {
            return;
        };
        let id = mars_proto::node::RequestId(r.id);
        match r.body {
            Body::Frame(f) => node.handle_response(local, id, Ok(Response { peer, frame: &f })),
            Body::Reset(code) => node.handle_response(local, id, Err(TransportError::Reset(code))),
            Body::Unreachable => node.handle_response(
                local,
                id,
                Err(TransportError::Unreachable("connection refused".to_owned())),
            ),
            Body::Mismatch { expected, found } => node.handle_response(
                local,
                id,
                Err(TransportError::IdentityMismatch { expected, found }),
            ),
        }
        self.after_call(i, false);
    }

    /// The time of the next queued event.
    pub fn next_event_at(&self) -> Option<Timestamp> {
        self.queue.peek_time()
    }
}
