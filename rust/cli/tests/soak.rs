//! The soak run behind `scripts/soak.sh` (ignored: not part of `cargo test`).
//!
//! `soak` starts a server process (this test binary again, as
//! `soak_server`: a master and two clusters whose game hands a player to the
//! other cluster on request) and drives `SOAK_CLIENTS` clients (default
//! 1,000) for `SOAK_SECS` seconds through joins, leaves, handoffs,
//! reconnects (a proxy in front of the clusters cuts a connection every
//! 200 ms) and garbage. Every `SOAK_SAMPLE_SECS` (60) it samples the server
//! process's resident memory, open file descriptors and live tokio tasks into
//! `$SOAK_OUT/soak.csv`, and at the end checks that memory and fds are flat after the
//! warm-up (the first `SOAK_WARMUP_SECS`, default 180).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../server/tests/common/mod.rs"]
mod common;
mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::MasterInfo;
use rand::{Rng, RngCore};
use support::proxy::TcpProxy;
use sustenet_client::{Client, ClientEvent};
use sustenet_proto::JoinTarget;
use sustenet_server::cluster::{self, ClusterConfig};
use sustenet_server::master::MasterConfig;
use sustenet_server::{Channel, Context, EchoChat, PlayerId, Plugin};
use tokio::time::{Instant, sleep, timeout};

/// Client → cluster: hand me to the other cluster.
const MOVE_ME: u16 = 22;

/// EchoChat, plus [`MOVE_ME`]: a transfer to the other cluster.
struct Handoffs {
    other: u64,
}

