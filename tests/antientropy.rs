//! Anti-entropy (DESIGN.md §6, ANTIENTROPY in conf/README.md): a replica that diverged WITHOUT
//! going DOWN converges by itself, and owners that already agree copy nothing.
//!
//! 3 server nodes + 1 slave on one host, REPLICA 1, ack `all`, ANTIENTROPY 1-2 s. The
//! divergence is made through the merge protocol itself, sent straight to one node's
//! dkc-server (`Route::Node`, the path the harness's digest checks use): `DropRange` loses a
//! slot's items and tombstones on one owner (a replica that missed writes), and `ApplyItems` of
//! a batch fetched before some keys were deleted puts their old live values back on that owner
//! while its co-owner holds the newer tombstones (a replica that missed deletes). No process
//! stops, no link goes DOWN, nobody types a command: only the periodic rounds can repair it.
//! A third scenario (root only, for the tmpfs) fills one node's disk until it refuses writes
//! as a replica (`E_NO_SPACE`, applied on the primary only), frees the space, and expects the
//! owners to converge with no restart. With ANTIENTROPY = 0 both repair scenarios fail.

use std::time::{Duration, Instant};

use chmpx::attach::Route;
use chmpx::daemon::status::MergeTotals;
use chmpx::merge::protocol::{self as mp, MergeRequest, MergeResponse};
use chmpx::placement::{slot_hash_range, NodeId, PlacementMap};
use dkc_tests::control;
use dkc_tests::direct::digest_mismatches;
use dkc_tests::{AttachKv, Cluster, ClusterSpec, Kv};
use dkc_tools::netns::disk::Tmpfs;

/// Anti-entropy interval of the convergence scenario, seconds.
const ANTIENTROPY_CONVERGE_S: u64 = 2;
/// Anti-entropy interval of the nothing-to-copy scenario, seconds.
const ANTIENTROPY_QUIET_S: u64 = 1;
/// Keys written before the divergence.
const KEYS: u32 = 400;
/// Bound on every owner's digests becoming equal after the divergence: a few intervals,
/// generous for a loaded 2-core machine.
const CONVERGE_MAX: Duration = Duration::from_secs(25);
/// Bound on waiting for anti-entropy rounds to happen.
const ROUNDS_WAIT_MAX: Duration = Duration::from_secs(20);
/// Rounds every server must run in the nothing-to-copy window.
const QUIET_ROUNDS: u64 = 2;
/// Bound on the cluster settling after start.
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// Poll interval of the waits.
const POLL_MS: u64 = 200;
/// Size of the full-disk node's tmpfs, bytes (its k2hash file starts at 4 MiB).
const TMPFS_BYTES: u64 = 8 * 1024 * 1024;
/// Ballast on that tmpfs, removed to free space, bytes.
const BALLAST_BYTES: usize = 2 * 1024 * 1024;
/// Bytes of every value of the full-disk scenario.
const FULL_VALUE_BYTES: usize = 8 * 1024;
/// Writes the full node refused as a replica (acknowledged nowhere else but applied on the
/// primary) after which filling stops.
const REPLICA_REFUSALS: usize = 10;
/// Bound on the fill writes (the disk holds a few hundred values).
const FILL_WRITES_MAX: u32 = 5_000;
/// The node whose disk fills (index into the cluster's servers).
const FULL: usize = 1;
/// Bound on each scenario.
const RUN_MAX: Duration = Duration::from_secs(90);

const _: () = assert!(REPLICA_REFUSALS * (FULL_VALUE_BYTES + 1024) < BALLAST_BYTES);

/// A 3-node cluster configured with ANTIENTROPY = `interval_s` (the harness's config, with the
/// key added to [GLOBAL]); nothing started.
fn configure(interval_s: u64) -> Cluster {
    let c = Cluster::configure(ClusterSpec::new(3)).unwrap_or_else(|e| panic!("{e}"));
    let ini = std::fs::read_to_string(&c.conf).expect("the harness wrote the config");
    let ini = ini.replacen(
        "[GLOBAL]\n",
        &format!("[GLOBAL]\nANTIENTROPY = {interval_s}\n"),
        1,
    );
    chmpx::config::Config::parse_str(&ini, &c.conf)
        .unwrap_or_else(|e| panic!("config with ANTIENTROPY refused: {e}"));
    std::fs::write(&c.conf, ini).expect("rewrite the config");
    c
}

