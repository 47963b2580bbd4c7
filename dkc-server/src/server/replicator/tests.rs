//! The acknowledgement rule and verdicts on hand-made answers (no I/O).

use super::*;
use chmpx::attach::{Kind, Route};
use dkc_client::proto::{encode_response, WireRecord};

const T: Duration = Duration::from_millis(1000);

fn env(flags: u16, body: Vec<u8>) -> Envelope {
    Envelope {
        msg_id: 9,
        kind: Kind::Response,
        route: Route::Reply {
            node: 1,
            attachment: 2,
            msg_id: 9,
        },
        flags,
        body,
        queued_ns: 0,
    }
}

fn ack() -> Envelope {
    env(
        0,
        encode_response(&Response::Replicated {
            applied: 1,
            stale: 0,
            conflict: None,
        })
        .unwrap(),
    )
}

fn superseded() -> Envelope {
    env(
        0,
        encode_response(&Response::Replicated {
            applied: 0,
            stale: 1,
            conflict: None,
        })
        .unwrap(),
    )
}

fn unreachable() -> Envelope {
    env(FLAG_CHMPX_ERROR, b"cannot reach n2".to_vec())
}

/// The version node `node` mints at `ms` (logical counter 0).
fn v(ms: u64, node: u8) -> u64 {
    dkc_client::proto::version::VersionParts {
        physical_ms: ms,
        logical: 0,
        node,
    }
    .pack()
}

fn rule(level: AckLevel, replica: u32) -> AckRule {
    AckRule { level, replica }
}

fn progress(expected: Option<u32>, responses: Vec<Envelope>, timed_out: bool) -> FanoutProgress {
    FanoutProgress {
        expected,
        responses,
        timed_out,
    }
}

const STORED: Response = Response::Stored { version: 5 };

fn code_of(r: &Response) -> Option<&ErrorCode> {
    match r {
        Response::Error { code, .. } => Some(code),
        _ => None,
    }
}

fn message_of(r: &Response) -> &str {
    match r {
        Response::Error { message, .. } => message,
        other => panic!("not an error: {other:?}"),
    }
}

#[test]
fn majorities_count_the_primary() {
    // (REPLICA, owners, majority, replica acks needed)
    for (replica, owners, majority, need) in [
        (0, 1, 1, 0),
        (1, 2, 2, 1),
        (2, 3, 2, 1),
        (3, 4, 3, 2),
        (4, 5, 3, 2),
    ] {
        let r = rule(AckLevel::Quorum, replica);
        assert_eq!(
            (r.owners(), r.majority()),
            (owners, majority),
            "REPLICA {replica}"
        );
        assert_eq!(r.needed(replica), Ok(need), "REPLICA {replica}");
    }
    assert_eq!(rule(AckLevel::All, 2).needed(2), Ok(2));
    assert_eq!(
        rule(AckLevel::All, 2).needed(1),
        Ok(1),
        "all = every live owner"
    );
    assert_eq!(rule(AckLevel::All, 2).needed(0), Ok(0));
    assert_eq!(rule(AckLevel::One, 2).needed(2), Ok(0));
}

#[test]
fn quorum_with_too_few_live_owners_fails_at_once_and_says_why() {
    let r = rule(AckLevel::Quorum, 3);
    let short = r.needed(1).unwrap_err();
    assert_eq!(code_of(&short), Some(&ErrorCode::Unavailable));
    let m = message_of(&short);
    for part in [
        "written on the primary only",
        "quorum needs 3 of the 4",
        "only 2 are live",
    ] {
        assert!(m.contains(part), "{m}");
    }
    // The verdict comes as soon as the count is known, without any answer.
    let v = verdict(r, &progress(Some(1), vec![], false), &STORED, T).unwrap();
    assert_eq!(v, short);
}

#[test]
fn all_waits_for_every_reached_owner() {
    let r = rule(AckLevel::All, 2);
    assert_eq!(verdict(r, &progress(None, vec![], false), &STORED, T), None);
    assert_eq!(
        verdict(r, &progress(Some(2), vec![ack()], false), &STORED, T),
        None
    );
    assert_eq!(
        verdict(r, &progress(Some(2), vec![ack(), ack()], false), &STORED, T),
        Some(STORED)
    );
    assert_eq!(
        verdict(r, &progress(Some(0), vec![], false), &STORED, T),
        Some(STORED),
        "no other owner is live"
    );
    let late = verdict(r, &progress(Some(2), vec![ack()], true), &STORED, T).unwrap();
    assert_eq!(code_of(&late), Some(&ErrorCode::Timeout));
    let m = message_of(&late);
    assert!(
        m.contains("only 1 of the 2") && m.contains("ACKLEVEL all"),
        "{m}"
    );
    assert!(m.contains("written on the primary"), "{m}");
}

