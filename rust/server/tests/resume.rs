//! Reconnection: the client reaches the cluster through a TCP proxy that the
//! test cuts (every connection closed, new ones refused) and restores. Inside
//! the cluster's window the player keeps its id, and every reliable message
//! of both directions (sent before, during and after the gap) arrives exactly
//! once and in order (counted); after the window the player is gone with
//! `ReconnectTimeout`, and the client is told its session ended.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use sustenet_client::{ClientConfig, ClientEvent};
use sustenet_proto::handshake;
use sustenet_proto::{ClientSessionKeys, DisconnectReason, JoinTarget, Key};
use sustenet_server::cluster::{self, ClusterConfig, ClusterHandle};
use sustenet_server::{Channel, Context, PlayerId, Plugin};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinSet;

/// Client → cluster and cluster → client: a numbered message (u32 LE) padded
/// to 512 bytes, so that a good part of a burst is in flight when the link
/// is cut.
const NUMBERED: u16 = 30;

/// Room kept for a reconnect on both sides: two bursts and then some.
const BUFFER: usize = 4 << 20;

fn numbered(n: u32) -> Vec<u8> {
    let mut p = n.to_le_bytes().to_vec();
    p.resize(512, 0xAB);
    p
}

fn number_of(payload: &[u8]) -> u32 {
    u32::from_le_bytes(payload[..4].try_into().unwrap())
}

/// What the cluster's game saw.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Connected(PlayerId),
    Up(PlayerId, u32),
    Lost(PlayerId, DisconnectReason),
    Back(PlayerId),
    Gone(PlayerId, DisconnectReason),
}

struct Recorder(flume::Sender<Seen>);

impl Plugin for Recorder {
    fn on_connect(&mut self, _ctx: &mut Context<'_>, player: PlayerId, _user_data: &[u8]) {
        let _ = self.0.send(Seen::Connected(player));
    }
    fn on_packet(
        &mut self,
        _ctx: &mut Context<'_>,
        player: PlayerId,
        command: u16,
        payload: &[u8],
        channel: Channel,
    ) {
        if command == NUMBERED && channel == Channel::Reliable {
            let _ = self.0.send(Seen::Up(player, number_of(payload)));
        }
    }
    fn on_connection_lost(
        &mut self,
        ctx: &mut Context<'_>,
        player: PlayerId,
        reason: DisconnectReason,
    ) {
        assert!(ctx.is_away(player));
        let _ = self.0.send(Seen::Lost(player, reason));
    }
    fn on_reconnect(&mut self, ctx: &mut Context<'_>, player: PlayerId) {
        assert!(!ctx.is_away(player));
        let _ = self.0.send(Seen::Back(player));
    }
    fn on_disconnect(
        &mut self,
        _ctx: &mut Context<'_>,
        player: PlayerId,
        reason: DisconnectReason,
    ) {
        let _ = self.0.send(Seen::Gone(player, reason));
    }
}

