//! Starting the daemon: binds the attach listener, the links, the control port and the metrics
//! endpoint, then runs the router loop until a signal asks it to stop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::limits::*;
use super::metrics::Metrics;
use super::router::{LocalEvent, LocalPort, Router, RouterCmd};
use super::settings::{DaemonSettings, Mode};
use crate::attach::{AttachError, AttachListener, AttachOptions, AttachSender, Envelope, Role};
use crate::link::{LinkManager, LinkOptions, PeerSpec};

/// Messages taken from one attachment per receive.
const ATTACH_BATCH_MAX: usize = 256;
/// Depth of the channel from attachments to the router.
const LOCAL_EVENT_QUEUE_DEPTH: usize = 8192;
/// Depth of the channel of commands to the router.
const ROUTER_CMD_QUEUE_DEPTH: usize = 1024;
/// Events the router handles per wake-up before it looks at the other sources.
const ROUTER_DRAIN_MAX: usize = 512;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The attach listener could not be bound.
    #[error("attach listener: {0}")]
    Attach(#[from] AttachError),
    /// The links could not start.
    #[error("links: {0}")]
    Link(#[from] crate::link::StartError),
    /// A TCP port could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// What the port is for.
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The router refused the settings.
    #[error("{0}")]
    Router(#[from] super::router::RouterError),
}

struct AttachPort {
    senders: Arc<Mutex<HashMap<u64, AttachSender>>>,
}

impl LocalPort for AttachPort {
    fn deliver(&mut self, to: u64, env: Envelope) -> Result<(), String> {
        let senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        let s = senders
            .get(&to)
            .ok_or_else(|| format!("attachment {to} is gone"))?;
        s.send(&env).map_err(|e| e.to_string())
    }
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(s: DaemonSettings) -> Result<(), RunError> {
    let s = Arc::new(s);
    let metrics = Arc::new(Metrics::default());
    let attach_opts = AttachOptions {
        body_size_max: s.body_size_max,
        ..AttachOptions::default()
    };
    let self_ctlport = s
        .self_spec()
        .map(|n| n.ctlport)
        .unwrap_or(s.control_addr.port());
    let mut listener = AttachListener::bind(&s.cluster, self_ctlport, attach_opts)?;

    let ctl = TcpListener::bind(s.control_addr)
        .await
        .map_err(|source| RunError::Bind {
            what: "control port",
            addr: s.control_addr,
            source,
        })?;
    let metrics_listener = match s.metrics_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Bind {
                    what: "metrics port",
                    addr,
                    source,
                })?,
        ),
        None => None,
    };

    // Links: servers link to every other server and accept slaves; a slave dials every server.
    let mut peers = Vec::new();
    for n in &s.nodes {
        if n.id == s.self_id {
            continue;
        }
        match (n.mode, n.data_addr) {
            (Mode::Server, Some(addr)) => peers.push(PeerSpec::server(n.id.to_string(), addr)),
            (Mode::Slave, _) if s.mode == Mode::Server => {
                let ip =
                    n.ip.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
                peers.push(PeerSpec::slave(n.id.to_string(), ip));
            }
            _ => {}
        }
    }
    let mut link_opts = LinkOptions::new(s.cluster.clone());
    link_opts.heartbeat_interval = s.heartbeat_interval;
    link_opts.heartbeat_timeout = s.heartbeat_timeout;
    link_opts.secret = s.secret.clone();
    link_opts.frame_size_max = link_opts
        .frame_size_max
        .max(s.body_size_max + crate::link::limits::FRAME_HEADROOM_BYTES);
    let data_addr = if s.mode == Mode::Server {
        s.self_spec().and_then(|n| n.data_addr)
    } else {
        None
    };
    let (link, mut link_rx) = LinkManager::bind(
        s.self_id.to_string(),
        peers,
        link_opts,
        data_addr.map(|a| {
            // Listen on every interface at the configured port: the config names the host as
            // others reach it, which may not be an address of a local interface (NAT, names).
            std::net::SocketAddr::new(
                std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                a.port(),
            )
        }),
    )
    .await?;

    let (cmd_tx, mut cmd_rx) = mpsc::channel::<RouterCmd>(ROUTER_CMD_QUEUE_DEPTH);
    let (job_tx, mut job_rx) = mpsc::unbounded_channel();
    let (local_tx, mut local_rx) = mpsc::channel::<LocalEvent>(LOCAL_EVENT_QUEUE_DEPTH);
    let senders = Arc::new(Mutex::new(HashMap::new()));
    let snapshot = Arc::new(Mutex::new(None));
    let mut router = Router::new(
        s.clone(),
        Some(link.clone()),
        Box::new(AttachPort {
            senders: senders.clone(),
        }),
        metrics.clone(),
        cmd_tx.clone(),
        job_tx,
        snapshot,
    )?;

    tokio::spawn(super::control::serve(
        ctl,
        s.clone(),
        cmd_tx.clone(),
        metrics.clone(),
    ));
    if let Some(l) = metrics_listener {
        tokio::spawn(super::control::serve_metrics(l, metrics.clone()));
    }
    // Accept loop: one receive task per attached process, all feeding the router's channel.
    {
        let senders = senders.clone();
        let local_tx = local_tx.clone();
        tokio::spawn(async move {
            loop {
                let mut p = match listener.accept().await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!("attach listener failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let id = p.id();
                let server = p.role() == Role::Server;
                senders
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, p.sender());
                if local_tx
                    .send(LocalEvent::Attached { id, server })
                    .await
                    .is_err()
                {
                    return;
                }
                let (senders, local_tx) = (senders.clone(), local_tx.clone());
                tokio::spawn(async move {
                    loop {
                        match p.recv_batch(ATTACH_BATCH_MAX).await {
                            Ok(batch) => {
                                for env in batch {
                                    if local_tx
                                        .send(LocalEvent::Message { from: id, env })
                                        .await
                                        .is_err()
                                    {
                                        return;
                                    }
                                }
                            }
                            Err(e) => {
                                tracing::info!(attachment = id, "attachment ended: {e}");
                                break;
                            }
                        }
                    }
                    senders
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    let _ = local_tx.send(LocalEvent::Detached { id }).await;
                });
            }
        });
    }
    drop(local_tx);

    let mut tick = tokio::time::interval(Duration::from_millis(STATUS_GOSSIP_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| RunError::Bind {
            what: "SIGTERM handler",
            addr: s.control_addr,
            source,
        })?;
    tracing::info!(node = %s.self_id, mode = s.mode.word(), control = %s.control_addr, "chmpx running");
    loop {
        tokio::select! {
            ev = local_rx.recv() => {
                let Some(ev) = ev else { break };
                router.handle_local(ev);
                // Drain what is already queued before looking elsewhere: one wake-up, many messages.
                for _ in 0..ROUTER_DRAIN_MAX {
                    match local_rx.try_recv() {
                        Ok(ev) => router.handle_local(ev),
                        Err(_) => break,
                    }
                }
            }
            ev = link_rx.recv() => {
                let Some(ev) = ev else { break };
                router.handle_link(ev);
                for _ in 0..ROUTER_DRAIN_MAX {
                    match link_rx.try_recv() {
                        Ok(ev) => router.handle_link(ev),
                        Err(_) => break,
                    }
                }
            }
            Some(cmd) = cmd_rx.recv() => router.handle_cmd(cmd),
            Some(ev) = job_rx.recv() => router.handle_job_event(ev),
            _ = tick.tick() => router.tick(),
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    tracing::info!("chmpx stopping");
    link.shutdown().await;
    Ok(())
}
