//! Where the daemons' executables are.
//!
//! Integration tests of this crate do not make cargo build other packages' binaries (a
//! dependency on a package builds its library only). The harness looks for them next to the
//! test executable (`target/<profile>/`, where `cargo build --release --bins -p chmpx -p
//! dkc-server -p dkc-client` puts them), then in `target/dkc-tests-bins/<profile>/`.
//!
//! When they are in neither, the first test of a process runs that `cargo build` itself, under
//! a file lock so parallel test processes build once. It must build into its own target dir
//! (`target/dkc-tests-bins`): `cargo test` holds the lock of its target dir while tests run,
//! so a nested build there would wait forever. That first build compiles the daemons from
//! scratch (minutes); building them beforehand with the command above avoids it.
//!
//! Set `DKC_TEST_BIN_DIR` to use binaries from elsewhere, or `DKC_TEST_NO_BUILD=1` to never
//! build (then a missing binary fails with the command to run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The executables the scenarios start.
pub const BINARIES: [&str; 2] = ["chmpx", "dkc-server"];

/// Packages whose binaries the harness builds when one is missing.
pub const BUILD_PACKAGES: [&str; 3] = ["chmpx", "dkc-server", "dkc-client"];

static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The directory holding the test executable's profile outputs (`target/<profile>`).
fn profile_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("DKC_TEST_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // target/<profile>/deps/<test>-<hash>
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("cannot find the target dir above {}", exe.display()))
}

fn build_command(profile: &Path) -> String {
    let release = if profile.file_name().is_some_and(|n| n == "release") {
        " --release"
    } else {
        ""
    };
    format!(
        "cargo build{release} --bins -p {}",
        BUILD_PACKAGES.join(" -p ")
    )
}

fn all_present(dir: &Path) -> bool {
    BINARIES.iter().all(|b| dir.join(b).is_file())
}

/// Holds an exclusive `flock` on a file while alive.
struct BuildLock(std::fs::File);

impl BuildLock {
    fn take(path: &Path) -> Result<BuildLock, String> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::create(path)
            .map_err(|e| format!("cannot create lock {}: {e}", path.display()))?;
        // SAFETY: flock on a descriptor we own; it only blocks this thread.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(format!(
                "flock {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(BuildLock(f))
    }
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking a descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Where the harness's own build puts the binaries: `target/dkc-tests-bins/<profile>`.
fn own_build_dir(profile: &Path) -> Option<PathBuf> {
    let target = profile.parent()?;
    let name = profile.file_name()?;
    Some(target.join(OWN_TARGET_DIR).join(name))
}

/// Name of the harness's own target dir, inside the workspace's.
pub const OWN_TARGET_DIR: &str = "dkc-tests-bins";

fn build(profile: &Path) -> Result<PathBuf, String> {
    let cmd = build_command(profile);
    if std::env::var("DKC_TEST_NO_BUILD").is_ok_and(|v| v == "1") {
        return Err(format!(
            "the daemons are not built in {} (DKC_TEST_NO_BUILD=1); run `{cmd}`",
            profile.display()
        ));
    }
    let out = own_build_dir(profile)
        .ok_or_else(|| format!("no target dir above {}", profile.display()))?;
    let target = out
        .parent()
        .ok_or_else(|| format!("no target dir above {}", out.display()))?
        .to_path_buf();
    std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    let _lock = BuildLock::take(&target.join(".dkc-tests-build.lock"))?;
    if all_present(&out) {
        return Ok(out);
    }
    eprintln!(
        "dkc-tests: daemons missing in {}; running `{cmd}` into {} (minutes the first time)",
        profile.display(),
        target.display()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = Command::new(cargo);
    c.arg("build");
    if profile.file_name().is_some_and(|n| n == "release") {
        c.arg("--release");
    }
    c.arg("--bins");
    for p in BUILD_PACKAGES {
        c.args(["-p", p]);
    }
    let status = c
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
    if !status.success() || !all_present(&out) {
        return Err(format!(
            "`{cmd}` failed ({status}); build the daemons by hand, then rerun the tests"
        ));
    }
    Ok(out)
}

/// The directory with every daemon binary, building them once if needed. Panics with the
/// build command when that fails: nothing can be tested without them.
pub fn bin_dir() -> PathBuf {
    let r = READY.get_or_init(|| {
        let profile = profile_dir()?;
        if all_present(&profile) {
            return Ok(profile);
        }
        match own_build_dir(&profile) {
            Some(own) if all_present(&own) => Ok(own),
            _ => build(&profile),
        }
    });
    match r {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// The path of binary `name` (one of [`BINARIES`]).
pub fn binary(name: &str) -> PathBuf {
    bin_dir().join(name)
}
