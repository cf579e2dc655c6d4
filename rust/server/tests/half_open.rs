//! Half-open connections through real sockets: per-address limits on master
//! and cluster, a separate handshake pool for the addresses clusters
//! registered from (so a flood does not stop re-registration), and a first-
//! bytes deadline shorter than the handshake's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use sustenet_net::{FrameReader, SealedReader, SealedWriter};
use sustenet_proto::handshake::{self, ClientMasterInitiator, ClusterInitiator, HelloKind};
use sustenet_proto::{DisconnectReason, HandshakeError, Key, MasterToCluster};
use sustenet_server::{Limits, MasterConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

/// A raw connection to `addr` from the loopback address `from`.
async fn raw_from(from: &str, addr: SocketAddr) -> Raw {
    let ip: IpAddr = from.parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(ip, 0)).unwrap();
    let s = socket.connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (rd, wr) = s.into_split();
    Raw {
        frames: FrameReader::new(rd, 16 * 1024 * 1024),
        wr,
    }
}

/// Connections that stay in their handshake: they send one byte of a frame
/// length (past any first-bytes deadline) and nothing more.
async fn half_open(from: &str, addr: SocketAddr, n: usize) -> Vec<Raw> {
    let mut v = Vec::new();
    for _ in 0..n {
        let mut r = raw_from(from, addr).await;
        r.wr.write_all(&[0x30]).await.unwrap();
        v.push(r);
    }
    v
}

fn refusal_of(f: Option<Vec<u8>>) -> HandshakeError {
    handshake::check_refusal(&f.expect("closed without a refusal")).expect("not a refusal")
}

/// Whether the master answers a client hello from `from` with a Noise reply.
async fn client_served(from: &str, master: &RunningMaster) -> Result<(), HandshakeError> {
    let (init, hello) = ClientMasterInitiator::start(&master.keypair.public()).unwrap();
    let mut raw = raw_from(from, master.addr).await;
    raw.send(&hello).await;
    let reply = raw.recv().await.expect("closed during the handshake");
    init.handle_reply(&reply).map(|_| ())
}

fn limits(tune: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits {
        handshake_timeout_ms: 20_000,
        first_byte_timeout_ms: 20_000,
        ..fast_limits()
    };
    tune(&mut l);
    l
}

async fn master_with(
    keys: &std::collections::HashMap<String, Key>,
    limits: Limits,
) -> RunningMaster {
    start_master_on(
        "127.0.0.1:0",
        sustenet_proto::MasterKeypair::generate().unwrap(),
        keys.clone(),
        MasterConfig {
            limits,
            ..master_config()
        },
    )
    .await
}

#[tokio::test]
async fn half_open_connections_are_limited_per_address() {
    init_tracing();
    let keys = keys(&["alpha"]);
    // Per-address limits apply once the general pool is half full.
    let l = limits(|l| {
        l.max_handshakes = 6;
        l.max_handshakes_per_address = 3;
    });
    let master = master_with(&keys, l).await;
    let held = half_open("127.0.0.1", master.addr, 3).await;
    // A fourth from the same address is refused at once...
    let mut fourth = raw_from("127.0.0.1", master.addr).await;
    let e = refusal_of(fourth.recv().await);
    assert_eq!(e.reason(), DisconnectReason::TooManyHandshakes, "{e}");
    assert!(e.to_string().contains("from this address"), "{e}");
    // ...while another address is served.
    client_served("127.0.0.2", &master).await.unwrap();

    // The cluster uses the same mechanism.
    let mut cfg = cluster_config(master.addr, "Alpha", "alpha", 0);
    cfg.limits = limits(|l| {
        l.max_handshakes = 4;
        l.max_handshakes_per_address = 2;
    });
    let cluster = start_cluster_with(cfg, keys["alpha"].clone()).await;
    let held_c = half_open("127.0.0.3", cluster.tcp, 2).await;
    let mut third = raw_from("127.0.0.3", cluster.tcp).await;
    let e = refusal_of(third.recv().await);
    assert_eq!(e.reason(), DisconnectReason::TooManyHandshakes, "{e}");
    let (t, s) = craft_token(&keys["alpha"], cluster.id, 5, now_ms() + 30_000);
    let p = RawPlayer::connect(cluster.tcp, &t, &s).await.unwrap();
    assert_eq!(p.player_id, 5);
    drop((held, held_c, p));
    cluster.stop().await;
    master.stop().await;
}

/// Registers cluster `id` by hand from `from`; returns the master's answer.
async fn register_from(from: &str, master: &RunningMaster, key: &Key, id: u64) -> MasterToCluster {
    let mut raw = raw_from(from, master.addr).await;
    let (init, hello) = ClusterInitiator::start("alpha", key.clone(), &mut rand::rng()).unwrap();
    raw.send(&hello).await;
    let challenge = raw.recv().await.expect("no challenge");
    if let Some(e) = handshake::check_refusal(&challenge)
        && !matches!(e, HandshakeError::UnexpectedKind(k) if k == HelloKind::Challenge as u8)
    {
        panic!("registration refused: {e}");
    }
    let session = init.handle_challenge(&challenge).unwrap();
    let mut writer = SealedWriter::new(raw.wr, session.sealer, 64 * 1024);
    writer.send(&hand_registration(id, "Hand")).await.unwrap();
    let mut reader = SealedReader::new(raw.frames, session.opener, 0);
    tokio::time::timeout(GUARD, reader.recv::<MasterToCluster>())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_cluster_re_registers_while_other_addresses_flood_the_master() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let key = keys["alpha"].clone();
    let l = limits(|l| {
        l.max_handshakes = 4;
        l.max_handshakes_per_address = 4;
        l.max_known_handshakes = 8;
    });
    let master = master_with(&keys, l).await;
    let first = register_from("127.0.0.1", &master, &key, 77).await;
    assert_eq!(first, MasterToCluster::Registered { cluster_id: 77 });

    // A flood from other addresses fills the general pool...
    let flood = half_open("127.0.0.2", master.addr, 4).await;
    let mut late = raw_from("127.0.0.5", master.addr).await;
    let e = refusal_of(late.recv().await);
    assert_eq!(e.reason(), DisconnectReason::TooManyHandshakes, "{e}");
    assert!(client_served("127.0.0.6", &master).await.is_err());
    // ...but the cluster's address has its own pool: it registers again.
    let again = register_from("127.0.0.1", &master, &key, 77).await;
    assert_eq!(again, MasterToCluster::Registered { cluster_id: 77 });
    drop(flood);
    master.stop().await;
}

#[tokio::test]
async fn the_first_bytes_have_a_shorter_deadline_than_the_handshake() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let l = limits(|l| l.first_byte_timeout_ms = 200);
    let master = master_with(&keys, l).await;
    // Silent: refused for its first bytes, long before the handshake deadline.
    let mut silent = raw_from("127.0.0.1", master.addr).await;
    let e = refusal_of(silent.recv().await);
    assert_eq!(e.reason(), DisconnectReason::HandshakeTimeout, "{e}");
    assert!(e.to_string().contains("no first bytes"), "{e}");
    // Started at once and finished well after the first-bytes deadline: served.
    let (init, hello) = ClientMasterInitiator::start(&master.keypair.public()).unwrap();
    let mut slow = raw_from("127.0.0.1", master.addr).await;
    let mut framed = (hello.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(&hello);
    slow.wr.write_all(&framed[..2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    slow.wr.write_all(&framed[2..]).await.unwrap();
    let reply = slow.recv().await.expect("closed during the handshake");
    assert!(init.handle_reply(&reply).is_ok());
    master.stop().await;
}
