//! Keys and encrypted sessions.
//!
//! Every packet after a handshake is sealed with AES-256-GCM (or the Noise
//! transport cipher on the client-master link). The nonce is built from a
//! per-direction sequence number that travels in clear in front of the
//! ciphertext: a stream (TCP) receiver accepts only strictly increasing
//! numbers, a datagram (UDP) receiver checks a replay window. A packet that
//! fails any check is refused and counted; it never reaches the game.

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hkdf::Hkdf;
use rand::CryptoRng;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::CryptoError;
use crate::replay::ReplayWindow;

/// Bytes of an AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes of the sequence number in front of every sealed stream packet.
pub const SEQ_LEN: usize = 8;

/// A 256-bit symmetric key: a cluster key, or a derived session key.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Key([u8; 32]);

impl Key {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random key.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        Self(k)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses standard base64 (surrounding white space is ignored).
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        decode_key32(text).map(Self)
    }

    /// Standard base64 of the key.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

fn decode_key32(text: &str) -> Result<[u8; 32], CryptoError> {
    let raw = B64
        .decode(text.trim())
        .map_err(|_| CryptoError::InvalidKey("not valid base64"))?;
    raw.try_into()
        .map_err(|_| CryptoError::InvalidKey("a key is 32 bytes (44 base64 characters)"))
}

/// The master's static X25519 keypair for the client-master Noise handshake.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKeypair {
    private: [u8; 32],
    public: [u8; 32],
}

impl MasterKeypair {
    /// A fresh keypair.
    pub fn generate() -> Result<Self, CryptoError> {
        let builder = snow::Builder::new(crate::handshake::noise_params());
        let kp = builder
            .generate_keypair()
            .map_err(|_| CryptoError::InvalidKey("could not generate a keypair"))?;
        Self::from_parts(&kp.private, &kp.public)
    }

    fn from_parts(private: &[u8], public: &[u8]) -> Result<Self, CryptoError> {
        let private: [u8; 32] = private
            .try_into()
            .map_err(|_| CryptoError::InvalidKey("a private key is 32 bytes"))?;
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| CryptoError::InvalidKey("a public key is 32 bytes"))?;
        Ok(Self { private, public })
    }

    /// Rebuilds the keypair from its base64 private key (the public key is derived).
    pub fn from_private_base64(text: &str) -> Result<Self, CryptoError> {
        let private = decode_key32(text)?;
        let public = x25519_public(&private);
        Ok(Self { private, public })
    }

    /// The private key in base64, for the master's key file.
    pub fn private_base64(&self) -> String {
        B64.encode(self.private)
    }

    /// The public key, which clients are configured with.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.public)
    }

    pub(crate) fn private_bytes(&self) -> &[u8; 32] {
        &self.private
    }
}

impl fmt::Debug for MasterKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeypair")
            .field("public", &self.public().to_base64())
            .finish_non_exhaustive()
    }
}

/// X25519 public key for a private scalar, through the Noise DH of snow: a
/// one-way `NK` handshake's responder exposes nothing for this, so compute it
/// with curve25519 arithmetic that snow already depends on.
fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
    use curve25519_dalek::montgomery::MontgomeryPoint;
    use curve25519_dalek::scalar::clamp_integer;
    let scalar = clamp_integer(*private);
    MontgomeryPoint::mul_base_clamped(scalar).to_bytes()
}

/// The master's public key, as given to clients (base64).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Parses standard base64.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        decode_key32(text).map(Self)
    }

    /// Standard base64.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

