// Long file: every message of every link and its encoding in one place, in the order of protocol.md, so the wire format is read and fuzzed from one file.
//! The messages of every link, and their byte encoding.
//!
//! Each link direction has its own enum, so a peer that sends a message that
//! does not belong on its link gets [`DecodeError::UnknownType`] rather than
//! reaching code that never expected it. Every message is one type byte
//! followed by its fields; integers are little-endian; text and byte fields
//! carry a length prefix and a cap that is checked before anything is copied.
//! docs/protocol.md lists every message byte by byte.

use crate::error::{DecodeError, EncodeError};
use crate::reason::DisconnectReason;
use crate::wire::{Reader, Writer};

/// Longest cluster or server name, in bytes.
pub const NAME_MAX: usize = 64;
/// Longest host name or address text, in bytes.
pub const ADDRESS_MAX: usize = 255;
/// Longest login user name, in bytes.
pub const USERNAME_MAX: usize = 64;
/// Longest login secret (password, session ticket of the game's own auth), in bytes.
pub const SECRET_MAX: usize = 1024;
/// Longest explanation text carried with a disconnect or refusal, in bytes.
pub const TEXT_MAX: usize = 256;
/// Most user data a connect token can carry (for example a handoff state blob), in bytes.
pub const USER_DATA_MAX: usize = 16 * 1024;
/// Longest sealed connect token, in bytes.
pub const TOKEN_MAX: usize = USER_DATA_MAX + 256;
/// Most clusters in one cluster list.
pub const CLUSTER_LIST_MAX: usize = 4096;
/// Most bytes in one reliable data payload (the frame limit may be lower).
pub const DATA_MAX: usize = 16 * 1024 * 1024;
/// Bytes a reliable data message adds to its payload inside a sealed frame:
/// sequence number (8), tag (16), type (1), command (2), length (4). The
/// largest reliable payload is the frame limit minus this.
pub const RELIABLE_OVERHEAD: usize = 8 + 16 + 1 + 2 + 4;

pub(crate) mod tag {
    pub const PING: u8 = 0x01;
    pub const PONG: u8 = 0x02;
    pub const DISCONNECT: u8 = 0x03;
    pub const REGISTER: u8 = 0x10;
    pub const STATUS: u8 = 0x11;
    pub const PLAYER_JOINED: u8 = 0x12;
    pub const PLAYER_LEFT: u8 = 0x13;
    pub const TRANSFER: u8 = 0x14;
    pub const WEBSOCKET: u8 = 0x15;
    pub const SPAWN_INSTANCE: u8 = 0x16;
    pub const REPORT: u8 = 0x17;
    pub const REGISTERED: u8 = 0x18;
    pub const TRANSFER_READY: u8 = 0x19;
    pub const TRANSFER_FAILED: u8 = 0x1A;
    pub const INSTANCE_READY: u8 = 0x1B;
    pub const INSTANCE_FAILED: u8 = 0x1C;
    pub const RESERVED: u8 = 0x1D;
    pub const LOGIN: u8 = 0x20;
    pub const LIST_CLUSTERS: u8 = 0x21;
    pub const JOIN: u8 = 0x22;
    pub const LOGIN_OK: u8 = 0x28;
    pub const LOGIN_FAILED: u8 = 0x29;
    pub const CLUSTER_LIST: u8 = 0x2A;
    pub const TICKET: u8 = 0x2B;
    pub const JOIN_FAILED: u8 = 0x2C;
    pub const DATA_TO_CLUSTER: u8 = 0x30;
    pub const ACK_TO_CLUSTER: u8 = 0x31;
    pub const WELCOME: u8 = 0x38;
    pub const DATA_TO_CLIENT: u8 = 0x39;
    pub const REDIRECT: u8 = 0x3A;
    pub const ACK_TO_CLIENT: u8 = 0x3B;
    pub const RESUMED: u8 = 0x3C;
}

