//! ANTIENTROPY ([GLOBAL], seconds, 0 = off): parsed, defaulted, bounded, and carried into the
//! daemon's settings; a bad value is refused naming file, line and key.

use std::time::Duration;

use chmpx::config::defaults::{ANTIENTROPY_S_DEFAULT, ANTIENTROPY_S_MAX};
use chmpx::config::{Config, LocalAddrs};

const FILE: &str = "conf/ae.ini";

// Anti-entropy is on by default.
const _: () = assert!(ANTIENTROPY_S_DEFAULT > 0);

fn ini(extra: &str) -> String {
    format!(
        "[GLOBAL]\nGROUP = T\n{extra}\n[SVRNODE]\nNAME = 127.0.0.1\nPORT = 8020\nCTLPORT = 8021\n\
         [SLVNODE]\nNAME = [.]*\nCTLPORT = 8031\n"
    )
}

#[test]
fn absent_zero_and_set_values() {
    let c = Config::parse_str(&ini(""), FILE).unwrap();
    assert_eq!(c.global.anti_entropy_s, ANTIENTROPY_S_DEFAULT);
    let c = Config::parse_str(&ini("ANTIENTROPY = 0"), FILE).unwrap();
    assert_eq!(c.global.anti_entropy_s, 0, "0 turns it off");
    let c = Config::parse_str(&ini("ANTIENTROPY = 5"), FILE).unwrap();
    assert_eq!(c.global.anti_entropy_s, 5);
    let s = chmpx::daemon::from_config::settings_from_config(
        &c,
        Some(8021),
        &LocalAddrs::loopback_only(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.anti_entropy_interval, Duration::from_secs(5));
}

#[test]
fn out_of_range_and_garbage_are_refused_with_the_key_named() {
    for bad in [
        format!("{}", ANTIENTROPY_S_MAX + 1),
        "-1".into(),
        "soon".into(),
    ] {
        let e = Config::parse_str(&ini(&format!("ANTIENTROPY = {bad}")), FILE)
            .expect_err("must be refused")
            .to_string();
        assert!(
            e.starts_with(&format!("{FILE}:3: [GLOBAL] ANTIENTROPY")),
            "{bad}: {e}"
        );
        assert!(e.contains(&ANTIENTROPY_S_MAX.to_string()), "{bad}: {e}");
    }
}
