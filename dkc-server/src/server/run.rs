//! Start-up and shutdown of the server process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chmpx::attach::{AttachError, Attachment, Role};
use crossbeam_channel::RecvTimeoutError;

use super::fence::{Fences, Ready};
use super::open::{open_store, OpenError};
use super::replicator::AckJob;
use super::settings::{ServerSettings, ACK_WAITER_THREADS, DISABLE_REPLICATION_ENV};
use super::worker::{send_reply, Shared, Worker, RECV_POLL_MS};
use crate::executor::Executor;
use crate::hlc::SystemClock;

/// Depth of the queue of writes waiting for replicas; when full, workers wait (back-pressure).
pub const ACK_QUEUE_DEPTH: usize = 4096;
/// Pause between attempts to attach while chmpx is not up yet.
pub const ATTACH_RETRY_PAUSE_MS: u64 = 500;
/// How often the main thread looks at the stop flag.
pub const STOP_POLL_MS: u64 = 50;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The k2hash data could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// chmpx refused us, or attaching failed in a way retrying cannot fix.
    #[error("cannot attach to chmpx of cluster {cluster:?} ctlport {ctlport}: {source}")]
    Attach {
        /// GROUP.
        cluster: String,
        /// CTLPORT.
        ctlport: u16,
        /// The cause.
        #[source]
        source: AttachError,
    },
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// Closing the store failed (data written before is safe as far as the engine knows).
    #[error("closing the k2hash data failed: {0}")]
    Close(k2hash::Error),
}

fn attach(s: &ServerSettings, stop: &AtomicBool) -> Result<Option<Attachment>, ServerError> {
    let started = Instant::now();
    loop {
        match Attachment::connect(&s.cluster, s.ctlport, Role::Server, s.attach.clone()) {
            Ok(att) => return Ok(Some(att)),
            Err(
                e @ (AttachError::ChmpxNotRunning { .. } | AttachError::HandshakeTimeout { .. }),
            ) => {
                tracing::info!(
                    error = %e,
                    waited_s = started.elapsed().as_secs(),
                    "waiting for chmpx (start it with the same config and --ctlport)"
                );
            }
            Err(source) => {
                return Err(ServerError::Attach {
                    cluster: s.cluster.clone(),
                    ctlport: s.ctlport,
                    source,
                })
            }
        }
        if stop.load(Ordering::Acquire) {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(ATTACH_RETRY_PAUSE_MS));
    }
}

/// Runs the server until `stop` is set (by SIGTERM), then finishes the requests in hand and
/// closes the store.
pub fn run(settings: ServerSettings, stop: Arc<AtomicBool>) -> Result<(), ServerError> {
    let clock = Arc::new(SystemClock);
    let store = Arc::new(open_store(&settings.store, clock.clone())?);
    tracing::info!(
        node = %settings.node_id,
        node_index = settings.node_index,
        mode = ?store.mode(),
        path = ?store.path(),
        items = store.stats().items,
        "k2hash data open"
    );
    let exec = Executor::new(store.clone(), settings.node_index, clock)
        .with_limits(settings.limits.clone())
        .with_expire_default(settings.expire_default_secs);
    // Versions minted after a restart must be above everything stored, even if the wall clock
    // went back while we were down: the executor observes each stored version before writing
    // over it, which covers that per key.
    let Some(att) = attach(&settings, &stop)? else {
        return close(store);
    };
    tracing::info!(
        cluster = %settings.cluster,
        ctlport = settings.ctlport,
        threads = settings.threads,
        ack = ?settings.ack_level,
        value_size_max = settings.limits.value_size_max,
        queue_age_max_ms = settings.queue_age_max.as_millis() as u64,
        "attached to chmpx as a server; serving"
    );
    if settings.replication_disabled {
        tracing::warn!(
            "!!! {DISABLE_REPLICATION_ENV}=1: REPLICATION IS OFF. This server answers writes as \
             acknowledged without sending them to any other owner: acknowledged writes WILL be \
             lost when this node fails. Test builds only; unset it for any real use. !!!"
        );
    }
    let shared = Arc::new(Shared {
        exec,
        att,
        ack_level: settings.ack_level,
        replica: settings.replica,
        replication_disabled: settings.replication_disabled,
        rcv_timeout: settings.rcv_timeout,
        queue_age_max: settings.queue_age_max,
        stop: stop.clone(),
    });
    let serving = serve(shared.clone(), settings.threads)?;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(STOP_POLL_MS));
    }
    tracing::info!("stopping: finishing the requests in hand");
    serving.join();
    drop(shared);
    close(store)
}

/// The threads of a serving server.
pub struct Serving {
    workers: Vec<std::thread::JoinHandle<()>>,
    waiters: Vec<std::thread::JoinHandle<()>>,
}

impl Serving {
    /// Waits for the workers (which leave once `shared.stop` is set, after the message in
    /// hand), then for the ack waiters (which leave once every queued write is answered).
    pub fn join(self) {
        for t in self.workers {
            let _ = t.join();
        }
        for t in self.waiters {
            let _ = t.join();
        }
    }
}

/// Starts `threads` workers and the ack waiters over an attached `shared` state.
pub fn serve(shared: Arc<Shared>, threads: usize) -> Result<Serving, ServerError> {
    let (ack_tx, ack_rx) = crossbeam_channel::bounded::<AckJob>(ACK_QUEUE_DEPTH);
    let mut waiters = Vec::new();
    for i in 0..ACK_WAITER_THREADS {
        let rx = ack_rx.clone();
        let shared = shared.clone();
        let t = std::thread::Builder::new()
            .name(format!("dkc-ack-{i}"))
            .spawn(move || {
                for job in rx {
                    let (env, answer) = job.wait(shared.rcv_timeout, &shared.exec, &shared.att);
                    send_reply(&shared.att, &env, &answer);
                }
            })
            .map_err(ServerError::Thread)?;
        waiters.push(t);
    }
    drop(ack_rx);
    let (ready_tx, ready_rx) = crossbeam_channel::unbounded::<Ready>();
    let fences = Fences::new(ready_tx);
    let mut workers = Vec::new();
    // Fenced writes queued behind another of their key run on this thread once the key is
    // free (workers never block on a key).
    let requeue = Worker {
        shared: shared.clone(),
        acks: ack_tx.clone(),
        fences: fences.clone(),
    };
    let t = std::thread::Builder::new()
        .name("dkc-fenced".into())
        .spawn(move || loop {
            match ready_rx.recv_timeout(Duration::from_millis(RECV_POLL_MS)) {
                Ok(ready) => requeue.serve_ready(ready),
                Err(RecvTimeoutError::Timeout) => {
                    if requeue.shared.stop.load(Ordering::Acquire) {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        })
        .map_err(ServerError::Thread)?;
    workers.push(t);
    for i in 0..threads.max(1) {
        let worker = Worker {
            shared: shared.clone(),
            acks: ack_tx.clone(),
            fences: fences.clone(),
        };
        let t = std::thread::Builder::new()
            .name(format!("dkc-worker-{i}"))
            .spawn(move || worker.run())
            .map_err(ServerError::Thread)?;
        workers.push(t);
    }
    Ok(Serving { workers, waiters })
}

fn close(store: Arc<k2hash::K2Hash>) -> Result<(), ServerError> {
    store.sync().map_err(ServerError::Close)?;
    match Arc::try_unwrap(store) {
        Ok(store) => store.close().map_err(ServerError::Close)?,
        Err(_) => tracing::warn!("the store is still shared at exit; it closes when dropped"),
    }
    tracing::info!("stopped");
    Ok(())
}
