//! `k2htool load`: store records read as text lines (format in [`super::line_format`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::process::ExitCode;

use anyhow::Context;
use k2hash::Record;

use super::cli::LoadArgs;
use super::line_format::{parse_line, LineRecord};
use super::{open, progress};

/// The stored form of a parsed line.
pub fn to_record(line: LineRecord) -> Record {
    Record {
        key: line.key,
        value: line.value,
        flags: line.flags,
        expire_at: line.expire_at,
        version: line.version,
        tombstone: line.tombstone,
        subkeys: line.subkeys,
    }
}

/// Reads every line and stores it; stops at the first bad line, naming its number. Records
/// before it stay stored (each set is atomic on its own).
pub fn run(args: &LoadArgs) -> anyhow::Result<ExitCode> {
    let (source, total_bytes): (Box<dyn Read>, u64) = match &args.input {
        Some(path) => {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            (Box::new(file), size)
        }
        None => (Box::new(std::io::stdin().lock()), 0),
    };
    let input_name = args
        .input
        .as_ref()
        .map_or_else(|| "stdin".to_string(), |p| p.display().to_string());
    let store = open::writable(&args.file, args.mode)?;
    let bar = progress::bar_of(total_bytes, "load", progress::Unit::Bytes);
    let mut reader = BufReader::new(source);
    let mut line = Vec::new();
    let mut line_number = 0u64;
    let mut stored = 0u64;
    let mut skipped_older = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {input_name}"))?;
        if read == 0 {
            break;
        }
        line_number += 1;
        bar.inc(read as u64);
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        if body.is_empty() {
            continue;
        }
        let parsed =
            parse_line(body).with_context(|| format!("{input_name}: line {line_number}"))?;
        let record = to_record(parsed);
        let applied = if args.if_newer {
            store.set_if_newer(&record)
        } else {
            store_exactly(&store, &record)
        }
        .with_context(|| format!("{input_name}: line {line_number}: cannot store the record"))?;
        if applied {
            stored += 1;
        } else {
            skipped_older += 1;
        }
    }
    bar.finish_and_clear();
    store.sync().context("cannot sync the file")?;
    store.close().context("cannot close the file")?;
    eprintln!(
        "loaded {stored} records into {} ({skipped_older} older than stored, skipped)",
        args.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Stores `record` as given (tombstone bit and subkeys included) whatever is stored now.
fn store_exactly(store: &k2hash::K2Hash, record: &Record) -> k2hash::Result<bool> {
    store.update_raw(&record.key, |_| {
        (k2hash::Decision::PutRecord(record.clone()), true)
    })
}
