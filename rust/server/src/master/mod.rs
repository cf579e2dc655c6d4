//! The master server: registers clusters, logs players in, hands out tickets.
//!
//! Clusters and clients both reach the master over TCP; the hello frame says
//! which. A cluster proves its key and then reports its load
//! ([`cluster_link`]); a client runs the Noise handshake, logs in through the
//! auth hook, reads the cluster list and asks for a ticket ([`client`]). What
//! the master knows (clusters, loads, tickets, who was sent where) is the
//! sans-IO [`directory::Directory`], which these connection tasks drive.

mod admin_link;
mod agent_link;
pub mod agones_backend;
mod client;
mod cluster_link;
pub(crate) mod directory;
mod instance_hub;
pub mod instances;
mod key_link;
pub mod kube_api;
mod link_loop;
mod web_client;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sustenet_proto::handshake::Hello;
use sustenet_proto::{DisconnectReason, Key, MasterKeypair};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::handshake_gate::HandshakeGate;
use tracing::{Instrument, info, info_span, warn};

use crate::auth::AuthHook;
use crate::config::Limits;
use crate::error::ServerError;
use crate::listen::{self, Greeted, refuse};
use directory::{Directory, DirectorySettings};
use instance_hub::InstanceHub;
use instances::{InstanceSettings, InstanceTable};

/// How the master runs.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Display name.
    pub name: String,
    /// Most client connections at once (clusters do not count); 0 means the
    /// default, [`MasterConfig::DEFAULT_MAX_CONNECTIONS`]: the master is never unbounded.
    pub max_connections: u32,
    /// How long a connect token stays valid.
    pub token_ttl: Duration,
    /// How long an unused ticket counts toward its cluster's load (and full
    /// flag); never longer than `token_ttl`. 0: unused tickets never count.
    pub ticket_hold: Duration,
    /// Most unused, unexpired tickets one login connection may hold.
    pub max_tickets_per_connection: u32,
    /// Most unused, unexpired tickets one user name may hold over all its connections.
    pub max_tickets_per_user: u32,
    /// Most unused, unexpired tickets the connections from one source address (IPv6: one
    /// /64) may hold together.
    pub max_tickets_per_address: u32,
    /// A cluster silent for this long is dropped.
    pub cluster_timeout: Duration,
    /// Failed logins allowed on one connection before it is closed.
    pub max_login_attempts: u32,
    /// Most clusters listed at once under one key name; more are refused
    /// (`ServerFull`), so one leaked key cannot fill the cluster list.
    pub max_clusters_per_key: u32,
    /// Frame, queue and timing limits.
    pub limits: Limits,
    /// Instances on demand: limits and timeouts (docs/instances.md).
    pub instances: InstanceSettings,
    /// Templates started as Agones GameServers (`[instances.agones]`,
    /// docs/instances.md §7); `None`: agents only.
    pub agones: Option<crate::instances_config::AgonesBackendSection>,
    /// A WebSocket listener for web clients (`[master] websocket_port`);
    /// `None`: none.
    pub websocket: Option<crate::web::WebSocketConfig>,
    /// The master's metrics (exported when the binary serves them).
    pub metrics: crate::metrics::MasterMetrics,
}

impl MasterConfig {
    /// Client connections allowed when `max_connections` is 0.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 5_000;

    /// The client connection limit in force.
    pub fn connection_limit(&self) -> u32 {
        if self.max_connections == 0 {
            Self::DEFAULT_MAX_CONNECTIONS
        } else {
            self.max_connections
        }
    }

    fn directory_settings(&self) -> DirectorySettings {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        DirectorySettings {
            token_ttl_ms: ms(self.token_ttl),
            ticket_hold_ms: ms(self.ticket_hold),
            max_tickets_per_connection: self.max_tickets_per_connection.max(1) as usize,
            max_tickets_per_user: self.max_tickets_per_user.max(1) as usize,
            max_tickets_per_address: self.max_tickets_per_address.max(1) as usize,
            max_clusters_per_key: self.max_clusters_per_key.max(1) as usize,
        }
    }
}

impl Default for MasterConfig {
    fn default() -> Self {
        Self {
            name: "Sustenet Master".into(),
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            token_ttl: Duration::from_secs(30),
            ticket_hold: Duration::from_secs(2),
            max_tickets_per_connection: 4,
            max_tickets_per_user: 8,
            max_tickets_per_address: 256,
            cluster_timeout: Duration::from_secs(5),
            max_login_attempts: 5,
            max_clusters_per_key: 64,
            limits: Limits::default(),
            instances: InstanceSettings::default(),
            agones: None,
            websocket: None,
            metrics: crate::metrics::MasterMetrics::default(),
        }
    }
}

