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
            max_messages: max_messages.max(1),
            max_bytes,
        }
    }

    /// Counts in an item of `weight` bytes, or `Full` if it does not fit.
    pub(crate) fn try_add(&self, weight: usize) -> Result<(), Full> {
        if self.messages.fetch_add(1, Ordering::Relaxed) >= self.max_messages {
            self.messages.fetch_sub(1, Ordering::Relaxed);
            return Err(Full);
        }
        let before = self.bytes.fetch_add(weight, Ordering::Relaxed);
        if before > 0 && before + weight > self.max_bytes {
            self.bytes.fetch_sub(weight, Ordering::Relaxed);
            self.messages.fetch_sub(1, Ordering::Relaxed);
            return Err(Full);
        }
        Ok(())
    }

    /// Counts in an item whatever the bounds (what a reconnect must send
    /// again, already bounded by `resume_buffer`).
    pub(crate) fn add_kept(&self, weight: usize) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(weight, Ordering::Relaxed);
    }

    /// Counts out an item taken out of the queue (or never delivered).
    pub(crate) fn remove(&self, weight: usize) {
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
        assert!(q.try_add(1).is_err());
    }
}
