//! The hub's settings: `hub.toml`, every key optional, and the defaults
//! that make `mars hub` alone a working local hub.
//!
//! `examples/hub.toml` lists every key with its default and why; keep the
//! two in step (a test parses the example and compares it with the
//! defaults).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use mars_proto::store::StoreConfig;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a hub (unknown keys included).
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and what.
        source: Box<toml::de::Error>,
    },
    /// A value is out of its range.
    #[error("invalid setting `{key}`: {why}")]
    Invalid {
        /// The key, as written in hub.toml.
        key: &'static str,
        /// Why.
        why: String,
    },
}

/// Everything a hub needs to start. `Default` is the local hub of the
/// README: 127.0.0.1:4433, data in `./mars-data`, metrics on
/// 127.0.0.1:9433.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Address peers should dial (`host:port`), when it differs from
    /// `listen` (NAT, 0.0.0.0). Default: the bound address.
    pub advertise: Option<String>,
    /// Where the store, the key and the saved peers live.
    pub data_dir: PathBuf,
    /// The hub's key file; created (mode 0600) on first start. Default
    /// `<data_dir>/hub.key`.
    pub key_file: Option<PathBuf>,
    /// Nodes to join through (`host:port`). Saved peers from the last run
    /// are used as well, so a restarted hub rejoins without them.
    pub seeds: Vec<String>,
    /// Where `/metrics` and `/health` are served over HTTP; `None` turns
    /// them off.
    pub metrics: Option<SocketAddr>,
    /// Which peer addresses are acceptable: `"public"` refuses loopback,
    /// private, link-local, CGN and ULA addresses (a hub on the internet),
    /// `"any"` accepts them (a lab or a LAN), `"auto"` picks `any` when
    /// `listen` is itself loopback or private.
    pub address_policy: AddressPolicyChoice,
    /// Seconds a shutdown waits for requests in flight before closing.
    pub shutdown_grace_secs: u64,
    /// Storage limits.
    pub storage: StorageSettings,
    /// Abuse limits.
    pub limits: LimitSettings,
    /// Hub peering.
    pub peering: PeeringSettings,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            advertise: None,
            data_dir: PathBuf::from("./mars-data"),
            key_file: None,
            seeds: Vec::new(),
            metrics: Some(SocketAddr::from(([127, 0, 0, 1], 9433))),
            address_policy: AddressPolicyChoice::Auto,
            shutdown_grace_secs: 5,
            storage: StorageSettings::default(),
            limits: LimitSettings::default(),
            peering: PeeringSettings::default(),
        }
    }
}

/// See [`HubConfig::address_policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AddressPolicyChoice {
    /// `any` when `listen` is loopback or private, else `public`.
    Auto,
    /// Only globally routable peer addresses.
    Public,
    /// Any unicast address.
    Any,
}

/// `[storage]`: how much the hub keeps.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// Size of the LMDB map in MiB: the most the store file may grow to.
    /// A full map refuses STOREs with "storage full", it does not crash.
    pub map_size_mib: u64,
    /// Most descriptors held.
    pub max_descriptors: usize,
    /// Most bytes held (the store's own accounting, below the map size).
    pub max_bytes: u64,
    /// Most descriptors at one routing key.
    pub max_per_key: usize,
    /// STOREs accepted per publisher per minute.
    pub stores_per_minute: u32,
    /// Decoded descriptors kept in memory for fast answers.
    pub cache_entries: usize,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            map_size_mib: 1024,
            max_descriptors: StoreConfig::DEFAULT_MAX_DESCRIPTORS,
            max_bytes: StoreConfig::DEFAULT_MAX_BYTES,
            max_per_key: StoreConfig::DEFAULT_MAX_PER_KEY,
            stores_per_minute: StoreConfig::DEFAULT_STORES_PER_MINUTE,
            cache_entries: 65_536,
        }
    }
}

/// `[limits]`: what one peer may cost the hub.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Requests per second from one IP address (IPv6: one /64).
    pub requests_per_ip_per_sec: u32,
    /// Requests one IP may send in a burst.
    pub request_burst_per_ip: u32,
    /// Requests per second from one identity.
    pub requests_per_identity_per_sec: u32,
    /// Requests one identity may send in a burst.
    pub request_burst_per_identity: u32,
    /// QUIC connections at once, in total.
    pub max_connections: usize,
    /// QUIC connections at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Concurrent requests (bidirectional streams) per connection.
    pub max_streams_per_connection: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            requests_per_ip_per_sec: 200,
            request_burst_per_ip: 400,
            requests_per_identity_per_sec: 100,
            request_burst_per_identity: 200,
            max_connections: 4096,
            max_connections_per_ip: 32,
            max_streams_per_connection: 100,
        }
    }
}

