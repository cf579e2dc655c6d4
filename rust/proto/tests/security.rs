//! Proves, in memory with seeded randomness, that forged, tampered, expired, misdirected, reused or replayed tokens, packets, datagrams and handshakes are refused with the exact reason, counted, and do not disturb the genuine traffic that follows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use sustenet_proto::crypto::{
    DATAGRAM_HEADER, DATAGRAM_OVERHEAD, DatagramOpener, DatagramSealer, SEQ_LEN, StreamOpener,
    StreamSealer, TAG_LEN, datagram_session_id,
};
use sustenet_proto::handshake::{
    ClientMasterInitiator, ClusterAccept, ClusterInitiator, Hello, HelloKind, accept_client,
    check_refusal, client_cluster_hello, encode_handshake_frame, parse_hello, reject_frame,
    respond_client_master, respond_cluster,
};
use sustenet_proto::{
    ClientSessionKeys, ConnectToken, CryptoError, DisconnectReason, HandshakeError, Key,
    MasterKeypair, OpenStats, PROTOCOL_VERSION, Side, StreamSession, TokenError, UsedTokens,
};

const CLUSTER_ID: u64 = 0x5EED_C1A5;
const EXPIRES: u64 = 1_000_000;
const NOW: u64 = 500_000;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn token(rng: &mut StdRng) -> ConnectToken {
    ConnectToken {
        client_id: rng.random(),
        cluster_id: CLUSTER_ID,
        token_id: rng.random(),
        expires_at_ms: EXPIRES,
        session_secret: rng.random::<[u8; 32]>().into(),
        user_data: b"handoff state".to_vec(),
    }
}

/// Everything a client gets from the master for one cluster: the sealed
/// token and its session secret.
struct Issued {
    cluster_key: Key,
    token: ConnectToken,
    sealed: Vec<u8>,
    keys: [u8; 32],
}

/// Session keys from a random secret and a fixed cluster nonce.
fn session_keys(secret: &[u8; 32]) -> ClientSessionKeys {
    ClientSessionKeys::derive(secret, &[0x33; 32]).unwrap()
}

fn issue(seed: u64) -> Issued {
    let mut rng = rng(seed);
    let cluster_key = Key::generate(&mut rng);
    let token = token(&mut rng);
    let sealed = token.seal(&cluster_key, &mut rng).unwrap();
    let keys = *token.session_secret;
    Issued {
        cluster_key,
        token,
        sealed,
        keys,
    }
}

/// The client's hello to the cluster, as the cluster parses it.
fn hello_parts(sealed: &[u8], keys: &[u8; 32]) -> (Vec<u8>, Vec<u8>) {
    let (hello, _) = client_cluster_hello(sealed, keys).unwrap();
    match parse_hello(&hello).unwrap() {
        Hello::ClientCluster { token, proof } => (token, proof),
        other => panic!("wrong hello {other:?}"),
    }
}

fn accept(
    i: &Issued,
    token: &[u8],
    proof: &[u8],
    now: u64,
    used: &mut UsedTokens,
) -> Result<ClusterAccept, HandshakeError> {
    accept_client(
        token,
        proof,
        &i.cluster_key,
        CLUSTER_ID,
        now,
        used,
        &mut rng(99),
    )
}

// ---------------------------------------------------------------- tokens

#[test]
fn forged_tokens_are_invalid() {
    let i = issue(1);
    let mut rng = rng(2);
    for len in 0..400 {
        let mut forged = vec![0u8; len];
        rng.fill_bytes(&mut forged);
        // Half of them carry the right format byte so they reach AES-GCM.
        if len > 0 && len % 2 == 0 {
            forged[0] = sustenet_proto::token::TOKEN_FORMAT;
        }
        assert_eq!(
            ConnectToken::open(&forged, &i.cluster_key, CLUSTER_ID, NOW),
            Err(TokenError::Invalid),
            "length {len}"
        );
    }
}

