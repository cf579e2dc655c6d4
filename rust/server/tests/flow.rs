//! The basic flow on loopback: log in, list, join auto, echo on both channels.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sustenet_client::ClientEvent;
use sustenet_proto::JoinTarget;
use sustenet_server::EchoChat;

#[tokio::test]
async fn login_list_join_echo() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let master = start_master_on(
        "127.0.0.1:0",
        sustenet_proto::MasterKeypair::generate().unwrap(),
        keys.clone(),
        master_config(),
    )
    .await;
    let cluster = start_cluster(master.addr, "Alpha", "alpha", keys["alpha"].clone(), 0).await;
    wait_for_clusters(&master, 1).await;

    let (c, ev) = client(&master);
    c.login("ann", b"".to_vec()).unwrap();
    let id = expect(&ev, "login", |e| match e {
        ClientEvent::LoginSucceeded { client_id } => Some(*client_id),
        _ => None,
    })
    .await;
    c.list_clusters().unwrap();
    let list = expect(&ev, "list", |e| match e {
        ClientEvent::Clusters(l) => Some(l.clone()),
        _ => None,
    })
    .await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "Alpha");
    assert!(!list[0].locked);
    c.join(JoinTarget::Auto).unwrap();
    let (info, player) = expect(&ev, "joined", |e| match e {
        ClientEvent::Joined { cluster, player_id } => Some((cluster.clone(), *player_id)),
        _ => None,
    })
    .await;
    assert_eq!(player, id);
    assert_eq!(info.tcp_port, cluster.tcp.port());

    c.send(EchoChat::ECHO, b"reliable hello".to_vec()).unwrap();
    let p = expect(&ev, "reliable echo", |e| match e {
        ClientEvent::Packet {
            command,
            payload,
            reliable: true,
        } => Some((*command, payload.clone())),
        _ => None,
    })
    .await;
    assert_eq!(p, (EchoChat::ECHO, b"reliable hello".to_vec()));

    // The first datagrams may race the cluster learning our UDP address: retry.
    let mut got = None;
    for _ in 0..50 {
        c.send_unreliable(EchoChat::ECHO, b"unreliable hello".to_vec())
            .unwrap();
        if let Ok(Ok(ClientEvent::Packet {
            command,
            payload,
            reliable: false,
        })) = tokio::time::timeout(std::time::Duration::from_millis(100), ev.recv_async()).await
        {
            got = Some((command, payload));
            break;
        }
    }
    assert_eq!(got, Some((EchoChat::ECHO, b"unreliable hello".to_vec())));
    c.disconnect().unwrap();
    cluster.stop().await;
    master.stop().await;
}
