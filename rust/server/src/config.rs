//! `Config.toml`: the settings of master and cluster servers.
//!
//! The file keeps the shape of the original Sustenet `Config.toml` (`[all]`
//! and `[cluster]`, port 0 meaning the default port) and adds `[master]` and
//! `[limits]`. Unknown keys and bad values are refused with a message that
//! names the key and the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sustenet_proto::{DEFAULT_CLUSTER_PORT, DEFAULT_MASTER_PORT, PublicKey};
use thiserror::Error;

/// A configuration problem, with the file it was found in.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read. The message includes the I/O error, so
    /// it is not also the error's `source()`.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and the line).
        message: String,
    },
    /// A value has the right type but is not allowed.
    #[error("{path}: `{key}` {message}")]
    Invalid {
        /// The file (or `<flags>` / `<env>` for overrides).
        path: PathBuf,
        /// The key, as `section.name`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Settings shared by every server kind.
    #[serde(default)]
    pub all: AllSection,
    /// Master-only settings.
    #[serde(default)]
    pub master: MasterSection,
    /// Cluster-only settings.
    #[serde(default)]
    pub cluster: ClusterSection,
    /// Limits and timings.
    #[serde(default)]
    pub limits: Limits,
    /// The master's instances on demand (docs/instances.md).
    #[serde(default)]
    pub instances: crate::instances_config::InstancesSection,
    /// `sustenet agent` and its templates (docs/instances.md).
    #[serde(default)]
    pub agent: crate::instances_config::AgentSection,
    /// The WebSocket listeners for web players (docs/web.md).
    #[serde(default)]
    pub websocket: WebSocketSection,
    /// The metrics and admin endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// Running as an Agones GameServer (cluster only).
    #[serde(default)]
    pub agones: AgonesSection,
}

/// `[agones]`: a cluster run as an Agones `GameServer` talks to the Agones
/// SDK sidecar (needs a `sustenet` built with the cargo feature `agones`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AgonesSection {
    /// Talk to the sidecar: Ready once registered with the master, health
    /// from the core tick, players, Shutdown on stop.
    pub enabled: bool,
    /// The sidecar's gRPC port on localhost; 0: `AGONES_SDK_GRPC_PORT`, else 9357.
    pub sdk_port: u16,
    /// An instance on demand from a Fleet (docs/instances.md §7): Ready at
    /// start, key name and key from the master through the GameServer's
    /// annotations once allocated (no key file).
    pub instance: bool,
}

/// `[websocket]`: TLS, origins and limits of the WebSocket listener that
/// `[master] websocket_port` or `[cluster] websocket_port` turns on.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketSection {
    /// Certificate chain, PEM (leaf first); with `key_file`, serves `wss://`.
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key, PEM.
    pub key_file: Option<PathBuf>,
    /// Origins whose pages may connect (`https://game.example`); `"*"`: any.
    /// Empty: pages from loopback hosts only.
    pub allowed_origins: Vec<String>,
    /// Allows `ws://` without TLS off loopback (behind a TLS-terminating proxy).
    pub insecure: bool,
    /// Tell web clients to use `wss://` although this listener has no
    /// certificate (a TLS-terminating proxy in front).
    pub public_tls: bool,
    /// The WebSocket port web clients are told (behind a proxy); 0: the listening port.
    pub public_port: u16,
    /// Largest web frame, in bytes.
    pub max_message_bytes: usize,
    /// Most bytes of a WebSocket upgrade request.
    pub max_handshake_bytes: usize,
    /// Datagrams kept for a web player whose socket is busy (oldest dropped first).
    pub unreliable_queue: usize,
}

impl Default for WebSocketSection {
    fn default() -> Self {
        use crate::web::WebSocketConfig as W;
        Self {
            cert_file: None,
            key_file: None,
            allowed_origins: Vec::new(),
            insecure: false,
            public_tls: false,
            public_port: 0,
            max_message_bytes: W::DEFAULT_MAX_MESSAGE,
            max_handshake_bytes: W::DEFAULT_MAX_HANDSHAKE_BYTES,
            unreliable_queue: W::DEFAULT_UNRELIABLE_QUEUE,
        }
    }
}

