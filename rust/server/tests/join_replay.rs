//! A recorded join hello replayed against a cluster restarted with the same
//! cluster id and key (which no longer remembers the token as used): the
//! cluster's fresh nonce gives the replay keys no session had, so nothing is
//! sealed twice under one key and nonce, and the recording opens nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sustenet_proto::handshake;

#[tokio::test]
async fn a_join_replayed_to_a_restarted_cluster_gets_new_keys() {
    init_tracing();
    let keys = keys(&["alpha"]);
    let key = keys["alpha"].clone();
    let master = start_master(&keys).await;
    let config = cluster_config(master.addr, "Alpha", "alpha", 0);
    let cluster = start_cluster_with(config.clone(), key.clone()).await;
    let (token, secret) = craft_token(&key, cluster.id, 31, now_ms() + 60_000);

    // The genuine join, recorded by an eavesdropper: hello, accept, Welcome.
    let (hello, init) = handshake::client_cluster_hello(&token, &secret).unwrap();
    let mut genuine = Raw::connect(cluster.tcp).await;
    genuine.send(&hello).await;
    let accept1 = genuine.recv().await.unwrap();
    let welcome1 = genuine.recv().await.unwrap();
    let (_, mut session1) = init.handle_accept(&accept1).unwrap();
    assert!(session1.opener.open(&welcome1).is_ok());

    // The cluster restarts with the same id and key.
    drop(genuine);
    cluster.stop().await;
    let restarted = start_cluster_with(config, key.clone()).await;

    // The hello replayed: the cluster cannot tell, but answers with a new nonce.
    let mut replay = Raw::connect(restarted.tcp).await;
    replay.send(&hello).await;
    let accept2 = replay.recv().await.unwrap();
    let welcome2 = replay.recv().await.unwrap();
    assert_ne!(accept1, accept2, "the cluster's nonce repeats");
    assert_eq!(welcome1[..8], welcome2[..8], "both Welcomes are sequence 0");
    // Sealed under other keys: the first session's keys do not open it.
    let (_, mut first_keys) = handshake::client_cluster_hello(&token, &secret)
        .unwrap()
        .1
        .handle_accept(&accept1)
        .unwrap();
    assert!(
        first_keys.opener.open(&welcome2).is_err(),
        "the replay's Welcome is sealed under the first session's key"
    );
    restarted.stop().await;
    master.stop().await;
}
