// Long file: one strategy per message type and the properties run over all of them (round trip, cuts, caps); split, each half would need the other's strategies.
//! Proves that every message of every link, every datagram record and every handshake hello survives encode→decode unchanged, that a cut or padded encoding is refused, that no decoder panics on arbitrary bytes, and that a field over its cap is refused by the encoder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Debug;

use proptest::collection::vec;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sustenet_proto::crypto::{DATAGRAM_SESSION, datagram_session_id};
use sustenet_proto::datagram::{
    self, Batch, DatagramError, MAX_DATAGRAM_PLAINTEXT, MAX_UNRELIABLE_PAYLOAD, Record,
    decode_records,
};
use sustenet_proto::handshake::{
    ClientMasterInitiator, ClusterInitiator, Hello, HelloKind, KEY_NAME_MAX, check_refusal,
    client_cluster_hello, encode_handshake_frame, parse_hello, reject_frame, respond_client_master,
};
use sustenet_proto::message::{
    ADDRESS_MAX, CLUSTER_LIST_MAX, DATA_MAX, NAME_MAX, SECRET_MAX, TEXT_MAX, TOKEN_MAX,
    USER_DATA_MAX, USERNAME_MAX,
};
use sustenet_proto::token::TOKEN_FORMAT;
use sustenet_proto::{
    ClientSessionKeys, ClientToCluster, ClientToMaster, ClusterInfo, ClusterToClient,
    ClusterToMaster, ConnectToken, DecodeError, DisconnectReason, EncodeError, Goodbye,
    HandshakeError, JoinTarget, Key, MAGIC, MasterKeypair, MasterToClient, MasterToCluster,
    Message, PROTOCOL_VERSION, Register, Side, Status, Ticket,
};

// ---------------------------------------------------------------- strategies

/// Drops characters until the text fits `max` bytes, so multi-byte text
/// tests the cap in bytes rather than in characters.
fn fit(mut s: String, max: usize) -> String {
    while s.len() > max {
        s.pop();
    }
    s
}

/// Mostly short text of any Unicode, sometimes long, sometimes exactly at the cap.
fn text(max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        6 => vec(any::<char>(), 0..16).prop_map(move |c| fit(c.into_iter().collect(), max)),
        1 => vec(any::<char>(), 0..=max).prop_map(move |c| fit(c.into_iter().collect(), max)),
        1 => vec(0x20u8..0x7f, max).prop_map(|b| String::from_utf8(b).unwrap()),
    ]
    .boxed()
}

/// Mostly short byte strings, sometimes exactly at the cap.
fn bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..48),
        1 => vec(any::<u8>(), max..=max),
    ]
    .boxed()
}

fn reason() -> impl Strategy<Value = DisconnectReason> {
    proptest::sample::select(DisconnectReason::ALL.to_vec())
}

fn goodbye() -> impl Strategy<Value = Goodbye> {
    (reason(), text(TEXT_MAX)).prop_map(|(reason, message)| Goodbye { reason, message })
}

fn cluster_info() -> impl Strategy<Value = ClusterInfo> {
    (
        any::<u64>(),
        text(NAME_MAX),
        text(ADDRESS_MAX),
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(
            |(id, name, address, tcp_port, udp_port, players, capacity, locked)| ClusterInfo {
                id,
                name,
                address,
                tcp_port,
                udp_port,
                players,
                capacity,
                locked,
            },
        )
}

fn ticket() -> impl Strategy<Value = Ticket> {
    (
        cluster_info(),
        any::<u64>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        bytes(TOKEN_MAX),
    )
        .prop_map(
            |(cluster, client_id, expires_at_ms, session_secret, token)| Ticket {
                cluster,
                client_id,
                expires_at_ms,
                session_secret: session_secret.into(),
                token,
            },
        )
}

fn join_target() -> impl Strategy<Value = JoinTarget> {
    prop_oneof![
        Just(JoinTarget::Auto),
        any::<u64>().prop_map(JoinTarget::Id)
    ]
}

/// Reliable payloads stay small here; the 16 MiB cap has its own test.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..2048)
}

fn cluster_to_master() -> impl Strategy<Value = ClusterToMaster> {
    prop_oneof![
        any::<u64>().prop_map(ClusterToMaster::Ping),
        any::<u64>().prop_map(ClusterToMaster::Pong),
        goodbye().prop_map(ClusterToMaster::Disconnect),
        (
            any::<u64>(),
            text(NAME_MAX),
            text(ADDRESS_MAX),
            any::<u16>(),
            any::<u16>(),
            any::<u32>()
        )
            .prop_map(
                |(cluster_id, name, address, tcp_port, udp_port, capacity)| {
                    ClusterToMaster::Register(Register {
                        cluster_id,
                        name,
                        address,
                        tcp_port,
                        udp_port,
                        capacity,
                    })
                }
            ),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(players, capacity, fragments)| {
            ClusterToMaster::Status(Status {
                players,
                capacity,
                fragments,
            })
        }),
        any::<u64>().prop_map(|client_id| ClusterToMaster::PlayerJoined { client_id }),
        any::<u64>().prop_map(|client_id| ClusterToMaster::PlayerLeft { client_id }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            bytes(USER_DATA_MAX)
        )
            .prop_map(|(request_id, client_id, target, user_data)| {
                ClusterToMaster::Transfer {
                    request_id,
                    client_id,
                    target,
                    user_data,
                }
            }),
        (any::<u16>(), any::<bool>())
            .prop_map(|(port, tls)| ClusterToMaster::WebSocket { port, tls }),
        any::<bool>().prop_map(|reserved| ClusterToMaster::Reserved { reserved }),
    ]
}

