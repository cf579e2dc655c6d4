//! An agent's link to the master: the key proof (agent keys), the
//! registration, then spawn and stop requests one way and load, start and
//! exit reports the other, until the link ends; then its instances are gone.

use std::sync::Arc;

use sustenet_net::{FrameReader, NetError};
use sustenet_proto::handshake::KeyRole;
use sustenet_proto::instance::{AgentRegister, AgentToMaster, MasterToAgent};
use sustenet_proto::{DisconnectReason, Goodbye};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::instance_hub::dispatch;
use super::instances::Exit;
use super::key_link::{ProvenLink, prove};
use super::link_loop::{self, Link, Writer};
use super::{KeyHello, Shared};
use crate::handshake_gate::HandshakePermit;
use crate::time::now_ms;

/// Requests queued for one agent link.
const AGENT_QUEUE: usize = 1024;

/// Runs an agent's handshake and registration, then its link.
pub(super) async fn accept(
    shared: &Arc<Shared>,
    frames: FrameReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    hello: KeyHello,
    conn: u64,
    permit: HandshakePermit,
) {
    let key = shared.keys.agent_key(&hello.key_name);
    let proven = prove::<AgentToMaster>(shared, frames, wr, KeyRole::Agent, key.as_ref(), &hello);
    let key_name = hello.key_name.as_str();
    let Some(ProvenLink {
        reader,
        mut writer,
        first,
    }) = proven.await
    else {
        return;
    };
    let AgentToMaster::Register(reg) = first else {
        warn!(
            key_name,
            "agent refused: expected a registration, got {first:?}"
        );
        let _ = writer
            .send(&MasterToAgent::Disconnect(Goodbye {
                reason: DisconnectReason::ProtocolViolation,
                message: "the first message must be a registration".into(),
            }))
            .await;
        return;
    };
    let (tx, rx) = mpsc::channel(AGENT_QUEUE);
    let registered = {
        let mut hub = shared.instances();
        let r = hub.table.agent_registered(&reg, conn);
        if r.is_ok() {
            hub.agents.insert(reg.name.clone(), (conn, tx));
        }
        r
    };
    if let Err(why) = registered {
        warn!(key_name, agent = reg.name, "agent refused: {}", why.message);
        let _ = writer.send(&MasterToAgent::Disconnect(why)).await;
        return;
    }
    drop(permit);
    shared.handshakes.remember(hello.peer.ip());
    log_registration(key_name, &reg);
    let name = reg.name;
    let mut link = AgentLink {
        shared,
        name: &name,
        conn,
    };
    let who = format!("agent {name}");
    let reason = link_loop::run(shared, &mut link, reader, writer, rx, &who).await;
    let gone = {
        let mut hub = shared.instances();
        if hub.agents.get(&name).is_some_and(|(c, _)| *c == conn) {
            hub.agents.remove(&name);
        }
        hub.table.agent_lost(&name, conn)
    };
    info!(
        agent = name,
        instances_gone = gone.len(),
        "agent link ended: {reason}"
    );
    dispatch(shared);
}

fn log_registration(key_name: &str, reg: &AgentRegister) {
    let templates: Vec<&str> = reg.templates.iter().map(|t| t.name.as_str()).collect();
    info!(
        agent = reg.name,
        key_name,
        capacity = reg.capacity,
        ports = format!("{}..={}", reg.port_first, reg.port_last),
        templates = templates.join(","),
        "agent registered"
    );
}

/// An agent's registered link, for [`link_loop::run`].
struct AgentLink<'a> {
    shared: &'a Shared,
    name: &'a str,
    conn: u64,
}

impl Link for AgentLink<'_> {
    type In = AgentToMaster;
    type Out = MasterToAgent;

    async fn start(&mut self, writer: &mut Writer) -> Result<Option<DisconnectReason>, NetError> {
        writer.send(&MasterToAgent::Registered).await?;
        Ok(None)
    }

    async fn on_message(
        &mut self,
        _writer: &mut Writer,
        msg: AgentToMaster,
    ) -> Result<Option<DisconnectReason>, NetError> {
        let AgentLink { shared, name, conn } = *self;
        match msg {
            // Keep-alives and goodbyes are the link loop's.
            AgentToMaster::Ping(_) | AgentToMaster::Pong(_) | AgentToMaster::Disconnect(_) => {}
            AgentToMaster::Register(_) => {
                warn!(agent = name, "agent sent a second registration");
                return Ok(Some(DisconnectReason::ProtocolViolation));
            }
            AgentToMaster::Load { running } => {
                shared.instances().table.agent_load(name, conn, running);
            }
            AgentToMaster::Started { instance_id, port } => {
                if shared
                    .instances()
                    .table
                    .started(name, conn, instance_id, port)
                {
                    info!(agent = name, instance_id, port, "instance process started");
                }
            }
            AgentToMaster::Exited {
                instance_id,
                code,
                restarting,
                stderr_tail,
            } => {
                let exit = Exit {
                    instance_id,
                    code,
                    restarting,
                    stderr_tail,
                };
                let known = shared.instances().table.exited(now_ms(), name, conn, &exit);
                if known {
                    info!(
                        agent = name,
                        instance_id,
                        code,
                        restarting,
                        stderr = exit.stderr_tail.trim_end(),
                        "instance process exited"
                    );
                }
                dispatch(shared);
            }
        }
        Ok(None)
    }
}
