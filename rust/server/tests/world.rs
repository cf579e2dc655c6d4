//! Fragments in a running cluster: players report positions, `send_nearby`
//! reaches exactly the players in range, state updates reach exactly each
//! player's audience (coalesced into datagrams at the fragment's rate), and
//! fragment changes reach the game.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sustenet_client::ClientEvent;
use sustenet_proto::JoinTarget;
use sustenet_server::cluster::{self, ClusterConfig};
use sustenet_server::fragments::{FragmentEvent, GridConfig};
use sustenet_server::{Channel, Context, EchoChat, PlayerId, Plugin};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;

const POS: u16 = 10;
const STATE: u16 = 11;
const SHOUT: u16 = 12;
const HEARD: u16 = 13;

struct Positions {
    events: Arc<Mutex<Vec<FragmentEvent>>>,
}

fn floats(b: &[u8]) -> [f32; 3] {
    let f = |i: usize| f32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap());
    [f(0), f(1), f(2)]
}

impl Plugin for Positions {
    fn on_packet(
        &mut self,
        ctx: &mut Context<'_>,
        player: PlayerId,
        command: u16,
        payload: &[u8],
        channel: Channel,
    ) {
        match command {
            POS => {
                ctx.set_position(player, floats(payload)).unwrap();
                ctx.set_state(player, STATE, payload).unwrap();
            }
            SHOUT => {
                let radius = f32::from_le_bytes(payload.try_into().unwrap());
                let here = ctx.position(player).unwrap();
                ctx.send_nearby(
                    here,
                    radius,
                    HEARD,
                    &player.to_le_bytes(),
                    true,
                    Some(player),
                )
                .unwrap();
            }
            other => EchoChat.on_packet(ctx, player, other, payload, channel),
        }
    }

    fn on_fragment(&mut self, _ctx: &mut Context<'_>, event: FragmentEvent) {
        self.events.lock().unwrap().push(event);
    }
}

fn pos(x: f32, y: f32) -> Vec<u8> {
    [x, y, 0.0].iter().flat_map(|f| f.to_le_bytes()).collect()
}

// Long: one scenario on a real cluster: players placed, then each query and update checked against who should hear it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nearby_and_state_updates_reach_exactly_the_right_players() {
    init_tracing();
    let keys = keys(&["world"]);
    let master = start_master(&keys).await;
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = ClusterConfig {
        grid: GridConfig {
            cell_size: 10.0,
            default_interest_radius: 15.0,
            ..GridConfig::default()
        },
        ..cluster_config(master.addr, "world", "world", 0)
    };
    let events = Arc::new(Mutex::new(Vec::new()));
    let plugin = Positions {
        events: events.clone(),
    };
    let (stop, rx) = oneshot::channel::<()>();
    let key = keys["world"].clone();
    let task = tokio::spawn(async move {
        cluster::run(tcp, udp, config, key, plugin, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    wait_for_clusters(&master, 1).await;

    // A at 0, B at 5, C at 14, D at 100 (all on y = 0).
    let xs = [0.0f32, 5.0, 14.0, 100.0];
    let mut players = Vec::new();
    for (i, x) in xs.iter().enumerate() {
        let p = join(&master, &format!("p{i}"), JoinTarget::Auto).await;
        p.udp_up().await;
        p.client.send(POS, pos(*x, 0.0)).unwrap();
        players.push(p);
    }
    let ids: Vec<u64> = players.iter().map(|p| p.id).collect();
    // Every position is in once its Entered event is.
    let deadline = tokio::time::Instant::now() + GUARD;
    while events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, FragmentEvent::Entered { .. }))
        .count()
        < 4
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "positions not placed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A shouts with radius 10: only B (at 5) hears it.
    players[0]
        .client
        .send(SHOUT, 10.0f32.to_le_bytes().to_vec())
        .unwrap();
    // C shouts with radius 9: only B (at distance 9) hears it, A (14) not.
    players[2]
        .client
        .send(SHOUT, 9.0f32.to_le_bytes().to_vec())
        .unwrap();

    // Collect for a while: HEARD messages, and the subjects of state updates.
    let mut heard: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut states: HashMap<u64, HashSet<u64>> = HashMap::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(800);
    for (p, id) in players.iter().zip(&ids) {
        while let Ok(Ok(ev)) = tokio::time::timeout_at(until, p.events.recv_async()).await {
            match ev {
                ClientEvent::Packet {
                    command: HEARD,
                    payload,
                    reliable: true,
                } => heard
                    .entry(*id)
                    .or_default()
                    .push(u64::from_le_bytes(payload.try_into().unwrap())),
                ClientEvent::Packet {
                    command: STATE,
                    payload,
                    reliable: false,
                } => {
                    let subject = u64::from_le_bytes(payload[..8].try_into().unwrap());
                    assert_eq!(
                        &payload[8..],
                        &pos(xs[ids.iter().position(|i| *i == subject).unwrap()], 0.0)[..]
                    );
                    states.entry(*id).or_default().insert(subject);
                }
                _ => {}
            }
        }
    }
    let [a, b, c, d] = [ids[0], ids[1], ids[2], ids[3]];
    let mut b_heard = heard.remove(&b).unwrap_or_default();
    b_heard.sort_unstable();
    let mut expected = vec![a, c];
    expected.sort_unstable();
    assert_eq!(b_heard, expected, "B hears A and C");
    assert!(heard.is_empty(), "nobody else hears anything: {heard:?}");

    // Audience (interest radius 15): who hears about whom, by brute force.
    for (i, recipient) in ids.iter().enumerate() {
        let want: HashSet<u64> = ids
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i && (xs[*j] - xs[i]).abs() <= 15.0)
            .map(|(_, id)| *id)
            .collect();
        let got = states.get(recipient).cloned().unwrap_or_default();
        assert_eq!(got, want, "state updates reaching player {i}");
    }
    assert!(!states.contains_key(&d), "D is alone");

    // Moving A across two cells: it leaves its fragment and enters another.
    events.lock().unwrap().clear();
    players[0].client.send(POS, pos(25.0, 0.0)).unwrap();
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let ev = events.lock().unwrap().clone();
        if ev.len() >= 2 {
            assert!(ev.iter().any(|e| matches!(e, FragmentEvent::Exited { player, fragment } if *player == a && fragment.x == 0)));
            assert!(ev.iter().any(|e| matches!(e, FragmentEvent::Entered { player, fragment } if *player == a && fragment.x == 2)));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no fragment events for the move"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Leaving the cluster is leaving the fragment.
    events.lock().unwrap().clear();
    players[3].client.disconnect().unwrap();
    let deadline = tokio::time::Instant::now() + GUARD;
    while !events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, FragmentEvent::Exited { player, .. } if *player == d))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Exited on disconnect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    let _ = task.await;
    master.stop().await;
}

