//! The client-host side of the multi-host fault tests: a workload that runs *inside* a client
//! host (its own IPC namespace, its own slave chmpx) through the `dkc_client` driver and
//! records every operation with its outcome as one JSON line ([`OpRecord`]), plus the
//! after-the-run tools: routed reads of a list of keys and per-slot digests of every owner.
//! `dkc-fault-client` is the thin binary around it; the checker lives in the `dkc-tests`
//! crate and reads the files this writes.
//!
//! Keys and values are chosen so a checker needs no coordination between clients:
//! - register keys `r<client>-<i>` are written (set, delete) by their own client only, one
//!   write at a time, so a key's writes are totally ordered; every value is unique
//!   (`c<client>-s<op>`), so a read names the write it saw;
//! - counter keys `ctr-<j>` hold a decimal number, created by `init`, incremented by every
//!   client with a get + CAS loop;
//! - every client reads register keys of every client and the counters.
//!
//! Times are wall-clock microseconds (`CLOCK_REALTIME`, the same in every namespace), so
//! operations of different hosts can be ordered by the checker.

use std::io::Write;
use std::time::{Duration, Instant};

use chmpx::attach::{AttachOptions, Attachment, Role, Route};
use chmpx::daemon::status::{Live, Ring, StatusReport};
use chmpx::merge::protocol::{self as mp, HashRange, MergeRequest, MergeResponse, RangeDigest};
use chmpx::placement::{slot_hash_range, NodeId, PlacementMap};
use dkc_client::client::options::ClientOptions;
use dkc_client::client::types::StoreOptions;
use dkc_client::client::{Client, ClientError};
use serde::{Deserialize, Serialize};

use super::memcached_client::{McClient, McError};
use super::Seed;

/// How long one workload request waits for its answer, ms (the driver may retry once).
pub const WORK_REQUEST_TIMEOUT_MS: u64 = 2000;
/// How long a workload client keeps trying to attach, ms.
pub const WORK_ATTACH_TIMEOUT_MS: u64 = 10_000;
/// Longest workload run, ms.
pub const WORK_DURATION_MAX_MS: u64 = 3_600_000;
/// Most clients (threads) in one workload process.
pub const WORK_THREADS_MAX: usize = 16;
/// Pause between two operations of one client, ms (keeps a 2-core machine breathing).
pub const WORK_OP_PAUSE_MS: u64 = 2;
/// Longest a control-port query may take, ms.
pub const CONTROL_QUERY_TIMEOUT_MS: u64 = 5000;
/// Digest requests time out after this, ms.
pub const DIGEST_REQUEST_TIMEOUT_MS: u64 = 5000;

/// Percent of operations of each kind (the rest are reads).
const SET_PERCENT: u64 = 35;
const DELETE_PERCENT: u64 = 7;
const INCR_PERCENT: u64 = 18;

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// Unconditional store of `value`.
    Set,
    /// Delete.
    Delete,
    /// One get + CAS attempt to add 1 to a counter; `value` is the new count it tried.
    Incr,
    /// Read; `read` is what it returned.
    Get,
}

/// What became of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpResult {
    /// Acknowledged (for a get: answered).
    Ok,
    /// Certainly not applied (for an incr: lost the CAS race, or the read before it failed).
    Failed,
    /// May or may not have been applied (timeout, unavailable, server error).
    Unknown,
}

/// One recorded operation (one JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRecord {
    /// Client (thread) id, unique across hosts.
    pub client: usize,
    /// The client's running operation count.
    pub seq: u64,
    /// What it did.
    pub kind: OpKind,
    /// The key.
    pub key: String,
    /// Value written (set, incr), `None` otherwise.
    pub value: Option<String>,
    /// For a get that was answered: the value, `None` when missing.
    pub read: Option<Option<String>>,
    /// Outcome.
    pub result: OpResult,
    /// Error text when not `Ok`.
    pub error: Option<String>,
    /// Wall clock at the call, µs since the unix epoch.
    pub start_us: u64,
    /// Wall clock at the answer, µs since the unix epoch.
    pub end_us: u64,
    /// The protocol command that carried it when the kind does not say (an increment:
    /// `cas` after a read, or memcached's server-side `incr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// What a workload process runs.
