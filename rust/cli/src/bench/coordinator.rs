//! The coordinator: starts the workers, adds up their reports, prints the
//! progress and the summary.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::process::Stdio;

use anyhow::{Context as _, bail};
use tokio::io::AsyncBufReadExt as _;

use super::BenchArgs;
use super::plan::{Plan, unix_us};
use super::stats::{ErrorGroup, Snapshot, WorkerLine, add_error};
use super::summary::{Run, Summary, print_summary, progress_line};

/// Clients per process when the open-file limit cannot be read.
const DEFAULT_PER_PROCESS: u32 = 4000;
/// File descriptors one client needs: TCP and UDP to the cluster, plus the
/// master connection while it joins.
const FDS_PER_CLIENT: u64 = 3;

/// Clients one process can hold under its open-file limit.
pub(super) fn default_per_process() -> u32 {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .and_then(|v| {
            if v == "unlimited" {
                Some(u64::MAX)
            } else {
                v.parse::<u64>().ok()
            }
        });
    match soft {
        Some(n) => {
            let clients = n.saturating_sub(100) / FDS_PER_CLIENT;
            u32::try_from(clients.clamp(1, 50_000)).unwrap_or(DEFAULT_PER_PROCESS)
        }
        None => DEFAULT_PER_PROCESS,
    }
}

#[derive(Debug)]
pub(super) enum Msg {
    Line(usize, Box<WorkerLine>),
    Garbage(usize, String),
    Exit(usize, String, bool),
}

#[derive(Debug, Default)]
pub(super) struct WorkerState {
    pub(super) ticks: BTreeMap<u64, Snapshot>,
    pub(super) last: Snapshot,
    pub(super) done: Option<(Snapshot, Vec<ErrorGroup>)>,
    pub(super) exit: Option<(String, bool)>,
}

impl WorkerState {
    pub(super) fn finished(&self) -> bool {
        self.done.is_some() || self.exit.is_some()
    }
    /// Its state at tick `k`, once known.
    pub(super) fn at(&self, k: u64) -> Option<&Snapshot> {
        if let Some((_, s)) = self.ticks.range(k..).next() {
            return Some(s);
        }
        match (&self.done, &self.exit) {
            (Some((s, _)), _) => Some(s),
            (None, Some(_)) => Some(&self.last),
            (None, None) => None,
        }
    }
}

pub(super) fn worker_command(
    exe: &std::path::Path,
    plan: &Plan,
    w: u32,
    procs: u32,
    epoch_us: u64,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(exe);
    if std::env::var_os("RUST_LOG").is_none() {
        // Per-client log lines from thousands of clients would drown the
        // progress line; the summary reports every error.
        cmd.args(["--log-level", "error"]);
    }
    cmd.arg("bench")
        .arg("--worker")
        .args(["--worker-index", &w.to_string()])
        .args(["--worker-count", &procs.to_string()])
        .args(["--epoch-us", &epoch_us.to_string()])
        .args(["--master", &plan.master])
        .args(["--key", &plan.key_b64])
        .args(["--clients", &plan.clients.to_string()])
        .args(["--duration", &plan.duration.as_secs_f64().to_string()])
        .args(["--ramp", &plan.ramp.as_secs_f64().to_string()])
        .args(["--hz", &plan.hz.to_string()])
        .args(["--reliable-per-sec", &plan.reliable_per_sec.to_string()])
        .args(["--unreliable-per-sec", &plan.unreliable_per_sec.to_string()])
        .args(["--size", &plan.size.to_string()])
        .args(["--user-prefix", &plan.user_prefix])
        .args(["--world", &plan.world.to_string()])
        .args(["--speed", &plan.speed.to_string()])
        .args(["--interest-radius", &plan.interest_radius.to_string()])
        .args(["--clients-per-socket", &plan.clients_per_socket.to_string()])
        .args(["--timeout", &plan.timeout.as_secs().to_string()])
        .args(["--joins-in-flight", &plan.joins_in_flight.to_string()])
        .args(plan.full_clients.then_some("--full-clients"))
        .env("SUSTENET_SECRET", &plan.secret)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

/// Starts `procs` worker processes; their lines and exits arrive on the
/// returned channel.
fn spawn_workers(
    plan: &Plan,
    procs: u32,
    epoch_us: u64,
) -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<Msg>> {
    let exe = std::env::current_exe().context("cannot find this program to start workers")?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Msg>();
    for w in 0..procs {
        let mut child = worker_command(&exe, plan, w, procs, epoch_us)
            .spawn()
            .with_context(|| format!("cannot start worker process {} ", exe.display()))?;
        let out = child
            .stdout
            .take()
            .context("a worker process has no stdout")?;
        let tx = tx.clone();
        let idx = w as usize;
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let m = match serde_json::from_str::<WorkerLine>(&l) {
                    Ok(m) => Msg::Line(idx, Box::new(m)),
                    Err(e) => Msg::Garbage(idx, format!("{e}: {l:.200}")),
                };
                if tx.send(m).is_err() {
                    return;
                }
            }
            let (status, ok) = match child.wait().await {
                Ok(s) => (s.to_string(), s.success()),
                Err(e) => (e.to_string(), false),
            };
            let _ = tx.send(Msg::Exit(idx, status, ok));
        });
    }
    Ok(rx)
}

