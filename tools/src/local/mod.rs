//! `dkc-local`: a whole dkc cluster on this host, for trying dkc and for tests.
//!
//! `dkc-local up` runs N server nodes (chmpx + dkc-server each, on 127.0.0.1, told apart by
//! CTLPORT), a slave chmpx and `dkc-memcached --backend cluster`, all configured from the INI
//! samples in conf/ (copied with the run's choices into the data directory), and stops them all
//! on Ctrl-C or SIGTERM, keeping the data for the next `up`. `status` and `down` act on a run
//! through its run file.
//!
//! Layout: [`cli`] arguments; [`config_gen`] the INI rewrite (pure); [`binaries`] finding and
//! building the programs; [`process`] child handling; [`ready`] readiness probes; [`up`] the
//! start/supervise/stop sequence; [`join`] nodes new to a data directory; [`detach`] background runs; [`control`] status and down;
//! [`runfile`] the run file.
//!
//! This module starts processes and talks to them over their public interfaces (control port,
//! memcached protocol); it must never link their internals (no dkc-server or k2hash calls).

pub mod binaries;
pub mod cli;
pub mod config_gen;
pub mod control;
pub mod detach;
pub mod join;
pub mod process;
pub mod ready;
pub mod runfile;
pub mod up;

use std::process::ExitCode;

/// Runs one `dkc-local` command.
pub fn main_with(cli: cli::Cli) -> ExitCode {
    let result = match &cli.command {
        cli::Cmd::Up(a) => up::up(a),
        cli::Cmd::Status(d) => {
            // `dkc-local status | head` ends quietly, as Unix tools do, instead of panicking on
            // a closed pipe.
            // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            control::status(&d.resolve())
        }
        cli::Cmd::Down(d) => control::down(&d.resolve()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dkc-local: {e:#}");
            ExitCode::FAILURE
        }
    }
}
