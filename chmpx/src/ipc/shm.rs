//! A POSIX shared-memory segment (`shm_open` + `mmap`) that unmaps on drop, and unlinks its name
//! on drop when this side created it.

use std::ffi::CString;
use std::ptr::NonNull;

use super::error::{validate_object_name, IpcError};

/// A mapped segment.
#[derive(Debug)]
pub struct SharedMemory {
    ptr: NonNull<u8>,
    len: usize,
    name: String,
    unlink_on_drop: bool,
}

// SAFETY: the mapping is plain shared bytes; all cross-thread access goes through atomics or is
// guarded by the users (the ring protocol).
unsafe impl Send for SharedMemory {}
// SAFETY: as above.
unsafe impl Sync for SharedMemory {}

fn c_name(name: &str) -> Result<CString, IpcError> {
    validate_object_name(name)?;
    CString::new(name).map_err(|_| IpcError::InvalidName {
        name: name.to_string(),
        reason: "contains a NUL byte",
    })
}

/// Closes a descriptor when it goes out of scope (the mapping outlives it).
struct FdGuard(libc::c_int);

impl Drop for FdGuard {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.0) };
    }
}

impl SharedMemory {
    /// Creates a new zero-filled segment of `len` bytes with exactly `mode` (`O_EXCL`).
    pub fn create(name: &str, len: usize, mode: u32) -> Result<Self, IpcError> {
        let cname = c_name(name)?;
        // SAFETY: valid C string, flags and mode.
        let fd = unsafe {
            libc::shm_open(
                cname.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                mode as libc::mode_t,
            )
        };
        if fd < 0 {
            return Err(IpcError::last_os("shm_open(O_CREAT)", name));
        }
        let guard = FdGuard(fd);
        let unlink = |e| {
            // SAFETY: valid C string.
            unsafe { libc::shm_unlink(cname.as_ptr()) };
            e
        };
        // SAFETY: fd is open; umask may have narrowed the mode, so set it exactly.
        if unsafe { libc::fchmod(fd, mode as libc::mode_t) } != 0 {
            return Err(unlink(IpcError::last_os("fchmod", name)));
        }
        // SAFETY: fd is open.
        if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
            return Err(unlink(IpcError::last_os("ftruncate", name)));
        }
        let ptr = map(guard.0, len, name).map_err(unlink)?;
        Ok(SharedMemory {
            ptr,
            len,
            name: name.to_string(),
            unlink_on_drop: true,
        })
    }

    /// Opens and maps an existing segment whole; refuses one smaller than `len_min` bytes.
    pub fn open(name: &str, len_min: usize) -> Result<Self, IpcError> {
        let cname = c_name(name)?;
        // SAFETY: valid C string and flags.
        let fd = unsafe { libc::shm_open(cname.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
        if fd < 0 {
            return Err(IpcError::last_os("shm_open", name));
        }
        let guard = FdGuard(fd);
        // SAFETY: stat is plain data.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: open descriptor and valid pointer.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Err(IpcError::last_os("fstat", name));
        }
        let len = st.st_size as usize;
        if len < len_min || len == 0 {
            return Err(IpcError::TooSmall {
                name: name.to_string(),
                actual: len as u64,
                expected: len_min as u64,
            });
        }
        let ptr = map(guard.0, len, name)?;
        Ok(SharedMemory {
            ptr,
            len,
            name: name.to_string(),
            unlink_on_drop: false,
        })
    }

    /// Removes a segment name; a missing name is not an error.
    pub fn unlink(name: &str) -> Result<(), IpcError> {
        let cname = c_name(name)?;
        // SAFETY: valid C string.
        if unsafe { libc::shm_unlink(cname.as_ptr()) } != 0 {
            return match IpcError::last_os("shm_unlink", name) {
                IpcError::NotFound { .. } => Ok(()),
                e => Err(e),
            };
        }
        Ok(())
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping, bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, for a mapped segment).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether dropping this mapping also unlinks the name.
    pub fn set_unlink_on_drop(&mut self, on: bool) {
        self.unlink_on_drop = on;
    }
}

fn map(fd: libc::c_int, len: usize, name: &str) -> Result<NonNull<u8>, IpcError> {
    // SAFETY: fd is an open shm descriptor at least `len` bytes long.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(IpcError::last_os("mmap", name));
    }
    NonNull::new(p.cast()).ok_or_else(|| IpcError::last_os("mmap", name))
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: we own this mapping and unmap it once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        if self.unlink_on_drop {
            let _ = SharedMemory::unlink(&self.name);
        }
    }
}

/// Permission bits of a segment by name (through /dev/shm, where Linux mounts the namespace).
pub fn segment_mode(name: &str) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(format!("/dev/shm{name}")).ok()?;
    Some(meta.permissions().mode() & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_open_share_bytes_and_unlink() {
        let name = format!("/dkc-ipc-test.{}.shm", std::process::id());
        let a = SharedMemory::create(&name, 4096, 0o600).unwrap();
        assert_eq!(segment_mode(&name), Some(0o600));
        let b = SharedMemory::open(&name, 4096).unwrap();
        // SAFETY: both mappings are 4096 bytes long.
        unsafe {
            *a.as_ptr().add(100) = 42;
            assert_eq!(*b.as_ptr().add(100), 42);
        }
        assert!(matches!(
            SharedMemory::open(&name, 8192),
            Err(IpcError::TooSmall { .. })
        ));
        drop(a);
        assert!(matches!(
            SharedMemory::open(&name, 1),
            Err(IpcError::NotFound { .. })
        ));
    }
}
