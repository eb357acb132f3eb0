//! The limits a [`Storage`](super::Storage) enforces.

/// Limits of a descriptor store. Every bound exists because the input is
/// hostile: anything a peer can make us hold is capped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Most descriptors held. Default 100,000.
    pub max_descriptors: usize,
    /// Most bytes held, as counted by [`stored_size`](super::stored_size).
    /// Default 256 MiB (about 100,000 descriptors of 1.5 KiB, the size of a
    /// typical capability with three routing keys).
    pub max_bytes: u64,
    /// Most descriptors at one routing key, so one key (however popular,
    /// however attacked) cannot take the whole store. Default 25,000: a
    /// quarter of `max_descriptors`, room for thousands of providers under
    /// a top-level key such as `compute`.
    pub max_per_key: usize,
    /// STOREs accepted per publisher per minute, refilled continuously
    /// (a token bucket holding as many tokens). Default 10, the spec's
    /// recommendation (its §9.3); 0 refuses every STORE that changes the
    /// store.
    pub stores_per_minute: u32,
    /// Publishers whose rate-limit bucket is remembered; past this the
    /// least recently active is forgotten (it gets a full bucket back).
    /// Default 10,000.
    pub max_tracked_publishers: usize,
    /// Identities whose latest key rotation is remembered (for the
    /// strictly-increasing rotation_seq rule and fork detection); past this
    /// the least recently rotated is forgotten. Default 10,000.
    pub max_tracked_rotations: usize,
    /// Identities remembered as compromised (they forked a key rotation);
    /// past this the earliest marked is forgotten. Default 10,000.
    pub max_compromised: usize,
    /// Most expired descriptors one [`sweep`](super::Storage::sweep)
    /// removes, so a sweep's cost is bounded; the rest go on the next call.
    /// Default 1,024.
    pub sweep_batch: usize,
}

impl StoreConfig {
    /// Default [`max_descriptors`](Self::max_descriptors).
    pub const DEFAULT_MAX_DESCRIPTORS: usize = 100_000;
    /// Default [`max_bytes`](Self::max_bytes): 256 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
    /// Default [`max_per_key`](Self::max_per_key).
    pub const DEFAULT_MAX_PER_KEY: usize = 25_000;
    /// Default [`stores_per_minute`](Self::stores_per_minute) (spec §9.3).
    pub const DEFAULT_STORES_PER_MINUTE: u32 = 10;
    /// Default [`max_tracked_publishers`](Self::max_tracked_publishers).
    pub const DEFAULT_MAX_TRACKED_PUBLISHERS: usize = 10_000;
    /// Default [`max_tracked_rotations`](Self::max_tracked_rotations).
    pub const DEFAULT_MAX_TRACKED_ROTATIONS: usize = 10_000;
    /// Default [`max_compromised`](Self::max_compromised).
    pub const DEFAULT_MAX_COMPROMISED: usize = 10_000;
    /// Default [`sweep_batch`](Self::sweep_batch).
    pub const DEFAULT_SWEEP_BATCH: usize = 1_024;
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_descriptors: Self::DEFAULT_MAX_DESCRIPTORS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_per_key: Self::DEFAULT_MAX_PER_KEY,
            stores_per_minute: Self::DEFAULT_STORES_PER_MINUTE,
            max_tracked_publishers: Self::DEFAULT_MAX_TRACKED_PUBLISHERS,
            max_tracked_rotations: Self::DEFAULT_MAX_TRACKED_ROTATIONS,
            max_compromised: Self::DEFAULT_MAX_COMPROMISED,
            sweep_batch: Self::DEFAULT_SWEEP_BATCH,
        }
    }
}
