//! Datagrams sealed by several seal workers (`[cluster] seal_threads`)
//! reach real clients exactly as from one thread: every session's
//! datagrams arrive with consecutive sequence numbers, in the order the
//! game sent them, and every one is accepted by the receiver's replay
//! window (none refused as stale or replayed), while the sessions are
//! spread over all the workers. Raw players check the sequence numbers
//! byte by byte with the protocol's own opener; a `sustenet-client` player
//! checks what a game sees. The same runs with sealing on the core's
//! thread (`seal_threads = 1`), and with two UDP receivers (`[cluster]
//! receive_threads = 2`, sockets sharing the port): the players' datagrams
//! are spread over both receivers (their counters show it) and every
//! player's Ping is answered and every broadcast reaches it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;

use common::*;
use sustenet_client::ClientEvent;
use sustenet_proto::crypto::{DatagramOpener, DatagramSealer};
use sustenet_proto::datagram::{self, Record};
use sustenet_proto::{CryptoError, JoinTarget, Side};
use tokio::net::UdpSocket;

/// The command of the numbered broadcasts.
const NUMBERED: u16 = 77;
/// Broadcasts per wave (each player has at most this many datagrams
/// waiting in its socket), and waves.
const PER_WAVE: u32 = 20;
const WAVES: u32 = 10;

/// A raw player's session on its own UDP socket: what it checks.
struct Session {
    _tcp: RawPlayer,
    session_id: u64,
    sock: UdpSocket,
    sealer: DatagramSealer,
    opener: DatagramOpener,
    /// The last sequence number and broadcast number received.
    last_seq: Option<u64>,
    last_number: Option<u32>,
    /// The first datagram received, to try again as a replay.
    first: Option<Vec<u8>>,
}

impl Session {
    async fn new(p: RawPlayer, cluster: SocketAddr) -> Session {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(cluster).await.unwrap();
        let d = p.keys.datagram(Side::Initiator, p.session_id);
        Session {
            session_id: p.session_id,
            _tcp: p,
            sock,
            sealer: d.sealer,
            opener: d.opener,
            last_seq: None,
            last_number: None,
            first: None,
        }
    }

    async fn send(&mut self, records: &[Record]) {
        let d = sealed(&mut self.sealer, records);
        self.sock.send(&d).await.unwrap();
    }

    /// The next datagram's records: its sequence number must follow the
    /// previous one's and it must open (not stale, not a replay).
    async fn recv(&mut self) -> Vec<Record> {
        let mut buf = vec![0u8; 2048];
        let n = tokio::time::timeout(GUARD, self.sock.recv(&mut buf))
            .await
            .expect("no datagram came")
            .unwrap();
        let d = &buf[..n];
        let seq = u64::from_le_bytes(d[9..17].try_into().unwrap());
        let want = self.last_seq.map_or(0, |s| s + 1);
        assert_eq!(
            seq, want,
            "session {}: sequence numbers in order",
            self.session_id
        );
        self.last_seq = Some(seq);
        let plain = self
            .opener
            .open(d)
            .unwrap_or_else(|e| panic!("session {}: datagram {seq} refused: {e}", self.session_id));
        self.first.get_or_insert_with(|| d.to_vec());
        datagram::decode_records(&plain).unwrap()
    }

    /// Reads until broadcast `last` has come; every number in between must
    /// come, in order.
    async fn numbers_until(&mut self, last: u32) {
        while self.last_number != Some(last) {
            for r in self.recv().await {
                if let Record::Data {
                    command: NUMBERED,
                    payload,
                } = r
                {
                    let n = u32::from_le_bytes(payload.try_into().unwrap());
                    let want = self.last_number.map_or(0, |l| l + 1);
                    assert_eq!(n, want, "session {}: broadcasts in order", self.session_id);
                    self.last_number = Some(n);
                }
            }
        }
    }
}

impl UdpPath for Session {
    async fn send_records(&mut self, records: &[Record]) {
        self.send(records).await;
    }

