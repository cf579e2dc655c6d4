//! A client's connection to the master: the Noise handshake, then one login
//! (one client id per connection), cluster lists and tickets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::handshake_gate::HandshakePermit;
use rand::RngCore;
use sustenet_net::{FrameReader, NetError, SealedReader, SealedWriter, write_frame};
use sustenet_proto::crypto::NOISE_MAX_PLAINTEXT;
use sustenet_proto::handshake;
use sustenet_proto::message::USER_DATA_MAX;
use sustenet_proto::{ClientToMaster, DisconnectReason, Goodbye, JoinTarget, MasterToClient};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tracing::{debug, info, warn};

use super::directory::Holder;
use super::{Shared, refuse};
use crate::time::now_ms;

type Reader = SealedReader<OwnedReadHalf>;
type Writer = SealedWriter<OwnedWriteHalf>;

/// Runs the Noise handshake, then the client's session.
pub(super) async fn accept(
    shared: &Arc<Shared>,
    frames: FrameReader<OwnedReadHalf>,
    mut wr: OwnedWriteHalf,
    noise: &[u8],
    peer: SocketAddr,
    permit: HandshakePermit,
) {
    let limits = shared.config.limits;
    let (session, reply) = match handshake::respond_client_master(&shared.keys.keypair, noise) {
        Ok(x) => x,
        Err(e) => {
            warn!("client refused: {e} (the client probably has the wrong master public key)");
            shared
                .config
                .metrics
                .handshake(Err(DisconnectReason::AuthFailed));
            refuse(
                &mut wr,
                DisconnectReason::AuthFailed,
                "handshake failed: check the master public key",
            )
            .await;
            return;
        }
    };
    let Ok(client_permit) = shared.clients.try_acquire() else {
        warn!("client refused: master is at max_connections");
        shared
            .config
            .metrics
            .handshake(Err(DisconnectReason::ServerFull));
        refuse(&mut wr, DisconnectReason::ServerFull, "the master is full").await;
        return;
    };
    if write_frame(&mut wr, &reply, limits.max_frame)
        .await
        .is_err()
    {
        return;
    }
    drop(permit);
    shared.config.metrics.handshake(Ok(()));
    let reader = SealedReader::new(frames, session.opener, limits.max_auth_failures);
    let writer = SealedWriter::new(
        wr,
        session.sealer,
        limits.max_frame.min(NOISE_MAX_PLAINTEXT),
    )
    .with_write_timeout(limits.timeout());
    let mut session = ClientSession::new(shared, peer, false);
    session.run(reader, writer).await;
    drop(client_permit);
}

/// One client connection's state.
pub(super) struct ClientSession<'a> {
    shared: &'a Shared,
    peer: SocketAddr,
    /// The one login of this connection.
    login: Option<Holder>,
    failed_logins: u32,
    /// A WebSocket client: it sees only the clusters that serve WebSocket
    /// players, with their WebSocket ports (`super::web_client`).
    web: bool,
}

impl<'a> ClientSession<'a> {
    pub(super) fn new(shared: &'a Shared, peer: SocketAddr, web: bool) -> Self {
        Self {
            shared,
            peer,
            login: None,
            failed_logins: 0,
            web,
        }
    }

    async fn run(&mut self, mut reader: Reader, mut writer: Writer) {
        let mut shutdown = self.shared.shutdown.clone();
        let limits = self.shared.config.limits;
        let mut heartbeat = tokio::time::interval(limits.heartbeat());
        let mut last_seen = Instant::now();
        let mut replies = Vec::new();
        let outcome: Result<DisconnectReason, NetError> = async {
            loop {
                tokio::select! {
                    msg = reader.recv::<ClientToMaster>() => {
                        let Some(msg) = msg? else { return Ok(DisconnectReason::ConnectionLost) };
                        last_seen = Instant::now();
                        let end = self.on_message(msg, &mut replies).await;
                        for reply in replies.drain(..) {
                            writer.send(&reply).await?;
                        }
                        if let Some(reason) = end {
                            return Ok(reason);
                        }
                    }
                    _ = heartbeat.tick() => {
                        if last_seen.elapsed() > limits.timeout() {
                            writer.send(&MasterToClient::Disconnect(Goodbye::new(DisconnectReason::Timeout))).await?;
                            return Ok(DisconnectReason::Timeout);
                        }
                        writer.send(&MasterToClient::Ping(now_ms())).await?;
                    }
                    _ = crate::time::stopped(&mut shutdown) => {
                        writer.send(&MasterToClient::Disconnect(Goodbye::new(DisconnectReason::ServerShutdown))).await?;
                        let _ = writer.shutdown().await;
                        return Ok(DisconnectReason::ServerShutdown);
                    }
                }
            }
        }
        .await;
        match outcome {
            Ok(reason) => debug!("client session ended: {reason}"),
            Err(e) => {
                let reason = e.reason();
                warn!("client dropped: {e}");
                let _ = writer
                    .send(&MasterToClient::Disconnect(Goodbye {
                        reason,
                        message: e.to_string(),
                    }))
                    .await;
            }
        }
    }

