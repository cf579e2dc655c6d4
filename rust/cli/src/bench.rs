//! `sustenet bench`: a load generator for capacity planning.
//!
//! N simulated clients each do the full join flow (log in through the
//! master as `<prefix>-<i>`, join `Auto`), then send unreliable position
//! updates (command [`POS`]) at H Hz while walking through the world,
//! reliable echoes (command 1) at R per second and unreliable echoes
//! (command 1 on UDP) at U per second. The echoes carry their send time,
//! so each one that comes back is a round trip measured on its channel.
//!
//! The command you start only coordinates. The clients run in worker
//! processes (this same binary in a hidden `--worker` mode), at most
//! `--per-process` clients each so that no process runs out of file
//! descriptors. Every worker writes one JSON line per second on stdout
//! (cumulative counters and round-trip histograms) and a final line with
//! its errors; the coordinator adds them up, prints a progress line on
//! stderr and the summary at the end. Running the clients out of process
//! also lets workers log only errors without touching the coordinator's
//! logging.
//!
//! All processes share an epoch (a UNIX time in microseconds picked by the
//! coordinator): client `i` of `N` starts at `epoch + ramp * i / N`, every
//! client stops sending at `epoch + ramp + duration`, and every worker
//! reports at `epoch + k` seconds, so the per-second lines line up.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use sustenet_client::{Client, ClientConfig, ClientError, ClientEvent, UNRELIABLE_LIMIT};
use sustenet_proto::{JoinTarget, PublicKey};
use sustenet_server::EchoChat;
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::up::{ClientFile, DEV_DIR};

/// Command number of a position update: x, y, z (f32 LE), then a sequence
/// number (u32 LE), 16 bytes, sent unreliably.
pub const POS: u16 = 10;
/// Command number of an echo (EchoChat sends it back on the same channel):
/// send time (u64 LE, µs since the bench epoch), sequence (u32 LE), padding.
pub const ECHO: u16 = EchoChat::ECHO;
const POS_LEN: usize = 16;
const ECHO_HEADER: usize = 12;
/// Most time after the end of the run spent waiting for reliable echoes.
const DRAIN: Duration = Duration::from_secs(5);
/// Least time after the end of the run spent waiting for echoes.
const MIN_DRAIN: Duration = Duration::from_millis(500);
/// Recent position sends remembered per client, to match position echoes.
const POS_RING: usize = 64;
/// Most queued events a client handles in one go after the one it woke for.
const EVENT_BATCH: usize = 256;
/// Example messages kept per kind of error.
const EXAMPLES: usize = 3;
/// Clients per process when the open-file limit cannot be read.
const DEFAULT_PER_PROCESS: u32 = 4000;
/// File descriptors one client needs: TCP and UDP to the cluster, plus the
/// master connection while it joins.
const FDS_PER_CLIENT: u64 = 3;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Simulated clients.
    #[arg(long, default_value_t = 50)]
    clients: u32,
    /// Seconds of full load after the ramp.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Position updates per second per client (unreliable, command 10).
    #[arg(long, default_value_t = 20.0)]
    hz: f64,
    /// Reliable echoes per second per client (command 1 over TCP).
    #[arg(long, default_value_t = 1.0)]
    reliable_per_sec: f64,
    /// Unreliable echoes per second per client (command 1 over UDP), for the
    /// unreliable round trip and delivery ratio.
    #[arg(long, default_value_t = 2.0)]
    unreliable_per_sec: f64,
    /// Seconds over which the clients start (default: clients / 250, at least 2, at most 30).
    #[arg(long)]
    ramp: Option<f64>,
    /// Echo payload size in bytes (at least 12; unreliable echoes are capped at the datagram limit).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// The master's host:port (default: from <dir>/client.toml written by `sustenet up`).
    #[arg(long, env = "SUSTENET_MASTER")]
    master: Option<String>,
    /// The master's public key in base64 (default: from <dir>/client.toml).
    #[arg(long, env = "SUSTENET_MASTER_KEY")]
    key: Option<String>,
    /// Folder where `sustenet up` wrote client.toml.
    #[arg(long, default_value = DEV_DIR)]
    dir: PathBuf,
    /// Login secret (for masters with auth = "shared_secret").
    #[arg(
        long,
        default_value = "",
        env = "SUSTENET_SECRET",
        hide_env_values = true
    )]
    secret: String,
    /// Clients log in as <prefix>-<i>.
    #[arg(long, default_value = "bench")]
    user_prefix: String,
    /// Print the summary as one JSON object on stdout, and no progress line.
    #[arg(long)]
    json: bool,
    /// Worker processes (default: as few as --per-process allows).
    #[arg(long)]
    processes: Option<u32>,
    /// Most clients per process (default: from the open-file limit, 3 descriptors per client; 4000 if unknown).
    #[arg(long)]
    per_process: Option<u32>,
    /// Side of the square world the clients walk in, centred on 0.
    #[arg(long, default_value_t = 1000.0)]
    world: f32,
    /// Walking speed in world units per second.
    #[arg(long, default_value_t = 10.0)]
    speed: f32,
    /// Seconds allowed for a client's login and join.
    #[arg(long, default_value_t = 20)]
    timeout: u64,
    /// Most clients logging in or joining at once, over all processes
    /// (shared evenly between them). Kept well under the servers' default
    /// handshake limit (512), so a slow moment queues joins here instead of
    /// getting them refused.
    #[arg(long, default_value_t = 64)]
    joins_in_flight: u32,
    /// Internal: run clients and report JSON lines (started by the coordinator).
    #[arg(long, hide = true)]
    worker: bool,
    /// Internal: this worker's number.
    #[arg(long, hide = true, default_value_t = 0)]
    worker_index: u32,
    /// Internal: how many workers there are.
    #[arg(long, hide = true, default_value_t = 1)]
    worker_count: u32,
    /// Internal: the shared epoch, UNIX time in microseconds.
    #[arg(long, hide = true, default_value_t = 0)]
    epoch_us: u64,
}

// ---------------------------------------------------------------- the plan

/// The validated settings every process works from.
#[derive(Debug, Clone)]
struct Plan {
    master: String,
    key: PublicKey,
    key_b64: String,
    clients: u32,
    duration: Duration,
    ramp: Duration,
    hz: f64,
    reliable_per_sec: f64,
    unreliable_per_sec: f64,
    size: usize,
    secret: String,
    user_prefix: String,
    world: f32,
    speed: f32,
    timeout: Duration,
    joins_in_flight: u32,
}

fn rate(name: &str, v: f64) -> anyhow::Result<f64> {
    if !v.is_finite() || !(0.0..=1000.0).contains(&v) {
        bail!("--{name} must be between 0 and 1000 (got {v})");
    }
    Ok(v)
}

/// `None` for 0, and for rates so low that the period is beyond what a
/// `Duration` holds: either way the stream never sends.
fn period(per_sec: f64) -> Option<Duration> {
    (per_sec > 0.0)
        .then(|| Duration::try_from_secs_f64(1.0 / per_sec).ok())
        .flatten()
}

