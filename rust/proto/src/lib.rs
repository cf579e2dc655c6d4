//! The Sustenet wire protocol, sans-IO.
//!
//! This crate holds everything two Sustenet peers agree on: the messages of
//! every link and their byte encoding, TCP framing with a hard size limit,
//! the three handshakes (cluster-master with the cluster key, client-master
//! with Noise NK and the master's public key, client-cluster with a connect
//! token), connect tokens, and the encrypted sessions with their sequence
//! numbers and replay window. It performs no I/O and never reads the clock:
//! bytes and the current time go in, bytes and decisions come out, so all of
//! it is testable in memory. The tokio servers and client drive it.
//!
//! docs/protocol.md in the repository describes the same protocol byte by byte.

#![deny(missing_docs)]

pub mod crypto;
pub mod datagram;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod instance;
pub mod message;
pub mod reason;
pub mod replay;
pub mod report;
pub mod resume;
pub mod token;
pub mod web;
mod wire;

pub use crypto::{
    ClientSessionKeys, DatagramSession, Key, MasterKeypair, OpenStats, PublicKey, SessionSecret,
    Side, StreamSession,
};
pub use error::{CryptoError, DecodeError, EncodeError, FrameError, HandshakeError, TokenError};
pub use frame::{DEFAULT_MAX_FRAME, FrameDecoder, encode_frame};
pub use message::{
    ClientToCluster, ClientToMaster, ClusterInfo, ClusterToClient, ClusterToMaster, Goodbye,
    JoinTarget, MasterToClient, MasterToCluster, Message, Register, Status, Ticket,
};
pub use reason::DisconnectReason;
pub use token::{ConnectToken, UsedTokens};

/// The four bytes every handshake frame starts with.
pub const MAGIC: [u8; 4] = *b"SNET";
/// The protocol version this crate speaks. Peers with another version are refused.
pub const PROTOCOL_VERSION: u16 = 3;
/// The master's TCP port when the configuration says 0.
pub const DEFAULT_MASTER_PORT: u16 = 6256;
/// The cluster's TCP and UDP port when the configuration says 0.
pub const DEFAULT_CLUSTER_PORT: u16 = 6257;
