//! A master's metrics: connections, logins, tickets and the clusters it knows.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sustenet_proto::DisconnectReason;
use sustenet_proto::message::ClusterInfo;
use sustenet_proto::report::ClusterReport;

use super::{Handshakes, LabeledCounter};

/// Samples of the cluster list kept for the dashboard's charts (one a second: 5 minutes).
pub const HISTORY_SAMPLES: usize = 300;
/// Most clusters a history sample keeps (the rest are summed into the totals only).
pub const HISTORY_CLUSTERS: usize = 64;

/// One sample of the master's view, for the dashboard's charts.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Wall clock, ms since the Unix epoch.
    pub at_ms: u64,
    /// Tickets issued for joins so far.
    pub joins: u64,
    /// Tickets issued for transfers (handoffs) so far.
    pub transfers: u64,
    /// Players per cluster: (name, players), at most [`HISTORY_CLUSTERS`].
    pub players: Vec<(String, u32)>,
}

#[derive(Debug, Default)]
struct View {
    clusters: Vec<ClusterInfo>,
    /// The listed clusters that are reserved (an allocated Agones GameServer).
    reserved: std::collections::HashSet<u64>,
    history: VecDeque<Sample>,
    reports: super::reports::Reports,
}

/// Label set of the per-cluster gauges: the cluster's name (one of the
/// registered clusters, bounded by the key folder).
type ClusterLabel = [(&'static str, String); 1];

/// Every metric of one master. Cheap to clone (the clones count into the
/// same metrics); the default is a fresh set that nothing exports until it
/// is [registered](Self::register).
#[derive(Debug, Clone, Default)]
pub struct MasterMetrics {
    handshakes: Handshakes,
    logins: LabeledCounter,
    tickets_issued: LabeledCounter,
    tickets_used: Counter,
    tickets_expired: LabeledCounter,
    clusters: Gauge,
    clusters_reserved: Gauge,
    players: Gauge,
    cluster_players: Family<ClusterLabel, Gauge>,
    cluster_capacity: Family<ClusterLabel, Gauge>,
    view: Arc<Mutex<View>>,
}

impl MasterMetrics {
    /// Registers every metric under `sustenet_master_` in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sustenet_master");
        self.handshakes.register(r, "Handshakes");
        r.register(
            "logins",
            "Logins by result (ok, refused)",
            self.logins.clone(),
        );
        r.register(
            "tickets_issued",
            "Tickets issued by kind (join, transfer)",
            self.tickets_issued.clone(),
        );
        r.register(
            "tickets_used",
            "Tickets a cluster reported used (the player joined)",
            self.tickets_used.clone(),
        );
        r.register(
            "tickets_expired",
            "Tickets that expired unused, by kind (join, transfer)",
            self.tickets_expired.clone(),
        );
        for kind in ["join", "transfer"] {
            // Both series exist from the start, at 0, for rate() and alerts.
            let _ = self.tickets_expired.get_or_create(&[("kind", kind)]);
        }
        r.register("clusters", "Registered clusters", self.clusters.clone());
        r.register(
            "clusters_reserved",
            "Registered clusters that are reserved (left out of automatic joins)",
            self.clusters_reserved.clone(),
        );
        r.register(
            "players",
            "Players over all clusters, as the master counts them",
            self.players.clone(),
        );
        r.register(
            "cluster_players",
            "Players per cluster",
            self.cluster_players.clone(),
        );
        r.register(
            "cluster_capacity_players",
            "Each cluster's player limit in force, as it reports it",
            self.cluster_capacity.clone(),
        );
    }

    /// A TCP connection was accepted.
    pub fn connection(&self) {
        self.handshakes.connection();
    }
    /// A handshake ended: `Ok` or the reason it was refused.
    pub fn handshake(&self, result: Result<(), DisconnectReason>) {
        self.handshakes.handshake(result);
    }
    /// A login was accepted or refused.
    pub fn login(&self, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
        self.logins.get_or_create(&[("result", result)]).inc();
    }
    /// A ticket was issued, for a join (`transfer` false) or a transfer.
    pub fn ticket_issued(&self, transfer: bool) {
        let kind = if transfer { "transfer" } else { "join" };
        self.tickets_issued.get_or_create(&[("kind", kind)]).inc();
    }
    /// A cluster reported a player the master sent it.
    pub fn ticket_used(&self) {
        self.tickets_used.inc();
    }

    /// `joins` join tickets and `transfers` transfer tickets expired unused.
    pub fn tickets_expired(&self, joins: u64, transfers: u64) {
        for (kind, n) in [("join", joins), ("transfer", transfers)] {
            if n > 0 {
                self.tickets_expired
                    .get_or_create(&[("kind", kind)])
                    .inc_by(n);
            }
        }
    }

    /// Takes the cluster list as it is now (at most once a second): sets
    /// the gauges and adds a sample to the dashboard's history.
    pub fn sample(&self, now_ms: u64, clusters: Vec<ClusterInfo>) {
        self.clusters
            .set(i64::try_from(clusters.len()).unwrap_or(i64::MAX));
        self.cluster_players.clear();
        self.cluster_capacity.clear();
        let mut total = 0i64;
        for c in &clusters {
            let label = [("cluster", c.name.clone())];
            self.cluster_players
                .get_or_create(&label)
                .set(i64::from(c.players));
            self.cluster_capacity
                .get_or_create(&label)
                .set(i64::from(c.capacity));
            total += i64::from(c.players);
        }
        self.players.set(total);
        let sample = Sample {
            at_ms: now_ms,
            joins: self.tickets("join"),
            transfers: self.tickets("transfer"),
            players: clusters
                .iter()
                .take(HISTORY_CLUSTERS)
                .map(|c| (c.name.clone(), c.players))
                .collect(),
        };
        let mut v = self.view();
        if v.history.len() == HISTORY_SAMPLES {
            v.history.pop_front();
        }
        v.history.push_back(sample);
        let listed = clusters.iter().map(|c| c.id).collect();
        v.reports.retain(&listed);
        v.clusters = clusters;
    }

    /// Takes the reserved clusters as they are now (after [`Self::sample`]):
    /// sets `sustenet_master_clusters_reserved` to those of the last
    /// sample's clusters, which the dashboard shows as `reserved`.
    pub fn reserved(&self, reserved: &std::collections::HashSet<u64>) {
        let mut v = self.view();
        v.reserved = v
            .clusters
            .iter()
            .map(|c| c.id)
            .filter(|id| reserved.contains(id))
            .collect();
        self.clusters_reserved
            .set(i64::try_from(v.reserved.len()).unwrap_or(i64::MAX));
    }

    /// Whether cluster `id` was reserved at the last sample.
    pub fn is_reserved(&self, id: u64) -> bool {
        self.view().reserved.contains(&id)
    }

    /// Cluster `id` sent its dashboard report (kept unless it sent one less
    /// than [`REPORT_MIN_INTERVAL_MS`](super::reports::REPORT_MIN_INTERVAL_MS)
    /// ago); says whether it was kept.
    pub fn cluster_report(&self, id: u64, now_ms: u64, report: ClusterReport) -> bool {
        self.view().reports.accept(id, now_ms, report)
    }

    /// Whether cluster `id` sent a report the master keeps.
    pub fn has_report(&self, id: u64) -> bool {
        self.view().reports.has(id)
    }

    /// The occupied fragments cluster `id` last reported.
    pub fn reported_cells(&self, id: u64) -> Option<Vec<super::FragmentCell>> {
        self.view().reports.cells(id)
    }

    /// The disconnects cluster `id` last reported: (wall clock ms, reason).
    pub fn reported_disconnects(&self, id: u64) -> Vec<(u64, &'static str)> {
        self.view().reports.disconnects(id)
    }

    fn tickets(&self, kind: &'static str) -> u64 {
        self.tickets_issued.get_or_create(&[("kind", kind)]).get()
    }

    fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cluster list of the last sample.
    pub fn clusters(&self) -> Vec<ClusterInfo> {
        self.view().clusters.clone()
    }

    /// The samples kept, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.view().history.iter().cloned().collect()
    }

    /// Logins accepted, tickets issued for joins and for transfers, tickets used.
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        (
            self.logins.get_or_create(&[("result", "ok")]).get(),
            self.tickets("join"),
            self.tickets("transfer"),
            self.tickets_used.get(),
        )
    }
}
