//! Counters shared by the reader and the sink: what was read, classified,
//! inserted and committed. Lock-free; read by the backfill summary, logs, and
//! the HTTP endpoint.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::parse::MalformedKind;
use crate::sizes::SizeBuckets;

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
    /// Per-file read errors (permission, vanished, …).
    pub file_errors: AtomicU64,
    /// Unix ms of the last acknowledged insert (0 = none yet).
    pub last_commit_unix_ms: AtomicI64,
    /// Bytes the reader still has to read (sum over tracked files).
    pub backlog_bytes: AtomicU64,
    /// 1 while the last insert attempt failed.
    pub clickhouse_down: AtomicU64,
    /// Bytes whose rows ClickHouse acknowledged (checkpoints advanced over them).
    pub bytes_committed: AtomicU64,
    /// Chunks waiting in the channel to the sink.
    pub channel_depth: AtomicU64,
    /// Keys in the dedup index.
    pub dedup_keys: AtomicU64,
    /// Keys the dedup index forgot because of its limit.
    pub dedup_evicted: AtomicU64,
    /// Line and batch sizes by bucket.
    pub sizes: SizeBuckets,
    /// Latency of acknowledged inserts, seconds.
    pub batch_latency: prometheus_client::metrics::histogram::Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            bytes_read: AtomicU64::default(),
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
            file_errors: AtomicU64::default(),
            last_commit_unix_ms: AtomicI64::default(),
            backlog_bytes: AtomicU64::default(),
            clickhouse_down: AtomicU64::default(),
            bytes_committed: AtomicU64::default(),
            channel_depth: AtomicU64::default(),
            dedup_keys: AtomicU64::default(),
            dedup_evicted: AtomicU64::default(),
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
}
