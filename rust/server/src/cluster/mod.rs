//! The cluster server: accepts players holding a ticket, carries their
//! reliable (TCP) and unreliable (UDP) traffic, and stays registered with the
//! master.
//!
//! Tasks: an accept loop, a reader and a writer per player, one UDP receiver,
//! the master link, and the *core*, which owns the player table and runs the
//! plugin. Everything that changes the table goes through the core's event
//! queue, so the plugin sees one consistent sequence of events and needs no
//! locks. A player whose send queue is full is disconnected with
//! `SendQueueFull`; nothing grows without bound.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use sustenet_net::{FrameReader, NetError, SealedReader, SealedWriter, write_frame};
use sustenet_proto::crypto::{
    ClientSessionKeys, DATAGRAM_OVERHEAD, DatagramOpener, DatagramSealer, DatagramSession,
    StreamSession, datagram_session_id,
};
use sustenet_proto::datagram::{self, MAX_DATAGRAM, MAX_UNRELIABLE_PAYLOAD, Record};
use sustenet_proto::handshake::{self, ClusterInitiator, Hello, ResumeClaim};
use sustenet_proto::resume::{ReplayLog, Rewind};
use sustenet_proto::{
    ClientToCluster, ClusterToClient, ClusterToMaster, DisconnectReason, Goodbye, Key,
    MasterToCluster, Message, Register, Side, Status, UsedTokens,
};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::Limits;
use crate::error::ServerError;
use crate::fragments::{
    FragmentError, FragmentEvent, FragmentId, FragmentSettings, Fragments, GridConfig, Seeded,
};
use crate::plugin::{Channel, PlayerId, Plugin};
use crate::time::now_ms;

mod path;
mod ping_limit;
use path::{Source, UdpPath};
use ping_limit::PingLimiter;

/// How a cluster runs.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Display name in the cluster list.
    pub name: String,
    /// The address clients are told to connect to.
    pub public_address: String,
    /// Most players at once; 0 means no limit.
    pub max_connections: u32,
    /// The master's `host:port`.
    pub master_addr: String,
    /// The name of this cluster's key, as the master knows it.
    pub key_name: String,
    /// This cluster's id; random when `None`. Kept across re-registrations.
    pub cluster_id: Option<u64>,
    /// How often the load is reported to the master.
    pub status_interval: Duration,
    /// Longest wait between attempts to reach the master.
    pub reconnect_max: Duration,
    /// Most ping requests (from clients choosing a cluster) answered per second.
    pub ping_rate: u32,
    /// Most ping requests answered per second to one source (an IPv4
    /// address or an IPv6 /64), in bursts of as many: a flood from one
    /// source does not starve the others.
    pub ping_rate_per_source: u32,
    /// Most ping sources tracked at once (about 40 bytes each); when full,
    /// idle ones are forgotten and requests of new ones are dropped.
    pub ping_sources: usize,
    /// The world's fragment grid: cell size, 2D or 3D, default cap, update
    /// rate and interest radius.
    pub grid: GridConfig,
    /// How often due fragments are checked and their state updates sent;
    /// the highest update rate any fragment can get is `1 / update_tick`.
    pub update_tick: Duration,
    /// The TCP port clients are told to connect to; `None` means the port
    /// the cluster listens on. Set it when clients reach the cluster through
    /// a port-forwarding proxy or NAT.
    pub public_tcp_port: Option<u16>,
    /// The UDP port clients are told to send datagrams to (in the Welcome);
    /// `None` means the port of the UDP socket the cluster was given.
    pub public_udp_port: Option<u16>,
    /// How long a player whose connection dropped keeps its seat, waiting
    /// for it to reconnect with the same id; zero turns reconnects off.
    pub resume_grace: Duration,
    /// How long a player's validated UDP address may stay silent and still
    /// receive datagrams. After that the cluster sends it nothing until a
    /// datagram from it echoes a new challenge (docs/protocol.md §10.4);
    /// clients send a datagram at least this often (the Rust client's
    /// heartbeat Ping).
    pub udp_silence: Duration,
    /// Most bytes of reliable messages kept per player for a reconnect: those
    /// sent and not yet acknowledged, and those sent while it is away. A
    /// player away longer than this allows is let go with `SendQueueFull`.
    pub resume_buffer: usize,
    /// Frame, queue and timing limits.
    pub limits: Limits,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            name: "Sustenet Cluster".into(),
            public_address: "127.0.0.1".into(),
            max_connections: 0,
            master_addr: format!("127.0.0.1:{}", sustenet_proto::DEFAULT_MASTER_PORT),
            key_name: "cluster_key".into(),
            cluster_id: None,
            status_interval: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(10),
            ping_rate: 2_000,
            ping_rate_per_source: 32,
            ping_sources: 4_096,
            grid: GridConfig::default(),
            update_tick: Duration::from_millis(10),
            public_tcp_port: None,
            public_udp_port: None,
            resume_grace: Duration::from_secs(30),
            udp_silence: Duration::from_secs(10),
            resume_buffer: 256 * 1024,
            limits: Limits::default(),
        }
    }
}

/// A send to a player could not be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SendError {
    /// No player with that id is connected.
    #[error("no player {0} is connected")]
    UnknownPlayer(PlayerId),
    /// The payload is over the limit: the unreliable one (send it reliably),
    /// or the frame limit for reliable messages (split it up).
    #[error("payload of {len} bytes is over the limit of {max} for this channel")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The player has no validated UDP address: it has sent no datagram
    /// yet, has not answered its address challenge, or has been silent for
    /// longer than [`ClusterConfig::udp_silence`].
    #[error("player {0} has no validated UDP address")]
    NoUdpAddress(PlayerId),
    /// The player's send queue was full; it is being disconnected.
    #[error("player {0} could not keep up and is being disconnected")]
    QueueFull(PlayerId),
    /// The cluster's command queue is full or the cluster stopped.
    #[error("the cluster is not running or its command queue is full")]
    Stopped,
    /// The player is being moved to another cluster: it was sent its
    /// redirect, and everything for it now goes to the target cluster.
    #[error("player {0} is moving to another cluster")]
    Transferring(PlayerId),
    /// A transfer cannot be asked for now (already moving, no master link,
    /// data too large).
    #[error("cannot transfer player {player}: {why}")]
    TransferRefused {
        /// The player.
        player: PlayerId,
        /// Why.
        why: &'static str,
    },
}

/// The state of the link to the master, as the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterLinkStatus {
    /// Registered (again) with the master.
    Registered {
        /// The id this cluster is listed under.
        cluster_id: u64,
    },
    /// The link to the master was lost; players stay connected and the
    /// cluster keeps trying to re-register.
    Lost {
        /// Why.
        message: String,
    },
}

struct Player {
    /// The writer of the current connection; `None` while the player is
    /// away (its connection dropped and it may reconnect).
    out: Option<mpsc::Sender<ClusterToClient>>,
    kill: Option<oneshot::Sender<(Goodbye, bool)>>,
    /// The current connection; events of an older one are ignored.
    conn: u64,
    session_id: u64,
    udp: DatagramSealer,
    /// Where its datagrams go, once proven (see [`path`]).
    path: UdpPath,
    /// Set once the redirect to another cluster is decided: nothing more is
    /// sent, and the player is removed when it closes (or at this deadline).
    redirected: Option<Instant>,
    /// The redirect's ticket, kept so that a player whose connection drops
    /// before it read the redirect gets it again when it reconnects.
    redirect: Option<Box<sustenet_proto::Ticket>>,
    /// Reliable messages kept for a reconnect; `None` when reconnects are off.
    replay: Option<ReplayLog>,
    /// While the player is away: when its seat is given up.
    away_until: Option<Instant>,
    /// The highest reconnect attempt accepted in this session.
    last_attempt: u64,
}

/// Sessions that can be resumed, by session id: the connection tasks check
/// a reconnect's proof here, off the core task, and only pass on proven ones.
type Sessions = Mutex<HashMap<u64, (PlayerId, Arc<ClientSessionKeys>)>>;

/// Sets (`Some`) or removes (`None`) an entry of a map shared with other
/// tasks; a poisoned lock is used as is (the map holds no invariant a
/// panic could break).
fn shared_set<K: std::hash::Hash + Eq, V>(m: &Mutex<HashMap<K, V>>, key: K, value: Option<V>) {
    let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
    match value {
        Some(v) => {
            m.insert(key, v);
        }
        None => {
            m.remove(&key);
        }
    }
}

/// Handoffs asked of the master and not answered yet.
struct Transfers {
    link: mpsc::Sender<LinkEvent>,
    next_id: u64,
    pending: HashMap<u64, (PlayerId, Instant)>,
    timeout: Duration,
    /// Players being moved, shared with the handles so they can refuse at
    /// once: false while the master is asked, true once redirected.
    moving: Moving,
}

/// Players being moved to another cluster (see [`Transfers::moving`]).
type Moving = Arc<Mutex<HashMap<PlayerId, bool>>>;

fn moving_set(m: &Moving, player: PlayerId, redirected: Option<bool>) {
    shared_set(m, player, redirected);
}

/// What the plugin can do from a callback.
pub struct Context<'a> {
    players: &'a mut HashMap<PlayerId, Player>,
    udp: &'a UdpSocket,
    removals: &'a mut Vec<(PlayerId, Goodbye)>,
    max_reliable: usize,
    transfers: &'a mut Transfers,
    world: &'a mut World,
    /// When the event being handled happened.
    now: Instant,
    /// [`ClusterConfig::udp_silence`].
    udp_silence: Duration,
}

/// The fragment grid, the players' latest states, and fragment events not
/// yet given to the plugin.
struct World {
    fragments: Fragments,
    /// Looked up once per record of the state fan-out, hence the cheap hash.
    states: HashMap<PlayerId, (u16, Vec<u8>), Seeded>,
    spread: Spread,
    events: Vec<FragmentEvent>,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("players", &self.players.len())
            .finish()
    }
}

