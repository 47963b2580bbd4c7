//! Calibration for `bench`: the same key set and access order against a std HashMap, to tell
//! machine load from engine cost. `cargo run -p k2hash --release --example baseline -- [N]`

use std::collections::HashMap;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

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
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let keys: Vec<Vec<u8>> = (0..n as u64)
        .map(|i| format!("key-{:032x}", splitmix(i) as u128 * 7 + i as u128).into_bytes())
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, splitmix(i as u64 ^ 0xABCD) as usize % (i + 1));
    }
    let mut m: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let v = vec![b'v'; 40];
    let c0 = cpu_secs();
    for &i in &order {
        m.insert(keys[i].clone(), v.clone());
    }
    let c1 = cpu_secs();
    let mut hits = 0;
    for &i in &order {
        hits += m.get(&keys[i]).map(|x| x.len()).unwrap_or(0);
    }
    let c2 = cpu_secs();
    println!(
        "std HashMap 40 B: insert {:.2} M/CPU-s, get {:.2} M/CPU-s ({hits})",
        n as f64 / (c1 - c0) / 1e6,
        n as f64 / (c2 - c1) / 1e6
    );
}
