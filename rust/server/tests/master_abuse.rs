//! Abuse of the master through real sockets: one account trying to lock
//! every cluster (repeated logins, piles of unused tickets), and a cluster
//! holding a valid key claiming another cluster's player to move it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use sustenet_proto::{
    ClientToMaster, ClusterToMaster, DisconnectReason, JoinTarget, Key, MasterToClient,
    MasterToCluster,
};
use sustenet_server::MasterConfig;

#[tokio::test]
async fn a_connection_logs_in_once() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let master = start_master(&keys).await;
    let cluster = start_cluster(master.addr, "Alpha", "alpha", keys["alpha"].clone(), 0).await;
    wait_for_clusters(&master, 1).await;
    let mut raw = RawMasterClient::connect(master.addr, &master.keypair.public())
        .await
        .unwrap();
    let first = raw.login("ann").await;
    for name in ["ann", "bob"] {
        raw.writer
            .send(&ClientToMaster::Login {
                username: name.into(),
                secret: vec![],
            })
            .await
            .unwrap();
        match raw.recv().await {
            MasterToClient::LoginFailed { message } => {
                assert!(message.contains("already logged in"), "{message}")
            }
            other => panic!("a second login on one connection got {other:?}"),
        }
    }
    // The connection keeps its one client id.
    let ticket = raw.join(JoinTarget::Auto).await.unwrap();
    assert_eq!(ticket.client_id, first);
    cluster.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn repeated_logins_count_as_failed_attempts() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let master = start_master(&keys).await;
    let mut raw = RawMasterClient::connect(master.addr, &master.keypair.public())
        .await
        .unwrap();
    raw.login("ann").await;
    let attempts = MasterConfig::default().max_login_attempts;
    for _ in 0..attempts {
        raw.writer
            .send(&ClientToMaster::Login {
                username: "ann".into(),
                secret: vec![],
            })
            .await
            .unwrap();
        match raw.recv().await {
            MasterToClient::LoginFailed { .. } => {}
            other => panic!("a second login got {other:?}"),
        }
    }
    // The master's pings keep coming, so the whole wait has the guard.
    match tokio::time::timeout(GUARD, raw.recv()).await {
        Ok(MasterToClient::Disconnect(g)) => assert_eq!(g.reason, DisconnectReason::AuthFailed),
        Ok(other) => panic!("expected the connection closed, got {other:?}"),
        Err(_) => panic!("repeated logins did not close the connection"),
    }
    master.stop().await;
}

async fn master_with(
    keys: &std::collections::HashMap<String, Key>,
    cfg: MasterConfig,
) -> RunningMaster {
    start_master_on(
        "127.0.0.1:0",
        sustenet_proto::MasterKeypair::generate().unwrap(),
        keys.clone(),
        cfg,
    )
    .await
}

#[tokio::test]
async fn unused_tickets_are_capped_per_connection_and_per_user() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let master = master_with(
        &keys,
        MasterConfig {
            max_tickets_per_connection: 3,
            max_tickets_per_user: 5,
            ..master_config()
        },
    )
    .await;
    let cluster = start_cluster(master.addr, "Alpha", "alpha", keys["alpha"].clone(), 0).await;
    wait_for_clusters(&master, 1).await;
    let public = master.keypair.public();
    let mut a = RawMasterClient::connect(master.addr, &public)
        .await
        .unwrap();
    a.login("mallory").await;
    for _ in 0..3 {
        a.join(JoinTarget::Auto).await.unwrap();
    }
    let refused = a.join(JoinTarget::Auto).await.unwrap_err();
    assert_eq!(
        refused.reason,
        DisconnectReason::TooManyTickets,
        "{}",
        refused.message
    );
    // The same user on a second connection: two more reach the user's cap.
    let mut b = RawMasterClient::connect(master.addr, &public)
        .await
        .unwrap();
    b.login("mallory").await;
    b.join(JoinTarget::Auto).await.unwrap();
    b.join(JoinTarget::Auto).await.unwrap();
    let refused = b.join(JoinTarget::Auto).await.unwrap_err();
    assert_eq!(refused.reason, DisconnectReason::TooManyTickets);
    assert!(refused.message.contains("mallory"), "{}", refused.message);
    // Another user is not affected.
    let mut c = RawMasterClient::connect(master.addr, &public)
        .await
        .unwrap();
    c.login("carol").await;
    let t = c.join(JoinTarget::Auto).await.unwrap();
    // A used ticket stops counting: carol plays, then may ask again.
    let p = RawPlayer::connect(cluster.tcp, &t.token, &t.session_secret)
        .await
        .unwrap();
    assert_eq!(p.player_id, t.client_id);
    cluster.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn unused_tickets_do_not_lock_a_cluster() {
    init_tracing();
    let keys = keys(&["alpha"]);
    // Tickets live long, and an unused one holds no seat at all.
    let master = master_with(
        &keys,
        MasterConfig {
            token_ttl: Duration::from_secs(600),
            ticket_hold: Duration::ZERO,
            ..master_config()
        },
    )
    .await;
    let cluster = start_cluster(master.addr, "Alpha", "alpha", keys["alpha"].clone(), 1).await;
    wait_for_clusters(&master, 1).await;
    let public = master.keypair.public();
    // An attacker takes every ticket it may (one connection, the cap).
    let mut m = RawMasterClient::connect(master.addr, &public)
        .await
        .unwrap();
    m.login("mallory").await;
    for _ in 0..MasterConfig::default().max_tickets_per_connection {
        m.join(JoinTarget::Id(cluster.id)).await.unwrap();
    }
    // The cluster is not locked, and a real player gets in.
    let list = list_clusters(&master).await;
    assert_eq!((list[0].players, list[0].locked), (0, false), "{list:?}");
    let p = join(&master, "ann", JoinTarget::Auto).await;
    p.echo(b"in").await;
    // Now the seat is really taken.
    let list = wait_for_list(&master, "ann counted", |l| l[0].players == 1).await;
    assert!(list[0].locked);
    cluster.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn a_cluster_cannot_claim_a_player_the_master_sent_elsewhere() {
    init_tracing();
    let keys = keys(&["alpha", "beta"]);
    let master = start_master(&keys).await;
    let alpha = start_cluster(master.addr, "Alpha", "alpha", keys["alpha"].clone(), 0).await;
    wait_for_clusters(&master, 1).await;
    let victim = join(&master, "victim", JoinTarget::Id(alpha.id)).await;
    victim.echo(b"playing").await;
    let victim_id = victim.id;

    // A hostile cluster with a valid key ("beta") claims the victim and
    // asks for a ticket to move it onto alpha, where it would kick the victim.
    let mut hostile = HandCluster::register(master.addr, "beta", keys["beta"].clone(), 4242).await;
    hostile
        .writer
        .send(&ClusterToMaster::PlayerJoined {
            client_id: victim_id,
        })
        .await
        .unwrap();
    match hostile.transfer(victim_id, alpha.id).await {
        MasterToCluster::TransferFailed { reason, .. } => {
            assert_eq!(
                reason.reason,
                DisconnectReason::ProtocolViolation,
                "{}",
                reason.message
            )
        }
        MasterToCluster::TransferReady { .. } => {
            panic!("the master minted a ticket for a claimed player")
        }
        other => panic!("unexpected answer {other:?}"),
    }
    // A made-up id fares the same.
    match hostile.transfer(777, alpha.id).await {
        MasterToCluster::TransferFailed { .. } => {}
        other => panic!("unexpected answer {other:?}"),
    }
    // The victim plays on.
    victim.echo(b"still here").await;
    alpha.stop().await;
    master.stop().await;
}
