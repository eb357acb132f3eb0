//! The saved peer set, so that a restarted hub rejoins the mesh from the
//! peers it knew instead of needing seeds.

use std::fmt;
use std::sync::Arc;

use heed::RoTxn;

use super::env::{LmdbEnv, heed_error};
use super::{Db, ReadErrorLog};
use crate::identity::Identity;
use crate::store::StoreError;
use crate::wire::{MAX_ADDRESS_LEN, MAX_PROTOCOL_LEN, NodeAddr};

/// Most peers saved (and loaded): more than a full routing table
/// (256 buckets × K = 20 would be 5,120, far more than a real table
/// holds), so nothing useful is cut, and a damaged file cannot make a
/// load allocate without bound.
pub const MAX_SAVED_PEERS: usize = 8_192;

/// A handle on an [`LmdbStore`](super::LmdbStore)'s saved peer set. It
/// shares the store's environment (cloning is cheap), so a daemon whose
/// node owns the store can still save and load peers, from any thread.
#[derive(Clone)]
pub struct PeerBook {
    env: LmdbEnv,
    db: Db,
    errors: Arc<ReadErrorLog>,
    map_size: u64,
}

impl fmt::Debug for PeerBook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerBook")
            .field("path", &self.env.path())
            .finish_non_exhaustive()
    }
}

impl PeerBook {
    pub(super) fn new(env: LmdbEnv, db: Db, errors: Arc<ReadErrorLog>, map_size: u64) -> Self {
        PeerBook {
            env,
            db,
            errors,
            map_size,
        }
    }

    /// Replaces the saved set with `peers`, in their order (put the most
    /// useful first: a loader may try them in order), in one transaction,
    /// synced before it returns — peers are saved rarely and should
    /// survive a power loss. Keeps the first [`MAX_SAVED_PEERS`]; skips
    /// addresses longer than the wire allows (no peer could send them).
    pub fn save_peers(&self, peers: &[(Identity, NodeAddr)]) -> Result<(), StoreError> {
        let err = |op| move |e| heed_error(op, self.map_size, e);
        let mut wtxn = self.env.write_txn().map_err(err("begin a write"))?;
        self.db.clear(&mut wtxn).map_err(err("clear the peers"))?;
        let valid = peers.iter().filter(|(_, a)| {
            !a.protocol().is_empty()
                && a.protocol().len() <= MAX_PROTOCOL_LEN
                && a.address().len() <= MAX_ADDRESS_LEN
        });
        for (i, (identity, addr)) in valid.take(MAX_SAVED_PEERS).enumerate() {
            // `i` < MAX_SAVED_PEERS, far below u32::MAX.
            let key = (i as u32).to_be_bytes();
            self.db
                .put(&mut wtxn, &key, &encode(identity, addr))
                .map_err(err("save a peer"))?;
        }
        wtxn.commit().map_err(err("commit"))?;
        self.env.force_sync().map_err(err("sync"))
    }

    /// The saved set, in the order saved. Entries that do not read back
    /// are skipped and counted as read errors of the store.
    pub fn load_peers(&self) -> Vec<(Identity, NodeAddr)> {
        let mut out = Vec::new();
        let txn = match self.env.read_txn() {
            Ok(t) => t,
            Err(e) => {
                self.errors
                    .note(heed_error("begin a read", self.map_size, e));
                return out;
            }
        };
        let txn: &RoTxn = &txn;
        let entries = match self.db.iter(txn) {
            Ok(it) => it,
            Err(e) => {
                self.errors
                    .note(heed_error("walk the peers", self.map_size, e));
                return out;
            }
        };
        for entry in entries.take(MAX_SAVED_PEERS) {
            match entry {
                Ok((_, v)) => match decode(v) {
                    Some(peer) => out.push(peer),
                    None => self.errors.note(StoreError::Corrupt {
                        what: "a saved peer",
                    }),
                },
                Err(e) => {
                    self.errors
                        .note(heed_error("walk the peers", self.map_size, e));
                    break;
                }
            }
        }
        out
    }
}

/// identity (32) ‖ protocol length (1) ‖ protocol ‖ address.
fn encode(identity: &Identity, addr: &NodeAddr) -> Vec<u8> {
    let (protocol, address) = (addr.protocol(), addr.address());
    let mut out = Vec::with_capacity(33 + protocol.len() + address.len());
    out.extend_from_slice(identity.public_key());
    // Bounded by MAX_PROTOCOL_LEN (16) above.
    out.push(protocol.len() as u8);
    out.extend_from_slice(protocol.as_bytes());
    out.extend_from_slice(address.as_bytes());
    out
}

fn decode(b: &[u8]) -> Option<(Identity, NodeAddr)> {
    let (key, rest) = b.split_at_checked(32)?;
    let (&len, rest) = rest.split_first()?;
    let (protocol, address) = rest.split_at_checked(usize::from(len))?;
    if protocol.is_empty() || protocol.len() > MAX_PROTOCOL_LEN || address.len() > MAX_ADDRESS_LEN {
        return None;
    }
    let identity = Identity::from_ed25519_bytes(key.try_into().ok()?);
    let addr = NodeAddr::new(
        std::str::from_utf8(protocol).ok()?,
        std::str::from_utf8(address).ok()?,
    );
    Some((identity, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_entries_round_trip_and_refuse_garbage() {
        let id = Identity::from_ed25519_bytes([7; 32]);
        let addr = NodeAddr::quic("[::1]:4433");
        assert_eq!(decode(&encode(&id, &addr)), Some((id, addr)));
        assert_eq!(decode(&[0; 31]), None);
        let mut bad = vec![0; 32];
        bad.push(200);
        assert_eq!(decode(&bad), None);
    }
}