/// A message that can be written to and read from bytes.
pub trait Message: Sized {
    /// Appends the encoded message to `out`; on error `out` is left as it was.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;
    /// Decodes exactly one message from `bytes`; trailing bytes are an error.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;

    /// Encodes into a fresh buffer.
    fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }
}

/// A goodbye: why the sender is closing the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goodbye {
    /// The reason code.
    pub reason: DisconnectReason,
    /// A human-readable explanation (may be empty), at most [`TEXT_MAX`] bytes.
    pub message: String,
}

impl Goodbye {
    /// A goodbye with a reason and its standard description.
    pub fn new(reason: DisconnectReason) -> Self {
        Self {
            reason,
            message: String::new(),
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_u8(self.reason.code());
        out.put_str16(&self.message, TEXT_MAX)
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            reason: DisconnectReason::from_code(r.u8()?),
            message: r.str16(TEXT_MAX)?,
        })
    }
}

/// A cluster as the master lists it to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The cluster's id (chosen by the cluster at start, stable across re-registrations).
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Host name or IP address clients connect to.
    pub address: String,
    /// TCP port for the reliable channel.
    pub tcp_port: u16,
    /// UDP port for the unreliable channel.
    pub udp_port: u16,
    /// Players connected now.
    pub players: u32,
    /// Most players the cluster accepts, as it registered
    /// ([`Register::capacity`]): never 0 for a Sustenet cluster; 0 when a
    /// cluster registered no limit, and then the master never locks it.
    pub capacity: u32,
    /// True when the cluster is full and cannot be joined.
    pub locked: bool,
}

impl ClusterInfo {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_u64(self.id);
        out.put_str16(&self.name, NAME_MAX)?;
        out.put_str16(&self.address, ADDRESS_MAX)?;
        out.put_u16(self.tcp_port);
        out.put_u16(self.udp_port);
        out.put_u32(self.players);
        out.put_u32(self.capacity);
        out.put_bool(self.locked);
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id: r.u64()?,
            name: r.str16(NAME_MAX)?,
            address: r.str16(ADDRESS_MAX)?,
            tcp_port: r.u16()?,
            udp_port: r.u16()?,
            players: r.u32()?,
            capacity: r.u32()?,
            locked: r.bool()?,
        })
    }
}

/// Which cluster a client asks to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinTarget {
    /// The master picks: the least-loaded cluster that is not full.
    Auto,
    /// A cluster by id.
    Id(u64),
}

/// What the master hands a client to connect to a cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The cluster to connect to.
    pub cluster: ClusterInfo,
    /// The client's id, as the cluster will know it.
    pub client_id: u64,
    /// When the token stops being accepted, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// The session secret, from which the session keys are derived. The same
    /// secret is inside the sealed token, so only the cluster can learn it.
    pub session_secret: crate::crypto::SessionSecret,
    /// The connect token, sealed with the cluster's key; opaque to the client.
    pub token: Vec<u8>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The session secret never reaches a log.
        f.debug_struct("Ticket")
            .field("cluster", &self.cluster)
            .field("client_id", &self.client_id)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("token_len", &self.token.len())
            .finish_non_exhaustive()
    }
}

impl Ticket {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.cluster.encode(out)?;
        out.put_u64(self.client_id);
        out.put_u64(self.expires_at_ms);
        out.put_slice(&self.session_secret[..]);
        out.put_bytes16(&self.token, TOKEN_MAX)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            cluster: ClusterInfo::decode(r)?,
            client_id: r.u64()?,
            expires_at_ms: r.u64()?,
            session_secret: crate::crypto::SessionSecret(r.array()?),
            token: r.bytes16(TOKEN_MAX)?.to_vec(),
        })
    }
}

