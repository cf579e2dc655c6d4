//! Every attack of docs/security.md against real `sustenet master` and
//! `sustenet cluster` processes while a normal client plays: its reliable
//! echoes all come back, in order, once each, and its session never drops.
//! On UDP, every address that never proved itself gets no more datagrams and
//! no more bytes than it sent (amplification ≤ 1), counted on the attacker's
//! own sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../server/tests/common/mod.rs"]
mod common;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{HandCluster, MasterInfo, Player, Raw, RawMasterClient, RawPlayer, join};
use rand::RngCore;
use support::{ClusterSpec, Deployment};
use sustenet_client::ClientEvent;
use sustenet_proto::crypto::{DatagramOpener, DatagramSealer};
use sustenet_proto::datagram::{self, Record};
use sustenet_proto::{
    ClientToMaster, ClusterToMaster, DisconnectReason, JoinTarget, MasterToClient, MasterToCluster,
    Side, handshake,
};
use sustenet_server::EchoChat;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// Bytes and datagrams one way.
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    datagrams: usize,
    bytes: usize,
}

impl Count {
    fn add(&mut self, n: usize) {
        self.datagrams += 1;
        self.bytes += n;
    }
}

/// An attacker's UDP socket that never proves itself: what it sent and got.
struct Unproven {
    sock: UdpSocket,
    sent: Count,
    got: Count,
}

impl Unproven {
    async fn new(cluster: SocketAddr) -> Unproven {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(cluster).await.unwrap();
        Unproven {
            sock,
            sent: Count::default(),
            got: Count::default(),
        }
    }

    async fn send(&mut self, d: &[u8]) {
        self.sock.send(d).await.unwrap();
        self.sent.add(d.len());
    }

    /// Counts every datagram that arrives until none came for a while (the
    /// cluster answers within moments; the quiet period only ends counting).
    async fn count_answers(&mut self) {
        let mut buf = vec![0u8; 65_536];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(700), self.sock.recv(&mut buf)).await
        {
            self.got.add(n);
        }
    }
}

/// The normal client: reliable echoes in bursts and unreliable echoes, until
/// told to stop. Returns how many reliable echoes came back (each exactly
/// once, in order) and how many unreliable ones.
async fn play(player: Player, stop: Arc<AtomicBool>) -> (Player, u64, u64) {
    let mut next = 0u64;
    let mut unreliable = 0u64;
    while !stop.load(Ordering::SeqCst) {
        // Paced, so the machine's other work goes on.
        tokio::time::sleep(Duration::from_millis(5)).await;
        for i in 0..8u64 {
            let mut p = b"rel".to_vec();
            p.extend_from_slice(&(next + i).to_le_bytes());
            player.client.send(EchoChat::ECHO, p).unwrap();
        }
        player
            .client
            .send_unreliable(EchoChat::ECHO, b"unrel".to_vec())
            .unwrap();
        let want_until = next + 8;
        while next < want_until {
            let ev = tokio::time::timeout(common::GUARD, player.events.recv_async())
                .await
                .expect("the normal client's echoes stopped")
                .unwrap();
            match ev {
                ClientEvent::Packet {
                    reliable: true,
                    payload,
                    ..
                } => {
                    let mut want = b"rel".to_vec();
                    want.extend_from_slice(&next.to_le_bytes());
                    assert_eq!(
                        payload, want,
                        "a reliable echo was lost, repeated or reordered"
                    );
                    next += 1;
                }
                ClientEvent::Packet {
                    reliable: false, ..
                } => unreliable += 1,
                ClientEvent::Disconnected { reason, message } => {
                    panic!("the normal client was disconnected: {reason} {message}")
                }
                ClientEvent::Reconnecting { reason, message } => {
                    panic!("the normal client's connection dropped: {reason} {message}")
                }
                ClientEvent::Error(e) => panic!("the normal client got an error: {e}"),
                _ => {}
            }
        }
    }
    (player, next, unreliable)
}

