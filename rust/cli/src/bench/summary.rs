//! The bench's report: the live progress line, the summary (printed, or
//! one JSON object with `--json`) and why a run failed.

use serde::Serialize;

use super::hist::Quantiles;
use super::plan::Plan;
use super::stats::{ErrorGroup, Snapshot};

pub(super) fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// A ratio as a percentage, or `-` when nothing was expected.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_owned()
    } else {
        format!("{:.1} %", part as f64 * 100.0 / whole as f64)
    }
}

/// One second of the run, as the coordinator prints it live. The state
/// figures compare what arrived in that second with what was sent in it,
/// so they are approximate second by second and exact in the summary.
pub(super) fn progress_line(k: u64, now: &Snapshot, prev: &Snapshot) -> String {
    let d = now.minus(prev);
    let (r, u, s) = (d.rel.quantiles(), d.unrel.quantiles(), d.state.quantiles());
    format!(
        "{k:>4}s  clients {}/{}  out {}/s  in {}/s  rtt ms (p50/p99/p999, last s) reliable {}/{}/{} unreliable {}/{}/{}  state {} latency ms {}/{}/{}  errors {}",
        now.c.connected,
        now.c.target,
        d.c.msgs_out(),
        d.c.msgs_in(),
        ms(r.p50),
        ms(r.p99),
        ms(r.p999),
        ms(u.p50),
        ms(u.p99),
        ms(u.p999),
        percent(d.c.state_delivered, d.c.state_expected),
        ms(s.p50),
        ms(s.p99),
        ms(s.p999),
        now.c.errors(),
    )
}

