//! What the daemon takes from the file for its own access rules: who may use the control port
//! (this host always, from 127.0.0.1 or ::1, where `chmpxstatus --conf` and `chmpxctl --conf`
//! connect; otherwise only configured hosts), who may read the metrics port (the same, and
//! METRICSALLOW), IPCMODE for the objects chmpx creates, and the longest
//! GROUP (whatever the file accepts must name valid queues and segments).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chmpx::attach::names::{ChmpxNames, CLUSTER_NAME_LEN_MAX};
use chmpx::config::defaults::{GROUP_LEN_MAX, METRICSALLOW_ENTRIES_MAX};
use chmpx::config::{Config, LocalAddrs};
use chmpx::daemon::settings_from_config;

const FILE: &str = "conf/access.ini";

/// Three server hosts and one client host, none of them loopback; this host is the first.
fn ini(global_extra: &str) -> String {
    format!(
        "[GLOBAL]\nGROUP = T\n{global_extra}\n[SVRNODE]\nNAME = 10.0.0.[1-3]\nPORT = 8020\nCTLPORT = 8021\n\
         [SLVNODE]\nNAME = 10.0.1.9\nCTLPORT = 8031\n"
    )
}

fn first_server() -> LocalAddrs {
    let mut local = LocalAddrs::loopback_only();
    local.addrs.push(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    local
}

#[test]
fn control_port_takes_loopback_and_configured_hosts_only() {
    let cfg = Config::parse_str(&ini(""), FILE).unwrap_or_else(|e| panic!("{e}"));
    let s =
        settings_from_config(&cfg, Some(8021), &first_server()).unwrap_or_else(|e| panic!("{e}"));
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    for (ip, allowed) in [
        (v4(127, 0, 0, 1), true),
        (IpAddr::V6(Ipv6Addr::LOCALHOST), true),
        (
            IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped()),
            true,
        ),
        (v4(127, 0, 0, 2), false),
        (v4(10, 0, 0, 1), true),
        (v4(10, 0, 0, 3), true),
        (v4(10, 0, 1, 9), true),
        (v4(10, 0, 0, 4), false),
        (
            IpAddr::V6(Ipv4Addr::new(10, 0, 0, 4).to_ipv6_mapped()),
            false,
        ),
        (v4(192, 168, 1, 1), false),
    ] {
        assert_eq!(s.control_allowed(ip), allowed, "{ip}");
    }
}

#[test]
fn metrics_port_takes_what_the_control_port_takes_and_metricsallow() {
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let doc: IpAddr = "2001:db8::7".parse().unwrap();
    let settings = |extra: &str| {
        let cfg = Config::parse_str(&ini(extra), FILE).unwrap_or_else(|e| panic!("{e}"));
        settings_from_config(&cfg, Some(8021), &first_server()).unwrap_or_else(|e| panic!("{e}"))
    };

    let s = settings("");
    for (ip, allowed) in [
        (v4(127, 0, 0, 1), true),
        (v4(10, 0, 0, 2), true),
        (v4(10, 0, 1, 9), true),
        (v4(127, 0, 0, 2), false),
        (v4(192, 168, 1, 77), false),
        (doc, false),
    ] {
        assert_eq!(s.metrics_allowed(ip), allowed, "no METRICSALLOW: {ip}");
    }

    let s = settings("METRICSALLOW = 192.168.1.0/24, 2001:db8::7 ,10.9.9.9, 172.16.5.9/16");
    for (ip, allowed) in [
        (v4(127, 0, 0, 1), true),
        (v4(10, 0, 0, 2), true),
        (v4(192, 168, 1, 77), true),
        (
            IpAddr::V6(Ipv4Addr::new(192, 168, 1, 77).to_ipv6_mapped()),
            true,
        ),
        (v4(192, 168, 2, 1), false),
        (doc, true),
        ("2001:db8::8".parse().unwrap(), false),
        (v4(10, 9, 9, 9), true),
        (v4(10, 9, 9, 8), false),
        (v4(172, 16, 200, 1), true),
        (v4(172, 17, 0, 1), false),
        (v4(127, 0, 0, 2), false),
    ] {
        assert_eq!(s.metrics_allowed(ip), allowed, "METRICSALLOW: {ip}");
    }
    assert!(
        !s.control_allowed(v4(192, 168, 1, 77)),
        "METRICSALLOW does not open the control port"
    );

    let s = settings("METRICSALLOW = *");
    for ip in [v4(192, 168, 1, 77), v4(127, 0, 0, 2), doc] {
        assert!(s.metrics_allowed(ip), "* admits {ip}");
        assert!(
            !s.control_allowed(ip),
            "* opens the metrics port only: {ip}"
        );
    }
}

#[test]
fn a_bad_metricsallow_is_refused_naming_the_entry() {
    let many = vec!["10.0.0.1"; METRICSALLOW_ENTRIES_MAX + 1].join(",");
    for (value, names) in [
        ("10.0.0.300", "\"10.0.0.300\" is not an IP address"),
        ("10.0.0.0/33", "\"10.0.0.0/33\" is not an IP address"),
        (
            "prometheus.example",
            "\"prometheus.example\" is not an IP address",
        ),
        ("10.0.0.1,,10.0.0.2", "an empty entry"),
        (many.as_str(), "entries"),
    ] {
        let e = Config::parse_str(&ini(&format!("METRICSALLOW = {value}")), FILE)
            .expect_err(value)
            .to_string();
        assert!(
            e.contains("METRICSALLOW") && e.contains(names) && e.contains("10.0.6.0/24"),
            "{value}: {e}"
        );
    }
    let cfg = Config::parse_str(
        &ini(&format!(
            "METRICSALLOW = {}",
            vec!["10.0.0.1"; METRICSALLOW_ENTRIES_MAX].join(",")
        )),
        FILE,
    );
    assert!(
        cfg.is_ok(),
        "{METRICSALLOW_ENTRIES_MAX} entries are accepted"
    );
}

#[test]
fn ipcmode_reaches_the_daemon_settings() {
    let cfg = Config::parse_str(&ini(""), FILE).unwrap_or_else(|e| panic!("{e}"));
    let s =
        settings_from_config(&cfg, Some(8021), &first_server()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.ipc_mode, 0o600, "owner only unless configured");
    let cfg = Config::parse_str(&ini("IPCMODE = 0640"), FILE).unwrap_or_else(|e| panic!("{e}"));
    let s =
        settings_from_config(&cfg, Some(8021), &first_server()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.ipc_mode, 0o640);
}

#[test]
fn the_longest_group_accepted_names_valid_objects_and_one_more_is_refused() {
    const { assert!(GROUP_LEN_MAX <= CLUSTER_NAME_LEN_MAX) };
    let longest = "G".repeat(GROUP_LEN_MAX);
    let text = ini("").replace("GROUP = T", &format!("GROUP = {longest}"));
    let cfg = Config::parse_str(&text, FILE).unwrap_or_else(|e| panic!("{e}"));
    assert!(ChmpxNames::new(&cfg.global.group, 8021).is_ok());
    let text = ini("").replace("GROUP = T", &format!("GROUP = {longest}G"));
    let e = Config::parse_str(&text, FILE)
        .expect_err("a GROUP one byte too long is refused")
        .to_string();
    assert!(
        e.contains("GROUP") && e.contains(&format!("1..={GROUP_LEN_MAX}")),
        "{e}"
    );
}
