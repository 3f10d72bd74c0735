//! The watcher: turns filesystem notifications into wake-ups for the reader.
//!
//! Notifications are only a hint. The reader also scans at start-up and on a
//! timer, and does a full scan whenever the watcher reports an error or an
//! overflow, because inotify can drop events and does not follow symlinks.
//!
//! Only events that can mean new data are asked of the kernel: creation,
//! writes, renames, removals and attribute changes ([`WATCHED_KINDS`]).
//! Access events (`IN_OPEN`, `IN_CLOSE_NOWRITE`, directory opens) happen for
//! every open in the watched trees, the reader's own included: waking on them
//! made the reader read, which caused more of them (a loop that kept a core
//! busy while idle), and merely receiving them cost notify's thread a tenth
//! of the daemon's CPU under live load. A write-close is not asked for either:
//! every `write` already raised `IN_MODIFY`, so it only doubled the events of
//! an append. (A file changed through `mmap`, which raises neither, is found
//! by the periodic rescan.) [`may_mean_new_data`] still filters what is
//! delivered, for backends that do not honour the mask.
//!
//! A flow of events is gathered ([`Gather`]): the kernel wakes notify's
//! thread for every queued event it is waiting on, so a second event within
//! [`GATHER_WINDOW`] of the first makes the thread sleep out the window and
//! read what queued meanwhile at once.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use notify::event::{AccessKind, AccessMode, EventKind, EventKindMask, ModifyKind};
use notify::{RecursiveMode, Watcher};

use crate::ops::metrics::Metrics;

/// Why the reader should wake up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// These paths were created, removed, renamed or had their attributes
    /// changed: each is looked at (`stat`) to learn what it now names.
    Paths(Vec<PathBuf>),
    /// Data was written to these paths (`IN_MODIFY`): the file the reader
    /// already reads there, if any, is read on; a file it does not know is
    /// looked at like [`Wake::Paths`]. A file newly put at a path always
    /// comes with a creation or rename event of its own.
    Written(Vec<PathBuf>),
    /// Events may have been lost: rescan everything.
    FullScan,
}

/// The event kinds the watcher asks for: creations, removals, and every
/// modification (data, metadata, names). Renames arrive as name changes and
/// are only delivered when those are asked for.
pub const WATCHED_KINDS: EventKindMask = EventKindMask::CREATE
    .union(EventKindMask::REMOVE)
    .union(EventKindMask::ALL_MODIFY);

/// Whether an event of this kind can mean new or moved data.
pub fn may_mean_new_data(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        // Attribute changes add no bytes, but a chmod can make a file that
        // failed to open readable again (the look is a `stat`; the file is
        // only read when its size or time changed or it failed before).
        EventKind::Modify(_) => true,
        // Only a close after writing says something; opens, reads and
        // read-only closes are what the reader itself causes.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        // Unknown kinds: wake, the look is cheap and rare.
        EventKind::Any | EventKind::Other => true,
    }
}

/// How long a flow of events gathers in the kernel's queue before notify's
/// thread reads it. 50 sessions appending made the thread wake ~420 times a
/// second, once per `write`: a tenth of the daemon's CPU under that load
/// (see [`Gather`]). The reader waits its pass gap (`batch.min_insert_gap_ms`,
/// 200 ms) between passes anyway, so events held this long are read by the
/// same pass.
pub const GATHER_WINDOW: Duration = Duration::from_millis(20);

/// Events handled this soon after a pause are the ones that queued during
/// it: notify reads them all at once and hands them on one by one, so none
/// of them may start another pause (that would hold the rest of the read a
/// window each).
const DRAIN_SLACK: Duration = Duration::from_millis(2);

/// When notify's thread should pause so that events gather. A lone event is
/// handed on at once; a second one within [`GATHER_WINDOW`] of it makes the
/// thread sleep out the rest of that window, and what queued meanwhile is
/// read in one go and handed on without pausing. Under a steady flow the
/// thread wakes a few times per window instead of once per event; events
/// further apart than the window are never held.
#[derive(Debug, Default)]
pub struct Gather {
    /// When the current window began (its first event), if one is open.
    window_start: Option<Instant>,
    /// Until when events are the ones read after a pause.
    draining_until: Option<Instant>,
}

impl Gather {
    /// Called after an event was handed on at `now`: how long to pause
    /// before handling the next one. After pausing, call [`Gather::resumed`].
    pub fn after_event(&mut self, now: Instant) -> Option<Duration> {
        if self.draining_until.is_some_and(|t| now < t) {
            return None;
        }
        match self.window_start {
            Some(start) if now < start + GATHER_WINDOW => {
                self.window_start = None;
                Some(start + GATHER_WINDOW - now)
            }
            _ => {
                self.window_start = Some(now);
                None
            }
        }
    }

    /// The pause ended at `now`: the events handled next are what queued.
    pub fn resumed(&mut self, now: Instant) {
        self.draining_until = Some(now + DRAIN_SLACK);
    }
}

