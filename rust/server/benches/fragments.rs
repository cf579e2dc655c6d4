//! Cost of the fragment grid at 1,000, 5,000 and 20,000 players.
//!
//! The world is a 2D square sized so the density is constant: with interest
//! radius R = 32 and cell size 32, there are 10 / (π R²) ≈ 0.0031 players
//! per square unit, so each player has about 10 others within its radius
//! (the side is ≈ 567 units at 1k, 1,268 at 5k, 2,536 at 20k). Throughput
//! is reported per player, so a flat elements/s from 1k to 20k means the
//! cost grows with players × neighbours, not players².

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sustenet_server::fragments::{Dims, FragmentSettings, Fragments, GridConfig};

const RADIUS: f32 = 32.0;
const NEIGHBOURS: f64 = 10.0;
const SIZES: [usize; 3] = [1_000, 5_000, 20_000];

/// A seeded generator, so every run measures the same world.
type Rng = rand::rngs::StdRng;

/// Uniform in [0, 1).
fn unit(rng: &mut Rng) -> f32 {
    rand::Rng::random(rng)
}

struct World {
    grid: Fragments,
    pos: Vec<[f32; 3]>,
    side: f32,
    rng: Rng,
}

fn side_for(players: usize) -> f32 {
    let density = NEIGHBOURS / (std::f64::consts::PI * f64::from(RADIUS).powi(2));
    (players as f64 / density).sqrt() as f32
}

fn world(players: usize) -> World {
    let grid = Fragments::new(GridConfig {
        cell_size: RADIUS,
        dims: Dims::Two,
        default_settings: FragmentSettings {
            player_cap: 0,
            update_hz: 20.0,
        },
        default_interest_radius: RADIUS,
    })
    .unwrap();
    let side = side_for(players);
    let mut w = World {
        grid,
        pos: Vec::with_capacity(players),
        side,
        rng: <Rng as rand::SeedableRng>::seed_from_u64(42),
    };
    for id in 0..players {
        let p = [unit(&mut w.rng) * side, unit(&mut w.rng) * side, 0.0];
        w.grid.set_position(id as u64, p).unwrap();
        w.pos.push(p);
    }
    w
}

impl World {
    /// Every player takes a step of up to one unit per axis, wrapping at
    /// the world's edge so the density stays uniform.
    fn step(&mut self) {
        for (id, p) in self.pos.iter_mut().enumerate() {
            for v in p.iter_mut().take(2) {
                *v = (*v + unit(&mut self.rng) * 2.0 - 1.0).rem_euclid(self.side);
            }
            black_box(self.grid.set_position(id as u64, *p).unwrap());
        }
    }
}

fn tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("fragments/tick");
    g.sample_size(20);
    for n in SIZES {
        let mut w = world(n);
        let t0 = Instant::now();
        let mut k = 0u32;
        // Report the neighbour count this density really gives.
        let (_, stats) = {
            let mut pairs = 0usize;
            let s = w.grid.tick(t0, |_, subjects| pairs += subjects.len());
            (pairs, s)
        };
        eprintln!(
            "fragments/tick/{n}: side {:.0} units, {} occupied fragments, {:.2} neighbours per player",
            w.side,
            w.grid.fragment_count(),
            stats.pairs as f64 / n as f64
        );
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                w.step();
                k += 1;
                // 50 ms a tick at 20 Hz: every fragment is due every time.
                let now = t0 + Duration::from_millis(50 * u64::from(k));
                let mut pairs = 0usize;
                w.grid.tick(now, |q, subjects| {
                    pairs += subjects.len();
                    black_box((q, subjects));
                });
                pairs
            });
        });
    }
    g.finish();
}

fn fan_out_only(c: &mut Criterion) {
    let mut g = c.benchmark_group("fragments/fan_out");
    g.sample_size(20);
    for n in SIZES {
        let mut w = world(n);
        w.grid.start_tick(Instant::now());
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut pairs = 0usize;
                w.grid.fan_out(|q, subjects| {
                    pairs += subjects.len();
                    black_box((q, subjects));
                });
                pairs
            });
        });
    }
    g.finish();
}

fn set_position(c: &mut Criterion) {
    let mut g = c.benchmark_group("fragments/set_position");
    g.sample_size(20);
    for n in SIZES {
        let mut w = world(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| w.step());
        });
    }
    g.finish();
}

fn nearby(c: &mut Criterion) {
    const QUERIES: usize = 1_000;
    let mut g = c.benchmark_group("fragments/nearby");
    g.sample_size(20);
    for n in SIZES {
        let mut w = world(n);
        let points: Vec<[f32; 3]> = (0..QUERIES)
            .map(|_| [unit(&mut w.rng) * w.side, unit(&mut w.rng) * w.side, 0.0])
            .collect();
        g.throughput(Throughput::Elements(QUERIES as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut found = 0usize;
                for p in &points {
                    w.grid.for_each_nearby(*p, RADIUS, |id| {
                        found += 1;
                        black_box(id);
                    });
                }
                found
            });
        });
    }
    g.finish();
}

fn audience(c: &mut Criterion) {
    let mut g = c.benchmark_group("fragments/audience");
    g.sample_size(20);
    for n in SIZES {
        let w = world(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut found = 0usize;
                for id in 0..n as u64 {
                    w.grid.for_each_audience(id, |q| {
                        found += 1;
                        black_box(q);
                    });
                }
                found
            });
        });
    }
    g.finish();
}

criterion_group!(benches, tick, fan_out_only, set_position, nearby, audience);
criterion_main!(benches);
