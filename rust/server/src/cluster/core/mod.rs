//! The cluster's core: the player table, away/grace and resume, transfers,
//! the fragment grid and state fan-out, and the plugin. It owns no socket
//! and reads no clock: every input carries `now`.
//!
//! # How the driver calls it
//!
//! The driver (`cluster::run_with_handle`) owns the sockets and tasks and
//! calls, for each thing that happens, the matching method:
//!
//! - a new connection with a valid token: [`Core::admit`] (capacity, and the
//!   newest connection of a player id wins), then, once the UDP task knows
//!   the session and the connection heard `Ok`, [`Core::join`];
//! - a proven reconnect: [`Core::resume`], then [`Core::reconnected`] once
//!   the new connection has the answer, or [`Core::resume_abandoned`] when
//!   it went away first;
//! - a reliable message, an acknowledgement, a connection that ended:
//!   [`Core::packet`], [`Core::ack`], [`Core::left`];
//! - an authenticated datagram: [`Core::datagram`];
//! - the master link: [`Core::master`], [`Core::transfer_ready`],
//!   [`Core::transfer_failed`], [`Core::snapshot`];
//! - a handle's command: [`Core::command`];
//! - timers: [`Core::update`] every `update_tick`, [`Core::heartbeat`] every
//!   heartbeat, and [`Core::timeout`] at [`Core::poll_timeout`].
//!
//! After each call the driver calls [`Core::finish`] (players removed, the
//! plugin told of fragment changes), then carries out the outputs: the
//! datagrams of [`Core::drain_transmits`] and the UDP sessions of
//! [`Core::take_gone_sessions`]. Messages to a player's connection go
//! through its bounded writer queue directly.

mod context;
#[cfg(test)]
mod harness;
#[cfg(test)]
mod harness_tests;
mod interest;
mod outbox;
mod path;
mod resume;
mod transfers;
mod transmit;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use sustenet_proto::crypto::{ClientSessionKeys, DATAGRAM_OVERHEAD, DatagramSealer};
use sustenet_proto::datagram::{self, Record};
use sustenet_proto::handshake::ResumeClaim;
use sustenet_proto::resume::ReplayLog;
use sustenet_proto::{ClusterToClient, DisconnectReason, Goodbye, Ticket};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

pub use context::Context;
pub(crate) use interest::Interest;
pub(crate) use outbox::{Full, Outbox, OutboxRx, outbox};
pub(crate) use resume::Accepted;
pub(crate) use transfers::{Moving, Transfers};

use super::master_link::LinkEvent;
use super::{MasterLinkStatus, Shared};
use crate::ids::PlayerId;
use crate::plugin::{Channel, Plugin};
use interest::StateOut;
use path::{Source, UdpPath};
use transfers::moving_set;
use transmit::Transmits;

