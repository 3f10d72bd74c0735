//! OpenAI Codex CLI's format: `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<uuid>.jsonl`
//! (and `archived_sessions/`), appended line by line. Every line is
//! `{"timestamp", "type", "payload"}`; usage is in `event_msg` lines whose
//! `payload.type` is `token_count`.
//!
//! A token_count carries `info.total_token_usage`, the session's cumulative
//! total, and (on newer CLIs) `info.last_token_usage`, the last turn's. The
//! meaning of a line depends on the lines before it, so a file is read in
//! order and its [`State`] (the last total, the current model, the fork state)
//! is saved in the checkpoint next to the offset:
//!
//! - the usage of an event is `last_token_usage` when the total advanced,
//!   else the difference of the totals (each field saturating at 0), so a
//!   re-emitted identical event adds nothing, older CLIs without
//!   `last_token_usage` still count, and a total that goes backwards adds 0
//!   and becomes the new baseline;
//! - `info: null` (rate limits only) and events that add nothing are skipped;
//! - the model is the last `turn_context`'s (`model`, `model_name` or
//!   `metadata.model`); a model in the event itself wins; with none, the event
//!   is priced as `gpt-5` and marked a fallback (`entry_type`
//!   `token_count:fallback_model`);
//! - cached input is inside input, reasoning inside output: a row's
//!   `input_tokens` is the non-cached input, `cache_read_input_tokens` the
//!   cached part, `reasoning_tokens` the reasoning part of the output;
//! - a forked or subagent rollout (its first `session_meta` names
//!   `forked_from_id` or `source.subagent.thread_spawn.parent_thread_id`)
//!   opens with its parent's history copied in, every copied line re-stamped
//!   with the time of the copy (a burst that may span seconds), the
//!   parent's own `task_started` lines among them. Its token_counts advance
//!   the baseline but count nothing until the child's first own turn: a
//!   `task_started` whose `started_at` is the second its line was written
//!   (a copied one keeps its original `started_at`, earlier than the fork),
//!   or an `inter_agent_communication` that triggers a turn. CLIs that
//!   write no `started_at` end the copy at a `task_started` written more
//!   than [`BURST_GAP_MS`] after the line before it: a copy is written in
//!   one go, a turn starts when someone asks for it. Those events are the
//!   parent's, already counted from the parent's own file, whatever their
//!   timestamps say.
//!
//! Each event is keyed by the session's uuid and the event's byte offset
//! (`codex:<uuid>:<offset>`): an archived copy of a session has the same keys
//! (and its original wins the tie), while two distinct events with equal
//! numbers stay two events.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::format::json_fields::{count, first, str_at};
use crate::format::{MalformedKind, Parsed};
use crate::record::{Interner, Shared, SourceContext, UsageRow};

/// The pause after which a `task_started` without `started_at` is taken as
/// the fork's own first turn rather than part of the copied history (which
/// is written back to back, milliseconds apart).
pub const BURST_GAP_MS: i64 = 1_000;

/// The model an event is priced as when its file names none.
pub const FALLBACK_MODEL: &str = "gpt-5";

/// One set of token counts as Codex reports them (cached inside input,
/// reasoning inside output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Input tokens, cached ones included.
    pub input: u64,
    /// Of which served from cache.
    pub cached: u64,
    /// Output tokens, reasoning included.
    pub output: u64,
    /// Of which reasoning.
    pub reasoning: u64,
}

impl Counts {
    fn saturating_sub(self, b: Counts) -> Counts {
        Counts {
            input: self.input.saturating_sub(b.input),
            cached: self.cached.saturating_sub(b.cached),
            output: self.output.saturating_sub(b.output),
            reasoning: self.reasoning.saturating_sub(b.reasoning),
        }
    }

    fn is_zero(self) -> bool {
        self == Counts::default()
    }
}

/// What a rollout file has said so far that later lines depend on. Saved in
/// the checkpoint with the offset it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// The last cumulative total (the baseline for the next event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Counts>,
    /// The current model (from the last `turn_context`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The working folder (from `session_meta` / `turn_context`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The CLI's version (`session_meta.cli_version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli_version: Option<String>,
    /// The file's own `session_meta` was read (later ones are copied
    /// ancestors').
    #[serde(default)]
    pub meta_seen: bool,
    /// A fork or subagent rollout still replaying its parent's events.
    #[serde(default)]
    pub replaying: bool,
    /// The unix ms of the line before (for a copy's end, see
    /// [`BURST_GAP_MS`]); kept only while replaying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_line_ms: Option<i64>,
}

