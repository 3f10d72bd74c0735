//! Counters shared by the reader and the sink: what was read, classified,
//! inserted and committed. Lock-free; read by the backfill summary, logs, and
//! the HTTP endpoint.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::parse::MalformedKind;

/// Pipeline counters. Every field counts since process start.
#[derive(Debug, Default)]
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
