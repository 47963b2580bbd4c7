//! A minimal chmpx stand-in that answers every request with its own body. It is what the
//! transport tests and `mqbench` talk to (one hop: process <-> listener), and a small worked
//! example of the listener API for the daemon. A request whose body starts with
//! [`HOLD_PREFIX`] is never answered (tests use it to kill a process mid-request).

use std::time::Duration;

use super::envelope::{Envelope, Kind, Route};
use super::error::AttachError;
use super::listener::{AttachListener, AttachedProcess};

/// Requests with bodies starting with this are left unanswered.
pub const HOLD_PREFIX: &[u8] = b"hold";
/// Messages taken per receive.
const ECHO_BATCH_MAX: usize = 256;
/// Pause when the process's ring is full.
const BACKPRESSURE_PAUSE: Duration = Duration::from_micros(200);

/// Accepts attachments forever and echoes each on its own task.
pub async fn serve_echo(mut listener: AttachListener) -> Result<(), AttachError> {
    loop {
        let p = listener.accept().await?;
        tokio::spawn(echo_one(p));
    }
}

async fn echo_one(mut p: AttachedProcess) {
    let sender = p.sender();
    loop {
        let batch = match p.recv_batch(ECHO_BATCH_MAX).await {
            Ok(b) => b,
            Err(e) => {
                tracing::info!(id = p.id(), "echo: attachment ended: {e}");
                return;
            }
        };
        let replies: Vec<Envelope> = batch
            .into_iter()
            .filter(|e| e.kind == Kind::Request && !e.body.starts_with(HOLD_PREFIX))
            .map(|e| Envelope {
                msg_id: e.msg_id,
                kind: Kind::Response,
                route: Route::Reply {
                    node: 0,
                    attachment: p.id(),
                    msg_id: e.msg_id,
                },
                flags: 0,
                body: e.body,
                queued_ns: 0,
            })
            .collect();
        let mut done = 0;
        while done < replies.len() {
            match sender.send_many(&replies[done..]) {
                Ok(n) => done += n,
                Err(AttachError::Backpressure { .. }) => {
                    if !sender.is_alive() {
                        break;
                    }
                    tokio::time::sleep(BACKPRESSURE_PAUSE).await;
                }
                Err(e) => {
                    tracing::warn!(id = p.id(), "echo: send failed: {e}");
                    break;
                }
            }
        }
    }
}