impl Plan {
    fn new(args: &BenchArgs) -> anyhow::Result<Plan> {
        let (master, key_b64) = match (&args.master, &args.key) {
            (Some(m), Some(k)) => (m.clone(), k.clone()),
            (m, k) => {
                let f = ClientFile::load(&args.dir)?;
                (
                    m.clone().unwrap_or(f.master),
                    k.clone().unwrap_or(f.public_key),
                )
            }
        };
        let key = PublicKey::from_base64(&key_b64)
            .with_context(|| format!("bad master public key '{key_b64}'"))?;
        if args.clients == 0 {
            bail!("--clients must be at least 1");
        }
        if !args.duration.is_finite() || args.duration <= 0.0 || args.duration > 86_400.0 {
            bail!(
                "--duration must be more than 0 and at most 86400 seconds (got {})",
                args.duration
            );
        }
        let ramp = args
            .ramp
            .unwrap_or_else(|| (f64::from(args.clients) / 250.0).clamp(2.0, 30.0));
        if !ramp.is_finite() || !(0.0..=3600.0).contains(&ramp) {
            bail!("--ramp must be between 0 and 3600 seconds (got {ramp})");
        }
        if !args.world.is_finite() || args.world <= 0.0 {
            bail!("--world must be a positive size (got {})", args.world);
        }
        if !args.speed.is_finite() || args.speed < 0.0 {
            bail!("--speed must be 0 or more (got {})", args.speed);
        }
        Ok(Plan {
            master,
            key,
            key_b64,
            clients: args.clients,
            duration: Duration::from_secs_f64(args.duration),
            ramp: Duration::from_secs_f64(ramp),
            hz: rate("hz", args.hz)?,
            reliable_per_sec: rate("reliable-per-sec", args.reliable_per_sec)?,
            unreliable_per_sec: rate("unreliable-per-sec", args.unreliable_per_sec)?,
            size: args.size.max(ECHO_HEADER),
            secret: args.secret.clone(),
            user_prefix: args.user_prefix.clone(),
            world: args.world,
            speed: args.speed,
            timeout: Duration::from_secs(args.timeout.max(1)),
            joins_in_flight: args.joins_in_flight.max(1),
        })
    }

    /// When client `i` starts, in µs after the epoch.
    fn start_us(&self, i: u32) -> u64 {
        let ramp = self.ramp.as_micros();
        let at = ramp * u128::from(i) / u128::from(self.clients.max(1));
        u64::try_from(at).unwrap_or(u64::MAX)
    }

    /// When every client stops sending, in µs after the epoch.
    fn end_us(&self) -> u64 {
        u64::try_from((self.ramp + self.duration).as_micros()).unwrap_or(u64::MAX)
    }

    fn target_out_per_sec(&self) -> f64 {
        f64::from(self.clients) * (self.hz + self.reliable_per_sec + self.unreliable_per_sec)
    }
}

// ---------------------------------------------------------------- clock

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Microseconds since the shared epoch, read from a monotonic clock.
#[derive(Debug, Clone, Copy)]
struct Clock {
    base: Instant,
    /// µs since the epoch at `base` (negative before the epoch).
    base_us: i64,
}

impl Clock {
    fn new(epoch_us: u64) -> Clock {
        let now = i64::try_from(unix_us()).unwrap_or(i64::MAX);
        let epoch = i64::try_from(epoch_us).unwrap_or(i64::MAX);
        Clock {
            base: Instant::now(),
            base_us: now.saturating_sub(epoch),
        }
    }

    fn now_us(&self) -> u64 {
        let e = i64::try_from(self.base.elapsed().as_micros()).unwrap_or(i64::MAX);
        u64::try_from(self.base_us.saturating_add(e).max(0)).unwrap_or(0)
    }

    /// The instant at which `now_us()` reads `us`.
    fn at(&self, us: u64) -> Instant {
        let delta = i64::try_from(us)
            .unwrap_or(i64::MAX)
            .saturating_sub(self.base_us);
        if delta >= 0 {
            self.base + Duration::from_micros(delta.unsigned_abs())
        } else {
            self.base
                .checked_sub(Duration::from_micros(delta.unsigned_abs()))
                .unwrap_or(self.base)
        }
    }
}

// ---------------------------------------------------------------- histogram

/// Exact below 128 µs, then 64 buckets per power of two (under 1.6 % error).
const LINEAR: u64 = 128;
const SUB_BITS: u32 = 6;
const BUCKETS: usize = 128 + 57 * 64;

fn bucket(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let top = (v >> shift) as usize;
    128 + (msb as usize - 7) * 64 + (top - 64)
}

/// The highest value that falls in bucket `i`.
fn bucket_high(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let k = i - 128;
    let msb = 7 + (k / 64) as u32;
    let top = 64 + (k % 64) as u128;
    let shift = msb - SUB_BITS;
    let high = ((top + 1) << shift) - 1;
    u64::try_from(high).unwrap_or(u64::MAX)
}

/// A log-bucket histogram of microseconds (or milliseconds for join times).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "SparseHist", into = "SparseHist")]
struct Hist {
    counts: Vec<u64>,
    max: u64,
}

/// How a histogram travels between processes: only the buckets in use.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SparseHist {
    max: u64,
    b: Vec<(u32, u64)>,
}

impl From<SparseHist> for Hist {
    fn from(s: SparseHist) -> Hist {
        let mut h = Hist::default();
        for (i, n) in s.b {
            if let Some(c) = h.counts.get_mut(i as usize) {
                *c += n;
            }
        }
        h.max = s.max;
        h
    }
}

impl From<Hist> for SparseHist {
    fn from(h: Hist) -> SparseHist {
        SparseHist {
            max: h.max,
            b: h.counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| (u32::try_from(i).unwrap_or(u32::MAX), *n))
                .collect(),
        }
    }
}

impl Default for Hist {
    fn default() -> Hist {
        Hist {
            counts: vec![0; BUCKETS],
            max: 0,
        }
    }
}

/// Count and quantiles of one histogram (units in the field's name).
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Quantiles {
    count: u64,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

impl Hist {
    fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn add(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.max = self.max.max(o.max);
    }

    /// What was recorded since `earlier` (a snapshot of the same histogram).
    fn minus(&self, earlier: &Hist) -> Hist {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .zip(&earlier.counts)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let top = counts.iter().rposition(|n| *n > 0).map_or(0, bucket_high);
        Hist {
            counts,
            max: top.min(self.max),
        }
    }

    fn percentile(&self, p: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_high(i).min(self.max);
            }
        }
        self.max
    }

    fn quantiles(&self) -> Quantiles {
        Quantiles {
            count: self.count(),
            p50: self.percentile(0.50),
            p99: self.percentile(0.99),
            p999: self.percentile(0.999),
            max: if self.count() == 0 { 0 } else { self.max },
        }
    }
}

/// A histogram many tasks record into without locks.
#[derive(Debug)]
struct AtomicHist {
    counts: Vec<AtomicU64>,
    max: AtomicU64,
}