/// A command from a [`ClusterHandle`](crate::cluster::ClusterHandle): one
/// of the [`Context`] methods, run on the core.
pub(crate) type Command = Box<dyn FnOnce(&mut Context<'_>) + Send>;

/// One player on this cluster: connected, away (reconnecting) or moving.
pub(crate) struct Player {
    /// The writer of the current connection; `None` while the player is
    /// away (its connection dropped and it may reconnect).
    pub(crate) out: Option<Outbox>,
    pub(crate) kill: Option<oneshot::Sender<(Goodbye, bool)>>,
    /// The current connection; events of an older one are ignored.
    pub(crate) conn: u64,
    pub(crate) session_id: u64,
    pub(crate) udp: DatagramSealer,
    /// Where its datagrams go, once proven (see [`path`]).
    pub(crate) path: UdpPath,
    /// Set once the redirect to another cluster is decided: nothing more is
    /// sent, and the player is removed when it closes (or at this deadline).
    pub(crate) redirected: Option<Instant>,
    /// The redirect's ticket, kept so that a player whose connection drops
    /// before it read the redirect gets it again when it reconnects.
    pub(crate) redirect: Option<Box<Ticket>>,
    /// Reliable messages kept for a reconnect; `None` when reconnects are off.
    pub(crate) replay: Option<ReplayLog>,
    /// While the player is away: when its seat is given up.
    pub(crate) away_until: Option<Instant>,
    /// The highest reconnect attempt accepted in this session.
    pub(crate) last_attempt: u64,
}

/// A player admitted by [`Core::admit`], ready to join.
pub(crate) struct NewPlayer {
    pub(crate) player: PlayerId,
    pub(crate) conn: u64,
    pub(crate) session_id: u64,
    pub(crate) user_data: Vec<u8>,
    pub(crate) out: Outbox,
    pub(crate) kill: oneshot::Sender<(Goodbye, bool)>,
    pub(crate) keys: Arc<ClientSessionKeys>,
    pub(crate) udp: DatagramSealer,
}

/// Everything but the plugin: what [`Context`] works on.
pub(crate) struct State {
    pub(crate) shared: Arc<Shared>,
    pub(crate) players: HashMap<PlayerId, Player>,
    pub(crate) removals: Vec<(PlayerId, Goodbye)>,
    pub(crate) transfers: Transfers,
    pub(crate) interest: Interest,
    pub(crate) transmits: Transmits,
    /// UDP sessions of removed players, for the driver to forget.
    gone_sessions: Vec<u64>,
    pub(crate) max_reliable: usize,
    pub(crate) udp_silence: Duration,
    /// When the input being handled happened.
    pub(crate) now: Instant,
}

/// The cluster's state machine; see the module docs for how it is driven.
pub(crate) struct Core<P> {
    plugin: P,
    s: State,
    /// Core ticks per period of the default update rate: each update's
    /// recipients are served in this many shares.
    update_slices: usize,
}

/// Queues a message for a player's connection (see [`Outbox::push`]).
pub(crate) fn queue(out: &Outbox, m: ClusterToClient) -> Result<(), Full> {
    out.push(m)
}

/// Sets (`Some`) or removes (`None`) an entry of a map shared with other
/// tasks; a poisoned lock is used as is (the map holds no invariant a
/// panic could break).
pub(crate) fn shared_set<K: std::hash::Hash + Eq, V>(
    m: &Mutex<HashMap<K, V>>,
    key: K,
    value: Option<V>,
) {
    let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
    match value {
        Some(v) => {
            m.insert(key, v);
        }
        None => {
            m.remove(&key);
        }
    }
}

impl<P: Plugin> Core<P> {
    /// A core with no players; `update_slices` as in [`Core::update`].
    pub(crate) fn new(
        plugin: P,
        shared: Arc<Shared>,
        interest: Interest,
        transfers: Transfers,
        update_slices: usize,
        now: Instant,
    ) -> Self {
        let s = State {
            max_reliable: shared.max_reliable,
            udp_silence: shared.config.udp_silence,
            shared,
            players: HashMap::new(),
            removals: Vec::new(),
            transfers,
            interest,
            transmits: Transmits::default(),
            gone_sessions: Vec::new(),
            now,
        };
        Self {
            plugin,
            s,
            update_slices,
        }
    }

    fn ctx(&mut self, now: Instant) -> (&mut P, Context<'_>) {
        self.s.now = now;
        (&mut self.plugin, Context { s: &mut self.s })
    }

    /// The cluster is listening.
    pub(crate) fn start(&mut self, now: Instant) {
        let (plugin, mut ctx) = self.ctx(now);
        plugin.on_start(&mut ctx);
    }

    /// Whether `player` may join now: refused when the cluster is full; an
    /// older connection of the same player id is closed (the newest wins).
    pub(crate) fn admit(&mut self, now: Instant, player: PlayerId) -> Result<(), Goodbye> {
        self.s.now = now;
        let cap = self.s.shared.config.connection_limit() as usize;
        let present = self.s.players.contains_key(&player);
        if self.s.players.len() >= cap && !present {
            return Err(Goodbye {
                reason: DisconnectReason::ServerFull,
                message: "the cluster is full".into(),
            });
        }
        if present {
            self.s.removals.push((
                player,
                Goodbye {
                    reason: DisconnectReason::Kicked,
                    message: "connected again from elsewhere".into(),
                },
            ));
            self.apply_removals();
        }
        Ok(())
    }

    /// An admitted player joins: it is in the table, the master hears of
    /// it, and the plugin's `on_connect` runs.
    pub(crate) fn join(&mut self, now: Instant, j: NewPlayer) {
        let config = &self.s.shared.config;
        let replay = (!config.resume_grace.is_zero()).then(|| ReplayLog::new(config.resume_buffer));
        if replay.is_some() {
            shared_set(
                &self.s.shared.sessions,
                j.session_id,
                Some((j.player, j.keys)),
            );
        }
        let player = j.player;
        self.s.players.insert(
            player,
            Player {
                out: Some(j.out),
                kill: Some(j.kill),
                conn: j.conn,
                session_id: j.session_id,
                udp: j.udp,
                path: UdpPath::default(),
                redirected: None,
                redirect: None,
                replay,
                away_until: None,
                last_attempt: 0,
            },
        );
        let count = self.s.players.len();
        self.s.shared.player_count.store(count, Ordering::Relaxed);
        link_event(&self.s, LinkEvent::Joined(player));
        info!(player, players = count, "player connected");
        let (plugin, mut ctx) = self.ctx(now);
        plugin.on_connect(&mut ctx, player, &j.user_data);
    }

    /// A reliable message from the player's connection `conn`.
    pub(crate) fn packet(
        &mut self,
        now: Instant,
        player: PlayerId,
        conn: u64,
        command: u16,
        payload: &[u8],
    ) {
        // A late packet of a connection the player has left behind was
        // counted (or sent again) on the new one.
        let Some(p) = self.s.players.get_mut(&player).filter(|p| p.conn == conn) else {
            return;
        };
        if let Some(log) = p.replay.as_mut()
            && log.on_received(payload.len())
            && let Some(out) = &p.out
            && queue(out, ClusterToClient::Ack(log.received())).is_ok()
        {
            log.mark_acked();
        }
        let (plugin, mut ctx) = self.ctx(now);
        plugin.on_packet(&mut ctx, player, command, payload, Channel::Reliable);
    }

    /// The player has received `count` of the session's data messages.
    pub(crate) fn ack(&mut self, player: PlayerId, conn: u64, count: u64) {
        if let Some(log) = self
            .s
            .players
            .get_mut(&player)
            .filter(|p| p.conn == conn)
            .and_then(|p| p.replay.as_mut())
        {
            log.ack(count);
        }
    }

    /// The player's connection `conn` ended for `reason`.
    pub(crate) fn left(
        &mut self,
        now: Instant,
        player: PlayerId,
        conn: u64,
        reason: DisconnectReason,
    ) {
        let grace = self.s.shared.config.resume_grace;
        let Some(p) = self.s.players.get_mut(&player).filter(|p| p.conn == conn) else {
            return;
        };
        let dropped = matches!(
            reason,
            DisconnectReason::ConnectionLost | DisconnectReason::Timeout
        );
        if p.replay.is_some() && dropped {
            // Hold the seat: the client may come back with the session's
            // keys (network blip, laptop lid). A player being redirected
            // gets its redirect again then.
            resume::go_away(p, now, grace);
            info!(
                player,
                "player connection lost ({reason}); waiting {grace:?} for it to reconnect"
            );
            let (plugin, mut ctx) = self.ctx(now);
            plugin.on_connection_lost(&mut ctx, player, reason);
        } else if p.redirected.is_some() {
            self.s
                .removals
                .push((player, Goodbye::new(DisconnectReason::Redirected)));
        } else {
            self.s.removals.push((player, Goodbye::new(reason)));
        }
    }

    /// A reconnect to `session_id` on connection `conn`, its proof already
    /// checked: the player moves onto the new connection, or the refusal
    /// to send the client.
    pub(crate) fn resume(
        &mut self,
        now: Instant,
        conn: u64,
        player: PlayerId,
        session_id: u64,
        claim: ResumeClaim,
    ) -> Result<Accepted, Goodbye> {
        let grace = self.s.shared.config.resume_grace;
        // A reconnect that will be accepted while the old connection still
        // looks alive: the client saw it die first. The cluster notices the
        // drop now, so the game hears of it before the return, as always.
        if let Some(p) = self.s.players.get_mut(&player)
            && p.session_id == session_id
            && p.away_until.is_none()
            && resume::resume_check(p, claim).is_ok()
        {
            resume::close_left_behind(p);
            resume::go_away(p, now, grace);
            let (plugin, mut ctx) = self.ctx(now);
            plugin.on_connection_lost(&mut ctx, player, DisconnectReason::ConnectionLost);
        }
        let config = &self.s.shared.config;
        let send_queue = (config.limits.send_queue, config.send_queue_bytes);
        match resume::resume_player(
            &mut self.s.players,
            send_queue,
            conn,
            player,
            session_id,
            claim,
        ) {
            Ok(accepted) => Ok(accepted),
            Err((goodbye, give_up)) => {
                warn!("reconnect refused: {}", goodbye.message);
                if let Some(player) = give_up {
                    self.s.removals.push((player, goodbye.clone()));
                }
                Err(goodbye)
            }
        }
    }

    /// The connection of an accepted reconnect heard so: the plugin's
    /// `on_reconnect` runs.
    pub(crate) fn reconnected(&mut self, now: Instant, player: PlayerId) {
        info!(player, "player reconnected");
        let (plugin, mut ctx) = self.ctx(now);
        plugin.on_reconnect(&mut ctx, player);
    }

    /// The connection of an accepted reconnect went away before it heard
    /// so: the player is away again (the game was told of the drop already).
    pub(crate) fn resume_abandoned(&mut self, now: Instant, player: PlayerId) {
        let grace = self.s.shared.config.resume_grace;
        if let Some(p) = self.s.players.get_mut(&player) {
            resume::go_away(p, now, grace);
        }
    }

    /// The master issued the ticket of transfer `request_id`.
    pub(crate) fn transfer_ready(
        &mut self,
        now: Instant,
        request_id: u64,
        player: PlayerId,
        ticket: Box<Ticket>,
    ) {
        if self.s.transfers.pending.remove(&request_id).is_none() {
            return;
        }
        let timeout = self.s.shared.config.limits.timeout();
        let Some(p) = self.s.players.get_mut(&player) else {
            return;
        };
        // Queued behind everything already sent to the player, so the
        // redirect is the last thing it hears from here. A player that is
        // away (or whose writer just stopped) gets it when it reconnects,
        // after what it missed.
        let queued = match &p.out {
            Some(out) => queue(out, ClusterToClient::Redirect((*ticket).clone())),
            None => Ok(()),
        };
        if queued.is_err() {
            self.s
                .removals
                .push((player, Goodbye::new(DisconnectReason::SendQueueFull)));
        } else {
            info!(player, "player redirected");
            p.redirected = Some(resume::after(now, timeout));
            if p.replay.is_some() {
                p.redirect = Some(ticket);
            }
            moving_set(&self.s.transfers.moving, player, Some(true));
        }
    }

    /// The master refused transfer `request_id`.
    pub(crate) fn transfer_failed(
        &mut self,
        now: Instant,
        request_id: u64,
        player: PlayerId,
        reason: &Goodbye,
    ) {
        if self.s.transfers.pending.remove(&request_id).is_some()
            && self.s.players.contains_key(&player)
        {
            moving_set(&self.s.transfers.moving, player, None);
            let (plugin, mut ctx) = self.ctx(now);
            plugin.on_transfer_failed(&mut ctx, player, reason);
        }
    }

    /// An authenticated datagram of `len` bytes from `from`, of the
    /// player's UDP session `session_id`.
    pub(crate) fn datagram(
        &mut self,
        now: Instant,
        player: PlayerId,
        session_id: u64,
        from: SocketAddr,
        len: usize,
        records: Vec<Record>,
    ) {
        let silence = self.s.udp_silence;
        let State {
            players, transmits, ..
        } = &mut self.s;
        let Some(p) = players
            .get_mut(&player)
            .filter(|p| p.session_id == session_id)
        else {
            return;
        };
        let data = on_datagram(transmits, p, now, silence, from, len, records);
        for (command, payload) in data {
            let (plugin, mut ctx) = self.ctx(now);
            plugin.on_packet(&mut ctx, player, command, &payload, Channel::Unreliable);
        }
    }

    /// The players on this cluster, for a registration with the master.
    pub(crate) fn snapshot(&self) -> Vec<PlayerId> {
        self.s.players.keys().copied().collect()
    }

    /// The master link changed.
    pub(crate) fn master(&mut self, now: Instant, status: &MasterLinkStatus) {
        match status {
            MasterLinkStatus::Registered { cluster_id } => {
                info!(cluster_id, "registered with the master")
            }
            MasterLinkStatus::Lost { message } => {
                warn!("master lost: {message}; players stay connected")
            }
        }
        let (plugin, mut ctx) = self.ctx(now);
        plugin.on_master(&mut ctx, status);
    }

    /// Runs a handle's command.
    pub(crate) fn command(&mut self, now: Instant, command: Command) {
        let (_, mut ctx) = self.ctx(now);
        command(&mut ctx);
        for (player, reason) in std::mem::take(&mut self.s.transfers.refused) {
            if self.s.players.contains_key(&player) {
                let (plugin, mut ctx) = self.ctx(now);
                plugin.on_transfer_failed(&mut ctx, player, &reason);
            }
        }
    }

    /// The update tick: starts a state update when one is due, and sends
    /// this tick's share of the fan-out.
    pub(crate) fn update(&mut self, now: Instant) {
        let State {
            players,
            interest,
            transmits,
            udp_silence,
            ..
        } = &mut self.s;
        let mut out = StateOut {
            transmits,
            now,
            udp_silence: *udp_silence,
            batch: datagram::Batch::new(),
        };
        interest.tick(now, self.update_slices, players, &mut out);
    }

    /// The heartbeat tick: pings and acknowledgements on every connection,
    /// whatever is due (see [`Core::timeout`]), then the plugin's
    /// `on_tick`. `now_ms` is the wall clock, sent in the pings.
    pub(crate) fn heartbeat(&mut self, now: Instant, now_ms: u64) {
        for (id, p) in self.s.players.iter_mut() {
            let (None, None, Some(out)) = (p.redirected, p.away_until, &p.out) else {
                continue;
            };
            let mut full = queue(out, ClusterToClient::Ping(now_ms)).is_err();
            if let Some(log) = p.replay.as_mut().filter(|l| l.ack_due()) {
                full |= queue(out, ClusterToClient::Ack(log.received())).is_err();
                log.mark_acked();
            }
            if full {
                self.s
                    .removals
                    .push((*id, Goodbye::new(DisconnectReason::SendQueueFull)));
            }
        }
        self.timeout(now);
        let (plugin, mut ctx) = self.ctx(now);
        plugin.on_tick(&mut ctx);
    }

    /// Whatever is due at `now` (see [`Core::poll_timeout`]): redirects not
    /// followed and reconnect windows passed let their players go, and
    /// transfers the master did not answer fail.
    pub(crate) fn timeout(&mut self, now: Instant) {
        for (id, p) in self.s.players.iter() {
            match (p.redirected, p.away_until) {
                // A client that does not follow its redirect is let go (it
                // may have followed it and lost only its goodbye).
                (Some(deadline), _) if now > deadline => {
                    self.s
                        .removals
                        .push((*id, Goodbye::new(DisconnectReason::Redirected)));
                }
                (_, Some(until)) if now > until => {
                    self.s
                        .removals
                        .push((*id, Goodbye::new(DisconnectReason::ReconnectTimeout)));
                }
                _ => {}
            }
        }
        for player in self.s.transfers.expire(now) {
            let reason = Goodbye {
                reason: DisconnectReason::NoCluster,
                message: "the master did not answer the transfer in time".into(),
            };
            if self.s.players.contains_key(&player) {
                moving_set(&self.s.transfers.moving, player, None);
                let (plugin, mut ctx) = self.ctx(now);
                plugin.on_transfer_failed(&mut ctx, player, &reason);
            }
        }
    }

    /// After every input: removes the players the input let go (telling
    /// the plugin), and gives the plugin the fragment changes, until quiet.
    pub(crate) fn finish(&mut self) {
        self.apply_removals();
        // Fragment events from this round (moves, departures) go to the
        // plugin; its reactions may cause more, so drain until quiet.
        while !self.s.interest.events.is_empty() {
            for ev in std::mem::take(&mut self.s.interest.events) {
                let now = self.s.now;
                let (plugin, mut ctx) = self.ctx(now);
                plugin.on_fragment(&mut ctx, ev);
            }
            self.apply_removals();
        }
        self.s.shared.fragment_count.store(
            self.s.interest.fragments.fragment_count(),
            Ordering::Relaxed,
        );
    }

    /// The next instant something is due: a reconnect window or a redirect
    /// ends, or the master's answer to a transfer is overdue; the driver
    /// calls [`Core::timeout`] just after it. `None` when nothing is pending.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let players = self
            .s
            .players
            .values()
            .flat_map(|p| [p.away_until, p.redirected])
            .flatten();
        let transfers = self.s.transfers.pending.values().map(|(_, d)| *d);
        players.chain(transfers).min()
    }

    /// Hands every datagram waiting to be sent to `send`.
    pub(crate) fn drain_transmits(&mut self, send: impl FnMut(SocketAddr, &[u8])) {
        self.s.transmits.drain(send);
    }

    /// The UDP sessions of players removed since the last call.
    pub(crate) fn take_gone_sessions(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.s.gone_sessions)
    }

    /// The cluster stops: every player is told `ServerShutdown`.
    pub(crate) fn shutdown(&mut self) {
        info!(players = self.s.players.len(), "cluster shutting down");
        for (_, mut p) in self.s.players.drain() {
            if let Some(kill) = p.kill.take() {
                let _ = kill.send((Goodbye::new(DisconnectReason::ServerShutdown), true));
            }
        }
        self.s.shared.player_count.store(0, Ordering::Relaxed);
    }

    fn apply_removals(&mut self) {
        // A plugin's on_disconnect may kick more players: loop until quiet.
        while !self.s.removals.is_empty() {
            for (player, goodbye) in std::mem::take(&mut self.s.removals) {
                self.remove(player, goodbye);
            }
        }
    }

    fn remove(&mut self, player: PlayerId, goodbye: Goodbye) {
        let Some(mut p) = self.s.players.remove(&player) else {
            return;
        };
        let count = self.s.players.len();
        // The seat is free before the player hears its goodbye.
        self.s.shared.player_count.store(count, Ordering::Relaxed);
        let reason = goodbye.reason;
        let drain = reason != DisconnectReason::SendQueueFull;
        if let Some(kill) = p.kill.take() {
            let _ = kill.send((goodbye, drain));
        }
        self.s.gone_sessions.push(p.session_id);
        shared_set(&self.s.shared.sessions, p.session_id, None);
        moving_set(&self.s.transfers.moving, player, None);
        link_event(&self.s, LinkEvent::Left(player));
        info!(player, players = count, "player disconnected: {reason}");
        let now = self.s.now;
        let (plugin, mut ctx) = self.ctx(now);
        plugin.on_disconnect(&mut ctx, player, reason);
        self.s.interest.states.remove(&player);
        if let Some(ev) = self.s.interest.fragments.remove(player) {
            self.s.interest.events.push(ev);
        }
    }
}

