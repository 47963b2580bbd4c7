//! Membership changes through the control port: SERVICEOUT then SERVICEIN change the epoch and
//! the ownership exactly as the placement map computes it, and traffic follows.

mod daemon_support;

use chmpx::daemon::status::{Ring, StatusReport};
use chmpx::placement::{key_hash, NodeId, PlacementMap};
use daemon_support::*;

fn check_ownership(r: &StatusReport, map: &PlacementMap) {
    for n in r.nodes.iter().filter(|n| n.port.is_some()) {
        let id = NodeId::new(&n.id);
        assert_eq!(
            n.slots_owned as usize,
            map.slots_of(&id).len(),
            "slots of {} at epoch {}",
            n.id,
            map.epoch()
        );
        assert_eq!(
            n.slots_primary as usize,
            map.primary_slots_of(&id).len(),
            "primary slots of {}",
            n.id
        );
        let want_ring = if map.members().contains(&id) {
            Ring::ServiceIn
        } else {
            Ring::ServiceOut
        };
        assert_eq!(n.ring, want_ring, "{}", n.id);
    }
}

#[test]
fn daemon_serviceout_then_servicein_changes_epoch_and_ownership() {
    let c = Cluster::start(3, true);
    let all = c.server_ids();
    let out = all[2].clone();
    // Give the command to a node that is not the coordinator, to exercise forwarding.
    let coordinator = all.iter().min().unwrap().clone();
    let asked = c
        .servers
        .iter()
        .find(|s| s.id() != coordinator)
        .unwrap()
        .ctlport;
    let (ok, text) = control(c.ctl_addr(asked), &format!("SERVICEOUT {out}")).unwrap();
    assert!(ok, "SERVICEOUT refused: {text}\n{}", c.logs());

    let remaining: Vec<NodeId> = all.iter().filter(|n| **n != out).cloned().collect();
    let map1 = c.map(1, &remaining);
    for v in c.servers.iter().map(|s| s.ctlport).chain([c.slave_ctlport]) {
        let r = c.wait_until(v, "epoch 1 with nothing pending", |r| {
            r.epoch == 1 && r.pending_epoch.is_none()
        });
        check_ownership(&r, &map1);
    }
    let client = c.client(c.slave_ctlport);
    for i in 0..100u32 {
        let h = key_hash(format!("m{i}").as_bytes());
        let (got, _) = ask(&client, h, b"x").unwrap();
        assert_eq!(got, map1.chain_for(h)[0].to_string());
        assert_ne!(got, out.to_string(), "a SERVICE OUT node serves nothing");
    }
    // A second change made against the old epoch is refused by the coordinator.
    let (ok, _) = control(c.ctl_addr(asked), "COMPMERGE").unwrap();
    assert!(!ok, "COMPMERGE with nothing pending is refused");

    let (ok, text) = control(c.ctl_addr(c.slave_ctlport), &format!("SERVICEIN {out}")).unwrap();
    assert!(ok, "SERVICEIN refused: {text}\n{}", c.logs());
    let map2 = c.map(2, &all);
    for v in c.servers.iter().map(|s| s.ctlport).chain([c.slave_ctlport]) {
        let r = c.wait_until(v, "epoch 2 with nothing pending", |r| {
            r.epoch == 2 && r.pending_epoch.is_none()
        });
        check_ownership(&r, &map2);
    }
    for i in 0..100u32 {
        let h = key_hash(format!("m{i}").as_bytes());
        assert_eq!(
            ask(&client, h, b"x").unwrap().0,
            map2.chain_for(h)[0].to_string()
        );
    }
}
