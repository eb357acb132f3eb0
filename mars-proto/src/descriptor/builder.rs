//! Building and signing new descriptors.

use super::{Descriptor, ValidationError, limits};
use crate::hash::Hash;
use crate::identity::{Keypair, Signature};
use crate::time::Timestamp;

/// Builds a descriptor and signs it, filling `id` and `signature`.
///
/// The static rules (TTL range, routing key count, payload and topic size)
/// are checked at [`sign`](DescriptorBuilder::sign) so a publisher learns of
/// a mistake before the network refuses it.
#[derive(Debug, Clone)]
pub struct DescriptorBuilder {
    schema_hash: Hash,
    topic: String,
    payload: Vec<u8>,
    timestamp: Timestamp,
    sequence: u64,
    ttl: u32,
    routing_keys: Vec<Hash>,
}

impl DescriptorBuilder {
    /// A descriptor of `schema_hash` published at `timestamp`, with an empty
    /// topic and payload, sequence 0, the default TTL (1 h) and no routing
    /// keys yet.
    pub fn new(schema_hash: Hash, timestamp: Timestamp) -> Self {
        DescriptorBuilder {
            schema_hash,
            topic: String::new(),
            payload: Vec::new(),
            timestamp,
            sequence: 0,
            ttl: limits::DEFAULT_TTL_SECS,
            routing_keys: Vec::new(),
        }
    }

    /// Sets the topic.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: Vec<u8>) -> Self {
        self.payload = payload;
        self
    }

    /// Sets the sequence number.
    pub fn sequence(mut self, sequence: u64) -> Self {
        self.sequence = sequence;
        self
    }

    /// Sets the TTL in seconds.
    pub fn ttl(mut self, ttl_secs: u32) -> Self {
        self.ttl = ttl_secs;
        self
    }

    /// Sets the routing keys.
    pub fn routing_keys(mut self, keys: Vec<Hash>) -> Self {
        self.routing_keys = keys;
        self
    }

    /// Adds one routing key.
    pub fn routing_key(mut self, key: Hash) -> Self {
        self.routing_keys.push(key);
        self
    }

    /// Checks the static rules, computes the id and signs it.
    pub fn sign(self, key: &Keypair) -> Result<Descriptor, ValidationError> {
        let mut d = Descriptor {
            schema_hash: self.schema_hash,
            topic: self.topic,
            payload: self.payload,
            publisher: key.identity(),
            timestamp: self.timestamp,
            sequence: self.sequence,
            ttl: self.ttl,
            routing_keys: self.routing_keys,
            id: Hash::from_blake3_digest([0; 32]),
            signature: Signature::from_bytes([0; 64]),
        };
        super::validate::check_static_rules(&d)?;
        d.id = d.compute_id();
        d.signature = key.sign(d.id.digest());
        Ok(d)
    }
}
