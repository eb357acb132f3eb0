//! Key files: the node's Ed25519 secret as 64 hex digits and a newline,
//! readable by its owner only.
//!
//! Whoever reads the file *is* the node (its DID, its publications), so it
//! is created with mode 0600 and never overwritten, and a key file that
//! others can read is reported when it is loaded.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use mars_proto::Keypair;

use crate::generate_keypair;

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file could not be created or written.
    #[error("cannot create key file {path}: {source}")]
    Create {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("{path} is not a key file (expected 64 hex digits, as `mars keygen` writes)")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
}

/// Reads the key in `path`.
pub fn read(path: &Path) -> Result<Keypair, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut secret).map_err(|_| KeyFileError::Malformed {
        path: path.to_owned(),
    })?;
    warn_if_shared(path);
    Ok(Keypair::from_secret_bytes(&secret))
}

/// Writes a fresh key to `path` (mode 0600); refuses to overwrite a file.
pub fn create(path: &Path) -> Result<Keypair, KeyFileError> {
    let key = generate_keypair();
    let err = |source| KeyFileError::Create {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(err)?;
    f.write_all(format!("{}\n", hex::encode(key.secret_bytes())).as_bytes())
        .map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(key)
}

/// The key in `path`, created first if there is no such file. The flag
/// says whether it was created.
pub fn load_or_create(path: &Path) -> Result<(Keypair, bool), KeyFileError> {
    match std::fs::metadata(path) {
        Ok(_) => Ok((read(path)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((create(path)?, true)),
        Err(source) => Err(KeyFileError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Logs a warning if group or others may read the key.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "key file is readable by others; `chmod 600` it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mars-key-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn created_once_then_loaded() {
        let dir = temp("once");
        let path = dir.join("hub.key");
        let (a, created) = load_or_create(&path).unwrap();
        assert!(created);
        let (b, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a.identity(), b.identity());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(matches!(create(&path), Err(KeyFileError::Create { .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn garbage_is_not_a_key() {
        let dir = temp("garbage");
        let path = dir.join("bad.key");
        std::fs::write(&path, "not hex\n").unwrap();
        let e = read(&path).unwrap_err();
        assert!(matches!(e, KeyFileError::Malformed { .. }));
        assert!(e.to_string().contains("64 hex digits"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
