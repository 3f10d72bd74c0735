//! All DDL in one place: the database, the tables, their engines (one server,
//! or replicated local tables behind `Distributed` ones on a cluster), and
//! the additive migration that brings an older table up to date.
//!
//! The SQL stays inside what ClickHouse 18.16 and 23.x–26.x all accept: no
//! `DateTime64`, no `LowCardinality`, no `ADD COLUMN IF NOT EXISTS` (missing
//! columns are found through `system.columns` instead).

/// The per-message usage table: one logical row per dedup key.
pub const MESSAGES: &str = "messages";
/// Enhanced analysis: content estimates, one logical row per entry.
pub const CONTENT: &str = "content";
/// What summing every usage line gives, per file and session (cumulative).
pub const FILE_NAIVE: &str = "file_naive";
/// One logical row per session: totals, cost, accuracy figures.
pub const SESSIONS: &str = "sessions";

/// Where the tables live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server: each table is a `ReplacingMergeTree(version)`.
    Single,
    /// A cluster: each table is a `ReplicatedReplacingMergeTree` on every
    /// node (`<name>_local`) with a `Distributed` table of the plain name
    /// over them, created and altered `ON CLUSTER`. Reads and inserts use
    /// the plain name, so every other statement is the same in both.
    Cluster(ClusterSpec),
}

/// `[clickhouse] cluster`: a cluster of the servers' `remote_servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// The cluster's name in `remote_servers`.
    pub name: String,
    /// ZooKeeper path prefix of the replicated tables, with the `{shard}`
    /// macro; a table's path is `<prefix>/<database>/<table>`.
    pub zookeeper_path: String,
}

/// Default [`ClusterSpec::zookeeper_path`]: ClickHouse's documented layout.
pub const DEFAULT_ZOOKEEPER_PATH: &str = "/clickhouse/tables/{shard}";

/// Suffix of a table's per-node part on a cluster.
pub const LOCAL_SUFFIX: &str = "_local";

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
    ("cost_usd", "Float64"),
    // Added with the second agent; rows written before read as Claude Code's.
    ("agent", "String DEFAULT 'claude'"),
    ("reasoning_tokens", "UInt64"),
    ("recorded_cost_usd", "Nullable(Float64)"),
    // Added for fleets: where and whose (rows written before read as '').
    ("host", "String"),
    ("user", "String"),
    ("ingested_at", "DateTime('UTC') DEFAULT now()"),
];

/// Columns of `content` (matches [`crate::format::claude::content::ContentRow`]).
pub const CONTENT_COLUMNS: &[(&str, &str)] = &[
    ("session_id", "String"),
    ("key", "String"),
    ("ts", "DateTime('UTC')"),
    ("is_sidechain", "UInt8"),
    ("user_prompt_tokens", "UInt32"),
    ("tool_result_tokens", "UInt32"),
    ("assistant_text_tokens", "UInt32"),
    ("thinking_tokens", "UInt32"),
    ("tool_use_tokens", "UInt32"),
    ("system_tokens", "UInt32"),
];

/// Columns of `file_naive` (matches [`crate::sink::naive::FileNaiveRow`]).
pub const FILE_NAIVE_COLUMNS: &[(&str, &str)] = &[
    ("session_id", "String"),
    ("file_key", "String"),
    ("source_file", "String"),
    ("lines", "UInt64"),
    ("input_tokens", "UInt64"),
    ("output_tokens", "UInt64"),
    ("cache_creation_input_tokens", "UInt64"),
    ("cache_read_input_tokens", "UInt64"),
    ("version", "UInt64"),
];

