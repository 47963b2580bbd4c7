//! Start-up cleanup: objects left by processes that died while chmpx was down, and a nudge to
//! live processes still attached to the previous chmpx run.
//!
//! Segments are found by listing /dev/shm (where Linux exposes the POSIX shm namespace); the
//! queue names follow from the segment names, so dead processes' queues are removed even when
//! /dev/mqueue is not mounted. If /dev/mqueue is mounted it is scanned too, for queues whose
//! segment is already gone (a process that died half-way through attaching). If it is not
//! mounted, such orphan queues stay until a process with that pid attaches again (which
//! unlinks them first) or the IPC namespace ends; mount it (`mount -t mqueue none
//! /dev/mqueue`) to have them removed.

use std::collections::BTreeSet;

use super::liveness::pid_alive;
use super::names::ChmpxNames;
use super::segment::{Segment, SegmentState};
use super::wire::Doorbell;
use crate::ipc::mq::{Access, MessageQueue};
use crate::ipc::shm::SharedMemory;

/// Where Linux mounts the POSIX shared-memory namespace.
pub const SHM_DIR: &str = "/dev/shm";
/// Where the POSIX message-queue namespace may be mounted.
pub const MQUEUE_DIR: &str = "/dev/mqueue";

/// What the start-up scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Segments of dead processes removed.
    pub removed_segments: Vec<String>,
    /// Queues of dead processes removed (derived from segments or found in /dev/mqueue).
    pub removed_queues: Vec<String>,
    /// Live processes attached to the previous chmpx run, told to re-attach.
    pub told_to_reattach: Vec<String>,
    /// Whether /dev/mqueue was mounted and scanned.
    pub mqueue_scanned: bool,
}

fn list(dir: &str) -> Option<Vec<String>> {
    let rd = std::fs::read_dir(dir).ok()?;
    Some(
        rd.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
    )
}

/// Scans for this chmpx's attachment objects and removes those of dead processes.
pub fn cleanup_stale(names: &ChmpxNames) -> CleanupReport {
    let mut report = CleanupReport::default();
    let mut seen = BTreeSet::new();
    for file in list(SHM_DIR).unwrap_or_default() {
        let Some((pid, counter)) = names.parse_attachment(&file) else {
            continue;
        };
        let a = names.attachment(pid, counter);
        if format!("/{file}") != a.segment {
            continue;
        }
        seen.insert((pid, counter));
        if !pid_alive(pid) {
            if SharedMemory::unlink(&a.segment).is_ok() {
                report.removed_segments.push(a.segment.clone());
            }
            for q in [&a.up_queue, &a.down_queue] {
                if MessageQueue::unlink(q).is_ok() {
                    report.removed_queues.push(q.clone());
                }
            }
            continue;
        }
        // A live process attached to the chmpx that ran before us: tell it to start over.
        if let Ok((seg, _)) = Segment::open_checked(&a.segment, pid, counter, usize::MAX) {
            if seg.leave_accepted(SegmentState::ChmpxLeft) {
                if let Ok(q) = MessageQueue::open(&a.down_queue, Access::Write, true) {
                    let _ = q.send(&Doorbell::Reattach.encode());
                }
                report.told_to_reattach.push(a.segment.clone());
            }
        }
    }
    if let Some(files) = list(MQUEUE_DIR) {
        report.mqueue_scanned = true;
        for file in files {
            let Some((pid, counter)) = names.parse_attachment(&file) else {
                continue;
            };
            if seen.contains(&(pid, counter)) || pid_alive(pid) {
                continue;
            }
            let q = format!("/{file}");
            if MessageQueue::unlink(&q).is_ok() {
                report.removed_queues.push(q);
            }
        }
    }
    report
}
