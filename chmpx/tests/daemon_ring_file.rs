//! Membership outlives the processes: each server chmpx saves its ring state in
//! DATADIR/<GROUP>-<CTLPORT>/ring.json, so a node taken out with SERVICEOUT stays out when every
//! chmpx is killed and started again, a server the config gains comes up SERVICE OUT, and a
//! config that lost a SERVICE IN node is refused with what to do.

mod daemon_support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chmpx::daemon::ring_file::RING_FILE_NAME;
use chmpx::daemon::status::{Ring, StatusReport};
use chmpx::placement::NodeId;
use daemon_support::*;

/// Longest wait for a chmpx that must refuse to start.
const REFUSAL_WAIT_MAX: Duration = Duration::from_secs(15);

fn ring_file(c: &Cluster, i: usize) -> PathBuf {
    c.dir
        .path()
        .join(format!("{}-{}", c.group, c.servers[i].ctlport))
        .join(RING_FILE_NAME)
}

fn ring_of(r: &StatusReport, id: &NodeId) -> Option<Ring> {
    r.nodes.iter().find(|n| n.id == id.as_str()).map(|n| n.ring)
}

/// Waits until every view (the servers `views` and the slave) holds epoch `epoch` with nothing
/// pending, `members` SERVICE IN and `out` SERVICE OUT.
fn wait_membership(c: &Cluster, views: &[usize], epoch: u64, members: &[NodeId], out: &[NodeId]) {
    let ctlports = views
        .iter()
        .map(|&i| c.servers[i].ctlport)
        .chain([c.slave_ctlport]);
    for v in ctlports {
        c.wait_until(
            v,
            &format!("epoch {epoch}, members {members:?}, SERVICE OUT {out:?}"),
            |r| {
                r.epoch == epoch
                    && r.pending_epoch.is_none()
                    && members
                        .iter()
                        .all(|m| ring_of(r, m) == Some(Ring::ServiceIn))
                    && out.iter().all(|m| ring_of(r, m) == Some(Ring::ServiceOut))
            },
        );
    }
}