impl Context<'_> {
    /// Sends a reliable message to one player.
    pub fn send(
        &mut self,
        player: PlayerId,
        command: u16,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if payload.len() > self.max_reliable {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: self.max_reliable,
            });
        }
        let p = self
            .players
            .get_mut(&player)
            .ok_or(SendError::UnknownPlayer(player))?;
        if p.redirected.is_some() {
            return Err(SendError::Transferring(player));
        }
        let connected = p.out.is_some();
        if let Some(log) = p.replay.as_mut() {
            log.push(command, payload.to_vec(), connected);
            if log.over_budget() {
                self.removals.push((
                    player,
                    Goodbye {
                        reason: DisconnectReason::SendQueueFull,
                        message: "too much was sent to the player while it was away".into(),
                    },
                ));
                return Err(SendError::QueueFull(player));
            }
        }
        let Some(out) = &p.out else {
            // Away: kept in the log, delivered when the player reconnects.
            return Ok(());
        };
        let msg = ClusterToClient::Data {
            command,
            payload: payload.to_vec(),
        };
        match queue(out, msg) {
            Ok(()) => Ok(()),
            Err(Full) => {
                self.removals
                    .push((player, Goodbye::new(DisconnectReason::SendQueueFull)));
                Err(SendError::QueueFull(player))
            }
        }
    }

    /// Sends an unreliable message to one player (at most
    /// [`MAX_UNRELIABLE_PAYLOAD`] bytes; larger ones are refused, never cut).
    pub fn send_unreliable(
        &mut self,
        player: PlayerId,
        command: u16,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if payload.len() > MAX_UNRELIABLE_PAYLOAD {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: MAX_UNRELIABLE_PAYLOAD,
            });
        }
        let p = self
            .players
            .get_mut(&player)
            .ok_or(SendError::UnknownPlayer(player))?;
        let addr = p
            .path
            .target(self.now, self.udp_silence)
            .ok_or(SendError::NoUdpAddress(player))?;
        send_records(
            self.udp,
            &mut p.udp,
            addr,
            &Record::Data {
                command,
                payload: payload.to_vec(),
            },
        );
        Ok(())
    }

    /// Sends a reliable message to every player, or every player but `except`.
    pub fn broadcast(&mut self, command: u16, payload: &[u8], except: Option<PlayerId>) {
        let ids: Vec<PlayerId> = self
            .players
            .keys()
            .copied()
            .filter(|id| Some(*id) != except)
            .collect();
        for id in ids {
            let _ = self.send(id, command, payload);
        }
    }

    /// Sends an unreliable message to every player with a known UDP address.
    pub fn broadcast_unreliable(
        &mut self,
        command: u16,
        payload: &[u8],
        except: Option<PlayerId>,
    ) -> Result<(), SendError> {
        if payload.len() > MAX_UNRELIABLE_PAYLOAD {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: MAX_UNRELIABLE_PAYLOAD,
            });
        }
        let ids: Vec<PlayerId> = self
            .players
            .keys()
            .copied()
            .filter(|id| Some(*id) != except)
            .collect();
        for id in ids {
            let _ = self.send_unreliable(id, command, payload);
        }
        Ok(())
    }

    /// Moves a player to another cluster (server meshing). The master issues
    /// a ticket for `target`; the player is redirected and `state` reaches
    /// the target's game with the player (`on_connect`'s user data).
    ///
    /// Delivery across the move: every reliable message this cluster sent
    /// before the redirect arrives before it; from the redirect on, sends to
    /// the player are refused with [`SendError::Transferring`]. Every message
    /// the client sent before it followed the redirect arrives here (the
    /// player stays until it closes); after that, its messages go to the
    /// target. Nothing is lost or duplicated and order holds per direction.
    /// If the master refuses, [`Plugin::on_transfer_failed`] is called.
    pub fn transfer(
        &mut self,
        player: PlayerId,
        target: u64,
        state: &[u8],
    ) -> Result<(), SendError> {
        let p = self
            .players
            .get(&player)
            .ok_or(SendError::UnknownPlayer(player))?;
        let refuse = |why| Err(SendError::TransferRefused { player, why });
        if p.away_until.is_some() {
            return refuse("the player is away, waiting to reconnect");
        }
        if p.redirected.is_some() || self.transfers.pending.values().any(|(pl, _)| *pl == player) {
            return refuse("a transfer is already under way");
        }
        if state.len() > sustenet_proto::message::USER_DATA_MAX {
            return refuse("the state is over 16 KiB");
        }
        let request_id = self.transfers.next_id;
        self.transfers.next_id += 1;
        let ev = LinkEvent::Transfer {
            request_id,
            player,
            target,
            state: state.to_vec(),
        };
        if self.transfers.link.try_send(ev).is_err() {
            return refuse("the link to the master is not keeping up");
        }
        let deadline = self.now + self.transfers.timeout;
        self.transfers
            .pending
            .insert(request_id, (player, deadline));
        moving_set(&self.transfers.moving, player, Some(false));
        Ok(())
    }

    /// Places a player in the world. Fragment changes reach the plugin's
    /// [`Plugin::on_fragment`] once the current callback returns.
    pub fn set_position(&mut self, player: PlayerId, pos: [f32; 3]) -> Result<(), FragmentError> {
        if !self.players.contains_key(&player) {
            return Err(FragmentError::UnknownPlayer(player));
        }
        let events = self.world.fragments.set_position(player, pos)?;
        self.world.events.extend(events.iter());
        Ok(())
    }

    /// A player's position, if it has one.
    pub fn position(&self, player: PlayerId) -> Option<[f32; 3]> {
        self.world.fragments.position(player)
    }

    /// The fragment a player is in.
    pub fn fragment_of(&self, player: PlayerId) -> Option<FragmentId> {
        self.world.fragments.fragment_of(player)
    }

    /// How far a player sees: updates about players within this distance reach it.
    pub fn set_interest_radius(
        &mut self,
        player: PlayerId,
        radius: f32,
    ) -> Result<(), FragmentError> {
        self.world.fragments.set_interest_radius(player, radius)
    }

    /// Overrides one fragment's cap and update rate.
    pub fn set_fragment_settings(
        &mut self,
        fragment: FragmentId,
        settings: FragmentSettings,
    ) -> Result<(), FragmentError> {
        let ev = self
            .world
            .fragments
            .set_fragment_settings(fragment, settings)?;
        self.world.events.extend(ev);
        Ok(())
    }

    /// Players within `radius` of `pos` (inclusive).
    pub fn nearby(&self, pos: [f32; 3], radius: f32) -> Vec<PlayerId> {
        self.world.fragments.nearby(pos, radius)
    }

    /// Sends to every player within `radius` of `pos` (but `except`);
    /// returns how many it was sent to.
    pub fn send_nearby(
        &mut self,
        pos: [f32; 3],
        radius: f32,
        command: u16,
        payload: &[u8],
        reliable: bool,
        except: Option<PlayerId>,
    ) -> Result<usize, SendError> {
        if !reliable && payload.len() > MAX_UNRELIABLE_PAYLOAD {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: MAX_UNRELIABLE_PAYLOAD,
            });
        }
        let targets = self.world.fragments.nearby(pos, radius);
        let mut n = 0;
        for id in targets.into_iter().filter(|id| Some(*id) != except) {
            let r = if reliable {
                self.send(id, command, payload)
            } else {
                self.send_unreliable(id, command, payload)
            };
            if r.is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Sets a player's latest state. At its fragment's update rate, every
    /// player whose interest area covers it receives it unreliably as
    /// `command` with the payload `player id (u64 LE) || state`, many such
    /// records coalesced into as few datagrams as fit the MTU.
    pub fn set_state(
        &mut self,
        player: PlayerId,
        command: u16,
        state: &[u8],
    ) -> Result<(), SendError> {
        let max = MAX_UNRELIABLE_PAYLOAD - 8;
        if state.len() > max {
            return Err(SendError::TooLarge {
                len: state.len(),
                max,
            });
        }
        if !self.players.contains_key(&player) {
            return Err(SendError::UnknownPlayer(player));
        }
        // Most players report every tick: reuse the buffer of the last one.
        let (c, s) = self.world.states.entry(player).or_default();
        *c = command;
        s.clear();
        s.extend_from_slice(state);
        Ok(())
    }

    /// Disconnects a player with reason `Kicked` and a message for it.
    pub fn kick(&mut self, player: PlayerId, message: &str) {
        if self.players.contains_key(&player) {
            self.removals.push((
                player,
                Goodbye {
                    reason: DisconnectReason::Kicked,
                    message: message.to_owned(),
                },
            ));
        }
    }

    /// The connected players.
    pub fn players(&self) -> Vec<PlayerId> {
        self.players.keys().copied().collect()
    }

    /// How many players are connected.
    pub fn player_count(&self) -> usize {
        self.players.len()
    }

    /// Whether a player is on this cluster (connected, or away and holding
    /// its seat for a reconnect).
    pub fn is_connected(&self, player: PlayerId) -> bool {
        self.players.contains_key(&player)
    }

    /// Whether a player's connection dropped and the cluster is waiting for
    /// it to reconnect.
    pub fn is_away(&self, player: PlayerId) -> bool {
        self.players
            .get(&player)
            .is_some_and(|p| p.away_until.is_some())
    }
}

/// A player's send queue is full.
struct Full;

/// Queues a message for a player's connection. A connection whose writer
/// has already stopped is not an error here: its reader reports the drop
/// (and with reconnects on, the reliable log still holds the message).
fn queue(out: &mpsc::Sender<ClusterToClient>, m: ClusterToClient) -> Result<(), Full> {
    match out.try_send(m) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => Err(Full),
    }
}

