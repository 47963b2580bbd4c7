//! One established link: a reader, a writer and a watchdog, polled together in the peer's task.
//!
//! The three run concurrently (never one blocking the other), so two peers that both write
//! large batches cannot deadlock on full socket buffers. The session ends at the first of: a
//! socket or protocol error, the peer's `Close`, or silence longer than the heartbeat timeout.

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::conn::{ConnError, FrameReader, FrameWriter};
use super::detector::FailureDetector;
use super::event::{LinkEvent, Outgoing, Queued};
use super::frame::{Frame, FrameBody};
use super::handshake::body_name;
use super::limits::{WRITE_BATCH_BYTES_MAX, WRITE_BATCH_MAX};
use super::peer::{LocalView, PeerShared};

/// Heartbeat acks waiting for the writer; heartbeats come once per interval, so a handful is
/// plenty and extra ones are dropped (the peer only loses an RTT sample).
const ACK_QUEUE_DEPTH: usize = 8;

pub struct SessionCtx<'a> {
    pub cluster: &'a str,
    pub peer: &'a PeerShared,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub local_view: &'a LocalView,
    pub events: &'a mpsc::Sender<LinkEvent>,
}

/// Why a session ended.
#[derive(Debug)]
pub enum SessionEnd {
    Failed(ConnError),
    /// No frame for this long.
    Silent(Duration),
    /// The daemon dropped its event receiver or every handle: the manager is going away.
    DaemonGone,
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEnd::Failed(e) => write!(f, "{e}"),
            SessionEnd::Silent(d) => write!(f, "no frame for {d:?} (heartbeat timeout)"),
            SessionEnd::DaemonGone => write!(f, "the daemon stopped listening"),
        }
    }
}

/// Runs the link until it fails, falls silent, or `interrupt` resolves (shutdown, or a newer
/// connection replacing this one). `interrupt` yields its own value and the reason sent to the
/// peer in a last `Close` frame; an interrupted session returns `Err(that value)`.
pub async fn run<R, W, X>(
    ctx: &SessionCtx<'_>,
    mut reader: FrameReader<R>,
    mut writer: FrameWriter<W>,
    outq: &mut mpsc::Receiver<Queued>,
    interrupt: impl std::future::Future<Output = (X, &'static str)>,
) -> Result<SessionEnd, X>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Liveness is the detector's job from here on; see `FrameWriter::set_flush_deadline`.
    writer.set_flush_deadline(false);
    let detector = Mutex::new(FailureDetector::new(ctx.heartbeat_timeout, Instant::now()));
    let (ack_tx, mut ack_rx) = mpsc::channel::<u64>(ACK_QUEUE_DEPTH);
    let outcome = tokio::select! {
        end = read_loop(ctx, &mut reader, &detector, &ack_tx) => Ok(end),
        end = write_loop(ctx, &mut writer, outq, &mut ack_rx) => Ok(end),
        end = watchdog(ctx, &detector) => Ok(end),
        (x, reason) = interrupt => Err((x, reason)),
    };
    // Tell the peer why, when the stream is still usable, so its log names the cause.
    let reason = match &outcome {
        Ok(SessionEnd::Silent(_)) => Some("heartbeat timeout".to_owned()),
        Ok(SessionEnd::Failed(e)) if e.is_bad_input() => Some(e.to_string()),
        Ok(SessionEnd::DaemonGone) => Some("node shutting down".to_owned()),
        Ok(SessionEnd::Failed(_)) => None,
        Err((_, reason)) => Some((*reason).to_owned()),
    };
    if let Some(reason) = reason {
        // A frame half-written when the writer was cancelled makes the stream unusable.
        if writer.pending_bytes() == 0 {
            writer
                .push(&Frame::new(ctx.cluster, FrameBody::Close { reason }))
                .ok();
            writer.set_flush_deadline(true);
            let _ = writer.flush().await;
        }
    }
    writer.close().await;
    outcome.map_err(|(x, _)| x)
}

