//! `dkc-local up --detach`: starts `dkc-local up` (same arguments, without --detach) as a
//! background session leader whose output goes to `DIR/dkc-local.log`, waits for its ready
//! line, prints it and returns. `dkc-local down` stops it.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use std::os::unix::process::CommandExt;

/// The background run's output, inside the data directory.
pub const DETACHED_LOG: &str = "dkc-local.log";
/// Longest wait for the background run's ready line (it builds and starts a cluster).
const DETACH_READY_WAIT_SECS: u64 = 600;
const DETACH_POLL_MS: u64 = 200;

pub fn up_detached(dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let log_path = dir.join(DETACHED_LOG);
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find dkc-local's own executable")?;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--detach")
        .collect();
    let mut cmd = Command::new(exe);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the run from this terminal's session.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .context("cannot start the background dkc-local")?;
    let deadline = Instant::now() + Duration::from_secs(DETACH_READY_WAIT_SECS);
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("ready: ")) {
            println!("{line}");
            println!(
                "dkc-local runs in the background (pid {}); output in {}; stop it with `dkc-local down --dir {}`",
                child.id(),
                log_path.display(),
                dir.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if let Ok(Some(st)) = child.try_wait() {
            bail!("the background dkc-local exited ({st}) before it was ready:\n{text}");
        }
        if Instant::now() >= deadline {
            bail!(
                "the background dkc-local is not ready after {DETACH_READY_WAIT_SECS} s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(DETACH_POLL_MS));
    }
}
