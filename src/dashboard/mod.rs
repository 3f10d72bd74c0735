//! The dashboard: one page (`GET /`, embedded in the binary, no network at
//! run time) and the read-only JSON endpoints it calls (`/api/…`), built on
//! the same entries and report code as `report` and `scan`. Served by the
//! daemon next to `/metrics`, or on its own by `tokenbridge dashboard` (from
//! a ClickHouse, or straight from transcript files).
//!
//! Loopback by default. Bound elsewhere, every dashboard request needs the
//! token from `[dashboard] token_file` (`Authorization: Bearer …` or
//! `?token=…`); without one configured the dashboard answers 403.

pub mod api;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::ch::ChClient;
use crate::ingest::discovery::Source;
use crate::ops::metrics::Metrics;
use crate::price::{CostMode, PriceTable};
use crate::report::Entry;
use crate::secret::Secret;

/// The page.
const PAGE: &str = include_str!("page.html");

/// Where the dashboard's entries come from.
pub enum DataSource {
    /// A ClickHouse database (deduplicated rows).
    ClickHouse(Box<ChClient>),
    /// Transcript files, scanned on each refresh (no database).
    Files {
        /// The folders, each of one agent.
        sources: Vec<Source>,
        /// Longest line read.
        max_line: usize,
        /// Host and user attribution.
        attribution: crate::ingest::attribution::Policy,
    },
}

/// Who may read the dashboard.
#[derive(Debug, Clone)]
pub enum Access {
    /// Bound to loopback: anyone who can connect.
    Loopback,
    /// Bound elsewhere: requests carry this token.
    Token(Secret),
    /// Bound elsewhere without a token: refused.
    Refused,
}

/// The dashboard's state.
pub struct Dashboard {
    source: DataSource,
    prices: PriceTable,
    cost_mode: CostMode,
    access: Access,
    /// The daemon's counters, for the pipeline panel (none standalone).
    metrics: Option<Arc<Metrics>>,
    cache: Mutex<Option<(Instant, Arc<Data>)>>,
    /// The last rows-inserted sample, for the insert rate.
    rate: Mutex<Option<(Instant, u64, f64)>>,
}

/// What the endpoints compute from.
pub struct Data {
    /// The deduplicated entries.
    pub entries: Vec<Entry>,
    /// Per session, what summing every usage line gives (no dedup).
    pub naive: std::collections::HashMap<String, u64>,
}

/// Entries are read again at most this often.
const CACHE_FOR: Duration = Duration::from_secs(2);

impl Dashboard {
    /// A dashboard over `source`.
    pub fn new(
        source: DataSource,
        prices: PriceTable,
        cost_mode: CostMode,
        access: Access,
        metrics: Option<Arc<Metrics>>,
    ) -> Dashboard {
        Dashboard {
            source,
            prices,
            cost_mode,
            access,
            metrics,
            cache: Mutex::new(None),
            rate: Mutex::new(None),
        }
    }

    /// The deduplicated entries and naive sums (cached for [`CACHE_FOR`]).
    async fn entries(&self) -> Result<Arc<Data>, String> {
        if let Some((at, e)) = self.cache.lock().expect("cache").as_ref() {
            if at.elapsed() < CACHE_FOR {
                return Ok(e.clone());
            }
        }
        let data = match &self.source {
            DataSource::ClickHouse(client) => Data {
                entries: client
                    .report_entries()
                    .await
                    .map_err(|e| format!("ClickHouse: {e}"))?,
                naive: client
                    .naive_totals()
                    .await
                    .map_err(|e| format!("ClickHouse: {e}"))?
                    .into_iter()
                    .collect(),
            },
            DataSource::Files {
                sources,
                max_line,
                attribution,
            } => {
                let (sources, max_line, policy) = (sources.clone(), *max_line, attribution.clone());
                tokio::task::spawn_blocking(move || {
                    let out = crate::report::scan::scan(
                        &sources,
                        max_line,
                        None,
                        &crate::ingest::attribution::Attributor::new(policy),
                    );
                    Data {
                        entries: out.rows.iter().map(Entry::from).collect(),
                        naive: out
                            .naive
                            .iter()
                            .map(|(s, t)| (s.clone(), t.total_tokens))
                            .collect(),
                    }
                })
                .await
                .map_err(|e| format!("scan: {e}"))?
            }
        };
        let data = Arc::new(data);
        *self.cache.lock().expect("cache") = Some((Instant::now(), data.clone()));
        Ok(data)
    }

