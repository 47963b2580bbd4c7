//! `k2htool export`: every record of a file as text lines (format in [`super::line_format`]).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use k2hash::{Cursor, K2Hash, Record, ScanItem};

use super::cli::ExportArgs;
use super::line_format::{write_line, LineRecord};
use super::{open, progress, SCAN_BATCH_RECORDS};

/// The line form of a stored record.
pub fn to_line(record: Record) -> LineRecord {
    LineRecord {
        key: record.key,
        value: record.value,
        flags: record.flags,
        expire_at: record.expire_at,
        version: record.version,
        tombstone: record.tombstone,
        subkeys: record.subkeys,
    }
}

/// Calls `each` on every stored record in scan order until it returns false; counts the
/// records seen on `bar`.
pub fn for_each_record(
    store: &K2Hash,
    bar: &indicatif::ProgressBar,
    mut each: impl FnMut(ScanItem) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let mut cursor = Cursor::start();
    loop {
        let (items, next) = store
            .scan(&cursor, SCAN_BATCH_RECORDS)
            .context("scan failed")?;
        for item in items {
            bar.inc(1);
            if !each(item)? {
                return Ok(());
            }
        }
        match next {
            Some(next) => cursor = next,
            None => return Ok(()),
        }
    }
}

/// Writes the file's records to `--output` or stdout.
pub fn run(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let store = open::read_only(&args.file.file, args.file.mode)?;
    let stats = store.stats();
    let bar = progress::bar(stats.items + stats.tombstones, "export");
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    let mut line = Vec::new();
    let mut written = 0u64;
    for_each_record(&store, &bar, |item| {
        if args.live_only && (item.record.tombstone || item.expired) {
            return Ok(true);
        }
        line.clear();
        write_line(&to_line(item.record), &mut line);
        out.write_all(&line).context("cannot write the export")?;
        written += 1;
        Ok(true)
    })?;
    out.flush().context("cannot write the export")?;
    bar.finish_and_clear();
    eprintln!(
        "exported {written} records from {}",
        args.file.file.display()
    );
    store.close()?;
    Ok(ExitCode::SUCCESS)
}
