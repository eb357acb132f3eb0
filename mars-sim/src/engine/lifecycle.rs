//! Nodes coming and going: the initial joins, bootstraps, crashes, graceful
//! leaves, restarts with or without state, newcomers, one-shot kills.

use std::time::Duration;

use mars_proto::node::{Node, PeerInfo};
use mars_proto::{Keypair, NodeId, Timestamp};

use super::{Action, Ev, Sim, SimNode, Status, Tag, addr_of, shift};
use crate::adversary::{AdversaryState, Behaviour};
use crate::churn::{Departure, Return};
use crate::workload::LookupOutcome;

impl Sim {
    /// Lays out the run: which initial nodes are adversaries, the joins,
    /// the publishes, the phases and the replica samples.
    pub(super) fn plan(&mut self) {
        let n = self.sc.nodes;
        // Adversaries: disjoint random subsets of the initial nodes (never
        // node 0, the first seed).
        self.planned = vec![None; n];
        let mut order: Vec<usize> = (1..n).collect();
        for k in (1..order.len()).rev() {
            let j = self.rng_adv.index(k + 1);
            order.swap(k, j);
        }
        let mut next = 0;
        for (s, spec) in self.sc.adversaries.iter().enumerate() {
            let count = (spec.fraction * n as f64).round() as usize;
            for &i in order.iter().skip(next).take(count) {
                self.planned[i] = Some(s);
            }
            next += count;
        }
        // Joins.
        if n > 0 {
            self.join_next();
        }
        for i in 1..n {
            let at = super::START.saturating_add(self.sc.join_over.mul_f64(i as f64 / n as f64));
            self.queue.push(at, Ev::Action(Action::Join));
        }
        // Publishers: publishes spread over the publish window.
        let pub_start = super::START.saturating_add(self.sc.join_over + self.sc.settle);
        for p in 0..self.sc.publishers + self.sc.victims {
            let at = pub_start.saturating_add(
                self.sc
                    .publish_over
                    .mul_f64(p as f64 / (self.sc.publishers + self.sc.victims) as f64),
            );
            self.queue.push(at, Ev::Action(Action::Publish(u32::MAX)));
        }
        // Phases.
        let mut at = self.measure_start;
        for (k, p) in self.sc.phases.iter().enumerate() {
            self.queue
                .push(at, Ev::Action(Action::PhaseStart(k as u16)));
            at = at.saturating_add(p.duration);
        }
        // Replica samples, from the first publish on.
        if !self.sc.sample_every.is_zero() {
            let mut t = pub_start.saturating_add(self.sc.publish_over);
            while t < self.end {
                self.queue.push(t, Ev::Action(Action::Sample));
                t = t.saturating_add(self.sc.sample_every);
            }
        }
    }

    /// The next initial node joins.
    pub(super) fn join_next(&mut self) {
        let k = self.initial_joined;
        self.initial_joined += 1;
        let adversary = self.planned.get(k).copied().flatten().map(|s| {
            let spec = &self.sc.adversaries[s];
            (spec.behaviour, spec.grind)
        });
        let i = self.create_node(adversary);
        if i == 0 {
            // The first node has no one to bootstrap from: it is the seed.
            self.mark_ready(0);
        } else {
            self.start_bootstrap(i);
        }
    }

