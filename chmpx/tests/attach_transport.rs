//! The attach transport through real processes: `mq-echo` (the listener side, a child process)
//! and the test process or re-executed copies of it (the attached side).

mod attach_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attach_support::{
    remove_listener_leftovers, shm_objects, unique_cluster, wait_for, Echo, CTLPORT,
};
use chmpx::attach::names::ChmpxNames;
use chmpx::attach::{AttachError, AttachOptions, Attachment, Kind, Role, Route};
use chmpx::ipc::limits::{MqLimit, STOCK_MSGSIZE_MAX_BYTES, STOCK_MSG_MAX};
use chmpx::ipc::mq::{Access, MessageQueue, QueueShape};
use chmpx::ipc::shm::{segment_mode, SharedMemory};
use chmpx::ipc::IpcError;

const T: Duration = Duration::from_secs(5);
const CHILD_ENV: &str = "DKC_ATTACH_TEST_CHILD";

fn attach(cluster: &str) -> Attachment {
    Attachment::connect(cluster, CTLPORT, Role::Client, AttachOptions::default())
        .expect("attach to mq-echo")
}

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn attach_ping_pong_64b_4k_1m_and_1m_plus_1_refused() {
    let cluster = unique_cluster("pp");
    let _echo = Echo::start(&cluster, &[]);
    let a = attach(&cluster);
    for (i, len) in [0usize, 64, 4096, 1 << 20].into_iter().enumerate() {
        let b = body(len, i as u8);
        let r = a.request(Route::HashFirst(i as u64), &b, T).unwrap();
        assert_eq!(r.kind, Kind::Response);
        assert_eq!(r.body.len(), len);
        assert!(r.body == b, "body of {len} bytes came back changed");
    }
    // Many 1 MiB round trips in a row: the ring wraps several times.
    for i in 0..8u8 {
        let b = body(1 << 20, i);
        assert!(a.request(Route::AllServers, &b, T).unwrap().body == b);
    }
    let err = a
        .request(Route::AllServers, &vec![0u8; (1 << 20) + 1], T)
        .unwrap_err();
    match &err {
        AttachError::BodyTooLarge { len, max } => {
            assert_eq!((*len, *max), ((1 << 20) + 1, 1 << 20));
        }
        other => panic!("expected BodyTooLarge, got {other:?}"),
    }
    assert!(err.to_string().contains("body_size_max"), "{err}");
    // Still usable afterwards.
    assert_eq!(a.request(Route::Node(1), b"ok", T).unwrap().body, b"ok");
    // Detaching and stopping chmpx leave nothing behind.
    drop(a);
    drop(_echo);
    assert_no_leftovers(&cluster);
}

/// Nothing of `cluster` remains in /dev/shm, and its accept queue is gone.
fn assert_no_leftovers(cluster: &str) {
    assert!(
        wait_for(Duration::from_secs(5), || shm_objects(cluster).is_empty()),
        "left behind: {:?}",
        shm_objects(cluster)
    );
    let names = ChmpxNames::new(cluster, CTLPORT).unwrap();
    assert!(matches!(
        MessageQueue::open(&names.accept_queue(), Access::Read, true),
        Err(IpcError::NotFound { .. })
    ));
}

#[test]
fn attach_larger_body_limit_is_configurable() {
    let cluster = unique_cluster("big");
    let _echo = Echo::start(&cluster, &["--body-size-max", &(3 << 20).to_string()]);
    let opts = AttachOptions {
        body_size_max: 3 << 20,
        ..AttachOptions::default()
    };
    let a = Attachment::connect(&cluster, CTLPORT, Role::Client, opts).unwrap();
    let b = body(3 << 20, 7);
    assert!(a.request(Route::AllServers, &b, T).unwrap().body == b);
    // A process asking for more than chmpx allows is refused with a reason.
    let too_big = AttachOptions {
        body_size_max: 4 << 20,
        connect_timeout_ms: 2000,
        ..AttachOptions::default()
    };
    match Attachment::connect(&cluster, CTLPORT, Role::Client, too_big) {
        Err(AttachError::Refused(r)) => assert_eq!(r, chmpx::attach::RefuseReason::BodyLimit),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, got an attachment"),
    }
}

