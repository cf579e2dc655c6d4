//! Who hears whom: the fragment grid, the players' latest states, and the
//! state fan-out served in shares over the core's ticks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sustenet_proto::crypto::DatagramSealer;
use sustenet_proto::datagram;

use super::Players;
use super::transmit::Transmits;
use crate::fragments::{FragmentEvent, Fragments, Seeded};
use crate::ids::PlayerId;

/// The fragment grid, the players' latest states, the fan-out in progress,
/// and fragment events not yet given to the plugin.
pub(crate) struct Interest {
    pub(crate) fragments: Fragments,
    /// Looked up once per record of the state fan-out, hence the cheap hash.
    pub(crate) states: HashMap<PlayerId, (u16, Vec<u8>), Seeded>,
    pub(crate) spread: Spread,
    pub(crate) events: Vec<FragmentEvent>,
}

impl Interest {
    /// An empty world on `fragments`; `hasher` keys the state table.
    pub(crate) fn new(fragments: Fragments, hasher: Seeded) -> Self {
        Self {
            fragments,
            states: HashMap::with_hasher(hasher),
            spread: Spread::default(),
            events: Vec::new(),
        }
    }

    /// One update tick at `now`: when a new update is due, whoever the last
    /// one has not reached yet is served first and the new fan-out is
    /// planned over `slices` ticks; then this tick's share is sent.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        slices: usize,
        players: &mut Players,
        out: &mut StateOut<'_>,
    ) {
        let Interest {
            fragments,
            states,
            spread,
            ..
        } = self;
        if !fragments.start_tick(now).is_empty() {
            for i in spread.take(true) {
                if let Some((recipient, subjects)) = spread.get(i) {
                    out.send(players, states, recipient, subjects);
                }
            }
            spread.clear();
            fragments.fan_out(|recipient, subjects| spread.push(recipient, subjects));
            spread.plan(slices);
        }
        for i in spread.take(false) {
            if let Some((recipient, subjects)) = spread.get(i) {
                out.send(players, states, recipient, subjects);
            }
        }
    }
}

/// The recipients of the latest state update and what each must hear, served
/// in shares over the core ticks until the next update instead of all at
/// once. Fragments share one schedule, so every recipient's datagram of an
/// update is due on the same tick; sent in one go, that is a burst of one
/// datagram per player (2,000 at 2,000 players) that holds the core and
/// everything queued behind it (echoes, joins) for its whole length, and
/// reaches the clients' machines as one burst too. Served in shares, each
/// recipient still gets one datagram per update, with the states as they
/// are when it is sent.
#[derive(Debug, Default)]
pub(crate) struct Spread {
    /// Every recipient's subjects, one after the other.
    subjects: Vec<PlayerId>,
    /// Recipient and the range of `subjects` it hears about.
    recipients: Vec<(PlayerId, std::ops::Range<usize>)>,
    /// The first recipient not served yet.
    next: usize,
    /// Recipients served per core tick.
    share: usize,
}

impl Spread {
    fn clear(&mut self) {
        self.subjects.clear();
        self.recipients.clear();
        self.next = 0;
    }

    fn push(&mut self, recipient: PlayerId, subjects: &[PlayerId]) {
        let start = self.subjects.len();
        self.subjects.extend_from_slice(subjects);
        self.recipients
            .push((recipient, start..self.subjects.len()));
    }

    /// Spreads the recipients pushed since [`Spread::clear`] over `slices` ticks.
    fn plan(&mut self, slices: usize) {
        self.share = self.recipients.len().div_ceil(slices.max(1));
    }

    /// The recipients to serve now (indices for [`Spread::get`]): one
    /// tick's share, or with `all` every one not served yet.
    fn take(&mut self, all: bool) -> std::ops::Range<usize> {
        let end = if all {
            self.recipients.len()
        } else {
            (self.next + self.share).min(self.recipients.len())
        };
        let taken = self.next..end;
        self.next = end;
        taken
    }

    fn get(&self, i: usize) -> Option<(PlayerId, &[PlayerId])> {
        let (recipient, range) = self.recipients.get(i)?;
        Some((*recipient, self.subjects.get(range.clone())?))
    }
}

/// Sends state records to players, through a batch reused for a whole tick.
pub(crate) struct StateOut<'a> {
    pub(crate) transmits: &'a mut Transmits,
    pub(crate) now: Instant,
    pub(crate) udp_silence: Duration,
    pub(crate) batch: datagram::Batch,
}

impl StateOut<'_> {
    /// What one recipient hears of an update: the latest state of each of
    /// its subjects, in as few datagrams as they fit (one, for up to about
    /// 40 states of 16 bytes). A recipient that left, was redirected or is
    /// away (reconnecting) since the fan-out, and subjects that left, are
    /// skipped.
    fn send(
        &mut self,
        players: &mut Players,
        states: &HashMap<PlayerId, (u16, Vec<u8>), Seeded>,
        recipient: PlayerId,
        subjects: &[PlayerId],
    ) {
        let Some(p) = players.get_mut(&recipient) else {
            return;
        };
        let target = p.path.target(self.now, self.udp_silence);
        let (Some(addr), None, None) = (target, p.redirected, p.away_until) else {
            return;
        };
        for subject in subjects {
            let Some((command, state)) = states.get(subject) else {
                continue;
            };
            let parts: [&[u8]; 2] = [&subject.to_le_bytes(), state];
            if !matches!(self.batch.push_data(*command, &parts), Ok(true)) {
                self.flush(&mut p.udp, addr);
                let _ = self.batch.push_data(*command, &parts);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::Spread;

    fn served(s: &mut Spread, all: bool) -> Vec<(u64, Vec<u64>)> {
        s.take(all)
            .map(|i| {
                let (r, subjects) = s.get(i).unwrap();
                (r, subjects.to_vec())
            })
            .collect()
    }

    #[test]
    fn spread_serves_every_recipient_once_in_shares() {
        let mut s = Spread::default();
        for r in 1..=7u64 {
            s.push(r, &[r * 10, r * 10 + 1]);
        }
        s.plan(3);
        let mut seen = Vec::new();
        for share in [3, 3, 1, 0] {
            let got = served(&mut s, false);
            assert_eq!(got.len(), share);
            seen.extend(got);
        }
        let want: Vec<(u64, Vec<u64>)> =
            (1..=7u64).map(|r| (r, vec![r * 10, r * 10 + 1])).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn a_new_update_first_serves_what_the_last_left() {
        let mut s = Spread::default();
        for r in 1..=4u64 {
            s.push(r, &[r + 100]);
        }
        s.plan(4);
        assert_eq!(served(&mut s, false), vec![(1, vec![101])]);
        assert_eq!(
            served(&mut s, true),
            vec![(2, vec![102]), (3, vec![103]), (4, vec![104])]
        );
        s.clear();
        s.push(9, &[]);
        s.plan(0);
        assert_eq!(served(&mut s, false), vec![(9, vec![])]);
        assert!(served(&mut s, false).is_empty());
    }
}
