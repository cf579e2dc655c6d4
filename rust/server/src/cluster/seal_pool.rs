//! The seal workers: threads that seal (AES-GCM) and send the datagrams
//! the core queued, so that the core's thread keeps only the game state.
//!
//! The core gives every datagram its session's next sequence number
//! ([`Transmit`]'s slot) in the order it decides; the pool hands all the
//! datagrams of one session to the same worker (worker `session_id mod
//! threads`), and each worker seals and sends its queue in order, so a
//! session's datagrams leave in sequence order and the receiver's replay
//! window and stale rule (docs/protocol.md §10.2) see exactly what they
//! would see from one thread. The keys are shared, immutable cipher state
//! (an `Arc` in each slot); nothing else is shared but the byte count.
//!
//! The queues are bounded in bytes: a batch that would take the bytes
//! waiting in all workers' queues over `queue_bytes` is dropped and
//! counted (unreliable datagrams, as a full socket buffer would drop
//! them); the core is never blocked by its workers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::core::Transmit;
use super::udp_send::{SendQueue, send_batch_now};

/// Bytes a queued datagram counts beyond its plaintext: its place in the
/// queue, its slot and the sealed copy's header and tag.
pub(crate) const QUEUED_DATAGRAM_OVERHEAD: usize = 96;

/// Batches of plaintext buffers waiting to go back to the core, at most
/// (more are freed).
const RETURNED_BATCHES: usize = 64;

/// Where the workers put what they sealed: the UDP socket (and the web
/// players' connections) in the cluster, a counter in the benchmark.
/// Each worker has its own.
pub(crate) trait DatagramSink: Send + 'static {
    /// Sends sealed datagrams, in order; what cannot be sent is dropped.
    fn send(&mut self, datagrams: &[(SocketAddr, Vec<u8>)]);
}

/// How long a worker waits for a full socket before it drops what it
/// holds (counted as `send_full`).
const SOCKET_FULL_WAIT: Duration = Duration::from_millis(100);

/// A seal worker's way out in the cluster: a web player's datagrams go to
/// its connection, the others to the UDP socket, many per system call
/// (`udp_send.rs`). A full socket is waited for on the worker's thread, up
/// to [`SOCKET_FULL_WAIT`]; then what is left is dropped and counted, as a
/// full network queue would drop it.
pub(crate) struct SocketSink {
    udp: Arc<tokio::net::UdpSocket>,
    web: Arc<super::web_routes::WebPlayers>,
    metrics: crate::metrics::ClusterMetrics,
    queue: SendQueue,
}

impl SocketSink {
    /// A worker's sink on the cluster's socket.
    pub(crate) fn new(
        udp: Arc<tokio::net::UdpSocket>,
        web: Arc<super::web_routes::WebPlayers>,
        metrics: crate::metrics::ClusterMetrics,
    ) -> Self {
        Self {
            udp,
            web,
            metrics,
            queue: SendQueue::new(usize::MAX),
        }
    }

    /// Sends what is queued, waiting for a full socket up to
    /// [`SOCKET_FULL_WAIT`] in all.
    fn flush(&mut self) {
        let mut waited = Duration::ZERO;
        while self.queue.waiting() > 0 {
            match send_batch_now(&self.udp, &self.queue) {
                Ok(n) => {
                    let (count, bytes) = self.queue.sent(n);
                    self.metrics.sent(false, count, bytes);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if waited >= SOCKET_FULL_WAIT {
                        while self.queue.waiting() > 0 {
                            self.queue.refused();
                            self.metrics.datagram_dropped("send_full");
                        }
                        return;
                    }
                    let started = Instant::now();
                    wait_writable(&self.udp, SOCKET_FULL_WAIT - waited);
                    waited += started.elapsed().max(Duration::from_millis(1));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("datagram not sent: {e}");
                    self.queue.refused();
                    self.metrics.datagram_dropped("send_error");
                }
            }
        }
    }
}

