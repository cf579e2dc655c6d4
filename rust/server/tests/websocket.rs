//! Web players over real loopback WebSockets with TLS (the development
//! certificate): login and tickets from the master's WebSocket, a join
//! with the HMAC proof, reliable and unreliable round trips, a web and a
//! native player on one cluster hearing each other, a handoff to another
//! cluster that serves WebSocket players, and a cut link that resumes with
//! nothing lost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod web_common;

use std::time::Duration;

use common::*;
use sustenet_client::ClientEvent;
use sustenet_proto::{DisconnectReason, HandshakeError, JoinTarget};
use sustenet_server::EchoChat;
use web_common::*;

struct Setup {
    _dir: tempfile::TempDir,
    cert: std::path::PathBuf,
    master: RunningMaster,
    master_ws: Target,
    clusters: Vec<WebCluster>,
}

impl Setup {
    fn cluster_target(&self, i: usize) -> Target {
        Target {
            port: self.clusters[i].ws_port,
            cert: Some(self.cert.clone()),
            origin: None,
        }
    }

    async fn stop(self) {
        for c in self.clusters {
            c.stop().await;
        }
        self.master.stop().await;
    }
}

/// A master and `n` clusters, all with `wss://` listeners, and one native
/// cluster without one.
async fn setup(n: usize, native_too: bool) -> Setup {
    setup_with(n, native_too, |_| {}).await
}

