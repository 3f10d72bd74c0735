//! Budgets: `[[budgets]]` limits on tokens or cost over a period (the
//! current 5-hour billing block, day, week or month) for everything or one
//! project, host, user or agent. After ClickHouse acknowledges new rows, each
//! budget's use in its current period is read back (exact, deduplicated);
//! crossing the warning fraction logs `budget_warning`, crossing the limit
//! `budget_exceeded`, each once per period, remembered in the state dir
//! (`budgets.json`) so a restart does not fire them again. The use is a
//! gauge in `/metrics`, and an optional webhook receives each event as JSON
//! (retried on its own thread; ingestion never waits for it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ch::ChClient;
use crate::ops::shutdown::Shutdown;

/// How long a period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// The current 5-hour billing block (see [`crate::report::blocks`]).
    Block,
    /// The local day.
    Day,
    /// The local week (starting Sunday, as reports).
    Week,
    /// The local month.
    Month,
}

impl Period {
    fn name(self) -> &'static str {
        match self {
            Period::Block => "block",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }
}

/// What a budget limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// Cost in USD (as calculated at insert).
    Usd(f64),
    /// Tokens of every kind.
    Tokens(u64),
}

/// Which rows a budget counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// All of them.
    All,
    /// One project.
    Project(String),
    /// One host.
    Host(String),
    /// One user.
    User(String),
    /// One agent.
    Agent(crate::format::agent::Agent),
}

/// Where a budget's events are also sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// URL that receives a JSON POST per event.
    pub url: String,
    /// A header sent with it (name, secret value), e.g. an authorization.
    pub header: Option<(String, crate::secret::Secret)>,
}

/// One `[[budgets]]` entry, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// Unique name (logs, gauge, state).
    pub name: String,
    /// The period it resets with.
    pub period: Period,
    /// The limit.
    pub limit: Limit,
    /// Fraction of the limit that warns (default 0.8).
    pub warn_at: f64,
    /// Which rows count.
    pub scope: Scope,
    /// Minutes east of UTC where days, weeks and months are cut.
    pub tz_offset_min: i32,
    /// Optional webhook.
    pub webhook: Option<Webhook>,
}

/// What was already said about a budget in its current period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Fired {
    period_start_ms: i64,
    warned: bool,
    exceeded: bool,
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// The start of the day/week/month holding `now_ms` (local to `tz`).
fn calendar_start(period: Period, now_ms: i64, tz_offset_min: i32) -> i64 {
    let off = i64::from(tz_offset_min) * 60_000;
    let local = now_ms + off;
    let day = local.div_euclid(DAY_MS);
    let start_day = match period {
        Period::Day | Period::Block => day,
        // 1970-01-01 was a Thursday; weeks start on Sunday.
        Period::Week => day - (day + 4).rem_euclid(7),
        Period::Month => {
            let date = crate::timestamp::utc_date(day * DAY_MS);
            let first = format!("{}-01T00:00:00Z", &date[..7]);
            crate::timestamp::parse_rfc3339_ms(&first).unwrap_or(day * DAY_MS) / DAY_MS
        }
    };
    start_day * DAY_MS - off
}

/// Checks budgets against ClickHouse and fires their events.
pub struct Watcher {
    budgets: Vec<Budget>,
    client: ChClient,
    runtime: tokio::runtime::Handle,
    state_file: PathBuf,
    fired: BTreeMap<String, Fired>,
    metrics: Arc<crate::ops::metrics::Metrics>,
    hooks: Option<crossbeam_channel::Sender<(Webhook, serde_json::Value)>>,
}

impl Watcher {
    /// A watcher whose remembered events live in `state_dir`.
    pub fn new(
        budgets: Vec<Budget>,
        client: ChClient,
        runtime: tokio::runtime::Handle,
        state_dir: &Path,
        metrics: Arc<crate::ops::metrics::Metrics>,
        shutdown: &Shutdown,
    ) -> Watcher {
        let state_file = state_dir.join("budgets.json");
        let fired = std::fs::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let hooks = budgets
            .iter()
            .any(|b| b.webhook.is_some())
            .then(|| spawn_sender(shutdown.clone()));
        Watcher {
            budgets,
            client,
            runtime,
            state_file,
            fired,
            metrics,
            hooks,
        }
    }

