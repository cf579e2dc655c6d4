//! A cluster's core in memory with simulated players, for benchmarks and
//! profiles of the per-tick work (no socket, no task): what
//! `benches/core.rs` measures.
//!
//! Every simulated player has its own session keys and a proven UDP
//! address; each period of the update rate it reports its position in one
//! datagram (as `sustenet bench` does, command [`World::POS`]), the players
//! one after the other spread evenly over the period (as unsynchronized
//! clients would), and the core runs the [`World`] plugin, adds each state
//! to its audience's batches and seals every batch when its state window
//! ends, with its update ticks in between, as the driver would run it. The
//! sealed datagrams are counted and dropped where the driver would send
//! them. They are sealed on the core's thread, or by seal workers
//! ([`CoreBench::with_seal_workers`], `cluster/seal_pool.rs`) as the driver
//! does with `[cluster] seal_threads` of 2 or more.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sustenet_proto::crypto::{DATAGRAM_OVERHEAD, DatagramOpener};
use sustenet_proto::datagram::{Record, decode_records};
use sustenet_proto::{ClientSessionKeys, Side};

use super::ClusterConfig;
use super::core::{Core, NewPlayer, Output, Published, QueueLevel, Setup, Transmit};
use super::seal_pool::{DatagramSink, SealPool};
use crate::fragments::{Dims, FragmentSettings, GridConfig};
use crate::ids::PlayerId;
use crate::plugin::World;

/// A core with simulated players on a square world.
pub struct CoreBench {
    core: Core<World>,
    now: Instant,
    /// Per player: its position and the address its datagrams come from.
    players: Vec<([f32; 3], SocketAddr)>,
    side: f32,
    /// Core ticks per period of the update rate.
    slices: u32,
    tick: Duration,
    /// When the next update tick is due.
    next_tick: Instant,
    /// The clock the deadlines are run on: at the next multiple of
    /// `resolution` after `origin` (zero: at each deadline exactly).
    origin: Instant,
    resolution: Duration,
    /// Keeps each connection's queue alive, as its writer would.
    _queues: Vec<Arc<QueueLevel>>,
    rng: u64,
    /// What was sealed, wherever it was sealed.
    sent: Arc<Counted>,
    /// The seal workers, if the datagrams are not sealed on this thread.
    pool: Option<SealPool>,
    /// Datagrams on their way from the core to the workers.
    taken: Vec<Transmit>,
}

/// Counts sealed datagrams and drops them, where the driver would send them.
#[derive(Debug, Default)]
struct Counted {
    datagrams: AtomicUsize,
    bytes: AtomicUsize,
}

