//! The server side: answering the four requests.

use super::{Event, Misbehaviour, Node, Outcome, PeerInfo, Refusal};
use crate::node_id::NodeId;
use crate::time::Timestamp;
use crate::wire::{
    DecodeError, DecodeLimits, Frame, FrameHeader, MAX_BODY_LEN, Message, MessageType, MsgId,
    NodeRef, Pong, StoreAck,
};

impl Node {
    /// Answers one inbound request. `peer` is who the connection's TLS
    /// handshake authenticated; a request whose `sender` differs is refused.
    pub fn handle_request(&mut self, now: Timestamp, peer: &PeerInfo, frame: &[u8]) -> Outcome {
        let limits = DecodeLimits {
            max_nodes: self.config.k,
            ..DecodeLimits::default()
        };
        let request = match Frame::decode_request(frame, &limits) {
            Ok(f) => f,
            Err(e) => return self.refuse_undecodable(frame, e),
        };
        let msg_id = request.msg_id;
        let (sender, sender_addr) = match &request.message {
            Message::Ping(m) => (m.sender, &m.sender_addr),
            Message::Store(m) => (m.sender, &m.sender_addr),
            Message::FindNode(m) => (m.sender, &m.sender_addr),
            Message::FindValue(m) => (m.sender, &m.sender_addr),
            other => return self.refuse(Refusal::NotARequest(other.message_type().byte())),
        };
        if sender != peer.identity {
            self.push_event(Event::PeerMisbehaved {
                peer: peer.identity,
                reason: Misbehaviour::SpoofedSender { claimed: sender },
            });
            return self.refuse(Refusal::SenderMismatch {
                claimed: sender,
                authenticated: peer.identity,
            });
        }
        // A requester is not trusted into the table on the strength of a
        // request: queue a PING to the address it claims.
        let claimed = sender_addr.clone();
        self.queue_verification(now, sender, claimed);

        let response = match request.message {
            Message::Ping(_) => {
                self.stats.requests[0] += 1;
                Message::Pong(Pong {
                    sender: self.identity,
                    sender_addr: self.local_addr.clone(),
                    observed_addr: peer.addr.clone(),
                })
            }
            Message::Store(m) => {
                self.stats.requests[1] += 1;
                Message::StoreAck(self.serve_store(now, *m.descriptor))
            }
            Message::FindNode(m) => {
                self.stats.requests[2] += 1;
                let mut out = Vec::new();
                let target = NodeId::from_key(&m.target);
                let nodes = self.closest_refs(target.as_ref(), true, now);
                crate::wire::encode_find_node_result(msg_id, nodes.iter().copied(), &mut out);
                return Outcome::Respond(out);
            }
            Message::FindValue(m) => {
                self.stats.requests[3] += 1;
                let max = m.max_results.min(self.config.max_results_served) as usize;
                let none = crate::wire::Filters::default();
                let filters = m.filters.as_deref().unwrap_or(&none);
                let found = self.storage.find(&m.key, filters, max, now);
                if !found.is_empty() {
                    // Encoded straight from the shared store entries: no
                    // copy of their payloads on the hot path.
                    let mut out = Vec::new();
                    crate::wire::encode_descriptors_result(
                        msg_id,
                        found.iter().map(|d| d.descriptor()),
                        &mut out,
                    );
                    return Outcome::Respond(out);
                }
                let mut out = Vec::new();
                let target = NodeId::from_key(&m.key);
                let nodes = self.closest_refs(target.as_ref(), false, now);
                crate::wire::encode_find_value_nodes(msg_id, nodes.iter().copied(), &mut out);
                return Outcome::Respond(out);
            }
            // Responses were refused above.
            other => return self.refuse(Refusal::NotARequest(other.message_type().byte())),
        };
        Outcome::Respond(Frame::new(msg_id, response).encode())
    }

