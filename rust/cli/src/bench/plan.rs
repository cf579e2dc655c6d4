//! The plan every bench process works from (validated arguments), and the
//! clock they share.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use sustenet_proto::PublicKey;
use tokio::time::Instant;

use crate::up::ClientFile;

use super::{BenchArgs, ECHO_HEADER};

/// The validated settings every process works from.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) master: String,
    pub(super) key: PublicKey,
    pub(super) key_b64: String,
    pub(super) clients: u32,
    pub(super) duration: Duration,
    pub(super) ramp: Duration,
    pub(super) hz: f64,
    pub(super) reliable_per_sec: f64,
    pub(super) unreliable_per_sec: f64,
    pub(super) size: usize,
    pub(super) secret: String,
    pub(super) user_prefix: String,
    pub(super) world: f32,
    pub(super) speed: f32,
    pub(super) interest_radius: f32,
    pub(super) full_clients: bool,
    pub(super) clients_per_socket: usize,
    pub(super) timeout: Duration,
    pub(super) joins_in_flight: u32,
}

pub(super) fn rate(name: &str, v: f64) -> anyhow::Result<f64> {
    if !v.is_finite() || !(0.0..=1000.0).contains(&v) {
        bail!("--{name} must be between 0 and 1000 (got {v})");
    }
    Ok(v)
}

/// `None` for 0, and for rates so low that the period is beyond what a
/// `Duration` holds: either way the stream never sends.
pub(super) fn period(per_sec: f64) -> Option<Duration> {
    (per_sec > 0.0)
        .then(|| Duration::try_from_secs_f64(1.0 / per_sec).ok())
        .flatten()
}

impl Plan {
    pub(super) fn new(args: &BenchArgs) -> anyhow::Result<Plan> {
        let (master, key_b64) = match (&args.master, &args.key) {
            (Some(m), Some(k)) => (m.clone(), k.clone()),
            (m, k) => {
                let f = ClientFile::load(&args.dir)?;
                (
                    m.clone().unwrap_or(f.master),
                    k.clone().unwrap_or(f.public_key),
                )
            }
        };
        let key = PublicKey::from_base64(&key_b64)
            .with_context(|| format!("bad master public key '{key_b64}'"))?;
        if args.clients == 0 {
            bail!("--clients must be at least 1");
        }
        if !args.duration.is_finite() || args.duration <= 0.0 || args.duration > 86_400.0 {
            bail!(
                "--duration must be more than 0 and at most 86400 seconds (got {})",
                args.duration
            );
        }
        let ramp = args
            .ramp
            .unwrap_or_else(|| (f64::from(args.clients) / 250.0).clamp(2.0, 30.0));
        if !ramp.is_finite() || !(0.0..=3600.0).contains(&ramp) {
            bail!("--ramp must be between 0 and 3600 seconds (got {ramp})");
        }
        if !args.world.is_finite() || args.world <= 0.0 {
            bail!("--world must be a positive size (got {})", args.world);
        }
        if !args.speed.is_finite() || args.speed < 0.0 {
            bail!("--speed must be 0 or more (got {})", args.speed);
        }
        if !args.interest_radius.is_finite() || args.interest_radius <= 0.0 {
            bail!(
                "--interest-radius must be a positive distance (got {})",
                args.interest_radius
            );
        }
        Ok(Plan {
            master,
            key,
            key_b64,
            clients: args.clients,
            duration: Duration::from_secs_f64(args.duration),
            ramp: Duration::from_secs_f64(ramp),
            hz: rate("hz", args.hz)?,
            reliable_per_sec: rate("reliable-per-sec", args.reliable_per_sec)?,
            unreliable_per_sec: rate("unreliable-per-sec", args.unreliable_per_sec)?,
            size: args.size.max(ECHO_HEADER),
            secret: args.secret.clone(),
            user_prefix: args.user_prefix.clone(),
            world: args.world,
            speed: args.speed,
            interest_radius: args.interest_radius,
            full_clients: args.full_clients,
            clients_per_socket: args.clients_per_socket.max(1),
            timeout: Duration::from_secs(args.timeout.max(1)),
            joins_in_flight: args.joins_in_flight.max(1),
        })
    }

    /// When client `i` starts, in µs after the epoch.
    pub(super) fn start_us(&self, i: u32) -> u64 {
        let ramp = self.ramp.as_micros();
        let at = ramp * u128::from(i) / u128::from(self.clients.max(1));
        u64::try_from(at).unwrap_or(u64::MAX)
    }

    /// When every client stops sending, in µs after the epoch.
    pub(super) fn end_us(&self) -> u64 {
        u64::try_from((self.ramp + self.duration).as_micros()).unwrap_or(u64::MAX)
    }

    /// The sends state delivery is measured over, in µs after the epoch:
    /// full load, from a second after the ramp (joins that lag a little)
    /// to the end.
    pub(super) fn state_window_us(&self) -> std::ops::Range<u64> {
        let settle = Duration::from_secs(1).min(self.duration / 2);
        let start = u64::try_from((self.ramp + settle).as_micros()).unwrap_or(u64::MAX);
        start..self.end_us()
    }

    pub(super) fn target_out_per_sec(&self) -> f64 {
        f64::from(self.clients) * (self.hz + self.reliable_per_sec + self.unreliable_per_sec)
    }
}

// ---------------------------------------------------------------- clock

pub(super) fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Microseconds since the shared epoch, read from a monotonic clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    pub(super) base: Instant,
    /// µs since the epoch at `base` (negative before the epoch).
    pub(super) base_us: i64,
}

impl Clock {
    pub(super) fn new(epoch_us: u64) -> Clock {
        let now = i64::try_from(unix_us()).unwrap_or(i64::MAX);
        let epoch = i64::try_from(epoch_us).unwrap_or(i64::MAX);
        Clock {
            base: Instant::now(),
            base_us: now.saturating_sub(epoch),
        }
    }

    pub(super) fn now_us(&self) -> u64 {
        let e = i64::try_from(self.base.elapsed().as_micros()).unwrap_or(i64::MAX);
        u64::try_from(self.base_us.saturating_add(e).max(0)).unwrap_or(0)
    }

    /// The instant at which `now_us()` reads `us`.
    pub(super) fn at(&self, us: u64) -> Instant {
        let delta = i64::try_from(us)
            .unwrap_or(i64::MAX)
            .saturating_sub(self.base_us);
        if delta >= 0 {
            self.base + Duration::from_micros(delta.unsigned_abs())
        } else {
            self.base
                .checked_sub(Duration::from_micros(delta.unsigned_abs()))
                .unwrap_or(self.base)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn clock_is_shared_through_the_epoch() {
        let epoch = unix_us();
        let c = Clock::new(epoch);
        assert!(c.now_us() < 1_000_000);
        let at = c.at(2_000_000);
        assert!(at > Instant::now() + Duration::from_millis(1500));
    }
}
