//! The server side: answering the four requests.

use super::{Event, Misbehaviour, Node, Outcome, PeerInfo, Refusal};
use crate::descriptor::{SignatureCheck, precheck_signatures};
use crate::node_id::NodeId;
use crate::time::Timestamp;
use crate::wire::{
    DecodeError, DecodeLimits, Frame, FrameHeader, MAX_BODY_LEN, Message, MessageType, MsgId,
    NodeRef, Pong, StoreAck,
};

/// One request as a driver received it, for [`Node::handle_requests`].
#[derive(Debug, Clone, Copy)]
pub struct InboundRequest<'a> {
    /// Who the connection's TLS handshake authenticated.
    pub peer: &'a PeerInfo,
    /// The request frame.
    pub frame: &'a [u8],
}

impl Node {
    /// Answers one inbound request. `peer` is who the connection's TLS
    /// handshake authenticated; a request whose `sender` differs is refused.
    pub fn handle_request(&mut self, now: Timestamp, peer: &PeerInfo, frame: &[u8]) -> Outcome {
        match Frame::decode_request(frame, &self.request_limits()) {
            Ok(request) => self.serve(now, peer, request, SignatureCheck::Unchecked),
            Err(e) => self.refuse_undecodable(frame, e),
        }
    }

    /// Answers requests that arrived together: the outcomes, in order, are
    /// those [`handle_request`](Node::handle_request) would give one by one,
    /// but the signatures of the STOREs among them are verified in one
    /// Ed25519 batch, about half the cost per signature of one-by-one
    /// checks. A driver that reads several requests before it writes
    /// (a burst of datagrams) should hand them in here.
    ///
    /// If any signature in the batch is bad, each is checked alone to find
    /// it, so a forged STORE costs its batch about 1.5× the one-by-one price
    /// and never changes another request's answer.
    ///
    /// ```
    /// use mars_proto::node::{InboundRequest, Node, Outcome, PeerInfo};
    /// use mars_proto::wire::{Frame, Message, MsgId, NodeAddr, Store};
    /// use mars_proto::{Config, DescriptorBuilder, Keypair, Timestamp, schema};
    ///
    /// let now = Timestamp::from_secs(1_700_000_000);
    /// let me = Keypair::from_secret_bytes(&[1; 32]);
    /// let mut node = Node::new(Config::testing(), me, NodeAddr::quic("127.0.0.1:4433"), now, 1);
    ///
    /// // Two publishers STORE at once, each over its own connection.
    /// let burst: Vec<(PeerInfo, Vec<u8>)> = [2u8, 3]
    ///     .iter()
    ///     .map(|&i| {
    ///         let key = Keypair::from_secret_bytes(&[i; 32]);
    ///         let addr = NodeAddr::quic(format!("127.0.0.{i}:4433"));
    ///         let d = DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), now)
    ///             .routing_keys(schema::hierarchical_keys("compute/demo"))
    ///             .sign(&key)
    ///             .unwrap();
    ///         let store = Store { sender: key.identity(), sender_addr: addr.clone(), descriptor: d.into() };
    ///         let frame = Frame::new(MsgId([i; 16]), Message::Store(store)).encode();
    ///         (PeerInfo { identity: key.identity(), addr }, frame)
    ///     })
    ///     .collect();
    /// let requests: Vec<InboundRequest<'_>> =
    ///     burst.iter().map(|(peer, frame)| InboundRequest { peer, frame }).collect();
    ///
    /// // One answer per request, in order; both signatures checked as one batch.
    /// let outcomes = node.handle_requests(now, &requests);
    /// assert!(outcomes.iter().all(|o| matches!(o, Outcome::Respond(_))));
    /// assert_eq!(node.storage().len(), 2);
    /// ```
    pub fn handle_requests(
        &mut self,
        now: Timestamp,
        requests: &[InboundRequest<'_>],
    ) -> Vec<Outcome> {
        let limits = self.request_limits();
        let decoded: Vec<Result<Frame, DecodeError>> = requests
            .iter()
            .map(|r| Frame::decode_request(r.frame, &limits))
            .collect();
        // The STOREs that will reach validation: their sender is the peer.
        let (mut at, mut stores) = (Vec::new(), Vec::new());
        for (i, (r, f)) in requests.iter().zip(&decoded).enumerate() {
            if let Ok(Frame {
                message: Message::Store(m),
                ..
            }) = f
            {
                if m.sender == r.peer.identity {
                    at.push(i);
                    stores.push(&*m.descriptor);
                }
            }
        }
        let mut checks = vec![SignatureCheck::Unchecked; requests.len()];
        if stores.len() > 1 {
            let verdicts = precheck_signatures(
                &stores,
                self.config.signature_cache.as_ref(),
                Some(&mut self.key_cache),
            );
            for (i, v) in at.into_iter().zip(verdicts) {
                checks[i] = v;
            }
        }
        drop(stores);
        requests
            .iter()
            .zip(decoded)
            .zip(checks)
            .map(|((r, f), check)| match f {
                Ok(request) => self.serve(now, r.peer, request, check),
                Err(e) => self.refuse_undecodable(r.frame, e),
            })
            .collect()
    }

    fn request_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_nodes: self.config.k,
            ..DecodeLimits::default()
        }
    }

    /// Answers one decoded request; `check` is what a batch already settled
    /// about a STORE's id and signature.
    fn serve(
        &mut self,
        now: Timestamp,
        peer: &PeerInfo,
        request: Frame,
        check: SignatureCheck,
    ) -> Outcome {
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
                Message::StoreAck(self.serve_store(now, *m.descriptor, check))
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

    fn serve_store(
        &mut self,
        now: Timestamp,
        d: crate::Descriptor,
        check: SignatureCheck,
    ) -> StoreAck {
        let refuse = |node: &mut Node, reason: String| {
            node.stats.stores_refused += 1;
            StoreAck {
                stored: false,
                reason: Some(reason),
            }
        };
        let valid = match d.validate_prechecked(
            now,
            check,
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

    /// A mixed burst: good STOREs from new and known publishers, a forged
    /// signature, a wrong id, a key that is not a curve point, a spoofed
    /// sender, a duplicate, a PING, a response and garbage.
    fn mixed_burst() -> Vec<(PeerInfo, Vec<u8>)> {
        let keys: Vec<Keypair> = (10..16)
            .map(|i| Keypair::from_secret_bytes(&[i; 32]))
            .collect();
        let mut burst = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            burst.push(store_frame(k, capability(k, &format!("t{i}"))));
        }
        let mut forged = capability(&keys[0], "forged");
        forged.signature = Signature::from_bytes([9; 64]);
        burst.push(store_frame(&keys[0], forged));
        let mut wrong_id = capability(&keys[1], "wrong-id");
        wrong_id.topic = "changed after signing".into();
        burst.push(store_frame(&keys[1], wrong_id));
        let not_a_point = Keypair::from_secret_bytes(&[40; 32]);
        let mut bad_key = capability(&not_a_point, "bad-key");
        // y = 2 has no x on the curve: the key does not decompress.
        let mut raw = [0u8; 32];
        raw[0] = 2;
        bad_key.publisher = crate::Identity::from_ed25519_bytes(raw);
        bad_key.id = bad_key.compute_id();
        let (_, frame) = store_frame(&not_a_point, bad_key.clone());
        let peer = PeerInfo {
            identity: bad_key.publisher,
            addr: NodeAddr::quic("127.0.0.9:4433"),
        };
        let frame = {
            let mut f = Frame::decode(&frame).unwrap();
            if let Message::Store(m) = &mut f.message {
                m.sender = bad_key.publisher;
            }
            f.encode()
        };
        burst.push((peer, frame));
        let (mut spoof_peer, spoofed) = store_frame(&keys[2], capability(&keys[2], "spoof"));
        spoof_peer.identity = keys[3].identity();
        burst.push((spoof_peer, spoofed));
        burst.push(store_frame(&keys[4], capability(&keys[4], "t4")));
        burst.push(store_frame(&keys[5], capability(&keys[5], "again")));
        let ping = Frame::new(
            MsgId([7; 16]),
            Message::Ping(crate::wire::Ping {
                sender: keys[0].identity(),
                sender_addr: NodeAddr::quic("127.0.0.9:4433"),
            }),
        )
        .encode();
        burst.push((burst[0].0.clone(), ping));
        let ack = Frame::new(
            MsgId([8; 16]),
            Message::StoreAck(StoreAck {
                stored: true,
                reason: None,
            }),
        )
        .encode();
        burst.push((burst[0].0.clone(), ack));
        burst.push((burst[0].0.clone(), vec![0x4d, 0x48, 1, 2, 0]));
        burst
    }

    fn node(seed: u64) -> Node {
        Node::new(
            Config::testing(),
            Keypair::from_secret_bytes(&[1; 32]),
            NodeAddr::quic("127.0.0.1:4433"),
            NOW,
            seed,
        )
    }

    #[test]
    fn a_batch_is_answered_as_one_by_one() {
        let burst = mixed_burst();
        let mut single = node(7);
        let one_by_one: Vec<Outcome> = burst
            .iter()
            .map(|(peer, frame)| single.handle_request(NOW, peer, frame))
            .collect();
        let mut batched = node(7);
        let requests: Vec<InboundRequest<'_>> = burst
            .iter()
            .map(|(peer, frame)| InboundRequest { peer, frame })
            .collect();
        let together = batched.handle_requests(NOW, &requests);
        assert_eq!(together, one_by_one);
        // Stored the same, told the driver the same, asks the same next.
        assert_eq!(batched.storage().len(), single.storage().len());
        assert_eq!(batched.storage().len(), 7, "six topics and \"again\"");
        let events = |n: &mut Node| std::iter::from_fn(|| n.poll_event()).collect::<Vec<_>>();
        assert_eq!(events(&mut batched), events(&mut single));
        let requests = |n: &mut Node| {
            std::iter::from_fn(|| n.poll_request())
                .map(|r| r.frame)
                .collect::<Vec<_>>()
        };
        assert_eq!(requests(&mut batched), requests(&mut single));
        // Every refusal carries its own reason.
        let reasons: Vec<String> = together
            .iter()
            .filter_map(|o| match o {
                Outcome::Respond(b) => match Frame::decode(b).map(|f| f.message) {
                    Ok(Message::StoreAck(StoreAck {
                        stored: false,
                        reason: Some(r),
                    })) => Some(r),
                    _ => None,
                },
                Outcome::Refuse(_) => None,
            })
            .collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].contains("signature"), "{reasons:?}");
        assert!(reasons[1].contains("id"), "{reasons:?}");
        assert!(reasons[2].contains("signature"), "{reasons:?}");
    }

    #[test]
    fn a_clean_batch_verifies_once_and_caches_every_key() {
        let keys: Vec<Keypair> = (20..28)
            .map(|i| Keypair::from_secret_bytes(&[i; 32]))
            .collect();
        let burst: Vec<(PeerInfo, Vec<u8>)> = keys
            .iter()
            .map(|k| store_frame(k, capability(k, "t")))
            .collect();
        let requests: Vec<InboundRequest<'_>> = burst
            .iter()
            .map(|(peer, frame)| InboundRequest { peer, frame })
            .collect();
        let mut n = node(3);
        let outcomes = n.handle_requests(NOW, &requests);
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Respond(_))));
        assert_eq!(n.storage().len(), 8);
        // One lookup per publisher, none repeated by the one-by-one path.
        assert_eq!(n.key_cache().hits_and_misses(), (0, 8));
        assert!(keys.iter().all(|k| n.key_cache().contains(&k.identity())));
    }
}
