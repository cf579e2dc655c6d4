//! The player table and what the core publishes of it for other tasks:
//! one entry per player (connected, away or moving), its connection's
//! queue, and the shared seat count and resumable sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sustenet_proto::crypto::{ClientSessionKeys, DatagramSealer};
use sustenet_proto::resume::ReplayLog;
use sustenet_proto::{ClusterToClient, Ticket};

use super::outbox::{Full, QueueLevel};
use super::output::Outputs;
use super::path::UdpPath;
use crate::fragments::Seeded;
use crate::ids::PlayerId;

/// Sessions that can be resumed, by session id: the connection tasks check
/// a reconnect's proof here, off the core, and only pass on proven ones.
pub(crate) type Sessions = Mutex<HashMap<u64, (PlayerId, Arc<ClientSessionKeys>)>>;

/// The player table, keyed with a hash seeded from the core's seed.
pub(crate) type Players = HashMap<PlayerId, Player, Seeded>;

/// What the core publishes for the cluster's other tasks (connection
/// tasks, the UDP receiver, the master link) to read.
#[derive(Debug, Default)]
pub(crate) struct Published {
    /// Players holding a seat (connected or away).
    pub(crate) player_count: AtomicUsize,
    /// Occupied fragments, for the status report.
    pub(crate) fragment_count: AtomicUsize,
    /// Sessions that can be resumed.
    pub(crate) sessions: Sessions,
    /// Set when a player event did not fit the master link's queue: the
    /// link registers again, which resends every player.
    pub(crate) resync: AtomicBool,
}

/// One player on this cluster: connected, away (reconnecting) or moving.
pub(crate) struct Player {
    /// The queue of the current connection's writer; `None` while the
    /// player is away (its connection dropped and it may reconnect).
    pub(crate) out: Option<Arc<QueueLevel>>,
    /// The current connection; events of an older one are ignored.
    pub(crate) conn: u64,
    pub(crate) session_id: u64,
    pub(crate) udp: DatagramSealer,
    /// Where its datagrams go, once proven (see [`path`]).
    pub(crate) path: UdpPath,
    /// Set once the redirect to another cluster is decided: nothing more is
    /// sent, and the player is removed when it closes (or at this deadline).
    /// While the player is away the deadline does not count (its reconnect
    /// window does); it starts again when a reconnect sends the redirect
    /// again.
    pub(crate) redirected: Option<Instant>,
    /// The redirect's ticket, kept so that a player whose connection drops
    /// before it read the redirect gets it again when it reconnects.
    pub(crate) redirect: Option<Box<Ticket>>,
    /// Reliable messages kept for a reconnect; `None` when reconnects are off.
    pub(crate) replay: Option<ReplayLog>,
    /// While the player is away: when its seat is given up.
    pub(crate) away_until: Option<Instant>,
    /// The highest reconnect attempt accepted in this session.
    pub(crate) last_attempt: u64,
}

/// A player admitted by [`Core::admit`], ready to join.
pub(crate) struct NewPlayer {
    pub(crate) player: PlayerId,
    pub(crate) conn: u64,
    pub(crate) session_id: u64,
    pub(crate) user_data: Vec<u8>,
    /// The queue of the connection's writer.
    pub(crate) out: Arc<QueueLevel>,
    pub(crate) keys: Arc<ClientSessionKeys>,
    pub(crate) udp: DatagramSealer,
}

/// Queues a message for a player's current connection: `Full` if the
/// player's queue has no room; nothing (and no error) while it is away.
pub(crate) fn queue(outputs: &mut Outputs, p: &Player, m: ClusterToClient) -> Result<(), Full> {
    match &p.out {
        Some(level) => outputs.send(p.conn, level, m),
        None => Ok(()),
    }
}

/// Sets (`Some`) or removes (`None`) an entry of a map shared with other
/// tasks; a poisoned lock is used as is (the map holds no invariant a
/// panic could break).
pub(crate) fn shared_set<K: std::hash::Hash + Eq, V>(
    m: &Mutex<HashMap<K, V>>,
    key: K,
    value: Option<V>,
) {
    let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
    match value {
        Some(v) => {
            m.insert(key, v);
        }
        None => {
            m.remove(&key);
        }
    }
}
