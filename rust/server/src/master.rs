//! The master server: registers clusters, logs players in, hands out tickets.
//!
//! Clusters and clients both reach the master over TCP; the hello frame says
//! which. A cluster proves its key and then reports its load; a client runs
//! the Noise handshake, logs in through the auth hook, reads the cluster list
//! and asks for a ticket. The master keeps, per cluster, the players it has
//! and the tickets it issued that have not been used yet, so `auto` balances
//! correctly even when many clients join within one status interval.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::RngCore;
use sustenet_net::{FrameReader, NetError, SealedReader, SealedWriter, write_frame};
use sustenet_proto::crypto::NOISE_MAX_PLAINTEXT;
use sustenet_proto::handshake::{self, Hello};
use sustenet_proto::{
    ClientToMaster, ClusterInfo, ClusterToMaster, ConnectToken, DisconnectReason, Goodbye,
    JoinTarget, Key, MasterKeypair, MasterToClient, MasterToCluster, Register, Status, Ticket,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::auth::AuthHook;
use crate::config::Limits;
use crate::error::ServerError;
use crate::time::now_ms;

/// How the master runs.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Display name.
    pub name: String,
    /// Most client connections at once; 0 means no limit (clusters do not count).
    pub max_connections: u32,
    /// How long a connect token stays valid.
    pub token_ttl: Duration,
    /// A cluster silent for this long is dropped.
    pub cluster_timeout: Duration,
    /// Failed logins allowed on one connection before it is closed.
    pub max_login_attempts: u32,
    /// Frame, queue and timing limits.
    pub limits: Limits,
}

impl Default for MasterConfig {
    fn default() -> Self {
        Self {
            name: "Sustenet Master".into(),
            max_connections: 0,
            token_ttl: Duration::from_secs(30),
            cluster_timeout: Duration::from_secs(5),
            max_login_attempts: 5,
            limits: Limits::default(),
        }
    }
}

/// The master's keys: its own keypair and every cluster key by name.
#[derive(Debug, Clone)]
pub struct MasterKeys {
    /// The static keypair clients authenticate the master with.
    pub keypair: MasterKeypair,
    /// Cluster keys by key name.
    pub cluster_keys: HashMap<String, Key>,
}

struct ClusterEntry {
    reg: Register,
    key: Key,
    /// The key name the cluster proved; only that key may take its id over.
    key_name: String,
    status: Status,
    players: HashSet<u64>,
    /// Tickets issued and not used yet: client id → expiry (ms).
    pending: HashMap<u64, u64>,
    link: mpsc::Sender<MasterToCluster>,
    conn: u64,
}

impl ClusterEntry {
    fn load(&mut self, now: u64) -> u32 {
        self.pending.retain(|_, exp| *exp > now);
        u32::try_from(self.players.len() + self.pending.len()).unwrap_or(u32::MAX)
    }

    fn info(&mut self, now: u64) -> ClusterInfo {
        let players = self.load(now);
        let capacity = self.reg.capacity;
        ClusterInfo {
            id: self.reg.cluster_id,
            name: self.reg.name.clone(),
            address: self.reg.address.clone(),
            tcp_port: self.reg.tcp_port,
            udp_port: self.reg.udp_port,
            players,
            capacity,
            locked: capacity > 0 && players >= capacity,
        }
    }
}

struct Shared {
    config: MasterConfig,
    keys: MasterKeys,
    auth: Arc<dyn AuthHook>,
    clusters: Mutex<HashMap<u64, ClusterEntry>>,
    handshakes: Semaphore,
    clients: Option<Semaphore>,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn clusters(&self) -> MutexGuard<'_, HashMap<u64, ClusterEntry>> {
        // A poisoned lock means a panic elsewhere; the map itself is still
        // consistent (every update is a single insert or remove), so go on.
        self.clusters.lock().unwrap_or_else(|p| p.into_inner())
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        handshakes: Semaphore::new(config.limits.max_handshakes),
        clients: (config.max_connections > 0)
            .then(|| Semaphore::new(config.max_connections as usize)),
        config,
        keys,
        auth,
        clusters: Mutex::new(HashMap::new()),
        shutdown: stop_rx,
    });
    info!(
        addr = %listener.local_addr()?,
        public_key = %shared.keys.keypair.public().to_base64(),
        clusters_known = shared.keys.cluster_keys.len(),
        "master listening"
    );
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_conn = 0u64;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            (stream, peer) = crate::listen::accept(&listener) => {
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

async fn refuse(stream: &mut TcpStream, reason: DisconnectReason, message: &str) {
    let frame = handshake::reject_frame(reason, message);
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        write_frame(stream, &frame, usize::MAX),
    )
    .await;
}

