//! Arbitrary and mangled config text: never a panic, and whatever parses
//! keeps the invariants the rest of chmpx relies on.

use chmpx::config::name_pattern::{expand, HostPattern};
use chmpx::config::{Config, LocalAddrs};
use proptest::prelude::*;

const BASE: &str = "[GLOBAL]\nGROUP = F\nREPLICA = 1\nPORT = 8020\nCTLPORT = 8021\n[SVRNODE]\nNAME = n[1-3]\n[SLVNODE]\nNAME = [.]*\nCTLPORT = 8031\n[K2HDKC]\nK2HTYPE = file\n";

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[GLOBAL]".to_string()),
        Just("[SVRNODE]".to_string()),
        Just("[SLVNODE]".to_string()),
        Just("[K2HDKC]".to_string()),
        Just("[".to_string()),
        "(NAME|PORT|CTLPORT|REPLICA|SLOTCOUNT|MAXPAYLOAD|K2HTYPE|SSL|GROUP|METRICSPORT|HEARTBEATTIMEOUT) = [ -~]{0,12}",
        "[ -~]{0,20}",
        "NAME = [a-c\\[\\]0-9,.\\-]{0,10}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mangled_files_never_panic(lines in proptest::collection::vec(fragment(), 0..12), at in 0usize..14) {
        let mut base: Vec<String> = BASE.lines().map(str::to_string).collect();
        let at = at.min(base.len());
        for (i, l) in lines.into_iter().enumerate() {
            base.insert((at + i).min(base.len()), l);
        }
        let text = base.join("\n");
        match Config::parse_str(&text, "f.ini") {
            Ok(c) => {
                prop_assert!(!c.servers.is_empty() && !c.slaves.is_empty());
                prop_assert!(c.global.slot_count.is_power_of_two());
                prop_assert!(c.global.replica < c.global.max_chmpx);
                prop_assert!(c.servers.iter().all(|s| s.port.is_some() && s.port != Some(s.ctlport)));
                prop_assert!(c.servers.len() + c.slaves.len() <= c.global.max_chmpx as usize);
                let _ = c.self_node(None, &LocalAddrs::loopback_only());
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.starts_with("f.ini"), "{}", msg);
                let line = e.line().unwrap_or(1);
                prop_assert!(line >= 1 && line <= text.lines().count().max(1), "line {} of {}: {}", line, text.lines().count(), msg);
            }
        }
    }

    #[test]
    fn patterns_expand_to_the_product_of_their_groups(a in 0u32..20, len in 1u32..6, items in proptest::collection::vec("[a-z]{1,3}", 1..4)) {
        let pattern = format!("h[{}-{}].x[{}]", a, a + len - 1, items.join(","));
        let HostPattern::Hosts(hosts) = expand(&pattern, false).unwrap() else { panic!("any") };
        prop_assert_eq!(hosts.len(), (len as usize) * items.len());
        prop_assert_eq!(&hosts[0], &format!("h{}.x{}", a, items[0]));
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[ -~\n]{0,200}") {
        let _ = Config::parse_str(&text, "r.ini");
        let _ = expand(&text, true);
    }
}
