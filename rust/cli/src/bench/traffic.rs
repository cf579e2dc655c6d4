//! What a simulated client sends: its walk, the payloads, the send schedule.

use std::time::Duration;

use tokio::time::Instant;

use super::{ECHO_HEADER, POS_LEN};

/// Each client draws its send phases from a generator seeded by its index.
pub(super) type Rng = rand::rngs::StdRng;

/// Uniform in [0, 1).
pub(super) fn unit(rng: &mut Rng) -> f64 {
    rand::Rng::random(rng)
}

/// A position update: where the client is (x, y, z, `f32` LE), a sequence
/// number (`u32` LE), the send time (`u64` LE, µs since the bench epoch)
/// and the client's index (`u32` LE): [`POS_LEN`] bytes. The `World`
/// plugin passes it on whole in its `STATE` records, so whoever receives it
/// can tell who sent it, when, and whether it was meant to reach them.
pub(super) fn pos_payload(at: [f32; 3], seq: u32, sent_us: u64, index: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(POS_LEN);
    for c in at {
        v.extend_from_slice(&c.to_le_bytes());
    }
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&sent_us.to_le_bytes());
    v.extend_from_slice(&index.to_le_bytes());
    v
}

/// A position update as [`pos_payload`] wrote it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PosUpdate {
    pub(super) at: [f32; 3],
    pub(super) seq: u32,
    pub(super) sent_us: u64,
    pub(super) index: u32,
}

impl PosUpdate {
    /// Reads a position payload; `None` unless it is exactly one.
    pub(super) fn parse(p: &[u8]) -> Option<PosUpdate> {
        if p.len() != POS_LEN {
            return None;
        }
        let f = |at: usize| read_u32(p, at).map(f32::from_bits);
        Some(PosUpdate {
            at: [f(0)?, f(4)?, f(8)?],
            seq: read_u32(p, 12)?,
            sent_us: read_u64(p, 16)?,
            index: read_u32(p, 24)?,
        })
    }
}

pub(super) fn echo_payload(sent_us: u64, seq: u32, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(&sent_us.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.resize(size.max(ECHO_HEADER), 0xA5);
    v
}

pub(super) fn read_u64(p: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = p.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

pub(super) fn read_u32(p: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = p.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// One stream of sends at a fixed rate. A client's streams share one
/// timer (see `play`): a timer per stream, each polled on every wake-up,
/// was a large part of the generator's own CPU.
#[derive(Debug)]
pub(super) struct Every {
    /// `None` once the schedule runs past what an `Instant` holds.
    pub(super) next: Option<Instant>,
    pub(super) period: Duration,
}

impl Every {
    pub(super) fn new(first: Instant, period: Duration) -> Every {
        Every {
            next: Some(first),
            period,
        }
    }

    /// Whether a send is due at `now`; if so, moves on to the next one. A
    /// generator that fell behind skips the sends it missed (and sends less,
    /// which the summary shows) rather than bursting to catch up.
    pub(super) fn due(&mut self, now: Instant) -> bool {
        let Some(next) = self.next.filter(|t| *t <= now) else {
            return false;
        };
        let p = self.period.as_nanos().max(1);
        let steps = now.duration_since(next).as_nanos() / p + 1;
        self.next = u64::try_from(steps * p)
            .ok()
            .and_then(|ns| next.checked_add(Duration::from_nanos(ns)));
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::bench::plan::period;
    use std::time::Duration;

    #[test]
    fn every_keeps_its_rate_and_skips_what_it_missed() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut e = Every::new(t0 + ms(10), ms(50));
        assert!(!e.due(t0));
        assert!(e.due(t0 + ms(10)));
        assert!(!e.due(t0 + ms(59)));
        // Late by a bit: sends once and keeps the original phase.
        assert!(e.due(t0 + ms(65)));
        assert_eq!(e.next, Some(t0 + ms(110)));
        // Late by several periods: one send, the missed ones are skipped.
        assert!(e.due(t0 + ms(260)));
        assert!(!e.due(t0 + ms(260)));
        assert_eq!(e.next, Some(t0 + ms(310)));
        assert_eq!(period(0.0), None);
        assert_eq!(period(1e-300), None);
        assert_eq!(period(20.0), Some(ms(50)));
    }

    #[test]
    fn payloads_parse() {
        let p = pos_payload([1.5, -2.0, 3.25], 42, 123_456_789, 7);
        assert_eq!(p.len(), POS_LEN);
        assert_eq!(read_u32(&p, 12), Some(42));
        let u = PosUpdate::parse(&p).unwrap();
        assert_eq!(
            u,
            PosUpdate {
                at: [1.5, -2.0, 3.25],
                seq: 42,
                sent_us: 123_456_789,
                index: 7
            }
        );
        assert_eq!(PosUpdate::parse(&p[..POS_LEN - 1]), None);
        let e = echo_payload(123_456, 9, 64);
        assert_eq!(e.len(), 64);
        assert_eq!(read_u64(&e, 0), Some(123_456));
        assert_eq!(read_u32(&e, 8), Some(9));
    }
}
