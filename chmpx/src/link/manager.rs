//! The link manager: one listener, one driver task per peer, and the handle the daemon uses.
//!
//! ```text
//!            accept ──check_source──▶ handshake::accept ──handoff──┐
//!  listener ─┘                                                      ▼
//!  daemon ──send/try_send──▶ [bounded queue per peer] ──▶ driver(peer): dial or wait, session::run
//!  daemon ◀──────────────── [bounded event channel] ◀──────────────── (PeerUp/Down, Data, Control)
//! ```
//!
//! Each driver owns its peer's queue receiver and at most one session at a time. If the pair's
//! rule says we dial, the driver dials with exponential backoff; otherwise it waits for the
//! acceptor to hand it a handshaked inbound connection (a newer one replaces the current one:
//! the peer restarted). While no session runs the peer is DOWN: `send` fails fast, and what was
//! still queued is dropped and counted, so memory stays bounded and the daemon fails over.
//!
//! An any-host slave entry ([`super::access::is_any_host_slave`]) has no driver of its own:
//! each slave it admits is named by its own address and control port and gets its own peer,
//! created on its first handshake (at most [`DYNAMIC_PEERS_MAX`]; a DOWN one makes room).
//! A node that does not listen (a slave) dials from the address its own id names, when that
//! is an address of this host, so the servers see the identity it claims.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use super::access::{check_source, is_any_host_slave, Admitted};
use super::backoff::Backoff;
use super::conn::{ConnError, FrameReader, FrameWriter};
use super::error::{SendError, StartError};
use super::event::{LinkEvent, Outgoing, Queued};
use super::frame::DataMsg;
use super::handshake::{self, HandshakeCtx};
use super::limits::{
    DYNAMIC_PEERS_MAX, FRAME_ENVELOPE_BYTES_MAX, HANDSHAKES_IN_FLIGHT_MAX, INBOUND_HANDOFF_DEPTH,
    NODE_ID_LEN_MAX,
};
use super::options::{self_dials, LinkOptions, PeerSpec};
use super::peer::{LocalView, PeerShared};
use super::session::{self, SessionCtx, SessionEnd};
use super::stats::{LinkStats, LinkStatsSnapshot, PeerCounters, PeerState};
use super::stream::{self, LinkRead, LinkWrite};

type Reader = FrameReader<LinkRead>;
type Writer = FrameWriter<LinkWrite>;

/// A handshaked connection on its way from the acceptor to the peer's driver.
struct Inbound {
    reader: Reader,
    writer: Writer,
    source: SocketAddr,
}

/// A slave admitted by an any-host entry: its shared state and where its connections go.
struct DynPeer {
    shared: Arc<PeerShared>,
    handoff: mpsc::Sender<Inbound>,
}

