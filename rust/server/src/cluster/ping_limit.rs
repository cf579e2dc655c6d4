//! Rate limits for the unauthenticated ping requests of clients choosing a
//! cluster (protocol §10.5), sans-IO: the caller passes the time in.
//!
//! Two token buckets must both have a token for a request to be answered:
//! the source's own (`per_source` a second, in bursts of as many) and the
//! cluster's (`total` a second). A source over its own rate is dropped
//! before it touches the cluster's bucket, so one flooding source cannot
//! starve the others. A source is an IPv4 address, or an IPv6 /64 (what one
//! host usually holds). At most `max_sources` sources are tracked (about 40
//! bytes each); when the table is full, sources idle long enough to have a
//! full bucket again are forgotten, at most once a second, and a new source
//! that still finds no room is dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Allows `rate` events per second on average, in bursts of up to `rate`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(rate: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: now,
        }
    }

    /// Refills for the time since the last call; whether a token was there
    /// (and is now taken).
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket would be full at `now` (so forgetting it changes nothing).
    fn full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.rate
    }
}

/// What a ping request is counted against: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SourceKey {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl SourceKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => SourceKey::V4(a.octets()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(v4.octets()),
                None => {
                    let o = a.octets();
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&o[..8]);
                    SourceKey::V6(prefix)
                }
            },
        }
    }
}

/// The ping request limits of one cluster.
#[derive(Debug)]
pub(crate) struct PingLimiter {
    total: TokenBucket,
    per_source: u32,
    max_sources: usize,
    sources: HashMap<SourceKey, TokenBucket>,
    last_sweep: Instant,
}

impl PingLimiter {
    /// Limits of `total` answers a second in all, `per_source` a second per
    /// source, tracking at most `max_sources` sources.
    pub(crate) fn new(total: u32, per_source: u32, max_sources: usize, now: Instant) -> Self {
        Self {
            total: TokenBucket::new(total, now),
            per_source,
            max_sources,
            sources: HashMap::new(),
            last_sweep: now,
        }
    }

    /// Whether a ping request from `ip` at `now` is answered.
    pub(crate) fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        let key = SourceKey::of(ip);
        if !self.sources.contains_key(&key) && self.sources.len() >= self.max_sources {
            if now.saturating_duration_since(self.last_sweep) < Duration::from_secs(1) {
                return false;
            }
            self.last_sweep = now;
            self.sources.retain(|_, b| !b.full_at(now));
            if self.sources.len() >= self.max_sources {
                return false;
            }
        }
        let per_source = self.per_source;
        let own = self
            .sources
            .entry(key)
            .or_insert_with(|| TokenBucket::new(per_source, now));
        own.take(now) && self.total.take(now)
    }

    /// Sources tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn a_flooding_source_does_not_starve_the_others() {
        let t0 = Instant::now();
        let mut l = PingLimiter::new(100, 5, 64, t0);
        let answered = (0..10_000).filter(|_| l.allow(t0, v4(1))).count();
        assert_eq!(answered, 5, "one source gets its own burst only");
        for other in 2..=20 {
            for _ in 0..5 {
                assert!(l.allow(t0, v4(other)), "source {other} starved");
            }
        }
        // The cluster's total still holds: 5 + 19 × 5 = 100 answered, then none.
        assert!(!l.allow(t0, v4(21)));
        // A second later both buckets have refilled.
        let t1 = t0 + Duration::from_secs(1);
        assert!(l.allow(t1, v4(1)));
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        let t0 = Instant::now();
        let mut l = PingLimiter::new(1000, 2, 64, t0);
        let host = |low: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, low));
        assert!(l.allow(t0, host(1)));
        assert!(l.allow(t0, host(2)));
        assert!(!l.allow(t0, host(3)), "another address of the same /64");
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
        assert!(l.allow(t0, other));
        // An IPv4-mapped address counts as the IPv4 address.
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert!(l.allow(t0, mapped));
        assert!(l.allow(t0, v4(1)));
        assert!(!l.allow(t0, v4(1)));
    }

    #[test]
    fn the_source_table_is_bounded_and_idle_sources_are_forgotten() {
        let t0 = Instant::now();
        let mut l = PingLimiter::new(1_000_000, 3, 4, t0);
        for s in 1..=4 {
            assert!(l.allow(t0, v4(s)));
        }
        assert!(
            !l.allow(t0, v4(5)),
            "no room, and no sweep within the second"
        );
        assert_eq!(l.tracked(), 4);
        // A second later the idle ones have full buckets again and go.
        let t1 = t0 + Duration::from_secs(1);
        assert!(l.allow(t1, v4(5)));
        assert_eq!(l.tracked(), 1);
        // A busy source (bucket not full) is kept.
        for _ in 0..3 {
            l.allow(t1, v4(6));
        }
        for s in 7..=8 {
            assert!(l.allow(t1, v4(s)));
        }
        let t2 = t1 + Duration::from_millis(1_100);
        l.allow(t2 - Duration::from_millis(10), v4(6));
        assert!(l.allow(t2, v4(9)));
        assert!(l.tracked() <= 4);
    }
}