    /// One message: its answers go to `out`; `Some(reason)` ends the connection.
    pub(super) async fn on_message(
        &mut self,
        msg: ClientToMaster,
        out: &mut Vec<MasterToClient>,
    ) -> Option<DisconnectReason> {
        match msg {
            ClientToMaster::Ping(v) => out.push(MasterToClient::Pong(v)),
            ClientToMaster::Pong(_) => {}
            ClientToMaster::Disconnect(g) => return Some(g.reason),
            ClientToMaster::Login { username, secret } => {
                return self.on_login(username, &secret, out).await;
            }
            ClientToMaster::ListClusters => {
                let list = self.shared.directory().cluster_list(now_ms());
                let list = if self.web {
                    self.shared.web_clusters().view(list)
                } else {
                    list
                };
                out.push(MasterToClient::ClusterList(list));
            }
            ClientToMaster::Join(target) => out.push(self.on_join(target)),
        }
        None
    }

    async fn on_login(
        &mut self,
        username: String,
        secret: &[u8],
        out: &mut Vec<MasterToClient>,
    ) -> Option<DisconnectReason> {
        if let Some(login) = &self.login {
            // One client id per connection: a second login would hand out a
            // new id (and a new set of tickets) on the same connection.
            info!(
                username,
                client_id = login.client_id,
                "second login on one connection refused"
            );
            let message = format!(
                "already logged in on this connection as '{}': open a new connection to log in again",
                login.user
            );
            // Counted like a refused login, so a connection cannot send
            // logins (each costing the auth hook nothing, but a reply) forever.
            return self.refuse_login(message, out);
        }
        match self.shared.auth.check(&username, secret).await {
            Ok(data) if data.len() <= USER_DATA_MAX => {
                // Below 2^63, so engines with signed 64-bit integers see it positive.
                let client_id = loop {
                    let id = rand::rng().next_u64() >> 1;
                    if id != 0 {
                        break id;
                    }
                };
                info!(client_id, username, web = self.web, "login accepted");
                self.shared.config.metrics.login(true);
                self.login = Some(Holder {
                    client_id,
                    user: Arc::from(username.as_str()),
                    user_data: data,
                    source: crate::handshake_gate::address_key(self.peer.ip()),
                });
                out.push(MasterToClient::LoginOk { client_id });
            }
            Ok(_) => {
                warn!(username, "auth hook returned more than 16 KiB of user data");
                out.push(MasterToClient::LoginFailed {
                    message: "server error: user data too large".into(),
                });
            }
            Err(message) => {
                self.shared.config.metrics.login(false);
                info!(
                    username,
                    attempt = self.failed_logins + 1,
                    "login refused: {message}"
                );
                return self.refuse_login(message, out);
            }
        }
        None
    }

    /// Answers `LoginFailed` and counts a failed attempt; past
    /// `max_login_attempts` the connection is closed with `AuthFailed`.
    fn refuse_login(
        &mut self,
        message: String,
        out: &mut Vec<MasterToClient>,
    ) -> Option<DisconnectReason> {
        self.failed_logins += 1;
        out.push(MasterToClient::LoginFailed { message });
        if self.failed_logins >= self.shared.config.max_login_attempts {
            warn!(peer = %self.peer, "too many failed logins; closing");
            out.push(MasterToClient::Disconnect(Goodbye {
                reason: DisconnectReason::AuthFailed,
                message: "too many failed logins".into(),
            }));
            return Some(DisconnectReason::AuthFailed);
        }
        None
    }

    fn on_join(&self, target: JoinTarget) -> MasterToClient {
        let Some(login) = &self.login else {
            return MasterToClient::JoinFailed(Goodbye {
                reason: DisconnectReason::AuthFailed,
                message: "log in first".into(),
            });
        };
        let target = if self.web {
            let list = self.shared.directory().cluster_list(now_ms());
            match self.shared.web_clusters().web_target(&list, target) {
                Ok(t) => t,
                Err(g) => return MasterToClient::JoinFailed(g),
            }
        } else {
            target
        };
        let ticket = self
            .shared
            .directory()
            .handle_join(now_ms(), login, target, &mut rand::rng());
        let ticket = if self.web {
            ticket.map(|t| self.shared.web_clusters().web_ticket(t))
        } else {
            ticket
        };
        match ticket {
            Ok(t) => {
                info!(
                    client_id = login.client_id,
                    cluster_id = t.cluster.id,
                    "ticket issued"
                );
                self.shared.config.metrics.ticket_issued(false);
                MasterToClient::Ticket(t)
            }
            Err(g) => {
                info!(
                    client_id = login.client_id,
                    "join refused: {} {}", g.reason, g.message
                );
                MasterToClient::JoinFailed(g)
            }
        }
    }
}
