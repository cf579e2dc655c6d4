//! The link to the master: registration (again after every loss, with the
//! whole player list), player events, status reports, transfers.

use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::Ordering;
use sustenet_net::{FrameReader, NetError, SealedReader, SealedWriter, write_frame};
use sustenet_proto::handshake::{self, ClusterInitiator};
use sustenet_proto::{
    ClusterToMaster, DisconnectReason, Goodbye, MasterToCluster, Message, Register, Status,
};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::core::LinkEvent;
use super::queue::QueueRx;
use super::{CoreEvent, MasterLinkStatus, Shared};
use crate::time::now_ms;

/// The master link's end of the core's link events.
type LinkRx = QueueRx<LinkEvent>;

pub(crate) async fn master_link(shared: Arc<Shared>, mut link_rx: LinkRx) {
    let mut backoff = Duration::from_millis(250);
    let mut shutdown = shared.shutdown.clone();
    loop {
        let result = master_session(&shared, &mut link_rx, &mut backoff).await;
        if *shutdown.borrow() {
            return;
        }
        let message = match result {
            Ok(()) => "the master closed the link".to_owned(),
            Err(e) => e,
        };
        let _ = shared
            .events
            .try_send(CoreEvent::Master(MasterLinkStatus::Lost {
                message: message.clone(),
            }));
        info!("retrying the master in {backoff:?}");
        let wait = tokio::time::sleep(backoff);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                _ = crate::time::stopped(&mut shutdown) => return,
                // While away from the master, player events are dropped:
                // registration resends the whole player list.
                Some(_) = link_rx.recv() => {}
            }
        }
        backoff = (backoff * 2).min(shared.config.reconnect_max);
    }
}

fn link_message(ev: LinkEvent) -> ClusterToMaster {
    match ev {
        LinkEvent::Joined(client_id) => ClusterToMaster::PlayerJoined { client_id },
        LinkEvent::Left(client_id) => ClusterToMaster::PlayerLeft { client_id },
        LinkEvent::Transfer {
            request_id,
            player,
            target,
            state,
        } => ClusterToMaster::Transfer {
            request_id,
            client_id: player,
            target,
            user_data: state,
        },
        LinkEvent::SpawnInstance {
            request_id,
            template,
            params,
            stop_when_empty_sec,
        } => ClusterToMaster::SpawnInstance {
            request_id,
            template,
            params,
            stop_when_empty_sec,
        },
    }
}

