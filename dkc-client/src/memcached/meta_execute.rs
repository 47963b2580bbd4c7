//! The command layer for meta requests (`mg`, `ms`, `md`, `ma`, `mn`): applies one to a
//! [`Storage`] and encodes the reply, echoing flags in request order as memcached 1.6.18 does
//! (`O` and `k` on every reply, the rest on hits), then the recache tokens `Z`, `X`, `W`.

use std::io::Write as _;

use bytes::{BufMut, BytesMut};

use super::execute::{expiry_from_exptime, line, server_error, ttl_remaining};
use super::meta::{MetaCommon, MetaRequest, ReturnFlag};
use super::stats::{bump, ServerStats};
use super::storage::{
    Arith, ArithOutcome, DeleteOptions, DeleteOutcome, GetOptions, NewItem, RecacheToken, Storage,
    StoreOutcome,
};

/// Appends ` k<key>` (and ` b` for base64 keys) and ` O<opaque>` in request order: what
/// memcached echoes on every meta reply, including misses.
fn echo_flags(out: &mut BytesMut, common: &MetaCommon) {
    for flag in &common.returns {
        match flag {
            ReturnFlag::Opaque(token) => {
                out.put_u8(b' ');
                out.put_slice(token);
            }
            ReturnFlag::Key => echo_key(out, common),
            _ => {}
        }
    }
}

fn echo_key(out: &mut BytesMut, common: &MetaCommon) {
    out.put_slice(b" k");
    out.put_slice(&common.key_token);
    if common.base64 {
        out.put_slice(b" b");
    }
}

fn status_line(out: &mut BytesMut, status: &str, common: &MetaCommon) {
    out.put_slice(status.as_bytes());
    echo_flags(out, common);
    out.put_slice(b"\r\n");
}

