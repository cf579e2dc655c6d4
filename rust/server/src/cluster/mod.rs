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
//! - `udp.rs`: the UDP receiver; `ping_limit.rs`: its ping request limits;
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
mod handle;
mod master_link;
mod ping_limit;
mod player_conn;
pub mod plugin;
mod udp;
mod web_player;
mod web_routes;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

pub use self::config::{ClusterConfig, MasterLinkStatus, SendError};
pub use self::core::Context;
pub use handle::{ClusterCommands, ClusterHandle, command_channel};

use self::core::{Core, Interest, NewPlayer, Transfers};
use crate::error::ServerError;
use crate::fragments::Fragments;
use crate::ids::PlayerId;
use crate::time::now_ms;
use master_link::LinkEvent;
use plugin::Plugin;
use udp::UdpControl;

/// Sessions that can be resumed, by session id: the connection tasks check
/// a reconnect's proof here, off the core task, and only pass on proven ones.
type Sessions = Mutex<HashMap<u64, (PlayerId, Arc<ClientSessionKeys>)>>;

/// What the other tasks tell the core.
pub(crate) enum CoreEvent {
    Join {
        player: PlayerId,
        conn: u64,
        session_id: u64,
        user_data: Vec<u8>,
        out: self::core::Outbox,
        kill: oneshot::Sender<(Goodbye, bool)>,
        keys: Arc<ClientSessionKeys>,
        udp: Box<DatagramSession>,
        reply: oneshot::Sender<Result<(), Goodbye>>,
    },
    /// A reconnect to `session_id`, its proof already checked, on connection
    /// `conn`.
    Resume {
        conn: u64,
        player: PlayerId,
        session_id: u64,
        session: Box<StreamSession>,
        claim: ResumeClaim,
        reply: oneshot::Sender<Result<Resumed, Goodbye>>,
    },
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
    Master(MasterLinkStatus),
}

/// What the core gives a connection whose reconnect it accepted.
pub(crate) struct Resumed {
    pub(crate) player: PlayerId,
    pub(crate) session: Box<StreamSession>,
    /// Data messages of the client's that the cluster had received.
    pub(crate) received: u64,
    pub(crate) out: self::core::Outbox,
    /// Holds the messages to send again, then everything new.
    pub(crate) out_rx: self::core::OutboxRx,
    pub(crate) kill: oneshot::Receiver<(Goodbye, bool)>,
}

