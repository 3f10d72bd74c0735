//! Counters shared by the reader and the sink: what was read, classified,
//! inserted and committed. Lock-free; read by the backfill summary, logs, and
//! the HTTP endpoint.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::format::MalformedKind;
use crate::ops::sizes::SizeBuckets;

/// Pipeline counters. Every field counts since process start.
#[derive(Debug)]
pub struct Metrics {
    /// Bytes of complete lines read from source files.
    pub bytes_read: AtomicU64,
    /// Usage entries seen.
    pub lines_usage: AtomicU64,
    /// Valid entries without usage.
    pub lines_other: AtomicU64,
    /// Blank lines.
    pub lines_blank: AtomicU64,
    /// Malformed lines by [`MalformedKind::index`].
    pub lines_malformed: [AtomicU64; 9],
    /// Rows ClickHouse acknowledged.
    pub rows_inserted: AtomicU64,
    /// Rows that replaced an earlier, smaller entry of their key.
    pub rows_superseding: AtomicU64,
    /// Entries dropped because their key already had an equal or better one.
    pub duplicates_dropped: AtomicU64,
    /// Acknowledged inserts.
    pub batches_committed: AtomicU64,
    /// Failed insert attempts.
    pub insert_failures: AtomicU64,
    /// Rows ClickHouse rejected as bad data (sent to the dead-letter file).
    pub rows_rejected: AtomicU64,
    /// Files currently tracked by the reader.
    pub files_tracked: AtomicU64,
    /// Files discovered since start.
    pub files_discovered: AtomicU64,
    /// Files opened by the reader (to look at, fingerprint or read them).
    /// Idle, it stays flat: an unchanged file is only `stat`ed by scans.
    pub file_opens: AtomicU64,
    /// Full scans of every watched folder (start-up, timer, overflow).
    pub scans_full: AtomicU64,
    /// Looks at the paths named by wake-ups (and new folders' contents).
    pub scans_paths: AtomicU64,
    /// Wake-ups the watcher sent the reader.
    pub wakeups: AtomicU64,
    /// Reader passes started by wake-ups: at most one per pass gap
    /// (`batch.min_insert_gap_ms`) while files keep changing.
    pub wake_passes: AtomicU64,
    /// Wake-ups not queued because the queue was full (the paths already
    /// queued and the periodic rescan cover them).
    pub wakeups_dropped: AtomicU64,
    /// Notifications that cannot mean new data (opens, reads, read-only
    /// closes, attribute changes), dropped without waking the reader.
    pub watch_events_ignored: AtomicU64,
    /// Per-file read errors (permission, vanished, …).
    pub file_errors: AtomicU64,
    /// Unix ms of the last acknowledged insert (0 = none yet).
    pub last_commit_unix_ms: AtomicI64,
    /// Bytes the reader still has to read (sum over tracked files).
    pub backlog_bytes: AtomicU64,
    /// Bytes to read that the first full scan found (what a backfill has
    /// to do); set once that scan is done.
    pub initial_backlog_bytes: AtomicU64,
    /// 1 once the first full scan is done.
    pub initial_scan_done: AtomicU64,
    /// 1 while the last insert attempt failed.
    pub clickhouse_down: AtomicU64,
    /// Bytes whose rows ClickHouse acknowledged (checkpoints advanced over them).
    pub bytes_committed: AtomicU64,
    /// Chunks waiting in the channel to the sink.
    pub channel_depth: AtomicU64,
    /// Bytes of parsed rows waiting in the channel (see [`crate::ingest::budget`]).
    pub channel_bytes: AtomicU64,
    /// Keys in the dedup index.
    pub dedup_keys: AtomicU64,
    /// Keys the dedup index forgot because of its limit.
    pub dedup_evicted: AtomicU64,
    /// Lookups of older keys in ClickHouse (one per batch that had some).
    pub dedup_lookups: AtomicU64,
    /// Keys looked up in ClickHouse.
    pub dedup_lookup_keys: AtomicU64,
    /// Nanoseconds spent parsing lines (the base path, without estimation).
    pub parse_ns_base: AtomicU64,
    /// Nanoseconds spent estimating content (enhanced analysis).
    pub parse_ns_enhanced: AtomicU64,
    /// Approximate bytes of base rows inserted (`messages`, `file_naive`).
    pub insert_bytes_base: AtomicU64,
    /// Approximate bytes of enhanced rows inserted (`content`).
    pub insert_bytes_enhanced: AtomicU64,
    /// Content rows ClickHouse acknowledged.
    pub content_rows_inserted: AtomicU64,
    /// Session summaries recomputed.
    pub sessions_summarized: AtomicU64,
    /// Line and batch sizes by bucket.
    pub sizes: SizeBuckets,
    /// Latency of acknowledged inserts, seconds.
    pub batch_latency: prometheus_client::metrics::histogram::Histogram,
    /// Tokens and cost acknowledged, by agent and model (see
    /// [`crate::ops::usage`]).
    pub usage: crate::ops::usage::UsageCounters,
    /// Each budget's use in its current period, as a fraction of its limit.
    pub budgets: std::sync::Mutex<std::collections::BTreeMap<String, f64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            usage: crate::ops::usage::UsageCounters::default(),
            budgets: Default::default(),
            bytes_read: AtomicU64::default(),
            parse_ns_base: AtomicU64::default(),
            parse_ns_enhanced: AtomicU64::default(),
            insert_bytes_base: AtomicU64::default(),
            insert_bytes_enhanced: AtomicU64::default(),
            content_rows_inserted: AtomicU64::default(),
            sessions_summarized: AtomicU64::default(),
            lines_usage: AtomicU64::default(),
            lines_other: AtomicU64::default(),
            lines_blank: AtomicU64::default(),
            lines_malformed: Default::default(),
            rows_inserted: AtomicU64::default(),
            rows_superseding: AtomicU64::default(),
            duplicates_dropped: AtomicU64::default(),
            batches_committed: AtomicU64::default(),
            insert_failures: AtomicU64::default(),
            rows_rejected: AtomicU64::default(),
            files_tracked: AtomicU64::default(),
            files_discovered: AtomicU64::default(),
            file_opens: AtomicU64::default(),
            scans_full: AtomicU64::default(),
            scans_paths: AtomicU64::default(),
            wakeups: AtomicU64::default(),
            wake_passes: AtomicU64::default(),
            wakeups_dropped: AtomicU64::default(),
            watch_events_ignored: AtomicU64::default(),
            file_errors: AtomicU64::default(),
            last_commit_unix_ms: AtomicI64::default(),
            backlog_bytes: AtomicU64::default(),
            initial_backlog_bytes: AtomicU64::default(),
            initial_scan_done: AtomicU64::default(),
            clickhouse_down: AtomicU64::default(),
            bytes_committed: AtomicU64::default(),
            channel_depth: AtomicU64::default(),
            channel_bytes: AtomicU64::default(),
            dedup_keys: AtomicU64::default(),
            dedup_evicted: AtomicU64::default(),
            dedup_lookups: AtomicU64::default(),
            dedup_lookup_keys: AtomicU64::default(),
            sizes: SizeBuckets::default(),
            batch_latency: prometheus_client::metrics::histogram::Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        }
    }
}

