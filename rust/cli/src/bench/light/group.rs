//! A group of simulated clients sharing one UDP socket and one task: their
//! position updates and unreliable echoes go out in batches (one `sendmsg`
//! with segmentation offload per run of same-sized datagrams to one
//! address), and what arrives is read many datagrams per `recvmmsg`, each
//! handed to its session by the session id in its header and its records
//! read in place. The protocol allows this: the cluster finds a session by
//! its id and follows the source address of its latest datagram, whatever
//! other sessions come from the same address.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use sustenet_client::UNRELIABLE_LIMIT;
use sustenet_proto::crypto::{DatagramOpener, DatagramSealer};
use sustenet_proto::datagram::{Batch, MAX_DATAGRAM, Record};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::records::{RecordRef, for_each_record};
use crate::bench::delivery::{StateInbox, StateOutbox, is_state};
use crate::bench::hist::Hist;
use crate::bench::plan::period;
use crate::bench::stats::Counters;
use crate::bench::traffic::{Every, Rng, echo_payload, pos_payload, read_u64, unit};
use crate::bench::worker::Shared;
use crate::bench::{ECHO, POS};

/// What the group's socket asks for as its receive buffer (the kernel caps
/// it at `net.core.rmem_max`): the state fan-out of hundreds of clients
/// arrives in bursts.
const RECEIVE_BUFFER: usize = 4 << 20;
/// The least time between two rounds of sends: what is due within it
/// leaves together, in fewer system calls. Each update carries the time
/// it was actually sent, so this moves sends, not measurements.
const SEND_EVERY: Duration = Duration::from_millis(2);
/// How often the group adds its counts to the process's.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// A client that joined, handed to its group.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) index: u32,
    pub(crate) session_id: u64,
    pub(crate) udp_addr: SocketAddr,
    pub(crate) sealer: DatagramSealer,
    pub(crate) opener: DatagramOpener,
}

/// What a client's task tells its group.
#[derive(Debug)]
pub(crate) enum GroupMsg {
    Joined(Box<Member>),
    /// The client's session ended (by its session id).
    Left(u64),
}

/// One member's sending and receiving state.
#[derive(Debug)]
struct Slot {
    m: Member,
    pos: Option<Every>,
    unrel: Option<Every>,
    pos_seq: u32,
    unrel_seq: u32,
    inbox: StateInbox,
    gone: bool,
}

/// Counts kept by the group's task and added to the process's now and then.
#[derive(Debug, Default)]
struct Tally {
    c: Counters,
    unrel: Hist,
    state: Hist,
    outbox: StateOutbox,
}

/// Datagrams waiting to leave in one `sendmsg`.
#[derive(Debug, Default)]
struct SendBatch {
    buf: Vec<u8>,
    seg: usize,
    n: usize,
    to: Option<SocketAddr>,
}

/// The socket and its batching state, once the first member says which
/// address family the cluster speaks.
#[derive(Debug)]
struct Io {
    socket: UdpSocket,
    state: UdpSocketState,
    /// Receive buffers: one per datagram (or run of them, with receive
    /// offload) of a `recvmmsg`.
    bufs: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
    out: SendBatch,
    max_segments: usize,
}

/// The group's task state.
pub(crate) struct Group {
    shared: Arc<Shared>,
    io: Option<Io>,
    slots: Vec<Slot>,
    by_session: HashMap<u64, usize>,
    /// When each member is next due to send.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    tally: Tally,
    /// Reused for every datagram sealed.
    plain: Batch,
    sealed: Vec<u8>,
    rng: Rng,
}

