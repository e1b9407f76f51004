//! A fast, unkeyed hasher for the small maps the relay looks up on every
//! message: a client's statement and portal names, the statements prepared
//! on a server connection. Their keys come from one client (who can only
//! slow itself down) or from the proxy, so the standard library's keyed
//! SipHash buys nothing there; maps shared between clients keep it.
//!
//! The mixing step (add a word, multiply by an odd constant) is the one
//! rustc's FxHasher uses. It carries entropy only upwards, so the result is
//! finished with a folded multiply (the high half of the 128-bit product
//! folded onto the low half): hashbrown takes its bucket index from the low
//! bits.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A `HashSet` with [`FastHasher`].
pub type FastSet<T> = HashSet<T, BuildHasherDefault<FastHasher>>;

const MULTIPLIER: u64 = 0xf135_7aea_2e62_a9c5;

#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = self.0.wrapping_add(word).wrapping_mul(MULTIPLIER);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(n.into());
    }

    fn write_u32(&mut self, n: u32) {
        self.add(n.into());
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // A folded multiply: every input bit reaches the low bits too.
        let full = u128::from(self.0) * u128::from(MULTIPLIER);
        (full as u64) ^ ((full >> 64) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn hash(b: &[u8]) -> u64 {
        let mut h = FastHasher::default();
        b.hash(&mut h);
        h.finish()
    }

    #[test]
    fn similar_names_spread_over_the_low_bits() {
        // hashbrown picks buckets by the low bits: the proxy's own names
        // (pgc_0, pgc_1, ...) must not pile up there.
        let mut buckets = FastSet::default();
        for i in 0..4096u32 {
            buckets.insert(hash(format!("pgc_{i}").as_bytes()) & 1023);
        }
        assert!(
            buckets.len() > 900,
            "{} of 1024 buckets used",
            buckets.len()
        );
        // Equal prefixes of different lengths hash differently.
        assert_ne!(hash(b"s"), hash(b"s\0"));
    }
}
