//! The driver against a real local cluster (3 chmpx servers + 3 dkc-server + 1 slave chmpx):
//! every command's success and error paths, a CAS-loop counter shared by 8 clients, scans
//! across nodes with a resumable cursor, the async client, and flush.
//!
//! Needs the chmpx and dkc-server binaries: `cargo build --release -p chmpx -p dkc-server`,
//! then `cargo test --release -p dkc-client --test client_cluster`.

mod client_support;

use std::collections::BTreeSet;
use std::time::Duration;

use client_support::Cluster;
use dkc_client::client::{AsyncClient, ClientError, Expiry, ScanQuery, StoreOptions};

#[test]
fn client_every_command_succeeds_and_fails_as_documented() {
    let cluster = Cluster::start();
    let c = cluster.client();
    let none = StoreOptions::new();

    // set / get, binary-safe, flags kept.
    let key: &[u8] = b"bin\x00key\xff";
    let v1 = c
        .set(key, b"\x00\x01value\xfe", none.flags(42))
        .expect("set");
    let item = c.get(key).expect("get").expect("stored item");
    assert_eq!(item.value, b"\x00\x01value\xfe");
    assert_eq!((item.flags, item.version), (42, v1));
    assert!(c.get("missing").expect("get missing").is_none());

    // add: fresh key ok, existing key -> Exists.
    c.add("a", "1", none).expect("add fresh");
    assert!(matches!(
        c.add("a", "2", none),
        Err(ClientError::Exists { .. })
    ));
    // replace: existing ok, missing -> NotStored.
    c.replace("a", "3", none).expect("replace");
    assert!(matches!(
        c.replace("nope", "x", none),
        Err(ClientError::NotStored { .. })
    ));
    // append / prepend.
    c.append("a", "4").expect("append");
    c.prepend("a", "2").expect("prepend");
    assert_eq!(c.get("a").unwrap().unwrap().value, b"234");
    assert!(matches!(
        c.append("nope", "x"),
        Err(ClientError::NotStored { .. })
    ));
    assert!(matches!(
        c.prepend("nope", "x"),
        Err(ClientError::NotStored { .. })
    ));

    // cas: right version ok, stale version -> CasMismatch, gone -> NotFound.
    let v = c.get("a").unwrap().unwrap().version;
    let v2 = c
        .cas("a", "cas1", v, none)
        .expect("cas with the live version");
    assert!(v2 > v, "a new version is minted");
    assert!(matches!(
        c.cas("a", "cas2", v, none),
        Err(ClientError::CasMismatch { .. })
    ));
    assert!(matches!(
        c.cas("nope", "x", v, none),
        Err(ClientError::NotFound { .. })
    ));

    // delete, delete with cas.
    assert!(matches!(
        c.delete_if("a", v),
        Err(ClientError::CasMismatch { .. })
    ));
    c.delete_if("a", v2).expect("delete with the live version");
    assert!(c.get("a").unwrap().is_none());
    assert!(matches!(c.delete("a"), Err(ClientError::NotFound { .. })));

    // incr / decr.
    assert!(matches!(
        c.incr("n", 1, None, Expiry::Never),
        Err(ClientError::NotFound { .. })
    ));
    assert_eq!(c.incr("n", 5, Some(10), Expiry::Never).unwrap(), 10);
    assert_eq!(c.incr("n", 5, None, Expiry::Never).unwrap(), 15);
    assert_eq!(
        c.decr("n", 20, None, Expiry::Never).unwrap(),
        0,
        "decr floors at 0"
    );
    c.set("text", "abc", none).unwrap();
    assert!(matches!(
        c.incr("text", 1, None, Expiry::Never),
        Err(ClientError::NotNumeric { .. })
    ));

    // touch / get_and_touch.
    c.touch("text", Expiry::In(Duration::from_secs(3600)))
        .expect("touch");
    assert!(matches!(
        c.touch("nope", Expiry::Never),
        Err(ClientError::NotFound { .. })
    ));
    let far = 4_000_000_000;
    let got = c
        .get_and_touch("text", Expiry::At(far))
        .unwrap()
        .expect("gat item");
    assert_eq!(got.value, b"abc");
    assert_eq!(c.get("text").unwrap().unwrap().expire_at, far);
    assert!(c.get_and_touch("nope", Expiry::Never).unwrap().is_none());

    // get_many: request order, missing left out.
    c.set("m1", "one", none).unwrap();
    c.set("m2", "two", none).unwrap();
    let many = c.get_many(&["m2", "nope", "m1"]).expect("get_many");
    let pairs: Vec<(&[u8], &[u8])> = many
        .iter()
        .map(|i| (i.key.as_slice(), i.value.as_slice()))
        .collect();
    assert_eq!(pairs, [(&b"m2"[..], &b"two"[..]), (b"m1", b"one")]);
    // More keys than one wave of requests in flight.
    let keys: Vec<String> = (0..600).map(|i| format!("m{}", i % 3)).collect();
    let many = c.get_many(&keys).expect("get_many in waves");
    assert_eq!(
        many.len(),
        400,
        "m0 is missing, m1 and m2 are found 200 times each"
    );
    assert!(many.iter().all(|i| i.key != b"m0"));

    // subkeys.
    c.set("parent", "p", none).unwrap();
    c.set("child1", "c1", none).unwrap();
    c.set("child2", "c2", none).unwrap();
    c.set("grandchild", "g", none).unwrap();
    c.set_subkeys("parent", &["child1"]).unwrap();
    c.add_subkey("parent", "child2").unwrap();
    c.add_subkey("parent", "child2").unwrap();
    assert_eq!(
        c.list_subkeys("parent").unwrap(),
        vec![b"child1".to_vec(), b"child2".to_vec()]
    );
    c.remove_subkey("parent", "child1").unwrap();
    assert!(matches!(
        c.remove_subkey("parent", "child1"),
        Err(ClientError::NotFound { .. })
    ));
    assert!(matches!(
        c.list_subkeys("nope"),
        Err(ClientError::NotFound { .. })
    ));
    c.clear_subkeys("parent").unwrap();
    assert!(c.list_subkeys("parent").unwrap().is_empty());
    c.set_subkeys("parent", &["child1", "child2"]).unwrap();
    c.set_subkeys("child2", &["grandchild", "parent"]).unwrap(); // a cycle
    assert_eq!(c.delete_with_children("parent").unwrap(), 4);
    for k in ["parent", "child1", "child2", "grandchild"] {
        assert!(c.get(k).unwrap().is_none(), "{k} deleted with its parent");
    }
    assert!(matches!(
        c.delete_with_children("parent"),
        Err(ClientError::NotFound { .. })
    ));

    // Too large: the client's body limit (MAXPAYLOAD) or the server's value limit.
    let big = vec![b'x'; 2 << 20];
    match c.set("big", &big, none) {
        Err(ClientError::TooLarge { limit, .. }) => {
            assert!(limit > 0 && limit <= chmpx::config::defaults::MAXPAYLOAD_DEFAULT)
        }
        other => panic!("2 MiB value: {other:?}"),
    }

    // stats: one entry per server node, each with counters.
    let stats = c.stats().expect("stats");
    assert_eq!(stats.len(), 3);
    for n in &stats {
        assert!(n.stats.as_ref().is_ok_and(|m| !m.is_empty()), "{n:?}");
    }

    // flush needs the confirmation; nothing is sent without it.
    assert!(matches!(
        c.flush(false),
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(c.get("m1").unwrap().is_some());
    assert!(c.flush(true).expect("flush") >= 2);
    for k in ["m1", "m2", "n", "text"] {
        assert!(c.get(k).unwrap().is_none(), "{k} flushed");
    }
}

#[test]
fn client_eight_clients_cas_loop_counter_ends_exact() {
    const CLIENTS: usize = 8;
    const INCREMENTS: u64 = 25;
    let cluster = Cluster::start();
    let c = cluster.client();
    c.set("counter", "0", StoreOptions::new()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let conflicts: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let client = cluster.client();
                s.spawn(move || {
                    let mut conflicts = 0;
                    for _ in 0..INCREMENTS {
                        loop {
                            assert!(std::time::Instant::now() < deadline, "CAS loop too slow");
                            let item = client.get("counter").unwrap().expect("counter");
                            let n: u64 = std::str::from_utf8(&item.value).unwrap().parse().unwrap();
                            match client.cas(
                                "counter",
                                (n + 1).to_string(),
                                item.version,
                                StoreOptions::new(),
                            ) {
                                Ok(_) => break,
                                Err(ClientError::CasMismatch { .. }) => conflicts += 1,
                                Err(e) => panic!("cas: {e}"),
                            }
                        }
                    }
                    conflicts
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let total = c.get("counter").unwrap().unwrap().value;
    assert_eq!(
        String::from_utf8(total).unwrap(),
        (CLIENTS as u64 * INCREMENTS).to_string(),
        "{conflicts} conflicts were retried"
    );
}

#[test]
fn client_scan_across_nodes_is_ordered_and_resumable() {
    let cluster = Cluster::start();
    let c = cluster.client();
    let mut want = BTreeSet::new();
    for i in 0..120u32 {
        let k = format!("s:{:04}", (i * 7919) % 1000);
        c.set(&k, format!("v{i}"), StoreOptions::new()).unwrap();
        want.insert(k.into_bytes());
    }
    for k in ["r:1", "t:1", "s", "s;"] {
        c.set(k, "other", StoreOptions::new()).unwrap();
    }
    // The keys really are spread: every server node holds a share of them.
    for n in c.stats().unwrap() {
        let items = n.stats.as_ref().unwrap().get("curr_items").copied();
        assert!(items.unwrap_or(0) > 10, "{}: {items:?} items", n.node);
    }

    // Prefix scan in pages of 7, resumed with the cursor.
    let mut query = ScanQuery::prefix("s:").limit(7);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls < 100, "scan does not end");
        let batch = c.scan(&query).expect("scan");
        assert!(batch.items.len() <= 7);
        assert!(batch.missing_nodes.is_empty());
        for i in &batch.items {
            assert!(i.value.starts_with(b"v"), "values come with the items");
        }
        got.extend(batch.items.into_iter().map(|i| i.key));
        match batch.cursor {
            Some(cur) => query = query.after(Some(cur)),
            None => break,
        }
    }
    let want: Vec<Vec<u8>> = want.into_iter().collect();
    assert_eq!(got, want, "every key once, in byte order");
    assert!(calls >= 120 / 7, "the cursor paged ({calls} calls)");

    // Range scan, keys only.
    let batch = c
        .scan(
            &ScanQuery::range("s:0100", Some(b"s:0200".to_vec()))
                .limit(1000)
                .keys_only(true),
        )
        .unwrap();
    let expect: Vec<&Vec<u8>> = want
        .iter()
        .filter(|k| k.as_slice() >= &b"s:0100"[..] && k.as_slice() < &b"s:0200"[..])
        .collect();
    assert_eq!(
        batch.items.iter().map(|i| &i.key).collect::<Vec<_>>(),
        expect
    );
    assert!(batch.items.iter().all(|i| i.value.is_empty()));
    assert_eq!(batch.cursor, None);
    assert!(matches!(
        c.scan(&ScanQuery::all().limit(0)),
        Err(ClientError::InvalidArgument(_))
    ));
}

#[test]
fn client_async_commands_and_parallel_get_many() {
    let cluster = Cluster::start();
    let c = cluster.client().to_async();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for i in 0..20 {
            c.set(format!("ak{i}"), format!("{i}"), StoreOptions::new())
                .await
                .unwrap();
        }
        let keys: Vec<String> = (0..25).map(|i| format!("ak{i}")).collect();
        let items = c.get_many(&keys).await.unwrap();
        assert_eq!(items.len(), 20);
        for (i, item) in items.iter().enumerate() {
            assert_eq!(item.key, format!("ak{i}").into_bytes());
        }
        // Concurrent incr from many tasks: incr is atomic at the primary.
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.incr("ac", 1, Some(1), Expiry::Never).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(c.get("ac").await.unwrap().unwrap().value, b"16");
        assert!(matches!(
            c.add("ak1", "x", StoreOptions::new()).await,
            Err(ClientError::Exists { .. })
        ));
        // Attaching by cluster name and control port finds the same three server nodes.
        let by_name =
            AsyncClient::connect(&cluster.group, cluster.slave_ctlport, cluster.options())
                .await
                .expect("connect by cluster name");
        assert_eq!(by_name.topology().servers, c.topology().servers);
        assert_eq!(by_name.get("ak3").await.unwrap().unwrap().value, b"3");
        assert!(matches!(
            AsyncClient::connect("othergroup", cluster.slave_ctlport, cluster.options()).await,
            Err(ClientError::Config(_))
        ));
        let s = c.scan(&ScanQuery::prefix("ak").limit(100)).await.unwrap();
        assert_eq!(s.items.len(), 20);
        assert_eq!(c.stats().await.unwrap().len(), 3);
        // A tiny per-call timeout is honoured (the call cannot wait 5 s).
        let started = std::time::Instant::now();
        let _ = c.with_timeout(Duration::from_millis(1)).get("ak1").await;
        assert!(started.elapsed() < Duration::from_secs(3));
    });
}

#[test]
fn client_survives_a_slave_chmpx_restart() {
    let mut cluster = Cluster::start();
    let c = cluster.client();
    c.set("keep", "v", StoreOptions::new()).unwrap();
    let slave = format!("chmpx-{}", cluster.slave_ctlport);
    assert!(cluster.kill(&slave));
    // While chmpx is down: a clear "unavailable", no panic, no hang.
    match c.with_timeout(Duration::from_millis(300)).get("keep") {
        Err(e) => assert!(e.is_unavailable(), "{e}"),
        Ok(v) => panic!("answer without chmpx: {v:?}"),
    }
    cluster.restart_slave();
    // The client re-attaches by itself; reads are retried.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match c.get("keep") {
            Ok(Some(item)) => {
                assert_eq!(item.value, b"v");
                break;
            }
            Ok(None) => panic!("item lost"),
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "no re-attach after the slave restarted: {e}\n{}",
                cluster.logs()
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
