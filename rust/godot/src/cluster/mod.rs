//! `SustenetCluster`: a full Sustenet cluster inside Godot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use godot::classes::{INode, Node};
use godot::global::Error as GdError;
use godot::prelude::*;
use sustenet_proto::message::USER_DATA_MAX;
use sustenet_server::SendError;
use sustenet_server::bind;
use sustenet_server::cluster::{ClusterConfig, ClusterHandle};
use tokio::sync::oneshot;

use crate::multiplayer_peer::tap::{self, ClusterLink, ClusterTap, Tap};
use crate::pending::PendingQuota;
use crate::{DrainStats, Error, command_from_gd, flush_logs, id_from_gd, id_to_gd, runtime};

/// Capacity of the command channel from the node to the cluster.
const COMMAND_QUEUE: usize = 1 << 18;

mod agones;
mod forward;
mod setup;
mod signals;

use forward::{InstanceIds, NodeEvent};

struct Running {
    handle: ClusterHandle,
    events: flume::Receiver<NodeEvent>,
    events_tx: flume::Sender<NodeEvent>,
    instances: InstanceIds,
    quota: Arc<PendingQuota>,
    stop: Option<oneshot::Sender<()>>,
    /// Closed once the cluster's run has ended: its sockets are let go.
    finished: oneshot::Receiver<()>,
    tcp_port: u16,
    udp_port: u16,
    cluster_id: u64,
    /// The metrics endpoint's port (0: none); dropping the sender stops it.
    metrics_port: u16,
    _metrics_stop: Option<oneshot::Sender<()>>,
    /// The Agones link's settings, when [member agones_enabled] is on.
    agones: Option<agones::AgonesRun>,
}