fn master_to_cluster() -> impl Strategy<Value = MasterToCluster> {
    prop_oneof![
        any::<u64>().prop_map(MasterToCluster::Ping),
        any::<u64>().prop_map(MasterToCluster::Pong),
        goodbye().prop_map(MasterToCluster::Disconnect),
        any::<u64>().prop_map(|cluster_id| MasterToCluster::Registered { cluster_id }),
        (any::<u64>(), any::<u64>(), ticket()).prop_map(|(request_id, client_id, ticket)| {
            MasterToCluster::TransferReady {
                request_id,
                client_id,
                ticket,
            }
        }),
        (any::<u64>(), any::<u64>(), goodbye()).prop_map(|(request_id, client_id, reason)| {
            MasterToCluster::TransferFailed {
                request_id,
                client_id,
                reason,
            }
        }),
    ]
}

fn client_to_master() -> impl Strategy<Value = ClientToMaster> {
    prop_oneof![
        any::<u64>().prop_map(ClientToMaster::Ping),
        any::<u64>().prop_map(ClientToMaster::Pong),
        goodbye().prop_map(ClientToMaster::Disconnect),
        (text(USERNAME_MAX), bytes(SECRET_MAX))
            .prop_map(|(username, secret)| ClientToMaster::Login { username, secret }),
        Just(ClientToMaster::ListClusters),
        join_target().prop_map(ClientToMaster::Join),
    ]
}

fn master_to_client() -> impl Strategy<Value = MasterToClient> {
    prop_oneof![
        any::<u64>().prop_map(MasterToClient::Ping),
        any::<u64>().prop_map(MasterToClient::Pong),
        goodbye().prop_map(MasterToClient::Disconnect),
        any::<u64>().prop_map(|client_id| MasterToClient::LoginOk { client_id }),
        text(TEXT_MAX).prop_map(|message| MasterToClient::LoginFailed { message }),
        vec(cluster_info(), 0..8).prop_map(MasterToClient::ClusterList),
        ticket().prop_map(MasterToClient::Ticket),
        goodbye().prop_map(MasterToClient::JoinFailed),
    ]
}

fn client_to_cluster() -> impl Strategy<Value = ClientToCluster> {
    prop_oneof![
        any::<u64>().prop_map(ClientToCluster::Ping),
        any::<u64>().prop_map(ClientToCluster::Pong),
        goodbye().prop_map(ClientToCluster::Disconnect),
        (any::<u16>(), payload())
            .prop_map(|(command, payload)| ClientToCluster::Data { command, payload }),
        any::<u64>().prop_map(ClientToCluster::Ack),
    ]
}

fn cluster_to_client() -> impl Strategy<Value = ClusterToClient> {
    prop_oneof![
        any::<u64>().prop_map(ClusterToClient::Ping),
        any::<u64>().prop_map(ClusterToClient::Pong),
        goodbye().prop_map(ClusterToClient::Disconnect),
        (any::<u64>(), any::<u64>(), any::<u16>()).prop_map(|(player_id, session_id, udp_port)| {
            ClusterToClient::Welcome {
                player_id,
                session_id,
                udp_port,
            }
        }),
        (any::<u16>(), payload())
            .prop_map(|(command, payload)| ClusterToClient::Data { command, payload }),
        ticket().prop_map(ClusterToClient::Redirect),
        any::<u64>().prop_map(ClusterToClient::Ack),
        any::<u64>().prop_map(|received| ClusterToClient::Resumed { received }),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        4 => (any::<u16>(), vec(any::<u8>(), 0..200))
            .prop_map(|(command, payload)| Record::Data { command, payload }),
        1 => (any::<u16>(), vec(any::<u8>(), MAX_UNRELIABLE_PAYLOAD..=MAX_UNRELIABLE_PAYLOAD))
            .prop_map(|(command, payload)| Record::Data { command, payload }),
        2 => any::<u64>().prop_map(Record::Ping),
        2 => any::<u64>().prop_map(Record::Pong),
        1 => any::<u64>().prop_map(Record::PathChallenge),
        1 => any::<u64>().prop_map(Record::PathResponse),
    ]
}

// ---------------------------------------------------------------- properties

