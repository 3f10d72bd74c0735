//! What flows from the reader to the sink through the bounded channel.
//!
//! Messages of one file arrive in the order they were read, so the sink can
//! apply checkpoint changes (advance, reset, forget) in that order once the
//! rows before them are acknowledged.

use std::sync::Arc;

use crate::format::claude::content::ContentRow;
use crate::format::{BadLine, LineCounts};
use crate::ingest::budget::Permit;
use crate::ingest::fingerprint::{FileKey, Fingerprint};
use crate::record::UsageRow;

/// Which file, as identified at read time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentity {
    /// Device and inode.
    pub key: FileKey,
    /// Leading-bytes fingerprint.
    pub fingerprint: Fingerprint,
    /// Path it was read at.
    pub path: Arc<str>,
}

/// Complete lines `[start, end)` of one file, parsed.
#[derive(Debug)]
pub struct Chunk {
    /// The file.
    pub file: FileIdentity,
    /// First byte.
    pub start: u64,
    /// One past the last byte (just after a newline).
    pub end: u64,
    /// Usage entries in file order.
    pub rows: Vec<UsageRow>,
    /// Malformed lines.
    pub bad: Vec<BadLine>,
    /// Lines by class.
    pub counts: LineCounts,
    /// Line sizes: (bucket start, lines), see [`crate::ops::sizes`].
    pub line_sizes: Vec<(u64, u64)>,
    /// Content estimates of the chunk's entries (enhanced analysis only).
    pub content: Vec<ContentRow>,
    /// The file's state after `end` (formats whose lines depend on earlier
    /// ones), committed with the offset.
    pub state: Option<crate::format::FileState>,
    /// The channel's memory this chunk holds (see [`crate::ingest::budget`]);
    /// given back when the chunk is dropped.
    pub permit: Permit,
}

impl Chunk {
    /// Bytes the chunk's parsed contents hold in memory.
    pub fn mem_bytes(&self) -> u64 {
        let rows: usize = self.rows.iter().map(UsageRow::mem_bytes).sum();
        let bad: usize = self
            .bad
            .iter()
            .map(|b| std::mem::size_of::<BadLine>() + b.head.capacity())
            .sum();
        let content = self.content.len() * std::mem::size_of::<ContentRow>()
            + self
                .content
                .iter()
                .map(ContentRow::approx_bytes)
                .sum::<usize>();
        (std::mem::size_of::<Chunk>() + rows + bad + content) as u64
    }
}

/// A message to the sink.
#[derive(Debug)]
pub enum SinkMsg {
    /// Parsed lines.
    Chunk(Chunk),
    /// The file was truncated or replaced: its offset restarts at 0.
    Reset(FileIdentity),
    /// The file is gone: drop its checkpoint.
    Forget(FileKey),
    /// The reader has nothing more right now: flush without waiting.
    CaughtUp,
    /// Backfill: everything was read; flush, commit and stop.
    Drain,
}
