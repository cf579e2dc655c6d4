//! The checks the cluster's peer makes on a client's SceneMultiplayer
//! packets before SceneMultiplayer sees them, sans-IO.
//!
//! SceneMultiplayer refuses a malformed packet itself (with an error line)
//! and goes on, but it never drops the peer that sent it. These checks catch
//! what no honest client's SceneMultiplayer sends, so the cluster can drop
//! that client: system messages only a server sends, relays when relay is
//! off, and synchronizer packets far over any synchronizer's size. A client
//! peer reads the server's packets here too: which peers the server
//! announced, and relayed packets from peers it did not announce.

use std::collections::BTreeSet;

/// SceneMultiplayer's command number is the low three bits of byte 0.
const CMD_MASK: u8 = 0x07;
/// `NETWORK_COMMAND_SYNC`.
const COMMAND_SYNC: u8 = 6;
/// `NETWORK_COMMAND_SYS`.
const COMMAND_SYS: u8 = 7;
/// `SYS_COMMAND_AUTH`: authentication data, from either side.
const SYS_AUTH: u8 = 0;
/// `SYS_COMMAND_RELAY`: a packet for the server to pass on.
const SYS_RELAY: u8 = 3;
/// `SYS_CMD_SIZE`: command, system command, peer id (i32).
const SYS_CMD_SIZE: usize = 6;

/// `SYS_COMMAND_ADD_PEER`, server to client: a peer the client reaches through relay.
const SYS_ADD_PEER: u8 = 1;
/// `SYS_COMMAND_DEL_PEER`, server to client: that peer left.
const SYS_DEL_PEER: u8 = 2;

/// A change of the peers a client knows through the server's relay, read
/// from a SceneMultiplayer packet the server sent: (peer id, added).
pub fn relay_peer_change(packet: &[u8]) -> Option<(i32, bool)> {
    let [first, sys, a, b, c, d, ..] = packet else {
        return None;
    };
    if first & CMD_MASK != COMMAND_SYS {
        return None;
    }
    let id = i32::from_le_bytes([*a, *b, *c, *d]);
    match *sys {
        SYS_ADD_PEER => Some((id, true)),
        SYS_DEL_PEER => Some((id, false)),
        _ => None,
    }
}

/// The peer a relayed packet comes from, for a packet the server sent; `None`
/// when `packet` is not a relayed one (same layout as a relay request, with
/// the source where the request has its target).
pub fn relay_source(packet: &[u8]) -> Option<i32> {
    relay_request(packet).map(|(source, _)| source)
}

/// A client's view of the peers the server announced: follows the add and
/// remove peer messages in `packet` (from the server) into `announced`, and
/// says whether the packet may reach SceneMultiplayer. A relayed packet from
/// a peer not announced (yet, or any more) may not: a datagram that overtook
/// the announcement on the reliable channel, or one the departure overtook.
/// SceneMultiplayer would refuse it with an error (`Parameter "pinfo" is
/// null` in its node cache).
pub fn follow_relay_peers(announced: &mut BTreeSet<i32>, packet: &[u8]) -> bool {
    if let Some((peer, added)) = relay_peer_change(packet) {
        if added {
            announced.insert(peer);
        } else {
            announced.remove(&peer);
        }
    }
    relay_source(packet).is_none_or(|from| announced.contains(&from))
}

/// A relay request's target peer and the size of the packet to relay, or
/// `None` when `packet` is not a relay request.
pub fn relay_request(packet: &[u8]) -> Option<(i32, usize)> {
    let [first, sys, a, b, c, d, ..] = packet else {
        return None;
    };
    if first & CMD_MASK != COMMAND_SYS || *sys != SYS_RELAY {
        return None;
    }
    let target = i32::from_le_bytes([*a, *b, *c, *d]);
    Some((target, packet.len() - SYS_CMD_SIZE))
}

/// Why a client's packet is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SceneError {
    /// A system message shorter than its header.
    ShortSystem,
    /// A system message only a server sends (add or remove peer), or an
    /// unknown one.
    ServerOnlySystem(u8),
    /// A relay request while relay is off, one with nothing to relay, or
    /// one inside a relay request.
    Relay,
    /// A synchronizer packet over the limit.
    SyncTooLarge(usize),
}

impl std::fmt::Display for SceneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SceneError::ShortSystem => write!(
                f,
                "a SceneMultiplayer system message shorter than its header"
            ),
            SceneError::ServerOnlySystem(c) => write!(
                f,
                "SceneMultiplayer system message {c}, which only a server sends"
            ),
            SceneError::Relay => write!(
                f,
                "a relay request the server does not take (relay off, empty, or nested)"
            ),
            SceneError::SyncTooLarge(n) => write!(f, "a synchronizer packet of {n} bytes"),
        }
    }
}

