//! The Sustenet client driver: commands in, events out.
//!
//! [`Client::spawn`] starts one tokio task that talks to the master and then
//! to a cluster. The game (or the Godot node wrapping it) sends commands
//! through the [`Client`] handle, which never blocks, and drains
//! [`ClientEvent`]s from a `flume` receiver whenever it likes, for example
//! once per frame. No engine object ever enters the task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sustenet_net::{FrameReader, NetError, SealedReader, SealedWriter, write_frame};
use sustenet_proto::crypto::{DatagramOpener, DatagramSealer, NOISE_MAX_PLAINTEXT};
use sustenet_proto::datagram::{self, MAX_DATAGRAM, MAX_UNRELIABLE_PAYLOAD, Record};
use sustenet_proto::handshake::{self, ClientMasterInitiator};
use sustenet_proto::{
    ClientSessionKeys, ClientToCluster, ClientToMaster, ClusterInfo, ClusterToClient,
    DisconnectReason, Goodbye, HandshakeError, JoinTarget, MasterToClient, Message, PublicKey,
    Side, Ticket,
};
use thiserror::Error;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tracing::{debug, info, warn};

pub use sustenet_proto::datagram::MAX_UNRELIABLE_PAYLOAD as UNRELIABLE_LIMIT;

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
        }
    }
}

/// What went wrong, as the game sees it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    /// The master could not be reached.
    #[error("cannot reach the master at {addr}: {message}")]
    MasterUnreachable {
        /// The address tried.
        addr: String,
        /// The system's message.
        message: String,
    },
    /// The cluster could not be reached.
    #[error("cannot reach the cluster at {addr}: {message}")]
    ClusterUnreachable {
        /// The address tried.
        addr: String,
        /// The system's message.
        message: String,
    },
    /// The handshake failed in another way (timeout, malformed answer).
    #[error("{0}")]
    Handshake(String),
    /// The server refused the connection before any session, with a reason
    /// code (for example `ServerFull` or `TooManyHandshakes`).
    #[error("the server refused the connection: {reason} ({message})")]
    Refused {
        /// Why.
        reason: DisconnectReason,
        /// The server's explanation.
        message: String,
    },
    /// The master public key the client has does not match the master.
    #[error("the master rejected the handshake: the master public key this client uses is wrong")]
    WrongMasterKey,
    /// The other side speaks another protocol version.
    #[error("protocol version mismatch: this client speaks {ours}, the server speaks {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u16,
        /// The server's version.
        theirs: u16,
    },
    /// The command needs a cluster connection and there is none.
    #[error("not connected to a cluster: join one first")]
    NotInCluster,
    /// The command needs a login first.
    #[error("not logged in: call login first")]
    NotLoggedIn,
    /// The payload is over the channel's limit (the datagram limit for
    /// unreliable messages, the frame limit for reliable ones).
    #[error("payload of {len} bytes is over the limit of {max} for this channel")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The command queue is full or the client task stopped.
    #[error("the client is not running or its command queue is full")]
    Stopped,
    /// Anything else on the connection.
    #[error("{0}")]
    Connection(String),
}

impl From<HandshakeError> for ClientError {
    fn from(e: HandshakeError) -> Self {
        match e {
            HandshakeError::WrongMasterKey => ClientError::WrongMasterKey,
            HandshakeError::VersionMismatch { ours, theirs } => {
                ClientError::VersionMismatch { ours, theirs }
            }
            HandshakeError::Rejected { reason, message } => {
                ClientError::Refused { reason, message }
            }
            other => ClientError::Handshake(other.to_string()),
        }
    }
}