/// The `World` plugin (what `sustenet up` runs): a position report becomes
/// the state that nearby players receive; far players hear nothing.
#[tokio::test]
async fn the_world_plugin_relays_positions_to_neighbours() {
    init_tracing();
    let keys = keys(&["w"]);
    let master = start_master(&keys).await;
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = ClusterConfig {
        grid: GridConfig {
            cell_size: 40.0,
            default_interest_radius: 40.0,
            ..GridConfig::default()
        },
        ..cluster_config(master.addr, "w", "w", 0)
    };
    let (stop, rx) = oneshot::channel::<()>();
    let key = keys["w"].clone();
    let task = tokio::spawn(async move {
        cluster::run(tcp, udp, config, key, sustenet_server::World, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    wait_for_clusters(&master, 1).await;
    let xs = [0.0f32, 30.0, 500.0];
    let mut players = Vec::new();
    for i in 0..xs.len() {
        let p = join(&master, &format!("w{i}"), JoinTarget::Auto).await;
        p.udp_up().await;
        players.push(p);
    }
    let mut heard: Vec<HashSet<u64>> = vec![HashSet::new(); 3];
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < until && !(heard[0].len() == 1 && heard[1].len() == 1) {
        for (p, x) in players.iter().zip(xs) {
            let mut payload = pos(x, 0.0);
            payload.extend_from_slice(&[7, 7, 7, 7]);
            p.client
                .send_unreliable(sustenet_server::World::POS, payload)
                .unwrap();
        }
        let tick = tokio::time::Instant::now() + Duration::from_millis(50);
        for (i, p) in players.iter().enumerate() {
            while let Ok(Ok(ev)) = tokio::time::timeout_at(tick, p.events.recv_async()).await {
                if let ClientEvent::Packet {
                    command: sustenet_server::World::STATE,
                    payload,
                    reliable: false,
                } = ev
                {
                    assert_eq!(payload.len(), 8 + 16, "id + position + extra bytes");
                    heard[i].insert(u64::from_le_bytes(payload[..8].try_into().unwrap()));
                }
            }
        }
    }
    assert_eq!(heard[0], HashSet::from([players[1].id]));
    assert_eq!(heard[1], HashSet::from([players[0].id]));
    assert!(heard[2].is_empty(), "the far player hears nobody");
    let _ = stop.send(());
    let _ = task.await;
    master.stop().await;
}