#[derive(Debug, Serialize)]
pub(super) struct Sent {
    pub(super) positions: u64,
    pub(super) reliable: u64,
    pub(super) unreliable: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct Received {
    pub(super) reliable: u64,
    pub(super) unreliable: u64,
    pub(super) positions: u64,
    /// State records (the `World` plugin's command 11), repeats included.
    pub(super) states: u64,
    pub(super) other: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct Rtts {
    pub(super) reliable: Quantiles,
    pub(super) unreliable: Quantiles,
    pub(super) position: Quantiles,
}

/// State delivery over the state window (see `delivery.rs`).
#[derive(Debug, Serialize)]
pub(super) struct StateDelivery {
    /// Updates that reached a client they were meant for, once each.
    pub(super) delivered: u64,
    /// Updates × the clients each was meant for.
    pub(super) expected: u64,
    /// `delivered / expected` (null if nothing was expected).
    pub(super) delivery: Option<f64>,
    /// One-way latency of the delivered updates, µs (`count` = `delivered`).
    pub(super) latency_us: Quantiles,
}

/// The final summary (`--json` prints it as is).
#[derive(Debug, Serialize)]
pub(super) struct Summary {
    pub(super) ok: bool,
    pub(super) master: String,
    pub(super) clients: u32,
    pub(super) processes: u32,
    pub(super) duration_s: f64,
    pub(super) ramp_s: f64,
    pub(super) hz: f64,
    pub(super) reliable_per_sec: f64,
    pub(super) unreliable_per_sec: f64,
    pub(super) size: usize,
    pub(super) joined: u64,
    pub(super) failed: u64,
    pub(super) disconnected: u64,
    pub(super) redirects: u64,
    /// Login to joined, ms.
    pub(super) join_ms: Quantiles,
    pub(super) sent: Sent,
    pub(super) received: Received,
    pub(super) msgs_out: u64,
    pub(super) msgs_in: u64,
    /// Seconds the rates and round trips are taken over (full load, after the ramp).
    pub(super) window_s: f64,
    pub(super) msgs_out_per_s: f64,
    pub(super) msgs_in_per_s: f64,
    pub(super) target_out_per_s: f64,
    /// Round trips of echoes sent in the window, µs.
    pub(super) rtt_us: Rtts,
    /// Unreliable echoes back / sent, over the whole run (null if none sent).
    pub(super) unreliable_delivery: Option<f64>,
    /// Position updates delivered as state to the players they should reach.
    pub(super) state: StateDelivery,
    pub(super) reliable_missing: u64,
    pub(super) send_errors: u64,
    pub(super) errors: u64,
    pub(super) error_kinds: Vec<ErrorGroup>,
}

pub(super) fn print_summary(s: &Summary) {
    println!(
        "sustenet bench: {} clients on {} in {} process(es); {} Hz positions, {}/s reliable and {}/s unreliable echoes of {} bytes; ramp {:.1} s, full load {:.1} s",
        s.clients,
        s.master,
        s.processes,
        s.hz,
        s.reliable_per_sec,
        s.unreliable_per_sec,
        s.size,
        s.ramp_s,
        s.duration_s
    );
    println!(
        "joined        {}/{}  (login to joined p50 {} ms, p99 {} ms, max {} ms)",
        s.joined, s.clients, s.join_ms.p50, s.join_ms.p99, s.join_ms.max
    );
    println!("failed        {}", s.failed);
    println!("disconnected  {}", s.disconnected);
    println!(
        "sent          {} positions, {} reliable echoes, {} unreliable echoes",
        s.sent.positions, s.sent.reliable, s.sent.unreliable
    );
    println!(
        "received      {} reliable echoes, {} unreliable echoes, {} positions, {} state records, {} other",
        s.received.reliable,
        s.received.unreliable,
        s.received.positions,
        s.received.states,
        s.received.other
    );
    println!(
        "rate          {:.0} msgs/s out (target {:.0}), {:.0} msgs/s in, over {:.0} s of full load",
        s.msgs_out_per_s, s.target_out_per_s, s.msgs_in_per_s, s.window_s
    );
    for (name, q) in [
        ("reliable  ", &s.rtt_us.reliable),
        ("unreliable", &s.rtt_us.unreliable),
        ("position  ", &s.rtt_us.position),
    ] {
        if q.count > 0 || name != "position  " {
            println!(
                "rtt {name}  n {:>8}  p50 {} ms  p99 {} ms  p999 {} ms  max {} ms",
                q.count,
                ms(q.p50),
                ms(q.p99),
                ms(q.p999),
                ms(q.max)
            );
        }
    }
    let st = &s.state;
    println!(
        "state         {} of {} expected updates delivered ({}), one-way latency p50 {} ms  p99 {} ms  p999 {} ms  max {} ms",
        st.delivered,
        st.expected,
        percent(st.delivered, st.expected),
        ms(st.latency_us.p50),
        ms(st.latency_us.p99),
        ms(st.latency_us.p999),
        ms(st.latency_us.max)
    );
    match s.unreliable_delivery {
        Some(r) => println!("unreliable delivery  {:.3} %", r * 100.0),
        None => println!("unreliable delivery  - (none sent)"),
    }
    println!("errors        {}", s.errors);
    for g in &s.error_kinds {
        println!("  {} x{}", g.kind, g.count);
        for m in &g.examples {
            println!("      {m}");
        }
    }
    println!("{}", if s.ok { "bench OK" } else { "bench FAILED" });
}

/// What a run's summary is made from.
pub(super) struct Run<'a> {
    pub(super) plan: &'a Plan,
    pub(super) procs: u32,
    /// Everything, over the whole run.
    pub(super) total: Snapshot,
    /// Since full load started.
    pub(super) steady: Snapshot,
    /// The full-load window, and its length.
    pub(super) window: Snapshot,
    pub(super) window_s: f64,
    /// Errors of the workers themselves (died, failed, bad output).
    pub(super) extra_errors: u64,
    pub(super) error_kinds: Vec<ErrorGroup>,
}

impl Run<'_> {
    pub(super) fn summary(self) -> Summary {
        let (plan, c) = (self.plan, self.total.c);
        let errors = c.errors() + self.extra_errors;
        let not_joined = u64::from(plan.clients).saturating_sub(c.joined);
        Summary {
            ok: errors == 0 && not_joined == 0,
            master: plan.master.clone(),
            clients: plan.clients,
            processes: self.procs,
            duration_s: plan.duration.as_secs_f64(),
            ramp_s: plan.ramp.as_secs_f64(),
            hz: plan.hz,
            reliable_per_sec: plan.reliable_per_sec,
            unreliable_per_sec: plan.unreliable_per_sec,
            size: plan.size,
            joined: c.joined,
            failed: c.failed.max(not_joined),
            disconnected: c.disconnected,
            redirects: c.redirects,
            join_ms: self.total.join.quantiles(),
            sent: Sent {
                positions: c.pos_sent,
                reliable: c.rel_sent,
                unreliable: c.unrel_sent,
            },
            received: Received {
                reliable: c.rel_recv,
                unreliable: c.unrel_recv,
                positions: c.pos_recv,
                states: c.state_recv,
                other: c.other_recv,
            },
            msgs_out: c.msgs_out(),
            msgs_in: c.msgs_in(),
            window_s: self.window_s,
            msgs_out_per_s: self.window.c.msgs_out() as f64 / self.window_s,
            msgs_in_per_s: self.window.c.msgs_in() as f64 / self.window_s,
            target_out_per_s: plan.target_out_per_sec(),
            rtt_us: Rtts {
                reliable: self.steady.rel.quantiles(),
                unreliable: self.steady.unrel.quantiles(),
                position: self.steady.pos.quantiles(),
            },
            unreliable_delivery: (c.unrel_sent > 0)
                .then(|| c.unrel_recv.min(c.unrel_sent) as f64 / c.unrel_sent as f64),
            state: StateDelivery {
                delivered: c.state_delivered,
                expected: c.state_expected,
                delivery: (c.state_expected > 0)
                    .then(|| c.state_delivered as f64 / c.state_expected as f64),
                latency_us: self.total.state.quantiles(),
            },
            reliable_missing: c.rel_missing,
            send_errors: c.send_errors,
            errors,
            error_kinds: self.error_kinds,
        }
    }
}

impl Summary {
    /// Why the run failed, in one line (for a summary that is not `ok`).
    pub(super) fn why_failed(&self, worker_errors: u64) -> String {
        let mut why = format!(
            "{} of {} clients failed to join, {} were disconnected",
            self.failed, self.clients, self.disconnected
        );
        if self.reliable_missing > 0 {
            why.push_str(&format!(
                ", {} reliable echoes never came back",
                self.reliable_missing
            ));
        }
        if worker_errors > 0 {
            why.push_str(&format!(", {worker_errors} worker process(es) failed"));
        }
        let first: Vec<String> = self
            .error_kinds
            .iter()
            .take(4)
            .map(|g| {
                format!(
                    "{} (x{}): {}",
                    g.kind,
                    g.count,
                    g.examples.first().map_or("", String::as_str)
                )
            })
            .collect();
        if !first.is_empty() {
            why.push_str(&format!("; {}", first.join("; ")));
        }
        if self.joined == 0
            && self
                .error_kinds
                .iter()
                .any(|g| g.kind.contains("reach the master"))
        {
            why.push_str(&format!(
                " (is a master running at {}? `sustenet up` in this folder starts one)",
                self.master
            ));
        }
        why
    }
}