struct Inner {
    self_id: String,
    options: LinkOptions,
    /// Every configured peer, any-host entries included (the access rules read them).
    specs: Vec<PeerSpec>,
    /// The configured peers that are nodes (any-host entries are not), with a driver each.
    peers: Vec<Arc<PeerShared>>,
    index: HashMap<String, usize>,
    /// Slaves admitted by an any-host entry, by id.
    dynamic: RwLock<HashMap<String, DynPeer>>,
    /// The address outgoing connections are bound to (see the module doc).
    source_ip: Option<IpAddr>,
    stats: LinkStats,
    local_view: LocalView,
    local_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Starts the link layer.
pub struct LinkManager;

impl LinkManager {
    /// Starts serving `listener` (if this node listens) and linking to `peers`. Must be called
    /// inside a tokio runtime. An entry of `peers` with `self_id` is ignored, so the daemon may
    /// pass the whole server list.
    pub fn start(
        self_id: impl Into<String>,
        peers: Vec<PeerSpec>,
        options: LinkOptions,
        listener: Option<TcpListener>,
    ) -> Result<(LinkHandle, mpsc::Receiver<LinkEvent>), StartError> {
        let self_id = self_id.into();
        options.validate().map_err(StartError::Options)?;
        if self_id.is_empty() || self_id.len() > NODE_ID_LEN_MAX {
            return Err(StartError::Peers(format!(
                "own id must be 1..={NODE_ID_LEN_MAX} bytes"
            )));
        }
        let specs: Vec<PeerSpec> = peers.into_iter().filter(|p| p.id != self_id).collect();
        let mut index = HashMap::new();
        for (i, p) in specs.iter().enumerate() {
            if p.id.is_empty() || p.id.len() > NODE_ID_LEN_MAX {
                return Err(StartError::Peers(format!(
                    "peer id {:?} must be 1..={NODE_ID_LEN_MAX} bytes",
                    p.id
                )));
            }
            let dialled = self_dials(&self_id, listener.is_some(), p);
            if dialled && p.tls_name.is_some() && options.tls.connector.is_none() {
                return Err(StartError::Peers(format!(
                    "peer {:?} speaks TLS but the options have no TLS connector to dial it",
                    p.id
                )));
            }
            if index.insert(p.id.clone(), i).is_some() {
                return Err(StartError::Peers(format!(
                    "peer id {:?} is listed twice",
                    p.id
                )));
            }
        }
        let self_listens = listener.is_some();
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let source_ip = if self_listens {
            None
        } else {
            own_address(&self_id)
        };
        let (events_tx, events_rx) = mpsc::channel(options.event_queue_depth);
        let (shutdown_tx, _) = watch::channel(false);

        let mut queues = Vec::new();
        let mut handoffs = Vec::new();
        let mut peers = Vec::new();
        let mut node_index = HashMap::new();
        // The largest message must fit in an empty queue, or it could never be sent.
        let budget_bytes = budget_bytes(&options);
        for spec in specs.iter().filter(|p| !is_any_host_slave(p)) {
            let (tx, rx) = mpsc::channel(options.peer_queue_depth);
            let (htx, hrx) = mpsc::channel(INBOUND_HANDOFF_DEPTH);
            node_index.insert(spec.id.clone(), peers.len());
            peers.push(Arc::new(PeerShared::new(spec.clone(), tx, budget_bytes)));
            queues.push(rx);
            handoffs.push((htx, hrx));
        }
        let inner = Arc::new(Inner {
            self_id,
            options,
            specs,
            peers,
            index: node_index,
            dynamic: RwLock::new(HashMap::new()),
            source_ip,
            stats: LinkStats::default(),
            local_view: LocalView::default(),
            local_addr,
            shutdown: shutdown_tx,
            tasks: Mutex::new(Vec::new()),
        });

        let mut tasks = Vec::new();
        let mut handoff_txs = Vec::new();
        for (i, (outq, (htx, hrx))) in queues.into_iter().zip(handoffs).enumerate() {
            handoff_txs.push(htx);
            let peer = inner.peers[i].clone();
            let dials = self_dials(&inner.self_id, self_listens, &peer.spec);
            let driver = Driver {
                inner: inner.clone(),
                peer,
                dials,
                outq,
                inbound: hrx,
                events: events_tx.clone(),
            };
            tasks.push(tokio::spawn(driver.run()));
        }
        if let Some(listener) = listener {
            tasks.push(tokio::spawn(accept_loop(
                inner.clone(),
                listener,
                handoff_txs,
                events_tx.clone(),
            )));
        }
        *inner.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        tracing::info!(node = %inner.self_id, peers = inner.peers.len(), listen = ?local_addr, "link manager started");
        Ok((LinkHandle { inner }, events_rx))
    }

    /// Binds `addr` (when given) and starts; see [`LinkManager::start`].
    pub async fn bind(
        self_id: impl Into<String>,
        peers: Vec<PeerSpec>,
        options: LinkOptions,
        addr: Option<SocketAddr>,
    ) -> Result<(LinkHandle, mpsc::Receiver<LinkEvent>), StartError> {
        let listener = match addr {
            Some(addr) => Some(
                super::listen::bind_listener(addr, "data port")
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?,
            ),
            None => None,
        };
        Self::start(self_id, peers, options, listener)
    }
}

/// The daemon's handle on the links. Cheap to clone.
#[derive(Clone)]
pub struct LinkHandle {
    inner: Arc<Inner>,
}

impl LinkHandle {
    pub fn self_id(&self) -> &str {
        &self.inner.self_id
    }

    /// The data port actually bound (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr
    }

    /// The peer `id`: a configured one, or a slave admitted by an any-host entry.
    fn lookup(&self, id: &str) -> Option<Arc<PeerShared>> {
        match self.inner.index.get(id) {
            Some(&i) => Some(self.inner.peers[i].clone()),
            None => self
                .inner
                .dynamic
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(id)
                .map(|d| d.shared.clone()),
        }
    }

