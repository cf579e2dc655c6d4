//! The cluster server: accepts players holding a ticket, carries their
//! reliable (TCP) and unreliable (UDP) traffic, and stays registered with the
//! master.
//!
//! The layers, in files:
//! - `core/`: the state machine ([`core::Core`]): players, away/grace and
//!   resume, transfers, the fragment grid and state fan-out, UDP paths, and
//!   the plugin with its [`Context`]. No socket, no clock read.
//! - this file: the driver, one task that owns the core, feeds it events,
//!   commands and ticks, and carries out its outputs;
//! - `player_conn.rs`: a player's TCP connection (handshake, reader, writer);
//! - `udp.rs`: a UDP receiver; `receivers.rs`: how many, on which sockets
//!   and threads (`[cluster] receive_threads`); `ping_limit.rs`: the ping
//!   request limits;
//!   `udp_send.rs`: the UDP sender (many datagrams per system call);
//! - `master_link.rs`: the link to the master;
//! - `handle.rs`: [`ClusterHandle`], the game's way in from other threads;
//! - `config.rs`: [`ClusterConfig`] and the errors of sends.
//!
//! Everything that changes the player table goes through the core's event
//! queue, so the plugin sees one consistent sequence of events and needs no
//! locks. A player whose send queue is full is disconnected with
//! `SendQueueFull`; nothing grows without bound.

mod budget;
mod config;
pub(crate) mod core;
pub mod core_bench;
mod handle;
mod master_link;
mod ping_limit;
mod player_conn;
pub mod plugin;
mod portal;
mod queue;
mod receivers;
mod seal_pool;
mod udp;
mod udp_send;
mod web_player;
mod web_routes;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use sustenet_proto::crypto::{ClientSessionKeys, DatagramSession, StreamSession};
use sustenet_proto::datagram::Record;
use sustenet_proto::handshake::ResumeClaim;
use sustenet_proto::{DisconnectReason, Goodbye, Key, UsedTokens};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument, info, info_span};

pub use self::config::{ClusterConfig, MasterLinkStatus, Reservation, SendError};
pub use self::core::Context;
pub use self::core::instances::{INSTANCE_REQUESTS_MAX, InstanceAnswer, InstanceRequestError};
pub use handle::{ClusterCommands, ClusterHandle, command_channel};
pub use portal::Portal;

use self::core::{Core, LinkEvent, NewPlayer, Output, Published, QueueLevel, Setup};
use crate::error::ServerError;
use crate::ids::PlayerId;
use crate::time::now_ms;
use plugin::Plugin;
use queue::{Outbox, QueueTx};
use receivers::UdpControls;
use udp::UdpControl;
use udp_send::UdpSender;

/// The master link's queue of player events and transfer requests, at most
/// this many (a link further behind registers again).
const LINK_QUEUE: usize = 65_536;

/// The writing end of one player connection, kept by the driver: its
/// queue, and the signal that closes it with a goodbye (after what is
/// queued, when the flag says so). Dropping it lets the writer stop
/// without a word.
pub(crate) struct Writer {
    pub(crate) out: Outbox,
    pub(crate) kill: oneshot::Sender<(Goodbye, bool)>,
}

/// What the other tasks tell the core.
pub(crate) enum CoreEvent {
    Join {
        player: PlayerId,
        conn: u64,
        session_id: u64,
        user_data: Vec<u8>,
        writer: Writer,
        keys: Arc<ClientSessionKeys>,
        udp: Box<DatagramSession>,
        reply: oneshot::Sender<Result<(), Goodbye>>,
    },
    /// A reconnect, its proof already checked.
    Resume(ResumeRequest),
    /// A reliable message, holding its bytes of the event budget.
    Packet {
        player: PlayerId,
        conn: u64,
        command: u16,
        payload: Vec<u8>,
        budget: budget::Held,
    },
    /// The player has received this many of the session's data messages.
    Ack {
        player: PlayerId,
        conn: u64,
        count: u64,
    },
    Left {
        player: PlayerId,
        conn: u64,
        reason: DisconnectReason,
    },
    /// An authenticated datagram of `len` bytes from `addr`, holding its
    /// bytes of the event budget.
    Udp {
        player: PlayerId,
        session_id: u64,
        addr: SocketAddr,
        len: usize,
        records: Vec<Record>,
        budget: budget::Held,
    },
    Snapshot(oneshot::Sender<Vec<PlayerId>>),
    TransferReady {
        request_id: u64,
        player: PlayerId,
        ticket: Box<sustenet_proto::Ticket>,
    },
    TransferFailed {
        request_id: u64,
        player: PlayerId,
        reason: Goodbye,
    },
    /// The master's answer to an instance request.
    InstanceAnswer {
        request_id: u64,
        answer: self::core::instances::InstanceAnswer,
    },
    Master(MasterLinkStatus),
}

