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

mod events;
mod hash;
mod query;
mod schedule;
mod settings;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

pub use events::{FragmentEvent, FragmentEvents, TickStats};
pub(crate) use hash::Seeded;
use query::cell_index;
pub use settings::{Dims, FragmentError, FragmentId, FragmentSettings, GridConfig};

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
}

impl Fragments {
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
