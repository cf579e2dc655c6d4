//! The server face of `SustenetMultiplayerPeer`: made from a
//! `SustenetCluster`; peer 1, with one peer per player that said hello.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use godot::classes::multiplayer_peer::ConnectionStatus;
use godot::global::Error as GdError;
use godot::prelude::*;
use sustenet_server::fragments::Fragments;
use sustenet_server::{ClusterHandle, PlayerId, SendError};

use super::ids::PeerIds;
use super::inbox::{Incoming, Refused};
use super::relay_budget::{RelayBudget, relay_receivers};
use super::scene_check::{check_client_packet, relay_request};
use super::tap::{ClusterLink, ClusterTap, TapReceiver};
use super::{Face, Stats, SustenetMultiplayerPeer, wire};
use crate::Error;

/// A move asked with `transfer_peer`, waiting for the client's MoveReady.
#[derive(Debug)]
struct PendingMove {
    target: u64,
    state: Vec<u8>,
    deadline: Instant,
    /// The client answered MoveReady.
    ready: bool,
}

/// The server side's state.
#[derive(Debug)]
pub(super) struct ServerFace {
    tap: TapReceiver<ClusterTap>,
    pub(super) handle: Option<ClusterHandle>,
    pub(super) ids: PeerIds,
    moves: HashMap<PlayerId, PendingMove>,
    /// Players kicked for bad input: their packets until they are gone are ignored.
    dropped: HashSet<PlayerId>,
    /// The positions the game reported, on the cluster's grid.
    pub(super) grid: Option<Fragments>,
    /// Players whose peer leaves at the next poll, once SceneMultiplayer has
    /// taken the packets they sent before leaving.
    leaving: Vec<PlayerId>,
    /// Byes each player on the cluster sent on its connection; a hello after
    /// more than `max_rejoins` of them gets the player kicked.
    byes: HashMap<PlayerId, u32>,
    /// `max_rejoins` of the peer when this face was made.
    max_rejoins: u32,
    /// Relayed bytes each client may still make SceneMultiplayer send.
    relay_budget: RelayBudget,
    /// Tells this face from one made later on the same peer object.
    serial: u64,
}

