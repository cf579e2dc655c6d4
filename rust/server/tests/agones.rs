//! The cluster as an Agones GameServer (feature `agones`): the official SDK
//! client talks gRPC to an SDK server in this test (the sidecar cannot run
//! here), which records every call. The cluster starts before its master:
//! it sends health pings from its core ticks but is not Ready until it has
//! registered; then a player joins and leaves, and the cluster stops. A core
//! stuck in a plugin call stops the health pings and fails `/health` until
//! it runs again. A GameServer that a matchmaker allocates (the watched
//! state goes Ready -> Allocated -> Ready) reserves the cluster: the master
//! stops choosing it for automatic joins, then chooses it again; its
//! `sustenet_master_clusters_reserved` gauge and dashboard show it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sustenet_proto::{DisconnectReason, JoinTarget};
use sustenet_server::agones::Agones;
use sustenet_server::cluster;
use sustenet_server::metrics::MasterMetrics;
use sustenet_server::metrics::admin::{self, Admin};
use sustenet_server::metrics::dashboard::Dashboard;
use sustenet_server::prometheus_client::encoding::text::encode;
use sustenet_server::prometheus_client::registry::Registry;
use sustenet_server::{Channel, EchoChat, Limits, PlayerId, Plugin};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;

mod agones_sdk;
use agones_sdk::{Calls, sdk_server};

async fn until(what: &str, calls: &Calls, cond: impl Fn(&[String]) -> bool) {
    let deadline = tokio::time::Instant::now() + GUARD;
    while !cond(&calls.all()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {:?}",
            calls.all()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the SDK server has recorded `call` (`"Ready"`, `"PlayerConnect(7)"`, ...).
async fn until_call(calls: &Calls, call: &str) {
    until(call, calls, |c| c.iter().any(|x| x == call)).await;
}

/// A GameServer as the cluster sees it: its TCP and UDP sockets on one port
/// number (as `protocol: TCPUDP` gives), and the SDK server that records the
/// cluster's calls (stopped by `sdk_stop`).
struct GameServer {
    sockets: (TcpListener, UdpSocket),
    port: u16,
    calls: Calls,
    sdk_port: u16,
    sdk_stop: oneshot::Sender<()>,
}

async fn game_server() -> GameServer {
    let sockets = loop {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)).await {
            break (tcp, udp);
        }
    };
    let port = sockets.0.local_addr().unwrap().port();
    let calls = Calls::new(port);
    let (sdk_stop, sdk_stop_rx) = oneshot::channel();
    let sdk_port = sdk_server(calls.clone(), sdk_stop_rx).await;
    GameServer {
        sockets,
        port,
        calls,
        sdk_port,
        sdk_stop,
    }
}

/// Stops the cluster (its run must end cleanly), then the Agones link, the
/// master and the SDK server.
async fn stop_all(
    (stop, cluster_task): (oneshot::Sender<()>, tokio::task::JoinHandle<()>),
    agones: Agones,
    master: RunningMaster,
    sdk_stop: oneshot::Sender<()>,
) {
    let _ = stop.send(());
    cluster_task.await.unwrap();
    agones.shutdown().await;
    master.stop().await;
    let _ = sdk_stop.send(());
}

