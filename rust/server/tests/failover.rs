//! Failures and recovery: a killed cluster's players are told and the master drops it; a silent cluster is dropped after its timeout; players play on through a master restart and the clusters re-register; a graceful stop says ServerShutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use sustenet_client::ClientEvent;
use sustenet_net::{SealedReader, SealedWriter};
use sustenet_proto::handshake::ClusterInitiator;
use sustenet_proto::{DisconnectReason, JoinTarget, MasterToCluster};

#[tokio::test]
async fn a_killed_cluster_is_dropped_and_players_move_on() {
    init_tracing();
    count_panics();
    let keys = keys(&["alpha", "beta"]);
    let master = start_master(&keys).await;
    let a = start_cluster(master.addr, "Alpha", "alpha", keys["alpha"].clone(), 0).await;
    let b = start_cluster(master.addr, "Beta", "beta", keys["beta"].clone(), 0).await;
    wait_for_clusters(&master, 2).await;

    let p1 = join(&master, "one", JoinTarget::Id(a.id)).await;
    let p2 = join(&master, "two", JoinTarget::Id(a.id)).await;
    let p3 = join(&master, "three", JoinTarget::Id(b.id)).await;
    p1.echo(b"before").await;

    let (a_id, b_id) = (a.id, b.id);
    a.kill().await;

    // Its players hear of it, with a reason.
    for p in [&p1, &p2] {
        let (reason, message) = p.disconnected().await;
        assert_eq!(reason, DisconnectReason::ConnectionLost, "{message}");
    }
    // The master drops it.
    let list = wait_for_list(&master, "only Beta", |l| l.len() == 1).await;
    assert_eq!(list[0].id, b_id);
    // Beta's player never noticed.
    p3.echo(b"unaffected").await;

    // A dropped player rejoins with Auto and lands on Beta; so does a newcomer.
    p1.client.join(JoinTarget::Auto).unwrap();
    let info = expect(&p1.events, "rejoined", |e| match e {
        ClientEvent::Joined { cluster, .. } => Some(cluster.clone()),
        ClientEvent::JoinFailed { reason, message } => panic!("rejoin failed: {reason} {message}"),
        _ => None,
    })
    .await;
    assert_eq!(info.id, b_id);
    assert_ne!(info.id, a_id);
    p1.echo(b"after").await;
    let p4 = join(&master, "four", JoinTarget::Auto).await;
    assert_eq!(p4.cluster.id, b_id);
    p4.echo(b"newcomer").await;

    assert_eq!(panics(), 0);
    b.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn a_silent_cluster_is_dropped_after_its_timeout() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let master = start_master(&keys).await;

    // Register by hand, then say nothing more.
    let mut raw = Raw::connect(master.addr).await;
    let (init, hello) =
        ClusterInitiator::start("alpha", keys["alpha"].clone(), &mut rand::rng()).unwrap();
    raw.send(&hello).await;
    let challenge = raw.recv().await.unwrap();
    let session = init.handle_challenge(&challenge).unwrap();
    let Raw { frames, mut wr } = raw;
    let mut writer = SealedWriter::new(&mut wr, session.sealer, 64 * 1024);
    writer.send(&hand_registration(77, "Quiet")).await.unwrap();
    let mut reader = SealedReader::new(frames, session.opener, 0);
    let first = reader.recv::<MasterToCluster>().await.unwrap();
    assert_eq!(first, Some(MasterToCluster::Registered { cluster_id: 77 }));
    let list = wait_for_list(&master, "the quiet cluster", |l| l.len() == 1).await;
    assert_eq!(list[0].name, "Quiet");

    // Silence: the master pings, gets nothing back, drops the cluster from
    // the list and closes the link.
    let list = wait_for_list(&master, "no cluster", |l| l.is_empty()).await;
    assert!(list.is_empty());
    let closed = tokio::time::timeout(GUARD, async {
        loop {
            match reader.recv::<MasterToCluster>().await {
                Ok(Some(MasterToCluster::Ping(_))) => {}
                Ok(None) | Err(_) => return None,
                Ok(Some(other)) => return Some(other),
            }
        }
    })
    .await
    .expect("the master never closed the silent cluster's link");
    assert_eq!(closed, None, "the master said something unexpected");
    master.stop().await;
}

#[tokio::test]
async fn players_play_on_through_a_master_restart() {
    init_tracing();
    count_panics();
    let keys = keys(&["alpha", "beta"]);
    let master = start_master(&keys).await;
    let (addr, keypair) = (master.addr, master.keypair.clone());
    let a = start_cluster(addr, "Alpha", "alpha", keys["alpha"].clone(), 0).await;
    let b = start_cluster(addr, "Beta", "beta", keys["beta"].clone(), 0).await;
    wait_for_clusters(&master, 2).await;
    let pa = join(&master, "on-alpha", JoinTarget::Id(a.id)).await;
    let pb = join(&master, "on-beta", JoinTarget::Id(b.id)).await;

    master.kill().await;
    // A new client cannot reach the master now...
    let (c, ev) = client(&MasterInfo {
        addr,
        public: keypair.public(),
    });
    c.connect().unwrap();
    expect(&ev, "unreachable", |e| match e {
        ClientEvent::Error(sustenet_client::ClientError::MasterUnreachable { .. }) => Some(()),
        ClientEvent::MasterConnected => panic!("connected to a killed master"),
        _ => None,
    })
    .await;
    // ...but players in clusters keep playing, over a few heartbeats.
    for i in 0..5 {
        pa.echo(format!("a{i}").as_bytes()).await;
        pb.echo(format!("b{i}").as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pa.udp_up().await;

    // The master comes back on the same address with the same keys.
    let master = start_master_on(&addr.to_string(), keypair, keys.clone(), master_config()).await;
    assert_eq!(master.addr, addr);
    // Both clusters re-register, and report the players they kept.
    let list = wait_for_list(&master, "both clusters with their players", |l| {
        l.len() == 2 && l.iter().all(|c| c.players == 1)
    })
    .await;
    assert!(list.iter().any(|c| c.id == a.id) && list.iter().any(|c| c.id == b.id));
    pa.echo(b"after restart").await;
    pb.echo(b"after restart").await;

    // A new client logs in and joins.
    let pn = join(&master, "newcomer", JoinTarget::Auto).await;
    pn.echo(b"hello").await;

    assert_eq!(panics(), 0);
    a.stop().await;
    b.stop().await;
    master.stop().await;
}

#[tokio::test]
async fn a_graceful_cluster_stop_says_server_shutdown() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let master = start_master(&keys).await;
    let a = start_cluster(master.addr, "Alpha", "alpha", keys["alpha"].clone(), 0).await;
    wait_for_clusters(&master, 1).await;
    let p1 = join(&master, "one", JoinTarget::Auto).await;
    let p2 = join(&master, "two", JoinTarget::Auto).await;
    p1.echo(b"hi").await;

    a.stop().await;
    for p in [&p1, &p2] {
        let (reason, message) = p.disconnected().await;
        assert_eq!(reason, DisconnectReason::ServerShutdown, "{message}");
    }
    // The cluster said goodbye to the master too: it is gone from the list.
    wait_for_list(&master, "no cluster", |l| l.is_empty()).await;
    // And a join now says there is no cluster.
    p1.client.join(JoinTarget::Auto).unwrap();
    let reason = expect(&p1.events, "join failed", |e| match e {
        ClientEvent::JoinFailed { reason, .. } => Some(*reason),
        ClientEvent::Joined { .. } => panic!("joined a stopped cluster"),
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReason::NoCluster);
    master.stop().await;
}
