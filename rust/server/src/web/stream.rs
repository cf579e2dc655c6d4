//! The byte stream under a WebSocket: plain TCP or TLS over TCP, with a cap
//! on the bytes read before the WebSocket upgrade is done.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

enum Inner {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A WebSocket's transport. Until [`WebStream::lift_limit`], reading more
/// than the handshake limit fails (an upgrade request that does not end).
pub(crate) struct WebStream {
    inner: Inner,
    read: usize,
    limit: usize,
}

impl std::fmt::Debug for WebStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Inner::Plain(_) => "plain",
            Inner::Tls(_) => "tls",
        };
        f.debug_struct("WebStream").field("kind", &kind).finish()
    }
}

impl WebStream {
    pub(crate) fn plain(s: TcpStream, limit: usize) -> Self {
        Self {
            inner: Inner::Plain(s),
            read: 0,
            limit,
        }
    }

    pub(crate) fn tls(s: TlsStream<TcpStream>, limit: usize) -> Self {
        Self {
            inner: Inner::Tls(Box::new(s)),
            read: 0,
            limit,
        }
    }

    /// Ends the handshake byte cap (the WebSocket's own limits take over).
    pub(crate) fn lift_limit(&mut self) {
        self.limit = usize::MAX;
    }
}

impl AsyncRead for WebStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read >= this.limit {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the WebSocket upgrade request is over the handshake byte limit",
            )));
        }
        let before = buf.filled().len();
        let r = match &mut this.inner {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        this.read = this
            .read
            .saturating_add(buf.filled().len().saturating_sub(before));
        r
    }
}

impl AsyncWrite for WebStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
