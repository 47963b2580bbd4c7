//! Configuration: one INI file per cluster role, in CHMPX's layout.
//!
//! ```text
//!   [GLOBAL]    once        cluster-wide settings (GROUP, REPLICA, SLOTCOUNT, ...)
//!   [SVRNODE]   per server  NAME (may be a pattern), PORT, CTLPORT, ...
//!   [SLVNODE]   1 or more   NAME (or [.]* = any host), CTLPORT, ...
//!   [K2HDKC]    optional    dkc-server's storage settings
//! ```
//!
//! A bad file is refused before anything starts: every error names the
//! file, line, section, key, the value and what was expected. Unknown keys
//! and sections are errors. Every key is listed in [`keys::key_docs`] and
//! documented in conf/README.md (a test keeps them equal); every default is
//! a constant in [`defaults`].
//!
//! Layout:
//! - `ini_source`: INI text → sections and entries with line numbers;
//! - `reader`: typed getters with located errors;
//! - [`keys`], [`defaults`]: the registry of keys and every default/limit;
//! - [`global`], [`nodes`], [`dkc_section`], [`name_pattern`]: the sections;
//! - [`kernel_limits`], [`check`]: what `chmpx --check` reports.
//!
//! Must never depend on: networking, message queues, storage, the daemon.
//! The only I/O here is reading the file, the host's addresses and
//! /proc/sys/fs/mqueue.

// Config errors carry the file, line, key, value and expectation by value;
// they are built once per run on a cold path, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod check;
pub mod defaults;
pub mod dkc_section;
pub mod error;
pub mod global;
pub(crate) mod ini_source;
pub mod kernel_limits;
pub mod keys;
pub mod name_pattern;
pub mod nodes;
mod reader;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use check::{check_report, CheckLine, CheckReport, CheckStatus};
pub use dkc_section::{DkcSection, K2hType};
pub use error::{ConfigError, Location};
pub use global::{AckLevel, Global, Mode, SslSettings, TlsMinVersion};
pub use kernel_limits::KernelLimits;
pub use keys::SectionKind;
pub use nodes::{HostSpec, LocalAddrs, NodeSpec};

use reader::SectionReader;

