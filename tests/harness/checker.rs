//! The checker of the multi-host fault runs: reads the operation records the client hosts
//! wrote (`dkc_tools::netns::workload::OpRecord`, one JSON line each) and the final reads
//! taken after the faults healed, and finds:
//!
//! - **lost** acknowledged writes: a register key whose final value is neither the value of
//!   its last acknowledged write nor of a later write whose outcome is unknown (keys are
//!   written by one client, one write at a time, so their writes are totally ordered);
//! - **phantom** values: a read (during the run or at the end) of a value never written to
//!   that key by a write that may have happened;
//! - **counter** violations: a counter's final value outside `acked ..= acked + unknown`
//!   increments, or two acknowledged CAS increments that produced the same value (a lost
//!   update);
//! - **stale** reads: a read returning the value of a write that an acknowledged later write
//!   had already replaced before the read began;
//! - single-key **linearizability** ([`crate::linear`]) of every register key.
//!
//! [`Findings::table`] renders the report table each run prints.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use dkc_tools::netns::workload::{is_no_space, FinalRead, OpKind, OpRecord, OpResult};

use crate::linear::{check_register, RegOp, TimedOp, Verdict};

/// Errors closer together than this count as one window of client errors, µs.
pub const ERROR_WINDOW_GAP_US: u64 = 1_000_000;
/// Findings listed per kind in a failure message.
pub const FINDINGS_SHOWN_MAX: usize = 10;

/// Reads the JSON-lines records of one client host's history file.
pub fn load_history(path: &Path) -> Result<Vec<OpRecord>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read history {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| format!("{} line {}: {e}: {l}", path.display(), i + 1))
        })
        .collect()
}

/// Parses the JSON lines of `dkc-fault-client read`.
pub fn parse_final_reads(
    text: &str,
) -> Result<BTreeMap<String, Result<Option<String>, String>>, String> {
    let mut out = BTreeMap::new();
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: FinalRead = serde_json::from_str(l).map_err(|e| format!("final read {l}: {e}"))?;
        out.insert(r.key, r.got);
    }
    Ok(out)
}

/// What the checker found in one run.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    /// Operations recorded.
    pub ops: usize,
    /// Writes (set, delete, incr) acknowledged.
    pub acked_writes: usize,
    /// Writes with unknown outcome.
    pub unknown_writes: usize,
    /// Reads answered.
    pub reads_ok: usize,
    /// Lost acknowledged writes, one line each.
    pub lost: Vec<String>,
    /// Values read that were never written.
    pub phantom: Vec<String>,
    /// Counter violations.
    pub counters: Vec<String>,
    /// Stale reads.
    pub stale: Vec<String>,
    /// Keys whose history is not linearizable.
    pub not_linearizable: Vec<String>,
    /// Keys whose linearizability was not decided (too long).
    pub not_checked: usize,
    /// Keys checked for linearizability.
    pub keys_checked: usize,
    /// Operations that ended in an error (client view).
    pub client_errors: usize,
    /// Total length of the windows in which clients saw errors.
    pub error_window: Duration,
    /// Number of such windows.
    pub error_windows: usize,
    /// Acknowledged increments per protocol command (`cas`, `incr`).
    pub acked_incr_via: BTreeMap<String, usize>,
    /// Writes refused with `E_NO_SPACE` (a full disk on an owner): not acknowledged, so never
    /// a loss; with "written on the primary" their outcome is unknown.
    pub no_space: usize,
}

fn val_of(r: &OpRecord) -> Option<String> {
    match r.kind {
        OpKind::Delete => None,
        _ => r.value.clone(),
    }
}

fn is_write(r: &OpRecord) -> bool {
    matches!(r.kind, OpKind::Set | OpKind::Delete)
}

