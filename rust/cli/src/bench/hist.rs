//! Latency histograms: log buckets, mergeable between processes.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Exact below 128 µs, then 64 buckets per power of two (under 1.6 % error).
pub(super) const LINEAR: u64 = 128;
pub(super) const SUB_BITS: u32 = 6;
pub(super) const BUCKETS: usize = 128 + 57 * 64;

pub(super) fn bucket(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let top = (v >> shift) as usize;
    128 + (msb as usize - 7) * 64 + (top - 64)
}

/// The highest value that falls in bucket `i`.
pub(super) fn bucket_high(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let k = i - 128;
    let msb = 7 + (k / 64) as u32;
    let top = 64 + (k % 64) as u128;
    let shift = msb - SUB_BITS;
    let high = ((top + 1) << shift) - 1;
    u64::try_from(high).unwrap_or(u64::MAX)
}

/// A log-bucket histogram of microseconds (or milliseconds for join times).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "SparseHist", into = "SparseHist")]
pub(super) struct Hist {
    pub(super) counts: Vec<u64>,
    pub(super) max: u64,
}

/// How a histogram travels between processes: only the buckets in use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SparseHist {
    pub(super) max: u64,
    pub(super) b: Vec<(u32, u64)>,
}

impl From<SparseHist> for Hist {
    fn from(s: SparseHist) -> Hist {
        let mut h = Hist::default();
        for (i, n) in s.b {
            if let Some(c) = h.counts.get_mut(i as usize) {
                *c += n;
            }
        }
        h.max = s.max;
        h
    }
}

impl From<Hist> for SparseHist {
    fn from(h: Hist) -> SparseHist {
        SparseHist {
            max: h.max,
            b: h.counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| (u32::try_from(i).unwrap_or(u32::MAX), *n))
                .collect(),
        }
    }
}

impl Default for Hist {
    fn default() -> Hist {
        Hist {
            counts: vec![0; BUCKETS],
            max: 0,
        }
    }
}

/// Count and quantiles of one histogram (units in the field's name).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(super) struct Quantiles {
    pub(super) count: u64,
    pub(super) p50: u64,
    pub(super) p99: u64,
    pub(super) p999: u64,
    pub(super) max: u64,
}

impl Hist {
    /// Records one value (for a histogram one task owns).
    pub(super) fn record(&mut self, v: u64) {
        if let Some(c) = self.counts.get_mut(bucket(v)) {
            *c += 1;
        }
        self.max = self.max.max(v);
    }

    pub(super) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub(super) fn add(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.max = self.max.max(o.max);
    }

    /// What was recorded since `earlier` (a snapshot of the same histogram).
    pub(super) fn minus(&self, earlier: &Hist) -> Hist {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .zip(&earlier.counts)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let top = counts.iter().rposition(|n| *n > 0).map_or(0, bucket_high);
        Hist {
            counts,
            max: top.min(self.max),
        }
    }

    pub(super) fn percentile(&self, p: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_high(i).min(self.max);
            }
        }
        self.max
    }

    pub(super) fn quantiles(&self) -> Quantiles {
        Quantiles {
            count: self.count(),
            p50: self.percentile(0.50),
            p99: self.percentile(0.99),
            p999: self.percentile(0.999),
            max: if self.count() == 0 { 0 } else { self.max },
        }
    }
}

/// A histogram many tasks record into without locks.
#[derive(Debug)]
pub(super) struct AtomicHist {
    pub(super) counts: Vec<AtomicU64>,
    pub(super) max: AtomicU64,
}

impl Default for AtomicHist {
    fn default() -> AtomicHist {
        AtomicHist {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
}

impl AtomicHist {
    /// Adds what a task recorded on its own, and empties it.
    pub(super) fn drain_from(&self, local: &mut Hist) {
        for (shared, n) in self.counts.iter().zip(local.counts.iter_mut()) {
            if *n > 0 {
                shared.fetch_add(std::mem::take(n), Ordering::Relaxed);
            }
        }
        self.max.fetch_max(local.max, Ordering::Relaxed);
        local.max = 0;
    }

    pub(super) fn record(&self, v: u64) {
        if let Some(c) = self.counts.get(bucket(v)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> Hist {
        Hist {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            max: self.max.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for v in (0..2_000_000u64)
            .step_by(37)
            .chain([u64::MAX / 3, u64::MAX])
        {
            let b = bucket(v);
            assert!(b < BUCKETS, "{v}");
            assert!(b >= last);
            last = b;
            let high = bucket_high(b);
            assert!(high >= v, "{v} -> {b} -> {high}");
            assert!(high - v <= v / 64 + 1, "{v} -> {high}");
        }
    }

    #[test]
    fn percentiles_and_round_trip_through_json() {
        let h = AtomicHist::default();
        for v in 1..=1000u64 {
            h.record(v * 10);
        }
        let s = h.snapshot();
        let q = s.quantiles();
        assert_eq!(q.count, 1000);
        assert!((4900..=5100).contains(&q.p50), "{q:?}");
        assert!((9800..=10_000).contains(&q.p99), "{q:?}");
        assert_eq!(q.max, 10_000);
        let back: Hist = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.counts, s.counts);
        let empty = s.minus(&s);
        assert_eq!(empty.quantiles().count, 0);
    }
}
