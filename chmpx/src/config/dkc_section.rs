//! [`DkcSection`]: the typed `[K2HDKC]` section, read by dkc-server.
//!
//! chmpx does not use it, but parses it so that `chmpx --check` validates
//! the whole file and an unknown key there is caught before anything starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::defaults::*;
use super::error::ConfigError;
use super::reader::SectionReader;

/// K2HTYPE: how the k2hash data is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum K2hType {
    /// In memory only; rebuilt from replicas after a restart.
    Mem,
    /// In a file that persists.
    File,
    /// In a file removed when the server stops.
    Temp,
}

/// The `[K2HDKC]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkcSection {
    pub rcv_timeout_ms: u64,
    /// SVRNODEINI; `None` = this same file.
    pub svrnode_ini: Option<PathBuf>,
    pub k2h_type: K2hType,
    /// K2HFILE as written (relative paths are resolved per node by
    /// `Config::k2h_file_for`); `None` for the memory type.
    pub k2h_file: Option<PathBuf>,
    pub k2h_fullmap: bool,
    pub k2h_init: bool,
    pub k2h_maskbit: u32,
    pub k2h_cmaskbit: u32,
    pub k2h_maxele: u32,
    pub k2h_pagesize: u32,
    pub expire_s: Option<u64>,
    pub min_thread: u32,
    pub max_thread: u32,
    pub reduce_time_s: u64,
    /// fdatasync before acknowledging a write.
    pub sync: bool,
    /// Line of the section header.
    pub line: usize,
}

impl DkcSection {
    /// RCVTIMEOUT as a duration.
    pub fn rcv_timeout(&self) -> Duration {
        Duration::from_millis(self.rcv_timeout_ms)
    }

    pub(crate) fn read(r: &SectionReader<'_>, base: &Path) -> Result<DkcSection, ConfigError> {
        let k2h_type = r.choice(
            "K2HTYPE",
            &[
                ("mem", K2hType::Mem),
                ("m", K2hType::Mem),
                ("memory", K2hType::Mem),
                ("file", K2hType::File),
                ("f", K2hType::File),
                ("temp", K2hType::Temp),
                ("t", K2hType::Temp),
                ("temporary", K2hType::Temp),
            ],
            K2HTYPE_DEFAULT,
        )?;
        let k2h_fullmap = r.bool_or("K2HFULLMAP", K2HFULLMAP_DEFAULT)?;
        let init_given = r.opt_bool("K2HINIT")?;
        if k2h_type == K2hType::Mem && !k2h_fullmap {
            return Err(r.conflict(
                "K2HFULLMAP",
                "the memory type (K2HTYPE = mem) needs K2HFULLMAP = on",
            ));
        }
        if k2h_type != K2hType::File && init_given == Some(false) {
            return Err(r.conflict(
                "K2HINIT",
                "memory and temp types always start empty: K2HINIT = no cannot hold",
            ));
        }
        let k2h_init = init_given.unwrap_or(k2h_type != K2hType::File || K2HINIT_DEFAULT);
        let k2h_file = match k2h_type {
            K2hType::Mem => {
                if r.text("K2HFILE").is_some() {
                    return Err(r.conflict("K2HFILE", "the memory type (K2HTYPE = mem) has no file; remove K2HFILE or use K2HTYPE = file"));
                }
                None
            }
            K2hType::File | K2hType::Temp => {
                Some(PathBuf::from(r.text("K2HFILE").unwrap_or(K2HFILE_DEFAULT)))
            }
        };
        let min_thread = r.u32_or("MINTHREAD", 1, THREAD_COUNT_MAX, MINTHREAD_DEFAULT)?;
        let max_thread = r.u32_or("MAXTHREAD", 1, THREAD_COUNT_MAX, MAXTHREAD_DEFAULT)?;
        if max_thread < min_thread {
            return Err(r.conflict(
                "MAXTHREAD",
                format!("must be at least MINTHREAD ({min_thread})"),
            ));
        }
        Ok(DkcSection {
            rcv_timeout_ms: r.u64_or(
                "RCVTIMEOUT",
                1,
                TIMEOUT_US_MAX / 1000,
                " (ms)",
                RCVTIMEOUT_MS_DEFAULT,
            )?,
            svrnode_ini: r.opt_path("SVRNODEINI", base),
            k2h_type,
            k2h_file,
            k2h_fullmap,
            k2h_init,
            k2h_maskbit: r.u32_or(
                "K2HMASKBIT",
                K2HMASKBIT_MIN,
                K2HMASKBIT_MAX,
                K2HMASKBIT_DEFAULT,
            )?,
            k2h_cmaskbit: r.u32_or(
                "K2HCMASKBIT",
                K2HCMASKBIT_MIN,
                K2HCMASKBIT_MAX,
                K2HCMASKBIT_DEFAULT,
            )?,
            k2h_maxele: r.u32_or("K2HMAXELE", 1, K2HMAXELE_MAX, K2HMAXELE_DEFAULT)?,
            k2h_pagesize: r.u32_or(
                "K2HPAGESIZE",
                K2HPAGESIZE_MIN,
                K2HPAGESIZE_MAX,
                K2HPAGESIZE_DEFAULT,
            )?,
            expire_s: r.opt_u64("EXPIRE", 1, SECONDS_MAX, " (s)")?,
            min_thread,
            max_thread,
            reduce_time_s: r.u64_or("REDUCETIME", 1, SECONDS_MAX, " (s)", REDUCETIME_S_DEFAULT)?,
            sync: r.bool_or("SYNC", SYNC_DEFAULT)?,
            line: r.line(),
        })
    }
}
