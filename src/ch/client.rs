//! A connected ClickHouse: detects the server version at start-up, gates
//! version-specific settings, creates and migrates the schema, inserts rows and
//! runs the few read queries tokenbridge needs.
//!
//! The `clickhouse` crate's schema validation issues a `DESCRIBE` with a setting
//! 18.16 does not know, so validation is on only for servers that have it
//! (see [`validation_supported`]); the insert's column list comes from
//! [`crate::record::UsageRow`] and is checked against [`schema::MESSAGE_COLUMNS`] by a test.
//! Every statement is sent with `query_raw` (a `?` in a session id is text,
//! not a bind placeholder) and goes through [`statement_log`].

use std::time::Duration;

use crate::ch::error::ChError;
use crate::ch::schema::{self, Topology};
use crate::ch::statement_log;
use crate::secret::Secret;
use crate::sink::dedup::DedupIndex;

/// What the server told us about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// `SELECT version()`, e.g. `18.16.1` or `25.3.2.39`.
    pub version: String,
    /// Major version number.
    pub major: u32,
    /// Whether the server knows the `async_insert` setting (sending an unknown
    /// setting fails the whole query on 18.16).
    pub knows_async_insert: bool,
}

/// Exact deduplicated totals.
pub use crate::record::Totals;

/// Settings every request carries on a cluster
/// ([`Topology::Cluster`]); `tests/compat.rs` checks that the modern
/// engines know them too.
///
/// - `insert_distributed_sync = 1`: an insert into a Distributed table is
///   only queued on the receiving node by default; synchronous, its
///   acknowledgement means every shard has written its rows, which is what
///   a checkpoint may advance on. Every version has the setting (23.x+ keep
///   it as an alias of `distributed_foreground_insert`).
/// - `load_balancing = in_order`: replicas copy each other's parts
///   asynchronously, so a read through the Distributed table from a random
///   replica may miss rows just acknowledged by the other, and a session
///   summary computed from it would stay short. In order, inserts and reads
///   use each shard's first healthy replica: read-your-writes while it is up.
pub const CLUSTER_SETTINGS: &[(&str, &str)] = &[
    ("insert_distributed_sync", "1"),
    ("load_balancing", "in_order"),
];

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// HTTP URL.
    pub url: String,
    /// Database for tokenbridge's tables.
    pub database: String,
    /// User.
    pub user: String,
    /// Password (may be empty).
    pub password: Secret,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// LZ4-compress request and response bodies.
    pub compress: bool,
    /// Send `user`/`password` (basic mode); off for `none` and bearer tokens.
    pub send_basic: bool,
    /// Bearer tokens for every request (OAuth2 mode).
    pub token: Option<std::sync::Arc<crate::auth::token::TokenManager>>,
    /// One server, or a cluster (see [`Topology`]).
    pub topology: Topology,
}

/// Whether the `clickhouse` crate's row validation (a `DESCRIBE … SETTINGS
/// describe_include_subcolumns` and `RowBinaryWithNamesAndTypes` before a
/// typed fetch or insert) works on a server of this major version. 18.16
/// fails it with `Unknown setting`; both exist in every supported modern
/// server (23.x–26.x).
pub fn validation_supported(major: u32) -> bool {
    major >= 23
}

/// Fewest rows per insert when a batch is split into parallel inserts:
/// below this, one more part costs ClickHouse more than the split saves.
pub const MIN_ROWS_PER_INSERT: usize = 2048;

/// A ClickHouse server with tokenbridge's schema.
#[derive(Clone)]
pub struct ChClient {
    client: clickhouse::Client,
    /// The same client with the database set: the crate quotes an insert's
    /// table name as one identifier, so `db.table` cannot be spelled there.
    db_client: clickhouse::Client,
    database: String,
    timeout: Duration,
    token: Option<std::sync::Arc<crate::auth::token::TokenManager>>,
    topology: Topology,
    /// Version facts detected at connect time.
    pub info: ServerInfo,
}

impl std::fmt::Debug for ChClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChClient")
            .field("database", &self.database)
            .field("info", &self.info)
            .finish()
    }
}

