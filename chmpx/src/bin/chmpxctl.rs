//! `chmpxctl` — sends one control command to a chmpx and prints the answer.
//!
//! `chmpxctl (--conf FILE [--ctlport N] | --host H --ctlport N) COMMAND [ARGS...]`
//! Exit code: 0 when the daemon answered OK, 1 when it answered ERR, 2 when it could not be
//! reached or the arguments are wrong.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use chmpx::daemon::control::{query, ControlTarget};

#[derive(Parser, Debug)]
#[command(name = "chmpxctl", about = "send a control command to chmpx")]
struct Args {
    #[command(flatten)]
    target: ControlTarget,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// The command and its arguments, e.g. SERVICEOUT 127.0.0.1:8021.
    #[arg(required = true, trailing_var_arg = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let addr = match args.target.resolve() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chmpxctl: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chmpxctl: {e}");
            return ExitCode::from(2);
        }
    };
    let line = args.command.join(" ");
    match rt.block_on(query(addr, &line, Duration::from_secs(args.timeout))) {
        Ok((true, text)) => {
            print!("{text}");
            if !text.is_empty() && !text.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Ok((false, text)) => {
            eprintln!("chmpxctl: {addr}: {text}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("chmpxctl: cannot talk to {addr}: {e}");
            ExitCode::from(2)
        }
    }
}
