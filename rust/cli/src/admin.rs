//! Starting the metrics and admin endpoint of `master`, `cluster` and `up`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use sustenet_server::metrics::admin::{self, Admin};
use tokio::net::TcpListener;

use crate::servers::shutdown_signal;

/// Binds the admin endpoint on `addr`.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot serve metrics on {addr} (is another process using it? set [metrics] bind)")
    })
}

/// Serves `admin` on `listener` in the background until Ctrl-C or SIGTERM.
pub fn spawn(listener: TcpListener, admin: Admin) {
    tokio::spawn(admin::serve(listener, Arc::new(admin), shutdown_signal()));
}

/// The URL of a path on the endpoint, with the token when there is one.
pub fn url(addr: SocketAddr, path: &str, token: &str) -> String {
    if token.is_empty() {
        format!("http://{addr}{path}")
    } else {
        format!("http://{addr}{path}?token={token}")
    }
}

/// A fresh token: 24 random bytes in hex.
pub fn random_token() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