/// The recipients of the latest state update and what each must hear, served
/// in shares over the core ticks until the next update instead of all at
/// once. Fragments share one schedule, so every recipient's datagram of an
/// update is due on the same tick; sent in one go, that is a burst of one
/// datagram per player (2,000 at 2,000 players) that holds the core and
/// everything queued behind it (echoes, joins) for its whole length, and
/// reaches the clients' machines as one burst too. Served in shares, each
/// recipient still gets one datagram per update, with the states as they
/// are when it is sent.
#[derive(Debug, Default)]
struct Spread {
    /// Every recipient's subjects, one after the other.
    subjects: Vec<PlayerId>,
    /// Recipient and the range of `subjects` it hears about.
    recipients: Vec<(PlayerId, std::ops::Range<usize>)>,
    /// The first recipient not served yet.
    next: usize,
    /// Recipients served per core tick.
    share: usize,
}

impl Spread {
    fn clear(&mut self) {
        self.subjects.clear();
        self.recipients.clear();
        self.next = 0;
    }

    fn push(&mut self, recipient: PlayerId, subjects: &[PlayerId]) {
        let start = self.subjects.len();
        self.subjects.extend_from_slice(subjects);
        self.recipients
            .push((recipient, start..self.subjects.len()));
    }

    /// Spreads the recipients pushed since [`Spread::clear`] over `slices` ticks.
    fn plan(&mut self, slices: usize) {
        self.share = self.recipients.len().div_ceil(slices.max(1));
    }

    /// The recipients to serve now (indices for [`Spread::get`]): one
    /// tick's share, or with `all` every one not served yet.
    fn take(&mut self, all: bool) -> std::ops::Range<usize> {
        let end = if all {
            self.recipients.len()
        } else {
            (self.next + self.share).min(self.recipients.len())
        };
        let taken = self.next..end;
        self.next = end;
        taken
    }

    fn get(&self, i: usize) -> Option<(PlayerId, &[PlayerId])> {
        let (recipient, range) = self.recipients.get(i)?;
        Some((*recipient, self.subjects.get(range.clone())?))
    }
}

/// Sends state records to players, through buffers reused for a whole tick.
struct StateOut<'a> {
    udp: &'a UdpSocket,
    now: Instant,
    udp_silence: Duration,
    batch: datagram::Batch,
    sealed: Vec<u8>,
}

impl StateOut<'_> {
    /// What one recipient hears of an update: the latest state of each of
    /// its subjects, in as few datagrams as they fit (one, for up to about
    /// 40 states of 16 bytes). A recipient that left, was redirected or is
    /// away (reconnecting) since the fan-out, and subjects that left, are
    /// skipped.
    fn send(
        &mut self,
        players: &mut HashMap<PlayerId, Player>,
        states: &HashMap<PlayerId, (u16, Vec<u8>), Seeded>,
        recipient: PlayerId,
        subjects: &[PlayerId],
    ) {
        let Some(p) = players.get_mut(&recipient) else {
            return;
        };
        let target = p.path.target(self.now, self.udp_silence);
        let (Some(addr), None, None) = (target, p.redirected, p.away_until) else {
            return;
        };
        for subject in subjects {
            let Some((command, state)) = states.get(subject) else {
                continue;
            };
            let parts: [&[u8]; 2] = [&subject.to_le_bytes(), state];
            if !matches!(self.batch.push_data(*command, &parts), Ok(true)) {
                flush_batch(
                    self.udp,
                    &mut p.udp,
                    addr,
                    &mut self.batch,
                    &mut self.sealed,
                );
                let _ = self.batch.push_data(*command, &parts);
            }
        }
        flush_batch(
            self.udp,
            &mut p.udp,
            addr,
            &mut self.batch,
            &mut self.sealed,
        );
    }
}

/// What the cluster asks for its UDP socket's receive buffer (the kernel
/// caps it at `net.core.rmem_max`). Every player's datagrams arrive on this
/// one socket, and while the core seals a tick's fan-out the receiving task
/// may wait for a thread: at 2,000 players and 20 Hz a 20 ms wait is 800
/// datagrams, several times what a default buffer (about 200 KiB) holds.
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

fn widen_receive_buffer(udp: &UdpSocket) {
    let sock = socket2::SockRef::from(udp);
    if let Err(e) = sock.set_recv_buffer_size(UDP_RECEIVE_BUFFER) {
        debug!("cannot widen the UDP receive buffer: {e}");
    }
    if let Ok(n) = sock.recv_buffer_size() {
        debug!(bytes = n, "UDP receive buffer");
    }
}

/// Seals and sends what the batch holds (if anything) to one player,
/// through `sealed`, a buffer kept across calls; leaves the batch empty.
fn flush_batch(
    udp: &UdpSocket,
    sealer: &mut DatagramSealer,
    addr: SocketAddr,
    batch: &mut datagram::Batch,
    sealed: &mut Vec<u8>,
) {
    if batch.is_empty() {
        return;
    }
    match sealer.seal_into(batch.as_bytes(), sealed) {
        // Unreliable: a full socket buffer drops the datagram, as the network would.
        Ok(()) => {
            let _ = udp.try_send_to(sealed, addr);
        }
        Err(e) => debug!("cannot seal datagram: {e}"),
    }
    batch.clear();
}

fn send_records(udp: &UdpSocket, sealer: &mut DatagramSealer, addr: SocketAddr, record: &Record) {
    let Ok(plain) = datagram::single(record) else {
        return;
    };
    send_plain(udp, sealer, addr, &plain);
}

fn send_plain(udp: &UdpSocket, sealer: &mut DatagramSealer, addr: SocketAddr, plain: &[u8]) {
    match sealer.seal(plain) {
        // Unreliable: a full socket buffer drops the datagram, as the network would.
        Ok(d) => {
            let _ = udp.try_send_to(&d, addr);
        }
        Err(e) => debug!("cannot seal datagram: {e}"),
    }
}

/// Handles an authenticated datagram of `len` bytes that came from `from`:
/// moves the player's address only once `from` proved itself (its
/// `PathResponse`), answers with at most one datagram (the challenge for an
/// unproven source, the `Pong` to the datagram's last `Ping`), within the
/// source's allowance, and returns the data records for the plugin.
fn on_datagram(
    udp: &UdpSocket,
    p: &mut Player,
    now: Instant,
    silence: Duration,
    from: SocketAddr,
    len: usize,
    records: Vec<Record>,
) -> Vec<(u16, Vec<u8>)> {
    let source = p
        .path
        .on_datagram(now, silence, from, len, || rand::rng().next_u64());
    let mut ping = None;
    let mut data = Vec::new();
    let mut proven = false;
    for r in records {
        match r {
            Record::Data { command, payload } => data.push((command, payload)),
            Record::Ping(v) => ping = Some(v),
            Record::PathResponse(v) => proven |= p.path.on_response(now, from, v),
            Record::Pong(_) | Record::PathChallenge(_) => {}
        }
    }
    if proven {
        debug!(%from, "player's UDP address validated");
    }
    let challenge = match source {
        Source::Candidate { challenge } if !proven => Some(challenge),
        _ => None,
    };
    let mut answer: Vec<Record> = challenge
        .map(Record::PathChallenge)
        .into_iter()
        .chain(ping.map(Record::Pong))
        .collect();
    let size = |r: &[Record]| DATAGRAM_OVERHEAD + r.iter().map(Record::encoded_len).sum::<usize>();
    // The challenge first: a source whose allowance is too small for both
    // gets only the challenge.
    while !answer.is_empty() && !p.path.spend(from, size(&answer)) {
        answer.pop();
    }
    if !answer.is_empty() {
        let mut batch = datagram::Batch::new();
        for r in &answer {
            let _ = batch.push(r);
        }
        send_plain(udp, &mut p.udp, from, batch.as_bytes());
    }
    data
}

/// Commands from outside the cluster (a game engine binding, an admin tool).
#[derive(Debug)]
enum Command {
    SetPosition {
        player: PlayerId,
        pos: [f32; 3],
    },
    SetState {
        player: PlayerId,
        command: u16,
        state: Vec<u8>,
    },
    SendNearby {
        pos: [f32; 3],
        radius: f32,
        command: u16,
        payload: Vec<u8>,
        reliable: bool,
        except: Option<PlayerId>,
    },
    Transfer {
        player: PlayerId,
        target: u64,
        state: Vec<u8>,
    },
    Send {
        player: PlayerId,
        command: u16,
        payload: Vec<u8>,
        reliable: bool,
    },
    Broadcast {
        command: u16,
        payload: Vec<u8>,
        reliable: bool,
        except: Option<PlayerId>,
    },
    Kick {
        player: PlayerId,
        message: String,
    },
}

/// Sends commands to a running cluster from any thread or task. Methods
/// never block: a full command queue is reported as [`SendError::Stopped`].
#[derive(Debug, Clone)]
pub struct ClusterHandle {
    tx: mpsc::Sender<Command>,
    max_reliable: Arc<AtomicUsize>,
    moving: Moving,
}

/// The receiving end of a [`ClusterHandle`], passed to [`run_with_handle`].
#[derive(Debug)]
pub struct ClusterCommands {
    rx: mpsc::Receiver<Command>,
    max_reliable: Arc<AtomicUsize>,
    moving: Moving,
}

/// A handle and its command queue (of `capacity` commands).
pub fn command_channel(capacity: usize) -> (ClusterHandle, ClusterCommands) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    // Known once the cluster runs with its frame limit; until then the core checks.
    let max_reliable = Arc::new(AtomicUsize::new(usize::MAX));
    let moving = Moving::default();
    (
        ClusterHandle {
            tx,
            max_reliable: max_reliable.clone(),
            moving: moving.clone(),
        },
        ClusterCommands {
            rx,
            max_reliable,
            moving,
        },
    )
}

