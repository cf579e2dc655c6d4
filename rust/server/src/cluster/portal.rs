//! [`Portal`]: a plugin wrapper that lets a player ask for an instance and
//! be moved into it once it is ready (what `sustenet cluster` runs, around
//! [`EchoChat`](crate::plugin::EchoChat)).

use std::collections::HashMap;

use sustenet_proto::{DisconnectReason, Goodbye};

use crate::cluster::{Context, MasterLinkStatus};
use crate::fragments::FragmentEvent;
use crate::ids::PlayerId;
use crate::plugin::{Channel, Plugin};

/// Wraps a plugin `P`; adds one command, [`Portal::ENTER`]:
///
/// - a player sends `ENTER` (reliable) with the payload
///   `stop_when_empty_sec: u32 LE || template name (UTF-8)`; the cluster asks
///   the master for an instance of that template
///   ([`Context::spawn_instance`]) and, once it is ready, moves the player
///   there ([`Context::transfer`]) with this cluster's id (u64 LE, 0 when
///   unknown) as its state, so the instance can send it back;
/// - when the instance cannot be had, the player gets [`Portal::FAILED`]
///   (reliable) with the reason's text.
///
/// Every other command and callback goes to `P`. Leaving an instance is
/// [`EchoChat::MOVE_ME`](crate::plugin::EchoChat::MOVE_ME) with the id the
/// player came from.
#[derive(Debug, Default)]
pub struct Portal<P> {
    inner: P,
    waiting: HashMap<u64, PlayerId>,
    cluster_id: u64,
}

impl<P> Portal<P> {
    /// Enter-an-instance command.
    pub const ENTER: u16 = 5;
    /// The instance could not be had.
    pub const FAILED: u16 = 6;

    /// `inner` with the portal command.
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            waiting: HashMap::new(),
            cluster_id: 0,
        }
    }

    fn enter(&mut self, ctx: &mut Context<'_>, player: PlayerId, payload: &[u8]) {
        let request = payload.split_first_chunk::<4>().and_then(|(secs, name)| {
            Some((u32::from_le_bytes(*secs), std::str::from_utf8(name).ok()?))
        });
        let Some((secs, template)) = request else {
            let _ = ctx.send(
                player,
                Self::FAILED,
                b"the payload is stop_when_empty_sec (u32) and a template name",
            );
            return;
        };
        match ctx.spawn_instance(template, &[], secs) {
            Ok(request_id) => {
                self.waiting.insert(request_id, player);
            }
            Err(e) => {
                let _ = ctx.send(player, Self::FAILED, e.to_string().as_bytes());
            }
        }
    }
}

impl<P: Plugin> Plugin for Portal<P> {
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.inner.on_start(ctx)
    }
    fn on_connect(&mut self, ctx: &mut Context<'_>, player: PlayerId, user_data: &[u8]) {
        self.inner.on_connect(ctx, player, user_data)
    }
    fn on_packet(
        &mut self,
        ctx: &mut Context<'_>,
        player: PlayerId,
        command: u16,
        payload: &[u8],
        channel: Channel,
    ) {
        if command == Self::ENTER && channel == Channel::Reliable {
            return self.enter(ctx, player, payload);
        }
        self.inner.on_packet(ctx, player, command, payload, channel)
    }
    fn on_disconnect(&mut self, ctx: &mut Context<'_>, player: PlayerId, reason: DisconnectReason) {
        self.waiting.retain(|_, p| *p != player);
        self.inner.on_disconnect(ctx, player, reason)
    }
    fn on_connection_lost(
        &mut self,
        ctx: &mut Context<'_>,
        player: PlayerId,
        reason: DisconnectReason,
    ) {
        self.inner.on_connection_lost(ctx, player, reason)
    }
    fn on_reconnect(&mut self, ctx: &mut Context<'_>, player: PlayerId) {
        self.inner.on_reconnect(ctx, player)
    }
    fn on_master(&mut self, ctx: &mut Context<'_>, status: &MasterLinkStatus) {
        if let MasterLinkStatus::Registered { cluster_id } = status {
            self.cluster_id = *cluster_id;
        }
        self.inner.on_master(ctx, status)
    }
    fn on_transfer_failed(&mut self, ctx: &mut Context<'_>, player: PlayerId, reason: &Goodbye) {
        self.inner.on_transfer_failed(ctx, player, reason)
    }
    fn on_instance(
        &mut self,
        ctx: &mut Context<'_>,
        request_id: u64,
        answer: &Result<u64, Goodbye>,
    ) {
        let Some(player) = self.waiting.remove(&request_id) else {
            return self.inner.on_instance(ctx, request_id, answer);
        };
        let result = match answer {
            Ok(cluster) => ctx
                .transfer(player, *cluster, &self.cluster_id.to_le_bytes())
                .map_err(|e| e.to_string()),
            Err(g) => Err(format!("{}: {}", g.reason, g.message)),
        };
        if let Err(why) = result {
            let _ = ctx.send(player, Self::FAILED, why.as_bytes());
        }
    }
    fn on_fragment(&mut self, ctx: &mut Context<'_>, event: FragmentEvent) {
        self.inner.on_fragment(ctx, event)
    }
    fn on_tick(&mut self, ctx: &mut Context<'_>) {
        self.inner.on_tick(ctx)
    }
}
