//! Adversarial nodes: a real `Node` with the simulator standing between it
//! and the network, dropping, answering or rewriting what it would say.
//!
//! The node itself is honest code; the attack lives here, in what the
//! simulator lets out. That keeps attacks honest too: an adversary can only
//! send what any peer could put on the wire, and everything it sends goes
//! through the honest nodes' decoding and validation like any response.
//!
//! | behaviour      | PING   | STORE                          | FIND_NODE / FIND_VALUE                          |
//! |----------------|--------|--------------------------------|-------------------------------------------------|
//! | `drop`         | honest | silence                        | silence                                         |
//! | `random`       | honest | honest                         | K random live nodes; never descriptors          |
//! | `eclipse`      | honest | attacked key: "stored", dropped | attacked key: the K colluders nearest the key   |
//! | `refuse-store` | honest | `stored: false`                | honest                                          |
//! | `stale`        | honest | honest, first version kept     | the oldest versions it has seen, when it has any |
//! | `forge`        | honest | honest                         | every descriptor altered or re-signed; made-up ones where it has none |
//!
//! Eclipse adversaries attack the victims' leaf keys when the scenario has
//! victims, every key otherwise; with `grind`, their keys are mined so their
//! node ids sit next to a victim key (a Sybil attack).

use std::collections::BTreeMap;

use mars_proto::wire::{FindValueResult, Message, NodeInfo, StoreAck};
use mars_proto::{Descriptor, Hash, Identity, Keypair, Timestamp};

use crate::rng::SimRng;

/// What an adversarial node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Behaviour {
    /// Answers PINGs (so it stays in routing tables) and drops everything else.
    DropRequests,
    /// Answers lookups with random live nodes and hides descriptors.
    RandomNodes,
    /// Colludes: answers lookups for attacked keys with the other eclipse
    /// nodes nearest the key, and swallows STOREs for them.
    Eclipse,
    /// Refuses every STORE.
    RefuseStore,
    /// Serves superseded (and, in time, expired) versions of descriptors.
    Stale,
    /// Serves altered, re-signed and made-up descriptors, and sends forged
    /// STOREs.
    Forge,
}

impl Behaviour {
    /// Every behaviour, in report order.
    pub const ALL: [Behaviour; 6] = [
        Behaviour::DropRequests,
        Behaviour::RandomNodes,
        Behaviour::Eclipse,
        Behaviour::RefuseStore,
        Behaviour::Stale,
        Behaviour::Forge,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::DropRequests => "drop",
            Behaviour::RandomNodes => "random",
            Behaviour::Eclipse => "eclipse",
            Behaviour::RefuseStore => "refuse-store",
            Behaviour::Stale => "stale",
            Behaviour::Forge => "forge",
        }
    }

    /// The behaviour named `s`.
    pub fn parse(s: &str) -> Option<Behaviour> {
        Behaviour::ALL.into_iter().find(|b| b.name() == s)
    }
}

/// A share of the initial nodes behaving one way.
#[derive(Debug, Clone, PartialEq)]
pub struct AdversarySpec {
    /// Share of the initial nodes (0.2 = 20 %).
    pub fraction: f64,
    /// What they do.
    pub behaviour: Behaviour,
    /// Mine keys so node ids sit next to the victims' keys (eclipse only).
    pub grind: bool,
}

/// What to do with one inbound request.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Let the node answer; pass the answer on unchanged.
    Honest,
    /// Say nothing: the requester times out.
    Drop,
    /// Answer this without asking the node.
    Answer(Box<Message>),
    /// Answer with the colluders nearest `target`.
    Colluders {
        /// The lookup's target.
        target: Hash,
    },
    /// Let the node answer, then rewrite the answer ([`rewrite`]).
    Rewrite,
}

/// Decides what an adversary of `behaviour` does with `request`;
/// `attacked` says whether a key is under eclipse attack.
pub fn plan(behaviour: Behaviour, request: &Message, attacked: impl Fn(&Hash) -> bool) -> Plan {
    let is_lookup = matches!(request, Message::FindNode(_) | Message::FindValue(_));
    match behaviour {
        Behaviour::DropRequests => match request {
            Message::Ping(_) => Plan::Honest,
            _ => Plan::Drop,
        },
        Behaviour::RandomNodes if is_lookup => Plan::Rewrite,
        Behaviour::RandomNodes => Plan::Honest,
        Behaviour::Eclipse => match request {
            Message::FindNode(m) if attacked(&m.target) => Plan::Colluders { target: m.target },
            Message::FindValue(m) if attacked(&m.key) => Plan::Colluders { target: m.key },
            Message::Store(m) if m.descriptor.routing_keys.iter().any(&attacked) => {
                Plan::Answer(Box::new(Message::StoreAck(StoreAck {
                    stored: true,
                    reason: None,
                })))
            }
            _ => Plan::Honest,
        },
        Behaviour::RefuseStore => match request {
            Message::Store(_) => Plan::Answer(Box::new(Message::StoreAck(StoreAck {
                stored: false,
                reason: Some("refused".to_owned()),
            }))),
            _ => Plan::Honest,
        },
        Behaviour::Stale | Behaviour::Forge => match request {
            Message::FindValue(_) => Plan::Rewrite,
            _ => Plan::Honest,
        },
    }
}

