//! [`ServerSettings`]: what dkc-server runs with, built from the cluster config file.

use std::path::PathBuf;
use std::time::Duration;

use chmpx::attach::AttachOptions;
use chmpx::config::{AckLevel, Config, K2hType, LocalAddrs, Mode};
use dkc_client::proto::version::NODE_COUNT_MAX;

use crate::limits::{Limits, VALUE_SIZE_MAX_DEFAULT};

/// Most worker threads, whatever MAXTHREAD says: on top of this, more threads only contend.
pub const WORKER_THREADS_MAX: usize = 64;
/// Worker threads per CPU core used when MAXTHREAD allows it (MINTHREAD raises it). One per
/// core: the worker that reads the ring serves what it read, so more workers mostly wait on the
/// same ring and cost wake-ups. On 2 cores, 2 workers against 8 made 1.08-1.28x the ops/s at
/// 9-27% less CPU per operation with the front on the server's chmpx; through a slave chmpx
/// no change beyond the noise (docs/BENCHMARKS.md, memcached Round 6).
pub const WORKER_THREADS_PER_CORE: usize = 1;
/// Threads that wait for replica acknowledgements.
pub const ACK_WAITER_THREADS: usize = 4;
/// Room in a message body for everything but the key and the value (version byte,
/// MessagePack markers, flags, expiry, version).
pub const BODY_FRAMING_BYTES: usize = 256;

const _: () = assert!(ACK_WAITER_THREADS >= 1 && WORKER_THREADS_MAX >= 1);

/// Where and how the k2hash data is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSpec {
    /// K2HTYPE.
    pub kind: K2hType,
    /// The file (None for the memory type).
    pub path: Option<PathBuf>,
    /// K2HFULLMAP: map the whole file (true) or only the index (false).
    pub full_map: bool,
    /// K2HINIT: start from an empty file.
    pub init: bool,
    /// SYNC: fdatasync before acknowledging a write.
    pub sync: bool,
    /// K2HMASKBIT: 2^bits index shards (used when creating, checked when opening).
    pub shard_bits: u32,
    /// K2HCMASKBIT: initial 2^bits slots per shard table (creation only).
    pub table_bits: u32,
}

/// Everything dkc-server runs with.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// The config file.
    pub conf_file: PathBuf,
    /// GROUP: the cluster name used to find the local chmpx.
    pub cluster: String,
    /// CTLPORT of this node's chmpx.
    pub ctlport: u16,
    /// "host:ctlport" of this node.
    pub node_id: String,
    /// This node's position among the `[SVRNODE]` entries: stamped into every version.
    pub node_index: u8,
    /// The k2hash data.
    pub store: StoreSpec,
    /// ACKLEVEL.
    pub ack_level: AckLevel,
    /// REPLICA.
    pub replica: u32,
    /// Worker threads.
    pub threads: usize,
    /// RCVTIMEOUT: how long a write waits for replica acknowledgements.
    pub rcv_timeout: Duration,
    /// Longest a client command may have waited on this host, from the moment chmpx put it in
    /// our ring to its execution; older ones are refused unexecuted (see [`queue_age_max`]).
    pub queue_age_max: Duration,
    /// How to attach to chmpx (body size and queue mode as chmpx has them).
    pub attach: AttachOptions,
    /// Command limits.
    pub limits: Limits,
    /// EXPIRE: lifetime of items written without an expiry, seconds.
    pub expire_default_secs: Option<u64>,
    /// Test-only: never replicate, answer writes as acknowledged (see
    /// [`DISABLE_REPLICATION_ENV`]). Off unless `main` reads the variable.
    pub replication_disabled: bool,
}

/// Environment variable of the test-only switch that turns replication off: with the value
/// `1` at start-up, the primary applies writes and answers them as acknowledged without sending
/// any Replicate. It exists so the fault tests can show their checker catches a build that
/// loses acknowledged writes; never set it anywhere else.
pub const DISABLE_REPLICATION_ENV: &str = "DKC_TEST_DISABLE_REPLICATION";