/// Runs a Sustenet cluster inside Godot: players who hold a ticket from the
/// master connect here, and your GDScript handles them through signals and
/// methods. Export the project as a headless dedicated server to run it in
/// production; the node registers with the master using its cluster key.
///
/// [codeblock]
/// @onready var cluster: SustenetCluster = $SustenetCluster
///
/// func _ready():
///     cluster.player_connected.connect(func(id, data): print("hello ", data.get_string_from_utf8()))
///     cluster.packet_received.connect(_on_packet)
///     cluster.start()
///
/// func _on_packet(player_id: int, command: int, data: PackedByteArray, reliable: bool):
///     cluster.broadcast_except(player_id, command, data, reliable)
/// [/codeblock]
#[derive(GodotClass)]
#[class(base=Node)]
pub struct SustenetCluster {
    /// The name players see in the cluster list.
    #[export]
    server_name: GString,
    /// The local address to listen on.
    #[export]
    bind_address: GString,
    /// TCP and UDP port; 0 means the default, 6257.
    #[export]
    port: i64,
    /// UDP port; 0 means the same as [member port].
    #[export]
    udp_port: i64,
    /// The address players are told to connect to.
    #[export]
    public_address: GString,
    /// The TCP port players are told to connect to; 0 means the port the
    /// cluster listens on. Set it when players reach the cluster through a
    /// port-forwarding proxy or NAT.
    #[export]
    public_port: i64,
    /// The master's host name or IP address.
    #[export]
    master_address: GString,
    /// The master's port; 0 means the default, 6256.
    #[export]
    master_port: i64,
    /// The name the master knows this cluster's key by.
    #[export]
    key_name: GString,
    /// The key file (base64, made by [code]sustenet keygen[/code]). Empty means
    /// [code]keys/<key_name>[/code] in the working folder; [code]res://[/code] and
    /// [code]user://[/code] paths work too. Keep keys out of exported packs.
    #[export]
    key_path: GString,
    /// Most players at once; 0 means the default bound, 1,000 players (a
    /// cluster is never unbounded).
    #[export]
    max_connections: i64,
    /// Reliable messages queued for one player before it is disconnected as
    /// too slow ([constant SustenetClient.REASON_SEND_QUEUE_FULL]). Raise it
    /// for bursts (a level load); the queue bounds this server's memory.
    #[export]
    send_queue: i64,
    /// How long a player whose connection dropped keeps its seat, waiting
    /// for it to reconnect with the same id, in seconds; 0 turns reconnects
    /// off. See [signal player_connection_lost] and [signal player_reconnected].
    #[export]
    reconnect_grace_sec: f64,
    /// Edge length of a fragment (a grid cell of the world), in world units.
    #[export]
    fragment_size: f64,
    /// Whether fragments are cubes (3D) or squares (2D, the z coordinate ignored).
    #[export]
    fragment_3d: bool,
    /// How far players see by default: updates about players within this
    /// distance reach them.
    #[export]
    interest_radius: f64,
    /// How often (Hz) each fragment's player states ([method set_player_state]) are sent.
    #[export]
    fragment_update_hz: f64,
    /// Players a fragment holds before [signal fragment_over_cap] fires; 0 means no cap.
    #[export]
    fragment_player_cap: i64,
    /// Longest wait of a player's batch of state records ([method set_player_state]) after its
    /// first one, in milliseconds, 0 to 1000: a neighbour's state reaches a player at most this
    /// late (plus the network), and a longer window packs more neighbours' states into one
    /// datagram. 0 sends them at the end of each input that set them (about one datagram per
    /// neighbour's update). Out of range: [method start] returns
    /// [code]ERR_INVALID_PARAMETER[/code].
    #[export]
    state_window_ms: i64,
    /// Start when the node enters the tree.
    #[export]
    autostart: bool,
    /// Most events turned into signals in one frame.
    #[export]
    events_per_frame: i64,
    /// Most microseconds spent turning events into signals in one frame.
    #[export]
    frame_budget_usec: i64,
    /// Most packets one player may have waiting for the game (received by the cluster, not
    /// yet turned into [signal packet_received]). Past it, the player's unreliable packets
    /// are dropped (counted by [method get_dropped_packets]) and a reliable one disconnects
    /// that player with [constant SustenetClient.REASON_KICKED]; other players go on.
    #[export]
    max_pending_packets_per_player: i64,
    /// Most bytes one player may have waiting for the game: payloads plus 64 bytes per
    /// packet. Over it, as over [member max_pending_packets_per_player].
    #[export]
    max_pending_bytes_per_player: i64,
    /// Most bytes all players together may have waiting for the game; bounds this node's
    /// queue. The packet that would go over it is treated as over its sender's limit.
    #[export]
    max_pending_bytes: i64,
    /// Where to serve Prometheus [code]/metrics[/code] of this cluster, as
    /// [code]"ip:port"[/code] (port 0: any free port, see
    /// [method get_metrics_port]); empty: no endpoint. Read-only: GET and HEAD.
    #[export]
    metrics_bind: GString,
    /// When set, every request to the metrics endpoint but [code]/health[/code] needs it
    /// ([code]Authorization: Bearer <token>[/code] or [code]?token=<token>[/code]).
    #[export]
    metrics_token: GString,
    /// Port of a WebSocket listener for web players ([code]SustenetWebClient[/code],
    /// [code]SustenetWebMultiplayerPeer[/code]) on [member bind_address]; 0: none
    /// (the default). Without a certificate it serves [code]ws://[/code], which
    /// is allowed on a loopback [member bind_address] only (development); see
    /// docs/web.md.
    #[export]
    websocket_port: i64,
    /// The [code]wss://[/code] certificate chain (PEM, leaf first); with
    /// [member websocket_key_file]. [code]res://[/code] and [code]user://[/code] paths work.
    #[export]
    websocket_cert_file: GString,
    /// The certificate's private key (PEM).
    #[export]
    websocket_key_file: GString,
    /// Origins whose pages may connect ([code]https://game.example[/code], or
    /// [code]*[/code]); empty: pages from loopback hosts only.
    #[export]
    websocket_allowed_origins: PackedStringArray,
    /// Run as an Agones GameServer (docs/godot.md): Ready once registered,
    /// health pings while the core and Godot's main loop run, player
    /// tracking, Shutdown when the cluster stops, and reserved while a
    /// matchmaker holds it. Needs the addon built with the [code]agones[/code]
    /// cargo feature ([method start] fails with [code]ERR_UNAVAILABLE[/code] without it).
    #[export]
    agones_enabled: bool,
    /// The Agones SDK sidecar's gRPC port on localhost; 0: the
    /// [code]AGONES_SDK_GRPC_PORT[/code] environment variable, else 9357.
    #[export]
    agones_sdk_port: i64,
    /// Seconds Godot's main loop may not run (a script stuck in a loop) before
    /// the health pings stop and Agones replaces the GameServer.
    #[export]
    agones_stuck_after_sec: f64,
    metrics: sustenet_server::metrics::ClusterMetrics,
    running: Option<Running>,
    /// The last run after `stop()`: it still says goodbye to its
    /// players and holds its ports until it has ended (at most seconds).
    winding_down: Option<oneshot::Receiver<()>>,
    players: std::collections::HashSet<u64>,
    drain: DrainStats,
    dropped_packets: Arc<AtomicU64>,
    next_instance_request: i64,
    peer_tap: Option<Tap<ClusterTap>>,
    base: Base<Node>,
}

