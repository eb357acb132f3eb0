//! Scenario actions: phases, churn, the workload (publishes and lookups),
//! replica counts, and what the engine makes of finished queries.

use std::time::Duration;

use mars_proto::LookupStats;
use mars_proto::node::QueryResult;
use mars_proto::store::DescriptorStore;
use mars_proto::wire::Filters;
use mars_proto::{DescriptorBuilder, Timestamp, schema};

use super::{Action, Ev, Sim, Status, Tag};
use crate::churn::Return;
use crate::metrics::{LookupClass, LookupMetrics, ReplicaSample, Samples};
use crate::workload::{LookupOutcome, LookupRec, Publisher, random_path, victim_path};

/// A lookup is only aimed at a descriptor that stays valid this long.
const FINDABLE_MARGIN: Duration = Duration::from_secs(60);

impl Sim {
    /// Runs one scenario action.
    pub(super) fn act(&mut self, a: Action) {
        let code = match a {
            Action::Join => 1,
            Action::Bootstrap(_) => 2,
            Action::Publish(_) => 3,
            Action::Lookup(_) => 4,
            Action::PhaseStart(_) => 5,
            Action::ChurnTick(_) => 6,
            Action::Restart { .. } => 7,
            Action::Newcomer => 8,
            Action::Sample => 9,
            Action::ForgeStore(_) => 10,
        };
        self.trace.record(
            self.now.as_micros(),
            crate::trace::RecordKind::Action,
            0,
            0,
            code,
            &[],
        );
        match a {
            Action::Join => self.join_next(),
            Action::Bootstrap(i) => {
                if self.nodes[i as usize].status == Status::Up {
                    self.start_bootstrap(i);
                }
            }
            Action::Publish(u32::MAX) => self.new_publisher(),
            Action::Publish(p) => self.publish(p),
            Action::Lookup(phase) => self.issue_lookup(phase),
            Action::PhaseStart(k) => self.start_phase(k),
            Action::ChurnTick(k) => self.churn_tick(k),
            Action::Restart { node, keep } => self.restart(node, keep),
            Action::Newcomer => {
                let i = self.create_node(None);
                self.counters.newcomers += 1;
                self.start_bootstrap(i);
            }
            Action::Sample => self.sample_replicas(),
            Action::ForgeStore(i) => self.forge_store(i),
        }
    }

    /// The metrics a lookup of `phase` counts in.
    pub(super) fn phase_metrics(&mut self, phase: u16, class: LookupClass) -> &mut LookupMetrics {
        self.phases[phase as usize].class(class)
    }

    fn start_phase(&mut self, k: u16) {
        let ended = self.phase.map_or("setup".to_owned(), |p| {
            self.sc.phases[p as usize].name.clone()
        });
        self.end_stage(ended);
        self.phase = Some(k);
        let spec = self.sc.phases[k as usize].clone();
        self.phases[k as usize].live_at_start = self.up.len() as u64;
        if let Some(share) = spec.kill_at_start {
            let killed = self.kill(share);
            self.phases[k as usize].killed = killed;
        }
        let start = self.now;
        for _ in 0..spec.lookups {
            let at = start.saturating_add(spec.duration.mul_f64(self.rng_work.unit()));
            self.queue.push(at, Ev::Action(Action::Lookup(k)));
        }
        if let Some(churn) = &spec.churn {
            if let Some(gap) = churn.next_gap(self.honest_up.len(), &mut self.rng_churn) {
                self.queue.push(
                    self.now.saturating_add(gap),
                    Ev::Action(Action::ChurnTick(k)),
                );
            }
        }
    }

