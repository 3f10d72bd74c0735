//! Committed read offsets per file, persisted in `checkpoints.json` under the
//! state dir, with the changes since it was written in `checkpoints.journal`.
//!
//! A save appends only the files that changed to the journal (one JSON line
//! each, then `fdatasync`), so its cost follows the appends, not the number
//! of files tracked: a daemon watching 10,000 files spent ~7 % of its CPU
//! rewriting a 2.5 MB snapshot while 50 sessions were being written. When the
//! journal outgrows the snapshot (or a journal write failed, or the run
//! ends), the whole store is written again atomically as a new generation
//! and the journal emptied. Journal lines of another generation (left by a
//! crash between those two steps) and a torn last line (a crash mid-append)
//! are ignored on load: an offset can only come out older than it was, and
//! older offsets are re-read, their rows dropped by dedup.
//!
//! An offset here means: every row from the bytes before it is acknowledged by
//! ClickHouse. Only the sink advances offsets, after an acknowledged insert,
//! so a crash re-reads at most the unacknowledged tail (and the dedup index,
//! reloaded from ClickHouse, drops what had in fact landed).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ingest::fingerprint::{FileKey, Fingerprint};
use crate::ops::state::atomic_write;
use crate::sink::naive::{self, NaiveSums};

/// File name of the checkpoint state inside the state dir.
pub const CHECKPOINT_FILE: &str = "checkpoints.json";
/// File name of the changes since the snapshot, inside the state dir.
pub const JOURNAL_FILE: &str = "checkpoints.journal";
/// The journal may grow to the snapshot's size, and to at least this.
const JOURNAL_MIN_BYTES: u64 = 256 << 10;
const FORMAT_VERSION: u32 = 1;

/// Errors loading or saving checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the state file failed (disk full, read-only, …).
    #[error("checkpoint file {path}: {source}")]
    Io {
        /// The state file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The state file exists but is not a checkpoint file of a known version.
    #[error("checkpoint file {path} is corrupt ({reason}); move it away to re-read every file from the start (rows already in ClickHouse are deduplicated)")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One file's committed position.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileCheckpoint {
    /// Device and inode.
    pub key: FileKey,
    /// Leading-bytes fingerprint when last committed.
    pub fingerprint: Fingerprint,
    /// Last path the file was seen at (informational; identity is key + fingerprint).
    pub path: String,
    /// Committed byte offset (always just after a newline).
    pub offset: u64,
    /// Per session: the usage lines before `offset`, summed without dedup
    /// (see [`crate::sink::naive`]). Absent in files written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub naive: Vec<NaiveSums>,
    /// What the lines before `offset` left for the next ones (formats whose
    /// lines depend on earlier ones, e.g. Codex's running total). Absent in
    /// files written before it existed, and for Claude Code's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<crate::format::FileState>,
}