/// Checks `ops` (every client's records) and the `finals` read after the run.
/// `counters` are the counter keys, created with value 0 before the run.
pub fn check(
    ops: &[OpRecord],
    finals: &BTreeMap<String, Result<Option<String>, String>>,
    counters: &[String],
) -> Findings {
    let mut f = Findings {
        ops: ops.len(),
        ..Findings::default()
    };
    let mut by_key: BTreeMap<&str, Vec<&OpRecord>> = BTreeMap::new();
    for r in ops {
        by_key.entry(&r.key).or_default().push(r);
        if r.error.as_deref().is_some_and(is_no_space) {
            f.no_space += 1;
        }
        let write = r.kind != OpKind::Get;
        match (write, r.result) {
            (true, OpResult::Ok) => {
                f.acked_writes += 1;
                if r.kind == OpKind::Incr {
                    let via = r.via.clone().unwrap_or_else(|| "cas".into());
                    *f.acked_incr_via.entry(via).or_default() += 1;
                }
            }
            (true, OpResult::Unknown) => f.unknown_writes += 1,
            (false, OpResult::Ok) => f.reads_ok += 1,
            _ => {}
        }
    }
    client_errors(ops, &mut f);
    let counter_set: BTreeSet<&str> = counters.iter().map(String::as_str).collect();
    for c in counters {
        check_counter(
            c,
            by_key.get(c.as_str()).map_or(&[][..], |v| v),
            finals.get(c),
            &mut f,
        );
    }
    for (key, recs) in &by_key {
        if counter_set.contains(key) {
            continue;
        }
        check_register_key(key, recs, finals.get(*key), &mut f);
    }
    f
}

fn client_errors(ops: &[OpRecord], f: &mut Findings) {
    let mut errs: Vec<(u64, u64)> = ops
        .iter()
        .filter(|r| match r.result {
            OpResult::Ok => false,
            OpResult::Unknown => true,
            // Losing a CAS race is the protocol working, not an error.
            OpResult::Failed => !r.error.as_deref().unwrap_or("").contains("cas mismatch"),
        })
        .map(|r| (r.start_us, r.end_us))
        .collect();
    f.client_errors = errs.len();
    errs.sort();
    let mut windows: Vec<(u64, u64)> = Vec::new();
    for (s, e) in errs {
        match windows.last_mut() {
            Some(w) if s <= w.1 + ERROR_WINDOW_GAP_US => w.1 = w.1.max(e),
            _ => windows.push((s, e)),
        }
    }
    f.error_windows = windows.len();
    f.error_window = Duration::from_micros(windows.iter().map(|w| w.1 - w.0).sum());
}