/// A cluster's registration with the master (its first message after the handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The cluster's id: random at process start, kept across re-registrations
    /// so that tokens issued before a master restart stay valid.
    pub cluster_id: u64,
    /// Display name.
    pub name: String,
    /// Host name or IP address clients should connect to.
    pub address: String,
    /// TCP port for players.
    pub tcp_port: u16,
    /// UDP port for players.
    pub udp_port: u16,
    /// Most players. A Sustenet cluster sends its limit in force (its
    /// `max_connections`, or the default bound of 1,000 when that is 0), never
    /// 0; 0 means no limit: the master never locks such a cluster.
    pub capacity: u32,
}

/// A cluster's periodic load report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Players connected now.
    pub players: u32,
    /// Most players, as in [`Register::capacity`].
    pub capacity: u32,
    /// Fragments with at least one player.
    pub fragments: u32,
}

/// Cluster → master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterToMaster {
    /// Keep-alive; the master answers with `Pong` carrying the same value.
    Ping(u64),
    /// Answer to the master's `Ping`.
    Pong(u64),
    /// The cluster is going away.
    Disconnect(Goodbye),
    /// Registration; must be the first message.
    Register(Register),
    /// Load report, about once a second.
    Status(Status),
    /// A player holding a ticket for this cluster connected. After a
    /// registration the cluster sends one for every player it already has.
    PlayerJoined {
        /// The player's client id.
        client_id: u64,
    },
    /// A player left this cluster.
    PlayerLeft {
        /// The player's client id.
        client_id: u64,
    },
    /// Move one of this cluster's players to another cluster (handoff).
    Transfer {
        /// Chosen by the cluster; echoed in the answer.
        request_id: u64,
        /// The player, who must be on this cluster.
        client_id: u64,
        /// The target cluster's id.
        target: u64,
        /// State for the target's game (at most [`USER_DATA_MAX`] bytes).
        user_data: Vec<u8>,
    },
    /// The cluster also accepts players on a WebSocket, on this port
    /// (docs/protocol.md §17). Sent right after `Register`, only by a
    /// cluster with a WebSocket listener.
    WebSocket {
        /// The WebSocket (TLS or not) port web clients connect to.
        port: u16,
        /// Whether that port speaks TLS (`wss://`).
        tls: bool,
    },
    /// Start an instance (a cluster from an agent's template); answered with
    /// `InstanceReady` or `InstanceFailed` carrying the same request id.
    SpawnInstance {
        /// Chosen by the cluster; echoed in the answer.
        request_id: u64,
        /// The template's name.
        template: String,
        /// Values for the template's placeholders.
        params: crate::instance::Params,
        /// Stop the instance once it has been empty this many seconds (0: never).
        stop_when_empty_sec: u32,
    },
    /// The cluster's dashboard report: occupied fragments and latest
    /// disconnects ([`crate::report`]); sent with each status.
    Report(crate::report::ClusterReport),
    /// Whether the cluster is reserved (an Agones GameServer allocated to a
    /// match): the master then leaves it out of automatic joins; players
    /// still join it by id. Sent when it changes, at most once per status.
    Reserved {
        /// Reserved (`true`) or back in the pool (`false`).
        reserved: bool,
    },
}

/// Master → cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterToCluster {
    /// Keep-alive.
    Ping(u64),
    /// Answer to the cluster's `Ping`.
    Pong(u64),
    /// The master is closing the link.
    Disconnect(Goodbye),
    /// The registration was accepted.
    Registered {
        /// The id the cluster is listed under (the one it asked for).
        cluster_id: u64,
    },
    /// A transfer was granted: send this ticket to the player as a redirect.
    TransferReady {
        /// The request's id.
        request_id: u64,
        /// The player.
        client_id: u64,
        /// The ticket for the target cluster.
        ticket: Ticket,
    },
    /// A transfer was refused.
    TransferFailed {
        /// The request's id.
        request_id: u64,
        /// The player.
        client_id: u64,
        /// Why.
        reason: Goodbye,
    },
    /// An instance this cluster asked for is ready.
    InstanceReady {
        /// The request's id.
        request_id: u64,
        /// The instance's cluster id (a target for `Transfer`).
        cluster_id: u64,
    },
    /// An instance this cluster asked for will not be ready.
    InstanceFailed {
        /// The request's id.
        request_id: u64,
        /// Why.
        reason: Goodbye,
    },
}

