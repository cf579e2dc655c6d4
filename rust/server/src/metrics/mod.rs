//! Prometheus metrics of masters and clusters, and the admin HTTP endpoint
//! that serves them (and, on a master, the live dashboard).
//!
//! Every [`MasterConfig`](crate::MasterConfig) and
//! [`ClusterConfig`](crate::ClusterConfig) carries a metrics set
//! ([`MasterMetrics`], [`ClusterMetrics`]) that the server updates as it
//! runs; they cost a few atomic adds whether or not anything reads them.
//! A binary exports them by registering them in a
//! [`prometheus_client::registry::Registry`] and serving it with
//! [`admin::serve`]. Names and labels follow the Prometheus conventions
//! (`_total` counters, base units, `_seconds` and `_bytes`); labels take
//! values from small fixed sets (a reason, a channel, a cluster name), never
//! a player id. Histograms have the explicit buckets listed here.

pub mod admin;
mod cluster;
pub mod core_health;
pub mod dashboard;
mod master;
mod process;
pub mod reports;

pub use cluster::{ClusterMetrics, ClusterStats, FragmentCell};
pub use core_health::CoreHeartbeat;
pub use master::MasterMetrics;
pub use process::resident_memory_bytes;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Buckets of `sustenet_cluster_core_tick_seconds`: 100 µs to 250 ms.
pub const TICK_BUCKETS: [f64; 11] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];
/// Buckets of `sustenet_cluster_transfer_pause_seconds`: 5 ms to 5 s.
pub const TRANSFER_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// Buckets of `sustenet_cluster_reconnect_away_seconds`: 50 ms to 60 s.
pub const AWAY_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// A label set of one label with a value from a fixed set.
pub type Label = [(&'static str, &'static str); 1];
/// A counter with one label from a fixed set.
pub type LabeledCounter = Family<Label, Counter>;

/// Connections accepted and handshakes by result: counted alike by masters
/// and clusters (`connections_total`, `handshakes_total{result}`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Handshakes {
    connections: Counter,
    results: LabeledCounter,
}

impl Handshakes {
    /// Registers both counters in `r`; `what` names the handshakes in the help text.
    fn register(&self, r: &mut Registry, what: &str) {
        r.register(
            "connections",
            "TCP connections accepted",
            self.connections.clone(),
        );
        r.register(
            "handshakes",
            format!("{what} by result (ok, or the refusal reason)"),
            self.results.clone(),
        );
    }

    /// A TCP connection was accepted.
    fn connection(&self) {
        self.connections.inc();
    }

    /// A handshake ended: `Ok` or the reason it was refused.
    fn handshake(&self, result: Result<(), sustenet_proto::DisconnectReason>) {
        let result = match result {
            Ok(()) => "ok",
            Err(r) => reason_label(r),
        };
        self.results.get_or_create(&[("result", result)]).inc();
    }

    /// Connections accepted so far.
    fn connections(&self) -> u64 {
        self.connections.get()
    }
}

/// The `snake_case` name of a reason (`SendQueueFull` → `send_queue_full`),
/// as a label value: one of the finite set of reasons.
pub fn reason_label(reason: sustenet_proto::DisconnectReason) -> &'static str {
    use sustenet_proto::DisconnectReason as R;
    match reason {
        R::Requested => "requested",
        R::Kicked => "kicked",
        R::Timeout => "timeout",
        R::ServerShutdown => "server_shutdown",
        R::ServerFull => "server_full",
        R::ProtocolViolation => "protocol_violation",
        R::AuthFailed => "auth_failed",
        R::VersionMismatch => "version_mismatch",
        R::SendQueueFull => "send_queue_full",
        R::HandshakeTimeout => "handshake_timeout",
        R::TokenInvalid => "token_invalid",
        R::TokenExpired => "token_expired",
        R::TokenUsed => "token_used",
        R::TokenWrongCluster => "token_wrong_cluster",
        R::Redirected => "redirected",
        R::ConnectionLost => "connection_lost",
        R::Tampered => "tampered",
        R::TooManyHandshakes => "too_many_handshakes",
        R::NoCluster => "no_cluster",
        R::ReconnectTimeout => "reconnect_timeout",
        R::ResumeRefused => "resume_refused",
        R::TooManyTickets => "too_many_tickets",
        R::Unknown => "unknown",
    }
}
