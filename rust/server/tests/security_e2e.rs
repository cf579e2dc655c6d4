//! The security model against running servers: wrong, unknown and replayed cluster registrations are refused; a wrong master key and another protocol version are named; forged, expired, wrong-cluster, used and stolen tokens are refused with their reason; tampered and replayed TCP frames and UDP datagrams are never delivered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use rand::RngCore;
use sustenet_client::{ClientConfig, ClientError, ClientEvent};
use sustenet_proto::datagram::{self, Record};
use sustenet_proto::handshake::{self, ClusterInitiator, HelloKind};
use sustenet_proto::{
    ClientSessionKeys, ClientToCluster, ClusterToMaster, DisconnectReason, HandshakeError,
    JoinTarget, Key, PROTOCOL_VERSION, PublicKey, Register, Side,
};
use sustenet_server::{EchoChat, Limits};
use tokio::net::UdpSocket;

/// A master and one cluster whose players may stay quiet on TCP for a while
/// (raw tests do not answer every ping).
async fn servers() -> (RunningMaster, RunningCluster, Key) {
    let keys = keys(&["alpha"]);
    let key = keys["alpha"].clone();
    let master = start_master(&keys).await;
    let mut cfg = cluster_config(master.addr, "Alpha", "alpha", 0);
    cfg.limits = Limits {
        timeout_ms: 10_000,
        ..fast_limits()
    };
    let cluster = start_cluster_with(cfg, key.clone()).await;
    wait_for_clusters(&master, 1).await;
    (master, cluster, key)
}

fn register(id: u64) -> Register {
    Register {
        cluster_id: id,
        name: format!("Fake {id}"),
        address: "127.0.0.1".into(),
        tcp_port: 1,
        udp_port: 1,
        capacity: 0,
    }
}

/// Registers by hand; returns the master's first answer to the sealed
/// registration (a refusal or a sealed frame), the hello and the sealed
/// registration frame that were sent.
async fn register_by_hand(
    master: &RunningMaster,
    key_name: &str,
    key: Key,
    id: u64,
) -> (Option<Vec<u8>>, Vec<u8>, Vec<u8>, Raw) {
    let mut raw = Raw::connect(master.addr).await;
    let (init, hello) = ClusterInitiator::start(key_name, key, &mut rand::rng()).unwrap();
    raw.send(&hello).await;
    let challenge = raw.recv().await.expect("no challenge");
    let mut session = init.handle_challenge(&challenge).unwrap();
    let mut plain = Vec::new();
    sustenet_proto::Message::encode(&ClusterToMaster::Register(register(id)), &mut plain).unwrap();
    let sealed = session.sealer.seal(&plain).unwrap();
    raw.send(&sealed).await;
    let answer = raw.recv().await;
    (answer, hello, sealed, raw)
}

fn assert_auth_refusal(answer: Option<Vec<u8>>) {
    let f = answer.expect("closed without a refusal");
    let e = handshake::check_refusal(&f).expect("the answer is not a refusal");
    assert_eq!(e.reason(), DisconnectReason::AuthFailed, "{e}");
}

