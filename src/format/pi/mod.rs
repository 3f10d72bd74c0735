//! The pi coding agent's session format, which OpenClaw shares:
//! `~/.pi/agent/sessions/<--cwd-->/<time>_<uuid>.jsonl` and
//! `~/.openclaw/agents/<agent>/sessions/<uuid>.jsonl` (with
//! `<uuid>.jsonl.reset.<time>` / `.deleted.<time>` copies), appended line by
//! line. Each line is an entry of a tree (`id`, `parentId`):
//!
//! - `{"type":"session", "id", "cwd", …}` opens the file;
//! - `{"type":"model_change", "modelId"}` (or OpenClaw's
//!   `{"type":"custom", "customType":"model-snapshot", "data":{"modelId"}}`)
//!   sets the model for later messages that name none;
//! - `{"type":"message", "message":{"role":"assistant", "model", "usage":
//!   {"input", "output", "cacheRead", "cacheWrite", "totalTokens",
//!   "cost":{"total"}}, "timestamp"}}` is one model response. `input`
//!   excludes cached tokens; `cost.total` is what the agent charged, kept
//!   as the row's recorded cost (cost mode `auto` uses it, as ccusage does).
//!
//! The current model depends on earlier lines, so a file is read in order
//! and its [`State`] is saved in the checkpoint. A response is keyed by its
//! entry id and time (`pi:<id>@<ms>`), which copies keep: a forked session
//! that carries its parent's entries, or an OpenClaw reset copy, counts them
//! once (the live file's row wins the tie). An entry without an id is keyed
//! by a hash of its line.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::format::agent::Agent;
use crate::format::json_fields::{self, count, str_at};
use crate::format::{MalformedKind, Parsed};
use crate::record::{Interner, Shared, SourceContext, UsageRow};

/// What a session file has said so far that later lines depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// The model of the last `model_change` (for messages that name none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The session header's working folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

/// Whether `path` (found under an OpenClaw folder) is a session file or a
/// reset / deleted copy of one: `*.jsonl`, `*.jsonl.reset.*`,
/// `*.jsonl.deleted.*`.
pub fn is_openclaw_session(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.ends_with(".jsonl") || name.contains(".jsonl.reset.") || name.contains(".jsonl.deleted.")
}

/// The context of a session file under `root`: pi names the session after
/// the uuid that follows `_` in the file name and the project after the
/// folder under `sessions/`; OpenClaw names the session after the file name
/// before `.jsonl` (so a reset copy is the same session, and not primary)
/// and the project after the agent folder under `agents/`.
pub fn context_of(agent: Agent, root: &Path, path: &Path) -> SourceContext {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = name.split(".jsonl").next().unwrap_or(&name).to_string();
    let rel: Vec<String> = path
        .strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let after = |dir: &str| {
        rel.iter()
            .position(|c| c == dir)
            .and_then(|i| rel.get(i + 1))
            .filter(|c| **c != name)
            .cloned()
    };
    let (session, project, primary) = match agent {
        Agent::OpenClaw => (
            base.clone(),
            after("agents").unwrap_or_default(),
            name.ends_with(".jsonl"),
        ),
        _ => (
            base.split_once('_')
                .map_or(base.as_str(), |(_, id)| id)
                .to_string(),
            after("sessions")
                .or_else(|| (rel.len() > 1).then(|| rel[rel.len() - 2].clone()))
                .unwrap_or_default(),
            true,
        ),
    };
    SourceContext {
        agent,
        path: path.to_string_lossy().into(),
        session_from_path: session.into(),
        project: project.into(),
        agent_from_path: Arc::from(""),
        content_id: base.into(),
        primary,
        host: Arc::from(""),
        user: Arc::from(""),
    }
}

/// Whether a line can matter to the state or the usage.
pub fn may_matter(line: &[u8]) -> bool {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    static NEEDLES: LazyLock<[Finder<'static>; 4]> = LazyLock::new(|| {
        [
            Finder::new(b"usage"),
            Finder::new(b"model"),
            Finder::new(b"\"session\""),
            Finder::new(b"\\u"),
        ]
    });
    NEEDLES.iter().any(|f| f.find(line).is_some())
}