/// Client → master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientToMaster {
    /// Keep-alive.
    Ping(u64),
    /// Answer to the master's `Ping`.
    Pong(u64),
    /// The client is leaving.
    Disconnect(Goodbye),
    /// Log in; the master's auth hook decides.
    Login {
        /// User name, at most [`USERNAME_MAX`] bytes.
        username: String,
        /// Secret for the auth hook, at most [`SECRET_MAX`] bytes.
        secret: Vec<u8>,
    },
    /// Ask for the cluster list.
    ListClusters,
    /// Ask for a ticket to a cluster.
    Join(JoinTarget),
}

/// Master → client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterToClient {
    /// Keep-alive.
    Ping(u64),
    /// Answer to the client's `Ping`.
    Pong(u64),
    /// The master is closing the link.
    Disconnect(Goodbye),
    /// Login accepted.
    LoginOk {
        /// The client's id for this session.
        client_id: u64,
    },
    /// Login refused; the connection stays open for another try.
    LoginFailed {
        /// Why, as the auth hook put it.
        message: String,
    },
    /// The clusters the client may join.
    ClusterList(Vec<ClusterInfo>),
    /// A ticket to join a cluster.
    Ticket(Ticket),
    /// The join request could not be served.
    JoinFailed(Goodbye),
}

/// Client → cluster, on the reliable channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientToCluster {
    /// Keep-alive.
    Ping(u64),
    /// Answer to the cluster's `Ping`.
    Pong(u64),
    /// The client is leaving.
    Disconnect(Goodbye),
    /// Game data.
    Data {
        /// The game's command number.
        command: u16,
        /// The payload.
        payload: Vec<u8>,
    },
    /// How many `Data` messages of this session the client has received so
    /// far; the cluster forgets those it kept for a reconnect.
    Ack(u64),
}

/// Cluster → client, on the reliable channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterToClient {
    /// Keep-alive.
    Ping(u64),
    /// Answer to the client's `Ping`.
    Pong(u64),
    /// The cluster is closing the connection.
    Disconnect(Goodbye),
    /// The connection is accepted; always the first message.
    Welcome {
        /// The player's id on this cluster (the client id from the token).
        player_id: u64,
        /// Identifies the session in UDP datagram headers.
        session_id: u64,
        /// The cluster's UDP port.
        udp_port: u16,
    },
    /// Game data.
    Data {
        /// The game's command number.
        command: u16,
        /// The payload.
        payload: Vec<u8>,
    },
    /// Move to another cluster: the client closes this connection and joins with the ticket.
    Redirect(Ticket),
    /// How many `Data` messages of this session the cluster has received so
    /// far; the client forgets those it kept for a reconnect.
    Ack(u64),
    /// A reconnect is accepted; the first message on a resumed connection,
    /// in place of `Welcome`.
    Resumed {
        /// How many of the client's `Data` messages the cluster had received;
        /// the client sends the ones after them again.
        received: u64,
    },
}

/// Shared arms: ping, pong, disconnect.
pub(crate) fn decode_common(t: u8, r: &mut Reader<'_>) -> Result<Option<Common>, DecodeError> {
    Ok(match t {
        tag::PING => Some(Common::Ping(r.u64()?)),
        tag::PONG => Some(Common::Pong(r.u64()?)),
        tag::DISCONNECT => Some(Common::Disconnect(Goodbye::decode(r)?)),
        _ => None,
    })
}

pub(crate) enum Common {
    Ping(u64),
    Pong(u64),
    Disconnect(Goodbye),
}

