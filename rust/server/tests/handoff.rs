//! Handoff (server meshing): 100 players moved from one cluster to another at
//! once while traffic flows both ways. Every reliable message arrives exactly
//! once and in order per direction across the move (counted), the target's
//! game gets each player with its state, and a refused transfer leaves the
//! player where it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sustenet_client::ClientEvent;
use sustenet_proto::{DisconnectReason, Goodbye, JoinTarget, Key};
use sustenet_server::cluster::{self, ClusterConfig, ClusterHandle};
use sustenet_server::{Channel, Context, PlayerId, Plugin};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;

/// Client → cluster: a numbered message (u32 LE).
const UP: u16 = 20;
/// Cluster → client: a numbered message (u32 LE).
const DOWN: u16 = 21;
/// Client → cluster: move me to the cluster whose id is in the payload (u64 LE).
const MOVE_ME: u16 = 22;

#[derive(Default)]
struct Seen {
    /// Numbers each player sent, in arrival order.
    up: HashMap<PlayerId, Vec<u32>>,
    /// State blobs the cluster was handed with players.
    states: HashMap<PlayerId, Vec<u8>>,
    /// Players that left with Redirected.
    redirected: Vec<PlayerId>,
    /// Failed transfers.
    failed: Vec<(PlayerId, DisconnectReason)>,
}

/// Records what players send; on every tick sends each player the next
/// numbers of its DOWN sequence. On a transfer the state carries the next
/// DOWN number, and the game stops sending to that player, as a game should
/// once its state snapshot is taken.
struct Mesh {
    seen: Arc<Mutex<Seen>>,
    next_down: HashMap<PlayerId, u32>,
    moving: Vec<PlayerId>,
}

impl Plugin for Mesh {
    fn on_connect(&mut self, _ctx: &mut Context<'_>, player: PlayerId, user_data: &[u8]) {
        let next = user_data
            .strip_prefix(b"down:")
            .map(|n| u32::from_le_bytes(n.try_into().unwrap()))
            .unwrap_or(0);
        self.next_down.insert(player, next);
        self.seen
            .lock()
            .unwrap()
            .states
            .insert(player, user_data.to_vec());
    }

    fn on_packet(
        &mut self,
        ctx: &mut Context<'_>,
        player: PlayerId,
        command: u16,
        payload: &[u8],
        _channel: Channel,
    ) {
        match command {
            UP => {
                let n = u32::from_le_bytes(payload.try_into().unwrap());
                self.seen
                    .lock()
                    .unwrap()
                    .up
                    .entry(player)
                    .or_default()
                    .push(n);
            }
            MOVE_ME => {
                let target = u64::from_le_bytes(payload.try_into().unwrap());
                let next = self.next_down[&player];
                let mut state = b"down:".to_vec();
                state.extend_from_slice(&next.to_le_bytes());
                ctx.transfer(player, target, &state).unwrap();
                self.moving.push(player);
            }
            _ => {}
        }
    }

    fn on_disconnect(
        &mut self,
        _ctx: &mut Context<'_>,
        player: PlayerId,
        reason: DisconnectReason,
    ) {
        self.next_down.remove(&player);
        self.moving.retain(|p| *p != player);
        if reason == DisconnectReason::Redirected {
            self.seen.lock().unwrap().redirected.push(player);
        }
    }

    fn on_transfer_failed(&mut self, _ctx: &mut Context<'_>, player: PlayerId, reason: &Goodbye) {
        self.moving.retain(|p| *p != player);
        self.seen
            .lock()
            .unwrap()
            .failed
            .push((player, reason.reason));
    }

    fn on_tick(&mut self, ctx: &mut Context<'_>) {
        for (player, next) in self.next_down.iter_mut() {
            if self.moving.contains(player) {
                continue;
            }
            for _ in 0..3 {
                ctx.send(*player, DOWN, &next.to_le_bytes()).unwrap();
                *next += 1;
            }
        }
    }
}

