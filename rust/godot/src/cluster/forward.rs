//! The plugin that runs inside the cluster's task and hands every event to
//! the node's main thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sustenet_proto::DisconnectReason;
use sustenet_server::cluster::MasterLinkStatus;
use sustenet_server::fragments::FragmentEvent;
use sustenet_server::{Channel, Context, PlayerId, Plugin};

use crate::pending::{Over, PendingQuota};

pub(super) enum NodeEvent {
    Connected(PlayerId, Vec<u8>),
    Disconnected(PlayerId, DisconnectReason),
    ConnectionLost(PlayerId, DisconnectReason),
    Reconnected(PlayerId),
    Packet(PlayerId, u16, Vec<u8>, bool),
    Registered(u64),
    TransferFailed(PlayerId, DisconnectReason, String),
    Fragment(FragmentEvent),
    MasterLost(String),
    Stopped(Option<String>),
    /// The node's instance request id, and the instance's cluster id or why it failed.
    Instance(i64, Result<u64, String>),
}

/// The node's instance request ids by the core's, shared by the command that asks and the
/// plugin that hears the answer (both run on the core task, one after the other).
pub(super) type InstanceIds = Arc<std::sync::Mutex<std::collections::HashMap<u64, i64>>>;

/// The plugin that hands every cluster event to the node. The queue is unbounded; what a
/// player can make wait in it is bounded by [`PendingQuota`], and the lifecycle events
/// (connects, leaves, master status) are bounded by the players themselves.
pub(super) struct Forward {
    pub(super) tx: flume::Sender<NodeEvent>,
    pub(super) instances: InstanceIds,
    pub(super) quota: Arc<PendingQuota>,
    /// Packets dropped or refused over a limit, shared with the node.
    pub(super) dropped: Arc<AtomicU64>,
}

impl Forward {
    /// Hands an event to the node (gone only once the node stopped the cluster).
    fn send(&mut self, ev: NodeEvent) {
        let _ = self.tx.send(ev);
    }

    /// Counts a packet over its sender's limit: dropped when unreliable, and its sender
    /// disconnected when reliable (the cluster counted it as received).
    fn refuse(&mut self, ctx: &mut Context<'_>, player: PlayerId, reliable: bool, over: Over) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                player,
                dropped = n,
                ?over,
                "packets over the SustenetCluster node's pending limits (max_pending_*)"
            );
        }
        if reliable {
            ctx.kick(player, over.kick_message());
        }
    }
}

impl Plugin for Forward {
    fn on_connect(&mut self, _ctx: &mut Context<'_>, player: PlayerId, user_data: &[u8]) {
        self.send(NodeEvent::Connected(player, user_data.to_vec()));
    }
    fn on_packet(
        &mut self,
        ctx: &mut Context<'_>,
        player: PlayerId,
        command: u16,
        payload: &[u8],
        channel: Channel,
    ) {
        let reliable = channel == Channel::Reliable;
        if let Err(over) = self.quota.admit(player, payload.len()) {
            self.refuse(ctx, player, reliable, over);
            return;
        }
        self.send(NodeEvent::Packet(
            player,
            command,
            payload.to_vec(),
            reliable,
        ));
    }
    fn on_disconnect(
        &mut self,
        _ctx: &mut Context<'_>,
        player: PlayerId,
        reason: DisconnectReason,
    ) {
        self.send(NodeEvent::Disconnected(player, reason));
    }
    fn on_connection_lost(
        &mut self,
        _ctx: &mut Context<'_>,
        player: PlayerId,
        reason: DisconnectReason,
    ) {
        self.send(NodeEvent::ConnectionLost(player, reason));
    }
    fn on_reconnect(&mut self, _ctx: &mut Context<'_>, player: PlayerId) {
        self.send(NodeEvent::Reconnected(player));
    }
    fn on_transfer_failed(
        &mut self,
        _ctx: &mut Context<'_>,
        player: PlayerId,
        reason: &sustenet_proto::Goodbye,
    ) {
        self.send(NodeEvent::TransferFailed(
            player,
            reason.reason,
            reason.message.clone(),
        ));
    }
    fn on_fragment(&mut self, _ctx: &mut Context<'_>, event: FragmentEvent) {
        self.send(NodeEvent::Fragment(event));
    }
    fn on_instance(
        &mut self,
        _ctx: &mut Context<'_>,
        request_id: u64,
        answer: &Result<u64, sustenet_proto::Goodbye>,
    ) {
        let node_id = self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&request_id);
        if let Some(id) = node_id {
            let answer = answer
                .as_ref()
                .map(|c| *c)
                .map_err(|g| format!("{}: {}", g.reason, g.message));
            self.send(NodeEvent::Instance(id, answer));
        }
    }
    fn on_master(&mut self, _ctx: &mut Context<'_>, status: &MasterLinkStatus) {
        self.send(match status {
            MasterLinkStatus::Registered { cluster_id } => NodeEvent::Registered(*cluster_id),
            MasterLinkStatus::Lost { message } => NodeEvent::MasterLost(message.clone()),
        });
    }
}
