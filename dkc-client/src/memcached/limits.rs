//! Protocol limits: every bound the codec and the server enforce, as named constants and as
//! a builder (`Limits`) so a deployment can change them without touching the code.
//!
//! The defaults are those of memcached 1.6 where memcached has one (key length, item size,
//! line length); the rest bound what a slow or hostile client can make us hold in memory.

/// Longest key memcached accepts (`KEY_MAX_LENGTH`).
pub const KEY_LENGTH_MAX: usize = 250;

/// Default largest item (`-I`), as in memcached: 1 MiB.
pub const ITEM_SIZE_MAX_DEFAULT: usize = 1024 * 1024;

/// Smallest and largest value `-I` accepts (memcached: 1k .. 1024m).
pub const ITEM_SIZE_MAX_MIN: usize = 1024;
pub const ITEM_SIZE_MAX_MAX: usize = 1024 * 1024 * 1024;

/// Bytes memcached counts per item on top of key and value when it decides whether an object
/// is too large: the item header (48 bytes on 64-bit), the CAS field (8) and the key's NUL (1).
/// With these, `set a 0 0 1048516` fits in 1 MiB and 1048517 does not, as with memcached.
pub const ITEM_OVERHEAD_BYTES: usize = 48 + 8 + 1;

/// A command line without a newline longer than this closes the connection, as memcached does
/// (it keeps reading only lines that start with `get `/`gets `).
pub const LINE_LENGTH_MAX: usize = 2048;

/// Retrieval lines (`get`, `gets`, `gat`, `gats`) may be longer, as memcached allows large
/// multi-gets; they are still bounded so a line without a newline cannot grow forever.
pub const RETRIEVAL_LINE_LENGTH_MAX: usize = 1024 * 1024;

/// Requests executed from one read before the replies are written out: keeps one pipelining
/// client from holding a large reply batch in memory.
pub const BATCH_REQUESTS_MAX: usize = 256;

/// Reply bytes gathered before they are written out even in the middle of a batch.
pub const REPLY_BUFFER_FLUSH_BYTES: usize = 256 * 1024;

/// Keys fetched per step of a multi-get: the reply of each step is written out before the
/// next, so a `get` of thousands of large items never sits in memory at once.
pub const GET_KEYS_PER_STEP: usize = 16;

/// Default connection limit (`-c`), as in memcached.
pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;

/// Most runtime workers a front may ask for (`-t`): far more than any host's cores, few
/// enough that a typo does not try to start a hundred thousand threads.
pub const WORKER_THREADS_MAX: usize = 256;

/// Parses a worker count (`-t`, dkc-local's `--front-threads`): 0 (one per CPU, or the
/// caller's automatic choice) up to [`WORKER_THREADS_MAX`].
pub fn parse_worker_threads(text: &str) -> Result<usize, String> {
    let n: usize = text.trim().parse().map_err(|_| {
        format!("{text:?} is not a thread count; give a number 0-{WORKER_THREADS_MAX}")
    })?;
    if n > WORKER_THREADS_MAX {
        return Err(format!(
            "{n} threads is more than {WORKER_THREADS_MAX}; one per CPU (0) is usually right"
        ));
    }
    Ok(n)
}

/// Default idle timeout in seconds (memcached's default is 0, none; a front of a cluster must
/// not hold a slot forever for a client that sends half a command and goes away).
pub const IDLE_TIMEOUT_SECS_DEFAULT: u64 = 300;

/// Default time one request may wait for the storage before the client gets
/// `SERVER_ERROR storage timed out` (a remote cluster must never hang a connection).
pub const STORAGE_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Longest opaque (`O`) token in meta commands, as in memcached.
pub const OPAQUE_LENGTH_MAX: usize = 32;

/// Relative expiry times above this many seconds are absolute unix times (memcached's
/// `REALTIME_MAXDELTA`, 30 days).
pub const EXPTIME_RELATIVE_SECS_MAX: i64 = 60 * 60 * 24 * 30;

const _: () = assert!(ITEM_SIZE_MAX_MIN <= ITEM_SIZE_MAX_DEFAULT);
const _: () = assert!(ITEM_SIZE_MAX_DEFAULT <= ITEM_SIZE_MAX_MAX);
const _: () = assert!(LINE_LENGTH_MAX <= RETRIEVAL_LINE_LENGTH_MAX);
const _: () = assert!(KEY_LENGTH_MAX < LINE_LENGTH_MAX);

/// Limits of one server instance; build with [`Limits::default`] and the `with_*` setters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub key_length_max: usize,
    pub item_size_max: usize,
    pub line_length_max: usize,
    pub retrieval_line_length_max: usize,
    pub batch_requests_max: usize,
    pub reply_buffer_flush_bytes: usize,
    pub get_keys_per_step: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            key_length_max: KEY_LENGTH_MAX,
            item_size_max: ITEM_SIZE_MAX_DEFAULT,
            line_length_max: LINE_LENGTH_MAX,
            retrieval_line_length_max: RETRIEVAL_LINE_LENGTH_MAX,
            batch_requests_max: BATCH_REQUESTS_MAX,
            reply_buffer_flush_bytes: REPLY_BUFFER_FLUSH_BYTES,
            get_keys_per_step: GET_KEYS_PER_STEP,
        }
    }
}

impl Limits {
    pub fn with_item_size_max(mut self, bytes: usize) -> Self {
        self.item_size_max = bytes;
        self
    }

    pub fn with_batch_requests_max(mut self, count: usize) -> Self {
        self.batch_requests_max = count.max(1);
        self
    }

    /// Whether a value of `value_len` bytes under a key of `key_len` bytes is too large to
    /// store, counted as memcached counts it.
    pub fn too_large(&self, key_len: usize, value_len: usize) -> bool {
        ITEM_OVERHEAD_BYTES
            .saturating_add(key_len)
            .saturating_add(value_len)
            .saturating_add(2)
            > self.item_size_max
    }

    /// Largest input a connection may buffer: one full item and its command line.
    pub fn connection_buffer_max(&self) -> usize {
        self.item_size_max + self.retrieval_line_length_max + 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_threads_parse_within_bounds_and_refuse_the_rest_clearly() {
        assert_eq!(parse_worker_threads("0"), Ok(0));
        assert_eq!(parse_worker_threads(" 4 "), Ok(4));
        assert_eq!(parse_worker_threads("256"), Ok(WORKER_THREADS_MAX));
        let big = parse_worker_threads("257").unwrap_err();
        assert!(big.contains("more than 256"), "{big}");
        let junk = parse_worker_threads("two").unwrap_err();
        assert!(junk.contains("not a thread count"), "{junk}");
        assert!(parse_worker_threads("-1").is_err());
    }
}