/// The master's keys: its own keypair and every cluster, agent and admin key by name.
#[derive(Debug, Clone)]
pub struct MasterKeys {
    /// The static keypair clients authenticate the master with.
    pub keypair: MasterKeypair,
    /// Cluster keys by key name. Names starting with `instance-` are
    /// reserved for instances (their keys come from the instance table).
    pub cluster_keys: HashMap<String, Key>,
    /// Agent keys by key name (`<key_dir>/agents/`).
    pub agent_keys: HashMap<String, Key>,
    /// Admin keys by key name (`<key_dir>/admin/`), for `sustenet instances`.
    pub admin_keys: HashMap<String, Key>,
    /// When set, cluster keys are read from this folder at each cluster's
    /// registration attempt instead of from `cluster_keys`: a key file added
    /// there works without a restart, one removed or replaced refuses new
    /// registrations with the old key (links already up stay up).
    pub cluster_key_dir: Option<std::path::PathBuf>,
    /// When set, agent keys are read from this folder at each agent's
    /// connection attempt instead of from `agent_keys`: a key file added
    /// there works without a restart, one removed stops new links.
    pub agent_key_dir: Option<std::path::PathBuf>,
    /// The same for admin keys.
    pub admin_key_dir: Option<std::path::PathBuf>,
}

impl MasterKeys {
    /// The keypair and cluster keys, with no agent and no admin key.
    pub fn new(keypair: MasterKeypair, cluster_keys: HashMap<String, Key>) -> Self {
        Self {
            keypair,
            cluster_keys,
            agent_keys: HashMap::new(),
            admin_keys: HashMap::new(),
            cluster_key_dir: None,
            agent_key_dir: None,
            admin_key_dir: None,
        }
    }

    /// The cluster key `key_name` (never an `instance-<id>` one, which the
    /// instance table holds): its file in `cluster_key_dir` as it is now, or
    /// from `cluster_keys` when there is no such folder.
    pub fn cluster_key(&self, key_name: &str) -> Option<Key> {
        lookup(
            self.cluster_key_dir.as_deref(),
            &self.cluster_keys,
            key_name,
        )
    }

    /// The agent key `key_name`: its file in `agent_key_dir` as it is now,
    /// or from `agent_keys` when there is no such folder.
    pub fn agent_key(&self, key_name: &str) -> Option<Key> {
        lookup(self.agent_key_dir.as_deref(), &self.agent_keys, key_name)
    }

    /// The admin key `key_name`, found as [`MasterKeys::agent_key`] finds agent keys.
    pub fn admin_key(&self, key_name: &str) -> Option<Key> {
        lookup(self.admin_key_dir.as_deref(), &self.admin_keys, key_name)
    }
}

fn lookup(dir: Option<&std::path::Path>, keys: &HashMap<String, Key>, name: &str) -> Option<Key> {
    match dir {
        Some(dir) => crate::keys::read_named_key(dir, name),
        None => keys.get(name).cloned(),
    }
}

/// What an agent's or admin tool's hello said, and where it came from.
pub(crate) struct KeyHello {
    pub key_name: String,
    pub nonce: [u8; 32],
    pub peer: SocketAddr,
}

pub(crate) struct Shared {
    config: MasterConfig,
    keys: MasterKeys,
    auth: Arc<dyn AuthHook>,
    directory: Mutex<Directory>,
    instances: Mutex<InstanceHub>,
    handshakes: Arc<HandshakeGate>,
    clients: Semaphore,
    shutdown: watch::Receiver<bool>,
    web_clusters: web_client::WebClusters,
    /// The cluster links' queues, which carry the directory's messages.
    cluster_links: cluster_link::ClusterLinks,
}

impl Shared {
    fn web_clusters(&self) -> &web_client::WebClusters {
        &self.web_clusters
    }