/// What every task of a cluster shares.
pub(crate) struct Shared {
    pub(crate) config: ClusterConfig,
    pub(crate) key: Key,
    pub(crate) cluster_id: u64,
    pub(crate) tcp_port: u16,
    pub(crate) udp_port: u16,
    pub(crate) player_count: AtomicUsize,
    pub(crate) used_tokens: Mutex<UsedTokens>,
    pub(crate) handshakes: Arc<crate::handshake_gate::HandshakeGate>,
    pub(crate) events: mpsc::Sender<CoreEvent>,
    pub(crate) resync: AtomicBool,
    pub(crate) sessions: Sessions,
    /// Numbers the player connections, so events of a connection the
    /// player has left behind (after a reconnect) are told apart.
    pub(crate) next_conn: AtomicU64,
    /// Largest reliable payload that fits the frame limit.
    pub(crate) max_reliable: usize,
    /// Occupied fragments, for the status report.
    pub(crate) fragment_count: AtomicUsize,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Bytes of payload queued for the core (`event_queue_bytes`).
    pub(crate) event_budget: budget::EventBudget,
    /// WebSocket players' datagram routes and reconnect secrets.
    pub(crate) web: web_routes::WebPlayers,
    /// The WebSocket port web clients are told, and whether it is `wss://`.
    pub(crate) web_port: Option<(u16, bool)>,
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
    let (_handle, commands) = command_channel(1);
    run_with_handle(tcp, udp, config, key, plugin, commands, shutdown).await
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
    mut commands: ClusterCommands,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let tcp_port = config.public_tcp_port.unwrap_or(tcp.local_addr()?.port());
    let udp_port = config.public_udp_port.unwrap_or(udp.local_addr()?.port());
    // Below 2^63, so engines with signed 64-bit integers see it positive.
    let cluster_id = config
        .cluster_id
        .unwrap_or_else(|| rand::rng().next_u64() >> 1);
    let max_reliable = config
        .limits
        .max_frame
        .saturating_sub(sustenet_proto::message::RELIABLE_OVERHEAD);
    commands.max_reliable.store(max_reliable, Ordering::Relaxed);
    let config_event_bytes = config.event_queue_bytes;
    let web_listener = match &config.websocket {
        Some(ws) => {
            ws.check()?;
            let l = TcpListener::bind(ws.bind).await?;
            let port = if ws.public_port == 0 {
                l.local_addr()?.port()
            } else {
                ws.public_port
            };
            Some((l, port, ws.serves_tls()))
        }
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let (events_tx, mut events_rx) = mpsc::channel::<CoreEvent>(16_384);
    let (udp_ctl_tx, udp_ctl_rx) = mpsc::channel::<UdpControl>(16_384);
    let (link_tx, link_rx) = mpsc::channel::<LinkEvent>(65_536);
    udp::widen_receive_buffer(&udp);
    let udp = Arc::new(udp);
    let shared = Arc::new(Shared {
        handshakes: crate::handshake_gate::HandshakeGate::new(&config.limits),
        config,
        key,
        cluster_id,
        tcp_port,
        udp_port,
        player_count: AtomicUsize::new(0),
        used_tokens: Mutex::new(UsedTokens::new()),
        events: events_tx,
        resync: AtomicBool::new(false),
        sessions: Mutex::new(HashMap::new()),
        next_conn: AtomicU64::new(1),
        max_reliable,
        fragment_count: AtomicUsize::new(0),
        shutdown: stop_rx,
        event_budget: budget::EventBudget::new(config_event_bytes),
        web: web_routes::WebPlayers::default(),
        web_port: web_listener.as_ref().map(|(_, port, tls)| (*port, *tls)),
    });
    info!(
        cluster_id,
        name = %shared.config.name,
        tcp = %tcp.local_addr()?,
        udp = %udp.local_addr()?,
        master = %shared.config.master_addr,
        "cluster listening"
    );
    let mut core = new_core(plugin, &shared, link_tx, &commands)?;
    let mut tasks = tokio::task::JoinSet::new();
    let span = info_span!("accept");
    tasks.spawn(player_conn::accept_loop(shared.clone(), tcp).instrument(span));
    let span = info_span!("udp");
    tasks.spawn(udp::udp_loop(shared.clone(), udp.clone(), udp_ctl_rx).instrument(span));
    if let Some((l, port, tls)) = web_listener {
        info!(addr = %l.local_addr()?, port, tls, "cluster listening for WebSocket players");
        let span = info_span!("web_accept");
        tasks.spawn(web_player::accept_loop(shared.clone(), l).instrument(span));
    }
    let span = info_span!("master_link");
    tasks.spawn(master_link::master_link(shared.clone(), link_rx).instrument(span));

    let update_tick = shared.config.update_tick.max(Duration::from_millis(1));
    let mut update = tokio::time::interval(update_tick);
    update.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = tokio::time::interval(shared.config.limits.heartbeat());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    core.start(Instant::now());
    tokio::pin!(shutdown);
    loop {
        // Just past the deadline: `timeout` lets go of what is overdue.
        let due = core.poll_timeout().map(|d| d + Duration::from_millis(1));
        let wake = tokio::time::Instant::from_std(due.unwrap_or_else(Instant::now));
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep_until(wake), if due.is_some() => core.timeout(Instant::now()),
            Some(ev) = events_rx.recv() => on_event(&mut core, &shared, &udp_ctl_tx, ev).await,
            Some(cmd) = commands.rx.recv() => core.command(Instant::now(), cmd),
            _ = update.tick() => {
                let started = Instant::now();
                core.update(started);
                shared.config.metrics.tick(started.elapsed().as_secs_f64());
            }
            _ = tick.tick() => {
                core.heartbeat(Instant::now(), now_ms());
                sample_metrics(&core, &shared);
            }
        }
        core.finish();
        let metrics = &shared.config.metrics;
        core.drain_transmits(|addr, d| {
            // A web player's datagrams go to its connection; the others on
            // UDP, where a full socket buffer drops them, as the network would.
            if shared.web.deliver(addr, d) || udp.try_send_to(d, addr).is_ok() {
                metrics.sent(false, 1, d.len());
            }
        });
        for session_id in core.take_gone_sessions() {
            shared.web.forget(session_id);
            let _ = udp_ctl_tx.send(UdpControl::Remove { session_id }).await;
        }
    }
    core.shutdown();
    let _ = stop_tx.send(true);
    crate::listen::wind_down(&mut tasks).await;
    Ok(())
}

/// The gauges the heartbeat samples: players, the deepest send queue, the
/// occupied fragments.
fn sample_metrics<P: Plugin>(core: &Core<P>, shared: &Shared) {
    let m = &shared.config.metrics;
    m.set_players(
        shared.player_count.load(Ordering::Relaxed),
        shared.config.max_connections,
    );
    m.set_send_queue_depth(core.deepest_send_queue());
    m.set_fragments(core.fragment_cells());
}