struct MeshCluster {
    id: u64,
    seen: Arc<Mutex<Seen>>,
    handle: ClusterHandle,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_mesh(master: std::net::SocketAddr, name: &str, key: Key) -> MeshCluster {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = ClusterConfig {
        limits: sustenet_server::Limits {
            send_queue: 65_536,
            ..fast_limits()
        },
        ..cluster_config(master, name, name, 0)
    };
    let id = config.cluster_id.unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let plugin = Mesh {
        seen: seen.clone(),
        next_down: HashMap::new(),
        moving: Vec::new(),
    };
    let (stop, rx) = oneshot::channel::<()>();
    let (handle, commands) = cluster::command_channel(64);
    let task = tokio::spawn(async move {
        cluster::run_with_handle(tcp, udp, config, key, plugin, commands, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    MeshCluster {
        id,
        seen,
        handle,
        stop,
        task,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

// Long: one scenario: setup, moves under traffic, then every message of every player checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_players_move_under_traffic_and_nothing_is_lost() {
    init_tracing();
    count_panics();
    let keys = keys(&["east", "west"]);
    let master = start_master(&keys).await;
    let east = start_mesh(master.addr, "east", keys["east"].clone()).await;
    let west = start_mesh(master.addr, "west", keys["west"].clone()).await;
    wait_for_clusters(&master, 2).await;

    const PLAYERS: usize = 100;
    let mut joins = Vec::new();
    for i in 0..PLAYERS {
        let info = master.info();
        let target = JoinTarget::Id(east.id);
        joins.push(tokio::spawn(async move {
            join(&info, &format!("p{i}"), target).await
        }));
    }
    let mut players = Vec::new();
    for j in joins {
        players.push(j.await.unwrap());
    }
    assert!(players.iter().all(|p| p.cluster.id == east.id));

    // Every player sends numbered messages without pause, asks to move
    // midway, and keeps sending through the move; it records the DOWN
    // numbers it hears and how long the move paused it.
    let west_id = west.id;
    let mut runs = Vec::new();
    for p in players {
        runs.push(tokio::spawn(async move {
            let mut sent = 0u32;
            let mut down = Vec::new();
            let mut pause = None;
            let mut moved_to = None;
            let deadline = tokio::time::Instant::now() + GUARD;
            let mut asked = false;
            while tokio::time::Instant::now() < deadline {
                p.client.send(UP, sent.to_le_bytes().to_vec()).unwrap();
                sent += 1;
                if sent == 30 && !asked {
                    p.client
                        .send(MOVE_ME, west_id.to_le_bytes().to_vec())
                        .unwrap();
                    asked = true;
                }
                let until = tokio::time::Instant::now() + Duration::from_millis(5);
                while let Ok(Ok(ev)) = tokio::time::timeout_at(until, p.events.recv_async()).await {
                    match ev {
                        ClientEvent::Packet {
                            command: DOWN,
                            payload,
                            reliable: true,
                        } => down.push(u32::from_le_bytes(payload.try_into().unwrap())),
                        ClientEvent::Redirected { pause: d, .. } => pause = Some(d),
                        ClientEvent::Joined { cluster, .. } => moved_to = Some(cluster.id),
                        ClientEvent::Disconnected { reason, message } => {
                            panic!("player {} disconnected: {reason} {message}", p.id)
                        }
                        ClientEvent::Error(e) => panic!("player {}: {e}", p.id),
                        _ => {}
                    }
                }
                if moved_to.is_some() && sent >= 120 {
                    break;
                }
            }
            assert_eq!(moved_to, Some(west_id), "player {} never arrived", p.id);
            (p, sent, down, pause.unwrap())
        }));
    }
    let mut results = Vec::new();
    for r in runs {
        results.push(r.await.unwrap());
    }

    // Wait until both clusters have everything each player sent.
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let all_in = results.iter().all(|(p, sent, ..)| {
            let e = east.seen.lock().unwrap().up.get(&p.id).map_or(0, Vec::len);
            let w = west.seen.lock().unwrap().up.get(&p.id).map_or(0, Vec::len);
            e + w >= *sent as usize
        });
        if all_in {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages went missing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut pauses = Vec::new();
    {
        let (e, w) = (east.seen.lock().unwrap(), west.seen.lock().unwrap());
        for (p, sent, down, pause) in &results {
            // Client → cluster: the east got a prefix, the west the rest, each
            // number exactly once and in order.
            let mut up = e.up.get(&p.id).cloned().unwrap_or_default();
            let west_part = w.up.get(&p.id).cloned().unwrap_or_default();
            assert!(
                !west_part.is_empty(),
                "player {} sent nothing to the west",
                p.id
            );
            up.extend(west_part);
            assert_eq!(up, (0..*sent).collect::<Vec<_>>(), "player {}", p.id);
            // Cluster → client: one unbroken sequence across both clusters.
            assert_eq!(
                down.clone(),
                (0..down.len() as u32).collect::<Vec<_>>(),
                "player {}",
                p.id
            );
            // The west got the player with its state.
            assert!(w.states[&p.id].starts_with(b"down:"));
            pauses.push(*pause);
        }
        assert_eq!(e.redirected.len(), PLAYERS);
        assert!(e.failed.is_empty() && w.failed.is_empty());
        pauses.sort();
        eprintln!(
            "handoff pause over {PLAYERS} players moved at once: p50 {:?}, p99 {:?}, max {:?}",
            percentile(&pauses, 0.5),
            percentile(&pauses, 0.99),
            pauses.last().unwrap()
        );
    }
    assert_eq!(panics(), 0);
    let _ = east.stop.send(());
    let _ = west.stop.send(());
    let _ = east.task.await;
    let _ = west.task.await;
    master.stop().await;
}

#[tokio::test]
async fn a_refused_transfer_leaves_the_player_in_place() {
    init_tracing();
    let keys = keys(&["east"]);
    let master = start_master(&keys).await;
    let east = start_mesh(master.addr, "east", keys["east"].clone()).await;
    wait_for_clusters(&master, 1).await;
    let p = join(&master, "solo", JoinTarget::Id(east.id)).await;
    // No such cluster: the master refuses, the game hears why.
    p.client
        .send(MOVE_ME, 12345u64.to_le_bytes().to_vec())
        .unwrap();
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        if let Some((player, reason)) = east.seen.lock().unwrap().failed.first().copied() {
            assert_eq!(player, p.id);
            assert_eq!(reason, DisconnectReason::NoCluster);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no transfer_failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still connected and served.
    p.client.send(UP, 7u32.to_le_bytes().to_vec()).unwrap();
    let deadline = tokio::time::Instant::now() + GUARD;
    while !east
        .seen
        .lock()
        .unwrap()
        .up
        .get(&p.id)
        .is_some_and(|v| v.contains(&7))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "player no longer served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = east.stop.send(());
    let _ = east.task.await;
    master.stop().await;
}

/// A second transfer of the same player asked through the handle before the
/// core took up the first (back to back, no await between them) is no
/// failure: the player moves with the first, and the game hears no
/// transfer_failed (which would say the player stays).
#[tokio::test]
async fn a_second_transfer_in_the_same_frame_is_not_reported_as_failed() {
    init_tracing();
    let keys = keys(&["east", "west"]);
    let master = start_master(&keys).await;
    let east = start_mesh(master.addr, "east", keys["east"].clone()).await;
    let west = start_mesh(master.addr, "west", keys["west"].clone()).await;
    wait_for_clusters(&master, 2).await;
    let p = join(&master, "twice", JoinTarget::Id(east.id)).await;
    let player: PlayerId = p.id;
    east.handle
        .transfer(player, west.id, b"first".to_vec())
        .unwrap();
    // Queued behind the first: the handle cannot tell yet, the core refuses it.
    east.handle
        .transfer(player, west.id, b"second".to_vec())
        .unwrap();
    let deadline = tokio::time::Instant::now() + GUARD;
    while !west.seen.lock().unwrap().states.contains_key(&player) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the player never reached west"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(west.seen.lock().unwrap().states[&player], b"first".to_vec());
    let deadline = tokio::time::Instant::now() + GUARD;
    while !east.seen.lock().unwrap().redirected.contains(&player) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the player never left east"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(east.seen.lock().unwrap().failed, Vec::new());
    for c in [east, west] {
        let _ = c.stop.send(());
        let _ = c.task.await;
    }
    master.stop().await;
}
