//! Proves on stable Rust that the fuzz target bodies hold on random and on near-valid inputs: the same code libFuzzer runs on nightly, driven by proptest instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::collection::vec;
use proptest::prelude::*;
use sustenet_proto::datagram::Record;
use sustenet_proto::handshake::{HelloKind, encode_handshake_frame, reject_frame};
use sustenet_proto::{
    ClientToCluster, ClientToMaster, ClusterToClient, ClusterToMaster, DisconnectReason, Goodbye,
    MAGIC, Message, PROTOCOL_VERSION,
};

/// Random bytes, and bytes that start like the real thing so the bodies get
/// past their first check.
fn input(prefixes: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(prefixes),
        vec(any::<u8>(), 0..600),
        any::<bool>(),
    )
        .prop_map(|(p, tail, use_prefix)| {
            if use_prefix {
                let mut v = p;
                v.extend(tail);
                v
            } else {
                tail
            }
        })
}

/// Well-formed encodings with one byte changed: the inputs a fuzzer reaches
/// after a few mutations of a seed corpus.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(seeds),
        any::<proptest::sample::Index>(),
        any::<u8>(),
        0usize..3,
    )
        .prop_map(|(mut s, at, b, how)| {
            if s.is_empty() {
                return s;
            }
            let i = at.index(s.len());
            match how {
                0 => s[i] = b,
                1 => s.truncate(i),
                _ => s.insert(i, b),
            }
            s
        })
}

fn message_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let login = ClientToMaster::Login {
        username: "ann".into(),
        secret: b"pw".to_vec(),
    };
    seeds.push([vec![2u8], login.to_bytes().unwrap()].concat());
    let data = ClusterToClient::Data {
        command: 3,
        payload: vec![9; 40],
    };
    seeds.push([vec![5u8], data.to_bytes().unwrap()].concat());
    let bye = ClusterToClient::Disconnect(Goodbye::new(DisconnectReason::Kicked));
    seeds.push([vec![5u8], bye.to_bytes().unwrap()].concat());
    seeds
}

