//! The reconnect policy: after a dropped cluster connection, when to try
//! again (backoff with jitter) and when to give up (the window, or nothing
//! listening for a while). Pure: the clock (`now`) and the jitter's random
//! source are passed in, so the policy is tested without sockets or sleeps.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::resume::{Attempt, Resume};

/// How long nothing may listen at the cluster's address before the client
/// concludes the cluster is gone (a proxy or NAT in front of it may refuse
/// for a moment while it restarts).
pub(crate) const REFUSED_FOR: Duration = Duration::from_secs(2);
/// The wait after the first failed attempt, before jitter; it doubles with
/// each failure.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between attempts, before jitter.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The rules a reconnect follows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReconnectPolicy {
    /// How long to keep trying after the drop (`reconnect_window`).
    pub(crate) window: Duration,
    /// See [`REFUSED_FOR`].
    pub(crate) refused_for: Duration,
}

impl ReconnectPolicy {
    /// The policy for a reconnect window.
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            refused_for: REFUSED_FOR,
        }
    }

    /// The wait before the next attempt after `failures` failures in a
    /// row: [`FIRST_BACKOFF`] doubling up to [`MAX_BACKOFF`], times a
    /// jitter in [0.5, 1) so that clients dropped together do not come back
    /// in step.
    pub(crate) fn backoff(&self, failures: u32, rng: &mut impl Rng) -> Duration {
        let base = (FIRST_BACKOFF / 2)
            .saturating_mul(1u32 << failures.clamp(1, 5))
            .min(MAX_BACKOFF);
        base.mul_f64(rng.random_range(0.5..1.0))
    }
}

/// Where a reconnect stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reconnect {
    /// When the connection dropped.
    pub(crate) since: Instant,
    /// When to start the next attempt; `None` while one is under way.
    pub(crate) next_try: Option<Instant>,
    /// Failed attempts in a row, for the backoff.
    pub(crate) failures: u32,
    /// Why the last attempt (or the connection) failed.
    pub(crate) last_error: String,
    /// Since when every attempt found nothing listening.
    pub(crate) refused_since: Option<Instant>,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Try again at this time.
    RetryAt(Instant),
    /// Nothing has listened at the cluster's address for longer than the
    /// policy allows: the cluster process is gone, and its sessions with it.
    Gone,
}

impl Reconnect {
    /// A reconnect starting at `now`, first attempt right away.
    pub(crate) fn start(now: Instant, message: String) -> Self {
        Self {
            since: now,
            next_try: Some(now),
            failures: 0,
            last_error: message,
            refused_since: None,
        }
    }

    /// At an attempt's start: `Err` with the reason to give up when the
    /// window has passed, otherwise the attempt is marked under way.
    pub(crate) fn begin_attempt(
        &mut self,
        policy: &ReconnectPolicy,
        now: Instant,
    ) -> Result<(), String> {
        if now.saturating_duration_since(self.since) > policy.window {
            return Err(format!(
                "could not reconnect within {:?}: {}",
                policy.window, self.last_error
            ));
        }
        self.next_try = None;
        Ok(())
    }

    /// An attempt failed at `now` (`refused`: nothing listened there).
    pub(crate) fn failed(
        &mut self,
        policy: &ReconnectPolicy,
        now: Instant,
        message: String,
        refused: bool,
        rng: &mut impl Rng,
    ) -> AfterFailure {
        self.refused_since = if refused {
            Some(self.refused_since.unwrap_or(now))
        } else {
            None
        };
        if self
            .refused_since
            .is_some_and(|t| now.saturating_duration_since(t) > policy.refused_for)
        {
            return AfterFailure::Gone;
        }
        self.failures = self.failures.saturating_add(1);
        let at = now + policy.backoff(self.failures, rng);
        self.next_try = Some(at);
        self.last_error = message;
        AfterFailure::RetryAt(at)
    }
}

