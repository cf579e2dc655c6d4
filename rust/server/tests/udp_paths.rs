//! The cluster's UDP paths against reflection and amplification (protocol
//! §10.4): a player's datagrams go only to an address that echoed a
//! challenge sealed in its session; an unproven source gets at most one
//! datagram per datagram and never more bytes than it sent; a silent address
//! stops receiving; a real client whose NAT changes its source port keeps
//! its datagrams, also when its new port lands on another of the cluster's
//! UDP receivers (`receive_threads = 2`). The answer rules themselves (one datagram out per datagram
//! in, the allowance of an unproven address, silence) are tested in memory
//! in `cluster::core::harness_tests`; these tests keep real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use sustenet_proto::crypto::{DatagramOpener, DatagramSealer};
use sustenet_proto::datagram::{self, Record};
use sustenet_proto::{JoinTarget, Side};
use sustenet_server::EchoChat;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Makes `subject` stream its state to `watcher` at the grid's rate.
fn stream(w: &RawWorld, subject: u64, watcher: u64) {
    w.handle.set_position(watcher, [0.0; 3]).unwrap();
    w.handle.set_position(subject, [1.0, 0.0, 0.0]).unwrap();
    w.handle.set_state(subject, 9, b"state".to_vec()).unwrap();
}

/// One UDP socket of a player's session, counting what it sent and got.
struct Socket {
    sock: UdpSocket,
    /// Its own opener: each socket sees only part of the cluster's sequence.
    opener: DatagramOpener,
    sent: Count,
    got: Count,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Count {
    datagrams: usize,
    bytes: usize,
}

impl Count {
    fn add(&mut self, bytes: usize) {
        self.datagrams += 1;
        self.bytes += bytes;
    }
}

impl Socket {
    async fn new(p: &RawPlayer, cluster: SocketAddr) -> Socket {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(cluster).await.unwrap();
        Socket {
            sock,
            opener: p.keys.datagram(Side::Initiator, p.session_id).opener,
            sent: Count::default(),
            got: Count::default(),
        }
    }

    /// Seals `records` with the session's (shared) sealer and sends them.
    async fn send(&mut self, sealer: &mut DatagramSealer, records: &[Record]) {
        let d = sealed(sealer, records);
        self.sock.send(&d).await.unwrap();
        self.sent.add(d.len());
    }

    /// The records of the next datagram from the cluster.
    async fn recv(&mut self) -> Vec<Record> {
        let mut buf = vec![0u8; 2048];
        let n = tokio::time::timeout(GUARD, self.sock.recv(&mut buf))
            .await
            .expect("no datagram came back")
            .unwrap();
        self.got.add(n);
        let plain = self.opener.open(&buf[..n]).unwrap();
        datagram::decode_records(&plain).unwrap()
    }

    /// Every datagram already waiting, without waiting for more.
    fn drain(&mut self) -> Vec<Vec<Record>> {
        let mut buf = vec![0u8; 2048];
        let mut out = Vec::new();
        while let Ok(n) = self.sock.try_recv(&mut buf) {
            self.got.add(n);
            let plain = self.opener.open(&buf[..n]).unwrap();
            out.push(datagram::decode_records(&plain).unwrap());
        }
        out
    }

    /// Reads datagrams until one holds a record `want` accepts; returns
    /// every datagram read.
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
}

/// A socket with the session's sealer, for [`prove`].
struct Sealing<'a>(&'a mut Socket, &'a mut DatagramSealer);

impl UdpPath for Sealing<'_> {
    async fn send_records(&mut self, records: &[Record]) {
        self.0.send(self.1, records).await;
    }

    async fn recv_records(&mut self) -> Vec<Record> {
        self.0.recv().await
    }
}

fn echo(payload: &[u8]) -> Record {
    Record::Data {
        command: EchoChat::ECHO,
        payload: payload.to_vec(),
    }
}

fn is_echo(r: &Record, payload: &[u8]) -> bool {
    matches!(r, Record::Data { command: EchoChat::ECHO, payload: p } if p == payload)
}

/// A full datagram of Ping records: 129 of them fit.
fn pings(from: u64) -> Vec<Record> {
    let n = datagram::MAX_DATAGRAM_PLAINTEXT / 9;
    (from..from + n as u64).map(Record::Ping).collect()
}

