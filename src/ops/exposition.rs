//! The Prometheus exposition of the pipeline's [`Metrics`] (and of the
//! upstream token's, when OAuth2 is on): what each metric is called, what
//! its help text says and which counter it reads. Plain counters and gauges
//! are tables, so adding one is one line; labelled families have one
//! function each. The names are a contract (docs/reference/events.md lists
//! them), so they change only additively.

use std::fmt::Result;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::auth::token::TokenManager;
use crate::format::MalformedKind;
use crate::ops::metrics::Metrics;

/// Reads a counter's value.
type ReadU64 = fn(&Metrics) -> u64;
/// Reads a gauge's value.
type ReadF64 = fn(&Metrics) -> f64;

/// Counters without labels: name (before `tokenbridge_` and `_total`), help,
/// value.
const COUNTERS: &[(&str, &str, ReadU64)] = &[
    ("bytes_read", "Bytes of complete lines read", |m| {
        m.bytes_read.load(Relaxed)
    }),
    (
        "bytes_committed",
        "Bytes whose rows ClickHouse acknowledged",
        |m| m.bytes_committed.load(Relaxed),
    ),
    ("rows_inserted", "Rows ClickHouse acknowledged", |m| {
        m.rows_inserted.load(Relaxed)
    }),
    (
        "rows_superseding",
        "Inserted rows that replaced a smaller entry of their key",
        |m| m.rows_superseding.load(Relaxed),
    ),
    (
        "duplicates_dropped",
        "Entries dropped because their key had an equal or better one",
        |m| m.duplicates_dropped.load(Relaxed),
    ),
    (
        "rows_rejected",
        "Rows ClickHouse rejected (dead-lettered)",
        |m| m.rows_rejected.load(Relaxed),
    ),
    ("batches_committed", "Acknowledged inserts", |m| {
        m.batches_committed.load(Relaxed)
    }),
    ("insert_failures", "Failed insert attempts", |m| {
        m.insert_failures.load(Relaxed)
    }),
    ("files_discovered", "Files discovered", |m| {
        m.files_discovered.load(Relaxed)
    }),
    (
        "file_opens",
        "Files the reader opened (an unchanged file is only stat-ed by scans)",
        |m| m.file_opens.load(Relaxed),
    ),
    (
        "wakeups",
        "Wake-ups the file watcher sent the reader",
        |m| m.wakeups.load(Relaxed),
    ),
    (
        "wake_passes",
        "Reader passes started by wake-ups (at most one per batch.min_insert_gap_ms)",
        |m| m.wake_passes.load(Relaxed),
    ),
    (
        "wakeups_dropped",
        "Wake-ups not queued because the queue was full (rescans cover them)",
        |m| m.wakeups_dropped.load(Relaxed),
    ),
    (
        "watch_events_ignored",
        "File notifications that cannot mean new data (opens, reads, attribute changes)",
        |m| m.watch_events_ignored.load(Relaxed),
    ),
    ("file_errors", "Per-file read errors", |m| {
        m.file_errors.load(Relaxed)
    }),
    (
        "dedup_evicted_keys",
        "Keys the dedup index forgot because of its limit",
        |m| m.dedup_evicted.load(Relaxed),
    ),
    (
        "dedup_lookups",
        "Batches whose keys older than the index's window were looked up in ClickHouse",
        |m| m.dedup_lookups.load(Relaxed),
    ),
    ("dedup_lookup_keys", "Keys looked up in ClickHouse", |m| {
        m.dedup_lookup_keys.load(Relaxed)
    }),
    (
        "content_rows_inserted",
        "Content estimate rows ClickHouse acknowledged (enhanced analysis)",
        |m| m.content_rows_inserted.load(Relaxed),
    ),
    ("sessions_summarized", "Session summaries recomputed", |m| {
        m.sessions_summarized.load(Relaxed)
    }),
];

/// Gauges without labels: name (before `tokenbridge_`), help, value.
const GAUGES: &[(&str, &str, ReadF64)] = &[
    ("files_watched", "Files tracked", |m| {
        m.files_tracked.load(Relaxed) as f64
    }),
    ("channel_depth", "Chunks waiting for the sink", |m| {
        m.channel_depth.load(Relaxed) as f64
    }),
    (
        "channel_bytes",
        "Bytes of parsed rows waiting for the sink (bounded by batch.channel_max_bytes)",
        |m| m.channel_bytes.load(Relaxed) as f64,
    ),
    ("dedup_keys", "Keys in the dedup index", |m| {
        m.dedup_keys.load(Relaxed) as f64
    }),
    (
        "backlog_bytes",
        "Unread bytes behind the checkpoints (unread plus read but uncommitted)",
        |m| m.bytes_behind() as f64,
    ),
    (
        "seconds_since_last_commit",
        "Seconds since the last acknowledged insert (-1: none yet)",
        |m| m.seconds_since_last_commit().unwrap_or(-1.0),
    ),
    ("clickhouse_up", "1 when the last insert succeeded", |m| {
        (1 - m.clickhouse_down.load(Relaxed).min(1)) as f64
    }),
];

