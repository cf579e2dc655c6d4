//! One simulated client: its join, then its sends and what it receives.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sustenet_client::{Client, ClientError, ClientEvent, UNRELIABLE_LIMIT};
use sustenet_proto::JoinTarget;
use tokio::time::Instant;

use super::delivery::{StateInbox, StateOutbox, is_state};
use super::plan::{Clock, Plan, period};
use super::stats::{Stats, bump};
use super::traffic::{Every, Rng, echo_payload, pos_payload, read_u32, read_u64, unit};
use super::worker::Shared;
use super::{ECHO, POS, POS_LEN};

/// Most time after the end of the run spent waiting for reliable echoes.
pub(super) const DRAIN: Duration = Duration::from_secs(5);
/// Least time after the end of the run spent waiting for echoes.
pub(super) const MIN_DRAIN: Duration = Duration::from_millis(500);
/// Recent position sends remembered per client, to match position echoes.
const POS_RING: usize = 64;
/// Most queued events a client handles in one go after the one it woke for.
const EVENT_BATCH: usize = 256;

/// Why a client failed: a short kind to group by, and the full message.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) kind: String,
    pub(super) message: String,
}

impl Failure {
    pub(super) fn new(kind: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure {
            kind: kind.into(),
            message: message.into(),
        }
    }

    pub(super) fn client(e: &ClientError) -> Failure {
        // The wildcard keeps this compiling when the client grows a variant.
        #[allow(unreachable_patterns)]
        let kind = match e {
            ClientError::MasterUnreachable { .. } => "cannot reach the master".to_owned(),
            ClientError::ClusterUnreachable { .. } => "cannot reach the cluster".to_owned(),
            ClientError::Handshake(_) => "handshake failed".to_owned(),
            ClientError::Refused { reason, .. } => format!("refused: {reason}"),
            ClientError::WrongMasterKey => "wrong master public key".to_owned(),
            ClientError::VersionMismatch { .. } => "protocol version mismatch".to_owned(),
            ClientError::NotInCluster => "not in a cluster".to_owned(),
            ClientError::NotLoggedIn => "not logged in".to_owned(),
            ClientError::TooLarge { .. } => "payload too large".to_owned(),
            ClientError::Stopped => "client command queue full or stopped".to_owned(),
            ClientError::Connection(_) => "connection error".to_owned(),
            _ => "client error".to_owned(),
        };
        Failure::new(kind, e.to_string())
    }
}

/// Waits for the event `f` accepts; errors and disconnects end the wait.
pub(super) async fn wait_for<T>(
    events: &flume::Receiver<ClientEvent>,
    deadline: Instant,
    what: &str,
    mut f: impl FnMut(ClientEvent) -> Option<Result<T, Failure>>,
) -> Result<T, Failure> {
    loop {
        let ev = match tokio::time::timeout_at(deadline, events.recv_async()).await {
            Err(_) => {
                return Err(Failure::new(
                    format!("timed out waiting for {what}"),
                    format!("no answer to {what} within the --timeout"),
                ));
            }
            Ok(Err(_)) => return Err(Failure::new("client stopped", "the client task stopped")),
            Ok(Ok(ev)) => ev,
        };
        match ev {
            ClientEvent::Error(e) => return Err(Failure::client(&e)),
            ClientEvent::Disconnected { reason, message } => {
                return Err(Failure::new(
                    format!("disconnected: {reason}"),
                    format!("{reason}: {message}"),
                ));
            }
            ClientEvent::MasterDisconnected { reason, message } => {
                return Err(Failure::new(
                    format!("the master closed the connection: {reason}"),
                    format!("{reason}: {message}"),
                ));
            }
            other => {
                if let Some(r) = f(other) {
                    return r;
                }
            }
        }
    }
}

pub(super) async fn join(
    client: &Client,
    events: &flume::Receiver<ClientEvent>,
    plan: &Plan,
    i: u32,
    deadline: Instant,
) -> Result<(), Failure> {
    client
        .login(
            format!("{}-{i}", plan.user_prefix),
            plan.secret.clone().into_bytes(),
        )
        .map_err(|e| Failure::client(&e))?;
    wait_for(events, deadline, "the login", |ev| match ev {
        ClientEvent::LoginSucceeded { .. } => Some(Ok(())),
        ClientEvent::LoginFailed { message } => Some(Err(Failure::new("login refused", message))),
        _ => None,
    })
    .await?;
    client
        .join(JoinTarget::Auto)
        .map_err(|e| Failure::client(&e))?;
    wait_for(events, deadline, "the join", |ev| match ev {
        ClientEvent::Joined { .. } => Some(Ok(())),
        ClientEvent::JoinFailed { reason, message } => Some(Err(Failure::new(
            format!("join refused: {reason}"),
            format!("{reason}: {message}"),
        ))),
        _ => None,
    })
    .await
}