#[derive(Debug, Clone)]
pub struct WorkSpec {
    /// Cluster GROUP.
    pub cluster: String,
    /// The local chmpx's control port.
    pub ctlport: u16,
    /// Id of this process's first client; its threads are `first_client..+threads`.
    pub first_client: usize,
    /// Threads (clients) in this process.
    pub threads: usize,
    /// Clients in the whole run (whose register keys are read).
    pub clients_total: usize,
    /// Register keys per client.
    pub keys_per_client: usize,
    /// Counter keys.
    pub counters: usize,
    /// How long to run.
    pub duration: Duration,
    /// Seed of the choices.
    pub seed: u64,
    /// The run ends early once this file exists (the test's way to stop every host's
    /// workload cleanly, with its records flushed).
    pub stop_file: Option<std::path::PathBuf>,
    /// Talk the memcached protocol to the `dkc-memcached` at this address instead of using
    /// the driver (the chmpx attachment is then dkc-memcached's).
    pub memcached: Option<std::net::SocketAddr>,
}

/// How often a client looks for the stop file, in operations.
const STOP_FILE_CHECK_EVERY_OPS: u64 = 16;

/// Wall clock, µs since the unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Register key `i` of `client`.
pub fn register_key(client: usize, i: usize) -> String {
    format!("r{client}-{i}")
}

/// Counter key `j`.
pub fn counter_key(j: usize) -> String {
    format!("ctr-{j}")
}

/// The driver attached to the local chmpx.
pub fn connect(cluster: &str, ctlport: u16) -> Result<Client, String> {
    let defaults = ClientOptions::default();
    let opts = ClientOptions {
        request_timeout: Duration::from_millis(WORK_REQUEST_TIMEOUT_MS),
        attach: AttachOptions {
            connect_timeout_ms: WORK_ATTACH_TIMEOUT_MS,
            ..defaults.attach.clone()
        },
        ..defaults
    };
    Client::connect(cluster, ctlport, opts)
        .map_err(|e| format!("connect to {cluster}:{ctlport}: {e}"))
}

/// Whether a failed write certainly did not happen.
fn write_failed_for_sure(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::TooLarge { .. }
            | ClientError::NotNumeric { .. }
            | ClientError::Config(_)
            | ClientError::InvalidArgument(_)
            | ClientError::CasMismatch { .. }
            | ClientError::NotFound { .. }
    )
}

/// Creates every counter with value 0 (before the workload). Errors name the counter.
pub fn init_counters(client: &Client, counters: usize) -> Result<(), String> {
    for j in 0..counters {
        let k = counter_key(j);
        client
            .set(&k, "0", StoreOptions::new())
            .map_err(|e| format!("init {k}: {e}"))?;
    }
    Ok(())
}

/// An error of a workload request: how certain its outcome is, and the text.
type OpError = (OpResult, String);

/// How a workload client reaches the cluster: the driver attached to the local chmpx, or
/// the memcached protocol spoken to the local `dkc-memcached`.
enum WorkBackend<'a> {
    Native(&'a Client),
    Memcached(McClient),
}

fn native_write<T>(r: Result<T, ClientError>) -> Result<T, OpError> {
    r.map_err(|e| {
        let res = if write_failed_for_sure(&e) {
            OpResult::Failed
        } else {
            OpResult::Unknown
        };
        (res, e.to_string())
    })
}

fn mc_error(e: McError) -> OpError {
    match e {
        McError::Failed(t) => (OpResult::Failed, t),
        McError::Unknown(t) => (OpResult::Unknown, t),
    }
}

