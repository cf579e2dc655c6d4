//! The task's master side: connecting, logging in, the cluster list (and
//! joining the best cluster from it), tickets.

use sustenet_net::NetError;
use sustenet_proto::{ClientToMaster, ClusterInfo, DisconnectReason, JoinTarget, MasterToClient};
use tracing::{debug, info};

use super::{Task, reason_of};
use crate::choice::{measure_pings, pick_best};
use crate::connect::connect_master;
use crate::{ClientError, ClientEvent};

impl Task {
    pub(super) async fn connect_master(&mut self) -> Result<(), ClientError> {
        if self.master.is_some() {
            return Ok(());
        }
        self.master = Some(connect_master(&self.config).await?);
        self.emit(ClientEvent::MasterConnected).await;
        Ok(())
    }

    pub(super) async fn send_master(&mut self, m: ClientToMaster) -> Result<(), ClientError> {
        let Some(conn) = self.master.as_mut() else {
            return Err(ClientError::Connection(
                "not connected to the master".into(),
            ));
        };
        if let Err(e) = conn.writer.send(&m).await {
            self.master = None;
            return Err(ClientError::Connection(format!("lost the master: {e}")));
        }
        Ok(())
    }

    /// Connects and logs in again with the kept credentials if the master
    /// link was closed (after a join, the master link is not kept).
    pub(super) async fn ensure_master(&mut self) -> Result<(), ClientError> {
        if self.master.is_some() {
            return Ok(());
        }
        self.connect_master().await?;
        if let Some((u, s)) = self.credentials.clone() {
            self.client_id = None;
            self.send_master(ClientToMaster::Login {
                username: u,
                secret: s,
            })
            .await?;
        }
        Ok(())
    }

    /// Logs in, connecting first; the credentials are kept for later.
    pub(super) async fn login(
        &mut self,
        username: String,
        secret: Vec<u8>,
    ) -> Result<(), ClientError> {
        self.credentials = Some((username.clone(), secret.clone()));
        self.connect_master().await?;
        self.send_master(ClientToMaster::Login { username, secret })
            .await
    }

    /// Asks for the cluster list, to join the best cluster once it is here.
    pub(super) async fn join_best(&mut self) -> Result<(), ClientError> {
        if self.credentials.is_none() {
            return Err(ClientError::NotLoggedIn);
        }
        self.ensure_master().await?;
        self.pending_best = true;
        self.send_master(ClientToMaster::ListClusters).await
    }

    /// Asks the master for a ticket to `target`.
    pub(super) async fn join(&mut self, target: JoinTarget) -> Result<(), ClientError> {
        if self.credentials.is_none() {
            return Err(ClientError::NotLoggedIn);
        }
        self.ensure_master().await?;
        self.pending_join = Some(target);
        self.send_master(ClientToMaster::Join(target)).await
    }

    pub(super) async fn master_message(&mut self, r: Result<Option<MasterToClient>, NetError>) {
        let msg = match r {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.drop_master(
                    DisconnectReason::ConnectionLost,
                    "the master closed the connection".into(),
                )
                .await;
                return;
            }
            Err(e) => {
                self.drop_master(reason_of(&e), e.to_string()).await;
                return;
            }
        };
        if let Some(m) = self.master.as_mut() {
            m.last_seen = std::time::Instant::now();
        }
        match msg {
            MasterToClient::Ping(v) => {
                let _ = self.send_master(ClientToMaster::Pong(v)).await;
            }
            MasterToClient::Pong(_) => {}
            MasterToClient::Disconnect(g) => self.drop_master(g.reason, g.message).await,
            MasterToClient::LoginOk { client_id } => {
                self.client_id = Some(client_id);
                self.emit(ClientEvent::LoginSucceeded { client_id }).await;
            }
            MasterToClient::LoginFailed { message } => {
                self.credentials = None;
                self.emit(ClientEvent::LoginFailed { message }).await;
            }
            MasterToClient::ClusterList(list) => self.cluster_list(list).await,
            MasterToClient::Ticket(t) => {
                self.pending_join = None;
                if self.cluster.is_some() {
                    self.leave_cluster(DisconnectReason::Requested, "joining another cluster")
                        .await;
                }
                self.join_with(t, None).await;
            }
            MasterToClient::JoinFailed(g) => {
                self.pending_join = None;
                self.emit(ClientEvent::JoinFailed {
                    reason: g.reason,
                    message: g.message,
                })
                .await;
            }
        }
    }

    /// The cluster list: reported, pinged, and the best one joined when
    /// `join_best` asked for it.
    async fn cluster_list(&mut self, list: Vec<ClusterInfo>) {
        self.emit(ClientEvent::Clusters(list.clone())).await;
        let pings = if self.config.ping_timeout.is_zero() {
            Vec::new()
        } else {
            measure_pings(&list, self.config.ping_timeout).await
        };
        if !pings.is_empty() {
            self.emit(ClientEvent::ClusterPings(pings.clone())).await;
        }
        if !std::mem::take(&mut self.pending_best) {
            return;
        }
        let Some(id) = pick_best(&list, &pings) else {
            let (reason, message) = if list.is_empty() {
                (DisconnectReason::NoCluster, "no cluster is registered")
            } else {
                (DisconnectReason::ServerFull, "every cluster is full")
            };
            self.emit(ClientEvent::JoinFailed {
                reason,
                message: message.into(),
            })
            .await;
            return;
        };
        if let Err(e) = self
            .send_master(ClientToMaster::Join(JoinTarget::Id(id)))
            .await
        {
            self.emit(ClientEvent::Error(e)).await;
        }
    }

    /// The master link ended. It is only news to the game while the client
    /// still needs the master (not yet in a cluster).
    pub(super) async fn drop_master(&mut self, reason: DisconnectReason, message: String) {
        if self.master.take().is_none() {
            return;
        }
        self.client_id = None;
        if self.cluster.is_none() {
            info!("master connection ended: {reason} {message}");
            self.emit(ClientEvent::MasterDisconnected { reason, message })
                .await;
        } else {
            debug!("master connection ended while in a cluster: {reason} {message}");
        }
    }
}