/// Most descriptors a stale adversary remembers.
pub const STALE_CAPACITY: usize = 4_096;

/// What one adversarial node remembers.
#[derive(Debug, Clone, Default)]
pub struct AdversaryState {
    /// For `stale`: the first version seen of each (publisher, topic).
    stale: BTreeMap<(Identity, String), Descriptor>,
}

impl AdversaryState {
    /// Notes a STORE the node received (stale adversaries keep the first
    /// version of each publisher's slot).
    pub fn remember(&mut self, d: &Descriptor) {
        if self.stale.len() >= STALE_CAPACITY {
            return;
        }
        self.stale
            .entry((d.publisher, d.topic.clone()))
            .or_insert_with(|| d.clone());
    }

    /// Old versions held at `key`, by `publisher` when given, at most `max`.
    fn stale_at(&self, key: &Hash, publisher: Option<Identity>, max: usize) -> Vec<Descriptor> {
        let matches = |d: &&Descriptor| {
            d.routing_keys.contains(key) && publisher.is_none_or(|p| d.publisher == p)
        };
        match publisher {
            Some(p) => self
                .stale
                .range((p, String::new())..)
                .take_while(|((id, _), _)| *id == p)
                .map(|(_, d)| d)
                .filter(matches)
                .take(max)
                .cloned()
                .collect(),
            None => self
                .stale
                .values()
                .filter(matches)
                .take(max)
                .cloned()
                .collect(),
        }
    }
}

/// What a rewrite did, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewriteCount {
    /// Forged descriptors put in an answer.
    pub forged: u64,
    /// Stale descriptors put in an answer.
    pub stale: u64,
    /// Node lists replaced.
    pub lists: u64,
}

/// Everything a rewrite may need from the simulation.
pub struct RewriteCtx<'a> {
    /// The adversary's own key (forgeries are signed with it).
    pub key: &'a Keypair,
    /// The adversary's clock.
    pub now: Timestamp,
    /// K random live nodes.
    pub random_nodes: &'a mut dyn FnMut() -> Vec<NodeInfo>,
    /// The adversary's generator.
    pub rng: &'a mut SimRng,
}

/// Rewrites the node's honest `response` to `request`.
pub fn rewrite(
    behaviour: Behaviour,
    state: &AdversaryState,
    request: &Message,
    response: Message,
    ctx: &mut RewriteCtx<'_>,
) -> (Message, RewriteCount) {
    let mut count = RewriteCount::default();
    let out = match (behaviour, request, response) {
        (Behaviour::RandomNodes, Message::FindNode(_), Message::FindNodeResult(mut r)) => {
            r.nodes = (ctx.random_nodes)();
            count.lists += 1;
            Message::FindNodeResult(r)
        }
        (Behaviour::RandomNodes, Message::FindValue(_), Message::FindValueResult(_)) => {
            count.lists += 1;
            Message::FindValueResult(FindValueResult::Nodes((ctx.random_nodes)()))
        }
        (Behaviour::Stale, Message::FindValue(q), resp) => {
            let publisher = q.filters.as_ref().and_then(|f| f.publisher);
            let old = state.stale_at(&q.key, publisher, q.max_results.clamp(1, 20) as usize);
            if old.is_empty() {
                resp
            } else {
                count.stale += old.len() as u64;
                Message::FindValueResult(FindValueResult::Descriptors(old))
            }
        }
        (Behaviour::Forge, Message::FindValue(q), Message::FindValueResult(r)) => {
            let forged = match r {
                FindValueResult::Descriptors(ds) => ds
                    .into_iter()
                    .enumerate()
                    .map(|(i, d)| forge(d, i, ctx))
                    .collect(),
                FindValueResult::Nodes(_) => {
                    let publisher =
                        q.filters
                            .as_ref()
                            .and_then(|f| f.publisher)
                            .unwrap_or_else(|| {
                                Keypair::from_secret_bytes(&ctx.rng.bytes32()).identity()
                            });
                    vec![made_up(q.key, publisher, ctx)]
                }
            };
            count.forged += forged.len() as u64;
            Message::FindValueResult(FindValueResult::Descriptors(forged))
        }
        (_, _, resp) => resp,
    };
    (out, count)
}

