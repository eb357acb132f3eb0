//! Drives one `Node` with an arbitrary sequence of inputs — raw and
//! well-formed request frames from several peers, responses (garbage,
//! well-formed, transport errors) to whatever it asked, commands, and time
//! jumps — and checks after every step that it never panics and that its
//! routing table and store invariants hold.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mars_proto::node::{
    InboundRequest, Node, OutboundRequest, PeerInfo, Response, TransportError,
};
use mars_proto::wire::{
    FindNode, FindNodeResult, FindValue, FindValueResult, Frame, Message, MsgId, NodeAddr,
    NodeInfo, Ping, Pong, Store, StoreAck,
};
use mars_proto::{Config, DescriptorBuilder, Hash, Keypair, Timestamp, schema};

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }
    fn chunk(&mut self) -> Option<&[u8]> {
        let n = (self.u16()? as usize).min(self.0.len());
        let (c, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(c)
    }
}

fn key(i: u8) -> Keypair {
    Keypair::from_secret_bytes(&[i % 8 + 1; 32])
}

fn addr(i: u8) -> NodeAddr {
    NodeAddr::quic(format!("127.0.0.{}:{}", i % 8 + 2, 4000 + u16::from(i % 3)))
}

fn request_for(i: &mut Input<'_>, now: Timestamp) -> Option<Message> {
    let who = i.byte()?;
    let sender = key(who).identity();
    let sender_addr = addr(i.byte()?);
    let target = Hash::blake3(&[i.byte()?]);
    Some(match i.byte()? % 4 {
        0 => Message::Ping(Ping { sender, sender_addr }),
        1 => Message::FindNode(FindNode { sender, sender_addr, target }),
        2 => Message::FindValue(FindValue {
            sender,
            sender_addr,
            key: schema::routing_key(["a", "a/b", "c"][usize::from(i.byte()? % 3)]),
            max_results: u16::from(i.byte()?),
            filters: None,
        }),
        _ => {
            let ttl = 60 + u32::from(i.byte()?) * 30;
            let d = DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), now)
                .topic(["", "t"][usize::from(i.byte()? % 2)])
                .sequence(u64::from(i.byte()? % 4))
                .ttl(ttl)
                .routing_keys(schema::hierarchical_keys("a/b"))
                .sign(&key(who))
                .ok()?;
            Message::Store(Store { sender, sender_addr, descriptor: d.into() })
        }
    })
}

fn response_for(i: &mut Input<'_>, req: &OutboundRequest, now: Timestamp) -> Option<Vec<u8>> {
    let asked = Frame::decode(&req.frame).ok()?;
    let me = key(i.byte()?).identity();
    let message = match asked.message {
        Message::Ping(p) => Message::Pong(Pong {
            sender: me,
            sender_addr: addr(0),
            observed_addr: p.sender_addr,
        }),
        Message::Store(_) => StoreAck {
            stored: i.byte()? % 2 == 0,
            reason: None,
        }
        .into_message(),
        Message::FindNode(_) | Message::FindValue(_) => {
            let n = usize::from(i.byte()? % 6);
            let nodes: Vec<NodeInfo> = (0..n)
                .map(|j| NodeInfo {
                    identity: key(j as u8 * 3 + 1).identity(),
                    addr: addr(j as u8),
                    last_seen: now,
                })
                .collect();
            if matches!(asked.message, Message::FindNode(_)) {
                Message::FindNodeResult(FindNodeResult { nodes })
            } else {
                Message::FindValueResult(FindValueResult::Nodes(nodes))
            }
        }
        _ => return None,
    };
    // Sometimes answer with the wrong msg_id.
    let id = if i.byte()? % 7 == 0 { MsgId([0; 16]) } else { asked.msg_id };
    Some(Frame::new(id, message).encode())
}

