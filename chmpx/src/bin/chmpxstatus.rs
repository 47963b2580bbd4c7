//! `chmpxstatus` — the cluster as one chmpx sees it: every node, UP/DOWN, SERVICE IN/OUT/SLAVE,
//! merge state and progress, slots, messages/s.
//!
//! `chmpxstatus (--conf FILE [--ctlport N] | --host H --ctlport N) [--json] [--top [--interval S]
//! [--count N]]`. `--top` refreshes like `top` until `q` is typed (or `--count` refreshes).

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;

use chmpx::daemon::control::{query, ControlTarget};
use chmpx::daemon::status::{render_table, StatusReport};

#[derive(Parser, Debug)]
#[command(name = "chmpxstatus", about = "show the cluster as a chmpx sees it")]
struct Args {
    #[command(flatten)]
    target: ControlTarget,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
    /// Refresh like top; q quits.
    #[arg(long)]
    top: bool,
    /// Seconds between refreshes with --top.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Refreshes before --top stops (0 = until q).
    #[arg(long, default_value_t = 0)]
    count: u64,
}

fn fetch(rt: &tokio::runtime::Runtime, addr: std::net::SocketAddr) -> Result<StatusReport, String> {
    let (ok, text) = rt
        .block_on(query(addr, "STATUSJSON", Duration::from_secs(5)))
        .map_err(|e| format!("cannot talk to {addr}: {e}"))?;
    if !ok {
        return Err(format!("{addr} answered: {text}"));
    }
    serde_json::from_str(text.trim())
        .map_err(|e| format!("{addr} sent a status this tool cannot read: {e}"))
}

/// Reads stdin bytes on a thread; with a terminal, switches it to raw-ish mode so `q` needs no Enter.
fn key_reader() -> mpsc::Receiver<u8> {
    let (tx, rx) = mpsc::channel();
    if std::io::stdin().is_terminal() {
        let _ = std::process::Command::new("stty")
            .args(["-icanon", "-echo", "min", "1"])
            .stdin(std::process::Stdio::inherit())
            .status();
    }
    std::thread::spawn(move || {
        let mut b = [0u8; 1];
        while let Ok(1) = std::io::stdin().read(&mut b) {
            if tx.send(b[0]).is_err() {
                return;
            }
        }
    });
    rx
}

fn restore_terminal() {
    if std::io::stdin().is_terminal() {
        let _ = std::process::Command::new("stty")
            .arg("sane")
            .stdin(std::process::Stdio::inherit())
            .status();
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let addr = match args.target.resolve() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chmpxstatus: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chmpxstatus: {e}");
            return ExitCode::from(2);
        }
    };
    if !args.top {
        return match fetch(&rt, addr) {
            Ok(r) if args.json => {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Ok(r) => {
                print!("{}", render_table(&r));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("chmpxstatus: {e}");
                ExitCode::from(1)
            }
        };
    }
    let keys = key_reader();
    let interval = Duration::from_secs_f64(args.interval.clamp(0.1, 3600.0));
    let mut shown = 0u64;
    let mut out = std::io::stdout();
    loop {
        let screen = match fetch(&rt, addr) {
            Ok(r) => render_table(&r),
            Err(e) => format!("{e}\n"),
        };
        // Clear the screen and home the cursor, as top does.
        let _ = write!(
            out,
            "\x1b[2J\x1b[H{screen}\n(q to quit, every {:.1}s)\n",
            interval.as_secs_f64()
        );
        let _ = out.flush();
        shown += 1;
        if args.count > 0 && shown >= args.count {
            break;
        }
        match keys.recv_timeout(interval) {
            Ok(b'q') | Ok(b'Q') => break,
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            // No input at all (stdin closed): only --count can end the loop.
            Err(mpsc::RecvTimeoutError::Disconnected) if args.count == 0 => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(interval),
        }
    }
    restore_terminal();
    ExitCode::SUCCESS
}
