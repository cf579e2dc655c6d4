//! The instance table with the queues of the links it talks to: agents,
//! admin tools and (through the directory) clusters. Links change the table
//! under its lock, then [`dispatch`] routes what the table wants done.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use sustenet_proto::instance::{MasterToAdmin, MasterToAgent};
use sustenet_proto::{Goodbye, MasterToCluster};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Shared;
use super::agones_backend::{AGONES_TARGET, AgonesJob};
use super::instances::{InstanceEvent, InstanceTable, Requester};
use crate::time::now_ms;

/// How often deadlines (never registered, stop when empty, stop timeout) are checked.
pub(crate) const TICK: Duration = Duration::from_millis(250);

/// The table and the queues of the agent and admin links.
#[derive(Debug)]
pub(crate) struct InstanceHub {
    /// The sans-IO table.
    pub table: InstanceTable,
    /// Agent name → (link connection, its queue).
    pub agents: HashMap<String, (u64, mpsc::Sender<MasterToAgent>)>,
    /// Admin connection → its queue.
    pub admins: HashMap<u64, mpsc::Sender<MasterToAdmin>>,
    /// The Agones backend's queue, when `[instances.agones]` is set.
    pub agones: Option<mpsc::Sender<AgonesJob>>,
}

impl InstanceHub {
    pub fn new(table: InstanceTable) -> Self {
        Self {
            table,
            agents: HashMap::new(),
            admins: HashMap::new(),
            agones: None,
        }
    }
}

/// A message for a cluster link (sent through the directory's link queue).
struct ToCluster {
    cluster_id: u64,
    msg: MasterToCluster,
}

impl Shared {
    pub(crate) fn instances(&self) -> MutexGuard<'_, InstanceHub> {
        self.instances.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Routes every pending event of the table: spawn and stop requests to
/// agents, answers to admin tools, goodbyes to instance clusters. Queues are
/// bounded and never waited on: a full agent queue means the instance times
/// out like one that never registered.
pub(crate) fn dispatch(shared: &Shared) {
    let mut to_clusters = Vec::new();
    {
        let mut hub = shared.instances();
        while let Some(ev) = hub.table.poll_event() {
            route(&mut hub, ev, &mut to_clusters);
        }
    }
    if to_clusters.is_empty() {
        return;
    }
    {
        let mut dir = shared.directory();
        for ToCluster { cluster_id, msg } in to_clusters {
            dir.send_to_cluster(cluster_id, msg);
        }
    }
    super::cluster_link::deliver(shared);
}

fn route(hub: &mut InstanceHub, ev: InstanceEvent, to_clusters: &mut Vec<ToCluster>) {
    match ev {
        InstanceEvent::Spawn { agent, order } if agent == AGONES_TARGET && hub.agones.is_some() => {
            to_agones(hub, AgonesJob::Spawn(order));
        }
        InstanceEvent::Spawn { agent, order } => to_agent(hub, &agent, order.into()),
        InstanceEvent::Stop { agent, instance_id }
            if agent == AGONES_TARGET && hub.agones.is_some() =>
        {
            to_agones(hub, AgonesJob::Stop { instance_id });
        }
        InstanceEvent::Stop { agent, instance_id } => {
            to_agent(hub, &agent, MasterToAgent::Stop { instance_id });
        }
        InstanceEvent::Ready {
            requester,
            instance_id,
            cluster_id,
        } => {
            info!(instance_id, cluster_id, "instance ready");
            answer(hub, requester, Ok((instance_id, cluster_id)), to_clusters);
        }
        InstanceEvent::Failed {
            requester,
            instance_id,
            reason,
        } => {
            info!(instance_id, "instance failed: {}", reason.message);
            answer(hub, requester, Err(reason), to_clusters);
        }
        InstanceEvent::CloseCluster { cluster_id, reason } => {
            info!(
                cluster_id,
                "closing an instance's cluster: {}", reason.message
            );
            to_clusters.push(ToCluster {
                cluster_id,
                msg: MasterToCluster::Disconnect(reason),
            });
        }
    }
}

fn to_agones(hub: &InstanceHub, job: AgonesJob) {
    if let Some(tx) = &hub.agones {
        if tx.try_send(job).is_err() {
            warn!("the Agones backend's queue is full; the request is dropped");
        }
    }
}

fn to_agent(hub: &InstanceHub, agent: &str, msg: MasterToAgent) {
    match hub.agents.get(agent) {
        Some((_, tx)) => {
            if tx.try_send(msg).is_err() {
                warn!(agent, "the agent's queue is full; the request is dropped");
            }
        }
        None => warn!(agent, "no link to the agent; the request is dropped"),
    }
}

fn answer(
    hub: &InstanceHub,
    requester: Requester,
    result: Result<(u64, u64), Goodbye>,
    to_clusters: &mut Vec<ToCluster>,
) {
    match requester {
        Requester::Admin { conn, request_id } => {
            let msg = match result {
                Ok((instance_id, cluster_id)) => MasterToAdmin::Ready {
                    request_id,
                    instance_id,
                    cluster_id,
                },
                Err(reason) => MasterToAdmin::Failed { request_id, reason },
            };
            if let Some(tx) = hub.admins.get(&conn) {
                let _ = tx.try_send(msg);
            }
        }
        Requester::Cluster {
            cluster_id,
            request_id,
        } => {
            let msg = match result {
                Ok((_, ready)) => MasterToCluster::InstanceReady {
                    request_id,
                    cluster_id: ready,
                },
                Err(reason) => MasterToCluster::InstanceFailed { request_id, reason },
            };
            to_clusters.push(ToCluster { cluster_id, msg });
        }
    }
}

/// Every [`TICK`]: player counts of ready instances from the directory, the
/// table's deadlines, then the events they caused. Ends at shutdown.
pub(crate) async fn drive(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(TICK);
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::time::stopped(&mut shutdown) => return,
        }
        let now = now_ms();
        let ready = shared.instances().table.ready_clusters();
        let counts: Vec<(u64, u32)> = {
            let mut dir = shared.directory();
            ready
                .into_iter()
                .map(|id| (id, dir.cluster_players(now, id).unwrap_or(0)))
                .collect()
        };
        {
            let mut hub = shared.instances();
            for (id, players) in counts {
                hub.table.players(now, id, players);
            }
            hub.table.tick(now);
        }
        dispatch(&shared);
    }
}

