//! An instance key sealed to one Agones GameServer (docs/instances.md §7).
//!
//! A GameServer started as an instance draws an X25519 key pair in memory
//! and publishes the public half as an annotation of its GameServer. Once the
//! master has allocated that GameServer, it seals the instance's cluster key
//! to that public key and writes the sealed key as another annotation: every
//! principal that can read GameServers sees it, only the process holding the
//! secret half can open it.
//!
//! Sealed form (base64, standard alphabet with padding, of 80 bytes):
//! `ephemeral public key (32) || AES-256-GCM(key (32)) with its tag (16)`.
//! The AES key is HKDF-SHA256 with salt `ephemeral public || recipient
//! public`, input the X25519 shared secret, info `sustenet instance key v1`;
//! the nonce is 12 zero bytes (each AES key seals once); the additional data
//! is the key name `instance-<id>`, so a sealed key opens only for the
//! instance it was made for.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use curve25519_dalek::montgomery::MontgomeryPoint;
use hkdf::Hkdf;
use rand::CryptoRng;
use sha2::Sha256;
use sustenet_proto::Key;

const INFO: &[u8] = b"sustenet instance key v1";

/// The annotation (set through the Agones SDK's `SetAnnotation`, which
/// prefixes `agones.dev/sdk-`) that carries a GameServer's public key.
pub const SDK_PUBLIC_KEY_ANNOTATION: &str = "sustenet-instance-public-key";
/// [`SDK_PUBLIC_KEY_ANNOTATION`] as it appears on the GameServer.
pub const PUBLIC_KEY_ANNOTATION: &str = "agones.dev/sdk-sustenet-instance-public-key";
/// The allocation's annotation with the instance id (decimal).
pub const INSTANCE_ID_ANNOTATION: &str = "sustenet.dev/instance-id";
/// The allocation's annotation with the template name.
pub const TEMPLATE_ANNOTATION: &str = "sustenet.dev/template";
/// The allocation's annotation with the parameters, a JSON object of strings.
pub const PARAMS_ANNOTATION: &str = "sustenet.dev/params";
/// The annotation the master writes after the allocation: the sealed key.
pub const KEY_ANNOTATION: &str = "sustenet.dev/instance-key";
/// The allocation's label with the instance id.
pub const INSTANCE_LABEL: &str = "sustenet.dev/instance";
/// Length of a sealed key before base64.
pub const SEALED_LEN: usize = 32 + 32 + 16;

/// A GameServer's secret half, kept in memory only.
pub struct InstanceSecret {
    secret: [u8; 32],
    public: [u8; 32],
}

impl std::fmt::Debug for InstanceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceSecret").finish_non_exhaustive()
    }
}

impl Drop for InstanceSecret {
    fn drop(&mut self) {
        self.secret = [0; 32];
    }
}

fn aead_key(shared: &MontgomeryPoint, eph: &[u8; 32], recipient: &[u8; 32]) -> Option<Aes256Gcm> {
    // An all-zero shared secret means a low-order public key: refuse it.
    if shared.as_bytes() == &[0u8; 32] {
        return None;
    }
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(eph);
    salt[32..].copy_from_slice(recipient);
    let mut okm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&salt), shared.as_bytes())
        .expand(INFO, &mut okm)
        .ok()?;
    Aes256Gcm::new_from_slice(&okm).ok()
}

impl InstanceSecret {
    /// A fresh key pair.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let public = MontgomeryPoint::mul_base_clamped(secret).to_bytes();
        Self { secret, public }
    }

    /// The public half, base64, as the GameServer publishes it.
    pub fn public_base64(&self) -> String {
        STANDARD.encode(self.public)
    }

    /// Opens a key sealed to this pair for `key_name`; `None` when it is
    /// malformed, sealed to another pair or for another instance.
    pub fn open(&self, sealed_base64: &str, key_name: &str) -> Option<Key> {
        let sealed = STANDARD.decode(sealed_base64.trim()).ok()?;
        if sealed.len() != SEALED_LEN {
            return None;
        }
        let mut eph = [0u8; 32];
        eph.copy_from_slice(&sealed[..32]);
        let shared = MontgomeryPoint(eph).mul_clamped(self.secret);
        let aead = aead_key(&shared, &eph, &self.public)?;
        let nonce = Nonce::from_slice(&[0u8; 12]);
        let payload = Payload {
            msg: &sealed[32..],
            aad: key_name.as_bytes(),
        };
        let plain = aead.decrypt(nonce, payload).ok()?;
        let bytes: [u8; 32] = plain.as_slice().try_into().ok()?;
        Some(Key::from_bytes(bytes))
    }
}

/// Seals `key` for the instance `key_name` to the public key a GameServer
/// published (base64). `Err` says what is wrong with that public key.
pub fn seal(
    key: &Key,
    key_name: &str,
    recipient_base64: &str,
    rng: &mut impl CryptoRng,
) -> Result<String, String> {
    let recipient: [u8; 32] = STANDARD
        .decode(recipient_base64.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the GameServer's public key is not base64 of 32 bytes")?;
    let mut eph_secret = [0u8; 32];
    rng.fill_bytes(&mut eph_secret);
    let eph = MontgomeryPoint::mul_base_clamped(eph_secret).to_bytes();
    let shared = MontgomeryPoint(recipient).mul_clamped(eph_secret);
    eph_secret = [0; 32];
    let _ = eph_secret;
    let aead = aead_key(&shared, &eph, &recipient)
        .ok_or("the GameServer's public key is a low-order point")?;
    let payload = Payload {
        msg: key.as_bytes(),
        aad: key_name.as_bytes(),
    };
    let sealed = aead
        .encrypt(Nonce::from_slice(&[0u8; 12]), payload)
        .map_err(|_| "sealing failed".to_owned())?;
    let mut out = Vec::with_capacity(SEALED_LEN);
    out.extend_from_slice(&eph);
    out.extend_from_slice(&sealed);
    Ok(STANDARD.encode(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_with_its_pair_and_its_key_name() {
        let mut rng = rand::rng();
        let pair = InstanceSecret::generate(&mut rng);
        let other = InstanceSecret::generate(&mut rng);
        let key = Key::generate(&mut rng);
        let sealed = seal(&key, "instance-7", &pair.public_base64(), &mut rng).unwrap();
        assert_eq!(pair.open(&sealed, "instance-7").unwrap(), key);
        assert!(pair.open(&sealed, "instance-8").is_none());
        assert!(other.open(&sealed, "instance-7").is_none());
        let mut bytes = STANDARD.decode(&sealed).unwrap();
        bytes[40] ^= 1;
        assert!(pair.open(&STANDARD.encode(&bytes), "instance-7").is_none());
        assert!(pair.open("not base64!", "instance-7").is_none());
        // Two seals of one key differ (fresh ephemeral key each time).
        assert_ne!(
            seal(&key, "instance-7", &pair.public_base64(), &mut rng).unwrap(),
            sealed
        );
    }

    #[test]
    fn a_low_order_or_malformed_public_key_is_refused() {
        let mut rng = rand::rng();
        let key = Key::generate(&mut rng);
        let zero = STANDARD.encode([0u8; 32]);
        assert!(seal(&key, "instance-1", &zero, &mut rng).is_err());
        assert!(seal(&key, "instance-1", "AAAA", &mut rng).is_err());
    }
}
