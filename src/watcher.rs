//! The watcher: turns filesystem notifications into wake-ups for the reader.
//!
//! Notifications are only a hint. The reader also scans at start-up and on a
//! timer, and does a full scan whenever the watcher reports an error or an
//! overflow, because inotify can drop events and does not follow symlinks.

use std::collections::HashSet;
use std::path::PathBuf;

use crossbeam_channel::Sender;
use notify::{RecursiveMode, Watcher};

/// Why the reader should wake up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// These paths changed.
    Paths(Vec<PathBuf>),
    /// Events may have been lost: rescan everything.
    FullScan,
}

/// Watches the configured folders that exist.
pub struct DirWatcher {
    inner: notify::RecommendedWatcher,
    watched: HashSet<PathBuf>,
}

impl DirWatcher {
    /// A watcher that sends wake-ups to `tx`.
    pub fn new(tx: Sender<Wake>) -> notify::Result<DirWatcher> {
        let inner = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let wake = match res {
                Ok(ev) if ev.need_rescan() => Wake::FullScan,
                Ok(ev) => {
                    if ev.paths.is_empty() {
                        return;
                    }
                    Wake::Paths(ev.paths)
                }
                Err(_) => Wake::FullScan,
            };
            let _ = tx.try_send(wake);
        })?;
        Ok(DirWatcher {
            inner,
            watched: HashSet::new(),
        })
    }

    /// Starts watching folders of `dirs` that exist and are not watched yet,
    /// and stops watching those no longer listed. Returns the folders that
    /// could not be watched.
    pub fn sync(&mut self, dirs: &[PathBuf]) -> Vec<(PathBuf, notify::Error)> {
        let mut failed = Vec::new();
        let wanted: HashSet<PathBuf> = dirs.iter().cloned().collect();
        let stale: Vec<PathBuf> = self.watched.difference(&wanted).cloned().collect();
        for d in stale {
            let _ = self.inner.unwatch(&d);
            self.watched.remove(&d);
        }
        for d in dirs {
            if self.watched.contains(d) || !d.is_dir() {
                continue;
            }
            match self.inner.watch(d, RecursiveMode::Recursive) {
                Ok(()) => {
                    self.watched.insert(d.clone());
                }
                Err(e) => failed.push((d.clone(), e)),
            }
        }
        failed
    }
}
