//! All DDL in one place: the database, the tables, their engines, and the
//! additive migration that brings an older table up to date.
//!
//! The SQL stays inside what ClickHouse 18.16 and 23.x–26.x all accept: no
//! `DateTime64`, no `LowCardinality`, no `ADD COLUMN IF NOT EXISTS` (missing
//! columns are found through `system.columns` instead).

/// The per-message usage table: one logical row per dedup key.
pub const MESSAGES: &str = "messages";

/// Table engine family. A later cluster mode swaps this for the replicated
/// variant without touching the column lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Single server: `ReplacingMergeTree(version)`.
    Single,
}

/// Columns of `messages` in insert order (matches [`crate::record::UsageRow`]),
/// then columns filled by defaults.
pub const MESSAGE_COLUMNS: &[(&str, &str)] = &[
    ("key", "String"),
    ("version", "UInt64"),
    ("ts", "DateTime('UTC')"),
    ("ts_ms", "Int64"),
    ("session_id", "String"),
    ("project", "String"),
    ("is_sidechain", "UInt8"),
    ("agent_id", "String"),
    ("model", "String"),
    ("message_id", "String"),
    ("request_id", "String"),
    ("entry_type", "String"),
    ("input_tokens", "UInt64"),
    ("output_tokens", "UInt64"),
    ("cache_creation_input_tokens", "UInt64"),
    ("cache_creation_5m_tokens", "UInt64"),
    ("cache_creation_1h_tokens", "UInt64"),
    ("cache_read_input_tokens", "UInt64"),
    ("web_search_requests", "UInt32"),
    ("web_fetch_requests", "UInt32"),
    ("service_tier", "String"),
    ("cwd", "String"),
    ("git_branch", "String"),
    ("cc_version", "String"),
    ("source_file", "String"),
    ("source_offset", "UInt64"),
    ("ingested_at", "DateTime('UTC') DEFAULT now()"),
];

/// `CREATE DATABASE IF NOT EXISTS`.
pub fn create_database(db: &str) -> String {
    format!("CREATE DATABASE IF NOT EXISTS {db}")
}

/// `CREATE TABLE IF NOT EXISTS` for the messages table.
///
/// No `PARTITION BY`: ReplacingMergeTree only collapses rows within one
/// partition, and the winner of a key must replace its loser wherever they
/// landed. `ORDER BY key` makes the key the replacing key.
pub fn create_messages(db: &str, engine: Engine) -> String {
    let cols = MESSAGE_COLUMNS
        .iter()
        .map(|(n, t)| format!("    {n} {t}"))
        .collect::<Vec<_>>()
        .join(",\n");
    let engine = match engine {
        Engine::Single => "ReplacingMergeTree(version)",
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.{MESSAGES} (\n{cols}\n) ENGINE = {engine} ORDER BY key"
    )
}

/// `ALTER TABLE … ADD COLUMN` statements for columns `existing` lacks.
pub fn missing_message_columns(db: &str, existing: &[String]) -> Vec<String> {
    MESSAGE_COLUMNS
        .iter()
        .filter(|(n, _)| !existing.iter().any(|e| e == n))
        .map(|(n, t)| format!("ALTER TABLE {db}.{MESSAGES} ADD COLUMN {n} {t}"))
        .collect()
}

/// Exact totals over the deduplicated rows.
pub fn totals_query(db: &str) -> String {
    format!(
        "SELECT sum(input_tokens), sum(output_tokens), sum(cache_creation_input_tokens), \
         sum(cache_read_input_tokens), count() FROM {db}.{MESSAGES} FINAL"
    )
}

/// Best version per key, the `limit` most recently active keys, for the
/// start-up dedup index load.
pub fn known_versions_query(db: &str, limit: usize) -> String {
    format!(
        "SELECT key, max(version) FROM {db}.{MESSAGES} GROUP BY key ORDER BY max(ts_ms) DESC LIMIT {limit}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_mentions_every_column_once() {
        let sql = create_messages("tb", Engine::Single);
        for (n, _) in MESSAGE_COLUMNS {
            assert_eq!(sql.matches(&format!("    {n} ")).count(), 1, "{n}");
        }
        assert!(sql.contains("ReplacingMergeTree(version) ORDER BY key"));
        assert!(!sql.contains("PARTITION"));
    }

    #[test]
    fn migration_adds_only_missing_columns() {
        let have: Vec<String> = MESSAGE_COLUMNS[..3]
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        let alters = missing_message_columns("tb", &have);
        assert_eq!(alters.len(), MESSAGE_COLUMNS.len() - 3);
        assert!(alters[0].contains("ADD COLUMN ts_ms Int64"));
        let all: Vec<String> = MESSAGE_COLUMNS.iter().map(|(n, _)| n.to_string()).collect();
        assert!(missing_message_columns("tb", &all).is_empty());
    }
}
