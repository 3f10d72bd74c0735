//! The sink: receives parsed chunks, keeps the winning entry per dedup key,
//! batches rows, inserts them into ClickHouse, and only then advances the
//! checkpoints of the bytes those rows came from.
//!
//! With the rows go the batch's content estimates (enhanced analysis); each
//! committed file's cumulative naive sums (`file_naive`) follow before the
//! next checkpoint save or summary; the summaries of the sessions touched
//! are recomputed in ClickHouse: by the daemon at
//! most every `summary_interval` (at once after a quiet spell, at most that
//! late while data keeps coming), by a backfill once the reader has caught
//! up.
//!
//! A batch is flushed on rows, bytes, age (`flush_interval`), or as soon as the
//! reader reports it has caught up, so a freshly appended line does not wait
//! for the timer. A failed insert is retried with exponential backoff and
//! jitter and never skipped; while it is retried nothing else is consumed, the
//! channel fills, and the reader stops (backpressure).

pub mod deadletter;
pub mod dedup;
pub mod naive;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use self::naive::{FileNaiveRow, NaiveSums};
use crate::ch::{schema, ChClient, ChError};
use crate::format::claude::content::ContentRow;
use crate::ingest::checkpoint::{CheckpointStore, SaveKind};
use crate::ingest::fingerprint::FileKey;
use crate::ingest::msg::{FileIdentity, SinkMsg};
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;
use crate::ops::shutdown::Shutdown;
use crate::price::{Price, PriceTable};
use crate::record::UsageRow;
use crate::sink::deadletter::DeadLetter;
use crate::sink::dedup::{key_hash, DedupIndex, KeyHash, Offer};

/// A summary statement sent by [`Sink::start_summary`], running in
/// ClickHouse.
struct SummaryRun {
    /// The sessions it recomputes (stale again if it fails).
    sessions: Vec<String>,
    /// When it was sent.
    started: Instant,
    /// The statement, on the runtime.
    task: tokio::task::JoinHandle<Result<(), ChError>>,
}

/// Batching and retry settings.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Flush at this many rows.
    pub max_rows: usize,
    /// Flush at about this many bytes.
    pub max_bytes: usize,
    /// Flush a non-empty batch at least this often.
    pub flush_interval: Duration,
    /// A batch flushed because the reader caught up waits until this long
    /// after the previous insert: lines appended one by one to many files
    /// then share inserts (and ClickHouse parts) instead of each making one.
    pub min_insert_gap: Duration,
    /// First retry delay.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// After shutdown is triggered, keep trying to deliver for this long.
    pub shutdown_timeout: Duration,
    /// An insert slower than this is logged with `slow = true`.
    pub slow_insert: Duration,
    /// A large batch goes out as up to this many inserts at once.
    pub parallel_inserts: usize,
    /// When session summaries are recomputed.
    pub summaries: SummaryPolicy,
}

/// When the sink recomputes session summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryPolicy {
    /// The daemon: at most every `summary_interval`, and no later than that
    /// after a change. A session being written is caught up with several
    /// times a second; recomputing its summary at each catch-up made
    /// ClickHouse run one `INSERT … SELECT` per insert of rows.
    WhileFlowing,
    /// A backfill: once, when everything is read (intermediate summaries
    /// would be recomputed again at the end).
    WhenCaughtUp,
}

/// Why a batch is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlushReason {
    /// Rows or bytes reached their limit.
    Full,
    /// The oldest row waited `flush_interval`, or the sink is idle.
    Timer,
    /// The reader has nothing more for now.
    CaughtUp,
    /// The reader is done (backfill drained, or it hung up).
    Last,
}

impl FlushReason {
    /// Nothing more is coming soon (the reader caught up, stopped, or sent
    /// nothing for a while): summaries and checkpoints are brought up to
    /// date now. Only a full batch means more is on its way.
    fn settles(self) -> bool {
        !matches!(self, FlushReason::Full)
    }
}

/// After a catch-up that inserted at least this many bytes of rows, freed
/// memory is returned to the system (see [`Sink::release_memory_if_quiet`]).
const TRIM_AFTER_BYTES: usize = 8 << 20;

/// How long inserts must have paused before that memory is returned: the
/// catch-up is over, not between two inserts of a steady flow.
const TRIM_WHEN_QUIET: Duration = Duration::from_secs(1);

/// Checkpoints are saved at most this often (and at the end of a run).
/// Saving later is always safe: a crash re-reads the bytes after the saved
/// offsets and the dedup index drops what had landed.
const CHECKPOINT_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// ... and rarer when a save takes long (the file holds every tracked file):
/// saves may use at most this share of a core. With 10,000 files a save
/// takes ~15 ms; saving after every catch-up used 40 % of the daemon's CPU
/// while 50 sessions appended, and at 2 % saves were still half of it
/// (perf of the live benchmark): at 0.5 %, a save every ~3 s there.
const CHECKPOINT_CPU_SHARE: f64 = 0.005;

/// Cost and session-summary settings (fixed for the sink's life).
#[derive(Debug, Clone)]
pub struct SummaryOptions {
    /// Prices for each row's `cost_usd`.
    pub prices: Arc<PriceTable>,
    /// Longest wait between summary recomputations while data keeps coming.
    pub interval: Duration,
    /// Join the content estimates into summaries: enhanced analysis is on,
    /// or the `content` table held rows at start-up.
    pub with_content: bool,
    /// The database held no usage rows at start-up: every session in it is
    /// this run's, so the first recomputation covers all of them without
    /// listing them.
    pub started_empty: bool,
    /// Which keys the index does not know are asked of ClickHouse before
    /// they are inserted.
    pub lookup: Lookup,
}