#[godot_api]
impl INode for SustenetCluster {
    fn init(base: Base<Node>) -> Self {
        Self {
            server_name: "Godot Cluster".into(),
            bind_address: "0.0.0.0".into(),
            port: 0,
            udp_port: 0,
            public_address: "127.0.0.1".into(),
            public_port: 0,
            master_address: "127.0.0.1".into(),
            master_port: 0,
            key_name: "cluster_key".into(),
            key_path: GString::new(),
            max_connections: 0,
            send_queue: 4096,
            reconnect_grace_sec: 30.0,
            fragment_size: 64.0,
            fragment_3d: false,
            interest_radius: 64.0,
            fragment_update_hz: 20.0,
            fragment_player_cap: 0,
            state_window_ms: ClusterConfig::DEFAULT_STATE_WINDOW_MS as i64,
            autostart: false,
            events_per_frame: 2048,
            frame_budget_usec: 4000,
            max_pending_packets_per_player: 4096,
            max_pending_bytes_per_player: 1 << 20,
            max_pending_bytes: 64 << 20,
            dropped_packets: Arc::new(AtomicU64::new(0)),
            next_instance_request: 0,
            metrics_bind: GString::new(),
            metrics_token: GString::new(),
            websocket_port: 0,
            websocket_cert_file: GString::new(),
            websocket_key_file: GString::new(),
            websocket_allowed_origins: PackedStringArray::new(),
            agones_enabled: false,
            agones_sdk_port: 0,
            agones_stuck_after_sec: 2.0,
            metrics: Default::default(),
            running: None,
            winding_down: None,
            players: Default::default(),
            drain: DrainStats::default(),
            peer_tap: None,
            base,
        }
    }

    fn ready(&mut self) {
        // start() reports its own error; autostart has no caller to tell.
        if self.autostart
            && let Err(e) = self.start()
        {
            e.report();
        }
    }

    fn process(&mut self, _delta: f64) {
        if let Some(a) = self.running.as_ref().and_then(|r| r.agones.as_ref()) {
            a.beat();
        }
        flush_logs();
        self.drain_events();
    }

    fn exit_tree(&mut self) {
        let _ = self.stop();
    }
}

