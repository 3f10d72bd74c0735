//! Billing blocks, as ccusage's `blocks` reports them: usage grouped into
//! windows of `session_hours` (5 by default) that open at the hour (UTC) of
//! the first entry after the previous window, with gaps of inactivity between
//! them as blocks of their own. The block still open now is active: it gets
//! a burn rate, a projection to its end, and (with a token limit) how that
//! projection compares with the limit.

use serde_json::{json, Map, Value};

use super::{selected, Entry, Filter};
use crate::price::PriceTable;
use crate::timestamp::format_rfc3339_ms;

/// What `report blocks` shows.
#[derive(Debug, Clone, Default)]
pub struct BlockOptions {
    /// Window length in hours (ccusage's `--session-length`; 0 means 5).
    pub session_hours: f64,
    /// Only the active block (`--active`).
    pub active_only: bool,
    /// The token limit to compare the active block with (`--token-limit`).
    pub token_limit: Option<TokenLimit>,
    /// Unix ms taken as now (which block is active).
    pub now_ms: i64,
}

/// A token limit for the active block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLimit {
    /// This many tokens.
    Tokens(u64),
    /// The most any earlier block used (`max`).
    Max,
}

impl std::str::FromStr for TokenLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<TokenLimit, String> {
        if s == "max" {
            return Ok(TokenLimit::Max);
        }
        s.parse()
            .map(TokenLimit::Tokens)
            .map_err(|_| format!("token limit {s:?}: a number of tokens or `max`"))
    }
}

const HOUR_MS: i64 = 3_600_000;

/// One block under construction.
struct Block<'a> {
    start_ms: i64,
    entries: Vec<(&'a Entry, f64)>,
}

/// The blocks of `entries` (those `filter` keeps), in ccusage's JSON shape.
pub fn build(
    entries: &[Entry],
    filter: &Filter,
    prices: &PriceTable,
    opts: &BlockOptions,
) -> Value {
    let hours = if opts.session_hours > 0.0 {
        opts.session_hours
    } else {
        5.0
    };
    let duration_ms = (hours * HOUR_MS as f64) as i64;
    let mut blocks: Vec<Value> = Vec::new();
    let mut current: Option<Block<'_>> = None;
    for (e, _) in selected(entries, filter) {
        let cost = e.cost(filter.cost_mode, prices);
        match current.as_mut() {
            Some(b) => {
                let last_ms = b.entries.last().map_or(b.start_ms, |(l, _)| l.ts_ms);
                if e.ts_ms - b.start_ms > duration_ms || e.ts_ms - last_ms > duration_ms {
                    let done = current.take().expect("block");
                    blocks.push(block_json(&done, duration_ms, opts.now_ms));
                    if e.ts_ms - last_ms > duration_ms {
                        blocks.push(gap_json(last_ms + duration_ms, e.ts_ms));
                    }
                    current = Some(Block {
                        start_ms: floor_hour(e.ts_ms),
                        entries: vec![(e, cost)],
                    });
                } else {
                    b.entries.push((e, cost));
                }
            }
            None => {
                current = Some(Block {
                    start_ms: floor_hour(e.ts_ms),
                    entries: vec![(e, cost)],
                })
            }
        }
    }
    if let Some(b) = current {
        blocks.push(block_json(&b, duration_ms, opts.now_ms));
    }
    // In start order, as ccusage lists them: a gap starts 5 h after the last
    // entry before it, which can be after the next block's start (floored to
    // its hour).
    blocks.sort_by(|a, b| a["startTime"].as_str().cmp(&b["startTime"].as_str()));
    if let Some(limit) = opts.token_limit {
        let limit = match limit {
            TokenLimit::Tokens(n) => n,
            TokenLimit::Max => blocks
                .iter()
                .filter(|b| b["isGap"] == false && b["isActive"] == false)
                .filter_map(|b| b["totalTokens"].as_u64())
                .max()
                .unwrap_or(0),
        };
        for b in blocks.iter_mut().filter(|b| b["isActive"] == true) {
            let projected = b["projection"]["totalTokens"]
                .as_u64()
                .or_else(|| b["totalTokens"].as_u64())
                .unwrap_or(0);
            let percent = if limit == 0 {
                0.0
            } else {
                projected as f64 * 100.0 / limit as f64
            };
            let status = if projected > limit {
                "exceeds"
            } else if percent > 80.0 {
                "warning"
            } else {
                "ok"
            };
            b["tokenLimitStatus"] = json!({
                "limit": limit,
                "projectedUsage": projected,
                "percentUsed": percent,
                "status": status,
            });
        }
    }
    if opts.active_only {
        blocks.retain(|b| b["isActive"] == true);
    }
    json!({ "blocks": blocks })
}