/// HKDF salt of the client-cluster session keys (followed by the cluster's nonce).
pub const CLIENT_CLUSTER_SALT: &[u8] = b"sustenet v3 client-cluster";
/// HKDF salt of the key that seals a join proof.
pub const JOIN_PROOF_SALT: &[u8] = b"sustenet v3 join proof";
/// HKDF salt of a reconnect's keys (followed by the client's nonce).
pub const RESUME_SALT: &[u8] = b"sustenet v3 resume";
/// HKDF salt of the cluster-master link keys (followed by both nonces and the key name).
pub const CLUSTER_MASTER_SALT: &[u8] = b"sustenet v3 cluster-master";
/// HKDF salt of the agent-master link keys (followed by both nonces and the key name).
pub const AGENT_MASTER_SALT: &[u8] = b"sustenet v3 agent-master";
/// HKDF salt of the admin-master link keys (followed by both nonces and the key name).
pub const ADMIN_MASTER_SALT: &[u8] = b"sustenet v3 admin-master";
/// HKDF salt of the token key derived from a cluster key.
pub const TOKEN_KEY_SALT: &[u8] = b"sustenet v3 token";

/// HKDF-SHA256 of `ikm` with `salt` into one 32-byte key per label. Fails
/// (instead of returning a weak key) if HKDF refuses the output length.
pub(crate) fn derive_keys<const N: usize>(
    ikm: &[u8],
    salt: &[u8],
    labels: [&str; N],
) -> Result<[Key; N], CryptoError> {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut out: [Key; N] = std::array::from_fn(|_| Key([0u8; 32]));
    for (key, label) in out.iter_mut().zip(labels) {
        hk.expand(label.as_bytes(), &mut key.0)
            .map_err(|_| CryptoError::InvalidKey("key derivation failed"))?;
    }
    Ok(out)
}

/// The key connect tokens for a cluster are sealed with, derived from the
/// cluster key (which itself never seals anything: the link keys derive
/// from it separately, §6.2 of docs/protocol.md).
pub fn token_key(cluster_key: &Key) -> Result<Key, CryptoError> {
    let [k] = derive_keys(cluster_key.as_bytes(), TOKEN_KEY_SALT, ["connect token"])?;
    Ok(k)
}

/// The session secret a connect token carries: 32 random bytes, wiped from
/// memory when dropped and never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SessionSecret(pub [u8; 32]);

impl std::ops::Deref for SessionSecret {
    type Target = [u8; 32];
    fn deref(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for SessionSecret {
    fn from(b: [u8; 32]) -> Self {
        Self(b)
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(<redacted>)")
    }
}

fn aes(key: &Key) -> Aes256Gcm {
    Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(key.as_bytes()))
}

fn nonce_for(seq: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_le_bytes());
    n
}

/// Which side of a link a session belongs to; decides which derived key seals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The side that opened the connection (cluster to master, client to anything).
    Initiator,
    /// The side that accepted it.
    Responder,
}

#[derive(Clone)]
enum Cipher {
    Aes(Box<Aes256Gcm>),
    Noise(Arc<snow::StatelessTransportState>),
}

impl Cipher {
    fn seal(
        &self,
        seq: u64,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        match self {
            Cipher::Aes(c) => {
                let ct = c
                    .encrypt(
                        Nonce::from_slice(&nonce_for(seq)),
                        Payload {
                            msg: plaintext,
                            aad,
                        },
                    )
                    .map_err(|_| CryptoError::TooLarge {
                        len: plaintext.len(),
                        max: usize::MAX,
                    })?;
                out.extend_from_slice(&ct);
                Ok(())
            }
            Cipher::Noise(t) => {
                let start = out.len();
                out.resize(start + plaintext.len() + TAG_LEN, 0);
                let n = t
                    .write_message(seq, plaintext, &mut out[start..])
                    .map_err(|_| CryptoError::TooLarge {
                        len: plaintext.len(),
                        max: NOISE_MAX_PLAINTEXT,
                    })?;
                out.truncate(start + n);
                Ok(())
            }
        }
    }