/// Reads one line (without its newline) at `offset`, updating `state`.
pub fn line(
    state: &mut State,
    line: &[u8],
    ctx: &SourceContext,
    offset: u64,
    shared: &mut Interner,
) -> Parsed {
    let obj = match json_fields::object(line) {
        Ok(o) => o,
        Err(kind) => return Parsed::Malformed(kind),
    };
    let obj = Value::Object(obj);
    match obj.get("type").and_then(Value::as_str) {
        Some("session") => {
            if let Some(cwd) = str_at(&obj, &["cwd"]) {
                state.cwd = Some(cwd.to_string());
            }
            Parsed::Other
        }
        Some("model_change") => {
            if let Some(m) = str_at(&obj, &["modelId"]).or_else(|| str_at(&obj, &["model"])) {
                state.model = Some(m.to_string());
            }
            Parsed::Other
        }
        Some("custom") if str_at(&obj, &["customType"]) == Some("model-snapshot") => {
            if let Some(m) = str_at(&obj, &["data", "modelId"]) {
                state.model = Some(m.to_string());
            }
            Parsed::Other
        }
        Some("message") | None => match response(state, &obj, line, ctx, offset, shared) {
            Ok(Some(row)) => Parsed::Usage(Box::new(row)),
            Ok(None) => Parsed::Other,
            Err(kind) => Parsed::Malformed(kind),
        },
        Some(_) => Parsed::Other,
    }
}

/// The row of an assistant message with usage; `None` for other messages.
fn response(
    state: &State,
    obj: &Value,
    line: &[u8],
    ctx: &SourceContext,
    offset: u64,
    shared: &mut Interner,
) -> Result<Option<UsageRow>, MalformedKind> {
    let Some(msg) = obj.get("message").filter(|m| m.is_object()) else {
        return Ok(None);
    };
    if str_at(msg, &["role"]) != Some("assistant") {
        return Ok(None);
    }
    let usage = match msg.get("usage") {
        None | Some(Value::Null) => return Ok(None),
        Some(u) if u.is_object() => u,
        Some(_) => return Err(MalformedKind::MistypedField),
    };
    let input = count(usage.get("input"))?;
    let output = count(usage.get("output"))?;
    let cache_read = count(usage.get("cacheRead"))?;
    let cache_write = count(usage.get("cacheWrite"))?;
    let recorded = json_fields::cost(usage.get("cost").and_then(|c| c.get("total")))?;
    // pi stamps the entry; OpenClaw's own timestamp is the message's.
    let (first, second) = match ctx.agent {
        Agent::OpenClaw => (msg.get("timestamp"), obj.get("timestamp")),
        _ => (obj.get("timestamp"), msg.get("timestamp")),
    };
    let ts_ms = match json_fields::time_ms(first)? {
        Some(t) => t,
        None => json_fields::time_ms(second)?.ok_or(MalformedKind::MissingField)?,
    };
    let model = str_at(msg, &["model"])
        .or_else(|| str_at(msg, &["modelId"]))
        .or(state.model.as_deref())
        .unwrap_or("");
    let key = match str_at(obj, &["id"]) {
        Some(id) => format!("{}:{id}@{ts_ms}", ctx.agent.name()),
        None => format!(
            "{}:hash:{:032x}",
            ctx.agent.name(),
            xxhash_rust::xxh3::xxh3_128(line)
        ),
    };
    let total = input + output + cache_read + cache_write;
    let cwd = shared.get(Shared::Cwd, state.cwd.as_deref().unwrap_or(""));
    Ok(Some(UsageRow {
        key,
        version: (1 << 63) | (total.min((1 << 62) - 1) << 1) | u64::from(ctx.primary),
        ts: (ts_ms / 1000) as u32,
        ts_ms,
        model: shared.get(Shared::Model, model),
        message_id: str_at(obj, &["id"]).unwrap_or("").to_string(),
        entry_type: message_type(),
        input_tokens: input,
        output_tokens: output,
        cache_creation_input_tokens: cache_write,
        cache_creation_5m_tokens: cache_write,
        cache_read_input_tokens: cache_read,
        cwd,
        recorded_cost_usd: recorded,
        ..UsageRow::of_source(ctx, offset, shared)
    }))
}

fn message_type() -> Arc<str> {
    static T: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("message"));
    T.clone()
}

#[cfg(test)]
mod tests;
