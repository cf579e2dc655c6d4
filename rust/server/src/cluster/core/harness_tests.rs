//! The core's state machines in memory, on a fake clock: reconnects with
//! lost and repeated messages, grace expiry, transfers and their timeouts,
//! kicks, queue limits; and property tests over random event sequences.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use proptest::prelude::*;
use sustenet_proto::{ClusterToClient, DisconnectReason};

use super::LinkEvent;
use super::harness::{Conn, Harness, Recorder, Seen};
use crate::cluster::{ClusterConfig, SendError};
use crate::config::Limits;
use crate::plugin::Channel;

pub(super) const GRACE: Duration = Duration::from_secs(30);

pub(super) fn config() -> ClusterConfig {
    ClusterConfig {
        resume_grace: GRACE,
        resume_buffer: 64 * 1024,
        limits: Limits {
            send_queue: 64,
            ..Limits::default()
        },
        ..ClusterConfig::default()
    }
}

/// The payloads of the data messages among `ms`.
pub(super) fn data(ms: &[ClusterToClient]) -> Vec<Vec<u8>> {
    ms.iter()
        .filter_map(|m| match m {
            ClusterToClient::Data { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .collect()
}

fn send(h: &mut Harness, player: u64, payload: &'static [u8]) {
    h.command(move |ctx| ctx.send(player, 5, payload).unwrap());
}

#[test]
fn a_reconnect_gets_exactly_what_it_missed_in_order() {
    let mut h = Harness::new(config());
    let mut c = h.join(1).unwrap();
    for p in [b"a", b"b", b"c"] {
        send(&mut h, 1, p);
    }
    // The client read two of them; the third was lost with the connection.
    let first = data(&c.drain());
    assert_eq!(first, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    h.lost(1, &c);
    assert_eq!(h.seen(), vec![Seen::Connect(1), Seen::Lost(1)]);
    assert!(c.released(), "the dropped connection's writer is let go");
    // While away: kept for it.
    send(&mut h, 1, b"d");
    let (mut c2, _) = h.resume(1, 2, 1).unwrap();
    assert_eq!(data(&c2.drain()), vec![b"c".to_vec(), b"d".to_vec()]);
    assert_eq!(h.seen(), vec![Seen::Reconnect(1)]);
    // The old connection's late events are ignored.
    h.packet(1, &c, Recorder::ECHO, b"late");
    assert!(h.seen().is_empty());
    assert!(
        c.goodbye().is_none(),
        "a dropped connection gets no goodbye"
    );
}

#[test]
fn a_repeated_or_old_reconnect_attempt_is_refused() {
    let mut h = Harness::new(config());
    let c = h.join(1).unwrap();
    h.lost(1, &c);
    let (c2, _) = h.resume(1, 0, 2).unwrap();
    h.lost(1, &c2);
    for attempt in [1, 2] {
        let e = h.resume(1, 0, attempt).err().unwrap();
        assert_eq!(e.reason, DisconnectReason::AuthFailed);
    }
    // The player still holds its seat and a later attempt works.
    assert_eq!(h.seats(), 1);
    assert!(h.resume(1, 0, 3).is_ok());
}

#[test]
fn a_client_claiming_more_than_was_sent_is_let_go() {
    let mut h = Harness::new(config());
    let c = h.join(1).unwrap();
    send(&mut h, 1, b"only");
    h.lost(1, &c);
    let e = h.resume(1, 5, 1).err().unwrap();
    assert_eq!(e.reason, DisconnectReason::ProtocolViolation);
    assert_eq!(h.seats(), 0);
    assert_eq!(h.resumable(), 0);
}

#[test]
fn a_client_data_message_counted_before_the_drop_is_not_delivered_twice() {
    let mut h = Harness::new(config());
    let c = h.join(1).unwrap();
    h.packet(1, &c, 9, b"one");
    h.lost(1, &c);
    // The cluster tells the client it has one: the client sends only the rest.
    let (c2, received) = h.resume(1, 0, 1).unwrap();
    assert_eq!(received, 1);
    h.packet(1, &c2, 9, b"two");
    let packets: Vec<Vec<u8>> = h
        .seen()
        .into_iter()
        .filter_map(|s| match s {
            Seen::Packet(1, 9, p, Channel::Reliable) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(packets, vec![b"one".to_vec(), b"two".to_vec()]);
}

#[test]
fn the_seat_is_given_up_when_the_grace_passes() {
    let mut h = Harness::new(config());
    let c = h.join(1).unwrap();
    h.lost(1, &c);
    h.advance(GRACE - Duration::from_millis(1));
    assert_eq!(h.seats(), 1);
    assert!(h.step());
    assert_eq!(
        h.seen(),
        vec![
            Seen::Connect(1),
            Seen::Lost(1),
            Seen::Disconnect(1, DisconnectReason::ReconnectTimeout)
        ]
    );
    assert_eq!((h.seats(), h.resumable()), (0, 0));
    assert!(!h.step(), "nothing is left to wait for");
    let e = h.resume(1, 0, 1).err().unwrap();
    assert_eq!(e.reason, DisconnectReason::ResumeRefused);
}

#[test]
fn too_much_sent_while_away_lets_the_player_go() {
    let mut h = Harness::new(ClusterConfig {
        resume_buffer: 100,
        ..config()
    });
    let c = h.join(1).unwrap();
    h.lost(1, &c);
    h.command(|ctx| {
        let r = ctx.send(1, 5, &[0; 150]);
        assert_eq!(r, Err(SendError::QueueFull(1)));
    });
    assert!(
        h.seen()
            .contains(&Seen::Disconnect(1, DisconnectReason::SendQueueFull))
    );
    assert_eq!(h.seats(), 0);
}

#[test]
fn a_full_send_queue_disconnects_without_draining() {
    let mut h = Harness::new(ClusterConfig {
        limits: Limits {
            send_queue: 4,
            ..Limits::default()
        },
        ..config()
    });
    let mut c = h.join(1).unwrap();
    h.command(|ctx| {
        for i in 0..4u8 {
            ctx.send(1, 5, &[i]).unwrap();
        }
        assert_eq!(ctx.send(1, 5, b"x"), Err(SendError::QueueFull(1)));
    });
    let (goodbye, drain) = c.goodbye().unwrap();
    assert_eq!(goodbye.reason, DisconnectReason::SendQueueFull);
    assert!(!drain, "what is queued is dropped, not written");
    assert_eq!(h.seats(), 0);
}

#[test]
fn a_send_queue_is_bounded_in_bytes_too() {
    let mut h = Harness::new(ClusterConfig {
        send_queue_bytes: 10_000,
        ..config()
    });
    let mut c = h.join(1).unwrap();
    h.command(|ctx| {
        // Far fewer messages than `send_queue`, but over 10,000 bytes.
        for _ in 0..2 {
            ctx.send(1, 5, &[0; 4_000]).unwrap();
        }
        assert_eq!(ctx.send(1, 5, &[0; 4_000]), Err(SendError::QueueFull(1)));
    });
    let (goodbye, _) = c.goodbye().unwrap();
    assert_eq!(goodbye.reason, DisconnectReason::SendQueueFull);
    assert_eq!(h.seats(), 0);
}

#[test]
fn a_kick_closes_with_its_message_and_frees_the_seat() {
    let mut h = Harness::new(config());
    let mut c = h.join(1).unwrap();
    h.command(|ctx| ctx.kick(1, "bye now"));
    let (goodbye, drain) = c.goodbye().unwrap();
    assert_eq!(goodbye.reason, DisconnectReason::Kicked);
    assert_eq!(goodbye.message, "bye now");
    assert!(drain);
    assert_eq!((h.seats(), h.resumable()), (0, 0));
}

#[test]
fn the_newest_connection_of_a_player_wins_and_a_full_cluster_refuses() {
    let mut h = Harness::new(ClusterConfig {
        max_connections: 1,
        ..config()
    });
    let mut old = h.join(1).unwrap();
    let e = h.join(2).err().unwrap();
    assert_eq!(e.reason, DisconnectReason::ServerFull);
    let _new = h.join(1).unwrap();
    assert_eq!(old.goodbye().unwrap().0.reason, DisconnectReason::Kicked);
    assert_eq!(h.seats(), 1);
}

#[test]
fn a_cluster_is_never_unbounded() {
    // 0 means the default bound, as on the master.
    let mut h = Harness::new(ClusterConfig {
        max_connections: 0,
        ..config()
    });
    let limit = u64::from(ClusterConfig::DEFAULT_MAX_CONNECTIONS);
    let _players: Vec<_> = (1..=limit).map(|id| h.join(id).unwrap()).collect();
    let e = h.join(limit + 1).err().unwrap();
    assert_eq!(e.reason, DisconnectReason::ServerFull);
    assert_eq!(ClusterConfig::default().connection_limit(), 1_000);
}

#[test]
fn a_transfer_the_master_does_not_answer_fails_in_time() {
    let mut h = Harness::new(config());
    let _c = h.join(1).unwrap();
    h.command(|ctx| ctx.transfer(1, 99, b"state").unwrap());
    let asked = h.link.drain(..).any(|e| {
        matches!(
            e,
            LinkEvent::Transfer {
                player: 1,
                target: 99,
                ..
            }
        )
    });
    assert!(asked);
    h.command(|ctx| {
        let r = ctx.transfer(1, 99, b"again");
        assert!(matches!(r, Err(SendError::TransferRefused { .. })));
    });
    h.seen();
    h.drive(10);
    assert_eq!(
        h.seen(),
        vec![Seen::TransferFailed(1, DisconnectReason::NoCluster)]
    );
    // Free to try again.
    h.command(|ctx| ctx.transfer(1, 99, b"state").unwrap());
}

#[test]
fn a_redirected_player_that_does_not_leave_is_let_go() {
    let mut h = Harness::new(config());
    let mut c = h.join(1).unwrap();
    h.command(|ctx| ctx.transfer(1, 99, b"state").unwrap());
    let request_id = h
        .link
        .drain(..)
        .find_map(|e| match e {
            LinkEvent::Transfer { request_id, .. } => Some(request_id),
            _ => None,
        })
        .unwrap();
    let now = h.now;
    h.core.handle_transfer_ready(now, request_id, 1, ticket(1));
    h.pump();
    assert!(matches!(
        c.drain().last(),
        Some(ClusterToClient::Redirect(_))
    ));
    h.command(|ctx| assert_eq!(ctx.send(1, 5, b"x"), Err(SendError::Transferring(1))));
    h.drive(10);
    assert!(
        h.seen()
            .contains(&Seen::Disconnect(1, DisconnectReason::Redirected))
    );
    assert_eq!(h.seats(), 0);
}

/// One thing that can happen to a player and its connection.
#[derive(Debug, Clone)]
enum Step {
    /// The cluster sends a reliable message.
    ServerSends,
    /// The client sends one (`ECHO`, which the plugin answers).
    ClientSends,
    /// The client reads `n` of the messages waiting for it.
    ClientReads(usize),
    /// The client acknowledges what it has read.
    ClientAcks,
    /// The connection drops; what the client had not read is lost.
    Drop,
    /// The client reconnects, possibly sending a stale copy first.
    Reconnect { stale_copy: bool },
    /// Time passes (less than the grace).
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::ServerSends),
        4 => Just(Step::ClientSends),
        3 => (0usize..4).prop_map(Step::ClientReads),
        1 => Just(Step::ClientAcks),
        1 => Just(Step::Drop),
        2 => any::<bool>().prop_map(|stale_copy| Step::Reconnect { stale_copy }),
        1 => (0u64..5_000).prop_map(Step::Wait),
    ]
}

/// A client as the protocol makes it behave: counts what it read, keeps
/// what it sent, and on a reconnect sends again what the cluster lacks.
struct Client {
    conn: Option<Conn>,
    /// Data payloads read, in order.
    read: Vec<Vec<u8>>,
    /// Everything it sent, in order.
    sent: Vec<Vec<u8>>,
    attempt: u64,
}

/// The client reconnects with a new attempt number and sends again what the
/// cluster says it lacks.
fn reconnect(h: &mut Harness, cl: &mut Client) {
    cl.attempt += 1;
    let (c, received) = h.resume(1, cl.read.len() as u64, cl.attempt).unwrap();
    for p in &cl.sent[received as usize..] {
        h.packet(1, &c, 9, p);
    }
    cl.conn = Some(c);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the order of sends, reads, drops and reconnects: every
    /// reliable message arrives exactly once and in order in each
    /// direction, the player is never in two places, and the seat and the
    /// session are given back exactly when the player leaves.
    #[test]
    fn reliable_messages_arrive_once_and_in_order(steps in proptest::collection::vec(step(), 1..80)) {
        // A grace longer than any run, a queue longer than any backlog.
        let mut h = Harness::new(ClusterConfig {
            resume_grace: Duration::from_secs(3600),
            limits: Limits { send_queue: 4096, ..Limits::default() },
            ..config()
        });
        let mut cl = Client { conn: Some(h.join(1).unwrap()), read: Vec::new(), sent: Vec::new(), attempt: 0 };
        let mut server_sent: Vec<Vec<u8>> = Vec::new();
        let mut pending: Vec<Vec<u8>> = Vec::new();
        for s in steps {
            match s {
                Step::ServerSends => {
                    let p = format!("s{}", server_sent.len()).into_bytes();
                    server_sent.push(p.clone());
                    h.command(move |ctx| { let _ = ctx.send(1, 5, &p); });
                }
                Step::ClientSends => {
                    let p = format!("c{}", cl.sent.len()).into_bytes();
                    cl.sent.push(p.clone());
                    if let Some(c) = &cl.conn {
                        h.packet(1, c, 9, &p);
                    }
                }
                Step::ClientReads(n) => {
                    if let Some(c) = cl.conn.as_mut() {
                        pending.extend(data(&c.drain()));
                    }
                    let n = n.min(pending.len());
                    cl.read.extend(pending.drain(..n));
                }
                Step::ClientAcks => {
                    if let Some(c) = &cl.conn {
                        let (conn, count) = (c.conn, cl.read.len() as u64);
                        h.core.handle_ack(h.now, 1, conn, count);
                    }
                }
                Step::Drop => {
                    if let Some(c) = cl.conn.take() {
                        h.lost(1, &c);
                        pending.clear();
                    }
                }
                Step::Reconnect { stale_copy } => {
                    if cl.conn.is_some() {
                        // The client saw its connection die first.
                        pending.clear();
                    }
                    if stale_copy && cl.attempt > 0 {
                        prop_assert!(h.resume(1, cl.read.len() as u64, cl.attempt).is_err());
                    }
                    reconnect(&mut h, &mut cl);
                }
                Step::Wait(ms) => h.advance(Duration::from_millis(ms)),
            }
            // Never in two places: one seat, one session.
            prop_assert_eq!(h.seats(), 1);
            prop_assert_eq!(h.resumable(), 1);
        }
        // The client reads the rest (reconnecting first if it is away).
        if cl.conn.is_none() {
            reconnect(&mut h, &mut cl);
        }
        if let Some(c) = cl.conn.as_mut() {
            pending.extend(data(&c.drain()));
        }
        cl.read.append(&mut pending);
        prop_assert_eq!(&cl.read, &server_sent);
        let got: Vec<Vec<u8>> = h.seen().into_iter().filter_map(|s| match s {
            Seen::Packet(1, 9, p, Channel::Reliable) => Some(p),
            _ => None,
        }).collect();
        prop_assert_eq!(&got, &cl.sent);
        // Leaving gives the seat and the session back.
        h.command(|ctx| ctx.kick(1, "done"));
        prop_assert_eq!((h.seats(), h.resumable(), h.open_writers()), (0, 0, 0));
    }
}

/// What can happen to the players of a small cluster (ids 1 to 4, room
/// for 3).
#[derive(Debug, Clone)]
enum Event {
    Join(u64),
    Drop(u64),
    Reconnect(u64),
    Kick(u64),
    Transfer(u64),
    /// The master answers the oldest transfer request: a ticket or a refusal.
    MasterAnswers(bool),
    Wait(u64),
}

fn event() -> impl Strategy<Value = Event> {
    let id = 1u64..=4;
    prop_oneof![
        3 => id.clone().prop_map(Event::Join),
        2 => id.clone().prop_map(Event::Drop),
        2 => id.clone().prop_map(Event::Reconnect),
        1 => id.clone().prop_map(Event::Kick),
        2 => id.prop_map(Event::Transfer),
        2 => any::<bool>().prop_map(Event::MasterAnswers),
        2 => (0u64..40_000).prop_map(Event::Wait),
    ]
}

pub(super) fn ticket(client_id: u64) -> Box<sustenet_proto::Ticket> {
    Box::new(sustenet_proto::Ticket {
        client_id,
        cluster: sustenet_proto::ClusterInfo {
            id: 99,
            name: "next".into(),
            address: "127.0.0.1".into(),
            tcp_port: 1,
            udp_port: 1,
            players: 0,
            capacity: 0,
            locked: false,
        },
        token: vec![1; 8],
        session_secret: [3; 32].into(),
        expires_at_ms: 0,
    })
}

/// Seats, resumable sessions, writers and moving marks match the player
/// table: a connected player has exactly one open writer, an away one none.
fn consistent(h: &Harness) -> Result<(), TestCaseError> {
    let players = h.core.s.players.len();
    let connected = h
        .core
        .s
        .players
        .values()
        .filter(|p| p.out.is_some())
        .count();
    prop_assert_eq!(h.open_writers(), connected);
    prop_assert_eq!(h.seats(), players);
    prop_assert_eq!(h.resumable(), players);
    let moving = h.core.s.transfers.moving.lock().unwrap();
    prop_assert!(moving.keys().all(|p| h.core.s.players.contains_key(p)));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever players do: a player is in one place only (a newer
    /// connection closes the older one), the seat count, the resumable
    /// sessions and the moving marks always match the table, and once time
    /// has run out and everyone left, no seat, session, mark or transfer
    /// request is left behind.
    #[test]
    fn seats_sessions_and_transfers_never_leak(events in proptest::collection::vec(event(), 1..60)) {
        let mut h = Harness::new(ClusterConfig { max_connections: 3, ..config() });
        let mut conns: std::collections::HashMap<u64, Conn> = Default::default();
        let mut attempts: std::collections::HashMap<u64, u64> = Default::default();
        let mut asked: std::collections::VecDeque<(u64, u64)> = Default::default();
        for e in events {
            match e {
                Event::Join(p) => {
                    let had = h.core.s.players.get(&p).map(|pl| pl.conn);
                    if let Ok(c) = h.join(p) {
                        if let Some(mut old) = conns.insert(p, c) {
                            if had == Some(old.conn) {
                                // The newest connection wins: the older one is closed.
                                prop_assert!(old.goodbye().is_some());
                            }
                        }
                    }
                }
                Event::Drop(p) => {
                    if let Some(c) = conns.remove(&p) {
                        h.lost(p, &c);
                    }
                }
                Event::Reconnect(p) => {
                    let a = attempts.entry(p).or_insert(0);
                    *a += 1;
                    if let Ok((c, _)) = h.resume(p, 0, *a) {
                        if let Some(mut old) = conns.insert(p, c) {
                            prop_assert!(old.goodbye().is_some(), "the connection left behind is closed");
                        }
                    }
                }
                Event::Kick(p) => h.command(move |ctx| ctx.kick(p, "out")),
                Event::Transfer(p) => h.command(move |ctx| { let _ = ctx.transfer(p, 99, b""); }),
                Event::MasterAnswers(ok) => {
                    while let Some(ev) = h.link.pop_front() {
                        if let LinkEvent::Transfer { request_id, player, .. } = ev {
                            asked.push_back((request_id, player));
                        }
                    }
                    if let Some((request_id, player)) = asked.pop_front() {
                        let now = h.now;
                        if ok {
                            h.core.handle_transfer_ready(now, request_id, player, ticket(player));
                        } else {
                            let no = sustenet_proto::Goodbye::new(DisconnectReason::NoCluster);
                            h.core.handle_transfer_failed(now, request_id, player, &no);
                        }
                        h.pump();
                    }
                }
                Event::Wait(ms) => h.advance(Duration::from_millis(ms)),
            }
            consistent(&h)?;
        }
        // Time runs out for everything pending; then everyone leaves.
        h.advance(Duration::from_secs(3600));
        prop_assert!(h.core.s.transfers.pending.is_empty(), "a transfer request outlived its deadline");
        prop_assert!(h.core.s.players.values().all(|p| p.away_until.is_none() && p.redirected.is_none()));
        let ids: Vec<u64> = h.core.s.players.keys().copied().collect();
        for p in ids {
            h.command(move |ctx| ctx.kick(p, "closing"));
        }
        consistent(&h)?;
        prop_assert_eq!((h.seats(), h.resumable()), (0, 0));
        prop_assert!(h.core.s.transfers.moving.lock().unwrap().is_empty());
        prop_assert!(h.core.poll_timeout().is_none());
    }
}