/// What the client tells the game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Connected to the master (handshake done).
    MasterConnected,
    /// The login was accepted.
    LoginSucceeded {
        /// The client's id; it is also the player id on clusters.
        client_id: u64,
    },
    /// The login was refused.
    LoginFailed {
        /// Why, as the master put it.
        message: String,
    },
    /// The cluster list.
    Clusters(Vec<ClusterInfo>),
    /// A join did not work (the master or the cluster refused).
    JoinFailed {
        /// Why.
        reason: DisconnectReason,
        /// Details.
        message: String,
    },
    /// Connected to a cluster and ready to play.
    Joined {
        /// The cluster.
        cluster: ClusterInfo,
        /// The player id on it.
        player_id: u64,
    },
    /// A packet from the cluster.
    Packet {
        /// The game's command number.
        command: u16,
        /// The payload.
        payload: Vec<u8>,
        /// True if it came on the reliable channel.
        reliable: bool,
    },
    /// The cluster moved this player to another cluster; a `Joined` follows.
    Redirected {
        /// The new cluster.
        cluster: ClusterInfo,
    },
    /// The cluster connection ended.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// Details.
        message: String,
    },
    /// The master connection ended while it was still needed.
    MasterDisconnected {
        /// Why.
        reason: DisconnectReason,
        /// Details.
        message: String,
    },
    /// Something failed; the message says what to do.
    Error(ClientError),
}

#[derive(Debug)]
enum Command {
    Connect,
    Login { username: String, secret: Vec<u8> },
    ListClusters,
    Join(JoinTarget),
    Send { command: u16, payload: Vec<u8> },
    SendUnreliable { command: u16, payload: Vec<u8> },
    Leave,
    Disconnect,
}

/// Round-trip times measured by the heartbeats, in microseconds (0 = not yet).
#[derive(Debug, Default)]
pub struct Rtt {
    reliable_us: AtomicU64,
    unreliable_us: AtomicU64,
}

impl Rtt {
    /// Last round trip on the reliable channel.
    pub fn reliable(&self) -> Duration {
        Duration::from_micros(self.reliable_us.load(Ordering::Relaxed))
    }
    /// Last round trip on the unreliable channel.
    pub fn unreliable(&self) -> Duration {
        Duration::from_micros(self.unreliable_us.load(Ordering::Relaxed))
    }
}

/// The handle: sends commands to the client task. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct Client {
    tx: flume::Sender<Command>,
    rtt: Arc<Rtt>,
    max_reliable: usize,
}

impl Client {
    /// Starts a client task on `runtime`; returns the handle and the events.
    /// The task ends when every handle is dropped.
    pub fn spawn(
        runtime: &tokio::runtime::Handle,
        config: ClientConfig,
    ) -> (Client, flume::Receiver<ClientEvent>) {
        let (tx, rx) = flume::bounded(config.command_queue.max(1));
        let (ev_tx, ev_rx) = flume::bounded(config.event_queue.max(1));
        let rtt = Arc::new(Rtt::default());
        let max_reliable = config
            .max_frame
            .saturating_sub(sustenet_proto::message::RELIABLE_OVERHEAD);
        let task = Task {
            config,
            events: ev_tx,
            rtt: rtt.clone(),
            master: None,
            cluster: None,
            credentials: None,
            client_id: None,
            pending_join: None,
            epoch: Instant::now(),
        };
        runtime.spawn(task.run(rx));
        (
            Client {
                tx,
                rtt,
                max_reliable,
            },
            ev_rx,
        )
    }

    fn push(&self, c: Command) -> Result<(), ClientError> {
        self.tx.try_send(c).map_err(|_| ClientError::Stopped)
    }

