//! The Sustenet client driver: commands in, events out.
//!
//! [`Client::spawn`] starts one tokio task that talks to the master and then
//! to a cluster. The game (or the Godot node wrapping it) sends commands
//! through the [`Client`] handle, which never blocks, and drains
//! [`ClientEvent`]s from a `flume` receiver whenever it likes, for example
//! once per frame. No engine object ever enters the task.

use std::net::SocketAddr;

use rand::{Rng, RngCore};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sustenet_net::{FrameReader, NetError, SealedReader, SealedWriter, write_frame};
use sustenet_proto::crypto::{DatagramOpener, DatagramSealer, NOISE_MAX_PLAINTEXT};
use sustenet_proto::datagram::{self, MAX_DATAGRAM, MAX_UNRELIABLE_PAYLOAD, Record};
use sustenet_proto::handshake::{self, ClientMasterInitiator, ResumeClaim};
use sustenet_proto::resume::{ReplayLog, Rewind};
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
    /// Round trips to the listed clusters, measured right after the list.
    ClusterPings(Vec<ClusterPing>),
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
        /// From the redirect's arrival to the new cluster's welcome.
        pause: Duration,
    },
    /// The cluster connection dropped; the client is reconnecting to the
    /// same cluster, with the same player id. Reliable messages sent
    /// meanwhile are kept and delivered after the reconnect. `Reconnected`
    /// or `Disconnected` follows.
    Reconnecting {
        /// Why the connection dropped.
        reason: DisconnectReason,
        /// Details.
        message: String,
    },
    /// Back on the cluster after a dropped connection: the same player, and
    /// no reliable message lost or repeated in either direction.
    Reconnected {
        /// The cluster.
        cluster: ClusterInfo,
        /// From the drop to the reconnect.
        away: Duration,
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
    JoinBest,
    Send { command: u16, payload: Vec<u8> },
    SendUnreliable { command: u16, payload: Vec<u8> },
    Leave,
    Disconnect,
}

/// A cluster's measured round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterPing {
    /// The cluster's id.
    pub id: u64,
    /// The best of the round trips measured; `None` when it did not answer.
    pub rtt: Option<Duration>,
}

/// How much a full cluster weighs against round trip in [`pick_best`]: a
/// full cluster scores as if it were this much farther away.
pub const LOAD_WEIGHT: Duration = Duration::from_millis(100);
/// The round trip assumed for a cluster that did not answer its pings.
pub const NO_ANSWER_RTT: Duration = Duration::from_secs(1);

/// Picks the cluster to join by round trip and load. The rule: among the
/// clusters that are not full, the lowest `rtt + LOAD_WEIGHT × fill` wins,
/// where `fill` is `players / capacity` (from 0 to 1), or for clusters
/// without a limit `players / (players + 100)`; a cluster that did not
/// answer counts as [`NO_ANSWER_RTT`] away; ties go to the lower id.
pub fn pick_best(clusters: &[ClusterInfo], pings: &[ClusterPing]) -> Option<u64> {
    let score = |c: &ClusterInfo| {
        let rtt = pings
            .iter()
            .find(|p| p.id == c.id)
            .and_then(|p| p.rtt)
            .unwrap_or(NO_ANSWER_RTT);
        let players = f64::from(c.players);
        let fill = if c.capacity > 0 {
            (players / f64::from(c.capacity)).min(1.0)
        } else {
            players / (players + 100.0)
        };
        rtt.as_secs_f64() + LOAD_WEIGHT.as_secs_f64() * fill
    };
    clusters
        .iter()
        .filter(|c| !c.locked)
        .map(|c| (score(c), c.id))
        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
        .map(|(_, id)| id)
}

