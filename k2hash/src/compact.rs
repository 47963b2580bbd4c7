//! Offline compaction: copy every record (tombstones included, expired records dropped) into a
//! fresh, densely packed file with the same geometry, then the caller swaps files.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::types::Cursor;
use std::path::Path;
use std::sync::Arc;

/// Records copied per scan batch.
const COMPACT_BATCH_RECORDS: usize = 1024;

/// What compaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Records copied (tombstones included; expired records dropped).
    pub records: u64,
    /// Expired records dropped.
    pub expired_dropped: u64,
    /// Size of the source file.
    pub bytes_before: u64,
    /// Size of the new file.
    pub bytes_after: u64,
}

/// Compacts the file `src` into a new file `dst` (which must not exist). The source is opened
/// read-only. `progress(done, total)` is called as records are copied.
pub fn compact(
    src: impl AsRef<Path>,
    dst: impl AsRef<Path>,
    progress: impl FnMut(u64, u64),
) -> Result<CompactReport> {
    let s = crate::OpenOptions::full_map(src.as_ref())
        .read_only(true)
        .background(false)
        .open()?;
    compact_open(&s.inner_engine(), dst.as_ref(), progress)
}

pub(crate) fn compact_open(
    src: &Arc<Engine>,
    dst: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<CompactReport> {
    if dst.exists() {
        return Err(Error::InvalidArgument(format!(
            "compaction target {dst:?} already exists"
        )));
    }
    let st = src.stats();
    let total = st.items + st.tombstones;
    let out = crate::OpenOptions::full_map(dst)
        .create(true)
        .background(false)
        .shard_bits(src.shard_bits)
        .granule_bytes(src.granule)
        .value_size_max(crate::limits::VALUE_SIZE_MAX_CEILING)
        .file_size_max(src.region.reserve())
        .clock(src.clock.clone())
        .open()?;
    let mut rep = CompactReport {
        bytes_before: src.region.size(),
        ..Default::default()
    };
    let mut cur = Cursor::start();
    let mut done = 0;
    loop {
        let (items, next) = src.scan_range(0, u64::MAX, &cur, COMPACT_BATCH_RECORDS)?;
        for it in &items {
            done += 1;
            if it.expired && !it.record.tombstone {
                rep.expired_dropped += 1;
                continue;
            }
            out.set_if_newer(&it.record)?;
            rep.records += 1;
        }
        progress(done, total.max(done));
        match next {
            Some(c) => cur = c,
            None => break,
        }
    }
    out.sync()?;
    rep.bytes_after = out.stats().file_size;
    out.close()?;
    Ok(rep)
}
