//! The task's side of a dropped cluster connection: starting the reconnect,
//! running attempts beside the task as the [`ReconnectPolicy`] schedules
//! them, and ending the session when the policy gives up.

use std::time::Instant;

use sustenet_proto::DisconnectReason;
use sustenet_proto::datagram::Record;
use tracing::{debug, info, warn};

use super::Task;
use crate::ClientEvent;
use crate::reconnect::{AfterFailure, Away, Reconnect, ReconnectPolicy};
use crate::resume::{Attempt, Resume, finish_resume};

impl Task {
    fn reconnect_policy(&self) -> ReconnectPolicy {
        ReconnectPolicy::new(self.config.reconnect_window)
    }

    /// The cluster connection failed. A drop (`ConnectionLost`, `Timeout`)
    /// starts a reconnect when that is on; anything else ends the session.
    pub(super) async fn lose_cluster(&mut self, reason: DisconnectReason, message: String) {
        let resumable = matches!(
            reason,
            DisconnectReason::ConnectionLost | DisconnectReason::Timeout
        ) && !self.config.reconnect_window.is_zero();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if !resumable || c.link.is_none() {
            self.lose_cluster_for_good(reason, message).await;
            return;
        }
        c.link = None;
        c.away = Some(Away {
            state: Reconnect::start(Instant::now(), message.clone()),
            pending: None,
        });
        info!("lost the cluster connection: {reason} {message}; reconnecting");
        self.emit(ClientEvent::Reconnecting { reason, message })
            .await;
    }

    /// Starts a reconnect attempt beside the task, unless the window has
    /// passed.
    pub(super) async fn start_attempt(&mut self) {
        let policy = self.reconnect_policy();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(away) = c.away.as_mut() else {
            return;
        };
        if let Err(message) = away.state.begin_attempt(&policy, Instant::now()) {
            self.lose_cluster_for_good(DisconnectReason::ReconnectTimeout, message)
                .await;
            return;
        }
        let job = c.next_attempt(&self.config);
        if let Some(away) = c.away.as_mut() {
            away.pending = Some(tokio::spawn(job));
        }
    }

    /// An attempt ended: back on the cluster, or the next attempt scheduled,
    /// or the session over.
    pub(super) async fn attempt_done(&mut self, r: Result<Attempt, Resume>) {
        let config = self.config.clone();
        let policy = self.reconnect_policy();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(away) = c.away.as_mut() else {
            return;
        };
        away.pending = None;
        let r = match r {
            Ok(a) => finish_resume(c, a, &config).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => {
                let away = c
                    .away
                    .take()
                    .map(|a| a.state.since.elapsed())
                    .unwrap_or_default();
                c.last_seen = Instant::now();
                let cluster = c.info.clone();
                info!(cluster = %cluster.name, ?away, "reconnected to the cluster");
                let _ = self.send_datagram(&Record::Ping(self.micros()));
                self.emit(ClientEvent::Reconnected { cluster, away }).await;
            }
            Err(Resume::Refused(reason, message)) => {
                warn!("reconnect refused: {reason} {message}");
                self.lose_cluster_for_good(reason, message).await;
            }
            Err(Resume::Failed { message, refused }) => {
                let Some(a) = c.away.as_mut() else {
                    return;
                };
                debug!(failures = a.state.failures, "reconnect failed: {message}");
                let gone = format!("the cluster is gone: {message}");
                let next =
                    a.state
                        .failed(&policy, Instant::now(), message, refused, &mut rand::rng());
                if next == AfterFailure::Gone {
                    self.lose_cluster_for_good(DisconnectReason::ConnectionLost, gone)
                        .await;
                }
            }
        }
    }
}