impl ClusterHandle {
    fn check_size(&self, len: usize, reliable: bool) -> Result<(), SendError> {
        let max = if reliable {
            self.max_reliable.load(Ordering::Relaxed)
        } else {
            MAX_UNRELIABLE_PAYLOAD
        };
        if len > max {
            return Err(SendError::TooLarge { len, max });
        }
        Ok(())
    }

    fn push(&self, c: Command) -> Result<(), SendError> {
        self.tx.try_send(c).map_err(|_| SendError::Stopped)
    }

    /// `Some(true)` once the player's redirect is queued, `Some(false)` while
    /// its transfer is asked of the master.
    fn moving(&self, player: PlayerId) -> Option<bool> {
        self.moving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&player)
            .copied()
    }

    /// Sends a message to one player, reliably or not.
    pub fn send(
        &self,
        player: PlayerId,
        command: u16,
        payload: Vec<u8>,
        reliable: bool,
    ) -> Result<(), SendError> {
        if self.moving(player) == Some(true) {
            return Err(SendError::Transferring(player));
        }
        self.check_size(payload.len(), reliable)?;
        self.push(Command::Send {
            player,
            command,
            payload,
            reliable,
        })
    }

    /// Sends a message to every player (but `except`).
    pub fn broadcast(
        &self,
        command: u16,
        payload: Vec<u8>,
        reliable: bool,
        except: Option<PlayerId>,
    ) -> Result<(), SendError> {
        self.check_size(payload.len(), reliable)?;
        self.push(Command::Broadcast {
            command,
            payload,
            reliable,
            except,
        })
    }

    /// Places a player in the world; see [`Context::set_position`].
    pub fn set_position(&self, player: PlayerId, pos: [f32; 3]) -> Result<(), SendError> {
        self.push(Command::SetPosition { player, pos })
    }

    /// Sets a player's latest state; see [`Context::set_state`].
    pub fn set_state(
        &self,
        player: PlayerId,
        command: u16,
        state: Vec<u8>,
    ) -> Result<(), SendError> {
        if state.len() > MAX_UNRELIABLE_PAYLOAD - 8 {
            return Err(SendError::TooLarge {
                len: state.len(),
                max: MAX_UNRELIABLE_PAYLOAD - 8,
            });
        }
        self.push(Command::SetState {
            player,
            command,
            state,
        })
    }

    /// Sends to every player within `radius` of `pos`; see [`Context::send_nearby`].
    pub fn send_nearby(
        &self,
        pos: [f32; 3],
        radius: f32,
        command: u16,
        payload: Vec<u8>,
        reliable: bool,
        except: Option<PlayerId>,
    ) -> Result<(), SendError> {
        self.check_size(payload.len(), reliable)?;
        self.push(Command::SendNearby {
            pos,
            radius,
            command,
            payload,
            reliable,
            except,
        })
    }

    /// Moves a player to another cluster with a state blob; see [`Context::transfer`].
    pub fn transfer(&self, player: PlayerId, target: u64, state: Vec<u8>) -> Result<(), SendError> {
        if state.len() > sustenet_proto::message::USER_DATA_MAX {
            return Err(SendError::TransferRefused {
                player,
                why: "the state is over 16 KiB",
            });
        }
        if self.moving(player).is_some() {
            return Err(SendError::TransferRefused {
                player,
                why: "a transfer is already under way",
            });
        }
        self.push(Command::Transfer {
            player,
            target,
            state,
        })
    }

    /// Kicks a player with a message.
    pub fn kick(&self, player: PlayerId, message: impl Into<String>) -> Result<(), SendError> {
        self.push(Command::Kick {
            player,
            message: message.into(),
        })
    }
}

enum CoreEvent {
    Join {
        player: PlayerId,
        conn: u64,
        session_id: u64,
        user_data: Vec<u8>,
        out: mpsc::Sender<ClusterToClient>,
        kill: oneshot::Sender<(Goodbye, bool)>,
        keys: Arc<ClientSessionKeys>,
        udp: Box<DatagramSession>,
        reply: oneshot::Sender<Result<(), Goodbye>>,
    },
    /// A reconnect to `session_id`, its proof already checked, on connection
    /// `conn`.
    Resume {
        conn: u64,
        player: PlayerId,
        session_id: u64,
        session: Box<StreamSession>,
        claim: ResumeClaim,
        reply: oneshot::Sender<Result<Resumed, Goodbye>>,
    },
    Packet {
        player: PlayerId,
        conn: u64,
        command: u16,
        payload: Vec<u8>,
    },
    /// The player has received this many of the session's data messages.
    Ack {
        player: PlayerId,
        conn: u64,
        count: u64,
    },
    Left {
        player: PlayerId,
        conn: u64,
        reason: DisconnectReason,
    },
    /// An authenticated datagram of `len` bytes from `addr`.
    Udp {
        player: PlayerId,
        session_id: u64,
        addr: SocketAddr,
        len: usize,
        records: Vec<Record>,
    },
    Snapshot(oneshot::Sender<Vec<PlayerId>>),
    TransferReady {
        request_id: u64,
        player: PlayerId,
        ticket: Box<sustenet_proto::Ticket>,
    },
    TransferFailed {
        request_id: u64,
        player: PlayerId,
        reason: Goodbye,
    },
    Master(MasterLinkStatus),
}

/// What the core gives a connection whose reconnect it accepted.
struct Resumed {
    player: PlayerId,
    session: Box<StreamSession>,
    /// Data messages of the client's that the cluster had received.
    received: u64,
    out: mpsc::Sender<ClusterToClient>,
    /// Holds the messages to send again, then everything new.
    out_rx: mpsc::Receiver<ClusterToClient>,
    kill: oneshot::Receiver<(Goodbye, bool)>,
}

enum UdpControl {
    Add {
        session_id: u64,
        player: PlayerId,
        opener: Box<DatagramOpener>,
    },
    Remove {
        session_id: u64,
    },
}

enum LinkEvent {
    Joined(PlayerId),
    Left(PlayerId),
    Transfer {
        request_id: u64,
        player: PlayerId,
        target: u64,
        state: Vec<u8>,
    },
}

struct Shared {
    config: ClusterConfig,
    key: Key,
    cluster_id: u64,
    tcp_port: u16,
    udp_port: u16,
    player_count: AtomicUsize,
    used_tokens: Mutex<UsedTokens>,
    handshakes: Semaphore,
    events: mpsc::Sender<CoreEvent>,
    resync: AtomicBool,
    sessions: Sessions,
    /// Numbers the player connections, so events of a connection the
    /// player has left behind (after a reconnect) are told apart.
    next_conn: AtomicU64,
    /// Largest reliable payload that fits the frame limit.
    max_reliable: usize,
    /// Occupied fragments, for the status report.
    fragment_count: AtomicUsize,
    shutdown: watch::Receiver<bool>,
}

/// Runs a cluster with no outside commands. See [`run_with_handle`].
pub async fn run(
    tcp: TcpListener,
    udp: UdpSocket,
    config: ClusterConfig,
    key: Key,
    plugin: impl Plugin,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let (_handle, commands) = command_channel(1);
    run_with_handle(tcp, udp, config, key, plugin, commands, shutdown).await
}

