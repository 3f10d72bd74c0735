//! Reports: deduplicated usage grouped by day, month, session or model, with
//! cost, in ccusage's JSON shape (`daily[]`, `monthly[]`, `sessions[]`,
//! `models[]`, each with `modelBreakdowns[]`, and `totals`) or as an aligned
//! text table. The same code serves `report` (rows from ClickHouse) and `scan`
//! (rows straight from files).

pub mod blocks;
pub mod codex;
pub mod scan;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::format::agent::Agent;
use crate::price::{PriceTable, TokenUse};
use crate::record::UsageRow;
use crate::timestamp::{format_rfc3339_ms, utc_date};

/// One deduplicated message, as reports need it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entry {
    /// Unix ms.
    pub ts_ms: i64,
    /// Session id.
    pub session_id: String,
    /// Project folder.
    pub project: String,
    /// Model.
    pub model: String,
    /// Tokens.
    pub usage: TokenUse,
    /// The agent that wrote it.
    pub agent: Agent,
    /// Reasoning tokens (inside `usage.output`; Codex reports them).
    pub reasoning: u64,
    /// The model is a fallback: the source named none (Codex).
    pub fallback_model: bool,
    /// The cost the line recorded (older Claude Code versions' `costUSD`).
    pub recorded_cost: Option<f64>,
    /// The host it was written on.
    pub host: String,
    /// The person it belongs to.
    pub user: String,
}

impl Entry {
    /// The entry's cost in `mode`.
    pub fn cost(&self, mode: crate::price::CostMode, prices: &PriceTable) -> f64 {
        mode.pick(self.recorded_cost, || {
            prices
                .price_for(self.agent, &self.model, self.ts_ms)
                .map_or(0.0, |p| p.cost(&self.usage))
        })
    }

    /// The agent of a stored `agent` value (empty in rows written before
    /// the column existed: Claude Code's).
    pub fn agent_of(stored: &str) -> Agent {
        Agent::from_name(stored).unwrap_or(Agent::Claude)
    }

    /// Whether a stored `entry_type` marks a fallback model.
    pub fn is_fallback(entry_type: &str) -> bool {
        entry_type.ends_with(":fallback_model")
    }
}

impl From<&UsageRow> for Entry {
    fn from(r: &UsageRow) -> Entry {
        Entry {
            ts_ms: r.ts_ms,
            session_id: r.session_id.to_string(),
            project: r.project.to_string(),
            model: r.model.to_string(),
            usage: r.token_use(),
            agent: Entry::agent_of(&r.agent),
            reasoning: r.reasoning_tokens,
            fallback_model: Entry::is_fallback(&r.entry_type),
            recorded_cost: r.recorded_cost_usd,
            host: r.host.to_string(),
            user: r.user.to_string(),
        }
    }
}

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// By local day.
    Daily,
    /// By local month.
    Monthly,
    /// By session id.
    Session,
    /// By model.
    Model,
    /// By host.
    Host,
    /// By user.
    User,
    /// By local week (starting on [`Filter::start_of_week`]).
    Weekly,
    /// Billing blocks (see [`blocks`]).
    Blocks,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        match s {
            "daily" => Ok(Kind::Daily),
            "monthly" => Ok(Kind::Monthly),
            "session" => Ok(Kind::Session),
            "model" => Ok(Kind::Model),
            "host" => Ok(Kind::Host),
            "user" => Ok(Kind::User),
            "weekly" => Ok(Kind::Weekly),
            "blocks" => Ok(Kind::Blocks),
            other => Err(format!(
                "unknown report {other:?}: use daily, weekly, monthly, session, model, host, user or blocks"
            )),
        }
    }
}

/// Which rows, in which time zone.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// First day included (`YYYY-MM-DD` or `YYYYMMDD`), in the report's zone.
    pub since: Option<String>,
    /// Last day included.
    pub until: Option<String>,
    /// Only this project.
    pub project: Option<String>,
    /// Only this agent's entries (and its ccusage shape where it has one).
    pub agent: Option<Agent>,
    /// Only this host's entries.
    pub host: Option<String>,
    /// Only this user's entries.
    pub user: Option<String>,
    /// Recorded or calculated cost.
    pub cost_mode: crate::price::CostMode,
    /// Zone offset from UTC in minutes (days and months are cut there).
    pub tz_offset_min: i32,
    /// The first day of a week for `weekly`: 0 Sunday (the default, as
    /// ccusage) … 6 Saturday.
    pub start_of_week: u8,
    /// What `blocks` shows.
    pub blocks: blocks::BlockOptions,
}