/// Columns of `sessions`, in the order [`session_summary_insert`] fills them.
pub const SESSION_COLUMNS: &[(&str, &str)] = &[
    ("session_id", "String"),
    ("project", "String"),
    ("first_ts_ms", "Int64"),
    ("last_ts_ms", "Int64"),
    ("models", "Array(String)"),
    ("messages", "UInt64"),
    ("input_tokens", "UInt64"),
    ("output_tokens", "UInt64"),
    ("cache_creation_tokens", "UInt64"),
    ("cache_read_tokens", "UInt64"),
    ("total_tokens", "UInt64"),
    ("cost_usd", "Float64"),
    ("naive_lines", "UInt64"),
    ("naive_total_tokens", "UInt64"),
    ("overcount_pct", "Float64"),
    ("cache_share_pct", "Float64"),
    ("est_user_prompt_tokens", "UInt64"),
    ("est_tool_result_tokens", "UInt64"),
    ("est_assistant_text_tokens", "UInt64"),
    ("est_thinking_tokens", "UInt64"),
    ("est_tool_use_tokens", "UInt64"),
    ("est_system_tokens", "UInt64"),
    ("est_sidechain_user_prompt_tokens", "UInt64"),
    ("est_sidechain_tool_result_tokens", "UInt64"),
    ("est_sidechain_assistant_text_tokens", "UInt64"),
    ("est_sidechain_thinking_tokens", "UInt64"),
    ("est_sidechain_tool_use_tokens", "UInt64"),
    ("est_sidechain_system_tokens", "UInt64"),
    ("est_assistant_output_tokens", "UInt64"),
    ("est_output_ratio", "Float64"),
    ("updated_ms", "Int64"),
    ("host", "String"),
    ("user", "String"),
];

/// A table tokenbridge owns: name, columns, engine and sorting key.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// Table name.
    pub name: &'static str,
    /// Columns in insert order.
    pub columns: &'static [(&'static str, &'static str)],
    /// Version column of the ReplacingMergeTree (`None`: the last insert wins).
    pub version: Option<&'static str>,
    /// `ORDER BY`, which is also the replacing key.
    pub order_by: &'static str,
    /// Sharding expression on a cluster: every row that can replace another
    /// (same replacing key) must land on the same shard, because
    /// ReplacingMergeTree and `FINAL` collapse only within a shard.
    pub shard_by: &'static str,
}

/// Every table, in creation order.
pub const TABLES: &[Table] = &[
    Table {
        name: MESSAGES,
        columns: MESSAGE_COLUMNS,
        version: Some("version"),
        order_by: "key",
        shard_by: "cityHash64(key)",
    },
    Table {
        name: CONTENT,
        columns: CONTENT_COLUMNS,
        version: None,
        order_by: "(session_id, key)",
        shard_by: "cityHash64(session_id)",
    },
    Table {
        name: FILE_NAIVE,
        columns: FILE_NAIVE_COLUMNS,
        version: Some("version"),
        order_by: "(session_id, file_key)",
        shard_by: "cityHash64(session_id)",
    },
    Table {
        name: SESSIONS,
        columns: SESSION_COLUMNS,
        version: Some("updated_ms"),
        order_by: "session_id",
        shard_by: "cityHash64(session_id)",
    },
];

/// The start-up probe: the server's version, and whether it knows the
/// `async_insert` setting (1) or not (0). Both columns have the same plain
/// types on every version.
pub const VERSION_PROBE: &str =
    "SELECT version(), count() FROM system.settings WHERE name = 'async_insert'";

/// `CREATE DATABASE IF NOT EXISTS` (on every node of a cluster).
pub fn create_database(db: &str, topology: &Topology) -> String {
    format!("CREATE DATABASE IF NOT EXISTS {db}{}", on_cluster(topology))
}

/// ` ON CLUSTER name` on a cluster, nothing on one server.
fn on_cluster(topology: &Topology) -> String {
    match topology {
        Topology::Single => String::new(),
        // Quoted: a cluster name may hold `-`, which an identifier may not.
        Topology::Cluster(c) => format!(" ON CLUSTER {}", quote(&c.name)),
    }
}

/// The column list of a `CREATE TABLE`.
fn column_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|(n, t)| format!("    {n} {t}"))
        .collect::<Vec<_>>()
        .join(",\n")
}

