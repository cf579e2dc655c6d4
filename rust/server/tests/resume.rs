// Long file: reconnect scenarios that share one proxy and cluster setup; each test is one scenario.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use sustenet_client::{ClientConfig, ClientEvent};
use sustenet_proto::handshake::{self, ResumeClaim};
use sustenet_proto::{ClientSessionKeys, DisconnectReason, JoinTarget, Key};
use sustenet_proto::{ClusterInfo, ClusterToClient, Message};
use sustenet_server::cluster::{ClusterConfig, ClusterHandle};
use sustenet_server::{Channel, Context, PlayerId, Plugin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
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
    TransferFailed(PlayerId, DisconnectReason),
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
    fn on_transfer_failed(
        &mut self,
        _ctx: &mut Context<'_>,
        player: PlayerId,
        reason: &sustenet_proto::Goodbye,
    ) {
        let _ = self.0.send(Seen::TransferFailed(player, reason.reason));
    }
}

/// A TCP proxy in front of the cluster that can be taken down: `down()`
/// closes every proxied connection at once (whatever the proxy holds in
/// flight is lost, as on a dead link) and refuses new ones until `up()`.
/// `freeze()` instead stops relaying on the connections open now while
/// keeping them open (a half-open link: neither end hears a close); new
/// connections are relayed as usual. The first bytes each client sent on
/// each connection (its hello) are kept for the test to replay.
struct Proxy {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    /// Links numbered below this are frozen.
    frozen_below: Arc<AtomicU64>,
    next_id: Arc<AtomicU64>,
    links: Arc<Mutex<JoinSet<()>>>,
    hellos: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Relays one direction until either side closes or the link is frozen
/// (then it holds the sockets open and relays nothing more).
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    id: u64,
    frozen_below: Arc<AtomicU64>,
    first: Option<Arc<std::sync::Mutex<Vec<Vec<u8>>>>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = first;
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if id < frozen_below.load(Ordering::SeqCst) {
            // Frozen: swallow everything, close nothing.
            std::future::pending::<()>().await;
        }
        if let Some(h) = first.take() {
            h.lock().unwrap().push(buf[..n].to_vec());
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let frozen_below = Arc::new(AtomicU64::new(0));
        let links = Arc::new(Mutex::new(JoinSet::new()));
        let hellos = Arc::new(std::sync::Mutex::new(Vec::new()));
        let next_id = Arc::new(AtomicU64::new(0));
        let (d, f, l, h, n) = (
            down.clone(),
            frozen_below.clone(),
            links.clone(),
            hellos.clone(),
            next_id.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                // Checked under the lock `down()` takes after setting the
                // flag: a link accepted during a cut is either refused here
                // or spawned before the cut aborts every link.
                let mut links = l.lock().await;
                if d.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let id = n.fetch_add(1, Ordering::SeqCst);
                let (f, h) = (f.clone(), h.clone());
                links.spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    tokio::join!(
                        relay(ir, ow, id, f.clone(), Some(h)),
                        relay(or, iw, id, f, None)
                    );
                });
            }
        });
        Proxy {
            addr,
            down,
            frozen_below,
            next_id,
            links,
            hellos,
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

    /// Freezes every link open now; later ones are relayed.
    fn freeze(&self) {
        let next = self.next_id.load(Ordering::SeqCst);
        self.frozen_below.store(next, Ordering::SeqCst);
    }

    /// The first bytes the client sent on the `i`-th connection.
    fn hello(&self, i: usize) -> Vec<u8> {
        self.hellos.lock().unwrap()[i].clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Setup {
    master: RunningMaster,
    keys: std::collections::HashMap<String, Key>,
    /// The recording cluster's id and own TCP address (the proxy is in front of it).
    cluster_id: u64,
    cluster_tcp: SocketAddr,
    proxy: Proxy,
    handle: ClusterHandle,
    seen: flume::Receiver<Seen>,
    cluster: RunningCluster,
}

/// A master and a recording cluster whose advertised TCP port is the
/// proxy's, with a reconnect window of `grace`.
async fn setup(grace: Duration) -> Setup {
    setup_with(grace, |_| {}).await
}

/// [`setup`] with the cluster's configuration adjusted by `tune`.
async fn setup_with(grace: Duration, tune: impl FnOnce(&mut ClusterConfig)) -> Setup {
    let keys = keys(&["c"]);
    let master = start_master(&keys).await;
    let (tcp, udp) = loopback_sockets().await;
    let cluster_tcp = tcp.local_addr().unwrap();
    let proxy = Proxy::start(cluster_tcp).await;
    let mut config = ClusterConfig {
        public_tcp_port: Some(proxy.addr.port()),
        resume_grace: grace,
        resume_buffer: BUFFER,
        ..cluster_config(master.addr, "c", "c", 0)
    };
    tune(&mut config);
    let cluster_id = config.cluster_id.unwrap();
    let (seen_tx, seen) = flume::unbounded();
    let key: Key = keys["c"].clone();
    let (cluster, handle) = spawn_cluster(tcp, udp, config, key, Recorder(seen_tx), 65_536);
    wait_for_clusters(&master, 1).await;
    Setup {
        master,
        keys,
        cluster_id,
        cluster_tcp,
        proxy,
        handle,
        seen,
        cluster,
    }
}

impl Setup {
    async fn stop(self) {
        self.cluster.stop().await;
        self.master.stop().await;
    }

    /// Waits until the game sees `player` connected, cuts the link, and
    /// waits until the game sees it lost, collecting the numbers that arrive
    /// meanwhile into `up`.
    async fn cut_when_connected(&self, player: PlayerId, up: &mut Vec<u32>) {
        self.wait_seen(&Seen::Connected(player), up).await;
        self.proxy.down().await;
        self.wait_lost(player, up).await;
    }

    /// Waits for the game to see `want`, collecting the numbers that arrive
    /// meanwhile into `up`.
    async fn wait_seen(&self, want: &Seen, up: &mut Vec<u32>) {
        self.wait_for(&format!("{want:?}"), up, |s| s == want).await;
    }

    /// Waits for the game to see `player`'s connection lost. The cut is
    /// usually seen as `ConnectionLost`; on a loaded machine the cluster's
    /// own heartbeat timeout (2 s in the test limits) may see the link
    /// silent first and report `Timeout`, after which the cut itself
    /// reports nothing more (the player is already away).
    async fn wait_lost(&self, player: PlayerId, up: &mut Vec<u32>) {
        self.wait_for(
            "the connection lost",
            up,
            |s| matches!(s, Seen::Lost(p, r) if *p == player && is_drop(*r)),
        )
        .await;
    }

    /// Waits for the game to see what `want` accepts (`what`), collecting
    /// the numbers that arrive meanwhile into `up`.
    async fn wait_for(&self, what: &str, up: &mut Vec<u32>, want: impl Fn(&Seen) -> bool) {
        loop {
            let s = tokio::time::timeout(GUARD, self.seen.recv_async())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for the game to see {what}"))
                .unwrap();
            if let Seen::Up(_, n) = s {
                up.push(n);
            }
            if want(&s) {
                return;
            }
            if matches!(s, Seen::Gone(..)) {
                panic!("the player left while waiting for {what}: {s:?}");
            }
        }
    }
}

/// A drop that a reconnect may follow: the link closed, or went silent past
/// the heartbeat timeout.
fn is_drop(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::ConnectionLost | DisconnectReason::Timeout
    )
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
    // The cuts close the link, which both sides see at once; the heartbeat
    // timeouts are the defaults (10 s) rather than the test limits' 2 s.
    // With 2 s, a starved debug build busy with a reconnect's hundreds of
    // messages sent again goes silent for longer, is timed out, reconnects
    // with even more to send again, and so on without end (seen with the
    // test given a tenth of a core).
    let s = setup_with(Duration::from_secs(20), |c| c.limits.timeout_ms = 10_000).await;
    let mut config: ClientConfig = client_config(&s.master);
    config.resume_buffer = BUFFER;
    config.timeout = Duration::from_secs(10);
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
        assert!(is_drop(reason), "round {round}: {reason}");
        s.wait_lost(player, &mut up).await;

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
    assert_eq!(next_down, next_up);
    check_all_arrived(&s, &p, &mut up, &mut down, next_up).await;
    // Nothing more: no duplicate trailing in (a drop and return the
    // cluster's own timeout caused on a loaded machine may be reported).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late: Vec<Seen> = s.seen.drain().collect();
    assert!(
        late.iter()
            .all(|e| matches!(e, Seen::Lost(_, r) if is_drop(*r)) || *e == Seen::Back(player)),
        "{late:?}"
    );
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
    s.cut_when_connected(player, &mut up).await;
    // Sent while away: kept, then dropped with the player.
    s.handle.send(player, NUMBERED, numbered(0), true).unwrap();
    let gone = tokio::time::timeout(GUARD, s.seen.recv_async())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone, Seen::Gone(player, DisconnectReason::ReconnectTimeout));

    // The client comes back too late: its session is over, with a reason.
    s.proxy.up();
    let (reason, message) = p.disconnected().await;
    assert_eq!(reason, DisconnectReason::ResumeRefused, "{message}");
    assert!(
        !p.events
            .drain()
            .any(|e| matches!(e, ClientEvent::Reconnected { .. })),
        "resumed a session that had ended"
    );
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
    let (reason, message) = p.disconnected().await;
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
    let keys = ClientSessionKeys::derive(&[9; 32], &[9; 32]).unwrap();
    let claim = ResumeClaim {
        received: 0,
        attempt: 1,
    };
    let (hello, _) = handshake::client_resume_hello(&keys, 12345, &[1; 32], claim).unwrap();
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

/// Joins "name" with a client whose reconnect buffer fits the bursts.
async fn join_buffered(s: &Setup, name: &str, tune: impl FnOnce(&mut ClientConfig)) -> Player {
    let mut config: ClientConfig = client_config(&s.master);
    config.resume_buffer = BUFFER;
    tune(&mut config);
    match try_join_with(config, name, JoinTarget::Id(s.cluster_id)).await {
        Ok(p) => p,
        Err((reason, message, ..)) => panic!("join of {name} failed: {reason} {message}"),
    }
}

/// Waits until the client has every number below `total`, then checks the
/// order both ways.
async fn check_all_arrived(
    s: &Setup,
    p: &Player,
    up: &mut Vec<u32>,
    down: &mut Vec<u32>,
    total: u32,
) {
    let deadline = tokio::time::Instant::now() + GUARD;
    while down.len() < total as usize {
        let ev = tokio::time::timeout_at(deadline, p.events.recv_async())
            .await
            .unwrap_or_else(|_| panic!("client has {} of {total}", down.len()))
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
    while up.len() < total as usize {
        match tokio::time::timeout_at(deadline, s.seen.recv_async())
            .await
            .unwrap_or_else(|_| panic!("cluster has {} of {total}", up.len()))
            .unwrap()
        {
            Seen::Up(id, n) => {
                assert_eq!(id, p.id);
                up.push(n);
            }
            // A drop and return the cluster's own heartbeat timeout caused
            // on a loaded machine: what was in flight is sent again.
            Seen::Lost(_, r) if is_drop(r) => {}
            Seen::Back(id) if id == p.id => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    check_sequence(down, total, "cluster → client");
    check_sequence(up, total, "client → cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_link_is_replaced_by_the_reconnect() {
    init_tracing();
    count_panics();
    // The cluster would notice the silence only after 30 s; the client
    // after 1 s, so it reconnects while the cluster still holds the old
    // connection open.
    let s = setup_with(Duration::from_secs(20), |c| {
        c.limits.timeout_ms = 30_000;
    })
    .await;
    let p = join_buffered(&s, "eve", |c| c.timeout = Duration::from_secs(1)).await;
    let player = p.id;
    let (mut up, mut down) = (Vec::new(), Vec::new());
    s.wait_seen(&Seen::Connected(player), &mut up).await;

    let (mut next_up, mut next_down) = (0u32, 0u32);
    let mut burst = |n: u32| {
        for _ in 0..n {
            p.client.send(NUMBERED, numbered(next_up)).unwrap();
            s.handle
                .send(player, NUMBERED, numbered(next_down), true)
                .unwrap();
            next_up += 1;
            next_down += 1;
        }
    };
    burst(100);
    // Let the first burst through, then freeze: what follows is swallowed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.proxy.freeze();
    burst(100);
    let ev = collect(&p.events, &mut down, "reconnecting", |e| {
        matches!(e, ClientEvent::Reconnecting { .. })
    })
    .await;
    assert!(
        matches!(
            ev,
            ClientEvent::Reconnecting {
                reason: DisconnectReason::Timeout,
                ..
            }
        ),
        "{ev:?}"
    );
    collect(&p.events, &mut down, "reconnected", |e| {
        matches!(e, ClientEvent::Reconnected { .. })
    })
    .await;
    // The game hears of the drop (the cluster learned of it from the
    // reconnect itself), then of the return.
    s.wait_seen(
        &Seen::Lost(player, DisconnectReason::ConnectionLost),
        &mut up,
    )
    .await;
    s.wait_seen(&Seen::Back(player), &mut up).await;
    burst(100);
    check_all_arrived(&s, &p, &mut up, &mut down, 300).await;
    assert_eq!(panics(), 0);
    drop(p);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copied_hellos_are_refused_and_the_session_goes_on() {
    init_tracing();
    let s = setup(Duration::from_secs(20)).await;
    let p = join_buffered(&s, "fay", |_| {}).await;
    let player = p.id;
    let (mut up, mut down) = (Vec::new(), Vec::new());
    s.cut_when_connected(player, &mut up).await;
    s.proxy.up();
    collect(&p.events, &mut down, "reconnected", |e| {
        matches!(e, ClientEvent::Reconnected { .. })
    })
    .await;
    s.wait_seen(&Seen::Back(player), &mut up).await;

    // The join hello (its token is used up), the accepted resume hello (its
    // attempt number is not new), and that hello with one proof byte changed.
    let join_hello = s.proxy.hello(0);
    let resume_hello = s
        .proxy
        .hellos
        .lock()
        .unwrap()
        .iter()
        .skip(1)
        .find(|h| h.get(10) == Some(&0x04))
        .cloned()
        .expect("a resume hello went through the proxy");
    let mut tampered = resume_hello.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    for (what, bytes, want) in [
        ("the join hello", join_hello, DisconnectReason::TokenUsed),
        (
            "the resume hello",
            resume_hello,
            DisconnectReason::AuthFailed,
        ),
        (
            "a tampered resume hello",
            tampered,
            DisconnectReason::AuthFailed,
        ),
    ] {
        let refusal = raw_bytes_exchange(s.cluster_tcp, &bytes).await;
        assert_eq!(refusal.map(|e| e.reason()), Some(want), "{what}");
    }

    // Nothing happened to the player: no drop, no departure, still heard.
    p.client.send(NUMBERED, numbered(0)).unwrap();
    s.handle.send(player, NUMBERED, numbered(0), true).unwrap();
    check_all_arrived(&s, &p, &mut up, &mut down, 1).await;
    drop(p);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reconnects_off_a_drop_ends_the_session() {
    init_tracing();
    let s = setup(Duration::ZERO).await;
    // One client that tries to reconnect, one that does not.
    let a = join_buffered(&s, "gil", |_| {}).await;
    let b = join_buffered(&s, "hal", |c| c.reconnect_window = Duration::ZERO).await;
    let mut up = Vec::new();
    s.wait_seen(&Seen::Connected(a.id), &mut up).await;
    s.wait_seen(&Seen::Connected(b.id), &mut up).await;
    s.proxy.down().await;
    let mut gone = Vec::new();
    while gone.len() < 2 {
        match tokio::time::timeout(GUARD, s.seen.recv_async())
            .await
            .unwrap()
            .unwrap()
        {
            Seen::Gone(id, reason) => gone.push((id, reason)),
            other => panic!("unexpected {other:?} (no player may be held)"),
        }
    }
    // Each with its drop's reason: the cut, or on a loaded machine the
    // heartbeat timeout that saw the link silent first.
    assert!(gone.iter().all(|(_, r)| is_drop(*r)), "{gone:?}");
    let mut ids: Vec<PlayerId> = gone.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    let mut want = vec![a.id, b.id];
    want.sort_unstable();
    assert_eq!(ids, want);
    s.proxy.up();
    let reason_of = |p: &Player| {
        let events = p.events.clone();
        async move {
            expect(&events, "disconnected", |e| match e {
                ClientEvent::Disconnected { reason, .. } => Some(*reason),
                ClientEvent::Reconnected { .. } => panic!("resumed with reconnects off"),
                _ => None,
            })
            .await
        }
    };
    // The one that tried is told the session is over; the other never tried.
    assert_eq!(reason_of(&a).await, DisconnectReason::ResumeRefused);
    let b_reason = reason_of(&b).await;
    assert!(is_drop(b_reason), "{b_reason}");
    assert!(
        !b.events
            .drain()
            .any(|e| matches!(e, ClientEvent::Reconnecting { .. }))
    );
    drop((a, b));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_much_sent_while_away_ends_the_session_on_either_side() {
    init_tracing();
    let s = setup_with(Duration::from_secs(20), |c| c.resume_buffer = 16 * 1024).await;
    let p = join_buffered(&s, "ida", |c| c.resume_buffer = 16 * 1024).await;
    let player = p.id;
    let (mut up, mut down) = (Vec::new(), Vec::new());
    s.cut_when_connected(player, &mut up).await;
    collect(&p.events, &mut down, "reconnecting", |e| {
        matches!(e, ClientEvent::Reconnecting { .. })
    })
    .await;
    // 40 × 512 bytes is over 16 KiB on both sides.
    for i in 0..40 {
        let _ = s.handle.send(player, NUMBERED, numbered(i), true);
        let _ = p.client.send(NUMBERED, numbered(i));
    }
    let gone = tokio::time::timeout(GUARD, s.seen.recv_async())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone, Seen::Gone(player, DisconnectReason::SendQueueFull));
    let ev = collect(&p.events, &mut down, "disconnected", |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    })
    .await;
    assert!(
        matches!(
            ev,
            ClientEvent::Disconnected {
                reason: DisconnectReason::SendQueueFull,
                ..
            }
        ),
        "{ev:?}"
    );
    drop(p);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_lost_with_the_connection_comes_again_after_the_reconnect() {
    init_tracing();
    // The cluster notices the dead link only through the reconnect (30 s
    // timeout), the client after 1 s of silence: the move is decided while
    // the player is connected as far as the cluster knows. (A link cut
    // outright may be seen dropped before the transfer is taken up, and
    // `transfer` refuses a player that is away.)
    let s = setup_with(Duration::from_secs(20), |c| c.limits.timeout_ms = 30_000).await;
    // A second cluster to move to, registered with the same master (under
    // the same key name: the master knows only the keys it started with).
    let target = start_cluster(s.master.addr, "d", "c", s.keys["c"].clone(), 0).await;
    wait_for_clusters(&s.master, 2).await;

    let p = join_buffered(&s, "jon", |c| c.timeout = Duration::from_secs(1)).await;
    let player = p.id;
    let mut up = Vec::new();
    s.wait_seen(&Seen::Connected(player), &mut up).await;
    // The link goes silent both ways, then the move is asked: the redirect
    // is lost in it, and comes again on the reconnect.
    s.proxy.freeze();
    s.handle
        .transfer(player, target.id, b"state".to_vec())
        .unwrap();
    let (joined, gone) = joined_after_transfers(&s, &p, target.id).await;
    assert_eq!(joined.id, target.id);
    // The old cluster's game sees the player leave as redirected.
    let gone = match gone {
        Some(gone) => gone,
        None => loop {
            match tokio::time::timeout(GUARD, s.seen.recv_async())
                .await
                .unwrap()
                .unwrap()
            {
                Seen::Lost(..) | Seen::Back(..) => {}
                other => break other,
            }
        },
    };
    assert_eq!(gone, Seen::Gone(player, DisconnectReason::Redirected));
    drop(p);
    target.stop().await;
    s.stop().await;
}

/// Waits for `p` to join another cluster; returns it, and the player's
/// departure if the old cluster's game saw it meanwhile. A transfer the
/// game hears failed is asked again: on a loaded machine the master may
/// drop a cluster whose heartbeat is late (1.5 s in the test
/// configuration) and refuse a move to or from it until it registers again.
async fn joined_after_transfers(s: &Setup, p: &Player, target: u64) -> (ClusterInfo, Option<Seen>) {
    let deadline = tokio::time::Instant::now() + GUARD;
    let mut gone = None;
    loop {
        tokio::select! {
            ev = tokio::time::timeout_at(deadline, p.events.recv_async()) => {
                match ev.expect("timed out waiting for the client to join the target").unwrap() {
                    ClientEvent::Joined { cluster, .. } => return (cluster, gone),
                    ClientEvent::Disconnected { reason, message } => {
                        panic!("disconnected instead: {reason} {message}")
                    }
                    _ => {}
                }
            }
            seen = tokio::time::timeout_at(deadline, s.seen.recv_async()) => {
                match seen.expect("timed out waiting for the client to join the target").unwrap() {
                    Seen::TransferFailed(id, reason) => {
                        tracing::warn!("transfer failed ({reason}); asking again");
                        s.handle.transfer(id, target, b"state".to_vec()).unwrap();
                    }
                    Seen::Lost(..) | Seen::Back(..) => {}
                    departure @ Seen::Gone(..) if gone.is_none() => gone = Some(departure),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }
}

/// Sends raw bytes (a whole frame) and returns the refusal the server answers with.
async fn raw_bytes_exchange(
    addr: SocketAddr,
    bytes: &[u8],
) -> Option<sustenet_proto::HandshakeError> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    wr.write_all(bytes).await.unwrap();
    let mut frames = sustenet_net::FrameReader::new(rd, 65_536);
    let f = frames
        .next_within(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    handshake::check_refusal(&f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_player_is_closed_without_a_goodbye_and_may_come_back() {
    init_tracing();
    let s = setup(Duration::from_secs(20)).await;
    // A hand-made client that reads but never answers: the cluster times it
    // out (2 s in the test limits).
    let (token, secret) = craft_token(&s.keys["c"], s.cluster_id, 77, now_ms() + 30_000);
    let mut p = RawPlayer::connect(s.cluster_tcp, &token, &secret)
        .await
        .unwrap();
    let mut up = Vec::new();
    s.wait_seen(&Seen::Connected(77), &mut up).await;
    // Pings only, then the close: a goodbye would end the session on a
    // client that may still hear it.
    while let Some(f) = p.raw.recv().await {
        match ClusterToClient::decode(&p.opener.open(&f).unwrap()).unwrap() {
            ClusterToClient::Ping(_) => {}
            other => panic!("expected pings, then the close; got {other:?}"),
        }
    }
    s.wait_seen(&Seen::Lost(77, DisconnectReason::Timeout), &mut up)
        .await;

    // The same session comes back on a new connection.
    let claim = ResumeClaim {
        received: 0,
        attempt: 1,
    };
    let (hello, mut session) =
        handshake::client_resume_hello(&p.keys, p.session_id, &[5; 32], claim).unwrap();
    let mut raw = Raw::connect(s.cluster_tcp).await;
    raw.send(&hello).await;
    let first = raw.recv().await.expect("the cluster closed the reconnect");
    assert_eq!(handshake::check_refusal(&first), None);
    let plain = session.opener.open(&first).unwrap();
    assert_eq!(
        ClusterToClient::decode(&plain).unwrap(),
        ClusterToClient::Resumed { received: 0 }
    );
    s.wait_seen(&Seen::Back(77), &mut up).await;
    s.stop().await;
}