async fn handle_conn(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr, conn: u64) {
    let _ = stream.set_nodelay(true);
    let Ok(permit) = shared.handshakes.try_acquire() else {
        warn!("refused: too many connections in their handshake");
        refuse(
            &mut stream,
            DisconnectReason::TooManyHandshakes,
            "too many pending handshakes",
        )
        .await;
        return;
    };
    let limits = shared.config.limits;
    let (rd, mut wr) = stream.into_split();
    let mut frames = FrameReader::new(rd, limits.max_frame);
    let hello = match frames.next_within(limits.handshake_timeout()).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            debug!("closed before its hello");
            return;
        }
        Err(NetError::Timeout(_)) => {
            warn!("dropped: no hello within the handshake timeout");
            let f = handshake::reject_frame(DisconnectReason::HandshakeTimeout, "no hello in time");
            let _ =
                tokio::time::timeout(Duration::from_secs(1), write_frame(&mut wr, &f, usize::MAX))
                    .await;
            return;
        }
        Err(e) => {
            warn!("dropped: bad first frame: {e}");
            return;
        }
    };
    let hello = match handshake::parse_hello(&hello) {
        Ok(h) => h,
        Err(e) => {
            warn!("refused: {e}");
            let f = handshake::reject_frame(e.reason(), &e.to_string());
            let _ = write_frame(&mut wr, &f, usize::MAX).await;
            return;
        }
    };
    match hello {
        Hello::Cluster { key_name, nonce } => {
            let key = shared.keys.cluster_keys.get(&key_name).cloned();
            let (session, challenge) =
                handshake::respond_cluster(key.as_ref(), &key_name, &nonce, &mut rand::rng());
            if write_frame(&mut wr, &challenge, limits.max_frame)
                .await
                .is_err()
            {
                return;
            }
            let mut reader = SealedReader::new(frames, session.opener, 0);
            let first =
                tokio::time::timeout(limits.handshake_timeout(), reader.recv::<ClusterToMaster>())
                    .await;
            let reg = match first {
                Ok(Ok(Some(ClusterToMaster::Register(reg)))) => reg,
                Ok(Err(NetError::TooManyAuthFailures(_))) => {
                    warn!(
                        key_name,
                        "cluster registration refused: authentication failed (wrong or unknown key)"
                    );
                    let f = handshake::reject_frame(
                        DisconnectReason::AuthFailed,
                        "cluster authentication failed",
                    );
                    let _ = write_frame(&mut wr, &f, usize::MAX).await;
                    return;
                }
                Ok(Ok(Some(other))) => {
                    warn!(
                        key_name,
                        "cluster registration refused: expected Register, got {other:?}"
                    );
                    return;
                }
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    warn!(key_name, "cluster registration refused: {e}");
                    return;
                }
                Err(_) => {
                    warn!(
                        key_name,
                        "cluster registration refused: no registration within the handshake timeout"
                    );
                    return;
                }
            };
            let Some(key) = key else {
                // Unreachable in practice: an unknown name gets a random key
                // and its registration cannot open.
                return;
            };
            // Claim the id. A cluster re-registering (its old link may not
            // have timed out yet) replaces its entry, but only with the key
            // it registered with: another key's holder cannot take over a
            // listed cluster and send its players elsewhere.
            let id = reg.cluster_id;
            let (tx, rx) = mpsc::channel::<MasterToCluster>(64);
            let claimed = {
                let mut clusters = shared.clusters();
                if clusters.get(&id).is_some_and(|e| e.key_name != key_name) {
                    None
                } else {
                    let entry = ClusterEntry {
                        status: Status {
                            players: 0,
                            capacity: reg.capacity,
                            fragments: 0,
                        },
                        reg: reg.clone(),
                        key,
                        key_name: key_name.clone(),
                        players: HashSet::new(),
                        pending: HashMap::new(),
                        link: tx,
                        conn,
                    };
                    Some(clusters.insert(id, entry))
                }
            };
            let Some(replaced) = claimed else {
                warn!(
                    key_name,
                    cluster_id = id,
                    "cluster registration refused: this cluster id is registered with another key"
                );
                let f = handshake::reject_frame(
                    DisconnectReason::AuthFailed,
                    "this cluster id is registered with another key",
                );
                let _ = write_frame(&mut wr, &f, usize::MAX).await;
                return;
            };
            drop(permit);
            let writer = SealedWriter::new(wr, session.sealer, limits.max_frame)
                .with_write_timeout(limits.timeout());
            cluster_link(shared, reader, writer, reg, key_name, conn, rx, replaced).await;
        }
        Hello::ClientMaster { noise } => {
            let (session, reply) = match handshake::respond_client_master(
                &shared.keys.keypair,
                &noise,
            ) {
                Ok(x) => x,
                Err(e) => {
                    warn!(
                        "client refused: {e} (the client probably has the wrong master public key)"
                    );
                    let f = handshake::reject_frame(
                        DisconnectReason::AuthFailed,
                        "handshake failed: check the master public key",
                    );
                    let _ = write_frame(&mut wr, &f, usize::MAX).await;
                    return;
                }
            };
            let client_permit = match &shared.clients {
                None => None,
                Some(sem) => match sem.try_acquire() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        warn!("client refused: master is at max_connections");
                        let f = handshake::reject_frame(
                            DisconnectReason::ServerFull,
                            "the master is full",
                        );
                        let _ = write_frame(&mut wr, &f, usize::MAX).await;
                        return;
                    }
                },
            };
            if write_frame(&mut wr, &reply, limits.max_frame)
                .await
                .is_err()
            {
                return;
            }
            drop(permit);
            let reader = SealedReader::new(frames, session.opener, limits.max_auth_failures);
            let writer = SealedWriter::new(
                wr,
                session.sealer,
                limits.max_frame.min(NOISE_MAX_PLAINTEXT),
            )
            .with_write_timeout(limits.timeout());
            client_session(&shared, reader, writer, peer).await;
            drop(client_permit);
        }
        Hello::ClientCluster { .. } | Hello::ClientResume { .. } => {
            warn!("refused: a client sent a cluster hello to the master");
            let f = handshake::reject_frame(
                DisconnectReason::ProtocolViolation,
                "this is a master: connect to the cluster address from the ticket",
            );
            let _ = write_frame(&mut wr, &f, usize::MAX).await;
        }
    }
}