/// The `CREATE TABLE IF NOT EXISTS` statements for one of [`TABLES`]: the
/// table itself on one server; on a cluster, the replicated local table
/// first, then the `Distributed` table over it.
///
/// No `PARTITION BY`: ReplacingMergeTree only collapses rows within one
/// partition, and the winner of a key must replace its loser wherever they
/// landed. `ORDER BY` is the replacing key.
pub fn create_table(db: &str, table: &Table, topology: &Topology) -> Vec<String> {
    match topology {
        Topology::Single => vec![format!(
            "CREATE TABLE IF NOT EXISTS {db}.{} (\n{}\n) ENGINE = ReplacingMergeTree({}) ORDER BY {}",
            table.name,
            column_list(table),
            table.version.unwrap_or(""),
            table.order_by
        )],
        Topology::Cluster(_) => vec![
            create_local_table(db, table, topology),
            create_distributed_table(db, table, topology),
        ],
    }
}

/// A cluster's per-node replicated table, `<name>_local`.
fn create_local_table(db: &str, table: &Table, topology: &Topology) -> String {
    let Topology::Cluster(c) = topology else {
        unreachable!("local tables exist only on a cluster")
    };
    let version = table.version.map_or(String::new(), |v| format!(", {v}"));
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.{name}{LOCAL_SUFFIX}{on} (\n{cols}\n) \
         ENGINE = ReplicatedReplacingMergeTree('{zk}/{db}/{name}', '{{replica}}'{version}) ORDER BY {order}",
        name = table.name,
        on = on_cluster(topology),
        cols = column_list(table),
        zk = c.zookeeper_path,
        order = table.order_by,
    )
}

/// A cluster's `Distributed` table of the plain name over the local ones.
fn create_distributed_table(db: &str, table: &Table, topology: &Topology) -> String {
    let Topology::Cluster(c) = topology else {
        unreachable!("distributed tables exist only on a cluster")
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.{name}{on} (\n{cols}\n) \
         ENGINE = Distributed({cluster}, {db}, {name}{LOCAL_SUFFIX}, {shard})",
        name = table.name,
        on = on_cluster(topology),
        cols = column_list(table),
        cluster = quote(&c.name),
        shard = table.shard_by,
    )
}

/// The columns of `table` that `existing` lacks, in schema order.
fn missing<'a>(table: &'a Table, existing: &[String]) -> Vec<&'a (&'static str, &'static str)> {
    table
        .columns
        .iter()
        .filter(|(n, _)| !existing.iter().any(|e| e == n))
        .collect()
}

/// `ALTER TABLE … ADD COLUMN` statements for columns `existing` lacks (on
/// one server, or of a cluster's local tables).
pub fn missing_columns(db: &str, table: &Table, existing: &[String]) -> Vec<String> {
    missing(table, existing)
        .into_iter()
        .map(|(n, t)| format!("ALTER TABLE {db}.{} ADD COLUMN {n} {t}", table.name))
        .collect()
}

/// What a table lacks on a cluster, given the columns each part has now
/// (empty: the part does not exist).
#[derive(Debug, Clone, Copy)]
pub struct ClusterColumns<'a> {
    /// Columns of `<name>_local` on the node asked.
    pub local: &'a [String],
    /// Columns of the `Distributed` table on the node asked.
    pub distributed: &'a [String],
}

/// The statements that bring one table up to date on a cluster, in order:
/// the local table created or its missing columns added `ON CLUSTER`
/// (replicated ALTERs), then the `Distributed` table created, or dropped
/// and created again when it lacks columns. 18.16 refuses `ALTER … ON
/// CLUSTER` on a `Distributed` table over replicated shards ("Table isn't
/// replicated"), and the table holds no data of its own (inserts are
/// synchronous), so creating it again is the migration every version
/// accepts; a concurrent insert fails once and is retried.
pub fn cluster_migration(
    db: &str,
    table: &Table,
    topology: &Topology,
    have: ClusterColumns<'_>,
) -> Vec<String> {
    let on = on_cluster(topology);
    let mut out = Vec::new();
    if have.local.is_empty() {
        out.push(create_local_table(db, table, topology));
    } else {
        out.extend(missing(table, have.local).into_iter().map(|(n, t)| {
            format!(
                "ALTER TABLE {db}.{}{LOCAL_SUFFIX}{on} ADD COLUMN {n} {t}",
                table.name
            )
        }));
    }
    if have.distributed.is_empty() {
        out.push(create_distributed_table(db, table, topology));
    } else if !missing(table, have.distributed).is_empty() {
        out.push(format!("DROP TABLE IF EXISTS {db}.{}{on}", table.name));
        out.push(create_distributed_table(db, table, topology));
    }
    out
}