/// Runs a cluster on already-bound sockets until `shutdown` completes,
/// taking commands from the [`ClusterHandle`] paired with `commands`.
/// On shutdown every player is told `ServerShutdown` and the master is told
/// the cluster is leaving.
pub async fn run_with_handle(
    tcp: TcpListener,
    udp: UdpSocket,
    config: ClusterConfig,
    key: Key,
    mut plugin: impl Plugin,
    mut commands: ClusterCommands,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let tcp_port = config.public_tcp_port.unwrap_or(tcp.local_addr()?.port());
    let udp_port = config.public_udp_port.unwrap_or(udp.local_addr()?.port());
    // Below 2^63, so engines with signed 64-bit integers see it positive.
    let cluster_id = config
        .cluster_id
        .unwrap_or_else(|| rand::rng().next_u64() >> 1);
    let max_reliable = config
        .limits
        .max_frame
        .saturating_sub(sustenet_proto::message::RELIABLE_OVERHEAD);
    commands.max_reliable.store(max_reliable, Ordering::Relaxed);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (events_tx, mut events_rx) = mpsc::channel::<CoreEvent>(16_384);
    let (udp_ctl_tx, udp_ctl_rx) = mpsc::channel::<UdpControl>(16_384);
    let (link_tx, link_rx) = mpsc::channel::<LinkEvent>(65_536);
    widen_receive_buffer(&udp);
    let udp = Arc::new(udp);
    let shared = Arc::new(Shared {
        handshakes: Semaphore::new(config.limits.max_handshakes),
        config,
        key,
        cluster_id,
        tcp_port,
        udp_port,
        player_count: AtomicUsize::new(0),
        used_tokens: Mutex::new(UsedTokens::new()),
        events: events_tx,
        resync: AtomicBool::new(false),
        sessions: Mutex::new(HashMap::new()),
        next_conn: AtomicU64::new(1),
        max_reliable,
        fragment_count: AtomicUsize::new(0),
        shutdown: stop_rx,
    });
    info!(
        cluster_id,
        name = %shared.config.name,
        tcp = %tcp.local_addr()?,
        udp = %udp.local_addr()?,
        master = %shared.config.master_addr,
        "cluster listening"
    );

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(accept_loop(shared.clone(), tcp).instrument(info_span!("accept")));
    tasks.spawn(udp_loop(shared.clone(), udp.clone(), udp_ctl_rx).instrument(info_span!("udp")));
    tasks.spawn(master_link(shared.clone(), link_rx).instrument(info_span!("master_link")));

    let mut players: HashMap<PlayerId, Player> = HashMap::new();
    let mut removals: Vec<(PlayerId, Goodbye)> = Vec::new();
    let mut gone_sessions: Vec<u64> = Vec::new();
    let mut world = World {
        fragments: Fragments::new(shared.config.grid).map_err(|e| {
            ServerError::Config(crate::config::ConfigError::Invalid {
                path: "<cluster config>".into(),
                key: "grid".into(),
                message: e.to_string(),
            })
        })?,
        states: HashMap::with_hasher(Seeded::new()),
        spread: Spread::default(),
        events: Vec::new(),
    };
    let update_tick = shared.config.update_tick.max(Duration::from_millis(1));
    let mut update = tokio::time::interval(update_tick);
    // Core ticks per period of the default update rate: each update's
    // recipients are served in this many shares (see `Spread`).
    let update_slices = usize::try_from(
        shared.config.grid.default_settings.period().as_nanos() / update_tick.as_nanos(),
    )
    .unwrap_or(1)
    .max(1);
    update.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut transfers = Transfers {
        link: link_tx.clone(),
        next_id: 1,
        pending: HashMap::new(),
        timeout: shared
            .config
            .limits
            .handshake_timeout()
            .max(Duration::from_secs(5)),
        moving: commands.moving.clone(),
    };
    let limits = shared.config.limits;
    let mut tick = tokio::time::interval(limits.heartbeat());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    macro_rules! ctx {
        () => {
            Context {
                players: &mut players,
                udp: &udp,
                removals: &mut removals,
                max_reliable: shared.max_reliable,
                transfers: &mut transfers,
                world: &mut world,
                now: Instant::now(),
                udp_silence: shared.config.udp_silence,
            }
        };
    }

    plugin.on_start(&mut ctx!());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(ev) = events_rx.recv() => match ev {
                CoreEvent::Join { player, conn, session_id, user_data, out, kill, keys, udp: udp_session, reply } => {
                    let DatagramSession { sealer: udp_sealer, opener: udp_opener } = *udp_session;
                    let cap = shared.config.max_connections as usize;
                    if cap > 0 && players.len() >= cap && !players.contains_key(&player) {
                        let _ = reply.send(Err(Goodbye { reason: DisconnectReason::ServerFull, message: "the cluster is full".into() }));
                        continue;
                    }
                    if players.contains_key(&player) {
                        // The same player connecting again (a new ticket):
                        // the newest connection wins.
                        removals.push((player, Goodbye { reason: DisconnectReason::Kicked, message: "connected again from elsewhere".into() }));
                        apply_removals(&mut players, &mut removals, &mut plugin, &udp, &mut gone_sessions, &mut transfers, &mut world, &shared);
                        for session_id in gone_sessions.drain(..) {
                            let _ = udp_ctl_tx.send(UdpControl::Remove { session_id }).await;
                        }
                    }
                    // The UDP session is known before the player hears
                    // Welcome, so its very first datagram is not dropped.
                    let _ = udp_ctl_tx.send(UdpControl::Add { session_id, player, opener: Box::new(udp_opener) }).await;
                    if reply.send(Ok(())).is_err() {
                        let _ = udp_ctl_tx.try_send(UdpControl::Remove { session_id });
                        continue;
                    }
                    let replay = (!shared.config.resume_grace.is_zero()).then(|| ReplayLog::new(shared.config.resume_buffer));
                    if replay.is_some() {
                        shared_set(&shared.sessions, session_id, Some((player, keys)));
                    }
                    players.insert(player, Player {
                        out: Some(out),
                        kill: Some(kill),
                        conn,
                        session_id,
                        udp: udp_sealer,
                        path: UdpPath::default(),
                        redirected: None,
                        redirect: None,
                        replay,
                        away_until: None,
                        last_attempt: 0,
                    });
                    shared.player_count.store(players.len(), Ordering::Relaxed);
                    link_event(&link_tx, &shared, LinkEvent::Joined(player));
                    info!(player, players = players.len(), "player connected");
                    plugin.on_connect(&mut ctx!(), player, &user_data);
                }
                CoreEvent::Packet { player, conn, command, payload } => {
                    // A late packet of a connection the player has left
                    // behind was counted (or sent again) on the new one.
                    let Some(p) = players.get_mut(&player).filter(|p| p.conn == conn) else { continue };
                    if let Some(log) = p.replay.as_mut()
                        && log.on_received(payload.len())
                        && let Some(out) = &p.out
                        && queue(out, ClusterToClient::Ack(log.received())).is_ok()
                    {
                        log.mark_acked();
                    }
                    plugin.on_packet(&mut ctx!(), player, command, &payload, Channel::Reliable);
                }
                CoreEvent::Ack { player, conn, count } => {
                    if let Some(log) = players.get_mut(&player).filter(|p| p.conn == conn).and_then(|p| p.replay.as_mut()) {
                        log.ack(count);
                    }
                }
                CoreEvent::Left { player, conn, reason } => {
                    let grace = shared.config.resume_grace;
                    let Some(p) = players.get_mut(&player).filter(|p| p.conn == conn) else { continue };
                    let dropped = matches!(reason, DisconnectReason::ConnectionLost | DisconnectReason::Timeout);
                    if p.replay.is_some() && dropped {
                        // Hold the seat: the client may come back with the
                        // session's keys (network blip, laptop lid). A player
                        // being redirected gets its redirect again then.
                        go_away(p, grace);
                        info!(player, "player connection lost ({reason}); waiting {grace:?} for it to reconnect");
                        plugin.on_connection_lost(&mut ctx!(), player, reason);
                    } else if p.redirected.is_some() {
                        removals.push((player, Goodbye::new(DisconnectReason::Redirected)));
                    } else {
                        removals.push((player, Goodbye::new(reason)));
                    }
                }
                CoreEvent::Resume { conn, player, session_id, session, claim, reply } => {
                    // A reconnect that will be accepted while the old
                    // connection still looks alive: the client saw it die
                    // first. The cluster notices the drop now, so the game
                    // hears of it before the return, as always.
                    if let Some(p) = players.get_mut(&player)
                        && p.session_id == session_id
                        && p.away_until.is_none()
                        && resume_check(p, claim).is_ok()
                    {
                        close_left_behind(p);
                        go_away(p, shared.config.resume_grace);
                        plugin.on_connection_lost(&mut ctx!(), player, DisconnectReason::ConnectionLost);
                    }
                    match resume_player(&mut players, &shared, conn, player, session_id, session, claim) {
                        Ok(resumed) => {
                            if reply.send(Ok(resumed)).is_err() {
                                // The new connection is already gone: away again
                                // (the game was told of the drop already).
                                if let Some(p) = players.get_mut(&player) {
                                    go_away(p, shared.config.resume_grace);
                                }
                                continue;
                            }
                            info!(player, "player reconnected");
                            plugin.on_reconnect(&mut ctx!(), player);
                        }
                        Err((goodbye, give_up)) => {
                            warn!("reconnect refused: {}", goodbye.message);
                            if let Some(player) = give_up {
                                removals.push((player, goodbye.clone()));
                            }
                            let _ = reply.send(Err(goodbye));
                        }
                    }
                }
                CoreEvent::TransferReady { request_id, player, ticket } => {
                    if transfers.pending.remove(&request_id).is_none() {
                        continue;
                    }
                    let Some(p) = players.get_mut(&player) else { continue };
                    // Queued behind everything already sent to the player, so
                    // the redirect is the last thing it hears from here. A
                    // player that is away (or whose writer just stopped) gets
                    // it when it reconnects, after what it missed.
                    let queued = match &p.out {
                        Some(out) => queue(out, ClusterToClient::Redirect((*ticket).clone())),
                        None => Ok(()),
                    };
                    if queued.is_err() {
                        removals.push((player, Goodbye::new(DisconnectReason::SendQueueFull)));
                    } else {
                        info!(player, "player redirected");
                        p.redirected = Some(crate::time::deadline(shared.config.limits.timeout()));
                        if p.replay.is_some() {
                            p.redirect = Some(ticket);
                        }
                        moving_set(&transfers.moving, player, Some(true));
                    }
                }
                CoreEvent::TransferFailed { request_id, player, reason } => {
                    if transfers.pending.remove(&request_id).is_some() && players.contains_key(&player) {
                        moving_set(&transfers.moving, player, None);
                        plugin.on_transfer_failed(&mut ctx!(), player, &reason);
                    }
                }
                CoreEvent::Udp { player, session_id, addr, len, records } => {
                    let Some(p) = players.get_mut(&player).filter(|p| p.session_id == session_id) else { continue };
                    let data = on_datagram(&udp, p, Instant::now(), shared.config.udp_silence, addr, len, records);
                    for (command, payload) in data {
                        plugin.on_packet(&mut ctx!(), player, command, &payload, Channel::Unreliable);
                    }
                }
                CoreEvent::Snapshot(reply) => {
                    let _ = reply.send(players.keys().copied().collect());
                }
                CoreEvent::Master(status) => {
                    log_master_status(&status);
                    plugin.on_master(&mut ctx!(), &status);
                }
            },
            Some(cmd) = commands.rx.recv() => {
                let mut ctx = ctx!();
                let r = match cmd {
                    Command::Send { player, command, payload, reliable: true } => ctx.send(player, command, &payload),
                    Command::Send { player, command, payload, reliable: false } => ctx.send_unreliable(player, command, &payload),
                    Command::Broadcast { command, payload, reliable: true, except } => { ctx.broadcast(command, &payload, except); Ok(()) }
                    Command::Broadcast { command, payload, reliable: false, except } => ctx.broadcast_unreliable(command, &payload, except),
                    Command::Kick { player, message } => { ctx.kick(player, &message); Ok(()) }
                    Command::Transfer { player, target, state } => match ctx.transfer(player, target, &state) {
                        // Asked from outside: the only way back is the callback.
                        Err(e) if ctx.is_connected(player) => {
                            let reason = Goodbye { reason: DisconnectReason::NoCluster, message: e.to_string() };
                            plugin.on_transfer_failed(&mut ctx, player, &reason);
                            Ok(())
                        }
                        other => other,
                    },
                    Command::SetPosition { player, pos } => ctx.set_position(player, pos).map_err(|e| {
                        debug!(player, "set_position refused: {e}");
                        SendError::UnknownPlayer(player)
                    }),
                    Command::SetState { player, command, state } => ctx.set_state(player, command, &state),
                    Command::SendNearby { pos, radius, command, payload, reliable, except } => {
                        ctx.send_nearby(pos, radius, command, &payload, reliable, except).map(|_| ())
                    }
                };
                if let Err(e) = r {
                    debug!("command failed: {e}");
                }
            }
            _ = update.tick() => {
                let World { fragments, states, spread, .. } = &mut world;
                let now = Instant::now();
                let mut out = StateOut { udp: &udp, now, udp_silence: shared.config.udp_silence, batch: datagram::Batch::new(), sealed: Vec::new() };
                if !fragments.start_tick(now).is_empty() {
                    // A new update: whoever the last one has not reached yet goes first.
                    for i in spread.take(true) {
                        if let Some((recipient, subjects)) = spread.get(i) {
                            out.send(&mut players, states, recipient, subjects);
                        }
                    }
                    spread.clear();
                    fragments.fan_out(|recipient, subjects| spread.push(recipient, subjects));
                    spread.plan(update_slices);
                }
                for i in spread.take(false) {
                    if let Some((recipient, subjects)) = spread.get(i) {
                        out.send(&mut players, states, recipient, subjects);
                    }
                }
            }
            _ = tick.tick() => {
                let now = now_ms();
                let instant = Instant::now();
                for (id, p) in players.iter_mut() {
                    match (p.redirected, p.away_until) {
                        // A client that does not follow its redirect is let go
                        // (it may have followed it and lost only its goodbye).
                        (Some(deadline), _) if instant > deadline => {
                            removals.push((*id, Goodbye::new(DisconnectReason::Redirected)));
                        }
                        (_, Some(until)) if instant > until => {
                            removals.push((*id, Goodbye::new(DisconnectReason::ReconnectTimeout)));
                        }
                        (Some(_), _) | (_, Some(_)) => {}
                        (None, None) => {
                            let Some(out) = &p.out else { continue };
                            let mut full = queue(out, ClusterToClient::Ping(now)).is_err();
                            if let Some(log) = p.replay.as_mut().filter(|l| l.ack_due()) {
                                full |= queue(out, ClusterToClient::Ack(log.received())).is_err();
                                log.mark_acked();
                            }
                            if full {
                                removals.push((*id, Goodbye::new(DisconnectReason::SendQueueFull)));
                            }
                        }
                    }
                }
                let expired: Vec<(u64, PlayerId)> = transfers
                    .pending
                    .iter()
                    .filter(|(_, (_, deadline))| instant > *deadline)
                    .map(|(id, (player, _))| (*id, *player))
                    .collect();
                for (request_id, player) in expired {
                    transfers.pending.remove(&request_id);
                    let reason = Goodbye { reason: DisconnectReason::NoCluster, message: "the master did not answer the transfer in time".into() };
                    if players.contains_key(&player) {
                        moving_set(&transfers.moving, player, None);
                        plugin.on_transfer_failed(&mut ctx!(), player, &reason);
                    }
                }
                plugin.on_tick(&mut ctx!());
            }
        }
        apply_removals(
            &mut players,
            &mut removals,
            &mut plugin,
            &udp,
            &mut gone_sessions,
            &mut transfers,
            &mut world,
            &shared,
        );
        // Fragment events from this round (moves, departures) go to the
        // plugin; its reactions may cause more, so drain until quiet.
        while !world.events.is_empty() {
            for ev in std::mem::take(&mut world.events) {
                plugin.on_fragment(&mut ctx!(), ev);
            }
        }
        shared
            .fragment_count
            .store(world.fragments.fragment_count(), Ordering::Relaxed);
        for session_id in gone_sessions.drain(..) {
            let _ = udp_ctl_tx.send(UdpControl::Remove { session_id }).await;
        }
    }

    info!(players = players.len(), "cluster shutting down");
    let _ = stop_tx.send(true);
    for (_, mut p) in players.drain() {
        if let Some(kill) = p.kill.take() {
            let _ = kill.send((Goodbye::new(DisconnectReason::ServerShutdown), true));
        }
    }
    shared.player_count.store(0, Ordering::Relaxed);
    crate::listen::wind_down(&mut tasks).await;
    Ok(())
}