/// The day number (0 Sunday … 6 Saturday) of a `--start-of-week` name.
pub fn parse_weekday(s: &str) -> Result<u8, String> {
    const DAYS: [&str; 7] = [
        "sunday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
    ];
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(s))
        .map(|i| i as u8)
        .ok_or_else(|| format!("start of week {s:?}: one of {}", DAYS.join(", ")))
}

/// The first day (`YYYY-MM-DD`) of the week holding local day `day`.
fn week_of(day: &str, start_of_week: u8) -> String {
    let ms = crate::timestamp::parse_rfc3339_ms(&format!("{day}T00:00:00Z")).unwrap_or(0);
    let days = ms.div_euclid(86_400_000);
    // 1970-01-01 was a Thursday (4).
    let weekday = (days + 4).rem_euclid(7);
    let back = (weekday - i64::from(start_of_week)).rem_euclid(7);
    utc_date((days - back) * 86_400_000)
}

/// Parses `UTC`, `Z`, `+HH:MM` or `-HH:MM` into minutes east of UTC.
pub fn parse_timezone(s: &str) -> Result<i32, String> {
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return Ok(0);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(format!("timezone {s:?}: use UTC or an offset like +02:00")),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let (h, m): (i32, i32) = (
        h.parse()
            .map_err(|_| format!("timezone {s:?}: bad hours"))?,
        m.parse()
            .map_err(|_| format!("timezone {s:?}: bad minutes"))?,
    );
    if h > 14 || m > 59 {
        return Err(format!("timezone {s:?}: out of range"));
    }
    Ok(sign * (h * 60 + m))
}

fn norm_date(d: &str) -> String {
    if d.len() == 8 && d.chars().all(|c| c.is_ascii_digit()) {
        format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..])
    } else {
        d.to_string()
    }
}

#[derive(Default)]
struct Tot {
    input: u64,
    output: u64,
    cache_creation: u64,
    cache_read: u64,
    cost: f64,
    messages: u64,
}

impl Tot {
    fn add(&mut self, u: &TokenUse, cost: f64) {
        self.input += u.input;
        self.output += u.output;
        self.cache_creation += u.cache_creation;
        self.cache_read += u.cache_read;
        self.cost += cost;
        self.messages += 1;
    }
    fn total(&self) -> u64 {
        self.input + self.output + self.cache_creation + self.cache_read
    }
    fn json(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("inputTokens".into(), json!(self.input));
        m.insert("outputTokens".into(), json!(self.output));
        m.insert("cacheCreationTokens".into(), json!(self.cache_creation));
        m.insert("cacheReadTokens".into(), json!(self.cache_read));
        m.insert("totalTokens".into(), json!(self.total()));
        m.insert("totalCost".into(), json!(self.cost));
        m
    }
}

#[derive(Default)]
struct Group {
    tot: Tot,
    models: BTreeMap<String, Tot>,
    agents: BTreeMap<Agent, Tot>,
    first_ms: i64,
    last_ms: i64,
    project: String,
}

/// Builds the report as JSON in ccusage's shape: Codex's own shape with
/// `--agent codex`, the common one otherwise (with per-agent rows when the
/// report spans several agents).
pub fn build(entries: &[Entry], kind: Kind, filter: &Filter, prices: &PriceTable) -> Value {
    if kind == Kind::Blocks {
        return blocks::build(entries, filter, prices, &filter.blocks);
    }
    if filter.agent == Some(Agent::Codex) {
        return codex::build(entries, kind, filter, prices);
    }
    build_common(entries, kind, filter, prices)
}

/// The entries a filter keeps, in a fixed order (so that float sums, and the
/// report, do not depend on the order rows came in), each with its local day.
pub(crate) fn selected<'a>(entries: &'a [Entry], filter: &Filter) -> Vec<(&'a Entry, String)> {
    let since = filter.since.as_deref().map(norm_date);
    let until = filter.until.as_deref().map(norm_date);
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (
            a.ts_ms,
            &a.session_id,
            &a.model,
            a.usage.input,
            a.usage.output,
            a.usage.cache_creation,
            a.usage.cache_read,
        )
            .cmp(&(
                b.ts_ms,
                &b.session_id,
                &b.model,
                b.usage.input,
                b.usage.output,
                b.usage.cache_creation,
                b.usage.cache_read,
            ))
    });
    sorted
        .into_iter()
        .filter(|e| filter.agent.is_none_or(|a| a == e.agent))
        .filter(|e| filter.project.as_deref().is_none_or(|p| p == e.project))
        .filter(|e| filter.host.as_deref().is_none_or(|h| h == e.host))
        .filter(|e| filter.user.as_deref().is_none_or(|u| u == e.user))
        .filter_map(|e| {
            let local_ms = e.ts_ms + i64::from(filter.tz_offset_min) * 60_000;
            let day = utc_date(local_ms);
            let out = since.as_deref().is_some_and(|s| day.as_str() < s)
                || until.as_deref().is_some_and(|u| day.as_str() > u);
            (!out).then_some((e, day))
        })
        .collect()
}