impl WebSocketSection {
    /// Checks the section's limits and its certificate and key pairing with
    /// the file named in messages, whether or not a `websocket_port` turns a
    /// listener on (the same bounds as [`crate::web::WebSocketConfig::check`]).
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(bad(
                "websocket.cert_file".into(),
                "and websocket.key_file go together".into(),
            ));
        }
        let mut c = crate::web::WebSocketConfig::new((std::net::Ipv4Addr::LOCALHOST, 0).into());
        c.max_message = self.max_message_bytes;
        c.max_handshake_bytes = self.max_handshake_bytes;
        c.unreliable_queue = self.unreliable_queue;
        match c.check() {
            Ok(()) => Ok(()),
            Err(crate::ServerError::Config(ConfigError::Invalid { key, message, .. })) => {
                Err(bad(key, message))
            }
            Err(e) => Err(bad("websocket".into(), e.to_string())),
        }
    }
}

impl ConfigFile {
    /// The WebSocket listener on `port` (0: none), from `[websocket]` and
    /// `[all] bind`; reads the certificate and key files.
    pub fn websocket_config(
        &self,
        port: u16,
    ) -> Result<Option<crate::web::WebSocketConfig>, crate::ServerError> {
        if port == 0 {
            return Ok(None);
        }
        let w = &self.websocket;
        let bind: std::net::IpAddr = self.all.bind.parse().map_err(|_| ConfigError::Invalid {
            path: "<config>".into(),
            key: "all.bind".into(),
            message: "must be an IP address to listen for WebSockets".into(),
        })?;
        let tls = match (&w.cert_file, &w.key_file) {
            (Some(c), Some(k)) => Some(crate::web::TlsIdentity::from_pem_files(c, k)?),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    path: "<config>".into(),
                    key: "websocket.cert_file".into(),
                    message: "and websocket.key_file go together".into(),
                }
                .into());
            }
        };
        let mut c = crate::web::WebSocketConfig::new((bind, port).into());
        c.tls = tls;
        c.allowed_origins = w.allowed_origins.clone();
        c.insecure = w.insecure;
        c.public_tls = w.public_tls;
        c.public_port = w.public_port;
        c.max_message = w.max_message_bytes;
        c.max_handshake_bytes = w.max_handshake_bytes;
        c.unreliable_queue = w.unreliable_queue;
        c.check()?;
        Ok(Some(c))
    }
}

/// `[metrics]`: the HTTP endpoint serving `/metrics` (and the master's
/// dashboard). Off unless `bind` is set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// `host:port` to serve on, e.g. `"127.0.0.1:9100"`; empty: no endpoint.
    pub bind: String,
    /// When set, every path but `/health` needs it (`Authorization: Bearer
    /// <token>` or `?token=<token>`); required for the dashboard beyond loopback.
    pub token: String,
    /// Serve the live dashboard (`/` and `/api/dashboard`); master only.
    pub dashboard: bool,
}

impl MetricsSection {
    /// The endpoint's address, `None` when it is off.
    pub fn address(&self, path: &Path) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        if self.bind.is_empty() {
            return Ok(None);
        }
        let bad = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: "metrics.bind".into(),
            message,
        };
        let addr: std::net::SocketAddr = self
            .bind
            .parse()
            .map_err(|_| bad("must be an IP address and port, like \"127.0.0.1:9100\"".into()))?;
        crate::metrics::admin::check_exposure(addr, &self.token, self.dashboard).map_err(bad)?;
        Ok(Some(addr))
    }
}

/// `[all]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AllSection {
    /// Display name of this server.
    pub server_name: String,
    /// Most connected players (cluster) or clients (master); 0 means the
    /// default bound: 1,000 players on a cluster, 5,000 clients on the master.
    pub max_connections: u32,
    /// Listening port; 0 means the default (6256 master, 6257 cluster).
    pub port: u16,
    /// Address to listen on.
    pub bind: String,
    /// Folder of key files.
    pub key_dir: PathBuf,
}

impl Default for AllSection {
    fn default() -> Self {
        Self {
            server_name: "Sustenet Server".into(),
            max_connections: 0,
            port: 0,
            bind: "0.0.0.0".into(),
            key_dir: "keys".into(),
        }
    }
}

/// How the master checks logins.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Anyone may log in with any name.
    #[default]
    None,
    /// The secret must equal `[master] shared_secret`.
    SharedSecret,
}