fn hello_seeds() -> Vec<Vec<u8>> {
    let mut noise = vec![48u8, 0];
    noise.extend([1u8; 48]);
    let mut cc = vec![20u8, 0];
    cc.extend([1u8; 20]);
    cc.extend([40u8, 0]);
    cc.extend([2u8; 40]);
    vec![
        encode_handshake_frame(PROTOCOL_VERSION, HelloKind::ClientMasterHello, &noise),
        encode_handshake_frame(PROTOCOL_VERSION, HelloKind::ClientClusterHello, &cc),
        encode_handshake_frame(PROTOCOL_VERSION, HelloKind::Challenge, &[5; 32]),
        encode_handshake_frame(PROTOCOL_VERSION, HelloKind::NoiseReply, &noise),
        reject_frame(DisconnectReason::ServerFull, "full"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn frame(data in input(vec![vec![0x00, 0x01, 7, 3, 0, 0, 0], vec![0xFF, 0xFF, 1]])) {
        sustenet_proto_fuzz::frame(&data);
    }

    #[test]
    fn frame_of_valid_streams(frames in vec(vec(any::<u8>(), 1..50), 0..20), chunk in any::<u8>()) {
        let mut data = vec![0x00, 0x01, chunk];
        for f in frames {
            data.extend((f.len() as u32).to_le_bytes());
            data.extend(f);
        }
        sustenet_proto_fuzz::frame(&data);
    }

    #[test]
    fn link_messages(data in input((0u8..6).flat_map(|w| [vec![w, 0x01], vec![w, 0x03, 7, 0, 0]]).collect())) {
        sustenet_proto_fuzz::link_messages(&data);
    }

    #[test]
    fn link_messages_near_valid(data in mutated(message_seeds())) {
        sustenet_proto_fuzz::link_messages(&data);
    }

    #[test]
    fn records(data in input(vec![vec![0x01, 0, 0, 4, 0, 1, 2, 3, 4], vec![0x02]])) {
        sustenet_proto_fuzz::records(&data);
    }

    #[test]
    fn hello(data in input(vec![MAGIC.to_vec(), [&MAGIC[..], &PROTOCOL_VERSION.to_le_bytes()].concat()])) {
        sustenet_proto_fuzz::hello(&data);
    }

    #[test]
    fn hello_near_valid(data in mutated(hello_seeds())) {
        sustenet_proto_fuzz::hello(&data);
    }

    #[test]
    fn token(data in input(vec![vec![0, 1], vec![1]])) {
        sustenet_proto_fuzz::token(&data);
    }

    #[test]
    fn sealed(data in input(vec![vec![0], vec![1, 0, 1, 0, 2, 0, 0]])) {
        sustenet_proto_fuzz::sealed(&data);
    }

    /// All-zero masks: every genuine packet must open.
    #[test]
    fn sealed_untouched(lens in vec(0u8..60, 1..10)) {
        let mut data = vec![1u8];
        for n in lens {
            data.push(n);
            data.extend(vec![0u8; usize::from(n)]);
        }
        sustenet_proto_fuzz::sealed(&data);
    }

    /// The master's directory: random scripts, and scripts made of whole
    /// steps (register, join, a cluster message) so they get deep.
    #[test]
    fn master_directory(data in vec(any::<u8>(), 0..400)) {
        sustenet_server::fuzzing::master_directory(&data);
    }

    #[test]
    fn master_directory_steps(steps in vec(directory_step(), 0..40)) {
        sustenet_server::fuzzing::master_directory(&steps.concat());
    }

    /// The cluster's core: random scripts, and scripts of whole steps.
    #[test]
    fn cluster_core(data in vec(any::<u8>(), 0..400)) {
        sustenet_server::fuzzing::cluster_core(&data);
    }

    #[test]
    fn cluster_core_steps(steps in vec(core_step(), 0..40)) {
        sustenet_server::fuzzing::cluster_core(&steps.concat());
    }
}

/// One step of `master_directory`: a registration, a join, a cluster
/// message (well-formed, with a random client id), time, a dropped link.
fn directory_step() -> impl Strategy<Value = Vec<u8>> {
    (0u8..6, 0u8..6, any::<u8>(), any::<u64>()).prop_map(|(op, id, arg, client)| match op {
        3 => {
            let msg = match arg % 3 {
                0 => ClusterToMaster::PlayerJoined {
                    client_id: client % 8,
                },
                1 => ClusterToMaster::PlayerLeft {
                    client_id: client % 8,
                },
                _ => ClusterToMaster::Transfer {
                    request_id: 1,
                    client_id: client % 8,
                    target: u64::from(arg % 6),
                    user_data: vec![],
                },
            };
            let mut m = Vec::new();
            msg.encode(&mut m).unwrap();
            let mut v = vec![op, id, u8::try_from(m.len()).unwrap()];
            v.extend(m);
            v
        }
        _ => vec![op, id, arg, arg],
    })
}

/// One step of `cluster_core`: a join, a reliable message, a datagram of
/// well-formed records, a drop, a reconnect, time.
fn core_step() -> impl Strategy<Value = Vec<u8>> {
    (0u8..7, 0u8..6, any::<u8>(), vec(any::<u8>(), 0..40)).prop_map(
        |(op, p, arg, payload)| match op {
            1 => {
                let mut m = Vec::new();
                ClientToCluster::Data {
                    command: u16::from(arg),
                    payload,
                }
                .encode(&mut m)
                .unwrap();
                let mut v = vec![op, p, u8::try_from(m.len()).unwrap()];
                v.extend(m);
                v
            }
            2 => {
                let mut b = sustenet_proto::datagram::Batch::new();
                let r = match arg % 4 {
                    0 => Record::Ping(u64::from(arg)),
                    1 => Record::PathResponse(u64::from(arg)),
                    2 => Record::Pong(1),
                    _ => Record::Data {
                        command: 1,
                        payload,
                    },
                };
                let _ = b.push(&r);
                let bytes = b.as_bytes().to_vec();
                let mut v = vec![op, p, arg, u8::try_from(bytes.len()).unwrap_or(0)];
                v.extend(bytes);
                v
            }
            _ => vec![op, p, arg, arg],
        },
    )
}