/// Round trip, refusal of every strict prefix, refusal of a trailing byte.
fn check_message<M: Message + PartialEq + Debug>(m: &M, extra: u8) -> Result<(), TestCaseError> {
    let bytes = m.to_bytes().unwrap();
    prop_assert_eq!(&M::decode(&bytes).unwrap(), m);
    // Each field's length is known before it is read, so any cut shows up as
    // a truncated field, never as a shorter valid message.
    for cut in 0..bytes.len() {
        prop_assert_eq!(
            M::decode(&bytes[..cut]),
            Err(DecodeError::Truncated),
            "cut at {} of {}",
            cut,
            bytes.len()
        );
    }
    let mut longer = bytes.clone();
    longer.push(extra);
    prop_assert_eq!(M::decode(&longer), Err(DecodeError::TrailingBytes(1)));
    // encode appends: what was already in the buffer stays in front.
    let mut out = vec![0xAB, 0xCD];
    m.encode(&mut out).unwrap();
    prop_assert_eq!(&out[..2], &[0xAB, 0xCD]);
    prop_assert_eq!(&out[2..], &bytes[..]);
    Ok(())
}

/// Whatever a decoder accepts must re-encode into something that decodes to
/// the same value: a decoder never builds a message the encoder refuses.
fn check_decoder<M: Message + PartialEq + Debug>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(m) = M::decode(bytes) {
        let again = m.to_bytes().unwrap();
        prop_assert_eq!(M::decode(&again).unwrap(), m);
    }
    Ok(())
}

fn all_link_decoders(bytes: &[u8]) -> Result<(), TestCaseError> {
    check_decoder::<ClusterToMaster>(bytes)?;
    check_decoder::<MasterToCluster>(bytes)?;
    check_decoder::<ClientToMaster>(bytes)?;
    check_decoder::<MasterToClient>(bytes)?;
    check_decoder::<ClientToCluster>(bytes)?;
    check_decoder::<ClusterToClient>(bytes)?;
    Ok(())
}

/// Packs records into as many datagram plaintexts as needed, as a sender would.
fn pack(records: &[Record]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut batch = Batch::new();
    for r in records {
        if !batch.push(r).unwrap() {
            out.push(batch.take());
            assert!(
                batch.push(r).unwrap(),
                "a record that fits alone must fit an empty batch"
            );
        }
    }
    if !batch.is_empty() {
        out.push(batch.take());
    }
    out
}