/// `[peering]`: how the hub finds and keeps other hubs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeeringSettings {
    /// Publish our `infrastructure/hub` descriptor and keep connections to
    /// the other hubs found at that key.
    pub enabled: bool,
    /// Seconds between searches for other hubs.
    pub discover_interval_secs: u64,
    /// Seconds between pings to each known hub (below the 30 s QUIC idle
    /// timeout, so connections stay up).
    pub ping_interval_secs: u64,
    /// Most hubs kept.
    pub max_hubs: usize,
}

impl Default for PeeringSettings {
    fn default() -> Self {
        PeeringSettings {
            enabled: true,
            discover_interval_secs: 300,
            ping_interval_secs: 20,
            max_hubs: 1000,
        }
    }
}

impl HubConfig {
    /// Reads `path` (keys not in the file keep their defaults).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The key file in use.
    pub fn key_path(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("hub.key"))
    }

    /// The LMDB environment's directory.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("store")
    }

    /// Whether peers at private and loopback addresses are acceptable.
    pub fn allows_private_addresses(&self) -> bool {
        match self.address_policy {
            AddressPolicyChoice::Any => true,
            AddressPolicyChoice::Public => false,
            AddressPolicyChoice::Auto => crate::is_private_ip(self.listen.ip()),
        }
    }

    /// Checks ranges that the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, why: &str| {
            Err(ConfigError::Invalid {
                key,
                why: why.to_owned(),
            })
        };
        let min_map = mars_proto::store::MIN_MAP_SIZE.div_ceil(1 << 20);
        if self.storage.map_size_mib < min_map {
            return invalid(
                "storage.map_size_mib",
                &format!("must be at least {min_map} (LMDB's smallest useful map)"),
            );
        }
        // On disk a descriptor takes about 1.5× what the store charges it
        // (record plus index entries); twice leaves room for LMDB's page
        // reuse, so the store's own limit is reached before the map fills.
        let needed = self.storage.max_bytes.saturating_mul(2).div_ceil(1 << 20);
        if needed > self.storage.map_size_mib {
            return invalid(
                "storage.max_bytes",
                &format!(
                    "needs a map of at least {needed} MiB (twice max_bytes); raise storage.map_size_mib or lower max_bytes"
                ),
            );
        }
        if self.limits.max_connections == 0 || self.limits.max_connections_per_ip == 0 {
            return invalid("limits.max_connections", "must be at least 1");
        }
        if self.peering.enabled
            && (self.peering.ping_interval_secs == 0 || self.peering.discover_interval_secs == 0)
        {
            return invalid("peering", "intervals must be at least 1 second");
        }
        if let Some(a) = &self.advertise {
            if a.rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            {
                return invalid("advertise", "expected host:port");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(HubConfig::from_toml("").unwrap(), HubConfig::default());
        HubConfig::default().validate().unwrap();
    }

    #[test]
    fn the_example_parses_and_documents_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hub.toml");
        let example = HubConfig::from_file(&path).unwrap();
        // The example spells out every default (seeds aside, which it
        // shows commented out).
        assert_eq!(example, HubConfig::default());
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let e = HubConfig::from_toml("[storage]\nmap_size = 3\n").unwrap_err();
        assert!(e.to_string().contains("map_size"), "{e}");
    }

    #[test]
    fn sections_override_defaults() {
        let c = HubConfig::from_toml(
            "listen = \"0.0.0.0:5000\"\nseeds = [\"hub.example:4433\"]\n\
             [storage]\nmap_size_mib = 64\nmax_bytes = 1000\n[peering]\nenabled = false\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 5000);
        assert_eq!(c.storage.map_size_mib, 64);
        assert_eq!(
            c.storage.max_descriptors,
            StoreConfig::DEFAULT_MAX_DESCRIPTORS
        );
        assert!(!c.peering.enabled);
        assert!(!c.allows_private_addresses());
        c.validate().unwrap();
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let c = HubConfig::from_toml("[storage]\nmap_size_mib = 8\nmax_bytes = 5000000\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("storage.max_bytes"), "{e}");
    }
}
