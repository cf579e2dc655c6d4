// Long file: the brute-force model of the grid and the fixed cases checked against the same grid helpers.
//! Fragments against a brute-force model: random moves, removals, radius
//! and cap changes, with membership, events, `nearby`, `audience` and the
//! tick fan-out checked after each step; plus the edge cases and the
//! scheduler with a fake clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sustenet_server::PlayerId;
use sustenet_server::fragments::{
    Dims, FragmentError, FragmentEvent, FragmentId, FragmentSettings, Fragments, GridConfig,
};

// ---------------------------------------------------------------- model

/// The whole world as a plain list, answering every question by looking at
/// every player.
struct Model {
    dims: Dims,
    cell: f32,
    default_radius: f32,
    default_cap: u32,
    players: BTreeMap<PlayerId, ([f32; 3], f32)>,
    caps: HashMap<FragmentId, u32>,
}

impl Model {
    fn fragment(&self, pos: [f32; 3]) -> FragmentId {
        let c = f64::from(self.cell);
        let idx = |v: f32| (f64::from(v) / c).floor() as i32;
        FragmentId {
            x: idx(pos[0]),
            y: idx(pos[1]),
            z: if self.dims == Dims::Three {
                idx(pos[2])
            } else {
                0
            },
        }
    }

    fn dist2(&self, a: [f32; 3], b: [f32; 3]) -> f64 {
        let d = |i: usize| f64::from(a[i]) - f64::from(b[i]);
        let flat = d(0) * d(0) + d(1) * d(1);
        if self.dims == Dims::Three {
            flat + d(2) * d(2)
        } else {
            flat
        }
    }

    fn within(&self, a: [f32; 3], b: [f32; 3], r: f32) -> bool {
        self.dist2(a, b) <= f64::from(r) * f64::from(r)
    }

    fn members(&self, f: FragmentId) -> BTreeSet<PlayerId> {
        self.players
            .iter()
            .filter(|(_, (pos, _))| self.fragment(*pos) == f)
            .map(|(id, _)| *id)
            .collect()
    }

    fn cap(&self, f: FragmentId) -> u32 {
        self.caps.get(&f).copied().unwrap_or(self.default_cap)
    }

    fn nearby(&self, pos: [f32; 3], r: f32) -> BTreeSet<PlayerId> {
        self.players
            .iter()
            .filter(|(_, (q, _))| self.within(*q, pos, r))
            .map(|(id, _)| *id)
            .collect()
    }

