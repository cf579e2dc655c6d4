//! A worker process: runs its share of the clients and reports each second.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use sustenet_client::{Client, ClientConfig};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use std::ops::Range;

use super::BenchArgs;
use super::plan::{Clock, Plan};
use super::player::{join, play};
use super::stats::{Stats, WorkerLine, bump};
use super::walks::Walks;

/// One simulated client, from its start time to its goodbye.
/// What the clients of one worker process share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) plan: Plan,
    pub(super) clock: Clock,
    pub(super) stats: Stats,
    /// Every client's path, for state delivery.
    pub(super) walks: Walks,
    /// [`Plan::state_window_us`].
    pub(super) state_window: Range<u64>,
}

/// One simulated client, from its start time to its goodbye.
pub(super) async fn simulate(i: u32, shared: Arc<Shared>, joins: Arc<Semaphore>) {
    let (plan, clock, stats) = (&shared.plan, shared.clock, &shared.stats);
    tokio::time::sleep_until(clock.at(plan.start_us(i))).await;
    let end_at = clock.at(plan.end_us());
    bump(&stats.c.started);
    // Never closed, so this waits for a turn; a late start shows in the
    // progress lines (joined lags started) rather than as refused joins.
    let Ok(turn) = joins.acquire().await else {
        return;
    };
    let mut cfg = ClientConfig::new(plan.master.clone(), plan.key);
    cfg.handshake_timeout = plan.timeout;
    let (client, events) = Client::spawn(&tokio::runtime::Handle::current(), cfg);
    let t0 = Instant::now();
    let joined = join(&client, &events, plan, i, t0 + plan.timeout).await;
    drop(turn);
    if let Err(f) = joined {
        bump(&stats.c.failed);
        stats.errors.record(&format!("join: {}", f.kind), f.message);
        let _ = client.disconnect();
        return;
    }
    stats
        .join
        .record(u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX));
    bump(&stats.c.joined);
    bump(&stats.c.connected);
    let r = play(&client, &events, i, &shared, end_at).await;
    stats.c.connected.fetch_sub(1, Ordering::Relaxed);
    if let Err(f) = r {
        bump(&stats.c.disconnected);
        stats.errors.record(&f.kind, f.message);
    }
    let _ = client.disconnect();
}

/// Writes one line for the coordinator.
fn emit(line: &WorkerLine) -> anyhow::Result<()> {
    let text = serde_json::to_string(line)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").context("the coordinator is gone")?;
    out.flush().context("the coordinator is gone")?;
    Ok(())
}

/// Runs this worker's share of the clients (every `worker_count`-th one,
/// so that each worker ramps up over the whole ramp) and reports.
pub(super) async fn worker(args: BenchArgs) -> anyhow::Result<()> {
    let plan = Plan::new(&args)?;
    let shared = Arc::new(Shared {
        clock: Clock::new(args.epoch_us),
        stats: Stats::default(),
        walks: Walks::new(&plan),
        state_window: plan.state_window_us(),
        plan,
    });
    let (plan, clock, stats) = (&shared.plan, shared.clock, &shared.stats);
    let mut set = tokio::task::JoinSet::new();
    let step = args.worker_count.max(1);
    let joins = Arc::new(Semaphore::new((plan.joins_in_flight / step).max(1) as usize));
    let mine: Vec<u32> = (args.worker_index..plan.clients)
        .step_by(step as usize)
        .collect();
    if plan.full_clients {
        for &i in &mine {
            bump(&stats.c.target);
            set.spawn(simulate(i, shared.clone(), joins.clone()));
        }
    } else {
        super::light::spawn(&mut set, &shared, &mine, plan.clients_per_socket, &joins);
    }
    let mut report = tokio::time::interval_at(clock.at(1_000_000), Duration::from_secs(1));
    let mut k = 0u64;
    loop {
        tokio::select! {
            _ = report.tick() => {
                k += 1;
                emit(&WorkerLine::Tick { tick: k, snap: stats.snapshot() })?;
            }
            r = set.join_next() => match r {
                None => break,
                Some(Ok(())) => {}
                Some(Err(e)) => stats.errors.record("client task failed", e.to_string()),
            },
        }
    }
    emit(&WorkerLine::Final {
        snap: stats.snapshot(),
        errors: stats.errors.groups(),
    })
}
