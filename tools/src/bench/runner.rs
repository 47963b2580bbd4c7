//! Driving the load: preloading the key space, then `connections` workers each keeping
//! `pipeline` requests in flight until the duration or the operation count runs out. Each
//! worker records its latencies in its own HdrHistogram (no shared lock on the hot path); the
//! histograms are added up at the end. Operations started during the warm-up are not counted.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::conn::{run_batch_timed, Outcome, Target};
use super::error::BenchError;
use super::metrics::{scrape, Counters};
use super::workload::{OpKind, Workload};

/// Longest latency the histograms hold, ns (a minute; slower replies are clamped to it).
pub const LATENCY_MAX_NS: u64 = 60_000_000_000;
/// Significant digits of the histograms (0.1% resolution).
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// Pause before reconnecting a broken connection, ms (keeps a dead server from spinning us).
pub const RECONNECT_PAUSE_MS: u64 = 100;
/// Sets per batch while preloading (pipelined on memcached connections).
pub const PRELOAD_BATCH: usize = 32;
/// How often the progress bar is redrawn, ms.
pub const PROGRESS_INTERVAL_MS: u64 = 200;

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Concurrent connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Time excluded from the figures at the start.
    pub warmup: Duration,
    /// Measured time after the warm-up.
    pub duration: Duration,
    /// Stop after this many measured operations.
    pub ops_limit: Option<u64>,
    /// Seed of the operation streams.
    pub seed: u64,
    /// Longest wait for one batch.
    pub timeout: Duration,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// chmpx metrics endpoints to read messages and bytes from.
    pub metrics: Vec<SocketAddr>,
}

/// What the workers measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Latencies, ns.
    pub histogram: Histogram<u64>,
    /// Gets completed.
    pub gets: u64,
    /// Sets completed.
    pub sets: u64,
    /// Gets that hit with the right value.
    pub hits: u64,
    /// Gets that missed.
    pub misses: u64,
    /// Failed operations (includes `wrong_values`).
    pub errors: u64,
    /// Hits with a wrong value.
    pub wrong_values: u64,
    /// Reconnections.
    pub reconnects: u64,
    /// From the end of the warm-up to the last completion.
    pub elapsed: Duration,
    /// Growth of the chmpx counters over the measured time, if endpoints were given.
    pub chmpx: Option<Result<Counters, String>>,
}

impl Measured {
    fn new() -> Measured {
        Measured {
            histogram: new_histogram(),
            gets: 0,
            sets: 0,
            hits: 0,
            misses: 0,
            errors: 0,
            wrong_values: 0,
            reconnects: 0,
            elapsed: Duration::ZERO,
            chmpx: None,
        }
    }

    /// Completed operations (every get and set, failed ones included).
    pub fn ops(&self) -> u64 {
        self.gets + self.sets
    }

    fn add(&mut self, o: &Measured) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&o.histogram);
        self.gets += o.gets;
        self.sets += o.sets;
        self.hits += o.hits;
        self.misses += o.misses;
        self.errors += o.errors;
        self.wrong_values += o.wrong_values;
        self.reconnects += o.reconnects;
        self.elapsed = self.elapsed.max(o.elapsed);
    }
}

