//! Whether a cluster's core still runs: the wall-clock time of its last
//! heartbeat, exported as `sustenet_cluster_core_heartbeat_timestamp_seconds`
//! and judged by the admin endpoint's `/health`.
//!
//! The core's heartbeat (`[limits] heartbeat_ms`) is the same tick that
//! sends Agones its `Health()` pings, so a core stuck in a plugin call stops
//! both at once: the timestamp stops moving and, after
//! [`STALE_HEARTBEATS`] missed heartbeats, `/health` answers 503.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Heartbeat periods without a heartbeat after which the core counts as stuck.
pub const STALE_HEARTBEATS: u64 = 5;

/// The last heartbeat of one cluster's core. Cheap to clone (the clones
/// share it).
#[derive(Debug, Clone, Default)]
pub struct CoreHeartbeat {
    /// Wall clock of the last heartbeat, ms since the Unix epoch (0: none yet).
    last_ms: Arc<AtomicU64>,
    /// The heartbeat period in force, ms.
    period_ms: Arc<AtomicU64>,
    /// The same time in seconds, for Prometheus.
    at: Gauge<f64, AtomicU64>,
}

impl CoreHeartbeat {
    /// Registers `core_heartbeat_timestamp_seconds` in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "core_heartbeat_timestamp_seconds",
            "Unix time of the core's last heartbeat (stops moving when the core is stuck)",
            self.at.clone(),
        );
    }

    /// The core ran a heartbeat at `now_ms`; heartbeats come every `period`.
    pub fn beat(&self, now_ms: u64, period: Duration) {
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        self.period_ms.store(period_ms, Ordering::Relaxed);
        self.last_ms.store(now_ms, Ordering::Relaxed);
        self.at.set(now_ms as f64 / 1_000.0);
    }

    /// `None` while the core is alive at `now_ms`; else why it is not (no
    /// heartbeat yet, or none for [`STALE_HEARTBEATS`] periods).
    pub fn stuck(&self, now_ms: u64) -> Option<String> {
        let last = self.last_ms.load(Ordering::Relaxed);
        if last == 0 {
            return Some("no core heartbeat yet".into());
        }
        let period = self.period_ms.load(Ordering::Relaxed).max(1);
        let age = now_ms.saturating_sub(last);
        (age > period.saturating_mul(STALE_HEARTBEATS))
            .then(|| format!("no core heartbeat for {age} ms (one is due every {period} ms)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_after_the_stale_heartbeats_only() {
        let h = CoreHeartbeat::default();
        assert!(h.stuck(1_000).is_some(), "no heartbeat yet");
        h.beat(10_000, Duration::from_millis(100));
        assert_eq!(h.stuck(10_000), None);
        assert_eq!(h.stuck(10_000 + 100 * STALE_HEARTBEATS), None);
        let why = h.stuck(10_001 + 100 * STALE_HEARTBEATS);
        assert_eq!(
            why.as_deref(),
            Some("no core heartbeat for 501 ms (one is due every 100 ms)")
        );
        h.beat(11_000, Duration::from_millis(100));
        assert_eq!(h.stuck(11_050), None);
    }
}