pub(super) async fn execute_meta<S: Storage>(
    meta: MetaRequest,
    storage: &S,
    stats: &ServerStats,
    out: &mut BytesMut,
) {
    let c = &stats.counters;
    let now = storage.now_secs();
    match meta {
        MetaRequest::Noop => line(out, "MN"),
        MetaRequest::Get {
            common,
            value,
            touch_ttl,
            vivify_ttl,
        } => {
            let options = GetOptions {
                touch: touch_ttl.map(|t| expiry_from_exptime(t, now)),
                vivify: vivify_ttl.map(|t| expiry_from_exptime(t, now)),
            };
            bump(&c.cmd_get);
            let fetched = match storage
                .get(std::slice::from_ref(&common.key), options)
                .await
            {
                Err(e) => return server_error(out, &e),
                Ok(mut found) => found.pop().flatten(),
            };
            let Some(fetched) = fetched else {
                bump(&c.get_misses);
                if !common.quiet {
                    status_line(out, "EN", &common);
                }
                return;
            };
            bump(&c.get_hits);
            let item = &fetched.item;
            if value {
                let _ = write!(out.writer(), "VA {}", item.value.len());
            } else {
                out.put_slice(b"HD");
            }
            let mut w = out.writer();
            for flag in &common.returns {
                let _ = match flag {
                    ReturnFlag::Opaque(token) => {
                        let _ = w.write_all(b" ");
                        w.write_all(token)
                    }
                    ReturnFlag::Key => {
                        echo_key(w.get_mut(), &common);
                        Ok(())
                    }
                    ReturnFlag::Cas => write!(w, " c{}", item.cas),
                    ReturnFlag::ClientFlags => write!(w, " f{}", item.flags),
                    ReturnFlag::Ttl => write!(w, " t{}", ttl_remaining(item.expiry, now)),
                    ReturnFlag::Size => write!(w, " s{}", item.value.len()),
                    ReturnFlag::Hit => write!(w, " h{}", u8::from(item.fetched_before)),
                    ReturnFlag::LastAccess => {
                        write!(w, " l{}", now.saturating_sub(item.last_access_secs))
                    }
                };
            }
            if fetched.token == Some(RecacheToken::AlreadySent) {
                out.put_slice(b" Z");
            }
            if item.stale {
                out.put_slice(b" X");
            }
            if fetched.token == Some(RecacheToken::Win) {
                out.put_slice(b" W");
            }
            out.put_slice(b"\r\n");
            if value {
                out.put_slice(&item.value);
                out.put_slice(b"\r\n");
            }
        }
        MetaRequest::Set {
            common,
            value,
            mode,
            client_flags,
            ttl,
            cas_compare,
        } => {
            bump(&c.cmd_set);
            let item = NewItem {
                value,
                flags: client_flags,
                expiry: expiry_from_exptime(ttl, now),
            };
            match storage
                .store(mode, common.key.clone(), item, cas_compare)
                .await
            {
                Err(e) => server_error(out, &e),
                Ok(StoreOutcome::Stored { cas }) => {
                    if !common.quiet {
                        out.put_slice(b"HD");
                        for flag in &common.returns {
                            match flag {
                                ReturnFlag::Opaque(token) => {
                                    out.put_u8(b' ');
                                    out.put_slice(token);
                                }
                                ReturnFlag::Key => echo_key(out, &common),
                                ReturnFlag::Cas => {
                                    let _ = write!(out.writer(), " c{cas}");
                                }
                                _ => {}
                            }
                        }
                        out.put_slice(b"\r\n");
                    }
                }
                Ok(StoreOutcome::NotStored) => status_line(out, "NS", &common),
                Ok(StoreOutcome::Exists) => status_line(out, "EX", &common),
                Ok(StoreOutcome::NotFound) => status_line(out, "NF", &common),
            }
        }
        MetaRequest::Delete {
            common,
            cas_compare,
            invalidate,
            ttl,
        } => {
            let options = DeleteOptions {
                cas_compare,
                invalidate: invalidate.then(|| ttl.map(|t| expiry_from_exptime(t, now))),
            };
            match storage.delete(common.key.clone(), options).await {
                Err(e) => server_error(out, &e),
                Ok(DeleteOutcome::Deleted) => {
                    bump(&c.delete_hits);
                    if !common.quiet {
                        status_line(out, "HD", &common);
                    }
                }
                Ok(DeleteOutcome::NotFound) => {
                    bump(&c.delete_misses);
                    status_line(out, "NF", &common);
                }
                Ok(DeleteOutcome::Exists) => status_line(out, "EX", &common),
            }
        }
        MetaRequest::Arith {
            common,
            incr,
            delta,
            initial,
            vivify_ttl,
            ttl: _,
            cas_compare,
            value,
        } => {
            let arith = Arith {
                incr,
                delta,
                vivify: vivify_ttl.map(|t| (initial, expiry_from_exptime(t, now))),
                // memcached 1.6.18 accepts `T` on ma but leaves the TTL alone; so do we.
                touch: None,
                cas_compare,
            };
            let (hits, misses) = if incr {
                (&c.incr_hits, &c.incr_misses)
            } else {
                (&c.decr_hits, &c.decr_misses)
            };
            match storage.arith(common.key.clone(), arith).await {
                Err(e) => server_error(out, &e),
                Ok(ArithOutcome::Value {
                    value: number,
                    cas,
                    expiry,
                }) => {
                    bump(hits);
                    if common.quiet {
                        return;
                    }
                    let digits = number.to_string();
                    if value {
                        let _ = write!(out.writer(), "VA {}", digits.len());
                    } else {
                        out.put_slice(b"HD");
                    }
                    for flag in &common.returns {
                        match flag {
                            ReturnFlag::Opaque(token) => {
                                out.put_u8(b' ');
                                out.put_slice(token);
                            }
                            ReturnFlag::Key => echo_key(out, &common),
                            ReturnFlag::Cas => {
                                let _ = write!(out.writer(), " c{cas}");
                            }
                            ReturnFlag::Ttl => {
                                let _ = write!(out.writer(), " t{}", ttl_remaining(expiry, now));
                            }
                            _ => {}
                        }
                    }
                    out.put_slice(b"\r\n");
                    if value {
                        line(out, &digits);
                    }
                }
                Ok(ArithOutcome::NotFound) => {
                    bump(misses);
                    status_line(out, "NF", &common);
                }
                Ok(ArithOutcome::NonNumeric) => {
                    line(
                        out,
                        "CLIENT_ERROR cannot increment or decrement non-numeric value",
                    );
                }
                Ok(ArithOutcome::Exists) => status_line(out, "EX", &common),
            }
        }
    }
}