/// `[master]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MasterSection {
    /// The master's private key file (created by `sustenet keygen --master`).
    pub key_file: PathBuf,
    /// Login check.
    pub auth: AuthMode,
    /// The secret for `auth = "shared_secret"`.
    pub shared_secret: String,
    /// How long a connect token stays valid, in seconds.
    pub token_ttl_secs: u64,
    /// A cluster silent for this long is dropped from the list, in seconds.
    pub cluster_timeout_secs: u64,
    /// Failed logins allowed on one connection before it is closed.
    pub max_login_attempts: u32,
    /// How long an unused ticket counts toward its cluster's load and full
    /// flag, in milliseconds (at most the token lifetime); 0: never.
    pub ticket_hold_ms: u64,
    /// Most unused, unexpired tickets one login connection may hold.
    pub max_tickets_per_connection: u32,
    /// Most unused, unexpired tickets one user name may hold over all its connections.
    pub max_tickets_per_user: u32,
    /// Most unused, unexpired tickets the connections from one address (IPv6: one /64) may hold.
    pub max_tickets_per_address: u32,
    /// Most clusters listed at once under one key name.
    pub max_clusters_per_key: u32,
    /// Port of the WebSocket listener for web clients (`[websocket]`); 0: off.
    pub websocket_port: u16,
}

impl Default for MasterSection {
    fn default() -> Self {
        Self {
            key_file: "keys/master.key".into(),
            auth: AuthMode::None,
            shared_secret: String::new(),
            token_ttl_secs: 30,
            cluster_timeout_secs: 5,
            max_login_attempts: 5,
            ticket_hold_ms: 2_000,
            max_tickets_per_connection: 4,
            max_tickets_per_user: 8,
            max_tickets_per_address: 256,
            max_clusters_per_key: 64,
            websocket_port: 0,
        }
    }
}

/// The largest `[cluster] state_window_ms` accepted.
pub const MAX_STATE_WINDOW_MS: u64 = 1_000;

/// The most `[cluster] seal_threads` accepted.
pub const MAX_SEAL_THREADS: usize = 64;

/// The most `[cluster] receive_threads` accepted (UDP receivers, each with
/// its own socket).
pub const MAX_RECEIVE_THREADS: usize = 64;

/// The least `[cluster] seal_queue_bytes` accepted: room for a few hundred
/// datagrams.
pub const MIN_SEAL_QUEUE_BYTES: usize = 64 * 1024;

/// `[cluster]`, as in the original Sustenet plus the address clients use.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// The key file's name in the key folder.
    pub key_name: String,
    /// The master's address.
    pub master_ip: String,
    /// The master's port; 0 means 6256.
    pub master_port: u16,
    /// The master's public key in base64, for tools and clients started from
    /// this file. (The original Sustenet held a URL here; a URL is accepted
    /// and ignored with a warning, as it was never fetched.)
    pub domain_pub_key: Option<String>,
    /// The address clients are told to connect to.
    pub public_address: String,
    /// UDP port; 0 means the same number as the TCP port.
    pub udp_port: u16,
    /// The TCP port clients are told to connect to; 0 means the port the
    /// cluster listens on (set it behind a port-forwarding proxy or NAT).
    pub public_port: u16,
    /// The UDP port clients are told to send datagrams to; 0 means the one
    /// the cluster listens on (set it behind a port-forwarding proxy or NAT).
    pub public_udp_port: u16,
    /// How long a player's proven UDP address may stay silent and still
    /// receive datagrams, in milliseconds (then it must answer a new
    /// challenge first).
    pub udp_silence_ms: u64,
    /// How long a player whose connection dropped keeps its seat, waiting
    /// for it to reconnect, in milliseconds; 0 turns reconnects off.
    pub resume_grace_ms: u64,
    /// Most bytes of reliable messages kept per player for a reconnect.
    pub resume_buffer: usize,
    /// Most bytes queued for one player's connection (payloads plus 32
    /// bytes a message).
    pub send_queue_bytes: usize,
    /// Most bytes of payload queued for the cluster's core at once.
    pub event_queue_bytes: usize,
    /// Most ping requests answered per second to one source address.
    pub ping_rate_per_source: u32,
    /// Port of the WebSocket listener for web players (`[websocket]`); 0: off.
    pub websocket_port: u16,
    /// Longest wait of a player's batch of state records after its first
    /// one, in milliseconds: a neighbour's state reaches it at most this
    /// late (plus the network); 0: sent at the end of each input.
    pub state_window_ms: u64,
    /// Threads that seal (AES-GCM) and send the cluster's datagrams: 0 or
    /// 1 seals them on the core's own thread; 2 to 64 start that many seal
    /// workers beside it. Unset: [`crate::cluster::ClusterConfig::default_seal_threads`].
    pub seal_threads: Option<usize>,
    /// Most bytes of datagrams queued to the seal workers at once; a batch
    /// that does not fit is dropped and counted (`seal_busy`).
    pub seal_queue_bytes: usize,
    /// UDP receivers, each on its own socket bound to the cluster's UDP
    /// port with `SO_REUSEPORT` (Linux; elsewhere 1): 1 to 64. Unset:
    /// [`crate::cluster::ClusterConfig::default_receive_threads`].
    pub receive_threads: Option<usize>,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            key_name: "cluster_key".into(),
            master_ip: "127.0.0.1".into(),
            master_port: 0,
            domain_pub_key: None,
            public_address: "127.0.0.1".into(),
            udp_port: 0,
            public_port: 0,
            public_udp_port: 0,
            udp_silence_ms: 10_000,
            resume_grace_ms: 30_000,
            resume_buffer: 256 * 1024,
            send_queue_bytes: 1 << 20,
            event_queue_bytes: 32 << 20,
            ping_rate_per_source: 32,
            websocket_port: 0,
            state_window_ms: crate::cluster::ClusterConfig::DEFAULT_STATE_WINDOW_MS,
            seal_threads: None,
            seal_queue_bytes: crate::cluster::ClusterConfig::DEFAULT_SEAL_QUEUE_BYTES,
            receive_threads: None,
        }
    }
}

