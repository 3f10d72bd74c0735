//! The HTTP endpoint (loopback by default): `/metrics` in Prometheus text
//! format, `/health` (liveness: the pipeline's parts are beating) and `/ready`
//! (ClickHouse reachable, backlog being committed) with a JSON body that says
//! why when not ready.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::format::MalformedKind;
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;

/// What the endpoint reads.
#[derive(Debug)]
pub struct HttpState {
    /// Pipeline counters.
    pub metrics: Arc<Metrics>,
    /// Heartbeats.
    pub health: Arc<Health>,
    /// `/ready` fails when uncommitted work is older than this.
    pub max_lag: Duration,
    /// `/health` fails when a part has not beaten for this long.
    pub stall_limit: Duration,
    /// The upstream token, when OAuth2 is on.
    pub token: Option<Arc<crate::auth::token::TokenManager>>,
    registry: Registry,
}

impl HttpState {
    /// State with a registry holding every tokenbridge metric.
    pub fn new(metrics: Arc<Metrics>, health: Arc<Health>, max_lag: Duration) -> HttpState {
        let mut registry = Registry::with_prefix("tokenbridge");
        registry.register(
            "batch_latency_seconds",
            "Latency of acknowledged inserts",
            metrics.batch_latency.clone(),
        );
        registry.register_collector(Box::new(MetricsCollector(metrics.clone())));
        HttpState {
            metrics,
            health,
            max_lag,
            stall_limit: Duration::from_secs(60),
            token: None,
            registry,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encode metrics");
        out
    }

    /// Why the daemon is not ready (empty when it is).
    pub fn not_ready_reasons(&self) -> Vec<String> {
        let m = &self.metrics;
        let mut reasons = Vec::new();
        if !self.health.running.load(Relaxed) {
            reasons.push("pipeline not started".to_string());
        }
        if let Some(t) = &self.token {
            if t.seconds_until_expiry().is_none_or(|s| s <= 0) {
                reasons.push("no valid upstream token".to_string());
            }
        }
        if m.clickhouse_down.load(Relaxed) == 1 {
            reasons.push("clickhouse unreachable: inserts are failing".to_string());
        }
        let uncommitted = m
            .bytes_read
            .load(Relaxed)
            .saturating_sub(m.bytes_committed.load(Relaxed));
        let behind = uncommitted + m.backlog_bytes.load(Relaxed);
        let since = seconds_since_last_commit(m);
        if behind > 0 && since.is_some_and(|s| s > self.max_lag.as_secs_f64()) {
            reasons.push(format!(
                "lagging: {behind} bytes not committed, last commit {:.0} s ago",
                since.unwrap_or_default()
            ));
        }
        reasons
    }
}

fn seconds_since_last_commit(m: &Metrics) -> Option<f64> {
    let last = m.last_commit_unix_ms.load(Relaxed);
    (last > 0).then(|| (crate::ops::logging::unix_ms() - last) as f64 / 1000.0)
}

#[derive(Debug)]
struct MetricsCollector(Arc<Metrics>);

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for MetricsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let m = &self.0;
        counter(
            &mut enc,
            "bytes_read",
            "Bytes of complete lines read",
            m.bytes_read.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "bytes_committed",
            "Bytes whose rows ClickHouse acknowledged",
            m.bytes_committed.load(Relaxed),
        )?;
        {
            let c = ConstCounter::new(0u64);
            let mut fam =
                enc.encode_descriptor("lines", "Lines read, by class", None, c.metric_type())?;
            for (class, v) in [
                ("usage", m.lines_usage.load(Relaxed)),
                ("other", m.lines_other.load(Relaxed)),
                ("blank", m.lines_blank.load(Relaxed)),
                ("malformed", m.malformed_total()),
            ] {
                ConstCounter::new(v).encode(fam.encode_family(&[("class", class)])?)?;
            }
        }
        {
            let c = ConstCounter::new(0u64);
            let mut fam = enc.encode_descriptor(
                "malformed_lines",
                "Malformed lines, by kind",
                None,
                c.metric_type(),
            )?;
            for kind in MalformedKind::ALL {
                let v = m.lines_malformed[kind.index()].load(Relaxed);
                ConstCounter::new(v).encode(fam.encode_family(&[("kind", kind.as_str())])?)?;
            }
        }
        counter(
            &mut enc,
            "rows_inserted",
            "Rows ClickHouse acknowledged",
            m.rows_inserted.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "rows_superseding",
            "Inserted rows that replaced a smaller entry of their key",
            m.rows_superseding.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "duplicates_dropped",
            "Entries dropped because their key had an equal or better one",
            m.duplicates_dropped.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "rows_rejected",
            "Rows ClickHouse rejected (dead-lettered)",
            m.rows_rejected.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "batches_committed",
            "Acknowledged inserts",
            m.batches_committed.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "insert_failures",
            "Failed insert attempts",
            m.insert_failures.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "files_discovered",
            "Files discovered",
            m.files_discovered.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "file_opens",
            "Files the reader opened (an unchanged file is only stat-ed by scans)",
            m.file_opens.load(Relaxed),
        )?;
        {
            let c = ConstCounter::new(0u64);
            let mut fam = enc.encode_descriptor(
                "scans",
                "Looks for files: every watched folder (kind=full), or the paths wake-ups named (kind=paths)",
                None,
                c.metric_type(),
            )?;
            for (kind, v) in [
                ("full", m.scans_full.load(Relaxed)),
                ("paths", m.scans_paths.load(Relaxed)),
            ] {
                ConstCounter::new(v).encode(fam.encode_family(&[("kind", kind)])?)?;
            }
        }
        counter(
            &mut enc,
            "wakeups",
            "Wake-ups the file watcher sent the reader",
            m.wakeups.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "wakeups_dropped",
            "Wake-ups not queued because the queue was full (rescans cover them)",
            m.wakeups_dropped.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "watch_events_ignored",
            "File notifications that cannot mean new data (opens, reads, attribute changes)",
            m.watch_events_ignored.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "file_errors",
            "Per-file read errors",
            m.file_errors.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "dedup_evicted_keys",
            "Keys the dedup index forgot because of its limit",
            m.dedup_evicted.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "dedup_lookups",
            "Batches whose keys older than the index's window were looked up in ClickHouse",
            m.dedup_lookups.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "dedup_lookup_keys",
            "Keys looked up in ClickHouse",
            m.dedup_lookup_keys.load(Relaxed),
        )?;
        gauge(
            &mut enc,
            "files_watched",
            "Files tracked",
            m.files_tracked.load(Relaxed) as f64,
        )?;
        gauge(
            &mut enc,
            "channel_depth",
            "Chunks waiting for the sink",
            m.channel_depth.load(Relaxed) as f64,
        )?;
        gauge(
            &mut enc,
            "channel_bytes",
            "Bytes of parsed rows waiting for the sink (bounded by batch.channel_max_bytes)",
            m.channel_bytes.load(Relaxed) as f64,
        )?;
        gauge(
            &mut enc,
            "dedup_keys",
            "Keys in the dedup index",
            m.dedup_keys.load(Relaxed) as f64,
        )?;
        let uncommitted = m
            .bytes_read
            .load(Relaxed)
            .saturating_sub(m.bytes_committed.load(Relaxed));
        gauge(
            &mut enc,
            "backlog_bytes",
            "Unread bytes behind the checkpoints (unread plus read but uncommitted)",
            (uncommitted + m.backlog_bytes.load(Relaxed)) as f64,
        )?;
        gauge(
            &mut enc,
            "seconds_since_last_commit",
            "Seconds since the last acknowledged insert (-1: none yet)",
            seconds_since_last_commit(m).unwrap_or(-1.0),
        )?;
        gauge(
            &mut enc,
            "clickhouse_up",
            "1 when the last insert succeeded",
            (1 - m.clickhouse_down.load(Relaxed).min(1)) as f64,
        )?;
        {
            let cost = m.analysis_cost();
            let c = ConstCounter::new(0u64);
            let mut fam = enc.encode_descriptor(
                "analysis_cpu_seconds",
                "CPU time parsing (path=base) and estimating content (path=enhanced)",
                None,
                c.metric_type(),
            )?;
            for (path, ns) in [
                ("base", m.parse_ns_base.load(Relaxed)),
                ("enhanced", m.parse_ns_enhanced.load(Relaxed)),
            ] {
                ConstCounter::new(ns as f64 / 1e9).encode(fam.encode_family(&[("path", path)])?)?;
            }
            let mut fam = enc.encode_descriptor(
                "analysis_insert_bytes",
                "Approximate bytes inserted: messages and file_naive (path=base), content (path=enhanced)",
                None,
                c.metric_type(),
            )?;
            for (path, b) in [
                ("base", cost.base_insert_bytes),
                ("enhanced", cost.enhanced_insert_bytes),
            ] {
                ConstCounter::new(b).encode(fam.encode_family(&[("path", path)])?)?;
            }
            let g = ConstGauge::new(0.0);
            let mut fam = enc.encode_descriptor(
                "analysis_cpu_ms_per_mb",
                "CPU milliseconds per MB read: parsing (path=base), content estimation on top (path=enhanced)",
                None,
                g.metric_type(),
            )?;
            for (path, v) in [
                ("base", cost.base_cpu_ms_per_mb),
                ("enhanced", cost.enhanced_cpu_ms_per_mb),
            ] {
                ConstGauge::new(v).encode(fam.encode_family(&[("path", path)])?)?;
            }
        }
        counter(
            &mut enc,
            "content_rows_inserted",
            "Content estimate rows ClickHouse acknowledged (enhanced analysis)",
            m.content_rows_inserted.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "sessions_summarized",
            "Session summaries recomputed",
            m.sessions_summarized.load(Relaxed),
        )?;
        {
            let c = ConstCounter::new(0u64);
            let mut fam = enc.encode_descriptor(
                "size_bucket",
                "Lines and batches by size bucket (bytes)",
                None,
                c.metric_type(),
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
        }
        Ok(())
    }
}

