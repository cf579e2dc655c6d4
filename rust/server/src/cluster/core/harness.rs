//! An in-memory harness for [`Core`]: a fake clock, fake players (their
//! writer queues and goodbyes read directly), the master link's queue, and a
//! plugin that records every callback. No socket, no task, no sleep:
//! `step()` jumps the clock to the next deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sustenet_proto::handshake::ResumeClaim;
use sustenet_proto::{
    ClientSessionKeys, ClusterToClient, DisconnectReason, Goodbye, Key, Side, UsedTokens,
};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Core, Interest, NewPlayer, Transfers};
use crate::cluster::master_link::LinkEvent;
use crate::cluster::{ClusterConfig, Context, Shared};
use crate::fragments::{FragmentEvent, Fragments};
use crate::ids::PlayerId;
use crate::plugin::{Channel, Plugin};

/// What the recording plugin saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    Connect(PlayerId),
    Packet(PlayerId, u16, Vec<u8>, Channel),
    Disconnect(PlayerId, DisconnectReason),
    Lost(PlayerId),
    Reconnect(PlayerId),
    TransferFailed(PlayerId, DisconnectReason),
    Fragment(FragmentEvent),
}

/// Records every callback; echoes reliable command [`Recorder::ECHO`].
pub(crate) struct Recorder(pub(crate) Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    pub(crate) const ECHO: u16 = 1;

    fn push(&self, s: Seen) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    }
}

impl Plugin for Recorder {
    fn on_connect(&mut self, _: &mut Context<'_>, player: PlayerId, _: &[u8]) {
        self.push(Seen::Connect(player));
    }
    fn on_packet(
        &mut self,
        ctx: &mut Context<'_>,
        player: PlayerId,
        command: u16,
        payload: &[u8],
        channel: Channel,
    ) {
        self.push(Seen::Packet(player, command, payload.to_vec(), channel));
        if command == Self::ECHO && channel == Channel::Reliable {
            let _ = ctx.send(player, command, payload);
        }
    }
    fn on_disconnect(&mut self, _: &mut Context<'_>, player: PlayerId, reason: DisconnectReason) {
        self.push(Seen::Disconnect(player, reason));
    }
    fn on_connection_lost(&mut self, _: &mut Context<'_>, player: PlayerId, _: DisconnectReason) {
        self.push(Seen::Lost(player));
    }
    fn on_reconnect(&mut self, _: &mut Context<'_>, player: PlayerId) {
        self.push(Seen::Reconnect(player));
    }
    fn on_transfer_failed(&mut self, _: &mut Context<'_>, player: PlayerId, reason: &Goodbye) {
        self.push(Seen::TransferFailed(player, reason.reason));
    }
    fn on_fragment(&mut self, _: &mut Context<'_>, event: FragmentEvent) {
        self.push(Seen::Fragment(event));
    }
}

/// One fake player's current connection, as its writer task would see it.
pub(crate) struct Conn {
    pub(crate) conn: u64,
    pub(crate) out: super::OutboxRx,
    pub(crate) kill: oneshot::Receiver<(Goodbye, bool)>,
}

impl Conn {
    /// Everything queued to the connection so far.
    pub(crate) fn drain(&mut self) -> Vec<ClusterToClient> {
        let mut v = Vec::new();
        while let Some(m) = self.out.try_recv() {
            v.push(m);
        }
        v
    }

    /// The goodbye the core closed this connection with, if it did.
    pub(crate) fn goodbye(&mut self) -> Option<(Goodbye, bool)> {
        self.kill.try_recv().ok()
    }
}

/// A core on a fake clock.
pub(crate) struct Harness {
    pub(crate) core: Core<Recorder>,
    pub(crate) now: Instant,
    pub(crate) seen: Arc<Mutex<Vec<Seen>>>,
    pub(crate) link: mpsc::Receiver<LinkEvent>,
    pub(crate) shared: Arc<Shared>,
    next_conn: u64,
    sessions: HashMap<PlayerId, u64>,
    _events: mpsc::Receiver<crate::cluster::CoreEvent>,
    _stop: watch::Sender<bool>,
}