type Reader = SealedReader<tokio::net::tcp::OwnedReadHalf>;
type Writer = SealedWriter<tokio::net::tcp::OwnedWriteHalf>;

#[allow(clippy::too_many_arguments)]
async fn cluster_link(
    shared: Arc<Shared>,
    mut reader: Reader,
    mut writer: Writer,
    reg: Register,
    key_name: String,
    conn: u64,
    mut rx: mpsc::Receiver<MasterToCluster>,
    replaced: Option<ClusterEntry>,
) {
    let id = reg.cluster_id;
    info!(
        cluster_id = id,
        name = %reg.name,
        key_name,
        address = %reg.address,
        tcp_port = reg.tcp_port,
        udp_port = reg.udp_port,
        capacity = reg.capacity,
        "cluster registered"
    );
    if let Some(old) = replaced {
        info!(
            cluster_id = id,
            "cluster re-registered; its previous link is closed"
        );
        let _ = old.link.try_send(MasterToCluster::Disconnect(Goodbye {
            reason: DisconnectReason::Requested,
            message: "replaced by a new registration".into(),
        }));
    }
    let reason: Result<DisconnectReason, NetError> = async {
        writer.send(&MasterToCluster::Registered { cluster_id: id }).await?;
        let timeout = shared.config.cluster_timeout;
        let mut heartbeat = tokio::time::interval(shared.config.limits.heartbeat());
        let mut last_seen = Instant::now();
        let mut shutdown = shared.shutdown.clone();
        loop {
            tokio::select! {
                msg = reader.recv::<ClusterToMaster>() => {
                    let Some(msg) = msg? else { return Ok(DisconnectReason::ConnectionLost) };
                    last_seen = Instant::now();
                    match msg {
                        ClusterToMaster::Ping(v) => writer.send(&MasterToCluster::Pong(v)).await?,
                        ClusterToMaster::Pong(_) => {}
                        ClusterToMaster::Disconnect(g) => {
                            info!(cluster_id = id, "cluster said goodbye: {} {}", g.reason, g.message);
                            return Ok(g.reason);
                        }
                        ClusterToMaster::Register(_) => {
                            warn!(cluster_id = id, "cluster sent a second registration");
                            return Ok(DisconnectReason::ProtocolViolation);
                        }
                        ClusterToMaster::Status(st) => {
                            if let Some(e) = shared.clusters().get_mut(&id).filter(|e| e.conn == conn) {
                                e.status = st;
                            }
                        }
                        ClusterToMaster::PlayerJoined { client_id } => {
                            if let Some(e) = shared.clusters().get_mut(&id).filter(|e| e.conn == conn) {
                                e.pending.remove(&client_id);
                                e.players.insert(client_id);
                            }
                        }
                        ClusterToMaster::PlayerLeft { client_id } => {
                            if let Some(e) = shared.clusters().get_mut(&id).filter(|e| e.conn == conn) {
                                e.players.remove(&client_id);
                            }
                        }
                        ClusterToMaster::Transfer { request_id, client_id, target, user_data } => {
                            let reply = transfer(&shared, id, conn, client_id, target, &user_data)
                                .map(|ticket| MasterToCluster::TransferReady { request_id, client_id, ticket })
                                .unwrap_or_else(|reason| {
                                    info!(cluster_id = id, client_id, target, "transfer refused: {} {}", reason.reason, reason.message);
                                    MasterToCluster::TransferFailed { request_id, client_id, reason }
                                });
                            writer.send(&reply).await?;
                        }
                    }
                }
                out = rx.recv() => {
                    match out {
                        Some(MasterToCluster::Disconnect(g)) => {
                            let r = g.reason;
                            writer.send(&MasterToCluster::Disconnect(g)).await?;
                            return Ok(r);
                        }
                        Some(m) => writer.send(&m).await?,
                        None => return Ok(DisconnectReason::Requested),
                    }
                }
                _ = heartbeat.tick() => {
                    if last_seen.elapsed() > timeout {
                        warn!(cluster_id = id, "cluster silent for {:?}; dropping it", last_seen.elapsed());
                        return Ok(DisconnectReason::Timeout);
                    }
                    writer.send(&MasterToCluster::Ping(now_ms())).await?;
                }
                _ = crate::time::stopped(&mut shutdown) => {
                    writer.send(&MasterToCluster::Disconnect(Goodbye::new(DisconnectReason::ServerShutdown))).await?;
                    let _ = writer.shutdown().await;
                    return Ok(DisconnectReason::ServerShutdown);
                }
            }
        }
    }
    .await;
    let reason = match reason {
        Ok(r) => r,
        Err(e) => {
            warn!(cluster_id = id, "cluster link failed: {e}");
            DisconnectReason::ConnectionLost
        }
    };
    let mut clusters = shared.clusters();
    if clusters.get(&id).is_some_and(|e| e.conn == conn) {
        clusters.remove(&id);
        info!(cluster_id = id, "cluster removed from the list: {reason}");
    }
}

