//! A cluster's dashboard report over the master link: a real master keeps a
//! valid one, and a report that does not decode (over its fragment limit)
//! closes the link and drops the cluster from the list.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sustenet_proto::report::{ClusterReport, REPORT_CELLS_MAX, RecentDisconnect, ReportCell};
use sustenet_proto::{ClusterToMaster, DecodeError, DisconnectReason, EncodeError, Message};
use sustenet_server::MasterConfig;
use sustenet_server::metrics::MasterMetrics;

/// A report with `cells` fragments, written past the encoder's limit check.
struct Oversized(u16);

impl Message for Oversized {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(0x17);
        out.extend_from_slice(&self.0.to_le_bytes());
        for i in 0..i32::from(self.0) {
            for v in [i, 0, 0, 1] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out.push(0);
        Ok(())
    }
    fn decode(_: &[u8]) -> Result<Self, DecodeError> {
        Err(DecodeError::Invalid("only sent"))
    }
}

#[tokio::test]
async fn the_master_keeps_a_valid_report_and_drops_a_cluster_that_sends_an_oversized_one() {
    let keys = keys(&["alpha"]);
    let key = keys["alpha"].clone();
    let metrics = MasterMetrics::default();
    let master = start_master_on(
        "127.0.0.1:0",
        sustenet_proto::MasterKeypair::generate().unwrap(),
        keys,
        MasterConfig {
            metrics: metrics.clone(),
            ..master_config()
        },
    )
    .await;
    let mut c = HandCluster::register(master.addr, "alpha", key, 7).await;
    let report = ClusterReport {
        cells: vec![ReportCell {
            coords: [3, -4, 0],
            players: 2,
        }],
        disconnects: vec![RecentDisconnect {
            age_ms: 10,
            reason: DisconnectReason::Kicked,
        }],
    };
    c.writer
        .send(&ClusterToMaster::Report(report))
        .await
        .unwrap();
    // The master answers pings in order: once this one comes back, the report was taken.
    c.writer.send(&ClusterToMaster::Ping(5)).await.unwrap();
    match c.recv().await {
        sustenet_proto::MasterToCluster::Pong(5) => {}
        other => panic!("expected the pong, got {other:?}"),
    }
    let cells = metrics.reported_cells(7).unwrap();
    assert_eq!((cells[0].coords, cells[0].players), ([3, -4, 0], 2));
    assert_eq!(metrics.reported_disconnects(7)[0].1, "kicked");

    c.writer
        .send(&Oversized(REPORT_CELLS_MAX as u16 + 1))
        .await
        .unwrap();
    // Pings already on their way may come first; then the link closes.
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let m =
            tokio::time::timeout_at(deadline, c.reader.recv::<sustenet_proto::MasterToCluster>())
                .await
                .expect("the master kept the link");
        match m {
            Ok(Some(sustenet_proto::MasterToCluster::Ping(_))) => {}
            Ok(Some(other)) => panic!("expected the link to close, got {other:?}"),
            Ok(None) | Err(_) => break,
        }
    }
    wait_for_list(&master, "the cluster dropped", |l| l.is_empty()).await;
    master.stop().await;
}
