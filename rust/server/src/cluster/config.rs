//! A cluster's settings, the errors of its sends, and the master link's
//! status as the game sees it.

use std::time::Duration;

use thiserror::Error;

use crate::config::Limits;
use crate::fragments::GridConfig;
use crate::ids::PlayerId;

/// How a cluster runs.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Display name in the cluster list.
    pub name: String,
    /// The address clients are told to connect to.
    pub public_address: String,
    /// Most players at once; 0 means the default,
    /// [`ClusterConfig::DEFAULT_MAX_CONNECTIONS`]: a cluster is never unbounded.
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
    /// How often due fragments are checked for states to send again
    /// (unchanged ones, and those set before their player had a position).
    pub update_tick: Duration,
    /// How long a player's batch of state records may wait for more after
    /// its first one (`[cluster] state_window_ms`). A state set with
    /// [`Context::set_state`](crate::cluster::Context::set_state) leaves
    /// at most this long after it was set (at its fragment's update rate);
    /// a longer window packs more neighbours' records per datagram. Zero:
    /// a player's records go out at the end of each input that made them
    /// (about one datagram per neighbour's update).
    pub state_window: Duration,
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
    /// Most bytes of messages queued for one player's connection (payloads
    /// and a little per message); past it the player is disconnected with
    /// `SendQueueFull`, as past `limits.send_queue` messages. One message
    /// larger than this still fits an empty queue.
    pub send_queue_bytes: usize,
    /// Most bytes of payload (reliable messages and datagrams) queued for
    /// the core at once, besides the 16,384 events the queue holds: past it
    /// reliable messages wait (back-pressure through TCP) and datagrams are
    /// dropped. Bounds the queue to about this many bytes instead of
    /// 16,384 × 64 KiB = 1 GiB.
    pub event_queue_bytes: usize,
    /// Frame, queue and timing limits.
    pub limits: Limits,
    /// Threads that seal (AES-GCM) and send datagrams (`[cluster]
    /// seal_threads`): 0 or 1 seals on the core's own thread; 2 or more
    /// starts that many seal workers beside it (`cluster/seal_pool.rs`),
    /// each sealing and sending the datagrams of its share of the sessions,
    /// in order; more than [`crate::config::MAX_SEAL_THREADS`] is refused
    /// when the cluster starts. [`ClusterConfig::default_seal_threads`] by
    /// default.
    pub seal_threads: usize,
    /// Most bytes of datagrams queued to the seal workers at once (their
    /// plaintext plus [`ClusterConfig::SEAL_QUEUE_OVERHEAD`] each); a batch
    /// that does not fit is dropped and counted
    /// (`datagrams_dropped_total{reason="seal_busy"}`), never waited for.
    pub seal_queue_bytes: usize,
    /// UDP receivers (`[cluster] receive_threads`, 1 to
    /// [`crate::config::MAX_RECEIVE_THREADS`]): each reads, opens (AES-GCM)
    /// and decodes the datagrams of its own socket, all sockets bound to the
    /// same address with `SO_REUSEPORT` (the kernel spreads the datagrams
    /// over them by their source address and port). With 1, one socket and
    /// one receiver task. More than 1 needs Linux (elsewhere one receiver
    /// runs, with a warning) and a UDP socket bound with `SO_REUSEPORT`
    /// ([`crate::bind::bind_cluster_for`]); given one without it, the
    /// cluster warns and runs one receiver. See `docs/architecture.md` §3.7.
    /// [`ClusterConfig::default_receive_threads`] by default.
    pub receive_threads: usize,
    /// A WebSocket listener for web players (`[cluster] websocket_port`);
    /// `None`: none. The master lists the cluster to web clients only with one.
    pub websocket: Option<crate::web::WebSocketConfig>,
    /// The cluster's metrics (exported when the binary serves them).
    pub metrics: crate::metrics::ClusterMetrics,
    /// Whether the cluster is reserved (set by the Agones GameServer watch,
    /// [`crate::agones`]); the master link tells the master when it changes.
    pub reservation: Reservation,
}

