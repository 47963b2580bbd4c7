//! `k2htool dump`: records for a human to read, with their key hash and state.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::cli::DumpArgs;
use super::export::for_each_record;
use super::line_format::escape;
use super::open;

/// Prints one line per record: hash, escaped key and value, metadata and state.
pub fn run(args: &DumpArgs) -> anyhow::Result<ExitCode> {
    let store = open::read_only(&args.file.file, args.file.mode)?;
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut shown = 0u64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut text = Vec::new();
    // No bar: dump is read by a person as it scrolls.
    let bar = indicatif::ProgressBar::hidden();
    for_each_record(&store, &bar, |item| {
        if shown >= limit {
            return Ok(false);
        }
        let record = &item.record;
        if !args.all && (record.tombstone || item.expired) {
            return Ok(true);
        }
        text.clear();
        text.extend_from_slice(format!("{:016x} key=", item.hash).as_bytes());
        escape(&record.key, &mut text);
        text.extend_from_slice(b" value=");
        escape(&record.value, &mut text);
        text.extend_from_slice(
            format!(
                " flags={} expire_at={} version={} subkeys={}",
                record.flags,
                record.expire_at,
                record.version,
                record.subkeys.len()
            )
            .as_bytes(),
        );
        if record.tombstone {
            text.extend_from_slice(b" TOMBSTONE");
        }
        if item.expired {
            text.extend_from_slice(b" EXPIRED");
        }
        text.push(b'\n');
        out.write_all(&text).context("cannot write to stdout")?;
        shown += 1;
        Ok(true)
    })?;
    out.flush().context("cannot write to stdout")?;
    store.close()?;
    Ok(ExitCode::SUCCESS)
}
