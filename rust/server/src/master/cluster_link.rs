//! A cluster's link to the master: the key proof, the registration, then
//! status, players and transfer requests until the link ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use sustenet_net::{FrameReader, NetError, SealedReader, SealedWriter, write_frame};
use sustenet_proto::handshake;
use sustenet_proto::{ClusterToMaster, DisconnectReason, MasterToCluster, Register};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::directory::{ClusterMessage, RegisterError};
use super::link_loop::{self, Link, Reader, Writer};
use super::{KeyHello, Shared, refuse};
use crate::handshake_gate::HandshakePermit;
use crate::time::now_ms;

/// Messages queued for one cluster link: a replacement's goodbye, an
/// instance's goodbye, answers to the cluster's instance requests (each
/// under 300 bytes; when full, an answer is dropped and logged).
const LINK_QUEUE: usize = 64;

/// The queues of the cluster links' tasks, by connection number: the
/// directory addresses its messages to a link, these carry them.
#[derive(Default)]
pub(super) struct ClusterLinks(Mutex<HashMap<u64, mpsc::Sender<MasterToCluster>>>);

impl ClusterLinks {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, mpsc::Sender<MasterToCluster>>> {
        // Every update leaves the map consistent: go on after a panic elsewhere.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A queue for the link on connection `conn`.
    fn open(&self, conn: u64) -> mpsc::Receiver<MasterToCluster> {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        self.lock().insert(conn, tx);
        rx
    }