/// Checks a packet a client sent; `relay`: whether the server relays,
/// `max_sync`: the largest synchronizer packet taken.
pub fn check_client_packet(packet: &[u8], relay: bool, max_sync: usize) -> Result<(), SceneError> {
    let Some(first) = packet.first() else {
        return Ok(()); // the wire layer refuses empty packets already
    };
    match first & CMD_MASK {
        COMMAND_SYS => {
            let Some(sys) = packet.get(1) else {
                return Err(SceneError::ShortSystem);
            };
            match *sys {
                SYS_AUTH => Ok(()),
                SYS_RELAY if !relay || packet.len() <= SYS_CMD_SIZE => Err(SceneError::Relay),
                // The server's SceneMultiplayer passes the inner packet on
                // (and runs it itself): it gets the same checks, and is
                // never a relay again.
                SYS_RELAY => check_client_packet(
                    packet.get(SYS_CMD_SIZE..).unwrap_or_default(),
                    false,
                    max_sync,
                ),
                _ if packet.len() < SYS_CMD_SIZE => Err(SceneError::ShortSystem),
                other => Err(SceneError::ServerOnlySystem(other)),
            }
        }
        COMMAND_SYNC if packet.len() > max_sync => Err(SceneError::SyncTooLarge(packet.len())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honest_packets_pass() {
        assert_eq!(check_client_packet(&[0, 1, 2, 3], true, 1350), Ok(()));
        assert_eq!(check_client_packet(&[7, 0], true, 1350), Ok(())); // auth done
        assert_eq!(check_client_packet(&[7, 0, 9, 9], false, 1350), Ok(()));
        assert_eq!(
            check_client_packet(&[7, 3, 2, 0, 0, 0, 1], true, 1350),
            Ok(())
        );
        assert_eq!(check_client_packet(&vec![6; 1350], true, 1350), Ok(()));
    }

    #[test]
    fn relay_requests_are_read() {
        assert_eq!(relay_request(&[7, 3, 0, 0, 0, 0, 1, 2]), Some((0, 2)));
        assert_eq!(
            relay_request(&[0x0F, 3, 0xFB, 0xFF, 0xFF, 0xFF, 1]),
            Some((-5, 1))
        );
        assert_eq!(relay_request(&[7, 3, 9, 0, 0, 0]), Some((9, 0)));
        assert_eq!(relay_request(&[7, 3, 9, 0, 0]), None);
        assert_eq!(relay_request(&[7, 0, 9, 0, 0, 0, 1]), None);
        assert_eq!(relay_request(&[0, 3, 9, 0, 0, 0, 1]), None);
    }

    #[test]
    fn relayed_packets_from_peers_not_announced_are_held_back() {
        let sys = |cmd: u8, id: i32| {
            let mut p = vec![7, cmd];
            p.extend_from_slice(&id.to_le_bytes());
            p
        };
        let relayed_from = |id: i32| {
            let mut p = sys(SYS_RELAY, id);
            p.push(6); // a synchronizer packet inside
            p
        };
        let mut announced = BTreeSet::new();
        // Before the add peer message: dropped.
        assert!(!follow_relay_peers(&mut announced, &relayed_from(5)));
        assert!(follow_relay_peers(&mut announced, &sys(SYS_ADD_PEER, 5)));
        assert!(follow_relay_peers(&mut announced, &relayed_from(5)));
        assert!(!follow_relay_peers(&mut announced, &relayed_from(6)));
        // The server's own packets always pass.
        assert!(follow_relay_peers(&mut announced, &[6, 0, 0]));
        assert!(follow_relay_peers(&mut announced, &[0, 1]));
        // After the remove peer message: dropped again.
        assert!(follow_relay_peers(&mut announced, &sys(SYS_DEL_PEER, 5)));
        assert!(!follow_relay_peers(&mut announced, &relayed_from(5)));
        assert!(announced.is_empty());
    }

    #[test]
    fn relay_peer_announcements_are_read() {
        assert_eq!(relay_peer_change(&[7, 1, 5, 0, 0, 0]), Some((5, true)));
        assert_eq!(
            relay_peer_change(&[7, 2, 0xFF, 0xFF, 0xFF, 0x7F]),
            Some((i32::MAX, false))
        );
        assert_eq!(relay_peer_change(&[7, 3, 5, 0, 0, 0, 9]), None);
        assert_eq!(relay_peer_change(&[0, 1, 5, 0, 0, 0]), None);
        assert_eq!(relay_peer_change(&[7, 1, 5, 0, 0]), None);
    }

    #[test]
    fn what_only_a_server_sends_is_refused() {
        assert_eq!(
            check_client_packet(&[7], true, 1350),
            Err(SceneError::ShortSystem)
        );
        assert_eq!(
            check_client_packet(&[7, 1, 2, 0, 0, 0], true, 1350),
            Err(SceneError::ServerOnlySystem(1))
        );
        assert_eq!(
            check_client_packet(&[7, 2, 2, 0, 0, 0], true, 1350),
            Err(SceneError::ServerOnlySystem(2))
        );
        assert_eq!(
            check_client_packet(&[7, 9, 2, 0, 0, 0], true, 1350),
            Err(SceneError::ServerOnlySystem(9))
        );
        assert_eq!(
            check_client_packet(&[7, 1, 2], true, 1350),
            Err(SceneError::ShortSystem)
        );
        assert_eq!(
            check_client_packet(&[7, 3, 2, 0, 0, 0, 1], false, 1350),
            Err(SceneError::Relay)
        );
        assert_eq!(
            check_client_packet(&[7, 3, 2, 0, 0, 0], true, 1350),
            Err(SceneError::Relay)
        );
        assert_eq!(
            check_client_packet(&vec![6; 1351], true, 1350),
            Err(SceneError::SyncTooLarge(1351))
        );
        // A relayed packet gets the same checks, and is no relay itself.
        let mut big = vec![7, 3, 0, 0, 0, 0];
        big.extend(vec![6; 60_000]);
        assert_eq!(
            check_client_packet(&big, true, 1350),
            Err(SceneError::SyncTooLarge(60_000))
        );
        assert_eq!(
            check_client_packet(&[7, 3, 0, 0, 0, 0, 7, 1, 2, 0, 0, 0], true, 1350),
            Err(SceneError::ServerOnlySystem(1))
        );
        assert_eq!(
            check_client_packet(&[7, 3, 0, 0, 0, 0, 7, 3, 1, 0, 0, 0, 0], true, 1350),
            Err(SceneError::Relay)
        );
        // The flag bits above the command do not hide it.
        assert_eq!(
            check_client_packet(&[0x0F, 1, 2, 0, 0, 0], true, 1350),
            Err(SceneError::ServerOnlySystem(1))
        );
    }
}
