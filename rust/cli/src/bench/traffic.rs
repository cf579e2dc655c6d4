//! What a simulated client sends: its walk, the payloads, the send schedule.

use std::time::Duration;

use tokio::time::Instant;

use super::{ECHO_HEADER, POS_LEN};

/// Each client walks its own repeatable path: a generator seeded by its index.
pub(super) type Rng = rand::rngs::StdRng;

/// Uniform in [0, 1).
pub(super) fn unit(rng: &mut Rng) -> f64 {
    rand::Rng::random(rng)
}

/// A random walk in a square world of side `world` (x, y), with z between
/// 0 and a tenth of it: turns slowly, bounces off the edges.
#[derive(Debug)]
pub(super) struct Walker {
    pub(super) p: [f32; 3],
    pub(super) heading: f32,
    pub(super) climb: f32,
    pub(super) half: f32,
    pub(super) speed: f32,
}

impl Walker {
    pub(super) fn new(rng: &mut Rng, world: f32, speed: f32) -> Walker {
        let half = world / 2.0;
        Walker {
            p: [
                (unit(rng) as f32 * 2.0 - 1.0) * half,
                (unit(rng) as f32 * 2.0 - 1.0) * half,
                unit(rng) as f32 * world / 10.0,
            ],
            heading: unit(rng) as f32 * std::f32::consts::TAU,
            climb: 0.0,
            half,
            speed,
        }
    }

    pub(super) fn step(&mut self, rng: &mut Rng, dt: f32) {
        self.heading += (unit(rng) as f32 - 0.5) * 2.0 * dt;
        self.climb = (self.climb + (unit(rng) as f32 - 0.5) * dt).clamp(-0.2, 0.2);
        let h = self.half;
        self.p[0] += self.heading.cos() * self.speed * dt;
        self.p[1] += self.heading.sin() * self.speed * dt;
        self.p[2] = (self.p[2] + self.climb * self.speed * dt).clamp(0.0, h / 5.0);
        if self.p[0] > h || self.p[0] < -h {
            self.p[0] = self.p[0].clamp(-h, h);
            self.heading = std::f32::consts::PI - self.heading;
        }
        if self.p[1] > h || self.p[1] < -h {
            self.p[1] = self.p[1].clamp(-h, h);
            self.heading = -self.heading;
        }
    }

    pub(super) fn payload(&self, seq: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity(POS_LEN);
        for c in self.p {
            v.extend_from_slice(&c.to_le_bytes());
        }
        v.extend_from_slice(&seq.to_le_bytes());
        v
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
    fn walker_stays_in_the_world_and_payloads_parse() {
        let mut rng = <Rng as rand::SeedableRng>::seed_from_u64(7);
        let mut w = Walker::new(&mut rng, 100.0, 50.0);
        for _ in 0..10_000 {
            w.step(&mut rng, 0.05);
            assert!(w.p[0].abs() <= 50.0 && w.p[1].abs() <= 50.0, "{:?}", w.p);
        }
        let p = w.payload(42);
        assert_eq!(p.len(), POS_LEN);
        assert_eq!(read_u32(&p, 12), Some(42));
        let e = echo_payload(123_456, 9, 64);
        assert_eq!(e.len(), 64);
        assert_eq!(read_u64(&e, 0), Some(123_456));
        assert_eq!(read_u32(&e, 8), Some(9));
    }
}
