//! The UDP sender: the core's sealed datagrams leave many per system call
//! (`sendmmsg` on Linux, each datagram to its own destination). What the
//! socket cannot take now (its send buffer is full) waits, bounded in bytes,
//! until the socket is writable again; past the bound a datagram is dropped
//! and counted, as a full network queue would drop it.
//!
//! [`SendQueue`] is the sans-IO part (what waits, what a system call took);
//! [`UdpSender`] carries it out on the cluster's socket.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tracing::debug;

use crate::metrics::ClusterMetrics;

/// Datagrams handed to one system call at most.
pub(crate) const SEND_BATCH: usize = 64;

/// Bytes of datagrams that may wait for a full socket at most (about 3,000
/// state datagrams). A datagram that would go past it is dropped and counted
/// in `datagrams_dropped_total{reason="send_full"}`.
pub(crate) const SEND_BACKLOG_BYTES: usize = 1 << 20;

/// What the cluster asks for its UDP socket's send buffer (the kernel caps
/// it at `net.core.wmem_max`): a tick's fan-out leaves in bursts of
/// thousands of datagrams, which a network card sends more slowly than one
/// system call queues them.
const UDP_SEND_BUFFER: usize = 4 << 20;

/// Datagrams waiting to be sent, in order, with the bytes of all of them in
/// one buffer. Sans-IO: the caller takes a [`batch`](Self::batch), makes
/// the system call and tells what happened ([`sent`](Self::sent),
/// [`would_block`](Self::would_block), [`refused`](Self::refused)).
#[derive(Debug)]
pub(crate) struct SendQueue {
    bytes: Vec<u8>,
    /// Each datagram's destination and its range in `bytes`.
    items: Vec<(SocketAddr, usize, usize)>,
    /// How many of `items` have left (or were refused).
    head: usize,
    /// The socket was full at the last try; nothing is tried until it is
    /// writable again ([`writable`](Self::writable)).
    blocked: bool,
    backlog_limit: usize,
}

impl SendQueue {
    /// An empty queue that holds at most `backlog_limit` bytes while the
    /// socket is full.
    pub(crate) fn new(backlog_limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            items: Vec::new(),
            head: 0,
            blocked: false,
            backlog_limit,
        }
    }

    /// Queues `d` for `to`; false (and nothing queued) when the socket is
    /// full and the backlog would go past its bound.
    pub(crate) fn push(&mut self, to: SocketAddr, d: &[u8]) -> bool {
        if self.blocked && self.waiting_bytes() + d.len() > self.backlog_limit {
            return false;
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(d);
        self.items.push((to, start, d.len()));
        true
    }

    /// Datagrams queued and not sent yet.
    pub(crate) fn waiting(&self) -> usize {
        self.items.len() - self.head
    }

    /// Bytes of the datagrams queued and not sent yet.
    fn waiting_bytes(&self) -> usize {
        match self.items.get(self.head) {
            Some(&(_, start, _)) => self.bytes.len() - start,
            None => 0,
        }
    }

    /// Whether the socket was full at the last try.
    pub(crate) fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// The next datagrams to send (at most `max`), oldest first.
    pub(crate) fn batch(&self, max: usize) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        let items = self.items.get(self.head..).unwrap_or_default();
        items.iter().take(max).map(|&(to, start, len)| {
            let d = self.bytes.get(start..start + len).unwrap_or_default();
            (to, d)
        })
    }

    /// The first `n` datagrams of the batch left: their count and bytes.
    pub(crate) fn sent(&mut self, n: usize) -> (u64, usize) {
        let end = (self.head + n).min(self.items.len());
        let items = self.items.get(self.head..end).unwrap_or_default();
        let bytes = items.iter().map(|&(_, _, len)| len).sum();
        let count = end - self.head;
        self.head = end;
        self.tidy();
        (count as u64, bytes)
    }

    /// The socket refused the first datagram of the batch for a reason of
    /// its own (not a full buffer): it is dropped.
    pub(crate) fn refused(&mut self) {
        self.head = (self.head + 1).min(self.items.len());
        self.tidy();
    }

    /// The socket is full: nothing more is tried until [`writable`](Self::writable).
    pub(crate) fn would_block(&mut self) {
        self.blocked = true;
        self.compact();
    }

    /// The socket can take datagrams again.
    pub(crate) fn writable(&mut self) {
        self.blocked = false;
    }

    /// Empties the buffers once everything has left.
    fn tidy(&mut self) {
        if self.head == self.items.len() {
            self.items.clear();
            self.bytes.clear();
            self.head = 0;
        }
    }

    /// Moves what still waits to the front of the buffers.
    fn compact(&mut self) {
        let Some(&(_, first, _)) = self.items.get(self.head) else {
            self.tidy();
            return;
        };
        self.items.drain(..self.head);
        self.head = 0;
        self.bytes.drain(..first);
        for item in &mut self.items {
            item.1 -= first;
        }
    }
}

