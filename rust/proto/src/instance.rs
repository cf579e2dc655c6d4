//! Instances on demand: the messages of the agent link (agent ↔ master) and
//! the admin link (an operator's tool ↔ master).
//!
//! An *agent* runs on a server machine and starts and stops *instances*
//! (cluster processes made from a template) when the master asks. Both links
//! start with the key-proof handshake of a cluster (`AgentHello` /
//! `AdminHello`, each with its own key table and salt), then carry these
//! messages sealed. docs/protocol.md §18 lists them byte by byte.

use crate::error::{DecodeError, EncodeError};
use crate::message::{
    Common, Goodbye, Message, decode_common, encode_goodbye, encode_ping, link_message, tag,
    unreachable_common,
};
use crate::wire::{Reader, Writer};

/// Longest template or agent name, in bytes.
pub const TEMPLATE_NAME_MAX: usize = 64;
/// Most parameters one spawn request carries.
pub const PARAMS_MAX: usize = 16;
/// Longest parameter name, in bytes.
pub const PARAM_NAME_MAX: usize = 64;
/// Longest parameter value, in bytes.
pub const PARAM_VALUE_MAX: usize = 256;
/// Most templates one agent offers.
pub const TEMPLATES_MAX: usize = 64;
/// Longest stderr tail an exit report carries, in bytes.
pub const STDERR_TAIL_MAX: usize = 4096;
/// Most instances in one list.
pub const INSTANCE_LIST_MAX: usize = 1024;

mod itag {
    pub const AGENT_REGISTER: u8 = 0x40;
    pub const AGENT_LOAD: u8 = 0x41;
    pub const INSTANCE_STARTED: u8 = 0x42;
    pub const INSTANCE_EXITED: u8 = 0x43;
    pub const AGENT_REGISTERED: u8 = 0x48;
    pub const SPAWN: u8 = 0x49;
    pub const STOP: u8 = 0x4A;
    pub const LIST_INSTANCES: u8 = 0x50;
    pub const ADMIN_SPAWN: u8 = 0x51;
    pub const ADMIN_STOP: u8 = 0x52;
    pub const INSTANCE_LIST: u8 = 0x58;
    pub const SPAWN_ACCEPTED: u8 = 0x59;
    pub const INSTANCE_READY: u8 = 0x5A;
    pub const INSTANCE_FAILED: u8 = 0x5B;
    pub const STOPPING: u8 = 0x5C;
    pub const STOP_FAILED: u8 = 0x5D;
}

/// A spawn request's parameters: name → value pairs, filled into the
/// template's `{placeholders}`. At most [`PARAMS_MAX`] pairs; names are at
/// most [`PARAM_NAME_MAX`] bytes of `[A-Za-z0-9_]`, values at most
/// [`PARAM_VALUE_MAX`] bytes without control characters.
pub type Params = Vec<(String, String)>;

/// Checks parameters as the master and the agent both do; the error says which one is wrong.
pub fn check_params(params: &Params) -> Result<(), String> {
    if params.len() > PARAMS_MAX {
        return Err(format!(
            "{} parameters (at most {PARAMS_MAX})",
            params.len()
        ));
    }
    for (name, value) in params {
        if name.is_empty()
            || name.len() > PARAM_NAME_MAX
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!(
                "parameter name '{name}' must be 1 to {PARAM_NAME_MAX} characters of A-Z, a-z, 0-9 and _"
            ));
        }
        if value.len() > PARAM_VALUE_MAX || value.chars().any(char::is_control) {
            return Err(format!(
                "parameter '{name}': the value must be at most {PARAM_VALUE_MAX} bytes without control characters"
            ));
        }
    }
    Ok(())
}

pub(crate) fn put_params(out: &mut Vec<u8>, params: &Params) -> Result<(), EncodeError> {
    if params.len() > PARAMS_MAX {
        return Err(EncodeError::TooLong {
            len: params.len(),
            max: PARAMS_MAX,
        });
    }
    out.put_u8(params.len() as u8);
    for (k, v) in params {
        out.put_str16(k, PARAM_NAME_MAX)?;
        out.put_str16(v, PARAM_VALUE_MAX)?;
    }
    Ok(())
}