impl FileCheckpoint {
    /// A file committed up to `offset`, with no naive sums or state yet.
    pub fn new(key: FileKey, fingerprint: Fingerprint, path: &str, offset: u64) -> FileCheckpoint {
        FileCheckpoint {
            key,
            fingerprint,
            path: path.to_string(),
            offset,
            naive: Vec::new(),
            state: None,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct OnDisk {
    version: u32,
    /// Which journal lines apply to it (absent before the journal existed).
    #[serde(default)]
    generation: u64,
    files: Vec<FileCheckpoint>,
}

/// One journal line: a file's new entry, or a file no longer tracked.
/// Written borrowing the entry (`F` = `&FileCheckpoint`), read owning it.
#[derive(serde::Serialize, serde::Deserialize)]
struct JournalLine<F> {
    /// The snapshot generation it follows.
    generation: u64,
    // A missing `Option` field reads as `None` without `default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<F>,
    #[serde(skip_serializing_if = "Option::is_none")]
    forget: Option<FileKey>,
}

/// What a [`CheckpointStore::save`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveKind {
    /// The changed files, appended to the journal (a snapshot when the
    /// journal is due for one).
    Changes,
    /// Everything, as a new snapshot (and an empty journal): at the end of
    /// a run, so a stopped daemon leaves one file.
    Snapshot,
}

/// All committed offsets.
#[derive(Debug)]
pub struct CheckpointStore {
    /// The snapshot file.
    path: PathBuf,
    /// The journal file.
    journal: PathBuf,
    files: HashMap<FileKey, FileCheckpoint>,
    /// Files changed (or forgotten) since the last save.
    changed: HashSet<FileKey>,
    /// The snapshot's generation; journal lines of others are stale.
    generation: u64,
    /// Bytes in the journal.
    journal_bytes: u64,
    /// Bytes in the snapshot when it was written.
    snapshot_bytes: u64,
    /// The next save must write a snapshot: none exists yet, or a journal
    /// write failed and may have left a torn line.
    snapshot_due: bool,
}

impl CheckpointStore {
    /// Loads `checkpoints.json` and the journal lines of its generation from
    /// the state dir; a missing file is an empty store. Leftover temp files
    /// and a torn last journal line (a crash mid-write) are ignored.
    pub fn load(state_dir: &Path) -> Result<CheckpointStore, CheckpointError> {
        let path = state_dir.join(CHECKPOINT_FILE);
        let journal = state_dir.join(JOURNAL_FILE);
        let (mut files, generation, snapshot_bytes, exists) = match std::fs::read(&path) {
            Ok(bytes) => {
                let disk: OnDisk =
                    serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if disk.version != FORMAT_VERSION {
                    return Err(CheckpointError::Corrupt {
                        path,
                        reason: format!("unknown format version {}", disk.version),
                    });
                }
                let files = disk.files.into_iter().map(|f| (f.key, f)).collect();
                (files, disk.generation, bytes.len() as u64, true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (HashMap::new(), 0, 0, false),
            Err(source) => return Err(CheckpointError::Io { path, source }),
        };
        let (journal_bytes, whole) = match std::fs::read(&journal) {
            Ok(bytes) => (bytes.len() as u64, replay(&bytes, generation, &mut files)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, true),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: journal,
                    source,
                })
            }
        };
        Ok(CheckpointStore {
            path,
            journal,
            files,
            changed: HashSet::new(),
            generation,
            journal_bytes,
            snapshot_bytes,
            // A torn line would hide the lines appended after it.
            snapshot_due: !exists || !whole,
        })
    }

    /// The committed entry of a file, if any.
    pub fn get(&self, key: &FileKey) -> Option<&FileCheckpoint> {
        self.files.get(key)
    }

    /// All entries.
    pub fn entries(&self) -> impl Iterator<Item = &FileCheckpoint> {
        self.files.values()
    }

    /// Number of files tracked.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when no file is tracked.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Records that everything before `offset` of this file is acknowledged,
    /// and adds the naive sums of the lines just committed. Offsets of one
    /// file identity only move forward (a stale commit is ignored, sums
    /// included); a new identity (reused inode) or an explicit
    /// [`CheckpointStore::reset`] starts over. Returns false when ignored.
    pub fn commit(
        &mut self,
        key: FileKey,
        fingerprint: Fingerprint,
        path: &str,
        offset: u64,
        naive: &[NaiveSums],
        state: Option<&crate::format::FileState>,
    ) -> bool {
        match self.files.get_mut(&key) {
            Some(cp) if cp.fingerprint.len <= fingerprint.len && offset >= cp.offset => {
                if state.is_some() && cp.state.as_ref() != state {
                    cp.state = state.cloned();
                    self.changed.insert(key);
                }
                if cp.offset != offset || cp.fingerprint != fingerprint || cp.path != path {
                    cp.offset = offset;
                    cp.fingerprint = fingerprint;
                    if cp.path != path {
                        cp.path = path.to_string();
                    }
                    self.changed.insert(key);
                }
                if !naive.is_empty() {
                    naive::merge(&mut cp.naive, naive);
                    self.changed.insert(key);
                }
                true
            }
            Some(_) => false,
            None => {
                self.files.insert(
                    key,
                    FileCheckpoint {
                        naive: naive.to_vec(),
                        state: state.cloned(),
                        ..FileCheckpoint::new(key, fingerprint, path, offset)
                    },
                );
                self.changed.insert(key);
                true
            }
        }
    }

    /// The file was truncated or replaced: its offset starts over at 0.
    pub fn reset(&mut self, key: FileKey, fingerprint: Fingerprint, path: &str) {
        self.files
            .insert(key, FileCheckpoint::new(key, fingerprint, path, 0));
        self.changed.insert(key);
    }

    /// The file is gone; stop tracking it.
    pub fn forget(&mut self, key: &FileKey) {
        if self.files.remove(key).is_some() {
            self.changed.insert(*key);
        }
    }

    /// True when there are changes not yet saved.
    pub fn is_dirty(&self) -> bool {
        !self.changed.is_empty()
    }

    /// Saves what changed since the last save, if anything: appended to the
    /// journal, or as a new snapshot when `kind` asks for one or the journal
    /// is due for it (see the module doc). Files are mode 0600. On error the
    /// changes stay pending for the next save; nothing in memory is lost.
    /// Returns whether anything was written.
    pub fn save(&mut self, kind: SaveKind) -> Result<bool, CheckpointError> {
        let compact = kind == SaveKind::Snapshot && self.journal_bytes > 0;
        if self.changed.is_empty() && !compact {
            return Ok(false);
        }
        if kind == SaveKind::Snapshot || self.snapshot_due {
            self.write_snapshot()?;
        } else {
            let lines = self.journal_lines();
            let limit = self.snapshot_bytes.max(JOURNAL_MIN_BYTES);
            if self.journal_bytes + lines.len() as u64 > limit {
                self.write_snapshot()?;
            } else {
                self.append_journal(&lines)?;
            }
        }
        self.changed.clear();
        Ok(true)
    }

    /// The journal lines of the changed files, in key order.
    fn journal_lines(&self) -> Vec<u8> {
        let mut keys: Vec<&FileKey> = self.changed.iter().collect();
        keys.sort();
        let mut out = Vec::with_capacity(keys.len() * 256);
        for key in keys {
            let file = self.files.get(key);
            let line = JournalLine {
                generation: self.generation,
                forget: file.is_none().then_some(*key),
                file,
            };
            serde_json::to_writer(&mut out, &line).expect("checkpoints serialize");
            out.push(b'\n');
        }
        out
    }

    /// Writes every entry as the next generation's snapshot, then empties the
    /// journal (whose lines no longer apply: a crash in between is harmless).
    fn write_snapshot(&mut self) -> Result<(), CheckpointError> {
        let mut files: Vec<&FileCheckpoint> = self.files.values().collect();
        files.sort_by_key(|f| f.key);
        #[derive(serde::Serialize)]
        struct Out<'a> {
            version: u32,
            generation: u64,
            files: Vec<&'a FileCheckpoint>,
        }
        let generation = self.generation + 1;
        let bytes = serde_json::to_vec(&Out {
            version: FORMAT_VERSION,
            generation,
            files,
        })
        .expect("checkpoints serialize");
        atomic_write(&self.path, &bytes, 0o600).map_err(|source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.generation = generation;
        self.snapshot_bytes = bytes.len() as u64;
        self.snapshot_due = false;
        // Its lines are stale now: emptying it only saves the next load
        // from reading them (a failure here is harmless).
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&self.journal) {
            let _ = f.set_len(0);
        }
        self.journal_bytes = 0;
        Ok(())
    }

