//! `SustenetMultiplayerPeer`: Godot's high-level multiplayer (`@rpc`,
//! `MultiplayerSpawner`, `MultiplayerSynchronizer`) over Sustenet.
//!
//! The class is a `MultiplayerPeerExtension` with two faces: a client made
//! from a `SustenetClient` ([`client_face`]) and a server made from a
//! `SustenetCluster` ([`server_face`]). Its packets ride in Sustenet messages
//! with command numbers in a reserved range ([`wire`]); the nodes hand it the
//! events it needs through a queue ([`tap`]).

mod client_face;
mod ids;
mod inbox;
mod interest;
mod relay_budget;
mod scene_check;
mod server_face;
pub(crate) mod tap;
mod wire;

use godot::classes::multiplayer_peer::{ConnectionStatus, TransferMode};
use godot::classes::{IMultiplayerPeerExtension, MultiplayerPeerExtension, SceneMultiplayer};
use godot::global::Error as GdError;
use godot::prelude::*;
use sustenet_proto::DEFAULT_MAX_FRAME;
use sustenet_proto::datagram::MAX_UNRELIABLE_PAYLOAD;
use sustenet_proto::message::RELIABLE_OVERHEAD;

use crate::Error;
use crate::client::SustenetClient;
use crate::cluster::SustenetCluster;
use client_face::ClientFace;
use inbox::Inbox;
use server_face::ServerFace;
use wire::Mode;

/// Largest SceneMultiplayer packet, in bytes: a reliable Sustenet message
/// (64 KiB frames) less the frame and peer headers.
const MAX_PACKET: usize = DEFAULT_MAX_FRAME - RELIABLE_OVERHEAD - wire::MAX_HEADER;
/// Largest packet that travels in one datagram when sent unreliably.
const MAX_DATAGRAM_PACKET: usize = MAX_UNRELIABLE_PAYLOAD - wire::MAX_HEADER;

/// Packets and bytes through the peer (data only, headers included).
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    polls: u64,
    poll_usec: u64,
    sent_packets: u64,
    sent_bytes: u64,
    received_packets: u64,
    received_bytes: u64,
}

impl Stats {
    fn sent(&mut self, bytes: usize) {
        self.sent_packets += 1;
        self.sent_bytes += u64::try_from(bytes).unwrap_or(u64::MAX);
    }

    fn received(&mut self, bytes: usize) {
        self.received_packets += 1;
        self.received_bytes += u64::try_from(bytes).unwrap_or(u64::MAX);
    }
}

/// Which side of the game this peer is.
#[derive(Debug)]
enum Face {
    /// Made with `new()` or closed.
    Idle,
    Client(ClientFace),
    Server(Box<ServerFace>),
}