pub(crate) fn encode_ping(out: &mut Vec<u8>, t: u8, v: u64) -> Result<(), EncodeError> {
    out.put_u8(t);
    out.put_u64(v);
    Ok(())
}

pub(crate) fn encode_goodbye(out: &mut Vec<u8>, g: &Goodbye) -> Result<(), EncodeError> {
    out.put_u8(tag::DISCONNECT);
    g.encode(out)
}

/// Implements `Message` for a link enum: `$common` maps the shared arms, `$enc`
/// encodes the others and `$dec` decodes the others by tag.
macro_rules! link_message {
    ($ty:ident, |$s:ident, $out:ident| $enc:block, |$t:ident, $r:ident| $dec:block) => {
        impl $ty {
            fn encode_fields(&self, $out: &mut Vec<u8>) -> Result<(), EncodeError> {
                match self {
                    $ty::Ping(v) => encode_ping($out, tag::PING, *v),
                    $ty::Pong(v) => encode_ping($out, tag::PONG, *v),
                    $ty::Disconnect(g) => encode_goodbye($out, g),
                    $s => $enc,
                }
            }
        }

        impl Message for $ty {
            fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
                let start = out.len();
                let r = self.encode_fields(out);
                // A field over its cap is found after the fields before it
                // were written; drop them so a caller that skips the message
                // does not send half of it.
                if r.is_err() {
                    out.truncate(start);
                }
                r
            }

            fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                let mut $r = Reader::new(bytes);
                let $t = $r.u8()?;
                let msg = match decode_common($t, &mut $r)? {
                    Some(Common::Ping(v)) => $ty::Ping(v),
                    Some(Common::Pong(v)) => $ty::Pong(v),
                    Some(Common::Disconnect(g)) => $ty::Disconnect(g),
                    None => $dec,
                };
                $r.finish()?;
                Ok(msg)
            }
        }
    };
}
pub(crate) use link_message;

