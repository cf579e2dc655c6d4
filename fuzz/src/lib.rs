//! Fuzz target bodies for the sustenet-proto decoders.
//!
//! Each function takes arbitrary bytes, runs one decoder family over them and
//! checks what must hold whatever a peer sends. They live in a library, not
//! in the `fuzz_targets/` binaries, so that the stable smoke test in
//! `tests/smoke.rs` runs exactly the same code as libFuzzer does on nightly.
//! A panic here is a finding, which is why the invariants are asserts.

use std::fmt::Debug;
use std::sync::OnceLock;

use bytes::BytesMut;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sustenet_proto::datagram::{self, Batch, MAX_DATAGRAM_PLAINTEXT, decode_records};
use sustenet_proto::handshake::{
    ClientMasterInitiator, ClusterInitiator, Hello, accept_client, accept_resume, check_refusal,
    parse_hello, parse_noise_reply, respond_client_master,
};
use sustenet_proto::{
    ClientSessionKeys, ClientToCluster, ClientToMaster, ClusterToClient, ClusterToMaster,
    ConnectToken, FrameDecoder, FrameError, Key, MAGIC, MasterKeypair, MasterToClient,
    MasterToCluster, Message, Side, TokenError, UsedTokens, encode_frame,
};

const CLUSTER_ID: u64 = 77;
const NOW_MS: u64 = 1_000;

fn cluster_key() -> Key {
    Key::from_bytes([7; 32])
}

/// A fixed master keypair, so runs are reproducible and the keypair is not
/// rebuilt for every input.
fn master() -> Option<&'static MasterKeypair> {
    static KP: OnceLock<Option<MasterKeypair>> = OnceLock::new();
    KP.get_or_init(|| {
        MasterKeypair::from_private_base64("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").ok()
    })
    .as_ref()
}

/// Frames: `max u16 | chunk u8 | stream`. The stream is decoded whole and
/// again in chunks; both must give the same frames and the same error, every
/// frame must be within the limit, and re-encoding the frames must give back
/// the bytes they were taken from.
pub fn frame(data: &[u8]) {
    let [a, b, c, wire @ ..] = data else {
        return;
    };
    let max = usize::from(u16::from_le_bytes([*a, *b])).max(1);
    let chunk = usize::from(*c).max(1);
    let d = FrameDecoder::new(max);
    let whole = decode_all(&d, wire, wire.len().max(1));
    let chunked = decode_all(&d, wire, chunk);
    assert_eq!(whole, chunked, "chunking changed the frames");
    let mut again = BytesMut::new();
    for f in &whole.0 {
        assert!(
            !f.is_empty() && f.len() <= max,
            "frame of {} bytes over {max}",
            f.len()
        );
        assert!(encode_frame(f, max, &mut again).is_ok());
    }
    assert_eq!(&again[..], &wire[..again.len()]);
}

type Decoded = (Vec<Vec<u8>>, Option<FrameError>);

fn decode_all(d: &FrameDecoder, wire: &[u8], chunk: usize) -> Decoded {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in wire.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f.to_vec()),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

/// Link messages: the first byte picks one of the six link enums, the rest
/// is the message. Whatever decodes must re-encode, and the re-encoding must
/// decode to the same message.
pub fn link_messages(data: &[u8]) {
    let [which, body @ ..] = data else {
        return;
    };
    match which % 6 {
        0 => check_message::<ClusterToMaster>(body),
        1 => check_message::<MasterToCluster>(body),
        2 => check_message::<ClientToMaster>(body),
        3 => check_message::<MasterToClient>(body),
        4 => check_message::<ClientToCluster>(body),
        _ => check_message::<ClusterToClient>(body),
    }
}

fn check_message<M: Message + PartialEq + Debug>(body: &[u8]) {
    let Ok(m) = M::decode(body) else {
        return;
    };
    let again = match m.to_bytes() {
        Ok(b) => b,
        Err(e) => panic!("decoded {m:?} but cannot encode it: {e}"),
    };
    assert_eq!(M::decode(&again).as_ref(), Ok(&m));
    assert_eq!(again.len(), body.len());
}