/// Godot's high-level multiplayer over Sustenet: [code]@rpc[/code],
/// [MultiplayerSpawner] and [MultiplayerSynchronizer] run over a
/// [SustenetClient] (client) or a [SustenetCluster] (server), the way they run
/// over [ENetMultiplayerPeer]. The server is peer 1; players are peers with
/// ids in 2..2147483647 ([method get_player_id] and [method get_peer_id]
/// convert to and from Sustenet player ids).
///
/// [codeblock]
/// # client: after or before SustenetClient.cluster_joined
/// var peer := SustenetMultiplayerPeer.new()
/// peer.create_client($SustenetClient)   # CONNECTING until the cluster welcomes it
/// multiplayer.multiplayer_peer = peer
///
/// # cluster (headless export)
/// var peer := SustenetMultiplayerPeer.new()
/// peer.create_server($SustenetCluster)  # starts the cluster if it is not running
/// multiplayer.multiplayer_peer = peer
/// [/codeblock]
///
/// The peer's messages use the Sustenet command numbers 65280..65535
/// ([constant FIRST_RESERVED_COMMAND] and up): keep the game's own plain
/// [method SustenetClient.send] commands below them. A move to another
/// cluster is seen by the game as [signal MultiplayerAPI.peer_disconnected]
/// of peer 1 (the old cluster's spawned nodes are freed), then
/// [signal MultiplayerAPI.peer_connected] of peer 1 and
/// [signal MultiplayerAPI.connected_to_server] again (the new cluster's nodes
/// spawn); the peer object stays the same. A dropped connection that resumes
/// is not seen at all.
#[derive(GodotClass)]
#[class(base=MultiplayerPeerExtension, tool)]
pub struct SustenetMultiplayerPeer {
    /// Server only, read by [method create_server]: whether clients may reach
    /// each other through the cluster ([member SceneMultiplayer.server_relay]).
    /// Off, the cluster does not tell clients about each other (no O(N²)
    /// peer announcements) and clients send everything to the server.
    #[var]
    server_relay: bool,
    /// Most bytes of received packets waiting for [method poll]'s caller;
    /// a client whose packets would go past it is disconnected (server) or
    /// the connection is closed (client).
    #[var]
    max_queued_bytes: i64,
    /// Server only: the largest synchronizer packet a client may send, in
    /// bytes; a client sending a larger one is disconnected. The default is
    /// Godot's default [member SceneMultiplayer.max_sync_packet_size]; raise
    /// it if your clients raise theirs. 0: a client may send no synchronizer
    /// packet at all. A negative value is refused (an error, the value stays).
    #[var(set)]
    max_client_sync_packet_size: i64,
    /// Server only, read by [method create_server]: how many times one
    /// client connection's peer may close ([method close] sends a bye) and
    /// join again; the hello after that gets the player disconnected
    /// (`REASON_KICKED`). Each leave and join makes the server's
    /// SceneMultiplayer tell every other peer, so this bounds what one
    /// connection can make it send.
    #[var]
    max_rejoins: i64,
    /// Server only: the relayed bytes a second each client may make the
    /// cluster send through [member SceneMultiplayer.server_relay], counted as
    /// packet size times receivers (a relay request to everybody among 50
    /// peers costs 49 times its size); a client going over, after a burst of
    /// one second's worth, is disconnected (`REASON_KICKED`). 0: no limit.
    /// A negative value is refused (an error, the value stays).
    #[var(set)]
    max_client_relay_bytes_per_sec: i64,
    /// Server only: how long [method transfer_peer] waits for the client to
    /// stop sending before it moves the player anyway, in seconds.
    #[var]
    move_timeout_sec: f64,
    face: Face,
    status: ConnectionStatus,
    unique_id: i32,
    target_peer: i32,
    transfer_mode: TransferMode,
    transfer_channel: i32,
    refuse_new: bool,
    relay: bool,
    inbox: Inbox,
    out_seq: [u32; 256],
    warned_large_datagram: bool,
    stats: Stats,
    base: Base<MultiplayerPeerExtension>,
}

#[godot_api]
impl IMultiplayerPeerExtension for SustenetMultiplayerPeer {
    fn init(base: Base<MultiplayerPeerExtension>) -> Self {
        Self {
            server_relay: true,
            max_queued_bytes: 16 << 20,
            max_client_sync_packet_size: 1350,
            max_rejoins: 8,
            max_client_relay_bytes_per_sec: 1 << 20,
            move_timeout_sec: 5.0,
            face: Face::Idle,
            status: ConnectionStatus::DISCONNECTED,
            unique_id: 0,
            target_peer: 0,
            transfer_mode: TransferMode::RELIABLE,
            transfer_channel: 0,
            refuse_new: false,
            relay: false,
            inbox: Inbox::new(16 << 20),
            out_seq: [0; 256],
            warned_large_datagram: false,
            stats: Stats::default(),
            base,
        }
    }

    fn get_available_packet_count(&self) -> i32 {
        i32::try_from(self.inbox.len()).unwrap_or(i32::MAX)
    }

    fn get_max_packet_size(&self) -> i32 {
        i32::try_from(MAX_PACKET).unwrap_or(i32::MAX)
    }

    fn get_packet_script(&mut self) -> PackedByteArray {
        self.inbox
            .pop()
            .map_or_else(PackedByteArray::new, |p| PackedByteArray::from(p.packet))
    }

    fn put_packet_script(&mut self, buffer: PackedByteArray) -> GdError {
        crate::error::to_code(self.put(buffer.as_slice()))
    }

    fn get_packet_channel(&self) -> i32 {
        self.inbox.head().map_or(0, |p| i32::from(p.channel))
    }

    fn get_packet_mode(&self) -> TransferMode {
        self.inbox
            .head()
            .map_or(TransferMode::RELIABLE, |p| to_godot_mode(p.mode))
    }