/// The cluster's UDP socket on the sending side: the queue of datagrams and
/// the system calls that send them, counted in the cluster's metrics.
pub(crate) struct UdpSender {
    udp: Arc<UdpSocket>,
    queue: SendQueue,
    metrics: ClusterMetrics,
    /// Datagrams refused by the socket so far (logged at powers of two).
    refused: u64,
}

impl UdpSender {
    /// A sender on `udp`, whose send buffer it widens.
    pub(crate) fn new(udp: Arc<UdpSocket>, metrics: ClusterMetrics) -> Self {
        let sock = socket2::SockRef::from(&*udp);
        if let Err(e) = sock.set_send_buffer_size(UDP_SEND_BUFFER) {
            debug!("cannot widen the UDP send buffer: {e}");
        }
        Self {
            udp,
            queue: SendQueue::new(SEND_BACKLOG_BYTES),
            metrics,
            refused: 0,
        }
    }

    /// Queues `d` for `to`, sending a batch once one is full (unless the
    /// socket is full); a datagram past the backlog's bound is dropped.
    pub(crate) fn queue(&mut self, to: SocketAddr, d: &[u8]) {
        if !self.queue.push(to, d) {
            self.metrics.datagram_dropped("send_full");
            return;
        }
        if !self.queue.is_blocked() && self.queue.waiting() >= SEND_BATCH {
            self.flush();
        }
    }