#[test]
fn attach_sixteen_outstanding_requests_from_four_threads_correlate() {
    let cluster = unique_cluster("mt");
    let _echo = Echo::start(&cluster, &[]);
    let a = Arc::new(attach(&cluster));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                for round in 0..200u32 {
                    let bodies: Vec<Vec<u8>> = (0..4u32)
                        .map(|k| {
                            let tag = format!("t{t}r{round}k{k}");
                            let mut b = tag.into_bytes();
                            b.extend(body(((round * 7 + k * 13) % 300) as usize, t));
                            b
                        })
                        .collect();
                    let pending: Vec<_> = bodies
                        .iter()
                        .map(|b| a.submit(Route::HashFirst(7), b, T).unwrap())
                        .collect();
                    // Wait in reverse order: answers for later ids arrive first.
                    for (p, b) in pending.into_iter().zip(bodies.iter()).rev() {
                        let id = p.msg_id();
                        let r = p.wait(T).unwrap();
                        assert_eq!(r.msg_id, id);
                        assert!(&r.body == b, "thread {t} round {round}: wrong body");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Entry point of the re-executed child process (does nothing in a normal test run).
#[test]
fn child_process_entry() {
    let Ok(cluster) = std::env::var(CHILD_ENV) else {
        return;
    };
    let a = attach(&cluster);
    let (up, down) = a.queue_names().unwrap();
    println!("ATTACHED {} {up} {down}", a.segment_name().unwrap());
    let p = a
        .submit(
            Route::HashFirst(1),
            b"hold: never answered",
            Duration::from_secs(60),
        )
        .unwrap();
    println!("WAITING");
    let _ = p.wait(Duration::from_secs(60));
}

#[test]
fn attach_child_killed_mid_request_is_cleaned_up_and_others_go_on() {
    let cluster = unique_cluster("kill");
    let _echo = Echo::start(&cluster, &[]);
    let a = attach(&cluster);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &cluster)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut names = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        // libtest prints "test child_process_entry ... " on the same line first.
        if let Some((_, rest)) = line.split_once("ATTACHED ") {
            names = rest.split(' ').map(str::to_string).collect();
        }
        if line.ends_with("WAITING") {
            break;
        }
    }
    assert_eq!(names.len(), 3, "child did not report its objects");
    let (seg, up, down) = (&names[0], &names[1], &names[2]);
    assert!(segment_mode(seg).is_some(), "child segment {seg} missing");
    assert!(a.request(Route::AllServers, b"before", T).is_ok());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || segment_mode(seg).is_none()),
        "listener did not remove the dead child's segment {seg}"
    );
    for q in [up, down] {
        assert!(
            matches!(
                MessageQueue::open(q, Access::Read, true),
                Err(IpcError::NotFound { .. })
            ),
            "queue {q} left behind"
        );
    }
    for i in 0..100u32 {
        let b = i.to_le_bytes();
        assert_eq!(a.request(Route::AllServers, &b, T).unwrap().body, b);
    }
    drop(a);
    drop(_echo);
    assert_no_leftovers(&cluster);
}