/// Which new keys (not in the dedup index) the sink looks up in ClickHouse
/// per batch, because the start-up load may have left them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// None: the index was loaded with every key there is (or the database
    /// was empty).
    Never,
    /// Keys of entries before this time (Unix ms): the index was loaded
    /// with the keys of entries from then on (`dedup.load_days`).
    ///
    /// Not every key when the index holds only this host's
    /// (`dedup.load_scope = "host"`): a lookup of thousands of keys scattered
    /// over the table reads most of its key column, so per-batch lookups of
    /// every key cost a backfill 2.5x on a 200k-row cluster and grow with
    /// the fleet. A recent key another host inserted (a session synced while
    /// it is written) is inserted again instead, and `FINAL` keeps one row.
    Before(i64),
}

impl Lookup {
    /// Whether a new key of an entry at `ts_ms` must be looked up.
    fn applies_to(self, ts_ms: i64) -> bool {
        match self {
            Lookup::Never => false,
            Lookup::Before(t) => ts_ms < t,
        }
    }
}

/// How the sink ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkExit {
    /// Backfill drained: everything read is acknowledged and committed.
    Drained,
    /// The reader stopped and everything it sent is acknowledged.
    Finished,
    /// Shutdown deadline passed with rows not acknowledged (they will be
    /// re-read from the checkpoints on the next start).
    Abandoned,
}

/// A checkpoint change that waits for the batch before it.
#[derive(Debug)]
enum Ack {
    /// File, end offset, bytes covered, naive sums of the lines covered,
    /// the file's state at the end offset.
    Commit(
        FileIdentity,
        u64,
        u64,
        Vec<NaiveSums>,
        Option<crate::format::FileState>,
    ),
    Reset(FileIdentity),
    Forget(FileKey),
}

#[derive(Default)]
struct Batch {
    rows: Vec<UsageRow>,
    /// Position of each key's row in `rows`: a later, better entry of the same
    /// key replaces it in place instead of adding a second row.
    pos: HashMap<
        KeyHash,
        usize,
        std::hash::BuildHasherDefault<crate::sink::dedup::PassThroughHasher>,
    >,
    bytes: usize,
    acks: Vec<Ack>,
    opened: Option<Instant>,
    superseding: u64,
    /// Content estimates (enhanced analysis), inserted after the rows.
    content: Vec<ContentRow>,
    /// Rows of keys the index did not know whose entries are older than
    /// the index's start-up window: ClickHouse may hold them, so it is asked
    /// before the insert (see [`SummaryOptions::lookup`]).
    unchecked: Vec<usize>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.acks.is_empty() && self.content.is_empty()
    }

    /// Empties it, keeping the buffers' capacity.
    fn clear(&mut self) {
        self.rows.clear();
        self.pos.clear();
        self.bytes = 0;
        self.acks.clear();
        self.opened = None;
        self.superseding = 0;
        self.content.clear();
        self.unchecked.clear();
    }
}

/// A flushed batch of at most this many rows lends its buffers to the next
/// one: a daemon with 50 sessions being written flushes a few thousand rows
/// several times a second, and growing fresh vectors and maps for each
/// (reallocating, copying, faulting new pages in) was a tenth of the sink's
/// CPU. A bigger (backfill) batch is freed instead of kept for good.
const RECYCLE_ROWS: usize = 8192;

/// The sink. Create with [`Sink::new`], then [`Sink::run`] on its own thread.
pub struct Sink {
    rx: Receiver<SinkMsg>,
    client: ChClient,
    runtime: tokio::runtime::Handle,
    store: CheckpointStore,
    index: DedupIndex,
    opts: SinkOptions,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    batch: Batch,
    failing_since: Option<Instant>,
    last_failure_log: Option<Instant>,
    checkpoint_failing: bool,
    dead_letter: DeadLetter,
    health: Arc<Health>,
    ctrl_rx: Receiver<SinkOptions>,
    summary: SummaryOptions,
    /// Each model's price, looked up once (`None`: unknown, costs 0).
    price_cache: HashMap<String, Option<Price>>,
    /// Sessions whose summary is out of date.
    stale_sessions: HashSet<String>,
    /// Files whose committed naive sums are not in `file_naive` yet: they
    /// are written before the checkpoints are saved and before summaries
    /// are recomputed, not after every insert (a daemon inserting 4-5 times
    /// a second sent as many `file_naive` inserts). With the path each was
    /// last committed at.
    naive_pending: HashMap<FileKey, Arc<str>>,
    /// When summaries were last recomputed (`None`: not yet).
    last_summary: Option<Instant>,
    /// When the last insert of usage rows was acknowledged.
    last_insert: Option<Instant>,
    /// The reader caught up while the previous insert was younger than
    /// [`SinkOptions::min_insert_gap`]: the batch goes out at this moment.
    caught_up_due: Option<Instant>,
    /// After a failed recomputation: no new try before this.
    summary_retry_at: Option<Instant>,
    /// When checkpoints were last written.
    last_save: Instant,
    /// How long that took.
    last_save_took: Duration,
    /// Bytes of rows inserted since freed memory was last given back.
    inserted_since_trim: usize,
    /// The next recomputation covers every session (see
    /// [`SummaryOptions::started_empty`]).
    summarize_all: bool,
}

