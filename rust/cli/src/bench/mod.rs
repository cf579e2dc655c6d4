//! `sustenet bench`: a load generator for capacity planning.
//!
//! N simulated clients each do the full join flow (log in through the
//! master as `<prefix>-<i>`, join `Auto`), then send unreliable position
//! updates (command [`POS`]) at H Hz while walking through the world,
//! reliable echoes (command 1) at R per second and unreliable echoes
//! (command 1 on UDP) at U per second. The echoes carry their send time,
//! so each one that comes back is a round trip measured on its channel.
//!
//! State delivery: the position updates carry their send time, sequence
//! number and sender, and the `World` plugin passes them on as `STATE`
//! records (command [`STATE`]) to the players whose interest area covers
//! the sender. Every path is a function of the client's index and the time
//! (`walks.rs`), so the generator knows who should receive each update:
//! the sender counts those (`expected`), the receivers count the updates
//! they got that were meant for them, once each (`delivered`), and the
//! one-way latency of each, from the send time in the payload to its
//! arrival. Both ends read the same clock (µs since the shared epoch, from
//! a monotonic clock anchored once per process to the system clock), so
//! the latency is exact within a process and off by the anchors'
//! difference (microseconds) between processes on one machine; bench
//! processes on different machines need clocks synchronised well below
//! the latencies measured (PTP, or NTP at best to a millisecond).
//!
//! By default the clients are light (`light/`): they share UDP sockets and
//! tasks in groups, and batch their datagrams; `--full-clients` runs a full
//! client driver per simulated client instead (`player.rs`).
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

mod coordinator;
mod delivery;
mod hist;
mod light;
mod plan;
mod player;
mod stats;
mod summary;
mod traffic;
mod walks;
mod worker;

use std::path::PathBuf;

use clap::Args;
use sustenet_server::{EchoChat, World};

use crate::up::DEV_DIR;

/// Command number of a position update, sent unreliably: x, y, z (f32 LE),
/// sequence number (u32 LE), send time (u64 LE, µs since the bench epoch),
/// the sender's client index (u32 LE); 28 bytes.
pub const POS: u16 = World::POS;
/// Command number of the `World` plugin's state records: the sender's
/// player id (u64 LE), then its position update as sent.
pub const STATE: u16 = World::STATE;
/// Command number of an echo (EchoChat sends it back on the same channel):
/// send time (u64 LE, µs since the bench epoch), sequence (u32 LE), padding.
pub const ECHO: u16 = EchoChat::ECHO;
pub(super) const POS_LEN: usize = 28;
pub(super) const ECHO_HEADER: usize = 12;

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
    /// Interest radius of the cluster's players (`sustenet up --interest-radius`):
    /// who should receive whose position updates, for the state delivery ratio.
    #[arg(long, default_value_t = 40.0)]
    interest_radius: f32,
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
    /// Run a full client driver (its own task, channels, socket and an
    /// event per record) for every simulated client, as a game would,
    /// instead of the light generator.
    #[arg(long)]
    full_clients: bool,
    /// Light generator: simulated clients sharing one UDP socket and task.
    #[arg(long, default_value_t = 500)]
    clients_per_socket: usize,
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

/// Runs `sustenet bench`: the coordinator, or (with the hidden `--worker`)
/// one worker process.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.worker {
        worker::worker(args).await
    } else {
        coordinator::coordinate(args).await
    }
}