fn new_histogram() -> Histogram<u64> {
    // The bounds are constants known to be valid.
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Stores every key of the workload once, over up to `connections` connections.
pub async fn preload(
    target: &Target,
    workload: &Arc<Workload>,
    connections: usize,
    timeout: Duration,
) -> Result<(), BenchError> {
    let keys = workload.keys;
    let workers = (connections as u64).clamp(1, keys.max(1));
    let stored = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let mut conn = target.connect(w as usize).await?;
        let workload = workload.clone();
        let stored = stored.clone();
        tasks.push(tokio::spawn(async move {
            // Worker w stores keys w, w + workers, w + 2 * workers, ...
            let mut batch = Vec::with_capacity(PRELOAD_BATCH);
            let mut out = Vec::with_capacity(PRELOAD_BATCH);
            let mut k = w;
            while k < keys {
                batch.clear();
                while batch.len() < PRELOAD_BATCH && k < keys {
                    batch.push((OpKind::Set, k));
                    k += workers;
                }
                out.clear();
                run_batch_timed(&mut conn, &batch, &workload.value, &mut out, timeout).await?;
                if let Some((o, _)) = out.iter().find(|(o, _)| *o != Outcome::Stored) {
                    return Err(format!("a set answered {o:?}"));
                }
                stored.fetch_add(out.len() as u64, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        let r = t
            .await
            .unwrap_or_else(|e| Err(format!("preload task failed: {e}")));
        if let Err(reason) = r {
            return Err(BenchError::Preload {
                stored: stored.load(Ordering::Relaxed),
                keys,
                reason,
            });
        }
    }
    Ok(())
}

/// Shared between the workers and the progress bar.
struct Shared {
    /// Measured operations claimed (for the op limit).
    claimed: AtomicU64,
    /// Measured operations completed (for the progress bar).
    done: AtomicU64,
}

/// Runs the load and returns what was measured. With `cfg.metrics` set, the chmpx counters
/// are read when the warm-up ends and again after the last reply.
pub async fn run(
    target: &Target,
    workload: &Arc<Workload>,
    cfg: &RunConfig,
) -> Result<Measured, BenchError> {
    let shared = Arc::new(Shared {
        claimed: AtomicU64::new(0),
        done: AtomicU64::new(0),
    });
    // Connect everything before the clock starts.
    let mut conns = Vec::with_capacity(cfg.connections);
    for i in 0..cfg.connections {
        conns.push(target.connect(i).await?);
    }
    let start = Instant::now();
    let warm_end = start + cfg.warmup;
    let end = warm_end + cfg.duration;
    let progress = (cfg.progress && std::io::stderr().is_terminal())
        .then(|| tokio::spawn(draw_progress(shared.clone(), warm_end, cfg.duration)));
    let before = (!cfg.metrics.is_empty()).then(|| {
        let addrs = cfg.metrics.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(warm_end.into()).await;
            scrape(&addrs).await
        })
    });
    let mut tasks = Vec::with_capacity(cfg.connections);
    for (i, conn) in conns.into_iter().enumerate() {
        let w = Worker {
            index: i,
            target: target.clone(),
            workload: workload.clone(),
            cfg: cfg.clone(),
            shared: shared.clone(),
            warm_end,
            end,
        };
        tasks.push(tokio::spawn(w.run(conn)));
    }
    let mut total = Measured::new();
    for t in tasks {
        match t.await {
            Ok(m) => total.add(&m),
            Err(e) => {
                return Err(BenchError::Worker(e.to_string()));
            }
        }
    }
    if let Some(p) = progress {
        p.abort();
    }
    if let Some(before) = before {
        let before = before
            .await
            .unwrap_or_else(|e| Err(format!("scrape task failed: {e}")));
        let after = scrape(&cfg.metrics).await;
        total.chmpx = Some(before.and_then(|b| {
            after.map(|a| Counters {
                messages: a.messages.saturating_sub(b.messages),
                bytes: a.bytes.saturating_sub(b.bytes),
            })
        }));
    }
    Ok(total)
}

struct Worker {
    index: usize,
    target: Target,
    workload: Arc<Workload>,
    cfg: RunConfig,
    shared: Arc<Shared>,
    warm_end: Instant,
    end: Instant,
}

impl Worker {
    async fn run(self, mut conn: super::conn::Conn) -> Measured {
        let mut m = Measured::new();
        let mut stream = self.workload.stream(self.cfg.seed, self.index as u64);
        let mut batch = Vec::with_capacity(self.cfg.pipeline);
        let mut out = Vec::with_capacity(self.cfg.pipeline);
        let mut last_done = self.warm_end;
        loop {
            let now = Instant::now();
            if now >= self.end {
                break;
            }
            let measured = now >= self.warm_end;
            let mut n = self.cfg.pipeline as u64;
            if let (true, Some(limit)) = (measured, self.cfg.ops_limit) {
                let before = self.shared.claimed.fetch_add(n, Ordering::Relaxed);
                if before >= limit {
                    break;
                }
                n = n.min(limit - before);
            }
            batch.clear();
            batch.extend((0..n).map(|_| stream.next_op()));
            out.clear();
            let t0 = Instant::now();
            let r = run_batch_timed(
                &mut conn,
                &batch,
                &self.workload.value,
                &mut out,
                self.cfg.timeout,
            )
            .await;
            if measured {
                for (&(kind, _), &(outcome, at)) in batch.iter().zip(out.iter()) {
                    let ns = u64::try_from((at - t0).as_nanos()).unwrap_or(u64::MAX);
                    m.histogram.saturating_record(ns.clamp(1, LATENCY_MAX_NS));
                    match kind {
                        OpKind::Get => m.gets += 1,
                        OpKind::Set => m.sets += 1,
                    }
                    match outcome {
                        Outcome::Hit => m.hits += 1,
                        Outcome::Miss => m.misses += 1,
                        Outcome::Stored => {}
                        Outcome::WrongValue => {
                            m.wrong_values += 1;
                            m.errors += 1;
                        }
                        Outcome::Failed => m.errors += 1,
                    }
                    last_done = last_done.max(at);
                }
                self.shared
                    .done
                    .fetch_add(out.len() as u64, Ordering::Relaxed);
            }
            if r.is_err() {
                // The unanswered ops of the batch failed; they count as operations (with the
                // time they waited) so errors never shrink the op count silently.
                let now = Instant::now();
                if measured {
                    for &(kind, _) in &batch[out.len()..] {
                        match kind {
                            OpKind::Get => m.gets += 1,
                            OpKind::Set => m.sets += 1,
                        }
                        m.errors += 1;
                        let ns = u64::try_from((now - t0).as_nanos()).unwrap_or(u64::MAX);
                        m.histogram.saturating_record(ns.clamp(1, LATENCY_MAX_NS));
                    }
                    last_done = last_done.max(now);
                }
                conn = match self.reconnect(&mut m).await {
                    Some(c) => c,
                    None => break,
                };
            }
        }
        m.elapsed = last_done.saturating_duration_since(self.warm_end);
        m
    }

    /// Reconnects, pausing between tries, until it works or the run is over.
    async fn reconnect(&self, m: &mut Measured) -> Option<super::conn::Conn> {
        loop {
            tokio::time::sleep(Duration::from_millis(RECONNECT_PAUSE_MS)).await;
            if Instant::now() >= self.end {
                return None;
            }
            if let Ok(c) = self.target.connect(self.index).await {
                m.reconnects += 1;
                return Some(c);
            }
        }
    }
}

async fn draw_progress(shared: Arc<Shared>, warm_end: Instant, duration: Duration) {
    let bar = indicatif::ProgressBar::new(duration.as_millis().max(1) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {elapsed}/{duration} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::time::sleep(Duration::from_millis(PROGRESS_INTERVAL_MS)).await;
        let now = Instant::now();
        if now < warm_end {
            bar.set_message("warming up");
            continue;
        }
        let done = shared.done.load(Ordering::Relaxed);
        let rate = (done - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-3);
        last = (now, done);
        bar.set_position((now - warm_end).as_millis() as u64);
        bar.set_message(format!("{done} ops  {rate:.0} ops/s"));
    }
}
