//! Resuming a cluster session on a new connection: one attempt (the
//! resume hello and the cluster's `Resumed`), then sending again what the
//! cluster missed.

use rand::RngCore;
use sustenet_net::{FrameReader, SealedReader, SealedWriter, write_frame};
use sustenet_proto::handshake::{self, ResumeClaim};
use sustenet_proto::resume::Rewind;
use sustenet_proto::{
    ClientSessionKeys, ClientToCluster, ClusterToClient, DisconnectReason, Goodbye, Message,
};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tracing::debug;

use crate::ClientConfig;
use crate::connect::{ClusterConn, Link};

/// Why a reconnect attempt did not work.
pub(crate) enum Resume {
    /// The cluster said no: the session is over.
    Refused(DisconnectReason, String),
    /// The cluster could not be reached, or was busy: try again.
    Failed {
        /// What happened.
        message: String,
        /// Nothing listened at the address (connection refused).
        refused: bool,
    },
}

impl Resume {
    pub(crate) fn failed(e: impl std::fmt::Display) -> Self {
        Resume::Failed {
            message: e.to_string(),
            refused: false,
        }
    }
}

/// A new connection on which the cluster accepted the reconnect.
pub(crate) struct Attempt {
    pub(crate) frames: FrameReader<OwnedReadHalf>,
    pub(crate) wr: OwnedWriteHalf,
    pub(crate) session: sustenet_proto::StreamSession,
    /// How many of the client's `Data` messages the cluster had received.
    pub(crate) server_has: u64,
}

/// Refusals that only say "not now": the cluster is busy with handshakes
/// or briefly full, so the session may still be resumed a moment later.
fn refusal_is_final(reason: DisconnectReason) -> bool {
    !matches!(
        reason,
        DisconnectReason::TooManyHandshakes
            | DisconnectReason::HandshakeTimeout
            | DisconnectReason::ServerFull
    )
}

/// One reconnect attempt: a resume hello with a fresh nonce, and the
/// cluster's `Resumed`.
pub(crate) async fn attempt(
    addr: String,
    keys: ClientSessionKeys,
    session_id: u64,
    claim: ResumeClaim,
    config: ClientConfig,
) -> Result<Attempt, Resume> {
    let to = config.handshake_timeout;
    let stream = tokio::time::timeout(to, TcpStream::connect(&addr))
        .await
        .map_err(|_| Resume::failed(format!("connecting to {addr} timed out")))?
        .map_err(|e| Resume::Failed {
            refused: e.kind() == std::io::ErrorKind::ConnectionRefused,
            message: format!("{addr}: {e}"),
        })?;
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut frames = FrameReader::new(rd, config.max_frame);
    let mut nonce = [0u8; 32];
    rand::rng().fill_bytes(&mut nonce);
    let (hello, session) = handshake::client_resume_hello(&keys, session_id, &nonce, claim)
        .map_err(|e| Resume::Refused(e.reason(), e.to_string()))?;
    write_frame(&mut wr, &hello, config.max_frame)
        .await
        .map_err(Resume::failed)?;
    let first = frames
        .next_within(to)
        .await
        .map_err(Resume::failed)?
        .ok_or_else(|| Resume::failed("closed during the reconnect"))?;
    if let Some(refusal) = handshake::check_refusal(&first) {
        let reason = refusal.reason();
        return Err(if refusal_is_final(reason) {
            Resume::Refused(reason, refusal.to_string())
        } else {
            Resume::failed(refusal)
        });
    }
    let violation = |m: String| Resume::Refused(DisconnectReason::ProtocolViolation, m);
    let mut session = session;
    let plain = session
        .opener
        .open(&first)
        .map_err(|e| violation(e.to_string()))?;
    match ClusterToClient::decode(&plain) {
        Ok(ClusterToClient::Resumed { received }) => Ok(Attempt {
            frames,
            wr,
            session,
            server_has: received,
        }),
        Ok(other) => Err(violation(format!("expected Resumed, got {other:?}"))),
        Err(e) => Err(violation(e.to_string())),
    }
}

/// Sends again, on the accepted connection, every kept message the cluster
/// has not received, in order, and puts the connection in place.
pub(crate) async fn finish_resume(
    c: &mut ClusterConn,
    a: Attempt,
    config: &ClientConfig,
) -> Result<(), Resume> {
    let Attempt {
        frames,
        wr,
        session,
        server_has,
    } = a;
    let mut writer =
        SealedWriter::new(wr, session.sealer, config.max_frame).with_write_timeout(config.timeout);
    let refusal = match c.replay.rewind(server_has) {
        Rewind::Replay(kept) => {
            debug!(
                again = kept.len(),
                server_has,
                received = c.replay.received(),
                "resuming: sending the cluster's missed messages again"
            );
            for (command, payload) in kept {
                let m = ClientToCluster::Data {
                    command: *command,
                    payload: payload.clone(),
                };
                writer.queue(&m).map_err(Resume::failed)?;
            }
            None
        }
        Rewind::Lost {
            client_has,
            oldest_kept,
        } => Some((
            DisconnectReason::ResumeRefused,
            format!(
                "the cluster has {client_has} of our messages and the oldest one kept is \
                 number {oldest_kept}: the ones between are gone (resume_buffer)"
            ),
        )),
        Rewind::Impossible => Some((
            DisconnectReason::ProtocolViolation,
            format!("the cluster claims {server_has} messages, more than were sent"),
        )),
    };
    if let Some((reason, message)) = refusal {
        // The cluster already moved the player onto this connection: say
        // goodbye on it, so the seat is freed now rather than after its window.
        let _ = writer
            .send(&ClientToCluster::Disconnect(Goodbye {
                reason,
                message: message.clone(),
            }))
            .await;
        let _ = writer.shutdown().await;
        return Err(Resume::Refused(reason, message));
    }
    c.replay.ack(server_has);
    c.replay.mark_acked();
    writer.flush().await.map_err(Resume::failed)?;
    c.link = Some(Link {
        reader: SealedReader::new(frames, session.opener, 16),
        writer,
    });
    Ok(())
}
