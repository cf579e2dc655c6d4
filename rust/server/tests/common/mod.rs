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
pub async fn start_cluster_with(mut config: ClusterConfig, key: Key) -> RunningCluster {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (tcp_addr, udp_addr) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
    let id = *config
        .cluster_id
        .get_or_insert_with(|| rand::rng().next_u64());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        cluster::run(tcp, udp, config, key, EchoChat, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    RunningCluster {
        id,
        tcp: tcp_addr,
        udp: udp_addr,
        stop: Some(tx),
        task,
    }
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
// More helpers: panics, cluster lists, joined players, raw sockets.
// ---------------------------------------------------------------------------

use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

use sustenet_net::{FrameReader, SealedReader, SealedWriter, write_frame};
use sustenet_proto::crypto::{StreamOpener, StreamSealer};
use sustenet_proto::handshake::{self, ClientMasterInitiator};
use sustenet_proto::{
    ClientSessionKeys, ClientToCluster, ClientToMaster, ClusterInfo, ClusterToClient, ConnectToken,
    DisconnectReason, Goodbye, HandshakeError, JoinTarget, MasterToClient, Message, PublicKey,
    Ticket,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

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

/// A connect token made by hand with a cluster's key; returns the sealed
/// token and its session secret.
pub fn craft_token(
    key: &Key,
    cluster_id: u64,
    client_id: u64,
    expires_at_ms: u64,
) -> (Vec<u8>, [u8; 32]) {
    let mut rng = rand::rng();
    let mut token_id = [0u8; 16];
    rng.fill_bytes(&mut token_id);
    let mut session_secret = [0u8; 32];
    rng.fill_bytes(&mut session_secret);
    let t = ConnectToken {
        client_id,
        cluster_id,
        token_id,
        expires_at_ms,
        session_secret: session_secret.into(),
        user_data: b"crafted".to_vec(),
    };
    (t.seal(key, &mut rng).unwrap(), session_secret)
}

/// A raw TCP connection speaking frames.
pub struct Raw {
    pub frames: FrameReader<OwnedReadHalf>,
    pub wr: OwnedWriteHalf,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let (rd, wr) = s.into_split();
        Raw {
            frames: FrameReader::new(rd, 16 * 1024 * 1024),
            wr,
        }
    }

    /// Writes one frame.
    pub async fn send(&mut self, body: &[u8]) {
        write_frame(&mut self.wr, body, usize::MAX).await.unwrap();
    }

    /// Writes raw bytes; `false` if the peer already closed.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> bool {
        self.wr.write_all(bytes).await.is_ok()
    }

    /// The next frame; `None` when the peer closed (or reset) the connection.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        match tokio::time::timeout(GUARD, self.frames.next()).await {
            Err(_) => panic!("no frame and no close within {GUARD:?}"),
            Ok(Ok(Some(f))) => Some(f.to_vec()),
            Ok(Ok(None) | Err(_)) => None,
        }
    }

    /// The next frame, which must be a plaintext refusal; returns what it says.
    pub async fn refusal(&mut self) -> HandshakeError {
        let f = self
            .recv()
            .await
            .expect("the server closed without a refusal");
        handshake::check_refusal(&f).expect("the answer is not a refusal")
    }

    /// Waits until the peer closes; returns the frames that came before.
    pub async fn closed(&mut self) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        while let Some(f) = self.recv().await {
            got.push(f);
        }
        got
    }
}

/// The reason a refusal carries.
pub fn refusal_reason(e: &HandshakeError) -> DisconnectReason {
    e.reason()
}

/// A client-cluster session done by hand over a raw TCP connection.
pub struct RawPlayer {
    pub raw: Raw,
    pub sealer: StreamSealer,
    pub opener: StreamOpener,
    pub keys: ClientSessionKeys,
    pub player_id: u64,
    pub session_id: u64,
    pub udp_port: u16,
}

impl RawPlayer {
    /// Presents `token` to the cluster at `addr`; `Err` is the refusal.
    pub async fn connect(
        addr: SocketAddr,
        token: &[u8],
        secret: &[u8; 32],
    ) -> Result<RawPlayer, HandshakeError> {
        let (hello, init) = handshake::client_cluster_hello(token, secret).unwrap();
        let mut raw = Raw::connect(addr).await;
        raw.send(&hello).await;
        let accept = raw
            .recv()
            .await
            .expect("the cluster closed during the handshake");
        let (keys, session) = init.handle_accept(&accept)?;
        let first = raw
            .recv()
            .await
            .expect("the cluster closed before its Welcome");
        let mut opener = session.opener;
        let plain = opener.open(&first).unwrap();
        let ClusterToClient::Welcome {
            player_id,
            session_id,
            udp_port,
        } = ClusterToClient::decode(&plain).unwrap()
        else {
            panic!("expected Welcome");
        };
        Ok(RawPlayer {
            raw,
            sealer: session.sealer,
            opener,
            keys,
            player_id,
            session_id,
            udp_port,
        })
    }

    /// Seals a message into a frame body (not sent).
    pub fn seal(&mut self, msg: &ClientToCluster) -> Vec<u8> {
        let mut plain = Vec::new();
        msg.encode(&mut plain).unwrap();
        self.sealer.seal(&plain).unwrap()
    }

    /// Seals and sends a message.
    pub async fn send(&mut self, msg: &ClientToCluster) {
        let f = self.seal(msg);
        self.raw.send(&f).await;
    }

    /// The next message from the cluster, answering its pings on the way;
    /// `None` when the connection closed.
    pub async fn recv(&mut self) -> Option<ClusterToClient> {
        loop {
            let f = self.raw.recv().await?;
            let plain = self.opener.open(&f).unwrap();
            match ClusterToClient::decode(&plain).unwrap() {
                ClusterToClient::Ping(v) => self.send(&ClientToCluster::Pong(v)).await,
                m => return Some(m),
            }
        }
    }

