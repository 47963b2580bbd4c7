//! Where the executables built with the current one are. Cargo puts every binary of a profile
//! in `target/<profile>/` and test executables one level down, in `target/<profile>/deps/`;
//! a test or tool of one package finds another package's binaries there (it cannot name them
//! with `env!("CARGO_BIN_EXE_...")`).

use std::path::{Path, PathBuf};

use super::LaunchError;

/// The folder of the current executable, or its parent when that folder is `deps` (a test).
pub fn profile_dir() -> Result<PathBuf, LaunchError> {
    let exe = std::env::current_exe().map_err(LaunchError::CurrentExe)?;
    Ok(profile_dir_of(&exe))
}

/// [`profile_dir`] for the executable at `exe`.
pub fn profile_dir_of(exe: &Path) -> PathBuf {
    let dir = exe
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map_or(dir.clone(), Path::to_path_buf)
    } else {
        dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_look_one_level_up() {
        assert_eq!(
            profile_dir_of(Path::new("/t/release/deps/x-123")),
            PathBuf::from("/t/release")
        );
        assert_eq!(
            profile_dir_of(Path::new("/t/release/dkc-local")),
            PathBuf::from("/t/release")
        );
    }
}
