//! Control-port commands: parsing a line into a [`Command`]. Pure: no I/O.
//!
//! The commands are CHMPX's (`VERSION`, `SELFSTATUS`, `ALLSTATUS`, `SERVICEIN`,
//! `SERVICEOUT [host:ctlport]`, `MERGE`, `ABORTMERGE`, `COMPMERGE`, `SUSPENDMERGE`,
//! `NOSUSPENDMERGE`) plus `STATUSJSON`, the machine-readable status the tools read.
//! Words are case-insensitive; arguments are separated by blanks.

use crate::placement::NodeId;

/// One control command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The daemon's version.
    Version,
    /// This node's status, as text.
    SelfStatus,
    /// Every node as this node sees it, as text.
    AllStatus,
    /// Every node as this node sees it, as one line of JSON ([`super::status::StatusReport`]).
    StatusJson,
    /// Put a node (default: this one) into service.
    ServiceIn(Option<NodeId>),
    /// Take a node (default: this one) out of service; may name a DOWN node.
    ServiceOut(Option<NodeId>),
    /// Start merging the pending change.
    Merge,
    /// Abort the pending change and its merge.
    AbortMerge,
    /// Complete the pending change (every node must be done merging).
    CompMerge,
    /// Ignore AUTOMERGE on every node.
    SuspendMerge,
    /// Honour AUTOMERGE again.
    NoSuspendMerge,
}

/// Why a control line was not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The line was empty.
    #[error("empty command; try VERSION, SELFSTATUS, ALLSTATUS, STATUSJSON, SERVICEIN, SERVICEOUT, MERGE, ABORTMERGE, COMPMERGE, SUSPENDMERGE, NOSUSPENDMERGE")]
    Empty,
    /// The first word is not a command.
    #[error("unknown command {0:?}; try VERSION, SELFSTATUS, ALLSTATUS, STATUSJSON, SERVICEIN, SERVICEOUT, MERGE, ABORTMERGE, COMPMERGE, SUSPENDMERGE, NOSUSPENDMERGE")]
    Unknown(String),
    /// The command got arguments it does not take.
    #[error("{command} takes {expected}; got {got:?}")]
    BadArguments {
        /// The command word.
        command: &'static str,
        /// What it takes.
        expected: &'static str,
        /// What came after it.
        got: String,
    },
    /// The line is not UTF-8 text.
    #[error("the command line is not UTF-8 text")]
    NotText,
}

impl Command {
    /// Parses one line (without its line end).
    pub fn parse_bytes(line: &[u8]) -> Result<Command, CommandError> {
        let text = std::str::from_utf8(line).map_err(|_| CommandError::NotText)?;
        Command::parse(text)
    }

    /// Parses one line of text (without its line end).
    pub fn parse(line: &str) -> Result<Command, CommandError> {
        let mut words = line.split_whitespace();
        let word = words
            .next()
            .ok_or(CommandError::Empty)?
            .to_ascii_uppercase();
        let args: Vec<&str> = words.collect();
        let no_args = |command: &'static str, c: Command| {
            if args.is_empty() {
                Ok(c)
            } else {
                Err(CommandError::BadArguments {
                    command,
                    expected: "no arguments",
                    got: args.join(" "),
                })
            }
        };
        let node_arg = |command: &'static str| -> Result<Option<NodeId>, CommandError> {
            match args.as_slice() {
                [] => Ok(None),
                [one] if is_host_port(one) => Ok(Some(NodeId::new(one))),
                _ => Err(CommandError::BadArguments {
                    command,
                    expected: "an optional host:ctlport",
                    got: args.join(" "),
                }),
            }
        };
        match word.as_str() {
            "VERSION" => no_args("VERSION", Command::Version),
            "SELFSTATUS" => no_args("SELFSTATUS", Command::SelfStatus),
            "ALLSTATUS" => no_args("ALLSTATUS", Command::AllStatus),
            "STATUSJSON" => no_args("STATUSJSON", Command::StatusJson),
            "SERVICEIN" => Ok(Command::ServiceIn(node_arg("SERVICEIN")?)),
            "SERVICEOUT" => Ok(Command::ServiceOut(node_arg("SERVICEOUT")?)),
            "MERGE" => no_args("MERGE", Command::Merge),
            "ABORTMERGE" => no_args("ABORTMERGE", Command::AbortMerge),
            "COMPMERGE" => no_args("COMPMERGE", Command::CompMerge),
            "SUSPENDMERGE" => no_args("SUSPENDMERGE", Command::SuspendMerge),
            "NOSUSPENDMERGE" => no_args("NOSUSPENDMERGE", Command::NoSuspendMerge),
            _ => Err(CommandError::Unknown(truncate(&word, 64))),
        }
    }

    /// Whether the command changes the ring (and so must go through the coordinator).
    pub fn is_ring_command(&self) -> bool {
        !matches!(
            self,
            Command::Version | Command::SelfStatus | Command::AllStatus | Command::StatusJson
        )
    }
}

fn is_host_port(text: &str) -> bool {
    match text.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command_case_insensitively() {
        assert_eq!(Command::parse("version"), Ok(Command::Version));
        assert_eq!(Command::parse("  SelfStatus "), Ok(Command::SelfStatus));
        assert_eq!(Command::parse("ALLSTATUS"), Ok(Command::AllStatus));
        assert_eq!(Command::parse("statusjson"), Ok(Command::StatusJson));
        assert_eq!(Command::parse("SERVICEIN"), Ok(Command::ServiceIn(None)));
        assert_eq!(
            Command::parse("SERVICEOUT 127.0.0.1:8021"),
            Ok(Command::ServiceOut(Some(NodeId::new("127.0.0.1:8021"))))
        );
        assert_eq!(Command::parse("merge"), Ok(Command::Merge));
        assert_eq!(Command::parse("ABORTMERGE"), Ok(Command::AbortMerge));
        assert_eq!(Command::parse("COMPMERGE"), Ok(Command::CompMerge));
        assert_eq!(Command::parse("SUSPENDMERGE"), Ok(Command::SuspendMerge));
        assert_eq!(
            Command::parse("NOSUSPENDMERGE"),
            Ok(Command::NoSuspendMerge)
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(Command::parse(""), Err(CommandError::Empty));
        assert!(matches!(
            Command::parse("HELLO world"),
            Err(CommandError::Unknown(_))
        ));
        assert!(matches!(
            Command::parse("VERSION 2"),
            Err(CommandError::BadArguments { .. })
        ));
        assert!(matches!(
            Command::parse("SERVICEOUT nohost"),
            Err(CommandError::BadArguments { .. })
        ));
        assert!(matches!(
            Command::parse("SERVICEOUT a:1 b:2"),
            Err(CommandError::BadArguments { .. })
        ));
        assert_eq!(
            Command::parse_bytes(&[0xff, 0xfe]),
            Err(CommandError::NotText)
        );
        assert!(Command::parse("MERGE").unwrap().is_ring_command());
        assert!(!Command::parse("VERSION").unwrap().is_ring_command());
    }
}
