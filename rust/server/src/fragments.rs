//! Fragments: the grid that splits a cluster's world into regions, tracks
//! which player is in which region, and answers "who is near whom"
//! (interest management).
//!
//! This module is plain data: no sockets, no tasks, no clock. The cluster's
//! core task owns one [`Fragments`], feeds it the positions the game reports,
//! passes in `now` when it ticks, and turns the answers into packets. Keeping
//! it synchronous makes it testable against a brute-force model and lets the
//! benchmark measure the data structure alone.
//!
//! # Model
//!
//! - The world is a uniform grid of cubes (3D) or squares (2D) of side
//!   [`GridConfig::cell_size`]; a fragment is one grid cell, named by its
//!   [`FragmentId`]: `floor(position / cell_size)` on each axis. In 2D the z
//!   coordinate is carried along but ignored for fragments and distances.
//! - Each fragment has [`FragmentSettings`] (player cap, update rate): the
//!   grid's default, or an override the game set for that one fragment.
//! - Each player has a position and an interest radius. An update about
//!   player `p` must reach exactly the players `q != p` with
//!   `distance(p, q) <= q.radius` — `q`'s interest area covers `p`. That set
//!   is [`Fragments::audience`].
//! - Distances are Euclidean, computed in `f64` from the `f32` inputs as
//!   `dx*dx + dy*dy (+ dz*dz) <= r*r`, so huge coordinates cannot overflow.
//!
//! # Why a uniform hash grid
//!
//! Players report positions every tick, so moves must be cheap: a move
//! inside a cell rewrites one position, a move across cells is a
//! `swap_remove` from one cell's vector and a push onto another's, O(1).
//! Queries visit only the cells whose box overlaps the query circle or
//! sphere, and each cell keeps its members' positions and radii inline, so a
//! query reads a few contiguous vectors and does no lookups per candidate.
//! Only occupied cells are stored (a `HashMap`), so the world has no bounds
//! and empty space costs nothing. A tree (quadtree, BVH) would adapt better
//! to very uneven crowds but costs more per move; a grid whose cell size is
//! close to the typical interest radius keeps every query to 3×3 (2D) or
//! 3×3×3 (3D) cells, which is the case the cluster cares about.
//!
//! The audience query must look as far as the largest interest radius in the
//! world (someone far away with a huge radius may still hear `p`), so the
//! grid keeps a count of every radius in use and knows the current maximum
//! in O(log distinct radii). One player with a huge radius makes every
//! audience query wide; give such players (spectators, admins) their own
//! path instead.
//!
//! # Per-tick cost
//!
//! [`Fragments::tick`] first decides which occupied fragments are due under
//! their update rate (O(occupied fragments)). Then, per occupied cell, it
//! finds once the due cells within reach of that cell's players (their
//! bounding box, out to their largest radius), and for each player `q` in it
//! scans those cells for the players `q` must hear about. With `c` cells per
//! query and `k` candidates per player this is O(fragments × c + players ×
//! k): it grows with players × neighbours, never players², as long as the
//! density (players per cell) stays bounded. The hash lookups are paid per
//! cell, not per player, so the inner loop is a scan of contiguous
//! `(id, position, radius)` records. A cell size near the common interest
//! radius makes `k` about 3× the true neighbour count (2D: a 3×3 block
//! against a circle); a smaller cell trims `k` at the price of more cells
//! per query. `benches/fragments.rs` measures it at 1k, 5k and 20k players.
//!
//! The maps use a seeded multiply-fold hash instead of SipHash (which was a
//! fifth of a query's time); the seed is random per map, so positions a
//! client chooses cannot be aimed at one bucket.
//!
//! # Edges
//!
//! Fragment coordinates are clamped to ±2³⁰, so huge but finite positions
//! land in the outermost fragments instead of overflowing; those fragments
//! stretch to infinity and queries treat them so. Non-finite positions
//! (NaN, ±∞) are refused by [`Fragments::set_position`].

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use serde::Deserialize;
use thiserror::Error;

use crate::ids::PlayerId;

/// Fragment coordinates are clamped to ±this, so cell arithmetic (`x + 1`,
/// spans of cells) never overflows an `i32`.
const CELL_LIMIT: i32 = 1 << 30;

