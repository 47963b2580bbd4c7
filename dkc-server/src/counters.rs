//! Per-executor operation counters, named as memcached names them where the meaning is the
//! same (`cmd_get`, `get_hits`, ...) so the memcached front can pass them through.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Monotonic counters; relaxed atomics, read for `Stats`.
        #[derive(Debug, Default)]
        pub struct Counters {
            $(
                #[doc = concat!("The `", stringify!($name), "` counter.")]
                pub $name: AtomicU64,
            )*
        }

        impl Counters {
            /// Every counter by its stable name.
            pub fn snapshot(&self, out: &mut BTreeMap<String, u64>) {
                $( out.insert(stringify!($name).to_string(), self.$name.load(Ordering::Relaxed)); )*
            }
        }
    };
}

counters!(
    cmd_get,
    get_hits,
    get_misses,
    cmd_set,
    cmd_touch,
    touch_hits,
    touch_misses,
    delete_hits,
    delete_misses,
    incr_hits,
    incr_misses,
    decr_hits,
    decr_misses,
    cas_hits,
    cas_misses,
    cas_badval,
    cmd_subkeys,
    cmd_scan,
    cmd_flush,
    replicate_applied,
    replicate_stale,
    replicate_conflict,
    replicate_rollback,
    replicate_skipped_sole_owner,
    errors,
    errors_storage,
    errors_no_space,
    refused_queued_too_long,
);

/// Adds one to a counter.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}