    fn audience(&self, p: PlayerId) -> BTreeSet<PlayerId> {
        let (pos, _) = self.players[&p];
        self.players
            .iter()
            .filter(|(id, (q, qr))| **id != p && self.within(*q, pos, *qr))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Every (recipient, subject) pair whose subject is in a due fragment.
    fn fan_out(&self, due: &BTreeSet<FragmentId>) -> BTreeSet<(PlayerId, PlayerId)> {
        let mut out = BTreeSet::new();
        for (&q, &(qpos, qr)) in &self.players {
            for (&p, &(ppos, _)) in &self.players {
                if p != q && due.contains(&self.fragment(ppos)) && self.within(ppos, qpos, qr) {
                    out.insert((q, p));
                }
            }
        }
        out
    }
}

fn over(count: usize, cap: u32) -> bool {
    cap != 0 && count > cap as usize
}

fn set(v: impl IntoIterator<Item = PlayerId>) -> BTreeSet<PlayerId> {
    v.into_iter().collect()
}

// ---------------------------------------------------------------- ops

#[derive(Debug, Clone)]
enum Op {
    Move(usize, [f32; 3]),
    Remove(usize),
    Radius(usize, f32),
    Cap((i32, i32), u32),
    ClearCap((i32, i32)),
    Query([f32; 3], f32),
    Tick(u64),
}

/// Player ids are spread out so nothing depends on them being small.
fn pid(i: usize) -> PlayerId {
    (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

/// Coordinates in a small world, often exactly on a cell border (the cell
/// size is 10 or a divisor of it), so edges get exercised.
fn coord() -> impl Strategy<Value = f32> {
    prop_oneof![
        3 => -60.0f32..60.0,
        1 => (-12i32..12).prop_map(|k| k as f32 * 5.0),
        1 => (-240i32..240).prop_map(|k| k as f32 * 0.25),
    ]
}

fn pos() -> impl Strategy<Value = [f32; 3]> {
    (coord(), coord(), coord()).prop_map(|(x, y, z)| [x, y, z])
}

fn radius() -> impl Strategy<Value = f32> {
    prop_oneof![
        3 => 0.0f32..30.0,
        1 => (0i32..7).prop_map(|k| k as f32 * 5.0),
    ]
}

/// Query radii, often a whole number of grid steps so that players lie
/// exactly on the query's edge (inclusive).
fn query_radius() -> impl Strategy<Value = f32> {
    prop_oneof![
        2 => 0.0f32..70.0,
        1 => (0i32..14).prop_map(|k| k as f32 * 5.0),
        1 => (0i32..40).prop_map(|k| k as f32 * 0.25),
    ]
}

fn op(players: usize) -> impl Strategy<Value = Op> {
    let frag = (-6i32..6, -6i32..6);
    prop_oneof![
        12 => (0..players, pos()).prop_map(|(p, x)| Op::Move(p, x)),
        2 => (0..players).prop_map(Op::Remove),
        2 => (0..players, radius()).prop_map(|(p, r)| Op::Radius(p, r)),
        1 => (frag.clone(), 0u32..5).prop_map(|(f, c)| Op::Cap(f, c)),
        1 => frag.prop_map(Op::ClearCap),
        2 => (pos(), query_radius()).prop_map(|(p, r)| Op::Query(p, r)),
        1 => (0u64..120).prop_map(Op::Tick),
    ]
}

fn scenario() -> impl Strategy<Value = (Dims, f32, u32, Vec<Op>)> {
    (1usize..=200).prop_flat_map(|n| {
        (
            prop_oneof![Just(Dims::Two), Just(Dims::Three)],
            prop_oneof![Just(2.5f32), Just(5.0), Just(10.0), Just(7.3)],
            0u32..4,
            prop::collection::vec(op(n), 1..400),
        )
    })
}

// ---------------------------------------------------------------- checks

fn check_player(g: &Fragments, m: &Model, p: PlayerId) {
    match m.players.get(&p) {
        Some(&(pos, r)) => {
            assert_eq!(g.position(p), Some(pos));
            assert_eq!(
                g.fragment_of(p),
                Some(m.fragment(pos)),
                "player {p} at {pos:?}"
            );
            assert_eq!(g.interest_radius(p), Some(r));
            assert_eq!(set(g.audience(p)), m.audience(p), "audience of {p}");
        }
        None => {
            assert!(!g.contains(p));
            assert_eq!(g.fragment_of(p), None);
            assert!(g.audience(p).is_empty());
        }
    }
}

fn check_fragment(g: &Fragments, m: &Model, f: FragmentId) {
    let got: Vec<PlayerId> = g.players_in(f).collect();
    assert_eq!(got.len(), g.population(f));
    assert_eq!(set(got), m.members(f), "members of {f}");
}

fn check_all(g: &Fragments, m: &Model) {
    assert_eq!(g.player_count(), m.players.len());
    let occupied: BTreeSet<FragmentId> = m.players.values().map(|(p, _)| m.fragment(*p)).collect();
    let got: BTreeSet<FragmentId> = g.occupied_fragments().collect();
    assert_eq!(got, occupied);
    assert_eq!(g.fragment_count(), occupied.len());
    for f in &occupied {
        check_fragment(g, m, *f);
    }
    for &p in m.players.keys() {
        check_player(g, m, p);
    }
    let max = m.players.values().map(|(_, r)| *r).fold(0.0f32, f32::max);
    assert_eq!(g.max_interest_radius(), max);
}

// Long: one match over every grid operation, each applied to the grid and to the model side by side and checked at once.
fn run(dims: Dims, cell: f32, default_cap: u32, ops: Vec<Op>) {
    let config = GridConfig {
        cell_size: cell,
        dims,
        default_settings: FragmentSettings {
            player_cap: default_cap,
            update_hz: 20.0,
        },
        default_interest_radius: 12.0,
    };
    let mut g = Fragments::new(config).unwrap();
    let mut m = Model {
        dims,
        cell,
        default_radius: 12.0,
        default_cap,
        players: BTreeMap::new(),
        caps: HashMap::new(),
    };
    let t0 = Instant::now();
    let mut now = t0;

    for op in ops {
        match op {
            Op::Move(i, pos) => {
                let p = pid(i);
                let new = m.fragment(pos);
                let old = m.players.get(&p).map(|(x, _)| m.fragment(*x));
                let mut want = Vec::new();
                if old != Some(new) {
                    if let Some(old) = old {
                        want.push(FragmentEvent::Exited {
                            player: p,
                            fragment: old,
                        });
                    }
                    want.push(FragmentEvent::Entered {
                        player: p,
                        fragment: new,
                    });
                    let before = m.members(new).len();
                    let cap = m.cap(new);
                    if !over(before, cap) && over(before + 1, cap) {
                        want.push(FragmentEvent::OverCap {
                            fragment: new,
                            players: before + 1,
                            cap,
                        });
                    }
                }
                let r = m.players.get(&p).map_or(m.default_radius, |(_, r)| *r);
                m.players.insert(p, (pos, r));
                let got: Vec<FragmentEvent> = g.set_position(p, pos).unwrap().into_iter().collect();
                assert_eq!(got, want, "move {p} to {pos:?}");
                check_player(&g, &m, p);
                check_fragment(&g, &m, new);
                if let Some(old) = old {
                    check_fragment(&g, &m, old);
                }
            }
            Op::Remove(i) => {
                let p = pid(i);
                let want = m.players.remove(&p).map(|(pos, _)| FragmentEvent::Exited {
                    player: p,
                    fragment: m.fragment(pos),
                });
                assert_eq!(g.remove(p), want);
                check_player(&g, &m, p);
                if let Some(FragmentEvent::Exited { fragment, .. }) = want {
                    check_fragment(&g, &m, fragment);
                }
            }
            Op::Radius(i, r) => {
                let p = pid(i);
                let res = g.set_interest_radius(p, r);
                match m.players.get_mut(&p) {
                    Some(entry) => {
                        res.unwrap();
                        entry.1 = r;
                    }
                    None => assert_eq!(res, Err(FragmentError::UnknownPlayer(p))),
                }
                check_player(&g, &m, p);
            }
            Op::Cap((x, y), cap) => {
                let f = FragmentId { x, y, z: 0 };
                let n = m.members(f).len();
                let want = (!over(n, m.cap(f)) && over(n, cap)).then_some(FragmentEvent::OverCap {
                    fragment: f,
                    players: n,
                    cap,
                });
                m.caps.insert(f, cap);
                let s = FragmentSettings {
                    player_cap: cap,
                    update_hz: 20.0,
                };
                assert_eq!(g.set_fragment_settings(f, s).unwrap(), want);
                assert_eq!(g.settings(f), s);
            }
            Op::ClearCap((x, y)) => {
                let f = FragmentId { x, y, z: 0 };
                let n = m.members(f).len();
                let want = m.caps.remove(&f).and_then(|old| {
                    (!over(n, old) && over(n, default_cap)).then_some(FragmentEvent::OverCap {
                        fragment: f,
                        players: n,
                        cap: default_cap,
                    })
                });
                assert_eq!(g.clear_fragment_settings(f), want);
                assert_eq!(g.settings(f).player_cap, default_cap);
            }
            Op::Query(pos, r) => {
                let got = g.nearby(pos, r);
                let n = got.len();
                let got = set(got);
                assert_eq!(n, got.len(), "nearby repeated a player");
                assert_eq!(got, m.nearby(pos, r), "nearby({pos:?}, {r})");
            }
            Op::Tick(ms) => {
                now += Duration::from_millis(ms);
                let due: BTreeSet<FragmentId> = g.start_tick(now).iter().copied().collect();
                assert!(due.iter().all(|f| g.population(*f) > 0));
                let mut pairs = BTreeSet::new();
                let mut recipients = BTreeSet::new();
                let stats = g.fan_out(|q, subjects| {
                    assert!(recipients.insert(q), "{q} emitted twice");
                    assert!(!subjects.is_empty());
                    for &p in subjects {
                        assert!(pairs.insert((q, p)), "pair ({q}, {p}) twice");
                    }
                });
                assert_eq!(stats.due_fragments, due.len());
                assert_eq!(stats.pairs, pairs.len());
                assert_eq!(stats.recipients, recipients.len());
                assert_eq!(pairs, m.fan_out(&due));
            }
        }
    }

    check_all(&g, &m);
    // Every fragment is new to a fresh clock's first tick, so the fan-out
    // must be exactly the inverse of every player's audience.
    let mut fresh = Fragments::new(config).unwrap();
    for (&p, &(pos, r)) in &m.players {
        fresh.set_position(p, pos).unwrap();
        fresh.set_interest_radius(p, r).unwrap();
    }
    let mut pairs = BTreeSet::new();
    fresh.tick(t0, |q, subjects| {
        pairs.extend(subjects.iter().map(|&p| (q, p)));
    });
    let mut want = BTreeSet::new();
    for &p in m.players.keys() {
        want.extend(m.audience(p).into_iter().map(|q| (q, p)));
    }
    assert_eq!(pairs, want);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn matches_brute_force((dims, cell, cap, ops) in scenario()) {
        run(dims, cell, cap, ops);
    }
}

// ---------------------------------------------------------------- edges

fn grid(dims: Dims) -> Fragments {
    Fragments::new(GridConfig {
        cell_size: 10.0,
        dims,
        ..GridConfig::default()
    })
    .unwrap()
}

#[test]
fn bad_config_is_refused() {
    for cs in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let c = GridConfig {
            cell_size: cs,
            ..GridConfig::default()
        };
        assert!(matches!(
            Fragments::new(c),
            Err(FragmentError::InvalidCellSize(_))
        ));
    }
    for hz in [0.0, -5.0, f32::NAN, f32::INFINITY] {
        let c = GridConfig {
            default_settings: FragmentSettings {
                player_cap: 0,
                update_hz: hz,
            },
            ..GridConfig::default()
        };
        assert!(matches!(
            Fragments::new(c),
            Err(FragmentError::InvalidUpdateRate(_))
        ));
    }
    for r in [-1.0, f32::NAN, f32::INFINITY] {
        let c = GridConfig {
            default_interest_radius: r,
            ..GridConfig::default()
        };
        assert!(matches!(
            Fragments::new(c),
            Err(FragmentError::InvalidRadius(_))
        ));
    }
    let e = FragmentError::InvalidCellSize(0.0).to_string();
    assert_eq!(e, "cell size must be finite and positive, got 0");
}

#[test]
fn non_finite_positions_and_radii_are_refused() {
    let mut g = grid(Dims::Three);
    for bad in [
        [f32::NAN, 0.0, 0.0],
        [0.0, f32::INFINITY, 0.0],
        [0.0, 0.0, f32::NEG_INFINITY],
    ] {
        // NaN is not equal to itself, so match on the variant.
        assert!(matches!(
            g.set_position(1, bad),
            Err(FragmentError::InvalidPosition(_))
        ));
        assert!(g.fragment_at(bad).is_err());
    }
    assert_eq!(g.player_count(), 0);
    g.set_position(1, [1.0, 2.0, 3.0]).unwrap();
    assert!(g.set_position(1, [f32::NAN; 3]).is_err());
    assert_eq!(
        g.position(1),
        Some([1.0, 2.0, 3.0]),
        "a refused move changes nothing"
    );
    for r in [-0.5, f32::NAN, f32::INFINITY] {
        assert!(matches!(
            g.set_interest_radius(1, r),
            Err(FragmentError::InvalidRadius(_))
        ));
    }
    assert_eq!(g.interest_radius(1), Some(64.0));
    assert_eq!(
        g.set_interest_radius(2, 5.0),
        Err(FragmentError::UnknownPlayer(2))
    );
    // Queries with nonsense never panic and find no one.
    assert!(g.nearby([f32::NAN, 0.0, 0.0], 5.0).is_empty());
    assert!(g.nearby([1.0, 2.0, 3.0], -1.0).is_empty());
    assert!(g.nearby([1.0, 2.0, 3.0], f32::NAN).is_empty());
    assert_eq!(g.nearby([1.0, 2.0, 3.0], f32::INFINITY), vec![1]);
}

#[test]
fn huge_coordinates_do_not_panic() {
    for dims in [Dims::Two, Dims::Three] {
        let mut g = Fragments::new(GridConfig {
            cell_size: 1e-3,
            dims,
            ..GridConfig::default()
        })
        .unwrap();
        let spots = [
            [f32::MAX, f32::MAX, f32::MAX],
            [f32::MIN, f32::MIN, f32::MIN],
            [f32::MAX, f32::MIN, 0.0],
            [1e30, -1e30, 1e30],
            [0.0, 0.0, 0.0],
            [f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 0.0],
        ];
        for (i, &p) in spots.iter().enumerate() {
            g.set_position(i as u64, p).unwrap();
            g.set_interest_radius(i as u64, 1e6).unwrap();
        }
        let f = g.fragment_of(0).unwrap();
        assert_eq!((f.x, f.y), (1 << 30, 1 << 30), "clamped, not wrapped");
        assert_eq!(g.fragment_of(1).unwrap().x, -(1 << 30));
        // Both sit in the same clamped fragment, and are still told apart
        // by distance.
        g.set_position(10, [f32::MAX, f32::MAX, f32::MAX]).unwrap();
        g.set_position(11, [1e38, 1e38, 1e38]).unwrap();
        assert_eq!(g.fragment_of(10), g.fragment_of(11));
        let mut near = g.nearby([f32::MAX; 3], 1.0);
        near.sort_unstable();
        assert_eq!(near, vec![0, 10]);
        // Everything but the corners (√2 · MAX away) is within MAX.
        assert_eq!(set(g.nearby([0.0; 3], f32::MAX)), set([3, 4, 5, 11]));
        assert_eq!(g.nearby([0.0; 3], f32::INFINITY).len(), 8);
        for p in 0..12 {
            g.audience(p);
        }
        g.tick(Instant::now(), |_, _| {});
        let before = g.player_count();
        for p in 0..12 {
            g.remove(p);
        }
        assert_eq!(before, 8);
        assert_eq!(g.player_count(), 0);
        assert_eq!(g.fragment_count(), 0);
    }
}

#[test]
fn two_d_ignores_z() {
    let mut g = grid(Dims::Two);
    g.set_position(1, [5.0, 5.0, 1e9]).unwrap();
    g.set_position(2, [6.0, 5.0, -1e9]).unwrap();
    assert_eq!(g.fragment_of(1), Some(FragmentId { x: 0, y: 0, z: 0 }));
    assert_eq!(g.fragment_of(1), g.fragment_of(2));
    assert_eq!(set(g.nearby([5.5, 5.0, 0.0], 0.5)), set([1, 2]));
    let mut g3 = grid(Dims::Three);
    g3.set_position(1, [5.0, 5.0, 15.0]).unwrap();
    assert_eq!(g3.fragment_of(1), Some(FragmentId { x: 0, y: 0, z: 1 }));
}

#[test]
fn negative_coordinates_floor() {
    let mut g = grid(Dims::Two);
    g.set_position(1, [-0.1, -10.0, 0.0]).unwrap();
    assert_eq!(g.fragment_of(1), Some(FragmentId { x: -1, y: -1, z: 0 }));
    g.set_position(1, [-10.01, 9.99, 0.0]).unwrap();
    assert_eq!(g.fragment_of(1), Some(FragmentId { x: -2, y: 0, z: 0 }));
}

// Long: one scenario; each step depends on the state the steps before it left.
#[test]
fn events_and_overrides() {
    let mut g = grid(Dims::Two);
    let f = FragmentId { x: 0, y: 0, z: 0 };
    let g2 = FragmentId { x: 1, y: 0, z: 0 };
    assert_eq!(g.settings(f), FragmentSettings::default());
    let cap2 = FragmentSettings {
        player_cap: 2,
        update_hz: 10.0,
    };
    assert_eq!(g.set_fragment_settings(f, cap2), Ok(None));
    assert_eq!(g.settings(f), cap2);
    assert_eq!(g.settings(g2), FragmentSettings::default());
    assert!(
        g.set_fragment_settings(
            f,
            FragmentSettings {
                player_cap: 1,
                update_hz: 0.0
            }
        )
        .is_err()
    );
    assert_eq!(g.settings(f), cap2, "a refused override changes nothing");

    let ev: Vec<_> = g
        .set_position(1, [1.0, 1.0, 0.0])
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        ev,
        vec![FragmentEvent::Entered {
            player: 1,
            fragment: f
        }]
    );
    assert!(g.set_position(1, [2.0, 2.0, 0.0]).unwrap().is_empty());
    g.set_position(2, [3.0, 1.0, 0.0]).unwrap();
    let ev: Vec<_> = g
        .set_position(3, [4.0, 1.0, 0.0])
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        ev,
        vec![
            FragmentEvent::Entered {
                player: 3,
                fragment: f
            },
            FragmentEvent::OverCap {
                fragment: f,
                players: 3,
                cap: 2
            },
        ]
    );
    // Still over: no second report.
    let ev = g.set_position(4, [5.0, 1.0, 0.0]).unwrap();
    assert_eq!(ev.len(), 1);
    // Leave and re-cross.
    let ev: Vec<_> = g
        .set_position(4, [15.0, 1.0, 0.0])
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        ev,
        vec![
            FragmentEvent::Exited {
                player: 4,
                fragment: f
            },
            FragmentEvent::Entered {
                player: 4,
                fragment: g2
            },
        ]
    );
    assert_eq!(
        g.remove(3),
        Some(FragmentEvent::Exited {
            player: 3,
            fragment: f
        })
    );
    assert_eq!(g.remove(3), None);
    let ev: Vec<_> = g
        .set_position(3, [4.0, 1.0, 0.0])
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(ev.len(), 2);
    // Lowering the cap of an occupied fragment crosses it too.
    let cap1 = FragmentSettings {
        player_cap: 1,
        update_hz: 20.0,
    };
    assert_eq!(g.set_fragment_settings(f, cap1), Ok(None), "already over 2");
    assert_eq!(
        g.set_fragment_settings(g2, cap1),
        Ok(None),
        "one player is not over a cap of one"
    );
    g.remove(3);
    g.remove(2);
    assert_eq!(g.clear_fragment_settings(f), None, "default has no cap");
    assert_eq!(g.settings(f), FragmentSettings::default());
    g.set_position(2, [1.0, 1.0, 0.0]).unwrap();
    assert_eq!(
        g.set_fragment_settings(f, cap1),
        Ok(Some(FragmentEvent::OverCap {
            fragment: f,
            players: 2,
            cap: 1
        }))
    );
}

