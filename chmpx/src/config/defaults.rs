//! Every default and every limit of the config, in one place.
//!
//! conf/README.md documents each default; `tests/config_readme.rs` checks
//! that the README and these constants agree. Names end with the unit, then
//! the qualifier (`_DEFAULT`, `_MIN`, `_MAX`).

// ---- [GLOBAL], CHMPX keys -------------------------------------------------

/// GROUP: longest cluster name. CHMPX allows 256 (MAX_GROUP_LENGTH); dkc names its POSIX queues
/// and segments after the GROUP, and keeps those names far below NAME_MAX, so 64 (the attach
/// transport's limit, `attach::names::CLUSTER_NAME_LEN_MAX`; the daemon asserts they agree).
pub const GROUP_LEN_MAX: usize = 64;
/// MAXCHMPX: most nodes (servers + slave entries).
pub const MAXCHMPX_DEFAULT: u32 = 1024;
/// MAXCHMPX: CHMPX's hard cap.
pub const MAXCHMPX_MAX: u32 = 32_768;
/// REPLICA: replicas per slot besides the primary.
pub const REPLICA_DEFAULT: u32 = 0;
/// MAXMQSERVER: server processes (dkc-server) that may attach at once.
pub const MAXMQSERVER_DEFAULT: u32 = 2;
/// MAXMQCLIENT: client attachments at once.
pub const MAXMQCLIENT_DEFAULT: u32 = 32;
/// Cap of MAXMQSERVER (CHMPX's).
pub const MAXMQSERVER_MAX: u32 = 128;
/// Cap of MAXMQCLIENT (CHMPX's 32768 - 128).
pub const MAXMQCLIENT_MAX: u32 = 32_640;
/// MQPERATTACH (accepted, no effect).
pub const MQPERATTACH_DEFAULT: u32 = 1;
/// MAXQPERSERVERMQ: depth of queues chmpx reads (accept queue, request doorbells).
pub const MAXQPERSERVERMQ_DEFAULT: u32 = 8;
/// MAXQPERCLIENTMQ: depth of queues a client reads (response doorbells).
pub const MAXQPERCLIENTMQ_DEFAULT: u32 = 8;
/// MAXMQPERCLIENT (accepted, no effect).
pub const MAXMQPERCLIENT_DEFAULT: u32 = 1;
/// Cap of the per-queue and per-attach counts above (CHMPX's).
pub const MQ_COUNT_PER_ITEM_MAX: u32 = 128;
/// MAXHISTLOG (accepted, no effect).
pub const MAXHISTLOG_DEFAULT: u32 = 8192;
/// Cap of MAXHISTLOG (CHMPX's).
pub const MAXHISTLOG_MAX: u32 = 32_768;
/// RWTIMEOUT: socket read/write wait per attempt, µs (CHMPX code default).
pub const RWTIMEOUT_US_DEFAULT: u64 = 200;
/// RETRYCNT: socket attempts; RWTIMEOUT × RETRYCNT bounds one read or write.
pub const RETRYCNT_DEFAULT: u32 = 500;
/// CONTIMEOUT: connect timeout, µs.
pub const CONTIMEOUT_US_DEFAULT: u64 = 500_000;
/// MQRWTIMEOUT: MQ wait per attempt, µs (CHMPX code default).
pub const MQRWTIMEOUT_US_DEFAULT: u64 = 10_000;
/// MQRETRYCNT: MQ attempts (CHMPX code default).
pub const MQRETRYCNT_DEFAULT: u32 = 3;
/// Largest timeout in µs any key accepts (one hour).
pub const TIMEOUT_US_MAX: u64 = 3_600_000_000;
/// Largest retry count any key accepts.
pub const RETRY_COUNT_MAX: u32 = 1_000_000;
/// MQACK (accepted, no effect).
pub const MQACK_DEFAULT: bool = false;
/// AUTOMERGE: merge and complete by itself (CHMPX's default is off).
pub const AUTOMERGE_DEFAULT: bool = true;
/// DOMERGE: merge data on membership change and recovery (CHMPX's default is off).
pub const DOMERGE_DEFAULT: bool = true;
/// MERGETIMEOUT: seconds, 0 = none.
pub const MERGETIMEOUT_S_DEFAULT: u64 = 0;
/// Largest MERGETIMEOUT / SOCKPOOLTIMEOUT / EXPIRE and similar, seconds (one year).
pub const SECONDS_MAX: u64 = 31_536_000;
/// SOCKTHREADCNT: 0 = one per CPU.
pub const SOCKTHREADCNT_DEFAULT: u32 = 0;
/// MQTHREADCNT: 0 = one.
pub const MQTHREADCNT_DEFAULT: u32 = 0;
/// Most threads any thread-count key accepts.
pub const THREAD_COUNT_MAX: u32 = 1024;
/// MAXSOCKPOOL: connections kept to each peer.
pub const MAXSOCKPOOL_DEFAULT: u32 = 1;
/// Cap of MAXSOCKPOOL.
pub const MAXSOCKPOOL_MAX: u32 = 64;
/// SOCKPOOLTIMEOUT: seconds before a surplus idle connection closes; 0 = never.
pub const SOCKPOOLTIMEOUT_S_DEFAULT: u64 = 60;
/// SSL default.
pub const SSL_DEFAULT: bool = false;
/// SSL_VERIFY_PEER default.
pub const SSL_VERIFY_PEER_DEFAULT: bool = false;
/// SSL_MIN_VER default (text as written in the file).
pub const SSL_MIN_VER_DEFAULT: &str = "DEFAULT";
/// K2HFULLMAP in `[GLOBAL]` (accepted, no effect).
pub const GLOBAL_K2HFULLMAP_DEFAULT: bool = true;
/// K2HMASKBIT in `[GLOBAL]` (accepted, no effect).
pub const GLOBAL_K2HMASKBIT_DEFAULT: u32 = 8;
/// K2HCMASKBIT in `[GLOBAL]` (accepted, no effect).
pub const GLOBAL_K2HCMASKBIT_DEFAULT: u32 = 4;
/// K2HMAXELE in `[GLOBAL]` (accepted, no effect).
pub const GLOBAL_K2HMAXELE_DEFAULT: u32 = 32;

