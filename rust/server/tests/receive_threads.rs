//! A cluster with two UDP receivers (`[cluster] receive_threads = 2`), each
//! on its own socket sharing the UDP port (`SO_REUSEPORT`): the kernel
//! spreads datagrams over the sockets by their source port, and the
//! receivers still act as one. A captured datagram replayed from many other
//! source ports (so onto both sockets) is refused as a replay every time
//! and reaches nothing; ping requests from one source over its limit are
//! refused whichever socket they arrive on. (Players on both sockets get
//! everything: `seal_workers.rs` runs its players with two receivers.)
//! Linux only: elsewhere the cluster runs one receiver.
#![cfg(any(target_os = "linux", target_os = "android"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use sustenet_proto::Side;
use sustenet_proto::crypto::{DatagramOpener, DatagramSealer};
use sustenet_proto::datagram::{self, Record};
use sustenet_server::bind::bind_cluster_for;
use sustenet_server::metrics::ClusterMetrics;
use sustenet_server::{EchoChat, Limits};
use tokio::net::UdpSocket;

/// Sockets the attacker sends from: with two receivers, the chance that
/// all land on one socket is 2^-(SOURCES-1).
const SOURCES: usize = 32;

/// A cluster with two receivers and its master.
struct Setup {
    master: RunningMaster,
    key: sustenet_proto::Key,
    cluster: RunningCluster,
    metrics: ClusterMetrics,
}

/// `listed`: wait until the master lists the cluster (the listing client
/// pings the cluster twice from 127.0.0.1).
async fn setup(ping_rate_per_source: u32, listed: bool) -> Setup {
    init_tracing();
    let keys = keys(&["c"]);
    let key = keys["c"].clone();
    let master = start_master(&keys).await;
    let (tcp, udp) = bind_cluster_for("127.0.0.1", 0, 0, 2).await.unwrap();
    let mut config = cluster_config(master.addr, "c", "c", 0);
    config.limits = Limits {
        timeout_ms: 20_000,
        ..fast_limits()
    };
    config.receive_threads = 2;
    config.ping_rate_per_source = ping_rate_per_source;
    let metrics = config.metrics.clone();
    let (cluster, _handle) = spawn_cluster(tcp, udp, config, key.clone(), EchoChat, 16);
    if listed {
        wait_for_clusters(&master, 1).await;
    }
    Setup {
        master,
        key,
        cluster,
        metrics,
    }
}

impl Setup {
    /// Datagrams each receiver has read so far.
    fn per_receiver(&self) -> [u64; 2] {
        [0, 1].map(|r| self.metrics.udp_received_by(r))
    }

    async fn stop(self) {
        self.cluster.stop().await;
        self.master.stop().await;
    }
}

/// `count` UDP sockets on loopback, each connected to `to`.
async fn sources(count: usize, to: std::net::SocketAddr) -> Vec<UdpSocket> {
    let mut v = Vec::with_capacity(count);
    for _ in 0..count {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.connect(to).await.unwrap();
        v.push(s);
    }
    v
}

/// The records of the next datagram on `sock`.
async fn recv_records(sock: &UdpSocket, opener: &mut DatagramOpener) -> Vec<Record> {
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(GUARD, sock.recv(&mut buf))
        .await
        .expect("no datagram came")
        .unwrap();
    let plain = opener.open(&buf[..n]).unwrap();
    datagram::decode_records(&plain).unwrap()
}