/// `[limits]`: every bound a server enforces, explicit and adjustable.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest TCP frame accepted, in bytes.
    pub max_frame: usize,
    /// Most connections still in their handshake at once (the general pool).
    pub max_handshakes: usize,
    /// Most connections in their handshake from one source address (IPv6: one /64).
    pub max_handshakes_per_address: usize,
    /// Handshake slots reserved for known addresses, beside the general pool
    /// (on the master: the addresses clusters registered from).
    pub max_known_handshakes: usize,
    /// Time allowed for a new connection's first bytes, in milliseconds.
    pub first_byte_timeout_ms: u64,
    /// Time allowed to finish a handshake, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Interval between heartbeats, in milliseconds.
    pub heartbeat_ms: u64,
    /// A peer silent this long is disconnected, in milliseconds.
    pub timeout_ms: u64,
    /// Messages queued for one peer before it is disconnected as too slow.
    pub send_queue: usize,
    /// Refused (tampered) packets tolerated on one connection before it is closed.
    pub max_auth_failures: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: sustenet_proto::DEFAULT_MAX_FRAME,
            max_handshakes: 512,
            max_handshakes_per_address: 32,
            max_known_handshakes: 64,
            first_byte_timeout_ms: 1_000,
            handshake_timeout_ms: 5_000,
            heartbeat_ms: 1_000,
            timeout_ms: 10_000,
            send_queue: 4_096,
            max_auth_failures: 16,
        }
    }
}

impl Limits {
    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
    /// The deadline for a new connection's first bytes.
    pub fn first_byte_timeout(&self) -> Duration {
        Duration::from_millis(self.first_byte_timeout_ms)
    }
    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
    /// The silence timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, message: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key: format!("limits.{key}"),
            message: message.to_owned(),
        };
        if self.max_frame < 1024 || self.max_frame > 16 * 1024 * 1024 {
            return Err(bad("max_frame", "must be between 1024 and 16777216 bytes"));
        }
        if self.max_handshakes == 0 {
            return Err(bad("max_handshakes", "must be at least 1"));
        }
        if self.max_handshakes_per_address == 0 {
            return Err(bad("max_handshakes_per_address", "must be at least 1"));
        }
        if self.first_byte_timeout_ms == 0 || self.first_byte_timeout_ms > self.handshake_timeout_ms
        {
            return Err(bad(
                "first_byte_timeout_ms",
                "must be above 0 and at most handshake_timeout_ms",
            ));
        }
        if self.send_queue == 0 {
            return Err(bad("send_queue", "must be at least 1"));
        }
        if self.heartbeat_ms == 0 || self.handshake_timeout_ms == 0 {
            return Err(bad("heartbeat_ms", "timings must be above 0"));
        }
        if self.timeout_ms <= self.heartbeat_ms {
            return Err(bad("timeout_ms", "must be longer than heartbeat_ms"));
        }
        Ok(())
    }
}

