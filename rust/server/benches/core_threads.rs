//! The cluster core's per-tick work plus sealing, on one thread and on
//! several: N players (2,000, 4,000, 20,000) at 20 Hz with about 10
//! neighbours each, as `benches/core.rs` (one iteration is one period of
//! 50 ms game time, every player reports its position once, the fan-out is
//! sealed with AES-GCM), except that the deadlines run on a 1 ms timer as
//! the driver's do (`benches/core.rs` runs each at its instant), with the
//! datagrams sealed
//!
//! - `1t`: on the core's own thread (`[cluster] seal_threads` 0 or 1);
//! - `2t`: by one seal worker beside the core's thread (two threads);
//! - `3t`: by two seal workers beside it (`seal_threads = 2`; three
//!   threads, more than this machine's two cores).
//!
//! No sockets: the workers count the sealed datagrams and drop them. Each
//! configuration is measured three ways, in three groups:
//!
//! - `core_threads/wall`: wall-clock time per period (what a tick costs
//!   end to end, waiting for the workers; noisy on a shared machine);
//! - `core_threads/core_cpu`: CPU time of the core's thread per period
//!   (`CLOCK_THREAD_CPUTIME_ID`): the serial part, which one owner of the
//!   game state must do;
//! - `core_threads/all_cpu`: CPU time of the whole process per period
//!   (`CLOCK_PROCESS_CPUTIME_ID`): the core's thread and the workers.
//!
//! The workers' share is `all_cpu - core_cpu`. Before the groups run (and
//! only with no filter, or a filter containing `summary`), each size
//! prints a summary from its own 20 periods per configuration: the
//! serial and parallel CPU per period, the parallel fraction, and what
//! Amdahl's law predicts for 16 cores (docs/performance.md).
//!
//! ```sh
//! cargo bench -p sustenet-server --bench core_threads
//! cargo bench -p sustenet-server --bench core_threads -- "core_threads/core_cpu/4000"
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rustix::time::{ClockId, clock_gettime};
use sustenet_server::cluster::ClusterConfig;
use sustenet_server::cluster::core_bench::CoreBench;

const SIZES: [usize; 3] = [2_000, 4_000, 20_000];
/// Seal workers beside the core's thread: 0, 1 and 2 (1, 2 and 3 threads).
const WORKERS: [usize; 3] = [0, 1, 2];
const TICK: Duration = Duration::from_millis(10);
/// The driver's timer (tokio's) fires on whole milliseconds: the state
/// batches due within one are sealed together.
const TIMER: Duration = Duration::from_millis(1);
/// Periods per configuration in the printed summary.
const SUMMARY_PERIODS: u32 = 20;

/// A core bench with `players` players and `workers` seal workers, warmed
/// by two periods.
fn bench(players: usize, workers: usize) -> CoreBench {
    let window = Duration::from_millis(ClusterConfig::DEFAULT_STATE_WINDOW_MS);
    let mut b = CoreBench::new(players, 10.0, 32.0, 20.0, (TICK, window))
        .with_timer_resolution(TIMER)
        .with_seal_workers(workers)
        .expect("seal workers start");
    b.period();
    b.period();
    b
}

fn cpu(clock: ClockId) -> Duration {
    let t = clock_gettime(clock);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU time of a clock (this thread's or the process's), as criterion's
/// measurement.
struct Cpu(ClockId);

impl Measurement for Cpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        cpu(self.0)
    }
    fn end(&self, started: Duration) -> Duration {
        cpu(self.0).saturating_sub(started)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Nanoseconds of CPU time, shown in the unit that fits.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns")
        } else if typical < 1e6 {
            (1e-3, "µs")
        } else if typical < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        };
        for v in values {
            *v *= factor;
        }
        unit
    }

    fn scale_throughputs(
        &self,
        _: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match *throughput {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => n,
            Throughput::Bits(n) => n,
        } as f64;
        for v in values {
            *v = per * 1e9 / *v;
        }
        "/s of CPU"
    }

    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// The per-period figures of one configuration, from [`SUMMARY_PERIODS`]
/// periods: wall time, the core thread's CPU, the whole process's CPU.
fn measure(b: &mut CoreBench) -> (Duration, Duration, Duration, usize) {
    let (wall, core, all) = (
        Instant::now(),
        cpu(ClockId::ThreadCPUTime),
        cpu(ClockId::ProcessCPUTime),
    );
    let mut datagrams = 0;
    for _ in 0..SUMMARY_PERIODS {
        datagrams += black_box(b.period()).datagrams;
    }
    let per = |d: Duration| d / SUMMARY_PERIODS;
    (
        per(wall.elapsed()),
        per(cpu(ClockId::ThreadCPUTime) - core),
        per(cpu(ClockId::ProcessCPUTime) - all),
        datagrams / SUMMARY_PERIODS as usize,
    )
}

/// Prints, per size, each configuration's figures and the scaling model:
/// the serial part is the core thread's CPU with one worker, the parallel
/// part the workers' CPU; Amdahl's speedup on n cores is
/// 1 / (s + (1 - s) / n) with s the serial fraction of the work.
fn summary(_: &mut Criterion) {
    // Only when no filter is given or the filter names it.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| f.contains("summary")) {
        return;
    }
    for n in SIZES {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut serial = None;
        for w in WORKERS {
            let mut b = bench(n, w);
            let (wall, core, all, datagrams) = measure(&mut b);
            eprintln!(
                "core_threads/{n}/{}t: {datagrams} datagrams; per period wall {:.2} ms, core thread CPU {:.2} ms, workers CPU {:.2} ms, all CPU {:.2} ms",
                w + 1,
                ms(wall),
                ms(core),
                ms(all.saturating_sub(core)),
                ms(all)
            );
            if w == 1 {
                serial = Some((core, all));
            }
        }
        if let Some((core, all)) = serial {
            let s = core.as_secs_f64() / all.as_secs_f64();
            let speedup = |cores: f64| 1.0 / (s + (1.0 - s) / cores);
            eprintln!(
                "core_threads/{n}: serial fraction {s:.2}, parallel {:.2}; Amdahl: 2 cores {:.2}x, 16 cores {:.2}x (at most {:.2}x); one period at 16 cores {:.2} ms of {:.2} ms CPU",
                1.0 - s,
                speedup(2.0),
                speedup(16.0),
                1.0 / s,
                ms(all) / speedup(16.0),
                ms(all)
            );
        }
    }
}

fn group<M: Measurement<Value = Duration>>(c: &mut Criterion<M>, name: &str) {
    let mut g = c.benchmark_group(format!("core_threads/{name}"));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for n in SIZES {
        for w in WORKERS {
            let mut b = bench(n, w);
            g.bench_with_input(
                BenchmarkId::new(n.to_string(), format!("{}t", w + 1)),
                &w,
                |bench, _| {
                    bench.iter(|| black_box(b.period()));
                },
            );
        }
    }
    g.finish();
}

fn wall(c: &mut Criterion) {
    group(c, "wall");
}

fn core_cpu(c: &mut Criterion<Cpu>) {
    group(c, "core_cpu");
}

fn all_cpu(c: &mut Criterion<Cpu>) {
    group(c, "all_cpu");
}

criterion_group!(summaries, summary);
criterion_group!(walls, wall);
criterion_group! {
    name = core_cpus;
    config = Criterion::default().with_measurement(Cpu(ClockId::ThreadCPUTime));
    targets = core_cpu
}
criterion_group! {
    name = all_cpus;
    config = Criterion::default().with_measurement(Cpu(ClockId::ProcessCPUTime));
    targets = all_cpu
}
criterion_main!(summaries, walls, core_cpus, all_cpus);
