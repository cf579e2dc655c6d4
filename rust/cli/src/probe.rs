//! `sustenet probe`: a command-line client that logs in, joins a cluster,
//! round-trips messages on both channels and prints the timings.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Serialize;
use sustenet_client::{Client, ClientConfig, ClientEvent};
use sustenet_proto::{JoinTarget, PublicKey};
use sustenet_server::EchoChat;

use crate::up::{ClientFile, DEV_DIR};

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The master's host:port (default: from <dir>/client.toml written by `sustenet up`).
    #[arg(long, env = "SUSTENET_MASTER")]
    master: Option<String>,
    /// The master's public key in base64 (default: from <dir>/client.toml).
    #[arg(long, env = "SUSTENET_MASTER_KEY")]
    key: Option<String>,
    /// Folder where `sustenet up` wrote client.toml.
    #[arg(long, default_value = DEV_DIR)]
    dir: PathBuf,
    /// User name to log in with.
    #[arg(long, default_value = "probe")]
    user: String,
    /// Login secret (for masters with auth = "shared_secret").
    #[arg(
        long,
        default_value = "",
        env = "SUSTENET_SECRET",
        hide_env_values = true
    )]
    secret: String,
    /// Cluster id to join (default: let the master pick).
    #[arg(long)]
    cluster: Option<u64>,
    /// Round trips per channel.
    #[arg(long, default_value_t = 100)]
    count: u32,
    /// Payload size in bytes (unreliable messages are capped at the datagram limit).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Fewest unreliable round trips that must come back, as a fraction.
    #[arg(long, default_value_t = 0.9)]
    min_unreliable: f64,
    /// Seconds to wait for any one step.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct ChannelReport {
    sent: u32,
    received: u32,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    master: String,
    client_id: u64,
    cluster_id: u64,
    cluster_name: String,
    clusters_listed: usize,
    connect_ms: u64,
    reliable: ChannelReport,
    unreliable: ChannelReport,
    ok: bool,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn report(sent: u32, mut rtts: Vec<u64>) -> ChannelReport {
    rtts.sort_unstable();
    ChannelReport {
        sent,
        received: u32::try_from(rtts.len()).unwrap_or(u32::MAX),
        p50_us: percentile(&rtts, 0.50),
        p99_us: percentile(&rtts, 0.99),
        max_us: rtts.last().copied().unwrap_or(0),
    }
}

async fn next_event(
    events: &flume::Receiver<ClientEvent>,
    limit: Duration,
    what: &str,
) -> anyhow::Result<ClientEvent> {
    match tokio::time::timeout(limit, events.recv_async()).await {
        Err(_) => bail!("timed out after {limit:?} waiting for {what}"),
        Ok(Err(_)) => bail!("the client stopped while waiting for {what}"),
        Ok(Ok(ClientEvent::Error(e))) => bail!("{e}"),
        Ok(Ok(ClientEvent::Disconnected { reason, message })) => {
            bail!("disconnected: {reason} {message}")
        }
        Ok(Ok(ClientEvent::MasterDisconnected { reason, message })) => {
            bail!("the master closed the connection: {reason} {message}")
        }
        Ok(Ok(e)) => Ok(e),
    }
}

fn payload(seq: u32, size: usize) -> Vec<u8> {
    let mut p = seq.to_le_bytes().to_vec();
    p.resize(size.max(4), 0xA5);
    p
}

