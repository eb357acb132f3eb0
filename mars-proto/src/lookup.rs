//! The iterative Kademlia lookup, as a pure state machine.
//!
//! A [`Lookup`] knows candidates ordered by XOR distance to its target and
//! says which one to ask next; the node sends the requests and reports each
//! answer or failure back. It keeps at most α requests in flight and finishes
//! when the K closest candidates it knows have all answered (failed ones are
//! skipped). A dead peer costs one request timeout in one of the α slots and
//! never stalls the others.

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
    /// 1 for candidates known at the start; one more than the hop of the
    /// responder that first named it otherwise.
    pub(crate) hop: u32,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Ask this peer (`identity` is `None` for a bootstrap seed known only
    /// by address; else the peer's identity and node id).
    Query {
        identity: Option<(Identity, NodeId)>,
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
///
/// Candidates live in a slab (`slots`, freed slots reused) with `order`
/// listing the live ones nearest first, so inserting one moves a few
/// indices, not whole candidates, and nothing is allocated per candidate.
/// `prefixes` holds the first key bytes of each slot's identity: a node
/// named again (most named nodes are, once a lookup nears its target) is
/// recognised by a scan of that short array, without computing its node
/// id.
///
/// What every answer reads is kept apart from the ~130-byte slots, in
/// small dense arrays: each slot's state (`states`, scanned by
/// [`next`](Lookup::next) over the K closest) and the first word of each
/// ordered candidate's distance (`order_keys`, binary-searched to place a
/// newcomer or find a responder). A lookup's state is cold whenever an
/// answer arrives (measured in mars-sim: thousands of other events run in
/// between), so the slots an answer used to walk were a cache miss each.
#[derive(Debug)]
pub(crate) struct Lookup {
    target: NodeId,
    local: NodeId,
    k: usize,
    alpha: usize,
    max_candidates: usize,
    slots: Vec<Slot>,
    /// `prefix(identity)` of each slot, live or free.
    prefixes: Vec<u64>,
    /// The state of each slot's candidate (meaningless for a free slot).
    states: Vec<CandidateState>,
    /// Live slots, nearest the target first.
    order: Vec<u32>,
    /// The first word of the distance of each entry of `order`.
    order_keys: Vec<u64>,
    /// Free slots.
    free: Vec<u32>,
    /// Seeds known only by address (bootstrap), asked first.
    seeds: Vec<NodeAddr>,
    in_flight: usize,
    stats: LookupStats,
    done: bool,
}

/// A candidate and its distance to the target.
#[derive(Debug)]
struct Slot {
    c: Candidate,
    /// Distance to the target as big-endian words: orders as the distance.
    dist: [u64; 4],
    live: bool,
}

impl Lookup {
    /// A lookup for `target` by the node `local`, starting from `initial`
    /// (typically the routing table's closest: identity, node id, address)
    /// and any address-only `seeds`.
    pub(crate) fn new(
        target: NodeId,
        local: NodeId,
        k: usize,
        alpha: usize,
        initial: impl IntoIterator<Item = (Identity, NodeId, NodeAddr)>,
        seeds: Vec<NodeAddr>,
    ) -> Self {
        let k = k.max(1);
        let mut l = Lookup {
            target,
            local,
            k,
            alpha: alpha.max(1),
            max_candidates: k * 4,
            slots: Vec::new(),
            prefixes: Vec::new(),
            states: Vec::new(),
            order: Vec::new(),
            order_keys: Vec::new(),
            free: Vec::new(),
            seeds,
            in_flight: 0,
            stats: LookupStats::default(),
            done: false,
        };
        for (identity, id, addr) in initial {
            l.add_candidate(identity, id, addr, 1);
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

    /// Live candidates.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }

    /// Where a candidate at `dist` is in `order`: `Ok` if one is there.
    /// The first words decide but among candidates sharing `dist`'s (rare
    /// but for crafted ids), which are compared in full.
    fn position(&self, dist: &[u64; 4]) -> Result<usize, usize> {
        let lo = self.order_keys.partition_point(|&k| k < dist[0]);
        let same = self
            .order_keys
            .get(lo..)
            .map_or(0, |rest| rest.partition_point(|&k| k == dist[0]));
        let Some(range) = self.order.get(lo..lo + same) else {
            return Err(lo);
        };
        range
            .binary_search_by(|&i| {
                self.slots
                    .get(i as usize)
                    .map_or(std::cmp::Ordering::Less, |s| s.dist.cmp(dist))
            })
            .map(|p| p + lo)
            .map_err(|p| p + lo)
    }

    /// The slot of the live candidate with node id `id`.
    fn find(&self, id: &NodeId) -> Option<usize> {
        let dist = words(&id.distance(&self.target));
        let at = self.position(&dist).ok()?;
        self.order.get(at).map(|&i| i as usize)
    }

    /// Whether `identity` is a live candidate: a scan of the prefixes, so a
    /// node named again costs no hashing.
    fn has_identity(&self, identity: &Identity) -> bool {
        const LANES: usize = 8;
        let p = prefix(identity);
        // Eight prefixes compared at a time without branches (vectorised),
        // then the rare chunk with a match checked in full.
        self.prefixes.chunks(LANES).enumerate().any(|(c, chunk)| {
            chunk.iter().fold(false, |m, &q| m | (q == p))
                && chunk.iter().enumerate().any(|(j, &q)| {
                    q == p
                        && self
                            .slots
                            .get(c * LANES + j)
                            .is_some_and(|s| s.live && s.c.identity == *identity)
                })
        })
    }

    /// Adds a candidate; `id` must be `identity`'s node id.
    fn add_candidate(&mut self, identity: Identity, id: NodeId, addr: NodeAddr, hop: u32) {
        if id == self.local {
            return;
        }
        let dist = words(&id.distance(&self.target));
        let Err(mut at) = self.position(&dist) else {
            return;
        };
        if self.order.len() >= self.max_candidates {
            // Bounded: drop the farthest candidate nobody is waiting on, if
            // the newcomer is closer than it.
            let states = &self.states;
            let farthest = self.order.iter().enumerate().rev().find(|&(_, &i)| {
                states.get(i as usize).is_some_and(|st| {
                    !matches!(st, CandidateState::InFlight | CandidateState::Slow)
                })
            });
            match farthest {
                Some((pos, &i)) if pos >= at => {
                    self.order.remove(pos);
                    self.order_keys.remove(pos);
                    if let Some(s) = self.slots.get_mut(i as usize) {
                        s.live = false;
                    }
                    self.free.push(i);
                    at = at.min(self.order.len());
                }
                _ => return,
            }
        }
        let slot = Slot {
            c: Candidate {
                identity,
                addr,
                hop,
            },
            dist,
            live: true,
        };
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = slot;
                }
                if let Some(p) = self.prefixes.get_mut(i as usize) {
                    *p = prefix(&identity);
                }
                if let Some(st) = self.states.get_mut(i as usize) {
                    *st = CandidateState::New;
                }
                i
            }
            None => {
                self.slots.push(slot);
                self.prefixes.push(prefix(&identity));
                self.states.push(CandidateState::New);
                (self.slots.len() - 1) as u32
            }
        };
        self.order.insert(at, i);
        self.order_keys.insert(at, dist[0]);
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
        for &i in &self.order {
            let Some(st) = self.states.get_mut(i as usize) else {
                continue;
            };
            match *st {
                CandidateState::Failed => continue,
                CandidateState::Succeeded => {}
                CandidateState::InFlight | CandidateState::Slow => waiting = true,
                CandidateState::New => {
                    let Some(s) = self.slots.get(i as usize) else {
                        continue;
                    };
                    *st = CandidateState::InFlight;
                    self.in_flight += 1;
                    self.stats.rpcs += 1;
                    let id = from_words(&s.dist).distance(&self.target);
                    return Next::Query {
                        identity: Some((s.c.identity, id)),
                        addr: s.c.addr.clone(),
                        hop: s.c.hop,
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

    /// A peer answered (its identity now known from TLS; `responder_id` its
    /// node id) and named `nodes`; `id_of` gives the node id of a named
    /// node not already a candidate.
    pub(crate) fn on_success(
        &mut self,
        responder: Identity,
        responder_id: NodeId,
        responder_addr: &NodeAddr,
        hop: u32,
        nodes: impl IntoIterator<Item = (Identity, NodeAddr)>,
        id_of: impl Fn(&Identity) -> NodeId,
    ) {
        self.stats.responders += 1;
        self.stats.rounds = self.stats.rounds.max(hop);
        let local = self.local;
        match self.find(&responder_id) {
            Some(i) => {
                if let Some(st) = self.states.get_mut(i) {
                    let was_slow = *st == CandidateState::Slow;
                    *st = CandidateState::Succeeded;
                    if !was_slow {
                        self.in_flight = self.in_flight.saturating_sub(1);
                    }
                }
            }
            None if responder_id != local => {
                // A seed known only by address: now it has an identity.
                self.in_flight = self.in_flight.saturating_sub(1);
                self.add_candidate(responder, responder_id, responder_addr.clone(), hop);
                if let Some(st) = self
                    .find(&responder_id)
                    .and_then(|i| self.states.get_mut(i))
                {
                    *st = CandidateState::Succeeded;
                }
            }
            None => self.in_flight = self.in_flight.saturating_sub(1),
        }
        if self.done {
            return;
        }
        for (identity, addr) in nodes {
            // A node already listed is at its place already: same id, same
            // distance. Only newcomers need their id.
            if self.has_identity(&identity) {
                continue;
            }
            let id = id_of(&identity);
            self.add_candidate(identity, id, addr, hop + 1);
        }
    }

    /// A request failed or timed out (`id`, the peer's node id, `None` for
    /// an address-only seed).
    pub(crate) fn on_failure(&mut self, id: Option<&NodeId>) {
        self.stats.failures += 1;
        let state = id
            .and_then(|id| self.find(id))
            .and_then(|i| self.states.get_mut(i));
        match state {
            Some(st) => {
                let was_slow = *st == CandidateState::Slow;
                *st = CandidateState::Failed;
                if !was_slow {
                    self.in_flight = self.in_flight.saturating_sub(1);
                }
            }
            None => self.in_flight = self.in_flight.saturating_sub(1),
        }
    }

    /// A request has been unanswered for the "slow" threshold: it keeps
    /// being awaited but frees its α slot, so a dead peer delays the lookup
    /// by the threshold rather than by the whole request timeout.
    pub(crate) fn on_slow(&mut self, id: &NodeId) {
        if let Some(st) = self.find(id).and_then(|i| self.states.get_mut(i)) {
            if *st == CandidateState::InFlight {
                *st = CandidateState::Slow;
                self.in_flight = self.in_flight.saturating_sub(1);
            }
        }
    }

    /// The K closest that answered, nearest first, with their node ids.
    pub(crate) fn closest_succeeded(&self) -> impl Iterator<Item = (NodeId, &Candidate)> {
        self.order
            .iter()
            .filter(|&&i| self.states.get(i as usize) == Some(&CandidateState::Succeeded))
            .filter_map(|&i| self.slots.get(i as usize))
            .take(self.k)
            .map(|s| (from_words(&s.dist).distance(&self.target), &s.c))
    }
}

/// The first eight key bytes of an identity, to recognise it quickly.
fn prefix(identity: &Identity) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&identity.public_key()[..8]);
    u64::from_le_bytes(b)
}

/// An id as four big-endian words, which order as the id does.
fn words(id: &NodeId) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (w, chunk) in out.iter_mut().zip(id.as_bytes().chunks_exact(8)) {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(chunk);
        *w = u64::from_be_bytes(buf);
    }
    out
}

/// The inverse of [`words`].
fn from_words(w: &[u64; 4]) -> NodeId {
    let mut out = [0u8; 32];
    for (chunk, w) in out.chunks_exact_mut(8).zip(w) {
        chunk.copy_from_slice(&w.to_be_bytes());
    }
    NodeId::from_bytes(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    fn peer(n: u8) -> (Identity, NodeId, NodeAddr) {
        let identity = Keypair::from_secret_bytes(&[n; 32]).identity();
        (
            identity,
            identity.node_id(),
            NodeAddr::quic(format!("10.0.0.{n}:1")),
        )
    }

    fn addr_of(i: &Identity) -> NodeAddr {
        (1..=255).map(peer).find(|p| p.0 == *i).unwrap().2
    }

    fn start(n_initial: u8, k: usize, alpha: usize) -> Lookup {
        let target = NodeId::from_bytes([0x55; 32]);
        let local = NodeId::from_bytes([0; 32]);
        Lookup::new(target, local, k, alpha, (1..=n_initial).map(peer), vec![])
    }

    fn query_ids(l: &mut Lookup) -> Vec<Identity> {
        let mut out = vec![];
        while let Next::Query { identity, .. } = l.next() {
            let (identity, id) = identity.unwrap();
            assert_eq!(id, identity.node_id());
            out.push(identity);
        }
        out
    }

    fn answer(l: &mut Lookup, i: Identity, hop: u32, nodes: Vec<(Identity, NodeId, NodeAddr)>) {
        let named = nodes.into_iter().map(|(i, _, a)| (i, a));
        l.on_success(i, i.node_id(), &addr_of(&i), hop, named, Identity::node_id);
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
        let mut by_dist: Vec<Identity> = (1..=6).map(|n| peer(n).0).collect();
        by_dist.sort_by_key(|i| i.node_id().distance(l.target()));
        let q = query_ids(&mut l);
        // Closest fails, the other two answer with nothing new.
        l.on_failure(Some(&q[0].node_id()));
        answer(&mut l, q[1], 1, vec![]);
        answer(&mut l, q[2], 1, vec![]);
        // The failure opens the window to the 4th closest.
        let q2 = query_ids(&mut l);
        assert_eq!(q2, vec![by_dist[3]]);
        assert_eq!(l.next(), Next::Wait);
        answer(&mut l, q2[0], 1, vec![]);
        assert_eq!(l.next(), Next::Done);
        let got: Vec<Identity> = l.closest_succeeded().map(|(_, c)| c.identity).collect();
        assert_eq!(got, vec![by_dist[1], by_dist[2], by_dist[3]]);
        assert!(
            l.closest_succeeded()
                .all(|(id, c)| id == c.identity.node_id())
        );
        let s = l.stats();
        assert_eq!((s.rpcs, s.failures, s.responders, s.rounds), (4, 1, 3, 1));
    }

    #[test]
    fn named_nodes_become_candidates_one_hop_further() {
        let mut l = start(1, 3, 3);
        let q = query_ids(&mut l);
        answer(&mut l, q[0], 1, vec![peer(2), peer(3)]);
        let q2 = query_ids(&mut l);
        assert_eq!(q2.len(), 2);
        for id in &q2 {
            answer(&mut l, *id, 2, vec![]);
        }
        assert_eq!(l.next(), Next::Done);
        assert_eq!(l.stats().rounds, 2);
    }

    #[test]
    fn address_only_seeds_are_asked_first_and_learn_identity() {
        let target = NodeId::from_bytes([1; 32]);
        let mut l = Lookup::new(target, NodeId::default(), 3, 3, vec![], vec![peer(9).2]);
        match l.next() {
            Next::Query {
                identity: None,
                addr,
                ..
            } => assert_eq!(addr, peer(9).2),
            other => panic!("{other:?}"),
        }
        answer(&mut l, peer(9).0, 1, vec![]);
        assert_eq!(l.next(), Next::Done);
        assert_eq!(l.closest_succeeded().count(), 1);
    }

    #[test]
    fn a_slow_peer_frees_its_slot_but_is_still_awaited() {
        let mut l = start(5, 2, 1);
        let q = query_ids(&mut l);
        assert_eq!(q.len(), 1);
        l.on_slow(&q[0].node_id());
        let q2 = query_ids(&mut l);
        assert_eq!(
            q2.len(),
            1,
            "the slow peer's slot went to the next candidate"
        );
        answer(&mut l, q2[0], 1, vec![]);
        // The slow peer is the closest: the lookup cannot finish without it.
        assert_eq!(l.next(), Next::Wait);
        l.on_failure(Some(&q[0].node_id()));
        let q3 = query_ids(&mut l);
        assert_eq!(q3.len(), 1);
        answer(&mut l, q3[0], 1, vec![]);
        assert_eq!(l.next(), Next::Done);
        assert_eq!(l.stats().failures, 1);
    }

    #[test]
    fn ids_sharing_their_first_word_are_ordered_in_full() {
        // Crafted ids equal in their first 64 bits: the dense first-word
        // keys tie, and the whole distances must decide.
        let target = NodeId::from_bytes([0; 32]);
        let local = NodeId::from_bytes([0xff; 32]);
        let id = |last: u8| {
            let mut b = [0u8; 32];
            b[0] = 1;
            b[31] = last;
            NodeId::from_bytes(b)
        };
        let ps: Vec<_> = (1..=6u8).map(peer).collect();
        let lasts = [9u8, 3, 7, 1, 5, 2];
        let initial = ps
            .iter()
            .zip(lasts)
            .map(|((i, _, a), last)| (*i, id(last), a.clone()));
        let mut l = Lookup::new(target, local, 6, 6, initial, vec![]);
        let mut asked = vec![];
        while let Next::Query {
            identity: Some((_, nid)),
            ..
        } = l.next()
        {
            asked.push(nid);
        }
        let mut nearest_first: Vec<NodeId> = lasts.iter().map(|&x| id(x)).collect();
        nearest_first.sort();
        assert_eq!(asked, nearest_first);
        for (p, &last) in ps.iter().zip(&lasts) {
            l.on_success(p.0, id(last), &p.2, 1, Vec::new(), Identity::node_id);
        }
        assert_eq!(l.closest_succeeded().count(), 6);
        assert_eq!(l.next(), Next::Done);
    }

    #[test]
    fn an_empty_lookup_is_done_at_once() {
        let mut l = start(0, 3, 3);
        assert_eq!(l.next(), Next::Done);
    }

    /// The lookup as it was written first (candidates in a `BTreeMap`
    /// keyed by distance, every named node hashed), as a model: the slab,
    /// the sorted index and the identity scan must behave exactly alike.
    struct Model {
        target: NodeId,
        k: usize,
        alpha: usize,
        c: std::collections::BTreeMap<NodeId, (Identity, CandidateState, u32)>,
        in_flight: usize,
        done: bool,
    }

    impl Model {
        fn add(&mut self, identity: Identity, hop: u32) {
            let d = identity.node_id().distance(&self.target);
            if self.c.contains_key(&d) {
                return;
            }
            if self.c.len() >= self.k * 4 {
                let farthest = self
                    .c
                    .iter()
                    .rev()
                    .find(|(_, c)| !matches!(c.1, CandidateState::InFlight | CandidateState::Slow))
                    .map(|(d, _)| *d);
                match farthest {
                    Some(f) if f > d => {
                        self.c.remove(&f);
                    }
                    _ => return,
                }
            }
            self.c.insert(d, (identity, CandidateState::New, hop));
        }

        fn next(&mut self) -> Option<Option<(Identity, u32)>> {
            if self.done {
                return None;
            }
            if self.in_flight >= self.alpha {
                return Some(None);
            }
            let (mut seen, mut waiting) = (0, false);
            for c in self.c.values_mut() {
                match c.1 {
                    CandidateState::Failed => continue,
                    CandidateState::Succeeded => {}
                    CandidateState::InFlight | CandidateState::Slow => waiting = true,
                    CandidateState::New => {
                        c.1 = CandidateState::InFlight;
                        self.in_flight += 1;
                        return Some(Some((c.0, c.2)));
                    }
                }
                seen += 1;
                if seen >= self.k {
                    break;
                }
            }
            if waiting || self.in_flight > 0 && seen < self.k {
                return Some(None);
            }
            self.done = true;
            None
        }

        fn finish(&mut self, i: &Identity, to: CandidateState) {
            let d = i.node_id().distance(&self.target);
            match self.c.get_mut(&d) {
                Some(c) => {
                    if c.1 != CandidateState::Slow {
                        self.in_flight = self.in_flight.saturating_sub(1);
                    }
                    c.1 = to;
                }
                None => self.in_flight = self.in_flight.saturating_sub(1),
            }
        }
    }

    #[test]
    fn behaves_exactly_like_the_btreemap_lookup() {
        let pool: Vec<(Identity, NodeId, NodeAddr)> = (1..=90).map(peer).collect();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for round in 0..300 {
            let (k, alpha) = (1 + round % 5, 1 + round % 3);
            let target = pool[rnd(90)].1;
            let local = NodeId::from_bytes([round as u8; 32]);
            let initial: Vec<_> = (0..rnd(12)).map(|_| pool[rnd(90)].clone()).collect();
            let mut l = Lookup::new(target, local, k, alpha, initial.clone(), vec![]);
            let mut m = Model {
                target,
                k,
                alpha,
                c: Default::default(),
                in_flight: 0,
                done: false,
            };
            for (i, _, _) in &initial {
                m.add(*i, 1);
            }
            let mut asked: Vec<(Identity, u32)> = Vec::new();
            for _step in 0..200 {
                loop {
                    let got = match l.next() {
                        Next::Query { identity, hop, .. } => {
                            let (i, id) = identity.unwrap();
                            assert_eq!(id, i.node_id());
                            Some(Some((i, hop)))
                        }
                        Next::Wait => Some(None),
                        Next::Done => None,
                    };
                    assert_eq!(got, m.next(), "round {round}");
                    match got {
                        Some(Some(q)) => asked.push(q),
                        _ => break,
                    }
                }
                if asked.is_empty() {
                    break;
                }
                let (i, hop) = asked.swap_remove(rnd(asked.len()));
                match rnd(4) {
                    0 => {
                        l.on_failure(Some(&i.node_id()));
                        m.finish(&i, CandidateState::Failed);
                    }
                    1 => {
                        l.on_slow(&i.node_id());
                        let d = i.node_id().distance(&target);
                        if let Some(c) = m.c.get_mut(&d) {
                            if c.1 == CandidateState::InFlight {
                                c.1 = CandidateState::Slow;
                                m.in_flight = m.in_flight.saturating_sub(1);
                            }
                        }
                        asked.push((i, hop));
                    }
                    _ => {
                        let named: Vec<_> = (0..rnd(21)).map(|_| pool[rnd(90)].clone()).collect();
                        let addr = addr_of(&i);
                        let to_model: Vec<Identity> = named.iter().map(|n| n.0).collect();
                        l.on_success(
                            i,
                            i.node_id(),
                            &addr,
                            hop,
                            named.into_iter().map(|(i, _, a)| (i, a)),
                            Identity::node_id,
                        );
                        m.finish(&i, CandidateState::Succeeded);
                        if !m.done {
                            for n in to_model {
                                m.add(n, hop + 1);
                            }
                        }
                    }
                }
                let ours: Vec<Identity> = l.closest_succeeded().map(|(_, c)| c.identity).collect();
                let model: Vec<Identity> =
                    m.c.values()
                        .filter(|c| c.1 == CandidateState::Succeeded)
                        .take(k)
                        .map(|c| c.0)
                        .collect();
                assert_eq!(ours, model, "round {round}");
                assert_eq!(l.len(), m.c.len(), "round {round}");
            }
        }
    }

    #[test]
    fn candidates_are_bounded() {
        let mut l = start(1, 2, 1);
        let q = query_ids(&mut l);
        answer(&mut l, q[0], 1, (2..=100).map(peer).collect());
        assert!(l.len() <= 8);
    }
}
