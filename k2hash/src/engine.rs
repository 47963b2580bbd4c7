//! The engine: all operations over the region, index and allocator.
#![allow(unused_variables, dead_code)]

use crate::error::Result;
use crate::options::{Mode, OpenOptions};
use crate::types::*;
use crate::verify::VerifyReport;
use std::path::Path;
use std::sync::Arc;

pub(crate) struct Engine {}

pub(crate) fn verify_file(path: &Path) -> Result<VerifyReport> {
    unimplemented!()
}

impl Engine {
    pub(crate) fn open(opts: &OpenOptions) -> Result<Arc<Engine>> {
        unimplemented!()
    }
    pub(crate) fn get(&self, key: &[u8], raw: bool) -> Result<Option<Record>> {
        unimplemented!()
    }
    pub(crate) fn get_with<R>(
        &self,
        key: &[u8],
        raw: bool,
        f: impl FnOnce(RecordRef<'_>) -> R,
    ) -> Result<Option<R>> {
        unimplemented!()
    }
    pub(crate) fn set(&self, key: &[u8], value: &[u8], meta: Meta) -> Result<()> {
        unimplemented!()
    }
    pub(crate) fn set_if_newer(&self, r: &Record) -> Result<bool> {
        unimplemented!()
    }
    pub(crate) fn remove(&self, key: &[u8], tv: Option<u64>) -> Result<bool> {
        unimplemented!()
    }
    pub(crate) fn purge_tombstones(&self, lo: u64, hi: u64, maxv: u64) -> Result<u64> {
        unimplemented!()
    }
    pub(crate) fn compare_and_set(
        &self,
        key: &[u8],
        ev: u64,
        value: &[u8],
        meta: Meta,
    ) -> Result<CasOutcome> {
        unimplemented!()
    }
    pub(crate) fn get_or_insert(
        &self,
        key: &[u8],
        value: &[u8],
        meta: Meta,
    ) -> Result<(Record, bool)> {
        unimplemented!()
    }
    pub(crate) fn update<T>(
        &self,
        key: &[u8],
        raw: bool,
        f: impl FnOnce(Option<&Record>) -> (Decision, T),
    ) -> Result<T> {
        unimplemented!()
    }
    pub(crate) fn set_subkeys(&self, p: &[u8], c: &[&[u8]]) -> Result<bool> {
        unimplemented!()
    }
    pub(crate) fn add_subkey(&self, p: &[u8], c: &[u8]) -> Result<bool> {
        unimplemented!()
    }
    pub(crate) fn remove_subkey(&self, p: &[u8], c: &[u8]) -> Result<bool> {
        unimplemented!()
    }
    pub(crate) fn subkeys(&self, p: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        unimplemented!()
    }
    pub(crate) fn remove_with_children(&self, k: &[u8], tv: Option<u64>) -> Result<u64> {
        unimplemented!()
    }
    pub(crate) fn scan_range(
        &self,
        lo: u64,
        hi: u64,
        c: &Cursor,
        limit: usize,
    ) -> Result<(Vec<ScanItem>, Option<Cursor>)> {
        unimplemented!()
    }
    pub(crate) fn digest(&self, lo: u64, hi: u64) -> Result<Digest> {
        unimplemented!()
    }
    pub(crate) fn stats(&self) -> Stats {
        unimplemented!()
    }
    pub(crate) fn sync(&self) -> Result<()> {
        unimplemented!()
    }
    pub(crate) fn verify(&self) -> Result<VerifyReport> {
        unimplemented!()
    }
    pub(crate) fn reclaim_expired(&self) -> Result<u64> {
        unimplemented!()
    }
    pub(crate) fn now(&self) -> u64 {
        unimplemented!()
    }
    pub(crate) fn mode(&self) -> Mode {
        unimplemented!()
    }
    pub(crate) fn path(&self) -> Option<&Path> {
        unimplemented!()
    }
    pub(crate) fn close(&self) -> Result<()> {
        unimplemented!()
    }
}