    /// Every peer: the configured ones, then the admitted slaves.
    fn all_peers(&self) -> Vec<Arc<PeerShared>> {
        let mut all = self.inner.peers.clone();
        let dynamic = self.inner.dynamic.read().unwrap_or_else(|p| p.into_inner());
        let mut slaves: Vec<&DynPeer> = dynamic.values().collect();
        slaves.sort_by(|a, b| a.shared.spec.id.cmp(&b.shared.spec.id));
        all.extend(slaves.into_iter().map(|d| d.shared.clone()));
        all
    }

    fn peer(&self, id: &str) -> Result<Arc<PeerShared>, SendError> {
        if *self.inner.shutdown.borrow() {
            return Err(SendError::Shutdown);
        }
        let peer = self.lookup(id).ok_or_else(|| SendError::UnknownPeer {
            peer: id.to_owned(),
        })?;
        if !peer.is_up() {
            return Err(SendError::PeerDown {
                peer: id.to_owned(),
            });
        }
        Ok(peer)
    }

    /// Refuses a message that cannot fit in a frame; returns its cost in queue-budget bytes.
    fn check_size(&self, id: &str, msg: &Outgoing) -> Result<u32, SendError> {
        let max = self.inner.options.frame_size_max;
        let len = msg.payload_bytes() + self.inner.options.cluster.len() + FRAME_ENVELOPE_BYTES_MAX;
        if len > max {
            let source = super::frame::FrameError::TooLarge { len, max };
            return Err(SendError::TooLarge {
                peer: id.to_owned(),
                source,
            });
        }
        // `len <= frame_size_max <= FRAME_SIZE_MAX_CEILING_BYTES`, which fits in a u32.
        Ok(len as u32)
    }

    /// Queues `msg` for `peer`, waiting up to `send_timeout` for room (in messages and bytes).
    pub async fn send(&self, peer: &str, msg: Outgoing) -> Result<(), SendError> {
        let p = self.peer(peer)?;
        let cost = self.check_size(peer, &msg)?;
        let waited = self.inner.options.send_timeout;
        let enqueue = async {
            let budget = p
                .budget
                .clone()
                .acquire_many_owned(cost)
                .await
                .map_err(|_| SendError::Shutdown)?;
            let queued = Queued {
                msg,
                _budget: Some(budget),
            };
            p.tx.send(queued).await.map_err(|_| SendError::Shutdown)
        };
        match tokio::time::timeout(waited, enqueue).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout {
                peer: peer.to_owned(),
                waited,
            }),
        }
    }

    /// Queues `msg` for `peer` if there is room now (in messages and bytes).
    pub fn try_send(&self, peer: &str, msg: Outgoing) -> Result<(), SendError> {
        let p = self.peer(peer)?;
        let cost = self.check_size(peer, &msg)?;
        let full = || SendError::Full {
            peer: peer.to_owned(),
            depth: self.inner.options.peer_queue_depth,
        };
        let budget = match p.budget.clone().try_acquire_many_owned(cost) {
            Ok(b) => b,
            Err(tokio::sync::TryAcquireError::NoPermits) => return Err(full()),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(SendError::Shutdown),
        };
        p.tx.try_send(Queued {
            msg,
            _budget: Some(budget),
        })
        .map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => full(),
            mpsc::error::TrySendError::Closed(_) => SendError::Shutdown,
        })
    }

    pub async fn send_data(&self, peer: &str, msg: DataMsg) -> Result<(), SendError> {
        self.send(peer, Outgoing::Data(msg)).await
    }

    pub async fn send_control(&self, peer: &str, bytes: Vec<u8>) -> Result<(), SendError> {
        self.send(peer, Outgoing::Control(bytes)).await
    }

    /// Ids of the peers that are UP now (admitted slaves included).
    pub fn up_peers(&self) -> Vec<String> {
        self.all_peers()
            .iter()
            .filter(|p| p.is_up())
            .map(|p| p.spec.id.clone())
            .collect()
    }

    pub fn is_up(&self, peer: &str) -> bool {
        self.lookup(peer).is_some_and(|p| p.is_up())
    }

    /// The state of every peer: the configured ones in order, then the admitted slaves by id.
    pub fn peer_states(&self) -> Vec<PeerState> {
        self.all_peers().iter().map(|p| p.snapshot()).collect()
    }

    pub fn stats(&self) -> LinkStatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Sets the view this node advertises in its heartbeats.
    pub fn set_local_view(&self, epoch: u64, status: u32) {
        self.inner.local_view.epoch.store(epoch, Ordering::Relaxed);
        self.inner
            .local_view
            .status
            .store(status, Ordering::Relaxed);
    }

    /// Closes the listener and every link, and waits for the tasks to end. Peers see the links
    /// close at once. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        for p in self.all_peers() {
            p.set_up(false);
        }
        tracing::info!(node = %self.inner.self_id, "link manager stopped");
    }
}

