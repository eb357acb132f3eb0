//! The simulator's side of adversarial nodes: intercepting the requests
//! that reach them and the answers their honest node gives, and sending
//! forged STOREs on their behalf.

use std::time::Duration;

use mars_proto::NodeId;
use mars_proto::wire::{
    DecodeLimits, FindNodeResult, FindValueResult, Frame, Message, MsgId, NodeInfo, Store,
};

use super::{Action, Body, Ev, Req, Sim, Status};
use crate::adversary::{self, Behaviour, Plan, RewriteCtx};

impl Sim {
    fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_nodes: self.config.k.max(20),
            max_descriptors: 1_000,
            ..DecodeLimits::default()
        }
    }

    /// Whether eclipse adversaries attack `key`.
    fn attacked(&self, key: &mars_proto::Hash) -> bool {
        self.victim_keys.is_empty() || self.victim_keys.contains(key)
    }

    /// Adversary `j` receives `frame` from `from`: what goes back, if anything.
    pub(super) fn adversarial_request(&mut self, j: u32, from: u32, frame: &[u8]) -> Option<Body> {
        let limits = self.decode_limits();
        let Ok(request) = Frame::decode_request(frame, &limits) else {
            return Some(self.honest_answer(j, from, frame));
        };
        let Some((behaviour, _)) = self.nodes[j as usize].adversary.as_ref() else {
            return Some(self.honest_answer(j, from, frame));
        };
        let behaviour = *behaviour;
        let plan = adversary::plan(behaviour, &request.message, |k| self.attacked(k));
        match plan {
            Plan::Honest => {
                if let (Behaviour::Stale, Message::Store(s)) = (behaviour, &request.message) {
                    if let Some((_, state)) = self.nodes[j as usize].adversary.as_mut() {
                        state.remember(&s.descriptor);
                    }
                }
                Some(self.honest_answer(j, from, frame))
            }
            Plan::Drop => None,
            Plan::Answer(m) => Some(Body::Frame(Frame::new(request.msg_id, *m).encode())),
            Plan::Colluders { target } => {
                let nodes = self.colluders_near(&target);
                self.counters.lists_rewritten += 1;
                let m = match request.message {
                    Message::FindValue(_) => {
                        Message::FindValueResult(FindValueResult::Nodes(nodes))
                    }
                    _ => Message::FindNodeResult(FindNodeResult { nodes }),
                };
                Some(Body::Frame(Frame::new(request.msg_id, m).encode()))
            }
            Plan::Rewrite => {
                let body = self.honest_answer(j, from, frame);
                let Body::Frame(answer) = body else {
                    return Some(body);
                };
                let Ok(answer) = Frame::decode_response(&answer, &limits) else {
                    return Some(Body::Frame(answer));
                };
                Some(Body::Frame(self.rewrite_answer(
                    j,
                    behaviour,
                    &request.message,
                    answer,
                )))
            }
        }
    }

    fn rewrite_answer(
        &mut self,
        j: u32,
        behaviour: Behaviour,
        request: &Message,
        answer: Frame,
    ) -> Vec<u8> {
        let now = self.local_now(j);
        let k = self.config.k;
        let msg_id = answer.msg_id;
        let Sim {
            nodes,
            infos,
            up,
            rng_adv,
            counters,
            ..
        } = self;
        let mut pick_rng = crate::rng::SimRng::new(rng_adv.next_u64());
        let mut random_nodes = || {
            let mut out: Vec<NodeInfo> = Vec::with_capacity(k);
            for _ in 0..k * 2 {
                if out.len() >= k {
                    break;
                }
                if let Some(i) = up.pick(&mut pick_rng) {
                    let info = &infos[i as usize];
                    if out.iter().all(|n| n.identity != info.identity) {
                        out.push(NodeInfo {
                            identity: info.identity,
                            addr: info.addr.clone(),
                            last_seen: now,
                        });
                    }
                }
            }
            out
        };
        let sn = &nodes[j as usize];
        let Some((_, state)) = sn.adversary.as_ref() else {
            return Frame::new(msg_id, answer.message).encode();
        };
        let mut ctx = RewriteCtx {
            key: &sn.keypair,
            now,
            random_nodes: &mut random_nodes,
            rng: rng_adv,
        };
        let (m, c) = adversary::rewrite(behaviour, state, request, answer.message, &mut ctx);
        counters.forged_served += c.forged;
        counters.stale_served += c.stale;
        counters.lists_rewritten += c.lists;
        Frame::new(msg_id, m).encode()
    }

    /// The K live eclipse adversaries nearest `target` (approximately: the
    /// nearest among its neighbours in id order).
    fn colluders_near(&self, target: &mars_proto::Hash) -> Vec<NodeInfo> {
        let Some(t) = NodeId::from_key(target) else {
            return Vec::new();
        };
        let k = self.config.k;
        let pos = self.colluders.partition_point(|(c, _)| *c < t);
        let lo = pos.saturating_sub(2 * k);
        let hi = (pos + 2 * k).min(self.colluders.len());
        let mut near: Vec<(NodeId, u32)> = self.colluders[lo..hi]
            .iter()
            .filter(|(_, i)| self.nodes[*i as usize].status == Status::Up)
            .map(|(id, i)| (id.distance(&t), *i))
            .collect();
        near.sort();
        near.truncate(k);
        near.into_iter()
            .map(|(_, i)| {
                let info = &self.infos[i as usize];
                NodeInfo {
                    identity: info.identity,
                    addr: info.addr.clone(),
                    last_seen: self.local_now(i),
                }
            })
            .collect()
    }

    /// Forging adversary `j` sends a forged STORE to a random honest node:
    /// a descriptor claiming a real publisher, signed by the forger.
    pub(super) fn forge_store(&mut self, j: u32) {
        if self.nodes[j as usize].status != Status::Up {
            return;
        }
        let next = Duration::from_secs_f64(self.rng_adv.exp(60.0));
        self.queue.push(
            self.now.saturating_add(next),
            Ev::Action(Action::ForgeStore(j)),
        );
        if self.publishers.is_empty() {
            return;
        }
        let p = self.rng_adv.index(self.publishers.len());
        let Some(target) = self.ready.pick(&mut self.rng_adv) else {
            return;
        };
        let (victim, key) = {
            let pb = &self.publishers[p];
            let level = self.rng_adv.index(pb.keys.len());
            (pb.identity, pb.keys[level])
        };
        let now = self.local_now(j);
        let info = self.infos[j as usize].clone();
        let mut nothing = Vec::new;
        let sn = &self.nodes[j as usize];
        let mut ctx = RewriteCtx {
            key: &sn.keypair,
            now,
            random_nodes: &mut nothing,
            rng: &mut self.rng_adv,
        };
        let descriptor = adversary::made_up(key, victim, &mut ctx);
        let mut msg_id = [0u8; 16];
        msg_id.copy_from_slice(&self.rng_adv.bytes32()[..16]);
        let frame = Frame::new(
            MsgId(msg_id),
            Message::Store(Store {
                sender: info.identity,
                sender_addr: info.addr,
                descriptor: descriptor.into(),
            }),
        )
        .encode();
        self.counters.forged_stores_sent += 1;
        let from_gen = self.nodes[j as usize].generation;
        self.dispatch(Req {
            from: j,
            from_gen,
            to: target,
            id: 0,
            expect: None,
            frame,
            by_sim: true,
        });
    }

    /// The answer to a forged STORE came back.
    pub(super) fn forged_store_answered(&mut self, body: &Body) {
        let Body::Frame(f) = body else {
            return;
        };
        if let Ok(Frame {
            message: Message::StoreAck(a),
            ..
        }) = Frame::decode(f)
        {
            if a.stored {
                self.counters.forged_stores_accepted += 1;
            }
        }
    }
}
