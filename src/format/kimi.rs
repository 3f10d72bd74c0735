//! Moonshot's Kimi CLI and Kimi Code: `$KIMI_DATA_DIR` (default `~/.kimi` and
//! `~/.kimi-code`), `sessions/<group>/<session>/wire.jsonl` (Kimi CLI) or
//! `sessions/<workspace>/<session>/agents/<agent>/wire.jsonl` (Kimi Code),
//! appended line by line. Two record shapes carry usage:
//!
//! - Kimi CLI: `{"timestamp": <Unix seconds>, "message": {"type":
//!   "StatusUpdate", "payload": {"token_usage": {"input_other", "output",
//!   "input_cache_read", "input_cache_creation"}, "message_id"}}}`, one per
//!   model call (repeated with the same `message_id`); the model is the
//!   `model` of the data folder's `config.json`, else `kimi-for-coding`.
//! - Kimi Code: `{"type": "usage.record", "model": "kimi-code/<model>",
//!   "usageScope": "turn" | "session", "time": <Unix ms>, "usage":
//!   {"inputOther", "output", "inputCacheRead", "inputCacheCreation"}}`.
//!   Only `turn` records count; `session` records are running totals of the
//!   same calls.
//!
//! Input excludes the cache buckets in both. Keys: `kimi:<session>:<message
//! id>`; a record without one is keyed by a hash of its line, so a record
//! written twice counts once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::format::json_fields::{self, count, str_at};
use crate::format::{MalformedKind, Parsed};
use crate::record::{Interner, Shared, SourceContext, UsageRow};

/// The model of Kimi CLI records when the data folder's `config.json` names
/// none (priced by date, see [`crate::price::DATED_ALIASES`]).
pub const DEFAULT_MODEL: &str = "kimi-for-coding";

/// What a wire file's lines depend on: the model its data folder's
/// `config.json` names, looked up once per file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// `config.json`'s `model`, once looked up (`Some(None)`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_model: Option<Option<String>>,
}

/// Whether `path` is a session's wire log.
pub fn is_wire(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "wire.jsonl")
}

/// The context of a wire log: session = the folder holding it (Kimi CLI)
/// or the folder above `agents/` (Kimi Code, whose agent is the folder
/// under it); project = the folder under `sessions/`.
pub fn context_of(path: &Path) -> SourceContext {
    let comps: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let n = comps.len();
    let (session, agent) = if n >= 4 && comps[n - 3] == "agents" {
        (comps[n - 4].clone(), comps[n - 2].clone())
    } else if n >= 2 {
        (comps[n - 2].clone(), String::new())
    } else {
        (String::new(), String::new())
    };
    let project = comps
        .iter()
        .rposition(|c| c == "sessions")
        .and_then(|i| comps.get(i + 1))
        .filter(|p| **p != session && !p.ends_with(".jsonl"))
        .cloned()
        .unwrap_or_default();
    SourceContext {
        agent: crate::format::agent::Agent::Kimi,
        path: path.to_string_lossy().into(),
        session_from_path: session.into(),
        project: project.into(),
        agent_from_path: agent.into(),
        content_id: Arc::from(""),
        primary: true,
        host: Arc::from(""),
        user: Arc::from(""),
    }
}

/// Whether a line can carry usage.
pub fn may_matter(line: &[u8]) -> bool {
    memchr::memmem::find(line, b"token_usage").is_some()
        || memchr::memmem::find(line, b"usage.record").is_some()
        || memchr::memmem::find(line, b"\\u").is_some()
}

/// Reads one line at `offset`.
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
    let found = if str_at(&obj, &["type"]) == Some("usage.record") {
        usage_record(&obj, line, ctx, offset, shared)
    } else if str_at(&obj, &["message", "type"]) == Some("StatusUpdate") {
        status_update(state, &obj, line, ctx, offset, shared)
    } else {
        Ok(None)
    };
    match found {
        Ok(Some(row)) => Parsed::Usage(Box::new(row)),
        Ok(None) => Parsed::Other,
        Err(kind) => Parsed::Malformed(kind),
    }
}