/// The queue byte budget of one peer: the largest message must fit in an empty queue.
fn budget_bytes(o: &LinkOptions) -> usize {
    o.peer_queue_bytes_max.max(o.frame_size_max)
}

/// The address `id` ("host:port") names, when it is an address (not a name) that is neither
/// unspecified nor a port-only id.
fn own_address(id: &str) -> Option<IpAddr> {
    let (host, _) = id.rsplit_once(':')?;
    let ip: IpAddr = host.parse().ok()?;
    (!ip.is_unspecified()).then_some(ip)
}

async fn accept_loop(
    inner: Arc<Inner>,
    listener: TcpListener,
    handoffs: Vec<mpsc::Sender<Inbound>>,
    events: mpsc::Sender<LinkEvent>,
) {
    let mut shutdown = inner.shutdown.subscribe();
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT_MAX));
    let specs: Arc<Vec<PeerSpec>> = Arc::new(inner.specs.clone());
    let handoffs = Arc::new(handoffs);
    loop {
        let (stream, source) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually EMFILE or a connection reset before accept; back off briefly.
                    tracing::warn!(node = %inner.self_id, error = %e, "accept failed");
                    tokio::time::sleep(inner.options.backoff_min).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return,
        };
        if let Err(e) = check_source(&specs, source.ip()) {
            inner
                .stats
                .refused_connections
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(node = %inner.self_id, %source, error = %e, "inbound connection refused");
            continue;
        }
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            inner
                .stats
                .refused_connections
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(node = %inner.self_id, %source, "inbound connection refused: too many handshakes in flight");
            continue;
        };
        let (inner, specs, handoffs) = (inner.clone(), specs.clone(), handoffs.clone());
        let events = events.clone();
        tokio::spawn(async move {
            let _permit = permit;
            accept_one(&inner, &specs, &handoffs, &events, stream, source).await;
        });
    }
}

async fn accept_one(
    inner: &Arc<Inner>,
    specs: &[PeerSpec],
    handoffs: &[mpsc::Sender<Inbound>],
    events: &mpsc::Sender<LinkEvent>,
    stream: TcpStream,
    source: SocketAddr,
) {
    let o = &inner.options;
    let _ = stream.set_nodelay(true);
    let ctx = HandshakeCtx {
        self_id: &inner.self_id,
        self_listens: true,
        cluster: &o.cluster,
        secret: o.secret.as_deref(),
    };
    let handshaked = async {
        let (rd, wr) = match &o.tls.acceptor {
            Some(acceptor) => {
                let tls = acceptor.accept(stream).await.map_err(ConnError::Tls)?;
                stream::tls(tls.into())
            }
            None => stream::plain(stream),
        };
        let mut reader = FrameReader::new(rd, o.frame_size_max, &o.cluster);
        let mut writer = FrameWriter::new(wr, o.frame_size_max, o.rw_timeout);
        let admitted =
            handshake::accept(&ctx, specs, source.ip(), &mut reader, &mut writer).await?;
        Ok((admitted, reader, writer))
    };
    let result = tokio::time::timeout(o.connect_timeout, handshaked)
        .await
        .unwrap_or(Err(ConnError::Timeout {
            what: "inbound handshake",
            after: o.connect_timeout,
        }));
    match result {
        Ok((admitted, reader, writer)) => {
            let (id, handoff) = match admitted {
                Admitted::Configured(i) => {
                    let id = specs[i].id.clone();
                    match inner.index.get(&id) {
                        Some(&p) => (id, handoffs[p].clone()),
                        None => return,
                    }
                }
                Admitted::Slave { id, .. } => match slave_handoff(inner, &id, events) {
                    Some(h) => (id, h),
                    None => {
                        inner
                            .stats
                            .refused_connections
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(node = %inner.self_id, peer = %id, %source, max = DYNAMIC_PEERS_MAX, "inbound slave refused: as many slaves as allowed are UP; raise DYNAMIC_PEERS_MAX or give slaves entries of their own");
                        return;
                    }
                },
            };
            if handoff
                .try_send(Inbound {
                    reader,
                    writer,
                    source,
                })
                .is_err()
            {
                tracing::warn!(node = %inner.self_id, peer = %id, %source, "inbound link dropped: peer reconnects too fast");
            }
        }
        Err(e) => {
            inner
                .stats
                .refused_connections
                .fetch_add(1, Ordering::Relaxed);
            inner
                .stats
                .handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            if e.is_bad_input() {
                inner.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
            }
            tracing::warn!(node = %inner.self_id, %source, error = %e, "inbound connection refused");
        }
    }
}