impl WorkBackend<'_> {
    fn set(&mut self, key: &str, value: &str) -> Result<(), OpError> {
        match self {
            WorkBackend::Native(c) => {
                native_write(c.set(key, value, StoreOptions::new()).map(drop))
            }
            WorkBackend::Memcached(m) => m.set(key, value).map_err(mc_error),
        }
    }

    /// Deleting a missing key is acknowledged too: afterwards it is absent.
    fn delete(&mut self, key: &str) -> Result<(), OpError> {
        match self {
            WorkBackend::Native(c) => match c.delete(key) {
                Err(ClientError::NotFound { .. }) => Ok(()),
                r => native_write(r),
            },
            WorkBackend::Memcached(m) => m.delete(key).map(drop).map_err(mc_error),
        }
    }

    /// The value and its version (CAS token); errors are reads, so their outcome is unknown
    /// only in the sense that nothing was learnt.
    fn get(&mut self, key: &str) -> Result<Option<(String, u64)>, String> {
        match self {
            WorkBackend::Native(c) => c
                .get(key)
                .map(|o| o.map(|i| (String::from_utf8_lossy(&i.value).into_owned(), i.version)))
                .map_err(|e| e.to_string()),
            WorkBackend::Memcached(m) => m
                .get(key, true)
                .map(|o| o.map(|i| (i.value, i.cas)))
                .map_err(|e| e.to_string()),
        }
    }

    fn cas(&mut self, key: &str, value: &str, version: u64) -> Result<(), OpError> {
        match self {
            WorkBackend::Native(c) => {
                native_write(c.cas(key, value, version, StoreOptions::new()).map(drop))
            }
            WorkBackend::Memcached(m) => m.cas(key, value, version).map_err(mc_error),
        }
    }
}