pub(crate) fn params(r: &mut Reader<'_>) -> Result<Params, DecodeError> {
    let n = r.u8()? as usize;
    if n > PARAMS_MAX {
        return Err(DecodeError::TooLong {
            len: n,
            max: PARAMS_MAX,
        });
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push((r.str16(PARAM_NAME_MAX)?, r.str16(PARAM_VALUE_MAX)?));
    }
    Ok(out)
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum InstanceState {
    /// Asked of an agent; its cluster has not registered yet.
    Starting = 1,
    /// Its cluster registered with the master: players can be sent there.
    Ready = 2,
    /// Asked to stop; its process has not exited yet.
    Draining = 3,
    /// Stopped, exited, failed, or its agent is gone.
    Gone = 4,
}

impl InstanceState {
    fn from_code(c: u8) -> Result<Self, DecodeError> {
        Ok(match c {
            1 => Self::Starting,
            2 => Self::Ready,
            3 => Self::Draining,
            4 => Self::Gone,
            _ => return Err(DecodeError::Invalid("unknown instance state")),
        })
    }

    /// The state's name as the CLI prints it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Draining => "draining",
            Self::Gone => "gone",
        }
    }
}

/// A template an agent offers, with the most instances of it the agent runs at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateOffer {
    /// The template's name (`[agent.templates.<name>]`).
    pub name: String,
    /// Most instances of it on this agent at once.
    pub max: u32,
}

/// An agent's registration: the first sealed message on its link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRegister {
    /// The agent's name, unique among agents (at most [`TEMPLATE_NAME_MAX`] bytes).
    pub name: String,
    /// Most instances it runs at once, over all templates.
    pub capacity: u32,
    /// First port of the range it gives instances.
    pub port_first: u16,
    /// Last port (inclusive) of that range.
    pub port_last: u16,
    /// The templates it can start (at most [`TEMPLATES_MAX`]).
    pub templates: Vec<TemplateOffer>,
}

/// One instance as the master lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// The instance id (chosen by the master, never reused while it runs).
    pub id: u64,
    /// The template it was made from.
    pub template: String,
    /// The agent running it.
    pub agent: String,
    /// Its state.
    pub state: InstanceState,
    /// The cluster id it registered under (0 before it is ready).
    pub cluster_id: u64,
    /// The port its agent gave it (0 before the agent reported it started).
    pub port: u16,
    /// Players on it, as its cluster reports them.
    pub players: u32,
}

impl InstanceInfo {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_u64(self.id);
        out.put_str16(&self.template, TEMPLATE_NAME_MAX)?;
        out.put_str16(&self.agent, TEMPLATE_NAME_MAX)?;
        out.put_u8(self.state as u8);
        out.put_u64(self.cluster_id);
        out.put_u16(self.port);
        out.put_u32(self.players);
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id: r.u64()?,
            template: r.str16(TEMPLATE_NAME_MAX)?,
            agent: r.str16(TEMPLATE_NAME_MAX)?,
            state: InstanceState::from_code(r.u8()?)?,
            cluster_id: r.u64()?,
            port: r.u16()?,
            players: r.u32()?,
        })
    }
}

/// Agent → master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentToMaster {
    /// Keep-alive; answered with `Pong`.
    Ping(u64),
    /// Answer to the master's `Ping`.
    Pong(u64),
    /// The agent is going away.
    Disconnect(Goodbye),
    /// Registration; must be the first message.
    Register(AgentRegister),
    /// Instance processes running now (sent with every heartbeat).
    Load {
        /// Processes running.
        running: u32,
    },
    /// The instance's process started.
    Started {
        /// The instance.
        instance_id: u64,
        /// The port it was given.
        port: u16,
    },
    /// The instance's process exited.
    Exited {
        /// The instance.
        instance_id: u64,
        /// Its exit code; -1 when a signal ended it.
        code: i32,
        /// The agent starts it again (its template's restart policy).
        restarting: bool,
        /// The last lines of its stderr (at most [`STDERR_TAIL_MAX`] bytes).
        stderr_tail: String,
    },
}

