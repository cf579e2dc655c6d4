//! The plugin trait: custom Rust game logic inside a cluster.

use sustenet_proto::DisconnectReason;

use crate::cluster::{Context, MasterLinkStatus};
pub use crate::ids::PlayerId;

/// On which channel a packet came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// TCP: reliable and ordered.
    Reliable,
    /// UDP: unreliable, sequenced (stale and duplicated packets are dropped).
    Unreliable,
}

/// Game logic that runs inside a cluster. Every callback runs on the
/// cluster's core task, one at a time, so a plugin needs no locks; it must
/// not block (spawn work that waits on I/O).
///
/// A callback that blocks anyway (game code stuck in a loop) blocks the
/// thread that polls [`run`](crate::cluster::run): the core stops, its
/// heartbeat and Agones health pings stop, and `/health` reports it, as
/// long as that thread is not a runtime worker. `sustenet cluster` polls it
/// on the main thread (`Runtime::block_on`); an embedder that wants the same
/// should do likewise or use `spawn_blocking` with `Handle::block_on`. On a
/// worker of a multi-thread runtime a blocked callback can stop the
/// runtime's I/O and timers for every task, the admin endpoint included.
pub trait Plugin: Send + 'static {
    /// The cluster is listening.
    fn on_start(&mut self, _ctx: &mut Context<'_>) {}
    /// A player connected; `user_data` is what the master put in its token.
    fn on_connect(&mut self, _ctx: &mut Context<'_>, _player: PlayerId, _user_data: &[u8]) {}
    /// A packet arrived from a player.
    fn on_packet(
        &mut self,
        _ctx: &mut Context<'_>,
        _player: PlayerId,
        _command: u16,
        _payload: &[u8],
        _channel: Channel,
    ) {
    }
    /// A player left; the reason says why.
    fn on_disconnect(
        &mut self,
        _ctx: &mut Context<'_>,
        _player: PlayerId,
        _reason: DisconnectReason,
    ) {
    }
    /// A player's connection dropped (`ConnectionLost` or `Timeout`) and the
    /// cluster holds its seat for the reconnect window: the player is still
    /// in the world, reliable messages to it are kept and delivered when it
    /// comes back ([`Plugin::on_reconnect`]); if it does not, `on_disconnect`
    /// follows with [`DisconnectReason::ReconnectTimeout`].
    fn on_connection_lost(
        &mut self,
        _ctx: &mut Context<'_>,
        _player: PlayerId,
        _reason: DisconnectReason,
    ) {
    }
    /// A player whose connection dropped is back, with the same id; what was
    /// sent to it meanwhile has been queued for it in order.
    fn on_reconnect(&mut self, _ctx: &mut Context<'_>, _player: PlayerId) {}
    /// The link to the master changed: registered, or lost (players stay).
    fn on_master(&mut self, _ctx: &mut Context<'_>, _status: &MasterLinkStatus) {}
    /// A transfer asked with [`Context::transfer`] was refused; the player stays.
    fn on_transfer_failed(
        &mut self,
        _ctx: &mut Context<'_>,
        _player: PlayerId,
        _reason: &sustenet_proto::Goodbye,
    ) {
    }
    /// The master answered [`Context::spawn_instance`] request `request_id`:
    /// the instance's cluster id once it is ready, or why it failed
    /// (refused, never registered, crashed, its agent gone, or the link to
    /// the master lost before the answer).
    fn on_instance(
        &mut self,
        _ctx: &mut Context<'_>,
        _request_id: u64,
        _answer: &Result<u64, sustenet_proto::Goodbye>,
    ) {
    }
    /// A player entered or left a fragment, or a fragment went over its cap
    /// (the game decides: refuse, spill over, hand off).
    fn on_fragment(&mut self, _ctx: &mut Context<'_>, _event: crate::fragments::FragmentEvent) {}
    /// Called every tick (the heartbeat interval).
    fn on_tick(&mut self, _ctx: &mut Context<'_>) {}
}

/// A plugin that does nothing: for clusters driven only through a
/// [`crate::cluster::ClusterHandle`] (the Godot node does this).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPlugin;

impl Plugin for NoPlugin {}

/// The example plugin: echo and chat. The tests and `sustenet up` use it.
///
/// - command [`EchoChat::ECHO`]: the payload comes back to the sender on the
///   channel it came on;
/// - command [`EchoChat::CHAT`]: the payload goes to every player, reliably;
/// - command [`EchoChat::KICK_ME`]: the sender is kicked (for testing reasons);
/// - command [`EchoChat::MOVE_ME`]: the payload starts with a cluster id
///   (u64 LE); the sender is handed to that cluster with the rest of the
///   payload as its state (for trying and testing handoffs).
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoChat;

impl EchoChat {
    /// Echo command.
    pub const ECHO: u16 = 1;
    /// Chat command.
    pub const CHAT: u16 = 2;
    /// Kick-me command.
    pub const KICK_ME: u16 = 3;
    /// Move-me command.
    pub const MOVE_ME: u16 = 4;
}

impl Plugin for EchoChat {
    fn on_packet(
        &mut self,
        ctx: &mut Context<'_>,
        player: PlayerId,
        command: u16,
        payload: &[u8],
        channel: Channel,
    ) {
        let result = match (command, channel) {
            (Self::ECHO, Channel::Reliable) => ctx.send(player, command, payload),
            (Self::ECHO, Channel::Unreliable) => ctx.send_unreliable(player, command, payload),
            (Self::CHAT, _) => {
                ctx.broadcast(command, payload, None);
                Ok(())
            }
            (Self::KICK_ME, _) => {
                ctx.kick(player, "you asked to be kicked");
                Ok(())
            }
            (Self::MOVE_ME, _) => match payload.split_first_chunk::<8>() {
                Some((id, state)) => ctx.transfer(player, u64::from_le_bytes(*id), state),
                None => Ok(()),
            },
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::debug!(player, command, "echo failed: {e}");
        }
    }
}

/// [`EchoChat`] plus a shared world with interest management; what
/// `sustenet up` runs.
///
/// - command [`World::POS`]: the payload starts with the sender's position,
///   three `f32` little-endian (x, y, z; anything after is kept). The sender
///   is placed in its fragment and the payload becomes its state: every
///   player whose interest area covers it receives it, unreliably, at the
///   fragment's update rate, as command [`World::STATE`] with the payload
///   `sender id (u64 LE) || position payload`.
/// - everything else behaves as in [`EchoChat`].
#[derive(Debug, Default, Clone, Copy)]
pub struct World;

impl World {
    /// Position report.
    pub const POS: u16 = 10;
    /// State of a nearby player.
    pub const STATE: u16 = 11;
}

impl Plugin for World {
    fn on_packet(
        &mut self,
        ctx: &mut Context<'_>,
        player: PlayerId,
        command: u16,
        payload: &[u8],
        channel: Channel,
    ) {
        if command != Self::POS {
            return EchoChat.on_packet(ctx, player, command, payload, channel);
        }
        let Some(pos) = payload.get(..12).map(|b| {
            let f = |i: usize| f32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            [f(0), f(4), f(8)]
        }) else {
            return;
        };
        // A position the grid refuses (NaN, infinite) is ignored, not fatal.
        if ctx.set_position(player, pos).is_ok() {
            let _ = ctx.set_state(player, Self::STATE, payload);
        }
    }
}