#[godot_api]
impl SustenetCluster {
    /// The cluster is listening on these ports.
    #[signal]
    fn started(tcp_port: i64, udp_port: i64);
    /// The cluster stopped.
    #[signal]
    fn stopped();
    /// Registered (again) with the master under [param cluster_id].
    #[signal]
    fn registered(cluster_id: i64);
    /// The master is unreachable; players stay connected and the cluster keeps trying.
    #[signal]
    fn master_lost(message: GString);
    /// A player joined; [param data] is what the master attached (the login name by default).
    #[signal]
    fn player_connected(player_id: i64, data: PackedByteArray);
    /// A player left; [param reason] is one of the [code]SustenetClient.REASON_*[/code] constants.
    /// A player whose connection dropped and who did not come back in time
    /// leaves with [constant SustenetClient.REASON_RECONNECT_TIMEOUT].
    #[signal]
    fn player_disconnected(player_id: i64, reason: i64);
    /// A player's connection dropped ([param reason]: connection lost or
    /// timeout). It keeps its seat and its place in the world for
    /// [member reconnect_grace_sec]; reliable packets sent to it meanwhile are
    /// delivered when it is back. [signal player_reconnected] or
    /// [signal player_disconnected] follows.
    #[signal]
    fn player_connection_lost(player_id: i64, reason: i64);
    /// A player whose connection dropped is back, with the same id.
    #[signal]
    fn player_reconnected(player_id: i64);
    /// A [method transfer_player] was refused (the player stays here).
    #[signal]
    fn transfer_failed(player_id: i64, reason: i64, message: GString);
    /// The instance asked with [method spawn_instance] is ready: move players there with
    /// [method transfer_player] and [param cluster_id].
    #[signal]
    fn instance_ready(request_id: i64, cluster_id: i64);
    /// The instance asked with [method spawn_instance] will not be ready: refused (no agent
    /// offers the template, a limit, bad parameters, not registered with the master), never
    /// registered, crashed, its agent is gone, or the link to the master dropped first.
    #[signal]
    fn instance_failed(request_id: i64, reason: GString);
    /// A player entered a fragment (the grid cell [param fragment]).
    #[signal]
    fn fragment_entered(player_id: i64, fragment: Vector3i);
    /// A player left a fragment (moved away or disconnected).
    #[signal]
    fn fragment_exited(player_id: i64, fragment: Vector3i);
    /// A fragment went over [member fragment_player_cap]; the game decides
    /// (refuse, spill over, [method transfer_player]).
    #[signal]
    fn fragment_over_cap(fragment: Vector3i, players: i64, cap: i64);
    /// A packet from a player.
    #[signal]
    fn packet_received(player_id: i64, command: i64, data: PackedByteArray, reliable: bool);

