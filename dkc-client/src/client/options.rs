//! Driver settings: per-request timeout, retry count and backoff, and the attach transport's
//! options. Build with [`ClientOptions::default`] and change fields, or let
//! [`super::Client::from_conf`] derive them from the cluster's config file.

use std::time::Duration;

use chmpx::attach::AttachOptions;
use chmpx::config::Config;

/// Default time one attempt of a request waits for its answer, ms. CHMPX's MQRWTIMEOUT ×
/// MQRETRYCNT bounds one queue operation (30 ms by default), not a round trip through the
/// cluster and a replicated write, so the config value is used only when it is larger.
pub const REQUEST_TIMEOUT_DEFAULT_MS: u64 = 5_000;
/// Default retries of a request that may be retried (see the retry rule in [`super`]).
pub const RETRY_COUNT_DEFAULT: u32 = 3;
/// First pause before a retry, ms; doubles on each retry.
pub const RETRY_BACKOFF_MIN_MS: u64 = 20;
/// Longest pause before a retry, ms.
pub const RETRY_BACKOFF_MAX_MS: u64 = 500;
/// Deepest subkey tree `delete_with_children` walks (guards against very deep or cyclic trees).
pub const SUBKEY_DEPTH_MAX: usize = 32;
/// Most keys `delete_with_children` deletes in one call.
pub const SUBKEY_DELETE_COUNT_MAX: usize = 100_000;
/// Most requests one call keeps in flight at once (get_many, scan/stats/flush fan-out); more
/// are sent in waves of this size.
pub const IN_FLIGHT_MAX: usize = 256;
/// Largest page a scan asks each node for.
pub const SCAN_LIMIT_MAX: u32 = 10_000;

/// How the driver behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long one attempt waits for its answer (override per call with `with_timeout`).
    pub request_timeout: Duration,
    /// Retries after an attempt that may be retried failed; 0 = never retry.
    pub retry_count: u32,
    /// The attach transport's options (body limit, permission bits, connect timeout).
    pub attach: AttachOptions,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_millis(REQUEST_TIMEOUT_DEFAULT_MS),
            retry_count: RETRY_COUNT_DEFAULT,
            attach: AttachOptions::default(),
        }
    }
}

impl ClientOptions {
    /// Options matching a cluster's config: the body limit (MAXPAYLOAD) and queue mode
    /// (IPCMODE) must equal chmpx's, and the timeout is MQRWTIMEOUT × MQRETRYCNT when that is
    /// above [`REQUEST_TIMEOUT_DEFAULT_MS`].
    pub fn from_config(cfg: &Config) -> ClientOptions {
        let g = &cfg.global;
        let mut o = ClientOptions::default();
        o.request_timeout = o.request_timeout.max(g.mq_io_timeout());
        o.attach.body_size_max = usize::try_from(g.max_payload).unwrap_or(usize::MAX);
        o.attach.mode = g.ipc_mode;
        o
    }

    /// The pause before retry number `attempt` (1-based).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let ms = RETRY_BACKOFF_MIN_MS.saturating_mul(1 << attempt.min(16).saturating_sub(1));
        Duration::from_millis(ms.min(RETRY_BACKOFF_MAX_MS))
    }
}
