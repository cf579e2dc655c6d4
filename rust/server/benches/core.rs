//! The cluster core's per-tick work at 1,000 to 20,000 players: every
//! player reports its position once per period at 20 Hz (one datagram, the
//! `World` plugin), each has about 10 others within its interest radius,
//! and the core plans the state fan-out and seals every recipient's
//! datagrams over the period's core ticks (10 ms each). One iteration is one
//! period (50 ms of game time); throughput is per player. No sockets: the
//! sealed datagrams are counted and dropped where the driver would send
//! them. One thread (the core has one owner).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sustenet_server::cluster::core_bench::CoreBench;

const SIZES: [usize; 3] = [1_000, 4_000, 20_000];

fn period(c: &mut Criterion) {
    let mut g = c.benchmark_group("core/period_20hz");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for n in SIZES {
        let mut b = CoreBench::new(n, 10.0, 32.0, 20.0, Duration::from_millis(10));
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

criterion_group!(benches, period);
criterion_main!(benches);
