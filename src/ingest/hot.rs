//! The files whose descriptors the reader keeps open for their next append,
//! least recently read first, findable by the path they were read at.
//!
//! A session being written is read at every append; keeping its descriptor
//! saves a path lookup, an open and a close per read. A write event names a
//! path, and it is looked up here by that path: a scan of the kept files
//! comparing paths cost ~2.5 % of the daemon's CPU with 50 sessions
//! appending (one scan per event).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ingest::fingerprint::FileKey;

/// The kept files. Holds keys only: whether a key's descriptor is still open
/// is the tracked file's business.
#[derive(Debug)]
pub struct HotFiles {
    /// At most this many files are kept.
    capacity: usize,
    /// Least recently read first: key, when it was read, the path it was
    /// read at.
    order: VecDeque<(FileKey, Instant, Arc<str>)>,
    /// The newest entry of `order` at each path.
    by_path: HashMap<Arc<str>, FileKey>,
}

impl HotFiles {
    /// An empty set keeping at most `capacity` files.
    pub fn new(capacity: usize) -> HotFiles {
        HotFiles {
            capacity,
            order: VecDeque::with_capacity(capacity + 1),
            by_path: HashMap::with_capacity(capacity + 1),
        }
    }

    /// `key` was read at `path` at `now`: it becomes the most recently read
    /// file. Returns the least recently read one if the set outgrew its
    /// capacity (its descriptor is to be closed).
    pub fn touch(&mut self, key: FileKey, path: &Arc<str>, now: Instant) -> Option<FileKey> {
        let old = self
            .order
            .iter()
            .position(|(k, _, _)| *k == key)
            .and_then(|i| self.order.remove(i));
        match old {
            // Read again at the path it is found by (every append): only
            // its place moves.
            Some(old) if old.2 == *path && self.by_path.get(path) == Some(&key) => {}
            old => {
                if let Some(old) = old {
                    self.unlink(&old);
                }
                self.by_path.insert(path.clone(), key);
            }
        }
        self.order.push_back((key, now, path.clone()));
        if self.order.len() > self.capacity {
            return self.pop_oldest();
        }
        None
    }

    /// Removes and returns the least recently read file if it was last read
    /// `idle` or longer before `now`.
    pub fn pop_idle(&mut self, now: Instant, idle: Duration) -> Option<FileKey> {
        let &(_, at, _) = self.order.front()?;
        if now.saturating_duration_since(at) < idle {
            return None;
        }
        self.pop_oldest()
    }

    /// The file most recently read at `path`, if it is kept.
    pub fn at_path(&self, path: &str) -> Option<FileKey> {
        self.by_path.get(path).copied()
    }

    /// The most recently read file.
    pub fn newest(&self) -> Option<FileKey> {
        self.order.back().map(|(k, _, _)| *k)
    }

    /// How many files are kept.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn pop_oldest(&mut self) -> Option<FileKey> {
        let old = self.order.pop_front()?;
        self.unlink(&old);
        Some(old.0)
    }

    /// Forgets `entry`'s path unless a newer entry was read there since.
    fn unlink(&mut self, entry: &(FileKey, Instant, Arc<str>)) {
        if self.by_path.get(&entry.2) == Some(&entry.0) {
            self.by_path.remove(&entry.2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> FileKey {
        FileKey { dev: 1, ino }
    }

    #[test]
    fn keeps_the_most_recently_read_and_finds_them_by_path() {
        let t0 = Instant::now();
        let mut h = HotFiles::new(2);
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("/a".into(), "/b".into(), "/c".into());
        assert_eq!(h.touch(key(1), &a, t0), None);
        assert_eq!(h.touch(key(2), &b, t0), None);
        // Read again: most recent, so the other one goes first.
        assert_eq!(h.touch(key(1), &a, t0), None);
        assert_eq!(h.touch(key(3), &c, t0), Some(key(2)));
        assert_eq!(h.at_path("/b"), None);
        assert_eq!(h.at_path("/a"), Some(key(1)));
        assert_eq!(h.at_path("/c"), Some(key(3)));
        assert_eq!(h.newest(), Some(key(3)));
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn a_renamed_file_is_found_at_its_new_path_only() {
        let t0 = Instant::now();
        let mut h = HotFiles::new(4);
        h.touch(key(1), &"/old".into(), t0);
        h.touch(key(1), &"/new".into(), t0);
        assert_eq!(h.at_path("/old"), None);
        assert_eq!(h.at_path("/new"), Some(key(1)));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn a_path_names_the_file_read_there_last() {
        let t0 = Instant::now();
        let mut h = HotFiles::new(4);
        let p: Arc<str> = "/s.jsonl".into();
        // A file replaced at the same path (a new inode): the new one.
        h.touch(key(1), &p, t0);
        h.touch(key(2), &p, t0);
        assert_eq!(h.at_path("/s.jsonl"), Some(key(2)));
        // The old one leaving does not take the path with it.
        assert_eq!(h.pop_idle(t0, Duration::ZERO), Some(key(1)));
        assert_eq!(h.at_path("/s.jsonl"), Some(key(2)));
        assert_eq!(h.pop_idle(t0, Duration::ZERO), Some(key(2)));
        assert_eq!(h.at_path("/s.jsonl"), None);
        assert!(h.is_empty());
    }

    #[test]
    fn only_files_unused_long_enough_are_idle() {
        let t0 = Instant::now();
        let mut h = HotFiles::new(4);
        h.touch(key(1), &"/a".into(), t0);
        h.touch(key(2), &"/b".into(), t0 + Duration::from_secs(20));
        let idle = Duration::from_secs(30);
        assert_eq!(h.pop_idle(t0 + Duration::from_secs(29), idle), None);
        assert_eq!(h.pop_idle(t0 + Duration::from_secs(30), idle), Some(key(1)));
        assert_eq!(h.pop_idle(t0 + Duration::from_secs(30), idle), None);
        assert_eq!(h.len(), 1);
    }
}
