//! Bad input never crashes anything: garbage, random and oversized frames, truncated and stalled handshakes, unknown messages and a flood of idle connections are all turned away while a normal player goes on playing, and nothing panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use rand::{Rng, RngCore};
use sustenet_proto::handshake::{self, ClientMasterInitiator, ClusterInitiator, HelloKind};
use sustenet_proto::{
    ClusterToClient, DecodeError, DisconnectReason, EncodeError, Goodbye, HandshakeError,
    JoinTarget, Key, MasterToClient, Message, PROTOCOL_VERSION,
};
use sustenet_server::{Limits, MasterConfig};

/// A "message" that encodes to arbitrary bytes: a sealed frame whose
/// plaintext is no valid message.
struct Junk(Vec<u8>);

impl Message for Junk {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&self.0);
        Ok(())
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(Junk(bytes.to_vec()))
    }
}

/// Master, one cluster, and a player that has joined it.
async fn setup(limits: Limits) -> (RunningMaster, RunningCluster, Key, Player) {
    count_panics();
    let keys = keys(&["alpha"]);
    let key = keys["alpha"].clone();
    let master = start_master_on(
        "127.0.0.1:0",
        sustenet_proto::MasterKeypair::generate().unwrap(),
        keys.clone(),
        MasterConfig {
            limits,
            ..master_config()
        },
    )
    .await;
    let mut cfg = cluster_config(master.addr, "Alpha", "alpha", 0);
    cfg.limits = limits;
    // Reconnects off: a player that times out is told so and let go at once
    // (with reconnects on, tests/resume.rs covers what happens instead).
    cfg.resume_grace = Duration::ZERO;
    let cluster = start_cluster_with(cfg, key.clone()).await;
    wait_for_clusters(&master, 1).await;
    let player = join(&master, "steady", JoinTarget::Auto).await;
    player.echo(b"ready").await;
    (master, cluster, key, player)
}

fn alive(master: &RunningMaster, cluster: &RunningCluster) {
    assert!(!master.task.is_finished(), "the master stopped");
    assert!(!cluster.task.is_finished(), "the cluster stopped");
    assert_eq!(panics(), 0, "something panicked");
}

