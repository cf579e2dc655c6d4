//! A UDP receiver: drops anything that is not an authenticated datagram
//! of a live session (answering only ping requests, within their limits),
//! decodes records and hands them to the core. It reads in batches (many
//! datagrams per system call, coalesced ones split again). A cluster runs
//! one receiver per UDP socket (`[cluster] receive_threads`, see
//! `receivers.rs`); they share every session's opener (so its replay window
//! is one, whichever socket a datagram arrives on) and the ping limits.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use quinn_udp::{BATCH_SIZE, RecvMeta, UdpSockRef, UdpSocketState};
use sustenet_proto::crypto::{DatagramOpener, datagram_session_id};
use sustenet_proto::datagram::{self, MAX_DATAGRAM};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::ping_limit::PingLimiter;
use super::{CoreEvent, Shared};
use crate::ids::PlayerId;

/// Sessions the receivers know, told by the core (each receiver is told
/// every change).
#[derive(Clone)]
pub(crate) enum UdpControl {
    Add {
        session_id: u64,
        session: Arc<SessionOpener>,
    },
    Remove {
        session_id: u64,
    },
}

/// A live session as the receivers see it: its player, and the opener of
/// its datagrams, one for all the receivers. The lock is uncontended unless
/// one session's datagrams arrive on two sockets at once (after its
/// address changed), and then it keeps the replay window exact.
pub(crate) struct SessionOpener {
    player: PlayerId,
    opener: Mutex<DatagramOpener>,
}

impl SessionOpener {
    pub(crate) fn new(player: PlayerId, opener: DatagramOpener) -> Arc<Self> {
        Arc::new(Self {
            player,
            opener: Mutex::new(opener),
        })
    }
}

/// The ping request limits, one for all the receivers: a source gets its
/// rate whichever socket its requests arrive on.
pub(crate) type SharedPingLimiter = Arc<Mutex<PingLimiter>>;

/// The shared ping limits of a cluster with `config`'s rates.
pub(crate) fn ping_limiter(c: &super::ClusterConfig) -> SharedPingLimiter {
    Arc::new(Mutex::new(PingLimiter::new(
        c.ping_rate,
        c.ping_rate_per_source,
        c.ping_sources,
        Instant::now(),
    )))
}

/// What the cluster asks for each UDP socket's receive buffer (the kernel
/// caps it at `net.core.rmem_max`). With one receiver every player's
/// datagrams arrive on one socket, and while the core seals a tick's fan-out the receiving task
/// may wait for a thread: at 2,000 players and 20 Hz a 20 ms wait is 800
/// datagrams, several times what a default buffer (about 200 KiB) holds.
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

pub(crate) fn widen_receive_buffer(udp: &UdpSocket) {
    let sock = socket2::SockRef::from(udp);
    if let Err(e) = sock.set_recv_buffer_size(UDP_RECEIVE_BUFFER) {
        debug!("cannot widen the UDP receive buffer: {e}");
    }
    if let Ok(n) = sock.recv_buffer_size() {
        debug!(bytes = n, "UDP receive buffer");
    }
}

/// Receiver number `receiver`: reads `udp` until the cluster stops,
/// learning sessions from `ctl`.
pub(crate) async fn udp_loop(
    shared: Arc<Shared>,
    udp: Arc<UdpSocket>,
    (receiver, mut ctl): (usize, mpsc::Receiver<UdpControl>),
    pings: SharedPingLimiter,
) {
    let mut batch = ReceiveBatch::new(&udp);
    let mut gate = Gate {
        sessions: HashMap::new(),
        refused: 0,
        malformed: 0,
        pings,
        received: shared.config.metrics.udp_receiver(receiver),
    };
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            _ = crate::time::stopped(&mut shutdown) => break,
            Some(c) = ctl.recv() => gate.control(c),
            r = udp.readable() => {
                if let Err(e) = r {
                    debug!("udp socket not readable: {e}");
                    continue;
                }
                batch.drain(&udp, |d, addr| gate.datagram(&shared, &udp, d, addr));
            }
        }
    }
}

/// Datagrams read from the socket in batches: many per system call
/// (`recvmmsg`), and on Linux several of one sender coalesced into one buffer
/// (GRO), split again by their stride. Without a batching socket state
/// (quinn-udp refused the socket) one datagram per call.
struct ReceiveBatch {
    state: Option<UdpSocketState>,
    bufs: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
}

/// The most batches read in one wake-up before the loop looks at its other
/// inputs again (session changes from the core, shutdown): under a flood the
/// socket is always readable, and new sessions must still get in.
const BATCHES_PER_WAKE: usize = 8;