impl Plugin for Handoffs {
    fn on_packet(
        &mut self,
        ctx: &mut Context<'_>,
        player: PlayerId,
        command: u16,
        payload: &[u8],
        channel: Channel,
    ) {
        if command == MOVE_ME {
            let _ = ctx.transfer(player, self.other, b"");
        } else {
            EchoChat.on_packet(ctx, player, command, payload, channel);
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The ports both processes agree on, passed in `SOAK_PORTS`.
#[derive(Debug, Clone, Copy)]
struct Ports {
    master: u16,
    /// Per cluster: TCP, UDP, and the proxy's TCP port clients are told.
    clusters: [(u16, u16, u16); 2],
}

impl Ports {
    fn encode(&self) -> String {
        let c = self.clusters;
        format!(
            "{} {} {} {} {} {} {}",
            self.master, c[0].0, c[0].1, c[0].2, c[1].0, c[1].1, c[1].2
        )
    }
    fn decode(s: &str) -> Ports {
        let v: Vec<u16> = s.split(' ').map(|x| x.parse().unwrap()).collect();
        Ports {
            master: v[0],
            clusters: [(v[1], v[2], v[3]), (v[4], v[5], v[6])],
        }
    }
}

/// The default limits, but every client of the soak comes from 127.0.0.1
/// (through the proxy, too), so the per-address share of the handshake pool
/// is the whole pool.
fn one_address_limits() -> sustenet_server::Limits {
    let l = sustenet_server::Limits::default();
    sustenet_server::Limits {
        max_handshakes_per_address: l.max_handshakes,
        ..l
    }
}

/// The server process: a master and two clusters, until killed.
#[test]
#[ignore = "started by the soak test"]
fn soak_server() {
    let (Ok(dir), Ok(ports)) = (std::env::var("SOAK_DIR"), std::env::var("SOAK_PORTS")) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let ports = Ports::decode(&ports);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let keypair =
            sustenet_server::keys::load_master_keypair(&dir.join("keys/master.key")).unwrap();
        let keys = sustenet_server::keys::load_key_dir(&dir.join("keys")).unwrap();
        let _master = common::start_master_on(
            &format!("127.0.0.1:{}", ports.master),
            keypair,
            keys.clone(),
            MasterConfig {
                max_connections: 4_000,
                // Every client comes from 127.0.0.1 here.
                max_tickets_per_address: 4_096,
                limits: one_address_limits(),
                ..MasterConfig::default()
            },
        )
        .await;
        tokio::spawn(report_tasks(dir.join("tasks")));
        let ids = [rand::rng().next_u64() >> 1, rand::rng().next_u64() >> 1];
        let mut tasks = Vec::new();
        for (i, (tcp, udp, public)) in ports.clusters.into_iter().enumerate() {
            let config = ClusterConfig {
                name: format!("soak-{i}"),
                max_connections: 2_000,
                master_addr: format!("127.0.0.1:{}", ports.master),
                key_name: "alpha".into(),
                cluster_id: Some(ids[i]),
                public_tcp_port: Some(public),
                limits: one_address_limits(),
                ..ClusterConfig::default()
            };
            let tcp = tokio::net::TcpListener::bind(("127.0.0.1", tcp))
                .await
                .unwrap();
            let udp = tokio::net::UdpSocket::bind(("127.0.0.1", udp))
                .await
                .unwrap();
            let key = keys["alpha"].clone();
            let plugin = Handoffs { other: ids[1 - i] };
            tasks.push(tokio::spawn(async move {
                cluster::run(tcp, udp, config, key, plugin, std::future::pending::<()>())
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Every second, the number of live tokio tasks of the server process into
/// `path` (written whole, then renamed), for the driver's samples: tasks that
/// outlive their player, ticket or connection show as growth there.
async fn report_tasks(path: PathBuf) {
    let tmp = path.with_extension("tmp");
    loop {
        let alive = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        if std::fs::write(&tmp, alive.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
        sleep(Duration::from_secs(1)).await;
    }
}

/// What the clients did, counted.
#[derive(Debug, Default)]
struct Counts {
    joins: AtomicU64,
    join_failures: AtomicU64,
    leaves: AtomicU64,
    handoffs: AtomicU64,
    reconnects: AtomicU64,
    told: AtomicU64,
    garbage: AtomicU64,
    echoes: AtomicU64,
    /// Why logins and joins failed, and how often.
    failures: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Counts {
    fn why(&self, why: String) {
        let mut f = self.failures.lock().unwrap();
        if f.len() < 32 || f.contains_key(&why) {
            *f.entry(why).or_default() += 1;
        }
    }

    fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{},{},{},{},{},{},{},{}",
            g(&self.joins),
            g(&self.join_failures),
            g(&self.leaves),
            g(&self.handoffs),
            g(&self.reconnects),
            g(&self.told),
            g(&self.garbage),
            g(&self.echoes)
        )
    }
}

/// Logs in and joins; `Err` says why not.
async fn log_in(
    info: &MasterInfo,
    name: &str,
) -> Result<(Client, flume::Receiver<ClientEvent>), String> {
    let mut config = sustenet_client::ClientConfig::new(info.addr.to_string(), info.public);
    config.ping_timeout = Duration::ZERO;
    // A thousand clients and the servers share two cores.
    config.handshake_timeout = Duration::from_secs(15);
    let (c, ev) = Client::spawn(&tokio::runtime::Handle::current(), config);
    c.login(name, Vec::new()).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let next = timeout(deadline - Instant::now(), ev.recv_async()).await;
        match next.map_err(|_| "no answer within 60 s".to_string())? {
            Err(_) => return Err("the client stopped".into()),
            Ok(ClientEvent::LoginSucceeded { .. }) => {
                c.join(JoinTarget::Auto).map_err(|e| e.to_string())?
            }
            Ok(ClientEvent::Joined { .. }) => return Ok((c, ev)),
            Ok(ClientEvent::LoginFailed { message }) => return Err(format!("login: {message}")),
            Ok(ClientEvent::JoinFailed { reason, message }) => {
                return Err(format!("join: {reason} {message}"));
            }
            Ok(ClientEvent::Disconnected { reason, message }) => {
                return Err(format!("disconnected: {reason} {message}"));
            }
            Ok(ClientEvent::Error(e)) => return Err(format!("error: {e}")),
            Ok(_) => {}
        }
    }
}

/// One client slot: log in, play a while, then leave, ask for a handoff or
/// send garbage; again until `end`.
async fn slot(i: usize, info: MasterInfo, garbage_to: SocketAddr, end: Instant, n: Arc<Counts>) {
    // Spread the first logins over the warm-up's first minute.
    let first = rand::rng().random_range(0..60_000);
    sleep(Duration::from_millis(first)).await;
    let name = format!("soak-{i}");
    while Instant::now() < end {
        let (client, events) = match log_in(&info, &name).await {
            Ok(c) => c,
            Err(why) => {
                n.join_failures.fetch_add(1, Ordering::Relaxed);
                n.why(why);
                sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        n.joins.fetch_add(1, Ordering::Relaxed);
        let mut rounds = rand::rng().random_range(1..4);
        let mut seq = 0u64;
        'session: loop {
            let play_until = Instant::now() + Duration::from_secs(rand::rng().random_range(10..40));
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            while Instant::now() < play_until.min(end) {
                tokio::select! {
                    _ = tick.tick() => {
                        let _ = client.send(EchoChat::ECHO, seq.to_le_bytes().to_vec());
                        let _ = client.send_unreliable(EchoChat::ECHO, vec![0; 32]);
                        seq += 1;
                    }
                    ev = events.recv_async() => match ev {
                        Ok(ClientEvent::Packet { reliable: true, .. }) => {
                            n.echoes.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(ClientEvent::Redirected { .. }) => {
                            n.handoffs.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(ClientEvent::Reconnected { .. }) => {
                            n.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(ClientEvent::Disconnected { .. } | ClientEvent::Error(_)) | Err(_) => {
                            n.told.fetch_add(1, Ordering::Relaxed);
                            break 'session;
                        }
                        Ok(_) => {}
                    },
                }
            }
            rounds -= 1;
            if rounds == 0 || Instant::now() >= end {
                let _ = client.disconnect();
                n.leaves.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let handoff = rand::rng().random_bool(0.5);
            if handoff {
                let _ = client.send(MOVE_ME, Vec::new());
            } else {
                garbage(garbage_to).await;
                n.garbage.fetch_add(1, Ordering::Relaxed);
            }
        }
        let pause = rand::rng().random_range(500..3_000);
        sleep(Duration::from_millis(pause)).await;
    }
}

/// A connection that sends random bytes, and a random datagram.
async fn garbage(to: SocketAddr) {
    let mut bytes = vec![0u8; rand::rng().random_range(1..2_000)];
    rand::rng().fill_bytes(&mut bytes);
    if let Ok(Ok(mut s)) = timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(to)).await
    {
        use tokio::io::AsyncWriteExt;
        let _ = s.write_all(&bytes).await;
    }
    if let Ok(u) = tokio::net::UdpSocket::bind("127.0.0.1:0").await {
        let _ = u.send_to(&bytes[..bytes.len().min(1_200)], to).await;
    }
}

/// The server's live tokio tasks as it last reported them (-1 if not yet).
fn tasks(dir: &std::path::Path) -> i64 {
    std::fs::read_to_string(dir.join("tasks"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(-1)
}

/// The machine's load average over the last minute, as /proc/loadavg says.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split(' ').next().map(str::to_string))
        .unwrap_or_default()
}

/// Resident memory (KiB) and open file descriptors of `pid`.
fn sample(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    (rss, fds)
}

/// Least-squares slope of `ys` over `xs`.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let num: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a long run: scripts/soak.sh"]
async fn soak() {
    // Long: the whole soak run (servers, clients, the load loop and the final
    // checks) read as one scenario.
    let secs = env_u64("SOAK_SECS", 600);
    let clients = env_u64("SOAK_CLIENTS", 1_000) as usize;
    let every = env_u64("SOAK_SAMPLE_SECS", 60);
    let warmup = env_u64("SOAK_WARMUP_SECS", 180);
    let out = PathBuf::from(std::env::var("SOAK_OUT").unwrap_or_else(|_| "target/soak".into()));
    std::fs::create_dir_all(&out).unwrap();

    let dep = support::Deployment::new("");
    let port = support::free_port;
    let ports = Ports {
        master: dep.master_port,
        clusters: [(port(), port(), port()), (port(), port(), port())],
    };
    let mut proxies = Vec::new();
    for (tcp, _, public) in ports.clusters {
        let front: SocketAddr = format!("127.0.0.1:{public}").parse().unwrap();
        let back: SocketAddr = format!("127.0.0.1:{tcp}").parse().unwrap();
        proxies.push(Arc::new(TcpProxy::start(front, back).await));
    }
    let server = Server(
        Command::new(std::env::current_exe().unwrap())
            .args(["soak_server", "--exact", "--ignored", "--nocapture"])
            .env("SOAK_DIR", dep.dir.path())
            .env("SOAK_PORTS", ports.encode())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = server.0.id();
    let info = MasterInfo {
        addr: dep.master_addr(),
        public: dep.master_public,
    };
    support::wait_listening(dep.master_addr()).await;
    common::wait_for_list(&info, "both clusters", |l| l.len() == 2).await;

    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let counts = Arc::new(Counts::default());
    let garbage_to: SocketAddr = format!("127.0.0.1:{}", ports.clusters[0].2)
        .parse()
        .unwrap();
    let slots: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(slot(i, info.clone(), garbage_to, end, counts.clone())))
        .collect();
    let cutting = Arc::new(AtomicBool::new(true));
    let cutter = {
        let (proxies, cutting) = (proxies.clone(), cutting.clone());
        tokio::spawn(async move {
            while cutting.load(Ordering::SeqCst) {
                sleep(Duration::from_millis(200)).await;
                proxies[rand::rng().random_range(0..2)].cut_one();
            }
        })
    };

    let mut csv = std::fs::File::create(out.join("soak.csv")).unwrap();
    writeln!(
        csv,
        "seconds,rss_kib,fds,tasks,load,players,joins,join_failures,leaves,handoffs,reconnects,told,garbage,echoes"
    )
    .unwrap();
    let (mut xs, mut rss, mut fds, mut live) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut next = start;
    while next <= end {
        sleep(next.saturating_duration_since(Instant::now())).await;
        let t = start.elapsed().as_secs();
        let (r, f) = sample(pid);
        // The master's list, if it answers within 10 s (it may be busy).
        let players = timeout(Duration::from_secs(10), common::list_clusters(&info))
            .await
            .map_or(-1, |l| i64::from(l.iter().map(|c| c.players).sum::<u32>()));
        let line = format!(
            "{t},{r},{f},{},{},{players},{}",
            tasks(dep.dir.path()),
            load_average(),
            counts.line()
        );
        eprintln!("soak {line}");
        eprintln!(
            "soak failures so far: {:?}",
            counts.failures.lock().unwrap()
        );
        writeln!(csv, "{line}").unwrap();
        if t >= warmup {
            xs.push(t as f64 / 3600.0);
            rss.push(r as f64);
            fds.push(f as f64);
            live.push(tasks(dep.dir.path()) as f64);
        }
        next += Duration::from_secs(every);
    }
    cutting.store(false, Ordering::SeqCst);
    cutter.await.unwrap();
    for s in slots {
        s.await.unwrap();
    }
    let cuts: u64 = proxies.iter().map(|p| p.cuts.load(Ordering::Relaxed)).sum();
    eprintln!("soak totals: {} cuts, {}", cuts, counts.line());
    eprintln!("soak failures: {:?}", counts.failures.lock().unwrap());

    // Flat after the warm-up: growth extrapolated to an hour under 10 % of
    // the mean resident memory, and under 10 % (+ 20) of the mean fds.
    assert!(xs.len() >= 3, "too short a run after the warm-up to judge");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (rss_slope, fds_slope) = (slope(&xs, &rss), slope(&xs, &fds));
    let verdict = format!(
        "after {warmup} s of warm-up, {} samples: resident memory {:.1} MiB on average, slope \
         {:+.2} MiB/hour; open fds {:.0} on average, slope {:+.1}/hour; live tasks {:.0} on \
         average, slope {:+.1}/hour",
        xs.len(),
        mean(&rss) / 1024.0,
        rss_slope / 1024.0,
        mean(&fds),
        fds_slope,
        mean(&live),
        slope(&xs, &live)
    );
    eprintln!("soak verdict: {verdict}");
    std::fs::write(out.join("verdict.txt"), &verdict).unwrap();
    assert!(rss_slope < 0.10 * mean(&rss), "memory grows: {verdict}");
    assert!(fds_slope < 0.10 * mean(&fds) + 20.0, "fds grow: {verdict}");
    drop(server);
}