    fn open(&self, seq: u64, aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match self {
            Cipher::Aes(c) => c
                .decrypt(
                    Nonce::from_slice(&nonce_for(seq)),
                    Payload {
                        msg: ciphertext,
                        aad,
                    },
                )
                .map_err(|_| CryptoError::Authentication),
            Cipher::Noise(t) => {
                let mut out = vec![0u8; ciphertext.len()];
                let n = t
                    .read_message(seq, ciphertext, &mut out)
                    .map_err(|_| CryptoError::Authentication)?;
                out.truncate(n);
                Ok(out)
            }
        }
    }
}

/// Largest plaintext one Noise transport message can carry.
pub const NOISE_MAX_PLAINTEXT: usize = 65535 - TAG_LEN;

/// Counters of refused packets, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenStats {
    /// Packets accepted.
    pub accepted: u64,
    /// Packets that failed authentication (tampered, foreign, truncated).
    pub auth_failures: u64,
    /// Packets whose sequence number was already seen.
    pub replays: u64,
    /// Packets older than the newest accepted one (reordered or far too old).
    pub stale: u64,
}

/// Seals packets of one direction of a stream (TCP) session.
pub struct StreamSealer {
    cipher: Cipher,
    next_seq: u64,
}

impl fmt::Debug for StreamSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSealer")
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl StreamSealer {
    /// Seals `plaintext` as `seq (u64 LE) || ciphertext || tag`, appended to `out`.
    pub fn seal_into(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let seq = self.next_seq;
        self.next_seq = seq.checked_add(1).ok_or(CryptoError::SequenceExhausted)?;
        out.extend_from_slice(&seq.to_le_bytes());
        self.cipher.seal(seq, &[], plaintext, out)
    }

    /// Seals into a fresh buffer.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(SEQ_LEN + plaintext.len() + TAG_LEN);
        self.seal_into(plaintext, &mut out)?;
        Ok(out)
    }

    /// The sequence number the next packet will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// Opens packets of one direction of a stream (TCP) session: each packet must
/// carry exactly the next sequence number, so a dropped, replayed or
/// reordered frame is refused.
pub struct StreamOpener {
    cipher: Cipher,
    next_min: u64,
    stats: OpenStats,
}

impl fmt::Debug for StreamOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamOpener")
            .field("next_min", &self.next_min)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl StreamOpener {
    /// Opens one sealed packet. A refused packet is counted in [`Self::stats`]
    /// and leaves the state as it was, so the next genuine packet still opens.
    pub fn open(&mut self, packet: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let r = self.open_inner(packet);
        match &r {
            Ok(_) => self.stats.accepted += 1,
            Err(CryptoError::Replay(_)) => self.stats.replays += 1,
            Err(CryptoError::Stale { .. }) => self.stats.stale += 1,
            Err(_) => self.stats.auth_failures += 1,
        }
        r
    }

    fn open_inner(&mut self, packet: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if packet.len() < SEQ_LEN + TAG_LEN {
            return Err(CryptoError::TooShort);
        }
        let (seq_bytes, ct) = packet.split_at(SEQ_LEN);
        let mut sb = [0u8; SEQ_LEN];
        sb.copy_from_slice(seq_bytes);
        let seq = u64::from_le_bytes(sb);
        if seq < self.next_min {
            return Err(CryptoError::Stale {
                seq,
                newest: self.next_min.saturating_sub(1),
            });
        }
        // A genuine sender never skips a number, so a gap means a frame was
        // removed from the stream: refuse it like a forgery.
        if seq > self.next_min {
            return Err(CryptoError::Authentication);
        }
        let plain = self.cipher.open(seq, &[], ct)?;
        self.next_min = seq.saturating_add(1);
        Ok(plain)
    }

    /// What was refused so far.
    pub fn stats(&self) -> OpenStats {
        self.stats
    }
}

/// Both directions of a stream session, ready to be split between a reader
/// and a writer task.
#[derive(Debug)]
pub struct StreamSession {
    /// Seals what we send.
    pub sealer: StreamSealer,
    /// Opens what we receive.
    pub opener: StreamOpener,
}

