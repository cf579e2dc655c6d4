//! One web frame at a time over a WebSocket, and the ways a link ends.

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use sustenet_proto::{DisconnectReason, handshake};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::stream::WebStream;

type Ws = WebSocketStream<WebStream>;

/// Why a web link ended or a frame was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebError {
    /// A text message: web frames are binary.
    #[error("a text message (web frames are binary)")]
    Text,
    /// A message or frame over `max_message_bytes`.
    #[error("a message over the size limit: {0}")]
    TooLarge(String),
    /// A WebSocket protocol error or a failed read or write.
    #[error("{0}")]
    Socket(String),
    /// A write did not finish within the timeout.
    #[error("a write timed out")]
    WriteTimeout,
}

impl WebError {
    /// The reason the peer is told (or the log says).
    pub(crate) fn reason(&self) -> DisconnectReason {
        match self {
            WebError::Text | WebError::TooLarge(_) => DisconnectReason::ProtocolViolation,
            WebError::Socket(_) | WebError::WriteTimeout => DisconnectReason::ConnectionLost,
        }
    }
}

impl From<WsError> for WebError {
    fn from(e: WsError) -> Self {
        match e {
            WsError::Capacity(c @ CapacityError::MessageTooLong { .. }) => {
                WebError::TooLarge(c.to_string())
            }
            other => WebError::Socket(other.to_string()),
        }
    }
}

/// A WebSocket carrying web frames.
pub(crate) struct WebLink {
    ws: Ws,
}

impl WebLink {
    pub(crate) fn new(ws: Ws) -> Self {
        Self { ws }
    }

    /// Splits the link into its writer and reader.
    pub(crate) fn split(self, write_timeout: Duration) -> (WebTx, WebRx) {
        let (tx, rx) = self.ws.split();
        (
            WebTx {
                sink: tx,
                write_timeout,
            },
            WebRx { stream: rx },
        )
    }
}

/// The reading half.
pub(crate) struct WebRx {
    stream: SplitStream<Ws>,
}

impl WebRx {
    /// The next web frame; `None` once the peer closed the WebSocket.
    /// Pings and pongs are answered by the WebSocket layer and skipped.
    pub(crate) async fn recv(&mut self) -> Result<Option<Vec<u8>>, WebError> {
        loop {
            match self.stream.next().await {
                None => return Ok(None),
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Binary(b))) => return Ok(Some(b.into())),
                Some(Ok(Message::Text(_))) => return Err(WebError::Text),
                Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            }
        }
    }

    /// After this side's close frame: reads on until the client answers the
    /// close, at most a second, so the socket is not reset under frames the
    /// client has not read yet (it would lose the goodbye and the close code).
    pub(crate) async fn linger(&mut self) {
        let drain = async { while let Ok(Some(_)) = self.recv().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    }

    /// [`WebRx::recv`] within `limit`; `Err(None)` when it passed.
    pub(crate) async fn recv_within(
        &mut self,
        limit: Duration,
    ) -> Result<Result<Option<Vec<u8>>, WebError>, ()> {
        tokio::time::timeout(limit, self.recv())
            .await
            .map_err(|_| ())
    }
}

/// The writing half.
pub(crate) struct WebTx {
    sink: SplitSink<Ws, Message>,
    write_timeout: Duration,
}

impl WebTx {
    /// Sends one web frame (and flushes it), within the write timeout.
    pub(crate) async fn send(&mut self, frame: Vec<u8>) -> Result<(), WebError> {
        match tokio::time::timeout(self.write_timeout, self.sink.send(Message::binary(frame))).await
        {
            Ok(r) => r.map_err(WebError::from),
            Err(_) => Err(WebError::WriteTimeout),
        }
    }

    /// Queues one web frame without flushing (see [`WebTx::flush`]).
    pub(crate) async fn feed(&mut self, frame: Vec<u8>) -> Result<(), WebError> {
        match tokio::time::timeout(self.write_timeout, self.sink.feed(Message::binary(frame))).await
        {
            Ok(r) => r.map_err(WebError::from),
            Err(_) => Err(WebError::WriteTimeout),
        }
    }

    /// Writes what was fed.
    pub(crate) async fn flush(&mut self) -> Result<(), WebError> {
        match tokio::time::timeout(self.write_timeout, self.sink.flush()).await {
            Ok(r) => r.map_err(WebError::from),
            Err(_) => Err(WebError::WriteTimeout),
        }
    }

    /// Sends a refusal (the `Reject` handshake frame) and closes, waiting
    /// at most a second for a peer that does not read.
    pub(crate) async fn refuse(&mut self, reason: DisconnectReason, message: &str) {
        let frame = handshake::reject_frame(reason, message);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.sink.send(Message::binary(frame)).await;
        })
        .await;
        self.close(close_code(reason), message).await;
    }

    /// Sends a close frame (`code`, `why` cut to fit) and ends the link,
    /// waiting at most a second.
    pub(crate) async fn close(&mut self, code: CloseCode, why: &str) {
        let mut end = why.len().min(120);
        while !why.is_char_boundary(end) {
            end -= 1;
        }
        let frame = CloseFrame {
            code,
            reason: why[..end].to_owned().into(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.sink.send(Message::Close(Some(frame))).await;
            let _ = self.sink.close().await;
        })
        .await;
    }
}

/// First close code of the range that carries a disconnect reason.
pub(crate) const REASON_CLOSE_CODES: u16 = 4000;

/// The close code for a link that ends with `reason`: 4000 + its wire code
/// (docs/protocol.md §17.2), so a client whose WebSocket drops the frames
/// that arrive with the close (Godot's `WebSocketPeer`) still learns why.
pub(crate) fn close_code(reason: DisconnectReason) -> CloseCode {
    CloseCode::from(REASON_CLOSE_CODES + u16::from(reason.code()))
}
