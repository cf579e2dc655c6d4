//! The world as the generator knows it. Every simulated client walks a
//! path that is a function of its index and the time alone (a straight
//! line at `--speed`, bouncing off the edges of the square world), so any
//! worker process can tell where any client is at any moment, and so which
//! clients the interest area of a position update covers: the updates the
//! server should deliver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::plan::Plan;

/// How long one [`WalkGrid`] serves, in µs.
const GRID_SPAN_US: u64 = 1_000_000;
/// Grids kept for the seconds around now.
const GRIDS_KEPT: usize = 4;

/// One client's path.
#[derive(Debug, Clone, Copy)]
struct Path {
    x0: f64,
    y0: f64,
    z: f32,
    /// Velocity in world units per µs.
    vx: f64,
    vy: f64,
}

/// Every client's path, and the grids that find who is near whom.
#[derive(Debug)]
pub(super) struct Walks {
    paths: Vec<Path>,
    half: f64,
    /// The interest radius, and its square.
    radius: f32,
    r2: f64,
    /// The farthest a client moves in half a grid span.
    drift: f64,
    grids: Mutex<Vec<Arc<WalkGrid>>>,
}

/// Where every client is in the middle of one span of time, in cells big
/// enough that a 3 × 3 block around any point holds everyone within the
/// interest radius of it at any moment of the span.
#[derive(Debug)]
pub(super) struct WalkGrid {
    span: u64,
    cell: f64,
    cells: IndexMap<u64, Vec<u32>>,
}

/// Uniform in [0, 1) from a seeded generator.
fn unit(rng: &mut rand::rngs::StdRng) -> f64 {
    rand::Rng::random(rng)
}

/// `u` folded into [-half, half] as a ball bouncing between the walls
/// (with `floor` rather than `rem_euclid`, which costs several times more
/// and runs for every state record received).
fn bounce(u: f64, half: f64) -> f64 {
    let width = 2.0 * half;
    let period = 2.0 * width;
    let m = u + half;
    let m = m - (m / period).floor() * period;
    (if m > width { period - m } else { m }).clamp(0.0, width) - half
}

/// A hasher for small integer keys (cells, client indices): one multiply,
/// where the default hasher's SipHash is several times slower.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct IndexHasher(u64);

impl std::hash::Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01B3);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = (self.0 << 32) ^ u64::from(v);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 ^= v;
    }
}

/// A map keyed by small integers, with [`IndexHasher`].
pub(super) type IndexMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IndexHasher>>;

impl Walks {
    /// The paths of the plan's clients.
    pub(super) fn new(plan: &Plan) -> Walks {
        let half = f64::from(plan.world) / 2.0;
        let speed = f64::from(plan.speed) / 1e6;
        let paths = (0..plan.clients)
            .map(|i| {
                let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
                    u64::from(i) ^ 0x5EED_0000_0000_0000,
                );
                let heading = unit(&mut rng) * std::f64::consts::TAU;
                Path {
                    x0: (unit(&mut rng) * 2.0 - 1.0) * half,
                    y0: (unit(&mut rng) * 2.0 - 1.0) * half,
                    z: (unit(&mut rng) * f64::from(plan.world) / 10.0) as f32,
                    vx: heading.cos() * speed,
                    vy: heading.sin() * speed,
                }
            })
            .collect();
        let radius = plan.interest_radius;
        Walks {
            paths,
            half,
            radius,
            r2: f64::from(radius) * f64::from(radius),
            drift: speed * (GRID_SPAN_US / 2) as f64,
            grids: Mutex::new(Vec::new()),
        }
    }

    /// Where client `i` is at `t_us` (µs since the bench epoch).
    pub(super) fn position(&self, i: u32, t_us: u64) -> [f32; 3] {
        let Some(p) = self.paths.get(i as usize) else {
            return [0.0; 3];
        };
        let t = t_us as f64;
        [
            bounce(p.x0 + p.vx * t, self.half) as f32,
            bounce(p.y0 + p.vy * t, self.half) as f32,
            p.z,
        ]
    }

    /// Whether a position update at `from` reaches a client at `to`: the
    /// `World` plugin's rule, distance in x and y within the radius.
    pub(super) fn covers(&self, from: [f32; 3], to: [f32; 3]) -> bool {
        let d = |k: usize| f64::from(from[k]) - f64::from(to[k]);
        d(0) * d(0) + d(1) * d(1) <= self.r2
    }

    /// The grid for the span holding `t_us`, built on first use and shared
    /// by the process's clients.
    pub(super) fn grid(&self, t_us: u64) -> Arc<WalkGrid> {
        let span = t_us / GRID_SPAN_US;
        let mut grids = self.grids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = grids.iter().find(|g| g.span == span) {
            return g.clone();
        }
        let g = Arc::new(self.build_grid(span));
        if grids.len() >= GRIDS_KEPT {
            grids.remove(0);
        }
        grids.push(g.clone());
        g
    }

    fn build_grid(&self, span: u64) -> WalkGrid {
        let middle = span * GRID_SPAN_US + GRID_SPAN_US / 2;
        let cell = (f64::from(self.radius) + self.drift).max(1.0);
        let mut cells: IndexMap<u64, Vec<u32>> = IndexMap::default();
        for i in 0..self.paths.len() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            let p = self.position(i, middle);
            let (cx, cy) = cell_of(p, cell);
            cells.entry(cell_key(cx, cy)).or_default().push(i);
        }
        WalkGrid { span, cell, cells }
    }

    /// How many clients other than `sender` the update `sender` sends from
    /// `at` at `t_us` should reach. `grid` must be [`Walks::grid`]`(t_us)`.
    pub(super) fn audience(&self, grid: &WalkGrid, sender: u32, at: [f32; 3], t_us: u64) -> u64 {
        let (cx, cy) = cell_of(at, grid.cell);
        let mut n = 0;
        for dx in -1..=1 {
            for dy in -1..=1 {
                let Some(members) = grid.cells.get(&cell_key(cx + dx, cy + dy)) else {
                    continue;
                };
                for &j in members {
                    if j != sender && self.covers(at, self.position(j, t_us)) {
                        n += 1;
                    }
                }
            }
        }
        n
    }
}

