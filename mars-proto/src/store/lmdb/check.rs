//! Consistency of the on-disk indexes: the full check tests run, and the
//! repair that damaged records need.

use std::collections::BTreeMap;

use heed::{RoTxn, RwTxn};

use super::codec::{self, HASH_LEN};
use super::{Db, Dbs, LmdbStore, META_BYTES, META_COUNT, Totals};
use crate::descriptor::ValidDescriptor;
use crate::hash::Hash;
use crate::store::{StoreError, stored_size};

/// What [`LmdbStore::repair`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Records removed because they no longer read back (checksum, id or
    /// decoding failed).
    pub damaged_records: usize,
    /// Index entries removed because they named no record.
    pub orphan_entries: usize,
    /// Missing index entries of readable records, written again.
    pub restored_entries: usize,
    /// Per-routing-key counts that were wrong and were rewritten.
    pub recounted_keys: usize,
}

/// An index entry: its database (and name, for messages), key and value.
type Entry = (Db, &'static str, Vec<u8>, Vec<u8>);

/// Every index entry `d` must have.
fn expected_entries(dbs: &Dbs, d: &ValidDescriptor) -> Vec<Entry> {
    let expires = d.expires_at().as_micros().to_be_bytes().to_vec();
    let mut out = Vec::with_capacity(2 + 3 * d.routing_keys.len());
    for (i, key) in d.routing_keys.iter().enumerate() {
        if d.routing_keys[..i].contains(key) {
            continue;
        }
        out.push((
            dbs.by_key,
            "by_key",
            codec::key_entry(key, d.timestamp, &d.id).to_vec(),
            expires.clone(),
        ));
        out.push((
            dbs.by_key_publisher,
            "by_key_publisher",
            codec::key_pub_entry(key, &d.publisher, d.timestamp, &d.id).to_vec(),
            expires.clone(),
        ));
        out.push((
            dbs.by_key_schema,
            "by_key_schema",
            codec::key_schema_entry(key, &d.schema_hash, d.timestamp, &d.id).to_vec(),
            expires.clone(),
        ));
    }
    out.push((
        dbs.by_slot,
        "by_slot",
        codec::slot_key(&d.publisher, &d.schema_hash, &d.topic),
        codec::hash(&d.id).to_vec(),
    ));
    out.push((
        dbs.by_expiry,
        "by_expiry",
        codec::expiry_entry(d.expires_at(), &d.id).to_vec(),
        stored_size(d).to_be_bytes().to_vec(),
    ));
    out
}

/// Distinct routing keys of `d`, each once.
fn distinct_keys(d: &ValidDescriptor) -> impl Iterator<Item = &Hash> {
    d.routing_keys
        .iter()
        .enumerate()
        .filter(|(i, k)| !d.routing_keys[..*i].contains(k))
        .map(|(_, k)| k)
}

impl LmdbStore {
    /// Checks that every index agrees with the records, that the per-key
    /// counts and the totals (in memory and in `meta`) are right, and that
    /// the decoded-descriptor memo matches the disk, naming the first
    /// disagreement. Decodes everything: for tests and debugging.
    pub fn check_invariants(&self) -> Result<(), String> {
        let txn = self
            .env
            .read_txn()
            .map_err(|e| format!("read transaction: {e}"))?;
        let dbs = &self.dbs;
        let get = |db: Db, k: &[u8]| -> Result<Option<Vec<u8>>, String> {
            db.get(&txn, k)
                .map(|v| v.map(<[u8]>::to_vec))
                .map_err(|e| format!("read: {e}"))
        };
        let mut totals = Totals::default();
        let mut per_key: BTreeMap<Hash, u64> = BTreeMap::new();
        let mut key_entries = 0u64;
        let records = dbs
            .descriptors
            .iter(&txn)
            .map_err(|e| format!("walk: {e}"))?;
        for entry in records {
            let (k, v) = entry.map_err(|e| format!("walk: {e}"))?;
            let id = codec::read_hash(k).ok_or("a record key is not an id")?;
            let d = codec::decode_record(&id, v).map_err(|e| format!("{id}: {e}"))?;
            totals.len += 1;
            totals.bytes += stored_size(&d);
            for key in distinct_keys(&d) {
                key_entries += 1;
                *per_key.entry(*key).or_default() += 1;
            }
            for (db, name, key, value) in expected_entries(dbs, &d) {
                if get(db, &key)?.as_deref() != Some(&value[..]) {
                    return Err(format!("{id}: entry missing or wrong in {name}"));
                }
            }
        }
        let len = |db: Db| db.len(&txn).map_err(|e| format!("count: {e}"));
        for (db, name) in [
            (dbs.by_key, "by_key"),
            (dbs.by_key_publisher, "by_key_publisher"),
            (dbs.by_key_schema, "by_key_schema"),
        ] {
            if len(db)? != key_entries {
                return Err(format!(
                    "{name} holds {} entries for {key_entries} (descriptor, key) pairs",
                    len(db)?
                ));
            }
        }
        for (db, name) in [(dbs.by_slot, "by_slot"), (dbs.by_expiry, "by_expiry")] {
            if len(db)? != totals.len {
                return Err(format!(
                    "{name} holds {} entries for {} descriptors",
                    len(db)?,
                    totals.len
                ));
            }
        }
        let counts = dbs
            .key_counts
            .iter(&txn)
            .map_err(|e| format!("walk: {e}"))?;
        let mut counted = 0usize;
        for entry in counts {
            let (k, v) = entry.map_err(|e| format!("walk: {e}"))?;
            let key = codec::read_hash(k).ok_or("a key-count key is not a hash")?;
            let n = codec::read_u64(v).ok_or("a key count is not a u64")?;
            if per_key.get(&key) != Some(&n) {
                return Err(format!(
                    "routing key {key}: count {n}, but {} entries",
                    per_key.get(&key).copied().unwrap_or(0)
                ));
            }
            counted += 1;
        }
        if counted != per_key.len() {
            return Err(format!(
                "{counted} key counts for {} routing keys",
                per_key.len()
            ));
        }
        if self.totals != totals {
            return Err(format!(
                "totals {:?} in memory, records sum to {totals:?}",
                self.totals
            ));
        }
        let on_disk = Totals {
            len: get(dbs.meta, META_COUNT)?
                .as_deref()
                .and_then(codec::read_u64)
                .ok_or("no descriptor count in meta")?,
            bytes: get(dbs.meta, META_BYTES)?
                .as_deref()
                .and_then(codec::read_u64)
                .ok_or("no byte total in meta")?,
        };
        if on_disk != totals {
            return Err(format!(
                "totals {on_disk:?} in meta, records sum to {totals:?}"
            ));
        }
        for d in self.cache().entries() {
            let raw = get(dbs.descriptors, &codec::hash(&d.id))?
                .ok_or_else(|| format!("{}: in the memo but not on disk", d.id))?;
            let stored = codec::decode_record(&d.id, &raw).map_err(|e| e.to_string())?;
            if stored != **d {
                return Err(format!("{}: the memo disagrees with the disk", d.id));
            }
        }
        Ok(())
    }

    /// [`repair`](LmdbStore::repair) inside `wtxn`: sets `totals` to what
    /// the remaining records sum to and empties the memo.
    pub(super) fn repair_in(
        &self,
        wtxn: &mut RwTxn,
        totals: &mut Totals,
    ) -> Result<RepairReport, StoreError> {
        let err = self.err("repair");
        let dbs = self.dbs;
        let mut report = RepairReport::default();
        let mut damaged: Vec<Vec<u8>> = Vec::new();
        let mut missing: Vec<Entry> = Vec::new();
        let mut per_key: BTreeMap<[u8; HASH_LEN], u64> = BTreeMap::new();
        let mut fresh = Totals::default();
        {
            let txn: &RoTxn = wtxn;
            for entry in dbs.descriptors.iter(txn).map_err(&err)? {
                let (k, v) = entry.map_err(&err)?;
                let decoded = codec::read_hash(k)
                    .ok_or(StoreError::Corrupt {
                        what: "a record key",
                    })
                    .and_then(|id| codec::decode_record(&id, v));
                let Ok(d) = decoded else {
                    damaged.push(k.to_vec());
                    continue;
                };
                fresh.len += 1;
                fresh.bytes += stored_size(&d);
                for key in distinct_keys(&d) {
                    *per_key.entry(codec::hash(key)).or_default() += 1;
                }
                for entry in expected_entries(&dbs, &d) {
                    if entry.0.get(txn, &entry.2).map_err(&err)? != Some(&entry.3[..]) {
                        missing.push(entry);
                    }
                }
            }
        }
        for k in &damaged {
            dbs.descriptors.delete(wtxn, k).map_err(&err)?;
        }
        report.damaged_records = damaged.len();

        // Entries that name no record (the damaged ones' among them).
        let mut orphans: Vec<(Db, Vec<u8>)> = Vec::new();
        {
            let txn: &RoTxn = wtxn;
            let live = |id: &[u8]| -> Result<bool, StoreError> {
                Ok(id.len() == HASH_LEN && dbs.descriptors.get(txn, id).map_err(&err)?.is_some())
            };
            for (db, _) in dbs.id_indexes() {
                for entry in db.iter(txn).map_err(&err)? {
                    let (k, _) = entry.map_err(&err)?;
                    let id = k.get(k.len().saturating_sub(HASH_LEN)..).unwrap_or(&[]);
                    if !live(id)? {
                        orphans.push((db, k.to_vec()));
                    }
                }
            }
            for entry in dbs.by_slot.iter(txn).map_err(&err)? {
                let (k, v) = entry.map_err(&err)?;
                if !live(v)? {
                    orphans.push((dbs.by_slot, k.to_vec()));
                }
            }
        }
        for (db, k) in &orphans {
            db.delete(wtxn, k).map_err(&err)?;
        }
        report.orphan_entries = orphans.len();
        for (db, _, k, v) in &missing {
            db.put(wtxn, k, v).map_err(&err)?;
        }
        report.restored_entries = missing.len();

        let mut wrong: Vec<Vec<u8>> = Vec::new();
        {
            let txn: &RoTxn = wtxn;
            for entry in dbs.key_counts.iter(txn).map_err(&err)? {
                let (k, v) = entry.map_err(&err)?;
                let expected = <[u8; HASH_LEN]>::try_from(k)
                    .ok()
                    .and_then(|k| per_key.get(&k));
                if expected.is_none_or(|n| codec::read_u64(v) != Some(*n)) {
                    wrong.push(k.to_vec());
                }
            }
            for (k, n) in &per_key {
                let have = dbs.key_counts.get(txn, k).map_err(&err)?;
                if have.and_then(codec::read_u64) != Some(*n) && !wrong.iter().any(|w| w == k) {
                    wrong.push(k.to_vec());
                }
            }
        }
        for k in &wrong {
            match <[u8; HASH_LEN]>::try_from(&k[..])
                .ok()
                .and_then(|a| per_key.get(&a))
            {
                Some(n) => dbs.key_counts.put(wtxn, k, &n.to_be_bytes()),
                None => dbs.key_counts.delete(wtxn, k).map(|_| ()),
            }
            .map_err(&err)?;
        }
        report.recounted_keys = wrong.len();
        *totals = fresh;
        // Anything may have left: the memo starts again (it is only ever
        // a copy of committed records, so clearing it is always safe).
        self.cache().clear();
        Ok(report)
    }
}
