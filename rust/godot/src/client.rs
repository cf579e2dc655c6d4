//! `SustenetClient` and `SustenetClusterInfo`.

use godot::classes::{INode, IRefCounted, Node, RefCounted};
use godot::global::Error as GdError;
use godot::prelude::*;
use sustenet_client::{Client, ClientConfig, ClientError, ClientEvent};
use sustenet_proto::datagram::MAX_UNRELIABLE_PAYLOAD;
use sustenet_proto::{ClusterInfo, DEFAULT_MASTER_PORT, DisconnectReason, JoinTarget, PublicKey};

use crate::multiplayer_peer::tap::{self, ClientLink, ClientTap, Tap};
use crate::{
    DrainStats, Error, command_from_gd, flush_logs, id_from_gd, id_to_gd, port_from_gd, runtime,
};

/// One cluster as the master lists it. Read its properties; changing them
/// changes nothing on the server.
#[derive(GodotClass)]
#[class(base=RefCounted)]
pub struct SustenetClusterInfo {
    /// The cluster's id; pass it to [method SustenetClient.join_cluster].
    #[var]
    id: i64,
    /// The cluster's display name.
    #[var]
    cluster_name: GString,
    /// Host name or address players connect to.
    #[var]
    address: GString,
    /// TCP port (reliable channel).
    #[var]
    tcp_port: i64,
    /// UDP port (unreliable channel).
    #[var]
    udp_port: i64,
    /// Players on the cluster now (including tickets just issued).
    #[var]
    players: i64,
    /// Most players the cluster takes, as it registered with the master: its
    /// [code]max_connections[/code], or the default bound of 1,000 when that
    /// is 0. A Sustenet cluster ([SustenetCluster], [code]sustenet cluster[/code],
    /// [code]sustenet up[/code]) always has a limit, so this is never 0 for
    /// one; 0 comes only from a cluster of another implementation that
    /// registered none, and the master never marks such a cluster full
    /// ([member locked]).
    #[var]
    capacity: i64,
    /// True when the cluster is full: it cannot be joined.
    #[var]
    locked: bool,
    /// Round trip to the cluster in milliseconds, measured right after the
    /// list arrived; -1 until measured or when it did not answer.
    #[var]
    ping_ms: f64,
    base: Base<RefCounted>,
}

#[godot_api]
impl IRefCounted for SustenetClusterInfo {
    fn init(base: Base<RefCounted>) -> Self {
        Self {
            id: 0,
            cluster_name: GString::new(),
            address: GString::new(),
            tcp_port: 0,
            udp_port: 0,
            players: 0,
            capacity: 0,
            locked: false,
            ping_ms: -1.0,
            base,
        }
    }

    fn to_string(&self) -> GString {
        format!(
            "{} ({}:{}, {}/{}{})",
            self.cluster_name,
            self.address,
            self.tcp_port,
            self.players,
            self.capacity,
            if self.locked { ", full" } else { "" }
        )
        .as_str()
        .into()
    }
}

#[godot_api]
impl SustenetClusterInfo {}

impl SustenetClusterInfo {
    pub(crate) fn from_info(c: &ClusterInfo) -> Gd<Self> {
        Gd::from_init_fn(|base| Self {
            id: id_to_gd(c.id),
            cluster_name: c.name.as_str().into(),
            address: c.address.as_str().into(),
            tcp_port: i64::from(c.tcp_port),
            udp_port: i64::from(c.udp_port),
            players: i64::from(c.players),
            capacity: i64::from(c.capacity),
            locked: c.locked,
            ping_ms: -1.0,
            base,
        })
    }
}

