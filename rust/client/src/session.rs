//! The protocol's steps one at a time, for tools that drive many sessions
//! themselves instead of one [`Client`](crate::Client) task per player:
//! `sustenet bench`'s light generator shares one UDP socket and one task
//! between hundreds of simulated players. A game uses [`Client`](crate::Client).
//!
//! [`ticket`] logs in at the master and asks for a join; [`open_cluster`]
//! opens the cluster session with that ticket. The [`ClusterSession`] holds
//! the sealed TCP link and the datagram keys; the caller sends and receives
//! the datagrams (`session_id` in each header says which session one is
//! for, so sessions may share a UDP socket), answers `Ping` with `Pong` on
//! the link, acknowledges reliable messages and says goodbye.

use std::net::SocketAddr;

use sustenet_net::{SealedReader, SealedWriter};
use sustenet_proto::crypto::DatagramSession;
use sustenet_proto::{
    ClientToMaster, ClusterInfo, DisconnectReason, Goodbye, JoinTarget, MasterToClient, Ticket,
};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::connect::{connect_master, open_link};
use crate::{ClientConfig, ClientError};

/// An open cluster session, driven by its caller.
#[derive(Debug)]
pub struct ClusterSession {
    /// The cluster.
    pub cluster: ClusterInfo,
    /// The player id on it.
    pub player_id: u64,
    /// The session id every datagram of the session carries.
    pub session_id: u64,
    /// Where the cluster receives datagrams.
    pub udp_addr: SocketAddr,
    /// The sealed TCP link: reading.
    pub reader: SealedReader<OwnedReadHalf>,
    /// The sealed TCP link: writing.
    pub writer: SealedWriter<OwnedWriteHalf>,
    /// Seals the datagrams the client sends and opens the cluster's.
    pub datagrams: DatagramSession,
}

/// Logs in at the master as `username` and asks to join `target`; returns
/// the ticket, after saying goodbye to the master. A refused login or join
/// is [`ClientError::Refused`] with the master's reason.
pub async fn ticket(
    config: &ClientConfig,
    username: &str,
    secret: &[u8],
    target: JoinTarget,
) -> Result<Ticket, ClientError> {
    let mut m = connect_master(config).await?;
    let lost = |e: sustenet_net::NetError| ClientError::Connection(format!("master: {e}"));
    m.writer
        .send(&ClientToMaster::Login {
            username: username.to_owned(),
            secret: secret.to_vec(),
        })
        .await
        .map_err(lost)?;
    let deadline = tokio::time::Instant::now() + config.handshake_timeout;
    let ticket = loop {
        let msg = tokio::time::timeout_at(deadline, m.reader.recv())
            .await
            .map_err(|_| ClientError::Connection("no answer from the master in time".into()))?
            .map_err(lost)?
            .ok_or_else(|| ClientError::Connection("the master closed the connection".into()))?;
        match msg {
            MasterToClient::Ping(v) => {
                m.writer
                    .send(&ClientToMaster::Pong(v))
                    .await
                    .map_err(lost)?;
            }
            MasterToClient::LoginOk { .. } => {
                m.writer
                    .send(&ClientToMaster::Join(target))
                    .await
                    .map_err(lost)?;
            }
            MasterToClient::LoginFailed { message } => {
                return Err(ClientError::Refused {
                    reason: DisconnectReason::AuthFailed,
                    message,
                });
            }
            MasterToClient::Ticket(t) => break t,
            MasterToClient::JoinFailed(g) | MasterToClient::Disconnect(g) => {
                return Err(ClientError::Refused {
                    reason: g.reason,
                    message: g.message,
                });
            }
            MasterToClient::Pong(_) | MasterToClient::ClusterList(_) => {}
        }
    };
    let _ = m
        .writer
        .send(&ClientToMaster::Disconnect(Goodbye {
            reason: DisconnectReason::Requested,
            message: "joined a cluster".into(),
        }))
        .await;
    let _ = m.writer.shutdown().await;
    Ok(ticket)
}

/// Opens the ticket's cluster session: the token handshake and the
/// `Welcome`. The caller's first datagram tells the cluster its UDP address.
pub async fn open_cluster(
    config: &ClientConfig,
    ticket: Ticket,
) -> Result<ClusterSession, ClientError> {
    let player_id = ticket.client_id;
    let link = open_link(config, ticket)
        .await
        .map_err(|(reason, message)| ClientError::Refused { reason, message })?;
    Ok(ClusterSession {
        cluster: link.info,
        player_id,
        session_id: link.session_id,
        udp_addr: link.udp_addr,
        reader: link.reader,
        writer: link.writer,
        datagrams: link.datagrams,
    })
}
