//! [`Global`]: the typed `[GLOBAL]` section.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::defaults::*;
use super::error::ConfigError;
use super::reader::SectionReader;
use crate::placement::{SLOT_COUNT_MAX, SLOT_COUNT_MIN};

/// MODE: which kind of entry this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A `[SVRNODE]` entry.
    Server,
    /// A `[SLVNODE]` entry.
    Slave,
}

/// ACKLEVEL: when a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckLevel {
    /// Every live owner has applied it.
    All,
    /// A majority of the slot's owners have applied it.
    Quorum,
    /// The primary has applied it (replication is asynchronous).
    One,
}

/// SSL_MIN_VER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMinVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// TLS settings of a node (GLOBAL values with per-node overrides applied).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SslSettings {
    pub enabled: bool,
    pub verify_peer: bool,
    pub capath: Option<PathBuf>,
    pub server_cert: Option<PathBuf>,
    pub server_prikey: Option<PathBuf>,
    pub slave_cert: Option<PathBuf>,
    pub slave_prikey: Option<PathBuf>,
}

/// The `[GLOBAL]` section. Fields are in the units their names end with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    pub group: String,
    pub file_version: Option<u32>,
    pub date: Option<String>,
    pub mode: Option<Mode>,
    pub max_chmpx: u32,
    pub replica: u32,
    pub max_mq_server: u32,
    pub max_mq_client: u32,
    pub max_q_per_server_mq: u32,
    pub max_q_per_client_mq: u32,
    /// Default data port of server entries.
    pub port: Option<u16>,
    /// Default control port of entries.
    pub ctlport: Option<u16>,
    pub self_ctlport: Option<u16>,
    pub rw_timeout_us: u64,
    pub retry_count: u32,
    pub con_timeout_us: u64,
    pub mq_rw_timeout_us: u64,
    pub mq_retry_count: u32,
    pub auto_merge: bool,
    pub do_merge: bool,
    /// 0 = no timeout.
    pub merge_timeout_s: u64,
    /// 0 = one per CPU.
    pub sock_thread_count: u32,
    /// 0 = one.
    pub mq_thread_count: u32,
    pub max_sock_pool: u32,
    /// 0 = never.
    pub sock_pool_timeout_s: u64,
    pub ssl: SslSettings,
    pub ssl_min_version: TlsMinVersion,
    pub slot_count: u32,
    pub ack_level: AckLevel,
    pub secret: Option<String>,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    pub mq_msg_size: u32,
    pub shm_ring_size: u64,
    pub max_payload: u64,
    pub ipc_mode: u32,
    pub merge_rate_bytes_per_s: u64,
    /// Seconds between anti-entropy rounds; 0 = off.
    pub anti_entropy_s: u64,
    pub data_dir: PathBuf,
    /// METRICSALLOW: addresses and networks the metrics port admits besides this host's
    /// loopback and the configured hosts (`*` is 0.0.0.0/0 and ::/0). Empty = none.
    pub metrics_allow: Vec<IpNet>,
}

impl Global {
    /// Longest a socket read or write may take: RWTIMEOUT × RETRYCNT.
    pub fn socket_io_timeout(&self) -> Duration {
        Duration::from_micros(self.rw_timeout_us.saturating_mul(self.retry_count.into()))
    }

    /// Longest a queue send or receive may take: MQRWTIMEOUT × MQRETRYCNT.
    pub fn mq_io_timeout(&self) -> Duration {
        Duration::from_micros(
            self.mq_rw_timeout_us
                .saturating_mul(self.mq_retry_count.into()),
        )
    }