/// A player's connection to Sustenet: logs in to the master, joins a
/// cluster, and sends and receives packets.
///
/// Calls never block: each one queues a command for the network thread and
/// returns [constant OK] (or an error, with a message in the output saying
/// what to do). Answers come back as signals, emitted from [method Node._process]
/// with a per-frame budget ([member events_per_frame], [member frame_budget_usec]).
///
/// [codeblock]
/// @onready var net: SustenetClient = $SustenetClient
///
/// func _ready():
///     net.login_succeeded.connect(func(_id): net.join_best_cluster())
///     net.cluster_joined.connect(func(cluster, id): print("playing on ", cluster.cluster_name))
///     net.packet_received.connect(_on_packet)
///     net.login("ann", "")
///
/// func _on_packet(command: int, data: PackedByteArray, reliable: bool):
///     print(command, " ", SustenetClient.decode_var(data))
/// [/codeblock]
#[derive(GodotClass)]
#[class(base=Node)]
pub struct SustenetClient {
    /// The master's host name or IP address.
    #[export]
    master_address: GString,
    /// The master's TCP port; 0 means the default, 6256.
    #[export]
    master_port: i64,
    /// The master's public key in base64, as printed by [code]sustenet up[/code]
    /// or [code]sustenet keygen --master[/code]. Required.
    #[export]
    master_public_key: GString,
    /// The user name [member auto_join] logs in with.
    #[export]
    username: GString,
    /// When true, the node logs in as [member username] when it enters the
    /// tree and joins the best cluster as soon as the login succeeds.
    #[export]
    auto_join: bool,
    /// Most events turned into signals in one frame.
    #[export]
    events_per_frame: i64,
    /// Most microseconds spent turning events into signals in one frame.
    #[export]
    frame_budget_usec: i64,
    /// How long to keep trying to reconnect to the cluster when the
    /// connection drops (network blip, laptop lid), in seconds; 0 turns
    /// reconnecting off. Read when the node first connects.
    #[export]
    reconnect_window_sec: f64,
    client: Option<(Client, flume::Receiver<ClientEvent>)>,
    client_id: i64,
    cluster: Option<Gd<SustenetClusterInfo>>,
    reconnecting: bool,
    joining_after_login: bool,
    last_redirect_pause_ms: f64,
    last_list: Vec<Gd<SustenetClusterInfo>>,
    drain: DrainStats,
    peer_tap: Option<Tap<ClientTap>>,
    base: Base<Node>,
}

#[godot_api]
impl INode for SustenetClient {
    fn init(base: Base<Node>) -> Self {
        Self {
            master_address: "127.0.0.1".into(),
            master_port: i64::from(DEFAULT_MASTER_PORT),
            master_public_key: GString::new(),
            username: "player".into(),
            auto_join: false,
            events_per_frame: 2048,
            frame_budget_usec: 4000,
            reconnect_window_sec: 30.0,
            client: None,
            client_id: 0,
            cluster: None,
            reconnecting: false,
            joining_after_login: false,
            last_redirect_pause_ms: 0.0,
            last_list: Vec::new(),
            drain: DrainStats::default(),
            peer_tap: None,
            base,
        }
    }

    fn ready(&mut self) {
        if self.auto_join {
            self.joining_after_login = true;
            let name = self.username.to_string();
            let _ = self.login(name.as_str().into(), GString::new());
        }
    }

    fn process(&mut self, _delta: f64) {
        flush_logs();
        self.drain_events();
    }

    fn exit_tree(&mut self) {
        if let Some((c, _)) = self.client.take() {
            let _ = c.disconnect();
        }
    }
}

