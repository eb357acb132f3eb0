//! Opening the LMDB environment (the crate's only unsafe code), and
//! mapping heed's errors to [`StoreError`].

use std::path::Path;

use heed::{Env, EnvFlags, EnvOpenOptions, MdbError, WithoutTls};

use crate::store::StoreError;

/// The environment type: read transactions without thread-local storage,
/// so a thread may hold several (a scan and a lookup inside it) and the
/// store may move between threads.
pub(super) type LmdbEnv = Env<WithoutTls>;

/// Named databases in one environment (nine are used; room to grow).
const MAX_DBS: u32 = 16;

/// How a committed write reaches stable storage. Whatever the mode, a
/// write that returned `Ok` has committed: it is in the operating system's
/// page cache and survives the process being killed (SIGKILL, a panic,
/// an OOM kill). The modes differ only on power loss or a kernel crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitSync {
    /// No sync at commit (LMDB `MDB_NOSYNC`); durability comes from
    /// [`flush`](crate::store::DescriptorStore::flush), which the host
    /// calls before a STORE_ACK leaves, so many writes share one sync
    /// (group commit). A power loss between a commit and the next flush
    /// loses those commits, and — on a file system that reorders writes —
    /// can leave the file inconsistent; nothing acknowledged to a peer is
    /// lost. The fast default for a hub.
    #[default]
    OnFlush,
    /// One data sync per commit, the meta page synced at the next commit
    /// or flush (LMDB `MDB_NOMETASYNC`): the file stays consistent on any
    /// file system; a power loss can undo only the last commit before a
    /// flush.
    DataEachCommit,
    /// Full sync at every commit (LMDB's default): durable on return,
    /// at the cost of two syncs per write.
    EachCommit,
}

/// Creates the directory and opens (or creates) the environment in it.
pub(super) fn open(path: &Path, map_size: u64, sync: CommitSync) -> Result<LmdbEnv, StoreError> {
    std::fs::create_dir_all(path).map_err(|e| StoreError::Io {
        op: "create the store directory",
        source: std::sync::Arc::new(e),
    })?;
    let map_len = usize::try_from(map_size).map_err(|_| StoreError::Full { map_size })?;
    let flags = match sync {
        CommitSync::OnFlush => EnvFlags::NO_SYNC,
        CommitSync::DataEachCommit => EnvFlags::NO_META_SYNC,
        CommitSync::EachCommit => EnvFlags::empty(),
    };
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options.map_size(map_len).max_dbs(MAX_DBS);
    // SAFETY: heed marks both calls unsafe; the conditions they rest on:
    // - `flags`: NO_SYNC and NO_META_SYNC only relax *when* committed
    //   pages reach the disk; in-process they change nothing LMDB reads.
    //   Their risk is a file left inconsistent by a power loss or kernel
    //   crash between a commit and a sync (see [`CommitSync`]), bounded
    //   by `flush` before every acknowledgement, and chosen by the
    //   operator through `LmdbOptions::commit_sync`.
    // - `open`: the memory map is sound as long as no one modifies the
    //   files behind LMDB's back. The directory belongs to this store
    //   (documented on `LmdbStore::open`); other LMDB users coordinate
    //   through its lock file; heed refuses a second open of the same
    //   environment in this process (`EnvAlreadyOpened`); we never use
    //   NO_LOCK, never hold a transaction across calls, and never place
    //   the store on a network file system (operator documentation).
    #[allow(unsafe_code)]
    let env = unsafe {
        options.flags(flags);
        options.open(path)
    };
    env.map_err(|e| heed_error("open", map_size, e))
}

/// Maps a heed error: a full map is [`StoreError::Full`] (the one failure
/// removals cure), a damaged page [`StoreError::Corrupt`], the rest I/O or
/// backend errors that keep heed's error as their source.
pub(super) fn heed_error(op: &'static str, map_size: u64, e: heed::Error) -> StoreError {
    match e {
        heed::Error::Mdb(MdbError::MapFull) => StoreError::Full { map_size },
        heed::Error::Mdb(MdbError::Corrupted | MdbError::PageNotFound) => StoreError::Corrupt {
            what: "an LMDB page (the data file is damaged)",
        },
        heed::Error::Io(io) => StoreError::Io {
            op,
            source: std::sync::Arc::new(io),
        },
        other => StoreError::Backend {
            op,
            source: std::sync::Arc::new(other),
        },
    }
}
