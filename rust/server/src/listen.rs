//! Accepting connections and winding connection tasks down, shared by the
//! master and the cluster.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
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

/// Lets the tasks finish (their goodbyes) for a moment, then cuts the rest.
pub(crate) async fn wind_down<T: 'static>(tasks: &mut JoinSet<T>) {
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(GOODBYE_GRACE, drain).await;
    tasks.shutdown().await;
}
