//! The channels behind the core's queues: a sender and a receiver between
//! two tasks, bounded by a [`QueueLevel`] the core checks before it emits
//! a message (the channel itself never refuses). Used for each player's
//! writer queue ([`Outbox`]) and for the master link's events.

use std::sync::Arc;

use sustenet_proto::ClusterToClient;
use tokio::sync::mpsc;

use super::core::{Full, QueueLevel, Weight};

/// The sending end: the driver delivers what the core counted in, and a
/// connection task pushes its own answers (`Pong`) against the same bound.
#[derive(Debug)]
pub(crate) struct QueueTx<T> {
    tx: mpsc::UnboundedSender<T>,
    level: Arc<QueueLevel>,
}

impl<T> Clone for QueueTx<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            level: self.level.clone(),
        }
    }
}

/// The receiving end: taking an item out counts it out of the level.
#[derive(Debug)]
pub(crate) struct QueueRx<T> {
    rx: mpsc::UnboundedReceiver<T>,
    level: Arc<QueueLevel>,
}

/// A player's writer queue, sending end.
pub(crate) type Outbox = QueueTx<ClusterToClient>;
/// A player's writer queue, receiving end (the writer task's).
pub(crate) type OutboxRx = QueueRx<ClusterToClient>;

/// A queue bounded by `level`.
pub(crate) fn queue<T>(level: Arc<QueueLevel>) -> (QueueTx<T>, QueueRx<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        QueueTx {
            tx,
            level: level.clone(),
        },
        QueueRx { rx, level },
    )
}

/// A player's writer queue of at most `messages` messages and `max_bytes`
/// bytes.
pub(crate) fn outbox(messages: usize, max_bytes: usize) -> (Outbox, OutboxRx) {
    queue(Arc::new(QueueLevel::new(messages, max_bytes)))
}

impl<T: Weight> QueueTx<T> {
    /// The level the core checks.
    pub(crate) fn level(&self) -> Arc<QueueLevel> {
        self.level.clone()
    }

    /// Queues an item, or `Full` if it does not fit. A receiver that has
    /// already stopped is not an error here: for a player's connection its
    /// reader reports the drop (and with reconnects on, the reliable log
    /// still holds what was sent).
    pub(crate) fn push(&self, item: T) -> Result<(), Full> {
        self.level.try_add(item.weight())?;
        self.deliver(item);
        Ok(())
    }

    /// Hands over an item the core has already counted in.
    pub(crate) fn deliver(&self, item: T) {
        let w = item.weight();
        if self.tx.send(item).is_err() {
            self.level.remove(w);
        }
    }

    /// Resolves once the receiving end is gone.
    pub(crate) async fn closed(&self) {
        self.tx.closed().await
    }
}

impl<T: Weight> QueueRx<T> {
    /// The next item; `None` once every sender is gone.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        let item = self.rx.recv().await?;
        self.level.remove(item.weight());
        Some(item)
    }

    /// The next item if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        let item = self.rx.try_recv().ok()?;
        self.level.remove(item.weight());
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn data(n: usize) -> ClusterToClient {
        ClusterToClient::Data {
            command: 1,
            payload: vec![0; n],
        }
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_and_in_messages() {
        let (out, mut rx) = outbox(100, 1000);
        assert!(out.push(data(400)).is_ok());
        assert!(out.push(data(400)).is_ok());
        assert!(out.push(data(400)).is_err(), "over 1000 bytes");
        assert!(rx.try_recv().is_some());
        assert!(
            out.push(data(400)).is_ok(),
            "room again once the writer took one"
        );
        let (out, _rx) = outbox(2, 1 << 20);
        assert!(out.push(data(1)).is_ok());
        assert!(out.push(data(1)).is_ok());
        assert!(out.push(data(1)).is_err(), "over 2 messages");
    }

    #[test]
    fn what_the_core_counted_in_is_counted_out_when_taken_or_undeliverable() {
        let (out, mut rx) = outbox(1, 1000);
        let level = out.level();
        level.try_add(data(10).weight()).unwrap();
        out.deliver(data(10));
        assert!(out.push(data(1)).is_err(), "the delivered message fills it");
        assert!(rx.try_recv().is_some());
        assert!(out.push(data(1)).is_ok());
        drop(rx);
        level.try_add(data(10).weight()).err().unwrap();
        let (out, rx) = outbox(1, 1000);
        drop(rx);
        out.level().try_add(data(10).weight()).unwrap();
        out.deliver(data(10));
        assert!(out.push(data(1)).is_ok(), "a stopped writer holds nothing");
    }
}
