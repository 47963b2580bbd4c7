//! The run file `DIR/dkc-local.run`: who is running for a data directory, so that
//! `dkc-local status` and `dkc-local down` (and tests) find the processes of a run.
//!
//! Plain text, one fact per line, `WORD VALUE...`:
//! ```text
//! supervisor 4242
//! group DKCLOCAL
//! slave_ctlport 8031
//! memcached 127.0.0.1:11211
//! proc 4250 running chmpx 8021
//! proc 4251 exited dkc-server 8021
//! ```

use std::path::{Path, PathBuf};

/// File name inside the data directory.
pub const RUN_FILE: &str = "dkc-local.run";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunProc {
    pub pid: u32,
    pub running: bool,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFile {
    pub supervisor: u32,
    pub group: String,
    pub slave_ctlport: u16,
    pub memcached: String,
    pub procs: Vec<RunProc>,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(RUN_FILE)
}

impl RunFile {
    pub fn render(&self) -> String {
        let mut s = format!(
            "supervisor {}\ngroup {}\nslave_ctlport {}\nmemcached {}\n",
            self.supervisor, self.group, self.slave_ctlport, self.memcached
        );
        for p in &self.procs {
            let state = if p.running { "running" } else { "exited" };
            s.push_str(&format!("proc {} {state} {}\n", p.pid, p.name));
        }
        s
    }

    /// Parses a run file; unknown or malformed lines are skipped (the file is advisory).
    pub fn parse(text: &str) -> RunFile {
        let mut rf = RunFile::default();
        for line in text.lines() {
            let mut words = line.splitn(2, ' ');
            let (Some(word), Some(rest)) = (words.next(), words.next()) else {
                continue;
            };
            match word {
                "supervisor" => rf.supervisor = rest.trim().parse().unwrap_or(0),
                "group" => rf.group = rest.trim().to_string(),
                "slave_ctlport" => rf.slave_ctlport = rest.trim().parse().unwrap_or(0),
                "memcached" => rf.memcached = rest.trim().to_string(),
                "proc" => {
                    let mut f = rest.splitn(3, ' ');
                    if let (Some(pid), Some(state), Some(name)) = (f.next(), f.next(), f.next()) {
                        if let Ok(pid) = pid.parse() {
                            rf.procs.push(RunProc {
                                pid,
                                running: state == "running",
                                name: name.to_string(),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        rf
    }

    pub fn read(dir: &Path) -> Option<RunFile> {
        std::fs::read_to_string(path(dir))
            .ok()
            .map(|t| RunFile::parse(&t))
    }

    /// Writes through a temporary file and a rename, so readers never see half a file.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{RUN_FILE}.tmp"));
        std::fs::write(&tmp, self.render())?;
        std::fs::rename(tmp, path(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let rf = RunFile {
            supervisor: 7,
            group: "G".into(),
            slave_ctlport: 8031,
            memcached: "127.0.0.1:1".into(),
            procs: vec![
                RunProc {
                    pid: 9,
                    running: true,
                    name: "chmpx 8021".into(),
                },
                RunProc {
                    pid: 10,
                    running: false,
                    name: "dkc-memcached".into(),
                },
            ],
        };
        assert_eq!(RunFile::parse(&rf.render()), rf);
        assert_eq!(RunFile::parse("garbage\nproc x y\n"), RunFile::default());
    }
}