/// Pings every cluster's UDP port twice and keeps the best answer of each,
/// waiting at most `timeout` in all.
async fn measure_pings(clusters: &[ClusterInfo], timeout: Duration) -> Vec<ClusterPing> {
    let mut targets: Vec<(u64, SocketAddr)> = Vec::new();
    for c in clusters {
        if let Ok(mut addrs) = tokio::net::lookup_host((c.address.as_str(), c.udp_port)).await {
            if let Some(a) = addrs.next() {
                targets.push((c.id, a));
            }
        }
    }
    let mut best: Vec<ClusterPing> = clusters
        .iter()
        .map(|c| ClusterPing {
            id: c.id,
            rtt: None,
        })
        .collect();
    let (Ok(v4), v6) = (
        UdpSocket::bind(SocketAddr::from(([0u8; 4], 0))).await,
        UdpSocket::bind(SocketAddr::from(([0u16; 8], 0))).await.ok(),
    ) else {
        return best;
    };
    let start = Instant::now();
    let mut sent_at: Vec<(u64, u64, Instant)> = Vec::new();
    for attempt in 0..2u64 {
        for (i, (id, addr)) in targets.iter().enumerate() {
            let nonce = ((i as u64) << 8) | attempt;
            let sock = if addr.is_ipv6() {
                v6.as_ref()
            } else {
                Some(&v4)
            };
            if let Some(sock) = sock {
                if sock
                    .send_to(&datagram::ping_request(nonce), addr)
                    .await
                    .is_ok()
                {
                    sent_at.push((nonce, *id, Instant::now()));
                }
            }
        }
    }
    let (mut buf4, mut buf6) = ([0u8; 64], [0u8; 64]);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut answered = 0;
    while answered < sent_at.len() {
        let recv = async {
            match &v6 {
                Some(v6) => tokio::select! {
                    r = v4.recv_from(&mut buf4) => r.map(|(n, _)| buf4[..n].to_vec()),
                    r = v6.recv_from(&mut buf6) => r.map(|(n, _)| buf6[..n].to_vec()),
                },
                None => v4
                    .recv_from(&mut buf4)
                    .await
                    .map(|(n, _)| buf4[..n].to_vec()),
            }
        };
        let Ok(Ok(d)) = tokio::time::timeout_at(deadline, recv).await else {
            break;
        };
        let Some((nonce, _, _)) = datagram::parse_ping_response(&d) else {
            continue;
        };
        let Some((_, id, at)) = sent_at.iter().find(|(n, _, _)| *n == nonce).copied() else {
            continue;
        };
        answered += 1;
        let rtt = at.elapsed();
        if let Some(b) = best.iter_mut().find(|b| b.id == id) {
            b.rtt = Some(b.rtt.map_or(rtt, |r| r.min(rtt)));
        }
    }
    debug!(clusters = clusters.len(), took = ?start.elapsed(), "cluster pings measured");
    best
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
            pending_best: false,
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
    /// Joins the best cluster by round trip and load: lists the clusters,
    /// pings each over UDP and picks by [`pick_best`]'s rule.
    pub fn join_best(&self) -> Result<(), ClientError> {
        self.push(Command::JoinBest)
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
    /// The TCP connection; `None` while reconnecting.
    link: Option<Link>,
    udp: UdpSocket,
    udp_sealer: DatagramSealer,
    udp_opener: DatagramOpener,
    last_seen: Instant,
    /// `host:port` of the cluster's TCP listener.
    addr: String,
    keys: Box<ClientSessionKeys>,
    session_id: u64,
    /// Reliable messages kept for a reconnect, and the received count.
    replay: ReplayLog,
    away: Option<Away>,
    /// Reconnect attempts made in the session (each proof carries the next).
    attempts: u64,
}

impl ClusterConn {
    /// The next reconnect attempt of this session, to run beside the task.
    fn next_attempt(
        &mut self,
        config: &ClientConfig,
    ) -> impl std::future::Future<Output = Result<Attempt, Resume>> + Send + 'static {
        self.attempts += 1;
        let claim = ResumeClaim {
            received: self.replay.received(),
            attempt: self.attempts,
        };
        attempt(
            self.addr.clone(),
            (*self.keys).clone(),
            self.session_id,
            claim,
            config.clone(),
        )
    }
}

