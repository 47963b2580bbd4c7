//! The server's workers and ack waiters over the real attach transport, with this test playing
//! chmpx: it delivers client requests, answers (or not) the Replicate requests the server sends
//! on the key's chain, and routes the server's own answers back as chmpx's router would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chmpx::attach::envelope::monotonic_now_ns;
use chmpx::attach::{
    AttachListener, AttachOptions, AttachedProcess, Attachment, Envelope, Kind, Role, Route,
};
use chmpx::config::AckLevel;
use chmpx::daemon::{FLAG_CHMPX_ERROR, FLAG_TARGET_COUNT};
use chmpx::merge::protocol::{self as mp, HashRange, MergeRequest, MergeResponse};
use dkc_client::proto::{
    decode_request, decode_response, encode_request, ErrorCode, Request, Response, SetMode,
    WireRecord,
};
use dkc_server::server::serve;
use dkc_server::server::worker::Shared;
use dkc_server::{Executor, ManualClock};

/// The client attachment id this fake chmpx pretends requests come from.
const CLIENT_ATTACHMENT: u64 = 999;
/// Our node number in routes.
const NODE: u64 = 7;
const RCV_TIMEOUT: Duration = Duration::from_millis(300);
/// The server's limit on a command's wait on its host (from chmpx's queue stamp). Above the
/// fence-queue waits of these tests (one RCV_TIMEOUT), so only the tests that stamp their
/// requests old meet it.
const QUEUE_AGE_MAX: Duration = Duration::from_millis(1000);
const _: () = assert!(QUEUE_AGE_MAX.as_millis() > 2 * RCV_TIMEOUT.as_millis());
const WAIT_MAX: Duration = Duration::from_secs(10);

/// What the fake chmpx does with a Replicate request from the server.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Chain {
    /// No other live owner: send the count notice 0.
    NoReplica,
    /// One replica, which acknowledges.
    OneAcks,
    /// One replica, which never answers.
    OneSilent,
    /// chmpx cannot reach the replica.
    Unreachable,
    /// Two replicas (REPLICA 2), both acknowledge.
    TwoAck,
    /// Two replicas, one acknowledges, the other never answers.
    OneOfTwoSilent,
    /// Two replicas, chmpx cannot reach either.
    TwoUnreachable,
    /// One replica, which holds a write the primary never saw (version `base + 1` of the
    /// replicated fenced record, value "theirs") and refuses the record as a conflict.
    OneConflicts,
}

/// Where [`FakeChmpx::run_until`] stops.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// The client's answer to this request id.
    Answer(u64),
    /// The server's next replication request, once answered.
    Replicated,
}

struct FakeChmpx {
    p: AttachedProcess,
    next_id: u64,
    replicated: Vec<Request>,
    /// How many of the next Replicate requests to leave unanswered whatever the chain says.
    silent_next: u32,
}

impl FakeChmpx {
    fn request(&mut self, body: Vec<u8>) -> u64 {
        self.request_queued_at(body, 0)
    }