#[test]
fn every_bit_flip_and_every_cut_makes_a_token_invalid() {
    let i = issue(3);
    assert_eq!(
        ConnectToken::open(&i.sealed, &i.cluster_key, CLUSTER_ID, NOW).unwrap(),
        i.token
    );
    for at in 0..i.sealed.len() {
        for bit in 0..8 {
            let mut bad = i.sealed.clone();
            bad[at] ^= 1 << bit;
            assert_eq!(
                ConnectToken::open(&bad, &i.cluster_key, CLUSTER_ID, NOW),
                Err(TokenError::Invalid),
                "byte {at} bit {bit}"
            );
        }
        assert_eq!(
            ConnectToken::open(&i.sealed[..at], &i.cluster_key, CLUSTER_ID, NOW),
            Err(TokenError::Invalid),
            "cut at {at}"
        );
    }
    let mut longer = i.sealed.clone();
    longer.push(0);
    assert_eq!(
        ConnectToken::open(&longer, &i.cluster_key, CLUSTER_ID, NOW),
        Err(TokenError::Invalid)
    );
}

#[test]
fn token_for_a_cluster_with_another_key_is_invalid() {
    let i = issue(4);
    let other = Key::generate(&mut rng(5));
    assert_eq!(
        ConnectToken::open(&i.sealed, &other, CLUSTER_ID, NOW),
        Err(TokenError::Invalid)
    );
    let (token, proof) = hello_parts(&i.sealed, &i.keys);
    let e = accept_client(
        &token,
        &proof,
        &other,
        CLUSTER_ID,
        NOW,
        &mut UsedTokens::new(),
        &mut rng(98),
    )
    .unwrap_err();
    assert_eq!(e, HandshakeError::Token(TokenError::Invalid));
    assert_eq!(e.reason(), DisconnectReason::TokenInvalid);
}

#[test]
fn expired_token_is_refused_from_its_expiry_on() {
    let i = issue(6);
    let (token, proof) = hello_parts(&i.sealed, &i.keys);
    for now in [EXPIRES, EXPIRES + 1, u64::MAX] {
        assert_eq!(
            ConnectToken::open(&i.sealed, &i.cluster_key, CLUSTER_ID, now),
            Err(TokenError::Expired)
        );
        let e = accept(&i, &token, &proof, now, &mut UsedTokens::new()).unwrap_err();
        assert_eq!(e, HandshakeError::Token(TokenError::Expired));
        assert_eq!(e.reason(), DisconnectReason::TokenExpired);
    }
    assert!(accept(&i, &token, &proof, EXPIRES - 1, &mut UsedTokens::new()).is_ok());
}

#[test]
fn token_for_another_cluster_is_refused() {
    let i = issue(7);
    let (token, proof) = hello_parts(&i.sealed, &i.keys);
    // Clusters may share a key; the id inside the token still pins one cluster.
    assert_eq!(
        ConnectToken::open(&i.sealed, &i.cluster_key, CLUSTER_ID + 1, NOW),
        Err(TokenError::WrongCluster)
    );
    let e = accept_client(
        &token,
        &proof,
        &i.cluster_key,
        CLUSTER_ID + 1,
        NOW,
        &mut UsedTokens::new(),
        &mut rng(98),
    )
    .unwrap_err();
    assert_eq!(e, HandshakeError::Token(TokenError::WrongCluster));
    assert_eq!(e.reason(), DisconnectReason::TokenWrongCluster);
}

