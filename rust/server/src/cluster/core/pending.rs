//! State records waiting for their datagram: one batch per recipient,
//! opened by its first record and sent when it is full or when the state
//! window after that first record ends, whichever comes first. A subject
//! already in a recipient's batch is not added again: its latest state is
//! read when the batch is sent, so a superseded state is never sent.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use sustenet_proto::datagram::MAX_DATAGRAM_PLAINTEXT;

use crate::fragments::Seeded;
use crate::ids::PlayerId;

/// One recipient's records not sent yet, in its slot of
/// [`Pending::slots`]. A recipient keeps its slot, and the slot its
/// vector, from its first record until it leaves, so the fan-out looks a
/// recipient up once per record and allocates nothing once the slots have
/// grown (one per player at most).
#[derive(Debug, Default)]
struct Batch {
    /// Whose batch it is.
    recipient: PlayerId,
    /// Whether it holds records to send.
    open: bool,
    /// Counts the batches opened in this slot: a [`Pending::due`] entry
    /// of an earlier one is stale.
    opened: u64,
    /// Who it will tell about, each once.
    subjects: Vec<PlayerId>,
    /// Their records' bytes, as they were when added.
    bytes: usize,
}

/// Every recipient's pending batch and when each is due.
#[derive(Debug)]
pub(crate) struct Pending {
    window: Duration,
    /// Each recipient's slot, from its first record until it leaves.
    slot_of: HashMap<PlayerId, usize, Seeded>,
    slots: Vec<Batch>,
    /// Slots of recipients that left, to be reused.
    free: Vec<usize>,
    /// Batches in the order they opened, with when each is due (the window
    /// is the same for all, so this is also deadline order), their slot and
    /// the slot's count then. An entry whose batch was sent early (full)
    /// or dropped is stale and skipped.
    due: VecDeque<(Instant, usize, u64)>,
}

impl Pending {
    /// No batches; each is sent at most `window` after its first record.
    pub(crate) fn new(window: Duration, hasher: Seeded) -> Self {
        Self {
            window,
            slot_of: HashMap::with_hasher(hasher),
            slots: Vec::new(),
            free: Vec::new(),
            due: VecDeque::new(),
        }
    }

    /// Adds `subject`'s record of `record_len` bytes (as encoded) to
    /// `recipient`'s batch at `now`. When it would not fit the batch's
    /// datagram, the batch as it was is handed to `send` first and the
    /// record starts a new one.
    pub(crate) fn add(
        &mut self,
        now: Instant,
        recipient: PlayerId,
        subject: PlayerId,
        record_len: usize,
        mut send: impl FnMut(PlayerId, &[PlayerId]),
    ) {
        let slot = self.slot(recipient);
        let Some(b) = self.slots.get_mut(slot) else {
            return;
        };
        if !b.open {
            self.start(now, slot);
        } else if b.subjects.contains(&subject) {
            return;
        } else if b.bytes + record_len > MAX_DATAGRAM_PLAINTEXT {
            send(recipient, &b.subjects);
            self.start(now, slot);
        }
        if let Some(b) = self.slots.get_mut(slot) {
            b.subjects.push(subject);
            b.bytes += record_len;
        }
    }

    /// `recipient`'s slot, given one if it has none.
    fn slot(&mut self, recipient: PlayerId) -> usize {
        if let Some(&slot) = self.slot_of.get(&recipient) {
            return slot;
        }
        let slot = self.free.pop().unwrap_or(self.slots.len());
        if slot == self.slots.len() {
            self.slots.push(Batch::default());
        }
        if let Some(b) = self.slots.get_mut(slot) {
            b.recipient = recipient;
        }
        self.slot_of.insert(recipient, slot);
        slot
    }

    /// Opens a new, empty batch in `slot` at `now`, due one window later.
    fn start(&mut self, now: Instant, slot: usize) {
        if let Some(b) = self.slots.get_mut(slot) {
            Self::close(b);
            b.open = true;
            self.due.push_back((now + self.window, slot, b.opened));
        }
    }