    fn set_transfer_channel(&mut self, channel: i32) {
        if (0..=255).contains(&channel) {
            self.transfer_channel = channel;
        } else {
            godot_error!(
                "SustenetMultiplayerPeer: transfer channel {channel} is out of range (0..255)"
            );
        }
    }

    fn get_transfer_channel(&self) -> i32 {
        self.transfer_channel
    }

    fn set_transfer_mode(&mut self, mode: TransferMode) {
        self.transfer_mode = mode;
    }

    fn get_transfer_mode(&self) -> TransferMode {
        self.transfer_mode
    }

    fn set_target_peer(&mut self, peer: i32) {
        self.target_peer = peer;
    }

    fn get_packet_peer(&self) -> i32 {
        self.inbox.head().map_or(0, |p| p.from)
    }

    fn is_server(&self) -> bool {
        matches!(self.face, Face::Server(_))
    }

    fn poll(&mut self) {
        let start = std::time::Instant::now();
        crate::flush_logs();
        match self.face {
            Face::Idle => {}
            Face::Client(_) => self.poll_client(),
            Face::Server(_) => self.poll_server(),
        }
        self.stats.polls += 1;
        self.stats.poll_usec += u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    }

    fn close(&mut self) {
        match std::mem::replace(&mut self.face, Face::Idle) {
            Face::Idle => {}
            Face::Client(c) => c.say_bye(),
            Face::Server(s) => s.say_bye(),
        }
        self.reset(ConnectionStatus::DISCONNECTED);
    }

    fn disconnect_peer(&mut self, peer: i32, force: bool) {
        match self.face {
            Face::Idle => {}
            Face::Client(_) if peer == 1 => {
                let was_connected = self.status == ConnectionStatus::CONNECTED;
                self.close();
                if was_connected && !force {
                    self.signals().peer_disconnected().emit(1);
                }
            }
            Face::Client(_) => {
                godot_error!("SustenetMultiplayerPeer: a client is connected to peer 1 only");
            }
            Face::Server(_) => self.disconnect_player(peer, force),
        }
    }

    fn get_unique_id(&self) -> i32 {
        self.unique_id
    }

    fn set_refuse_new_connections(&mut self, enable: bool) {
        self.refuse_new = enable;
    }

    fn is_refusing_new_connections(&self) -> bool {
        self.refuse_new
    }

    fn is_server_relay_supported(&self) -> bool {
        self.relay
    }

    fn get_connection_status(&self) -> ConnectionStatus {
        self.status
    }
}

#[godot_api]
impl SustenetMultiplayerPeer {
    /// Sets [member max_client_sync_packet_size]; a negative value is
    /// refused with an error and the value stays.
    #[func]
    fn set_max_client_sync_packet_size(&mut self, bytes: i64) {
        if let Some(v) = non_negative(
            "max_client_sync_packet_size",
            "0 or more",
            bytes,
            self.max_client_sync_packet_size,
        ) {
            self.max_client_sync_packet_size = v;
        }
    }

    /// Sets [member max_client_relay_bytes_per_sec]; a negative value is
    /// refused with an error and the value stays.
    #[func]
    fn set_max_client_relay_bytes_per_sec(&mut self, bytes_per_sec: i64) {
        if let Some(v) = non_negative(
            "max_client_relay_bytes_per_sec",
            "0 (no limit) or more",
            bytes_per_sec,
            self.max_client_relay_bytes_per_sec,
        ) {
            self.max_client_relay_bytes_per_sec = v;
        }
    }
    /// The first Sustenet command number the peer uses; it owns this one and
    /// every one above it (up to 65535).
    #[constant]
    const FIRST_RESERVED_COMMAND: i64 = wire::FIRST_COMMAND as i64;
    /// The largest packet the peer carries ([method get_max_packet_size]),
    /// in bytes.
    #[constant]
    const MAX_PACKET_SIZE: i64 = MAX_PACKET as i64;
    /// The largest unreliable packet that fits one datagram, in bytes. A
    /// larger unreliable packet is sent on the reliable channel instead.
    /// [method create_client] and [method create_server] lower
    /// [member SceneMultiplayer.max_sync_packet_size] to this on the
    /// multiplayer of the node they are given.
    #[constant]
    const MAX_DATAGRAM_PACKET_SIZE: i64 = MAX_DATAGRAM_PACKET as i64;

