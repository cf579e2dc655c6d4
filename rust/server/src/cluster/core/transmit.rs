//! Datagrams the core wants sent. The core gives each its session's next
//! sequence number (a [`DatagramSlot`]) when it queues it, so the order of
//! a session's datagrams and their sequence numbers are the core's; the
//! sealing (AES-GCM) happens when the driver takes them out: on the
//! driver's own thread ([`Transmits::drain`]) or on the seal workers
//! ([`Transmits::take`], `cluster/seal_pool.rs`). The plaintext buffers
//! come back for reuse, so a tick's fan-out reuses its allocations.

use std::net::SocketAddr;

use sustenet_proto::crypto::{DatagramSealer, DatagramSlot};
use tracing::debug;

/// Buffers kept for reuse at most (each about 1,200 bytes).
pub(crate) const SPARE_BUFFERS: usize = 1024;

/// One datagram to send: where, its session's sequence number and key,
/// and its plaintext (records).
#[derive(Debug)]
pub(crate) struct Transmit {
    /// Where it goes.
    pub(crate) addr: SocketAddr,
    /// Its sequence number and its session's key.
    pub(crate) slot: DatagramSlot,
    /// Its records, not sealed yet.
    pub(crate) plain: Vec<u8>,
}

/// Datagrams waiting to be sealed and sent, in order.
#[derive(Debug, Default)]
pub(crate) struct Transmits {
    queue: Vec<Transmit>,
    spare: Vec<Vec<u8>>,
    /// The buffer [`Self::drain`] seals into.
    sealed: Vec<u8>,
}

impl Transmits {
    /// Queues `plain` for `addr` under `sealer`'s next sequence number; a
    /// datagram that cannot have one (its session's sequence numbers are
    /// used up) is dropped, as unreliable data may be.
    pub(crate) fn seal(&mut self, sealer: &mut DatagramSealer, addr: SocketAddr, plain: &[u8]) {
        match sealer.take_slot() {
            Ok(slot) => {
                let mut buf = self.spare.pop().unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(plain);
                self.queue.push(Transmit {
                    addr,
                    slot,
                    plain: buf,
                });
            }
            Err(e) => debug!("cannot seal datagram: {e}"),
        }
    }

    /// Seals every queued datagram here and hands it to `send`, in order,
    /// and keeps the buffers for reuse.
    pub(crate) fn drain(&mut self, mut send: impl FnMut(SocketAddr, &[u8])) {
        for t in self.queue.drain(..) {
            match t.slot.seal_into(&t.plain, &mut self.sealed) {
                Ok(()) => send(t.addr, &self.sealed),
                Err(e) => debug!("cannot seal datagram: {e}"),
            }
            if self.spare.len() < SPARE_BUFFERS {
                self.spare.push(t.plain);
            }
        }
    }

    /// Moves every queued datagram, unsealed and in order, to the end of
    /// `out` (for the seal workers).
    pub(crate) fn take(&mut self, out: &mut Vec<Transmit>) {
        out.append(&mut self.queue);
    }

    /// Gives plaintext buffers back for reuse (as many as are kept; the
    /// others are freed).
    pub(crate) fn give_back(&mut self, buffers: impl IntoIterator<Item = Vec<u8>>) {
        for b in buffers {
            if self.spare.len() < SPARE_BUFFERS {
                self.spare.push(b);
            }
        }
    }

    /// How many datagrams are queued.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use sustenet_proto::{ClientSessionKeys, Side};

    #[test]
    fn datagrams_go_out_in_order_and_buffers_are_reused() {
        let keys = ClientSessionKeys::derive(&[1; 32], &[2; 32]).unwrap();
        let mut server = keys.datagram(Side::Responder, 9);
        let mut client = keys.datagram(Side::Initiator, 9);
        let mut t = Transmits::default();
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        let b = SocketAddr::from(([127, 0, 0, 1], 2));
        t.seal(&mut server.sealer, a, b"one");
        t.seal(&mut server.sealer, b, b"two");
        assert_eq!(t.len(), 2);
        let mut sent = Vec::new();
        t.drain(|to, d| sent.push((to, client.opener.open(d).unwrap())));
        assert_eq!(sent, vec![(a, b"one".to_vec()), (b, b"two".to_vec())]);
        assert_eq!(t.len(), 0);
        assert_eq!(t.spare.len(), 2);
        t.seal(&mut server.sealer, a, b"three");
        assert_eq!(t.spare.len(), 1, "a spare buffer was used");
    }

    #[test]
    fn taken_datagrams_keep_their_order_and_sequence_numbers() {
        let keys = ClientSessionKeys::derive(&[1; 32], &[2; 32]).unwrap();
        let mut server = keys.datagram(Side::Responder, 9);
        let mut t = Transmits::default();
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        for word in [&b"one"[..], b"two", b"three"] {
            t.seal(&mut server.sealer, a, word);
        }
        let mut out = Vec::new();
        t.take(&mut out);
        assert_eq!(t.len(), 0);
        let seqs: Vec<u64> = out.iter().map(|t| t.slot.seq()).collect();
        assert_eq!(seqs, vec![0, 1, 2]);
        assert_eq!(out[2].plain, b"three");
        t.give_back(out.into_iter().map(|t| t.plain));
        assert_eq!(t.spare.len(), 3);
    }
}
