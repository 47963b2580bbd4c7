//! Where the daemons' binaries are: next to the running executable's profile directory
//! (`target/<profile>/`), or in `DKC_TEST_BIN_DIR`. The lab does not build them; a missing
//! one is an error naming the command that builds it.

use std::path::{Path, PathBuf};

use super::NetnsError;

/// Environment variable naming the folder with the binaries.
pub const BIN_DIR_ENV: &str = "DKC_TEST_BIN_DIR";

fn profile_dir() -> Result<PathBuf, NetnsError> {
    if let Ok(dir) = std::env::var(BIN_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().map_err(|e| NetnsError::io("current_exe", e))?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    // Test executables live in target/<profile>/deps.
    if dir.as_ref().is_some_and(|d| d.ends_with("deps")) {
        dir = dir.and_then(|d| d.parent().map(Path::to_path_buf));
    }
    dir.ok_or_else(|| NetnsError::Bad(format!("no folder above {}", exe.display())))
}

/// The path of binary `name` (`chmpx`, `chmpx-echo`, `chmpxstatus`, `dkc-hosts`, ...).
pub fn path(name: &str) -> Result<PathBuf, NetnsError> {
    let dir = profile_dir()?;
    let p = dir.join(name);
    if p.is_file() {
        return Ok(p);
    }
    let release = if dir.ends_with("release") {
        " --release"
    } else {
        ""
    };
    Err(NetnsError::Bad(format!(
        "{} is missing; build it first: cargo build{release} -p chmpx -p dkc-tools --bins \
         (or set {BIN_DIR_ENV})",
        p.display()
    )))
}
