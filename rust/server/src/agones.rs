//! A cluster as an Agones `GameServer` (cargo feature `agones`), through the
//! official Agones Rust SDK talking to the SDK sidecar over gRPC.
//!
//! [`Agones::connect`] reaches the sidecar and reads the GameServer's
//! address and port ([`Agones::configure`] makes them what the cluster
//! tells the master and players, and shares the cluster's reservation);
//! [`Agones::wrap`] wraps the cluster's plugin so that the cluster's own
//! events drive the SDK:
//!
//! - when the cluster starts: `SetPlayerCapacity` with the player limit in
//!   force ([`ClusterConfig::connection_limit`]: `max_connections`, or 1,000
//!   when that is 0) (alpha player tracking);
//! - the first time it is registered with the master: `Ready()` (a cluster
//!   that cannot reach its master is never Ready, so never allocated);
//! - every core heartbeat tick: one `Health()` ping, so a stuck core misses
//!   its health checks and Agones replaces the GameServer (with
//!   [`Agones::wrap_game_loop`], only while the game's own loop also runs);
//! - a player joins / leaves: `PlayerConnect(id)` / `PlayerDisconnect(id)`
//!   (ids in decimal);
//! - the first player joins: `Allocate()`, so the GameServer is Allocated
//!   while it has players (a fleet scales down only Ready GameServers, and a
//!   `Buffer` autoscaler keeps that many empty clusters Ready); the last one
//!   leaves: `Ready()` again, back in the pool;
//! - [`Agones::shutdown`], once the cluster has stopped: `Shutdown()`.
//!
//! It also watches its GameServer (`WatchGameServer`). When the GameServer
//! becomes `Allocated` by someone else (a `GameServerAllocation` made by a
//! matchmaker, not the cluster's own `Allocate()` for its first player), the
//! cluster is *reserved*: the master link tells the master
//! (`ClusterToMaster::Reserved`, docs/protocol.md §11.2), which then leaves
//! the cluster out of automatic joins while players still join it by id.
//! When the GameServer is `Ready` again, the reservation ends. Other states
//! change nothing. A watch that fails or ends is opened again a second later.
//!
//! An *instance on demand* ([`Agones::connect_instance`], docs/instances.md
//! §7) is Ready before it registers (it cannot register before it is
//! allocated: its key comes with the allocation), and stays Allocated until
//! the master deletes its GameServer: it never calls `Ready()` or
//! `Allocate()` afterwards. The master's allocation reserves it like any
//! allocation the cluster did not make.
//!
//! The calls go out in this order from one task; the plugin never waits for
//! the sidecar. At most [`QUEUE`] calls wait: past that, health pings are
//! dropped first (the next tick sends one) and player calls are dropped and
//! logged (an unreachable sidecar must not stall the game).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sustenet_proto::{DisconnectReason, Key};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::ClusterConfig;
use crate::cluster::{Context, MasterLinkStatus, Reservation};
use crate::plugin::{Channel, PlayerId, Plugin};

/// Most SDK calls waiting to be sent.
pub const QUEUE: usize = 1_024;

/// Longest [`Agones::shutdown`] waits for the calls before it and
/// `Shutdown()` to be answered.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// An SDK call, in the order the cluster made it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Capacity(u32),
    Ready,
    Allocate,
    Health,
    Connect(PlayerId),
    Disconnect(PlayerId),
    Shutdown,
}

/// How long a failed or ended GameServer watch waits before it is opened again.
const WATCH_RETRY: Duration = Duration::from_secs(1);

/// What decides the reservation: the GameServer's last watched state and
/// whether the cluster allocated it itself (for its first player).
#[derive(Debug, Default)]
struct Allocation {
    /// The last watched state was `Allocated`.
    watched_allocated: bool,
    /// The cluster called `Allocate()` while the GameServer was not yet
    /// allocated; cleared when it calls `Ready()`.
    by_us: bool,
}

/// The link to the Agones SDK sidecar.
pub struct Agones {
    calls: mpsc::Sender<Call>,
    task: tokio::task::JoinHandle<()>,
    watch: tokio::task::JoinHandle<()>,
    reservation: Reservation,
    endpoint: Option<(String, u16)>,
    instance: bool,
}

/// What an instance started on Agones learns from its GameServer.
pub struct InstanceIdentity {
    /// The instance id the master gave it.
    pub instance_id: u64,
    /// The key name it registers with: `instance-<id>`.
    pub key_name: String,
    /// Its cluster key.
    pub key: Key,
    /// The template it was started from.
    pub template: String,
    /// The spawn request's parameters.
    pub params: Vec<(String, String)>,
}

