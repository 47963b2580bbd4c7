//! The registry of every key the parser knows: section, origin, type,
//! default and meaning. It is the one list the parser checks unknown keys
//! against and the one list conf/README.md must document (a test compares
//! them), so a key cannot be parsed without being documented.

use super::defaults::*;

/// The sections of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SectionKind {
    /// `[GLOBAL]`, exactly once.
    Global,
    /// `[SVRNODE]`, once per server entry.
    SvrNode,
    /// `[SLVNODE]`, once per slave entry.
    SlvNode,
    /// `[K2HDKC]`, at most once, read by dkc-server.
    K2hdkc,
}

impl SectionKind {
    /// All sections, in documentation order.
    pub const ALL: [SectionKind; 4] = [
        SectionKind::Global,
        SectionKind::SvrNode,
        SectionKind::SlvNode,
        SectionKind::K2hdkc,
    ];

    /// The name as written between brackets.
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Global => "GLOBAL",
            SectionKind::SvrNode => "SVRNODE",
            SectionKind::SlvNode => "SLVNODE",
            SectionKind::K2hdkc => "K2HDKC",
        }
    }

    /// The section of an upper-case name.
    pub fn from_name(name: &str) -> Option<SectionKind> {
        SectionKind::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Where a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A CHMPX key, same name and meaning.
    Chmpx,
    /// A K2HDKC key, same name and meaning.
    K2hdkc,
    /// A key dkc adds.
    Dkc,
}

impl Origin {
    /// The word used in conf/README.md.
    pub fn label(self) -> &'static str {
        match self {
            Origin::Chmpx => "CHMPX",
            Origin::K2hdkc => "K2HDKC",
            Origin::Dkc => "dkc",
        }
    }
}

/// One documented key.
#[derive(Debug, Clone)]
pub struct KeyDoc {
    pub section: SectionKind,
    pub key: &'static str,
    pub origin: Origin,
    /// Accepted for compatibility with CHMPX/K2HDKC files, but has no effect in dkc.
    pub no_effect: bool,
    /// Type and range, as documented.
    pub kind: String,
    /// Default as documented ("required", "none", or the value).
    pub default: String,
    /// One-line meaning.
    pub meaning: &'static str,
}

fn on_off(b: bool) -> String {
    if b { "on" } else { "off" }.to_string()
}