/// One client's loop: writes JSON lines to `out` until `deadline`.
fn client_loop(
    client_id: usize,
    mut backend: WorkBackend<'_>,
    spec: &WorkSpec,
    deadline: Instant,
    out: &std::sync::Mutex<std::io::BufWriter<std::fs::File>>,
) -> Result<u64, String> {
    let mut rng = Seed::new(spec.seed ^ (client_id as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut seq: u64 = 0;
    while Instant::now() < deadline {
        if seq.is_multiple_of(STOP_FILE_CHECK_EVERY_OPS)
            && spec.stop_file.as_ref().is_some_and(|p| p.exists())
        {
            break;
        }
        let roll = rng.below(100);
        let start_us = now_us();
        let mut rec = OpRecord {
            client: client_id,
            seq,
            kind: OpKind::Get,
            key: String::new(),
            value: None,
            read: None,
            result: OpResult::Ok,
            error: None,
            start_us,
            end_us: 0,
            via: None,
        };
        let outcome = |r: Result<(), OpError>| match r {
            Ok(()) => (OpResult::Ok, None),
            Err((res, text)) => (res, Some(text)),
        };
        if roll < SET_PERCENT + DELETE_PERCENT {
            rec.key = register_key(client_id, rng.below(spec.keys_per_client as u64) as usize);
            if roll < SET_PERCENT {
                let v = format!("c{client_id}-s{seq}");
                rec.kind = OpKind::Set;
                (rec.result, rec.error) = outcome(backend.set(&rec.key, &v));
                rec.value = Some(v);
            } else {
                rec.kind = OpKind::Delete;
                (rec.result, rec.error) = outcome(backend.delete(&rec.key));
            }
        } else if roll < SET_PERCENT + DELETE_PERCENT + INCR_PERCENT {
            rec.kind = OpKind::Incr;
            rec.key = counter_key(rng.below(spec.counters as u64) as usize);
            // Over memcached, half the increments are the server-side `incr` (its answer is
            // the new count), half `gets` + `cas` like the driver's.
            let server_side = match &mut backend {
                WorkBackend::Memcached(m) if rng.below(2) == 0 => Some(m),
                _ => None,
            };
            rec.via = Some(if server_side.is_some() { "incr" } else { "cas" }.into());
            if let Some(m) = server_side {
                match m.incr(&rec.key) {
                    Ok(n) => rec.value = Some(n.to_string()),
                    Err(e) => (rec.result, rec.error) = outcome(Err(mc_error(e))),
                }
            } else {
                match backend.get(&rec.key) {
                    Ok(Some((value, version))) => {
                        let n: u64 = value.parse().unwrap_or(0);
                        let v = (n + 1).to_string();
                        (rec.result, rec.error) = outcome(backend.cas(&rec.key, &v, version));
                        rec.value = Some(v);
                    }
                    Ok(None) => {
                        rec.result = OpResult::Failed;
                        rec.error = Some("counter missing before cas".into());
                    }
                    Err(e) => {
                        rec.result = OpResult::Failed;
                        rec.error = Some(format!("read before cas: {e}"));
                    }
                }
            }
        } else {
            rec.kind = OpKind::Get;
            rec.key = if rng.below(4) == 0 {
                counter_key(rng.below(spec.counters as u64) as usize)
            } else {
                let c = rng.below(spec.clients_total as u64) as usize;
                register_key(c, rng.below(spec.keys_per_client as u64) as usize)
            };
            match backend.get(&rec.key) {
                Ok(item) => rec.read = Some(item.map(|(v, _)| v)),
                Err(e) => {
                    rec.result = OpResult::Unknown;
                    rec.error = Some(e);
                }
            }
        }
        rec.end_us = now_us();
        let line = serde_json::to_string(&rec).map_err(|e| format!("encode record: {e}"))?;
        {
            let mut w = out
                .lock()
                .map_err(|_| "history writer poisoned".to_string())?;
            writeln!(w, "{line}").map_err(|e| format!("write history: {e}"))?;
        }
        seq += 1;
        std::thread::sleep(Duration::from_millis(WORK_OP_PAUSE_MS));
    }
    Ok(seq)
}

/// Runs the workload: `spec.threads` clients, each with its own driver attachment, writing
/// their records to `out_path`. Returns the number of operations.
pub fn run_work(spec: &WorkSpec, out_path: &std::path::Path) -> Result<u64, String> {
    if spec.threads == 0 || spec.threads > WORK_THREADS_MAX {
        return Err(format!(
            "{} threads asked; a workload process runs 1..={WORK_THREADS_MAX}",
            spec.threads
        ));
    }
    if spec.keys_per_client == 0 || spec.counters == 0 || spec.clients_total == 0 {
        return Err("keys per client, counters and clients must each be at least 1".into());
    }
    if spec.duration > Duration::from_millis(WORK_DURATION_MAX_MS) {
        return Err(format!("a run lasts at most {WORK_DURATION_MAX_MS} ms"));
    }
    let file = std::fs::File::create(out_path)
        .map_err(|e| format!("create {}: {e}", out_path.display()))?;
    let out = std::sync::Mutex::new(std::io::BufWriter::new(file));
    let deadline = Instant::now() + spec.duration;
    let results: Vec<Result<u64, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..spec.threads)
            .map(|t| {
                let out = &out;
                s.spawn(move || {
                    let id = spec.first_client + t;
                    match spec.memcached {
                        Some(addr) => {
                            let backend = WorkBackend::Memcached(McClient::new(addr));
                            client_loop(id, backend, spec, deadline, out)
                        }
                        None => {
                            let client = connect(&spec.cluster, spec.ctlport)?;
                            client_loop(id, WorkBackend::Native(&client), spec, deadline, out)
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("client thread panicked".into()))
            })
            .collect()
    });
    out.lock()
        .map_err(|_| "history writer poisoned".to_string())?
        .flush()
        .map_err(|e| format!("flush history: {e}"))?;
    let mut total = 0;
    for r in results {
        total += r?;
    }
    Ok(total)
}

/// Most keys one `fill` writes.
pub const FILL_KEYS_MAX: usize = 100_000;
/// Largest value a `fill` writes, bytes.
pub const FILL_VALUE_BYTES_MAX: usize = 256 * 1024;
/// Byte that pads `fill` values to [`FillSpec::value_bytes`].
const FILL_PAD: char = '.';

/// What one `fill` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillSpec {
    /// Client id whose register keys are written (`r<client>-<i>`).
    pub client_id: usize,
    /// First key number `i`.
    pub first_key: usize,
    /// Keys written, at most.
    pub keys: usize,
    /// Values are padded to this many bytes (0: the bare `c<client>-s<i>`).
    pub value_bytes: usize,
    /// Stop after this many writes were refused with `E_NO_SPACE` (0: never stop early).
    pub stop_after_no_space: usize,
}

/// What one `fill` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FillOutcome {
    /// Writes sent (keys `first_key..first_key + attempted`).
    pub attempted: usize,
    /// Writes acknowledged.
    pub acked: usize,
    /// Writes refused with `E_NO_SPACE` (a full disk on an owner).
    pub no_space: usize,
}

