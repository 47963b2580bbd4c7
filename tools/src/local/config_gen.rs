//! The INI files a local cluster runs with, derived from the samples in conf/.
//!
//! `dkc-local up` never invents a configuration: it copies `conf/local-3node.ini` (servers) and
//! `conf/local-slave.ini` (the slave chmpx of the memcached front) into the data directory,
//! changing only what a local run must decide — GROUP, REPLICA, DATADIR, the `[SVRNODE]` list
//! (N nodes on 127.0.0.1 told apart by CTLPORT) and the `[SLVNODE]` control port. Every other
//! key, comment and section (`[K2HDKC]` included) is kept as written, so editing conf/ changes
//! the local cluster. Pure text in, text out: no I/O here.

use std::fmt::Write as _;

/// Most server nodes a local cluster may have (each costs a chmpx and a dkc-server, and the
/// chmpx processes of one host share the kernel's queue limits).
pub const NODES_MAX: usize = 16;
/// Node i uses data port `base + PORT_STEP * i` and control port one above it.
pub const PORT_STEP: u16 = 2;
/// Metrics ports sit this far above the control ports (as in conf/local-3node.ini).
pub const METRICS_PORT_OFFSET: u16 = 1000;
/// The slave's control port is at least this far above the base port (8031 for 8020).
pub const SLAVE_CTLPORT_OFFSET_MIN: u16 = 11;

/// The ports of one server node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePorts {
    pub port: u16,
    pub ctlport: u16,
    pub metrics_port: u16,
}

/// Everything a local run decides about its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub group: String,
    pub replica: u32,
    /// Absolute DATADIR written into both files.
    pub datadir: String,
    pub nodes: Vec<NodePorts>,
    pub slave_ctlport: u16,
    pub slave_metrics_port: u16,
}

/// Why a plan or a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenError {
    #[error("--nodes {nodes}: expected 1..={NODES_MAX} server nodes")]
    Nodes { nodes: usize },
    #[error("--base-port {base}: the ports of {nodes} nodes and the slave (up to {top}) must stay below 65536; choose a lower base")]
    Ports { base: u16, nodes: usize, top: u32 },
    #[error(
        "{file}: no [SVRNODE] section with a PORT to learn the base port from; pass --base-port"
    )]
    NoBasePort { file: String },
    #[error("{file}: no [{section}] section; the template must have one")]
    MissingSection { file: String, section: &'static str },
}

impl Plan {
    /// N nodes from `base`: node i has PORT base+2i, CTLPORT base+2i+1, METRICSPORT
    /// CTLPORT+1000; the slave's CTLPORT is base+max(11, 2N+1). With base 8020 and three
    /// nodes this is exactly conf/local-3node.ini (a test checks it).
    pub fn new(
        group: &str,
        replica: u32,
        datadir: &str,
        nodes: usize,
        base: u16,
    ) -> Result<Plan, GenError> {
        if nodes == 0 || nodes > NODES_MAX {
            return Err(GenError::Nodes { nodes });
        }
        let step = u32::from(PORT_STEP);
        let slave_off = u32::from(SLAVE_CTLPORT_OFFSET_MIN).max(step * nodes as u32 + 1);
        let top = u32::from(base) + slave_off + u32::from(METRICS_PORT_OFFSET);
        if top > u32::from(u16::MAX) {
            return Err(GenError::Ports { base, nodes, top });
        }
        // Every port below is at most `top`, checked above, so the casts cannot truncate.
        let at = |off: u32| (u32::from(base) + off) as u16;
        let nodes = (0..nodes as u32)
            .map(|i| NodePorts {
                port: at(step * i),
                ctlport: at(step * i + 1),
                metrics_port: at(step * i + 1 + u32::from(METRICS_PORT_OFFSET)),
            })
            .collect();
        Ok(Plan {
            group: group.to_string(),
            replica,
            datadir: datadir.to_string(),
            nodes,
            slave_ctlport: at(slave_off),
            slave_metrics_port: at(slave_off + u32::from(METRICS_PORT_OFFSET)),
        })
    }

    /// Every TCP port the run will listen on (for the "is it free" check).
    pub fn all_ports(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .nodes
            .iter()
            .flat_map(|n| [n.port, n.ctlport, n.metrics_port])
            .collect();
        v.push(self.slave_ctlport);
        v.push(self.slave_metrics_port);
        v
    }
}

/// One `[SECTION]` of a template: its upper-case name and its lines (header excluded).
struct Section<'a> {
    name: String,
    header: &'a str,
    lines: Vec<&'a str>,
}