/// The workers' reports as they come in, added up second by second.
struct Tally {
    workers: Vec<WorkerState>,
    book: BTreeMap<String, ErrorGroup>,
    /// The tick at which full load starts, and where it ends.
    baseline_tick: u64,
    end_tick: u64,
    baseline: Option<Snapshot>,
    at_end: Option<Snapshot>,
    prev: Snapshot,
    /// The next tick to add up.
    next: u64,
    /// Where the progress lines go (`None` with `--json`), and whether
    /// stderr is a terminal (one line rewritten in place).
    progress: Option<bool>,
    printed: bool,
}

impl Tally {
    fn new(plan: &Plan, procs: u32, progress: Option<bool>) -> Tally {
        let ramp_s = plan.ramp.as_secs_f64();
        let baseline_tick = ramp_s.ceil() as u64;
        Tally {
            workers: (0..procs).map(|_| WorkerState::default()).collect(),
            book: BTreeMap::new(),
            baseline_tick,
            end_tick: (ramp_s + plan.duration.as_secs_f64()).floor() as u64,
            baseline: (baseline_tick == 0).then(Snapshot::default),
            at_end: None,
            prev: Snapshot::default(),
            next: 1,
            progress,
            printed: false,
        }
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Line(w, line) => {
                let Some(ws) = self.workers.get_mut(w) else {
                    return;
                };
                match *line {
                    WorkerLine::Tick { tick, snap } => {
                        ws.last = snap.clone();
                        ws.ticks.insert(tick, snap);
                    }
                    WorkerLine::Final { snap, errors } => ws.done = Some((snap, errors)),
                }
            }
            Msg::Garbage(w, text) => add_error(
                &mut self.book,
                "worker output",
                1,
                [format!("worker {w}: {text}")],
            ),
            Msg::Exit(w, status, ok) => {
                if let Some(ws) = self.workers.get_mut(w) {
                    ws.exit = Some((status, ok));
                }
            }
        }
        while let Some(agg) = self.next_second() {
            self.second(agg);
        }
    }

    /// The sum over the workers at the next tick, once all have reported it.
    fn next_second(&self) -> Option<Snapshot> {
        let next = self.next;
        let all_done = self
            .workers
            .iter()
            .all(|w| w.finished() && w.ticks.range(next..).next().is_none());
        if all_done {
            return None;
        }
        let mut agg = Snapshot::default();
        for w in &self.workers {
            agg.add(w.at(next)?);
        }
        Some(agg)
    }

    /// One second every worker has reported: a progress line.
    fn second(&mut self, agg: Snapshot) {
        if let Some(tty) = self.progress {
            let line = progress_line(self.next, &agg, &self.prev);
            if tty {
                eprint!("\r{line}\x1b[K");
            } else {
                eprintln!("{line}");
            }
            self.printed = true;
        }
        if self.next == self.baseline_tick {
            self.baseline = Some(agg.clone());
        }
        if self.next == self.end_tick {
            self.at_end = Some(agg.clone());
        }
        self.prev = agg;
        self.next += 1;
        for w in &mut self.workers {
            w.ticks = w.ticks.split_off(&self.next);
        }
    }

    /// Every worker's final report added up, and how many workers failed.
    fn totals(&mut self) -> (Snapshot, u64) {
        let mut total = Snapshot::default();
        let mut failed = 0u64;
        for (i, w) in self.workers.iter().enumerate() {
            match &w.done {
                Some((s, errors)) => {
                    total.add(s);
                    for g in errors {
                        add_error(&mut self.book, &g.kind, g.count, g.examples.iter().cloned());
                    }
                }
                None => {
                    total.add(&w.last);
                    failed += 1;
                    let status = w
                        .exit
                        .as_ref()
                        .map_or_else(|| "no exit status".to_owned(), |(s, _)| s.clone());
                    add_error(
                        &mut self.book,
                        "worker process died",
                        1,
                        [format!(
                            "worker {i} ended ({status}) before its final report; see its messages above"
                        )],
                    );
                }
            }
            if let (Some((status, false)), Some(_)) = (&w.exit, &w.done) {
                failed += 1;
                add_error(
                    &mut self.book,
                    "worker process failed",
                    1,
                    [format!("worker {i} exited with {status}")],
                );
            }
        }
        (total, failed)
    }

    /// The summary of the run.
    fn summary(mut self, plan: &Plan, procs: u32) -> (Summary, u64) {
        let (total, worker_errors) = self.totals();
        let base = self.baseline.clone().unwrap_or_default();
        let (window, window_s) = match &self.at_end {
            Some(e) if self.end_tick > self.baseline_tick => {
                (e.minus(&base), (self.end_tick - self.baseline_tick) as f64)
            }
            _ => (
                total.clone(),
                (plan.ramp + plan.duration).as_secs_f64().max(1.0),
            ),
        };
        let garbage = self.book.get("worker output").map_or(0, |g| g.count);
        let run = Run {
            plan,
            procs,
            steady: total.minus(&base),
            total,
            window,
            window_s,
            extra_errors: worker_errors + garbage,
            error_kinds: self.book.into_values().collect(),
        };
        (run.summary(), worker_errors)
    }
}