/// Whether an operation's error text is a refusal for a full disk (`E_NO_SPACE`).
pub fn is_no_space(error: &str) -> bool {
    error.contains("E_NO_SPACE")
}

/// The value `fill` writes as key number `i` of client `client_id`: `c<client>-s<i>` padded
/// to `value_bytes` (unique per key, like every workload value).
pub fn fill_value(client_id: usize, i: usize, value_bytes: usize) -> String {
    let mut v = format!("c{client_id}-s{i}");
    if v.len() < value_bytes {
        v.extend(std::iter::repeat_n(FILL_PAD, value_bytes - v.len()));
    }
    v
}

/// Writes register keys of `spec.client_id` once each ([`fill_value`]), one at a time through
/// the driver, recording each write like the workload does (so the checker holds them to the
/// same promises): data for the merges of a run to move, or large values that fill a disk
/// (then it stops after `spec.stop_after_no_space` refusals).
pub fn run_fill(
    client: &Client,
    spec: &FillSpec,
    out_path: &std::path::Path,
) -> Result<FillOutcome, String> {
    if spec.keys > FILL_KEYS_MAX {
        return Err(format!(
            "{} keys asked; fill writes at most {FILL_KEYS_MAX}",
            spec.keys
        ));
    }
    if spec.value_bytes > FILL_VALUE_BYTES_MAX {
        return Err(format!(
            "{}-byte values asked; fill writes at most {FILL_VALUE_BYTES_MAX}",
            spec.value_bytes
        ));
    }
    let file = std::fs::File::create(out_path)
        .map_err(|e| format!("create {}: {e}", out_path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut done = FillOutcome::default();
    let mut backend = WorkBackend::Native(client);
    let client_id = spec.client_id;
    for i in spec.first_key..spec.first_key + spec.keys {
        if spec.stop_after_no_space > 0 && done.no_space >= spec.stop_after_no_space {
            break;
        }
        let key = register_key(client_id, i);
        let value = fill_value(client_id, i, spec.value_bytes);
        let start_us = now_us();
        let (result, error) = match backend.set(&key, &value) {
            Ok(()) => (OpResult::Ok, None),
            Err((r, t)) => (r, Some(t)),
        };
        done.attempted += 1;
        if result == OpResult::Ok {
            done.acked += 1;
        }
        if error.as_deref().is_some_and(is_no_space) {
            done.no_space += 1;
        }
        let rec = OpRecord {
            client: client_id,
            seq: i as u64,
            kind: OpKind::Set,
            key,
            value: Some(value),
            read: None,
            result,
            error,
            start_us,
            end_us: now_us(),
            via: None,
        };
        let line = serde_json::to_string(&rec).map_err(|e| format!("encode record: {e}"))?;
        writeln!(out, "{line}").map_err(|e| format!("write {}: {e}", out_path.display()))?;
    }
    out.flush()
        .map_err(|e| format!("flush {}: {e}", out_path.display()))?;
    Ok(done)
}

/// What a final read of one key got (one JSON line of `dkc-fault-client read`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalRead {
    /// The key.
    pub key: String,
    /// `Ok(value or None)`, or the error text.
    pub got: Result<Option<String>, String>,
}

/// Reads every key through the driver.
pub fn read_keys(client: &Client, keys: &[String]) -> Vec<FinalRead> {
    keys.iter()
        .map(|k| FinalRead {
            key: k.clone(),
            got: client
                .get(k)
                .map(|o| o.map(|i| String::from_utf8_lossy(&i.value).into_owned()))
                .map_err(|e| e.to_string()),
        })
        .collect()
}

/// The result of comparing every owner's per-slot digests (JSON of `dkc-fault-client digests`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestReport {
    /// Placement epoch the check used.
    pub epoch: u64,
    /// SERVICE IN members.
    pub members: Vec<String>,
    /// Slots compared.
    pub slots: u32,
    /// Items summed over the first owner of each slot.
    pub items: u64,
    /// One line per slot whose owners differ (or did not answer), or that has other than
    /// REPLICA+1 owners (fewer when there are fewer members).
    pub mismatches: Vec<String>,
    /// One line per running SERVICE OUT server node that still holds items (after its
    /// hand-off every item must be on its REPLICA+1 owners only).
    #[serde(default)]
    pub extra_copies: Vec<String>,
    /// Running SERVICE OUT server nodes found holding nothing.
    #[serde(default)]
    pub handed_off: Vec<String>,
}

