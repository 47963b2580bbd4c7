//! `dkc-bench memcached|native`: load generator printing ops/s and latency percentiles. A thin
//! main over [`dkc_tools::bench`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    dkc_tools::bench::main_with(dkc_tools::bench::cli::Cli::parse(), &argv)
}
