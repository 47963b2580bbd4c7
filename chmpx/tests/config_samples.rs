//! Every shipped conf/*.ini parses, and the samples mean what their
//! comments say.

use std::path::{Path, PathBuf};

use chmpx::config::{check_report, Config, HostSpec, K2hType, KernelLimits, LocalAddrs, Mode};

fn conf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf")
}

fn load(name: &str) -> Config {
    let path = conf_dir().join(name);
    Config::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_shipped_ini_parses() {
    let mut count = 0;
    for entry in std::fs::read_dir(conf_dir()).expect("conf/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ini") {
            Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            count += 1;
        }
    }
    assert!(
        count >= 3,
        "expected the three shipped samples, found {count}"
    );
}

#[test]
fn local_three_nodes_on_one_host() {
    let c = load("local-3node.ini");
    assert_eq!(c.global.group, "DKCLOCAL");
    assert_eq!(c.global.replica, 1);
    let ports: Vec<(Option<u16>, u16)> = c.servers.iter().map(|s| (s.port, s.ctlport)).collect();
    assert_eq!(
        ports,
        vec![(Some(8020), 8021), (Some(8022), 8023), (Some(8024), 8025)]
    );
    assert_eq!(c.slaves.len(), 1);
    assert_eq!(c.slaves[0].host, HostSpec::Any);

    let local = LocalAddrs::loopback_only();
    let me = c.self_node(Some(8023), &local).unwrap();
    assert_eq!(
        (me.mode, me.port, me.id().as_str()),
        (Mode::Server, Some(8022), "127.0.0.1:8023")
    );
    // Three servers share the host: without --ctlport the process is ambiguous.
    let err = c.self_node(None, &local).unwrap_err().to_string();
    assert!(
        err.contains("several entries match") && err.contains("--ctlport"),
        "{err}"
    );

    let dkc = c.dkc.as_ref().expect("[K2HDKC]");
    assert_eq!(dkc.k2h_type, K2hType::File);
    assert_eq!(
        c.k2h_file_for(me),
        Some(PathBuf::from("/tmp/dkc-local/DKCLOCAL-8023/dkc.k2h"))
    );
    // Stock kernel limits are enough for the four chmpx processes of this host.
    let report = check_report(&c, KernelLimits::STOCK);
    assert!(report.is_ok(), "{report}");
}

#[test]
fn local_slave_finds_itself_by_selfctlport() {
    let c = load("local-slave.ini");
    let servers = load("local-3node.ini");
    assert_eq!(c.global.group, servers.global.group);
    assert_eq!(c.server_ids(), servers.server_ids());
    let me = c.self_node(None, &LocalAddrs::loopback_only()).unwrap();
    assert_eq!((me.mode, me.ctlport, me.port), (Mode::Slave, 8031, None));
    assert!(c.dkc.is_none());
}

#[test]
fn three_hosts_expand_from_one_pattern() {
    let c = load("three-hosts.ini");
    let hosts: Vec<&str> = c.servers.iter().map(|s| s.host.as_str()).collect();
    assert_eq!(
        hosts,
        [
            "node1.dkc.example",
            "node2.dkc.example",
            "node3.dkc.example"
        ]
    );
    assert!(c
        .servers
        .iter()
        .all(|s| s.port == Some(8020) && s.ctlport == 8021));
    // node2 sees itself by name, with no --ctlport.
    let node2 = LocalAddrs {
        names: vec!["node2.dkc.example".into()],
        addrs: vec![],
    };
    let me = c.self_node(None, &node2).unwrap();
    assert_eq!(me.host.as_str(), "node2.dkc.example");
    assert_eq!(c.dkc.as_ref().map(|d| d.sync), Some(true));
}
