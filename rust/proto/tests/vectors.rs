//! The worked examples of docs/protocol.md §15, recomputed here and found in
//! the document byte for byte: every vector a client author copies from §15
//! is what this crate produces. Derivations are also recomputed with HKDF
//! directly from the text of §6.2, §8.1 and §9.1, not through the crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hkdf::Hkdf;
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use sustenet_proto::crypto::{
    CLIENT_CLUSTER_SALT, CLUSTER_MASTER_SALT, JOIN_PROOF_SALT, TOKEN_KEY_SALT,
};
use sustenet_proto::datagram::{Batch, Record};
use sustenet_proto::handshake::{
    ClusterInitiator, HelloKind, NOISE_PATTERN, NOISE_PROLOGUE, ResumeClaim, accept_client,
    client_cluster_hello, client_resume_hello, encode_handshake_frame, reject_frame,
    respond_client_master, respond_cluster,
};
use sustenet_proto::{
    ClientSessionKeys, ClientToCluster, ClientToMaster, ClusterToClient, ClusterToMaster,
    ConnectToken, DisconnectReason, Goodbye, JoinTarget, Key, MasterKeypair, Message,
    PROTOCOL_VERSION, Side, Status, UsedTokens,
};

const DOC: &str = include_str!("../../../docs/protocol.md");

/// Hands out fixed bytes as randomness, so sealed vectors are reproducible.
struct Fixed(Vec<u8>);

impl RngCore for Fixed {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        assert!(
            self.0.len() >= dst.len(),
            "the vector needs more fixed bytes"
        );
        let rest = self.0.split_off(dst.len());
        dst.copy_from_slice(&self.0);
        self.0 = rest;
    }
}

impl CryptoRng for Fixed {}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unhex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

/// The bytes of each code block of §15. Each line is split into columns at
/// runs of three or more spaces; a column made only of two-digit hex tokens
/// (and `NN × COUNT`, expanded) is bytes, any other column an annotation.
fn doc_blocks() -> Vec<Vec<u8>> {
    let section = &DOC[DOC.find("## 15. Worked examples").unwrap()..];
    let section = &section[..section.find("\n## 16.").unwrap()];
    let mut blocks = Vec::new();
    for (i, part) in section.split("```").enumerate() {
        if i % 2 == 0 {
            continue;
        }
        let mut out: Vec<u8> = Vec::new();
        for line in part.lines() {
            for column in line.split("   ") {
                if let Some(bytes) = hex_column(column) {
                    out.extend(bytes);
                }
            }
        }
        blocks.push(out);
    }
    blocks
}