/// Exposes [`Metrics`] (and the token's counters, when there is a token) to
/// a `prometheus_client` registry.
#[derive(Debug)]
pub struct MetricsCollector {
    /// The pipeline's counters.
    pub metrics: Arc<Metrics>,
    /// The upstream token, when OAuth2 is on.
    pub token: Option<Arc<TokenManager>>,
}

impl Collector for MetricsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result {
        let m = &*self.metrics;
        for (name, help, read) in COUNTERS {
            ConstCounter::new(read(m)).encode(enc.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)?;
        }
        for (name, help, read) in GAUGES {
            ConstGauge::new(read(m)).encode(enc.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)?;
        }
        lines(&mut enc, m)?;
        scans(&mut enc, m)?;
        analysis(&mut enc, m)?;
        size_buckets(&mut enc, m)?;
        usage(&mut enc, m)?;
        budgets(&mut enc, m)?;
        if let Some(t) = &self.token {
            token(&mut enc, t)?;
        }
        Ok(())
    }
}

/// One family with a single label: `(label value, metric)` per member.
fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    label: &str,
    members: impl IntoIterator<Item = (&'static str, M)>,
) -> Result {
    let mut fam = enc.encode_descriptor(name, help, None, kind)?;
    for (value, metric) in members {
        metric.encode(fam.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}

/// Lines by class, and malformed lines by kind.
fn lines(enc: &mut DescriptorEncoder, m: &Metrics) -> Result {
    let by_class = [
        ("usage", m.lines_usage.load(Relaxed)),
        ("other", m.lines_other.load(Relaxed)),
        ("blank", m.lines_blank.load(Relaxed)),
        ("malformed", m.malformed_total()),
    ];
    family(
        enc,
        ("lines", "Lines read, by class", MetricType::Counter),
        "class",
        by_class.map(|(c, v)| (c, ConstCounter::new(v))),
    )?;
    family(
        enc,
        (
            "malformed_lines",
            "Malformed lines, by kind",
            MetricType::Counter,
        ),
        "kind",
        MalformedKind::ALL.map(|k| {
            (
                k.as_str(),
                ConstCounter::new(m.lines_malformed[k.index()].load(Relaxed)),
            )
        }),
    )
}

/// Looks for files by kind.
fn scans(enc: &mut DescriptorEncoder, m: &Metrics) -> Result {
    family(
        enc,
        (
            "scans",
            "Looks for files: every watched folder (kind=full), or the paths wake-ups named (kind=paths)",
            MetricType::Counter,
        ),
        "kind",
        [
            ("full", ConstCounter::new(m.scans_full.load(Relaxed))),
            ("paths", ConstCounter::new(m.scans_paths.load(Relaxed))),
        ],
    )
}

/// What parsing and content estimation cost, by path.
fn analysis(enc: &mut DescriptorEncoder, m: &Metrics) -> Result {
    let cost = m.analysis_cost();
    let seconds = |ns: u64| ConstCounter::new(ns as f64 / 1e9);
    family(
        enc,
        (
            "analysis_cpu_seconds",
            "CPU time parsing (path=base) and estimating content (path=enhanced)",
            MetricType::Counter,
        ),
        "path",
        [
            ("base", seconds(m.parse_ns_base.load(Relaxed))),
            ("enhanced", seconds(m.parse_ns_enhanced.load(Relaxed))),
        ],
    )?;
    family(
        enc,
        (
            "analysis_insert_bytes",
            "Approximate bytes inserted: messages and file_naive (path=base), content (path=enhanced)",
            MetricType::Counter,
        ),
        "path",
        [
            ("base", ConstCounter::new(cost.base_insert_bytes)),
            ("enhanced", ConstCounter::new(cost.enhanced_insert_bytes)),
        ],
    )?;
    family(
        enc,
        (
            "analysis_cpu_ms_per_mb",
            "CPU milliseconds per MB read: parsing (path=base), content estimation on top (path=enhanced)",
            MetricType::Gauge,
        ),
        "path",
        [
            ("base", ConstGauge::new(cost.base_cpu_ms_per_mb)),
            ("enhanced", ConstGauge::new(cost.enhanced_cpu_ms_per_mb)),
        ],
    )
}

/// Lines and batches by size bucket (three labels).
fn size_buckets(enc: &mut DescriptorEncoder, m: &Metrics) -> Result {
    let mut fam = enc.encode_descriptor(
        "size_bucket",
        "Lines and batches by size bucket (bytes)",
        None,
        MetricType::Counter,
    )?;
    for (kind, lo, hi, n) in m.sizes.snapshot() {
        let (lo, hi) = (lo.to_string(), hi.to_string());
        let labels = [
            ("kind", kind.as_str()),
            ("min_bytes", lo.as_str()),
            ("max_bytes", hi.as_str()),
        ];
        ConstCounter::new(n).encode(fam.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Tokens by type and cost acknowledged, by agent and model (and the
/// optional labels): `token_usage_tokens{type=input|output|cacheRead|
/// cacheCreation}` and `cost_usage_usd`, after Claude Code's
/// `claude_code.token.usage` and `claude_code.cost.usage`.
fn usage(enc: &mut DescriptorEncoder, m: &Metrics) -> Result {
    let extra: Vec<&str> = m.usage.labels().iter().map(|l| l.as_str()).collect();
    let series = m.usage.snapshot();
    let labels_of = |values: &[std::sync::Arc<str>]| -> Vec<(String, String)> {
        ["agent", "model"]
            .iter()
            .chain(extra.iter())
            .zip(values)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut fam = enc.encode_descriptor(
        "token_usage_tokens",
        "Tokens ClickHouse acknowledged, by type (input, output, cacheRead, cacheCreation), agent and model",
        None,
        MetricType::Counter,
    )?;
    for (values, sums) in &series {
        for (kind, n) in [
            ("input", sums.input),
            ("output", sums.output),
            ("cacheRead", sums.cache_read),
            ("cacheCreation", sums.cache_creation),
        ] {
            let mut labels = labels_of(values);
            labels.push(("type".to_string(), kind.to_string()));
            ConstCounter::new(n).encode(fam.encode_family(&labels)?)?;
        }
    }
    let mut fam = enc.encode_descriptor(
        "cost_usage_usd",
        "Calculated cost in USD of the usage ClickHouse acknowledged, by agent and model",
        None,
        MetricType::Counter,
    )?;
    for (values, sums) in &series {
        ConstCounter::new(sums.cost_usd).encode(fam.encode_family(&labels_of(values))?)?;
    }
    Ok(())
}

/// Each budget's use in its current period, as a fraction of its limit.
fn budgets(enc: &mut DescriptorEncoder, m: &Metrics) -> Result {
    let budgets = m.budgets.lock().expect("budgets").clone();
    let mut fam = enc.encode_descriptor(
        "budget_used_ratio",
        "Use of each budget in its current period, as a fraction of its limit",
        None,
        MetricType::Gauge,
    )?;
    for (name, ratio) in &budgets {
        ConstGauge::new(*ratio).encode(fam.encode_family(&[("budget", name.as_str())])?)?;
    }
    Ok(())
}

/// The upstream token's refreshes and remaining life.
fn token(enc: &mut DescriptorEncoder, t: &TokenManager) -> Result {
    ConstCounter::new(t.metrics.refreshes.load(Relaxed)).encode(enc.encode_descriptor(
        "token_refreshes",
        "Successful token refreshes",
        None,
        MetricType::Counter,
    )?)?;
    ConstCounter::new(t.metrics.failures.load(Relaxed)).encode(enc.encode_descriptor(
        "token_refresh_failures",
        "Failed token refreshes",
        None,
        MetricType::Counter,
    )?)?;
    ConstGauge::new(t.seconds_until_expiry().unwrap_or(-1)).encode(enc.encode_descriptor(
        "token_seconds_until_expiry",
        "Seconds until the upstream token expires",
        None,
        MetricType::Gauge,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    /// Every metric exposed is documented for operators (the token's three
    /// live in the auth guide, the analysis costs in the reports guide).
    #[test]
    fn every_exposed_metric_is_documented() {
        let docs = [
            include_str!("../../docs/guide/service.md"),
            include_str!("../../docs/guide/auth.md"),
            include_str!("../../docs/guide/reports.md"),
        ]
        .concat();
        let mut registry = Registry::with_prefix("tokenbridge");
        registry.register_collector(Box::new(MetricsCollector {
            metrics: Arc::new(Metrics::default()),
            token: None,
        }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(names.len(), COUNTERS.len() + GAUGES.len() + 10, "{text}");
        for name in names {
            let total = format!("{name}_total");
            assert!(
                docs.contains(&format!("`{name}`"))
                    || docs.contains(&format!("`{total}`"))
                    || docs.contains(&format!("`{total}{{"))
                    || docs.contains(&format!("`{name}{{")),
                "{name} is exposed but not documented"
            );
        }
    }
}