    /// Connects to the master (login does this too).
    pub fn connect(&self) -> Result<(), ClientError> {
        self.push(Command::Connect)
    }
    /// Logs in (connecting first if needed). The credentials are kept so the
    /// client can reconnect to the master on its own later.
    pub fn login(
        &self,
        username: impl Into<String>,
        secret: impl Into<Vec<u8>>,
    ) -> Result<(), ClientError> {
        self.push(Command::Login {
            username: username.into(),
            secret: secret.into(),
        })
    }
    /// Asks for the cluster list; answered with [`ClientEvent::Clusters`].
    pub fn list_clusters(&self) -> Result<(), ClientError> {
        self.push(Command::ListClusters)
    }
    /// Joins a cluster: `JoinTarget::Auto` lets the master pick.
    pub fn join(&self, target: JoinTarget) -> Result<(), ClientError> {
        self.push(Command::Join(target))
    }
    /// Sends a reliable, ordered message to the cluster.
    pub fn send(&self, command: u16, payload: Vec<u8>) -> Result<(), ClientError> {
        if payload.len() > self.max_reliable {
            return Err(ClientError::TooLarge {
                len: payload.len(),
                max: self.max_reliable,
            });
        }
        self.push(Command::Send { command, payload })
    }
    /// Sends an unreliable message (at most [`MAX_UNRELIABLE_PAYLOAD`] bytes).
    pub fn send_unreliable(&self, command: u16, payload: Vec<u8>) -> Result<(), ClientError> {
        if payload.len() > MAX_UNRELIABLE_PAYLOAD {
            return Err(ClientError::TooLarge {
                len: payload.len(),
                max: MAX_UNRELIABLE_PAYLOAD,
            });
        }
        self.push(Command::SendUnreliable { command, payload })
    }
    /// Leaves the cluster (the master login is kept).
    pub fn leave(&self) -> Result<(), ClientError> {
        self.push(Command::Leave)
    }
    /// Closes every connection.
    pub fn disconnect(&self) -> Result<(), ClientError> {
        self.push(Command::Disconnect)
    }
    /// Round-trip times measured by the heartbeats.
    pub fn rtt(&self) -> &Rtt {
        &self.rtt
    }
}

struct MasterConn {
    reader: SealedReader<OwnedReadHalf>,
    writer: SealedWriter<OwnedWriteHalf>,
    last_seen: Instant,
}

struct ClusterConn {
    info: ClusterInfo,
    reader: SealedReader<OwnedReadHalf>,
    writer: SealedWriter<OwnedWriteHalf>,
    udp: UdpSocket,
    udp_sealer: DatagramSealer,
    udp_opener: DatagramOpener,
    last_seen: Instant,
}

struct Task {
    config: ClientConfig,
    events: flume::Sender<ClientEvent>,
    rtt: Arc<Rtt>,
    master: Option<MasterConn>,
    cluster: Option<ClusterConn>,
    credentials: Option<(String, Vec<u8>)>,
    client_id: Option<u64>,
    pending_join: Option<JoinTarget>,
    epoch: Instant,
}

enum Wake {
    Command(Option<Command>),
    Master(Result<Option<MasterToClient>, NetError>),
    Cluster(Result<Option<ClusterToClient>, NetError>),
    Udp(std::io::Result<usize>),
    Tick,
}

