//! The control port: a TCP listener that reads command lines and answers each.
//!
//! Protocol: the client sends one command per line (`\n` or `\r\n`). Each answer is a first
//! line `OK` or `ERR <reason>`, then zero or more lines of text, then a line holding only `.`.
//! Lines longer than [`CONTROL_LINE_LEN_MAX_BYTES`] get an `ERR` answer and the connection is
//! closed. Connections from addresses that are not configured hosts are closed at once.
//! Garbage never stops the daemon: it gets an `ERR` answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::command::Command;
use super::limits::*;
use super::metrics::Metrics;
use super::refusal_log::RefusalLog;
use super::router::RouterCmd;
use super::settings::DaemonSettings;

/// Formats one answer in the control protocol.
pub fn format_answer(ok: bool, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    if ok {
        out.push_str("OK\n");
        for line in text.lines() {
            // A body line that is exactly "." would end the answer early: dot-stuff it.
            if line.starts_with('.') {
                out.push('.');
            }
            out.push_str(line);
            out.push('\n');
        }
    } else {
        out.push_str("ERR ");
        out.push_str(&text.replace('\n', " "));
        out.push('\n');
    }
    out.push_str(CONTROL_ANSWER_END);
    out.push('\n');
    out
}

/// Serves the control port until the runtime stops.
pub async fn serve(
    listener: TcpListener,
    s: Arc<DaemonSettings>,
    router: mpsc::Sender<RouterCmd>,
    metrics: Arc<Metrics>,
) {
    let live = Arc::new(AtomicUsize::new(0));
    let mut log = RefusalLog::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("control port accept: {e}");
                tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                continue;
            }
        };
        if !s.control_allowed(peer.ip()) {
            metrics.add_bad_input();
            if let Some(unlogged) = log.due() {
                tracing::warn!(%peer, unlogged, "control connection from an address that is not a configured host; closed");
            }
            continue;
        }
        if live.load(Ordering::Relaxed) >= CONTROL_CONNECTIONS_MAX {
            if let Some(unlogged) = log.due() {
                tracing::warn!(%peer, unlogged, "too many control connections; closed");
            }
            continue;
        }
        live.fetch_add(1, Ordering::Relaxed);
        let (router, metrics, live) = (router.clone(), metrics.clone(), live.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_one(stream, peer, router, metrics).await {
                tracing::debug!(%peer, "control connection ended: {e}");
            }
            live.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn serve_one(
    stream: TcpStream,
    peer: SocketAddr,
    router: mpsc::Sender<RouterCmd>,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        // Read at most the line limit plus one byte, so an endless line cannot grow memory.
        let read = tokio::time::timeout(
            Duration::from_millis(CONTROL_IDLE_TIMEOUT_MS),
            (&mut rd)
                .take(CONTROL_LINE_LEN_MAX_BYTES as u64 + 2)
                .read_until(b'\n', &mut line),
        )
        .await;
        let n = match read {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        let complete = line.ends_with(b"\n");
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if !complete && line.len() > CONTROL_LINE_LEN_MAX_BYTES {
            metrics.add_bad_input();
            let msg = format!("line longer than {CONTROL_LINE_LEN_MAX_BYTES} bytes; closing");
            wr.write_all(format_answer(false, &msg).as_bytes()).await?;
            return Ok(());
        }
        let answer = match Command::parse_bytes(&line) {
            Ok(cmd) => {
                metrics.add_control();
                tracing::debug!(%peer, ?cmd, "control command");
                let (tx, rx) = oneshot::channel();
                if router
                    .send(RouterCmd::Control { cmd, reply: tx })
                    .await
                    .is_err()
                {
                    format_answer(false, "the daemon is stopping")
                } else {
                    match tokio::time::timeout(
                        Duration::from_millis(RING_COMMAND_TIMEOUT_MS + 1000),
                        rx,
                    )
                    .await
                    {
                        Ok(Ok((ok, text))) => format_answer(ok, &text),
                        _ => format_answer(
                            false,
                            "no answer in time (is the coordinator reachable?)",
                        ),
                    }
                }
            }
            Err(e) => {
                metrics.add_bad_input();
                format_answer(false, &e.to_string())
            }
        };
        wr.write_all(answer.as_bytes()).await?;
        if !complete {
            return Ok(());
        }
    }
}

/// Sends one command to a control port and returns (ok, text). For the tools and tests.
pub async fn query(
    addr: SocketAddr,
    command: &str,
    timeout: Duration,
) -> std::io::Result<(bool, String)> {
    let work = async {
        let stream = TcpStream::connect(addr).await?;
        let (rd, mut wr) = stream.into_split();
        wr.write_all(command.as_bytes()).await?;
        wr.write_all(b"\n").await?;
        let mut rd = BufReader::new(rd);
        read_answer(&mut rd).await
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "control port did not answer in time",
        )
    })?
}

/// Reads one answer (up to the `.` line).
pub async fn read_answer<R: tokio::io::AsyncBufRead + Unpin>(
    rd: &mut R,
) -> std::io::Result<(bool, String)> {
    let mut first = String::new();
    if rd.read_line(&mut first).await? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before an answer",
        ));
    }
    let first = first.trim_end();
    let (ok, mut text) = match first.strip_prefix("ERR") {
        Some(rest) => (false, rest.trim_start().to_string()),
        None if first == "OK" => (true, String::new()),
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a control answer: {first:?}"),
            ))
        }
    };
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "answer cut short",
            ));
        }
        let l = line.trim_end_matches(['\n', '\r']);
        if l == CONTROL_ANSWER_END {
            return Ok((ok, text));
        }
        let l = l.strip_prefix('.').unwrap_or(l);
        if ok {
            text.push_str(l);
            text.push('\n');
        }
    }
}

/// Which control port a tool talks to: the local node of a config file, or a host and port.
#[derive(Debug, Clone, clap::Args)]
pub struct ControlTarget {
    /// The cluster's config file: talk to this host's node in it.
    #[arg(long = "conf", short = 'c', conflicts_with = "host")]
    pub conf: Option<std::path::PathBuf>,
    /// Which node of the file when several run on this host; with --host, the control port.
    #[arg(long)]
    pub ctlport: Option<u16>,
    /// Host of the chmpx to talk to (with --ctlport).
    #[arg(long)]
    pub host: Option<String>,
}

impl ControlTarget {
    /// The control address to connect to.
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        use std::net::ToSocketAddrs;
        match (&self.conf, &self.host, self.ctlport) {
            (Some(conf), None, port) => {
                let cfg = crate::config::Config::load(conf).map_err(|e| e.to_string())?;
                let me = cfg
                    .self_node(port, &crate::config::LocalAddrs::detect())
                    .map_err(|e| e.to_string())?;
                Ok(SocketAddr::from((
                    [127, 0, 0, 1],
                    cfg.own_ctlport(port, me),
                )))
            }
            (None, Some(host), Some(port)) => (host.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("{host} has no address")),
            _ => Err("give --conf FILE [--ctlport N], or --host H --ctlport N".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_round_trip_with_dot_stuffing() {
        for (ok, text) in [(true, "a\n.\n..b\nc"), (false, "bad thing"), (true, "")] {
            let wire = format_answer(ok, text);
            let mut rd = BufReader::new(wire.as_bytes());
            let (got_ok, got) = read_answer(&mut rd).await.unwrap();
            assert_eq!(got_ok, ok);
            if ok {
                assert_eq!(got.trim_end(), text.trim_end());
            } else {
                assert_eq!(got, text);
            }
        }
    }
}