fn hex_column(column: &str) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    let mut tokens = column.split_whitespace();
    while let Some(t) = tokens.next() {
        if t == "×" {
            let n: usize = tokens.next()?.parse().ok()?;
            let last = *out.last()?;
            out.extend(std::iter::repeat_n(last, n.checked_sub(1)?));
        } else if t.len() == 2 && t.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push(u8::from_str_radix(t, 16).ok()?);
        } else {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

#[track_caller]
fn documented(what: &str, bytes: &[u8]) {
    if std::env::var_os("SUSTENET_PRINT_VECTORS").is_some() {
        // For writing §15: prints every vector instead of checking it.
        println!("{what} ({} bytes):\n{}\n", bytes.len(), hex(bytes));
        return;
    }
    let found = doc_blocks()
        .iter()
        .any(|b| b.windows(bytes.len()).any(|w| w == bytes));
    assert!(
        found,
        "§15 does not show {what} ({} bytes):\n{}",
        bytes.len(),
        hex(bytes)
    );
}

fn hkdf(ikm: &[u8], salt: &[u8], label: &str) -> [u8; 32] {
    let mut k = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(label.as_bytes(), &mut k)
        .unwrap();
    k
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn the_documents_version_is_the_crates() {
    assert!(DOC.contains(&format!("(currently {PROTOCOL_VERSION})")));
}

#[test]
fn messages_15_1() {
    let login = ClientToMaster::Login {
        username: "ann".into(),
        secret: b"pw".to_vec(),
    };
    documented("Login", &login.to_bytes().unwrap());
    let others: Vec<Vec<u8>> = vec![
        ClientToMaster::ListClusters.to_bytes().unwrap(),
        ClientToMaster::Join(JoinTarget::Auto).to_bytes().unwrap(),
        ClientToMaster::Join(JoinTarget::Id(5)).to_bytes().unwrap(),
        ClientToMaster::Ping(0x0102030405060708).to_bytes().unwrap(),
        ClientToMaster::Disconnect(Goodbye {
            reason: DisconnectReason::Requested,
            message: "bye".into(),
        })
        .to_bytes()
        .unwrap(),
        ClusterToMaster::Status(Status {
            players: 3,
            capacity: 100,
            fragments: 0,
        })
        .to_bytes()
        .unwrap(),
        ClusterToClient::Welcome {
            player_id: 7,
            session_id: 9,
            udp_port: 6257,
        }
        .to_bytes()
        .unwrap(),
        ClientToCluster::Data {
            command: 1,
            payload: b"hi".to_vec(),
        }
        .to_bytes()
        .unwrap(),
    ];
    for m in others {
        documented("a message", &m);
    }
}

const CLUSTER_NONCE: &str = "61 18 30 d3 64 1a 68 f9 4a 69 0d cc 25 d1 f4 b0 da c9 48 32 5a c1 8f 6d d3 25 64 37 17 35 f3 2c";
const MASTER_NONCE: &str = "54 74 3d c5 e2 4d 2a 41 3b 15 95 84 c1 22 6d f6 ec cf c4 ca a8 cd 7b 63 c7 cb 56 ff 66 cd 60 b5";

#[test]
fn hellos_15_2() {
    let (_, hello) = ClusterInitiator::start(
        "alpha",
        Key::from_bytes([0x42; 32]),
        &mut Fixed(unhex(CLUSTER_NONCE)),
    )
    .unwrap();
    let mut framed = (hello.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(&hello);
    documented("the cluster hello frame", &framed);
    let client_master_prefix = cat(&[
        &57u32.to_le_bytes(),
        &encode_handshake_frame(PROTOCOL_VERSION, HelloKind::ClientMasterHello, &[0x30, 0]),
    ]);
    documented("the client-master hello prefix", &client_master_prefix);
    documented(
        "a refusal",
        &reject_frame(DisconnectReason::ServerFull, "full"),
    );
}

#[test]
fn cluster_master_15_3() {
    let key = [0x42u8; 32];
    let salt = cat(&[
        CLUSTER_MASTER_SALT,
        &unhex(CLUSTER_NONCE),
        &unhex(MASTER_NONCE),
        b"alpha",
    ]);
    documented("c2m", &hkdf(&key, &salt, "cluster->master"));
    documented("m2c", &hkdf(&key, &salt, "master->cluster"));
    let (init, _) = ClusterInitiator::start(
        "alpha",
        Key::from_bytes(key),
        &mut Fixed(unhex(CLUSTER_NONCE)),
    )
    .unwrap();
    let (mut master, challenge) = respond_cluster(
        Some(&Key::from_bytes(key)),
        "alpha",
        &unhex(CLUSTER_NONCE).try_into().unwrap(),
        &mut Fixed(unhex(MASTER_NONCE)),
    )
    .unwrap();
    documented("the challenge", &challenge);
    let mut cluster = init.handle_challenge(&challenge).unwrap();
    let status = ClusterToMaster::Status(Status {
        players: 1,
        capacity: 2,
        fragments: 0,
    })
    .to_bytes()
    .unwrap();
    let sealed = cluster.sealer.seal(&status).unwrap();
    documented("the sealed Status", &sealed);
    assert_eq!(master.opener.open(&sealed).unwrap(), status);
}

const SECRET: [u8; 32] = [0x11; 32];
const JOIN_NONCE: [u8; 32] = [0x33; 32];

#[test]
fn client_cluster_15_4() {
    let salt = cat(&[CLIENT_CLUSTER_SALT, &JOIN_NONCE]);
    for label in [
        "tcp client->cluster",
        "tcp cluster->client",
        "udp client->cluster",
        "udp cluster->client",
        "resume",
    ] {
        documented(label, &hkdf(&SECRET, &salt, label));
    }
    documented(
        "the join proof key",
        &hkdf(&SECRET, JOIN_PROOF_SALT, "join proof"),
    );

    // The hello's proof, the cluster's accept and its Welcome.
    let cluster_key = Key::from_bytes([0x42; 32]);
    let token = ConnectToken {
        client_id: 7,
        cluster_id: 1,
        token_id: [0xaa; 16],
        expires_at_ms: 1_700_000_000_000,
        session_secret: SECRET.into(),
        user_data: b"ann".to_vec(),
    };
    let sealed = token.seal(&cluster_key, &mut Fixed(vec![0; 12])).unwrap();
    let (hello, init) = client_cluster_hello(&sealed, &SECRET).unwrap();
    let proof = &hello[hello.len() - 43..];
    documented("the proof", proof);
    let mut accepted = accept_client(
        &sealed,
        proof,
        &cluster_key,
        1,
        0,
        &mut UsedTokens::new(),
        &mut Fixed(JOIN_NONCE.to_vec()),
    )
    .unwrap();
    documented("the JoinAccept", &accepted.accept_frame);
    let welcome = ClusterToClient::Welcome {
        player_id: 7,
        session_id: 9,
        udp_port: 6257,
    }
    .to_bytes()
    .unwrap();
    let sealed_welcome = accepted.session.sealer.seal(&welcome).unwrap();
    documented("the sealed Welcome", &sealed_welcome);
    let (keys, mut client) = init.handle_accept(&accepted.accept_frame).unwrap();
    assert_eq!(client.opener.open(&sealed_welcome).unwrap(), welcome);

    // The client's first datagram and first reconnect.
    let mut dg = keys.datagram(Side::Initiator, 9);
    let mut batch = Batch::new();
    batch.push(&Record::Ping(5)).unwrap();
    let ping = batch.take();
    documented("the Ping datagram", &dg.sealer.seal(&ping).unwrap());
    let claim = ResumeClaim {
        received: 5,
        attempt: 1,
    };
    let (resume, _) = client_resume_hello(&keys, 9, &[0x22; 32], claim).unwrap();
    documented("the resume hello", &resume);
    let _ = ClientSessionKeys::derive(&SECRET, &JOIN_NONCE).unwrap();
}

const TOKEN_NONCE: &str = "a6 b3 b3 1c 1c 3f 35 85 ea 88 e5 27";

#[test]
fn token_15_5() {
    let cluster_key = Key::from_bytes([0x42; 32]);
    let token_key = hkdf(cluster_key.as_bytes(), TOKEN_KEY_SALT, "connect token");
    documented("the token key", &token_key);
    let token = ConnectToken {
        client_id: 7,
        cluster_id: 1,
        token_id: [0xaa; 16],
        expires_at_ms: 1_700_000_000_000,
        session_secret: SECRET.into(),
        user_data: b"ann".to_vec(),
    };
    let sealed = token
        .seal(&cluster_key, &mut Fixed(unhex(TOKEN_NONCE)))
        .unwrap();
    documented("the sealed token", &sealed);
    assert_eq!(
        ConnectToken::open(&sealed, &cluster_key, 1, 0).unwrap(),
        token
    );
}

#[test]
fn noise_nk_15_6() {
    let params: snow::params::NoiseParams = NOISE_PATTERN.parse().unwrap();
    let master = MasterKeypair::from_private_base64(&base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        [0x01u8; 32],
    ))
    .unwrap();
    documented("the master public key", &master.public().0);
    let mut client = snow::Builder::new(params.clone())
        .prologue(NOISE_PROLOGUE)
        .unwrap()
        .remote_public_key(&master.public().0)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&[0x02; 32])
        .build_initiator()
        .unwrap();
    let mut server = snow::Builder::new(params)
        .prologue(NOISE_PROLOGUE)
        .unwrap()
        .local_private_key(&[0x01; 32])
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&[0x03; 32])
        .build_responder()
        .unwrap();
    let mut m1 = [0u8; 128];
    let n1 = client.write_message(&[], &mut m1).unwrap();
    documented("Noise message 1", &m1[..n1]);
    // The master's own code accepts it.
    assert!(respond_client_master(&master, &m1[..n1]).is_ok());
    let mut scratch = [0u8; 128];
    server.read_message(&m1[..n1], &mut scratch).unwrap();
    let mut m2 = [0u8; 128];
    let n2 = server.write_message(&[], &mut m2).unwrap();
    documented("Noise message 2", &m2[..n2]);
    client.read_message(&m2[..n2], &mut scratch).unwrap();
    let client = client.into_stateless_transport_mode().unwrap();
    let server = server.into_stateless_transport_mode().unwrap();
    let login = ClientToMaster::Login {
        username: "ann".into(),
        secret: b"pw".to_vec(),
    }
    .to_bytes()
    .unwrap();
    let mut body = 0u64.to_le_bytes().to_vec();
    let mut ct = [0u8; 64];
    let n = client.write_message(0, &login, &mut ct).unwrap();
    body.extend_from_slice(&ct[..n]);
    documented("the sealed Login", &body);
    let mut plain = [0u8; 64];
    let n = server.read_message(0, &body[8..], &mut plain).unwrap();
    assert_eq!(&plain[..n], &login[..]);
}