/// A whole, valid config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from (as given).
    pub file: PathBuf,
    pub global: Global,
    /// Server entries after NAME expansion, in file order.
    pub servers: Vec<NodeSpec>,
    /// Slave entries after NAME expansion, in file order.
    pub slaves: Vec<NodeSpec>,
    /// The `[K2HDKC]` section, if present.
    pub dkc: Option<DkcSection>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        Config::parse_str(&text, path)
    }

    /// Validates `text`; `path` names the file in errors and is the base of
    /// relative paths (its folder).
    pub fn parse_str(text: &str, path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let file = path.as_ref();
        let base = file.parent().unwrap_or(Path::new("")).to_path_buf();
        let doc = ini_source::read(text, file)?;
        let at = |line: usize, section: &str, key: Option<&str>| Location {
            file: file.to_path_buf(),
            line,
            section: section.to_string(),
            key: key.map(str::to_string),
        };

        // Sort sections by kind, refusing unknown and repeated single sections.
        let mut global_section = None;
        let mut dkc_section = None;
        let mut node_sections = Vec::new();
        for section in &doc.sections {
            let Some(kind) = SectionKind::from_name(&section.name) else {
                return Err(ConfigError::UnknownSection {
                    at: at(section.line, &section.name, None),
                });
            };
            match kind {
                SectionKind::Global | SectionKind::K2hdkc => {
                    let slot = if kind == SectionKind::Global {
                        &mut global_section
                    } else {
                        &mut dkc_section
                    };
                    if let Some(first) = slot.replace(section) {
                        return Err(ConfigError::DuplicateSection {
                            at: at(section.line, kind.name(), None),
                            first_line: first.line,
                        });
                    }
                }
                SectionKind::SvrNode | SectionKind::SlvNode => node_sections.push((kind, section)),
            }
        }
        let global_section = global_section.ok_or_else(|| ConfigError::MissingSection {
            at: at(1, "GLOBAL", Some("GROUP")),
            section: "GLOBAL".into(),
            expected: "exactly one [GLOBAL] section with at least GROUP".into(),
        })?;
        let global = Global::read(
            &SectionReader::new(file, SectionKind::Global, global_section)?,
            &base,
        )?;

        let mut servers = Vec::new();
        let mut slaves = Vec::new();
        for (kind, section) in node_sections {
            let reader = SectionReader::new(file, kind, section)?;
            if kind == SectionKind::SvrNode {
                servers.extend(NodeSpec::read(&reader, Mode::Server, &global, &base)?);
            } else {
                slaves.extend(NodeSpec::read(&reader, Mode::Slave, &global, &base)?);
            }
            // Checked per section so that many large NAME patterns cannot
            // build millions of entries before the count is refused.
            let count = servers.len() + slaves.len();
            if count > global.max_chmpx as usize {
                return Err(ConfigError::Conflict {
                    at: reader.at("NAME"),
                    value: reader.text("NAME").unwrap_or_default().to_string(),
                    problem: format!(
                        "{count} node entries after NAME expansion exceed MAXCHMPX ({})",
                        global.max_chmpx
                    ),
                });
            }
        }
        for (kind, list) in [
            (SectionKind::SvrNode, &servers),
            (SectionKind::SlvNode, &slaves),
        ] {
            if list.is_empty() {
                return Err(ConfigError::MissingSection {
                    at: at(doc.last_line, kind.name(), Some("NAME")),
                    section: kind.name().into(),
                    expected: format!("at least one [{}] entry with NAME and CTLPORT", kind.name()),
                });
            }
        }
        let dkc = dkc_section
            .map(|s| {
                SectionReader::new(file, SectionKind::K2hdkc, s)
                    .and_then(|r| DkcSection::read(&r, &base))
            })
            .transpose()?;

        let config = Config {
            file: file.to_path_buf(),
            global,
            servers,
            slaves,
            dkc,
        };
        config.check_nodes(&at)?;
        Ok(config)
    }

    /// Cross-entry checks: counts, unique identities, port clashes, CUKs, files.
    fn check_nodes(
        &self,
        at: &dyn Fn(usize, &str, Option<&str>) -> Location,
    ) -> Result<(), ConfigError> {
        let all: Vec<&NodeSpec> = self.servers.iter().chain(&self.slaves).collect();
        let section = |n: &NodeSpec| nodes::section_of(n.mode).name();
        if all.len() > self.global.max_chmpx as usize {
            let last = all[all.len() - 1];
            return Err(ConfigError::Conflict {
                at: at(last.line, section(last), Some("NAME")),
                value: last.name_pattern.clone(),
                problem: format!(
                    "{} node entries after NAME expansion exceed MAXCHMPX ({})",
                    all.len(),
                    self.global.max_chmpx
                ),
            });
        }
        // Every (host, port) in use — data, control and metrics ports — must be unique.
        let mut used: HashMap<(String, u16), (&NodeSpec, &str)> = HashMap::new();
        for node in &all {
            let ports = [
                ("PORT", node.port),
                ("CTLPORT", Some(node.ctlport)),
                ("METRICSPORT", node.metrics_port),
            ];
            for (key, port) in ports {
                let Some(port) = port else { continue };
                let host = node.host.as_str().to_ascii_lowercase();
                if let Some((first, first_key)) = used.get(&(host.clone(), port)) {
                    return Err(ConfigError::Conflict {
                        at: at(node.line, section(node), Some(key)),
                        value: port.to_string(),
                        problem: format!(
                            "host {} already uses port {port} as {first_key} of the [{}] entry at line {}: each node on a host needs its own ports",
                            node.host.as_str(),
                            section(first),
                            first.line
                        ),
                    });
                }
                used.insert((host, port), (node, key));
            }
        }
        let mut cuks: HashMap<&str, &NodeSpec> = HashMap::new();
        for node in &all {
            let Some(cuk) = node.cuk.as_deref() else {
                continue;
            };
            // One entry expanded from a pattern shares its CUK; CHMPX wants it unique.
            if let Some(first) = cuks.insert(cuk, node) {
                return Err(ConfigError::Conflict {
                    at: at(node.line, section(node), Some("CUK")),
                    value: cuk.to_string(),
                    problem: format!("CUK must be unique; the entry at line {} has it too (a NAME pattern repeats it)", first.line),
                });
            }
        }
        if let Some(port) = self.global.self_ctlport {
            if !all.iter().any(|n| n.ctlport == port) {
                return Err(ConfigError::Conflict {
                    at: at(1, "GLOBAL", Some("SELFCTLPORT")),
                    value: port.to_string(),
                    problem: "no [SVRNODE] or [SLVNODE] entry has this CTLPORT".into(),
                });
            }
        }
        if let Some(dkc) = &self.dkc {
            if let Some(file) = dkc.k2h_file.as_ref().filter(|f| f.is_absolute()) {
                let mut per_host: HashMap<&str, usize> = HashMap::new();
                for s in &self.servers {
                    *per_host.entry(s.host.as_str()).or_default() += 1;
                }
                if let Some((host, count)) = per_host.into_iter().find(|(_, c)| *c > 1) {
                    return Err(ConfigError::Conflict {
                        at: at(dkc.line, "K2HDKC", Some("K2HFILE")),
                        value: file.display().to_string(),
                        problem: format!("{count} server nodes on host {host} would share this absolute file: use a relative path (it goes in each node's data directory)"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Finds the entry this process is.
    ///
    /// `ctlport` is `--ctlport` (falls back to SELFCTLPORT). An entry
    /// matches when its host is local (see [`LocalAddrs::is_local`]; any-host
    /// slaves always are), its CTLPORT equals the wanted one (if any), and
    /// its kind equals MODE (if set). An any-host (`[.]*`) slave entry
    /// matches any wanted control port: its CTLPORT is only the default of
    /// the slaves it admits, which are told apart by their own control ports
    /// (as CHMPX runs a process whose port names no server as a slave).
    /// Entries that name this host win over any-host slave entries: a host
    /// listed as a server is a server unless --ctlport or MODE says
    /// otherwise. Exactly one must match.
    pub fn self_node(
        &self,
        ctlport: Option<u16>,
        local: &LocalAddrs,
    ) -> Result<&NodeSpec, ConfigError> {
        let wanted_port = ctlport.or(self.global.self_ctlport);
        let mut candidates: Vec<&NodeSpec> = self
            .servers
            .iter()
            .chain(&self.slaves)
            .filter(|n| self.global.mode.is_none_or(|m| m == n.mode))
            .filter(|n| {
                wanted_port.is_none_or(|p| {
                    p == n.ctlport || (n.mode == Mode::Slave && n.host == HostSpec::Any)
                })
            })
            .filter(|n| local.is_local(&n.host))
            .collect();
        if candidates.iter().any(|n| n.host != HostSpec::Any) {
            candidates.retain(|n| n.host != HostSpec::Any);
        }
        // Among any-host entries, one whose CTLPORT is the wanted port wins.
        if let Some(p) = wanted_port {
            if candidates.len() > 1 && candidates.iter().any(|n| n.ctlport == p) {
                candidates.retain(|n| n.ctlport == p);
            }
        }
        match candidates.as_slice() {
            [one] => Ok(one),
            [] => Err(ConfigError::NoSelfNode {
                file: self.file.clone(),
                wanted: match (wanted_port, self.global.mode) {
                    (Some(p), Some(m)) => format!("ctlport {p}, mode {m:?}"),
                    (Some(p), None) => format!("ctlport {p}"),
                    (None, Some(m)) => format!("mode {m:?}, any ctlport"),
                    (None, None) => "any ctlport".into(),
                },
                local: local.to_string(),
            }),
            many => Err(ConfigError::AmbiguousSelfNode {
                file: self.file.clone(),
                candidates: many
                    .iter()
                    .map(|n| {
                        format!(
                            "[{}] line {} {}:{}",
                            nodes::section_of(n.mode).name(),
                            n.line,
                            n.host.as_str(),
                            n.ctlport
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The control port of this process once [`Config::self_node`] found `me`: the entry's
    /// CTLPORT, except for an any-host slave entry, whose slaves use their own (`ctlport`, i.e.
    /// `--ctlport`, else SELFCTLPORT, else the entry's CTLPORT as the default).
    pub fn own_ctlport(&self, ctlport: Option<u16>, me: &NodeSpec) -> u16 {
        match me.host {
            HostSpec::Any => ctlport.or(self.global.self_ctlport).unwrap_or(me.ctlport),
            HostSpec::Name(_) => me.ctlport,
        }
    }

    /// The server node ids (placement members when all are SERVICE IN), in file order.
    pub fn server_ids(&self) -> Vec<crate::placement::NodeId> {
        self.servers.iter().map(NodeSpec::id).collect()
    }

    /// Where `node` keeps its files: `DATADIR/<GROUP>-<CTLPORT>`.
    pub fn node_data_dir(&self, node: &NodeSpec) -> PathBuf {
        self.global
            .data_dir
            .join(format!("{}-{}", self.global.group, node.ctlport))
    }

    /// The k2hash file of `node`: K2HFILE, relative paths inside the node's
    /// data directory; `None` without `[K2HDKC]` or for the memory type.
    pub fn k2h_file_for(&self, node: &NodeSpec) -> Option<PathBuf> {
        let file = self.dkc.as_ref()?.k2h_file.as_ref()?;
        Some(if file.is_absolute() {
            file.clone()
        } else {
            self.node_data_dir(node).join(file)
        })
    }
}