/// Master → agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterToAgent {
    /// Keep-alive.
    Ping(u64),
    /// Answer to the agent's `Ping`.
    Pong(u64),
    /// The master is closing the link.
    Disconnect(Goodbye),
    /// The registration was accepted.
    Registered,
    /// Start an instance.
    Spawn {
        /// The instance id.
        instance_id: u64,
        /// The template to start it from.
        template: String,
        /// Values for the template's placeholders.
        params: Params,
        /// The cluster key name the instance registers with.
        key_name: String,
        /// The instance's own cluster key (fresh, valid for this instance only).
        key: [u8; 32],
    },
    /// Stop an instance (SIGTERM, then SIGKILL after the agent's grace).
    Stop {
        /// The instance.
        instance_id: u64,
    },
}

/// Admin tool → master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminToMaster {
    /// Keep-alive.
    Ping(u64),
    /// Answer to the master's `Ping`.
    Pong(u64),
    /// The tool is going away.
    Disconnect(Goodbye),
    /// List every instance that is not gone.
    List,
    /// Start an instance; answered with `SpawnAccepted` then `Ready` or
    /// `Failed`, or at once with `Failed`.
    Spawn {
        /// Chosen by the tool; echoed in the answers.
        request_id: u64,
        /// The template.
        template: String,
        /// Values for its placeholders.
        params: Params,
        /// Stop the instance once it has been empty this many seconds (0: never).
        stop_when_empty_sec: u32,
    },
    /// Stop an instance.
    Stop {
        /// The instance.
        instance_id: u64,
    },
}

/// Master → admin tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterToAdmin {
    /// Keep-alive.
    Ping(u64),
    /// Answer to the tool's `Ping`.
    Pong(u64),
    /// The master is closing the link.
    Disconnect(Goodbye),
    /// The instances (at most [`INSTANCE_LIST_MAX`]).
    List(Vec<InstanceInfo>),
    /// The spawn was placed on an agent.
    SpawnAccepted {
        /// The request.
        request_id: u64,
        /// The new instance.
        instance_id: u64,
        /// The agent that starts it.
        agent: String,
    },
    /// The instance's cluster registered.
    Ready {
        /// The request.
        request_id: u64,
        /// The instance.
        instance_id: u64,
        /// Its cluster id.
        cluster_id: u64,
    },
    /// The spawn failed (refused, timed out, crashed, or its agent is gone).
    Failed {
        /// The request.
        request_id: u64,
        /// Why.
        reason: Goodbye,
    },
    /// The instance is being stopped.
    Stopping {
        /// The instance.
        instance_id: u64,
    },
    /// A stop was refused (no such instance, or already gone).
    StopFailed {
        /// The instance.
        instance_id: u64,
        /// Why.
        reason: Goodbye,
    },
}