fn check_counter(
    key: &str,
    recs: &[&OpRecord],
    fin: Option<&Result<Option<String>, String>>,
    f: &mut Findings,
) {
    let incrs: Vec<&&OpRecord> = recs.iter().filter(|r| r.kind == OpKind::Incr).collect();
    let acked = incrs.iter().filter(|r| r.result == OpResult::Ok).count() as u64;
    let unknown = incrs
        .iter()
        .filter(|r| r.result == OpResult::Unknown)
        .count() as u64;
    let mut values: BTreeMap<&str, usize> = BTreeMap::new();
    // When each value was first and last acknowledged (µs), to place a lost update in time.
    let mut when: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for r in incrs.iter().filter(|r| r.result == OpResult::Ok) {
        let v = r.value.as_deref().unwrap_or("");
        *values.entry(v).or_default() += 1;
        let w = when.entry(v).or_insert((r.end_us, r.end_us));
        w.0 = w.0.min(r.end_us);
        w.1 = w.1.max(r.end_us);
    }
    let origin = recs.iter().map(|r| r.start_us).min().unwrap_or(0);
    match fin {
        Some(Ok(Some(v))) => match v.parse::<u64>() {
            Ok(n) if n >= acked && n <= acked + unknown => {}
            Ok(n) => f.counters.push(format!(
                "{key}: final value {n}, but {acked} increments were acknowledged and {unknown} unknown"
            )),
            Err(_) => f.phantom.push(format!("{key}: counter holds non-number {v:?}")),
        },
        Some(Ok(None)) => f.lost.push(format!("{key}: counter missing ({acked} acked increments)")),
        Some(Err(e)) => f.lost.push(format!("{key}: counter unreadable: {e}")),
        None => f.lost.push(format!("{key}: counter not read at the end")),
    }
    // One line per counter for the duplicates (the count of each value can be long).
    let dups: Vec<String> = values
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(v, n)| format!("{v} x{n}"))
        .collect();
    if !dups.is_empty() {
        let first = values.iter().find(|(_, n)| **n > 1).map(|(v, _)| *v);
        let at = first
            .and_then(|v| when.get(v).map(|w| (v, w)))
            .map(|(v, (a, b))| {
                format!(
                    "; {v} acknowledged first at t+{:.2}s and again at t+{:.2}s",
                    a.saturating_sub(origin) as f64 / 1e6,
                    b.saturating_sub(origin) as f64 / 1e6
                )
            })
            .unwrap_or_default();
        f.counters.push(format!(
            "{key}: {} values produced by more than one acknowledged CAS increment (lost \
             updates): {}{at}",
            dups.len(),
            dups.join(", ")
        ));
    }
    let max_possible = acked + unknown;
    for r in recs
        .iter()
        .filter(|r| r.kind == OpKind::Get && r.result == OpResult::Ok)
    {
        if let Some(Some(v)) = &r.read {
            if v.parse::<u64>().map_or(true, |n| n > max_possible) {
                f.phantom.push(format!(
                    "{key}: client {} read {v:?}, more than every possible increment ({max_possible})",
                    r.client
                ));
            }
        }
    }
}

fn check_register_key(
    key: &str,
    recs: &[&OpRecord],
    fin: Option<&Result<Option<String>, String>>,
    f: &mut Findings,
) {
    let mut writes: Vec<&OpRecord> = recs
        .iter()
        .copied()
        .filter(|r| is_write(r) && r.result != OpResult::Failed)
        .collect();
    writes.sort_by_key(|r| r.seq);
    let written: BTreeSet<Option<String>> = writes.iter().map(|r| val_of(r)).collect();
    // Lost: the final value must be the last acknowledged write's or a later possible one's.
    if let Some(last_ok) = writes.iter().rposition(|r| r.result == OpResult::Ok) {
        let allowed: Vec<Option<String>> = writes[last_ok..].iter().map(|r| val_of(r)).collect();
        let ok = matches!(fin, Some(Ok(v)) if allowed.contains(v));
        if !ok {
            f.lost.push(format!(
                "{key}: last acknowledged write {:?} (client {} seq {}), final read {:?}",
                val_of(writes[last_ok]),
                writes[last_ok].client,
                writes[last_ok].seq,
                fin
            ));
        }
    }
    if let Some(Ok(Some(v))) = fin {
        if !written.contains(&Some(v.clone())) {
            f.phantom
                .push(format!("{key}: final read {v:?}, never written"));
        }
    }
    // Reads during the run.
    let reads: Vec<&OpRecord> = recs
        .iter()
        .copied()
        .filter(|r| r.kind == OpKind::Get && r.result == OpResult::Ok)
        .collect();
    for r in &reads {
        let got = r.read.clone().flatten();
        if got.is_some() && !written.contains(&got) {
            f.phantom.push(format!(
                "{key}: client {} read {got:?}, never written",
                r.client
            ));
            continue;
        }
        // Stale: some acknowledged write that ended before the read began replaced it.
        let newest_done = writes
            .iter()
            .rposition(|w| w.result == OpResult::Ok && w.end_us < r.start_us);
        if let Some(n) = newest_done {
            let candidates: Vec<Option<String>> = writes[n..].iter().map(|w| val_of(w)).collect();
            if !candidates.contains(&got) {
                f.stale.push(format!(
                    "{key}: client {} read {got:?} at {} µs, after {:?} was acknowledged at {} µs",
                    r.client,
                    r.start_us,
                    val_of(writes[n]),
                    writes[n].end_us
                ));
            }
        }
    }
    // Linearizability of the whole key history.
    let timed: Vec<TimedOp> = writes
        .iter()
        .map(|w| TimedOp {
            op: RegOp::Write(val_of(w)),
            start_us: w.start_us,
            end_us: (w.result == OpResult::Ok).then_some(w.end_us),
        })
        .chain(reads.iter().map(|r| TimedOp {
            op: RegOp::Read(r.read.clone().flatten()),
            start_us: r.start_us,
            end_us: Some(r.end_us),
        }))
        .collect();
    match check_register(&timed) {
        Verdict::Linearizable => f.keys_checked += 1,
        Verdict::NotLinearizable => {
            f.keys_checked += 1;
            f.not_linearizable.push(key.to_string());
        }
        Verdict::NotChecked(_) => f.not_checked += 1,
    }
}