    /// Delivers a client request whose queue stamp is `queued_ns` (0: stamped on delivery, as
    /// the daemon's router does; else the time chmpx took it in, which the transport keeps).
    fn request_queued_at(&mut self, body: Vec<u8>, queued_ns: u64) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let env = Envelope {
            msg_id: id,
            kind: Kind::Request,
            route: Route::Reply {
                node: NODE,
                attachment: CLIENT_ATTACHMENT,
                msg_id: id,
            },
            flags: 0,
            body,
            queued_ns,
        };
        self.p.send(&env).unwrap();
        id
    }

    /// Runs chmpx's side until the client's answer to `id` arrives.
    async fn answer(&mut self, id: u64, chain: Chain) -> Vec<u8> {
        self.run_until(Until::Answer(id), chain).await
    }

    /// Runs chmpx's side until the server has sent one replication request (answered as
    /// `chain` says): the request being replicated was taken, before any sent after this.
    async fn until_replicated(&mut self, chain: Chain) {
        self.run_until(Until::Replicated, chain).await;
    }

    async fn run_until(&mut self, until: Until, chain: Chain) -> Vec<u8> {
        let server_att = self.p.id();
        loop {
            let batch = tokio::time::timeout(WAIT_MAX, self.p.recv_batch(64))
                .await
                .expect("the server answers in time")
                .unwrap();
            for env in batch {
                match (env.kind, env.route) {
                    (
                        Kind::Response,
                        Route::Reply {
                            attachment, msg_id, ..
                        },
                    ) if attachment == CLIENT_ATTACHMENT => {
                        if until == Until::Answer(msg_id) {
                            return env.body;
                        }
                    }
                    // The server answering its own pending request (count notice 0): route it
                    // back to the server, as the router does for local responses.
                    (Kind::Response, Route::Reply { attachment, .. })
                        if attachment == server_att =>
                    {
                        self.p.send(&env).unwrap();
                    }
                    (Kind::Request | Kind::Event, Route::HashChain(_)) => {
                        let replicated = decode_request(&env.body).unwrap();
                        self.replicated.push(replicated.clone());
                        if env.kind == Kind::Event {
                            continue; // ack level one or a rollback: nobody answers
                        }
                        let reply = Route::Reply {
                            node: NODE,
                            attachment: server_att,
                            msg_id: env.msg_id,
                        };
                        let count = |n: u32| Envelope {
                            msg_id: env.msg_id,
                            kind: Kind::Event,
                            route: reply,
                            flags: FLAG_TARGET_COUNT,
                            body: n.to_le_bytes().to_vec(),
                            queued_ns: 0,
                        };
                        let response = |flags: u16, body: Vec<u8>| Envelope {
                            msg_id: env.msg_id,
                            kind: Kind::Response,
                            route: reply,
                            flags,
                            body,
                            queued_ns: 0,
                        };
                        let ok = Response::Replicated {
                            applied: 1,
                            stale: 0,
                            conflict: None,
                        };
                        let ok = response(0, dkc_client::proto::encode_response(&ok).unwrap());
                        let unreachable = response(FLAG_CHMPX_ERROR, b"cannot reach n2".to_vec());
                        let conflict = || {
                            let Request::Replicate { records } = &replicated else {
                                panic!("not a Replicate: {replicated:?}")
                            };
                            let held = WireRecord {
                                key: records[0].key.clone(),
                                value: b"theirs".to_vec(),
                                version: records[0].base.expect("a fenced record") + 1,
                                ..Default::default()
                            };
                            let r = Response::Replicated {
                                applied: 0,
                                stale: 0,
                                conflict: Some(Box::new(held)),
                            };
                            response(0, dkc_client::proto::encode_response(&r).unwrap())
                        };
                        let chain = if self.silent_next > 0 {
                            self.silent_next -= 1;
                            Chain::OneSilent
                        } else {
                            chain
                        };
                        let (n, answers) = match chain {
                            Chain::NoReplica => (0, vec![]),
                            Chain::OneAcks => (1, vec![ok]),
                            Chain::OneSilent => (1, vec![]),
                            Chain::Unreachable => (1, vec![unreachable]),
                            Chain::TwoAck => (2, vec![ok.clone(), ok]),
                            Chain::OneOfTwoSilent => (2, vec![ok]),
                            Chain::TwoUnreachable => (2, vec![unreachable.clone(), unreachable]),
                            Chain::OneConflicts => (1, vec![conflict()]),
                        };
                        self.p.send(&count(n)).unwrap();
                        for a in answers {
                            self.p.send(&a).unwrap();
                        }
                        if until == Until::Replicated {
                            return Vec::new();
                        }
                    }
                    other => panic!("unexpected message {other:?}"),
                }
            }
        }
    }
}

fn set(key: &str, value: &str) -> Vec<u8> {
    encode_request(&Request::Set {
        key: key.into(),
        value: value.into(),
        mode: SetMode::Set,
        flags: 0,
        expire_at: 0,
    })
    .unwrap()
}

