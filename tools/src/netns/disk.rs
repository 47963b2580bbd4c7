//! Full-disk faults: small tmpfs data directories and filling them.
//!
//! - [`Tmpfs`]: a tmpfs of a given size mounted on a directory of the caller's mount namespace,
//!   unmounted when dropped (single-host tests, e.g. `tests/disk_full.rs`).
//! - Lab hosts get theirs inside their own mount namespace instead ([`super::LabSpec`]'s
//!   `data_tmpfs_bytes`, mounted by the host's holder with [`tmpfs_options`]), so it dies with
//!   the host even when the test process is killed; [`super::Lab::fill_disk`] and
//!   [`super::Lab::free_disk`] fill it with a filler file and remove it.
//!
//! [`fill_until_full`] refuses every directory that is not a tmpfs of at most the size the
//! caller expects: a filler must never land on a real disk.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::NetnsError;

/// Name of the filler file [`fill_until_full`] writes.
pub const FILLER_NAME: &str = "disk-full.filler";
/// Bytes the filler is written in at first, then [`FILL_TAIL_CHUNK_BYTES`] for the rest.
pub const FILL_CHUNK_BYTES: usize = 1024 * 1024;
/// The last chunks of the filler (a page: what tmpfs allocates at a time).
pub const FILL_TAIL_CHUNK_BYTES: usize = 4096;
/// `f_type` of a tmpfs (`TMPFS_MAGIC`, linux/magic.h).
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The mount options of a tmpfs of `bytes` bytes that only its owner (root) may enter.
pub fn tmpfs_options(bytes: u64) -> String {
    format!("size={bytes},mode=0700")
}

/// A tmpfs mounted on a directory, unmounted (lazily, so a daemon's open file cannot keep it)
/// when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    /// Where it is mounted.
    pub mount: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` bytes on `dir` (created if missing). Needs root.
    pub fn mount(dir: &Path, bytes: u64) -> Result<Tmpfs, NetnsError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| NetnsError::io(format!("mkdir {}", dir.display()), e))?;
        let bad = |what: &str| NetnsError::Bad(format!("{what} of {} holds a NUL", dir.display()));
        let target = CString::new(dir.as_os_str().as_bytes()).map_err(|_| bad("path"))?;
        let fstype = CString::new("tmpfs").map_err(|_| bad("type"))?;
        let data = CString::new(tmpfs_options(bytes)).map_err(|_| bad("options"))?;
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if r != 0 {
            return Err(NetnsError::io(
                format!(
                    "mount a {bytes}-byte tmpfs on {} (needs root)",
                    dir.display()
                ),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Tmpfs {
            mount: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.mount.as_os_str().as_bytes()) {
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Size of the file system holding `dir`, bytes, when it is a tmpfs; an error otherwise.
pub fn tmpfs_size(dir: &Path) -> Result<u64, NetnsError> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| NetnsError::Bad(format!("path {} holds a NUL", dir.display())))?;
    let mut fs = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: statfs fills the struct it is given on success; read only then.
    if unsafe { libc::statfs(path.as_ptr(), fs.as_mut_ptr()) } != 0 {
        return Err(NetnsError::io(
            format!("statfs {}", dir.display()),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: initialised by the successful call above.
    let fs = unsafe { fs.assume_init() };
    // The widths of these fields differ between platforms.
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    let (ftype, blocks, bsize) = (fs.f_type as i64, fs.f_blocks as u64, fs.f_bsize as u64);
    if ftype != TMPFS_MAGIC {
        return Err(NetnsError::Bad(format!(
            "{} is not on a tmpfs (f_type {ftype:#x}); a disk-full fault fills only tmpfs data \
             directories (LabSpec::data_tmpfs_bytes)",
            dir.display()
        )));
    }
    Ok(blocks.saturating_mul(bsize))
}

/// Writes [`FILLER_NAME`] in `dir` until the file system is full (ENOSPC); returns the
/// filler's size. `dir` must be on a tmpfs of at most `max_bytes` bytes (checked first).
pub fn fill_until_full(dir: &Path, max_bytes: u64) -> Result<u64, NetnsError> {
    let size = tmpfs_size(dir)?;
    if size > max_bytes {
        return Err(NetnsError::Bad(format!(
            "the tmpfs of {} holds {size} bytes, more than the {max_bytes} a disk-full fault \
             fills",
            dir.display()
        )));
    }
    let path = dir.join(FILLER_NAME);
    let mut f = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| NetnsError::io(format!("create {}", path.display()), e))?;
    let mut written = 0u64;
    for chunk in [FILL_CHUNK_BYTES, FILL_TAIL_CHUNK_BYTES] {
        let block = vec![0x5au8; chunk];
        // Bounded: the file system holds `size` bytes.
        for _ in 0..=size / chunk as u64 {
            match f.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(NetnsError::io(format!("write {}", path.display()), e)),
            }
        }
    }
    Ok(written)
}

/// Removes the filler of [`fill_until_full`] from `dir` (nothing to do when there is none).
pub fn remove_filler(dir: &Path) -> Result<(), NetnsError> {
    let path = dir.join(FILLER_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetnsError::io(format!("remove {}", path.display()), e)),
    }
}

impl super::Lab {
    /// Fills host `i`'s tmpfs data directory (the lab must have been built with
    /// `data_tmpfs_bytes`) with a filler file until it is full; returns the filler's size.
    pub fn fill_disk(&self, i: usize) -> Result<u64, NetnsError> {
        let Some(max) = self.spec().data_tmpfs_bytes else {
            return Err(NetnsError::Bad(
                "a disk-full fault needs tmpfs data directories: build the lab with \
                 LabSpec::data_tmpfs_bytes"
                    .into(),
            ));
        };
        fill_until_full(&self.data_dir_of(i), max)
    }

    /// Removes host `i`'s filler (the heal of [`super::Lab::fill_disk`]).
    pub fn free_disk(&self, i: usize) -> Result<(), NetnsError> {
        remove_filler(&self.data_dir_of(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filler never lands on a real disk, nor on a tmpfs larger than the caller expects.
    #[test]
    fn fill_refuses_a_directory_that_is_not_a_small_tmpfs() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let err = fill_until_full(dir.path(), FILL_CHUNK_BYTES as u64)
            .expect_err("a temporary directory is no tmpfs of at most 1 MiB");
        let text = err.to_string();
        assert!(
            text.contains("not on a tmpfs") || text.contains("more than"),
            "{text}"
        );
        assert!(
            !dir.path().join(FILLER_NAME).exists(),
            "a filler was written"
        );
        remove_filler(dir.path()).expect("removing a missing filler is no error");
    }
}