impl StreamSession {
    /// A session from two AES-256-GCM keys.
    pub fn aes(send: &Key, recv: &Key) -> Self {
        Self::from_ciphers(
            Cipher::Aes(Box::new(aes(send))),
            Cipher::Aes(Box::new(aes(recv))),
        )
    }

    pub(crate) fn noise(t: snow::StatelessTransportState) -> Self {
        let t = Arc::new(t);
        Self::from_ciphers(Cipher::Noise(t.clone()), Cipher::Noise(t))
    }

    fn from_ciphers(send: Cipher, recv: Cipher) -> Self {
        Self {
            sealer: StreamSealer {
                cipher: send,
                next_seq: 0,
            },
            opener: StreamOpener {
                cipher: recv,
                next_min: 0,
                stats: OpenStats::default(),
            },
        }
    }
}

/// The keys of a client-cluster session, derived from the 32-byte session
/// secret carried in the connect token and the cluster's fresh nonce, so no
/// two sessions share keys even when one token is presented twice.
#[derive(Debug, Clone)]
pub struct ClientSessionKeys {
    tcp_c2s: Key,
    tcp_s2c: Key,
    udp_c2s: Key,
    udp_s2c: Key,
    resume: Key,
}

impl ClientSessionKeys {
    /// Derives the four directional keys and the base of the reconnect
    /// keys (five keys) with HKDF-SHA256, salted with [`CLIENT_CLUSTER_SALT`]
    /// followed by the cluster's nonce.
    pub fn derive(secret: &[u8; 32], cluster_nonce: &[u8; 32]) -> Result<Self, CryptoError> {
        let mut salt = Vec::with_capacity(CLIENT_CLUSTER_SALT.len() + 32);
        salt.extend_from_slice(CLIENT_CLUSTER_SALT);
        salt.extend_from_slice(cluster_nonce);
        let [tcp_c2s, tcp_s2c, udp_c2s, udp_s2c, resume] = derive_keys(
            secret,
            &salt,
            [
                "tcp client->cluster",
                "tcp cluster->client",
                "udp client->cluster",
                "udp cluster->client",
                "resume",
            ],
        )?;
        Ok(Self {
            tcp_c2s,
            tcp_s2c,
            udp_c2s,
            udp_s2c,
            resume,
        })
    }

    /// The one-frame session a join proof is sealed in: one key from the
    /// session secret alone, salted with [`JOIN_PROOF_SALT`]. It seals only
    /// the fixed proof at sequence 0, so presenting a token twice repeats
    /// the same bytes and never seals two texts under one nonce.
    pub fn join_proof(secret: &[u8; 32]) -> Result<StreamSession, CryptoError> {
        let [k] = derive_keys(secret, JOIN_PROOF_SALT, ["join proof"])?;
        Ok(StreamSession::aes(&k, &k))
    }

    /// The stream session of a reconnect (resume) with the client's fresh
    /// `nonce`. Each reconnect has its own keys, so restarting the sequence
    /// numbers at 0 on the new connection never reuses an AES-GCM nonce.
    pub fn resume_stream(
        &self,
        nonce: &[u8; 32],
        side: Side,
    ) -> Result<StreamSession, CryptoError> {
        let mut salt = Vec::with_capacity(RESUME_SALT.len() + 32);
        salt.extend_from_slice(RESUME_SALT);
        salt.extend_from_slice(nonce);
        let [c2s, s2c] = derive_keys(
            self.resume.as_bytes(),
            &salt,
            ["tcp client->cluster", "tcp cluster->client"],
        )?;
        Ok(match side {
            Side::Initiator => StreamSession::aes(&c2s, &s2c),
            Side::Responder => StreamSession::aes(&s2c, &c2s),
        })
    }

    /// The stream session for `side`.
    pub fn stream(&self, side: Side) -> StreamSession {
        match side {
            Side::Initiator => StreamSession::aes(&self.tcp_c2s, &self.tcp_s2c),
            Side::Responder => StreamSession::aes(&self.tcp_s2c, &self.tcp_c2s),
        }
    }