/// Where the connections of the admitted slave `id` go: its existing peer's driver, or a new
/// peer and driver. At the limit a DOWN admitted slave is forgotten to make room; `None` when
/// all are UP (or the node is shutting down).
fn slave_handoff(
    inner: &Arc<Inner>,
    id: &str,
    events: &mpsc::Sender<LinkEvent>,
) -> Option<mpsc::Sender<Inbound>> {
    if *inner.shutdown.borrow() {
        return None;
    }
    let mut dynamic = inner.dynamic.write().unwrap_or_else(|p| p.into_inner());
    if let Some(d) = dynamic.get(id) {
        return Some(d.handoff.clone());
    }
    if dynamic.len() >= DYNAMIC_PEERS_MAX {
        let down = dynamic
            .iter()
            .find(|(_, d)| !d.shared.is_up())
            .map(|(k, _)| k.clone())?;
        // Dropping its handoff ends its driver, which is waiting for a connection.
        dynamic.remove(&down);
        tracing::info!(node = %inner.self_id, forgotten = %down, "a DOWN slave is forgotten to make room for a new one");
    }
    let o = &inner.options;
    let (tx, outq) = mpsc::channel(o.peer_queue_depth);
    let (handoff, inbound) = mpsc::channel(INBOUND_HANDOFF_DEPTH);
    let spec = PeerSpec::slave(id, IpAddr::from([0, 0, 0, 0]));
    let shared = Arc::new(PeerShared::new(spec, tx, budget_bytes(o)));
    dynamic.insert(
        id.to_owned(),
        DynPeer {
            shared: shared.clone(),
            handoff: handoff.clone(),
        },
    );
    drop(dynamic);
    tracing::info!(node = %inner.self_id, peer = %id, "new slave admitted by an any-host entry");
    let driver = Driver {
        inner: inner.clone(),
        peer: shared,
        dials: false,
        outq,
        inbound,
        events: events.clone(),
    };
    let task = tokio::spawn(driver.run());
    inner
        .tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(task);
    Some(handoff)
}

/// Why a running session was cut short from outside.
enum Interrupt {
    Shutdown,
    Replaced(Inbound),
}

/// One peer's task.
struct Driver {
    inner: Arc<Inner>,
    peer: Arc<PeerShared>,
    dials: bool,
    outq: mpsc::Receiver<Queued>,
    inbound: mpsc::Receiver<Inbound>,
    events: mpsc::Sender<LinkEvent>,
}

