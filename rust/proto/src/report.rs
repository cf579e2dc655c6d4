//! A cluster's dashboard report (`ClusterToMaster::Report`): the occupied
//! fragments of its world and its latest disconnect reasons, so the master's
//! dashboard shows them for clusters in other processes.
//!
//! A cluster key holder may be hostile, so the report is bounded and checked
//! when it is decoded: at most [`REPORT_CELLS_MAX`] fragments and
//! [`REPORT_DISCONNECTS_MAX`] disconnects ([`REPORT_BYTES_MAX`] bytes in
//! all), every fragment occupied and listed once, disconnect ages at most
//! [`REPORT_AGE_MAX_MS`]. docs/protocol.md lists it byte by byte.

use std::collections::HashSet;

use crate::error::{DecodeError, EncodeError};
use crate::reason::DisconnectReason;
use crate::wire::{Reader, Writer};

/// Most fragments one report lists (the most populated).
pub const REPORT_CELLS_MAX: usize = 1_024;
/// Most disconnects one report lists (the latest).
pub const REPORT_DISCONNECTS_MAX: usize = 32;
/// Oldest disconnect a report may list: one hour, in ms.
pub const REPORT_AGE_MAX_MS: u32 = 3_600_000;
/// Largest report body (after the type byte): counts, 16 bytes a fragment,
/// 5 bytes a disconnect.
pub const REPORT_BYTES_MAX: usize = 2 + 16 * REPORT_CELLS_MAX + 1 + 5 * REPORT_DISCONNECTS_MAX;

/// One occupied fragment and its players.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportCell {
    /// The fragment's grid coordinates (z is 0 on a 2D grid).
    pub coords: [i32; 3],
    /// Players in it, at least 1.
    pub players: u32,
}

/// One recent disconnect: how long ago and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentDisconnect {
    /// Milliseconds before the report was sent, at most [`REPORT_AGE_MAX_MS`].
    pub age_ms: u32,
    /// Why the player left.
    pub reason: DisconnectReason,
}

/// What a cluster shows on the master's dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterReport {
    /// Occupied fragments, at most [`REPORT_CELLS_MAX`], each once.
    pub cells: Vec<ReportCell>,
    /// Latest disconnects, newest first, at most [`REPORT_DISCONNECTS_MAX`].
    pub disconnects: Vec<RecentDisconnect>,
}

impl ClusterReport {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        check_count(self.cells.len(), REPORT_CELLS_MAX)?;
        check_count(self.disconnects.len(), REPORT_DISCONNECTS_MAX)?;
        out.put_u16(u16::try_from(self.cells.len()).unwrap_or(u16::MAX));
        for c in &self.cells {
            for v in c.coords {
                out.put_slice(&v.to_le_bytes());
            }
            out.put_u32(c.players);
        }
        out.put_u8(u8::try_from(self.disconnects.len()).unwrap_or(u8::MAX));
        for d in &self.disconnects {
            out.put_u32(d.age_ms);
            out.put_u8(d.reason.code());
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = within(usize::from(r.u16()?), REPORT_CELLS_MAX)?;
        let mut cells = Vec::with_capacity(n);
        let mut seen = HashSet::with_capacity(n);
        for _ in 0..n {
            let mut coords = [0i32; 3];
            for v in &mut coords {
                *v = i32::from_le_bytes(r.array::<4>()?);
            }
            let players = r.u32()?;
            if players == 0 {
                return Err(DecodeError::Invalid("a report lists an empty fragment"));
            }
            if !seen.insert(coords) {
                return Err(DecodeError::Invalid("a report lists a fragment twice"));
            }
            cells.push(ReportCell { coords, players });
        }
        let n = within(usize::from(r.u8()?), REPORT_DISCONNECTS_MAX)?;
        let mut disconnects = Vec::with_capacity(n);
        for _ in 0..n {
            let age_ms = r.u32()?;
            if age_ms > REPORT_AGE_MAX_MS {
                return Err(DecodeError::Invalid(
                    "a report lists a disconnect over an hour old",
                ));
            }
            let reason = DisconnectReason::from_code(r.u8()?);
            disconnects.push(RecentDisconnect { age_ms, reason });
        }
        Ok(Self { cells, disconnects })
    }
}

/// `n` if it is at most `max`.
fn within(n: usize, max: usize) -> Result<usize, DecodeError> {
    if n > max {
        return Err(DecodeError::TooLong { len: n, max });
    }
    Ok(n)
}

fn check_count(len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        return Err(EncodeError::TooLong { len, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::message::{ClusterToMaster, Message};

    fn full() -> ClusterReport {
        ClusterReport {
            cells: (0..REPORT_CELLS_MAX as i32)
                .map(|i| ReportCell {
                    coords: [i, -i, i32::MIN],
                    players: 1 + i as u32,
                })
                .collect(),
            disconnects: (0..REPORT_DISCONNECTS_MAX as u32)
                .map(|i| RecentDisconnect {
                    age_ms: i * 1_000,
                    reason: DisconnectReason::Timeout,
                })
                .collect(),
        }
    }

    #[test]
    fn a_full_report_round_trips_within_its_byte_limit() {
        let m = ClusterToMaster::Report(full());
        let bytes = m.to_bytes().unwrap();
        assert_eq!(bytes.len(), 1 + REPORT_BYTES_MAX);
        assert_eq!(ClusterToMaster::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn reports_over_their_limits_or_inconsistent_are_refused() {
        let mut r = full();
        r.cells.push(ReportCell {
            coords: [9_999, 0, 0],
            players: 1,
        });
        assert!(ClusterToMaster::Report(r).to_bytes().is_err());
        // Made by hand past the encoder's checks: too many cells, an empty
        // or repeated fragment, an age over the limit.
        let body = |cells: &[([i32; 3], u32)], n: u16, ages: &[u32]| {
            let mut b = vec![crate::message::tag::REPORT];
            b.extend_from_slice(&n.to_le_bytes());
            for (c, p) in cells {
                for v in c {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                b.extend_from_slice(&p.to_le_bytes());
            }
            b.push(ages.len() as u8);
            for a in ages {
                b.extend_from_slice(&a.to_le_bytes());
                b.push(DisconnectReason::Kicked.code());
            }
            b
        };
        let ok = body(&[([1, 2, 0], 3)], 1, &[REPORT_AGE_MAX_MS]);
        assert!(ClusterToMaster::decode(&ok).is_ok());
        for bad in [
            body(&[], REPORT_CELLS_MAX as u16 + 1, &[]),
            body(&[([1, 2, 0], 0)], 1, &[]),
            body(&[([1, 2, 0], 1), ([1, 2, 0], 2)], 2, &[]),
            body(&[], 0, &[REPORT_AGE_MAX_MS + 1]),
            body(&[], 0, &[0; REPORT_DISCONNECTS_MAX + 1]),
            body(&[([1, 2, 0], 1)], 2, &[]),
        ] {
            assert!(ClusterToMaster::decode(&bad).is_err(), "{bad:?}");
        }
    }
}