// ---- [GLOBAL], dkc keys ---------------------------------------------------

/// SLOTCOUNT default (power of two; fixed when the cluster is created).
pub const SLOTCOUNT_DEFAULT: u32 = 1024;
/// ACKLEVEL default.
pub const ACKLEVEL_DEFAULT: &str = "all";
/// SECRET: shortest shared secret accepted, bytes.
pub const SECRET_LEN_MIN: usize = 16;
/// SECRET: longest shared secret accepted, bytes.
pub const SECRET_LEN_MAX: usize = 1024;
/// HEARTBEATINTERVAL default, ms.
pub const HEARTBEATINTERVAL_MS_DEFAULT: u64 = 500;
/// HEARTBEATTIMEOUT default, ms (DESIGN §3: a dead peer is seen within 2 s).
pub const HEARTBEATTIMEOUT_MS_DEFAULT: u64 = 2000;
/// Shortest heartbeat interval, ms.
pub const HEARTBEATINTERVAL_MS_MIN: u64 = 10;
/// Longest heartbeat timeout, ms.
pub const HEARTBEATTIMEOUT_MS_MAX: u64 = 600_000;
/// MQMSGSIZE default: bytes of one queue message (descriptors; bodies are in shared memory).
pub const MQMSGSIZE_DEFAULT: u32 = 256;
/// Smallest MQMSGSIZE.
pub const MQMSGSIZE_MIN: u32 = 16;
/// Largest MQMSGSIZE (Linux HARD_MSGSIZEMAX is 16 MiB).
pub const MQMSGSIZE_MAX: u32 = 16 * 1024 * 1024;
/// MAXPAYLOAD default: largest message body, bytes (1 MiB + 128 KiB: a dkc request for a 1 MiB
/// value also carries its key, up to 64 KiB, and its framing; memcached's default item limit is
/// 1 MiB, so the memcached front needs the whole MiB. The rings stay 2 MiB: they are sized up to
/// a power of two.)
pub const MAXPAYLOAD_DEFAULT: u64 = 1024 * 1024 + 128 * 1024;
/// Smallest MAXPAYLOAD.
pub const MAXPAYLOAD_MIN: u64 = 1024;
/// Largest MAXPAYLOAD (1 GiB).
pub const MAXPAYLOAD_MAX: u64 = 1024 * 1024 * 1024;
/// SHMRINGSIZE default: shared-memory ring per attachment, bytes (4 MiB).
pub const SHMRINGSIZE_DEFAULT: u64 = 4 * 1024 * 1024;
/// Largest SHMRINGSIZE (4 GiB).
pub const SHMRINGSIZE_MAX: u64 = 4 * 1024 * 1024 * 1024;
/// SHMRINGSIZE must hold this many largest messages at once.
pub const SHMRING_PAYLOADS_MIN: u64 = 2;
/// IPCMODE default: file mode of queues and shared memory (owner only).
pub const IPCMODE_DEFAULT: u32 = 0o600;
/// MERGERATE default: bytes per second one merge may copy (64 MiB/s).
pub const MERGERATE_BYTES_PER_S_DEFAULT: u64 = 64 * 1024 * 1024;
/// Smallest MERGERATE (64 KiB/s).
pub const MERGERATE_BYTES_PER_S_MIN: u64 = 64 * 1024;
/// Largest MERGERATE (64 GiB/s, i.e. no practical limit).
pub const MERGERATE_BYTES_PER_S_MAX: u64 = 64 * 1024 * 1024 * 1024;
/// ANTIENTROPY default: seconds between two anti-entropy rounds (each slot's first owner
/// compares the owners' digests and merges the slots that differ); 0 = off.
pub const ANTIENTROPY_S_DEFAULT: u64 = 30;
/// Largest ANTIENTROPY, seconds (one day).
pub const ANTIENTROPY_S_MAX: u64 = 86_400;
/// DATADIR default.
pub const DATADIR_DEFAULT: &str = "/var/lib/dkc";
/// Most entries (addresses or networks) in METRICSALLOW.
pub const METRICSALLOW_ENTRIES_MAX: usize = 64;