/// Every key the parser accepts, in documentation order.
pub fn key_docs() -> Vec<KeyDoc> {
    use Origin::{Chmpx, Dkc};
    use SectionKind::{Global, SlvNode, SvrNode};
    let (section_k2hdkc, origin_k2hdkc) = (SectionKind::K2hdkc, Origin::K2hdkc);
    let mut v = Vec::new();
    let mut k = |section, key, origin, no_effect, kind: String, default: String, meaning| {
        v.push(KeyDoc {
            section,
            key,
            origin,
            no_effect,
            kind,
            default,
            meaning,
        });
    };
    let n = |x: u64| x.to_string();
    let count = |min: u64, max: u64| format!("integer {min}..={max}");

    // [GLOBAL], CHMPX keys.
    k(
        Global,
        "FILEVERSION",
        Chmpx,
        true,
        count(0, u64::from(u32::MAX)),
        "none".into(),
        "version number of the file, informational",
    );
    k(
        Global,
        "DATE",
        Chmpx,
        true,
        "text".into(),
        "none".into(),
        "update time of the file (RFC 2822), informational",
    );
    k(Global, "GROUP", Chmpx, false, format!("name, 1..={GROUP_LEN_MAX} of A-Z a-z 0-9 . _ -"), "required".into(), "cluster name; identical on every node; prefixes queue and shared-memory names; frames of another GROUP are refused");
    k(
        Global,
        "MODE",
        Chmpx,
        false,
        "server | slave".into(),
        "none".into(),
        "which entry kind this process is; without it, --ctlport/SELFCTLPORT and the host decide",
    );
    k(
        Global,
        "DELIVERMODE",
        Chmpx,
        false,
        "hash".into(),
        "hash".into(),
        "routing by key hash; CHMPX's random mode is refused (it cannot keep replicas)",
    );
    k(
        Global,
        "MAXCHMPX",
        Chmpx,
        false,
        count(1, MAXCHMPX_MAX.into()),
        n(MAXCHMPX_DEFAULT.into()),
        "most node entries (servers + slaves) after NAME expansion",
    );
    k(Global, "REPLICA", Chmpx, false, "integer 0..=MAXCHMPX-1".into(), n(REPLICA_DEFAULT.into()), "replicas per slot besides the primary: each slot has REPLICA+1 owners (fewer if fewer servers)");
    k(
        Global,
        "MAXMQSERVER",
        Chmpx,
        false,
        count(1, MAXMQSERVER_MAX.into()),
        n(MAXMQSERVER_DEFAULT.into()),
        "server processes (dkc-server) expected to attach at once; sizes the `chmpx --check` report, no cap",
    );
    k(
        Global,
        "MAXMQCLIENT",
        Chmpx,
        false,
        count(1, MAXMQCLIENT_MAX.into()),
        n(MAXMQCLIENT_DEFAULT.into()),
        "client attachments (CLI, memcached front, programs) expected at once, two queues each; sizes the `chmpx --check` report, no cap",
    );
    k(
        Global,
        "MQPERATTACH",
        Chmpx,
        true,
        count(1, MQ_COUNT_PER_ITEM_MAX.into()),
        n(MQPERATTACH_DEFAULT.into()),
        "CHMPX: queues reserved per attach; dkc always uses one doorbell pair",
    );
    k(
        Global,
        "MAXQPERSERVERMQ",
        Chmpx,
        false,
        count(1, MQ_COUNT_PER_ITEM_MAX.into()),
        n(MAXQPERSERVERMQ_DEFAULT.into()),
        "depth (mq_maxmsg) checked by `chmpx --check` for the queues chmpx reads; dkc uses 8 (accept) and 4 (doorbells)",
    );
    k(
        Global,
        "MAXQPERCLIENTMQ",
        Chmpx,
        false,
        count(1, MQ_COUNT_PER_ITEM_MAX.into()),
        n(MAXQPERCLIENTMQ_DEFAULT.into()),
        "depth (mq_maxmsg) checked by `chmpx --check` for the queues a process reads; dkc uses 4",
    );
    k(
        Global,
        "MAXMQPERCLIENT",
        Chmpx,
        true,
        count(1, MQ_COUNT_PER_ITEM_MAX.into()),
        n(MAXMQPERCLIENT_DEFAULT.into()),
        "CHMPX: queues per client process; dkc counts attachments (MAXMQCLIENT)",
    );
    k(
        Global,
        "MAXHISTLOG",
        Chmpx,
        true,
        count(0, MAXHISTLOG_MAX.into()),
        n(MAXHISTLOG_DEFAULT.into()),
        "CHMPX: entries of the communication history log",
    );
    k(
        Global,
        "PORT",
        Chmpx,
        false,
        "port 1..=65535".into(),
        "none".into(),
        "default data port of [SVRNODE] entries",
    );
    k(
        Global,
        "CTLPORT",
        Chmpx,
        false,
        "port 1..=65535".into(),
        "none".into(),
        "default control port of [SVRNODE] and [SLVNODE] entries",
    );
    k(
        Global,
        "SELFCTLPORT",
        Chmpx,
        false,
        "port 1..=65535".into(),
        "none".into(),
        "control port of the entry this process is; --ctlport overrides it",
    );
    k(
        Global,
        "RWTIMEOUT",
        Chmpx,
        true,
        format!("microseconds 1..={TIMEOUT_US_MAX}"),
        n(RWTIMEOUT_US_DEFAULT),
        "CHMPX: socket read/write wait per attempt; dkc's links find a stalled peer by HEARTBEATTIMEOUT",
    );
    k(
        Global,
        "RETRYCNT",
        Chmpx,
        true,
        count(1, RETRY_COUNT_MAX.into()),
        n(RETRYCNT_DEFAULT.into()),
        "CHMPX: socket read/write attempts (see RWTIMEOUT)",
    );
    k(
        Global,
        "CONTIMEOUT",
        Chmpx,
        true,
        format!("microseconds 1..={TIMEOUT_US_MAX}"),
        n(CONTIMEOUT_US_DEFAULT),
        "CHMPX: connect timeout to a peer; dkc's links use their own and retry with backoff",
    );
    k(
        Global,
        "MQRWTIMEOUT",
        Chmpx,
        false,
        format!("microseconds 1..={TIMEOUT_US_MAX}"),
        n(MQRWTIMEOUT_US_DEFAULT),
        "message-queue wait per attempt; dkc clients wait at least MQRWTIMEOUT x MQRETRYCNT for an answer",
    );
    k(
        Global,
        "MQRETRYCNT",
        Chmpx,
        false,
        count(1, RETRY_COUNT_MAX.into()),
        n(MQRETRYCNT_DEFAULT.into()),
        "message-queue attempts (see MQRWTIMEOUT)",
    );
    k(
        Global,
        "MQACK",
        Chmpx,
        true,
        "boolean".into(),
        on_off(MQACK_DEFAULT),
        "CHMPX: wait for an ACK on each client send; dkc's doorbell protocol always answers",
    );
    k(
        Global,
        "AUTOMERGE",
        Chmpx,
        false,
        "boolean".into(),
        on_off(AUTOMERGE_DEFAULT),
        "start and complete merges by itself (CHMPX default: off)",
    );
    k(
        Global,
        "DOMERGE",
        Chmpx,
        true,
        "boolean".into(),
        on_off(DOMERGE_DEFAULT),
        "CHMPX: whether data moves when a server joins or leaves; dkc always moves it (skipping would lose data)",
    );
    k(
        Global,
        "MERGETIMEOUT",
        Chmpx,
        false,
        format!("seconds 0..={SECONDS_MAX}"),
        n(MERGETIMEOUT_S_DEFAULT),
        "stop a merge that runs longer, log and count it, and retry it; 0 = never",
    );
    k(
        Global,
        "SOCKTHREADCNT",
        Chmpx,
        true,
        count(0, THREAD_COUNT_MAX.into()),
        n(SOCKTHREADCNT_DEFAULT.into()),
        "CHMPX: network worker threads; dkc's links run on chmpx's runtime (--threads)",
    );
    k(
        Global,
        "MQTHREADCNT",
        Chmpx,
        true,
        count(0, THREAD_COUNT_MAX.into()),
        n(MQTHREADCNT_DEFAULT.into()),
        "CHMPX: message-queue worker threads; dkc has one routing thread",
    );
    k(
        Global,
        "MAXSOCKPOOL",
        Chmpx,
        true,
        count(1, MAXSOCKPOOL_MAX.into()),
        n(MAXSOCKPOOL_DEFAULT.into()),
        "CHMPX: connections kept to each peer; dkc keeps one",
    );
    k(
        Global,
        "SOCKPOOLTIMEOUT",
        Chmpx,
        true,
        format!("seconds 0..={SECONDS_MAX}"),
        n(SOCKPOOLTIMEOUT_S_DEFAULT),
        "CHMPX: close a surplus idle connection after this long",
    );
    k(
        Global,
        "SSL",
        Chmpx,
        false,
        "boolean".into(),
        on_off(SSL_DEFAULT),
        "default TLS on/off for node entries",
    );
    k(
        Global,
        "SSL_VERIFY_PEER",
        Chmpx,
        false,
        "boolean".into(),
        on_off(SSL_VERIFY_PEER_DEFAULT),
        "servers require a certificate, signed by a CA in CAPATH, from every node that dials them",
    );
    k(
        Global,
        "SSL_MIN_VER",
        Chmpx,
        false,
        "DEFAULT | TLSV1.2 | TLSV1.3".into(),
        SSL_MIN_VER_DEFAULT.into(),
        "oldest TLS version accepted; DEFAULT = TLS 1.2 (older versions are refused)",
    );
    k(
        Global,
        "CAPATH",
        Chmpx,
        false,
        "path (file or directory)".into(),
        "none".into(),
        "CA certificates for peer verification",
    );
    k(
        Global,
        "SERVER_CERT",
        Chmpx,
        false,
        "path".into(),
        "none".into(),
        "certificate a server node presents",
    );
    k(
        Global,
        "SERVER_PRIKEY",
        Chmpx,
        false,
        "path".into(),
        "none".into(),
        "private key of SERVER_CERT",
    );
    k(
        Global,
        "SLAVE_CERT",
        Chmpx,
        false,
        "path".into(),
        "none".into(),
        "client certificate a node presents when it connects",
    );
    k(
        Global,
        "SLAVE_PRIKEY",
        Chmpx,
        false,
        "path".into(),
        "none".into(),
        "private key of SLAVE_CERT",
    );
    k(
        Global,
        "K2HFULLMAP",
        Chmpx,
        true,
        "boolean".into(),
        on_off(GLOBAL_K2HFULLMAP_DEFAULT),
        "CHMPX: its internal message store; dkc carries bodies in shared-memory rings",
    );
    k(
        Global,
        "K2HMASKBIT",
        Chmpx,
        true,
        count(K2HMASKBIT_MIN.into(), K2HMASKBIT_MAX.into()),
        n(GLOBAL_K2HMASKBIT_DEFAULT.into()),
        "CHMPX: its internal message store",
    );
    k(
        Global,
        "K2HCMASKBIT",
        Chmpx,
        true,
        count(K2HCMASKBIT_MIN.into(), K2HCMASKBIT_MAX.into()),
        n(GLOBAL_K2HCMASKBIT_DEFAULT.into()),
        "CHMPX: its internal message store",
    );
    k(
        Global,
        "K2HMAXELE",
        Chmpx,
        true,
        count(1, K2HMAXELE_MAX.into()),
        n(GLOBAL_K2HMAXELE_DEFAULT.into()),
        "CHMPX: its internal message store",
    );
    // [GLOBAL], dkc keys.
    k(
        Global,
        "SLOTCOUNT",
        Dkc,
        false,
        format!(
            "power of two {}..={}",
            crate::placement::SLOT_COUNT_MIN,
            crate::placement::SLOT_COUNT_MAX
        ),
        n(SLOTCOUNT_DEFAULT.into()),
        "slots the hash space is cut into; fixed when the cluster is created",
    );
    k(Global, "ACKLEVEL", Dkc, false, "all | quorum | one".into(), ACKLEVEL_DEFAULT.into(), "when a write is acknowledged: all live owners, a majority of owners, or the primary alone; cluster-wide");
    k(
        Global,
        "SECRET",
        Dkc,
        false,
        format!("text, {SECRET_LEN_MIN}..={SECRET_LEN_MAX} bytes"),
        "none".into(),
        "shared secret for challenge-response on every connection; none = no authentication",
    );
    k(
        Global,
        "HEARTBEATINTERVAL",
        Dkc,
        false,
        format!("milliseconds {HEARTBEATINTERVAL_MS_MIN}..={HEARTBEATTIMEOUT_MS_MAX}"),
        n(HEARTBEATINTERVAL_MS_DEFAULT),
        "heartbeat period between chmpx processes",
    );
    k(
        Global,
        "HEARTBEATTIMEOUT",
        Dkc,
        false,
        format!("milliseconds, > 2 x HEARTBEATINTERVAL, ..={HEARTBEATTIMEOUT_MS_MAX}"),
        n(HEARTBEATTIMEOUT_MS_DEFAULT),
        "a peer silent this long is DOWN",
    );
    k(Global, "MQMSGSIZE", Dkc, false, format!("bytes {MQMSGSIZE_MIN}..={MQMSGSIZE_MAX}"), n(MQMSGSIZE_DEFAULT.into()), "queue message size (mq_msgsize) `chmpx --check` sizes its report with; dkc's doorbells are 16 bytes, bodies travel in shared memory");
    k(
        Global,
        "SHMRINGSIZE",
        Dkc,
        false,
        format!(
            "bytes (K/M/G suffix ok), >= {SHMRING_PAYLOADS_MIN} x MAXPAYLOAD, ..={SHMRINGSIZE_MAX}"
        ),
        n(SHMRINGSIZE_DEFAULT),
        "ring size per attachment and direction `chmpx --check` sizes its report with; dkc sizes each ring from MAXPAYLOAD (the largest message, rounded up to a power of two)",
    );
    k(
        Global,
        "MAXPAYLOAD",
        Dkc,
        false,
        format!("bytes (K/M/G suffix ok) {MAXPAYLOAD_MIN}..={MAXPAYLOAD_MAX}"),
        n(MAXPAYLOAD_DEFAULT),
        "largest message body (key + value + overhead) chmpx carries; the default holds a 1 MiB value with a key up to 64 KiB",
    );
    k(
        Global,
        "IPCMODE",
        Dkc,
        false,
        "octal file mode 0600..=0666".into(),
        format!("{IPCMODE_DEFAULT:04o}"),
        "mode of the queues and shared-memory objects chmpx, dkc-server and clients create",
    );
    k(
        Global,
        "MERGERATE",
        Dkc,
        false,
        format!("bytes per second (K/M/G suffix ok) {MERGERATE_BYTES_PER_S_MIN}..={MERGERATE_BYTES_PER_S_MAX}"),
        n(MERGERATE_BYTES_PER_S_DEFAULT),
        "most bytes per second one merge copies, so merging does not starve client traffic",
    );
    k(
        Global,
        "ANTIENTROPY",
        Dkc,
        false,
        format!("seconds 0..={ANTIENTROPY_S_MAX}"),
        n(ANTIENTROPY_S_DEFAULT),
        "anti-entropy: every this many seconds each slot's first owner compares the owners' digests (all owners UP, attached, SERVICE IN, no change pending, no merge running) and merges only the slots that differ, at MERGERATE; 0 = off",
    );
    k(
        Global,
        "METRICSALLOW",
        Dkc,
        false,
        format!("comma-separated IP addresses or networks (10.0.0.5, 10.0.0.0/24, ::1), or * = any host; at most {METRICSALLOW_ENTRIES_MAX}"),
        "none".into(),
        "who else may read the METRICSPORT endpoints (a Prometheus server that is no configured host); this host and the configured hosts always may",
    );
    k(
        Global,
        "DATADIR",
        Dkc,
        false,
        "path (relative = to the config file's folder)".into(),
        DATADIR_DEFAULT.into(),
        "where each node keeps its files, in DATADIR/<GROUP>-<CTLPORT>/: the k2hash file and the server chmpx's ring.json",
    );

    // [SVRNODE] and [SLVNODE].
    for section in [SvrNode, SlvNode] {
        let server = section == SvrNode;
        k(
            section,
            "NAME",
            Chmpx,
            false,
            "host name, IP or pattern ([a,b] [1-5] [a-z]; as in CHMPX [01-03] is 1,2,3); [SLVNODE] also [.]* = any host"
                .into(),
            "required".into(),
            "host of the entry; a pattern makes one entry per host",
        );
        if server {
            k(
                section,
                "PORT",
                Chmpx,
                false,
                "port 1..=65535".into(),
                "GLOBAL PORT".into(),
                "data port",
            );
        }
        k(
            section,
            "CTLPORT",
            Chmpx,
            false,
            "port 1..=65535".into(),
            "GLOBAL CTLPORT".into(),
            "control port; with NAME it identifies the node",
        );
        k(
            section,
            "CUK",
            Chmpx,
            false,
            format!("text ..={CUK_LEN_MAX} bytes, unique"),
            "none".into(),
            "custom unique key, shown by the status tool; not used for identity",
        );
        k(
            section,
            "ENDPOINTS",
            Chmpx,
            false,
            format!("up to {ENDPOINTS_COUNT_MAX} host:port, comma separated"),
            "none".into(),
            "addresses to reach the data port through (NAT entrance) instead of NAME:PORT",
        );
        k(
            section,
            "CTLENDPOINTS",
            Chmpx,
            false,
            format!("up to {ENDPOINTS_COUNT_MAX} host:port, comma separated"),
            "none".into(),
            "addresses to reach the control port through instead of NAME:CTLPORT",
        );
        k(
            section,
            "FORWARD_PEERS",
            Chmpx,
            true,
            format!("up to {ENDPOINTS_COUNT_MAX} host:port, comma separated"),
            "none".into(),
            "CHMPX: gateway peers",
        );
        k(
            section,
            "REVERSE_PEERS",
            Chmpx,
            true,
            format!("up to {ENDPOINTS_COUNT_MAX} host:port, comma separated"),
            "none".into(),
            "CHMPX: gateway peers",
        );
        if server {
            k(
                section,
                "SSL",
                Chmpx,
                false,
                "boolean".into(),
                "GLOBAL SSL".into(),
                "TLS on this node's data port (the control port stays plain text)",
            );
            k(
                section,
                "SSL_VERIFY_PEER",
                Chmpx,
                false,
                "boolean".into(),
                "GLOBAL SSL_VERIFY_PEER".into(),
                "require a certificate, signed by a CA in CAPATH, from every node that dials this one",
            );
            k(
                section,
                "SERVER_CERT",
                Chmpx,
                false,
                "path".into(),
                "GLOBAL SERVER_CERT".into(),
                "certificate this node presents",
            );
            k(
                section,
                "SERVER_PRIKEY",
                Chmpx,
                false,
                "path".into(),
                "GLOBAL SERVER_PRIKEY".into(),
                "private key of SERVER_CERT",
            );
        }
        k(
            section,
            "CAPATH",
            Chmpx,
            false,
            "path".into(),
            "GLOBAL CAPATH".into(),
            "CA certificates",
        );
        k(
            section,
            "SLAVE_CERT",
            Chmpx,
            false,
            "path".into(),
            "GLOBAL SLAVE_CERT".into(),
            "client certificate this node presents",
        );
        k(
            section,
            "SLAVE_PRIKEY",
            Chmpx,
            false,
            "path".into(),
            "GLOBAL SLAVE_PRIKEY".into(),
            "private key of SLAVE_CERT",
        );
        k(
            section,
            "METRICSPORT",
            Dkc,
            false,
            "port 1..=65535".into(),
            "none".into(),
            "Prometheus metrics endpoint of this node's chmpx, on every interface; it answers this host (127.0.0.1, ::1), the configured hosts and GLOBAL METRICSALLOW, and closes other connections; none = off",
        );
    }

    // [K2HDKC].
    k(
        section_k2hdkc,
        "RCVTIMEOUT",
        origin_k2hdkc,
        false,
        format!("milliseconds 1..={}", TIMEOUT_US_MAX / 1000),
        n(RCVTIMEOUT_MS_DEFAULT),
        "how long a command waits for its result",
    );
    k(
        section_k2hdkc,
        "SVRNODEINI",
        origin_k2hdkc,
        false,
        "path".into(),
        "this file".into(),
        "the chmpx server config dkc-server attaches with",
    );
    k(
        section_k2hdkc,
        "K2HTYPE",
        origin_k2hdkc,
        false,
        "mem | file | temp (also m, memory, f, t, temporary)".into(),
        K2HTYPE_DEFAULT.into(),
        "storage mode of the k2hash data",
    );
    k(
        section_k2hdkc,
        "K2HFILE",
        origin_k2hdkc,
        false,
        "path (relative = in the node's data directory)".into(),
        K2HFILE_DEFAULT.into(),
        "k2hash data file for file and temp types",
    );
    k(
        section_k2hdkc,
        "K2HFULLMAP",
        origin_k2hdkc,
        false,
        "boolean".into(),
        on_off(K2HFULLMAP_DEFAULT),
        "map the whole file (on) or only its index (off); mem requires on",
    );
    k(
        section_k2hdkc,
        "K2HINIT",
        origin_k2hdkc,
        false,
        "boolean".into(),
        on_off(K2HINIT_DEFAULT),
        "initialise (empty) the file at start; mem and temp are always initialised",
    );
    k(
        section_k2hdkc,
        "K2HMASKBIT",
        origin_k2hdkc,
        false,
        count(K2HMASKBIT_MIN.into(), K2HMASKBIT_MAX.into()),
        n(K2HMASKBIT_DEFAULT.into()),
        "initial index size: 2^K2HMASKBIT buckets",
    );
    k(
        section_k2hdkc,
        "K2HCMASKBIT",
        origin_k2hdkc,
        false,
        count(K2HCMASKBIT_MIN.into(), K2HCMASKBIT_MAX.into()),
        n(K2HCMASKBIT_DEFAULT.into()),
        "collision mask bits per bucket",
    );
    k(
        section_k2hdkc,
        "K2HMAXELE",
        origin_k2hdkc,
        false,
        count(1, K2HMAXELE_MAX.into()),
        n(K2HMAXELE_DEFAULT.into()),
        "elements per collision list before the index grows",
    );
    k(
        section_k2hdkc,
        "K2HPAGESIZE",
        origin_k2hdkc,
        false,
        count(K2HPAGESIZE_MIN.into(), K2HPAGESIZE_MAX.into()),
        n(K2HPAGESIZE_DEFAULT.into()),
        "data page size, bytes",
    );
    k(
        section_k2hdkc,
        "EXPIRE",
        origin_k2hdkc,
        false,
        format!("seconds 1..={SECONDS_MAX}"),
        "none".into(),
        "default lifetime of stored items; none = no expiry",
    );
    k(
        section_k2hdkc,
        "MINTHREAD",
        origin_k2hdkc,
        false,
        count(1, THREAD_COUNT_MAX.into()),
        n(MINTHREAD_DEFAULT.into()),
        "worker threads kept",
    );
    k(
        section_k2hdkc,
        "MAXTHREAD",
        origin_k2hdkc,
        false,
        count(1, THREAD_COUNT_MAX.into()),
        n(MAXTHREAD_DEFAULT.into()),
        "most worker threads (>= MINTHREAD)",
    );
    k(
        section_k2hdkc,
        "REDUCETIME",
        origin_k2hdkc,
        false,
        format!("seconds 1..={SECONDS_MAX}"),
        n(REDUCETIME_S_DEFAULT),
        "idle time before surplus workers stop",
    );
    k(
        section_k2hdkc,
        "SYNC",
        Dkc,
        false,
        "boolean".into(),
        on_off(SYNC_DEFAULT),
        "fdatasync the data before acknowledging a write (survives power loss)",
    );
    v
}

