//! Turning the raw TOML into a [`Config`]: defaults, ranges, paths resolved
//! against the config file's folder, secrets read from their file or
//! variable. One builder per section; every error names the file and the
//! dotted field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::*;
use super::*;
use crate::secret::Secret;

pub(super) struct Validator<'a> {
    /// The config file, for error messages.
    pub(super) file: &'a Path,
    /// Where relative paths start.
    pub(super) base: &'a Path,
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

    /// The whole config: one builder per section.
    pub(super) fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let attribution = self.attribution(raw.source, &raw.watch)?;
        let budgets = self.budgets(raw.budgets)?;
        let dashboard = self.dashboard(raw.dashboard)?;
        let clickhouse = self.clickhouse(raw.clickhouse)?;
        let dedup = self.dedup(raw.dedup, clickhouse.cluster.is_some())?;
        Ok(Config {
            source: self.file.to_path_buf(),
            watch: self.watch(raw.watch)?,
            state: self.state(raw.state)?,
            clickhouse,
            batch: self.batch(raw.batch)?,
            log: self.log(raw.log)?,
            service: self.service(raw.service)?,
            dedup,
            analysis: self.analysis(raw.analysis)?,
            http: self.http(raw.http)?,
            cost_mode: self.cost_mode(raw.pricing.mode.as_deref())?,
            price_file: self.pricing(raw.pricing)?,
            auth: self.auth(raw.upstream.auth)?,
            claude_enabled: self.claude_enabled(&raw.agents)?,
            agents: self.agents(raw.agents)?,
            attribution,
            budgets,
            dashboard,
        })
    }

    /// `[dashboard]`.
    fn dashboard(&self, raw: RawDashboard) -> Result<DashboardConfig, ConfigError> {
        let token = match raw.token_file {
            None => None,
            Some(f) => {
                let p = self.path("dashboard.token_file", &f)?;
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    self.invalid(
                        "dashboard.token_file",
                        format!("cannot read {}: {e}", p.display()),
                    )
                })?;
                let t = text.trim();
                if t.is_empty() {
                    return Err(self.invalid("dashboard.token_file", "the file is empty"));
                }
                Some(Secret::new(t))
            }
        };
        Ok(DashboardConfig {
            enabled: raw.enabled.unwrap_or(true),
            token,
        })
    }

    /// `[[budgets]]`: each named once, one limit, at most one scope.
    fn budgets(&self, raw: Vec<RawBudget>) -> Result<Vec<crate::budget::Budget>, ConfigError> {
        use crate::budget::{Budget, Limit, Period, Scope, Webhook};
        let mut out: Vec<Budget> = Vec::new();
        for (i, b) in raw.into_iter().enumerate() {
            let field = |f: &str| format!("budgets[{i}].{f}");
            let name = b
                .name
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| self.invalid(&field("name"), "every budget needs a name"))?;
            if out.iter().any(|o| o.name == name) {
                return Err(self.invalid(&field("name"), format!("{name:?} is used twice")));
            }
            let limit = match (b.limit_usd, b.limit_tokens) {
                (Some(u), None) if u.is_finite() && u > 0.0 => Limit::Usd(u),
                (None, Some(t)) if t > 0 => Limit::Tokens(t),
                (Some(_), None) | (None, Some(_)) => {
                    return Err(self.invalid(&field("limit_usd"), "the limit must be above 0"))
                }
                _ => {
                    return Err(self.invalid(
                        &field("limit_usd"),
                        "set exactly one of limit_usd and limit_tokens",
                    ))
                }
            };
            let warn_at = b.warn_at.unwrap_or(0.8);
            if !(warn_at > 0.0 && warn_at <= 1.0) {
                return Err(self.invalid(&field("warn_at"), "a fraction in (0, 1]"));
            }
            let scopes = [
                b.project.map(Scope::Project),
                b.host.map(Scope::Host),
                b.user.map(Scope::User),
                b.agent
                    .map(|a| {
                        a.parse()
                            .map(Scope::Agent)
                            .map_err(|e: String| self.invalid(&field("agent"), e))
                    })
                    .transpose()?,
            ];
            let mut scopes = scopes.into_iter().flatten();
            let scope = scopes.next().unwrap_or(Scope::All);
            if scopes.next().is_some() {
                return Err(self.invalid(
                    &field("project"),
                    "at most one of project, host, user and agent",
                ));
            }
            let tz_offset_min = match b.timezone.as_deref() {
                None => 0,
                Some(t) => crate::report::parse_timezone(t)
                    .map_err(|e| self.invalid(&field("timezone"), e))?,
            };
            let header = match (b.webhook_header, b.webhook_secret_file) {
                (Some(h), Some(f)) => {
                    let p = self.path(&field("webhook_secret_file"), &f)?;
                    let text = std::fs::read_to_string(&p).map_err(|e| {
                        self.invalid(
                            &field("webhook_secret_file"),
                            format!("cannot read {}: {e}", p.display()),
                        )
                    })?;
                    Some((h, Secret::new(text.trim_end_matches(['\n', '\r']))))
                }
                (None, None) => None,
                _ => {
                    return Err(self.invalid(
                        &field("webhook_header"),
                        "webhook_header and webhook_secret_file go together",
                    ))
                }
            };
            let webhook = match b.webhook_url {
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    Some(Webhook { url, header })
                }
                Some(_) => {
                    return Err(
                        self.invalid(&field("webhook_url"), "must start with http:// or https://")
                    )
                }
                None if header.is_some() => {
                    return Err(self.invalid(&field("webhook_url"), "a webhook header needs a URL"))
                }
                None => None,
            };
            out.push(Budget {
                name,
                period: b.period.unwrap_or(Period::Day),
                limit,
                warn_at,
                scope,
                tz_offset_min,
                webhook,
            });
        }
        Ok(out)
    }

    /// `[source]` and `[watch] host_dirs` / `host_user_dirs`: whose rows are
    /// whose.
    fn attribution(
        &self,
        raw: RawSource,
        watch: &RawWatch,
    ) -> Result<crate::ingest::attribution::Policy, ConfigError> {
        use crate::ingest::attribution::{hostname, Layout, Policy};
        let named = |field: &str, v: Option<String>| match v {
            Some(v) if v.trim().is_empty() => {
                Err(self.invalid(field, "must not be empty (leave it out for the default)"))
            }
            other => Ok(other),
        };
        let layout = match (watch.host_dirs, watch.host_user_dirs) {
            (_, Some(true)) => Layout::HostUserDirs,
            (Some(true), _) => Layout::HostDirs,
            _ => Layout::Local,
        };
        Ok(Policy {
            host: named("source.host", raw.host)?.unwrap_or_else(hostname),
            user: named("source.user", raw.user)?,
            layout,
        })
    }

    /// `[agents.claude]`: only `enabled`; its folders are `[watch] dirs`.
    fn claude_enabled(
        &self,
        agents: &std::collections::BTreeMap<String, RawAgent>,
    ) -> Result<bool, ConfigError> {
        match agents.get("claude") {
            None => Ok(true),
            Some(a) if a.dirs.is_some() => Err(self.invalid(
                "agents.claude.dirs",
                "Claude Code's folders are [watch] dirs",
            )),
            Some(a) => Ok(a.enabled.unwrap_or(true)),
        }
    }

    /// `[agents.<name>]`: an agent listed is read (unless `enabled = false`),
    /// from `dirs` or the folders the agent itself uses (its environment
    /// variable, else its home default).
    fn agents(
        &self,
        agents: std::collections::BTreeMap<String, RawAgent>,
    ) -> Result<Vec<crate::ingest::discovery::Source>, ConfigError> {
        use crate::format::agent::Agent;
        let mut out = Vec::new();
        for (name, a) in agents {
            let agent: Agent = name
                .parse()
                .map_err(|e: String| self.invalid(&format!("agents.{name}"), e))?;
            if agent == Agent::Claude || !a.enabled.unwrap_or(true) {
                continue;
            }
            let field = format!("agents.{name}.dirs");
            let dirs = match a.dirs {
                Some(dirs) => dirs
                    .iter()
                    .map(|d| self.path(&field, d))
                    .collect::<Result<Vec<_>, _>>()?,
                None => {
                    let home = std::env::var_os("HOME")
                        .map(PathBuf::from)
                        .ok_or_else(|| self.invalid(&field, "no dirs given and HOME is not set"))?;
                    agent.default_dirs(|v| std::env::var(v).ok(), &home)
                }
            };
            out.extend(
                dirs.into_iter()
                    .map(|d| crate::ingest::discovery::Source::new(agent, d)),
            );
        }
        Ok(out)
    }

    /// `[watch]`.
    fn watch(&self, w: RawWatch) -> Result<WatchConfig, ConfigError> {
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
        Ok(watch)
    }

    /// `[state]`.
    fn state(&self, raw: RawState) -> Result<StateConfig, ConfigError> {
        let state = StateConfig {
            dir: self.path(
                "state.dir",
                raw.dir.as_deref().unwrap_or("~/.local/state/tokenbridge"),
            )?,
            dead_letter_max_bytes: self.range(
                "state.dead_letter_max_bytes",
                raw.dead_letter_max_bytes.unwrap_or(64 << 20),
                4096,
                1 << 40,
            )?,
            dead_letter_files: self.range(
                "state.dead_letter_files",
                raw.dead_letter_files.unwrap_or(3),
                0,
                100,
            )? as usize,
        };
        Ok(state)
    }

    /// `[dedup]`.
    /// `[dedup]`; `clustered`: the tables live on a cluster, where start-up
    /// loads only this host's keys unless told otherwise.
    fn dedup(&self, raw: RawDedup, clustered: bool) -> Result<DedupConfig, ConfigError> {
        let dedup = DedupConfig {
            max_keys: self.range(
                "dedup.max_keys",
                raw.max_keys.unwrap_or(5_000_000),
                1000,
                1 << 34,
            )? as usize,
            load_window: match self.range(
                "dedup.load_days",
                raw.load_days.unwrap_or(7),
                0,
                36_500,
            )? {
                0 => None,
                days => Some(Duration::from_secs(days * 86_400)),
            },
            load_scope: raw.load_scope.unwrap_or(if clustered {
                LoadScope::Host
            } else {
                LoadScope::All
            }),
        };
        Ok(dedup)
    }

    /// `[analysis]`.
    fn analysis(&self, raw: RawAnalysis) -> Result<AnalysisConfig, ConfigError> {
        let analysis = AnalysisConfig {
            enhanced: raw.enhanced.unwrap_or(false),
            estimator: match raw.estimator.as_deref() {
                None => crate::format::estimate::EstimatorKind::Heuristic,
                Some(s) => s
                    .parse()
                    .map_err(|e: String| self.invalid("analysis.estimator", e))?,
            },
            summary_interval: Duration::from_millis(self.range(
                "analysis.summary_interval_ms",
                raw.summary_interval_ms.unwrap_or(2000),
                0,
                3_600_000,
            )?),
        };
        Ok(analysis)
    }

    /// `[clickhouse]`: where, as whom, and the password from at most one source.
    fn clickhouse(&self, c: RawClickHouse) -> Result<ClickHouseConfig, ConfigError> {
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
            cluster: self.cluster(c.cluster, c.zookeeper_path)?,
        };
        Ok(clickhouse)
    }

    /// `[clickhouse] cluster` and `zookeeper_path`: names go into DDL
    /// unquoted, so they are checked here.
    fn cluster(
        &self,
        name: Option<String>,
        zookeeper_path: Option<String>,
    ) -> Result<Option<crate::ch::schema::ClusterSpec>, ConfigError> {
        let Some(name) = name else {
            if zookeeper_path.is_some() {
                return Err(self.invalid(
                    "clickhouse.zookeeper_path",
                    "only used with clickhouse.cluster",
                ));
            }
            return Ok(None);
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            return Err(self.invalid(
                "clickhouse.cluster",
                "use letters, digits, - and _ only (the name in the servers' remote_servers)",
            ));
        }
        let zookeeper_path =
            zookeeper_path.unwrap_or_else(|| crate::ch::schema::DEFAULT_ZOOKEEPER_PATH.to_string());
        if !zookeeper_path.starts_with('/')
            || !zookeeper_path.contains("{shard}")
            || zookeeper_path.contains('\'')
            || zookeeper_path.contains('\\')
        {
            return Err(self.invalid(
                "clickhouse.zookeeper_path",
                "must start with / and contain the {shard} macro (each shard's replicas share one path)",
            ));
        }
        Ok(Some(crate::ch::schema::ClusterSpec {
            name,
            zookeeper_path: zookeeper_path.trim_end_matches('/').to_string(),
        }))
    }

    /// `[batch]`.
    fn batch(&self, b: RawBatch) -> Result<BatchConfig, ConfigError> {
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
            min_insert_gap: Duration::from_millis(self.range(
                "batch.min_insert_gap_ms",
                b.min_insert_gap_ms.unwrap_or(200),
                0,
                60_000,
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
        Ok(batch)
    }

    /// `[log]`.
    fn log(&self, raw: RawLog) -> Result<LogConfig, ConfigError> {
        let level = match raw.level.as_deref() {
            None => LogLevel::Info,
            Some(l) => l.parse().map_err(|()| {
                self.invalid("log.level", "one of error, warn, info, debug, trace")
            })?,
        };
        let log = LogConfig {
            level,
            format: raw.format.unwrap_or(LogFormat::Auto),
        };
        Ok(log)
    }

    /// `[service]`.
    fn service(&self, raw: RawService) -> Result<ServiceConfig, ConfigError> {
        let service = ServiceConfig {
            shutdown_timeout: Duration::from_millis(self.range(
                "service.shutdown_timeout_ms",
                raw.shutdown_timeout_ms.unwrap_or(20_000),
                0,
                600_000,
            )?),
        };
        Ok(service)
    }

    /// `[http]`.
    fn http(&self, raw: RawHttp) -> Result<HttpConfig, ConfigError> {
        let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:9464");
        let http = HttpConfig {
            enabled: raw.enabled.unwrap_or(true),
            listen: listen.parse().map_err(|_| {
                self.invalid(
                    "http.listen",
                    format!("{listen:?} is not an ip:port address"),
                )
            })?,
            ready_max_lag: Duration::from_secs(self.range(
                "http.ready_max_lag_seconds",
                raw.ready_max_lag_seconds.unwrap_or(300),
                1,
                86_400,
            )?),
            usage_labels: raw
                .usage_labels
                .unwrap_or_default()
                .iter()
                .map(|l| match l.as_str() {
                    "host" => Ok(crate::ops::usage::Label::Host),
                    "user" => Ok(crate::ops::usage::Label::User),
                    "project" => Ok(crate::ops::usage::Label::Project),
                    other => Err(self.invalid(
                        "http.usage_labels",
                        format!("{other:?}: use host, user or project"),
                    )),
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(http)
    }

    /// `[pricing] mode`: which cost reports show (default `auto`).
    fn cost_mode(&self, mode: Option<&str>) -> Result<crate::price::CostMode, ConfigError> {
        match mode {
            None => Ok(crate::price::CostMode::default()),
            Some(m) => m
                .parse()
                .map_err(|e: String| self.invalid("pricing.mode", e)),
        }
    }

    /// `[pricing]`: an optional price file.
    fn pricing(&self, raw: RawPricing) -> Result<Option<PathBuf>, ConfigError> {
        let price_file = raw
            .file
            .as_deref()
            .map(|f| self.path("pricing.file", f))
            .transpose()?;
        Ok(price_file)
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