#[test]
fn token_is_single_use_and_a_thief_cannot_burn_it() {
    let i = issue(8);
    let (token, proof) = hello_parts(&i.sealed, &i.keys);
    let mut used = UsedTokens::new();

    // Someone who copied the token off the wire has no session keys.
    let thief_keys: [u8; 32] = rng(9).random();
    let (_, thief_proof) = hello_parts(&i.sealed, &thief_keys);
    let e = accept(&i, &token, &thief_proof, NOW, &mut used).unwrap_err();
    assert_eq!(e, HandshakeError::AuthenticationFailed);
    assert_eq!(e.reason(), DisconnectReason::AuthFailed);
    // A tampered proof is no better.
    for at in 0..proof.len() {
        let mut bad = proof.clone();
        bad[at] ^= 0x40;
        assert_eq!(
            accept(&i, &token, &bad, NOW, &mut used).err(),
            Some(HandshakeError::AuthenticationFailed),
            "proof byte {at}"
        );
    }
    assert!(used.is_empty());

    let ok = accept(&i, &token, &proof, NOW, &mut used).unwrap();
    assert_eq!(ok.token, i.token);

    // The whole hello replayed, later, by anyone.
    let e = accept(&i, &token, &proof, NOW + 1, &mut used).unwrap_err();
    assert_eq!(e, HandshakeError::Token(TokenError::AlreadyUsed));
    assert_eq!(e.reason(), DisconnectReason::TokenUsed);
    // Even with a fresh, valid proof from the genuine client.
    let (_, proof2) = hello_parts(&i.sealed, &i.keys);
    assert_eq!(
        accept(&i, &token, &proof2, NOW + 2, &mut used).err(),
        Some(HandshakeError::Token(TokenError::AlreadyUsed))
    );
}

#[test]
fn accepted_session_talks_both_ways() {
    let i = issue(10);
    let (hello, init) = client_cluster_hello(&i.sealed, &i.keys).unwrap();
    let Hello::ClientCluster { token, proof } = parse_hello(&hello).unwrap() else {
        panic!("not a client-cluster hello")
    };
    let accepted = accept(&i, &token, &proof, NOW, &mut UsedTokens::new()).unwrap();
    let (_, mut client) = init.handle_accept(&accepted.accept_frame).unwrap();
    let mut cluster = accepted.session;
    let p = client.sealer.seal(b"after the proof").unwrap();
    assert_eq!(cluster.opener.open(&p).unwrap(), b"after the proof");
    let q = cluster.sealer.seal(b"welcome").unwrap();
    assert_eq!(client.opener.open(&q).unwrap(), b"welcome");
}

// ---------------------------------------------------------------- streams

/// Sends `rounds` packets; before each genuine one, every single-bit flip of
/// it is offered first. Each flip is refused and counted (as stale when the
/// flip lowers the sequence number below what was accepted, as an
/// authentication failure otherwise), and the genuine packet still opens.
fn tamper_stream(sealer: &mut StreamSealer, opener: &mut StreamOpener, rounds: u64) {
    let mut want = opener.stats();
    for round in 0..rounds {
        let plain = format!("packet {round} of the stream").into_bytes();
        let seq = sealer.next_seq();
        let p = sealer.seal(&plain).unwrap();
        assert_eq!(p.len(), SEQ_LEN + plain.len() + TAG_LEN);
        for at in 0..p.len() {
            for bit in 0..8 {
                let mut bad = p.clone();
                bad[at] ^= 1 << bit;
                let got = opener.open(&bad);
                let flipped = u64::from_le_bytes(bad[..SEQ_LEN].try_into().unwrap());
                if flipped < seq {
                    assert_eq!(
                        got,
                        Err(CryptoError::Stale {
                            seq: flipped,
                            newest: seq - 1
                        })
                    );
                    want.stale += 1;
                } else {
                    assert_eq!(got, Err(CryptoError::Authentication), "byte {at} bit {bit}");
                    want.auth_failures += 1;
                }
            }
        }
        for cut in 0..p.len() {
            assert!(opener.open(&p[..cut]).is_err(), "cut {cut}");
            want.auth_failures += 1;
        }
        assert_eq!(opener.open(&p).unwrap(), plain);
        want.accepted += 1;
        assert_eq!(opener.stats(), want);
        // The same packet again is older than what was just accepted.
        assert_eq!(
            opener.open(&p),
            Err(CryptoError::Stale { seq, newest: seq })
        );
        want.stale += 1;
        assert_eq!(opener.stats(), want);
    }
}

#[test]
fn tampered_client_cluster_packets_are_refused_and_counted() {
    let keys = session_keys(&rng(11).random());
    let mut client = keys.stream(Side::Initiator);
    let mut cluster = keys.stream(Side::Responder);
    tamper_stream(&mut client.sealer, &mut cluster.opener, 4);
    tamper_stream(&mut cluster.sealer, &mut client.opener, 4);
}

