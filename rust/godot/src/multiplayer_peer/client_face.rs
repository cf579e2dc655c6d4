//! The client face of `SustenetMultiplayerPeer`: made from a `SustenetClient`,
//! talks to peer 1 (the cluster).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use godot::classes::multiplayer_peer::ConnectionStatus;
use godot::global::Error as GdError;
use godot::prelude::*;
use sustenet_client::{Client, ClientError};

use super::inbox::{Incoming, Refused};
use super::scene_check::follow_relay_peers;
use super::tap::{ClientLink, ClientTap, TapReceiver};
use super::{Face, Stats, SustenetMultiplayerPeer, wire};
use crate::Error;

/// How often a hello is sent again while the cluster has not answered (the
/// cluster's peer may not exist yet).
const HELLO_EVERY: Duration = Duration::from_secs(1);

/// The client side's state.
#[derive(Debug)]
pub(super) struct ClientFace {
    tap: TapReceiver<ClientTap>,
    client: Option<Client>,
    joined: bool,
    pub(super) player_id: Option<u64>,
    last_hello: Option<Instant>,
    /// Peers SceneMultiplayer learned through the cluster's relay
    /// (add/remove peer messages seen in the cluster's packets).
    relayed: BTreeSet<i32>,
}

impl ClientFace {
    pub(super) fn new(link: ClientLink) -> Self {
        Self {
            tap: link.tap,
            client: link.client,
            joined: link.joined,
            player_id: (link.player_id != 0).then_some(link.player_id),
            last_hello: None,
            relayed: BTreeSet::new(),
        }
    }

    /// Sends a peer message on the reliable channel.
    fn send(&self, command: u16, payload: Vec<u8>) -> Result<(), ClientError> {
        match &self.client {
            Some(c) => c.send(command, payload),
            None => Err(ClientError::NotInCluster),
        }
    }

    /// Tells the cluster this peer closed (the client stays on the cluster).
    pub(super) fn say_bye(&self) {
        if self.joined {
            let _ = self.send(wire::BYE, Vec::new());
        }
    }

    /// Sends a data payload to the server.
    pub(super) fn put(
        &mut self,
        target: i32,
        payload: Vec<u8>,
        reliable: bool,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        match target {
            // Everyone but the server: nobody a client can reach.
            -1 => return Ok(()),
            // Everyone, the server, or everyone but some client: the server.
            t if t <= 1 => {}
            _ => {
                return Err(Error::new(
                    GdError::ERR_INVALID_PARAMETER,
                    format!(
                        "SustenetMultiplayerPeer: a client sends to the server (1) only, not to peer {target}; other peers are reached through the server relay"
                    ),
                ));
            }
        }
        let Some(c) = &self.client else {
            return Err(Error::quiet(GdError::ERR_UNCONFIGURED));
        };
        let len = payload.len();
        let r = if reliable {
            c.send(wire::DATA, payload)
        } else {
            c.send_unreliable(wire::DATA, payload)
        };
        match r {
            Ok(()) => {
                stats.sent(len);
                Ok(())
            }
            Err(e) => Err(Error::new(
                GdError::ERR_BUSY,
                format!("SustenetMultiplayerPeer: {e}"),
            )),
        }
    }
}

impl SustenetMultiplayerPeer {
    /// Takes the client node's events; called by `poll` and `create_client`.
    pub(super) fn poll_client(&mut self) {
        let (events, overflowed) = match &self.face {
            Face::Client(c) => (c.tap.rx.try_iter().collect::<Vec<_>>(), c.tap.overflowed()),
            _ => return,
        };
        for ev in events {
            // A signal handler may have closed the peer meanwhile.
            if !matches!(self.face, Face::Client(_)) {
                return;
            }
            self.client_event(ev);
        }
        if overflowed {
            godot_error!(
                "SustenetMultiplayerPeer: packets were lost while the peer was not polled; closing"
            );
            self.lose_server();
            return;
        }
        self.hello_if_due();
    }