impl Io {
    fn new(family: &SocketAddr) -> std::io::Result<Io> {
        let bind: SocketAddr = if family.is_ipv6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([0u8; 4], 0))
        };
        let std = std::net::UdpSocket::bind(bind)?;
        std.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(std)?;
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        // Best effort: a smaller buffer only means more drops under load,
        // which the delivery figures show.
        let _ = state.set_recv_buffer_size(UdpSockRef::from(&socket), RECEIVE_BUFFER);
        let per_buf = MAX_DATAGRAM * state.gro_segments().max(1);
        Ok(Io {
            bufs: (0..quinn_udp::BATCH_SIZE)
                .map(|_| vec![0; per_buf])
                .collect(),
            meta: vec![RecvMeta::default(); quinn_udp::BATCH_SIZE],
            max_segments: state.max_gso_segments().clamp(1, 64),
            out: SendBatch::default(),
            socket,
            state,
        })
    }

    /// Queues one sealed datagram for `to`, sending what was queued first
    /// if it cannot join it.
    fn queue(&mut self, d: &[u8], to: SocketAddr) {
        let o = &self.out;
        if o.n > 0 && (o.to != Some(to) || o.seg != d.len() || o.n >= self.max_segments) {
            self.flush();
        }
        let o = &mut self.out;
        o.buf.extend_from_slice(d);
        o.seg = d.len();
        o.to = Some(to);
        o.n += 1;
    }

    /// Sends what is queued. Unreliable: a full socket buffer drops it, as
    /// the network would (and the delivery figures show).
    fn flush(&mut self) {
        let o = &mut self.out;
        if let (Some(to), true) = (o.to, o.n > 0) {
            let t = Transmit {
                destination: to,
                ecn: None,
                contents: &o.buf,
                segment_size: (o.n > 1).then_some(o.seg),
                src_ip: None,
            };
            let _ = self.state.send(UdpSockRef::from(&self.socket), &t);
        }
        o.buf.clear();
        o.n = 0;
    }
}

impl Group {
    /// An empty group; `index` seeds its members' send phases.
    pub(crate) fn new(shared: Arc<Shared>, index: u32) -> Group {
        Group {
            shared,
            io: None,
            slots: Vec::new(),
            by_session: HashMap::new(),
            due: BinaryHeap::new(),
            tally: Tally::default(),
            plain: Batch::new(),
            sealed: Vec::with_capacity(MAX_DATAGRAM),
            rng: <Rng as rand::SeedableRng>::seed_from_u64(
                u64::from(index) ^ 0x6A0E_0000_0000_0000,
            ),
        }
    }