fn fixed_key(seed: u64) -> Key {
    Key::generate(&mut StdRng::seed_from_u64(seed))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn cluster_to_master_round_trips(m in cluster_to_master(), extra in any::<u8>()) {
        check_message(&m, extra)?;
    }

    #[test]
    fn master_to_cluster_round_trips(m in master_to_cluster(), extra in any::<u8>()) {
        check_message(&m, extra)?;
    }

    #[test]
    fn client_to_master_round_trips(m in client_to_master(), extra in any::<u8>()) {
        check_message(&m, extra)?;
    }

    #[test]
    fn master_to_client_round_trips(m in master_to_client(), extra in any::<u8>()) {
        check_message(&m, extra)?;
    }

    #[test]
    fn client_to_cluster_round_trips(m in client_to_cluster(), extra in any::<u8>()) {
        check_message(&m, extra)?;
    }

    #[test]
    fn cluster_to_client_round_trips(m in cluster_to_client(), extra in any::<u8>()) {
        check_message(&m, extra)?;
    }

    /// Batches never exceed the datagram plaintext limit, and decoding them
    /// gives back the records in order.
    #[test]
    fn records_round_trip_through_batches(records in vec(record(), 0..24)) {
        let datagrams = pack(&records);
        let mut decoded = Vec::new();
        for d in &datagrams {
            prop_assert!(d.len() <= MAX_DATAGRAM_PLAINTEXT);
            decoded.extend(decode_records(d).unwrap());
        }
        prop_assert_eq!(decoded, records);
    }

    /// A cut datagram plaintext decodes only where a record ends (to exactly
    /// the records before the cut); anywhere else it is truncated. One extra
    /// byte is never a record.
    #[test]
    fn cut_records_are_refused_or_a_record_prefix(records in vec(record(), 1..8), extra in any::<u8>()) {
        let mut plain = Vec::new();
        let mut ends = vec![0usize];
        for r in &records {
            plain.extend(datagram::single(r).unwrap());
            ends.push(plain.len());
        }
        for cut in 0..plain.len() {
            match ends.iter().position(|e| *e == cut) {
                Some(k) => prop_assert_eq!(decode_records(&plain[..cut]).unwrap(), &records[..k]),
                None => prop_assert_eq!(decode_records(&plain[..cut]), Err(DecodeError::Truncated)),
            }
        }
        plain.push(extra);
        prop_assert!(decode_records(&plain).is_err());
    }

    /// A cluster hello carries the key name exactly; cut or padded, it is malformed.
    #[test]
    fn cluster_hello_round_trips(name in text(KEY_NAME_MAX), seed in any::<u64>(), extra in any::<u8>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (_, hello) = ClusterInitiator::start(&name, fixed_key(1), &mut rng).unwrap();
        match parse_hello(&hello).unwrap() {
            Hello::Cluster { key_name, .. } => prop_assert_eq!(key_name, name),
            other => prop_assert!(false, "wrong hello {:?}", other),
        }
        check_hello_cuts(&hello, extra)?;
    }

    #[test]
    fn client_cluster_hello_round_trips(token in bytes(TOKEN_MAX), secret in any::<[u8; 32]>(), extra in any::<u8>()) {
        let (hello, _) = client_cluster_hello(&token, &secret).unwrap();
        match parse_hello(&hello).unwrap() {
            Hello::ClientCluster { token: t, proof } => {
                prop_assert_eq!(t, token);
                // The proof is sealed under the join-proof key of the secret.
                let mut cluster = ClientSessionKeys::join_proof(&secret).unwrap();
                prop_assert!(cluster.opener.open(&proof).is_ok());
            }
            other => prop_assert!(false, "wrong hello {:?}", other),
        }
        check_hello_cuts(&hello, extra)?;
    }

    /// The refusal keeps reason and message (cut to TEXT_MAX on a character
    /// boundary); a cut refusal of at least four bytes is a malformed one.
    #[test]
    fn reject_frames_round_trip(reason in reason(), message in vec(any::<char>(), 0..300), extra in any::<u8>()) {
        let message: String = message.into_iter().collect();
        let f = reject_frame(reason, &message);
        let expected = fit(message.clone(), TEXT_MAX);
        prop_assert!(message.starts_with(&expected));
        prop_assert_eq!(
            check_refusal(&f),
            Some(HandshakeError::Rejected { reason, message: expected.clone() })
        );
        // A server never takes a refusal as a hello.
        prop_assert_eq!(parse_hello(&f), Err(HandshakeError::UnexpectedKind(HelloKind::Reject as u8)));
        for cut in 0..f.len() {
            let got = check_refusal(&f[..cut]);
            if cut < MAGIC.len() {
                // Not even the magic: indistinguishable from a sealed frame.
                prop_assert_eq!(got, None);
            } else {
                prop_assert_eq!(got, Some(HandshakeError::Malformed(DecodeError::Truncated)), "cut {}", cut);
            }
        }
        // A refusal is final whatever follows it, so extra bytes (a later
        // version's fields) do not hide the reason.
        let mut longer = f.clone();
        longer.push(extra);
        prop_assert_eq!(
            check_refusal(&longer),
            Some(HandshakeError::Rejected { reason, message: expected })
        );
    }

    // ------------------------------------------------------- hostile input

    #[test]
    fn random_bytes_never_panic_link_decoders(bytes in vec(any::<u8>(), 0..512)) {
        all_link_decoders(&bytes)?;
    }

    /// Random bodies behind every type byte reach the per-field decoding.
    #[test]
    fn random_bodies_never_panic_link_decoders(tag in any::<u8>(), body in vec(any::<u8>(), 0..512)) {
        let mut bytes = vec![tag];
        bytes.extend(body);
        all_link_decoders(&bytes)?;
    }

    /// Small inputs (mostly 0x00/0x01 and short lengths) hit the valid
    /// shapes of bool, join target and empty strings far more often.
    #[test]
    fn small_alphabet_never_panics_link_decoders(tag in any::<u8>(), body in vec(0u8..3, 0..64)) {
        let mut bytes = vec![tag];
        bytes.extend(body);
        all_link_decoders(&bytes)?;
    }

    #[test]
    fn random_bytes_never_panic_records(bytes in vec(any::<u8>(), 0..1400)) {
        if let Ok(records) = decode_records(&bytes) {
            // Whatever decodes re-encodes to the same bytes: the record format is canonical.
            let mut again = Vec::new();
            for r in &records {
                again.extend(datagram::single(r).unwrap());
            }
            prop_assert_eq!(again, bytes);
        }
    }

    #[test]
    fn random_bytes_never_panic_hello_parsers(
        head in prop_oneof![Just(Vec::new()), Just(MAGIC.to_vec())],
        version in prop_oneof![Just(PROTOCOL_VERSION), any::<u16>()],
        kind in prop_oneof![Just(1u8), Just(2u8), Just(3u8), Just(0x11u8), Just(0x12u8), Just(0x7Fu8), any::<u8>()],
        body in vec(any::<u8>(), 0..1200),
    ) {
        let mut f = head.clone();
        if !head.is_empty() {
            f.extend_from_slice(&version.to_le_bytes());
            f.push(kind);
        }
        f.extend(body);
        let _ = parse_hello(&f);
        let refusal = check_refusal(&f);
        prop_assert_eq!(refusal.is_some(), f.starts_with(&MAGIC));
    }

    /// The master runs the client's first Noise message through snow; no
    /// message of any size up to the hello limit may panic it.
    #[test]
    fn random_noise_hello_never_panics_master(noise in vec(any::<u8>(), 0..1024)) {
        let kp = master_keypair();
        let mut body = (noise.len() as u16).to_le_bytes().to_vec();
        body.extend(&noise);
        let f = encode_handshake_frame(PROTOCOL_VERSION, HelloKind::ClientMasterHello, &body);
        match parse_hello(&f).unwrap() {
            Hello::ClientMaster { noise: n } => {
                prop_assert_eq!(&n, &noise);
                prop_assert!(respond_client_master(&kp, &n).is_err());
            }
            other => prop_assert!(false, "wrong hello {:?}", other),
        }
    }

    #[test]
    fn random_noise_reply_never_panics_client(noise in vec(any::<u8>(), 0..1024)) {
        let kp = master_keypair();
        let (init, _) = ClientMasterInitiator::start(&kp.public()).unwrap();
        let mut body = (noise.len() as u16).to_le_bytes().to_vec();
        body.extend(&noise);
        let f = encode_handshake_frame(PROTOCOL_VERSION, HelloKind::NoiseReply, &body);
        prop_assert!(init.handle_reply(&f).is_err());
    }

    #[test]
    fn random_tokens_never_open(
        bytes in vec(any::<u8>(), 0..300),
        format_byte in prop_oneof![Just(TOKEN_FORMAT), any::<u8>()],
        now in any::<u64>(),
    ) {
        let mut sealed = bytes;
        if let Some(first) = sealed.first_mut() {
            *first = format_byte;
        }
        prop_assert!(ConnectToken::open(&sealed, &fixed_key(2), 7, now).is_err());
    }

    #[test]
    fn random_packets_never_open(bytes in vec(any::<u8>(), 0..600), session_id in any::<u64>(), as_session in any::<bool>()) {
        let keys = ClientSessionKeys::derive(&[9; 32], &[8; 32]).unwrap();
        let mut stream = keys.stream(Side::Responder);
        prop_assert!(stream.opener.open(&bytes).is_err());
        let mut dg = keys.datagram(Side::Responder, session_id);
        // Half the time the header names the session, so the cheap header
        // checks pass and the datagram reaches the window and AES-GCM.
        let mut d = bytes.clone();
        if as_session && d.len() >= 9 {
            d[0] = DATAGRAM_SESSION;
            d[1..9].copy_from_slice(&session_id.to_le_bytes());
        }
        prop_assert!(dg.opener.open(&d).is_err());
        let st = dg.opener.stats();
        prop_assert_eq!(st.accepted, 0);
        prop_assert_eq!(st.auth_failures + st.replays + st.stale, 1);
        if as_session && d.len() >= 33 {
            prop_assert_eq!(datagram_session_id(&d), Some(session_id));
        }
    }
}