fn client_master_pair() -> (StreamSession, StreamSession) {
    let kp = MasterKeypair::generate().unwrap();
    let (init, hello) = ClientMasterInitiator::start(&kp.public()).unwrap();
    let Hello::ClientMaster { noise } = parse_hello(&hello).unwrap() else {
        panic!("not a client-master hello")
    };
    let (master, reply) = respond_client_master(&kp, &noise).unwrap();
    (init.handle_reply(&reply).unwrap(), master)
}

#[test]
fn tampered_client_master_packets_are_refused_and_counted() {
    let (mut client, mut master) = client_master_pair();
    tamper_stream(&mut client.sealer, &mut master.opener, 3);
    tamper_stream(&mut master.sealer, &mut client.opener, 3);
}

fn cluster_master_pair(
    cluster_key: &Key,
    master_key: Option<&Key>,
    seed: u64,
) -> (StreamSession, StreamSession) {
    let mut rng = rng(seed);
    let (init, hello) = ClusterInitiator::start("eu-west", cluster_key.clone(), &mut rng).unwrap();
    let Hello::Cluster { key_name, nonce } = parse_hello(&hello).unwrap() else {
        panic!("not a cluster hello")
    };
    let (master, challenge) = respond_cluster(master_key, &key_name, &nonce, &mut rng).unwrap();
    (init.handle_challenge(&challenge).unwrap(), master)
}

#[test]
fn tampered_cluster_master_packets_are_refused_and_counted() {
    let key = Key::generate(&mut rng(12));
    let (mut cluster, mut master) = cluster_master_pair(&key, Some(&key), 13);
    tamper_stream(&mut cluster.sealer, &mut master.opener, 3);
    tamper_stream(&mut master.sealer, &mut cluster.opener, 3);
}

#[test]
fn stream_packets_do_not_cross_directions_or_sessions() {
    let keys = session_keys(&[1; 32]);
    let other = session_keys(&[2; 32]);
    let mut a = keys.stream(Side::Initiator);
    let mut b = other.stream(Side::Responder);
    let p = a.sealer.seal(b"x").unwrap();
    // Reflected back at its sender.
    assert_eq!(a.opener.open(&p), Err(CryptoError::Authentication));
    // Sent into another client's session.
    assert_eq!(b.opener.open(&p), Err(CryptoError::Authentication));
    let (mut c, _) = client_master_pair();
    let q = c.sealer.seal(b"y").unwrap();
    assert_eq!(c.opener.open(&q), Err(CryptoError::Authentication));
}

// ---------------------------------------------------------------- datagrams

const SESSION: u64 = 0xD47A_0001;

fn datagram_pair(seed: u64, session_id: u64) -> (DatagramSealer, DatagramOpener) {
    let keys = session_keys(&rng(seed).random());
    let a = keys.datagram(Side::Initiator, session_id);
    let b = keys.datagram(Side::Responder, session_id);
    (a.sealer, b.opener)
}

#[test]
fn replayed_datagrams_are_refused_and_counted() {
    let (mut sealer, mut opener) = datagram_pair(14, SESSION);
    let sent: Vec<Vec<u8>> = (0..50u8).map(|n| sealer.seal(&[n; 20]).unwrap()).collect();
    for (n, d) in sent.iter().enumerate() {
        assert_eq!(opener.open(d).unwrap(), vec![n as u8; 20]);
    }
    for (n, d) in sent.iter().enumerate() {
        assert_eq!(opener.open(d), Err(CryptoError::Replay(n as u64)));
    }
    let st = opener.stats();
    assert_eq!(
        (st.accepted, st.replays, st.auth_failures, st.stale),
        (50, 50, 0, 0)
    );
    // Genuine traffic goes on.
    let next = sealer.seal(b"next").unwrap();
    assert_eq!(opener.open(&next).unwrap(), b"next");
}

