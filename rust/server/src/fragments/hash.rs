//! The grid's hash: a seeded multiply-fold for its integer keys.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Seeded multiply-fold hashing for the grid's integer keys. std's SipHash
/// was a fifth of a query's time; this is a few multiplications. The key is
/// random per map, so positions chosen by a client cannot be aimed at one
/// bucket without knowing it.
#[derive(Clone)]
pub(crate) struct Seeded {
    key: u64,
    init: u64,
}

impl Seeded {
    /// Keys from the process's random hash state.
    pub(crate) fn new() -> Self {
        let rs = RandomState::new();
        Self {
            key: rs.hash_one(0x5EED_u64) | 1,
            init: rs.hash_one(0xF01D_u64),
        }
    }

    /// Keys drawn from `rng`.
    pub(crate) fn from_rng(rng: &mut impl rand::RngCore) -> Self {
        Self {
            key: rng.next_u64() | 1,
            init: rng.next_u64(),
        }
    }

    /// Other keys, drawn from these (for a second table of one owner).
    pub(crate) fn derive(&self) -> Self {
        Self {
            key: fold_mul(self.key, 0x9E37_79B9_7F4A_7C15) | 1,
            init: fold_mul(self.init ^ 0xD1B5_4A32_D192_ED03, self.key),
        }
    }
}

impl std::fmt::Debug for Seeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.write_str("Seeded")
    }
}

impl BuildHasher for Seeded {
    type Hasher = Fold;

    fn build_hasher(&self) -> Fold {
        Fold {
            acc: self.init,
            key: self.key,
        }
    }
}

/// The hasher [`Seeded`] builds.
pub(crate) struct Fold {
    acc: u64,
    key: u64,
}

/// The 128-bit product folded to 64 bits: every input bit reaches both the
/// low bits (bucket index) and the high bits (hashbrown's tag).
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for Fold {
    fn write(&mut self, bytes: &[u8]) {
        // Only reached by keys other than integers; correct, not fast.
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.acc = fold_mul(self.acc ^ v, self.key);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_i32(&mut self, v: i32) {
        self.write_u64(u64::from(v as u32));
    }

    fn finish(&self) -> u64 {
        fold_mul(self.acc, 0x9E37_79B9_7F4A_7C15)
    }
}
