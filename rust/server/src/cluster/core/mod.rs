//! The cluster's core: the player table, away/grace and resume, transfers,
//! the fragment grid and state fan-out, and the plugin, in one state
//! machine ([`Core`]). It owns no socket, no task and no channel, reads no
//! clock and draws no global randomness: every input carries `now`, its
//! randomness comes from a seed, and everything it wants done comes out of
//! [`Core::poll_output`] and [`Core::drain_transmits`] for the driver
//! (`cluster/mod.rs`) to carry out.

mod context;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod harness;
#[cfg(test)]
mod harness_resume_tests;
#[cfg(test)]
mod harness_state_tests;
#[cfg(test)]
mod harness_tests;
#[cfg(test)]
mod harness_world_tests;
pub(crate) mod instances;
mod interest;
mod master_inputs;
mod outbox;
mod output;
mod path;
mod pending;
mod players;
mod resume;
mod stats;
mod transfers;
mod transmit;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use sustenet_proto::datagram::{self, Record};
use sustenet_proto::handshake::ResumeClaim;
use sustenet_proto::resume::ReplayLog;
use sustenet_proto::{ClusterToClient, DisconnectReason, Goodbye};
use tracing::{info, warn};

pub use context::Context;
pub(crate) use interest::Interest;
pub(crate) use outbox::{Full, QueueLevel, Weight};
pub(crate) use output::{LinkEvent, Output};
pub(crate) use players::{NewPlayer, Player, Players, Published, queue, shared_set};
pub(crate) use resume::Accepted;
pub(crate) use transfers::{ALREADY_MOVING, Moving};
pub(crate) use transmit::{SPARE_BUFFERS, Transmit};

use super::ClusterConfig;
use crate::fragments::{FragmentError, Fragments, Seeded};
use crate::ids::PlayerId;
use crate::plugin::{Channel, Plugin};
use interest::StateOut;
use output::Outputs;
use path::{Arrived, UdpPath, on_datagram};
use transfers::{Transfers, moving_set};
use transmit::Transmits;