#[godot_api]
impl SustenetClient {
    /// The peer closed the connection on purpose.
    #[constant]
    const REASON_REQUESTED: i64 = 1;
    /// The server's game logic kicked the player.
    #[constant]
    const REASON_KICKED: i64 = 2;
    /// The peer stopped responding.
    #[constant]
    const REASON_TIMEOUT: i64 = 3;
    /// The server is shutting down.
    #[constant]
    const REASON_SERVER_SHUTDOWN: i64 = 4;
    /// The server or cluster is full.
    #[constant]
    const REASON_SERVER_FULL: i64 = 5;
    /// Malformed or unexpected data.
    #[constant]
    const REASON_PROTOCOL_VIOLATION: i64 = 6;
    /// Authentication failed.
    #[constant]
    const REASON_AUTH_FAILED: i64 = 7;
    /// The two sides speak different protocol versions.
    #[constant]
    const REASON_VERSION_MISMATCH: i64 = 8;
    /// Too slow to keep up with the data sent to it.
    #[constant]
    const REASON_SEND_QUEUE_FULL: i64 = 9;
    /// The handshake did not finish in time.
    #[constant]
    const REASON_HANDSHAKE_TIMEOUT: i64 = 10;
    /// The connect token is invalid.
    #[constant]
    const REASON_TOKEN_INVALID: i64 = 11;
    /// The connect token expired.
    #[constant]
    const REASON_TOKEN_EXPIRED: i64 = 12;
    /// The connect token was already used.
    #[constant]
    const REASON_TOKEN_USED: i64 = 13;
    /// The connect token is for another cluster.
    #[constant]
    const REASON_TOKEN_WRONG_CLUSTER: i64 = 14;
    /// Moved to another cluster.
    #[constant]
    const REASON_REDIRECTED: i64 = 15;
    /// The connection dropped without a goodbye.
    #[constant]
    const REASON_CONNECTION_LOST: i64 = 16;
    /// Too many packets failed authentication.
    #[constant]
    const REASON_TAMPERED: i64 = 17;
    /// The server has too many pending handshakes.
    #[constant]
    const REASON_TOO_MANY_HANDSHAKES: i64 = 18;
    /// No cluster is available.
    #[constant]
    const REASON_NO_CLUSTER: i64 = 19;
    /// The connection dropped and the player did not reconnect within the window.
    #[constant]
    const REASON_RECONNECT_TIMEOUT: i64 = 20;
    /// A reconnect was refused: the session had ended, or what was sent meanwhile is no longer kept.
    #[constant]
    const REASON_RESUME_REFUSED: i64 = 21;
    /// A join was refused: this connection, user or address already holds as many unused
    /// tickets as the master allows (4 per connection, 8 per user name, 256 per address by
    /// default). Use the ticket you hold, or wait for unused ones to expire.
    #[constant]
    const REASON_TOO_MANY_TICKETS: i64 = 22;
    /// Largest payload of [method send_unreliable], in bytes.
    #[constant]
    const MAX_UNRELIABLE_PAYLOAD: i64 = MAX_UNRELIABLE_PAYLOAD as i64;

    /// Connected to the master (handshake done).
    #[signal]
    fn connected();
    /// The master accepted the login; [param client_id] is also the player id on clusters.
    #[signal]
    fn login_succeeded(client_id: i64);
    /// The master refused the login.
    #[signal]
    fn login_failed(message: GString);
    /// The cluster list, an [Array] of [SustenetClusterInfo].
    #[signal]
    fn clusters_received(clusters: VarArray);
    /// The round trips to the clusters of the last list were measured: the
    /// same [SustenetClusterInfo] objects, now with [member SustenetClusterInfo.ping_ms].
    #[signal]
    fn cluster_pings_received(clusters: VarArray);
    /// Connected to a cluster and ready to play.
    #[signal]
    fn cluster_joined(cluster: Gd<SustenetClusterInfo>, player_id: i64);
    /// A join was refused; [param reason] is one of the [code]REASON_*[/code] constants.
    #[signal]
    fn join_failed(reason: i64, message: GString);
    /// A packet from the cluster, on the reliable channel or not.
    #[signal]
    fn packet_received(command: i64, data: PackedByteArray, reliable: bool);
    /// The cluster moved this player to another cluster; [signal cluster_joined] follows.
    #[signal]
    fn redirected(cluster: Gd<SustenetClusterInfo>);
    /// The cluster connection dropped ([constant REASON_CONNECTION_LOST] or
    /// [constant REASON_TIMEOUT]) and the client is reconnecting to the same
    /// cluster as the same player, for up to [member reconnect_window_sec].
    /// Reliable packets sent meanwhile are kept and delivered after the
    /// reconnect. [signal reconnected] or [signal disconnected] follows.
    #[signal]
    fn reconnecting(reason: i64, message: GString);
    /// Back on the cluster after a dropped connection, with the same player
    /// id; no reliable packet was lost or repeated in either direction.
    /// [param away_ms] is how long the connection was down.
    #[signal]
    fn reconnected(away_ms: f64);
    /// The cluster connection ended; [param reason] is one of the [code]REASON_*[/code] constants.
    #[signal]
    fn disconnected(reason: i64, message: GString);
    /// The master connection ended before a cluster was joined.
    #[signal]
    fn master_disconnected(reason: i64, message: GString);
    /// Something failed (master unreachable, wrong public key, ...); the message says what to do.
    #[signal]
    fn error(message: GString);

    /// A description of a [code]REASON_*[/code] code, fit to show a player.
    #[func]
    fn reason_text(code: i64) -> GString {
        let r = u8::try_from(code).map_or(DisconnectReason::Unknown, DisconnectReason::from_code);
        r.description().into()
    }

    /// Turns bytes made by [method send_var] back into a value. Objects are
    /// never decoded: the data comes from the network.
    #[func]
    fn decode_var(data: PackedByteArray) -> Variant {
        godot::global::bytes_to_var(&data)
    }

