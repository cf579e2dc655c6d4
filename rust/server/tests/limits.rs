//! Connection limits hold: a full cluster is locked and refused by the master (players and pending tickets both count), refused by the cluster itself even with a valid token, and the master's own client limit refuses extra clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use sustenet_client::{ClientError, ClientEvent};
use sustenet_proto::{
    ClientToCluster, DisconnectReason, Goodbye, HandshakeError, JoinTarget, MasterKeypair,
};
use sustenet_server::{EchoChat, MasterConfig};

/// A cluster's `max_connections` of 0 is the default bound: the cluster
/// registers that bound, so the list never shows a Sustenet cluster with
/// capacity 0.
#[tokio::test]
async fn a_cluster_without_max_connections_lists_the_default_bound() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let master = start_master(&keys).await;
    let _cluster = start_cluster(master.addr, "Alpha", "alpha", keys["alpha"].clone(), 0).await;
    let list = wait_for_list(&master, "the cluster", |l| l.len() == 1).await;
    assert_eq!(
        list[0].capacity,
        sustenet_server::ClusterConfig::DEFAULT_MAX_CONNECTIONS
    );
    assert_eq!(list[0].capacity, 1_000);
    assert!(!list[0].locked, "{list:?}");
}

#[tokio::test]
async fn a_full_cluster_is_locked_and_refused_by_the_master() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let master = start_master(&keys).await;
    let cluster = start_cluster(master.addr, "Alpha", "alpha", keys["alpha"].clone(), 2).await;
    wait_for_clusters(&master, 1).await;

    let p1 = join(&master, "one", JoinTarget::Auto).await;
    let p2 = join(&master, "two", JoinTarget::Id(cluster.id)).await;
    assert_eq!(p1.cluster.id, cluster.id);
    assert_eq!(p2.cluster.id, cluster.id);

    let list = wait_for_list(&master, "a locked cluster", |l| {
        l.len() == 1 && l[0].players == 2
    })
    .await;
    assert_eq!(list[0].capacity, 2);
    assert!(list[0].locked, "{list:?}");

    // A third player is refused by the master, whether it asks for Auto or the id.
    let Err((reason, message, c3, ev3)) = try_join(&master, "three", JoinTarget::Auto).await else {
        panic!("a third player joined a cluster of capacity 2");
    };
    assert_eq!(reason, DisconnectReason::ServerFull, "{message}");
    c3.join(JoinTarget::Id(cluster.id)).unwrap();
    let (reason, _) = expect(&ev3, "join failed", |e| match e {
        ClientEvent::JoinFailed { reason, message } => Some((*reason, message.clone())),
        ClientEvent::Joined { .. } => panic!("joined a full cluster by id"),
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReason::ServerFull);

    // The players still play.
    p1.echo(b"still here").await;
    p2.echo(b"me too").await;

    // One leaves: the cluster unlocks and the third gets in.
    p1.client.leave().unwrap();
    p1.disconnected().await;
    wait_for_list(&master, "an unlocked cluster", |l| {
        l.len() == 1 && !l[0].locked && l[0].players == 1
    })
    .await;
    c3.join(JoinTarget::Auto).unwrap();
    let info = expect(&ev3, "joined", |e| match e {
        ClientEvent::Joined { cluster, .. } => Some(cluster.clone()),
        ClientEvent::JoinFailed { reason, message } => {
            panic!("join after a player left failed: {reason} {message}")
        }
        _ => None,
    })
    .await;
    assert_eq!(info.id, cluster.id);

    cluster.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn pending_tickets_count_toward_the_load() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let master = start_master(&keys).await;
    let cluster = start_cluster(master.addr, "Alpha", "alpha", keys["alpha"].clone(), 1).await;
    wait_for_clusters(&master, 1).await;

    // A ticket is issued and not used (yet): the one seat is taken.
    let mut raw = RawMasterClient::connect(master.addr, &master.keypair.public())
        .await
        .unwrap();
    let client_id = raw.login("holder").await;
    let ticket = raw.join(JoinTarget::Auto).await.unwrap();
    assert_eq!(ticket.cluster.id, cluster.id);
    assert_eq!(ticket.client_id, client_id);
    let list = list_clusters(&master).await;
    assert_eq!((list[0].players, list[0].locked), (1, true), "{list:?}");
    let Err((reason, ..)) = try_join(&master, "late", JoinTarget::Auto).await else {
        panic!("joined past a pending ticket");
    };
    assert_eq!(reason, DisconnectReason::ServerFull);

    // The ticket works, and then it is a player instead of a pending ticket.
    let mut p = RawPlayer::connect(cluster.tcp, &ticket.token, &ticket.session_secret)
        .await
        .unwrap();
    assert_eq!(p.player_id, client_id);
    p.send(&ClientToCluster::Data {
        command: EchoChat::ECHO,
        payload: b"raw".to_vec(),
    })
    .await;
    assert_eq!(p.recv_data().await, (EchoChat::ECHO, b"raw".to_vec()));
    let list = list_clusters(&master).await;
    assert_eq!((list[0].players, list[0].locked), (1, true), "{list:?}");

    cluster.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn the_cluster_itself_refuses_past_its_capacity() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let key = keys["alpha"].clone();
    let master = start_master(&keys).await;
    let cluster = start_cluster(master.addr, "Alpha", "alpha", key.clone(), 1).await;
    wait_for_clusters(&master, 1).await;
    let p1 = join(&master, "one", JoinTarget::Auto).await;

    // A valid token made with the cluster's key (as if the master's view had
    // raced): the cluster refuses it in clear with ServerFull.
    let (token, secret) = craft_token(&key, cluster.id, 4242, now_ms() + 30_000);
    let refusal = match RawPlayer::connect(cluster.tcp, &token, &secret).await {
        Err(e) => e,
        Ok(_) => panic!("a second player got into a cluster of capacity 1"),
    };
    assert!(
        matches!(
            refusal,
            HandshakeError::Rejected {
                reason: DisconnectReason::ServerFull,
                ..
            }
        ),
        "{refusal:?}"
    );
    p1.echo(b"unaffected").await;

    // The player leaves; the same (unused) token now gets in.
    p1.client.leave().unwrap();
    p1.disconnected().await;
    let deadline = tokio::time::Instant::now() + GUARD;
    let mut p = loop {
        match RawPlayer::connect(cluster.tcp, &token, &secret).await {
            Ok(p) => break p,
            Err(e) => {
                assert_eq!(e.reason(), DisconnectReason::ServerFull, "{e}");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the seat never freed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(p.player_id, 4242);
    p.send(&ClientToCluster::Data {
        command: EchoChat::ECHO,
        payload: b"in".to_vec(),
    })
    .await;
    assert_eq!(p.recv_data().await.1, b"in".to_vec());

    cluster.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn simultaneous_tokens_for_the_last_seat_let_exactly_one_in() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let key = keys["alpha"].clone();
    let master = start_master(&keys).await;
    let cluster = start_cluster(master.addr, "Alpha", "alpha", key.clone(), 1).await;
    for round in 0..5u64 {
        // Both may pass the early check (nobody is in yet); the core decides.
        let (t1, s1) = craft_token(&key, cluster.id, 100 + 2 * round, now_ms() + 30_000);
        let (t2, s2) = craft_token(&key, cluster.id, 101 + 2 * round, now_ms() + 30_000);
        let (r1, r2) = tokio::join!(
            RawPlayer::connect(cluster.tcp, &t1, &s1),
            RawPlayer::connect(cluster.tcp, &t2, &s2)
        );
        let (winner, loser) = match (r1, r2) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            (Ok(_), Ok(_)) => panic!("round {round}: two players in a cluster of capacity 1"),
            (Err(a), Err(b)) => panic!("round {round}: both refused: {a} / {b}"),
        };
        assert_eq!(loser.reason(), DisconnectReason::ServerFull, "{loser}");
        // The winner leaves; wait until its seat is free for the next round.
        let mut w = winner;
        w.send(&ClientToCluster::Disconnect(Goodbye::new(
            DisconnectReason::Requested,
        )))
        .await;
        let _ = w.raw.closed().await;
        wait_seat_free(&cluster, &key).await;
    }
    cluster.stop().await;
    master.stop().await;
}

/// Waits until a capacity-1 cluster takes a player again (by trying).
async fn wait_seat_free(cluster: &RunningCluster, key: &sustenet_proto::Key) {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let (t, s) = craft_token(key, cluster.id, 77_777, now_ms() + 30_000);
        match RawPlayer::connect(cluster.tcp, &t, &s).await {
            Ok(mut probe) => {
                probe
                    .send(&ClientToCluster::Disconnect(Goodbye::new(
                        DisconnectReason::Requested,
                    )))
                    .await;
                let _ = probe.raw.closed().await;
                // The probe's own leaving is processed before the next
                // connection's join (one core queue), so the seat is free.
                return;
            }
            Err(e) => assert_eq!(e.reason(), DisconnectReason::ServerFull),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the seat never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_master_limits_its_clients() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let master = start_master_on(
        "127.0.0.1:0",
        MasterKeypair::generate().unwrap(),
        keys.clone(),
        MasterConfig {
            max_connections: 2,
            ..master_config()
        },
    )
    .await;
    let (c1, e1) = client(&master);
    c1.connect().unwrap();
    expect(&e1, "connected", |e| {
        matches!(e, ClientEvent::MasterConnected).then_some(())
    })
    .await;
    let (c2, e2) = client(&master);
    c2.login("two", b"".to_vec()).unwrap();
    expect(&e2, "login", |e| {
        matches!(e, ClientEvent::LoginSucceeded { .. }).then_some(())
    })
    .await;

    // The third is refused with ServerFull, in clear, before any session.
    let (c3, e3) = client(&master);
    c3.connect().unwrap();
    let err = expect(&e3, "refusal", |e| match e {
        ClientEvent::Error(err) => Some(err.clone()),
        ClientEvent::MasterConnected => panic!("a third client got past max_connections 2"),
        _ => None,
    })
    .await;
    assert!(
        matches!(
            &err,
            ClientError::Refused {
                reason: DisconnectReason::ServerFull,
                ..
            }
        ),
        "{err:?}"
    );
    let refusal = match RawMasterClient::connect(master.addr, &master.keypair.public()).await {
        Err(e) => e,
        Ok(_) => panic!("a raw third client got past max_connections 2"),
    };
    assert_eq!(refusal.reason(), DisconnectReason::ServerFull, "{refusal}");

    // Clusters do not count: one registers while the master is full of clients.
    let cluster = start_cluster(master.addr, "Alpha", "alpha", keys["alpha"].clone(), 0).await;
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        c2.list_clusters().unwrap();
        let l = expect(&e2, "list", |e| match e {
            ClientEvent::Clusters(l) => Some(l.clone()),
            _ => None,
        })
        .await;
        if l.len() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cluster never registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A client leaves: its seat frees and a new client gets in.
    c1.disconnect().unwrap();
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        match RawMasterClient::connect(master.addr, &master.keypair.public()).await {
            Ok(mut raw) => {
                raw.login("four").await;
                break;
            }
            Err(e) => assert_eq!(e.reason(), DisconnectReason::ServerFull, "{e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the seat never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.stop().await;
    master.stop().await;
}
