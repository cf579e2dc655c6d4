//! The state fan-out on a fake clock: a state leaves within the state
//! window of being set, a recipient's records share datagrams, a subject
//! set again before its record left is sent once, the fragment's update
//! rate bounds how often a subject is sent, and unchanged states are sent
//! again on the fragment's updates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use sustenet_proto::datagram::Record;

use super::harness::Harness;
use crate::cluster::ClusterConfig;
use crate::ids::PlayerId;

const MS: Duration = Duration::from_millis(1);
const STATE: u16 = 11;

fn config(window: Duration) -> ClusterConfig {
    ClusterConfig {
        state_window: window,
        ..ClusterConfig::default()
    }
}

/// Players `1..=n`, joined, with proven UDP addresses, all within each
/// other's interest radius (64 by default), without states yet.
fn world(window: Duration, n: u64) -> Harness {
    let mut h = Harness::new(config(window));
    for p in 1..=n {
        drop(h.join(p).unwrap());
        let a = std::net::SocketAddr::from(([127, 0, 0, 1], 6000 + p as u16));
        h.datagram_in(p, a, vec![Record::Ping(1)]);
        let sent = h.sent();
        let Some(Record::PathChallenge(c)) = sent.iter().flat_map(|(_, r)| r).next().cloned()
        else {
            panic!("expected a challenge: {sent:?}");
        };
        h.datagram_in(p, a, vec![Record::PathResponse(c)]);
        h.command(move |ctx| ctx.set_position(p, [p as f32, 0.0, 0.0]).unwrap());
    }
    assert!(h.sent().is_empty());
    h
}

fn set_state(h: &mut Harness, player: PlayerId, state: &[u8]) {
    let state = state.to_vec();
    h.command(move |ctx| ctx.set_state(player, STATE, &state).unwrap());
}

/// The state records of `records` as (subject, state).
fn states(records: &[Record]) -> Vec<(PlayerId, Vec<u8>)> {
    records
        .iter()
        .map(|r| match r {
            Record::Data { command, payload } if *command == STATE => {
                let id = u64::from_le_bytes(payload[..8].try_into().unwrap());
                (id, payload[8..].to_vec())
            }
            other => panic!("not a state record: {other:?}"),
        })
        .collect()
}

/// One datagram's recipient and the (subject, state) records it holds.
type Heard = (PlayerId, Vec<(PlayerId, Vec<u8>)>);