/// Datagram records: whatever decodes re-encodes to the very same bytes (the
/// record format has one encoding per value), and fits one datagram when the
/// input did.
pub fn records(data: &[u8]) {
    let Ok(records) = decode_records(data) else {
        return;
    };
    let mut again = Vec::new();
    let mut batch = Batch::new();
    let mut all_fit = true;
    for r in &records {
        match datagram::single(r) {
            Ok(b) => again.extend(b),
            Err(e) => panic!("decoded {r:?} but cannot encode it: {e}"),
        }
        all_fit &= batch.push(r) == Ok(true);
    }
    assert_eq!(again, data);
    if data.len() <= MAX_DATAGRAM_PLAINTEXT {
        assert!(all_fit);
        assert_eq!(batch.take(), data);
    }
}

/// Handshake frames, as a server and as an initiator receive them. Hellos
/// that parse are pushed on through the server side (Noise, token and proof)
/// and must be refused there, never panic.
pub fn hello(data: &[u8]) {
    assert_eq!(check_refusal(data).is_some(), data.starts_with(&MAGIC));
    match parse_hello(data) {
        Ok(Hello::ClientMaster { noise }) => {
            if let Some(kp) = master() {
                // Anyone may open an NK handshake, so a well-formed one can
                // succeed; it only must not panic.
                let _ = respond_client_master(kp, &noise);
            }
        }
        Ok(Hello::ClientCluster { token, proof }) => {
            let r = accept_client(
                &token,
                &proof,
                &cluster_key(),
                CLUSTER_ID,
                NOW_MS,
                &mut UsedTokens::new(),
                &mut StdRng::seed_from_u64(2),
            );
            assert!(r.is_err(), "a fuzzed token was accepted");
        }
        Ok(Hello::ClientResume { nonce, proof, .. }) => {
            // A fuzzed proof never opens under a session's keys.
            static KEYS: OnceLock<Option<ClientSessionKeys>> = OnceLock::new();
            let Some(keys) = KEYS
                .get_or_init(|| ClientSessionKeys::derive(&[7; 32], &[8; 32]).ok())
                .as_ref()
            else {
                return;
            };
            assert!(
                accept_resume(keys, &nonce, &proof).is_err(),
                "a fuzzed resume proof was accepted"
            );
        }
        // Like a cluster's hello: a key name and a nonce, answered with a challenge.
        Ok(Hello::Cluster { .. } | Hello::Agent { .. } | Hello::Admin { .. }) | Err(_) => {}
    }
    let mut rng = StdRng::seed_from_u64(1);
    if let Ok((init, _)) = ClusterInitiator::start("fuzz", cluster_key(), &mut rng) {
        let _ = init.handle_challenge(data);
    }
    // The initiator's state costs two X25519 operations to build, and it is
    // read only once the frame parses as a Noise reply: build it only then.
    // A frame that does not parse gets the error `handle_reply` would give,
    // from the same parser, without it.
    if parse_noise_reply(data).is_ok()
        && let Some(kp) = master()
        && let Ok((init, _)) = ClientMasterInitiator::start(&kp.public())
    {
        let _ = init.handle_reply(data);
    }
}

/// Connect tokens. Mode 0: the input is a sealed token and must not open.
/// Mode 1: the input is a token's content; sealed and opened again it must
/// come back equal, or be refused for exactly its expiry or cluster.
pub fn token(data: &[u8]) {
    let [mode, rest @ ..] = data else {
        return;
    };
    if mode % 2 == 0 {
        assert!(ConnectToken::open(rest, &cluster_key(), CLUSTER_ID, NOW_MS).is_err());
        return;
    }
    let mut r = rest;
    let (Some(client_id), Some(cluster_id), Some(expires_at_ms)) =
        (take_u64(&mut r), take_u64(&mut r), take_u64(&mut r))
    else {
        return;
    };
    let cluster_id = if cluster_id % 2 == 0 {
        CLUSTER_ID
    } else {
        cluster_id
    };
    let t = ConnectToken {
        client_id,
        cluster_id,
        token_id: [1; 16],
        expires_at_ms,
        session_secret: [2; 32].into(),
        user_data: r.to_vec(),
    };
    let mut rng = StdRng::seed_from_u64(client_id);
    let Ok(sealed) = t.seal(&cluster_key(), &mut rng) else {
        assert!(r.len() > sustenet_proto::message::USER_DATA_MAX);
        return;
    };
    let want = if cluster_id != CLUSTER_ID {
        Err(TokenError::WrongCluster)
    } else if expires_at_ms <= NOW_MS {
        Err(TokenError::Expired)
    } else {
        Ok(t)
    };
    assert_eq!(
        ConnectToken::open(&sealed, &cluster_key(), CLUSTER_ID, NOW_MS),
        want
    );
}

