//! The state folder: created 0700, locked by one process at a time, and the
//! atomic write every file in it goes through.
//!
//! Atomic means: write a temp file next to the target, fsync it, rename it over
//! the target, fsync the folder. A crash at any point leaves either the old or
//! the new content, never a torn file; a leftover temp file is ignored.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Suffix of temp files written by [`atomic_write`].
pub const TEMP_SUFFIX: &str = ".tmp";

/// Errors opening the state folder.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The folder could not be created or opened.
    #[error("state dir {dir}: {source}")]
    Io {
        /// The state folder.
        dir: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Another tokenbridge process holds the lock.
    #[error("state dir {dir} is in use by another tokenbridge process (lock {lock} is held)")]
    Locked {
        /// The state folder.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
}

/// An open, locked state folder. The lock is released when this is dropped.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Creates (0700) and locks the folder.
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        let io = |source| StateError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        let lock_path = dir.join("state.lock");
        if !lock_path.exists() {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&lock_path)
                .map_err(io)?;
        }
        // Held read-only: flock does not need write access, and an open
        // writable file would keep the state dir's filesystem from being
        // remounted read-only.
        let lock = File::open(&lock_path).map_err(io)?;
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(StateError::Locked {
                dir: dir.to_path_buf(),
                lock: lock_path,
            });
        }
        Ok(StateDir {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// Like [`StateDir::open`], but waits up to `timeout` for a lock held by a
    /// short-lived command (a report) to be released.
    pub fn open_wait(dir: &Path, timeout: std::time::Duration) -> Result<StateDir, StateError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match StateDir::open(dir) {
                Err(StateError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// Writes `bytes` to `path` atomically with the given mode (e.g. 0o600).
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(TEMP_SUFFIX);
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(mode)
            .open(&tmp)?;
        // An existing temp file keeps its old mode; force ours.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        crate::ops::failpoint::hit("checkpoint_temp_written");
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_with_mode_0600() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        atomic_write(&p, b"one", 0o600).unwrap();
        atomic_write(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!d.path().join("f.json.tmp").exists());
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::open(&d.path().join("st")).unwrap();
        let mode = std::fs::metadata(s.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let e = StateDir::open(&d.path().join("st")).unwrap_err();
        assert!(matches!(e, StateError::Locked { .. }), "{e}");
        drop(s);
        StateDir::open(&d.path().join("st")).unwrap();
    }
}
