//! One light simulated client: it joins (master login and ticket, cluster
//! handshake), hands its datagram keys to its group, and keeps its TCP
//! link itself: reliable echoes, heartbeats, acknowledgements, goodbye.

use std::sync::Arc;
use std::time::Duration;

use sustenet_client::ClientConfig;
use sustenet_client::session::{ClusterSession, open_cluster, ticket};
use sustenet_net::{SealedReader, SealedWriter};
use sustenet_proto::resume::ReplayLog;
use sustenet_proto::{ClientToCluster, ClusterToClient, DisconnectReason, Goodbye, JoinTarget};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::group::{GroupMsg, Member};
use crate::bench::ECHO;
use crate::bench::plan::period;
use crate::bench::player::{DRAIN, Failure};
use crate::bench::stats::bump;
use crate::bench::traffic::{Every, Rng, echo_payload, read_u64, unit};
use crate::bench::worker::Shared;

/// Interval between heartbeats on the link, as the full client's default.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Client `i`, from its start time to its goodbye.
pub(crate) async fn run(
    i: u32,
    shared: Arc<Shared>,
    joins: Arc<Semaphore>,
    group: mpsc::UnboundedSender<GroupMsg>,
) {
    let (plan, clock, stats) = (&shared.plan, shared.clock, &shared.stats);
    tokio::time::sleep_until(clock.at(plan.start_us(i))).await;
    let end_at = clock.at(plan.end_us());
    bump(&stats.c.started);
    // Never closed, so this waits for a turn, as the full clients do.
    let Ok(turn) = joins.acquire().await else {
        return;
    };
    let t0 = Instant::now();
    let joined = tokio::time::timeout(plan.timeout, join(&shared, i)).await;
    drop(turn);
    let session = match joined {
        Ok(Ok(s)) => s,
        Ok(Err(f)) => return failed(&shared, f),
        Err(_) => {
            let f = Failure::new(
                "timed out waiting for the join",
                "no ticket and welcome within the --timeout",
            );
            return failed(&shared, f);
        }
    };
    let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
    stats.join.record(ms);
    bump(&stats.c.joined);
    bump(&stats.c.connected);
    let ClusterSession {
        session_id,
        udp_addr,
        reader,
        writer,
        datagrams,
        ..
    } = session;
    let member = Member {
        index: i,
        session_id,
        udp_addr,
        sealer: datagrams.sealer,
        opener: datagrams.opener,
    };
    let _ = group.send(GroupMsg::Joined(Box::new(member)));
    let mut link = Link::new(&shared, i, reader, writer);
    let r = link.run(end_at).await;
    let _ = group.send(GroupMsg::Left(session_id));
    stats
        .c
        .connected
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    link.finish(r).await;
}

fn failed(shared: &Shared, f: Failure) {
    bump(&shared.stats.c.failed);
    let kind = format!("join: {}", f.kind);
    shared.stats.errors.record(&kind, f.message);
}

/// Login, ticket, cluster handshake.
async fn join(shared: &Shared, i: u32) -> Result<ClusterSession, Failure> {
    let plan = &shared.plan;
    let mut cfg = ClientConfig::new(plan.master.clone(), plan.key);
    cfg.handshake_timeout = plan.timeout;
    let name = format!("{}-{i}", plan.user_prefix);
    let t = ticket(&cfg, &name, plan.secret.as_bytes(), JoinTarget::Auto)
        .await
        .map_err(|e| Failure::client(&e))?;
    open_cluster(&cfg, t).await.map_err(|e| Failure::client(&e))
}

/// A client's TCP link to its cluster.
struct Link<'a> {
    shared: &'a Shared,
    reader: SealedReader<OwnedReadHalf>,
    writer: SealedWriter<OwnedWriteHalf>,
    /// Counts the cluster's reliable messages, for the acknowledgements.
    replay: ReplayLog,
    echo: Option<Every>,
    heartbeat: Every,
    echo_seq: u32,
    /// Reliable echoes sent and not yet back.
    outstanding: u64,
    /// When the last message went out: a heartbeat is only sent after a
    /// heartbeat interval of silence.
    last_sent: Instant,
}

