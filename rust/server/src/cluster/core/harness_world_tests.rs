//! The core's datagrams and world in memory, on a fake clock: the answers
//! to a player's datagrams (challenges, pongs, the allowance of an unproven
//! address, silence), random datagram sequences (property test), and
//! fragments over their cap as the plugin sees them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use proptest::prelude::*;
use sustenet_proto::datagram::Record;

use super::harness::{Conn, Harness, Seen};
use crate::cluster::{ClusterConfig, SendError};
use crate::config::Limits;
use crate::fragments::FragmentEvent;
use crate::plugin::Channel;

fn config() -> ClusterConfig {
    ClusterConfig {
        limits: Limits {
            send_queue: 64,
            ..Limits::default()
        },
        ..ClusterConfig::default()
    }
}

fn addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// A full datagram of Ping records: 129 of them fit.
fn pings(from: u64) -> Vec<Record> {
    let n = sustenet_proto::datagram::MAX_DATAGRAM_PLAINTEXT / 9;
    (from..from + n as u64).map(Record::Ping).collect()
}

/// The records of the one datagram the core sent to `to`, if it sent
/// exactly one since the last look.
fn one_to(h: &mut Harness, player: u64, to: std::net::SocketAddr) -> Vec<Record> {
    let mut got = h.datagrams(player);
    assert_eq!(got.len(), 1, "one datagram out: {got:?}");
    let (at, _, records) = got.remove(0);
    assert_eq!(at, to);
    records
}

// Formerly the socket test udp_paths::one_datagram_in_never_yields_more_than_one_out.
#[test]
fn one_datagram_in_never_yields_more_than_one_out() {
    let mut h = Harness::new(config());
    let _c = h.join(1).unwrap();
    let a = addr(5000);
    // Unproven: a source is sent no more bytes than it sent in all, and at
    // most one datagram per datagram. A small datagram (one Ping, 42 bytes)
    // has room for the challenge only (42 bytes).
    h.datagram_in(1, a, vec![Record::Ping(7)]);
    let [Record::PathChallenge(challenge)] = one_to(&mut h, 1, a)[..] else {
        panic!("expected the challenge alone");
    };
    // An empty datagram (33 bytes) leaves room for nothing; with the next
    // one (51 bytes) there is room for the challenge and the last Pong.
    h.datagram_in(1, a, vec![]);
    assert!(h.datagrams(1).is_empty());
    h.datagram_in(1, a, vec![Record::Ping(8), Record::Ping(9)]);
    let want = vec![Record::PathChallenge(challenge), Record::Pong(9)];
    assert_eq!(one_to(&mut h, 1, a), want);
    // 129 pings in one datagram: one datagram back, the last one's Pong.
    let first = pings(100);
    let last = 100 + first.len() as u64 - 1;
    h.datagram_in(1, a, first.clone());
    let want = vec![Record::PathChallenge(challenge), Record::Pong(last)];
    assert_eq!(one_to(&mut h, 1, a), want);
    // Proven: 129 pings in, exactly one Pong (the last ping's) out.
    h.datagram_in(1, a, vec![Record::PathResponse(challenge)]);
    assert!(h.datagrams(1).is_empty());
    h.datagram_in(1, a, first);
    assert_eq!(one_to(&mut h, 1, a), vec![Record::Pong(last)]);
    h.datagram_in(
        1,
        a,
        vec![Record::Data {
            command: 3,
            payload: b"x".to_vec(),
        }],
    );
    assert!(
        h.datagrams(1).is_empty(),
        "data is for the game, not answered"
    );
    assert_eq!(
        h.seen().last(),
        Some(&Seen::Packet(1, 3, b"x".to_vec(), Channel::Unreliable))
    );
}

