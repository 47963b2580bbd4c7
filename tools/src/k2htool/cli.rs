//! Command-line definitions of `k2htool` (clap derive). Parsing only: each subcommand's work
//! lives in its own module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Inspect, check, copy, load, export and benchmark k2hash files (the dkc storage engine).
#[derive(Debug, Parser)]
#[command(name = "k2htool", version, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the file's mode, size, record and tombstone counts and index geometry.
    Info(InfoArgs),
    /// Print records one per line in the export format (see `k2htool export --help`).
    Dump(DumpArgs),
    /// Check every structure and record of a file; exit code 3 when problems are found.
    Verify(VerifyArgs),
    /// Write a compacted copy of SRC to DST (live records and tombstones, no free space).
    Compact(CompactArgs),
    /// Write every record to a text file (or stdout), one record per line.
    #[command(long_about = EXPORT_FORMAT_HELP)]
    Export(ExportArgs),
    /// Store records read from a text file (or stdin) in the export format.
    #[command(long_about = EXPORT_FORMAT_HELP)]
    Load(LoadArgs),
    /// Time set-all then get-all of generated keys on k2hash or std HashMap; prints
    /// `BENCH key=value ...` lines on stdout (tools/bench-k2hash.sh compares with Tokyo Cabinet).
    Bench(BenchArgs),
}

/// The long help of `export` and `load`, kept equal to the doc of `line_format`.
pub const EXPORT_FORMAT_HELP: &str = "\
Export and load use one record per line (format version 1):

  KEY <TAB> VALUE <TAB> FLAGS <TAB> EXPIRE_AT <TAB> VERSION <TAB> TOMBSTONE <TAB> SUBKEYS <LF>

  KEY, VALUE  escaped bytes; KEY is never empty
  FLAGS       decimal u32 (opaque client flags)
  EXPIRE_AT   decimal unix seconds, 0 = never
  VERSION     decimal u64 (dkc stores a hybrid logical clock here)
  TOMBSTONE   0 = live record, 1 = deletion marker (empty VALUE)
  SUBKEYS     escaped subkeys separated by ',' (empty = none)

Escaping: bytes 0x20..0x7E stand for themselves except '\\' and ','; '\\\\' is a backslash,
'\\t' '\\n' '\\r' are TAB LF CR, and '\\xHH' (two hex digits) is any byte. So any binary key or
value round-trips, and a line never holds a raw TAB, LF or ',' inside a field. Empty lines are
skipped on load. Records are written in (key hash, key) order.";

/// How to map an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileMode {
    /// Map the whole file (fastest; the file must fit in memory).
    Full,
    /// Map only the index; read and write records with pread/pwrite (for files larger than RAM).
    Index,
}

/// Options shared by every subcommand that opens one existing file.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// The k2hash file.
    pub file: PathBuf,
    /// How to map the file.
    #[arg(long, value_enum, default_value_t = FileMode::Full)]
    pub mode: FileMode,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub file: FileArgs,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Stop after this many records (default: all).
    #[arg(long)]
    pub limit: Option<u64>,
    /// Also print tombstones and expired records.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The k2hash file (opened read-only; it is never repaired).
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The file to read.
    pub src: PathBuf,
    /// The new file to write (must not exist).
    pub dst: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Write here instead of stdout (the file is created or truncated).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Leave out tombstones and expired records.
    #[arg(long)]
    pub live_only: bool,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The k2hash file (created when missing).
    pub file: PathBuf,
    /// How to map the file.
    #[arg(long, value_enum, default_value_t = FileMode::Full)]
    pub mode: FileMode,
    /// Read from here instead of stdin.
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Keep a stored record when its version is newer than the loaded one (default: the line
    /// overwrites whatever is stored).
    #[arg(long)]
    pub if_newer: bool,
}

/// Which store `bench` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchTarget {
    /// k2hash in memory mode.
    Memory,
    /// k2hash, whole file mapped.
    Full,
    /// k2hash, only the index mapped.
    Index,
    /// `std::collections::HashMap`: one `Mutex<HashMap>` per thread shard.
    Hashmap,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Store to benchmark.
    #[arg(long, value_enum, default_value_t = BenchTarget::Memory)]
    pub target: BenchTarget,
    /// Number of keys (each 36 bytes).
    #[arg(short, long, default_value_t = 1_000_000)]
    pub n: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 40)]
    pub value_bytes: usize,
    /// Worker threads; keys are split between them (i % threads).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Seed of the key generator (same as tcbench's SEED).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Directory for the file of the full and index targets (removed afterwards).
    #[arg(long, default_value = "/dev/shm")]
    pub dir: PathBuf,
    /// Open with `sync` on (fdatasync before each write returns).
    #[arg(long)]
    pub sync: bool,
    /// Print the first N generated keys and exit (to check against `tcbench --print-keys`).
    #[arg(long, value_name = "N")]
    pub print_keys: Option<u64>,
}
