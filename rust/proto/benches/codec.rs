//! Measures the per-message cost of the protocol: encode+seal and open+decode on the reliable and unreliable channels, frames per second through the frame decoder, connect tokens, and the three handshakes.
// A benchmark that hits an error has measured nothing; stopping it is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sustenet_proto::datagram::{self, MAX_UNRELIABLE_PAYLOAD, Record, decode_records};
use sustenet_proto::handshake::{
    ClientMasterInitiator, ClusterInitiator, Hello, accept_client, client_cluster_hello,
    parse_hello, respond_client_master, respond_cluster,
};
use sustenet_proto::{
    ClientSessionKeys, ClientToCluster, ClusterToClient, ConnectToken, DEFAULT_MAX_FRAME,
    FrameDecoder, Key, MasterKeypair, Message, Side, UsedTokens, encode_frame,
};

const RELIABLE_SIZES: [usize; 3] = [64, 200, 1200];
/// 1200 bytes do not fit one datagram; the top size is the largest that does.
const UNRELIABLE_SIZES: [usize; 3] = [64, 200, MAX_UNRELIABLE_PAYLOAD];

fn keys() -> ClientSessionKeys {
    ClientSessionKeys::derive(&[42; 32], &[7; 32]).unwrap()
}

fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream");
    for size in RELIABLE_SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let payload = vec![0xA5u8; size];

        let mut client = keys().stream(Side::Initiator);
        g.bench_with_input(
            BenchmarkId::new("encode_seal_client_data", size),
            &payload,
            |b, p| {
                b.iter(|| {
                    let msg = ClientToCluster::Data {
                        command: 7,
                        payload: p.clone(),
                    };
                    let plain = msg.to_bytes().unwrap();
                    client.sealer.seal(black_box(&plain)).unwrap()
                })
            },
        );

        // The opener refuses a sequence number twice, so every iteration
        // gets a freshly sealed packet; batches are sealed in order, so they
        // are opened in order.
        let mut client = keys().stream(Side::Initiator);
        let mut cluster = keys().stream(Side::Responder);
        let msg = ClientToCluster::Data {
            command: 7,
            payload: payload.clone(),
        };
        let plain = msg.to_bytes().unwrap();
        g.bench_function(BenchmarkId::new("open_decode_client_data", size), |b| {
            b.iter_batched(
                || client.sealer.seal(&plain).unwrap(),
                |packet| {
                    let plain = cluster.opener.open(&packet).unwrap();
                    ClientToCluster::decode(&plain).unwrap()
                },
                BatchSize::SmallInput,
            )
        });

        let mut cluster = keys().stream(Side::Responder);
        g.bench_with_input(
            BenchmarkId::new("encode_seal_cluster_data", size),
            &payload,
            |b, p| {
                b.iter(|| {
                    let msg = ClusterToClient::Data {
                        command: 7,
                        payload: p.clone(),
                    };
                    let plain = msg.to_bytes().unwrap();
                    cluster.sealer.seal(black_box(&plain)).unwrap()
                })
            },
        );

        let mut client = keys().stream(Side::Initiator);
        let mut cluster = keys().stream(Side::Responder);
        let plain = ClusterToClient::Data {
            command: 7,
            payload: payload.clone(),
        }
        .to_bytes()
        .unwrap();
        g.bench_function(BenchmarkId::new("open_decode_cluster_data", size), |b| {
            b.iter_batched(
                || cluster.sealer.seal(&plain).unwrap(),
                |packet| {
                    let plain = client.opener.open(&packet).unwrap();
                    ClusterToClient::decode(&plain).unwrap()
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn datagrams(c: &mut Criterion) {
    let mut g = c.benchmark_group("datagram");
    for size in UNRELIABLE_SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let payload = vec![0x5Au8; size];

        let mut client = keys().datagram(Side::Initiator, 1);
        g.bench_with_input(
            BenchmarkId::new("encode_seal_data", size),
            &payload,
            |b, p| {
                b.iter(|| {
                    let rec = Record::Data {
                        command: 7,
                        payload: p.clone(),
                    };
                    let plain = datagram::single(&rec).unwrap();
                    client.sealer.seal(black_box(&plain)).unwrap()
                })
            },
        );

        let mut client = keys().datagram(Side::Initiator, 1);
        let mut cluster = keys().datagram(Side::Responder, 1);
        let plain = datagram::single(&Record::Data {
            command: 7,
            payload: payload.clone(),
        })
        .unwrap();
        g.bench_function(BenchmarkId::new("open_decode_data", size), |b| {
            b.iter_batched(
                || client.sealer.seal(&plain).unwrap(),
                |d| {
                    let plain = cluster.opener.open(&d).unwrap();
                    decode_records(&plain).unwrap()
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn frames(c: &mut Criterion) {
    const FRAMES: usize = 10_000;
    let mut wire = BytesMut::new();
    for _ in 0..FRAMES {
        encode_frame(&[0x11; 64], DEFAULT_MAX_FRAME, &mut wire).unwrap();
    }
    let d = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(FRAMES as u64));
    g.bench_function("decode_10000x64B", |b| {
        b.iter_batched(
            || wire.clone(),
            |mut buf| {
                let mut n = 0;
                while let Some(f) = d.decode(&mut buf).unwrap() {
                    n += f.len();
                }
                assert_eq!(n, FRAMES * 64);
                buf
            },
            BatchSize::LargeInput,
        )
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_64B", |b| {
        let mut out = BytesMut::with_capacity(128);
        b.iter(|| {
            out.clear();
            encode_frame(black_box(&[0x11; 64]), DEFAULT_MAX_FRAME, &mut out).unwrap();
        })
    });
    g.finish();
}

fn sample_token() -> ConnectToken {
    ConnectToken {
        client_id: 1,
        cluster_id: 2,
        token_id: [3; 16],
        expires_at_ms: u64::MAX,
        session_secret: [4; 32].into(),
        user_data: b"player-name".to_vec(),
    }
}

fn tokens(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let key = Key::generate(&mut rng);
    let token = sample_token();
    let sealed = token.seal(&key, &mut rng).unwrap();
    let mut g = c.benchmark_group("token");
    g.bench_function("seal", |b| b.iter(|| token.seal(&key, &mut rng).unwrap()));
    g.bench_function("open", |b| {
        b.iter(|| ConnectToken::open(black_box(&sealed), &key, 2, 0).unwrap())
    });
    g.finish();
}

fn handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    let mut rng = StdRng::seed_from_u64(2);
    let cluster_key = Key::generate(&mut rng);

    // Both sides, up to the master opening the registration.
    g.bench_function("cluster_master", |b| {
        b.iter(|| {
            let (init, hello) =
                ClusterInitiator::start("bench", cluster_key.clone(), &mut rng).unwrap();
            let Hello::Cluster { key_name, nonce } = parse_hello(&hello).unwrap() else {
                panic!("not a cluster hello")
            };
            let (mut master, challenge) =
                respond_cluster(Some(&cluster_key), &key_name, &nonce, &mut rng).unwrap();
            let mut cluster = init.handle_challenge(&challenge).unwrap();
            let reg = cluster.sealer.seal(b"register").unwrap();
            master.opener.open(&reg).unwrap()
        })
    });

    let kp = MasterKeypair::generate().unwrap();
    let public = kp.public();
    g.bench_function("client_master", |b| {
        b.iter(|| {
            let (init, hello) = ClientMasterInitiator::start(&public).unwrap();
            let Hello::ClientMaster { noise } = parse_hello(&hello).unwrap() else {
                panic!("not a client-master hello")
            };
            let (master, reply) = respond_client_master(&kp, &noise).unwrap();
            (init.handle_reply(&reply).unwrap(), master)
        })
    });

    let sealed = sample_token().seal(&cluster_key, &mut rng).unwrap();
    let secret = *sample_token().session_secret;
    g.bench_function("client_cluster", |b| {
        b.iter(|| {
            let (hello, _client) = client_cluster_hello(&sealed, &secret).unwrap();
            let Hello::ClientCluster { token, proof } = parse_hello(&hello).unwrap() else {
                panic!("not a client-cluster hello")
            };
            // A fresh used-token set per connection: the same token is reused on purpose.
            let mut used = UsedTokens::new();
            accept_client(&token, &proof, &cluster_key, 2, 0, &mut used, &mut rng).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, stream, datagrams, frames, tokens, handshakes);
criterion_main!(benches);