/// A reconnect to `session_id`, its proof already checked, on connection
/// `conn` (whose writer is `writer`).
pub(crate) struct ResumeRequest {
    pub(crate) conn: u64,
    pub(crate) player: PlayerId,
    pub(crate) session_id: u64,
    pub(crate) session: Box<StreamSession>,
    pub(crate) claim: ResumeClaim,
    pub(crate) writer: Writer,
    pub(crate) reply: oneshot::Sender<Result<Resumed, Goodbye>>,
}

/// What the core gives a connection whose reconnect it accepted (what the
/// player missed is already queued to its writer).
pub(crate) struct Resumed {
    pub(crate) player: PlayerId,
    pub(crate) session: Box<StreamSession>,
    /// Data messages of the client's that the cluster had received.
    pub(crate) received: u64,
}

/// What every task of a cluster shares.
pub(crate) struct Shared {
    pub(crate) config: ClusterConfig,
    pub(crate) key: Key,
    pub(crate) cluster_id: u64,
    pub(crate) tcp_port: u16,
    pub(crate) udp_port: u16,
    /// What the core publishes: seats, fragments, resumable sessions.
    pub(crate) published: Arc<Published>,
    pub(crate) used_tokens: Mutex<UsedTokens>,
    pub(crate) handshakes: Arc<crate::handshake_gate::HandshakeGate>,
    pub(crate) events: mpsc::Sender<CoreEvent>,
    /// Numbers the player connections, so events of a connection the
    /// player has left behind (after a reconnect) are told apart.
    pub(crate) next_conn: AtomicU64,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Bytes of payload queued for the core (`event_queue_bytes`).
    pub(crate) event_budget: budget::EventBudget,
    /// WebSocket players' datagram routes and reconnect secrets.
    pub(crate) web: Arc<web_routes::WebPlayers>,
    /// The WebSocket port web clients are told, and whether it is `wss://`.
    pub(crate) web_port: Option<(u16, bool)>,
}

/// A cluster's shared state for a test of a connection task, with the
/// ends of its event queue and shutdown flag that keep them open.
#[cfg(test)]
pub(crate) fn test_shared(
    config: ClusterConfig,
) -> (Arc<Shared>, mpsc::Receiver<CoreEvent>, watch::Sender<bool>) {
    let (events, events_rx) = mpsc::channel(16);
    let (stop, stop_rx) = watch::channel(false);
    let published = Arc::new(Published::default());
    let key = Key::from_bytes([7; 32]);
    let shared = new_shared(config, key, (1, 1), published, events, stop_rx, None);
    (shared, events_rx, stop)
}

/// Runs a cluster with no outside commands. See [`run_with_handle`].
pub async fn run(
    tcp: TcpListener,
    udp: UdpSocket,
    config: ClusterConfig,
    key: Key,
    plugin: impl Plugin,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    run_with_web(tcp, udp, None, config, key, plugin, shutdown).await
}

/// As [`run`], with the WebSocket listener of `config.websocket` bound
/// already ([`crate::web::WebSocketConfig::bind_listener`]), so that a
/// process binds all its ports before it starts any server; `None` binds it
/// here. A listener without `config.websocket` is a configuration error.
pub async fn run_with_web(
    tcp: TcpListener,
    udp: UdpSocket,
    web: Option<TcpListener>,
    config: ClusterConfig,
    key: Key,
    plugin: impl Plugin,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let (_handle, commands) = command_channel(1);
    serve((tcp, udp, web), config, key, plugin, commands, shutdown).await
}

/// Runs a cluster on already-bound sockets until `shutdown` completes,
/// taking commands from the [`ClusterHandle`] paired with `commands`.
/// On shutdown every player is told `ServerShutdown` and the master is told
/// the cluster is leaving.
pub async fn run_with_handle(
    tcp: TcpListener,
    udp: UdpSocket,
    config: ClusterConfig,
    key: Key,
    plugin: impl Plugin,
    commands: ClusterCommands,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    serve((tcp, udp, None), config, key, plugin, commands, shutdown).await
}

