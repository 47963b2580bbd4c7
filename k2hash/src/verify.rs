//! Verification: walk every structure of a store and list what is wrong.

use crate::error::Result;
use std::path::Path;

/// One problem found by verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub what: String,
    /// Where (byte offset in the file).
    pub offset: u64,
}

/// What verify found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked (tombstones included).
    pub records: u64,
    /// Tombstones among them.
    pub tombstones: u64,
    /// Bytes of keys + values + subkeys.
    pub live_bytes: u64,
    /// Index slots checked.
    pub slots: u64,
    /// File size.
    pub file_size: u64,
    /// Whether the file was closed cleanly (dirty flag clear) before this check.
    pub was_clean: bool,
    /// Problems found (empty = clean).
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// `Ok(())` if clean, else the first problem as [`crate::Error::Corrupted`].
    pub fn into_result(self) -> Result<()> {
        match self.problems.into_iter().next() {
            None => Ok(()),
            Some(p) => Err(crate::Error::corrupted(p.what, p.offset)),
        }
    }
}

/// Verifies the file at `path` (opened read-only; refused while a writer owns it). A header
/// too damaged to read is an `Err(Corrupted)`; everything else is listed in the report.
pub fn verify_path(path: impl AsRef<Path>) -> Result<VerifyReport> {
    crate::engine::verify_file(path.as_ref())
}