    /// Runs until `stop_at`: members arrive and leave through `rx`, send
    /// until `end_at`, and receive until `stop_at`.
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<GroupMsg>,
        end_at: Instant,
        stop_at: Instant,
    ) {
        let mut publish_at = Instant::now() + PUBLISH_EVERY;
        let mut sent_at = Instant::now();
        let mut open = true;
        loop {
            // Past the end nothing is sent: wake only to publish and stop.
            let next_send = match self.due.peek() {
                Some(r) if r.0.0 < end_at => r.0.0.max(sent_at + SEND_EVERY),
                _ => stop_at,
            };
            let wake = next_send.min(publish_at).min(stop_at);
            let readable = async {
                match &self.io {
                    Some(io) => io.socket.readable().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                m = rx.recv(), if open => match m {
                    Some(GroupMsg::Joined(m)) => self.join(*m),
                    Some(GroupMsg::Left(id)) => self.leave(id),
                    None => open = false,
                },
                r = readable => {
                    if r.is_ok() {
                        self.receive();
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
            let now = Instant::now();
            if now >= stop_at {
                break;
            }
            if now < end_at && now >= sent_at + SEND_EVERY {
                self.send_due(now);
                sent_at = now;
            }
            if now >= publish_at {
                self.publish();
                publish_at = now + PUBLISH_EVERY;
            }
        }
        self.publish();
    }

    fn join(&mut self, m: Member) {
        if self.io.is_none() {
            match Io::new(&m.udp_addr) {
                Ok(io) => self.io = Some(io),
                Err(e) => {
                    let stats = &self.shared.stats;
                    stats.errors.record("udp socket", e.to_string());
                    return;
                }
            }
        }
        let now = Instant::now();
        let plan = &self.shared.plan;
        // Each stream starts at a random phase so clients don't send in lockstep.
        let rng = &mut self.rng;
        let mut start = |p: Duration| Every::new(now + p.mul_f64(unit(rng)), p);
        let pos = period(plan.hz).map(&mut start);
        let unrel = period(plan.unreliable_per_sec).map(&mut start);
        let slot = self.slots.len();
        self.by_session.insert(m.session_id, slot);
        self.slots.push(Slot {
            m,
            pos,
            unrel,
            pos_seq: 0,
            unrel_seq: 0,
            inbox: StateInbox::default(),
            gone: false,
        });
        self.schedule(slot);
    }

    fn leave(&mut self, session_id: u64) {
        if let Some(slot) = self.by_session.remove(&session_id) {
            if let Some(s) = self.slots.get_mut(slot) {
                s.gone = true;
            }
        }
    }

    /// Puts `slot`'s next send on the schedule.
    fn schedule(&mut self, slot: usize) {
        let Some(s) = self.slots.get(slot).filter(|s| !s.gone) else {
            return;
        };
        let next = [&s.pos, &s.unrel]
            .into_iter()
            .filter_map(|e| e.as_ref().and_then(|e| e.next))
            .min();
        if let Some(at) = next {
            self.due.push(Reverse((at, slot)));
        }
    }

    /// Sends everything due by `now`, in as few system calls as it allows.
    fn send_due(&mut self, now: Instant) {
        while let Some(&Reverse((at, slot))) = self.due.peek() {
            if at > now {
                break;
            }
            self.due.pop();
            self.send_slot(slot, now);
            self.schedule(slot);
        }
        if let Some(io) = self.io.as_mut() {
            io.flush();
        }
    }

    /// Sends what is due of one member's streams.
    fn send_slot(&mut self, slot: usize, now: Instant) {
        let shared = self.shared.clone();
        let (clock, plan) = (shared.clock, &shared.plan);
        let Some(s) = self.slots.get_mut(slot).filter(|s| !s.gone) else {
            return;
        };
        let (Some(io), i) = (self.io.as_mut(), s.m.index) else {
            return;
        };
        if s.pos.as_mut().is_some_and(|e| e.due(now)) {
            let t = clock.now_us();
            let at = shared.walks.position(i, t);
            self.tally
                .outbox
                .sent(&shared.walks, &shared.state_window, i, at, t);
            let payload = pos_payload(at, s.pos_seq, t, i);
            if seal(
                &mut self.plain,
                &mut self.sealed,
                &mut s.m.sealer,
                POS,
                &payload,
            ) {
                io.queue(&self.sealed, s.m.udp_addr);
                self.tally.c.pos_sent += 1;
            }
            s.pos_seq = s.pos_seq.wrapping_add(1);
        }
        if s.unrel.as_mut().is_some_and(|e| e.due(now)) {
            let size = plan.size.min(UNRELIABLE_LIMIT);
            let payload = echo_payload(clock.now_us(), s.unrel_seq, size);
            if seal(
                &mut self.plain,
                &mut self.sealed,
                &mut s.m.sealer,
                ECHO,
                &payload,
            ) {
                io.queue(&self.sealed, s.m.udp_addr);
                self.tally.c.unrel_sent += 1;
            }
            s.unrel_seq = s.unrel_seq.wrapping_add(1);
        }
    }

    /// Reads every datagram waiting on the socket.
    fn receive(&mut self) {
        let Some(io) = self.io.as_mut() else {
            return;
        };
        loop {
            let Io {
                socket,
                state,
                bufs,
                meta,
                ..
            } = &mut *io;
            let mut iovs: Vec<IoSliceMut<'_>> =
                bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            let got = socket.try_io(Interest::READABLE, || {
                state.recv(UdpSockRef::from(&*socket), &mut iovs, meta)
            });
            drop(iovs);
            let Ok(n) = got else {
                // WouldBlock: all read. Anything else: the next readiness
                // tries again.
                return;
            };
            let mut challenges = Vec::new();
            for (buf, m) in bufs.iter().zip(meta.iter()).take(n) {
                let stride = m.stride.max(1);
                for d in buf.get(..m.len).unwrap_or_default().chunks(stride) {
                    challenges.extend(datagram(
                        &self.shared,
                        &mut self.slots,
                        &self.by_session,
                        &mut self.tally,
                        d,
                    ));
                }
            }
            // The cluster sends a session's datagrams only to an address
            // that echoed its challenge (protocol §10.4).
            for (slot, value) in challenges {
                let Some(s) = self.slots.get_mut(slot) else {
                    continue;
                };
                let answer = Record::PathResponse(value);
                if seal_record(&mut self.plain, &mut self.sealed, &mut s.m.sealer, &answer) {
                    io.queue(&self.sealed, s.m.udp_addr);
                }
            }
            io.flush();
        }
    }

    /// Adds the group's counts to the process's.
    fn publish(&mut self) {
        let mut delivered = 0;
        let mut received = 0;
        for s in &mut self.slots {
            delivered += std::mem::take(&mut s.inbox.delivered);
            received += std::mem::take(&mut s.inbox.received);
        }
        let t = &mut self.tally;
        t.c.state_delivered += delivered;
        t.c.state_recv += received;
        t.c.state_expected += std::mem::take(&mut t.outbox.expected);
        let stats = &self.shared.stats;
        stats.c.drain_from(&mut t.c);
        stats.unrel.drain_from(&mut t.unrel);
        stats.state.drain_from(&mut t.state);
    }
}

/// Seals `payload` as one data record into `sealed`; false if it cannot be
/// (too large, or the session's sequence numbers are used up).
fn seal(
    plain: &mut Batch,
    sealed: &mut Vec<u8>,
    sealer: &mut DatagramSealer,
    command: u16,
    payload: &[u8],
) -> bool {
    plain.clear();
    matches!(plain.push_data(command, &[payload]), Ok(true))
        && sealer.seal_into(plain.as_bytes(), sealed).is_ok()
}

/// Seals one record into `sealed`; false if it cannot be.
fn seal_record(
    plain: &mut Batch,
    sealed: &mut Vec<u8>,
    sealer: &mut DatagramSealer,
    record: &Record,
) -> bool {
    plain.clear();
    matches!(plain.push(record), Ok(true)) && sealer.seal_into(plain.as_bytes(), sealed).is_ok()
}

/// One datagram from the cluster: its session opens it, its records count.
/// Returns the member's slot and the value of a challenge to answer, if the
/// datagram held one.
fn datagram(
    shared: &Shared,
    slots: &mut [Slot],
    by_session: &HashMap<u64, usize>,
    tally: &mut Tally,
    d: &[u8],
) -> Option<(usize, u64)> {
    let id = read_u64(d, 1).filter(|_| d.first() == Some(&0x01))?;
    let slot = *by_session.get(&id)?;
    let s = slots.get_mut(slot)?;
    let plain = s.m.opener.open(d).ok()?;
    let mut challenge = None;
    let now = shared.clock.now_us();
    let me = s.m.index;
    let _ = for_each_record(&plain, |r| match r {
        RecordRef::Data { command, payload } if is_state(command) => {
            let window = &shared.state_window;
            if let Some(latency) = s.inbox.received(&shared.walks, window, me, payload, now) {
                tally.state.record(latency);
            }
        }
        RecordRef::Data { command, payload } if command == ECHO => match read_u64(payload, 0) {
            Some(sent) => {
                tally.unrel.record(now.saturating_sub(sent));
                tally.c.unrel_recv += 1;
            }
            None => tally.c.other_recv += 1,
        },
        RecordRef::Data { command, .. } if command == POS => tally.c.pos_recv += 1,
        RecordRef::Data { .. } => tally.c.other_recv += 1,
        RecordRef::PathChallenge(v) => challenge = Some(v),
        RecordRef::Ping(_) | RecordRef::Pong(_) | RecordRef::PathResponse(_) => {}
    });
    challenge.map(|v| (slot, v))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Queued datagrams leave in batches (runs of one size to one address,
    /// at most the segment limit each) and arrive one by one, in order,
    /// each exactly as queued.
    #[tokio::test]
    async fn batches_arrive_as_the_datagrams_queued() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let to = rx.local_addr().unwrap();
        let mut io = Io::new(&to).unwrap();
        let sizes = [66usize, 66, 66, 102, 66, 33, 33]
            .into_iter()
            .chain(std::iter::repeat_n(66, 150));
        let sent: Vec<Vec<u8>> = sizes
            .enumerate()
            .map(|(k, len)| (0..len).map(|b| (k * 7 + b) as u8).collect())
            .collect();
        for d in &sent {
            io.queue(d, to);
        }
        io.flush();
        let mut buf = [0u8; 2048];
        for (k, d) in sent.iter().enumerate() {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &d[..], "datagram {k}");
        }
    }
}