/// A cluster registered: if its key is an instance's, that instance is ready.
pub(crate) fn cluster_registered(shared: &Shared, key_name: &str, cluster_id: u64) {
    if super::instances::instance_id(key_name).is_none() {
        return;
    }
    let ready = shared
        .instances()
        .table
        .cluster_registered(now_ms(), key_name, cluster_id);
    if let Some(instance_id) = ready {
        info!(instance_id, cluster_id, "instance cluster registered");
    }
    dispatch(shared);
}

/// A cluster's link ended: if it was an instance on Agones, the backend
/// checks whether its GameServer is still there (gone: so is the instance).
pub(crate) fn cluster_ended(shared: &Shared, cluster_id: u64) {
    let hub = shared.instances();
    if let Some((instance_id, AGONES_TARGET)) = hub.table.target_of_cluster(cluster_id) {
        to_agones(&hub, AgonesJob::Check { instance_id });
    }
}

/// A cluster's game code asks for an instance; `Some(reason)` when refused at once.
pub(crate) fn cluster_spawn(
    shared: &Shared,
    cluster_id: u64,
    request_id: u64,
    template: String,
    params: sustenet_proto::instance::Params,
    stop_when_empty_sec: u32,
) -> Option<Goodbye> {
    let req = super::instances::SpawnRequest {
        template,
        params,
        stop_when_empty_ms: u64::from(stop_when_empty_sec) * 1000,
        requester: Requester::Cluster {
            cluster_id,
            request_id,
        },
    };
    let placed = shared
        .instances()
        .table
        .spawn(now_ms(), req, &mut rand::rng());
    match placed {
        Ok((instance_id, agent)) => {
            info!(
                cluster_id,
                instance_id, agent, "instance requested by a cluster"
            );
            dispatch(shared);
            None
        }
        Err(reason) => Some(reason),
    }
}
