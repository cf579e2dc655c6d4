//! The instance table: clusters started on demand through agents, sans-IO.
//!
//! An *agent* on each server machine registers with the templates it can
//! start, its capacity and its port range. A spawn request (from an
//! operator's tool or a cluster's game code) is placed on the least loaded
//! agent that offers the template and is under its limits; the table makes a
//! fresh cluster key for the instance, which registers with the master under
//! the key name `instance-<id>` like any cluster. Every method takes `now`
//! (ms since the epoch) and never reads the clock; what the IO layer must do
//! (ask an agent, answer a requester, close a cluster link) comes out of
//! [`InstanceTable::poll_event`]. Placement goes through one function
//! ([`InstanceTable::place`]) so another backend (an Agones fleet per
//! template) can stand where the agents are (docs/instances.md).

use std::collections::{BTreeMap, HashMap, VecDeque};

use rand::CryptoRng;
use sustenet_proto::instance::{
    AgentRegister, InstanceInfo, InstanceState, MasterToAgent, Params, TEMPLATES_MAX, check_params,
};
use sustenet_proto::{DisconnectReason, Goodbye, Key};

/// The key name prefix of instance clusters: `instance-<id>`.
pub const INSTANCE_KEY_PREFIX: &str = "instance-";

/// The table's limits and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSettings {
    /// An instance whose cluster has not registered this long after it was
    /// asked for (or restarted) is stopped and reported failed.
    pub register_timeout_ms: u64,
    /// An instance asked to stop whose agent has not reported its exit this
    /// long after is forgotten (counted gone).
    pub stop_timeout_ms: u64,
    /// Most instances at once over every agent.
    pub max_instances: usize,
    /// Most instances of a template at once over every agent (templates not
    /// named are limited only by the agents' own `max`).
    pub template_limits: HashMap<String, u32>,
    /// Most agents registered at once.
    pub max_agents: usize,
}

impl Default for InstanceSettings {
    fn default() -> Self {
        Self {
            register_timeout_ms: 60_000,
            stop_timeout_ms: 15_000,
            max_instances: 1_000,
            template_limits: HashMap::new(),
            max_agents: 256,
        }
    }
}

/// Who asked for an instance; the answer goes there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    /// An operator's tool on admin connection `conn`.
    Admin {
        /// The admin connection.
        conn: u64,
        /// The tool's request id.
        request_id: u64,
    },
    /// A cluster's game code (`Context::spawn_instance`).
    Cluster {
        /// The asking cluster.
        cluster_id: u64,
        /// The cluster's request id.
        request_id: u64,
    },
}

/// A spawn request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnRequest {
    /// The template.
    pub template: String,
    /// Its placeholders' values.
    pub params: Params,
    /// Stop the instance once it has been empty this long (0: never), ms.
    pub stop_when_empty_ms: u64,
    /// Who gets `Ready` / `Failed`.
    pub requester: Requester,
}

/// What an instance is started with, by an agent or by Agones.
#[derive(Debug, Clone)]
pub struct SpawnOrder {
    /// The instance.
    pub instance_id: u64,
    /// The template.
    pub template: String,
    /// Its parameters.
    pub params: Params,
    /// The key name the instance registers with.
    pub key_name: String,
    /// The instance's cluster key.
    pub key: Key,
}

impl From<SpawnOrder> for MasterToAgent {
    fn from(o: SpawnOrder) -> Self {
        MasterToAgent::Spawn {
            instance_id: o.instance_id,
            template: o.template,
            params: o.params,
            key_name: o.key_name,
            key: *o.key.as_bytes(),
        }
    }
}

/// What the IO layer must do.
#[derive(Debug, Clone)]
pub enum InstanceEvent {
    /// Ask `agent` (or Agones, [`AGONES_TARGET`](super::agones_backend::AGONES_TARGET))
    /// to start an instance.
    Spawn {
        /// The agent's name.
        agent: String,
        /// What to start.
        order: SpawnOrder,
    },
    /// Ask `agent` to stop an instance.
    Stop {
        /// The agent's name.
        agent: String,
        /// The instance.
        instance_id: u64,
    },
    /// The instance is ready: tell the requester.
    Ready {
        /// Who asked.
        requester: Requester,
        /// The instance.
        instance_id: u64,
        /// Its cluster id.
        cluster_id: u64,
    },
    /// The instance will not become ready: tell the requester.
    Failed {
        /// Who asked.
        requester: Requester,
        /// The instance.
        instance_id: u64,
        /// Why.
        reason: Goodbye,
    },
    /// The instance is gone while its cluster may still be registered: close
    /// that link and drop the cluster from the list (its key stops opening).
    CloseCluster {
        /// The cluster.
        cluster_id: u64,
        /// Why.
        reason: Goodbye,
    },
}