impl Driver {
    async fn run(mut self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let seed = getrandom::u64().unwrap_or(self.peer.spec.id.len() as u64 ^ 0x5eed);
        let inner = self.inner.clone();
        let o = &inner.options;
        let mut backoff = Backoff::new(o.backoff_min, o.backoff_max, seed);
        let mut next: Option<Inbound> = None;
        let mut flapping = false;
        loop {
            // A link that died young (e.g. the peer accepts, then refuses our frames) is
            // redialled only after a backoff delay, so a broken peer cannot make us spin.
            if flapping && self.dials && next.is_none() {
                let counters = &self.peer.counters;
                let pause = tokio::time::sleep(backoff.next_delay());
                if draining(pause, &mut self.outq, counters, &mut shutdown)
                    .await
                    .is_none()
                {
                    break;
                }
            }
            let conn = match next.take() {
                Some(c) => Some((c.reader, c.writer, c.source)),
                None => self.connect(&mut backoff, &mut shutdown).await,
            };
            let Some((reader, writer, source)) = conn else {
                break;
            };
            let linked_at = tokio::time::Instant::now();
            let peer = self.peer.clone();
            self.inner.stats.links_up.fetch_add(1, Ordering::Relaxed);
            tracing::info!(node = %self.inner.self_id, peer = %peer.spec.id, %source, "link UP");
            peer.set_up(true);
            let up = LinkEvent::PeerUp(peer.spec.id.clone());
            tokio::select! {
                sent = self.events.send(up) => if sent.is_err() { break },
                _ = stopped(&mut shutdown) => break,
            }
            let ctx = SessionCtx {
                cluster: &o.cluster,
                peer: &peer,
                heartbeat_interval: o.heartbeat_interval,
                heartbeat_timeout: o.heartbeat_timeout,
                local_view: &self.inner.local_view,
                events: &self.events,
            };
            let inbound = &mut self.inbound;
            let shutdown_rx = &mut shutdown;
            let interrupt = async move {
                tokio::select! {
                    Some(c) = inbound.recv() => (Interrupt::Replaced(c), "replaced by a newer connection"),
                    _ = stopped(shutdown_rx) => (Interrupt::Shutdown, "node shutting down"),
                }
            };
            let outcome = session::run(&ctx, reader, writer, &mut self.outq, interrupt).await;
            peer.set_up(false);
            flapping = linked_at.elapsed() < o.heartbeat_timeout;
            if !flapping {
                backoff.reset();
            }
            self.drop_queued();
            let node = &self.inner.self_id;
            let id = &peer.spec.id;
            let mut stop = false;
            match outcome {
                Ok(SessionEnd::Failed(e)) if e.is_bad_input() => {
                    self.inner.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%node, peer = %id, reason = %e, "link DOWN: bad input from peer");
                }
                Ok(end) => {
                    stop = matches!(end, SessionEnd::DaemonGone);
                    tracing::warn!(%node, peer = %id, reason = %end, "link DOWN");
                }
                Err(Interrupt::Replaced(c)) => {
                    tracing::info!(%node, peer = %id, source = %c.source, "peer reconnected; the newer link replaces the old one");
                    next = Some(c);
                }
                Err(Interrupt::Shutdown) => {
                    tracing::info!(%node, peer = %id, "link closed");
                    stop = true;
                }
            }
            let down = LinkEvent::PeerDown(id.clone());
            if stop {
                // Never wait for a daemon that may no longer read.
                let _ = self.events.try_send(down);
                break;
            }
            tokio::select! {
                _ = self.events.send(down) => {}
                _ = stopped(&mut shutdown) => break,
            }
        }
        self.peer.set_up(false);
    }

    /// Messages queued while the link was going down will not be sent; count them.
    fn drop_queued(&mut self) {
        let mut n = 0;
        while self.outq.try_recv().is_ok() {
            n += 1;
        }
        if n > 0 {
            self.peer.counters.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Gets the next handshaked connection: by dialling (with backoff) or from the acceptor.
    /// Drops whatever is sent meanwhile (a race with the DOWN flag). `None` on shutdown.
    async fn connect(
        &mut self,
        backoff: &mut Backoff,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<(Reader, Writer, SocketAddr)> {
        loop {
            if *shutdown.borrow() {
                return None;
            }
            let got = if self.dials {
                let attempt = dial_once(&self.inner, &self.peer.spec);
                let counters = &self.peer.counters;
                let got = draining(attempt, &mut self.outq, counters, shutdown).await?;
                match got {
                    Ok(c) => Some(c),
                    Err(e) => {
                        let delay = backoff.next_delay();
                        tracing::debug!(node = %self.inner.self_id, peer = %self.peer.spec.id, error = %e, ?delay, "dial failed");
                        if matches!(
                            e,
                            ConnError::BadProof { .. }
                                | ConnError::Closed { .. }
                                | ConnError::Protocol(_)
                                | ConnError::Tls(_)
                        ) || e.is_bad_input()
                        {
                            self.inner
                                .stats
                                .handshake_failures
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(node = %self.inner.self_id, peer = %self.peer.spec.id, error = %e, "handshake refused");
                        }
                        let counters = &self.peer.counters;
                        draining(
                            tokio::time::sleep(delay),
                            &mut self.outq,
                            counters,
                            shutdown,
                        )
                        .await?;
                        None
                    }
                }
            } else {
                let inbound = &mut self.inbound;
                let outq = &mut self.outq;
                let counters = &self.peer.counters;
                loop {
                    tokio::select! {
                        // A closed handoff: no connection can ever come (a forgotten slave).
                        c = inbound.recv() => match c {
                            Some(c) => break Some((c.reader, c.writer, c.source)),
                            None => return None,
                        },
                        Some(_) = outq.recv() => { counters.dropped.fetch_add(1, Ordering::Relaxed); }
                        _ = stopped(shutdown) => return None,
                    }
                }
            };
            if got.is_some() {
                return got;
            }
        }
    }
}

/// Runs `fut` to completion while dropping queued messages (the peer is DOWN); `None` on
/// shutdown.
async fn draining<F: std::future::Future>(
    fut: F,
    outq: &mut mpsc::Receiver<Queued>,
    counters: &PeerCounters,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return Some(out),
            Some(_) = outq.recv() => { counters.dropped.fetch_add(1, Ordering::Relaxed); }
            _ = stopped(shutdown) => return None,
        }
    }
}