impl Counted {
    fn add(&self, datagrams: usize, bytes: usize) {
        self.datagrams.fetch_add(datagrams, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn stats(&self) -> PeriodStats {
        PeriodStats {
            datagrams: self.datagrams.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

impl DatagramSink for Arc<Counted> {
    fn send(&mut self, datagrams: &[(SocketAddr, Vec<u8>)]) {
        let bytes = datagrams.iter().map(|(_, d)| d.len()).sum();
        self.add(datagrams.len(), bytes);
    }
}

/// What one period of the update rate cost and sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeriodStats {
    /// Datagrams the core sealed.
    pub datagrams: usize,
    /// Their bytes.
    pub bytes: usize,
}

impl CoreBench {
    /// `players` players on a square world sized so that each has about
    /// `neighbours` others within `radius` (its interest radius and the
    /// fragment size), updated at `update_hz` with core ticks of `tick` and
    /// a state window of `window`.
    pub fn new(
        players: usize,
        neighbours: f64,
        radius: f32,
        update_hz: f32,
        (tick, window): (Duration, Duration),
    ) -> Self {
        let config = ClusterConfig {
            max_connections: u32::try_from(players).unwrap_or(u32::MAX),
            update_tick: tick,
            state_window: window,
            grid: GridConfig {
                cell_size: radius,
                dims: Dims::Two,
                default_settings: FragmentSettings {
                    player_cap: 0,
                    update_hz,
                },
                default_interest_radius: radius,
            },
            ..ClusterConfig::default()
        };
        let period = config.grid.default_settings.period();
        let setup = Setup {
            config,
            published: Arc::new(Published::default()),
            link: Arc::new(QueueLevel::new(usize::MAX, usize::MAX)),
            moving: Default::default(),
            seed: 42,
        };
        let now = Instant::now();
        // The configuration above is valid: a failure here is a bug in it.
        let Ok(core) = Core::new(World, setup, now) else {
            unreachable!("the benchmark's grid is valid")
        };
        let density = neighbours / (std::f64::consts::PI * f64::from(radius).powi(2));
        let mut b = CoreBench {
            core,
            now,
            players: Vec::with_capacity(players),
            side: (players as f64 / density).sqrt() as f32,
            slices: u32::try_from(period.as_nanos() / tick.as_nanos().max(1))
                .unwrap_or(1)
                .max(1),
            tick,
            next_tick: now + tick,
            origin: now,
            resolution: Duration::ZERO,
            _queues: Vec::with_capacity(players),
            rng: 0x9E37_79B9_7F4A_7C15,
            sent: Arc::default(),
            pool: None,
            taken: Vec::new(),
        };
        for i in 0..players {
            b.join(i);
        }
        b
    }

    /// A number in [0, 1), from a fixed sequence.
    fn unit(&mut self) -> f32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Player `i` joins, proves its UDP address and reports its position.
    fn join(&mut self, i: usize) {
        let id = i as PlayerId + 1;
        let session_id = id;
        let mut secret = [0u8; 32];
        secret[..8].copy_from_slice(&id.to_le_bytes());
        let Ok(keys) = ClientSessionKeys::derive(&secret, &[7; 32]) else {
            unreachable!("32-byte inputs derive keys")
        };
        let server = keys.datagram(Side::Responder, session_id);
        let mut client: DatagramOpener = keys.datagram(Side::Initiator, session_id).opener;
        let level = Arc::new(QueueLevel::new(usize::MAX, usize::MAX));
        let _ = self.core.admit(self.now, id);
        self.core.handle_join(
            self.now,
            NewPlayer {
                player: id,
                conn: id,
                session_id,
                user_data: Vec::new(),
                out: level.clone(),
                keys: Arc::new(keys),
                udp: server.sealer,
            },
        );
        self._queues.push(level);
        let port = u16::try_from(i % 60_000).unwrap_or(0) + 1;
        let ip = [127, 1 + (i / 60_000) as u8, 0, 1];
        let from = SocketAddr::from((ip, port));
        // The challenge, answered.
        self.datagram(id, from, vec![Record::Ping(0)]);
        let mut challenge = None;
        self.core.drain_transmits(|_, d| {
            if let Ok(plain) = client.open(d)
                && let Ok(records) = decode_records(&plain)
            {
                for r in records {
                    if let Record::PathChallenge(c) = r {
                        challenge = Some(c);
                    }
                }
            }
        });
        if let Some(c) = challenge {
            self.datagram(id, from, vec![Record::PathResponse(c)]);
        }
        let pos = [self.unit() * self.side, self.unit() * self.side, 0.0];
        self.players.push((pos, from));
        self.report(i);
        self.carry_out();
    }

    fn datagram(&mut self, player: PlayerId, from: SocketAddr, records: Vec<Record>) {
        let len = DATAGRAM_OVERHEAD + records.iter().map(Record::encoded_len).sum::<usize>();
        self.core
            .handle_datagram(self.now, player, player, from, len, records);
        self.core.finish();
    }

    /// Player `i` reports its position (and a little more state, as bench's
    /// positions carry a send time and a sequence number).
    fn report(&mut self, i: usize) {
        let (pos, from) = self.players[i];
        let mut payload = Vec::with_capacity(28);
        for v in pos {
            payload.extend_from_slice(&v.to_le_bytes());
        }
        payload.extend_from_slice(&[0; 16]);
        let record = Record::Data {
            command: World::POS,
            payload,
        };
        self.datagram(i as PlayerId + 1, from, vec![record]);
    }

    /// Takes the core's outputs as the driver would (there are none to
    /// carry out here but the master link's player events).
    fn carry_out(&mut self) {
        while let Some(o) = self.core.poll_output() {
            if let Output::Link(_) = o {}
        }
    }

    /// Seals on `workers` seal workers from now on (as the driver does with
    /// `[cluster] seal_threads` = `workers`, 2 or more; 1 here is one worker
    /// beside this thread); 0 seals on this thread, as `seal_threads` 0 or 1.
    /// Fails if a worker thread cannot be started.
    pub fn with_seal_workers(mut self, workers: usize) -> std::io::Result<Self> {
        self.pool = None;
        if workers > 0 {
            let sent = &self.sent;
            self.pool = Some(SealPool::new(workers, usize::MAX, || sent.clone())?);
        }
        Ok(self)
    }

    /// Runs the deadlines as a timer of `resolution` would (as the driver's
    /// tokio timer, 1 ms): each when the first multiple of `resolution` at
    /// or after it has come, with every other deadline due by then. Zero
    /// (the default) runs each at its instant.
    pub fn with_timer_resolution(mut self, resolution: Duration) -> Self {
        self.resolution = resolution;
        self
    }

    /// When a timer of the bench's resolution fires for deadline `d`.
    fn timer(&self, d: Instant) -> Instant {
        let r = self.resolution.as_nanos();
        if r == 0 || d <= self.origin {
            return d;
        }
        let after = (d - self.origin).as_nanos();
        let ticks = u32::try_from(after.div_ceil(r)).unwrap_or(u32::MAX);
        self.origin + self.resolution * ticks
    }

    /// One period of the update rate: every player moves a little and
    /// reports its position, one after the other spread evenly over the
    /// period, and the core runs what is due in between (update ticks, the
    /// batches whose window ended), sealing the whole fan-out (waiting for
    /// the seal workers, if any, to finish).
    pub fn period(&mut self) -> PeriodStats {
        let before = self.sent.stats();
        let start = self.now;
        let period = self.tick * self.slices;
        let n = self.players.len();
        for i in 0..n {
            let at = start + period.mul_f64(i as f64 / n as f64);
            self.run_until(at);
            let (mut pos, from) = self.players[i];
            for v in pos.iter_mut().take(2) {
                *v = (*v + self.unit() * 2.0 - 1.0).rem_euclid(self.side);
            }
            self.players[i] = (pos, from);
            self.report(i);
            self.send();
        }
        self.run_until(start + period);
        self.carry_out();
        if let Some(pool) = &self.pool {
            pool.fence();
        }
        let after = self.sent.stats();
        PeriodStats {
            datagrams: after.datagrams - before.datagrams,
            bytes: after.bytes - before.bytes,
        }
    }

    /// Runs the update ticks and the deadlines due up to `at`, in order, as
    /// the driver's timers would; the clock is then at `at`.
    fn run_until(&mut self, at: Instant) {
        loop {
            let due = self
                .core
                .poll_timeout()
                .map(|d| self.timer(d))
                .filter(|d| *d <= at);
            match due {
                Some(d) if d < self.next_tick => self.core.handle_timeout(d),
                _ if self.next_tick <= at => {
                    self.core.handle_update(self.next_tick);
                    self.next_tick += self.tick;
                }
                _ => break,
            }
            self.core.finish();
            self.send();
        }
        self.now = at;
    }

    /// Seals the queued datagrams (here, or hands them to the workers) and
    /// counts them where the driver would send them.
    fn send(&mut self) {
        match &mut self.pool {
            None => {
                let sent = &self.sent;
                self.core.drain_transmits(|_, d| sent.add(1, d.len()));
            }
            Some(pool) => {
                self.core.take_transmits(&mut self.taken);
                pool.submit(&mut self.taken);
                self.core.give_back_buffers(pool.returned_buffers());
            }
        }
    }

    /// The number of simulated players.
    pub fn players(&self) -> usize {
        self.players.len()
    }

    /// The world's side, in units.
    pub fn side(&self) -> f32 {
        self.side
    }
}

impl std::fmt::Debug for CoreBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreBench")
            .field("players", &self.players.len())
            .field("side", &self.side)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn records_share_datagrams_within_the_state_window() {
        let at = |window| {
            let mut b = CoreBench::new(300, 10.0, 32.0, 20.0, (Duration::from_millis(10), window));
            b.period();
            b.period()
        };
        // About 10 neighbours each at 20 Hz (fewer at the world's edges),
        // reporting at spread moments: with no window one datagram per
        // record (one report per input); with 5 ms about two records per
        // datagram; with a whole period about one datagram per player.
        let none = at(Duration::ZERO);
        let five = at(Duration::from_millis(5));
        let whole = at(Duration::from_millis(50));
        assert!(none.datagrams > 1_200, "{none:?}");
        assert!(
            five.datagrams < none.datagrams * 3 / 4,
            "{five:?} vs {none:?}"
        );
        assert!(whole.datagrams <= 600, "{whole:?}");
        assert!(five.bytes > five.datagrams * DATAGRAM_OVERHEAD, "{five:?}");
    }
}
