//! What the daemon takes from the file for its own access rules: who may use the control port
//! (this host always, from 127.0.0.1 or ::1, where `chmpxstatus --conf` and `chmpxctl --conf`
//! connect; otherwise only configured hosts), IPCMODE for the objects chmpx creates, and the longest
//! GROUP (whatever the file accepts must name valid queues and segments).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chmpx::attach::names::{ChmpxNames, CLUSTER_NAME_LEN_MAX};
use chmpx::config::defaults::GROUP_LEN_MAX;
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
