//! The workload: publishers with hierarchical capability paths, and the
//! lookups that look for them.
//!
//! Every publisher publishes one `core/capability` descriptor under a path
//! such as `compute/text/gpu`, so it is stored under three routing keys
//! (`compute`, `compute/text`, `compute/text/gpu`): the top-level keys are
//! popular (hundreds of providers), the leaves nearly private. A lookup
//! picks a published descriptor and a level of its path — the exact (leaf)
//! key or one of its prefixes — and discovers that key filtered by the
//! publisher: it succeeds when the publisher's descriptor comes back.
//! Victim publishers (the eclipse targets) get a path of their own, so
//! their leaf key is theirs alone.

use mars_proto::{Hash, Identity, Timestamp, schema};

use crate::metrics::LookupClass;
use crate::rng::SimRng;

/// Top-level capability families.
pub const FAMILIES: [&str; 8] = [
    "compute", "data", "storage", "tools", "agents", "media", "search", "finance",
];
/// Second-level kinds.
pub const KINDS: [&str; 6] = ["text", "image", "audio", "vector", "graph", "stream"];
/// Third-level variants.
pub const VARIANTS: [&str; 8] = ["small", "medium", "large", "gpu", "cpu", "tpu", "eu", "us"];

/// A random capability path: two levels (30 %) or three (70 %).
pub fn random_path(rng: &mut SimRng) -> String {
    let f = FAMILIES[rng.index(FAMILIES.len())];
    let k = KINDS[rng.index(KINDS.len())];
    if rng.chance(0.3) {
        format!("{f}/{k}")
    } else {
        let v = VARIANTS[rng.index(VARIANTS.len())];
        format!("{f}/{k}/{v}")
    }
}

/// Longest capability path [`check_path`] accepts, in bytes.
pub const MAX_PATH_LEN: usize = 200;

/// Whether `path` can be published under: 1 to
/// [`MAX_ROUTING_KEYS`](mars_proto::descriptor_limits::MAX_ROUTING_KEYS)
/// non-empty levels separated by `/` (one routing key per level), at most
/// [`MAX_PATH_LEN`] bytes of ASCII letters, digits and `-_.:+@`.
pub fn check_path(path: &str) -> Result<(), String> {
    let max_levels = mars_proto::descriptor_limits::MAX_ROUTING_KEYS;
    if path.len() > MAX_PATH_LEN {
        return Err(format!("'{path}' is longer than {MAX_PATH_LEN} bytes"));
    }
    let levels = path.split('/').count();
    if levels > max_levels {
        return Err(format!(
            "'{path}' has {levels} levels; a descriptor has at most {max_levels} routing keys"
        ));
    }
    if path.split('/').any(str::is_empty) {
        return Err(format!(
            "'{path}': empty level (write e.g. compute/inference/text)"
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "-_.:+@/".contains(c)))
    {
        return Err(format!(
            "'{path}': '{c}' is not allowed (letters, digits, -_.:+@ and / between levels)"
        ));
    }
    Ok(())
}

/// The path of victim number `v`: a leaf no one else publishes under.
pub fn victim_path(v: usize) -> String {
    format!("finance/payments/victim-{v}")
}

/// One publisher and what the simulator knows of its descriptor.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// The node that publishes.
    pub node: u32,
    /// Its identity.
    pub identity: Identity,
    /// Its capability path.
    pub path: String,
    /// Routing keys of the path, shortest prefix first (index = level − 1).
    pub keys: Vec<Hash>,
    /// The descriptor's topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// An eclipse target.
    pub victim: bool,
    /// The latest sequence published (republishes included).
    pub seq: u64,
    /// When its first publish completed.
    pub published_at: Option<Timestamp>,
    /// When the latest version known expires.
    pub expires_at: Timestamp,
    /// A publish command is in flight.
    pub in_flight: bool,
    /// Replicas acknowledged per key by the latest publish, summed.
    pub acked: usize,
}

impl Publisher {
    /// A publisher at `node` under `path`.
    pub fn new(node: u32, identity: Identity, path: String, victim: bool, addr: &str) -> Self {
        let keys = schema::hierarchical_keys(&path);
        let topic = format!("agent-{node}");
        let payload = format!(
            "{{\"endpoint\":\"quic://{addr}\",\"agent\":\"{topic}\",\"capability\":\"{path}\",\"version\":\"1.0\"}}"
        )
        .into_bytes();
        Publisher {
            node,
            identity,
            path,
            keys,
            topic,
            payload,
            victim,
            seq: 0,
            published_at: None,
            expires_at: Timestamp::ZERO,
            in_flight: false,
            acked: 0,
        }
    }

    /// Whether a lookup issued at `now` can expect to find it: published
    /// and not expiring within `margin`.
    pub fn findable(&self, now: Timestamp, margin: std::time::Duration) -> bool {
        self.published_at.is_some() && self.expires_at > now.saturating_add(margin)
    }
}

/// What became of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupOutcome {
    /// Still running.
    Pending,
    /// The publisher's descriptor came back.
    Found,
    /// It did not.
    NotFound,
    /// The querier went down before the answer.
    Aborted,
}

/// One lookup.
#[derive(Debug, Clone)]
pub struct LookupRec {
    /// The phase it was issued in.
    pub phase: u16,
    /// The publisher looked for.
    pub publisher: u32,
    /// The node that looks.
    pub querier: u32,
    /// Path level looked up (1 = top-level prefix).
    pub level: u8,
    /// Whether the level is the leaf (exact) key.
    pub exact: bool,
    /// Whether the publisher is a victim.
    pub victim: bool,
    /// An open lookup: no publisher filter; `publisher` only chose the key.
    pub open: bool,
    /// For an open lookup, the genuine descriptors it could return:
    /// `max_results`, or the publishers findable at the key if fewer.
    pub expected: u16,
    /// When it was issued.
    pub issued: Timestamp,
    /// The latest sequence the publisher had published when it was issued.
    pub expect_seq: u64,
    /// What became of it.
    pub outcome: LookupOutcome,
}

impl LookupRec {
    /// Which lookups it is counted with.
    pub fn class(&self) -> LookupClass {
        if self.open {
            LookupClass::Open
        } else if self.victim {
            LookupClass::Victim
        } else {
            LookupClass::Regular
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_have_two_or_three_levels() {
        let mut rng = SimRng::new(2);
        for _ in 0..100 {
            let p = random_path(&mut rng);
            let levels = p.split('/').count();
            assert!((2..=3).contains(&levels), "{p}");
            assert!(check_path(&p).is_ok(), "{p}");
        }
        assert_eq!(schema::hierarchical_keys(&victim_path(1)).len(), 3);
        assert!(check_path(&victim_path(1)).is_ok());
    }

    #[test]
    fn paths_are_checked_for_levels_and_characters() {
        assert!(check_path("compute").is_ok());
        assert!(check_path("compute/inference/text-generation").is_ok());
        assert!(check_path("a/b/c/d/e/f/g/h").is_ok());
        assert!(
            check_path("a/b/c/d/e/f/g/h/i")
                .unwrap_err()
                .contains("9 levels")
        );
        assert!(check_path("").is_err());
        assert!(check_path("/compute").is_err());
        assert!(check_path("compute/").is_err());
        assert!(check_path("a//b").is_err());
        assert!(check_path("compute/text gen").unwrap_err().contains("' '"));
        assert!(check_path("compute/\"x").is_err());
        assert!(check_path(&"a".repeat(MAX_PATH_LEN + 1)).is_err());
    }
}
