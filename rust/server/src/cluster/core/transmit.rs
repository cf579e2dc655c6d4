//! Datagrams the core has sealed and wants sent: the driver takes them out
//! and gives the buffers back, so a tick's fan-out reuses its allocations.

use std::net::SocketAddr;

use sustenet_proto::crypto::DatagramSealer;
use tracing::debug;

/// Buffers kept for reuse at most (each about 1,200 bytes).
const SPARE_BUFFERS: usize = 1024;

/// Sealed datagrams waiting to be sent, in order.
#[derive(Debug, Default)]
pub(crate) struct Transmits {
    queue: Vec<(SocketAddr, Vec<u8>)>,
    spare: Vec<Vec<u8>>,
}

impl Transmits {
    /// Seals `plain` for `addr` with `sealer` and queues it; a datagram that
    /// cannot be sealed (its session's sequence numbers are used up) is
    /// dropped, as unreliable data may be.
    pub(crate) fn seal(&mut self, sealer: &mut DatagramSealer, addr: SocketAddr, plain: &[u8]) {
        let mut buf = self.spare.pop().unwrap_or_default();
        match sealer.seal_into(plain, &mut buf) {
            Ok(()) => self.queue.push((addr, buf)),
            Err(e) => {
                debug!("cannot seal datagram: {e}");
                self.spare.push(buf);
            }
        }
    }

    /// Hands every queued datagram to `send`, in order, and keeps the
    /// buffers for reuse.
    pub(crate) fn drain(&mut self, mut send: impl FnMut(SocketAddr, &[u8])) {
        for (addr, buf) in self.queue.drain(..) {
            send(addr, &buf);
            if self.spare.len() < SPARE_BUFFERS {
                self.spare.push(buf);
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
}
