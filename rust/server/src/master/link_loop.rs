//! The loop every registered link to the master runs (clusters, agents,
//! admin tools): read the peer's messages, carry out what is queued for it,
//! ping it and drop it when silent, say goodbye when the master stops.
//! What a message means is the link's own ([`Link::on_message`]).

use std::time::Instant;

use sustenet_net::{NetError, SealedReader, SealedWriter};
use sustenet_proto::{DisconnectReason, Goodbye, Message};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Shared;
use crate::time::now_ms;

/// The sealed reading half of a master link.
pub(super) type Reader = SealedReader<OwnedReadHalf>;
/// The sealed writing half of a master link.
pub(super) type Writer = SealedWriter<OwnedWriteHalf>;

/// The messages the loop itself sends on a link: pings, pongs and goodbyes.
pub(super) trait Outgoing: Message {
    /// A keep-alive carrying the master's clock.
    fn ping(now_ms: u64) -> Self;
    /// The answer to the peer's ping carrying `value`.
    fn pong(value: u64) -> Self;
    /// A goodbye with `goodbye`'s reason.
    fn goodbye(goodbye: Goodbye) -> Self;
    /// The goodbye this message is, if it is one: once sent, the link ends.
    fn as_goodbye(&self) -> Option<&Goodbye>;
}

/// What the loop itself does with a message from the peer.
pub(super) enum Control<'a> {
    /// A ping: answered with a pong.
    Ping(u64),
    /// A pong: nothing more to do.
    Pong,
    /// A goodbye: the link ends with its reason.
    Goodbye(&'a Goodbye),
}

/// The messages a peer sends on a link, as far as the loop reads them.
pub(super) trait Incoming: Message {
    /// The keep-alive or goodbye this message is, if it is one; any other
    /// message goes to [`Link::on_message`].
    fn as_control(&self) -> Option<Control<'_>>;
}

/// One kind of registered link: what it says first and what it does with
/// each message from its peer.
pub(super) trait Link {
    /// What the peer sends.
    type In: Incoming;
    /// What the master sends.
    type Out: Outgoing;
    /// Sent or done before the first message is read; `Some(reason)` ends
    /// the link.
    async fn start(&mut self, writer: &mut Writer) -> Result<Option<DisconnectReason>, NetError>;
    /// One message from the peer that is not a keep-alive or goodbye;
    /// `Some(reason)` ends the link.
    async fn on_message(
        &mut self,
        writer: &mut Writer,
        msg: Self::In,
    ) -> Result<Option<DisconnectReason>, NetError>;
}

/// Runs `link` until it ends and says why: the peer left or said goodbye,
/// its queue `rx` closed or carried a goodbye, it was silent longer than
/// the master's `cluster_timeout`, or the master stops. A failed read or
/// write is logged and ends it as `ConnectionLost`. `who` names the peer in
/// the log ("agent tools-1").
pub(super) async fn run<L: Link>(
    shared: &Shared,
    link: &mut L,
    reader: Reader,
    writer: Writer,
    rx: mpsc::Receiver<L::Out>,
    who: &str,
) -> DisconnectReason {
    match run_until_end(shared, link, reader, writer, rx, who).await {
        Ok(reason) => reason,
        Err(e) => {
            warn!("{who} link failed: {e}");
            DisconnectReason::ConnectionLost
        }
    }
}

async fn run_until_end<L: Link>(
    shared: &Shared,
    link: &mut L,
    mut reader: Reader,
    mut writer: Writer,
    mut rx: mpsc::Receiver<L::Out>,
    who: &str,
) -> Result<DisconnectReason, NetError> {
    if let Some(reason) = link.start(&mut writer).await? {
        return Ok(reason);
    }
    let timeout = shared.config.cluster_timeout;
    let mut heartbeat = tokio::time::interval(shared.config.limits.heartbeat());
    let mut last_seen = Instant::now();
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            msg = reader.recv::<L::In>() => {
                let Some(msg) = msg? else { return Ok(DisconnectReason::ConnectionLost) };
                last_seen = Instant::now();
                match msg.as_control() {
                    Some(Control::Ping(v)) => writer.send(&L::Out::pong(v)).await?,
                    Some(Control::Pong) => {}
                    Some(Control::Goodbye(g)) => {
                        info!("{who} said goodbye: {} {}", g.reason, g.message);
                        return Ok(g.reason);
                    }
                    None => if let Some(reason) = link.on_message(&mut writer, msg).await? {
                        return Ok(reason);
                    }
                }
            }
            out = rx.recv() => {
                let Some(m) = out else { return Ok(DisconnectReason::Requested) };
                writer.send(&m).await?;
                if let Some(g) = m.as_goodbye() {
                    return Ok(g.reason);
                }
            }
            _ = heartbeat.tick() => {
                if last_seen.elapsed() > timeout {
                    warn!("{who} silent for {:?}; dropping it", last_seen.elapsed());
                    return Ok(DisconnectReason::Timeout);
                }
                writer.send(&L::Out::ping(now_ms())).await?;
            }
            _ = crate::time::stopped(&mut shutdown) => {
                let goodbye = Goodbye::new(DisconnectReason::ServerShutdown);
                writer.send(&L::Out::goodbye(goodbye)).await?;
                let _ = writer.shutdown().await;
                return Ok(DisconnectReason::ServerShutdown);
            }
        }
    }
}

/// Implements [`Outgoing`] for a message enum with `Ping(u64)`,
/// `Pong(u64)` and `Disconnect(Goodbye)` variants.
macro_rules! outgoing {
    ($($ty:ty),*) => {$(
        impl Outgoing for $ty {
            fn ping(now_ms: u64) -> Self {
                Self::Ping(now_ms)
            }
            fn pong(value: u64) -> Self {
                Self::Pong(value)
            }
            fn goodbye(goodbye: Goodbye) -> Self {
                Self::Disconnect(goodbye)
            }
            fn as_goodbye(&self) -> Option<&Goodbye> {
                match self {
                    Self::Disconnect(g) => Some(g),
                    _ => None,
                }
            }
        }
    )*};
}

outgoing!(
    sustenet_proto::MasterToCluster,
    sustenet_proto::instance::MasterToAgent,
    sustenet_proto::instance::MasterToAdmin
);

/// Implements [`Incoming`] for a message enum with `Ping(u64)`, `Pong(u64)`
/// and `Disconnect(Goodbye)` variants.
macro_rules! incoming {
    ($($ty:ty),*) => {$(
        impl Incoming for $ty {
            fn as_control(&self) -> Option<Control<'_>> {
                match self {
                    Self::Ping(v) => Some(Control::Ping(*v)),
                    Self::Pong(_) => Some(Control::Pong),
                    Self::Disconnect(g) => Some(Control::Goodbye(g)),
                    _ => None,
                }
            }
        }
    )*};
}

incoming!(
    sustenet_proto::ClusterToMaster,
    sustenet_proto::instance::AgentToMaster,
    sustenet_proto::instance::AdminToMaster
);
