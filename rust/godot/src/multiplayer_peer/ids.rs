//! Godot peer ids (int32, 2..=2^31-1) for Sustenet player ids (63-bit).
//!
//! A player's peer id is derived from its player id, so the same player gets
//! the same peer id on every cluster unless another player there already
//! holds it, or a peer that left held it lately (the last
//! [`RECENT_PEER_IDS`] ids freed); then the next free id is taken. The
//! cluster tells the client its id in the Welcome, so the two sides never
//! have to agree by computation.
//!
//! Why a freed id waits: packets other clients sent to the old peer (their
//! SceneMultiplayer had not yet seen it leave) and packets the old peer sent
//! may still be on their way. Under a new id they reach nobody; under the old
//! one they would reach the new peer, whose SceneMultiplayer knows none of
//! the old one's node cache ids ("ID 1 not found in cache of peer …").

use std::collections::{HashMap, VecDeque};

/// Smallest id a player gets (1 is the server).
pub const FIRST_PEER_ID: i32 = 2;

/// How many of the ids freed last on one server peer are not given again
/// (a peer that closes and joins again, or a player that comes back, gets
/// another id). 4,096 ids: under 100 KiB of bookkeeping.
pub const RECENT_PEER_IDS: usize = 4_096;

/// The two-way map between player ids and Godot peer ids on one cluster.
#[derive(Debug, Default)]
pub struct PeerIds {
    by_peer: HashMap<i32, u64>,
    by_player: HashMap<u64, i32>,
    /// Ids freed lately, oldest first (at most [`RECENT_PEER_IDS`]).
    recent: VecDeque<i32>,
    /// How many times each id is in `recent`.
    recent_count: HashMap<i32, u32>,
}

/// The id a player gets when it is free: a mix of the player id's bits
/// folded into 2..=2^31-1.
pub fn preferred_peer_id(player: u64) -> i32 {
    // splitmix64's finaliser: neighbouring player ids land far apart.
    let mut z = player.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let span = u64::from(i32::MAX.unsigned_abs()) - 1; // ids 2..=i32::MAX
    i32::try_from(z % span).map_or(FIRST_PEER_ID, |v| v + FIRST_PEER_ID)
}

/// The id after `id`, wrapping from 2^31-1 to 2.
pub fn next_peer_id(id: i32) -> i32 {
    if !(FIRST_PEER_ID..i32::MAX).contains(&id) {
        FIRST_PEER_ID
    } else {
        id + 1
    }
}

impl PeerIds {
    /// The player's peer id, giving it one when it has none.
    pub fn insert(&mut self, player: u64) -> i32 {
        if let Some(id) = self.by_player.get(&player) {
            return *id;
        }
        let mut id = preferred_peer_id(player);
        while self.by_peer.contains_key(&id) || self.recent_count.contains_key(&id) {
            id = next_peer_id(id);
        }
        self.by_peer.insert(id, player);
        self.by_player.insert(player, id);
        id
    }

    /// Forgets a player; returns the peer id it had, which is not given
    /// again until [`RECENT_PEER_IDS`] more ids are freed.
    pub fn remove_player(&mut self, player: u64) -> Option<i32> {
        let id = self.by_player.remove(&player)?;
        self.by_peer.remove(&id);
        self.remember_freed(id);
        Some(id)
    }

    /// Keeps `id` among the recently freed ones, forgetting the oldest
    /// beyond [`RECENT_PEER_IDS`].
    fn remember_freed(&mut self, id: i32) {
        self.recent.push_back(id);
        *self.recent_count.entry(id).or_insert(0) += 1;
        while self.recent.len() > RECENT_PEER_IDS {
            let Some(old) = self.recent.pop_front() else {
                break;
            };
            if let Some(n) = self.recent_count.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    self.recent_count.remove(&old);
                }
            }
        }
    }

    /// The player behind a peer id.
    pub fn player(&self, peer: i32) -> Option<u64> {
        self.by_peer.get(&peer).copied()
    }

    /// The peer id of a player.
    pub fn peer(&self, player: u64) -> Option<i32> {
        self.by_player.get(&player).copied()
    }

    /// How many peers there are.
    pub fn count(&self) -> usize {
        self.by_peer.len()
    }

    /// Every (peer id, player id) pair, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.by_peer.iter().map(|(p, pl)| (*p, *pl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_in_godot_range_and_map_both_ways() {
        let mut ids = PeerIds::default();
        for player in [0u64, 1, 2, u64::MAX >> 1, 1 << 40, 12345] {
            let id = ids.insert(player);
            assert!(id >= 2, "{id}");
            assert_eq!(ids.player(id), Some(player));
            assert_eq!(ids.peer(player), Some(id));
            assert_eq!(ids.insert(player), id, "stable for the same player");
        }
        assert_eq!(ids.iter().count(), 6);
    }

    #[test]
    fn a_taken_id_moves_the_next_player_on() {
        let mut ids = PeerIds::default();
        let a = ids.insert(7);
        // Forge a second player who prefers the same id by holding it.
        ids.by_peer.insert(a + 1, 99);
        ids.by_player.insert(99, a + 1);
        let pref = preferred_peer_id(7);
        assert_eq!(a, pref);
        // A player preferring `a` now gets a + 2.
        ids.remove_player(7);
        ids.by_peer.insert(a, 55);
        ids.by_player.insert(55, a);
        assert_eq!(ids.insert(7), a + 2);
        assert_eq!(ids.remove_player(7), Some(a + 2));
        assert_eq!(ids.player(a + 2), None);
    }

    #[test]
    fn a_freed_id_is_not_given_again_until_many_more_are_freed() {
        let mut ids = PeerIds::default();
        let first = ids.insert(7);
        assert_eq!(ids.remove_player(7), Some(first));
        // The same player joining again gets another id.
        let second = ids.insert(7);
        assert_ne!(second, first);
        assert_eq!(second, next_peer_id(first));
        assert_eq!(ids.remove_player(7), Some(second));
        assert_ne!(ids.insert(7), second);
        ids.remove_player(7);
        // After RECENT_PEER_IDS more ids are freed, the preferred one is free again.
        for player in 1000..1000 + RECENT_PEER_IDS as u64 {
            ids.insert(player);
            ids.remove_player(player);
        }
        assert_eq!(ids.recent.len(), RECENT_PEER_IDS);
        assert!(ids.recent_count.values().all(|n| *n >= 1));
        assert_eq!(ids.insert(7), first);
    }

    #[test]
    fn the_top_id_wraps_to_two() {
        assert_eq!(next_peer_id(i32::MAX), 2);
        assert_eq!(next_peer_id(2), 3);
        assert_eq!(next_peer_id(1), 2);
    }
}