#[test]
fn attach_listener_killed_and_restarted_process_reattaches_by_itself() {
    let cluster = unique_cluster("rst");
    let mut echo = Echo::start(&cluster, &[]);
    let a = attach(&cluster);
    let first_id = a.attach_id().unwrap();
    assert_eq!(
        a.request(Route::AllServers, b"one", T).unwrap().body,
        b"one"
    );
    let old_segment = a.segment_name().unwrap();
    echo.kill9();
    // In flight while chmpx is dead: a typed error, quickly (liveness interval, not timeout).
    let t = Instant::now();
    match a.request(Route::AllServers, b"lost", T) {
        Err(AttachError::ChmpxRestarted { .. }) => {}
        other => panic!("expected ChmpxRestarted, got {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    let _echo2 = Echo::start(&cluster, &[]);
    // The first call after the restart is async: it re-attaches off the runtime thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt
        .block_on(a.request_async(Route::AllServers, b"two".to_vec(), Duration::from_secs(10)))
        .unwrap();
    assert_eq!(r.body, b"two");
    assert!(a.reattach_count() >= 1);
    assert_ne!(
        a.segment_name().unwrap(),
        old_segment,
        "re-attach uses fresh objects"
    );
    assert!(
        segment_mode(&old_segment).is_none(),
        "old segment not removed"
    );
    let _ = first_id;
    for i in 0..50u32 {
        let b = i.to_le_bytes();
        assert_eq!(a.request(Route::AllServers, &b, T).unwrap().body, b);
    }
    drop(a);
    drop(_echo2);
    assert_no_leftovers(&cluster);
}

#[test]
fn attach_listener_restart_tells_attached_processes_to_reattach() {
    // A server-role process blocked in recv() re-attaches on its own when chmpx restarts,
    // and a graceful chmpx stop (SIGTERM) also sends it back to the handshake.
    let cluster = unique_cluster("rcv");
    let echo = Echo::start(&cluster, &[]);
    let s = Attachment::connect(&cluster, CTLPORT, Role::Server, AttachOptions::default()).unwrap();
    let before = s.segment_name().unwrap();
    drop(echo); // SIGTERM: the listener asks its attachments to re-attach
    let _echo2 = Echo::start(&cluster, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.reattach_count() == 0 && Instant::now() < deadline {
        assert!(s.recv(Duration::from_millis(100)).unwrap().is_none());
    }
    assert!(s.reattach_count() >= 1, "server did not re-attach");
    assert_ne!(s.segment_name().unwrap(), before);
}

#[test]
fn attach_garbage_in_ring_or_queue_is_refused_and_listener_goes_on() {
    let cluster = unique_cluster("junk");
    let _echo = Echo::start(&cluster, &[]);
    let a = attach(&cluster);
    let b = attach(&cluster);
    // A well-framed frame that is not an envelope: skipped, attachment stays.
    a.inject_bad_envelope_for_test(b"this is not an envelope")
        .unwrap();
    assert_eq!(a.request(Route::AllServers, b"x1", T).unwrap().body, b"x1");
    // Garbage on the doorbell queue: ignored.
    a.inject_queue_garbage_for_test(b"zz").unwrap();
    assert_eq!(a.request(Route::AllServers, b"x2", T).unwrap().body, b"x2");
    assert_eq!(a.reattach_count(), 0);
    // Garbage on the accept queue: ignored; new attachments still work.
    let names = ChmpxNames::new(&cluster, CTLPORT).unwrap();
    let acc = MessageQueue::open(&names.accept_queue(), Access::Write, true).unwrap();
    acc.send(&[0xEE; 24]).unwrap();
    acc.send(b"abc").unwrap();
    let c = attach(&cluster);
    assert_eq!(c.request(Route::AllServers, b"c", T).unwrap().body, b"c");
    // Broken framing in the ring: the listener drops that attachment, the process
    // re-attaches, others are untouched.
    a.inject_ring_garbage_for_test(&[0xFF; 64]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ok = false;
    while Instant::now() < deadline {
        match a.request(Route::AllServers, b"after", Duration::from_secs(1)) {
            Ok(r) => {
                assert_eq!(r.body, b"after");
                ok = true;
                break;
            }
            Err(AttachError::ChmpxRestarted { .. } | AttachError::Timeout { .. }) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert!(ok, "process did not recover from its corrupt ring");
    assert!(a.reattach_count() >= 1);
    assert_eq!(b.request(Route::AllServers, b"b", T).unwrap().body, b"b");
}

#[test]
fn attach_objects_have_mode_0600_and_fit_stock_limits() {
    let cluster = unique_cluster("mode");
    let _echo = Echo::start(&cluster, &[]);
    let a = attach(&cluster);
    let seg = a.segment_name().unwrap();
    assert_eq!(segment_mode(&seg), Some(0o600));
    let names = ChmpxNames::new(&cluster, CTLPORT).unwrap();
    assert_eq!(segment_mode(&names.chmpx_segment()), Some(0o600));
    let (up, down) = a.queue_names().unwrap();
    for q in [up, down, names.accept_queue()] {
        let q = MessageQueue::open(&q, Access::Read, true).unwrap();
        assert_eq!(q.mode().unwrap(), 0o600, "{}", q.name());
        let shape = q.shape().unwrap();
        assert!(u64::from(shape.maxmsg) <= STOCK_MSG_MAX, "{shape:?}");
        assert!(shape.msgsize <= 64, "{shape:?}");
        assert!(u64::from(shape.msgsize) <= STOCK_MSGSIZE_MAX_BYTES);
    }
    // The mode is configurable (and not narrowed by the umask).
    let opts = AttachOptions {
        mode: 0o640,
        ..AttachOptions::default()
    };
    let b = Attachment::connect(&cluster, CTLPORT, Role::Client, opts).unwrap();
    assert_eq!(segment_mode(&b.segment_name().unwrap()), Some(0o640));
    assert_eq!(b.request(Route::AllServers, b"m", T).unwrap().body, b"m");
}

#[test]
fn attach_queue_limit_errors_name_the_limit() {
    // 32 MiB messages exceed msgsize_max for everyone (and HARD_MSGSIZEMAX even for root).
    let name = format!("/dkc-limit-test.{}", std::process::id());
    let shape = QueueShape {
        maxmsg: 1,
        msgsize: 32 << 20,
    };
    match MessageQueue::create(&name, shape, 0o600, Access::Read, true) {
        Err(e @ IpcError::Limit { .. }) => {
            let IpcError::Limit { limit, .. } = &e else {
                unreachable!()
            };
            assert!(matches!(limit, MqLimit::MsgSizeMax { .. }), "{limit:?}");
            let text = e.to_string();
            assert!(text.contains("/proc/sys/fs/mqueue/msgsize_max"), "{text}");
            assert!(text.contains("now 8192") || text.contains("now "), "{text}");
        }
        other => panic!("expected a limit error, got {other:?}"),
    }
}

#[test]
fn attach_without_chmpx_fails_clearly_and_leaves_nothing() {
    let cluster = unique_cluster("none");
    let opts = AttachOptions {
        connect_timeout_ms: 200,
        ..AttachOptions::default()
    };
    match Attachment::connect(&cluster, CTLPORT, Role::Client, opts) {
        Err(e @ AttachError::ChmpxNotRunning { .. }) => {
            assert!(e.to_string().contains(".accept"), "{e}");
        }
        Err(e) => panic!("expected ChmpxNotRunning, got {e}"),
        Ok(_) => panic!("attached to nothing"),
    }
    assert!(
        shm_objects(&cluster).is_empty(),
        "{:?}",
        shm_objects(&cluster)
    );
}

#[test]
fn attach_startup_removes_objects_of_dead_processes_and_refuses_a_second_listener() {
    let cluster = unique_cluster("stale");
    // A pid that surely is dead: a child that has exited and been reaped.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let names = ChmpxNames::new(&cluster, CTLPORT).unwrap();
    let a = names.attachment(dead_pid, 3);
    let shape = QueueShape {
        maxmsg: 2,
        msgsize: 16,
    };
    let mut shm = SharedMemory::create(&a.segment, 4096, 0o600).unwrap();
    shm.set_unlink_on_drop(false);
    drop(shm);
    for q in [&a.up_queue, &a.down_queue] {
        let mut q = MessageQueue::create(q, shape, 0o600, Access::Read, true).unwrap();
        q.set_unlink_on_drop(false);
    }
    // Also a stale accept queue, as a SIGKILLed chmpx leaves it.
    let mut acc =
        MessageQueue::create(&names.accept_queue(), shape, 0o600, Access::Read, true).unwrap();
    acc.set_unlink_on_drop(false);
    drop(acc);
    let mut echo = Echo::start(&cluster, &[]);
    assert_eq!(segment_mode(&a.segment), None, "stale segment survived");
    for q in [&a.up_queue, &a.down_queue] {
        assert!(matches!(
            MessageQueue::open(q, Access::Read, true),
            Err(IpcError::NotFound { .. })
        ));
    }
    let c = attach(&cluster);
    assert_eq!(c.request(Route::AllServers, b"s", T).unwrap().body, b"s");
    // A second listener for the same cluster and ctlport is refused while the first lives.
    let second = Command::new(env!("CARGO_BIN_EXE_mq-echo"))
        .args(["--cluster", &cluster, "--ctlport", &CTLPORT.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already serves"), "{err}");
    drop(c);
    echo.kill9();
    remove_listener_leftovers(&cluster);
}

/// `tasks` concurrent tasks on the current runtime, each sending `rounds` async requests by
/// hash through `a` and checking every echo.
async fn concurrent_echoes(a: &Attachment, tag: &str, tasks: u32, rounds: u32) {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..tasks {
        let (a, tag) = (a.clone(), tag.to_string());
        set.spawn(async move {
            for round in 0..rounds {
                let body = format!("{tag}-{i}-{round}").into_bytes();
                let r = a
                    .request_async(Route::HashChain(u64::from(i)), body.clone(), T)
                    .await
                    .unwrap();
                assert_eq!(r.body, body);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

#[test]
fn attach_async_process_side_works() {
    let cluster = unique_cluster("async");
    let _echo = Echo::start(&cluster, &[]);
    let a = attach(&cluster);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Many concurrent requests on one runtime thread, no thread held per request.
        concurrent_echoes(&a, "single", 64, 20).await;
        // Blocking and async callers share the attachment.
        let blocking = {
            let a = a.clone();
            std::thread::spawn(move || {
                for i in 0..200u32 {
                    let b = i.to_le_bytes();
                    assert_eq!(a.request(Route::AllServers, &b, T).unwrap().body, b);
                }
            })
        };
        for i in 0..200u32 {
            let b = (i + 1000).to_le_bytes().to_vec();
            assert_eq!(
                a.request_async(Route::AllServers, b.clone(), T)
                    .await
                    .unwrap()
                    .body,
                b
            );
        }
        blocking.join().unwrap();
        // A timeout is a typed error and leaves no slot behind.
        match a
            .request_async(
                Route::AllServers,
                b"hold me".to_vec(),
                Duration::from_millis(50),
            )
            .await
        {
            Err(AttachError::Timeout { .. }) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
    });
}

/// On a multi-thread runtime answers reach async callers through the hand-off task (one wake
/// of the runtime per batch); when that runtime is dropped, the same attachment keeps working
/// from another runtime (the task is started again there).
#[test]
fn attach_async_answers_on_multi_thread_runtimes_and_after_the_runtime_is_dropped() {
    let cluster = unique_cluster("async-mt");
    let _echo = Echo::start(&cluster, &[]);
    let a = attach(&cluster);
    let run = |tag: u32| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let a = a.clone();
        rt.block_on(async move { concurrent_echoes(&a, &tag.to_string(), 32, 50).await });
        // Dropping the runtime here drops the hand-off task with it.
    };
    run(1);
    run(2);
    // A current-thread runtime after them: answers are sent by the pump directly.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt
        .block_on(a.request_async(Route::AllServers, b"last".to_vec(), T))
        .unwrap();
    assert_eq!(r.body, b"last");
}

#[test]
fn attach_server_role_receives_requests_and_its_replies_reach_the_client() {
    use chmpx::attach::{AttachListener, AttachSender, Envelope};
    use std::collections::HashMap;

    // A tiny in-process router: client requests go to the server attachment with a reply
    // route; server responses go back to the attachment named in that route.
    let cluster = unique_cluster("srv");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let rc = cluster.clone();
    let router = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut l = AttachListener::bind(&rc, CTLPORT, AttachOptions::default()).unwrap();
            ready_tx.send(()).unwrap();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Envelope)>();
            let mut senders: HashMap<u64, AttachSender> = HashMap::new();
            let mut server = None;
            let mut stop_rx = stop_rx;
            loop {
                tokio::select! {
                    p = l.accept() => {
                        let mut p = p.unwrap();
                        senders.insert(p.id(), p.sender());
                        if p.role() == Role::Server {
                            server = Some(p.id());
                        }
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            while let Ok(batch) = p.recv_batch(64).await {
                                for e in batch {
                                    if tx.send((p.id(), e)).is_err() {
                                        return;
                                    }
                                }
                            }
                        });
                    }
                    Some((from, env)) = rx.recv() => match env.kind {
                        Kind::Request => {
                            let to = &senders[&server.expect("server attached first")];
                            let route = Route::Reply { node: 0, attachment: from, msg_id: env.msg_id };
                            to.send(&Envelope { route, ..env }).unwrap();
                        }
                        Kind::Response => {
                            let Route::Reply { attachment, msg_id, .. } = env.route else {
                                panic!("response without a reply route: {:?}", env.route);
                            };
                            senders[&attachment].send(&Envelope { msg_id, ..env }).unwrap();
                        }
                        Kind::Event => {
                            let to = &senders[&server.expect("server attached first")];
                            to.send(&env).unwrap();
                        }
                    },
                    _ = &mut stop_rx => break,
                }
            }
        });
    });
    ready_rx.recv().unwrap();
    let server =
        Attachment::connect(&cluster, CTLPORT, Role::Server, AttachOptions::default()).unwrap();
    // Half the requests are taken with the blocking recv, half with recv_async.
    let serving = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut served = 0;
        let mut events = 0;
        while served < 100 {
            let got = if served % 2 == 0 {
                server.recv(T).unwrap()
            } else {
                rt.block_on(server.recv_async(T)).unwrap()
            };
            let Some(req) = got else {
                panic!("no request within {T:?}");
            };
            if req.kind == Kind::Event {
                assert_eq!(req.body, b"event");
                events += 1;
                continue;
            }
            assert_eq!(req.kind, Kind::Request);
            assert!(matches!(req.route, Route::Reply { .. }));
            let mut body = b"re:".to_vec();
            body.extend_from_slice(&req.body);
            server.reply(&req, &body).unwrap();
            served += 1;
        }
        assert_eq!(events, 1, "the one-way event did not arrive exactly once");
    });
    let client = attach(&cluster);
    client.send(Route::AllServers, b"event").unwrap();
    for i in 0..100u64 {
        let r = client
            .request(Route::HashFirst(i), format!("q{i}").as_bytes(), T)
            .unwrap();
        assert_eq!(r.body, format!("re:q{i}").into_bytes());
    }
    serving.join().unwrap();
    stop_tx.send(()).unwrap();
    router.join().unwrap();
}

const LOW_RLIMIT_ENV: &str = "DKC_ATTACH_TEST_LOW_RLIMIT";

/// Entry point of the re-executed child that attaches under a tiny RLIMIT_MSGQUEUE (does
/// nothing in a normal test run).
#[test]
fn child_low_rlimit_entry() {
    let Ok(cluster) = std::env::var(LOW_RLIMIT_ENV) else {
        return;
    };
    let lim = libc::rlimit {
        rlim_cur: 64,
        rlim_max: 64,
    };
    // SAFETY: setting a limit of this (child) process.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MSGQUEUE, &lim) }, 0);
    match Attachment::connect(&cluster, CTLPORT, Role::Client, AttachOptions::default()) {
        Ok(_) => println!("RESULT attached"),
        Err(e) => println!("RESULT {e}"),
    }
}

#[test]
fn attach_under_a_tiny_rlimit_msgqueue_names_the_limit_and_leaves_nothing() {
    let cluster = unique_cluster("rlim");
    let _echo = Echo::start(&cluster, &[]);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_low_rlimit_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LOW_RLIMIT_ENV, &cluster)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| panic!("child printed no result: {stdout}"));
    assert!(result.contains("RLIMIT_MSGQUEUE"), "{result}");
    assert!(result.contains("now 64 bytes"), "{result}");
    assert!(result.contains("ulimit -q"), "{result}");
    // The child's half-made objects went away with it (segment unlinked on the error path).
    let prefix = format!("dkc.{cluster}.{CTLPORT}.p");
    assert!(
        shm_objects(&cluster)
            .iter()
            .all(|n| !n.starts_with(&prefix)),
        "{:?}",
        shm_objects(&cluster)
    );
}