/// [`run_with_handle`] on `(tcp, udp, web)`, the WebSocket listener bound
/// here when `None` and the configuration asks for one.
async fn serve(
    (tcp, udp, web): (TcpListener, UdpSocket, Option<TcpListener>),
    config: ClusterConfig,
    key: Key,
    plugin: impl Plugin,
    mut commands: ClusterCommands,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    receivers::check(config.receive_threads)?;
    ClusterConfig::check_seal_threads(config.seal_threads)?;
    let max_reliable = self::core::max_reliable(&config);
    commands.max_reliable.store(max_reliable, Ordering::Relaxed);
    let web_listener = bind_web(&config, web).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (events_tx, mut events_rx) = mpsc::channel::<CoreEvent>(16_384);
    let (link_tx, link_rx) =
        queue::queue::<LinkEvent>(Arc::new(QueueLevel::new(LINK_QUEUE, usize::MAX)));
    udp::widen_receive_buffer(&udp);
    let ports = (tcp.local_addr()?.port(), udp.local_addr()?.port());
    let udp = Arc::new(udp);
    let published = Arc::new(Published::default());
    let web_port = web_listener.as_ref().map(|(_, port, tls)| (*port, *tls));
    let shared = new_shared(
        config,
        key,
        ports,
        published.clone(),
        events_tx,
        stop_rx,
        web_port,
    );
    let cluster_id = shared.cluster_id;
    info!(
        cluster_id,
        name = %shared.config.name,
        tcp = %tcp.local_addr()?,
        udp = %udp.local_addr()?,
        master = %shared.config.master_addr,
        "cluster listening"
    );
    let setup = Setup {
        config: shared.config.clone(),
        published,
        link: link_tx.level(),
        moving: commands.moving.clone(),
        seed: rand::rng().next_u64(),
    };
    let mut core = new_core(plugin, setup)?;
    let sockets = (tcp, udp.clone(), web_listener);
    let (mut tasks, udp_ctl) = spawn_tasks(&shared, sockets, link_rx)?;
    let mut io = Io::new(&shared, &udp, udp_ctl, link_tx)?;
    let update_tick = shared.config.update_tick.max(Duration::from_millis(1));
    let (mut update, mut tick) = (every(update_tick), every(shared.config.limits.heartbeat()));
    core.start(Instant::now());
    tokio::pin!(shutdown);
    loop {
        // At the deadline (the timer wakes at or just after it): `timeout`
        // lets go of what is overdue, `finish` seals the state batches due.
        let due = core.poll_timeout();
        let wake = tokio::time::Instant::from_std(due.unwrap_or_else(Instant::now));
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep_until(wake), if due.is_some() => core.handle_timeout(Instant::now()),
            Some(ev) = events_rx.recv() => on_event(&mut core, &mut io, ev).await,
            Some(cmd) = commands.rx.recv() => core.handle_command(Instant::now(), cmd),
            _ = update.tick() => {
                let started = Instant::now();
                core.handle_update(started);
                shared.config.metrics.tick(started.elapsed().as_secs_f64());
            }
            _ = tick.tick() => on_heartbeat(&mut core, &shared),
            _ = io.udp.resume(), if io.udp.is_blocked() => {}
        }
        core.finish();
        io.carry_out(&mut core).await;
        // The datagrams of several inputs leave together: sent once no
        // event waits (or a batch is full, see `UdpSender::queue`).
        if events_rx.is_empty() {
            io.flush();
        }
    }
    core.shutdown();
    io.carry_out(&mut core).await;
    io.flush();
    let _ = stop_tx.send(true);
    crate::listen::wind_down(&mut tasks).await;
    Ok(())
}

/// The cluster's tasks besides the core's driver: the players' TCP and
/// WebSocket listeners, the UDP receivers and the master link; with the
/// queues that tell the UDP receivers sessions.
fn spawn_tasks(
    shared: &Arc<Shared>,
    (tcp, udp, web_listener): (
        TcpListener,
        Arc<UdpSocket>,
        Option<(TcpListener, u16, bool)>,
    ),
    link_rx: queue::QueueRx<LinkEvent>,
) -> Result<(tokio::task::JoinSet<()>, UdpControls), ServerError> {
    let mut tasks = tokio::task::JoinSet::new();
    let span = info_span!("accept");
    tasks.spawn(player_conn::accept_loop(shared.clone(), tcp).instrument(span));
    let udp_ctl = receivers::start(shared, &udp, &mut tasks)?;
    if let Some((l, port, tls)) = web_listener {
        info!(addr = %l.local_addr()?, port, tls, "cluster listening for WebSocket players");
        let span = info_span!("web_accept");
        tasks.spawn(web_player::accept_loop(shared.clone(), l).instrument(span));
    }
    let span = info_span!("master_link");
    tasks.spawn(master_link::master_link(shared.clone(), link_rx).instrument(span));
    Ok((tasks, udp_ctl))
}

