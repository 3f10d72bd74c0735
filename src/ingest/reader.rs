//! The reader: tracks every transcript file, reads complete lines past each
//! file's position, parses them in parallel and sends the chunks to the sink.
//!
//! A file is identified by device/inode plus a fingerprint of its first bytes
//! (see [`crate::ingest::fingerprint`]); its position starts at its committed
//! checkpoint. The reader's position runs ahead of the checkpoint by whatever
//! is in flight; only the sink moves checkpoints, after ClickHouse acknowledges.
//!
//! Sending blocks when the channel is full, which is the backpressure: when
//! ClickHouse is slow or down the reader stops, and the backlog stays in the
//! source files on disk instead of in memory.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use rayon::prelude::*;

use crate::format::agent::{Agent, Framing};
use crate::format::chunk::{parse_chunk, ParsedLines};
use crate::format::FileState;
use crate::format::{BadLine, LineCounts};
use crate::format::{MalformedKind, ParseMode, PADDING};
use crate::ingest::budget::{MemoryBudget, Permit};
use crate::ingest::checkpoint::FileCheckpoint;
use crate::ingest::discovery;
use crate::ingest::discovery::Source;
use crate::ingest::fingerprint::{self, FileKey, Fingerprint, FINGERPRINT_BYTES};
use crate::ingest::hot::HotFiles;
use crate::ingest::lines;
use crate::ingest::msg::{Chunk, FileIdentity, SinkMsg};
use crate::ingest::watcher::{DirWatcher, Wake};
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;
use crate::ops::shutdown::Shutdown;
use crate::record::SourceContext;

/// Files read and parsed at once: enough to keep every core busy while the
/// reader thread applies and sends finished ones, few enough to bound memory.
fn max_in_flight() -> usize {
    rayon::current_num_threads() + 2
}
/// The share of one core the periodic full scans may use: with 100,000
/// files a scan takes ~0.4 s, so it runs every ~40 s instead of every 10 s.
const RESCAN_CPU_SHARE: f64 = 0.01;
/// While the periodic scans find nothing the watcher had not reported, each
/// doubles the time to the next one, up to 2^this times `rescan_interval`
/// (40 s by default). A scan that finds a file the watcher did not name, or
/// a change to one it has not named lately, brings the period back to
/// `rescan_interval`; so does any sign that events were lost, and without a
/// complete watch (no watcher, or a folder it could not watch) there is no
/// back-off. Under live load the scans of 10,000 files every 10 s were a
/// tenth of the daemon's CPU; where only scans see changes (network file
/// systems, folders reached through symlinks) changes are still found within
/// `rescan_interval` while they keep coming.
const RESCAN_BACKOFF_STEPS: u32 = 2;
/// A read of at most this many bytes (an append or two) is done on the
/// reader's own thread: waking a pool thread for it costs more (a daemon
/// with 50 sessions appending spent a third of its CPU switching threads).
/// Not when more files wait in the same pass than the pool reads at once
/// (a backfill or catch-up of small sessions): the pool's threads then read
/// them side by side. A backfill of 4,600 small files of nine agents went
/// from 1.0 to 1.1-1.2 cores and from 0.54 to 0.39-0.41 s; passes of live
/// appends name a few files each and stay on the reader's thread.
const INLINE_BYTES: u64 = 64 << 10;
/// Unread bytes in a pass below which small reads stay inline (see
/// [`INLINE_BYTES`]).
const POOL_BYTES: u64 = 1 << 20;
/// Files read to their end whose descriptors stay open: a session that is
/// being written is read at every append, and opening it again each time
/// cost a path lookup, an open and a close, plus an inotify event for the
/// open that woke the watcher's thread (see [`Reader::keep_open`]).
const HOT_FILES: usize = 64;
/// A kept descriptor unused this long is closed (a deleted file's space is
/// held until then).
const HOT_IDLE: Duration = Duration::from_secs(30);

/// When the reader returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadUntil {
    /// At shutdown; it watches the folders and follows appends (the daemon).
    Shutdown,
    /// Once what is there now is read: it sends [`SinkMsg::Drain`] and
    /// returns (backfill).
    Drained,
}

/// What the reader reads and how.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    /// Folders (or single files) to read, and whose files they hold.
    pub sources: Vec<Source>,
    /// Full rescan period (follow mode).
    pub rescan_interval: Duration,
    /// Longest acceptable line.
    pub max_line_bytes: usize,
    /// Bytes read from one file per round.
    pub read_chunk_bytes: usize,
    /// When the reader returns.
    pub until: ReadUntil,
    /// Which host and user each file's rows belong to.
    pub attribution: Arc<crate::ingest::attribution::Attributor>,
    /// How lines are classified (and, in enhanced mode, estimated).
    pub mode: ParseMode,
    /// Bounds the parsed rows waiting in the channel, in bytes.
    pub memory: Arc<MemoryBudget>,
    /// Least time between two passes started by wake-ups. A wake-up that
    /// comes sooner after the last pass waits out the rest, and what arrives
    /// meanwhile joins it: under a steady flow of appends one pass reads
    /// many of them, and notify's thread queues wake-ups without waking the
    /// reader (it sleeps on a timer, not on the channel). A lone append,
    /// after a quiet spell, is read at once. The daemon uses
    /// `batch.min_insert_gap_ms`: rows read sooner than the next insert may
    /// go out would wait in the batch anyway. Each pass has a fixed cost
    /// (wake-ups of the reader and the sink, a `stat`, a read, a parse set-up
    /// and a message per file): 50 sessions appending at volume cost 16 %
    /// less CPU per MB with 150 ms than with 50 ms, 27 % less with 250 ms.
    pub pass_gap: Duration,
}

/// Instructions to a running reader.
#[derive(Debug, Clone)]
pub enum ReaderCtrl {
    /// Watch these folders from now on (config reload).
    SetSources(Vec<Source>),
}

/// Outcome of a [`Reader::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderExit {
    /// Backfill read everything and sent `Drain`.
    Drained,
    /// Stopped by the shutdown signal.
    Shutdown,
    /// The sink went away (it failed or stopped).
    SinkGone,
}

struct Tracked {
    identity: FileIdentity,
    ctx: Arc<SourceContext>,
    /// Everything before this offset has been sent to the sink.
    offset: u64,
    /// Inside a line longer than `max_line_bytes`: scanned up to here without
    /// finding its newline. The line started at `offset`.
    long_scan: Option<u64>,
    /// Kept open while the file has unread data, so a file deleted while it is
    /// being read is still read to the end, and after that while it is one
    /// of the last [`HOT_FILES`] files read (see [`Reader::keep_open`]).
    /// Shared with the read task in flight (no `dup` per read).
    file: Option<Arc<File>>,
    /// No longer found by a scan.
    gone: bool,
    /// Consecutive full scans that did not find it. Two misses confirm it is
    /// gone: one scan can list a file just before it is renamed and then fail
    /// to open it, which must not make the file look new under its new name.
    missed_scans: u8,
    /// The fingerprint was checked since the last wake-up for this file;
    /// continuation chunks of one read need not check it again.
    verified: bool,
    /// Size and modification time when last looked at: a scan that finds
    /// them unchanged leaves the file alone (no open, no read).
    seen: Stat,
    /// The last open or read failed: every look tries again, changed or not.
    retry: bool,
    /// What the lines before `offset` left for the next ones (formats whose
    /// lines depend on earlier ones; `None` at offset 0).
    state: Option<FileState>,
    /// The number of full scans started when the watcher last named it (see
    /// [`RESCAN_BACKOFF_STEPS`]).
    named_at_scan: u64,
}

/// Where a found file came from: which agent's folder, and which of the
/// folders walked for it (its path under that root names its session).
#[derive(Debug, Clone)]
struct Origin {
    agent: Agent,
    root: Arc<Path>,
}

/// What a `stat` says about a file's content having changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Stat {
    len: u64,
    mtime_ns: i128,
}