    /// Makes this peer the client of [param client]: it is
    /// [constant MultiplayerPeer.CONNECTION_CONNECTING] until the cluster
    /// welcomes it (right after [signal SustenetClient.cluster_joined], or
    /// right away when the client is on a cluster already), then
    /// [constant MultiplayerPeer.CONNECTION_CONNECTED] with the server as
    /// peer 1. Returns [constant ERR_ALREADY_IN_USE] when the peer is active
    /// (call [method MultiplayerPeer.close] first) and
    /// [constant ERR_INVALID_PARAMETER] for a null node. The node keeps
    /// working as before; one peer per node.
    #[func]
    fn create_client(&mut self, client: Option<Gd<SustenetClient>>) -> Result<(), Error> {
        let Some(mut client) = client else {
            return Err(Error::new(
                GdError::ERR_INVALID_PARAMETER,
                "SustenetMultiplayerPeer.create_client: the SustenetClient is null",
            ));
        };
        if !matches!(self.face, Face::Idle) {
            return Err(Error::new(
                GdError::ERR_ALREADY_IN_USE,
                "SustenetMultiplayerPeer.create_client: the peer is active; close() it first",
            ));
        }
        // The node's calls may emit signals whose handlers call this peer.
        let link = {
            let _guard = self.base_mut();
            limit_sync_packets(client.clone().upcast());
            client.bind_mut().attach_peer()
        };
        self.reset(ConnectionStatus::CONNECTING);
        self.face = Face::Client(ClientFace::new(link));
        self.poll_client();
        Ok(())
    }

    /// Makes this peer the server (peer 1) of [param cluster], starting the
    /// cluster when it is not running (returning [method SustenetCluster.start]'s
    /// error). Players become peers when their own peer says hello; a player
    /// that only uses the plain signal API is never one. Reads
    /// [member server_relay] now.
    #[func]
    fn create_server(&mut self, cluster: Option<Gd<SustenetCluster>>) -> Result<(), Error> {
        let Some(mut cluster) = cluster else {
            return Err(Error::new(
                GdError::ERR_INVALID_PARAMETER,
                "SustenetMultiplayerPeer.create_server: the SustenetCluster is null",
            ));
        };
        if !matches!(self.face, Face::Idle) {
            return Err(Error::new(
                GdError::ERR_ALREADY_IN_USE,
                "SustenetMultiplayerPeer.create_server: the peer is active; close() it first",
            ));
        }
        // Starting the cluster emits `started`, whose handlers may call this peer.
        let link = {
            let _guard = self.base_mut();
            let mut node = cluster.bind_mut();
            if !node.is_running() {
                node.start()?;
            }
            let link = node.attach_peer();
            drop(node);
            limit_sync_packets(cluster.upcast());
            link
        };
        self.reset(ConnectionStatus::CONNECTED);
        self.unique_id = 1;
        self.relay = self.server_relay;
        let max_rejoins = u32::try_from(self.max_rejoins).unwrap_or(0);
        self.face = Face::Server(Box::new(ServerFace::new(link, max_rejoins)));
        Ok(())
    }

    /// Server: the Sustenet player id of a peer id; -1 when no such peer.
    /// Client: the client's own player id for its own peer id; -1 otherwise.
    #[func]
    fn get_player_id(&self, peer_id: i64) -> i64 {
        match &self.face {
            Face::Server(s) => i32::try_from(peer_id)
                .ok()
                .and_then(|p| s.ids.player(p))
                .map_or(-1, crate::id_to_gd),
            Face::Client(c) if peer_id == i64::from(self.unique_id) && peer_id != 0 => {
                c.player_id.map_or(-1, crate::id_to_gd)
            }
            _ => -1,
        }
    }

    /// Server: the peer id of a Sustenet player id; 0 when that player is
    /// not a peer (not on the cluster, or not using a peer).
    #[func]
    fn get_peer_id(&self, player_id: i64) -> i64 {
        match (&self.face, crate::id_from_gd(player_id)) {
            (Face::Server(s), Some(p)) => s.ids.peer(p).map_or(0, i64::from),
            _ => 0,
        }
    }

