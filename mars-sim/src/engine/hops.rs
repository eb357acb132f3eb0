//! Hops to the value, measured on the wire.
//!
//! A node reports a lookup's `rounds` as the largest hop of any peer that
//! answered before the lookup converged on the K closest nodes. How many
//! sequential hops it took to *reach a node holding the descriptor* — the
//! Kademlia hop count of a FIND_VALUE, and what a client that stops at the
//! first holder (the reference client does) waits for — is not among its
//! counters, so the engine measures it from the frames the querier sends
//! and receives, with the node's own rule: a peer asked without having been
//! named in this lookup is at hop 1; a peer first named by a hop-h answer
//! is at hop h + 1. The first answer carrying the publisher's genuine
//! descriptor gives the lookup's hop count (0 when the querier held it).

use std::collections::BTreeMap;

use mars_proto::wire::{DecodeLimits, FindValueResult, Frame, Message};
use mars_proto::{Hash, Identity, Timestamp};

use super::{Body, Sim};

/// One watched lookup.
#[derive(Debug)]
pub(crate) struct HopWatch {
    lookup: u32,
    key: Hash,
    publisher: Identity,
    /// Hop of every peer asked or named so far.
    hops: BTreeMap<Identity, u32>,
    /// Hop of the first answer with the descriptor.
    pub(crate) found: Option<u32>,
}

impl HopWatch {
    pub(crate) fn new(lookup: u32, key: Hash, publisher: Identity) -> Self {
        HopWatch {
            lookup,
            key,
            publisher,
            hops: BTreeMap::new(),
            found: None,
        }
    }
}

const FIND_VALUE: u8 = 0x04;

impl Sim {
    /// Querier `i` sends request `id` carrying `frame` to `to`.
    pub(super) fn watch_request(&mut self, i: u32, id: u64, to: Option<Identity>, frame: &[u8]) {
        if frame.get(3) != Some(&FIND_VALUE) {
            return;
        }
        let Some(watches) = self.hop_watches.get_mut(&i) else {
            return;
        };
        let Ok(f) = Frame::decode_request(frame, &DecodeLimits::default()) else {
            return;
        };
        let Message::FindValue(q) = f.message else {
            return;
        };
        let publisher = q.filters.as_ref().and_then(|f| f.publisher);
        let Some(w) = watches
            .iter_mut()
            .find(|w| w.key == q.key && Some(w.publisher) == publisher)
        else {
            return;
        };
        let hop = match to {
            Some(peer) => *w.hops.entry(peer).or_insert(1),
            None => 1,
        };
        self.hop_in_flight.insert((i, id), (w.lookup, hop));
    }

    /// A response to request `id` of querier `i` arrives.
    pub(super) fn watch_response(&mut self, i: u32, id: u64, body: &Body, now: Timestamp) {
        let Some((lookup, hop)) = self.hop_in_flight.remove(&(i, id)) else {
            return;
        };
        let Body::Frame(frame) = body else {
            return;
        };
        let limits = DecodeLimits {
            max_descriptors: 1_000,
            ..DecodeLimits::default()
        };
        let Ok(f) = Frame::decode_response(frame, &limits) else {
            return;
        };
        let Some(w) = self
            .hop_watches
            .get_mut(&i)
            .and_then(|ws| ws.iter_mut().find(|w| w.lookup == lookup))
        else {
            return;
        };
        match f.message {
            Message::FindValueResult(FindValueResult::Nodes(nodes)) => {
                for n in nodes {
                    w.hops.entry(n.identity).or_insert(hop + 1);
                }
            }
            Message::FindValueResult(FindValueResult::Descriptors(ds)) => {
                let Some(&p) = self.by_identity.get(&w.publisher) else {
                    return;
                };
                let pb = &self.publishers[p as usize];
                let genuine = ds.iter().any(|d| {
                    let expires = d
                        .timestamp
                        .min(now)
                        .saturating_add(std::time::Duration::from_secs(u64::from(d.ttl)));
                    d.publisher == pb.identity
                        && d.payload == pb.payload
                        && d.topic == pb.topic
                        && expires > now
                });
                if genuine {
                    w.found = Some(w.found.map_or(hop, |f| f.min(hop)));
                }
            }
            _ => {}
        }
    }

    /// Stops watching `lookup` of querier `i`; its hop count, if it found.
    pub(super) fn unwatch(&mut self, i: u32, lookup: u32) -> Option<u32> {
        let ws = self.hop_watches.get_mut(&i)?;
        let pos = ws.iter().position(|w| w.lookup == lookup)?;
        let w = ws.swap_remove(pos);
        if ws.is_empty() {
            self.hop_watches.remove(&i);
        }
        let stale: Vec<(u32, u64)> = self
            .hop_in_flight
            .range((i, 0)..=(i, u64::MAX))
            .filter(|(_, (l, _))| *l == lookup)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            self.hop_in_flight.remove(&k);
        }
        w.found
    }

    /// Querier `i` went down: its watches go.
    pub(super) fn unwatch_all(&mut self, i: u32) {
        self.hop_watches.remove(&i);
        let gone: Vec<(u32, u64)> = self
            .hop_in_flight
            .range((i, 0)..=(i, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            self.hop_in_flight.remove(&k);
        }
    }
}
