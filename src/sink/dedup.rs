//! Deduplication: the in-memory index of the best version known per key
//! (the key and version rules of an entry are its format's, e.g.
//! [`crate::format::claude::entry`]).
//!
//! Claude Code writes one line per content block of a response, all with the
//! same `message.id` + `requestId`; earlier lines carry a partial
//! `output_tokens`. Of the entries with one key exactly one is kept:
//! non-sidechain over sidechain, then the largest token total, then the entry
//! in its own session's file over a copy in another file, then the first
//! seen. The version encodes the first three; "first seen" holds because only
//! a strictly higher version ever replaces the known one.
//!
//! The index is what makes dedup exact across files, batches and restarts: it
//! is loaded from ClickHouse at start-up (`max(version)` per key) and updated as
//! rows are accepted, so only rows that beat what ClickHouse holds are sent.
//! ClickHouse's `ReplacingMergeTree(version)` plus `FINAL` then returns the one
//! winner per key on read.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The 128-bit hash under which a key is remembered.
pub fn key_hash(key: &str) -> KeyHash {
    let h = xxhash_rust::xxh3::xxh3_128(key.as_bytes());
    KeyHash([h as u64, (h >> 64) as u64])
}

/// A key's 128-bit hash. Two keys collide with probability ~n²/2¹²⁹.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u64; 2]);

/// The keys are already uniform hashes; rehashing them would be wasted work.
#[derive(Default)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
    fn write_usize(&mut self, _: usize) {}
}

/// What [`DedupIndex::offer`] decided for an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The first entry of its key: insert it.
    New,
    /// Beats the known entry of its key: insert it, it supersedes the old row.
    Supersedes,
    /// No better than the known entry: drop it.
    Dropped,
}

type KeyMap = HashMap<KeyHash, u64, BuildHasherDefault<PassThroughHasher>>;

/// Best known version per key, for at most `max_keys` keys.
///
/// Bounded by two generations: new keys go into the current map; when it
/// holds half the limit, the previous generation is dropped and the current
/// one becomes previous. A key found in the previous generation is moved back
/// into the current one, so keys in use survive. A key evicted this way is
/// forgotten: a later entry of it is inserted again, and ClickHouse's
/// `ReplacingMergeTree` + `FINAL` keeps the higher version on read, so totals
/// stay exact; only "first seen wins a tie" is then decided by ClickHouse.
pub struct DedupIndex {
    current: KeyMap,
    previous: KeyMap,
    max_keys: usize,
    evicted: u64,
}

impl Default for DedupIndex {
    fn default() -> Self {
        Self::with_max_keys(usize::MAX)
    }
}

impl DedupIndex {
    /// An empty, unbounded index.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty index that remembers at most `max_keys` keys.
    pub fn with_max_keys(max_keys: usize) -> Self {
        DedupIndex {
            current: KeyMap::default(),
            previous: KeyMap::default(),
            max_keys: max_keys.max(2),
            evicted: 0,
        }
    }

    /// Keys forgotten so far because of the limit.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn rotate_if_full(&mut self) {
        if self.current.len() >= self.max_keys / 2 {
            self.evicted += self.previous.len() as u64;
            self.previous = std::mem::take(&mut self.current);
        }
    }

    fn known(&mut self, h: KeyHash) -> Option<u64> {
        if let Some(v) = self.current.get(&h) {
            return Some(*v);
        }
        let v = self.previous.remove(&h)?;
        self.rotate_if_full();
        self.current.insert(h, v);
        Some(v)
    }

    /// Decides whether an entry of `key` with `version` should be inserted,
    /// and remembers it when it should.
    pub fn offer(&mut self, key: &str, version: u64) -> Offer {
        self.offer_hash(key_hash(key), version)
    }

    /// [`DedupIndex::offer`] for an already hashed key.
    pub fn offer_hash(&mut self, h: KeyHash, version: u64) -> Offer {
        match self.known(h) {
            None => {
                self.rotate_if_full();
                self.current.insert(h, version);
                Offer::New
            }
            Some(known) if version > known => {
                self.current.insert(h, version);
                Offer::Supersedes
            }
            Some(_) => Offer::Dropped,
        }
    }

    /// Records what ClickHouse already holds (start-up load).
    pub fn remember(&mut self, key: &str, version: u64) {
        let h = key_hash(key);
        let v = self.known(h).map_or(version, |k| k.max(version));
        if !self.current.contains_key(&h) {
            self.rotate_if_full();
        }
        self.current.insert(h, v);
    }

    /// Number of keys known.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// True when no key is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held by the index (table slots plus control bytes).
    pub fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(KeyHash, u64)>() + 1;
        (self.current.capacity() + self.previous.capacity()) * slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::claude::entry::version;

    #[test]
    fn keeps_the_largest_and_the_first_on_a_tie() {
        let mut idx = DedupIndex::new();
        assert_eq!(idx.offer("k", version(false, 10, true)), Offer::New);
        assert_eq!(idx.offer("k", version(false, 10, true)), Offer::Dropped);
        assert_eq!(idx.offer("k", version(false, 9, true)), Offer::Dropped);
        assert_eq!(idx.offer("k", version(false, 12, true)), Offer::Supersedes);
        assert_eq!(idx.offer("k", version(true, 100, true)), Offer::Dropped);
        assert_eq!(idx.offer("other", version(true, 100, true)), Offer::New);
        assert_eq!(
            idx.offer("other", version(false, 1, true)),
            Offer::Supersedes
        );
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn bounded_index_keeps_recent_keys_and_forgets_old_ones() {
        let mut idx = DedupIndex::with_max_keys(1000);
        for i in 0..10_000 {
            assert_eq!(idx.offer(&format!("k{i}"), 5), Offer::New);
            // A key in steady use is never forgotten.
            assert_eq!(
                idx.offer("hot", 5),
                if i == 0 { Offer::New } else { Offer::Dropped }
            );
        }
        assert!(idx.len() <= 1000, "{}", idx.len());
        assert!(idx.evicted() > 8000);
        assert_eq!(idx.offer("k9999", 5), Offer::Dropped);
        assert_eq!(idx.offer("k0", 5), Offer::New);
    }

    #[test]
    fn bytes_per_key_at_one_million_keys() {
        let mut idx = DedupIndex::new();
        for i in 0..1_000_000u32 {
            idx.offer_hash(
                KeyHash([
                    u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    u64::from(i),
                ]),
                1,
            );
        }
        let per_key = idx.heap_bytes() as f64 / idx.len() as f64;
        // 25 bytes a slot, hashbrown keeps 1/8 free and doubles: 28-57 bytes.
        assert!((25.0..=60.0).contains(&per_key), "{per_key}");
    }

    #[test]
    fn remembered_versions_gate_new_offers() {
        let mut idx = DedupIndex::new();
        idx.remember("k", version(false, 10, true));
        idx.remember("k", version(false, 7, true));
        assert_eq!(idx.offer("k", version(false, 10, true)), Offer::Dropped);
        assert_eq!(idx.offer("k", version(false, 11, true)), Offer::Supersedes);
        assert!(idx.heap_bytes() > 0);
    }
}
