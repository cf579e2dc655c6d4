//! Interest management: `MultiplayerSynchronizer` visibility from the
//! cluster's fragment grid.
//!
//! The server face mirrors the positions the game gives
//! `SustenetCluster.set_player_position` in a `Fragments` grid of the same
//! configuration, so the peer can answer "who is near" on the game thread.

use godot::classes::MultiplayerSynchronizer;
use std::collections::HashSet;

use godot::prelude::*;

use super::server_face::ServerFace;

/// The peer ids of the players within `radius` of `position`.
pub(super) fn peers_near_ids(s: &ServerFace, pos: [f32; 3], radius: f32) -> Vec<i32> {
    let Some(grid) = &s.grid else {
        return Vec::new();
    };
    let mut out = Vec::new();
    grid.for_each_nearby(pos, radius, |player| {
        if let Some(peer) = s.ids.peer(player) {
            out.push(peer);
        }
    });
    out
}

/// Who should see the synchronizer of `owner`'s player: (peer id, visible)
/// for every peer, visible when near `owner`'s player or `owner` itself.
pub(super) fn visibility(s: &ServerFace, owner: i64, radius: f64) -> Vec<(i32, bool)> {
    let owner = i32::try_from(owner).unwrap_or(0);
    let pos = s
        .ids
        .player(owner)
        .and_then(|p| s.grid.as_ref().and_then(|g| g.position(p)));
    let near: HashSet<i32> = match pos {
        Some(pos) => peers_near_ids(s, pos, radius as f32).into_iter().collect(),
        None => HashSet::new(),
    };
    s.ids
        .iter()
        .map(|(peer, _)| (peer, peer == owner || near.contains(&peer)))
        .collect()
}

/// Applies [`visibility`]'s answer to `sync`; returns how many peers see it.
/// Calls into SceneMultiplayer, which calls the peer back: the caller must
/// hold no borrow of the peer.
pub(super) fn apply_visibility(
    mut sync: Gd<MultiplayerSynchronizer>,
    wanted: &[(i32, bool)],
) -> i64 {
    // Who should see it first, then public off, then who should not: the
    // peers that keep seeing it never get a despawn and spawn in between.
    for (peer, _) in wanted.iter().filter(|(_, w)| *w) {
        if !sync.get_visibility_for(*peer) {
            sync.set_visibility_for(*peer, true);
        }
    }
    if sync.is_visibility_public() {
        sync.set_visibility_public(false);
    }
    for (peer, _) in wanted.iter().filter(|(_, w)| !*w) {
        if sync.get_visibility_for(*peer) {
            sync.set_visibility_for(*peer, false);
        }
    }
    wanted.iter().filter(|(_, w)| *w).count() as i64
}