/// Relative slack added to query boxes: cell membership and distances are
/// both computed with rounding, and a player exactly on a query's edge must
/// never fall into a cell the query skipped. 1e-9 is far above `f64`'s
/// rounding (~1e-16) and far below anything that changes which cells are
/// visited in practice.
const MARGIN: f64 = 1e-9;

/// Update periods are kept between these, so `1 / update_hz` always makes a
/// usable `Duration` (no overflow for tiny rates, no zero for huge ones).
const MIN_PERIOD_NS: f64 = 1_000.0;
const MAX_PERIOD_NS: f64 = 86_400.0 * 1e9;

/// Why a setting, position or radius was refused.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum FragmentError {
    /// The cell size is zero, negative, NaN or infinite.
    #[error("cell size must be finite and positive, got {0}")]
    InvalidCellSize(f32),
    /// The update rate is zero, negative, NaN or infinite.
    #[error("update rate must be finite and positive, got {0} Hz")]
    InvalidUpdateRate(f32),
    /// The interest radius is negative, NaN or infinite.
    #[error("interest radius must be finite and not negative, got {0}")]
    InvalidRadius(f32),
    /// A coordinate is NaN or infinite.
    #[error("position must be finite, got {0:?}")]
    InvalidPosition([f32; 3]),
    /// The player has no position in the grid.
    #[error("player {0} has no position")]
    UnknownPlayer(PlayerId),
}

/// Whether the world is flat or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
pub enum Dims {
    /// x and y only; z is kept but ignored for fragments and distances.
    #[default]
    #[serde(rename = "2d")]
    Two,
    /// x, y and z.
    #[serde(rename = "3d")]
    Three,
}

impl Dims {
    fn axes(self) -> usize {
        match self {
            Dims::Two => 2,
            Dims::Three => 3,
        }
    }
}

/// The settings of one fragment.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FragmentSettings {
    /// Most players before [`FragmentEvent::OverCap`] is reported; 0 means
    /// no cap. The grid never refuses a player itself: the game decides
    /// (refuse, spill over, hand off).
    pub player_cap: u32,
    /// How often per second the states of the players in this fragment are
    /// sent to their audiences. The cluster's own tick bounds it from above.
    pub update_hz: f32,
}

impl Default for FragmentSettings {
    fn default() -> Self {
        Self {
            player_cap: 0,
            update_hz: 20.0,
        }
    }
}

impl FragmentSettings {
    /// Refuses a rate that is not finite and positive.
    pub fn validate(&self) -> Result<(), FragmentError> {
        if self.update_hz.is_finite() && self.update_hz > 0.0 {
            Ok(())
        } else {
            Err(FragmentError::InvalidUpdateRate(self.update_hz))
        }
    }

    /// The time between two updates: `1 / update_hz`, kept between 1 µs and
    /// one day.
    pub fn period(&self) -> Duration {
        let ns = (1e9 / f64::from(self.update_hz)).clamp(MIN_PERIOD_NS, MAX_PERIOD_NS);
        // NaN only if the rate was never validated; fall back to the slowest.
        let ns = if ns.is_nan() { MAX_PERIOD_NS } else { ns };
        Duration::from_nanos(ns.round() as u64)
    }

    /// Whether `count` players is past the cap.
    fn over(&self, count: usize) -> bool {
        self.player_cap != 0 && count > self.player_cap as usize
    }
}

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

/// How a cluster's world is cut into fragments.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GridConfig {
    /// Side of a fragment, in world units. Close to the usual interest
    /// radius keeps queries to 3 cells per axis.
    pub cell_size: f32,
    /// 2D or 3D.
    pub dims: Dims,
    /// Settings of every fragment the game did not override.
    pub default_settings: FragmentSettings,
    /// Interest radius a player gets when it first reports a position.
    pub default_interest_radius: f32,
}

impl Default for GridConfig {
    fn default() -> Self {
        Self {
            cell_size: 64.0,
            dims: Dims::Two,
            default_settings: FragmentSettings::default(),
            default_interest_radius: 64.0,
        }
    }
}

