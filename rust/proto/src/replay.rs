//! A sliding replay window for datagram sequence numbers.

use crate::error::CryptoError;

/// How many sequence numbers behind the newest one are still remembered.
pub const WINDOW_BITS: u64 = 1024;
const WORDS: usize = (WINDOW_BITS / 64) as usize;

/// Remembers which of the last [`WINDOW_BITS`] sequence numbers were seen.
///
/// `check` is side-effect free so that a datagram can be refused before its
/// (costlier) authentication; `accept` records it once it authenticated.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    newest: Option<u64>,
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// An empty window.
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest sequence number accepted so far.
    pub fn newest(&self) -> Option<u64> {
        self.newest
    }

    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW_BITS;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Whether `seq` would be accepted: not seen, and not too old to tell.
    pub fn check(&self, seq: u64) -> Result<(), CryptoError> {
        let Some(newest) = self.newest else {
            return Ok(());
        };
        if seq > newest {
            return Ok(());
        }
        if newest - seq >= WINDOW_BITS {
            return Err(CryptoError::Stale { seq, newest });
        }
        let (w, m) = Self::bit(seq);
        if self.bits[w] & m != 0 {
            Err(CryptoError::Replay(seq))
        } else {
            Ok(())
        }
    }

    /// Records `seq` as seen. Call only after [`Self::check`] passed and the
    /// datagram authenticated.
    pub fn accept(&mut self, seq: u64) {
        match self.newest {
            Some(newest) if seq <= newest => {}
            Some(newest) => {
                let advance = seq - newest;
                if advance >= WINDOW_BITS {
                    self.bits = [0; WORDS];
                } else {
                    for s in newest + 1..seq {
                        let (w, m) = Self::bit(s);
                        self.bits[w] &= !m;
                    }
                }
                self.newest = Some(seq);
            }
            None => {
                self.bits = [0; WORDS];
                self.newest = Some(seq);
            }
        }
        let (w, m) = Self::bit(seq);
        self.bits[w] |= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    proptest! {
        /// Against a model that remembers everything: within the window the
        /// answers agree; outside it, old numbers are refused.
        #[test]
        fn matches_a_perfect_memory(seqs in proptest::collection::vec(0u64..3000, 1..400)) {
            let mut w = ReplayWindow::new();
            let mut seen = HashSet::new();
            let mut newest: Option<u64> = None;
            for s in seqs {
                let r = w.check(s);
                let too_old = newest.is_some_and(|n| s <= n && n - s >= WINDOW_BITS);
                if too_old {
                    prop_assert!(matches!(r, Err(CryptoError::Stale { .. })), "seq {s}");
                } else if seen.contains(&s) {
                    prop_assert_eq!(r, Err(CryptoError::Replay(s)));
                } else {
                    prop_assert_eq!(r, Ok(()));
                    w.accept(s);
                    seen.insert(s);
                    newest = Some(newest.map_or(s, |n| n.max(s)));
                }
            }
        }
    }

    #[test]
    fn far_jump_clears_the_window() {
        let mut w = ReplayWindow::new();
        w.accept(5);
        w.accept(5 + 10 * WINDOW_BITS);
        assert!(matches!(w.check(5), Err(CryptoError::Stale { .. })));
        assert_eq!(w.check(5 + 10 * WINDOW_BITS - 1), Ok(()));
    }
}