impl DigestReport {
    /// Whether every owner of every slot agrees and nobody else holds a copy.
    pub fn converged(&self) -> bool {
        self.mismatches.is_empty() && self.extra_copies.is_empty()
    }
}

/// The STATUSJSON report of the chmpx whose control address is `ctl`.
pub fn query_status(ctl: std::net::SocketAddr) -> Result<StatusReport, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let (ok, text) = rt
        .block_on(chmpx::daemon::control::query(
            ctl,
            "STATUSJSON",
            Duration::from_millis(CONTROL_QUERY_TIMEOUT_MS),
        ))
        .map_err(|e| format!("STATUSJSON from {ctl}: {e}"))?;
    if !ok {
        return Err(format!("STATUSJSON from {ctl} refused: {}", text.trim()));
    }
    serde_json::from_str(text.trim()).map_err(|e| format!("STATUSJSON from {ctl}: {e}"))
}

fn node_digests(
    att: &Attachment,
    node: &NodeId,
    slot_count: u32,
) -> Result<Vec<RangeDigest>, String> {
    let slots: Vec<u32> = (0..slot_count).collect();
    let mut out = Vec::with_capacity(slots.len());
    let route = Route::Node(chmpx::daemon::node_number(node.as_str()));
    let timeout = Duration::from_millis(DIGEST_REQUEST_TIMEOUT_MS);
    for chunk in slots.chunks(mp::DIGEST_RANGES_MAX) {
        let ranges = chunk
            .iter()
            .map(|s| {
                let (lo, hi) = slot_hash_range(*s, slot_count);
                HashRange { lo, hi }
            })
            .collect();
        let body = mp::encode_request(&MergeRequest::Digest { ranges })
            .map_err(|e| format!("encode digest request: {e}"))?;
        let env = att
            .request(route, &body, timeout)
            .map_err(|e| format!("digest from {node}: {e}"))?;
        if env.flags & chmpx::daemon::FLAG_CHMPX_ERROR != 0 {
            return Err(format!(
                "digest from {node}: chmpx: {}",
                String::from_utf8_lossy(&env.body)
            ));
        }
        match mp::decode_response(&env.body) {
            Ok(MergeResponse::Digests { digests }) if digests.len() == chunk.len() => {
                out.extend(digests)
            }
            other => return Err(format!("digest from {node}: unexpected answer {other:?}")),
        }
    }
    Ok(out)
}