/// The counts of one call: fresh input, output, cache read, cache write.
type Counts = (u64, u64, u64, u64);

fn status_update(
    state: &mut State,
    obj: &Value,
    line: &[u8],
    ctx: &SourceContext,
    offset: u64,
    shared: &mut Interner,
) -> Result<Option<UsageRow>, MalformedKind> {
    let payload = &obj["message"]["payload"];
    let usage = match payload.get("token_usage") {
        None | Some(Value::Null) => return Ok(None),
        Some(u) if u.is_object() => u,
        Some(_) => return Err(MalformedKind::MistypedField),
    };
    let counts = (
        count(usage.get("input_other"))?,
        count(usage.get("output"))?,
        count(usage.get("input_cache_read"))?,
        count(usage.get("input_cache_creation"))?,
    );
    let ts_ms = json_fields::time_ms(obj.get("timestamp"))?.ok_or(MalformedKind::MissingField)?;
    let model = state
        .config_model
        .get_or_insert_with(|| config_model(ctx))
        .clone()
        .unwrap_or_else(|| DEFAULT_MODEL.to_string());
    let id = str_at(payload, &["message_id"]);
    Ok(Some(row(
        ctx, line, offset, shared, id, ts_ms, &model, counts,
    )))
}

fn usage_record(
    obj: &Value,
    line: &[u8],
    ctx: &SourceContext,
    offset: u64,
    shared: &mut Interner,
) -> Result<Option<UsageRow>, MalformedKind> {
    // Session-scope records are running totals of the turn records.
    if str_at(obj, &["usageScope"]) != Some("turn") {
        return Ok(None);
    }
    let usage = match obj.get("usage") {
        None | Some(Value::Null) => return Ok(None),
        Some(u) if u.is_object() => u,
        Some(_) => return Err(MalformedKind::MistypedField),
    };
    let counts = (
        count(usage.get("inputOther"))?,
        count(usage.get("output"))?,
        count(usage.get("inputCacheRead"))?,
        count(usage.get("inputCacheCreation"))?,
    );
    let ts_ms = match json_fields::time_ms(obj.get("time"))? {
        Some(t) => t,
        None => json_fields::time_ms(obj.get("timestamp"))?.ok_or(MalformedKind::MissingField)?,
    };
    let model = str_at(obj, &["model"]).unwrap_or(DEFAULT_MODEL);
    let model = model.strip_prefix("kimi-code/").unwrap_or(model);
    let id = str_at(obj, &["message_id"]).or_else(|| str_at(obj, &["messageId"]));
    Ok(Some(row(
        ctx, line, offset, shared, id, ts_ms, model, counts,
    )))
}

#[allow(clippy::too_many_arguments)]
fn row(
    ctx: &SourceContext,
    line: &[u8],
    offset: u64,
    shared: &mut Interner,
    id: Option<&str>,
    ts_ms: i64,
    model: &str,
    (input, output, cache_read, cache_write): Counts,
) -> UsageRow {
    let key = match id {
        Some(id) => format!("kimi:{}:{id}", ctx.session_from_path),
        None => format!(
            "kimi:{}:hash:{:032x}",
            ctx.session_from_path,
            xxhash_rust::xxh3::xxh3_128(line)
        ),
    };
    let total = input + output + cache_read + cache_write;
    UsageRow {
        key,
        version: (1 << 63) | (total.min((1 << 62) - 1) << 1) | 1,
        ts: (ts_ms / 1000) as u32,
        ts_ms,
        model: shared.get(Shared::Model, model),
        message_id: id.unwrap_or("").to_string(),
        entry_type: status_type(),
        input_tokens: input,
        output_tokens: output,
        cache_creation_input_tokens: cache_write,
        cache_creation_5m_tokens: cache_write,
        cache_read_input_tokens: cache_read,
        ..UsageRow::of_source(ctx, offset, shared)
    }
}

