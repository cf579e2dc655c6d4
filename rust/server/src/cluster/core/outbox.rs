//! A queue between the core and another task, as the core sees it: a level
//! of messages and bytes shared with the task that takes them out, so the
//! core can refuse a message that does not fit at once, without owning the
//! channel. The channels themselves are the driver's (`cluster/queue.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};

use sustenet_proto::ClusterToClient;

/// A queue is full: the message was not counted in.
#[derive(Debug)]
pub(crate) struct Full;

/// What a queued item is counted as, in bytes.
pub(crate) trait Weight {
    /// An estimate of what the item holds in memory (not its size on the
    /// wire): its payload and a little for the rest.
    fn weight(&self) -> usize;
}

/// What a small message is counted as.
pub(crate) const SMALL: usize = 32;

impl Weight for ClusterToClient {
    fn weight(&self) -> usize {
        match self {
            ClusterToClient::Data { payload, .. } => SMALL + payload.len(),
            ClusterToClient::Redirect(t) => SMALL * 8 + t.token.len(),
            ClusterToClient::Disconnect(g) => SMALL + g.message.len(),
            _ => SMALL,
        }
    }
}

/// How full one queue is: the messages and bytes counted in and not yet
/// taken out, against its bounds.
#[derive(Debug)]
pub(crate) struct QueueLevel {
    messages: AtomicUsize,
    bytes: AtomicUsize,
    /// Of those, the ones a reconnect sends again ([`QueueLevel::add_kept`])
    /// not taken out yet: they come first in the queue and are counted on
    /// top of the bounds, not against them.
    kept_messages: AtomicUsize,
    kept_bytes: AtomicUsize,
    max_messages: usize,
    max_bytes: usize,
}

impl QueueLevel {
    /// A queue of at most `max_messages` messages (at least 1) and
    /// `max_bytes` bytes (a single message larger than `max_bytes` still
    /// fits an empty queue).
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            messages: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            kept_messages: AtomicUsize::new(0),
            kept_bytes: AtomicUsize::new(0),
            max_messages: max_messages.max(1),
            max_bytes,
        }
    }

    /// Counts in an item of `weight` bytes, or `Full` if it does not fit
    /// (what a reconnect sends again, still queued, takes none of the room).
    pub(crate) fn try_add(&self, weight: usize) -> Result<(), Full> {
        let kept_messages = self.kept_messages.load(Ordering::Relaxed);
        let room = self.max_messages.saturating_add(kept_messages);
        if self.messages.fetch_add(1, Ordering::Relaxed) >= room {
            self.messages.fetch_sub(1, Ordering::Relaxed);
            return Err(Full);
        }
        let kept_bytes = self.kept_bytes.load(Ordering::Relaxed);
        let before = self
            .bytes
            .fetch_add(weight, Ordering::Relaxed)
            .saturating_sub(kept_bytes);
        if before > 0 && before + weight > self.max_bytes {
            self.bytes.fetch_sub(weight, Ordering::Relaxed);
            self.messages.fetch_sub(1, Ordering::Relaxed);
            return Err(Full);
        }
        Ok(())
    }

    /// Counts in an item whatever the bounds and on top of them: what a
    /// reconnect must send again, already bounded by `resume_buffer`, so
    /// that what is sent after it still has the queue's whole room. Kept
    /// items go into a new connection's queue before any other.
    pub(crate) fn add_kept(&self, weight: usize) {
        self.kept_messages.fetch_add(1, Ordering::Relaxed);
        self.kept_bytes.fetch_add(weight, Ordering::Relaxed);
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(weight, Ordering::Relaxed);
    }

    /// Counts out an item taken out of the queue (or never delivered).
    pub(crate) fn remove(&self, weight: usize) {
        // Kept items were queued first, so they are the first taken out.
        let kept = self
            .kept_messages
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |k| k.checked_sub(1));
        if kept.is_ok() {
            let _ = self
                .kept_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some(b.saturating_sub(weight))
                });
        }
        self.messages.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(weight, Ordering::Relaxed);
    }

    /// Messages counted in and not taken out.
    pub(crate) fn depth(&self) -> usize {
        self.messages.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_level_is_bounded_in_bytes_and_in_messages() {
        let q = QueueLevel::new(100, 1000);
        assert!(q.try_add(400).is_ok());
        assert!(q.try_add(400).is_ok());
        assert!(q.try_add(400).is_err(), "over 1000 bytes");
        q.remove(400);
        assert!(q.try_add(400).is_ok(), "room again once one was taken out");
        let q = QueueLevel::new(2, 1 << 20);
        assert!(q.try_add(1).is_ok());
        assert!(q.try_add(1).is_ok());
        assert!(q.try_add(1).is_err(), "over 2 messages");
        assert_eq!(q.depth(), 2);
    }

    #[test]
    fn one_large_item_fits_an_empty_queue_and_kept_items_always_fit() {
        let q = QueueLevel::new(10, 100);
        assert!(q.try_add(5000).is_ok());
        assert!(q.try_add(1).is_err());
        q.remove(5000);
        assert!(q.try_add(1).is_ok());
        let q = QueueLevel::new(1, 10);
        q.add_kept(50);
        q.add_kept(50);
        assert_eq!(q.depth(), 2);
        assert!(q.try_add(1).is_ok(), "kept items take none of the room");
        assert!(q.try_add(1).is_err(), "over 1 message");
    }

    #[test]
    fn kept_items_count_on_top_of_the_bounds_until_taken_out() {
        // A reconnect sends again 3 messages of 400 bytes into a queue of
        // 3 messages and 1000 bytes: the queue still has its whole room.
        let q = QueueLevel::new(3, 1000);
        for _ in 0..3 {
            q.add_kept(400);
        }
        assert!(q.try_add(400).is_ok());
        assert!(q.try_add(400).is_ok());
        assert!(q.try_add(400).is_err(), "over 1000 bytes of its own");
        assert_eq!(q.depth(), 5);
        // The kept ones are taken out first: the room stays what it was.
        for _ in 0..3 {
            q.remove(400);
        }
        assert!(q.try_add(400).is_err(), "still over 1000 bytes");
        q.remove(400);
        assert!(q.try_add(400).is_ok());
        assert!(q.try_add(1).is_ok());
        assert!(q.try_add(1).is_err(), "over 3 messages");
    }
}
