//! Key derivation, sealing and opening of streams and datagrams, in memory.

use super::*;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

fn keys() -> ClientSessionKeys {
    let mut rng = StdRng::seed_from_u64(7);
    let mut s = [0u8; 32];
    rng.fill_bytes(&mut s);
    ClientSessionKeys::derive(&s, &[1; 32]).unwrap()
}

#[test]
fn every_salt_and_label_names_the_protocol_version() {
    let v = format!("v{}", crate::PROTOCOL_VERSION);
    for salt in [
        CLIENT_CLUSTER_SALT,
        JOIN_PROOF_SALT,
        RESUME_SALT,
        CLUSTER_MASTER_SALT,
        TOKEN_KEY_SALT,
    ] {
        let text = std::str::from_utf8(salt).unwrap();
        assert!(text.starts_with(&format!("sustenet {v} ")), "{text}");
    }
}

#[test]
fn the_cluster_nonce_changes_every_key() {
    let a = ClientSessionKeys::derive(&[5; 32], &[1; 32]).unwrap();
    let b = ClientSessionKeys::derive(&[5; 32], &[2; 32]).unwrap();
    let mut sa = a.stream(Side::Responder);
    let mut sb = b.stream(Side::Responder);
    assert_ne!(
        sa.sealer.seal(b"same").unwrap(),
        sb.sealer.seal(b"same").unwrap()
    );
    let mut da = a.datagram(Side::Responder, 1);
    let mut db = b.datagram(Side::Responder, 1);
    assert_ne!(
        da.sealer.seal(b"same").unwrap(),
        db.sealer.seal(b"same").unwrap()
    );
    // The token key is not the cluster key.
    let ck = Key::from_bytes([0x42; 32]);
    assert_ne!(token_key(&ck).unwrap(), ck);
}

#[test]
fn stream_round_trip_and_tamper() {
    let k = keys();
    let mut a = k.stream(Side::Initiator);
    let mut b = k.stream(Side::Responder);
    let p1 = a.sealer.seal(b"one").unwrap();
    let p2 = a.sealer.seal(b"two").unwrap();
    let p3 = a.sealer.seal(b"three").unwrap();
    assert_eq!(b.opener.open(&p1).unwrap(), b"one");
    let mut bad = p2.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(b.opener.open(&bad), Err(CryptoError::Authentication));
    // Skipping p2 is refused: a frame removed from the stream shows.
    assert_eq!(b.opener.open(&p3), Err(CryptoError::Authentication));
    assert_eq!(b.opener.open(&p2).unwrap(), b"two");
    assert_eq!(b.opener.open(&p3).unwrap(), b"three");
    // A replay of an older frame is refused.
    assert!(matches!(b.opener.open(&p1), Err(CryptoError::Stale { .. })));
    let st = b.opener.stats();
    assert_eq!((st.accepted, st.auth_failures, st.stale), (3, 2, 1));
}

#[test]
fn directions_do_not_cross() {
    let k = keys();
    let mut a = k.stream(Side::Initiator);
    let p = a.sealer.seal(b"x").unwrap();
    assert_eq!(a.opener.open(&p), Err(CryptoError::Authentication));
}

#[test]
fn datagram_replay_stale_tamper() {
    let k = keys();
    let mut a = k.datagram(Side::Initiator, 42);
    let mut b = k.datagram(Side::Responder, 42);
    let d0 = a.sealer.seal(b"d0").unwrap();
    let d1 = a.sealer.seal(b"d1").unwrap();
    let d2 = a.sealer.seal(b"d2").unwrap();
    assert_eq!(b.opener.open(&d0).unwrap(), b"d0");
    assert_eq!(b.opener.open(&d0), Err(CryptoError::Replay(0)));
    assert_eq!(b.opener.open(&d2).unwrap(), b"d2");
    assert!(matches!(
        b.opener.open(&d1),
        Err(CryptoError::Stale { seq: 1, newest: 2 })
    ));
    // A replayed stale one is a replay.
    assert_eq!(b.opener.open(&d1), Err(CryptoError::Replay(1)));
    let mut d3 = a.sealer.seal(b"d3").unwrap();
    d3[10] ^= 0x80; // sequence number, authenticated as associated data
    assert_eq!(b.opener.open(&d3), Err(CryptoError::Authentication));
    let st = b.opener.stats();
    assert_eq!(
        (st.accepted, st.replays, st.stale, st.auth_failures),
        (2, 2, 1, 1)
    );
}