fn build_common(entries: &[Entry], kind: Kind, filter: &Filter, prices: &PriceTable) -> Value {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut totals = Tot::default();
    let mut agents: BTreeMap<Agent, Tot> = BTreeMap::new();
    for (e, day) in selected(entries, filter) {
        let key = match kind {
            Kind::Daily => day,
            Kind::Monthly => day[..7].to_string(),
            Kind::Session => e.session_id.clone(),
            Kind::Model => model_name(e),
            Kind::Host => e.host.clone(),
            Kind::User => e.user.clone(),
            Kind::Weekly => week_of(&day, filter.start_of_week),
            Kind::Blocks => unreachable!("blocks are built by report::blocks"),
        };
        let cost = e.cost(filter.cost_mode, prices);
        let g = groups.entry(key).or_insert_with(|| Group {
            first_ms: e.ts_ms,
            last_ms: e.ts_ms,
            project: e.project.clone(),
            ..Group::default()
        });
        g.tot.add(&e.usage, cost);
        g.models
            .entry(model_name(e))
            .or_default()
            .add(&e.usage, cost);
        g.agents.entry(e.agent).or_default().add(&e.usage, cost);
        g.first_ms = g.first_ms.min(e.ts_ms);
        g.last_ms = g.last_ms.max(e.ts_ms);
        totals.add(&e.usage, cost);
        agents.entry(e.agent).or_default().add(&e.usage, cost);
    }
    // Per-agent rows only when there is more than one agent: a Claude-only
    // report keeps exactly ccusage's shape.
    let by_agent = agents.len() > 1;
    let (list_name, key_name) = match kind {
        Kind::Daily => ("daily", "date"),
        Kind::Monthly => ("monthly", "month"),
        Kind::Session => ("sessions", "sessionId"),
        Kind::Model => ("models", "modelName"),
        Kind::Host => ("hosts", "host"),
        Kind::User => ("users", "user"),
        Kind::Weekly => ("weekly", "week"),
        Kind::Blocks => ("blocks", "id"),
    };
    let list: Vec<Value> = groups
        .into_iter()
        .map(|(key, g)| {
            let mut m = g.tot.json();
            m.insert(key_name.into(), json!(key));
            m.insert("messages".into(), json!(g.tot.messages));
            if kind != Kind::Model {
                m.insert(
                    "modelsUsed".into(),
                    json!(g.models.keys().collect::<Vec<_>>()),
                );
                let breakdowns: Vec<Value> = g
                    .models
                    .iter()
                    .map(|(name, t)| {
                        json!({
                            "modelName": name,
                            "inputTokens": t.input,
                            "outputTokens": t.output,
                            "cacheCreationTokens": t.cache_creation,
                            "cacheReadTokens": t.cache_read,
                            "cost": t.cost,
                        })
                    })
                    .collect();
                m.insert("modelBreakdowns".into(), json!(breakdowns));
            }
            if by_agent {
                m.insert("agents".into(), agent_rows(&g.agents));
            }
            if kind == Kind::Session {
                m.insert("projectPath".into(), json!(g.project));
                m.insert("firstActivity".into(), json!(format_rfc3339_ms(g.first_ms)));
                m.insert("lastActivity".into(), json!(format_rfc3339_ms(g.last_ms)));
            }
            Value::Object(m)
        })
        .collect();
    let mut t = totals.json();
    t.insert("messages".into(), json!(totals.messages));
    if by_agent {
        t.insert("agents".into(), agent_rows(&agents));
    }
    json!({ list_name: list, "totals": Value::Object(t) })
}

/// The model as ccusage names it in reports: with the agent's prefix
/// (`[pi] claude-sonnet-4-5`) where ccusage adds one.
fn model_name(e: &Entry) -> String {
    format!("{}{}", e.agent.model_prefix(), e.model)
}