    /// The datagram session for `side`, for the session id the cluster chose.
    pub fn datagram(&self, side: Side, session_id: u64) -> DatagramSession {
        let (send, recv) = match side {
            Side::Initiator => (&self.udp_c2s, &self.udp_s2c),
            Side::Responder => (&self.udp_s2c, &self.udp_c2s),
        };
        DatagramSession {
            sealer: DatagramSealer {
                key: Arc::new(DatagramKey {
                    cipher: aes(send),
                    session_id,
                }),
                next_seq: 0,
            },
            opener: DatagramOpener {
                cipher: aes(recv),
                session_id,
                window: ReplayWindow::new(),
                stats: OpenStats::default(),
            },
        }
    }
}

/// First byte of a session datagram.
pub const DATAGRAM_SESSION: u8 = 0x01;
/// Bytes of a session datagram header: kind, session id, sequence number.
pub const DATAGRAM_HEADER: usize = 1 + 8 + 8;
/// Bytes a sealed datagram adds to its plaintext.
pub const DATAGRAM_OVERHEAD: usize = DATAGRAM_HEADER + TAG_LEN;

/// The session id in a session datagram's header, without opening it, so a
/// server can find the session it belongs to.
pub fn datagram_session_id(datagram: &[u8]) -> Option<u64> {
    if datagram.len() < DATAGRAM_OVERHEAD || datagram[0] != DATAGRAM_SESSION {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&datagram[1..9]);
    Some(u64::from_le_bytes(b))
}

/// Seals datagrams of one direction.
///
/// It keeps the direction's next sequence number; its key is an immutable
/// [`DatagramKey`] that other threads may share. A server that seals on
/// worker threads takes a [`DatagramSlot`] (the next sequence number and
/// the key) where it owns the session and seals the slot on a worker: the
/// sequence numbers keep the order they were taken in, and each is sealed
/// at most once.
pub struct DatagramSealer {
    key: Arc<DatagramKey>,
    next_seq: u64,
}

/// A datagram session's sealing key for one direction and its session id:
/// immutable cipher state, shared between threads behind an [`Arc`].
pub struct DatagramKey {
    cipher: Aes256Gcm,
    session_id: u64,
}

impl fmt::Debug for DatagramKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramKey")
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl DatagramKey {
    /// Seals `plaintext` under sequence number `seq` into `out` (replacing
    /// what it held). Private: only a [`DatagramSlot`], which is taken once
    /// per sequence number and consumed by sealing, reaches it, so no
    /// nonce is ever used twice.
    fn seal_at(&self, seq: u64, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        out.clear();
        out.reserve(DATAGRAM_OVERHEAD + plaintext.len());
        out.push(DATAGRAM_SESSION);
        out.extend_from_slice(&self.session_id.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(plaintext);
        let (header, body) = out.split_at_mut(DATAGRAM_HEADER);
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce_for(seq)), header, body)
            .map_err(|_| CryptoError::TooLarge {
                len: plaintext.len(),
                max: usize::MAX,
            })?;
        out.extend_from_slice(&tag);
        Ok(())
    }
}

/// One sequence number of a datagram session, taken for one datagram with
/// [`DatagramSealer::take_slot`], and the session's key: sealing consumes
/// it, so the number is used at most once. It may be sealed on another
/// thread; datagrams of one session must still be sent in the order their
/// slots were taken, or the receiver drops the late ones as stale
/// (docs/protocol.md §10.2).
#[derive(Debug)]
pub struct DatagramSlot {
    key: Arc<DatagramKey>,
    seq: u64,
}

impl DatagramSlot {
    /// The session the slot belongs to.
    pub fn session_id(&self) -> u64 {
        self.key.session_id
    }