#[test]
fn quorum_answers_at_the_majority_without_the_slow_owner() {
    let r = rule(AckLevel::Quorum, 2);
    assert_eq!(
        verdict(r, &progress(Some(2), vec![], false), &STORED, T),
        None
    );
    assert_eq!(
        verdict(r, &progress(Some(2), vec![ack()], false), &STORED, T),
        Some(STORED)
    );
    // One refusal still leaves the other owner to make the majority.
    assert_eq!(
        verdict(
            r,
            &progress(Some(2), vec![unreachable()], false),
            &STORED,
            T
        ),
        None
    );
    assert_eq!(
        verdict(
            r,
            &progress(Some(2), vec![unreachable(), ack()], false),
            &STORED,
            T
        ),
        Some(STORED)
    );
    let both = verdict(
        r,
        &progress(Some(2), vec![unreachable(), unreachable()], false),
        &STORED,
        T,
    )
    .unwrap();
    assert_eq!(code_of(&both), Some(&ErrorCode::Unavailable));
    assert!(message_of(&both).contains("cannot reach n2"), "{both:?}");
}

#[test]
fn quorum_takes_owners_chmpx_could_not_deliver_to_for_not_live() {
    // chmpx counts an owner it cannot reach but a majority does not see DOWN, and refuses it:
    // for quorum it is not live, so too few live owners fail at once with quorum's reason.
    let r = rule(AckLevel::Quorum, 1);
    let v = verdict(
        r,
        &progress(Some(1), vec![unreachable()], false),
        &STORED,
        T,
    )
    .unwrap();
    assert_eq!(code_of(&v), Some(&ErrorCode::Unavailable));
    let m = message_of(&v);
    for part in [
        "written on the primary only",
        "only 1 are live",
        "cannot reach n2",
    ] {
        assert!(m.contains(part), "{m}");
    }
    // With REPLICA 2 one undelivered owner leaves a majority possible: wait for the other.
    let r = rule(AckLevel::Quorum, 2);
    let p = progress(Some(2), vec![unreachable()], false);
    assert_eq!(verdict(r, &p, &STORED, T), None);
    // `all` is not changed by it: the refusal fails the write with the owner's reason.
    let r = rule(AckLevel::All, 1);
    let v = verdict(r, &p, &STORED, T).unwrap();
    assert!(
        message_of(&v).contains("chmpx could not replicate it"),
        "{v:?}"
    );
}

#[test]
fn a_refusal_fails_all_at_once_with_the_owners_reason() {
    let r = rule(AckLevel::All, 2);
    let v = verdict(
        r,
        &progress(Some(2), vec![unreachable()], false),
        &STORED,
        T,
    )
    .unwrap();
    assert_eq!(code_of(&v), Some(&ErrorCode::Unavailable));
    let m = message_of(&v);
    assert!(
        m.contains("cannot reach n2") && m.contains("0 of the 2"),
        "{m}"
    );
    let ro = env(
        0,
        encode_response(&Response::error(ErrorCode::ReadOnly, "ro")).unwrap(),
    );
    let v = verdict(r, &progress(Some(2), vec![ack(), ro], false), &STORED, T).unwrap();
    assert_eq!(code_of(&v), Some(&ErrorCode::ReadOnly));
}

#[test]
fn superseded_wins_over_acknowledgements() {
    for level in [AckLevel::All, AckLevel::Quorum] {
        let v = verdict(
            rule(level, 2),
            &progress(Some(2), vec![superseded()], false),
            &STORED,
            T,
        );
        assert_eq!(
            v.as_ref().and_then(code_of),
            Some(&ErrorCode::Superseded),
            "{level:?}"
        );
    }
}

