//! Opening a k2hash file for a k2htool command, in the mode the user chose.

use anyhow::Context;
use k2hash::{K2Hash, OpenOptions};
use std::path::Path;

use super::cli::FileMode;

/// The options for an existing or new file in `mode`.
pub fn options(path: &Path, mode: FileMode) -> OpenOptions {
    match mode {
        FileMode::Full => OpenOptions::full_map(path),
        FileMode::Index => OpenOptions::index_map(path),
    }
}

/// Opens an existing file read-only (info, dump, export). A missing file is an error that
/// names it; the background sweeper is off so reading never changes the file.
pub fn read_only(path: &Path, mode: FileMode) -> anyhow::Result<K2Hash> {
    if !path.exists() {
        anyhow::bail!("{}: no such file", path.display());
    }
    options(path, mode)
        .read_only(true)
        .background(false)
        .open()
        .with_context(|| format!("cannot open {} read-only", path.display()))
}

/// Opens (and creates if missing) a file for writing (load).
pub fn writable(path: &Path, mode: FileMode) -> anyhow::Result<K2Hash> {
    options(path, mode)
        .create(true)
        .background(false)
        .open()
        .with_context(|| format!("cannot open {} for writing", path.display()))
}