/// What each player was sent, one entry per datagram, sorted by recipient.
fn by_recipient(h: &mut Harness) -> Vec<Heard> {
    let mut v: Vec<_> = h
        .sent()
        .into_iter()
        .map(|(to, records)| {
            let mut s = states(&records);
            s.sort();
            (to, s)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_state_leaves_within_the_window_and_a_superseded_one_never_does() {
    let window = 5 * MS;
    let mut h = world(window, 3);
    let t0 = h.now;
    set_state(&mut h, 2, b"a");
    assert!(h.sent().is_empty(), "waits for more");
    assert_eq!(h.core.poll_timeout(), Some(t0 + window));
    h.at(t0 + 2 * MS);
    set_state(&mut h, 3, b"b");
    set_state(&mut h, 2, b"c");
    h.at(t0 + window - Duration::from_nanos(1));
    assert!(h.sent().is_empty(), "not before the window ends");
    h.at(t0 + window);
    // Player 1 hears 2 (its latest state only) and 3 in one datagram;
    // player 3's batch opened with 2's first state, so it is due too.
    assert_eq!(
        by_recipient(&mut h),
        vec![
            (1, vec![(2, b"c".to_vec()), (3, b"b".to_vec())]),
            (3, vec![(2, b"c".to_vec())]),
        ]
    );
    // Player 2's batch opened at 2 ms with 3's state.
    assert_eq!(h.core.poll_timeout(), Some(t0 + 2 * MS + window));
    h.at(t0 + 2 * MS + window);
    assert_eq!(by_recipient(&mut h), vec![(2, vec![(3, b"b".to_vec())])]);
    assert_eq!(h.core.poll_timeout(), None);
}

#[test]
fn with_no_window_a_state_leaves_at_the_end_of_its_input() {
    let mut h = world(Duration::ZERO, 2);
    set_state(&mut h, 1, b"x");
    assert_eq!(by_recipient(&mut h), vec![(2, vec![(1, b"x".to_vec())])]);
    assert_eq!(h.core.poll_timeout(), None);
}

#[test]
fn a_full_batch_leaves_at_once() {
    // 40 neighbours with 100-byte states: 113 bytes a record, 10 fit a
    // datagram (1,167 bytes of plaintext).
    let mut h = world(Duration::from_millis(50), 41);
    for p in 2..=41 {
        set_state(&mut h, p, &[p as u8; 100]);
    }
    // Records per datagram sent to player 1 since the last look.
    let to_1 = |h: &mut Harness| -> Vec<usize> {
        let sent = h.sent().into_iter().filter(|(to, _)| *to == 1);
        sent.map(|(_, r)| r.len()).collect()
    };
    assert_eq!(
        to_1(&mut h),
        vec![10, 10, 10],
        "three full datagrams at once"
    );
    h.at(h.now + Duration::from_millis(50));
    let rest = to_1(&mut h);
    assert_eq!(rest, vec![10], "the rest when the window ends");
}

#[test]
fn the_fragment_rate_bounds_sends_and_unchanged_states_are_repeated() {
    let window = 2 * MS;
    let mut h = world(window, 2);
    let t0 = h.now;
    // The first update starts the grid's schedule (every 50 ms from t0).
    h.update();
    set_state(&mut h, 1, b"1");
    h.at(t0 + window);
    assert_eq!(by_recipient(&mut h), vec![(2, vec![(1, b"1".to_vec())])]);
    // Set again 10 ms later: the second within a period, out at once (a
    // tolerance of one period).
    h.at(t0 + 10 * MS);
    set_state(&mut h, 1, b"2");
    h.at(t0 + 10 * MS + window);
    assert_eq!(by_recipient(&mut h), vec![(2, vec![(1, b"2".to_vec())])]);
    // And again at 20 and 30 ms: over 20 Hz, so held until one period
    // after the first send (the schedule: 50 ms after the first, 100 after
    // the second, less the tolerance), and sent once, with the latest.
    for (ms, state) in [(20, b"3"), (30, b"4")] {
        h.at(t0 + ms * MS);
        set_state(&mut h, 1, state);
        h.at(t0 + ms * MS + window);
        assert!(h.sent().is_empty(), "held by the rate bound at {ms} ms");
    }
    assert_eq!(h.core.poll_timeout(), Some(t0 + 50 * MS));
    h.at(t0 + 50 * MS);
    h.update();
    h.at(t0 + 50 * MS + window);
    assert_eq!(by_recipient(&mut h), vec![(2, vec![(1, b"4".to_vec())])]);
    // Unchanged, sent on an update: sent again on every update.
    for ms in [100, 150, 200] {
        h.at(t0 + ms * MS);
        h.update();
        h.at(t0 + ms * MS + window);
        assert_eq!(
            by_recipient(&mut h),
            vec![(2, vec![(1, b"4".to_vec())])],
            "{ms} ms"
        );
    }
    // Set 190 ms after its last counted send (its schedule long passed):
    // out at once. The update 10 ms later does not repeat it (sent
    // less than a period ago), the one after does.
    h.at(t0 + 240 * MS);
    set_state(&mut h, 1, b"5");
    h.at(t0 + 240 * MS + window);
    assert_eq!(by_recipient(&mut h), vec![(2, vec![(1, b"5".to_vec())])]);
    for (ms, repeated) in [(250, false), (300, true)] {
        h.at(t0 + ms * MS);
        h.update();
        h.at(t0 + ms * MS + window);
        let want = if repeated {
            vec![(2, vec![(1, b"5".to_vec())])]
        } else {
            vec![]
        };
        assert_eq!(by_recipient(&mut h), want, "{ms} ms");
    }
}

#[test]
fn ten_neighbours_at_20_hz_at_random_moments_share_datagrams_within_the_window() {
    let window = 5 * MS;
    let mut h = world(window, 11);
    let t0 = h.now;
    // Every player reports at 20 Hz at its own phase (a fixed sequence),
    // for one second; the driver runs what is due between reports.
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut phase = Vec::new();
    for _ in 0..11 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        phase.push(Duration::from_micros(rng % 50_000));
    }
    let mut reports: Vec<(Instant, PlayerId)> = (0..20)
        .flat_map(|k| {
            phase
                .iter()
                .enumerate()
                .map(move |(i, ph)| (t0 + *ph + 50 * MS * k, i as PlayerId + 1))
        })
        .collect();
    reports.sort();
    let mut set_at = std::collections::HashMap::new();
    let (mut datagrams, mut records, mut latest) = (0usize, 0usize, Duration::ZERO);
    let mut take = |h: &mut Harness, set_at: &std::collections::HashMap<Vec<u8>, Instant>| {
        for (to, r) in h.sent() {
            if to != 1 {
                continue;
            }
            datagrams += 1;
            for (_, state) in states(&r) {
                records += 1;
                latest = latest.max(h.now - set_at[&state]);
            }
        }
    };
    for (n, (at, player)) in reports.into_iter().enumerate() {
        while let Some(due) = h.core.poll_timeout().filter(|d| *d <= at) {
            h.at(due);
            take(&mut h, &set_at);
        }
        h.at(at);
        let state = (n as u32).to_le_bytes().to_vec();
        set_at.insert(state.clone(), at);
        set_state(&mut h, player, &state);
        take(&mut h, &set_at);
    }
    while let Some(due) = h.core.poll_timeout() {
        h.at(due);
        take(&mut h, &set_at);
    }
    // 10 neighbours × 20 reports: every one heard, none later than the
    // window, in fewer datagrams than records.
    assert_eq!(records, 200);
    assert!(latest <= window, "{latest:?}");
    assert!(datagrams < records * 3 / 4, "{datagrams} datagrams");
}

#[test]
fn a_late_report_does_not_hold_the_next_one_that_comes_on_time() {
    let window = 2 * MS;
    let mut h = world(window, 2);
    let t0 = h.now;
    h.update();
    set_state(&mut h, 1, b"1");
    h.at(t0 + window);
    assert_eq!(by_recipient(&mut h), vec![(2, vec![(1, b"1".to_vec())])]);
    h.at(t0 + 50 * MS);
    h.update();
    h.at(t0 + 50 * MS + window);
    let _repeat_of_the_unchanged_state = by_recipient(&mut h);
    // A 20 Hz reporter: the report due at 50 ms comes 30 ms late...
    h.at(t0 + 80 * MS);
    set_state(&mut h, 1, b"2");
    h.at(t0 + 80 * MS + window);
    assert_eq!(by_recipient(&mut h), vec![(2, vec![(1, b"2".to_vec())])]);
    // ... and the one due at 100 ms on time: sent within the window, not
    // held to the fragment's update at 150 ms.
    h.at(t0 + 100 * MS);
    h.update();
    set_state(&mut h, 1, b"3");
    h.at(t0 + 100 * MS + window);
    assert_eq!(
        by_recipient(&mut h),
        vec![(2, vec![(1, b"3".to_vec())])],
        "the on-time report after a late one"
    );
}

/// A fragment update finds each due state's audience one way when few are
/// due (each subject's audience) and another when most are (every
/// recipient's subjects): both reach the same players.
#[test]
fn an_update_sends_each_due_state_to_its_whole_audience_whether_few_or_many_are_due() {
    let window = 2 * MS;
    let mut h = world(window, 4);
    let t0 = h.now;
    h.update();
    for p in 1..=4 {
        set_state(&mut h, p, &[p as u8]);
    }
    h.at(t0 + window);
    assert_eq!(by_recipient(&mut h).len(), 4);
    // Player 1 stays unchanged (so a period old, due at 50 ms); the
    // others set again at 30 ms (out at once, so not due then).
    for p in 2..=4 {
        h.at(t0 + 30 * MS);
        set_state(&mut h, p, &[p as u8, b'b']);
    }
    h.at(t0 + 30 * MS + window);
    assert_eq!(by_recipient(&mut h).len(), 4);
    // One state of four due: its audience, the three others.
    h.at(t0 + 50 * MS);
    h.update();
    h.at(t0 + 50 * MS + window);
    let one = |to| (to, vec![(1, vec![1])]);
    assert_eq!(by_recipient(&mut h), vec![one(2), one(3), one(4)]);
    // At 100 ms all four are a period old: each hears the three others.
    h.at(t0 + 100 * MS);
    h.update();
    h.at(t0 + 100 * MS + window);
    let state = |p: PlayerId| {
        if p == 1 { vec![1] } else { vec![p as u8, b'b'] }
    };
    let all: Vec<Heard> = (1..=4)
        .map(|to| {
            let heard = (1..=4).filter(|&p| p != to).map(|p| (p, state(p)));
            (to, heard.collect())
        })
        .collect();
    assert_eq!(by_recipient(&mut h), all);
}

/// When each of player 1's states reached player 2, in order, from what
/// was sent since the last look: (state, when it left).
fn heard_by_2(h: &mut Harness, out: &mut Vec<(Vec<u8>, Instant)>) {
    for (to, heard) in by_recipient(h) {
        if to == 2 {
            out.extend(heard.into_iter().map(|(_, state)| (state, h.now)));
        }
    }
}

/// Runs the driver until `until`: the update tick every 10 ms (on the
/// grid's schedule from `t0`) and whatever `poll_timeout` asks for.
fn run_until(h: &mut Harness, t0: Instant, until: Instant, out: &mut Vec<(Vec<u8>, Instant)>) {
    loop {
        let tick = t0 + 10 * MS * ((h.now - t0).as_millis() as u32 / 10 + 1);
        let next = h.core.poll_timeout().map_or(tick, |d| d.min(tick));
        if next > until {
            break;
        }
        h.at(next);
        if next == tick {
            h.update();
        }
        heard_by_2(h, out);
    }
    h.at(until);
    heard_by_2(h, out);
}

/// A 20 Hz reporter that sent one report too many (twice within 10 ms)
/// and then reports on time, 20 ms before the fragment's updates: after
/// the extra report its reports are not held to the update in every
/// period from then on (the rate bound's schedule does not stay ahead of
/// its reports), each leaves within the state window.
#[test]
fn a_reporter_off_the_update_phase_is_not_held_to_every_update_after_one_extra_report() {
    let window = 2 * MS;
    let mut h = world(window, 2);
    let t0 = h.now;
    h.update();
    let mut heard = Vec::new();
    let mut reports = vec![30, 40];
    reports.extend((1..10).map(|k| 30 + 50 * k));
    for (n, ms) in reports.iter().enumerate() {
        run_until(&mut h, t0, t0 + *ms * MS, &mut heard);
        set_state(&mut h, 1, &[n as u8]);
    }
    run_until(&mut h, t0, t0 + 600 * MS, &mut heard);
    // Every on-time report from the second period on left within the
    // window of its arrival.
    for (n, ms) in reports.iter().enumerate().skip(3) {
        let left = heard
            .iter()
            .find(|(s, _)| s == &[n as u8])
            .map(|(_, at)| *at);
        let Some(left) = left else {
            panic!("report {n} at {ms} ms never heard: {heard:?}");
        };
        let late = left - (t0 + *ms * MS);
        assert!(
            late <= window,
            "report {n} at {ms} ms left {late:?} after it came"
        );
    }
}

/// However a client times its reports (here: silent for three periods,
/// then as fast as the input allows, then a stall and a bunch), its state
/// is sent at most twice at once and at most once a period over time:
/// any k + 2 counted sends span at least k periods.
#[test]
fn bursts_after_a_stall_stay_within_the_rate_bound() {
    let window = 2 * MS;
    let mut h = world(window, 2);
    let t0 = h.now;
    h.update();
    let mut heard = Vec::new();
    let mut reports: Vec<u32> = vec![0, 1, 2, 3];
    reports.extend((0..60).map(|k| 150 + k));
    reports.extend([320, 320, 320, 321, 400, 401, 402, 450, 451]);
    reports.extend((0..200).map(|k| 600 + 3 * k));
    for (n, ms) in reports.iter().enumerate() {
        run_until(&mut h, t0, t0 + *ms * MS, &mut heard);
        set_state(&mut h, 1, &(n as u32).to_le_bytes());
    }
    run_until(&mut h, t0, t0 + 1500 * MS, &mut heard);
    // Only changed states count (repeats of an unchanged one on the
    // fragment's updates are not the client's doing): the first time each
    // state was heard.
    let mut sends: Vec<Instant> = Vec::new();
    let mut last = None;
    for (state, at) in &heard {
        if last.as_ref() != Some(state) {
            sends.push(*at);
            last = Some(state.clone());
        }
    }
    let period = 50 * MS;
    for i in 0..sends.len() {
        for j in i + 1..sends.len() {
            let k = (j - i) as u32;
            // k + 1 sends within sends[j] - sends[i]: at most 2 + whole
            // periods in it, with the window's slack for when each left.
            assert!(
                sends[j] - sends[i] + window >= period * k.saturating_sub(1),
                "{} sends within {:?}",
                k + 1,
                sends[j] - sends[i]
            );
        }
    }
    // And the client was heard: all it may send in the spans it reported.
    assert!(sends.len() >= 20, "{} sends", sends.len());
}