async fn metrics(State(s): State<Arc<HttpState>>) -> Response {
    let mut body = s.render();
    if let Some(t) = &s.token {
        // Appended before the terminator; these exist only with OAuth2 on.
        use std::sync::atomic::Ordering::Relaxed;
        let extra = format!(
            "# HELP tokenbridge_token_refreshes Successful token refreshes\n# TYPE tokenbridge_token_refreshes counter\ntokenbridge_token_refreshes_total {}\n\
             # HELP tokenbridge_token_refresh_failures Failed token refreshes\n# TYPE tokenbridge_token_refresh_failures counter\ntokenbridge_token_refresh_failures_total {}\n\
             # HELP tokenbridge_token_seconds_until_expiry Seconds until the upstream token expires\n# TYPE tokenbridge_token_seconds_until_expiry gauge\ntokenbridge_token_seconds_until_expiry {}\n",
            t.metrics.refreshes.load(Relaxed),
            t.metrics.failures.load(Relaxed),
            t.seconds_until_expiry().unwrap_or(-1)
        );
        body = body.replacen("# EOF\n", &(extra + "# EOF\n"), 1);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn health(State(s): State<Arc<HttpState>>) -> Response {
    match s.health.stalled(s.stall_limit) {
        None => (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))).into_response(),
        Some(part) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "stalled", "reason": format!("{part} made no progress for {} s", s.stall_limit.as_secs())})),
        )
            .into_response(),
    }
}