    fn directory(&self) -> MutexGuard<'_, Directory> {
        // A poisoned lock means a panic elsewhere; every directory update
        // leaves it consistent, so go on.
        self.directory.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs a master on an already-bound listener until `shutdown` completes.
/// On shutdown every client and cluster is told `ServerShutdown`.
pub async fn run(
    listener: TcpListener,
    config: MasterConfig,
    keys: MasterKeys,
    auth: Arc<dyn AuthHook>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    run_with_web(listener, None, config, keys, auth, shutdown).await
}

/// As [`run`], with the WebSocket listener of `config.websocket` bound
/// already ([`crate::web::WebSocketConfig::bind_listener`]); `None` binds
/// it here. A listener without `config.websocket` is a configuration error.
pub async fn run_with_web(
    listener: TcpListener,
    web_listener: Option<TcpListener>,
    config: MasterConfig,
    keys: MasterKeys,
    auth: Arc<dyn AuthHook>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let web_listener =
        crate::web::WebSocketConfig::listener_for(config.websocket.as_ref(), web_listener).await?;
    let mut table = InstanceTable::new(config.instances.clone());
    let agones = agones_backend::attach(config.agones.as_ref(), &mut table)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        web_clusters: web_client::WebClusters::default(),
        cluster_links: cluster_link::ClusterLinks::default(),
        handshakes: HandshakeGate::new(&config.limits),
        clients: Semaphore::new(config.connection_limit() as usize),
        directory: Mutex::new(Directory::new(config.directory_settings())),
        instances: Mutex::new(InstanceHub::new(table)),
        config,
        keys,
        auth,
        shutdown: stop_rx,
    });
    info!(
        addr = %listener.local_addr()?,
        public_key = %shared.keys.keypair.public().to_base64(),
        clusters_known = shared.keys.cluster_keys.len(),
        max_clients = shared.config.connection_limit(),
        "master listening"
    );
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(instance_hub::drive(shared.clone()));
    if let Some((backend, jobs, rx)) = agones {
        shared.instances().agones = Some(jobs);
        tasks.spawn(agones_backend::drive(shared.clone(), backend, rx));
    }
    if let Some(l) = web_listener {
        info!(addr = %l.local_addr()?, tls = shared.config.websocket.as_ref().is_some_and(|w| w.tls.is_some()), "master listening for WebSockets");
        let span = info_span!("web_accept");
        tasks.spawn(web_client::accept_loop(shared.clone(), l).instrument(span));
    }
    let mut next_conn = 0u64;
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = sample.tick() => {
                let now = crate::time::now_ms();
                let (clusters, expired, reserved) = {
                    let mut dir = shared.directory();
                    (dir.cluster_list(now), dir.take_expired_tickets(now), dir.reserved_ids())
                };
                let metrics = &shared.config.metrics;
                metrics.tickets_expired(expired.joins, expired.transfers);
                metrics.sample(now, clusters);
                metrics.reserved(&reserved);
            }
            (stream, peer) = crate::listen::accept(&listener) => {
                shared.config.metrics.connection();
                next_conn += 1;
                let shared = shared.clone();
                let span = info_span!("conn", id = next_conn, %peer);
                tasks.spawn(async move { handle_conn(shared, stream, peer, next_conn).await }.instrument(span));
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    info!("master shutting down");
    let _ = stop_tx.send(true);
    crate::listen::wind_down(&mut tasks).await;
    Ok(())
}

async fn handle_conn(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, conn: u64) {
    let metrics = &shared.config.metrics;
    let refused = |r: DisconnectReason| metrics.handshake(Err(r));
    let greeted = listen::accept_hello(
        stream,
        peer,
        &shared.handshakes,
        &shared.config.limits,
        &refused,
    );
    let Some(Greeted {
        frames,
        mut wr,
        hello,
        permit,
    }) = greeted.await
    else {
        return;
    };
    match hello {
        Hello::Cluster { key_name, nonce } => {
            let hello = KeyHello {
                key_name,
                nonce,
                peer,
            };
            cluster_link::accept(&shared, frames, wr, hello, conn, permit).await;
        }
        Hello::Agent { key_name, nonce } => {
            let hello = KeyHello {
                key_name,
                nonce,
                peer,
            };
            agent_link::accept(&shared, frames, wr, hello, conn, permit).await;
        }
        Hello::Admin { key_name, nonce } => {
            let hello = KeyHello {
                key_name,
                nonce,
                peer,
            };
            admin_link::accept(&shared, frames, wr, hello, conn, permit).await;
        }
        Hello::ClientMaster { noise } => {
            client::accept(&shared, frames, wr, &noise, peer, permit).await;
        }
        Hello::ClientCluster { .. } | Hello::ClientResume { .. } => {
            warn!("refused: a client sent a cluster hello to the master");
            let reason = DisconnectReason::ProtocolViolation;
            refuse(&mut wr, reason, listen::CLUSTER_HELLO_AT_MASTER).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_master_is_never_unbounded() {
        let default = MasterConfig::default();
        assert_eq!(
            default.connection_limit(),
            MasterConfig::DEFAULT_MAX_CONNECTIONS
        );
        let zero = MasterConfig {
            max_connections: 0,
            ..MasterConfig::default()
        };
        assert_eq!(zero.connection_limit(), 5_000);
        let set = MasterConfig {
            max_connections: 7,
            ..MasterConfig::default()
        };
        assert_eq!(set.connection_limit(), 7);
    }
}
