//! When fragments are due: each fragment's update schedule, and the fan-out
//! that tells every recipient which due players it must hear about.

use std::time::{Duration, Instant};

use super::query::{Probe, dist2, sq};
use super::{Cell, FragmentId, Fragments, TickStats};
use crate::ids::PlayerId;

/// The first `epoch + k × period` (k a whole number) after `now`; `now`
/// itself if that is out of `Instant`'s range.
fn next_boundary(epoch: Instant, period: Duration, now: Instant) -> Instant {
    let p = period.as_nanos().max(1);
    let k = now.saturating_duration_since(epoch).as_nanos() / p + 1;
    u64::try_from(k * p)
        .ok()
        .and_then(|ns| epoch.checked_add(Duration::from_nanos(ns)))
        .unwrap_or(now)
}

impl Fragments {
    /// When a fragment's players are next due (`None`: unoccupied, or due at
    /// the next tick because it was just occupied).
    pub fn next_due(&self, fragment: FragmentId) -> Option<Instant> {
        self.cells.get(&fragment).and_then(|c| c.next_due)
    }

    /// Starts a tick: picks the occupied fragments whose update is due at
    /// `now`, moves their schedules on, and returns them. A fragment is due
    /// every `1 / update_hz`, at whole multiples of its period counted from
    /// the grid's first tick, so the average rate holds even when ticks do
    /// not line up with it, and a fragment skips ahead rather than bursting
    /// if the cluster fell behind. A fragment that just became occupied is
    /// due at once, then joins that shared schedule.
    ///
    /// The shared schedule matters for the datagram count: a player hears
    /// about the players of up to 9 (2D) or 27 (3D) fragments, and batches
    /// all of them due in one tick into one datagram. Fragments on their
    /// own phases (the time each was first occupied) would be due on
    /// different ticks and cost the player a datagram each per period.
    /// O(occupied fragments).
    pub fn start_tick(&mut self, now: Instant) -> &[FragmentId] {
        self.tick += 1;
        self.due.clear();
        let epoch = *self.epoch.get_or_insert(now);
        for (id, cell) in &mut self.cells {
            if cell.next_due.is_some_and(|t| now < t) {
                continue;
            }
            let period = self
                .overrides
                .get(id)
                .unwrap_or(&self.config.default_settings)
                .period();
            cell.next_due = Some(next_boundary(epoch, period, now));
            cell.due_tick = self.tick;
            self.due.push(*id);
        }
        &self.due
    }

    /// The fan-out of the tick last started: for every player `q`, the
    /// players `p != q` in due fragments with `distance(p, q) <= q.radius`,
    /// handed to `emit(q, subjects)` — everything `q` must be told about
    /// this tick, ready to be coalesced into as few datagrams as fit. Players
    /// with nothing to hear are skipped. Players moved since
    /// [`Self::start_tick`] are seen at their new positions; fragments first
    /// occupied since then are not due.
    ///
    /// Cost: O(fragments × cells per query + players × candidates), that is
    /// players × neighbours at bounded density (see the module docs); two
    /// scratch vectors per call, nothing per player.
    pub fn fan_out(&self, mut emit: impl FnMut(PlayerId, &[PlayerId])) -> TickStats {
        let mut stats = TickStats {
            due_fragments: self.due.len(),
            ..TickStats::default()
        };
        if self.due.is_empty() {
            return stats;
        }
        let dims = self.config.dims;
        let tick = self.tick;
        let mut near: Vec<(FragmentId, &Cell)> = Vec::new();
        let mut subjects: Vec<PlayerId> = Vec::new();
        for cell in self.cells.values() {
            // One probe per recipient cell, around its members' bounding
            // box and out to their largest radius: the hash lookups are paid
            // per cell, not per player, and a cell with no due neighbour is
            // skipped whole.
            let Some((lo, hi, reach)) = bounds(cell) else {
                continue;
            };
            let probe = Probe::new(&self.config, lo, hi, reach);
            near.clear();
            self.visit_cells(&probe, |id, c| {
                if c.due_tick == tick {
                    near.push((id, c));
                }
            });
            if near.is_empty() {
                continue;
            }
            for q in &cell.members {
                subjects.clear();
                let p = q.pos.map(f64::from);
                let r2 = sq(f64::from(q.radius));
                let cull = sq(f64::from(q.radius) + probe.margin);
                for (id, c) in &near {
                    if probe.gap2(id, &p, &p) > cull {
                        continue;
                    }
                    for m in &c.members {
                        if m.id != q.id && dist2(dims, m.pos, q.pos) <= r2 {
                            subjects.push(m.id);
                        }
                    }
                }
                if !subjects.is_empty() {
                    stats.recipients += 1;
                    stats.pairs += subjects.len();
                    emit(q.id, &subjects);
                }
            }
        }
        stats
    }

    /// [`Self::start_tick`] then [`Self::fan_out`]: what the cluster core
    /// calls once per tick.
    pub fn tick(&mut self, now: Instant, emit: impl FnMut(PlayerId, &[PlayerId])) -> TickStats {
        self.start_tick(now);
        self.fan_out(emit)
    }
}

/// The bounding box of a cell's members and their largest radius.
fn bounds(cell: &Cell) -> Option<([f64; 3], [f64; 3], f64)> {
    let first = cell.members.first()?;
    let mut lo = first.pos.map(f64::from);
    let mut hi = lo;
    let mut reach = 0.0f64;
    for m in &cell.members {
        for a in 0..3 {
            let v = f64::from(m.pos[a]);
            lo[a] = lo[a].min(v);
            hi[a] = hi[a].max(v);
        }
        reach = reach.max(f64::from(m.radius));
    }
    Some((lo, hi, reach))
}
