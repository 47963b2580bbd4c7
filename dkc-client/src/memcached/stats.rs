//! Server-wide counters for `stats`, named and ordered as memcached 1.6 prints them. Only
//! counters this front really keeps are printed; storage-side numbers come from
//! [`super::storage::Storage::stats`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Counters kept by the protocol layer.
        #[derive(Debug, Default)]
        pub struct Counters {
            $(pub $name: AtomicU64,)*
        }

        impl Counters {
            /// Name and value of every counter, in declaration (= memcached's) order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }

            /// `stats reset`: zero what memcached zeroes (all but the connection gauges).
            pub fn reset(&self) {
                $(if stringify!($name) != "curr_connections" {
                    self.$name.store(0, Ordering::Relaxed);
                })*
            }
        }
    };
}

counters!(
    curr_connections,
    total_connections,
    rejected_connections,
    cmd_get,
    cmd_set,
    cmd_flush,
    cmd_touch,
    cmd_meta,
    get_hits,
    get_misses,
    delete_misses,
    delete_hits,
    incr_misses,
    incr_hits,
    decr_misses,
    decr_hits,
    cas_misses,
    cas_hits,
    cas_badval,
    touch_hits,
    touch_misses,
    store_too_large,
    bytes_read,
    bytes_written,
);

/// Shared state behind `stats`.
#[derive(Debug)]
pub struct ServerStats {
    pub counters: Counters,
    pub started: Instant,
    pub connections_max: u64,
    pub threads: u64,
    /// Settings reported by `stats settings` (set by the server after construction).
    pub settings: Settings,
}

/// The settings `stats settings` reports, under memcached's names.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub tcp_port: u16,
    /// memcached's `-s`, when the front listens on a UNIX socket.
    pub domain_socket: Option<String>,
    /// memcached's `-a`: the socket file's permission bits (reported in octal as `umask`).
    pub unix_mask: u32,
    pub item_size_max: u64,
    pub idle_timeout_secs: u64,
}

impl ServerStats {
    pub fn new(connections_max: u64, threads: u64) -> Self {
        ServerStats {
            counters: Counters::default(),
            started: Instant::now(),
            connections_max,
            threads,
            settings: Settings {
                unix_mask: super::unix_socket::UNIX_MASK_DEFAULT,
                ..Settings::default()
            },
        }
    }
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
