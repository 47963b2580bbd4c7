//! The command layer: applies one decoded [`Request`] to a [`Storage`] and encodes the reply
//! as memcached 1.6 would. Here, and only here, client exptimes become absolute expiries, so
//! a storage sees one form. Storage failures become `SERVER_ERROR <reason>` lines: the
//! connection stays usable.

use std::io::Write as _;

use bytes::{BufMut, BytesMut};

use super::limits::EXPTIME_RELATIVE_SECS_MAX;
use super::request::Request;
use super::stats::{bump, ServerStats};
use super::storage::{
    Arith, ArithOutcome, DeleteOptions, DeleteOutcome, Expiry, GetOptions, NewItem, Storage,
    StorageError, StoreOutcome,
};

/// The version this front reports: the memcached release whose behaviour it follows, marked
/// so that nobody mistakes it for memcached itself.
pub const VERSION_REPORTED: &str = "1.6.18-dkc";

/// What the connection should do after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Close,
}

/// Turns a memcached exptime into an absolute expiry: 0 never expires, negative is already
/// expired, up to 30 days is relative to `now`, beyond that an absolute unix time.
pub fn expiry_from_exptime(exptime: i32, now_secs: u64) -> Expiry {
    let exptime = i64::from(exptime);
    if exptime == 0 {
        Expiry::Never
    } else if exptime < 0 {
        Expiry::At(0)
    } else if exptime > EXPTIME_RELATIVE_SECS_MAX {
        Expiry::At(exptime as u64)
    } else {
        Expiry::At(now_secs + exptime as u64)
    }
}

/// Seconds left before `expiry` as meta `t` prints them (-1: never).
pub fn ttl_remaining(expiry: Expiry, now_secs: u64) -> i64 {
    match expiry {
        Expiry::Never => -1,
        Expiry::At(at) => at as i64 - now_secs as i64,
    }
}

pub(super) fn line(out: &mut BytesMut, text: &str) {
    out.put_slice(text.as_bytes());
    out.put_slice(b"\r\n");
}

pub(super) fn server_error(out: &mut BytesMut, error: &StorageError) {
    line(out, &format!("SERVER_ERROR {error}"));
}

