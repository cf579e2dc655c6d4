//! An operator's tool on the master (`sustenet instances`): the key proof
//! with the admin key, then list, spawn and stop requests.

use std::sync::Arc;
use std::time::Instant;

use sustenet_net::{FrameReader, NetError, SealedReader, SealedWriter};
use sustenet_proto::handshake::KeyRole;
use sustenet_proto::instance::{AdminToMaster, INSTANCE_LIST_MAX, MasterToAdmin};
use sustenet_proto::{DisconnectReason, Goodbye};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::instance_hub::dispatch;
use super::instances::{Requester, SpawnRequest};
use super::key_link::{ProvenLink, prove};
use super::{KeyHello, Shared};
use crate::handshake_gate::HandshakePermit;
use crate::time::now_ms;

/// Answers queued for one admin link.
const ADMIN_QUEUE: usize = 256;

type Reader = SealedReader<OwnedReadHalf>;
type Writer = SealedWriter<OwnedWriteHalf>;

/// Runs an admin tool's handshake, then its requests until it leaves.
pub(super) async fn accept(
    shared: &Arc<Shared>,
    frames: FrameReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    hello: KeyHello,
    conn: u64,
    permit: HandshakePermit,
) {
    let key = shared.keys.admin_key(&hello.key_name);
    let proven = prove::<AdminToMaster>(
        shared,
        frames,
        wr,
        KeyRole::Admin,
        key.as_ref(),
        &hello.key_name,
        &hello.nonce,
    );
    let Some(ProvenLink {
        reader,
        mut writer,
        first,
    }) = proven.await
    else {
        return;
    };
    drop(permit);
    info!(key_name = hello.key_name, "admin connected");
    let (tx, rx) = mpsc::channel(ADMIN_QUEUE);
    shared.instances().admins.insert(conn, tx);
    let result = match on_request(shared, &mut writer, conn, first).await {
        Ok(None) => run_link(shared, reader, writer, conn, rx).await,
        Ok(Some(r)) => Ok(r),
        Err(e) => Err(e),
    };
    {
        let mut hub = shared.instances();
        hub.admins.remove(&conn);
        hub.table
            .forget_requester(|r| matches!(r, Requester::Admin { conn: c, .. } if *c == conn));
    }
    match result {
        Ok(reason) => info!(key_name = hello.key_name, "admin left: {reason}"),
        Err(e) => warn!(key_name = hello.key_name, "admin link failed: {e}"),
    }
}

async fn run_link(
    shared: &Shared,
    mut reader: Reader,
    mut writer: Writer,
    conn: u64,
    mut rx: mpsc::Receiver<MasterToAdmin>,
) -> Result<DisconnectReason, NetError> {
    let timeout = shared.config.cluster_timeout;
    let mut heartbeat = tokio::time::interval(shared.config.limits.heartbeat());
    let mut last_seen = Instant::now();
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            msg = reader.recv::<AdminToMaster>() => {
                let Some(msg) = msg? else { return Ok(DisconnectReason::ConnectionLost) };
                last_seen = Instant::now();
                if let Some(reason) = on_request(shared, &mut writer, conn, msg).await? {
                    return Ok(reason);
                }
            }
            Some(m) = rx.recv() => writer.send(&m).await?,
            _ = heartbeat.tick() => {
                if last_seen.elapsed() > timeout {
                    return Ok(DisconnectReason::Timeout);
                }
                writer.send(&MasterToAdmin::Ping(now_ms())).await?;
            }
            _ = crate::time::stopped(&mut shutdown) => {
                writer.send(&MasterToAdmin::Disconnect(Goodbye::new(DisconnectReason::ServerShutdown))).await?;
                return Ok(DisconnectReason::ServerShutdown);
            }
        }
    }
}

async fn on_request(
    shared: &Shared,
    writer: &mut Writer,
    conn: u64,
    msg: AdminToMaster,
) -> Result<Option<DisconnectReason>, NetError> {
    match msg {
        AdminToMaster::Ping(v) => writer.send(&MasterToAdmin::Pong(v)).await?,
        AdminToMaster::Pong(_) => {}
        AdminToMaster::Disconnect(g) => return Ok(Some(g.reason)),
        AdminToMaster::List => {
            let list = shared.instances().table.list(INSTANCE_LIST_MAX);
            writer.send(&MasterToAdmin::List(list)).await?;
        }
        AdminToMaster::Spawn {
            request_id,
            template,
            params,
            stop_when_empty_sec,
        } => {
            let req = SpawnRequest {
                template,
                params,
                stop_when_empty_ms: u64::from(stop_when_empty_sec) * 1000,
                requester: Requester::Admin { conn, request_id },
            };
            let placed = shared
                .instances()
                .table
                .spawn(now_ms(), req, &mut rand::rng());
            let reply = match placed {
                Ok((instance_id, agent)) => {
                    info!(instance_id, agent, "instance requested by an admin");
                    MasterToAdmin::SpawnAccepted {
                        request_id,
                        instance_id,
                        agent,
                    }
                }
                Err(reason) => MasterToAdmin::Failed { request_id, reason },
            };
            // The acceptance goes out before the spawn request reaches the agent,
            // so the tool never hears Ready before SpawnAccepted.
            writer.send(&reply).await?;
            dispatch(shared);
        }
        AdminToMaster::Stop { instance_id } => {
            let stopped =
                shared
                    .instances()
                    .table
                    .stop(now_ms(), instance_id, "stopped by an admin");
            let reply = match stopped {
                Ok(()) => {
                    info!(instance_id, "instance stop requested by an admin");
                    MasterToAdmin::Stopping { instance_id }
                }
                Err(reason) => MasterToAdmin::StopFailed {
                    instance_id,
                    reason,
                },
            };
            writer.send(&reply).await?;
            dispatch(shared);
        }
    }
    Ok(None)
}