/// Which sessions a summary recomputation covers.
#[derive(Debug, Clone, Copy)]
pub enum SummaryScope<'a> {
    /// These sessions: quoted SQL string literals, comma-separated.
    Sessions(&'a str),
    /// Every session in `messages`: no `IN` list to ship and parse, which on
    /// a database this run filled from empty is the same set, cheaper.
    All,
}

/// Recomputes session summaries from the deduplicated tables, in
/// ClickHouse: one `INSERT … SELECT`, so the figures are exactly what the
/// tables hold. Formulas (docs/guide/reports.md, "Session summaries"):
/// - `overcount_pct = (naive_total_tokens - total_tokens) / total_tokens * 100`;
/// - `cache_share_pct = (cache_creation_tokens + cache_read_tokens) / total_tokens * 100`;
/// - `est_output_ratio = est_assistant_output_tokens / output_tokens`.
///
/// `with_content = false` leaves the `content` join out and the estimate
/// columns 0: right when that table holds nothing for these sessions (no
/// enhanced analysis), and it saves a third of the query.
///
/// 18.16 allows one JOIN per SELECT, hence the nesting; `ANY LEFT JOIN …
/// USING` means the same there and in 23.x–26.x. Every joined subquery has
/// an alias: servers since 20.x refuse one without
/// (`joined_subquery_requires_alias`, ALIAS_REQUIRED), and 18.16 accepts it.
pub fn session_summary_insert(
    db: &str,
    scope: SummaryScope<'_>,
    now_ms: i64,
    with_content: bool,
) -> String {
    let cols = SESSION_COLUMNS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ");
    let filter = match scope {
        SummaryScope::Sessions(list) => format!(" WHERE session_id IN ({list})"),
        SummaryScope::All => String::new(),
    };
    // Inner aliases differ from column names: ClickHouse would otherwise
    // substitute an alias into an aggregate of the same name.
    let mut content_cols = Vec::new();
    let mut content_out = Vec::new();
    let mut output_estimate = Vec::new();
    for (side, prefix) in [(0u8, "est_"), (1, "est_sidechain_")] {
        for c in [
            "user_prompt",
            "tool_result",
            "assistant_text",
            "thinking",
            "tool_use",
            "system",
        ] {
            content_cols.push(format!(
                "toUInt64(sumIf({c}_tokens, is_sidechain = {side})) AS c_{side}_{c}"
            ));
            let value = if with_content {
                format!("c_{side}_{c}")
            } else {
                "toUInt64(0)".to_string()
            };
            if matches!(c, "assistant_text" | "thinking" | "tool_use") {
                output_estimate.push(value.clone());
            }
            content_out.push(format!("{value} AS {prefix}{c}_tokens"));
        }
    }
    let content_cols = content_cols.join(", ");
    let content_out = content_out.join(", ");
    let output_estimate = output_estimate.join(" + ");
    let usage_and_naive = format!(
        "SELECT * FROM ( \
           SELECT session_id, any(project) AS m_project, min(ts_ms) AS m_first, max(ts_ms) AS m_last, \
             arraySort(groupUniqArray(model)) AS m_models, count() AS m_messages, \
             sum(input_tokens) AS m_input, sum(output_tokens) AS m_output, \
             sum(cache_creation_input_tokens) AS m_cc, sum(cache_read_input_tokens) AS m_cr, \
             sum(input_tokens + output_tokens + cache_creation_input_tokens + cache_read_input_tokens) AS m_total, \
             sum(cost_usd) AS m_cost, any(host) AS m_host, any(user) AS m_user \
           FROM {db}.{MESSAGES} FINAL{filter} GROUP BY session_id \
         ) AS per_session_usage ANY LEFT JOIN ( \
           SELECT session_id, sum(lines) AS n_lines, \
             sum(input_tokens + output_tokens + cache_creation_input_tokens + cache_read_input_tokens) AS n_total \
           FROM {db}.{FILE_NAIVE} FINAL{filter} GROUP BY session_id \
         ) AS per_session_naive USING session_id"
    );
    let source = if with_content {
        format!(
            "( {usage_and_naive} ) AS usage_and_naive ANY LEFT JOIN ( \
               SELECT session_id, {content_cols} \
               FROM {db}.{CONTENT} FINAL{filter} GROUP BY session_id \
             ) AS per_session_content USING session_id"
        )
    } else {
        format!("( {usage_and_naive} )")
    };
    format!(
        "INSERT INTO {db}.{SESSIONS} ({cols}) \
         SELECT session_id, m_project AS project, m_first AS first_ts_ms, m_last AS last_ts_ms, m_models AS models, \
           m_messages AS messages, m_input AS input_tokens, m_output AS output_tokens, m_cc AS cache_creation_tokens, \
           m_cr AS cache_read_tokens, m_total AS total_tokens, m_cost AS cost_usd, \
           n_lines AS naive_lines, n_total AS naive_total_tokens, \
           if(m_total = 0, 0, (toFloat64(n_total) - toFloat64(m_total)) * 100 / toFloat64(m_total)) AS overcount_pct, \
           if(m_total = 0, 0, toFloat64(m_cc + m_cr) * 100 / toFloat64(m_total)) AS cache_share_pct, \
           {content_out}, \
           {output_estimate} AS est_assistant_output_tokens, \
           if(m_output = 0, 0, toFloat64(est_assistant_output_tokens) / toFloat64(m_output)) AS est_output_ratio, \
           toInt64({now_ms}) AS updated_ms, m_host AS host, m_user AS user \
         FROM {source}"
    )
}