#[test]
fn attach_full_ring_towards_a_process_is_backpressure_never_a_block() {
    use chmpx::attach::{AttachListener, Envelope};

    let cluster = unique_cluster("bp");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let rc = cluster.clone();
    let chmpx_side = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut l = AttachListener::bind(&rc, CTLPORT, AttachOptions::default()).unwrap();
            ready_tx.send(()).unwrap();
            let p = l.accept().await.unwrap();
            let event = |i: u32| Envelope {
                msg_id: u64::from(i),
                kind: Kind::Event,
                route: Route::Node(0),
                flags: 0,
                body: vec![i as u8; 64 << 10],
                queued_ns: 0,
            };
            // The process does not read: sends succeed until the ring is full, then fail
            // at once with Backpressure.
            let t = Instant::now();
            let mut sent = 0u32;
            loop {
                match p.send(&event(sent)) {
                    Ok(()) => sent += 1,
                    Err(AttachError::Backpressure { .. }) => break,
                    Err(e) => panic!("unexpected: {e}"),
                }
                assert!(sent < 1000, "ring never filled");
            }
            assert!(t.elapsed() < Duration::from_secs(1), "sending blocked");
            sent_tx.send(sent).unwrap();
            // Once the process has drained its ring, sending works again.
            go_rx.await.unwrap();
            p.send(&event(sent)).unwrap();
            drop(p);
        });
    });
    ready_rx.recv().unwrap();
    let c = attach(&cluster);
    let sent = sent_rx.recv().unwrap();
    assert!(sent >= 8, "only {sent} events of 64 KiB fit a 2 MiB ring");
    for i in 0..sent {
        let e = c.recv(T).unwrap().expect("event");
        assert_eq!((e.kind, e.msg_id), (Kind::Event, u64::from(i)));
        assert_eq!(e.body.len(), 64 << 10);
    }
    go_tx.send(()).unwrap();
    let e = c.recv(T).unwrap().expect("event after draining");
    assert_eq!(e.msg_id, u64::from(sent));
    chmpx_side.join().unwrap();
}