    /// Connects to the master. [method login] does this on its own.
    #[func]
    fn connect_to_master(&mut self) -> Result<(), Error> {
        push(self.ensure_client()?.connect())
    }

    /// Logs in (connecting first if needed). Answered by [signal login_succeeded] or [signal login_failed].
    #[func]
    fn login(&mut self, username: GString, secret: GString) -> Result<(), Error> {
        let (u, s) = (username.to_string(), secret.to_string());
        if u.is_empty() {
            return Err(Error::new(
                GdError::ERR_INVALID_PARAMETER,
                "SustenetClient.login: the user name is empty",
            ));
        }
        push(self.ensure_client()?.login(u, s.into_bytes()))
    }

    /// Asks for the cluster list; answered by [signal clusters_received].
    #[func]
    fn request_clusters(&mut self) -> Result<(), Error> {
        push(self.ensure_client()?.list_clusters())
    }

    /// Joins the cluster with this id; answered by [signal cluster_joined] or [signal join_failed].
    #[func]
    fn join_cluster(&mut self, cluster_id: i64) -> Result<(), Error> {
        let Some(id) = id_from_gd(cluster_id) else {
            return Err(Error::new(
                GdError::ERR_INVALID_PARAMETER,
                "SustenetClient.join_cluster: the cluster id is negative",
            ));
        };
        push(self.ensure_client()?.join(JoinTarget::Id(id)))
    }

    /// Joins the best cluster for this player: lists the clusters, pings
    /// each, and picks the lowest [code]ping + 100 ms × fill[/code] among those
    /// not full (fill = players / capacity, or players / (players + 100) without
    /// a limit; no answer counts as 1000 ms).
    #[func]
    fn join_best_cluster(&mut self) -> Result<(), Error> {
        push(self.ensure_client()?.join_best())
    }

    /// Joins the cluster the master picks: the least loaded one that is not full.
    #[func]
    fn join_least_loaded_cluster(&mut self) -> Result<(), Error> {
        push(self.ensure_client()?.join(JoinTarget::Auto))
    }

    /// Sends bytes to the cluster, reliably and in order.
    #[func]
    fn send(&self, command: i64, data: PackedByteArray) -> Result<(), Error> {
        self.send_bytes(command, data.to_vec(), true)
    }

    /// Sends bytes to the cluster without delivery guarantee (newer packets
    /// replace older ones). At most [constant MAX_UNRELIABLE_PAYLOAD] bytes.
    #[func]
    fn send_unreliable(&self, command: i64, data: PackedByteArray) -> Result<(), Error> {
        self.send_bytes(command, data.to_vec(), false)
    }

    /// Sends any value (through [method @GlobalScope.var_to_bytes], without objects), reliably.
    #[func]
    fn send_var(&self, command: i64, value: Variant) -> Result<(), Error> {
        self.send_bytes(command, godot::global::var_to_bytes(&value).to_vec(), true)
    }

    /// Sends any value without delivery guarantee.
    #[func]
    fn send_var_unreliable(&self, command: i64, value: Variant) -> Result<(), Error> {
        self.send_bytes(command, godot::global::var_to_bytes(&value).to_vec(), false)
    }

    /// Leaves the cluster; the login is kept.
    #[func]
    fn leave(&mut self) -> Result<(), Error> {
        match &self.client {
            Some((c, _)) => push(c.leave()),
            None => Ok(()),
        }
    }

    /// Closes every connection.
    #[func]
    fn disconnect_from_server(&mut self) -> Result<(), Error> {
        self.cluster = None;
        match &self.client {
            Some((c, _)) => push(c.disconnect()),
            None => Ok(()),
        }
    }

    /// The client id from the last login (0 before).
    #[func]
    fn get_client_id(&self) -> i64 {
        self.client_id
    }

    /// Whether the client is on a cluster (also while it reconnects).
    #[func]
    fn is_in_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// Whether the cluster connection dropped and a reconnect is under way.
    #[func]
    fn is_reconnecting(&self) -> bool {
        self.reconnecting
    }

    /// The cluster this client is on, or null.
    #[func]
    fn get_cluster(&self) -> Option<Gd<SustenetClusterInfo>> {
        self.cluster.clone()
    }