    /// A new node with a new identity (`adversary`: its behaviour, and
    /// whether its key is mined next to a victim key).
    pub(super) fn create_node(&mut self, adversary: Option<(Behaviour, bool)>) -> u32 {
        let i = self.nodes.len() as u32;
        let keypair = match adversary {
            Some((_, true)) if !self.victim_keys.is_empty() => self.mine_key(i),
            _ => Keypair::from_secret_bytes(&self.rng_keys.bytes32()),
        };
        let addr = addr_of(i);
        self.net.place(&mut self.rng_keys);
        let skew_max = self.sc.skew.as_micros() as i64;
        let skew_us = if skew_max > 0 {
            self.rng_keys.below(2 * skew_max as u64 + 1) as i64 - skew_max
        } else {
            0
        };
        let local = shift(self.now, skew_us);
        let node = Box::new(Node::new(
            self.config.clone(),
            keypair.clone(),
            addr.clone(),
            local,
            self.rng_seeds.next_u64(),
        ));
        let identity = keypair.identity();
        self.infos.push(PeerInfo { identity, addr });
        self.nodes.push(SimNode {
            node: Some(node),
            keypair: Box::new(keypair),
            skew_us,
            generation: 0,
            status: Status::Up,
            timer_at: None,
            ready: false,
            adversary: adversary.map(|(b, _)| (b, Box::new(AdversaryState::default()))),
            publisher: None,
            needs_publish: false,
            up_since: self.now,
            up_us: 0,
            msgs: 0,
            stores_refused_before: 0,
        });
        self.counters.nodes_created += 1;
        self.up.insert(i);
        match adversary {
            None => self.honest_up.insert(i),
            Some((Behaviour::Eclipse, _)) => {
                let id = identity.node_id();
                let pos = self.colluders.partition_point(|(c, _)| *c < id);
                self.colluders.insert(pos, (id, i));
            }
            Some((Behaviour::Forge, _)) => {
                let at = self.now.saturating_add(Duration::from_secs(60));
                self.queue.push(at, Ev::Action(Action::ForgeStore(i)));
            }
            Some(_) => {}
        }
        i
    }

    /// A key whose node id shares at least ⌈log2 N⌉ leading bits with a
    /// victim key (round robin over the victims): as close to the key as
    /// the nearest honest node is expected to be, at ~N key generations.
    fn mine_key(&mut self, i: u32) -> Keypair {
        let keys: Vec<_> = self.victim_keys.iter().copied().collect();
        let target = keys[i as usize % keys.len()];
        let Some(target) = NodeId::from_key(&target) else {
            return Keypair::from_secret_bytes(&self.rng_keys.bytes32());
        };
        let bits = (self.sc.nodes.max(2) as f64).log2().ceil() as u32;
        loop {
            let k = Keypair::from_secret_bytes(&self.rng_adv.bytes32());
            if k.identity().node_id().distance(&target).leading_zeros() >= bits {
                return k;
            }
        }
    }

    pub(super) fn mark_ready(&mut self, i: u32) {
        let sn = &mut self.nodes[i as usize];
        sn.ready = true;
        if sn.adversary.is_none() && sn.status == Status::Up {
            self.ready.insert(i);
        }
    }

    /// Node `i` bootstraps from a few random ready nodes.
    pub(super) fn start_bootstrap(&mut self, i: u32) {
        let want = self.sc.seeds_per_join.max(1);
        let mut seeds = Vec::with_capacity(want);
        for _ in 0..want * 4 {
            if seeds.len() >= want {
                break;
            }
            let Some(s) = self.ready.pick(&mut self.rng_work) else {
                break;
            };
            if s != i && !seeds.contains(&s) {
                seeds.push(s);
            }
        }
        let addrs = seeds
            .iter()
            .map(|&s| self.infos[s as usize].addr.clone())
            .collect();
        let local = self.local_now(i);
        let Some(node) = self.nodes[i as usize].node.as_mut() else {
            return;
        };
        match node.bootstrap(local, addrs) {
            Ok(q) => self.track(i, q, Tag::Bootstrap),
            Err(_) => {
                let at = self.now.saturating_add(Duration::from_secs(10));
                self.queue.push(at, Ev::Action(Action::Bootstrap(i)));
            }
        }
        self.after_call(i, false);
    }