/// Connects to the master, does the handshake and registers; returns the
/// link's reader, writer and opener once the master said `Registered` (the
/// core is told).
async fn register(shared: &Shared) -> Result<Registered, String> {
    let limits = shared.config.limits;
    let addr = &shared.config.master_addr;
    let stream = tokio::time::timeout(limits.handshake_timeout(), TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to the master at {addr} timed out"))?
        .map_err(|e| format!("cannot reach the master at {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut frames = FrameReader::new(rd, limits.max_frame);
    let (init, hello) = ClusterInitiator::start(
        &shared.config.key_name,
        shared.key.clone(),
        &mut rand::rng(),
    )
    .map_err(|e| e.to_string())?;
    write_frame(&mut wr, &hello, limits.max_frame)
        .await
        .map_err(|e| e.to_string())?;
    let challenge = frames
        .next_within(limits.handshake_timeout())
        .await
        .map_err(|e| format!("master handshake: {e}"))?
        .ok_or("the master closed the connection during the handshake")?;
    let session = init
        .handle_challenge(&challenge)
        .map_err(|e| format!("master handshake: {e}"))?;
    let mut writer = SealedWriter::new(wr, session.sealer, limits.max_frame)
        .with_write_timeout(limits.timeout());
    writer
        .send(&ClusterToMaster::Register(Register {
            cluster_id: shared.cluster_id,
            name: shared.config.name.clone(),
            address: shared.config.public_address.clone(),
            tcp_port: shared.tcp_port,
            udp_port: shared.udp_port,
            capacity: shared.config.connection_limit(),
        }))
        .await
        .map_err(|e| e.to_string())?;
    let answer = frames
        .next_within(limits.handshake_timeout())
        .await
        .map_err(|e| format!("master registration: {e}"))?
        .ok_or("the master closed the connection during registration")?;
    if let Some(refusal) = handshake::check_refusal(&answer) {
        let hint = if refusal.reason() == DisconnectReason::AuthFailed {
            format!(
                " (is key '{}' the same file on the master?)",
                shared.config.key_name
            )
        } else {
            String::new()
        };
        warn!("the master refused this cluster: {refusal}{hint}");
        return Err(format!("the master refused this cluster: {refusal}{hint}"));
    }
    let mut opener = session.opener;
    let plain = opener
        .open(&answer)
        .map_err(|e| format!("master registration: {e}"))?;
    match MasterToCluster::decode(&plain) {
        Ok(MasterToCluster::Registered { cluster_id }) => {
            let _ = shared
                .events
                .try_send(CoreEvent::Master(MasterLinkStatus::Registered {
                    cluster_id,
                }));
        }
        Ok(other) => return Err(format!("unexpected answer to the registration: {other:?}")),
        Err(e) => return Err(format!("master registration: {e}")),
    }
    Ok((frames, writer, opener))
}

/// The master link's halves after a registration.
type Registered = (
    FrameReader<tokio::net::tcp::OwnedReadHalf>,
    SealedWriter<tokio::net::tcp::OwnedWriteHalf>,
    sustenet_proto::crypto::StreamOpener,
);

/// Tells a master just registered with what it must know first: the
/// WebSocket port, if any, and every player the core has now.
async fn announce(
    shared: &Shared,
    writer: &mut SealedWriter<tokio::net::tcp::OwnedWriteHalf>,
) -> Result<(), String> {
    let (snap_tx, snap_rx) = oneshot::channel();
    shared
        .events
        .send(CoreEvent::Snapshot(snap_tx))
        .await
        .map_err(|_| "the cluster is stopping")?;
    let players = snap_rx.await.map_err(|_| "the cluster is stopping")?;
    if let Some((port, tls)) = shared.web_port {
        writer
            .queue(&ClusterToMaster::WebSocket { port, tls })
            .map_err(|e| e.to_string())?;
    }
    for client_id in players {
        writer
            .queue(&ClusterToMaster::PlayerJoined { client_id })
            .map_err(|e| e.to_string())?;
    }
    writer.flush().await.map_err(|e| e.to_string())
}

async fn master_session(
    shared: &Shared,
    link_rx: &mut LinkRx,
    backoff: &mut Duration,
) -> Result<(), String> {
    let limits = shared.config.limits;
    let (frames, mut writer, opener) = register(shared).await?;
    *backoff = Duration::from_millis(250);
    shared.published.resync.store(false, Ordering::Relaxed);
    while link_rx.try_recv().is_some() {}
    announce(shared, &mut writer).await?;
    let mut reader = SealedReader::new(frames, opener, limits.max_auth_failures);
    let mut status = tokio::time::interval(shared.config.status_interval);
    let mut last_seen = Instant::now();
    // What the master was told of the reservation on this link (a new
    // registration starts unreserved).
    let mut reserved_sent = false;
    let mut shutdown = shared.shutdown.clone();
    let r: Result<Result<(), String>, NetError> = async {
        loop {
            tokio::select! {
                m = reader.recv::<MasterToCluster>() => {
                    let Some(m) = m? else { return Ok(Err("the master closed the connection".to_owned())) };
                    last_seen = Instant::now();
                    match m {
                        MasterToCluster::Ping(v) => writer.send(&ClusterToMaster::Pong(v)).await?,
                        MasterToCluster::Pong(_) | MasterToCluster::Registered { .. } => {}
                        MasterToCluster::TransferReady { request_id, client_id, ticket } => {
                            let _ = shared.events.send(CoreEvent::TransferReady { request_id, player: client_id, ticket: Box::new(ticket) }).await;
                        }
                        MasterToCluster::TransferFailed { request_id, client_id, reason } => {
                            let _ = shared.events.send(CoreEvent::TransferFailed { request_id, player: client_id, reason }).await;
                        }
                        MasterToCluster::InstanceReady { request_id, cluster_id } => {
                            let _ = shared.events.send(CoreEvent::InstanceAnswer { request_id, answer: Ok(cluster_id) }).await;
                        }
                        MasterToCluster::InstanceFailed { request_id, reason } => {
                            let _ = shared.events.send(CoreEvent::InstanceAnswer { request_id, answer: Err(reason) }).await;
                        }
                        MasterToCluster::Disconnect(g) => {
                            return Ok(Err(format!("the master closed the link: {} {}", g.reason, g.message)));
                        }
                    }
                }
                Some(ev) = link_rx.recv() => {
                    writer.queue(&link_message(ev))?;
                    while let Some(ev) = link_rx.try_recv() {
                        writer.queue(&link_message(ev))?;
                    }
                    writer.flush().await?;
                }
                _ = status.tick() => {
                    if last_seen.elapsed() > limits.timeout() {
                        return Ok(Err("the master stopped responding".to_owned()));
                    }
                    if shared.published.resync.load(Ordering::Relaxed) {
                        return Ok(Err("player events overflowed; registering again".to_owned()));
                    }
                    let players = u32::try_from(shared.published.player_count.load(Ordering::Relaxed)).unwrap_or(u32::MAX);
                    writer.queue(&ClusterToMaster::Status(Status { players, capacity: shared.config.connection_limit(), fragments: u32::try_from(shared.published.fragment_count.load(Ordering::Relaxed)).unwrap_or(u32::MAX) }))?;
                    // Sealing and framing take 64 bytes at most; the rest is the report's.
                    let report = shared.config.metrics.report(now_ms(), limits.max_frame.saturating_sub(64));
                    writer.queue(&ClusterToMaster::Report(report))?;
                    let reserved = shared.config.reservation.get();
                    if reserved != reserved_sent {
                        writer.queue(&ClusterToMaster::Reserved { reserved })?;
                        reserved_sent = reserved;
                    }
                    writer.send(&ClusterToMaster::Ping(now_ms())).await?;
                }
                _ = crate::time::stopped(&mut shutdown) => {
                    writer.send(&ClusterToMaster::Disconnect(Goodbye::new(DisconnectReason::ServerShutdown))).await?;
                    let _ = writer.shutdown().await;
                    return Ok(Ok(()));
                }
            }
        }
    }
    .await;
    match r {
        Ok(x) => x,
        Err(e) => Err(format!("master link failed: {e}")),
    }
}