/// Resolves once shutdown is requested (or the manager is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Connects to `addr` from `source` when given and of the same family (falling back to any
/// source when it is not an address of this host, e.g. behind NAT).
async fn connect_from(source: Option<IpAddr>, addr: SocketAddr) -> std::io::Result<TcpStream> {
    if let Some(ip) = source.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
        let socket = if ip.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        match socket.bind(SocketAddr::new(ip, 0)) {
            Ok(()) => return socket.connect(addr).await,
            Err(e) => {
                tracing::debug!(%ip, error = %e, "cannot dial from the own id's address; dialling from any")
            }
        }
    }
    TcpStream::connect(addr).await
}

/// Connects to the first of `addrs` that accepts; the error of the last one otherwise.
async fn connect_first(
    source: Option<IpAddr>,
    addrs: &[SocketAddr],
) -> std::io::Result<(TcpStream, SocketAddr)> {
    let mut last = std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to dial");
    for &addr in addrs {
        match connect_from(source, addr).await {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn dial_once(
    inner: &Inner,
    spec: &PeerSpec,
) -> Result<(Reader, Writer, SocketAddr), ConnError> {
    let o = &inner.options;
    let attempt = async {
        let (stream, dialled) = connect_first(inner.source_ip, &spec.dial_addrs()).await?;
        let _ = stream.set_nodelay(true);
        let (rd, wr) = match (&spec.tls_name, &o.tls.connector) {
            (Some(name), Some(connector)) => {
                let tls = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(ConnError::Tls)?;
                stream::tls(tls.into())
            }
            // `start` refused a TLS peer without a connector.
            _ => stream::plain(stream),
        };
        let mut reader = FrameReader::new(rd, o.frame_size_max, &o.cluster);
        let mut writer = FrameWriter::new(wr, o.frame_size_max, o.rw_timeout);
        let ctx = HandshakeCtx {
            self_id: &inner.self_id,
            self_listens: inner.local_addr.is_some(),
            cluster: &o.cluster,
            secret: o.secret.as_deref(),
        };
        handshake::dial(&ctx, spec, &mut reader, &mut writer).await?;
        Ok((reader, writer, dialled))
    };
    tokio::time::timeout(o.connect_timeout, attempt)
        .await
        .unwrap_or(Err(ConnError::Timeout {
            what: "connect and handshake",
            after: o.connect_timeout,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_address_is_the_ip_an_id_names() {
        assert_eq!(
            own_address("127.0.0.1:8031"),
            Some(IpAddr::from([127, 0, 0, 1]))
        );
        assert_eq!(own_address("fd00::7:8031"), "fd00::7".parse().ok());
        assert_eq!(own_address("slavehost:8031"), None);
        assert_eq!(own_address("0.0.0.0:8031"), None);
        assert_eq!(own_address("8031"), None);
    }

    #[tokio::test]
    async fn connect_first_skips_endpoints_that_refuse() {
        // A port that refuses: bind, learn the port, close.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = closed.local_addr().unwrap();
        drop(closed);
        let open = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = open.local_addr().unwrap();
        let (_stream, used) = connect_first(None, &[refused, good]).await.unwrap();
        assert_eq!(used, good);
        assert!(connect_first(None, &[refused]).await.is_err());
        assert!(connect_first(None, &[]).await.is_err());
        // From a given own address; from one that is not this host's, from any instead.
        let (stream, _) = connect_first(Some(IpAddr::from([127, 0, 0, 1])), &[good])
            .await
            .unwrap();
        assert_eq!(
            stream.local_addr().unwrap().ip(),
            IpAddr::from([127, 0, 0, 1])
        );
        let (_stream, _) = connect_first(Some(IpAddr::from([192, 0, 2, 77])), &[good])
            .await
            .unwrap();
    }
}