    /// Server: moves a peer's player to another cluster (server meshing)
    /// with no @rpc lost or repeated. The client is told first: its peer
    /// turns [constant MultiplayerPeer.CONNECTION_CONNECTING], frees what
    /// this cluster spawned (its game sees
    /// [signal MultiplayerAPI.peer_disconnected] of peer 1), stops sending
    /// and answers; then the player moves
    /// ([method SustenetCluster.transfer_player] with [param state]). Without
    /// an answer within [member move_timeout_sec] it moves anyway. Here the
    /// peer leaves with [signal MultiplayerPeer.peer_disconnected].
    #[func]
    fn transfer_peer(
        &mut self,
        peer_id: i64,
        target_cluster_id: i64,
        state: PackedByteArray,
    ) -> Result<(), Error> {
        let timeout = crate::cluster::secs_to_duration(self.move_timeout_sec, "move_timeout_sec");
        let Face::Server(s) = &mut self.face else {
            return Err(Error::new(
                GdError::ERR_UNCONFIGURED,
                "SustenetMultiplayerPeer.transfer_peer: not a server (create_server first)",
            ));
        };
        let (Some(peer), Some(target)) = (
            i32::try_from(peer_id).ok(),
            crate::id_from_gd(target_cluster_id),
        ) else {
            return Err(Error::new(
                GdError::ERR_INVALID_PARAMETER,
                "SustenetMultiplayerPeer.transfer_peer: a peer id or cluster id out of range",
            ));
        };
        s.begin_move(peer, target, state.to_vec(), timeout)
    }

    /// Counters since the peer was made: [code]polls[/code] and
    /// [code]poll_usec[/code] (calls of [method MultiplayerPeer.poll] and the
    /// microseconds they took), [code]sent_packets[/code] and
    /// [code]sent_bytes[/code] (one per destination: a packet to every peer
    /// counts once per peer), [code]received_packets[/code] and
    /// [code]received_bytes[/code] (SceneMultiplayer packets queued for the
    /// game; peer headers included in the sent bytes only).
    #[func]
    fn get_stats(&self) -> VarDictionary {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut d = VarDictionary::new();
        d.set("polls", n(self.stats.polls));
        d.set("poll_usec", n(self.stats.poll_usec));
        d.set("sent_packets", n(self.stats.sent_packets));
        d.set("sent_bytes", n(self.stats.sent_bytes));
        d.set("received_packets", n(self.stats.received_packets));
        d.set("received_bytes", n(self.stats.received_bytes));
        d
    }

    /// Server: the peer ids of the players within [param radius] of
    /// [param position] ([Vector2] or [Vector3]) by the cluster's fragment
    /// grid positions ([method SustenetCluster.set_player_position]).
    #[func]
    fn get_peers_near(&self, position: Variant, radius: f64) -> PackedInt32Array {
        let (Face::Server(s), Some(pos)) = (&self.face, crate::cluster::position_of(&position))
        else {
            return PackedInt32Array::new();
        };
        interest::peers_near_ids(s, pos, radius as f32)
            .into_iter()
            .collect()
    }

    /// Server: interest management for [MultiplayerSynchronizer]s. Makes
    /// [param synchronizer] visible only to peers whose player is within
    /// [param radius] of the position of [param owner_peer_id]'s player on
    /// the fragment grid (and always to [param owner_peer_id] itself), and
    /// refreshes that now; call it again when players move (each physics
    /// tick or a few times a second). With [member server_relay] off, this
    /// replaces SceneMultiplayer's everyone-sees-everyone with O(N × nearby)
    /// traffic. Returns how many peers see the synchronizer.
    #[func]
    fn update_visibility(
        &mut self,
        synchronizer: Option<Gd<godot::classes::MultiplayerSynchronizer>>,
        owner_peer_id: i64,
        radius: f64,
    ) -> i64 {
        let (Face::Server(s), Some(sync)) = (&self.face, synchronizer) else {
            godot_error!(
                "SustenetMultiplayerPeer.update_visibility: not a server, or a null synchronizer"
            );
            return 0;
        };
        let wanted = interest::visibility(s, owner_peer_id, radius);
        // Changing visibility makes SceneMultiplayer send spawns and despawns
        // through this peer at once: let it in while the synchronizer is told.
        let _guard = self.base_mut();
        interest::apply_visibility(sync, &wanted)
    }
}

