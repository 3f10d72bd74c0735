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
use prometheus_client::registry::Registry;

use crate::auth::token::TokenManager;
use crate::ops::exposition::MetricsCollector;
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
    pub token: Option<Arc<TokenManager>>,
    registry: Registry,
}

impl HttpState {
    /// State with a registry holding every tokenbridge metric (and the
    /// token's, when there is one).
    pub fn new(
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        max_lag: Duration,
        token: Option<Arc<TokenManager>>,
    ) -> HttpState {
        let mut registry = Registry::with_prefix("tokenbridge");
        registry.register(
            "batch_latency_seconds",
            "Latency of acknowledged inserts",
            metrics.batch_latency.clone(),
        );
        registry.register_collector(Box::new(MetricsCollector {
            metrics: metrics.clone(),
            token: token.clone(),
        }));
        HttpState {
            metrics,
            health,
            max_lag,
            stall_limit: Duration::from_secs(60),
            token,
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
        let behind = m.bytes_behind();
        let since = m.seconds_since_last_commit();
        if behind > 0 && since.is_some_and(|s| s > self.max_lag.as_secs_f64()) {
            reasons.push(format!(
                "lagging: {behind} bytes not committed, last commit {:.0} s ago",
                since.unwrap_or_default()
            ));
        }
        reasons
    }
}

async fn metrics(State(s): State<Arc<HttpState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.render(),
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

/// Binds `addr` and serves (with the dashboard's routes, when given) until
/// `shutdown` resolves. Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    state: Arc<HttpState>,
    dashboard: Option<Router>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state);
    if let Some(d) = dashboard {
        app = app.merge(d);
    }
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
        m.malformed(crate::format::MalformedKind::TooLong);
        m.sizes.record(crate::ops::sizes::SizeKind::Line, 150);
        m.batch_latency.observe(0.02);
        let s = HttpState::new(
            m,
            Arc::new(Health::default()),
            Duration::from_secs(60),
            None,
        );
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
