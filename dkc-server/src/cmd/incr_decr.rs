//! `Incr` and `Decr` with memcached semantics: the value is a decimal unsigned 64-bit number;
//! incr wraps at 2^64, decr stops at 0; flags and expiry are kept. A missing item is created
//! from `initial` when given (the binary protocol's rule), otherwise `NotFound`.

use dkc_client::proto::{ErrorCode, Response};

use super::{rewrite, Change, CmdError, CmdResult, Ctx};
use crate::counters::bump;
use crate::executor::Executed;

/// Longest decimal form of a u64 ("18446744073709551615").
const DECIMAL_U64_LEN_MAX: usize = 20;

/// Parses a stored value as memcached does: decimal digits, optionally followed by spaces
/// (memcached pads a shrunk number with spaces in place), nothing else.
pub(crate) fn parse_number(value: &[u8]) -> Option<u64> {
    let end = value.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    let digits = &value[..end];
    if digits.is_empty()
        || digits.len() > DECIMAL_U64_LEN_MAX
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

pub(crate) fn execute(
    ctx: &Ctx<'_>,
    key: &[u8],
    delta: u64,
    initial: Option<u64>,
    expire_at: u64,
    incr: bool,
) -> CmdResult {
    ctx.check_key("key", key)?;
    let c = ctx.counters;
    let (hits, misses) = if incr {
        (&c.incr_hits, &c.incr_misses)
    } else {
        (&c.decr_hits, &c.decr_misses)
    };
    let (answer, written) = ctx.modify_fenced(key, |live| {
        let Some(old) = live else {
            bump(misses);
            return Ok(match initial {
                Some(n) => Change::Write(
                    rewrite(None, n.to_string().into_bytes(), 0, ctx.expiry(expire_at)),
                    Response::Number(n),
                ),
                None => Change::Keep(Response::NotFound),
            });
        };
        let Some(cur) = parse_number(&old.value) else {
            return Err(CmdError::new(
                ErrorCode::NotNumeric,
                "cannot increment or decrement non-numeric value",
            ));
        };
        bump(hits);
        let new = if incr {
            cur.wrapping_add(delta)
        } else {
            cur.saturating_sub(delta)
        };
        let rec = rewrite(
            Some(old),
            new.to_string().into_bytes(),
            old.flags,
            old.expire_at,
        );
        Ok(Change::Write(rec, Response::Number(new)))
    })?;
    Ok(Executed::wrote_fenced(answer, written))
}

#[cfg(test)]
mod tests {
    use super::parse_number;
    use crate::cmd::testkit::Kit;
    use dkc_client::proto::{ErrorCode, Request, Response, SetMode};

    fn incr(kit: &Kit, key: &[u8], delta: u64) -> Response {
        kit.run(Request::Incr {
            key: key.to_vec(),
            delta,
            initial: None,
            expire_at: 0,
        })
    }

    fn decr(kit: &Kit, key: &[u8], delta: u64) -> Response {
        kit.run(Request::Decr {
            key: key.to_vec(),
            delta,
            initial: None,
            expire_at: 0,
        })
    }

    #[test]
    fn incr_decr_parse_numbers_like_memcached() {
        assert_eq!(parse_number(b"0"), Some(0));
        assert_eq!(parse_number(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_number(b"18446744073709551616"), None, "above 2^64-1");
        assert_eq!(
            parse_number(b"9  "),
            Some(9),
            "space padding after a shrink"
        );
        for bad in [&b""[..], b" 1", b"-1", b"1a", b"0x10", b"1.5", b"   "] {
            assert_eq!(parse_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn incr_wraps_and_decr_floors() {
        let kit = Kit::new();
        kit.set(b"n", b"18446744073709551614");
        assert_eq!(incr(&kit, b"n", 1), Response::Number(u64::MAX));
        assert_eq!(incr(&kit, b"n", 3), Response::Number(2), "wraps at 2^64");
        assert_eq!(decr(&kit, b"n", 5), Response::Number(0), "floors at 0");
        assert_eq!(kit.value(b"n"), Some(b"0".to_vec()));
        kit.set(b"m", b"100");
        assert_eq!(decr(&kit, b"m", 1), Response::Number(99));
        assert_eq!(kit.value(b"m"), Some(b"99".to_vec()));
    }

    #[test]
    fn incr_keeps_flags_and_expiry_and_replicates() {
        let kit = Kit::new();
        let expire_at = kit.now_secs() + 50;
        kit.run(Request::Set {
            key: b"n".to_vec(),
            value: b"1".to_vec(),
            mode: SetMode::Set,
            flags: 7,
            expire_at,
        });
        let ex = kit.exec(Request::Incr {
            key: b"n".to_vec(),
            delta: 41,
            initial: None,
            expire_at: 0,
        });
        assert_eq!(ex.response, Response::Number(42));
        assert_eq!(ex.replicate.len(), 1);
        assert_eq!(ex.replicate[0].value, b"42".to_vec());
        let item = kit.item(b"n").unwrap();
        assert_eq!((item.flags, item.expire_at), (7, expire_at));
    }

    #[test]
    fn incr_missing_key_uses_initial_or_not_found() {
        let kit = Kit::new();
        assert_eq!(incr(&kit, b"n", 1), Response::NotFound);
        assert_eq!(decr(&kit, b"n", 1), Response::NotFound);
        let expire_at = kit.now_secs() + 5;
        let r = kit.run(Request::Decr {
            key: b"n".to_vec(),
            delta: 3,
            initial: Some(10),
            expire_at,
        });
        assert_eq!(r, Response::Number(10), "the initial value is stored as is");
        assert_eq!(kit.item(b"n").unwrap().expire_at, expire_at);
        assert_eq!(decr(&kit, b"n", 3), Response::Number(7));
    }

    #[test]
    fn incr_on_non_numeric_is_an_error_and_changes_nothing() {
        let kit = Kit::new();
        let v = kit.set(b"s", b"abc");
        kit.expect_error(
            Request::Incr {
                key: b"s".to_vec(),
                delta: 1,
                initial: None,
                expire_at: 0,
            },
            ErrorCode::NotNumeric,
        );
        kit.expect_error(
            Request::Decr {
                key: b"s".to_vec(),
                delta: 1,
                initial: Some(3),
                expire_at: 0,
            },
            ErrorCode::NotNumeric,
        );
        assert_eq!(kit.item(b"s").unwrap().version, v);
    }

    #[test]
    fn incr_is_atomic_under_concurrency() {
        let kit = std::sync::Arc::new(Kit::new());
        kit.set(b"n", b"0");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let kit = kit.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        incr(&kit, b"n", 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(kit.value(b"n"), Some(b"2000".to_vec()));
    }
}