    /// The answer that refuses a request, if it is refused.
    fn refusal(&self, headers: &HeaderMap, query: &api::Params) -> Option<Response> {
        match &self.access {
            Access::Loopback => None,
            Access::Refused => Some((
                StatusCode::FORBIDDEN,
                Json(serde_json::json!({"error": "the dashboard is bound beyond loopback without [dashboard] token_file; refusing"})),
            )
                .into_response()),
            Access::Token(t) => {
                let bearer = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                let given = bearer.or(query.token.as_deref());
                if given == Some(t.expose()) {
                    None
                } else {
                    Some((
                        StatusCode::UNAUTHORIZED,
                        Json(serde_json::json!({"error": "a token is required (Authorization: Bearer …, or ?token=…)"})),
                    )
                        .into_response())
                }
            }
        }
    }
}

/// The dashboard's routes (`/` and `/api/…`), to serve alone or merged into
/// the daemon's endpoint.
pub fn router(d: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/usage", get(usage))
        .route("/api/windows", get(windows))
        .route("/api/sessions", get(sessions))
        .route("/api/session", get(session))
        .route("/api/status", get(status))
        .with_state(d)
}

async fn page(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Query(q): Query<api::Params>,
) -> Response {
    if let Some(r) = d.refusal(&headers, &q) {
        return r;
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

/// Runs `f` over the entries, or answers 503 with the reason.
async fn with_entries(
    d: &Dashboard,
    headers: &HeaderMap,
    q: &api::Params,
    f: impl FnOnce(&Data, &api::Params, &PriceTable, CostMode) -> Result<serde_json::Value, String>,
) -> Response {
    if let Some(r) = d.refusal(headers, q) {
        return r;
    }
    let entries = match d.entries().await {
        Ok(e) => e,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"error": e})),
            )
                .into_response()
        }
    };
    match f(&entries, q, &d.prices, d.cost_mode) {
        Ok(v) => Json(v).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": e})),
        )
            .into_response(),
    }
}

async fn usage(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Query(q): Query<api::Params>,
) -> Response {
    with_entries(&d, &headers, &q, |data, q, p, m| {
        api::usage(&data.entries, q, p, m)
    })
    .await
}

async fn windows(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Query(q): Query<api::Params>,
) -> Response {
    with_entries(&d, &headers, &q, |data, q, p, m| {
        api::windows(&data.entries, q, p, m, crate::ops::logging::unix_ms())
    })
    .await
}

async fn sessions(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Query(q): Query<api::Params>,
) -> Response {
    with_entries(&d, &headers, &q, |data, q, p, m| {
        api::sessions(&data.entries, &data.naive, q, p, m)
    })
    .await
}

async fn session(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Query(q): Query<api::Params>,
) -> Response {
    with_entries(&d, &headers, &q, |data, q, p, m| {
        api::session(&data.entries, q, p, m)
    })
    .await
}

async fn status(
    State(d): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Query(q): Query<api::Params>,
) -> Response {
    if let Some(r) = d.refusal(&headers, &q) {
        return r;
    }
    let rate = d.metrics.as_deref().map(|m| {
        let rows = m.rows_inserted.load(std::sync::atomic::Ordering::Relaxed);
        let mut last = d.rate.lock().expect("rate");
        let now = Instant::now();
        let rate = match *last {
            Some((at, _, r)) if now.duration_since(at) < Duration::from_secs(1) => {
                return r;
            }
            Some((at, before, _)) => {
                (rows - before.min(rows)) as f64 / now.duration_since(at).as_secs_f64()
            }
            None => 0.0,
        };
        *last = Some((now, rows, rate));
        rate
    });
    Json(api::status(d.metrics.as_deref(), rate)).into_response()
}

/// Serves the dashboard alone on `addr` until `shutdown` resolves; returns
/// the bound address.
pub async fn serve(
    addr: std::net::SocketAddr,
    d: Arc<Dashboard>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(d))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(event = "http_failed", error = %e, "dashboard stopped");
        }
    });
    Ok(bound)
}

/// Who may read a dashboard bound to `addr` with an optional token.
pub fn access_for(addr: &std::net::SocketAddr, token: Option<Secret>) -> Access {
    match (addr.ip().is_loopback(), token) {
        (_, Some(t)) => Access::Token(t),
        (true, None) => Access::Loopback,
        (false, None) => Access::Refused,
    }
}
