//! Connect tokens: what the master gives a client to present to a cluster.
//!
//! A token is sealed with the cluster's token key (AES-256-GCM, random 96-bit
//! nonce), derived from the cluster key with HKDF ([`crate::crypto::token_key`]),
//! so the client can carry it but neither read nor forge it. The
//! cluster opens it, checks cluster id and expiry, and remembers its id until
//! it expires so that it cannot be used twice.

use std::collections::HashMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::CryptoRng;

use crate::crypto::{Key, SessionSecret, token_key};
use crate::error::{EncodeError, TokenError};
use crate::message::USER_DATA_MAX;
use crate::wire::{Reader, Writer};

/// Format version byte at the front of a sealed token.
pub const TOKEN_FORMAT: u8 = 1;
/// Associated data of a sealed token: names the protocol version.
pub const TOKEN_AAD: &[u8] = b"sustenet connect token v3";
const NONCE_LEN: usize = 12;

/// What a connect token says. Only the master (which holds the cluster key)
/// can make one, and only the cluster can read it.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectToken {
    /// The client's id; the cluster uses it as the player id.
    pub client_id: u64,
    /// The cluster the token is for.
    pub cluster_id: u64,
    /// Unique id of this token, for single use.
    pub token_id: [u8; 16],
    /// Expiry, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// The session secret both ends derive their keys from (wiped on drop).
    pub session_secret: SessionSecret,
    /// Data the master attaches (a handoff's state blob, the login name, ...).
    pub user_data: Vec<u8>,
}

impl std::fmt::Debug for ConnectToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The session secret never reaches a log.
        f.debug_struct("ConnectToken")
            .field("client_id", &self.client_id)
            .field("cluster_id", &self.cluster_id)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("user_data_len", &self.user_data.len())
            .finish_non_exhaustive()
    }
}

impl ConnectToken {
    /// Seals the token with the token key derived from `cluster_key`.
    pub fn seal(
        &self,
        cluster_key: &Key,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>, EncodeError> {
        let too_long = |len| EncodeError::TooLong {
            len,
            max: USER_DATA_MAX,
        };
        // Wiped on every return, early ones included.
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(80 + self.user_data.len()));
        plain.put_u64(self.client_id);
        plain.put_u64(self.cluster_id);
        plain.put_slice(&self.token_id);
        plain.put_u64(self.expires_at_ms);
        plain.put_slice(&self.session_secret[..]);
        plain.put_bytes16(&self.user_data, USER_DATA_MAX)?;
        let key = token_key(cluster_key).map_err(|_| too_long(plain.len()))?;
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(key.as_bytes()));
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: TOKEN_AAD,
                },
            )
            .map_err(|_| too_long(plain.len()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(TOKEN_FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens and checks a sealed token: it must open under the token key of
    /// the cluster key `key`, name
    /// `cluster_id`, and not be expired at `now_ms`. Single use is checked
    /// separately with [`UsedTokens`].
    pub fn open(
        sealed: &[u8],
        key: &Key,
        cluster_id: u64,
        now_ms: u64,
    ) -> Result<Self, TokenError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != TOKEN_FORMAT {
            return Err(TokenError::Invalid);
        }
        let key = token_key(key).map_err(|_| TokenError::Invalid)?;
        let cipher = Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(key.as_bytes()));
        let plain = zeroize::Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(&sealed[1..1 + NONCE_LEN]),
                    Payload {
                        msg: &sealed[1 + NONCE_LEN..],
                        aad: TOKEN_AAD,
                    },
                )
                .map_err(|_| TokenError::Invalid)?,
        );
        let parsed = Self::parse(&plain);
        let token = parsed.ok_or(TokenError::Invalid)?;
        if token.cluster_id != cluster_id {
            return Err(TokenError::WrongCluster);
        }
        if token.expires_at_ms <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(token)
    }

    fn parse(plain: &[u8]) -> Option<Self> {
        let mut r = Reader::new(plain);
        let t = Self {
            client_id: r.u64().ok()?,
            cluster_id: r.u64().ok()?,
            token_id: r.array().ok()?,
            expires_at_ms: r.u64().ok()?,
            session_secret: SessionSecret(r.array().ok()?),
            user_data: r.bytes16(USER_DATA_MAX).ok()?.to_vec(),
        };
        r.finish().ok()?;
        Some(t)
    }
}

/// Token ids already used, each kept until its token expires.
#[derive(Debug, Default)]
pub struct UsedTokens {
    seen: HashMap<[u8; 16], u64>,
    next_prune_ms: u64,
}

impl UsedTokens {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the token as used; refuses it if it was used before.
    pub fn use_token(&mut self, token: &ConnectToken, now_ms: u64) -> Result<(), TokenError> {
        if now_ms >= self.next_prune_ms {
            self.seen.retain(|_, exp| *exp > now_ms);
            self.next_prune_ms = now_ms.saturating_add(1000);
        }
        match self.seen.get(&token.token_id) {
            Some(exp) if *exp > now_ms => Err(TokenError::AlreadyUsed),
            _ => {
                self.seen.insert(token.token_id, token.expires_at_ms);
                Ok(())
            }
        }
    }

    /// How many token ids are remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none are remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn token() -> ConnectToken {
        ConnectToken {
            client_id: 9,
            cluster_id: 77,
            token_id: [3; 16],
            expires_at_ms: 10_000,
            session_secret: [5; 32].into(),
            user_data: b"state".to_vec(),
        }
    }

    #[test]
    fn open_checks_everything() {
        let mut rng = StdRng::seed_from_u64(3);
        let key = Key::generate(&mut rng);
        let other = Key::generate(&mut rng);
        let sealed = token().seal(&key, &mut rng).unwrap();
        assert_eq!(
            ConnectToken::open(&sealed, &key, 77, 9_999).unwrap(),
            token()
        );
        assert_eq!(
            ConnectToken::open(&sealed, &other, 77, 0),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            ConnectToken::open(&sealed, &key, 78, 0),
            Err(TokenError::WrongCluster)
        );
        assert_eq!(
            ConnectToken::open(&sealed, &key, 77, 10_000),
            Err(TokenError::Expired)
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                ConnectToken::open(&bad, &key, 77, 0),
                Err(TokenError::Invalid),
                "byte {i}"
            );
            assert_eq!(
                ConnectToken::open(&sealed[..i], &key, 77, 0),
                Err(TokenError::Invalid)
            );
        }
    }

    #[test]
    fn single_use_until_expiry() {
        let mut used = UsedTokens::new();
        let t = token();
        assert_eq!(used.use_token(&t, 0), Ok(()));
        assert_eq!(used.use_token(&t, 1), Err(TokenError::AlreadyUsed));
        // After expiry the id is forgotten (the token itself is refused as expired by `open`).
        assert_eq!(used.use_token(&token(), 20_000), Ok(()));
        assert_eq!(used.len(), 1);
    }
}