#[derive(Debug)]
struct Agent {
    conn: u64,
    capacity: u32,
    templates: HashMap<String, u32>,
    reported_running: u32,
}

#[derive(Debug)]
struct Instance {
    template: String,
    agent: String,
    state: InstanceState,
    key: Key,
    requester: Option<Requester>,
    /// Starting: must register by then; draining: must have exited by then.
    deadline: u64,
    stop_when_empty_ms: u64,
    empty_since: Option<u64>,
    cluster_id: u64,
    port: u16,
    players: u32,
}

/// Every agent and every instance that is not gone.
#[derive(Debug)]
pub struct InstanceTable {
    settings: InstanceSettings,
    agents: BTreeMap<String, Agent>,
    instances: BTreeMap<u64, Instance>,
    next_id: u64,
    events: VecDeque<InstanceEvent>,
}

fn refusal(reason: DisconnectReason, message: String) -> Goodbye {
    Goodbye { reason, message }
}

impl InstanceTable {
    /// An empty table.
    pub fn new(settings: InstanceSettings) -> Self {
        Self {
            settings,
            agents: BTreeMap::new(),
            instances: BTreeMap::new(),
            next_id: 1,
            events: VecDeque::new(),
        }
    }

    /// The next thing the IO layer must do.
    pub fn poll_event(&mut self) -> Option<InstanceEvent> {
        self.events.pop_front()
    }

    /// An agent registered on connection `conn`. Refused when its
    /// registration is malformed, when an agent of that name is connected, or
    /// when the table has `max_agents`.
    pub fn agent_registered(&mut self, reg: &AgentRegister, conn: u64) -> Result<(), Goodbye> {
        let bad = |m: String| Err(refusal(DisconnectReason::ProtocolViolation, m));
        if reg.name.is_empty() {
            return bad("an agent needs a name".into());
        }
        if reg.port_first == 0 || reg.port_first > reg.port_last {
            return bad(format!(
                "port range {}..={} is empty or starts at 0",
                reg.port_first, reg.port_last
            ));
        }
        if reg.templates.len() > TEMPLATES_MAX {
            return bad(format!("more than {TEMPLATES_MAX} templates"));
        }
        let mut templates = HashMap::new();
        for t in &reg.templates {
            if templates.insert(t.name.clone(), t.max).is_some() {
                return bad(format!("template '{}' is offered twice", t.name));
            }
        }
        if self.agents.contains_key(&reg.name) {
            return Err(refusal(
                DisconnectReason::AuthFailed,
                format!(
                    "an agent named '{}' is connected; try again once its link has timed out",
                    reg.name
                ),
            ));
        }
        if self.agents.len() >= self.settings.max_agents {
            return Err(refusal(
                DisconnectReason::ServerFull,
                format!("the master has {} agents (the limit)", self.agents.len()),
            ));
        }
        self.agents.insert(
            reg.name.clone(),
            Agent {
                conn,
                capacity: reg.capacity,
                templates,
                reported_running: 0,
            },
        );
        Ok(())
    }

    fn agent_on(&mut self, name: &str, conn: u64) -> Option<&mut Agent> {
        self.agents.get_mut(name).filter(|a| a.conn == conn)
    }

    /// The agent reports how many instance processes it runs.
    pub fn agent_load(&mut self, name: &str, conn: u64, running: u32) {
        if let Some(a) = self.agent_on(name, conn) {
            a.reported_running = running;
        }
    }

    /// The agent's link on `conn` ended: every instance on it is gone (its
    /// processes ended with the agent, or can no longer be managed), starting
    /// ones are reported failed and ready ones' clusters are closed.
    /// Returns the instances that went.
    pub fn agent_lost(&mut self, name: &str, conn: u64) -> Vec<u64> {
        if self.agent_on(name, conn).is_none() {
            return Vec::new();
        }
        self.agents.remove(name);
        let gone: Vec<u64> = self
            .instances
            .iter()
            .filter(|(_, i)| i.agent == name)
            .map(|(id, _)| *id)
            .collect();
        let why = format!("the agent '{name}' running this instance is gone");
        for id in &gone {
            self.gone(*id, refusal(DisconnectReason::ConnectionLost, why.clone()));
        }
        gone
    }