    /// Heartbeat period.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    /// Silence after which a peer is DOWN.
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms)
    }

    pub(crate) fn read(r: &SectionReader<'_>, base: &Path) -> Result<Global, ConfigError> {
        let group = r
            .text("GROUP")
            .ok_or_else(|| r.missing("GROUP", "the cluster name, e.g. GROUP = DKC"))?
            .to_string();
        let group_ok = group.len() <= GROUP_LEN_MAX
            && group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !group_ok {
            return Err(r.bad("GROUP", format!("1..={GROUP_LEN_MAX} characters of A-Z a-z 0-9 . _ - (it names queues and files)")));
        }
        r.opt_u64("FILEVERSION", 0, u32::MAX.into(), "")?;
        let mode = match r.text("MODE") {
            None => None,
            Some(_) => Some(r.choice(
                "MODE",
                &[("server", Mode::Server), ("slave", Mode::Slave)],
                "server",
            )?),
        };
        r.choice("DELIVERMODE", &[("hash", ())], "hash")
            .map_err(|_| r.bad("DELIVERMODE", "hash (dkc routes by key hash only: CHMPX's random delivery cannot keep replicas)"))?;
        let max_chmpx = r.u32_or("MAXCHMPX", 1, MAXCHMPX_MAX, MAXCHMPX_DEFAULT)?;
        let replica = r
            .u32_or("REPLICA", 0, max_chmpx - 1, REPLICA_DEFAULT)
            .map_err(|_| {
                r.bad(
                    "REPLICA",
                    format!("an integer 0..=MAXCHMPX-1 (MAXCHMPX is {max_chmpx})"),
                )
            })?;
        let per_item = |key, default| r.u32_or(key, 1, MQ_COUNT_PER_ITEM_MAX, default);
        per_item("MQPERATTACH", MQPERATTACH_DEFAULT)?;
        per_item("MAXMQPERCLIENT", MAXMQPERCLIENT_DEFAULT)?;
        r.u32_or("MAXHISTLOG", 0, MAXHISTLOG_MAX, MAXHISTLOG_DEFAULT)?;
        r.bool_or("MQACK", MQACK_DEFAULT)?;
        r.bool_or("K2HFULLMAP", GLOBAL_K2HFULLMAP_DEFAULT)?;
        r.u32_or(
            "K2HMASKBIT",
            K2HMASKBIT_MIN,
            K2HMASKBIT_MAX,
            GLOBAL_K2HMASKBIT_DEFAULT,
        )?;
        r.u32_or(
            "K2HCMASKBIT",
            K2HCMASKBIT_MIN,
            K2HCMASKBIT_MAX,
            GLOBAL_K2HCMASKBIT_DEFAULT,
        )?;
        r.u32_or("K2HMAXELE", 1, K2HMAXELE_MAX, GLOBAL_K2HMAXELE_DEFAULT)?;

        let slot_count = r.u32_or(
            "SLOTCOUNT",
            SLOT_COUNT_MIN,
            SLOT_COUNT_MAX,
            SLOTCOUNT_DEFAULT,
        )?;
        if !slot_count.is_power_of_two() {
            return Err(r.bad(
                "SLOTCOUNT",
                format!("a power of two in {SLOT_COUNT_MIN}..={SLOT_COUNT_MAX}"),
            ));
        }
        let secret = r.text("SECRET").map(str::to_string);
        if let Some(s) = &secret {
            if !(SECRET_LEN_MIN..=SECRET_LEN_MAX).contains(&s.len()) {
                return Err(r.bad(
                    "SECRET",
                    format!("a shared secret of {SECRET_LEN_MIN}..={SECRET_LEN_MAX} bytes"),
                ));
            }
        }
        let heartbeat_interval_ms = r.u64_or(
            "HEARTBEATINTERVAL",
            HEARTBEATINTERVAL_MS_MIN,
            HEARTBEATTIMEOUT_MS_MAX,
            " (ms)",
            HEARTBEATINTERVAL_MS_DEFAULT,
        )?;
        let heartbeat_timeout_ms = r.u64_or(
            "HEARTBEATTIMEOUT",
            1,
            HEARTBEATTIMEOUT_MS_MAX,
            " (ms)",
            HEARTBEATTIMEOUT_MS_DEFAULT,
        )?;
        if heartbeat_timeout_ms <= 2 * heartbeat_interval_ms {
            return Err(r.conflict(
                "HEARTBEATTIMEOUT",
                format!("must be more than 2 x HEARTBEATINTERVAL ({heartbeat_interval_ms} ms), or one lost heartbeat marks a live peer DOWN"),
            ));
        }
        let max_payload = r.size_or(
            "MAXPAYLOAD",
            MAXPAYLOAD_MIN,
            MAXPAYLOAD_MAX,
            MAXPAYLOAD_DEFAULT,
        )?;
        let shm_ring_size = r.size_or("SHMRINGSIZE", 1, SHMRINGSIZE_MAX, SHMRINGSIZE_DEFAULT)?;
        if shm_ring_size < SHMRING_PAYLOADS_MIN * max_payload {
            return Err(r.conflict(
                "SHMRINGSIZE",
                format!("must hold at least {SHMRING_PAYLOADS_MIN} messages of MAXPAYLOAD ({max_payload} bytes): give at least {}", SHMRING_PAYLOADS_MIN * max_payload),
            ));
        }
        let ipc_mode = match r.text("IPCMODE") {
            None => IPCMODE_DEFAULT,
            Some(t) => match u32::from_str_radix(t.trim_start_matches("0o"), 8) {
                Ok(m) if (0o600..=0o666).contains(&m) && m & 0o600 == 0o600 && m & 0o111 == 0 => m,
                _ => return Err(r.bad(
                    "IPCMODE",
                    "an octal file mode 0600..=0666 that keeps owner read/write, e.g. 0600 or 0660",
                )),
            },
        };
        let ssl_min_version = r.choice(
            "SSL_MIN_VER",
            &[
                ("DEFAULT", TlsMinVersion::Tls12),
                ("TLSV1.2", TlsMinVersion::Tls12),
                ("TLSV1.3", TlsMinVersion::Tls13),
            ],
            SSL_MIN_VER_DEFAULT,
        )?;
        let ssl = SslSettings {
            enabled: r.bool_or("SSL", SSL_DEFAULT)?,
            verify_peer: r.bool_or("SSL_VERIFY_PEER", SSL_VERIFY_PEER_DEFAULT)?,
            capath: r.opt_path("CAPATH", base),
            server_cert: r.opt_path("SERVER_CERT", base),
            server_prikey: r.opt_path("SERVER_PRIKEY", base),
            slave_cert: r.opt_path("SLAVE_CERT", base),
            slave_prikey: r.opt_path("SLAVE_PRIKEY", base),
        };
        let timeout = |key, default| r.u64_or(key, 1, TIMEOUT_US_MAX, " (µs)", default);
        let retries = |key, default| r.u32_or(key, 1, RETRY_COUNT_MAX, default);
        Ok(Global {
            file_version: r
                .opt_u64("FILEVERSION", 0, u32::MAX.into(), "")?
                .map(|v| v as u32),
            date: r.text("DATE").map(str::to_string),
            group,
            mode,
            max_chmpx,
            replica,
            max_mq_server: r.u32_or("MAXMQSERVER", 1, MAXMQSERVER_MAX, MAXMQSERVER_DEFAULT)?,
            max_mq_client: r.u32_or("MAXMQCLIENT", 1, MAXMQCLIENT_MAX, MAXMQCLIENT_DEFAULT)?,
            max_q_per_server_mq: per_item("MAXQPERSERVERMQ", MAXQPERSERVERMQ_DEFAULT)?,
            max_q_per_client_mq: per_item("MAXQPERCLIENTMQ", MAXQPERCLIENTMQ_DEFAULT)?,
            port: r.opt_port("PORT")?,
            ctlport: r.opt_port("CTLPORT")?,
            self_ctlport: r.opt_port("SELFCTLPORT")?,
            rw_timeout_us: timeout("RWTIMEOUT", RWTIMEOUT_US_DEFAULT)?,
            retry_count: retries("RETRYCNT", RETRYCNT_DEFAULT)?,
            con_timeout_us: timeout("CONTIMEOUT", CONTIMEOUT_US_DEFAULT)?,
            mq_rw_timeout_us: timeout("MQRWTIMEOUT", MQRWTIMEOUT_US_DEFAULT)?,
            mq_retry_count: retries("MQRETRYCNT", MQRETRYCNT_DEFAULT)?,
            auto_merge: r.bool_or("AUTOMERGE", AUTOMERGE_DEFAULT)?,
            do_merge: r.bool_or("DOMERGE", DOMERGE_DEFAULT)?,
            merge_timeout_s: r.u64_or(
                "MERGETIMEOUT",
                0,
                SECONDS_MAX,
                " (s)",
                MERGETIMEOUT_S_DEFAULT,
            )?,
            sock_thread_count: r.u32_or(
                "SOCKTHREADCNT",
                0,
                THREAD_COUNT_MAX,
                SOCKTHREADCNT_DEFAULT,
            )?,
            mq_thread_count: r.u32_or("MQTHREADCNT", 0, THREAD_COUNT_MAX, MQTHREADCNT_DEFAULT)?,
            max_sock_pool: r.u32_or("MAXSOCKPOOL", 1, MAXSOCKPOOL_MAX, MAXSOCKPOOL_DEFAULT)?,
            sock_pool_timeout_s: r.u64_or(
                "SOCKPOOLTIMEOUT",
                0,
                SECONDS_MAX,
                " (s)",
                SOCKPOOLTIMEOUT_S_DEFAULT,
            )?,
            ssl,
            ssl_min_version,
            slot_count,
            ack_level: r.choice(
                "ACKLEVEL",
                &[
                    ("all", AckLevel::All),
                    ("quorum", AckLevel::Quorum),
                    ("one", AckLevel::One),
                ],
                ACKLEVEL_DEFAULT,
            )?,
            secret,
            heartbeat_interval_ms,
            heartbeat_timeout_ms,
            mq_msg_size: r.size_or(
                "MQMSGSIZE",
                MQMSGSIZE_MIN.into(),
                MQMSGSIZE_MAX.into(),
                MQMSGSIZE_DEFAULT.into(),
            )? as u32,
            shm_ring_size,
            max_payload,
            ipc_mode,
            merge_rate_bytes_per_s: r.size_or(
                "MERGERATE",
                MERGERATE_BYTES_PER_S_MIN,
                MERGERATE_BYTES_PER_S_MAX,
                MERGERATE_BYTES_PER_S_DEFAULT,
            )?,
            anti_entropy_s: r.u64_or(
                "ANTIENTROPY",
                0,
                ANTIENTROPY_S_MAX,
                " (s)",
                ANTIENTROPY_S_DEFAULT,
            )?,
            data_dir: base.join(r.text("DATADIR").unwrap_or(DATADIR_DEFAULT)),
            metrics_allow: metrics_allow(r)?,
        })
    }
}