/// The context of a rollout file: its session is the path under the
/// `sessions/` (or `archived_sessions/`) folder without `.jsonl`, as ccusage
/// names it; its content id is the uuid that ends the file name.
pub fn context_of(root: &Path, path: &Path) -> SourceContext {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let session = rel.with_extension("");
    let session = session.to_string_lossy();
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // rollout-2025-10-01T10-00-00-<uuid>: the uuid is the last 36 bytes.
    let content_id = match stem.len().checked_sub(36) {
        Some(i) if stem.is_char_boundary(i) && is_uuid(&stem[i..]) => stem[i..].to_string(),
        _ => stem.clone(),
    };
    let archived = root.file_name().is_some_and(|n| n == "archived_sessions");
    SourceContext {
        agent: crate::format::agent::Agent::Codex,
        path: path.to_string_lossy().into(),
        session_from_path: Arc::from(session.as_ref()),
        project: Arc::from(""),
        agent_from_path: Arc::from(""),
        content_id: content_id.into(),
        primary: !archived,
        host: Arc::from(""),
        user: Arc::from(""),
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Whether a line can matter to the state or the usage: the cheap test that
/// lets every other line through with a validity check only.
pub fn may_matter(line: &[u8]) -> bool {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    static NEEDLES: LazyLock<[Finder<'static>; 6]> = LazyLock::new(|| {
        [
            Finder::new(b"token_count"),
            Finder::new(b"turn_context"),
            Finder::new(b"session_meta"),
            Finder::new(b"task_started"),
            Finder::new(b"inter_agent_communication"),
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
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(_) => return Parsed::Malformed(MalformedKind::InvalidUtf8),
    };
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) if e.to_string().contains("recursion limit") => {
            return Parsed::Malformed(MalformedKind::TooDeep)
        }
        Err(_) => return Parsed::Malformed(MalformedKind::InvalidJson),
    };
    let Some(obj) = v.as_object() else {
        return Parsed::Malformed(MalformedKind::NotObject);
    };
    let payload = obj.get("payload");
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
    let payload_kind = payload
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let line_ms = obj
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(crate::timestamp::parse_rfc3339_ms);
    let before_ms = std::mem::replace(&mut state.last_line_ms, line_ms.filter(|_| state.replaying));
    match (kind, payload_kind) {
        ("session_meta", _) => {
            if !state.meta_seen {
                state.meta_seen = true;
                let p = payload.unwrap_or(&Value::Null);
                let forked = str_at(p, &["forked_from_id"]).is_some()
                    || str_at(p, &["parent_thread_id"]).is_some()
                    || str_at(
                        p,
                        &["source", "subagent", "thread_spawn", "parent_thread_id"],
                    )
                    .is_some();
                state.replaying = forked;
                state.last_line_ms = line_ms.filter(|_| forked);
                if let Some(cwd) = str_at(p, &["cwd"]) {
                    state.cwd = Some(cwd.to_string());
                }
                if let Some(version) = str_at(p, &["cli_version"]) {
                    state.cli_version = Some(version.to_string());
                }
            }
            Parsed::Other
        }
        ("turn_context", _) => {
            if let Some(p) = payload {
                if let Some(m) = model_of(p) {
                    state.model = Some(m.to_string());
                }
                if let Some(cwd) = str_at(p, &["cwd"]) {
                    state.cwd = Some(cwd.to_string());
                }
            }
            Parsed::Other
        }
        ("event_msg", "task_started") => {
            if state.replaying && own_turn_start(payload, line_ms, before_ms) {
                state.replaying = false;
                state.last_line_ms = None;
            }
            Parsed::Other
        }
        ("event_msg", "inter_agent_communication" | "inter_agent_communication_metadata") => {
            let triggers = payload
                .and_then(|p| p.get("trigger_turn"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if triggers {
                state.replaying = false;
                state.last_line_ms = None;
            }
            Parsed::Other
        }
        ("event_msg", "token_count") => {
            match token_count(
                state,
                obj,
                payload.unwrap_or(&Value::Null),
                ctx,
                offset,
                shared,
            ) {
                Ok(Some(row)) => Parsed::Usage(Box::new(row)),
                Ok(None) => Parsed::Other,
                Err(kind) => Parsed::Malformed(kind),
            }
        }
        _ => Parsed::Other,
    }
}

/// Whether a `task_started` seen while replaying is the fork's own first
/// turn: its `started_at` (unix seconds) is when its line was written, give
/// or take the second boundary; without `started_at`, it follows a pause.
fn own_turn_start(payload: Option<&Value>, line_ms: Option<i64>, before_ms: Option<i64>) -> bool {
    let started_at = payload
        .and_then(|p| p.get("started_at"))
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)));
    match (started_at, line_ms) {
        (Some(s), Some(ms)) => (ms.div_euclid(1000) - s).abs() <= 1,
        (Some(_), None) => false,
        (None, Some(ms)) => before_ms.is_some_and(|b| ms - b > BURST_GAP_MS),
        (None, None) => false,
    }
}

fn model_of(p: &Value) -> Option<&str> {
    str_at(p, &["model"])
        .or_else(|| str_at(p, &["model_name"]))
        .or_else(|| str_at(p, &["metadata", "model"]))
}