/// Compares the per-slot digests of every owner of every slot, in the placement the chmpx at
/// `ctl` works with, asking each node directly (`Route::Node`) through a client attachment.
pub fn digest_report(
    cluster: &str,
    ctlport: u16,
    ctl: std::net::SocketAddr,
) -> Result<DigestReport, String> {
    let r = query_status(ctl)?;
    let members: Vec<NodeId> = r
        .nodes
        .iter()
        .filter(|n| n.ring == Ring::ServiceIn)
        .map(|n| NodeId::new(&n.id))
        .collect();
    let map = PlacementMap::compute(r.epoch, &members, r.slot_count, r.replica)
        .map_err(|e| format!("placement of epoch {}: {e}", r.epoch))?;
    let opts = AttachOptions {
        connect_timeout_ms: WORK_ATTACH_TIMEOUT_MS,
        rw_timeout_ms: DIGEST_REQUEST_TIMEOUT_MS,
        ..AttachOptions::default()
    };
    let att = Attachment::connect(cluster, ctlport, Role::Client, opts)
        .map_err(|e| format!("attach to {cluster}:{ctlport}: {e}"))?;
    let per_node: Vec<(NodeId, Result<Vec<RangeDigest>, String>)> = members
        .iter()
        .map(|n| (n.clone(), node_digests(&att, n, r.slot_count)))
        .collect();
    let get = |n: &NodeId, slot: u32| -> Result<RangeDigest, String> {
        match per_node.iter().find(|(m, _)| m == n) {
            Some((_, Ok(d))) => Ok(d[slot as usize]),
            Some((_, Err(e))) => Err(e.clone()),
            None => Err(format!("{n} is not a member")),
        }
    };
    let mut rep = DigestReport {
        epoch: r.epoch,
        members: members.iter().map(|m| m.to_string()).collect(),
        slots: r.slot_count,
        ..DigestReport::default()
    };
    let owners_wanted = (r.replica as usize + 1).min(members.len());
    for slot in 0..r.slot_count {
        let seen: Vec<(&NodeId, Result<RangeDigest, String>)> =
            map.owners(slot).iter().map(|o| (o, get(o, slot))).collect();
        if seen.len() != owners_wanted {
            rep.mismatches.push(format!(
                "slot {slot}: {} owners, want REPLICA+1 = {owners_wanted}",
                seen.len()
            ));
        }
        if let Some((_, Ok(d))) = seen.first() {
            rep.items += d.count;
        }
        let first = seen.first().map(|s| s.1.clone());
        let same = seen
            .iter()
            .all(|(_, d)| d.is_ok() && Some(d) == first.as_ref());
        if !same {
            let text: Vec<String> = seen
                .iter()
                .map(|(o, d)| match d {
                    Ok(d) => format!("{o}: {} items #{:016x}", d.count, d.hash),
                    Err(e) => format!("{o}: {e}"),
                })
                .collect();
            rep.mismatches
                .push(format!("slot {slot}: {}", text.join(", ")));
        }
    }
    // Server nodes out of the map that still run must have handed everything off.
    for n in r
        .nodes
        .iter()
        .filter(|n| n.ring == Ring::ServiceOut && n.live == Live::Up && n.server_attached)
    {
        let id = NodeId::new(&n.id);
        match node_digests(&att, &id, r.slot_count) {
            Ok(d) => {
                let held: Vec<(usize, u64)> = d
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| d.count > 0)
                    .map(|(slot, d)| (slot, d.count))
                    .collect();
                if held.is_empty() {
                    rep.handed_off.push(id.to_string());
                } else {
                    let items: u64 = held.iter().map(|h| h.1).sum();
                    rep.extra_copies.push(format!(
                        "{id} (SERVICE OUT) still holds {items} items in {} slots, e.g. slot {}",
                        held.len(),
                        held[0].0
                    ));
                }
            }
            Err(e) => rep.extra_copies.push(format!("{id} (SERVICE OUT): {e}")),
        }
    }
    Ok(rep)
}