    /// Sends what is queued, [`SEND_BATCH`] datagrams per system call,
    /// until it is all sent or the socket is full.
    pub(crate) fn flush(&mut self) {
        while !self.queue.is_blocked() && self.queue.waiting() > 0 {
            match send_batch(&self.udp, &self.queue) {
                Ok(n) => {
                    let (count, bytes) = self.queue.sent(n);
                    self.metrics.sent(false, count, bytes);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.queue.would_block(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.queue.refused();
                    self.metrics.datagram_dropped("send_error");
                    self.refused += 1;
                    if self.refused.is_power_of_two() {
                        debug!("datagram not sent: {e} ({} so far)", self.refused);
                    }
                }
            }
        }
    }

    /// Whether datagrams wait for the socket to become writable.
    pub(crate) fn is_blocked(&self) -> bool {
        self.queue.is_blocked()
    }

    /// Waits until the socket is writable, then sends what waited.
    pub(crate) async fn resume(&mut self) {
        if let Err(e) = self.udp.writable().await {
            debug!("udp socket not writable: {e}");
        }
        self.queue.writable();
        self.flush();
    }
}

/// One `sendmmsg`: the next batch of `queue`, each datagram to its own
/// destination. The number of datagrams sent, or the error of the first.
fn send_batch(udp: &UdpSocket, queue: &SendQueue) -> io::Result<usize> {
    udp.try_io(tokio::io::Interest::WRITABLE, || send_batch_now(udp, queue))
}

/// [`send_batch`] on the socket directly, without tokio's readiness (a
/// full socket answers `WouldBlock` itself): for the seal workers, which
/// send from threads of their own and wait for writability themselves.
#[cfg(target_os = "linux")]
pub(crate) fn send_batch_now(udp: &UdpSocket, queue: &SendQueue) -> io::Result<usize> {
    use rustix::net::addr::SocketAddrArg;
    use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
    use std::io::IoSlice;

    let batch: Vec<(SocketAddr, &[u8])> = queue.batch(SEND_BATCH).collect();
    let addrs: Vec<SocketAddrAny> = batch.iter().map(|(to, _)| to.as_any()).collect();
    let iovs: Vec<[IoSlice<'_>; 1]> = batch.iter().map(|(_, d)| [IoSlice::new(d)]).collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = batch
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut msgs: Vec<MMsgHdr<'_>> = addrs
        .iter()
        .zip(&iovs)
        .zip(controls.iter_mut())
        .map(|((to, iov), control)| MMsgHdr::new_with_addr(to, iov, control))
        .collect();
    Ok(rustix::net::sendmmsg(udp, &mut msgs, SendFlags::empty())?)
}

/// Elsewhere one datagram per system call: the number sent (0 or 1).
#[cfg(not(target_os = "linux"))]
pub(crate) fn send_batch_now(udp: &UdpSocket, queue: &SendQueue) -> io::Result<usize> {
    match queue.batch(1).next() {
        Some((to, d)) => socket2::SockRef::from(udp)
            .send_to(d, &to.into())
            .map(|_| 1),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn batch(q: &SendQueue, max: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        q.batch(max).map(|(to, d)| (to, d.to_vec())).collect()
    }

    #[test]
    fn a_partial_send_leaves_the_rest_in_order() {
        let mut q = SendQueue::new(1000);
        for i in 0..5u8 {
            assert!(q.push(addr(u16::from(i)), &[i; 3]));
        }
        assert_eq!(batch(&q, 3).len(), 3);
        assert_eq!(q.sent(2), (2, 6));
        assert_eq!(
            batch(&q, 10),
            vec![
                (addr(2), vec![2; 3]),
                (addr(3), vec![3; 3]),
                (addr(4), vec![4; 3])
            ]
        );
        q.refused();
        assert_eq!(q.waiting(), 2);
        assert_eq!(q.sent(5), (2, 6), "no more than what waits");
        assert_eq!(q.waiting(), 0);
        assert!(q.bytes.is_empty() && q.items.is_empty(), "buffers emptied");
    }

    #[test]
    fn a_full_socket_keeps_datagrams_up_to_the_backlog_bound() {
        let mut q = SendQueue::new(10);
        for i in 0..4u8 {
            assert!(q.push(addr(1), &[i; 4]), "not blocked: no bound yet");
        }
        assert_eq!(q.sent(2), (2, 8));
        q.would_block();
        assert!(q.is_blocked());
        // 8 bytes wait: 2 more fit under the bound of 10, 3 do not.
        assert!(!q.push(addr(1), &[9; 3]));
        assert!(q.push(addr(1), &[5; 2]));
        assert!(!q.push(addr(1), &[6; 1]));
        q.writable();
        assert!(!q.is_blocked());
        assert_eq!(
            batch(&q, 10),
            vec![
                (addr(1), vec![2; 4]),
                (addr(1), vec![3; 4]),
                (addr(1), vec![5; 2])
            ]
        );
        assert_eq!(q.sent(3), (3, 10));
    }

    /// Many datagrams to many addresses through real sockets on loopback:
    /// every one arrives, in order per destination, counted as sent.
    #[tokio::test]
    async fn every_datagram_to_many_addresses_arrives() {
        const RECEIVERS: usize = 40;
        const EACH: usize = 25;
        let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let metrics = ClusterMetrics::default();
        let mut sender = UdpSender::new(udp, metrics.clone());
        let mut receivers = Vec::new();
        for _ in 0..RECEIVERS {
            receivers.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        let to: Vec<SocketAddr> = receivers.iter().map(|r| r.local_addr().unwrap()).collect();
        // Interleaved as a fan-out is: each round one datagram to everyone.
        for round in 0..EACH {
            for (i, &a) in to.iter().enumerate() {
                let d = [vec![i as u8, round as u8], vec![7; 100 + i]].concat();
                sender.queue(a, &d);
            }
        }
        sender.flush();
        // Until the runtime has seen the new socket writable, a send waits
        // as it does behind a full socket buffer.
        while sender.is_blocked() {
            sender.resume().await;
        }
        let mut buf = [0u8; 2048];
        for (i, r) in receivers.iter().enumerate() {
            for round in 0..EACH {
                let n = r.recv(&mut buf).await.unwrap();
                assert_eq!(n, 102 + i);
                assert_eq!(&buf[..2], &[i as u8, round as u8]);
            }
        }
        let snap = metrics.stats();
        assert_eq!(snap.unreliable_out, (RECEIVERS * EACH) as u64);
        assert_eq!(snap.datagrams_dropped, 0);
    }
}