impl WalkGrid {
    /// Whether this grid serves `t_us`.
    pub(super) fn serves(&self, t_us: u64) -> bool {
        t_us / GRID_SPAN_US == self.span
    }
}

/// One key for a cell's two coordinates.
fn cell_key(cx: i64, cy: i64) -> u64 {
    ((cx as u64) << 32) ^ (cy as u64 & 0xFFFF_FFFF)
}

fn cell_of(p: [f32; 3], cell: f64) -> (i64, i64) {
    (
        (f64::from(p[0]) / cell).floor() as i64,
        (f64::from(p[1]) / cell).floor() as i64,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn bounce_stays_in_the_world_and_is_continuous() {
        let mut last = bounce(0.0, 50.0);
        for k in 1..100_000 {
            let v = bounce(f64::from(k) * 0.01, 50.0);
            assert!((-50.0..=50.0).contains(&v), "{v}");
            assert!((v - last).abs() <= 0.0100001, "{k}: {last} -> {v}");
            last = v;
        }
        assert_eq!(bounce(-30.0, 50.0), -30.0);
        assert_eq!(bounce(60.0, 50.0), 40.0);
    }

    fn walks(clients: u32, world: f32, speed: f32, radius: f32) -> Walks {
        let half = f64::from(world) / 2.0;
        let s = f64::from(speed) / 1e6;
        let paths = (0..clients)
            .map(|i| {
                let f = f64::from(i);
                Path {
                    x0: (f * 7.3).rem_euclid(2.0 * half) - half,
                    y0: (f * 13.1).rem_euclid(2.0 * half) - half,
                    z: 0.0,
                    vx: s * (f * 0.7).cos(),
                    vy: s * (f * 0.7).sin(),
                }
            })
            .collect();
        Walks {
            paths,
            half,
            radius,
            r2: f64::from(radius) * f64::from(radius),
            drift: s * (GRID_SPAN_US / 2) as f64,
            grids: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn the_grid_finds_exactly_who_a_brute_force_finds() {
        let w = walks(600, 300.0, 25.0, 40.0);
        for t in [0u64, 400_000, 999_999, 1_000_000, 7_654_321] {
            let g = w.grid(t);
            assert!(g.serves(t));
            for s in (0..600).step_by(7) {
                let at = w.position(s, t);
                let brute = (0..600)
                    .filter(|&j| j != s && w.covers(at, w.position(j, t)))
                    .count() as u64;
                assert_eq!(w.audience(&g, s, at, t), brute, "client {s} at {t}");
            }
        }
        assert!(w.grids.lock().unwrap().len() <= GRIDS_KEPT);
    }
}