/// METRICSALLOW: a comma-separated list of IP addresses (`10.0.0.5`, `::1`), networks
/// (`10.0.0.0/24`) or `*` (any host).
fn metrics_allow(r: &SectionReader<'_>) -> Result<Vec<IpNet>, ConfigError> {
    const KEY: &str = "METRICSALLOW";
    let Some(text) = r.text(KEY) else {
        return Ok(Vec::new());
    };
    let expected = |what: String| {
        r.bad(
            KEY,
            format!(
                "a comma-separated list of at most {METRICSALLOW_ENTRIES_MAX} IP addresses or \
                 networks, e.g. 10.0.5.20, 10.0.6.0/24, ::1, or * for any host ({what})"
            ),
        )
    };
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    if items.len() > METRICSALLOW_ENTRIES_MAX {
        return Err(expected(format!("{} entries", items.len())));
    }
    let mut nets = Vec::new();
    for item in items {
        if item == "*" {
            nets.push(IpNet::V4(Ipv4Net::default()));
            nets.push(IpNet::V6(Ipv6Net::default()));
        } else if let Ok(net) = item.parse::<IpNet>() {
            nets.push(net.trunc());
        } else if let Ok(ip) = item.parse::<IpAddr>() {
            nets.push(IpNet::from(ip));
        } else if item.is_empty() {
            return Err(expected("an empty entry".into()));
        } else {
            return Err(expected(format!(
                "{item:?} is not an IP address or network"
            )));
        }
    }
    Ok(nets)
}