async fn with_timeout<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = clickhouse::error::Result<T>>,
) -> Result<T, ChError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.map_err(ChError::from_client),
        Err(_) => Err(ChError::Unreachable(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

impl ChClient {
    /// Connects, detects the version and applies version-gated settings. Does
    /// not touch the schema.
    pub async fn connect(opts: &ConnectOptions) -> Result<ChClient, ChError> {
        let mut base = clickhouse::Client::default()
            .with_compression(if opts.compress {
                clickhouse::Compression::Lz4
            } else {
                clickhouse::Compression::None
            })
            .with_url(opts.url.clone())
            .with_validation(false);
        if opts.send_basic && opts.token.is_none() {
            base = base.with_user(opts.user.clone());
            if !opts.password.is_empty() {
                base = base.with_password(opts.password.expose());
            }
        }
        let probe = ChClient {
            db_client: base.clone(),
            client: base.clone(),
            database: opts.database.clone(),
            timeout: opts.request_timeout,
            token: opts.token.clone(),
            topology: opts.topology.clone(),
            info: ServerInfo {
                version: String::new(),
                major: 0,
                knows_async_insert: false,
            },
        };
        // One round trip: the version, and whether the server knows the
        // `async_insert` setting. A plain `count()` is UInt64 on every
        // version (a scalar subquery is Nullable(UInt64) on 26.x).
        let (version, knows_async_insert): (String, u64) = with_timeout(
            opts.request_timeout,
            probe
                .select(schema::VERSION_PROBE)?
                .fetch_one::<(String, u64)>(),
        )
        .await?;
        let major = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let knows_async_insert = knows_async_insert > 0;
        // The crate checks fetched and inserted rows against the table's
        // types with a `DESCRIBE` that 18.16 does not understand; servers
        // that do get the check, so a type mismatch is an error, not
        // misread bytes.
        base = base.with_validation(validation_supported(major));
        if knows_async_insert {
            // 26.2 turned async inserts on by default; an acknowledged insert
            // must mean the rows are written, or checkpoints would run ahead.
            base = base.with_setting("async_insert", "0");
        }
        if let Topology::Cluster(_) = opts.topology {
            for (name, value) in CLUSTER_SETTINGS {
                base = base.with_setting(*name, *value);
            }
        }
        Ok(ChClient {
            db_client: base.clone().with_database(opts.database.clone()),
            client: base,
            database: opts.database.clone(),
            timeout: opts.request_timeout,
            token: opts.token.clone(),
            topology: opts.topology.clone(),
            info: ServerInfo {
                version,
                major,
                knows_async_insert,
            },
        })
    }

    /// A client for one request: the base client, with the current bearer
    /// token when tokens are in use (the crate cannot change credentials on
    /// an existing client). No valid token is an `Unreachable` error, so
    /// callers wait and retry rather than give up.
    fn c(&self) -> Result<clickhouse::Client, ChError> {
        self.with_token(&self.client)
    }

    fn dbc(&self) -> Result<clickhouse::Client, ChError> {
        self.with_token(&self.db_client)
    }

    fn with_token(&self, base: &clickhouse::Client) -> Result<clickhouse::Client, ChError> {
        match &self.token {
            None => Ok(base.clone()),
            Some(t) => t
                .get(self.timeout)
                .map(|tok| base.clone().with_access_token(tok.expose()))
                .map_err(|e| ChError::Unreachable(e.to_string())),
        }
    }

    /// Drops the bearer token after ClickHouse refused it. Returns false when
    /// no tokens are in use (nothing to refresh).
    pub fn invalidate_token(&self, reason: &str) -> bool {
        match &self.token {
            Some(t) => {
                t.invalidate(reason);
                true
            }
            None => false,
        }
    }

    /// The token manager, when tokens are in use.
    pub fn token_manager(&self) -> Option<&std::sync::Arc<crate::auth::token::TokenManager>> {
        self.token.as_ref()
    }

    /// The database name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The underlying client (settings applied, no default database).
    pub fn raw(&self) -> &clickhouse::Client {
        &self.client
    }

    /// A `SELECT` to fetch from: logged (see [`statement_log`]), sent as
    /// written (`?` is not a placeholder).
    fn select(&self, sql: &str) -> Result<clickhouse::query::Query, ChError> {
        statement_log::query(sql);
        Ok(self.c()?.query_raw(sql))
    }

    /// A statement that returns nothing, logged and sent as written.
    fn statement(&self, sql: &str) -> Result<clickhouse::query::Query, ChError> {
        statement_log::execute(sql);
        Ok(self.c()?.query_raw(sql))
    }

    /// Runs a statement that returns nothing.
    pub async fn execute(&self, sql: &str) -> Result<(), ChError> {
        with_timeout(self.timeout, self.statement(sql)?.execute()).await
    }

    /// One server or a cluster.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// How long a schema statement may take: on a cluster, `ON CLUSTER`
    /// DDL waits for every node (the servers' `distributed_ddl_task_timeout`
    /// is 180 s by default).
    fn ddl_timeout(&self) -> Duration {
        match self.topology {
            Topology::Single => self.timeout,
            Topology::Cluster(_) => self.timeout.max(Duration::from_secs(200)),
        }
    }

    /// Runs a schema statement.
    async fn execute_ddl(&self, sql: &str) -> Result<(), ChError> {
        with_timeout(self.ddl_timeout(), self.statement(sql)?.execute()).await
    }

    /// Creates the database and tables if missing and adds missing columns.
    /// Idempotent; never drops or changes existing columns (on a cluster,
    /// a `Distributed` table that lacks columns is created again: it holds
    /// no data, see [`schema::cluster_migration`]).
    pub async fn ensure_schema(&self) -> Result<(), ChError> {
        let db = &self.database;
        // One look at what exists, then only the statements needed: every
        // round trip counts in a short backfill.
        let columns: Vec<(String, String)> = with_timeout(
            self.timeout,
            self.select(&format!(
                "SELECT table, name FROM system.columns WHERE database = {}",
                schema::quote(db)
            ))?
            .fetch_all::<(String, String)>(),
        )
        .await?;
        if columns.is_empty() {
            self.execute_ddl(&schema::create_database(db, &self.topology))
                .await?;
        }
        let of = |name: &str| -> Vec<String> {
            columns
                .iter()
                .filter(|(t, _)| t == name)
                .map(|(_, c)| c.clone())
                .collect()
        };
        // Per table: its CREATE, or the ALTERs it lacks, in column order.
        let per_table: Vec<Vec<String>> = schema::TABLES
            .iter()
            .map(|table| {
                let existing = of(table.name);
                match &self.topology {
                    Topology::Single if existing.is_empty() => {
                        schema::create_table(db, table, &self.topology)
                    }
                    Topology::Single => schema::missing_columns(db, table, &existing),
                    Topology::Cluster(_) => {
                        let local = of(&format!("{}{}", table.name, schema::LOCAL_SUFFIX));
                        schema::cluster_migration(
                            db,
                            table,
                            &self.topology,
                            schema::ClusterColumns {
                                local: &local,
                                distributed: &existing,
                            },
                        )
                    }
                }
            })
            .collect();
        // Tables are independent, and a fresh database needs a statement
        // per table: the tables are done together, not one round trip after
        // another.
        futures_util::future::try_join_all(per_table.iter().map(|statements| async move {
            for sql in statements {
                self.execute_ddl(sql).await?;
            }
            Ok::<_, ChError>(())
        }))
        .await?;
        Ok(())
    }

    /// Inserts rows into `table` as RowBinary, in up to `parallel` inserts
    /// sent together (see [`MIN_ROWS_PER_INSERT`]). Success means ClickHouse
    /// has written every row (async inserts are off where the server knows
    /// them); on an error some parts may have landed, and the caller's retry
    /// writes them again under the same keys and versions, which the
    /// replacing tables collapse.
    pub async fn insert_into<T>(
        &self,
        table: &str,
        rows: &[T],
        parallel: usize,
    ) -> Result<(), ChError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + serde::Serialize + Sync,
    {
        statement_log::insert(table, T::COLUMN_NAMES, rows);
        let parts = (rows.len() / MIN_ROWS_PER_INSERT).clamp(1, parallel.max(1));
        let per_part = rows.len().div_ceil(parts).max(1);
        futures_util::future::try_join_all(
            rows.chunks(per_part)
                .map(|part| self.insert_part(table, part)),
        )
        .await?;
        Ok(())
    }

    /// One RowBinary insert of `rows`.
    async fn insert_part<T>(&self, table: &str, rows: &[T]) -> Result<(), ChError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + serde::Serialize + Sync,
    {
        let fut = async {
            let mut insert = self
                .dbc()
                .map_err(|e| clickhouse::error::Error::Custom(e.to_string()))?
                .insert::<T>(table)
                .await?
                .with_timeouts(Some(self.timeout), Some(self.timeout));
            for row in rows {
                insert.write(row).await?;
            }
            insert.end().await
        };
        with_timeout(self.timeout * 2, fut).await
    }

    /// Recomputes the `sessions` rows of `sessions` from the tables, or of
    /// every session with `None` (see [`schema::session_summary_insert`];
    /// `with_content`: join the content estimates).
    pub async fn summarize_sessions(
        &self,
        sessions: Option<&[String]>,
        with_content: bool,
    ) -> Result<(), ChError> {
        let Some(sessions) = sessions else {
            return self
                .summarize_scope(schema::SummaryScope::All, with_content)
                .await;
        };
        // Lists bounded in bytes keep the statement (which carries the list
        // up to three times) under every server's default max_query_size.
        let lists = schema::in_lists_of(
            sessions.iter().map(String::as_str),
            schema::MAX_IN_LIST_BYTES / 3,
        );
        for list in lists {
            self.summarize_scope(schema::SummaryScope::Sessions(&list), with_content)
                .await?;
        }
        Ok(())
    }

    async fn summarize_scope(
        &self,
        scope: schema::SummaryScope<'_>,
        with_content: bool,
    ) -> Result<(), ChError> {
        let sql = schema::session_summary_insert(
            &self.database,
            scope,
            crate::ops::logging::unix_ms(),
            with_content,
        );
        with_timeout(self.timeout * 4, self.statement(&sql)?.execute()).await
    }

    /// Whether `table` holds any row.
    pub async fn has_rows(&self, table: &str) -> Result<bool, ChError> {
        let sql = format!(
            "SELECT count() FROM (SELECT 1 FROM {}.{table} LIMIT 1)",
            self.database
        );
        let n: u64 = with_timeout(self.timeout, self.select(&sql)?.fetch_one()).await?;
        Ok(n > 0)
    }

    /// Exact deduplicated totals.
    pub async fn totals(&self) -> Result<Totals, ChError> {
        let (i, o, cc, cr, n) = with_timeout(
            self.timeout,
            self.select(&schema::totals_query(&self.database))?
                .fetch_one::<(u64, u64, u64, u64, u64)>(),
        )
        .await?;
        Ok(Totals {
            input_tokens: i,
            output_tokens: o,
            cache_creation_tokens: cc,
            cache_read_tokens: cr,
            total_tokens: i + o + cc + cr,
            messages: n,
        })
    }

    /// Waits (up to `max`) until no insert into our table is running. A
    /// daemon killed in the middle of an insert leaves ClickHouse committing
    /// it; loading known keys before it lands would miss them, and re-reading
    /// the same bytes would insert those rows a second time. Returns how many
    /// were waited for at first.
    pub async fn wait_for_running_inserts(&self, max: Duration) -> Result<u64, ChError> {
        let sql = format!(
            "SELECT count() FROM system.processes WHERE lower(query) LIKE 'insert into%' \
             AND query LIKE '%{}%'",
            schema::MESSAGES
        );
        let deadline = tokio::time::Instant::now() + max;
        let mut first = None;
        loop {
            let n: u64 = with_timeout(self.timeout, self.select(&sql)?.fetch_one::<u64>()).await?;
            first.get_or_insert(n);
            if n == 0 || tokio::time::Instant::now() >= deadline {
                return Ok(first.unwrap_or(0));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Loads the best version of the `limit` most recent keys ClickHouse
    /// holds (of entries from `since_ms` on, and of `host`'s rows, when
    /// given) into `index`.
    pub async fn load_known_versions(
        &self,
        index: &mut DedupIndex,
        limit: usize,
        since_ms: Option<i64>,
        host: Option<&str>,
    ) -> Result<usize, ChError> {
        let sql = schema::known_versions_query(&self.database, limit, since_ms, host);
        let fut = async {
            let mut cursor = self
                .select(&sql)
                .map_err(|e| clickhouse::error::Error::Custom(e.to_string()))?
                .fetch::<(String, u64)>()?;
            let mut n = 0usize;
            while let Some((key, version)) = cursor.next().await? {
                index.remember(&key, version);
                n += 1;
            }
            Ok(n)
        };
        // The load scales with the table; give it far more than one request.
        with_timeout(self.timeout * 20, fut).await
    }

    /// The best version ClickHouse holds of each of `keys` that it holds.
    pub async fn versions_of(&self, keys: &[&str]) -> Result<Vec<(String, u64)>, ChError> {
        let mut out = Vec::new();
        for list in schema::in_lists(keys.iter().copied()) {
            let sql = schema::versions_of_keys_query(&self.database, &list);
            let rows: Vec<(String, u64)> = with_timeout(
                self.timeout,
                self.select(&sql)?.fetch_all::<(String, u64)>(),
            )
            .await?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// The winning row of every key, as reports need it.
    pub async fn report_entries(&self) -> Result<Vec<crate::report::Entry>, ChError> {
        let sql = schema::final_rows(
            &self.database,
            schema::table(schema::MESSAGES),
            "ts_ms, session_id, project, model, input_tokens, output_tokens, \
             cache_creation_input_tokens, cache_creation_1h_tokens, cache_read_input_tokens, \
             agent, reasoning_tokens, entry_type, recorded_cost_usd, host, user",
            None,
        );
        let rows: Vec<ReportRow> = with_timeout(
            self.timeout * 20,
            self.select(&sql)?.fetch_all::<ReportRow>(),
        )
        .await?;
        Ok(rows.into_iter().map(ReportRow::into_entry).collect())
    }

    /// One `Int64` column of `sql` (`{db}` stands for the database).
    pub async fn column_i64(&self, sql: &str) -> Result<Vec<i64>, ChError> {
        let sql = sql.replace("{db}", &self.database);
        with_timeout(self.timeout, self.select(&sql)?.fetch_all::<i64>()).await
    }

    /// The single `Float64` value of `sql` (`{db}` stands for the database).
    pub async fn scalar_f64(&self, sql: &str) -> Result<f64, ChError> {
        let sql = sql.replace("{db}", &self.database);
        with_timeout(self.timeout, self.select(&sql)?.fetch_one::<f64>()).await
    }

    /// Each summarized session's naive token total (summing every usage
    /// line, as a log shipper would), from the `sessions` table.
    pub async fn naive_totals(&self) -> Result<Vec<(String, u64)>, ChError> {
        let sql = schema::final_rows(
            &self.database,
            schema::table(schema::SESSIONS),
            "session_id, naive_total_tokens",
            None,
        );
        with_timeout(
            self.timeout,
            self.select(&sql)?.fetch_all::<(String, u64)>(),
        )
        .await
    }

    /// A cheap round trip.
    pub async fn ping(&self) -> Result<(), ChError> {
        with_timeout(self.timeout, self.select("SELECT 1")?.fetch_one::<u8>())
            .await
            .map(|_| ())
    }
}

/// The columns [`Client::report_entries`] reads.
#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct ReportRow {
    ts_ms: i64,
    session_id: String,
    project: String,
    model: String,
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_creation_1h_tokens: u64,
    cache_read_input_tokens: u64,
    agent: String,
    reasoning_tokens: u64,
    entry_type: String,
    recorded_cost_usd: Option<f64>,
    host: String,
    user: String,
}

impl ReportRow {
    fn into_entry(self) -> crate::report::Entry {
        let usage = crate::price::TokenUse {
            input: self.input_tokens,
            output: self.output_tokens,
            cache_creation: self.cache_creation_input_tokens,
            cache_creation_1h: self.cache_creation_1h_tokens,
            cache_read: self.cache_read_input_tokens,
        };
        crate::report::Entry {
            ts_ms: self.ts_ms,
            session_id: self.session_id,
            project: self.project,
            model: self.model,
            usage,
            agent: crate::report::Entry::agent_of(&self.agent),
            reasoning: self.reasoning_tokens,
            fallback_model: crate::report::Entry::is_fallback(&self.entry_type),
            recorded_cost: self.recorded_cost_usd,
            host: self.host,
            user: self.user,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::Row;

    /// The columns an insert names: all but those filled by the server.
    fn inserted(cols: &[(&'static str, &'static str)]) -> Vec<&'static str> {
        cols.iter()
            .filter(|(_, t)| !t.contains("DEFAULT now()"))
            .map(|(n, _)| *n)
            .collect()
    }

    #[test]
    fn row_validation_only_where_the_server_has_it() {
        // 18.16 refuses the DESCRIBE setting the check needs; 23.x–26.x have it.
        assert!(!validation_supported(18));
        for major in [23, 24, 25, 26] {
            assert!(validation_supported(major));
        }
    }

    #[test]
    fn insert_columns_match_the_schema() {
        assert_eq!(
            crate::record::UsageRow::COLUMN_NAMES,
            inserted(schema::MESSAGE_COLUMNS).as_slice()
        );
        assert_eq!(
            crate::format::claude::content::ContentRow::COLUMN_NAMES,
            inserted(schema::CONTENT_COLUMNS).as_slice()
        );
        assert_eq!(
            crate::sink::naive::FileNaiveRow::COLUMN_NAMES,
            inserted(schema::FILE_NAIVE_COLUMNS).as_slice()
        );
    }
}