/// How the server under test is set up.
#[derive(Clone, Copy)]
struct Setup {
    ack: AckLevel,
    replica: u32,
    replication_disabled: bool,
}

impl Setup {
    fn new(ack: AckLevel, replica: u32) -> Setup {
        Setup {
            ack,
            replica,
            replication_disabled: false,
        }
    }
}

fn start_server(
    cluster: String,
    ctlport: u16,
    setup: Setup,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let clock = Arc::new(ManualClock::new(1_767_225_600_000));
        let store = k2hash::OpenOptions::memory()
            .clock(clock.clone())
            .open()
            .unwrap();
        let exec = Executor::new(Arc::new(store), 3, clock);
        let att =
            Attachment::connect(&cluster, ctlport, Role::Server, AttachOptions::default()).unwrap();
        let shared = Arc::new(Shared {
            exec,
            att,
            ack_level: setup.ack,
            replica: setup.replica,
            replication_disabled: setup.replication_disabled,
            rcv_timeout: RCV_TIMEOUT,
            queue_age_max: QUEUE_AGE_MAX,
            stop: stop.clone(),
        });
        let serving = serve(shared, 2).unwrap();
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
        }
        serving.join();
    })
}

async fn scenario(tag: &str, setup: Setup, body: impl AsyncFnOnce(&mut FakeChmpx)) {
    let cluster = format!("srv{tag}{}", std::process::id());
    let ctlport = 20_000 + (std::process::id() % 20_000) as u16;
    let mut listener = AttachListener::bind(&cluster, ctlport, AttachOptions::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = start_server(cluster, ctlport, setup, stop.clone());
    let p = tokio::time::timeout(WAIT_MAX, listener.accept())
        .await
        .expect("server attaches")
        .unwrap();
    assert_eq!(p.role(), Role::Server);
    let mut fake = FakeChmpx {
        p,
        next_id: 0,
        replicated: Vec::new(),
        silent_next: 0,
    };
    body(&mut fake).await;
    stop.store(true, Ordering::Release);
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_serves_commands_merge_and_acks_over_attach() {
    scenario(
        "all",
        Setup::new(AckLevel::All, 1),
        async |fake: &mut FakeChmpx| {
            // A write with no other live owner is answered at once (count notice 0).
            let id = fake.request(set("a", "1"));
            let r = decode_response(&fake.answer(id, Chain::NoReplica).await).unwrap();
            assert!(matches!(r, Response::Stored { .. }), "{r:?}");
            assert_eq!(
                fake.replicated.len(),
                1,
                "the write went out on the key's chain"
            );
            // A replica that acknowledges.
            let id = fake.request(set("b", "2"));
            let r = decode_response(&fake.answer(id, Chain::OneAcks).await).unwrap();
            assert!(matches!(r, Response::Stored { .. }), "{r:?}");
            // A replica that never answers: the client learns the outcome is unknown.
            let id = fake.request(set("c", "3"));
            match decode_response(&fake.answer(id, Chain::OneSilent).await).unwrap() {
                Response::Error { code, .. } => assert_eq!(code, ErrorCode::Timeout),
                other => panic!("{other:?}"),
            }
            // chmpx cannot reach the replica.
            let id = fake.request(set("d", "4"));
            match decode_response(&fake.answer(id, Chain::Unreachable).await).unwrap() {
                Response::Error { code, message } => {
                    assert_eq!(code, ErrorCode::Unavailable);
                    assert!(message.contains("cannot reach n2"), "{message}");
                }
                other => panic!("{other:?}"),
            }
            // Reads are answered directly and see every write above.
            for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")] {
                let id = fake.request(encode_request(&Request::Get { key: k.into() }).unwrap());
                match decode_response(&fake.answer(id, Chain::NoReplica).await).unwrap() {
                    Response::Value(item) => assert_eq!(item.value, v.as_bytes()),
                    other => panic!("{k}: {other:?}"),
                }
            }
            // Garbage and another protocol version get errors, never silence.
            let id = fake.request(vec![1, 0xc1, 0xc1]);
            let r = decode_response(&fake.answer(id, Chain::NoReplica).await).unwrap();
            assert!(
                matches!(
                    r,
                    Response::Error {
                        code: ErrorCode::BadRequest,
                        ..
                    }
                ),
                "{r:?}"
            );
            let mut other_version = set("x", "y");
            other_version[0] = 99;
            let id = fake.request(other_version);
            let r = decode_response(&fake.answer(id, Chain::NoReplica).await).unwrap();
            assert!(
                matches!(
                    r,
                    Response::Error {
                        code: ErrorCode::Version,
                        ..
                    }
                ),
                "{r:?}"
            );
            // A merge request is answered by the merge handler.
            let req = MergeRequest::Digest {
                ranges: vec![HashRange {
                    lo: 0,
                    hi: u64::MAX,
                }],
            };
            let id = fake.request(mp::encode_request(&req).unwrap());
            match mp::decode_response(&fake.answer(id, Chain::NoReplica).await).unwrap() {
                MergeResponse::Digests { digests } => assert_eq!(digests[0].count, 4),
                other => panic!("{other:?}"),
            }
            // A Replicate from another primary is applied and acknowledged, not re-replicated.
            let before = fake.replicated.len();
            let rec = dkc_client::proto::WireRecord {
                key: b"r".to_vec(),
                value: b"from-peer".to_vec(),
                version: u64::MAX / 2,
                ..Default::default()
            };
            let id =
                fake.request(encode_request(&Request::Replicate { records: vec![rec] }).unwrap());
            let r = decode_response(&fake.answer(id, Chain::NoReplica).await).unwrap();
            assert_eq!(
                r,
                Response::Replicated {
                    applied: 1,
                    stale: 0,
                    conflict: None
                }
            );
            assert_eq!(fake.replicated.len(), before);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_ack_level_one_answers_without_waiting() {
    scenario(
        "one",
        Setup::new(AckLevel::One, 1),
        async |fake: &mut FakeChmpx| {
            // Even with a silent replica the client is answered at once.
            let id = fake.request(set("a", "1"));
            let r = decode_response(&fake.answer(id, Chain::OneSilent).await).unwrap();
            assert!(matches!(r, Response::Stored { .. }), "{r:?}");
        },
    )
    .await;
}

fn error_of(body: &[u8]) -> (ErrorCode, String) {
    match decode_response(body).unwrap() {
        Response::Error { code, message } => (code, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_ack_all_with_two_replicas_waits_for_both() {
    scenario(
        "all2",
        Setup::new(AckLevel::All, 2),
        async |fake: &mut FakeChmpx| {
            let id = fake.request(set("a", "1"));
            let r = decode_response(&fake.answer(id, Chain::TwoAck).await).unwrap();
            assert!(matches!(r, Response::Stored { .. }), "{r:?}");
            // One acknowledgement of two is not `all`.
            let id = fake.request(set("b", "2"));
            let (code, message) = error_of(&fake.answer(id, Chain::OneOfTwoSilent).await);
            assert_eq!(code, ErrorCode::Timeout, "{message}");
            assert!(message.contains("only 1 of the 2"), "{message}");
            // No other live owner: `all` is the primary alone.
            let id = fake.request(set("c", "3"));
            let r = decode_response(&fake.answer(id, Chain::NoReplica).await).unwrap();
            assert!(matches!(r, Response::Stored { .. }), "{r:?}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_ack_quorum_needs_a_majority_of_owners() {
    scenario(
        "quorum",
        Setup::new(AckLevel::Quorum, 2),
        async |fake: &mut FakeChmpx| {
            // Primary + 1 replica = 2 of 3 owners: answered without the silent one, well before
            // RCVTIMEOUT.
            let started = std::time::Instant::now();
            let id = fake.request(set("a", "1"));
            let r = decode_response(&fake.answer(id, Chain::OneOfTwoSilent).await).unwrap();
            assert!(matches!(r, Response::Stored { .. }), "{r:?}");
            assert!(started.elapsed() < RCV_TIMEOUT, "{:?}", started.elapsed());
            // Both replicas unreachable: no majority, the owner's reason is given.
            let id = fake.request(set("b", "2"));
            let (code, message) = error_of(&fake.answer(id, Chain::TwoUnreachable).await);
            assert_eq!(code, ErrorCode::Unavailable, "{message}");
            assert!(message.contains("cannot reach n2"), "{message}");
            // No other owner live: fails at once, saying the write is on the primary only.
            let id = fake.request(set("c", "3"));
            let (code, message) = error_of(&fake.answer(id, Chain::NoReplica).await);
            assert_eq!(code, ErrorCode::Unavailable, "{message}");
            assert!(
                message.contains("written on the primary only")
                    && message.contains("needs 2 of the 3"),
                "{message}"
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_with_replication_disabled_sends_nothing_and_acknowledges() {
    let setup = Setup {
        replication_disabled: true,
        ..Setup::new(AckLevel::All, 2)
    };
    scenario("norepl", setup, async |fake: &mut FakeChmpx| {
        for (k, v) in [("a", "1"), ("b", "2")] {
            let id = fake.request(set(k, v));
            let r = decode_response(&fake.answer(id, Chain::TwoAck).await).unwrap();
            assert!(matches!(r, Response::Stored { .. }), "{r:?}");
        }
        assert!(fake.replicated.is_empty(), "{:?}", fake.replicated);
    })
    .await;
}

fn incr(key: &str, delta: u64) -> Vec<u8> {
    encode_request(&Request::Incr {
        key: key.into(),
        delta,
        initial: None,
        expire_at: 0,
    })
    .unwrap()
}

fn get(key: &str) -> Vec<u8> {
    encode_request(&Request::Get { key: key.into() }).unwrap()
}

/// The value and version the server holds for `key` (a get answered without replicas).
async fn stored(fake: &mut FakeChmpx, key: &str) -> (Vec<u8>, u64) {
    let id = fake.request(get(key));
    match decode_response(&fake.answer(id, Chain::NoReplica).await).unwrap() {
        Response::Value(item) => (item.value, item.version),
        other => panic!("get {key}: {other:?}"),
    }
}

/// The records of the Replicate requests sent for `key`, in order.
fn sent_for(fake: &FakeChmpx, key: &[u8]) -> Vec<WireRecord> {
    fake.replicated
        .iter()
        .filter_map(|r| match r {
            Request::Replicate { records } => Some(records.clone()),
            _ => None,
        })
        .flatten()
        .filter(|r| r.key == key)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_a_fenced_write_a_replica_refuses_is_not_acknowledged_and_taken_back() {
    scenario(
        "fconf",
        Setup::new(AckLevel::All, 1),
        async |fake: &mut FakeChmpx| {
            let id = fake.request(set("n", "10"));
            let Response::Stored { version: v0 } =
                decode_response(&fake.answer(id, Chain::OneAcks).await).unwrap()
            else {
                panic!("set stored")
            };
            assert_eq!(
                sent_for(fake, b"n")[0].base,
                None,
                "a plain set is not fenced"
            );
            // The replica holds v0 + 1 ("theirs"), which this primary never saw.
            let id = fake.request(incr("n", 1));
            let (code, message) = error_of(&fake.answer(id, Chain::OneConflicts).await);
            assert_eq!(code, ErrorCode::Superseded, "{message}");
            let sent = sent_for(fake, b"n");
            let fenced = &sent[1];
            assert_eq!((fenced.base, &fenced.value[..]), (Some(v0), &b"11"[..]));
            // The primary took it back here, told the owners to do the same, and installed the
            // replica's record as it is (its version, not a fresh one that would beat later
            // acknowledged writes).
            assert_eq!(stored(fake, "n").await, (b"theirs".to_vec(), v0 + 1));
            let undo = sent
                .iter()
                .find(|r| r.rollback_of.is_some())
                .expect("a rollback was sent");
            assert_eq!(undo.rollback_of, Some(fenced.version));
            assert_eq!((undo.version, &undo.value[..]), (v0, &b"10"[..]));
            // The next conditional write is computed from the learned state.
            let id = fake.request(incr("n", 0));
            let r = decode_response(&fake.answer(id, Chain::OneAcks).await);
            assert!(
                matches!(
                    r,
                    Ok(Response::Error {
                        code: ErrorCode::NotNumeric,
                        ..
                    })
                ),
                "computed from \"theirs\": {r:?}"
            );
            let id = fake.request(set("n", "20"));
            decode_response(&fake.answer(id, Chain::OneAcks).await).unwrap();
            let id = fake.request(incr("n", 1));
            assert_eq!(
                decode_response(&fake.answer(id, Chain::OneAcks).await).unwrap(),
                Response::Number(21)
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_a_second_fenced_write_of_a_key_waits_for_the_first() {
    scenario(
        "fqueue",
        Setup::new(AckLevel::All, 1),
        async |fake: &mut FakeChmpx| {
            let id = fake.request(set("c", "10"));
            let Response::Stored { version: v0 } =
                decode_response(&fake.answer(id, Chain::OneAcks).await).unwrap()
            else {
                panic!("set stored")
            };
            // The first incr's replica never answers (it times out after RCVTIMEOUT and is
            // taken back); the second, sent at once, must not be computed from the first's
            // unacknowledged 11.
            fake.silent_next = 1;
            let _first = fake.request(incr("c", 1));
            // The first is being replicated (and left unanswered) before the second arrives:
            // two requests sent at once may be taken by two workers in either order.
            fake.until_replicated(Chain::OneAcks).await;
            let second = fake.request(incr("c", 1));
            assert_eq!(
                decode_response(&fake.answer(second, Chain::OneAcks).await).unwrap(),
                Response::Number(11),
                "computed after the first was taken back"
            );
            let sent = sent_for(fake, b"c");
            let fenced: Vec<_> = sent.iter().filter(|r| r.base.is_some()).collect();
            assert_eq!(fenced.len(), 2, "{sent:?}");
            assert_eq!(fenced[0].base, Some(v0));
            assert_eq!(
                fenced[1].base,
                Some(v0),
                "the second was based on the restored state"
            );
            assert!(fenced[1].version > fenced[0].version);
            let undo_at = sent.iter().position(|r| r.rollback_of.is_some()).unwrap();
            let second_at = sent.iter().position(|r| r == fenced[1]).unwrap();
            assert!(undo_at < second_at, "rolled back before the next one ran");
        },
    )
    .await;
}

/// A queue stamp `ago` before now (this host's CLOCK_MONOTONIC, as chmpx stamps).
fn stamped_ago(ago: Duration) -> u64 {
    let ago = u64::try_from(ago.as_nanos()).unwrap();
    let now = monotonic_now_ns();
    assert!(
        now > ago,
        "the host has been up longer than the stamp's age"
    );
    now - ago
}

/// The answer to a command refused for its wait on the host: `E_UNAVAILABLE`, saying it was not
/// executed and naming the limit.
fn assert_refused_as_queued_too_long(body: &[u8]) {
    let (code, message) = error_of(body);
    assert_eq!(code, ErrorCode::Unavailable, "{message}");
    assert!(
        message.contains("not executed") && message.contains("local queue"),
        "{message}"
    );
    assert!(
        message.contains(&format!("more than {} ms", QUEUE_AGE_MAX.as_millis())),
        "{message}"
    );
}

/// The fix of the SIGSTOP counter case: a command chmpx queued for this server longer ago than
/// a takeover needs (the host was stopped with it in the ring) is refused unexecuted, whatever
/// it is; a fresh one, or one without a stamp, runs; a Replicate from another owner is applied
/// whatever its age (it carries its own version).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_refuses_a_command_queued_past_the_limit_and_serves_a_fresh_one() {
    scenario(
        "stale",
        Setup::new(AckLevel::All, 1),
        async |fake: &mut FakeChmpx| {
            let id = fake.request(set("c", "10"));
            let Response::Stored { version: v0 } =
                decode_response(&fake.answer(id, Chain::OneAcks).await).unwrap()
            else {
                panic!("set stored")
            };
            let old = || stamped_ago(QUEUE_AGE_MAX * 3);
            let sent_before = fake.replicated.len();
            // A conditional write, a plain write and a read, each queued too long ago.
            for body in [incr("c", 1), set("c", "99"), get("c")] {
                let id = fake.request_queued_at(body, old());
                assert_refused_as_queued_too_long(&fake.answer(id, Chain::OneAcks).await);
            }
            assert_eq!(
                fake.replicated.len(),
                sent_before,
                "nothing was executed, so nothing was replicated"
            );
            // Nothing was written: the value and its version are the set's.
            assert_eq!(stored(fake, "c").await, (b"10".to_vec(), v0));
            // Fresh ones run: stamped a little while ago (within the limit), and stamped by
            // the transport on delivery.
            let id = fake.request_queued_at(incr("c", 1), stamped_ago(QUEUE_AGE_MAX / 4));
            assert_eq!(
                decode_response(&fake.answer(id, Chain::OneAcks).await).unwrap(),
                Response::Number(11)
            );
            let id = fake.request(incr("c", 1));
            assert_eq!(
                decode_response(&fake.answer(id, Chain::OneAcks).await).unwrap(),
                Response::Number(12)
            );
            // Another owner's Replicate, however old, is applied (newest version wins).
            let record = WireRecord {
                key: b"r".to_vec(),
                value: b"from-the-primary".to_vec(),
                version: v0 + 1000,
                ..Default::default()
            };
            let body = encode_request(&Request::Replicate {
                records: vec![record],
            })
            .unwrap();
            let id = fake.request_queued_at(body, old());
            match decode_response(&fake.answer(id, Chain::NoReplica).await).unwrap() {
                Response::Replicated { applied: 1, .. } => {}
                other => panic!("an old Replicate is still applied: {other:?}"),
            }
        },
    )
    .await;
}

/// The wait in the server's own fence queue counts too: a conditional write that was fresh
/// when it arrived, then waited behind another write of its key until its whole wait on the
/// host passed the limit, is refused unexecuted instead of running against a value a takeover
/// may have changed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_a_fenced_write_that_aged_in_the_fence_queue_is_refused() {
    scenario(
        "fqstale",
        Setup::new(AckLevel::All, 1),
        async |fake: &mut FakeChmpx| {
            let id = fake.request(set("q", "10"));
            decode_response(&fake.answer(id, Chain::OneAcks).await).unwrap();
            // The first incr's replica never answers: it holds the key for RCV_TIMEOUT. The
            // second arrives with room left (MARGIN) but less than that wait.
            const MARGIN: Duration = Duration::from_millis(150);
            const _: () = assert!(MARGIN.as_millis() < RCV_TIMEOUT.as_millis());
            fake.silent_next = 1;
            let _first = fake.request(incr("q", 1));
            fake.until_replicated(Chain::OneAcks).await;
            let second = fake.request_queued_at(incr("q", 1), stamped_ago(QUEUE_AGE_MAX - MARGIN));
            assert_refused_as_queued_too_long(&fake.answer(second, Chain::OneAcks).await);
            let fenced = sent_for(fake, b"q")
                .into_iter()
                .filter(|r| r.base.is_some())
                .count();
            assert_eq!(fenced, 1, "only the first incr ran");
            assert_eq!(stored(fake, "q").await.0, b"10", "first taken back");
        },
    )
    .await;
}