trait IntoMessage {
    fn into_message(self) -> Message;
}
impl IntoMessage for StoreAck {
    fn into_message(self) -> Message {
        Message::StoreAck(self)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut i = Input(data);
    let mut now = Timestamp::from_secs(1_700_000_000);
    let config = Config { k: 4, max_requests: 64, max_events: 32, ..Config::testing() };
    let mut node = Node::new(config, key(0), addr(0), now, 7);
    let mut outstanding: Vec<OutboundRequest> = Vec::new();
    while let Some(op) = i.byte() {
        match op % 8 {
            0 => {
                let who = i.byte().unwrap_or(0);
                let frame = i.chunk().unwrap_or_default().to_vec();
                let peer = PeerInfo { identity: key(who).identity(), addr: addr(who) };
                let _ = node.handle_request(now, &peer, &frame);
            }
            1 => {
                // One well-formed request, or a burst of up to 8 (some with a
                // flipped byte) answered as one batch.
                let n = 1 + usize::from(i.byte().unwrap_or(0) % 8);
                let mut burst = Vec::with_capacity(n);
                for _ in 0..n {
                    let Some(m) = request_for(&mut i, now) else { break };
                    let spoof = i.byte().unwrap_or(0);
                    let peer = PeerInfo { identity: key(spoof).identity(), addr: addr(spoof) };
                    let mut frame = Frame::new(MsgId([1; 16]), m).encode();
                    let flip = i.byte().unwrap_or(1);
                    if flip % 4 == 0 && !frame.is_empty() {
                        let at = frame.len() - 1 - usize::from(flip) % frame.len();
                        frame[at] ^= 0x01;
                    }
                    burst.push((peer, frame));
                }
                if let [(peer, frame)] = burst.as_slice() {
                    let _ = node.handle_request(now, peer, frame);
                } else {
                    let requests: Vec<InboundRequest<'_>> = burst
                        .iter()
                        .map(|(peer, frame)| InboundRequest { peer, frame })
                        .collect();
                    assert_eq!(node.handle_requests(now, &requests).len(), requests.len());
                }
            }
            2 | 3 => {
                if outstanding.is_empty() {
                    continue;
                }
                let pick = usize::from(i.byte().unwrap_or(0)) % outstanding.len();
                let req = outstanding.swap_remove(pick);
                let peer = req.expect.unwrap_or_else(|| key(i.byte().unwrap_or(0)).identity());
                match i.byte().unwrap_or(0) % 4 {
                    0 => node.handle_response(now, req.id, Err(TransportError::TimedOut)),
                    1 => {
                        let junk = i.chunk().unwrap_or_default().to_vec();
                        node.handle_response(now, req.id, Ok(Response { peer, frame: &junk }));
                    }
                    _ => {
                        if let Some(frame) = response_for(&mut i, &req, now) {
                            node.handle_response(now, req.id, Ok(Response { peer, frame: &frame }));
                        }
                    }
                }
            }
            4 => {
                let step = u64::from(i.u16().unwrap_or(0)) * 50_000;
                now = now.saturating_add(Duration::from_micros(step));
                node.handle_timeout(now);
            }
            5 => {
                let _ = match i.byte().unwrap_or(0) % 5 {
                    0 => node.bootstrap(now, vec![addr(i.byte().unwrap_or(1))]),
                    1 => node.find_node(now, mars_proto::NodeId::from_bytes([i.byte().unwrap_or(0); 32])),
                    2 => node.discover(now, schema::routing_key("a"), None, 20),
                    3 => node.ping(now, addr(i.byte().unwrap_or(2))),
                    _ => match DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), now)
                        .routing_keys(schema::hierarchical_keys("a/b"))
                        .sign(&key(0))
                    {
                        Ok(d) => node.publish(now, d),
                        Err(_) => continue,
                    },
                };
            }
            6 => while node.poll_event().is_some() {},
            _ => {
                if let Some((t, _)) = node.poll_timeout() {
                    now = now.max(t);
                    node.handle_timeout(now);
                }
            }
        }
        while let Some(r) = node.poll_request() {
            if outstanding.len() < 256 {
                outstanding.push(r);
            }
        }
        if let Err(e) = node.routing_table().check_invariants() {
            panic!("routing table invariant broken: {e}");
        }
        if let Err(e) = node.storage().check_invariants() {
            panic!("store invariant broken: {e}");
        }
        assert!(node.queries_in_progress() <= node.config().max_queries);
    }
});
