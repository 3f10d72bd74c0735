//! GitHub Copilot CLI: `$COPILOT_HOME/session-state/<session>/events.jsonl`
//! (default `~/.copilot`), an appended event log. Token usage is reported
//! only at `session.shutdown`: `data.modelMetrics.<model>.usage`
//! (`inputTokens`, which includes both cache buckets, `outputTokens`,
//! `cacheReadTokens`, `cacheWriteTokens`, `reasoningTokens`, inside output),
//! the session's running total per model. A resumed session shuts down again
//! with a larger total, so each snapshot counts what grew since the file's
//! previous snapshot of that model (the last one is kept in the checkpoint
//! [`State`]). A snapshot that does not cover the previous one (a model
//! missing, or a count smaller) starts new running totals for every model
//! and counts whole.
//!
//! Rows: input = input − cache read − cache write, per model; the model
//! without Copilot's `-1m` / `-1m-internal` context suffixes; time = the
//! shutdown's `timestamp`; key `copilot:<session>:<event id>:<model>`.
//! Copilot's optional OpenTelemetry export (`~/.copilot/otel/`) is not read.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::format::json_fields::{self, count, str_at};
use crate::format::{MalformedKind, Parsed};
use crate::record::{Interner, Shared, SourceContext, UsageRow};

/// One model's running total, as Copilot reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Input, both cache buckets included.
    pub input: u64,
    /// Output, reasoning included.
    pub output: u64,
    /// Cache reads.
    pub cache_read: u64,
    /// Cache writes.
    pub cache_write: u64,
    /// Reasoning.
    pub reasoning: u64,
}

impl Counts {
    /// Whether every count is at least `prev`'s.
    fn covers(self, prev: Counts) -> bool {
        self.input >= prev.input
            && self.output >= prev.output
            && self.cache_read >= prev.cache_read
            && self.cache_write >= prev.cache_write
            && self.reasoning >= prev.reasoning
    }

    /// What grew from `prev` (which `self` covers) to `self`.
    fn since(self, prev: Counts) -> Counts {
        Counts {
            input: self.input - prev.input,
            output: self.output - prev.output,
            cache_read: self.cache_read - prev.cache_read,
            cache_write: self.cache_write - prev.cache_write,
            reasoning: self.reasoning - prev.reasoning,
        }
    }
}

/// The last snapshot of each model in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Model → its last reported running total.
    #[serde(default)]
    pub last: BTreeMap<String, Counts>,
}

/// Whether `path` is a session's event log.
pub fn is_events(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "events.jsonl")
}

/// The context of an event log: the session is its folder.
pub fn context_of(path: &Path) -> SourceContext {
    let session = path
        .parent()
        .and_then(Path::file_name)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    SourceContext {
        agent: crate::format::agent::Agent::Copilot,
        path: path.to_string_lossy().into(),
        session_from_path: session.into(),
        project: Arc::from(""),
        agent_from_path: Arc::from(""),
        content_id: Arc::from(""),
        primary: true,
        host: Arc::from(""),
        user: Arc::from(""),
    }
}

/// Whether a line can carry usage.
pub fn may_matter(line: &[u8]) -> bool {
    memchr::memmem::find(line, b"session.shutdown").is_some()
        || memchr::memmem::find(line, b"\\u").is_some()
}

/// The model as ccusage names it: without Copilot's long-context suffixes.
pub fn normalize_model(model: &str) -> &str {
    model
        .strip_suffix("-1m-internal")
        .or_else(|| model.strip_suffix("-1m"))
        .unwrap_or(model)
}

