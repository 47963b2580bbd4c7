//! Free TCP ports for one run, reserved for the rest of the process.
//!
//! Why it is more than "bind port 0": a port found free is only bound later, by a daemon that
//! starts after it was chosen. In between, two things took ports in CI runs of the whole
//! workspace: an outgoing connection of another test given it as its source port (any port the
//! kernel hands out for port 0 lies in the ephemeral range, 32768-60999 by default, the same
//! range source ports come from), and another test process that found the same port free.
//! So ports are taken below the ephemeral range, where no source port is ever assigned, and
//! every port handed out is reserved machine-wide until the process ends: a one-byte lock at
//! the port's offset in one lock file ([`lock_path`]), an open-file-description lock that the
//! kernel drops when the process exits, however it exits. A port is handed out only if it is
//! not reserved by this process or another one and binding it on every address (as the
//! daemons listen) works. Without the lock file (a directory that cannot be written), the
//! reservation is per process only, and a warning says so once.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};

use super::LaunchError;

/// First port of the range test ports are taken from.
pub const TEST_PORT_FIRST: u16 = 20_000;
/// Number of ports in that range (it ends below the default ephemeral range, 32768).
pub const TEST_PORT_SPAN: u16 = 12_000;
/// File name (in the temporary directory) of the machine-wide port reservations.
pub const LOCK_FILE_NAME: &str = "dkc-test-ports.lock";
/// Distance between two candidate bases of a block ([`free_port_block`]).
pub const BLOCK_BASE_STEP: u16 = 50;

/// Offset of the next candidate in the range (0 until first used: then derived from the pid).
static NEXT_OFFSET: AtomicU32 = AtomicU32::new(0);
/// Index of the next candidate block base (0 until first used: then derived from the pid).
static NEXT_BLOCK: AtomicU32 = AtomicU32::new(0);
/// Ports this process has handed out (they stay reserved until it exits).
static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
/// The lock file, opened once; `None` when it cannot be opened.
static LOCK_FILE: OnceLock<Option<File>> = OnceLock::new();

/// Where the machine-wide reservations are kept.
pub fn lock_path() -> PathBuf {
    std::env::temp_dir().join(LOCK_FILE_NAME)
}