    /// Starts the cluster: binds its TCP and UDP ports now (errors are returned
    /// right away), then registers with the master in the background.
    #[func]
    pub(crate) fn start(&mut self) -> Result<(), Error> {
        if self.running.is_some() {
            return Err(Error::new(
                GdError::ERR_ALREADY_IN_USE,
                "SustenetCluster.start: already running",
            ));
        }
        let (mut config, port, udp_port) = self.cluster_config()?;
        let agones = self.agones_run()?;
        let key = self.load_key(&config.key_name)?;
        let handle = runtime::handle()
            .map_err(|e| Error::new(GdError::ERR_CANT_CREATE, format!("SustenetCluster: {e}")))?;
        runtime::wait_for_last_run(&handle, self.winding_down.take());
        // A fresh set for this run: get_stats counts from this start.
        self.metrics = Default::default();
        config.metrics = self.metrics.clone();
        let (metrics_port, metrics_stop) = self.serve_metrics(&handle)?;
        let bind = self.bind_address.to_string();
        let receivers = config.receive_threads;
        let bound = bind::bind_cluster_for(&bind, port, udp_port, receivers);
        let sockets = runtime::block_on(&handle, bound)
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| {
                Error::new(GdError::ERR_ALREADY_IN_USE, format!("SustenetCluster: {e}"))
            })?;
        let mut running = self.spawn_cluster(&handle, sockets, config, key, agones)?;
        running.metrics_port = metrics_port;
        running._metrics_stop = metrics_stop;
        let _ = tap::send_to(
            &mut self.peer_tap,
            ClusterTap::Handle(running.handle.clone()),
        );
        let (tcp_port, udp_port) = (running.tcp_port, running.udp_port);
        self.running = Some(running);
        self.signals()
            .started()
            .emit(i64::from(tcp_port), i64::from(udp_port));
        Ok(())
    }

    /// Stops the cluster; players are told the server is shutting down.
    #[func]
    fn stop(&mut self) -> Result<(), Error> {
        if let Some(mut r) = self.running.take() {
            if let Some(s) = r.stop.take() {
                let _ = s.send(());
            }
            self.winding_down = Some(r.finished);
            let _ = tap::send_to(&mut self.peer_tap, ClusterTap::Stopped);
            self.players.clear();
            self.signals().stopped().emit();
        }
        Ok(())
    }

    /// Whether the cluster is running.
    #[func]
    pub(crate) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The TCP port it listens on (0 when stopped).
    #[func]
    fn get_bound_tcp_port(&self) -> i64 {
        self.running.as_ref().map_or(0, |r| i64::from(r.tcp_port))
    }

    /// The UDP port it listens on (0 when stopped).
    #[func]
    fn get_bound_udp_port(&self) -> i64 {
        self.running.as_ref().map_or(0, |r| i64::from(r.udp_port))
    }

    /// This cluster's id in the master's list (0 when stopped).
    #[func]
    fn get_cluster_id(&self) -> i64 {
        self.running.as_ref().map_or(0, |r| id_to_gd(r.cluster_id))
    }

    /// Sends bytes to one player, reliably and in order.
    #[func]
    fn send_to(&self, player_id: i64, command: i64, data: PackedByteArray) -> Result<(), Error> {
        self.send_one(player_id, command, data.to_vec(), true)
    }

    /// Sends bytes to one player without delivery guarantee (at most
    /// [constant SustenetClient.MAX_UNRELIABLE_PAYLOAD] bytes).
    #[func]
    fn send_unreliable_to(
        &self,
        player_id: i64,
        command: i64,
        data: PackedByteArray,
    ) -> Result<(), Error> {
        self.send_one(player_id, command, data.to_vec(), false)
    }

    /// Sends any value (through var_to_bytes, without objects) to one player, reliably.
    #[func]
    fn send_var_to(&self, player_id: i64, command: i64, value: Variant) -> Result<(), Error> {
        self.send_one(
            player_id,
            command,
            godot::global::var_to_bytes(&value).to_vec(),
            true,
        )
    }

    /// Sends bytes to every player, reliably.
    #[func]
    fn broadcast(&self, command: i64, data: PackedByteArray) -> Result<(), Error> {
        self.send_all(None, command, data.to_vec(), true)
    }

    /// Sends bytes to every player without delivery guarantee.
    #[func]
    fn broadcast_unreliable(&self, command: i64, data: PackedByteArray) -> Result<(), Error> {
        self.send_all(None, command, data.to_vec(), false)
    }

    /// Sends bytes to every player but one.
    #[func]
    fn broadcast_except(
        &self,
        except_player_id: i64,
        command: i64,
        data: PackedByteArray,
        reliable: bool,
    ) -> Result<(), Error> {
        self.send_all(
            id_from_gd(except_player_id),
            command,
            data.to_vec(),
            reliable,
        )
    }

    /// Moves a player to another cluster (server meshing): the master issues a
    /// ticket for [param target_cluster_id], the player's client follows on its
    /// own, and the target's [signal player_connected] carries [param state]
    /// (at most 16 KiB, 16,384 bytes; a larger one returns
    /// `ERR_INVALID_PARAMETER` and nothing moves). Here the player leaves with
    /// [constant SustenetClient.REASON_REDIRECTED]. Everything sent to the player
    /// before this call arrives before the move; sends after the redirect are
    /// refused. On failure, [signal transfer_failed] fires and the player stays.
    #[func]
    fn transfer_player(
        &self,
        player_id: i64,
        target_cluster_id: i64,
        state: PackedByteArray,
    ) -> Result<(), Error> {
        const M: &str = "transfer_player";
        let handle = self.running_handle(M)?;
        let id = id_arg(M, "player id", player_id)?;
        let target = id_arg(M, "cluster id", target_cluster_id)?;
        if state.len() > USER_DATA_MAX {
            let n = state.len();
            let why = format!("SustenetCluster.{M}: the state is {n} bytes, over {USER_DATA_MAX}");
            return Err(Error::invalid(why));
        }
        result(handle.transfer(id, target, state.to_vec()))
    }

    /// Asks the master for a new instance of [param template] (a cluster an agent starts
    /// from its template, docs/instances.md), with [param params] (String keys and values,
    /// at most 16) filling the template's placeholders. The master stops the instance once it
    /// has been empty for [param stop_when_empty_sec] seconds (0: never). Returns the request
    /// id (above 0) that [signal instance_ready] or [signal instance_failed] will carry; every
    /// refusal comes through [signal instance_failed]. Returns -1 (with an error) only when
    /// the cluster is not running.
    #[func]
    fn spawn_instance(
        &mut self,
        template: GString,
        params: Dictionary<Variant, Variant>,
        stop_when_empty_sec: i64,
    ) -> i64 {
        let Some(r) = &self.running else {
            godot_error!("SustenetCluster.spawn_instance: the cluster is not running");
            return -1;
        };
        self.next_instance_request += 1;
        let node_id = self.next_instance_request;
        let params: Vec<(String, String)> = params
            .iter_shared()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let secs = u32::try_from(stop_when_empty_sec.max(0)).unwrap_or(u32::MAX);
        let (ids, tx) = (r.instances.clone(), r.events_tx.clone());
        let asked =
            r.handle.spawn_instance(
                template.to_string(),
                params,
                secs,
                move |result| match result {
                    Ok(core_id) => {
                        ids.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(core_id, node_id);
                    }
                    Err(e) => {
                        let _ = tx.send(NodeEvent::Instance(node_id, Err(e.to_string())));
                    }
                },
            );
        if asked.is_err() {
            let _ = r.events_tx.send(NodeEvent::Instance(
                node_id,
                Err("the cluster's command queue is full".into()),
            ));
        }
        node_id
    }

    /// Reports a player's position ([Vector2] or [Vector3]): places it in a
    /// fragment and decides who hears about it.
    #[func]
    fn set_player_position(&self, player_id: i64, position: Variant) -> Result<(), Error> {
        const M: &str = "set_player_position";
        let handle = self.running_handle(M)?;
        let id = id_arg(M, "player id", player_id)?;
        let pos = position_arg(M, &position)?;
        tap::send_ref(&self.peer_tap, ClusterTap::Position(id, pos));
        result(handle.set_position(id, pos))
    }

    /// Sets a player's latest state: at its fragment's update rate it goes,
    /// unreliably and batched into few datagrams, to every player whose
    /// interest area covers this one, as [param command] with the payload
    /// [code]player id (8 bytes, little-endian) + data[/code].
    #[func]
    fn set_player_state(
        &self,
        player_id: i64,
        command: i64,
        data: PackedByteArray,
    ) -> Result<(), Error> {
        const M: &str = "set_player_state";
        let handle = self.running_handle(M)?;
        let id = id_arg(M, "player id", player_id)?;
        let cmd = command_arg(M, command)?;
        result(handle.set_state(id, cmd, data.to_vec()))
    }

    /// Sends to every player within [param radius] of [param position] ([Vector2] or [Vector3]).
    #[func]
    fn send_nearby(
        &self,
        position: Variant,
        radius: f64,
        command: i64,
        data: PackedByteArray,
        reliable: bool,
    ) -> Result<(), Error> {
        const M: &str = "send_nearby";
        let handle = self.running_handle(M)?;
        let cmd = command_arg(M, command)?;
        let pos = position_arg(M, &position)?;
        result(handle.send_nearby(pos, radius as f32, cmd, data.to_vec(), reliable, None))
    }

    /// Disconnects a player with [constant SustenetClient.REASON_KICKED] and a message it receives.
    #[func]
    fn kick(&self, player_id: i64, message: GString) -> Result<(), Error> {
        let handle = self.running_handle("kick")?;
        let id = id_arg("kick", "player id", player_id)?;
        result(handle.kick(id, message.to_string()))
    }

    /// How many players are on the cluster, including those whose connection
    /// dropped and who may still reconnect.
    #[func]
    fn get_player_count(&self) -> i64 {
        i64::try_from(self.players.len()).unwrap_or(i64::MAX)
    }

    /// The ids of the players on the cluster (see [method get_player_count]).
    #[func]
    fn get_players(&self) -> PackedInt64Array {
        self.players.iter().map(|id| id_to_gd(*id)).collect()
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

    /// Packets dropped or refused so far because their sender had more waiting than
    /// [member max_pending_packets_per_player] / [member max_pending_bytes_per_player]
    /// allow, or all players more than [member max_pending_bytes].
    #[func]
    fn get_dropped_packets(&self) -> i64 {
        i64::try_from(self.dropped_packets.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
    }

    /// The cluster's numbers (the same as its Prometheus metrics), counted
    /// from the last [method start] and kept after [method stop]: [code]players[/code],
    /// [code]capacity[/code], [code]connections[/code], [code]joins[/code],
    /// [code]disconnects[/code], [code]reconnects[/code], [code]transfers_redirected[/code],
    /// [code]transfers_failed[/code], [code]reliable_in[/code], [code]unreliable_in[/code]
    /// (datagrams), [code]reliable_out[/code], [code]unreliable_out[/code],
    /// [code]bytes_in[/code], [code]bytes_out[/code], [code]datagrams_dropped[/code],
    /// [code]send_queue_depth[/code], [code]send_queue_full_kicks[/code],
    /// [code]fragments[/code], [code]fragment_over_cap[/code], [code]ticks[/code],
    /// [code]tick_usec_avg[/code] (float), [code]master_link_up[/code] (bool),
    /// [code]dropped_packets[/code] (as [method get_dropped_packets]) and
    /// [code]recent_disconnects[/code] (an Array of [code]{at_ms, reason}[/code], the
    /// latest 32, oldest first; reason in snake_case, e.g. [code]"requested"[/code]).
    /// [code]players[/code], [code]send_queue_depth[/code] and [code]fragments[/code]
    /// are sampled once a second.
    #[func]
    fn get_stats(&self) -> VarDictionary {
        let dropped = self.dropped_packets.load(Ordering::Relaxed);
        crate::cluster_stats::stats_dictionary(&self.metrics.stats(), dropped)
    }

    /// The port of the metrics endpoint ([member metrics_bind]) while running; 0 otherwise.
    #[func]
    fn get_metrics_port(&self) -> i64 {
        self.running
            .as_ref()
            .map_or(0, |r| i64::from(r.metrics_port))
    }
}

/// A Vector2 or Vector3 as a position; anything else (or non-finite) is none.
pub(crate) fn position_of(v: &Variant) -> Option<[f32; 3]> {
    let p = if let Ok(v2) = v.try_to::<Vector2>() {
        [v2.x, v2.y, 0.0]
    } else if let Ok(v3) = v.try_to::<Vector3>() {
        [v3.x, v3.y, v3.z]
    } else {
        return None;
    };
    p.iter().all(|c| c.is_finite()).then_some(p)
}

/// A handle's refusal: too large is an invalid argument, a player being
/// transferred `ERR_UNAVAILABLE`, anything else (the cluster is busy or
/// stopped) `ERR_BUSY`.
fn result(r: Result<(), SendError>) -> Result<(), Error> {
    r.map_err(|e| {
        let code = match e {
            SendError::TooLarge { .. } => GdError::ERR_INVALID_PARAMETER,
            SendError::Transferring(_) => GdError::ERR_UNAVAILABLE,
            _ => GdError::ERR_BUSY,
        };
        Error::new(code, format!("SustenetCluster: {e}"))
    })
}

impl SustenetCluster {
    /// Links a `SustenetMultiplayerPeer` to this node, replacing an earlier one.
    pub(crate) fn attach_peer(&mut self) -> ClusterLink {
        let (t, rx) = tap::tap();
        self.peer_tap = Some(t);
        ClusterLink {
            tap: rx,
            handle: self.running.as_ref().map(|r| r.handle.clone()),
            grid: self.grid_config(),
        }
    }

    /// The running cluster's handle; `ERR_UNCONFIGURED` naming `method`
    /// when it is not running.
    fn running_handle(&self, method: &str) -> Result<&ClusterHandle, Error> {
        self.running.as_ref().map(|r| &r.handle).ok_or_else(|| {
            Error::new(
                GdError::ERR_UNCONFIGURED,
                format!("SustenetCluster.{method}: not running; call start() first"),
            )
        })
    }

    fn send_one(
        &self,
        player_id: i64,
        command: i64,
        data: Vec<u8>,
        reliable: bool,
    ) -> Result<(), Error> {
        const M: &str = "send";
        let handle = self.running_handle(M)?;
        let id = id_arg(M, "player id", player_id)?;
        let cmd = command_arg(M, command)?;
        result(handle.send(id, cmd, data, reliable))
    }

    fn send_all(
        &self,
        except: Option<u64>,
        command: i64,
        data: Vec<u8>,
        reliable: bool,
    ) -> Result<(), Error> {
        let handle = self.running_handle("broadcast")?;
        let cmd = command_arg("broadcast", command)?;
        result(handle.broadcast(cmd, data, reliable, except))
    }
}

/// An id argument (a player's, a cluster's); negative is `ERR_INVALID_PARAMETER`.
fn id_arg(method: &str, name: &str, value: i64) -> Result<u64, Error> {
    id_from_gd(value).ok_or_else(|| {
        Error::invalid(format!(
            "SustenetCluster.{method}: {name} {value} is out of range"
        ))
    })
}

/// A command argument; outside 0..=65535 is `ERR_INVALID_PARAMETER`.
fn command_arg(method: &str, command: i64) -> Result<u16, Error> {
    command_from_gd(command).ok_or_else(|| {
        Error::invalid(format!(
            "SustenetCluster.{method}: command {command} is out of range (0..=65535)"
        ))
    })
}

/// A position argument; anything but a finite Vector2 or Vector3 is
/// `ERR_INVALID_PARAMETER`.
fn position_arg(method: &str, position: &Variant) -> Result<[f32; 3], Error> {
    position_of(position).ok_or_else(|| {
        Error::invalid(format!(
            "SustenetCluster.{method}: pass a finite Vector2 or Vector3"
        ))
    })
}

/// Seconds from the inspector as a duration: negative or NaN is 0 (off),
/// anything past a year (infinity included) is a year, with a warning.
pub(crate) fn secs_to_duration(secs: f64, what: &str) -> std::time::Duration {
    const YEAR: f64 = 365.0 * 86_400.0;
    if secs.is_nan() || secs <= 0.0 {
        return std::time::Duration::ZERO;
    }
    if secs > YEAR {
        godot_warn!("{what} = {secs} is more than a year; using a year");
    }
    std::time::Duration::from_secs_f64(secs.min(YEAR))
}