impl GridConfig {
    /// Refuses a cell size that is not finite and positive, a default rate
    /// that is not finite and positive, and a default radius that is not
    /// finite and non-negative.
    pub fn validate(&self) -> Result<(), FragmentError> {
        if !(self.cell_size.is_finite() && self.cell_size > 0.0) {
            return Err(FragmentError::InvalidCellSize(self.cell_size));
        }
        self.default_settings.validate()?;
        check_radius(self.default_interest_radius)
    }
}

/// One fragment: a grid cell. In 2D `z` is always 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FragmentId {
    /// Cell index along x.
    pub x: i32,
    /// Cell index along y.
    pub y: i32,
    /// Cell index along z (0 in 2D).
    pub z: i32,
}

impl FragmentId {
    fn axis(&self, a: usize) -> i32 {
        match a {
            0 => self.x,
            1 => self.y,
            _ => self.z,
        }
    }
}

impl std::fmt::Display for FragmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}, {}, {})", self.x, self.y, self.z)
    }
}

/// Something the game should hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentEvent {
    /// A player is now in a fragment (first position, or a move).
    Entered {
        /// The player.
        player: PlayerId,
        /// The fragment it entered.
        fragment: FragmentId,
    },
    /// A player is no longer in a fragment (a move, or removal).
    Exited {
        /// The player.
        player: PlayerId,
        /// The fragment it left.
        fragment: FragmentId,
    },
    /// A fragment went from at-or-under its cap to over it. Reported once
    /// per crossing: not again while it stays over, again after it has come
    /// back under. When a player's entry caused it, the `Entered` event
    /// just before this one names that player.
    OverCap {
        /// The fragment.
        fragment: FragmentId,
        /// How many players are in it now.
        players: usize,
        /// Its cap.
        cap: u32,
    },
}

impl FragmentEvent {
    /// The fragment the event is about.
    pub fn fragment(&self) -> FragmentId {
        match *self {
            FragmentEvent::Entered { fragment, .. }
            | FragmentEvent::Exited { fragment, .. }
            | FragmentEvent::OverCap { fragment, .. } => fragment,
        }
    }
}

/// The events of one [`Fragments::set_position`]: at most an exit, an entry
/// and a cap crossing, in that order. Kept inline so the per-tick position
/// updates allocate nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FragmentEvents([Option<FragmentEvent>; 3]);

impl FragmentEvents {
    /// The events, in order.
    pub fn iter(&self) -> impl Iterator<Item = FragmentEvent> + '_ {
        self.0.iter().flatten().copied()
    }

    /// How many events there are.
    pub fn len(&self) -> usize {
        self.0.iter().flatten().count()
    }

    /// Whether nothing happened (the player stayed in its fragment).
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

impl IntoIterator for FragmentEvents {
    type Item = FragmentEvent;
    type IntoIter = std::iter::Flatten<std::array::IntoIter<Option<FragmentEvent>, 3>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().flatten()
    }
}

/// What one tick's fan-out did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickStats {
    /// Fragments whose players' states were due.
    pub due_fragments: usize,
    /// Players that got at least one subject.
    pub recipients: usize,
    /// (recipient, subject) pairs in total.
    pub pairs: usize,
}

/// A player as its cell stores it: position and radius inline, so queries
/// scan contiguous memory instead of looking players up.
#[derive(Debug, Clone, Copy)]
struct Member {
    id: PlayerId,
    pos: [f32; 3],
    radius: f32,
}

#[derive(Debug)]
struct Cell {
    members: Vec<Member>,
    /// When this fragment's players are next due; `None` until its first
    /// tick, so a newly occupied fragment is sent at once.
    next_due: Option<Instant>,
    /// The tick number in which it was last due; comparing with the grid's
    /// counter avoids clearing a flag on every cell every tick.
    due_tick: u64,
}

impl Cell {
    fn new() -> Self {
        Self {
            members: Vec::new(),
            next_due: None,
            due_tick: 0,
        }
    }
}

/// Where a player is stored: which cell, and its index in that cell's
/// vector (kept up to date across `swap_remove`s).
#[derive(Debug, Clone, Copy)]
struct Loc {
    fragment: FragmentId,
    slot: usize,
}

