//! What the plugin, and the game through a [`ClusterHandle`], can do: the
//! one API over the core's state. Handle commands run these same methods
//! on the core task.
//!
//! [`ClusterHandle`]: crate::cluster::ClusterHandle

use sustenet_proto::datagram::{self, MAX_UNRELIABLE_PAYLOAD, Record};
use sustenet_proto::{ClusterToClient, DisconnectReason, Goodbye};

use super::output::LinkEvent;
use super::transfers::{ALREADY_MOVING, moving_set};
use super::{Full, State, queue};
use crate::cluster::SendError;
use crate::fragments::{FragmentError, FragmentId, FragmentSettings};
use crate::ids::PlayerId;

/// What the plugin can do from a callback.
pub struct Context<'a> {
    pub(crate) s: &'a mut State,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("players", &self.s.players.len())
            .finish()
    }
}

impl Context<'_> {
    /// Sends a reliable message to one player.
    pub fn send(
        &mut self,
        player: PlayerId,
        command: u16,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if payload.len() > self.s.max_reliable {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: self.s.max_reliable,
            });
        }
        let p = self
            .s
            .players
            .get_mut(&player)
            .ok_or(SendError::UnknownPlayer(player))?;
        if p.redirected.is_some() {
            return Err(SendError::Transferring(player));
        }
        let connected = p.out.is_some();
        if let Some(log) = p.replay.as_mut() {
            log.push(command, payload.to_vec(), connected);
            if log.over_budget() {
                self.s.removals.push((
                    player,
                    Goodbye {
                        reason: DisconnectReason::SendQueueFull,
                        message: "too much was sent to the player while it was away".into(),
                    },
                ));
                return Err(SendError::QueueFull(player));
            }
        }
        if !connected {
            // Away: kept in the log, delivered when the player reconnects.
            return Ok(());
        }
        let msg = ClusterToClient::Data {
            command,
            payload: payload.to_vec(),
        };
        match queue(&mut self.s.outputs, p, msg) {
            Ok(()) => Ok(()),
            Err(Full) => {
                self.s
                    .removals
                    .push((player, Goodbye::new(DisconnectReason::SendQueueFull)));
                Err(SendError::QueueFull(player))
            }
        }
    }

    /// Sends an unreliable message to one player (at most
    /// [`MAX_UNRELIABLE_PAYLOAD`] bytes; larger ones are refused, never cut).
    pub fn send_unreliable(
        &mut self,
        player: PlayerId,
        command: u16,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if payload.len() > MAX_UNRELIABLE_PAYLOAD {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: MAX_UNRELIABLE_PAYLOAD,
            });
        }
        let p = self
            .s
            .players
            .get_mut(&player)
            .ok_or(SendError::UnknownPlayer(player))?;
        let addr = p
            .path
            .target(self.s.now, self.s.udp_silence)
            .ok_or(SendError::NoUdpAddress(player))?;
        let record = Record::Data {
            command,
            payload: payload.to_vec(),
        };
        if let Ok(plain) = datagram::single(&record) {
            self.s.transmits.seal(&mut p.udp, addr, &plain);
        }
        Ok(())
    }

    /// Sends a reliable message to every player, or every player but `except`.
    pub fn broadcast(&mut self, command: u16, payload: &[u8], except: Option<PlayerId>) {
        let ids: Vec<PlayerId> = self
            .s
            .players
            .keys()
            .copied()
            .filter(|id| Some(*id) != except)
            .collect();
        for id in ids {
            let _ = self.send(id, command, payload);
        }
    }

    /// Sends an unreliable message to every player with a known UDP address.
    pub fn broadcast_unreliable(
        &mut self,
        command: u16,
        payload: &[u8],
        except: Option<PlayerId>,
    ) -> Result<(), SendError> {
        if payload.len() > MAX_UNRELIABLE_PAYLOAD {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: MAX_UNRELIABLE_PAYLOAD,
            });
        }
        let ids: Vec<PlayerId> = self
            .s
            .players
            .keys()
            .copied()
            .filter(|id| Some(*id) != except)
            .collect();
        for id in ids {
            let _ = self.send_unreliable(id, command, payload);
        }
        Ok(())
    }

    /// Moves a player to another cluster (server meshing). The master issues
    /// a ticket for `target`; the player is redirected and `state` reaches
    /// the target's game with the player (`on_connect`'s user data).
    ///
    /// Delivery across the move: every reliable message this cluster sent
    /// before the redirect arrives before it; from the redirect on, sends to
    /// the player are refused with [`SendError::Transferring`]. Every message
    /// the client sent before it followed the redirect arrives here (the
    /// player stays until it closes); after that, its messages go to the
    /// target. Nothing is lost or duplicated and order holds per direction.
    /// If the master refuses, [`Plugin::on_transfer_failed`] is called.
    pub fn transfer(
        &mut self,
        player: PlayerId,
        target: u64,
        state: &[u8],
    ) -> Result<(), SendError> {
        let p = self
            .s
            .players
            .get(&player)
            .ok_or(SendError::UnknownPlayer(player))?;
        let refuse = |why| Err(SendError::TransferRefused { player, why });
        if p.away_until.is_some() {
            return refuse("the player is away, waiting to reconnect");
        }
        if p.redirected.is_some()
            || self
                .s
                .transfers
                .pending
                .values()
                .any(|(pl, _)| *pl == player)
        {
            return refuse(ALREADY_MOVING);
        }
        if state.len() > sustenet_proto::message::USER_DATA_MAX {
            return refuse("the state is over 16 KiB");
        }
        let request_id = self.s.transfers.next_id;
        self.s.transfers.next_id += 1;
        let ev = LinkEvent::Transfer {
            request_id,
            player,
            target,
            state: state.to_vec(),
        };
        if self.s.outputs.link(&self.s.transfers.link, ev).is_err() {
            return refuse("the link to the master is not keeping up");
        }
        let deadline = self.s.now + self.s.transfers.timeout;
        self.s
            .transfers
            .pending
            .insert(request_id, (player, deadline));
        moving_set(&self.s.transfers.moving, player, Some(false));
        Ok(())
    }

    /// Places a player in the world. Fragment changes reach the plugin's
    /// [`Plugin::on_fragment`] once the current callback returns.
    pub fn set_position(&mut self, player: PlayerId, pos: [f32; 3]) -> Result<(), FragmentError> {
        if !self.s.players.contains_key(&player) {
            return Err(FragmentError::UnknownPlayer(player));
        }
        let events = self.s.interest.fragments.set_position(player, pos)?;
        self.s.interest.events.extend(events.iter());
        Ok(())
    }

    /// A player's position, if it has one.
    pub fn position(&self, player: PlayerId) -> Option<[f32; 3]> {
        self.s.interest.fragments.position(player)
    }

    /// The fragment a player is in.
    pub fn fragment_of(&self, player: PlayerId) -> Option<FragmentId> {
        self.s.interest.fragments.fragment_of(player)
    }

    /// How far a player sees: updates about players within this distance reach it.
    pub fn set_interest_radius(
        &mut self,
        player: PlayerId,
        radius: f32,
    ) -> Result<(), FragmentError> {
        self.s
            .interest
            .fragments
            .set_interest_radius(player, radius)
    }

    /// Overrides one fragment's cap and update rate.
    pub fn set_fragment_settings(
        &mut self,
        fragment: FragmentId,
        settings: FragmentSettings,
    ) -> Result<(), FragmentError> {
        let ev = self
            .s
            .interest
            .fragments
            .set_fragment_settings(fragment, settings)?;
        self.s.interest.events.extend(ev);
        Ok(())
    }

    /// Players within `radius` of `pos` (inclusive).
    pub fn nearby(&self, pos: [f32; 3], radius: f32) -> Vec<PlayerId> {
        self.s.interest.fragments.nearby(pos, radius)
    }

    /// Sends to every player within `radius` of `pos` (but `except`);
    /// returns how many it was sent to.
    pub fn send_nearby(
        &mut self,
        pos: [f32; 3],
        radius: f32,
        command: u16,
        payload: &[u8],
        reliable: bool,
        except: Option<PlayerId>,
    ) -> Result<usize, SendError> {
        if !reliable && payload.len() > MAX_UNRELIABLE_PAYLOAD {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: MAX_UNRELIABLE_PAYLOAD,
            });
        }
        let targets = self.s.interest.fragments.nearby(pos, radius);
        let mut n = 0;
        for id in targets.into_iter().filter(|id| Some(*id) != except) {
            let r = if reliable {
                self.send(id, command, payload)
            } else {
                self.send_unreliable(id, command, payload)
            };
            if r.is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Sets a player's latest state. Every player whose interest area
    /// covers it receives it unreliably as `command` with the payload
    /// `player id (u64 LE) || state`: within
    /// [`ClusterConfig::state_window`](crate::cluster::ClusterConfig::state_window)
    /// of this call (once the player has a position), at most at its
    /// fragment's update rate: at most twice at once and `2 + d / period`
    /// times in any span `d` (a state set faster waits until that allows,
    /// and goes out then as it is last; see `interest.rs`), and again on
    /// the fragment's updates while it does not change (at least every two
    /// periods). Records for one recipient are
    /// coalesced into as few datagrams as fit the MTU; a state set again
    /// before its record left is sent once, as it is last.
    pub fn set_state(
        &mut self,
        player: PlayerId,
        command: u16,
        state: &[u8],
    ) -> Result<(), SendError> {
        let max = MAX_UNRELIABLE_PAYLOAD - 8;
        if state.len() > max {
            return Err(SendError::TooLarge {
                len: state.len(),
                max,
            });
        }
        if !self.s.players.contains_key(&player) {
            return Err(SendError::UnknownPlayer(player));
        }
        self.s.interest.set_state(player, command, state);
        Ok(())
    }

    /// Tells the plugin (`on_transfer_failed`, once the current command is
    /// done) that a transfer asked through a handle was refused.
    pub(crate) fn refuse_transfer(&mut self, player: PlayerId, reason: Goodbye) {
        self.s.transfers.refused.push((player, reason));
    }

    /// Disconnects a player with reason `Kicked` and a message for it.
    pub fn kick(&mut self, player: PlayerId, message: &str) {
        if self.s.players.contains_key(&player) {
            self.s.removals.push((
                player,
                Goodbye {
                    reason: DisconnectReason::Kicked,
                    message: message.to_owned(),
                },
            ));
        }
    }

    /// The connected players.
    pub fn players(&self) -> Vec<PlayerId> {
        self.s.players.keys().copied().collect()
    }

    /// How many players are connected.
    pub fn player_count(&self) -> usize {
        self.s.players.len()
    }

    /// Whether a player is on this cluster (connected, or away and holding
    /// its seat for a reconnect).
    pub fn is_connected(&self, player: PlayerId) -> bool {
        self.s.players.contains_key(&player)
    }

    /// Whether a player's connection dropped and the cluster is waiting for
    /// it to reconnect.
    pub fn is_away(&self, player: PlayerId) -> bool {
        self.s
            .players
            .get(&player)
            .is_some_and(|p| p.away_until.is_some())
    }
}