fn master_keypair() -> MasterKeypair {
    use std::sync::OnceLock;
    static KP: OnceLock<MasterKeypair> = OnceLock::new();
    KP.get_or_init(|| MasterKeypair::generate().unwrap())
        .clone()
}

fn check_hello_cuts(hello: &[u8], extra: u8) -> Result<(), TestCaseError> {
    for cut in 0..hello.len() {
        prop_assert_eq!(
            parse_hello(&hello[..cut]),
            Err(HandshakeError::Malformed(DecodeError::Truncated)),
            "cut {}",
            cut
        );
    }
    let mut longer = hello.to_vec();
    longer.push(extra);
    prop_assert_eq!(
        parse_hello(&longer),
        Err(HandshakeError::Malformed(DecodeError::TrailingBytes(1)))
    );
    Ok(())
}

// ---------------------------------------------------------------- fixed cases

#[test]
fn client_master_hello_round_trips_and_cuts_are_malformed() {
    let kp = master_keypair();
    let (_, hello) = ClientMasterInitiator::start(&kp.public()).unwrap();
    let Hello::ClientMaster { noise } = parse_hello(&hello).unwrap() else {
        panic!("not a client-master hello")
    };
    // NK's first message: the ephemeral key and the tag of an empty payload.
    assert_eq!(noise.len(), 32 + 16);
    assert!(respond_client_master(&kp, &noise).is_ok());
    check_hello_cuts(&hello, 0).unwrap();
}

#[test]
fn goodbye_carries_every_reason() {
    for reason in DisconnectReason::ALL {
        let g = Goodbye {
            reason,
            message: reason.description().to_owned(),
        };
        check_message(&ClusterToMaster::Disconnect(g.clone()), 0).unwrap();
        check_message(&MasterToCluster::Disconnect(g.clone()), 0).unwrap();
        check_message(&ClientToMaster::Disconnect(g.clone()), 0).unwrap();
        check_message(&MasterToClient::Disconnect(g.clone()), 0).unwrap();
        check_message(&MasterToClient::JoinFailed(g.clone()), 0).unwrap();
        check_message(&ClientToCluster::Disconnect(g.clone()), 0).unwrap();
        check_message(&ClusterToClient::Disconnect(Goodbye::new(reason)), 0).unwrap();
    }
}

#[test]
fn unknown_reason_codes_decode_as_unknown() {
    let known: Vec<u8> = DisconnectReason::ALL.iter().map(|r| r.code()).collect();
    for code in (0..=u8::MAX).filter(|c| !known.contains(c)) {
        let bytes = [0x03, code, 0, 0];
        assert_eq!(
            ClientToCluster::decode(&bytes).unwrap(),
            ClientToCluster::Disconnect(Goodbye::new(DisconnectReason::Unknown)),
            "code {code}"
        );
    }
}

#[test]
fn join_targets_round_trip_and_unknown_kind_is_invalid() {
    for t in [
        JoinTarget::Auto,
        JoinTarget::Id(0),
        JoinTarget::Id(u64::MAX),
    ] {
        check_message(&ClientToMaster::Join(t), 0).unwrap();
    }
    assert_eq!(
        ClientToMaster::decode(&[0x22, 2]),
        Err(DecodeError::Invalid("unknown join target kind"))
    );
}