type Run = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs the cluster on `sockets` until the returned sender fires, on a
/// thread of its own as `sustenet cluster` does (there `cluster::run` is
/// polled by the main thread, not by a runtime worker). A core blocked in
/// game code then blocks only that thread. Spawned on a worker instead, the
/// stuck-core test could hang for good: the blocked worker may be the one
/// that last drove the runtime's I/O and timers, and tokio hands its I/O
/// driver to another worker only when one parks, so the others slept on
/// while nothing woke the SDK server, `/health` or this test's own timers.
fn spawn_cluster(
    (tcp, udp): (TcpListener, UdpSocket),
    config: cluster::ClusterConfig,
    key: sustenet_proto::Key,
    plugin: impl Plugin,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stop_rx) = oneshot::channel::<()>();
    let run: Run = Box::pin(async move {
        cluster::run(tcp, udp, config, key, plugin, async {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
    });
    let runtime = tokio::runtime::Handle::current();
    (
        stop,
        tokio::task::spawn_blocking(move || runtime.block_on(run)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_sees_capacity_health_ready_after_registration_players_and_shutdown() {
    // Long: one scenario that follows the SDK's view through a cluster's
    // whole life (registration, players, shutdown), in order.
    init_tracing();
    let gs = game_server().await;
    let (game_port, calls) = (gs.port, gs.calls.clone());

    // The master's address is chosen now; the master starts later.
    let master_addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let keys = keys(&["agones"]);
    let agones = Agones::connect(Some(gs.sdk_port)).await.unwrap();
    let mut config = cluster_config(master_addr, "agones-cluster", "agones", 4);
    config.limits = Limits {
        heartbeat_ms: 50,
        timeout_ms: 2_000,
        ..fast_limits()
    };
    assert_eq!(agones.public_endpoint(), Some(("localhost", game_port)));
    agones.configure(&mut config);
    let plugin = agones.wrap(EchoChat, &config);
    let cluster = spawn_cluster(gs.sockets, config, keys["agones"].clone(), plugin);

    // No master yet: the core ticks (health pings), but the cluster is not Ready.
    until("health pings before the master is up", &calls, |c| {
        c.iter().filter(|x| *x == "Health").count() >= 3
    })
    .await;
    assert!(
        !calls.all().contains(&"Ready".to_owned()),
        "{:?}",
        calls.all()
    );

    let master = start_master_on(
        &master_addr.to_string(),
        sustenet_proto::MasterKeypair::generate().unwrap(),
        keys.clone(),
        master_config(),
    )
    .await;
    until_call(&calls, "Ready").await;
    let healthy = calls.count("Health");
    until("health pings go on", &calls, |c| {
        c.iter().filter(|x| *x == "Health").count() > healthy + 2
    })
    .await;

    // The master lists the cluster where Agones says players reach it.
    let listed = wait_for_list(&master, "the cluster listed", |l| l.len() == 1).await;
    assert_eq!(
        (listed[0].address.as_str(), listed[0].tcp_port),
        ("localhost", game_port)
    );
    assert_eq!(listed[0].udp_port, game_port);
    let player = join(&master, "agones-player", JoinTarget::Auto).await;
    player.echo(b"hi").await;
    let pid = player.id;
    until_call(&calls, &format!("PlayerConnect({pid})")).await;
    player.client.disconnect().unwrap();
    until_call(&calls, &format!("PlayerDisconnect({pid})")).await;

    stop_all(cluster, agones, master, gs.sdk_stop).await;

    let all = calls.all();
    let sequence: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|c| *c != "Health")
        .collect();
    assert_eq!(
        sequence,
        [
            "SetPlayerCapacity(4)",
            "Ready",
            &format!("PlayerConnect({pid})"),
            "Allocate",
            &format!("PlayerDisconnect({pid})"),
            "Ready",
            "Shutdown",
        ],
        "{all:?}"
    );
    let ready = all.iter().position(|c| c == "Ready").unwrap();
    assert!(
        all[..ready].iter().any(|c| c == "Health"),
        "health before Ready: {all:?}"
    );
    assert!(
        all[ready..].iter().any(|c| c == "Health"),
        "health after Ready: {all:?}"
    );
    assert_eq!(all.last().map(String::as_str), Some("Shutdown"), "{all:?}");
}

/// EchoChat whose core blocks on [`Stalling::STALL`] until the test
/// releases it, as a game stuck in its own code would; the SDK server's log
/// gets `StallBegin` and `StallEnd` around the stall.
struct Stalling {
    calls: Calls,
    release: std::sync::mpsc::Receiver<()>,
}

impl Stalling {
    const STALL: u16 = 100;
}

impl Plugin for Stalling {
    fn on_packet(
        &mut self,
        ctx: &mut sustenet_server::Context<'_>,
        player: PlayerId,
        command: u16,
        payload: &[u8],
        channel: Channel,
    ) {
        if command == Self::STALL {
            self.calls.push("StallBegin".into());
            // Blocks the core's thread, as a stuck game would.
            let _ = self.release.recv();
            self.calls.push("StallEnd".into());
        } else {
            EchoChat.on_packet(ctx, player, command, payload, channel);
        }
    }
}

/// A GET of `path` on the admin endpoint: status and body.
async fn get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// `sustenet_cluster_core_heartbeat_timestamp_seconds` from `/metrics`.
async fn heartbeat_at(port: u16) -> f64 {
    let (status, body) = get(port, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix("sustenet_cluster_core_heartbeat_timestamp_seconds "))
        .unwrap()
        .parse()
        .unwrap()
}

async fn until_health(port: u16, want: u16) -> String {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let (status, body) = get(port, "/health").await;
        if status == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health stays {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn health_after(all: &[String], marker: &str) -> usize {
    let at = all.iter().position(|c| c == marker).unwrap();
    all[at..].iter().filter(|c| *c == "Health").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_stuck_core_stops_health_pings_and_fails_health_until_it_recovers() {
    init_tracing();
    let gs = game_server().await;
    let calls = gs.calls.clone();
    let keys = keys(&["agones"]);
    let master = start_master(&keys).await;
    let agones = Agones::connect(Some(gs.sdk_port)).await.unwrap();
    let mut config = cluster_config(master.addr, "stuck", "agones", 4);
    config.limits = Limits {
        heartbeat_ms: 50,
        timeout_ms: 10_000,
        ..fast_limits()
    };
    agones.configure(&mut config);

    // `/metrics` and `/health` of this cluster, as `sustenet cluster` serves them.
    let mut registry = Registry::default();
    config.metrics.register(&mut registry);
    let admin =
        Admin::new(registry, None, None).watch_core("stuck", config.metrics.heartbeat().clone());
    let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_port = admin_listener.local_addr().unwrap().port();
    let (admin_stop, admin_stop_rx) = oneshot::channel::<()>();
    tokio::spawn(admin::serve(admin_listener, Arc::new(admin), async {
        let _ = admin_stop_rx.await;
    }));

    let (release, release_rx) = std::sync::mpsc::channel();
    let plugin = agones.wrap(
        Stalling {
            calls: calls.clone(),
            release: release_rx,
        },
        &config,
    );
    let cluster = spawn_cluster(gs.sockets, config, keys["agones"].clone(), plugin);
    until_call(&calls, "Ready").await;
    until_health(admin_port, 200).await;
    let player = join(&master, "staller", JoinTarget::Auto).await;
    player.echo(b"before").await;

    // The core blocks: health pings stop, and after five missed heartbeats
    // `/health` fails and the heartbeat timestamp stands still.
    player.client.send(Stalling::STALL, Vec::new()).unwrap();
    until_call(&calls, "StallBegin").await;
    let why = until_health(admin_port, 503).await;
    assert!(
        why.starts_with("cluster stuck: no core heartbeat for "),
        "{why}"
    );
    let stalled_at = heartbeat_at(admin_port).await;
    let all = calls.all();
    // At most the ping of the heartbeat just before the stall is still on its way.
    assert!(health_after(&all, "StallBegin") <= 1, "{all:?}");
    assert!(!all.contains(&"StallEnd".to_owned()), "{all:?}");

    // It runs again: the pings resume, `/health` passes, the timestamp moves.
    release.send(()).unwrap();
    until("health pings resume", &calls, |c| {
        c.contains(&"StallEnd".to_owned()) && health_after(c, "StallEnd") >= 3
    })
    .await;
    until_health(admin_port, 200).await;
    assert!(heartbeat_at(admin_port).await > stalled_at);
    player.echo(b"after").await;

    player.client.disconnect().unwrap();
    stop_all(cluster, agones, master, gs.sdk_stop).await;
    let _ = admin_stop.send(());
}

/// Join(Auto) on `m` until `done` holds for its answer; every ticket on the
/// way must be for `cluster`.
async fn auto_until(
    m: &mut RawMasterClient,
    cluster: u64,
    what: &str,
    done: impl Fn(&Result<sustenet_proto::Ticket, sustenet_proto::Goodbye>) -> bool,
) -> Result<sustenet_proto::Ticket, sustenet_proto::Goodbye> {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let answer = m.join(JoinTarget::Auto).await;
        if done(&answer) {
            return answer;
        }
        if let Ok(t) = &answer {
            assert_eq!(t.cluster.id, cluster, "{what}");
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {answer:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the master's `/metrics` text says `reserved` clusters are
/// reserved and its dashboard lists the one cluster in `state`.
async fn until_shown(registry: &Registry, dashboard: &Dashboard, reserved: u32, state: &str) {
    let gauge = format!("sustenet_master_clusters_reserved {reserved}\n");
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let mut text = String::new();
        encode(&mut text, registry).unwrap();
        let json: serde_json::Value = serde_json::from_str(&dashboard.json(None)).unwrap();
        let shown = json["clusters"][0]["state"].as_str().map(str::to_owned);
        if text.contains(&gauge) && shown.as_deref() == Some(state) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "want {gauge:?} and state {state}, got {shown:?} and {}",
            text.lines()
                .filter(|l| l.contains("clusters_reserved"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allocated_game_server_is_reserved_from_auto_joins_until_it_is_ready_again() {
    init_tracing();
    let gs = game_server().await;
    let calls = gs.calls.clone();
    let keys = keys(&["agones"]);
    let metrics = MasterMetrics::default();
    let master = start_master_on(
        "127.0.0.1:0",
        sustenet_proto::MasterKeypair::generate().unwrap(),
        keys.clone(),
        sustenet_server::master::MasterConfig {
            max_tickets_per_connection: 10_000,
            max_tickets_per_user: 10_000,
            max_tickets_per_address: 10_000,
            metrics: metrics.clone(),
            ..master_config()
        },
    )
    .await;
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let dashboard = Dashboard::new(metrics.clone(), Vec::new());
    let agones = Agones::connect(Some(gs.sdk_port)).await.unwrap();
    let mut config = cluster_config(master.addr, "matched", "agones", 0);
    config.status_interval = Duration::from_millis(50);
    agones.configure(&mut config);
    let id = config.cluster_id.unwrap();
    let plugin = agones.wrap(EchoChat, &config);
    let cluster = spawn_cluster(gs.sockets, config, keys["agones"].clone(), plugin);
    wait_for_list(&master, "the cluster listed", |l| l.len() == 1).await;
    // max_connections = 0: Agones is told the limit in force, the default bound.
    until_call(&calls, "SetPlayerCapacity(1000)").await;

    let mut m = RawMasterClient::connect(master.addr, &master.keypair.public())
        .await
        .unwrap();
    m.login("matchmaker").await;
    // Ready: Auto chooses it.
    assert_eq!(m.join(JoinTarget::Auto).await.unwrap().cluster.id, id);

    // A matchmaker allocates the GameServer: no more Auto joins, and the
    // refusal says why; its matched players still join it by id.
    calls.set_state("Allocated");
    let refused = auto_until(&mut m, id, "Auto refused while reserved", |a| a.is_err())
        .await
        .unwrap_err();
    assert_eq!(refused.reason, DisconnectReason::ServerFull, "{refused:?}");
    assert!(
        refused.message.contains("1 reserved"),
        "{}",
        refused.message
    );
    assert!(agones.reservation().get());
    assert_eq!(m.join(JoinTarget::Id(id)).await.unwrap().cluster.id, id);
    let listed = wait_for_list(&master, "still listed", |l| l.len() == 1).await;
    assert_eq!(listed[0].id, id);
    // Operators see it: the master's gauge and the dashboard's state.
    until_shown(&registry, &dashboard, 1, "reserved").await;

    // Ready again: Auto chooses it again.
    calls.set_state("Ready");
    let ticket = auto_until(&mut m, id, "Auto again once Ready", |a| a.is_ok())
        .await
        .unwrap();
    assert_eq!(ticket.cluster.id, id);
    assert!(!agones.reservation().get());
    until_shown(&registry, &dashboard, 0, "open").await;

    stop_all(cluster, agones, master, gs.sdk_stop).await;
}