/// Starts every process of `c` and waits until the cluster is ready and settled.
fn start_all(c: &mut Cluster) {
    for n in c.servers.iter_mut().chain(c.slaves.iter_mut()) {
        n.start().unwrap_or_else(|e| panic!("{e}"));
    }
    c.wait_ready();
    c.wait_settled(SETTLE_MAX);
}

/// A started 3-node cluster with ANTIENTROPY = `interval_s`.
fn start(interval_s: u64) -> Cluster {
    let mut c = configure(interval_s);
    start_all(&mut c);
    c
}

/// The merge totals `ctlport`'s daemon reports about itself (zero before anything happened).
fn totals(ctlport: u16) -> Option<MergeTotals> {
    let r = control::status(ctlport)?;
    let me = r.nodes.iter().find(|n| n.is_self)?;
    Some(me.progress.map(|p| p.totals).unwrap_or_default())
}

/// Every server's totals, in server order; panics when one does not answer.
fn all_totals(c: &Cluster) -> Vec<MergeTotals> {
    c.servers
        .iter()
        .map(|s| totals(s.ctlport).unwrap_or_else(|| panic!("{} gives no status", s.id)))
        .collect()
}

/// Lines holding `text` in every server's chmpx log.
fn log_count(c: &Cluster, text: &str) -> usize {
    c.servers
        .iter()
        .map(|s| {
            std::fs::read_to_string(&s.chmpx.log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(text))
                .count()
        })
        .sum()
}

fn node_route(node: &NodeId) -> Route {
    Route::Node(chmpx::daemon::node_number(node.as_str()))
}

/// Sends one merge request straight to `node`'s dkc-server.
fn merge_call(kv: &AttachKv, node: &NodeId, req: &MergeRequest) -> MergeResponse {
    let body = mp::encode_request(req).expect("encode merge request");
    let answer = kv
        .raw(node_route(node), &body)
        .unwrap_or_else(|e| panic!("merge request to {node}: {e}"));
    mp::decode_response(&answer).unwrap_or_else(|e| panic!("answer from {node}: {e}"))
}

fn key(i: u32) -> Vec<u8> {
    format!("ae-{i:05}").into_bytes()
}

fn value(i: u32, round: u32) -> Vec<u8> {
    format!("value-{i}-round-{round}").into_bytes()
}

/// Keys `0..KEYS` of `slot`.
fn keys_in(map: &PlacementMap, slot: u32) -> Vec<u32> {
    (0..KEYS)
        .filter(|i| map.slot_of(k2hash::key_hash(&key(*i))) == slot)
        .collect()
}

/// A slot of `victim` where it is at rank `rank` in the owner chain and that holds at least
/// `min_keys` of the keys; none of `not`.
fn pick_slot(
    map: &PlacementMap,
    victim: &NodeId,
    rank: usize,
    min_keys: usize,
    not: &[u32],
) -> u32 {
    (0..map.slot_count())
        .filter(|s| !not.contains(s))
        .find(|s| map.owners(*s).get(rank) == Some(victim) && keys_in(map, *s).len() >= min_keys)
        .unwrap_or_else(|| panic!("no slot with {victim} at rank {rank} holding {min_keys} keys"))
}

fn wait_converged(kv: &AttachKv, map: &PlacementMap, max: Duration) -> (Vec<String>, Duration) {
    let t = Instant::now();
    let mut bad = digest_mismatches(kv, map);
    while !bad.is_empty() && t.elapsed() < max {
        std::thread::sleep(Duration::from_millis(POLL_MS));
        bad = digest_mismatches(kv, map);
    }
    (bad, t.elapsed())
}

