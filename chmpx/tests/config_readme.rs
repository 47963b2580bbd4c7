//! conf/README.md documents exactly the keys the parser knows, with the
//! defaults the code applies.
//!
//! The chain checked: README tables ↔ key registry (`key_docs`, built from
//! the constants in `config::defaults`) ↔ what the parser applies when a key
//! is absent. To regenerate the tables after changing the registry:
//! `cargo test -p chmpx --test config_readme -- --ignored --nocapture`.

use std::collections::BTreeMap;
use std::path::Path;

use chmpx::config::defaults::*;
use chmpx::config::keys::{key_docs, KeyDoc, SectionKind};
use chmpx::config::{AckLevel, Config, K2hType, TlsMinVersion};

#[derive(Debug, PartialEq, Eq)]
struct Row {
    origin: String,
    kind: String,
    default: String,
}

fn origin_cell(d: &KeyDoc) -> String {
    if d.no_effect {
        format!("{} (accepted, no effect)", d.origin.label())
    } else {
        d.origin.label().to_string()
    }
}

fn escape(s: &str) -> String {
    s.replace('|', "\\|")
}

fn expected() -> BTreeMap<(String, String), Row> {
    key_docs()
        .iter()
        .map(|d| {
            let row = Row {
                origin: origin_cell(d),
                kind: d.kind.clone(),
                default: d.default.clone(),
            };
            ((d.section.name().to_string(), d.key.to_string()), row)
        })
        .collect()
}

/// Rows of the key tables: under a "### [SECTION]" heading, lines
/// "| `KEY` | origin | type | default | meaning |".
fn documented() -> BTreeMap<(String, String), Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/README.md");
    let text = std::fs::read_to_string(&path).expect("conf/README.md exists");
    let mut rows = BTreeMap::new();
    let mut section = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("### [") {
            section = rest.split(']').next().map(str::to_string);
            continue;
        }
        if line.starts_with("## ") {
            section = None;
        }
        let Some(section) = &section else { continue };
        if !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<String> = line
            .replace("\\|", "\u{1}")
            .split('|')
            .map(|c| c.trim().replace('\u{1}', "|"))
            .collect();
        // cells[0] is empty (before the first '|').
        assert!(cells.len() >= 6, "README row with too few cells: {line}");
        let key = cells[1].trim_matches('`').to_string();
        let default = cells[4].trim_matches('`').to_string();
        let row = Row {
            origin: cells[2].clone(),
            kind: cells[3].clone(),
            default,
        };
        let previous = rows.insert((section.clone(), key.clone()), row);
        assert!(
            previous.is_none(),
            "README documents [{section}] {key} twice"
        );
    }
    rows
}

#[test]
fn readme_documents_every_key_and_no_other() {
    let expected = expected();
    let documented = documented();
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    let extra: Vec<_> = documented
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "keys the parser knows but conf/README.md does not document: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "keys conf/README.md documents but the parser does not know: {extra:?}"
    );
}

#[test]
fn readme_defaults_types_and_origins_match_the_code() {
    let expected = expected();
    let documented = documented();
    for (key, want) in &expected {
        let Some(got) = documented.get(key) else {
            continue;
        };
        assert_eq!(
            got, want,
            "conf/README.md row of [{}] {} differs from the code",
            key.0, key.1
        );
    }
}

