//! `sustenet bench-web`: N web clients (WebSocket, TLS) against a master and
//! clusters that serve them, for load figures beside `sustenet bench`'s
//! native clients (docs/performance.md). Each client logs in over the
//! master's WebSocket, joins `Auto`, and until the end sends positions
//! (command 10, unreliable, `--hz` per second, at a fixed random point of a
//! `--world` square), a reliable echo a second and two unreliable echoes a
//! second (command 1), and counts what comes back: echo round trips and the
//! state records (command 11) of its neighbours.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use sustenet_proto::datagram::{self, Record};
use sustenet_proto::web::{self as wire, Channel, WebHello};
use sustenet_proto::{
    ClientToCluster, ClientToMaster, ClusterToClient, JoinTarget, MasterToClient, Message, Ticket,
};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::up::{ClientFile, DEV_DIR};

type Socket = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

#[derive(Debug, Args)]
pub struct BenchWebArgs {
    /// Web clients to run.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Seconds of traffic after the ramp.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds over which the clients start.
    #[arg(long, default_value_t = 5.0)]
    pub ramp: f64,
    /// Position updates per second per client.
    #[arg(long, default_value_t = 20)]
    pub hz: u32,
    /// Edge of the square world the clients stand in.
    #[arg(long, default_value_t = 1000.0)]
    pub world: f32,
    /// The folder of `sustenet up`'s client.toml (WebSocket URL, certificate).
    #[arg(long, default_value = DEV_DIR)]
    pub dir: PathBuf,
    /// Most clients logging in and joining at the same time (the master
    /// caps unused tickets per source address).
    #[arg(long, default_value_t = 64)]
    pub joins_in_flight: usize,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What every client adds up.
#[derive(Debug, Default)]
struct Totals {
    joined: usize,
    failed: usize,
    disconnected: usize,
    first_errors: Vec<String>,
    sent: u64,
    received: u64,
    states: u64,
    unreliable_sent: u64,
    unreliable_back: u64,
    reliable_rtt_us: Vec<u64>,
    unreliable_rtt_us: Vec<u64>,
}

fn now_us(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn tls(cert: &str) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).with_context(|| format!("cannot read {cert}"))? {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn open(tls: &tokio_rustls::TlsConnector, host: &str, port: u16) -> anyhow::Result<Socket> {
    let tcp = TcpStream::connect((host, port)).await?;
    let _ = tcp.set_nodelay(true);
    let name = rustls_pki_types::ServerName::try_from(host.to_owned())?;
    let stream = tls.connect(name, tcp).await?;
    let mut req = format!("wss://{host}:{port}/").into_client_request()?;
    req.headers_mut()
        .insert("sec-websocket-protocol", wire::SUBPROTOCOL.parse()?);
    let (ws, _) = tokio_tungstenite::client_async(req, stream).await?;
    Ok(ws)
}

async fn next(ws: &mut Socket) -> anyhow::Result<Vec<u8>> {
    loop {
        match ws.next().await {
            Some(Ok(Ws::Binary(b))) => {
                if let Some(e) = sustenet_proto::handshake::check_refusal(&b) {
                    bail!("refused: {e}");
                }
                return Ok(b.into());
            }
            Some(Ok(Ws::Close(_))) | None => bail!("closed"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// Logs in over the master's WebSocket and gets a ticket.
async fn ticket(tls: &tokio_rustls::TlsConnector, url: &str, i: usize) -> anyhow::Result<Ticket> {
    let rest = url
        .strip_prefix("wss://")
        .context("bench-web needs a wss:// master")?;
    let (host, port) = rest.rsplit_once(':').context("no port in the URL")?;
    let mut ws = open(tls, host, port.parse()?).await?;
    ws.send(Ws::binary(WebHello::Master.encode()?)).await?;
    let login = ClientToMaster::Login {
        username: format!("web-{i}"),
        secret: vec![],
    };
    ws.send(Ws::binary(wire::reliable_frame(&login)?)).await?;
    ws.send(Ws::binary(wire::reliable_frame(&ClientToMaster::Join(
        JoinTarget::Auto,
    ))?))
    .await?;
    loop {
        let f = next(&mut ws).await?;
        let Channel::Reliable(m) = Channel::split(&f)? else {
            continue;
        };
        match MasterToClient::decode(m)? {
            MasterToClient::Ticket(t) => {
                let _ = ws.close(None).await;
                return Ok(t);
            }
            MasterToClient::JoinFailed(g) => bail!("join failed: {} {}", g.reason, g.message),
            MasterToClient::LoginFailed { message } => bail!("login failed: {message}"),
            _ => {}
        }
    }
}

/// One web client's whole run.
#[allow(clippy::too_many_arguments)]
async fn client(
    i: usize,
    args: Arc<BenchWebArgs>,
    file: Arc<ClientFile>,
    tls: tokio_rustls::TlsConnector,
    epoch: Instant,
    end: Instant,
    totals: Arc<Mutex<Totals>>,
    joins: Arc<tokio::sync::Semaphore>,
) {
    let r = play(i, &args, &file, &tls, epoch, end, &totals, &joins).await;
    let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
    if let Err((joined, e)) = r {
        if joined {
            t.disconnected += 1;
        } else {
            t.failed += 1;
        }
        if t.first_errors.len() < 5 {
            t.first_errors.push(format!("client {i}: {e}"));
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn play(
    i: usize,
    args: &BenchWebArgs,
    file: &ClientFile,
    tls: &tokio_rustls::TlsConnector,
    epoch: Instant,
    end: Instant,
    totals: &Mutex<Totals>,
    joins: &tokio::sync::Semaphore,
) -> Result<(), (bool, anyhow::Error)> {
    let permit = joins.acquire().await.map_err(|e| (false, e.into()))?;
    let url = file.websocket.as_deref().unwrap_or_default();
    let t = ticket(tls, url, i).await.map_err(|e| (false, e))?;
    let mut ws = open(tls, &t.cluster.address, t.cluster.tcp_port)
        .await
        .map_err(|e| (false, e))?;
    let hello = WebHello::Join {
        token: t.token.clone(),
        proof: wire::join_proof(&t.session_secret),
    };
    let joined = async {
        ws.send(Ws::binary(hello.encode()?)).await?;
        let f = next(&mut ws).await?;
        match Channel::split(&f)? {
            Channel::Reliable(m) => match ClusterToClient::decode(m)? {
                ClusterToClient::Welcome { .. } => Ok(()),
                other => Err(anyhow!("expected Welcome, got {other:?}")),
            },
            Channel::Unreliable(_) => Err(anyhow!("records before the Welcome")),
        }
    };
    joined.await.map_err(|e| (false, e))?;
    drop(permit);
    {
        totals.lock().unwrap_or_else(|p| p.into_inner()).joined += 1;
    }
    traffic(i, args, &mut ws, epoch, end, totals)
        .await
        .map_err(|e| (true, e))
}

/// Sends positions and echoes until `end`; counts what comes back.
async fn traffic(
    i: usize,
    args: &BenchWebArgs,
    ws: &mut Socket,
    epoch: Instant,
    end: Instant,
    totals: &Mutex<Totals>,
) -> anyhow::Result<()> {
    let (x, y) = {
        let mut rng = rand::rng();
        (
            rng.random_range(0.0..args.world),
            rng.random_range(0.0..args.world),
        )
    };
    let mut pos_tick = tokio::time::interval(Duration::from_secs(1) / args.hz.max(1));
    let mut echo_tick = tokio::time::interval(Duration::from_millis(500));
    let (mut seq, mut received, mut local) = (0u32, 0u64, Totals::default());
    let stop = tokio::time::sleep_until(end.into());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = pos_tick.tick() => {
                seq = seq.wrapping_add(1);
                let mut p = Vec::with_capacity(28);
                for v in [x, y, 0.0f32] { p.extend_from_slice(&v.to_le_bytes()); }
                p.extend_from_slice(&seq.to_le_bytes());
                p.extend_from_slice(&now_us(epoch).to_le_bytes());
                p.extend_from_slice(&u32::try_from(i).unwrap_or(u32::MAX).to_le_bytes());
                let rec = datagram::single(&Record::Data { command: 10, payload: p })?;
                ws.send(Ws::binary(wire::unreliable_frame(&rec))).await?;
                local.sent += 1;
            }
            _ = echo_tick.tick() => {
                let stamp = now_us(epoch).to_le_bytes().to_vec();
                let rec = datagram::single(&Record::Data { command: 1, payload: stamp.clone() })?;
                ws.feed(Ws::binary(wire::unreliable_frame(&rec))).await?;
                local.unreliable_sent += 1;
                if seq % 2 == 0 {
                    let m = ClientToCluster::Data { command: 1, payload: stamp };
                    ws.feed(Ws::binary(wire::reliable_frame(&m)?)).await?;
                    ws.feed(Ws::binary(wire::reliable_frame(&ClientToCluster::Ack(received))?)).await?;
                    local.sent += 1;
                }
                ws.flush().await?;
                local.sent += 1;
            }
            f = next(ws) => {
                let f = f?;
                local.received += 1;
                on_frame(&f, epoch, &mut received, &mut local, ws).await?;
            }
        }
    }
    add(totals, local);
    let bye = ClientToCluster::Disconnect(sustenet_proto::Goodbye::new(
        sustenet_proto::DisconnectReason::Requested,
    ));
    let _ = ws.send(Ws::binary(wire::reliable_frame(&bye)?)).await;
    let _ = ws.close(None).await;
    Ok(())
}

fn add(totals: &Mutex<Totals>, local: Totals) {
    let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
    t.sent += local.sent;
    t.received += local.received;
    t.states += local.states;
    t.unreliable_sent += local.unreliable_sent;
    t.unreliable_back += local.unreliable_back;
    t.reliable_rtt_us.extend(local.reliable_rtt_us);
    t.unreliable_rtt_us.extend(local.unreliable_rtt_us);
}

async fn on_frame(
    f: &[u8],
    epoch: Instant,
    received: &mut u64,
    local: &mut Totals,
    ws: &mut Socket,
) -> anyhow::Result<()> {
    let stamp = |p: &[u8]| {
        p.get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    match Channel::split(f)? {
        Channel::Unreliable(plain) => {
            for r in datagram::decode_records(plain)? {
                if let Record::Data { command, payload } = r {
                    match command {
                        11 => local.states += 1,
                        1 => {
                            local.unreliable_back += 1;
                            if let Some(s) = stamp(&payload) {
                                local
                                    .unreliable_rtt_us
                                    .push(now_us(epoch).saturating_sub(s));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Channel::Reliable(m) => match ClusterToClient::decode(m)? {
            ClusterToClient::Ping(v) => {
                ws.send(Ws::binary(wire::reliable_frame(&ClientToCluster::Pong(v))?))
                    .await?;
            }
            ClusterToClient::Data { command, payload } => {
                *received += 1;
                if let (1, Some(s)) = (command, stamp(&payload)) {
                    local.reliable_rtt_us.push(now_us(epoch).saturating_sub(s));
                }
            }
            ClusterToClient::Disconnect(g) => bail!("disconnected: {} {}", g.reason, g.message),
            _ => {}
        },
    }
    Ok(())
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)] as f64 / 1000.0
}

pub async fn run(args: BenchWebArgs) -> anyhow::Result<()> {
    let file = Arc::new(ClientFile::load(&args.dir)?);
    let cert = file
        .certificate
        .clone()
        .context("client.toml has no certificate: start `sustenet up` (wss) in this folder")?;
    let tls = tls(&cert)?;
    let args = Arc::new(args);
    let epoch = Instant::now();
    let end = epoch + Duration::from_secs_f64(args.ramp + args.duration);
    let totals = Arc::new(Mutex::new(Totals::default()));
    let joins = Arc::new(tokio::sync::Semaphore::new(args.joins_in_flight.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.clients {
        let start =
            epoch + Duration::from_secs_f64(args.ramp * i as f64 / args.clients.max(1) as f64);
        let (a, f, t, tot) = (args.clone(), file.clone(), tls.clone(), totals.clone());
        let j = joins.clone();
        tasks.spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            client(i, a, f, t, epoch, end, tot, j).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    let secs = args.duration.max(0.001) + args.ramp / 2.0;
    let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
    let (rel50, rel99) = (
        pct(&mut t.reliable_rtt_us, 0.5),
        pct(&mut t.reliable_rtt_us, 0.99),
    );
    let (un50, un99) = (
        pct(&mut t.unreliable_rtt_us, 0.5),
        pct(&mut t.unreliable_rtt_us, 0.99),
    );
    let delivered = t.unreliable_back as f64 / t.unreliable_sent.max(1) as f64;
    let summary = serde_json::json!({
        "clients": args.clients, "joined": t.joined, "failed": t.failed,
        "disconnected": t.disconnected, "errors": t.first_errors,
        "msgs_out_per_sec": (t.sent as f64 / secs).round(),
        "msgs_in_per_sec": (t.received as f64 / secs).round(),
        "states_per_sec": (t.states as f64 / secs).round(),
        "reliable_rtt_ms": {"p50": rel50, "p99": rel99, "count": t.reliable_rtt_us.len()},
        "unreliable_rtt_ms": {"p50": un50, "p99": un99, "count": t.unreliable_rtt_us.len()},
        "unreliable_delivered": delivered,
    });
    if args.json {
        println!("{summary}");
    } else {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    if t.failed + t.disconnected > 0 {
        bail!(
            "{} clients failed, {} disconnected",
            t.failed,
            t.disconnected
        );
    }
    Ok(())
}
