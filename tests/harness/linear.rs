//! Linearizability of one key's history against a register model (a value or absent), by a
//! Wing–Gong style search with memoisation (Lowe's refinement): repeatedly pick an operation
//! that no other pending operation must precede, apply it to the model, and backtrack when
//! the model disagrees with what the operation observed.
//!
//! Writes with an unknown outcome may take effect at any moment after they started, or never:
//! they have no end, and the search may leave them out. Failed operations are not given to it.
//! The search is bounded by [`SEARCH_STEPS_MAX`] and by [`OPS_PER_KEY_MAX`] operations per key;
//! beyond either the key is reported as not checked (never as linearizable).

use std::collections::HashSet;

/// Most operations of one key the search takes (one bit each in a `u128`).
pub const OPS_PER_KEY_MAX: usize = 128;
/// Most search steps for one key before it gives up.
pub const SEARCH_STEPS_MAX: u64 = 2_000_000;

/// What an operation does to the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegOp {
    /// Sets the value (`None` = delete).
    Write(Option<String>),
    /// Read that returned this value (`None` = absent).
    Read(Option<String>),
}

/// One operation of a key's history, with its real-time interval (µs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOp {
    /// What it did or saw.
    pub op: RegOp,
    /// When it was called.
    pub start_us: u64,
    /// When it answered; `None` when its outcome is unknown (it may take effect any time
    /// after `start_us`, or never).
    pub end_us: Option<u64>,
}

/// The verdict for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations is consistent with real time and the register model.
    Linearizable,
    /// No such order exists.
    NotLinearizable,
    /// Too many operations or search steps; not decided.
    NotChecked(String),
}

/// Whether `ops` (of one key, starting from an absent register) are linearizable.
pub fn check_register(ops: &[TimedOp]) -> Verdict {
    if ops.len() > OPS_PER_KEY_MAX {
        return Verdict::NotChecked(format!(
            "{} operations, the search takes at most {OPS_PER_KEY_MAX}",
            ops.len()
        ));
    }
    let all: u128 = if ops.len() == 128 {
        u128::MAX
    } else {
        (1u128 << ops.len()) - 1
    };
    let required: u128 = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| o.end_us.is_some())
        .fold(0, |m, (i, _)| m | (1 << i));
    let mut seen: HashSet<(u128, Option<String>)> = HashSet::new();
    let mut steps: u64 = 0;
    // Depth-first search over (done set, register value); a stack instead of recursion so a
    // long history cannot overflow the thread's stack.
    let mut stack: Vec<(u128, Option<String>)> = vec![(0, None)];
    while let Some((done, value)) = stack.pop() {
        if done & required == required {
            return Verdict::Linearizable;
        }
        if !seen.insert((done, value.clone())) {
            continue;
        }
        steps += 1;
        if steps > SEARCH_STEPS_MAX {
            return Verdict::NotChecked(format!("more than {SEARCH_STEPS_MAX} search steps"));
        }
        // An op may go next only if it started before every pending required op ended.
        let min_end = ops
            .iter()
            .enumerate()
            .filter(|(i, _)| done & (1 << i) == 0)
            .filter_map(|(_, o)| o.end_us)
            .min()
            .unwrap_or(u64::MAX);
        for (i, o) in ops.iter().enumerate() {
            if done & (1 << i) != 0 || all & (1 << i) == 0 || o.start_us > min_end {
                continue;
            }
            match &o.op {
                RegOp::Write(v) => stack.push((done | (1 << i), v.clone())),
                RegOp::Read(v) if *v == value => stack.push((done | (1 << i), value.clone())),
                RegOp::Read(_) => {}
            }
        }
    }
    Verdict::NotLinearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: &str, s: u64, e: Option<u64>) -> TimedOp {
        TimedOp {
            op: RegOp::Write((v != "-").then(|| v.to_string())),
            start_us: s,
            end_us: e,
        }
    }

    fn r(v: &str, s: u64, e: u64) -> TimedOp {
        TimedOp {
            op: RegOp::Read((v != "-").then(|| v.to_string())),
            start_us: s,
            end_us: Some(e),
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [
            w("a", 0, Some(10)),
            r("a", 11, 20),
            w("b", 21, Some(30)),
            r("b", 31, 40),
        ];
        assert_eq!(check_register(&h), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_not() {
        let h = [w("a", 0, Some(10)), w("b", 11, Some(20)), r("a", 21, 30)];
        assert_eq!(check_register(&h), Verdict::NotLinearizable);
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        for seen in ["a", "b"] {
            let h = [w("a", 0, Some(10)), w("b", 11, Some(30)), r(seen, 15, 25)];
            assert_eq!(check_register(&h), Verdict::Linearizable, "saw {seen}");
        }
    }

    #[test]
    fn reads_may_not_go_back_in_time() {
        // b is being written; one read sees b, a later read sees a again.
        let h = [
            w("a", 0, Some(10)),
            w("b", 11, Some(100)),
            r("b", 20, 30),
            r("a", 40, 50),
        ];
        assert_eq!(check_register(&h), Verdict::NotLinearizable);
    }

    #[test]
    fn unknown_write_may_apply_or_not_but_a_value_never_written_is_not() {
        let h = [w("a", 0, Some(10)), w("b", 11, None), r("a", 50, 60)];
        assert_eq!(check_register(&h), Verdict::Linearizable);
        let h = [w("a", 0, Some(10)), w("b", 11, None), r("b", 50, 60)];
        assert_eq!(check_register(&h), Verdict::Linearizable);
        let h = [w("a", 0, Some(10)), r("z", 50, 60)];
        assert_eq!(check_register(&h), Verdict::NotLinearizable);
    }

    #[test]
    fn delete_and_absent_reads() {
        let h = [
            r("-", 0, 5),
            w("a", 6, Some(10)),
            w("-", 11, Some(20)),
            r("-", 21, 30),
        ];
        assert_eq!(check_register(&h), Verdict::Linearizable);
        let h = [w("a", 0, Some(10)), r("-", 21, 30)];
        assert_eq!(check_register(&h), Verdict::NotLinearizable);
    }

    #[test]
    fn too_long_histories_are_not_checked() {
        let h: Vec<TimedOp> = (0..200).map(|i| w("a", i, Some(i))).collect();
        assert!(matches!(check_register(&h), Verdict::NotChecked(_)));
    }
}
