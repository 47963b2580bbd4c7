//! A UNIX-domain socket for the front (memcached's `-s PATH` and `-a MASK`): applications on
//! the host of the front reach it without TCP.
//!
//! Binding is careful with what is already at the path: a socket file nobody listens on (left
//! by a front that was killed) is replaced; a socket someone serves, or a file of another kind,
//! is refused with an error that says what to do, and left as it was. The socket gets its mode
//! before it gets its name: it is bound inside a fresh directory only the owner can enter,
//! given the mode, then renamed to the path, so nobody can connect while it has another mode.
//! [`UnixSocket`] removes the file when dropped, if the path still names this socket.

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// memcached's default `-a`: owner only.
pub const UNIX_MASK_DEFAULT: u32 = 0o700;
/// Longest socket path the kernel takes (`sun_path` holds 108 bytes with its NUL).
pub const UNIX_SOCKET_PATH_LEN_MAX: usize = 107;
/// Name (with the process id appended) of the private directory the socket is bound in before
/// it is renamed into place; short, as the staged path must fit in `sun_path` too.
const BIND_DIR_PREFIX: &str = ".dkcm";

/// Why a UNIX socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UnixSocketError {
    #[error("{path}: binding it needs a path of {len} bytes ({staged}, renamed to the path once its mode is set); a UNIX socket path holds at most {UNIX_SOCKET_PATH_LEN_MAX}: choose a shorter path")]
    TooLong {
        path: PathBuf,
        staged: String,
        len: usize,
    },
    #[error(
        "{path}: another process is listening on this socket: stop it, or choose another path"
    )]
    InUse { path: PathBuf },
    #[error(
        "{path}: exists and is not a socket (left as it is): remove it, or choose another path"
    )]
    NotASocket { path: PathBuf },
    #[error("{path}: its directory {dir} does not exist: create it, or choose another path")]
    NoDirectory { path: PathBuf, dir: PathBuf },
    #[error("{path}: {what}: {cause}")]
    Io {
        path: PathBuf,
        what: &'static str,
        cause: std::io::Error,
    },
}

/// A bound socket and the file that names it.
#[derive(Debug)]
pub struct UnixSocket {
    pub listener: UnixListener,
    pub path: PathBuf,
    /// Permission bits of the socket file.
    pub mode: u32,
    /// Device and inode of the socket file, to remove only our own on drop.
    ident: (u64, u64),
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.ident {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Parses memcached's `-a`: octal permission bits that let the owner read and write (or it
/// could not connect itself), e.g. `700`, `0770`, `0777`.
pub fn parse_unix_mask(text: &str) -> Result<u32, String> {
    let digits = text.trim().trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 && mode & 0o600 == 0o600 => Ok(mode),
        _ => Err(format!(
            "{text:?}: expected octal permission bits that keep owner read and write, 0600..=0777 (e.g. 700, 770)"
        )),
    }
}

/// Binds a UNIX socket at `path` with permission bits `mode` (see the module doc). Must run
/// inside a tokio runtime.
pub fn bind_unix(path: &Path, mode: u32) -> Result<UnixSocket, UnixSocketError> {
    let io = |what: &'static str| {
        move |cause| UnixSocketError::Io {
            path: path.to_path_buf(),
            what,
            cause,
        }
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = parent.join(format!("{BIND_DIR_PREFIX}{}", std::process::id()));
    let staged = dir.join("s");
    for candidate in [path, staged.as_path()] {
        let len = candidate.as_os_str().len();
        if len > UNIX_SOCKET_PATH_LEN_MAX {
            return Err(UnixSocketError::TooLong {
                path: path.to_path_buf(),
                staged: staged.display().to_string(),
                len,
            });
        }
    }
    if !parent.is_dir() {
        return Err(UnixSocketError::NoDirectory {
            path: path.to_path_buf(),
            dir: parent,
        });
    }
    clear_stale(path)?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(io("cannot create a private directory next to it"))?;
    let result = (|| {
        let listener = UnixListener::bind(&staged).map_err(io("cannot bind"))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
            .map_err(io("cannot set the socket's mode"))?;
        std::fs::rename(&staged, path).map_err(io("cannot move the socket into place"))?;
        let meta = std::fs::symlink_metadata(path).map_err(io("cannot read the socket file"))?;
        Ok(UnixSocket {
            listener,
            path: path.to_path_buf(),
            mode,
            ident: (meta.dev(), meta.ino()),
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Removes a socket file nobody listens on; refuses a live socket or a file of another kind.
fn clear_stale(path: &Path) -> Result<(), UnixSocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(cause) => {
            return Err(UnixSocketError::Io {
                path: path.to_path_buf(),
                what: "cannot read what is at the path",
                cause,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(UnixSocketError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(UnixSocketError::InUse {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing a socket file nobody listens on");
            std::fs::remove_file(path).map_err(|cause| UnixSocketError::Io {
                path: path.to_path_buf(),
                what: "cannot remove the stale socket file",
                cause,
            })
        }
        Err(cause) => Err(UnixSocketError::Io {
            path: path.to_path_buf(),
            what: "cannot tell whether the socket there is in use",
            cause,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_parse_as_memcached_writes_them() {
        assert_eq!(parse_unix_mask("700"), Ok(0o700));
        assert_eq!(parse_unix_mask("0770"), Ok(0o770));
        assert_eq!(parse_unix_mask("777"), Ok(0o777));
        for bad in ["", "800", "1777", "0400", "rw", "-700"] {
            assert!(parse_unix_mask(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn binds_with_the_mode_and_removes_only_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sock");
        let socket = bind_unix(&path, 0o750).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o750);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        drop(socket);
        assert!(!path.exists(), "dropping removes the socket file");

        // A file put at the path after binding is not ours: dropping leaves it.
        let socket = bind_unix(&path, 0o700).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"keep").unwrap();
        drop(socket);
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
    }

    #[tokio::test]
    async fn refuses_a_live_socket_and_other_files_and_replaces_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sock");
        let _live = bind_unix(&path, 0o700).unwrap();
        let e = bind_unix(&path, 0o700).unwrap_err();
        assert!(matches!(e, UnixSocketError::InUse { .. }), "{e}");
        assert!(
            e.to_string().contains("another process is listening"),
            "{e}"
        );

        // A socket file whose listener is gone (a killed front): replaced.
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(stale.exists());
        let again = bind_unix(&stale, 0o700).unwrap();
        assert!(std::os::unix::net::UnixStream::connect(&stale).is_ok());
        drop(again);

        let file = dir.path().join("file");
        std::fs::write(&file, b"data").unwrap();
        let e = bind_unix(&file, 0o700).unwrap_err();
        assert!(matches!(e, UnixSocketError::NotASocket { .. }), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"data", "left as it was");

        let e = bind_unix(&dir.path().join("no/such/dir.sock"), 0o700).unwrap_err();
        assert!(matches!(e, UnixSocketError::NoDirectory { .. }), "{e}");
        assert!(e.to_string().contains("does not exist"), "{e}");

        let long = dir.path().join("x".repeat(UNIX_SOCKET_PATH_LEN_MAX));
        assert!(matches!(
            bind_unix(&long, 0o700),
            Err(UnixSocketError::TooLong { .. })
        ));
    }
}
