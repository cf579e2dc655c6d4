//! The core's event queue is bounded in bytes as well as in events: a
//! reliable message or a datagram holds its payload's bytes of the budget
//! until the core has handled it. Reliable messages wait for room (the
//! back-pressure reaches the client through TCP); datagrams that find none
//! are dropped.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of payload queued for the core.
#[derive(Debug, Clone)]
pub(crate) struct EventBudget {
    bytes: Arc<Semaphore>,
    total: u32,
}

/// Bytes taken from an [`EventBudget`], given back when dropped.
pub(crate) type Held = OwnedSemaphorePermit;

impl EventBudget {
    /// A budget of `total` bytes (at least 1, at most `u32::MAX`).
    pub(crate) fn new(total: usize) -> Self {
        let total = u32::try_from(total).unwrap_or(u32::MAX).max(1);
        Self {
            bytes: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// What `len` bytes take: at least 1 (an empty payload is an event
    /// too), at most the whole budget (so one large payload still passes).
    fn cost(&self, len: usize) -> u32 {
        u32::try_from(len).unwrap_or(u32::MAX).clamp(1, self.total)
    }

    /// Waits until `len` bytes are free and takes them; `None` if the
    /// budget was closed.
    pub(crate) async fn take(&self, len: usize) -> Option<Held> {
        self.bytes
            .clone()
            .acquire_many_owned(self.cost(len))
            .await
            .ok()
    }

    /// Takes `len` bytes if they are free now.
    pub(crate) fn try_take(&self, len: usize) -> Option<Held> {
        self.bytes
            .clone()
            .try_acquire_many_owned(self.cost(len))
            .ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_budget_holds_bytes_until_the_event_is_handled() {
        let b = EventBudget::new(100_000);
        let first = b.try_take(65_536).unwrap();
        assert!(b.try_take(65_536).is_none(), "over 100,000 bytes queued");
        let small = b.try_take(30_000).unwrap();
        drop(first);
        assert!(b.try_take(65_536).is_some(), "room again once handled");
        drop(small);
        // A payload larger than the whole budget still passes alone.
        let big = b.try_take(1 << 30).unwrap();
        assert!(b.try_take(0).is_none());
        drop(big);
        assert!(b.try_take(0).is_some());
    }
}
