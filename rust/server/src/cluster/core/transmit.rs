//! Datagrams the core wants sent. The core gives each its session's next
//! sequence number (a [`DatagramSlot`]) when it queues it, so the order of
//! a session's datagrams and their sequence numbers are the core's; the
//! sealing (AES-GCM) happens when the driver takes them out: on the
//! driver's own thread ([`Transmits::drain`]) or on the seal workers
//! ([`Transmits::take`], `cluster/seal_pool.rs`). The plaintexts wait back
//! to back in one buffer, so queueing a datagram allocates nothing once
//! the buffer has grown to a tick's fan-out; the seal workers' plaintext
//! buffers come back for reuse.

use std::net::SocketAddr;

use sustenet_proto::crypto::{DatagramSealer, DatagramSlot};
use tracing::debug;

/// Buffers kept for reuse at most (each about 1,200 bytes).
pub(crate) const SPARE_BUFFERS: usize = 1024;

/// Room the queued plaintexts' buffer keeps once emptied, at most: a
/// fan-out larger than this grows it again.
pub(crate) const KEPT_PLAIN_BYTES: usize = 1 << 20;

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

/// A queued datagram: where, its slot, and where its plaintext ends in
/// [`Transmits::plain`] (it starts where the one before it ends).
#[derive(Debug)]
struct Queued {
    addr: SocketAddr,
    slot: DatagramSlot,
    end: usize,
}

/// Datagrams waiting to be sealed and sent, in order.
#[derive(Debug, Default)]
pub(crate) struct Transmits {
    queue: Vec<Queued>,
    /// The queued plaintexts, back to back.
    plain: Vec<u8>,
    /// Buffers for [`Self::take`]'s datagrams.
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
                self.plain.extend_from_slice(plain);
                self.queue.push(Queued {
                    addr,
                    slot,
                    end: self.plain.len(),
                });
            }
            Err(e) => debug!("cannot seal datagram: {e}"),
        }
    }

    /// Seals every queued datagram here and hands it to `send`, in order.
    pub(crate) fn drain(&mut self, mut send: impl FnMut(SocketAddr, &[u8])) {
        let mut start = 0;
        for q in self.queue.drain(..) {
            let plain = self.plain.get(start..q.end).unwrap_or_default();
            start = q.end;
            match q.slot.seal_into(plain, &mut self.sealed) {
                Ok(()) => send(q.addr, &self.sealed),
                Err(e) => debug!("cannot seal datagram: {e}"),
            }
        }
        self.emptied();
    }

    /// Moves every queued datagram, unsealed and in order, to the end of
    /// `out` (for the seal workers), each in its own buffer.
    pub(crate) fn take(&mut self, out: &mut Vec<Transmit>) {
        let mut start = 0;
        for q in self.queue.drain(..) {
            let mut buf = self.spare.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(self.plain.get(start..q.end).unwrap_or_default());
            start = q.end;
            out.push(Transmit {
                addr: q.addr,
                slot: q.slot,
                plain: buf,
            });
        }
        self.emptied();
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

    /// Empties the plaintext buffer of datagrams taken out, keeping at most
    /// [`KEPT_PLAIN_BYTES`] of its room.
    fn emptied(&mut self) {
        self.plain.clear();
        self.plain.shrink_to(KEPT_PLAIN_BYTES);
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
    fn datagrams_go_out_in_order_and_the_buffer_is_reused() {
        let keys = ClientSessionKeys::derive(&[1; 32], &[2; 32]).unwrap();
        let mut server = keys.datagram(Side::Responder, 9);
        let mut client = keys.datagram(Side::Initiator, 9);
        let mut t = Transmits::default();
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        let b = SocketAddr::from(([127, 0, 0, 1], 2));
        t.seal(&mut server.sealer, a, b"one");
        t.seal(&mut server.sealer, b, b"two");
        t.seal(&mut server.sealer, a, b"");
        assert_eq!(t.len(), 3);
        let mut sent = Vec::new();
        t.drain(|to, d| sent.push((to, client.opener.open(d).unwrap())));
        let expected = vec![(a, b"one".to_vec()), (b, b"two".to_vec()), (a, vec![])];
        assert_eq!(sent, expected);
        assert_eq!(t.len(), 0);
        assert!(t.plain.is_empty() && t.plain.capacity() >= 6, "room kept");
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
        let plains: Vec<&[u8]> = out.iter().map(|t| &t.plain[..]).collect();
        assert_eq!(plains, vec![&b"one"[..], b"two", b"three"]);
        t.give_back(out.drain(..).map(|t| t.plain));
        assert_eq!(t.spare.len(), 3);
        t.seal(&mut server.sealer, a, b"four");
        t.take(&mut out);
        assert_eq!(t.spare.len(), 2, "a spare buffer was used");
        assert_eq!(out[0].plain, b"four");
    }

    #[test]
    fn the_plaintext_buffer_keeps_a_bounded_room() {
        let keys = ClientSessionKeys::derive(&[1; 32], &[2; 32]).unwrap();
        let mut server = keys.datagram(Side::Responder, 9);
        let mut t = Transmits::default();
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        let big = vec![7u8; 1100];
        for _ in 0..(2 * KEPT_PLAIN_BYTES / big.len()) {
            t.seal(&mut server.sealer, a, &big);
        }
        assert!(t.plain.capacity() > KEPT_PLAIN_BYTES);
        let mut n = 0;
        t.drain(|_, _| n += 1);
        assert_eq!(n, 2 * KEPT_PLAIN_BYTES / big.len());
        assert!(t.plain.capacity() <= KEPT_PLAIN_BYTES);
    }
}
