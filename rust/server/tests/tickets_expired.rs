//! The master counts tickets that expire unused, by kind, and exports them
//! beside issued and used: a real master on loopback with a one-second token
//! lifetime, two clusters registered by hand, a join ticket never used, a
//! used one, and a transfer ticket the target cluster never sees used.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use prometheus_client::registry::Registry;
use sustenet_proto::{ClusterToMaster, JoinTarget, MasterToCluster};
use sustenet_server::MasterConfig;
use sustenet_server::metrics::MasterMetrics;

/// The value of the sample `name` (with its labels, as the text format
/// writes them) in the registry's text exposition, or 0 if it is absent.
fn sample(registry: &Registry, name: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn an_unused_ticket_shows_up_as_expired_after_its_lifetime() {
    let keys = keys(&["alpha"]);
    let key = keys["alpha"].clone();
    let metrics = MasterMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let master = start_master_on(
        "127.0.0.1:0",
        sustenet_proto::MasterKeypair::generate().unwrap(),
        keys,
        MasterConfig {
            token_ttl: Duration::from_secs(1),
            metrics,
            ..master_config()
        },
    )
    .await;
    let expired_join = "sustenet_master_tickets_expired_total{kind=\"join\"}";
    let expired_transfer = "sustenet_master_tickets_expired_total{kind=\"transfer\"}";
    // Both series exist at 0 before any ticket.
    assert!(
        {
            let mut t = String::new();
            prometheus_client::encoding::text::encode(&mut t, &registry).unwrap();
            t.contains(&format!("{expired_join} 0")) && t.contains(&format!("{expired_transfer} 0"))
        },
        "the expired series are not there from the start"
    );
    let mut one = HandCluster::register(master.addr, "alpha", key.clone(), 1).await;
    let _two = HandCluster::register(master.addr, "alpha", key, 2).await;

    // ann joins cluster 1 with her ticket, then cluster 1 asks to move her
    // to cluster 2, which never reports her: the transfer ticket expires.
    let mut ann = RawMasterClient::connect(master.addr, &master.keypair.public())
        .await
        .unwrap();
    let ann_id = ann.login("ann").await;
    ann.join(JoinTarget::Id(1)).await.unwrap();
    one.writer
        .send(&ClusterToMaster::PlayerJoined { client_id: ann_id })
        .await
        .unwrap();
    match one.transfer(ann_id, 2).await {
        MasterToCluster::TransferReady { .. } => {}
        other => panic!("expected a transfer ticket, got {other:?}"),
    }
    // bob takes a ticket and never uses it.
    let mut bob = RawMasterClient::connect(master.addr, &master.keypair.public())
        .await
        .unwrap();
    bob.login("bob").await;
    bob.join(JoinTarget::Id(1)).await.unwrap();

    // Counted within a second after the lifetime; the guard only bounds a hang.
    let deadline = tokio::time::Instant::now() + GUARD;
    while sample(&registry, expired_join) < 1.0 || sample(&registry, expired_transfer) < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no expired tickets counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let join_issued = "sustenet_master_tickets_issued_total{kind=\"join\"}";
    let transfer_issued = "sustenet_master_tickets_issued_total{kind=\"transfer\"}";
    assert_eq!(sample(&registry, join_issued), 2.0);
    assert_eq!(sample(&registry, transfer_issued), 1.0);
    assert_eq!(sample(&registry, "sustenet_master_tickets_used_total"), 1.0);
    // Each is counted once: a few samples later, still one of each.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(sample(&registry, expired_join), 1.0);
    assert_eq!(sample(&registry, expired_transfer), 1.0);
    master.stop().await;
}
