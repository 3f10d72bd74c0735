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

mod raw;
mod validate;

use raw::RawConfig;
use validate::Validator;

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

/// The least severe log level written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default: what an operator follows.
    Info,
    /// Also per-scan and per-batch detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The level as `tracing`'s filters and the config file spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl std::str::FromStr for LogLevel {
    type Err = ();

    fn from_str(s: &str) -> Result<LogLevel, ()> {
        [
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
        .ok_or(())
    }
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
    /// `[pricing] mode`: recorded or calculated cost in reports.
    pub cost_mode: crate::price::CostMode,
    /// `[upstream.auth]`: how requests to ClickHouse authenticate.
    pub auth: AuthConfig,
    /// `[agents.<name>]`: the agents besides Claude Code that are read, and
    /// from which folders (Claude Code's folders are `[watch] dirs`).
    pub agents: Vec<crate::ingest::discovery::Source>,
    /// `[agents.claude] enabled` (default true).
    pub claude_enabled: bool,
    /// `[source]` and `[watch] host_dirs` / `host_user_dirs`: which host and
    /// user each file's rows belong to.
    pub attribution: crate::ingest::attribution::Policy,
    /// `[[budgets]]`.
    pub budgets: Vec<crate::budget::Budget>,
    /// `[dashboard]`.
    pub dashboard: DashboardConfig,
}

/// `[dashboard]`: the page served next to `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardConfig {
    /// Serve it (default true).
    pub enabled: bool,
    /// The token requests need when the endpoint is bound beyond loopback
    /// (from `token_file`; never printed).
    pub token: Option<crate::secret::Secret>,
}

impl Config {
    /// Every folder to read, with the agent whose files it holds: Claude
    /// Code's `[watch] dirs`, then each enabled agent's folders.
    pub fn sources(&self) -> Vec<crate::ingest::discovery::Source> {
        use crate::format::agent::Agent;
        let claude = self
            .watch
            .dirs
            .iter()
            .filter(|_| self.claude_enabled)
            .map(|d| crate::ingest::discovery::Source::new(Agent::Claude, d));
        claude.chain(self.agents.iter().cloned()).collect()
    }
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
    /// Extra labels of the usage counters (`host`, `user`, `project`).
    pub usage_labels: Vec<crate::ops::usage::Label>,
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
    /// Keys remembered at most (see [`crate::sink::dedup::DedupIndex`]).
    pub max_keys: usize,
    /// Start-up loads the keys of entries from the last this-many days
    /// (`None`: every key, the behaviour before this setting). Rows older
    /// than the window are checked against ClickHouse per batch instead.
    pub load_window: Option<Duration>,
    /// Whose keys start-up loads (`all` by default on one server, `host` on
    /// a cluster).
    pub load_scope: LoadScope,
}

/// `[dedup] load_scope`: whose keys the start-up index load reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadScope {
    /// Every host's: a key another host inserted is known without asking.
    All,
    /// This daemon's `[source] host` only, so that start-up does not grow
    /// with the fleet; every key the index does not know is then asked of
    /// ClickHouse per batch before it is inserted.
    Host,
}

/// `[analysis]`: enhanced content analysis (docs/guide/reports.md, "Enhanced analysis").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnalysisConfig {
    /// Estimate every entry's content tokens by category (default false).
    pub enhanced: bool,
    /// How (default `heuristic`; `o200k` is exact BPE and much slower).
    pub estimator: crate::format::estimate::EstimatorKind,
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
    /// `cluster = "NAME"`: the tables live on this ClickHouse cluster
    /// (replicated local tables behind `Distributed` ones); `None`: one server.
    pub cluster: Option<crate::ch::schema::ClusterSpec>,
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
    /// A caught-up batch waits until this long after the previous insert
    /// (see [`crate::sink::SinkOptions::min_insert_gap`]); the reader's
    /// passes started by file events are as far apart (see
    /// [`crate::ingest::reader::ReaderOptions::pass_gap`]).
    pub min_insert_gap: Duration,
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
    /// The least severe level written; `RUST_LOG` overrides.
    pub level: LogLevel,
    /// `auto`, `json` or `text`.
    pub format: LogFormat,
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
            crate::format::estimate::EstimatorKind::Heuristic
        );
        assert_eq!(c.analysis.summary_interval, Duration::from_secs(2));
        let c = load("[analysis]\nenhanced = true\nestimator = \"o200k\"\n").unwrap();
        assert!(c.analysis.enhanced);
        assert_eq!(
            c.analysis.estimator,
            crate::format::estimate::EstimatorKind::O200k
        );
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
    fn cluster_mode_is_validated_and_changes_the_index_default() {
        let c = load("").unwrap();
        assert_eq!(c.clickhouse.cluster, None);
        assert_eq!(c.dedup.load_scope, LoadScope::All);
        let c = load("[clickhouse]\ncluster = \"team-ch\"\n").unwrap();
        assert_eq!(
            c.clickhouse.cluster,
            Some(crate::ch::schema::ClusterSpec {
                name: "team-ch".into(),
                zookeeper_path: "/clickhouse/tables/{shard}".into(),
            })
        );
        assert_eq!(c.dedup.load_scope, LoadScope::Host);
        let c = load("[clickhouse]\ncluster = \"c\"\nzookeeper_path = \"/ch/{shard}/tb/\"\n[dedup]\nload_scope = \"all\"\n")
            .unwrap();
        assert_eq!(
            c.clickhouse.cluster.unwrap().zookeeper_path,
            "/ch/{shard}/tb"
        );
        assert_eq!(c.dedup.load_scope, LoadScope::All);
        for (text, field) in [
            ("[clickhouse]\ncluster = \"a b\"\n", "clickhouse.cluster"),
            ("[clickhouse]\ncluster = \"\"\n", "clickhouse.cluster"),
            (
                "[clickhouse]\ncluster = \"c\"\nzookeeper_path = \"/ch/tb\"\n",
                "clickhouse.zookeeper_path",
            ),
            (
                "[clickhouse]\ncluster = \"c\"\nzookeeper_path = \"ch/{shard}\"\n",
                "clickhouse.zookeeper_path",
            ),
            (
                "[clickhouse]\nzookeeper_path = \"/ch/{shard}\"\n",
                "clickhouse.zookeeper_path",
            ),
            ("[dedup]\nload_scope = \"fleet\"\n", "load_scope"),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(
                e.contains(field) && e.contains("/etc/tb/config.toml"),
                "{text}: {e}"
            );
        }
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