async fn ready(State(s): State<Arc<HttpState>>) -> Response {
    let reasons = s.not_ready_reasons();
    let code = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(serde_json::json!({"ready": reasons.is_empty(), "reasons": reasons})),
    )
        .into_response()
}

/// Binds `addr` and serves until `shutdown` resolves. Returns the bound
/// address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    state: Arc<HttpState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(event = "http_failed", error = %e, "http endpoint stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_counters() {
        let m = Arc::new(Metrics::default());
        m.rows_inserted.store(42, Relaxed);
        m.malformed(MalformedKind::TooLong);
        m.sizes.record(crate::ops::sizes::SizeKind::Line, 150);
        m.batch_latency.observe(0.02);
        let s = HttpState::new(m, Arc::new(Health::default()), Duration::from_secs(60));
        let text = s.render();
        assert!(
            text.contains("tokenbridge_rows_inserted_total 42"),
            "{text}"
        );
        assert!(
            text.contains("tokenbridge_malformed_lines_total{kind=\"too_long\"} 1"),
            "{text}"
        );
        assert!(text.contains("tokenbridge_size_bucket_total{kind=\"line\",min_bytes=\"100\",max_bytes=\"200\"} 1"), "{text}");
        assert!(
            text.contains("tokenbridge_batch_latency_seconds_count 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        assert!(!s.not_ready_reasons().is_empty());
    }
}