/// Splits a file into the lines before the first section and the sections.
fn split(text: &str) -> (Vec<&str>, Vec<Section<'_>>) {
    let mut preamble = Vec::new();
    let mut sections: Vec<Section<'_>> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') && !is_comment(t) {
            sections.push(Section {
                name: t[1..t.len() - 1].trim().to_ascii_uppercase(),
                header: line,
                lines: Vec::new(),
            });
        } else if let Some(s) = sections.last_mut() {
            s.lines.push(line);
        } else {
            preamble.push(line);
        }
    }
    (preamble, sections)
}

fn is_comment(t: &str) -> bool {
    t.starts_with('#') || t.starts_with(';')
}

/// The upper-case key of a `KEY = VALUE` line.
fn key_of(line: &str) -> Option<String> {
    let t = line.trim();
    if t.is_empty() || is_comment(t) {
        return None;
    }
    t.split_once('=')
        .map(|(k, _)| k.trim().to_ascii_uppercase())
}

/// The value of `key` in the first `[section]` of `text`.
pub fn template_value(text: &str, section: &str, key: &str) -> Option<String> {
    let (_, sections) = split(text);
    let s = sections.into_iter().find(|s| s.name == section)?;
    s.lines.iter().find_map(|l| {
        (key_of(l).as_deref() == Some(key))
            .then(|| l.split_once('=').map(|(_, v)| v.trim().to_string()))
            .flatten()
    })
}

