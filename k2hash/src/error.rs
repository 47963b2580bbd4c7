//! The error type of every k2hash operation.

use std::path::PathBuf;

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong, with what and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call failed.
    #[error("k2hash: {op} failed on {path:?}: {source}")]
    Io {
        /// The call (open, flock, fallocate, pread, ...).
        op: &'static str,
        /// The file concerned, if any.
        path: Option<PathBuf>,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file system holding the file is full (ENOSPC, or EDQUOT for a quota). When the file
    /// could not grow (`op` is `fallocate`), the write that needed the space was not applied;
    /// everything stored before stays readable. Free space on that file system (or delete
    /// keys: their space is reused at once) and retry.
    #[error(
        "k2hash: no space left on the file system of {} ({op}: {source}); free space there or \
         delete keys, then retry",
        shown(.path)
    )]
    NoSpace {
        /// The call that ran out of space (fallocate, pwrite, ...).
        op: &'static str,
        /// The file concerned, if any.
        path: Option<PathBuf>,
        /// The OS error (ENOSPC or EDQUOT).
        #[source]
        source: std::io::Error,
    },
    /// The file contents are inconsistent. Run `k2htool verify`; restore from a replica or
    /// `k2htool compact` to salvage what is readable.
    #[error("k2hash: corrupted file {path:?}: {what} at offset {offset}")]
    Corrupted {
        /// What is wrong.
        what: String,
        /// Byte offset in the file.
        offset: u64,
        /// The file, if any.
        path: Option<PathBuf>,
    },
    /// The file was written by an unsupported format version.
    #[error("k2hash: {path:?} has format version {found}, this build reads {supported}")]
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Version this build understands.
        supported: u32,
        /// The file.
        path: Option<PathBuf>,
    },
    /// A named limit was exceeded.
    #[error("k2hash: {limit} exceeded: {actual} > {max}")]
    LimitExceeded {
        /// The name of the limit (`key_size_max`, `value_size_max`, ...).
        limit: &'static str,
        /// The limit.
        max: u64,
        /// The value given.
        actual: u64,
    },
    /// Another process (or another handle in this process) owns the file.
    #[error("k2hash: {path:?} is in use by pid {pid} (owner lock held; pid 0 means read-only openers); stop that process first")]
    Locked {
        /// The file.
        path: PathBuf,
        /// Pid of the writer that owns the file (0 when the holders are read-only openers).
        pid: u32,
    },
    /// A write was attempted on a read-only store.
    #[error("k2hash: store opened read-only; reopen without read_only(true) to write")]
    ReadOnly,
    /// An argument was invalid (empty key, bad geometry, ...).
    #[error("k2hash: invalid argument: {0}")]
    InvalidArgument(String),
    /// The file does not exist and `create(true)` was not given.
    #[error("k2hash: {0:?} does not exist; pass create(true) to create it")]
    NotFound(PathBuf),
    /// The store is closed.
    #[error("k2hash: store is closed")]
    Closed,
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: Option<&std::path::Path>,
        source: std::io::Error,
    ) -> Error {
        let path = path.map(|p| p.to_path_buf());
        if is_no_space(&source) {
            return Error::NoSpace { op, path, source };
        }
        Error::Io { op, path, source }
    }

    /// Whether this is [`Error::NoSpace`]: the device is full, nothing is wrong with the data.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::NoSpace { .. })
    }

    pub(crate) fn corrupted(what: impl Into<String>, offset: u64) -> Error {
        Error::Corrupted {
            what: what.into(),
            offset,
            path: None,
        }
    }

    /// Attaches a path to a `Corrupted`/`UnsupportedVersion` error lacking one.
    pub(crate) fn with_path(self, p: Option<&std::path::Path>) -> Error {
        match self {
            Error::Corrupted {
                what,
                offset,
                path: None,
            } => Error::Corrupted {
                what,
                offset,
                path: p.map(|x| x.to_path_buf()),
            },
            Error::UnsupportedVersion {
                found,
                supported,
                path: None,
            } => Error::UnsupportedVersion {
                found,
                supported,
                path: p.map(|x| x.to_path_buf()),
            },
            e => e,
        }
    }
}

/// Whether an OS error means the file system (or the user's quota) is full.
pub(crate) fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// A path for a message: the path itself, or what stands for it when there is none.
fn shown(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "the store".to_string(),
    }
}
