//! Expansion of CHMPX NAME patterns into host names.
//!
//! CHMPX accepts a small pseudo-regex in NAME (reference §2.2; CHMPX's
//! `lib/chmregex.cc`, whose rules these are):
//! - `[a,b,c]` — a list of alternatives (`server-[x1,y1].example`); items are
//!   trimmed, empty items are skipped (`[a,,b]` is `[a,b]`);
//! - `[1-5]` — a decimal range. As in CHMPX the values are written without
//!   zero padding: `[01-03]` is 1, 2, 3 (write the list `[01,02,03]` for
//!   padded names);
//! - `[a-e]`, `[A-E]` — a letter range (one letter each side, one case);
//! - a `-` inside a group always makes a range, so `[web-1]` is an error, as
//!   in CHMPX (put the hyphen outside the group: `web-[1-2]`);
//! - several groups combine: `node[1-2][a,b]` → node1a, node1b, node2a, node2b.
//!
//! In `[SLVNODE]`, `[.]*` (CHMPX's "any host") means: any host may be this slave.
//! CHMPX matches other `[SLVNODE]` NAMEs as POSIX regular expressions; here they
//! are host names or patterns as above, and regex syntax is refused.
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
    if allow_any && name.contains(['*', '+', '?', '^', '$', '\\', '(', '|']) {
        return Err(format!(
            "a host name, IP address, pattern like node[1-3].example, or [.]* for any host; regular expressions such as \"{name}\" are not supported: list the hosts or use [.]*"
        ));
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

/// Expands the inside of one `[...]` group. As in CHMPX, empty items are skipped and every
/// item with a `-` is a range.
fn expand_group(inner: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in inner.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        match item.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (lo.trim(), hi.trim());
                if lo.is_empty() || hi.is_empty() || hi.contains('-') {
                    return Err(format!(
                        "a range like [1-5] or [a-e] (one '-' between two bounds); [{item}] is not one (a '-' inside [...] always makes a range: put a hyphen of the host name outside the group)"
                    ));
                }
                out.extend(expand_range(lo, hi)?)
            }
            None => out.push(item.to_string()),
        }
        if out.len() > NAME_EXPANSION_MAX {
            return Err(format!(
                "a pattern expanding to at most {NAME_EXPANSION_MAX} hosts"
            ));
        }
    }
    if out.is_empty() {
        return Err("no empty pattern group; write [a,b] or [1-5]".into());
    }
    Ok(out)
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
        // CHMPX writes the values as plain numbers: [01-03] is 1, 2, 3.
        return Ok((a..=b).map(|v| v.to_string()).collect());
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
        // As CHMPX: range values lose their zero padding; a list keeps its items as written.
        assert_eq!(hosts("n[01-03]"), ["n1", "n2", "n3"]);
        assert_eq!(hosts("n[01,02,03]"), ["n01", "n02", "n03"]);
        assert_eq!(hosts("n0[8-9]"), ["n08", "n09"]);
        // Items and range bounds are trimmed; empty items are skipped.
        assert_eq!(hosts("h[ 1 - 2 , x ]"), ["h1", "h2", "hx"]);
        assert_eq!(hosts("h[a,,b,]"), ["ha", "hb"]);
        // Several ranges in one group, and several groups.
        assert_eq!(hosts("h[1-2,7-8]"), ["h1", "h2", "h7", "h8"]);
        assert_eq!(
            hosts("r[1-2].n[01-02]"),
            ["r1.n1", "r1.n2", "r2.n1", "r2.n2"]
        );
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
        // Other regular expressions (CHMPX matches slave NAMEs as regexes) are refused, saying so.
        for re in [".*", "web.*\\.example", "^h(1|2)$", "h+"] {
            let e = expand(re, true).unwrap_err();
            assert!(
                e.contains("regular expressions") && e.contains("[.]*"),
                "{re}: {e}"
            );
        }
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
            "h[,]",
            "h[ ]",
            "h[web-1]",
            "h[1-2-3]",
            "h[-3]",
            "h[a-9]",
            "h[aa-c]",
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