/// Runs the bench: starts the workers, follows them, reports.
pub(super) async fn coordinate(args: BenchArgs) -> anyhow::Result<()> {
    let plan = Plan::new(&args)?;
    let per = args.per_process.unwrap_or_else(default_per_process).max(1);
    let needed = plan.clients.div_ceil(per);
    let procs = args
        .processes
        .unwrap_or(needed)
        .max(needed)
        .clamp(1, plan.clients);
    // Time for the workers to start before the first client does.
    let epoch_us = unix_us() + 300_000;
    if !args.json {
        eprintln!(
            "bench: {} clients against {} in {procs} process(es), ramp {:.1} s, then {:.1} s of full load",
            plan.clients,
            plan.master,
            plan.ramp.as_secs_f64(),
            plan.duration.as_secs_f64()
        );
    }
    let mut rx = spawn_workers(&plan, procs, epoch_us)?;
    let progress = (!args.json).then(|| std::io::stderr().is_terminal());
    let mut tally = Tally::new(&plan, procs, progress);
    while let Some(msg) = rx.recv().await {
        tally.take(msg);
    }
    if tally.printed && progress == Some(true) {
        eprintln!();
    }
    let (summary, worker_errors) = tally.summary(&plan, procs);
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary);
    }
    if !summary.ok {
        bail!("{}", summary.why_failed(worker_errors));
    }
    Ok(())
}