/// `[{agent, inputTokens, …, totalCost}]`, one per agent.
fn agent_rows(agents: &BTreeMap<Agent, Tot>) -> Value {
    Value::Array(
        agents
            .iter()
            .map(|(a, t)| {
                let mut m = t.json();
                m.insert("agent".into(), json!(a.name()));
                m.insert("messages".into(), json!(t.messages));
                Value::Object(m)
            })
            .collect(),
    )
}

/// The report as an aligned text table.
pub fn table(report: &Value, kind: Kind) -> String {
    let (list_name, key_name, title) = match kind {
        Kind::Daily => ("daily", "date", "Date"),
        Kind::Monthly => ("monthly", "month", "Month"),
        Kind::Session => ("sessions", "sessionId", "Session"),
        Kind::Model => ("models", "modelName", "Model"),
        Kind::Host => ("hosts", "host", "Host"),
        Kind::User => ("users", "user", "User"),
        Kind::Weekly => ("weekly", "week", "Week"),
        Kind::Blocks => ("blocks", "id", "Block"),
    };
    let mut rows: Vec<[String; 7]> = vec![[
        title.into(),
        "Input".into(),
        "Output".into(),
        "Cache write".into(),
        "Cache read".into(),
        "Total tokens".into(),
        "Cost (USD)".into(),
    ]];
    let row = |label: String, v: &Value| -> [String; 7] {
        [
            label,
            v["inputTokens"].to_string(),
            v["outputTokens"].to_string(),
            v["cacheCreationTokens"].to_string(),
            v["cacheReadTokens"].to_string(),
            v["totalTokens"].to_string(),
            // `costUSD` in Codex's shape.
            format!(
                "{:.2}",
                v.get("totalCost")
                    .or_else(|| v.get("costUSD"))
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
            ),
        ]
    };
    for item in report[list_name].as_array().into_iter().flatten() {
        rows.push(row(
            item[key_name].as_str().unwrap_or_default().to_string(),
            item,
        ));
    }
    rows.push(row("Total".into(), &report["totals"]));
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if c == 0 {
                    format!("{s:<w$}", w = widths[c])
                } else {
                    format!("{s:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i == 0 || i == rows.len() - 2 {
            out.push_str(
                &widths
                    .iter()
                    .map(|w| "-".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("  "),
            );
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(ts_ms: i64, session: &str, model: &str, input: u64) -> Entry {
        Entry {
            ts_ms,
            session_id: session.into(),
            project: "p".into(),
            model: model.into(),
            usage: TokenUse {
                input,
                output: 1,
                ..TokenUse::default()
            },
            ..Entry::default()
        }
    }

    #[test]
    fn groups_by_local_day_and_filters() {
        let t = PriceTable::embedded();
        // 23:30 UTC on the 1st is the 2nd at +01:00.
        let late = 1_756_769_400_000; // 2025-09-01T23:30:00Z
        let rows = vec![
            e(late, "a", "claude-sonnet-4-20250514", 10),
            e(late + 3_600_000, "b", "x", 5),
        ];
        let utc = build(&rows, Kind::Daily, &Filter::default(), &t);
        assert_eq!(utc["daily"][0]["date"], "2025-09-01");
        assert_eq!(utc["daily"][1]["date"], "2025-09-02");
        let plus1 = Filter {
            tz_offset_min: parse_timezone("+01:00").unwrap(),
            ..Filter::default()
        };
        let r = build(&rows, Kind::Daily, &plus1, &t);
        assert_eq!(r["daily"].as_array().unwrap().len(), 1);
        assert_eq!(r["daily"][0]["inputTokens"], 15);
        assert_eq!(r["totals"]["totalTokens"], 17);
        let since = Filter {
            since: Some("20250902".into()),
            ..Filter::default()
        };
        assert_eq!(
            build(&rows, Kind::Daily, &since, &t)["totals"]["inputTokens"],
            5
        );
        let s = build(&rows, Kind::Session, &Filter::default(), &t);
        assert_eq!(s["sessions"][0]["sessionId"], "a");
        assert_eq!(
            s["sessions"][0]["firstActivity"],
            "2025-09-01T23:30:00.000Z"
        );
        assert!(s["sessions"][0]["totalCost"].as_f64().unwrap() > 0.0);
        let text = table(&s, Kind::Session);
        assert!(
            text.lines().count() == 6 && text.contains("Total"),
            "{text}"
        );
        assert!(parse_timezone("Europe/Paris").is_err());
    }
}
