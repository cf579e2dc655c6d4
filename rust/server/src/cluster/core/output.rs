//! What the core asks the driver to do, in order: messages for a player's
//! connection, connections to close or let go, events for the master
//! link, UDP sessions to forget. Datagrams go through [`super::transmit`].

use std::collections::VecDeque;
use std::sync::Arc;

use sustenet_proto::{ClusterToClient, DisconnectReason, Goodbye};

use super::outbox::{Full, QueueLevel, SMALL, Weight};
use crate::ids::PlayerId;

/// A player event or a transfer request for the master link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkEvent {
    Joined(PlayerId),
    Left(PlayerId),
    Transfer {
        request_id: u64,
        player: PlayerId,
        target: u64,
        state: Vec<u8>,
    },
    SpawnInstance {
        request_id: u64,
        template: String,
        params: sustenet_proto::instance::Params,
        stop_when_empty_sec: u32,
    },
}

impl Weight for LinkEvent {
    fn weight(&self) -> usize {
        match self {
            LinkEvent::Transfer { state, .. } => SMALL + state.len(),
            _ => SMALL,
        }
    }
}

/// One thing for the driver to carry out.
#[derive(Debug)]
pub(crate) enum Output {
    /// A message for the writer of connection `conn`, already counted in
    /// that connection's [`QueueLevel`].
    Send { conn: u64, message: ClusterToClient },
    /// Close connection `conn` with `goodbye`, after what is queued to it
    /// when `drain` (not when its queue overflowed).
    Close {
        conn: u64,
        goodbye: Goodbye,
        drain: bool,
    },
    /// Let the writer of connection `conn` stop without a word: the player
    /// is away and may come back on a new connection.
    Release { conn: u64 },
    /// For the master link, already counted in the link's level.
    Link(LinkEvent),
    /// The UDP session of a player removed for `reason`: its datagrams are
    /// no longer opened.
    SessionGone {
        session_id: u64,
        reason: DisconnectReason,
    },
}

/// The core's outputs not yet taken by the driver.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    queue: VecDeque<Output>,
}

impl Outputs {
    /// Queues `message` for connection `conn`, or `Full` if its queue has
    /// no room.
    pub(crate) fn send(
        &mut self,
        conn: u64,
        level: &QueueLevel,
        message: ClusterToClient,
    ) -> Result<(), Full> {
        level.try_add(message.weight())?;
        self.queue.push_back(Output::Send { conn, message });
        Ok(())
    }

    /// Queues `message` for connection `conn` whatever its queue holds.
    pub(crate) fn send_kept(&mut self, conn: u64, level: &QueueLevel, message: ClusterToClient) {
        level.add_kept(message.weight());
        self.queue.push_back(Output::Send { conn, message });
    }

    /// Queues an event for the master link, or `Full` if the link is far
    /// behind.
    pub(crate) fn link(&mut self, level: &Arc<QueueLevel>, ev: LinkEvent) -> Result<(), Full> {
        level.try_add(ev.weight())?;
        self.queue.push_back(Output::Link(ev));
        Ok(())
    }

    /// Queues any other output.
    pub(crate) fn push(&mut self, o: Output) {
        self.queue.push_back(o);
    }

    /// The oldest output, taken out.
    pub(crate) fn pop(&mut self) -> Option<Output> {
        self.queue.pop_front()
    }
}