/// Waits (up to the guard) until `done` holds, checking every 10 ms.
async fn until(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + GUARD;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A player's UDP socket that proved its address, its sealer and opener,
/// and a datagram of it the cluster accepted (an echo came back).
async fn prove_and_capture(
    s: &Setup,
    p: &RawPlayer,
) -> (UdpSocket, DatagramSealer, DatagramOpener, Vec<u8>) {
    let d = p.keys.datagram(Side::Initiator, p.session_id);
    let (mut sealer, mut opener) = (d.sealer, d.opener);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(s.cluster.udp).await.unwrap();
    // The player proves its address and gets an echo: the captured
    // datagram is one the cluster accepted.
    sock.send(&seal(&mut sealer, &[Record::Ping(1)]))
        .await
        .unwrap();
    let challenge = loop {
        let rs = recv_records(&sock, &mut opener).await;
        if let Some(v) = rs.iter().find_map(|r| match r {
            Record::PathChallenge(v) => Some(*v),
            _ => None,
        }) {
            break v;
        }
    };
    sock.send(&seal(&mut sealer, &[Record::PathResponse(challenge)]))
        .await
        .unwrap();
    let captured = seal(
        &mut sealer,
        &[Record::Data {
            command: EchoChat::ECHO,
            payload: b"once".to_vec(),
        }],
    );
    sock.send(&captured).await.unwrap();
    loop {
        let rs = recv_records(&sock, &mut opener).await;
        if rs
            .iter()
            .any(|r| matches!(r, Record::Data { payload, .. } if payload == b"once"))
        {
            break;
        }
    }
    (sock, sealer, opener, captured)
}

/// `records` in one datagram sealed by `sealer`.
fn seal(sealer: &mut DatagramSealer, records: &[Record]) -> Vec<u8> {
    let mut b = datagram::Batch::new();
    for r in records {
        assert!(b.push(r).unwrap());
    }
    sealer.seal(b.as_bytes()).unwrap()
}

#[tokio::test]
async fn a_captured_datagram_replayed_onto_either_socket_is_refused_and_reaches_nothing() {
    let s = setup(32, true).await;
    let (t, secret) = craft_token(&s.key, s.cluster.id, 4_000_001, now_ms() + 30_000);
    let p = RawPlayer::connect(s.cluster.tcp, &t, &secret)
        .await
        .unwrap();
    let (sock, mut sealer, mut opener, captured) = prove_and_capture(&s, &p).await;

    // The attacker replays it from many source ports.
    let before = (s.per_receiver(), s.metrics.stats());
    let attackers = sources(SOURCES, s.cluster.udp).await;
    for a in &attackers {
        a.send(&captured).await.unwrap();
    }
    let read = |s: &Setup| {
        let now = s.per_receiver();
        now[0] + now[1] - before.0[0] - before.0[1]
    };
    // At least: a ping of the listing that was still on its way may come too.
    until(|| read(&s) >= SOURCES as u64, "the replays were read").await;
    // Every one is refused before the core (dropped: the core's count of
    // datagrams stays), wherever it arrived.
    let refused_or_passed = |s: &Setup| {
        let st = s.metrics.stats();
        (st.datagrams_dropped - before.1.datagrams_dropped)
            + (st.unreliable_in - before.1.unreliable_in)
    };
    until(
        || refused_or_passed(&s) >= SOURCES as u64,
        "every replay was judged",
    )
    .await;
    let after = (s.per_receiver(), s.metrics.stats());
    assert!(
        after.0[0] > before.0[0] && after.0[1] > before.0[1],
        "the replays reached both receivers: {:?} -> {:?}",
        before.0,
        after.0
    );
    assert_eq!(
        after.1.unreliable_in, before.1.unreliable_in,
        "no replay reached the core"
    );
    assert!(after.1.datagrams_dropped - before.1.datagrams_dropped >= SOURCES as u64);
    // Nothing was answered to any attacker, and the player goes on.
    for a in &attackers {
        let mut buf = [0u8; 2048];
        assert!(a.try_recv(&mut buf).is_err(), "an attacker got an answer");
    }
    sock.send(&seal(&mut sealer, &[Record::Ping(9)]))
        .await
        .unwrap();
    while !recv_records(&sock, &mut opener)
        .await
        .contains(&Record::Pong(9))
    {}
    s.stop().await;
}

#[tokio::test]
async fn pings_from_one_source_over_its_limit_are_refused_on_either_socket() {
    // One answer a second per source: two receivers with a limit each
    // would answer two.
    let s = setup(1, false).await;
    let before = s.per_receiver();
    let dropped_before = s.metrics.stats().datagrams_dropped;
    let socks = sources(SOURCES * 2, s.cluster.udp).await;
    let started = Instant::now();
    for (i, sock) in socks.iter().enumerate() {
        sock.send(&datagram::ping_request(i as u64)).await.unwrap();
    }
    let mut answered = 0u64;
    let all = socks.len() as u64;
    until(
        || {
            let mut buf = [0u8; 64];
            for sock in &socks {
                while let Ok(n) = sock.try_recv(&mut buf) {
                    assert!(datagram::parse_ping_response(&buf[..n]).is_some());
                    answered += 1;
                }
            }
            let dropped = s.metrics.stats().datagrams_dropped - dropped_before;
            answered + dropped >= all
        },
        "every ping was answered or dropped",
    )
    .await;
    let elapsed = started.elapsed();
    let after = s.per_receiver();
    assert!(
        after[0] > before[0] && after[1] > before[1],
        "the pings reached both receivers: {before:?} -> {after:?}"
    );
    // The bucket holds one and refills at one a second.
    let allowed = 1 + elapsed.as_secs();
    assert!(
        (1..=allowed).contains(&answered),
        "{answered} of {all} pings answered in {elapsed:?} (at most {allowed})"
    );
    s.stop().await;
}