impl ReceiveBatch {
    fn new(udp: &UdpSocket) -> Self {
        let state = match UdpSocketState::new(UdpSockRef::from(udp)) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!("UDP batched receive unavailable, one datagram per call: {e}");
                None
            }
        };
        let segments = state.as_ref().map_or(1, |s| s.gro_segments().max(1));
        // At least 2 KiB, so that a datagram over MAX_DATAGRAM is seen as
        // one (and dropped for its size) rather than cut to fit.
        let per_buf = (MAX_DATAGRAM * segments).max(2048);
        let count = if state.is_some() { BATCH_SIZE } else { 1 };
        Self {
            state,
            bufs: (0..count).map(|_| vec![0; per_buf]).collect(),
            meta: vec![RecvMeta::default(); count],
        }
    }

    /// Reads what the socket holds (at most [`BATCHES_PER_WAKE`] batches)
    /// and hands each datagram with its source to `each`.
    fn drain(&mut self, udp: &UdpSocket, mut each: impl FnMut(&[u8], SocketAddr)) {
        for _ in 0..BATCHES_PER_WAKE {
            let Ok(n) = self.read(udp) else {
                // WouldBlock: all read (readiness is cleared). Another error:
                // the next readiness tries again.
                return;
            };
            for (buf, m) in self.bufs.iter().zip(&self.meta).take(n) {
                let stride = m.stride.max(1);
                for d in buf.get(..m.len).unwrap_or_default().chunks(stride) {
                    each(d, m.addr);
                }
            }
        }
    }

    /// One system call: the number of buffers filled.
    fn read(&mut self, udp: &UdpSocket) -> std::io::Result<usize> {
        let Self { state, bufs, meta } = self;
        match state {
            Some(state) => {
                let mut iovs: Vec<IoSliceMut<'_>> =
                    bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
                udp.try_io(Interest::READABLE, || {
                    state.recv(UdpSockRef::from(udp), &mut iovs, meta)
                })
            }
            None => {
                let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else {
                    return Ok(0);
                };
                let (len, addr) = udp.try_recv_from(buf)?;
                m.len = len;
                m.stride = len;
                m.addr = addr;
                Ok(1)
            }
        }
    }
}

/// What the receiver knows and counts: the live sessions with their
/// openers, the limits on pings from unknown sources, and the datagrams it
/// read.
struct Gate {
    sessions: HashMap<u64, Arc<SessionOpener>>,
    refused: u64,
    malformed: u64,
    pings: SharedPingLimiter,
    received: prometheus_client::metrics::counter::Counter,
}

impl Gate {
    fn control(&mut self, c: UdpControl) {
        match c {
            UdpControl::Add {
                session_id,
                session,
            } => {
                self.sessions.insert(session_id, session);
            }
            UdpControl::Remove { session_id } => {
                self.sessions.remove(&session_id);
            }
        }
    }

    /// One datagram from `addr`: a ping answered within its limits, a
    /// session datagram opened, decoded and handed to the core, anything
    /// else dropped without an answer.
    fn datagram(&mut self, shared: &Shared, udp: &UdpSocket, d: &[u8], addr: SocketAddr) {
        let metrics = &shared.config.metrics;
        self.received.inc();
        // A ping before joining: answered without a token, but only with
        // fewer bytes than the request, and within a rate limit.
        if let Some(nonce) = datagram::parse_ping_request(d) {
            let allowed = self
                .pings
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .allow(Instant::now(), addr.ip());
            if !allowed {
                metrics.datagram_dropped("rate");
            } else {
                let players = u32::try_from(shared.published.player_count.load(Ordering::Relaxed))
                    .unwrap_or(u32::MAX);
                let resp =
                    datagram::ping_response(nonce, players, shared.config.connection_limit());
                let _ = udp.try_send_to(&resp, addr);
            }
            return;
        }
        let n = d.len();
        if n > MAX_DATAGRAM {
            self.refused += 1;
            metrics.datagram_dropped("size");
            return;
        }
        let Some(sid) = datagram_session_id(d) else {
            self.refused += 1;
            metrics.datagram_dropped("malformed");
            return;
        };
        let Some(session) = self.sessions.get(&sid) else {
            self.refused += 1;
            metrics.datagram_dropped("unknown_session");
            return;
        };
        let player = &session.player;
        let opened = session
            .opener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open(d);
        let plain = match opened {
            Ok(p) => p,
            Err(e) => {
                self.refused += 1;
                metrics.datagram_dropped(match e {
                    sustenet_proto::CryptoError::Replay(_)
                    | sustenet_proto::CryptoError::Stale { .. } => "replay",
                    _ => "auth",
                });
                if self.refused.is_power_of_two() {
                    debug!(
                        player = *player,
                        "datagram refused: {e} ({} refused so far)", self.refused
                    );
                }
                return;
            }
        };
        let records = match datagram::decode_records(&plain) {
            Ok(r) => r,
            Err(e) => {
                // Authenticated, so the player's own doing: logged at powers
                // of two only, so that a player cannot flood the log.
                self.malformed += 1;
                metrics.datagram_dropped("malformed");
                if self.malformed.is_power_of_two() {
                    warn!(
                        player = *player,
                        "malformed datagram: {e} ({} so far)", self.malformed
                    );
                }
                return;
            }
        };
        // Unreliable: when the core is behind, drop instead of queueing.
        let Some(budget) = shared.event_budget.try_take(n) else {
            metrics.datagram_dropped("busy");
            return;
        };
        let ev = CoreEvent::Udp {
            player: *player,
            session_id: sid,
            addr,
            len: n,
            records,
            budget,
        };
        let _ = shared.events.try_send(ev);
    }
}