/// Marks a player away and holds its seat for `grace`. Its connection's
/// writer is let go without a goodbye: a goodbye would end the session on
/// a client that may still hear it, and the client is meant to come back.
fn go_away(p: &mut Player, grace: Duration) {
    p.out = None;
    p.kill = None;
    p.away_until = Some(crate::time::deadline(grace));
}

/// Closes the player's connection that is still open on this side only,
/// once a reconnect proved the client has left it; its late events no
/// longer match the player's connection.
fn close_left_behind(p: &mut Player) {
    if let Some(old) = p.kill.take() {
        let _ = old.send((
            Goodbye {
                reason: DisconnectReason::Kicked,
                message: "reconnected on a new connection".into(),
            },
            false,
        ));
    }
}

/// Whether a proven reconnect of `p` can be accepted; a refusal is the
/// goodbye for the client.
fn resume_check(p: &Player, claim: ResumeClaim) -> Result<(), Goodbye> {
    let refuse = |reason, message: String| Goodbye { reason, message };
    let Some(log) = p.replay.as_ref() else {
        return Err(refuse(
            DisconnectReason::ResumeRefused,
            "reconnects are turned off on this cluster".into(),
        ));
    };
    // A copy of an earlier attempt (even one that never got here) is
    // worthless once a later one was accepted.
    if claim.attempt <= p.last_attempt {
        return Err(refuse(
            DisconnectReason::AuthFailed,
            "an old or repeated reconnect attempt".into(),
        ));
    }
    let client_has = claim.received;
    match log.rewind(client_has) {
        Rewind::Replay(_) => Ok(()),
        Rewind::Lost {
            client_has,
            oldest_kept,
        } => {
            let message = format!(
                "the client has {client_has} messages and the oldest one kept is number \
                 {oldest_kept}: the ones between are gone (resume_buffer)"
            );
            Err(refuse(DisconnectReason::ResumeRefused, message))
        }
        Rewind::Impossible => Err(refuse(
            DisconnectReason::ProtocolViolation,
            format!("the client claims {client_has} messages, more than were sent"),
        )),
    }
}

/// Moves the player of a proven reconnect onto connection `conn`, with the
/// reliable messages it missed queued first (and its redirect, if it was
/// being moved).
#[allow(clippy::too_many_arguments)]
fn resume_player(
    players: &mut HashMap<PlayerId, Player>,
    shared: &Shared,
    conn: u64,
    player: PlayerId,
    session_id: u64,
    session: Box<StreamSession>,
    claim: ResumeClaim,
) -> Result<Resumed, (Goodbye, Option<PlayerId>)> {
    let Some(p) = players
        .get_mut(&player)
        .filter(|p| p.session_id == session_id)
    else {
        let message = "the session ended before the reconnect was handled".into();
        return Err((
            Goodbye {
                reason: DisconnectReason::ResumeRefused,
                message,
            },
            None,
        ));
    };
    if let Err(goodbye) = resume_check(p, claim) {
        // Only a player already away, with nothing else to go on, is let go
        // for a reconnect that cannot work; an open connection stays.
        let end = match goodbye.reason {
            DisconnectReason::AuthFailed => None,
            _ => p.away_until.is_some().then_some(player),
        };
        return Err((goodbye, end));
    }
    let Some(log) = p.replay.as_mut() else {
        return Err((Goodbye::new(DisconnectReason::ResumeRefused), None));
    };
    let client_has = claim.received;
    let again: Vec<ClusterToClient> = match log.rewind(client_has) {
        Rewind::Replay(kept) => kept
            .into_iter()
            .map(|(command, payload)| ClusterToClient::Data {
                command: *command,
                payload: payload.clone(),
            })
            .collect(),
        // resume_check said it is in range.
        Rewind::Lost { .. } | Rewind::Impossible => Vec::new(),
    };
    p.last_attempt = claim.attempt;
    log.ack(client_has);
    // The Resumed message carries the count: nothing to acknowledge yet.
    let received = log.mark_acked();
    debug!(
        player,
        again = again.len(),
        client_has,
        received,
        "resuming: sending the player's missed messages again"
    );
    // Room for everything to send again, so none of it can be refused.
    let (out, out_rx) = mpsc::channel(shared.config.limits.send_queue + again.len() + 1);
    for m in again {
        let _ = out.try_send(m);
    }
    if let Some(ticket) = &p.redirect {
        let _ = out.try_send(ClusterToClient::Redirect((**ticket).clone()));
    }
    let (kill_tx, kill_rx) = oneshot::channel();
    close_left_behind(p);
    p.out = Some(out.clone());
    p.kill = Some(kill_tx);
    p.conn = conn;
    p.away_until = None;
    Ok(Resumed {
        player,
        session,
        received,
        out,
        out_rx,
        kill: kill_rx,
    })
}

fn log_master_status(status: &MasterLinkStatus) {
    match status {
        MasterLinkStatus::Registered { cluster_id } => {
            info!(cluster_id, "registered with the master")
        }
        MasterLinkStatus::Lost { message } => {
            warn!("master lost: {message}; players stay connected")
        }
    }
}