/// Whether the value of [`DISABLE_REPLICATION_ENV`] turns replication off (exactly `1`).
pub fn replication_disabled_by(value: Option<&str>) -> bool {
    value == Some("1")
}

/// The longest a client command may wait on this host before it runs: the smaller of
/// RCVTIMEOUT and HEARTBEATTIMEOUT - HEARTBEATINTERVAL. Older ones are refused unexecuted.
///
/// Why the heartbeat figures: chmpx routed the command here because this node was the key's
/// first live owner *when it queued it*. Its peers take this node for DOWN, and a co-owner
/// starts serving the key's writes, no sooner than HEARTBEATTIMEOUT after the last frame they
/// had from it, and chmpx sent one at most HEARTBEATINTERVAL before it queued the command. So
/// a command that ran within HEARTBEATTIMEOUT - HEARTBEATINTERVAL of its queueing cannot have
/// been overtaken by a takeover; one that waited longer (this process stopped, SIGSTOP or a
/// stall) may run against a value the co-owner has since changed, and a conditional write then
/// mints a version newer than the co-owner's acknowledged ones (the lost-increments case).
///
/// Why RCVTIMEOUT too: it is how long the server itself waits for a command's replicas; a
/// command that already waited that long in the queue has outlived the time the server gives a
/// request, and with a long HEARTBEATTIMEOUT (up to minutes) it would otherwise still run
/// minutes late. The caller gets `E_UNAVAILABLE` saying nothing was done, which it may retry.
pub fn queue_age_max(
    rcv_timeout: Duration,
    heartbeat_timeout: Duration,
    heartbeat_interval: Duration,
) -> Duration {
    rcv_timeout.min(heartbeat_timeout.saturating_sub(heartbeat_interval))
}

/// Why the config cannot run a dkc-server here.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config itself is wrong (the message names file, line and key).
    #[error(transparent)]
    Config(#[from] Box<chmpx::config::ConfigError>),
    /// The entry for this process is a slave.
    #[error(
        "{file}: the entry for this process ({node}) is a [SLVNODE]; dkc-server runs on \
         [SVRNODE] hosts only (check --ctlport)"
    )]
    NotAServer {
        /// The config file.
        file: PathBuf,
        /// The entry.
        node: String,
    },
    /// No `[K2HDKC]` section.
    #[error(
        "{file}: no [K2HDKC] section; add one (at least K2HTYPE, and K2HFILE for the file \
         type), see conf/README.md"
    )]
    NoDkcSection {
        /// The config file.
        file: PathBuf,
    },
    /// Too many servers for the version layout.
    #[error(
        "{file}: this node is server number {position} in the file, but versions have room \
         for {max} server nodes only; list at most {max} [SVRNODE] entries"
    )]
    TooManyServers {
        /// The config file.
        file: PathBuf,
        /// 1-based position.
        position: usize,
        /// NODE_COUNT_MAX.
        max: usize,
    },
    /// MAXPAYLOAD leaves no room for values.
    #[error(
        "{file}: MAXPAYLOAD {max_payload} is too small for dkc: it must exceed {needed} bytes"
    )]
    PayloadTooSmall {
        /// The config file.
        file: PathBuf,
        /// MAXPAYLOAD.
        max_payload: u64,
        /// The smallest workable value.
        needed: usize,
    },
}

