//! State delivery, measured: the updates each position update should
//! reach (counted by its sender, from [`Walks`]), and those that did reach
//! a client it was meant for (counted by the receiver, once each, with
//! their one-way latency). Only sends inside the plan's state window count
//! on either side, so both sums cover the same updates.

use std::ops::Range;
use std::sync::Arc;

use super::STATE;
use super::traffic::PosUpdate;
use super::walks::{IndexMap, WalkGrid, Walks};

/// The sender's side: how many receivers its updates should reach.
#[derive(Debug, Default)]
pub(super) struct StateOutbox {
    grid: Option<Arc<WalkGrid>>,
    /// Expected deliveries counted since the last publish.
    pub(super) expected: u64,
}

impl StateOutbox {
    /// Client `me` sent an update from `at` at `t_us`.
    pub(super) fn sent(
        &mut self,
        walks: &Walks,
        window: &Range<u64>,
        me: u32,
        at: [f32; 3],
        t_us: u64,
    ) {
        if !window.contains(&t_us) {
            return;
        }
        let grid = match &self.grid {
            Some(g) if g.serves(t_us) => g.clone(),
            _ => {
                let g = walks.grid(t_us);
                self.grid = Some(g.clone());
                g
            }
        };
        self.expected += walks.audience(&grid, me, at, t_us);
    }
}

/// The receiver's side: which updates arrived, once each.
#[derive(Debug, Default)]
pub(super) struct StateInbox {
    /// Per sender index: the highest sequence number seen, and a mask of
    /// the 64 before it (bit k: `top - 1 - k` seen).
    seen: IndexMap<u32, (u32, u64)>,
    /// State records received, and updates delivered, since the last
    /// publish.
    pub(super) received: u64,
    pub(super) delivered: u64,
}

impl StateInbox {
    /// A `STATE` record's payload (sender's player id, then its update)
    /// reached client `me` at `now_us`. Returns the one-way latency if it
    /// is an update delivered to a client it was meant for, the first time.
    pub(super) fn received(
        &mut self,
        walks: &Walks,
        window: &Range<u64>,
        me: u32,
        payload: &[u8],
        now_us: u64,
    ) -> Option<u64> {
        self.received += 1;
        let u = payload.get(8..).and_then(PosUpdate::parse)?;
        if u.index == me
            || !window.contains(&u.sent_us)
            || !walks.covers(u.at, walks.position(me, u.sent_us))
            || !self.first_time(u.index, u.seq)
        {
            return None;
        }
        self.delivered += 1;
        Some(now_us.saturating_sub(u.sent_us))
    }

    /// Whether update `seq` of `sender` is new here (repeats, and updates
    /// more than 64 behind the newest, are not).
    fn first_time(&mut self, sender: u32, seq: u32) -> bool {
        let Some((top, mask)) = self.seen.get_mut(&sender) else {
            self.seen.insert(sender, (seq, 0));
            return true;
        };
        if seq > *top {
            let d = seq - *top;
            *mask = mask.checked_shl(d).unwrap_or(0) | 1u64.checked_shl(d - 1).unwrap_or(0);
            *top = seq;
            return true;
        }
        let k = *top - seq;
        if k == 0 || k > 64 {
            return false;
        }
        let bit = 1u64 << (k - 1);
        let new = *mask & bit == 0;
        *mask |= bit;
        new
    }
}

/// Whether a record with this command is a state record.
pub(super) fn is_state(command: u16) -> bool {
    command == STATE
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn each_update_counts_once() {
        let mut inbox = StateInbox::default();
        assert!(inbox.first_time(1, 10));
        assert!(!inbox.first_time(1, 10));
        assert!(inbox.first_time(1, 12));
        // Late but new, then repeated.
        assert!(inbox.first_time(1, 11));
        assert!(!inbox.first_time(1, 11));
        assert!(!inbox.first_time(1, 12));
        // Another sender has its own count.
        assert!(inbox.first_time(2, 11));
        // A jump past the mask forgets the old ones.
        assert!(inbox.first_time(1, 200));
        assert!(!inbox.first_time(1, 100));
        assert!(inbox.first_time(1, 199));
        assert!(inbox.first_time(1, 136));
        assert!(!inbox.first_time(1, 135));
        assert!(inbox.first_time(1, 264));
        assert!(inbox.first_time(1, 200 + 1));
    }
}