fn link_event(link_tx: &mpsc::Sender<LinkEvent>, shared: &Shared, ev: LinkEvent) {
    if link_tx.try_send(ev).is_err() {
        // The master link is far behind: re-register, which resends every player.
        shared.resync.store(true, Ordering::Relaxed);
    }
}

#[allow(clippy::too_many_arguments)]
fn apply_removals(
    players: &mut HashMap<PlayerId, Player>,
    removals: &mut Vec<(PlayerId, Goodbye)>,
    plugin: &mut impl Plugin,
    udp: &UdpSocket,
    gone_sessions: &mut Vec<u64>,
    transfers: &mut Transfers,
    world: &mut World,
    shared: &Shared,
) {
    // A plugin's on_disconnect may kick more players: loop until quiet.
    while !removals.is_empty() {
        for (player, goodbye) in std::mem::take(removals) {
            let Some(mut p) = players.remove(&player) else {
                continue;
            };
            // The seat is free before the player hears its goodbye.
            shared.player_count.store(players.len(), Ordering::Relaxed);
            let reason = goodbye.reason;
            let drain = reason != DisconnectReason::SendQueueFull;
            if let Some(kill) = p.kill.take() {
                let _ = kill.send((goodbye, drain));
            }
            // The caller tells the UDP task (it can await; this cannot).
            gone_sessions.push(p.session_id);
            shared_set(&shared.sessions, p.session_id, None);
            moving_set(&transfers.moving, player, None);
            link_event(&transfers.link, shared, LinkEvent::Left(player));
            info!(
                player,
                players = players.len(),
                "player disconnected: {reason}"
            );
            let mut ctx = Context {
                players,
                udp,
                removals,
                max_reliable: shared.max_reliable,
                transfers,
                world,
                now: Instant::now(),
                udp_silence: shared.config.udp_silence,
            };
            plugin.on_disconnect(&mut ctx, player, reason);
            world.states.remove(&player);
            if let Some(ev) = world.fragments.remove(player) {
                world.events.push(ev);
            }
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, tcp: TcpListener) {
    let mut conns = tokio::task::JoinSet::new();
    let mut next = 0u64;
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = crate::time::stopped(&mut shutdown) => break,
            (stream, peer) = crate::listen::accept(&tcp) => {
                next += 1;
                let span = info_span!("player_conn", id = next, %peer);
                conns.spawn(player_conn(shared.clone(), stream, peer).instrument(span));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    crate::listen::wind_down(&mut conns).await;
}

async fn player_conn(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let limits = shared.config.limits;
    let Ok(permit) = shared.handshakes.try_acquire() else {
        warn!("refused: too many connections in their handshake");
        let f = handshake::reject_frame(
            DisconnectReason::TooManyHandshakes,
            "too many pending handshakes",
        );
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            write_frame(&mut stream, &f, usize::MAX),
        )
        .await;
        return;
    };
    let (rd, mut wr) = stream.into_split();
    let mut frames = FrameReader::new(rd, limits.max_frame);
    let refuse =
        |reason: DisconnectReason, message: String| handshake::reject_frame(reason, &message);
    let hello = match frames.next_within(limits.handshake_timeout()).await {
        Ok(Some(f)) => f,
        Ok(None) => return,
        Err(NetError::Timeout(_)) => {
            warn!("dropped: no hello within the handshake timeout");
            let f = refuse(
                DisconnectReason::HandshakeTimeout,
                "no hello in time".into(),
            );
            let _ =
                tokio::time::timeout(Duration::from_secs(1), write_frame(&mut wr, &f, usize::MAX))
                    .await;
            return;
        }
        Err(e) => {
            warn!("dropped: bad first frame: {e}");
            return;
        }
    };
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (token, proof) = match handshake::parse_hello(&hello) {
        Ok(Hello::ClientCluster { token, proof }) => (token, proof),
        Ok(Hello::ClientResume {
            session_id,
            nonce,
            proof,
        }) => {
            // The proof is checked here, so a flood of made-up reconnects
            // costs the connection tasks, never the core.
            let found = {
                let s = shared.sessions.lock().unwrap_or_else(|p| p.into_inner());
                s.get(&session_id).cloned()
            };
            let Some((player, keys)) = found else {
                info!("reconnect refused: no such session");
                let f = refuse(
                    DisconnectReason::ResumeRefused,
                    "no such session on this cluster (it ended, or the reconnect window passed)"
                        .into(),
                );
                let _ = write_frame(&mut wr, &f, usize::MAX).await;
                return;
            };
            let (session, claim) = match handshake::accept_resume(&keys, &nonce, &proof) {
                Ok(r) => r,
                Err(e) => {
                    warn!(player, "reconnect refused: {e}");
                    let _ =
                        write_frame(&mut wr, &refuse(e.reason(), e.to_string()), usize::MAX).await;
                    return;
                }
            };
            let (reply_tx, reply_rx) = oneshot::channel();
            let ev = CoreEvent::Resume {
                conn,
                player,
                session_id,
                session: Box::new(session),
                claim,
                reply: reply_tx,
            };
            if shared.events.send(ev).await.is_err() {
                return;
            }
            let r = match reply_rx.await {
                Ok(Ok(r)) => r,
                Ok(Err(g)) => {
                    let _ = write_frame(&mut wr, &refuse(g.reason, g.message), usize::MAX).await;
                    return;
                }
                Err(_) => return,
            };
            drop(permit);
            let session = Session {
                player: r.player,
                conn,
                frames,
                wr,
                stream: *r.session,
                out: r.out,
                out_rx: r.out_rx,
                kill: r.kill,
            };
            let first = ClusterToClient::Resumed {
                received: r.received,
            };
            run_session(&shared, session, first, peer).await;
            return;
        }
        Ok(_) => {
            warn!("refused: not a client hello");
            let f = refuse(
                DisconnectReason::ProtocolViolation,
                "this is a cluster: send a connect token".into(),
            );
            let _ = write_frame(&mut wr, &f, usize::MAX).await;
            return;
        }
        Err(e) => {
            warn!("refused: {e}");
            let _ = write_frame(&mut wr, &refuse(e.reason(), e.to_string()), usize::MAX).await;
            return;
        }
    };
    let cap = shared.config.max_connections as usize;
    if cap > 0 && shared.player_count.load(Ordering::Relaxed) >= cap {
        info!("refused: the cluster is full");
        let _ = write_frame(
            &mut wr,
            &refuse(DisconnectReason::ServerFull, "the cluster is full".into()),
            usize::MAX,
        )
        .await;
        return;
    }
    let accepted = {
        let mut used = shared.used_tokens.lock().unwrap_or_else(|p| p.into_inner());
        handshake::accept_client(
            &token,
            &proof,
            &shared.key,
            shared.cluster_id,
            now_ms(),
            &mut used,
            &mut rand::rng(),
        )
    };
    let accepted = match accepted {
        Ok(a) => a,
        Err(e) => {
            warn!("refused: {e}");
            let _ = write_frame(&mut wr, &refuse(e.reason(), e.to_string()), usize::MAX).await;
            return;
        }
    };
    let player = accepted.token.client_id;
    let session_id = loop {
        let id = rand::rng().next_u64();
        if id != 0 {
            break id;
        }
    };
    let udp = accepted.keys.datagram(Side::Responder, session_id);
    let (out_tx, out_rx) = mpsc::channel::<ClusterToClient>(limits.send_queue);
    let (kill_tx, kill_rx) = oneshot::channel();
    let (reply_tx, reply_rx) = oneshot::channel();
    let join = CoreEvent::Join {
        player,
        conn,
        session_id,
        user_data: accepted.token.user_data,
        out: out_tx.clone(),
        kill: kill_tx,
        keys: Arc::new(accepted.keys),
        udp: Box::new(udp),
        reply: reply_tx,
    };
    if shared.events.send(join).await.is_err() {
        return;
    }
    match reply_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(g)) => {
            info!("refused: {}", g.reason);
            let _ = write_frame(&mut wr, &refuse(g.reason, g.message), usize::MAX).await;
            return;
        }
        Err(_) => return,
    }
    drop(permit);
    // The cluster's nonce for the session keys, right before the Welcome; a
    // failed write shows up as a failed Welcome in run_session.
    let _ = write_frame(&mut wr, &accepted.accept_frame, limits.max_frame).await;
    let session = Session {
        player,
        conn,
        frames,
        wr,
        stream: accepted.session,
        out: out_tx,
        out_rx,
        kill: kill_rx,
    };
    let welcome = ClusterToClient::Welcome {
        player_id: player,
        session_id,
        udp_port: shared.udp_port,
    };
    run_session(&shared, session, welcome, peer).await;
}

/// One accepted connection of a player, first or resumed.
struct Session {
    player: PlayerId,
    conn: u64,
    frames: FrameReader<tokio::net::tcp::OwnedReadHalf>,
    wr: tokio::net::tcp::OwnedWriteHalf,
    stream: StreamSession,
    out: mpsc::Sender<ClusterToClient>,
    out_rx: mpsc::Receiver<ClusterToClient>,
    kill: oneshot::Receiver<(Goodbye, bool)>,
}