impl ServerSettings {
    /// Settings for the `[SVRNODE]` entry this process is (`ctlport` from `--ctlport`).
    pub fn from_config(
        cfg: &Config,
        ctlport: Option<u16>,
        local: &LocalAddrs,
    ) -> Result<ServerSettings, SettingsError> {
        let me = cfg.self_node(ctlport, local).map_err(Box::new)?;
        let file = cfg.file.clone();
        let node_id = me.id().to_string();
        if me.mode != Mode::Server {
            return Err(SettingsError::NotAServer {
                file,
                node: node_id,
            });
        }
        let position = cfg
            .servers
            .iter()
            .position(|n| n.id() == me.id())
            .unwrap_or(0);
        let node_index = u8::try_from(position)
            .ok()
            .filter(|_| position < NODE_COUNT_MAX)
            .ok_or(SettingsError::TooManyServers {
                file: file.clone(),
                position: position + 1,
                max: NODE_COUNT_MAX,
            })?;
        let dkc = cfg
            .dkc
            .as_ref()
            .ok_or(SettingsError::NoDkcSection { file: file.clone() })?;
        let g = &cfg.global;

        let body_size_max = usize::try_from(g.max_payload).unwrap_or(usize::MAX);
        let limits = Limits::default();
        // A request carries the key and the value; a reply carries them back. Keep the value
        // limit where both still fit in one body.
        let room = limits.key_size_max + BODY_FRAMING_BYTES;
        let value_size_max = body_size_max.checked_sub(room).filter(|v| *v > 0).ok_or(
            SettingsError::PayloadTooSmall {
                file: file.clone(),
                max_payload: g.max_payload,
                needed: room,
            },
        )?;
        let limits = limits.with_value_size_max(value_size_max.min(VALUE_SIZE_MAX_DEFAULT));

        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cores * WORKER_THREADS_PER_CORE)
            .min(dkc.max_thread as usize)
            .max(dkc.min_thread as usize)
            .clamp(1, WORKER_THREADS_MAX);

