//! A bad file is refused with a message naming file, line, key and what
//! was expected.

use chmpx::config::{Config, ConfigError, LocalAddrs};

const FILE: &str = "conf/x.ini";

const GOOD: &str = "\
[GLOBAL]
GROUP = T
REPLICA = 1

[SVRNODE]
NAME = 127.0.0.1
PORT = 8020
CTLPORT = 8021

[SLVNODE]
NAME = [.]*
CTLPORT = 8031
";

fn err(text: &str) -> (String, ConfigError) {
    let e = Config::parse_str(text, FILE).expect_err("must be refused");
    (e.to_string(), e)
}

/// Asserts the message starts with "file:line: [SECTION] KEY".
fn assert_names(msg: &str, line: usize, section: &str, key: &str) {
    let prefix = format!("{FILE}:{line}: [{section}] {key}");
    assert!(
        msg.starts_with(&prefix),
        "expected a message starting with {prefix:?}, got {msg:?}"
    );
}

#[test]
fn the_good_base_parses() {
    let c = Config::parse_str(GOOD, FILE).unwrap();
    assert_eq!(c.servers.len(), 1);
    assert_eq!(
        c.self_node(Some(8021), &LocalAddrs::loopback_only())
            .unwrap()
            .ctlport,
        8021
    );
}

#[test]
fn unknown_key() {
    let (msg, e) = err(&GOOD.replace("PORT = 8020", "PORT = 8020\nPROT = 1"));
    assert_names(&msg, 8, "SVRNODE", "PROT");
    assert!(msg.contains("unknown key"), "{msg}");
    assert_eq!(e.line(), Some(8));
}

#[test]
fn unsupported_chmpx_key_says_why() {
    let (msg, _) = err(&GOOD.replace("REPLICA = 1", "REPLICA = 1\nCHMPXIDTYPE = CUK"));
    assert_names(&msg, 4, "GLOBAL", "CHMPXIDTYPE");
    assert!(msg.contains("NAME and CTLPORT"), "{msg}");
    let (msg, _) = err(&format!("{GOOD}[K2HDKC]\nMAXTHREADCNT = 4\n"));
    assert_names(&msg, 14, "K2HDKC", "MAXTHREADCNT");
    assert!(msg.contains("MAXTHREAD?"), "{msg}");
}

#[test]
fn key_in_the_wrong_section() {
    let (msg, _) = err(&GOOD.replace("CTLPORT = 8031", "CTLPORT = 8031\nPORT = 8030"));
    assert_names(&msg, 13, "SLVNODE", "PORT");
    assert!(msg.contains("no data port"), "{msg}");
}

#[test]
fn bad_value() {
    let (msg, _) = err(&GOOD.replace("REPLICA = 1", "REPLICA = two"));
    assert_eq!(msg, "conf/x.ini:3: [GLOBAL] REPLICA = \"two\": expected an integer 0..=MAXCHMPX-1 (MAXCHMPX is 1024)");
    let (msg, _) = err(&GOOD.replace("PORT = 8020", "PORT = 70000"));
    assert_eq!(
        msg,
        "conf/x.ini:7: [SVRNODE] PORT = \"70000\": expected a port number in 1..=65535"
    );
    let (msg, _) = err(&GOOD.replace("REPLICA = 1", "SLOTCOUNT = 1000"));
    assert_names(&msg, 3, "GLOBAL", "SLOTCOUNT");
    assert!(msg.contains("power of two"), "{msg}");
    let (msg, _) = err(&GOOD.replace("REPLICA = 1", "AUTOMERGE = sometimes"));
    assert_names(&msg, 3, "GLOBAL", "AUTOMERGE");
    assert!(msg.contains("yes/no"), "{msg}");
}

#[test]
fn bad_pattern() {
    let (msg, _) = err(&GOOD.replace("NAME = 127.0.0.1", "NAME = host[3-1].example"));
    assert_names(&msg, 6, "SVRNODE", "NAME");
    assert!(msg.contains("[3-1]"), "{msg}");
    let (msg, _) = err(&GOOD.replace("NAME = 127.0.0.1", "NAME = host[1-3.example"));
    assert_names(&msg, 6, "SVRNODE", "NAME");
    assert!(msg.contains("closing ']'"), "{msg}");
}

#[test]
fn duplicate_global() {
    let (msg, e) = err(&format!("{GOOD}\n[GLOBAL]\nGROUP = U\n"));
    assert!(msg.starts_with("conf/x.ini:14: [GLOBAL]"), "{msg}");
    assert!(msg.contains("first at line 1"), "{msg}");
    assert!(matches!(e, ConfigError::DuplicateSection { .. }));
}

#[test]
fn missing_svrnode() {
    let text = "[GLOBAL]\nGROUP = T\n\n[SLVNODE]\nNAME = [.]*\nCTLPORT = 8031\n";
    let (msg, e) = err(text);
    assert_names(&msg, 6, "SVRNODE", "NAME");
    assert!(msg.contains("no [SVRNODE] section"), "{msg}");
    assert!(matches!(e, ConfigError::MissingSection { .. }));
}

#[test]
fn missing_required_keys() {
    let (msg, _) = err(&GOOD.replace("GROUP = T\n", ""));
    assert_names(&msg, 1, "GLOBAL", "GROUP");
    assert!(msg.contains("missing"), "{msg}");
    let (msg, _) = err(&GOOD.replace("CTLPORT = 8021\n", ""));
    assert_names(&msg, 5, "SVRNODE", "CTLPORT");
}