impl fmt::Debug for InstanceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceIdentity")
            .field("instance_id", &self.instance_id)
            .field("template", &self.template)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

type Annotations = std::collections::HashMap<String, String>;

/// The identity in a GameServer's annotations, once the master wrote it;
/// `Err` when it is there but cannot be used.
fn identity_in(
    annotations: &Annotations,
    secret: &crate::instance_seal::InstanceSecret,
) -> Result<Option<InstanceIdentity>, AgonesError> {
    use crate::instance_seal as seal;
    let (Some(id), Some(sealed)) = (
        annotations.get(seal::INSTANCE_ID_ANNOTATION),
        annotations.get(seal::KEY_ANNOTATION),
    ) else {
        return Ok(None);
    };
    let bad = |m: String| AgonesError(m);
    let instance_id: u64 = id.parse().map_err(|_| {
        bad(format!(
            "annotation {} is not a number: {id}",
            seal::INSTANCE_ID_ANNOTATION
        ))
    })?;
    let key_name = crate::master::instances::instance_key_name(instance_id);
    let key = secret.open(sealed, &key_name).ok_or_else(|| {
        bad(format!(
            "the key in annotation {} does not open with this GameServer's key pair (sealed to another GameServer or for another instance)",
            seal::KEY_ANNOTATION
        ))
    })?;
    let params = annotations
        .get(seal::PARAMS_ANNOTATION)
        .and_then(|p| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(p).ok())
        .map(|m| {
            m.into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(InstanceIdentity {
        instance_id,
        key_name,
        key,
        template: annotations
            .get(seal::TEMPLATE_ANNOTATION)
            .cloned()
            .unwrap_or_default(),
        params,
    }))
}

fn endpoint_of(gs: &agones::GameServer) -> Option<(String, u16)> {
    let status = gs.status.as_ref()?;
    let port = u16::try_from(status.ports.first()?.port).ok()?;
    (!status.address.is_empty() && port != 0).then(|| (status.address.clone(), port))
}

impl fmt::Debug for Agones {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agones").finish_non_exhaustive()
    }
}

/// The sidecar could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the Agones SDK sidecar: {0}")]
pub struct AgonesError(String);

impl Agones {
    /// Connects to the SDK sidecar on `localhost:port` (`None`: the port in
    /// `AGONES_SDK_GRPC_PORT`, else 9357), waiting at most 30 seconds.
    pub async fn connect(port: Option<u16>) -> Result<Self, AgonesError> {
        let mut sdk = agones::Sdk::new(port, None)
            .await
            .map_err(|e| AgonesError(e.to_string()))?;
        let endpoint = sdk
            .get_gameserver()
            .await
            .ok()
            .and_then(|gs| endpoint_of(&gs));
        Ok(Self::start(sdk, endpoint, false))
    }

    fn start(sdk: agones::Sdk, endpoint: Option<(String, u16)>, instance: bool) -> Self {
        let (calls, rx) = mpsc::channel(QUEUE);
        let allocation = Arc::new(Mutex::new(Allocation::default()));
        let reservation = Reservation::default();
        let watch = tokio::spawn(watch(sdk.clone(), allocation.clone(), reservation.clone()));
        let task = tokio::spawn(run(sdk, rx, allocation));
        Self {
            calls,
            task,
            watch,
            reservation,
            endpoint,
            instance,
        }
    }
    /// Connects as an instance on demand (docs/instances.md §7): draws an
    /// X25519 key pair in memory, publishes its public half
    /// (`SetAnnotation`), says `Ready()`, then waits (`WatchGameServer`)
    /// until the master has allocated this GameServer and written the
    /// instance id and the sealed key on it; returns with them.
    pub async fn connect_instance(
        port: Option<u16>,
    ) -> Result<(Self, InstanceIdentity), AgonesError> {
        use crate::instance_seal::{InstanceSecret, SDK_PUBLIC_KEY_ANNOTATION};
        let sdk_error = |e: agones::errors::Error| AgonesError(e.to_string());
        let mut sdk = agones::Sdk::new(port, None).await.map_err(sdk_error)?;
        let secret = InstanceSecret::generate(&mut rand::rng());
        sdk.set_annotation(SDK_PUBLIC_KEY_ANNOTATION, secret.public_base64())
            .await
            .map_err(sdk_error)?;
        let mut watch = sdk.watch_gameserver().await.map_err(sdk_error)?;
        sdk.ready().await.map_err(sdk_error)?;
        info!("Agones: Ready; waiting to be allocated as an instance");
        let mut gs = sdk.get_gameserver().await.map_err(sdk_error)?;
        loop {
            let annotations = gs
                .object_meta
                .as_ref()
                .map(|m| m.annotations.clone())
                .unwrap_or_default();
            if let Some(identity) = identity_in(&annotations, &secret)? {
                info!(
                    instance_id = identity.instance_id,
                    template = identity.template,
                    "Agones: allocated as an instance"
                );
                let endpoint = endpoint_of(&gs);
                return Ok((Self::start(sdk, endpoint, true), identity));
            }
            gs = watch
                .message()
                .await
                .map_err(|e| AgonesError(e.to_string()))?
                .ok_or_else(|| AgonesError("the GameServer watch ended".into()))?;
        }
    }

