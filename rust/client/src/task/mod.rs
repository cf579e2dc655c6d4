//! The client task: one tokio task that owns the connections, turns the
//! handle's commands into messages and the servers' messages into events.
//!
//! `run` waits on everything at once (commands, the master link, the
//! cluster link and its UDP socket, the heartbeat, the reconnect timer and
//! the attempt under way) and hands each wake-up to its file: `master.rs`
//! (login, cluster list, tickets), `cluster.rs` (joining, playing, leaving)
//! and `away.rs` (a dropped cluster connection and its reconnect).

mod away;
mod cluster;
mod master;

use std::sync::Arc;
use std::time::Instant;

use sustenet_net::{NetError, SealedReader};
use sustenet_proto::datagram::Record;
use sustenet_proto::{
    ClientToCluster, ClientToMaster, ClusterToClient, DisconnectReason, Goodbye, JoinTarget,
    MasterToClient,
};
use tokio::net::UdpSocket;
use tokio::net::tcp::OwnedReadHalf;
use tracing::{debug, warn};

use crate::connect::{ClusterConn, MasterConn};
use crate::handle::Command;
use crate::reconnect::Away;
use crate::resume::{Attempt, Resume};
use crate::{ClientConfig, ClientEvent, Rtt};

/// Everything the client task owns.
pub(crate) struct Task {
    config: ClientConfig,
    events: flume::Sender<ClientEvent>,
    rtt: Arc<Rtt>,
    master: Option<MasterConn>,
    cluster: Option<ClusterConn>,
    credentials: Option<(String, Vec<u8>)>,
    client_id: Option<u64>,
    pending_join: Option<JoinTarget>,
    pending_best: bool,
    epoch: Instant,
}

/// What woke the task.
enum Wake {
    Command(Option<Command>),
    Master(Result<Option<MasterToClient>, NetError>),
    Cluster(Result<Option<ClusterToClient>, NetError>),
    Udp(std::io::Result<usize>),
    Tick,
    Reconnect,
    Attempt(Result<Attempt, Resume>),
}

