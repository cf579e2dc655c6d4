//! How a world is cut: the grid's and each fragment's settings, fragment
//! ids, and why a setting, position or radius is refused.

use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use super::check_radius;
use crate::ids::PlayerId;

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
    pub(super) fn axes(self) -> usize {
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
    pub(super) fn over(&self, count: usize) -> bool {
        self.player_cap != 0 && count > self.player_cap as usize
    }
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
    pub(super) fn axis(&self, a: usize) -> i32 {
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
