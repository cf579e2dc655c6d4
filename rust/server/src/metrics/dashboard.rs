//! The master's live dashboard: one static page ([`PAGE`]) that polls
//! `/api/dashboard` ([`Dashboard::json`]) once a second.
//!
//! The master's own view (the cluster list, players per cluster over the
//! last five minutes, join and handoff counts) comes from its
//! [`MasterMetrics`]; a cluster's fragment heat map and recent disconnect
//! reasons come from its [`ClusterMetrics`] when it runs in the master's
//! process (`sustenet up`), else from the last report it sent over its
//! master link (`ClusterToMaster::Report`, kept by the master's metrics).

use serde_json::{Value, json};

use super::{ClusterMetrics, MasterMetrics};

/// The dashboard page: plain HTML, CSS and JavaScript, no build step.
pub const PAGE: &str = include_str!("dashboard.html");

/// The dashboard's data sources.
#[derive(Debug, Clone)]
pub struct Dashboard {
    master: MasterMetrics,
    clusters: Vec<(String, ClusterMetrics)>,
}

impl Dashboard {
    /// A cluster's state in the list: `reserved` (an allocated Agones
    /// GameServer), else `full` (locked), else `open`.
    fn state(&self, c: &sustenet_proto::message::ClusterInfo) -> &'static str {
        if self.master.is_reserved(c.id) {
            "reserved"
        } else if c.locked {
            "full"
        } else {
            "open"
        }
    }

    /// A dashboard of `master` and of the clusters running in this process
    /// (by name).
    pub fn new(master: MasterMetrics, clusters: Vec<(String, ClusterMetrics)>) -> Self {
        Self { master, clusters }
    }

    /// The data the page shows, as JSON: the cluster list, history, totals,
    /// the heat map of the cluster named `chosen` (or the first local one)
    /// and the latest disconnects.
    pub fn json(&self, chosen: Option<&str>) -> String {
        let now_ms = crate::time::now_ms();
        let (logins, joins, transfers, tickets_used) = self.master.totals();
        let mut list = self.master.clusters();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        let clusters: Vec<Value> = list
            .iter()
            .map(|c| {
                let local = self.local(&c.name).map(ClusterMetrics::stats);
                let reported = self
                    .master
                    .reported_cells(c.id)
                    .map(|cells| cells.len() as u64);
                json!({
                    "id": c.id.to_string(),
                    "name": c.name,
                    "address": format!("{}:{}", c.address, c.tcp_port),
                    "players": c.players,
                    "capacity": c.capacity,
                    "state": self.state(c),
                    "local": local.is_some(),
                    "reported": reported.is_some(),
                    "fragments": local.as_ref().map(|s| s.fragments).or(reported),
                    "tick_ms_avg": local.as_ref().filter(|s| s.ticks > 0)
                        .map(|s| s.tick_seconds_sum * 1000.0 / s.ticks as f64),
                })
            })
            .collect();
        let history: Vec<Value> = self
            .master
            .history()
            .into_iter()
            .map(|s| {
                let players: serde_json::Map<String, Value> =
                    s.players.into_iter().map(|(n, p)| (n, json!(p))).collect();
                json!({"at_ms": s.at_ms, "joins": s.joins, "transfers": s.transfers, "players": players})
            })
            .collect();
        let heat_clusters: Vec<&str> = self
            .clusters
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(
                list.iter()
                    .filter(|c| self.local(&c.name).is_none() && self.master.has_report(c.id))
                    .map(|c| c.name.as_str()),
            )
            .collect();
        let heat = chosen
            .filter(|n| heat_clusters.contains(n))
            .or(heat_clusters.first().copied())
            .and_then(|name| {
                let cells = match self.local(name) {
                    Some(m) => m.stats().cells,
                    None => self
                        .master
                        .reported_cells(list.iter().find(|c| c.name == name)?.id)?,
                };
                let cells: Vec<Value> = cells
                    .iter()
                    .map(|c| json!([c.coords[0], c.coords[1], c.coords[2], c.players]))
                    .collect();
                Some(json!({"cluster": name, "cells": cells}))
            });
        let mut disconnects: Vec<(u64, &str, &'static str)> = self
            .clusters
            .iter()
            .flat_map(|(name, m)| {
                m.stats()
                    .recent_disconnects
                    .into_iter()
                    .map(move |(at, reason)| (at, name.as_str(), reason))
            })
            .collect();
        for c in list.iter().filter(|c| self.local(&c.name).is_none()) {
            let reported = self.master.reported_disconnects(c.id);
            disconnects.extend(reported.into_iter().map(|(at, r)| (at, c.name.as_str(), r)));
        }
        disconnects.sort_by_key(|d| std::cmp::Reverse(d.0));
        disconnects.truncate(super::cluster::RECENT_DISCONNECTS);
        let disconnects: Vec<Value> = disconnects
            .into_iter()
            .map(|(at, c, r)| json!({"at_ms": at, "cluster": c, "reason": r}))
            .collect();
        json!({
            "now_ms": now_ms,
            "totals": {"logins": logins, "joins": joins, "transfers": transfers, "tickets_used": tickets_used},
            "clusters": clusters,
            "local_clusters": self.clusters.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
            "heat_clusters": heat_clusters,
            "history": history,
            "heat": heat,
            "disconnects": disconnects,
        })
        .to_string()
    }

    fn local(&self, name: &str) -> Option<&ClusterMetrics> {
        self.clusters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
    }
}