/// Quotes a string as a ClickHouse string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The winning rows of `table` (columns `cols`, optional `WHERE filter`):
/// `FINAL` in a subquery that also reads the version column. Through a
/// `Distributed` table, 18.16 fails a plain row `SELECT … FINAL` that
/// leaves the version out ("Cannot find column version in source stream");
/// aggregates are not affected. The same text works on one server.
pub fn final_rows(db: &str, table: &Table, cols: &str, filter: Option<&str>) -> String {
    let version = table.version.map_or(String::new(), |v| format!(", {v}"));
    let filter = filter.map_or(String::new(), |f| format!(" WHERE {f}"));
    format!(
        "SELECT {cols} FROM (SELECT {cols}{version} FROM {db}.{} FINAL{filter})",
        table.name
    )
}

/// The table named `name`.
pub fn table(name: &str) -> &'static Table {
    TABLES
        .iter()
        .find(|t| t.name == name)
        .expect("a table of TABLES")
}

/// Exact totals over the deduplicated rows.
pub fn totals_query(db: &str) -> String {
    format!(
        "SELECT sum(input_tokens), sum(output_tokens), sum(cache_creation_input_tokens), \
         sum(cache_read_input_tokens), count() FROM {db}.{MESSAGES} FINAL"
    )
}

/// Best version per key, the `limit` most recently active keys (of entries
/// from `since_ms` on, when given), for the start-up dedup index load.
/// With `host`, only that host's keys (see [`crate::config::LoadScope`]).
pub fn known_versions_query(
    db: &str,
    limit: usize,
    since_ms: Option<i64>,
    host: Option<&str>,
) -> String {
    let conditions: Vec<String> = since_ms
        .map(|t| format!("ts_ms >= {t}"))
        .into_iter()
        .chain(host.map(|h| format!("host = {}", quote(h))))
        .collect();
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    format!(
        "SELECT key, max(version) FROM {db}.{MESSAGES}{filter} GROUP BY key ORDER BY max(ts_ms) DESC LIMIT {limit}"
    )
}

/// The best version ClickHouse holds of each key of `quoted` (SQL string
/// literals, comma-separated): the per-batch lookup for keys outside the
/// index's start-up window.
pub fn versions_of_keys_query(db: &str, quoted: &str) -> String {
    format!("SELECT key, max(version) FROM {db}.{MESSAGES} WHERE key IN ({quoted}) GROUP BY key")
}

/// Longest `IN (…)` list put into one statement, bytes: well under the
/// 262,144-byte `max_query_size` every server version defaults to, with
/// room for the rest of the statement.
pub const MAX_IN_LIST_BYTES: usize = 200_000;

