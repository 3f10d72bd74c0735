//! The dashboard's JSON endpoints, as functions of the deduplicated
//! entries: the same filters, grouping and prices as `report`, so the page
//! shows what `report … --json` prints.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::ops::metrics::Metrics;
use crate::price::{CostMode, PriceTable};
use crate::report::{self, Entry, Filter, Kind};

/// Query parameters every endpoint understands.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    /// First day (`YYYY-MM-DD`).
    pub since: Option<String>,
    /// Last day.
    pub until: Option<String>,
    /// `UTC` or `+HH:MM`.
    pub tz: Option<String>,
    /// How `usage` stacks its series: model (default), project, host, user
    /// or agent.
    pub group: Option<String>,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this host.
    pub host: Option<String>,
    /// Only this user.
    pub user: Option<String>,
    /// Only this project.
    pub project: Option<String>,
    /// A session id (`session`).
    pub id: Option<String>,
    /// Rows listed (`sessions`, default 50).
    pub limit: Option<usize>,
    /// The access token, when not sent as a header.
    pub token: Option<String>,
}

/// The report filter of `q`.
fn filter(q: &Params, mode: CostMode) -> Result<Filter, String> {
    Ok(Filter {
        since: q.since.clone().filter(|s| !s.is_empty()),
        until: q.until.clone().filter(|s| !s.is_empty()),
        project: q.project.clone().filter(|s| !s.is_empty()),
        agent: match q.agent.as_deref().filter(|s| !s.is_empty()) {
            Some(a) => Some(a.parse()?),
            None => None,
        },
        host: q.host.clone().filter(|s| !s.is_empty()),
        user: q.user.clone().filter(|s| !s.is_empty()),
        cost_mode: mode,
        tz_offset_min: report::parse_timezone(q.tz.as_deref().unwrap_or("UTC"))?,
        ..Filter::default()
    })
}

fn group_of(e: &Entry, group: &str) -> String {
    match group {
        "project" => e.project.clone(),
        "host" => e.host.clone(),
        "user" => e.user.clone(),
        "agent" => e.agent.name().to_string(),
        _ => e.model.clone(),
    }
}

/// One group's tokens and cost, by day.
type DaySums = (BTreeMap<String, u64>, BTreeMap<String, f64>);

