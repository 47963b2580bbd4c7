//! Expansion of CHMPX NAME patterns into host names.
//!
//! CHMPX accepts a small pseudo-regex in NAME (reference §2.2):
//! - `[a,b,c]` — a list of alternatives (`server-[x1,y1].example`);
//! - `[1-5]` — a decimal range; `[01-10]` keeps the zero padding of the
//!   first bound (01, 02, ..., 10);
//! - `[a-e]`, `[A-E]` — a letter range;
//! - several groups combine: `node[1-2][a,b]` → node1a, node1b, node2a, node2b.
//!
//! In [SLVNODE], `[.]*` (CHMPX's "any host") means: any host may be this slave.
//! Anything else malformed is an error naming what is wrong.

use super::defaults::NAME_EXPANSION_MAX;

/// A NAME after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Any host (`[.]*`, slave entries only).
    Any,
    /// These hosts, in pattern order.
    Hosts(Vec<String>),
}

/// The CHMPX spelling of "any host".
pub const ANY_HOST_PATTERN: &str = "[.]*";

/// Expands a NAME. `allow_any` permits `[.]*`. Errors say what was expected.
pub fn expand(name: &str, allow_any: bool) -> Result<HostPattern, String> {
    let name = name.trim();
    if name == ANY_HOST_PATTERN || name == "*" {
        return if allow_any {
            Ok(HostPattern::Any)
        } else {
            Err("a host name or pattern; \"any host\" ([.]*) is allowed only in [SLVNODE]".into())
        };
    }
    if name.is_empty() {
        return Err("a host name, IP address or pattern".into());
    }
    // Parse into parts: each part is a list of alternatives.
    let mut parts: Vec<Vec<String>> = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']').ok_or("a closing ']' for every '['")?;
            let inner = &after[..close];
            if inner.contains('[') {
                return Err("no nested '[' in a pattern group".into());
            }
            parts.push(expand_group(inner)?);
            rest = &after[close + 1..];
        } else {
            let end = rest.find(['[', ']']).unwrap_or(rest.len());
            if rest[end..].starts_with(']') {
                return Err("no ']' without a matching '['".into());
            }
            parts.push(vec![rest[..end].to_string()]);
            rest = &rest[end..];
        }
    }
    let total = parts.iter().try_fold(1usize, |acc, p| {
        acc.checked_mul(p.len())
            .filter(|t| *t <= NAME_EXPANSION_MAX)
    });
    if total.is_none() {
        return Err(format!(
            "a pattern expanding to at most {NAME_EXPANSION_MAX} hosts"
        ));
    }
    let mut hosts = vec![String::new()];
    for part in &parts {
        hosts = hosts
            .iter()
            .flat_map(|h| part.iter().map(move |alt| format!("{h}{alt}")))
            .collect();
    }
    for host in &hosts {
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return Err(format!(
                "host names of letters, digits, '.', '-', '_' or ':' (IPv6); \"{host}\" is not one"
            ));
        }
    }
    Ok(HostPattern::Hosts(hosts))
}

/// Expands the inside of one `[...]` group.
fn expand_group(inner: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in inner.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err("no empty item in a pattern group like [a,b] or [1-5]".into());
        }
        match item.split_once('-') {
            Some((lo, hi)) if is_range_bound(lo) && is_range_bound(hi) => {
                out.extend(expand_range(lo, hi)?)
            }
            _ => out.push(item.to_string()),
        }
        if out.len() > NAME_EXPANSION_MAX {
            return Err(format!(
                "a pattern expanding to at most {NAME_EXPANSION_MAX} hosts"
            ));
        }
    }
    Ok(out)
}

fn is_range_bound(s: &str) -> bool {
    (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit()))
        || (s.len() == 1 && s.chars().all(|c| c.is_ascii_alphabetic()))
}

fn expand_range(lo: &str, hi: &str) -> Result<Vec<String>, String> {
    let both_digits =
        lo.chars().all(|c| c.is_ascii_digit()) && hi.chars().all(|c| c.is_ascii_digit());
    if both_digits {
        let bad = || {
            format!("a range [A-B] with A <= B and at most {NAME_EXPANSION_MAX} values; [{lo}-{hi}] is not one")
        };
        let a: u64 = lo.parse().map_err(|_| bad())?;
        let b: u64 = hi.parse().map_err(|_| bad())?;
        if a > b || b - a >= NAME_EXPANSION_MAX as u64 {
            return Err(bad());
        }
        let width = if lo.len() > 1 && lo.starts_with('0') {
            lo.len()
        } else {
            0
        };
        return Ok((a..=b).map(|v| format!("{v:0width$}")).collect());
    }
    let (a, b) = (lo.as_bytes()[0], hi.as_bytes()[0]);
    let same_case = a.is_ascii_lowercase() == b.is_ascii_lowercase();
    if lo.len() != 1
        || hi.len() != 1
        || !same_case
        || !a.is_ascii_alphabetic()
        || !b.is_ascii_alphabetic()
        || a > b
    {
        return Err(format!(
            "a range of numbers [1-5] or of letters of one case [a-e]; [{lo}-{hi}] is not one"
        ));
    }
    Ok((a..=b).map(|c| (c as char).to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(p: &str) -> Vec<String> {
        match expand(p, false).unwrap() {
            HostPattern::Hosts(h) => h,
            HostPattern::Any => panic!("any"),
        }
    }

    #[test]
    fn ranges_lists_and_padding() {
        assert_eq!(
            hosts("host[1-3].example"),
            ["host1.example", "host2.example", "host3.example"]
        );
        assert_eq!(hosts("n[01-03]"), ["n01", "n02", "n03"]);
        assert_eq!(hosts("n[8-10]"), ["n8", "n9", "n10"]);
        assert_eq!(
            hosts("server-[x1,y1][1-2].ex"),
            [
                "server-x11.ex",
                "server-x12.ex",
                "server-y11.ex",
                "server-y12.ex"
            ]
        );
        assert_eq!(hosts("h[a-c]"), ["ha", "hb", "hc"]);
        assert_eq!(hosts("127.0.0.1"), ["127.0.0.1"]);
        assert_eq!(hosts("::1"), ["::1"]);
        assert_eq!(hosts("10.0.0.[1-3]"), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    }

    #[test]
    fn any_host_only_for_slaves() {
        assert_eq!(expand("[.]*", true).unwrap(), HostPattern::Any);
        assert!(expand("[.]*", false)
            .unwrap_err()
            .contains("only in [SLVNODE]"));
    }

    #[test]
    fn bad_patterns() {
        for bad in [
            "host[1-3",
            "host]1",
            "h[3-1]",
            "h[]",
            "h[a,]",
            "h[a-Z]",
            "h[[1-2]]",
            "h[1-99999999]",
            "h[1-9][1-9][1-9][1-9][1-9]",
            "bad host",
            "",
        ] {
            assert!(expand(bad, false).is_err(), "{bad} should be refused");
        }
    }
}
