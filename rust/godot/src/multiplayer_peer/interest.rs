//! Interest management: `MultiplayerSynchronizer` visibility from the
//! cluster's fragment grid.
//!
//! The server face mirrors the positions the game gives
//! `SustenetCluster.set_player_position` in a `Fragments` grid of the same
//! configuration, so the peer can answer "who is near" on the game thread.

use godot::classes::MultiplayerSynchronizer;
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

/// Makes `sync` visible to the peers near `owner`'s player (and to `owner`).
pub(super) fn update_visibility(
    s: &ServerFace,
    mut sync: Gd<MultiplayerSynchronizer>,
    owner: i64,
    radius: f64,
) -> i64 {
    let owner = i32::try_from(owner).unwrap_or(0);
    let pos = s
        .ids
        .player(owner)
        .and_then(|p| s.grid.as_ref().and_then(|g| g.position(p)));
    let near: std::collections::HashSet<i32> = match pos {
        Some(pos) => peers_near_ids(s, pos, radius as f32).into_iter().collect(),
        None => std::collections::HashSet::new(),
    };
    if sync.is_visibility_public() {
        sync.set_visibility_public(false);
    }
    let mut seen = 0;
    for (peer, _) in s.ids.iter() {
        let want = peer == owner || near.contains(&peer);
        seen += i64::from(want);
        if sync.get_visibility_for(peer) != want {
            sync.set_visibility_for(peer, want);
        }
    }
    seen
}
