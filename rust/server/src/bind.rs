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
use std::net::SocketAddr;

use tokio::net::{TcpListener, UdpSocket};

/// A port that could not be bound: which protocol, which address, and the
/// system's reason. The message includes the system's reason, so it is not
/// also given as [`std::error::Error::source`] (an error chain, such as
/// `anyhow`'s `{:#}`, would print it twice); [`BindError::io_error`] gives it.
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

impl std::error::Error for BindError {}

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

    /// A listener for `protocol` (such as `WebSocket`) on `addr` that could
    /// not be bound.
    pub(crate) fn at(protocol: &'static str, addr: SocketAddr, source: io::Error) -> Self {
        Self {
            protocol,
            address: addr.to_string(),
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

/// Whether this platform spreads a UDP port's datagrams over several
/// sockets bound to it with `SO_REUSEPORT` (Linux and Android do, by the
/// source address and port; other systems either lack the option or give
/// every unicast datagram to one of the sockets).
pub const UDP_REUSE_PORT_SPREADS: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// A cluster's sockets for `receive_threads` UDP receivers
/// (`[cluster] receive_threads`): as [`bind_cluster`], but with 2 or more
/// receivers on a platform where [`UDP_REUSE_PORT_SPREADS`], the UDP socket
/// is bound with `SO_REUSEPORT`, so that the cluster can bind one more
/// socket per receiver to the same port. A port already in use is still
/// refused (the port is first bound without the option, then let go), and
/// port 0 picks a free port this way too. Between that check and the bind
/// another program could take the port; then this fails as
/// [`bind_cluster`] does.
pub async fn bind_cluster_for(
    bind: &str,
    tcp_port: u16,
    udp_port: u16,
    receive_threads: usize,
) -> Result<(TcpListener, UdpSocket), BindError> {
    let tcp = bind_tcp(bind, tcp_port).await?;
    if receive_threads <= 1 || !UDP_REUSE_PORT_SPREADS {
        return Ok((tcp, bind_udp(bind, udp_port).await?));
    }
    let probe = bind_udp(bind, udp_port).await?;
    let addr = probe
        .local_addr()
        .map_err(|e| BindError::new("UDP", bind, udp_port, e))?;
    drop(probe);
    let udp = reuse_port_socket(addr)
        .and_then(|s| UdpSocket::from_std(s.into()))
        .map_err(|e| BindError::new("UDP", bind, addr.port(), e))?;
    Ok((tcp, udp))
}

/// A non-blocking UDP socket bound to `addr` with `SO_REUSEPORT` (where
/// [`UDP_REUSE_PORT_SPREADS`]; elsewhere a plain one).
pub(crate) fn reuse_port_socket(addr: SocketAddr) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// Whether `udp` was bound with `SO_REUSEPORT` where the option spreads
/// datagrams (so more sockets can join its port); false elsewhere.
pub(crate) fn shares_its_port(udp: &UdpSocket) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        socket2::SockRef::from(udp).reuse_port().unwrap_or(false)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = udp;
        false
    }
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
        // Bound for several receivers, a port in use is refused alike.
        let again = bind_cluster_for("127.0.0.1", 0, port, 4).await.err();
        assert!(
            again.is_some_and(|e| e.io_error().kind() == io::ErrorKind::AddrInUse),
            "a UDP port in use was bound again for receivers"
        );
        let v6 = BindError::new("TCP", "::1", 7, io::ErrorKind::AddrInUse.into());
        assert!(v6.to_string().starts_with("cannot listen on TCP [::1]:7: "));
        Ok(())
    }

    #[tokio::test]
    async fn a_port_bound_for_receivers_takes_more_sockets_and_no_other_server()
    -> Result<(), Box<dyn std::error::Error>> {
        let (_tcp, udp) = bind_cluster_for("127.0.0.1", 0, 0, 2).await?;
        let addr = udp.local_addr()?;
        assert_eq!(shares_its_port(&udp), UDP_REUSE_PORT_SPREADS);
        if UDP_REUSE_PORT_SPREADS {
            // The cluster's next receiver joins the port...
            let second = reuse_port_socket(addr)?;
            assert_eq!(second.local_addr()?.as_socket(), Some(addr));
        }
        // ...but neither a plain bind nor another cluster's does.
        assert!(bind_udp("127.0.0.1", addr.port()).await.is_err());
        assert!(
            bind_cluster_for("127.0.0.1", 0, addr.port(), 2)
                .await
                .is_err()
        );
        let (_tcp, plain) = bind_cluster_for("127.0.0.1", 0, 0, 1).await?;
        assert!(!shares_its_port(&plain), "one receiver: no SO_REUSEPORT");
        Ok(())
    }
}
