//! How the client connects: addresses, keys, limits and timeouts.

use std::time::Duration;

use sustenet_proto::PublicKey;

/// How the client connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The master's `host:port`.
    pub master_addr: String,
    /// The master's public key (base64 in configuration files).
    pub master_public_key: PublicKey,
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Time allowed for a connection and its handshake.
    pub handshake_timeout: Duration,
    /// Interval between heartbeats.
    pub heartbeat: Duration,
    /// A server silent this long is considered gone.
    pub timeout: Duration,
    /// Most events waiting for the game to drain them. When full, the
    /// client stops reading the network (reliable data waits, unreliable
    /// data is dropped).
    pub event_queue: usize,
    /// Most commands waiting for the client task.
    pub command_queue: usize,
    /// How long to wait for the clusters' ping answers after each cluster
    /// list; zero turns ping measurement off.
    pub ping_timeout: Duration,
    /// How long to keep trying to reconnect to the cluster after the
    /// connection drops (`ConnectionLost` or `Timeout`); zero turns
    /// reconnecting off. The cluster has its own window (`resume_grace`).
    pub reconnect_window: Duration,
    /// Most bytes of reliable messages kept for a reconnect: those sent and
    /// not yet acknowledged by the cluster, and those sent while reconnecting.
    pub resume_buffer: usize,
}

impl ClientConfig {
    /// Defaults for a master at `master_addr` with public key `key`.
    pub fn new(master_addr: impl Into<String>, key: PublicKey) -> Self {
        Self {
            master_addr: master_addr.into(),
            master_public_key: key,
            max_frame: sustenet_proto::DEFAULT_MAX_FRAME,
            handshake_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            event_queue: 65_536,
            command_queue: 65_536,
            ping_timeout: Duration::from_millis(300),
            reconnect_window: Duration::from_secs(30),
            resume_buffer: 256 * 1024,
        }
    }
}
