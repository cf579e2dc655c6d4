//! What the generator counts, and the summary it prints.

use serde::Serialize;

/// Every latency of one kind, kept exactly (µs), for quantiles at the end.
#[derive(Debug, Default)]
pub struct Latencies(Vec<u32>);

/// Count and quantiles of a set of latencies, in µs.
#[derive(Debug, Default, Serialize)]
pub struct Quantiles {
    /// Number of latencies.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Latencies {
    /// Adds one latency (saturating at u32::MAX µs, 71 minutes).
    pub fn push(&mut self, us: u64) {
        self.0.push(u32::try_from(us).unwrap_or(u32::MAX));
    }

    /// Sorts and reads the quantiles (nearest rank).
    pub fn quantiles(mut self) -> Quantiles {
        self.0.sort_unstable();
        let v = &self.0;
        let at = |p: f64| -> u64 {
            if v.is_empty() {
                return 0;
            }
            let rank = ((v.len() as f64) * p).ceil().max(1.0) as usize;
            v.get(rank.min(v.len()) - 1).copied().map_or(0, u64::from)
        };
        Quantiles {
            count: v.len() as u64,
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: v.last().copied().map_or(0, u64::from),
        }
    }
}

/// Counts of the measured window (send times from its start to its end).
#[derive(Debug, Default)]
pub struct Window {
    /// Positions sent.
    pub positions_sent: u64,
    /// Positions due by the schedule (N × hz × seconds).
    pub positions_target: u64,
    /// Echoes sent.
    pub echoes_sent: u64,
    /// Echoes due by the schedule.
    pub echoes_target: u64,
    /// Relayed positions that should arrive: `min(fanout, N − 1)` per position sent.
    pub expected: u64,
    /// Relayed positions that arrived.
    pub delivered: u64,
    /// One-way latencies of the positions that arrived.
    pub state_latency: Latencies,
    /// Echoes that came back.
    pub echoes_back: u64,
    /// Round trips of the echoes that came back.
    pub echo_rtt: Latencies,
}

/// The JSON summary (`--json`), field names as in `sustenet bench --json` where they mean
/// the same.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Clients asked for.
    pub clients: usize,
    /// Clients that connected.
    pub connected: usize,
    /// Clients the server disconnected, or that timed out, during the run.
    pub disconnected: usize,
    /// Packets that did not parse as a position or an echo.
    pub malformed: u64,
    /// Length of the measured window, s.
    pub window_s: f64,
    /// Positions and echoes sent per second in the window.
    pub msgs_out_per_s: f64,
    /// Positions and echoes due per second.
    pub target_out_per_s: f64,
    /// Relayed positions and echoes received per second.
    pub msgs_in_per_s: f64,
    /// Relayed positions: delivered, expected, ratio, one-way latency.
    pub state: State,
    /// Reliable echoes: sent, back, round trip.
    pub echo: Echo,
}

/// State delivery in the summary.
#[derive(Debug, Serialize)]
pub struct State {
    /// Relayed positions that arrived.
    pub delivered: u64,
    /// Relayed positions that should have arrived.
    pub expected: u64,
    /// delivered / expected, `null` if nothing was expected.
    pub delivery: Option<f64>,
    /// One-way latency, µs.
    pub latency_us: Quantiles,
}

/// Echoes in the summary.
#[derive(Debug, Serialize)]
pub struct Echo {
    /// Echoes sent in the window.
    pub sent: u64,
    /// Of those, echoes that came back.
    pub received: u64,
    /// Round trip, µs.
    pub rtt_us: Quantiles,
}

impl Window {
    /// The summary of a window of `window_s` seconds.
    pub fn summary(
        self,
        clients: usize,
        connected: usize,
        disconnected: usize,
        malformed: u64,
        window_s: f64,
    ) -> Summary {
        let per_s = |n: u64| n as f64 / window_s.max(1e-9);
        Summary {
            clients,
            connected,
            disconnected,
            malformed,
            window_s,
            msgs_out_per_s: per_s(self.positions_sent + self.echoes_sent),
            target_out_per_s: per_s(self.positions_target + self.echoes_target),
            msgs_in_per_s: per_s(self.delivered + self.echoes_back),
            state: State {
                delivered: self.delivered,
                expected: self.expected,
                delivery: (self.expected > 0).then(|| self.delivered as f64 / self.expected as f64),
                latency_us: self.state_latency.quantiles(),
            },
            echo: Echo {
                sent: self.echoes_sent,
                received: self.echoes_back,
                rtt_us: self.echo_rtt.quantiles(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut l = Latencies::default();
        for v in (1..=1000).rev() {
            l.push(v);
        }
        let q = l.quantiles();
        assert_eq!(
            (q.count, q.p50, q.p99, q.p999, q.max),
            (1000, 500, 990, 999, 1000)
        );
        assert_eq!(Latencies::default().quantiles().count, 0);
    }
}
