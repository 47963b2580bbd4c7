//! `k2htool`: inspect, check, copy, load, export and benchmark k2hash files. A thin main over
//! `dkc_tools::k2htool`; run `k2htool --help` for the commands.

use std::process::ExitCode;

use clap::Parser;
use dkc_tools::k2htool::{run, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("k2htool: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