/// Why an insert did not go through.
enum InsertError {
    /// ClickHouse refused the data; retrying the same rows cannot help.
    Rejected(ChError),
    /// The shutdown deadline passed while retrying.
    Abandoned,
}

impl Sink {
    /// A sink writing through `client`, committing into `store`, deduplicating
    /// against `index` (already loaded with what ClickHouse holds).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rx: Receiver<SinkMsg>,
        client: ChClient,
        runtime: tokio::runtime::Handle,
        store: CheckpointStore,
        index: DedupIndex,
        opts: SinkOptions,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
        dead_letter: DeadLetter,
        health: Arc<Health>,
        ctrl_rx: Receiver<SinkOptions>,
        summary: SummaryOptions,
    ) -> Sink {
        Sink {
            summarize_all: summary.started_empty,
            summary,
            price_cache: HashMap::new(),
            stale_sessions: HashSet::new(),
            naive_pending: HashMap::new(),
            last_summary: None,
            last_insert: None,
            caught_up_due: None,
            summary_retry_at: None,
            last_save: Instant::now(),
            last_save_took: Duration::ZERO,
            inserted_since_trim: 0,
            dead_letter,
            health,
            ctrl_rx,
            rx,
            client,
            runtime,
            store,
            index,
            opts,
            metrics,
            shutdown,
            batch: Batch::default(),
            failing_since: None,
            last_failure_log: None,
            checkpoint_failing: false,
        }
    }

    /// Consumes messages until the reader hangs up or sends `Drain`.
    pub fn run(mut self) -> SinkExit {
        loop {
            self.health.sink_beat();
            if let Some(opts) = self.ctrl_rx.try_iter().last() {
                tracing::info!(
                    event = "batch_settings_changed",
                    max_rows = opts.max_rows,
                    max_bytes = opts.max_bytes,
                    flush_interval_ms = opts.flush_interval.as_millis() as u64,
                    "batch settings changed"
                );
                self.opts = opts;
            }
            self.metrics
                .dedup_keys
                .store(self.index.len() as u64, Relaxed);
            self.metrics
                .dedup_evicted
                .store(self.index.evicted(), Relaxed);
            if self.caught_up_due.is_some_and(|d| Instant::now() >= d) {
                self.caught_up_due = None;
                if !self.flush(FlushReason::CaughtUp) {
                    return SinkExit::Abandoned;
                }
            }
            // Summaries held back by `summary_interval` come due here when
            // no flush brings them.
            if self.summary_due_at().is_some_and(|t| Instant::now() >= t) {
                self.summarize();
            }
            // At most a second between heartbeats, even when idle.
            let timeout = match self.batch.opened {
                Some(t) => self.opts.flush_interval.saturating_sub(t.elapsed()),
                None => Duration::from_secs(1),
            }
            .min(Duration::from_secs(1))
            .min(self.caught_up_due.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            }))
            .min(self.summary_due_at().map_or(Duration::MAX, |t| {
                t.saturating_duration_since(Instant::now())
            }));
            // A batch that waited `flush_interval` goes out even while
            // messages keep arriving (they would otherwise hold it back).
            let aged = self
                .batch
                .opened
                .is_some_and(|t| t.elapsed() >= self.opts.flush_interval);
            if aged && !self.flush(FlushReason::Timer) {
                return SinkExit::Abandoned;
            }
            let received = self.rx.recv_timeout(timeout);
            self.metrics
                .channel_depth
                .store(self.rx.len() as u64, Relaxed);
            if matches!(received, Err(RecvTimeoutError::Timeout))
                && self
                    .batch
                    .opened
                    .is_some_and(|t| t.elapsed() < self.opts.flush_interval)
            {
                continue;
            }
            match received {
                Ok(SinkMsg::Chunk(chunk)) => {
                    self.batch.opened.get_or_insert_with(Instant::now);
                    for bad in &chunk.bad {
                        crate::ops::logging::malformed_line(&chunk.file.path, bad);
                        self.dead_letter.bad_line(&chunk.file.path, bad);
                    }
                    let mut naive = Vec::new();
                    for row in &chunk.rows {
                        self::naive::add_row(&mut naive, row);
                    }
                    for row in chunk.rows {
                        self.accept(row);
                    }
                    for c in chunk.content {
                        self.batch.bytes += std::mem::size_of::<ContentRow>() + c.approx_bytes();
                        self.batch.content.push(c);
                    }
                    // The rows now count against the batch: give the
                    // channel's memory back to the reader.
                    drop(chunk.permit);
                    self.batch.acks.push(Ack::Commit(
                        chunk.file,
                        chunk.end,
                        chunk.end - chunk.start,
                        naive,
                        chunk.state,
                    ));
                    let full = self.batch.rows.len() + self.batch.content.len()
                        >= self.opts.max_rows
                        || self.batch.bytes >= self.opts.max_bytes;
                    if full && !self.flush(FlushReason::Full) {
                        return SinkExit::Abandoned;
                    }
                }
                Ok(SinkMsg::Reset(identity)) => {
                    self.batch.opened.get_or_insert_with(Instant::now);
                    self.batch.acks.push(Ack::Reset(identity));
                }
                Ok(SinkMsg::Forget(key)) => {
                    self.batch.opened.get_or_insert_with(Instant::now);
                    self.batch.acks.push(Ack::Forget(key));
                }
                // More is already queued: the reader caught up and then
                // found more, and that drain ends with its own `CaughtUp`.
                // Flushing now would send one insert per appended line
                // while lines arrive faster than inserts return.
                Ok(SinkMsg::CaughtUp) if !self.rx.is_empty() => {}
                Ok(SinkMsg::CaughtUp) => match self.next_insert_allowed() {
                    Some(at) if !self.batch.rows.is_empty() => {
                        self.caught_up_due.get_or_insert(at);
                    }
                    _ => {
                        self.caught_up_due = None;
                        if !self.flush(FlushReason::CaughtUp) {
                            return SinkExit::Abandoned;
                        }
                    }
                },
                Ok(SinkMsg::Drain) => {
                    return if self.flush(FlushReason::Last) {
                        SinkExit::Drained
                    } else {
                        SinkExit::Abandoned
                    };
                }
                Err(RecvTimeoutError::Timeout) => {
                    if !self.flush(FlushReason::Timer) {
                        return SinkExit::Abandoned;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return if self.flush(FlushReason::Last) {
                        SinkExit::Finished
                    } else {
                        SinkExit::Abandoned
                    };
                }
            }
        }
    }

    fn accept(&mut self, row: UsageRow) {
        let h = key_hash(&row.key);
        match self.index.offer_hash(h, row.version) {
            Offer::Dropped => {
                self.metrics.duplicates_dropped.fetch_add(1, Relaxed);
            }
            offer => {
                if let Some(&i) = self.batch.pos.get(&h) {
                    // The row it beats is still in this batch: replace it.
                    self.metrics.duplicates_dropped.fetch_add(1, Relaxed);
                    self.batch.bytes += row.mem_bytes();
                    self.batch.bytes -= self.batch.rows[i].mem_bytes();
                    self.batch.rows[i] = row;
                } else {
                    if offer == Offer::Supersedes {
                        self.batch.superseding += 1;
                    }
                    if offer == Offer::New && self.summary.lookup.applies_to(row.ts_ms) {
                        self.batch.unchecked.push(self.batch.rows.len());
                    }
                    self.batch.bytes += row.mem_bytes();
                    self.batch.pos.insert(h, self.batch.rows.len());
                    self.batch.rows.push(row);
                }
            }
        }
    }

    /// Asks ClickHouse for the keys of `batch.unchecked` (older than the
    /// index's window) and drops the rows that do not beat what it holds;
    /// the index learns ClickHouse's versions. When the lookup fails, the
    /// rows are inserted anyway: `FINAL` keeps the best version of a key on
    /// read, so totals stay exact (only a superseded row is stored twice).
    fn drop_rows_clickhouse_has(&mut self, batch: &mut Batch) {
        let keys: Vec<&str> = batch
            .unchecked
            .iter()
            .map(|&i| batch.rows[i].key.as_str())
            .collect();
        self.metrics.dedup_lookups.fetch_add(1, Relaxed);
        self.metrics
            .dedup_lookup_keys
            .fetch_add(keys.len() as u64, Relaxed);
        let known = match self.runtime.block_on(self.client.versions_of(&keys)) {
            Ok(k) => k,
            Err(e) => {
                tracing::debug!(event = "dedup_lookup_failed", keys = keys.len(), error = %e, "cannot look up older keys; inserting them (FINAL keeps one per key)");
                return;
            }
        };
        let known: HashMap<String, u64> = known.into_iter().collect();
        let mut keep = vec![true; batch.rows.len()];
        for &i in &batch.unchecked {
            let row = &batch.rows[i];
            if let Some(&v) = known.get(&row.key) {
                self.index.remember(&row.key, v);
                if row.version <= v {
                    keep[i] = false;
                    self.metrics.duplicates_dropped.fetch_add(1, Relaxed);
                }
            }
        }
        let mut i = 0;
        batch.rows.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        batch.unchecked.clear();
    }

    /// Fills in each row's `cost_usd`.
    fn price_rows(&mut self, rows: &mut [UsageRow]) {
        for r in rows {
            let agent = crate::report::Entry::agent_of(&r.agent);
            let model = crate::price::resolve_alias(&r.model, r.ts_ms);
            let price = match self.price_cache.get(model) {
                Some(p) => *p,
                None => {
                    let p = self.summary.prices.lookup_or_warn(model);
                    self.price_cache.insert(model.to_string(), p);
                    p
                }
            }
            .map(|p| if agent.sums_requests() { p.flat() } else { p });
            r.cost_usd = price.map_or(0.0, |p| p.cost(&r.token_use()));
        }
    }

    /// Inserts the batch (retrying) and applies its checkpoint changes.
    /// When the reader has nothing more for now (`reason.settles()`), stale
    /// session summaries are recomputed and checkpoints saved at once.
    /// Returns false when the shutdown deadline passed before ClickHouse
    /// acknowledged.
    fn flush(&mut self, reason: FlushReason) -> bool {
        if self.batch.is_empty() {
            self.batch.opened = None;
            if !self.save_and_summarize(reason) {
                return false;
            }
            self.release_memory_if_quiet();
            return true;
        }
        let mut batch = std::mem::take(&mut self.batch);
        if !batch.unchecked.is_empty() {
            self.drop_rows_clickhouse_has(&mut batch);
        }
        if !batch.rows.is_empty()
            && self
                .insert_usage(&mut batch.rows, batch.superseding)
                .is_none()
        {
            self.batch = batch;
            return false;
        }
        // Abandoned after this point: the usage rows landed but the
        // checkpoints stay behind them; the next start re-reads the bytes,
        // the dedup index drops the rows, and the derived rows replace
        // themselves.
        if !batch.content.is_empty() && self.insert_content(&batch.content).is_none() {
            return false;
        }
        self.apply_acks(std::mem::take(&mut batch.acks));
        self.inserted_since_trim += batch.bytes;
        self.recycle(batch);
        self.save_and_summarize(reason)
    }

    /// Saves the checkpoints and recomputes stale summaries, as far as each
    /// is due after a flush for `reason`, at the same time: the summary
    /// statement runs in ClickHouse while the checkpoints are written and
    /// synced here (at the end of a backfill of 4,500 files, 35–70 ms for
    /// each, one after the other before). False when the shutdown deadline
    /// passed before the naive sums were written (nothing is saved then).
    fn save_and_summarize(&mut self, reason: FlushReason) -> bool {
        // Writes the naive sums first, which both need.
        let summary = self.start_summary_if_due(reason);
        let saved = self.save_checkpoints_if_due(reason);
        if let Some(run) = summary {
            self.finish_summary(run);
        }
        saved.is_some()
    }

    /// Gives the rows' freed memory back to the system once a catch-up is
    /// over: at least [`TRIM_AFTER_BYTES`] of rows inserted since the last
    /// time, and no insert for [`TRIM_WHEN_QUIET`] (called from the idle
    /// sink's heartbeat). Without it, 100,000 files ingested left ~70 MB of
    /// RSS in the allocator's free lists. Not while rows keep flowing: the
    /// next rows take that memory again, and trimming at every catch-up
    /// (every ~1.3 s with 50 sessions appending at volume) cost ~5 % of the
    /// daemon's CPU in pages handed back and faulted in again.
    fn release_memory_if_quiet(&mut self) {
        let quiet = self
            .last_insert
            .is_some_and(|t| t.elapsed() >= TRIM_WHEN_QUIET);
        if !quiet || self.inserted_since_trim < TRIM_AFTER_BYTES {
            return;
        }
        let started = Instant::now();
        crate::ops::memory::release_free_memory();
        tracing::debug!(
            event = "memory_released",
            inserted_bytes = self.inserted_since_trim as u64,
            latency_ms = started.elapsed().as_millis() as u64,
            "freed memory given back after a catch-up"
        );
        self.inserted_since_trim = 0;
    }

    /// When the daemon's stale summaries come due: `summary_interval` after
    /// the last time, and not before a failed try's retry time. `None`:
    /// none are stale, or a backfill (it summarizes when caught up).
    fn summary_due_at(&self) -> Option<Instant> {
        if self.opts.summaries == SummaryPolicy::WhenCaughtUp
            || (self.stale_sessions.is_empty() && self.naive_pending.is_empty())
        {
            return None;
        }
        let at = self
            .last_summary
            .map_or_else(Instant::now, |t| t + self.summary.interval);
        Some(self.summary_retry_at.map_or(at, |r| r.max(at)))
    }

    /// Starts recomputing stale summaries after a flush for `reason` when
    /// the policy says they are due (see [`SummaryPolicy`]); the last flush
    /// always does.
    fn start_summary_if_due(&mut self, reason: FlushReason) -> Option<SummaryRun> {
        let due = match self.opts.summaries {
            SummaryPolicy::WhenCaughtUp => reason.settles(),
            SummaryPolicy::WhileFlowing => {
                reason == FlushReason::Last
                    || self.summary_due_at().is_some_and(|t| Instant::now() >= t)
            }
        };
        if due {
            self.start_summary()
        } else {
            None
        }
    }

    /// Makes the flushed `done` the next batch, emptied, when it is small
    /// enough to keep (see [`RECYCLE_ROWS`]). Nothing was added to the
    /// current batch meanwhile: flushing happens on the sink's thread.
    fn recycle(&mut self, mut done: Batch) {
        if done.rows.capacity() <= RECYCLE_ROWS
            && self.batch.is_empty()
            && self.batch.opened.is_none()
        {
            done.clear();
            self.batch = done;
        }
    }

    /// Prices and inserts a batch's usage rows (retrying), and counts them.
    /// `None`: the shutdown deadline passed first.
    fn insert_usage(&mut self, rows: &mut [UsageRow], superseding: u64) -> Option<()> {
        self.price_rows(rows);
        let started = Instant::now();
        let inserted = self.deliver(rows)?;
        crate::ops::failpoint::hit("after_insert");
        let latency = started.elapsed();
        let bytes: usize = rows.iter().map(UsageRow::approx_bytes).sum();
        let m = &self.metrics;
        m.batch_latency.observe(latency.as_secs_f64());
        m.sizes
            .record(crate::ops::sizes::SizeKind::Batch, bytes as u64);
        m.rows_inserted.fetch_add(inserted as u64, Relaxed);
        m.rows_superseding.fetch_add(superseding, Relaxed);
        m.usage.add(rows);
        m.batches_committed.fetch_add(1, Relaxed);
        m.last_commit_unix_ms
            .store(crate::ops::logging::unix_ms(), Relaxed);
        m.insert_bytes_base.fetch_add(bytes as u64, Relaxed);
        tracing::info!(
            event = "batch_committed",
            rows = inserted,
            bytes,
            latency_ms = latency.as_millis() as u64,
            slow = latency > self.opts.slow_insert,
            "batch committed"
        );
        Some(())
    }

    /// Inserts content estimates (enhanced analysis) and marks their
    /// sessions for a new summary. `None`: the shutdown deadline passed.
    fn insert_content(&mut self, content: &[ContentRow]) -> Option<()> {
        if self.insert_aux(schema::CONTENT, content)? {
            let bytes: usize = content.iter().map(ContentRow::approx_bytes).sum();
            self.metrics
                .insert_bytes_enhanced
                .fetch_add(bytes as u64, Relaxed);
            self.metrics
                .content_rows_inserted
                .fetch_add(content.len() as u64, Relaxed);
            for c in content {
                self.mark_stale(&c.session_id);
            }
        }
        Some(())
    }

    /// Applies a flushed batch's checkpoint changes in order; the files
    /// whose naive sums changed join [`Sink::naive_pending`].
    fn apply_acks(&mut self, acks: Vec<Ack>) {
        for ack in acks {
            match ack {
                Ack::Commit(id, end, bytes, naive, state) => {
                    self.metrics.bytes_committed.fetch_add(bytes, Relaxed);
                    let accepted = self.store.commit(
                        id.key,
                        id.fingerprint,
                        &id.path,
                        end,
                        &naive,
                        state.as_ref(),
                    );
                    if accepted && !naive.is_empty() {
                        self.naive_pending.insert(id.key, id.path);
                    }
                }
                Ack::Reset(id) => self.store.reset(id.key, id.fingerprint, &id.path),
                Ack::Forget(key) => self.store.forget(&key),
            }
        }
    }

    /// Writes the naive sums of the files in `naive_pending` (see
    /// [`Sink::write_naive_sums`]). `None`: the shutdown deadline passed;
    /// they stay pending and the checkpoints are not saved.
    fn write_pending_naive(&mut self) -> Option<()> {
        if self.naive_pending.is_empty() {
            return Some(());
        }
        let pending: Vec<(FileKey, Arc<str>)> = self.naive_pending.drain().collect();
        if self.write_naive_sums(&pending).is_none() {
            self.naive_pending.extend(pending);
            return None;
        }
        Some(())
    }

    /// Writes each touched file's cumulative naive sums, every session of
    /// it (the latest row of a file and session wins in `file_naive`), and
    /// marks those sessions for a new summary. `None`: the shutdown deadline
    /// passed; the checkpoints are then not saved, so the next start
    /// re-reads these bytes and writes the same sums again.
    fn write_naive_sums(&mut self, touched: &[(FileKey, Arc<str>)]) -> Option<()> {
        let version = crate::ops::logging::unix_ms() as u64;
        let mut naive_rows: Vec<FileNaiveRow> = Vec::new();
        for (key, path) in touched {
            let Some(cp) = self.store.get(key) else {
                continue;
            };
            for total in &cp.naive {
                naive_rows.push(FileNaiveRow {
                    session_id: total.session_id.clone(),
                    file_key: format!("{}:{}", key.dev, key.ino),
                    source_file: path.to_string(),
                    lines: total.lines,
                    input_tokens: total.input,
                    output_tokens: total.output,
                    cache_creation_input_tokens: total.cache_creation,
                    cache_read_input_tokens: total.cache_read,
                    version,
                });
            }
        }
        for r in &naive_rows {
            self.mark_stale(&r.session_id);
        }
        if !naive_rows.is_empty() && self.insert_aux(schema::FILE_NAIVE, &naive_rows)? {
            let bytes: usize = naive_rows.iter().map(FileNaiveRow::approx_bytes).sum();
            self.metrics
                .insert_bytes_base
                .fetch_add(bytes as u64, Relaxed);
        }
        Some(())
    }

    fn mark_stale(&mut self, session: &str) {
        if !self.stale_sessions.contains(session) {
            self.stale_sessions.insert(session.to_string());
        }
    }

    /// Inserts rows that derive from the usage rows (`content`, `file_naive`),
    /// retrying like them. `Some(false)`: ClickHouse refused them; they are
    /// left out (logged). `None`: the shutdown deadline passed.
    fn insert_aux<T>(&mut self, table: &'static str, rows: &[T]) -> Option<bool>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + Sync,
    {
        match self.insert_with_retry(table, rows) {
            Ok(()) => Some(true),
            Err(InsertError::Abandoned) => None,
            Err(InsertError::Rejected(e)) => {
                tracing::error!(event = "aux_rows_rejected", table, rows = rows.len(), error = %e, "clickhouse rejected these rows; they are left out");
                Some(false)
            }
        }
    }

    /// Creates missing tables again (someone dropped them under us).
    fn recreate_schema(&self) -> bool {
        match self.runtime.block_on(self.client.ensure_schema()) {
            Ok(()) => {
                tracing::warn!(
                    event = "schema_recreated",
                    "tables were missing and have been created again"
                );
                true
            }
            Err(e) => {
                tracing::warn!(event = "schema_recreate_failed", error = %e, "cannot re-create the schema");
                false
            }
        }
    }

    /// Recomputes the summaries of the sessions changed since the last time.
    /// A failure keeps them stale for the next try; delivery goes on.
    fn summarize(&mut self) {
        if let Some(run) = self.start_summary() {
            self.finish_summary(run);
        }
    }

    /// Writes the pending naive sums and sends the statement that recomputes
    /// the stale summaries; it runs on the runtime until
    /// [`Sink::finish_summary`]. `None`: nothing to do, or not yet.
    fn start_summary(&mut self) -> Option<SummaryRun> {
        if self.summary_retry_at.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        // The sums the summaries join, and the sessions they touch.
        if self.write_pending_naive().is_none() || self.stale_sessions.is_empty() {
            return None;
        }
        self.last_summary = Some(Instant::now());
        let mut sessions: Vec<String> = self.stale_sessions.drain().collect();
        sessions.sort();
        let client = self.client.clone();
        let scope = (!self.summarize_all).then(|| sessions.clone());
        let with_content = self.summary.with_content;
        let task = self.runtime.spawn(async move {
            client
                .summarize_sessions(scope.as_deref(), with_content)
                .await
        });
        Some(SummaryRun {
            sessions,
            started: Instant::now(),
            task,
        })
    }

    /// Waits for a summary statement [`Sink::start_summary`] sent, retries
    /// it once after a recoverable failure, and logs and counts the outcome.
    fn finish_summary(&mut self, run: SummaryRun) {
        let SummaryRun {
            sessions,
            started,
            task,
        } = run;
        let run = |s: &Self| {
            let scope = (!s.summarize_all).then_some(sessions.as_slice());
            s.runtime
                .block_on(s.client.summarize_sessions(scope, s.summary.with_content))
        };
        let mut result = self.runtime.block_on(task).unwrap_or_else(|e| {
            // Panicked or cancelled with the runtime: retried as any
            // failure is.
            Err(ChError::Server {
                code: 0,
                message: format!("summary task failed: {e}"),
            })
        });
        // One retry, as for inserts: after dropping a refused token, or after
        // creating dropped tables again.
        let recovered = match &result {
            Err(e) if e.is_auth() => self.client.invalidate_token("clickhouse refused the token"),
            Err(e) if e.is_missing_schema() => self.recreate_schema(),
            _ => false,
        };
        if recovered {
            result = run(self);
        }
        match result {
            Ok(()) => {
                self.summarize_all = false;
                if self.summary_retry_at.take().is_some() {
                    tracing::info!(
                        event = "summary_recovered",
                        "session summaries can be recomputed again"
                    );
                }
                self.metrics
                    .sessions_summarized
                    .fetch_add(sessions.len() as u64, Relaxed);
                tracing::debug!(
                    event = "sessions_summarized",
                    sessions = sessions.len(),
                    latency_ms = started.elapsed().as_millis() as u64,
                    "session summaries recomputed"
                );
            }
            Err(e) => {
                // Logged once per failure streak; retried every 10 s.
                if self.summary_retry_at.is_none() {
                    tracing::warn!(event = "summary_failed", sessions = sessions.len(), error = %e, "cannot recompute session summaries; will retry");
                }
                self.summary_retry_at = Some(Instant::now() + Duration::from_secs(10));
                self.stale_sessions.extend(sessions);
            }
        }
        self.health.sink_beat();
    }

    /// Saves the checkpoints when the run ends, or when the last save is old
    /// enough for its cost (see [`CHECKPOINT_CPU_SHARE`]). An idle sink
    /// flushes every second, so a pending save waits at most that long
    /// past its due time. The naive sums of the committed files are written
    /// first: a saved offset is never re-read, so what it counted must be
    /// in `file_naive` by then. `None`: the shutdown deadline passed before
    /// they were, and nothing is saved.
    fn save_checkpoints_if_due(&mut self, reason: FlushReason) -> Option<()> {
        let due = CHECKPOINT_SAVE_INTERVAL.max(self.last_save_took.div_f64(CHECKPOINT_CPU_SHARE));
        let kind = if reason == FlushReason::Last {
            // A stopped run leaves one file, the journal folded into it.
            SaveKind::Snapshot
        } else if self.last_save.elapsed() >= due {
            SaveKind::Changes
        } else {
            return Some(());
        };
        self.write_pending_naive()?;
        self.save_checkpoints(kind);
        Some(())
    }

    fn save_checkpoints(&mut self, kind: SaveKind) {
        let started = Instant::now();
        let result = self.store.save(kind);
        if matches!(result, Ok(true)) {
            self.last_save = Instant::now();
            self.last_save_took = started.elapsed();
        }
        match result {
            Ok(saved) => {
                if saved {
                    tracing::debug!(
                        event = "checkpoint_saved",
                        files = self.store.len(),
                        "checkpoints saved"
                    );
                }
                if self.checkpoint_failing {
                    self.checkpoint_failing = false;
                    tracing::info!(
                        event = "checkpoint_recovered",
                        "checkpoints can be saved again"
                    );
                }
            }
            Err(e) => {
                // Offsets stay in memory and are saved by the next flush; on a
                // crash meanwhile the older file is used and the gap re-read.
                if !self.checkpoint_failing {
                    tracing::error!(event = "checkpoint_save_failed", error = %e, "cannot save checkpoints; will retry");
                }
                self.checkpoint_failing = true;
            }
        }
    }

    /// When the next caught-up insert may go out, if that is later than now
    /// (see [`SinkOptions::min_insert_gap`]).
    fn next_insert_allowed(&self) -> Option<Instant> {
        let at = self.last_insert? + self.opts.min_insert_gap;
        (at > Instant::now()).then_some(at)
    }

    /// Inserts `rows`, retrying what can be retried. When ClickHouse rejects
    /// the data, the batch is halved until the rejected rows are isolated; they
    /// go to the dead-letter file, the rest is inserted. Returns how many rows
    /// were inserted, or `None` when the shutdown deadline passed first.
    fn deliver(&mut self, rows: &[UsageRow]) -> Option<usize> {
        match self.insert_with_retry(schema::MESSAGES, rows) {
            Ok(()) => {
                self.last_insert = Some(Instant::now());
                Some(rows.len())
            }
            Err(InsertError::Abandoned) => None,
            Err(InsertError::Rejected(e)) if rows.len() == 1 => {
                let row = &rows[0];
                self.metrics.rows_rejected.fetch_add(1, Relaxed);
                tracing::error!(
                    event = "row_rejected",
                    key = %row.key,
                    file = %row.source_file,
                    offset = row.source_offset,
                    error = %e,
                    "clickhouse rejected a row; written to the dead-letter file"
                );
                self.dead_letter.rejected_row(row, &e.to_string());
                Some(0)
            }
            Err(InsertError::Rejected(e)) => {
                tracing::warn!(event = "batch_rejected", rows = rows.len(), error = %e, "clickhouse rejected a batch; isolating the bad rows");
                let (a, b) = rows.split_at(rows.len() / 2);
                Some(self.deliver(a)? + self.deliver(b)?)
            }
        }
    }

    fn insert_with_retry<T>(&mut self, table: &str, rows: &[T]) -> Result<(), InsertError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + Sync,
    {
        let mut attempt: u32 = 0;
        let mut token_refreshed = false;
        let mut delay = self.opts.retry_initial;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = self.runtime.block_on(self.client.insert_into(
                table,
                rows,
                self.opts.parallel_inserts,
            ));
            self.health.sink_beat();
            match result {
                Ok(()) => {
                    if let Some(since) = self.failing_since.take() {
                        self.metrics.clickhouse_down.store(0, Relaxed);
                        tracing::info!(
                            event = "clickhouse_recovered",
                            attempts = attempt,
                            down_ms = since.elapsed().as_millis() as u64,
                            "inserts succeed again"
                        );
                    }
                    return Ok(());
                }
                Err(e)
                    if (e.is_auth() || e.may_be_early_refusal())
                        && !token_refreshed
                        && self.client.invalidate_token(if e.is_auth() {
                            "clickhouse refused the token"
                        } else {
                            "the insert was cut short; the token may have been refused"
                        }) =>
                {
                    // Refresh once and retry at once; a second refusal is
                    // handled like any failure: logged, retried with backoff,
                    // the batch kept.
                    self.metrics.insert_failures.fetch_add(1, Relaxed);
                    token_refreshed = true;
                    continue;
                }
                Err(e @ ChError::Rejected { .. }) => {
                    self.metrics.insert_failures.fetch_add(1, Relaxed);
                    return Err(InsertError::Rejected(e));
                }
                Err(e) => {
                    self.metrics.insert_failures.fetch_add(1, Relaxed);
                    if e.is_missing_schema() {
                        self.recreate_schema();
                    }
                    let deadline = self
                        .shutdown
                        .triggered_at()
                        .map(|t| t + self.opts.shutdown_timeout);
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        tracing::warn!(event = "insert_abandoned", rows = rows.len(), error = %e, "shutdown deadline passed; unacknowledged rows will be re-read on the next start");
                        return Err(InsertError::Abandoned);
                    }
                    let jitter = 0.8 + 0.4 * crate::ops::logging::jitter_unit();
                    let wait = delay.mul_f64(jitter).min(self.opts.retry_max);
                    self.log_failure(&e, attempt, wait, started.elapsed());
                    let wait = match deadline {
                        Some(d) => wait.min(d.saturating_duration_since(Instant::now())),
                        None => wait,
                    };
                    // Sleep, but wake at once if shutdown starts meanwhile.
                    let _ = self.shutdown.receiver().recv_timeout(wait);
                    self.health.sink_beat();
                    if self.shutdown.is_triggered() && deadline.is_none() {
                        // Shutdown just started: retry right away once more.
                        delay = self.opts.retry_initial;
                        continue;
                    }
                    delay = (delay * 2).min(self.opts.retry_max);
                }
            }
        }
    }

    fn log_failure(&mut self, e: &ChError, attempt: u32, next: Duration, took: Duration) {
        let now = Instant::now();
        if self.failing_since.is_none() {
            self.failing_since = Some(now);
            self.last_failure_log = Some(now);
            self.metrics.clickhouse_down.store(1, Relaxed);
            tracing::warn!(
                event = "insert_failed",
                attempt,
                error = %e,
                retriable = e.is_retriable(),
                latency_ms = took.as_millis() as u64,
                next_retry_ms = next.as_millis() as u64,
                "insert failed; retrying until it succeeds"
            );
            return;
        }
        // Rate-limited: one line per 30 s while the failure lasts.
        if self
            .last_failure_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(30))
        {
            self.last_failure_log = Some(now);
            tracing::warn!(
                event = "insert_failed",
                attempt,
                error = %e,
                retriable = e.is_retriable(),
                latency_ms = took.as_millis() as u64,
                next_retry_ms = next.as_millis() as u64,
                "insert still failing"
            );
        }
    }
}
