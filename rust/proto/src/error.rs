//! Errors of the protocol layer: one enum per concern, lowercase messages.

use thiserror::Error;

use crate::reason::DisconnectReason;

/// A message body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The body ended before a field was complete.
    #[error("message is truncated")]
    Truncated,
    /// A length field is over the limit for that field.
    #[error("field of {len} bytes is over the limit of {max}")]
    TooLong {
        /// The length the peer announced.
        len: usize,
        /// The limit for that field.
        max: usize,
    },
    /// The message type byte is not one this link knows.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// A field holds a value that is not allowed.
    #[error("invalid field: {0}")]
    Invalid(&'static str),
    /// Bytes were left over after the message.
    #[error("{0} unexpected bytes after the message")]
    TrailingBytes(usize),
}

/// A message could not be encoded because a field is over its limit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A field is longer than the protocol allows.
    #[error("field of {len} bytes is over the limit of {max}")]
    TooLong {
        /// The length of the field.
        len: usize,
        /// The limit for that field.
        max: usize,
    },
}

/// A frame could not be taken off a byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The length prefix announces more than the configured limit.
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// A zero-length frame: never sent by a conforming peer.
    #[error("empty frame")]
    Empty,
}

/// Sealing or opening an encrypted packet failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// The packet does not authenticate under the session key: tampered,
    /// truncated, or sealed with another key.
    #[error("packet failed authentication")]
    Authentication,
    /// The packet's sequence number was already seen (a replay).
    #[error("packet sequence {0} was already received (replay)")]
    Replay(u64),
    /// The packet's sequence number is older than the replay window or not
    /// newer than the last one on an ordered channel.
    #[error("packet sequence {seq} is stale (newest is {newest})")]
    Stale {
        /// The sequence number received.
        seq: u64,
        /// The newest sequence number accepted so far.
        newest: u64,
    },
    /// The packet is too short to hold its header and tag.
    #[error("packet is too short")]
    TooShort,
    /// The sending sequence space is exhausted; the session must be renewed.
    #[error("sequence numbers exhausted")]
    SequenceExhausted,
    /// The plaintext is too large to seal within the limit.
    #[error("payload of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// Length of the plaintext.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Base64 or length of a key is wrong.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
}

/// A connect token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TokenError {
    /// The token does not open under this cluster's key: forged, tampered,
    /// or sealed for a cluster with another key.
    #[error("connect token is forged or sealed for another key")]
    Invalid,
    /// The token's expiry is in the past.
    #[error("connect token has expired")]
    Expired,
    /// The token names another cluster.
    #[error("connect token is for another cluster")]
    WrongCluster,
    /// The token was already used to connect.
    #[error("connect token was already used")]
    AlreadyUsed,
}

impl TokenError {
    /// The disconnect reason sent to a client whose token was refused.
    pub fn reason(self) -> DisconnectReason {
        match self {
            TokenError::Invalid => DisconnectReason::TokenInvalid,
            TokenError::Expired => DisconnectReason::TokenExpired,
            TokenError::WrongCluster => DisconnectReason::TokenWrongCluster,
            TokenError::AlreadyUsed => DisconnectReason::TokenUsed,
        }
    }
}

/// A handshake failed. A message includes its cause, which is therefore
/// not also the error's `source()` (an error chain would print it twice).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    /// The first frame does not start with the Sustenet magic bytes.
    #[error("not a sustenet peer (bad magic bytes)")]
    BadMagic,
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: we speak {ours}, the peer speaks {theirs}")]
    VersionMismatch {
        /// Our protocol version.
        ours: u16,
        /// The peer's protocol version.
        theirs: u16,
    },
    /// The peer opened a kind of connection this endpoint does not serve.
    #[error("unexpected connection kind {0:#04x}")]
    UnexpectedKind(u8),
    /// The handshake message could not be decoded.
    #[error("malformed handshake: {0}")]
    Malformed(DecodeError),
    /// The peer could not prove its key (cluster key, or Noise static key).
    #[error("authentication failed")]
    AuthenticationFailed,
    /// The master public key the client was given does not match the master.
    #[error(
        "the master refused the handshake: the master public key this client is configured with is probably wrong"
    )]
    WrongMasterKey,
    /// The connect token was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The peer refused the connection and said why.
    #[error("refused by the peer: {reason} ({message})")]
    Rejected {
        /// The reason code.
        reason: DisconnectReason,
        /// The peer's explanation.
        message: String,
    },
    /// A message arrived that does not belong at this point of the handshake.
    #[error("unexpected message in handshake state {0}")]
    UnexpectedMessage(&'static str),
    /// The Noise layer failed.
    #[error("noise handshake failed: {0}")]
    Noise(String),
    /// A key is unusable.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl From<DecodeError> for HandshakeError {
    fn from(e: DecodeError) -> Self {
        Self::Malformed(e)
    }
}

impl HandshakeError {
    /// The disconnect reason that describes this failure to the peer.
    pub fn reason(&self) -> DisconnectReason {
        match self {
            HandshakeError::VersionMismatch { .. } => DisconnectReason::VersionMismatch,
            HandshakeError::AuthenticationFailed | HandshakeError::WrongMasterKey => {
                DisconnectReason::AuthFailed
            }
            HandshakeError::Token(t) => t.reason(),
            HandshakeError::Rejected { reason, .. } => *reason,
            _ => DisconnectReason::ProtocolViolation,
        }
    }
}

/// `error` and each of its causes ([`Error::source`]), joined by `": "`: the
/// whole story in one line, as a log or a command-line error prints it.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_error_says_its_cause_once() {
        let cases: [(HandshakeError, &str); 3] = [
            (
                DecodeError::Truncated.into(),
                "malformed handshake: message is truncated",
            ),
            (TokenError::Expired.into(), "connect token has expired"),
            (
                CryptoError::Authentication.into(),
                "packet failed authentication",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(error_chain(&e), text);
        }
    }
}
