//! Number parsing with memcached's exact acceptance rules (its `safe_strto*` helpers over C's
//! `strtoull`/`strtol`): leading white space and a sign are allowed, the number must end at
//! white space or the end of the token, overflow is refused, and a minus sign is refused when
//! it would make an unsigned value wrap. Matching these rules keeps error replies identical.

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// What `strtoull` would return: the value (wrapped for a minus sign), whether a minus sign
/// was seen, and the index just past the digits; `None` when there were no digits or the value
/// overflowed (ERANGE).
fn strtoull(s: &[u8]) -> Option<(u64, bool, usize)> {
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut value: u64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        value = value.checked_mul(10)?.checked_add(u64::from(s[i] - b'0'))?;
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    let value = if negative {
        value.wrapping_neg()
    } else {
        value
    };
    Some((value, negative, i))
}

fn ends_cleanly(s: &[u8], end: usize) -> bool {
    end == s.len() || is_c_space(s[end])
}

/// memcached's `safe_strtoull`.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    let (value, negative, end) = strtoull(s)?;
    if !ends_cleanly(s, end) {
        return None;
    }
    if (value as i64) < 0 && negative {
        return None;
    }
    Some(value)
}

/// memcached's `safe_strtoul` stored into a 32-bit field: larger values are truncated, as the
/// real server does with client flags.
pub fn parse_u32_truncating(s: &[u8]) -> Option<u32> {
    parse_u64(s).map(|v| v as u32)
}

/// memcached's `safe_strtol` into an `int32_t`.
pub fn parse_i32(s: &[u8]) -> Option<i32> {
    let (value, negative, end) = strtoull(s)?;
    if !ends_cleanly(s, end) {
        return None;
    }
    // strtol range: the magnitude must fit in i64.
    let signed: i64 = if negative {
        let magnitude = value.wrapping_neg();
        if magnitude > (i64::MAX as u64) + 1 {
            return None;
        }
        (magnitude as i64).wrapping_neg()
    } else {
        if value > i64::MAX as u64 {
            return None;
        }
        value as i64
    };
    i32::try_from(signed).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_rules_match_memcached() {
        assert_eq!(parse_u64(b"5"), Some(5));
        assert_eq!(parse_u64(b"+3"), Some(3));
        assert_eq!(parse_u64(b"03"), Some(3));
        assert_eq!(parse_u64(b"12 "), Some(12));
        assert_eq!(parse_u64(b" 12"), Some(12));
        assert_eq!(parse_u64(b"12\r\n"), Some(12));
        assert_eq!(parse_u64(b"-0"), Some(0));
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"x"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1x"), None);
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
    }

    #[test]
    fn i32_and_u32_rules() {
        assert_eq!(parse_i32(b"-1"), Some(-1));
        assert_eq!(parse_i32(b"x"), None);
        assert_eq!(parse_i32(b"2147483648"), None);
        assert_eq!(parse_u32_truncating(b"4294967296"), Some(0));
        assert_eq!(parse_u32_truncating(b"-1"), None);
    }
}