impl Default for AtomicHist {
    fn default() -> AtomicHist {
        AtomicHist {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
}

impl AtomicHist {
    fn record(&self, v: u64) {
        if let Some(c) = self.counts.get(bucket(v)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Hist {
        Hist {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            max: self.max.load(Ordering::Relaxed),
        }
    }
}

// ---------------------------------------------------------------- counters

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Cumulative counts of one process (or, added up, of all of them).
        #[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
        struct Counters {
            $($name: u64,)*
        }

        impl Counters {
            fn add(&mut self, o: &Counters) {
                $(self.$name += o.$name;)*
            }
            fn minus(&self, o: &Counters) -> Counters {
                Counters { $($name: self.$name.saturating_sub(o.$name),)* }
            }
        }

        #[derive(Debug, Default)]
        struct AtomicCounters {
            $($name: AtomicU64,)*
        }

        impl AtomicCounters {
            fn load(&self) -> Counters {
                Counters { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters!(
    target,
    started,
    joined,
    connected,
    failed,
    disconnected,
    pos_sent,
    rel_sent,
    rel_recv,
    unrel_sent,
    unrel_recv,
    pos_recv,
    other_recv,
    redirects,
    send_errors,
    client_errors,
    rel_missing,
);

impl Counters {
    fn msgs_out(&self) -> u64 {
        self.pos_sent + self.rel_sent + self.unrel_sent
    }
    fn msgs_in(&self) -> u64 {
        self.rel_recv + self.unrel_recv + self.pos_recv + self.other_recv
    }
    fn errors(&self) -> u64 {
        self.failed + self.disconnected + self.send_errors + self.client_errors + self.rel_missing
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Everything a worker reports once a second.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Snapshot {
    c: Counters,
    /// Reliable echo round trips, µs.
    rel: Hist,
    /// Unreliable echo round trips, µs.
    unrel: Hist,
    /// Position echo round trips, µs (only for plugins that echo positions).
    pos: Hist,
    /// Login to joined, ms.
    join: Hist,
}

impl Snapshot {
    fn add(&mut self, o: &Snapshot) {
        self.c.add(&o.c);
        self.rel.add(&o.rel);
        self.unrel.add(&o.unrel);
        self.pos.add(&o.pos);
        self.join.add(&o.join);
    }
    fn minus(&self, o: &Snapshot) -> Snapshot {
        Snapshot {
            c: self.c.minus(&o.c),
            rel: self.rel.minus(&o.rel),
            unrel: self.unrel.minus(&o.unrel),
            pos: self.pos.minus(&o.pos),
            join: self.join.minus(&o.join),
        }
    }
}

/// Errors of one kind: how many, and the first few messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ErrorGroup {
    kind: String,
    count: u64,
    examples: Vec<String>,
}

#[derive(Debug, Default)]
struct ErrorBook(Mutex<BTreeMap<String, ErrorGroup>>);

impl ErrorBook {
    fn record(&self, kind: &str, message: String) {
        let mut book = self.0.lock().unwrap_or_else(|e| e.into_inner());
        add_error(&mut book, kind, 1, std::iter::once(message));
    }
    fn groups(&self) -> Vec<ErrorGroup> {
        let book = self.0.lock().unwrap_or_else(|e| e.into_inner());
        book.values().cloned().collect()
    }
}

fn add_error(
    book: &mut BTreeMap<String, ErrorGroup>,
    kind: &str,
    count: u64,
    examples: impl IntoIterator<Item = String>,
) {
    let g = book.entry(kind.to_owned()).or_insert_with(|| ErrorGroup {
        kind: kind.to_owned(),
        count: 0,
        examples: Vec::new(),
    });
    g.count += count;
    for m in examples {
        if g.examples.len() < EXAMPLES && !g.examples.contains(&m) {
            g.examples.push(m);
        }
    }
}

#[derive(Debug, Default)]
struct Stats {
    c: AtomicCounters,
    rel: AtomicHist,
    unrel: AtomicHist,
    pos: AtomicHist,
    join: AtomicHist,
    errors: ErrorBook,
}

impl Stats {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            c: self.c.load(),
            rel: self.rel.snapshot(),
            unrel: self.unrel.snapshot(),
            pos: self.pos.snapshot(),
            join: self.join.snapshot(),
        }
    }
}

/// One line of a worker's stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WorkerLine {
    /// Cumulative state at `epoch + tick` seconds.
    Tick { tick: u64, snap: Snapshot },
    /// Everything, once every client is done.
    Final {
        snap: Snapshot,
        errors: Vec<ErrorGroup>,
    },
}

// ---------------------------------------------------------------- one client

/// Why a client failed: a short kind to group by, and the full message.
#[derive(Debug)]
struct Failure {
    kind: String,
    message: String,
}

impl Failure {
    fn new(kind: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure {
            kind: kind.into(),
            message: message.into(),
        }
    }

    fn client(e: &ClientError) -> Failure {
        // The wildcard keeps this compiling when the client grows a variant.
        #[allow(unreachable_patterns)]
        let kind = match e {
            ClientError::MasterUnreachable { .. } => "cannot reach the master".to_owned(),
            ClientError::ClusterUnreachable { .. } => "cannot reach the cluster".to_owned(),
            ClientError::Handshake(_) => "handshake failed".to_owned(),
            ClientError::Refused { reason, .. } => format!("refused: {reason}"),
            ClientError::WrongMasterKey => "wrong master public key".to_owned(),
            ClientError::VersionMismatch { .. } => "protocol version mismatch".to_owned(),
            ClientError::NotInCluster => "not in a cluster".to_owned(),
            ClientError::NotLoggedIn => "not logged in".to_owned(),
            ClientError::TooLarge { .. } => "payload too large".to_owned(),
            ClientError::Stopped => "client command queue full or stopped".to_owned(),
            ClientError::Connection(_) => "connection error".to_owned(),
            _ => "client error".to_owned(),
        };
        Failure::new(kind, e.to_string())
    }
}

/// Each client walks its own repeatable path: a generator seeded by its index.
type Rng = rand::rngs::StdRng;

/// Uniform in [0, 1).
fn unit(rng: &mut Rng) -> f64 {
    rand::Rng::random(rng)
}

/// A random walk in a square world of side `world` (x, y), with z between
/// 0 and a tenth of it: turns slowly, bounces off the edges.
#[derive(Debug)]
struct Walker {
    p: [f32; 3],
    heading: f32,
    climb: f32,
    half: f32,
    speed: f32,
}

impl Walker {
    fn new(rng: &mut Rng, world: f32, speed: f32) -> Walker {
        let half = world / 2.0;
        Walker {
            p: [
                (unit(rng) as f32 * 2.0 - 1.0) * half,
                (unit(rng) as f32 * 2.0 - 1.0) * half,
                unit(rng) as f32 * world / 10.0,
            ],
            heading: unit(rng) as f32 * std::f32::consts::TAU,
            climb: 0.0,
            half,
            speed,
        }
    }

    fn step(&mut self, rng: &mut Rng, dt: f32) {
        self.heading += (unit(rng) as f32 - 0.5) * 2.0 * dt;
        self.climb = (self.climb + (unit(rng) as f32 - 0.5) * dt).clamp(-0.2, 0.2);
        let h = self.half;
        self.p[0] += self.heading.cos() * self.speed * dt;
        self.p[1] += self.heading.sin() * self.speed * dt;
        self.p[2] = (self.p[2] + self.climb * self.speed * dt).clamp(0.0, h / 5.0);
        if self.p[0] > h || self.p[0] < -h {
            self.p[0] = self.p[0].clamp(-h, h);
            self.heading = std::f32::consts::PI - self.heading;
        }
        if self.p[1] > h || self.p[1] < -h {
            self.p[1] = self.p[1].clamp(-h, h);
            self.heading = -self.heading;
        }
    }

    fn payload(&self, seq: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity(POS_LEN);
        for c in self.p {
            v.extend_from_slice(&c.to_le_bytes());
        }
        v.extend_from_slice(&seq.to_le_bytes());
        v
    }
}

fn echo_payload(sent_us: u64, seq: u32, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(&sent_us.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.resize(size.max(ECHO_HEADER), 0xA5);
    v
}

fn read_u64(p: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = p.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

fn read_u32(p: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = p.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// Waits for the event `f` accepts; errors and disconnects end the wait.
async fn wait_for<T>(
    events: &flume::Receiver<ClientEvent>,
    deadline: Instant,
    what: &str,
    mut f: impl FnMut(ClientEvent) -> Option<Result<T, Failure>>,
) -> Result<T, Failure> {
    loop {
        let ev = match tokio::time::timeout_at(deadline, events.recv_async()).await {
            Err(_) => {
                return Err(Failure::new(
                    format!("timed out waiting for {what}"),
                    format!("no answer to {what} within the --timeout"),
                ));
            }
            Ok(Err(_)) => return Err(Failure::new("client stopped", "the client task stopped")),
            Ok(Ok(ev)) => ev,
        };
        match ev {
            ClientEvent::Error(e) => return Err(Failure::client(&e)),
            ClientEvent::Disconnected { reason, message } => {
                return Err(Failure::new(
                    format!("disconnected: {reason}"),
                    format!("{reason}: {message}"),
                ));
            }
            ClientEvent::MasterDisconnected { reason, message } => {
                return Err(Failure::new(
                    format!("the master closed the connection: {reason}"),
                    format!("{reason}: {message}"),
                ));
            }
            other => {
                if let Some(r) = f(other) {
                    return r;
                }
            }
        }
    }
}

async fn join(
    client: &Client,
    events: &flume::Receiver<ClientEvent>,
    plan: &Plan,
    i: u32,
    deadline: Instant,
) -> Result<(), Failure> {
    client
        .login(
            format!("{}-{i}", plan.user_prefix),
            plan.secret.clone().into_bytes(),
        )
        .map_err(|e| Failure::client(&e))?;
    wait_for(events, deadline, "the login", |ev| match ev {
        ClientEvent::LoginSucceeded { .. } => Some(Ok(())),
        ClientEvent::LoginFailed { message } => Some(Err(Failure::new("login refused", message))),
        _ => None,
    })
    .await?;
    client
        .join(JoinTarget::Auto)
        .map_err(|e| Failure::client(&e))?;
    wait_for(events, deadline, "the join", |ev| match ev {
        ClientEvent::Joined { .. } => Some(Ok(())),
        ClientEvent::JoinFailed { reason, message } => Some(Err(Failure::new(
            format!("join refused: {reason}"),
            format!("{reason}: {message}"),
        ))),
        _ => None,
    })
    .await
}

/// A client's state while it plays.
struct Player<'a> {
    stats: &'a Stats,
    clock: Clock,
    /// (sequence, send time) of recent position updates.
    ring: [(u32, u64); POS_RING],
    /// Reliable echoes sent and not yet back.
    outstanding: u64,
    /// Position and other packets counted since the last [`Player::publish`]:
    /// with fan-out they are most of what arrives, and one shared atomic
    /// add per packet, from every client on every thread, costs more than
    /// the counting itself.
    pos_recv: u64,
    other_recv: u64,
}

impl Player<'_> {
    /// Adds the locally counted packets to the process's counters.
    fn publish(&mut self) {
        let c = &self.stats.c;
        for (local, shared) in [
            (&mut self.pos_recv, &c.pos_recv),
            (&mut self.other_recv, &c.other_recv),
        ] {
            if *local > 0 {
                shared.fetch_add(std::mem::take(local), Ordering::Relaxed);
            }
        }
    }

    /// Handles `first` and whatever else is already queued (up to a bound,
    /// so that a flood cannot starve this client's sends): the records of
    /// one datagram arrive as one event each, and a trip through `play`'s
    /// select for every one of them was most of the generator's own work.
    fn on_events(
        &mut self,
        first: ClientEvent,
        events: &flume::Receiver<ClientEvent>,
    ) -> Result<(), Failure> {
        let mut r = self.on_event(first);
        for _ in 0..EVENT_BATCH {
            if r.is_err() {
                break;
            }
            match events.try_recv() {
                Ok(ev) => r = self.on_event(ev),
                Err(_) => break,
            }
        }
        self.publish();
        r
    }

    fn on_event(&mut self, ev: ClientEvent) -> Result<(), Failure> {
        let c = &self.stats.c;
        match ev {
            ClientEvent::Packet {
                command,
                payload,
                reliable,
            } => {
                if command == ECHO {
                    let Some(sent) = read_u64(&payload, 0) else {
                        self.other_recv += 1;
                        return Ok(());
                    };
                    let rtt = self.clock.now_us().saturating_sub(sent);
                    if reliable {
                        self.stats.rel.record(rtt);
                        bump(&c.rel_recv);
                        self.outstanding = self.outstanding.saturating_sub(1);
                    } else {
                        self.stats.unrel.record(rtt);
                        bump(&c.unrel_recv);
                    }
                } else if command == POS {
                    self.pos_recv += 1;
                    if let Some(seq) = read_u32(&payload, 12).filter(|_| payload.len() == POS_LEN) {
                        let (s, sent) = self.ring[seq as usize % POS_RING];
                        if s == seq {
                            let now = self.clock.now_us();
                            self.stats.pos.record(now.saturating_sub(sent));
                        }
                    }
                } else {
                    self.other_recv += 1;
                }
            }
            ClientEvent::Redirected { .. } => bump(&c.redirects),
            ClientEvent::Disconnected { reason, message } => {
                return Err(Failure::new(
                    format!("disconnected: {reason}"),
                    format!("{reason}: {message}"),
                ));
            }
            ClientEvent::Error(e) => {
                bump(&c.client_errors);
                let f = Failure::client(&e);
                self.stats.errors.record(&f.kind, f.message);
            }
            _ => {}
        }
        Ok(())
    }

    fn send_failed(&self, e: &ClientError) {
        bump(&self.stats.c.send_errors);
        let f = Failure::client(e);
        self.stats
            .errors
            .record(&format!("send: {}", f.kind), f.message);
    }
}

/// One stream of sends at a fixed rate. A client's streams share one
/// timer (see `play`): a timer per stream, each polled on every wake-up,
/// was a large part of the generator's own CPU.
#[derive(Debug)]
struct Every {
    /// `None` once the schedule runs past what an `Instant` holds.
    next: Option<Instant>,
    period: Duration,
}

impl Every {
    fn new(first: Instant, period: Duration) -> Every {
        Every {
            next: Some(first),
            period,
        }
    }

    /// Whether a send is due at `now`; if so, moves on to the next one. A
    /// generator that fell behind skips the sends it missed (and sends less,
    /// which the summary shows) rather than bursting to catch up.
    fn due(&mut self, now: Instant) -> bool {
        let Some(next) = self.next.filter(|t| *t <= now) else {
            return false;
        };
        let p = self.period.as_nanos().max(1);
        let steps = now.duration_since(next).as_nanos() / p + 1;
        self.next = u64::try_from(steps * p)
            .ok()
            .and_then(|ns| next.checked_add(Duration::from_nanos(ns)));
        true
    }
}

async fn play(
    client: &Client,
    events: &flume::Receiver<ClientEvent>,
    plan: &Plan,
    i: u32,
    clock: Clock,
    stats: &Stats,
    end_at: Instant,
) -> Result<(), Failure> {
    let mut rng = <Rng as rand::SeedableRng>::seed_from_u64(u64::from(i) ^ 0x5EED_0000_0000_0000);
    let mut walker = Walker::new(&mut rng, plan.world, plan.speed);
    let now = Instant::now();
    // Each stream starts at a random phase so clients don't send in lockstep.
    let mut start = |p: Duration| Every::new(now + p.mul_f64(unit(&mut rng)), p);
    let pos_period = period(plan.hz);
    let mut pos_t = pos_period.map(&mut start);
    let mut rel_t = period(plan.reliable_per_sec).map(&mut start);
    let mut unrel_t = period(plan.unreliable_per_sec).map(&mut start);
    let next_wake = |streams: [&Option<Every>; 3]| {
        streams
            .into_iter()
            .filter_map(|e| e.as_ref().and_then(|e| e.next))
            .fold(end_at, Instant::min)
    };
    let dt = pos_period.map_or(0.0, |p| p.as_secs_f32());
    let unrel_size = plan.size.min(UNRELIABLE_LIMIT);
    let (mut pos_seq, mut rel_seq, mut unrel_seq) = (0u32, 0u32, 0u32);
    let mut me = Player {
        stats,
        clock,
        ring: [(u32::MAX, 0); POS_RING],
        outstanding: 0,
        pos_recv: 0,
        other_recv: 0,
    };
    let c = &stats.c;
    let timer = tokio::time::sleep_until(next_wake([&pos_t, &rel_t, &unrel_t]));
    tokio::pin!(timer);
    // Kept across wake-ups: a receive future made and dropped on every turn
    // registers and unregisters with the channel each time.
    let mut recv = events.recv_async();
    loop {
        tokio::select! {
            () = &mut timer => {
                let now = Instant::now();
                if now >= end_at {
                    break;
                }
                if pos_t.as_mut().is_some_and(|e| e.due(now)) {
                    walker.step(&mut rng, dt);
                    me.ring[pos_seq as usize % POS_RING] = (pos_seq, clock.now_us());
                    match client.send_unreliable(POS, walker.payload(pos_seq)) {
                        Ok(()) => bump(&c.pos_sent),
                        Err(e) => me.send_failed(&e),
                    }
                    pos_seq = pos_seq.wrapping_add(1);
                }
                if rel_t.as_mut().is_some_and(|e| e.due(now)) {
                    match client.send(ECHO, echo_payload(clock.now_us(), rel_seq, plan.size)) {
                        Ok(()) => {
                            bump(&c.rel_sent);
                            me.outstanding += 1;
                        }
                        Err(e) => me.send_failed(&e),
                    }
                    rel_seq = rel_seq.wrapping_add(1);
                }
                if unrel_t.as_mut().is_some_and(|e| e.due(now)) {
                    match client.send_unreliable(ECHO, echo_payload(clock.now_us(), unrel_seq, unrel_size)) {
                        Ok(()) => bump(&c.unrel_sent),
                        Err(e) => me.send_failed(&e),
                    }
                    unrel_seq = unrel_seq.wrapping_add(1);
                }
                timer.as_mut().reset(next_wake([&pos_t, &rel_t, &unrel_t]));
            }
            ev = &mut recv => {
                recv = events.recv_async();
                match ev {
                    Ok(ev) => me.on_events(ev, events)?,
                    Err(_) => return Err(Failure::new("client stopped", "the client task stopped")),
                }
            }
        }
    }
    drop(recv);
    // Drain: wait for the reliable echoes still on their way (up to DRAIN),
    // and at least MIN_DRAIN for unreliable ones.
    let soft = end_at + MIN_DRAIN;
    let hard = end_at + DRAIN;
    loop {
        let now = Instant::now();
        if now >= hard || (now >= soft && me.outstanding == 0) {
            break;
        }
        let until = if me.outstanding == 0 { soft } else { hard };
        match tokio::time::timeout_at(until, events.recv_async()).await {
            Err(_) => {}
            Ok(Ok(ev)) => me.on_events(ev, events)?,
            Ok(Err(_)) => {
                return Err(Failure::new("client stopped", "the client task stopped"));
            }
        }
    }
    if me.outstanding > 0 {
        c.rel_missing.fetch_add(me.outstanding, Ordering::Relaxed);
        stats.errors.record(
            "reliable echoes missing",
            format!(
                "{} reliable echo(es) had not come back {} s after the end of the run",
                me.outstanding,
                DRAIN.as_secs()
            ),
        );
    }
    Ok(())
}

/// One simulated client, from its start time to its goodbye.
async fn simulate(i: u32, plan: Arc<Plan>, clock: Clock, stats: Arc<Stats>, joins: Arc<Semaphore>) {
    tokio::time::sleep_until(clock.at(plan.start_us(i))).await;
    let end_at = clock.at(plan.end_us());
    bump(&stats.c.started);
    // Never closed, so this waits for a turn; a late start shows in the
    // progress lines (joined lags started) rather than as refused joins.
    let Ok(turn) = joins.acquire().await else {
        return;
    };
    let mut cfg = ClientConfig::new(plan.master.clone(), plan.key);
    cfg.handshake_timeout = plan.timeout;
    let (client, events) = Client::spawn(&tokio::runtime::Handle::current(), cfg);
    let t0 = Instant::now();
    let joined = join(&client, &events, &plan, i, t0 + plan.timeout).await;
    drop(turn);
    if let Err(f) = joined {
        bump(&stats.c.failed);
        stats.errors.record(&format!("join: {}", f.kind), f.message);
        let _ = client.disconnect();
        return;
    }
    stats
        .join
        .record(u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX));
    bump(&stats.c.joined);
    bump(&stats.c.connected);
    let r = play(&client, &events, &plan, i, clock, &stats, end_at).await;
    stats.c.connected.fetch_sub(1, Ordering::Relaxed);
    if let Err(f) = r {
        bump(&stats.c.disconnected);
        stats.errors.record(&f.kind, f.message);
    }
    let _ = client.disconnect();
}

// ---------------------------------------------------------------- worker

fn emit(line: &WorkerLine) -> anyhow::Result<()> {
    let text = serde_json::to_string(line)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").context("the coordinator is gone")?;
    out.flush().context("the coordinator is gone")?;
    Ok(())
}

/// Runs this worker's share of the clients (every `worker_count`-th one,
/// so that each worker ramps up over the whole ramp) and reports.
async fn worker(args: BenchArgs) -> anyhow::Result<()> {
    let plan = Arc::new(Plan::new(&args)?);
    let clock = Clock::new(args.epoch_us);
    let stats = Arc::new(Stats::default());
    let mut set = tokio::task::JoinSet::new();
    let step = args.worker_count.max(1);
    let joins = Arc::new(Semaphore::new((plan.joins_in_flight / step).max(1) as usize));
    let mut i = args.worker_index;
    while i < plan.clients {
        bump(&stats.c.target);
        set.spawn(simulate(
            i,
            plan.clone(),
            clock,
            stats.clone(),
            joins.clone(),
        ));
        i = i.saturating_add(step);
    }
    let mut report = tokio::time::interval_at(clock.at(1_000_000), Duration::from_secs(1));
    let mut k = 0u64;
    loop {
        tokio::select! {
            _ = report.tick() => {
                k += 1;
                emit(&WorkerLine::Tick { tick: k, snap: stats.snapshot() })?;
            }
            r = set.join_next() => match r {
                None => break,
                Some(Ok(())) => {}
                Some(Err(e)) => stats.errors.record("client task failed", e.to_string()),
            },
        }
    }
    emit(&WorkerLine::Final {
        snap: stats.snapshot(),
        errors: stats.errors.groups(),
    })
}

// ---------------------------------------------------------------- coordinator

/// Clients one process can hold under its open-file limit.
fn default_per_process() -> u32 {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .and_then(|v| {
            if v == "unlimited" {
                Some(u64::MAX)
            } else {
                v.parse::<u64>().ok()
            }
        });
    match soft {
        Some(n) => {
            let clients = n.saturating_sub(100) / FDS_PER_CLIENT;
            u32::try_from(clients.clamp(1, 50_000)).unwrap_or(DEFAULT_PER_PROCESS)
        }
        None => DEFAULT_PER_PROCESS,
    }
}

#[derive(Debug)]
enum Msg {
    Line(usize, Box<WorkerLine>),
    Garbage(usize, String),
    Exit(usize, String, bool),
}

#[derive(Debug, Default)]
struct WorkerState {
    ticks: BTreeMap<u64, Snapshot>,
    last: Snapshot,
    done: Option<(Snapshot, Vec<ErrorGroup>)>,
    exit: Option<(String, bool)>,
}

impl WorkerState {
    fn finished(&self) -> bool {
        self.done.is_some() || self.exit.is_some()
    }
    /// Its state at tick `k`, once known.
    fn at(&self, k: u64) -> Option<&Snapshot> {
        if let Some((_, s)) = self.ticks.range(k..).next() {
            return Some(s);
        }
        match (&self.done, &self.exit) {
            (Some((s, _)), _) => Some(s),
            (None, Some(_)) => Some(&self.last),
            (None, None) => None,
        }
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn progress_line(k: u64, now: &Snapshot, prev: &Snapshot) -> String {
    let d = now.minus(prev);
    let (r, u) = (d.rel.quantiles(), d.unrel.quantiles());
    format!(
        "{k:>4}s  clients {}/{}  out {}/s  in {}/s  rtt ms (p50/p99/p999, last s) reliable {}/{}/{} unreliable {}/{}/{}  errors {}",
        now.c.connected,
        now.c.target,
        d.c.msgs_out(),
        d.c.msgs_in(),
        ms(r.p50),
        ms(r.p99),
        ms(r.p999),
        ms(u.p50),
        ms(u.p99),
        ms(u.p999),
        now.c.errors(),
    )
}

#[derive(Debug, Serialize)]
struct Sent {
    positions: u64,
    reliable: u64,
    unreliable: u64,
}

#[derive(Debug, Serialize)]
struct Received {
    reliable: u64,
    unreliable: u64,
    positions: u64,
    other: u64,
}

#[derive(Debug, Serialize)]
struct Rtts {
    reliable: Quantiles,
    unreliable: Quantiles,
    position: Quantiles,
}

/// The final summary (`--json` prints it as is).
#[derive(Debug, Serialize)]
struct Summary {
    ok: bool,
    master: String,
    clients: u32,
    processes: u32,
    duration_s: f64,
    ramp_s: f64,
    hz: f64,
    reliable_per_sec: f64,
    unreliable_per_sec: f64,
    size: usize,
    joined: u64,
    failed: u64,
    disconnected: u64,
    redirects: u64,
    /// Login to joined, ms.
    join_ms: Quantiles,
    sent: Sent,
    received: Received,
    msgs_out: u64,
    msgs_in: u64,
    /// Seconds the rates and round trips are taken over (full load, after the ramp).
    window_s: f64,
    msgs_out_per_s: f64,
    msgs_in_per_s: f64,
    target_out_per_s: f64,
    /// Round trips of echoes sent in the window, µs.
    rtt_us: Rtts,
    /// Unreliable echoes back / sent, over the whole run (null if none sent).
    unreliable_delivery: Option<f64>,
    reliable_missing: u64,
    send_errors: u64,
    errors: u64,
    error_kinds: Vec<ErrorGroup>,
}

fn print_summary(s: &Summary) {
    println!(
        "sustenet bench: {} clients on {} in {} process(es); {} Hz positions, {}/s reliable and {}/s unreliable echoes of {} bytes; ramp {:.1} s, full load {:.1} s",
        s.clients,
        s.master,
        s.processes,
        s.hz,
        s.reliable_per_sec,
        s.unreliable_per_sec,
        s.size,
        s.ramp_s,
        s.duration_s
    );
    println!(
        "joined        {}/{}  (login to joined p50 {} ms, p99 {} ms, max {} ms)",
        s.joined, s.clients, s.join_ms.p50, s.join_ms.p99, s.join_ms.max
    );
    println!("failed        {}", s.failed);
    println!("disconnected  {}", s.disconnected);
    println!(
        "sent          {} positions, {} reliable echoes, {} unreliable echoes",
        s.sent.positions, s.sent.reliable, s.sent.unreliable
    );
    println!(
        "received      {} reliable echoes, {} unreliable echoes, {} positions, {} other",
        s.received.reliable, s.received.unreliable, s.received.positions, s.received.other
    );
    println!(
        "rate          {:.0} msgs/s out (target {:.0}), {:.0} msgs/s in, over {:.0} s of full load",
        s.msgs_out_per_s, s.target_out_per_s, s.msgs_in_per_s, s.window_s
    );
    for (name, q) in [
        ("reliable  ", &s.rtt_us.reliable),
        ("unreliable", &s.rtt_us.unreliable),
        ("position  ", &s.rtt_us.position),
    ] {
        if q.count > 0 || name != "position  " {
            println!(
                "rtt {name}  n {:>8}  p50 {} ms  p99 {} ms  p999 {} ms  max {} ms",
                q.count,
                ms(q.p50),
                ms(q.p99),
                ms(q.p999),
                ms(q.max)
            );
        }
    }
    match s.unreliable_delivery {
        Some(r) => println!("unreliable delivery  {:.3} %", r * 100.0),
        None => println!("unreliable delivery  - (none sent)"),
    }
    println!("errors        {}", s.errors);
    for g in &s.error_kinds {
        println!("  {} x{}", g.kind, g.count);
        for m in &g.examples {
            println!("      {m}");
        }
    }
    println!("{}", if s.ok { "bench OK" } else { "bench FAILED" });
}

fn worker_command(
    exe: &std::path::Path,
    plan: &Plan,
    w: u32,
    procs: u32,
    epoch_us: u64,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(exe);
    if std::env::var_os("RUST_LOG").is_none() {
        // Per-client log lines from thousands of clients would drown the
        // progress line; the summary reports every error.
        cmd.args(["--log-level", "error"]);
    }
    cmd.arg("bench")
        .arg("--worker")
        .args(["--worker-index", &w.to_string()])
        .args(["--worker-count", &procs.to_string()])
        .args(["--epoch-us", &epoch_us.to_string()])
        .args(["--master", &plan.master])
        .args(["--key", &plan.key_b64])
        .args(["--clients", &plan.clients.to_string()])
        .args(["--duration", &plan.duration.as_secs_f64().to_string()])
        .args(["--ramp", &plan.ramp.as_secs_f64().to_string()])
        .args(["--hz", &plan.hz.to_string()])
        .args(["--reliable-per-sec", &plan.reliable_per_sec.to_string()])
        .args(["--unreliable-per-sec", &plan.unreliable_per_sec.to_string()])
        .args(["--size", &plan.size.to_string()])
        .args(["--user-prefix", &plan.user_prefix])
        .args(["--world", &plan.world.to_string()])
        .args(["--speed", &plan.speed.to_string()])
        .args(["--timeout", &plan.timeout.as_secs().to_string()])
        .args(["--joins-in-flight", &plan.joins_in_flight.to_string()])
        .env("SUSTENET_SECRET", &plan.secret)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

async fn coordinate(args: BenchArgs) -> anyhow::Result<()> {
    let plan = Plan::new(&args)?;
    let per = args.per_process.unwrap_or_else(default_per_process).max(1);
    let needed = plan.clients.div_ceil(per);
    let procs = args
        .processes
        .unwrap_or(needed)
        .max(needed)
        .clamp(1, plan.clients);
    let exe = std::env::current_exe().context("cannot find this program to start workers")?;
    // Time for the workers to start before the first client does.
    let epoch_us = unix_us() + 300_000;
    let tty = std::io::stderr().is_terminal();
    if !args.json {
        eprintln!(
            "bench: {} clients against {} in {procs} process(es), ramp {:.1} s, then {:.1} s of full load",
            plan.clients,
            plan.master,
            plan.ramp.as_secs_f64(),
            plan.duration.as_secs_f64()
        );
    }

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Msg>();
    for w in 0..procs {
        let mut child = worker_command(&exe, &plan, w, procs, epoch_us)
            .spawn()
            .with_context(|| format!("cannot start worker process {} ", exe.display()))?;
        let out = child
            .stdout
            .take()
            .context("a worker process has no stdout")?;
        let tx = tx.clone();
        let idx = w as usize;
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let m = match serde_json::from_str::<WorkerLine>(&l) {
                    Ok(m) => Msg::Line(idx, Box::new(m)),
                    Err(e) => Msg::Garbage(idx, format!("{e}: {l:.200}")),
                };
                if tx.send(m).is_err() {
                    return;
                }
            }
            let (status, ok) = match child.wait().await {
                Ok(s) => (s.to_string(), s.success()),
                Err(e) => (e.to_string(), false),
            };
            let _ = tx.send(Msg::Exit(idx, status, ok));
        });
    }
    drop(tx);

    let mut workers: Vec<WorkerState> = (0..procs).map(|_| WorkerState::default()).collect();
    let mut book: BTreeMap<String, ErrorGroup> = BTreeMap::new();
    let ramp_s = plan.ramp.as_secs_f64();
    let baseline_tick = ramp_s.ceil() as u64;
    let end_tick = (ramp_s + plan.duration.as_secs_f64()).floor() as u64;
    let mut baseline = (baseline_tick == 0).then(Snapshot::default);
    let mut at_end: Option<Snapshot> = None;
    let mut prev = Snapshot::default();
    let mut next = 1u64;
    let mut printed = false;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Line(w, line) => match *line {
                WorkerLine::Tick { tick, snap } => {
                    if let Some(ws) = workers.get_mut(w) {
                        ws.last = snap.clone();
                        ws.ticks.insert(tick, snap);
                    }
                }
                WorkerLine::Final { snap, errors } => {
                    if let Some(ws) = workers.get_mut(w) {
                        ws.done = Some((snap, errors));
                    }
                }
            },
            Msg::Garbage(w, text) => {
                add_error(
                    &mut book,
                    "worker output",
                    1,
                    [format!("worker {w}: {text}")],
                );
            }
            Msg::Exit(w, status, ok) => {
                if let Some(ws) = workers.get_mut(w) {
                    ws.exit = Some((status, ok));
                }
            }
        }
        // Every second that all workers have reported: one progress line.
        loop {
            let all_done = workers
                .iter()
                .all(|w| w.finished() && w.ticks.range(next..).next().is_none());
            if all_done {
                break;
            }
            let mut agg = Snapshot::default();
            let mut ready = true;
            for w in &workers {
                match w.at(next) {
                    Some(s) => agg.add(s),
                    None => {
                        ready = false;
                        break;
                    }
                }
            }
            if !ready {
                break;
            }
            if !args.json {
                let line = progress_line(next, &agg, &prev);
                if tty {
                    eprint!("\r{line}\x1b[K");
                } else {
                    eprintln!("{line}");
                }
                printed = true;
            }
            if next == baseline_tick {
                baseline = Some(agg.clone());
            }
            if next == end_tick {
                at_end = Some(agg.clone());
            }
            prev = agg;
            next += 1;
            for w in &mut workers {
                w.ticks = w.ticks.split_off(&next);
            }
        }
    }
    if printed && tty {
        eprintln!();
    }

    let mut total = Snapshot::default();
    let mut worker_errors = 0u64;
    for (i, w) in workers.iter().enumerate() {
        match &w.done {
            Some((s, errors)) => {
                total.add(s);
                for g in errors {
                    add_error(&mut book, &g.kind, g.count, g.examples.iter().cloned());
                }
            }
            None => {
                total.add(&w.last);
                worker_errors += 1;
                let status = w
                    .exit
                    .as_ref()
                    .map_or_else(|| "no exit status".to_owned(), |(s, _)| s.clone());
                add_error(
                    &mut book,
                    "worker process died",
                    1,
                    [format!(
                        "worker {i} ended ({status}) before its final report; see its messages above"
                    )],
                );
            }
        }
        if let Some((status, false)) = &w.exit {
            if w.done.is_some() {
                worker_errors += 1;
                add_error(
                    &mut book,
                    "worker process failed",
                    1,
                    [format!("worker {i} exited with {status}")],
                );
            }
        }
    }
    let base = baseline.unwrap_or_default();
    let (window, window_s) = match &at_end {
        Some(e) if end_tick > baseline_tick => (e.minus(&base), (end_tick - baseline_tick) as f64),
        _ => (
            total.clone(),
            (plan.ramp + plan.duration).as_secs_f64().max(1.0),
        ),
    };
    let steady = total.minus(&base);
    let c = total.c;
    let garbage = book.get("worker output").map_or(0, |g| g.count);
    let errors = c.errors() + worker_errors + garbage;
    let not_joined = u64::from(plan.clients).saturating_sub(c.joined);
    let summary = Summary {
        ok: errors == 0 && not_joined == 0,
        master: plan.master.clone(),
        clients: plan.clients,
        processes: procs,
        duration_s: plan.duration.as_secs_f64(),
        ramp_s,
        hz: plan.hz,
        reliable_per_sec: plan.reliable_per_sec,
        unreliable_per_sec: plan.unreliable_per_sec,
        size: plan.size,
        joined: c.joined,
        failed: c.failed.max(not_joined),
        disconnected: c.disconnected,
        redirects: c.redirects,
        join_ms: total.join.quantiles(),
        sent: Sent {
            positions: c.pos_sent,
            reliable: c.rel_sent,
            unreliable: c.unrel_sent,
        },
        received: Received {
            reliable: c.rel_recv,
            unreliable: c.unrel_recv,
            positions: c.pos_recv,
            other: c.other_recv,
        },
        msgs_out: c.msgs_out(),
        msgs_in: c.msgs_in(),
        window_s,
        msgs_out_per_s: window.c.msgs_out() as f64 / window_s,
        msgs_in_per_s: window.c.msgs_in() as f64 / window_s,
        target_out_per_s: plan.target_out_per_sec(),
        rtt_us: Rtts {
            reliable: steady.rel.quantiles(),
            unreliable: steady.unrel.quantiles(),
            position: steady.pos.quantiles(),
        },
        unreliable_delivery: (c.unrel_sent > 0)
            .then(|| c.unrel_recv.min(c.unrel_sent) as f64 / c.unrel_sent as f64),
        reliable_missing: c.rel_missing,
        send_errors: c.send_errors,
        errors,
        error_kinds: book.into_values().collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary);
    }
    if !summary.ok {
        let mut why = format!(
            "{} of {} clients failed to join, {} were disconnected",
            summary.failed, summary.clients, summary.disconnected
        );
        if summary.reliable_missing > 0 {
            why.push_str(&format!(
                ", {} reliable echoes never came back",
                summary.reliable_missing
            ));
        }
        if worker_errors > 0 {
            why.push_str(&format!(", {worker_errors} worker process(es) failed"));
        }
        let first: Vec<String> = summary
            .error_kinds
            .iter()
            .take(4)
            .map(|g| {
                format!(
                    "{} (x{}): {}",
                    g.kind,
                    g.count,
                    g.examples.first().map_or("", String::as_str)
                )
            })
            .collect();
        if !first.is_empty() {
            why.push_str(&format!("; {}", first.join("; ")));
        }
        if summary.joined == 0
            && summary
                .error_kinds
                .iter()
                .any(|g| g.kind.contains("reach the master"))
        {
            why.push_str(&format!(
                " (is a master running at {}? `sustenet up` in this folder starts one)",
                summary.master
            ));
        }
        bail!("{why}");
    }
    Ok(())
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.worker {
        worker(args).await
    } else {
        coordinate(args).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for v in (0..2_000_000u64)
            .step_by(37)
            .chain([u64::MAX / 3, u64::MAX])
        {
            let b = bucket(v);
            assert!(b < BUCKETS, "{v}");
            assert!(b >= last);
            last = b;
            let high = bucket_high(b);
            assert!(high >= v, "{v} -> {b} -> {high}");
            assert!(high - v <= v / 64 + 1, "{v} -> {high}");
        }
    }

    #[test]
    fn percentiles_and_round_trip_through_json() {
        let h = AtomicHist::default();
        for v in 1..=1000u64 {
            h.record(v * 10);
        }
        let s = h.snapshot();
        let q = s.quantiles();
        assert_eq!(q.count, 1000);
        assert!((4900..=5100).contains(&q.p50), "{q:?}");
        assert!((9800..=10_000).contains(&q.p99), "{q:?}");
        assert_eq!(q.max, 10_000);
        let back: Hist = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.counts, s.counts);
        let empty = s.minus(&s);
        assert_eq!(empty.quantiles().count, 0);
    }

    #[test]
    fn every_keeps_its_rate_and_skips_what_it_missed() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut e = Every::new(t0 + ms(10), ms(50));
        assert!(!e.due(t0));
        assert!(e.due(t0 + ms(10)));
        assert!(!e.due(t0 + ms(59)));
        // Late by a bit: sends once and keeps the original phase.
        assert!(e.due(t0 + ms(65)));
        assert_eq!(e.next, Some(t0 + ms(110)));
        // Late by several periods: one send, the missed ones are skipped.
        assert!(e.due(t0 + ms(260)));
        assert!(!e.due(t0 + ms(260)));
        assert_eq!(e.next, Some(t0 + ms(310)));
        assert_eq!(period(0.0), None);
        assert_eq!(period(1e-300), None);
        assert_eq!(period(20.0), Some(ms(50)));
    }

    #[test]
    fn walker_stays_in_the_world_and_payloads_parse() {
        let mut rng = <Rng as rand::SeedableRng>::seed_from_u64(7);
        let mut w = Walker::new(&mut rng, 100.0, 50.0);
        for _ in 0..10_000 {
            w.step(&mut rng, 0.05);
            assert!(w.p[0].abs() <= 50.0 && w.p[1].abs() <= 50.0, "{:?}", w.p);
        }
        let p = w.payload(42);
        assert_eq!(p.len(), POS_LEN);
        assert_eq!(read_u32(&p, 12), Some(42));
        let e = echo_payload(123_456, 9, 64);
        assert_eq!(e.len(), 64);
        assert_eq!(read_u64(&e, 0), Some(123_456));
        assert_eq!(read_u32(&e, 8), Some(9));
    }

    #[test]
    fn clock_is_shared_through_the_epoch() {
        let epoch = unix_us();
        let c = Clock::new(epoch);
        assert!(c.now_us() < 1_000_000);
        let at = c.at(2_000_000);
        assert!(at > Instant::now() + Duration::from_millis(1500));
    }
}
