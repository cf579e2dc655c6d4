//! The link from a `SustenetClient` or `SustenetCluster` node to the
//! `SustenetMultiplayerPeer` made from it.
//!
//! The node keeps draining its network events as before; the events the peer
//! needs are copied into a bounded queue the peer reads in its `poll`, and
//! packets in the peer's command range ([`super::wire::FIRST_COMMAND`] and up)
//! go to the peer only. No Godot object crosses the queue, so neither side
//! ever borrows the other while Godot calls into it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sustenet_client::{Client, ClientEvent};
use sustenet_server::ClusterHandle;
use sustenet_server::PlayerId;

use super::wire::FIRST_COMMAND;

/// Most events waiting for the peer; one more means the peer stopped polling
/// (it is then closed with an error instead of losing packets silently).
pub const TAP_QUEUE: usize = 1 << 16;

/// What a client node tells its peer.
#[derive(Debug)]
pub enum ClientTap {
    /// The node's network client exists (made at the first login).
    Client(Client),
    /// On a cluster, as this player id: the first join, or the join after a move.
    Joined(u64),
    /// Moved to another cluster; [`ClientTap::Joined`] follows.
    Redirected,
    /// The cluster connection ended.
    Disconnected,
    /// Getting onto a cluster failed: the login or the join was refused, or
    /// the master connection ended before a cluster was joined.
    JoinFailed,
    /// A packet in the peer's command range.
    Packet { command: u16, payload: Vec<u8> },
}

/// What a cluster node tells its peer.
#[derive(Debug)]
pub enum ClusterTap {
    /// The cluster runs; commands go through this handle.
    Handle(ClusterHandle),
    /// A packet in the peer's command range.
    Packet {
        player: PlayerId,
        command: u16,
        payload: Vec<u8>,
    },
    /// The game placed a player (`SustenetCluster.set_player_position`).
    Position(PlayerId, [f32; 3]),
    /// A player left the cluster (for any reason, a move included).
    Left(PlayerId),
    /// The cluster stopped.
    Stopped,
}

/// The sending half, kept by the node.
#[derive(Debug)]
pub struct Tap<T> {
    tx: flume::Sender<T>,
    overflow: Arc<AtomicBool>,
}

/// The receiving half, kept by the peer.
#[derive(Debug)]
pub struct TapReceiver<T> {
    pub rx: flume::Receiver<T>,
    overflow: Arc<AtomicBool>,
}

impl<T> TapReceiver<T> {
    /// Whether an event was lost because the queue was full.
    pub fn overflowed(&self) -> bool {
        self.overflow.load(Ordering::Relaxed)
    }
}

/// A new link.
pub fn tap<T>() -> (Tap<T>, TapReceiver<T>) {
    let (tx, rx) = flume::bounded(TAP_QUEUE);
    let overflow = Arc::new(AtomicBool::new(false));
    (
        Tap {
            tx,
            overflow: overflow.clone(),
        },
        TapReceiver { rx, overflow },
    )
}

impl<T> Tap<T> {
    /// Hands an event to the peer; gives it back once the peer is gone.
    fn send(&self, ev: T) -> Result<(), T> {
        match self.tx.try_send(ev) {
            Ok(()) => Ok(()),
            Err(flume::TrySendError::Full(_)) => {
                if !self.overflow.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        "SustenetMultiplayerPeer is not polled (is it assigned to multiplayer.multiplayer_peer?); it will close"
                    );
                }
                Ok(())
            }
            Err(flume::TrySendError::Disconnected(ev)) => Err(ev),
        }
    }
}

/// Whether a command number belongs to the peer.
pub fn is_peer_command(command: u16) -> bool {
    command >= FIRST_COMMAND
}

/// Sends `ev` through the node's tap; gives it back (and drops the tap)
/// when there is no peer.
pub fn send_to<T>(slot: &mut Option<Tap<T>>, ev: T) -> Result<(), T> {
    let Some(t) = slot else { return Err(ev) };
    t.send(ev).inspect_err(|_| *slot = None)
}

/// Sends `ev` through the node's tap from a `&self` method (a gone peer is
/// noticed at the next [`send_to`]).
pub fn send_ref<T>(slot: &Option<Tap<T>>, ev: T) {
    if let Some(t) = slot {
        let _ = t.send(ev);
    }
}

/// Hands a cluster packet in the peer's range to the peer; gives the payload
/// back when the node must handle it itself (not the peer's, or no peer).
pub fn cluster_packet(
    slot: &mut Option<Tap<ClusterTap>>,
    player: PlayerId,
    command: u16,
    payload: Vec<u8>,
) -> Option<Vec<u8>> {
    if !is_peer_command(command) || slot.is_none() {
        return Some(payload);
    }
    match send_to(
        slot,
        ClusterTap::Packet {
            player,
            command,
            payload,
        },
    ) {
        Ok(()) => None,
        Err(ClusterTap::Packet { payload, .. }) => Some(payload),
        Err(_) => None,
    }
}

/// Copies a client event to the peer; true when the event is the peer's
/// alone (a packet in its range) and the node must not emit it.
pub fn client_event(slot: &mut Option<Tap<ClientTap>>, ev: &ClientEvent) -> bool {
    if slot.is_none() {
        return false;
    }
    let copy = match ev {
        ClientEvent::Joined { player_id, .. } => ClientTap::Joined(*player_id),
        ClientEvent::Redirected { .. } => ClientTap::Redirected,
        ClientEvent::Disconnected { .. } => ClientTap::Disconnected,
        ClientEvent::LoginFailed { .. }
        | ClientEvent::JoinFailed { .. }
        | ClientEvent::MasterDisconnected { .. } => ClientTap::JoinFailed,
        ClientEvent::Packet {
            command, payload, ..
        } if is_peer_command(*command) => {
            let tap = ClientTap::Packet {
                command: *command,
                payload: payload.clone(),
            };
            return send_to(slot, tap).is_ok();
        }
        _ => return false,
    };
    let _ = send_to(slot, copy);
    false
}

/// What a client node hands a peer made from it.
#[derive(Debug)]
pub struct ClientLink {
    pub tap: TapReceiver<ClientTap>,
    /// The node's network client, when it has one already.
    pub client: Option<Client>,
    /// Whether the node is on a cluster now.
    pub joined: bool,
    /// The player id from the last login (0 before).
    pub player_id: u64,
}

/// What a cluster node hands a peer made from it.
#[derive(Debug)]
pub struct ClusterLink {
    pub tap: TapReceiver<ClusterTap>,
    /// The running cluster's handle.
    pub handle: Option<ClusterHandle>,
    /// The cluster's fragment grid settings.
    pub grid: sustenet_server::fragments::GridConfig,
}