fn limits_toml() -> &'static str {
    // A small handshake pool so that a flood from one address reaches the
    // per-address limit with few sockets.
    "[limits]\nmax_handshakes = 64\nmax_handshakes_per_address = 8\nmax_known_handshakes = 16\n\
     first_byte_timeout_ms = 1000\nhandshake_timeout_ms = 3000\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_while_a_client_plays() {
    let dep = Deployment::new(&format!(
        "[master]\nmax_clusters_per_key = 4\n{}",
        limits_toml()
    ));
    let spec = dep.cluster_spec("alpha", "max_connections = 32", "", limits_toml());
    let mut master = dep.start_master();
    let mut cluster = dep.start_cluster(&spec);
    let info = MasterInfo {
        addr: dep.master_addr(),
        public: dep.master_public,
    };
    support::wait_listening(dep.master_addr()).await;
    let list = common::wait_for_list(&info, "the cluster", |l| l.len() == 1).await;

    let player = join(&info, "normal", JoinTarget::Auto).await;
    player.udp_up().await;
    let victim = player.id;
    let stop = Arc::new(AtomicBool::new(false));
    let playing = tokio::spawn(play(player, stop.clone()));

    let mut amplification = Amplification::default();
    garbage_and_huge_lengths(&dep, &spec).await;
    half_open_flood(&info, &dep, &spec).await;
    ticket_floods(&info).await;
    cluster_key_holder_claims(&dep, victim, list[0].id).await;
    copied_hello_and_session_attacks(&info, &spec, &mut amplification).await;
    ping_request_flood(&spec, &mut amplification).await;
    udp_garbage(&spec, &mut amplification).await;

    stop.store(true, Ordering::SeqCst);
    let (player, reliable, unreliable) = playing.await.unwrap();
    // Still playing after everything, both channels.
    player.echo(b"after the attacks").await;
    player.udp_up().await;
    master.assert_running();
    cluster.assert_running();
    let (sent, got) = (amplification.sent, amplification.got);
    eprintln!(
        "normal client: {reliable} reliable echoes, all in order, {unreliable} unreliable; \
         unproven addresses: {} datagrams / {} bytes in, {} / {} out (factor {:.3} datagrams, {:.3} bytes)",
        sent.datagrams,
        sent.bytes,
        got.datagrams,
        got.bytes,
        got.datagrams as f64 / sent.datagrams as f64,
        got.bytes as f64 / sent.bytes as f64
    );
    assert!(reliable >= 8, "the normal client barely played");
    assert!(
        got.datagrams <= sent.datagrams && got.bytes <= sent.bytes,
        "amplification over 1: {sent:?} in, {got:?} out"
    );
    let _ = player.client.disconnect();
    cluster.terminate();
    master.terminate();
}

/// What every unproven attacker socket sent and got, summed.
#[derive(Debug, Default)]
struct Amplification {
    sent: Count,
    got: Count,
}

impl Amplification {
    fn add(&mut self, s: &Unproven) {
        self.sent.datagrams += s.sent.datagrams;
        self.sent.bytes += s.sent.bytes;
        self.got.datagrams += s.got.datagrams;
        self.got.bytes += s.got.bytes;
    }
}

/// Garbage, a wrong magic, a huge frame length and a zero length, to the
/// master and the cluster: each connection is closed, nothing else changes.
async fn garbage_and_huge_lengths(dep: &Deployment, spec: &ClusterSpec) {
    for addr in [dep.master_addr(), spec.tcp_addr()] {
        let mut garbage = vec![0u8; 3000];
        rand::rng().fill_bytes(&mut garbage);
        let inputs: [&[u8]; 4] = [
            &garbage,
            b"\x00\x00\x00\x08GET / HT",
            &[0xff, 0xff, 0xff, 0x7f, 1, 2, 3],
            &[0, 0, 0, 0],
        ];
        for input in inputs {
            let mut raw = Raw::connect(addr).await;
            raw.send_bytes(input).await;
            raw.closed().await;
        }
    }
}