/// The data folder of a wire log: the folder above `sessions/`.
fn data_dir(ctx: &SourceContext) -> Option<PathBuf> {
    Path::new(&*ctx.path)
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "sessions"))
        .and_then(Path::parent)
        .map(Path::to_path_buf)
}

/// `model` of the data folder's `config.json`, if it names one.
fn config_model(ctx: &SourceContext) -> Option<String> {
    let text = std::fs::read(data_dir(ctx)?.join("config.json")).ok()?;
    let v: Value = serde_json::from_slice(&text).ok()?;
    str_at(&v, &["model"]).map(str::to_string)
}

fn status_type() -> Arc<str> {
    static T: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("usage"));
    T.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(p: Parsed) -> UsageRow {
        match p {
            Parsed::Usage(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kimi_cli_status_updates_take_the_configured_model() {
        let d = tempfile::tempdir().unwrap();
        let wire = d.path().join("sessions/g1/s1/wire.jsonl");
        let ctx = context_of(&wire);
        assert_eq!((&*ctx.session_from_path, &*ctx.project), ("s1", "g1"));
        let l = br#"{"timestamp":1795168803.25,"message":{"type":"StatusUpdate","payload":{"token_usage":{"input_other":1000,"output":200,"input_cache_read":5000,"input_cache_creation":7},"message_id":"chatcmpl-1"}}}"#;
        let mut st = State::default();
        let r = usage(line(&mut st, l, &ctx, 0, &mut Interner::default()));
        assert_eq!(
            (
                r.input_tokens,
                r.output_tokens,
                r.cache_read_input_tokens,
                r.cache_creation_input_tokens
            ),
            (1000, 200, 5000, 7)
        );
        assert_eq!(&*r.model, DEFAULT_MODEL);
        assert_eq!(r.ts_ms, 1_795_168_803_250);
        assert_eq!(r.key, "kimi:s1:chatcmpl-1");
        // The config is looked up once per file: a new file sees it.
        std::fs::write(d.path().join("config.json"), r#"{"model":"kimi-k2.6"}"#).unwrap();
        let mut st = State::default();
        let r = usage(line(&mut st, l, &ctx, 0, &mut Interner::default()));
        assert_eq!(&*r.model, "kimi-k2.6");
        assert_eq!(st.config_model, Some(Some("kimi-k2.6".to_string())));
    }

    #[test]
    fn kimi_code_counts_turn_records_only() {
        let ctx = context_of(Path::new(
            "/h/.kimi-code/sessions/ws/s2/agents/main/wire.jsonl",
        ));
        assert_eq!(
            (
                &*ctx.session_from_path,
                &*ctx.project,
                &*ctx.agent_from_path
            ),
            ("s2", "ws", "main")
        );
        let mut st = State::default();
        let turn = br#"{"type":"usage.record","model":"kimi-code/kimi-for-coding","usage":{"inputOther":100,"output":50,"inputCacheRead":10,"inputCacheCreation":20},"usageScope":"turn","time":1795255200000}"#;
        let r = usage(line(&mut st, turn, &ctx, 0, &mut Interner::default()));
        assert_eq!(&*r.model, "kimi-for-coding");
        assert_eq!((r.input_tokens, r.cache_creation_input_tokens), (100, 20));
        assert!(r.key.starts_with("kimi:s2:hash:"));
        let session = br#"{"type":"usage.record","model":"kimi-code/kimi-for-coding","usage":{"inputOther":100},"usageScope":"session","time":1795255201000}"#;
        assert_eq!(
            line(&mut st, session, &ctx, 0, &mut Interner::default()),
            Parsed::Other
        );
        let bad =
            br#"{"type":"usage.record","usage":{"inputOther":-4},"usageScope":"turn","time":1}"#;
        assert_eq!(
            line(&mut st, bad, &ctx, 0, &mut Interner::default()),
            Parsed::Malformed(MalformedKind::BadTokenCount)
        );
    }
}
