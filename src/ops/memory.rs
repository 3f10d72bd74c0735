//! The daemon's memory bound, by design: every place that holds data in
//! proportion to its input has a limit from the config, and this file adds
//! them up. docs/performance.md prints the formula; `tests/dedup_scale.rs` checks a
//! real run's peak RSS against it with a CPU hog running beside it.
//!
//! What is not bounded here: the operating system's page cache (not the
//! process's memory) and ClickHouse's own memory (another process).

use crate::config::Config;
use crate::record::UsageRow;

/// Bytes one dedup key costs at most: a 16-byte hash and an 8-byte version
/// in a hash table that is at least 7/8 … 7/16 full, two generations (see
/// [`crate::sink::dedup::DedupIndex`]), plus the transient copy while a table
/// grows.
pub const INDEX_BYTES_PER_KEY: u64 = 64;

/// Bytes one parsed row costs at most when its line is as short as a usage
/// line can be (about 100 bytes): the row itself plus its own strings.
const ROW_BYTES: u64 = std::mem::size_of::<UsageRow>() as u64 + 128;
/// The shortest line that can carry usage.
const MIN_USAGE_LINE: u64 = 100;

/// Baseline: code, runtime, thread stacks, allocator arenas, the HTTP
/// endpoint, price table, measured on an idle daemon (~20 MB) with room.
pub const BASE_BYTES: u64 = 40 << 20;

/// Bytes each tracked file costs (its state, path, checkpoint and naive
/// sums per session).
pub const PER_FILE_BYTES: u64 = 2048;

/// The terms of the bound, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryBound {
    /// [`BASE_BYTES`].
    pub base: u64,
    /// `dedup.max_keys × INDEX_BYTES_PER_KEY`.
    pub index: u64,
    /// `batch.channel_max_bytes` plus one chunk (a chunk larger than the
    /// budget passes when the channel is empty).
    pub channel: u64,
    /// `batch.max_bytes` plus one chunk (the limit is checked after a whole
    /// chunk is added), plus the batch vector's growth slack.
    pub batch: u64,
    /// Insert buffers: `batch.parallel_inserts × 2 MiB`.
    pub insert: u64,
    /// Files being read at once (cores + 2), each with a read buffer of
    /// `watch.read_chunk_bytes` (or one line up to `watch.max_line_bytes`
    /// when the file has longer lines) and the chunk parsed from it.
    pub reader: u64,
    /// `files × PER_FILE_BYTES`.
    pub files: u64,
}

impl MemoryBound {
    /// The bound for `config`, `files` tracked files whose longest line is
    /// `longest_line` bytes (pass `watch.max_line_bytes` when unknown).
    pub fn of(config: &Config, files: u64, longest_line: u64) -> MemoryBound {
        let chunk_rows = config.watch.read_chunk_bytes as u64 / MIN_USAGE_LINE + 1;
        let chunk = chunk_rows * ROW_BYTES;
        let batch_rows = config.batch.max_rows as u64;
        let in_flight = rayon::current_num_threads() as u64 + 2;
        let read_buf = (config.watch.read_chunk_bytes as u64)
            .max(longest_line.min(config.watch.max_line_bytes as u64))
            + simd_json::INPUT_PADDING as u64;
        MemoryBound {
            base: BASE_BYTES,
            index: config.dedup.max_keys as u64 * INDEX_BYTES_PER_KEY,
            channel: config.batch.channel_max_bytes + chunk,
            batch: config.batch.max_bytes as u64
                + chunk
                + batch_rows.min(config.batch.max_bytes as u64 / ROW_BYTES + chunk_rows)
                    * std::mem::size_of::<UsageRow>() as u64,
            insert: config.batch.parallel_inserts as u64 * (2 << 20),
            // A read buffer per task, kept per thread between tasks.
            reader: in_flight * (2 * read_buf + chunk),
            files: files * PER_FILE_BYTES,
        }
    }

    /// The sum of the terms.
    pub fn total(&self) -> u64 {
        self.base + self.index + self.channel + self.batch + self.insert + self.reader + self.files
    }
}

/// Returns memory the allocator holds free to the operating system (glibc
/// keeps freed chunks in its arenas; a long-running daemon that just
/// ingested a backlog would otherwise carry that peak for months).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_follows_the_settings() {
        let path = std::path::Path::new("/etc/tb/config.toml");
        let small = Config::from_toml(
            "[dedup]\nmax_keys = 200000\n[batch]\nchannel_max_bytes = 8388608\n",
            path,
        )
        .unwrap();
        let big = Config::from_toml("", path).unwrap();
        let s = MemoryBound::of(&small, 20, 300);
        let b = MemoryBound::of(&big, 20, 300);
        assert_eq!(s.index, 200_000 * INDEX_BYTES_PER_KEY);
        assert!(s.channel < b.channel);
        assert!(s.total() < b.total());
        // A file with a long line needs a buffer that holds it.
        assert!(MemoryBound::of(&small, 20, 50 << 20).reader > s.reader);
        assert_eq!(
            s.total(),
            s.base + s.index + s.channel + s.batch + s.insert + s.reader + s.files
        );
    }
}