    /// The link on connection `conn` ended.
    fn close(&self, conn: u64) {
        self.lock().remove(&conn);
    }
}

/// Hands every message the directory has for cluster links to their
/// queues, never waiting: a full queue drops the message (logged). A link
/// told to go loses its queue too, so it ends even when the goodbye did not
/// fit.
pub(super) fn deliver(shared: &Shared) {
    let messages: Vec<ClusterMessage> = {
        let mut dir = shared.directory();
        std::iter::from_fn(|| dir.poll_cluster_message()).collect()
    };
    if messages.is_empty() {
        return;
    }
    let mut links = shared.cluster_links.lock();
    for ClusterMessage {
        cluster_id,
        conn,
        message,
    } in messages
    {
        let tx = if matches!(message, MasterToCluster::Disconnect(_)) {
            links.remove(&conn)
        } else {
            links.get(&conn).cloned()
        };
        if let Some(tx) = tx
            && tx.try_send(message).is_err()
        {
            warn!(
                cluster_id,
                "the cluster link's queue is full; a message is dropped"
            );
        }
    }
}

/// Runs the cluster handshake and registration, then the link.
pub(super) async fn accept(
    shared: &Arc<Shared>,
    frames: FrameReader<OwnedReadHalf>,
    mut wr: OwnedWriteHalf,
    hello: KeyHello,
    conn: u64,
    permit: HandshakePermit,
) {
    let KeyHello {
        key_name,
        nonce,
        peer,
    } = hello;
    let limits = shared.config.limits;
    // `instance-<id>` names are the instance table's: a key file of that name is never used.
    let key = match super::instances::instance_id(&key_name) {
        Some(_) => shared.instances().table.cluster_key(&key_name),
        None => shared.keys.cluster_key(&key_name),
    };
    let answer = handshake::respond_cluster(key.as_ref(), &key_name, &nonce, &mut rand::rng());
    let (session, challenge) = match answer {
        Ok(x) => x,
        Err(e) => {
            warn!(key_name, "cluster refused: {e}");
            refuse(&mut wr, e.reason(), &e.to_string()).await;
            return;
        }
    };
    if write_frame(&mut wr, &challenge, limits.max_frame)
        .await
        .is_err()
    {
        return;
    }
    let mut reader = SealedReader::new(frames, session.opener, 0);
    let Some(reg) = read_registration(&mut reader, &mut wr, &key_name, limits).await else {
        return;
    };
    let Some(key) = key else {
        // Unreachable in practice: an unknown name gets a random key and its
        // registration cannot open.
        return;
    };
    let id = reg.cluster_id;
    let rx = shared.cluster_links.open(conn);
    let claimed = shared
        .directory()
        .handle_register(reg.clone(), key, key_name.clone(), conn);
    let replaced = match claimed {
        Ok(replaced) => replaced,
        Err(e) => {
            shared.cluster_links.close(conn);
            refuse_registration(&mut wr, &key_name, id, e).await;
            return;
        }
    };
    drop(permit);
    super::instance_hub::cluster_registered(shared, &key_name, id);
    // A cluster registered from here: its later connections (re-registering
    // after a dropped link) use the known handshake pool.
    shared.handshakes.remember(peer.ip());
    info!(
        cluster_id = id,
        name = %reg.name,
        key_name,
        address = %reg.address,
        tcp_port = reg.tcp_port,
        udp_port = reg.udp_port,
        capacity = reg.capacity,
        "cluster registered"
    );
    if replaced.is_some() {
        info!(
            cluster_id = id,
            "cluster re-registered; its previous link is closed"
        );
    }
    deliver(shared);
    let writer = SealedWriter::new(wr, session.sealer, limits.max_frame)
        .with_write_timeout(limits.timeout());
    let mut link = ClusterLink { shared, id, conn };
    let who = format!("cluster {id}");
    let reason = link_loop::run(shared, &mut link, reader, writer, rx, &who).await;
    shared.web_clusters().remove(id, conn);
    shared.cluster_links.close(conn);
    if shared.directory().handle_unregister(id, conn) {
        info!(cluster_id = id, "cluster removed from the list: {reason}");
        super::instance_hub::cluster_ended(shared, id);
    }
}

/// Tells the cluster why its registration was refused.
async fn refuse_registration(wr: &mut OwnedWriteHalf, key_name: &str, id: u64, e: RegisterError) {
    let (reason, message) = match e {
        RegisterError::IdTakenByAnotherKey => (
            DisconnectReason::AuthFailed,
            "this cluster id is registered with another key",
        ),
        RegisterError::TooManyClustersForKey => (
            DisconnectReason::ServerFull,
            "too many clusters registered with this key",
        ),
    };
    warn!(
        key_name,
        cluster_id = id,
        "cluster registration refused: {message}"
    );
    refuse(wr, reason, message).await;
}

/// The first sealed frame must be a registration.
async fn read_registration(
    reader: &mut Reader,
    wr: &mut OwnedWriteHalf,
    key_name: &str,
    limits: crate::config::Limits,
) -> Option<Register> {
    let first =
        tokio::time::timeout(limits.handshake_timeout(), reader.recv::<ClusterToMaster>()).await;
    match first {
        Ok(Ok(Some(ClusterToMaster::Register(reg)))) => Some(reg),
        Ok(Err(NetError::TooManyAuthFailures(_))) => {
            warn!(
                key_name,
                "cluster registration refused: authentication failed (wrong or unknown key)"
            );
            refuse(
                wr,
                DisconnectReason::AuthFailed,
                "cluster authentication failed",
            )
            .await;
            None
        }
        Ok(Ok(Some(other))) => {
            warn!(
                key_name,
                "cluster registration refused: expected Register, got {other:?}"
            );
            None
        }
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            warn!(key_name, "cluster registration refused: {e}");
            None
        }
        Err(_) => {
            warn!(
                key_name,
                "cluster registration refused: no registration within the handshake timeout"
            );
            None
        }
    }
}

/// The registered link, for [`link_loop::run`]: answers pings, applies
/// reports, serves transfers.
struct ClusterLink<'a> {
    shared: &'a Shared,
    id: u64,
    conn: u64,
}

impl Link for ClusterLink<'_> {
    type In = ClusterToMaster;
    type Out = MasterToCluster;

    async fn start(&mut self, writer: &mut Writer) -> Result<Option<DisconnectReason>, NetError> {
        let registered = MasterToCluster::Registered {
            cluster_id: self.id,
        };
        writer.send(&registered).await?;
        Ok(None)
    }

    async fn on_message(
        &mut self,
        writer: &mut Writer,
        msg: ClusterToMaster,
    ) -> Result<Option<DisconnectReason>, NetError> {
        on_message(self.shared, writer, self.id, self.conn, msg).await
    }
}