#[test]
fn tampered_datagrams_are_refused_and_counted() {
    let (mut sealer, mut opener) = datagram_pair(15, SESSION);
    let mut want = OpenStats::default();
    for round in 0..4u64 {
        let plain = format!("datagram {round}").into_bytes();
        let d = sealer.seal(&plain).unwrap();
        assert_eq!(d.len(), DATAGRAM_OVERHEAD + plain.len());
        for at in 0..d.len() {
            for bit in 0..8 {
                let mut bad = d.clone();
                bad[at] ^= 1 << bit;
                let got = opener.open(&bad);
                let seq = u64::from_le_bytes(bad[9..DATAGRAM_HEADER].try_into().unwrap());
                if (9..DATAGRAM_HEADER).contains(&at) && seq < round {
                    // Flipped onto a number already delivered: the window
                    // refuses it before spending an AES-GCM open on it.
                    assert_eq!(got, Err(CryptoError::Replay(seq)), "byte {at} bit {bit}");
                    want.replays += 1;
                } else {
                    assert_eq!(got, Err(CryptoError::Authentication), "byte {at} bit {bit}");
                    want.auth_failures += 1;
                }
            }
        }
        for cut in 0..d.len() {
            let want_err = if cut < DATAGRAM_OVERHEAD {
                CryptoError::TooShort
            } else {
                CryptoError::Authentication
            };
            assert_eq!(opener.open(&d[..cut]), Err(want_err), "cut {cut}");
            want.auth_failures += 1;
        }
        assert_eq!(opener.open(&d).unwrap(), plain);
        want.accepted += 1;
        assert_eq!(opener.stats(), want);
    }
}

/// A forged sequence number far ahead must not move the window: the genuine
/// datagrams it would have pushed out still open.
#[test]
fn forged_sequence_numbers_do_not_move_the_window() {
    let (mut sealer, mut opener) = datagram_pair(16, SESSION);
    let d0 = sealer.seal(b"0").unwrap();
    let d1 = sealer.seal(b"1").unwrap();
    let mut forged = d1.clone();
    forged[9..DATAGRAM_HEADER].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert_eq!(opener.open(&forged), Err(CryptoError::Authentication));
    assert_eq!(opener.open(&d0).unwrap(), b"0");
    assert_eq!(opener.open(&d1).unwrap(), b"1");
}

#[test]
fn datagrams_of_another_session_are_refused() {
    let seed = 17;
    let keys = session_keys(&rng(seed).random());
    let mut mine = keys.datagram(Side::Responder, SESSION);
    // Same keys, another session id (a stale session after a reconnect).
    let mut theirs = keys.datagram(Side::Initiator, SESSION + 1);
    let d = theirs.sealer.seal(b"hello").unwrap();
    assert_eq!(datagram_session_id(&d), Some(SESSION + 1));
    assert_eq!(mine.opener.open(&d), Err(CryptoError::Authentication));
    // Rewriting the id does not help: the header is authenticated.
    let mut relabeled = d.clone();
    relabeled[1..9].copy_from_slice(&SESSION.to_le_bytes());
    assert_eq!(
        mine.opener.open(&relabeled),
        Err(CryptoError::Authentication)
    );
    // Another client's keys under this session id.
    let (mut stranger, _) = datagram_pair(seed + 1, SESSION);
    let s = stranger.seal(b"hello").unwrap();
    assert_eq!(mine.opener.open(&s), Err(CryptoError::Authentication));
    // Reflected back at its sender.
    let mut me = keys.datagram(Side::Initiator, SESSION);
    let own = me.sealer.seal(b"echo").unwrap();
    assert_eq!(me.opener.open(&own), Err(CryptoError::Authentication));
    assert_eq!(mine.opener.stats().auth_failures, 3);
    assert_eq!(mine.opener.stats().accepted, 0);
    assert_eq!(mine.opener.open(&own).unwrap(), b"echo");
}

// ---------------------------------------------------------------- handshakes

