//! Test harness: a master and clusters on loopback port 0, and clients.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sustenet_client::{Client, ClientConfig, ClientEvent};
use sustenet_proto::{Key, MasterKeypair};
use sustenet_server::cluster::{self, ClusterConfig};
use sustenet_server::master::{self, MasterConfig, MasterKeys};
use sustenet_server::{AllowAll, EchoChat, Limits};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

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
    /// Kills the master without goodbyes.
    pub fn kill(self) {
        self.task.abort();
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
    let keys = MasterKeys {
        keypair: keypair.clone(),
        cluster_keys,
    };
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
    /// Kills the cluster without goodbyes: its sockets close, nothing is said.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

pub async fn start_cluster(
    master: SocketAddr,
    name: &str,
    key_name: &str,
    key: Key,
    max: u32,
) -> RunningCluster {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (tcp_addr, udp_addr) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
    let config = ClusterConfig {
        name: name.into(),
        public_address: "127.0.0.1".into(),
        max_connections: max,
        master_addr: master.to_string(),
        key_name: key_name.into(),
        status_interval: Duration::from_millis(200),
        reconnect_max: Duration::from_millis(500),
        limits: fast_limits(),
        ..ClusterConfig::default()
    };
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        cluster::run(tcp, udp, config, key, EchoChat, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    RunningCluster {
        tcp: tcp_addr,
        udp: udp_addr,
        stop: Some(tx),
        task,
    }
}

pub fn client(master: &RunningMaster) -> (Client, flume::Receiver<ClientEvent>) {
    let mut cfg = ClientConfig::new(master.addr.to_string(), master.keypair.public());
    cfg.heartbeat = Duration::from_millis(200);
    cfg.timeout = Duration::from_secs(2);
    Client::spawn(&tokio::runtime::Handle::current(), cfg)
}

/// Waits for the first event that `pick` accepts, skipping others.
pub async fn expect<T>(
    events: &flume::Receiver<ClientEvent>,
    what: &str,
    mut pick: impl FnMut(&ClientEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
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
pub async fn wait_for_clusters(master: &RunningMaster, n: usize) {
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