link_message!(
    ClusterToMaster,
    |s, out| {
        match s {
            ClusterToMaster::Register(reg) => {
                out.put_u8(tag::REGISTER);
                out.put_u64(reg.cluster_id);
                out.put_str16(&reg.name, NAME_MAX)?;
                out.put_str16(&reg.address, ADDRESS_MAX)?;
                out.put_u16(reg.tcp_port);
                out.put_u16(reg.udp_port);
                out.put_u32(reg.capacity);
                Ok(())
            }
            ClusterToMaster::Status(st) => {
                out.put_u8(tag::STATUS);
                out.put_u32(st.players);
                out.put_u32(st.capacity);
                out.put_u32(st.fragments);
                Ok(())
            }
            ClusterToMaster::PlayerJoined { client_id } => {
                out.put_u8(tag::PLAYER_JOINED);
                out.put_u64(*client_id);
                Ok(())
            }
            ClusterToMaster::PlayerLeft { client_id } => {
                out.put_u8(tag::PLAYER_LEFT);
                out.put_u64(*client_id);
                Ok(())
            }
            ClusterToMaster::Transfer {
                request_id,
                client_id,
                target,
                user_data,
            } => {
                out.put_u8(tag::TRANSFER);
                out.put_u64(*request_id);
                out.put_u64(*client_id);
                out.put_u64(*target);
                out.put_bytes16(user_data, USER_DATA_MAX)
            }
            ClusterToMaster::WebSocket { port, tls } => {
                out.put_u8(tag::WEBSOCKET);
                out.put_u16(*port);
                out.put_bool(*tls);
                Ok(())
            }
            ClusterToMaster::SpawnInstance {
                request_id,
                template,
                params,
                stop_when_empty_sec,
            } => {
                out.put_u8(tag::SPAWN_INSTANCE);
                out.put_u64(*request_id);
                out.put_str16(template, crate::instance::TEMPLATE_NAME_MAX)?;
                crate::instance::put_params(out, params)?;
                out.put_u32(*stop_when_empty_sec);
                Ok(())
            }
            ClusterToMaster::Report(report) => {
                out.put_u8(tag::REPORT);
                report.encode(out)
            }
            ClusterToMaster::Reserved { reserved } => {
                out.put_u8(tag::RESERVED);
                out.put_bool(*reserved);
                Ok(())
            }
            ClusterToMaster::Ping(_)
            | ClusterToMaster::Pong(_)
            | ClusterToMaster::Disconnect(_) => unreachable_common(),
        }
    },
    |t, r| {
        match t {
            tag::REGISTER => ClusterToMaster::Register(Register {
                cluster_id: r.u64()?,
                name: r.str16(NAME_MAX)?,
                address: r.str16(ADDRESS_MAX)?,
                tcp_port: r.u16()?,
                udp_port: r.u16()?,
                capacity: r.u32()?,
            }),
            tag::STATUS => ClusterToMaster::Status(Status {
                players: r.u32()?,
                capacity: r.u32()?,
                fragments: r.u32()?,
            }),
            tag::PLAYER_JOINED => ClusterToMaster::PlayerJoined {
                client_id: r.u64()?,
            },
            tag::PLAYER_LEFT => ClusterToMaster::PlayerLeft {
                client_id: r.u64()?,
            },
            tag::TRANSFER => ClusterToMaster::Transfer {
                request_id: r.u64()?,
                client_id: r.u64()?,
                target: r.u64()?,
                user_data: r.bytes16(USER_DATA_MAX)?.to_vec(),
            },
            tag::WEBSOCKET => ClusterToMaster::WebSocket {
                port: r.u16()?,
                tls: r.bool()?,
            },
            tag::SPAWN_INSTANCE => ClusterToMaster::SpawnInstance {
                request_id: r.u64()?,
                template: r.str16(crate::instance::TEMPLATE_NAME_MAX)?,
                params: crate::instance::params(&mut r)?,
                stop_when_empty_sec: r.u32()?,
            },
            tag::REPORT => ClusterToMaster::Report(crate::report::ClusterReport::decode(&mut r)?),
            tag::RESERVED => ClusterToMaster::Reserved {
                reserved: r.bool()?,
            },
            other => return Err(DecodeError::UnknownType(other)),
        }
    }
);

link_message!(
    MasterToCluster,
    |s, out| {
        match s {
            MasterToCluster::Registered { cluster_id } => {
                out.put_u8(tag::REGISTERED);
                out.put_u64(*cluster_id);
                Ok(())
            }
            MasterToCluster::TransferReady {
                request_id,
                client_id,
                ticket,
            } => {
                out.put_u8(tag::TRANSFER_READY);
                out.put_u64(*request_id);
                out.put_u64(*client_id);
                ticket.encode(out)
            }
            MasterToCluster::TransferFailed {
                request_id,
                client_id,
                reason,
            } => {
                out.put_u8(tag::TRANSFER_FAILED);
                out.put_u64(*request_id);
                out.put_u64(*client_id);
                reason.encode(out)
            }
            MasterToCluster::InstanceReady {
                request_id,
                cluster_id,
            } => {
                out.put_u8(tag::INSTANCE_READY);
                out.put_u64(*request_id);
                out.put_u64(*cluster_id);
                Ok(())
            }
            MasterToCluster::InstanceFailed { request_id, reason } => {
                out.put_u8(tag::INSTANCE_FAILED);
                out.put_u64(*request_id);
                reason.encode(out)
            }
            MasterToCluster::Ping(_)
            | MasterToCluster::Pong(_)
            | MasterToCluster::Disconnect(_) => unreachable_common(),
        }
    },
    |t, r| {
        match t {
            tag::REGISTERED => MasterToCluster::Registered {
                cluster_id: r.u64()?,
            },
            tag::TRANSFER_READY => MasterToCluster::TransferReady {
                request_id: r.u64()?,
                client_id: r.u64()?,
                ticket: Ticket::decode(&mut r)?,
            },
            tag::TRANSFER_FAILED => MasterToCluster::TransferFailed {
                request_id: r.u64()?,
                client_id: r.u64()?,
                reason: Goodbye::decode(&mut r)?,
            },
            tag::INSTANCE_READY => MasterToCluster::InstanceReady {
                request_id: r.u64()?,
                cluster_id: r.u64()?,
            },
            tag::INSTANCE_FAILED => MasterToCluster::InstanceFailed {
                request_id: r.u64()?,
                reason: Goodbye::decode(&mut r)?,
            },
            other => return Err(DecodeError::UnknownType(other)),
        }
    }
);