#[test]
fn replica_answers_that_are_not_acknowledgements_say_the_primary_has_it() {
    let cases = [
        (unreachable(), ErrorCode::Unavailable),
        (env(0, b"garbage".to_vec()), ErrorCode::Unavailable),
        (
            env(
                0,
                encode_response(&Response::error(ErrorCode::ReadOnly, "ro")).unwrap(),
            ),
            ErrorCode::ReadOnly,
        ),
        (
            env(0, encode_response(&Response::Deleted).unwrap()),
            ErrorCode::Unavailable,
        ),
        (superseded(), ErrorCode::Superseded),
    ];
    for (e, want) in cases {
        let got = replica_answer(&e).unwrap_err();
        assert_eq!(code_of(&got), Some(&want));
        assert!(
            message_of(&got).contains("written on the primary"),
            "{got:?}"
        );
    }
    assert_eq!(replica_answer(&ack()), Ok(()));
    let lost = failed_to_send(AttachError::ChmpxRestarted { msg_id: 9 });
    assert_eq!(code_of(&lost), Some(&ErrorCode::Unavailable));
}

#[test]
fn no_count_notice_times_out_with_its_own_message() {
    let r = rule(AckLevel::All, 1);
    let v = verdict(r, &progress(None, vec![], true), &STORED, T).unwrap();
    assert_eq!(code_of(&v), Some(&ErrorCode::Timeout));
    assert!(
        message_of(&v).contains("did not say how many owners"),
        "{v:?}"
    );
}

#[test]
fn a_replica_holding_our_own_later_write_is_not_a_lost_write() {
    let store = k2hash::OpenOptions::memory().open().unwrap();
    let rec = |version: u64| k2hash::Record {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        version,
        ..k2hash::Record::default()
    };
    assert!(
        !overtaken_locally(&store, b"k", v(10, 1)),
        "nothing held here"
    );
    store.set_if_newer(&rec(v(10, 1))).unwrap();
    assert!(
        !overtaken_locally(&store, b"k", v(10, 1)),
        "we still hold our write"
    );
    store.set_if_newer(&rec(v(12, 1))).unwrap();
    assert!(
        overtaken_locally(&store, b"k", v(10, 1)),
        "a later local write"
    );
}

#[test]
fn a_newer_version_from_another_primary_is_superseded() {
    let store = k2hash::OpenOptions::memory().open().unwrap();
    // Node 1 wrote at 10; node 2, acting as primary too, wrote at 12 and replicated it here.
    store
        .set_if_newer(&k2hash::Record {
            key: b"k".to_vec(),
            value: b"theirs".to_vec(),
            version: v(12, 2),
            ..k2hash::Record::default()
        })
        .unwrap();
    assert!(
        !overtaken_locally(&store, b"k", v(10, 1)),
        "another node's newer version is not our own later write"
    );
}

fn conflicted(held_version: u64) -> Envelope {
    env(
        0,
        encode_response(&Response::Replicated {
            applied: 0,
            stale: 0,
            conflict: Some(Box::new(WireRecord {
                key: b"k".to_vec(),
                value: b"theirs".to_vec(),
                version: held_version,
                ..WireRecord::default()
            })),
        })
        .unwrap(),
    )
}

#[test]
fn a_conflict_answer_is_never_an_acknowledgement_and_carries_the_record() {
    let got = replica_answer(&conflicted(42)).unwrap_err();
    assert_eq!(code_of(&got), Some(&ErrorCode::Superseded));
    let m = message_of(&got);
    assert!(m.contains("version 42") && m.contains("taken back"), "{m}");
    for level in [AckLevel::All, AckLevel::Quorum] {
        // Even when the other replica's acknowledgement alone would meet quorum, a conflict
        // that arrived first decides.
        let p = progress(Some(2), vec![conflicted(42), ack()], false);
        let v = verdict(rule(level, 2), &p, &STORED, T);
        assert_eq!(
            v.as_ref().and_then(code_of),
            Some(&ErrorCode::Superseded),
            "{level:?}"
        );
        let learned = conflicts(&p);
        assert_eq!(learned.len(), 1);
        assert_eq!(
            (learned[0].version, &learned[0].value[..]),
            (42, &b"theirs"[..])
        );
    }
    assert!(conflicts(&progress(Some(1), vec![ack(), superseded()], false)).is_empty());
    // A fenced record older than what the replica holds comes back stale with that record.
    let stale_fenced = env(
        0,
        encode_response(&Response::Replicated {
            applied: 0,
            stale: 1,
            conflict: Some(Box::new(WireRecord {
                key: b"k".to_vec(),
                version: 99,
                ..WireRecord::default()
            })),
        })
        .unwrap(),
    );
    let got = replica_answer(&stale_fenced).unwrap_err();
    assert_eq!(code_of(&got), Some(&ErrorCode::Superseded));
    assert!(message_of(&got).contains("taken back"), "{got:?}");
}