#[test]
fn radius_changes_move_the_audience() {
    let mut g = grid(Dims::Two);
    g.set_position(1, [0.0, 0.0, 0.0]).unwrap();
    g.set_position(2, [100.0, 0.0, 0.0]).unwrap();
    g.set_interest_radius(2, 1.0).unwrap();
    g.set_interest_radius(1, 1.0).unwrap();
    assert!(g.audience(1).is_empty());
    assert_eq!(g.max_interest_radius(), 1.0);
    g.set_interest_radius(2, 100.0).unwrap();
    assert_eq!(g.max_interest_radius(), 100.0);
    assert_eq!(g.audience(1), vec![2], "2 sees exactly 100 away");
    assert!(g.audience(2).is_empty(), "1 does not see that far");
    g.remove(2);
    assert_eq!(g.max_interest_radius(), 1.0);
}

// ---------------------------------------------------------------- scheduler

/// Ticks every 10 ms for `span_ms` and returns the times (ms from start)
/// at which `f` was due.
fn due_times(g: &mut Fragments, t0: Instant, f: FragmentId, span_ms: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for ms in (0..=span_ms).step_by(10) {
        if g.start_tick(t0 + Duration::from_millis(ms)).contains(&f) {
            out.push(ms);
        }
    }
    out
}

