//! # mars-proto — the Sans-IO core of MARS
//!
//! MARS (Mesh Agent Routing Standard) is a Kademlia DHT over QUIC on which
//! agents publish signed *capability descriptors* and discover each other by
//! hierarchical routing key. This crate holds the protocol itself and nothing
//! else: no sockets, no async runtime, no clock reads, no global randomness.
//! Time is always an argument ([`Timestamp`]); bytes in, values out.
//!
//! What is here:
//! - [`Hash`](struct@Hash), [`NodeId`], [`Identity`], [`Keypair`] and DIDs ([`Identity::did`],
//!   [`Identity::from_did`]).
//! - [`Descriptor`], its [`DescriptorBuilder`], and [`ValidDescriptor`] — the
//!   only form a descriptor may take once it is trusted.
//! - [`schema`]: well-known schema hashes, routing keys and typed payloads.
//! - [`wire`]: the 24-byte frame header, the eight messages and a strict CBOR
//!   codec that refuses anything the spec forbids with a typed error.
//!
//! ```
//! use mars_proto::{DescriptorBuilder, Keypair, Timestamp, schema};
//!
//! let key = Keypair::from_secret_bytes(&[7; 32]);
//! let now = Timestamp::from_secs(1_700_000_000);
//! let descriptor = DescriptorBuilder::new(schema::CORE_CAPABILITY.hash(), now)
//!     .topic("my-agent")
//!     .payload(b"hello".to_vec())
//!     .routing_keys(schema::hierarchical_keys("compute/inference"))
//!     .sign(&key)
//!     .unwrap();
//! let valid = descriptor.validate(now).unwrap();
//! assert_eq!(valid.publisher, key.identity());
//! ```
#![deny(missing_docs)]
// No unsafe code, except the two calls heed marks unsafe to open an LMDB
// environment (store/lmdb/env.rs, feature "lmdb"), each under an #[allow]
// with its argument; `forbid` would not let that one module opt in.
#![cfg_attr(not(feature = "lmdb"), forbid(unsafe_code))]
#![cfg_attr(feature = "lmdb", deny(unsafe_code))]

pub mod address_policy;
mod config;
mod descriptor;
mod did;
mod hash;
mod identity;
mod key_cache;
mod lookup;
pub mod node;
mod node_id;
mod node_id_cache;
#[cfg(feature = "quic")]
pub mod quic;
mod rng;
pub mod routing;
pub mod schema;
pub mod store;
mod time;
pub mod wire;

pub use config::Config;
pub use descriptor::{
    Descriptor, DescriptorBuilder, SignatureCache, ValidDescriptor, ValidationError,
    limits as descriptor_limits, validate_batch, validate_batch_cached, validate_batch_with,
};
pub use did::DidError;
pub use hash::{Hash, HashAlgorithm};
pub use identity::{Identity, Keypair, Signature};
pub use key_cache::KeyCache;
pub use lookup::LookupStats;
pub use node_id::NodeId;
pub use node_id_cache::NodeIdCache;
pub use time::Timestamp;