/// One usage object (total or last), with the aliases CLIs have used.
fn counts(u: &Value) -> Result<Counts, MalformedKind> {
    if !u.is_object() {
        return Err(MalformedKind::MistypedField);
    }
    let input = count(first(u, &["input_tokens", "prompt_tokens", "input"]))?;
    let cached = count(first(
        u,
        &[
            "cached_input_tokens",
            "cache_read_input_tokens",
            "cached_tokens",
        ],
    ))?;
    let output = count(first(u, &["output_tokens", "completion_tokens"]))?;
    let reasoning = count(first(u, &["reasoning_output_tokens", "reasoning_tokens"]))?;
    Ok(Counts {
        input,
        cached,
        output,
        reasoning,
    })
}

fn token_count(
    state: &mut State,
    line: &serde_json::Map<String, Value>,
    payload: &Value,
    ctx: &SourceContext,
    offset: u64,
    shared: &mut Interner,
) -> Result<Option<UsageRow>, MalformedKind> {
    let info = match payload.get("info") {
        None | Some(Value::Null) => return Ok(None),
        Some(i) if i.is_object() => i,
        Some(_) => return Err(MalformedKind::MistypedField),
    };
    let total = match first(info, &["total_token_usage"]) {
        Some(t) => Some(counts(t)?),
        None => None,
    };
    let last = match first(info, &["last_token_usage"]) {
        Some(l) => Some(counts(l)?),
        None => None,
    };
    if total.is_none() && last.is_none() {
        return Ok(None);
    }
    let advanced = total.is_none() || total != state.total;
    let mut delta = match (last, advanced) {
        (Some(l), true) => l,
        _ => total
            .unwrap_or_default()
            .saturating_sub(state.total.unwrap_or_default()),
    };
    if total.is_some() {
        state.total = total;
    }
    if state.replaying || delta.is_zero() {
        return Ok(None);
    }
    delta.cached = delta.cached.min(delta.input);
    delta.reasoning = delta.reasoning.min(delta.output);
    let ts = match line.get("timestamp") {
        Some(Value::String(s)) => s.as_str(),
        None | Some(Value::Null) => return Err(MalformedKind::MissingField),
        Some(_) => return Err(MalformedKind::BadTimestamp),
    };
    let ts_ms = crate::timestamp::parse_rfc3339_ms(ts)
        .filter(|t| (0..=u32::MAX as i64 * 1000).contains(t))
        .ok_or(MalformedKind::BadTimestamp)?;
    let event_model = model_of(info).or_else(|| model_of(payload));
    let (model, fallback): (Cow<'_, str>, bool) = match event_model.or(state.model.as_deref()) {
        Some(m) => (Cow::Borrowed(m), false),
        None => (Cow::Borrowed(FALLBACK_MODEL), true),
    };
    let total_tokens = delta.input + delta.output;
    let cwd = shared.get(Shared::Cwd, state.cwd.as_deref().unwrap_or(""));
    Ok(Some(UsageRow {
        key: format!("codex:{}:{offset}", ctx.content_id),
        version: (1 << 63) | (total_tokens.min((1 << 62) - 1) << 1) | u64::from(ctx.primary),
        ts: (ts_ms / 1000) as u32,
        ts_ms,
        session_id: ctx.session_from_path.clone(),
        project: cwd.clone(),
        is_sidechain: 0,
        agent_id: ctx.agent_from_path.clone(),
        model: shared.get(Shared::Model, &model),
        message_id: String::new(),
        request_id: String::new(),
        entry_type: entry_type(fallback),
        input_tokens: delta.input - delta.cached,
        output_tokens: delta.output,
        cache_creation_input_tokens: 0,
        cache_creation_5m_tokens: 0,
        cache_creation_1h_tokens: 0,
        cache_read_input_tokens: delta.cached,
        web_search_requests: 0,
        web_fetch_requests: 0,
        service_tier: shared.get(Shared::ServiceTier, ""),
        cwd,
        git_branch: shared.get(Shared::GitBranch, ""),
        cc_version: shared.get(Shared::Version, state.cli_version.as_deref().unwrap_or("")),
        source_file: ctx.path.clone(),
        source_offset: offset,
        cost_usd: 0.0,
        agent: ctx.agent.label(),
        reasoning_tokens: delta.reasoning,
        recorded_cost_usd: None,
        host: ctx.host.clone(),
        user: ctx.user.clone(),
    }))
}

/// The `entry_type` of a token_count row: whether its model is a fallback.
fn entry_type(fallback: bool) -> Arc<str> {
    static TYPES: std::sync::LazyLock<[Arc<str>; 2]> = std::sync::LazyLock::new(|| {
        [
            Arc::from("token_count"),
            Arc::from("token_count:fallback_model"),
        ]
    });
    TYPES[usize::from(fallback)].clone()
}

#[cfg(test)]
mod tests;