    /// Checks every budget at `now_ms`; fires what crossed.
    pub fn check(&mut self, now_ms: i64) {
        let mut changed = false;
        for b in self.budgets.clone() {
            let (start, used) = match self.usage(&b, now_ms) {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(event = "budget_check_failed", budget = %b.name, error = %e, "could not read a budget's use");
                    continue;
                }
            };
            let limit = match b.limit {
                Limit::Usd(l) => l,
                Limit::Tokens(t) => t as f64,
            };
            let ratio = if limit > 0.0 { used / limit } else { 0.0 };
            self.metrics
                .budgets
                .lock()
                .expect("budgets")
                .insert(b.name.clone(), ratio);
            let f = self.fired.entry(b.name.clone()).or_default();
            if f.period_start_ms != start {
                *f = Fired {
                    period_start_ms: start,
                    ..Fired::default()
                };
                changed = true;
            }
            let unit = match b.limit {
                Limit::Usd(_) => "usd",
                Limit::Tokens(_) => "tokens",
            };
            let fire = |event: &'static str| {
                let period_start = crate::timestamp::format_rfc3339_ms(start);
                if event == "budget_exceeded" {
                    tracing::warn!(event, budget = %b.name, period = b.period.name(), period_start = %period_start, used, limit, unit, "budget exceeded");
                } else {
                    tracing::warn!(event, budget = %b.name, period = b.period.name(), period_start = %period_start, used, limit, unit, "budget nearly used");
                }
                if let (Some(hook), Some(tx)) = (&b.webhook, &self.hooks) {
                    let body = serde_json::json!({
                        "event": event, "budget": b.name, "period": b.period.name(),
                        "periodStart": period_start, "used": used, "limit": limit, "unit": unit,
                    });
                    let _ = tx.try_send((hook.clone(), body));
                }
            };
            if ratio >= b.warn_at && !f.warned {
                f.warned = true;
                changed = true;
                fire("budget_warning");
            }
            if ratio >= 1.0 && !f.exceeded {
                f.exceeded = true;
                changed = true;
                fire("budget_exceeded");
            }
        }
        if changed {
            let bytes = serde_json::to_vec_pretty(&self.fired).expect("json");
            if let Err(e) = crate::ops::state::atomic_write(&self.state_file, &bytes, 0o600) {
                tracing::warn!(event = "budget_state_save_failed", error = %e, "could not save which budget events fired");
            }
        }
    }

    /// The budget's current period start and its use so far.
    fn usage(&self, b: &Budget, now_ms: i64) -> Result<(i64, f64), crate::ch::ChError> {
        let scope = match &b.scope {
            Scope::All => String::new(),
            Scope::Project(p) => format!(" AND project = {}", crate::ch::schema::quote(p)),
            Scope::Host(h) => format!(" AND host = {}", crate::ch::schema::quote(h)),
            Scope::User(u) => format!(" AND user = {}", crate::ch::schema::quote(u)),
            Scope::Agent(a) => format!(" AND agent = {}", crate::ch::schema::quote(a.name())),
        };
        let start = match b.period {
            Period::Block => {
                let since = now_ms - 10 * HOUR_MS;
                let rows = crate::ch::schema::final_rows(
                    "{db}",
                    crate::ch::schema::table(crate::ch::schema::MESSAGES),
                    "ts_ms",
                    Some(&format!("ts_ms >= {since}{scope}")),
                );
                let times: Vec<i64> = self
                    .runtime
                    .block_on(self.client.column_i64(&format!("{rows} ORDER BY ts_ms")))?;
                match active_block_start(&times, now_ms) {
                    Some(s) => s,
                    None => return Ok((now_ms.div_euclid(HOUR_MS) * HOUR_MS, 0.0)),
                }
            }
            p => calendar_start(p, now_ms, b.tz_offset_min),
        };
        let value = match b.limit {
            Limit::Usd(_) => "toFloat64(sum(cost_usd))",
            Limit::Tokens(_) => "toFloat64(sum(input_tokens + output_tokens + cache_creation_input_tokens + cache_read_input_tokens))",
        };
        let used = self.runtime.block_on(self.client.scalar_f64(&format!(
            "SELECT {value} FROM {{db}}.messages FINAL WHERE ts_ms >= {start}{scope}"
        )))?;
        Ok((start, used))
    }
}

