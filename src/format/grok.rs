//! xAI's Grok Build CLI: `$GROK_HOME/sessions/<url-encoded cwd>/<session>/updates.jsonl`
//! (default `~/.grok`), an appended log of the agent's session updates,
//! with a `summary.json` beside it. Usage comes only at the end of a turn:
//! `params.update.sessionUpdate == "turn_completed"` with `usage`
//! (`inputTokens`, which includes both cache buckets, `outputTokens`,
//! `cachedReadTokens`, `cacheCreationTokens`, `reasoningTokens`,
//! `costUsdTicks` in 10⁻¹⁰ USD) and, on newer CLIs, `usage.modelUsage`: the
//! same counts per model. A turn is one row per model.
//!
//! - Model: the `modelUsage` key; without it, the update's `model`, else
//!   `current_model_id` of the session's `summary.json`.
//! - Input is stored without the cache buckets (input − cache read − cache
//!   write); output as reported; `reasoningTokens` in `reasoning_tokens`.
//! - `costUsdTicks` is the row's recorded cost (cost mode `auto` uses it,
//!   as ccusage 20.0.24 does).
//! - Time: `params._meta.agentTimestampMs`, else the line's `timestamp`
//!   (Unix seconds or ms, or RFC 3339).
//! - Key: `grok:<eventId>:<model>` (`_meta.eventId`); without an event id,
//!   the session, prompt id and model; without those, a hash of the line.
//! - Session: `params.sessionId`, else the session folder; project: the
//!   decoded folder name (the working directory).

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::format::json_fields::{self, count, str_at};
use crate::format::{MalformedKind, Parsed};
use crate::record::{Interner, Shared, SourceContext, UsageRow};

/// USD per `costUsdTicks` tick.
const USD_PER_TICK: f64 = 1e-10;

/// Whether `path` is a session's update log.
pub fn is_updates(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "updates.jsonl")
}

/// The context of an update log: session = its folder, project = the
/// folder above, URL-decoded (Grok names it after the working directory).
pub fn context_of(path: &Path) -> SourceContext {
    let session_dir = path.parent();
    let session = session_dir
        .and_then(Path::file_name)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let project = session_dir
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|s| percent_decode(&s.to_string_lossy()))
        .unwrap_or_default();
    SourceContext {
        agent: crate::format::agent::Agent::Grok,
        path: path.to_string_lossy().into(),
        session_from_path: session.into(),
        project: project.into(),
        agent_from_path: Arc::from(""),
        content_id: Arc::from(""),
        primary: true,
        host: Arc::from(""),
        user: Arc::from(""),
    }
}

/// `%2Fwork%2Fapp` → `/work/app` (invalid escapes are kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a line can carry usage.
pub fn may_matter(line: &[u8]) -> bool {
    memchr::memmem::find(line, b"turn_completed").is_some()
        || memchr::memmem::find(line, b"\\u").is_some()
}

/// Reads one line at `offset`: the rows of a completed turn (one per
/// model).
pub fn line(line: &[u8], ctx: &SourceContext, offset: u64, shared: &mut Interner) -> Parsed {
    let obj = match json_fields::object(line) {
        Ok(o) => Value::Object(o),
        Err(kind) => return Parsed::Malformed(kind),
    };
    match turn(&obj, line, ctx, offset, shared) {
        Ok(mut rows) if !rows.is_empty() => {
            let first = rows.remove(0);
            if rows.is_empty() {
                Parsed::Usage(Box::new(first))
            } else {
                Parsed::UsageWithExtras(Box::new(first), rows)
            }
        }
        Ok(_) => Parsed::Other,
        Err(kind) => Parsed::Malformed(kind),
    }
}

/// The counts of one model in a turn.
struct ModelUse<'a> {
    model: String,
    counts: &'a Value,
}