fn lock(d: &Mutex<FailureDetector>) -> std::sync::MutexGuard<'_, FailureDetector> {
    d.lock().unwrap_or_else(|p| p.into_inner())
}

async fn read_loop<R: AsyncRead + Unpin>(
    ctx: &SessionCtx<'_>,
    reader: &mut FrameReader<R>,
    detector: &Mutex<FailureDetector>,
    ack_tx: &mpsc::Sender<u64>,
) -> SessionEnd {
    let from = &ctx.peer.spec.id;
    loop {
        let (frame, size) = match reader.read_frame().await {
            Ok(f) => f,
            Err(e) => return SessionEnd::Failed(e),
        };
        ctx.peer.counters.add_in(size);
        lock(detector).on_frame(Instant::now());
        let event = match frame.body {
            FrameBody::Heartbeat { seq, epoch, status } => {
                ctx.peer.with_status(|s| {
                    s.last_heartbeat = Some(std::time::Instant::now());
                    s.peer_epoch = epoch;
                    s.peer_status = status;
                });
                let _ = ack_tx.try_send(seq);
                continue;
            }
            FrameBody::HeartbeatAck { seq } => {
                ctx.peer.with_status(|s| {
                    if let Some((sent_seq, at)) = s.heartbeat_sent {
                        if sent_seq == seq {
                            s.rtt = Some(at.elapsed());
                        }
                    }
                });
                continue;
            }
            FrameBody::Data(msg) => LinkEvent::Data {
                from: from.clone(),
                msg,
            },
            FrameBody::Control { bytes } => LinkEvent::Control {
                from: from.clone(),
                bytes,
            },
            FrameBody::Close { reason } => return SessionEnd::Failed(ConnError::Closed { reason }),
            other @ (FrameBody::Hello { .. }
            | FrameBody::HelloAck { .. }
            | FrameBody::AuthProof { .. }) => {
                let what = format!("{} after the handshake", body_name(&other));
                return SessionEnd::Failed(ConnError::Protocol(what));
            }
        };
        // Fast path first; when the daemon is behind, wait for it without blaming the peer.
        match ctx.events.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return SessionEnd::DaemonGone,
            Err(mpsc::error::TrySendError::Full(event)) => {
                lock(detector).set_blocked(true, Instant::now());
                let sent = ctx.events.send(event).await;
                lock(detector).set_blocked(false, Instant::now());
                if sent.is_err() {
                    return SessionEnd::DaemonGone;
                }
            }
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    ctx: &SessionCtx<'_>,
    writer: &mut FrameWriter<W>,
    outq: &mut mpsc::Receiver<Queued>,
    ack_rx: &mut mpsc::Receiver<u64>,
) -> SessionEnd {
    let mut tick = tokio::time::interval(ctx.heartbeat_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seq: u64 = 0;
    loop {
        tokio::select! {
            biased;
            Some(acked) = ack_rx.recv() => {
                push(ctx, writer, FrameBody::HeartbeatAck { seq: acked });
            }
            _ = tick.tick() => {
                seq += 1;
                let epoch = ctx.local_view.epoch.load(Ordering::Relaxed);
                let status = ctx.local_view.status.load(Ordering::Relaxed);
                push(ctx, writer, FrameBody::Heartbeat { seq, epoch, status });
                ctx.peer.with_status(|s| s.heartbeat_sent = Some((seq, std::time::Instant::now())));
            }
            msg = outq.recv() => {
                let Some(msg) = msg else { return SessionEnd::DaemonGone };
                push_msg(ctx, writer, msg.msg);
                // Coalesce what is already queued into the same socket write, within bounds.
                for _ in 1..WRITE_BATCH_MAX {
                    if writer.pending_bytes() >= WRITE_BATCH_BYTES_MAX {
                        break;
                    }
                    match outq.try_recv() {
                        Ok(msg) => push_msg(ctx, writer, msg.msg),
                        Err(_) => break,
                    }
                }
            }
        }
        match writer.flush().await {
            Ok((frames, bytes)) => ctx.peer.counters.add_out(frames, bytes),
            Err(e) => return SessionEnd::Failed(e),
        }
    }
}

fn push<W: AsyncWrite + Unpin>(ctx: &SessionCtx<'_>, writer: &mut FrameWriter<W>, body: FrameBody) {
    if let Err(e) = writer.push(&Frame::new(ctx.cluster, body)) {
        // Only a message can outgrow a frame, and `send` checks that first; log, never panic.
        tracing::error!(peer = %ctx.peer.spec.id, error = %e, "frame not sent");
        ctx.peer.counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

fn push_msg<W: AsyncWrite + Unpin>(
    ctx: &SessionCtx<'_>,
    writer: &mut FrameWriter<W>,
    msg: Outgoing,
) {
    let body = match msg {
        Outgoing::Data(m) => FrameBody::Data(m),
        Outgoing::Control(bytes) => FrameBody::Control { bytes },
    };
    push(ctx, writer, body);
}

async fn watchdog(ctx: &SessionCtx<'_>, detector: &Mutex<FailureDetector>) -> SessionEnd {
    loop {
        let now = Instant::now();
        let (deadline, last_rx) = {
            let d = lock(detector);
            (d.deadline(), d.last_rx())
        };
        match deadline {
            Some(at) if now >= at => return SessionEnd::Silent(now - last_rx),
            // Wake exactly at the deadline, or after one interval if a frame may move it.
            Some(at) => tokio::time::sleep_until(at.min(now + ctx.heartbeat_interval)).await,
            None => tokio::time::sleep(ctx.heartbeat_interval).await,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The session's timing, on virtual time: `start_paused` makes tokio jump the clock whenever
    //! every task waits, so seconds of heartbeats run in microseconds and exactly.

    use super::*;
    use crate::link::options::PeerSpec;
    use tokio::io::DuplexStream;

    const INTERVAL: Duration = Duration::from_millis(100);

    async fn never() -> ((), &'static str) {
        std::future::pending().await
    }
    const TIMEOUT: Duration = Duration::from_millis(300);
    const FRAME_MAX: usize = 1 << 20;
    const CLUSTER: &str = "T";

    struct Fixture {
        peer: PeerShared,
        view: LocalView,
        events_tx: mpsc::Sender<LinkEvent>,
        _out_tx: mpsc::Sender<Queued>,
    }

    fn fixture() -> (Fixture, mpsc::Receiver<Queued>, mpsc::Receiver<LinkEvent>) {
        let (out_tx, outq) = mpsc::channel(4);
        let spec = PeerSpec::server("p:1", "127.0.0.1:1".parse().unwrap());
        let (events_tx, events_rx) = mpsc::channel(4);
        let f = Fixture {
            peer: PeerShared::new(spec, out_tx.clone(), 1 << 20),
            view: LocalView::default(),
            events_tx,
            _out_tx: out_tx,
        };
        (f, outq, events_rx)
    }

    fn ctx(f: &Fixture) -> SessionCtx<'_> {
        SessionCtx {
            cluster: CLUSTER,
            peer: &f.peer,
            heartbeat_interval: INTERVAL,
            heartbeat_timeout: TIMEOUT,
            local_view: &f.view,
            events: &f.events_tx,
        }
    }

    /// Our side of a session over an in-memory pipe, and the far end's reader and writer.
    type PipeReader = FrameReader<tokio::io::ReadHalf<DuplexStream>>;
    type PipeWriter = FrameWriter<tokio::io::WriteHalf<DuplexStream>>;

    fn pipe() -> (PipeReader, PipeWriter, PipeReader, PipeWriter) {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (r1, w1) = tokio::io::split(ours);
        let (r2, w2) = tokio::io::split(theirs);
        (
            FrameReader::new(r1, FRAME_MAX, CLUSTER),
            FrameWriter::new(w1, FRAME_MAX, Duration::from_secs(1)),
            FrameReader::new(r2, FRAME_MAX, CLUSTER),
            FrameWriter::new(w2, FRAME_MAX, Duration::from_secs(1)),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_down_exactly_at_the_timeout() {
        let (f, mut outq, mut _events_rx) = fixture();
        let (r, w, _their_r, _their_w) = pipe();
        let t0 = Instant::now();
        let c = ctx(&f);
        let end = run(&c, r, w, &mut outq, never()).await.unwrap();
        let took = t0.elapsed();
        assert!(matches!(end, SessionEnd::Silent(_)), "{end}");
        assert!(took >= TIMEOUT && took <= TIMEOUT + INTERVAL, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_keep_it_up_and_their_end_is_detected_within_timeout_plus_interval() {
        let (f, mut outq, mut _events_rx) = fixture();
        let (r, w, mut their_r, mut their_w) = pipe();
        let beats = 30u64;
        let far_end = async move {
            for seq in 1..=beats {
                their_w
                    .send(&Frame::new(
                        CLUSTER,
                        FrameBody::Heartbeat {
                            seq,
                            epoch: 7,
                            status: 3,
                        },
                    ))
                    .await
                    .unwrap();
                tokio::time::sleep(INTERVAL).await;
            }
            let stopped_at = Instant::now();
            // Keep the pipe open, read what the session sends, and count its heartbeats.
            let mut ours = 0;
            while let Ok((frame, _)) = their_r.read_frame().await {
                if let FrameBody::Heartbeat { .. } = frame.body {
                    ours += 1;
                }
            }
            (stopped_at, ours, their_w)
        };
        let c = ctx(&f);
        let session = async { run(&c, r, w, &mut outq, never()).await.unwrap() };
        let (end, (stopped_at, ours, _w)) = tokio::join!(session, far_end);
        let after_silence = Instant::now() - stopped_at;
        assert!(matches!(end, SessionEnd::Silent(_)), "{end}");
        assert!(
            after_silence <= TIMEOUT + INTERVAL,
            "detected {after_silence:?} after the last heartbeat"
        );
        // The far end beat for 30 intervals and never went DOWN; we beat about as often.
        assert!(
            ours >= beats - 1,
            "we sent {ours} heartbeats in {beats} intervals"
        );
        let state = f.peer.snapshot();
        assert_eq!((state.peer_epoch, state.peer_status), (7, 3));
        assert!(state.frames_in >= beats);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_blocked_on_the_daemon_does_not_blame_the_peer() {
        let (f, mut outq, mut _events_rx) = fixture();
        let (r, w, _their_r, mut their_w) = pipe();
        // Fill the event channel (depth 4) and one more: the reader blocks on the fifth.
        let data = |i| FrameBody::Control { bytes: vec![i] };
        for i in 0..6 {
            their_w.send(&Frame::new(CLUSTER, data(i))).await.unwrap();
        }
        let c = ctx(&f);
        let session = async { run(&c, r, w, &mut outq, never()).await.unwrap() };
        tokio::pin!(session);
        // Ten timeouts pass while the daemon does not read: the session must still be running.
        tokio::select! {
            end = &mut session => panic!("session ended while we were the slow side: {end}"),
            _ = tokio::time::sleep(TIMEOUT * 10) => {}
        }
        // The daemon drains; then, with the peer silent, the timeout applies again.
        let t0 = Instant::now();
        let drain = async {
            for i in 0..6 {
                assert_eq!(
                    _events_rx.recv().await,
                    Some(LinkEvent::Control {
                        from: "p:1".into(),
                        bytes: vec![i]
                    })
                );
            }
        };
        let (end, ()) = tokio::join!(&mut session, drain);
        assert!(matches!(end, SessionEnd::Silent(_)), "{end}");
        assert!(t0.elapsed() <= TIMEOUT + INTERVAL);
    }
}