#[tokio::test]
async fn a_player_cannot_make_the_cluster_stream_at_an_address_that_never_answered() {
    init_tracing();
    let s = RawWorld::start(|_| {}).await;
    let attacker = s.raw_player(1).await;
    let other = s.raw_player(2).await;
    let mut sealer = attacker
        .keys
        .datagram(Side::Initiator, attacker.session_id)
        .sealer;
    let mut own = Socket::new(&attacker, s.cluster.udp).await;
    prove(&mut Sealing(&mut own, &mut sealer)).await;
    // The other player's state streams to the attacker from now on.
    stream(&s, 2, 1);
    own.until(|r| matches!(r, Record::Data { command: 9, .. }))
        .await;

    // The "victim" socket stands for a spoofed source: the attacker's
    // authenticated datagrams come from it, and it never answers.
    let mut victim = Socket::new(&attacker, s.cluster.udp).await;
    for i in 0..20u64 {
        victim.send(&mut sealer, &pings(i * 1000)).await;
        victim.send(&mut sealer, &[echo(b"to the victim")]).await;
        victim.send(&mut sealer, &[]).await;
    }
    // Time for a stream to build up if the address had moved.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The cluster handles datagrams in order: once this echo is back, it
    // has handled (and answered) everything the victim socket sent.
    own.send(&mut sealer, &[echo(b"fence")]).await;
    let seen = own.until(|r| is_echo(r, b"fence")).await;
    assert!(
        seen.iter().flatten().any(|r| is_echo(r, b"to the victim")),
        "the unproven source's data still reaches the game, answered at the proven address"
    );
    let at_victim = victim.drain();
    for rs in &at_victim {
        for r in rs {
            assert!(
                matches!(r, Record::PathChallenge(_) | Record::Pong(_)),
                "the unproven address got {r:?}"
            );
        }
    }
    assert!(
        victim.got.datagrams <= victim.sent.datagrams && victim.got.bytes <= victim.sent.bytes,
        "amplification towards an unproven address: sent {:?}, got back {:?}",
        victim.sent,
        victim.got
    );
    // The stream still goes to the proven address.
    own.until(|r| matches!(r, Record::Data { command: 9, .. }))
        .await;
    drop((attacker, other));
    s.stop().await;
}

/// A NAT between a client and the cluster's UDP port: the client sends to
/// `addr`; the NAT forwards from its outside socket, and `rebind` swaps that
/// socket for one on a new port (the old one is closed).
struct Nat {
    addr: SocketAddr,
    rebind: mpsc::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Nat {
    /// Starts forwarding between `inside` (bound before the cluster, so the
    /// cluster can advertise its port) and the cluster at `cluster`.
    fn start(inside: UdpSocket, cluster: SocketAddr) -> Nat {
        let addr = inside.local_addr().unwrap();
        let (rebind, mut rebinds) = mpsc::channel::<()>(4);
        let task = tokio::spawn(async move {
            let outside = || async {
                let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                s.connect(cluster).await.unwrap();
                s
            };
            let mut out = outside().await;
            let mut client = None;
            let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
            loop {
                tokio::select! {
                    r = inside.recv_from(&mut a) => {
                        let (n, from) = r.unwrap();
                        client = Some(from);
                        let _ = out.send(&a[..n]).await;
                    }
                    r = out.recv(&mut b) => {
                        if let (Ok(n), Some(c)) = (r, client) {
                            let _ = inside.send_to(&b[..n], c).await;
                        }
                    }
                    r = rebinds.recv() => match r {
                        Some(()) => out = outside().await,
                        None => return,
                    },
                }
            }
        });
        Nat { addr, rebind, task }
    }
}

#[tokio::test]
async fn a_real_client_keeps_its_datagrams_across_a_nat_rebinding() {
    nat_rebinding(1).await;
}

/// With two UDP receivers (`receive_threads = 2`), each new outside port
/// may land on the other socket: the client keeps its datagrams however
/// its ports fall, and it is rebound until its datagrams have reached
/// both receivers.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[tokio::test]
async fn a_client_rebound_onto_the_other_receiver_keeps_its_datagrams() {
    nat_rebinding(2).await;
}

/// A real client behind a NAT that gives it a new outside port at least 3
/// times (and, with several receivers, until its datagrams have reached
/// every one, at most 32 times) gets the state stream after each.
async fn nat_rebinding(receive_threads: usize) {
    init_tracing();
    let inside = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = inside.local_addr().unwrap().port();
    let s = RawWorld::start(|c| {
        c.public_udp_port = Some(port);
        c.receive_threads = receive_threads;
    })
    .await;
    let nat = Nat::start(inside, s.cluster.udp);
    assert_eq!(nat.addr.port(), port);
    let p = join(&s.master, "ann", JoinTarget::Id(s.cluster.id)).await;
    // The other player's state streams to this one.
    let other = s.raw_player(p.id + 1).await;
    p.udp_up().await;
    stream(&s, p.id + 1, p.id);
    state_update(&p).await;
    let read = || -> Vec<u64> {
        (0..receive_threads)
            .map(|r| s.metrics.udp_received_by(r))
            .collect()
    };
    let mut reached = vec![false; receive_threads];
    let mut rebinds = 0;
    while rebinds < 3 || (reached.contains(&false) && rebinds < 32) {
        // The NAT gives the client a new outside port (the old one is
        // closed): after the client answers the new port's challenge, its
        // datagrams and the stream come through again.
        let before = read();
        nat.rebind.send(()).await.unwrap();
        p.udp_up().await;
        while p.events.try_recv().is_ok() {}
        state_update(&p).await;
        for (r, (a, b)) in read().iter().zip(&before).enumerate() {
            reached[r] |= a > b;
        }
        rebinds += 1;
    }
    assert!(
        !reached.contains(&false),
        "after {rebinds} rebinds the client's datagrams reached the receivers {reached:?}"
    );
    nat.task.abort();
    drop(other);
    s.stop().await;
}

/// Waits for the next unreliable state update (command 9).
async fn state_update(p: &Player) {
    expect(&p.events, "a state update", |e| match e {
        sustenet_client::ClientEvent::Packet {
            command: 9,
            reliable: false,
            ..
        } => Some(()),
        _ => None,
    })
    .await
}
