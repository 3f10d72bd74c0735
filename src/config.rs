//! The TOML configuration: parsing, defaults, validation, path resolution.
//!
//! Every error names the file and the field. Unknown keys are rejected (a typo
//! must not silently fall back to a default). Relative paths are resolved
//! against the folder of the config file and `~` against `$HOME`, so the same
//! file works from any working directory. Secrets may be inline, in a file or
//! in an environment variable, and are held as [`Secret`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

/// Where the daemon looks when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tokenbridge/config.toml";

/// A configuration problem. Callers branch on it (e.g. SIGHUP keeps the old
/// config on any of these).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read config: {source}")]
    Read {
        /// Config file.
        file: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or wrong type.
    #[error("{file}: {message}")]
    Parse {
        /// Config file.
        file: PathBuf,
        /// The parser's message, which names the key and its line.
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{file}: field `{field}`: {reason}")]
    Invalid {
        /// Config file.
        file: PathBuf,
        /// Dotted key, e.g. `clickhouse.mode`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where ClickHouse comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClickHouseMode {
    /// The daemon runs `clickhouse-server` itself, data under the state dir.
    Managed,
    /// Connect to `url`.
    External,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, text when it is.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// The whole configuration, after defaults and path resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this was loaded from (for messages and reloads).
    pub source: PathBuf,
    /// `[watch]`.
    pub watch: WatchConfig,
    /// `[state]`.
    pub state: StateConfig,
    /// `[clickhouse]`.
    pub clickhouse: ClickHouseConfig,
    /// `[batch]`.
    pub batch: BatchConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[service]`.
    pub service: ServiceConfig,
    /// `[dedup]`.
    pub dedup: DedupConfig,
    /// `[analysis]`.
    pub analysis: AnalysisConfig,
    /// `[http]`.
    pub http: HttpConfig,
    /// `[pricing]`: a price file overriding the embedded LiteLLM table.
    pub price_file: Option<PathBuf>,
    /// `[upstream.auth]`: how requests to ClickHouse authenticate.
    pub auth: AuthConfig,
}

/// `[upstream.auth]`.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthConfig {
    /// No credentials at all.
    None,
    /// `clickhouse.user` / `clickhouse.password` (the default).
    Basic,
    /// A bearer token from an OAuth2 client-credentials grant.
    OAuth2(Box<OAuth2Config>),
}

/// OAuth2 client-credentials settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2Config {
    /// Token endpoint.
    pub token_url: String,
    /// `client_id`.
    pub client_id: String,
    /// `client_secret` (from `client_secret_file` or `client_secret_env`).
    pub client_secret: Secret,
    /// Optional `scope`.
    pub scope: Option<String>,
    /// Optional `audience`.
    pub audience: Option<String>,
    /// Extra form parameters.
    pub extra: Vec<(String, String)>,
    /// Refresh this long before expiry (default 300 s).
    pub refresh_buffer: Duration,
    /// Lifetime of a token whose response has no `expires_in` (default 3600 s).
    pub default_lifetime: Duration,
    /// Timeout of one token request (default 10 s).
    pub request_timeout: Duration,
    /// A refresh slower than this is logged `slow` (default 2 s).
    pub slow_refresh: Duration,
}

/// `[http]`: the metrics and health endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Serve it at all.
    pub enabled: bool,
    /// Address to bind (loopback by default).
    pub listen: std::net::SocketAddr,
    /// `/ready` fails when uncommitted work waits longer than this.
    pub ready_max_lag: Duration,
}

/// `[service]`: process life cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// After SIGTERM/SIGINT, how long to keep trying to deliver what is in
    /// flight before exiting anyway (undelivered bytes are re-read next start).
    pub shutdown_timeout: Duration,
}

/// `[watch]`: which files to tail and how.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchConfig {
    /// Folders searched for `**/*.jsonl`. A folder that does not exist yet is
    /// picked up when it appears.
    pub dirs: Vec<PathBuf>,
    /// Full rescan period even when the watcher is quiet (default 10 s).
    pub rescan_interval: Duration,
    /// A line longer than this is rejected as `too_long` (default 64 MiB).
    pub max_line_bytes: usize,
    /// At most this many bytes of one file are read per step (default 1 MiB).
    pub read_chunk_bytes: usize,
    /// Parse and validate every line (default true). False parses only lines
    /// that can carry usage; the rest count as `other` without validation.
    pub validate_all_lines: bool,
}

/// `[state]`: where checkpoints (and managed ClickHouse data) live.
#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    /// State folder; created with mode 0700 if missing.
    pub dir: PathBuf,
    /// The dead-letter file is rotated at this size.
    pub dead_letter_max_bytes: u64,
    /// Rotated dead-letter files kept.
    pub dead_letter_files: usize,
}

/// `[dedup]`: the in-memory dedup index.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupConfig {
    /// Keys remembered at most (see [`crate::dedup::DedupIndex`]).
    pub max_keys: usize,
    /// Start-up loads the keys of entries from the last this-many days
    /// (`None`: every key, the behaviour before this setting). Rows older
    /// than the window are checked against ClickHouse per batch instead.
    pub load_window: Option<Duration>,
}

/// `[analysis]`: enhanced content analysis (README "Enhanced analysis").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnalysisConfig {
    /// Estimate every entry's content tokens by category (default false).
    pub enhanced: bool,
    /// How (default `heuristic`; `o200k` is exact BPE and much slower).
    pub estimator: crate::estimate::EstimatorKind,
    /// Session summaries are recomputed at most this often while files keep
    /// changing (and always once the reader has caught up).
    pub summary_interval: Duration,
}

/// `[clickhouse]`: where rows go.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickHouseConfig {
    /// `managed` (default) or `external`.
    pub mode: ClickHouseMode,
    /// HTTP URL of an external server.
    pub url: String,
    /// Database for tokenbridge's tables (created if missing).
    pub database: String,
    /// User name.
    pub user: String,
    /// Password (from `password`, `password_file` or `password_env`).
    pub password: Secret,
    /// Managed mode: HTTP port of the child server.
    pub managed_http_port: u16,
    /// Managed mode: native-protocol port of the child server.
    pub managed_tcp_port: u16,
    /// Managed mode: the server binary.
    pub server_binary: PathBuf,
    /// How long to wait for a server to answer at start-up.
    pub startup_timeout: Duration,
    /// Timeout of one HTTP request (insert or query).
    pub request_timeout: Duration,
    /// `auto` (default), `lz4` or `none`.
    pub compression: Compression,
}

/// HTTP body compression towards ClickHouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// None for a server on this host (LZ4 costs more CPU than it saves on
    /// loopback: measured 3x slower inserts), LZ4 otherwise.
    Auto,
    /// Always LZ4.
    Lz4,
    /// Never.
    None,
}

impl ClickHouseConfig {
    /// Whether to compress towards a server at `url`.
    pub fn compress_for(&self, url: &str) -> bool {
        match self.compression {
            Compression::Lz4 => true,
            Compression::None => false,
            Compression::Auto => {
                let host = url
                    .split("://")
                    .nth(1)
                    .unwrap_or(url)
                    .split(['/', '?'])
                    .next()
                    .unwrap_or("");
                let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
                let local = host.starts_with("127.")
                    || host.starts_with("localhost")
                    || host.starts_with("[::1]");
                !local
            }
        }
    }
}

/// `[batch]`: how rows are grouped into inserts.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// Flush when a batch has this many rows.
    pub max_rows: usize,
    /// Flush when a batch's rows hold this many bytes of memory.
    pub max_bytes: usize,
    /// Flush a non-empty batch at least this often.
    pub flush_interval: Duration,
    /// Parsed chunks waiting for the sink; when full, reading stops.
    pub channel_capacity: usize,
    /// Bytes of parsed rows waiting for the sink; when spent, reading
    /// stops (the bound that holds whatever the files look like).
    pub channel_max_bytes: u64,
    /// First retry delay of a failed insert (doubles, with jitter).
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Inserts slower than this are logged with `slow = true`.
    pub slow_insert: Duration,
    /// A batch of at least twice [`crate::ch::client::MIN_ROWS_PER_INSERT`]
    /// rows is sent as up to this many inserts at once (ClickHouse writes
    /// each insert with one thread).
    pub parallel_inserts: usize,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`; `RUST_LOG` overrides.
    pub level: String,
    /// `auto`, `json` or `text`.
    pub format: LogFormat,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    watch: RawWatch,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    clickhouse: RawClickHouse,
    #[serde(default)]
    batch: RawBatch,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    service: RawService,
    #[serde(default)]
    dedup: RawDedup,
    #[serde(default)]
    analysis: RawAnalysis,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    pricing: RawPricing,
    #[serde(default)]
    upstream: RawUpstream,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    #[serde(default)]
    auth: RawAuth,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    mode: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret_file: Option<String>,
    client_secret_env: Option<String>,
    scope: Option<String>,
    audience: Option<String>,
    extra: Option<std::collections::BTreeMap<String, String>>,
    refresh_buffer_seconds: Option<u64>,
    default_lifetime_seconds: Option<u64>,
    request_timeout_ms: Option<u64>,
    slow_refresh_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPricing {
    file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    enabled: Option<bool>,
    listen: Option<String>,
    ready_max_lag_seconds: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAnalysis {
    enhanced: Option<bool>,
    estimator: Option<String>,
    summary_interval_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDedup {
    max_keys: Option<u64>,
    load_days: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawService {
    shutdown_timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    dirs: Option<Vec<String>>,
    rescan_interval_ms: Option<u64>,
    max_line_bytes: Option<u64>,
    read_chunk_bytes: Option<u64>,
    validate_all_lines: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawState {
    dir: Option<String>,
    dead_letter_max_bytes: Option<u64>,
    dead_letter_files: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawClickHouse {
    mode: Option<ClickHouseMode>,
    url: Option<String>,
    database: Option<String>,
    user: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
    password_env: Option<String>,
    managed_http_port: Option<u16>,
    managed_tcp_port: Option<u16>,
    server_binary: Option<String>,
    startup_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    compression: Option<Compression>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    max_rows: Option<u64>,
    max_bytes: Option<u64>,
    flush_interval_ms: Option<u64>,
    channel_capacity: Option<u64>,
    retry_initial_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    slow_insert_ms: Option<u64>,
    parallel_inserts: Option<u64>,
    channel_max_bytes: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<LogFormat>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses config text as if it had been read from `path`.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        // Absolute, so that paths keep their meaning for child processes that
        // run elsewhere (the managed clickhouse-server runs in its own folder).
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = std::path::absolute(&base).unwrap_or(base);
        let v = Validator {
            file: path,
            base: &base,
        };
        v.build(raw)
    }
}

struct Validator<'a> {
    file: &'a Path,
    base: &'a Path,
}

impl Validator<'_> {
    fn invalid(&self, field: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    fn path(&self, field: &str, s: &str) -> Result<PathBuf, ConfigError> {
        if s.is_empty() {
            return Err(self.invalid(field, "must not be empty"));
        }
        let expanded = if let Some(rest) = s.strip_prefix("~/") {
            let home = std::env::var_os("HOME")
                .ok_or_else(|| self.invalid(field, "uses ~ but HOME is not set"))?;
            PathBuf::from(home).join(rest)
        } else {
            PathBuf::from(s)
        };
        Ok(if expanded.is_absolute() {
            expanded
        } else {
            self.base.join(expanded)
        })
    }

    fn range(&self, field: &str, v: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        if v < min || v > max {
            return Err(self.invalid(field, format!("{v} is outside {min}..={max}")));
        }
        Ok(v)
    }

    fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let w = raw.watch;
        let dirs = w.dirs.unwrap_or_else(|| vec!["~/.claude".to_string()]);
        let dirs = dirs
            .iter()
            .map(|d| self.path("watch.dirs", d))
            .collect::<Result<Vec<_>, _>>()?;
        let max_line_bytes = self.range(
            "watch.max_line_bytes",
            w.max_line_bytes.unwrap_or(64 << 20),
            1024,
            1 << 32,
        )? as usize;
        let watch = WatchConfig {
            dirs,
            rescan_interval: Duration::from_millis(self.range(
                "watch.rescan_interval_ms",
                w.rescan_interval_ms.unwrap_or(10_000),
                50,
                3_600_000,
            )?),
            max_line_bytes,
            read_chunk_bytes: self.range(
                "watch.read_chunk_bytes",
                w.read_chunk_bytes.unwrap_or(1 << 20),
                4096,
                1 << 30,
            )? as usize,
            validate_all_lines: w.validate_all_lines.unwrap_or(true),
        };

        let state = StateConfig {
            dir: self.path(
                "state.dir",
                raw.state
                    .dir
                    .as_deref()
                    .unwrap_or("~/.local/state/tokenbridge"),
            )?,
            dead_letter_max_bytes: self.range(
                "state.dead_letter_max_bytes",
                raw.state.dead_letter_max_bytes.unwrap_or(64 << 20),
                4096,
                1 << 40,
            )?,
            dead_letter_files: self.range(
                "state.dead_letter_files",
                raw.state.dead_letter_files.unwrap_or(3),
                0,
                100,
            )? as usize,
        };
        let dedup = DedupConfig {
            max_keys: self.range(
                "dedup.max_keys",
                raw.dedup.max_keys.unwrap_or(5_000_000),
                1000,
                1 << 34,
            )? as usize,
            load_window: match self.range(
                "dedup.load_days",
                raw.dedup.load_days.unwrap_or(7),
                0,
                36_500,
            )? {
                0 => None,
                days => Some(Duration::from_secs(days * 86_400)),
            },
        };

        let analysis = AnalysisConfig {
            enhanced: raw.analysis.enhanced.unwrap_or(false),
            estimator: match raw.analysis.estimator.as_deref() {
                None => crate::estimate::EstimatorKind::Heuristic,
                Some(s) => s
                    .parse()
                    .map_err(|e: String| self.invalid("analysis.estimator", e))?,
            },
            summary_interval: Duration::from_millis(self.range(
                "analysis.summary_interval_ms",
                raw.analysis.summary_interval_ms.unwrap_or(2000),
                0,
                3_600_000,
            )?),
        };

        let c = raw.clickhouse;
        let password_sources = [
            c.password.is_some(),
            c.password_file.is_some(),
            c.password_env.is_some(),
        ];
        if password_sources.iter().filter(|x| **x).count() > 1 {
            return Err(self.invalid(
                "clickhouse.password",
                "set at most one of password, password_file, password_env",
            ));
        }
        let password = if let Some(p) = c.password {
            Secret::new(p)
        } else if let Some(f) = c.password_file {
            let p = self.path("clickhouse.password_file", &f)?;
            let text = std::fs::read_to_string(&p).map_err(|e| {
                self.invalid(
                    "clickhouse.password_file",
                    format!("cannot read {}: {e}", p.display()),
                )
            })?;
            Secret::new(text.trim_end_matches(['\n', '\r']))
        } else if let Some(var) = c.password_env {
            Secret::new(std::env::var(&var).map_err(|_| {
                self.invalid(
                    "clickhouse.password_env",
                    format!("environment variable {var} is not set"),
                )
            })?)
        } else {
            Secret::default()
        };
        let url = c.url.unwrap_or_else(|| "http://127.0.0.1:8123".to_string());
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(self.invalid("clickhouse.url", "must start with http:// or https://"));
        }
        let database = c.database.unwrap_or_else(|| "tokenbridge".to_string());
        if database.is_empty()
            || !database
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            return Err(self.invalid("clickhouse.database", "use letters, digits and _ only"));
        }
        let managed_http_port = c.managed_http_port.unwrap_or(18123);
        let managed_tcp_port = c.managed_tcp_port.unwrap_or(19000);
        if managed_http_port == 0 || managed_tcp_port == 0 || managed_http_port == managed_tcp_port
        {
            return Err(self.invalid(
                "clickhouse.managed_tcp_port",
                "ports must be non-zero and distinct",
            ));
        }
        let clickhouse = ClickHouseConfig {
            mode: c.mode.unwrap_or(ClickHouseMode::Managed),
            url,
            database,
            user: c.user.unwrap_or_else(|| "default".to_string()),
            password,
            managed_http_port,
            managed_tcp_port,
            server_binary: PathBuf::from(
                c.server_binary
                    .unwrap_or_else(|| "/usr/sbin/clickhouse-server".to_string()),
            ),
            startup_timeout: Duration::from_millis(self.range(
                "clickhouse.startup_timeout_ms",
                c.startup_timeout_ms.unwrap_or(30_000),
                100,
                600_000,
            )?),
            request_timeout: Duration::from_millis(self.range(
                "clickhouse.request_timeout_ms",
                c.request_timeout_ms.unwrap_or(30_000),
                100,
                600_000,
            )?),
            compression: c.compression.unwrap_or(Compression::Auto),
        };

        let b = raw.batch;
        let retry_initial = self.range(
            "batch.retry_initial_ms",
            b.retry_initial_ms.unwrap_or(100),
            1,
            60_000,
        )?;
        let retry_max = self.range(
            "batch.retry_max_ms",
            b.retry_max_ms.unwrap_or(3_000),
            1,
            3_600_000,
        )?;
        if retry_max < retry_initial {
            return Err(self.invalid(
                "batch.retry_max_ms",
                "must be at least batch.retry_initial_ms",
            ));
        }
        let batch = BatchConfig {
            max_rows: self.range(
                "batch.max_rows",
                b.max_rows.unwrap_or(50_000),
                1,
                10_000_000,
            )? as usize,
            max_bytes: self.range(
                "batch.max_bytes",
                b.max_bytes.unwrap_or(16 << 20),
                1024,
                1 << 31,
            )? as usize,
            flush_interval: Duration::from_millis(self.range(
                "batch.flush_interval_ms",
                b.flush_interval_ms.unwrap_or(1000),
                1,
                600_000,
            )?),
            channel_capacity: self.range(
                "batch.channel_capacity",
                b.channel_capacity.unwrap_or(1024),
                1,
                65536,
            )? as usize,
            retry_initial: Duration::from_millis(retry_initial),
            retry_max: Duration::from_millis(retry_max),
            slow_insert: Duration::from_millis(self.range(
                "batch.slow_insert_ms",
                b.slow_insert_ms.unwrap_or(1000),
                1,
                3_600_000,
            )?),
            parallel_inserts: self.range(
                "batch.parallel_inserts",
                b.parallel_inserts.unwrap_or(2),
                1,
                16,
            )? as usize,
            channel_max_bytes: self.range(
                "batch.channel_max_bytes",
                b.channel_max_bytes.unwrap_or(32 << 20),
                1 << 20,
                1 << 32,
            )?,
        };

        let level = raw.log.level.unwrap_or_else(|| "info".to_string());
        if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
            return Err(self.invalid("log.level", "one of error, warn, info, debug, trace"));
        }
        let log = LogConfig {
            level,
            format: raw.log.format.unwrap_or(LogFormat::Auto),
        };

        let service = ServiceConfig {
            shutdown_timeout: Duration::from_millis(self.range(
                "service.shutdown_timeout_ms",
                raw.service.shutdown_timeout_ms.unwrap_or(20_000),
                0,
                600_000,
            )?),
        };

        let listen = raw.http.listen.as_deref().unwrap_or("127.0.0.1:9464");
        let http = HttpConfig {
            enabled: raw.http.enabled.unwrap_or(true),
            listen: listen.parse().map_err(|_| {
                self.invalid(
                    "http.listen",
                    format!("{listen:?} is not an ip:port address"),
                )
            })?,
            ready_max_lag: Duration::from_secs(self.range(
                "http.ready_max_lag_seconds",
                raw.http.ready_max_lag_seconds.unwrap_or(300),
                1,
                86_400,
            )?),
        };

        let price_file = raw
            .pricing
            .file
            .as_deref()
            .map(|f| self.path("pricing.file", f))
            .transpose()?;

        let auth = self.auth(raw.upstream.auth)?;

        Ok(Config {
            source: self.file.to_path_buf(),
            watch,
            state,
            clickhouse,
            batch,
            log,
            service,
            dedup,
            analysis,
            http,
            price_file,
            auth,
        })
    }

    fn auth(&self, a: RawAuth) -> Result<AuthConfig, ConfigError> {
        let mode = a.mode.as_deref().unwrap_or("basic");
        let oauth_keys = a.token_url.is_some()
            || a.client_id.is_some()
            || a.client_secret_file.is_some()
            || a.client_secret_env.is_some();
        match mode {
            "none" | "basic" if oauth_keys => Err(self.invalid(
                "upstream.auth.mode",
                format!("oauth2 settings are given but mode is {mode:?}"),
            )),
            "none" => Ok(AuthConfig::None),
            "basic" => Ok(AuthConfig::Basic),
            "oauth2" => {
                let token_url = a.token_url.ok_or_else(|| {
                    self.invalid("upstream.auth.token_url", "required for oauth2")
                })?;
                if !(token_url.starts_with("http://") || token_url.starts_with("https://")) {
                    return Err(self.invalid(
                        "upstream.auth.token_url",
                        "must start with http:// or https://",
                    ));
                }
                let client_id = a.client_id.ok_or_else(|| {
                    self.invalid("upstream.auth.client_id", "required for oauth2")
                })?;
                let client_secret = match (a.client_secret_file, a.client_secret_env) {
                    (Some(f), None) => {
                        let p = self.path("upstream.auth.client_secret_file", &f)?;
                        let text = std::fs::read_to_string(&p).map_err(|e| {
                            self.invalid("upstream.auth.client_secret_file", format!("cannot read {}: {e}", p.display()))
                        })?;
                        Secret::new(text.trim_end_matches(['\n', '\r']))
                    }
                    (None, Some(var)) => Secret::new(std::env::var(&var).map_err(|_| {
                        self.invalid("upstream.auth.client_secret_env", format!("environment variable {var} is not set"))
                    })?),
                    _ => {
                        return Err(self.invalid(
                            "upstream.auth.client_secret_file",
                            "set exactly one of client_secret_file, client_secret_env (the secret is never inline)",
                        ))
                    }
                };
                Ok(AuthConfig::OAuth2(Box::new(OAuth2Config {
                    token_url,
                    client_id,
                    client_secret,
                    scope: a.scope,
                    audience: a.audience,
                    extra: a.extra.unwrap_or_default().into_iter().collect(),
                    refresh_buffer: Duration::from_secs(self.range(
                        "upstream.auth.refresh_buffer_seconds",
                        a.refresh_buffer_seconds.unwrap_or(300),
                        0,
                        86_400,
                    )?),
                    default_lifetime: Duration::from_secs(self.range(
                        "upstream.auth.default_lifetime_seconds",
                        a.default_lifetime_seconds.unwrap_or(3600),
                        1,
                        7 * 86_400,
                    )?),
                    request_timeout: Duration::from_millis(self.range(
                        "upstream.auth.request_timeout_ms",
                        a.request_timeout_ms.unwrap_or(10_000),
                        100,
                        600_000,
                    )?),
                    slow_refresh: Duration::from_millis(self.range(
                        "upstream.auth.slow_refresh_ms",
                        a.slow_refresh_ms.unwrap_or(2000),
                        1,
                        600_000,
                    )?),
                })))
            }
            other => Err(self.invalid(
                "upstream.auth.mode",
                format!("{other:?}: use none, basic or oauth2"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/tb/config.toml"))
    }

    #[test]
    fn defaults() {
        let c = load("").unwrap();
        assert_eq!(c.clickhouse.mode, ClickHouseMode::Managed);
        assert_eq!(c.clickhouse.database, "tokenbridge");
        assert_eq!(c.batch.flush_interval, Duration::from_secs(1));
        assert_eq!(c.watch.rescan_interval, Duration::from_secs(10));
        assert_eq!(c.watch.max_line_bytes, 64 << 20);
        assert_eq!(c.log.format, LogFormat::Auto);
        assert!(c.watch.validate_all_lines);
        assert!(!c.analysis.enhanced);
        assert_eq!(
            c.analysis.estimator,
            crate::estimate::EstimatorKind::Heuristic
        );
        assert_eq!(c.analysis.summary_interval, Duration::from_secs(2));
        let c = load("[analysis]\nenhanced = true\nestimator = \"o200k\"\n").unwrap();
        assert!(c.analysis.enhanced);
        assert_eq!(c.analysis.estimator, crate::estimate::EstimatorKind::O200k);
    }

    #[test]
    fn repo_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.clickhouse.mode, ClickHouseMode::Managed);
    }

    #[test]
    fn compression_auto_skips_loopback() {
        let c = load("").unwrap().clickhouse;
        assert!(!c.compress_for("http://127.0.0.1:18123"));
        assert!(!c.compress_for("http://localhost:8123/"));
        assert!(!c.compress_for("http://[::1]:8123"));
        assert!(c.compress_for("https://abc.clickhouse.cloud:8443"));
        let c = load("[clickhouse]\ncompression = \"lz4\"\n")
            .unwrap()
            .clickhouse;
        assert!(c.compress_for("http://127.0.0.1:1"));
    }

    #[test]
    fn http_listen_is_validated() {
        let c = load("").unwrap();
        assert!(c.http.enabled);
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:9464");
        let e = load("[http]\nlisten = \"localhost\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.listen"), "{e}");
    }

    #[test]
    fn oauth2_settings_and_secret_sources() {
        assert_eq!(load("").unwrap().auth, AuthConfig::Basic);
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("secret");
        std::fs::write(&secret, "cl13nt-s3cr3t\n").unwrap();
        let text = format!(
            "[upstream.auth]\nmode = \"oauth2\"\ntoken_url = \"https://auth.example/token\"\nclient_id = \"tb\"\nclient_secret_file = {:?}\nscope = \"ingest\"\nextra = {{ resource = \"ch\" }}\n",
            secret.display().to_string()
        );
        let c = Config::from_toml(&text, &d.path().join("c.toml")).unwrap();
        match &c.auth {
            AuthConfig::OAuth2(o) => {
                assert_eq!(o.client_secret.expose(), "cl13nt-s3cr3t");
                assert_eq!(o.extra, vec![("resource".to_string(), "ch".to_string())]);
                assert_eq!(o.refresh_buffer, Duration::from_secs(300));
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{c:?}").contains("cl13nt-s3cr3t"));
        let e = load("[upstream.auth]\nmode = \"oauth2\"\ntoken_url = \"https://a/t\"\nclient_id = \"x\"\nclient_secret = \"inline\"\n").unwrap_err();
        assert!(e.to_string().contains("client_secret"), "{e}");
        let e = load("[upstream.auth]\nmode = \"oauth2\"\nclient_id = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("upstream.auth.token_url"), "{e}");
        let e = load("[upstream.auth]\nmode = \"kerberos\"\n").unwrap_err();
        assert!(e.to_string().contains("upstream.auth.mode"), "{e}");
    }

    #[test]
    fn a_relative_config_path_gives_absolute_paths() {
        let c = Config::from_toml("[state]\ndir = \"st\"\n", Path::new("config.toml")).unwrap();
        assert!(c.state.dir.is_absolute(), "{}", c.state.dir.display());
        assert_eq!(c.state.dir, std::env::current_dir().unwrap().join("st"));
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let c = load("[state]\ndir = \"state\"\n[watch]\ndirs = [\"in\", \"/abs\"]\n").unwrap();
        assert_eq!(c.state.dir, PathBuf::from("/etc/tb/state"));
        assert_eq!(
            c.watch.dirs,
            vec![PathBuf::from("/etc/tb/in"), PathBuf::from("/abs")]
        );
    }

    #[test]
    fn unknown_keys_are_named_with_the_file() {
        let e = load("[clickhouse]\nurll = \"http://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/tb/config.toml"), "{e}");
        assert!(e.contains("urll"), "{e}");
        let e = load("[wat]\n").unwrap_err().to_string();
        assert!(e.contains("wat"), "{e}");
    }

    #[test]
    fn invalid_values_name_the_field() {
        let e = load("[clickhouse]\nmode = \"cloud\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mode") && e.contains("cloud"), "{e}");
        let e = load("[analysis]\nestimator = \"bpe\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("analysis.estimator") && e.contains("bpe"), "{e}");
        let e = load("[batch]\nmax_rows = 0\n").unwrap_err().to_string();
        assert!(e.contains("batch.max_rows"), "{e}");
        let e = load("[clickhouse]\nurl = \"localhost:8123\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("clickhouse.url") && e.contains("config.toml"),
            "{e}"
        );
        let e = load("[clickhouse]\npassword = \"a\"\npassword_env = \"B\"\n").unwrap_err();
        assert!(e.to_string().contains("clickhouse.password"));
    }

    #[test]
    fn password_from_file_and_env_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cr3t-from-file\n").unwrap();
        let cfg = dir.path().join("c.toml");
        let c = Config::from_toml(
            &format!("[clickhouse]\npassword_file = \"{}\"\n", pw.display()),
            &cfg,
        )
        .unwrap();
        assert_eq!(c.clickhouse.password.expose(), "s3cr3t-from-file");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        std::env::set_var("TB_TEST_PW_ENV", "s3cr3t-env");
        let c = load("[clickhouse]\npassword_env = \"TB_TEST_PW_ENV\"\n").unwrap();
        assert_eq!(c.clickhouse.password.expose(), "s3cr3t-env");
        let e = load("[clickhouse]\npassword_env = \"TB_TEST_PW_ENV_MISSING\"\n").unwrap_err();
        assert!(e.to_string().contains("password_env"));
    }
}