        Ok(ServerSettings {
            conf_file: file,
            cluster: g.group.clone(),
            ctlport: me.ctlport,
            node_id,
            node_index,
            store: StoreSpec {
                kind: dkc.k2h_type,
                path: cfg.k2h_file_for(me),
                full_map: dkc.k2h_fullmap,
                init: dkc.k2h_init,
                sync: dkc.sync,
                shard_bits: dkc.k2h_maskbit.min(k2hash::limits::SHARD_BITS_MAX),
                table_bits: dkc.k2h_cmaskbit.clamp(
                    k2hash::limits::TABLE_BITS_MIN,
                    k2hash::limits::TABLE_BITS_MAX,
                ),
            },
            ack_level: g.ack_level,
            replica: g.replica,
            threads,
            rcv_timeout: dkc.rcv_timeout(),
            queue_age_max: queue_age_max(
                dkc.rcv_timeout(),
                g.heartbeat_timeout(),
                g.heartbeat_interval(),
            ),
            attach: AttachOptions {
                body_size_max,
                mode: g.ipc_mode,
                ..AttachOptions::default()
            },
            limits,
            expire_default_secs: dkc.expire_s,
            replication_disabled: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(global_extra: &str, dkc: &str) -> Config {
        let text = format!(
            "[GLOBAL]\nGROUP = T\nMAXCHMPX = 8\nREPLICA = 1\nSLOTCOUNT = 64\nDATADIR = /tmp/x\n\
             {global_extra}\n\
             [SVRNODE]\nNAME = 127.0.0.1\nPORT = 18120\nCTLPORT = 18121\n\
             [SVRNODE]\nNAME = 127.0.0.1\nPORT = 18122\nCTLPORT = 18123\n\
             [SLVNODE]\nNAME = [.]*\nCTLPORT = 18131\n{dkc}"
        );
        Config::parse_str(&text, "/etc/dkc/test.ini").unwrap()
    }

    const DKC: &str = "[K2HDKC]\nK2HTYPE = file\nK2HFILE = dkc.k2h\nMAXTHREAD = 8\n";

    #[test]
    fn settings_from_config_pick_this_node_and_its_file() {
        let cfg = config("ACKLEVEL = quorum", DKC);
        let local = LocalAddrs::loopback_only();
        let s = ServerSettings::from_config(&cfg, Some(18123), &local).unwrap();
        assert_eq!(
            (s.node_index, s.ctlport, s.cluster.as_str()),
            (1, 18123, "T")
        );
        assert_eq!(s.ack_level, AckLevel::Quorum);
        assert_eq!(s.store.kind, K2hType::File);
        assert_eq!(s.store.path, Some(PathBuf::from("/tmp/x/T-18123/dkc.k2h")));
        assert!(s.threads >= 1 && s.threads <= 8);
        let s0 = ServerSettings::from_config(&cfg, Some(18121), &local).unwrap();
        assert_eq!(s0.node_index, 0);
        assert_ne!(s0.store.path, s.store.path, "each node has its own file");
    }

    #[test]
    fn queue_age_limit_is_the_earliest_takeover_or_rcvtimeout() {
        let ms = Duration::from_millis;
        assert_eq!(queue_age_max(ms(1000), ms(2000), ms(500)), ms(1000));
        assert_eq!(queue_age_max(ms(5000), ms(2000), ms(500)), ms(1500));
        assert_eq!(queue_age_max(ms(1000), ms(1000), ms(200)), ms(800));
        assert_eq!(
            queue_age_max(ms(1000), ms(100), ms(200)),
            ms(0),
            "no underflow"
        );
        let local = LocalAddrs::loopback_only();
        let cfg = config(
            "HEARTBEATINTERVAL = 200\nHEARTBEATTIMEOUT = 1000",
            &format!("{DKC}RCVTIMEOUT = 3000\n"),
        );
        let s = ServerSettings::from_config(&cfg, Some(18121), &local).unwrap();
        assert_eq!(
            s.queue_age_max,
            ms(800),
            "HEARTBEATTIMEOUT - HEARTBEATINTERVAL"
        );
        let cfg = config(
            "HEARTBEATINTERVAL = 200\nHEARTBEATTIMEOUT = 1000",
            &format!("{DKC}RCVTIMEOUT = 300\n"),
        );
        let s = ServerSettings::from_config(&cfg, Some(18121), &local).unwrap();
        assert_eq!(s.queue_age_max, ms(300), "RCVTIMEOUT");
    }

    #[test]
    fn replication_switch_needs_exactly_one() {
        assert!(replication_disabled_by(Some("1")));
        for off in [
            None,
            Some(""),
            Some("0"),
            Some("true"),
            Some(" 1"),
            Some("yes"),
        ] {
            assert!(!replication_disabled_by(off), "{off:?}");
        }
        let local = LocalAddrs::loopback_only();
        let s = ServerSettings::from_config(&config("", DKC), Some(18121), &local).unwrap();
        assert!(
            !s.replication_disabled,
            "off unless main reads the variable"
        );
    }

    #[test]
    fn settings_value_limit_leaves_room_in_a_message() {
        let local = LocalAddrs::loopback_only();
        let s = ServerSettings::from_config(&config("", DKC), Some(18121), &local).unwrap();
        let body = s.attach.body_size_max;
        assert!(s.limits.value_size_max + s.limits.key_size_max + BODY_FRAMING_BYTES <= body);
        let big = config("MAXPAYLOAD = 4M\nSHMRINGSIZE = 16M", DKC);
        let s = ServerSettings::from_config(&big, Some(18121), &local).unwrap();
        assert_eq!(
            s.limits.value_size_max, VALUE_SIZE_MAX_DEFAULT,
            "capped at the default"
        );
        let tiny = config("MAXPAYLOAD = 2K", DKC);
        let err = ServerSettings::from_config(&tiny, Some(18121), &local).unwrap_err();
        assert!(
            matches!(err, SettingsError::PayloadTooSmall { .. }),
            "{err}"
        );
    }

    #[test]
    fn settings_refuse_slaves_and_missing_sections() {
        let local = LocalAddrs::loopback_only();
        let err = ServerSettings::from_config(&config("", DKC), Some(18131), &local).unwrap_err();
        assert!(matches!(err, SettingsError::NotAServer { .. }), "{err}");
        let err = ServerSettings::from_config(&config("", ""), Some(18121), &local).unwrap_err();
        assert!(matches!(err, SettingsError::NoDkcSection { .. }), "{err}");
        assert!(err.to_string().contains("test.ini"));
        // A `[.]*` slave entry matches any control port (as CHMPX's does), so an unknown
        // --ctlport names a slave, which dkc-server refuses.
        let err = ServerSettings::from_config(&config("", DKC), Some(1), &local).unwrap_err();
        assert!(matches!(err, SettingsError::NotAServer { .. }), "{err}");
    }
}