#[test]
fn booleans_other_than_zero_and_one_are_invalid() {
    let mut list = MasterToClient::ClusterList(vec![ClusterInfo {
        id: 1,
        name: "a".into(),
        address: "b".into(),
        tcp_port: 1,
        udp_port: 2,
        players: 3,
        capacity: 4,
        locked: true,
    }])
    .to_bytes()
    .unwrap();
    *list.last_mut().unwrap() = 2;
    assert_eq!(
        MasterToClient::decode(&list),
        Err(DecodeError::Invalid("boolean is neither 0 nor 1"))
    );
    // Reserved is one type byte and one boolean, nothing else.
    let reserved = ClusterToMaster::Reserved { reserved: true };
    assert_eq!(reserved.to_bytes().unwrap(), [0x1D, 1]);
    assert_eq!(
        ClusterToMaster::decode(&[0x1D, 2]),
        Err(DecodeError::Invalid("boolean is neither 0 nor 1"))
    );
    assert!(ClusterToMaster::decode(&[0x1D, 0, 0]).is_err());
    assert!(ClusterToMaster::decode(&[0x1D]).is_err());
}

#[test]
fn non_utf8_text_is_invalid() {
    let bytes = [0x29, 2, 0, 0xC3, 0x28];
    assert_eq!(
        MasterToClient::decode(&bytes),
        Err(DecodeError::Invalid("text is not valid UTF-8"))
    );
}

/// A message that belongs on another link is an unknown type, not a
/// misread: every type byte is either known to the link or refused by name.
#[test]
fn every_type_byte_is_known_or_unknown() {
    fn check<M: Message + Debug>(known: &[u8]) {
        for t in 0..=u8::MAX {
            let mut bytes = vec![t];
            bytes.extend([0u8; 64]);
            let r = M::decode(&bytes);
            if known.contains(&t) {
                assert!(
                    !matches!(r, Err(DecodeError::UnknownType(_))),
                    "{t:#04x} should be known: {r:?}"
                );
            } else {
                assert_eq!(r.unwrap_err(), DecodeError::UnknownType(t));
            }
        }
    }
    check::<ClusterToMaster>(&[
        0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x1D,
    ]);
    check::<MasterToCluster>(&[0x01, 0x02, 0x03, 0x18, 0x19, 0x1A, 0x1B, 0x1C]);
    check::<ClientToMaster>(&[0x01, 0x02, 0x03, 0x20, 0x21, 0x22]);
    check::<MasterToClient>(&[0x01, 0x02, 0x03, 0x28, 0x29, 0x2A, 0x2B, 0x2C]);
    check::<ClientToCluster>(&[0x01, 0x02, 0x03, 0x30, 0x31]);
    check::<ClusterToClient>(&[0x01, 0x02, 0x03, 0x38, 0x39, 0x3A, 0x3B, 0x3C]);
    use sustenet_proto::instance::{AdminToMaster, AgentToMaster, MasterToAdmin, MasterToAgent};
    check::<AgentToMaster>(&[0x01, 0x02, 0x03, 0x40, 0x41, 0x42, 0x43]);
    check::<MasterToAgent>(&[0x01, 0x02, 0x03, 0x48, 0x49, 0x4A]);
    check::<AdminToMaster>(&[0x01, 0x02, 0x03, 0x50, 0x51, 0x52]);
    check::<MasterToAdmin>(&[0x01, 0x02, 0x03, 0x58, 0x59, 0x5A, 0x5B, 0x5C, 0x5D]);
    assert_eq!(ClientToMaster::decode(&[]), Err(DecodeError::Truncated));
}

// ---------------------------------------------------------------- caps

fn too_long(len: usize, max: usize) -> Result<Vec<u8>, EncodeError> {
    Err(EncodeError::TooLong { len, max })
}

fn info(name: String, address: String) -> ClusterInfo {
    ClusterInfo {
        id: 1,
        name,
        address,
        tcp_port: 1,
        udp_port: 2,
        players: 0,
        capacity: 0,
        locked: false,
    }
}

fn ticket_with(token: Vec<u8>) -> Ticket {
    Ticket {
        cluster: info("n".into(), "a".into()),
        client_id: 1,
        expires_at_ms: 2,
        session_secret: [3; 32].into(),
        token,
    }
}