/// A forgery of `d`, of one of three kinds in turn: payload changed under
/// the old id (fails rule 1), payload changed and id recomputed under the
/// old signature (fails rule 2), or re-signed with the forger's key while
/// still naming the publisher (fails rule 2).
pub fn forge(mut d: Descriptor, kind: usize, ctx: &mut RewriteCtx<'_>) -> Descriptor {
    d.payload = format!("quic://attacker.invalid:4433#{}", ctx.rng.next_u64()).into_bytes();
    match kind % 3 {
        0 => {}
        1 => d.id = d.compute_id(),
        _ => {
            d.id = d.compute_id();
            d.signature = ctx.key.sign(d.id.digest());
        }
    }
    d
}

/// A descriptor at `key` claiming `publisher`, signed by the forger.
pub fn made_up(key: Hash, publisher: Identity, ctx: &mut RewriteCtx<'_>) -> Descriptor {
    let mut d =
        mars_proto::DescriptorBuilder::new(mars_proto::schema::CORE_CAPABILITY.hash(), ctx.now)
            .payload(b"quic://attacker.invalid:4433".to_vec())
            .routing_key(key)
            .sign(ctx.key)
            .unwrap_or_else(|_| unreachable_descriptor(key, ctx));
    d.publisher = publisher;
    d
}

/// A descriptor with a valid shape, for the impossible case where building
/// one fails (the static rules are met by construction above).
fn unreachable_descriptor(key: Hash, ctx: &mut RewriteCtx<'_>) -> Descriptor {
    Descriptor {
        schema_hash: mars_proto::schema::CORE_CAPABILITY.hash(),
        topic: String::new(),
        payload: Vec::new(),
        publisher: ctx.key.identity(),
        timestamp: ctx.now,
        sequence: 0,
        ttl: 3600,
        routing_keys: vec![key],
        id: key,
        signature: mars_proto::Signature::from_bytes([0; 64]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mars_proto::wire::{FindValue, NodeAddr, Ping};
    use mars_proto::{DescriptorBuilder, schema};

    fn descriptor(seed: u8, now: Timestamp) -> Descriptor {
        DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), now)
            .topic("t")
            .payload(b"genuine".to_vec())
            .routing_keys(schema::hierarchical_keys("compute/x"))
            .sign(&Keypair::from_secret_bytes(&[seed; 32]))
            .unwrap()
    }

    #[test]
    fn every_forgery_fails_validation() {
        let now = Timestamp::from_secs(1_700_000_000);
        let key = Keypair::from_secret_bytes(&[9; 32]);
        let mut rng = SimRng::new(1);
        let mut nodes = Vec::new;
        let mut ctx = RewriteCtx {
            key: &key,
            now,
            random_nodes: &mut nodes,
            rng: &mut rng,
        };
        for kind in 0..3 {
            let d = forge(descriptor(1, now), kind, &mut ctx);
            assert!(d.validate(now).is_err(), "kind {kind}");
        }
        let victim = Keypair::from_secret_bytes(&[1; 32]).identity();
        let d = made_up(schema::routing_key("compute"), victim, &mut ctx);
        assert!(d.validate(now).is_err());
    }

    #[test]
    fn droppers_answer_pings_only() {
        let me = Keypair::from_secret_bytes(&[1; 32]).identity();
        let ping = Message::Ping(Ping {
            sender: me,
            sender_addr: NodeAddr::quic("10.0.0.1:4433"),
        });
        let find = Message::FindValue(FindValue {
            sender: me,
            sender_addr: NodeAddr::quic("10.0.0.1:4433"),
            key: schema::routing_key("compute"),
            max_results: 20,
            filters: None,
        });
        assert_eq!(plan(Behaviour::DropRequests, &ping, |_| true), Plan::Honest);
        assert_eq!(plan(Behaviour::DropRequests, &find, |_| true), Plan::Drop);
        assert!(matches!(
            plan(Behaviour::Eclipse, &find, |_| true),
            Plan::Colluders { .. }
        ));
        assert_eq!(plan(Behaviour::Eclipse, &find, |_| false), Plan::Honest);
    }

    #[test]
    fn stale_adversaries_keep_the_first_version() {
        let now = Timestamp::from_secs(1_700_000_000);
        let mut s = AdversaryState::default();
        let first = descriptor(1, now);
        s.remember(&first);
        let mut second = descriptor(1, now);
        second.sequence = 2;
        s.remember(&second);
        let key = schema::routing_key("compute");
        let got = s.stale_at(&key, Some(first.publisher), 20);
        assert_eq!(got, vec![first]);
    }
}