async fn recv_master(m: &mut Option<MasterConn>) -> Result<Option<MasterToClient>, NetError> {
    match m {
        Some(m) => m.reader.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_cluster(
    r: Option<&mut SealedReader<OwnedReadHalf>>,
) -> Result<Option<ClusterToClient>, NetError> {
    match r {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn attempt_done(away: Option<&mut Away>) -> Result<Attempt, Resume> {
    match away.and_then(|a| a.pending.as_mut()) {
        Some(h) => h
            .await
            .unwrap_or_else(|e| Err(Resume::failed(format!("the attempt stopped: {e}")))),
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn recv_udp(udp: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<usize> {
    match udp {
        Some(u) => u.recv(buf).await,
        None => std::future::pending().await,
    }
}

/// The reason a connection error ends a connection with.
fn reason_of(e: &NetError) -> DisconnectReason {
    e.reason()
}

impl Task {
    /// A task with no connection yet.
    pub(crate) fn new(
        config: ClientConfig,
        events: flume::Sender<ClientEvent>,
        rtt: Arc<Rtt>,
    ) -> Self {
        Self {
            config,
            events,
            rtt,
            master: None,
            cluster: None,
            credentials: None,
            client_id: None,
            pending_join: None,
            pending_best: false,
            epoch: Instant::now(),
        }
    }

    fn micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    async fn emit(&self, e: ClientEvent) {
        // The receiver is gone only when the game dropped it: nothing to tell.
        let _ = self.events.send_async(e).await;
    }

    /// Runs until every handle is dropped, then closes every connection.
    pub(crate) async fn run(mut self, commands: flume::Receiver<Command>) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = vec![0u8; 2048];
        loop {
            let (reader, udp, retry, attempt) = match &mut self.cluster {
                Some(c) => {
                    let retry = c.away.as_ref().and_then(|a| a.state.next_try);
                    let link = c.link.as_mut().map(|l| &mut l.reader);
                    (link, Some(&c.udp), retry, c.away.as_mut())
                }
                None => (None, None, None, None),
            };
            let wake = tokio::select! {
                c = commands.recv_async() => Wake::Command(c.ok()),
                m = recv_master(&mut self.master) => Wake::Master(m),
                c = recv_cluster(reader) => Wake::Cluster(c),
                n = recv_udp(udp, &mut buf) => Wake::Udp(n),
                _ = sleep_until(retry) => Wake::Reconnect,
                r = attempt_done(attempt) => Wake::Attempt(r),
                _ = tick.tick() => Wake::Tick,
            };
            match wake {
                Wake::Command(None) => break,
                Wake::Command(Some(c)) => self.command(c).await,
                Wake::Master(r) => self.master_message(r).await,
                Wake::Cluster(r) => self.cluster_message(r).await,
                Wake::Udp(Ok(n)) => self.datagram(&buf[..n]),
                Wake::Udp(Err(e)) => debug!("udp receive failed: {e}"),
                Wake::Tick => self.tick().await,
                Wake::Reconnect => self.start_attempt().await,
                Wake::Attempt(r) => self.attempt_done(r).await,
            }
        }
        self.close_all(DisconnectReason::Requested).await;
    }

    async fn command(&mut self, c: Command) {
        let r = match c {
            Command::Connect => self.connect_master().await,
            Command::Login { username, secret } => self.login(username, secret).await,
            Command::JoinBest => self.join_best().await,
            Command::ListClusters => match self.ensure_master().await {
                Ok(()) => self.send_master(ClientToMaster::ListClusters).await,
                Err(e) => Err(e),
            },
            Command::Join(target) => self.join(target).await,
            Command::Send { command, payload } => self.send_reliable(command, payload).await,
            Command::SendUnreliable { command, payload } => {
                self.send_datagram(&Record::Data { command, payload })
            }
            Command::Leave => {
                self.leave_cluster(DisconnectReason::Requested, "left the cluster")
                    .await;
                Ok(())
            }
            Command::Disconnect => {
                self.close_all(DisconnectReason::Requested).await;
                Ok(())
            }
        };
        if let Err(e) = r {
            warn!("{e}");
            self.emit(ClientEvent::Error(e)).await;
        }
    }

    /// The heartbeat: timeouts, pings on both links, the cluster's ack.
    async fn tick(&mut self) {
        let now = self.micros();
        let timeout = self.config.timeout;
        if let Some(m) = self.master.as_mut() {
            if m.last_seen.elapsed() > timeout {
                self.drop_master(
                    DisconnectReason::Timeout,
                    "the master stopped responding".into(),
                )
                .await;
            } else if let Err(e) = m.writer.send(&ClientToMaster::Ping(now)).await {
                self.drop_master(reason_of(&e), e.to_string()).await;
            }
        }
        if let Some(c) = self.cluster.as_mut() {
            let Some(link) = c.link.as_mut() else {
                return;
            };
            if c.last_seen.elapsed() > timeout {
                self.lose_cluster(
                    DisconnectReason::Timeout,
                    "the cluster stopped responding".into(),
                )
                .await;
                return;
            }
            if let Err(e) = link.writer.send(&ClientToCluster::Ping(now)).await {
                self.lose_cluster(reason_of(&e), e.to_string()).await;
                return;
            }
            if c.replay.ack_due() {
                self.send_ack().await;
            }
            let _ = self.send_datagram(&Record::Ping(now));
        }
    }

    async fn close_all(&mut self, reason: DisconnectReason) {
        self.leave_cluster(reason, "disconnected").await;
        if let Some(mut m) = self.master.take() {
            let _ = m
                .writer
                .send(&ClientToMaster::Disconnect(Goodbye::new(reason)))
                .await;
            let _ = m.writer.shutdown().await;
        }
        self.client_id = None;
    }
}