impl Stat {
    fn of(meta: &std::fs::Metadata) -> Stat {
        use std::os::unix::fs::MetadataExt;
        Stat {
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// What a file's path says about its rows, with its host and user.
fn context_of(
    attribution: &crate::ingest::attribution::Attributor,
    origin: &Origin,
    path: &Path,
    meta: &std::fs::Metadata,
) -> Arc<SourceContext> {
    use std::os::unix::fs::MetadataExt;
    let mut ctx = origin.agent.context(&origin.root, path);
    (ctx.host, ctx.user) = attribution.of(&origin.root, path, meta.uid());
    Arc::new(ctx)
}

/// A path looked at: opened in parallel for a scan's files that a
/// checkpoint names, then registered one by one. The handle is dropped after
/// the look: only files being read and the last [`HOT_FILES`] read hold a
/// descriptor, so a folder with tens of thousands of transcripts does not run
/// out of them.
struct Opened {
    meta: std::fs::Metadata,
    fingerprint: std::io::Result<Fingerprint>,
}

fn open_path(path: &Path, metrics: &Metrics) -> std::io::Result<Opened> {
    let file = open_counted(path, metrics)?;
    let meta = file.metadata()?;
    let fingerprint = fingerprint::fingerprint_prefix(&file, FINGERPRINT_BYTES);
    Ok(Opened { meta, fingerprint })
}

/// Opens a file for reading, counted in `tokenbridge_file_opens_total`.
///
/// Without updating its access time where the kernel allows it (`O_NOATIME`:
/// the daemon's user owns the file, or it runs as root). A transcript being
/// written is newer than its access time at every read, so under `relatime`
/// each read of an append dirtied the inode (an ext4 journal update, ~5 % of
/// the reader's CPU under live load). Other users' files are opened plainly.
fn open_counted(path: &Path, metrics: &Metrics) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    metrics.file_opens.fetch_add(1, Relaxed);
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        other => other,
    }
}

struct Task {
    key: FileKey,
    file: Arc<File>,
    start: u64,
    size: u64,
    long_scan: Option<u64>,
    ctx: Arc<SourceContext>,
    /// The file's state at `start` (see [`FileState`]).
    state: Option<FileState>,
    /// Read the file whole (it is rewritten, not appended); its stat when
    /// planned.
    whole: Option<Stat>,
    /// Whether the read also fingerprints the file.
    head: Head,
}

/// Whether a read task fingerprints the file it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// The fingerprint is complete, or was taken when planning.
    Known,
    /// The read starts at offset 0 of a file whose fingerprint is short:
    /// it fingerprints the bytes it reads (see [`fingerprint::of_prefix`]),
    /// instead of a separate 1 KiB read on the reader's thread, which for a
    /// backfill of thousands of new files was one more serial `pread` each.
    FromRead,
}

struct TaskResult {
    key: FileKey,
    /// New position and the parsed lines, when complete lines were read.
    chunk: Option<(u64, ParsedLines)>,
    long_scan: Option<u64>,
    more: bool,
    error: Option<std::io::Error>,
    /// The file's fingerprint from the bytes read ([`Head::FromRead`]).
    fingerprint: Option<Fingerprint>,
}

/// The reader. Create with [`Reader::new`], then [`Reader::run`] on its own thread.
pub struct Reader {
    opts: ReaderOptions,
    tx: Sender<SinkMsg>,
    wake_rx: Receiver<Wake>,
    watcher: Option<DirWatcher>,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    ctrl_rx: Receiver<ReaderCtrl>,
    resume: HashMap<FileKey, FileCheckpoint>,
    files: HashMap<FileKey, Tracked>,
    dirty: HashSet<FileKey>,
    logged_errors: HashSet<PathBuf>,
    /// A file could not be opened or vanished during this pass.
    retry_needed: bool,
    /// How long the last full scan took (its walk alone when it registered
    /// new files): what the next safety-net scan is expected to cost.
    last_scan: Duration,
    /// Full scans started.
    scans: u64,
    /// Changes the current full scan found that the watcher had not named.
    unreported: u64,
    /// Consecutive periodic scans that found nothing unreported (see
    /// [`RESCAN_BACKOFF_STEPS`]).
    quiet_scans: u32,
    /// Every configured folder that exists is watched.
    watch_complete: bool,
    /// Files read to their end whose descriptors stay open for their next
    /// append.
    hot: HotFiles,
}

#[derive(Debug)]
struct SinkGone;