/// Deferred doorbells (`AttachOptions::defer_doorbell`) end to end: a push that finds the
/// listener asleep owes it a doorbell, which the runtime's `on_thread_park` hook rings when the
/// worker has no task left; sequential requests each need that ring and all get their answers
/// promptly. (The bookkeeping is unit-tested in `attach/process/deferred.rs`. Without the hook
/// only the pump thread's flush before it sleeps, racing the next push, or the listener's own
/// liveness wake-up (every 20 ms here) delivers them: 500 took 5.0 s run alone, against 35 ms
/// with the hook, but under the load of the other tests of this file the race is often won
/// and they took under a second, so this test alone does not tell the two apart.)
#[test]
fn attach_deferred_doorbells_deliver_sequential_async_requests_promptly() {
    let cluster = unique_cluster("defer");
    let _echo = Echo::start(&cluster, &["--spin-us", "0"]);
    let opts = AttachOptions {
        defer_doorbell: true,
        spin_wait_us: 0,
        ..AttachOptions::default()
    };
    let a = Attachment::connect(&cluster, CTLPORT, Role::Client, opts).expect("attach");
    let rt = tokio::runtime::Builder::new_current_thread()
        .on_thread_park(chmpx::attach::flush_deferred_doorbells)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    rt.block_on(async {
        for i in 0..DEFERRED_SEQUENTIAL_REQUESTS {
            let body = i.to_le_bytes().to_vec();
            let r = a
                .request_async(Route::AllServers, body.clone(), T)
                .await
                .unwrap();
            assert_eq!(r.body, body);
        }
    });
    let took = started.elapsed();
    assert!(
        took < DEFERRED_SEQUENTIAL_BOUND,
        "{DEFERRED_SEQUENTIAL_REQUESTS} sequential requests took {took:?}: the owed doorbells \
         were not rung by the park hook"
    );
}

