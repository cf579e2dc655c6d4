//! Handoffs to other clusters asked of the master and not answered yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sustenet_proto::Goodbye;

use super::outbox::QueueLevel;
use super::shared_set;
use crate::ids::PlayerId;

/// Handoffs asked of the master and not answered yet.
pub(crate) struct Transfers {
    /// The level of the master link's event queue (its events are
    /// [`Output::Link`](super::output::Output::Link) outputs).
    pub(crate) link: Arc<QueueLevel>,
    pub(crate) next_id: u64,
    pub(crate) pending: HashMap<u64, (PlayerId, Instant)>,
    pub(crate) timeout: Duration,
    /// Players being moved, shared with the handles so they can refuse at
    /// once: false while the master is asked, true once redirected.
    pub(crate) moving: Moving,
    /// Transfers asked through a handle and refused at once: the plugin
    /// hears of them (`on_transfer_failed`) once the command is done.
    pub(crate) refused: Vec<(PlayerId, Goodbye)>,
}

impl Transfers {
    /// The requests whose answer is overdue at `now`, taken out.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<PlayerId> {
        let expired: Vec<(u64, PlayerId)> = self
            .pending
            .iter()
            .filter(|(_, (_, deadline))| now > *deadline)
            .map(|(id, (player, _))| (*id, *player))
            .collect();
        for (request_id, _) in &expired {
            self.pending.remove(request_id);
        }
        expired.into_iter().map(|(_, p)| p).collect()
    }
}

/// Why a transfer is refused when the player's move is already under way
/// (the first one goes on).
pub(crate) const ALREADY_MOVING: &str = "a transfer is already under way";

/// Players being moved to another cluster (see [`Transfers::moving`]).
pub(crate) type Moving = Arc<Mutex<HashMap<PlayerId, bool>>>;

/// Marks `player` as asked for (`Some(false)`), redirected (`Some(true)`)
/// or not moving (`None`).
pub(crate) fn moving_set(m: &Moving, player: PlayerId, redirected: Option<bool>) {
    shared_set(m, player, redirected);
}