/// Everything one run reports, beyond the checker's findings.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    /// Scenario name.
    pub scenario: String,
    /// The seed (replay with `DKC_FAULT_SEED`).
    pub seed: u64,
    /// Faults injected, in order.
    pub faults: Vec<String>,
    /// Time from the last heal until every owner of every slot held identical data; `None`
    /// when not measured (a node stays down) or never reached.
    pub converge: Option<Duration>,
    /// Whether convergence was required and not reached.
    pub converge_failed: bool,
    /// Per healed fault: time from the heal until every live node saw every other UP with
    /// nothing merging (and a restarted node's own merge done).
    pub recover: Vec<Duration>,
    /// How long the run took.
    pub wall: Duration,
    /// How the clients reach the cluster (the driver, or memcached through dkc-memcached).
    pub clients: String,
    /// Slots anti-entropy found differing and merged, over every live server (ANTIENTROPY).
    pub antientropy_repaired: u64,
}

impl Findings {
    /// The report table of a run.
    pub fn table(&self, facts: &RunFacts) -> String {
        let per_fault: Vec<String> = facts
            .recover
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64()))
            .collect();
        let conv =
            match (facts.converge, facts.converge_failed) {
                (Some(d), _) => {
                    format!(
                "merges done {} s after each heal; digests equal at the end after {:.1} s more",
                if per_fault.is_empty() { "-".to_string() } else { per_fault.join(" / ") },
                d.as_secs_f64()
            )
                }
                (None, true) => "NOT REACHED".into(),
                (None, false) => "n/a (node left down)".into(),
            };
        let rows: Vec<(&str, String)> = vec![
            ("scenario", facts.scenario.clone()),
            ("seed", format!("DKC_FAULT_SEED={}", facts.seed)),
            (
                "faults injected",
                format!("{}: {}", facts.faults.len(), facts.faults.join("; ")),
            ),
            ("clients", facts.clients.clone()),
            ("operations", self.ops.to_string()),
            (
                "acknowledged writes",
                format!(
                    "{} (increments: {})",
                    self.acked_writes,
                    self.acked_incr_via
                        .iter()
                        .map(|(k, v)| format!("{v} by {k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            ("unknown-outcome writes", self.unknown_writes.to_string()),
            ("E_NO_SPACE refusals (full disk)", self.no_space.to_string()),
            ("reads answered", self.reads_ok.to_string()),
            ("lost (must be 0)", self.lost.len().to_string()),
            ("phantom values (must be 0)", self.phantom.len().to_string()),
            (
                "counter violations (must be 0)",
                self.counters.len().to_string(),
            ),
            ("stale reads", self.stale.len().to_string()),
            (
                "keys not linearizable",
                format!(
                    "{} of {} checked ({} too long)",
                    self.not_linearizable.len(),
                    self.keys_checked,
                    self.not_checked
                ),
            ),
            ("time to converge after heal", conv),
            (
                "slots repaired by anti-entropy",
                facts.antientropy_repaired.to_string(),
            ),
            (
                "client errors",
                format!(
                    "{} in {} windows, {:.1} s in all",
                    self.client_errors,
                    self.error_windows,
                    self.error_window.as_secs_f64()
                ),
            ),
            ("run time", format!("{:.1} s", facts.wall.as_secs_f64())),
        ];
        let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let mut out = format!("+-{}-+\n", "-".repeat(w + 50));
        for (k, v) in rows {
            out.push_str(&format!("| {k:<w$} | {v}\n"));
        }
        out.push_str(&format!("+-{}-+", "-".repeat(w + 50)));
        out
    }

    /// The first findings of every kind that must be empty, for a failure message.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, list) in [
            ("lost", &self.lost),
            ("phantom", &self.phantom),
            ("counter", &self.counters),
        ] {
            out.extend(
                list.iter()
                    .take(FINDINGS_SHOWN_MAX)
                    .map(|l| format!("{what}: {l}")),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        client: usize,
        seq: u64,
        kind: OpKind,
        key: &str,
        v: Option<&str>,
        res: OpResult,
        t: (u64, u64),
    ) -> OpRecord {
        OpRecord {
            client,
            seq,
            kind,
            key: key.into(),
            value: if kind == OpKind::Get {
                None
            } else {
                v.map(str::to_string)
            },
            read: (kind == OpKind::Get).then(|| v.map(str::to_string)),
            result: res,
            error: (res != OpResult::Ok).then(|| "e".to_string()),
            start_us: t.0,
            end_us: t.1,
            via: None,
        }
    }

    fn finals(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Result<Option<String>, String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Ok(v.map(str::to_string))))
            .collect()
    }

    #[test]
    fn lost_stale_phantom_and_counters_are_found() {
        use OpKind::*;
        use OpResult::*;
        let ops = vec![
            rec(0, 0, Set, "r0-0", Some("a"), Ok, (0, 10)),
            rec(0, 1, Set, "r0-0", Some("b"), Ok, (20, 30)),
            rec(1, 0, Get, "r0-0", Some("a"), Ok, (40, 50)), // stale
            rec(1, 1, Get, "r0-0", Some("zz"), Ok, (60, 70)), // phantom
            rec(0, 2, Incr, "ctr-0", Some("1"), Ok, (0, 10)),
            rec(1, 2, Incr, "ctr-0", Some("1"), Ok, (5, 15)), // lost update
        ];
        let f = check(
            &ops,
            &finals(&[("r0-0", Some("a")), ("ctr-0", Some("1"))]),
            &["ctr-0".into()],
        );
        assert_eq!(f.lost.len(), 1, "{f:?}");
        assert_eq!(f.stale.len(), 1, "{f:?}");
        assert_eq!(f.phantom.len(), 1, "{f:?}");
        assert!(f.counters.len() >= 2, "{f:?}");
        assert_eq!(f.not_linearizable, vec!["r0-0".to_string()]);
    }

    #[test]
    fn a_clean_history_passes() {
        use OpKind::*;
        use OpResult::*;
        let ops = vec![
            rec(0, 0, Set, "r0-0", Some("a"), Ok, (0, 10)),
            rec(0, 1, Delete, "r0-0", None, Ok, (20, 30)),
            rec(0, 2, Set, "r0-0", Some("c"), Unknown, (40, 50)),
            rec(1, 0, Get, "r0-0", None, Ok, (31, 35)),
            rec(0, 3, Incr, "ctr-0", Some("1"), Ok, (0, 10)),
            rec(1, 1, Incr, "ctr-0", Some("2"), Unknown, (20, 30)),
        ];
        for fin in [None, Some("c")] {
            let f = check(
                &ops,
                &finals(&[("r0-0", fin), ("ctr-0", Some("2"))]),
                &["ctr-0".into()],
            );
            assert!(f.violations().is_empty(), "{f:?}");
            assert!(f.stale.is_empty() && f.not_linearizable.is_empty(), "{f:?}");
            assert_eq!((f.acked_writes, f.unknown_writes), (3, 2));
        }
    }
}
