//! [`SectionReader`]: typed access to one raw section, with errors that name
//! file, line, key, value and what was expected.
//!
//! Creating a reader checks the section's keys against the registry
//! ([`super::keys`]): unknown and repeated keys are refused up front, so the
//! typed builders only deal with keys that exist.

use std::path::{Path, PathBuf};

use super::error::{ConfigError, Location};
use super::ini_source::{RawEntry, RawSection};
use super::keys::{is_known, unknown_key_hint, SectionKind};

pub(crate) struct SectionReader<'a> {
    file: &'a Path,
    kind: SectionKind,
    section: &'a RawSection,
}

impl<'a> SectionReader<'a> {
    pub fn new(
        file: &'a Path,
        kind: SectionKind,
        section: &'a RawSection,
    ) -> Result<Self, ConfigError> {
        let reader = SectionReader {
            file,
            kind,
            section,
        };
        for (i, entry) in section.entries.iter().enumerate() {
            if !is_known(kind, &entry.key) {
                return Err(ConfigError::UnknownKey {
                    at: reader.at_entry(entry),
                    hint: unknown_key_hint(kind, &entry.key),
                });
            }
            if let Some(first) = section.entries[..i].iter().find(|e| e.key == entry.key) {
                return Err(ConfigError::DuplicateKey {
                    at: reader.at_entry(entry),
                    first_line: first.line,
                });
            }
        }
        Ok(reader)
    }

    /// Line of the section header.
    pub fn line(&self) -> usize {
        self.section.line
    }

