//! Manual smoke check of a running cluster: attaches to a local chmpx as a client and runs a
//! few commands through it, printing each answer.
//!
//! `cargo run -p dkc-server --example smoke_client -- CLUSTER CTLPORT [COUNT]`

use std::time::{Duration, Instant};

use chmpx::attach::{AttachOptions, Attachment, Role, Route};
use dkc_client::proto::{decode_response, encode_request, Request, Response, SetMode};

fn call(att: &Attachment, req: &Request) -> Response {
    let route = match req.routing_key() {
        Some(k) => Route::HashFirst(k2hash::key_hash(k)),
        None => Route::AllServers,
    };
    let body = encode_request(req).expect("encode");
    match att.request(route, &body, Duration::from_secs(5)) {
        Ok(env) if env.flags & chmpx::daemon::FLAG_CHMPX_ERROR != 0 => Response::error(
            dkc_client::proto::ErrorCode::Unavailable,
            String::from_utf8_lossy(&env.body),
        ),
        Ok(env) => decode_response(&env.body).unwrap_or_else(|e| {
            Response::error(dkc_client::proto::ErrorCode::BadRequest, e.to_string())
        }),
        Err(e) => Response::error(dkc_client::proto::ErrorCode::Timeout, e.to_string()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cluster = args.get(1).map_or("DKCSMOKE", String::as_str);
    let ctlport: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(18021);
    let count: u32 = args.get(3).and_then(|p| p.parse().ok()).unwrap_or(1000);
    let att = Attachment::connect(cluster, ctlport, Role::Client, AttachOptions::default())
        .expect("attach to chmpx");
    if let Some(nodes) = args.get(4) {
        // Compare the whole-space digests of the named nodes ("host:ctlport,host:ctlport").
        use chmpx::merge::protocol::{self as mp, HashRange, MergeRequest};
        let req = MergeRequest::Digest {
            ranges: vec![HashRange {
                lo: 0,
                hi: u64::MAX,
            }],
        };
        for node in nodes.split(',') {
            let route = Route::Node(chmpx::daemon::node_number(node));
            let body = mp::encode_request(&req).expect("encode");
            let answer = att
                .request(route, &body, Duration::from_secs(5))
                .map(|e| mp::decode_response(&e.body));
            println!("digest of {node}: {answer:?}");
        }
        return;
    }
    let set = |k: &str, v: &str| Request::Set {
        key: k.into(),
        value: v.into(),
        mode: SetMode::Set,
        flags: 3,
        expire_at: 0,
    };
    println!("set   {:?}", call(&att, &set("hello", "world")));
    println!(
        "get   {:?}",
        call(
            &att,
            &Request::Get {
                key: b"hello".to_vec()
            }
        )
    );
    println!(
        "incr  {:?}",
        call(
            &att,
            &Request::Incr {
                key: b"n".to_vec(),
                delta: 5,
                initial: Some(1),
                expire_at: 0
            }
        )
    );
    println!(
        "incr  {:?}",
        call(
            &att,
            &Request::Incr {
                key: b"n".to_vec(),
                delta: 5,
                initial: None,
                expire_at: 0
            }
        )
    );
    println!(
        "del   {:?}",
        call(
            &att,
            &Request::Delete {
                key: b"hello".to_vec(),
                cas: None
            }
        )
    );
    println!(
        "get   {:?}",
        call(
            &att,
            &Request::Get {
                key: b"hello".to_vec()
            }
        )
    );
    let started = Instant::now();
    let mut failures = 0;
    for i in 0..count {
        if !matches!(
            call(&att, &set(&format!("k{i}"), "v")),
            Response::Stored { .. }
        ) {
            failures += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{count} sets in {secs:.2} s ({:.0}/s, one at a time), {failures} failures",
        f64::from(count) / secs
    );
}