    /// The sequence number the datagram will carry.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Seals `plaintext` as `0x01 | session_id | seq | ciphertext | tag`
    /// into `out` (replacing what it held), as [`DatagramSealer::seal_into`].
    pub fn seal_into(self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.key.seal_at(self.seq, plaintext, out)
    }
}

impl fmt::Debug for DatagramSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramSealer")
            .field("session_id", &self.key.session_id)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl DatagramSealer {
    /// Seals `plaintext` as `0x01 | session_id | seq | ciphertext | tag`; the
    /// header is authenticated as associated data.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(DATAGRAM_OVERHEAD + plaintext.len());
        self.seal_into(plaintext, &mut out)?;
        Ok(out)
    }

    /// [`Self::seal`] into `out` (replacing what it held), encrypting in
    /// place: a server sealing thousands of datagrams per tick reuses one
    /// buffer instead of allocating and copying twice per datagram.
    pub fn seal_into(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.take_slot()?.seal_into(plaintext, out)
    }

    /// Takes the next sequence number for one datagram, to be sealed later
    /// (possibly on another thread) with [`DatagramSlot::seal_into`]. Fails
    /// when the session's sequence numbers are used up.
    pub fn take_slot(&mut self) -> Result<DatagramSlot, CryptoError> {
        let seq = self.next_seq;
        self.next_seq = seq.checked_add(1).ok_or(CryptoError::SequenceExhausted)?;
        Ok(DatagramSlot {
            key: self.key.clone(),
            seq,
        })
    }

    /// The session this sealer belongs to.
    pub fn session_id(&self) -> u64 {
        self.key.session_id
    }
}

/// Opens datagrams of one direction: authenticates, drops replays through a
/// replay window, and drops datagrams older than the newest delivered one
/// (unreliable *sequenced* delivery).
pub struct DatagramOpener {
    cipher: Aes256Gcm,
    session_id: u64,
    window: ReplayWindow,
    stats: OpenStats,
}

impl fmt::Debug for DatagramOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramOpener")
            .field("session_id", &self.session_id)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl DatagramOpener {
    /// Opens one datagram. Refused datagrams are counted in [`Self::stats`].
    pub fn open(&mut self, datagram: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let r = self.open_inner(datagram);
        match &r {
            Ok(_) => self.stats.accepted += 1,
            Err(CryptoError::Replay(_)) => self.stats.replays += 1,
            Err(CryptoError::Stale { .. }) => self.stats.stale += 1,
            Err(_) => self.stats.auth_failures += 1,
        }
        r
    }

    fn open_inner(&mut self, datagram: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if datagram_session_id(datagram) != Some(self.session_id) {
            return Err(if datagram.len() < DATAGRAM_OVERHEAD {
                CryptoError::TooShort
            } else {
                CryptoError::Authentication
            });
        }
        let mut sb = [0u8; 8];
        sb.copy_from_slice(&datagram[9..17]);
        let seq = u64::from_le_bytes(sb);
        // Cheap checks first, but the window only moves once the datagram
        // authenticates: a forged sequence number must not shift it.
        self.window.check(seq)?;
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce_for(seq)),
                Payload {
                    msg: &datagram[DATAGRAM_HEADER..],
                    aad: &datagram[..DATAGRAM_HEADER],
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        let newest = self.window.newest();
        self.window.accept(seq);
        if let Some(newest) = newest {
            if seq < newest {
                return Err(CryptoError::Stale { seq, newest });
            }
        }
        Ok(plain)
    }

    /// What was refused so far.
    pub fn stats(&self) -> OpenStats {
        self.stats
    }
}

/// Both directions of a datagram session.
#[derive(Debug)]
pub struct DatagramSession {
    /// Seals what we send.
    pub sealer: DatagramSealer,
    /// Opens what we receive.
    pub opener: DatagramOpener,
}

#[cfg(test)]
#[path = "crypto_tests.rs"]
mod tests;