/// Writes `lines` with the values of `overrides` replaced (keys given but absent are added at
/// the end when `add_missing`).
fn emit_overridden(
    out: &mut String,
    lines: &[&str],
    overrides: &[(&str, String)],
    add_missing: bool,
) {
    let mut seen = vec![false; overrides.len()];
    // Trailing blank lines go after any added key, so sections stay separated.
    let end = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |p| p + 1);
    for line in &lines[..end] {
        match key_of(line).and_then(|k| overrides.iter().position(|(o, _)| *o == k)) {
            Some(i) => {
                seen[i] = true;
                let _ = writeln!(out, "{:<19} = {}", overrides[i].0, overrides[i].1);
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if add_missing {
        for (i, (k, v)) in overrides.iter().enumerate() {
            if !seen[i] {
                let _ = writeln!(out, "{k:<19} = {v}");
            }
        }
    }
    for _ in end..lines.len() {
        out.push('\n');
    }
}

fn emit_servers(out: &mut String, plan: &Plan) {
    for n in &plan.nodes {
        let _ = writeln!(
            out,
            "[SVRNODE]\nNAME                = 127.0.0.1\nPORT                = {}\nCTLPORT             = {}\nMETRICSPORT         = {}\n",
            n.port, n.ctlport, n.metrics_port
        );
    }
}

/// Rewrites a template (`conf/local-3node.ini` or `conf/local-slave.ini`) for `plan`.
/// `file` only names the template in errors and in the header comment.
pub fn render(template: &str, file: &str, plan: &Plan, role: Role) -> Result<String, GenError> {
    let (preamble, sections) = split(template);
    for needed in ["GLOBAL", "SVRNODE", "SLVNODE"] {
        if !sections.iter().any(|s| s.name == needed) {
            return Err(GenError::MissingSection {
                file: file.to_string(),
                section: needed,
            });
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Generated by dkc-local from {file} ({role:?} role, {} nodes); edit the template, not this copy.",
        plan.nodes.len()
    );
    for l in preamble {
        out.push_str(l);
        out.push('\n');
    }
    let max_chmpx = template_value(template, "GLOBAL", "MAXCHMPX")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .max(plan.nodes.len() + 1);
    let mut global: Vec<(&str, String)> = vec![
        ("GROUP", plan.group.clone()),
        ("REPLICA", plan.replica.to_string()),
        ("DATADIR", plan.datadir.clone()),
        ("MAXCHMPX", max_chmpx.to_string()),
    ];
    if role == Role::Slave {
        global.push(("CTLPORT", plan.slave_ctlport.to_string()));
        global.push(("SELFCTLPORT", plan.slave_ctlport.to_string()));
    }
    let mut servers_done = false;
    for s in &sections {
        match s.name.as_str() {
            "SVRNODE" => {
                if !servers_done {
                    emit_servers(&mut out, plan);
                    servers_done = true;
                }
            }
            "GLOBAL" => {
                out.push_str(s.header);
                out.push('\n');
                emit_overridden(&mut out, &s.lines, &global, true);
            }
            "SLVNODE" => {
                out.push_str(s.header);
                out.push('\n');
                let mut slave = vec![("CTLPORT", plan.slave_ctlport.to_string())];
                if s.lines
                    .iter()
                    .any(|l| key_of(l).as_deref() == Some("METRICSPORT"))
                {
                    slave.push(("METRICSPORT", plan.slave_metrics_port.to_string()));
                }
                emit_overridden(&mut out, &s.lines, &slave, role == Role::Server);
            }
            _ => {
                out.push_str(s.header);
                out.push('\n');
                emit_overridden(&mut out, &s.lines, &[], false);
            }
        }
    }
    Ok(out)
}

/// Which of the two files is being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The servers' file: chmpx and dkc-server of every node.
    Server,
    /// The slave chmpx's file (the memcached front attaches to it).
    Slave,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = include_str!("../../../conf/local-3node.ini");
    const SLAVE: &str = include_str!("../../../conf/local-slave.ini");

    fn server_ports(text: &str) -> Vec<(String, String)> {
        let (_, sections) = split(text);
        sections
            .iter()
            .filter(|s| s.name == "SVRNODE")
            .map(|s| {
                let get = |k: &str| {
                    s.lines
                        .iter()
                        .find(|l| key_of(l).as_deref() == Some(k))
                        .map(|l| l.split_once('=').unwrap().1.trim().to_string())
                        .unwrap_or_default()
                };
                (get("PORT"), get("CTLPORT"))
            })
            .collect()
    }

    #[test]
    fn default_plan_reproduces_the_shipped_ports() {
        let base: u16 = template_value(SERVER, "SVRNODE", "PORT")
            .unwrap()
            .parse()
            .unwrap();
        let plan = Plan::new("DKCLOCAL", 1, "/tmp/x", 3, base).unwrap();
        let generated = render(SERVER, "s", &plan, Role::Server).unwrap();
        assert_eq!(server_ports(&generated), server_ports(SERVER));
        assert_eq!(
            template_value(SERVER, "SLVNODE", "CTLPORT").unwrap(),
            plan.slave_ctlport.to_string()
        );
        assert_eq!(
            template_value(SLAVE, "SLVNODE", "METRICSPORT").unwrap(),
            plan.slave_metrics_port.to_string()
        );
        assert_eq!(
            template_value(SERVER, "SVRNODE", "METRICSPORT").unwrap(),
            plan.nodes[0].metrics_port.to_string()
        );
    }

    #[test]
    fn overrides_and_keeps_the_rest() {
        let plan = Plan::new("T1", 2, "/data/here", 5, 20000).unwrap();
        let s = render(SERVER, "s", &plan, Role::Server).unwrap();
        assert_eq!(template_value(&s, "GLOBAL", "GROUP").unwrap(), "T1");
        assert_eq!(template_value(&s, "GLOBAL", "REPLICA").unwrap(), "2");
        assert_eq!(
            template_value(&s, "GLOBAL", "DATADIR").unwrap(),
            "/data/here"
        );
        assert_eq!(template_value(&s, "GLOBAL", "MAXCHMPX").unwrap(), "8");
        assert_eq!(
            template_value(&s, "GLOBAL", "ACKLEVEL"),
            template_value(SERVER, "GLOBAL", "ACKLEVEL")
        );
        assert_eq!(template_value(&s, "K2HDKC", "K2HTYPE").unwrap(), "file");
        assert_eq!(server_ports(&s).len(), 5);
        assert_eq!(template_value(&s, "SLVNODE", "CTLPORT").unwrap(), "20011");
        let sl = render(SLAVE, "l", &plan, Role::Slave).unwrap();
        assert_eq!(
            template_value(&sl, "GLOBAL", "SELFCTLPORT").unwrap(),
            "20011"
        );
        assert_eq!(template_value(&sl, "GLOBAL", "MODE").unwrap(), "slave");
        assert_eq!(server_ports(&sl), server_ports(&s));
    }

    #[test]
    fn many_nodes_raise_maxchmpx_and_move_the_slave() {
        let plan = Plan::new("T", 1, "/d", 9, 30000).unwrap();
        assert_eq!(plan.slave_ctlport, 30019);
        let s = render(SERVER, "s", &plan, Role::Server).unwrap();
        assert_eq!(template_value(&s, "GLOBAL", "MAXCHMPX").unwrap(), "10");
        let mut ports = plan.all_ports();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 9 * 3 + 2, "ports must not collide");
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            Plan::new("T", 1, "/d", 0, 8020),
            Err(GenError::Nodes { .. })
        ));
        assert!(matches!(
            Plan::new("T", 1, "/d", 3, 65000),
            Err(GenError::Ports { .. })
        ));
        let plan = Plan::new("T", 1, "/d", 3, 8020).unwrap();
        assert!(matches!(
            render("[GLOBAL]\nGROUP=x\n", "f", &plan, Role::Server),
            Err(GenError::MissingSection {
                section: "SVRNODE",
                ..
            })
        ));
    }
}