#[test]
fn seal_into_reuses_a_buffer_and_matches_seal() {
    let k = keys();
    let mut a = k.datagram(Side::Initiator, 42);
    let mut same = k.datagram(Side::Initiator, 42);
    let mut b = k.datagram(Side::Responder, 42);
    let mut buf = vec![0xAA; 3000];
    for msg in [&b"a longer first message"[..], b"", b"short"] {
        a.sealer.seal_into(msg, &mut buf).unwrap();
        assert_eq!(buf, same.sealer.seal(msg).unwrap());
        assert_eq!(b.opener.open(&buf).unwrap(), msg);
    }
}

#[test]
fn slots_sealed_on_other_threads_open_in_the_order_they_were_taken() {
    let k = keys();
    let mut a = k.datagram(Side::Responder, 42);
    let mut same = k.datagram(Side::Responder, 42);
    let mut b = k.datagram(Side::Initiator, 42);
    let slots: Vec<DatagramSlot> = (0..8).map(|_| a.sealer.take_slot().unwrap()).collect();
    assert_eq!(
        slots.iter().map(DatagramSlot::seq).collect::<Vec<_>>(),
        (0..8).collect::<Vec<u64>>()
    );
    assert!(slots.iter().all(|s| s.session_id() == 42));
    // Sealed on two threads, the odd ones first: the bytes are those the
    // sealer itself would have made, and in sequence order they all open.
    let (even, odd): (Vec<_>, Vec<_>) = slots.into_iter().partition(|s| s.seq() % 2 == 0);
    let seal_all = |slots: Vec<DatagramSlot>| {
        std::thread::spawn(move || {
            slots
                .into_iter()
                .map(|s| {
                    let mut out = Vec::new();
                    let seq = s.seq();
                    s.seal_into(&seq.to_le_bytes(), &mut out).unwrap();
                    (seq, out)
                })
                .collect::<Vec<_>>()
        })
    };
    let odd = seal_all(odd).join().unwrap();
    let even = seal_all(even).join().unwrap();
    let mut sealed: Vec<(u64, Vec<u8>)> = odd.into_iter().chain(even).collect();
    sealed.sort_by_key(|(seq, _)| *seq);
    for (seq, d) in &sealed {
        assert_eq!(d, &same.sealer.seal(&seq.to_le_bytes()).unwrap());
        assert_eq!(b.opener.open(d).unwrap(), seq.to_le_bytes());
    }
    // The sealer goes on after the slots it gave out; a slot sent after a
    // newer datagram is stale, and a copy is a replay.
    let next = a.sealer.seal(b"next").unwrap();
    let late = a.sealer.take_slot().unwrap();
    let newest = a.sealer.seal(b"newest").unwrap();
    assert_eq!(b.opener.open(&next).unwrap(), b"next");
    assert_eq!(b.opener.open(&newest).unwrap(), b"newest");
    let mut out = Vec::new();
    late.seal_into(b"late", &mut out).unwrap();
    assert!(matches!(
        b.opener.open(&out),
        Err(CryptoError::Stale { .. })
    ));
    assert!(matches!(
        b.opener.open(&sealed[7].1),
        Err(CryptoError::Replay(_))
    ));
}

#[test]
fn key_base64_round_trip() {
    let mut rng = StdRng::seed_from_u64(1);
    let k = Key::generate(&mut rng);
    assert_eq!(Key::from_base64(&k.to_base64()).unwrap(), k);
    assert!(Key::from_base64("abc").is_err());
    assert!(Key::from_base64("!!!").is_err());
}

#[test]
fn master_public_key_is_derived_from_private() {
    let kp = MasterKeypair::generate().unwrap();
    let again = MasterKeypair::from_private_base64(&kp.private_base64()).unwrap();
    assert_eq!(kp.public(), again.public());
}
