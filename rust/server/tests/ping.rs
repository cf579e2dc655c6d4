//! Ping-aware joining: a cluster answers ping requests without a token, with
//! fewer bytes than it received and within its rate limit; `join_best` picks
//! by round trip and load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use sustenet_client::ClientEvent;
use sustenet_proto::JoinTarget;
use sustenet_proto::datagram::{self, PING_REQUEST_LEN};
use tokio::net::UdpSocket;

async fn answers(udp: &UdpSocket, within: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, udp.recv(&mut buf)).await {
        got.push(buf[..n].to_vec());
    }
    got
}

#[tokio::test]
async fn the_ping_responder_never_amplifies() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let master = start_master(&keys).await;
    let mut config = cluster_config(master.addr, "alpha", "alpha", 10);
    config.ping_rate = 100;
    let cluster = start_cluster_with(config, keys["alpha"].clone()).await;
    wait_for_clusters(&master, 1).await;
    let _p = join(&master, "ann", JoinTarget::Auto).await;

    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.connect(cluster.udp).await.unwrap();
    udp.send(&datagram::ping_request(7)).await.unwrap();
    let got = answers(&udp, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1);
    assert!(
        got[0].len() < PING_REQUEST_LEN,
        "answer of {} bytes",
        got[0].len()
    );
    assert_eq!(datagram::parse_ping_response(&got[0]), Some((7, 1, 10)));

    // Requests of the wrong size, garbage and empty datagrams get nothing.
    let req = datagram::ping_request(8);
    for bad in [
        &req[..PING_REQUEST_LEN - 1],
        &[req.clone(), vec![0]].concat()[..],
        &[0x02][..],
        &[][..],
        &[0xFF; 64][..],
    ] {
        udp.send(bad).await.unwrap();
    }
    assert!(answers(&udp, Duration::from_millis(300)).await.is_empty());

    // A flood: at most the bucket (100) plus what refills meanwhile is
    // answered, and never more bytes than were sent.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 0..2000u64 {
        udp.send(&datagram::ping_request(i)).await.unwrap();
    }
    let got = answers(&udp, Duration::from_millis(500)).await;
    let bytes_in = 2000 * PING_REQUEST_LEN;
    let bytes_out: usize = got.iter().map(Vec::len).sum();
    eprintln!(
        "flood of 2000 pings: {} answered, {bytes_out} bytes out for {bytes_in} in",
        got.len()
    );
    assert!(
        !got.is_empty() && got.len() <= 150,
        "{} answered",
        got.len()
    );
    assert!(bytes_out < bytes_in);
    cluster.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn a_ping_flood_from_one_source_does_not_starve_the_others() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let master = start_master(&keys).await;
    let mut config = cluster_config(master.addr, "alpha", "alpha", 10);
    config.ping_rate = 100;
    config.ping_rate_per_source = 10;
    let cluster = start_cluster_with(config, keys["alpha"].clone()).await;
    wait_for_clusters(&master, 1).await;

    // Sources on other loopback addresses: 127.0.0.2 floods, 127.0.0.3 to
    // 127.0.0.7 ask twice each, in between the flood's halves.
    let socket = |ip: &'static str| async move {
        let udp = UdpSocket::bind((ip, 0)).await.unwrap();
        udp.connect(cluster.udp).await.unwrap();
        udp
    };
    let flooder = socket("127.0.0.2").await;
    let mut others = Vec::new();
    for ip in [
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.5",
        "127.0.0.6",
        "127.0.0.7",
    ] {
        others.push(socket(ip).await);
    }
    for round in 0..2u64 {
        for i in 0..1000u64 {
            flooder.send(&datagram::ping_request(i)).await.unwrap();
        }
        for (n, udp) in others.iter().enumerate() {
            let nonce = 1_000_000 + n as u64 * 10 + round;
            udp.send(&datagram::ping_request(nonce)).await.unwrap();
        }
    }
    // Every other source gets both of its answers.
    let mut buf = [0u8; 64];
    for (n, udp) in others.iter().enumerate() {
        for round in 0..2u64 {
            let got = tokio::time::timeout(GUARD, udp.recv(&mut buf))
                .await
                .expect("a source was starved by another's flood")
                .unwrap();
            let (nonce, _, _) = datagram::parse_ping_response(&buf[..got]).unwrap();
            assert_eq!(nonce, 1_000_000 + n as u64 * 10 + round);
        }
    }
    // The flooder got its own share only: its burst plus what refilled.
    let flood = answers(&flooder, Duration::from_millis(300)).await;
    assert!(
        !flood.is_empty() && flood.len() <= 30,
        "{} answers to one source",
        flood.len()
    );
    cluster.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn join_best_follows_ping_and_load() {
    init_tracing();
    let keys = keys(&["busy", "quiet"]);
    let master = start_master(&keys).await;
    let busy = start_cluster(master.addr, "busy", "busy", keys["busy"].clone(), 4).await;
    let quiet = start_cluster(master.addr, "quiet", "quiet", keys["quiet"].clone(), 4).await;
    wait_for_clusters(&master, 2).await;
    // Three of four seats taken on `busy`: fill 0.75 outweighs any loopback
    // round-trip difference.
    let mut seated = Vec::new();
    for i in 0..3 {
        seated.push(join(&master, &format!("s{i}"), JoinTarget::Id(busy.id)).await);
    }
    let (c, ev) = client(&master);
    c.login("best", b"".to_vec()).unwrap();
    expect(&ev, "login", |e| {
        matches!(e, ClientEvent::LoginSucceeded { .. }).then_some(())
    })
    .await;
    c.join_best().unwrap();
    let pings = expect(&ev, "pings", |e| match e {
        ClientEvent::ClusterPings(p) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(pings.len(), 2);
    assert!(pings.iter().all(|p| p.rtt.is_some()), "{pings:?}");
    let joined = expect(&ev, "joined", |e| match e {
        ClientEvent::Joined { cluster, .. } => Some(cluster.id),
        _ => None,
    })
    .await;
    assert_eq!(joined, quiet.id);
    drop(seated);
    busy.stop().await;
    quiet.stop().await;
    master.stop().await;
}