/// Silent connections from 127.0.0.2 kept up while a second client (from
/// 127.0.0.1) logs in and joins: the per-address limit keeps room for it.
async fn half_open_flood(info: &MasterInfo, dep: &Deployment, spec: &ClusterSpec) {
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut floods = Vec::new();
    for target in [dep.master_addr(), spec.tcp_addr()] {
        let (stop, refused) = (stop.clone(), refused.clone());
        floods.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let mut held = Vec::new();
                for _ in 0..48 {
                    let s = TcpSocket::new_v4().unwrap();
                    s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                    if let Ok(c) = s.connect(target).await {
                        held.push(c);
                    }
                }
                // Each is closed by the server: refused at once, or after the
                // first-byte deadline.
                for c in held {
                    if silent_until_closed(c).await {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    // Let the flood fill the pools, then a new player comes in through it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = join(info, "second", JoinTarget::Auto).await;
    second.echo(b"through the flood").await;
    let _ = second.client.disconnect();
    stop.store(true, Ordering::SeqCst);
    for f in floods {
        f.await.unwrap();
    }
    assert!(
        refused.load(Ordering::SeqCst) > 0,
        "the flood never met the per-address limit"
    );
}

/// Waits for the server to close a connection that sends nothing; `true`
/// when it was refused with `TooManyHandshakes`.
async fn silent_until_closed(c: TcpStream) -> bool {
    let (rd, _wr) = c.into_split();
    let mut frames = sustenet_net::FrameReader::new(rd, 4096);
    match tokio::time::timeout(common::GUARD, frames.next()).await {
        Ok(Ok(Some(f))) => handshake::check_refusal(&f)
            .map(|e| e.reason() == DisconnectReason::TooManyHandshakes)
            .unwrap_or(false),
        Ok(_) => false,
        Err(_) => panic!("a silent connection was never closed"),
    }
}

/// A second Login on one connection, and Join after Join leaving tickets
/// unused, from several connections of one user: refused past the caps, and
/// a new player still gets a seat.
async fn ticket_floods(info: &MasterInfo) {
    let mut conns = Vec::new();
    let mut refused = 0;
    for _ in 0..3 {
        let mut m = RawMasterClient::connect(info.addr, &info.public)
            .await
            .unwrap();
        m.login("flooder").await;
        m.writer
            .send(&ClientToMaster::Login {
                username: "flooder-again".into(),
                secret: vec![],
            })
            .await
            .unwrap();
        match m.recv().await {
            MasterToClient::LoginFailed { .. } => {}
            other => panic!("a second Login was not refused: {other:?}"),
        }
        for _ in 0..6 {
            if let Err(g) = m.join(JoinTarget::Auto).await {
                assert_eq!(g.reason, DisconnectReason::TooManyTickets, "{g:?}");
                refused += 1;
            }
        }
        conns.push(m);
    }
    // 4 per connection, 8 per user: 18 asked, 8 given.
    assert_eq!(refused, 10, "the ticket caps did not hold");
    let third = join(info, "third", JoinTarget::Auto).await;
    third.echo(b"a seat is free").await;
    let _ = third.client.disconnect();
}

/// A cluster key holder registers a cluster of its own, claims the normal
/// player (`PlayerJoined` with its id) and asks for a ticket to move it onto
/// the real cluster, where it would kick the player: refused.
async fn cluster_key_holder_claims(dep: &Deployment, victim: u64, real_cluster: u64) {
    let mut hostile =
        HandCluster::register(dep.master_addr(), "alpha", dep.cluster_key.clone(), 4242).await;
    hostile
        .writer
        .send(&ClusterToMaster::PlayerJoined { client_id: victim })
        .await
        .unwrap();
    match hostile.transfer(victim, real_cluster).await {
        MasterToCluster::TransferFailed { .. } => {}
        other => panic!("a claimed player could be moved: {other:?}"),
    }
    // Filling the list with clusters under the one key: 4 at most (the real
    // one, the hostile one, two more).
    let mut more = Vec::new();
    for id in 4243..4245 {
        more.push(
            HandCluster::register(dep.master_addr(), "alpha", dep.cluster_key.clone(), id).await,
        );
    }
    let refused =
        HandCluster::try_register(dep.master_addr(), "alpha", dep.cluster_key.clone(), 4245).await;
    assert!(refused.is_err(), "a fifth cluster under one key was listed");
}

/// An attacker with its own session: a copied hello is refused; replayed and
/// tampered datagrams are dropped; a flood of Ping records and an address
/// change to a socket that never answers the challenge get at most 1×.
async fn copied_hello_and_session_attacks(
    info: &MasterInfo,
    spec: &ClusterSpec,
    amp: &mut Amplification,
) {
    let mut m = RawMasterClient::connect(info.addr, &info.public)
        .await
        .unwrap();
    m.login("attacker").await;
    let ticket = m.join(JoinTarget::Auto).await.unwrap();
    let secret: [u8; 32] = *ticket.session_secret;
    let p = RawPlayer::connect(spec.tcp_addr(), &ticket.token, &secret)
        .await
        .unwrap();
    // The same hello (same token, same proof) again on a new connection.
    let (copy, _) = handshake::client_cluster_hello(&ticket.token, &secret).unwrap();
    let mut raw = Raw::connect(spec.tcp_addr()).await;
    raw.send(&copy).await;
    assert_eq!(raw.refusal().await.reason(), DisconnectReason::TokenUsed);

    let mut sealer = p.keys.datagram(Side::Initiator, p.session_id).sealer;
    let mut proven = Proven::new(&p, spec.udp_addr()).await;
    proven.prove(&mut sealer).await;

    // Replays and tampering: the marker Ping after them is answered, the
    // replayed and tampered Pings never are.
    let original = seal(&mut sealer, &[Record::Ping(100)]);
    proven.sock.send(&original).await.unwrap();
    for _ in 0..20 {
        proven.sock.send(&original).await.unwrap();
    }
    let mut tampered = seal(&mut sealer, &[Record::Ping(101)]);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    proven.sock.send(&tampered).await.unwrap();
    proven
        .sock
        .send(&seal(&mut sealer, &[Record::Ping(102)]))
        .await
        .unwrap();
    let seen = proven.until(|r| *r == Record::Pong(102)).await;
    let pongs = |v: u64| {
        seen.iter()
            .flatten()
            .filter(|r| **r == Record::Pong(v))
            .count()
    };
    assert_eq!(pongs(100), 1, "a replayed datagram was answered");
    assert_eq!(pongs(101), 0, "a tampered datagram was answered");

    // Spoofed-source address change: authenticated datagrams full of Ping
    // records from an address that never answers the challenge.
    let mut spoofed = Unproven::new(spec.udp_addr()).await;
    for round in 0..30u64 {
        let mut b = datagram::Batch::new();
        let mut v = round * 1000;
        while b.push(&Record::Ping(v)).unwrap() {
            v += 1;
        }
        let d = sealer.seal(b.as_bytes()).unwrap();
        spoofed.send(&d).await;
    }
    spoofed.count_answers().await;
    amp.add(&spoofed);
    // The attacker's own session still works from its proven address.
    proven
        .sock
        .send(&seal(&mut sealer, &[Record::Ping(103)]))
        .await
        .unwrap();
    proven.until(|r| *r == Record::Pong(103)).await;
    drop(p.raw);
}

fn seal(sealer: &mut DatagramSealer, records: &[Record]) -> Vec<u8> {
    let mut b = datagram::Batch::new();
    for r in records {
        assert!(b.push(r).unwrap());
    }
    sealer.seal(b.as_bytes()).unwrap()
}

/// The attacker's own UDP address, proven by answering the challenge.
struct Proven {
    sock: UdpSocket,
    opener: DatagramOpener,
}

impl Proven {
    async fn new(p: &RawPlayer, cluster: SocketAddr) -> Proven {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(cluster).await.unwrap();
        Proven {
            sock,
            opener: p.keys.datagram(Side::Initiator, p.session_id).opener,
        }
    }

    async fn recv(&mut self) -> Vec<Record> {
        let mut buf = vec![0u8; 2048];
        let n = tokio::time::timeout(common::GUARD, self.sock.recv(&mut buf))
            .await
            .expect("no datagram came back")
            .unwrap();
        let plain = self.opener.open(&buf[..n]).unwrap();
        datagram::decode_records(&plain).unwrap()
    }

    async fn until(&mut self, mut want: impl FnMut(&Record) -> bool) -> Vec<Vec<Record>> {
        let mut seen = Vec::new();
        loop {
            let rs = self.recv().await;
            let done = rs.iter().any(&mut want);
            seen.push(rs);
            if done {
                return seen;
            }
        }
    }

    async fn prove(&mut self, sealer: &mut DatagramSealer) {
        self.sock
            .send(&seal(sealer, &[Record::Ping(1)]))
            .await
            .unwrap();
        let mut challenge = None;
        for rs in self.until(|r| matches!(r, Record::PathChallenge(_))).await {
            for r in rs {
                if let Record::PathChallenge(v) = r {
                    challenge = Some(v);
                }
            }
        }
        let challenge = challenge.unwrap();
        self.sock
            .send(&seal(
                sealer,
                &[Record::PathResponse(challenge), Record::Ping(2)],
            ))
            .await
            .unwrap();
        self.until(|r| *r == Record::Pong(2)).await;
    }
}

/// Unauthenticated ping requests (protocol §10.5) as fast as the socket
/// goes: answered with fewer bytes than asked, at most one per request.
async fn ping_request_flood(spec: &ClusterSpec, amp: &mut Amplification) {
    let mut s = Unproven::new(spec.udp_addr()).await;
    for i in 0..2000u64 {
        s.send(&datagram::ping_request(i)).await;
    }
    s.count_answers().await;
    assert!(s.got.datagrams > 0, "no ping request was answered");
    amp.add(&s);
}

/// Random datagrams of every size class, and datagrams that look like a
/// session's (kind byte, a random session id): never answered.
async fn udp_garbage(spec: &ClusterSpec, amp: &mut Amplification) {
    let mut s = Unproven::new(spec.udp_addr()).await;
    let mut rng = rand::rng();
    for size in [1usize, 17, 18, 64, 100, 1200, 1500, 9000] {
        for kind in 0u8..4 {
            if kind == datagram::PING_REQUEST && size == datagram::PING_REQUEST_LEN {
                continue; // that is a ping request (§10.5), padding unchecked
            }
            let mut d = vec![0u8; size];
            rng.fill_bytes(&mut d);
            d[0] = kind;
            s.send(&d).await;
        }
    }
    s.count_answers().await;
    assert_eq!(s.got.datagrams, 0, "garbage was answered");
    amp.add(&s);
}