/// A command from a [`ClusterHandle`](crate::cluster::ClusterHandle): one
/// of the [`Context`] methods, run on the core.
pub(crate) type Command = Box<dyn FnOnce(&mut Context<'_>) + Send>;

/// What a [`Core`] is made from.
pub(crate) struct Setup {
    pub(crate) config: ClusterConfig,
    pub(crate) published: Arc<Published>,
    /// The level of the master link's event queue.
    pub(crate) link: Arc<QueueLevel>,
    /// Players being moved, shared with the handles.
    pub(crate) moving: Moving,
    /// Seeds all of the core's randomness (UDP path challenges, hash keys).
    pub(crate) seed: u64,
}

/// Everything but the plugin: what [`Context`] works on.
pub(crate) struct State {
    pub(crate) config: ClusterConfig,
    pub(crate) published: Arc<Published>,
    pub(crate) players: Players,
    pub(crate) removals: Vec<(PlayerId, Goodbye)>,
    pub(crate) transfers: Transfers,
    pub(crate) instances: instances::InstanceRequests,
    pub(crate) interest: Interest,
    pub(crate) transmits: Transmits,
    /// The datagram the state fan-out fills, reused.
    state_batch: datagram::Batch,
    pub(crate) outputs: Outputs,
    rng: StdRng,
    pub(crate) max_reliable: usize,
    pub(crate) udp_silence: Duration,
    /// When the input being handled happened.
    pub(crate) now: Instant,
}

/// The cluster's state machine: every player's state, the fragment grid
/// and the plugin, with no socket, no task, no channel, no clock read and
/// no global randomness.
///
/// # How it is driven
///
/// As with quinn-proto's `Connection`, the caller owns all I/O and time
/// and calls, for each thing that happens, the matching method with the
/// current time:
///
/// Every input is a `handle_*(now, ...)` call; every output comes out of a
/// `poll_*` or `drain_*` call.
///
/// - a new connection with a valid token: [`Core::admit`] (capacity, and
///   the newest connection of a player id wins), then, once the UDP
///   receiver knows the session and the connection heard `Ok`,
///   [`Core::handle_join`];
/// - a proven reconnect: [`Core::handle_resume`], then
///   [`Core::handle_reconnected`] once the new connection has the answer,
///   or [`Core::handle_resume_abandoned`] when it went away first;
/// - a reliable message, an acknowledgement, a connection that ended:
///   [`Core::handle_packet`], [`Core::handle_ack`], [`Core::handle_left`];
/// - an authenticated datagram: [`Core::handle_datagram`];
/// - the master link: [`Core::handle_master`],
///   [`Core::handle_transfer_ready`], [`Core::handle_transfer_failed`],
///   [`Core::handle_instance_answer`], [`Core::snapshot`];
/// - a handle's command: [`Core::handle_command`];
/// - timers: [`Core::handle_update`] every `update_tick`,
///   [`Core::handle_heartbeat`] every heartbeat, and
///   [`Core::handle_timeout`] just after [`Core::poll_timeout`].
///
/// After each call the caller calls [`Core::finish`] (players removed, the
/// plugin told of fragment changes), then carries out every output, in
/// order, until there is none left:
///
/// ```text
/// loop {
///     let due = core.poll_timeout();
///     // wait for an event, a command, a tick, or `due`, then e.g.:
///     core.handle_packet(now, player, conn, command, &payload);
///     core.finish();
///     while let Some(o) = core.poll_output() {
///         // Send / Close / Release: a connection's writer;
///         // Link: the master link; SessionGone: the UDP receiver
///     }
///     core.drain_transmits(|addr, datagram| { /* send it */ });
/// }
/// ```
///
/// The core decides at once whether a message fits a connection's queue
/// (its [`QueueLevel`], shared with the writer that takes messages out), so
/// a player whose queue is full is let go in the same call.
pub(crate) struct Core<P> {
    plugin: P,
    s: State,
    /// The earliest reconnect window or redirect deadline of any player,
    /// as of the last [`Core::finish`] that looked.
    player_deadline: Option<Instant>,
    /// An input may have moved a player's deadline: [`Core::finish`] looks
    /// again (not on every datagram: the table has every player).
    deadlines_stale: bool,
}

impl<P: Plugin> Core<P> {
    /// A core with no players and an empty grid, started at `now`;
    /// refuses an invalid grid.
    pub(crate) fn new(plugin: P, setup: Setup, now: Instant) -> Result<Self, FragmentError> {
        let Setup {
            config,
            published,
            link,
            moving,
            seed,
        } = setup;
        let mut rng = StdRng::seed_from_u64(seed);
        let fragments = Fragments::with_hasher(config.grid, Seeded::from_rng(&mut rng))?;
        let transfers = Transfers {
            link,
            next_id: 1,
            pending: HashMap::new(),
            timeout: config
                .limits
                .handshake_timeout()
                .max(Duration::from_secs(5)),
            moving,
            refused: Vec::new(),
        };
        let s = State {
            max_reliable: max_reliable(&config),
            udp_silence: config.udp_silence,
            players: HashMap::with_hasher(Seeded::from_rng(&mut rng)),
            interest: Interest::new(fragments, Seeded::from_rng(&mut rng), config.state_window),
            config,
            published,
            removals: Vec::new(),
            transfers,
            instances: instances::InstanceRequests::default(),
            transmits: Transmits::default(),
            state_batch: datagram::Batch::new(),
            outputs: Outputs::default(),
            rng,
            now,
        };
        Ok(Self {
            plugin,
            s,
            player_deadline: None,
            deadlines_stale: false,
        })
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
        let cap = self.s.config.connection_limit() as usize;
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
    pub(crate) fn handle_join(&mut self, now: Instant, j: NewPlayer) {
        let config = &self.s.config;
        let replay = (!config.resume_grace.is_zero()).then(|| ReplayLog::new(config.resume_buffer));
        if replay.is_some() {
            shared_set(
                &self.s.published.sessions,
                j.session_id,
                Some((j.player, j.keys)),
            );
        }
        let player = j.player;
        self.s.players.insert(
            player,
            Player {
                out: Some(j.out),
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
        self.s
            .published
            .player_count
            .store(count, Ordering::Relaxed);
        link_event(&mut self.s, LinkEvent::Joined(player));
        info!(player, players = count, "player connected");
        let (plugin, mut ctx) = self.ctx(now);
        plugin.on_connect(&mut ctx, player, &j.user_data);
    }

    /// A reliable message from the player's connection `conn`.
    pub(crate) fn handle_packet(
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
        let due = p
            .replay
            .as_mut()
            .is_some_and(|log| log.on_received(payload.len()));
        if due
            && p.out.is_some()
            && let Some(received) = p.replay.as_ref().map(ReplayLog::received)
            && queue(&mut self.s.outputs, p, ClusterToClient::Ack(received)).is_ok()
            && let Some(log) = p.replay.as_mut()
        {
            log.mark_acked();
        }
        let (plugin, mut ctx) = self.ctx(now);
        plugin.on_packet(&mut ctx, player, command, payload, Channel::Reliable);
    }

    /// The player has received `count` of the session's data messages.
    pub(crate) fn handle_ack(&mut self, now: Instant, player: PlayerId, conn: u64, count: u64) {
        self.s.now = now;
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
    pub(crate) fn handle_left(
        &mut self,
        now: Instant,
        player: PlayerId,
        conn: u64,
        reason: DisconnectReason,
    ) {
        self.deadlines_stale = true;
        let grace = self.s.config.resume_grace;
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
            resume::go_away(p, &mut self.s.outputs, now, grace);
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
    ///
    /// `out` is the new connection's queue; when accepted, what the player
    /// missed is queued to it first.
    pub(crate) fn handle_resume(
        &mut self,
        now: Instant,
        conn: u64,
        out: Arc<QueueLevel>,
        player: PlayerId,
        session_id: u64,
        claim: ResumeClaim,
    ) -> Result<Accepted, Goodbye> {
        self.deadlines_stale = true;
        let grace = self.s.config.resume_grace;
        // A reconnect that will be accepted while the old connection still
        // looks alive: the client saw it die first. The cluster notices the
        // drop now, so the game hears of it before the return, as always.
        if let Some(p) = self.s.players.get_mut(&player)
            && p.session_id == session_id
            && p.away_until.is_none()
            && resume::resume_check(p, claim).is_ok()
        {
            resume::close_left_behind(p, &mut self.s.outputs);
            resume::go_away(p, &mut self.s.outputs, now, grace);
            let (plugin, mut ctx) = self.ctx(now);
            plugin.on_connection_lost(&mut ctx, player, DisconnectReason::ConnectionLost);
        }
        match resume::resume_player(
            &mut self.s.players,
            &mut self.s.outputs,
            out,
            conn,
            player,
            session_id,
            claim,
        ) {
            Ok(accepted) => {
                // A player being moved heard its redirect again just now:
                // it has `timeout` from here to follow it.
                let timeout = self.s.config.limits.timeout();
                if let Some(p) = self.s.players.get_mut(&player)
                    && p.redirect.is_some()
                {
                    p.redirected = Some(resume::after(now, timeout));
                }
                Ok(accepted)
            }
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
    pub(crate) fn handle_reconnected(&mut self, now: Instant, player: PlayerId) {
        info!(player, "player reconnected");
        let (plugin, mut ctx) = self.ctx(now);
        plugin.on_reconnect(&mut ctx, player);
    }

    /// The connection of an accepted reconnect went away before it heard
    /// so: the player is away again (the game was told of the drop already).
    pub(crate) fn handle_resume_abandoned(&mut self, now: Instant, player: PlayerId) {
        self.deadlines_stale = true;
        let grace = self.s.config.resume_grace;
        if let Some(p) = self.s.players.get_mut(&player) {
            resume::go_away(p, &mut self.s.outputs, now, grace);
        }
    }

    /// An authenticated datagram of `len` bytes from `from`, of the
    /// player's UDP session `session_id`.
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        player: PlayerId,
        session_id: u64,
        from: SocketAddr,
        len: usize,
        records: Vec<Record>,
    ) {
        self.s.now = now;
        let silence = self.s.udp_silence;
        let State {
            players,
            transmits,
            rng,
            ..
        } = &mut self.s;
        let Some(p) = players
            .get_mut(&player)
            .filter(|p| p.session_id == session_id)
        else {
            return;
        };
        let arrived = Arrived {
            now,
            silence,
            from,
            len,
        };
        let data = on_datagram(transmits, rng, p, arrived, records);
        for (command, payload) in data {
            let (plugin, mut ctx) = self.ctx(now);
            plugin.on_packet(&mut ctx, player, command, &payload, Channel::Unreliable);
        }
    }

    /// Runs a handle's command.
    pub(crate) fn handle_command(&mut self, now: Instant, command: Command) {
        let (_, mut ctx) = self.ctx(now);
        command(&mut ctx);
        for (player, reason) in std::mem::take(&mut self.s.transfers.refused) {
            if self.s.players.contains_key(&player) {
                let (plugin, mut ctx) = self.ctx(now);
                plugin.on_transfer_failed(&mut ctx, player, &reason);
            }
        }
    }

    /// The update tick: the fragments due now send the states they hold
    /// back (over their rate) or have not sent for a period (see
    /// `interest.rs`), and the batches due are sealed.
    pub(crate) fn handle_update(&mut self, now: Instant) {
        self.s.now = now;
        self.fan_out(now, |interest, players, out| {
            interest.tick(now, players, out);
            interest.send_due(now, players, out);
        });
    }

    /// Runs `f` on the state fan-out's parts.
    fn fan_out(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Interest, &mut Players, &mut StateOut<'_>),
    ) {
        let State {
            players,
            interest,
            transmits,
            udp_silence,
            state_batch,
            ..
        } = &mut self.s;
        let mut out = StateOut {
            transmits,
            heard_since: now.checked_sub(*udp_silence),
            batch: state_batch,
        };
        f(interest, players, &mut out);
    }

    /// The heartbeat tick: pings and acknowledgements on every connection,
    /// whatever is due (see [`Core::handle_timeout`]), then the plugin's
    /// `on_tick`. `now_ms` is the wall clock, sent in the pings.
    pub(crate) fn handle_heartbeat(&mut self, now: Instant, now_ms: u64) {
        for (id, p) in self.s.players.iter_mut() {
            let (None, None, true) = (p.redirected, p.away_until, p.out.is_some()) else {
                continue;
            };
            let outputs = &mut self.s.outputs;
            let mut full = queue(outputs, p, ClusterToClient::Ping(now_ms)).is_err();
            if let Some(received) = p
                .replay
                .as_ref()
                .filter(|l| l.ack_due())
                .map(ReplayLog::received)
            {
                full |= queue(outputs, p, ClusterToClient::Ack(received)).is_err();
                if let Some(log) = p.replay.as_mut() {
                    log.mark_acked();
                }
            }
            if full {
                self.s
                    .removals
                    .push((*id, Goodbye::new(DisconnectReason::SendQueueFull)));
            }
        }
        // Every player's deadline is checked once a heartbeat whatever
        // `poll_timeout` said.
        self.s.now = now;
        self.expire_players(now);
        self.expire_transfers(now);
        let (plugin, mut ctx) = self.ctx(now);
        plugin.on_tick(&mut ctx);
    }

    /// Whatever is due at `now` (see [`Core::poll_timeout`]): redirects not
    /// followed and reconnect windows passed let their players go, and
    /// transfers the master did not answer fail; the batches of state
    /// records due are sealed by the [`Core::finish`] that follows.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.s.now = now;
        // Most wake-ups are for state batches: the player table is looked
        // at only when a player's deadline has passed.
        if self.player_deadline.is_some_and(|d| now > d) {
            self.expire_players(now);
        }
        self.expire_transfers(now);
    }

    /// Lets go of the players whose reconnect window passed by `now`, and
    /// the connected ones whose redirect was not followed.
    fn expire_players(&mut self, now: Instant) {
        self.deadlines_stale = true;
        for (id, p) in self.s.players.iter() {
            let reason = match (p.redirected, p.away_until) {
                // Away, the reconnect window alone counts, also for a player
                // being moved (it gets its redirect again when it is back).
                // One that does not come back may have followed its redirect
                // and lost only its goodbye.
                (Some(_), Some(until)) if now > until => DisconnectReason::Redirected,
                (None, Some(until)) if now > until => DisconnectReason::ReconnectTimeout,
                // A connected client that does not follow its redirect is
                // let go.
                (Some(deadline), None) if now > deadline => DisconnectReason::Redirected,
                _ => continue,
            };
            self.s.removals.push((*id, Goodbye::new(reason)));
        }
    }

    /// Fails the transfers the master did not answer by `now`.
    fn expire_transfers(&mut self, now: Instant) {
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
                if matches!(ev, crate::fragments::FragmentEvent::OverCap { .. }) {
                    self.s.config.metrics.over_cap();
                }
                let now = self.s.now;
                let (plugin, mut ctx) = self.ctx(now);
                plugin.on_fragment(&mut ctx, ev);
            }
            self.apply_removals();
        }
        self.s.published.fragment_count.store(
            self.s.interest.fragments.fragment_count(),
            Ordering::Relaxed,
        );
        if self.deadlines_stale {
            self.deadlines_stale = false;
            self.player_deadline = self
                .s
                .players
                .values()
                .filter_map(|p| p.away_until.or(p.redirected))
                .min();
        }
        // The states this input set go out (within `state_window`).
        let now = self.s.now;
        self.fan_out(now, |interest, players, out| {
            interest.send_fresh(now, players, out)
        });
    }

    /// The next instant something is due: a batch of state records must be
    /// sealed, a reconnect window or a redirect ends, or the master's answer
    /// to a transfer is overdue; the driver calls [`Core::handle_timeout`] (then
    /// [`Core::finish`]) at or just after it. `None` when nothing is pending.
    /// The players' deadlines are those [`Core::finish`] last found (after
    /// the inputs that can move one), so this costs nothing per player.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let transfers = self.s.transfers.pending.values().map(|(_, d)| *d);
        let states = self.s.interest.next_due();
        transfers.chain(self.player_deadline).chain(states).min()
    }

    /// Seals every datagram waiting to be sent, here, and hands it to
    /// `send`, in order.
    pub(crate) fn drain_transmits(&mut self, send: impl FnMut(SocketAddr, &[u8])) {
        self.s.transmits.drain(send);
    }

    /// Moves every datagram waiting to be sent, unsealed (each with its
    /// session's sequence number already taken), in order, to the end of
    /// `out`: for the seal workers, which seal and send them.
    pub(crate) fn take_transmits(&mut self, out: &mut Vec<Transmit>) {
        self.s.transmits.take(out);
    }

    /// Plaintext buffers of datagrams sent elsewhere, back for reuse.
    pub(crate) fn give_back_buffers(&mut self, buffers: impl IntoIterator<Item = Vec<u8>>) {
        self.s.transmits.give_back(buffers);
    }

    /// The oldest output the driver has not carried out yet.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.s.outputs.pop()
    }

    /// The cluster stops: every player is told `ServerShutdown` (the
    /// `Close` outputs).
    pub(crate) fn shutdown(&mut self) {
        info!(players = self.s.players.len(), "cluster shutting down");
        for (_, mut p) in self.s.players.drain() {
            if p.out.take().is_some() {
                self.s.outputs.push(Output::Close {
                    conn: p.conn,
                    goodbye: Goodbye::new(DisconnectReason::ServerShutdown),
                    drain: true,
                });
            }
        }
        self.s.published.player_count.store(0, Ordering::Relaxed);
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
        self.s
            .published
            .player_count
            .store(count, Ordering::Relaxed);
        let reason = goodbye.reason;
        let drain = reason != DisconnectReason::SendQueueFull;
        if p.out.take().is_some() {
            self.s.outputs.push(Output::Close {
                conn: p.conn,
                goodbye,
                drain,
            });
        }
        let session_id = p.session_id;
        self.s
            .outputs
            .push(Output::SessionGone { session_id, reason });
        shared_set(&self.s.published.sessions, session_id, None);
        moving_set(&self.s.transfers.moving, player, None);
        link_event(&mut self.s, LinkEvent::Left(player));
        info!(player, players = count, "player disconnected: {reason}");
        let now = self.s.now;
        let (plugin, mut ctx) = self.ctx(now);
        plugin.on_disconnect(&mut ctx, player, reason);
        self.s.interest.remove(player);
        if let Some(ev) = self.s.interest.fragments.remove(player) {
            self.s.interest.events.push(ev);
        }
    }
}

/// Tells the master link of a player event; when it is far behind, the
/// link registers again, which resends every player.
pub(crate) fn link_event(s: &mut State, ev: LinkEvent) {
    if s.outputs.link(&s.transfers.link, ev).is_err() {
        s.published.resync.store(true, Ordering::Relaxed);
    }
}

/// The largest reliable payload that fits the frame limit.
pub(crate) fn max_reliable(config: &ClusterConfig) -> usize {
    config
        .limits
        .max_frame
        .saturating_sub(sustenet_proto::message::RELIABLE_OVERHEAD)
}