    fn entry(&self, key: &str) -> Option<&'a RawEntry> {
        self.section.entries.iter().find(|e| e.key == key)
    }

    fn at_entry(&self, entry: &RawEntry) -> Location {
        Location {
            file: self.file.to_path_buf(),
            line: entry.line,
            section: self.kind.name().to_string(),
            key: Some(entry.key.clone()),
        }
    }

    /// Location of `key`: its line if present, else the section header's.
    pub fn at(&self, key: &str) -> Location {
        match self.entry(key) {
            Some(e) => self.at_entry(e),
            None => Location {
                file: self.file.to_path_buf(),
                line: self.section.line,
                section: self.kind.name().to_string(),
                key: Some(key.to_string()),
            },
        }
    }

    /// The value of `key`, `None` when absent, empty or `NULL` (CHMPX's null string).
    pub fn text(&self, key: &str) -> Option<&'a str> {
        self.entry(key)
            .map(|e| e.value.as_str())
            .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("NULL"))
    }

    pub fn bad(&self, key: &str, expected: impl Into<String>) -> ConfigError {
        ConfigError::BadValue {
            at: self.at(key),
            value: self.entry(key).map(|e| e.value.clone()).unwrap_or_default(),
            expected: expected.into(),
        }
    }

    pub fn conflict(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Conflict {
            at: self.at(key),
            value: self.entry(key).map(|e| e.value.clone()).unwrap_or_default(),
            problem: problem.into(),
        }
    }

    pub fn missing(&self, key: &str, expected: impl Into<String>) -> ConfigError {
        ConfigError::MissingKey {
            at: self.at(key),
            expected: expected.into(),
        }
    }

    pub fn opt_u64(
        &self,
        key: &str,
        min: u64,
        max: u64,
        unit: &str,
    ) -> Result<Option<u64>, ConfigError> {
        let Some(text) = self.text(key) else {
            return Ok(None);
        };
        match text.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(self.bad(key, format!("an integer{unit} in {min}..={max}"))),
        }
    }

    pub fn u64_or(
        &self,
        key: &str,
        min: u64,
        max: u64,
        unit: &str,
        default: u64,
    ) -> Result<u64, ConfigError> {
        Ok(self.opt_u64(key, min, max, unit)?.unwrap_or(default))
    }

    pub fn u32_or(&self, key: &str, min: u32, max: u32, default: u32) -> Result<u32, ConfigError> {
        // The range keeps the value inside u32.
        Ok(self.u64_or(key, min.into(), max.into(), "", default.into())? as u32)
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        let Some(text) = self.text(key) else {
            return Ok(None);
        };
        match text.to_ascii_lowercase().as_str() {
            "yes" | "on" | "true" => Ok(Some(true)),
            "no" | "off" | "false" => Ok(Some(false)),
            _ => Err(self.bad(key, "a boolean: yes/no, on/off or true/false")),
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self.opt_bool(key)?.unwrap_or(default))
    }

    pub fn opt_port(&self, key: &str) -> Result<Option<u16>, ConfigError> {
        let Some(text) = self.text(key) else {
            return Ok(None);
        };
        match text.parse::<u16>() {
            Ok(p) if p > 0 => Ok(Some(p)),
            _ => Err(self.bad(key, "a port number in 1..=65535")),
        }
    }

    /// One of `choices` (matched case-insensitively); when absent, the choice
    /// named `default` (a documented default constant; the first choice if
    /// the constant is not in the table, which a unit test rules out).
    pub fn choice<T: Copy>(
        &self,
        key: &str,
        choices: &[(&str, T)],
        default: &str,
    ) -> Result<T, ConfigError> {
        let Some(text) = self.text(key) else {
            let found = choices
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(default));
            return found
                .or(choices.first())
                .map(|(_, v)| *v)
                .ok_or_else(|| self.bad(key, "a value"));
        };
        choices
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.bad(key, format!("one of {}", names.join(", ")))
            })
    }

    /// A byte size: an integer with an optional K, M or G suffix (powers of 1024).
    pub fn size_or(&self, key: &str, min: u64, max: u64, default: u64) -> Result<u64, ConfigError> {
        let Some(text) = self.text(key) else {
            return Ok(default);
        };
        let upper = text.to_ascii_uppercase();
        let trimmed = upper.trim_end_matches("IB").trim_end_matches('B');
        let (digits, scale) = match trimmed.chars().last() {
            Some('K') => (&trimmed[..trimmed.len() - 1], 1u64 << 10),
            Some('M') => (&trimmed[..trimmed.len() - 1], 1 << 20),
            Some('G') => (&trimmed[..trimmed.len() - 1], 1 << 30),
            _ => (trimmed, 1),
        };
        match digits
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(|v| v.checked_mul(scale))
        {
            Some(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(self.bad(
                key,
                format!("a size in bytes (K, M, G suffixes allowed) in {min}..={max}"),
            )),
        }
    }

    /// A path; a relative one is taken relative to `base`.
    pub fn opt_path(&self, key: &str, base: &Path) -> Option<PathBuf> {
        self.text(key).map(|t| base.join(t))
    }

    /// A comma-separated list of `host:port`, at most `max` long.
    pub fn endpoints(&self, key: &str, max: usize) -> Result<Vec<String>, ConfigError> {
        let Some(text) = self.text(key) else {
            return Ok(Vec::new());
        };
        let items: Vec<String> = text.split(',').map(|s| s.trim().to_string()).collect();
        let valid = |item: &String| {
            item.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            })
        };
        if items.len() > max || !items.iter().all(valid) {
            return Err(self.bad(
                key,
                format!("up to {max} host:port entries separated by commas"),
            ));
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ini_source::read;
    use super::*;

    fn with<R>(text: &str, f: impl FnOnce(SectionReader<'_>) -> R) -> R {
        let doc = read(text, Path::new("t.ini")).unwrap();
        let reader =
            SectionReader::new(Path::new("t.ini"), SectionKind::Global, &doc.sections[0]).unwrap();
        f(reader)
    }

    #[test]
    fn booleans_chmpx_style() {
        with(
            "[GLOBAL]\nSSL = Yes\nMQACK = off\nAUTOMERGE = TRUE\nDOMERGE = maybe\n",
            |r| {
                assert_eq!(r.opt_bool("SSL").unwrap(), Some(true));
                assert_eq!(r.opt_bool("MQACK").unwrap(), Some(false));
                assert_eq!(r.opt_bool("AUTOMERGE").unwrap(), Some(true));
                let e = r.opt_bool("DOMERGE").unwrap_err().to_string();
                assert_eq!(e, "t.ini:5: [GLOBAL] DOMERGE = \"maybe\": expected a boolean: yes/no, on/off or true/false");
            },
        );
    }

    #[test]
    fn sizes_and_ranges() {
        with(
            "[GLOBAL]\nMAXPAYLOAD = 2M\nSHMRINGSIZE = 8MiB\nREPLICA = two\nCAPATH = NULL\n",
            |r| {
                assert_eq!(r.size_or("MAXPAYLOAD", 1, u64::MAX, 0).unwrap(), 2 << 20);
                assert_eq!(r.size_or("SHMRINGSIZE", 1, u64::MAX, 0).unwrap(), 8 << 20);
                assert!(r
                    .u32_or("REPLICA", 0, 3, 0)
                    .unwrap_err()
                    .to_string()
                    .contains("t.ini:4: [GLOBAL] REPLICA = \"two\""));
                assert_eq!(r.text("CAPATH"), None);
            },
        );
    }

    #[test]
    fn unknown_and_repeated_keys() {
        let doc = read("[GLOBAL]\nGROUP = a\nFOO = 1\n", Path::new("t.ini")).unwrap();
        let err = SectionReader::new(Path::new("t.ini"), SectionKind::Global, &doc.sections[0])
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("t.ini:3: [GLOBAL] FOO: unknown key"),
            "{err}"
        );
        let doc = read("[GLOBAL]\nGROUP = a\nGROUP = b\n", Path::new("t.ini")).unwrap();
        let err = SectionReader::new(Path::new("t.ini"), SectionKind::Global, &doc.sections[0])
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("t.ini:3: [GLOBAL] GROUP: key given again (first at line 2)"),
            "{err}"
        );
    }
}
