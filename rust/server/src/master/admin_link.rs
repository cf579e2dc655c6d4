//! An operator's tool on the master (`sustenet instances`): the key proof
//! with the admin key, then list, spawn and stop requests.

use std::sync::Arc;

use sustenet_net::{FrameReader, NetError};
use sustenet_proto::DisconnectReason;
use sustenet_proto::handshake::KeyRole;
use sustenet_proto::instance::{AdminToMaster, INSTANCE_LIST_MAX, MasterToAdmin};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tracing::info;

use super::instance_hub::dispatch;
use super::instances::{Requester, SpawnRequest};
use super::key_link::{ProvenLink, prove};
use super::link_loop::{self, Link, Writer};
use super::{KeyHello, Shared};
use crate::handshake_gate::HandshakePermit;
use crate::time::now_ms;

/// Answers queued for one admin link.
const ADMIN_QUEUE: usize = 256;

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
    let proven = prove::<AdminToMaster>(shared, frames, wr, KeyRole::Admin, key.as_ref(), &hello);
    let Some(ProvenLink {
        reader,
        writer,
        first,
    }) = proven.await
    else {
        return;
    };
    drop(permit);
    info!(key_name = hello.key_name, "admin connected");
    let (tx, rx) = mpsc::channel(ADMIN_QUEUE);
    shared.instances().admins.insert(conn, tx);
    let mut link = AdminLink {
        shared,
        conn,
        first: Some(first),
    };
    let who = format!("admin {}", hello.key_name);
    let reason = link_loop::run(shared, &mut link, reader, writer, rx, &who).await;
    {
        let mut hub = shared.instances();
        hub.admins.remove(&conn);
        hub.table
            .forget_requester(|r| matches!(r, Requester::Admin { conn: c, .. } if *c == conn));
    }
    info!(key_name = hello.key_name, "admin left: {reason}");
}

/// An admin tool's link, for [`link_loop::run`]: its first request is
/// answered first.
struct AdminLink<'a> {
    shared: &'a Shared,
    conn: u64,
    first: Option<AdminToMaster>,
}

impl Link for AdminLink<'_> {
    type In = AdminToMaster;
    type Out = MasterToAdmin;

    async fn start(&mut self, writer: &mut Writer) -> Result<Option<DisconnectReason>, NetError> {
        match self.first.take() {
            Some(first) => self.on_message(writer, first).await,
            None => Ok(None),
        }
    }

    async fn on_message(
        &mut self,
        writer: &mut Writer,
        msg: AdminToMaster,
    ) -> Result<Option<DisconnectReason>, NetError> {
        let (shared, conn) = (self.shared, self.conn);
        match msg {
            // Keep-alives and goodbyes are the link loop's.
            AdminToMaster::Ping(_) | AdminToMaster::Pong(_) | AdminToMaster::Disconnect(_) => {}
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
}