    fn churn_tick(&mut self, k: u16) {
        if self.phase != Some(k) {
            return;
        }
        let Some(churn) = self.sc.phases[k as usize].churn.clone() else {
            return;
        };
        if let Some(i) = self.honest_up.pick(&mut self.rng_churn) {
            let (how, ret, downtime) = churn.draw(&mut self.rng_churn);
            let keeps_node = matches!(
                ret,
                Return::RestartKeepingState | Return::RestartKeepingStore
            );
            self.take_down(i, how, keeps_node);
            self.phases[k as usize].departures += 1;
            let at = self.now.saturating_add(downtime);
            let action = match ret {
                Return::Newcomer => Action::Newcomer,
                restart => Action::Restart {
                    node: i,
                    keep: restart,
                },
            };
            self.queue.push(at, Ev::Action(action));
        }
        if let Some(gap) = churn.next_gap(self.honest_up.len(), &mut self.rng_churn) {
            self.queue.push(
                self.now.saturating_add(gap),
                Ev::Action(Action::ChurnTick(k)),
            );
        }
    }

    // ---------------------------------------------------------------- publish

    /// Makes the next publisher: a random ready honest node that publishes
    /// nothing yet (victims first).
    fn new_publisher(&mut self) {
        let mut chosen = None;
        for _ in 0..64 {
            let Some(i) = self.ready.pick(&mut self.rng_work) else {
                break;
            };
            if self.nodes[i as usize].publisher.is_none() {
                chosen = Some(i);
                break;
            }
        }
        let Some(i) = chosen else {
            let at = self.now.saturating_add(Duration::from_secs(10));
            self.queue.push(at, Ev::Action(Action::Publish(u32::MAX)));
            return;
        };
        let p = self.publishers.len() as u32;
        let victim = (p as usize) < self.sc.victims;
        let path = if victim {
            victim_path(p as usize)
        } else if self.sc.paths.is_empty() {
            random_path(&mut self.rng_work)
        } else {
            let at = self.rng_work.index(self.sc.paths.len());
            self.sc.paths[at].clone()
        };
        let info = &self.infos[i as usize];
        let pb = Publisher::new(i, info.identity, path, victim, info.addr.address());
        self.by_identity.insert(info.identity, p);
        self.publishers.push(pb);
        self.nodes[i as usize].publisher = Some(p);
        self.publish(p);
    }

