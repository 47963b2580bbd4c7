//! Reads INI text into sections and entries that carry their line numbers.
//!
//! The INI grammar is rust-ini's (the `ini` crate): it decides what is a
//! section, a key and a value, keeps repeated sections ([SVRNODE] many times)
//! in file order, and reports syntax errors with a line. It does not record
//! where each key was, so a small locator scans the raw text once with the
//! same simple rules (trimmed lines, `#`/`;` comments, `[NAME]` headers,
//! `KEY = value` split at the first `=` or `:`) and hands out line numbers
//! in order. We keep rust-ini as the authority rather than writing a second
//! full reader so that values mean exactly what the shared INI crate says;
//! if the locator ever loses step with it (e.g. a backslash line
//! continuation), an entry falls back to its section's header line, which
//! is still near, never wrong about the file or key.
//!
//! Section names and keys are matched case-insensitively: they are stored
//! upper case. Values are taken literally: no quote removal, no escapes.

use std::path::Path;

use ini::{Ini, ParseOption};

use super::error::ConfigError;

/// One `KEY = value` line.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    /// Upper-case key.
    pub key: String,
    /// Trimmed value as written.
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// One `[NAME]` section and its entries, in file order.
#[derive(Debug, Clone)]
pub(crate) struct RawSection {
    /// Upper-case section name.
    pub name: String,
    /// 1-based line of the header.
    pub line: usize,
    pub entries: Vec<RawEntry>,
}

/// A whole file.
#[derive(Debug, Clone)]
pub(crate) struct RawDoc {
    pub sections: Vec<RawSection>,
    /// Number of lines in the file (where "add it at the end" points).
    pub last_line: usize,
}

/// Where the locator saw a header or key.
struct Located {
    headers: Vec<(String, usize)>,
    /// Per header index: the (upper-case key, line) pairs under it.
    keys: Vec<Vec<(String, usize)>>,
    /// Keys before the first header.
    loose_keys: Vec<(String, usize)>,
}

fn locate(text: &str) -> Located {
    let mut located = Located {
        headers: Vec::new(),
        keys: Vec::new(),
        loose_keys: Vec::new(),
    };
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let name = rest
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_uppercase();
            located.headers.push((name, line));
            located.keys.push(Vec::new());
            continue;
        }
        let key = trimmed
            .split(['=', ':'])
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_uppercase();
        match located.keys.last_mut() {
            Some(keys) => keys.push((key, line)),
            None => located.loose_keys.push((key, line)),
        }
    }
    located
}

/// Parses `text`; `file` is used only in error messages.
pub(crate) fn read(text: &str, file: &Path) -> Result<RawDoc, ConfigError> {
    // Editors on some systems start UTF-8 files with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // rust-ini refuses text after a header but reports it a line late and
    // vaguely; catch it here with the right line.
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if let Some(rest) = trimmed.strip_prefix('[') {
            if let Some((_, after)) = rest.split_once(']') {
                if !after.trim().is_empty() {
                    return Err(ConfigError::Syntax {
                        file: file.to_path_buf(),
                        line: index + 1,
                        message: format!(
                            "text after the section header: \"{}\"; put comments on their own line",
                            after.trim()
                        ),
                    });
                }
            }
        }
    }
    let option = ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..ParseOption::default()
    };
    let ini = Ini::load_from_str_opt(text, option).map_err(|e| ConfigError::Syntax {
        file: file.to_path_buf(),
        // rust-ini counts lines from 0, and reports an error at end of
        // input one past the last line.
        line: (e.line + 1).min(text.lines().count().max(1)),
        message: e.msg.to_string(),
    })?;
    let located = locate(text);

    let mut sections = Vec::new();
    let mut header_index = 0usize;
    for (name, props) in ini.iter() {
        let Some(name) = name else {
            // The general section: keys before any header are an error.
            if let Some((key, _)) = props.iter().next() {
                let upper = key.trim().to_ascii_uppercase();
                let line = located
                    .loose_keys
                    .iter()
                    .find(|(k, _)| *k == upper)
                    .map_or(1, |(_, l)| *l);
                return Err(ConfigError::KeyOutsideSection {
                    file: file.to_path_buf(),
                    line,
                    key: upper,
                });
            }
            continue;
        };
        let upper = name.trim().to_ascii_uppercase();
        // Find this section's header: the next located header of that name.
        let found = located.headers[header_index.min(located.headers.len())..]
            .iter()
            .position(|(n, _)| *n == upper)
            .map(|offset| header_index + offset);
        let (line, mut key_lines) = match found {
            Some(i) => {
                header_index = i + 1;
                (located.headers[i].1, located.keys[i].clone().into_iter())
            }
            None => (1, Vec::new().into_iter()),
        };
        let mut entries = Vec::new();
        for (key, value) in props.iter() {
            let key = key.trim().to_ascii_uppercase();
            let entry_line = key_lines
                .by_ref()
                .find(|(k, _)| *k == key)
                .map_or(line, |(_, l)| l);
            entries.push(RawEntry {
                key,
                value: value.trim().to_string(),
                line: entry_line,
            });
        }
        sections.push(RawSection {
            name: upper,
            line,
            entries,
        });
    }
    Ok(RawDoc {
        sections,
        last_line: text.lines().count().max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_repeated_sections() {
        let text = "# c\n[GLOBAL]\nGROUP = g\n\n[SVRNODE]\nNAME = a\nPORT=1\n[svrnode]\nname = b\n";
        let doc = read(text, Path::new("t.ini")).unwrap();
        let names: Vec<_> = doc
            .sections
            .iter()
            .map(|s| (s.name.as_str(), s.line))
            .collect();
        assert_eq!(names, vec![("GLOBAL", 2), ("SVRNODE", 5), ("SVRNODE", 8)]);
        let e = &doc.sections[2].entries[0];
        assert_eq!((e.key.as_str(), e.value.as_str(), e.line), ("NAME", "b", 9));
        assert_eq!(doc.sections[1].entries[1].line, 7);
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let doc = read("\u{feff}[GLOBAL]\r\nGROUP = g\r\n", Path::new("t.ini")).unwrap();
        assert_eq!(doc.sections[0].name, "GLOBAL");
        assert_eq!(doc.sections[0].entries[0].value, "g");
    }

    #[test]
    fn values_are_literal() {
        let doc = read(
            "[K2HDKC]\nK2HFILE = C:\\dir\\x \nNAME = \"q\"\n",
            Path::new("t.ini"),
        )
        .unwrap();
        assert_eq!(doc.sections[0].entries[0].value, "C:\\dir\\x");
        assert_eq!(doc.sections[0].entries[1].value, "\"q\"");
    }

    #[test]
    fn key_before_section_is_an_error() {
        let err = read("\nGROUP = x\n[GLOBAL]\n", Path::new("t.ini")).unwrap_err();
        assert!(err.to_string().starts_with("t.ini:2: GROUP"), "{err}");
    }

    #[test]
    fn text_after_a_header_is_refused_at_its_line() {
        let err = read("\n[GLOBAL]   # once\nGROUP = a\n", Path::new("t.ini")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("t.ini:2: INI syntax error: text after the section header"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_keys_keep_both_lines() {
        let doc = read("[GLOBAL]\nA = 1\nA = 2\n", Path::new("t.ini")).unwrap();
        let lines: Vec<_> = doc.sections[0].entries.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3]);
    }
}