    /// When the oldest batch is due, if any.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.due.front().map(|(at, ..)| *at)
    }

    /// Hands every batch due at `now` to `send` (recipient, subjects), in
    /// the order they opened, and forgets them.
    pub(crate) fn send_due(&mut self, now: Instant, mut send: impl FnMut(PlayerId, &[PlayerId])) {
        while let Some(&(at, slot, opened)) = self.due.front() {
            if at > now {
                break;
            }
            self.due.pop_front();
            // A batch sent early (full) has a later entry for the batch
            // that followed it; a dropped one has none.
            let Some(b) = self
                .slots
                .get_mut(slot)
                .filter(|b| b.open && b.opened == opened)
            else {
                continue;
            };
            send(b.recipient, &b.subjects);
            Self::close(b);
        }
    }

    /// Empties a batch that was sent or dropped; its entry in
    /// [`Pending::due`] is stale from now on.
    fn close(b: &mut Batch) {
        b.open = false;
        b.opened += 1;
        b.subjects.clear();
        b.bytes = 0;
    }

    /// Forgets `recipient`'s batch and slot (it left).
    pub(crate) fn remove(&mut self, recipient: PlayerId) {
        if let Some(slot) = self.slot_of.remove(&recipient) {
            if let Some(b) = self.slots.get_mut(slot) {
                Self::close(b);
            }
            self.free.push(slot);
        }
    }

    /// How many recipients have a batch pending.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.iter().filter(|b| b.open).count()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn sent(p: &mut Pending, now: Instant) -> Vec<(PlayerId, Vec<PlayerId>)> {
        let mut out = Vec::new();
        p.send_due(now, |r, s| out.push((r, s.to_vec())));
        out
    }

    #[test]
    fn a_batch_is_due_one_window_after_its_first_record() {
        let t0 = Instant::now();
        let mut p = Pending::new(5 * MS, Seeded::new());
        let never = |_: PlayerId, _: &[PlayerId]| panic!("not full");
        p.add(t0, 1, 10, 40, never);
        p.add(t0 + 3 * MS, 1, 11, 40, never);
        p.add(t0 + 4 * MS, 2, 10, 40, never);
        assert_eq!(p.next_due(), Some(t0 + 5 * MS));
        assert!(sent(&mut p, t0 + 4 * MS).is_empty());
        assert_eq!(sent(&mut p, t0 + 5 * MS), vec![(1, vec![10, 11])]);
        assert_eq!(p.next_due(), Some(t0 + 9 * MS));
        assert_eq!(sent(&mut p, t0 + 20 * MS), vec![(2, vec![10])]);
        assert_eq!(p.next_due(), None);
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn a_subject_is_added_once_however_often_its_state_changes() {
        let t0 = Instant::now();
        let mut p = Pending::new(5 * MS, Seeded::new());
        for i in 0..10 {
            p.add(t0 + i * MS / 4, 1, 10, 40, |_, _| panic!("not full"));
        }
        assert_eq!(sent(&mut p, t0 + 5 * MS), vec![(1, vec![10])]);
    }

    #[test]
    fn a_full_batch_goes_at_once_and_the_next_has_its_own_window() {
        let t0 = Instant::now();
        let mut p = Pending::new(5 * MS, Seeded::new());
        let mut early = Vec::new();
        let per = MAX_DATAGRAM_PLAINTEXT / 4;
        for s in 0..5u64 {
            let at = t0 + if s < 4 { MS } else { 2 * MS };
            p.add(at, 1, s, per, |r, subjects| {
                early.push((r, subjects.to_vec()))
            });
        }
        assert_eq!(early, vec![(1, vec![0, 1, 2, 3])]);
        // The first batch's entry (due at 6 ms) is stale; the new batch
        // opened at 2 ms is due at 7 ms.
        assert!(sent(&mut p, t0 + 6 * MS).is_empty());
        assert_eq!(sent(&mut p, t0 + 7 * MS), vec![(1, vec![4])]);
    }

    #[test]
    fn a_zero_window_is_due_at_once_and_a_removed_recipient_gets_nothing() {
        let t0 = Instant::now();
        let mut p = Pending::new(Duration::ZERO, Seeded::new());
        p.add(t0, 1, 10, 40, |_, _| panic!("not full"));
        p.add(t0, 2, 10, 40, |_, _| panic!("not full"));
        p.remove(2);
        assert_eq!(sent(&mut p, t0), vec![(1, vec![10])]);
        assert_eq!(p.next_due(), None);
    }
}