/// The parser applies the documented defaults when keys are absent.
#[test]
fn absent_keys_get_the_documented_defaults() {
    let text = "[GLOBAL]\nGROUP = G\nPORT = 8020\nCTLPORT = 8021\n[SVRNODE]\nNAME = a\n[SLVNODE]\nNAME = [.]*\nCTLPORT = 8031\n[K2HDKC]\n";
    let c = Config::parse_str(text, "/etc/dkc/x.ini").unwrap();
    let g = &c.global;
    let docs: BTreeMap<(SectionKind, &str), String> = key_docs()
        .into_iter()
        .map(|d| ((d.section, d.key), d.default))
        .collect();
    let doc = |s, k: &str| docs[&(s, k)].clone();
    let gl = SectionKind::Global;
    let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
    assert_eq!(g.max_chmpx.to_string(), doc(gl, "MAXCHMPX"));
    assert_eq!(g.replica.to_string(), doc(gl, "REPLICA"));
    assert_eq!(g.max_mq_server.to_string(), doc(gl, "MAXMQSERVER"));
    assert_eq!(g.max_mq_client.to_string(), doc(gl, "MAXMQCLIENT"));
    assert_eq!(
        g.max_q_per_server_mq.to_string(),
        doc(gl, "MAXQPERSERVERMQ")
    );
    assert_eq!(
        g.max_q_per_client_mq.to_string(),
        doc(gl, "MAXQPERCLIENTMQ")
    );
    assert_eq!(g.rw_timeout_us.to_string(), doc(gl, "RWTIMEOUT"));
    assert_eq!(g.retry_count.to_string(), doc(gl, "RETRYCNT"));
    assert_eq!(g.con_timeout_us.to_string(), doc(gl, "CONTIMEOUT"));
    assert_eq!(g.mq_rw_timeout_us.to_string(), doc(gl, "MQRWTIMEOUT"));
    assert_eq!(g.mq_retry_count.to_string(), doc(gl, "MQRETRYCNT"));
    assert_eq!(on_off(g.auto_merge), doc(gl, "AUTOMERGE"));
    assert_eq!(on_off(g.do_merge), doc(gl, "DOMERGE"));
    assert_eq!(g.merge_timeout_s.to_string(), doc(gl, "MERGETIMEOUT"));
    assert_eq!(g.sock_thread_count.to_string(), doc(gl, "SOCKTHREADCNT"));
    assert_eq!(g.mq_thread_count.to_string(), doc(gl, "MQTHREADCNT"));
    assert_eq!(g.max_sock_pool.to_string(), doc(gl, "MAXSOCKPOOL"));
    assert_eq!(
        g.sock_pool_timeout_s.to_string(),
        doc(gl, "SOCKPOOLTIMEOUT")
    );
    assert_eq!(on_off(g.ssl.enabled), doc(gl, "SSL"));
    assert_eq!(on_off(g.ssl.verify_peer), doc(gl, "SSL_VERIFY_PEER"));
    assert_eq!(g.ssl_min_version, TlsMinVersion::Tls12);
    assert_eq!(doc(gl, "SSL_MIN_VER"), SSL_MIN_VER_DEFAULT);
    assert_eq!(g.slot_count.to_string(), doc(gl, "SLOTCOUNT"));
    assert_eq!(
        (g.ack_level, doc(gl, "ACKLEVEL").as_str()),
        (AckLevel::All, "all")
    );
    assert_eq!(g.secret, None);
    assert_eq!(
        g.heartbeat_interval_ms.to_string(),
        doc(gl, "HEARTBEATINTERVAL")
    );
    assert_eq!(
        g.heartbeat_timeout_ms.to_string(),
        doc(gl, "HEARTBEATTIMEOUT")
    );
    assert_eq!(g.mq_msg_size.to_string(), doc(gl, "MQMSGSIZE"));
    assert_eq!(g.shm_ring_size.to_string(), doc(gl, "SHMRINGSIZE"));
    assert_eq!(g.max_payload.to_string(), doc(gl, "MAXPAYLOAD"));
    assert_eq!(format!("{:04o}", g.ipc_mode), doc(gl, "IPCMODE"));
    assert_eq!(g.merge_rate_bytes_per_s.to_string(), doc(gl, "MERGERATE"));
    assert_eq!(g.anti_entropy_s.to_string(), doc(gl, "ANTIENTROPY"));
    assert_eq!(g.data_dir, Path::new(&doc(gl, "DATADIR")));
    assert_eq!(g.data_dir, Path::new(DATADIR_DEFAULT));

    let d = c.dkc.as_ref().unwrap();
    let k = SectionKind::K2hdkc;
    assert_eq!(d.rcv_timeout_ms.to_string(), doc(k, "RCVTIMEOUT"));
    assert_eq!(
        (d.k2h_type, doc(k, "K2HTYPE").as_str()),
        (K2hType::File, "file")
    );
    assert_eq!(d.k2h_file.as_deref(), Some(Path::new(&doc(k, "K2HFILE"))));
    assert_eq!(on_off(d.k2h_fullmap), doc(k, "K2HFULLMAP"));
    assert_eq!(on_off(d.k2h_init), doc(k, "K2HINIT"));
    assert_eq!(d.k2h_maskbit.to_string(), doc(k, "K2HMASKBIT"));
    assert_eq!(d.k2h_cmaskbit.to_string(), doc(k, "K2HCMASKBIT"));
    assert_eq!(d.k2h_maxele.to_string(), doc(k, "K2HMAXELE"));
    assert_eq!(d.k2h_pagesize.to_string(), doc(k, "K2HPAGESIZE"));
    assert_eq!(d.min_thread.to_string(), doc(k, "MINTHREAD"));
    assert_eq!(d.max_thread.to_string(), doc(k, "MAXTHREAD"));
    assert_eq!(d.reduce_time_s.to_string(), doc(k, "REDUCETIME"));
    assert_eq!(on_off(d.sync), doc(k, "SYNC"));
    assert_eq!(d.expire_s, None);

    // Node entries inherit the GLOBAL ports.
    assert_eq!(
        (c.servers[0].port, c.servers[0].ctlport),
        (Some(8020), 8021)
    );
    assert_eq!(doc(SectionKind::SvrNode, "PORT"), "GLOBAL PORT");
}

/// The example in the README's "The file" section is a valid config.
#[test]
fn readme_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/README.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("```ini\n").expect("an ini example") + "```ini\n".len();
    let end = start + text[start..].find("```").expect("end of the example");
    let c = Config::parse_str(&text[start..end], "README.md").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.servers.len(), 3);
}

/// Prints the key tables of conf/README.md from the registry.
#[test]
#[ignore = "run by hand to regenerate the README tables"]
fn print_readme_tables() {
    let docs = key_docs();
    for section in SectionKind::ALL {
        println!("### [{}]\n", section.name());
        println!("| Key | Origin | Type / range | Default | Meaning |");
        println!("|---|---|---|---|---|");
        for d in docs.iter().filter(|d| d.section == section) {
            println!(
                "| `{}` | {} | {} | `{}` | {} |",
                d.key,
                origin_cell(d),
                escape(&d.kind),
                escape(&d.default),
                escape(d.meaning)
            );
        }
        println!();
    }
}