link_message!(
    ClientToMaster,
    |s, out| {
        match s {
            ClientToMaster::Login { username, secret } => {
                out.put_u8(tag::LOGIN);
                out.put_str16(username, USERNAME_MAX)?;
                out.put_bytes16(secret, SECRET_MAX)
            }
            ClientToMaster::ListClusters => {
                out.put_u8(tag::LIST_CLUSTERS);
                Ok(())
            }
            ClientToMaster::Join(target) => {
                out.put_u8(tag::JOIN);
                match target {
                    JoinTarget::Auto => out.put_u8(0),
                    JoinTarget::Id(id) => {
                        out.put_u8(1);
                        out.put_u64(*id);
                    }
                }
                Ok(())
            }
            ClientToMaster::Ping(_) | ClientToMaster::Pong(_) | ClientToMaster::Disconnect(_) => {
                unreachable_common()
            }
        }
    },
    |t, r| {
        match t {
            tag::LOGIN => ClientToMaster::Login {
                username: r.str16(USERNAME_MAX)?,
                secret: r.bytes16(SECRET_MAX)?.to_vec(),
            },
            tag::LIST_CLUSTERS => ClientToMaster::ListClusters,
            tag::JOIN => ClientToMaster::Join(match r.u8()? {
                0 => JoinTarget::Auto,
                1 => JoinTarget::Id(r.u64()?),
                _ => return Err(DecodeError::Invalid("unknown join target kind")),
            }),
            other => return Err(DecodeError::UnknownType(other)),
        }
    }
);

link_message!(
    MasterToClient,
    |s, out| {
        match s {
            MasterToClient::LoginOk { client_id } => {
                out.put_u8(tag::LOGIN_OK);
                out.put_u64(*client_id);
                Ok(())
            }
            MasterToClient::LoginFailed { message } => {
                out.put_u8(tag::LOGIN_FAILED);
                out.put_str16(message, TEXT_MAX)
            }
            MasterToClient::ClusterList(list) => {
                out.put_u8(tag::CLUSTER_LIST);
                let n = u16::try_from(list.len())
                    .ok()
                    .filter(|n| usize::from(*n) <= CLUSTER_LIST_MAX)
                    .ok_or(EncodeError::TooLong {
                        len: list.len(),
                        max: CLUSTER_LIST_MAX,
                    })?;
                out.put_u16(n);
                list.iter().try_for_each(|c| c.encode(out))
            }
            MasterToClient::Ticket(ticket) => {
                out.put_u8(tag::TICKET);
                ticket.encode(out)
            }
            MasterToClient::JoinFailed(g) => {
                out.put_u8(tag::JOIN_FAILED);
                g.encode(out)
            }
            MasterToClient::Ping(_) | MasterToClient::Pong(_) | MasterToClient::Disconnect(_) => {
                unreachable_common()
            }
        }
    },
    |t, r| {
        match t {
            tag::LOGIN_OK => MasterToClient::LoginOk {
                client_id: r.u64()?,
            },
            tag::LOGIN_FAILED => MasterToClient::LoginFailed {
                message: r.str16(TEXT_MAX)?,
            },
            tag::CLUSTER_LIST => {
                let n = usize::from(r.u16()?);
                if n > CLUSTER_LIST_MAX {
                    return Err(DecodeError::TooLong {
                        len: n,
                        max: CLUSTER_LIST_MAX,
                    });
                }
                // Each entry is at least 25 bytes; a count the body cannot
                // hold is refused before reserving room for it.
                if n.saturating_mul(25) > r.remaining() {
                    return Err(DecodeError::Truncated);
                }
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(ClusterInfo::decode(&mut r)?);
                }
                MasterToClient::ClusterList(list)
            }
            tag::TICKET => MasterToClient::Ticket(Ticket::decode(&mut r)?),
            tag::JOIN_FAILED => MasterToClient::JoinFailed(Goodbye::decode(&mut r)?),
            other => return Err(DecodeError::UnknownType(other)),
        }
    }
);