#[test]
fn scheduler_follows_each_fragments_rate() {
    let mut g = grid(Dims::Two);
    let ten = FragmentId { x: 0, y: 0, z: 0 };
    let twenty = FragmentId { x: 5, y: 0, z: 0 };
    g.set_fragment_settings(
        ten,
        FragmentSettings {
            player_cap: 0,
            update_hz: 10.0,
        },
    )
    .unwrap();
    g.set_fragment_settings(
        twenty,
        FragmentSettings {
            player_cap: 0,
            update_hz: 20.0,
        },
    )
    .unwrap();
    g.set_position(1, [1.0, 1.0, 0.0]).unwrap();
    g.set_position(2, [51.0, 1.0, 0.0]).unwrap();
    let t0 = Instant::now();
    let mut tens = Vec::new();
    let mut twenties = Vec::new();
    for ms in (0..=500).step_by(10) {
        let due = g.start_tick(t0 + Duration::from_millis(ms));
        if due.contains(&ten) {
            tens.push(ms);
        }
        if due.contains(&twenty) {
            twenties.push(ms);
        }
    }
    assert_eq!(tens, vec![0, 100, 200, 300, 400, 500]);
    assert_eq!(twenties, (0..=500).step_by(50).collect::<Vec<u64>>());
    assert_eq!(g.next_due(ten), Some(t0 + Duration::from_millis(600)));
}

