// Test support, built for the fuzz targets too (feature `fuzzing`): each build uses part of
// it, and a panic in it is a test failure or a fuzzing finding.
#![allow(dead_code, clippy::panic)]
//! An in-memory harness for [`Core`]: a fake clock, fake players (their
//! writers' queues and goodbyes, filled from the core's outputs), the master
//! link's events, and a plugin that records every callback. No socket, no
//! task, no channel, no sleep: `step()` jumps the clock to the next
//! deadline, and the core's randomness comes from a fixed seed.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sustenet_proto::crypto::{DATAGRAM_OVERHEAD, DatagramOpener};
use sustenet_proto::datagram::{Record, decode_records};
use sustenet_proto::handshake::ResumeClaim;
use sustenet_proto::{ClientSessionKeys, ClusterToClient, DisconnectReason, Goodbye, Side};

use super::{Core, LinkEvent, NewPlayer, Output, Published, QueueLevel, Setup, Weight};
use crate::cluster::{ClusterConfig, Context};
use crate::fragments::FragmentEvent;
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
    Instance(u64, Result<u64, DisconnectReason>),
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
    fn on_instance(&mut self, _: &mut Context<'_>, request_id: u64, answer: &Result<u64, Goodbye>) {
        let answer = answer.as_ref().map(|id| *id).map_err(|g| g.reason);
        self.push(Seen::Instance(request_id, answer));
    }
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

/// What a fake connection's writer got from the core.
#[derive(Debug, Default)]
struct FakeWriter {
    queue: VecDeque<ClusterToClient>,
    goodbye: Option<(Goodbye, bool)>,
    /// Let go without a word (the player went away).
    released: bool,
}

/// One fake player's connection, as its writer task would see it.
pub(crate) struct Conn {
    pub(crate) conn: u64,
    level: Arc<QueueLevel>,
    writer: Arc<Mutex<FakeWriter>>,
}

impl Conn {
    fn writer(&self) -> std::sync::MutexGuard<'_, FakeWriter> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything queued to the connection so far, taken out as its writer
    /// would (which makes room in its queue).
    pub(crate) fn drain(&mut self) -> Vec<ClusterToClient> {
        let v: Vec<ClusterToClient> = self.writer().queue.drain(..).collect();
        for m in &v {
            self.level.remove(m.weight());
        }
        v
    }

    /// The goodbye the core closed this connection with, if it did.
    pub(crate) fn goodbye(&mut self) -> Option<(Goodbye, bool)> {
        self.writer().goodbye.take()
    }

    /// Whether the core let this connection's writer go without a word.
    pub(crate) fn released(&self) -> bool {
        self.writer().released
    }
}

