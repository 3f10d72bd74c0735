//! Size tracking: line and batch sizes rounded into buckets — 100 bytes up to
//! 10 KB, then 1 KB up to 100 KB, 10 KB up to 1 MB, 100 KB up to 10 MB, 1 MB
//! above — counted for `/metrics`, with a `size_bucket_new` event the first
//! time a bucket is seen.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The bucket `[lo, hi)` a size falls into.
pub fn bucket(bytes: u64) -> (u64, u64) {
    let width = match bytes {
        0..10_000 => 100,
        10_000..100_000 => 1_000,
        100_000..1_000_000 => 10_000,
        1_000_000..10_000_000 => 100_000,
        _ => 1_000_000,
    };
    let lo = bytes / width * width;
    (lo, lo + width)
}

/// What was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SizeKind {
    /// A line of a transcript.
    Line,
    /// An insert batch (approximate RowBinary bytes).
    Batch,
}

impl SizeKind {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SizeKind::Line => "line",
            SizeKind::Batch => "batch",
        }
    }
}

/// Counts per bucket.
#[derive(Debug, Default)]
pub struct SizeBuckets {
    counts: Mutex<BTreeMap<(SizeKind, u64), u64>>,
}

impl SizeBuckets {
    /// Adds `n` observations of the bucket starting at `lo`; logs the first one.
    pub fn add(&self, kind: SizeKind, lo: u64, n: u64) {
        let mut c = self.counts.lock().expect("size buckets");
        let entry = c.entry((kind, lo)).or_insert(0);
        if *entry == 0 {
            let (_, hi) = bucket(lo);
            tracing::info!(
                event = "size_bucket_new",
                kind = kind.as_str(),
                bucket_min_bytes = lo,
                bucket_max_bytes = hi,
                "first time this size bucket is seen"
            );
        }
        *entry += n;
    }

    /// Records one size.
    pub fn record(&self, kind: SizeKind, bytes: u64) {
        self.add(kind, bucket(bytes).0, 1);
    }

    /// All counts.
    pub fn snapshot(&self) -> Vec<(SizeKind, u64, u64, u64)> {
        self.counts
            .lock()
            .expect("size buckets")
            .iter()
            .map(|(&(k, lo), &n)| (k, lo, bucket(lo).1, n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_100_bytes_up_to_10kb_then_coarser() {
        assert_eq!(bucket(0), (0, 100));
        assert_eq!(bucket(99), (0, 100));
        assert_eq!(bucket(250), (200, 300));
        assert_eq!(bucket(9_999), (9_900, 10_000));
        assert_eq!(bucket(10_000), (10_000, 11_000));
        assert_eq!(bucket(123_456), (120_000, 130_000));
        assert_eq!(bucket(2_345_678), (2_300_000, 2_400_000));
        assert_eq!(bucket(45_000_000), (45_000_000, 46_000_000));
    }

    #[test]
    fn counts_accumulate() {
        let s = SizeBuckets::default();
        s.record(SizeKind::Line, 150);
        s.record(SizeKind::Line, 170);
        s.add(SizeKind::Batch, 0, 3);
        assert_eq!(
            s.snapshot(),
            vec![(SizeKind::Line, 100, 200, 2), (SizeKind::Batch, 0, 100, 3)]
        );
    }
}