/// One message from the cluster; `Some(reason)` ends the link.
async fn on_message(
    shared: &Shared,
    writer: &mut Writer,
    id: u64,
    conn: u64,
    msg: ClusterToMaster,
) -> Result<Option<DisconnectReason>, NetError> {
    match msg {
        // Keep-alives and goodbyes are the link loop's.
        ClusterToMaster::Ping(_) | ClusterToMaster::Pong(_) | ClusterToMaster::Disconnect(_) => {}
        ClusterToMaster::Register(_) => {
            warn!(cluster_id = id, "cluster sent a second registration");
            return Ok(Some(DisconnectReason::ProtocolViolation));
        }
        ClusterToMaster::Status(st) => shared.directory().handle_status(id, conn, st),
        ClusterToMaster::Report(report) => {
            shared.config.metrics.cluster_report(id, now_ms(), report);
        }
        ClusterToMaster::Reserved { reserved } => {
            if shared.directory().handle_reserved(id, conn, reserved) {
                // Debug only: a cluster key holder may flip it on every message.
                tracing::debug!(
                    cluster_id = id,
                    reserved,
                    "the cluster's reservation changed"
                );
            }
        }
        ClusterToMaster::WebSocket { port, tls } => {
            info!(
                cluster_id = id,
                port, tls, "the cluster serves WebSocket players"
            );
            shared.web_clusters().set(id, conn, port, tls);
        }
        ClusterToMaster::PlayerJoined { client_id } => player_joined(shared, id, conn, client_id),
        ClusterToMaster::PlayerLeft { client_id } => {
            shared.directory().handle_player_left(id, conn, client_id);
        }
        ClusterToMaster::SpawnInstance {
            request_id,
            template,
            params,
            stop_when_empty_sec,
        } => {
            let refused = super::instance_hub::cluster_spawn(
                shared,
                id,
                request_id,
                template,
                params,
                stop_when_empty_sec,
            );
            if let Some(reason) = refused {
                writer
                    .send(&MasterToCluster::InstanceFailed { request_id, reason })
                    .await?;
            }
        }
        ClusterToMaster::Transfer {
            request_id,
            client_id,
            target,
            user_data,
        } => {
            let reply = transfer(shared, id, conn, request_id, client_id, target, &user_data);
            writer.send(&reply).await?;
        }
    }
    Ok(None)
}

/// The cluster says `client_id` joined it.
fn player_joined(shared: &Shared, id: u64, conn: u64, client_id: u64) {
    let unsent = {
        let mut dir = shared.directory();
        let sent = dir.handle_player_joined(now_ms(), id, conn, client_id);
        if sent {
            shared.config.metrics.ticket_used();
        }
        if sent { 0 } else { dir.unsent_reports(id) }
    };
    // Logged at powers of two: a cluster cannot flood the log this way.
    if unsent.is_power_of_two() {
        info!(
            cluster_id = id,
            client_id,
            reports = unsent,
            "the cluster reports a player the master did not send there: counted (up to its capacity), never transferred"
        );
    }
}

/// The cluster asks to move `client_id` to cluster `target`: the answer to send it.
fn transfer(
    shared: &Shared,
    id: u64,
    conn: u64,
    request_id: u64,
    client_id: u64,
    target: u64,
    user_data: &[u8],
) -> MasterToCluster {
    let ticket = shared.directory().handle_transfer(
        now_ms(),
        id,
        conn,
        client_id,
        target,
        user_data,
        &mut rand::rng(),
    );
    match ticket {
        Ok(ticket) => {
            info!(client_id, from = id, to = target, "transfer ticket issued");
            shared.config.metrics.ticket_issued(true);
            MasterToCluster::TransferReady {
                request_id,
                client_id,
                ticket,
            }
        }
        Err(reason) => {
            info!(
                cluster_id = id,
                client_id, target, "transfer refused: {} {}", reason.reason, reason.message
            );
            MasterToCluster::TransferFailed {
                request_id,
                client_id,
                reason,
            }
        }
    }
}