    /// A STORE whose only defect is a descriptor over a validation bound
    /// (more than 8 routing keys, refused while decoding) is a well-formed
    /// request for an invalid descriptor: it gets a STORE_ACK naming the
    /// rule, as a reference node would answer. Anything else undecodable
    /// resets the stream.
    fn refuse_undecodable(&mut self, frame: &[u8], e: DecodeError) -> Outcome {
        let is_store =
            FrameHeader::parse(frame, MAX_BODY_LEN).is_ok_and(|h| h.msg_type == MessageType::Store);
        if let (true, DecodeError::TooManyItems { field, .. }) = (is_store, &e) {
            if field.name == "routing_keys" {
                if let Some(id) = frame.get(4..20).and_then(|b| <[u8; 16]>::try_from(b).ok()) {
                    self.stats.requests[1] += 1;
                    self.stats.stores_refused += 1;
                    let ack = StoreAck {
                        stored: false,
                        reason: Some(format!("invalid: {e}")),
                    };
                    return Outcome::Respond(
                        Frame::new(MsgId(id), Message::StoreAck(ack)).encode(),
                    );
                }
            }
        }
        self.refuse(Refusal::Malformed(e))
    }

    fn refuse(&mut self, r: Refusal) -> Outcome {
        let i = (r.code().code() as usize).saturating_sub(1);
        if let Some(c) = self.stats.refused.get_mut(i) {
            *c += 1;
        }
        Outcome::Refuse(r)
    }