/// Reads one line at `offset`, updating the per-model totals.
pub fn line(
    state: &mut State,
    line: &[u8],
    ctx: &SourceContext,
    offset: u64,
    shared: &mut Interner,
) -> Parsed {
    let obj = match json_fields::object(line) {
        Ok(o) => Value::Object(o),
        Err(kind) => return Parsed::Malformed(kind),
    };
    if str_at(&obj, &["type"]) != Some("session.shutdown") {
        return Parsed::Other;
    }
    match shutdown(state, &obj, ctx, offset, shared) {
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

fn shutdown(
    state: &mut State,
    obj: &Value,
    ctx: &SourceContext,
    offset: u64,
    shared: &mut Interner,
) -> Result<Vec<UsageRow>, MalformedKind> {
    let metrics = match obj.get("data").and_then(|d| d.get("modelMetrics")) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(MalformedKind::MistypedField),
    };
    // Check the whole line before any state changes.
    let mut snapshots = Vec::with_capacity(metrics.len());
    for (model, m) in metrics {
        let usage = match m.get("usage") {
            None | Some(Value::Null) => continue,
            Some(u) if u.is_object() => u,
            Some(_) => return Err(MalformedKind::MistypedField),
        };
        let c = Counts {
            input: count(usage.get("inputTokens"))?,
            output: count(usage.get("outputTokens"))?,
            cache_read: count(usage.get("cacheReadTokens"))?,
            cache_write: count(usage.get("cacheWriteTokens"))?,
            reasoning: count(usage.get("reasoningTokens"))?,
        };
        snapshots.push((normalize_model(model).to_string(), c));
    }
    if snapshots.is_empty() {
        return Ok(Vec::new());
    }
    let ts_ms = json_fields::time_ms(obj.get("timestamp"))?.ok_or(MalformedKind::MissingField)?;
    let event = str_at(obj, &["id"]).map_or_else(|| format!("@{offset}"), str::to_string);
    // A running total covers every model the log reported before, each with
    // at least its previous counts. Otherwise the log started new totals
    // (for every model): this snapshot counts whole.
    let restarted = state.last.iter().any(|(m, prev)| {
        snapshots
            .iter()
            .find(|(name, _)| name == m)
            .is_none_or(|(_, c)| !c.covers(*prev))
    });
    if restarted {
        state.last.clear();
    }
    let mut rows = Vec::new();
    for (model, snapshot) in snapshots {
        let prev = state
            .last
            .insert(model.clone(), snapshot)
            .unwrap_or_default();
        let d = snapshot.since(prev);
        let fresh = d.input.saturating_sub(d.cache_read + d.cache_write);
        let total = fresh + d.cache_read + d.cache_write + d.output;
        if total == 0 {
            continue;
        }
        rows.push(UsageRow {
            key: format!("copilot:{}:{event}:{model}", ctx.session_from_path),
            version: (1 << 63) | (total.min((1 << 62) - 1) << 1) | 1,
            ts: (ts_ms / 1000) as u32,
            ts_ms,
            model: shared.get(Shared::Model, &model),
            message_id: event.clone(),
            entry_type: shutdown_type(),
            input_tokens: fresh,
            output_tokens: d.output,
            cache_creation_input_tokens: d.cache_write,
            cache_creation_5m_tokens: d.cache_write,
            cache_read_input_tokens: d.cache_read,
            reasoning_tokens: d.reasoning.min(d.output),
            ..UsageRow::of_source(ctx, offset, shared)
        });
    }
    Ok(rows)
}

fn shutdown_type() -> Arc<str> {
    static T: std::sync::LazyLock<Arc<str>> =
        std::sync::LazyLock::new(|| Arc::from("session.shutdown"));
    T.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(p: Parsed) -> Vec<UsageRow> {
        match p {
            Parsed::Usage(r) => vec![*r],
            Parsed::UsageWithExtras(r, more) => std::iter::once(*r).chain(more).collect(),
            Parsed::Other => Vec::new(),
            other => panic!("{other:?}"),
        }
    }

    fn shutdown_line(id: &str, ts: &str, input: u64, output: u64, cr: u64, cw: u64) -> String {
        format!(
            r#"{{"type":"session.shutdown","data":{{"modelMetrics":{{"claude-sonnet-4.5-1m":{{"usage":{{"inputTokens":{input},"outputTokens":{output},"cacheReadTokens":{cr},"cacheWriteTokens":{cw}}}}}}}}},"id":"{id}","timestamp":"{ts}"}}"#
        )
    }

    #[test]
    fn each_shutdown_counts_what_grew_since_the_last() {
        let ctx = context_of(Path::new("/h/.copilot/session-state/s-1/events.jsonl"));
        let mut st = State::default();
        let mut sh = Interner::default();
        let a = rows(line(
            &mut st,
            shutdown_line("e3", "2026-11-20T10:05:00Z", 21583, 1064, 15000, 2000).as_bytes(),
            &ctx,
            0,
            &mut sh,
        ));
        assert_eq!(a.len(), 1);
        assert_eq!(&*a[0].model, "claude-sonnet-4.5");
        assert_eq!(
            (
                a[0].input_tokens,
                a[0].cache_read_input_tokens,
                a[0].cache_creation_input_tokens
            ),
            (4583, 15000, 2000)
        );
        assert_eq!(a[0].key, "copilot:s-1:e3:claude-sonnet-4.5");
        let b = rows(line(
            &mut st,
            shutdown_line("e5", "2026-11-21T09:30:00Z", 30000, 2000, 20000, 2500).as_bytes(),
            &ctx,
            1,
            &mut sh,
        ));
        assert_eq!(
            (
                b[0].input_tokens,
                b[0].output_tokens,
                b[0].cache_read_input_tokens
            ),
            (2917, 936, 5000)
        );
        // The same snapshot again adds nothing.
        let c = rows(line(
            &mut st,
            shutdown_line("e6", "2026-11-21T09:31:00Z", 30000, 2000, 20000, 2500).as_bytes(),
            &ctx,
            2,
            &mut sh,
        ));
        assert!(c.is_empty());
        // A smaller one is a new running total.
        let d = rows(line(
            &mut st,
            shutdown_line("e7", "2026-11-22T09:00:00Z", 100, 10, 0, 0).as_bytes(),
            &ctx,
            3,
            &mut sh,
        ));
        assert_eq!((d[0].input_tokens, d[0].output_tokens), (100, 10));
    }

    #[test]
    fn a_restart_starts_every_models_total_again() {
        let ctx = context_of(Path::new("/h/.copilot/session-state/s-2/events.jsonl"));
        let mut st = State::default();
        let mut sh = Interner::default();
        let snap = |id: &str, a: u64, b: Option<u64>| {
            let mut m = format!(r#""a":{{"usage":{{"inputTokens":{a},"outputTokens":1}}}}"#);
            if let Some(b) = b {
                m.push_str(&format!(
                    r#","b":{{"usage":{{"inputTokens":{b},"outputTokens":1}}}}"#
                ));
            }
            format!(
                r#"{{"type":"session.shutdown","data":{{"modelMetrics":{{{m}}}}},"id":"{id}","timestamp":"2026-11-20T10:00:00Z"}}"#
            )
        };
        let mut inputs = |p: &str, off: u64| -> Vec<u64> {
            rows(line(&mut st, p.as_bytes(), &ctx, off, &mut sh))
                .iter()
                .map(|r| r.input_tokens)
                .collect()
        };
        assert_eq!(inputs(&snap("1", 100, Some(500)), 0), [100, 500]);
        // Model b missing: the totals started again.
        assert_eq!(inputs(&snap("2", 10, None), 1), [10]);
        // b is new in this run: counted whole, not as 600 - 500.
        assert_eq!(inputs(&snap("3", 30, Some(600)), 2), [20, 600]);
    }

    #[test]
    fn bad_snapshots_change_nothing() {
        let ctx = context_of(Path::new("/h/.copilot/session-state/s-1/events.jsonl"));
        let mut st = State::default();
        let bad = r#"{"type":"session.shutdown","data":{"modelMetrics":{"a":{"usage":{"inputTokens":5}},"b":{"usage":{"inputTokens":"x"}}}},"timestamp":"2026-11-20T10:05:00Z"}"#;
        assert_eq!(
            line(&mut st, bad.as_bytes(), &ctx, 0, &mut Interner::default()),
            Parsed::Malformed(MalformedKind::BadTokenCount)
        );
        assert!(st.last.is_empty());
        assert_eq!(normalize_model("gpt-5.1-1m-internal"), "gpt-5.1");
    }
}