fn floor_hour(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

fn token_counts(input: u64, output: u64, cache_creation: u64, cache_read: u64) -> Value {
    json!({
        "inputTokens": input,
        "outputTokens": output,
        "cacheCreationInputTokens": cache_creation,
        "cacheReadInputTokens": cache_read,
    })
}

fn block_json(b: &Block<'_>, duration_ms: i64, now_ms: i64) -> Value {
    let (mut input, mut output, mut cc, mut cr, mut cost) = (0, 0, 0, 0, 0.0);
    let mut models: Vec<&str> = Vec::new();
    for (e, c) in &b.entries {
        input += e.usage.input;
        output += e.usage.output;
        cc += e.usage.cache_creation;
        cr += e.usage.cache_read;
        cost += c;
        if !models.contains(&e.model.as_str()) {
            models.push(&e.model);
        }
    }
    let total = input + output + cc + cr;
    let end_ms = b.start_ms + duration_ms;
    let first_ms = b.entries.first().map_or(b.start_ms, |(e, _)| e.ts_ms);
    let last_ms = b.entries.last().map_or(b.start_ms, |(e, _)| e.ts_ms);
    let active = now_ms - last_ms < duration_ms && now_ms < end_ms;
    let minutes = (last_ms - first_ms) as f64 / 60_000.0;
    let burn = (minutes > 0.0).then(|| {
        (
            total as f64 / minutes,
            (input + output) as f64 / minutes,
            cost / minutes * 60.0,
        )
    });
    let burn_json = burn.filter(|_| active).map_or(Value::Null, |(tpm, ind, cph)| {
        json!({"tokensPerMinute": tpm, "tokensPerMinuteForIndicator": ind, "costPerHour": cph})
    });
    let projection = burn
        .filter(|_| active)
        .map_or(Value::Null, |(tpm, _, cph)| {
            let remaining = ((end_ms - now_ms) as f64 / 60_000.0).max(0.0);
            json!({
                "totalTokens": (total as f64 + tpm * remaining).round() as u64,
                "totalCost": ((cost + cph / 60.0 * remaining) * 100.0).round() / 100.0,
                "remainingMinutes": remaining.round() as u64,
            })
        });
    let mut m = Map::new();
    m.insert("id".into(), json!(format_rfc3339_ms(b.start_ms)));
    m.insert("startTime".into(), json!(format_rfc3339_ms(b.start_ms)));
    m.insert("endTime".into(), json!(format_rfc3339_ms(end_ms)));
    m.insert("actualEndTime".into(), json!(format_rfc3339_ms(last_ms)));
    m.insert("isActive".into(), json!(active));
    m.insert("isGap".into(), json!(false));
    m.insert("entries".into(), json!(b.entries.len()));
    m.insert("tokenCounts".into(), token_counts(input, output, cc, cr));
    m.insert("totalTokens".into(), json!(total));
    m.insert("costUSD".into(), json!(cost));
    m.insert("models".into(), json!(models));
    m.insert("burnRate".into(), burn_json);
    m.insert("projection".into(), projection);
    Value::Object(m)
}

fn gap_json(start_ms: i64, end_ms: i64) -> Value {
    json!({
        "id": format!("gap-{}", format_rfc3339_ms(start_ms)),
        "startTime": format_rfc3339_ms(start_ms),
        "endTime": format_rfc3339_ms(end_ms),
        "actualEndTime": null,
        "isActive": false,
        "isGap": true,
        "entries": 0,
        "tokenCounts": token_counts(0, 0, 0, 0),
        "totalTokens": 0,
        "costUSD": 0,
        "models": [],
        "burnRate": null,
        "projection": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::TokenUse;

    fn at(s: &str, input: u64) -> Entry {
        Entry {
            ts_ms: crate::timestamp::parse_rfc3339_ms(s).unwrap(),
            session_id: "s".into(),
            model: "claude-sonnet-4-5".into(),
            usage: TokenUse {
                input,
                ..TokenUse::default()
            },
            ..Entry::default()
        }
    }

    fn opts(now: &str) -> BlockOptions {
        BlockOptions {
            session_hours: 5.0,
            now_ms: crate::timestamp::parse_rfc3339_ms(now).unwrap(),
            ..BlockOptions::default()
        }
    }

    #[test]
    fn windows_open_at_the_hour_and_gaps_are_blocks() {
        let entries = [
            at("2026-11-20T10:11:00Z", 10),
            at("2026-11-20T14:59:00Z", 20),
            // Past the window's end: a new block at 15:00.
            at("2026-11-20T15:30:00Z", 30),
            // More than 5 h after the last entry: a gap first.
            at("2026-11-21T09:05:00Z", 40),
        ];
        let v = build(
            &entries,
            &Filter::default(),
            &PriceTable::embedded(),
            &opts("2026-11-28T00:00:00Z"),
        );
        let b = v["blocks"].as_array().unwrap();
        let ids: Vec<&str> = b.iter().map(|b| b["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [
                "2026-11-20T10:00:00.000Z",
                "2026-11-20T15:00:00.000Z",
                "gap-2026-11-20T20:30:00.000Z",
                "2026-11-21T09:00:00.000Z"
            ]
        );
        assert_eq!(b[0]["totalTokens"], 30);
        assert_eq!(b[0]["actualEndTime"], "2026-11-20T14:59:00.000Z");
        assert_eq!(b[2]["endTime"], "2026-11-21T09:05:00.000Z");
        assert!(b
            .iter()
            .all(|b| b["isActive"] == false && b["burnRate"].is_null()));
    }

    #[test]
    fn the_open_block_burns_and_projects_against_a_limit() {
        let entries = [
            at("2026-11-28T10:00:00Z", 600),
            at("2026-11-28T10:30:00Z", 600),
        ];
        let mut o = opts("2026-11-28T11:00:00Z");
        o.token_limit = Some(TokenLimit::Tokens(5_000));
        o.active_only = true;
        let v = build(&entries, &Filter::default(), &PriceTable::embedded(), &o);
        let b = &v["blocks"][0];
        assert_eq!(b["isActive"], true);
        assert_eq!(b["burnRate"]["tokensPerMinute"], 40.0);
        // 1,200 now + 40/min for the 240 minutes left.
        assert_eq!(b["projection"]["totalTokens"], 10_800);
        assert_eq!(b["projection"]["remainingMinutes"], 240);
        assert_eq!(b["tokenLimitStatus"]["status"], "exceeds");
        assert_eq!("max".parse::<TokenLimit>(), Ok(TokenLimit::Max));
        assert!("lots".parse::<TokenLimit>().is_err());
    }
}
