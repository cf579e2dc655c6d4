//! The master link's inputs to the [`Core`]: transfer answers, the link's
//! state, instance answers, and the snapshot a registration carries.

use std::time::Instant;

use sustenet_proto::{ClusterToClient, DisconnectReason, Goodbye, Ticket};
use tracing::{info, warn};

use super::transfers::moving_set;
use super::{Core, instances, queue, resume};
use crate::cluster::MasterLinkStatus;
use crate::ids::PlayerId;
use crate::plugin::Plugin;

impl<P: Plugin> Core<P> {
    /// The master issued the ticket of transfer `request_id`.
    pub(crate) fn handle_transfer_ready(
        &mut self,
        now: Instant,
        request_id: u64,
        player: PlayerId,
        ticket: Box<Ticket>,
    ) {
        self.deadlines_stale = true;
        if self.s.transfers.pending.remove(&request_id).is_none() {
            return;
        }
        let timeout = self.s.config.limits.timeout();
        let Some(p) = self.s.players.get_mut(&player) else {
            return;
        };
        // Queued behind everything already sent to the player, so the
        // redirect is the last thing it hears from here. A player that is
        // away (or whose writer just stopped) gets it when it reconnects,
        // after what it missed.
        let redirect = ClusterToClient::Redirect((*ticket).clone());
        let queued = queue(&mut self.s.outputs, p, redirect);
        if queued.is_err() {
            self.s
                .removals
                .push((player, Goodbye::new(DisconnectReason::SendQueueFull)));
        } else {
            info!(player, "player redirected");
            p.redirected = Some(resume::after(now, timeout));
            if p.replay.is_some() {
                p.redirect = Some(ticket);
            }
            moving_set(&self.s.transfers.moving, player, Some(true));
        }
    }

    /// The master refused transfer `request_id`.
    pub(crate) fn handle_transfer_failed(
        &mut self,
        now: Instant,
        request_id: u64,
        player: PlayerId,
        reason: &Goodbye,
    ) {
        if self.s.transfers.pending.remove(&request_id).is_some()
            && self.s.players.contains_key(&player)
        {
            moving_set(&self.s.transfers.moving, player, None);
            let (plugin, mut ctx) = self.ctx(now);
            plugin.on_transfer_failed(&mut ctx, player, reason);
        }
    }

    /// The players on this cluster, for a registration with the master.
    pub(crate) fn snapshot(&self) -> Vec<PlayerId> {
        self.s.players.keys().copied().collect()
    }

    /// The master link changed.
    pub(crate) fn handle_master(&mut self, now: Instant, status: &MasterLinkStatus) {
        let mut unanswered = Vec::new();
        match status {
            MasterLinkStatus::Registered { cluster_id } => {
                self.s.instances.master_up = true;
                info!(cluster_id, "registered with the master")
            }
            MasterLinkStatus::Lost { message } => {
                unanswered = self.s.instances.lost();
                warn!("master lost: {message}; players stay connected")
            }
        }
        let (plugin, mut ctx) = self.ctx(now);
        plugin.on_master(&mut ctx, status);
        for request_id in unanswered {
            let (plugin, mut ctx) = self.ctx(now);
            plugin.on_instance(&mut ctx, request_id, &Err(instances::link_lost()));
        }
    }

    /// The master answered instance request `request_id`.
    pub(crate) fn handle_instance_answer(
        &mut self,
        now: Instant,
        request_id: u64,
        answer: &instances::InstanceAnswer,
    ) {
        if self.s.instances.answered(request_id) {
            let (plugin, mut ctx) = self.ctx(now);
            plugin.on_instance(&mut ctx, request_id, answer);
        }
    }
}
