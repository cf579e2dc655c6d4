//! `sustenet-enet-bench`: N ENet clients against the Godot ENet relay of
//! scripts/bench-compare.sh (bench/enet_relay), on the MMO job of `sustenet bench`: 20 Hz
//! positions relayed to 10 peers each, one reliable echo per second. Prints a summary (JSON
//! with `--json`); progress and the start of the measured window on stderr.

mod stats;
mod swarm;
mod wire;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use rusty_enet::Packet;

use stats::Window;
use swarm::Swarm;
use wire::{ECHO_LEN, KIND_ECHO, KIND_POSITION, POSITION_LEN, Stamp};

/// ENet clients for the side-by-side benchmark against Godot's ENetMultiplayerPeer.
#[derive(Debug, Parser)]
#[command(name = "sustenet-enet-bench", version)]
struct Args {
    /// The relay's address.
    #[arg(long, default_value = "127.0.0.1:47900")]
    server: SocketAddr,
    /// Simulated clients (ENet peers).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    clients: u32,
    /// ENet peers per UDP socket (ENet allows at most 4095).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=4095))]
    clients_per_socket: u32,
    /// Positions per second per client (unreliable, unsequenced, channel 1).
    #[arg(long, default_value_t = 20.0)]
    hz: f64,
    /// Reliable echoes per second per client (channel 0).
    #[arg(long, default_value_t = 1.0)]
    reliable_per_sec: f64,
    /// Peers the relay passes each position to (must match its --fanout).
    #[arg(long, default_value_t = 10)]
    fanout: u32,
    /// ENet connects started per second.
    #[arg(long, default_value_t = 1000.0)]
    connects_per_sec: f64,
    /// Give up if not every client is connected after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    connect_timeout: f64,
    /// Seconds of full load before the measured window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Length of the measured window, seconds.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds to keep receiving after the window, for packets still in flight.
    #[arg(long, default_value_t = 1.0)]
    drain: f64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(ok) => std::process::exit(if ok { 0 } else { 1 }),
        Err(e) => {
            eprintln!("sustenet-enet-bench: error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn check(args: &Args) -> Result<()> {
    let rates = [args.hz, args.reliable_per_sec, args.connects_per_sec];
    if rates
        .iter()
        .any(|r| !r.is_finite() || *r <= 0.0 || *r > 10_000.0)
    {
        bail!("--hz, --reliable-per-sec and --connects-per-sec must be in (0, 10000]");
    }
    let secs = [args.connect_timeout, args.warmup, args.duration, args.drain];
    if secs
        .iter()
        .any(|s| !s.is_finite() || *s < 0.0 || *s > 86_400.0)
        || args.duration <= 0.0
    {
        bail!("times must be between 0 and 86400 s (--duration above 0)");
    }
    Ok(())
}

/// Connects every client, runs warm-up and window, prints the summary; `Ok(true)` if every
/// client stayed connected and every packet parsed.
fn run(args: &Args) -> Result<bool> {
    check(args)?;
    let n = args.clients as usize;
    let per_socket = args.clients_per_socket as usize;
    let mut swarm = Swarm::open(args.server, n, per_socket)?;
    connect_all(&mut swarm, args, n, per_socket)?;
    eprintln!(
        "sustenet-enet-bench: {n} clients connected; warm-up {} s",
        args.warmup
    );
    let window = drive(&mut swarm, args, n)?;
    let confirmed = swarm.disconnect_all(Duration::from_secs(5))?;
    let c = swarm.counts;
    let lost = c.disconnected.saturating_sub(confirmed);
    let summary = window.summary(n, c.connected, lost, c.malformed, args.duration);
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(c.connected == n && lost == 0 && c.malformed == 0)
}

fn connect_all(swarm: &mut Swarm, args: &Args, n: usize, per_socket: usize) -> Result<()> {
    let start = swarm.now_us();
    let deadline = start + (args.connect_timeout * 1e6) as u64;
    while swarm.counts.connected < n {
        let now = swarm.now_us();
        if now > deadline {
            bail!(
                "{} of {n} clients connected after {} s",
                swarm.counts.connected,
                args.connect_timeout
            );
        }
        if swarm.counts.disconnected > 0 {
            bail!("the server refused {} connects", swarm.counts.disconnected);
        }
        let due = (((now - start) as f64 / 1e6 * args.connects_per_sec) as usize + 1).min(n);
        while swarm.started() < due {
            swarm.connect(args.server, per_socket)?;
        }
        swarm.flush();
        swarm.service(&mut |_, _| ())?;
        swarm.wait(Duration::from_millis(2))?;
    }
    Ok(())
}

/// Sends on schedule until the end of the window, counting what arrives, then drains.
/// Client `i`'s k-th position is due at `(k × N + i) / (N × hz)` s after the start, so sends
/// are spread evenly; a send more than one period late is skipped (it counts as not sent).
fn drive(swarm: &mut Swarm, args: &Args, n: usize) -> Result<Window> {
    let start = swarm.now_us();
    let from = start + (args.warmup * 1e6) as u64;
    let to = from + (args.duration * 1e6) as u64;
    let fan = u64::from(args.fanout).min(n as u64 - 1);
    let mut w = Window {
        positions_target: (n as f64 * args.hz * args.duration).round() as u64,
        echoes_target: (n as f64 * args.reliable_per_sec * args.duration).round() as u64,
        ..Window::default()
    };
    let (mut pos, mut echo) = (0u64, 0u64);
    let (mut announced, mut next_report) = (false, start + 1_000_000);
    let mut last = 0u64;
    loop {
        let now = swarm.now_us();
        if now >= to + (args.drain * 1e6) as u64 {
            break;
        }
        if !announced && now >= from {
            eprintln!("sustenet-enet-bench: window begins ({} s)", args.duration);
            announced = true;
        }
        let sending = now < to;
        let in_window = now >= from && sending;
        let elapsed_s = (now - start) as f64 / 1e6;
        if sending {
            for (kind, rate, next) in [
                (KIND_POSITION, args.hz, &mut pos),
                (KIND_ECHO, args.reliable_per_sec, &mut echo),
            ] {
                let due = (elapsed_s * rate * n as f64) as u64;
                *next = (*next).max(due.saturating_sub(n as u64));
                while *next < due {
                    let stamp = Stamp {
                        seq: u32::try_from(*next / n as u64).unwrap_or(u32::MAX),
                        sent_us: now,
                        sender: (*next % n as u64) as u32,
                    };
                    let sent = send_one(swarm, kind, stamp);
                    *next += 1;
                    if !sent || !in_window {
                        continue;
                    }
                    if kind == KIND_POSITION {
                        w.positions_sent += 1;
                        w.expected += fan;
                    } else {
                        w.echoes_sent += 1;
                    }
                }
            }
        }
        swarm.flush();
        let t = swarm.now_us();
        swarm.service(&mut |_, a| Swarm::tally(&mut w, a, t, from, to))?;
        if now >= next_report {
            next_report += 1_000_000;
            let got = w.delivered + w.echoes_back;
            eprintln!(
                "sustenet-enet-bench: {:.0} s: {} positions and {} echoes scheduled (late ones skipped); window: {} received (+{}), {} disconnected",
                elapsed_s,
                pos,
                echo,
                got,
                got - last,
                swarm.counts.disconnected
            );
            last = got;
        }
        let next_due =
            |next: u64, rate: f64| ((next + 1) as f64 / (rate * n as f64) * 1e6) as u64 + start;
        let wake = next_due(pos, args.hz).min(next_due(echo, args.reliable_per_sec));
        let wait = wake.saturating_sub(swarm.now_us()).clamp(0, 2_000);
        swarm.wait(Duration::from_micros(wait))?;
    }
    Ok(w)
}

/// Sends client `stamp.sender`'s position or echo; `false` if its peer refused it.
fn send_one(swarm: &mut Swarm, kind: u8, stamp: Stamp) -> bool {
    if kind == KIND_POSITION {
        // A straight walk: where the client is matters to nobody, only that it moves.
        let t = stamp.seq as f32 * 0.5;
        let xyz = [
            stamp.sender as f32 % 1000.0 + t,
            (stamp.sender / 1000) as f32 + t,
            0.0,
        ];
        let p = Packet::new(
            wire::encode(kind, POSITION_LEN, stamp, xyz),
            rusty_enet::PacketKind::AlwaysUnreliable { sequenced: false },
        );
        swarm.send(stamp.sender as usize, wire::CHANNEL_UNRELIABLE, &p)
    } else {
        let p = Packet::reliable(wire::encode(kind, ECHO_LEN, stamp, [0.0; 3]));
        swarm.send(stamp.sender as usize, wire::CHANNEL_RELIABLE, &p)
    }
}
