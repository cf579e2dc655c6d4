//! The task's cluster side: joining with a ticket, sending on both
//! channels, the cluster's messages and datagrams, leaving.

use std::time::Instant;

use sustenet_net::{NetError, SealedWriter};
use sustenet_proto::datagram::{self, MAX_DATAGRAM, Record};
use sustenet_proto::{
    ClientToCluster, ClientToMaster, ClusterToClient, DisconnectReason, Goodbye, Ticket,
};
use tracing::{debug, info, warn};

use super::{Task, reason_of};
use crate::connect::connect_cluster;
use crate::{ClientError, ClientEvent};

/// Longest a join waits for the cluster's address challenge before the game
/// hears `Joined` anyway (UDP blocked: the reliable channel still works).
const PATH_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// How often the join pings while it waits (a lost ping or challenge).
const PATH_PING_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

impl Task {
    /// Sends a reliable message, or keeps it for after the reconnect.
    pub(super) async fn send_reliable(
        &mut self,
        command: u16,
        payload: Vec<u8>,
    ) -> Result<(), ClientError> {
        let Some(c) = self.cluster.as_mut() else {
            return Err(ClientError::NotInCluster);
        };
        let resumable = !self.config.reconnect_window.is_zero();
        let Some(link) = c.link.as_mut() else {
            c.replay.push(command, payload, false);
            if c.replay.over_budget() {
                // Refusing this one message would leave a hole in the
                // reliable stream; the session ends instead, as on the
                // cluster's side.
                let message = format!(
                    "more than {} bytes were sent while reconnecting (resume_buffer)",
                    self.config.resume_buffer
                );
                self.lose_cluster_for_good(DisconnectReason::SendQueueFull, message)
                    .await;
            }
            return Ok(());
        };
        let msg = ClientToCluster::Data { command, payload };
        let r = link.writer.send(&msg).await;
        if resumable {
            // Kept whether or not the write went through: after a drop, the
            // cluster's count says which to send again.
            if let ClientToCluster::Data { command, payload } = msg {
                c.replay.push(command, payload, r.is_ok());
            }
        }
        if let Err(e) = r {
            self.lose_cluster(reason_of(&e), e.to_string()).await;
        }
        Ok(())
    }

    pub(super) fn send_datagram(&mut self, record: &Record) -> Result<(), ClientError> {
        let Some(c) = self.cluster.as_mut() else {
            return Err(ClientError::NotInCluster);
        };
        let plain = datagram::single(record).map_err(|e| match e {
            datagram::DatagramError::TooLarge { len, max } => ClientError::TooLarge { len, max },
        })?;
        let d = c
            .udp_sealer
            .seal(&plain)
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        // Unreliable: a full socket buffer drops it, as the network would.
        let _ = c.udp.try_send(&d);
        Ok(())
    }

    /// Joins the ticket's cluster (`redirected`: when the cluster that sent
    /// us here said so).
    pub(super) async fn join_with(&mut self, t: Ticket, redirected: Option<Instant>) {
        let player_id = t.client_id;
        match connect_cluster(&self.config, t).await {
            Ok(conn) => {
                let info = conn.info.clone();
                self.cluster = Some(conn);
                self.client_id = Some(player_id);
                self.prove_udp_path().await;
                if let Some(mut m) = self.master.take() {
                    // The master is not needed while playing; a later
                    // list or join reconnects with the kept credentials.
                    let _ = m
                        .writer
                        .send(&ClientToMaster::Disconnect(Goodbye {
                            reason: DisconnectReason::Requested,
                            message: "joined a cluster".into(),
                        }))
                        .await;
                }
                if let Some(started) = redirected {
                    self.emit(ClientEvent::Redirected {
                        cluster: info.clone(),
                        pause: started.elapsed(),
                    })
                    .await;
                }
                self.emit(ClientEvent::Joined {
                    cluster: info,
                    player_id,
                })
                .await;
            }
            Err((reason, message)) => {
                warn!("join failed: {reason} {message}");
                self.emit(ClientEvent::JoinFailed { reason, message }).await;
            }
        }
    }