    /// Whether the cluster is reserved now (see the [module docs](self)).
    pub fn reservation(&self) -> &Reservation {
        &self.reservation
    }

    /// The address and port Agones gave this GameServer (its node's
    /// address and the port of its first `ports` entry), when the
    /// GameServer record has them.
    pub fn public_endpoint(&self) -> Option<(&str, u16)> {
        self.endpoint.as_ref().map(|(a, p)| (a.as_str(), *p))
    }

    /// Gives `config` the cluster's [reservation](Self::reservation), so
    /// that the master link reports it, and sets what the cluster tells the
    /// master and its players (address, TCP and UDP port: one port,
    /// `protocol: TCPUDP`) from [`Self::public_endpoint`] (left as they are
    /// without one).
    pub fn configure(&self, config: &mut ClusterConfig) {
        config.reservation = self.reservation.clone();
        if let Some((address, port)) = self.public_endpoint() {
            info!(
                address,
                port, "Agones: players reach this cluster at the GameServer's address"
            );
            config.public_address = address.to_owned();
            config.public_tcp_port = Some(port);
            config.public_udp_port = Some(port);
        }
    }

    /// `plugin`, with the events of the cluster that `config` configures also
    /// sent to Agones (the player capacity is its
    /// [`ClusterConfig::connection_limit`]).
    pub fn wrap<P: Plugin>(&self, plugin: P, config: &ClusterConfig) -> WithAgones<P> {
        WithAgones {
            inner: plugin,
            calls: self.calls.clone(),
            capacity: config.connection_limit(),
            ready: self.instance,
            instance: self.instance,
            players: 0,
            game_loop: None,
        }
    }

    /// [`Self::wrap`] for a game whose own code runs in a loop outside the
    /// core (a Godot `SustenetCluster`: the plugin only queues events for
    /// Godot's main loop, so the core keeps ticking while a game script is
    /// stuck). The core tick's `Health()` ping is sent only while `game_loop`
    /// has beaten within `stuck_after`: a game loop that stops stops the
    /// pings, and Agones replaces the GameServer.
    pub fn wrap_game_loop<P: Plugin>(
        &self,
        plugin: P,
        config: &ClusterConfig,
        game_loop: GameLoopBeat,
        stuck_after: Duration,
    ) -> WithAgones<P> {
        WithAgones {
            game_loop: Some((game_loop, stuck_after)),
            ..self.wrap(plugin, config)
        }
    }

    /// Tells Agones the server is shutting down, after every call before
    /// it, and waits until it is sent, at most [`SHUTDOWN_WAIT`] (a
    /// sidecar that does not answer must not keep the process alive).
    pub async fn shutdown(self) {
        self.watch.abort();
        let mut task = self.task;
        let sent = async {
            let _ = self.calls.send(Call::Shutdown).await;
            drop(self.calls);
            let _ = (&mut task).await;
        };
        if tokio::time::timeout(SHUTDOWN_WAIT, sent).await.is_err() {
            warn!("Agones: Shutdown not answered within {SHUTDOWN_WAIT:?}; leaving anyway");
            task.abort();
        }
        let _ = self.watch.await;
    }
}

