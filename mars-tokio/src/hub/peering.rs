//! Hub peering: every hub announces itself with an `infrastructure/hub`
//! descriptor and keeps a connection to every other hub it finds at that
//! key, so one hub is a path to the whole mesh.
//!
//! The announcement's payload is the `core/capability` CBOR map (type
//! `infrastructure/hub`, endpoint `quic` + `host:port`), so any client that
//! reads capabilities reads it too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use mars_proto::schema::{self, Capability, Endpoint, TypePath};
use mars_proto::wire::Filters;
use mars_proto::{Descriptor, DescriptorBuilder, Identity, Keypair, Timestamp, ValidDescriptor};

use super::config::PeeringSettings;
use crate::NodeHandle;

/// The type path (and topic) of hub announcements.
pub const HUB_TYPE: &str = "infrastructure/hub";

/// Lifetime of an announcement; the node republishes it at half of it.
const ANNOUNCEMENT_TTL_SECS: u32 = 3600;

/// Pings a known hub may miss in a row before it is forgotten (until it is
/// found again at the key).
const MAX_MISSED_PINGS: u32 = 3;

/// This hub's signed announcement: reach me over QUIC at `addr`.
pub fn announcement(
    key: &Keypair,
    addr: &str,
    now: Timestamp,
) -> Result<Descriptor, mars_proto::ValidationError> {
    let path = TypePath::new(HUB_TYPE).expect("a valid type path");
    let cap = Capability::new(path, Endpoint::structured("quic", addr));
    DescriptorBuilder::new(schema::INFRASTRUCTURE_HUB.hash(), now)
        .topic(HUB_TYPE)
        .payload(cap.to_cbor())
        .routing_keys(vec![schema::routing_key(HUB_TYPE)])
        .ttl(ANNOUNCEMENT_TTL_SECS)
        .sequence(now.as_micros())
        .sign(key)
}

/// The address a hub announcement gives, if it is one and it parses.
pub fn announced_addr(d: &ValidDescriptor) -> Option<SocketAddr> {
    if d.schema_hash != schema::INFRASTRUCTURE_HUB.hash() {
        return None;
    }
    let cap = Capability::decode(&d.payload).ok()?;
    if cap.endpoint().protocol().is_some_and(|p| p != "quic") {
        return None;
    }
    cap.endpoint().address().parse().ok()
}

/// A hub we know of.
#[derive(Debug, Clone)]
struct KnownHub {
    addr: SocketAddr,
    missed: u32,
}

/// The other hubs, by identity, and how their pings went.
#[derive(Debug, Default)]
pub struct HubTable {
    hubs: BTreeMap<Identity, KnownHub>,
}

impl HubTable {
    /// Hubs known.
    pub fn len(&self) -> usize {
        self.hubs.len()
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.hubs.is_empty()
    }

    /// Takes in what a search at the hub key found (ourselves excluded).
    /// Returns how many hubs are new.
    fn learn(&mut self, me: Identity, found: &[ValidDescriptor], max: usize) -> usize {
        let mut new = 0;
        for d in found {
            if d.publisher == me {
                continue;
            }
            let Some(addr) = announced_addr(d) else {
                debug!(publisher = %d.publisher.did(), "hub announcement without a usable address");
                continue;
            };
            let room = self.hubs.len() < max;
            match self.hubs.get_mut(&d.publisher) {
                Some(h) => h.addr = addr,
                None if room => {
                    self.hubs.insert(d.publisher, KnownHub { addr, missed: 0 });
                    new += 1;
                }
                None => {}
            }
        }
        new
    }
}

/// Runs peering until `stop` turns true: announce, then search for hubs
/// every `discover_interval_secs` and ping each every `ping_interval_secs`.
/// `count` is kept at the number of hubs known (for /health and tests).
pub async fn run(
    node: NodeHandle,
    key: Keypair,
    advertised: String,
    settings: PeeringSettings,
    count: watch::Sender<usize>,
    mut stop: watch::Receiver<bool>,
) {
    // A ping to a hub that just went away can take a QUIC idle timeout:
    // stopping must not wait for it.
    tokio::select! {
        _ = stop.changed() => {}
        () = peer(node, key, advertised, settings, count) => {}
    }
}

