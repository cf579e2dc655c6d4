//! The node's side of the cluster's events: each [`NodeEvent`] the plugin
//! queued becomes a signal on the main thread, within the frame's budget.

use godot::prelude::*;
use sustenet_server::fragments::{FragmentEvent, FragmentId};

use super::SustenetCluster;
use super::forward::NodeEvent;
use crate::multiplayer_peer::tap::{self, ClusterTap};
use crate::{DrainStats, id_to_gd};

fn cell(f: FragmentId) -> Vector3i {
    Vector3i::new(f.x, f.y, f.z)
}

impl SustenetCluster {
    /// Emits the queued events as signals, at most `events_per_frame` of
    /// them and within `frame_budget_usec`.
    pub(super) fn drain_events(&mut self) {
        let Some(r) = &self.running else { return };
        let rx = r.events.clone();
        let (max, budget) = (self.events_per_frame, self.frame_budget_usec);
        let done = DrainStats::run(&rx, max, budget, |ev| self.handle(ev));
        self.drain.record(done);
    }

    /// Turns one event into a signal; false once the cluster stopped.
    fn handle(&mut self, ev: NodeEvent) -> bool {
        match ev {
            NodeEvent::Connected(id, data) => {
                self.players.insert(id);
                let data = PackedByteArray::from(data.as_slice());
                self.signals().player_connected().emit(id_to_gd(id), &data);
            }
            NodeEvent::Disconnected(id, reason) => {
                self.players.remove(&id);
                if let Some(r) = &self.running {
                    r.quota.forget(id);
                }
                let _ = tap::send_to(&mut self.peer_tap, ClusterTap::Left(id));
                self.signals()
                    .player_disconnected()
                    .emit(id_to_gd(id), i64::from(reason.code()));
            }
            NodeEvent::ConnectionLost(id, reason) => {
                self.signals()
                    .player_connection_lost()
                    .emit(id_to_gd(id), i64::from(reason.code()));
            }
            NodeEvent::Reconnected(id) => self.signals().player_reconnected().emit(id_to_gd(id)),
            NodeEvent::Packet(id, command, payload, reliable) => {
                if let Some(r) = &self.running {
                    r.quota.release(id, payload.len());
                }
                let Some(payload) = tap::cluster_packet(&mut self.peer_tap, id, command, payload)
                else {
                    return true; // the peer's own packet
                };
                let data = PackedByteArray::from(payload.as_slice());
                self.signals().packet_received().emit(
                    id_to_gd(id),
                    i64::from(command),
                    &data,
                    reliable,
                );
            }
            NodeEvent::Registered(id) => self.signals().registered().emit(id_to_gd(id)),
            NodeEvent::Fragment(FragmentEvent::Entered { player, fragment }) => {
                self.signals()
                    .fragment_entered()
                    .emit(id_to_gd(player), cell(fragment));
            }
            NodeEvent::Fragment(FragmentEvent::Exited { player, fragment }) => {
                self.signals()
                    .fragment_exited()
                    .emit(id_to_gd(player), cell(fragment));
            }
            NodeEvent::Fragment(FragmentEvent::OverCap {
                fragment,
                players,
                cap,
            }) => {
                self.signals().fragment_over_cap().emit(
                    cell(fragment),
                    i64::try_from(players).unwrap_or(i64::MAX),
                    i64::from(cap),
                );
            }
            NodeEvent::TransferFailed(id, reason, message) => {
                self.signals().transfer_failed().emit(
                    id_to_gd(id),
                    i64::from(reason.code()),
                    message.as_str(),
                );
            }
            NodeEvent::MasterLost(m) => self.signals().master_lost().emit(m.as_str()),
            NodeEvent::Instance(id, Ok(cluster)) => {
                self.signals().instance_ready().emit(id, id_to_gd(cluster));
            }
            NodeEvent::Instance(id, Err(why)) => {
                self.signals().instance_failed().emit(id, why.as_str());
            }
            NodeEvent::Stopped(err) => {
                if let Some(e) = err {
                    godot_error!("SustenetCluster stopped: {e}");
                }
                if self.running.take().is_some() {
                    let _ = tap::send_to(&mut self.peer_tap, ClusterTap::Stopped);
                    self.players.clear();
                    self.signals().stopped().emit();
                }
                return false;
            }
        }
        true
    }
}
