//! `check_report`: what a config needs from the kernel against the limits.

use chmpx::config::{check_report, CheckStatus, Config, KernelLimits};

fn config(extra_global: &str) -> Config {
    let text = format!(
        "[GLOBAL]\nGROUP = C\n{extra_global}\n[SVRNODE]\nNAME = 127.0.0.1\nPORT = 8020\nCTLPORT = 8021\n[SLVNODE]\nNAME = [.]*\nCTLPORT = 8031\n"
    );
    Config::parse_str(&text, "c.ini").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn defaults_fit_a_stock_kernel() {
    let report = check_report(&config(""), KernelLimits::STOCK);
    assert!(report.is_ok(), "{report}");
    let text = report.to_string();
    // 1 accept queue + 2 x (2 + 32) attachments.
    assert!(
        text.contains("OK       fs.mqueue.queues_max: need 69 queues per chmpx"),
        "{text}"
    );
    assert!(
        text.contains("fs.mqueue.msg_max: need queue depth 8"),
        "{text}"
    );
    assert!(
        text.ends_with("OK: the kernel limits allow this config\n"),
        "{text}"
    );
}

#[test]
fn too_low_names_the_limit_its_value_and_the_fix() {
    let limits = KernelLimits {
        msg_max: Some(4),
        ..KernelLimits::STOCK
    };
    let report = check_report(&config(""), limits);
    assert!(!report.is_ok());
    let bad: Vec<_> = report
        .lines
        .iter()
        .filter(|l| l.status == CheckStatus::TooLow)
        .collect();
    assert_eq!(bad.len(), 1, "{report}");
    assert_eq!(
        (bad[0].limit.as_str(), bad[0].needed, bad[0].current),
        ("fs.mqueue.msg_max", 8, Some(4))
    );
    let text = report.to_string();
    assert!(
        text.contains("TOO LOW  fs.mqueue.msg_max: need queue depth 8"),
        "{text}"
    );
    assert!(text.contains("current 4"), "{text}");
    assert!(text.contains("sysctl fs.mqueue.msg_max=8"), "{text}");
    assert!(text.contains("unshare --ipc"), "{text}");
}

#[test]
fn many_clients_need_more_queues_and_bytes() {
    let report = check_report(
        &config("MAXMQCLIENT = 200\nMAXQPERCLIENTMQ = 10"),
        KernelLimits::STOCK,
    );
    let bad: Vec<&str> = report
        .lines
        .iter()
        .filter(|l| l.status == CheckStatus::TooLow)
        .map(|l| l.limit.as_str())
        .collect();
    // 1 + 2 x 202 = 405 queues > 256.
    assert!(bad.contains(&"fs.mqueue.queues_max"), "{report}");
    let text = report.to_string();
    assert!(text.contains("need 405 queues"), "{text}");
    assert!(text.contains("sysctl fs.mqueue.queues_max=405"), "{text}");
}

#[test]
fn large_messages_need_msgsize_max() {
    let report = check_report(&config("MQMSGSIZE = 16K"), KernelLimits::STOCK);
    let line = report
        .lines
        .iter()
        .find(|l| l.limit == "fs.mqueue.msgsize_max")
        .unwrap();
    assert_eq!(
        (line.status, line.needed, line.current),
        (CheckStatus::TooLow, 16384, Some(8192))
    );
}

#[test]
fn unreadable_limits_are_unknown_not_ok() {
    let report = check_report(&config(""), KernelLimits::default());
    assert!(
        report
            .lines
            .iter()
            .all(|l| l.status == CheckStatus::Unknown),
        "{report}"
    );
}

#[test]
fn several_nodes_on_one_host_add_up() {
    let text = "[GLOBAL]\nGROUP = C\nMAXMQCLIENT = 60\n[SVRNODE]\nNAME = 127.0.0.1\nPORT = 8020\nCTLPORT = 8021\n[SVRNODE]\nNAME = 127.0.0.1\nPORT = 8022\nCTLPORT = 8023\n[SLVNODE]\nNAME = [.]*\nCTLPORT = 8031\n";
    let c = Config::parse_str(text, "c.ini").unwrap();
    let report = check_report(&c, KernelLimits::STOCK);
    // One chmpx: 1 + 2 x 62 = 125 queues fits; three on 127.0.0.1 (two servers + the any-host slave) need 375.
    let text = report.to_string();
    assert!(
        text.contains("OK       fs.mqueue.queues_max: need 125 queues per chmpx"),
        "{text}"
    );
    assert!(
        text.contains("TOO LOW  fs.mqueue.queues_max: need 375 queues for the 3 chmpx processes"),
        "{text}"
    );
}

#[test]
fn this_machine_limits_are_read() {
    let limits = KernelLimits::read();
    if std::path::Path::new("/proc/sys/fs/mqueue/msg_max").exists() {
        assert!(limits.msg_max.is_some_and(|v| v > 0));
        assert!(limits.queues_max.is_some());
    }
    assert!(limits.rlimit_msgqueue_bytes.is_some());
    println!("{}", check_report(&config(""), limits));
}