impl Harness {
    /// A core with `config`, started at a fixed instant.
    pub(crate) fn new(config: ClusterConfig) -> Harness {
        let (events, events_rx) = mpsc::channel(16);
        let (stop, stop_rx) = watch::channel(false);
        let max_reliable = config
            .limits
            .max_frame
            .saturating_sub(sustenet_proto::message::RELIABLE_OVERHEAD);
        let shared = Arc::new(Shared {
            handshakes: crate::handshake_gate::HandshakeGate::new(&config.limits),
            key: Key::from_bytes([7; 32]),
            cluster_id: 1,
            tcp_port: 1,
            udp_port: 1,
            player_count: AtomicUsize::new(0),
            used_tokens: Mutex::new(UsedTokens::new()),
            events,
            resync: AtomicBool::new(false),
            sessions: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            max_reliable,
            fragment_count: AtomicUsize::new(0),
            shutdown: stop_rx,
            event_budget: crate::cluster::budget::EventBudget::new(config.event_queue_bytes),
            web: Default::default(),
            web_port: None,
            config,
        });
        let (link_tx, link) = mpsc::channel(1024);
        let transfers = Transfers {
            link: link_tx,
            next_id: 1,
            pending: HashMap::new(),
            timeout: Duration::from_secs(5),
            moving: Default::default(),
            refused: Vec::new(),
        };
        let fragments = Fragments::new(shared.config.grid).unwrap_or_else(|e| panic!("{e}"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let now = Instant::now();
        let mut core = Core::new(
            Recorder(seen.clone()),
            shared.clone(),
            Interest::new(fragments),
            transfers,
            1,
            now,
        );
        core.start(now);
        Harness {
            core,
            now,
            seen,
            link,
            shared,
            next_conn: 1,
            sessions: HashMap::new(),
            _events: events_rx,
            _stop: stop,
        }
    }

    /// What the plugin saw since the last call.
    pub(crate) fn seen(&mut self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A new player's connection: admitted and joined, or the refusal.
    pub(crate) fn join(&mut self, player: PlayerId) -> Result<Conn, Goodbye> {
        self.core.admit(self.now, player)?;
        self.core.finish();
        let conn = self.next_conn;
        self.next_conn += 1;
        let session_id = 1000 + conn;
        let keys = ClientSessionKeys::derive(&[conn as u8; 32], &[0x33; 32])
            .unwrap_or_else(|e| panic!("{e}"));
        let udp = keys.datagram(Side::Responder, session_id);
        let config = &self.shared.config;
        let (out_tx, out) = super::outbox(config.limits.send_queue, config.send_queue_bytes);
        let (kill_tx, kill) = oneshot::channel();
        self.core.join(
            self.now,
            NewPlayer {
                player,
                conn,
                session_id,
                user_data: Vec::new(),
                out: out_tx,
                kill: kill_tx,
                keys: Arc::new(keys),
                udp: udp.sealer,
            },
        );
        self.core.finish();
        self.sessions.insert(player, session_id);
        Ok(Conn { conn, out, kill })
    }

    /// A reliable message from the player's connection `c`.
    pub(crate) fn packet(&mut self, player: PlayerId, c: &Conn, command: u16, payload: &[u8]) {
        self.core.packet(self.now, player, c.conn, command, payload);
        self.core.finish();
    }

    /// The player's connection `c` dropped (or timed out).
    pub(crate) fn lost(&mut self, player: PlayerId, c: &Conn) {
        self.core
            .left(self.now, player, c.conn, DisconnectReason::ConnectionLost);
        self.core.finish();
    }

    /// A proven reconnect of `player`, claiming `received` messages, as
    /// attempt `attempt`; the new connection and what the cluster had
    /// received of the client's, or the refusal.
    pub(crate) fn resume(
        &mut self,
        player: PlayerId,
        received: u64,
        attempt: u64,
    ) -> Result<(Conn, u64), Goodbye> {
        let conn = self.next_conn;
        self.next_conn += 1;
        let session_id = self.sessions.get(&player).copied().unwrap_or(0);
        let claim = ResumeClaim { received, attempt };
        let r = self.core.resume(self.now, conn, player, session_id, claim);
        let r = r.map(|a| {
            self.core.reconnected(self.now, player);
            (
                Conn {
                    conn,
                    out: a.out_rx,
                    kill: a.kill,
                },
                a.received,
            )
        });
        self.core.finish();
        r
    }

    /// Runs `f` as a handle's command would.
    pub(crate) fn command(&mut self, f: impl FnOnce(&mut Context<'_>) + Send + 'static) {
        self.core.command(self.now, Box::new(f));
        self.core.finish();
    }

    /// Moves the clock on by `d` and runs a heartbeat.
    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.core.heartbeat(self.now, 0);
        self.core.finish();
    }

    /// Jumps the clock just past the core's next deadline and runs a
    /// heartbeat there; false when nothing is due.
    pub(crate) fn step(&mut self) -> bool {
        let Some(at) = self.core.poll_timeout() else {
            return false;
        };
        let by = at.saturating_duration_since(self.now) + Duration::from_millis(1);
        self.advance(by);
        true
    }

    /// Steps until no deadline is left (at most `limit` steps).
    pub(crate) fn drive(&mut self, limit: usize) {
        for _ in 0..limit {
            if !self.step() {
                return;
            }
        }
    }

    /// Players on the cluster, as the seat count sees them.
    pub(crate) fn seats(&self) -> usize {
        self.shared
            .player_count
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sessions that can still be resumed.
    pub(crate) fn resumable(&self) -> usize {
        self.shared
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}