/// The session keys of a fake connection, by the low byte of its number:
/// derived once per process (the fuzz target joins players thousands of
/// times a second, and the key derivation is not the code under test).
fn session_keys(n: u8) -> ClientSessionKeys {
    static KEYS: OnceLock<Vec<ClientSessionKeys>> = OnceLock::new();
    let all = KEYS.get_or_init(|| {
        (0..=u8::MAX)
            .map(|n| {
                ClientSessionKeys::derive(&[n; 32], &[0x33; 32]).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    });
    all[usize::from(n)].clone()
}

/// A core on a fake clock.
pub(crate) struct Harness {
    pub(crate) core: Core<Recorder>,
    pub(crate) now: Instant,
    pub(crate) seen: Arc<Mutex<Vec<Seen>>>,
    /// Events the core sent the master link, in order.
    pub(crate) link: VecDeque<LinkEvent>,
    link_level: Arc<QueueLevel>,
    /// UDP sessions the core let go, in order.
    pub(crate) gone_sessions: Vec<u64>,
    published: Arc<Published>,
    pub(crate) config: ClusterConfig,
    writers: HashMap<u64, Arc<Mutex<FakeWriter>>>,
    next_conn: u64,
    sessions: HashMap<PlayerId, u64>,
    /// Each player's client end of its UDP session, to open what the core sends.
    openers: HashMap<PlayerId, DatagramOpener>,
}

impl Harness {
    /// A core with `config`, started at a fixed instant.
    pub(crate) fn new(config: ClusterConfig) -> Harness {
        let published = Arc::new(Published::default());
        let link_level = Arc::new(QueueLevel::new(1024, usize::MAX));
        let setup = Setup {
            config: config.clone(),
            published: published.clone(),
            link: link_level.clone(),
            moving: Default::default(),
            seed: 7,
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let now = Instant::now();
        let mut core =
            Core::new(Recorder(seen.clone()), setup, now).unwrap_or_else(|e| panic!("{e}"));
        core.start(now);
        let mut h = Harness {
            core,
            now,
            seen,
            link: VecDeque::new(),
            link_level,
            gone_sessions: Vec::new(),
            published,
            config,
            writers: HashMap::new(),
            next_conn: 1,
            sessions: HashMap::new(),
            openers: HashMap::new(),
        };
        h.pump();
        h
    }

    /// What the plugin saw since the last call.
    pub(crate) fn seen(&mut self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// After an input, as the driver does: [`Core::finish`], then every
    /// output carried out into the fake writers, link and session lists.
    pub(crate) fn pump(&mut self) {
        self.core.finish();
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Send { conn, message } => {
                    if let Some(w) = self.writers.get(&conn) {
                        w.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .queue
                            .push_back(message);
                    }
                }
                Output::Close {
                    conn,
                    goodbye,
                    drain,
                } => {
                    if let Some(w) = self.writers.remove(&conn) {
                        w.lock().unwrap_or_else(|p| p.into_inner()).goodbye =
                            Some((goodbye, drain));
                    }
                }
                Output::Release { conn } => {
                    if let Some(w) = self.writers.remove(&conn) {
                        w.lock().unwrap_or_else(|p| p.into_inner()).released = true;
                    }
                }
                Output::Link(ev) => {
                    self.link_level.remove(ev.weight());
                    self.link.push_back(ev);
                }
                Output::SessionGone { session_id, .. } => self.gone_sessions.push(session_id),
            }
        }
    }

    /// A new connection's queue, known to the fake driver.
    fn new_conn(&mut self) -> Conn {
        let conn = self.next_conn;
        self.next_conn += 1;
        let level = Arc::new(QueueLevel::new(
            self.config.limits.send_queue,
            self.config.send_queue_bytes,
        ));
        let writer = Arc::new(Mutex::new(FakeWriter::default()));
        Conn {
            conn,
            level,
            writer,
        }
    }

    /// A new player's connection: admitted and joined, or the refusal.
    pub(crate) fn join(&mut self, player: PlayerId) -> Result<Conn, Goodbye> {
        self.core.admit(self.now, player)?;
        self.pump();
        let c = self.new_conn();
        let session_id = 1000 + c.conn;
        let keys = session_keys(c.conn as u8);
        let udp = keys.datagram(Side::Responder, session_id);
        let client_udp = keys.datagram(Side::Initiator, session_id);
        self.openers.insert(player, client_udp.opener);
        self.writers.insert(c.conn, c.writer.clone());
        self.core.handle_join(
            self.now,
            NewPlayer {
                player,
                conn: c.conn,
                session_id,
                user_data: Vec::new(),
                out: c.level.clone(),
                keys: Arc::new(keys),
                udp: udp.sealer,
            },
        );
        self.pump();
        self.sessions.insert(player, session_id);
        Ok(c)
    }

    /// A reliable message from the player's connection `c`.
    pub(crate) fn packet(&mut self, player: PlayerId, c: &Conn, command: u16, payload: &[u8]) {
        self.core
            .handle_packet(self.now, player, c.conn, command, payload);
        self.pump();
    }

    /// The player has received `count` of the session's data messages.
    pub(crate) fn ack(&mut self, player: PlayerId, c: &Conn, count: u64) {
        self.core.handle_ack(self.now, player, c.conn, count);
        self.pump();
    }

    /// An authenticated datagram of `len` bytes of `player`'s session from
    /// `from`, holding `records`; what the core sends is dropped.
    pub(crate) fn datagram(
        &mut self,
        player: PlayerId,
        from: std::net::SocketAddr,
        len: usize,
        records: Vec<sustenet_proto::datagram::Record>,
    ) {
        let session_id = self.sessions.get(&player).copied().unwrap_or(0);
        self.core
            .handle_datagram(self.now, player, session_id, from, len, records);
        self.core.drain_transmits(|_, _| {});
        self.pump();
    }

    /// The player's connection `c` dropped (or timed out).
    pub(crate) fn lost(&mut self, player: PlayerId, c: &Conn) {
        self.core
            .handle_left(self.now, player, c.conn, DisconnectReason::ConnectionLost);
        self.pump();
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
        let c = self.new_conn();
        let session_id = self.sessions.get(&player).copied().unwrap_or(0);
        let claim = ResumeClaim { received, attempt };
        let r =
            self.core
                .handle_resume(self.now, c.conn, c.level.clone(), player, session_id, claim);
        let r = r.map(|a| {
            self.writers.insert(c.conn, c.writer.clone());
            self.core.handle_reconnected(self.now, player);
            (c, a.received)
        });
        self.pump();
        r
    }

    /// An authenticated datagram of `player`'s session holding `records`,
    /// from `from`; returns its length as it came off the wire. What the
    /// core sends is kept for [`Harness::datagrams`].
    pub(crate) fn datagram_in(
        &mut self,
        player: PlayerId,
        from: SocketAddr,
        records: Vec<Record>,
    ) -> usize {
        let len = DATAGRAM_OVERHEAD + records.iter().map(Record::encoded_len).sum::<usize>();
        let session_id = self.sessions.get(&player).copied().unwrap_or(0);
        self.core
            .handle_datagram(self.now, player, session_id, from, len, records);
        self.pump();
        len
    }

    /// The datagrams the core sent since the last call, as `player`'s
    /// client opens them: where each went, its length, its records.
    pub(crate) fn datagrams(&mut self, player: PlayerId) -> Vec<(SocketAddr, usize, Vec<Record>)> {
        let mut sealed = Vec::new();
        self.core
            .drain_transmits(|to, d| sealed.push((to, d.to_vec())));
        let Some(opener) = self.openers.get_mut(&player) else {
            return Vec::new();
        };
        sealed
            .into_iter()
            .filter_map(|(to, d)| {
                let plain = opener.open(&d).ok()?;
                Some((to, d.len(), decode_records(&plain).ok()?))
            })
            .collect()
    }

    /// Every datagram the core sent since the last look, with the player
    /// whose client opens it and its records, in the order sent.
    pub(crate) fn sent(&mut self) -> Vec<(PlayerId, Vec<Record>)> {
        let mut sealed = Vec::new();
        self.core.drain_transmits(|_, d| sealed.push(d.to_vec()));
        let mut out = Vec::new();
        for d in sealed {
            for (player, opener) in self.openers.iter_mut() {
                if let Ok(plain) = opener.open(&d) {
                    out.push((*player, decode_records(&plain).unwrap_or_default()));
                    break;
                }
            }
        }
        out
    }

    /// Moves the clock to `at` and runs what is due there, as the driver
    /// does when [`Core::poll_timeout`] comes.
    pub(crate) fn at(&mut self, at: Instant) {
        self.now = at;
        self.core.handle_timeout(self.now);
        self.pump();
    }

    /// The update tick at the current time.
    pub(crate) fn update(&mut self) {
        self.core.handle_update(self.now);
        self.pump();
    }

    /// Runs `f` as a handle's command would.
    pub(crate) fn command(&mut self, f: impl FnOnce(&mut Context<'_>) + Send + 'static) {
        self.core.handle_command(self.now, Box::new(f));
        self.pump();
    }

    /// Moves the clock on by `d` and runs a heartbeat.
    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.core.handle_heartbeat(self.now, 0);
        self.pump();
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
        self.published
            .player_count
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sessions that can still be resumed.
    pub(crate) fn resumable(&self) -> usize {
        self.published
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Connections the fake driver still holds a writer for.
    pub(crate) fn open_writers(&self) -> usize {
        self.writers.len()
    }
}