struct Link {
    reader: SealedReader<OwnedReadHalf>,
    writer: SealedWriter<OwnedWriteHalf>,
}

/// A reconnect under way.
struct Away {
    since: Instant,
    /// When to start the next attempt; `None` while one is under way.
    next_try: Option<Instant>,
    /// Failed attempts in a row, for the backoff.
    failures: u32,
    last_error: String,
    /// Since when every attempt found nothing listening.
    refused_since: Option<Instant>,
    /// The attempt under way, run beside the client task so commands keep
    /// being handled (sends are kept for after the reconnect).
    pending: Option<tokio::task::JoinHandle<Result<Attempt, Resume>>>,
}

impl Drop for Away {
    fn drop(&mut self) {
        // An attempt nobody waits for any more must not take the seat back.
        if let Some(h) = self.pending.take() {
            h.abort();
        }
    }
}

/// How long nothing may listen at the cluster's address before the client
/// concludes the cluster is gone (a proxy or NAT in front of it may refuse
/// for a moment while it restarts).
const REFUSED_FOR: Duration = Duration::from_secs(2);

struct Task {
    config: ClientConfig,
    events: flume::Sender<ClientEvent>,
    rtt: Arc<Rtt>,
    master: Option<MasterConn>,
    cluster: Option<ClusterConn>,
    credentials: Option<(String, Vec<u8>)>,
    client_id: Option<u64>,
    pending_join: Option<JoinTarget>,
    pending_best: bool,
    epoch: Instant,
}

