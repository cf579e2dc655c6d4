//! Tokio plumbing shared by the Sustenet servers and the client driver.
//!
//! It moves the protocol crate's frames and sealed packets over tokio
//! streams: a frame reader that never allocates past the frame limit, and a
//! sealed reader and writer that encode, seal and frame messages. Protocol
//! decisions stay in `sustenet-proto`; this crate only does the I/O.

use std::time::Duration;

use bytes::BytesMut;
use sustenet_proto::crypto::{StreamOpener, StreamSealer};
use sustenet_proto::{CryptoError, DisconnectReason, FrameDecoder, Message, encode_frame};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why reading or writing a connection failed. A message includes its
/// cause, which is therefore not also the error's `source()` (an error
/// chain would print it twice).
#[derive(Debug, Error)]
pub enum NetError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    /// A frame broke the framing rules (too large, empty).
    #[error("framing: {0}")]
    Frame(sustenet_proto::FrameError),
    /// A sealed frame could not be sealed or opened.
    #[error("crypto: {0}")]
    Crypto(CryptoError),
    /// An opened frame is not a valid message for this link.
    #[error("malformed message: {0}")]
    Decode(sustenet_proto::DecodeError),
    /// A message is too large to encode.
    #[error("cannot encode message: {0}")]
    Encode(sustenet_proto::EncodeError),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// Too many frames failed authentication.
    #[error("{0} frames failed authentication")]
    TooManyAuthFailures(u64),
    /// Nothing arrived in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// `From` for each cause a [`NetError`] wraps (`?` on them).
macro_rules! net_error_from {
    ($($cause:ty => $variant:ident),* $(,)?) => {
        $(impl From<$cause> for NetError {
            fn from(e: $cause) -> Self {
                Self::$variant(e)
            }
        })*
    };
}

net_error_from! {
    std::io::Error => Io,
    sustenet_proto::FrameError => Frame,
    CryptoError => Crypto,
    sustenet_proto::DecodeError => Decode,
    sustenet_proto::EncodeError => Encode,
}

impl NetError {
    /// The reason a connection that failed with this error ends with, the
    /// same on every link: too many refused frames is `Tampered`, a closed or
    /// broken socket `ConnectionLost`, silence `Timeout`, anything else a
    /// `ProtocolViolation`.
    pub fn reason(&self) -> DisconnectReason {
        match self {
            NetError::TooManyAuthFailures(_) => DisconnectReason::Tampered,
            NetError::Io(_) | NetError::Truncated => DisconnectReason::ConnectionLost,
            NetError::Timeout(_) => DisconnectReason::Timeout,
            _ => DisconnectReason::ProtocolViolation,
        }
    }
}

/// Reads whole frames off a byte stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader that refuses frames over `max_frame` bytes.
    pub fn new(inner: R, max_frame: usize) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(4096),
            decoder: FrameDecoder::new(max_frame),
        }
    }

    /// The next frame; `Ok(None)` when the peer closed cleanly between frames.
    pub async fn next(&mut self) -> Result<Option<BytesMut>, NetError> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(f));
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(4096);
            }
            let n = self.inner.read_buf(&mut self.buf).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(NetError::Truncated)
                };
            }
        }
    }

    /// The next frame within `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> Result<Option<BytesMut>, NetError> {
        tokio::time::timeout(limit, self.next())
            .await
            .map_err(|_| NetError::Timeout(limit))?
    }

    /// The largest frame accepted.
    pub fn max_frame(&self) -> usize {
        self.decoder.max_frame()
    }
}

/// Writes one plaintext frame (used for handshake frames).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    body: &[u8],
    max_frame: usize,
) -> Result<(), NetError> {
    let mut out = BytesMut::with_capacity(body.len() + 4);
    encode_frame(body, max_frame, &mut out)?;
    w.write_all(&out).await?;
    Ok(())
}

/// Reads sealed frames and decodes them as messages of type `M`.
///
/// A frame that fails authentication is dropped and counted; the connection
/// is only given up after `max_auth_failures` of them.
#[derive(Debug)]
pub struct SealedReader<R> {
    frames: FrameReader<R>,
    opener: StreamOpener,
    max_auth_failures: u64,
}

impl<R: AsyncRead + Unpin> SealedReader<R> {
    /// Wraps a frame reader and the session's opener.
    pub fn new(frames: FrameReader<R>, opener: StreamOpener, max_auth_failures: u64) -> Self {
        Self {
            frames,
            opener,
            max_auth_failures,
        }
    }

