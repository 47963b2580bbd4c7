//! Finding the programs a local run starts (chmpx, dkc-server, dkc-memcached): next to
//! dkc-local's own executable, in the same cargo target directory.
//!
//! `cargo run --bin dkc-local` builds only the dkc-tools package, so on a fresh clone the other
//! binaries do not exist yet. When dkc-local was started by cargo (cargo sets `CARGO` and
//! `CARGO_MANIFEST_DIR`), it runs the one `cargo build` that makes them, with the same profile
//! and target directory, before anything starts; that build is a no-op when they are current.
//! Started any other way, a missing binary is an error that prints the command to run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The programs a local run needs, with the package that builds each.
pub const NEEDED: [(&str, &str); 3] = [
    ("chmpx", "chmpx"),
    ("dkc-server", "dkc-server"),
    ("dkc-memcached", "dkc-client"),
];

#[derive(Debug, thiserror::Error)]
pub enum BinError {
    #[error("cannot find dkc-local's own executable: {0}")]
    SelfExe(std::io::Error),
    #[error("{missing} not found in {dir}; build them first:\n    {command}")]
    Missing {
        missing: String,
        dir: String,
        command: String,
    },
    #[error("`{command}` failed ({status}); fix the build error above and run dkc-local again")]
    BuildFailed { command: String, status: String },
    #[error("cannot run cargo ({command}): {source}")]
    Cargo {
        command: String,
        source: std::io::Error,
    },
}

/// Where the sibling programs are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub dir: PathBuf,
}

impl Binaries {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The cargo profile a target sub-directory stands for (`release`, `debug` = dev, other names
/// are custom profiles).
fn profile_args(dir: &Path) -> Vec<String> {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("release") => vec!["--release".into()],
        Some("debug") | None => vec![],
        Some(other) => vec!["--profile".into(), other.into()],
    }
}

fn build_args(dir: &Path) -> Vec<String> {
    let mut args = vec!["build".to_string()];
    args.extend(profile_args(dir));
    for (_, pkg) in NEEDED {
        args.push("-p".into());
        args.push(pkg.into());
    }
    for (bin, _) in NEEDED {
        args.push("--bin".into());
        args.push(bin.into());
    }
    args
}

/// The command a user should run to build the programs for `dir`.
pub fn build_command(dir: &Path) -> String {
    let mut words = vec!["cargo".to_string(), "build".to_string()];
    words.extend(profile_args(dir));
    for (_, pkg) in NEEDED {
        words.push("-p".into());
        words.push(pkg.into());
    }
    words.join(" ")
}

/// Locates (and, when started through cargo, first builds) the programs.
pub fn locate() -> Result<Binaries, BinError> {
    let exe = std::env::current_exe().map_err(BinError::SelfExe)?;
    // Test executables live in target/<profile>/deps; their binaries one level up.
    let dir = chmpx::testkit::bins::profile_dir_of(&exe);
    if let (Some(cargo), Some(manifest_dir)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) {
        build_with_cargo(Path::new(&cargo), Path::new(&manifest_dir), &dir)?;
    }
    let missing: Vec<&str> = NEEDED
        .iter()
        .map(|(b, _)| *b)
        .filter(|b| !dir.join(b).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(BinError::Missing {
            missing: missing.join(", "),
            dir: dir.display().to_string(),
            command: build_command(&dir),
        });
    }
    Ok(Binaries { dir })
}

fn build_with_cargo(cargo: &Path, manifest_dir: &Path, dir: &Path) -> Result<(), BinError> {
    let workspace = manifest_dir.parent().unwrap_or(manifest_dir);
    let target_dir = dir.parent().unwrap_or(dir);
    let args = build_args(dir);
    let command = format!("{} {}", cargo.display(), args.join(" "));
    eprintln!("dkc-local: building the programs it starts: {command}");
    let status = Command::new(cargo)
        .args(&args)
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .map_err(|source| BinError::Cargo {
            command: command.clone(),
            source,
        })?;
    if !status.success() {
        return Err(BinError::BuildFailed {
            command,
            status: status.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_command_matches_the_profile() {
        assert_eq!(
            build_command(Path::new("/t/release")),
            "cargo build --release -p chmpx -p dkc-server -p dkc-client"
        );
        assert_eq!(
            build_command(Path::new("/t/debug")),
            "cargo build -p chmpx -p dkc-server -p dkc-client"
        );
        assert!(build_args(Path::new("/t/bench")).contains(&"bench".to_string()));
    }
}