#[test]
fn text_over_its_cap_is_refused() {
    let over = |max: usize| "x".repeat(max + 1);
    let bye = Goodbye {
        reason: DisconnectReason::Kicked,
        message: over(TEXT_MAX),
    };
    let t = TEXT_MAX;
    assert_eq!(
        ClusterToMaster::Disconnect(bye.clone()).to_bytes(),
        too_long(t + 1, t)
    );
    assert_eq!(
        MasterToCluster::Disconnect(bye.clone()).to_bytes(),
        too_long(t + 1, t)
    );
    assert_eq!(
        ClientToMaster::Disconnect(bye.clone()).to_bytes(),
        too_long(t + 1, t)
    );
    assert_eq!(
        MasterToClient::Disconnect(bye.clone()).to_bytes(),
        too_long(t + 1, t)
    );
    assert_eq!(
        MasterToClient::JoinFailed(bye.clone()).to_bytes(),
        too_long(t + 1, t)
    );
    assert_eq!(
        ClientToCluster::Disconnect(bye.clone()).to_bytes(),
        too_long(t + 1, t)
    );
    assert_eq!(
        ClusterToClient::Disconnect(bye).to_bytes(),
        too_long(t + 1, t)
    );
    assert_eq!(
        MasterToClient::LoginFailed {
            message: over(TEXT_MAX)
        }
        .to_bytes(),
        too_long(t + 1, t)
    );

    let reg = |name: String, address: String| {
        ClusterToMaster::Register(Register {
            cluster_id: 1,
            name,
            address,
            tcp_port: 1,
            udp_port: 1,
            capacity: 1,
        })
    };
    assert_eq!(
        reg(over(NAME_MAX), "a".into()).to_bytes(),
        too_long(NAME_MAX + 1, NAME_MAX)
    );
    assert_eq!(
        reg("n".into(), over(ADDRESS_MAX)).to_bytes(),
        too_long(ADDRESS_MAX + 1, ADDRESS_MAX)
    );
    // Caps count bytes: 33 two-byte characters are 66 bytes.
    assert_eq!(
        reg("é".repeat(33), "a".into()).to_bytes(),
        too_long(66, NAME_MAX)
    );
    assert!(
        reg("é".repeat(32), "a".repeat(ADDRESS_MAX))
            .to_bytes()
            .is_ok()
    );

    assert_eq!(
        ClientToMaster::Login {
            username: over(USERNAME_MAX),
            secret: vec![]
        }
        .to_bytes(),
        too_long(USERNAME_MAX + 1, USERNAME_MAX)
    );
    assert_eq!(
        ClientToMaster::Login {
            username: "u".into(),
            secret: vec![0; SECRET_MAX + 1]
        }
        .to_bytes(),
        too_long(SECRET_MAX + 1, SECRET_MAX)
    );
    // A length that does not even fit the u16 prefix is refused, not wrapped.
    assert_eq!(
        ClientToMaster::Login {
            username: "u".into(),
            secret: vec![0; 70_000]
        }
        .to_bytes(),
        too_long(70_000, SECRET_MAX)
    );
}

#[test]
fn cluster_lists_over_their_cap_are_refused() {
    let one = info("n".into(), "a".into());
    let full = MasterToClient::ClusterList(vec![one.clone(); CLUSTER_LIST_MAX]);
    let bytes = full.to_bytes().unwrap();
    assert_eq!(MasterToClient::decode(&bytes).unwrap(), full);
    assert_eq!(
        MasterToClient::ClusterList(vec![one.clone(); CLUSTER_LIST_MAX + 1]).to_bytes(),
        too_long(CLUSTER_LIST_MAX + 1, CLUSTER_LIST_MAX)
    );
    assert_eq!(
        MasterToClient::ClusterList(vec![one; 70_000]).to_bytes(),
        too_long(70_000, CLUSTER_LIST_MAX)
    );
    assert_eq!(
        MasterToClient::ClusterList(vec![info("x".repeat(NAME_MAX + 1), "a".into())]).to_bytes(),
        too_long(NAME_MAX + 1, NAME_MAX)
    );
    // On the wire: a count over the cap, and a count the body cannot hold.
    let mut over = vec![0x2A];
    over.extend(((CLUSTER_LIST_MAX + 1) as u16).to_le_bytes());
    assert_eq!(
        MasterToClient::decode(&over),
        Err(DecodeError::TooLong {
            len: CLUSTER_LIST_MAX + 1,
            max: CLUSTER_LIST_MAX
        })
    );
    assert_eq!(
        MasterToClient::decode(&[0x2A, 0xFF, 0x0F]),
        Err(DecodeError::Truncated)
    );
}

#[test]
fn tokens_over_their_cap_are_refused() {
    let at_cap = ticket_with(vec![1; TOKEN_MAX]);
    check_message(&MasterToClient::Ticket(at_cap.clone()), 0).unwrap();
    check_message(&ClusterToClient::Redirect(at_cap), 0).unwrap();
    let over = ticket_with(vec![1; TOKEN_MAX + 1]);
    assert_eq!(
        MasterToClient::Ticket(over.clone()).to_bytes(),
        too_long(TOKEN_MAX + 1, TOKEN_MAX)
    );
    assert_eq!(
        ClusterToClient::Redirect(over).to_bytes(),
        too_long(TOKEN_MAX + 1, TOKEN_MAX)
    );

    let keys = [1u8; 32];
    assert_eq!(
        client_cluster_hello(&vec![0; TOKEN_MAX + 1], &keys).err(),
        Some(HandshakeError::Malformed(DecodeError::TooLong {
            len: TOKEN_MAX + 1,
            max: TOKEN_MAX
        }))
    );

    // The largest token the master can seal still fits a ticket and a hello.
    let mut rng = StdRng::seed_from_u64(4);
    let big = ConnectToken {
        client_id: 1,
        cluster_id: 2,
        token_id: [0; 16],
        expires_at_ms: 3,
        session_secret: [0; 32].into(),
        user_data: vec![7; USER_DATA_MAX],
    };
    let sealed = big.seal(&fixed_key(3), &mut rng).unwrap();
    assert!(sealed.len() <= TOKEN_MAX);
    assert!(client_cluster_hello(&sealed, &keys).is_ok());
    let over = ConnectToken {
        user_data: vec![7; USER_DATA_MAX + 1],
        ..big
    };
    assert_eq!(
        over.seal(&fixed_key(3), &mut rng),
        too_long(USER_DATA_MAX + 1, USER_DATA_MAX)
    );
}

