//! `SustenetCluster`'s numbers for the game ([`stats_dictionary`]) and its
//! optional `/metrics` endpoint ([`serve_metrics`]), the same metrics the
//! `sustenet cluster` command exports.

use std::net::SocketAddr;
use std::sync::Arc;

use godot::prelude::*;
use sustenet_server::metrics::admin::{self, Admin};
use sustenet_server::metrics::{ClusterMetrics, ClusterStats};
use sustenet_server::prometheus_client::registry::Registry;
use tokio::sync::oneshot;

/// The stats as a Dictionary: counters since the cluster started, gauges
/// as they are now. Keys are documented on `SustenetCluster.get_stats`.
pub(crate) fn stats_dictionary(s: &ClusterStats, dropped_packets: u64) -> VarDictionary {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let mut d = VarDictionary::new();
    d.set("players", &(n(s.players)).to_variant());
    d.set("capacity", &(n(s.capacity)).to_variant());
    d.set("connections", &(n(s.connections)).to_variant());
    d.set("joins", &(n(s.joins)).to_variant());
    d.set("disconnects", &(n(s.disconnects)).to_variant());
    d.set("reconnects", &(n(s.reconnects)).to_variant());
    d.set(
        "transfers_redirected",
        &(n(s.transfers_redirected)).to_variant(),
    );
    d.set("transfers_failed", &(n(s.transfers_failed)).to_variant());
    d.set("reliable_in", &(n(s.reliable_in)).to_variant());
    d.set("unreliable_in", &(n(s.unreliable_in)).to_variant());
    d.set("reliable_out", &(n(s.reliable_out)).to_variant());
    d.set("unreliable_out", &(n(s.unreliable_out)).to_variant());
    d.set("bytes_in", &(n(s.bytes_in)).to_variant());
    d.set("bytes_out", &(n(s.bytes_out)).to_variant());
    d.set("datagrams_dropped", &(n(s.datagrams_dropped)).to_variant());
    d.set("send_queue_depth", &(n(s.send_queue_depth)).to_variant());
    d.set(
        "send_queue_full_kicks",
        &(n(s.send_queue_full_kicks)).to_variant(),
    );
    d.set("fragments", &(n(s.fragments)).to_variant());
    d.set("fragment_over_cap", &(n(s.fragment_over_cap)).to_variant());
    d.set("ticks", &(n(s.ticks)).to_variant());
    d.set(
        "tick_usec_avg",
        &(if s.ticks == 0 {
            0.0
        } else {
            s.tick_seconds_sum * 1e6 / s.ticks as f64
        })
        .to_variant(),
    );
    d.set("master_link_up", &(s.master_link_up).to_variant());
    d.set("dropped_packets", &(n(dropped_packets)).to_variant());
    let mut recent = VarArray::new();
    for (at_ms, reason) in &s.recent_disconnects {
        let mut e = VarDictionary::new();
        e.set("at_ms", &(n(*at_ms)).to_variant());
        e.set("reason", &(GString::from(*reason)).to_variant());
        recent.push(&e.to_variant());
    }
    d.set("recent_disconnects", &(recent).to_variant());
    d
}

/// Binds `bind` (an `ip:port`) and serves `metrics` there, labelled with
/// the cluster's `name`, until `stop` is dropped. Returns the bound address.
pub(crate) fn serve_metrics(
    handle: &tokio::runtime::Handle,
    bind: &str,
    token: &str,
    name: &str,
    metrics: &ClusterMetrics,
    stop: oneshot::Receiver<()>,
) -> Result<SocketAddr, String> {
    let addr: SocketAddr = bind
        .parse()
        .map_err(|_| format!("metrics_bind \"{bind}\" is not an IP address and port"))?;
    admin::check_exposure(addr, token, false)?;
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let _guard = handle.enter();
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    let mut registry = Registry::default();
    metrics.register(registry.sub_registry_with_label(("cluster".into(), name.to_owned().into())));
    let token = (!token.is_empty()).then(|| token.to_owned());
    let admin =
        Arc::new(Admin::new(registry, token, None).watch_core(name, metrics.heartbeat().clone()));
    handle.spawn(admin::serve(listener, admin, async {
        let _ = stop.await;
    }));
    Ok(bound)
}