/// Watches the GameServer and keeps `reservation` up to date, opening the
/// watch again after [`WATCH_RETRY`] when it fails or ends.
async fn watch(mut sdk: agones::Sdk, allocation: Arc<Mutex<Allocation>>, reservation: Reservation) {
    loop {
        match sdk.watch_gameserver().await {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(gs)) => {
                        let state = gs.status.map(|s| s.state).unwrap_or_default();
                        on_state(&state, &allocation, &reservation);
                    }
                    Ok(None) => {
                        warn!("Agones: the GameServer watch ended");
                        break;
                    }
                    Err(e) => {
                        warn!("Agones: the GameServer watch failed: {e}");
                        break;
                    }
                }
            },
            Err(e) => warn!("Agones: cannot watch the GameServer: {e}"),
        }
        tokio::time::sleep(WATCH_RETRY).await;
    }
}

/// Notes the cluster's own `Allocate()` (unless the GameServer was already
/// allocated by someone else) and `Ready()`, before they are sent.
fn on_call(call: &Call, allocation: &Mutex<Allocation>) {
    let Ok(mut a) = allocation.lock() else {
        return;
    };
    match call {
        Call::Allocate => a.by_us = !a.watched_allocated,
        Call::Ready => a.by_us = false,
        _ => {}
    }
}

/// One watched GameServer state: `Allocated` reserves the cluster unless
/// the cluster allocated it itself; `Ready` ends the reservation.
fn on_state(state: &str, allocation: &Mutex<Allocation>, reservation: &Reservation) {
    let Ok(mut a) = allocation.lock() else {
        return;
    };
    let reserved = match state {
        "Allocated" => {
            a.watched_allocated = true;
            !a.by_us
        }
        "Ready" => {
            a.watched_allocated = false;
            false
        }
        _ => return,
    };
    if reservation.get() != reserved {
        info!(
            state,
            reserved, "Agones: the GameServer's reservation changed"
        );
        reservation.set(reserved);
    }
}

/// Sends the calls in order until `Shutdown` (or every sender is gone).
async fn run(
    mut sdk: agones::Sdk,
    mut rx: mpsc::Receiver<Call>,
    allocation: Arc<Mutex<Allocation>>,
) {
    let health = sdk.health_check();
    let mut alpha = sdk.alpha().clone();
    while let Some(call) = rx.recv().await {
        on_call(&call, &allocation);
        let result = match &call {
            Call::Health => {
                // A full health stream means the sidecar is not reading: skip.
                let _ = health.try_send(());
                Ok(())
            }
            Call::Ready => sdk.ready().await.map(|()| info!("Agones: Ready")),
            Call::Allocate => sdk.allocate().await.map(|()| info!("Agones: Allocated")),
            Call::Capacity(n) => alpha.set_player_capacity(i64::from(*n)).await,
            Call::Connect(p) => alpha.player_connect(p.to_string()).await.map(|_| ()),
            Call::Disconnect(p) => alpha.player_disconnect(p.to_string()).await.map(|_| ()),
            Call::Shutdown => sdk.shutdown().await.map(|()| info!("Agones: Shutdown")),
        };
        if let Err(e) = result {
            warn!("Agones {call:?} failed: {e}");
        }
        if call == Call::Shutdown {
            break;
        }
    }
    debug!("Agones link closed");
}

/// When a game loop outside the core last ran ([`Agones::wrap_game_loop`]).
/// Clones share it; a new one has never beaten.
#[derive(Debug, Clone, Default)]
pub struct GameLoopBeat(Arc<std::sync::atomic::AtomicU64>);