fn turn(
    obj: &Value,
    line: &[u8],
    ctx: &SourceContext,
    offset: u64,
    shared: &mut Interner,
) -> Result<Vec<UsageRow>, MalformedKind> {
    let Some(params) = obj.get("params") else {
        return Ok(Vec::new());
    };
    let update = params.get("update").unwrap_or(&Value::Null);
    if str_at(update, &["sessionUpdate"]) != Some("turn_completed") {
        return Ok(Vec::new());
    }
    let usage = match update.get("usage") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(u) if u.is_object() => u,
        Some(_) => return Err(MalformedKind::MistypedField),
    };
    let ts_ms =
        match json_fields::time_ms(params.get("_meta").and_then(|m| m.get("agentTimestampMs")))? {
            Some(t) => t,
            None => {
                json_fields::time_ms(obj.get("timestamp"))?.ok_or(MalformedKind::MissingField)?
            }
        };
    let uses: Vec<ModelUse<'_>> = match usage.get("modelUsage") {
        Some(Value::Object(per_model)) if !per_model.is_empty() => per_model
            .iter()
            .map(|(m, counts)| ModelUse {
                model: m.clone(),
                counts,
            })
            .collect(),
        None | Some(Value::Null) | Some(Value::Object(_)) => vec![ModelUse {
            model: str_at(update, &["model"])
                .map(str::to_string)
                .or_else(|| summary_model(ctx))
                .unwrap_or_default(),
            counts: usage,
        }],
        Some(_) => return Err(MalformedKind::MistypedField),
    };
    let session = match str_at(params, &["sessionId"]) {
        Some(s) => shared.get(Shared::Session, s),
        None => ctx.session_from_path.clone(),
    };
    let event = str_at(params, &["_meta", "eventId"]);
    let prompt = str_at(update, &["prompt_id"]).or_else(|| str_at(update, &["promptId"]));
    let mut rows = Vec::with_capacity(uses.len());
    for u in uses {
        if !u.counts.is_object() {
            return Err(MalformedKind::MistypedField);
        }
        let input = count(u.counts.get("inputTokens"))?;
        let cache_read = count(u.counts.get("cachedReadTokens"))?;
        let cache_write = count(u.counts.get("cacheCreationTokens"))?;
        let output = count(u.counts.get("outputTokens"))?;
        let reasoning = count(u.counts.get("reasoningTokens"))?;
        let recorded = match u.counts.get("costUsdTicks") {
            None | Some(Value::Null) => None,
            Some(v) => Some(count(Some(v))? as f64 * USD_PER_TICK),
        };
        let fresh = input.saturating_sub(cache_read + cache_write);
        let key = match (event, prompt) {
            (Some(e), _) => format!("grok:{e}:{}", u.model),
            (None, Some(p)) => format!("grok:{session}:{p}:{}", u.model),
            (None, None) => format!(
                "grok:hash:{:032x}:{}",
                xxhash_rust::xxh3::xxh3_128(line),
                u.model
            ),
        };
        let total = fresh + cache_read + cache_write + output;
        rows.push(UsageRow {
            key,
            version: (1 << 63) | (total.min((1 << 62) - 1) << 1) | 1,
            ts: (ts_ms / 1000) as u32,
            ts_ms,
            session_id: session.clone(),
            model: shared.get(Shared::Model, &u.model),
            message_id: event.unwrap_or("").to_string(),
            request_id: prompt.unwrap_or("").to_string(),
            entry_type: turn_type(),
            input_tokens: fresh,
            output_tokens: output,
            cache_creation_input_tokens: cache_write,
            cache_creation_5m_tokens: cache_write,
            cache_read_input_tokens: cache_read,
            cwd: ctx.project.clone(),
            reasoning_tokens: reasoning,
            recorded_cost_usd: recorded,
            ..UsageRow::of_source(ctx, offset, shared)
        });
    }
    Ok(rows)
}