/// A TCP proxy in front of the cluster that can be taken down: `down()`
/// closes every proxied connection at once (whatever the proxy holds in
/// flight is lost, as on a dead link) and refuses new ones until `up()`.
struct Proxy {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    links: Arc<Mutex<JoinSet<()>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let links = Arc::new(Mutex::new(JoinSet::new()));
        let (d, l) = (down.clone(), links.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                l.lock().await.spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    let _ = inbound.shutdown().await;
                    let _ = outbound.shutdown().await;
                });
            }
        });
        Proxy {
            addr,
            down,
            links,
            task,
        }
    }

    async fn down(&self) {
        self.down.store(true, Ordering::SeqCst);
        // Aborting drops both sockets of every link: each side sees its
        // peer close, and what was between them is gone.
        let mut links = self.links.lock().await;
        links.abort_all();
        while links.join_next().await.is_some() {}
    }

    fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Setup {
    master: RunningMaster,
    proxy: Proxy,
    handle: ClusterHandle,
    seen: flume::Receiver<Seen>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// A master and a recording cluster whose advertised TCP port is the
/// proxy's, with a reconnect window of `grace`.
async fn setup(grace: Duration) -> Setup {
    let keys = keys(&["c"]);
    let master = start_master(&keys).await;
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::start(tcp.local_addr().unwrap()).await;
    let config = ClusterConfig {
        public_tcp_port: Some(proxy.addr.port()),
        resume_grace: grace,
        resume_buffer: BUFFER,
        ..cluster_config(master.addr, "c", "c", 0)
    };
    let (seen_tx, seen) = flume::unbounded();
    let (handle, commands) = cluster::command_channel(65_536);
    let (stop, rx) = oneshot::channel::<()>();
    let key: Key = keys["c"].clone();
    let task = tokio::spawn(async move {
        cluster::run_with_handle(tcp, udp, config, key, Recorder(seen_tx), commands, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    wait_for_clusters(&master, 1).await;
    Setup {
        master,
        proxy,
        handle,
        seen,
        stop: Some(stop),
        task,
    }
}

impl Setup {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
        self.master.stop().await;
    }

    /// Waits for the game to see `want`, collecting the numbers that arrive
    /// meanwhile into `up`.
    async fn wait_seen(&self, want: &Seen, up: &mut Vec<u32>) {
        loop {
            let s = tokio::time::timeout(GUARD, self.seen.recv_async())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for the game to see {want:?}"))
                .unwrap();
            if let Seen::Up(_, n) = s {
                up.push(n);
            }
            if &s == want {
                return;
            }
            if matches!(s, Seen::Gone(..)) {
                panic!("the player left while waiting for {want:?}: {s:?}");
            }
        }
    }
}

/// Collects reliable NUMBERED messages from the client's events until
/// `until` accepts an event; returns that event.
async fn collect(
    events: &flume::Receiver<ClientEvent>,
    down: &mut Vec<u32>,
    what: &str,
    until: impl Fn(&ClientEvent) -> bool,
) -> ClientEvent {
    expect(events, what, |e| {
        if let ClientEvent::Packet {
            command: NUMBERED,
            payload,
            reliable: true,
        } = e
        {
            down.push(number_of(payload));
        }
        until(e).then(|| e.clone())
    })
    .await
}

fn check_sequence(got: &[u32], total: u32, what: &str) {
    let want: Vec<u32> = (0..total).collect();
    if got != want {
        let dup = got.len() - {
            let mut s = got.to_vec();
            s.sort_unstable();
            s.dedup();
            s.len()
        };
        panic!(
            "{what}: {} messages arrived, want {total}; {dup} duplicated; first wrong at {:?}",
            got.len(),
            got.iter().zip(&want).position(|(a, b)| a != b)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_keeps_the_player_and_every_reliable_message() {
    init_tracing();
    count_panics();
    let s = setup(Duration::from_secs(20)).await;
    let mut config: ClientConfig = client_config(&s.master);
    config.resume_buffer = BUFFER;
    let p = try_join_with(config, "ann", JoinTarget::Auto)
        .await
        .unwrap_or_else(|_| panic!("join failed"));
    assert_eq!(
        p.cluster.tcp_port,
        s.proxy.addr.port(),
        "joined through the proxy"
    );
    let player = p.id;
    let mut up = Vec::new();
    let mut down = Vec::new();
    s.wait_seen(&Seen::Connected(player), &mut up).await;

    const BURST: u32 = 400;
    let mut next_up = 0u32;
    let mut next_down = 0u32;
    let burst = |next_up: &mut u32, next_down: &mut u32| {
        for _ in 0..BURST {
            p.client.send(NUMBERED, numbered(*next_up)).unwrap();
            s.handle
                .send(player, NUMBERED, numbered(*next_down), true)
                .unwrap();
            *next_up += 1;
            *next_down += 1;
        }
    };

    for round in 0..2 {
        // Before the cut: a burst, part of it still in flight when the link dies.
        burst(&mut next_up, &mut next_down);
        s.proxy.down().await;
        let ev = collect(&p.events, &mut down, "reconnecting", |e| {
            matches!(e, ClientEvent::Reconnecting { .. })
        })
        .await;
        let ClientEvent::Reconnecting { reason, .. } = ev else {
            unreachable!()
        };
        assert_eq!(reason, DisconnectReason::ConnectionLost, "round {round}");
        s.wait_seen(
            &Seen::Lost(player, DisconnectReason::ConnectionLost),
            &mut up,
        )
        .await;

        // During the gap: both sides keep sending; it is kept for later.
        burst(&mut next_up, &mut next_down);
        // Let a few reconnect attempts fail against the dead link.
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.proxy.up();
        let ev = collect(&p.events, &mut down, "reconnected", |e| {
            matches!(e, ClientEvent::Reconnected { .. })
        })
        .await;
        let ClientEvent::Reconnected { cluster, away } = ev else {
            unreachable!()
        };
        assert_eq!(cluster.id, p.cluster.id);
        assert!(away >= Duration::from_millis(400), "away {away:?}");
        s.wait_seen(&Seen::Back(player), &mut up).await;

        // After: the same player, still sending and receiving.
        burst(&mut next_up, &mut next_down);
    }
    assert_eq!(next_up, 6 * BURST);

    // Everything arrives once, in order, both ways.
    let deadline = tokio::time::Instant::now() + GUARD;
    while down.len() < next_down as usize {
        let ev = tokio::time::timeout_at(deadline, p.events.recv_async())
            .await
            .unwrap_or_else(|_| panic!("client has {} of {next_down}", down.len()))
            .unwrap();
        match ev {
            ClientEvent::Packet {
                command: NUMBERED,
                payload,
                reliable: true,
            } => down.push(number_of(&payload)),
            ClientEvent::Disconnected { reason, message } => {
                panic!("disconnected: {reason} {message}")
            }
            ClientEvent::Joined { .. } => panic!("joined again instead of resuming"),
            _ => {}
        }
    }
    while up.len() < next_up as usize {
        match tokio::time::timeout_at(deadline, s.seen.recv_async())
            .await
            .unwrap_or_else(|_| panic!("cluster has {} of {next_up}", up.len()))
            .unwrap()
        {
            Seen::Up(id, n) => {
                assert_eq!(id, player);
                up.push(n);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    check_sequence(&down, next_down, "cluster → client");
    check_sequence(&up, next_up, "client → cluster");
    // Nothing more: no duplicate trailing in.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.seen.try_recv().is_err());
    assert!(!p.events.drain().any(|e| matches!(
        e,
        ClientEvent::Packet {
            command: NUMBERED,
            ..
        }
    )));
    assert_eq!(panics(), 0);
    drop(p);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_window_the_player_is_gone_with_a_reason() {
    init_tracing();
    let s = setup(Duration::from_millis(600)).await;
    let p = join(&s.master, "bob", JoinTarget::Auto).await;
    let player = p.id;
    let mut up = Vec::new();
    s.wait_seen(&Seen::Connected(player), &mut up).await;

    s.proxy.down().await;
    s.wait_seen(
        &Seen::Lost(player, DisconnectReason::ConnectionLost),
        &mut up,
    )
    .await;
    // Sent while away: kept, then dropped with the player.
    s.handle.send(player, NUMBERED, numbered(0), true).unwrap();
    let gone = tokio::time::timeout(GUARD, s.seen.recv_async())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone, Seen::Gone(player, DisconnectReason::ReconnectTimeout));

    // The client comes back too late: its session is over, with a reason.
    s.proxy.up();
    let (reason, message) = expect(&p.events, "disconnected", |e| match e {
        ClientEvent::Disconnected { reason, message } => Some((*reason, message.clone())),
        ClientEvent::Reconnected { .. } => panic!("resumed a session that had ended"),
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReason::ResumeRefused, "{message}");
    drop(p);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gives_up_after_its_own_window() {
    init_tracing();
    let s = setup(Duration::from_secs(20)).await;
    let mut config: ClientConfig = client_config(&s.master);
    config.reconnect_window = Duration::from_millis(700);
    let p = try_join_with(config, "cid", JoinTarget::Auto)
        .await
        .unwrap_or_else(|_| panic!("join failed"));
    s.proxy.down().await;
    let (reason, message) = expect(&p.events, "disconnected", |e| match e {
        ClientEvent::Disconnected { reason, message } => Some((*reason, message.clone())),
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReason::ReconnectTimeout, "{message}");
    drop(p);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_needs_a_live_session_and_its_keys() {
    init_tracing();
    let s = setup(Duration::from_secs(20)).await;
    let p = join(&s.master, "dan", JoinTarget::Auto).await;

    // A made-up session: refused with ResumeRefused.
    let keys = ClientSessionKeys::derive(&[9; 32]);
    let (hello, _) = handshake::client_resume_hello(&keys, 12345, &[1; 32], 0).unwrap();
    let refusal = raw_exchange(s.proxy.addr, &hello).await;
    assert_eq!(
        refusal.map(|e| e.reason()),
        Some(DisconnectReason::ResumeRefused)
    );

    // The player is untouched: still connected, still heard.
    p.client.send(NUMBERED, numbered(0)).unwrap();
    let mut up = Vec::new();
    s.wait_seen(&Seen::Up(p.id, 0), &mut up).await;
    drop(p);
    s.stop().await;
}

/// Sends one hello frame and returns the refusal the server answers with.
async fn raw_exchange(addr: SocketAddr, hello: &[u8]) -> Option<sustenet_proto::HandshakeError> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    sustenet_net::write_frame(&mut wr, hello, usize::MAX)
        .await
        .unwrap();
    let mut frames = sustenet_net::FrameReader::new(rd, 65_536);
    let f = frames
        .next_within(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    handshake::check_refusal(&f)
}