/// The heartbeat tick: the core's, then the gauges and the core's own
/// heartbeat metric.
fn on_heartbeat<P: Plugin>(core: &mut Core<P>, shared: &Shared) {
    let now = now_ms();
    core.handle_heartbeat(Instant::now(), now);
    sample_metrics(core, shared);
    let heartbeat = shared.config.limits.heartbeat();
    shared.config.metrics.heartbeat().beat(now, heartbeat);
}

/// The gauges the heartbeat samples: players, the deepest send queue, the
/// occupied fragments.
fn sample_metrics<P: Plugin>(core: &Core<P>, shared: &Shared) {
    let m = &shared.config.metrics;
    m.set_players(
        shared.published.player_count.load(Ordering::Relaxed),
        shared.config.connection_limit(),
    );
    m.set_send_queue_depth(core.deepest_send_queue());
    m.set_fragments(core.fragment_cells());
}

/// What every task of the cluster shares; `ports` are the bound TCP and
/// UDP ports (announced unless the configuration names public ones).
fn new_shared(
    config: ClusterConfig,
    key: Key,
    (tcp_port, udp_port): (u16, u16),
    published: Arc<Published>,
    events: mpsc::Sender<CoreEvent>,
    shutdown: watch::Receiver<bool>,
    web_port: Option<(u16, bool)>,
) -> Arc<Shared> {
    Arc::new(Shared {
        handshakes: crate::handshake_gate::HandshakeGate::new(&config.limits),
        // Below 2^63, so engines with signed 64-bit integers see it positive.
        cluster_id: config
            .cluster_id
            .unwrap_or_else(|| rand::rng().next_u64() >> 1),
        tcp_port: config.public_tcp_port.unwrap_or(tcp_port),
        udp_port: config.public_udp_port.unwrap_or(udp_port),
        event_budget: budget::EventBudget::new(config.event_queue_bytes),
        config,
        key,
        published,
        used_tokens: Mutex::new(UsedTokens::new()),
        events,
        next_conn: AtomicU64::new(1),
        shutdown,
        web: Default::default(),
        web_port,
    })
}

/// The WebSocket players' listener, when the configuration asks for one
/// (`bound`, or one bound now): the listener, the port announced to players
/// and whether it serves TLS.
async fn bind_web(
    config: &ClusterConfig,
    bound: Option<TcpListener>,
) -> Result<Option<(TcpListener, u16, bool)>, ServerError> {
    let ws = config.websocket.as_ref();
    let (Some(ws), Some(l)) = (
        ws,
        crate::web::WebSocketConfig::listener_for(ws, bound).await?,
    ) else {
        return Ok(None);
    };
    let port = if ws.public_port == 0 {
        l.local_addr()?.port()
    } else {
        ws.public_port
    };
    Ok(Some((l, port, ws.serves_tls())))
}