/// Whether a cluster is reserved: shared between what sets it (the Agones
/// watch) and the master link, which sends `ClusterToMaster::Reserved` at
/// its next status when it changed. Clones share the flag; a new one is not
/// reserved.
#[derive(Debug, Clone, Default)]
pub struct Reservation(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Reservation {
    /// Whether the cluster is reserved now.
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reserves the cluster (`true`) or puts it back in the pool (`false`).
    pub fn set(&self, reserved: bool) {
        self.0.store(reserved, std::sync::atomic::Ordering::Relaxed);
    }
}

impl ClusterConfig {
    /// Players allowed when `max_connections` is 0. Each player may hold up
    /// to `send_queue_bytes` (1 MiB) plus `resume_buffer` (256 KiB) of queued
    /// messages, and the core's queue `event_queue_bytes` (32 MiB): 1,000
    /// players are at most about 1.3 GiB, within a 2 GiB server.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 1_000;

    /// [`ClusterConfig::state_window`] by default, in milliseconds: with
    /// about 10 neighbours at 20 Hz, about two records per datagram when
    /// they report at random moments, and at most this added to a state's
    /// latency.
    pub const DEFAULT_STATE_WINDOW_MS: u64 = 5;

    /// [`ClusterConfig::seal_queue_bytes`] by default: 8 MiB, about 40,000
    /// state datagrams.
    pub const DEFAULT_SEAL_QUEUE_BYTES: usize = 8 << 20;

    /// Bytes a datagram counts in the seal queue beyond its plaintext.
    pub const SEAL_QUEUE_OVERHEAD: usize = super::seal_pool::QUEUED_DATAGRAM_OVERHEAD;

    /// [`ClusterConfig::seal_threads`] when the configuration does not set
    /// it: the environment variable `SUSTENET_SEAL_THREADS` if set (over 64
    /// the cluster refuses it when it starts; a value that is not a whole
    /// number counts as 65, which the cluster refuses, and
    /// [`Self::seal_threads_from_env`] refuses by name); otherwise from the machine's cores: 1 (the core's
    /// own thread) up to 3 cores, then a quarter of the cores, at least 2
    /// and at most 8. The core's thread, the UDP receiver and the players'
    /// connections need the rest.
    pub fn default_seal_threads() -> usize {
        Self::seal_threads_from_env().unwrap_or(crate::config::MAX_SEAL_THREADS + 1)
    }

    /// [`Self::default_seal_threads`], or an error naming
    /// `cluster.seal_threads` and `SUSTENET_SEAL_THREADS` when that variable
    /// is set to something that is not a whole number.
    pub fn seal_threads_from_env() -> Result<usize, crate::config::ConfigError> {
        if let Some(n) = threads_from_env("SUSTENET_SEAL_THREADS", "cluster.seal_threads")? {
            return Ok(n);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(if cores <= 3 {
            1
        } else {
            (cores / 4).clamp(2, 8)
        })
    }

    /// [`ClusterConfig::receive_threads`] when the configuration does not
    /// set it: the environment variable `SUSTENET_RECEIVE_THREADS` if set
    /// (a value that is not a whole number counts as 0, which the cluster
    /// refuses when it starts, and [`Self::receive_threads_from_env`]
    /// refuses by name), otherwise 1.
    pub fn default_receive_threads() -> usize {
        Self::receive_threads_from_env().unwrap_or(0)
    }

    /// [`Self::default_receive_threads`], or an error naming
    /// `cluster.receive_threads` and `SUSTENET_RECEIVE_THREADS` when that
    /// variable is set to something that is not a whole number.
    pub fn receive_threads_from_env() -> Result<usize, crate::config::ConfigError> {
        Ok(threads_from_env("SUSTENET_RECEIVE_THREADS", "cluster.receive_threads")?.unwrap_or(1))
    }

    /// Whether `receive_threads` is within its bounds, 1 to
    /// [`crate::config::MAX_RECEIVE_THREADS`]: the cluster checks it when it
    /// starts; the `sustenet` command checks it before it binds anything.
    pub fn check_receive_threads(receive_threads: usize) -> Result<(), crate::config::ConfigError> {
        check_threads(
            "receive_threads",
            "SUSTENET_RECEIVE_THREADS",
            1..=crate::config::MAX_RECEIVE_THREADS,
            receive_threads,
        )
    }

    /// Whether `seal_threads` is within its bounds, 0 to
    /// [`crate::config::MAX_SEAL_THREADS`]: the cluster checks it when it
    /// starts.
    pub fn check_seal_threads(seal_threads: usize) -> Result<(), crate::config::ConfigError> {
        check_threads(
            "seal_threads",
            "SUSTENET_SEAL_THREADS",
            0..=crate::config::MAX_SEAL_THREADS,
            seal_threads,
        )
    }

    /// The player limit in force.
    pub fn connection_limit(&self) -> u32 {
        if self.max_connections == 0 {
            Self::DEFAULT_MAX_CONNECTIONS
        } else {
            self.max_connections
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            name: "Sustenet Cluster".into(),
            public_address: "127.0.0.1".into(),
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
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
            state_window: Duration::from_millis(Self::DEFAULT_STATE_WINDOW_MS),
            public_tcp_port: None,
            public_udp_port: None,
            resume_grace: Duration::from_secs(30),
            udp_silence: Duration::from_secs(10),
            resume_buffer: 256 * 1024,
            send_queue_bytes: 1 << 20,
            event_queue_bytes: 32 << 20,
            limits: Limits::default(),
            seal_threads: Self::default_seal_threads(),
            seal_queue_bytes: Self::DEFAULT_SEAL_QUEUE_BYTES,
            receive_threads: Self::default_receive_threads(),
            websocket: None,
            metrics: crate::metrics::ClusterMetrics::default(),
            reservation: Reservation::default(),
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

/// A thread count from the environment variable `var`: `None` when unset,
/// refused with an error naming `key` and `var` when it is not a whole
/// number.
fn threads_from_env(var: &str, key: &str) -> Result<Option<usize>, crate::config::ConfigError> {
    let Ok(value) = std::env::var(var) else {
        return Ok(None);
    };
    value
        .trim()
        .parse::<usize>()
        .map(Some)
        .map_err(|_| crate::config::ConfigError::Invalid {
            path: "<env>".into(),
            key: key.into(),
            message: format!("is set by {var} to {value:?}, which is not a whole number"),
        })
}

/// Whether a thread count `n` of `[cluster] name` (or the environment
/// variable `var`) is within `bounds`.
fn check_threads(
    name: &str,
    var: &str,
    bounds: std::ops::RangeInclusive<usize>,
    n: usize,
) -> Result<(), crate::config::ConfigError> {
    if bounds.contains(&n) {
        return Ok(());
    }
    Err(crate::config::ConfigError::Invalid {
        path: "<cluster config>".into(),
        key: format!("cluster.{name}"),
        message: format!(
            "must be from {} to {} ([cluster] {name} or {var}), not {n}",
            bounds.start(),
            bounds.end()
        ),
    })
}