/// Why a full scan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScanKind {
    /// The periodic safety net.
    Periodic,
    /// Start-up, lost events, changed folders, a backfill's retry: the
    /// rescan period starts over at its shortest.
    Now,
}

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Reader {
    /// A reader resuming from `checkpoints` (the committed state at start-up).
    pub fn new(
        opts: ReaderOptions,
        checkpoints: Vec<FileCheckpoint>,
        tx: Sender<SinkMsg>,
        shutdown: Shutdown,
        metrics: Arc<Metrics>,
    ) -> Reader {
        let (_, ctrl_rx) = crossbeam_channel::bounded(1);
        Self::with_control(
            opts,
            checkpoints,
            tx,
            shutdown,
            metrics,
            Arc::new(Health::default()),
            ctrl_rx,
        )
    }

    /// [`Reader::new`] with a heartbeat to keep and a control channel to obey.
    pub fn with_control(
        opts: ReaderOptions,
        checkpoints: Vec<FileCheckpoint>,
        tx: Sender<SinkMsg>,
        shutdown: Shutdown,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        ctrl_rx: Receiver<ReaderCtrl>,
    ) -> Reader {
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1024);
        let watcher = if opts.until == ReadUntil::Shutdown {
            match DirWatcher::new(wake_tx, metrics.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(event = "watcher_failed", error = %e, "file notifications unavailable; relying on periodic rescans");
                    None
                }
            }
        } else {
            None
        };
        Reader {
            opts,
            tx,
            wake_rx,
            watcher,
            shutdown,
            metrics,
            health,
            ctrl_rx,
            resume: checkpoints.into_iter().map(|c| (c.key, c)).collect(),
            files: HashMap::new(),
            dirty: HashSet::new(),
            logged_errors: HashSet::new(),
            retry_needed: false,
            last_scan: Duration::ZERO,
            scans: 0,
            unreported: 0,
            quiet_scans: 0,
            watch_complete: false,
            hot: HotFiles::new(HOT_FILES),
        }
    }

    /// Reads until shutdown (follow) or until everything present is read (backfill).
    pub fn run(mut self) -> ReaderExit {
        match self.run_inner() {
            Ok(exit) => exit,
            Err(SinkGone) => ReaderExit::SinkGone,
        }
    }

    fn run_inner(&mut self) -> Result<ReaderExit, SinkGone> {
        self.full_scan(ScanKind::Now)?;
        let m = &self.metrics;
        m.initial_backlog_bytes
            .store(m.backlog_bytes.load(Relaxed), Relaxed);
        m.initial_scan_done.store(1, Relaxed);
        if self.opts.until == ReadUntil::Drained {
            self.drain_pending()?;
            // Files that could not be opened or moved meanwhile get more
            // passes: a backfill has no later scan to pick them up.
            for _ in 0..5 {
                if !self.retry_needed || self.shutdown.is_triggered() {
                    break;
                }
                self.retry_needed = false;
                std::thread::sleep(Duration::from_millis(100));
                self.full_scan(ScanKind::Now)?;
                self.drain_pending()?;
            }
            if self.shutdown.is_triggered() {
                return Ok(ReaderExit::Shutdown);
            }
            self.send(SinkMsg::Drain)?;
            return Ok(ReaderExit::Drained);
        }
        let mut next_scan = Instant::now() + self.scan_interval();
        // When the last pass started by wake-ups began.
        let mut last_woken: Option<Instant> = None;
        loop {
            self.health.reader_beat();
            self.drain_pending()?;
            self.close_idle(Instant::now());
            if self.shutdown.is_triggered() {
                return Ok(ReaderExit::Shutdown);
            }
            // Wake at least every second so the heartbeat shows an idle
            // reader is alive; the rescan itself keeps its own period.
            let until_scan = next_scan.saturating_duration_since(Instant::now());
            let wait = until_scan.min(Duration::from_secs(1));
            let shutdown = self.shutdown.receiver().clone();
            let wake_rx = self.wake_rx.clone();
            let ctrl_rx = self.ctrl_rx.clone();
            select! {
                recv(ctrl_rx) -> msg => {
                    if let Ok(ReaderCtrl::SetSources(sources)) = msg {
                        let dirs: Vec<String> = sources.iter().map(Source::describe).collect();
                        tracing::info!(event = "watch_dirs_changed", dirs = ?dirs, "watched folders changed");
                        self.opts.sources = sources;
                        self.full_scan(ScanKind::Now)?;
                        next_scan = Instant::now() + self.scan_interval();
                    }
                }
                recv(wake_rx) -> w => {
                    let early = last_woken.map_or(Duration::ZERO, |t| self.opts.pass_gap.saturating_sub(t.elapsed()));
                    if !early.is_zero() {
                        // Gathers the wake-ups of the appends that follow;
                        // a shutdown ends the wait.
                        let _ = shutdown.recv_timeout(early);
                    }
                    last_woken = Some(Instant::now());
                    self.metrics.wake_passes.fetch_add(1, Relaxed);
                    let mut wakes: Vec<Wake> = w.into_iter().collect();
                    wakes.extend(wake_rx.try_iter());
                    let lost = self.watcher.as_ref().is_some_and(DirWatcher::take_lost);
                    if lost || wakes.contains(&Wake::FullScan) {
                        tracing::info!(event = "watcher_overflow", "file events may have been lost; rescanning");
                        self.full_scan(ScanKind::Now)?;
                        next_scan = Instant::now() + self.scan_interval();
                    } else {
                        let mut paths: Vec<PathBuf> = Vec::new();
                        let mut written: Vec<PathBuf> = Vec::new();
                        for w in wakes {
                            match w {
                                Wake::Paths(p) => paths.extend(p),
                                Wake::Written(p) => written.extend(p),
                                Wake::FullScan => {}
                            }
                        }
                        written.sort();
                        written.dedup();
                        written.retain(|p| !self.read_on(p));
                        paths.append(&mut written);
                        paths.sort();
                        paths.dedup();
                        if !paths.is_empty() {
                            self.hint(&paths)?;
                        }
                    }
                }
                recv(crossbeam_channel::after(wait)) -> _ => {
                    if Instant::now() >= next_scan {
                        self.full_scan(ScanKind::Periodic)?;
                        next_scan = Instant::now() + self.scan_interval();
                    }
                }
                recv(shutdown) -> _ => return Ok(ReaderExit::Shutdown),
            }
        }
    }

    /// Takes `bytes` of the channel's memory budget for a chunk, waiting
    /// (with heartbeats) while chunks already sent hold it. If the sink
    /// stopped, the chunks it had not taken are dropped, their permits
    /// free the budget, and the send that follows finds the sink gone.
    fn reserve(&self, bytes: u64) -> Result<Permit, SinkGone> {
        loop {
            if let Some(p) = self
                .opts
                .memory
                .try_acquire(bytes, Duration::from_millis(500))
            {
                return Ok(p);
            }
            self.health.reader_beat();
        }
    }

    fn send(&self, mut msg: SinkMsg) -> Result<(), SinkGone> {
        // Blocks while the channel is full: backpressure. A shutdown does not
        // interrupt it: the sink keeps draining until the reader is done.
        // Waiting on a full channel is not a stall, so it keeps the heartbeat.
        loop {
            match self.tx.send_timeout(msg, Duration::from_millis(500)) {
                Ok(()) => {
                    self.health.reader_beat();
                    self.metrics
                        .channel_depth
                        .store(self.tx.len() as u64, Relaxed);
                    return Ok(());
                }
                Err(crossbeam_channel::SendTimeoutError::Timeout(m)) => {
                    self.health.reader_beat();
                    self.metrics
                        .channel_depth
                        .store(self.tx.len() as u64, Relaxed);
                    msg = m;
                }
                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return Err(SinkGone),
            }
        }
    }

    /// Data was written at `path`: when it names one of the files whose
    /// descriptors are kept (see [`HOT_FILES`]), that file is marked for
    /// reading, with no `stat` of the path (the read's `fstat` says what
    /// changed, and its first bytes are compared again as after any change).
    /// False when the path is not one of them: it is then looked at.
    fn read_on(&mut self, path: &Path) -> bool {
        // (Tracked paths are text: a path that is not was never read.)
        let Some(path) = path.to_str() else {
            return false;
        };
        let Some(key) = self.hot.at_path(path) else {
            return false;
        };
        // Still open, and still read at that path (a rename since moves it).
        let Some(t) = self
            .files
            .get_mut(&key)
            .filter(|t| t.file.is_some() && &*t.identity.path == path)
        else {
            return false;
        };
        t.verified = false;
        t.named_at_scan = self.scans;
        self.dirty.insert(key);
        true
    }

    /// Looks at the paths wake-ups named: a file is looked at (and read when
    /// its size or time changed), a folder's transcripts are listed. A path
    /// that no longer exists needs nothing now: a renamed file shows up
    /// under its new name, a deleted one is confirmed gone by the periodic
    /// rescans. Never a walk of the whole tree.
    fn hint(&mut self, paths: &[PathBuf]) -> Result<(), SinkGone> {
        self.metrics.scans_paths.fetch_add(1, Relaxed);
        for p in paths {
            let Some(origin) = self.origin_of(p) else {
                continue;
            };
            match std::fs::metadata(p) {
                Ok(m) if m.is_dir() => {
                    let scan = discovery::scan_root(&discovery::Root {
                        agent: origin.agent,
                        dir: p.clone(),
                    });
                    self.register_found(scan, &origin)?;
                }
                Ok(m) if m.is_file() && origin.agent.owns(p) => {
                    if let Some(t) = self.files.get_mut(&FileKey::of(&m)) {
                        t.named_at_scan = self.scans;
                    }
                    let found = discovery::Found {
                        path: p.clone(),
                        meta: m,
                    };
                    let scan = discovery::Scan {
                        files: vec![found],
                        errors: Vec::new(),
                    };
                    self.register_found(scan, &origin)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The folders walked for each source, with their agent.
    fn roots(&self) -> Vec<Origin> {
        discovery::roots(&self.opts.sources)
            .into_iter()
            .map(|r| Origin {
                agent: r.agent,
                root: Arc::from(r.dir.as_path()),
            })
            .collect()
    }

    /// The root a path lies under (the deepest one, when roots nest).
    fn origin_of(&self, path: &Path) -> Option<Origin> {
        self.roots()
            .into_iter()
            .filter(|o| path.starts_with(&*o.root))
            .max_by_key(|o| o.root.components().count())
    }

    /// Walks every root: what each holds, with where it came from.
    fn scan_sources(&self) -> Vec<(discovery::Scan, Origin)> {
        self.roots()
            .into_iter()
            .map(|o| {
                let root = discovery::Root {
                    agent: o.agent,
                    dir: o.root.to_path_buf(),
                };
                (discovery::scan_root(&root), o)
            })
            .collect()
    }

    /// Registers what a scan found: known files by their listed metadata
    /// alone, new files after a look (opened in parallel for their
    /// fingerprints). Returns each found file's key and size.
    fn register_found(
        &mut self,
        scan: discovery::Scan,
        origin: &Origin,
    ) -> Result<HashMap<FileKey, u64>, SinkGone> {
        for (path, e) in &scan.errors {
            self.metrics.file_errors.fetch_add(1, Relaxed);
            if self.logged_errors.insert(path.clone()) {
                tracing::warn!(event = "file_unreadable", file = %path.display(), error = %e, "cannot read path; will retry");
            }
        }
        let (known, new): (Vec<discovery::Found>, Vec<discovery::Found>) = scan
            .files
            .into_iter()
            .partition(|f| self.files.contains_key(&FileKey::of(&f.meta)));
        let mut seen = HashMap::with_capacity(known.len() + new.len());
        for f in known {
            let key = FileKey::of(&f.meta);
            self.note_known(key, &f.path, &f.meta, origin);
            seen.insert(key, f.meta.len());
        }
        // A file a checkpoint names is opened now, to compare its first
        // bytes with the checkpoint's. A file never seen is registered from
        // its listing alone: its first read opens it and fingerprints it
        // (see `Reader::plan`), so a backfill starts reading at once and
        // opens each file once.
        let metrics = &self.metrics;
        let resume = &self.resume;
        let opened: Vec<std::io::Result<Opened>> = new
            .par_iter()
            .map(|f| {
                if resume.contains_key(&FileKey::of(&f.meta)) {
                    open_path(&f.path, metrics)
                } else {
                    Ok(Opened {
                        meta: f.meta.clone(),
                        fingerprint: Ok(Fingerprint::EMPTY),
                    })
                }
            })
            .collect();
        for (f, o) in new.iter().zip(opened) {
            let size = o.as_ref().map(|o| o.meta.len()).unwrap_or(0);
            if let Some(key) = self.register(&f.path, o, origin)? {
                seen.insert(key, size);
            }
        }
        Ok(seen)
    }

    /// Walks every folder and registers what it finds; a periodic scan that
    /// finds nothing the watcher had not reported makes the next one come
    /// later (see [`RESCAN_BACKOFF_STEPS`]).
    fn full_scan(&mut self, kind: ScanKind) -> Result<(), SinkGone> {
        let started = Instant::now();
        self.metrics.scans_full.fetch_add(1, Relaxed);
        self.scans += 1;
        self.unreported = 0;
        self.watch_complete = false;
        if let Some(w) = self.watcher.as_mut() {
            let dirs: Vec<PathBuf> = self.opts.sources.iter().map(|s| s.dir.clone()).collect();
            let failed = w.sync(&dirs);
            self.watch_complete = failed.is_empty();
            for (dir, e) in failed {
                tracing::warn!(event = "watch_failed", dir = %dir.display(), error = %e, "cannot watch folder; relying on periodic rescans");
            }
        }
        let scans = self.scan_sources();
        let walked = started.elapsed();
        let known_before = self.files.len();
        let mut sizes = HashMap::new();
        for (scan, origin) in scans {
            sizes.extend(self.register_found(scan, &origin)?);
        }
        // A scan of files already known says what the safety-net scans
        // cost; one that registered new files also opened them, so only its
        // walk (listing and `stat`s, what a safety-net scan does) counts.
        let steady = self.files.len() == known_before;
        self.unreported += self.files.len().saturating_sub(known_before) as u64;
        self.quiet_scans = match kind {
            ScanKind::Periodic if self.unreported == 0 && self.watch_complete => {
                self.quiet_scans.saturating_add(1)
            }
            _ => 0,
        };
        let missing: Vec<FileKey> = self
            .files
            .keys()
            .filter(|k| !sizes.contains_key(k))
            .copied()
            .collect();
        for key in missing {
            let t = self.files.get_mut(&key).expect("tracked");
            t.missed_scans = t.missed_scans.saturating_add(1);
            // Logged once, when a second scan confirms it.
            if t.missed_scans == 2 {
                t.gone = true;
                tracing::info!(event = "file_gone", file = %t.identity.path, offset = t.offset, "file no longer found");
            }
            // Finish reading through the open handle, then forget it.
            self.dirty.insert(key);
        }
        let backlog: u64 = self
            .files
            .iter()
            .map(|(k, t)| sizes.get(k).copied().unwrap_or(0).saturating_sub(t.offset))
            .sum();
        self.metrics.backlog_bytes.store(backlog, Relaxed);
        self.metrics
            .files_tracked
            .store(self.files.len() as u64, Relaxed);
        // The start-up scan's walk sets the first estimate: without one the
        // first periodic scan came at `rescan_interval` whatever it cost
        // (~0.3 s at 100,000 files, 10 s after start-up: 3 % of a core).
        self.last_scan = if steady { started.elapsed() } else { walked };
        tracing::debug!(
            event = "scan_completed",
            files = self.files.len(),
            unreported = self.unreported,
            latency_ms = started.elapsed().as_millis() as u64,
            next_scan_ms = self.scan_interval().as_millis() as u64,
            "full scan done"
        );
        Ok(())
    }

    /// Time until the next periodic full scan: `rescan_interval`, up to four
    /// times that while scans find nothing the watcher missed (see
    /// [`RESCAN_BACKOFF_STEPS`]), and longer (up to ten times) when a scan
    /// takes long (many files), so that the safety-net scans cost at most
    /// [`RESCAN_CPU_SHARE`] of a core. Wake-ups still look at changed paths
    /// at once.
    fn scan_interval(&self) -> Duration {
        let base = self.opts.rescan_interval;
        let quiet = base * (1u32 << self.quiet_scans.min(RESCAN_BACKOFF_STEPS));
        quiet.max(self.last_scan.div_f64(RESCAN_CPU_SHARE).min(base * 10))
    }

    /// A known file seen by a scan at `path`: notes a new name (rotation, a
    /// renamed folder), and marks it for reading when its size or time
    /// changed since it was last looked at. No open.
    fn note_known(&mut self, key: FileKey, path: &Path, meta: &std::fs::Metadata, origin: &Origin) {
        let Some(t) = self.files.get_mut(&key) else {
            return;
        };
        // Same inode under a new name (rotation), or a second link to it.
        // It moved when its old path no longer names it (gone, or a new
        // file was created there, as rotation does).
        if *t.identity.path != *path.to_string_lossy() {
            let old_path_is_it =
                std::fs::metadata(&*t.identity.path).is_ok_and(|m| FileKey::of(&m) == key);
            if !old_path_is_it {
                tracing::info!(event = "file_renamed", from = %t.identity.path, to = %path.display(), "file moved");
                let p: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
                t.identity.path = p;
                t.ctx = context_of(&self.opts.attribution, origin, path, meta);
            }
        }
        t.gone = false;
        t.missed_scans = 0;
        let stat = Stat::of(meta);
        // Named in this scan period or the one before: a change just before
        // the scan may still have its wake-up queued.
        if stat != t.seen && t.named_at_scan + 1 < self.scans {
            self.unreported += 1;
        }
        if stat != t.seen || t.file.is_some() || t.retry {
            t.seen = stat;
            t.verified = false;
            self.dirty.insert(key);
        }
    }

    fn register(
        &mut self,
        path: &Path,
        opened: std::io::Result<Opened>,
        origin: &Origin,
    ) -> Result<Option<FileKey>, SinkGone> {
        let Opened { meta, fingerprint } = match opened {
            Ok(o) => o,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    self.metrics.file_errors.fetch_add(1, Relaxed);
                    if self.logged_errors.insert(path.to_path_buf()) {
                        tracing::warn!(event = "file_unreadable", file = %path.display(), error = %e, "cannot open file; will retry");
                    }
                }
                return Ok(None);
            }
        };
        if !meta.is_file() {
            return Ok(None);
        }
        if self.logged_errors.remove(path) {
            tracing::info!(event = "file_readable", file = %path.display(), "file can be read again");
        }
        let key = FileKey::of(&meta);
        if self.files.contains_key(&key) {
            self.note_known(key, path, &meta, origin);
            return Ok(Some(key));
        }
        let fp = match fingerprint {
            Ok(fp) => fp,
            Err(e) => {
                tracing::warn!(event = "file_unreadable", file = %path.display(), error = %e, "cannot read file; will retry");
                return Ok(None);
            }
        };
        let path_str: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
        let identity = FileIdentity {
            key,
            fingerprint: fp,
            path: path_str,
        };
        let mut offset = 0;
        let mut state = None;
        if let Some(cp) = self.resume.remove(&key) {
            // The look fingerprinted min(size, 1 KiB); a checkpoint taken
            // when the file was shorter needs its own, shorter comparison.
            let same_file = if cp.fingerprint.len == fp.len {
                cp.fingerprint.hash == fp.hash
            } else {
                open_counted(path, &self.metrics)
                    .and_then(|f| fingerprint::still_matches(&f, &cp.fingerprint))
                    .unwrap_or(false)
            };
            if same_file {
                if meta.len() < cp.offset {
                    tracing::info!(event = "file_truncated", file = %path.display(), size_bytes = meta.len(), checkpoint = cp.offset, "file shorter than its checkpoint; reading from the start");
                    self.send(SinkMsg::Reset(identity.clone()))?;
                } else {
                    offset = cp.offset;
                    state = cp.state;
                }
            } else {
                // The inode was reused by a different file.
                tracing::info!(event = "file_replaced", file = %path.display(), "inode reused by a new file; reading from the start");
                self.send(SinkMsg::Reset(identity.clone()))?;
            }
        }
        tracing::info!(event = "file_discovered", file = %path.display(), offset, size_bytes = meta.len(), "tracking file");
        self.metrics.files_discovered.fetch_add(1, Relaxed);
        self.files.insert(
            key,
            Tracked {
                identity,
                ctx: context_of(&self.opts.attribution, origin, path, &meta),
                offset,
                long_scan: None,
                file: None,
                gone: false,
                missed_scans: 0,
                verified: true,
                seen: Stat::of(&meta),
                retry: false,
                state,
                named_at_scan: self.scans,
            },
        );
        self.dirty.insert(key);
        Ok(Some(key))
    }

    /// Reads every dirty file until none has complete unread lines.
    ///
    /// A pipeline, not rounds: up to [`max_in_flight`] files are read and
    /// parsed on the rayon pool at once, each result is applied (and sent) as
    /// soon as it is done, and a file with more to read is queued again. One
    /// task per file at a time keeps each file's chunks in order.
    fn drain_pending(&mut self) -> Result<(), SinkGone> {
        let (res_tx, res_rx) = crossbeam_channel::unbounded::<TaskResult>();
        let mut queue: Vec<FileKey> = self.dirty.drain().collect();
        queue.sort_unstable_by(|a, b| b.cmp(a));
        let mut waiting = self.unread_bytes(&queue);
        let mut busy: HashSet<FileKey> = HashSet::new();
        let mut sent_any = false;
        let limit = max_in_flight();
        let max_line = self.opts.max_line_bytes;
        let chunk_bytes = self.opts.read_chunk_bytes;
        let mode = self.opts.mode;
        loop {
            while busy.len() < limit && !self.shutdown.is_triggered() {
                let Some(key) = queue.pop() else { break };
                if busy.contains(&key) {
                    self.dirty.insert(key);
                    continue;
                }
                let Some(task) = self.plan(key)? else {
                    continue;
                };
                let bytes = task.size - task.start;
                waiting = waiting.saturating_sub(bytes);
                if bytes <= INLINE_BYTES && task.long_scan.is_none() && waiting < POOL_BYTES {
                    // A few appended lines: handing them to another thread
                    // costs more than reading them here.
                    let r = run_task(task, chunk_bytes, max_line, mode);
                    sent_any |= self.apply(r)?;
                    if self.dirty.remove(&key) {
                        queue.push(key);
                    }
                    continue;
                }
                busy.insert(key);
                let tx = res_tx.clone();
                rayon::spawn(move || {
                    let _ = tx.send(run_task(task, chunk_bytes, max_line, mode));
                });
            }
            if busy.is_empty() {
                // Files dirtied meanwhile (e.g. a finished task wanting more).
                if self.dirty.is_empty() || self.shutdown.is_triggered() {
                    break;
                }
                queue.extend(self.dirty.drain());
                waiting = self.unread_bytes(&queue);
                continue;
            }
            let r = res_rx.recv().expect("a task holds a sender");
            self.health.reader_beat();
            busy.remove(&r.key);
            let key = r.key;
            sent_any |= self.apply(r)?;
            if self.dirty.remove(&key) {
                queue.push(key);
            }
        }
        if sent_any {
            self.metrics.backlog_bytes.store(0, Relaxed);
            self.send(SinkMsg::CaughtUp)?;
        }
        Ok(())
    }

    /// Keeps `key`'s descriptor open as the most recently read file, and
    /// closes the least recently read one beyond [`HOT_FILES`].
    fn keep_open(&mut self, key: FileKey) {
        let Some(path) = self.files.get(&key).map(|t| t.identity.path.clone()) else {
            return;
        };
        if let Some(old) = self.hot.touch(key, &path, Instant::now()) {
            self.close(old);
        }
    }

    /// Closes the kept descriptors unused for [`HOT_IDLE`] at `now`.
    fn close_idle(&mut self, now: Instant) {
        while let Some(k) = self.hot.pop_idle(now, HOT_IDLE) {
            self.close(k);
        }
    }

    /// Closes a tracked file's descriptor (it is opened again by path when
    /// it changes).
    fn close(&mut self, key: FileKey) {
        if let Some(t) = self.files.get_mut(&key) {
            t.file = None;
        }
    }

    /// Bytes past the read position of `keys`, by their last known size.
    fn unread_bytes(&self, keys: &[FileKey]) -> u64 {
        keys.iter()
            .filter_map(|k| self.files.get(k))
            .map(|t| t.seen.len.saturating_sub(t.offset))
            .sum()
    }

    /// Decides what to read from one file, handling truncation, in-place
    /// rewrites and files that are gone.
    fn plan(&mut self, key: FileKey) -> Result<Option<Task>, SinkGone> {
        let Some(t) = self.files.get_mut(&key) else {
            return Ok(None);
        };
        // A file opened here is `fstat`ed once: for its key and its size.
        let mut opened_meta = None;
        if t.file.is_none() {
            let opened = open_counted(Path::new(&*t.identity.path), &self.metrics)
                .and_then(|f| f.metadata().map(|m| (f, m)));
            match opened {
                Ok((f, m)) if FileKey::of(&m) == key => {
                    t.file = Some(Arc::new(f));
                    opened_meta = Some(m);
                    if std::mem::take(&mut t.retry)
                        && self.logged_errors.remove(Path::new(&*t.identity.path))
                    {
                        tracing::info!(event = "file_readable", file = %t.identity.path, "file can be read again");
                    }
                }
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    // Out of descriptors, permissions, I/O: counted, logged,
                    // and retried (the next scan, or a backfill's last pass).
                    self.metrics.file_errors.fetch_add(1, Relaxed);
                    self.retry_needed = true;
                    t.retry = true;
                    if self.logged_errors.insert(PathBuf::from(&*t.identity.path)) {
                        tracing::warn!(event = "file_unreadable", file = %t.identity.path, error = %e, "cannot open file; will retry");
                    }
                    return Ok(None);
                }
                // Renamed, replaced or deleted: only full scans can tell.
                _ if t.missed_scans < 2 => {
                    t.gone = true;
                    self.retry_needed = true;
                    return Ok(None);
                }
                _ => {}
            }
        }
        let Some(file) = t.file.as_ref() else {
            return self.forget(key).map(|_| None);
        };
        let size = match opened_meta.map_or_else(|| file.metadata(), Ok) {
            Ok(m) => {
                t.seen = Stat::of(&m);
                m.len()
            }
            Err(_) => return self.forget(key).map(|_| None),
        };
        if t.ctx.agent.framing(Path::new(&*t.identity.path)) == Framing::WholeFile {
            return self.plan_whole_file(key);
        }
        let mut reset = false;
        if size < t.offset {
            tracing::info!(event = "file_truncated", file = %t.identity.path, size_bytes = size, offset = t.offset, "file truncated; reading from the start");
            reset = true;
        } else if !t.verified
            && !fingerprint::still_matches(file, &t.identity.fingerprint).unwrap_or(false)
        {
            tracing::info!(event = "file_replaced", file = %t.identity.path, "file content replaced; reading from the start");
            reset = true;
        }
        if reset {
            t.offset = 0;
            t.long_scan = None;
            t.state = None;
            t.identity.fingerprint = fingerprint::fingerprint_prefix(file, FINGERPRINT_BYTES)
                .unwrap_or(Fingerprint::EMPTY);
            let identity = t.identity.clone();
            self.send(SinkMsg::Reset(identity))?;
        }
        let t = self.files.get_mut(&key).expect("tracked");
        t.verified = true;
        let file = t.file.as_ref().expect("open");
        let mut head = Head::Known;
        if !t.identity.fingerprint.is_complete() && size > u64::from(t.identity.fingerprint.len) {
            if t.offset == 0 && t.long_scan.is_none() {
                head = Head::FromRead;
            } else if let Ok(fp) = fingerprint::fingerprint_prefix(file, FINGERPRINT_BYTES) {
                t.identity.fingerprint = fp;
            }
        }
        if size <= t.long_scan.unwrap_or(t.offset) {
            // Caught up; a gone file is done.
            if t.gone {
                t.file = None;
                self.forget(key)?;
            } else {
                self.keep_open(key);
            }
            return Ok(None);
        }
        let file = Arc::clone(t.file.as_ref().expect("open"));
        Ok(Some(Task {
            key,
            file,
            start: t.offset,
            size,
            long_scan: t.long_scan,
            ctx: t.ctx.clone(),
            state: t.state.clone(),
            whole: None,
            head,
        }))
    }

    /// [`Reader::plan`] for a file that is rewritten whole: read it all
    /// again when its size or modification time differs from when it was
    /// last read (the rows it gave before are dropped by dedup, changed
    /// ones replace theirs).
    fn plan_whole_file(&mut self, key: FileKey) -> Result<Option<Task>, SinkGone> {
        let t = self.files.get_mut(&key).expect("tracked");
        let now = t.seen;
        let read = match t.state {
            Some(FileState::WholeFile { len, mtime_ns }) => Some(Stat {
                len,
                mtime_ns: i128::from(mtime_ns),
            }),
            _ => None,
        };
        if read == Some(now) {
            t.file = None;
            if t.gone {
                self.forget(key)?;
            }
            return Ok(None);
        }
        if t.offset > 0 {
            tracing::debug!(event = "file_rewritten", file = %t.identity.path, size_bytes = now.len, "file rewritten; reading it whole again");
            t.offset = 0;
            t.state = None;
            if let Some(f) = t.file.as_ref() {
                t.identity.fingerprint = fingerprint::fingerprint_prefix(f, FINGERPRINT_BYTES)
                    .unwrap_or(Fingerprint::EMPTY);
            }
            let identity = t.identity.clone();
            self.send(SinkMsg::Reset(identity))?;
        }
        let t = self.files.get_mut(&key).expect("tracked");
        t.verified = true;
        if !t.identity.fingerprint.is_complete() && now.len > u64::from(t.identity.fingerprint.len)
        {
            if let Some(f) = t.file.as_ref() {
                if let Ok(fp) = fingerprint::fingerprint_prefix(f, FINGERPRINT_BYTES) {
                    t.identity.fingerprint = fp;
                }
            }
        }
        let Some(file) = t.file.clone() else {
            return Ok(None);
        };
        Ok(Some(Task {
            key,
            file,
            start: 0,
            size: now.len,
            long_scan: None,
            ctx: t.ctx.clone(),
            state: None,
            whole: Some(now),
            head: Head::Known,
        }))
    }

    fn forget(&mut self, key: FileKey) -> Result<(), SinkGone> {
        if self.files.remove(&key).is_some() {
            self.metrics
                .files_tracked
                .store(self.files.len() as u64, Relaxed);
            self.send(SinkMsg::Forget(key))?;
        }
        Ok(())
    }

    /// Applies a task's outcome and sends its chunk. Returns true if a chunk was sent.
    fn apply(&mut self, r: TaskResult) -> Result<bool, SinkGone> {
        let Some(t) = self.files.get_mut(&r.key) else {
            return Ok(false);
        };
        if let Some(e) = r.error {
            self.metrics.file_errors.fetch_add(1, Relaxed);
            tracing::warn!(event = "file_read_failed", file = %t.identity.path, error = %e, "read failed; will retry");
            t.file = None;
            t.retry = true;
            return Ok(false);
        }
        t.long_scan = r.long_scan;
        if let Some(fp) = r
            .fingerprint
            .filter(|fp| fp.len > t.identity.fingerprint.len)
        {
            t.identity.fingerprint = fp;
        }
        let key = r.key;
        if r.more {
            self.dirty.insert(key);
        }
        let Some((end, parsed)) = r.chunk else {
            if !r.more {
                self.keep_open(key);
            }
            return Ok(false);
        };
        let ParsedLines {
            rows,
            bad,
            counts,
            line_sizes,
            content,
            parse_ns,
            estimate_ns,
            state,
        } = parsed;
        let start = t.offset;
        t.offset = end;
        t.state = state.clone();
        let m = &self.metrics;
        m.bytes_read.fetch_add(end - start, Relaxed);
        m.lines_usage.fetch_add(counts.usage, Relaxed);
        m.lines_other.fetch_add(counts.other, Relaxed);
        m.lines_blank.fetch_add(counts.blank, Relaxed);
        m.parse_ns_base
            .fetch_add(parse_ns.saturating_sub(estimate_ns), Relaxed);
        m.parse_ns_enhanced.fetch_add(estimate_ns, Relaxed);
        for b in &bad {
            m.malformed(b.kind);
        }
        for &(lo, n) in &line_sizes {
            m.sizes.add(crate::ops::sizes::SizeKind::Line, lo, n);
        }
        let mut chunk = Chunk {
            file: t.identity.clone(),
            start,
            end,
            rows,
            bad,
            counts,
            line_sizes,
            content,
            state,
            permit: Permit::none(),
        };
        if !r.more {
            // Read to its end for now: likely appended to again soon.
            self.keep_open(key);
        }
        chunk.permit = self.reserve(chunk.mem_bytes())?;
        self.send(SinkMsg::Chunk(chunk))?;
        Ok(true)
    }
}