impl GameLoopBeat {
    /// The game loop runs now (call it every frame).
    pub fn beat(&self) {
        self.0
            .store(crate::time::now_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether it ran within `within` of `now_ms` (ms since the epoch).
    fn alive(&self, now_ms: u64, within: Duration) -> bool {
        let last = self.0.load(std::sync::atomic::Ordering::Relaxed);
        let within = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
        last != 0 && now_ms.saturating_sub(last) <= within
    }
}

/// A plugin whose cluster events are also sent to Agones (see the
/// [module docs](self)); made by [`Agones::wrap`].
pub struct WithAgones<P> {
    inner: P,
    calls: mpsc::Sender<Call>,
    capacity: u32,
    ready: bool,
    /// An instance on demand: Allocated until deleted, never Ready again.
    instance: bool,
    players: usize,
    /// The game loop whose beat the health pings need, and how old it may be.
    game_loop: Option<(GameLoopBeat, Duration)>,
}

impl<P> fmt::Debug for WithAgones<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithAgones")
            .field("capacity", &self.capacity)
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl<P> WithAgones<P> {
    fn call(&self, call: Call) {
        if let Err(mpsc::error::TrySendError::Full(c)) = self.calls.try_send(call) {
            if c != Call::Health {
                warn!("Agones: {c:?} dropped: the sidecar is {QUEUE} calls behind");
            }
        }
    }
}

impl<P: Plugin> Plugin for WithAgones<P> {
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.call(Call::Capacity(self.capacity));
        self.inner.on_start(ctx);
    }
    fn on_connect(&mut self, ctx: &mut Context<'_>, player: PlayerId, user_data: &[u8]) {
        self.call(Call::Connect(player));
        self.players += 1;
        if self.players == 1 && !self.instance {
            self.call(Call::Allocate);
        }
        self.inner.on_connect(ctx, player, user_data);
    }
    fn on_packet(
        &mut self,
        ctx: &mut Context<'_>,
        player: PlayerId,
        command: u16,
        payload: &[u8],
        channel: Channel,
    ) {
        self.inner.on_packet(ctx, player, command, payload, channel);
    }
    fn on_disconnect(&mut self, ctx: &mut Context<'_>, player: PlayerId, reason: DisconnectReason) {
        self.call(Call::Disconnect(player));
        self.players = self.players.saturating_sub(1);
        if self.players == 0 && self.ready && !self.instance {
            self.call(Call::Ready);
        }
        self.inner.on_disconnect(ctx, player, reason);
    }
    fn on_connection_lost(
        &mut self,
        ctx: &mut Context<'_>,
        player: PlayerId,
        reason: DisconnectReason,
    ) {
        self.inner.on_connection_lost(ctx, player, reason);
    }
    fn on_reconnect(&mut self, ctx: &mut Context<'_>, player: PlayerId) {
        self.inner.on_reconnect(ctx, player);
    }
    fn on_master(&mut self, ctx: &mut Context<'_>, status: &MasterLinkStatus) {
        if !self.ready && matches!(status, MasterLinkStatus::Registered { .. }) {
            self.ready = true;
            self.call(Call::Ready);
        }
        self.inner.on_master(ctx, status);
    }
    fn on_transfer_failed(
        &mut self,
        ctx: &mut Context<'_>,
        player: PlayerId,
        reason: &sustenet_proto::Goodbye,
    ) {
        self.inner.on_transfer_failed(ctx, player, reason);
    }
    fn on_instance(
        &mut self,
        ctx: &mut Context<'_>,
        request_id: u64,
        answer: &Result<u64, sustenet_proto::Goodbye>,
    ) {
        self.inner.on_instance(ctx, request_id, answer);
    }
    fn on_fragment(&mut self, ctx: &mut Context<'_>, event: crate::fragments::FragmentEvent) {
        self.inner.on_fragment(ctx, event);
    }
    fn on_tick(&mut self, ctx: &mut Context<'_>) {
        let alive = self
            .game_loop
            .as_ref()
            .is_none_or(|(beat, within)| beat.alive(crate::time::now_ms(), *within));
        if alive {
            self.call(Call::Health);
        }
        self.inner.on_tick(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_game_loop_is_alive_only_within_its_window_after_a_beat() {
        let beat = GameLoopBeat::default();
        let window = Duration::from_secs(2);
        assert!(!beat.alive(crate::time::now_ms(), window), "never beaten");
        beat.beat();
        let now = crate::time::now_ms();
        assert!(beat.alive(now, window));
        assert!(beat.alive(now + 2_000, window));
        assert!(!beat.alive(now + 2_001, window));
    }

    #[test]
    fn only_an_allocation_the_cluster_did_not_make_reserves_it() {
        let a = Mutex::new(Allocation::default());
        let r = Reservation::default();
        on_state("Ready", &a, &r);
        assert!(!r.get());
        // Its first player: the cluster allocates itself; not a reservation.
        on_call(&Call::Allocate, &a);
        on_state("Allocated", &a, &r);
        assert!(!r.get());
        on_call(&Call::Ready, &a);
        on_state("Ready", &a, &r);
        assert!(!r.get());
        // A matchmaker allocates it: reserved, also once its players join.
        on_state("Allocated", &a, &r);
        assert!(r.get());
        on_call(&Call::Allocate, &a);
        on_state("Allocated", &a, &r);
        assert!(r.get());
        // Other states change nothing; Ready ends the reservation.
        on_state("Unhealthy", &a, &r);
        assert!(r.get());
        on_call(&Call::Ready, &a);
        on_state("Ready", &a, &r);
        assert!(!r.get());
    }
}