    /// The next message; `Ok(None)` when the peer closed cleanly.
    pub async fn recv<M: Message>(&mut self) -> Result<Option<M>, NetError> {
        loop {
            let Some(frame) = self.frames.next().await? else {
                return Ok(None);
            };
            match self.opener.open(&frame) {
                Ok(plain) => return Ok(Some(M::decode(&plain)?)),
                Err(_) => {
                    let failures = self.failures();
                    if failures >= self.max_auth_failures {
                        return Err(NetError::TooManyAuthFailures(failures));
                    }
                }
            }
        }
    }

    /// Refused frames so far (failed authentication, replays, stale).
    pub fn failures(&self) -> u64 {
        let s = self.opener.stats();
        s.auth_failures + s.replays + s.stale
    }

    /// The opener's counters.
    pub fn stats(&self) -> sustenet_proto::OpenStats {
        self.opener.stats()
    }
}

/// Encodes, seals and frames messages into a buffer, then writes the buffer
/// in one call: a writer task queues everything that is waiting, then flushes.
#[derive(Debug)]
pub struct SealedWriter<W> {
    inner: W,
    sealer: StreamSealer,
    max_frame: usize,
    plain: Vec<u8>,
    sealed: Vec<u8>,
    out: BytesMut,
    write_timeout: Option<Duration>,
}

impl<W: AsyncWrite + Unpin> SealedWriter<W> {
    /// Wraps a stream and the session's sealer.
    pub fn new(inner: W, sealer: StreamSealer, max_frame: usize) -> Self {
        Self {
            inner,
            sealer,
            max_frame,
            plain: Vec::new(),
            sealed: Vec::new(),
            out: BytesMut::new(),
            write_timeout: None,
        }
    }

    /// Gives up a write that makes no progress for `limit`: a peer that
    /// stops reading cannot hold a task and a socket forever.
    pub fn with_write_timeout(mut self, limit: Duration) -> Self {
        self.write_timeout = Some(limit);
        self
    }

    /// Encodes, seals and frames `msg` into the buffer.
    pub fn queue<M: Message>(&mut self, msg: &M) -> Result<(), NetError> {
        self.plain.clear();
        msg.encode(&mut self.plain)?;
        // Refuse before sealing: a sealed packet that is never sent would
        // leave a gap in the sequence, which the receiver treats as tampering.
        let sealed_len =
            self.plain.len() + sustenet_proto::crypto::SEQ_LEN + sustenet_proto::crypto::TAG_LEN;
        if sealed_len > self.max_frame {
            return Err(NetError::Frame(sustenet_proto::FrameError::TooLarge {
                len: sealed_len as u64,
                max: self.max_frame,
            }));
        }
        self.sealed.clear();
        self.sealer.seal_into(&self.plain, &mut self.sealed)?;
        encode_frame(&self.sealed, self.max_frame, &mut self.out)?;
        Ok(())
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), NetError> {
        if !self.out.is_empty() {
            match self.write_timeout {
                Some(limit) => tokio::time::timeout(limit, self.inner.write_all(&self.out))
                    .await
                    .map_err(|_| NetError::Timeout(limit))??,
                None => self.inner.write_all(&self.out).await?,
            }
            self.out.clear();
        }
        Ok(())
    }

    /// Queues and writes one message.
    pub async fn send<M: Message>(&mut self, msg: &M) -> Result<(), NetError> {
        self.queue(msg)?;
        self.flush().await
    }

    /// Shuts the write side down (sends FIN after everything queued).
    pub async fn shutdown(&mut self) -> Result<(), NetError> {
        self.flush().await?;
        match self.write_timeout {
            Some(limit) => tokio::time::timeout(limit, self.inner.shutdown())
                .await
                .map_err(|_| NetError::Timeout(limit))??,
            None => self.inner.shutdown().await?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod error_tests {
    use sustenet_proto::error::error_chain;

    use super::*;

    #[test]
    fn a_net_error_says_its_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let cases: [(NetError, &str); 5] = [
            (io.into(), "i/o error: reset by peer"),
            (
                sustenet_proto::FrameError::Empty.into(),
                "framing: empty frame",
            ),
            (CryptoError::TooShort.into(), "crypto: packet is too short"),
            (
                sustenet_proto::DecodeError::Truncated.into(),
                "malformed message: message is truncated",
            ),
            (
                sustenet_proto::EncodeError::TooLong { len: 70, max: 64 }.into(),
                "cannot encode message: field of 70 bytes is over the limit of 64",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(error_chain(&e), text);
        }
    }
}
