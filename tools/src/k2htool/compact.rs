//! `k2htool compact`: rewrite a file without its free space.

use std::process::ExitCode;

use anyhow::Context;

use super::cli::CompactArgs;
use super::progress;

/// Copies SRC into a new DST through the engine's compactor, with a progress bar.
pub fn run(args: &CompactArgs) -> anyhow::Result<ExitCode> {
    if !args.src.exists() {
        anyhow::bail!("{}: no such file", args.src.display());
    }
    if args.dst.exists() {
        anyhow::bail!(
            "{} already exists; compact writes a new file (remove it or pick another name)",
            args.dst.display()
        );
    }
    let bar = progress::bar(0, "compact");
    let report = k2hash::compact(&args.src, &args.dst, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| {
        format!(
            "cannot compact {} into {}",
            args.src.display(),
            args.dst.display()
        )
    })?;
    bar.finish_and_clear();
    println!(
        "compacted {} into {}: {} records copied, {} expired dropped, {} -> {} bytes",
        args.src.display(),
        args.dst.display(),
        report.records,
        report.expired_dropped,
        report.bytes_before,
        report.bytes_after
    );
    Ok(ExitCode::SUCCESS)
}