/// Splits `values` into quoted, comma-separated lists of at most
/// [`MAX_IN_LIST_BYTES`] each (a single longer value gets a list of its own).
pub fn in_lists<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    in_lists_of(values, MAX_IN_LIST_BYTES)
}

/// [`in_lists`] with lists of at most `max_bytes`.
pub fn in_lists_of<'a>(values: impl IntoIterator<Item = &'a str>, max_bytes: usize) -> Vec<String> {
    let mut lists = Vec::new();
    let mut cur = String::new();
    for v in values {
        let q = quote(v);
        if !cur.is_empty() && cur.len() + 2 + q.len() > max_bytes {
            lists.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push_str(", ");
        }
        cur.push_str(&q);
    }
    if !cur.is_empty() {
        lists.push(cur);
    }
    lists
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_mentions_every_column_once() {
        for t in TABLES {
            for sql in create_table("tb", t, &Topology::Single)
                .into_iter()
                .chain(create_table("tb", t, &cluster()))
            {
                for (n, _) in t.columns {
                    assert_eq!(sql.matches(&format!("    {n} ")).count(), 1, "{n}");
                }
                assert!(!sql.contains("PARTITION"));
            }
        }
        let sql = create_table("tb", &TABLES[0], &Topology::Single).remove(0);
        assert!(sql.contains("ENGINE = ReplacingMergeTree(version) ORDER BY key"));
        let sql = create_table("tb", &TABLES[1], &Topology::Single).remove(0);
        assert!(sql.contains("ReplacingMergeTree() ORDER BY (session_id, key)"));
    }

    fn cluster() -> Topology {
        Topology::Cluster(ClusterSpec {
            name: "fleet".into(),
            zookeeper_path: "/ch/{shard}".into(),
        })
    }

    #[test]
    fn cluster_tables_are_replicated_locally_and_distributed_by_their_replacing_key() {
        let sql = create_table("tb", &TABLES[0], &cluster());
        assert_eq!(sql.len(), 2);
        assert!(
            sql[0].starts_with("CREATE TABLE IF NOT EXISTS tb.messages_local ON CLUSTER 'fleet' (")
        );
        assert!(sql[0].ends_with(
            "ENGINE = ReplicatedReplacingMergeTree('/ch/{shard}/tb/messages', '{replica}', version) ORDER BY key"
        ));
        assert!(sql[1].starts_with("CREATE TABLE IF NOT EXISTS tb.messages ON CLUSTER 'fleet' ("));
        assert!(
            sql[1].ends_with("ENGINE = Distributed('fleet', tb, messages_local, cityHash64(key))")
        );
        // Every table shards by (a prefix of) its replacing key.
        for t in TABLES {
            let inner = t
                .shard_by
                .trim_start_matches("cityHash64(")
                .trim_end_matches(')');
            assert!(
                t.order_by.trim_start_matches('(').starts_with(inner),
                "{}",
                t.name
            );
        }
        let content = create_table("tb", &TABLES[1], &cluster());
        assert!(content[0].contains("'{replica}') ORDER BY (session_id, key)"));
        assert_eq!(
            create_database("tb", &cluster()),
            "CREATE DATABASE IF NOT EXISTS tb ON CLUSTER 'fleet'"
        );
        assert_eq!(
            create_database("tb", &Topology::Single),
            "CREATE DATABASE IF NOT EXISTS tb"
        );
    }

    #[test]
    fn cluster_migration_alters_local_tables_and_recreates_distributed_ones() {
        let t = &TABLES[0];
        let all: Vec<String> = t.columns.iter().map(|(n, _)| n.to_string()).collect();
        let old: Vec<String> = all[..all.len() - 3].to_vec();
        let none: Vec<String> = Vec::new();
        let up_to_date = cluster_migration(
            "tb",
            t,
            &cluster(),
            ClusterColumns {
                local: &all,
                distributed: &all,
            },
        );
        assert!(up_to_date.is_empty());
        let fresh = cluster_migration(
            "tb",
            t,
            &cluster(),
            ClusterColumns {
                local: &none,
                distributed: &none,
            },
        );
        assert_eq!(fresh, create_table("tb", t, &cluster()));
        let older = cluster_migration(
            "tb",
            t,
            &cluster(),
            ClusterColumns {
                local: &old,
                distributed: &old,
            },
        );
        assert_eq!(older.len(), 3 + 2, "{older:#?}");
        assert!(older[0].starts_with(
            "ALTER TABLE tb.messages_local ON CLUSTER 'fleet' ADD COLUMN host String"
        ));
        assert_eq!(
            older[3],
            "DROP TABLE IF EXISTS tb.messages ON CLUSTER 'fleet'"
        );
        assert!(older[4].contains("ENGINE = Distributed("));
    }

    #[test]
    fn row_reads_through_final_carry_the_version() {
        let sql = final_rows("tb", table(MESSAGES), "ts_ms, key", Some("ts_ms >= 5"));
        assert_eq!(
            sql,
            "SELECT ts_ms, key FROM (SELECT ts_ms, key, version FROM tb.messages FINAL WHERE ts_ms >= 5)"
        );
        let sql = final_rows("tb", table(SESSIONS), "session_id", None);
        assert!(sql.contains("SELECT session_id, updated_ms FROM tb.sessions FINAL)"));
    }

    #[test]
    fn migration_adds_only_missing_columns() {
        let have: Vec<String> = MESSAGE_COLUMNS[..3]
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        let alters = missing_columns("tb", &TABLES[0], &have);
        assert_eq!(alters.len(), MESSAGE_COLUMNS.len() - 3);
        assert!(alters[0].contains("ALTER TABLE tb.messages ADD COLUMN ts_ms Int64"));
        let all: Vec<String> = MESSAGE_COLUMNS.iter().map(|(n, _)| n.to_string()).collect();
        assert!(missing_columns("tb", &TABLES[0], &all).is_empty());
    }

    #[test]
    fn summary_fills_every_session_column() {
        let sql = session_summary_insert("tb", SummaryScope::Sessions("'a', 'b'"), 7, true);
        for (n, _) in SESSION_COLUMNS {
            assert!(sql.contains(n), "{n}");
        }
        assert_eq!(sql.matches("IN ('a', 'b')").count(), 3);
        assert!(sql.contains("tb.content"));
        let lean = session_summary_insert("tb", SummaryScope::All, 7, false);
        for (n, _) in SESSION_COLUMNS {
            assert!(lean.contains(n), "{n}");
        }
        assert!(!lean.contains(" IN ("));
        assert!(!lean.contains("tb.content"));
        assert!(lean.contains("toUInt64(0) AS est_thinking_tokens"));
        // Every joined subquery is named (ALIAS_REQUIRED on 20.x and later).
        for alias in [
            ") AS per_session_usage ANY LEFT JOIN (",
            ") AS per_session_naive USING session_id",
            ") AS usage_and_naive ANY LEFT JOIN (",
            ") AS per_session_content USING session_id",
        ] {
            assert_eq!(sql.matches(alias).count(), 1, "{alias}");
        }
        assert_eq!(sql.matches("ANY LEFT JOIN").count(), 2);
        assert_eq!(lean.matches("ANY LEFT JOIN").count(), 1);
        assert_eq!(quote("it's \\"), "'it\\'s \\\\'");
    }

    #[test]
    fn in_lists_stay_under_the_byte_bound() {
        let long: Vec<String> = (0..20_000)
            .map(|i| format!("msg_{i:060}|req?{i}'"))
            .collect();
        let lists = in_lists(long.iter().map(String::as_str));
        assert!(lists.len() > 1);
        assert!(lists.iter().all(|l| l.len() <= MAX_IN_LIST_BYTES));
        let joined: usize = lists.iter().map(|l| l.matches("msg_").count()).sum();
        assert_eq!(joined, long.len());
        assert!(in_lists(std::iter::empty()).is_empty());
        let sql = known_versions_query("tb", 10, Some(5), None);
        assert!(sql.contains("WHERE ts_ms >= 5 GROUP BY key"));
        assert!(!known_versions_query("tb", 10, None, None).contains("WHERE"));
        let sql = known_versions_query("tb", 10, Some(5), Some("it's"));
        assert!(
            sql.contains("WHERE ts_ms >= 5 AND host = 'it\\'s' GROUP BY key"),
            "{sql}"
        );
    }
}
