//! `k2htool verify`: check a file offline; exit code [`super::EXIT_PROBLEMS_FOUND`] when the
//! engine lists any problem, 1 when the file cannot be checked at all.

use std::process::ExitCode;

use anyhow::Context;

use super::cli::VerifyArgs;
use super::{progress, EXIT_PROBLEMS_FOUND};

/// Runs the engine's verifier and prints every problem it lists.
pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    if !args.file.exists() {
        anyhow::bail!("{}: no such file", args.file.display());
    }
    let spinner = progress::spinner("verifying");
    let report = k2hash::verify_path(&args.file);
    spinner.finish_and_clear();
    let report = report.with_context(|| format!("cannot verify {}", args.file.display()))?;
    for problem in &report.problems {
        println!("PROBLEM at offset {}: {}", problem.offset, problem.what);
    }
    println!(
        "records: {} (tombstones {}), live_bytes: {}, index_slots_checked: {}, file_size_bytes: {}, \
         closed_cleanly: {}",
        report.records,
        report.tombstones,
        report.live_bytes,
        report.slots,
        report.file_size,
        report.was_clean
    );
    if report.problems.is_empty() {
        println!("{}: OK", args.file.display());
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{}: {} problem(s) found",
            args.file.display(),
            report.problems.len()
        );
        Ok(ExitCode::from(EXIT_PROBLEMS_FOUND))
    }
}