/// Whether `key` (upper case) is a key of `section`.
pub fn is_known(section: SectionKind, key: &str) -> bool {
    key_docs()
        .iter()
        .any(|d| d.section == section && d.key == key)
}

/// Why a CHMPX/K2HDKC key we do not accept is refused, or where a key belongs.
pub(crate) fn unknown_key_hint(section: SectionKind, key: &str) -> String {
    let reason = match (section, key) {
        (_, "CHMPXIDTYPE") | (_, "CUSTOM_ID_SEED") | (_, "SELFCUK") => {
            Some("a CHMPX key dkc does not support: nodes are identified by NAME and CTLPORT (select one with --ctlport or SELFCTLPORT)")
        }
        (_, "NSSDB_DIR") => Some("a CHMPX key dkc does not support: TLS uses rustls and PEM files (CAPATH, SERVER_CERT, ...)"),
        (_, "INCLUDE") => Some("a CHMPX key dkc does not support: write the whole config in one file"),
        (SectionKind::K2hdkc, "REPLCLUSTERINI" | "DTORTHREADCNT" | "DTORCTP") => {
            Some("a K2HDKC key dkc does not support: k2htpdtor transaction plugins do not exist in dkc")
        }
        (SectionKind::K2hdkc, "PASSPHRASES" | "PASSFILE") => Some("a K2HDKC key dkc does not support: values are not encrypted"),
        (SectionKind::K2hdkc, "HISTORY" | "ATTRPLUGIN") => Some("a K2HDKC key dkc does not support"),
        (SectionKind::K2hdkc, "MAXTHREADCNT") => Some("did you mean MAXTHREAD?"),
        (SectionKind::K2hdkc, "REDUCETHREAD") => Some("did you mean REDUCETIME?"),
        (SectionKind::K2hdkc, "ACKLEVEL") => Some("ACKLEVEL is cluster-wide: set it in [GLOBAL]"),
        (SectionKind::SlvNode, "PORT") => Some("slave entries have no data port; give CTLPORT only"),
        _ => None,
    };
    if let Some(reason) = reason {
        return format!(": {reason}");
    }
    let elsewhere: Vec<&str> = SectionKind::ALL
        .into_iter()
        .filter(|s| *s != section && is_known(*s, key))
        .map(SectionKind::name)
        .collect();
    if elsewhere.is_empty() {
        format!(
            ": [{}] has no such key; see conf/README.md for the keys it takes",
            section.name()
        )
    } else {
        format!(": this key belongs in [{}]", elsewhere.join("] or ["))
    }
}
