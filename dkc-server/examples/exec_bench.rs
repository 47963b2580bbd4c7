//! In-process throughput of the command layer on a memory-mode store (no chmpx, no IPC):
//! what one executor can do per thread, as a ceiling for the server.
//!
//! `cargo run --release -p dkc-server --example exec_bench -- [COUNT] [THREADS]`

use std::sync::Arc;
use std::time::Instant;

use dkc_client::proto::{Request, Response, SetMode};
use dkc_server::{Executor, SystemClock};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let threads: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let store = k2hash::OpenOptions::memory().open().expect("memory store");
    let exec = Arc::new(Executor::new(Arc::new(store), 0, Arc::new(SystemClock)));
    for (name, make) in [
        (
            "set",
            (|i: u64| Request::Set {
                key: format!("key{i:012}").into_bytes(),
                value: vec![b'v'; 100],
                mode: SetMode::Set,
                flags: 0,
                expire_at: 0,
            }) as fn(u64) -> Request,
        ),
        ("get", |i| Request::Get {
            key: format!("key{i:012}").into_bytes(),
        }),
        ("incr", |i| Request::Incr {
            key: format!("n{}", i % 1000).into_bytes(),
            delta: 1,
            initial: Some(0),
            expire_at: 0,
        }),
    ] {
        let started = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let exec = exec.clone();
                std::thread::spawn(move || {
                    let mut bad = 0u64;
                    for i in (t..count).step_by(threads as usize) {
                        match exec.execute(&make(i)).response {
                            Response::Error { .. } | Response::NotFound => bad += 1,
                            _ => {}
                        }
                    }
                    bad
                })
            })
            .collect();
        let bad: u64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name:5} {count} ops on {threads} thread(s): {:.0} ops/s ({:.2} µs/op), {bad} failed",
            count as f64 / secs,
            secs * 1e6 / count as f64 * threads as f64
        );
    }
}
