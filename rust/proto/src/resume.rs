//! What each side of a client-cluster session keeps so that a dropped
//! connection can be resumed without losing or repeating a reliable message.
//!
//! Both sides count the `Data` messages of a session. The cluster keeps what
//! it sent until the client acknowledges it (`Ack(count)`), within a byte
//! budget; the client does the same the other way. A reconnect says how many
//! messages each side has received, and each side sends the rest again, in
//! order. A message the budget forced out before it was acknowledged cannot
//! be replayed: a reconnect that would need it is refused rather than
//! resumed with a hole.

use std::collections::VecDeque;

/// Bytes counted per kept message on top of its payload.
const ENTRY_OVERHEAD: usize = 32;
/// An acknowledgement is due after this many messages received...
pub const ACK_EVERY: u64 = 256;
/// ...or this many payload bytes, whichever comes first (and at every
/// heartbeat), so the sender can forget them well before its budget fills.
pub const ACK_BYTES: usize = 64 * 1024;

/// The reliable messages sent to the peer and not yet acknowledged, and the
/// count of messages received from it.
#[derive(Debug)]
pub struct ReplayLog {
    kept: VecDeque<(u16, Vec<u8>)>,
    /// The session-wide number of `kept[0]`.
    base: u64,
    bytes: usize,
    budget: usize,
    /// `Data` messages received from the peer and given to the game.
    received: u64,
    /// The `received` count last told to the peer.
    acked: u64,
    /// Payload bytes received since the last acknowledgement.
    unacked_bytes: usize,
}

/// What a reconnect needs sent again.
#[derive(Debug, PartialEq, Eq)]
pub enum Rewind<'a> {
    /// These messages, in order, after the peer's count.
    Replay(Vec<&'a (u16, Vec<u8>)>),
    /// Some of what the peer is missing is no longer kept.
    Lost {
        /// The peer's count.
        client_has: u64,
        /// The oldest message still kept.
        oldest_kept: u64,
    },
    /// The peer claims more messages than were ever sent.
    Impossible,
}

impl ReplayLog {
    /// An empty log that keeps at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        Self {
            kept: VecDeque::new(),
            base: 0,
            bytes: 0,
            budget,
            received: 0,
            acked: 0,
            unacked_bytes: 0,
        }
    }

    /// `Data` messages received from the peer so far in the session.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Counts a `Data` message of `len` payload bytes received from the peer;
    /// true when an acknowledgement is due ([`ACK_EVERY`], [`ACK_BYTES`]).
    pub fn on_received(&mut self, len: usize) -> bool {
        self.received += 1;
        self.unacked_bytes = self.unacked_bytes.saturating_add(len);
        self.received - self.acked >= ACK_EVERY || self.unacked_bytes >= ACK_BYTES
    }

    /// Whether some received messages have not been acknowledged yet.
    pub fn ack_due(&self) -> bool {
        self.received != self.acked
    }

    /// Records that the peer is being told the current count; returns it.
    pub fn mark_acked(&mut self) -> u64 {
        self.acked = self.received;
        self.unacked_bytes = 0;
        self.received
    }

    /// Messages sent so far in the session.
    pub fn sent(&self) -> u64 {
        self.base + self.kept.len() as u64
    }

    /// Bytes kept (payloads plus a fixed cost per message).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the kept messages are over the budget.
    pub fn over_budget(&self) -> bool {
        self.bytes > self.budget
    }

    /// Keeps a message just sent. While the peer is connected the oldest
    /// messages make room (they were most likely delivered already); the
    /// caller checks [`ReplayLog::over_budget`] while it is not.
    pub fn push(&mut self, command: u16, payload: Vec<u8>, connected: bool) {
        self.bytes += payload.len() + ENTRY_OVERHEAD;
        self.kept.push_back((command, payload));
        while connected && self.bytes > self.budget {
            self.pop();
        }
    }

    fn pop(&mut self) {
        if let Some((_, p)) = self.kept.pop_front() {
            self.bytes -= p.len() + ENTRY_OVERHEAD;
            self.base += 1;
        }
    }

    /// The peer has received `count` messages: forget those.
    pub fn ack(&mut self, count: u64) {
        let count = count.min(self.sent());
        while self.base < count {
            self.pop();
        }
    }

    /// What to send again to a peer that has received `client_has`.
    pub fn rewind(&self, client_has: u64) -> Rewind<'_> {
        if client_has > self.sent() {
            return Rewind::Impossible;
        }
        if client_has < self.base {
            return Rewind::Lost {
                client_has,
                oldest_kept: self.base,
            };
        }
        // In range: client_has - base <= kept.len().
        let skip = usize::try_from(client_has - self.base).unwrap_or(usize::MAX);
        Rewind::Replay(self.kept.iter().skip(skip).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: u8) -> Vec<u8> {
        vec![i; 8]
    }

    #[test]
    fn ack_and_rewind() {
        let mut log = ReplayLog::new(10_000);
        for i in 0..5 {
            log.push(1, msg(i), true);
        }
        assert_eq!(log.sent(), 5);
        log.ack(2);
        let Rewind::Replay(r) = log.rewind(3) else {
            panic!("expected a replay")
        };
        assert_eq!(r.iter().map(|(_, p)| p[0]).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(log.rewind(5), Rewind::Replay(vec![]));
        assert_eq!(
            log.rewind(1),
            Rewind::Lost {
                client_has: 1,
                oldest_kept: 2
            }
        );
        assert_eq!(log.rewind(6), Rewind::Impossible);
        // An ack past what was sent forgets everything and no more.
        log.ack(100);
        assert_eq!((log.sent(), log.bytes()), (5, 0));
    }

    #[test]
    fn acks_fall_due_by_count_and_by_bytes() {
        let mut log = ReplayLog::new(1 << 20);
        assert!(!log.ack_due());
        for _ in 0..ACK_EVERY - 1 {
            assert!(!log.on_received(10));
        }
        assert!(log.on_received(10));
        assert_eq!(log.mark_acked(), ACK_EVERY);
        assert!(!log.ack_due());
        assert!(!log.on_received(ACK_BYTES - 1));
        assert!(log.on_received(1));
        assert!(log.ack_due());
    }

    #[test]
    fn a_message_over_the_budget_and_an_empty_rewind() {
        let mut log = ReplayLog::new(100);
        // Bigger than the whole budget: forgotten at once while connected.
        log.push(1, vec![0; 200], true);
        assert_eq!((log.sent(), log.bytes()), (1, 0));
        assert_eq!(log.rewind(1), Rewind::Replay(vec![]));
        assert!(matches!(log.rewind(0), Rewind::Lost { oldest_kept: 1, .. }));
        // While away it is kept, and the caller sees the overflow.
        log.push(1, vec![0; 200], false);
        assert!(log.over_budget());
        log.ack(2);
        assert!(!log.over_budget());
    }

    #[test]
    fn budget_drops_oldest_only_while_connected() {
        let mut log = ReplayLog::new(3 * (8 + ENTRY_OVERHEAD));
        for i in 0..5 {
            log.push(1, msg(i), true);
        }
        assert!(!log.over_budget());
        assert!(matches!(log.rewind(1), Rewind::Lost { oldest_kept: 2, .. }));
        log.push(1, msg(5), false);
        assert!(log.over_budget());
        let Rewind::Replay(r) = log.rewind(2) else {
            panic!("expected a replay")
        };
        assert_eq!(r.len(), 4);
    }
}
