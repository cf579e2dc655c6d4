//! Who hears whom: the fragment grid, the players' latest states, and the
//! state fan-out.
//!
//! A state goes out when it is set: at the end of the input that set it
//! (once the player's position is known), its record is added to the
//! pending batch of every player whose interest area covers it
//! ([`Pending`]), and each batch is sealed into a datagram when it is full
//! or `state_window` after its first record, whichever comes first. So a
//! state leaves at most `state_window` after it arrived, and a recipient
//! gets one datagram per window in which it has news instead of one per
//! record. A subject whose state changes again before its record left is
//! sent once, with its latest state.
//!
//! The fragment's update rate bounds how often a subject's state is sent,
//! by the generic cell rate algorithm (GCRA, the virtual-scheduling form of
//! a leaky bucket) with the fragment's `period` as the emission interval
//! and a tolerance of one period: each subject has a theoretical arrival
//! time `tat`; a changed state goes out at `now` if `now >= tat - period`
//! (then `tat = max(tat, now) + period`), else it is held and goes out when
//! the clock reaches `tat - period` (a deadline `poll_timeout` gives the
//! driver), with its latest state by then. So over any span `d` a subject
//! is sent at most `2 + d / period` times (twice at once at most, once a
//! period over time), and a client reporting at the fragment's rate is
//! never held, whatever its phase against the fragment's updates and after
//! a late report. On the fragment's updates (due on the grid's shared
//! schedule, checked every `update_tick`) the states not sent for a whole
//! period (unchanged ones, so a player that stands still is still heard at
//! least every two periods) go to their audience through the same batches,
//! and so do changed states within the bound that were not sent yet (set
//! before their player had a position).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sustenet_proto::crypto::DatagramSealer;
use sustenet_proto::datagram::{self, DataRecord};
use tracing::debug;

use super::Players;
use super::pending::Pending;
use super::transmit::Transmits;
use crate::fragments::{FragmentEvent, FragmentId, Fragments, Seeded};
use crate::ids::PlayerId;

/// A player's latest state and when it was last sent.
#[derive(Debug, Default)]
pub(crate) struct SubjectState {
    /// Its record (`player id || state`), encoded once when it is set and
    /// copied into each recipient's datagram.
    record: DataRecord,
    /// When it was last given to its audience.
    sent: Option<Instant>,
    /// The rate bound's theoretical arrival time (GCRA): a changed state
    /// may go out from one period before it; one period on per counted
    /// send, from the send if that was later.
    tat: Option<Instant>,
    /// Set since it was last given to its audience.
    changed: bool,
    /// Waiting in [`Interest::fresh`].
    fresh: bool,
    /// Waiting in [`Interest::held`].
    held: bool,
    /// The fragment update that last sent it.
    update: u64,
}

impl SubjectState {
    /// Its record's length in a datagram.
    fn record_len(&self) -> usize {
        self.record.encoded_len()
    }

    /// When a changed state may go out under the rate bound: one period
    /// (the tolerance) before its theoretical arrival time.
    fn earliest(&self, period: Duration) -> Option<Instant> {
        self.tat.map(|tat| tat.checked_sub(period).unwrap_or(tat))
    }

    /// Whether a changed state may go out at `now` under the rate bound.
    fn may_send(&self, now: Instant, period: Duration) -> bool {
        self.earliest(period).is_none_or(|at| now >= at)
    }

    /// It is given to its audience at `now`; `counted` moves the rate
    /// bound on (a changed state; a repeat of an unchanged one is not).
    fn mark_sent(&mut self, now: Instant, period: Duration, counted: bool) {
        self.sent = Some(now);
        self.changed = false;
        if counted {
            // From the send if it was later than the schedule: a subject
            // silent for a while cannot spend the periods it skipped.
            self.tat = Some(self.tat.map_or(now, |tat| tat.max(now)) + period);
        }
    }
}

