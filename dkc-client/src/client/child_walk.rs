//! The walk of `delete_with_children`: breadth first from the root key through the subkey
//! lists, each key deleted by a request of its own (children live on their own owners). Kept
//! apart from the sending so the blocking and async clients walk the same way.

use std::collections::{HashSet, VecDeque};

use super::error::{ClientError, Result};
use super::options::{SUBKEY_DELETE_COUNT_MAX, SUBKEY_DEPTH_MAX};

/// Where a `delete_with_children` stands: the keys still to delete, the keys seen (cycles are
/// cut), and how many were deleted.
pub(crate) struct ChildWalk {
    visited: HashSet<Vec<u8>>,
    queue: VecDeque<(Vec<u8>, usize)>,
    deleted: u64,
}

impl ChildWalk {
    /// A walk from `root`.
    pub fn new(root: &[u8]) -> ChildWalk {
        ChildWalk {
            visited: HashSet::from([root.to_vec()]),
            queue: VecDeque::from([(root.to_vec(), 0)]),
            deleted: 0,
        }
    }

    /// The next key to delete and its depth (0 = the root), or `None` when done.
    pub fn next_key(&mut self) -> Option<(Vec<u8>, usize)> {
        self.queue.pop_front()
    }

    /// Records how deleting a key at `depth` went: its children join the walk (within
    /// [`SUBKEY_DEPTH_MAX`] and [`SUBKEY_DELETE_COUNT_MAX`]). A child already gone is skipped;
    /// any other error, or a missing root, ends the walk with that error.
    pub fn record(&mut self, depth: usize, outcome: Result<Vec<Vec<u8>>>) -> Result<()> {
        let children = match outcome {
            Ok(c) => c,
            Err(ClientError::NotFound { .. }) if depth > 0 => return Ok(()),
            Err(e) => return Err(e),
        };
        self.deleted += 1;
        if depth + 1 > SUBKEY_DEPTH_MAX || self.visited.len() >= SUBKEY_DELETE_COUNT_MAX {
            return Ok(());
        }
        for c in children {
            if self.visited.insert(c.clone()) {
                self.queue.push_back((c, depth + 1));
            }
        }
        Ok(())
    }

    /// Keys deleted so far.
    pub fn deleted(&self) -> u64 {
        self.deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_found() -> ClientError {
        ClientError::NotFound { key: "k".into() }
    }

    #[test]
    fn walks_breadth_first_cuts_cycles_and_skips_gone_children() {
        let mut w = ChildWalk::new(b"root");
        let mut order = Vec::new();
        while let Some((k, depth)) = w.next_key() {
            order.push((String::from_utf8_lossy(&k).into_owned(), depth));
            let outcome = match k.as_slice() {
                b"root" => Ok(vec![b"a".to_vec(), b"b".to_vec()]),
                // "a" names the root again: a cycle.
                b"a" => Ok(vec![b"root".to_vec(), b"c".to_vec()]),
                b"b" => Err(not_found()),
                _ => Ok(vec![]),
            };
            w.record(depth, outcome).unwrap();
        }
        let want = [("root", 0), ("a", 1), ("b", 1), ("c", 2)];
        let got: Vec<(&str, usize)> = order.iter().map(|(k, d)| (k.as_str(), *d)).collect();
        assert_eq!(got, want);
        // "b" was already gone: not counted.
        assert_eq!(w.deleted(), 3);
    }

    #[test]
    fn a_missing_root_is_an_error() {
        let mut w = ChildWalk::new(b"root");
        let (_, depth) = w.next_key().unwrap();
        assert!(matches!(
            w.record(depth, Err(not_found())),
            Err(ClientError::NotFound { .. })
        ));
    }

    #[test]
    fn depth_is_bounded() {
        let mut w = ChildWalk::new(b"k0");
        let mut deepest = 0;
        while let Some((k, depth)) = w.next_key() {
            deepest = deepest.max(depth);
            let n: usize = String::from_utf8_lossy(&k[1..]).parse().unwrap();
            w.record(depth, Ok(vec![format!("k{}", n + 1).into_bytes()]))
                .unwrap();
        }
        assert_eq!(deepest, SUBKEY_DEPTH_MAX);
        assert_eq!(w.deleted(), SUBKEY_DEPTH_MAX as u64 + 1);
    }
}
