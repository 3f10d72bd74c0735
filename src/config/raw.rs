//! The config file as TOML gives it: every key optional, unknown keys
//! rejected (`deny_unknown_fields`), nothing checked yet. [`super::validate`]
//! turns it into a [`super::Config`].

use serde::Deserialize;

use super::{ClickHouseMode, Compression, LogFormat};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) watch: RawWatch,
    #[serde(default)]
    pub(super) state: RawState,
    #[serde(default)]
    pub(super) clickhouse: RawClickHouse,
    #[serde(default)]
    pub(super) batch: RawBatch,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) service: RawService,
    #[serde(default)]
    pub(super) dedup: RawDedup,
    #[serde(default)]
    pub(super) analysis: RawAnalysis,
    #[serde(default)]
    pub(super) http: RawHttp,
    #[serde(default)]
    pub(super) pricing: RawPricing,
    #[serde(default)]
    pub(super) upstream: RawUpstream,
    #[serde(default)]
    pub(super) agents: std::collections::BTreeMap<String, RawAgent>,
    #[serde(default)]
    pub(super) source: RawSource,
    #[serde(default)]
    pub(super) budgets: Vec<RawBudget>,
    #[serde(default)]
    pub(super) dashboard: RawDashboard,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDashboard {
    pub(super) enabled: Option<bool>,
    pub(super) token_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    pub(super) name: Option<String>,
    pub(super) period: Option<crate::budget::Period>,
    pub(super) limit_usd: Option<f64>,
    pub(super) limit_tokens: Option<u64>,
    pub(super) warn_at: Option<f64>,
    pub(super) project: Option<String>,
    pub(super) host: Option<String>,
    pub(super) user: Option<String>,
    pub(super) agent: Option<String>,
    pub(super) timezone: Option<String>,
    pub(super) webhook_url: Option<String>,
    pub(super) webhook_header: Option<String>,
    pub(super) webhook_secret_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) host: Option<String>,
    pub(super) user: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    pub(super) enabled: Option<bool>,
    pub(super) dirs: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    #[serde(default)]
    pub(super) auth: RawAuth,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub(super) mode: Option<String>,
    pub(super) token_url: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret_file: Option<String>,
    pub(super) client_secret_env: Option<String>,
    pub(super) scope: Option<String>,
    pub(super) audience: Option<String>,
    pub(super) extra: Option<std::collections::BTreeMap<String, String>>,
    pub(super) refresh_buffer_seconds: Option<u64>,
    pub(super) default_lifetime_seconds: Option<u64>,
    pub(super) request_timeout_ms: Option<u64>,
    pub(super) slow_refresh_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPricing {
    pub(super) file: Option<String>,
    pub(super) mode: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) enabled: Option<bool>,
    pub(super) listen: Option<String>,
    pub(super) ready_max_lag_seconds: Option<u64>,
    pub(super) usage_labels: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnalysis {
    pub(super) enhanced: Option<bool>,
    pub(super) estimator: Option<String>,
    pub(super) summary_interval_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDedup {
    pub(super) max_keys: Option<u64>,
    pub(super) load_days: Option<u64>,
    pub(super) load_scope: Option<super::LoadScope>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) shutdown_timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatch {
    pub(super) dirs: Option<Vec<String>>,
    pub(super) rescan_interval_ms: Option<u64>,
    pub(super) max_line_bytes: Option<u64>,
    pub(super) read_chunk_bytes: Option<u64>,
    pub(super) validate_all_lines: Option<bool>,
    pub(super) host_dirs: Option<bool>,
    pub(super) host_user_dirs: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) dir: Option<String>,
    pub(super) dead_letter_max_bytes: Option<u64>,
    pub(super) dead_letter_files: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClickHouse {
    pub(super) mode: Option<ClickHouseMode>,
    pub(super) url: Option<String>,
    pub(super) database: Option<String>,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) managed_http_port: Option<u16>,
    pub(super) managed_tcp_port: Option<u16>,
    pub(super) server_binary: Option<String>,
    pub(super) startup_timeout_ms: Option<u64>,
    pub(super) request_timeout_ms: Option<u64>,
    pub(super) compression: Option<Compression>,
    pub(super) cluster: Option<String>,
    pub(super) zookeeper_path: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBatch {
    pub(super) max_rows: Option<u64>,
    pub(super) max_bytes: Option<u64>,
    pub(super) flush_interval_ms: Option<u64>,
    pub(super) min_insert_gap_ms: Option<u64>,
    pub(super) channel_capacity: Option<u64>,
    pub(super) retry_initial_ms: Option<u64>,
    pub(super) retry_max_ms: Option<u64>,
    pub(super) slow_insert_ms: Option<u64>,
    pub(super) parallel_inserts: Option<u64>,
    pub(super) channel_max_bytes: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) level: Option<String>,
    pub(super) format: Option<LogFormat>,
}
