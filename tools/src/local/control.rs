//! `dkc-local status` and `dkc-local down`: act on a run through its run file.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::process::pid_alive;
use super::runfile::RunFile;

/// Longest wait for a supervisor to stop its children after `down`'s SIGTERM.
const DOWN_WAIT_SECS: u64 = 40;
/// Bound on the direct SIGTERM of orphans before SIGKILL.
const ORPHAN_WAIT_MS: u64 = 5000;
const DOWN_POLL_MS: u64 = 100;

fn read(dir: &Path) -> anyhow::Result<RunFile> {
    match RunFile::read(dir) {
        Some(rf) => Ok(rf),
        None => bail!(
            "no dkc-local run in {} (no {}); start one with `dkc-local up --dir {}`",
            dir.display(),
            super::runfile::RUN_FILE,
            dir.display()
        ),
    }
}

pub fn status(dir: &Path) -> anyhow::Result<ExitCode> {
    let rf = read(dir)?;
    let sup = if pid_alive(rf.supervisor) {
        "running"
    } else {
        "GONE"
    };
    println!(
        "dkc-local pid {} ({sup}), data {}",
        rf.supervisor,
        dir.display()
    );
    if !rf.memcached.is_empty() {
        println!("memcached on {}", rf.memcached);
    }
    let mut dead = 0;
    for p in &rf.procs {
        let alive = p.running && pid_alive(p.pid);
        if !alive {
            dead += 1;
        }
        println!(
            "  {:>8}  {:<8} {}",
            p.pid,
            if alive { "running" } else { "EXITED" },
            p.name
        );
    }
    match super::ready::status(rf.slave_ctlport) {
        Some(r) => print!("{}", chmpx::daemon::status::render_table(&r)),
        None => println!(
            "(the slave chmpx on control port {} does not answer)",
            rf.slave_ctlport
        ),
    }
    Ok(if dead == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn wait_gone(pids: &[u32], bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if pids.iter().all(|p| !pid_alive(*p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(DOWN_POLL_MS));
    }
    pids.iter().all(|p| !pid_alive(*p))
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        if pid > 0 {
            // SAFETY: plain kill(2) on a pid from the run file.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

pub fn down(dir: &Path) -> anyhow::Result<ExitCode> {
    let rf = read(dir)?;
    if pid_alive(rf.supervisor) {
        println!("stopping dkc-local pid {}", rf.supervisor);
        signal(rf.supervisor, libc::SIGTERM);
        if !wait_gone(&[rf.supervisor], Duration::from_secs(DOWN_WAIT_SECS)) {
            eprintln!(
                "dkc-local pid {} did not stop in {DOWN_WAIT_SECS} s; killing its children",
                rf.supervisor
            );
        }
    }
    // Whatever still runs (a supervisor that was killed, or one that did not finish).
    let left: Vec<u32> = rf
        .procs
        .iter()
        .map(|p| p.pid)
        .filter(|p| pid_alive(*p))
        .collect();
    if !left.is_empty() {
        for &p in &left {
            signal(p, libc::SIGTERM);
        }
        if !wait_gone(&left, Duration::from_millis(ORPHAN_WAIT_MS)) {
            for &p in &left {
                signal(p, libc::SIGKILL);
            }
            wait_gone(&left, Duration::from_millis(ORPHAN_WAIT_MS));
        }
        super::up::remove_ipc_objects(&rf.group);
    }
    let _ = std::fs::remove_file(super::runfile::path(dir));
    println!("stopped; data kept in {}", dir.display());
    Ok(ExitCode::SUCCESS)
}
