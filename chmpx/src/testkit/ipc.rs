//! Removal of the POSIX queues and shared-memory segments of one cluster (GROUP). A SIGKILLed
//! chmpx cannot clean up, and queues count against the system-wide `queues_max` (256 on a
//! stock kernel, shared by everything on the machine), so whoever killed it removes them.
//!
//! Names follow the attach transport: segments `/dev/shm/dkc.<GROUP>.*`, the accept queue
//! `/dkc.<GROUP>.<...>.accept` next to the `.chmpx` segment, doorbells `.up` / `.dn` next to
//! each attachment segment.

use std::ffi::CString;

/// Where POSIX shared memory appears as files.
const SHM_DIR: &str = "/dev/shm";

fn unlink_queue(name: &str) {
    if let Ok(c) = CString::new(name) {
        // SAFETY: mq_unlink reads a NUL-terminated name and touches no memory of ours.
        unsafe { libc::mq_unlink(c.as_ptr()) };
    }
}

/// Removes every queue and segment of `group`. Call only when no process of it runs: a live
/// chmpx would lose its objects under it.
pub fn remove_ipc_objects(group: &str) {
    let prefix = format!("dkc.{group}.");
    let Ok(dir) = std::fs::read_dir(SHM_DIR) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&prefix) {
            continue;
        }
        if let Some(base) = name.strip_suffix(".chmpx") {
            unlink_queue(&format!("/{base}.accept"));
        } else {
            unlink_queue(&format!("/{name}.up"));
            unlink_queue(&format!("/{name}.dn"));
        }
        let _ = std::fs::remove_file(entry.path());
    }
}