async fn recv_master(m: &mut Option<MasterConn>) -> Result<Option<MasterToClient>, NetError> {
    match m {
        Some(m) => m.reader.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_cluster(
    r: Option<&mut SealedReader<OwnedReadHalf>>,
) -> Result<Option<ClusterToClient>, NetError> {
    match r {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_udp(udp: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<usize> {
    match udp {
        Some(u) => u.recv(buf).await,
        None => std::future::pending().await,
    }
}

fn reason_of(e: &NetError) -> DisconnectReason {
    match e {
        NetError::TooManyAuthFailures(_) => DisconnectReason::Tampered,
        NetError::Io(_) | NetError::Truncated => DisconnectReason::ConnectionLost,
        NetError::Timeout(_) => DisconnectReason::Timeout,
        _ => DisconnectReason::ProtocolViolation,
    }
}

impl Task {
    fn micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    async fn emit(&self, e: ClientEvent) {
        // The receiver is gone only when the game dropped it: nothing to tell.
        let _ = self.events.send_async(e).await;
    }

    async fn run(mut self, commands: flume::Receiver<Command>) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = vec![0u8; 2048];
        loop {
            let (reader, udp) = match &mut self.cluster {
                Some(c) => (Some(&mut c.reader), Some(&c.udp)),
                None => (None, None),
            };
            let wake = tokio::select! {
                c = commands.recv_async() => Wake::Command(c.ok()),
                m = recv_master(&mut self.master) => Wake::Master(m),
                c = recv_cluster(reader) => Wake::Cluster(c),
                n = recv_udp(udp, &mut buf) => Wake::Udp(n),
                _ = tick.tick() => Wake::Tick,
            };
            match wake {
                Wake::Command(None) => break,
                Wake::Command(Some(c)) => self.command(c).await,
                Wake::Master(r) => self.master_message(r).await,
                Wake::Cluster(r) => self.cluster_message(r).await,
                Wake::Udp(Ok(n)) => self.datagram(&buf[..n]).await,
                Wake::Udp(Err(e)) => debug!("udp receive failed: {e}"),
                Wake::Tick => self.tick().await,
            }
        }
        self.close_all(DisconnectReason::Requested).await;
    }

    async fn connect_master(&mut self) -> Result<(), ClientError> {
        if self.master.is_some() {
            return Ok(());
        }
        let addr = self.config.master_addr.clone();
        let unreachable = |message: String| ClientError::MasterUnreachable {
            addr: addr.clone(),
            message,
        };
        let t = self.config.handshake_timeout;
        let stream = tokio::time::timeout(t, TcpStream::connect(&addr))
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (rd, mut wr) = stream.into_split();
        let mut frames = FrameReader::new(rd, self.config.max_frame);
        let (init, hello) = ClientMasterInitiator::start(&self.config.master_public_key)?;
        write_frame(&mut wr, &hello, self.config.max_frame)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let reply = frames
            .next_within(t)
            .await
            .map_err(|e| ClientError::Handshake(format!("master handshake: {e}")))?
            .ok_or_else(|| {
                ClientError::Handshake(
                    "the master closed the connection during the handshake".into(),
                )
            })?;
        let session = init.handle_reply(&reply)?;
        self.master = Some(MasterConn {
            reader: SealedReader::new(frames, session.opener, 16),
            writer: SealedWriter::new(
                wr,
                session.sealer,
                self.config.max_frame.min(NOISE_MAX_PLAINTEXT),
            )
            .with_write_timeout(self.config.timeout),
            last_seen: Instant::now(),
        });
        info!(addr = %self.config.master_addr, "connected to the master");
        self.emit(ClientEvent::MasterConnected).await;
        Ok(())
    }

    async fn send_master(&mut self, m: ClientToMaster) -> Result<(), ClientError> {
        let Some(conn) = self.master.as_mut() else {
            return Err(ClientError::Connection(
                "not connected to the master".into(),
            ));
        };
        if let Err(e) = conn.writer.send(&m).await {
            self.master = None;
            return Err(ClientError::Connection(format!("lost the master: {e}")));
        }
        Ok(())
    }

    /// Connects and logs in again with the kept credentials if the master
    /// link was closed (after a join, the master link is not kept).
    async fn ensure_master(&mut self) -> Result<(), ClientError> {
        if self.master.is_some() {
            return Ok(());
        }
        self.connect_master().await?;
        if let Some((u, s)) = self.credentials.clone() {
            self.client_id = None;
            self.send_master(ClientToMaster::Login {
                username: u,
                secret: s,
            })
            .await?;
        }
        Ok(())
    }

    async fn command(&mut self, c: Command) {
        let r = match c {
            Command::Connect => self.connect_master().await,
            Command::Login { username, secret } => {
                self.credentials = Some((username.clone(), secret.clone()));
                match self.connect_master().await {
                    Ok(()) => {
                        self.send_master(ClientToMaster::Login { username, secret })
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            Command::ListClusters => match self.ensure_master().await {
                Ok(()) => self.send_master(ClientToMaster::ListClusters).await,
                Err(e) => Err(e),
            },
            Command::Join(target) => {
                if self.credentials.is_none() {
                    Err(ClientError::NotLoggedIn)
                } else {
                    match self.ensure_master().await {
                        Ok(()) => {
                            self.pending_join = Some(target);
                            self.send_master(ClientToMaster::Join(target)).await
                        }
                        Err(e) => Err(e),
                    }
                }
            }
            Command::Send { command, payload } => match self.cluster.as_mut() {
                None => Err(ClientError::NotInCluster),
                Some(c) => match c
                    .writer
                    .send(&ClientToCluster::Data { command, payload })
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        self.lose_cluster(reason_of(&e), e.to_string()).await;
                        Ok(())
                    }
                },
            },
            Command::SendUnreliable { command, payload } => {
                self.send_datagram(&Record::Data { command, payload })
            }
            Command::Leave => {
                self.leave_cluster(DisconnectReason::Requested, "left the cluster")
                    .await;
                Ok(())
            }
            Command::Disconnect => {
                self.close_all(DisconnectReason::Requested).await;
                Ok(())
            }
        };
        if let Err(e) = r {
            warn!("{e}");
            self.emit(ClientEvent::Error(e)).await;
        }
    }

    fn send_datagram(&mut self, record: &Record) -> Result<(), ClientError> {
        let Some(c) = self.cluster.as_mut() else {
            return Err(ClientError::NotInCluster);
        };
        let plain = datagram::single(record).map_err(|e| match e {
            datagram::DatagramError::TooLarge { len, max } => ClientError::TooLarge { len, max },
        })?;
        let d = c
            .udp_sealer
            .seal(&plain)
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        // Unreliable: a full socket buffer drops it, as the network would.
        let _ = c.udp.try_send(&d);
        Ok(())
    }

    async fn master_message(&mut self, r: Result<Option<MasterToClient>, NetError>) {
        let msg = match r {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.drop_master(
                    DisconnectReason::ConnectionLost,
                    "the master closed the connection".into(),
                )
                .await;
                return;
            }
            Err(e) => {
                self.drop_master(reason_of(&e), e.to_string()).await;
                return;
            }
        };
        if let Some(m) = self.master.as_mut() {
            m.last_seen = Instant::now();
        }
        match msg {
            MasterToClient::Ping(v) => {
                let _ = self.send_master(ClientToMaster::Pong(v)).await;
            }
            MasterToClient::Pong(_) => {}
            MasterToClient::Disconnect(g) => self.drop_master(g.reason, g.message).await,
            MasterToClient::LoginOk { client_id } => {
                self.client_id = Some(client_id);
                self.emit(ClientEvent::LoginSucceeded { client_id }).await;
            }
            MasterToClient::LoginFailed { message } => {
                self.credentials = None;
                self.emit(ClientEvent::LoginFailed { message }).await;
            }
            MasterToClient::ClusterList(list) => self.emit(ClientEvent::Clusters(list)).await,
            MasterToClient::Ticket(t) => {
                self.pending_join = None;
                if self.cluster.is_some() {
                    self.leave_cluster(DisconnectReason::Requested, "joining another cluster")
                        .await;
                }
                self.join_with(t, false).await;
            }
            MasterToClient::JoinFailed(g) => {
                self.pending_join = None;
                self.emit(ClientEvent::JoinFailed {
                    reason: g.reason,
                    message: g.message,
                })
                .await;
            }
        }
    }

    /// The master link ended. It is only news to the game while the client
    /// still needs the master (not yet in a cluster).
    async fn drop_master(&mut self, reason: DisconnectReason, message: String) {
        if self.master.take().is_none() {
            return;
        }
        self.client_id = None;
        if self.cluster.is_none() {
            info!("master connection ended: {reason} {message}");
            self.emit(ClientEvent::MasterDisconnected { reason, message })
                .await;
        } else {
            debug!("master connection ended while in a cluster: {reason} {message}");
        }
    }

    async fn join_with(&mut self, t: Ticket, redirected: bool) {
        match self.connect_cluster(t).await {
            Ok(conn) => {
                let info = conn.info.clone();
                self.cluster = Some(conn);
                // Tell the cluster our UDP address right away.
                let _ = self.send_datagram(&Record::Ping(self.micros()));
                if let Some(mut m) = self.master.take() {
                    // The master is not needed while playing; a later
                    // list or join reconnects with the kept credentials.
                    let _ = m
                        .writer
                        .send(&ClientToMaster::Disconnect(Goodbye {
                            reason: DisconnectReason::Requested,
                            message: "joined a cluster".into(),
                        }))
                        .await;
                }
                let player_id = self.client_id.unwrap_or_default();
                if redirected {
                    self.emit(ClientEvent::Redirected {
                        cluster: info.clone(),
                    })
                    .await;
                }
                self.emit(ClientEvent::Joined {
                    cluster: info,
                    player_id,
                })
                .await;
            }
            Err((reason, message)) => {
                warn!("join failed: {reason} {message}");
                self.emit(ClientEvent::JoinFailed { reason, message }).await;
            }
        }
    }

    async fn connect_cluster(
        &mut self,
        t: Ticket,
    ) -> Result<ClusterConn, (DisconnectReason, String)> {
        let addr = format!("{}:{}", t.cluster.address, t.cluster.tcp_port);
        let lost = |m: String| {
            (
                DisconnectReason::ConnectionLost,
                format!("cannot reach the cluster at {addr}: {m}"),
            )
        };
        let to = self.config.handshake_timeout;
        let stream = tokio::time::timeout(to, TcpStream::connect(&addr))
            .await
            .map_err(|_| lost("timed out".into()))?
            .map_err(|e| lost(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().map_err(|e| lost(e.to_string()))?;
        let (rd, mut wr) = stream.into_split();
        let mut frames = FrameReader::new(rd, self.config.max_frame);
        let keys = ClientSessionKeys::derive(&t.session_secret);
        let (hello, session) = handshake::client_cluster_hello(&t.token, &keys)
            .map_err(|e| (e.reason(), e.to_string()))?;
        write_frame(&mut wr, &hello, self.config.max_frame)
            .await
            .map_err(|e| lost(e.to_string()))?;
        let first = frames
            .next_within(to)
            .await
            .map_err(|e| lost(e.to_string()))?
            .ok_or_else(|| lost("closed during the handshake".into()))?;
        if let Some(refusal) = handshake::check_refusal(&first) {
            return Err((refusal.reason(), refusal.to_string()));
        }
        let mut opener = session.opener;
        let plain = opener
            .open(&first)
            .map_err(|e| (DisconnectReason::ProtocolViolation, e.to_string()))?;
        let (player_id, session_id, udp_port) = match ClusterToClient::decode(&plain) {
            Ok(ClusterToClient::Welcome {
                player_id,
                session_id,
                udp_port,
            }) => (player_id, session_id, udp_port),
            Ok(other) => {
                return Err((
                    DisconnectReason::ProtocolViolation,
                    format!("expected Welcome, got {other:?}"),
                ));
            }
            Err(e) => return Err((DisconnectReason::ProtocolViolation, e.to_string())),
        };
        if player_id != t.client_id {
            return Err((
                DisconnectReason::ProtocolViolation,
                "the cluster gave another player id".into(),
            ));
        }
        let bind: SocketAddr = if peer.is_ipv6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([0u8; 4], 0))
        };
        let udp = UdpSocket::bind(bind)
            .await
            .map_err(|e| lost(e.to_string()))?;
        udp.connect(SocketAddr::new(peer.ip(), udp_port))
            .await
            .map_err(|e| lost(e.to_string()))?;
        let dg = keys.datagram(Side::Initiator, session_id);
        self.client_id = Some(player_id);
        info!(cluster = %t.cluster.name, player_id, "joined the cluster");
        Ok(ClusterConn {
            info: t.cluster,
            reader: SealedReader::new(frames, opener, 16),
            writer: SealedWriter::new(wr, session.sealer, self.config.max_frame)
                .with_write_timeout(self.config.timeout),
            udp,
            udp_sealer: dg.sealer,
            udp_opener: dg.opener,
            last_seen: Instant::now(),
        })
    }

    async fn cluster_message(&mut self, r: Result<Option<ClusterToClient>, NetError>) {
        let msg = match r {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.lose_cluster(
                    DisconnectReason::ConnectionLost,
                    "the cluster closed the connection".into(),
                )
                .await;
                return;
            }
            Err(e) => {
                self.lose_cluster(reason_of(&e), e.to_string()).await;
                return;
            }
        };
        let now = self.micros();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        c.last_seen = Instant::now();
        match msg {
            ClusterToClient::Ping(v) => {
                if let Err(e) = c.writer.send(&ClientToCluster::Pong(v)).await {
                    self.lose_cluster(reason_of(&e), e.to_string()).await;
                }
            }
            ClusterToClient::Pong(v) => {
                self.rtt
                    .reliable_us
                    .store(now.saturating_sub(v), Ordering::Relaxed);
            }
            ClusterToClient::Data { command, payload } => {
                self.emit(ClientEvent::Packet {
                    command,
                    payload,
                    reliable: true,
                })
                .await;
            }
            ClusterToClient::Welcome { .. } => {
                self.lose_cluster(
                    DisconnectReason::ProtocolViolation,
                    "a second Welcome".into(),
                )
                .await;
            }
            ClusterToClient::Disconnect(g) => {
                self.cluster = None;
                info!(
                    "the cluster closed the connection: {} {}",
                    g.reason, g.message
                );
                self.emit(ClientEvent::Disconnected {
                    reason: g.reason,
                    message: g.message,
                })
                .await;
            }
            ClusterToClient::Redirect(t) => {
                self.cluster = None;
                info!(to = %t.cluster.name, "redirected to another cluster");
                self.join_with(t, true).await;
            }
        }
    }

    async fn datagram(&mut self, d: &[u8]) {
        if d.len() > MAX_DATAGRAM {
            return;
        }
        let now = self.micros();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Ok(plain) = c.udp_opener.open(d) else {
            return;
        };
        let Ok(records) = datagram::decode_records(&plain) else {
            return;
        };
        for r in records {
            match r {
                Record::Data { command, payload } => {
                    // Unreliable: when the game is behind, drop rather than wait.
                    let _ = self.events.try_send(ClientEvent::Packet {
                        command,
                        payload,
                        reliable: false,
                    });
                }
                Record::Pong(v) => self
                    .rtt
                    .unreliable_us
                    .store(now.saturating_sub(v), Ordering::Relaxed),
                Record::Ping(_) => {}
            }
        }
    }

    async fn tick(&mut self) {
        let now = self.micros();
        let timeout = self.config.timeout;
        if let Some(m) = self.master.as_mut() {
            if m.last_seen.elapsed() > timeout {
                self.drop_master(
                    DisconnectReason::Timeout,
                    "the master stopped responding".into(),
                )
                .await;
            } else if let Err(e) = m.writer.send(&ClientToMaster::Ping(now)).await {
                self.drop_master(reason_of(&e), e.to_string()).await;
            }
        }
        if let Some(c) = self.cluster.as_mut() {
            if c.last_seen.elapsed() > timeout {
                self.lose_cluster(
                    DisconnectReason::Timeout,
                    "the cluster stopped responding".into(),
                )
                .await;
                return;
            }
            if let Err(e) = c.writer.send(&ClientToCluster::Ping(now)).await {
                self.lose_cluster(reason_of(&e), e.to_string()).await;
                return;
            }
            let _ = self.send_datagram(&Record::Ping(now));
        }
    }

    async fn lose_cluster(&mut self, reason: DisconnectReason, message: String) {
        if self.cluster.take().is_some() {
            info!("lost the cluster: {reason} {message}");
            self.emit(ClientEvent::Disconnected { reason, message })
                .await;
        }
    }

    async fn leave_cluster(&mut self, reason: DisconnectReason, message: &str) {
        if let Some(mut c) = self.cluster.take() {
            let _ = c
                .writer
                .send(&ClientToCluster::Disconnect(Goodbye {
                    reason,
                    message: message.into(),
                }))
                .await;
            let _ = c.writer.shutdown().await;
            self.emit(ClientEvent::Disconnected {
                reason,
                message: message.into(),
            })
            .await;
        }
    }

    async fn close_all(&mut self, reason: DisconnectReason) {
        self.leave_cluster(reason, "disconnected").await;
        if let Some(mut m) = self.master.take() {
            let _ = m
                .writer
                .send(&ClientToMaster::Disconnect(Goodbye::new(reason)))
                .await;
            let _ = m.writer.shutdown().await;
        }
        self.client_id = None;
    }
}