#[tokio::test]
async fn wrong_and_unknown_cluster_keys_are_refused() {
    init_tracing();
    let (master, cluster, key) = servers().await;

    // By hand: the master answers the sealed registration with AuthFailed.
    let wrong = Key::generate(&mut rand::rng());
    let (answer, ..) = register_by_hand(&master, "alpha", wrong.clone(), 1).await;
    assert_auth_refusal(answer);
    let (answer, ..) = register_by_hand(&master, "no-such-key", key.clone(), 2).await;
    assert_auth_refusal(answer);
    // The right key, for contrast, is accepted (a sealed frame, not a refusal).
    let (answer, ..) = register_by_hand(&master, "alpha", key.clone(), 3).await;
    assert!(handshake::check_refusal(&answer.unwrap()).is_none());

    // Real clusters with a wrong key or an unknown key name keep retrying and
    // are never listed (watched over several of their retries).
    let bad1 = start_cluster(master.addr, "Wrong", "alpha", wrong, 0).await;
    let bad2 = start_cluster(master.addr, "Unknown", "beta", key.clone(), 0).await;
    let (c, ev) = client(&master);
    c.connect().unwrap();
    let until = tokio::time::Instant::now() + Duration::from_millis(1_500);
    while tokio::time::Instant::now() < until {
        c.list_clusters().unwrap();
        let l = expect(&ev, "list", |e| match e {
            ClientEvent::Clusters(l) => Some(l.clone()),
            _ => None,
        })
        .await;
        assert!(
            l.iter().all(|i| i.id != bad1.id && i.id != bad2.id),
            "a cluster with a bad key is listed: {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!bad1.task.is_finished() && !bad2.task.is_finished());
    bad1.stop().await;
    bad2.stop().await;
    cluster.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn a_recorded_registration_cannot_be_replayed() {
    init_tracing();
    let (master, cluster, key) = servers().await;
    let (answer, hello, sealed, _keep) = register_by_hand(&master, "alpha", key, 555).await;
    assert!(handshake::check_refusal(&answer.unwrap()).is_none());
    wait_for_list(&master, "the hand-made cluster", |l| {
        l.iter().any(|c| c.id == 555)
    })
    .await;

    // An eavesdropper replays both frames on a new connection.
    let mut raw = Raw::connect(master.addr).await;
    raw.send(&hello).await;
    let challenge = raw.recv().await.unwrap();
    assert!(matches!(
        handshake::check_refusal(&challenge),
        Some(HandshakeError::UnexpectedKind(k)) if k == HelloKind::Challenge as u8
    ));
    raw.send(&sealed).await;
    assert_auth_refusal(raw.recv().await);
    assert!(raw.recv().await.is_none(), "the connection stays open");

    cluster.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn a_wrong_master_public_key_is_named() {
    init_tracing();
    let (master, cluster, _) = servers().await;
    let mut wrong = [0u8; 32];
    rand::rng().fill_bytes(&mut wrong);
    let cfg = ClientConfig {
        heartbeat: Duration::from_millis(200),
        ..ClientConfig::new(master.addr.to_string(), PublicKey(wrong))
    };
    let (c, ev) = sustenet_client::Client::spawn(&tokio::runtime::Handle::current(), cfg);
    c.login("ann", b"".to_vec()).unwrap();
    let err = expect(&ev, "an error", |e| match e {
        ClientEvent::Error(err) => Some(err.clone()),
        ClientEvent::LoginSucceeded { .. } => panic!("logged in with the wrong master key"),
        _ => None,
    })
    .await;
    assert_eq!(err, ClientError::WrongMasterKey);
    cluster.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn another_protocol_version_is_refused_on_both_sides() {
    init_tracing();
    let (master, cluster, _) = servers().await;
    let theirs = PROTOCOL_VERSION + 1;
    let cases = [
        (master.addr, HelloKind::ClientMasterHello),
        (master.addr, HelloKind::ClusterHello),
        (cluster.tcp, HelloKind::ClientClusterHello),
        (cluster.tcp, HelloKind::ClientResume),
    ];
    for (addr, kind) in cases {
        let mut raw = Raw::connect(addr).await;
        raw.send(&handshake::encode_handshake_frame(theirs, kind, &[0, 0]))
            .await;
        let f = raw.recv().await.expect("closed without a refusal");
        // The refusal says VersionMismatch...
        let e = handshake::check_refusal(&f).unwrap();
        assert_eq!(
            e.reason(),
            DisconnectReason::VersionMismatch,
            "{kind:?}: {e}"
        );
        // ...and names both versions.
        let text = e.to_string();
        assert!(
            text.contains(&format!("we speak {PROTOCOL_VERSION}"))
                && text.contains(&format!("the peer speaks {theirs}")),
            "{text}"
        );
        // ...in a frame of the server's own version, so that a peer of the
        // other version reads it as a version mismatch too.
        assert_eq!(&f[..4], b"SNET");
        assert_eq!(u16::from_le_bytes([f[4], f[5]]), PROTOCOL_VERSION);
        assert!(raw.recv().await.is_none());
    }

    // The client, facing a server of another version, names it.
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_addr = fake.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = fake.accept().await.unwrap();
        let (rd, mut wr) = s.into_split();
        let mut frames = sustenet_net::FrameReader::new(rd, 64 * 1024);
        let _hello = frames.next().await.unwrap();
        let f = handshake::encode_handshake_frame(theirs, HelloKind::Reject, &[8, 0, 0]);
        sustenet_net::write_frame(&mut wr, &f, usize::MAX)
            .await
            .unwrap();
        let _ = frames.next().await;
    });
    let (c, ev) = client(&MasterInfo {
        addr: fake_addr,
        public: master.keypair.public(),
    });
    c.connect().unwrap();
    let err = expect(&ev, "an error", |e| match e {
        ClientEvent::Error(err) => Some(err.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        err,
        ClientError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs
        }
    );
    let text = err.to_string();
    assert!(
        text.contains(&PROTOCOL_VERSION.to_string()) && text.contains(&theirs.to_string()),
        "{text}"
    );
    drop(c);
    let _ = server.await;
    cluster.stop().await;
    master.stop().await;
}

/// Presents a token by hand and returns the refusal reason.
async fn refused(cluster: &RunningCluster, token: &[u8], secret: &[u8; 32]) -> DisconnectReason {
    match RawPlayer::connect(cluster.tcp, token, secret).await {
        Ok(_) => panic!("the cluster accepted a bad token"),
        Err(e) => e.reason(),
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_with_their_reason() {
    init_tracing();
    let (master, cluster, key) = servers().await;
    let later = now_ms() + 30_000;

    // Forged: random bytes, and a token sealed with another key.
    let mut junk = vec![0u8; 120];
    rand::rng().fill_bytes(&mut junk);
    junk[0] = sustenet_proto::token::TOKEN_FORMAT;
    assert_eq!(
        refused(&cluster, &junk, &[1; 32]).await,
        DisconnectReason::TokenInvalid
    );
    let (t, s) = craft_token(&Key::generate(&mut rand::rng()), cluster.id, 1, later);
    assert_eq!(
        refused(&cluster, &t, &s).await,
        DisconnectReason::TokenInvalid
    );
    // Tampered: one bit of a genuine token.
    let (mut t, s) = craft_token(&key, cluster.id, 1, later);
    let n = t.len();
    t[n / 2] ^= 0x10;
    assert_eq!(
        refused(&cluster, &t, &s).await,
        DisconnectReason::TokenInvalid
    );
    // Expired.
    let (t, s) = craft_token(&key, cluster.id, 2, now_ms() - 1_000);
    assert_eq!(
        refused(&cluster, &t, &s).await,
        DisconnectReason::TokenExpired
    );
    // For another cluster.
    let (t, s) = craft_token(&key, cluster.id ^ 1, 3, later);
    assert_eq!(
        refused(&cluster, &t, &s).await,
        DisconnectReason::TokenWrongCluster
    );
    // Stolen: the right token with keys that do not match it. It is refused
    // and not burnt, so its owner still gets in.
    let (t, s) = craft_token(&key, cluster.id, 4, later);
    assert_eq!(
        refused(&cluster, &t, &[9; 32]).await,
        DisconnectReason::AuthFailed
    );
    let owner = RawPlayer::connect(cluster.tcp, &t, &s).await.unwrap();
    assert_eq!(owner.player_id, 4);

    // Already used: the exact same hello, replayed on a new connection.
    let (t, s) = craft_token(&key, cluster.id, 5, later);
    let (hello, init) = handshake::client_cluster_hello(&t, &s).unwrap();
    let mut first = Raw::connect(cluster.tcp).await;
    first.send(&hello).await;
    let accept = first.recv().await.unwrap();
    assert!(
        init.handle_accept(&accept).is_ok(),
        "the first use is accepted"
    );
    let mut replay = Raw::connect(cluster.tcp).await;
    replay.send(&hello).await;
    assert_eq!(replay.refusal().await.reason(), DisconnectReason::TokenUsed);
    // A token from the master, used twice by its own holder, likewise.
    let mut m = RawMasterClient::connect(master.addr, &master.keypair.public())
        .await
        .unwrap();
    m.login("twice").await;
    let ticket = m.join(JoinTarget::Id(cluster.id)).await.unwrap();
    let p = RawPlayer::connect(cluster.tcp, &ticket.token, &ticket.session_secret)
        .await
        .unwrap();
    assert_eq!(
        refused(&cluster, &ticket.token, &ticket.session_secret).await,
        DisconnectReason::TokenUsed
    );
    drop(p);
    cluster.stop().await;
    master.stop().await;
}

fn data(payload: &[u8]) -> ClientToCluster {
    ClientToCluster::Data {
        command: EchoChat::ECHO,
        payload: payload.to_vec(),
    }
}

#[tokio::test]
async fn tampered_and_replayed_tcp_frames_are_dropped() {
    init_tracing();
    let (master, cluster, key) = servers().await;
    let (t, s) = craft_token(&key, cluster.id, 10, now_ms() + 30_000);
    let mut p = RawPlayer::connect(cluster.tcp, &t, &s).await.unwrap();

    // A frame with one flipped bit, then the genuine frame.
    let good = p.seal(&data(b"genuine"));
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 3] ^= 0x01;
    p.raw.send(&bad).await;
    p.raw.send(&good).await;
    assert_eq!(p.recv_data().await, (EchoChat::ECHO, b"genuine".to_vec()));
    // A flipped sequence number (a gap), the genuine frame, a replay of it,
    // a truncated frame, then the next genuine one.
    let once = p.seal(&data(b"once"));
    let mut bad_seq = once.clone();
    bad_seq[0] ^= 0x01;
    p.raw.send(&bad_seq).await;
    p.raw.send(&once).await;
    p.raw.send(&once).await;
    let fence = p.seal(&data(b"fence"));
    p.raw.send(&fence[..fence.len() - 1]).await;
    p.raw.send(&fence).await;
    assert_eq!(p.recv_data().await.1, b"once".to_vec());
    assert_eq!(p.recv_data().await.1, b"fence".to_vec());
    // A frame removed from the stream: everything after the gap is refused.
    let _dropped = p.seal(&data(b"dropped in transit"));
    let after = p.seal(&data(b"after the gap"));
    p.raw.send(&after).await;

    // The session survived a few refused frames; a flood of them ends it
    // with Tampered.
    for _ in 0..20 {
        let mut bad = p.seal(&data(b"x"));
        let n = bad.len();
        bad[n - 1] ^= 0xFF;
        p.raw.send(&bad).await;
    }
    let goodbye = loop {
        match p.recv().await {
            Some(sustenet_proto::ClusterToClient::Disconnect(g)) => break g,
            Some(sustenet_proto::ClusterToClient::Data { payload, .. }) => {
                panic!("a refused frame was delivered: {payload:?}")
            }
            Some(_) => {}
            None => panic!("closed without a goodbye"),
        }
    };
    assert_eq!(goodbye.reason, DisconnectReason::Tampered);
    cluster.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn tampered_and_replayed_datagrams_are_dropped() {
    init_tracing();
    let (master, cluster, key) = servers().await;
    let (t, s) = craft_token(&key, cluster.id, 11, now_ms() + 30_000);
    let p = RawPlayer::connect(cluster.tcp, &t, &s).await.unwrap();
    assert_eq!(p.udp_port, cluster.udp.port());
    let mut dg = p.keys.datagram(Side::Initiator, p.session_id);
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.connect(cluster.udp).await.unwrap();
    let mut buf = vec![0u8; 2048];

    // Returns the data payloads of what came back within `wait` (pongs skipped).
    async fn collect(
        udp: &UdpSocket,
        opener: &mut sustenet_proto::crypto::DatagramOpener,
        buf: &mut [u8],
        until: &[u8],
    ) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            let n = tokio::time::timeout_at(deadline, udp.recv(buf))
                .await
                .expect("no datagram came back")
                .unwrap();
            let plain = opener
                .open(&buf[..n])
                .expect("the cluster's datagram does not open");
            for r in datagram::decode_records(&plain).unwrap() {
                if let Record::Data { payload, .. } = r {
                    let done = payload == until;
                    got.push(payload);
                    if done {
                        return got;
                    }
                }
            }
        }
    }

    // The path is up: a first datagram echoes.
    let seal = |dg: &mut sustenet_proto::DatagramSession, payload: &[u8]| {
        let plain = datagram::single(&Record::Data {
            command: EchoChat::ECHO,
            payload: payload.to_vec(),
        })
        .unwrap();
        dg.sealer.seal(&plain).unwrap()
    };
    // The address proves itself first (protocol §10.4): a Ping, the
    // challenge sealed in the session, its echo.
    let ping = datagram::single(&Record::Ping(1)).unwrap();
    udp.send(&dg.sealer.seal(&ping).unwrap()).await.unwrap();
    let n = tokio::time::timeout(GUARD, udp.recv(&mut buf))
        .await
        .expect("no challenge came back")
        .unwrap();
    let plain = dg.opener.open(&buf[..n]).unwrap();
    let [Record::PathChallenge(c)] = datagram::decode_records(&plain).unwrap()[..] else {
        panic!("expected a challenge");
    };
    let answer = datagram::single(&Record::PathResponse(c)).unwrap();
    udp.send(&dg.sealer.seal(&answer).unwrap()).await.unwrap();
    udp.send(&seal(&mut dg, b"first")).await.unwrap();
    assert_eq!(
        collect(&udp, &mut dg.opener, &mut buf, b"first").await,
        vec![b"first".to_vec()]
    );

    // A genuine datagram, the same bytes again, a tampered copy, a copy with
    // a forged sequence number, and garbage: exactly one echo.
    let d = seal(&mut dg, b"once");
    udp.send(&d).await.unwrap();
    udp.send(&d).await.unwrap();
    let mut bad = d.clone();
    let n = bad.len();
    bad[n - 1] ^= 0x01;
    udp.send(&bad).await.unwrap();
    let mut bad_seq = d.clone();
    bad_seq[10] ^= 0x01;
    udp.send(&bad_seq).await.unwrap();
    udp.send(b"garbage").await.unwrap();
    udp.send(&seal(&mut dg, b"fence")).await.unwrap();
    let got = collect(&udp, &mut dg.opener, &mut buf, b"fence").await;
    assert_eq!(got, vec![b"once".to_vec(), b"fence".to_vec()]);
    // Datagrams of another session are dropped too.
    let mut foreign = ClientSessionKeys::derive(&[7; 32], &[7; 32])
        .unwrap()
        .datagram(Side::Initiator, p.session_id);
    udp.send(&seal(&mut foreign, b"foreign")).await.unwrap();
    udp.send(&seal(&mut dg, b"fence2")).await.unwrap();
    let got = collect(&udp, &mut dg.opener, &mut buf, b"fence2").await;
    assert_eq!(got, vec![b"fence2".to_vec()]);
    drop(p);
    cluster.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn a_cluster_cannot_take_over_another_clusters_id() {
    init_tracing();
    let keys = keys(&["alpha", "beta"]);
    let master = start_master(&keys).await;
    let alpha = start_cluster(master.addr, "Alpha", "alpha", keys["alpha"].clone(), 0).await;
    wait_for_clusters(&master, 1).await;

    // The holder of another key claims Alpha's id (to send Alpha's players
    // elsewhere): refused, and Alpha stays listed as it was.
    let (answer, _, _, _keep) =
        register_by_hand(&master, "beta", keys["beta"].clone(), alpha.id).await;
    assert_auth_refusal(answer);
    let list = list_clusters(&master).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, alpha.id);
    assert_eq!(list[0].name, "Alpha");
    assert_eq!(list[0].tcp_port, alpha.tcp.port());
    let p = join(&master, "ann", JoinTarget::Id(alpha.id)).await;
    assert_eq!(p.cluster.tcp_port, alpha.tcp.port());
    p.echo(b"still alpha").await;

    // The same key may re-register the id (a cluster whose link dropped).
    let (answer, _, _, _keep2) =
        register_by_hand(&master, "alpha", keys["alpha"].clone(), alpha.id).await;
    assert!(handshake::check_refusal(&answer.unwrap()).is_none());
    alpha.stop().await;
    master.stop().await;
}
