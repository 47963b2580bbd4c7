//! [`ClusterStorage`] against a real cluster (3 chmpx + 3 dkc-server + slave chmpx): every
//! memcached verb through the Storage trait, then dkc-memcached `--backend cluster` on the wire,
//! and cluster failures answered as SERVER_ERROR on an open connection, never a hang.
//!
//! Needs the chmpx and dkc-server binaries: `cargo build --release -p chmpx -p dkc-server`.

#[path = "client_support/mod.rs"]
mod client_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use client_support::Cluster;
use dkc_client::memcached::storage::{
    Arith, ArithOutcome, DeleteOptions, DeleteOutcome, Expiry, GetOptions, NewItem, RecacheToken,
    Storage, StorageError, StoreMode, StoreOutcome,
};
use dkc_client::memcached_cluster::ClusterStorage;

/// Longest a failing request may take to be answered (the driver's timeout and retries).
const FAILURE_ANSWER_MAX: Duration = Duration::from_secs(30);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn item(v: &str, flags: u32) -> NewItem {
    NewItem {
        value: Bytes::copy_from_slice(v.as_bytes()),
        flags,
        expiry: Expiry::Never,
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn memcached_cluster_storage_maps_every_verb() {
    let cluster = Cluster::start();
    let rt = rt();
    let s = ClusterStorage::new(cluster.client().to_async());
    rt.block_on(async {
        let none = GetOptions::default();
        // set / get with flags; gets token is the version; cas right, wrong, missing.
        let StoreOutcome::Stored { cas } = s
            .store(StoreMode::Set, b("a"), item("1", 7), None)
            .await
            .unwrap()
        else {
            panic!("set a")
        };
        let got = s.get(&[b("a")], none).await.unwrap();
        let f = got[0].as_ref().expect("a stored");
        assert_eq!(
            (f.item.value.as_ref(), f.item.flags, f.item.cas),
            (&b"1"[..], 7, cas)
        );
        assert_eq!(
            s.store(StoreMode::Set, b("a"), item("2", 7), Some(cas ^ 1))
                .await
                .unwrap(),
            StoreOutcome::Exists
        );
        assert!(matches!(
            s.store(StoreMode::Set, b("a"), item("2", 8), Some(cas))
                .await
                .unwrap(),
            StoreOutcome::Stored { .. }
        ));
        assert_eq!(
            s.store(StoreMode::Set, b("nope"), item("x", 0), Some(1))
                .await
                .unwrap(),
            StoreOutcome::NotFound
        );

        // add / replace / append / prepend.
        assert_eq!(
            s.store(StoreMode::Add, b("a"), item("x", 0), None)
                .await
                .unwrap(),
            StoreOutcome::NotStored
        );
        assert!(matches!(
            s.store(StoreMode::Add, b("n1"), item("x", 1), None)
                .await
                .unwrap(),
            StoreOutcome::Stored { .. }
        ));
        assert_eq!(
            s.store(StoreMode::Replace, b("missing"), item("x", 0), None)
                .await
                .unwrap(),
            StoreOutcome::NotStored
        );
        assert_eq!(
            s.store(StoreMode::Append, b("missing"), item("x", 0), None)
                .await
                .unwrap(),
            StoreOutcome::NotStored
        );
        s.store(StoreMode::Append, b("a"), item(">", 99), None)
            .await
            .unwrap();
        s.store(StoreMode::Prepend, b("a"), item("<", 99), None)
            .await
            .unwrap();
        let f = s.get(&[b("a")], none).await.unwrap().remove(0).unwrap();
        assert_eq!(
            (f.item.value.as_ref(), f.item.flags),
            (&b"<2>"[..], 8),
            "append/prepend keep flags"
        );
        assert!(
            matches!(
                s.store(StoreMode::Append, b("a"), item("x", 0), Some(f.item.cas))
                    .await,
                Err(StorageError::Other { .. })
            ),
            "a CAS compare with append is refused, not done racily"
        );

        // multi-get: order kept, misses as None, a key asked twice answered twice.
        let got = s
            .get(&[b("n1"), b("zz"), b("a"), b("n1")], none)
            .await
            .unwrap();
        let vals: Vec<Option<&[u8]>> = got
            .iter()
            .map(|g| g.as_ref().map(|f| f.item.value.as_ref()))
            .collect();
        assert_eq!(
            vals,
            vec![Some(&b"x"[..]), None, Some(&b"<2>"[..]), Some(&b"x"[..])]
        );

        // delete, with and without a cas compare.
        let cas_n1 = got[0].as_ref().unwrap().item.cas;
        assert_eq!(
            s.delete(
                b("n1"),
                DeleteOptions {
                    cas_compare: Some(cas_n1 ^ 1),
                    invalidate: None
                }
            )
            .await
            .unwrap(),
            DeleteOutcome::Exists
        );
        assert_eq!(
            s.delete(
                b("n1"),
                DeleteOptions {
                    cas_compare: Some(cas_n1),
                    invalidate: None
                }
            )
            .await
            .unwrap(),
            DeleteOutcome::Deleted
        );
        assert_eq!(
            s.delete(b("n1"), DeleteOptions::default()).await.unwrap(),
            DeleteOutcome::NotFound
        );
        assert_eq!(s.get(&[b("n1")], none).await.unwrap(), vec![None]);

        // incr / decr.
        let arith = |incr, delta, vivify| Arith {
            incr,
            delta,
            vivify,
            touch: None,
            cas_compare: None,
        };
        assert_eq!(
            s.arith(b("cnt"), arith(true, 1, None)).await.unwrap(),
            ArithOutcome::NotFound
        );
        let ArithOutcome::Value { value, cas, .. } = s
            .arith(b("cnt"), arith(true, 5, Some((10, Expiry::Never))))
            .await
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(value, 10, "vivify stores the initial value");
        assert_ne!(cas, 0);
        let ArithOutcome::Value { value, .. } =
            s.arith(b("cnt"), arith(true, 5, None)).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(value, 15);
        let ArithOutcome::Value { value, .. } =
            s.arith(b("cnt"), arith(false, 100, None)).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(value, 0, "decr floors at 0");
        s.store(
            StoreMode::Set,
            b("big"),
            item(&u64::MAX.to_string(), 0),
            None,
        )
        .await
        .unwrap();
        let ArithOutcome::Value { value, .. } =
            s.arith(b("big"), arith(true, 2, None)).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(value, 1, "incr wraps at 2^64");
        assert_eq!(
            s.arith(b("a"), arith(true, 1, None)).await.unwrap(),
            ArithOutcome::NonNumeric
        );

        // touch / gat / expiry in the past.
        let later = s.now_secs() + 3600;
        assert!(s.touch(b("a"), Expiry::At(later)).await.unwrap());
        assert!(!s.touch(b("missing"), Expiry::At(later)).await.unwrap());
        let f = s.get(&[b("a")], none).await.unwrap().remove(0).unwrap();
        assert_eq!(f.item.expiry, Expiry::At(later));
        let gat = GetOptions {
            touch: Some(Expiry::At(later + 1)),
            vivify: None,
        };
        let f = s.get(&[b("a"), b("missing")], gat).await.unwrap();
        assert_eq!(f[0].as_ref().unwrap().item.expiry, Expiry::At(later + 1));
        assert!(f[1].is_none());
        s.store(
            StoreMode::Set,
            b("old"),
            NewItem {
                expiry: Expiry::At(s.now_secs() - 1),
                ..item("x", 0)
            },
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            s.get(&[b("old")], none).await.unwrap(),
            vec![None],
            "an expiry in the past is already expired"
        );

        // mg N: the first miss wins the recache token.
        let viv = GetOptions {
            touch: None,
            vivify: Some(Expiry::At(later)),
        };
        let f = s.get(&[b("viv")], viv).await.unwrap().remove(0).unwrap();
        assert_eq!(f.token, Some(RecacheToken::Win));
        assert!(f.item.value.is_empty());
        let f = s.get(&[b("viv")], viv).await.unwrap().remove(0).unwrap();
        assert_eq!(f.token, None);

        // stats are the cluster's; flush_all empties it.
        let st = s.stats().await.unwrap();
        assert!(st.curr_items >= 4, "{st:?}");
        s.flush_all(None).await.unwrap();
        assert_eq!(
            s.get(&[b("a"), b("cnt"), b("big")], none).await.unwrap(),
            vec![None, None, None]
        );
        // Only the expired item "old" may still be counted (as memcached, an expired item counts
        // until it is reclaimed); everything live is gone.
        let after = s.stats().await.unwrap().curr_items;
        assert!(
            after <= 1 && after < st.curr_items,
            "curr_items {after} after flush_all"
        );
    });
}

fn line(r: &mut impl BufRead) -> String {
    let mut l = String::new();
    let n = r
        .read_line(&mut l)
        .expect("an answer before the socket timeout (no hang)");
    assert!(n > 0, "dkc-memcached closed the connection");
    l
}

/// Kills the front on drop.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dkc-memcached `--backend cluster` on the cluster's slave chmpx, on a free port; its address.
fn start_front(cluster: &Cluster, storage_timeout_ms: &str) -> (Kill, String) {
    let mut mc = Command::new(env!("CARGO_BIN_EXE_dkc-memcached"))
        .args([
            "--backend",
            "cluster",
            "--port",
            "0",
            "--storage-timeout-ms",
            storage_timeout_ms,
            "--conf",
        ])
        .arg(&cluster.conf)
        .args(["--ctlport", &cluster.slave_ctlport.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(mc.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .to_string();
    (Kill(mc), addr)
}

/// Reads one `VALUE` block's data and its CRLF, then returns the header line.
fn value(r: &mut impl BufRead, len: usize) -> (String, Vec<u8>) {
    let header = line(r);
    let mut data = vec![0u8; len + 2];
    r.read_exact(&mut data)
        .unwrap_or_else(|e| panic!("{len} bytes of data after {header:?}: {e}"));
    assert_eq!(
        &data[len..],
        b"\r\n",
        "{header:?}: data not followed by CRLF"
    );
    data.truncate(len);
    (header, data)
}

/// The largest item memcached 1.6 takes with its default `-I 1m` (a 1,048,516-byte value under
/// key "a", see the differential test) is stored in the cluster and read back whole, alone and
/// in a multi-key get with another large one; one byte more gets memcached's answer. With the
/// default MAXPAYLOAD a request for a 1 MiB value fits the attach transport and dkc-server's
/// value limit.
#[test]
fn memcached_cluster_front_takes_the_largest_item_memcached_takes() {
    let cluster = Cluster::start();
    let (_front, addr) = start_front(&cluster, "8000");
    let s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(FAILURE_ANSWER_MAX)).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let big: Vec<u8> = (0..LARGEST_ITEM_VALUE).map(|i| (i % 251) as u8).collect();
    let other: Vec<u8> = (0..LARGEST_ITEM_VALUE - 1000)
        .map(|i| (i % 241) as u8)
        .collect();
    for (key, v) in [("a", &big), ("b", &other)] {
        w.write_all(format!("set {key} 5 0 {}\r\n", v.len()).as_bytes())
            .unwrap();
        w.write_all(v).unwrap();
        w.write_all(b"\r\n").unwrap();
        assert_eq!(line(&mut r), "STORED\r\n", "set {key} of {} bytes", v.len());
    }
    w.write_all(b"get a\r\n").unwrap();
    let (header, data) = value(&mut r, big.len());
    assert_eq!(header, format!("VALUE a 5 {}\r\n", big.len()));
    assert!(data == big, "value of a differs");
    assert_eq!(line(&mut r), "END\r\n");
    w.write_all(b"get a b\r\n").unwrap();
    let (header, data) = value(&mut r, big.len());
    assert_eq!(header, format!("VALUE a 5 {}\r\n", big.len()));
    assert!(data == big, "value of a differs in the multi-key get");
    let (header, data) = value(&mut r, other.len());
    assert_eq!(header, format!("VALUE b 5 {}\r\n", other.len()));
    assert!(data == other, "value of b differs in the multi-key get");
    assert_eq!(line(&mut r), "END\r\n");
    // One byte more: memcached's own answer, and, as memcached does, the refused set removes
    // the old item (a reader must not see the value the client meant to replace).
    w.write_all(format!("set a 0 0 {}\r\n", LARGEST_ITEM_VALUE + 1).as_bytes())
        .unwrap();
    w.write_all(&vec![b'y'; LARGEST_ITEM_VALUE + 1]).unwrap();
    w.write_all(b"\r\n").unwrap();
    assert_eq!(line(&mut r), "SERVER_ERROR object too large for cache\r\n");
    w.write_all(b"get a b\r\n").unwrap();
    let (header, data) = value(&mut r, other.len());
    assert_eq!(header, format!("VALUE b 5 {}\r\n", other.len()));
    assert!(data == other, "value of b differs");
    assert_eq!(line(&mut r), "END\r\n", "a is gone after the refused set");
}

/// memcached 1.6's largest value under a 1-byte key with `-I 1m` (its item header, key and
/// suffix take the rest of the MiB).
const LARGEST_ITEM_VALUE: usize = 1_048_516;

#[test]
fn memcached_cluster_front_answers_server_error_when_the_cluster_is_gone() {
    let mut cluster = Cluster::start();
    let (_guard, addr) = start_front(&cluster, "8000");
    let s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(FAILURE_ANSWER_MAX)).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);

    w.write_all(b"set k 3 0 5\r\nhello\r\nget k\r\n").unwrap();
    assert_eq!(line(&mut r), "STORED\r\n");
    assert_eq!(line(&mut r), "VALUE k 3 5\r\n");
    let mut body = [0u8; 7];
    r.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"hello\r\n");
    assert_eq!(line(&mut r), "END\r\n");

    // Every dkc-server gone: requests are answered with SERVER_ERROR, the connection stays.
    let names: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("dkc-server-{}", n.ctlport))
        .collect();
    for n in &names {
        assert!(cluster.kill(n));
    }
    for req in [
        "get k\r\n",
        "set k 0 0 1\r\nx\r\n",
        "incr n 1\r\n",
        "stats\r\n",
    ] {
        let t = Instant::now();
        w.write_all(req.as_bytes()).unwrap();
        let mut l = line(&mut r);
        if req.starts_with("stats") {
            // stats prints the front's own counters; the cluster part must fail loudly.
            while !l.starts_with("SERVER_ERROR") && l != "END\r\n" {
                l = line(&mut r);
            }
        }
        assert!(
            l.starts_with("SERVER_ERROR "),
            "{req:?} answered {l:?} with no dkc-server"
        );
        assert!(
            t.elapsed() < FAILURE_ANSWER_MAX,
            "{req:?} took {:?}",
            t.elapsed()
        );
        eprintln!(
            "{:?} -> {} in {:?}",
            req.trim_end(),
            l.trim_end(),
            t.elapsed()
        );
    }
    w.write_all(b"version\r\n").unwrap();
    assert!(
        line(&mut r).starts_with("VERSION "),
        "the connection survives cluster errors"
    );
}