/// The fragment grid, the players' latest states, the records waiting for
/// their datagram, and fragment events not yet given to the plugin.
pub(crate) struct Interest {
    pub(crate) fragments: Fragments,
    /// Looked up once per record of the state fan-out, hence the cheap hash.
    pub(crate) states: HashMap<PlayerId, SubjectState, Seeded>,
    /// Subjects set since the last [`Interest::send_fresh`].
    fresh: Vec<PlayerId>,
    /// Changed states held by the rate bound, by when they may go out
    /// (an entry is stale if its subject was sent or left meanwhile).
    held: BinaryHeap<Reverse<(Instant, PlayerId)>>,
    pending: Pending,
    /// Fragment updates so far.
    updates: u64,
    /// The fragments due this update (scratch).
    due: Vec<FragmentId>,
    /// The subjects an update sends (scratch).
    due_subjects: Vec<PlayerId>,
    pub(crate) events: Vec<FragmentEvent>,
}

impl Interest {
    /// An empty world on `fragments`; `hasher` keys the tables; each
    /// recipient's batch waits at most `window` after its first record.
    pub(crate) fn new(fragments: Fragments, hasher: Seeded, window: Duration) -> Self {
        let pending = Pending::new(window, hasher.derive());
        Self {
            fragments,
            states: HashMap::with_hasher(hasher),
            fresh: Vec::new(),
            held: BinaryHeap::new(),
            pending,
            updates: 0,
            due: Vec::new(),
            due_subjects: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Sets `player`'s latest state; it goes out at the end of the input.
    /// `state` fits one record (the caller checked its size).
    pub(crate) fn set_state(&mut self, player: PlayerId, command: u16, state: &[u8]) {
        // Most players report every tick: reuse the buffer of the last one.
        let s = self.states.entry(player).or_default();
        if let Err(e) = s.record.set(command, &[&player.to_le_bytes(), state]) {
            // Not reached: the size was checked. Nothing is sent for it.
            debug!(player, "state not set: {e}");
            return;
        }
        s.changed = true;
        if !s.fresh {
            s.fresh = true;
            self.fresh.push(player);
        }
    }

    /// Forgets a player that left: its state, and what was pending for it.
    pub(crate) fn remove(&mut self, player: PlayerId) {
        self.states.remove(&player);
        self.pending.remove(player);
    }

    /// After an input: the states it set, and the held ones now within the
    /// rate bound, go to their audience's batches (those over their
    /// fragment's rate are held), then every batch due at `now` is sealed.
    pub(crate) fn send_fresh(
        &mut self,
        now: Instant,
        players: &mut Players,
        out: &mut StateOut<'_>,
    ) {
        let Interest {
            fragments,
            states,
            fresh,
            held,
            pending,
            ..
        } = self;
        while let Some(&Reverse((at, subject))) = held.peek() {
            if at > now {
                break;
            }
            held.pop();
            let Some(s) = states.get_mut(&subject).filter(|s| s.held) else {
                continue;
            };
            s.held = false;
            if s.changed && !s.fresh {
                s.fresh = true;
                fresh.push(subject);
            }
        }
        for subject in fresh.drain(..) {
            let Some(s) = states.get_mut(&subject) else {
                continue;
            };
            s.fresh = false;
            // Without a position nobody hears it yet; it is sent on its
            // fragment's first update once it has one.
            let Some(fragment) = fragments.fragment_of(subject) else {
                continue;
            };
            let period = fragments.settings(fragment).period();
            if !s.may_send(now, period) {
                hold(held, subject, s, period);
                continue;
            }
            s.mark_sent(now, period, true);
            let len = s.record_len();
            let states = &*states;
            fragments.for_each_audience(subject, |recipient| {
                pending.add(now, recipient, subject, len, |r, subjects| {
                    out.send(players, states, r, subjects)
                });
            });
        }
        self.send_due(now, players, out);
    }

    /// Seals every batch due at `now`.
    pub(crate) fn send_due(&mut self, now: Instant, players: &mut Players, out: &mut StateOut<'_>) {
        let states = &self.states;
        self.pending
            .send_due(now, |r, subjects| out.send(players, states, r, subjects));
    }

    /// When the next batch is due or the next held state may go out, if
    /// any.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let held = self.held.peek().map(|Reverse((at, _))| *at);
        self.pending.next_due().into_iter().chain(held).min()
    }

    /// One update tick at `now`: when fragments are due, the states of
    /// their players not sent for a whole period, and the changed ones
    /// within the rate bound not sent yet, go to their audience's batches.
    pub(crate) fn tick(&mut self, now: Instant, players: &mut Players, out: &mut StateOut<'_>) {
        let Interest {
            fragments,
            states,
            held,
            pending,
            updates,
            due,
            due_subjects,
            ..
        } = self;
        due.clear();
        due.extend_from_slice(fragments.start_tick(now));
        if due.is_empty() {
            return;
        }
        *updates += 1;
        let update = *updates;
        due_subjects.clear();
        let mut considered = 0;
        for fragment in due.iter() {
            let period = fragments.settings(*fragment).period();
            for player in fragments.players_in(*fragment) {
                let Some(s) = states.get_mut(&player) else {
                    continue;
                };
                considered += 1;
                let stale = s
                    .sent
                    .is_none_or(|t| now.saturating_duration_since(t) >= period);
                if s.changed && !s.may_send(now, period) {
                    // Over the rate bound (and so sent less than a period
                    // ago): it goes out when it may.
                    hold(held, player, s, period);
                } else if s.changed || stale {
                    s.update = update;
                    s.mark_sent(now, period, s.changed);
                    due_subjects.push(player);
                }
            }
        }
        if due_subjects.is_empty() {
            return;
        }
        let states = &*states;
        // Most states left when they were set: when at most half are due,
        // each one's audience is cheaper than every recipient's subjects.
        if due_subjects.len() * 2 <= considered {
            for &subject in due_subjects.iter() {
                let Some(s) = states.get(&subject) else {
                    continue;
                };
                let len = s.record_len();
                fragments.for_each_audience(subject, |recipient| {
                    pending.add(now, recipient, subject, len, |r, subjects| {
                        out.send(players, states, r, subjects)
                    });
                });
            }
            return;
        }
        fragments.fan_out(|recipient, subjects| {
            for subject in subjects {
                if let Some(s) = states.get(subject).filter(|s| s.update == update) {
                    pending.add(now, recipient, *subject, s.record_len(), |r, subjects| {
                        out.send(players, states, r, subjects)
                    });
                }
            }
        });
    }
}

/// Holds `s`, a changed state over the rate bound, until it may go out
/// (once: a subject already held keeps its place).
fn hold(
    held: &mut BinaryHeap<Reverse<(Instant, PlayerId)>>,
    subject: PlayerId,
    s: &mut SubjectState,
    period: Duration,
) {
    if let (false, Some(at)) = (s.held, s.earliest(period)) {
        s.held = true;
        held.push(Reverse((at, subject)));
    }
}

/// Seals state records for players, through one reused datagram batch.
pub(crate) struct StateOut<'a> {
    pub(crate) transmits: &'a mut Transmits,
    /// `now - udp_silence` (`None` before the clock's origin): a player's
    /// address heard since is live ([`UdpPath::target_heard_since`]).
    ///
    /// [`UdpPath::target_heard_since`]: super::path::UdpPath::target_heard_since
    pub(crate) heard_since: Option<Instant>,
    pub(crate) batch: &'a mut datagram::Batch,
}

