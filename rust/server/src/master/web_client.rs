//! Web clients of the master: the same login, lists and tickets as on TCP
//! ([`super::client::ClientSession`]), over a WebSocket whose TLS stands in
//! for the Noise handshake (docs/protocol.md §17), and the clusters that
//! serve WebSocket players.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sustenet_proto::web::{Channel, WebHello, reliable_frame};
use sustenet_proto::{
    ClientToMaster, ClusterInfo, DisconnectReason, Goodbye, JoinTarget, MasterToClient, Message,
    Ticket,
};
use tokio::net::TcpListener;
use tracing::{Instrument, debug, info, info_span, warn};

use super::Shared;
use super::client::ClientSession;
use crate::time::now_ms;
use crate::web::{self, WebError, WebRx, WebTx};

/// Where a cluster takes WebSocket players, as it told the master.
#[derive(Debug, Clone, Copy)]
struct WebEndpoint {
    conn: u64,
    port: u16,
    tls: bool,
}

/// The clusters that serve WebSocket players, by cluster id.
#[derive(Debug, Default)]
pub(crate) struct WebClusters {
    map: Mutex<HashMap<u64, WebEndpoint>>,
}

impl WebClusters {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, WebEndpoint>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cluster's link `conn` says it serves WebSocket players on `port`.
    pub(crate) fn set(&self, cluster_id: u64, conn: u64, port: u16, tls: bool) {
        self.map()
            .insert(cluster_id, WebEndpoint { conn, port, tls });
    }

    /// The cluster's link `conn` ended (a newer link's entry stays).
    pub(crate) fn remove(&self, cluster_id: u64, conn: u64) {
        let mut m = self.map();
        if m.get(&cluster_id).is_some_and(|e| e.conn == conn) {
            m.remove(&cluster_id);
        }
    }

    fn web_info(e: &WebEndpoint, mut info: ClusterInfo) -> ClusterInfo {
        info.tcp_port = e.port;
        info.udp_port = u16::from(e.tls);
        info
    }

    /// The list a web client sees: only clusters that serve WebSocket
    /// players, `tcp_port` their WebSocket port, `udp_port` 1 for `wss://`
    /// and 0 for `ws://`.
    pub(crate) fn view(&self, list: Vec<ClusterInfo>) -> Vec<ClusterInfo> {
        let m = self.map();
        list.into_iter()
            .filter_map(|c| m.get(&c.id).map(|e| Self::web_info(e, c)))
            .collect()
    }

    /// A web client's join target: `Auto` picks the least loaded open
    /// cluster that serves WebSocket players (`list` is sorted by load);
    /// an id must name one.
    pub(crate) fn web_target(
        &self,
        list: &[ClusterInfo],
        target: JoinTarget,
    ) -> Result<JoinTarget, Goodbye> {
        let m = self.map();
        match target {
            JoinTarget::Id(id) if m.contains_key(&id) => Ok(target),
            JoinTarget::Id(id) => Err(Goodbye {
                reason: DisconnectReason::NoCluster,
                message: format!("cluster {id} does not serve WebSocket players"),
            }),
            JoinTarget::Auto => {
                let web: Vec<&ClusterInfo> =
                    list.iter().filter(|c| m.contains_key(&c.id)).collect();
                match web.iter().find(|c| !c.locked) {
                    Some(c) => Ok(JoinTarget::Id(c.id)),
                    None if web.is_empty() => Err(Goodbye {
                        reason: DisconnectReason::NoCluster,
                        message: "no cluster serves WebSocket players".into(),
                    }),
                    None => Err(Goodbye {
                        reason: DisconnectReason::ServerFull,
                        message: "every cluster that serves WebSocket players is full".into(),
                    }),
                }
            }
        }
    }

    /// A ticket as a web client gets it: the cluster's WebSocket port.
    pub(crate) fn web_ticket(&self, mut t: Ticket) -> Ticket {
        if let Some(e) = self.map().get(&t.cluster.id) {
            t.cluster = Self::web_info(e, t.cluster);
        }
        t
    }
}

/// Accepts web clients until the master stops.
pub(super) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let shutdown = shared.shutdown.clone();
    crate::listen::serve_each(&listener, shutdown, |stream, peer, id| {
        shared.config.metrics.connection();
        let span = info_span!("web_client", id, %peer);
        web_client(shared.clone(), stream, peer).instrument(span)
    })
    .await;
}

