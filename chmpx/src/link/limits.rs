//! Named limits and defaults of the link layer. Every number the link layer relies on lives here,
//! unit last, so the daemon's config mapping and the tests name the same values.

/// Protocol version carried by every frame. Bump it when the frame layout changes; a peer on
/// another version is refused, never half-understood.
pub const PROTOCOL_VERSION: u16 = 1;

/// Bytes of the big-endian length prefix in front of every frame body.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Largest opaque message body the daemon may hand to a link (values up to 1 MiB must pass).
pub const PAYLOAD_SIZE_MAX_DEFAULT_BYTES: usize = 1024 * 1024;

/// Room for the frame envelope (cluster name, ids, route bytes, MessagePack markers) on top of
/// the largest payload.
pub const FRAME_HEADROOM_BYTES: usize = 64 * 1024;

/// Upper bound of what a Data or Control frame adds around its variable fields (MessagePack
/// markers, version, ids, kind); `send` refuses a message whose fields plus this exceed
/// `frame_size_max`. A test in `frame` checks the bound on worst-case values.
pub const FRAME_ENVELOPE_BYTES_MAX: usize = 64;

/// Default refusal threshold for a frame's length prefix; checked before any allocation.
pub const FRAME_SIZE_MAX_DEFAULT_BYTES: usize =
    PAYLOAD_SIZE_MAX_DEFAULT_BYTES + FRAME_HEADROOM_BYTES;

/// Hard ceiling for `frame_size_max`, whatever the config says: the prefix is a u32, and a
/// single frame larger than this would pin too much memory per connection.
pub const FRAME_SIZE_MAX_CEILING_BYTES: usize = 256 * 1024 * 1024;

/// Longest cluster name (CHMPX's `MAX_GROUP_LENGTH`).
pub const CLUSTER_NAME_LEN_MAX: usize = 256;

/// Longest node id ("host:ctlport").
pub const NODE_ID_LEN_MAX: usize = 1024;

/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 16;

/// Default interval between heartbeats.
pub const HEARTBEAT_INTERVAL_DEFAULT_MS: u64 = 500;

/// Default silence after which a peer is declared DOWN. Detection time is at most this plus one
/// heartbeat interval, which keeps the design promise of "DOWN within 2 s" with the defaults.
pub const HEARTBEAT_TIMEOUT_DEFAULT_MS: u64 = 1500;

/// Default TCP connect (and handshake) timeout.
pub const CONNECT_TIMEOUT_DEFAULT_MS: u64 = 1000;

/// Default timeout for one socket write during the handshake and when closing.
pub const RW_TIMEOUT_DEFAULT_MS: u64 = 2000;

/// Default first reconnect delay.
pub const BACKOFF_MIN_DEFAULT_MS: u64 = 50;

/// Default largest reconnect delay.
pub const BACKOFF_MAX_DEFAULT_MS: u64 = 2000;

/// Default outbound queue depth per peer, in messages. The queue is bounded: when full, senders
/// wait (`send`) or are told `Full` (`try_send`).
pub const PEER_QUEUE_DEPTH_DEFAULT: usize = 1024;

/// Default byte budget of one peer's outbound queue (message fields plus envelope bound). With
/// the count limit it keeps a peer's queue from holding `depth × 1 MiB`.
pub const PEER_QUEUE_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

/// Largest batch the writer coalesces into one socket write, in bytes; one frame may exceed it.
pub const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;

/// Default depth of the event channel towards the daemon. When the daemon does not drain it,
/// readers stop reading and TCP flow control pushes back on the senders.
pub const EVENT_QUEUE_DEPTH_DEFAULT: usize = 4096;

/// Default time `send` waits for room in a full peer queue.
pub const SEND_TIMEOUT_DEFAULT_MS: u64 = 1000;

/// Largest number of queued messages the writer coalesces into one flush.
pub const WRITE_BATCH_MAX: usize = 256;

/// Pending inbound (accepted, handshaked) connections waiting for their peer's driver.
pub const INBOUND_HANDOFF_DEPTH: usize = 2;

/// Slaves an any-host `[SLVNODE]` entry may have admitted at once (each is its own peer, with its
/// own queue); CHMPX's default MAXCHMPX. At the limit a DOWN one is forgotten for a new one.
pub const DYNAMIC_PEERS_MAX: usize = 1024;

/// Concurrent inbound handshakes; more are refused so a flood cannot exhaust memory.
pub const HANDSHAKES_IN_FLIGHT_MAX: usize = 64;

const _: () = assert!(HEARTBEAT_INTERVAL_DEFAULT_MS < HEARTBEAT_TIMEOUT_DEFAULT_MS);
const _: () = assert!(HEARTBEAT_TIMEOUT_DEFAULT_MS + HEARTBEAT_INTERVAL_DEFAULT_MS <= 2000);
const _: () = assert!(BACKOFF_MIN_DEFAULT_MS <= BACKOFF_MAX_DEFAULT_MS);
const _: () = assert!(FRAME_SIZE_MAX_DEFAULT_BYTES <= FRAME_SIZE_MAX_CEILING_BYTES);
const _: () = assert!(FRAME_SIZE_MAX_DEFAULT_BYTES <= PEER_QUEUE_BYTES_MAX_DEFAULT);
const _: () = assert!(
    PAYLOAD_SIZE_MAX_DEFAULT_BYTES
        + CLUSTER_NAME_LEN_MAX
        + NODE_ID_LEN_MAX
        + FRAME_ENVELOPE_BYTES_MAX
        <= FRAME_SIZE_MAX_DEFAULT_BYTES
);
const _: () = assert!(FRAME_SIZE_MAX_CEILING_BYTES <= u32::MAX as usize);

/// How long a listener's bind is retried while its port is in use ([`super::listen`]).
pub const BIND_RETRY_MAX_MS: u64 = 5_000;

/// Pause between two such attempts.
pub const BIND_RETRY_INTERVAL_MS: u64 = 100;
