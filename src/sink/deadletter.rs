//! The dead-letter file: every line that could not be ingested (malformed, or
//! a row ClickHouse rejected as bad data), as JSONL under the state dir, so
//! nothing bad is silently dropped.
//!
//! Capped in size with rotation (`dead-letter.jsonl`, `.1`, `.2`, …). Records
//! are written when the sink receives them, before the bytes they came from
//! are committed, so a crash can repeat a record (at-least-once); the file is
//! for diagnosis, not counting.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::format::BadLine;
use crate::record::UsageRow;

/// File name inside the state dir.
pub const DEAD_LETTER_FILE: &str = "dead-letter.jsonl";

/// The dead-letter writer (one per process, owned by the sink).
pub struct DeadLetter {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<File>,
    size: u64,
    failing: bool,
}

impl DeadLetter {
    /// Writes into `dir`, rotating at `max_bytes` and keeping `keep` old files.
    pub fn new(dir: &Path, max_bytes: u64, keep: usize) -> DeadLetter {
        let path = dir.join(DEAD_LETTER_FILE);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        DeadLetter {
            path,
            max_bytes,
            keep,
            file: None,
            size,
            failing: false,
        }
    }

    /// The current file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a malformed line.
    pub fn bad_line(&mut self, source_file: &str, bad: &BadLine) {
        self.write(&serde_json::json!({
            "time": crate::timestamp::format_rfc3339_ms(crate::ops::logging::unix_ms()),
            "reason": "malformed_line",
            "kind": bad.kind.as_str(),
            "source_file": source_file,
            "offset": bad.offset,
            "head": bad.head,
        }));
    }

    /// Records a row ClickHouse refused.
    pub fn rejected_row(&mut self, row: &UsageRow, error: &str) {
        self.write(&serde_json::json!({
            "time": crate::timestamp::format_rfc3339_ms(crate::ops::logging::unix_ms()),
            "reason": "rejected_by_clickhouse",
            "error": error,
            "source_file": row.source_file,
            "offset": row.source_offset,
            "row": row,
        }));
    }

    fn write(&mut self, record: &serde_json::Value) {
        let mut line = serde_json::to_vec(record).expect("json");
        line.push(b'\n');
        if let Err(e) = self.append(&line) {
            if !self.failing {
                tracing::error!(event = "dead_letter_write_failed", file = %self.path.display(), error = %e, "cannot write the dead-letter file");
            }
            self.failing = true;
            self.file = None;
        } else {
            self.failing = false;
        }
    }

    fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&self.path)?,
            );
        }
        self.file.as_mut().expect("open").write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let name = |i: usize| PathBuf::from(format!("{}.{i}", self.path.display()));
        let _ = std::fs::remove_file(name(self.keep));
        for i in (1..self.keep).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        if self.keep > 0 {
            std::fs::rename(&self.path, name(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::MalformedKind;

    #[test]
    fn records_and_rotates() {
        let d = tempfile::tempdir().unwrap();
        let mut dl = DeadLetter::new(d.path(), 400, 2);
        let bad = BadLine {
            offset: 7,
            kind: MalformedKind::InvalidJson,
            head: "{\"oops".into(),
        };
        for _ in 0..10 {
            dl.bad_line("/x/a.jsonl", &bad);
        }
        let cur = std::fs::read_to_string(dl.path()).unwrap();
        let rec: serde_json::Value = serde_json::from_str(cur.lines().next().unwrap()).unwrap();
        assert_eq!(rec["kind"], "invalid_json");
        assert_eq!(rec["offset"], 7);
        assert!(std::fs::metadata(dl.path()).unwrap().len() <= 400);
        assert!(d.path().join("dead-letter.jsonl.1").exists());
        assert!(d.path().join("dead-letter.jsonl.2").exists());
        assert!(!d.path().join("dead-letter.jsonl.3").exists());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dl.path()).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