/// The world of one cluster: players' positions, fragments and interest.
/// See the [module docs](self) for the model and its costs.
#[derive(Debug)]
pub struct Fragments {
    config: GridConfig,
    /// Occupied cells only; a cell is dropped when its last player leaves.
    cells: HashMap<FragmentId, Cell, Seeded>,
    players: HashMap<PlayerId, Loc, Seeded>,
    overrides: HashMap<FragmentId, FragmentSettings>,
    /// Count of players per interest radius (keyed by the `f32` bits, which
    /// order like the values for non-negative floats), for the maximum.
    radii: BTreeMap<u32, usize>,
    /// Tick counter; 0 means no tick has started.
    tick: u64,
    due: Vec<FragmentId>,
    /// The first tick's time: every fragment's schedule counts periods from it.
    epoch: Option<Instant>,
}

impl Fragments {
    /// An empty world; refuses an invalid configuration.
    pub fn new(config: GridConfig) -> Result<Self, FragmentError> {
        Self::with_hasher(config, Seeded::new())
    }

    /// An empty world whose tables are keyed by `hasher` (and maps built
    /// from it), for a caller that seeds its own randomness.
    pub(crate) fn with_hasher(config: GridConfig, hasher: Seeded) -> Result<Self, FragmentError> {
        config.validate()?;
        Ok(Self {
            config,
            cells: HashMap::with_hasher(hasher.clone()),
            players: HashMap::with_hasher(hasher.derive()),
            overrides: HashMap::new(),
            radii: BTreeMap::new(),
            tick: 0,
            due: Vec::new(),
            epoch: None,
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &GridConfig {
        &self.config
    }

    /// The fragment a position falls in (clamped to ±2³⁰ per axis).
    pub fn fragment_at(&self, pos: [f32; 3]) -> Result<FragmentId, FragmentError> {
        check_position(pos)?;
        Ok(self.cell_of(pos))
    }

    /// Places or moves a player, returning what changed: `Exited` and
    /// `Entered` when it crossed into another fragment (only `Entered` the
    /// first time), and `OverCap` when its arrival pushed the new fragment
    /// past its cap. A player new to the grid gets the default interest
    /// radius. O(1).
    pub fn set_position(
        &mut self,
        player: PlayerId,
        pos: [f32; 3],
    ) -> Result<FragmentEvents, FragmentError> {
        check_position(pos)?;
        let fragment = self.cell_of(pos);
        let mut events = FragmentEvents::default();
        let radius = match self.players.get(&player).copied() {
            Some(loc) => {
                if loc.fragment == fragment {
                    let slot = self
                        .cells
                        .get_mut(&fragment)
                        .and_then(|c| c.members.get_mut(loc.slot));
                    if let Some(m) = slot {
                        m.pos = pos;
                        return Ok(events);
                    }
                }
                let Some((old, member)) = self.detach(player) else {
                    // The stored location was stale; re-adding is the only
                    // way back to a consistent state, and the radius was
                    // already counted.
                    return Ok(self.attach_new(player, fragment, pos));
                };
                events.0[0] = Some(FragmentEvent::Exited {
                    player,
                    fragment: old,
                });
                member.radius
            }
            None => {
                let r = self.config.default_interest_radius;
                *self.radii.entry(radius_key(r)).or_insert(0) += 1;
                r
            }
        };
        let member = Member {
            id: player,
            pos,
            radius,
        };
        let [_, entered, over] = self.attach(fragment, member).0;
        events.0[1] = entered;
        events.0[2] = over;
        Ok(events)
    }

    /// Removes a player; returns its `Exited` event, or `None` if it had no
    /// position. O(1).
    pub fn remove(&mut self, player: PlayerId) -> Option<FragmentEvent> {
        let (fragment, member) = self.detach(player)?;
        self.forget_radius(member.radius);
        Some(FragmentEvent::Exited { player, fragment })
    }

    /// A player's last reported position.
    pub fn position(&self, player: PlayerId) -> Option<[f32; 3]> {
        self.member(player).map(|m| m.pos)
    }

    /// The fragment a player is in.
    pub fn fragment_of(&self, player: PlayerId) -> Option<FragmentId> {
        self.players.get(&player).map(|l| l.fragment)
    }

    /// A player's interest radius.
    pub fn interest_radius(&self, player: PlayerId) -> Option<f32> {
        self.member(player).map(|m| m.radius)
    }

    /// Sets how far a player sees: it will hear about every player within
    /// `radius` of it. The player must have a position.
    pub fn set_interest_radius(
        &mut self,
        player: PlayerId,
        radius: f32,
    ) -> Result<(), FragmentError> {
        check_radius(radius)?;
        let loc = self
            .players
            .get(&player)
            .copied()
            .ok_or(FragmentError::UnknownPlayer(player))?;
        let member = self
            .cells
            .get_mut(&loc.fragment)
            .and_then(|c| c.members.get_mut(loc.slot))
            .ok_or(FragmentError::UnknownPlayer(player))?;
        let old = std::mem::replace(&mut member.radius, radius);
        self.forget_radius(old);
        *self.radii.entry(radius_key(radius)).or_insert(0) += 1;
        Ok(())
    }

    /// The largest interest radius in use (0 when empty): how far an
    /// audience query has to look.
    pub fn max_interest_radius(&self) -> f32 {
        self.radii
            .last_key_value()
            .map_or(0.0, |(bits, _)| f32::from_bits(*bits))
    }

    /// Whether the player has a position.
    pub fn contains(&self, player: PlayerId) -> bool {
        self.players.contains_key(&player)
    }

    /// Every player and its position, in no particular order.
    pub fn players(&self) -> impl Iterator<Item = (PlayerId, [f32; 3])> + '_ {
        self.cells
            .values()
            .flat_map(|c| c.members.iter().map(|m| (m.id, m.pos)))
    }

    /// The players in a fragment, in no particular order.
    pub fn players_in(&self, fragment: FragmentId) -> impl Iterator<Item = PlayerId> + '_ {
        self.cells
            .get(&fragment)
            .into_iter()
            .flat_map(|c| c.members.iter().map(|m| m.id))
    }

    /// How many players are in a fragment.
    pub fn population(&self, fragment: FragmentId) -> usize {
        self.cells.get(&fragment).map_or(0, |c| c.members.len())
    }

    /// How many players have a position.
    pub fn player_count(&self) -> usize {
        self.players.len()
    }

    /// How many fragments have at least one player (for the status report).
    pub fn fragment_count(&self) -> usize {
        self.cells.len()
    }

    /// The fragments with at least one player, in no particular order.
    pub fn occupied_fragments(&self) -> impl Iterator<Item = FragmentId> + '_ {
        self.cells.keys().copied()
    }