/// Reads up to `len` bytes at `start` into `buf[..len]` and returns how many
/// were read (fewer at end of file). `buf` is grown to `len + PADDING` but never
/// shrunk or re-zeroed: the reused buffer's old bytes past the read serve as
/// the parser's padding.
fn read_at(file: &File, start: u64, len: usize, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.len() < len + PADDING {
        buf.resize(len + PADDING, 0);
    }
    let mut got = 0;
    while got < len {
        let n = file.read_at(&mut buf[got..len], start + got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// Looks for the newline ending an over-long line, from `from` to `size`.
fn find_newline(
    file: &File,
    from: u64,
    size: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<u64>> {
    let mut pos = from;
    while pos < size {
        let len = ((size - pos) as usize).min(1 << 20);
        let n = read_at(file, pos, len, buf)?;
        if n == 0 {
            break;
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok(Some(pos + i as u64));
        }
        pos += n as u64;
    }
    Ok(None)
}

fn run_task(task: Task, chunk_bytes: usize, max_line: usize, mode: ParseMode) -> TaskResult {
    // Taken out, not borrowed: a nested rayon job on this thread may want one too.
    let mut buf = READ_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let result = read_task(&task, chunk_bytes, max_line, mode, &mut buf);
    if buf.capacity() <= 2 * chunk_bytes.max(1 << 20) {
        READ_BUF.with(|b| *b.borrow_mut() = buf);
    }
    match result {
        Ok(r) => r,
        Err(e) => TaskResult {
            key: task.key,
            chunk: None,
            long_scan: task.long_scan,
            more: false,
            error: Some(e),
            fingerprint: None,
        },
    }
}

fn read_task(
    task: &Task,
    chunk_bytes: usize,
    max_line: usize,
    mode: ParseMode,
    buf: &mut Vec<u8>,
) -> std::io::Result<TaskResult> {
    let mut result = TaskResult {
        key: task.key,
        chunk: None,
        long_scan: None,
        more: false,
        error: None,
        fingerprint: None,
    };
    let too_long = |end: u64| {
        let parsed = ParsedLines {
            bad: vec![BadLine {
                offset: task.start,
                kind: MalformedKind::TooLong,
                head: String::new(),
            }],
            counts: LineCounts {
                malformed: 1,
                ..LineCounts::default()
            },
            // Skipping a line changes nothing the next lines depend on.
            state: task.state.clone(),
            line_sizes: vec![(crate::ops::sizes::bucket(end - task.start).0, 1)],
            ..ParsedLines::default()
        };
        (end, parsed)
    };
    if let Some(stat) = task.whole {
        result.chunk = read_whole(task, stat, max_line, buf)?;
        return Ok(result);
    }
    if let Some(scanned) = task.long_scan {
        match find_newline(&task.file, scanned, task.size, buf)? {
            Some(nl) => {
                result.chunk = Some(too_long(nl + 1));
                result.more = nl + 1 < task.size;
            }
            None => result.long_scan = Some(task.size),
        }
        return Ok(result);
    }
    let available = task.size - task.start;
    let len = (available as usize).min(chunk_bytes);
    let mut n = read_at(&task.file, task.start, len, buf)?;
    if task.head == Head::FromRead {
        result.fingerprint = Some(fingerprint::of_prefix(&buf[..n]));
    }
    let mut complete = lines::complete_prefix_len(&buf[..n]);
    if complete == 0 && (n as u64) < available {
        // One line longer than a chunk: read up to the line limit.
        let len = (available as usize).min(max_line + 1);
        n = read_at(&task.file, task.start, len, buf)?;
        complete = lines::complete_prefix_len(&buf[..n]);
        if complete == 0 && n > max_line {
            let scanned = task.start + n as u64;
            match find_newline(&task.file, scanned, task.size, buf)? {
                Some(nl) => {
                    result.chunk = Some(too_long(nl + 1));
                    result.more = nl + 1 < task.size;
                }
                None => result.long_scan = Some(task.size),
            }
            return Ok(result);
        }
    }
    if complete == 0 {
        // A half-written last line: wait for its newline.
        return Ok(result);
    }
    let end = task.start + complete as u64;
    let parsed = parse_chunk(
        buf,
        complete,
        task.start,
        &task.ctx,
        max_line,
        mode,
        task.state.clone(),
    );
    result.chunk = Some((end, parsed));
    // More to read when this read stopped short of the end of the file.
    result.more = end < task.size && (n as u64) < available;
    Ok(result)
}

/// How long a whole file that does not parse must have been left alone
/// before it counts as malformed (younger, it is taken as caught in the
/// middle of a rewrite, and the rewrite's own notification reads it again).
const SETTLED: Duration = Duration::from_secs(2);

/// Reads a whole-file document: all its bytes, parsed at once. `None` when
/// it does not parse yet (being rewritten).
fn read_whole(
    task: &Task,
    stat: Stat,
    max_bytes: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<(u64, ParsedLines)>> {
    let state = Some(FileState::WholeFile {
        len: stat.len,
        mtime_ns: stat.mtime_ns as i64,
    });
    let bad = |kind: MalformedKind, head: String| ParsedLines {
        bad: vec![BadLine {
            offset: 0,
            kind,
            head,
        }],
        counts: LineCounts {
            malformed: 1,
            ..LineCounts::default()
        },
        state: state.clone(),
        ..ParsedLines::default()
    };
    if task.size as usize > max_bytes {
        return Ok(Some((
            task.size,
            bad(MalformedKind::TooLong, String::new()),
        )));
    }
    let n = read_at(&task.file, 0, task.size as usize, buf)?;
    if let Some(mut parsed) = crate::format::chunk::parse_whole_file(&buf[..n], &task.ctx) {
        parsed.state = state;
        return Ok(Some((n as u64, parsed)));
    }
    let modified = std::time::UNIX_EPOCH + Duration::from_nanos(stat.mtime_ns.max(0) as u64);
    let settled = std::time::SystemTime::now()
        .duration_since(modified)
        .is_ok_and(|age| age >= SETTLED);
    if !settled {
        return Ok(None);
    }
    let head = String::from_utf8_lossy(&buf[..n.min(200)]).into_owned();
    Ok(Some((n as u64, bad(MalformedKind::InvalidJson, head))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn opts(dir: &Path) -> ReaderOptions {
        ReaderOptions {
            sources: vec![Source::new(Agent::Claude, dir)],
            rescan_interval: Duration::from_secs(10),
            max_line_bytes: 4096,
            read_chunk_bytes: 4096,
            until: ReadUntil::Drained,
            attribution: Default::default(),
            mode: ParseMode::Full,
            memory: MemoryBudget::new(64 << 20),
            pass_gap: Duration::from_millis(50),
        }
    }

    /// A reader of `o` with no checkpoints, and what it sends.
    fn reader(o: ReaderOptions) -> (Reader, Receiver<SinkMsg>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let r = Reader::new(
            o,
            Vec::new(),
            tx,
            Shutdown::new(),
            Arc::new(Metrics::default()),
        );
        (r, rx)
    }

    fn usage_line(id: &str, out: u64) -> String {
        format!(
            r#"{{"type":"assistant","sessionId":"s","timestamp":"2025-01-01T00:00:00Z","requestId":"r{id}","message":{{"id":"m{id}","model":"x","usage":{{"input_tokens":1,"output_tokens":{out}}}}}}}"#
        ) + "\n"
    }

    fn collect(dir: &Path, checkpoints: Vec<FileCheckpoint>, o: ReaderOptions) -> Vec<SinkMsg> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let r = Reader::new(
            o,
            checkpoints,
            tx,
            Shutdown::new(),
            Arc::new(Metrics::default()),
        );
        assert_eq!(r.run(), ReaderExit::Drained);
        let _ = dir;
        rx.try_iter().collect()
    }

    #[test]
    fn keeps_the_last_files_read_open_and_no_more() {
        let d = tempfile::tempdir().unwrap();
        let n = HOT_FILES + 6;
        for i in 0..n {
            std::fs::write(
                d.path().join(format!("s{i}.jsonl")),
                usage_line(&format!("m{i}"), 1),
            )
            .unwrap();
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let metrics = Arc::new(Metrics::default());
        let mut r = Reader::new(
            opts(d.path()),
            Vec::new(),
            tx,
            Shutdown::new(),
            metrics.clone(),
        );
        r.full_scan(ScanKind::Now).unwrap();
        r.drain_pending().unwrap();
        let open = |r: &Reader| r.files.values().filter(|t| t.file.is_some()).count();
        assert_eq!(
            rx.try_iter()
                .filter(|m| matches!(m, SinkMsg::Chunk(_)))
                .count(),
            n
        );
        assert_eq!(open(&r), HOT_FILES);
        // Each file was opened once: to be read (found files are not opened).
        assert_eq!(metrics.file_opens.load(Relaxed), n as u64);
        // An append to a kept file is read without opening it again.
        let hot = r.hot.newest().unwrap();
        let path = r.files[&hot].identity.path.to_string();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, usage_line("again", 2).as_bytes()).unwrap();
        r.hint(&[PathBuf::from(&path)]).unwrap();
        r.drain_pending().unwrap();
        assert_eq!(
            rx.try_iter()
                .filter(|m| matches!(m, SinkMsg::Chunk(_)))
                .count(),
            1
        );
        assert_eq!(metrics.file_opens.load(Relaxed), n as u64);
        // Unused for HOT_IDLE: closed.
        r.close_idle(Instant::now() + HOT_IDLE);
        assert_eq!(open(&r), 0);
    }

    #[test]
    fn appends_in_quick_succession_are_read_in_passes_at_least_the_pass_gap_apart() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        std::fs::write(&p, usage_line("a0", 1)).unwrap();
        let mut o = opts(d.path());
        o.until = ReadUntil::Shutdown;
        let gap = o.pass_gap;
        let (tx, rx) = crossbeam_channel::unbounded();
        let shutdown = Shutdown::new();
        let r = Reader::new(
            o,
            Vec::new(),
            tx,
            shutdown.clone(),
            Arc::new(Metrics::default()),
        );
        let reader = std::thread::spawn(move || r.run());
        // The first read: the file is then kept open and followed. Its
        // pass ends with a `CaughtUp`, which may come after the chunk.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now())),
            Ok(SinkMsg::CaughtUp) | Err(_)
        ) {}
        assert!(Instant::now() < deadline, "the first pass never ended");
        assert!(rx.try_recv().is_err(), "more than one pass for one file");
        let caught_up = |rx: &Receiver<SinkMsg>| {
            rx.try_iter()
                .filter(|m| matches!(m, SinkMsg::CaughtUp))
                .count()
        };
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        let started = Instant::now();
        for i in 1..=40 {
            std::io::Write::write_all(&mut f, usage_line(&format!("a{i}"), i).as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        let span = started.elapsed();
        // Every line arrives; count the passes that sent them.
        let mut passes = 0;
        let mut rows = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while rows < 40 && Instant::now() < deadline {
            if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
                match m {
                    SinkMsg::Chunk(c) => rows += c.rows.len(),
                    SinkMsg::CaughtUp => passes += 1,
                    _ => {}
                }
            }
        }
        std::thread::sleep(gap * 2);
        passes += caught_up(&rx);
        shutdown.trigger();
        assert!(matches!(reader.join().unwrap(), ReaderExit::Shutdown));
        assert_eq!(rows, 40);
        // One pass at once, then at most one per pass gap (a pass that
        // starts while the last lines are written may need one more).
        let bound = 2 + (span.as_millis() / gap.as_millis()) as usize;
        assert!(
            passes <= bound,
            "{passes} passes for 40 appends in {span:?}"
        );
    }

    #[test]
    fn reading_a_file_leaves_its_access_time() {
        use std::io::Read;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        std::fs::write(&p, usage_line("a1", 1)).unwrap();
        // Older than its modification: under `relatime` a plain read would
        // move it.
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_times(std::fs::FileTimes::new().set_accessed(old))
            .unwrap();
        drop(f);
        let mut text = String::new();
        open_counted(&p, &Metrics::default())
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.contains("ma1"));
        assert_eq!(std::fs::metadata(&p).unwrap().accessed().unwrap(), old);
    }

    #[test]
    fn rescans_back_off_while_they_find_nothing_the_watcher_missed() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.jsonl"), d.path().join("b.jsonl"));
        std::fs::write(&a, usage_line("a1", 1)).unwrap();
        std::fs::write(&b, usage_line("b1", 1)).unwrap();
        let mut o = opts(d.path());
        o.until = ReadUntil::Shutdown;
        let (mut r, rx) = reader(o);
        assert!(r.watcher.is_some());
        let base = Duration::from_secs(10);
        r.full_scan(ScanKind::Now).unwrap();
        r.drain_pending().unwrap();
        assert_eq!(r.scan_interval(), base);
        // Quiet scans: 2x, then 4x, and no further.
        for want in [2, 4, 4] {
            r.full_scan(ScanKind::Periodic).unwrap();
            assert_eq!(r.scan_interval(), base * want);
        }
        // A change the watcher named (a write to a kept file) is no miss.
        let mut f = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
        std::io::Write::write_all(&mut f, usage_line("a2", 2).as_bytes()).unwrap();
        assert!(r.read_on(&a));
        r.full_scan(ScanKind::Periodic).unwrap();
        assert_eq!(r.scan_interval(), base * 4);
        r.drain_pending().unwrap();
        // A change it never named is: back to the base period.
        let mut f = std::fs::OpenOptions::new().append(true).open(&b).unwrap();
        std::io::Write::write_all(&mut f, usage_line("b2", 2).as_bytes()).unwrap();
        r.full_scan(ScanKind::Periodic).unwrap();
        assert_eq!(r.scan_interval(), base);
        r.drain_pending().unwrap();
        // So is a file it did not report.
        r.full_scan(ScanKind::Periodic).unwrap();
        assert_eq!(r.scan_interval(), base * 2);
        std::fs::write(d.path().join("c.jsonl"), usage_line("c1", 1)).unwrap();
        r.full_scan(ScanKind::Periodic).unwrap();
        assert_eq!(r.scan_interval(), base);
        // A scan for another reason starts over too.
        r.full_scan(ScanKind::Periodic).unwrap();
        r.full_scan(ScanKind::Now).unwrap();
        assert_eq!(r.scan_interval(), base);
        drop(rx);

        // Without a watcher, scans are all there is: no back-off.
        let (mut r, _rx) = reader(opts(d.path()));
        r.full_scan(ScanKind::Now).unwrap();
        r.full_scan(ScanKind::Periodic).unwrap();
        r.full_scan(ScanKind::Periodic).unwrap();
        assert_eq!(r.scan_interval(), base);
    }

    #[test]
    fn the_start_up_scans_walk_spaces_the_first_periodic_scan() {
        // 200 files take far more than 10 µs to list and `stat`, so with a
        // 100 µs base the 1 % rule puts the first periodic scan at the cap
        // (ten times the base); it came at the base before the start-up
        // scan's walk counted.
        let d = tempfile::tempdir().unwrap();
        for i in 0..200 {
            let p = d.path().join(format!("s{i}.jsonl"));
            std::fs::write(p, usage_line(&format!("s{i}"), 1)).unwrap();
        }
        let mut o = opts(d.path());
        let base = Duration::from_micros(100);
        o.rescan_interval = base;
        let (mut r, _rx) = reader(o);
        r.full_scan(ScanKind::Now).unwrap();
        assert!(r.last_scan > Duration::ZERO);
        assert_eq!(r.scan_interval(), base * 10);
    }

    #[test]
    fn a_write_to_a_kept_file_is_read_without_a_look_and_others_are_looked_at() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.jsonl");
        std::fs::write(&a, usage_line("a1", 1)).unwrap();
        let (mut r, rx) = reader(opts(d.path()));
        r.full_scan(ScanKind::Now).unwrap();
        r.drain_pending().unwrap();
        assert_eq!(chunks(&rx.try_iter().collect::<Vec<_>>()).len(), 1);
        let mut f = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
        std::io::Write::write_all(&mut f, usage_line("a2", 2).as_bytes()).unwrap();
        assert!(r.read_on(&a));
        r.drain_pending().unwrap();
        let msgs: Vec<SinkMsg> = rx.try_iter().collect();
        let c = chunks(&msgs);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].rows[0].message_id, "ma2");
        // A path it does not read (new, or not kept open) needs a look.
        let b = d.path().join("b.jsonl");
        std::fs::write(&b, usage_line("b1", 1)).unwrap();
        assert!(!r.read_on(&b));
        let key = r.hot.newest().unwrap();
        r.close(key);
        assert!(!r.read_on(&a));
        // A file rewritten in place under its kept descriptor is read again
        // from the start: the write marks it for a comparison of its first
        // bytes.
        std::io::Write::write_all(&mut f, usage_line("a3", 3).as_bytes()).unwrap();
        r.hint(std::slice::from_ref(&a)).unwrap();
        r.drain_pending().unwrap();
        assert_eq!(chunks(&rx.try_iter().collect::<Vec<_>>()).len(), 1);
        // Longer than before: only its first bytes tell.
        let rewritten: String = (1..=4).map(|i| usage_line(&format!("c{i}"), i)).collect();
        std::fs::write(&a, rewritten).unwrap();
        assert!(r.read_on(&a));
        r.drain_pending().unwrap();
        let msgs: Vec<SinkMsg> = rx.try_iter().collect();
        assert!(msgs.iter().any(|m| matches!(m, SinkMsg::Reset(_))));
        let ids: Vec<&str> = chunks(&msgs)
            .iter()
            .flat_map(|c| c.rows.iter().map(|r| r.message_id.as_str()))
            .collect();
        assert_eq!(ids, ["mc1", "mc2", "mc3", "mc4"]);
    }

    fn chunks(msgs: &[SinkMsg]) -> Vec<&Chunk> {
        msgs.iter()
            .filter_map(|m| match m {
                SinkMsg::Chunk(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reads_complete_lines_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        let mut f = File::create(&p).unwrap();
        f.write_all(usage_line("1", 5).as_bytes()).unwrap();
        f.write_all(b"{\"type\":\"user\"}\n{\"type\":\"assis")
            .unwrap();
        let msgs = collect(d.path(), vec![], opts(d.path()));
        let cs = chunks(&msgs);
        assert_eq!(cs.len(), 1);
        let c = cs[0];
        assert_eq!(c.rows.len(), 1);
        assert_eq!(c.counts.other, 1);
        assert_eq!(
            c.end as usize,
            usage_line("1", 5).len() + "{\"type\":\"user\"}\n".len()
        );
        assert!(matches!(msgs.last(), Some(SinkMsg::Drain)));
    }

    #[test]
    fn too_long_line_is_skipped_and_the_next_is_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        let long = format!("{{\"x\":\"{}\"}}\n", "y".repeat(20_000));
        std::fs::write(
            &p,
            format!("{}{}{}", usage_line("1", 1), long, usage_line("2", 2)),
        )
        .unwrap();
        let msgs = collect(d.path(), vec![], opts(d.path()));
        let cs = chunks(&msgs);
        let rows: usize = cs.iter().map(|c| c.rows.len()).sum();
        let bad: Vec<_> = cs.iter().flat_map(|c| c.bad.iter()).collect();
        assert_eq!(rows, 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].kind, MalformedKind::TooLong);
        assert_eq!(bad[0].offset as usize, usage_line("1", 1).len());
        assert_eq!(cs.last().unwrap().end, std::fs::metadata(&p).unwrap().len());
    }

    #[test]
    fn a_new_files_first_read_fingerprints_it() {
        let d = tempfile::tempdir().unwrap();
        let long = d.path().join("long.jsonl");
        let short = d.path().join("short.jsonl");
        let lines: String = (0..20).map(|i| usage_line(&i.to_string(), i)).collect();
        assert!(lines.len() > FINGERPRINT_BYTES);
        std::fs::write(&long, &lines).unwrap();
        std::fs::write(&short, usage_line("s", 1)).unwrap();
        let msgs = collect(d.path(), Vec::new(), opts(d.path()));
        for p in [&long, &short] {
            let want = fingerprint::fingerprint_prefix(&File::open(p).unwrap(), FINGERPRINT_BYTES)
                .unwrap();
            let c = chunks(&msgs)
                .into_iter()
                .find(|c| *c.file.path == *p.to_string_lossy())
                .expect("read");
            assert_eq!(c.start, 0);
            assert_eq!(c.file.fingerprint, want, "{}", p.display());
        }
    }

    #[test]
    fn resumes_from_a_matching_checkpoint_and_restarts_a_replaced_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        let first = usage_line("1", 1);
        std::fs::write(&p, format!("{}{}", first, usage_line("2", 2))).unwrap();
        let f = File::open(&p).unwrap();
        let meta = f.metadata().unwrap();
        let cp = FileCheckpoint::new(
            FileKey::of(&meta),
            fingerprint::fingerprint_prefix(&f, FINGERPRINT_BYTES).unwrap(),
            &p.to_string_lossy(),
            first.len() as u64,
        );
        let msgs = collect(d.path(), vec![cp.clone()], opts(d.path()));
        let cs = chunks(&msgs);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].start, first.len() as u64);
        assert_eq!(cs[0].rows[0].message_id, "m2");
        // Same inode, different content: a reset, then everything from 0.
        let wrong = FileCheckpoint {
            fingerprint: Fingerprint { len: 10, hash: 1 },
            ..cp
        };
        let msgs = collect(d.path(), vec![wrong], opts(d.path()));
        assert!(matches!(msgs[0], SinkMsg::Reset(_)));
        assert_eq!(chunks(&msgs)[0].start, 0);
    }

    #[test]
    fn usage_only_mode_skips_lines_that_cannot_carry_usage() {
        let ctx = crate::format::claude::paths::context_of(Path::new("/c/projects/p/s.jsonl"));
        let text = format!(
            "{}{{\"oops\n   \n{{\"type\":\"user\"}}\n{}{}",
            usage_line("1", 5),
            // The key spelled with an escape is still found.
            usage_line("2", 7).replace("\"usage\"", "\"\\u0075sage\""),
            "{\"usage\":\n"
        );
        let run = |mode| {
            let mut buf = text.clone().into_bytes();
            let end = buf.len();
            buf.resize(end + PADDING, 0);
            crate::format::chunk::parse_lines(&mut buf, end, 0, &ctx, 1 << 20, mode)
        };
        let full = run(ParseMode::Full);
        let fast = run(ParseMode::UsageOnly);
        assert_eq!(fast.rows, full.rows);
        assert_eq!(fast.rows.len(), 2);
        assert_eq!(
            (full.counts.other, full.counts.malformed, full.counts.blank),
            (1, 2, 1)
        );
        // `{"oops` is not looked at; the cut usage line still is.
        assert_eq!(
            (fast.counts.other, fast.counts.malformed, fast.counts.blank),
            (2, 1, 1)
        );
    }

    #[test]
    fn parses_many_lines_in_parallel_in_file_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        let text: String = (0..500).map(|i| usage_line(&i.to_string(), i)).collect();
        std::fs::write(&p, &text).unwrap();
        let mut o = opts(d.path());
        o.read_chunk_bytes = 1 << 20;
        let msgs = collect(d.path(), vec![], o);
        let rows: Vec<u64> = chunks(&msgs)
            .iter()
            .flat_map(|c| c.rows.iter().map(|r| r.output_tokens))
            .collect();
        assert_eq!(rows, (0..500).collect::<Vec<u64>>());
    }
}