    async fn recv_records(&mut self) -> Vec<Record> {
        self.recv().await
    }
}

/// Raw players (at least 8, more until every seal worker has a session
/// and every receiver has read datagrams) and a client player each get
/// `WAVES` × `PER_WAVE` numbered unreliable broadcasts; everything arrives
/// in order and is accepted.
async fn broadcasts_arrive_in_order(seal_threads: usize, receive_threads: usize) {
    init_tracing();
    let s = RawWorld::start(|c| {
        c.seal_threads = seal_threads;
        c.receive_threads = receive_threads;
    })
    .await;
    let workers = seal_threads.max(1) as u64;
    let receivers_idle = || (0..receive_threads).any(|r| s.metrics.udp_received_by(r) == 0);
    let mut sessions = Vec::new();
    let mut spread = HashSet::new();
    while sessions.len() < 8
        || ((spread.len() < workers as usize || receivers_idle()) && sessions.len() < 32)
    {
        let client_id = 1_000_001 + sessions.len() as u64;
        let (t, secret) = craft_token(&s.key, s.cluster.id, client_id, now_ms() + 30_000);
        let p = RawPlayer::connect(s.cluster.tcp, &t, &secret)
            .await
            .unwrap();
        let mut session = Session::new(p, s.cluster.udp).await;
        prove(&mut session).await;
        spread.insert(session.session_id % workers);
        sessions.push(session);
    }
    assert_eq!(
        spread.len() as u64,
        workers,
        "every worker seals some session"
    );
    let read: Vec<u64> = (0..receive_threads)
        .map(|r| s.metrics.udp_received_by(r))
        .collect();
    assert!(
        read.iter().all(|&n| n > 0),
        "every receiver read some player's datagrams: {read:?}"
    );
    let client = join(&s.master, "real", JoinTarget::Id(s.cluster.id)).await;
    client.udp_up().await;

    let mut client_last: Option<u32> = None;
    for wave in 0..WAVES {
        let numbers = wave * PER_WAVE..(wave + 1) * PER_WAVE;
        for n in numbers.clone() {
            s.handle
                .broadcast(NUMBERED, n.to_le_bytes().to_vec(), false, None)
                .unwrap();
        }
        let last = numbers.end - 1;
        for session in &mut sessions {
            session.numbers_until(last).await;
        }
        while client_last != Some(last) {
            let ev = tokio::time::timeout(GUARD, client.events.recv_async())
                .await
                .expect("the client's broadcasts came")
                .unwrap();
            match ev {
                ClientEvent::Packet {
                    command: NUMBERED,
                    payload,
                    reliable: false,
                } => {
                    let n = u32::from_le_bytes(payload.try_into().unwrap());
                    let want = client_last.map_or(0, |l| l + 1);
                    assert_eq!(n, want, "the client sees every broadcast, in order");
                    client_last = Some(n);
                }
                ClientEvent::Disconnected { reason, message } => {
                    panic!("client disconnected: {reason} {message}")
                }
                _ => {}
            }
        }
    }
    for session in &mut sessions {
        let stats = session.opener.stats();
        assert_eq!(
            (stats.stale, stats.replays, stats.auth_failures),
            (0, 0, 0),
            "session {}: nothing refused",
            session.session_id
        );
        // The window still refuses a copy.
        let first = session.first.clone().unwrap();
        let again = session.opener.open(&first);
        assert!(matches!(again, Err(CryptoError::Replay(_))), "{again:?}");
    }
    s.stop().await;
}

#[tokio::test]
async fn datagrams_sealed_by_three_workers_arrive_in_order_and_are_accepted() {
    broadcasts_arrive_in_order(3, 1).await;
}

#[tokio::test]
async fn datagrams_sealed_on_the_core_thread_arrive_in_order_and_are_accepted() {
    broadcasts_arrive_in_order(1, 1).await;
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[tokio::test]
async fn players_spread_over_two_receivers_get_everything_in_order() {
    broadcasts_arrive_in_order(3, 2).await;
}