#[test]
fn scheduler_keeps_the_average_rate_and_skips_when_late() {
    let mut g = grid(Dims::Two);
    let f = FragmentId { x: 0, y: 0, z: 0 };
    g.set_fragment_settings(
        f,
        FragmentSettings {
            player_cap: 0,
            update_hz: 30.0,
        },
    )
    .unwrap();
    g.set_position(1, [1.0, 1.0, 0.0]).unwrap();
    let t0 = Instant::now();
    // 30 Hz on a 10 ms tick: due every 3rd or 4th tick, 30 times a second.
    let times = due_times(&mut g, t0, f, 990);
    assert_eq!(times.len(), 30, "{times:?}");
    // A stall of a whole second gives one update, not a burst of thirty.
    let late = t0 + Duration::from_millis(2000);
    assert!(g.start_tick(late).contains(&f));
    assert!(!g.start_tick(late + Duration::from_millis(10)).contains(&f));
    assert!(g.start_tick(late + Duration::from_millis(34)).contains(&f));
}

#[test]
fn fan_out_sends_only_due_fragments() {
    let mut g = grid(Dims::Two);
    let slow = FragmentId { x: 0, y: 0, z: 0 };
    g.set_fragment_settings(
        slow,
        FragmentSettings {
            player_cap: 0,
            update_hz: 1.0,
        },
    )
    .unwrap();
    // 1 in the 1 Hz fragment, 2 next door at the 20 Hz default.
    g.set_position(1, [9.0, 1.0, 0.0]).unwrap();
    g.set_position(2, [11.0, 1.0, 0.0]).unwrap();
    let t0 = Instant::now();
    let collect = |g: &mut Fragments, now| {
        let mut v = Vec::new();
        let stats = g.tick(now, |q, s| v.push((q, s.to_vec())));
        v.sort();
        (stats, v)
    };
    let (stats, v) = collect(&mut g, t0);
    assert_eq!(stats.due_fragments, 2);
    assert_eq!(v, vec![(1, vec![2]), (2, vec![1])]);
    let (stats, v) = collect(&mut g, t0 + Duration::from_millis(50));
    assert_eq!(stats.due_fragments, 1);
    assert_eq!(v, vec![(1, vec![2])], "only 2's fragment is due");
    let (stats, v) = collect(&mut g, t0 + Duration::from_millis(60));
    assert_eq!((stats.due_fragments, stats.pairs), (0, 0));
    assert!(v.is_empty());
}

#[test]
fn fragments_occupied_at_different_times_share_one_schedule() {
    let mut g = grid(Dims::Two);
    let a = FragmentId { x: 0, y: 0, z: 0 };
    let b = FragmentId { x: 3, y: 0, z: 0 };
    g.set_position(1, [1.0, 1.0, 0.0]).unwrap();
    let t0 = Instant::now();
    assert!(g.start_tick(t0).contains(&a));
    // b is first occupied 20 ms into a's 50 ms period: due at once, then
    // on the same ticks as a, so a player near both gets one batch.
    g.set_position(2, [31.0, 1.0, 0.0]).unwrap();
    let due = g.start_tick(t0 + Duration::from_millis(20));
    assert_eq!(due, [b]);
    for ms in (30..=150).step_by(10) {
        let mut due = g.start_tick(t0 + Duration::from_millis(ms)).to_vec();
        due.sort();
        let want = if ms % 50 == 0 { vec![a, b] } else { vec![] };
        assert_eq!(due, want, "{ms} ms");
    }
    assert_eq!(g.next_due(b), Some(t0 + Duration::from_millis(200)));
}