// Formerly the socket test udp_paths::a_silent_address_stops_receiving_until_it_proves_itself_again
// (which slept through the silence window).
#[test]
fn a_silent_address_stops_receiving_until_it_proves_itself_again() {
    let silence = Duration::from_millis(400);
    let mut h = Harness::new(ClusterConfig {
        udp_silence: silence,
        ..config()
    });
    let _c = h.join(1).unwrap();
    let a = addr(5001);
    let send = |h: &mut Harness| {
        let r = std::sync::Arc::new(std::sync::Mutex::new(None));
        let out = r.clone();
        h.command(move |ctx| {
            *out.lock().unwrap() = Some(ctx.send_unreliable(1, 9, b"state"));
        });
        let taken = r.lock().unwrap().take();
        taken.unwrap()
    };
    assert_eq!(
        send(&mut h),
        Err(SendError::NoUdpAddress(1)),
        "nothing proven yet"
    );
    h.datagram_in(1, a, vec![Record::Ping(1)]);
    let [Record::PathChallenge(c)] = one_to(&mut h, 1, a)[..] else {
        panic!("expected a challenge");
    };
    h.datagram_in(1, a, vec![Record::PathResponse(c)]);
    assert_eq!(send(&mut h), Ok(()));
    assert_eq!(
        one_to(&mut h, 1, a)[..],
        [Record::Data {
            command: 9,
            payload: b"state".to_vec()
        }]
    );
    // Silent from now on: nothing goes to it once the window has passed.
    h.now += silence * 2;
    assert_eq!(send(&mut h), Err(SendError::NoUdpAddress(1)));
    assert!(h.datagrams(1).is_empty());
    // Its next datagram is treated as from an unproven address: a challenge.
    h.datagram_in(1, a, vec![Record::Ping(5)]);
    let [Record::PathChallenge(c)] = one_to(&mut h, 1, a)[..] else {
        panic!("expected a challenge again");
    };
    h.datagram_in(1, a, vec![Record::PathResponse(c)]);
    assert_eq!(send(&mut h), Ok(()));
    assert_eq!(one_to(&mut h, 1, a).len(), 1);
}

/// A datagram from one of three addresses of player 1.
#[derive(Debug, Clone)]
enum Dgram {
    Pings(u8, u8),
    /// The right answer to the last challenge sent to that address, or a wrong one.
    Answer(u8, bool),
    Data(u8),
    Empty(u8),
    Wait(u16),
}

