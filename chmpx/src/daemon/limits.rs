//! Named limits and defaults of the daemon. Every number the daemon relies on lives here, unit
//! last, so the tools and the tests name the same values.

/// Longest control-port command line, newline excluded. A longer line gets an error answer and
/// the connection is closed (a client that sends unbounded lines is not a control client).
pub const CONTROL_LINE_LEN_MAX_BYTES: usize = 1024;

/// Control-port connections served at once; more are refused so a flood cannot exhaust memory.
pub const CONTROL_CONNECTIONS_MAX: usize = 64;

/// A control connection idle for this long is closed.
pub const CONTROL_IDLE_TIMEOUT_MS: u64 = 30_000;

/// Line that ends every control-port answer (one line holding only a dot, as in SMTP/POP3).
pub const CONTROL_ANSWER_END: &str = ".";

/// How long a forwarded ring command (SERVICEIN, MERGE, ...) waits for the coordinator's answer.
pub const RING_COMMAND_TIMEOUT_MS: u64 = 5_000;

/// Interval at which each daemon tells its peers how it is (merge state, attachments, rates).
pub const STATUS_GOSSIP_INTERVAL_MS: u64 = 500;

/// Requests a daemon keeps waiting for an answer from a remote node or a local server process.
/// Past this, new requests are answered with an error at once.
pub const PENDING_REQUESTS_MAX: usize = 65_536;

/// A forwarded request whose answer has not come back after this long is forgotten (the origin
/// gets an error answer).
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

/// Window of the messages-per-second figure.
pub const RATE_WINDOW_MS: u64 = 1_000;

/// Most slots merged at once by one daemon.
pub const MERGE_SLOTS_IN_FLIGHT_MAX: usize = 4;

/// A merge range holding at most this many items on each side is compared key by key instead of
/// being split further.
pub const MERGE_LIST_THRESHOLD_ITEMS: u64 = 2_048;

/// Pieces a differing range is cut into at each narrowing step.
pub const MERGE_SPLIT_FANOUT: u32 = 16;

/// How long one merge request to a server process may take before the slot is retried.
pub const MERGE_RPC_TIMEOUT_MS: u64 = 10_000;

/// Largest HTTP request head the metrics endpoint reads.
pub const METRICS_REQUEST_LEN_MAX_BYTES: usize = 8 * 1024;

/// Metrics connections served at once; more are closed at once, so a flood of idle connections
/// costs at most this many request buffers.
pub const METRICS_CONNECTIONS_MAX: usize = 16;

/// Connections the control or metrics port refuses are logged at most once per this interval
/// per port (all are counted).
pub const REFUSAL_LOG_INTERVAL_MS: u64 = 10_000;

/// Pause after a failed accept on the control or metrics port (out of descriptors, say).
pub const ACCEPT_RETRY_MS: u64 = 50;

/// The metrics endpoint answers after this long even if the request head has not ended; a
/// connection that sends nothing is answered and closed then.
pub const METRICS_REQUEST_TIMEOUT_MS: u64 = 5_000;

const _: () = assert!(CONTROL_LINE_LEN_MAX_BYTES >= 64);
const _: () = assert!(STATUS_GOSSIP_INTERVAL_MS < REQUEST_TIMEOUT_MS);
const _: () = assert!(MERGE_SPLIT_FANOUT >= 2);
