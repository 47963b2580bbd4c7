//! The ring state a server node keeps on disk, so that membership outlives the processes: a
//! node taken out with SERVICEOUT stays out when every chmpx is restarted at once.
//!
//! One file per server node, `DATADIR/<GROUP>-<CTLPORT>/ring.json`, rewritten whole (a temporary
//! file, fsync, rename, fsync of the directory) every time the node's ring state changes. It is
//! JSON so an operator can read it; nothing but chmpx writes it.
//!
//! # Rules at start ([`check_against_config`])
//! - No file: the node starts from the config (every `[SVRNODE]` SERVICE IN) at version 0, the
//!   version every saved state beats, and adopts its peers' state as soon as it hears one.
//!   Once every other server has reported version 0 too (a new cluster), it saves the
//!   config's state as version [`SETTLED_INITIAL_VERSION`] (see [`super::router`]).
//! - A file whose members (current or pending) are all servers of the config: it is the node's
//!   state. Servers of the config it does not name are SERVICE OUT until SERVICEIN.
//! - A file naming a SERVICE IN (or joining) node the config does not list, a file of another
//!   GROUP, a member list that is empty or not as chmpx writes it, or a file that cannot be
//!   read: the node refuses to start and says what to do. Going on would put that node's slots
//!   out of reach.
//!
//! Pure file handling: the router decides when to load and save.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::wire::RingState;
use crate::placement::NodeId;

/// The file name inside the node's data directory.
pub const RING_FILE_NAME: &str = "ring.json";

/// Format number written in every file; a file with another one is refused.
pub const RING_FILE_FORMAT: u32 = 1;

/// The version of the config's own state once saved: above the version 0 of a node that has no
/// file yet, below every version a ring command makes ([`super::ring::apply`]).
pub const SETTLED_INITIAL_VERSION: u64 = 1;

/// Largest ring file read (a member list of thousands of nodes is far below it).
pub const RING_FILE_SIZE_MAX: u64 = 16 * 1024 * 1024;

/// What is written.
#[derive(Debug, Serialize, Deserialize)]
struct RingFile {
    format: u32,
    group: String,
    ring: RingState,
}

/// Why a ring file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RingFileError {
    /// Reading failed.
    #[error("cannot read the ring state file {path}: {source}; check its permissions, or move it away to start from the config's servers")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The content is not a ring state.
    #[error("{path} is not a ring state file of this chmpx ({reason}); move it away to start from the config's servers (nodes taken out with SERVICEOUT then come back SERVICE IN)")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file belongs to another cluster.
    #[error(
        "{path} holds the ring state of GROUP {found}, not of {want}; check DATADIR and GROUP"
    )]
    Group {
        /// The file.
        path: PathBuf,
        /// Its GROUP.
        found: String,
        /// The config's GROUP.
        want: String,
    },
    /// The saved state has a member the config no longer lists.
    #[error("{path} has server node {node} {how}, but the config does not list it; put its [SVRNODE] entry back and take it out with SERVICEOUT (its slots move to the others) before removing it, or move the file away to start from the config's servers (its slots are then out of reach)")]
    UnknownMember {
        /// The file.
        path: PathBuf,
        /// The node.
        node: String,
        /// "SERVICE IN" or "joining in a pending change".
        how: &'static str,
    },
}

/// The ring file of a node whose data directory is `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(RING_FILE_NAME)
}