#[test]
fn key_names_over_their_cap_are_refused() {
    let mut rng = StdRng::seed_from_u64(5);
    assert!(ClusterInitiator::start(&"k".repeat(KEY_NAME_MAX), fixed_key(1), &mut rng).is_ok());
    assert_eq!(
        ClusterInitiator::start(&"k".repeat(KEY_NAME_MAX + 1), fixed_key(1), &mut rng).err(),
        Some(HandshakeError::Malformed(DecodeError::TooLong {
            len: KEY_NAME_MAX + 1,
            max: KEY_NAME_MAX
        }))
    );
}

#[test]
fn data_payloads_over_their_cap_are_refused() {
    let at_cap = ClientToCluster::Data {
        command: 1,
        payload: vec![0; DATA_MAX],
    };
    let bytes = at_cap.to_bytes().unwrap();
    assert_eq!(ClientToCluster::decode(&bytes).unwrap(), at_cap);
    assert_eq!(
        ClientToCluster::Data {
            command: 1,
            payload: vec![0; DATA_MAX + 1]
        }
        .to_bytes(),
        too_long(DATA_MAX + 1, DATA_MAX)
    );
    assert_eq!(
        ClusterToClient::Data {
            command: 1,
            payload: vec![0; DATA_MAX + 1]
        }
        .to_bytes(),
        too_long(DATA_MAX + 1, DATA_MAX)
    );
    // On the wire, a length over the cap is refused before anything is read.
    let mut wire = vec![0x39, 0, 0];
    wire.extend(u32::MAX.to_le_bytes());
    assert_eq!(
        ClusterToClient::decode(&wire),
        Err(DecodeError::TooLong {
            len: u32::MAX as usize,
            max: DATA_MAX
        })
    );
}

/// A refused encode leaves the caller's buffer as it was, so a sender that
/// skips the bad message does not send half of it.
#[test]
fn refused_encode_leaves_the_buffer_untouched() {
    let mut out = vec![1, 2, 3];
    let bad = ClusterToClient::Redirect(ticket_with(vec![0; TOKEN_MAX + 1]));
    assert!(bad.encode(&mut out).is_err());
    assert_eq!(out, [1, 2, 3]);
    let bad = ClientToMaster::Login {
        username: "u".into(),
        secret: vec![0; SECRET_MAX + 1],
    };
    assert!(bad.encode(&mut out).is_err());
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn on_the_wire_lengths_over_their_caps_are_refused() {
    let mut login = vec![0x20];
    login.extend(((USERNAME_MAX + 1) as u16).to_le_bytes());
    login.extend(vec![b'u'; USERNAME_MAX + 1]);
    login.extend([0, 0]);
    assert_eq!(
        ClientToMaster::decode(&login),
        Err(DecodeError::TooLong {
            len: USERNAME_MAX + 1,
            max: USERNAME_MAX
        })
    );
    let mut rec = vec![0x01, 0, 0];
    rec.extend(((MAX_UNRELIABLE_PAYLOAD + 1) as u16).to_le_bytes());
    rec.extend(vec![0; MAX_UNRELIABLE_PAYLOAD + 1]);
    assert_eq!(
        decode_records(&rec),
        Err(DecodeError::TooLong {
            len: MAX_UNRELIABLE_PAYLOAD + 1,
            max: MAX_UNRELIABLE_PAYLOAD
        })
    );
}

#[test]
fn unreliable_payloads_over_their_cap_are_refused() {
    let over = Record::Data {
        command: 1,
        payload: vec![0; MAX_UNRELIABLE_PAYLOAD + 1],
    };
    let mut b = Batch::new();
    assert_eq!(
        b.push(&over),
        Err(DatagramError::TooLarge {
            len: MAX_UNRELIABLE_PAYLOAD + 1,
            max: MAX_UNRELIABLE_PAYLOAD
        })
    );
    assert!(b.is_empty());
    assert_eq!(
        datagram::single(&over),
        Err(DatagramError::TooLarge {
            len: MAX_UNRELIABLE_PAYLOAD + 1,
            max: MAX_UNRELIABLE_PAYLOAD
        })
    );
    let at_cap = Record::Data {
        command: 1,
        payload: vec![0; MAX_UNRELIABLE_PAYLOAD],
    };
    let plain = datagram::single(&at_cap).unwrap();
    assert_eq!(plain.len(), MAX_DATAGRAM_PLAINTEXT);
    assert_eq!(decode_records(&plain).unwrap(), vec![at_cap]);
}