link_message!(
    AgentToMaster,
    |s, out| {
        match s {
            AgentToMaster::Register(reg) => {
                out.put_u8(itag::AGENT_REGISTER);
                out.put_str16(&reg.name, TEMPLATE_NAME_MAX)?;
                out.put_u32(reg.capacity);
                out.put_u16(reg.port_first);
                out.put_u16(reg.port_last);
                if reg.templates.len() > TEMPLATES_MAX {
                    return Err(EncodeError::TooLong {
                        len: reg.templates.len(),
                        max: TEMPLATES_MAX,
                    });
                }
                out.put_u8(reg.templates.len() as u8);
                for t in &reg.templates {
                    out.put_str16(&t.name, TEMPLATE_NAME_MAX)?;
                    out.put_u32(t.max);
                }
                Ok(())
            }
            AgentToMaster::Load { running } => {
                out.put_u8(itag::AGENT_LOAD);
                out.put_u32(*running);
                Ok(())
            }
            AgentToMaster::Started { instance_id, port } => {
                out.put_u8(itag::INSTANCE_STARTED);
                out.put_u64(*instance_id);
                out.put_u16(*port);
                Ok(())
            }
            AgentToMaster::Exited {
                instance_id,
                code,
                restarting,
                stderr_tail,
            } => {
                out.put_u8(itag::INSTANCE_EXITED);
                out.put_u64(*instance_id);
                out.put_u32(*code as u32);
                out.put_bool(*restarting);
                out.put_str16(stderr_tail, STDERR_TAIL_MAX)
            }
            AgentToMaster::Ping(_) | AgentToMaster::Pong(_) | AgentToMaster::Disconnect(_) => {
                unreachable_common()
            }
        }
    },
    |t, r| {
        match t {
            itag::AGENT_REGISTER => {
                let name = r.str16(TEMPLATE_NAME_MAX)?;
                let capacity = r.u32()?;
                let port_first = r.u16()?;
                let port_last = r.u16()?;
                let n = r.u8()? as usize;
                if n > TEMPLATES_MAX {
                    return Err(DecodeError::TooLong {
                        len: n,
                        max: TEMPLATES_MAX,
                    });
                }
                let mut templates = Vec::with_capacity(n);
                for _ in 0..n {
                    templates.push(TemplateOffer {
                        name: r.str16(TEMPLATE_NAME_MAX)?,
                        max: r.u32()?,
                    });
                }
                AgentToMaster::Register(AgentRegister {
                    name,
                    capacity,
                    port_first,
                    port_last,
                    templates,
                })
            }
            itag::AGENT_LOAD => AgentToMaster::Load { running: r.u32()? },
            itag::INSTANCE_STARTED => AgentToMaster::Started {
                instance_id: r.u64()?,
                port: r.u16()?,
            },
            itag::INSTANCE_EXITED => AgentToMaster::Exited {
                instance_id: r.u64()?,
                code: r.u32()? as i32,
                restarting: r.bool()?,
                stderr_tail: r.str16(STDERR_TAIL_MAX)?,
            },
            other => return Err(DecodeError::UnknownType(other)),
        }
    }
);

link_message!(
    MasterToAgent,
    |s, out| {
        match s {
            MasterToAgent::Registered => {
                out.put_u8(itag::AGENT_REGISTERED);
                Ok(())
            }
            MasterToAgent::Spawn {
                instance_id,
                template,
                params,
                key_name,
                key,
            } => {
                out.put_u8(itag::SPAWN);
                out.put_u64(*instance_id);
                out.put_str16(template, TEMPLATE_NAME_MAX)?;
                put_params(out, params)?;
                out.put_str16(key_name, crate::handshake::KEY_NAME_MAX)?;
                out.put_slice(key);
                Ok(())
            }
            MasterToAgent::Stop { instance_id } => {
                out.put_u8(itag::STOP);
                out.put_u64(*instance_id);
                Ok(())
            }
            MasterToAgent::Ping(_) | MasterToAgent::Pong(_) | MasterToAgent::Disconnect(_) => {
                unreachable_common()
            }
        }
    },
    |t, r| {
        match t {
            itag::AGENT_REGISTERED => MasterToAgent::Registered,
            itag::SPAWN => MasterToAgent::Spawn {
                instance_id: r.u64()?,
                template: r.str16(TEMPLATE_NAME_MAX)?,
                params: params(&mut r)?,
                key_name: r.str16(crate::handshake::KEY_NAME_MAX)?,
                key: r.array()?,
            },
            itag::STOP => MasterToAgent::Stop {
                instance_id: r.u64()?,
            },
            other => return Err(DecodeError::UnknownType(other)),
        }
    }
);

