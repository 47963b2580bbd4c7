//! `chmpx-echo` — a test and benchmark server process: attaches to its chmpx in the server role
//! and answers every request with `<node-id>|<request body>`, so a test can tell which node
//! served it. Merge requests get the answers of an empty store, so merges over echo nodes finish.
//!
//! `chmpx-echo --cluster NAME --ctlport N --node-id ID [--threads N]`

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use chmpx::attach::{AttachOptions, Attachment, Kind, Role};
use chmpx::merge::protocol::{
    decode_request, encode_response, is_merge_body, MergeRequest, MergeResponse, RangeDigest,
};

#[derive(Parser, Debug)]
#[command(
    name = "chmpx-echo",
    about = "echo server process for chmpx tests and benchmarks"
)]
struct Args {
    /// Cluster name (GROUP).
    #[arg(long)]
    cluster: String,
    /// Control port of the chmpx to attach to.
    #[arg(long)]
    ctlport: u16,
    /// Text put in front of every answer.
    #[arg(long = "node-id")]
    node_id: String,
    /// Answering threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn merge_answer(body: &[u8]) -> Vec<u8> {
    let resp = match decode_request(body) {
        Ok(MergeRequest::Digest { ranges }) => MergeResponse::Digests {
            digests: vec![RangeDigest::default(); ranges.len()],
        },
        Ok(MergeRequest::ListVersions { .. }) => MergeResponse::Versions {
            entries: vec![],
            next_cursor: None,
        },
        Ok(MergeRequest::FetchItems { keys }) => MergeResponse::Items {
            batch: vec![],
            count: 0,
            served: keys.len() as u32,
        },
        Ok(MergeRequest::ApplyItems { .. }) => MergeResponse::Applied {
            applied: 0,
            skipped: 0,
            bytes: 0,
        },
        Ok(MergeRequest::PurgeTombstones { .. }) => MergeResponse::Purged { purged: 0 },
        Ok(MergeRequest::DropRange { .. }) => MergeResponse::Dropped {
            dropped: 0,
            bytes: 0,
        },
        Err(e) => MergeResponse::Error {
            code: 1,
            message: e.to_string(),
        },
    };
    encode_response(&resp).unwrap_or_default()
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let opts = AttachOptions {
        connect_timeout_ms: 30_000,
        ..AttachOptions::default()
    };
    let att = match Attachment::connect(&args.cluster, args.ctlport, Role::Server, opts) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chmpx-echo: cannot attach: {e}");
            return ExitCode::FAILURE;
        }
    };
    let prefix = format!("{}|", args.node_id).into_bytes();
    let mut workers = Vec::new();
    for _ in 0..args.threads.max(1) {
        let att = att.clone();
        let prefix = prefix.clone();
        workers.push(std::thread::spawn(move || loop {
            match att.recv(Duration::from_secs(1)) {
                Ok(Some(req)) if req.kind == Kind::Request => {
                    let answer = if is_merge_body(&req.body) {
                        merge_answer(&req.body)
                    } else {
                        let mut a = prefix.clone();
                        a.extend_from_slice(&req.body);
                        a
                    };
                    if let Err(e) = att.reply(&req, &answer) {
                        eprintln!("chmpx-echo: reply failed: {e}");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("chmpx-echo: receive failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }));
    }
    for w in workers {
        let _ = w.join();
    }
    ExitCode::SUCCESS
}