/// Tells the master link of a player event; when it is far behind, the
/// link registers again, which resends every player.
pub(crate) fn link_event(s: &State, ev: LinkEvent) {
    if s.transfers.link.try_send(ev).is_err() {
        s.shared.resync.store(true, Ordering::Relaxed);
    }
}

/// Handles an authenticated datagram of `len` bytes that came from `from`:
/// moves the player's address only once `from` proved itself (its
/// `PathResponse`), answers with at most one datagram (the challenge for an
/// unproven source, the `Pong` to the datagram's last `Ping`), within the
/// source's allowance, and returns the data records for the plugin.
fn on_datagram(
    transmits: &mut Transmits,
    p: &mut Player,
    now: Instant,
    silence: Duration,
    from: SocketAddr,
    len: usize,
    records: Vec<Record>,
) -> Vec<(u16, Vec<u8>)> {
    let source = p
        .path
        .on_datagram(now, silence, from, len, || rand::rng().next_u64());
    let mut ping = None;
    let mut data = Vec::new();
    let mut proven = false;
    for r in records {
        match r {
            Record::Data { command, payload } => data.push((command, payload)),
            Record::Ping(v) => ping = Some(v),
            Record::PathResponse(v) => proven |= p.path.on_response(now, from, v),
            Record::Pong(_) | Record::PathChallenge(_) => {}
        }
    }
    if proven {
        debug!(%from, "player's UDP address validated");
    }
    let challenge = match source {
        Source::Candidate { challenge } if !proven => Some(challenge),
        _ => None,
    };
    let mut answer: Vec<Record> = challenge
        .map(Record::PathChallenge)
        .into_iter()
        .chain(ping.map(Record::Pong))
        .collect();
    let size = |r: &[Record]| DATAGRAM_OVERHEAD + r.iter().map(Record::encoded_len).sum::<usize>();
    // The challenge first: a source whose allowance is too small for both
    // gets only the challenge.
    while !answer.is_empty() && !p.path.spend(from, size(&answer)) {
        answer.pop();
    }
    if !answer.is_empty() {
        let mut batch = datagram::Batch::new();
        for r in &answer {
            let _ = batch.push(r);
        }
        transmits.seal(&mut p.udp, from, batch.as_bytes());
    }
    data
}