/// The cluster list as a client sees it, least loaded first, cut to what
/// fits in one message.
fn cluster_list(shared: &Shared) -> Vec<ClusterInfo> {
    let now = now_ms();
    let mut list: Vec<ClusterInfo> = shared
        .clusters()
        .values_mut()
        .map(|e| e.info(now))
        .collect();
    list.sort_by_key(|c| (c.locked, c.players, c.id));
    let mut size = 3;
    let mut keep = 0;
    for c in &list {
        size += 40 + c.name.len() + c.address.len();
        if size > NOISE_MAX_PLAINTEXT || keep >= sustenet_proto::message::CLUSTER_LIST_MAX {
            break;
        }
        keep += 1;
    }
    list.truncate(keep);
    list
}

/// Picks a cluster and issues a ticket for it.
fn issue_ticket(
    shared: &Shared,
    client_id: u64,
    target: JoinTarget,
    user_data: &[u8],
) -> Result<Ticket, Goodbye> {
    let now = now_ms();
    let mut clusters = shared.clusters();
    let id = match target {
        JoinTarget::Id(id) => {
            let Some(e) = clusters.get_mut(&id) else {
                return Err(Goodbye {
                    reason: DisconnectReason::NoCluster,
                    message: format!("no cluster with id {id}"),
                });
            };
            if e.info(now).locked {
                return Err(Goodbye {
                    reason: DisconnectReason::ServerFull,
                    message: format!("cluster {} is full", e.reg.name),
                });
            }
            id
        }
        JoinTarget::Auto => {
            let best = clusters
                .values_mut()
                .map(|e| e.info(now))
                .filter(|i| !i.locked)
                .min_by_key(|i| (i.players, i.id));
            match best {
                Some(i) => i.id,
                None if clusters.is_empty() => {
                    return Err(Goodbye {
                        reason: DisconnectReason::NoCluster,
                        message: "no cluster is registered".into(),
                    });
                }
                None => {
                    return Err(Goodbye {
                        reason: DisconnectReason::ServerFull,
                        message: "every cluster is full".into(),
                    });
                }
            }
        }
    };
    let Some(entry) = clusters.get_mut(&id) else {
        return Err(Goodbye::new(DisconnectReason::NoCluster));
    };
    let mut rng = rand::rng();
    let mut token_id = [0u8; 16];
    rng.fill_bytes(&mut token_id);
    let mut session_secret = [0u8; 32];
    rng.fill_bytes(&mut session_secret);
    let ttl = u64::try_from(shared.config.token_ttl.as_millis()).unwrap_or(u64::MAX);
    let expires_at_ms = now.saturating_add(ttl);
    let token = ConnectToken {
        client_id,
        cluster_id: id,
        token_id,
        expires_at_ms,
        session_secret,
        user_data: user_data.to_vec(),
    };
    let sealed = token.seal(&entry.key, &mut rng).map_err(|e| Goodbye {
        reason: DisconnectReason::ProtocolViolation,
        message: format!("cannot issue a token: {e}"),
    })?;
    entry.pending.insert(client_id, expires_at_ms);
    let cluster = entry.info(now);
    Ok(Ticket {
        cluster,
        client_id,
        expires_at_ms,
        session_secret,
        token: sealed,
    })
}

