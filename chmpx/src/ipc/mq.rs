//! A POSIX message queue descriptor that closes on drop (and unlinks its name on drop when this
//! side created it). On Linux an `mqd_t` is a file descriptor, so it can be polled (epoll,
//! tokio `AsyncFd`) and `fstat`ed (to check its mode).

use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use super::error::{validate_object_name, IpcError};
use super::limits::classify_mq_open_error;

/// Which end(s) of the queue this descriptor may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    fn flags(self) -> libc::c_int {
        match self {
            Access::Read => libc::O_RDONLY,
            Access::Write => libc::O_WRONLY,
            Access::ReadWrite => libc::O_RDWR,
        }
    }
}

/// Depth and message size of a queue, as given to `mq_open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueShape {
    pub maxmsg: u32,
    pub msgsize: u32,
}

/// An open message queue.
#[derive(Debug)]
pub struct MessageQueue {
    mqd: libc::mqd_t,
    name: String,
    msgsize: usize,
    unlink_on_drop: bool,
}

fn c_name(name: &str) -> Result<CString, IpcError> {
    validate_object_name(name)?;
    CString::new(name).map_err(|_| IpcError::InvalidName {
        name: name.to_string(),
        reason: "contains a NUL byte",
    })
}

impl MessageQueue {
    /// Creates a new queue (`O_CREAT|O_EXCL`) with exactly `mode` (umask does not apply: the
    /// mode is set again with `fchmod`). The name is unlinked when the result is dropped.
    pub fn create(
        name: &str,
        shape: QueueShape,
        mode: u32,
        access: Access,
        nonblocking: bool,
    ) -> Result<Self, IpcError> {
        let cname = c_name(name)?;
        // SAFETY: mq_attr is plain data; zero is a valid starting value.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        attr.mq_maxmsg = libc::c_long::from(shape.maxmsg as i32);
        attr.mq_msgsize = libc::c_long::from(shape.msgsize as i32);
        let mut flags = access.flags() | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
        if nonblocking {
            flags |= libc::O_NONBLOCK;
        }
        // SAFETY: valid C string, flags, mode and a pointer to an initialised mq_attr.
        let mqd = unsafe {
            libc::mq_open(
                cname.as_ptr(),
                flags,
                mode as libc::mode_t,
                &mut attr as *mut libc::mq_attr,
            )
        };
        if mqd == -1 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if errno != libc::EEXIST {
                if let Some(limit) =
                    classify_mq_open_error(errno, u64::from(shape.maxmsg), u64::from(shape.msgsize))
                {
                    return Err(IpcError::Limit {
                        name: name.to_string(),
                        limit,
                    });
                }
            }
            return Err(IpcError::last_os("mq_open(O_CREAT)", name));
        }
        let q = MessageQueue {
            mqd,
            name: name.to_string(),
            msgsize: shape.msgsize as usize,
            unlink_on_drop: true,
        };
        // SAFETY: mqd is an open descriptor (a file descriptor on Linux).
        if unsafe { libc::fchmod(mqd, mode as libc::mode_t) } != 0 {
            return Err(IpcError::last_os("fchmod", name));
        }
        Ok(q)
    }

    /// Opens an existing queue. The name is not unlinked on drop.
    pub fn open(name: &str, access: Access, nonblocking: bool) -> Result<Self, IpcError> {
        let cname = c_name(name)?;
        let mut flags = access.flags() | libc::O_CLOEXEC;
        if nonblocking {
            flags |= libc::O_NONBLOCK;
        }
        // SAFETY: valid C string and flags; no O_CREAT so no further arguments are read.
        let mqd = unsafe { libc::mq_open(cname.as_ptr(), flags) };
        if mqd == -1 {
            return Err(IpcError::last_os("mq_open", name));
        }
        let mut q = MessageQueue {
            mqd,
            name: name.to_string(),
            msgsize: 0,
            unlink_on_drop: false,
        };
        q.msgsize = q.shape()?.msgsize as usize;
        Ok(q)
    }

    /// Removes a queue name; a missing name is not an error.
    pub fn unlink(name: &str) -> Result<(), IpcError> {
        let cname = c_name(name)?;
        // SAFETY: valid C string.
        if unsafe { libc::mq_unlink(cname.as_ptr()) } != 0 {
            return match IpcError::last_os("mq_unlink", name) {
                IpcError::NotFound { .. } => Ok(()),
                e => Err(e),
            };
        }
        Ok(())
    }

    /// The name this queue was opened by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether dropping this descriptor also unlinks the name.
    pub fn set_unlink_on_drop(&mut self, on: bool) {
        self.unlink_on_drop = on;
    }

    /// The queue's depth and message size as the kernel reports them.
    pub fn shape(&self) -> Result<QueueShape, IpcError> {
        // SAFETY: mq_attr is plain data; mq_getattr fills it.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        // SAFETY: open descriptor and a valid pointer.
        if unsafe { libc::mq_getattr(self.mqd, &mut attr) } != 0 {
            return Err(IpcError::last_os("mq_getattr", &self.name));
        }
        Ok(QueueShape {
            maxmsg: attr.mq_maxmsg as u32,
            msgsize: attr.mq_msgsize as u32,
        })
    }

    /// Messages currently queued.
    pub fn pending(&self) -> Result<u64, IpcError> {
        // SAFETY: as in `shape`.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        // SAFETY: open descriptor and a valid pointer.
        if unsafe { libc::mq_getattr(self.mqd, &mut attr) } != 0 {
            return Err(IpcError::last_os("mq_getattr", &self.name));
        }
        Ok(attr.mq_curmsgs as u64)
    }

    /// The permission bits of the queue (from `fstat` on the descriptor).
    pub fn mode(&self) -> Result<u32, IpcError> {
        // SAFETY: stat is plain data; fstat fills it for an open descriptor.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: open descriptor and a valid pointer.
        if unsafe { libc::fstat(self.mqd, &mut st) } != 0 {
            return Err(IpcError::last_os("fstat", &self.name));
        }
        Ok(st.st_mode & 0o7777)
    }

    /// Sends one message. `Ok(false)` means the queue is full (non-blocking descriptor): for a
    /// doorbell that only means a wake-up is already pending.
    pub fn send(&self, msg: &[u8]) -> Result<bool, IpcError> {
        // SAFETY: the buffer is valid for msg.len() bytes.
        let rc = unsafe { libc::mq_send(self.mqd, msg.as_ptr().cast(), msg.len(), 0) };
        if rc == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) => Ok(false),
            _ => Err(IpcError::Os {
                op: "mq_send",
                name: self.name.clone(),
                source: err,
            }),
        }
    }

    /// Receives one message into `buf` (which must hold the queue's message size). `Ok(None)`
    /// when nothing is queued (non-blocking descriptor) or when interrupted by a signal.
    pub fn receive(&self, buf: &mut [u8]) -> Result<Option<usize>, IpcError> {
        self.check_buf(buf)?;
        // SAFETY: the buffer is valid for buf.len() bytes.
        let n = unsafe {
            libc::mq_receive(
                self.mqd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                std::ptr::null_mut(),
            )
        };
        self.received(n)
    }

    /// Receives one message, waiting at most `timeout` (blocking descriptor). `Ok(None)` on
    /// timeout, on an empty non-blocking queue, or when interrupted by a signal.
    pub fn receive_timeout(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<usize>, IpcError> {
        self.check_buf(buf)?;
        let deadline = realtime_after(timeout);
        // SAFETY: the buffer is valid for buf.len() bytes and the timespec is initialised.
        let n = unsafe {
            libc::mq_timedreceive(
                self.mqd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                std::ptr::null_mut(),
                &deadline,
            )
        };
        self.received(n)
    }

    fn check_buf(&self, buf: &[u8]) -> Result<(), IpcError> {
        if buf.len() < self.msgsize {
            return Err(IpcError::Os {
                op: "mq_receive",
                name: self.name.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "receive buffer of {} bytes is below the queue message size {}",
                        buf.len(),
                        self.msgsize
                    ),
                ),
            });
        }
        Ok(())
    }

    fn received(&self, n: isize) -> Result<Option<usize>, IpcError> {
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN | libc::ETIMEDOUT | libc::EINTR) => Ok(None),
            _ => Err(IpcError::Os {
                op: "mq_receive",
                name: self.name.clone(),
                source: err,
            }),
        }
    }
}

