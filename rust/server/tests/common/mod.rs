//! Test harness: a master and clusters on loopback port 0, and clients.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use sustenet_client::{Client, ClientConfig, ClientEvent};
use sustenet_proto::{Key, MasterKeypair};
use sustenet_server::cluster::{self, ClusterConfig};
use sustenet_server::master::{self, MasterConfig, MasterKeys};
use sustenet_server::{AllowAll, ClusterHandle, EchoChat, Limits, Plugin};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod raw;
mod raw_world;
mod udp_path;
// Each test binary uses a part of the harness (as with dead_code above).
#[allow(unused_imports)]
pub use raw::*;
#[allow(unused_imports)]
pub use raw_world::*;
#[allow(unused_imports)]
pub use udp_path::*;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// The guard against hangs: no condition a test waits for takes this long.
pub const GUARD: Duration = Duration::from_secs(30);

/// Limits with short timings so failure tests finish quickly.
pub fn fast_limits() -> Limits {
    Limits {
        heartbeat_ms: 200,
        timeout_ms: 2_000,
        handshake_timeout_ms: 1_000,
        ..Limits::default()
    }
}

pub struct RunningMaster {
    pub addr: SocketAddr,
    pub keypair: MasterKeypair,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl RunningMaster {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
    /// Kills the master without goodbyes: its task is aborted and awaited,
    /// so its listener and every connection are closed when this returns.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

pub async fn start_master_on(
    addr: &str,
    keypair: MasterKeypair,
    cluster_keys: HashMap<String, Key>,
    config: MasterConfig,
) -> RunningMaster {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let keys = MasterKeys::new(keypair.clone(), cluster_keys);
    let task = tokio::spawn(async move {
        master::run(listener, config, keys, Arc::new(AllowAll), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    RunningMaster {
        addr,
        keypair,
        stop: Some(tx),
        task,
    }
}

pub fn master_config() -> MasterConfig {
    MasterConfig {
        cluster_timeout: Duration::from_millis(1_500),
        limits: fast_limits(),
        ..MasterConfig::default()
    }
}

pub struct RunningCluster {
    /// The id the cluster registers under.
    pub id: u64,
    pub tcp: SocketAddr,
    pub udp: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl RunningCluster {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
    /// [`RunningCluster::stop`], and its run must have ended without an
    /// error or a panic.
    pub async fn stop_cleanly(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.unwrap();
    }
    /// Kills the cluster without goodbyes: its sockets close, nothing is said.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The configuration `start_cluster` uses: fast limits, a random fixed id.
pub fn cluster_config(master: SocketAddr, name: &str, key_name: &str, max: u32) -> ClusterConfig {
    ClusterConfig {
        name: name.into(),
        public_address: "127.0.0.1".into(),
        max_connections: max,
        master_addr: master.to_string(),
        key_name: key_name.into(),
        cluster_id: Some(rand::rng().next_u64()),
        status_interval: Duration::from_millis(200),
        reconnect_max: Duration::from_millis(500),
        ping_rate: 2_000,
        grid: sustenet_server::fragments::GridConfig::default(),
        update_tick: Duration::from_millis(10),
        limits: fast_limits(),
        ..ClusterConfig::default()
    }
}

pub async fn start_cluster(
    master: SocketAddr,
    name: &str,
    key_name: &str,
    key: Key,
    max: u32,
) -> RunningCluster {
    start_cluster_with(cluster_config(master, name, key_name, max), key).await
}

/// Starts a cluster with EchoChat on loopback port 0 with `config`.
pub async fn start_cluster_with(config: ClusterConfig, key: Key) -> RunningCluster {
    let (tcp, udp) = loopback_sockets().await;
    spawn_cluster(tcp, udp, config, key, EchoChat, 1).0
}

/// A TCP listener and a UDP socket on loopback, each on a free port.
pub async fn loopback_sockets() -> (TcpListener, UdpSocket) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    (tcp, udp)
}

/// Runs a cluster with `plugin` on `tcp` and `udp` and a command queue of
/// `commands` entries: the running cluster and its handle.
pub fn spawn_cluster(
    tcp: TcpListener,
    udp: UdpSocket,
    mut config: ClusterConfig,
    key: Key,
    plugin: impl Plugin,
    commands: usize,
) -> (RunningCluster, ClusterHandle) {
    let (tcp_addr, udp_addr) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
    let id = *config
        .cluster_id
        .get_or_insert_with(|| rand::rng().next_u64());
    let (handle, command_rx) = cluster::command_channel(commands);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        cluster::run_with_handle(tcp, udp, config, key, plugin, command_rx, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    let cluster = RunningCluster {
        id,
        tcp: tcp_addr,
        udp: udp_addr,
        stop: Some(tx),
        task,
    };
    (cluster, handle)
}

/// Where a master is and its public key: enough for clients. Cheap to clone
/// into tasks.
#[derive(Debug, Clone)]
pub struct MasterInfo {
    pub addr: SocketAddr,
    pub public: sustenet_proto::PublicKey,
}

/// Anything that says where a master is.
pub trait MasterAddr {
    fn info(&self) -> MasterInfo;
}

impl MasterAddr for RunningMaster {
    fn info(&self) -> MasterInfo {
        MasterInfo {
            addr: self.addr,
            public: self.keypair.public(),
        }
    }
}

impl MasterAddr for MasterInfo {
    fn info(&self) -> MasterInfo {
        self.clone()
    }
}

/// The client configuration `client` uses: fast heartbeat and timeout.
pub fn client_config(master: &impl MasterAddr) -> ClientConfig {
    let master = master.info();
    let mut cfg = ClientConfig::new(master.addr.to_string(), master.public);
    cfg.heartbeat = Duration::from_millis(200);
    cfg.timeout = Duration::from_secs(2);
    cfg
}

pub fn client(master: &impl MasterAddr) -> (Client, flume::Receiver<ClientEvent>) {
    Client::spawn(&tokio::runtime::Handle::current(), client_config(master))
}

/// Waits for the first event that `pick` accepts, skipping others.
pub async fn expect<T>(
    events: &flume::Receiver<ClientEvent>,
    what: &str,
    mut pick: impl FnMut(&ClientEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv_async())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|_| panic!("client stopped while waiting for {what}"));
        if let Some(t) = pick(&ev) {
            return t;
        }
        if let ClientEvent::Error(e) = &ev {
            panic!("error while waiting for {what}: {e}");
        }
    }
}

/// Waits until the master lists `n` clusters.
pub async fn wait_for_clusters(master: &impl MasterAddr, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (c, ev) = client(master);
    c.connect().unwrap();
    loop {
        c.list_clusters().unwrap();
        let list = expect(&ev, "cluster list", |e| match e {
            ClientEvent::Clusters(l) => Some(l.clone()),
            _ => None,
        })
        .await;
        if list.len() == n {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "master lists {} clusters, want {n}",
            list.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = c.disconnect();
}

pub fn keys(names: &[&str]) -> HashMap<String, Key> {
    names
        .iter()
        .map(|n| (n.to_string(), Key::generate(&mut rand::rng())))
        .collect()
}

// ---------------------------------------------------------------------------
// More helpers: panics, cluster lists, joined players (raw sockets: raw.rs).
// ---------------------------------------------------------------------------

use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

use sustenet_proto::{ClusterInfo, DisconnectReason, JoinTarget};

static PANICS: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();

/// Counts every panic in this test binary from now on, on any thread. A
/// server's `JoinSet` swallows a panicking connection task, so "the server
/// task is still running" alone would not show one; this does.
pub fn count_panics() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

/// Panics seen since [`count_panics`].
pub fn panics() -> usize {
    PANICS.load(Ordering::SeqCst)
}

/// A master with a fresh keypair, the given cluster keys and `master_config()`.
pub async fn start_master(keys: &HashMap<String, Key>) -> RunningMaster {
    start_master_on(
        "127.0.0.1:0",
        MasterKeypair::generate().unwrap(),
        keys.clone(),
        master_config(),
    )
    .await
}

/// Polls the master's cluster list until `pred` accepts it; returns that list.
pub async fn wait_for_list(
    master: &impl MasterAddr,
    what: &str,
    mut pred: impl FnMut(&[ClusterInfo]) -> bool,
) -> Vec<ClusterInfo> {
    let deadline = tokio::time::Instant::now() + GUARD;
    let (c, ev) = client(master);
    c.connect().unwrap();
    loop {
        c.list_clusters().unwrap();
        let list = expect(&ev, "cluster list", |e| match e {
            ClientEvent::Clusters(l) => Some(l.clone()),
            _ => None,
        })
        .await;
        if pred(&list) {
            let _ = c.disconnect();
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the cluster list to show {what}; last: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The master's cluster list right now.
pub async fn list_clusters(master: &impl MasterAddr) -> Vec<ClusterInfo> {
    wait_for_list(master, "anything", |_| true).await
}

/// A client that joined a cluster.
pub struct Player {
    pub client: Client,
    pub events: flume::Receiver<ClientEvent>,
    pub cluster: ClusterInfo,
    pub id: u64,
}

impl Player {
    /// Sends a reliable ECHO and waits for the same payload to come back.
    pub async fn echo(&self, payload: &[u8]) {
        self.client.send(EchoChat::ECHO, payload.to_vec()).unwrap();
        expect(&self.events, "reliable echo", |e| match e {
            ClientEvent::Packet {
                command: EchoChat::ECHO,
                payload: p,
                reliable: true,
            } if p == payload => Some(()),
            ClientEvent::Disconnected { reason, message } => {
                panic!("disconnected while waiting for an echo: {reason} {message}")
            }
            _ => None,
        })
        .await;
    }

    /// Sends unreliable ECHO probes until one comes back: the cluster then
    /// knows this client's UDP address.
    pub async fn udp_up(&self) {
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no unreliable echo came back"
            );
            self.client
                .send_unreliable(EchoChat::ECHO, b"probe".to_vec())
                .unwrap();
            let wait = tokio::time::Instant::now() + Duration::from_millis(100);
            while let Ok(Ok(ev)) = tokio::time::timeout_at(wait, self.events.recv_async()).await {
                if let ClientEvent::Packet {
                    reliable: false, ..
                } = ev
                {
                    return;
                }
            }
        }
    }

    /// Waits for the cluster connection to end; returns the reason.
    pub async fn disconnected(&self) -> (DisconnectReason, String) {
        expect(&self.events, "disconnected", |e| match e {
            ClientEvent::Disconnected { reason, message } => Some((*reason, message.clone())),
            _ => None,
        })
        .await
    }
}

/// Logs in as `name` and joins `target`; `Err` carries a JoinFailed.
pub async fn try_join(
    master: &impl MasterAddr,
    name: &str,
    target: JoinTarget,
) -> Result<
    Player,
    (
        DisconnectReason,
        String,
        Client,
        flume::Receiver<ClientEvent>,
    ),
> {
    try_join_with(client_config(master), name, target).await
}

/// [`try_join`] with a given client configuration.
pub async fn try_join_with(
    config: ClientConfig,
    name: &str,
    target: JoinTarget,
) -> Result<
    Player,
    (
        DisconnectReason,
        String,
        Client,
        flume::Receiver<ClientEvent>,
    ),
> {
    let (c, ev) = Client::spawn(&tokio::runtime::Handle::current(), config);
    c.login(name, b"".to_vec()).unwrap();
    let id = expect(&ev, "login", |e| match e {
        ClientEvent::LoginSucceeded { client_id } => Some(*client_id),
        _ => None,
    })
    .await;
    c.join(target).unwrap();
    let r = expect(&ev, "joined or join failed", |e| match e {
        ClientEvent::Joined { cluster, player_id } => Some(Ok((cluster.clone(), *player_id))),
        ClientEvent::JoinFailed { reason, message } => Some(Err((*reason, message.clone()))),
        _ => None,
    })
    .await;
    match r {
        Ok((cluster, player_id)) => {
            assert_eq!(player_id, id);
            Ok(Player {
                client: c,
                events: ev,
                cluster,
                id,
            })
        }
        Err((reason, message)) => Err((reason, message, c, ev)),
    }
}

/// Logs in as `name` and joins `target`; panics if the join fails.
pub async fn join(master: &impl MasterAddr, name: &str, target: JoinTarget) -> Player {
    match try_join(master, name, target).await {
        Ok(p) => p,
        Err((reason, message, ..)) => panic!("join of {name} failed: {reason} {message}"),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}