fn lock_file() -> Option<&'static File> {
    LOCK_FILE
        .get_or_init(|| {
            let path = lock_path();
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o666)
                .open(&path)
            {
                Ok(f) => {
                    // Test processes of other users share it (the umask narrowed the mode);
                    // only its owner can widen it, which is all that is needed.
                    let _ = f.set_permissions(std::fs::Permissions::from_mode(0o666));
                    Some(f)
                }
                Err(e) => {
                    eprintln!(
                        "testkit: cannot open the port reservation file {} ({e}); ports are \
                         reserved within this process only, so parallel test processes may \
                         collide: make the temporary directory writable",
                        path.display()
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// Sets (`libc::F_WRLCK`) or clears (`libc::F_UNLCK`) the lock of byte `port` of the lock
/// file, held by the open file description of `file`, without waiting.
fn set_port_lock(file: &File, port: u16, kind: libc::c_int) -> nix::Result<()> {
    let range = libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: libc::off_t::from(port),
        l_len: 1,
        l_pid: 0,
    };
    fcntl(file.as_fd(), FcntlArg::F_OFD_SETLK(&range)).map(|_| ())
}

/// Locks byte `port` of the lock file for this process. `Ok(false)`: another process holds it.
fn lock_machine_wide(port: u16) -> Result<bool, LaunchError> {
    let Some(file) = lock_file() else {
        return Ok(true);
    };
    match set_port_lock(file, port, libc::F_WRLCK) {
        Ok(()) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(e) => Err(LaunchError::Ports(std::io::Error::other(format!(
            "cannot lock port {port} in {}: {e}",
            lock_path().display()
        )))),
    }
}

/// Gives the lock of `port` back (a candidate that turned out not to be bindable, or the rest
/// of a block that did not fit).
fn unlock_machine_wide(port: u16) {
    if let Some(file) = lock_file() {
        let _ = set_port_lock(file, port, libc::F_UNLCK);
    }
}

/// Reserves `port` if nobody has it: not handed out by this process, not locked by another,
/// bindable on every address. The returned listener holds the port until the caller has found
/// all the ports it needs; the reservation outlives it.
fn reserve(port: u16, given: &mut BTreeSet<u16>) -> Result<Option<TcpListener>, LaunchError> {
    if given.contains(&port) || !lock_machine_wide(port)? {
        return Ok(None);
    }
    match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => {
            given.insert(port);
            Ok(Some(l))
        }
        Err(_) => {
            unlock_machine_wide(port);
            Ok(None)
        }
    }
}

fn release(port: u16, given: &mut BTreeSet<u16>) {
    given.remove(&port);
    unlock_machine_wide(port);
}

/// A start in `0..span` that differs between processes, so they rarely try the same ports.
fn start_for_pid(counter: &AtomicU32, span: u32) -> u32 {
    if counter.load(Ordering::Relaxed) == 0 {
        let start = (std::process::id().wrapping_mul(7_919) % span).max(1);
        let _ = counter.compare_exchange(0, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    counter.fetch_add(1, Ordering::Relaxed) % span
}

fn exhausted(what: &str) -> LaunchError {
    LaunchError::Ports(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!(
            "no {what} in {TEST_PORT_FIRST}..{} (all bound or reserved by other test processes; \
             reservations end with their process)",
            u32::from(TEST_PORT_FIRST) + u32::from(TEST_PORT_SPAN)
        ),
    ))
}

fn given() -> std::sync::MutexGuard<'static, BTreeSet<u16>> {
    GIVEN.lock().unwrap_or_else(|p| p.into_inner())
}

/// `n` distinct free ports, reserved for this process until it exits.
pub fn free_ports(n: usize) -> Result<Vec<u16>, LaunchError> {
    let mut given = given();
    let mut held: Vec<(u16, TcpListener)> = Vec::with_capacity(n);
    let mut tried = 0u32;
    while held.len() < n {
        if tried >= u32::from(TEST_PORT_SPAN) {
            for (p, _) in &held {
                release(*p, &mut given);
            }
            return Err(exhausted("free port"));
        }
        tried += 1;
        let port = TEST_PORT_FIRST + start_for_pid(&NEXT_OFFSET, u32::from(TEST_PORT_SPAN)) as u16;
        if let Some(l) = reserve(port, &mut given)? {
            held.push((port, l));
        }
    }
    Ok(held.into_iter().map(|(p, _)| p).collect())
}

/// A base port such that `base + o` is free for every `o` in `offsets` (a layout of ports at
/// fixed distances, as `dkc-local` derives its ports from one base); all of them are reserved
/// for this process until it exits.
pub fn free_port_block(offsets: &[u16]) -> Result<u16, LaunchError> {
    let reach = offsets.iter().copied().max().unwrap_or(0);
    if reach >= TEST_PORT_SPAN {
        return Err(LaunchError::Ports(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "a block reaching {reach} ports past its base does not fit in {TEST_PORT_SPAN}"
            ),
        )));
    }
    let bases = u32::from((TEST_PORT_SPAN - reach).div_ceil(BLOCK_BASE_STEP));
    let mut given = given();
    for _ in 0..bases {
        let base = TEST_PORT_FIRST + start_for_pid(&NEXT_BLOCK, bases) as u16 * BLOCK_BASE_STEP;
        let mut held: Vec<(u16, TcpListener)> = Vec::with_capacity(offsets.len());
        for o in offsets {
            match reserve(base + o, &mut given)? {
                Some(l) => held.push((base + o, l)),
                None => break,
            }
        }
        if held.len() == offsets.len() {
            return Ok(base);
        }
        for (p, _) in &held {
            release(*p, &mut given);
        }
    }
    Err(exhausted("free block of ports"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_one_call_differ_and_lie_below_the_ephemeral_range() {
        let ports = free_ports(8).unwrap();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), 8);
        assert!(ports
            .iter()
            .all(|p| (TEST_PORT_FIRST..TEST_PORT_FIRST + TEST_PORT_SPAN).contains(p)));
    }

    #[test]
    fn a_port_handed_out_is_never_handed_out_again_by_this_process() {
        let first: BTreeSet<u16> = free_ports(20).unwrap().into_iter().collect();
        let second: BTreeSet<u16> = free_ports(20).unwrap().into_iter().collect();
        assert!(first.is_disjoint(&second), "{first:?} and {second:?}");
    }

    #[test]
    fn a_block_has_every_offset_free_and_reserved() {
        let offsets = [0, 1, 2, 1000, 1001];
        let base = free_port_block(&offsets).unwrap();
        let mine = given();
        for o in offsets {
            assert!(mine.contains(&(base + o)), "port {} not reserved", base + o);
        }
    }

    #[test]
    fn a_block_too_wide_for_the_range_is_refused_with_its_size() {
        let e = free_port_block(&[0, TEST_PORT_SPAN])
            .unwrap_err()
            .to_string();
        assert!(e.contains(&TEST_PORT_SPAN.to_string()), "{e}");
    }

    /// The reservation is machine-wide: a port locked through another open file description
    /// of the lock file (to the kernel, the same as another test process's lock) is skipped.
    #[test]
    fn a_port_reserved_by_another_process_is_skipped() {
        assert!(
            lock_file().is_some(),
            "{} cannot be opened",
            lock_path().display()
        );
        let other = OpenOptions::new()
            .read(true)
            .write(true)
            .open(lock_path())
            .unwrap();
        // Reserve, through `other`, the next few candidates this process would try.
        let next = NEXT_OFFSET.load(Ordering::Relaxed);
        let mut taken = BTreeSet::new();
        for i in 0..64u32 {
            let port = TEST_PORT_FIRST + ((next + i) % u32::from(TEST_PORT_SPAN)) as u16;
            if set_port_lock(&other, port, libc::F_WRLCK).is_ok() {
                taken.insert(port);
            }
        }
        assert!(!taken.is_empty());
        let ports: BTreeSet<u16> = free_ports(4).unwrap().into_iter().collect();
        assert!(ports.is_disjoint(&taken), "{ports:?} overlaps {taken:?}");
    }
}