link_message!(
    ClientToCluster,
    |s, out| {
        match s {
            ClientToCluster::Data { command, payload } => {
                out.put_u8(tag::DATA_TO_CLUSTER);
                out.put_u16(*command);
                out.put_bytes32(payload, DATA_MAX)
            }
            ClientToCluster::Ack(n) => {
                out.put_u8(tag::ACK_TO_CLUSTER);
                out.put_u64(*n);
                Ok(())
            }
            ClientToCluster::Ping(_)
            | ClientToCluster::Pong(_)
            | ClientToCluster::Disconnect(_) => unreachable_common(),
        }
    },
    |t, r| {
        match t {
            tag::DATA_TO_CLUSTER => ClientToCluster::Data {
                command: r.u16()?,
                payload: r.bytes32(DATA_MAX)?.to_vec(),
            },
            tag::ACK_TO_CLUSTER => ClientToCluster::Ack(r.u64()?),
            other => return Err(DecodeError::UnknownType(other)),
        }
    }
);

link_message!(
    ClusterToClient,
    |s, out| {
        match s {
            ClusterToClient::Welcome {
                player_id,
                session_id,
                udp_port,
            } => {
                out.put_u8(tag::WELCOME);
                out.put_u64(*player_id);
                out.put_u64(*session_id);
                out.put_u16(*udp_port);
                Ok(())
            }
            ClusterToClient::Data { command, payload } => {
                out.put_u8(tag::DATA_TO_CLIENT);
                out.put_u16(*command);
                out.put_bytes32(payload, DATA_MAX)
            }
            ClusterToClient::Redirect(ticket) => {
                out.put_u8(tag::REDIRECT);
                ticket.encode(out)
            }
            ClusterToClient::Ack(n) => {
                out.put_u8(tag::ACK_TO_CLIENT);
                out.put_u64(*n);
                Ok(())
            }
            ClusterToClient::Resumed { received } => {
                out.put_u8(tag::RESUMED);
                out.put_u64(*received);
                Ok(())
            }
            ClusterToClient::Ping(_)
            | ClusterToClient::Pong(_)
            | ClusterToClient::Disconnect(_) => unreachable_common(),
        }
    },
    |t, r| {
        match t {
            tag::WELCOME => ClusterToClient::Welcome {
                player_id: r.u64()?,
                session_id: r.u64()?,
                udp_port: r.u16()?,
            },
            tag::DATA_TO_CLIENT => ClusterToClient::Data {
                command: r.u16()?,
                payload: r.bytes32(DATA_MAX)?.to_vec(),
            },
            tag::REDIRECT => ClusterToClient::Redirect(Ticket::decode(&mut r)?),
            tag::ACK_TO_CLIENT => ClusterToClient::Ack(r.u64()?),
            tag::RESUMED => ClusterToClient::Resumed { received: r.u64()? },
            other => return Err(DecodeError::UnknownType(other)),
        }
    }
);

/// The shared arms are matched before the per-link ones, so this is never
/// reached; it returns Ok so a future refactor cannot turn it into a panic.
pub(crate) fn unreachable_common() -> Result<(), EncodeError> {
    Ok(())
}