#[test]
fn unknown_section_and_duplicate_key() {
    let (msg, _) = err(&format!("{GOOD}[SERVER]\nNAME = a\n"));
    assert!(
        msg.starts_with("conf/x.ini:13: [SERVER]: unknown section"),
        "{msg}"
    );
    let (msg, _) = err(&GOOD.replace("REPLICA = 1", "REPLICA = 1\nREPLICA = 2"));
    assert_names(&msg, 4, "GLOBAL", "REPLICA");
    assert!(msg.contains("first at line 3"), "{msg}");
}

#[test]
fn cross_entry_conflicts() {
    // Two nodes on one host with the same control port.
    let twice = GOOD.replace(
        "[SLVNODE]",
        "[SVRNODE]\nNAME = 127.0.0.1\nPORT = 8022\nCTLPORT = 8021\n\n[SLVNODE]",
    );
    let (msg, _) = err(&twice);
    assert_names(&msg, 10, "SVRNODE", "CTLPORT");
    assert!(msg.contains("already uses port 8021"), "{msg}");
    // Heartbeat timeout must leave room for a lost heartbeat.
    let (msg, _) = err(&GOOD.replace(
        "REPLICA = 1",
        "HEARTBEATINTERVAL = 1000\nHEARTBEATTIMEOUT = 1500",
    ));
    assert_names(&msg, 4, "GLOBAL", "HEARTBEATTIMEOUT");
    // The memory type has no file.
    let (msg, _) = err(&format!(
        "{GOOD}[K2HDKC]\nK2HTYPE = mem\nK2HFILE = /x.k2h\n"
    ));
    assert_names(&msg, 15, "K2HDKC", "K2HFILE");
    // Random delivery cannot keep replicas: refused.
    let (msg, _) = err(&GOOD.replace("REPLICA = 1", "DELIVERMODE = random"));
    assert_names(&msg, 3, "GLOBAL", "DELIVERMODE");
    assert!(msg.contains("cannot keep replicas"), "{msg}");
}

#[test]
fn too_many_nodes_are_refused_at_the_section_that_overflows() {
    let text = GOOD
        .replace("REPLICA = 1", "REPLICA = 1\nMAXCHMPX = 4")
        .replace("NAME = 127.0.0.1", "NAME = h[1-3]");
    let text = format!("{text}[SVRNODE]\nNAME = big[1-30000]\nPORT = 8020\nCTLPORT = 8021\n");
    let (msg, _) = err(&text);
    assert_names(&msg, 15, "SVRNODE", "NAME");
    assert!(msg.contains("exceed MAXCHMPX (4)"), "{msg}");
}

#[test]
fn self_node_errors() {
    let c = Config::parse_str(GOOD, FILE).unwrap();
    let far = LocalAddrs {
        names: vec!["elsewhere".into()],
        addrs: vec!["10.9.9.9".parse().unwrap()],
    };
    // 127.0.0.1 is always local; a ctlport no entry names is a slave of the any-host entry
    // (its CTLPORT is only the default: slaves on one host are told apart by their ports)...
    let me = c.self_node(Some(9999), &far).unwrap();
    assert_eq!((me.host.as_str(), me.ctlport), ("*", 8031));
    // ...and matches nothing when MODE says server, or when there is no any-host entry.
    for text in [
        GOOD.replace("REPLICA = 1", "REPLICA = 1\nMODE = SERVER"),
        GOOD.replace("NAME = [.]*", "NAME = 10.9.9.8"),
    ] {
        let c = Config::parse_str(&text, FILE).unwrap();
        let msg = c.self_node(Some(9999), &far).unwrap_err().to_string();
        assert!(
            msg.contains("no [SVRNODE] or [SLVNODE] entry matches") && msg.contains("ctlport 9999"),
            "{msg}"
        );
    }
    // Of two any-host entries, the one with the wanted CTLPORT.
    let two_any = format!("{GOOD}\n[SLVNODE]\nNAME = [.]*\nCTLPORT = 8032\n");
    let c2 = Config::parse_str(&two_any, FILE).unwrap();
    assert_eq!(c2.self_node(Some(8032), &far).unwrap().line, 14);
    assert!(
        c2.self_node(Some(8033), &far).is_err(),
        "two any-host entries: ambiguous"
    );
    // Without a ctlport, the entry naming this host (127.0.0.1) wins over the any-host slave.
    assert_eq!(c.self_node(None, &far).unwrap().ctlport, 8021);
    assert_eq!(c.self_node(Some(8031), &far).unwrap().ctlport, 8031);
    // Two servers on one host and no ctlport: ambiguous.
    let two = GOOD.replace(
        "[SLVNODE]",
        "[SVRNODE]\nNAME = localhost\nPORT = 8022\nCTLPORT = 8023\n\n[SLVNODE]",
    );
    let c = Config::parse_str(&two, FILE).unwrap();
    let msg = c.self_node(None, &far).unwrap_err().to_string();
    assert!(
        msg.contains("several entries match")
            && msg.contains("127.0.0.1:8021")
            && msg.contains("localhost:8023"),
        "{msg}"
    );
}

#[test]
fn io_error_names_the_file() {
    let msg = Config::load("/nonexistent/dkc.ini")
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("/nonexistent/dkc.ini: cannot read"),
        "{msg}"
    );
}