impl SustenetMultiplayerPeer {
    /// Forgets every packet and peer-level state and sets `status`.
    fn reset(&mut self, status: ConnectionStatus) {
        let max = usize::try_from(self.max_queued_bytes.max(1 << 16)).unwrap_or(usize::MAX);
        self.inbox = Inbox::new(max);
        self.out_seq = [0; 256];
        self.status = status;
        self.unique_id = 0;
        self.relay = false;
    }

    /// Encodes and sends a packet from SceneMultiplayer to the target peer(s).
    fn put(&mut self, packet: &[u8]) -> Result<(), Error> {
        if self.status != ConnectionStatus::CONNECTED {
            return Err(Error::new(
                GdError::ERR_UNCONFIGURED,
                "SustenetMultiplayerPeer: not connected",
            ));
        }
        if packet.is_empty() || packet.len() > MAX_PACKET {
            return Err(Error::new(
                GdError::ERR_INVALID_PARAMETER,
                format!(
                    "SustenetMultiplayerPeer: a packet of {} bytes (1..{MAX_PACKET})",
                    packet.len()
                ),
            ));
        }
        let mode = from_godot_mode(self.transfer_mode);
        let channel = u8::try_from(self.transfer_channel).unwrap_or(0);
        let seq = if mode == Mode::UnreliableOrdered {
            let s = &mut self.out_seq[usize::from(channel)];
            *s = s.wrapping_add(1);
            *s
        } else {
            0
        };
        let payload = wire::encode_data(mode, channel, seq, packet);
        let fits = payload.len() <= MAX_UNRELIABLE_PAYLOAD;
        let reliable = mode == Mode::Reliable || !fits;
        if !fits && mode != Mode::Reliable && !self.warned_large_datagram {
            self.warned_large_datagram = true;
            godot_warn!(
                "SustenetMultiplayerPeer: an unreliable packet of {} bytes does not fit a datagram ({MAX_DATAGRAM_PACKET} bytes); sent reliably. Set multiplayer.max_sync_packet_size to SustenetMultiplayerPeer.MAX_DATAGRAM_PACKET_SIZE",
                packet.len()
            );
        }
        let target = self.target_peer;
        match &mut self.face {
            Face::Idle => Err(Error::quiet(GdError::ERR_UNCONFIGURED)),
            Face::Client(c) => c.put(target, payload, reliable, &mut self.stats),
            Face::Server(s) => s.put(target, payload, reliable, &mut self.stats),
        }
    }
}

fn to_godot_mode(m: Mode) -> TransferMode {
    match m {
        Mode::Unreliable => TransferMode::UNRELIABLE,
        Mode::UnreliableOrdered => TransferMode::UNRELIABLE_ORDERED,
        Mode::Reliable => TransferMode::RELIABLE,
    }
}

fn from_godot_mode(m: TransferMode) -> Mode {
    if m == TransferMode::UNRELIABLE {
        Mode::Unreliable
    } else if m == TransferMode::UNRELIABLE_ORDERED {
        Mode::UnreliableOrdered
    } else {
        Mode::Reliable
    }
}

/// Lowers the node's SceneMultiplayer packet limits to what the peer
/// carries: synchronizer packets in one datagram, deltas in one message.
fn limit_sync_packets(node: Gd<Node>) {
    if !node.is_inside_tree() {
        return;
    }
    let Some(api) = node.get_multiplayer() else {
        return;
    };
    let Ok(mut sm) = api.try_cast::<SceneMultiplayer>() else {
        return;
    };
    let dgram = i32::try_from(MAX_DATAGRAM_PACKET).unwrap_or(i32::MAX);
    if sm.get_max_sync_packet_size() > dgram {
        sm.set_max_sync_packet_size(dgram);
    }
    let max = i32::try_from(MAX_PACKET).unwrap_or(i32::MAX);
    if sm.get_max_delta_packet_size() > max {
        sm.set_max_delta_packet_size(max);
    }
}

/// `value` when it is 0 or more; otherwise an error naming `property` and
/// its `range` (the value stays `current`) and `None`.
fn non_negative(property: &str, range: &str, value: i64, current: i64) -> Option<i64> {
    if value >= 0 {
        return Some(value);
    }
    godot_error!("SustenetMultiplayerPeer: {property} {value} must be {range}; it stays {current}");
    None
}