    /// Node `i` goes down; with `keep_state` its node is kept for a restart.
    pub(super) fn take_down(&mut self, i: u32, how: Departure, keep_state: bool) {
        let now = self.now;
        let sn = &mut self.nodes[i as usize];
        if sn.status != Status::Up {
            return;
        }
        sn.status = match how {
            Departure::Crash => Status::Crashed,
            Departure::Leave => Status::Left,
        };
        sn.generation += 1;
        sn.timer_at = None;
        sn.ready = false;
        sn.up_us += now.duration_since(sn.up_since).as_micros() as u64;
        if !keep_state {
            if let Some(n) = sn.node.take() {
                sn.stores_refused_before += n.stats().stores_refused;
            }
        }
        match how {
            Departure::Crash => self.counters.crashes += 1,
            Departure::Leave => self.counters.leaves += 1,
        }
        self.up.remove(i);
        self.honest_up.remove(i);
        self.ready.remove(i);
        self.unwatch_all(i);
        // Its queries die with it.
        let gone: Vec<(u32, u64)> = self
            .queries
            .range((i, 0)..=(i, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            match self.queries.remove(&k) {
                Some(Tag::Lookup(l)) => {
                    let rec = &mut self.lookups[l as usize];
                    rec.outcome = LookupOutcome::Aborted;
                    let (phase, class) = (rec.phase, rec.class());
                    self.phase_metrics(phase, class).aborted += 1;
                }
                Some(Tag::Publish(p)) => self.publishers[p as usize].in_flight = false,
                _ => {}
            }
        }
    }

    /// Node `i` comes back, as `keep` says: with its whole state, with its
    /// store only (a node rebuilt around it), or empty. What was not kept
    /// when it went down comes back empty.
    pub(super) fn restart(&mut self, i: u32, keep: Return) {
        let now = self.now;
        let local = self.local_now(i);
        let seed = self.rng_seeds.next_u64();
        let config = self.config.clone();
        let sn = &mut self.nodes[i as usize];
        if sn.status == Status::Up {
            return;
        }
        match (keep, sn.node.take()) {
            (Return::RestartKeepingState, Some(n)) => {
                sn.node = Some(n);
                self.counters.restarts_keeping_state += 1;
            }
            (keep, old) => {
                let store = match old {
                    Some(n) => {
                        sn.stores_refused_before += n.stats().stores_refused;
                        (keep == Return::RestartKeepingStore).then(|| n.into_store())
                    }
                    None => None,
                };
                let keypair = Keypair::clone(&sn.keypair);
                let addr = self.infos[i as usize].addr.clone();
                sn.node = Some(Box::new(match store {
                    Some(store) => {
                        let node = Node::with_store(config, keypair, addr, local, seed, store);
                        self.counters.restarts_keeping_store += 1;
                        self.counters.descriptors_kept_over_restarts += node.storage().len() as u64;
                        node
                    }
                    None => {
                        self.counters.restarts_fresh += 1;
                        Node::new(config, keypair, addr, local, seed)
                    }
                }));
                // Its publisher application publishes again.
                sn.needs_publish = sn.publisher.is_some();
            }
        }
        sn.status = Status::Up;
        sn.up_since = now;
        self.up.insert(i);
        if sn.adversary.is_none() {
            self.honest_up.insert(i);
        }
        self.start_bootstrap(i);
    }

    /// A share of all live nodes crash at once (none come back).
    pub(super) fn kill(&mut self, share: f64) -> u64 {
        let count = (share * self.up.len() as f64).round() as usize;
        let mut killed = 0;
        for _ in 0..count {
            let Some(i) = self.up.pick(&mut self.rng_churn) else {
                break;
            };
            self.take_down(i, Departure::Crash, false);
            killed += 1;
        }
        killed
    }

    /// A bootstrap finished.
    pub(super) fn bootstrap_done(&mut self, i: u32, ok: bool) {
        if !ok {
            self.counters.bootstraps_failed += 1;
            let at = self.now.saturating_add(Duration::from_secs(10));
            self.queue.push(at, Ev::Action(Action::Bootstrap(i)));
            return;
        }
        self.counters.bootstraps_ok += 1;
        self.mark_ready(i);
        let sn = &mut self.nodes[i as usize];
        if sn.needs_publish {
            sn.needs_publish = false;
            if let Some(p) = sn.publisher {
                self.publish(p);
            }
        }
    }

    /// Seconds node `i` has been up in total, by `now`.
    pub(super) fn up_secs(&self, i: u32, now: Timestamp) -> f64 {
        let sn = &self.nodes[i as usize];
        let mut us = sn.up_us;
        if sn.status == Status::Up {
            us += now.duration_since(sn.up_since).as_micros() as u64;
        }
        us as f64 / 1e6
    }
}