/// The absolute CLOCK_REALTIME instant `timeout` from now, as `mq_timedreceive` wants it.
fn realtime_after(timeout: Duration) -> libc::timespec {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let total_ns = now.tv_nsec as u64 + u64::from(timeout.subsec_nanos());
    libc::timespec {
        tv_sec: now.tv_sec
            + timeout.as_secs().min(i32::MAX as u64) as libc::time_t
            + (total_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (total_ns % 1_000_000_000) as libc::c_long,
    }
}

impl AsRawFd for MessageQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.mqd
    }
}

impl Drop for MessageQueue {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::mq_close(self.mqd) };
        if self.unlink_on_drop {
            let _ = MessageQueue::unlink(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique(tag: &str) -> String {
        format!("/dkc-ipc-test.{}.{tag}", std::process::id())
    }

    #[test]
    fn create_send_receive_and_unlink_on_drop() {
        let name = unique("q1");
        let shape = QueueShape {
            maxmsg: 2,
            msgsize: 16,
        };
        let q = MessageQueue::create(&name, shape, 0o600, Access::ReadWrite, true).unwrap();
        assert_eq!(q.shape().unwrap(), shape);
        assert_eq!(q.mode().unwrap(), 0o600);
        assert!(q.send(b"one").unwrap());
        assert!(q.send(b"two").unwrap());
        assert!(!q.send(b"three").unwrap(), "full queue must report false");
        let mut buf = [0u8; 16];
        assert_eq!(q.receive(&mut buf).unwrap(), Some(3));
        assert_eq!(&buf[..3], b"one");
        assert!(matches!(
            MessageQueue::create(&name, shape, 0o600, Access::Read, true),
            Err(IpcError::Exists { .. })
        ));
        drop(q);
        assert!(matches!(
            MessageQueue::open(&name, Access::Read, true),
            Err(IpcError::NotFound { .. })
        ));
    }

    #[test]
    fn receive_timeout_returns_none() {
        let name = unique("q2");
        let shape = QueueShape {
            maxmsg: 1,
            msgsize: 8,
        };
        let q = MessageQueue::create(&name, shape, 0o600, Access::ReadWrite, false).unwrap();
        let mut buf = [0u8; 8];
        let t = std::time::Instant::now();
        assert_eq!(
            q.receive_timeout(&mut buf, Duration::from_millis(20))
                .unwrap(),
            None
        );
        assert!(t.elapsed() >= Duration::from_millis(15));
    }
}