    /// Publisher `p` publishes its descriptor with the next sequence.
    pub(super) fn publish(&mut self, p: u32) {
        let pb = &self.publishers[p as usize];
        let i = pb.node;
        let sn = &self.nodes[i as usize];
        if sn.status != Status::Up {
            return; // it publishes again when it restarts empty
        }
        if !sn.ready || pb.in_flight {
            let at = self.now.saturating_add(Duration::from_secs(30));
            self.queue.push(at, Ev::Action(Action::Publish(p)));
            return;
        }
        let local = self.local_now(i);
        let seq = pb.seq + 1;
        let built = DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), local)
            .topic(pb.topic.clone())
            .payload(pb.payload.clone())
            .sequence(seq)
            .ttl(self.sc.ttl_secs)
            .routing_keys(pb.keys.clone())
            .sign(&sn.keypair);
        let d = match built {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(publisher = p, path = %pb.path, "descriptor not built: {e}");
                return;
            }
        };
        let Some(node) = self.nodes[i as usize].node.as_mut() else {
            return;
        };
        match node.publish(local, d) {
            Ok(q) => {
                let ttl = Duration::from_secs(u64::from(self.sc.ttl_secs));
                let pb = &mut self.publishers[p as usize];
                pb.seq = seq;
                pb.in_flight = true;
                pb.expires_at = self.now.saturating_add(ttl);
                self.counters.publishes += 1;
                self.track(i, q, Tag::Publish(p));
            }
            Err(e) => tracing::debug!(node = i, "publish refused: {e}"),
        }
        self.after_call(i, false);
    }

    // ----------------------------------------------------------------- lookup

    /// Issues one lookup of phase `phase`: a findable publisher, a level of
    /// its path, a random ready querier.
    fn issue_lookup(&mut self, phase: u16) {
        let now = self.now;
        let want_victim = self.sc.victims > 0 && self.rng_work.chance(0.2);
        let mut target = None;
        for _ in 0..64 {
            let p = self.rng_work.index(self.publishers.len()) as u32;
            let pb = &self.publishers[p as usize];
            if pb.victim == want_victim && pb.findable(now, FINDABLE_MARGIN) {
                target = Some(p);
                break;
            }
        }
        let Some(p) = target else {
            self.counters.lookups_skipped += 1;
            return;
        };
        let mut querier = None;
        for _ in 0..16 {
            let Some(q) = self.ready.pick(&mut self.rng_work) else {
                break;
            };
            if q != self.publishers[p as usize].node {
                querier = Some(q);
                break;
            }
        }
        let Some(q) = querier else {
            self.counters.lookups_skipped += 1;
            return;
        };
        let pb = &self.publishers[p as usize];
        let levels = pb.keys.len();
        let level = 1 + self.rng_work.index(levels);
        let key = pb.keys[level - 1];
        let max = self.sc.max_results;
        // Drawn only when asked for, so runs without open lookups keep
        // their traces.
        let open =
            !pb.victim && self.sc.open_lookups > 0.0 && self.rng_work.chance(self.sc.open_lookups);
        let (filters, expected) = if open {
            let providers = self
                .publishers
                .iter()
                .filter(|o| o.keys.contains(&key) && o.findable(now, FINDABLE_MARGIN))
                .count();
            (None, providers.min(usize::from(max)) as u16)
        } else {
            let filters = Filters {
                publisher: Some(pb.identity),
                ..Filters::default()
            };
            (Some(filters), 1)
        };
        let rec = LookupRec {
            phase,
            publisher: p,
            querier: q,
            level: level as u8,
            exact: level == levels,
            victim: pb.victim,
            open,
            expected,
            issued: now,
            expect_seq: pb.seq,
            outcome: LookupOutcome::Pending,
        };
        let local = self.local_now(q);
        let Some(node) = self.nodes[q as usize].node.as_mut() else {
            return;
        };
        match node.discover(local, key, filters, max) {
            Ok(qid) => {
                let l = self.lookups.len() as u32;
                if !open {
                    let publisher = self.publishers[p as usize].identity;
                    self.hop_watches
                        .entry(q)
                        .or_default()
                        .push(super::hops::HopWatch::new(l, key, publisher));
                }
                let m = self.phase_metrics(phase, rec.class());
                m.issued += 1;
                self.lookups.push(rec);
                self.track(q, qid, Tag::Lookup(l));
            }
            Err(e) => {
                tracing::debug!(node = q, "lookup refused: {e}");
                self.counters.lookups_skipped += 1;
            }
        }
        self.after_call(q, false);
    }

    /// A query a node ran for us finished.
    pub(super) fn query_done(&mut self, i: u32, tag: Tag, result: QueryResult, stats: LookupStats) {
        match tag {
            Tag::Bootstrap => {
                let ok = matches!(result, QueryResult::Bootstrap { .. });
                self.bootstrap_done(i, ok);
            }
            Tag::Publish(p) => {
                let now = self.now;
                let pb = &mut self.publishers[p as usize];
                pb.in_flight = false;
                if let QueryResult::Publish { keys, .. } = &result {
                    pb.acked = keys.iter().map(|k| k.acked).sum();
                    pb.published_at.get_or_insert(now);
                    let n = self.counters.publishes.max(1) as f64;
                    let per_key = pb.acked as f64 / keys.len().max(1) as f64;
                    let c = &mut self.counters;
                    c.publish_acked_per_key += (per_key - c.publish_acked_per_key) / n;
                }
            }
            Tag::Lookup(l) => self.lookup_done(l, result, stats),
        }
    }

    fn lookup_done(&mut self, l: u32, result: QueryResult, stats: LookupStats) {
        let now = self.now;
        let rec = self.lookups[l as usize].clone();
        if rec.open {
            self.open_lookup_done(l, &rec, &result, stats);
            return;
        }
        let hops = self.unwatch(rec.querier, l);
        let pb = &self.publishers[rec.publisher as usize];
        let (mut found, mut stale, mut forged) = (false, false, 0);
        if let QueryResult::Discover {
            descriptors,
            rejected,
        } = &result
        {
            self.counters.rejected_in_lookups += *rejected as u64;
            for d in descriptors {
                if d.publisher != pb.identity {
                    continue;
                }
                if d.topic == pb.topic && d.payload == pb.payload && d.routing_keys == pb.keys {
                    found = true;
                    stale |= d.sequence < rec.expect_seq;
                } else {
                    forged += 1;
                }
            }
        }
        self.counters.forged_accepted_in_results += forged;
        self.lookups[l as usize].outcome = if found {
            LookupOutcome::Found
        } else {
            LookupOutcome::NotFound
        };
        let latency_us = now.duration_since(rec.issued).as_micros() as u64;
        let m = self.phase_metrics(rec.phase, rec.class());
        m.record(rec.exact, found, &stats, latency_us);
        if found {
            // Found but never in an answer: the querier held it itself.
            m.find_hops.push(u64::from(hops.unwrap_or(0)));
        }
        if stale {
            m.stale += 1;
        }
    }

    /// An open lookup ended: it succeeds with at least one genuine
    /// descriptor at its key (any publisher's), and is complete with as
    /// many as it could have had.
    fn open_lookup_done(
        &mut self,
        l: u32,
        rec: &LookupRec,
        result: &QueryResult,
        stats: LookupStats,
    ) {
        let key = self.publishers[rec.publisher as usize].keys[usize::from(rec.level) - 1];
        let (mut genuine, mut forged) = (0u64, 0u64);
        if let QueryResult::Discover {
            descriptors,
            rejected,
        } = result
        {
            self.counters.rejected_in_lookups += *rejected as u64;
            for d in descriptors {
                let Some(&p) = self.by_identity.get(&d.publisher) else {
                    continue;
                };
                let pb = &self.publishers[p as usize];
                if !d.routing_keys.contains(&key) {
                    continue;
                }
                if d.topic == pb.topic && d.payload == pb.payload && d.routing_keys == pb.keys {
                    genuine += 1;
                } else {
                    forged += 1;
                }
            }
        }
        self.counters.forged_accepted_in_results += forged;
        let found = genuine > 0;
        self.lookups[l as usize].outcome = if found {
            LookupOutcome::Found
        } else {
            LookupOutcome::NotFound
        };
        let ph = &mut self.phases[rec.phase as usize];
        ph.open_results.push(genuine);
        ph.open_expected.push(u64::from(rec.expected));
        if genuine >= u64::from(rec.expected) {
            ph.open_complete += 1;
        }
        let latency_us = self.now.duration_since(rec.issued).as_micros() as u64;
        ph.open.record(rec.exact, found, &stats, latency_us);
    }

    // --------------------------------------------------------------- replicas

    /// Counts, for every findable descriptor whose publisher is up, the live
    /// nodes holding a version of it.
    fn sample_replicas(&mut self) {
        let now = self.now;
        let mut counts = vec![0u64; self.publishers.len()];
        let far = Timestamp::from_micros(u64::MAX);
        for &i in self.up.members() {
            let Some(node) = self.nodes[i as usize].node.as_ref() else {
                continue;
            };
            for d in node.storage().store().expiring_by(far, usize::MAX) {
                if d.is_expired(now) {
                    continue;
                }
                if let Some(&p) = self.by_identity.get(&d.publisher) {
                    if self.publishers[p as usize].topic == d.topic {
                        counts[p as usize] += 1;
                    }
                }
            }
        }
        let mut s = Samples::default();
        let mut keys = 0usize;
        for (p, pb) in self.publishers.iter().enumerate() {
            if pb.findable(now, Duration::ZERO) && self.nodes[pb.node as usize].status == Status::Up
            {
                s.push(counts[p]);
                keys += pb.keys.len();
            }
        }
        if s.is_empty() {
            return;
        }
        let t = now.as_micros() as i64 - self.measure_start.as_micros() as i64;
        self.replicas.push(ReplicaSample {
            t_secs: t / 1_000_000,
            descriptors: s.len() as u64,
            mean: s.mean(),
            min: s.min(),
            p5: s.quantile(0.05),
            p50: s.quantile(0.5),
            keys_per_descriptor: keys as f64 / s.len() as f64,
        });
    }
}
