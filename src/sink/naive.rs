//! Session summaries and the naive figures they are compared with.
//!
//! A naive counter sums every usage line it sees. What it would get is kept
//! per file and session as the file is read: the sink adds each committed
//! chunk's lines to the file's checkpoint (so a restart resumes the sums with
//! the offset, never counting a line twice), and writes the cumulative sums
//! to `file_naive` with the commit. The `sessions` table is then recomputed
//! in ClickHouse for the sessions each commit touched
//! ([`crate::ch::schema::session_summary_insert`]).

use crate::record::UsageRow;

/// Usage lines of one session in one file, summed without deduplication.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NaiveSums {
    /// The lines' session.
    pub session_id: String,
    /// Usage lines.
    pub lines: u64,
    /// Σ input_tokens.
    pub input: u64,
    /// Σ output_tokens.
    pub output: u64,
    /// Σ cache_creation_input_tokens.
    pub cache_creation: u64,
    /// Σ cache_read_input_tokens.
    pub cache_read: u64,
}

impl NaiveSums {
    fn add(&mut self, o: &NaiveSums) {
        self.lines += o.lines;
        self.input += o.input;
        self.output += o.output;
        self.cache_creation += o.cache_creation;
        self.cache_read += o.cache_read;
    }
}

/// Adds one usage line to per-session sums (a file rarely has more than a
/// couple of sessions, so a list beats a map).
pub fn add_row(sums: &mut Vec<NaiveSums>, row: &UsageRow) {
    let i = match sums.iter().position(|s| *s.session_id == *row.session_id) {
        Some(i) => i,
        None => {
            sums.push(NaiveSums {
                session_id: row.session_id.to_string(),
                ..NaiveSums::default()
            });
            sums.len() - 1
        }
    };
    let s = &mut sums[i];
    s.lines += 1;
    s.input += row.input_tokens;
    s.output += row.output_tokens;
    s.cache_creation += row.cache_creation_input_tokens;
    s.cache_read += row.cache_read_input_tokens;
}

/// Adds `delta` into `into`, session by session.
pub fn merge(into: &mut Vec<NaiveSums>, delta: &[NaiveSums]) {
    for d in delta {
        match into.iter_mut().find(|s| s.session_id == d.session_id) {
            Some(s) => s.add(d),
            None => into.push(d.clone()),
        }
    }
}

/// A row of `file_naive`: one file's cumulative naive sums for one session.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Serialize, serde::Deserialize)]
pub struct FileNaiveRow {
    /// The session.
    pub session_id: String,
    /// The file's identity, `dev:inode`.
    pub file_key: String,
    /// Its path when last committed.
    pub source_file: String,
    /// Usage lines.
    pub lines: u64,
    /// Σ input_tokens.
    pub input_tokens: u64,
    /// Σ output_tokens.
    pub output_tokens: u64,
    /// Σ cache_creation_input_tokens.
    pub cache_creation_input_tokens: u64,
    /// Σ cache_read_input_tokens.
    pub cache_read_input_tokens: u64,
    /// Commit time, Unix ms: the latest sums of a file and session win.
    pub version: u64,
}

impl FileNaiveRow {
    /// Approximate RowBinary bytes.
    pub fn approx_bytes(&self) -> usize {
        3 + self.session_id.len() + self.file_key.len() + self.source_file.len() + 6 * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(session: &str, out: u64) -> UsageRow {
        UsageRow {
            session_id: session.into(),
            input_tokens: 1,
            output_tokens: out,
            cache_creation_input_tokens: 2,
            cache_read_input_tokens: 3,
            ..UsageRow::default()
        }
    }

    #[test]
    fn sums_per_session_and_merges() {
        let mut a = Vec::new();
        add_row(&mut a, &row("s1", 5));
        add_row(&mut a, &row("s1", 7));
        add_row(&mut a, &row("s2", 1));
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].lines, a[0].output, a[0].cache_read), (2, 12, 6));
        let mut total = vec![NaiveSums {
            session_id: "s2".into(),
            lines: 10,
            ..NaiveSums::default()
        }];
        merge(&mut total, &a);
        assert_eq!(total.len(), 2);
        assert_eq!((total[0].session_id.as_str(), total[0].lines), ("s2", 11));
        assert_eq!((total[1].session_id.as_str(), total[1].output), ("s1", 12));
    }
}
