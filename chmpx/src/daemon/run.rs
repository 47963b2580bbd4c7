//! Starting the daemon: binds the attach listener, the links, the control port and the metrics
//! endpoint, then runs the router on its own routing thread (`route_loop`) until a signal
//! asks it to stop. The links, the control port, the accept loop and the merge jobs stay on the
//! tokio runtime.

mod route_loop;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::freeze::FreezeWatch;
use super::limits::*;
use super::metrics::Metrics;
use super::router::{LocalPort, Router, RouterCmd};
use super::settings::{DaemonSettings, Mode};
use crate::attach::{AttachError, AttachListener, AttachOptions, AttachSender, Envelope};
use crate::link::listen::bind_listener;
use crate::link::options::self_dials;
use crate::link::tls::{server_name, LinkTls, TlsError};
use crate::link::{LinkManager, LinkOptions, PeerSpec};

/// Depth of the channel of commands to the router.
const ROUTER_CMD_QUEUE_DEPTH: usize = 1024;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The attach listener could not be bound.
    #[error("attach listener: {0}")]
    Attach(#[from] AttachError),
    /// The links could not start.
    #[error("links: {0}")]
    Link(#[from] crate::link::StartError),
    /// TLS (SSL = on) could not be set up from the config's files.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
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
    /// The routing thread could not start.
    #[error("routing thread: {0}")]
    RouteLoop(#[from] route_loop::LoopError),
    /// The routing thread ended abnormally (a bug; its panic message is in the log).
    #[error("the routing thread failed; see the panic message above")]
    RouterFailed,
    /// The OS refused a thread.
    #[error("cannot start a daemon thread (routing, freeze watch): {0}")]
    Thread(std::io::Error),
}

/// The router's way to the attachments: messages go into the receivers' rings at once, and
/// their doorbells ring in [`LocalPort::flush`], once per destination per routing pass.
struct AttachPort {
    senders: Arc<Mutex<HashMap<u64, AttachSender>>>,
    /// Attachments given messages since the last flush.
    unrung: Vec<AttachSender>,
}

impl LocalPort for AttachPort {
    fn deliver(&mut self, to: u64, env: Envelope) -> Result<(), String> {
        let senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        let s = senders
            .get(&to)
            .ok_or_else(|| format!("attachment {to} is gone"))?;
        s.push_quiet(&env).map_err(|e| e.to_string())?;
        if !self.unrung.iter().any(|u| u.id() == to) {
            self.unrung.push(s.clone());
        }
        Ok(())
    }

    fn placement_changed(&mut self) {
        let now = crate::attach::envelope::monotonic_now_ns();
        let senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        for s in senders.values() {
            s.mark_placement_changed(now);
        }
    }

    fn flush(&mut self) {
        for s in self.unrung.drain(..) {
            if let Err(e) = s.ring() {
                tracing::debug!(attachment = s.id(), "doorbell not rung: {e}");
            }
        }
    }
}

/// The peers of this node's links: servers link to every other server and accept slaves; a
/// slave dials every server.
fn link_peers(s: &DaemonSettings) -> Result<Vec<PeerSpec>, RunError> {
    let mut peers = Vec::new();
    for n in &s.nodes {
        if n.id == s.self_id {
            continue;
        }
        match (n.mode, n.data_addr) {
            (Mode::Server, Some(addr)) => {
                let mut peer =
                    PeerSpec::server(n.id.to_string(), addr).with_dial(n.endpoints.clone());
                if n.tls {
                    peer = peer.with_tls(server_name(&n.id.to_string(), &n.host)?);
                }
                peers.push(peer)
            }
            (Mode::Slave, _) if s.mode == Mode::Server => {
                let ip =
                    n.ip.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
                peers.push(PeerSpec::slave(n.id.to_string(), ip));
            }
            _ => {}
        }
    }
    Ok(peers)
}

/// The TLS of this node's links, from its files (read and checked here), and whether it
/// dials a peer whose data port speaks TLS.
fn link_tls(s: &DaemonSettings, peers: &[PeerSpec]) -> Result<(LinkTls, bool), RunError> {
    let self_listens = s.mode == Mode::Server;
    let dials_tls = peers
        .iter()
        .any(|p| p.tls_name.is_some() && self_dials(&s.self_id.to_string(), self_listens, p));
    Ok((LinkTls::build(&s.tls, dials_tls)?, dials_tls))
}

/// For `chmpx --check`: reads and checks the TLS files this node's links would use, as
/// [`run`] does when it starts. `Ok(None)` when its links use no TLS, else a line saying what
/// was loaded; an error names the config key and the file.
pub fn check_tls(s: &DaemonSettings) -> Result<Option<String>, RunError> {
    let peers = link_peers(s)?;
    let (_, dials_tls) = link_tls(s, &peers)?;
    if !s.tls.listen && !dials_tls {
        return Ok(None);
    }
    let mut what = Vec::new();
    if s.tls.listen {
        what.push(if s.tls.verify_peer {
            "the data port's certificate and key, and CAPATH to check diallers (SSL_VERIFY_PEER)"
        } else {
            "the data port's certificate and key"
        });
    }
    if dials_tls {
        what.push("CAPATH to check the servers it dials, and its own certificate if set");
    }
    Ok(Some(format!(
        "TLS files of node {} load: {}",
        s.self_id,
        what.join("; ")
    )))
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(s: DaemonSettings) -> Result<(), RunError> {
    // A saved ring state that does not fit the file stops the node before it binds anything.
    super::router::saved_ring(&s).map_err(super::router::RouterError::from)?;
    let s = Arc::new(s);
    let metrics = Arc::new(Metrics::default());
    let attach_opts = AttachOptions {
        mode: s.ipc_mode,
        body_size_max: s.body_size_max,
        listener_spin_wait_us: s.attach_spin_us,
        ..AttachOptions::default()
    };
    let self_ctlport = s
        .self_spec()
        .map(|n| n.ctlport)
        .unwrap_or(s.control_addr.port());
    let spin = Duration::from_micros(attach_opts.listener_spin_wait_us);
    let mut listener = AttachListener::bind(&s.cluster, self_ctlport, attach_opts)?;

    let ctl = bind_listener(s.control_addr, "control port")
        .await
        .map_err(|source| RunError::Bind {
            what: "control port",
            addr: s.control_addr,
            source,
        })?;
    let metrics_listener = match s.metrics_addr {
        Some(addr) => Some(
            bind_listener(addr, "metrics port")
                .await
                .map_err(|source| RunError::Bind {
                    what: "metrics port",
                    addr,
                    source,
                })?,
        ),
        None => None,
    };

    let peers = link_peers(&s)?;
    let mut link_opts = LinkOptions::new(s.cluster.clone());
    link_opts.heartbeat_interval = s.heartbeat_interval;
    link_opts.heartbeat_timeout = s.heartbeat_timeout;
    link_opts.secret = s.secret.clone();
    let dials_tls;
    (link_opts.tls, dials_tls) = link_tls(&s, &peers)?;
    if s.tls.listen || dials_tls {
        tracing::info!(
            listen = s.tls.listen,
            dials = dials_tls,
            verify_peer = s.tls.verify_peer,
            "TLS on the links"
        );
    }
    link_opts.frame_size_max = link_opts
        .frame_size_max
        .max(s.body_size_max + crate::link::limits::FRAME_HEADROOM_BYTES);
    let data_addr = if s.mode == Mode::Server {
        s.self_spec().and_then(|n| n.data_addr)
    } else {
        None
    };
    let (link, link_rx) = LinkManager::bind(
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

    let (cmd_tx, cmd_rx) = mpsc::channel::<RouterCmd>(ROUTER_CMD_QUEUE_DEPTH);
    let (job_tx, job_rx) = mpsc::unbounded_channel();
    let (attach_tx, attach_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = mpsc::unbounded_channel::<()>();
    let senders = Arc::new(Mutex::new(HashMap::new()));
    let snapshot = Arc::new(Mutex::new(None));
    let mut router = Router::new(
        s.clone(),
        Some(link.clone()),
        Box::new(AttachPort {
            senders: senders.clone(),
            unrung: Vec::new(),
        }),
        metrics.clone(),
        cmd_tx.clone(),
        job_tx,
        snapshot,
    )?;
    router.watch_freezes(FreezeWatch::start().map_err(RunError::Thread)?);
    let route_loop = route_loop::RouteLoop::new(
        router,
        route_loop::Inputs {
            attach_rx,
            link_rx,
            cmd_rx,
            job_rx,
            stop_rx,
        },
        route_loop::LoopOptions {
            spin,
            tick: Duration::from_millis(STATUS_GOSSIP_INTERVAL_MS),
        },
        senders,
    )?;

    tokio::spawn(super::control::serve(
        ctl,
        s.clone(),
        cmd_tx.clone(),
        metrics.clone(),
    ));
    if let Some(l) = metrics_listener {
        tokio::spawn(super::metrics_port::serve(l, s.clone(), metrics.clone()));
    }
    // Accept loop: each new attachment goes to the routing thread, which reads it from then on.
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok(p) => {
                    if attach_tx.send(p.into_polled()).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!("attach listener failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| RunError::Bind {
            what: "SIGTERM handler",
            addr: s.control_addr,
            source,
        })?;
    // The routing thread enters this runtime so that the router can spawn merge jobs on it.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Handle::current();
    let thread = std::thread::Builder::new()
        .name("chmpx-router".into())
        .spawn(move || {
            let _rt = rt.enter();
            route_loop.run();
            let _ = done_tx.send(());
        })
        .map_err(RunError::Thread)?;
    tracing::info!(node = %s.self_id, mode = s.mode.word(), control = %s.control_addr, "chmpx running");
    tokio::select! {
        _ = done_rx => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
    }
    drop(stop_tx);
    // The thread stops at its next pass (the stop channel's waker rings its eventfd).
    let joined = tokio::task::spawn_blocking(move || thread.join()).await;
    tracing::info!("chmpx stopping");
    if !matches!(joined, Ok(Ok(()))) {
        // The router panicked: stop with an error (as when it ran on the runtime) instead of
        // exiting as if asked to.
        link.shutdown().await;
        return Err(RunError::RouterFailed);
    }
    link.shutdown().await;
    Ok(())
}