/// A reconnect under way in the client task: where it stands, and the
/// attempt running beside the task.
pub(crate) struct Away {
    pub(crate) state: Reconnect,
    /// The attempt under way, run beside the client task so commands keep
    /// being handled (sends are kept for after the reconnect).
    pub(crate) pending: Option<tokio::task::JoinHandle<Result<Attempt, Resume>>>,
}

impl Drop for Away {
    fn drop(&mut self) {
        // An attempt nobody waits for any more must not take the seat back.
        if let Some(h) = self.pending.take() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_in_range() {
        let p = ReconnectPolicy::new(Duration::from_secs(30));
        let mut rng = StdRng::seed_from_u64(1);
        for (failures, base) in [
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1600),
            (5, 2000),
            (40, 2000),
        ] {
            for _ in 0..200 {
                let d = p.backoff(failures, &mut rng);
                assert!(d >= ms(base) / 2 && d < ms(base), "{failures}: {d:?}");
            }
        }
    }

    #[test]
    fn jitter_spreads_clients_dropped_together() {
        let p = ReconnectPolicy::new(Duration::from_secs(30));
        let mut rng = StdRng::seed_from_u64(7);
        let waits: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| p.backoff(3, &mut rng)).collect();
        assert!(waits.len() > 40, "{waits:?}");
        // The same seed gives the same schedule.
        let (mut a, mut b) = (StdRng::seed_from_u64(9), StdRng::seed_from_u64(9));
        assert_eq!(p.backoff(2, &mut a), p.backoff(2, &mut b));
    }

    #[test]
    fn retries_until_the_window_passes() {
        let p = ReconnectPolicy::new(Duration::from_secs(1));
        let mut rng = StdRng::seed_from_u64(3);
        let t0 = Instant::now();
        let mut r = Reconnect::start(t0, "dropped".into());
        assert_eq!(r.next_try, Some(t0));
        let mut now = t0;
        let mut attempts = 0;
        loop {
            if let Err(why) = r.begin_attempt(&p, now) {
                assert!(
                    why.contains("could not reconnect within 1s: timed out"),
                    "{why}"
                );
                break;
            }
            attempts += 1;
            assert_eq!(r.next_try, None);
            match r.failed(&p, now + ms(10), "timed out".into(), false, &mut rng) {
                AfterFailure::RetryAt(at) => {
                    assert!(at > now && at <= now + ms(10) + MAX_BACKOFF);
                    assert_eq!(r.next_try, Some(at));
                    now = at;
                }
                AfterFailure::Gone => panic!("not refused, so not gone"),
            }
        }
        assert_eq!(r.failures, attempts);
        assert!((3..=10).contains(&attempts), "{attempts}");
        assert!(now > t0 + p.window);
    }

    #[test]
    fn nothing_listening_for_a_while_means_gone() {
        let p = ReconnectPolicy::new(Duration::from_secs(30));
        let mut rng = StdRng::seed_from_u64(5);
        let t0 = Instant::now();
        let mut r = Reconnect::start(t0, "dropped".into());
        let refused = |r: &mut Reconnect, at, rng: &mut StdRng| {
            r.failed(&p, at, "connection refused".into(), true, rng)
        };
        assert!(matches!(
            refused(&mut r, t0, &mut rng),
            AfterFailure::RetryAt(_)
        ));
        assert!(matches!(
            refused(&mut r, t0 + ms(1500), &mut rng),
            AfterFailure::RetryAt(_)
        ));
        // Something answered (a timeout, not a refusal): the count restarts.
        assert!(matches!(
            r.failed(&p, t0 + ms(1900), "timed out".into(), false, &mut rng),
            AfterFailure::RetryAt(_)
        ));
        assert_eq!(r.refused_since, None);
        assert!(matches!(
            refused(&mut r, t0 + ms(2500), &mut rng),
            AfterFailure::RetryAt(_)
        ));
        assert!(matches!(
            refused(&mut r, t0 + ms(4500), &mut rng),
            AfterFailure::RetryAt(_)
        ));
        assert_eq!(refused(&mut r, t0 + ms(4501), &mut rng), AfterFailure::Gone);
    }
}