async fn peer(
    node: NodeHandle,
    key: Keypair,
    advertised: String,
    settings: PeeringSettings,
    count: watch::Sender<usize>,
) {
    let me = key.identity();
    match announcement(&key, &advertised, crate::unix_now()) {
        Ok(d) => match node.publish(d).await {
            Ok(keys) => {
                let acked: usize = keys.iter().map(|k| k.acked).sum();
                info!(replicas = acked, "announced this hub at {HUB_TYPE}");
            }
            Err(e) => warn!("could not announce this hub: {e}"),
        },
        Err(e) => warn!("could not sign the hub announcement: {e}"),
    }
    let mut table = HubTable::default();
    let mut discover = tokio::time::interval(Duration::from_secs(settings.discover_interval_secs));
    let mut ping = tokio::time::interval(Duration::from_secs(settings.ping_interval_secs));
    discover.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = discover.tick() => {
                let filters = Filters {
                    schema_hash: Some(schema::INFRASTRUCTURE_HUB.hash()),
                    ..Filters::default()
                };
                match node.discover(schema::routing_key(HUB_TYPE), Some(filters), 100).await {
                    Ok(found) => {
                        let new = table.learn(me, &found, settings.max_hubs);
                        if new > 0 {
                            info!(new, known = table.len(), "found other hubs");
                            // Connect to the new ones at once.
                            ping.reset_immediately();
                        }
                    }
                    Err(e) => debug!("hub search failed: {e}"),
                }
            }
            _ = ping.tick() => ping_all(&node, &mut table).await,
        }
        count.send_replace(table.len());
    }
}

/// Pings every known hub at once (one dead hub must not delay the
/// others), forgetting those that missed [`MAX_MISSED_PINGS`] in a row.
async fn ping_all(node: &NodeHandle, table: &mut HubTable) {
    let mut pings = tokio::task::JoinSet::new();
    for (id, h) in &table.hubs {
        let (node, id, addr) = (node.clone(), *id, h.addr);
        pings.spawn(async move {
            let ok = match node.ping(addr).await {
                Ok(answered) if answered == id => true,
                Ok(other) => {
                    warn!(%addr, expected = %id.did(), answered = %other.did(),
                        "a different node answers at a hub's address");
                    false
                }
                Err(e) => {
                    debug!(%addr, "hub ping failed: {e}");
                    false
                }
            };
            (id, addr, ok)
        });
    }
    while let Some(Ok((id, addr, ok))) = pings.join_next().await {
        if let Some(h) = table.hubs.get_mut(&id) {
            h.missed = if ok { 0 } else { h.missed + 1 };
            if h.missed >= MAX_MISSED_PINGS {
                info!(hub = %id.did(), %addr, "hub unreachable; forgetting it until it is found again");
                table.hubs.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_round_trips_its_address() {
        let key = Keypair::from_secret_bytes(&[9; 32]);
        let now = Timestamp::from_secs(1_700_000_000);
        let d = announcement(&key, "203.0.113.7:4433", now).unwrap();
        let v = d.validate(now).unwrap();
        assert_eq!(
            announced_addr(&v),
            Some("203.0.113.7:4433".parse().unwrap())
        );
        assert_eq!(v.routing_keys, vec![schema::routing_key(HUB_TYPE)]);
    }

    #[test]
    fn table_skips_itself_and_is_bounded() {
        let now = Timestamp::from_secs(1_700_000_000);
        let me = Keypair::from_secret_bytes(&[1; 32]);
        let found: Vec<ValidDescriptor> = (1..=5u8)
            .map(|i| {
                let k = Keypair::from_secret_bytes(&[i; 32]);
                announcement(&k, &format!("10.0.0.{i}:4433"), now)
                    .unwrap()
                    .validate(now)
                    .unwrap()
            })
            .collect();
        let mut t = HubTable::default();
        assert_eq!(t.learn(me.identity(), &found, 3), 3);
        assert_eq!(t.len(), 3);
        assert!(!t.hubs.contains_key(&me.identity()));
    }
}
