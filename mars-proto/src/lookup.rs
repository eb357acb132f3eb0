//! The iterative Kademlia lookup, as a pure state machine.
//!
//! A [`Lookup`] knows candidates ordered by XOR distance to its target and
//! says which one to ask next; the node sends the requests and reports each
//! answer or failure back. It keeps at most α requests in flight and finishes
//! when the K closest candidates it knows have all answered (failed ones are
//! skipped). A dead peer costs one request timeout in one of the α slots and
//! never stalls the others.

use std::collections::BTreeMap;

use crate::identity::Identity;
use crate::node_id::NodeId;
use crate::wire::NodeAddr;

/// Where a candidate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CandidateState {
    /// Known, not yet asked.
    New,
    /// Asked, no answer yet.
    InFlight,
    /// Asked, and slow to answer: still awaited, but no longer holding one
    /// of the α slots, so the lookup moves on.
    Slow,
    /// Answered.
    Succeeded,
    /// Timed out or failed.
    Failed,
}

#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) identity: Identity,
    pub(crate) addr: NodeAddr,
    pub(crate) state: CandidateState,
    /// 1 for candidates known at the start; one more than the hop of the
    /// responder that first named it otherwise.
    pub(crate) hop: u32,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Ask this peer (`identity` is `None` for a bootstrap seed known only by address).
    Query {
        identity: Option<Identity>,
        addr: NodeAddr,
        hop: u32,
    },
    /// α requests are in flight, or the closest are still answering.
    Wait,
    /// The K closest known candidates have all answered or failed.
    Done,
}

/// Counters of one lookup, reported with its result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Requests sent.
    pub rpcs: u32,
    /// Requests that failed or timed out.
    pub failures: u32,
    /// Rounds: the largest hop count of any peer that answered.
    pub rounds: u32,
    /// Peers that answered.
    pub responders: u32,
    /// The query hit `Config::query_timeout` and reports the (partial)
    /// results it had gathered by then.
    pub timed_out: bool,
}

/// One lookup towards `target`.
#[derive(Debug)]
pub(crate) struct Lookup {
    target: NodeId,
    local: NodeId,
    k: usize,
    alpha: usize,
    max_candidates: usize,
    /// Keyed by distance to the target, so iteration is nearest first.
    candidates: BTreeMap<NodeId, Candidate>,
    /// Seeds known only by address (bootstrap), asked first.
    seeds: Vec<NodeAddr>,
    in_flight: usize,
    stats: LookupStats,
    done: bool,
}

impl Lookup {
    /// A lookup for `target` by the node `local`, starting from `initial`
    /// (typically the routing table's closest) and any address-only `seeds`.
    pub(crate) fn new(
        target: NodeId,
        local: NodeId,
        k: usize,
        alpha: usize,
        initial: impl IntoIterator<Item = (Identity, NodeAddr)>,
        seeds: Vec<NodeAddr>,
    ) -> Self {
        let mut l = Lookup {
            target,
            local,
            k: k.max(1),
            alpha: alpha.max(1),
            max_candidates: k.max(1) * 4,
            candidates: BTreeMap::new(),
            seeds,
            in_flight: 0,
            stats: LookupStats::default(),
            done: false,
        };
        for (identity, addr) in initial {
            l.add_candidate(identity, addr, 1);
        }
        l
    }

    /// The target.
    pub(crate) fn target(&self) -> &NodeId {
        &self.target
    }

    /// Counters so far.
    pub(crate) fn stats(&self) -> LookupStats {
        self.stats
    }

    fn add_candidate(&mut self, identity: Identity, addr: NodeAddr, hop: u32) {
        let id = identity.node_id();
        if id == self.local {
            return;
        }
        let dist = id.distance(&self.target);
        if self.candidates.contains_key(&dist) {
            return;
        }
        if self.candidates.len() >= self.max_candidates {
            // Bounded: drop the farthest candidate nobody is waiting on, if
            // the newcomer is closer than it.
            let farthest = self
                .candidates
                .iter()
                .rev()
                .find(|(_, c)| !matches!(c.state, CandidateState::InFlight | CandidateState::Slow))
                .map(|(d, _)| *d);
            match farthest {
                Some(f) if f > dist => {
                    self.candidates.remove(&f);
                }
                _ => return,
            }
        }
        self.candidates.insert(
            dist,
            Candidate {
                identity,
                addr,
                state: CandidateState::New,
                hop,
            },
        );
    }

