//! Accepting connections and winding connection tasks down, shared by the
//! master and the cluster.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::warn;

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