/// Sends `bytes` on a new connection and waits for the server to close it;
/// every frame it sent first must be a plaintext refusal.
async fn rejected(addr: SocketAddr, bytes: &[u8]) -> Vec<HandshakeError> {
    let mut raw = Raw::connect(addr).await;
    raw.send_bytes(bytes).await;
    raw.closed()
        .await
        .iter()
        .map(|f| handshake::check_refusal(f).expect("a reply that is not a refusal"))
        .collect()
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(body.len()).unwrap().to_le_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

// Long: one master and cluster take every kind of garbage in turn, each checked to leave them serving; one server setup for all of them.
#[tokio::test]
async fn garbage_frames_and_broken_handshakes() {
    init_tracing();
    let (master, cluster, key, player) = setup(fast_limits()).await;
    let mut rng = rand::rng();
    for (i, addr) in [master.addr, cluster.tcp].into_iter().enumerate() {
        // Plain garbage: its first four bytes read as a huge length.
        assert!(
            rejected(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .is_empty()
        );
        // A 4 GiB length prefix, an empty frame.
        assert!(rejected(addr, &[0xFF; 4]).await.is_empty());
        assert!(
            rejected(addr, &[0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3])
                .await
                .is_empty()
        );
        assert!(rejected(addr, &[0, 0, 0, 0]).await.is_empty());
        // Random frames: refused (bad magic) and closed.
        for _ in 0..20 {
            let mut body = vec![0u8; rng.random_range(1..300)];
            rng.fill_bytes(&mut body);
            let e = rejected(addr, &framed(&body)).await;
            assert_eq!(e.len(), 1, "{e:?}");
            assert_eq!(e[0].reason(), DisconnectReason::ProtocolViolation, "{e:?}");
        }
        // The right magic and version, an unknown kind.
        let f = handshake::encode_handshake_frame(PROTOCOL_VERSION, HelloKind::Reject, b"xx");
        let e = rejected(addr, &framed(&f)).await;
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].reason(), DisconnectReason::ProtocolViolation);
        // A real hello cut at every length.
        let hello = if i == 0 {
            ClientMasterInitiator::start(&master.keypair.public())
                .unwrap()
                .1
        } else {
            let (t, s) = craft_token(&key, cluster.id, 1, now_ms() + 30_000);
            handshake::client_cluster_hello(&t, &s).unwrap().0
        };
        for cut in 1..hello.len() {
            let e = rejected(addr, &framed(&hello[..cut])).await;
            assert_eq!(e.len(), 1, "cut at {cut}: {e:?}");
            assert_eq!(
                e[0].reason(),
                DisconnectReason::ProtocolViolation,
                "cut at {cut}"
            );
        }
        player.echo(format!("after garbage {i}").as_bytes()).await;
        alive(&master, &cluster);
    }

    // Stalls, all at once: half a frame, a cluster hello with no registration
    // after the challenge, a client-master session that goes quiet, a player
    // session that goes quiet. Each ends by the server's own timeout.
    let half_frame = async {
        let mut v = 100u32.to_le_bytes().to_vec();
        v.extend_from_slice(&[1; 10]);
        let m = rejected(master.addr, &v).await;
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].reason(), DisconnectReason::HandshakeTimeout);
        let c = rejected(cluster.tcp, &v).await;
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].reason(), DisconnectReason::HandshakeTimeout);
    };
    let cluster_hello_then_silence = async {
        let mut raw = Raw::connect(master.addr).await;
        let (_init, hello) =
            ClusterInitiator::start("alpha", key.clone(), &mut rand::rng()).unwrap();
        raw.send(&hello).await;
        let frames = raw.closed().await;
        assert_eq!(frames.len(), 1, "only the challenge comes back");
        assert!(matches!(
            handshake::check_refusal(&frames[0]),
            Some(HandshakeError::UnexpectedKind(k)) if k == HelloKind::Challenge as u8
        ));
    };
    let quiet_master_client = async {
        let mut m = RawMasterClient::connect(master.addr, &master.keypair.public())
            .await
            .unwrap();
        // Say nothing at all, not even pongs: the master times the client out.
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            let msg = tokio::time::timeout_at(deadline, m.reader.recv::<MasterToClient>())
                .await
                .expect("the master never timed out a silent client")
                .unwrap();
            match msg {
                Some(MasterToClient::Ping(_)) => {}
                Some(MasterToClient::Disconnect(g)) => {
                    assert_eq!(g.reason, DisconnectReason::Timeout);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    let quiet_player = async {
        let (t, s) = craft_token(&key, cluster.id, 2, now_ms() + 30_000);
        let mut p = RawPlayer::connect(cluster.tcp, &t, &s).await.unwrap();
        // Read without answering pings: the cluster times the player out.
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            let f = tokio::time::timeout_at(deadline, p.raw.recv())
                .await
                .expect("the cluster never timed out a silent player");
            let Some(f) = f else {
                panic!("closed without a goodbye")
            };
            match ClusterToClient::decode(&p.opener.open(&f).unwrap()).unwrap() {
                ClusterToClient::Ping(_) => {}
                ClusterToClient::Disconnect(g) => {
                    assert_eq!(g.reason, DisconnectReason::Timeout);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    let keep_playing = async {
        for i in 0..10 {
            player.echo(format!("during stalls {i}").as_bytes()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::join!(
        half_frame,
        cluster_hello_then_silence,
        quiet_master_client,
        quiet_player,
        keep_playing
    );
    alive(&master, &cluster);

    // Inside a session: a sealed frame that is no message, and an oversized
    // frame, each end that session with ProtocolViolation.
    let mut m = RawMasterClient::connect(master.addr, &master.keypair.public())
        .await
        .unwrap();
    m.writer.send(&Junk(vec![0xEE, 1, 2, 3])).await.unwrap();
    match m.recv().await {
        MasterToClient::Disconnect(g) => {
            assert_eq!(g.reason, DisconnectReason::ProtocolViolation)
        }
        other => panic!("expected a goodbye, got {other:?}"),
    }
    for junk in [vec![0xEE, 1, 2, 3], vec![]] {
        let (t, s) = craft_token(&key, cluster.id, 3, now_ms() + 30_000);
        let mut p = RawPlayer::connect(cluster.tcp, &t, &s).await.unwrap();
        let sealed = p.sealer.seal(&junk).unwrap();
        p.raw.send(&sealed).await;
        let g = goodbye(&mut p).await;
        assert_eq!(g.reason, DisconnectReason::ProtocolViolation);
    }
    let (t, s) = craft_token(&key, cluster.id, 4, now_ms() + 30_000);
    let mut p = RawPlayer::connect(cluster.tcp, &t, &s).await.unwrap();
    p.raw.send_bytes(&[0xFF; 4]).await;
    let g = goodbye(&mut p).await;
    assert_eq!(g.reason, DisconnectReason::ProtocolViolation);

    player.echo(b"still fine").await;
    alive(&master, &cluster);
    // A newcomer is served as usual.
    let newcomer = join(&master, "newcomer", JoinTarget::Auto).await;
    newcomer.echo(b"hello").await;
    alive(&master, &cluster);
    cluster.stop().await;
    master.stop().await;
}

/// Reads until the cluster's goodbye (pings skipped).
async fn goodbye(p: &mut RawPlayer) -> Goodbye {
    loop {
        match p.recv().await {
            Some(ClusterToClient::Disconnect(g)) => return g,
            Some(ClusterToClient::Data { payload, .. }) => panic!("unexpected data {payload:?}"),
            Some(_) => {}
            None => panic!("closed without a goodbye"),
        }
    }
}

/// Opens `n` connections that never speak; returns a task per connection
/// that ends with the refusal it got (if any) once the server closed it.
async fn idle_flood(
    addr: SocketAddr,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Option<DisconnectReason>>> {
    let mut raws = Vec::with_capacity(n);
    for _ in 0..n {
        raws.push(Raw::connect(addr).await);
    }
    raws.into_iter()
        .map(|mut raw| {
            tokio::spawn(async move {
                let frames = raw.closed().await;
                assert!(
                    frames.len() <= 1,
                    "more than one frame to an idle connection"
                );
                frames
                    .first()
                    .map(|f| handshake::check_refusal(f).expect("not a refusal").reason())
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections() {
    init_tracing();
    // Default max_handshakes (512), and a handshake timeout long enough that
    // all the idle connections are open at the same time.
    let limits = Limits {
        handshake_timeout_ms: 3_000,
        ..fast_limits()
    };
    assert_eq!(limits.max_handshakes, 512);
    let (master, cluster, _key, player) = setup(limits).await;

    let (on_master, on_cluster) = tokio::join!(
        idle_flood(master.addr, 1_000),
        idle_flood(cluster.tcp, 1_000)
    );
    // While the flood sits there, the player plays on.
    for i in 0..5 {
        player.echo(format!("during flood {i}").as_bytes()).await;
    }
    let mut counts = Vec::new();
    for (name, tasks, idle_reason) in [
        (
            "master",
            on_master,
            Some(DisconnectReason::HandshakeTimeout),
        ),
        (
            "cluster",
            on_cluster,
            Some(DisconnectReason::HandshakeTimeout),
        ),
    ] {
        let mut too_many = 0;
        for t in tasks {
            match t.await.unwrap() {
                Some(DisconnectReason::TooManyHandshakes) => too_many += 1,
                r => assert_eq!(r, idle_reason, "{name}"),
            }
        }
        eprintln!("{name}: {too_many} of 1000 idle connections refused with TooManyHandshakes");
        counts.push(too_many);
    }
    assert!(
        counts.iter().all(|&c| c > 0),
        "the handshake limit never bit: {counts:?}"
    );
    alive(&master, &cluster);

    // Every idle connection is gone: service is back for newcomers.
    player.echo(b"after flood").await;
    let newcomer = join(&master, "newcomer", JoinTarget::Auto).await;
    newcomer.echo(b"hello").await;
    wait_for_list(&master, "both players", |l| {
        l.len() == 1 && l[0].players == 2
    })
    .await;
    alive(&master, &cluster);
    cluster.stop().await;
    master.stop().await;
}