/// The core with an empty grid, set up from the cluster's settings.
fn new_core<P: Plugin>(
    plugin: P,
    shared: &Arc<Shared>,
    link: mpsc::Sender<LinkEvent>,
    commands: &ClusterCommands,
) -> Result<Core<P>, ServerError> {
    let config = &shared.config;
    let fragments = Fragments::new(config.grid).map_err(|e| {
        ServerError::Config(crate::config::ConfigError::Invalid {
            path: "<cluster config>".into(),
            key: "grid".into(),
            message: e.to_string(),
        })
    })?;
    let update_tick = config.update_tick.max(Duration::from_millis(1));
    // Core ticks per period of the default update rate: each update's
    // recipients are served in this many shares (see `interest::Spread`).
    let update_slices =
        usize::try_from(config.grid.default_settings.period().as_nanos() / update_tick.as_nanos())
            .unwrap_or(1)
            .max(1);
    let transfers = Transfers {
        link,
        next_id: 1,
        pending: HashMap::new(),
        timeout: config
            .limits
            .handshake_timeout()
            .max(Duration::from_secs(5)),
        moving: commands.moving.clone(),
        refused: Vec::new(),
    };
    Ok(Core::new(
        plugin,
        shared.clone(),
        Interest::new(fragments),
        transfers,
        update_slices,
        Instant::now(),
    ))
}

/// Hands one event of another task to the core, and its answer back.
async fn on_event<P: Plugin>(
    core: &mut Core<P>,
    shared: &Shared,
    udp_ctl: &mpsc::Sender<UdpControl>,
    ev: CoreEvent,
) {
    let now = Instant::now();
    match ev {
        CoreEvent::Join {
            player,
            conn,
            session_id,
            user_data,
            out,
            kill,
            keys,
            udp,
            reply,
        } => {
            let j = NewPlayer {
                player,
                conn,
                session_id,
                user_data,
                out,
                kill,
                keys,
                udp: udp.sealer,
            };
            on_join(core, shared, udp_ctl, now, j, udp.opener, reply).await;
        }
        CoreEvent::Resume {
            conn,
            player,
            session_id,
            session,
            claim,
            reply,
        } => {
            let away = core.away_for(now, player);
            let r = core.resume(now, conn, player, session_id, claim);
            let r = r.map(|a| Resumed {
                player,
                session,
                received: a.received,
                out: a.out,
                out_rx: a.out_rx,
                kill: a.kill,
            });
            let accepted = r.is_ok();
            match (reply.send(r).is_ok(), accepted) {
                (true, true) => {
                    core.metrics().reconnect(away.as_secs_f64());
                    core.reconnected(now, player);
                }
                (false, true) => core.resume_abandoned(now, player),
                _ => {}
            }
        }
        CoreEvent::Packet {
            player,
            conn,
            command,
            payload,
            budget,
        } => {
            core.metrics().received(true, payload.len());
            core.packet(now, player, conn, command, &payload);
            drop(budget);
        }
        CoreEvent::Ack {
            player,
            conn,
            count,
        } => core.ack(player, conn, count),
        CoreEvent::Left {
            player,
            conn,
            reason,
        } => core.left(now, player, conn, reason),
        CoreEvent::Udp {
            player,
            session_id,
            addr,
            len,
            records,
            budget,
        } => {
            core.metrics().received(false, len);
            core.datagram(now, player, session_id, addr, len, records);
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
            core.transfer_ready(now, request_id, player, ticket);
        }
        CoreEvent::TransferFailed {
            request_id,
            player,
            reason,
        } => {
            if core.transfer_waited(now, request_id).is_some() {
                core.metrics().transfer_failed();
            }
            core.transfer_failed(now, request_id, player, &reason);
        }
        CoreEvent::Master(status) => {
            let up = matches!(status, MasterLinkStatus::Registered { .. });
            core.metrics().set_master_link(up);
            core.master(now, &status);
        }
    }
}

/// A join: admitted by the core (capacity, the newest connection wins),
/// known to the UDP task before the player hears Welcome (so its very first
/// datagram is not dropped), then in the table.
async fn on_join<P: Plugin>(
    core: &mut Core<P>,
    shared: &Shared,
    udp_ctl: &mpsc::Sender<UdpControl>,
    now: Instant,
    j: NewPlayer,
    opener: sustenet_proto::crypto::DatagramOpener,
    reply: oneshot::Sender<Result<(), Goodbye>>,
) {
    if let Err(goodbye) = core.admit(now, j.player) {
        let _ = reply.send(Err(goodbye));
        return;
    }
    core.finish();
    for session_id in core.take_gone_sessions() {
        shared.web.forget(session_id);
        let _ = udp_ctl.send(UdpControl::Remove { session_id }).await;
    }
    let session_id = j.session_id;
    let add = UdpControl::Add {
        session_id,
        player: j.player,
        opener: Box::new(opener),
    };
    let _ = udp_ctl.send(add).await;
    if reply.send(Ok(())).is_err() {
        let _ = udp_ctl.try_send(UdpControl::Remove { session_id });
        return;
    }
    core.metrics().join();
    core.join(now, j);
}