    /// Removes an instance: its requester (if still waiting) hears `reason`,
    /// its cluster (if it registered) is closed with it.
    fn gone(&mut self, id: u64, reason: Goodbye) {
        let Some(inst) = self.instances.remove(&id) else {
            return;
        };
        if let Some(requester) = inst.requester {
            self.events.push_back(InstanceEvent::Failed {
                requester,
                instance_id: id,
                reason: reason.clone(),
            });
        }
        if inst.cluster_id != 0 {
            self.events.push_back(InstanceEvent::CloseCluster {
                cluster_id: inst.cluster_id,
                reason,
            });
        }
    }

    fn count(&self, pick: impl Fn(&Instance) -> bool) -> usize {
        self.instances.values().filter(|i| pick(i)).count()
    }

    /// The agent for a new instance of `template`: among those that offer it
    /// and are under their capacity and the template's `max`, the one with
    /// the fewest instances (then the fewest processes it reports, then the
    /// first name).
    pub fn place(&self, template: &str) -> Result<String, Goodbye> {
        let mut offered = false;
        let mut best: Option<(usize, u32, &String)> = None;
        for (name, a) in &self.agents {
            let Some(max) = a.templates.get(template) else {
                continue;
            };
            offered = true;
            let on_agent = self.count(|i| &i.agent == name);
            let of_template = self.count(|i| &i.agent == name && i.template == template);
            if on_agent >= a.capacity as usize || of_template >= *max as usize {
                continue;
            }
            let key = (on_agent, a.reported_running, name);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        match best {
            Some((_, _, name)) => Ok(name.clone()),
            None if offered => Err(refusal(
                DisconnectReason::ServerFull,
                format!("every agent offering template '{template}' is at its limit"),
            )),
            None => Err(refusal(
                DisconnectReason::NoCluster,
                format!("no connected agent offers template '{template}'"),
            )),
        }
    }

    /// Places a new instance and asks its agent to start it. Returns the
    /// instance id and the agent; refused (nothing changes) over a limit, for
    /// bad parameters, or when no agent can take it.
    pub fn spawn(
        &mut self,
        now: u64,
        req: SpawnRequest,
        rng: &mut impl CryptoRng,
    ) -> Result<(u64, String), Goodbye> {
        check_params(&req.params).map_err(|m| refusal(DisconnectReason::ProtocolViolation, m))?;
        if self.instances.len() >= self.settings.max_instances {
            return Err(refusal(
                DisconnectReason::ServerFull,
                format!(
                    "{} instances are running (the master's limit)",
                    self.instances.len()
                ),
            ));
        }
        if let Some(limit) = self.settings.template_limits.get(&req.template) {
            let n = self.count(|i| i.template == req.template);
            if n >= *limit as usize {
                return Err(refusal(
                    DisconnectReason::ServerFull,
                    format!(
                        "{n} instances of template '{}' are running (its limit)",
                        req.template
                    ),
                ));
            }
        }
        let agent = self.place(&req.template)?;
        let id = self.next_id;
        self.next_id += 1;
        let key = Key::generate(rng);
        self.instances.insert(
            id,
            Instance {
                template: req.template.clone(),
                agent: agent.clone(),
                state: InstanceState::Starting,
                key: key.clone(),
                requester: Some(req.requester),
                deadline: now.saturating_add(self.settings.register_timeout_ms),
                stop_when_empty_ms: req.stop_when_empty_ms,
                empty_since: None,
                cluster_id: 0,
                port: 0,
                players: 0,
            },
        );
        self.events.push_back(InstanceEvent::Spawn {
            agent: agent.clone(),
            order: SpawnOrder {
                instance_id: id,
                template: req.template,
                params: req.params,
                key_name: instance_key_name(id),
                key,
            },
        });
        Ok((id, agent))
    }

    /// The cluster key of the instance a key name names, while that instance
    /// may register (starting or ready); `None` for any other name.
    pub fn cluster_key(&self, key_name: &str) -> Option<Key> {
        let id = instance_id(key_name)?;
        let inst = self.instances.get(&id)?;
        matches!(inst.state, InstanceState::Starting | InstanceState::Ready)
            .then(|| inst.key.clone())
    }

    /// A cluster registered with an instance key: the instance is ready (the
    /// first time, its requester hears it). Returns the instance id.
    pub fn cluster_registered(&mut self, now: u64, key_name: &str, cluster_id: u64) -> Option<u64> {
        let id = instance_id(key_name)?;
        let inst = self.instances.get_mut(&id)?;
        if !matches!(inst.state, InstanceState::Starting | InstanceState::Ready) {
            return None;
        }
        inst.state = InstanceState::Ready;
        inst.cluster_id = cluster_id;
        inst.empty_since = Some(now);
        if let Some(requester) = inst.requester.take() {
            self.events.push_back(InstanceEvent::Ready {
                requester,
                instance_id: id,
                cluster_id,
            });
        }
        Some(id)
    }

    /// The agent started the instance's process on `port`.
    pub fn started(&mut self, agent: &str, conn: u64, instance_id: u64, port: u16) -> bool {
        if self.agent_on(agent, conn).is_none() {
            return false;
        }
        match self.instances.get_mut(&instance_id) {
            Some(i) if i.agent == agent => {
                i.port = port;
                true
            }
            _ => false,
        }
    }

    /// The agent reports the instance's process exited. When the agent
    /// restarts it, it is starting again (with a new register deadline);
    /// otherwise it is gone and a requester still waiting hears why.
    pub fn exited(&mut self, now: u64, agent: &str, conn: u64, exit: &Exit) -> bool {
        if self.agent_on(agent, conn).is_none() {
            return false;
        }
        let Some(inst) = self.instances.get_mut(&exit.instance_id) else {
            return false;
        };
        if inst.agent != agent {
            return false;
        }
        if exit.restarting && inst.state != InstanceState::Draining {
            inst.state = InstanceState::Starting;
            inst.deadline = now.saturating_add(self.settings.register_timeout_ms);
            if inst.cluster_id != 0 {
                let cluster_id = std::mem::take(&mut inst.cluster_id);
                self.events.push_back(InstanceEvent::CloseCluster {
                    cluster_id,
                    reason: refusal(
                        DisconnectReason::ConnectionLost,
                        "the instance's process exited; it is being restarted".into(),
                    ),
                });
            }
            return true;
        }
        let last_line = exit.stderr_tail.lines().last().unwrap_or("").to_owned();
        let message = if inst.state == InstanceState::Draining {
            "the instance was stopped".to_owned()
        } else {
            format!(
                "the instance's process exited with code {} ({})",
                exit.code, last_line
            )
        };
        self.gone(
            exit.instance_id,
            refusal(DisconnectReason::ServerShutdown, message),
        );
        true
    }

    /// A backend that starts instances without an agent process (Agones)
    /// could not start this one: it is gone, and a requester still waiting
    /// hears `reason`. Returns whether the instance was known.
    pub fn start_failed(&mut self, instance_id: u64, reason: Goodbye) -> bool {
        let known = self.instances.contains_key(&instance_id);
        self.gone(instance_id, reason);
        known
    }

    /// The state of an instance that is not gone.
    pub fn state(&self, instance_id: u64) -> Option<InstanceState> {
        self.instances.get(&instance_id).map(|i| i.state)
    }

    /// The placement target (agent) of an instance that is not gone, and its key name.
    pub fn target_of_cluster(&self, cluster_id: u64) -> Option<(u64, &str)> {
        self.instances
            .iter()
            .find(|(_, i)| i.cluster_id == cluster_id && cluster_id != 0)
            .map(|(id, i)| (*id, i.agent.as_str()))
    }

    /// Asks an instance's agent to stop it. A requester still waiting hears
    /// it failed; the instance stays (draining) until its agent reports the
    /// exit or `stop_timeout_ms` passes.
    pub fn stop(&mut self, now: u64, instance_id: u64, why: &str) -> Result<(), Goodbye> {
        let Some(inst) = self.instances.get_mut(&instance_id) else {
            return Err(refusal(
                DisconnectReason::NoCluster,
                format!("no instance {instance_id}"),
            ));
        };
        if inst.state == InstanceState::Draining {
            return Ok(());
        }
        inst.state = InstanceState::Draining;
        inst.deadline = now.saturating_add(self.settings.stop_timeout_ms);
        if let Some(requester) = inst.requester.take() {
            self.events.push_back(InstanceEvent::Failed {
                requester,
                instance_id,
                reason: refusal(DisconnectReason::ServerShutdown, why.to_owned()),
            });
        }
        self.events.push_back(InstanceEvent::Stop {
            agent: inst.agent.clone(),
            instance_id,
        });
        Ok(())
    }

    /// The clusters of ready instances, whose player counts [`Self::players`] wants.
    pub fn ready_clusters(&self) -> Vec<u64> {
        self.instances
            .values()
            .filter(|i| i.state == InstanceState::Ready)
            .map(|i| i.cluster_id)
            .collect()
    }

    /// The cluster of a ready instance has `players` players now.
    pub fn players(&mut self, now: u64, cluster_id: u64, players: u32) {
        for i in self.instances.values_mut() {
            if i.state == InstanceState::Ready && i.cluster_id == cluster_id {
                i.players = players;
                if players > 0 {
                    i.empty_since = None;
                } else if i.empty_since.is_none() {
                    i.empty_since = Some(now);
                }
            }
        }
    }

    /// Deadlines: instances that never registered are stopped and reported
    /// failed, ready ones empty for their `stop_when_empty` are stopped,
    /// draining ones whose exit never came are forgotten.
    pub fn tick(&mut self, now: u64) {
        let mut late = Vec::new();
        let mut empty = Vec::new();
        let mut lost = Vec::new();
        for (id, i) in &self.instances {
            match i.state {
                InstanceState::Starting if now >= i.deadline => late.push(*id),
                InstanceState::Ready
                    if i.stop_when_empty_ms > 0
                        && i.empty_since
                            .is_some_and(|t| now >= t.saturating_add(i.stop_when_empty_ms)) =>
                {
                    empty.push(*id)
                }
                InstanceState::Draining if now >= i.deadline => lost.push(*id),
                _ => {}
            }
        }
        let timeout = self.settings.register_timeout_ms;
        for id in late {
            if let Some(requester) = self.instances.get_mut(&id).and_then(|i| i.requester.take()) {
                self.events.push_back(InstanceEvent::Failed {
                    requester,
                    instance_id: id,
                    reason: refusal(
                        DisconnectReason::Timeout,
                        format!("the instance did not register within {timeout} ms"),
                    ),
                });
            }
            let _ = self.stop(now, id, "did not register in time");
        }
        for id in empty {
            let _ = self.stop(now, id, "empty");
        }
        for id in lost {
            self.gone(
                id,
                refusal(
                    DisconnectReason::ServerShutdown,
                    "the instance was stopped".into(),
                ),
            );
        }
    }

    /// Every instance (at most `max`), by id.
    pub fn list(&self, max: usize) -> Vec<InstanceInfo> {
        self.instances
            .iter()
            .take(max)
            .map(|(id, i)| InstanceInfo {
                id: *id,
                template: i.template.clone(),
                agent: i.agent.clone(),
                state: i.state,
                cluster_id: i.cluster_id,
                port: i.port,
                players: i.players,
            })
            .collect()
    }

    /// How many instances are not gone.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether no instance is running.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Instance ids a requester waits for (an admin connection that closes
    /// forgets its requests; the instances go on).
    pub fn forget_requester(&mut self, pick: impl Fn(&Requester) -> bool) {
        for i in self.instances.values_mut() {
            if i.requester.as_ref().is_some_and(&pick) {
                i.requester = None;
            }
        }
    }
}

/// An agent's exit report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The instance.
    pub instance_id: u64,
    /// Its exit code (-1: a signal).
    pub code: i32,
    /// The agent starts it again.
    pub restarting: bool,
    /// The last lines of its stderr.
    pub stderr_tail: String,
}

/// The key name instance `id` registers with.
pub fn instance_key_name(id: u64) -> String {
    format!("{INSTANCE_KEY_PREFIX}{id}")
}

/// The instance a key name names, if it is an instance key name.
pub fn instance_id(key_name: &str) -> Option<u64> {
    let digits = key_name.strip_prefix(INSTANCE_KEY_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
#[path = "instances_tests.rs"]
mod tests;
