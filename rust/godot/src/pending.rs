//! Per-player limits on the packets waiting in a `SustenetCluster` node's event queue.
//!
//! The cluster's network side hands every packet to the node through a queue that the node
//! drains on Godot's main thread, a budget per frame. A player who sends faster than the game
//! drains would otherwise fill that queue for everybody. [`PendingQuota`] counts, per player
//! and in all, the packets and bytes waiting, so that the one who goes over the limit pays:
//! its unreliable packets are dropped (and counted), and a reliable packet over the limit
//! disconnects that player (the reliable channel never loses a message silently). Connects,
//! disconnects and the other lifecycle events are never dropped, so the game always hears
//! that a player left.

use std::collections::HashMap;
use std::sync::Mutex;

use sustenet_server::PlayerId;

/// Bytes a waiting packet costs beyond its payload (the event, the signal arguments), so
/// that a flood of empty packets is bounded as well.
pub const PACKET_OVERHEAD: usize = 64;

/// The limits, from the node's properties.
#[derive(Debug, Clone, Copy)]
pub struct QuotaLimits {
    /// Most packets one player may have waiting.
    pub player_packets: usize,
    /// Most bytes (payload + [`PACKET_OVERHEAD`] each) one player may have waiting.
    pub player_bytes: usize,
    /// Most bytes all players together may have waiting.
    pub total_bytes: usize,
}

/// Which limit a packet went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    PlayerPackets,
    PlayerBytes,
    TotalBytes,
}

impl Over {
    /// Why the player is disconnected, as its client is told.
    pub fn kick_message(self) -> &'static str {
        match self {
            Over::PlayerPackets | Over::PlayerBytes => {
                "sent packets faster than the server game handles them"
            }
            Over::TotalBytes => "the server game is behind on every player's packets",
        }
    }
}

#[derive(Debug, Default)]
struct Waiting {
    packets: usize,
    bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    total_bytes: usize,
    players: HashMap<PlayerId, Waiting>,
}

/// What waits in the node's queue, per player; shared by the network side (which admits
/// packets) and the node (which releases them as it drains).
#[derive(Debug)]
pub struct PendingQuota {
    limits: QuotaLimits,
    state: Mutex<State>,
}

impl PendingQuota {
    pub fn new(limits: QuotaLimits) -> Self {
        Self {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a packet of `payload_len` bytes from `player` as waiting, or says which
    /// limit it would go over (then nothing is counted).
    pub fn admit(&self, player: PlayerId, payload_len: usize) -> Result<(), Over> {
        let cost = payload_len.saturating_add(PACKET_OVERHEAD);
        let mut state = self.state();
        if state.total_bytes.saturating_add(cost) > self.limits.total_bytes {
            return Err(Over::TotalBytes);
        }
        let waiting = state.players.entry(player).or_default();
        if waiting.packets >= self.limits.player_packets {
            return Err(Over::PlayerPackets);
        }
        if waiting.bytes.saturating_add(cost) > self.limits.player_bytes {
            return Err(Over::PlayerBytes);
        }
        waiting.packets += 1;
        waiting.bytes += cost;
        state.total_bytes += cost;
        Ok(())
    }

    /// The node took a packet of `payload_len` bytes from `player` off the queue.
    pub fn release(&self, player: PlayerId, payload_len: usize) {
        let cost = payload_len.saturating_add(PACKET_OVERHEAD);
        let mut state = self.state();
        state.total_bytes = state.total_bytes.saturating_sub(cost);
        if let Some(waiting) = state.players.get_mut(&player) {
            waiting.packets = waiting.packets.saturating_sub(1);
            waiting.bytes = waiting.bytes.saturating_sub(cost);
        }
    }

    /// The player left and the node has drained everything it sent: forget it.
    pub fn forget(&self, player: PlayerId) {
        let mut state = self.state();
        if let Some(waiting) = state.players.remove(&player) {
            state.total_bytes = state.total_bytes.saturating_sub(waiting.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(player_packets: usize, player_bytes: usize, total_bytes: usize) -> PendingQuota {
        PendingQuota::new(QuotaLimits {
            player_packets,
            player_bytes,
            total_bytes,
        })
    }

    #[test]
    fn one_player_over_its_packet_limit_does_not_touch_another() {
        let q = quota(3, 1 << 20, 1 << 30);
        for _ in 0..3 {
            assert_eq!(q.admit(1, 10), Ok(()));
        }
        assert_eq!(q.admit(1, 10), Err(Over::PlayerPackets));
        assert_eq!(q.admit(2, 10), Ok(()));
        q.release(1, 10);
        assert_eq!(q.admit(1, 10), Ok(()));
    }

    #[test]
    fn bytes_count_the_payload_and_the_overhead() {
        let q = quota(1000, 2 * (100 + PACKET_OVERHEAD), 1 << 30);
        assert_eq!(q.admit(7, 100), Ok(()));
        assert_eq!(q.admit(7, 100), Ok(()));
        assert_eq!(q.admit(7, 0), Err(Over::PlayerBytes));
        q.release(7, 100);
        assert_eq!(q.admit(7, 0), Ok(()));
    }

    #[test]
    fn the_total_limit_binds_all_players_and_forget_frees_a_leaver() {
        let cost = 100 + PACKET_OVERHEAD;
        let q = quota(1000, 1 << 20, 3 * cost);
        assert_eq!(q.admit(1, 100), Ok(()));
        assert_eq!(q.admit(2, 100), Ok(()));
        assert_eq!(q.admit(3, 100), Ok(()));
        assert_eq!(q.admit(4, 100), Err(Over::TotalBytes));
        q.forget(1);
        assert_eq!(q.admit(4, 100), Ok(()));
    }

    #[test]
    fn a_refused_packet_counts_nothing() {
        let q = quota(1, 1 << 20, 1 << 30);
        assert_eq!(q.admit(1, 5), Ok(()));
        assert_eq!(q.admit(1, 5), Err(Over::PlayerPackets));
        q.release(1, 5);
        assert_eq!(q.admit(1, 5), Ok(()));
        assert_eq!(q.admit(1, 5), Err(Over::PlayerPackets));
    }
}