/// Executes `request`, appending the reply to `out`.
pub async fn execute<S: Storage>(
    request: Request,
    storage: &S,
    stats: &ServerStats,
    out: &mut BytesMut,
) -> Control {
    let c = &stats.counters;
    match request {
        Request::Reply {
            line: text,
            noreply,
        } => {
            if !noreply {
                line(out, text);
            }
        }
        Request::Quit => return Control::Close,
        Request::Version => line(out, &format!("VERSION {VERSION_REPORTED}")),
        Request::Acknowledge { noreply } => {
            if !noreply {
                line(out, "OK");
            }
        }
        Request::TooLarge {
            key,
            drop_existing,
            reply,
            noreply,
        } => {
            bump(&c.store_too_large);
            // memcached drops the old value so a failed set cannot leave stale data behind.
            if drop_existing {
                let _ = storage.delete(key, DeleteOptions::default()).await;
            }
            if !noreply {
                line(out, reply);
            }
        }
        Request::Get {
            keys,
            with_cas,
            touch_exptime,
            end,
        } => {
            let now = storage.now_secs();
            let options = GetOptions {
                touch: touch_exptime.map(|e| expiry_from_exptime(e, now)),
                vivify: None,
            };
            match storage.get(&keys, options).await {
                Err(e) => server_error(out, &e),
                Ok(found) => {
                    for (key, fetched) in keys.iter().zip(found) {
                        if touch_exptime.is_some() {
                            bump(&c.cmd_touch);
                        }
                        bump(&c.cmd_get);
                        let Some(fetched) = fetched else {
                            bump(if touch_exptime.is_some() {
                                &c.touch_misses
                            } else {
                                &c.get_misses
                            });
                            continue;
                        };
                        bump(if touch_exptime.is_some() {
                            &c.touch_hits
                        } else {
                            &c.get_hits
                        });
                        let item = fetched.item;
                        out.put_slice(b"VALUE ");
                        out.put_slice(key);
                        let _ = write!(out.writer(), " {} {}", item.flags, item.value.len());
                        if with_cas {
                            let _ = write!(out.writer(), " {}", item.cas);
                        }
                        out.put_slice(b"\r\n");
                        out.put_slice(&item.value);
                        out.put_slice(b"\r\n");
                    }
                    if end {
                        line(out, "END");
                    }
                }
            }
        }
        Request::Store {
            mode,
            key,
            flags,
            exptime,
            value,
            cas,
            noreply,
        } => {
            bump(&c.cmd_set);
            let expiry = expiry_from_exptime(exptime, storage.now_secs());
            let item = NewItem {
                value,
                flags,
                expiry,
            };
            let reply = match storage.store(mode, key, item, cas).await {
                Err(e) => {
                    if !noreply {
                        server_error(out, &e);
                    }
                    return Control::Continue;
                }
                Ok(StoreOutcome::Stored { .. }) => {
                    if cas.is_some() {
                        bump(&c.cas_hits);
                    }
                    "STORED"
                }
                Ok(StoreOutcome::NotStored) => "NOT_STORED",
                Ok(StoreOutcome::Exists) => {
                    bump(&c.cas_badval);
                    "EXISTS"
                }
                Ok(StoreOutcome::NotFound) => {
                    bump(&c.cas_misses);
                    "NOT_FOUND"
                }
            };
            if !noreply {
                line(out, reply);
            }
        }
        Request::Delete { key, noreply } => {
            let reply = match storage.delete(key, DeleteOptions::default()).await {
                Err(e) => {
                    if !noreply {
                        server_error(out, &e);
                    }
                    return Control::Continue;
                }
                Ok(DeleteOutcome::Deleted) => {
                    bump(&c.delete_hits);
                    "DELETED"
                }
                Ok(_) => {
                    bump(&c.delete_misses);
                    "NOT_FOUND"
                }
            };
            if !noreply {
                line(out, reply);
            }
        }
        Request::Arith {
            incr,
            key,
            delta,
            noreply,
        } => {
            let arith = Arith {
                incr,
                delta,
                vivify: None,
                touch: None,
                cas_compare: None,
            };
            let (hits, misses) = if incr {
                (&c.incr_hits, &c.incr_misses)
            } else {
                (&c.decr_hits, &c.decr_misses)
            };
            let reply = match storage.arith(key, arith).await {
                Err(e) => format!("SERVER_ERROR {e}"),
                Ok(ArithOutcome::Value { value, .. }) => {
                    bump(hits);
                    value.to_string()
                }
                Ok(ArithOutcome::NotFound | ArithOutcome::Exists) => {
                    bump(misses);
                    "NOT_FOUND".to_string()
                }
                Ok(ArithOutcome::NonNumeric) => {
                    "CLIENT_ERROR cannot increment or decrement non-numeric value".to_string()
                }
            };
            if !noreply {
                line(out, &reply);
            }
        }
        Request::Touch {
            key,
            exptime,
            noreply,
        } => {
            bump(&c.cmd_touch);
            let expiry = expiry_from_exptime(exptime, storage.now_secs());
            let reply = match storage.touch(key, expiry).await {
                Err(e) => format!("SERVER_ERROR {e}"),
                Ok(true) => {
                    bump(&c.touch_hits);
                    "TOUCHED".to_string()
                }
                Ok(false) => {
                    bump(&c.touch_misses);
                    "NOT_FOUND".to_string()
                }
            };
            if !noreply {
                line(out, &reply);
            }
        }
        Request::FlushAll { delay, noreply } => {
            bump(&c.cmd_flush);
            let at = if delay > 0 {
                match expiry_from_exptime(delay, storage.now_secs()) {
                    Expiry::At(at) => Some(at),
                    Expiry::Never => None,
                }
            } else {
                None
            };
            let reply = match storage.flush_all(at).await {
                Err(e) => format!("SERVER_ERROR {e}"),
                Ok(()) => "OK".to_string(),
            };
            if !noreply {
                line(out, &reply);
            }
        }
        Request::Stats { group } => stats_reply(group.as_deref(), storage, stats, out).await,
        Request::Binary(request) => {
            return super::binary::execute(request, storage, stats, out).await
        }
        Request::Meta(meta) => {
            bump(&c.cmd_meta);
            super::meta_execute::execute_meta(meta, storage, stats, out).await;
        }
    }
    Control::Continue
}

async fn stats_reply<S: Storage>(
    group: Option<&[u8]>,
    storage: &S,
    stats: &ServerStats,
    out: &mut BytesMut,
) {
    match group {
        None => {}
        Some(b"reset") => {
            stats.counters.reset();
            line(out, "RESET");
            return;
        }
        Some(b"detail") => {
            line(out, "CLIENT_ERROR usage: stats detail on|off|dump");
            return;
        }
        // Slab and item statistics have no meaning over a cluster: report an empty group.
        Some(b"settings") => {
            let settings = &stats.settings;
            let all: [(&str, String); 10] = [
                ("maxconns", stats.connections_max.to_string()),
                ("tcpport", settings.tcp_port.to_string()),
                ("udpport", "0".to_string()),
                (
                    "domain_socket",
                    settings
                        .domain_socket
                        .as_deref()
                        .unwrap_or("NULL")
                        .to_string(),
                ),
                ("umask", format!("{:o}", settings.unix_mask)),
                ("num_threads", stats.threads.to_string()),
                ("cas_enabled", "yes".to_string()),
                ("binding_protocol", "auto-negotiate".to_string()),
                ("item_size_max", settings.item_size_max.to_string()),
                ("idle_timeout", settings.idle_timeout_secs.to_string()),
            ];
            for (name, value) in all {
                line(out, &format!("STAT {name} {value}"));
            }
            line(out, "END");
            return;
        }
        Some(b"items" | b"slabs" | b"sizes" | b"conns" | b"cachedump") => {
            line(out, "END");
            return;
        }
        Some(_) => {
            line(out, "ERROR");
            return;
        }
    }
    match general_stats(storage, stats).await {
        Ok(all) => {
            for (name, value) in all {
                line(out, &format!("STAT {name} {value}"));
            }
            line(out, "END");
        }
        Err(e) => server_error(out, &e),
    }
}

