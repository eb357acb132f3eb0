//! Publishing: our own descriptors (republished at TTL/2 until withdrawn)
//! and, for a publish proxy, other publishers' descriptors replicated to the
//! K closest nodes of each routing key.

use std::sync::Arc;
use std::time::Duration;

use super::client::QueryKind;
use super::{CommandError, Node, QueryId};
use crate::descriptor::{Descriptor, DescriptorBuilder, ValidDescriptor};
use crate::hash::Hash;
use crate::time::Timestamp;

/// One of our descriptors that we keep alive.
#[derive(Debug)]
pub(super) struct OwnPublication {
    pub(super) current: Descriptor,
    pub(super) republish_at: Timestamp,
}

impl Node {
    /// Publishes `descriptor`: one lookup per routing key, then STORE at the
    /// K closest nodes of each. The result reports replicas per key. A
    /// descriptor signed with this node's key is republished at TTL/2 (new
    /// timestamp, sequence + 1, re-signed) until
    /// [`unpublish`](Node::unpublish) or [`revoke`](Node::revoke).
    pub fn publish(
        &mut self,
        now: Timestamp,
        descriptor: Descriptor,
    ) -> Result<QueryId, CommandError> {
        let valid = descriptor.validate_cached(
            now,
            self.config.signature_cache.as_ref(),
            Some(&mut self.key_cache),
        )?;
        self.check_query_room()?;
        if valid.publisher == self.identity {
            let key = (valid.schema_hash, valid.topic.clone());
            let republish_at = now.saturating_add(half_ttl(valid.ttl));
            self.own.insert(
                key,
                OwnPublication {
                    current: valid.descriptor().clone(),
                    republish_at,
                },
            );
        }
        self.start_publish(now, Arc::new(valid), true, false, false)
    }

    /// Stops republishing one of our descriptors (it then expires at its TTL).
    pub fn unpublish(&mut self, id: &Hash) -> Result<(), CommandError> {
        let before = self.own.len();
        self.own.retain(|_, o| o.current.id != *id);
        if self.own.len() == before {
            return Err(CommandError::NotPublished(*id));
        }
        Ok(())
    }

    /// Withdraws one of our descriptors everywhere: stops republishing it and
    /// publishes a signed `core/revocation` for it to the same routing keys,
    /// which makes every storing node drop it.
    pub fn revoke(&mut self, now: Timestamp, id: &Hash) -> Result<QueryId, CommandError> {
        let target = self
            .own
            .values()
            .find(|o| o.current.id == *id)
            .map(|o| o.current.clone())
            .ok_or(CommandError::NotPublished(*id))?;
        use crate::schema::{Revocation, RevocationReason};
        let revocation = Revocation::new(target.id, RevocationReason::Withdrawn).sign(
            &target,
            &self.keypair,
            now,
            target.sequence,
        )?;
        let valid = revocation.validate_cached(
            now,
            self.config.signature_cache.as_ref(),
            Some(&mut self.key_cache),
        )?;
        self.check_query_room()?;
        self.own.retain(|_, o| o.current.id != *id);
        self.storage.remove(id);
        self.start_publish(now, Arc::new(valid), true, false, false)
    }

    fn start_publish(
        &mut self,
        now: Timestamp,
        descriptor: Arc<ValidDescriptor>,
        store_locally: bool,
        republish: bool,
        internal: bool,
    ) -> Result<QueryId, CommandError> {
        let keys: Vec<Hash> = descriptor.routing_keys.clone();
        let kind = QueryKind::Publish {
            descriptor,
            store_locally,
            republish,
        };
        self.start_lookup_query(now, kind, internal, keys, Vec::new())
    }

    /// Republishes our descriptors whose time has come.
    pub(super) fn republish_due(&mut self, now: Timestamp) {
        let due: Vec<(Hash, String)> = self
            .own
            .iter()
            .filter(|(_, o)| o.republish_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if self.check_query_room().is_err() {
                return; // try again at the next timeout
            }
            let Some(own) = self.own.get(&key) else {
                continue;
            };
            let old = &own.current;
            let next = DescriptorBuilder::new(old.schema_hash, now)
                .topic(old.topic.clone())
                .payload(old.payload.clone())
                .sequence(old.sequence.saturating_add(1))
                .ttl(old.ttl)
                .routing_keys(old.routing_keys.clone())
                .sign(&self.keypair)
                .and_then(|d| {
                    d.validate_cached(
                        now,
                        self.config.signature_cache.as_ref(),
                        Some(&mut self.key_cache),
                    )
                });
            let Ok(valid) = next else {
                // Cannot happen for a descriptor that was valid once; stop
                // rather than retry forever.
                self.own.remove(&key);
                continue;
            };
            if let Some(own) = self.own.get_mut(&key) {
                own.current = valid.descriptor().clone();
                own.republish_at = now.saturating_add(half_ttl(valid.ttl));
            }
            let _ = self.start_publish(now, Arc::new(valid), true, true, true);
        }
    }

    /// A publish proxy accepted someone's descriptor: replicate it soon.
    pub(super) fn queue_replication(&mut self, now: Timestamp, d: Arc<ValidDescriptor>) {
        if self.replication.len() >= self.config.replication_queue {
            self.stats.replication_dropped += 1;
            return;
        }
        self.replication.push_back(d);
        self.pump_replication(now);
    }

    /// Starts replication queries while at most half the query budget is in
    /// use (the rest stays free for commands).
    pub(super) fn pump_replication(&mut self, now: Timestamp) {
        while self.queries.len() < self.config.max_queries / 2 {
            let Some(d) = self.replication.pop_front() else {
                return;
            };
            if d.is_expired(now) {
                continue;
            }
            let _ = self.start_publish(now, d, false, false, true);
        }
    }
}

fn half_ttl(ttl: u32) -> Duration {
    Duration::from_secs(u64::from(ttl) / 2)
}
