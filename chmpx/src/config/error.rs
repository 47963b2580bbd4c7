//! [`ConfigError`]: every way a config file can be refused.
//!
//! Each error names the file and line, the section and key, the value found
//! and what was expected, so an operator can fix the file without reading code.

use std::fmt;
use std::path::PathBuf;

/// Where in the file an error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The config file (as given to `load` / `parse_str`).
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// Section name, upper case, e.g. "GLOBAL".
    pub section: String,
    /// Key, upper case, when the error is about one key.
    pub key: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: [{}]",
            self.file.display(),
            self.line,
            self.section
        )?;
        if let Some(key) = &self.key {
            write!(f, " {key}")?;
        }
        Ok(())
    }
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: cannot read the config file: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The INI syntax is broken (reported by the INI reader).
    #[error("{}:{line}: INI syntax error: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        message: String,
    },
    /// A key/value line before any `[SECTION]` header.
    #[error("{}:{line}: {key}: key outside any section: put it under [GLOBAL], [SVRNODE], [SLVNODE] or [K2HDKC]", file.display())]
    KeyOutsideSection {
        file: PathBuf,
        line: usize,
        key: String,
    },
    /// A section name we do not know.
    #[error("{at}: unknown section: expected [GLOBAL], [SVRNODE], [SLVNODE] or [K2HDKC]")]
    UnknownSection { at: Location },
    /// A section that must appear once appears again.
    #[error("{at}: section appears again (first at line {first_line}): expected exactly one")]
    DuplicateSection { at: Location, first_line: usize },
    /// A required section is absent.
    #[error("{at}: no [{section}] section in the file: {expected}")]
    MissingSection {
        at: Location,
        section: String,
        expected: String,
    },
    /// A key this section does not have.
    #[error("{at}: unknown key{hint}")]
    UnknownKey { at: Location, hint: String },
    /// The same key twice in one section.
    #[error("{at}: key given again (first at line {first_line}): give each key once per section")]
    DuplicateKey { at: Location, first_line: usize },
    /// A required key is absent (the line is the section header's).
    #[error("{at}: missing: expected {expected}")]
    MissingKey { at: Location, expected: String },
    /// A value that does not parse or is out of range.
    #[error("{at} = \"{value}\": expected {expected}")]
    BadValue {
        at: Location,
        value: String,
        expected: String,
    },
    /// A value that parses but conflicts with another setting.
    #[error("{at} = \"{value}\": {problem}")]
    Conflict {
        at: Location,
        value: String,
        problem: String,
    },
    /// No entry of the file describes this process.
    #[error("{}: no [SVRNODE] or [SLVNODE] entry matches this process ({wanted}); local names/addresses are {local}: check NAME and CTLPORT, or pass --ctlport", file.display())]
    NoSelfNode {
        file: PathBuf,
        wanted: String,
        local: String,
    },
    /// Several entries could describe this process.
    #[error("{}: several entries match this process ({candidates}): pass --ctlport (or set SELFCTLPORT / MODE) to say which one", file.display())]
    AmbiguousSelfNode { file: PathBuf, candidates: String },
}

impl ConfigError {
    /// The line the error points at, when it points at one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Syntax { line, .. } | ConfigError::KeyOutsideSection { line, .. } => {
                Some(*line)
            }
            ConfigError::UnknownSection { at }
            | ConfigError::DuplicateSection { at, .. }
            | ConfigError::MissingSection { at, .. }
            | ConfigError::UnknownKey { at, .. }
            | ConfigError::DuplicateKey { at, .. }
            | ConfigError::MissingKey { at, .. }
            | ConfigError::BadValue { at, .. }
            | ConfigError::Conflict { at, .. } => Some(at.line),
            ConfigError::Io { .. }
            | ConfigError::NoSelfNode { .. }
            | ConfigError::AmbiguousSelfNode { .. } => None,
        }
    }
}