    fn client_event(&mut self, ev: ClientTap) {
        match ev {
            ClientTap::Client(client) => {
                if let Face::Client(c) = &mut self.face {
                    c.client = Some(client);
                }
            }
            ClientTap::Joined(player) => {
                if let Face::Client(c) = &mut self.face {
                    c.joined = true;
                    c.player_id = Some(player);
                    c.last_hello = None;
                }
                self.hello_if_due();
            }
            ClientTap::Redirected => self.leave_old_cluster(),
            ClientTap::Disconnected => self.lose_server(),
            ClientTap::JoinFailed => {
                // Only a peer still waiting for its first cluster gives up: the
                // game sees connection_failed, as when ENet cannot connect.
                let waiting = matches!(&self.face, Face::Client(c) if !c.joined);
                if waiting && self.status == ConnectionStatus::CONNECTING {
                    self.lose_server();
                }
            }
            ClientTap::Packet { command, payload } => self.client_packet(command, &payload),
        }
    }

    /// Sends the hello while connecting, once a second until the welcome.
    fn hello_if_due(&mut self) {
        if self.status != ConnectionStatus::CONNECTING {
            return;
        }
        let Face::Client(c) = &mut self.face else {
            return;
        };
        if !c.joined || c.last_hello.is_some_and(|t| t.elapsed() < HELLO_EVERY) {
            return;
        }
        c.last_hello = Some(Instant::now());
        let _ = c.send(wire::HELLO, wire::encode_hello());
    }

    /// The old cluster's world ends (a move): peer 1 goes, and comes back
    /// when the new cluster welcomes this peer.
    fn leave_old_cluster(&mut self) {
        let relayed = match &mut self.face {
            Face::Client(c) => {
                c.joined = false;
                std::mem::take(&mut c.relayed)
            }
            _ => BTreeSet::new(),
        };
        let was_connected = self.status == ConnectionStatus::CONNECTED;
        self.inbox.clear();
        self.out_seq = [0; 256];
        self.status = ConnectionStatus::CONNECTING;
        if was_connected {
            // The old cluster's other players leave this game too: the new
            // cluster announces its own.
            for peer in relayed {
                self.signals().peer_disconnected().emit(i64::from(peer));
            }
            self.signals().peer_disconnected().emit(1);
        }
    }

    /// The server is gone for good: peer 1 leaves, the peer is disconnected.
    fn lose_server(&mut self) {
        let was_connected = self.status == ConnectionStatus::CONNECTED;
        self.face = Face::Idle;
        self.inbox.clear();
        if was_connected {
            self.signals().peer_disconnected().emit(1);
        }
        self.status = ConnectionStatus::DISCONNECTED;
    }

    fn client_packet(&mut self, command: u16, payload: &[u8]) {
        match command {
            wire::WELCOME => match wire::decode_welcome(payload) {
                Ok(w) if self.status == ConnectionStatus::CONNECTING => {
                    self.unique_id = w.peer_id;
                    self.relay = w.relay;
                    self.status = ConnectionStatus::CONNECTED;
                    self.signals().peer_connected().emit(1);
                }
                Ok(_) => {}
                Err(e) => godot_error!("SustenetMultiplayerPeer: the cluster sent {e}"),
            },
            wire::REFUSED if self.status == ConnectionStatus::CONNECTING => {
                godot_warn!("SustenetMultiplayerPeer: the cluster refuses new peers");
                self.lose_server();
            }
            wire::BYE => self.lose_server(),
            wire::MOVE if self.status == ConnectionStatus::CONNECTED => {
                self.leave_old_cluster();
                if let Face::Client(c) = &mut self.face {
                    // Nothing is sent after this: the status is not CONNECTED.
                    let _ = c.send(wire::MOVE_READY, Vec::new());
                    // Should the move the hello a second later brings
                    // this peer back into the old cluster's game.
                    c.joined = true;
                    c.last_hello = Some(Instant::now());
                }
            }
            wire::DATA if self.status == ConnectionStatus::CONNECTED => {
                match wire::decode_data(payload) {
                    Ok(d) => {
                        if let Face::Client(c) = &mut self.face
                            && !follow_relay_peers(&mut c.relayed, d.packet)
                        {
                            return;
                        }
                        let p = Incoming {
                            from: 1,
                            channel: d.channel,
                            mode: d.mode,
                            packet: d.packet.to_vec(),
                        };
                        let len = p.packet.len();
                        let pushed = self.inbox.push(p, d.seq);
                        if pushed.is_ok() {
                            self.stats.received(len);
                        }
                        if pushed == Err(Refused::Full) {
                            godot_error!(
                                "SustenetMultiplayerPeer: more than max_queued_bytes waiting; closing"
                            );
                            self.lose_server();
                        }
                    }
                    Err(e) => godot_error!("SustenetMultiplayerPeer: the cluster sent {e}"),
                }
            }
            _ => {}
        }
    }
}
