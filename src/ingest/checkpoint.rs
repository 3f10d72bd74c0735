//! Committed read offsets per file, persisted in `checkpoints.json` under the
//! state dir.
//!
//! An offset here means: every row from the bytes before it is acknowledged by
//! ClickHouse. Only the sink advances offsets, after an acknowledged insert,
//! so a crash re-reads at most the unacknowledged tail (and the dedup index,
//! reloaded from ClickHouse, drops what had in fact landed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ingest::fingerprint::{FileKey, Fingerprint};
use crate::ops::state::atomic_write;
use crate::sink::naive::{self, NaiveSums};

/// File name of the checkpoint state inside the state dir.
pub const CHECKPOINT_FILE: &str = "checkpoints.json";
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
    files: Vec<FileCheckpoint>,
}

/// All committed offsets.
#[derive(Debug)]
pub struct CheckpointStore {
    path: PathBuf,
    files: HashMap<FileKey, FileCheckpoint>,
    dirty: bool,
}

impl CheckpointStore {
    /// Loads `checkpoints.json` from the state dir; a missing file is an empty
    /// store. Leftover temp files from a crash mid-write are ignored.
    pub fn load(state_dir: &Path) -> Result<CheckpointStore, CheckpointError> {
        let path = state_dir.join(CHECKPOINT_FILE);
        let files = match std::fs::read(&path) {
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
                disk.files.into_iter().map(|f| (f.key, f)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(source) => return Err(CheckpointError::Io { path, source }),
        };
        Ok(CheckpointStore {
            path,
            files,
            dirty: false,
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
                    self.dirty = true;
                }
                if cp.offset != offset || cp.fingerprint != fingerprint || cp.path != path {
                    cp.offset = offset;
                    cp.fingerprint = fingerprint;
                    if cp.path != path {
                        cp.path = path.to_string();
                    }
                    self.dirty = true;
                }
                if !naive.is_empty() {
                    naive::merge(&mut cp.naive, naive);
                    self.dirty = true;
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
                self.dirty = true;
                true
            }
        }
    }

    /// The file was truncated or replaced: its offset starts over at 0.
    pub fn reset(&mut self, key: FileKey, fingerprint: Fingerprint, path: &str) {
        self.files
            .insert(key, FileCheckpoint::new(key, fingerprint, path, 0));
        self.dirty = true;
    }

    /// The file is gone; stop tracking it.
    pub fn forget(&mut self, key: &FileKey) {
        if self.files.remove(key).is_some() {
            self.dirty = true;
        }
    }

    /// True when there are changes not yet saved.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Writes the store atomically (mode 0600) if anything changed. On error the
    /// store stays dirty so the next save retries; nothing in memory is lost.
    pub fn save(&mut self) -> Result<bool, CheckpointError> {
        if !self.dirty {
            return Ok(false);
        }
        let mut files: Vec<&FileCheckpoint> = self.files.values().collect();
        files.sort_by_key(|f| f.key);
        #[derive(serde::Serialize)]
        struct Out<'a> {
            version: u32,
            files: Vec<&'a FileCheckpoint>,
        }
        let bytes = serde_json::to_vec(&Out {
            version: FORMAT_VERSION,
            files,
        })
        .expect("checkpoints serialize");
        atomic_write(&self.path, &bytes, 0o600).map_err(|source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.dirty = false;
        Ok(true)
    }
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
        assert!(s.save().unwrap());
        assert!(!s.save().unwrap());
        let s2 = CheckpointStore::load(d.path()).unwrap();
        assert_eq!(s2.get(&k).unwrap().offset, 100);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(d.path().join(CHECKPOINT_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
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
        s.save().unwrap();
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
        s.save().unwrap();
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

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(CHECKPOINT_FILE), b"not json").unwrap();
        let e = CheckpointStore::load(d.path()).unwrap_err();
        assert!(matches!(e, CheckpointError::Corrupt { .. }));
        assert!(e.to_string().contains("checkpoints.json"));
    }
}