impl DatagramSink for SocketSink {
    fn send(&mut self, datagrams: &[(SocketAddr, Vec<u8>)]) {
        for (addr, d) in datagrams {
            if self.web.deliver(*addr, d) {
                self.metrics.sent(false, 1, d.len());
            } else {
                // Never refused: the queue is only marked full by the driver's
                // sender, and its bound is the pool's own.
                let _ = self.queue.push(*addr, d);
            }
        }
        self.flush();
    }
}

/// Waits until `udp` can take a datagram, at most `limit`.
#[cfg(unix)]
fn wait_writable(udp: &tokio::net::UdpSocket, limit: Duration) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(udp, PollFlags::OUT)];
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(limit.subsec_nanos()),
    };
    if let Err(e) = poll(&mut fds, Some(&timeout)) {
        debug!("cannot wait for the UDP socket: {e}");
    }
}

/// Waits a millisecond (no `poll` here).
#[cfg(not(unix))]
fn wait_writable(_: &tokio::net::UdpSocket, _: Duration) {
    std::thread::sleep(Duration::from_millis(1));
}

/// What a worker is asked to do.
enum Work {
    /// Seal and send these datagrams, in order; they count this many bytes.
    Seal(Vec<Transmit>, usize),
    /// Answer once everything queued before is sent.
    Fence(SyncSender<()>),
}

/// The seal workers and their queues.
pub(crate) struct SealPool {
    queues: Vec<Sender<Work>>,
    threads: Vec<JoinHandle<()>>,
    /// Per worker, the datagrams of the batch being made.
    batches: Vec<Vec<Transmit>>,
    /// Bytes in all workers' queues (added here, taken off by the workers).
    queued: Arc<AtomicUsize>,
    queue_bytes: usize,
    returned: Receiver<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for SealPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealPool")
            .field("threads", &self.queues.len())
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .field("queue_bytes", &self.queue_bytes)
            .finish_non_exhaustive()
    }
}

impl SealPool {
    /// Starts `threads` workers (at least one) that seal and hand what they
    /// sealed to a sink each (made by `sink`), with at most `queue_bytes`
    /// queued in all.
    pub(crate) fn new<S: DatagramSink>(
        threads: usize,
        queue_bytes: usize,
        mut sink: impl FnMut() -> S,
    ) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let queued = Arc::new(AtomicUsize::new(0));
        let (give_back, returned) = mpsc::sync_channel(RETURNED_BATCHES);
        let mut pool = SealPool {
            queues: Vec::with_capacity(threads),
            threads: Vec::with_capacity(threads),
            batches: (0..threads).map(|_| Vec::new()).collect(),
            queued: queued.clone(),
            queue_bytes,
            returned,
        };
        for i in 0..threads {
            let (tx, rx) = mpsc::channel();
            let worker = Worker {
                queue: rx,
                queued: queued.clone(),
                sink: sink(),
                give_back: give_back.clone(),
            };
            let t = std::thread::Builder::new()
                .name(format!("sustenet-seal-{i}"))
                .spawn(move || worker.run())?;
            pool.queues.push(tx);
            pool.threads.push(t);
        }
        Ok(pool)
    }

    /// How many workers seal.
    pub(crate) fn threads(&self) -> usize {
        self.queues.len()
    }

    /// The worker that seals every datagram of session `session_id`.
    pub(crate) fn worker_of(&self, session_id: u64) -> usize {
        (session_id % self.queues.len() as u64) as usize
    }

    /// Hands every datagram of `transmits` (taken out, in order) to its
    /// session's worker. Returns how many were dropped because the queues
    /// were full.
    pub(crate) fn submit(&mut self, transmits: &mut Vec<Transmit>) -> usize {
        for t in transmits.drain(..) {
            let w = self.worker_of(t.slot.session_id());
            self.batches[w].push(t);
        }
        let mut dropped = 0;
        for (w, queue) in self.queues.iter().enumerate() {
            if self.batches[w].is_empty() {
                continue;
            }
            let batch = std::mem::take(&mut self.batches[w]);
            let bytes: usize = batch
                .iter()
                .map(|t| t.plain.len() + QUEUED_DATAGRAM_OVERHEAD)
                .sum();
            // Only this thread adds, so the room seen here only grows.
            if self.queued.load(Ordering::Acquire) + bytes > self.queue_bytes {
                dropped += batch.len();
                continue;
            }
            self.queued.fetch_add(bytes, Ordering::AcqRel);
            let n = batch.len();
            if queue.send(Work::Seal(batch, bytes)).is_err() {
                self.queued.fetch_sub(bytes, Ordering::AcqRel);
                dropped += n;
            }
        }
        if dropped > 0 {
            debug!(dropped, "seal queues full: datagrams dropped");
        }
        dropped
    }

    /// Plaintext buffers the workers are done with, for the core to reuse.
    pub(crate) fn returned_buffers(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.returned.try_iter().flatten()
    }

    /// Waits until every datagram submitted before is sealed and handed to
    /// the sink.
    pub(crate) fn fence(&self) {
        let answers: Vec<Receiver<()>> = self
            .queues
            .iter()
            .filter_map(|q| {
                let (tx, rx) = mpsc::sync_channel(1);
                q.send(Work::Fence(tx)).ok().map(|()| rx)
            })
            .collect();
        for a in answers {
            let _ = a.recv();
        }
    }

    /// Bytes queued to the workers now.
    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