fn dgram() -> impl Strategy<Value = Dgram> {
    let at = 0..3u8;
    prop_oneof![
        (at.clone(), 1..130u8).prop_map(|(a, n)| Dgram::Pings(a, n)),
        (at.clone(), any::<bool>()).prop_map(|(a, ok)| Dgram::Answer(a, ok)),
        at.clone().prop_map(Dgram::Data),
        at.prop_map(Dgram::Empty),
        (0..2000u16).prop_map(Dgram::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever a player's datagrams do from whatever addresses: one
    /// datagram in yields at most one out to its source (and at most the old
    /// path probe, a challenge, to a proven address), and an address that never proved
    /// itself gets only challenges and pongs, never more datagrams or bytes
    /// than it sent.
    #[test]
    fn no_address_is_sent_more_than_it_sent_until_it_proves_itself(
        steps in proptest::collection::vec(dgram(), 1..60),
    ) {
        let mut h = Harness::new(config());
        let _c = h.join(1).unwrap();
        let mut challenges = [None; 3];
        let mut proven = [false; 3];
        let mut sent = [(0usize, 0usize); 3];
        let mut got = [(0usize, 0usize); 3];
        for step in steps {
            let (at, records) = match step {
                Dgram::Pings(a, n) => (a, (0..u64::from(n)).map(Record::Ping).collect()),
                Dgram::Answer(a, ok) => {
                    let v = challenges[a as usize].unwrap_or(0) ^ u64::from(!ok);
                    (a, vec![Record::PathResponse(v)])
                }
                Dgram::Data(a) => (a, vec![Record::Data { command: 2, payload: vec![1; 40] }]),
                Dgram::Empty(a) => (a, vec![]),
                Dgram::Wait(ms) => {
                    h.now += Duration::from_millis(u64::from(ms));
                    continue;
                }
            };
            let i = at as usize;
            if matches!(step, Dgram::Answer(_, true)) && challenges[i].is_some() {
                proven[i] = true;
            }
            let len = h.datagram_in(1, addr(6000 + u16::from(at)), records);
            sent[i] = (sent[i].0 + 1, sent[i].1 + len);
            let out = h.datagrams(1);
            let from = addr(6000 + u16::from(at));
            let to_source = out.iter().filter(|(to, ..)| *to == from).count();
            prop_assert!(to_source <= 1, "one datagram in, {} out to its source", to_source);
            // Besides: at most the old path probe, a lone challenge to a proven address.
            prop_assert!(out.len() - to_source <= 1, "one datagram in, {} out", out.len());
            for (to, _, records) in out.iter().filter(|(to, ..)| *to != from) {
                let j = usize::from(to.port() - 6000);
                prop_assert!(proven[j] && matches!(records[..], [Record::PathChallenge(_)]),
                    "to {to} besides the source: {records:?}");
            }
            for (to, n, records) in out {
                let j = usize::from(to.port() - 6000);
                got[j] = (got[j].0 + 1, got[j].1 + n);
                for r in &records {
                    if let Record::PathChallenge(c) = r {
                        challenges[j] = Some(*c);
                    }
                }
                if !proven[j] {
                    prop_assert!(records.iter().all(|r| matches!(r, Record::PathChallenge(_) | Record::Pong(_))));
                    prop_assert!(got[j].0 <= sent[j].0 && got[j].1 <= sent[j].1,
                        "to an unproven address: sent {:?}, got {:?}", sent[j], got[j]);
                }
            }
        }
    }
}

#[test]
fn a_fragment_over_its_cap_is_reported_once_and_a_leaving_player_exits_it() {
    let mut config = config();
    config.grid.default_settings.player_cap = 2;
    let mut h = Harness::new(config);
    let conns: Vec<Conn> = (1..=4).map(|p| h.join(p).unwrap()).collect();
    h.seen();
    for p in 1..=4u64 {
        h.command(move |ctx| ctx.set_position(p, [1.0, 1.0, 0.0]).unwrap());
    }
    let frag = |s: &Seen| match s {
        Seen::Fragment(ev) => Some(*ev),
        _ => None,
    };
    let events: Vec<FragmentEvent> = h.seen().iter().filter_map(frag).collect();
    let over: Vec<&FragmentEvent> = events
        .iter()
        .filter(|e| matches!(e, FragmentEvent::OverCap { .. }))
        .collect();
    assert_eq!(over.len(), 1, "reported once per crossing: {events:?}");
    assert!(matches!(
        over[0],
        FragmentEvent::OverCap {
            players: 3,
            cap: 2,
            ..
        }
    ));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, FragmentEvent::Entered { .. }))
            .count(),
        4
    );
    // Two are kicked: each exits the fragment, and back under the cap a new
    // crossing is reported again.
    h.command(|ctx| ctx.kick(4, "bye"));
    h.command(|ctx| ctx.kick(3, "bye"));
    let events: Vec<FragmentEvent> = h.seen().iter().filter_map(frag).collect();
    assert_eq!(
        events,
        vec![
            FragmentEvent::Exited {
                player: 4,
                fragment: over[0].fragment()
            },
            FragmentEvent::Exited {
                player: 3,
                fragment: over[0].fragment()
            },
        ]
    );
    let c5 = h.join(5).unwrap();
    h.command(|ctx| ctx.set_position(5, [2.0, 2.0, 0.0]).unwrap());
    let events: Vec<FragmentEvent> = h.seen().iter().filter_map(frag).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, FragmentEvent::OverCap { players: 3, .. })),
        "{events:?}"
    );
    drop((conns, c5));
}