    /// Last measured round trip on the reliable channel, in milliseconds (0 before the first).
    #[func]
    fn get_reliable_rtt_ms(&self) -> f64 {
        self.client
            .as_ref()
            .map_or(0.0, |(c, _)| c.rtt().reliable().as_secs_f64() * 1000.0)
    }

    /// Last measured round trip on the unreliable channel, in milliseconds (0 before the first).
    #[func]
    fn get_unreliable_rtt_ms(&self) -> f64 {
        self.client
            .as_ref()
            .map_or(0.0, |(c, _)| c.rtt().unreliable().as_secs_f64() * 1000.0)
    }

    /// How long the last move to another cluster paused the connection, in
    /// milliseconds (from the redirect's arrival to the new cluster's welcome).
    #[func]
    fn get_last_redirect_pause_ms(&self) -> f64 {
        self.last_redirect_pause_ms
    }

    /// Microseconds spent turning events into signals in the last frame.
    #[func]
    fn get_last_drain_usec(&self) -> i64 {
        self.drain.last_usec
    }

    /// The most microseconds spent draining in any one frame so far.
    #[func]
    fn get_max_drain_usec(&self) -> i64 {
        self.drain.max_usec
    }

    /// Events turned into signals so far.
    #[func]
    fn get_events_drained(&self) -> i64 {
        self.drain.total
    }
}

/// A client command's refusal: too large is an invalid argument, anything
/// else (the client task is busy or gone) `ERR_BUSY`.
fn push(r: Result<(), ClientError>) -> Result<(), Error> {
    r.map_err(|e| match e {
        ClientError::TooLarge { .. } => Error::invalid(format!("SustenetClient: {e}")),
        e => Error::new(GdError::ERR_BUSY, format!("SustenetClient: {e}")),
    })
}

impl SustenetClient {
    fn ensure_client(&mut self) -> Result<&Client, Error> {
        if self.client.is_none() {
            let key = self.master_public_key.to_string();
            if key.trim().is_empty() {
                return Err(Error::new(
                    GdError::ERR_UNCONFIGURED,
                    "SustenetClient: master_public_key is empty; set it to the master's public key (printed by `sustenet up`)",
                ));
            }
            let key = PublicKey::from_base64(&key).map_err(|e| {
                Error::new(
                    GdError::ERR_INVALID_PARAMETER,
                    format!("SustenetClient: master_public_key is not a valid public key ({e}); copy it from `sustenet up`"),
                )
            })?;
            let Some(port) = port_from_gd(self.master_port, DEFAULT_MASTER_PORT) else {
                return Err(Error::new(
                    GdError::ERR_INVALID_PARAMETER,
                    format!(
                        "SustenetClient: master_port {} is not a port (0..65535)",
                        self.master_port
                    ),
                ));
            };
            let handle = runtime::handle().map_err(|e| {
                Error::new(GdError::ERR_CANT_CREATE, format!("SustenetClient: {e}"))
            })?;
            let addr = format!("{}:{port}", self.master_address);
            let mut config = ClientConfig::new(addr, key);
            config.reconnect_window =
                crate::cluster::secs_to_duration(self.reconnect_window_sec, "reconnect_window_sec");
            let (client, events) = Client::spawn(&handle, config);
            let _ = tap::send_to(&mut self.peer_tap, ClientTap::Client(client.clone()));
            self.client = Some((client, events));
        }
        match &self.client {
            Some((c, _)) => Ok(c),
            None => Err(Error::new(
                GdError::ERR_BUG,
                "SustenetClient: the client was not kept",
            )),
        }
    }

    fn send_bytes(&self, command: i64, data: Vec<u8>, reliable: bool) -> Result<(), Error> {
        let Some(command) = command_from_gd(command) else {
            return Err(Error::new(
                GdError::ERR_INVALID_PARAMETER,
                format!("SustenetClient: command {command} is out of range (0..65535)"),
            ));
        };
        let Some((c, _)) = &self.client else {
            return Err(Error::new(
                GdError::ERR_UNCONFIGURED,
                "SustenetClient: not connected; log in and join a cluster first",
            ));
        };
        if self.cluster.is_none() {
            return Err(Error::new(
                GdError::ERR_UNCONFIGURED,
                "SustenetClient: not in a cluster; wait for cluster_joined",
            ));
        }
        if reliable {
            push(c.send(command, data))
        } else {
            push(c.send_unreliable(command, data))
        }
    }