/// `/api/usage`: totals for the range (`report daily`'s), and per day the
/// tokens and cost of each group (model, project, host, user or agent).
pub fn usage(
    entries: &[Entry],
    q: &Params,
    prices: &PriceTable,
    mode: CostMode,
) -> Result<Value, String> {
    let f = filter(q, mode)?;
    let group = q.group.as_deref().unwrap_or("model");
    if !["model", "project", "host", "user", "agent"].contains(&group) {
        return Err(format!(
            "group {group:?}: model, project, host, user or agent"
        ));
    }
    // Agent-specific shapes aside, the common report's totals.
    let common = Filter {
        agent: None,
        ..f.clone()
    };
    let scoped: Vec<Entry> = entries
        .iter()
        .filter(|e| f.agent.is_none_or(|a| a == e.agent))
        .cloned()
        .collect();
    let daily = report::build(&scoped, Kind::Daily, &common, prices);
    let mut days: Vec<String> = Vec::new();
    let mut series: BTreeMap<String, DaySums> = BTreeMap::new();
    for (e, day) in report::selected(&scoped, &common) {
        if days.last() != Some(&day) && !days.contains(&day) {
            days.push(day.clone());
        }
        let s = series.entry(group_of(e, group)).or_default();
        *s.0.entry(day.clone()).or_default() +=
            e.usage.input + e.usage.output + e.usage.cache_creation + e.usage.cache_read;
        *s.1.entry(day).or_default() += e.cost(mode, prices);
    }
    days.sort();
    let series: Vec<Value> = series
        .into_iter()
        .map(|(name, (tokens, cost))| {
            let total: u64 = tokens.values().sum();
            json!({
                "name": name,
                "totalTokens": total,
                "totalCost": cost.values().sum::<f64>(),
                "tokens": days.iter().map(|d| tokens.get(d).copied().unwrap_or(0)).collect::<Vec<_>>(),
                "cost": days.iter().map(|d| cost.get(d).copied().unwrap_or(0.0)).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({
        "group": group,
        "days": days,
        "series": series,
        "totals": daily["totals"],
    }))
}

/// `/api/windows`: the active 5-hour block (burn rate, projection) and the
/// current week, at `now_ms`.
pub fn windows(
    entries: &[Entry],
    q: &Params,
    prices: &PriceTable,
    mode: CostMode,
    now_ms: i64,
) -> Result<Value, String> {
    let mut f = filter(q, mode)?;
    f.since = None;
    f.until = None;
    f.blocks = report::blocks::BlockOptions {
        session_hours: 5.0,
        active_only: true,
        token_limit: None,
        now_ms,
    };
    let blocks = report::build(entries, Kind::Blocks, &f, prices);
    let today = crate::timestamp::utc_date(now_ms + i64::from(f.tz_offset_min) * 60_000);
    let weekly = report::build(entries, Kind::Weekly, &f, prices);
    let week = weekly["weekly"]
        .as_array()
        .and_then(|w| {
            w.iter()
                .rev()
                .find(|w| w["week"].as_str().is_some_and(|d| d <= today.as_str()))
        })
        .cloned()
        .unwrap_or(Value::Null);
    let this_week = week["week"].as_str().is_some_and(|d| {
        let start = crate::timestamp::parse_rfc3339_ms(&format!("{d}T00:00:00Z")).unwrap_or(0);
        let now_local =
            crate::timestamp::parse_rfc3339_ms(&format!("{today}T00:00:00Z")).unwrap_or(0);
        now_local - start < 7 * 86_400_000
    });
    Ok(json!({
        "now": crate::timestamp::format_rfc3339_ms(now_ms),
        "block": blocks["blocks"].get(0).cloned().unwrap_or(Value::Null),
        "week": if this_week { week } else { Value::Null },
    }))
}

/// `/api/sessions`: the range's sessions, most tokens first (`report
/// session`'s numbers), with each one's cache share and, where known, the
/// naive total (every usage line summed) and how far it overcounts.
pub fn sessions(
    entries: &[Entry],
    naive: &std::collections::HashMap<String, u64>,
    q: &Params,
    prices: &PriceTable,
    mode: CostMode,
) -> Result<Value, String> {
    let f = filter(q, mode)?;
    let r = report::build(
        entries,
        Kind::Session,
        &Filter {
            agent: None,
            ..f.clone()
        },
        prices,
    );
    let mut list: Vec<Value> = r["sessions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| {
            f.agent.is_none_or(|a| {
                s["agents"]
                    .as_array()
                    .is_none_or(|ag| ag.iter().any(|x| x["agent"] == a.name()))
            })
        })
        .map(|mut s| {
            let total = s["totalTokens"].as_f64().unwrap_or(0.0);
            let cached = s["cacheReadTokens"].as_f64().unwrap_or(0.0)
                + s["cacheCreationTokens"].as_f64().unwrap_or(0.0);
            s["cacheSharePct"] = json!(if total > 0.0 {
                cached * 100.0 / total
            } else {
                0.0
            });
            let n = s["sessionId"]
                .as_str()
                .and_then(|id| naive.get(id))
                .copied();
            s["naiveTotalTokens"] = json!(n);
            s["overcountPct"] = json!(n
                .filter(|_| total > 0.0)
                .map(|n| (n as f64 - total) * 100.0 / total));
            s
        })
        .collect();
    list.sort_by(|a, b| b["totalTokens"].as_u64().cmp(&a["totalTokens"].as_u64()));
    let total = list.len();
    list.truncate(q.limit.unwrap_or(50));
    Ok(json!({"sessions": list, "count": total}))
}

/// `/api/session?id=…`: one session's entries in time order.
pub fn session(
    entries: &[Entry],
    q: &Params,
    prices: &PriceTable,
    mode: CostMode,
) -> Result<Value, String> {
    let id = q.id.as_deref().ok_or("id is required")?;
    let f = filter(q, mode)?;
    let rows: Vec<Value> = report::selected(entries, &Filter { since: None, until: None, ..f })
        .into_iter()
        .filter(|(e, _)| e.session_id == id)
        .map(|(e, _)| {
            json!({
                "time": crate::timestamp::format_rfc3339_ms(e.ts_ms),
                "model": e.model,
                "agent": e.agent.name(),
                "inputTokens": e.usage.input,
                "outputTokens": e.usage.output,
                "cacheCreationTokens": e.usage.cache_creation,
                "cacheReadTokens": e.usage.cache_read,
                "totalTokens": e.usage.input + e.usage.output + e.usage.cache_creation + e.usage.cache_read,
                "cost": e.cost(mode, prices),
            })
        })
        .collect();
    Ok(json!({"sessionId": id, "entries": rows}))
}

/// `/api/status`: the pipeline's own state (the daemon's counters), or
/// `standalone`.
pub fn status(m: Option<&Metrics>, rows_per_second: Option<f64>) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(m) = m else {
        return json!({"mode": "standalone"});
    };
    json!({
        "mode": "daemon",
        "clickhouseUp": m.clickhouse_down.load(Relaxed) == 0,
        "backlogBytes": m.bytes_behind(),
        "rowsInserted": m.rows_inserted.load(Relaxed),
        "filesWatched": m.files_tracked.load(Relaxed),
        "secondsSinceLastCommit": m.seconds_since_last_commit(),
        "rowsPerSecond": rows_per_second.unwrap_or(0.0),
        "budgets": m.budgets.lock().expect("budgets").clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::TokenUse;

    fn e(ts: &str, model: &str, session: &str, input: u64) -> Entry {
        Entry {
            ts_ms: crate::timestamp::parse_rfc3339_ms(ts).unwrap(),
            session_id: session.into(),
            model: model.into(),
            project: "p".into(),
            usage: TokenUse {
                input,
                ..TokenUse::default()
            },
            ..Entry::default()
        }
    }

    #[test]
    fn usage_stacks_groups_per_day_and_totals_match_the_daily_report() {
        let entries = [
            e("2026-11-20T23:30:00Z", "claude-sonnet-4-5", "a", 100),
            e("2026-11-21T10:00:00Z", "claude-haiku-4-5", "a", 10),
            e("2026-11-21T11:00:00Z", "claude-sonnet-4-5", "b", 1),
        ];
        let t = PriceTable::embedded();
        let v = usage(&entries, &Params::default(), &t, CostMode::Auto).unwrap();
        assert_eq!(v["days"], json!(["2026-11-20", "2026-11-21"]));
        assert_eq!(v["totals"]["totalTokens"], 111);
        let sonnet = v["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "claude-sonnet-4-5")
            .unwrap();
        assert_eq!(sonnet["tokens"], json!([100, 1]));
        // At +01:00 the first entry falls on the 21st.
        let q = Params {
            tz: Some("+01:00".into()),
            ..Params::default()
        };
        assert_eq!(
            usage(&entries, &q, &t, CostMode::Auto).unwrap()["days"],
            json!(["2026-11-21"])
        );
        let bad = Params {
            group: Some("colour".into()),
            ..Params::default()
        };
        assert!(usage(&entries, &bad, &t, CostMode::Auto).is_err());
    }

    #[test]
    fn sessions_and_one_sessions_timeline() {
        let entries = [
            e("2026-11-21T10:00:00Z", "m", "a", 10),
            e("2026-11-21T10:01:00Z", "m", "a", 20),
            e("2026-11-21T11:00:00Z", "m", "b", 1),
        ];
        let t = PriceTable::embedded();
        let naive = std::collections::HashMap::from([("a".to_string(), 60u64)]);
        let s = sessions(&entries, &naive, &Params::default(), &t, CostMode::Auto).unwrap();
        assert_eq!(s["sessions"][0]["sessionId"], "a");
        assert_eq!(s["sessions"][0]["overcountPct"], 100.0);
        assert!(s["sessions"][1]["overcountPct"].is_null());
        let q = Params {
            id: Some("a".into()),
            ..Params::default()
        };
        let one = session(&entries, &q, &t, CostMode::Auto).unwrap();
        assert_eq!(one["entries"].as_array().unwrap().len(), 2);
        assert_eq!(status(None, None)["mode"], "standalone");
    }
}