fn take_u64(r: &mut &[u8]) -> Option<u64> {
    let (head, tail) = r.split_first_chunk::<8>()?;
    *r = tail;
    Some(u64::from_le_bytes(*head))
}

/// Sealed packets. Mode 0: the rest is a list of `len u8 | bytes` forged
/// packets fed to a stream and a datagram opener; none may open, and each is
/// counted once. Mode 1: the rest is a list of masks XORed over genuine
/// packets; a packet opens exactly when its mask changed nothing.
pub fn sealed(data: &[u8]) {
    let [mode, rest @ ..] = data else {
        return;
    };
    let Some(keys) = sealed_keys() else {
        return;
    };
    let mut tx_stream = keys.stream(Side::Initiator);
    let mut rx_stream = keys.stream(Side::Responder);
    let mut tx_dgram = keys.datagram(Side::Initiator, 9);
    let mut rx_dgram = keys.datagram(Side::Responder, 9);
    let mut pieces = Vec::new();
    let mut r = rest;
    while let [len, tail @ ..] = r {
        let n = usize::from(*len).min(tail.len());
        pieces.push(&tail[..n]);
        r = &tail[n..];
    }
    if mode % 2 == 0 {
        for p in &pieces {
            assert!(rx_stream.opener.open(p).is_err());
            assert!(rx_dgram.opener.open(p).is_err());
        }
        for st in [rx_stream.opener.stats(), rx_dgram.opener.stats()] {
            assert_eq!(st.accepted, 0);
            assert_eq!(
                st.auth_failures + st.replays + st.stale,
                pieces.len() as u64
            );
        }
        return;
    }
    for (i, mask) in pieces.iter().enumerate() {
        let plain = format!("genuine packet {i}").into_bytes();
        if let Ok(genuine) = tx_stream.sealer.seal(&plain) {
            let mut p = genuine.clone();
            let untouched = xor(&mut p, mask);
            match rx_stream.opener.open(&p) {
                Ok(got) => assert!(untouched && got == plain, "tampered stream packet opened"),
                Err(e) => {
                    assert!(!untouched, "genuine stream packet refused: {e}");
                    // A refused packet leaves the receiver as it was: the
                    // genuine one (same sequence number) still opens, and a
                    // later one would be refused as a gap until it does.
                    assert_eq!(rx_stream.opener.open(&genuine).ok(), Some(plain.clone()));
                }
            }
        }
        if let Ok(mut d) = tx_dgram.sealer.seal(&plain) {
            let untouched = xor(&mut d, mask);
            match rx_dgram.opener.open(&d) {
                Ok(got) => assert!(untouched && got == plain, "tampered datagram opened"),
                Err(e) => assert!(!untouched, "genuine datagram refused: {e}"),
            }
        }
    }
}

/// The session keys `sealed` uses, derived once per process: each input
/// starts fresh sessions (sequence numbers, replay windows) from them.
fn sealed_keys() -> Option<&'static ClientSessionKeys> {
    static KEYS: OnceLock<Option<ClientSessionKeys>> = OnceLock::new();
    KEYS.get_or_init(|| ClientSessionKeys::derive(&[3; 32], &[4; 32]).ok())
        .as_ref()
}

/// XORs `mask` over the front of `packet`; true when that changed nothing.
fn xor(packet: &mut [u8], mask: &[u8]) -> bool {
    let mut untouched = true;
    for (b, m) in packet.iter_mut().zip(mask) {
        *b ^= m;
        untouched &= *m == 0;
    }
    untouched
}
