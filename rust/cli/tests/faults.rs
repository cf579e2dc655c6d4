//! A faulty network between clients and a real `sustenet cluster` process:
//! a user-space proxy loses 20 % of the datagrams, duplicates 10 %, reorders
//! 10 % and delays every one by 5 to 25 ms, each way; the TCP connections
//! are cut at random moments. Under bench-style traffic (every player sends
//! reliable and unreliable messages at a steady rate and the cluster echoes
//! them) no reliable message is lost or repeated, counted per player; the
//! unreliable delivery ratio is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../server/tests/common/mod.rs"]
mod common;
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{MasterInfo, Player, try_join_with};
use rand::Rng;
use support::Deployment;
use support::proxy::{Faults, TcpProxy, UdpProxy};
use sustenet_client::ClientEvent;
use sustenet_proto::JoinTarget;
use sustenet_server::EchoChat;

/// Players, and how many reliable messages each sends.
const PLAYERS: usize = 6;
const RELIABLE_PER_PLAYER: u64 = 300;

/// What one player counted.
#[derive(Debug, Default)]
struct Tally {
    reliable_sent: u64,
    reliable_got: u64,
    reliable_duplicates: u64,
    reliable_out_of_order: u64,
    unreliable_sent: u64,
    unreliable_got: u64,
    reconnects: u64,
}

/// Sends one reliable and one unreliable echo every 20 ms, then waits for
/// every reliable echo; counts all of it.
async fn bench_player(player: Player) -> Tally {
    let mut t = Tally::default();
    let mut seen = BTreeSet::new();
    let mut next_expected = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if t.reliable_got + t.reliable_duplicates >= RELIABLE_PER_PLAYER
            && t.reliable_sent == RELIABLE_PER_PLAYER
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "player {} stalled: {t:?}",
            player.id
        );
        tokio::select! {
            _ = tick.tick(), if t.reliable_sent < RELIABLE_PER_PLAYER => {
                player
                    .client
                    .send(EchoChat::ECHO, t.reliable_sent.to_le_bytes().to_vec())
                    .unwrap();
                t.reliable_sent += 1;
                player
                    .client
                    .send_unreliable(EchoChat::ECHO, b"u".to_vec())
                    .unwrap();
                t.unreliable_sent += 1;
            }
            ev = player.events.recv_async() => match ev.unwrap() {
                ClientEvent::Packet { reliable: true, payload, .. } => {
                    let n = u64::from_le_bytes(payload.as_slice().try_into().unwrap());
                    if !seen.insert(n) {
                        t.reliable_duplicates += 1;
                    } else {
                        t.reliable_got += 1;
                    }
                    if n != next_expected {
                        t.reliable_out_of_order += 1;
                    }
                    next_expected = n + 1;
                }
                ClientEvent::Packet { reliable: false, .. } => t.unreliable_got += 1,
                ClientEvent::Reconnected { .. } => t.reconnects += 1,
                ClientEvent::Disconnected { reason, message } => {
                    panic!("player {} was disconnected: {reason} {message} ({t:?})", player.id)
                }
                ClientEvent::Error(e) => panic!("player {}: {e}", player.id),
                _ => {}
            },
        }
    }
    let _ = player.client.disconnect();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reliable_message_is_lost_or_repeated_on_a_faulty_network() {
    // Long: one scenario (a cluster behind a faulty proxy, a player sending and
    // receiving through it, then the counts compared), read top to bottom.
    let dep = Deployment::new("");
    let (proxy_tcp, proxy_udp) = (support::free_port(), support::free_port());
    let spec = dep.cluster_spec(
        "alpha",
        "",
        &format!("public_port = {proxy_tcp}\npublic_udp_port = {proxy_udp}"),
        "",
    );
    let faults = Faults {
        loss: 0.20,
        duplication: 0.10,
        reordering: 0.10,
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(20),
        reorder_by: Duration::from_millis(40),
    };
    let udp = UdpProxy::start(
        format!("127.0.0.1:{proxy_udp}").parse().unwrap(),
        spec.udp_addr(),
        faults,
    )
    .await;
    let tcp = Arc::new(
        TcpProxy::start(
            format!("127.0.0.1:{proxy_tcp}").parse().unwrap(),
            spec.tcp_addr(),
        )
        .await,
    );
    let mut master = dep.start_master();
    let mut cluster = dep.start_cluster(&spec);
    let info = MasterInfo {
        addr: dep.master_addr(),
        public: dep.master_public,
    };
    support::wait_listening(dep.master_addr()).await;
    common::wait_for_list(&info, "the cluster", |l| l.len() == 1).await;

    let mut players = Vec::new();
    for i in 0..PLAYERS {
        let mut config = common::client_config(&info);
        // The proxy's losses must not look like a dead server.
        config.timeout = Duration::from_secs(5);
        match try_join_with(config, &format!("p{i}"), JoinTarget::Auto).await {
            Ok(p) => players.push(p),
            Err((reason, message, ..)) => panic!("p{i} could not join: {reason} {message}"),
        }
    }

    // Cut a random connection every 300 to 900 ms while they play.
    let cutting = Arc::new(AtomicBool::new(true));
    let cutter = {
        let (tcp, cutting) = (tcp.clone(), cutting.clone());
        tokio::spawn(async move {
            while cutting.load(Ordering::SeqCst) {
                let wait = rand::rng().random_range(300..900);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                tcp.cut_one();
            }
        })
    };
    let tasks: Vec<_> = players
        .into_iter()
        .map(|p| tokio::spawn(bench_player(p)))
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let t = task.await.unwrap();
        assert_eq!(
            t.reliable_duplicates, 0,
            "a reliable message came twice: {t:?}"
        );
        assert_eq!(
            t.reliable_out_of_order, 0,
            "reliable messages out of order: {t:?}"
        );
        assert_eq!(
            t.reliable_got, t.reliable_sent,
            "reliable messages lost: {t:?}"
        );
        total.reliable_sent += t.reliable_sent;
        total.reliable_got += t.reliable_got;
        total.unreliable_sent += t.unreliable_sent;
        total.unreliable_got += t.unreliable_got;
        total.reconnects += t.reconnects;
    }
    cutting.store(false, Ordering::SeqCst);
    cutter.await.unwrap();
    master.assert_running();
    cluster.assert_running();
    let cuts = tcp.cuts.load(Ordering::Relaxed);
    eprintln!(
        "{PLAYERS} players: {} reliable sent, {} echoed back, 0 lost, 0 repeated; \
         {cuts} TCP cuts, {} reconnects; unreliable: {} sent, {} echoed back (ratio {:.3}, \
         the datagram crosses the proxy twice); {}",
        total.reliable_sent,
        total.reliable_got,
        total.reconnects,
        total.unreliable_sent,
        total.unreliable_got,
        total.unreliable_got as f64 / total.unreliable_sent as f64,
        udp.stats.summary()
    );
    assert!(cuts > 0, "no connection was cut");
    cluster.terminate();
    master.terminate();
}