#[test]
fn wrong_cluster_key_fails_to_open_the_registration() {
    let mut r = rng(18);
    let key = Key::generate(&mut r);
    let wrong = Key::generate(&mut r);
    for (seed, master_key) in [(19, Some(&wrong)), (20, None)] {
        let (mut cluster, mut master) = cluster_master_pair(&key, master_key, seed);
        let reg = cluster.sealer.seal(b"register").unwrap();
        assert_eq!(master.opener.open(&reg), Err(CryptoError::Authentication));
        assert_eq!(master.opener.stats().auth_failures, 1);
        assert_eq!(master.opener.stats().accepted, 0);
        // Nor can the master's answer be read by the cluster.
        let ack = master.sealer.seal(b"registered").unwrap();
        assert_eq!(cluster.opener.open(&ack), Err(CryptoError::Authentication));
    }
    let (mut cluster, mut master) = cluster_master_pair(&key, Some(&key), 21);
    let reg = cluster.sealer.seal(b"register").unwrap();
    assert_eq!(master.opener.open(&reg).unwrap(), b"register");
}

#[test]
fn replayed_cluster_hello_and_registration_fail_on_a_fresh_responder() {
    let mut r = rng(22);
    let key = Key::generate(&mut r);
    let (init, hello) = ClusterInitiator::start("eu-west", key.clone(), &mut r).unwrap();
    let Hello::Cluster { key_name, nonce } = parse_hello(&hello).unwrap() else {
        panic!("not a cluster hello")
    };
    let (mut master, challenge) = respond_cluster(Some(&key), &key_name, &nonce, &mut r).unwrap();
    let mut cluster = init.handle_challenge(&challenge).unwrap();
    let recorded: Vec<Vec<u8>> = (0..3)
        .map(|n| {
            cluster
                .sealer
                .seal(format!("frame {n}").as_bytes())
                .unwrap()
        })
        .collect();
    for (n, f) in recorded.iter().enumerate() {
        assert_eq!(
            master.opener.open(f).unwrap(),
            format!("frame {n}").into_bytes()
        );
    }
    // An attacker replays the recorded hello and frames on new connections.
    for _ in 0..5 {
        let Hello::Cluster { key_name, nonce } = parse_hello(&hello).unwrap() else {
            panic!("not a cluster hello")
        };
        let (mut fresh, _) = respond_cluster(Some(&key), &key_name, &nonce, &mut r).unwrap();
        for f in &recorded {
            assert_eq!(fresh.opener.open(f), Err(CryptoError::Authentication));
        }
        assert_eq!(fresh.opener.stats().auth_failures, 3);
    }
}

#[test]
fn wrong_master_public_key_is_reported_as_such() {
    let real = MasterKeypair::generate().unwrap();
    let stale = MasterKeypair::generate().unwrap();
    let (init, hello) = ClientMasterInitiator::start(&stale.public()).unwrap();
    let Hello::ClientMaster { noise } = parse_hello(&hello).unwrap() else {
        panic!("not a client-master hello")
    };
    let e = respond_client_master(&real, &noise).err().unwrap();
    assert_eq!(e, HandshakeError::AuthenticationFailed);
    // The master answers with the refusal its error maps to.
    let refusal = reject_frame(e.reason(), "check the master public key");
    assert_eq!(
        check_refusal(&refusal),
        Some(HandshakeError::Rejected {
            reason: DisconnectReason::AuthFailed,
            message: "check the master public key".into()
        })
    );
    assert_eq!(
        init.handle_reply(&refusal).err(),
        Some(HandshakeError::WrongMasterKey)
    );
    // Another refusal reason stays what it is.
    let (init, _) = ClientMasterInitiator::start(&real.public()).unwrap();
    assert_eq!(
        init.handle_reply(&reject_frame(DisconnectReason::TooManyHandshakes, ""))
            .err(),
        Some(HandshakeError::Rejected {
            reason: DisconnectReason::TooManyHandshakes,
            message: String::new()
        })
    );
}

