//! The instance messages in memory: every message round-trips and a cut one
//! is refused, parameters are checked both ways, and the links do not mix.

use super::*;
use crate::reason::DisconnectReason;

fn round_trip<M: Message + PartialEq + std::fmt::Debug>(m: M) {
    let bytes = m.to_bytes().unwrap();
    assert_eq!(M::decode(&bytes).unwrap(), m);
    for cut in 0..bytes.len() {
        assert!(M::decode(&bytes[..cut]).is_err(), "{m:?} cut at {cut}");
    }
}

#[test]
fn every_message_round_trips_and_truncation_is_refused() {
    let params: Params = vec![
        ("scene".into(), "crypt".into()),
        ("party".into(), "3".into()),
    ];
    round_trip(AgentToMaster::Register(AgentRegister {
        name: "box-1".into(),
        capacity: 20,
        port_first: 7000,
        port_last: 7099,
        templates: vec![TemplateOffer {
            name: "dungeon".into(),
            max: 5,
        }],
    }));
    round_trip(AgentToMaster::Load { running: 3 });
    round_trip(AgentToMaster::Started {
        instance_id: 9,
        port: 7001,
    });
    round_trip(AgentToMaster::Exited {
        instance_id: 9,
        code: -1,
        restarting: true,
        stderr_tail: "boom\n".into(),
    });
    round_trip(MasterToAgent::Registered);
    round_trip(MasterToAgent::Spawn {
        instance_id: 4,
        template: "dungeon".into(),
        params: params.clone(),
        key_name: "instance-4".into(),
        key: [7; 32],
    });
    round_trip(MasterToAgent::Stop { instance_id: 4 });
    round_trip(AdminToMaster::List);
    round_trip(AdminToMaster::Spawn {
        request_id: 1,
        template: "dungeon".into(),
        params,
        stop_when_empty_sec: 30,
    });
    round_trip(AdminToMaster::Stop { instance_id: 2 });
    round_trip(MasterToAdmin::List(vec![InstanceInfo {
        id: 1,
        template: "dungeon".into(),
        agent: "box-1".into(),
        state: InstanceState::Ready,
        cluster_id: 77,
        port: 7000,
        players: 2,
    }]));
    round_trip(MasterToAdmin::SpawnAccepted {
        request_id: 1,
        instance_id: 2,
        agent: "box-1".into(),
    });
    round_trip(MasterToAdmin::Ready {
        request_id: 1,
        instance_id: 2,
        cluster_id: 3,
    });
    round_trip(MasterToAdmin::Failed {
        request_id: 1,
        reason: Goodbye::new(DisconnectReason::Timeout),
    });
    round_trip(MasterToAdmin::Stopping { instance_id: 5 });
    round_trip(MasterToAdmin::StopFailed {
        instance_id: 5,
        reason: Goodbye::new(DisconnectReason::NoCluster),
    });
}

#[test]
fn too_many_params_are_refused_both_ways() {
    let many: Params = (0..=PARAMS_MAX)
        .map(|i| (format!("p{i}"), "v".into()))
        .collect();
    assert!(check_params(&many).is_err());
    let msg = AdminToMaster::Spawn {
        request_id: 1,
        template: "t".into(),
        params: many,
        stop_when_empty_sec: 0,
    };
    assert!(msg.to_bytes().is_err());
    // A hand-made frame claiming 17 parameters.
    let mut bytes = vec![itag::ADMIN_SPAWN];
    bytes.extend_from_slice(&1u64.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.push(b't');
    bytes.push(PARAMS_MAX as u8 + 1);
    assert!(AdminToMaster::decode(&bytes).is_err());
}

#[test]
fn parameter_names_and_values_are_checked() {
    assert!(check_params(&vec![("scene".into(), "crypt".into())]).is_ok());
    assert!(check_params(&vec![("sc ene".into(), "x".into())]).is_err());
    assert!(check_params(&vec![("".into(), "x".into())]).is_err());
    assert!(check_params(&vec![("s".into(), "a\nb".into())]).is_err());
    assert!(check_params(&vec![("s".into(), "x".repeat(PARAM_VALUE_MAX + 1))]).is_err());
}

#[test]
fn cluster_instance_requests_round_trip() {
    round_trip(crate::ClusterToMaster::SpawnInstance {
        request_id: 3,
        template: "dungeon".into(),
        params: vec![("scene".into(), "crypt".into())],
        stop_when_empty_sec: 20,
    });
    round_trip(crate::MasterToCluster::InstanceReady {
        request_id: 3,
        cluster_id: 99,
    });
    round_trip(crate::MasterToCluster::InstanceFailed {
        request_id: 3,
        reason: Goodbye::new(DisconnectReason::ServerFull),
    });
}

#[test]
fn an_agent_message_is_not_a_cluster_message() {
    let bytes = AgentToMaster::Load { running: 1 }.to_bytes().unwrap();
    assert!(crate::ClusterToMaster::decode(&bytes).is_err());
}
