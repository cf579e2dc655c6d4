//! [`ClusterHandle`]: the game's way into a running cluster from any thread
//! (a game engine binding, an admin tool). Each method checks what it can
//! at once and queues the matching [`Context`] call for the core: one API,
//! not a copy of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sustenet_proto::datagram::MAX_UNRELIABLE_PAYLOAD;
use sustenet_proto::{DisconnectReason, Goodbye};
use tokio::sync::mpsc;
use tracing::debug;

use super::SendError;
use super::core::{ALREADY_MOVING, Command, Context, Moving};
use crate::ids::PlayerId;

/// Sends commands to a running cluster from any thread or task. Methods
/// never block: a full command queue is reported as [`SendError::Stopped`].
#[derive(Debug, Clone)]
pub struct ClusterHandle {
    tx: mpsc::Sender<Command>,
    max_reliable: Arc<AtomicUsize>,
    moving: Moving,
}

/// The receiving end of a [`ClusterHandle`], passed to
/// [`run_with_handle`](super::run_with_handle).
#[derive(Debug)]
pub struct ClusterCommands {
    pub(crate) rx: mpsc::Receiver<Command>,
    pub(crate) max_reliable: Arc<AtomicUsize>,
    pub(crate) moving: Moving,
}

/// A handle and its command queue (of `capacity` commands).
pub fn command_channel(capacity: usize) -> (ClusterHandle, ClusterCommands) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    // Known once the cluster runs with its frame limit; until then the core checks.
    let max_reliable = Arc::new(AtomicUsize::new(usize::MAX));
    let moving = Moving::default();
    (
        ClusterHandle {
            tx,
            max_reliable: max_reliable.clone(),
            moving: moving.clone(),
        },
        ClusterCommands {
            rx,
            max_reliable,
            moving,
        },
    )
}

/// Logs a command the core could not carry out (the caller has gone on).
fn log_failure<T>(r: Result<T, SendError>) {
    if let Err(e) = r {
        debug!("command failed: {e}");
    }
}

impl ClusterHandle {
    fn check_size(&self, len: usize, reliable: bool) -> Result<(), SendError> {
        let max = if reliable {
            self.max_reliable.load(Ordering::Relaxed)
        } else {
            MAX_UNRELIABLE_PAYLOAD
        };
        if len > max {
            return Err(SendError::TooLarge { len, max });
        }
        Ok(())
    }

    /// Queues `f` to run on the core with the plugin's [`Context`].
    fn run(&self, f: impl FnOnce(&mut Context<'_>) + Send + 'static) -> Result<(), SendError> {
        self.tx
            .try_send(Box::new(f))
            .map_err(|_| SendError::Stopped)
    }

    /// `Some(true)` once the player's redirect is queued, `Some(false)` while
    /// its transfer is asked of the master.
    fn moving(&self, player: PlayerId) -> Option<bool> {
        self.moving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&player)
            .copied()
    }

    /// Sends a message to one player, reliably or not.
    pub fn send(
        &self,
        player: PlayerId,
        command: u16,
        payload: Vec<u8>,
        reliable: bool,
    ) -> Result<(), SendError> {
        if self.moving(player) == Some(true) {
            return Err(SendError::Transferring(player));
        }
        self.check_size(payload.len(), reliable)?;
        self.run(move |ctx| {
            log_failure(if reliable {
                ctx.send(player, command, &payload)
            } else {
                ctx.send_unreliable(player, command, &payload)
            })
        })
    }

    /// Sends a message to every player (but `except`).
    pub fn broadcast(
        &self,
        command: u16,
        payload: Vec<u8>,
        reliable: bool,
        except: Option<PlayerId>,
    ) -> Result<(), SendError> {
        self.check_size(payload.len(), reliable)?;
        self.run(move |ctx| {
            if reliable {
                ctx.broadcast(command, &payload, except);
            } else {
                log_failure(ctx.broadcast_unreliable(command, &payload, except));
            }
        })
    }

    /// Places a player in the world; see [`Context::set_position`].
    pub fn set_position(&self, player: PlayerId, pos: [f32; 3]) -> Result<(), SendError> {
        self.run(move |ctx| {
            if let Err(e) = ctx.set_position(player, pos) {
                debug!(player, "set_position refused: {e}");
            }
        })
    }

    /// Sets a player's latest state; see [`Context::set_state`].
    pub fn set_state(
        &self,
        player: PlayerId,
        command: u16,
        state: Vec<u8>,
    ) -> Result<(), SendError> {
        if state.len() > MAX_UNRELIABLE_PAYLOAD - 8 {
            return Err(SendError::TooLarge {
                len: state.len(),
                max: MAX_UNRELIABLE_PAYLOAD - 8,
            });
        }
        self.run(move |ctx| log_failure(ctx.set_state(player, command, &state)))
    }

    /// Sends to every player within `radius` of `pos`; see [`Context::send_nearby`].
    pub fn send_nearby(
        &self,
        pos: [f32; 3],
        radius: f32,
        command: u16,
        payload: Vec<u8>,
        reliable: bool,
        except: Option<PlayerId>,
    ) -> Result<(), SendError> {
        self.check_size(payload.len(), reliable)?;
        self.run(move |ctx| {
            log_failure(ctx.send_nearby(pos, radius, command, &payload, reliable, except))
        })
    }

    /// Moves a player to another cluster with a state blob; see
    /// [`Context::transfer`]. A refusal on the core reaches the plugin's
    /// `on_transfer_failed`, except a second transfer of a player whose move
    /// is already under way (asked before the core took up the first): the
    /// first goes on and the second is dropped (a debug log), since
    /// `on_transfer_failed` means the player stays.
    pub fn transfer(&self, player: PlayerId, target: u64, state: Vec<u8>) -> Result<(), SendError> {
        if state.len() > sustenet_proto::message::USER_DATA_MAX {
            return Err(SendError::TransferRefused {
                player,
                why: "the state is over 16 KiB",
            });
        }
        if self.moving(player).is_some() {
            return Err(SendError::TransferRefused {
                player,
                why: ALREADY_MOVING,
            });
        }
        self.run(move |ctx| match ctx.transfer(player, target, &state) {
            // A second transfer asked before the core took up the first: the
            // first goes on, so this is no failure of the player's move (the
            // callback would say the player stays).
            Err(SendError::TransferRefused {
                why: ALREADY_MOVING,
                ..
            }) => debug!("transfer of player {player}: {ALREADY_MOVING}; the first goes on"),
            // Asked from outside: the only way back is the callback.
            Err(e) if ctx.is_connected(player) => {
                let reason = Goodbye {
                    reason: DisconnectReason::NoCluster,
                    message: e.to_string(),
                };
                ctx.refuse_transfer(player, reason);
            }
            other => log_failure(other),
        })
    }

    /// Asks the master for an instance ([`Context::spawn_instance`]) from
    /// outside the core; `done` runs on the core with the core's request id
    /// (the one [`Plugin::on_instance`](crate::plugin::Plugin::on_instance)
    /// will get) or the refusal.
    pub fn spawn_instance(
        &self,
        template: String,
        params: Vec<(String, String)>,
        stop_when_empty_sec: u32,
        done: impl FnOnce(Result<u64, crate::cluster::InstanceRequestError>) + Send + 'static,
    ) -> Result<(), SendError> {
        self.run(move |ctx| done(ctx.spawn_instance(&template, &params, stop_when_empty_sec)))
    }

    /// Kicks a player with a message.
    pub fn kick(&self, player: PlayerId, message: impl Into<String>) -> Result<(), SendError> {
        let message = message.into();
        self.run(move |ctx| ctx.kick(player, &message))
    }
}
