//! Who is near whom: the players within a radius of a point, the audience
//! of a player, and the cells a query visits.

use super::{CELL_LIMIT, Cell, Dims, FragmentId, Fragments, GridConfig, MARGIN, check_position};
use crate::ids::PlayerId;

impl Fragments {
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

    /// Calls `f` on every occupied cell that may hold a player within the
    /// probe's reach. When the probe's box of cells holds more cells than
    /// are occupied (a huge radius, a sparse world) it walks the occupied
    /// cells instead, so a query never costs more than the world.
    pub(super) fn visit_cells<'a>(
        &'a self,
        probe: &Probe,
        mut f: impl FnMut(FragmentId, &'a Cell),
    ) {
        if probe.span > self.cells.len() as f64 {
            for (id, cell) in &self.cells {
                if probe.reaches(id) {
                    f(*id, cell);
                }
            }
            return;
        }
        // Every cell of the box, skipping those out of reach (the box's
        // corners): each axis's share of the distance is found once per
        // row, and summed in the order `Probe::gap2` sums it.
        let [lo, hi] = [probe.cells_lo, probe.cells_hi];
        let reach2 = sq(probe.wide);
        let third = probe.axes > 2;
        for x in lo[0]..hi[0] + 1 {
            let dx = probe.axis_gap2(0, x, &probe.lo, &probe.hi);
            for y in lo[1]..hi[1] + 1 {
                let dxy = dx + probe.axis_gap2(1, y, &probe.lo, &probe.hi);
                for z in lo[2]..hi[2] + 1 {
                    let d2 = if third {
                        dxy + probe.axis_gap2(2, z, &probe.lo, &probe.hi)
                    } else {
                        dxy
                    };
                    if d2 <= reach2 {
                        let id = FragmentId { x, y, z };
                        if let Some(cell) = self.cells.get(&id) {
                            f(id, cell);
                        }
                    }
                }
            }
        }
    }

    /// A probe around one point.
    pub(super) fn point_probe(&self, pos: [f32; 3], reach: f64) -> Probe {
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
pub(super) struct Probe {
    axes: usize,
    cs: f64,
    lo: [f64; 3],
    hi: [f64; 3],
    pub(super) margin: f64,
    /// Reach plus margin.
    wide: f64,
    cells_lo: [i32; 3],
    cells_hi: [i32; 3],
    /// How many cells the index box holds (as `f64`: it can exceed any
    /// integer type for a huge reach).
    span: f64,
}

impl Probe {
    pub(super) fn new(config: &GridConfig, lo: [f64; 3], hi: [f64; 3], reach: f64) -> Self {
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
    pub(super) fn reaches(&self, id: &FragmentId) -> bool {
        (0..self.axes).all(|a| (self.cells_lo[a]..=self.cells_hi[a]).contains(&id.axis(a)))
            && self.gap2(id, &self.lo, &self.hi) <= sq(self.wide)
    }

    /// Squared distance between the box `[lo, hi]` and cell `id`'s extent
    /// widened by the margin. The outermost (clamped) cells stretch to
    /// infinity.
    pub(super) fn gap2(&self, id: &FragmentId, lo: &[f64; 3], hi: &[f64; 3]) -> f64 {
        let mut d2 = 0.0;
        for a in 0..self.axes {
            d2 += self.axis_gap2(a, id.axis(a), lo, hi);
        }
        d2
    }

    /// Axis `a`'s share of [`Self::gap2`] for a cell whose index on that
    /// axis is `c`: the squared gap between `[lo, hi]` and the cell's
    /// widened extent along it.
    fn axis_gap2(&self, a: usize, c: i32, lo: &[f64; 3], hi: &[f64; 3]) -> f64 {
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
        d * d
    }
}

/// `floor(v / cell_size)`, clamped; `as` saturates and maps NaN to 0, so
/// this never panics whatever it is given.
pub(super) fn cell_index(v: f64, cs: f64) -> i32 {
    (v / cs)
        .floor()
        .clamp(f64::from(-CELL_LIMIT), f64::from(CELL_LIMIT)) as i32
}

pub(super) fn sq(v: f64) -> f64 {
    v * v
}

/// Squared distance in `f64`; in 2D z is ignored.
pub(super) fn dist2(dims: Dims, a: [f32; 3], b: [f32; 3]) -> f64 {
    let d = |i: usize| f64::from(a[i]) - f64::from(b[i]);
    let flat = sq(d(0)) + sq(d(1));
    match dims {
        Dims::Two => flat,
        Dims::Three => flat + sq(d(2)),
    }
}
