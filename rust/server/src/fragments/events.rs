//! What the grid tells its owner: fragment events and a tick's figures.

use super::FragmentId;
use crate::ids::PlayerId;

/// Something the game should hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentEvent {
    /// A player is now in a fragment (first position, or a move).
    Entered {
        /// The player.
        player: PlayerId,
        /// The fragment it entered.
        fragment: FragmentId,
    },
    /// A player is no longer in a fragment (a move, or removal).
    Exited {
        /// The player.
        player: PlayerId,
        /// The fragment it left.
        fragment: FragmentId,
    },
    /// A fragment went from at-or-under its cap to over it. Reported once
    /// per crossing: not again while it stays over, again after it has come
    /// back under. When a player's entry caused it, the `Entered` event
    /// just before this one names that player.
    OverCap {
        /// The fragment.
        fragment: FragmentId,
        /// How many players are in it now.
        players: usize,
        /// Its cap.
        cap: u32,
    },
}

impl FragmentEvent {
    /// The fragment the event is about.
    pub fn fragment(&self) -> FragmentId {
        match *self {
            FragmentEvent::Entered { fragment, .. }
            | FragmentEvent::Exited { fragment, .. }
            | FragmentEvent::OverCap { fragment, .. } => fragment,
        }
    }
}

/// The events of one [`Fragments::set_position`]: at most an exit, an entry
/// and a cap crossing, in that order. Kept inline so the per-tick position
/// updates allocate nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FragmentEvents(pub(super) [Option<FragmentEvent>; 3]);

impl FragmentEvents {
    /// The events, in order.
    pub fn iter(&self) -> impl Iterator<Item = FragmentEvent> + '_ {
        self.0.iter().flatten().copied()
    }

    /// How many events there are.
    pub fn len(&self) -> usize {
        self.0.iter().flatten().count()
    }

    /// Whether nothing happened (the player stayed in its fragment).
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

impl IntoIterator for FragmentEvents {
    type Item = FragmentEvent;
    type IntoIter = std::iter::Flatten<std::array::IntoIter<Option<FragmentEvent>, 3>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().flatten()
    }
}

/// What one tick's fan-out did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickStats {
    /// Fragments whose players' states were due.
    pub due_fragments: usize,
    /// Players that got at least one subject.
    pub recipients: usize,
    /// (recipient, subject) pairs in total.
    pub pairs: usize,
}
