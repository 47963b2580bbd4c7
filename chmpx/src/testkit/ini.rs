//! The INI of a cluster whose nodes all run on 127.0.0.1, told apart by CTLPORT. Every key
//! written is one of [`crate::config`]'s (conf/README.md); [`ClusterIni::write_checked`] parses
//! the text before writing it, so a caller's mistake is reported as the config error it is, not
//! as a daemon that never comes up.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::LaunchError;
use crate::config::Config;

/// The host every node of a local cluster runs on.
pub const LOCAL_HOST: &str = "127.0.0.1";

/// Ports of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePorts {
    /// PORT, the data port (server nodes only).
    pub port: Option<u16>,
    /// CTLPORT.
    pub ctlport: u16,
    /// METRICSPORT, when the node serves metrics.
    pub metricsport: Option<u16>,
}

impl NodePorts {
    /// A slave node: a control port only.
    pub fn slave(ctlport: u16) -> NodePorts {
        NodePorts {
            port: None,
            ctlport,
            metricsport: None,
        }
    }

    /// A server node without a metrics port.
    pub fn server(port: u16, ctlport: u16) -> NodePorts {
        NodePorts {
            port: Some(port),
            ctlport,
            metricsport: None,
        }
    }
}

/// A cluster config: the `[GLOBAL]` keys every test sets, further keys in order, the nodes, and
/// the optional `[K2HDKC]` section.
#[derive(Debug, Clone)]
pub struct ClusterIni {
    /// GROUP (also the prefix of the IPC objects, see [`super::ipc`]).
    pub group: String,
    /// DATADIR.
    pub datadir: PathBuf,
    /// REPLICA.
    pub replica: u32,
    /// SLOTCOUNT.
    pub slot_count: u32,
    /// AUTOMERGE.
    pub automerge: bool,
    /// HEARTBEATINTERVAL, ms.
    pub heartbeat_interval_ms: u64,
    /// HEARTBEATTIMEOUT, ms.
    pub heartbeat_timeout_ms: u64,
    /// Further `[GLOBAL]` keys and values, written in this order (e.g. `("MAXMQCLIENT", "8")`).
    pub global_extra: Vec<(String, String)>,
    /// `[SVRNODE]` sections, in order.
    pub servers: Vec<NodePorts>,
    /// `[SLVNODE]` sections, in order.
    pub slaves: Vec<NodePorts>,
    /// `[K2HDKC]` keys and values; the section is written only when this is not empty.
    pub k2hdkc: Vec<(String, String)>,
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn node_section(ini: &mut String, section: &str, n: &NodePorts) {
    // Writing to a String cannot fail.
    let _ = writeln!(ini, "\n[{section}]\nNAME = {LOCAL_HOST}");
    if let Some(p) = n.port {
        let _ = writeln!(ini, "PORT = {p}");
    }
    let _ = writeln!(ini, "CTLPORT = {}", n.ctlport);
    if let Some(p) = n.metricsport {
        let _ = writeln!(ini, "METRICSPORT = {p}");
    }
}

impl ClusterIni {
    /// The INI text.
    pub fn render(&self) -> String {
        let mut ini = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(ini, "[GLOBAL]");
        let _ = writeln!(ini, "GROUP = {}", self.group);
        let _ = writeln!(ini, "REPLICA = {}", self.replica);
        let _ = writeln!(ini, "SLOTCOUNT = {}", self.slot_count);
        let _ = writeln!(ini, "AUTOMERGE = {}", on_off(self.automerge));
        let _ = writeln!(ini, "HEARTBEATINTERVAL = {}", self.heartbeat_interval_ms);
        let _ = writeln!(ini, "HEARTBEATTIMEOUT = {}", self.heartbeat_timeout_ms);
        for (k, v) in &self.global_extra {
            let _ = writeln!(ini, "{k} = {v}");
        }
        let _ = writeln!(ini, "DATADIR = {}", self.datadir.display());
        for s in &self.servers {
            node_section(&mut ini, "SVRNODE", s);
        }
        for s in &self.slaves {
            node_section(&mut ini, "SLVNODE", s);
        }
        if !self.k2hdkc.is_empty() {
            let _ = writeln!(ini, "\n[K2HDKC]");
            for (k, v) in &self.k2hdkc {
                let _ = writeln!(ini, "{k} = {v}");
            }
        }
        ini
    }

    /// Writes the text to `path` after checking that chmpx accepts it.
    pub fn write_checked(&self, path: &Path) -> Result<PathBuf, LaunchError> {
        let text = self.render();
        Config::parse_str(&text, path).map_err(|e| LaunchError::Config {
            source: Box::new(e),
            text: text.clone(),
        })?;
        std::fs::write(path, &text).map_err(|source| LaunchError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(path.to_path_buf())
    }
}

/// `(key, value)` pairs from string literals, for [`ClusterIni::global_extra`] and
/// [`ClusterIni::k2hdkc`].
pub fn keys(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ClusterIni {
        ClusterIni {
            group: "TESTKIT".into(),
            datadir: PathBuf::from("/tmp/testkit-data"),
            replica: 1,
            slot_count: 64,
            automerge: true,
            heartbeat_interval_ms: 200,
            heartbeat_timeout_ms: 1000,
            global_extra: keys(&[("MAXMQCLIENT", "8")]),
            servers: vec![
                NodePorts {
                    port: Some(20001),
                    ctlport: 20002,
                    metricsport: Some(20003),
                },
                NodePorts::server(20004, 20005),
            ],
            slaves: vec![NodePorts::slave(20006)],
            k2hdkc: keys(&[("K2HTYPE", "file"), ("K2HFILE", "dkc.k2h")]),
        }
    }

    #[test]
    fn rendered_text_parses_with_every_value() {
        let ini = sample();
        let cfg = Config::parse_str(&ini.render(), "/tmp/cluster.ini").unwrap();
        assert_eq!(cfg.global.group, "TESTKIT");
        assert_eq!(cfg.global.replica, 1);
        assert_eq!(cfg.servers.len(), 2);
        assert_eq!(cfg.slaves.len(), 1);
        assert_eq!(cfg.servers[0].ctlport, 20002);
        assert_eq!(cfg.servers[1].port, Some(20004));
        assert_eq!(cfg.slaves[0].ctlport, 20006);
        assert!(cfg.dkc.is_some());
    }

    #[test]
    fn a_bad_key_is_refused_before_writing() {
        let mut ini = sample();
        ini.global_extra.push(("NOSUCHKEY".into(), "1".into()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.ini");
        let err = ini.write_checked(&path).unwrap_err();
        assert!(matches!(err, LaunchError::Config { .. }), "{err}");
        assert!(!path.exists());
    }
}