    /// The settings of a fragment: its override, or the grid's default.
    pub fn settings(&self, fragment: FragmentId) -> FragmentSettings {
        self.overrides
            .get(&fragment)
            .copied()
            .unwrap_or(self.config.default_settings)
    }

    /// Overrides one fragment's settings (it need not be occupied). Returns
    /// `OverCap` if the new cap puts the fragment's current players over it
    /// when the old one did not.
    pub fn set_fragment_settings(
        &mut self,
        fragment: FragmentId,
        settings: FragmentSettings,
    ) -> Result<Option<FragmentEvent>, FragmentError> {
        settings.validate()?;
        let old = self.settings(fragment);
        self.overrides.insert(fragment, settings);
        Ok(self.cap_crossing(fragment, old, settings))
    }

    /// Drops a fragment's override, back to the default settings. Returns
    /// `OverCap` if the default cap puts it over when the override did not.
    pub fn clear_fragment_settings(&mut self, fragment: FragmentId) -> Option<FragmentEvent> {
        let old = self.overrides.remove(&fragment)?;
        self.cap_crossing(fragment, old, self.config.default_settings)
    }

    /// The players within `radius` of `pos` (Euclidean, inclusive), in no
    /// particular order: who "send to everyone near X" reaches. A
    /// non-finite position or a negative or NaN radius reaches no one; an
    /// infinite radius reaches everyone.
    pub fn nearby(&self, pos: [f32; 3], radius: f32) -> Vec<PlayerId> {
        let mut out = Vec::new();
        self.for_each_nearby(pos, radius, |p| out.push(p));
        out
    }