    /// The next step. Call until it returns `Wait` or `Done`.
    pub(crate) fn next(&mut self) -> Next {
        if self.done {
            return Next::Done;
        }
        if self.in_flight >= self.alpha {
            return Next::Wait;
        }
        if let Some(addr) = self.seeds.pop() {
            self.in_flight += 1;
            self.stats.rpcs += 1;
            return Next::Query {
                identity: None,
                addr,
                hop: 1,
            };
        }
        let mut seen = 0;
        let mut waiting = false;
        for c in self.candidates.values_mut() {
            match c.state {
                CandidateState::Failed => continue,
                CandidateState::Succeeded => {}
                CandidateState::InFlight | CandidateState::Slow => waiting = true,
                CandidateState::New => {
                    c.state = CandidateState::InFlight;
                    self.in_flight += 1;
                    self.stats.rpcs += 1;
                    return Next::Query {
                        identity: Some(c.identity),
                        addr: c.addr.clone(),
                        hop: c.hop,
                    };
                }
            }
            seen += 1;
            if seen >= self.k {
                break;
            }
        }
        if waiting || self.in_flight > 0 && seen < self.k {
            // Still waiting on one of the closest, or on a farther request
            // whose answer may name closer peers.
            return Next::Wait;
        }
        self.done = true;
        Next::Done
    }

    /// A peer answered (its identity now known from TLS) and named `nodes`.
    pub(crate) fn on_success(
        &mut self,
        responder: Identity,
        responder_addr: &NodeAddr,
        hop: u32,
        nodes: impl IntoIterator<Item = (Identity, NodeAddr)>,
    ) {
        self.stats.responders += 1;
        self.stats.rounds = self.stats.rounds.max(hop);
        let dist = responder.node_id().distance(&self.target);
        match self.candidates.get_mut(&dist) {
            Some(c) => {
                if c.state != CandidateState::Slow {
                    self.in_flight = self.in_flight.saturating_sub(1);
                }
                c.state = CandidateState::Succeeded;
            }
            None if responder.node_id() != self.local => {
                // A seed known only by address: now it has an identity.
                self.in_flight = self.in_flight.saturating_sub(1);
                self.add_candidate(responder, responder_addr.clone(), hop);
                if let Some(c) = self.candidates.get_mut(&dist) {
                    c.state = CandidateState::Succeeded;
                }
            }
            None => self.in_flight = self.in_flight.saturating_sub(1),
        }
        if self.done {
            return;
        }
        for (identity, addr) in nodes {
            self.add_candidate(identity, addr, hop + 1);
        }
    }

    /// A request failed or timed out (`identity` `None` for an address-only seed).
    pub(crate) fn on_failure(&mut self, identity: Option<&Identity>) {
        self.stats.failures += 1;
        let candidate = identity.and_then(|id| {
            let dist = id.node_id().distance(&self.target);
            self.candidates.get_mut(&dist)
        });
        match candidate {
            Some(c) => {
                if c.state != CandidateState::Slow {
                    self.in_flight = self.in_flight.saturating_sub(1);
                }
                c.state = CandidateState::Failed;
            }
            None => self.in_flight = self.in_flight.saturating_sub(1),
        }
    }

    /// A request has been unanswered for the "slow" threshold: it keeps
    /// being awaited but frees its α slot, so a dead peer delays the lookup
    /// by the threshold rather than by the whole request timeout.
    pub(crate) fn on_slow(&mut self, identity: &Identity) {
        let dist = identity.node_id().distance(&self.target);
        if let Some(c) = self.candidates.get_mut(&dist) {
            if c.state == CandidateState::InFlight {
                c.state = CandidateState::Slow;
                self.in_flight = self.in_flight.saturating_sub(1);
            }
        }
    }