const DEFERRED_SEQUENTIAL_REQUESTS: u32 = 500;
/// Well above what the hook gives (35 ms on a quiet host).
const DEFERRED_SEQUENTIAL_BOUND: Duration = Duration::from_secs(2);

/// A deferring push that finds the ring full rings the doorbell it owes before it waits for
/// room (1e0c96f). Large events fill the ring in fewer than `DEFERRED_DOORBELL_FRAMES_MAX`
/// frames, so the owed doorbell is not sent by the frame count; no runtime park hook flushes
/// it; the listener does not poll and wakes by itself only every `QUIET_LIVENESS_MS`. Without
/// the flush in the full-ring wait, each fill of the ring waits for that wake-up (the whole
/// run then takes several seconds); with it the events pass at once.
#[test]
fn attach_deferred_doorbell_is_rung_before_waiting_on_a_full_ring() {
    let cluster = unique_cluster("deferfull");
    let liveness = QUIET_LIVENESS_MS.to_string();
    let _echo = Echo::start(&cluster, &["--spin-us", "0", "--liveness-ms", &liveness]);
    let opts = AttachOptions {
        defer_doorbell: true,
        spin_wait_us: 0,
        liveness_check_interval_ms: QUIET_LIVENESS_MS,
        ..AttachOptions::default()
    };
    let ring = opts.ring_capacity_bytes();
    let a = Attachment::connect(&cluster, CTLPORT, Role::Client, opts).expect("attach");
    // Three such events fill the ring; the fourth must wait for the listener to drain it.
    let event = body(ring / 4 + 1, 7);
    let started = Instant::now();
    for _ in 0..FULL_RING_EVENTS {
        a.send(Route::AllServers, &event)
            .expect("event pushed within the rw timeout");
    }
    let took = started.elapsed();
    assert!(
        took < FULL_RING_BOUND,
        "{FULL_RING_EVENTS} events of {} bytes took {took:?}: a push waiting on a full ring did \
         not ring the doorbell it owed, so the listener slept until its own wake-up",
        event.len()
    );
}

/// The listener's and the process's liveness interval in the full-ring test: the only
/// wake-up the listener gets if nobody rings.
const QUIET_LIVENESS_MS: u64 = 3_000;
/// Enough events to fill the ring several times.
const FULL_RING_EVENTS: usize = 12;
/// Below one `QUIET_LIVENESS_MS`; the flush makes it a few milliseconds.
const FULL_RING_BOUND: Duration = Duration::from_millis(2_500);
