//! Why a storage engine could not do what it was asked.

use std::error::Error as StdError;
use std::sync::Arc;

/// The source of an engine failure: whatever the backend (a disk, a
/// database library) reported, kept for the operator's log. Shared rather
/// than boxed so that a [`StoreError`] can be cloned into events and
/// refusals.
pub type ErrorSource = Arc<dyn StdError + Send + Sync + 'static>;

/// A storage engine failure. The in-memory engine never fails; a disk
/// engine can, and then the write it was asked for did not happen at all
/// (writes are all or nothing, see [`DescriptorStore`](super::DescriptorStore)).
///
/// The `Display` text is short and bounded, with no paths or library
/// messages in it, because [`Storage`](super::Storage) hands it to peers as
/// a STORE_ACK `reason`; the backend's own error is the
/// [`source`](std::error::Error::source), for the local log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The engine's space is used up (LMDB: the map is full). Removals
    /// still work, and so does everything once expired entries are swept.
    #[error("storage full: map of {map_size} bytes is full")]
    Full {
        /// The engine's size limit, in bytes.
        map_size: u64,
    },
    /// The operating system refused an operation (open, sync, a file).
    #[error("storage i/o error during {op}")]
    Io {
        /// What the engine was doing, e.g. "open" or "sync".
        op: &'static str,
        /// The error the system reported.
        #[source]
        source: ErrorSource,
    },
    /// The storage library reported an error other than running out of
    /// space.
    #[error("storage backend error during {op}")]
    Backend {
        /// What the engine was doing, e.g. "commit".
        op: &'static str,
        /// The error the library reported.
        #[source]
        source: ErrorSource,
    },
    /// Stored bytes do not decode or do not match what was written
    /// (a checksum, a recomputed id): disk corruption or a foreign writer.
    #[error("storage corrupt: {what}")]
    Corrupt {
        /// Which record failed its check.
        what: &'static str,
    },
    /// The files were written by a build with another on-disk layout.
    #[error("storage layout version {found}, this build reads version {expected}")]
    VersionMismatch {
        /// The layout version found on disk.
        found: u32,
        /// The version this build writes and reads.
        expected: u32,
    },
}

impl PartialEq for StoreError {
    /// Structural equality; backend sources compare by their text (they
    /// are opaque), so that refusals carrying an engine error stay
    /// comparable in tests.
    fn eq(&self, other: &Self) -> bool {
        use StoreError::*;
        match (self, other) {
            (Full { map_size: a }, Full { map_size: b }) => a == b,
            (Io { op: a, source: x }, Io { op: b, source: y })
            | (Backend { op: a, source: x }, Backend { op: b, source: y }) => {
                a == b && x.to_string() == y.to_string()
            }
            (Corrupt { what: a }, Corrupt { what: b }) => a == b,
            (
                VersionMismatch {
                    found: a,
                    expected: x,
                },
                VersionMismatch {
                    found: b,
                    expected: y,
                },
            ) => a == b && x == y,
            _ => false,
        }
    }
}

impl Eq for StoreError {}

impl StoreError {
    /// Whether this is [`StoreError::Full`]: the one failure that space
    /// freed by removals cures.
    pub fn is_full(&self) -> bool {
        matches!(self, StoreError::Full { .. })
    }
}
