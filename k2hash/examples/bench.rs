//! Quick throughput check: N random 36-byte keys, set then get, 40-byte and 1 KiB values,
//! 1 and 2 threads, memory / full-map / index-map modes. Run in release:
//!   cargo run -p k2hash --release --example bench -- [N] [modes]
//! `modes` is a comma list of memory,full,index (default memory,full).

use k2hash::*;
use std::time::Instant;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// CPU seconds used by this process so far (the machine may be shared, so wall-clock rates
/// undercount; ops per CPU-second is printed too).
fn cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: plain syscall writing into a local struct.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let modes = args.get(2).cloned().unwrap_or_else(|| "memory,full".into());
    let keys: Vec<Vec<u8>> = (0..n as u64)
        .map(|i| format!("key-{:032x}", splitmix(i) as u128 * 7 + i as u128).into_bytes())
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, splitmix(i as u64 ^ 0xABCD) as usize % (i + 1));
    }
    let dir = tempfile::tempdir().unwrap();
    for mode in modes.split(',') {
        for vlen in [40usize, 1024] {
            for threads in [1usize, 2] {
                let path = dir.path().join(format!("b-{mode}-{vlen}-{threads}"));
                let opts = match mode {
                    "memory" => OpenOptions::memory(),
                    "full" => OpenOptions::full_map(&path).create(true),
                    "index" => OpenOptions::index_map(&path).create(true),
                    m => panic!("unknown mode {m}"),
                };
                let s = opts.open().unwrap();
                let value = vec![b'v'; vlen];
                let run = |f: &(dyn Fn(&[u8]) + Sync)| {
                    let t0 = Instant::now();
                    let c0 = cpu_secs();
                    std::thread::scope(|sc| {
                        for t in 0..threads {
                            let order = &order;
                            let keys = &keys;
                            sc.spawn(move || {
                                for &i in order.iter().skip(t).step_by(threads) {
                                    f(&keys[i]);
                                }
                            });
                        }
                    });
                    (
                        n as f64 / t0.elapsed().as_secs_f64(),
                        n as f64 / (cpu_secs() - c0),
                    )
                };
                let set = run(&|k| {
                    s.set(
                        k,
                        &value,
                        Meta {
                            flags: 0,
                            expire_at: 0,
                            version: 1,
                        },
                    )
                    .unwrap()
                });
                let get = run(&|k| {
                    let mut b = Vec::new();
                    assert!(s.get_into(k, &mut b).unwrap().is_some());
                });
                let get_alloc = run(&|k| {
                    assert!(s.get(k).unwrap().is_some());
                });
                println!(
                    "{mode:6} value {vlen:5} B threads {threads}: wall M ops/s: set {:>5.2} get_into {:>5.2} get {:>5.2} | per thread-CPU-second: set {:>5.2} get_into {:>5.2} get {:>5.2} | file {} MiB",
                    set.0 / 1e6,
                    get.0 / 1e6,
                    get_alloc.0 / 1e6,
                    set.1 / 1e6,
                    get.1 / 1e6,
                    get_alloc.1 / 1e6,
                    s.stats().file_size >> 20
                );
            }
        }
    }
}
