//! The cluster core's per-tick work at 1,000 to 20,000 players: every
//! player reports its position once per period at 20 Hz (one datagram, the
//! `World` plugin), the reports spread evenly over the period, each player
//! has about 10 others within its interest radius, and the core adds each
//! state to its audience's batches and seals each batch when its state
//! window ends (5 ms by default), with its 10 ms update ticks in between.
//! One iteration is one period (50 ms of game time); throughput is per
//! player. No sockets: the sealed datagrams are counted and dropped where
//! the driver would send them. One thread (the core has one owner).
//! `core/state_window` is the same at 4,000 players with windows of 0, 5
//! and 20 ms: the datagram count and its cost.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sustenet_server::cluster::ClusterConfig;
use sustenet_server::cluster::core_bench::CoreBench;

const SIZES: [usize; 3] = [1_000, 4_000, 20_000];
const TICK: Duration = Duration::from_millis(10);

fn period(c: &mut Criterion) {
    let mut g = c.benchmark_group("core/period_20hz");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for n in SIZES {
        let window = Duration::from_millis(ClusterConfig::DEFAULT_STATE_WINDOW_MS);
        let mut b = CoreBench::new(n, 10.0, 32.0, 20.0, (TICK, window));
        b.period();
        let first = b.period();
        eprintln!(
            "core/period_20hz/{n}: side {:.0} units, {} datagrams ({:.1} per player), {} bytes per period",
            b.side(),
            first.datagrams,
            first.datagrams as f64 / n as f64,
            first.bytes
        );
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| black_box(b.period()));
        });
    }
    g.finish();
}

fn state_window(c: &mut Criterion) {
    let mut g = c.benchmark_group("core/state_window");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    let n = 4_000;
    for ms in [0u64, 5, 20] {
        let mut b = CoreBench::new(n, 10.0, 32.0, 20.0, (TICK, Duration::from_millis(ms)));
        b.period();
        let s = b.period();
        eprintln!(
            "core/state_window/{ms}ms: {} datagrams ({:.1} per player), {} bytes per period",
            s.datagrams,
            s.datagrams as f64 / n as f64,
            s.bytes
        );
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{ms}ms")),
            &ms,
            |bench, _| {
                bench.iter(|| black_box(b.period()));
            },
        );
    }
    g.finish();
}

criterion_group!(benches, period, state_window);
criterion_main!(benches);