/// The shortest time between two checks while rows keep arriving.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Starts the thread that checks `budgets` when ClickHouse acknowledged new
/// rows (at most every [`CHECK_EVERY`], and once a minute regardless, so a
/// new period shows), and once more at shutdown.
pub fn spawn(
    budgets: Vec<Budget>,
    client: ChClient,
    runtime: tokio::runtime::Handle,
    state_dir: &Path,
    metrics: Arc<crate::ops::metrics::Metrics>,
    shutdown: Shutdown,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut watcher = Watcher::new(
        budgets,
        client,
        runtime,
        state_dir,
        metrics.clone(),
        &shutdown,
    );
    std::thread::Builder::new()
        .name("tokenbridge-budgets".into())
        .spawn(move || {
            use std::sync::atomic::Ordering::Relaxed;
            let mut seen = u64::MAX;
            let mut last = std::time::Instant::now() - CHECK_EVERY;
            loop {
                let stopping = shutdown.is_triggered();
                let inserted = metrics.rows_inserted.load(Relaxed);
                // Each check scans the period's rows with FINAL: at most every
                // CHECK_EVERY while rows keep arriving.
                let due = inserted != seen && last.elapsed() >= CHECK_EVERY;
                if due || last.elapsed() >= Duration::from_secs(60) || stopping {
                    seen = inserted;
                    last = std::time::Instant::now();
                    watcher.check(crate::ops::logging::unix_ms());
                }
                if stopping {
                    return;
                }
                let _ = shutdown.receiver().recv_timeout(Duration::from_secs(1));
            }
        })
}

/// The start of the 5-hour block still open at `now_ms`, from the sorted
/// entry times of the last hours (the rule of [`crate::report::blocks`]).
fn active_block_start(times: &[i64], now_ms: i64) -> Option<i64> {
    let window = 5 * HOUR_MS;
    let mut start: Option<i64> = None;
    let mut last = 0;
    for &t in times {
        match start {
            Some(s) if t - s <= window && t - last <= window => {}
            _ => start = Some(t.div_euclid(HOUR_MS) * HOUR_MS),
        }
        last = t;
    }
    start.filter(|s| now_ms - last < window && now_ms < s + window)
}

/// Starts the webhook sender: each event is POSTed, retried with back-off
/// for up to a minute, never blocking the caller (a full queue drops it,
/// logged).
fn spawn_sender(shutdown: Shutdown) -> crossbeam_channel::Sender<(Webhook, serde_json::Value)> {
    let (tx, rx) = crossbeam_channel::bounded::<(Webhook, serde_json::Value)>(64);
    std::thread::Builder::new()
        .name("tokenbridge-webhook".into())
        .spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into();
            for (hook, body) in rx {
                let mut delay = Duration::from_millis(500);
                for attempt in 1..=6u32 {
                    let mut req = agent.post(&hook.url).header("content-type", "application/json");
                    if let Some((name, secret)) = &hook.header {
                        req = req.header(name.as_str(), secret.expose());
                    }
                    match req.send(body.to_string().as_bytes()) {
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(event = "webhook_failed", url = %hook.url, attempt, error = %e, "budget webhook failed; retrying");
                            if shutdown.is_triggered() || attempt == 6 {
                                break;
                            }
                            std::thread::sleep(delay);
                            delay = (delay * 2).min(Duration::from_secs(16));
                        }
                    }
                }
            }
        })
        .expect("webhook thread");
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        crate::timestamp::parse_rfc3339_ms(s).unwrap()
    }

    #[test]
    fn calendar_periods_start_where_reports_cut_them() {
        let now = ms("2026-11-28T20:40:00Z");
        assert_eq!(
            calendar_start(Period::Day, now, 0),
            ms("2026-11-28T00:00:00Z")
        );
        // 2026-11-28 is a Saturday: the week began Sunday the 22nd.
        assert_eq!(
            calendar_start(Period::Week, now, 0),
            ms("2026-11-22T00:00:00Z")
        );
        assert_eq!(
            calendar_start(Period::Month, now, 0),
            ms("2026-11-01T00:00:00Z")
        );
        // At +05:00 it is already the 29th.
        assert_eq!(
            calendar_start(Period::Day, now, 300),
            ms("2026-11-28T19:00:00Z")
        );
    }

    #[test]
    fn the_open_block_is_found_from_recent_entries() {
        let t = [
            ms("2026-11-28T10:10:00Z"),
            ms("2026-11-28T14:59:00Z"),
            ms("2026-11-28T15:30:00Z"),
        ];
        assert_eq!(
            active_block_start(&t, ms("2026-11-28T16:00:00Z")),
            Some(ms("2026-11-28T15:00:00Z"))
        );
        assert_eq!(
            active_block_start(&t, ms("2026-11-28T21:00:00Z")),
            None,
            "closed"
        );
        assert_eq!(active_block_start(&[], 0), None);
    }
}