/// A handoff: a ticket to `target` for one of `source`'s own players. A
/// cluster can only move players it has, so a cluster key cannot be used to
/// mint tickets for anyone else.
fn transfer(
    shared: &Shared,
    source: u64,
    conn: u64,
    client_id: u64,
    target: u64,
    user_data: &[u8],
) -> Result<Ticket, Goodbye> {
    let owns = shared
        .clusters()
        .get(&source)
        .is_some_and(|e| e.conn == conn && e.players.contains(&client_id));
    if !owns {
        return Err(Goodbye {
            reason: DisconnectReason::ProtocolViolation,
            message: format!("player {client_id} is not on this cluster"),
        });
    }
    if target == source {
        return Err(Goodbye {
            reason: DisconnectReason::NoCluster,
            message: "the target is the player's own cluster".into(),
        });
    }
    let ticket = issue_ticket(shared, client_id, JoinTarget::Id(target), user_data)?;
    info!(
        client_id,
        from = source,
        to = target,
        "transfer ticket issued"
    );
    Ok(ticket)
}

async fn client_session(shared: &Shared, mut reader: Reader, mut writer: Writer, peer: SocketAddr) {
    let mut login: Option<(u64, Vec<u8>)> = None;
    let mut failed_logins = 0u32;
    let mut shutdown = shared.shutdown.clone();
    let limits = shared.config.limits;
    let mut heartbeat = tokio::time::interval(limits.heartbeat());
    let mut last_seen = Instant::now();
    let outcome: Result<DisconnectReason, NetError> = async {
        loop {
            tokio::select! {
                msg = reader.recv::<ClientToMaster>() => {
                    let Some(msg) = msg? else { return Ok(DisconnectReason::ConnectionLost) };
                    last_seen = Instant::now();
                    match msg {
                        ClientToMaster::Ping(v) => writer.send(&MasterToClient::Pong(v)).await?,
                        ClientToMaster::Pong(_) => {}
                        ClientToMaster::Disconnect(g) => return Ok(g.reason),
                        ClientToMaster::Login { username, secret } => {
                            match shared.auth.check(&username, &secret).await {
                                Ok(data) if data.len() <= sustenet_proto::message::USER_DATA_MAX => {
                                    // Below 2^63, so engines with signed 64-bit integers see it positive.
                                    let client_id = loop {
                                        let id = rand::rng().next_u64() >> 1;
                                        if id != 0 { break id; }
                                    };
                                    info!(client_id, username, "login accepted");
                                    login = Some((client_id, data));
                                    writer.send(&MasterToClient::LoginOk { client_id }).await?;
                                }
                                Ok(_) => {
                                    warn!(username, "auth hook returned more than 16 KiB of user data");
                                    writer.send(&MasterToClient::LoginFailed { message: "server error: user data too large".into() }).await?;
                                }
                                Err(message) => {
                                    failed_logins += 1;
                                    info!(username, attempt = failed_logins, "login refused: {message}");
                                    writer.send(&MasterToClient::LoginFailed { message }).await?;
                                    if failed_logins >= shared.config.max_login_attempts {
                                        warn!(%peer, "too many failed logins; closing");
                                        writer.send(&MasterToClient::Disconnect(Goodbye {
                                            reason: DisconnectReason::AuthFailed,
                                            message: "too many failed logins".into(),
                                        })).await?;
                                        return Ok(DisconnectReason::AuthFailed);
                                    }
                                }
                            }
                        }
                        ClientToMaster::ListClusters => {
                            writer.send(&MasterToClient::ClusterList(cluster_list(shared))).await?;
                        }
                        ClientToMaster::Join(target) => {
                            let reply = match &login {
                                None => MasterToClient::JoinFailed(Goodbye {
                                    reason: DisconnectReason::AuthFailed,
                                    message: "log in first".into(),
                                }),
                                Some((client_id, data)) => match issue_ticket(shared, *client_id, target, data) {
                                    Ok(t) => {
                                        info!(client_id, cluster_id = t.cluster.id, "ticket issued");
                                        MasterToClient::Ticket(t)
                                    }
                                    Err(g) => {
                                        info!(client_id, "join refused: {} {}", g.reason, g.message);
                                        MasterToClient::JoinFailed(g)
                                    }
                                },
                            };
                            writer.send(&reply).await?;
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    if last_seen.elapsed() > limits.timeout() {
                        writer.send(&MasterToClient::Disconnect(Goodbye::new(DisconnectReason::Timeout))).await?;
                        return Ok(DisconnectReason::Timeout);
                    }
                    writer.send(&MasterToClient::Ping(now_ms())).await?;
                }
                _ = crate::time::stopped(&mut shutdown) => {
                    writer.send(&MasterToClient::Disconnect(Goodbye::new(DisconnectReason::ServerShutdown))).await?;
                    let _ = writer.shutdown().await;
                    return Ok(DisconnectReason::ServerShutdown);
                }
            }
        }
    }
    .await;
    match outcome {
        Ok(reason) => debug!("client session ended: {reason}"),
        Err(e) => {
            let reason = match &e {
                NetError::TooManyAuthFailures(_) => DisconnectReason::Tampered,
                NetError::Io(_) | NetError::Truncated => DisconnectReason::ConnectionLost,
                _ => DisconnectReason::ProtocolViolation,
            };
            warn!("client dropped: {e}");
            let _ = writer
                .send(&MasterToClient::Disconnect(Goodbye {
                    reason,
                    message: e.to_string(),
                }))
                .await;
        }
    }
}