fn wait_files(c: &Cluster, servers: &[usize]) {
    let deadline = Instant::now() + WAIT_MAX;
    while !servers.iter().all(|&i| ring_file(c, i).exists()) {
        assert!(
            Instant::now() < deadline,
            "no ring file saved by every server of {servers:?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Of a cluster configured with 3 servers, runs the first two only (a file listing just them)
/// and waits until both saved the config's state.
fn start_first_two(c: &mut Cluster) {
    let all = c.server_ids();
    write_conf(
        c.dir.path(),
        &c.group,
        &c.servers[..2],
        c.slave_ctlport,
        true,
    );
    for i in 0..2 {
        c.start_chmpx(i);
    }
    c.start_slave();
    for i in 0..2 {
        c.start_echo(i);
    }
    wait_membership(c, &[0, 1], 0, &all[..2], &[]);
    wait_files(c, &[0, 1]);
}

#[test]
fn serviceout_outlives_a_restart_of_every_chmpx() {
    let mut c = Cluster::start(3, true);
    let all = c.server_ids();
    let out = all[2].clone();
    let (ok, text) = control(c.ctl_addr(c.slave_ctlport), &format!("SERVICEOUT {out}"))
        .expect("control port answers");
    assert!(ok, "SERVICEOUT refused: {text}\n{}", c.logs());
    let staying = &all[..2];
    wait_membership(&c, &[0, 1, 2], 1, staying, std::slice::from_ref(&out));
    wait_files(&c, &[0, 1, 2]);

    // Every process dies at once; nothing but the files remembers the change.
    c.kill_all();
    c.start_all();
    wait_membership(&c, &[0, 1, 2], 1, staying, std::slice::from_ref(&out));
    let saved = std::fs::read_to_string(ring_file(&c, 2)).expect("ring file");
    assert!(
        saved.contains(&format!("\"group\": \"{}\"", c.group)),
        "{saved}"
    );

    // The restarted cluster takes membership commands from where it was.
    let (ok, text) = control(
        c.ctl_addr(c.servers[1].ctlport),
        &format!("SERVICEIN {out}"),
    )
    .expect("control port answers");
    assert!(ok, "SERVICEIN refused: {text}\n{}", c.logs());
    wait_membership(&c, &[0, 1, 2], 2, &all, &[]);
}

#[test]
fn a_server_the_config_gains_starts_service_out_and_a_lost_member_is_refused() {
    let mut c = Cluster::configure(3, true);
    let all = c.server_ids();
    let slave = c.slave_ctlport;
    start_first_two(&mut c);
    assert!(!ring_file(&c, 2).exists());

    // The file gains the third server; every node restarts with it. The newcomer, which has
    // no ring file, takes the others' state: it is SERVICE OUT everywhere, its own view too.
    c.kill_all();
    write_conf(c.dir.path(), &c.group, &c.servers, slave, true);
    c.start_all();
    wait_membership(&c, &[0, 1, 2], 0, &all[..2], std::slice::from_ref(&all[2]));
    wait_files(&c, &[2]);
    let (ok, text) =
        control(c.ctl_addr(slave), &format!("SERVICEIN {}", all[2])).expect("control port answers");
    assert!(ok, "SERVICEIN refused: {text}\n{}", c.logs());
    wait_membership(&c, &[0, 1, 2], 1, &all, &[]);

    // A file without the third server, now SERVICE IN, is refused by a node that saved it.
    c.kill_all();
    let shrunk = write_conf(c.dir.path(), &c.group, &c.servers[..2], slave, true);
    let mut child = Command::new(CHMPX)
        .args(["--conf", &shrunk.display().to_string()])
        .args(["--ctlport", &c.servers[0].ctlport.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chmpx");
    let deadline = Instant::now() + REFUSAL_WAIT_MAX;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chmpx started with a file that lost a SERVICE IN node");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains(&format!("server node {} SERVICE IN", all[2]))
            && stderr.contains("SERVICEOUT")
            && stderr.contains(&ring_file(&c, 0).display().to_string()),
        "the refusal says which node, which file and what to do: {stderr}"
    );
    // The refusal changed nothing: with the full file the cluster comes back as it was.
    write_conf(c.dir.path(), &c.group, &c.servers, slave, true);
    c.start_all();
    wait_membership(&c, &[0, 1, 2], 1, &all, &[]);
}

#[test]
fn a_pending_change_waiting_for_merge_outlives_a_restart_of_every_chmpx() {
    // AUTOMERGE off: SERVICEOUT leaves a pending change that waits for MERGE and COMPMERGE.
    let mut c = Cluster::start(3, false);
    let all = c.server_ids();
    let out = all[2].clone();
    let slave = c.ctl_addr(c.slave_ctlport);
    let (ok, text) = control(slave, &format!("SERVICEOUT {out}")).expect("control port answers");
    assert!(
        ok && text.contains("waiting for MERGE"),
        "{text}\n{}",
        c.logs()
    );
    let pending = |r: &StatusReport| r.epoch == 0 && r.pending_epoch == Some(1);
    for s in &c.servers {
        c.wait_until(s.ctlport, "the change pending for epoch 1", pending);
    }
    wait_files(&c, &[0, 1, 2]);

    c.kill_all();
    c.start_all();
    for v in c.servers.iter().map(|s| s.ctlport).chain([c.slave_ctlport]) {
        c.wait_until(v, "the change still pending for epoch 1", pending);
    }
    let (ok, text) = control(slave, "MERGE").expect("control port answers");
    assert!(ok, "MERGE refused after the restart: {text}\n{}", c.logs());
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let (ok, text) = control(slave, "COMPMERGE").expect("control port answers");
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "COMPMERGE still refused: {text}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_membership(&c, &[0, 1, 2], 1, &all[..2], std::slice::from_ref(&out));
}

#[test]
fn a_server_added_by_restarting_one_chmpx_at_a_time_starts_service_out() {
    let mut c = Cluster::configure(3, true);
    let all = c.server_ids();
    let slave = c.slave_ctlport;
    start_first_two(&mut c);

    // The file gains the third server; the running nodes restart one at a time, each while the
    // others run with the old file, and the newcomer starts last.
    write_conf(c.dir.path(), &c.group, &c.servers, slave, true);
    for i in 0..2 {
        c.kill_chmpx(i);
        c.start_chmpx(i);
        c.wait_until(
            c.servers[i].ctlport,
            "the restarted node UP with its members",
            |r| {
                r.epoch == 0
                    && all[..2]
                        .iter()
                        .all(|m| ring_of(r, m) == Some(Ring::ServiceIn))
            },
        );
    }
    c.kill_slave();
    c.start_slave();
    c.start_chmpx(2);
    c.start_echo(2);
    c.wait_all_ready();
    wait_membership(&c, &[0, 1, 2], 0, &all[..2], std::slice::from_ref(&all[2]));
    let (ok, text) = control(
        c.ctl_addr(c.servers[2].ctlport),
        &format!("SERVICEIN {}", all[2]),
    )
    .expect("control port answers");
    assert!(ok, "SERVICEIN refused: {text}\n{}", c.logs());
    wait_membership(&c, &[0, 1, 2], 1, &all, &[]);
}