/// Sends `first` (Welcome or Resumed), then carries the player's traffic
/// until the connection ends, and tells the core why.
async fn run_session(shared: &Shared, s: Session, first: ClusterToClient, peer: SocketAddr) {
    let limits = shared.config.limits;
    let Session {
        player,
        conn,
        frames,
        wr,
        stream,
        out: out_tx,
        out_rx,
        kill,
    } = s;
    let mut writer =
        SealedWriter::new(wr, stream.sealer, limits.max_frame).with_write_timeout(limits.timeout());
    let queued = writer.queue(&first);
    let writer_task =
        tokio::spawn(player_writer(writer, out_rx, kill).instrument(tracing::Span::current()));
    let mut reader = SealedReader::new(frames, stream.opener, limits.max_auth_failures);
    debug!(player, %peer, "player session started");
    let reason = loop {
        if queued.is_err() {
            break DisconnectReason::ConnectionLost;
        }
        tokio::select! {
            r = tokio::time::timeout(limits.timeout(), reader.recv::<ClientToCluster>()) => match r {
                Err(_) => {
                    info!(player, "player timed out");
                    break DisconnectReason::Timeout;
                }
                Ok(Ok(None)) => break DisconnectReason::ConnectionLost,
                Ok(Ok(Some(msg))) => match msg {
                    ClientToCluster::Data { command, payload } => {
                        if shared.events.send(CoreEvent::Packet { player, conn, command, payload }).await.is_err() {
                            break DisconnectReason::ServerShutdown;
                        }
                    }
                    ClientToCluster::Ack(count) => {
                        if shared.events.send(CoreEvent::Ack { player, conn, count }).await.is_err() {
                            break DisconnectReason::ServerShutdown;
                        }
                    }
                    ClientToCluster::Ping(v) => {
                        if queue(&out_tx, ClusterToClient::Pong(v)).is_err() {
                            break DisconnectReason::SendQueueFull;
                        }
                    }
                    ClientToCluster::Pong(_) => {}
                    ClientToCluster::Disconnect(g) => {
                        debug!(player, "player said goodbye: {}", g.reason);
                        break DisconnectReason::Requested;
                    }
                },
                Ok(Err(e)) => {
                    let reason = match &e {
                        NetError::TooManyAuthFailures(_) => DisconnectReason::Tampered,
                        NetError::Io(_) | NetError::Truncated => DisconnectReason::ConnectionLost,
                        _ => DisconnectReason::ProtocolViolation,
                    };
                    warn!(player, "dropping player: {e}");
                    break reason;
                }
            },
            // The writer stopped: a failed write (the peer is gone), or the
            // core closed this connection, and then the reason is not used.
            _ = out_tx.closed() => break DisconnectReason::ConnectionLost,
        }
    };
    let stats = reader.stats();
    if stats.auth_failures + stats.replays + stats.stale > 0 {
        warn!(
            player,
            auth_failures = stats.auth_failures,
            replays = stats.replays,
            stale = stats.stale,
            "refused frames on this connection"
        );
    }
    let _ = shared
        .events
        .send(CoreEvent::Left {
            player,
            conn,
            reason,
        })
        .await;
    drop(out_tx);
    let _ = writer_task.await;
}

async fn player_writer(
    mut writer: SealedWriter<tokio::net::tcp::OwnedWriteHalf>,
    mut rx: mpsc::Receiver<ClusterToClient>,
    mut kill: oneshot::Receiver<(Goodbye, bool)>,
) {
    let r: Result<(), NetError> = async {
        writer.flush().await?;
        loop {
            tokio::select! {
                biased;
                k = &mut kill => {
                    if let Ok((goodbye, drain)) = k {
                        if drain {
                            while let Ok(m) = rx.try_recv() {
                                writer.queue(&m)?;
                            }
                        }
                        writer.queue(&ClusterToClient::Disconnect(goodbye))?;
                        writer.shutdown().await?;
                    }
                    return Ok(());
                }
                m = rx.recv() => {
                    let Some(m) = m else { return writer.shutdown().await };
                    writer.queue(&m)?;
                    while writer.pending() < 64 * 1024 {
                        match rx.try_recv() {
                            Ok(m) => writer.queue(&m)?,
                            Err(_) => break,
                        }
                    }
                    writer.flush().await?;
                }
            }
        }
    }
    .await;
    if let Err(e) = r {
        debug!("writer stopped: {e}");
    }
}

async fn udp_loop(shared: Arc<Shared>, udp: Arc<UdpSocket>, mut ctl: mpsc::Receiver<UdpControl>) {
    let mut sessions: HashMap<u64, (PlayerId, Box<DatagramOpener>)> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let mut refused = 0u64;
    let c = &shared.config;
    let mut pings = PingLimiter::new(
        c.ping_rate,
        c.ping_rate_per_source,
        c.ping_sources,
        Instant::now(),
    );
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            _ = crate::time::stopped(&mut shutdown) => break,
            Some(c) = ctl.recv() => match c {
                UdpControl::Add { session_id, player, opener } => { sessions.insert(session_id, (player, opener)); }
                UdpControl::Remove { session_id } => { sessions.remove(&session_id); }
            },
            r = udp.recv_from(&mut buf) => {
                let (n, addr) = match r {
                    Ok(x) => x,
                    Err(e) => { debug!("udp receive failed: {e}"); continue; }
                };
                let d = &buf[..n];
                // A ping before joining: answered without a token, but only
                // with fewer bytes than the request, and within a rate limit.
                if let Some(nonce) = datagram::parse_ping_request(d) {
                    if pings.allow(Instant::now(), addr.ip()) {
                        let players = u32::try_from(shared.player_count.load(Ordering::Relaxed)).unwrap_or(u32::MAX);
                        let resp = datagram::ping_response(nonce, players, shared.config.max_connections);
                        let _ = udp.try_send_to(&resp, addr);
                    }
                    continue;
                }
                // Anything else that is not a session datagram of a known
                // session is dropped without an answer.
                let Some(sid) = (n <= MAX_DATAGRAM).then(|| datagram_session_id(d)).flatten() else {
                    refused += 1;
                    continue;
                };
                let Some((player, opener)) = sessions.get_mut(&sid) else { refused += 1; continue };
                let plain = match opener.open(d) {
                    Ok(p) => p,
                    Err(e) => {
                        refused += 1;
                        if refused.is_power_of_two() {
                            debug!(player = *player, "datagram refused: {e} ({refused} refused so far)");
                        }
                        continue;
                    }
                };
                let records = match datagram::decode_records(&plain) {
                    Ok(r) => r,
                    Err(e) => { warn!(player = *player, "malformed datagram: {e}"); continue; }
                };
                let ev = CoreEvent::Udp { player: *player, session_id: sid, addr, len: n, records };
                // Unreliable: when the core is behind, drop instead of queueing.
                let _ = shared.events.try_send(ev);
            }
        }
    }
}

async fn master_link(shared: Arc<Shared>, mut link_rx: mpsc::Receiver<LinkEvent>) {
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
    }
}

async fn master_session(
    shared: &Shared,
    link_rx: &mut mpsc::Receiver<LinkEvent>,
    backoff: &mut Duration,
) -> Result<(), String> {
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
            capacity: shared.config.max_connections,
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
    *backoff = Duration::from_millis(250);
    shared.resync.store(false, Ordering::Relaxed);
    while link_rx.try_recv().is_ok() {}
    let (snap_tx, snap_rx) = oneshot::channel();
    shared
        .events
        .send(CoreEvent::Snapshot(snap_tx))
        .await
        .map_err(|_| "the cluster is stopping")?;
    let players = snap_rx.await.map_err(|_| "the cluster is stopping")?;
    for client_id in players {
        writer
            .queue(&ClusterToMaster::PlayerJoined { client_id })
            .map_err(|e| e.to_string())?;
    }
    writer.flush().await.map_err(|e| e.to_string())?;
    let mut reader = SealedReader::new(frames, opener, limits.max_auth_failures);
    let mut status = tokio::time::interval(shared.config.status_interval);
    let mut last_seen = Instant::now();
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
                        MasterToCluster::Disconnect(g) => {
                            return Ok(Err(format!("the master closed the link: {} {}", g.reason, g.message)));
                        }
                    }
                }
                Some(ev) = link_rx.recv() => {
                    writer.queue(&link_message(ev))?;
                    while let Ok(ev) = link_rx.try_recv() {
                        writer.queue(&link_message(ev))?;
                    }
                    writer.flush().await?;
                }
                _ = status.tick() => {
                    if last_seen.elapsed() > limits.timeout() {
                        return Ok(Err("the master stopped responding".to_owned()));
                    }
                    if shared.resync.load(Ordering::Relaxed) {
                        return Ok(Err("player events overflowed; registering again".to_owned()));
                    }
                    let players = u32::try_from(shared.player_count.load(Ordering::Relaxed)).unwrap_or(u32::MAX);
                    writer.queue(&ClusterToMaster::Status(Status { players, capacity: shared.config.max_connections, fragments: u32::try_from(shared.fragment_count.load(Ordering::Relaxed)).unwrap_or(u32::MAX) }))?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::Spread;

    fn served(s: &mut Spread, all: bool) -> Vec<(u64, Vec<u64>)> {
        s.take(all)
            .map(|i| {
                let (r, subjects) = s.get(i).unwrap();
                (r, subjects.to_vec())
            })
            .collect()
    }

    #[test]
    fn spread_serves_every_recipient_once_in_shares() {
        let mut s = Spread::default();
        for r in 1..=7u64 {
            s.push(r, &[r * 10, r * 10 + 1]);
        }
        s.plan(3);
        let mut seen = Vec::new();
        for share in [3, 3, 1, 0] {
            let got = served(&mut s, false);
            assert_eq!(got.len(), share);
            seen.extend(got);
        }
        let want: Vec<(u64, Vec<u64>)> =
            (1..=7u64).map(|r| (r, vec![r * 10, r * 10 + 1])).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn a_new_update_first_serves_what_the_last_left() {
        let mut s = Spread::default();
        for r in 1..=4u64 {
            s.push(r, &[r + 100]);
        }
        s.plan(4);
        assert_eq!(served(&mut s, false), vec![(1, vec![101])]);
        assert_eq!(
            served(&mut s, true),
            vec![(2, vec![102]), (3, vec![103]), (4, vec![104])]
        );
        s.clear();
        s.push(9, &[]);
        s.plan(0);
        assert_eq!(served(&mut s, false), vec![(9, vec![])]);
        assert!(served(&mut s, false).is_empty());
    }
}