/// Reads the state saved at `path` for `group`; `Ok(None)` when there is no file.
pub fn load(path: &Path, group: &str) -> Result<Option<RingState>, RingFileError> {
    let read_err = |source| RingFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let parse_err = |reason: String| RingFileError::Parse {
        path: path.to_path_buf(),
        reason,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    if meta.len() > RING_FILE_SIZE_MAX {
        return Err(parse_err(format!(
            "{} bytes, more than the {RING_FILE_SIZE_MAX} a ring state takes",
            meta.len()
        )));
    }
    let text = std::fs::read(path).map_err(read_err)?;
    let file: RingFile = serde_json::from_slice(&text).map_err(|e| parse_err(e.to_string()))?;
    if file.format != RING_FILE_FORMAT {
        return Err(parse_err(format!(
            "format {}, this chmpx reads format {RING_FILE_FORMAT}",
            file.format
        )));
    }
    if file.group != group {
        return Err(RingFileError::Group {
            path: path.to_path_buf(),
            found: file.group,
            want: group.to_string(),
        });
    }
    Ok(Some(file.ring))
}

/// Checks a loaded state against the config's server nodes (see the module doc).
pub fn check_against_config(
    path: &Path,
    ring: &RingState,
    servers: &HashSet<NodeId>,
) -> Result<(), RingFileError> {
    // What chmpx writes: at least one member, sorted, no duplicates (a file edited by hand
    // may not be; its placement could then differ from the other nodes').
    let well_formed = |m: &[NodeId]| !m.is_empty() && m.windows(2).all(|w| w[0] < w[1]);
    let pending_ok = ring
        .membership
        .pending
        .as_ref()
        .is_none_or(|(_, p, _)| well_formed(p));
    if !well_formed(&ring.membership.members) || !pending_ok {
        return Err(RingFileError::Parse {
            path: path.to_path_buf(),
            reason: "a member list is empty, unsorted or has a node twice".into(),
        });
    }
    let unknown = |node: &NodeId, how| RingFileError::UnknownMember {
        path: path.to_path_buf(),
        node: node.to_string(),
        how,
    };
    if let Some(n) = ring
        .membership
        .members
        .iter()
        .find(|n| !servers.contains(n))
    {
        return Err(unknown(n, "SERVICE IN"));
    }
    if let Some((_, pending, _)) = &ring.membership.pending {
        if let Some(n) = pending.iter().find(|n| !servers.contains(n)) {
            return Err(unknown(n, "joining in a pending change"));
        }
    }
    Ok(())
}

/// Saves `ring` at `path` so that a crash at any point leaves either the old file or the new
/// one whole. Creates the directory if needed.
pub fn save(path: &Path, group: &str, ring: &RingState) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file = RingFile {
        format: RING_FILE_FORMAT,
        group: group.to_string(),
        ring: ring.clone(),
    };
    let mut text = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    text.push(b'\n');
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::ring::initial_ring;

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|s| NodeId::new(s)).collect()
    }

    #[test]
    fn saved_state_loads_back_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path_in(&dir.path().join("G-8021"));
        assert!(load(&path, "G").expect("no file").is_none());
        let mut ring = initial_ring(ids(&["a:1", "b:1"]));
        ring.version = 7;
        ring.merge_suspended = true;
        save(&path, "G", &ring).expect("save");
        assert_eq!(load(&path, "G").expect("load"), Some(ring));
        assert!(!path.with_extension("json.tmp").exists());
    }

    #[test]
    fn bad_files_are_refused_with_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path_in(dir.path());
        save(&path, "G", &initial_ring(ids(&["a:1"]))).expect("save");
        let other = load(&path, "H").expect_err("another group");
        assert!(other.to_string().contains("GROUP G, not of H"), "{other}");
        std::fs::write(&path, b"{\"format\": 1, \"grou").expect("write");
        let torn = load(&path, "G").expect_err("torn");
        assert!(torn.to_string().contains("move it away"), "{torn}");
        std::fs::write(&path, b"{\"format\": 2, \"group\": \"G\", \"ring\": null}").expect("write");
        assert!(load(&path, "G").is_err());
    }

    #[test]
    fn a_member_the_config_lost_is_refused_and_new_servers_are_fine() {
        let path = Path::new("/x/ring.json");
        let ring = initial_ring(ids(&["a:1", "b:1"]));
        let grown: HashSet<NodeId> = ids(&["a:1", "b:1", "c:1"]).into_iter().collect();
        check_against_config(path, &ring, &grown).expect("a config that gained a server");
        let shrunk: HashSet<NodeId> = ids(&["a:1"]).into_iter().collect();
        let e = check_against_config(path, &ring, &shrunk).expect_err("b:1 is gone");
        assert!(e.to_string().contains("b:1 SERVICE IN"), "{e}");
        assert!(e.to_string().contains("SERVICEOUT"), "{e}");
        let mut edited = ring.clone();
        edited.membership.members.reverse();
        assert!(check_against_config(path, &edited, &grown).is_err());
        edited.membership.members.clear();
        let e = check_against_config(path, &edited, &grown).expect_err("no member");
        assert!(e.to_string().contains("move it away"), "{e}");
    }
}