    /// The K closest that answered, nearest first.
    pub(crate) fn closest_succeeded(&self) -> impl Iterator<Item = &Candidate> {
        self.candidates
            .values()
            .filter(|c| c.state == CandidateState::Succeeded)
            .take(self.k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    fn peer(n: u8) -> (Identity, NodeAddr) {
        (
            Keypair::from_secret_bytes(&[n; 32]).identity(),
            NodeAddr::quic(format!("10.0.0.{n}:1")),
        )
    }

    fn start(n_initial: u8, k: usize, alpha: usize) -> Lookup {
        let target = NodeId::from_bytes([0x55; 32]);
        let local = NodeId::from_bytes([0; 32]);
        Lookup::new(target, local, k, alpha, (1..=n_initial).map(peer), vec![])
    }

    fn query_ids(l: &mut Lookup) -> Vec<Identity> {
        let mut out = vec![];
        while let Next::Query { identity, .. } = l.next() {
            out.push(identity.unwrap());
        }
        out
    }

    #[test]
    fn at_most_alpha_in_flight_nearest_first() {
        let mut l = start(10, 5, 3);
        let q = query_ids(&mut l);
        assert_eq!(q.len(), 3);
        let mut by_dist: Vec<Identity> = (1..=10).map(|n| peer(n).0).collect();
        by_dist.sort_by_key(|i| i.node_id().distance(l.target()));
        assert_eq!(q, by_dist[..3]);
        assert_eq!(l.next(), Next::Wait);
    }

    #[test]
    fn finishes_when_the_k_closest_answered_skipping_failures() {
        let mut l = start(6, 3, 3);
        let mut by_dist: Vec<(Identity, NodeAddr)> = (1..=6).map(peer).collect();
        by_dist.sort_by_key(|p| p.0.node_id().distance(l.target()));
        let q = query_ids(&mut l);
        // Closest fails, the other two answer with nothing new.
        l.on_failure(Some(&q[0]));
        l.on_success(q[1], &by_dist[1].1, 1, vec![]);
        l.on_success(q[2], &by_dist[2].1, 1, vec![]);
        // The failure opens the window to the 4th closest.
        let q2 = query_ids(&mut l);
        assert_eq!(q2, vec![by_dist[3].0]);
        assert_eq!(l.next(), Next::Wait);
        l.on_success(q2[0], &by_dist[3].1, 1, vec![]);
        assert_eq!(l.next(), Next::Done);
        let got: Vec<Identity> = l.closest_succeeded().map(|c| c.identity).collect();
        assert_eq!(got, vec![by_dist[1].0, by_dist[2].0, by_dist[3].0]);
        let s = l.stats();
        assert_eq!((s.rpcs, s.failures, s.responders, s.rounds), (4, 1, 3, 1));
    }

    #[test]
    fn named_nodes_become_candidates_one_hop_further() {
        let mut l = start(1, 3, 3);
        let q = query_ids(&mut l);
        l.on_success(q[0], &peer(1).1, 1, vec![peer(2), peer(3)]);
        let q2 = query_ids(&mut l);
        assert_eq!(q2.len(), 2);
        for id in &q2 {
            let addr = (2..=3).map(peer).find(|p| p.0 == *id).unwrap().1;
            l.on_success(*id, &addr, 2, vec![]);
        }
        assert_eq!(l.next(), Next::Done);
        assert_eq!(l.stats().rounds, 2);
    }

    #[test]
    fn address_only_seeds_are_asked_first_and_learn_identity() {
        let target = NodeId::from_bytes([1; 32]);
        let mut l = Lookup::new(target, NodeId::default(), 3, 3, vec![], vec![peer(9).1]);
        match l.next() {
            Next::Query {
                identity: None,
                addr,
                ..
            } => assert_eq!(addr, peer(9).1),
            other => panic!("{other:?}"),
        }
        l.on_success(peer(9).0, &peer(9).1, 1, vec![]);
        assert_eq!(l.next(), Next::Done);
        assert_eq!(l.closest_succeeded().count(), 1);
    }

    #[test]
    fn a_slow_peer_frees_its_slot_but_is_still_awaited() {
        let mut l = start(5, 2, 1);
        let q = query_ids(&mut l);
        assert_eq!(q.len(), 1);
        l.on_slow(&q[0]);
        let q2 = query_ids(&mut l);
        assert_eq!(
            q2.len(),
            1,
            "the slow peer's slot went to the next candidate"
        );
        let addr = (1..=5).map(peer).find(|p| p.0 == q2[0]).unwrap().1;
        l.on_success(q2[0], &addr, 1, vec![]);
        // The slow peer is the closest: the lookup cannot finish without it.
        assert_eq!(l.next(), Next::Wait);
        l.on_failure(Some(&q[0]));
        let q3 = query_ids(&mut l);
        assert_eq!(q3.len(), 1);
        let addr = (1..=5).map(peer).find(|p| p.0 == q3[0]).unwrap().1;
        l.on_success(q3[0], &addr, 1, vec![]);
        assert_eq!(l.next(), Next::Done);
        assert_eq!(l.stats().failures, 1);
    }

    #[test]
    fn an_empty_lookup_is_done_at_once() {
        let mut l = start(0, 3, 3);
        assert_eq!(l.next(), Next::Done);
    }

    #[test]
    fn candidates_are_bounded() {
        let mut l = start(1, 2, 1);
        let q = query_ids(&mut l);
        l.on_success(q[0], &peer(1).1, 1, (2..=100).map(peer));
        assert!(l.candidates.len() <= 8);
    }
}