/// The general `stats` group: names and values in memcached's order.
pub async fn general_stats<S: Storage>(
    storage: &S,
    stats: &ServerStats,
) -> Result<Vec<(&'static str, String)>, StorageError> {
    let storage_stats = storage.stats().await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut all: Vec<(&'static str, String)> = vec![
        ("pid", std::process::id().to_string()),
        ("uptime", stats.started.elapsed().as_secs().to_string()),
        ("time", now.to_string()),
        ("version", VERSION_REPORTED.to_string()),
        ("pointer_size", usize::BITS.to_string()),
        ("max_connections", stats.connections_max.to_string()),
    ];
    let mut bytes_counters = Vec::new();
    for (name, value) in stats.counters.snapshot() {
        // memcached prints the byte counters after the command counters.
        if name == "bytes_read" || name == "bytes_written" {
            bytes_counters.push((name, value.to_string()));
        } else {
            all.push((name, value.to_string()));
        }
    }
    all.extend(bytes_counters);
    all.extend([
        ("limit_maxbytes", storage_stats.limit_maxbytes.to_string()),
        ("accepting_conns", "1".to_string()),
        ("threads", stats.threads.to_string()),
        ("bytes", storage_stats.bytes.to_string()),
        ("curr_items", storage_stats.curr_items.to_string()),
        ("total_items", storage_stats.total_items.to_string()),
    ]);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::memcached::limits::Limits;
    use crate::memcached::memory::{ManualClock, MemoryStorage};
    use crate::memcached::text::decode;

    /// Runs every request in `input` and returns the replies.
    async fn run(storage: &MemoryStorage, input: &[u8]) -> String {
        let stats = ServerStats::new(1, 1);
        let limits = Limits::default();
        let mut out = BytesMut::new();
        let mut at = 0;
        while at < input.len() {
            let frame = decode(&input[at..], &limits).expect("complete request");
            at += frame.consumed + frame.swallow;
            execute(frame.request, storage, &stats, &mut out).await;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    const START_SECS: u64 = 1_800_000_000;

    fn storage() -> (Arc<ManualClock>, MemoryStorage) {
        let clock = Arc::new(ManualClock::new(START_SECS));
        let storage = MemoryStorage::new(clock.clone());
        (clock, storage)
    }

    #[tokio::test]
    async fn relative_expiry_follows_the_clock() {
        let (clock, s) = storage();
        assert_eq!(run(&s, b"set a 0 10 1\r\nx\r\n").await, "STORED\r\n");
        clock.advance(9);
        assert_eq!(run(&s, b"mg a t v\r\n").await, "VA 1 t1\r\nx\r\n");
        clock.advance(1);
        assert_eq!(run(&s, b"get a\r\n").await, "END\r\n");
    }

    #[tokio::test]
    async fn absolute_and_negative_exptimes() {
        let (clock, s) = storage();
        let at = START_SECS + 100;
        let set = format!("set a 0 {at} 1\r\nx\r\nset b 0 -1 1\r\ny\r\nget a b\r\n");
        assert_eq!(
            run(&s, set.as_bytes()).await,
            "STORED\r\nSTORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n"
        );
        clock.advance(100);
        assert_eq!(run(&s, b"get a\r\n").await, "END\r\n");
        // An absolute time already past expires at once.
        let past = format!("set c 0 {} 1\r\nz\r\nget c\r\n", START_SECS - 5);
        assert_eq!(run(&s, past.as_bytes()).await, "STORED\r\nEND\r\n");
    }

    #[tokio::test]
    async fn touch_gat_and_delayed_flush() {
        let (clock, s) = storage();
        run(&s, b"set a 0 5 1\r\nx\r\n").await;
        assert_eq!(run(&s, b"touch a 100\r\n").await, "TOUCHED\r\n");
        clock.advance(50);
        assert_eq!(run(&s, b"gat 0 a\r\n").await, "VALUE a 0 1\r\nx\r\nEND\r\n");
        assert_eq!(run(&s, b"mg a t\r\n").await, "HD t-1\r\n");
        assert_eq!(run(&s, b"flush_all 10\r\n").await, "OK\r\n");
        clock.advance(9);
        assert_eq!(run(&s, b"mg a\r\n").await, "HD\r\n");
        clock.advance(1);
        assert_eq!(run(&s, b"mg a\r\n").await, "EN\r\n");
    }

    #[tokio::test]
    async fn exptime_conversion() {
        assert_eq!(expiry_from_exptime(0, 1000), Expiry::Never);
        assert!(expiry_from_exptime(-1, 1000).is_expired(1000));
        assert_eq!(expiry_from_exptime(30, 1000), Expiry::At(1030));
        let month = EXPTIME_RELATIVE_SECS_MAX as i32;
        assert_eq!(
            expiry_from_exptime(month, 1000),
            Expiry::At(1000 + month as u64)
        );
        assert_eq!(
            expiry_from_exptime(month + 1, 1000),
            Expiry::At(month as u64 + 1)
        );
    }
}