/// `current_model_id` of the `summary.json` beside the update log (read
/// when a turn names no model; absent or unreadable: none).
fn summary_model(ctx: &SourceContext) -> Option<String> {
    let path = Path::new(&*ctx.path).parent()?.join("summary.json");
    let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    str_at(&v, &["current_model_id"]).map(str::to_string)
}

fn turn_type() -> Arc<str> {
    static T: std::sync::LazyLock<Arc<str>> =
        std::sync::LazyLock::new(|| Arc::from("turn_completed"));
    T.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(p: Parsed) -> Vec<UsageRow> {
        match p {
            Parsed::Usage(r) => vec![*r],
            Parsed::UsageWithExtras(r, more) => std::iter::once(*r).chain(more).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_turn_is_a_row_per_model_with_input_net_of_cache() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("sessions/%2Fwork%2Fapp/aaaa");
        std::fs::create_dir_all(&dir).unwrap();
        let ctx = context_of(&dir.join("updates.jsonl"));
        assert_eq!(&*ctx.project, "/work/app");
        assert_eq!(&*ctx.session_from_path, "aaaa");
        let l = r#"{"params":{"sessionId":"g1","_meta":{"eventId":"evt-1","agentTimestampMs":1795168803000},"update":{"sessionUpdate":"turn_completed","usage":{"inputTokens":1000,"outputTokens":100,"modelUsage":{"grok-4":{"inputTokens":800,"outputTokens":80,"cachedReadTokens":600,"cacheCreationTokens":100,"reasoningTokens":20,"costUsdTicks":200000000},"grok-code-fast-1":{"inputTokens":200,"outputTokens":20,"cachedReadTokens":100}}}}}}"#;
        let r = rows(line(l.as_bytes(), &ctx, 7, &mut Interner::default()));
        assert_eq!(r.len(), 2);
        assert_eq!(&*r[0].model, "grok-4");
        assert_eq!(
            (
                r[0].input_tokens,
                r[0].cache_read_input_tokens,
                r[0].cache_creation_input_tokens,
                r[0].output_tokens,
                r[0].reasoning_tokens
            ),
            (100, 600, 100, 80, 20)
        );
        assert!((r[0].recorded_cost_usd.unwrap() - 0.02).abs() < 1e-12);
        assert_eq!(r[0].key, "grok:evt-1:grok-4");
        assert_eq!(&*r[0].session_id, "g1");
        assert_eq!(r[0].ts_ms, 1_795_168_803_000);
        assert_eq!((r[1].input_tokens, r[1].recorded_cost_usd), (100, None));
    }

    #[test]
    fn without_model_usage_the_summary_names_the_model() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("sessions/x/s1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("summary.json"), r#"{"current_model_id":"grok-4"}"#).unwrap();
        let ctx = context_of(&dir.join("updates.jsonl"));
        let l = r#"{"timestamp":1795168900,"params":{"update":{"sessionUpdate":"turn_completed","prompt_id":"p2","usage":{"inputTokens":500,"outputTokens":50}}}}"#;
        let r = rows(line(l.as_bytes(), &ctx, 0, &mut Interner::default()));
        assert_eq!(&*r[0].model, "grok-4");
        assert_eq!(r[0].key, "grok:s1:p2:grok-4");
        assert_eq!(r[0].ts_ms, 1_795_168_900_000);
        let other = r#"{"params":{"update":{"sessionUpdate":"agent_message_chunk"}}}"#;
        assert_eq!(
            line(other.as_bytes(), &ctx, 0, &mut Interner::default()),
            Parsed::Other
        );
        let no_time =
            r#"{"params":{"update":{"sessionUpdate":"turn_completed","usage":{"inputTokens":5}}}}"#;
        assert_eq!(
            line(no_time.as_bytes(), &ctx, 0, &mut Interner::default()),
            Parsed::Malformed(MalformedKind::MissingField)
        );
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode("%2Fa%2Fb"), "/a/b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%2"), "%zz%2");
    }
}
