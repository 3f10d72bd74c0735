//! The statement log: every statement tokenbridge sends to ClickHouse,
//! appended as JSON lines to the file `TOKENBRIDGE_SQL_LOG` names (off when
//! unset). A debugging aid for operators ("what exactly did it send?"), and
//! the input of the compatibility suite: `tests/compat.rs` runs the program
//! against ClickHouse 18.16 with the log on, then replays the log on modern
//! engines (`scripts/chdb_replay.py`) and compares the results.
//!
//! Each line is one statement, in the order sent:
//! - `{"kind":"execute","sql":…}`: DDL, `ALTER`, `INSERT … SELECT`;
//! - `{"kind":"query","sql":…}`: a `SELECT` whose rows are read;
//! - `{"kind":"insert","table":…,"columns":[…],"rows":[{…},…]}`: a RowBinary
//!   insert, with its rows as JSON objects (column → value), so that a
//!   replayer can insert the same rows in a format its engine accepts.
//!
//! Secrets never appear: statements carry no credentials (those travel in
//! HTTP headers), and rows are transcript data.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// Environment variable naming the log file.
pub const ENV: &str = "TOKENBRIDGE_SQL_LOG";

fn log() -> Option<&'static Mutex<std::fs::File>> {
    static LOG: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let path = std::env::var_os(ENV)?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
            .map(Mutex::new)
    })
    .as_ref()
}

/// Whether statements are being logged.
pub fn enabled() -> bool {
    log().is_some()
}

fn write(entry: &serde_json::Value) {
    if let Some(f) = log() {
        let mut line = entry.to_string();
        line.push('\n');
        // One write per line: concurrent statements do not interleave.
        let _ = f.lock().map(|mut f| f.write_all(line.as_bytes()));
    }
}

/// A statement that returns nothing (DDL, `INSERT … SELECT`).
pub fn execute(sql: &str) {
    if enabled() {
        write(&serde_json::json!({"kind": "execute", "sql": sql}));
    }
}

/// A `SELECT` whose rows are read.
pub fn query(sql: &str) {
    if enabled() {
        write(&serde_json::json!({"kind": "query", "sql": sql}));
    }
}

/// A RowBinary insert of `rows` into `table`.
pub fn insert<T: serde::Serialize>(table: &str, columns: &[&str], rows: &[T]) {
    if enabled() {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or(serde_json::Value::Null))
            .collect();
        write(&serde_json::json!({
            "kind": "insert",
            "table": table,
            "columns": columns,
            "rows": rows,
        }));
    }
}
