//! Network faults between hosts of a [`Lab`]: partitions by `iptables -j DROP` inside the
//! hosts' own namespaces (so no rule ever touches the machine's tables), link down/up of a
//! host's veth, and heal. Process faults (kill -9, SIGSTOP/SIGCONT) are on
//! [`super::HostProcess`].
//!
//! DROP (not REJECT) makes a cut link look like a dead wire: established TCP connections
//! stall instead of failing fast, which is what heartbeats must detect.

use super::lab::HOST_IFACE;
use super::{Lab, NetnsError};

/// Which packets a partition drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Nothing passes between the two hosts.
    Both,
    /// Packets from the first host to the second are dropped; the other way still passes
    /// (so TCP handshakes and answers fail, but the second host's packets arrive).
    OneWay,
}

const IPTABLES: &str = "iptables";
/// Seconds iptables waits for the xtables lock.
const IPTABLES_LOCK_WAIT_SECS: &str = "5";

impl Lab {
    fn drop_rule(&self, on: usize, chain: &str, flag: &str, peer: usize) -> Result<(), NetnsError> {
        let peer_addr = self.host(peer).addr().to_string();
        self.host(on).run(
            IPTABLES,
            &[
                "-w",
                IPTABLES_LOCK_WAIT_SECS,
                "-A",
                chain,
                flag,
                &peer_addr,
                "-j",
                "DROP",
            ],
        )?;
        Ok(())
    }

    /// Cuts `a` from `b`: both ways, or only `a` -> `b`. Rules go into both hosts (output
    /// of the sender, input of the receiver), so a cut holds even if one side's rules are
    /// flushed by hand.
    pub fn partition(&self, a: usize, b: usize, dir: Direction) -> Result<(), NetnsError> {
        if a == b {
            return Err(NetnsError::Bad(format!(
                "partition of host {a} from itself"
            )));
        }
        self.drop_rule(a, "OUTPUT", "-d", b)?;
        self.drop_rule(b, "INPUT", "-s", a)?;
        if dir == Direction::Both {
            self.drop_rule(b, "OUTPUT", "-d", a)?;
            self.drop_rule(a, "INPUT", "-s", b)?;
        }
        Ok(())
    }

    /// Cuts host `a` from every other host, both ways.
    pub fn isolate(&self, a: usize) -> Result<(), NetnsError> {
        for b in 0..self.hosts().len() {
            if b != a {
                self.partition(a, b, Direction::Both)?;
            }
        }
        Ok(())
    }

    /// Removes every partition rule on every host.
    pub fn heal_partitions(&self) -> Result<(), NetnsError> {
        for h in self.hosts() {
            for chain in ["INPUT", "OUTPUT"] {
                h.run(IPTABLES, &["-w", IPTABLES_LOCK_WAIT_SECS, "-F", chain])?;
            }
        }
        Ok(())
    }

    /// The DROP rules in force on host `a` (`iptables -S` lines), for logs and checks.
    pub fn rules(&self, a: usize) -> Result<Vec<String>, NetnsError> {
        let out = self
            .host(a)
            .run(IPTABLES, &["-w", IPTABLES_LOCK_WAIT_SECS, "-S"])?;
        Ok(out
            .lines()
            .filter(|l| l.contains("DROP") && l.starts_with("-A"))
            .map(str::to_string)
            .collect())
    }

    /// Takes host `a`'s link down (its interface; the bridge side stays up).
    pub fn link_down(&self, a: usize) -> Result<(), NetnsError> {
        self.host(a)
            .run("ip", &["link", "set", HOST_IFACE, "down"])
            .map(drop)
    }

    /// Brings host `a`'s link up again. IPv4 addresses survive a link down, so nothing else
    /// needs restoring.
    pub fn link_up(&self, a: usize) -> Result<(), NetnsError> {
        self.host(a)
            .run("ip", &["link", "set", HOST_IFACE, "up"])
            .map(drop)
    }

    /// Removes every partition and brings every link up.
    pub fn heal(&self) -> Result<(), NetnsError> {
        self.heal_partitions()?;
        for i in 0..self.hosts().len() {
            self.link_up(i)?;
        }
        Ok(())
    }
}