    /// [`Self::nearby`] without the allocation.
    pub fn for_each_nearby(&self, pos: [f32; 3], radius: f32, mut f: impl FnMut(PlayerId)) {
        if check_position(pos).is_err() || radius.is_nan() || radius < 0.0 {
            return;
        }
        let dims = self.config.dims;
        let r2 = sq(f64::from(radius));
        let probe = self.point_probe(pos, f64::from(radius));
        self.visit_cells(&probe, |_, cell| {
            for m in &cell.members {
                if dist2(dims, m.pos, pos) <= r2 {
                    f(m.id);
                }
            }
        });
    }

    /// Who must receive updates about `player`: every other player whose
    /// interest area covers it (`distance <= their radius`), in no
    /// particular order. Empty if the player has no position.
    pub fn audience(&self, player: PlayerId) -> Vec<PlayerId> {
        let mut out = Vec::new();
        self.for_each_audience(player, |q| out.push(q));
        out
    }

    /// [`Self::audience`] without the allocation; returns false if the player
    /// has no position.
    pub fn for_each_audience(&self, player: PlayerId, mut f: impl FnMut(PlayerId)) -> bool {
        let Some(pos) = self.position(player) else {
            return false;
        };
        let dims = self.config.dims;
        let probe = self.point_probe(pos, f64::from(self.max_interest_radius()));
        self.visit_cells(&probe, |_, cell| {
            for m in &cell.members {
                if m.id != player && dist2(dims, m.pos, pos) <= sq(f64::from(m.radius)) {
                    f(m.id);
                }
            }
        });
        true
    }

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

    fn member(&self, player: PlayerId) -> Option<&Member> {
        let loc = self.players.get(&player)?;
        self.cells.get(&loc.fragment)?.members.get(loc.slot)
    }

    fn cell_of(&self, pos: [f32; 3]) -> FragmentId {
        let cs = f64::from(self.config.cell_size);
        let z = match self.config.dims {
            Dims::Two => 0,
            Dims::Three => cell_index(f64::from(pos[2]), cs),
        };
        FragmentId {
            x: cell_index(f64::from(pos[0]), cs),
            y: cell_index(f64::from(pos[1]), cs),
            z,
        }
    }

    /// Takes a player out of its cell and the index, fixing the index of the
    /// player `swap_remove` moved into its slot and dropping the cell if it
    /// is now empty. Leaves the radius count alone (a move keeps it).
    fn detach(&mut self, player: PlayerId) -> Option<(FragmentId, Member)> {
        let loc = self.players.remove(&player)?;
        let cell = self.cells.get_mut(&loc.fragment)?;
        if loc.slot >= cell.members.len() {
            return None;
        }
        let member = cell.members.swap_remove(loc.slot);
        if let Some(l) = cell
            .members
            .get(loc.slot)
            .and_then(|moved| self.players.get_mut(&moved.id))
        {
            l.slot = loc.slot;
        }
        if cell.members.is_empty() {
            self.cells.remove(&loc.fragment);
        }
        Some((loc.fragment, member))
    }

    /// Puts a player into a cell: `Entered`, and `OverCap` on a crossing.
    fn attach(&mut self, fragment: FragmentId, member: Member) -> FragmentEvents {
        let settings = self.settings(fragment);
        let cell = self.cells.entry(fragment).or_insert_with(Cell::new);
        let before = cell.members.len();
        cell.members.push(member);
        self.players.insert(
            member.id,
            Loc {
                fragment,
                slot: before,
            },
        );
        let entered = Some(FragmentEvent::Entered {
            player: member.id,
            fragment,
        });
        let over = (!settings.over(before) && settings.over(before + 1)).then_some(
            FragmentEvent::OverCap {
                fragment,
                players: before + 1,
                cap: settings.player_cap,
            },
        );
        FragmentEvents([None, entered, over])
    }

    /// Re-adds a player whose stored location was lost. Its old radius is
    /// gone with it, so it gets the default, counted anew: a stale count
    /// only widens audience queries, a missing one would cut them short.
    fn attach_new(
        &mut self,
        player: PlayerId,
        fragment: FragmentId,
        pos: [f32; 3],
    ) -> FragmentEvents {
        let radius = self.config.default_interest_radius;
        *self.radii.entry(radius_key(radius)).or_insert(0) += 1;
        let member = Member {
            id: player,
            pos,
            radius,
        };
        self.attach(fragment, member)
    }