/// A master reply that was not made for this client's hello (replayed from
/// another handshake) does not complete it.
#[test]
fn noise_reply_from_another_handshake_is_refused() {
    let kp = MasterKeypair::generate().unwrap();
    let (first, hello) = ClientMasterInitiator::start(&kp.public()).unwrap();
    let Hello::ClientMaster { noise } = parse_hello(&hello).unwrap() else {
        panic!("not a client-master hello")
    };
    let (_, reply) = respond_client_master(&kp, &noise).unwrap();
    drop(first);
    let (second, _) = ClientMasterInitiator::start(&kp.public()).unwrap();
    assert!(second.handle_reply(&reply).is_err());
}

#[test]
fn version_mismatch_is_named_on_every_frame() {
    let theirs_all = [0, PROTOCOL_VERSION + 1, u16::MAX];
    for theirs in theirs_all {
        let want = HandshakeError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs,
        };
        assert_eq!(want.reason(), DisconnectReason::VersionMismatch);
        for kind in [
            HelloKind::ClusterHello,
            HelloKind::ClientMasterHello,
            HelloKind::ClientClusterHello,
            HelloKind::Challenge,
            HelloKind::NoiseReply,
            HelloKind::Reject,
        ] {
            let f = encode_handshake_frame(theirs, kind, &[0; 40]);
            assert_eq!(parse_hello(&f), Err(want.clone()), "{kind:?}");
            assert_eq!(check_refusal(&f), Some(want.clone()), "{kind:?}");
        }

        // Genuine hellos with only the version changed.
        let mut r = rng(23);
        let (_, cluster_hello) =
            ClusterInitiator::start("k", Key::generate(&mut r), &mut r).unwrap();
        let kp = MasterKeypair::generate().unwrap();
        let (_, master_hello) = ClientMasterInitiator::start(&kp.public()).unwrap();
        let i = issue(24);
        let (cc_hello, _) = client_cluster_hello(&i.sealed, &i.keys).unwrap();
        for mut h in [cluster_hello, master_hello, cc_hello] {
            h[4..6].copy_from_slice(&theirs.to_le_bytes());
            assert_eq!(parse_hello(&h), Err(want.clone()));
        }

        // The initiators name it when the server answers in another version.
        let (init, _) = ClusterInitiator::start("k", Key::generate(&mut r), &mut r).unwrap();
        let challenge = encode_handshake_frame(theirs, HelloKind::Challenge, &[0; 32]);
        assert_eq!(init.handle_challenge(&challenge).err(), Some(want.clone()));
        let (init, _) = ClientMasterInitiator::start(&kp.public()).unwrap();
        let reply = encode_handshake_frame(theirs, HelloKind::NoiseReply, &[0, 0]);
        assert_eq!(init.handle_reply(&reply).err(), Some(want.clone()));
    }
}

#[test]
fn initiators_refuse_answers_of_the_wrong_kind() {
    let mut r = rng(25);
    let key = Key::generate(&mut r);
    let (init, _) = ClusterInitiator::start("k", key.clone(), &mut r).unwrap();
    let f = encode_handshake_frame(PROTOCOL_VERSION, HelloKind::NoiseReply, &[0; 32]);
    assert_eq!(
        init.handle_challenge(&f).err(),
        Some(HandshakeError::UnexpectedKind(HelloKind::NoiseReply as u8))
    );
    let (init, _) = ClusterInitiator::start("k", key, &mut r).unwrap();
    let f = reject_frame(DisconnectReason::AuthFailed, "unknown key");
    assert_eq!(
        init.handle_challenge(&f).err(),
        Some(HandshakeError::Rejected {
            reason: DisconnectReason::AuthFailed,
            message: "unknown key".into()
        })
    );
    assert_eq!(
        parse_hello(b"\x16\x03\x01 a TLS client hello"),
        Err(HandshakeError::BadMagic)
    );
    // A sealed frame (sequence number first) is not taken for a refusal.
    let keys = session_keys(&[3; 32]);
    let mut s = keys.stream(Side::Responder);
    assert_eq!(check_refusal(&s.sealer.seal(b"welcome").unwrap()), None);
}
