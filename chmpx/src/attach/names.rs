//! Names of the POSIX objects of one chmpx (cluster + ctlport) and of its attachments.
//!
//! ```text
//! /dkc.<cluster>.<ctlport>.accept           accept queue (chmpx creates, processes write hellos)
//! /dkc.<cluster>.<ctlport>.chmpx            small segment: the live chmpx's pid and generation
//! /dkc.<cluster>.<ctlport>.p<pid>.<n>       attachment segment (two rings; process creates)
//! /dkc.<cluster>.<ctlport>.p<pid>.<n>.up    doorbell process -> chmpx (process creates)
//! /dkc.<cluster>.<ctlport>.p<pid>.<n>.dn    doorbell chmpx -> process (process creates)
//! ```
//! Deriving every attachment name from (pid, n) lets chmpx open only objects it can name
//! itself (nothing in a hello is a path) and clean up after a dead pid even without
//! /dev/mqueue mounted: the queue names follow from the segment names in /dev/shm.

use super::error::AttachError;

/// Longest cluster name accepted, bytes (keeps every object name far below NAME_MAX).
pub const CLUSTER_NAME_LEN_MAX: usize = 64;

/// Checks a cluster name: 1..=64 bytes of ASCII letters, digits, '_', '-', '.'.
pub fn validate_cluster(cluster: &str) -> Result<(), AttachError> {
    let bad = |reason: &'static str| {
        Err(AttachError::InvalidCluster {
            cluster: cluster.to_string(),
            reason,
        })
    };
    if cluster.is_empty() {
        return bad("empty");
    }
    if cluster.len() > CLUSTER_NAME_LEN_MAX {
        return bad("longer than 64 bytes");
    }
    if !cluster
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return bad("only ASCII letters, digits, '_', '-' and '.' are allowed");
    }
    Ok(())
}

/// The names of one chmpx instance's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChmpxNames {
    prefix: String,
}

/// The names of one attachment's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentNames {
    pub segment: String,
    pub up_queue: String,
    pub down_queue: String,
}

impl ChmpxNames {
    /// Names for `cluster` and `ctlport`; refuses a bad cluster name.
    pub fn new(cluster: &str, ctlport: u16) -> Result<Self, AttachError> {
        validate_cluster(cluster)?;
        Ok(ChmpxNames {
            prefix: format!("/dkc.{cluster}.{ctlport}."),
        })
    }

    /// The accept queue.
    pub fn accept_queue(&self) -> String {
        format!("{}accept", self.prefix)
    }

    /// The segment holding the live chmpx's identity.
    pub fn chmpx_segment(&self) -> String {
        format!("{}chmpx", self.prefix)
    }

    /// The objects of attachment `counter` of process `pid`.
    pub fn attachment(&self, pid: u32, counter: u64) -> AttachmentNames {
        let segment = format!("{}p{pid}.{counter}", self.prefix);
        AttachmentNames {
            up_queue: format!("{segment}.up"),
            down_queue: format!("{segment}.dn"),
            segment,
        }
    }

    /// Parses a name as seen in /dev/shm or /dev/mqueue (without the leading slash) back to
    /// (pid, counter) when it is one of this chmpx's attachment objects.
    pub fn parse_attachment(&self, file_name: &str) -> Option<(u32, u64)> {
        let rest = file_name
            .strip_prefix(&self.prefix[1..])?
            .strip_prefix('p')?;
        let rest = rest
            .strip_suffix(".up")
            .or_else(|| rest.strip_suffix(".dn"))
            .unwrap_or(rest);
        let (pid, counter) = rest.split_once('.')?;
        Some((pid.parse().ok()?, counter.parse().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::validate_object_name;

    #[test]
    fn names_are_valid_posix_names_and_parse_back() {
        let long = "c".repeat(CLUSTER_NAME_LEN_MAX);
        let n = ChmpxNames::new(&long, 65535).unwrap();
        let a = n.attachment(u32::MAX, u64::MAX);
        for name in [
            n.accept_queue(),
            n.chmpx_segment(),
            a.segment.clone(),
            a.up_queue.clone(),
            a.down_queue.clone(),
        ] {
            validate_object_name(&name).unwrap();
        }
        let n = ChmpxNames::new("test.x", 8021).unwrap();
        let a = n.attachment(42, 7);
        assert_eq!(a.segment, "/dkc.test.x.8021.p42.7");
        assert_eq!(n.parse_attachment(&a.segment[1..]), Some((42, 7)));
        assert_eq!(n.parse_attachment(&a.up_queue[1..]), Some((42, 7)));
        assert_eq!(n.parse_attachment("dkc.test.x.8021.accept"), None);
        assert_eq!(n.parse_attachment("dkc.test.x.8022.p42.7"), None);
        assert_eq!(n.parse_attachment("dkc.test.x.8021.pxx.7"), None);
    }

    #[test]
    fn bad_cluster_names_are_refused() {
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            assert!(ChmpxNames::new(bad, 1).is_err(), "{bad:?}");
        }
    }
}