    fn drain_events(&mut self) {
        let Some((_, rx)) = &self.client else { return };
        let rx = rx.clone();
        let (max, budget) = (self.events_per_frame, self.frame_budget_usec);
        let done = DrainStats::run(&rx, max, budget, |ev| {
            self.handle(ev);
            true
        });
        self.drain.record(done);
    }

    /// Links a `SustenetMultiplayerPeer` to this node, replacing an earlier one.
    pub(crate) fn attach_peer(&mut self) -> ClientLink {
        let (t, rx) = tap::tap();
        self.peer_tap = Some(t);
        ClientLink {
            tap: rx,
            client: self.client.as_ref().map(|(c, _)| c.clone()),
            joined: self.cluster.is_some(),
            player_id: u64::try_from(self.client_id).unwrap_or(0),
        }
    }

    fn handle(&mut self, ev: ClientEvent) {
        if tap::client_event(&mut self.peer_tap, &ev) {
            return; // the peer's own packet
        }
        match ev {
            ClientEvent::MasterConnected => self.signals().connected().emit(),
            ClientEvent::LoginSucceeded { client_id } => {
                self.client_id = id_to_gd(client_id);
                self.signals().login_succeeded().emit(id_to_gd(client_id));
                if std::mem::take(&mut self.joining_after_login) {
                    let _ = self.join_best_cluster();
                }
            }
            ClientEvent::LoginFailed { message } => {
                self.joining_after_login = false;
                self.signals().login_failed().emit(message.as_str());
            }
            ClientEvent::Clusters(list) => {
                self.last_list = list.iter().map(SustenetClusterInfo::from_info).collect();
                let arr: VarArray = self.last_list.iter().map(|c| c.to_variant()).collect();
                self.signals().clusters_received().emit(&arr);
            }
            ClientEvent::ClusterPings(pings) => {
                for info in &mut self.last_list {
                    let id = info.bind().id;
                    let ms = pings
                        .iter()
                        .find(|p| id_to_gd(p.id) == id)
                        .and_then(|p| p.rtt)
                        .map_or(-1.0, |d| d.as_secs_f64() * 1000.0);
                    info.bind_mut().ping_ms = ms;
                }
                let arr: VarArray = self.last_list.iter().map(|c| c.to_variant()).collect();
                self.signals().cluster_pings_received().emit(&arr);
            }
            ClientEvent::JoinFailed { reason, message } => {
                self.signals()
                    .join_failed()
                    .emit(i64::from(reason.code()), message.as_str());
            }
            ClientEvent::Joined { cluster, player_id } => {
                let info = SustenetClusterInfo::from_info(&cluster);
                self.cluster = Some(info.clone());
                self.client_id = id_to_gd(player_id);
                self.signals()
                    .cluster_joined()
                    .emit(&info, id_to_gd(player_id));
            }
            ClientEvent::Packet {
                command,
                payload,
                reliable,
            } => {
                let data = PackedByteArray::from(payload.as_slice());
                self.signals()
                    .packet_received()
                    .emit(i64::from(command), &data, reliable);
            }
            ClientEvent::Redirected { cluster, pause } => {
                self.last_redirect_pause_ms = pause.as_secs_f64() * 1000.0;
                let info = SustenetClusterInfo::from_info(&cluster);
                self.cluster = Some(info.clone());
                self.signals().redirected().emit(&info);
            }
            ClientEvent::Reconnecting { reason, message } => {
                self.reconnecting = true;
                self.signals()
                    .reconnecting()
                    .emit(i64::from(reason.code()), message.as_str());
            }
            ClientEvent::Reconnected { away, .. } => {
                self.reconnecting = false;
                self.signals()
                    .reconnected()
                    .emit(away.as_secs_f64() * 1000.0);
            }
            ClientEvent::Disconnected { reason, message } => {
                self.cluster = None;
                self.reconnecting = false;
                self.signals()
                    .disconnected()
                    .emit(i64::from(reason.code()), message.as_str());
            }
            ClientEvent::MasterDisconnected { reason, message } => {
                self.signals()
                    .master_disconnected()
                    .emit(i64::from(reason.code()), message.as_str());
            }
            ClientEvent::Error(e) => {
                let text = e.to_string();
                godot_warn!("SustenetClient: {text}");
                self.signals().error().emit(text.as_str());
            }
        }
    }
}