impl Metrics {
    /// Counts one malformed line.
    pub fn malformed(&self, kind: MalformedKind) {
        self.lines_malformed[kind.index()].fetch_add(1, Relaxed);
    }

    /// Total malformed lines.
    pub fn malformed_total(&self) -> u64 {
        self.lines_malformed.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Bytes behind the checkpoints: not yet read, plus read but not yet
    /// acknowledged by ClickHouse.
    pub fn bytes_behind(&self) -> u64 {
        let uncommitted = self
            .bytes_read
            .load(Relaxed)
            .saturating_sub(self.bytes_committed.load(Relaxed));
        uncommitted + self.backlog_bytes.load(Relaxed)
    }

    /// Seconds since the last acknowledged insert; `None` before the first.
    pub fn seconds_since_last_commit(&self) -> Option<f64> {
        let last = self.last_commit_unix_ms.load(Relaxed);
        (last > 0).then(|| (crate::ops::logging::unix_ms() - last) as f64 / 1000.0)
    }
}

/// CPU time the calling thread has used, nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What enhanced analysis costs next to the base path, from the counters:
/// parsing CPU per MB read, and bytes inserted. With analysis off the
/// enhanced figures are 0 and the base ones are what turning it on adds to.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisCost {
    /// MB (10^6 bytes) of lines read.
    pub megabytes: f64,
    /// CPU ms per MB spent parsing and classifying (base path).
    pub base_cpu_ms_per_mb: f64,
    /// CPU ms per MB spent estimating content (enhanced path, on top).
    pub enhanced_cpu_ms_per_mb: f64,
    /// Approximate bytes of `messages` and `file_naive` rows inserted.
    pub base_insert_bytes: u64,
    /// Approximate bytes of `content` rows inserted.
    pub enhanced_insert_bytes: u64,
}

impl Metrics {
    /// The current [`AnalysisCost`].
    pub fn analysis_cost(&self) -> AnalysisCost {
        let mb = self.bytes_read.load(Relaxed) as f64 / 1e6;
        let per_mb = |ns: u64| {
            if mb > 0.0 {
                ns as f64 / 1e6 / mb
            } else {
                0.0
            }
        };
        AnalysisCost {
            megabytes: mb,
            base_cpu_ms_per_mb: per_mb(self.parse_ns_base.load(Relaxed)),
            enhanced_cpu_ms_per_mb: per_mb(self.parse_ns_enhanced.load(Relaxed)),
            base_insert_bytes: self.insert_bytes_base.load(Relaxed),
            enhanced_insert_bytes: self.insert_bytes_enhanced.load(Relaxed),
        }
    }

    /// Logs [`Metrics::analysis_cost`] as `analysis_cost`.
    pub fn log_analysis_cost(&self) {
        let c = self.analysis_cost();
        tracing::info!(
            event = "analysis_cost",
            megabytes = c.megabytes,
            base_cpu_ms_per_mb = c.base_cpu_ms_per_mb,
            enhanced_cpu_ms_per_mb = c.enhanced_cpu_ms_per_mb,
            base_insert_bytes = c.base_insert_bytes,
            enhanced_insert_bytes = c.enhanced_insert_bytes,
            "what enhanced analysis costs next to the base path"
        );
    }
}