impl StateOut<'_> {
    /// One recipient's batch: the latest state of each of its subjects, in
    /// as few datagrams as they fit (one, for up to about 40 states of 16
    /// bytes). A recipient that left, was redirected or is away
    /// (reconnecting), and subjects that left, are skipped.
    fn send(
        &mut self,
        players: &mut Players,
        states: &HashMap<PlayerId, SubjectState, Seeded>,
        recipient: PlayerId,
        subjects: &[PlayerId],
    ) {
        let Some(p) = players.get_mut(&recipient) else {
            return;
        };
        let target = p.path.target_heard_since(self.heard_since);
        let (Some(addr), None, None) = (target, p.redirected, p.away_until) else {
            return;
        };
        for subject in subjects {
            let Some(s) = states.get(subject) else {
                continue;
            };
            if !self.batch.push_record(&s.record) {
                self.flush(&mut p.udp, addr);
                self.batch.push_record(&s.record);
            }
        }
        self.flush(&mut p.udp, addr);
    }

    /// Seals and queues what the batch holds (if anything); leaves it empty.
    fn flush(&mut self, sealer: &mut DatagramSealer, addr: SocketAddr) {
        if !self.batch.is_empty() {
            self.transmits.seal(sealer, addr, self.batch.as_bytes());
            self.batch.clear();
        }
    }
}