    /// The K closest table entries to `target` (none for a key that names
    /// no position), borrowed for encoding straight into the answer; with
    /// `include_self`, this node is added when fewer than K are known
    /// (reference clients fill their table only from this answer).
    pub(super) fn closest_refs(
        &self,
        target: Option<&NodeId>,
        include_self: bool,
        now: Timestamp,
    ) -> Vec<NodeRef<'_>> {
        let k = self.config.k;
        let Some(target) = target else {
            return Vec::new();
        };
        let mut nodes = Vec::with_capacity(k);
        // Fresh entries first: a dead entry costs a reference peer 30 s.
        nodes.extend(
            self.table
                .closest_fresh_iter(target)
                .take(k)
                .map(|p| (&p.identity, &p.addr, p.last_seen)),
        );
        if include_self && nodes.len() < k {
            nodes.push((&self.identity, &self.local_addr, now));
        }
        nodes
    }

    fn serve_store(&mut self, now: Timestamp, d: crate::Descriptor) -> StoreAck {
        let refuse = |node: &mut Node, reason: String| {
            node.stats.stores_refused += 1;
            StoreAck {
                stored: false,
                reason: Some(reason),
            }
        };
        let valid = match d.validate_cached(
            now,
            self.config.signature_cache.as_ref(),
            Some(&mut self.key_cache),
        ) {
            Ok(v) => v,
            Err(e) => return refuse(self, format!("invalid: {e}")),
        };
        if !self.config.publish_proxy && !self.is_responsible(&valid) {
            return refuse(
                self,
                "not responsible: this node is not among the K closest it knows to any of the routing keys".to_owned(),
            );
        }
        let id = valid.id;
        let publisher = valid.publisher;
        match self.storage.offer(valid, now) {
            Ok(stored) => {
                if let Some(d) = stored.descriptor() {
                    if self.config.publish_proxy {
                        self.queue_replication(now, std::sync::Arc::clone(d));
                    }
                    self.push_event(Event::DescriptorStored { id, publisher });
                }
                StoreAck {
                    stored: true,
                    reason: None,
                }
            }
            Err(refusal) => refuse(self, refusal.to_string()),
        }
    }

    /// Whether we are among the K closest we know to at least one of the
    /// descriptor's routing keys (or know fewer than K peers).
    fn is_responsible(&self, d: &crate::ValidDescriptor) -> bool {
        let k = self.config.k;
        if self.table.len() < k {
            return true;
        }
        d.routing_keys.iter().any(|key| {
            let Some(target) = NodeId::from_key(key) else {
                return false;
            };
            let mine = self.local_id.distance(&target);
            let closer = self
                .table
                .closest_iter(&target)
                .take(k)
                .filter(|p| p.id.distance(&target) < mine)
                .count();
            closer < k
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{NodeAddr, Store};
    use crate::{Config, Descriptor, DescriptorBuilder, Keypair, Signature, schema};

    const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);

    fn store_frame(publisher: &Keypair, d: Descriptor) -> (PeerInfo, Vec<u8>) {
        let addr = NodeAddr::quic("127.0.0.9:4433");
        let frame = Frame::new(
            MsgId([5; 16]),
            Message::Store(Store {
                sender: publisher.identity(),
                sender_addr: addr.clone(),
                descriptor: d.into(),
            }),
        )
        .encode();
        let peer = PeerInfo {
            identity: publisher.identity(),
            addr,
        };
        (peer, frame)
    }

    fn ack(node: &mut Node, publisher: &Keypair, d: Descriptor) -> StoreAck {
        let (peer, frame) = store_frame(publisher, d);
        let Outcome::Respond(bytes) = node.handle_request(NOW, &peer, &frame) else {
            panic!("a STORE is answered");
        };
        match Frame::decode(&bytes).map(|f| f.message) {
            Ok(Message::StoreAck(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    fn capability(publisher: &Keypair, topic: &str) -> Descriptor {
        DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), NOW)
            .topic(topic)
            .routing_keys(schema::hierarchical_keys("compute/x"))
            .sign(publisher)
            .unwrap()
    }

    #[test]
    fn a_known_publisher_is_verified_with_its_cached_key() {
        let node_key = Keypair::from_secret_bytes(&[1; 32]);
        let mut node = Node::new(
            Config::testing(),
            node_key,
            NodeAddr::quic("127.0.0.1:4433"),
            NOW,
            1,
        );
        let publisher = Keypair::from_secret_bytes(&[2; 32]);
        assert!(ack(&mut node, &publisher, capability(&publisher, "a")).stored);
        assert_eq!(node.key_cache().hits_and_misses(), (0, 1));
        assert!(node.key_cache().contains(&publisher.identity()));
        // The same publisher again: its key comes from the cache.
        assert!(ack(&mut node, &publisher, capability(&publisher, "b")).stored);
        assert_eq!(node.key_cache().hits_and_misses(), (1, 1));
        // A cached key does not make a forged signature pass.
        let mut forged = capability(&publisher, "c");
        forged.signature = Signature::from_bytes([9; 64]);
        let refused = ack(&mut node, &publisher, forged);
        assert!(!refused.stored);
        assert!(refused.reason.unwrap().contains("signature"));
        assert_eq!(node.storage().len(), 2);
        // Nor one signed by another key under the cached publisher's name.
        let other = Keypair::from_secret_bytes(&[3; 32]);
        let mut impostor = capability(&other, "d");
        impostor.publisher = publisher.identity();
        impostor.id = impostor.compute_id();
        impostor.signature = other.sign(impostor.id.digest());
        assert!(!ack(&mut node, &publisher, impostor).stored);
        assert_eq!(node.storage().len(), 2);
        assert_eq!(node.key_cache().len(), 1);
    }

    #[test]
    fn a_zero_capacity_key_cache_changes_nothing_but_the_count() {
        let config = Config {
            key_cache_capacity: 0,
            ..Config::testing()
        };
        let mut node = Node::new(
            config,
            Keypair::from_secret_bytes(&[1; 32]),
            NodeAddr::quic("127.0.0.1:4433"),
            NOW,
            1,
        );
        let publisher = Keypair::from_secret_bytes(&[2; 32]);
        for topic in ["a", "b"] {
            assert!(ack(&mut node, &publisher, capability(&publisher, topic)).stored);
        }
        assert_eq!(node.key_cache().hits_and_misses(), (0, 2));
        assert!(node.key_cache().is_empty());
    }
}