/// A client's state while it plays.
pub(super) struct Player<'a> {
    pub(super) shared: &'a Shared,
    pub(super) stats: &'a Stats,
    pub(super) clock: Clock,
    /// This client's index.
    pub(super) me: u32,
    pub(super) inbox: StateInbox,
    pub(super) outbox: StateOutbox,
    /// (sequence, send time) of recent position updates.
    pub(super) ring: [(u32, u64); POS_RING],
    /// Reliable echoes sent and not yet back.
    pub(super) outstanding: u64,
    /// Position and other packets counted since the last [`Player::publish`]:
    /// with fan-out they are most of what arrives, and one shared atomic
    /// add per packet, from every client on every thread, costs more than
    /// the counting itself.
    pub(super) pos_recv: u64,
    pub(super) other_recv: u64,
}

impl Player<'_> {
    /// Adds the locally counted packets to the process's counters.
    pub(super) fn publish(&mut self) {
        let c = &self.stats.c;
        for (local, shared) in [
            (&mut self.pos_recv, &c.pos_recv),
            (&mut self.other_recv, &c.other_recv),
            (&mut self.inbox.received, &c.state_recv),
            (&mut self.inbox.delivered, &c.state_delivered),
            (&mut self.outbox.expected, &c.state_expected),
        ] {
            if *local > 0 {
                shared.fetch_add(std::mem::take(local), Ordering::Relaxed);
            }
        }
    }

    /// Handles `first` and whatever else is already queued (up to a bound,
    /// so that a flood cannot starve this client's sends): the records of
    /// one datagram arrive as one event each, and a trip through `play`'s
    /// select for every one of them was most of the generator's own work.
    pub(super) fn on_events(
        &mut self,
        first: ClientEvent,
        events: &flume::Receiver<ClientEvent>,
    ) -> Result<(), Failure> {
        let mut r = self.on_event(first);
        for _ in 0..EVENT_BATCH {
            if r.is_err() {
                break;
            }
            match events.try_recv() {
                Ok(ev) => r = self.on_event(ev),
                Err(_) => break,
            }
        }
        self.publish();
        r
    }

    pub(super) fn on_event(&mut self, ev: ClientEvent) -> Result<(), Failure> {
        let c = &self.stats.c;
        match ev {
            ClientEvent::Packet {
                command,
                payload,
                reliable,
            } => {
                if command == ECHO {
                    let Some(sent) = read_u64(&payload, 0) else {
                        self.other_recv += 1;
                        return Ok(());
                    };
                    let rtt = self.clock.now_us().saturating_sub(sent);
                    if reliable {
                        self.stats.rel.record(rtt);
                        bump(&c.rel_recv);
                        self.outstanding = self.outstanding.saturating_sub(1);
                    } else {
                        self.stats.unrel.record(rtt);
                        bump(&c.unrel_recv);
                    }
                } else if is_state(command) {
                    let s = self.shared;
                    let now = self.clock.now_us();
                    let window = &s.state_window;
                    if let Some(latency) = self
                        .inbox
                        .received(&s.walks, window, self.me, &payload, now)
                    {
                        s.stats.state.record(latency);
                    }
                } else if command == POS {
                    self.pos_recv += 1;
                    if let Some(seq) = read_u32(&payload, 12).filter(|_| payload.len() == POS_LEN) {
                        let (s, sent) = self.ring[seq as usize % POS_RING];
                        if s == seq {
                            let now = self.clock.now_us();
                            self.stats.pos.record(now.saturating_sub(sent));
                        }
                    }
                } else {
                    self.other_recv += 1;
                }
            }
            ClientEvent::Redirected { .. } => bump(&c.redirects),
            ClientEvent::Disconnected { reason, message } => {
                return Err(Failure::new(
                    format!("disconnected: {reason}"),
                    format!("{reason}: {message}"),
                ));
            }
            ClientEvent::Error(e) => {
                bump(&c.client_errors);
                let f = Failure::client(&e);
                self.stats.errors.record(&f.kind, f.message);
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) fn send_failed(&self, e: &ClientError) {
        bump(&self.stats.c.send_errors);
        let f = Failure::client(e);
        self.stats
            .errors
            .record(&format!("send: {}", f.kind), f.message);
    }
}

pub(super) async fn play(
    client: &Client,
    events: &flume::Receiver<ClientEvent>,
    i: u32,
    shared: &Shared,
    end_at: Instant,
) -> Result<(), Failure> {
    let (plan, clock, stats) = (&shared.plan, shared.clock, &shared.stats);
    let mut rng = <Rng as rand::SeedableRng>::seed_from_u64(u64::from(i) ^ 0x9A5E_0000_0000_0000);
    let now = Instant::now();
    // Each stream starts at a random phase so clients don't send in lockstep.
    let mut start = |p: Duration| Every::new(now + p.mul_f64(unit(&mut rng)), p);
    let pos_period = period(plan.hz);
    let mut pos_t = pos_period.map(&mut start);
    let mut rel_t = period(plan.reliable_per_sec).map(&mut start);
    let mut unrel_t = period(plan.unreliable_per_sec).map(&mut start);
    let next_wake = |streams: [&Option<Every>; 3]| {
        streams
            .into_iter()
            .filter_map(|e| e.as_ref().and_then(|e| e.next))
            .fold(end_at, Instant::min)
    };
    let unrel_size = plan.size.min(UNRELIABLE_LIMIT);
    let (mut pos_seq, mut rel_seq, mut unrel_seq) = (0u32, 0u32, 0u32);
    let mut me = Player {
        shared,
        stats,
        clock,
        me: i,
        inbox: StateInbox::default(),
        outbox: StateOutbox::default(),
        ring: [(u32::MAX, 0); POS_RING],
        outstanding: 0,
        pos_recv: 0,
        other_recv: 0,
    };
    let c = &stats.c;
    let timer = tokio::time::sleep_until(next_wake([&pos_t, &rel_t, &unrel_t]));
    tokio::pin!(timer);
    // Kept across wake-ups: a receive future made and dropped on every turn
    // registers and unregisters with the channel each time.
    let mut recv = events.recv_async();
    loop {
        tokio::select! {
            () = &mut timer => {
                let now = Instant::now();
                if now >= end_at {
                    break;
                }
                if pos_t.as_mut().is_some_and(|e| e.due(now)) {
                    let t = clock.now_us();
                    let at = shared.walks.position(i, t);
                    me.ring[pos_seq as usize % POS_RING] = (pos_seq, t);
                    me.outbox.sent(&shared.walks, &shared.state_window, i, at, t);
                    match client.send_unreliable(POS, pos_payload(at, pos_seq, t, i)) {
                        Ok(()) => bump(&c.pos_sent),
                        Err(e) => me.send_failed(&e),
                    }
                    pos_seq = pos_seq.wrapping_add(1);
                }
                if rel_t.as_mut().is_some_and(|e| e.due(now)) {
                    match client.send(ECHO, echo_payload(clock.now_us(), rel_seq, plan.size)) {
                        Ok(()) => {
                            bump(&c.rel_sent);
                            me.outstanding += 1;
                        }
                        Err(e) => me.send_failed(&e),
                    }
                    rel_seq = rel_seq.wrapping_add(1);
                }
                if unrel_t.as_mut().is_some_and(|e| e.due(now)) {
                    match client.send_unreliable(ECHO, echo_payload(clock.now_us(), unrel_seq, unrel_size)) {
                        Ok(()) => bump(&c.unrel_sent),
                        Err(e) => me.send_failed(&e),
                    }
                    unrel_seq = unrel_seq.wrapping_add(1);
                }
                timer.as_mut().reset(next_wake([&pos_t, &rel_t, &unrel_t]));
            }
            ev = &mut recv => {
                recv = events.recv_async();
                match ev {
                    Ok(ev) => me.on_events(ev, events)?,
                    Err(_) => {
                        me.publish();
                        return Err(Failure::new("client stopped", "the client task stopped"));
                    }
                }
            }
        }
    }
    drop(recv);
    me.drain(events, end_at).await
}

impl Player<'_> {
    /// After the run: waits for the reliable echoes still on their way (up
    /// to DRAIN), and at least MIN_DRAIN for unreliable ones; the reliable
    /// ones that never came back are errors.
    async fn drain(
        &mut self,
        events: &flume::Receiver<ClientEvent>,
        end_at: Instant,
    ) -> Result<(), Failure> {
        let soft = end_at + MIN_DRAIN;
        let hard = end_at + DRAIN;
        loop {
            let now = Instant::now();
            if now >= hard || (now >= soft && self.outstanding == 0) {
                break;
            }
            let until = if self.outstanding == 0 { soft } else { hard };
            match tokio::time::timeout_at(until, events.recv_async()).await {
                Err(_) => {}
                Ok(Ok(ev)) => self.on_events(ev, events)?,
                Ok(Err(_)) => {
                    self.publish();
                    return Err(Failure::new("client stopped", "the client task stopped"));
                }
            }
        }
        if self.outstanding > 0 {
            self.stats
                .c
                .rel_missing
                .fetch_add(self.outstanding, Ordering::Relaxed);
            self.stats.errors.record(
                "reliable echoes missing",
                format!(
                    "{} reliable echo(es) had not come back {} s after the end of the run",
                    self.outstanding,
                    DRAIN.as_secs()
                ),
            );
        }
        // What was counted since the last event (the last sends' expected
        // deliveries among it) must reach the process's counters too.
        self.publish();
        Ok(())
    }
}