fn seq_of(p: &[u8]) -> Option<u32> {
    p.get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The master's address and public key: from the arguments, else from the
/// client file `sustenet up` wrote.
fn master_and_key(args: &ProbeArgs) -> anyhow::Result<(String, PublicKey)> {
    let (master, key) = match (&args.master, &args.key) {
        (Some(m), Some(k)) => (m.clone(), k.clone()),
        (m, k) => {
            let f = ClientFile::load(&args.dir)?;
            (
                m.clone().unwrap_or(f.master),
                k.clone().unwrap_or(f.public_key),
            )
        }
    };
    let key =
        PublicKey::from_base64(&key).with_context(|| format!("bad master public key '{key}'"))?;
    Ok((master, key))
}

pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let (master, key) = master_and_key(&args)?;
    let limit = Duration::from_secs(args.timeout.max(1));
    let (client, events) = Client::spawn(
        &tokio::runtime::Handle::current(),
        ClientConfig::new(master.clone(), key),
    );
    let start = Instant::now();

    client.login(args.user.clone(), args.secret.clone().into_bytes())?;
    let client_id = loop {
        match next_event(&events, limit, "the login").await? {
            ClientEvent::LoginSucceeded { client_id } => break client_id,
            ClientEvent::LoginFailed { message } => bail!("login refused: {message}"),
            _ => {}
        }
    };
    client.list_clusters()?;
    let clusters = loop {
        if let ClientEvent::Clusters(l) = next_event(&events, limit, "the cluster list").await? {
            break l;
        }
    };
    if !args.json {
        println!(
            "logged in to {master} as {} (client id {client_id})",
            args.user
        );
        print_clusters(&clusters);
    }
    client.join(args.cluster.map_or(JoinTarget::Auto, JoinTarget::Id))?;
    let cluster = loop {
        match next_event(&events, limit, "joining a cluster").await? {
            ClientEvent::Joined { cluster, .. } => break cluster,
            ClientEvent::JoinFailed { reason, message } => {
                bail!("join refused: {reason} ({message})")
            }
            _ => {}
        }
    };
    let connect_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    if !args.json {
        println!(
            "joined {} ({}) in {connect_ms} ms",
            cluster.name, cluster.id
        );
    }

    let rel = reliable_echoes(&client, &events, &args, limit).await?;
    let unrel = unreliable_echoes(&client, &events, &args).await?;
    let _ = client.disconnect();

    let reliable = report(args.count, rel);
    let unreliable = report(args.count, unrel);
    let needed = (f64::from(args.count) * args.min_unreliable).ceil() as u32;
    let ok = reliable.received == args.count && unreliable.received >= needed;
    let r = Report {
        master,
        client_id,
        cluster_id: cluster.id,
        cluster_name: cluster.name,
        clusters_listed: clusters.len(),
        connect_ms,
        reliable,
        unreliable,
        ok,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        for (name, c) in [("reliable  ", &r.reliable), ("unreliable", &r.unreliable)] {
            println!(
                "{name}  {}/{} round trips  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
                c.received,
                c.sent,
                c.p50_us as f64 / 1000.0,
                c.p99_us as f64 / 1000.0,
                c.max_us as f64 / 1000.0
            );
        }
        println!("{}", if ok { "probe OK" } else { "probe FAILED" });
    }
    if !ok {
        bail!(
            "{} of {} reliable and {} of {} unreliable round trips came back (need all reliable and {needed} unreliable)",
            r.reliable.received,
            r.reliable.sent,
            r.unreliable.received,
            r.unreliable.sent
        );
    }
    Ok(())
}

/// Prints the cluster list as the master sent it.
fn print_clusters(clusters: &[sustenet_proto::ClusterInfo]) {
    println!("{} cluster(s):", clusters.len());
    for c in clusters {
        let cap = if c.capacity == 0 {
            "no limit".to_owned()
        } else {
            c.capacity.to_string()
        };
        println!(
            "  {:>20}  {:<24} {}:{}  players {} / {}{}",
            c.id,
            c.name,
            c.address,
            c.tcp_port,
            c.players,
            cap,
            if c.locked { "  (full)" } else { "" }
        );
    }
}

/// Reliable echoes, one in flight at a time; every echo must come back in
/// order. Their round trips in µs.
async fn reliable_echoes(
    client: &Client,
    events: &flume::Receiver<ClientEvent>,
    args: &ProbeArgs,
    limit: Duration,
) -> anyhow::Result<Vec<u64>> {
    let mut rel = Vec::new();
    for seq in 0..args.count {
        let sent = Instant::now();
        client.send(EchoChat::ECHO, payload(seq, args.size))?;
        loop {
            if let ClientEvent::Packet {
                command: EchoChat::ECHO,
                payload,
                reliable: true,
            } = next_event(events, limit, "a reliable echo").await?
            {
                anyhow::ensure!(seq_of(&payload) == Some(seq), "reliable echo out of order");
                rel.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                break;
            }
        }
    }

    Ok(rel)
}

/// Unreliable echoes: a lost datagram is waited for briefly (250 ms), then
/// counted as lost. The round trips that came back, in µs.
async fn unreliable_echoes(
    client: &Client,
    events: &flume::Receiver<ClientEvent>,
    args: &ProbeArgs,
) -> anyhow::Result<Vec<u64>> {
    let usize_ = args.size.min(sustenet_client::UNRELIABLE_LIMIT);
    let mut unrel = Vec::new();
    let per_try = Duration::from_millis(250);
    for seq in 0..args.count {
        let sent = Instant::now();
        client.send_unreliable(EchoChat::ECHO, payload(seq, usize_))?;
        let deadline = tokio::time::Instant::now() + per_try;
        while let Ok(ev) = tokio::time::timeout_at(deadline, events.recv_async()).await {
            match ev {
                Ok(ClientEvent::Packet {
                    command: EchoChat::ECHO,
                    payload,
                    reliable: false,
                }) => {
                    if seq_of(&payload) == Some(seq) {
                        unrel.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                        break;
                    }
                }
                Ok(ClientEvent::Disconnected { reason, message }) => {
                    bail!("disconnected: {reason} {message}")
                }
                Ok(_) => {}
                Err(_) => bail!("the client stopped"),
            }
        }
    }
    Ok(unrel)
}
