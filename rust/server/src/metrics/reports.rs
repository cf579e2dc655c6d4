//! The dashboard reports of clusters in other processes, as the master
//! keeps them (sans-IO: every call takes `now`).
//!
//! A report replaces the cluster's previous one. The master keeps at most
//! one report a cluster id, for the clusters it lists (the rest are dropped
//! at each sample), and takes at most one a cluster every
//! [`REPORT_MIN_INTERVAL_MS`] (more are ignored), so a cluster, hostile or
//! not, costs it at most one decoded report of
//! [`REPORT_BYTES_MAX`](sustenet_proto::report::REPORT_BYTES_MAX) bytes.

use std::collections::{HashMap, HashSet};

use sustenet_proto::report::ClusterReport;

use super::FragmentCell;

/// Least time between two reports the master takes from one cluster, ms.
pub const REPORT_MIN_INTERVAL_MS: u64 = 500;

/// One cluster's last report and when it came.
#[derive(Debug, Clone)]
struct Received {
    at_ms: u64,
    report: ClusterReport,
}

/// The last report of each listed cluster, by cluster id.
#[derive(Debug, Default)]
pub(super) struct Reports {
    by_id: HashMap<u64, Received>,
}

impl Reports {
    /// Keeps `report` as cluster `id`'s, unless its last one came less
    /// than [`REPORT_MIN_INTERVAL_MS`] ago; says whether it was kept.
    pub fn accept(&mut self, id: u64, now_ms: u64, report: ClusterReport) -> bool {
        if let Some(last) = self.by_id.get(&id) {
            if now_ms < last.at_ms.saturating_add(REPORT_MIN_INTERVAL_MS) {
                return false;
            }
        }
        self.by_id.insert(
            id,
            Received {
                at_ms: now_ms,
                report,
            },
        );
        true
    }

    /// Forgets the reports of clusters not in `listed`.
    pub fn retain(&mut self, listed: &HashSet<u64>) {
        self.by_id.retain(|id, _| listed.contains(id));
    }

    /// Whether cluster `id` has a report.
    pub fn has(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// The occupied fragments cluster `id` reported.
    pub fn cells(&self, id: u64) -> Option<Vec<FragmentCell>> {
        self.by_id.get(&id).map(|r| {
            r.report
                .cells
                .iter()
                .map(|c| FragmentCell {
                    coords: c.coords,
                    players: c.players,
                })
                .collect()
        })
    }

    /// The disconnects cluster `id` reported: (wall clock ms, reason label),
    /// dated from when the report came (never later than that).
    pub fn disconnects(&self, id: u64) -> Vec<(u64, &'static str)> {
        self.by_id.get(&id).map_or_else(Vec::new, |r| {
            r.report
                .disconnects
                .iter()
                .map(|d| {
                    let at = r.at_ms.saturating_sub(u64::from(d.age_ms));
                    (at, super::reason_label(d.reason))
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sustenet_proto::DisconnectReason;
    use sustenet_proto::report::{RecentDisconnect, ReportCell};

    fn report(players: u32) -> ClusterReport {
        ClusterReport {
            cells: vec![ReportCell {
                coords: [1, 2, 0],
                players,
            }],
            disconnects: vec![RecentDisconnect {
                age_ms: 300,
                reason: DisconnectReason::Timeout,
            }],
        }
    }

    #[test]
    fn one_report_a_cluster_at_most_every_interval_for_listed_clusters() {
        let mut r = Reports::default();
        assert!(r.accept(7, 10_000, report(3)));
        assert!(!r.accept(7, 10_000 + REPORT_MIN_INTERVAL_MS - 1, report(9)));
        assert_eq!(r.cells(7).unwrap()[0].players, 3);
        assert_eq!(r.disconnects(7), vec![(9_700, "timeout")]);
        assert!(r.accept(7, 10_000 + REPORT_MIN_INTERVAL_MS, report(9)));
        assert_eq!(r.cells(7).unwrap()[0].players, 9);
        r.retain(&HashSet::from([8]));
        assert!(!r.has(7));
        assert_eq!(r.cells(7), None);
    }
}