impl Drop for SealPool {
    /// Closes the queues; each worker sends what it holds, then stops.
    fn drop(&mut self) {
        self.queues.clear();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                warn!("a seal worker stopped abnormally");
            }
        }
    }
}

/// One worker's end: its queue, the shared byte count, where it sends.
struct Worker<S> {
    queue: Receiver<Work>,
    queued: Arc<AtomicUsize>,
    sink: S,
    give_back: SyncSender<Vec<Vec<u8>>>,
}

impl<S: DatagramSink> Worker<S> {
    /// Seals and sends each batch in order until the pool closes its queue.
    fn run(mut self) {
        // Sealed datagrams of the batch at hand; their buffers are reused.
        let mut sealed: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        while let Ok(work) = self.queue.recv() {
            match work {
                Work::Seal(batch, bytes) => {
                    let (n, plains) = seal_batch(batch, &mut sealed);
                    self.sink.send(&sealed[..n]);
                    self.queued.fetch_sub(bytes, Ordering::AcqRel);
                    // A full return queue frees the buffers instead.
                    let _ = self.give_back.try_send(plains);
                    sealed.truncate(super::core::SPARE_BUFFERS);
                }
                Work::Fence(done) => {
                    let _ = done.send(());
                }
            }
        }
    }
}

/// Seals `batch` in order into the first entries of `sealed` (grown as
/// needed, its buffers reused); returns how many were sealed and the
/// plaintext buffers.
fn seal_batch(
    batch: Vec<Transmit>,
    sealed: &mut Vec<(SocketAddr, Vec<u8>)>,
) -> (usize, Vec<Vec<u8>>) {
    let mut n = 0;
    let mut plains = Vec::with_capacity(batch.len());
    for t in batch {
        if sealed.len() == n {
            sealed.push((t.addr, Vec::new()));
        }
        let (addr, out) = &mut sealed[n];
        *addr = t.addr;
        match t.slot.seal_into(&t.plain, out) {
            Ok(()) => n += 1,
            Err(e) => debug!("cannot seal datagram: {e}"),
        }
        plains.push(t.plain);
    }
    (n, plains)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::sync::Mutex;
    use sustenet_proto::crypto::{DatagramOpener, DatagramSealer};
    use sustenet_proto::{ClientSessionKeys, CryptoError, Side};

    /// Keeps what the workers send; blocks them while `gate` holds no permit.
    #[derive(Default)]
    struct Kept {
        sent: Mutex<Vec<(SocketAddr, Vec<u8>)>>,
        gate: Mutex<Option<Receiver<()>>>,
    }

    impl DatagramSink for Arc<Kept> {
        fn send(&mut self, datagrams: &[(SocketAddr, Vec<u8>)]) {
            if let Some(gate) = self.gate.lock().unwrap().as_ref() {
                let _ = gate.recv();
            }
            self.sent.lock().unwrap().extend_from_slice(datagrams);
        }
    }

    fn session(id: u64) -> (DatagramSealer, DatagramOpener) {
        let keys = ClientSessionKeys::derive(&[id as u8; 32], &[2; 32]).unwrap();
        let sealer = keys.datagram(Side::Responder, id).sealer;
        (sealer, keys.datagram(Side::Initiator, id).opener)
    }

    fn addr(id: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1000 + id as u16))
    }

    fn transmit(sealer: &mut DatagramSealer, id: u64, n: u32) -> Transmit {
        Transmit {
            addr: addr(id),
            slot: sealer.take_slot().unwrap(),
            plain: n.to_le_bytes().to_vec(),
        }
    }

    #[test]
    fn each_session_is_sealed_in_order_by_one_of_several_workers() {
        let kept = Arc::new(Kept::default());
        let mut pool = SealPool::new(3, 1 << 20, || kept.clone()).unwrap();
        assert_eq!(pool.threads(), 3);
        let mut sessions: Vec<_> = (1..=7u64).map(session).collect();
        let workers: std::collections::HashSet<_> = (1..=7).map(|id| pool.worker_of(id)).collect();
        assert_eq!(workers.len(), 3, "the sessions spread over every worker");
        for round in 0..50u32 {
            let mut batch = Vec::new();
            for (i, (sealer, _)) in sessions.iter_mut().enumerate() {
                for k in 0..3 {
                    batch.push(transmit(sealer, i as u64 + 1, round * 3 + k));
                }
            }
            assert_eq!(pool.submit(&mut batch), 0);
            assert!(batch.is_empty());
        }
        pool.fence();
        assert_eq!(pool.queued_bytes(), 0);
        let sent = kept.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 7 * 150);
        for (i, (_, opener)) in sessions.iter_mut().enumerate() {
            let id = i as u64 + 1;
            let mine: Vec<_> = sent.iter().filter(|(a, _)| *a == addr(id)).collect();
            assert_eq!(mine.len(), 150);
            for (n, (_, d)) in mine.iter().enumerate() {
                let plain = opener.open(d).unwrap();
                assert_eq!(plain, (n as u32).to_le_bytes(), "session {id} in order");
            }
            let stats = opener.stats();
            assert_eq!((stats.stale, stats.replays, stats.auth_failures), (0, 0, 0));
            // A datagram sent twice is still refused as a replay.
            let again = opener.open(&mine[149].1);
            assert!(matches!(again, Err(CryptoError::Replay(_))), "{again:?}");
        }
        assert!(
            pool.returned_buffers().count() > 0,
            "plaintext buffers come back"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_growing() {
        let (permit, gate) = mpsc::channel();
        let kept = Arc::new(Kept {
            gate: Mutex::new(Some(gate)),
            ..Kept::default()
        });
        let per = 4 + QUEUED_DATAGRAM_OVERHEAD;
        let mut pool = SealPool::new(1, 10 * per, || kept.clone()).unwrap();
        let (mut sealer, mut opener) = session(1);
        // The worker takes the first batch and waits at the sink; eight more
        // datagrams fit the queue, the next two batches do not.
        let mut first = vec![transmit(&mut sealer, 1, 0)];
        assert_eq!(pool.submit(&mut first), 0);
        let mut eight: Vec<_> = (1..9).map(|n| transmit(&mut sealer, 1, n)).collect();
        assert_eq!(pool.submit(&mut eight), 0);
        let mut two: Vec<_> = (9..11).map(|n| transmit(&mut sealer, 1, n)).collect();
        assert_eq!(pool.submit(&mut two), 2, "over the byte bound: dropped");
        assert!(pool.queued_bytes() <= 10 * per);
        for _ in 0..3 {
            permit.send(()).unwrap();
        }
        pool.fence();
        let mut one = vec![transmit(&mut sealer, 1, 11)];
        assert_eq!(pool.submit(&mut one), 0);
        permit.send(()).unwrap();
        pool.fence();
        drop(permit);
        let sent = kept.sent.lock().unwrap().clone();
        let got: Vec<u32> = sent
            .iter()
            .map(|(_, d)| u32::from_le_bytes(opener.open(d).unwrap().try_into().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 11],
            "a gap, never disorder"
        );
    }
}
