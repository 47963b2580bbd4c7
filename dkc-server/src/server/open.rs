//! Opening the k2hash data as the `[K2HDKC]` section says, refusing clearly when the file is
//! corrupt, held by another process, or was built with another geometry.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chmpx::config::K2hType;
use k2hash::{K2Hash, OpenOptions};

use super::settings::StoreSpec;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file type needs a path and none was configured.
    #[error("K2HTYPE = {kind:?} needs K2HFILE")]
    NoPath {
        /// The configured type.
        kind: K2hType,
    },
    /// Another process holds the file.
    #[error(
        "{path}: in use by process {pid}; another dkc-server (or k2htool) has it open. Stop \
         that process, or give this node its own K2HFILE"
    )]
    Locked {
        /// The file.
        path: PathBuf,
        /// The holder (0 if unknown).
        pid: u32,
    },
    /// The file is damaged.
    #[error(
        "{path}: the k2hash file is corrupt ({what}). Nothing was changed. Run `k2htool verify \
         {path}`; then restore it from a replica (move it away and let merge refill it) or \
         salvage with `k2htool compact`"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the engine found.
        what: String,
    },
    /// The file does not match the configuration.
    #[error(
        "{path}: the file has {found} index shards but K2HMASKBIT = {bits} asks for {wanted}. \
         Set K2HMASKBIT to {found_bits}, or set K2HINIT = yes to start this node empty (merge \
         refills it from the replicas)"
    )]
    Geometry {
        /// The file.
        path: PathBuf,
        /// Shards in the file.
        found: u64,
        /// log2 of `found`.
        found_bits: u32,
        /// Shards the config asks for.
        wanted: u64,
        /// K2HMASKBIT.
        bits: u32,
    },
    /// Any other engine or file-system failure.
    #[error("{path}: cannot open the k2hash data: {source}")]
    Other {
        /// The file (or "memory").
        path: PathBuf,
        /// The cause.
        #[source]
        source: k2hash::Error,
    },
    /// Creating the data directory or removing an old file for K2HINIT failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn engine_error(path: &Path, e: k2hash::Error) -> OpenError {
    match e {
        k2hash::Error::Locked { path, pid } => OpenError::Locked { path, pid },
        k2hash::Error::Corrupted { what, offset, .. } => OpenError::Corrupt {
            path: path.to_path_buf(),
            what: format!("{what} at offset {offset}"),
        },
        k2hash::Error::UnsupportedVersion {
            found, supported, ..
        } => OpenError::Corrupt {
            path: path.to_path_buf(),
            what: format!("format version {found}, this build reads {supported}"),
        },
        source => OpenError::Other {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Opens (or creates) the store described by `spec`, with `clock` as its expiry clock.
pub fn open_store(spec: &StoreSpec, clock: Arc<dyn k2hash::Clock>) -> Result<K2Hash, OpenError> {
    let geometry = |o: OpenOptions| {
        o.shard_bits(spec.shard_bits)
            .table_bits(spec.table_bits)
            .clock(clock.clone())
    };
    let path = match spec.kind {
        K2hType::Mem => {
            let memory = PathBuf::from("memory");
            return geometry(OpenOptions::memory())
                .open()
                .map_err(|e| engine_error(&memory, e));
        }
        K2hType::File | K2hType::Temp => spec
            .path
            .clone()
            .ok_or(OpenError::NoPath { kind: spec.kind })?,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Io {
            path: dir.to_path_buf(),
            what: "cannot create the data directory",
            source,
        })?;
    }
    let base = if spec.full_map {
        OpenOptions::full_map(&path)
    } else {
        OpenOptions::index_map(&path)
    };
    let opts = geometry(base)
        .create(true)
        .sync(spec.sync)
        .temporary(spec.kind == K2hType::Temp);
    if spec.kind == K2hType::File && spec.init && path.exists() {
        // K2HINIT: start empty. Open it first so a file held by a running server is refused
        // (with its pid) rather than pulled from under it.
        drop(opts.open().map_err(|e| engine_error(&path, e))?);
        tracing::warn!(path = %path.display(), "K2HINIT = yes: removing the old k2hash file");
        std::fs::remove_file(&path).map_err(|source| OpenError::Io {
            path: path.clone(),
            what: "cannot remove the old file for K2HINIT",
            source,
        })?;
    }
    let store = opts.open().map_err(|e| engine_error(&path, e))?;
    let wanted = 1u64 << spec.shard_bits;
    let found = store.stats().shards;
    if found != wanted {
        return Err(OpenError::Geometry {
            path,
            found,
            found_bits: found.trailing_zeros(),
            wanted,
            bits: spec.shard_bits,
        });
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::SystemClock;

    fn spec(path: &Path) -> StoreSpec {
        StoreSpec {
            kind: K2hType::File,
            path: Some(path.to_path_buf()),
            full_map: true,
            init: false,
            sync: false,
            shard_bits: 4,
            table_bits: 3,
        }
    }

    #[test]
    fn open_creates_reopens_and_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/node.k2h");
        let s = spec(&path);
        let store = open_store(&s, Arc::new(SystemClock)).unwrap();
        store
            .set(
                b"k",
                b"v",
                k2hash::Meta {
                    version: 7,
                    ..Default::default()
                },
            )
            .unwrap();
        drop(store);
        let store = open_store(&s, Arc::new(SystemClock)).unwrap();
        assert_eq!(store.get(b"k").unwrap().unwrap().value, b"v".to_vec());
        drop(store);
        let init = StoreSpec { init: true, ..s };
        let store = open_store(&init, Arc::new(SystemClock)).unwrap();
        assert!(store.get(b"k").unwrap().is_none(), "K2HINIT starts empty");
    }

    #[test]
    fn open_refuses_a_held_file_naming_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(&dir.path().join("node.k2h"));
        let _held = open_store(&s, Arc::new(SystemClock)).unwrap();
        let err = open_store(&s, Arc::new(SystemClock)).unwrap_err();
        assert!(matches!(err, OpenError::Locked { .. }), "{err}");
        let init = StoreSpec {
            init: true,
            ..s.clone()
        };
        let err = open_store(&init, Arc::new(SystemClock)).unwrap_err();
        assert!(
            matches!(err, OpenError::Locked { .. }),
            "K2HINIT does not remove a held file"
        );
        assert!(s.path.as_ref().unwrap().exists());
    }

    #[test]
    fn open_refuses_other_geometry_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.k2h");
        drop(open_store(&spec(&path), Arc::new(SystemClock)).unwrap());
        let other = StoreSpec {
            shard_bits: 6,
            ..spec(&path)
        };
        let err = open_store(&other, Arc::new(SystemClock)).unwrap_err();
        assert!(
            matches!(
                err,
                OpenError::Geometry {
                    found: 16,
                    wanted: 64,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("K2HMASKBIT"));

        let bad = dir.path().join("bad.k2h");
        std::fs::write(&bad, vec![0xA5u8; 64 * 1024]).unwrap();
        let err = open_store(&spec(&bad), Arc::new(SystemClock)).unwrap_err();
        assert!(matches!(err, OpenError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("k2htool verify"));
    }
}