/// A timer that fires every `period`, skipping what it missed.
fn every(period: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval(period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// The core made from `setup`, started now; an invalid
/// grid is a configuration error.
fn new_core<P: Plugin>(plugin: P, setup: Setup) -> Result<Core<P>, ServerError> {
    Core::new(plugin, setup, Instant::now()).map_err(|e| {
        ServerError::Config(crate::config::ConfigError::Invalid {
            path: "<cluster config>".into(),
            key: "grid".into(),
            message: e.to_string(),
        })
    })
}

/// Where the core's datagrams are sealed and sent: on the driver's thread
/// (through [`UdpSender`]), or by the seal workers (`[cluster]
/// seal_threads` of 2 or more), which send them themselves.
enum Sealing {
    Here,
    Workers {
        pool: seal_pool::SealPool,
        /// Datagrams on their way from the core to the workers.
        taken: Vec<self::core::Transmit>,
    },
}

impl Sealing {
    fn start(
        config: &ClusterConfig,
        udp: &Arc<UdpSocket>,
        web: &Arc<web_routes::WebPlayers>,
    ) -> Result<Self, ServerError> {
        if config.seal_threads <= 1 {
            return Ok(Sealing::Here);
        }
        let sink = || seal_pool::SocketSink::new(udp.clone(), web.clone(), config.metrics.clone());
        let pool = seal_pool::SealPool::new(config.seal_threads, config.seal_queue_bytes, sink)?;
        info!(
            threads = pool.threads(),
            "datagrams are sealed by seal workers"
        );
        Ok(Sealing::Workers {
            pool,
            taken: Vec::new(),
        })
    }
}

/// What the driver carries the core's outputs out with.
struct Io {
    udp: UdpSender,
    udp_ctl: UdpControls,
    link: QueueTx<LinkEvent>,
    metrics: crate::metrics::ClusterMetrics,
    /// The writers of the connections the core has a player on, by
    /// connection number.
    writers: HashMap<u64, Writer>,
    /// Where web players' datagrams go instead of the UDP socket.
    web: Arc<web_routes::WebPlayers>,
    /// Where datagrams are sealed and sent.
    seal: Sealing,
}

impl Io {
    /// The driver's means to carry out the core's outputs: the UDP socket
    /// (and the seal workers, if any), the UDP receiver's and the master
    /// link's queues, the players' writers.
    fn new(
        shared: &Shared,
        udp: &Arc<UdpSocket>,
        udp_ctl: UdpControls,
        link: QueueTx<LinkEvent>,
    ) -> Result<Self, ServerError> {
        Ok(Io {
            udp: UdpSender::new(udp.clone(), shared.config.metrics.clone()),
            udp_ctl,
            link,
            metrics: shared.config.metrics.clone(),
            writers: HashMap::new(),
            web: shared.web.clone(),
            seal: Sealing::start(&shared.config, udp, &shared.web)?,
        })
    }

    /// Carries out every output of the core, in order, then queues its
    /// datagrams (sent by [`UdpSender::flush`] or once a batch is full).
    async fn carry_out<P: Plugin>(&mut self, core: &mut Core<P>) {
        while let Some(o) = core.poll_output() {
            match o {
                Output::Send { conn, message } => {
                    if let Some(w) = self.writers.get(&conn) {
                        w.out.deliver(message);
                    }
                }
                Output::Close {
                    conn,
                    goodbye,
                    drain,
                } => {
                    if let Some(w) = self.writers.remove(&conn) {
                        let _ = w.kill.send((goodbye, drain));
                    }
                }
                Output::Release { conn } => {
                    self.writers.remove(&conn);
                }
                Output::Link(ev) => self.link.deliver(ev),
                Output::SessionGone { session_id, reason } => {
                    self.web.forget(session_id);
                    self.metrics.disconnect(reason, now_ms());
                    self.udp_ctl.send(UdpControl::Remove { session_id }).await;
                }
            }
        }
        let metrics = &self.metrics;
        let (web, udp) = (&self.web, &mut self.udp);
        let Sealing::Workers { pool, taken } = &mut self.seal else {
            core.drain_transmits(|addr, d| {
                // A web player's datagrams go to its connection; the others
                // on UDP, many per system call (counted when they leave).
                if web.deliver(addr, d) {
                    metrics.sent(false, 1, d.len());
                } else {
                    udp.queue(addr, d);
                }
            });
            return;
        };
        // The seal workers seal and send them (`seal_pool.rs`), handed over
        // as the UDP sender sends: once a batch is full or no event waits.
        core.take_transmits(taken);
        core.give_back_buffers(pool.returned_buffers());
        if taken.len() >= udp_send::SEND_BATCH {
            submit_to_workers(pool, taken, metrics);
        }
    }

    /// Sends the datagrams that wait: the UDP sender's, or those for the
    /// seal workers.
    fn flush(&mut self) {
        match &mut self.seal {
            Sealing::Here => self.udp.flush(),
            Sealing::Workers { pool, taken } => submit_to_workers(pool, taken, &self.metrics),
        }
    }
}

/// Hands `taken` to the seal workers, counting what their full queues drop.
fn submit_to_workers(
    pool: &mut seal_pool::SealPool,
    taken: &mut Vec<self::core::Transmit>,
    metrics: &crate::metrics::ClusterMetrics,
) {
    for _ in 0..pool.submit(taken) {
        metrics.datagram_dropped("seal_busy");
    }
}

/// Hands one event of another task to the core, and its answer back.
async fn on_event<P: Plugin>(core: &mut Core<P>, io: &mut Io, ev: CoreEvent) {
    let now = Instant::now();
    match ev {
        CoreEvent::Join {
            player,
            conn,
            session_id,
            user_data,
            writer,
            keys,
            udp,
            reply,
        } => {
            let j = NewPlayer {
                player,
                conn,
                session_id,
                user_data,
                out: writer.out.level(),
                keys,
                udp: udp.sealer,
            };
            on_join(core, io, now, (j, writer), udp.opener, reply).await;
        }
        CoreEvent::Resume(r) => on_resume(core, io, now, r),
        CoreEvent::Packet {
            player,
            conn,
            command,
            payload,
            budget,
        } => {
            core.metrics().received(true, payload.len());
            core.handle_packet(now, player, conn, command, &payload);
            drop(budget);
        }
        CoreEvent::Ack {
            player,
            conn,
            count,
        } => core.handle_ack(now, player, conn, count),
        CoreEvent::Left {
            player,
            conn,
            reason,
        } => core.handle_left(now, player, conn, reason),
        CoreEvent::Udp {
            player,
            session_id,
            addr,
            len,
            records,
            budget,
        } => {
            core.metrics().received(false, len);
            core.handle_datagram(now, player, session_id, addr, len, records);
            drop(budget);
        }
        CoreEvent::Snapshot(reply) => {
            let _ = reply.send(core.snapshot());
        }
        CoreEvent::TransferReady {
            request_id,
            player,
            ticket,
        } => {
            if let Some(waited) = core.transfer_waited(now, request_id) {
                core.metrics().transfer_redirected(waited.as_secs_f64());
            }
            core.handle_transfer_ready(now, request_id, player, ticket);
        }
        CoreEvent::TransferFailed {
            request_id,
            player,
            reason,
        } => {
            if core.transfer_waited(now, request_id).is_some() {
                core.metrics().transfer_failed();
            }
            core.handle_transfer_failed(now, request_id, player, &reason);
        }
        CoreEvent::InstanceAnswer { request_id, answer } => {
            core.handle_instance_answer(now, request_id, &answer);
        }
        CoreEvent::Master(status) => {
            let up = matches!(status, MasterLinkStatus::Registered { .. });
            core.metrics().set_master_link(up);
            core.handle_master(now, &status);
        }
    }
}

/// A reconnect: the core accepts it (the player's writer is the new
/// connection's from now on) or refuses it; the connection hears which.
fn on_resume<P: Plugin>(core: &mut Core<P>, io: &mut Io, now: Instant, req: ResumeRequest) {
    let ResumeRequest {
        conn,
        player,
        session_id,
        session,
        claim,
        writer,
        reply,
    } = req;
    let away = core.away_for(now, player);
    let r = core.handle_resume(now, conn, writer.out.level(), player, session_id, claim);
    let r = r.map(|a| Resumed {
        player,
        session,
        received: a.received,
    });
    let accepted = r.is_ok();
    if accepted {
        io.writers.insert(conn, writer);
    }
    match (reply.send(r).is_ok(), accepted) {
        (true, true) => {
            core.metrics().reconnect(away.as_secs_f64());
            core.handle_reconnected(now, player);
        }
        (false, true) => core.handle_resume_abandoned(now, player),
        _ => {}
    }
}

/// A join: admitted by the core (capacity, the newest connection wins),
/// known to the UDP receivers before the player hears Welcome (so its very first
/// datagram is not dropped), then in the table.
async fn on_join<P: Plugin>(
    core: &mut Core<P>,
    io: &mut Io,
    now: Instant,
    (j, writer): (NewPlayer, Writer),
    opener: sustenet_proto::crypto::DatagramOpener,
    reply: oneshot::Sender<Result<(), Goodbye>>,
) {
    if let Err(goodbye) = core.admit(now, j.player) {
        let _ = reply.send(Err(goodbye));
        return;
    }
    core.finish();
    io.carry_out(core).await;
    let session_id = j.session_id;
    let add = UdpControl::Add {
        session_id,
        session: udp::SessionOpener::new(j.player, opener),
    };
    io.udp_ctl.send(add).await;
    if reply.send(Ok(())).is_err() {
        io.udp_ctl.try_send(UdpControl::Remove { session_id });
        return;
    }
    io.writers.insert(j.conn, writer);
    core.metrics().join();
    core.handle_join(now, j);
}