    pub(super) async fn cluster_message(&mut self, r: Result<Option<ClusterToClient>, NetError>) {
        let msg = match r {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.lose_cluster(
                    DisconnectReason::ConnectionLost,
                    "the cluster closed the connection".into(),
                )
                .await;
                return;
            }
            Err(e) => {
                self.lose_cluster(reason_of(&e), e.to_string()).await;
                return;
            }
        };
        let now = self.micros();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(link) = c.link.as_mut() else {
            return;
        };
        c.last_seen = Instant::now();
        match msg {
            ClusterToClient::Ping(v) => {
                if let Err(e) = link.writer.send(&ClientToCluster::Pong(v)).await {
                    self.lose_cluster(reason_of(&e), e.to_string()).await;
                }
            }
            ClusterToClient::Ack(count) => c.replay.ack(count),
            ClusterToClient::Resumed { .. } => {
                self.lose_cluster_for_good(
                    DisconnectReason::ProtocolViolation,
                    "Resumed on a running connection".into(),
                )
                .await;
            }
            ClusterToClient::Pong(v) => {
                self.rtt.set_reliable(now.saturating_sub(v));
            }
            ClusterToClient::Data { command, payload } => {
                let ack = c.replay.on_received(payload.len());
                self.emit(ClientEvent::Packet {
                    command,
                    payload,
                    reliable: true,
                })
                .await;
                if ack {
                    self.send_ack().await;
                }
            }
            ClusterToClient::Welcome { .. } => {
                self.lose_cluster_for_good(
                    DisconnectReason::ProtocolViolation,
                    "a second Welcome".into(),
                )
                .await;
            }
            ClusterToClient::Disconnect(g) => {
                // The cluster ended the session on purpose: no reconnect.
                self.cluster = None;
                info!(
                    "the cluster closed the connection: {} {}",
                    g.reason, g.message
                );
                self.emit(ClientEvent::Disconnected {
                    reason: g.reason,
                    message: g.message,
                })
                .await;
            }
            ClusterToClient::Redirect(t) => self.redirect(t).await,
        }
    }

    /// The cluster moved this player to another cluster.
    async fn redirect(&mut self, t: Ticket) {
        let started = Instant::now();
        if let Some(link) = self.cluster.take().and_then(|c| c.link) {
            // Everything sent before this point went to the old
            // cluster; say goodbye so it lets the player go now.
            let mut writer = link.writer;
            let _ = writer
                .send(&ClientToCluster::Disconnect(Goodbye::new(
                    DisconnectReason::Redirected,
                )))
                .await;
            let _ = writer.shutdown().await;
        }
        info!(to = %t.cluster.name, "redirected to another cluster");
        self.join_with(t, Some(started)).await;
    }

    /// Tells the cluster this player's UDP address and answers its address
    /// challenge before the game hears `Joined`: the cluster sends datagrams
    /// only to an address that proved it receives them (protocol §10.4), so
    /// without this the game's first unreliable messages both ways would be
    /// dropped. Pings again every [`PATH_PING_EVERY`]; gives up after
    /// [`PATH_WAIT`] (UDP blocked): the player then joins with its reliable
    /// channel only, and the heartbeat's pings keep trying.
    async fn prove_udp_path(&mut self) {
        let deadline = tokio::time::Instant::now() + PATH_WAIT;
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            let _ = self.send_datagram(&Record::Ping(self.micros()));
            let next = (tokio::time::Instant::now() + PATH_PING_EVERY).min(deadline);
            loop {
                let Some(c) = self.cluster.as_ref() else {
                    return;
                };
                match tokio::time::timeout_at(next, c.udp.recv(&mut buf)).await {
                    Ok(Ok(n)) => {
                        if self.datagram(&buf[..n]) {
                            return;
                        }
                    }
                    Ok(Err(e)) => {
                        debug!("udp receive failed: {e}");
                        return;
                    }
                    Err(_) => break,
                }
            }
            if tokio::time::Instant::now() >= deadline {
                debug!("the cluster sent no address challenge; joining without a proven UDP path");
                return;
            }
        }
    }

    /// A datagram from the cluster: its records become events. Returns
    /// whether it carried an address challenge (answered at once).
    pub(super) fn datagram(&mut self, d: &[u8]) -> bool {
        if d.len() > MAX_DATAGRAM {
            return false;
        }
        let now = self.micros();
        let Some(c) = self.cluster.as_mut() else {
            return false;
        };
        let Ok(plain) = c.udp_opener.open(d) else {
            return false;
        };
        let Ok(records) = datagram::decode_records(&plain) else {
            return false;
        };
        let mut challenge = None;
        for r in records {
            match r {
                Record::Data { command, payload } => {
                    // Unreliable: when the game is behind, drop rather than wait.
                    let _ = self.events.try_send(ClientEvent::Packet {
                        command,
                        payload,
                        reliable: false,
                    });
                }
                Record::Pong(v) => self.rtt.set_unreliable(now.saturating_sub(v)),
                // The cluster checks that this address receives its
                // datagrams before it sends it anything more (protocol
                // §10.4): echo the value, from this same socket.
                Record::PathChallenge(v) => challenge = Some(v),
                Record::Ping(_) | Record::PathResponse(_) => {}
            }
        }
        if let Some(v) = challenge {
            let _ = self.send_datagram(&Record::PathResponse(v));
        }
        challenge.is_some()
    }

    /// Tells the cluster how many of its messages arrived, so it can forget them.
    pub(super) async fn send_ack(&mut self) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(link) = c.link.as_mut() else {
            return;
        };
        let count = c.replay.received();
        match link.writer.send(&ClientToCluster::Ack(count)).await {
            Ok(()) => {
                c.replay.mark_acked();
            }
            Err(e) => self.lose_cluster(reason_of(&e), e.to_string()).await,
        }
    }

    pub(super) async fn lose_cluster_for_good(
        &mut self,
        reason: DisconnectReason,
        message: String,
    ) {
        if let Some(c) = self.cluster.take() {
            if let Some(mut link) = c.link {
                let _ = link
                    .writer
                    .send(&ClientToCluster::Disconnect(Goodbye {
                        reason,
                        message: message.clone(),
                    }))
                    .await;
                let _ = link.writer.shutdown().await;
            }
            info!("lost the cluster: {reason} {message}");
            self.emit(ClientEvent::Disconnected { reason, message })
                .await;
        }
    }

    pub(super) async fn leave_cluster(&mut self, reason: DisconnectReason, message: &str) {
        if let Some(mut c) = self.cluster.take() {
            let goodbye = Goodbye {
                reason,
                message: message.into(),
            };
            if let Some(mut link) = c.link.take() {
                let _ = link
                    .writer
                    .send(&ClientToCluster::Disconnect(goodbye))
                    .await;
                let _ = link.writer.shutdown().await;
            } else if c.away.is_some() {
                // Leaving while reconnecting: one short reconnect, in the
                // background, only to say goodbye, so the cluster frees the
                // seat now instead of at the end of its window.
                let job = c.next_attempt(&self.config);
                let (limit, max_frame) = (self.config.handshake_timeout, self.config.max_frame);
                tokio::spawn(async move {
                    if let Ok(Ok(a)) = tokio::time::timeout(limit, job).await {
                        let mut w = SealedWriter::new(a.wr, a.session.sealer, max_frame)
                            .with_write_timeout(limit);
                        let _ = w.send(&ClientToCluster::Disconnect(goodbye)).await;
                        let _ = w.shutdown().await;
                    }
                });
            }
            self.emit(ClientEvent::Disconnected {
                reason,
                message: message.into(),
            })
            .await;
        }
    }
}
