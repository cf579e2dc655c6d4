//! Accepting connections, their handshake slot and hello, refusing a
//! hello, and winding connection tasks down: shared by the master and the
//! cluster.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sustenet_net::{FrameReader, NetError, write_frame};
use sustenet_proto::DisconnectReason;
use sustenet_proto::handshake::{self, Hello};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::config::Limits;
use crate::handshake_gate::{HandshakeGate, HandshakePermit};

/// How long connections get to send their goodbyes at shutdown.
const GOODBYE_GRACE: Duration = Duration::from_secs(2);

/// The next connection. An accept error (out of file descriptors and the
/// like) is logged and retried after a short wait instead of spinning.
pub(crate) async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(a) => return a,
            Err(e) => {
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Accepts connections on `listener` until `shutdown` says stop, each
/// served by `serve(stream, peer, number)` in its own task (numbered from
/// 1), then winds them down ([`wind_down`]). The accept loop of every
/// listener but the master's own.
pub(crate) async fn serve_each<F, Fut>(
    listener: &TcpListener,
    mut shutdown: watch::Receiver<bool>,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr, u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    let mut next = 0u64;
    loop {
        tokio::select! {
            _ = crate::time::stopped(&mut shutdown) => break,
            (stream, peer) = accept(listener) => {
                next += 1;
                conns.spawn(serve(stream, peer, next));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    wind_down(&mut conns).await;
}

/// Lets the tasks finish (their goodbyes) for a moment, then cuts the rest.
pub(crate) async fn wind_down<T: 'static>(tasks: &mut JoinSet<T>) {
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(GOODBYE_GRACE, drain).await;
    tasks.shutdown().await;
}

/// Sends a refusal frame (the answer to a hello), waiting at most a second
/// for a peer that does not read.
pub(crate) async fn refuse(
    wr: &mut (impl tokio::io::AsyncWrite + Unpin),
    reason: DisconnectReason,
    message: &str,
) {
    let frame = handshake::reject_frame(reason, message);
    let _ = tokio::time::timeout(Duration::from_secs(1), write_frame(wr, &frame, usize::MAX)).await;
}

/// What a master or cluster says to a hello meant for the other one.
pub(crate) const CLUSTER_HELLO_AT_MASTER: &str =
    "this is a master: connect to the cluster address from the ticket";
/// What a cluster says to a hello meant for the master.
pub(crate) const MASTER_HELLO_AT_CLUSTER: &str = "this is a cluster: send a connect token";

/// A TCP connection that got a handshake slot and sent its first frame.
pub(crate) struct Greeted {
    /// The frames after the hello.
    pub frames: FrameReader<OwnedReadHalf>,
    /// The writing half.
    pub wr: OwnedWriteHalf,
    /// The hello.
    pub hello: Hello,
    /// The handshake slot, held until the handshake is done.
    pub permit: HandshakePermit,
}

/// What the master and clusters do with every TCP connection before its
/// hello is parsed: a slot in `gate` (total, per source address), the first
/// bytes within the first-bytes deadline, then the hello within the
/// handshake timeout. Refused (the reason passed to `refused`, the refusal
/// sent: a hello missing, late or not of this protocol version) or closed:
/// `None`.
pub(crate) async fn accept_hello(
    mut stream: TcpStream,
    peer: SocketAddr,
    gate: &Arc<HandshakeGate>,
    limits: &Limits,
    refused: &(dyn Fn(DisconnectReason) + Sync),
) -> Option<Greeted> {
    let _ = stream.set_nodelay(true);
    let admitted = gate
        .admit(peer.ip())
        .map_err(|why| (DisconnectReason::TooManyHandshakes, why.message()));
    let admitted = match admitted {
        Ok(p) if gate.first_bytes(&stream).await => Ok(p),
        Ok(_) => Err((DisconnectReason::HandshakeTimeout, "no first bytes in time")),
        Err(e) => Err(e),
    };
    let permit = match admitted {
        Ok(p) => p,
        Err((reason, why)) => {
            warn!("refused: {why}");
            refused(reason);
            refuse(&mut stream, reason, why).await;
            return None;
        }
    };
    let (rd, mut wr) = stream.into_split();
    let mut frames = FrameReader::new(rd, limits.max_frame);
    let hello = match frames.next_within(limits.handshake_timeout()).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            debug!("closed before its hello");
            return None;
        }
        Err(NetError::Timeout(_)) => {
            warn!("dropped: no hello within the handshake timeout");
            refused(DisconnectReason::HandshakeTimeout);
            let reason = DisconnectReason::HandshakeTimeout;
            refuse(&mut wr, reason, "no hello in time").await;
            return None;
        }
        Err(e) => {
            warn!("dropped: bad first frame: {e}");
            return None;
        }
    };
    let hello = match handshake::parse_hello(&hello) {
        Ok(h) => h,
        Err(e) => {
            warn!("refused: {e}");
            refused(e.reason());
            refuse(&mut wr, e.reason(), &e.to_string()).await;
            return None;
        }
    };
    Some(Greeted {
        frames,
        wr,
        hello,
        permit,
    })
}