/// Serial numbers of server faces.
static NEXT_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl ServerFace {
    pub(super) fn new(link: ClusterLink, max_rejoins: u32) -> Self {
        Self {
            tap: link.tap,
            handle: link.handle,
            ids: PeerIds::default(),
            moves: HashMap::new(),
            dropped: HashSet::new(),
            grid: Fragments::new(link.grid).ok(),
            leaving: Vec::new(),
            byes: HashMap::new(),
            max_rejoins,
            relay_budget: RelayBudget::default(),
            serial: NEXT_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Whether `face` is this very server face (not one made after it).
    fn is(face: &Face, serial: u64) -> bool {
        matches!(face, Face::Server(s) if s.serial == serial)
    }

    fn send(&self, player: PlayerId, command: u16, payload: Vec<u8>) {
        if let Some(h) = &self.handle {
            let _ = h.send(player, command, payload, true);
        }
    }

    /// Tells every peer's client that the server's peer closed.
    pub(super) fn say_bye(&self) {
        for (_, player) in self.ids.iter() {
            self.send(player, wire::BYE, Vec::new());
        }
    }

    /// Disconnects a player for bad input; its peer leaves when it is gone.
    fn drop_player(&mut self, player: PlayerId, why: impl std::fmt::Display) {
        if !self.dropped.insert(player) {
            return;
        }
        godot_warn!("SustenetMultiplayerPeer: player {player} sent {why}; disconnecting it");
        if let Some(h) = &self.handle {
            let _ = h.kick(
                player,
                format!("the server's game refused your data: {why}"),
            );
        }
    }

    /// Whether `packet` from `player`, if it is a relay request, fits the
    /// player's relayed-bytes budget (`per_sec`, 0: no limit); a player over
    /// it is dropped.
    fn relay_within_budget(&mut self, player: PlayerId, packet: &[u8], per_sec: u64) -> bool {
        let Some((target, len)) = relay_request(packet) else {
            return true;
        };
        let receivers = relay_receivers(target, self.ids.count());
        let cost = u64::try_from(len)
            .unwrap_or(u64::MAX)
            .saturating_mul(receivers);
        if self
            .relay_budget
            .spend(player, cost, per_sec, Instant::now())
        {
            return true;
        }
        let why = format!(
            "relay requests over max_client_relay_bytes_per_sec ({per_sec} bytes a second, packet size times receivers)"
        );
        self.drop_player(player, why);
        false
    }

    /// Sends a data payload to the target peer(s).
    pub(super) fn put(
        &mut self,
        target: i32,
        payload: Vec<u8>,
        reliable: bool,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        let Some(h) = &self.handle else {
            return Err(Error::quiet(GdError::ERR_UNCONFIGURED));
        };
        if target > 1 {
            let Some(player) = self.ids.player(target) else {
                return Err(Error::new(
                    GdError::ERR_INVALID_PARAMETER,
                    format!("SustenetMultiplayerPeer: no peer {target}"),
                ));
            };
            let len = payload.len();
            return match h.send(player, wire::DATA, payload, reliable) {
                Ok(()) => {
                    stats.sent(len);
                    Ok(())
                }
                Err(SendError::Transferring(_)) => Ok(()),
                Err(e) => Err(Error::new(
                    GdError::ERR_BUSY,
                    format!("SustenetMultiplayerPeer: {e}"),
                )),
            };
        }
        if target == 1 {
            return Err(Error::new(
                GdError::ERR_INVALID_PARAMETER,
                "SustenetMultiplayerPeer: the server does not send to itself (peer 1)",
            ));
        }
        let except = -target; // 0 when sending to everyone
        for (peer, player) in self.ids.iter() {
            if peer != except {
                // A slow or moving player is the cluster's business; the rest get it.
                if h.send(player, wire::DATA, payload.clone(), reliable)
                    .is_ok()
                {
                    stats.sent(payload.len());
                }
            }
        }
        Ok(())
    }

    /// Starts a move of `peer`'s player: Move to the client, transfer on its answer.
    pub(super) fn begin_move(
        &mut self,
        peer: i32,
        target: u64,
        state: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), Error> {
        let Some(player) = self.ids.player(peer) else {
            return Err(Error::new(
                GdError::ERR_INVALID_PARAMETER,
                format!("SustenetMultiplayerPeer.transfer_peer: no peer {peer}"),
            ));
        };
        if state.len() > sustenet_proto::message::USER_DATA_MAX {
            return Err(Error::new(
                GdError::ERR_INVALID_PARAMETER,
                "SustenetMultiplayerPeer.transfer_peer: the state is over 16 KiB",
            ));
        }
        if self.moves.contains_key(&player) {
            return Err(Error::new(
                GdError::ERR_BUSY,
                "SustenetMultiplayerPeer.transfer_peer: a move is already under way",
            ));
        }
        self.send(player, wire::MOVE, Vec::new());
        self.moves.insert(
            player,
            PendingMove {
                target,
                state,
                deadline: Instant::now() + timeout,
                ready: false,
            },
        );
        Ok(())
    }

    /// Moves the player now (answer or timeout); false when there was no move.
    fn finish_move(&mut self, player: PlayerId) -> bool {
        let Some(m) = self.moves.remove(&player) else {
            return false;
        };
        if let Some(h) = &self.handle
            && let Err(e) = h.transfer(player, m.target, m.state)
        {
            godot_error!("SustenetMultiplayerPeer.transfer_peer: {e}");
        }
        true
    }

    /// Moves whose client answered, or did not answer in time.
    fn due_moves(&self) -> Vec<PlayerId> {
        let now = Instant::now();
        self.moves
            .iter()
            .filter(|(_, m)| m.ready || m.deadline <= now)
            .map(|(p, _)| *p)
            .collect()
    }
}

impl SustenetMultiplayerPeer {
    /// Takes the cluster node's events; called by `poll`.
    pub(super) fn poll_server(&mut self) {
        // SceneMultiplayer took every packet after the last poll: players that
        // left (or are ready to move) since then can go now.
        let (serial, due) = match &mut self.face {
            Face::Server(s) => {
                let moves = s.due_moves();
                for player in &moves {
                    s.finish_move(*player);
                }
                let mut due = std::mem::take(&mut s.leaving);
                due.extend(moves);
                (s.serial, due)
            }
            _ => return,
        };
        // A signal handler may close this face or make a new one: what is
        // left belongs to the old cluster and stops there.
        for player in due {
            if !ServerFace::is(&self.face, serial) {
                return;
            }
            self.remove_player(player, true);
        }
        let (events, overflowed) = match &self.face {
            Face::Server(s) => (s.tap.rx.try_iter().collect::<Vec<_>>(), s.tap.overflowed()),
            _ => return,
        };
        for ev in events {
            if !ServerFace::is(&self.face, serial) {
                return;
            }
            self.server_event(ev);
        }
        if overflowed && ServerFace::is(&self.face, serial) {
            godot_error!(
                "SustenetMultiplayerPeer: packets were lost while the peer was not polled; closing"
            );
            self.close_server();
        }
    }

    fn server_event(&mut self, ev: ClusterTap) {
        match ev {
            ClusterTap::Handle(h) => {
                if let Face::Server(s) = &mut self.face {
                    s.handle = Some(h);
                }
            }
            ClusterTap::Packet {
                player,
                command,
                payload,
            } => self.server_packet(player, command, &payload),
            ClusterTap::Position(player, pos) => {
                if let Face::Server(s) = &mut self.face
                    && let Some(g) = &mut s.grid
                {
                    let _ = g.set_position(player, pos);
                }
            }
            ClusterTap::Left(player) => {
                if let Face::Server(s) = &mut self.face {
                    if let Some(g) = &mut s.grid {
                        g.remove(player);
                    }
                    s.byes.remove(&player);
                    s.leaving.push(player);
                }
            }
            ClusterTap::Stopped => self.close_server(),
        }
    }

    /// The cluster is gone: every peer leaves, the peer is disconnected
    /// (before the signals, so a handler may make a new server at once).
    fn close_server(&mut self) {
        let peers: Vec<i32> = match &self.face {
            Face::Server(s) => s.ids.iter().map(|(p, _)| p).collect(),
            _ => Vec::new(),
        };
        self.face = Face::Idle;
        self.inbox.clear();
        self.status = ConnectionStatus::DISCONNECTED;
        for p in peers {
            self.signals().peer_disconnected().emit(i64::from(p));
        }
    }

    /// A player's peer leaves (`signal`: emit `peer_disconnected`).
    fn remove_player(&mut self, player: PlayerId, signal: bool) {
        let Face::Server(s) = &mut self.face else {
            return;
        };
        s.dropped.remove(&player);
        s.moves.remove(&player);
        s.relay_budget.forget(player);
        let Some(peer) = s.ids.remove_player(player) else {
            return;
        };
        self.inbox.forget(peer);
        if signal {
            self.signals().peer_disconnected().emit(i64::from(peer));
        }
    }

    /// `disconnect_peer`: kicks the player; `force` forgets it now, silently.
    pub(super) fn disconnect_player(&mut self, peer: i32, force: bool) {
        let Face::Server(s) = &mut self.face else {
            return;
        };
        let Some(player) = s.ids.player(peer) else {
            godot_error!("SustenetMultiplayerPeer.disconnect_peer: no peer {peer}");
            return;
        };
        if let Some(h) = &s.handle {
            let _ = h.kick(player, "disconnected by the server's game");
        }
        if force {
            self.remove_player(player, false);
        }
    }

    fn server_packet(&mut self, player: PlayerId, command: u16, payload: &[u8]) {
        let refuse_new = self.refuse_new;
        let relay = self.relay;
        let max_sync = usize::try_from(self.max_client_sync_packet_size).unwrap_or(0);
        let relay_per_sec = u64::try_from(self.max_client_relay_bytes_per_sec).unwrap_or(0);
        let Face::Server(s) = &mut self.face else {
            return;
        };
        if s.dropped.contains(&player) {
            return;
        }
        match command {
            wire::DATA => {
                let Some(peer) = s.ids.peer(player) else {
                    return;
                };
                match wire::decode_data(payload) {
                    Ok(d) => {
                        if let Err(e) = check_client_packet(d.packet, relay, max_sync) {
                            s.drop_player(player, e);
                            return;
                        }
                        if !s.relay_within_budget(player, d.packet, relay_per_sec) {
                            return;
                        }
                        let p = Incoming {
                            from: peer,
                            channel: d.channel,
                            mode: d.mode,
                            packet: d.packet.to_vec(),
                        };
                        let len = p.packet.len();
                        match self.inbox.push(p, d.seq) {
                            Ok(()) => self.stats.received(len),
                            Err(Refused::Full) => {
                                s.drop_player(player, "more data than max_queued_bytes at once")
                            }
                            Err(Refused::Stale) => {}
                        }
                    }
                    Err(e) => s.drop_player(player, e),
                }
            }
            wire::HELLO => {
                if let Err(e) = wire::decode_hello(payload) {
                    s.drop_player(player, e);
                    return;
                }
                if s.moves.contains_key(&player) || s.leaving.contains(&player) {
                    // Its peer is leaving; the client says hello again a
                    // second later, and that one makes a new peer.
                    return;
                }
                if let Some(peer) = s.ids.peer(player) {
                    // A hello again (sent before our welcome arrived, or after a failed move).
                    let w = wire::Welcome {
                        peer_id: peer,
                        relay,
                    };
                    s.send(player, wire::WELCOME, wire::encode_welcome(w));
                    return;
                }
                if refuse_new {
                    s.send(player, wire::REFUSED, Vec::new());
                    return;
                }
                let byes = s.byes.get(&player).copied().unwrap_or(0);
                if byes > s.max_rejoins {
                    let why = format!(
                        "a hello after {byes} byes (a connection's peer may close and join again {} times)",
                        s.max_rejoins
                    );
                    s.drop_player(player, why);
                    return;
                }
                let peer = s.ids.insert(player);
                let w = wire::Welcome {
                    peer_id: peer,
                    relay,
                };
                s.send(player, wire::WELCOME, wire::encode_welcome(w));
                self.signals().peer_connected().emit(i64::from(peer));
            }
            wire::BYE => {
                if s.ids.peer(player).is_some() && !s.leaving.contains(&player) {
                    *s.byes.entry(player).or_insert(0) += 1;
                    s.leaving.push(player);
                }
            }
            wire::MOVE_READY => {
                if let Some(m) = s.moves.get_mut(&player) {
                    m.ready = true;
                }
            }
            other => s.drop_player(player, format!("unknown peer command {other}")),
        }
    }
}
