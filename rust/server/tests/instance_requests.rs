//! Only clusters (and the operator, with the admin key) may ask the master
//! for an instance: a client's spawn request, in a cluster's or an admin's
//! encoding, ends its session with `ProtocolViolation`, and a cluster's
//! request for a template no agent offers is answered `InstanceFailed`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sustenet_net::{SealedReader, SealedWriter};
use sustenet_proto::handshake::ClusterInitiator;
use sustenet_proto::instance::AdminToMaster;
use sustenet_proto::{
    ClientToMaster, ClusterToMaster, DisconnectReason, MasterToClient, MasterToCluster,
};

#[tokio::test]
async fn a_client_cannot_ask_for_an_instance() {
    let keys = keys(&["alpha"]);
    let master = start_master(&keys).await;
    let spawns = [
        sustenet_proto::Message::to_bytes(&ClusterToMaster::SpawnInstance {
            request_id: 1,
            template: "dungeon".into(),
            params: vec![],
            stop_when_empty_sec: 0,
        })
        .unwrap(),
        sustenet_proto::Message::to_bytes(&AdminToMaster::Spawn {
            request_id: 1,
            template: "dungeon".into(),
            params: vec![],
            stop_when_empty_sec: 0,
        })
        .unwrap(),
    ];
    for bytes in spawns {
        let mut m = RawMasterClient::connect(master.addr, &master.keypair.public())
            .await
            .unwrap();
        m.writer
            .send(&ClientToMaster::Login {
                username: "ann".into(),
                secret: Vec::new(),
            })
            .await
            .unwrap();
        assert!(matches!(m.recv().await, MasterToClient::LoginOk { .. }));
        m.writer.send(&Bytes(bytes)).await.unwrap();
        match m.recv().await {
            MasterToClient::Disconnect(g) => {
                assert_eq!(g.reason, DisconnectReason::ProtocolViolation)
            }
            other => panic!("expected a goodbye, got {other:?}"),
        }
    }
    master.stop().await;
}

#[tokio::test]
async fn a_cluster_request_for_a_template_no_agent_offers_fails_at_once() {
    let keys = keys(&["alpha"]);
    let master = start_master(&keys).await;
    let (init, hello) =
        ClusterInitiator::start("alpha", keys["alpha"].clone(), &mut rand::rng()).unwrap();
    let mut raw = Raw::connect(master.addr).await;
    raw.send(&hello).await;
    let challenge = raw.recv().await.unwrap();
    let session = init.handle_challenge(&challenge).unwrap();
    let mut writer = SealedWriter::new(raw.wr, session.sealer, 64 * 1024);
    let mut reader = SealedReader::new(raw.frames, session.opener, 0);
    writer.send(&hand_registration(5, "hub")).await.unwrap();
    assert_eq!(
        reader.recv::<MasterToCluster>().await.unwrap(),
        Some(MasterToCluster::Registered { cluster_id: 5 })
    );
    writer
        .send(&ClusterToMaster::SpawnInstance {
            request_id: 42,
            template: "dungeon".into(),
            params: vec![("scene".into(), "crypt".into())],
            stop_when_empty_sec: 30,
        })
        .await
        .unwrap();
    loop {
        match reader.recv::<MasterToCluster>().await.unwrap() {
            Some(MasterToCluster::InstanceFailed { request_id, reason }) => {
                assert_eq!(request_id, 42);
                assert_eq!(reason.reason, DisconnectReason::NoCluster);
                assert!(reason.message.contains("dungeon"), "{}", reason.message);
                break;
            }
            Some(MasterToCluster::Ping(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    master.stop().await;
}

/// Sends bytes as a sealed message, whatever they are.
struct Bytes(Vec<u8>);

impl sustenet_proto::Message for Bytes {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), sustenet_proto::EncodeError> {
        out.extend_from_slice(&self.0);
        Ok(())
    }
    fn decode(bytes: &[u8]) -> Result<Self, sustenet_proto::DecodeError> {
        Ok(Bytes(bytes.to_vec()))
    }
}
