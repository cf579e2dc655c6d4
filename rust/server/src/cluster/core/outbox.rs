//! A player's writer queue, bounded in messages and in bytes: the core
//! pushes without waiting, the connection's writer task takes messages out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sustenet_proto::ClusterToClient;
use tokio::sync::mpsc;

/// A player's send queue is full.
#[derive(Debug)]
pub(crate) struct Full;

/// Bytes a queued message is counted as: its payload and a little for the
/// rest (an estimate of what it holds in memory, not its size on the wire).
fn weight(m: &ClusterToClient) -> usize {
    const SMALL: usize = 32;
    match m {
        ClusterToClient::Data { payload, .. } => SMALL + payload.len(),
        ClusterToClient::Redirect(t) => SMALL * 8 + t.token.len(),
        ClusterToClient::Disconnect(g) => SMALL + g.message.len(),
        _ => SMALL,
    }
}

/// The core's end of a player's queue.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<ClusterToClient>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The writer's end of a player's queue.
#[derive(Debug)]
pub(crate) struct OutboxRx {
    rx: mpsc::Receiver<ClusterToClient>,
    bytes: Arc<AtomicUsize>,
}

/// A queue of at most `messages` messages and `max_bytes` bytes (a single
/// message larger than `max_bytes` still fits an empty queue).
pub(crate) fn outbox(messages: usize, max_bytes: usize) -> (Outbox, OutboxRx) {
    let (tx, rx) = mpsc::channel(messages.max(1));
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            bytes: bytes.clone(),
            max_bytes,
        },
        OutboxRx { rx, bytes },
    )
}

impl Outbox {
    /// Queues a message, or `Full` if it does not fit. A connection whose
    /// writer has already stopped is not an error here: its reader reports
    /// the drop (and with reconnects on, the reliable log still holds it).
    pub(crate) fn push(&self, m: ClusterToClient) -> Result<(), Full> {
        let w = weight(&m);
        let before = self.bytes.fetch_add(w, Ordering::Relaxed);
        if before > 0 && before + w > self.max_bytes {
            self.bytes.fetch_sub(w, Ordering::Relaxed);
            return Err(Full);
        }
        self.send(m, w)
    }

    /// Queues a message whatever the byte count (what a reconnect must send
    /// again, already bounded by `resume_buffer`).
    pub(crate) fn push_kept(&self, m: ClusterToClient) -> Result<(), Full> {
        let w = weight(&m);
        self.bytes.fetch_add(w, Ordering::Relaxed);
        self.send(m, w)
    }

    fn send(&self, m: ClusterToClient, w: usize) -> Result<(), Full> {
        match self.tx.try_send(m) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.bytes.fetch_sub(w, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.bytes.fetch_sub(w, Ordering::Relaxed);
                Err(Full)
            }
        }
    }

    /// Messages queued now.
    pub(crate) fn depth(&self) -> usize {
        self.tx.max_capacity().saturating_sub(self.tx.capacity())
    }

    /// Resolves once the writer's end is gone.
    pub(crate) async fn closed(&self) {
        self.tx.closed().await
    }
}

impl OutboxRx {
    /// The next message; `None` once every [`Outbox`] is gone.
    pub(crate) async fn recv(&mut self) -> Option<ClusterToClient> {
        let m = self.rx.recv().await?;
        self.bytes.fetch_sub(weight(&m), Ordering::Relaxed);
        Some(m)
    }

    /// The next message if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<ClusterToClient> {
        let m = self.rx.try_recv().ok()?;
        self.bytes.fetch_sub(weight(&m), Ordering::Relaxed);
        Some(m)
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
    fn one_large_message_fits_an_empty_queue() {
        let (out, mut rx) = outbox(10, 100);
        assert!(out.push(data(5000)).is_ok());
        assert!(out.push(data(1)).is_err());
        assert!(rx.try_recv().is_some());
        assert!(out.push(data(1)).is_ok());
    }
}