/// [`setup`] with `tweak` applied to each web cluster's configuration.
async fn setup_with(
    n: usize,
    native_too: bool,
    tweak: impl Fn(&mut sustenet_server::ClusterConfig),
) -> Setup {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (dev, tls) = dev_cert(dir.path());
    let names: Vec<String> = (0..=n).map(|i| format!("c{i}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let keys = keys(&name_refs);
    let mut mcfg = master_config();
    let master_ws = wss_config(&tls).await;
    let master_port = master_ws.bind.port();
    mcfg.websocket = Some(master_ws);
    let master = start_master_on(
        "127.0.0.1:0",
        sustenet_proto::MasterKeypair::generate().unwrap(),
        keys.clone(),
        mcfg,
    )
    .await;
    let mut clusters = Vec::new();
    for name in names.iter().take(n) {
        let mut cfg = cluster_config(master.addr, name, name, 0);
        tweak(&mut cfg);
        let ws = wss_config(&tls).await;
        clusters.push(start_web_cluster(cfg, keys[name].clone(), ws, EchoChat).await);
    }
    if native_too {
        let last = &names[n];
        start_cluster(master.addr, last, last, keys[last].clone(), 0).await;
    }
    wait_for_clusters(&master, n + usize::from(native_too)).await;
    Setup {
        cert: dev.cert.clone(),
        _dir: dir,
        master_ws: Target {
            port: master_port,
            cert: Some(dev.cert),
            origin: None,
        },
        master,
        clusters,
    }
}

/// Logs in over the master's WebSocket and joins `target` as a web player.
async fn web_join(s: &Setup, name: &str, target: JoinTarget) -> WebPlayer {
    let mut m = WebMaster::connect(&s.master_ws).await;
    m.login(name).await;
    let ticket = m.ticket(target).await.unwrap();
    let i = s
        .clusters
        .iter()
        .position(|c| c.id == ticket.cluster.id)
        .expect("a cluster that serves WebSocket players");
    assert_eq!(ticket.cluster.tcp_port, s.clusters[i].ws_port);
    assert_eq!(ticket.cluster.udp_port, 1, "wss");
    WebPlayer::join(&s.cluster_target(i), &ticket)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_player_logs_in_joins_and_echoes_over_wss() {
    let s = setup(1, true).await;
    let mut m = WebMaster::connect(&s.master_ws).await;
    let list = m.list().await;
    assert_eq!(
        list.len(),
        1,
        "only the cluster that serves WebSocket players"
    );
    assert_eq!(list[0].id, s.clusters[0].id);
    assert_eq!(list[0].tcp_port, s.clusters[0].ws_port);
    m.login("webby").await;
    let ticket = m.ticket(JoinTarget::Auto).await.unwrap();
    assert_eq!(ticket.cluster.id, s.clusters[0].id);
    let mut p = WebPlayer::join(&s.cluster_target(0), &ticket)
        .await
        .unwrap();
    p.send(EchoChat::ECHO, b"hello").await;
    p.expect_data(EchoChat::ECHO, b"hello", true).await;
    p.unreliable_echo(b"fast").await;
    // The same ticket twice: refused, as on TCP.
    let again = WebPlayer::join(&s.cluster_target(0), &ticket).await;
    assert!(
        matches!(
            again,
            Err(HandshakeError::Rejected {
                reason: DisconnectReason::TokenUsed,
                ..
            })
        ),
        "{:?}",
        again.err()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_player_cannot_join_a_cluster_without_websocket() {
    let s = setup(1, true).await;
    let native = list_clusters(&s.master)
        .await
        .into_iter()
        .find(|c| c.id != s.clusters[0].id)
        .unwrap();
    let mut m = WebMaster::connect(&s.master_ws).await;
    m.login("webby").await;
    let g = m.ticket(JoinTarget::Id(native.id)).await.unwrap_err();
    assert_eq!(g.reason, DisconnectReason::NoCluster, "{}", g.message);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_player_and_a_native_player_hear_each_other() {
    let s = setup(1, false).await;
    let cluster = JoinTarget::Id(s.clusters[0].id);
    let native = join(&s.master, "native", cluster).await;
    let mut web = web_join(&s, "web", cluster).await;
    web.send(EchoChat::CHAT, b"from the browser").await;
    web.expect_data(EchoChat::CHAT, b"from the browser", true)
        .await;
    expect(&native.events, "chat from the web player", |e| match e {
        ClientEvent::Packet {
            command: EchoChat::CHAT,
            payload,
            ..
        } if payload == b"from the browser" => Some(()),
        _ => None,
    })
    .await;
    native
        .client
        .send(EchoChat::CHAT, b"from native".to_vec())
        .unwrap();
    web.expect_data(EchoChat::CHAT, b"from native", true).await;
    // Unreliable from the game to the web player rides the WebSocket.
    native.udp_up().await;
    s.clusters[0]
        .handle
        .broadcast(77, b"tick".to_vec(), false, None)
        .unwrap();
    web.expect_data(77, b"tick", false).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_player_is_handed_to_another_cluster() {
    let s = setup(2, false).await;
    let (a, b) = (&s.clusters[0], &s.clusters[1]);
    let mut p = web_join(&s, "mover", JoinTarget::Id(a.id)).await;
    p.send(EchoChat::ECHO, b"before").await;
    p.expect_data(EchoChat::ECHO, b"before", true).await;
    a.handle
        .transfer(p.player_id, b.id, b"state".to_vec())
        .unwrap();
    let ticket = loop {
        match p.recv().await {
            Heard::Redirect(t) => break t,
            Heard::Data { .. } => {}
            other => panic!("waiting for the redirect: {other:?}"),
        }
    };
    assert_eq!(ticket.cluster.id, b.id);
    // The master's web list says where the target takes WebSocket players.
    let mut m = WebMaster::connect(&s.master_ws).await;
    let port = m
        .list()
        .await
        .into_iter()
        .find(|c| c.id == b.id)
        .unwrap()
        .tcp_port;
    assert_eq!(port, b.ws_port);
    let mut moved = WebPlayer::join(&s.cluster_target(1), &ticket)
        .await
        .unwrap();
    assert_eq!(moved.player_id, p.player_id, "the same player id");
    moved.send(EchoChat::ECHO, b"after").await;
    moved.expect_data(EchoChat::ECHO, b"after", true).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_web_link_resumes_with_nothing_lost() {
    let s = setup(1, false).await;
    let cluster = JoinTarget::Id(s.clusters[0].id);
    let native = join(&s.master, "talker", cluster).await;
    let mut web = web_join(&s, "cut", cluster).await;
    web.send(EchoChat::ECHO, b"one").await;
    web.expect_data(EchoChat::ECHO, b"one", true).await;
    // Cut the link without a goodbye: the socket is simply dropped.
    let t = s.cluster_target(0);
    let dropped = std::mem::replace(&mut web.ws, open(&t).await.unwrap());
    drop(dropped);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // While it is away, the game sends to it (a chat from the native player).
    native
        .client
        .send(EchoChat::CHAT, b"while away".to_vec())
        .unwrap();
    expect(&native.events, "own chat", |e| match e {
        ClientEvent::Packet {
            command: EchoChat::CHAT,
            ..
        } => Some(()),
        _ => None,
    })
    .await;
    let had = web.resume(&t).await.unwrap();
    assert_eq!(had, 1, "the cluster had the one echo request");
    web.expect_data(EchoChat::CHAT, b"while away", true).await;
    web.send(EchoChat::ECHO, b"two").await;
    web.expect_data(EchoChat::ECHO, b"two", true).await;
    // A copy of an older attempt, or a proof without the secret, is refused.
    let mut thief = WebPlayer {
        ws: open(&t).await.unwrap(),
        secret: [0; 32],
        attempt: 5,
        ..web
    };
    let e = thief.resume(&t).await.unwrap_err();
    assert!(
        matches!(
            e,
            HandshakeError::Rejected {
                reason: DisconnectReason::AuthFailed,
                ..
            }
        ),
        "{e:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cluster_refuses_web_players_too() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (dev, tls) = dev_cert(dir.path());
    let keys = keys(&["full"]);
    let mut mcfg = master_config();
    // Unused tickets do not count: both are issued, the cluster itself refuses.
    mcfg.ticket_hold = Duration::ZERO;
    let mws = wss_config(&tls).await;
    let master_ws = Target {
        port: mws.bind.port(),
        cert: Some(dev.cert.clone()),
        origin: None,
    };
    mcfg.websocket = Some(mws);
    let master = start_master_on(
        "127.0.0.1:0",
        sustenet_proto::MasterKeypair::generate().unwrap(),
        keys.clone(),
        mcfg,
    )
    .await;
    let cfg = cluster_config(master.addr, "full", "full", 1);
    let ws = wss_config(&tls).await;
    let cluster = start_web_cluster(cfg, keys["full"].clone(), ws, EchoChat).await;
    wait_for_clusters(&master, 1).await;
    let target = Target {
        port: cluster.ws_port,
        cert: Some(dev.cert),
        origin: None,
    };
    // Two tickets, then the first takes the one seat.
    let mut a = WebMaster::connect(&master_ws).await;
    a.login("first").await;
    let t1 = a.ticket(JoinTarget::Id(cluster.id)).await.unwrap();
    let mut b = WebMaster::connect(&master_ws).await;
    b.login("second").await;
    let t2 = b.ticket(JoinTarget::Id(cluster.id)).await;
    let mut first = WebPlayer::join(&target, &t1).await.unwrap();
    first.send(EchoChat::ECHO, b"in").await;
    first.expect_data(EchoChat::ECHO, b"in", true).await;
    match t2 {
        // The master already counts the first ticket: the cluster is locked.
        Err(g) => assert_eq!(g.reason, DisconnectReason::ServerFull, "{}", g.message),
        Ok(t2) => {
            let e = WebPlayer::join(&target, &t2).await.err().expect("refused");
            assert!(
                matches!(
                    e,
                    HandshakeError::Rejected {
                        reason: DisconnectReason::ServerFull,
                        ..
                    }
                ),
                "{e:?}"
            );
        }
    }
    cluster.stop().await;
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backed_up_web_player_loses_stale_unreliable_updates_not_its_seat() {
    // Silence and write deadlines longer than the test: a player that does
    // not read for longer than `timeout_ms` is let go, as on TCP.
    let s = setup_with(1, false, |c| {
        c.limits.timeout_ms = 60_000;
    })
    .await;
    let cluster = JoinTarget::Id(s.clusters[0].id);
    let mut web = web_join(&s, "slow", cluster).await;
    let mut other = web_join(&s, "other", cluster).await;
    web.unreliable_echo(b"path up").await;
    // The player stops reading while the game sends it far more unreliable
    // data than its socket and its queue hold (20,000 × 1 KB).
    let big = vec![7u8; 1000];
    let sent = 20_000;
    let deadline = tokio::time::Instant::now() + GUARD;
    let mut done = 0;
    while done < sent {
        // The handle's command queue is bounded: wait for room.
        match s.clusters[0]
            .handle
            .send(web.player_id, 77, big.clone(), false)
        {
            Ok(()) => done += 1,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
        }
        assert!(tokio::time::Instant::now() < deadline, "sent only {done}");
    }
    // A barrier: the core runs the handle's commands in order, so once the
    // other player has this, every update was handed to the slow one's route.
    s.clusters[0]
        .handle
        .send(other.player_id, 79, b"barrier".to_vec(), true)
        .unwrap();
    other.expect_data(79, b"barrier", true).await;
    // Then one reliable message: it must arrive, after at most what the
    // socket buffers and the route's 64 datagrams held.
    s.clusters[0]
        .handle
        .send(web.player_id, 78, b"reliable".to_vec(), true)
        .unwrap();
    let mut unreliable = 0;
    loop {
        match web.recv().await {
            Heard::Data {
                command: 77,
                reliable: false,
                ..
            } => unreliable += 1,
            Heard::Data {
                command: 78,
                payload,
                reliable: true,
            } => {
                assert_eq!(payload, b"reliable");
                break;
            }
            Heard::Data { .. } => {}
            other => panic!("the player was let go: {other:?}"),
        }
    }
    assert!(
        unreliable < sent,
        "stale updates were dropped, not queued ({unreliable} of {sent} arrived)"
    );
    web.send(EchoChat::ECHO, b"still here").await;
    web.expect_data(EchoChat::ECHO, b"still here", true).await;
    s.stop().await;
}