async fn web_client(shared: Arc<Shared>, tcp: tokio::net::TcpStream, peer: SocketAddr) {
    let limits = shared.config.limits;
    let Some(ws_config) = shared.config.websocket.as_ref() else {
        return;
    };
    let metrics = &shared.config.metrics;
    let refused = |r: DisconnectReason| metrics.handshake(Err(r));
    let greeted = web::accept_hello(tcp, peer, ws_config, &shared.handshakes, &limits, &refused);
    let Some(web::Greeted {
        mut tx,
        mut rx,
        hello,
        permit,
    }) = greeted.await
    else {
        return;
    };
    let (reason, why) = match WebHello::parse(&hello) {
        Ok(WebHello::Master) => match shared.clients.try_acquire() {
            Ok(client_permit) => {
                drop(permit);
                metrics.handshake(Ok(()));
                let reason = run(&shared, peer, &mut tx, &mut rx).await;
                debug!("web client session ended: {reason}");
                tx.close(web::close_code(reason), &reason.to_string()).await;
                rx.linger().await;
                drop(client_permit);
                return;
            }
            Err(_) => {
                warn!("web client refused: master is at max_connections");
                (
                    DisconnectReason::ServerFull,
                    "the master is full".to_string(),
                )
            }
        },
        Ok(_) => {
            warn!("refused: a cluster hello sent to the master");
            let why = crate::listen::CLUSTER_HELLO_AT_MASTER;
            (DisconnectReason::ProtocolViolation, why.to_string())
        }
        Err(e) => {
            warn!("refused: {e}");
            (e.reason(), e.to_string())
        }
    };
    refused(reason);
    tx.refuse(reason, &why).await;
    drop(permit);
    rx.linger().await;
}

/// Sends `m` as a reliable web frame.
async fn send(tx: &mut WebTx, m: &MasterToClient) -> Result<(), WebError> {
    let frame = reliable_frame(m).map_err(|e| WebError::Socket(e.to_string()))?;
    tx.send(frame).await
}

/// The web client's session: the same messages as on TCP.
async fn run(
    shared: &Shared,
    peer: SocketAddr,
    tx: &mut WebTx,
    rx: &mut WebRx,
) -> DisconnectReason {
    let limits = shared.config.limits;
    let mut session = ClientSession::new(shared, peer, true);
    let mut shutdown = shared.shutdown.clone();
    let mut heartbeat = tokio::time::interval(limits.heartbeat());
    let mut last_seen = Instant::now();
    let mut replies = Vec::new();
    let outcome: Result<DisconnectReason, (DisconnectReason, String)> = async {
        loop {
            tokio::select! {
                f = rx.recv() => {
                    let f = f.map_err(|e| (e.reason(), e.to_string()))?;
                    let Some(f) = f else { return Ok(DisconnectReason::ConnectionLost) };
                    last_seen = Instant::now();
                    let msg = match Channel::split(&f) {
                        Ok(Channel::Reliable(m)) => ClientToMaster::decode(m)
                            .map_err(|e| (DisconnectReason::ProtocolViolation, e.to_string()))?,
                        Ok(Channel::Unreliable(_)) => return Err((DisconnectReason::ProtocolViolation, "unreliable records sent to the master".into())),
                        Err(e) => return Err((DisconnectReason::ProtocolViolation, e.to_string())),
                    };
                    let end = session.on_message(msg, &mut replies).await;
                    for r in replies.drain(..) {
                        send(tx, &r).await.map_err(|e| (e.reason(), e.to_string()))?;
                    }
                    if let Some(reason) = end {
                        return Ok(reason);
                    }
                }
                _ = heartbeat.tick() => {
                    if last_seen.elapsed() > limits.timeout() {
                        let _ = send(tx, &MasterToClient::Disconnect(Goodbye::new(DisconnectReason::Timeout))).await;
                        return Ok(DisconnectReason::Timeout);
                    }
                    send(tx, &MasterToClient::Ping(now_ms())).await.map_err(|e| (e.reason(), e.to_string()))?;
                }
                _ = crate::time::stopped(&mut shutdown) => {
                    let _ = send(tx, &MasterToClient::Disconnect(Goodbye::new(DisconnectReason::ServerShutdown))).await;
                    return Ok(DisconnectReason::ServerShutdown);
                }
            }
        }
    }
    .await;
    match outcome {
        Ok(r) => r,
        Err((reason, message)) => {
            info!("web client dropped: {message}");
            let _ = send(tx, &MasterToClient::Disconnect(Goodbye { reason, message })).await;
            reason
        }
    }
}