enum Wake {
    Command(Option<Command>),
    Master(Result<Option<MasterToClient>, NetError>),
    Cluster(Result<Option<ClusterToClient>, NetError>),
    Udp(std::io::Result<usize>),
    Tick,
    Reconnect,
    Attempt(Result<Attempt, Resume>),
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

async fn attempt_done(away: Option<&mut Away>) -> Result<Attempt, Resume> {
    match away.and_then(|a| a.pending.as_mut()) {
        Some(h) => h
            .await
            .unwrap_or_else(|e| Err(Resume::failed(format!("the attempt stopped: {e}")))),
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
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
            let (reader, udp, retry, attempt) = match &mut self.cluster {
                Some(c) => {
                    let retry = c.away.as_ref().and_then(|a| a.next_try);
                    let link = c.link.as_mut().map(|l| &mut l.reader);
                    (link, Some(&c.udp), retry, c.away.as_mut())
                }
                None => (None, None, None, None),
            };
            let wake = tokio::select! {
                c = commands.recv_async() => Wake::Command(c.ok()),
                m = recv_master(&mut self.master) => Wake::Master(m),
                c = recv_cluster(reader) => Wake::Cluster(c),
                n = recv_udp(udp, &mut buf) => Wake::Udp(n),
                _ = sleep_until(retry) => Wake::Reconnect,
                r = attempt_done(attempt) => Wake::Attempt(r),
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
                Wake::Reconnect => self.start_attempt().await,
                Wake::Attempt(r) => self.attempt_done(r).await,
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
            Command::JoinBest => {
                if self.credentials.is_none() {
                    Err(ClientError::NotLoggedIn)
                } else {
                    match self.ensure_master().await {
                        Ok(()) => {
                            self.pending_best = true;
                            self.send_master(ClientToMaster::ListClusters).await
                        }
                        Err(e) => Err(e),
                    }
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
            Command::Send { command, payload } => self.send_reliable(command, payload).await,
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

    /// Sends a reliable message, or keeps it for after the reconnect.
    async fn send_reliable(&mut self, command: u16, payload: Vec<u8>) -> Result<(), ClientError> {
        let Some(c) = self.cluster.as_mut() else {
            return Err(ClientError::NotInCluster);
        };
        let resumable = !self.config.reconnect_window.is_zero();
        let Some(link) = c.link.as_mut() else {
            c.replay.push(command, payload, false);
            if c.replay.over_budget() {
                // Refusing this one message would leave a hole in the
                // reliable stream; the session ends instead, as on the
                // cluster's side.
                let message = format!(
                    "more than {} bytes were sent while reconnecting (resume_buffer)",
                    self.config.resume_buffer
                );
                self.lose_cluster_for_good(DisconnectReason::SendQueueFull, message)
                    .await;
            }
            return Ok(());
        };
        let msg = ClientToCluster::Data { command, payload };
        let r = link.writer.send(&msg).await;
        if resumable {
            // Kept whether or not the write went through: after a drop, the
            // cluster's count says which to send again.
            if let ClientToCluster::Data { command, payload } = msg {
                c.replay.push(command, payload, r.is_ok());
            }
        }
        if let Err(e) = r {
            self.lose_cluster(reason_of(&e), e.to_string()).await;
        }
        Ok(())
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
            MasterToClient::ClusterList(list) => {
                self.emit(ClientEvent::Clusters(list.clone())).await;
                let pings = if self.config.ping_timeout.is_zero() {
                    Vec::new()
                } else {
                    measure_pings(&list, self.config.ping_timeout).await
                };
                if !pings.is_empty() {
                    self.emit(ClientEvent::ClusterPings(pings.clone())).await;
                }
                if std::mem::take(&mut self.pending_best) {
                    let choice = pick_best(&list, &pings);
                    let r = match choice {
                        Some(id) => {
                            self.send_master(ClientToMaster::Join(JoinTarget::Id(id)))
                                .await
                        }
                        None => {
                            let (reason, message) = if list.is_empty() {
                                (DisconnectReason::NoCluster, "no cluster is registered")
                            } else {
                                (DisconnectReason::ServerFull, "every cluster is full")
                            };
                            self.emit(ClientEvent::JoinFailed {
                                reason,
                                message: message.into(),
                            })
                            .await;
                            Ok(())
                        }
                    };
                    if let Err(e) = r {
                        self.emit(ClientEvent::Error(e)).await;
                    }
                }
            }
            MasterToClient::Ticket(t) => {
                self.pending_join = None;
                if self.cluster.is_some() {
                    self.leave_cluster(DisconnectReason::Requested, "joining another cluster")
                        .await;
                }
                self.join_with(t, None).await;
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

    async fn join_with(&mut self, t: Ticket, redirected: Option<Instant>) {
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
                if let Some(started) = redirected {
                    self.emit(ClientEvent::Redirected {
                        cluster: info.clone(),
                        pause: started.elapsed(),
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
            link: Some(Link {
                reader: SealedReader::new(frames, opener, 16),
                writer: SealedWriter::new(wr, session.sealer, self.config.max_frame)
                    .with_write_timeout(self.config.timeout),
            }),
            udp,
            udp_sealer: dg.sealer,
            udp_opener: dg.opener,
            last_seen: Instant::now(),
            addr,
            keys: Box::new(keys),
            session_id,
            replay: ReplayLog::new(self.config.resume_buffer),
            away: None,
            attempts: 0,
        })
    }

    /// Starts a reconnect attempt beside the task, unless the window has
    /// passed.
    async fn start_attempt(&mut self) {
        let window = self.config.reconnect_window;
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(away) = c.away.as_mut() else {
            return;
        };
        if away.since.elapsed() > window {
            let message = format!("could not reconnect within {window:?}: {}", away.last_error);
            self.lose_cluster_for_good(DisconnectReason::ReconnectTimeout, message)
                .await;
            return;
        }
        let job = c.next_attempt(&self.config);
        if let Some(away) = c.away.as_mut() {
            away.next_try = None;
            away.pending = Some(tokio::spawn(job));
        }
    }

    /// An attempt ended: back on the cluster, or the next attempt scheduled,
    /// or the session over.
    async fn attempt_done(&mut self, r: Result<Attempt, Resume>) {
        let config = self.config.clone();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(away) = c.away.as_mut() else {
            return;
        };
        away.pending = None;
        let r = match r {
            Ok(a) => finish_resume(c, a, &config).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => {
                let away = c.away.take().map(|a| a.since.elapsed()).unwrap_or_default();
                c.last_seen = Instant::now();
                let cluster = c.info.clone();
                info!(cluster = %cluster.name, ?away, "reconnected to the cluster");
                let _ = self.send_datagram(&Record::Ping(self.micros()));
                self.emit(ClientEvent::Reconnected { cluster, away }).await;
            }
            Err(Resume::Refused(reason, message)) => {
                warn!("reconnect refused: {reason} {message}");
                self.lose_cluster_for_good(reason, message).await;
            }
            Err(Resume::Failed { message, refused }) => {
                let Some(a) = c.away.as_mut() else {
                    return;
                };
                debug!(failures = a.failures, "reconnect failed: {message}");
                let now = Instant::now();
                a.refused_since = if refused {
                    Some(a.refused_since.unwrap_or(now))
                } else {
                    None
                };
                if a.refused_since.is_some_and(|t| now - t > REFUSED_FOR) {
                    // Nothing has listened there for a while: the cluster
                    // process is gone, and its sessions with it.
                    self.lose_cluster_for_good(
                        DisconnectReason::ConnectionLost,
                        format!("the cluster is gone: {message}"),
                    )
                    .await;
                    return;
                }
                a.failures = a.failures.saturating_add(1);
                // 100 ms doubling up to 2 s, with jitter so that clients
                // dropped together do not come back in step.
                let base = Duration::from_millis(100)
                    .saturating_mul(1u32 << a.failures.min(5))
                    .min(Duration::from_secs(2));
                let jitter = rand::rng().random_range(0.5..1.0);
                a.next_try = Some(now + base.mul_f64(jitter));
                a.last_error = message;
            }
        }
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
        let Some(link) = c.link.as_mut() else {
            return;
        };
        c.last_seen = Instant::now();
        match msg {
            ClusterToClient::Ping(v) => {
                if let Err(e) = link.writer.send(&ClientToCluster::Pong(v)).await {
                    self.lose_cluster(reason_of(&e), e.to_string()).await;
                }
            }
            ClusterToClient::Ack(count) => c.replay.ack(count),
            ClusterToClient::Resumed { .. } => {
                self.lose_cluster_for_good(
                    DisconnectReason::ProtocolViolation,
                    "Resumed on a running connection".into(),
                )
                .await;
            }
            ClusterToClient::Pong(v) => {
                self.rtt
                    .reliable_us
                    .store(now.saturating_sub(v), Ordering::Relaxed);
            }
            ClusterToClient::Data { command, payload } => {
                let ack = c.replay.on_received(payload.len());
                self.emit(ClientEvent::Packet {
                    command,
                    payload,
                    reliable: true,
                })
                .await;
                if ack {
                    self.send_ack().await;
                }
            }
            ClusterToClient::Welcome { .. } => {
                self.lose_cluster_for_good(
                    DisconnectReason::ProtocolViolation,
                    "a second Welcome".into(),
                )
                .await;
            }
            ClusterToClient::Disconnect(g) => {
                // The cluster ended the session on purpose: no reconnect.
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
                let started = Instant::now();
                if let Some(link) = self.cluster.take().and_then(|c| c.link) {
                    // Everything sent before this point went to the old
                    // cluster; say goodbye so it lets the player go now.
                    let mut writer = link.writer;
                    let _ = writer
                        .send(&ClientToCluster::Disconnect(Goodbye::new(
                            DisconnectReason::Redirected,
                        )))
                        .await;
                    let _ = writer.shutdown().await;
                }
                info!(to = %t.cluster.name, "redirected to another cluster");
                self.join_with(t, Some(started)).await;
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
        let mut challenge = None;
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
                // The cluster checks that this address receives its
                // datagrams before it sends it anything more (protocol
                // §10.4): echo the value, from this same socket.
                Record::PathChallenge(v) => challenge = Some(v),
                Record::Ping(_) | Record::PathResponse(_) => {}
            }
        }
        if let Some(v) = challenge {
            let _ = self.send_datagram(&Record::PathResponse(v));
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
            let Some(link) = c.link.as_mut() else {
                return;
            };
            if c.last_seen.elapsed() > timeout {
                self.lose_cluster(
                    DisconnectReason::Timeout,
                    "the cluster stopped responding".into(),
                )
                .await;
                return;
            }
            if let Err(e) = link.writer.send(&ClientToCluster::Ping(now)).await {
                self.lose_cluster(reason_of(&e), e.to_string()).await;
                return;
            }
            if c.replay.ack_due() {
                self.send_ack().await;
            }
            let _ = self.send_datagram(&Record::Ping(now));
        }
    }

    /// Tells the cluster how many of its messages arrived, so it can forget them.
    async fn send_ack(&mut self) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(link) = c.link.as_mut() else {
            return;
        };
        let count = c.replay.received();
        match link.writer.send(&ClientToCluster::Ack(count)).await {
            Ok(()) => {
                c.replay.mark_acked();
            }
            Err(e) => self.lose_cluster(reason_of(&e), e.to_string()).await,
        }
    }

    /// The cluster connection failed. A drop (`ConnectionLost`, `Timeout`)
    /// starts a reconnect when that is on; anything else ends the session.
    async fn lose_cluster(&mut self, reason: DisconnectReason, message: String) {
        let resumable = matches!(
            reason,
            DisconnectReason::ConnectionLost | DisconnectReason::Timeout
        ) && !self.config.reconnect_window.is_zero();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if !resumable || c.link.is_none() {
            self.lose_cluster_for_good(reason, message).await;
            return;
        }
        c.link = None;
        let now = Instant::now();
        c.away = Some(Away {
            since: now,
            next_try: Some(now),
            failures: 0,
            last_error: message.clone(),
            refused_since: None,
            pending: None,
        });
        info!("lost the cluster connection: {reason} {message}; reconnecting");
        self.emit(ClientEvent::Reconnecting { reason, message })
            .await;
    }

    async fn lose_cluster_for_good(&mut self, reason: DisconnectReason, message: String) {
        if let Some(c) = self.cluster.take() {
            if let Some(mut link) = c.link {
                let _ = link
                    .writer
                    .send(&ClientToCluster::Disconnect(Goodbye {
                        reason,
                        message: message.clone(),
                    }))
                    .await;
                let _ = link.writer.shutdown().await;
            }
            info!("lost the cluster: {reason} {message}");
            self.emit(ClientEvent::Disconnected { reason, message })
                .await;
        }
    }

    async fn leave_cluster(&mut self, reason: DisconnectReason, message: &str) {
        if let Some(mut c) = self.cluster.take() {
            let goodbye = Goodbye {
                reason,
                message: message.into(),
            };
            if let Some(mut link) = c.link.take() {
                let _ = link
                    .writer
                    .send(&ClientToCluster::Disconnect(goodbye))
                    .await;
                let _ = link.writer.shutdown().await;
            } else if c.away.is_some() {
                // Leaving while reconnecting: one short reconnect, in the
                // background, only to say goodbye, so the cluster frees the
                // seat now instead of at the end of its window.
                let job = c.next_attempt(&self.config);
                let (limit, max_frame) = (self.config.handshake_timeout, self.config.max_frame);
                tokio::spawn(async move {
                    if let Ok(Ok(a)) = tokio::time::timeout(limit, job).await {
                        let mut w = SealedWriter::new(a.wr, a.session.sealer, max_frame)
                            .with_write_timeout(limit);
                        let _ = w.send(&ClientToCluster::Disconnect(goodbye)).await;
                        let _ = w.shutdown().await;
                    }
                });
            }
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

/// Why a reconnect attempt did not work.
enum Resume {
    /// The cluster said no: the session is over.
    Refused(DisconnectReason, String),
    /// The cluster could not be reached, or was busy: try again.
    Failed {
        /// What happened.
        message: String,
        /// Nothing listened at the address (connection refused).
        refused: bool,
    },
}

impl Resume {
    fn failed(e: impl std::fmt::Display) -> Self {
        Resume::Failed {
            message: e.to_string(),
            refused: false,
        }
    }
}

/// A new connection on which the cluster accepted the reconnect.
struct Attempt {
    frames: FrameReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    session: sustenet_proto::StreamSession,
    /// How many of the client's `Data` messages the cluster had received.
    server_has: u64,
}

/// Refusals that only say "not now": the cluster is busy with handshakes
/// or briefly full, so the session may still be resumed a moment later.
fn refusal_is_final(reason: DisconnectReason) -> bool {
    !matches!(
        reason,
        DisconnectReason::TooManyHandshakes
            | DisconnectReason::HandshakeTimeout
            | DisconnectReason::ServerFull
    )
}

/// One reconnect attempt: a resume hello with a fresh nonce, and the
/// cluster's `Resumed`.
async fn attempt(
    addr: String,
    keys: ClientSessionKeys,
    session_id: u64,
    claim: ResumeClaim,
    config: ClientConfig,
) -> Result<Attempt, Resume> {
    let to = config.handshake_timeout;
    let stream = tokio::time::timeout(to, TcpStream::connect(&addr))
        .await
        .map_err(|_| Resume::failed(format!("connecting to {addr} timed out")))?
        .map_err(|e| Resume::Failed {
            refused: e.kind() == std::io::ErrorKind::ConnectionRefused,
            message: format!("{addr}: {e}"),
        })?;
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut frames = FrameReader::new(rd, config.max_frame);
    let mut nonce = [0u8; 32];
    rand::rng().fill_bytes(&mut nonce);
    let (hello, session) = handshake::client_resume_hello(&keys, session_id, &nonce, claim)
        .map_err(|e| Resume::Refused(e.reason(), e.to_string()))?;
    write_frame(&mut wr, &hello, config.max_frame)
        .await
        .map_err(Resume::failed)?;
    let first = frames
        .next_within(to)
        .await
        .map_err(Resume::failed)?
        .ok_or_else(|| Resume::failed("closed during the reconnect"))?;
    if let Some(refusal) = handshake::check_refusal(&first) {
        let reason = refusal.reason();
        return Err(if refusal_is_final(reason) {
            Resume::Refused(reason, refusal.to_string())
        } else {
            Resume::failed(refusal)
        });
    }
    let violation = |m: String| Resume::Refused(DisconnectReason::ProtocolViolation, m);
    let mut session = session;
    let plain = session
        .opener
        .open(&first)
        .map_err(|e| violation(e.to_string()))?;
    match ClusterToClient::decode(&plain) {
        Ok(ClusterToClient::Resumed { received }) => Ok(Attempt {
            frames,
            wr,
            session,
            server_has: received,
        }),
        Ok(other) => Err(violation(format!("expected Resumed, got {other:?}"))),
        Err(e) => Err(violation(e.to_string())),
    }
}

/// Sends again, on the accepted connection, every kept message the cluster
/// has not received, in order, and puts the connection in place.
async fn finish_resume(
    c: &mut ClusterConn,
    a: Attempt,
    config: &ClientConfig,
) -> Result<(), Resume> {
    let Attempt {
        frames,
        wr,
        session,
        server_has,
    } = a;
    let mut writer =
        SealedWriter::new(wr, session.sealer, config.max_frame).with_write_timeout(config.timeout);
    let refusal = match c.replay.rewind(server_has) {
        Rewind::Replay(kept) => {
            debug!(
                again = kept.len(),
                server_has,
                received = c.replay.received(),
                "resuming: sending the cluster's missed messages again"
            );
            for (command, payload) in kept {
                let m = ClientToCluster::Data {
                    command: *command,
                    payload: payload.clone(),
                };
                writer.queue(&m).map_err(Resume::failed)?;
            }
            None
        }
        Rewind::Lost {
            client_has,
            oldest_kept,
        } => Some((
            DisconnectReason::ResumeRefused,
            format!(
                "the cluster has {client_has} of our messages and the oldest one kept is \
                 number {oldest_kept}: the ones between are gone (resume_buffer)"
            ),
        )),
        Rewind::Impossible => Some((
            DisconnectReason::ProtocolViolation,
            format!("the cluster claims {server_has} messages, more than were sent"),
        )),
    };
    if let Some((reason, message)) = refusal {
        // The cluster already moved the player onto this connection: say
        // goodbye on it, so the seat is freed now rather than after its window.
        let _ = writer
            .send(&ClientToCluster::Disconnect(Goodbye {
                reason,
                message: message.clone(),
            }))
            .await;
        let _ = writer.shutdown().await;
        return Err(Resume::Refused(reason, message));
    }
    c.replay.ack(server_has);
    c.replay.mark_acked();
    writer.flush().await.map_err(Resume::failed)?;
    c.link = Some(Link {
        reader: SealedReader::new(frames, session.opener, 16),
        writer,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(id: u64, players: u32, capacity: u32) -> ClusterInfo {
        ClusterInfo {
            id,
            name: format!("c{id}"),
            address: "127.0.0.1".into(),
            tcp_port: 1,
            udp_port: 1,
            players,
            capacity,
            locked: capacity > 0 && players >= capacity,
        }
    }

    fn ping(id: u64, ms: Option<u64>) -> ClusterPing {
        ClusterPing {
            id,
            rtt: ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn nearest_wins_when_load_is_equal() {
        let list = [cluster(1, 10, 100), cluster(2, 10, 100)];
        assert_eq!(
            pick_best(&list, &[ping(1, Some(80)), ping(2, Some(20))]),
            Some(2)
        );
    }

    #[test]
    fn load_outweighs_a_small_ping_difference() {
        // 1: 20 ms, 90 % full → 20 + 90 = 110; 2: 40 ms, 10 % full → 40 + 10 = 50.
        let list = [cluster(1, 90, 100), cluster(2, 10, 100)];
        assert_eq!(
            pick_best(&list, &[ping(1, Some(20)), ping(2, Some(40))]),
            Some(2)
        );
        // ... but not a large one: 1: 20 + 90 = 110; 2: 150 + 10 = 160.
        assert_eq!(
            pick_best(&list, &[ping(1, Some(20)), ping(2, Some(150))]),
            Some(1)
        );
    }

    #[test]
    fn full_and_silent_clusters() {
        let list = [cluster(1, 100, 100), cluster(2, 0, 0), cluster(3, 0, 0)];
        // 1 is full; 2 did not answer (1000 ms); 3 answered.
        assert_eq!(
            pick_best(
                &list,
                &[ping(1, Some(1)), ping(2, None), ping(3, Some(300))]
            ),
            Some(3)
        );
        // Nobody answered: the least loaded unlocked one, ties to the lower id.
        assert_eq!(pick_best(&list, &[]), Some(2));
        assert_eq!(pick_best(&[cluster(1, 5, 5)], &[]), None);
        assert_eq!(pick_best(&[], &[]), None);
    }

    #[test]
    fn unlimited_clusters_fill_slowly() {
        // 100 players without a limit count as half full: 10 + 50 = 60 vs 70 + 0.
        let list = [cluster(1, 100, 0), cluster(2, 0, 0)];
        assert_eq!(
            pick_best(&list, &[ping(1, Some(10)), ping(2, Some(70))]),
            Some(1)
        );
        assert_eq!(
            pick_best(&list, &[ping(1, Some(10)), ping(2, Some(50))]),
            Some(2)
        );
    }
}