impl ConfigFile {
    /// Parses TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&text, path)
    }

    /// Checks values that parse but are not allowed.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        self.limits.validate(path)?;
        self.instances.validate(path)?;
        self.agent.validate(path)?;
        self.metrics.address(path)?;
        self.websocket.validate(path)?;
        let bad = |key: &str, message: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.to_owned(),
        };
        let websocket = self.master.websocket_port != 0 || self.cluster.websocket_port != 0;
        if websocket && self.all.bind.parse::<std::net::IpAddr>().is_err() {
            return Err(bad(
                "all.bind",
                "must be an IP address to listen for WebSockets",
            ));
        }
        if self.all.server_name.is_empty()
            || self.all.server_name.len() > sustenet_proto::message::NAME_MAX
        {
            return Err(bad("all.server_name", "must be 1 to 64 bytes long"));
        }
        if self.cluster.key_name.is_empty()
            || !self
                .cluster
                .key_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            || self.cluster.key_name.starts_with('.')
            || self.cluster.key_name.ends_with(".pub")
        {
            return Err(bad(
                "cluster.key_name",
                "must be a plain file name (letters, digits, '_', '-', '.'; not ending in .pub, the name of public keys)",
            ));
        }
        if self.cluster.resume_grace_ms > 0 && self.cluster.resume_buffer < self.limits.max_frame {
            return Err(bad(
                "cluster.resume_buffer",
                "must be at least limits.max_frame, so the largest message can be kept for a reconnect",
            ));
        }
        if self.cluster.state_window_ms > MAX_STATE_WINDOW_MS {
            return Err(bad(
                "cluster.state_window_ms",
                "must be at most 1000 (a state older than that is stale)",
            ));
        }
        if self.cluster.seal_threads.unwrap_or(0) > MAX_SEAL_THREADS {
            return Err(bad("cluster.seal_threads", "must be at most 64"));
        }
        if let Some(n) = self.cluster.receive_threads
            && !(1..=MAX_RECEIVE_THREADS).contains(&n)
        {
            return Err(bad("cluster.receive_threads", "must be from 1 to 64"));
        }
        if self.cluster.seal_queue_bytes < MIN_SEAL_QUEUE_BYTES {
            return Err(bad(
                "cluster.seal_queue_bytes",
                "must be at least 65536 (a few hundred datagrams)",
            ));
        }
        if self.master.auth == AuthMode::SharedSecret && self.master.shared_secret.is_empty() {
            return Err(bad(
                "master.shared_secret",
                "must be set when auth = \"shared_secret\"",
            ));
        }
        if self.master.token_ttl_secs == 0 || self.master.cluster_timeout_secs == 0 {
            return Err(bad("master.token_ttl_secs", "timings must be above 0"));
        }
        if self.master.max_tickets_per_connection == 0 {
            return Err(bad(
                "master.max_tickets_per_connection",
                "must be at least 1",
            ));
        }
        if self.master.max_tickets_per_user == 0 {
            return Err(bad("master.max_tickets_per_user", "must be at least 1"));
        }
        if self.master.max_tickets_per_address == 0 {
            return Err(bad("master.max_tickets_per_address", "must be at least 1"));
        }
        if self.master.max_clusters_per_key == 0 {
            return Err(bad("master.max_clusters_per_key", "must be at least 1"));
        }
        Ok(())
    }

    /// The master's listening port (port 0 means 6256).
    pub fn master_port(&self) -> u16 {
        default_port(self.all.port, DEFAULT_MASTER_PORT)
    }

    /// The cluster's TCP port (port 0 means 6257).
    pub fn cluster_port(&self) -> u16 {
        default_port(self.all.port, DEFAULT_CLUSTER_PORT)
    }

    /// The cluster's UDP port (0 means the TCP port).
    pub fn cluster_udp_port(&self) -> u16 {
        default_port(self.cluster.udp_port, self.cluster_port())
    }

    /// Where the cluster finds the master (port 0 means 6256).
    pub fn master_address(&self) -> String {
        format!(
            "{}:{}",
            self.cluster.master_ip,
            default_port(self.cluster.master_port, DEFAULT_MASTER_PORT)
        )
    }

    /// The master public key from `domain_pub_key`, if it holds one in base64.
    pub fn master_public_key(&self) -> Option<PublicKey> {
        self.cluster
            .domain_pub_key
            .as_deref()
            .and_then(|k| PublicKey::from_base64(k).ok())
    }
}

/// Port 0 means `default`.
pub fn default_port(port: u16, default: u16) -> u16 {
    if port == 0 { default } else { port }
}

#[cfg(test)]
mod tests;