const _: () = assert!(MAXPAYLOAD_DEFAULT * SHMRING_PAYLOADS_MIN <= SHMRINGSIZE_DEFAULT);
const _: () = assert!(HEARTBEATINTERVAL_MS_DEFAULT * 2 < HEARTBEATTIMEOUT_MS_DEFAULT);
const _: () = assert!(HEARTBEATTIMEOUT_MS_DEFAULT <= 2000);
const _: () = assert!(
    MAXQPERSERVERMQ_DEFAULT <= 10 && MAXQPERCLIENTMQ_DEFAULT <= 10,
    "stock msg_max is 10"
);
const _: () = assert!(MQMSGSIZE_DEFAULT <= 8192, "stock msgsize_max is 8192");

// ---- [SVRNODE] / [SLVNODE] -------------------------------------------------

/// CUK: longest custom unique key (CHMPX's CUK_MAX).
pub const CUK_LEN_MAX: usize = 2048;
/// ENDPOINTS and friends: most `host:port` entries (CHMPX's).
pub const ENDPOINTS_COUNT_MAX: usize = 4;
/// Most hosts one NAME pattern may expand to.
pub const NAME_EXPANSION_MAX: usize = MAXCHMPX_MAX as usize;

// ---- [K2HDKC] ----------------------------------------------------------------

/// RCVTIMEOUT default, ms.
pub const RCVTIMEOUT_MS_DEFAULT: u64 = 1000;
/// K2HTYPE default.
pub const K2HTYPE_DEFAULT: &str = "file";
/// K2HFILE default, relative to the node's data directory.
pub const K2HFILE_DEFAULT: &str = "dkc.k2h";
/// K2HFULLMAP default.
pub const K2HFULLMAP_DEFAULT: bool = true;
/// K2HINIT default for the file type (memory and temp always initialise).
pub const K2HINIT_DEFAULT: bool = false;
/// K2HMASKBIT default.
pub const K2HMASKBIT_DEFAULT: u32 = 8;
/// K2HCMASKBIT default.
pub const K2HCMASKBIT_DEFAULT: u32 = 4;
/// K2HMAXELE default.
pub const K2HMAXELE_DEFAULT: u32 = 32;
/// K2HPAGESIZE default, bytes.
pub const K2HPAGESIZE_DEFAULT: u32 = 128;
/// Range of K2HMASKBIT.
pub const K2HMASKBIT_MIN: u32 = 2;
/// Range of K2HMASKBIT.
pub const K2HMASKBIT_MAX: u32 = 28;
/// Range of K2HCMASKBIT.
pub const K2HCMASKBIT_MIN: u32 = 1;
/// Range of K2HCMASKBIT.
pub const K2HCMASKBIT_MAX: u32 = 16;
/// Range of K2HMAXELE.
pub const K2HMAXELE_MAX: u32 = 1024;
/// Range of K2HPAGESIZE.
pub const K2HPAGESIZE_MIN: u32 = 64;
/// Range of K2HPAGESIZE.
pub const K2HPAGESIZE_MAX: u32 = 65_536;
/// MINTHREAD default.
pub const MINTHREAD_DEFAULT: u32 = 1;
/// MAXTHREAD default.
pub const MAXTHREAD_DEFAULT: u32 = 100;
/// REDUCETIME default, seconds.
pub const REDUCETIME_S_DEFAULT: u64 = 30;
/// SYNC default: fdatasync before acknowledging a write.
pub const SYNC_DEFAULT: bool = false;