    /// The next data message (ECHO replies, chat).
    pub async fn recv_data(&mut self) -> (u16, Vec<u8>) {
        loop {
            match self.recv().await {
                Some(ClusterToClient::Data { command, payload }) => return (command, payload),
                Some(ClusterToClient::Pong(_)) => {}
                other => panic!("expected data, got {other:?}"),
            }
        }
    }
}

/// A client-master session done by hand (for tickets that are never used).
pub struct RawMasterClient {
    pub reader: SealedReader<OwnedReadHalf>,
    pub writer: SealedWriter<OwnedWriteHalf>,
}

impl RawMasterClient {
    pub async fn connect(addr: SocketAddr, key: &PublicKey) -> Result<Self, HandshakeError> {
        let (init, hello) = ClientMasterInitiator::start(key).unwrap();
        let mut raw = Raw::connect(addr).await;
        raw.send(&hello).await;
        let reply = raw
            .recv()
            .await
            .expect("the master closed during the handshake");
        let session = init.handle_reply(&reply)?;
        Ok(Self {
            reader: SealedReader::new(raw.frames, session.opener, 16),
            writer: SealedWriter::new(raw.wr, session.sealer, 64 * 1024),
        })
    }

    /// The next message from the master, skipping its pings.
    pub async fn recv(&mut self) -> MasterToClient {
        loop {
            let m = tokio::time::timeout(GUARD, self.reader.recv::<MasterToClient>())
                .await
                .expect("no answer from the master")
                .unwrap()
                .expect("the master closed the connection");
            match m {
                MasterToClient::Ping(v) => {
                    self.writer.send(&ClientToMaster::Pong(v)).await.unwrap()
                }
                m => return m,
            }
        }
    }

    pub async fn login(&mut self, name: &str) -> u64 {
        self.writer
            .send(&ClientToMaster::Login {
                username: name.into(),
                secret: vec![],
            })
            .await
            .unwrap();
        match self.recv().await {
            MasterToClient::LoginOk { client_id } => client_id,
            other => panic!("expected LoginOk, got {other:?}"),
        }
    }

    pub async fn join(&mut self, target: JoinTarget) -> Result<Ticket, Goodbye> {
        self.writer
            .send(&ClientToMaster::Join(target))
            .await
            .unwrap();
        match self.recv().await {
            MasterToClient::Ticket(t) => Ok(t),
            MasterToClient::JoinFailed(g) => Err(g),
            other => panic!("expected a ticket, got {other:?}"),
        }
    }
}

use sustenet_proto::handshake::ClusterInitiator;
use sustenet_proto::{ClusterToMaster, MasterToCluster, Register};

/// A cluster registered by hand with a valid key, speaking raw messages.
pub struct HandCluster {
    pub reader: SealedReader<tokio::net::tcp::OwnedReadHalf>,
    pub writer: SealedWriter<tokio::net::tcp::OwnedWriteHalf>,
}

impl HandCluster {
    /// Registers `id` with the master at `addr`; panics unless `Registered`.
    pub async fn register(addr: SocketAddr, key_name: &str, key: Key, id: u64) -> Self {
        match Self::try_register(addr, key_name, key, id).await {
            Ok(me) => me,
            Err(other) => panic!("expected Registered, got {other:?}"),
        }
    }

    /// Registers `id`; `Err` is the master's answer when it is not `Registered`.
    pub async fn try_register(
        addr: SocketAddr,
        key_name: &str,
        key: Key,
        id: u64,
    ) -> Result<Self, Option<MasterToCluster>> {
        let mut raw = Raw::connect(addr).await;
        let (init, hello) = ClusterInitiator::start(key_name, key, &mut rand::rng()).unwrap();
        raw.send(&hello).await;
        let challenge = raw.recv().await.expect("no challenge");
        let session = init.handle_challenge(&challenge).unwrap();
        let mut writer = SealedWriter::new(raw.wr, session.sealer, 64 * 1024);
        writer
            .send(&ClusterToMaster::Register(Register {
                cluster_id: id,
                name: format!("Hand {id}"),
                address: "127.0.0.1".into(),
                tcp_port: 1,
                udp_port: 1,
                capacity: 0,
            }))
            .await
            .unwrap();
        let mut me = Self {
            reader: SealedReader::new(raw.frames, session.opener, 16),
            writer,
        };
        match tokio::time::timeout(GUARD, me.reader.recv::<MasterToCluster>()).await {
            Ok(Ok(Some(MasterToCluster::Registered { cluster_id }))) if cluster_id == id => Ok(me),
            Ok(Ok(other)) => Err(other),
            Ok(Err(_)) => Err(None),
            Err(_) => panic!("no answer to a registration"),
        }
    }

    /// The next message from the master, answering its pings.
    pub async fn recv(&mut self) -> MasterToCluster {
        loop {
            let m = tokio::time::timeout(GUARD, self.reader.recv::<MasterToCluster>())
                .await
                .expect("no answer from the master")
                .unwrap()
                .expect("the master closed the link");
            match m {
                MasterToCluster::Ping(v) => {
                    self.writer.send(&ClusterToMaster::Pong(v)).await.unwrap()
                }
                m => return m,
            }
        }
    }

    /// Asks for a transfer ticket; returns the answer.
    pub async fn transfer(&mut self, client_id: u64, target: u64) -> MasterToCluster {
        self.writer
            .send(&ClusterToMaster::Transfer {
                request_id: 1,
                client_id,
                target,
                user_data: vec![],
            })
            .await
            .unwrap();
        self.recv().await
    }
}