    fn forget_radius(&mut self, radius: f32) {
        let key = radius_key(radius);
        if let Some(n) = self.radii.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.radii.remove(&key);
            }
        }
    }

    fn cap_crossing(
        &self,
        fragment: FragmentId,
        old: FragmentSettings,
        new: FragmentSettings,
    ) -> Option<FragmentEvent> {
        let players = self.population(fragment);
        (!old.over(players) && new.over(players)).then_some(FragmentEvent::OverCap {
            fragment,
            players,
            cap: new.player_cap,
        })
    }

    /// Calls `f` on every occupied cell that may hold a player within the
    /// probe's reach. When the probe's box of cells holds more cells than
    /// are occupied (a huge radius, a sparse world) it walks the occupied
    /// cells instead, so a query never costs more than the world.
    fn visit_cells<'a>(&'a self, probe: &Probe, mut f: impl FnMut(FragmentId, &'a Cell)) {
        if probe.span > self.cells.len() as f64 {
            for (id, cell) in &self.cells {
                if probe.reaches(id) {
                    f(*id, cell);
                }
            }
            return;
        }
        let [lo, hi] = [probe.cells_lo, probe.cells_hi];
        for x in lo[0]..=hi[0] {
            for y in lo[1]..=hi[1] {
                for z in lo[2]..=hi[2] {
                    let id = FragmentId { x, y, z };
                    if !probe.reaches(&id) {
                        continue;
                    }
                    if let Some(cell) = self.cells.get(&id) {
                        f(id, cell);
                    }
                }
            }
        }
    }

    /// A probe around one point.
    fn point_probe(&self, pos: [f32; 3], reach: f64) -> Probe {
        let p = pos.map(f64::from);
        Probe::new(&self.config, p, p, reach)
    }
}

/// A query region: a box of points (a single point for `nearby`) and how
/// far from it to look. Cells are tested against it with a small margin,
/// because cell membership and distances are both computed with rounding
/// and a player exactly on a query's edge must never sit in a cell the
/// query skipped.
#[derive(Debug)]
struct Probe {
    axes: usize,
    cs: f64,
    lo: [f64; 3],
    hi: [f64; 3],
    margin: f64,
    /// Reach plus margin.
    wide: f64,
    cells_lo: [i32; 3],
    cells_hi: [i32; 3],
    /// How many cells the index box holds (as `f64`: it can exceed any
    /// integer type for a huge reach).
    span: f64,
}

impl Probe {
    fn new(config: &GridConfig, lo: [f64; 3], hi: [f64; 3], reach: f64) -> Self {
        let axes = config.dims.axes();
        let cs = f64::from(config.cell_size);
        let extent: f64 = (0..axes).map(|a| lo[a].abs().max(hi[a].abs())).sum();
        let margin = MARGIN * (extent + reach + cs);
        let wide = reach + margin;
        let mut cells_lo = [0i32; 3];
        let mut cells_hi = [0i32; 3];
        let mut span = 1.0f64;
        for a in 0..axes {
            cells_lo[a] = cell_index(lo[a] - wide, cs);
            cells_hi[a] = cell_index(hi[a] + wide, cs);
            span *= f64::from(cells_hi[a]) - f64::from(cells_lo[a]) + 1.0;
        }
        Self {
            axes,
            cs,
            lo,
            hi,
            margin,
            wide,
            cells_lo,
            cells_hi,
            span,
        }
    }

    /// Whether cell `id` may hold a player within reach of the box.
    fn reaches(&self, id: &FragmentId) -> bool {
        (0..self.axes).all(|a| (self.cells_lo[a]..=self.cells_hi[a]).contains(&id.axis(a)))
            && self.gap2(id, &self.lo, &self.hi) <= sq(self.wide)
    }

