//! `dkc-local up|status|down`: a local dkc cluster with a memcached front. A thin main over
//! [`dkc_tools::local`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    dkc_tools::local::main_with(dkc_tools::local::cli::Cli::parse())
}