link_message!(
    AdminToMaster,
    |s, out| {
        match s {
            AdminToMaster::List => {
                out.put_u8(itag::LIST_INSTANCES);
                Ok(())
            }
            AdminToMaster::Spawn {
                request_id,
                template,
                params,
                stop_when_empty_sec,
            } => {
                out.put_u8(itag::ADMIN_SPAWN);
                out.put_u64(*request_id);
                out.put_str16(template, TEMPLATE_NAME_MAX)?;
                put_params(out, params)?;
                out.put_u32(*stop_when_empty_sec);
                Ok(())
            }
            AdminToMaster::Stop { instance_id } => {
                out.put_u8(itag::ADMIN_STOP);
                out.put_u64(*instance_id);
                Ok(())
            }
            AdminToMaster::Ping(_) | AdminToMaster::Pong(_) | AdminToMaster::Disconnect(_) => {
                unreachable_common()
            }
        }
    },
    |t, r| {
        match t {
            itag::LIST_INSTANCES => AdminToMaster::List,
            itag::ADMIN_SPAWN => AdminToMaster::Spawn {
                request_id: r.u64()?,
                template: r.str16(TEMPLATE_NAME_MAX)?,
                params: params(&mut r)?,
                stop_when_empty_sec: r.u32()?,
            },
            itag::ADMIN_STOP => AdminToMaster::Stop {
                instance_id: r.u64()?,
            },
            other => return Err(DecodeError::UnknownType(other)),
        }
    }
);

link_message!(
    MasterToAdmin,
    |s, out| {
        match s {
            MasterToAdmin::List(list) => {
                out.put_u8(itag::INSTANCE_LIST);
                if list.len() > INSTANCE_LIST_MAX {
                    return Err(EncodeError::TooLong {
                        len: list.len(),
                        max: INSTANCE_LIST_MAX,
                    });
                }
                out.put_u16(list.len() as u16);
                for i in list {
                    i.encode(out)?;
                }
                Ok(())
            }
            MasterToAdmin::SpawnAccepted {
                request_id,
                instance_id,
                agent,
            } => {
                out.put_u8(itag::SPAWN_ACCEPTED);
                out.put_u64(*request_id);
                out.put_u64(*instance_id);
                out.put_str16(agent, TEMPLATE_NAME_MAX)
            }
            MasterToAdmin::Ready {
                request_id,
                instance_id,
                cluster_id,
            } => {
                out.put_u8(itag::INSTANCE_READY);
                out.put_u64(*request_id);
                out.put_u64(*instance_id);
                out.put_u64(*cluster_id);
                Ok(())
            }
            MasterToAdmin::Failed { request_id, reason } => {
                out.put_u8(itag::INSTANCE_FAILED);
                out.put_u64(*request_id);
                reason.encode(out)
            }
            MasterToAdmin::Stopping { instance_id } => {
                out.put_u8(itag::STOPPING);
                out.put_u64(*instance_id);
                Ok(())
            }
            MasterToAdmin::StopFailed {
                instance_id,
                reason,
            } => {
                out.put_u8(itag::STOP_FAILED);
                out.put_u64(*instance_id);
                reason.encode(out)
            }
            MasterToAdmin::Ping(_) | MasterToAdmin::Pong(_) | MasterToAdmin::Disconnect(_) => {
                unreachable_common()
            }
        }
    },
    |t, r| {
        match t {
            itag::INSTANCE_LIST => {
                let n = r.u16()? as usize;
                if n > INSTANCE_LIST_MAX {
                    return Err(DecodeError::TooLong {
                        len: n,
                        max: INSTANCE_LIST_MAX,
                    });
                }
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(InstanceInfo::decode(&mut r)?);
                }
                MasterToAdmin::List(list)
            }
            itag::SPAWN_ACCEPTED => MasterToAdmin::SpawnAccepted {
                request_id: r.u64()?,
                instance_id: r.u64()?,
                agent: r.str16(TEMPLATE_NAME_MAX)?,
            },
            itag::INSTANCE_READY => MasterToAdmin::Ready {
                request_id: r.u64()?,
                instance_id: r.u64()?,
                cluster_id: r.u64()?,
            },
            itag::INSTANCE_FAILED => MasterToAdmin::Failed {
                request_id: r.u64()?,
                reason: Goodbye::decode(&mut r)?,
            },
            itag::STOPPING => MasterToAdmin::Stopping {
                instance_id: r.u64()?,
            },
            itag::STOP_FAILED => MasterToAdmin::StopFailed {
                instance_id: r.u64()?,
                reason: Goodbye::decode(&mut r)?,
            },
            other => return Err(DecodeError::UnknownType(other)),
        }
    }
);

#[cfg(test)]
#[path = "instance_tests.rs"]
mod tests;
