//! Binding a server's ports: the one way the `sustenet` command (master,
//! cluster, `up`) and the Godot nodes (`SustenetMaster`, `SustenetCluster`)
//! open their listeners, so a port in use reads the same everywhere.
//!
//! These are tokio's binds (on Unix the TCP listener takes `SO_REUSEADDR`,
//! so a restarted server gets its port back while old connections linger).
//! Call them inside a tokio runtime, or through `Handle::block_on` from a
//! thread outside it.

use std::fmt;
use std::io;

use tokio::net::{TcpListener, UdpSocket};

/// A port that could not be bound: which protocol, which address, and the
/// system's reason.
#[derive(Debug)]
pub struct BindError {
    protocol: &'static str,
    address: String,
    source: io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot listen on {} {}: {} (is another server using that port?)",
            self.protocol, self.address, self.source
        )
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl BindError {
    fn new(protocol: &'static str, bind: &str, port: u16, source: io::Error) -> Self {
        let address = if bind.contains(':') {
            format!("[{bind}]:{port}")
        } else {
            format!("{bind}:{port}")
        };
        Self {
            protocol,
            address,
            source,
        }
    }

    /// The system's error (`AddrInUse`, `PermissionDenied`, ...).
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }
}

/// A TCP listener on `bind` (a host name or address, `0.0.0.0` or `::`
/// for all) and `port` (0: any free port; read it from `local_addr`).
pub async fn bind_tcp(bind: &str, port: u16) -> Result<TcpListener, BindError> {
    TcpListener::bind((bind, port))
        .await
        .map_err(|e| BindError::new("TCP", bind, port, e))
}

/// A UDP socket on `bind` and `port`, as [`bind_tcp`].
pub async fn bind_udp(bind: &str, port: u16) -> Result<UdpSocket, BindError> {
    UdpSocket::bind((bind, port))
        .await
        .map_err(|e| BindError::new("UDP", bind, port, e))
}

/// A cluster's sockets: its TCP listener on `tcp_port` and its UDP socket
/// on `udp_port`, both on `bind`.
pub async fn bind_cluster(
    bind: &str,
    tcp_port: u16,
    udp_port: u16,
) -> Result<(TcpListener, UdpSocket), BindError> {
    Ok((
        bind_tcp(bind, tcp_port).await?,
        bind_udp(bind, udp_port).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_in_use_says_which_protocol_and_address()
    -> Result<(), Box<dyn std::error::Error>> {
        let (_tcp, udp) = bind_cluster("127.0.0.1", 0, 0).await?;
        let port = udp.local_addr()?.port();
        let second = bind_udp("127.0.0.1", port).await.err();
        assert!(second.is_some(), "a UDP port in use was bound again");
        if let Some(e) = second {
            assert_eq!(e.io_error().kind(), io::ErrorKind::AddrInUse);
            let text = e.to_string();
            let start = format!("cannot listen on UDP 127.0.0.1:{port}: ");
            assert!(text.starts_with(&start), "{text}");
            assert!(
                text.ends_with("(is another server using that port?)"),
                "{text}"
            );
        }
        let v6 = BindError::new("TCP", "::1", 7, io::ErrorKind::AddrInUse.into());
        assert!(v6.to_string().starts_with("cannot listen on TCP [::1]:7: "));
        Ok(())
    }
}