impl<'a> Link<'a> {
    fn new(
        shared: &'a Shared,
        i: u32,
        reader: SealedReader<OwnedReadHalf>,
        writer: SealedWriter<OwnedWriteHalf>,
    ) -> Link<'a> {
        let mut rng =
            <Rng as rand::SeedableRng>::seed_from_u64(u64::from(i) ^ 0x71CE_0000_0000_0000);
        let now = Instant::now();
        let echo = period(shared.plan.reliable_per_sec)
            .map(|p| Every::new(now + p.mul_f64(unit(&mut rng)), p));
        Link {
            shared,
            reader,
            writer,
            replay: ReplayLog::new(256 * 1024),
            echo,
            heartbeat: Every::new(now + HEARTBEAT, HEARTBEAT),
            echo_seq: 0,
            outstanding: 0,
            last_sent: now,
        }
    }

    /// Plays until `end_at`, then waits for the reliable echoes still on
    /// their way (up to [`DRAIN`]).
    async fn run(&mut self, end_at: Instant) -> Result<(), Failure> {
        let hard = end_at + DRAIN;
        loop {
            let now = Instant::now();
            if now >= hard || (now >= end_at && self.outstanding == 0) {
                return Ok(());
            }
            let wake = if now < end_at {
                [
                    &self.echo.as_ref().and_then(|e| e.next),
                    &self.heartbeat.next,
                ]
                .into_iter()
                .flatten()
                .fold(end_at, |a, b| a.min(*b))
            } else {
                self.heartbeat.next.map_or(hard, |h| h.min(hard))
            };
            tokio::select! {
                m = self.reader.recv() => self.message(m).await?,
                () = tokio::time::sleep_until(wake) => self.tick(Instant::now(), end_at).await?,
            }
        }
    }

    /// Sends what is due: a reliable echo (until `end_at`), a heartbeat.
    async fn tick(&mut self, now: Instant, end_at: Instant) -> Result<(), Failure> {
        let (clock, c) = (self.shared.clock, &self.shared.stats.c);
        if now < end_at && self.echo.as_mut().is_some_and(|e| e.due(now)) {
            let payload = echo_payload(clock.now_us(), self.echo_seq, self.shared.plan.size);
            self.echo_seq = self.echo_seq.wrapping_add(1);
            self.send(ClientToCluster::Data {
                command: ECHO,
                payload,
            })
            .await?;
            bump(&c.rel_sent);
            self.outstanding += 1;
        }
        if self.heartbeat.due(now) && now.duration_since(self.last_sent) >= HEARTBEAT {
            self.send(ClientToCluster::Ping(clock.now_us())).await?;
        }
        Ok(())
    }

    async fn send(&mut self, m: ClientToCluster) -> Result<(), Failure> {
        self.last_sent = Instant::now();
        self.writer
            .send(&m)
            .await
            .map_err(|e| Failure::new("connection error", format!("the cluster link: {e}")))
    }

    async fn message(
        &mut self,
        m: Result<Option<ClusterToClient>, sustenet_net::NetError>,
    ) -> Result<(), Failure> {
        let m = match m {
            Ok(Some(m)) => m,
            Ok(None) => {
                return Err(Failure::new(
                    "disconnected: ConnectionLost",
                    "the cluster closed the connection",
                ));
            }
            Err(e) => return Err(Failure::new("connection error", e.to_string())),
        };
        let stats = &self.shared.stats;
        match m {
            ClusterToClient::Ping(v) => self.send(ClientToCluster::Pong(v)).await?,
            ClusterToClient::Data { command, payload } => {
                if self.replay.on_received(payload.len()) {
                    let count = self.replay.received();
                    self.send(ClientToCluster::Ack(count)).await?;
                    self.replay.mark_acked();
                }
                match read_u64(&payload, 0).filter(|_| command == ECHO) {
                    Some(sent) => {
                        stats
                            .rel
                            .record(self.shared.clock.now_us().saturating_sub(sent));
                        bump(&stats.c.rel_recv);
                        self.outstanding = self.outstanding.saturating_sub(1);
                    }
                    None => bump(&stats.c.other_recv),
                }
            }
            ClusterToClient::Ack(_) | ClusterToClient::Pong(_) => {}
            ClusterToClient::Disconnect(g) => {
                return Err(Failure::new(
                    format!("disconnected: {}", g.reason),
                    format!("{}: {}", g.reason, g.message),
                ));
            }
            ClusterToClient::Redirect(_) => {
                return Err(Failure::new(
                    "redirected",
                    "the light generator does not follow redirects (run with --full-clients)",
                ));
            }
            other => {
                return Err(Failure::new(
                    "protocol violation",
                    format!("unexpected on a running link: {other:?}"),
                ));
            }
        }
        Ok(())
    }

    /// Counts how the link ended and says goodbye.
    async fn finish(&mut self, r: Result<(), Failure>) {
        let stats = &self.shared.stats;
        if let Err(f) = r {
            bump(&stats.c.disconnected);
            stats.errors.record(&f.kind, f.message);
            return;
        }
        if self.outstanding > 0 {
            stats
                .c
                .rel_missing
                .fetch_add(self.outstanding, std::sync::atomic::Ordering::Relaxed);
            stats.errors.record(
                "reliable echoes missing",
                format!(
                    "{} reliable echo(es) had not come back {} s after the end of the run",
                    self.outstanding,
                    DRAIN.as_secs()
                ),
            );
        }
        let _ = self
            .writer
            .send(&ClientToCluster::Disconnect(Goodbye::new(
                DisconnectReason::Requested,
            )))
            .await;
        let _ = self.writer.shutdown().await;
    }
}