#[test]
fn a_replica_that_diverged_without_going_down_converges_by_itself() {
    let t0 = Instant::now();
    let c = start(ANTIENTROPY_CONVERGE_S);
    let kv = c.client();
    let map = c.placement();
    let victim = c.servers[1].id.clone();
    for i in 0..KEYS {
        kv.set(&key(i), &value(i, 0), 0)
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    let (bad, _) = wait_converged(&kv, &map, CONVERGE_MAX);
    assert!(
        bad.is_empty(),
        "owners differ after ack-all writes: {bad:#?}"
    );

    // Slot T: the victim is a replica (its co-owner drives the check and pushes).
    // Slot U: the victim is first owner (it drives the check and pulls).
    let slot_t = pick_slot(&map, &victim, 1, 4, &[]);
    let slot_u = pick_slot(&map, &victim, 0, 2, &[slot_t]);
    let deleted: Vec<u32> = keys_in(&map, slot_t).into_iter().take(3).collect();
    // The victim's copies of the keys about to be deleted, as a merge batch.
    let old_batch = match merge_call(
        &kv,
        &victim,
        &MergeRequest::FetchItems {
            keys: deleted
                .iter()
                .map(|i| serde_bytes::ByteBuf::from(key(*i)))
                .collect(),
        },
    ) {
        MergeResponse::Items { batch, count, .. } => {
            assert_eq!(count as usize, deleted.len(), "the victim holds the keys");
            batch
        }
        other => panic!("FetchItems answered {other:?}"),
    };
    for i in &deleted {
        assert!(kv
            .delete(&key(*i))
            .unwrap_or_else(|e| panic!("delete {i}: {e}")));
    }
    let (bad, _) = wait_converged(&kv, &map, CONVERGE_MAX);
    assert!(
        bad.is_empty(),
        "owners differ after ack-all deletes: {bad:#?}"
    );
    let before = all_totals(&c);
    let merges_before = log_count(&c, "merge started");

    // Diverge the victim: T loses everything, then gets back the old live values of the keys
    // its co-owner holds tombstones of; U loses everything.
    for slot in [slot_t, slot_u] {
        let (lo, hi) = slot_hash_range(slot, map.slot_count());
        match merge_call(&kv, &victim, &MergeRequest::DropRange { lo, hi }) {
            MergeResponse::Dropped { dropped, .. } => {
                assert!(dropped > 0, "slot {slot} held items")
            }
            other => panic!("DropRange answered {other:?}"),
        }
    }
    match merge_call(&kv, &victim, &MergeRequest::ApplyItems { batch: old_batch }) {
        MergeResponse::Applied { applied, .. } => assert_eq!(applied as usize, deleted.len()),
        other => panic!("ApplyItems answered {other:?}"),
    }
    let diverged = digest_mismatches(&kv, &map);
    assert_eq!(
        diverged.len(),
        2,
        "exactly slots {slot_t} and {slot_u} differ: {diverged:#?}"
    );
    let stale = kv
        .get_from(&victim, &key(deleted[0]))
        .expect("read from the victim");
    assert!(
        stale.is_some(),
        "the victim holds a deleted key's old value"
    );

    // Nothing else happens: no node goes down, no command. Anti-entropy repairs it.
    let (bad, took) = wait_converged(&kv, &map, CONVERGE_MAX);
    println!(
        "diverged slots {slot_t} (victim replica) and {slot_u} (victim first owner): \
         converged in {:.1}s with ANTIENTROPY={ANTIENTROPY_CONVERGE_S}",
        took.as_secs_f64()
    );
    assert!(
        bad.is_empty(),
        "owners still differ {CONVERGE_MAX:?} after the divergence: {bad:#?}\n{}",
        c.logs()
    );
    for i in &deleted {
        assert_eq!(
            kv.get_from(&victim, &key(*i))
                .expect("read from the victim"),
            None,
            "the newer tombstone of key {i} won on the victim"
        );
    }
    for i in keys_in(&map, slot_t)
        .into_iter()
        .chain(keys_in(&map, slot_u))
    {
        if deleted.contains(&i) {
            continue;
        }
        let held = kv.get_from(&victim, &key(i)).expect("read from the victim");
        assert_eq!(
            held.map(|it| it.value),
            Some(value(i, 0)),
            "key {i} restored"
        );
    }

    // Visible: the rounds counted what they repaired; no recovery merge ran, nothing went DOWN.
    // (The status snapshot is refreshed on the daemon's tick: wait for the round's end.)
    let sum = |t: &[MergeTotals], f: fn(&MergeTotals) -> u64| t.iter().map(f).sum::<u64>();
    let repaired_since = |now: &[MergeTotals]| {
        sum(now, |t| t.antientropy_slots_repaired) - sum(&before, |t| t.antientropy_slots_repaired)
    };
    let t = Instant::now();
    let mut after = all_totals(&c);
    while repaired_since(&after) < 2 && t.elapsed() < ROUNDS_WAIT_MAX {
        std::thread::sleep(Duration::from_millis(POLL_MS));
        after = all_totals(&c);
    }
    let repaired = repaired_since(&after);
    let moved = sum(&after, |t| t.items_moved) - sum(&before, |t| t.items_moved);
    assert!(
        repaired >= 2,
        "both slots counted as repaired: {after:?}\n{}",
        c.logs()
    );
    assert!(
        moved >= keys_in(&map, slot_u).len() as u64,
        "items moved {moved}"
    );
    assert_eq!(
        log_count(&c, "merge started"),
        merges_before,
        "no merge job ran: anti-entropy did it\n{}",
        c.logs()
    );
    let r = c.status().expect("status");
    assert!(control::all_servers_ready(&r), "{}", control::summary(&r));
    assert!(
        log_count(&c, "anti-entropy round repaired slots") > 0,
        "no chmpx logged the repair\n{}",
        c.logs()
    );
    println!(
        "repaired {repaired} slots, moved {moved} items; run {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    assert!(t0.elapsed() < RUN_MAX, "took {:?}", t0.elapsed());
}

#[test]
fn owners_that_agree_copy_nothing() {
    let t0 = Instant::now();
    let c = start(ANTIENTROPY_QUIET_S);
    let kv = c.client();
    let map = c.placement();
    for i in 0..KEYS {
        kv.set(&key(i), &value(i, 1), 0)
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    let (bad, _) = wait_converged(&kv, &map, CONVERGE_MAX);
    assert!(
        bad.is_empty(),
        "owners differ after ack-all writes: {bad:#?}"
    );
    let before = all_totals(&c);
    // Every server runs QUIET_ROUNDS more rounds, each comparing the slots it is first owner of.
    let t = Instant::now();
    let mut now = all_totals(&c);
    while now
        .iter()
        .zip(&before)
        .any(|(n, b)| n.antientropy_rounds < b.antientropy_rounds + QUIET_ROUNDS)
    {
        assert!(
            t.elapsed() < ROUNDS_WAIT_MAX,
            "anti-entropy rounds do not come: before {before:?} now {now:?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(POLL_MS));
        now = all_totals(&c);
    }
    for ((n, b), s) in now.iter().zip(&before).zip(&c.servers) {
        let first_owned = map.primary_slots_of(&s.id).len() as u64;
        assert!(
            n.antientropy_slots_compared >= b.antientropy_slots_compared + first_owned,
            "{} compared {} slots in a round, it is first owner of {first_owned}",
            s.id,
            n.antientropy_slots_compared - b.antientropy_slots_compared
        );
        assert_eq!(
            n.antientropy_slots_repaired, b.antientropy_slots_repaired,
            "{}: nothing differed, nothing is repaired",
            s.id
        );
        assert_eq!(
            (n.items_moved, n.bytes_moved),
            (b.items_moved, b.bytes_moved),
            "{}: equal digests, nothing copied",
            s.id
        );
    }
    println!(
        "{} rounds over {} slots compared, none repaired; run {:.1}s",
        now.iter().map(|t| t.antientropy_rounds).sum::<u64>(),
        now.iter()
            .map(|t| t.antientropy_slots_compared)
            .sum::<u64>(),
        t0.elapsed().as_secs_f64()
    );
    assert!(t0.elapsed() < RUN_MAX, "took {:?}", t0.elapsed());
}

#[test]
fn a_replica_that_refused_writes_on_a_full_disk_converges_once_space_frees() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped full-disk anti-entropy: mounting a tmpfs needs root");
        return;
    }
    let t0 = Instant::now();
    let mut c = configure(ANTIENTROPY_CONVERGE_S);
    let full = c.servers[FULL].id.clone();
    let data_dir = c
        .dir()
        .join("data")
        .join(format!("{}-{}", c.group, c.servers[FULL].ctlport));
    // Declared after the cluster: unmounted first, then the cluster's processes are killed.
    let fs = Tmpfs::mount(&data_dir, TMPFS_BYTES).unwrap_or_else(|e| panic!("{e}"));
    let ballast = fs.mount.join("ballast");
    std::fs::write(&ballast, vec![0x5a; BALLAST_BYTES]).expect("ballast file");
    start_all(&mut c);
    let kv = c.client();
    let map = c.placement();

    // Fill until the full node refused enough writes as a replica: each of those is applied
    // on its primary only ("written on the primary"), so the owners differ.
    let mut refused: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut i = 0u32;
    while refused.len() < REPLICA_REFUSALS {
        assert!(
            i < FILL_WRITES_MAX,
            "{FILL_WRITES_MAX} writes and the {TMPFS_BYTES}-byte disk refused only {} as replica",
            refused.len()
        );
        let k = format!("fd-{i:06}").into_bytes();
        let mut v = format!("full-{i}-").into_bytes();
        v.resize(FULL_VALUE_BYTES, b'a' + (i % 26) as u8);
        i += 1;
        if let Err(e) = kv.set(&k, &v, 0) {
            let text = e.to_string();
            assert!(
                text.contains("no space"),
                "write {i}: expected E_NO_SPACE: {text}"
            );
            let rank = map
                .chain_for(k2hash::key_hash(&k))
                .iter()
                .position(|o| *o == full);
            if rank.is_some_and(|r| r > 0) {
                refused.push((k, v));
            }
        }
    }
    let diverged = digest_mismatches(&kv, &map);
    assert!(
        !diverged.is_empty(),
        "refused replica writes leave owners different"
    );
    let merges_before = log_count(&c, "merge started");
    let repairs_before = log_count(&c, "anti-entropy round repaired slots");

    // Free space. Nothing restarts, no link goes down, nobody types a command.
    std::fs::remove_file(&ballast).expect("remove the ballast");
    let (bad, took) = wait_converged(&kv, &map, CONVERGE_MAX);
    println!(
        "{} slots differed after {i} fill writes ({} refused by the replica); converged {:.1}s \
         after freeing space with ANTIENTROPY={ANTIENTROPY_CONVERGE_S}",
        diverged.len(),
        refused.len(),
        took.as_secs_f64()
    );
    assert!(
        bad.is_empty(),
        "owners still differ {CONVERGE_MAX:?} after space was freed: {bad:#?}\n{}",
        c.logs()
    );
    for (k, v) in &refused {
        let held = kv.get_from(&full, k).expect("read from the full node");
        assert_eq!(
            held.map(|it| it.value).as_ref(),
            Some(v),
            "the write the full node refused reached it"
        );
    }
    assert_eq!(
        log_count(&c, "merge started"),
        merges_before,
        "no merge job ran: anti-entropy did it"
    );
    assert!(
        log_count(&c, "anti-entropy round repaired slots") > repairs_before,
        "no chmpx logged the repair\n{}",
        c.logs()
    );
    println!("run {:.1}s", t0.elapsed().as_secs_f64());
    assert!(t0.elapsed() < RUN_MAX, "took {:?}", t0.elapsed());
}