/// Watches the configured folders that exist.
pub struct DirWatcher {
    inner: notify::RecommendedWatcher,
    watched: HashSet<PathBuf>,
    /// Set when a wake-up could not be queued: the reader then rescans.
    lost: Arc<AtomicBool>,
}

impl DirWatcher {
    /// A watcher that sends wake-ups to `tx` and counts them in `metrics`.
    pub fn new(tx: Sender<Wake>, metrics: Arc<Metrics>) -> notify::Result<DirWatcher> {
        let lost = Arc::new(AtomicBool::new(false));
        let lost_in_callback = lost.clone();
        let mut gather = Gather::default();
        let handler = move |res: notify::Result<notify::Event>| {
            let wake = match res {
                Ok(ev) if ev.need_rescan() => Wake::FullScan,
                Ok(ev) => {
                    if ev.paths.is_empty() || !may_mean_new_data(&ev.kind) {
                        metrics.watch_events_ignored.fetch_add(1, Relaxed);
                        return;
                    }
                    match ev.kind {
                        EventKind::Modify(ModifyKind::Data(_)) => Wake::Written(ev.paths),
                        _ => Wake::Paths(ev.paths),
                    }
                }
                Err(_) => Wake::FullScan,
            };
            metrics.wakeups.fetch_add(1, Relaxed);
            // A full queue: the paths of this event would be missed, so
            // the reader is told to rescan everything instead.
            if tx.try_send(wake).is_err() {
                metrics.wakeups_dropped.fetch_add(1, Relaxed);
                lost_in_callback.store(true, Relaxed);
            }
            if let Some(pause) = gather.after_event(Instant::now()) {
                std::thread::sleep(pause);
                gather.resumed(Instant::now());
            }
        };
        let config = notify::Config::default().with_event_kinds(WATCHED_KINDS);
        let inner = notify::RecommendedWatcher::new(handler, config)?;
        Ok(DirWatcher {
            inner,
            watched: HashSet::new(),
            lost,
        })
    }

    /// Whether wake-ups were dropped since the last call (then a full scan
    /// is due).
    pub fn take_lost(&self) -> bool {
        self.lost.swap(false, Relaxed)
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

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};

    #[test]
    fn only_events_that_can_mean_new_data_wake() {
        let wakes = [
            EventKind::Create(CreateKind::File),
            EventKind::Create(CreateKind::Folder),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Permissions)),
            EventKind::Any,
        ];
        for k in wakes {
            assert!(may_mean_new_data(&k), "{k:?}");
        }
        let quiet = [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Any),
        ];
        for k in quiet {
            assert!(!may_mean_new_data(&k), "{k:?}");
        }
    }

    #[test]
    fn a_flow_of_events_pauses_the_thread_once_per_window() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut g = Gather::default();
        // A lone event: handed on, no pause.
        assert_eq!(g.after_event(ms(0)), None);
        // A second one within the window: sleep out its rest.
        assert_eq!(g.after_event(ms(5)), Some(Duration::from_millis(15)));
        g.resumed(ms(20));
        // What queued during the pause is handed on without pausing, however
        // many events it holds.
        for _ in 0..100 {
            assert_eq!(g.after_event(ms(21)), None);
        }
        // Later events: a window again, paused again.
        assert_eq!(g.after_event(ms(30)), None);
        assert_eq!(g.after_event(ms(31)), Some(Duration::from_millis(19)));
        g.resumed(ms(50));
        // Events further apart than the window never pause.
        for n in [100, 130, 160, 400] {
            assert_eq!(g.after_event(ms(n)), None, "{n}");
        }
    }

    #[test]
    fn reading_a_watched_file_does_not_wake() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.jsonl");
        std::fs::write(&f, "{}\n").unwrap();
        let (tx, rx) = crossbeam_channel::bounded(64);
        let metrics = Arc::new(Metrics::default());
        let mut w = DirWatcher::new(tx, metrics.clone()).unwrap();
        assert!(w.sync(&[d.path().to_path_buf()]).is_empty());
        // Opens, reads and listings: what the reader does.
        for _ in 0..20 {
            let _ = std::fs::read(&f).unwrap();
            let _ = std::fs::read_dir(d.path()).unwrap().count();
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(rx.try_recv().is_err(), "access events woke the reader");
        // Not even delivered: the kernel is not asked for them.
        assert_eq!(metrics.watch_events_ignored.load(Relaxed), 0);
        // An append does.
        use std::io::Write;
        let mut h = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
        h.write_all(b"{}\n").unwrap();
        drop(h);
        let wake = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert!(
            matches!(&wake, Wake::Written(p) if p.contains(&f)),
            "{wake:?}"
        );
        // Only the write: a write-close is not asked for.
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            rx.try_recv().is_err(),
            "more than one wake-up for one append"
        );
        // A new file is a creation, looked at by its path.
        let g = d.path().join("b.jsonl");
        std::fs::write(&g, "{}\n").unwrap();
        let wake = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert!(
            matches!(&wake, Wake::Paths(p) if p.contains(&g)),
            "{wake:?}"
        );
    }
}
