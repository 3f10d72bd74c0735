//! Codex reports in `ccusage codex`'s JSON shape, so its users can switch:
//! `daily[]` (or `monthly[]`, `sessions[]`) rows with `inputTokens` (the
//! non-cached input), `cacheCreationTokens` (always 0), `cacheReadTokens`,
//! `outputTokens` (reasoning included), `reasoningOutputTokens`,
//! `totalTokens`, `costUSD` and `models{}` (each with `isFallback`), and
//! `totals`. Session rows add `sessionId` (the rollout's path under
//! `sessions/` without `.jsonl`), `sessionFile`, `directory` and
//! `lastActivity`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{selected, Entry, Filter, Kind};
use crate::price::PriceTable;
use crate::timestamp::format_rfc3339_ms;

#[derive(Default)]
struct Sums {
    input: u64,
    cached: u64,
    output: u64,
    reasoning: u64,
    cost: f64,
    fallback: bool,
}

impl Sums {
    fn add(&mut self, e: &Entry, cost: f64) {
        self.input += e.usage.input;
        self.cached += e.usage.cache_read;
        self.output += e.usage.output;
        self.reasoning += e.reasoning;
        self.cost += cost;
        self.fallback |= e.fallback_model;
    }

    fn json(&self, with_cost: bool) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("inputTokens".into(), json!(self.input));
        m.insert("cacheCreationTokens".into(), json!(0));
        m.insert("cacheReadTokens".into(), json!(self.cached));
        m.insert("outputTokens".into(), json!(self.output));
        m.insert("reasoningOutputTokens".into(), json!(self.reasoning));
        m.insert(
            "totalTokens".into(),
            json!(self.input + self.cached + self.output),
        );
        if with_cost {
            m.insert("costUSD".into(), json!(self.cost));
        }
        m
    }
}

#[derive(Default)]
struct Group {
    sums: Sums,
    models: BTreeMap<String, Sums>,
    last_ms: i64,
}

/// The report of `entries` (Codex's only) in ccusage's Codex shape.
pub fn build(entries: &[Entry], kind: Kind, filter: &Filter, prices: &PriceTable) -> Value {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut totals = Sums::default();
    for (e, day) in selected(entries, filter) {
        let key = match kind {
            Kind::Daily => day,
            Kind::Monthly => day[..7].to_string(),
            Kind::Session => e.session_id.clone(),
            Kind::Model => e.model.clone(),
            Kind::Host => e.host.clone(),
            Kind::User => e.user.clone(),
            Kind::Weekly => super::week_of(&day, filter.start_of_week),
            Kind::Blocks => unreachable!("blocks are built by report::blocks"),
        };
        let cost = e.cost(filter.cost_mode, prices);
        let g = groups.entry(key).or_default();
        g.sums.add(e, cost);
        g.models.entry(e.model.clone()).or_default().add(e, cost);
        g.last_ms = g.last_ms.max(e.ts_ms);
        totals.add(e, cost);
    }
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
            let mut m = g.sums.json(true);
            m.insert(key_name.into(), json!(key));
            let models: Map<String, Value> = g
                .models
                .iter()
                .map(|(name, s)| {
                    let mut mm = s.json(false);
                    mm.insert("isFallback".into(), json!(s.fallback));
                    (name.clone(), Value::Object(mm))
                })
                .collect();
            m.insert("models".into(), Value::Object(models));
            if kind == Kind::Session {
                let (directory, file) = match key.rsplit_once('/') {
                    Some((d, f)) => (d.to_string(), f.to_string()),
                    None => (String::new(), key.clone()),
                };
                m.insert("directory".into(), json!(directory));
                m.insert("sessionFile".into(), json!(file));
                m.insert("lastActivity".into(), json!(format_rfc3339_ms(g.last_ms)));
            }
            Value::Object(m)
        })
        .collect();
    json!({ list_name: list, "totals": Value::Object(totals.json(true)) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::agent::Agent;
    use crate::price::TokenUse;

    fn entry(day: &str, session: &str, model: &str, input: u64, cached: u64, out: u64) -> Entry {
        Entry {
            ts_ms: crate::timestamp::parse_rfc3339_ms(&format!("{day}T10:00:00Z")).unwrap(),
            session_id: session.into(),
            project: "/w".into(),
            model: model.into(),
            usage: TokenUse {
                input,
                output: out,
                cache_read: cached,
                ..TokenUse::default()
            },
            agent: Agent::Codex,
            reasoning: out / 4,
            fallback_model: model == "gpt-5",
            recorded_cost: None,
            ..Entry::default()
        }
    }

    #[test]
    fn shape_matches_ccusage_codex() {
        let entries = [
            entry(
                "2026-11-01",
                "2026/11/01/rollout-a",
                "gpt-5-codex",
                13_000,
                12_000,
                900,
            ),
            entry("2026-11-01", "2026/11/01/rollout-a", "gpt-5", 10, 0, 4),
            entry("2026-11-02", "2026/11/02/rollout-b", "gpt-5-codex", 1, 1, 1),
        ];
        let filter = Filter {
            agent: Some(Agent::Codex),
            ..Filter::default()
        };
        let prices = PriceTable::embedded();
        let v = build(&entries, Kind::Daily, &filter, &prices);
        let d0 = &v["daily"][0];
        assert_eq!(d0["date"], "2026-11-01");
        assert_eq!(d0["inputTokens"], 13_010);
        assert_eq!(d0["cacheReadTokens"], 12_000);
        assert_eq!(d0["cacheCreationTokens"], 0);
        assert_eq!(d0["totalTokens"], 13_010 + 12_000 + 904);
        assert_eq!(d0["models"]["gpt-5"]["isFallback"], true);
        assert_eq!(d0["models"]["gpt-5-codex"]["isFallback"], false);
        // 13000 x 1.25e-6 + 12000 x 1.25e-7 + 900 x 1e-5, as ccusage charges.
        let codex_cost = d0["models"]["gpt-5-codex"].get("costUSD");
        assert!(codex_cost.is_none());
        assert!(
            (v["totals"]["costUSD"].as_f64().unwrap()
                - (0.02675 + 10.0 * 1.25e-6 + 4.0 * 1e-5 + 1.25e-6 + 1.25e-7 + 1e-5))
                .abs()
                < 1e-12
        );
        let s = build(&entries, Kind::Session, &filter, &prices);
        assert_eq!(s["sessions"][0]["directory"], "2026/11/01");
        assert_eq!(s["sessions"][0]["sessionFile"], "rollout-a");
        assert_eq!(s["sessions"][0]["lastActivity"], "2026-11-01T10:00:00.000Z");
    }
}