    /// Appends `lines` to the journal and syncs it. On failure the journal
    /// is cut back to its last complete line where possible, and the next
    /// save writes a snapshot either way.
    fn append_journal(&mut self, lines: &[u8]) -> Result<(), CheckpointError> {
        use std::os::unix::fs::OpenOptionsExt;
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.journal)?;
            // Two writes, so that a test can crash between them.
            let half = lines.len() / 2;
            f.write_all(&lines[..half])?;
            crate::ops::failpoint::hit("checkpoint_journal_half_written");
            f.write_all(&lines[half..])?;
            f.sync_data()
        })();
        match result {
            Ok(()) => {
                self.journal_bytes += lines.len() as u64;
                Ok(())
            }
            Err(source) => {
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&self.journal) {
                    let _ = f.set_len(self.journal_bytes);
                }
                self.snapshot_due = true;
                Err(CheckpointError::Io {
                    path: self.journal.clone(),
                    source,
                })
            }
        }
    }
}

/// Applies the journal lines of `generation` to `files`, in order, up to the
/// first line that does not parse (a torn append: nothing after it was
/// written later). Returns false when it met such a line.
fn replay(bytes: &[u8], generation: u64, files: &mut HashMap<FileKey, FileCheckpoint>) -> bool {
    for line in bytes.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let Ok(l) = serde_json::from_slice::<JournalLine<FileCheckpoint>>(line) else {
            return false;
        };
        if l.generation != generation {
            continue;
        }
        if let Some(f) = l.file {
            files.insert(f.key, f);
        } else if let Some(k) = l.forget {
            files.remove(&k);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(len: u32, hash: u64) -> Fingerprint {
        Fingerprint { len, hash }
    }

    #[test]
    fn round_trip_and_monotonic_offsets() {
        let d = tempfile::tempdir().unwrap();
        let k = FileKey { dev: 1, ino: 2 };
        let mut s = CheckpointStore::load(d.path()).unwrap();
        s.commit(k, fp(10, 5), "/a", 100, &[], None);
        s.commit(k, fp(10, 5), "/a", 50, &[], None); // never backwards
        assert_eq!(s.get(&k).unwrap().offset, 100);
        assert!(s.save(SaveKind::Changes).unwrap());
        assert!(!s.save(SaveKind::Changes).unwrap());
        let s2 = CheckpointStore::load(d.path()).unwrap();
        assert_eq!(s2.get(&k).unwrap().offset, 100);
        assert_eq!(mode_of(&d.path().join(CHECKPOINT_FILE)), 0o600);
    }

    #[test]
    fn reset_and_forget() {
        let d = tempfile::tempdir().unwrap();
        let k = FileKey { dev: 1, ino: 2 };
        let mut s = CheckpointStore::load(d.path()).unwrap();
        s.commit(k, fp(10, 5), "/a", 100, &[], None);
        s.reset(k, fp(3, 9), "/a");
        assert_eq!(s.get(&k).unwrap().offset, 0);
        s.commit(k, fp(3, 9), "/a", 20, &[], None);
        assert_eq!(s.get(&k).unwrap().offset, 20);
        s.forget(&k);
        assert!(s.get(&k).is_none());
    }

    #[test]
    fn naive_sums_advance_with_the_offset_and_survive_a_reload() {
        let d = tempfile::tempdir().unwrap();
        let k = FileKey { dev: 1, ino: 2 };
        let sums = |n: u64| NaiveSums {
            session_id: "s".into(),
            lines: n,
            output: 10 * n,
            ..NaiveSums::default()
        };
        let mut s = CheckpointStore::load(d.path()).unwrap();
        assert!(s.commit(k, fp(10, 5), "/a", 100, &[sums(2)], None));
        assert!(s.commit(k, fp(10, 5), "/a", 200, &[sums(3)], None));
        // A stale commit adds nothing.
        assert!(!s.commit(k, fp(4, 5), "/a", 300, &[sums(100)], None));
        s.save(SaveKind::Changes).unwrap();
        let s2 = CheckpointStore::load(d.path()).unwrap();
        assert_eq!(s2.get(&k).unwrap().naive, vec![sums(5)]);
        // A reset starts the sums over with the offset.
        let mut s2 = s2;
        s2.reset(k, fp(3, 9), "/a");
        assert!(s2.get(&k).unwrap().naive.is_empty());
        // Files written before the field existed still load.
        std::fs::write(
            d.path().join(CHECKPOINT_FILE),
            br#"{"version":1,"files":[{"key":{"dev":1,"ino":2},"fingerprint":{"len":10,"hash":5},"path":"/a","offset":7}]}"#,
        )
        .unwrap();
        let s3 = CheckpointStore::load(d.path()).unwrap();
        assert_eq!(s3.get(&k).unwrap().offset, 7);
    }

    #[test]
    fn torn_temp_file_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let k = FileKey { dev: 1, ino: 2 };
        let mut s = CheckpointStore::load(d.path()).unwrap();
        s.commit(k, fp(10, 5), "/a", 100, &[], None);
        s.save(SaveKind::Changes).unwrap();
        std::fs::write(
            d.path().join(format!("{CHECKPOINT_FILE}.tmp")),
            b"{\"version\":1,\"fi",
        )
        .unwrap();
        assert_eq!(
            CheckpointStore::load(d.path())
                .unwrap()
                .get(&k)
                .unwrap()
                .offset,
            100
        );
    }

    fn mode_of(p: &Path) -> u32 {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    }

    fn reload(d: &Path, k: FileKey) -> Option<u64> {
        CheckpointStore::load(d).unwrap().get(&k).map(|c| c.offset)
    }

    fn journal_len(d: &Path) -> u64 {
        std::fs::metadata(d.join(JOURNAL_FILE)).map_or(0, |m| m.len())
    }

    #[test]
    fn saves_append_the_changed_files_to_the_journal() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (FileKey { dev: 1, ino: 2 }, FileKey { dev: 1, ino: 3 });
        let mut s = CheckpointStore::load(d.path()).unwrap();
        s.commit(a, fp(10, 5), "/a", 100, &[], None);
        s.commit(b, fp(10, 6), "/b", 10, &[], None);
        // The first save writes the snapshot: there is none yet.
        assert!(s.save(SaveKind::Changes).unwrap());
        let snapshot = std::fs::read(d.path().join(CHECKPOINT_FILE)).unwrap();
        assert_eq!(journal_len(d.path()), 0);
        // Then only what changed, one line per file; the snapshot stays.
        s.commit(a, fp(10, 5), "/a", 250, &[], None);
        assert!(s.save(SaveKind::Changes).unwrap());
        let journal = std::fs::read_to_string(d.path().join(JOURNAL_FILE)).unwrap();
        assert_eq!(journal.lines().count(), 1, "{journal}");
        assert!(journal.contains("\"offset\":250"));
        assert_eq!(
            std::fs::read(d.path().join(CHECKPOINT_FILE)).unwrap(),
            snapshot
        );
        assert_eq!(reload(d.path(), a), Some(250));
        assert_eq!(reload(d.path(), b), Some(10));
        // A forgotten file is journaled too.
        s.forget(&b);
        assert!(s.save(SaveKind::Changes).unwrap());
        assert_eq!(reload(d.path(), b), None);
        assert_eq!(mode_of(&d.path().join(JOURNAL_FILE)), 0o600);
        // The end of a run folds the journal into a new snapshot.
        assert!(s.save(SaveKind::Snapshot).unwrap());
        assert_eq!(journal_len(d.path()), 0);
        assert!(!s.save(SaveKind::Snapshot).unwrap());
        assert_eq!(reload(d.path(), a), Some(250));
        assert_eq!(reload(d.path(), b), None);
    }

    #[test]
    fn a_torn_journal_line_and_everything_after_it_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        let k = FileKey { dev: 1, ino: 2 };
        let mut s = CheckpointStore::load(d.path()).unwrap();
        s.commit(k, fp(10, 5), "/a", 100, &[], None);
        s.save(SaveKind::Changes).unwrap();
        s.commit(k, fp(10, 5), "/a", 200, &[], None);
        s.save(SaveKind::Changes).unwrap();
        // A crash in the middle of the next append.
        let mut j = std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join(JOURNAL_FILE))
            .unwrap();
        j.write_all(b"{\"generation\":1,\"file\":{\"key\":{\"dev\":1,\"ino\":2},\"fing\n")
            .unwrap();
        // A whole line behind the torn one cannot come from a later save
        // of this store; it is not trusted either.
        j.write_all(b"{\"generation\":1,\"forget\":{\"dev\":1,\"ino\":2}}\n")
            .unwrap();
        drop(j);
        assert_eq!(reload(d.path(), k), Some(200));
        // The next save after such a load writes a whole snapshot, so
        // nothing is appended behind the torn line.
        let mut s = CheckpointStore::load(d.path()).unwrap();
        s.commit(k, fp(10, 5), "/a", 300, &[], None);
        s.save(SaveKind::Changes).unwrap();
        assert_eq!(journal_len(d.path()), 0);
        assert_eq!(reload(d.path(), k), Some(300));
    }

    #[test]
    fn journal_lines_of_an_older_snapshot_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        let k = FileKey { dev: 1, ino: 2 };
        let mut s = CheckpointStore::load(d.path()).unwrap();
        s.commit(k, fp(10, 5), "/a", 100, &[], None);
        s.save(SaveKind::Changes).unwrap();
        s.reset(k, fp(3, 7), "/a");
        s.commit(k, fp(3, 7), "/a", 40, &[], None);
        s.save(SaveKind::Changes).unwrap();
        let stale = std::fs::read(d.path().join(JOURNAL_FILE)).unwrap();
        s.commit(k, fp(3, 7), "/a", 90, &[], None);
        s.save(SaveKind::Snapshot).unwrap();
        // A crash after the new snapshot, before the journal was emptied.
        std::fs::write(d.path().join(JOURNAL_FILE), stale).unwrap();
        assert_eq!(reload(d.path(), k), Some(90));
    }

    #[test]
    fn the_journal_is_folded_into_the_snapshot_when_it_outgrows_it() {
        let d = tempfile::tempdir().unwrap();
        let mut s = CheckpointStore::load(d.path()).unwrap();
        let keys: Vec<FileKey> = (0..100).map(|ino| FileKey { dev: 1, ino }).collect();
        for k in &keys {
            s.commit(
                *k,
                fp(10, 5),
                "/some/long/path/to/a/session.jsonl",
                1,
                &[],
                None,
            );
        }
        s.save(SaveKind::Changes).unwrap();
        let mut snapshots = 0;
        let mut last = std::fs::read(d.path().join(CHECKPOINT_FILE)).unwrap();
        for round in 2..2_000u64 {
            for k in &keys[..20] {
                s.commit(
                    *k,
                    fp(10, 5),
                    "/some/long/path/to/a/session.jsonl",
                    round,
                    &[],
                    None,
                );
            }
            s.save(SaveKind::Changes).unwrap();
            assert!(journal_len(d.path()) <= JOURNAL_MIN_BYTES);
            let now = std::fs::read(d.path().join(CHECKPOINT_FILE)).unwrap();
            if now != last {
                snapshots += 1;
                last = now;
            }
        }
        // ~3 KB a save against a 256 KiB journal: most saves append.
        assert!((2..100).contains(&snapshots), "{snapshots} snapshots");
        assert_eq!(reload(d.path(), keys[0]), Some(1_999));
        assert_eq!(reload(d.path(), keys[99]), Some(1));
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(CHECKPOINT_FILE), b"not json").unwrap();
        let e = CheckpointStore::load(d.path()).unwrap_err();
        assert!(matches!(e, CheckpointError::Corrupt { .. }));
        assert!(e.to_string().contains("checkpoints.json"));
    }
}