    /// Squared distance between the box `[lo, hi]` and cell `id`'s extent
    /// widened by the margin. The outermost (clamped) cells stretch to
    /// infinity.
    fn gap2(&self, id: &FragmentId, lo: &[f64; 3], hi: &[f64; 3]) -> f64 {
        let mut d2 = 0.0;
        for a in 0..self.axes {
            let c = id.axis(a);
            let low = if c <= -CELL_LIMIT {
                f64::NEG_INFINITY
            } else {
                f64::from(c) * self.cs - self.margin
            };
            let high = if c >= CELL_LIMIT {
                f64::INFINITY
            } else {
                (f64::from(c) + 1.0) * self.cs + self.margin
            };
            let d = if hi[a] < low {
                low - hi[a]
            } else if lo[a] > high {
                lo[a] - high
            } else {
                0.0
            };
            d2 += d * d;
        }
        d2
    }
}

/// Seeded multiply-fold hashing for the grid's integer keys. std's SipHash
/// was a fifth of a query's time; this is a few multiplications. The key is
/// random per map, so positions chosen by a client cannot be aimed at one
/// bucket without knowing it.
#[derive(Clone)]
pub(crate) struct Seeded {
    key: u64,
    init: u64,
}

impl Seeded {
    /// Keys from the process's random hash state.
    pub(crate) fn new() -> Self {
        let rs = RandomState::new();
        Self {
            key: rs.hash_one(0x5EED_u64) | 1,
            init: rs.hash_one(0xF01D_u64),
        }
    }

    /// Keys drawn from `rng`.
    pub(crate) fn from_rng(rng: &mut impl rand::RngCore) -> Self {
        Self {
            key: rng.next_u64() | 1,
            init: rng.next_u64(),
        }
    }

    /// Other keys, drawn from these (for a second table of one owner).
    pub(crate) fn derive(&self) -> Self {
        Self {
            key: fold_mul(self.key, 0x9E37_79B9_7F4A_7C15) | 1,
            init: fold_mul(self.init ^ 0xD1B5_4A32_D192_ED03, self.key),
        }
    }
}

impl std::fmt::Debug for Seeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.write_str("Seeded")
    }
}

impl BuildHasher for Seeded {
    type Hasher = Fold;

    fn build_hasher(&self) -> Fold {
        Fold {
            acc: self.init,
            key: self.key,
        }
    }
}

/// The hasher [`Seeded`] builds.
pub(crate) struct Fold {
    acc: u64,
    key: u64,
}

/// The 128-bit product folded to 64 bits: every input bit reaches both the
/// low bits (bucket index) and the high bits (hashbrown's tag).
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for Fold {
    fn write(&mut self, bytes: &[u8]) {
        // Only reached by keys other than integers; correct, not fast.
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.acc = fold_mul(self.acc ^ v, self.key);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_i32(&mut self, v: i32) {
        self.write_u64(u64::from(v as u32));
    }

    fn finish(&self) -> u64 {
        fold_mul(self.acc, 0x9E37_79B9_7F4A_7C15)
    }
}

fn check_position(pos: [f32; 3]) -> Result<(), FragmentError> {
    if pos.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(FragmentError::InvalidPosition(pos))
    }
}

fn check_radius(r: f32) -> Result<(), FragmentError> {
    if r.is_finite() && r >= 0.0 {
        Ok(())
    } else {
        Err(FragmentError::InvalidRadius(r))
    }
}

/// `-0.0` and `0.0` must share a key; adding `0.0` folds the former into
/// the latter.
fn radius_key(r: f32) -> u32 {
    (r + 0.0).to_bits()
}

/// `floor(v / cell_size)`, clamped; `as` saturates and maps NaN to 0, so
/// this never panics whatever it is given.
fn cell_index(v: f64, cs: f64) -> i32 {
    (v / cs)
        .floor()
        .clamp(f64::from(-CELL_LIMIT), f64::from(CELL_LIMIT)) as i32
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

fn sq(v: f64) -> f64 {
    v * v
}

/// Squared distance in `f64`; in 2D z is ignored.
fn dist2(dims: Dims, a: [f32; 3], b: [f32; 3]) -> f64 {
    let d = |i: usize| f64::from(a[i]) - f64::from(b[i]);
    let flat = sq(d(0)) + sq(d(1));
    match dims {
        Dims::Two => flat,
        Dims::Three => flat + sq(d(2)),
    }
}
