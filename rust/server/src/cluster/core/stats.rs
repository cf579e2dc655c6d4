//! What the core tells the metrics: read-only looks at its state.

use std::time::{Duration, Instant};

use super::Core;
use crate::ids::PlayerId;
use crate::metrics::FragmentCell;
use crate::plugin::Plugin;

impl<P: Plugin> Core<P> {
    /// The cluster's metrics.
    pub(crate) fn metrics(&self) -> &crate::metrics::ClusterMetrics {
        &self.s.config.metrics
    }

    /// Occupied fragments and their players.
    pub(crate) fn fragment_cells(&self) -> Vec<FragmentCell> {
        let fragments = &self.s.interest.fragments;
        fragments
            .occupied_fragments()
            .map(|f| FragmentCell {
                coords: [f.x, f.y, f.z],
                players: u32::try_from(fragments.population(f)).unwrap_or(u32::MAX),
            })
            .collect()
    }

    /// Messages in the deepest send queue of a connected player.
    pub(crate) fn deepest_send_queue(&self) -> usize {
        self.s
            .players
            .values()
            .filter_map(|p| p.out.as_ref().map(|o| o.depth()))
            .max()
            .unwrap_or(0)
    }

    /// How long `player` has been away at `now` (zero if it is not away).
    pub(crate) fn away_for(&self, now: Instant, player: PlayerId) -> Duration {
        let grace = self.s.config.resume_grace;
        self.s
            .players
            .get(&player)
            .and_then(|p| p.away_until)
            .map_or(Duration::ZERO, |until| {
                grace.saturating_sub(until.saturating_duration_since(now))
            })
    }

    /// How long the transfer `request_id` has waited for the master, if it
    /// is still pending.
    pub(crate) fn transfer_waited(&self, now: Instant, request_id: u64) -> Option<Duration> {
        let t = &self.s.transfers;
        t.pending.get(&request_id).map(|(_, deadline)| {
            t.timeout
                .saturating_sub(deadline.saturating_duration_since(now))
        })
    }
}
