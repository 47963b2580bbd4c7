//! Connection set-up between two chmpx daemons, over any stream halves.
//!
//! ```text
//!  dialer                                   acceptor
//!    | Hello{dialer_id, dialer_nonce}  ─────▶ |  id configured? IP matches? right direction?
//!    | ◀───── HelloAck{acceptor_id, acceptor_nonce, acceptor_proof}
//!    |  acceptor id expected? proof valid?    |
//!    | AuthProof{dialer_proof}         ─────▶ |  proof valid?
//!    |            link UP on both sides       |
//! ```
//!
//! Any mismatch of secrets is seen by the dialer at the second step (the proofs are symmetric),
//! so a dialer never believes in a link the acceptor then refuses. A refusing side sends
//! `Close{reason}` first when it can, so the other side logs why.

use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncWrite};

use super::access::{check_hello, Admitted};
use super::auth::{new_nonce, proof, verify, Role, Transcript};
use super::conn::{ConnError, FrameReader, FrameWriter};
use super::frame::{Frame, FrameBody};
use super::limits::NONCE_BYTES;
use super::options::PeerSpec;

/// What both handshake directions need to know about this node.
pub struct HandshakeCtx<'a> {
    pub self_id: &'a str,
    pub self_listens: bool,
    pub cluster: &'a str,
    pub secret: Option<&'a [u8]>,
}

fn nonce() -> Result<Vec<u8>, ConnError> {
    new_nonce().map_err(|e| ConnError::Random(e.to_string()))
}

fn check_nonce(n: &[u8]) -> Result<(), ConnError> {
    if n.len() == NONCE_BYTES {
        Ok(())
    } else {
        Err(ConnError::Protocol(format!(
            "nonce of {} bytes, expected {NONCE_BYTES}",
            n.len()
        )))
    }
}

async fn refuse<W: AsyncWrite + Unpin>(
    w: &mut FrameWriter<W>,
    cluster: &str,
    err: ConnError,
) -> ConnError {
    let reason = match &err {
        // Say no more than needed to an unauthenticated peer.
        ConnError::BadProof { .. } => "authentication failed".to_owned(),
        other => other.to_string(),
    };
    let _ = w
        .send(&Frame::new(cluster, FrameBody::Close { reason }))
        .await;
    w.close().await;
    err
}

/// Dials side: runs the handshake with the peer expected at the other end.
pub async fn dial<R, W>(
    ctx: &HandshakeCtx<'_>,
    expected: &PeerSpec,
    r: &mut FrameReader<R>,
    w: &mut FrameWriter<W>,
) -> Result<(), ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let dialer_nonce = nonce()?;
    w.send(&Frame::new(
        ctx.cluster,
        FrameBody::Hello {
            node_id: ctx.self_id.to_owned(),
            nonce: dialer_nonce.clone(),
        },
    ))
    .await?;
    let (frame, _) = r.read_frame().await?;
    let (acceptor_id, acceptor_nonce, acceptor_proof) = match frame.body {
        FrameBody::HelloAck {
            node_id,
            nonce,
            proof,
        } => (node_id, nonce, proof),
        FrameBody::Close { reason } => return Err(ConnError::Closed { reason }),
        other => {
            return Err(ConnError::Protocol(format!(
                "expected HelloAck, got {}",
                body_name(&other)
            )))
        }
    };
    if acceptor_id != expected.id {
        let err = ConnError::Protocol(format!(
            "dialled {} expecting node {:?}, it says it is {acceptor_id:?}",
            expected.addr, expected.id
        ));
        return Err(refuse(w, ctx.cluster, err).await);
    }
    check_nonce(&acceptor_nonce)?;
    let t = Transcript {
        cluster: ctx.cluster,
        dialer_id: ctx.self_id,
        acceptor_id: &acceptor_id,
        dialer_nonce: &dialer_nonce,
        acceptor_nonce: &acceptor_nonce,
    };
    if !verify(ctx.secret, Role::Acceptor, &t, &acceptor_proof) {
        return Err(refuse(
            w,
            ctx.cluster,
            ConnError::BadProof {
                peer: acceptor_id.clone(),
            },
        )
        .await);
    }
    w.send(&Frame::new(
        ctx.cluster,
        FrameBody::AuthProof {
            proof: proof(ctx.secret, Role::Dialer, &t),
        },
    ))
    .await?;
    Ok(())
}

/// Accepting side: runs the handshake with whoever connected from `source`; returns who it is
/// (a configured peer of `peers`, or a slave admitted by an any-host entry).
pub async fn accept<R, W>(
    ctx: &HandshakeCtx<'_>,
    peers: &[PeerSpec],
    source: IpAddr,
    r: &mut FrameReader<R>,
    w: &mut FrameWriter<W>,
) -> Result<Admitted, ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (frame, _) = match r.read_frame().await {
        Ok(f) => f,
        Err(e @ (ConnError::Frame(_) | ConnError::WrongCluster { .. })) => {
            return Err(refuse(w, ctx.cluster, e).await)
        }
        Err(e) => return Err(e),
    };
    let (dialer_id, dialer_nonce) = match frame.body {
        FrameBody::Hello { node_id, nonce } => (node_id, nonce),
        other => {
            let err = ConnError::Protocol(format!("expected Hello, got {}", body_name(&other)));
            return Err(refuse(w, ctx.cluster, err).await);
        }
    };
    let admitted = match check_hello(ctx.self_id, ctx.self_listens, peers, &dialer_id, source) {
        Ok(a) => a,
        Err(e) => return Err(refuse(w, ctx.cluster, e.into()).await),
    };
    if let Err(e) = check_nonce(&dialer_nonce) {
        return Err(refuse(w, ctx.cluster, e).await);
    }
    let acceptor_nonce = nonce()?;
    let t = Transcript {
        cluster: ctx.cluster,
        dialer_id: &dialer_id,
        acceptor_id: ctx.self_id,
        dialer_nonce: &dialer_nonce,
        acceptor_nonce: &acceptor_nonce,
    };
    let ack = FrameBody::HelloAck {
        node_id: ctx.self_id.to_owned(),
        nonce: acceptor_nonce.clone(),
        proof: proof(ctx.secret, Role::Acceptor, &t),
    };
    w.send(&Frame::new(ctx.cluster, ack)).await?;
    let (frame, _) = r.read_frame().await?;
    let dialer_proof = match frame.body {
        FrameBody::AuthProof { proof } => proof,
        FrameBody::Close { reason } => return Err(ConnError::Closed { reason }),
        other => {
            let err = ConnError::Protocol(format!("expected AuthProof, got {}", body_name(&other)));
            return Err(refuse(w, ctx.cluster, err).await);
        }
    };
    if !verify(ctx.secret, Role::Dialer, &t, &dialer_proof) {
        return Err(refuse(w, ctx.cluster, ConnError::BadProof { peer: dialer_id }).await);
    }
    Ok(admitted)
}

/// Short name of a frame kind for log lines.
pub fn body_name(body: &FrameBody) -> &'static str {
    match body {
        FrameBody::Hello { .. } => "Hello",
        FrameBody::HelloAck { .. } => "HelloAck",
        FrameBody::AuthProof { .. } => "AuthProof",
        FrameBody::Heartbeat { .. } => "Heartbeat",
        FrameBody::HeartbeatAck { .. } => "HeartbeatAck",
        FrameBody::Data(_) => "Data",
        FrameBody::Control { .. } => "Control",
        FrameBody::Close { .. } => "Close",
    }
}
